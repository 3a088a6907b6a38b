//! OpenAttached: a forward that lives exactly as long as its call, and that
//! reports each connection as it opens and closes. GetInfo.

use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use anyhow::{Context, Result, bail, ensure};
use tunnel_proto::v1::{
    ConnectionClosed, GetInfoRequest, OpenAttachedRequest, OpenAttachedResponse,
    OpenLocalForwardRequest, OpenRemoteForwardRequest, Tunnel, TunnelState,
    open_attached_request::Forward, open_attached_response::Event,
};
use tunneld_tests::Client;
use tunneld_tests::data::random_bytes;
use tunneld_tests::peers::{TcpPeer, port_is_free, refused_port};
use tunneld_tests::wait::poll_until;

use crate::support::{
    Bed, IO_TIMEOUT, close, e2e, exchange, expect_status, find_tunnel, local_port, remote_port,
};

type Events = tonic::Streaming<OpenAttachedResponse>;

/// Opens an attached forward; returns the opened tunnel and the rest of the
/// call.
async fn attach(client: &Client, forward: Forward) -> Result<(Tunnel, Events)> {
    let mut events = client
        .clone()
        .open_attached(OpenAttachedRequest {
            forward: Some(forward),
        })
        .await
        .context("OpenAttached")?
        .into_inner();
    match next(&mut events).await? {
        Some(Event::Opened(t)) => Ok((t, events)),
        other => bail!("first OpenAttached message is {other:?}, not `opened`"),
    }
}

fn local_to(port: u16) -> Forward {
    Forward::Local(OpenLocalForwardRequest {
        remote_host: "127.0.0.1".into(),
        remote_port: port.into(),
        ..Default::default()
    })
}

/// The next event of the call (`None` when it ended with OK), bounded.
async fn next(events: &mut Events) -> Result<Option<Event>> {
    match tokio::time::timeout(IO_TIMEOUT, events.message()).await {
        Err(_) => bail!("no OpenAttached message within {IO_TIMEOUT:?}"),
        Ok(Ok(None)) => Ok(None),
        Ok(Err(status)) => bail!("OpenAttached ended with {status:?}"),
        Ok(Ok(Some(msg))) => Ok(Some(msg.event.context("message without an event")?)),
    }
}

/// Reads events until a connection closes; returns it.
async fn next_closed(events: &mut Events) -> Result<ConnectionClosed> {
    loop {
        match next(events).await? {
            Some(Event::ConnectionClosed(c)) => return Ok(c),
            Some(Event::ConnectionOpened(_)) => {}
            other => bail!("expected a connection to close, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn attached_forward_reports_each_connection_with_its_bytes() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (tunnel, mut events) = attach(&bed.client, local_to(echo.port())).await?;
        ensure!(tunnel.attached, "opened tunnel is not marked attached");
        ensure!(
            find_tunnel(&bed.client, &tunnel.id)
                .await?
                .is_some_and(|t| t.attached),
            "List does not show {} as attached",
            tunnel.id
        );

        let port = local_port(&tunnel)?;
        let data = random_bytes(300 * 1024);
        let back = exchange(port, &data, IO_TIMEOUT).await?;
        ensure!(back == data, "echo through the attached forward differs");

        let opened = match next(&mut events).await? {
            Some(Event::ConnectionOpened(o)) => o,
            other => bail!("expected connection_opened, got {other:?}"),
        };
        ensure!(
            opened.connection_id == 1,
            "first connection id {}",
            opened.connection_id
        );
        ensure!(
            opened.peer.starts_with("127.0.0.1:"),
            "peer {:?}",
            opened.peer
        );
        let closed = next_closed(&mut events).await?;
        ensure!(
            closed.connection_id == 1 && closed.peer == opened.peer,
            "closed {closed:?} vs opened {opened:?}"
        );
        ensure!(
            closed.bytes_to_target == data.len() as u64
                && closed.bytes_from_target == data.len() as u64,
            "connection counted {} bytes to and {} from the target, sent {}",
            closed.bytes_to_target,
            closed.bytes_from_target,
            data.len()
        );
        ensure!(
            closed.error.is_empty(),
            "normal end reported error {:?}",
            closed.error
        );
        ensure!(closed.duration.is_some(), "no duration");

        // A second connection gets the next number.
        exchange(port, b"x", IO_TIMEOUT).await?;
        let closed = next_closed(&mut events).await?;
        ensure!(
            closed.connection_id == 2,
            "second connection id {}",
            closed.connection_id
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn ending_the_call_closes_the_tunnel_and_frees_the_port() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (tunnel, events) = attach(&bed.client, local_to(echo.port())).await?;
        let port = local_port(&tunnel)?;
        drop(events); // the caller goes away: tonic cancels the call

        poll_until("tunnel gone from List", Duration::from_secs(10), || async {
            let gone = find_tunnel(&bed.client, &tunnel.id).await?.is_none();
            Ok((gone && port_is_free(port)).then_some(()))
        })
        .await?;
        // Other tunnels are untouched, and the host connection is kept.
        let (again, _events) = attach(&bed.client, local_to(echo.port())).await?;
        let back = exchange(local_port(&again)?, b"still fine", IO_TIMEOUT).await?;
        ensure!(
            back == b"still fine",
            "second attached tunnel does not carry"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_an_attached_tunnel_ends_its_call_with_the_closed_tunnel() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (tunnel, mut events) = attach(&bed.client, local_to(echo.port())).await?;
        exchange(local_port(&tunnel)?, b"abc", IO_TIMEOUT).await?;
        next_closed(&mut events).await?;

        close(&bed.client, &tunnel.id).await?;
        match next(&mut events).await? {
            Some(Event::StateChanged(t)) => {
                ensure!(
                    t.state == TunnelState::Closed as i32,
                    "state_changed to {:?}",
                    t.state
                );
                let c = t.counters.context("no counters")?;
                ensure!(c.bytes_to_target == 3, "final counters {c:?}");
            }
            other => bail!("expected state_changed CLOSED, got {other:?}"),
        }
        ensure!(
            next(&mut events).await?.is_none(),
            "the call goes on after the tunnel closed"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn attached_remote_forward_reports_a_refused_target() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let dead = refused_port()?;
        let (tunnel, mut events) = attach(
            &bed.client,
            Forward::Remote(OpenRemoteForwardRequest {
                local_host: "127.0.0.1".into(),
                local_port: dead.into(),
                ..Default::default()
            }),
        )
        .await?;
        ensure!(tunnel.attached, "not marked attached");
        // A connection to the server's port is forwarded back and refused here.
        let port = remote_port(&tunnel)?;
        let _ = exchange(port, b"hello", IO_TIMEOUT).await;
        let closed = next_closed(&mut events).await?;
        ensure!(
            closed.error.contains(&format!("127.0.0.1:{dead}")),
            "error {:?} does not name the refused target",
            closed.error
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn attached_request_needs_a_forward_and_valid_ports() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let r = bed
            .client
            .clone()
            .open_attached(OpenAttachedRequest { forward: None })
            .await;
        expect_status(
            "no forward",
            r.map(|_| ()),
            tonic::Code::InvalidArgument,
            &["forward"],
        )?;
        let r = bed
            .client
            .clone()
            .open_attached(OpenAttachedRequest {
                forward: Some(local_to(0)),
            })
            .await;
        expect_status(
            "remote_port 0",
            r.map(|_| ()),
            tonic::Code::InvalidArgument,
            &["remote_port"],
        )?;
        ensure!(
            crate::support::list(&bed.client).await?.tunnels.is_empty(),
            "a refused request left a tunnel"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn get_info_names_the_version_and_the_process() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let info = bed
            .client
            .clone()
            .get_info(GetInfoRequest {})
            .await
            .context("GetInfo")?
            .into_inner();
        ensure!(
            info.version == env!("CARGO_PKG_VERSION"),
            "version {:?}, workspace is {}",
            info.version,
            env!("CARGO_PKG_VERSION")
        );
        ensure!(
            Some(info.pid) == bed.daemon.pid(),
            "pid {} vs {:?}",
            info.pid,
            bed.daemon.pid()
        );
        let started = info.started_at.context("no started_at")?;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_secs() as i64;
        ensure!(
            (now - 120..=now).contains(&started.seconds),
            "started_at {} is not within the last two minutes of {now}",
            started.seconds
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_remote_forward_is_reported_reconnecting_then_open_on_its_call() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (tunnel, mut events) = attach(
            &bed.client,
            Forward::Remote(OpenRemoteForwardRequest {
                local_host: "127.0.0.1".into(),
                local_port: echo.port().into(),
                ..Default::default()
            }),
        )
        .await?;
        ensure!(
            bed.sshd.kill_connections()? >= 1,
            "no sshd connection process to kill"
        );
        // The session sees the reset at once and the first reconnection
        // attempt is immediate, so 30 s is a generous bound.
        let mut seen = Vec::new();
        let restored = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match events.message().await {
                    Ok(Some(msg)) => match msg.event {
                        Some(Event::StateChanged(t)) => {
                            seen.push((t.state, t.state_detail.clone()));
                            if t.state == TunnelState::Open as i32 {
                                return Ok(t);
                            }
                        }
                        _ => continue,
                    },
                    other => bail!("call ended before the tunnel was restored: {other:?}"),
                }
            }
        })
        .await
        .with_context(|| format!("not restored within 30 s; states seen: {seen:?}"))??;
        let reconnecting = seen
            .iter()
            .find(|(s, _)| *s == TunnelState::Reconnecting as i32)
            .with_context(|| format!("no RECONNECTING before OPEN: {seen:?}"))?;
        ensure!(
            reconnecting.1.contains("reconnecting to"),
            "RECONNECTING detail names no host: {:?}",
            reconnecting.1
        );
        ensure!(restored.restores == 1, "restores = {}", restored.restores);
        let port = tunnel.remote.as_ref().context("no remote end")?.port;
        ensure!(
            restored.remote.as_ref().map(|e| e.port) == Some(port),
            "the remote port changed"
        );
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port as u16)).await?;
        conn.write_all(b"after").await?;
        let mut buf = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut buf)).await??;
        ensure!(
            &buf == b"after",
            "echo through the restored forward: {buf:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn stopping_tunneld_ends_an_attached_call_with_the_closed_tunnel() -> Result<()> {
    e2e(async {
        let mut bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (_tunnel, mut events) = attach(&bed.client, local_to(echo.port())).await?;
        let reader = tokio::spawn(async move { next(&mut events).await });
        let (status, took) = bed.daemon.terminate().await?;
        ensure!(status.success(), "tunneld exited with {status}");
        ensure!(
            took < Duration::from_secs(5),
            "tunneld took {took:?} to stop with an attached call open"
        );
        match reader.await?? {
            Some(Event::StateChanged(t)) if t.state == TunnelState::Closed as i32 => Ok(()),
            other => bail!("expected state_changed CLOSED before the end, got {other:?}"),
        }
    })
    .await
}
