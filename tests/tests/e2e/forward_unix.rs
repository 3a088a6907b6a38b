//! Unix-socket forwards, both ways, as `ssh -L`/`-R` take them: a local
//! socket listener (`-L /sock:host:port`), a socket target on the server
//! (`-L port:/sock`, direct-streamlocal), a socket listener on the server
//! (`-R /sock:host:port`, streamlocal-forward) and a local socket target
//! (`-R port:/sock`). Bytes are hashed, sockets are private, and the files
//! are gone when the tunnel or tunneld ends.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nix::sys::signal::Signal;
use tonic::Code;
use tunnel_proto::v1::{
    OpenLocalForwardRequest, OpenRemoteForwardRequest, Tunnel, TunnelKind, TunnelState,
};
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::peers::{HttpPeer, TcpPeer};
use tunneld_tests::postgres::{Postgres, psql};
use tunneld_tests::unix_peer::{self, UnixPeer};
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Client, Sshd, Tunneld};

use crate::support::{
    Bed, close, curl_unix, e2e, exchange, find_tunnel, local_port, open_local_req, remote_port,
};

/// A private directory for this test's sockets (short, to fit sun_path).
fn socket_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("tdu")
        .tempdir_in("/tmp")
        .context("creating a socket directory")
}

async fn open_remote(client: &Client, req: OpenRemoteForwardRequest) -> Result<Tunnel> {
    client
        .clone()
        .open_remote_forward(req)
        .await
        .context("OpenRemoteForward")?
        .into_inner()
        .tunnel
        .context("no tunnel")
}

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .permissions()
        .mode()
        & 0o777)
}

fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Waits until nothing accepts on the socket at `path` any more (gone, or
/// a file nobody listens on).
async fn wait_dead(path: &Path) -> Result<()> {
    let what = format!("nothing to listen on {}", path.display());
    poll_until(&what, Duration::from_secs(10), || async {
        Ok(std::os::unix::net::UnixStream::connect(path)
            .is_err()
            .then_some(()))
    })
    .await
}

fn path_of(t: &Tunnel, local: bool) -> Result<PathBuf> {
    let end = if local { &t.local } else { &t.remote };
    let path = &end.as_ref().context("no endpoint")?.path;
    ensure!(
        !path.is_empty(),
        "tunnel {} has no path on that side: {t:?}",
        t.id
    );
    Ok(PathBuf::from(path))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_socket_reaches_a_tcp_target_privately_and_goes_on_close() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let dir = socket_dir()?;
        let sock = dir.path().join("l.sock");
        let digest = TcpPeer::digest().await?;
        let t = open_local_req(
            &bed.client,
            OpenLocalForwardRequest {
                local_path: sock.display().to_string(),
                remote_host: "127.0.0.1".into(),
                remote_port: digest.port().into(),
                ..Default::default()
            },
        )
        .await?;
        ensure!(t.kind == TunnelKind::Local as i32, "kind {}", t.kind);
        ensure!(path_of(&t, true)? == sock, "local end {:?}", t.local);
        ensure!(is_socket(&sock), "no socket at {}", sock.display());
        ensure!(mode(&sock)? == 0o600, "socket mode {:o}", mode(&sock)?);
        // Nothing else is left in the directory (the staging one is gone).
        ensure!(std::fs::read_dir(dir.path())?.count() == 1, "stray files");

        let data = random_bytes(4 << 20);
        let reply = unix_peer::exchange(&sock, &data).await?;
        ensure!(reply == sha256_hex(&data).as_bytes(), "digest mismatch");

        // A second forward on the same live socket is refused, the first
        // keeps working.
        let second = bed
            .client
            .clone()
            .open_local_forward(OpenLocalForwardRequest {
                local_path: sock.display().to_string(),
                remote_port: digest.port().into(),
                ..Default::default()
            })
            .await
            .err()
            .context("a second forward on a live socket was accepted")?;
        ensure!(second.code() == Code::AlreadyExists, "{second:?}");
        ensure!(
            second.message().contains(&sock.display().to_string()),
            "{second:?}"
        );
        let reply = unix_peer::exchange(&sock, b"still here").await?;
        ensure!(
            reply == sha256_hex(b"still here").as_bytes(),
            "after refusal"
        );

        close(&bed.client, &t.id).await?;
        ensure!(!sock.exists(), "socket left after Close");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tcp_port_reaches_a_socket_on_the_server() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let dir = socket_dir()?;
        let target = dir.path().join("t.sock");
        let peer = UnixPeer::digest(&target).await?;
        let t = open_local_req(
            &bed.client,
            OpenLocalForwardRequest {
                remote_path: target.display().to_string(),
                ..Default::default()
            },
        )
        .await?;
        ensure!(path_of(&t, false)? == target, "remote end {:?}", t.remote);
        let data = random_bytes(3 << 20);
        let reply = exchange(local_port(&t)?, &data, Duration::from_secs(20)).await?;
        ensure!(reply == sha256_hex(&data).as_bytes(), "digest mismatch");
        ensure!(peer.accepted() == 1, "peer saw {}", peer.accepted());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_through_a_socket_the_server_listens_on() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let dir = socket_dir()?;
        let sock = dir.path().join("r.sock");
        let http = HttpPeer::start("served through a remote unix socket").await?;
        let t = open_remote(
            &bed.client,
            OpenRemoteForwardRequest {
                remote_path: sock.display().to_string(),
                local_host: "127.0.0.1".into(),
                local_port: http.port().into(),
                ..Default::default()
            },
        )
        .await?;
        ensure!(path_of(&t, false)? == sock, "remote end {:?}", t.remote);
        ensure!(
            is_socket(&sock),
            "sshd made no socket at {}",
            sock.display()
        );
        // sshd's StreamLocalBindMask 0177.
        ensure!(mode(&sock)? == 0o600, "socket mode {:o}", mode(&sock)?);
        let body = curl_unix(&sock).await?;
        ensure!(body == http.body(), "curl got {body:?}");

        close(&bed.client, &t.id).await?;
        // sshd stops listening; it leaves the file, as for `ssh -R /sock:…`.
        wait_dead(&sock).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_port_reaches_a_local_socket() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let dir = socket_dir()?;
        let target = dir.path().join("lt.sock");
        let _peer = UnixPeer::digest(&target).await?;
        let t = open_remote(
            &bed.client,
            OpenRemoteForwardRequest {
                remote_bind_address: "127.0.0.1".into(),
                local_path: target.display().to_string(),
                ..Default::default()
            },
        )
        .await?;
        ensure!(path_of(&t, true)? == target, "local end {:?}", t.local);
        let data = random_bytes(3 << 20);
        let reply = exchange(remote_port(&t)?, &data, Duration::from_secs(20)).await?;
        ensure!(reply == sha256_hex(&data).as_bytes(), "digest mismatch");
        Ok(())
    })
    .await
}

/// OpenSSH's regress/forwarding.sh chains forwards through unix sockets;
/// so does this: TCP → (-L port:/s1) → unix s1 → (-L /s1:/s2) → unix s2 →
/// (-R /s2:host:port) → TCP, 64 MiB hashed end to end.
#[tokio::test(flavor = "multi_thread")]
async fn a_chain_tcp_unix_unix_tcp_carries_64_mib_intact() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let dir = socket_dir()?;
        let s1 = dir.path().join("s1.sock");
        let s2 = dir.path().join("s2.sock");
        let digest = TcpPeer::digest().await?;
        let last = open_remote(
            &bed.client,
            OpenRemoteForwardRequest {
                remote_path: s2.display().to_string(),
                local_host: "127.0.0.1".into(),
                local_port: digest.port().into(),
                ..Default::default()
            },
        )
        .await?;
        let middle = open_local_req(
            &bed.client,
            OpenLocalForwardRequest {
                local_path: s1.display().to_string(),
                remote_path: s2.display().to_string(),
                ..Default::default()
            },
        )
        .await?;
        let first = open_local_req(
            &bed.client,
            OpenLocalForwardRequest {
                remote_path: s1.display().to_string(),
                ..Default::default()
            },
        )
        .await?;
        let data = random_bytes(64 << 20);
        let reply = exchange(local_port(&first)?, &data, Duration::from_secs(45)).await?;
        ensure!(
            reply == sha256_hex(&data).as_bytes(),
            "digest mismatch after the chain"
        );
        for t in [&first, &middle, &last] {
            let now = find_tunnel(&bed.client, &t.id)
                .await?
                .context("tunnel gone")?;
            let c = now.counters.context("counters")?;
            ensure!(
                c.bytes_to_target == data.len() as u64 && c.bytes_from_target == 64,
                "tunnel {} counted {} to / {} from the target",
                t.id,
                c.bytes_to_target,
                c.bytes_from_target
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_are_removed_at_sigterm_and_a_killed_runs_socket_is_replaced() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let dir = socket_dir()?;
        let local = dir.path().join("k.sock");
        let remote = dir.path().join("kr.sock");
        let digest = TcpPeer::digest().await?;
        let local_req = OpenLocalForwardRequest {
            local_path: local.display().to_string(),
            remote_host: "127.0.0.1".into(),
            remote_port: digest.port().into(),
            ..Default::default()
        };
        open_local_req(&bed.client, local_req.clone()).await?;
        open_remote(
            &bed.client,
            OpenRemoteForwardRequest {
                remote_path: remote.display().to_string(),
                local_host: "127.0.0.1".into(),
                local_port: digest.port().into(),
                ..Default::default()
            },
        )
        .await?;
        ensure!(is_socket(&local) && is_socket(&remote), "sockets missing");
        let mut bed = bed;
        bed.daemon.terminate().await?;
        ensure!(!local.exists(), "local socket left after SIGTERM");
        wait_dead(&remote).await?;

        // SIGKILL leaves the file; the next tunneld replaces it.
        let mut daemon = Tunneld::start(&bed.sshd).await?;
        let client = daemon.client();
        open_local_req(&client, local_req.clone()).await?;
        daemon.signal(Signal::SIGKILL)?;
        poll_until("tunneld to die", Duration::from_secs(10), || {
            let gone = daemon.try_wait().map(|s| s.is_some()).unwrap_or(false);
            async move { Ok(gone.then_some(())) }
        })
        .await?;
        ensure!(
            is_socket(&local),
            "the killed run's socket should still be there"
        );
        let daemon = Tunneld::start(&bed.sshd).await?;
        let t = open_local_req(&daemon.client(), local_req).await?;
        ensure!(t.state == TunnelState::Open as i32, "state {}", t.state);
        let reply = unix_peer::exchange(&local, b"replaced").await?;
        ensure!(
            reply == sha256_hex(b"replaced").as_bytes(),
            "digest mismatch"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_socket_is_requested_again_after_a_reconnect() -> Result<()> {
    e2e(async {
        // sshd leaves the old socket file when the connection ends; with
        // StreamLocalBindUnlink it replaces it when asked again, as the
        // docs tell users to set.
        let sshd = Sshd::builder()
            .config("StreamLocalBindUnlink yes")
            .start()?;
        let bed = Bed::with(sshd, |b| b).await?;
        let dir = socket_dir()?;
        let sock = dir.path().join("rc.sock");
        let http = HttpPeer::start("after the outage").await?;
        let t = open_remote(
            &bed.client,
            OpenRemoteForwardRequest {
                remote_path: sock.display().to_string(),
                local_host: "127.0.0.1".into(),
                local_port: http.port().into(),
                ..Default::default()
            },
        )
        .await?;
        ensure!(curl_unix(&sock).await? == http.body(), "before the outage");
        bed.sshd.kill_connections()?;
        // The restore asks for the socket again.
        poll_until(
            "the remote socket forward's restore",
            Duration::from_secs(20),
            || async {
                Ok(find_tunnel(&bed.client, &t.id)
                    .await?
                    .filter(|t| t.restores >= 1 && t.state == TunnelState::Open as i32))
            },
        )
        .await?;
        ensure!(curl_unix(&sock).await? == http.body(), "after the restore");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn socket_paths_are_checked_and_refusals_name_them() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let dir = socket_dir()?;
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"keep me")?;
        let refusal = |req: OpenLocalForwardRequest| {
            let c = bed.client.clone();
            async move { c.clone().open_local_forward(req).await.err() }
        };
        let e = refusal(OpenLocalForwardRequest {
            local_path: "relative.sock".into(),
            remote_port: 1,
            ..Default::default()
        })
        .await
        .context("a relative path was accepted")?;
        ensure!(
            e.code() == Code::InvalidArgument && e.message().contains("absolute"),
            "{e:?}"
        );
        let e = refusal(OpenLocalForwardRequest {
            local_path: plain.display().to_string(),
            remote_port: 1,
            ..Default::default()
        })
        .await
        .context("a plain file was taken for a socket")?;
        ensure!(
            e.code() == Code::AlreadyExists && e.message().contains("not a socket"),
            "{e:?}"
        );
        ensure!(
            std::fs::read(&plain)? == b"keep me",
            "the plain file was touched"
        );
        let e = refusal(OpenLocalForwardRequest {
            local_path: format!("/{}", "x".repeat(120)),
            remote_port: 1,
            ..Default::default()
        })
        .await
        .context("an overlong path was accepted")?;
        ensure!(
            e.code() == Code::InvalidArgument && e.message().contains("107"),
            "{e:?}"
        );
        // A socket the server cannot listen on: its directory is missing.
        let e = bed
            .client
            .clone()
            .open_remote_forward(OpenRemoteForwardRequest {
                remote_path: dir.path().join("missing/r.sock").display().to_string(),
                local_port: 1,
                ..Default::default()
            })
            .await
            .err()
            .context("sshd listened in a missing directory")?;
        ensure!(
            e.code() == Code::PermissionDenied
                && e.message().contains("refused to listen on unix socket"),
            "{e:?}"
        );
        Ok(())
    })
    .await
}

/// `ssh -L /dir/.s.PGSQL.5432:db:5432` and then `psql -h /dir`: a local
/// forward's socket, named as libpq expects, reaches a real PostgreSQL over
/// TCP.
#[tokio::test(flavor = "multi_thread")]
async fn psql_through_a_local_socket_reaches_postgres_over_tcp() -> Result<()> {
    e2e(async {
        let pg = tokio::task::spawn_blocking(Postgres::start).await??;
        let bed = Bed::start().await?;
        let dir = socket_dir()?;
        let sock = dir.path().join(".s.PGSQL.5432");
        open_local_req(
            &bed.client,
            OpenLocalForwardRequest {
                local_path: sock.display().to_string(),
                remote_host: "127.0.0.1".into(),
                remote_port: pg.port().into(),
                ..Default::default()
            },
        )
        .await?;
        let host = dir.path().display().to_string();
        let got =
            tokio::task::spawn_blocking(move || psql(&host, 5432, "select 'via socket ' || 6 * 7"))
                .await??;
        ensure!(got == "via socket 42", "psql printed {got:?}");
        Ok(())
    })
    .await
}

/// `ssh -L 15432:/run/postgresql/.s.PGSQL.5432`: a PostgreSQL that listens
/// on no TCP port at all, reached through its socket on the server.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_port_reaches_a_postgres_listening_only_on_its_socket() -> Result<()> {
    e2e(async {
        let pg = tokio::task::spawn_blocking(Postgres::start_unix_only).await??;
        ensure!(
            tokio::net::TcpStream::connect(("127.0.0.1", pg.port()))
                .await
                .is_err(),
            "the unix-only PostgreSQL listens on TCP"
        );
        let bed = Bed::start().await?;
        let t = open_local_req(
            &bed.client,
            OpenLocalForwardRequest {
                remote_path: pg.socket().display().to_string(),
                ..Default::default()
            },
        )
        .await?;
        let port = local_port(&t)?;
        let got = tokio::task::spawn_blocking(move || {
            psql(
                "127.0.0.1",
                port,
                "select count(*) from generate_series(1, 100000)",
            )
        })
        .await??;
        ensure!(
            got == "100000",
            "psql printed {got:?}; server log:\n{}",
            pg.log()
        );
        Ok(())
    })
    .await
}
