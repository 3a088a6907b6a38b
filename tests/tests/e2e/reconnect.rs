//! Losing the SSH server while tunnels run over it, and getting it back:
//! sshd killed with every session and restarted on the same port, a network
//! path that silently stops carrying bytes (a [`Blackhole`] relay), a remote
//! port taken while the server was away, and Close racing a reconnect.
//!
//! tunneld is started with short backoff bounds (`--reconnect-min 200ms
//! --reconnect-max 2s` unless a test needs others), so every recovery is
//! expected within a few seconds; the recovery and detection times are
//! printed (`--nocapture` shows them).

use std::net::TcpListener as StdTcpListener;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::AsyncWriteExt;
use tunnel_proto::v1::{
    CloseRequest, OpenRemoteForwardRequest, SshConnectionState, SshHost, Tunnel, TunnelState,
    WatchRequest, WatchResponse, watch_response::Event,
};
use tunneld_tests::blackhole::Blackhole;
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Client, Sshd, TunneldBuilder};

use crate::forward_remote::open_remote;
use crate::support::{
    Bed, IO_TIMEOUT, bounded, connect, e2e, exchange, expect_closed, find_tunnel, list, local_port,
    open_local, remote_port, ssh, tail,
};

/// The bound on getting traffic through again once the server is back. With
/// `--reconnect-max 2s` the next attempt is at most 2.4 s away (+20 %
/// jitter); the rest is slack for a loaded machine.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

/// How long tunneld may take to notice that sshd was killed (the kernel
/// closes its sockets, so it should be at once).
const NOTICE_BOUND: Duration = Duration::from_secs(10);

/// Backoff bounds short enough for tests.
pub fn fast_reconnect(b: TunneldBuilder) -> TunneldBuilder {
    b.arg("--reconnect-min")
        .arg("200ms")
        .arg("--reconnect-max")
        .arg("2s")
}

/// The name of a host connection state, for messages.
pub fn host_state(state: i32) -> &'static str {
    SshConnectionState::try_from(state).map_or("?", |s| s.as_str_name())
}

/// The name of a tunnel state, for messages.
pub fn tunnel_state(state: i32) -> &'static str {
    TunnelState::try_from(state).map_or("?", |s| s.as_str_name())
}

/// The `default` host as List shows it.
pub async fn default_host(client: &Client) -> Result<SshHost> {
    list(client)
        .await?
        .hosts
        .into_iter()
        .find(|h| h.name == "default")
        .context("List shows no `default` host")
}

/// The tunnel with this id; an error if List does not show it.
pub async fn tunnel(client: &Client, id: &str) -> Result<Tunnel> {
    find_tunnel(client, id)
        .await?
        .with_context(|| format!("tunnel {id} is not in List"))
}

/// Polls until tunnel `id` is in `state`; returns it.
pub async fn wait_tunnel_state(
    client: &Client,
    id: &str,
    state: TunnelState,
    limit: Duration,
) -> Result<Tunnel> {
    poll_until(
        &format!("tunnel {id} to be {}", state.as_str_name()),
        limit,
        || async {
            let t = tunnel(client, id).await?;
            if t.state == state as i32 {
                Ok(Some(t))
            } else {
                bail!(
                    "tunnel {id} is {} ({:?})",
                    tunnel_state(t.state),
                    t.state_detail
                )
            }
        },
    )
    .await
}

/// Echo round trip through `port`: fails unless every byte comes back.
pub async fn echo_ok(port: u16, data: &[u8], limit: Duration) -> Result<()> {
    let back = exchange(port, data, limit).await?;
    ensure!(
        back == data,
        "echo through port {port}: sent {} bytes, got {} back{}",
        data.len(),
        back.len(),
        if back.len() == data.len() {
            " (different)"
        } else {
            ""
        }
    );
    Ok(())
}

/// Digest round trip through `port` (to a [`TcpPeer::digest`] peer).
pub async fn digest_ok(port: u16, data: &[u8], limit: Duration) -> Result<()> {
    let back = exchange(port, data, limit).await?;
    ensure!(
        back == sha256_hex(data).as_bytes(),
        "digest through port {port}: got {:?}",
        String::from_utf8_lossy(&back)
    );
    Ok(())
}

/// Polls a check of traffic through a forward until it passes; returns how
/// long that took.
pub async fn until_traffic<F, Fut>(what: &str, limit: Duration, check: F) -> Result<Duration>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let start = Instant::now();
    poll_until(what, limit, || async { check().await.map(Some) }).await?;
    Ok(start.elapsed())
}

/// Stops the fixture sshd (blocking the calling worker thread a moment, as
/// the fixture's other process helpers do).
fn stop_sshd(sshd: &mut Sshd) -> Result<()> {
    let killed = sshd.stop().context("stopping sshd")?;
    ensure!(
        killed >= 2,
        "stopping sshd killed only {killed} process(es)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_come_back_by_themselves_after_sshd_restarts() -> Result<()> {
    e2e(async {
        let mut bed = Bed::with(Sshd::start()?, fast_reconnect).await?;
        let echo = TcpPeer::echo().await?;
        let digest = TcpPeer::digest().await?;
        let local = open_local(&bed.client, "", echo.port()).await?;
        let remote = open_remote(&bed.client, "", digest.port())
            .await
            .context("OpenRemoteForward")?;
        let (lport, rport) = (local_port(&local)?, remote_port(&remote)?);
        let data = random_bytes(200 * 1024);
        echo_ok(lport, &data, IO_TIMEOUT).await?;
        digest_ok(rport, &data, IO_TIMEOUT).await?;

        stop_sshd(&mut bed.sshd)?;
        // Attempts keep failing while the server is away, further and further
        // apart: by attempt 5 (after 0.2 + 0.4 + 0.8 + 1.6 s) the next delay is
        // at the 2 s cap, so the recovery measured below is the slow case.
        let host =
            poll_until(
                "host RECONNECTING with attempt >= 5",
                // About 3 s of backoff (+20 % jitter) and five refused connects.
                Duration::from_secs(10),
                || async {
                    let h = default_host(&bed.client).await?;
                    Ok((h.state == SshConnectionState::Reconnecting as i32
                        && h.reconnect_attempt >= 5)
                        .then_some(h))
                },
            )
            .await?;
        eprintln!(
            "while down: host {} attempt {} ({:?})",
            host_state(host.state),
            host.reconnect_attempt,
            host.state_detail
        );
        for t in [&local, &remote] {
            let now = tunnel(&bed.client, &t.id).await?;
            ensure!(
                now.state == TunnelState::Reconnecting as i32,
                "tunnel {} is {} ({:?}) while its server is down",
                t.id,
                tunnel_state(now.state),
                now.state_detail
            );
        }
        ensure!(
            !port_is_free(lport),
            "the local forward let go of port {lport} while reconnecting"
        );

        bed.sshd.restart()?;
        let (local_took, remote_took) = tokio::join!(
            until_traffic("the local forward to carry again", RECOVERY_BOUND, || {
                echo_ok(lport, &data, Duration::from_secs(5))
            }),
            until_traffic("the remote forward to carry again", RECOVERY_BOUND, || {
                digest_ok(rport, &data, Duration::from_secs(5))
            }),
        );
        let (local_took, remote_took) = (local_took?, remote_took?);
        eprintln!(
            "recovery after sshd restart: local forward {} ms, remote forward {} ms \
             (--reconnect-min 200ms --reconnect-max 2s)",
            local_took.as_millis(),
            remote_took.as_millis()
        );

        let host = default_host(&bed.client).await?;
        ensure!(
            host.state == SshConnectionState::Connected as i32,
            "host is {} after traffic flows again",
            host_state(host.state)
        );
        for before in [&local, &remote] {
            let after = tunnel(&bed.client, &before.id).await?;
            ensure!(
                after.state == TunnelState::Open as i32,
                "tunnel {} is {} ({:?}) after recovery",
                after.id,
                tunnel_state(after.state),
                after.state_detail
            );
            ensure!(
                after.local == before.local && after.remote == before.remote,
                "tunnel {} moved: {:?} -> {:?} before, {:?} -> {:?} after",
                after.id,
                before.local,
                before.remote,
                after.local,
                after.remote
            );
            ensure!(
                after.restores == 1,
                "tunnel {} restores = {} after one outage",
                after.id,
                after.restores
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_made_during_the_outage_waits_for_the_link() -> Result<()> {
    e2e(async {
        let mut bed = Bed::with(Sshd::start()?, |b| {
            fast_reconnect(b).arg("--reconnect-wait").arg("10s")
        })
        .await?;
        let echo = TcpPeer::echo().await?;
        let local = open_local(&bed.client, "", echo.port()).await?;
        let port = local_port(&local)?;
        echo_ok(port, b"before", IO_TIMEOUT).await?;

        stop_sshd(&mut bed.sshd)?;
        wait_tunnel_state(
            &bed.client,
            &local.id,
            TunnelState::Reconnecting,
            NOTICE_BOUND,
        )
        .await?;
        let data = random_bytes(64 * 1024);
        let sent = data.clone();
        let started = Instant::now();
        let waiting =
            tokio::spawn(async move { echo_ok(port, &sent, Duration::from_secs(20)).await });
        // The outage has to last for the connection to wait through it;
        // nothing to poll for here but time.
        tokio::time::sleep(Duration::from_secs(1)).await;
        ensure!(
            !waiting.is_finished(),
            "the connection made during the outage ended before the server came back: {:?}",
            waiting.await?
        );
        bed.sshd.restart()?;
        waiting
            .await?
            .context("the connection made during the outage did not complete")?;
        eprintln!(
            "a connection made during the outage completed after {} ms",
            started.elapsed().as_millis()
        );
        let t = tunnel(&bed.client, &local.id).await?;
        let c = t.counters.context("no counters")?;
        ensure!(
            c.failed_connections == 0,
            "a connection that completed was counted failed: {c:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_waiting_longer_than_reconnect_wait_is_closed() -> Result<()> {
    e2e(async {
        let reconnect_wait = Duration::from_secs(1);
        let mut bed = Bed::with(Sshd::start()?, |b| {
            fast_reconnect(b).arg("--reconnect-wait").arg("1s")
        })
        .await?;
        let echo = TcpPeer::echo().await?;
        let local = open_local(&bed.client, "", echo.port()).await?;
        let port = local_port(&local)?;
        echo_ok(port, b"before", IO_TIMEOUT).await?;
        let mut events = watch(&bed.client, &local.id).await?;

        stop_sshd(&mut bed.sshd)?;
        wait_tunnel_state(
            &bed.client,
            &local.id,
            TunnelState::Reconnecting,
            NOTICE_BOUND,
        )
        .await?;
        let mut stream = connect(port).await?;
        stream.write_all(b"anyone there?").await?;
        let started = Instant::now();
        let got = expect_closed(&mut stream, reconnect_wait + Duration::from_secs(5))
            .await
            .context("a connection waiting for a server that stays down was not closed")?;
        let took = started.elapsed();
        eprintln!(
            "with --reconnect-wait 1s and the server down, the connection was closed after {} ms",
            took.as_millis()
        );
        ensure!(got.is_empty(), "got {got:?} from a server that is down");
        ensure!(
            took >= reconnect_wait - Duration::from_millis(200),
            "closed after {took:?}, before --reconnect-wait (1s) passed"
        );

        // Connection 1 was the one before the outage; its close may be
        // reported after the Watch started.
        let closed = loop {
            match next_event(&mut events).await? {
                Some(Event::ConnectionClosed(c)) if c.connection_id >= 2 => break c,
                Some(_) => {}
                None => bail!("Watch ended before the connection closed"),
            }
        };
        eprintln!("ConnectionClosed.error: {:?}", closed.error);
        ensure!(
            !closed.error.is_empty(),
            "a connection closed for want of the link reports no error"
        );
        ensure!(
            closed.tunnel_id == local.id,
            "ConnectionClosed names tunnel {:?}",
            closed.tunnel_id
        );
        let t = tunnel(&bed.client, &local.id).await?;
        let c = t.counters.context("no counters")?;
        ensure!(
            c.failed_connections == 1,
            "failed_connections = {} after one connection timed out waiting",
            c.failed_connections
        );

        // tunneld is fine: running, answering, still reconnecting, and the
        // forward works once the server is back.
        ensure!(
            bed.daemon.try_wait()?.is_none(),
            "tunneld exited:\n{}",
            tail(&bed.daemon.log(), 40)
        );
        ensure!(
            t.state == TunnelState::Reconnecting as i32,
            "tunnel is {} with the server still down",
            tunnel_state(t.state)
        );
        ensure!(!port_is_free(port), "the forward let go of port {port}");
        bed.sshd.restart()?;
        until_traffic("the forward to carry again", RECOVERY_BOUND, || {
            echo_ok(port, b"after", Duration::from_secs(5))
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silently_dead_path_is_detected_by_keepalives_and_recovered() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let relay = Blackhole::to_sshd(&sshd).await?;
        let daemon = TunneldBuilder::new(relay.host_spec(&sshd)?)
            .arg("--keepalive-interval")
            .arg("1s")
            .arg("--keepalive-count")
            .arg("2")
            .arg("--reconnect-min")
            .arg("200ms")
            .arg("--reconnect-max")
            .arg("1s")
            .start()
            .await?;
        let client = daemon.client();
        let bed = Bed {
            daemon,
            sshd,
            client,
        };
        let echo = TcpPeer::echo().await?;
        let local = open_local(&bed.client, "", echo.port()).await?;
        let port = local_port(&local)?;
        echo_ok(port, b"through the relay", IO_TIMEOUT).await?;
        let accepted = relay.accepted();
        ensure!(accepted == 1, "the relay accepted {accepted} connections");

        relay.freeze();
        let frozen_at = Instant::now();
        // 1 s x (2 + 1) plus slack for a loaded machine.
        let detect_bound = Duration::from_secs(6);
        let host = poll_until(
            "the host to leave CONNECTED after the path went silent",
            detect_bound,
            || async {
                let h = default_host(&bed.client).await?;
                Ok((h.state != SshConnectionState::Connected as i32).then_some(h))
            },
        )
        .await?;
        let detected = frozen_at.elapsed();
        eprintln!(
            "silent path detected after {} ms (--keepalive-interval 1s --keepalive-count 2): \
             host {} ({:?})",
            detected.as_millis(),
            host_state(host.state),
            host.state_detail
        );
        ensure!(
            host.state == SshConnectionState::Reconnecting as i32,
            "host is {}, not RECONNECTING, with a tunnel over it",
            host_state(host.state)
        );
        ensure!(
            bed.sshd.connection_count() >= 1,
            "the relay closed the frozen connection (sshd has none left)"
        );

        relay.pass();
        let passed_at = Instant::now();
        until_traffic("the forward to carry again", RECOVERY_BOUND, || {
            echo_ok(port, b"path is back", Duration::from_secs(5))
        })
        .await?;
        eprintln!(
            "forward carried again {} ms after the path came back",
            passed_at.elapsed().as_millis()
        );
        ensure!(
            relay.accepted() > accepted,
            "no new TCP connection through the relay after the path came back"
        );
        let t = wait_tunnel_state(&bed.client, &local.id, TunnelState::Open, IO_TIMEOUT).await?;
        ensure!(
            t.restores == 1,
            "restores = {} after one outage",
            t.restores
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_port_taken_during_the_outage_fails_then_comes_back_when_freed() -> Result<()> {
    e2e(async {
        let mut bed = Bed::with(Sshd::start()?, |b| {
            b.arg("--reconnect-min")
                .arg("200ms")
                .arg("--reconnect-max")
                .arg("1s")
        })
        .await?;
        let echo = TcpPeer::echo().await?;
        let remote = bed
            .client
            .clone()
            .open_remote_forward(OpenRemoteForwardRequest {
                remote_bind_address: "127.0.0.1".into(),
                remote_port: 0,
                local_host: "127.0.0.1".into(),
                local_port: echo.port().into(),
                ..Default::default()
            })
            .await
            .context("OpenRemoteForward")?
            .into_inner()
            .tunnel
            .context("no tunnel in OpenRemoteForwardResponse")?;
        let rport = remote_port(&remote)?;
        echo_ok(rport, b"before", IO_TIMEOUT).await?;

        stop_sshd(&mut bed.sshd)?;
        ensure!(
            port_is_free(rport),
            "remote port {rport} still taken with sshd stopped"
        );
        let squatter = StdTcpListener::bind(("127.0.0.1", rport))
            .with_context(|| format!("taking 127.0.0.1:{rport} while sshd is down"))?;
        bed.sshd.restart()?;

        let failed =
            wait_tunnel_state(&bed.client, &remote.id, TunnelState::Failed, RECOVERY_BOUND).await?;
        eprintln!("remote port taken: state_detail {:?}", failed.state_detail);
        ensure!(
            failed.state_detail.contains(&rport.to_string()),
            "state_detail {:?} does not name port {rport}",
            failed.state_detail
        );
        let host = default_host(&bed.client).await?;
        ensure!(
            host.state == SshConnectionState::Connected as i32,
            "host is {} while only the remote port is refused",
            host_state(host.state)
        );

        drop(squatter);
        let freed_at = Instant::now();
        let open = wait_tunnel_state(&bed.client, &remote.id, TunnelState::Open, RECOVERY_BOUND)
            .await
            .context("the remote forward did not come back once its port was free")?;
        eprintln!(
            "remote forward OPEN again {} ms after its port was freed",
            freed_at.elapsed().as_millis()
        );
        ensure!(
            remote_port(&open)? == rport,
            "the forward came back on another port: {:?}",
            open.remote
        );
        ensure!(open.restores == 1, "restores = {}", open.restores);
        until_traffic("the remote forward to carry again", IO_TIMEOUT, || {
            echo_ok(rport, b"after", Duration::from_secs(5))
        })
        .await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_a_tunnel_while_reconnecting_frees_its_port_for_good() -> Result<()> {
    e2e(async {
        let mut bed = Bed::with(Sshd::start()?, fast_reconnect).await?;
        let echo = TcpPeer::echo().await?;
        let closing = open_local(&bed.client, "", echo.port()).await?;
        let kept = open_local(&bed.client, "", echo.port()).await?;
        let (closing_port, kept_port) = (local_port(&closing)?, local_port(&kept)?);
        echo_ok(closing_port, b"x", IO_TIMEOUT).await?;

        stop_sshd(&mut bed.sshd)?;
        wait_tunnel_state(
            &bed.client,
            &closing.id,
            TunnelState::Reconnecting,
            NOTICE_BOUND,
        )
        .await?;
        let closed = tokio::time::timeout(
            IO_TIMEOUT,
            bed.client.clone().close(CloseRequest {
                id: closing.id.clone(),
            }),
        )
        .await
        .context("Close of a reconnecting tunnel hung")?
        .context("Close of a reconnecting tunnel")?
        .into_inner()
        .tunnel
        .context("no tunnel in CloseResponse")?;
        ensure!(
            closed.state == TunnelState::Closed as i32,
            "CloseResponse state {}",
            tunnel_state(closed.state)
        );
        ensure!(
            port_is_free(closing_port),
            "port {closing_port} still taken when Close returned"
        );

        bed.sshd.restart()?;
        // The other tunnel is restored, which proves the reconnect ran.
        until_traffic("the kept forward to carry again", RECOVERY_BOUND, || {
            echo_ok(kept_port, b"kept", Duration::from_secs(5))
        })
        .await?;
        let t = wait_tunnel_state(&bed.client, &kept.id, TunnelState::Open, IO_TIMEOUT).await?;
        ensure!(t.restores == 1, "kept tunnel restores = {}", t.restores);
        let ids: Vec<String> = list(&bed.client)
            .await?
            .tunnels
            .into_iter()
            .map(|t| t.id)
            .collect();
        ensure!(
            ids == [kept.id.clone()],
            "List shows {ids:?} after the reconnect; the closed tunnel {} came back",
            closing.id
        );
        ensure!(
            port_is_free(closing_port),
            "the closed tunnel's port {closing_port} is taken again after the reconnect"
        );
        Ok(())
    })
    .await
}

/// Opens `Watch(tunnel_id)` and reads its initial messages up to `synced`.
async fn watch(client: &Client, tunnel_id: &str) -> Result<tonic::Streaming<WatchResponse>> {
    let mut events = client
        .clone()
        .watch(WatchRequest {
            tunnel_id: tunnel_id.into(),
        })
        .await
        .context("Watch")?
        .into_inner();
    loop {
        match next_event(&mut events).await? {
            Some(Event::Synced(_)) => return Ok(events),
            Some(_) => {}
            None => bail!("Watch ended before `synced`"),
        }
    }
}

/// The next Watch event (`None` when the call ended with OK), bounded by
/// [`IO_TIMEOUT`].
pub async fn next_event(events: &mut tonic::Streaming<WatchResponse>) -> Result<Option<Event>> {
    match tokio::time::timeout(IO_TIMEOUT, events.message()).await {
        Err(_) => bail!("no Watch message within {IO_TIMEOUT:?}"),
        Ok(Ok(None)) => Ok(None),
        Ok(Err(status)) => bail!("Watch ended with {status:?}"),
        Ok(Ok(Some(msg))) => Ok(Some(msg.event.context("Watch message without an event")?)),
    }
}

// The fixtures this module relies on, checked against the real OpenSSH
// client and plain sockets (no tunneld).

#[tokio::test(flavor = "multi_thread")]
async fn sshd_stops_with_its_sessions_and_restarts_on_the_same_port() -> Result<()> {
    bounded(async {
        let mut sshd = Sshd::start()?;
        let port = sshd.port();
        let mut session = ssh(&sshd, sshd.identity(), sshd.known_hosts());
        session
            .arg("sleep 60")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut session = session.spawn().context("starting ssh")?;
        poll_until("the ssh session to start", IO_TIMEOUT, || async {
            Ok((!sshd.session_processes().is_empty()).then_some(()))
        })
        .await?;

        sshd.stop()?;
        ensure!(!sshd.is_running(), "is_running after stop");
        ensure!(port_is_free(port), "port {port} taken after stop");
        ensure!(
            sshd.session_processes().is_empty(),
            "sessions survived stop: {:?}",
            sshd.session_processes()
        );
        let status = tokio::time::timeout(IO_TIMEOUT, session.wait())
            .await
            .context("ssh client still running after its server was stopped")??;
        ensure!(!status.success(), "ssh exited successfully");
        ensure!(sshd.stop()? == 0, "a second stop killed something");

        sshd.restart()?;
        ensure!(
            sshd.port() == port && sshd.is_running(),
            "restarted elsewhere"
        );
        // The same host key under the same name: strict checking passes.
        let mut again = ssh(&sshd, sshd.identity(), sshd.known_hosts());
        again.arg("echo back");
        let out = tokio::time::timeout(Duration::from_secs(20), again.output())
            .await
            .context("ssh after restart hung")??;
        ensure!(
            out.status.success() && out.stdout == b"back\n",
            "ssh after restart: {} {}\nsshd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail(&sshd.log(), 30)
        );
        ensure!(sshd.restart().is_err(), "restart of a running sshd worked");
        let pid = sshd.pid();
        drop(sshd);
        ensure!(
            !tunneld_tests::procs::is_alive(pid),
            "restarted sshd survived Drop"
        );
        ensure!(port_is_free(port), "port {port} taken after Drop");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn blackhole_freezes_both_ways_without_closing_and_passes_again() -> Result<()> {
    use tokio::io::AsyncReadExt;
    /// Long enough for a relayed byte to arrive many times over on loopback.
    const QUIET: Duration = Duration::from_millis(500);

    bounded(async {
        let echo = TcpPeer::echo().await?;
        let relay = Blackhole::start(echo.addr()).await?;
        let mut first = connect(relay.port()).await?;
        let mut buf = [0u8; 16];
        first.write_all(b"a").await?;
        tokio::time::timeout(IO_TIMEOUT, first.read_exact(&mut buf[..1])).await??;
        ensure!(&buf[..1] == b"a", "relay echoed {:?}", &buf[..1]);

        relay.freeze();
        ensure!(!relay.is_passing(), "is_passing while frozen");
        first.write_all(b"b").await?;
        // Neither a byte nor an end (EOF or reset) comes back.
        ensure!(
            tokio::time::timeout(QUIET, first.read(&mut buf))
                .await
                .is_err(),
            "the frozen connection delivered something or closed"
        );
        // A connection made while frozen is accepted but goes nowhere.
        let mut second = connect(relay.port()).await?;
        second.write_all(b"c").await?;
        ensure!(
            tokio::time::timeout(QUIET, second.read(&mut buf))
                .await
                .is_err(),
            "a connection made while frozen delivered something or closed"
        );
        ensure!(
            echo.accepted() == 1,
            "the target saw {} connections while the relay was frozen",
            echo.accepted()
        );
        ensure!(relay.accepted() == 2, "accepted {}", relay.accepted());

        relay.pass();
        for (name, stream, want) in [("first", &mut first, b"b"), ("second", &mut second, b"c")] {
            tokio::time::timeout(IO_TIMEOUT, stream.read_exact(&mut buf[..1]))
                .await
                .with_context(|| format!("{name} connection did not resume"))??;
            ensure!(&buf[..1] == want, "{name} got {:?}", &buf[..1]);
        }
        let third = relay.port();
        echo_ok(third, b"new connections pass too", IO_TIMEOUT).await?;
        ensure!(relay.accepted() == 3, "accepted {}", relay.accepted());

        drop(relay);
        expect_closed(&mut first, IO_TIMEOUT)
            .await
            .context("a relayed connection outlived the relay")?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn openssh_keepalives_notice_a_frozen_blackhole() -> Result<()> {
    bounded(async {
        let sshd = Sshd::start()?;
        let relay = Blackhole::to_sshd(&sshd).await?;
        let spec = relay.host_spec(&sshd)?;
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-o", "StrictHostKeyChecking=yes", "-o"])
        .arg(format!("UserKnownHostsFile={}", spec.known_hosts.display()))
        .args(["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=2"])
        .arg("-i")
        .arg(&spec.identity)
        .arg("-p")
        .arg(relay.port().to_string())
        .arg(format!("{}@127.0.0.1", sshd.user()))
        .arg("echo ready; sleep 60")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
        let mut child = cmd.spawn().context("starting ssh")?;
        let mut stdout = child.stdout.take().context("ssh stdout")?;
        let mut ready = [0u8; 6];
        tokio::time::timeout(
            Duration::from_secs(20),
            tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut ready),
        )
        .await
        .context("ssh through the relay did not log in")??;
        ensure!(&ready == b"ready\n", "ssh printed {ready:?}");

        relay.freeze();
        let frozen_at = Instant::now();
        let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
            .await
            .context("ssh keepalives did not notice the frozen relay within 10 s")??;
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "ssh (ServerAliveInterval=1, ServerAliveCountMax=2) gave up after {} ms: {}",
            frozen_at.elapsed().as_millis(),
            stderr.trim()
        );
        ensure!(
            stderr.contains("Timeout"),
            "ssh ended otherwise than by its keepalive timeout: {stderr}"
        );
        Ok(())
    })
    .await
}
