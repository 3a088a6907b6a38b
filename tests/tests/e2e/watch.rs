//! Watch: the state of every host and tunnel when the call starts, then each
//! change as it happens — tunnels opening and closing, connections with
//! their bytes, and a host's connection going down and coming back.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tunnel_proto::v1::{
    AddHostRequest, HostSource, OpenLocalForwardRequest, RemoveHostRequest, SshConnectionState,
    TunnelState, WatchRequest, WatchResponse, watch_response::Event,
};
use tunneld_tests::Client;
use tunneld_tests::data::random_bytes;
use tunneld_tests::peers::TcpPeer;

use crate::forward_remote::open_remote;
use crate::reconnect::{echo_ok, fast_reconnect, host_state, next_event, tunnel_state};
use crate::support::{
    Bed, IO_TIMEOUT, close, e2e, expect_status, local_port, open_local, open_local_req,
};

type Events = tonic::Streaming<WatchResponse>;

/// Starts a Watch (all tunnels when `tunnel_id` is empty).
async fn watch(client: &Client, tunnel_id: &str) -> Result<Events> {
    Ok(client
        .clone()
        .watch(WatchRequest {
            tunnel_id: tunnel_id.into(),
        })
        .await
        .context("Watch")?
        .into_inner())
}

/// Reads the initial messages up to and including `synced`.
async fn initial(events: &mut Events) -> Result<Vec<Event>> {
    let mut seen = Vec::new();
    loop {
        match next_event(events).await? {
            Some(Event::Synced(_)) => return Ok(seen),
            Some(e) => seen.push(e),
            None => bail!("Watch ended before `synced`; got {seen:?}"),
        }
    }
}

/// Reads events until one satisfies `pick`, returning its result and every
/// event read before it (for order checks and messages). Bounded by `limit`.
async fn until<T>(
    events: &mut Events,
    what: &str,
    limit: Duration,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Result<(T, Vec<Event>)> {
    let deadline = Instant::now() + limit;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = match tokio::time::timeout(left, events.message()).await {
            Err(_) => bail!("no {what} within {limit:?}; got {}", summary(&before)),
            Ok(Err(status)) => bail!("Watch ended with {status:?} before {what}"),
            Ok(Ok(None)) => bail!("Watch ended before {what}; got {}", summary(&before)),
            Ok(Ok(Some(msg))) => msg,
        };
        let event = msg.event.context("Watch message without an event")?;
        if let Some(found) = pick(&event) {
            return Ok((found, before));
        }
        before.push(event);
    }
}

/// One line per event, for failure messages.
fn summary(events: &[Event]) -> String {
    let items: Vec<String> = events.iter().map(describe).collect();
    format!("[{}]", items.join(", "))
}

fn describe(event: &Event) -> String {
    match event {
        Event::Host(h) => format!(
            "host {} {} attempt {}",
            h.name,
            host_state(h.state),
            h.reconnect_attempt
        ),
        Event::Tunnel(t) => format!("tunnel {} {}", t.id, tunnel_state(t.state)),
        Event::ConnectionOpened(c) => {
            format!("connection_opened {}#{}", c.tunnel_id, c.connection_id)
        }
        Event::ConnectionClosed(c) => format!(
            "connection_closed {}#{} ({} to, {} from, {:?})",
            c.tunnel_id, c.connection_id, c.bytes_to_target, c.bytes_from_target, c.error
        ),
        Event::Synced(_) => "synced".into(),
        Event::MissedEvents(n) => format!("missed_events {n}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_starts_with_hosts_then_tunnels_then_synced() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let local = open_local(&bed.client, "", echo.port()).await?;
        let remote = open_remote(&bed.client, "", echo.port())
            .await
            .context("OpenRemoteForward")?;

        let mut events = watch(&bed.client, "").await?;
        let first = initial(&mut events).await?;
        let kinds: Vec<char> = first
            .iter()
            .map(|e| match e {
                Event::Host(_) => 'h',
                Event::Tunnel(_) => 't',
                _ => '?',
            })
            .collect();
        ensure!(
            kinds == ['h', 't', 't'],
            "initial messages are {} (expected the host, then the two tunnels)",
            summary(&first)
        );
        let Event::Host(host) = &first[0] else {
            unreachable!()
        };
        ensure!(
            host.name == "default" && host.state == SshConnectionState::Connected as i32,
            "initial host {}",
            describe(&first[0])
        );
        let mut ids: Vec<&str> = first[1..]
            .iter()
            .filter_map(|e| match e {
                Event::Tunnel(t) if t.state == TunnelState::Open as i32 => Some(t.id.as_str()),
                _ => None,
            })
            .collect();
        ids.sort();
        let mut want = [local.id.as_str(), remote.id.as_str()];
        want.sort();
        ensure!(ids == want, "initial OPEN tunnels {ids:?}, opened {want:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_reports_a_new_tunnel_and_its_connections_with_exact_bytes() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let mut events = watch(&bed.client, "").await?;
        initial(&mut events).await?;

        let local = open_local(&bed.client, "", echo.port()).await?;
        let (opened, _) = until(&mut events, "the new tunnel", IO_TIMEOUT, |e| match e {
            Event::Tunnel(t) if t.id == local.id => Some(t.clone()),
            _ => None,
        })
        .await?;
        ensure!(
            opened.state == TunnelState::Open as i32,
            "first message about the new tunnel is {}",
            tunnel_state(opened.state)
        );

        let data = random_bytes(100 * 1024 + 7);
        echo_ok(local_port(&local)?, &data, IO_TIMEOUT).await?;
        let (conn, _) = until(&mut events, "connection_opened", IO_TIMEOUT, |e| match e {
            Event::ConnectionOpened(c) => Some(c.clone()),
            Event::ConnectionClosed(c) => Some(tunnel_proto::v1::ConnectionOpened {
                // A close before an open is an order error, reported below.
                connection_id: u64::MAX,
                peer: c.peer.clone(),
                tunnel_id: c.tunnel_id.clone(),
            }),
            _ => None,
        })
        .await?;
        ensure!(
            conn.connection_id != u64::MAX,
            "connection_closed came before connection_opened"
        );
        ensure!(
            conn.tunnel_id == local.id && conn.peer.starts_with("127.0.0.1:"),
            "connection_opened {conn:?}"
        );
        let (closed, between) = until(&mut events, "connection_closed", IO_TIMEOUT, |e| match e {
            Event::ConnectionClosed(c) => Some(c.clone()),
            _ => None,
        })
        .await?;
        ensure!(
            closed.tunnel_id == local.id && closed.connection_id == conn.connection_id,
            "connection_closed {} for connection_opened {}",
            describe(&Event::ConnectionClosed(closed.clone())),
            describe(&Event::ConnectionOpened(conn.clone()))
        );
        ensure!(
            closed.bytes_to_target == data.len() as u64
                && closed.bytes_from_target == data.len() as u64,
            "connection counted {} bytes to and {} from the target; {} were sent and echoed",
            closed.bytes_to_target,
            closed.bytes_from_target,
            data.len()
        );
        ensure!(
            closed.error.is_empty(),
            "a clean close reports error {:?}",
            closed.error
        );
        ensure!(
            between.is_empty(),
            "unexpected events between open and close: {}",
            summary(&between)
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_shows_the_link_going_down_and_coming_back() -> Result<()> {
    e2e(async {
        let bed = Bed::with(tunneld_tests::Sshd::start()?, fast_reconnect).await?;
        let echo = TcpPeer::echo().await?;
        let local = open_local(&bed.client, "", echo.port()).await?;
        let port = local_port(&local)?;
        echo_ok(port, b"up", IO_TIMEOUT).await?;
        let mut events = watch(&bed.client, "").await?;
        initial(&mut events).await?;

        ensure!(
            bed.sshd.kill_connections()? >= 1,
            "no sshd connection process to kill"
        );
        // Read until both objects went down and came up again.
        let (mut host_down, mut host_up, mut tunnel_down, mut tunnel_up) =
            (false, false, false, false);
        let (last, mut seen) = until(
            &mut events,
            "host CONNECTED and tunnel OPEN again",
            Duration::from_secs(15),
            |e| {
                match e {
                    Event::Host(h) if h.name == "default" => {
                        if h.state == SshConnectionState::Reconnecting as i32 {
                            host_down = true;
                        } else if host_down && h.state == SshConnectionState::Connected as i32 {
                            host_up = true;
                        }
                    }
                    Event::Tunnel(t) if t.id == local.id => {
                        if t.state == TunnelState::Reconnecting as i32 {
                            tunnel_down = true;
                        } else if tunnel_down && t.state == TunnelState::Open as i32 {
                            tunnel_up = true;
                        }
                    }
                    _ => {}
                }
                (host_up && tunnel_up).then(|| e.clone())
            },
        )
        .await?;
        seen.push(last);
        eprintln!("events after the kill: {}", summary(&seen));

        // Each object: first down (RECONNECTING), and up as its last word.
        let hosts: Vec<(i32, u32)> = seen
            .iter()
            .filter_map(|e| match e {
                Event::Host(h) if h.name == "default" => Some((h.state, h.reconnect_attempt)),
                _ => None,
            })
            .collect();
        ensure!(
            hosts.first().is_some_and(|&(s, attempt)| {
                s == SshConnectionState::Reconnecting as i32 && attempt >= 1
            }),
            "the host's first message after the kill is not RECONNECTING with attempt >= 1: {}",
            summary(&seen)
        );
        ensure!(
            hosts.last().map(|&(s, _)| s) == Some(SshConnectionState::Connected as i32),
            "the host's last message is not CONNECTED: {}",
            summary(&seen)
        );
        let tunnels: Vec<i32> = seen
            .iter()
            .filter_map(|e| match e {
                Event::Tunnel(t) if t.id == local.id => Some(t.state),
                _ => None,
            })
            .collect();
        let (up, down) = tunnels.split_last().expect("the OPEN message was seen");
        ensure!(
            *up == TunnelState::Open as i32
                && !down.is_empty()
                && down.iter().all(|&s| s == TunnelState::Reconnecting as i32),
            "tunnel messages after the kill: {} (expected RECONNECTING, then OPEN)",
            summary(&seen)
        );
        echo_ok(port, b"up again", IO_TIMEOUT).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_tells_a_host_added_and_removed_after_its_tunnels() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let mut events = watch(&bed.client, "").await?;
        initial(&mut events).await?;

        bed.client
            .clone()
            .add_host(AddHostRequest {
                name: "edge".into(),
                ssh: bed.sshd.address(),
                ..Default::default()
            })
            .await?;
        let (added, _) = until(&mut events, "host edge added", IO_TIMEOUT, |e| match e {
            Event::Host(h) if h.name == "edge" => Some(h.clone()),
            _ => None,
        })
        .await?;
        ensure!(
            added.state != SshConnectionState::Removed as i32
                && added.source == HostSource::Api as i32,
            "host edge added: {added:?}"
        );
        let echo = TcpPeer::echo().await?;
        let t = open_local_req(
            &bed.client,
            OpenLocalForwardRequest {
                host: "edge".into(),
                remote_host: "127.0.0.1".into(),
                remote_port: u32::from(echo.port()),
                ..Default::default()
            },
        )
        .await?;

        bed.client
            .clone()
            .remove_host(RemoveHostRequest {
                name: "edge".into(),
                force: true,
            })
            .await?;
        let (removed, before) = until(&mut events, "host edge removed", IO_TIMEOUT, |e| match e {
            Event::Host(h) if h.name == "edge" && h.state == SshConnectionState::Removed as i32 => {
                Some(h.clone())
            }
            _ => None,
        })
        .await?;
        ensure!(
            before.iter().any(|e| matches!(e, Event::Tunnel(x)
                if x.id == t.id && x.state == TunnelState::Closed as i32)),
            "the tunnel over edge was not CLOSED before edge was removed: {}",
            summary(&before)
        );
        ensure!(
            removed.tunnels == 0 && removed.address == added.address,
            "host edge removed: {removed:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn watching_one_tunnel_ends_after_its_closed_message() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let other = open_local(&bed.client, "", echo.port()).await?;
        let local = open_local(&bed.client, "", echo.port()).await?;
        let mut events = watch(&bed.client, &local.id).await?;
        let first = initial(&mut events).await?;
        ensure!(
            matches!(first.as_slice(), [Event::Host(h), Event::Tunnel(t)]
                if h.name == "default" && t.id == local.id),
            "initial messages of Watch({}) are {}",
            local.id,
            summary(&first)
        );

        // Another tunnel's traffic is not reported.
        echo_ok(local_port(&other)?, b"elsewhere", IO_TIMEOUT).await?;
        echo_ok(local_port(&local)?, b"here", IO_TIMEOUT).await?;
        let (closed, before) = until(&mut events, "connection_closed", IO_TIMEOUT, |e| match e {
            Event::ConnectionClosed(c) => Some(c.clone()),
            _ => None,
        })
        .await?;
        ensure!(
            closed.tunnel_id == local.id && closed.bytes_to_target == 4,
            "Watch({}) reported {} after {}",
            local.id,
            describe(&Event::ConnectionClosed(closed.clone())),
            summary(&before)
        );

        close(&bed.client, &local.id).await?;
        let (last, _) = until(&mut events, "the CLOSED message", IO_TIMEOUT, |e| match e {
            Event::Tunnel(t) if t.state == TunnelState::Closed as i32 => Some(t.clone()),
            _ => None,
        })
        .await?;
        ensure!(last.id == local.id, "CLOSED message for {}", last.id);
        ensure!(
            next_event(&mut events).await?.is_none(),
            "Watch({}) went on after the tunnel's CLOSED message",
            local.id
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn watching_an_unknown_tunnel_is_not_found() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let result = match bed
            .client
            .clone()
            .watch(WatchRequest {
                tunnel_id: "t-no-such-tunnel".into(),
            })
            .await
        {
            // The status may come with the response headers or as the
            // stream's first item; either way it must be NOT_FOUND.
            Ok(resp) => resp.into_inner().message().await.map(|_| ()),
            Err(status) => Err(status),
        };
        expect_status(
            "Watch(unknown id)",
            result,
            tonic::Code::NotFound,
            &["t-no-such-tunnel"],
        )?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_that_never_reads_does_not_slow_tunnels() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let local = open_local(&bed.client, "", echo.port()).await?;
        let port = local_port(&local)?;
        let mut stalled = watch(&bed.client, "").await?;
        initial(&mut stalled).await?;

        // Many events for a reader that does not read: two per connection.
        let connections = 1500;
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..connections {
            let msg = format!("connection {i}");
            tasks.spawn(async move { echo_ok(port, msg.as_bytes(), IO_TIMEOUT).await });
            if tasks.len() >= 32 {
                tasks.join_next().await.expect("a task is running")??;
            }
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        let took = started.elapsed();
        eprintln!("{connections} connections with a stalled watcher took {took:?}");
        ensure!(
            took < Duration::from_secs(30),
            "{connections} connections took {took:?} with a stalled watcher"
        );

        // The watcher catches up: perhaps told it missed events, then the
        // newest ones, down to a connection made now.
        // A length no other connection had, to recognise its close.
        let marker = vec![b'z'; 4321];
        echo_ok(port, &marker, IO_TIMEOUT).await?;
        let mut missed = 0;
        until(
            &mut stalled,
            "the last connection's close",
            Duration::from_secs(20),
            |e| match e {
                Event::MissedEvents(n) => {
                    missed += n;
                    None
                }
                Event::ConnectionClosed(c) if c.bytes_to_target == marker.len() as u64 => Some(()),
                _ => None,
            },
        )
        .await?;
        eprintln!("the stalled watcher was told it missed {missed} events");
        Ok(())
    })
    .await
}
