//! The lines `watch` prints: one per event, in columns —
//! when, what it is about, what happened, details:
//!
//! ```text
//! 2026-11-24T10:00:01Z  host default    connected         deploy@10.0.0.5:22
//! 2026-11-24T10:00:01Z  tunnel t-3      open              local 127.0.0.1:7777 -> localhost:7780 via default
//! 2026-11-24T10:00:02Z  tunnel t-3      conn #5 opened    from 127.0.0.1:55012
//! 2026-11-24T10:00:02Z  tunnel t-3      conn #5 closed    12 B to target, 0 B back, 0.3s
//! 2026-11-24T10:00:03Z  host default    reconnecting      attempt 2, next in 1.0s: connection reset
//! 2026-11-24T10:00:04Z  missed 12 events; run `tunnelctl list` for the current state
//! ```
//!
//! `synced` (the end of the initial state) prints nothing: the lines before
//! it and after it read the same, as with `kubectl get --watch`.

use std::time::{Duration, SystemTime};

use tunnel_proto::v1::watch_response::Event;
use tunnel_proto::v1::{
    ConnectionClosed, ConnectionOpened, SshConnectionState, SshHost, Tunnel, TunnelState,
    WatchResponse,
};

use super::{
    Mode, host_state_name, human_bytes, json, one_line, or_dash, reconnect_progress,
    short_duration, std_duration, system_time, tunnel_state_name, tunnels::carries,
};

/// Width of the subject column (`host NAME`, `tunnel ID`); longer names push
/// the rest of their line right rather than being cut.
const SUBJECT_WIDTH: usize = 14;

/// Width of the event column (`reconnecting`, `conn #12 closed`).
const WHAT_WIDTH: usize = 16;

/// Renders one message of the stream, or `None` when the mode prints
/// nothing for it. JSON prints every message, compact, one per line (NDJSON);
/// the table prints a line per event except `synced`; quiet prints nothing.
pub fn event(mode: Mode, message: &WatchResponse) -> anyhow::Result<Option<String>> {
    Ok(match mode {
        Mode::Json => Some(json::compact(message)?),
        Mode::Table => line(message),
        Mode::Quiet => None,
    })
}

/// The table line for one message; `None` for `synced` and for an event this
/// tunnelctl does not know (a newer tunneld).
fn line(message: &WatchResponse) -> Option<String> {
    let at = message
        .time
        .as_ref()
        .map_or_else(SystemTime::now, system_time);
    let time = humantime::format_rfc3339_seconds(at);
    let (subject, what, detail) = match message.event.as_ref()? {
        Event::Host(host) => (
            format!("host {}", host.name),
            host_state_name(host.state).to_string(),
            host_detail(host, at),
        ),
        Event::Tunnel(tunnel) if !tunnel.name.is_empty() => (
            format!("tunnel {} ({})", tunnel.id, tunnel.name),
            tunnel_state_name(tunnel.state).to_string(),
            tunnel_detail(tunnel),
        ),
        Event::Tunnel(tunnel) => (
            format!("tunnel {}", tunnel.id),
            tunnel_state_name(tunnel.state).to_string(),
            tunnel_detail(tunnel),
        ),
        Event::ConnectionOpened(opened) => connection_opened(opened),
        Event::ConnectionClosed(closed) => connection_closed(closed),
        Event::MissedEvents(n) => {
            return Some(format!(
                "{time}  missed {n} events; run `tunnelctl list` for the current state"
            ));
        }
        Event::Synced(_) => return None,
    };
    let line = format!("{time}  {subject:<SUBJECT_WIDTH$}  {what:<WHAT_WIDTH$}  {detail}");
    Some(line.trim_end().to_string())
}

/// A host: while reconnecting, the attempt and the wait for the next one
/// (from when tunneld sent the message) and why; when failed, why;
/// otherwise its address.
fn host_detail(host: &SshHost, at: SystemTime) -> String {
    let why = host.state_detail.trim();
    if let Some(progress) = reconnect_progress(host, at) {
        return match why {
            "" => progress,
            why => format!("{progress}: {}", one_line(why)),
        };
    }
    if host.state == SshConnectionState::Failed as i32 || host.address.is_empty() {
        return one_line(why);
    }
    match why {
        "" => host.address.clone(),
        why => format!("{}: {}", host.address, one_line(why)),
    }
}

/// A tunnel: what it carries when it opens (or is restored), why when it is
/// reconnecting or failed, and its totals when it closes.
fn tunnel_detail(tunnel: &Tunnel) -> String {
    let why = tunnel.state_detail.trim();
    match TunnelState::try_from(tunnel.state) {
        Ok(TunnelState::Closed) => {
            let c = tunnel.counters.unwrap_or_default();
            let noun = if c.total_connections == 1 {
                "connection"
            } else {
                "connections"
            };
            format!(
                "{} {noun}, {} to target, {} back",
                c.total_connections,
                human_bytes(c.bytes_to_target),
                human_bytes(c.bytes_from_target)
            )
        }
        Ok(TunnelState::Reconnecting | TunnelState::Failed) if !why.is_empty() => one_line(why),
        _ => {
            let (kind, listen, target, host) = carries(tunnel);
            let mut detail = format!("{kind} {listen} -> {target} via {host}");
            if tunnel.attached {
                detail.push_str(" (attached)");
            }
            detail
        }
    }
}

/// `tunnel t-3`, `conn #5 opened`, `from 127.0.0.1:55012`.
fn connection_opened(opened: &ConnectionOpened) -> (String, String, String) {
    (
        format!("tunnel {}", or_dash(&opened.tunnel_id)),
        format!("conn #{} opened", opened.connection_id),
        format!("from {}", or_dash(&opened.peer)),
    )
}

/// `tunnel t-3`, `conn #5 closed`, `12 B to target, 0 B back, 0.3s`, and
/// `: TEXT` when it ended in an error.
fn connection_closed(closed: &ConnectionClosed) -> (String, String, String) {
    let lasted = closed
        .duration
        .as_ref()
        .map_or(Duration::ZERO, std_duration);
    let mut detail = format!(
        "{} to target, {} back, {}",
        human_bytes(closed.bytes_to_target),
        human_bytes(closed.bytes_from_target),
        short_duration(lasted)
    );
    if !closed.error.trim().is_empty() {
        detail.push_str(": ");
        detail.push_str(&one_line(&closed.error));
    }
    (
        format!("tunnel {}", or_dash(&closed.tunnel_id)),
        format!("conn #{} closed", closed.connection_id),
        detail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tunnels::tests::{dynamic_tunnel, local_tunnel, remote_tunnel};
    use tunnel_proto::pbjson_types::{self, Timestamp};
    use tunnel_proto::v1::{TunnelCounters, WatchSynced};

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    /// 2026-11-24T10:00:00Z.
    const T0: i64 = 1_795_514_400;

    fn message(event: Event) -> WatchResponse {
        WatchResponse {
            time: ts(T0),
            event: Some(event),
        }
    }

    fn table(event: Event) -> Option<String> {
        super::event(Mode::Table, &message(event)).unwrap()
    }

    fn host(state: SshConnectionState) -> SshHost {
        SshHost {
            name: "default".into(),
            address: "deploy@10.0.0.5:22".into(),
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn host_lines() {
        assert_eq!(
            table(Event::Host(host(SshConnectionState::Connected))).unwrap(),
            "2026-11-24T10:00:00Z  host default    connected         deploy@10.0.0.5:22"
        );
        let mut h = host(SshConnectionState::Reconnecting);
        h.reconnect_attempt = 2;
        h.next_attempt_at = Some(Timestamp {
            seconds: T0 + 1,
            nanos: 0,
        });
        h.state_detail = "connection lost:\n reset by peer".into();
        assert_eq!(
            table(Event::Host(h)).unwrap(),
            "2026-11-24T10:00:00Z  host default    reconnecting      attempt 2, next in 1.0s: connection lost: reset by peer"
        );
        let mut h = host(SshConnectionState::Failed);
        h.state_detail = "connection refused".into();
        assert!(
            table(Event::Host(h))
                .unwrap()
                .ends_with("  failed            connection refused")
        );
        assert_eq!(
            table(Event::Host(host(SshConnectionState::Removed))).unwrap(),
            "2026-11-24T10:00:00Z  host default    removed           deploy@10.0.0.5:22"
        );
        let mut h = host(SshConnectionState::Idle);
        h.name = "a-very-long-host-name".into();
        assert_eq!(
            table(Event::Host(h)).unwrap(),
            "2026-11-24T10:00:00Z  host a-very-long-host-name  idle              deploy@10.0.0.5:22"
        );
    }

    #[test]
    fn tunnel_lines() {
        assert_eq!(
            table(Event::Tunnel(dynamic_tunnel())).unwrap(),
            "2026-11-24T10:00:00Z  tunnel t-3      open              dynamic 127.0.0.1:1080 -> SOCKS via bastion"
        );
        assert_eq!(
            table(Event::Tunnel(local_tunnel())).unwrap(),
            "2026-11-24T10:00:00Z  tunnel t-1      open              local 127.0.0.1:7777 -> localhost:7780 via default"
        );
        let mut t = remote_tunnel();
        t.state_detail = "the server refused port 8080".into();
        assert_eq!(
            table(Event::Tunnel(t)).unwrap(),
            "2026-11-24T10:00:00Z  tunnel t-2      failed            the server refused port 8080"
        );
        let mut t = local_tunnel();
        t.state = TunnelState::Reconnecting as i32;
        t.attached = true;
        assert!(table(Event::Tunnel(t)).unwrap().ends_with(
            "  reconnecting      local 127.0.0.1:7777 -> localhost:7780 via default (attached)"
        ));
        let mut t = local_tunnel();
        t.state = TunnelState::Closed as i32;
        t.counters = Some(TunnelCounters {
            total_connections: 1,
            bytes_to_target: 12,
            ..Default::default()
        });
        assert!(
            table(Event::Tunnel(t))
                .unwrap()
                .ends_with("  closed            1 connection, 12 B to target, 0 B back")
        );
    }

    #[test]
    fn connection_lines() {
        let opened = ConnectionOpened {
            connection_id: 5,
            peer: "127.0.0.1:5555".into(),
            tunnel_id: "t-3".into(),
        };
        assert_eq!(
            table(Event::ConnectionOpened(opened)).unwrap(),
            "2026-11-24T10:00:00Z  tunnel t-3      conn #5 opened    from 127.0.0.1:5555"
        );
        let closed = ConnectionClosed {
            connection_id: 5,
            peer: "127.0.0.1:5555".into(),
            bytes_to_target: 12,
            bytes_from_target: 2048,
            error: String::new(),
            duration: Some(pbjson_types::Duration {
                seconds: 0,
                nanos: 300_000_000,
            }),
            tunnel_id: "t-3".into(),
        };
        assert_eq!(
            table(Event::ConnectionClosed(closed.clone())).unwrap(),
            "2026-11-24T10:00:00Z  tunnel t-3      conn #5 closed    12 B to target, 2.0 KiB back, 0.3s"
        );
        let failed = ConnectionClosed {
            error: "idle for 2s\n(idle_timeout)".into(),
            ..closed
        };
        assert!(
            table(Event::ConnectionClosed(failed))
                .unwrap()
                .ends_with("12 B to target, 2.0 KiB back, 0.3s: idle for 2s (idle_timeout)")
        );
    }

    #[test]
    fn synced_prints_nothing_and_missed_events_say_what_to_do() {
        assert_eq!(table(Event::Synced(WatchSynced {})), None);
        assert_eq!(
            table(Event::MissedEvents(12)).unwrap(),
            "2026-11-24T10:00:00Z  missed 12 events; run `tunnelctl list` for the current state"
        );
        assert_eq!(
            super::event(Mode::Table, &WatchResponse::default()).unwrap(),
            None
        );
    }

    #[test]
    fn json_is_one_compact_line_per_message_and_quiet_is_silent() {
        let json = super::event(Mode::Json, &message(Event::Synced(WatchSynced {})))
            .unwrap()
            .unwrap();
        assert_eq!(json, r#"{"time":"2026-11-24T10:00:00Z","synced":{}}"#);
        let json = super::event(Mode::Json, &message(Event::MissedEvents(3)))
            .unwrap()
            .unwrap();
        assert_eq!(
            json,
            r#"{"time":"2026-11-24T10:00:00Z","missedEvents":"3"}"#
        );
        let json = super::event(Mode::Json, &message(Event::Tunnel(local_tunnel())))
            .unwrap()
            .unwrap();
        assert!(
            json.starts_with(r#"{"time":"2026-11-24T10:00:00Z","tunnel":{"id":"t-1""#),
            "{json}"
        );
        assert!(!json.contains('\n'));
        assert_eq!(
            super::event(Mode::Quiet, &message(Event::Tunnel(local_tunnel()))).unwrap(),
            None
        );
    }
}
