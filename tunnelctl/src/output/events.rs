//! The lines `--attach` prints while it holds a tunnel: the tunnel once,
//! then one line per connection opened or closed.

use std::time::Duration;

use tunnel_proto::v1::open_attached_response::Event;
use tunnel_proto::v1::{ConnectionClosed, ConnectionOpened, OpenAttachedResponse, Tunnel};

use super::{Mode, human_bytes, json, or_dash, tunnels, two_units};

/// Renders one message of the attachment to tunnel `id`, or `None` when the
/// mode prints nothing for it. JSON prints every message, compact, one per
/// line; the table prints the tunnel and its connections (state changes go
/// to stderr, see [`state_note`]); quiet prints the id once.
pub fn event(
    mode: Mode,
    id: &str,
    message: &OpenAttachedResponse,
) -> anyhow::Result<Option<String>> {
    Ok(match (mode, &message.event) {
        (Mode::Json, _) => Some(json::compact(message)?),
        (Mode::Table, Some(Event::Opened(tunnel))) => Some(tunnels::tunnel_line(tunnel)),
        (Mode::Table, Some(Event::ConnectionOpened(opened))) => Some(opened_line(id, opened)),
        (Mode::Table, Some(Event::ConnectionClosed(closed))) => Some(closed_line(id, closed)),
        (Mode::Quiet, Some(Event::Opened(tunnel))) => Some(tunnel.id.clone()),
        _ => None,
    })
}

/// `t-3  + 127.0.0.1:50312 connection 1`.
fn opened_line(id: &str, opened: &ConnectionOpened) -> String {
    format!(
        "{id}  + {} connection {}",
        or_dash(&opened.peer),
        opened.connection_id
    )
}

/// `t-3  - 127.0.0.1:50312 connection 1 closed after 2.1s: 1.2 KiB to
/// target, 340 B back`, and `: error TEXT` when it failed.
fn closed_line(id: &str, closed: &ConnectionClosed) -> String {
    let lasted = closed.duration.map_or(Duration::ZERO, |d| {
        Duration::new(
            d.seconds.max(0) as u64,
            d.nanos.clamp(0, 999_999_999) as u32,
        )
    });
    let mut line = format!(
        "{id}  - {} connection {} closed after {}: {} to target, {} back",
        or_dash(&closed.peer),
        closed.connection_id,
        lasted_for(lasted),
        human_bytes(closed.bytes_to_target),
        human_bytes(closed.bytes_from_target),
    );
    let error = closed
        .error
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if !error.is_empty() {
        line.push_str(": error ");
        line.push_str(&error);
    }
    line
}

/// How long a connection lasted: tenths of a second under a minute (most
/// connections are short), then two units.
fn lasted_for(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        two_units(d)
    }
}

/// How an attachment ends when the tunnel's state changes from elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateNote {
    /// Closed by `tunnelctl close` or tunneld's shutdown: a note, success.
    Closed(String),
    /// The tunnel failed: an error line, failure.
    Failed(String),
}

/// The stderr line (without `tunnelctl: `) for a `state_changed` message,
/// or `None` for a state that does not end the attachment.
pub fn state_note(tunnel: &Tunnel) -> Option<StateNote> {
    use tunnel_proto::v1::TunnelState;
    let detail = tunnel
        .state_detail
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match TunnelState::try_from(tunnel.state) {
        Ok(TunnelState::Closed) => Some(StateNote::Closed(format!(
            "tunnel {} was closed",
            tunnel.id
        ))),
        Ok(TunnelState::Failed) if detail.is_empty() => Some(StateNote::Failed(format!(
            "tunnel {} failed; see tunneld's log",
            tunnel.id
        ))),
        Ok(TunnelState::Failed) => Some(StateNote::Failed(format!(
            "tunnel {} failed: {detail}",
            tunnel.id
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tunnels::tests::local_tunnel;
    use tunnel_proto::pbjson_types;
    use tunnel_proto::v1::TunnelState;

    fn message(event: Event) -> OpenAttachedResponse {
        OpenAttachedResponse { event: Some(event) }
    }

    fn opened_conn() -> OpenAttachedResponse {
        message(Event::ConnectionOpened(ConnectionOpened {
            connection_id: 1,
            peer: "127.0.0.1:50312".into(),
        }))
    }

    fn closed_conn(error: &str) -> OpenAttachedResponse {
        message(Event::ConnectionClosed(ConnectionClosed {
            connection_id: 1,
            peer: "127.0.0.1:50312".into(),
            bytes_to_target: 1229,
            bytes_from_target: 340,
            error: error.into(),
            duration: Some(pbjson_types::Duration {
                seconds: 2,
                nanos: 100_000_000,
            }),
        }))
    }

    fn state_changed(state: TunnelState, detail: &str) -> OpenAttachedResponse {
        let mut tunnel = local_tunnel();
        tunnel.state = state as i32;
        tunnel.state_detail = detail.into();
        message(Event::StateChanged(tunnel))
    }

    fn table(m: &OpenAttachedResponse) -> Option<String> {
        event(Mode::Table, "t-3", m).unwrap()
    }

    #[test]
    fn table_lines() {
        assert_eq!(
            table(&message(Event::Opened(local_tunnel()))).as_deref(),
            Some("t-1  local  127.0.0.1:7777 -> localhost:7780 via default")
        );
        assert_eq!(
            table(&opened_conn()).as_deref(),
            Some("t-3  + 127.0.0.1:50312 connection 1")
        );
        assert_eq!(
            table(&closed_conn("")).as_deref(),
            Some(
                "t-3  - 127.0.0.1:50312 connection 1 closed after 2.1s: 1.2 KiB to target, 340 B back"
            )
        );
        assert_eq!(
            table(&closed_conn("connect to localhost:7780:\n refused")).as_deref(),
            Some(
                "t-3  - 127.0.0.1:50312 connection 1 closed after 2.1s: 1.2 KiB to target, 340 B back: error connect to localhost:7780: refused"
            )
        );
        assert_eq!(table(&state_changed(TunnelState::Closed, "")), None);
        assert_eq!(table(&OpenAttachedResponse::default()), None);
    }

    #[test]
    fn long_connections_in_two_units() {
        assert_eq!(lasted_for(Duration::from_millis(0)), "0.0s");
        assert_eq!(lasted_for(Duration::from_millis(59_940)), "59.9s");
        assert_eq!(lasted_for(Duration::from_secs(125)), "2m 5s");
    }

    #[test]
    fn json_is_one_compact_object_per_message() {
        let first = event(Mode::Json, "t-1", &message(Event::Opened(local_tunnel())))
            .unwrap()
            .unwrap();
        assert!(
            first.starts_with(r#"{"opened":{"id":"t-1","kind":"TUNNEL_KIND_LOCAL""#),
            "{first}"
        );
        assert!(!first.contains('\n'));
        let line = event(Mode::Json, "t-3", &opened_conn()).unwrap().unwrap();
        assert_eq!(
            line,
            r#"{"connectionOpened":{"connectionId":"1","peer":"127.0.0.1:50312"}}"#
        );
        let line = event(Mode::Json, "t-3", &state_changed(TunnelState::Closed, ""))
            .unwrap()
            .unwrap();
        assert!(line.starts_with(r#"{"stateChanged":{"id":"t-1""#), "{line}");
        assert!(line.contains(r#""state":"TUNNEL_STATE_CLOSED""#), "{line}");
    }

    #[test]
    fn quiet_prints_the_id_once() {
        fn quiet(m: &OpenAttachedResponse) -> Option<String> {
            event(Mode::Quiet, "t-1", m).unwrap()
        }
        assert_eq!(
            quiet(&message(Event::Opened(local_tunnel()))).as_deref(),
            Some("t-1")
        );
        assert_eq!(quiet(&opened_conn()), None);
        assert_eq!(quiet(&closed_conn("")), None);
        assert_eq!(quiet(&state_changed(TunnelState::Closed, "")), None);
    }

    #[test]
    fn state_notes() {
        let note = |state, detail| {
            let m = state_changed(state, detail);
            let Some(Event::StateChanged(t)) = m.event else {
                unreachable!()
            };
            state_note(&t)
        };
        assert_eq!(
            note(TunnelState::Closed, ""),
            Some(StateNote::Closed("tunnel t-1 was closed".into()))
        );
        assert_eq!(
            note(
                TunnelState::Failed,
                "SSH connection to default lost:\nreset"
            ),
            Some(StateNote::Failed(
                "tunnel t-1 failed: SSH connection to default lost: reset".into()
            ))
        );
        assert_eq!(
            note(TunnelState::Failed, ""),
            Some(StateNote::Failed(
                "tunnel t-1 failed; see tunneld's log".into()
            ))
        );
        assert_eq!(note(TunnelState::Open, ""), None);
    }
}
