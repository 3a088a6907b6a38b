//! Tests of the fixtures themselves, against the real OpenSSH client and real
//! sockets: if these fail, nothing else in the suite means anything. They do
//! not need tunneld.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tunneld_tests::Sshd;
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::keys::KeyType;
use tunneld_tests::peers::{self, HttpPeer, TcpPeer};
use tunneld_tests::wait::poll_until;

use crate::support::{bounded, connect, exchange, expect_closed, ssh, tail};

async fn output(mut cmd: Command) -> Result<std::process::Output> {
    tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .context("ssh took longer than 20 s")?
        .context("running ssh (is openssh-client installed?)")
}

#[tokio::test(flavor = "multi_thread")]
async fn openssh_client_logs_in_with_strict_host_key_checking() -> Result<()> {
    bounded(async {
        let sshd = Sshd::start()?;
        let mut cmd = ssh(&sshd, sshd.identity(), sshd.known_hosts());
        cmd.arg("echo logged-in-as-$(id -un)");
        let out = output(cmd).await?;
        ensure!(
            out.status.success(),
            "ssh failed ({}): {}\nsshd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            sshd.log()
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            stdout.trim() == format!("logged-in-as-{}", sshd.user()),
            "stdout {stdout:?}"
        );
        ensure!(
            sshd.host_key_line()
                .starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 AAAA", sshd.port())),
            "host key line {:?}",
            sshd.host_key_line()
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn openssh_client_rejects_a_wrong_known_hosts_entry() -> Result<()> {
    bounded(async {
        let sshd = Sshd::start()?;
        let other = Sshd::start()?;
        // `other`'s host key, filed under `sshd`'s address.
        let (kind, blob) = other.host_key().type_and_blob()?;
        let wrong = sshd.dir().join("wrong_known_hosts");
        std::fs::write(
            &wrong,
            format!("[127.0.0.1]:{} {kind} {blob}\n", sshd.port()),
        )?;
        let mut cmd = ssh(&sshd, sshd.identity(), &wrong);
        cmd.arg("true");
        let out = output(cmd).await?;
        ensure!(!out.status.success(), "ssh accepted a wrong host key");
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            stderr.contains("HOST IDENTIFICATION HAS CHANGED"),
            "ssh stderr: {stderr}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn extra_user_keys_are_authorized() -> Result<()> {
    bounded(async {
        let sshd = Sshd::builder()
            .extra_user_key(KeyType::Rsa)
            .extra_user_key(KeyType::Ecdsa)
            .start()?;
        for key in sshd.extra_identities() {
            let mut cmd = ssh(&sshd, &key.private, sshd.known_hosts());
            cmd.arg("true");
            let out = output(cmd).await?;
            ensure!(
                out.status.success(),
                "ssh with {} failed: {}",
                key.private.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn extra_config_overrides_the_base_config() -> Result<()> {
    bounded(async {
        let sshd = Sshd::builder().config("AllowTcpForwarding local").start()?;
        let mut cmd = ssh(&sshd, sshd.identity(), sshd.known_hosts());
        cmd.args([
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            "0:127.0.0.1:9",
        ]);
        let out = output(cmd).await?;
        ensure!(
            !out.status.success(),
            "remote forward was allowed despite AllowTcpForwarding local"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            stderr.contains("remote port forwarding failed"),
            "ssh stderr: {stderr}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_connections_drops_live_sessions_but_not_the_listener() -> Result<()> {
    bounded(async {
        let sshd = Sshd::start()?;
        let mut cmd = ssh(&sshd, sshd.identity(), sshd.known_hosts());
        cmd.arg("sleep 60")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().context("starting ssh")?;
        poll_until(
            "the ssh session to appear",
            Duration::from_secs(10),
            || async {
                // A connection is "live" once its session's shell exists, i.e. the
                // per-connection process has children of its own.
                let pids = tunneld_tests::procs::descendants_of(sshd.pid());
                Ok((pids.len() >= 2).then_some(()))
            },
        )
        .await?;
        let killed = sshd.kill_connections()?;
        ensure!(killed >= 1, "nothing was killed");
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .context("ssh client still running 10 s after its connection was killed")??;
        ensure!(
            !status.success(),
            "ssh exited successfully after its connection was killed"
        );
        // The listener is still there: a new login works.
        let mut again = ssh(&sshd, sshd.identity(), sshd.known_hosts());
        again.arg("true");
        let out = output(again).await?;
        ensure!(
            out.status.success(),
            "new login after kill_connections failed: {}",
            tail(&sshd.log(), 20)
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_sshd_kills_it_and_frees_its_port() -> Result<()> {
    bounded(async {
        let sshd = Sshd::start()?;
        let (pid, port) = (sshd.pid(), sshd.port());
        drop(sshd);
        ensure!(
            !tunneld_tests::procs::is_alive(pid),
            "sshd {pid} survived Drop"
        );
        ensure!(
            peers::port_is_free(port),
            "port {port} still taken after Drop"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_echo_digest_flood_and_http() -> Result<()> {
    bounded(async {
        let echo = TcpPeer::echo().await?;
        let data = random_bytes(300_000);
        let back = exchange(echo.port(), &data, Duration::from_secs(10)).await?;
        ensure!(
            back == data,
            "echo returned {} bytes, different from the {} sent",
            back.len(),
            data.len()
        );

        let digest = TcpPeer::digest().await?;
        let reply = exchange(digest.port(), &data, Duration::from_secs(10)).await?;
        ensure!(
            reply == sha256_hex(&data).as_bytes(),
            "digest reply {:?}",
            String::from_utf8_lossy(&reply)
        );

        let flood = TcpPeer::flood(1_000_000).await?;
        let mut s = connect(flood.port()).await?;
        let got = expect_closed(&mut s, Duration::from_secs(10)).await?;
        ensure!(got.len() == 1_000_000, "flood sent {} bytes", got.len());

        let mixed = TcpPeer::flood_or_echo(10).await?;
        let back = exchange(mixed.port(), b"Echo", Duration::from_secs(10)).await?;
        ensure!(back == b"Echo", "flood_or_echo echoed {back:?}");
        let mut s = connect(mixed.port()).await?;
        s.write_all(&[peers::FLOOD_REQUEST]).await?;
        let got = expect_closed(&mut s, Duration::from_secs(10)).await?;
        ensure!(got.len() == 10, "flood_or_echo flooded {} bytes", got.len());

        let http = HttpPeer::start("hello from the peer").await?;
        let (status, body) = peers::http_get(&format!("http://{}/", http.addr())).await?;
        ensure!(
            status == 200 && body == "hello from the peer",
            "GET / gave {status} {body:?}"
        );
        let (status, body) = peers::http_get(&format!("http://{}/echo/xyz", http.addr())).await?;
        ensure!(
            status == 200 && body == "xyz",
            "GET /echo/xyz gave {status} {body:?}"
        );

        let port = echo.port();
        ensure!(
            !peers::port_is_free(port),
            "port_is_free says a listening port is free"
        );
        drop(echo);
        poll_until(
            "the echo port to be released",
            Duration::from_secs(5),
            || async { Ok(peers::port_is_free(port).then_some(())) },
        )
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_sshd_kills_orphaned_session_processes() -> Result<()> {
    bounded(async {
        let sshd = Sshd::start()?;
        let mut cmd = ssh(&sshd, sshd.identity(), sshd.known_hosts());
        // The ssh session ends at once; the background sleep outlives it,
        // no longer a descendant of sshd.
        cmd.arg("nohup sleep 300 >/dev/null 2>&1 &");
        let out = output(cmd).await?;
        ensure!(
            out.status.success(),
            "ssh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let orphans = poll_until(
            "the orphaned sleep to be found",
            Duration::from_secs(10),
            || async {
                let pids = sshd.session_processes();
                Ok((!pids.is_empty()).then_some(pids))
            },
        )
        .await?;
        drop(sshd);
        poll_until(
            "orphaned session processes to die",
            Duration::from_secs(5),
            || async {
                let alive = tunneld_tests::procs::alive(orphans.iter().copied());
                if alive.is_empty() {
                    Ok(Some(()))
                } else {
                    anyhow::bail!("still alive: {alive:?}")
                }
            },
        )
        .await
    })
    .await
}
