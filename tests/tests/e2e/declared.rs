//! Tunnels declared in the config file (`[tunnels.NAME]`): opened at
//! start, shown as declared, closed only by the file, retried while they
//! cannot open.

use std::net::TcpListener;

use anyhow::{Context, Result, ensure};
use tonic::Code;
use tunnel_proto::v1::{
    CloseRequest, Tunnel, TunnelSource, TunnelState, WatchRequest, WatchResponse,
    watch_response::Event,
};
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Sshd, data, sshd};

use crate::support::{Bed, IO_TIMEOUT, carries, e2e, expect_status, list};

fn table(pairs: &[(&str, &str)]) -> toml::Table {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), toml::Value::from(*v)))
        .collect()
}

/// Waits until the tunnel named `name` is listed in `state`.
async fn named(bed: &Bed, name: &str, state: TunnelState) -> Result<Tunnel> {
    poll_until(
        &format!("tunnel {name} to be {state:?}"),
        IO_TIMEOUT,
        || {
            let client = bed.client.clone();
            async move {
                let tunnels = list(&client).await?.tunnels;
                let t = tunnels.into_iter().find(|t| t.name == name);
                match t {
                    Some(t) if t.state == state as i32 => Ok(Some(t)),
                    other => anyhow::bail!("listed: {other:?}"),
                }
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_tunnels_open_at_start_and_only_the_file_closes_them() -> Result<()> {
    e2e(async {
        let echo = TcpPeer::echo().await?;
        let service = TcpPeer::echo().await?;
        let (lport, rport) = (sshd::free_port()?, sshd::free_port()?);
        let sshd = Sshd::start()?;
        let bed = Bed::with(sshd, |b| {
            b.tunnel(
                "db",
                table(&[("local", &format!("{lport}:127.0.0.1:{}", echo.port()))]),
            )
            .tunnel(
                "web",
                table(&[
                    ("host", "default"),
                    ("remote", &format!("{rport}:127.0.0.1:{}", service.port())),
                ]),
            )
        })
        .await?;
        let db = named(&bed, "db", TunnelState::Open).await?;
        let web = named(&bed, "web", TunnelState::Open).await?;
        for t in [&db, &web] {
            ensure!(
                t.source == TunnelSource::Declared as i32,
                "not shown as declared: {t:?}"
            );
        }
        carries(lport, "declared local forward db").await?;
        carries(rport, "declared remote forward web").await?;
        for key in ["db", db.id.as_str()] {
            expect_status(
                "closing a declared tunnel",
                bed.client
                    .clone()
                    .close(CloseRequest { id: key.into() })
                    .await,
                Code::FailedPrecondition,
                &["tunneld.toml"],
            )?;
        }
        // Still there and carrying after the refusals.
        carries(lport, "db after the refused close").await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_tunnel_that_cannot_open_is_listed_as_failed_and_retried() -> Result<()> {
    e2e(async {
        let echo = TcpPeer::echo().await?;
        let port = sshd::free_port()?;
        // Someone else holds the port when tunneld starts.
        let squatter = TcpListener::bind(("127.0.0.1", port))?;
        let sshd = Sshd::start()?;
        let bed = Bed::with(sshd, |b| {
            b.tunnel(
                "db",
                table(&[("local", &format!("{port}:127.0.0.1:{}", echo.port()))]),
            )
        })
        .await?;
        let failed = named(&bed, "db", TunnelState::Failed).await?;
        ensure!(
            failed.state_detail.contains("in use")
                || failed.state_detail.contains(&port.to_string()),
            "the reason does not name the port: {failed:?}"
        );
        // Watch shows it as List does, whole or by its name, and tells
        // when it opens.
        let mut all = watch(&bed, "").await?;
        let mut one = watch(&bed, "db").await?;
        for (what, events) in [("Watch", &mut all), ("Watch db", &mut one)] {
            let first = tunnel_event(events, |t| t.name == "db").await?;
            ensure!(
                first.id == failed.id && first.state == TunnelState::Failed as i32,
                "{what} began with {first:?}, not the FAILED tunnel {}",
                failed.id
            );
        }
        drop(squatter);
        named(&bed, "db", TunnelState::Open).await?;
        for (what, events) in [("Watch", &mut all), ("Watch db", &mut one)] {
            let open = tunnel_event(events, |t| {
                t.name == "db" && t.state == TunnelState::Open as i32
            })
            .await
            .with_context(|| format!("{what}: db opening"))?;
            ensure!(open.id == failed.id, "{what}: db opened as {open:?}");
        }
        carries(port, "db once its port was free").await?;
        Ok(())
    })
    .await
}

/// A Watch of `tunnel` (an id or name; "" for all).
async fn watch(bed: &Bed, tunnel: &str) -> Result<tonic::Streaming<WatchResponse>> {
    Ok(bed
        .client
        .clone()
        .watch(WatchRequest {
            tunnel_id: tunnel.into(),
        })
        .await
        .with_context(|| format!("Watch {tunnel:?}"))?
        .into_inner())
}

/// The next tunnel message of `events` that `pick` takes, within
/// [`IO_TIMEOUT`].
async fn tunnel_event(
    events: &mut tonic::Streaming<WatchResponse>,
    pick: impl Fn(&Tunnel) -> bool,
) -> Result<Tunnel> {
    let deadline = tokio::time::Instant::now() + IO_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, events.message())
            .await
            .context("no such tunnel message in time")??
            .context("the Watch ended")?;
        if let Some(Event::Tunnel(t)) = msg.event
            && pick(&t)
        {
            return Ok(t);
        }
    }
}

/// Writes `config` (TOML) over the daemon's config file and sends SIGHUP.
fn rewrite_and_hup(bed: &Bed, config: &str) -> Result<()> {
    let path = bed
        .daemon
        .config_file()
        .context("the daemon has no config file")?;
    std::fs::write(path, config)?;
    bed.daemon.signal(nix::sys::signal::Signal::SIGHUP)
}

/// The config file with `tunnels` as `(name, local spec)`.
fn with_tunnels(tunnels: &[(&str, String)]) -> String {
    let mut out = String::from("[hosts]\n");
    for (name, spec) in tunnels {
        out.push_str(&format!("\n[tunnels.{name}]\nlocal = \"{spec}\"\n"));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_adds_and_removes_declared_tunnels_while_an_unchanged_one_carries_on() -> Result<()>
{
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CHUNK: usize = 4 * 1024 * 1024;
    const CHUNKS: usize = 64; // 256 MiB
    e2e(async {
        let digest = TcpPeer::digest().await?;
        let echo = TcpPeer::echo().await?;
        let (keep_port, gone_port, new_port) =
            (sshd::free_port()?, sshd::free_port()?, sshd::free_port()?);
        let keep = ("keep", format!("{keep_port}:127.0.0.1:{}", digest.port()));
        let gone = ("gone", format!("{gone_port}:127.0.0.1:{}", echo.port()));
        let new = ("new", format!("{new_port}:127.0.0.1:{}", echo.port()));
        let sshd = Sshd::start()?;
        let bed = Bed::with(sshd, |b| {
            b.tunnel("keep", table(&[("local", &keep.1)]))
                .tunnel("gone", table(&[("local", &gone.1)]))
        })
        .await?;
        let kept = named(&bed, "keep", TunnelState::Open).await?;
        named(&bed, "gone", TunnelState::Open).await?;

        // 256 MiB through `keep`, the reload in the middle of it.
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", keep_port)).await?;
        let chunk = data::random_bytes(CHUNK);
        let mut hasher = Sha256::new();
        for i in 0..CHUNKS {
            if i == CHUNKS / 4 {
                rewrite_and_hup(&bed, &with_tunnels(&[keep.clone(), new.clone()]))?;
            }
            tokio::time::timeout(IO_TIMEOUT, stream.write_all(&chunk)).await??;
            hasher.update(&chunk);
        }
        stream.shutdown().await?;
        let mut answer = String::new();
        tokio::time::timeout(IO_TIMEOUT, stream.read_to_string(&mut answer)).await??;
        ensure!(
            answer == data::hex(&hasher.finalize()),
            "256 MiB through the unchanged tunnel arrived changed: digest {answer:?}"
        );

        let new_t = named(&bed, "new", TunnelState::Open).await?;
        ensure!(new_t.source == TunnelSource::Declared as i32, "{new_t:?}");
        carries(new_port, "the tunnel added by the reload").await?;
        poll_until(
            "the removed tunnel's port to be free",
            IO_TIMEOUT,
            || async { Ok(tunneld_tests::peers::port_is_free(gone_port).then_some(())) },
        )
        .await?;
        let tunnels = list(&bed.client).await?.tunnels;
        ensure!(
            !tunnels.iter().any(|t| t.name == "gone"),
            "removed tunnel still listed: {tunnels:?}"
        );
        let still = tunnels
            .iter()
            .find(|t| t.name == "keep")
            .context("keep gone")?;
        ensure!(
            still.id == kept.id && still.counters.unwrap_or_default().total_connections == 1,
            "the unchanged tunnel was replaced: {still:?} (was {kept:?})"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_config_on_sighup_changes_nothing_and_names_its_line() -> Result<()> {
    e2e(async {
        let echo = TcpPeer::echo().await?;
        let port = sshd::free_port()?;
        let db = ("db", format!("{port}:127.0.0.1:{}", echo.port()));
        let sshd = Sshd::start()?;
        let bed = Bed::with(sshd, |b| b.tunnel("db", table(&[("local", &db.1)]))).await?;
        let before = named(&bed, "db", TunnelState::Open).await?;
        // Line 4 names a host that does not exist; line 7 is no forward.
        let broken = format!(
            "[hosts]\n\n[tunnels.db]\nhost = \"nosuch\"\nlocal = \"{}\"\n[tunnels.x]\nlocal = \"1080\"\n",
            db.1
        );
        rewrite_and_hup(&bed, &broken)?;
        let log = poll_until("tunneld to refuse the config", IO_TIMEOUT, || {
            let log = bed.daemon.log();
            async move { Ok(log.contains("config not reloaded").then_some(log)) }
        })
        .await?;
        ensure!(
            log.contains("tunneld.toml:4:") && log.contains("tunneld.toml:7:"),
            "the refusal does not name both lines: {}",
            crate::support::tail(&log, 20)
        );
        let after = named(&bed, "db", TunnelState::Open).await?;
        ensure!(after.id == before.id, "db was replaced: {after:?}");
        carries(port, "db after the refused reload").await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reload_call_and_tunnelctl_reload_say_what_changed_and_refuse_a_broken_file()
-> Result<()> {
    use tunnel_proto::v1::ReloadRequest;
    e2e(async {
        let echo = TcpPeer::echo().await?;
        let (a_port, b_port) = (sshd::free_port()?, sshd::free_port()?);
        let a = ("a", format!("{a_port}:127.0.0.1:{}", echo.port()));
        let b = ("b", format!("{b_port}:127.0.0.1:{}", echo.port()));
        let sshd = Sshd::start()?;
        let bed = Bed::with(sshd, |bld| bld.tunnel("a", table(&[("local", &a.1)]))).await?;
        named(&bed, "a", TunnelState::Open).await?;
        let path = bed
            .daemon
            .config_file()
            .context("no config file")?
            .to_path_buf();

        std::fs::write(&path, with_tunnels(&[a.clone(), b.clone()]))?;
        let done = bed
            .client
            .clone()
            .reload(ReloadRequest {})
            .await?
            .into_inner();
        ensure!(
            done.added == ["b"] && done.unchanged == ["a"] && done.removed.is_empty(),
            "Reload said {done:?}"
        );
        named(&bed, "b", TunnelState::Open).await?;
        carries(b_port, "the tunnel the Reload call added").await?;

        std::fs::write(&path, "[tunnels.a]\nlocal = \"nonsense\"\n")?;
        expect_status(
            "Reload of a broken file",
            bed.client.clone().reload(ReloadRequest {}).await,
            Code::FailedPrecondition,
            &["tunneld.toml:2:"],
        )?;
        named(&bed, "b", TunnelState::Open).await?;

        std::fs::write(&path, with_tunnels(std::slice::from_ref(&a)))?;
        let out = crate::cli::ctl(&bed)?.run(["reload"]).await?;
        out.success()?;
        ensure!(
            out.stdout_text() == "removed: b\nunchanged: 1\n",
            "tunnelctl reload printed {:?}",
            out.stdout_text()
        );
        poll_until("b's port to be free", IO_TIMEOUT, || async {
            Ok(tunneld_tests::peers::port_is_free(b_port).then_some(()))
        })
        .await?;
        carries(a_port, "the tunnel no reload changed").await?;
        Ok(())
    })
    .await
}
