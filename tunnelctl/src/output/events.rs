//! The lines `--attach` prints while it holds a tunnel: the tunnel once,
//! then one line per connection opened or closed; and the notes on stderr
//! when the tunnel's state changes.

use std::time::Duration;

use tunnel_proto::v1::open_attached_response::Event;
use tunnel_proto::v1::{
    ConnectionClosed, ConnectionOpened, OpenAttachedResponse, Tunnel, TunnelState,
};

use super::{Mode, human_bytes, json, one_line, or_dash, short_duration, std_duration, tunnels};

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
    let lasted = closed
        .duration
        .as_ref()
        .map_or(Duration::ZERO, std_duration);
    let mut line = format!(
        "{id}  - {} connection {} closed after {}: {} to target, {} back",
        or_dash(&closed.peer),
        closed.connection_id,
        short_duration(lasted),
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

/// What to say when an attached tunnel's state changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateNote {
    /// Closed by `tunnelctl close` or tunneld's shutdown: a note, and the
    /// attachment ends with success.
    Closed(String),
    /// The SSH connection under it was lost (reconnecting), or it could not
    /// be restored yet (failed): a note, and the attachment goes on, since
    /// tunneld keeps retrying.
    Trouble(String),
    /// Open again after trouble: a note.
    Restored(String),
}

/// The stderr note (without `tunnelctl: `) for a `state_changed` message,
/// given the state the tunnel had before; `None` when there is nothing to
/// say (still open, or an unknown state).
pub fn state_note(tunnel: &Tunnel, before: i32) -> Option<StateNote> {
    let id = &tunnel.id;
    let detail = match tunnel.state_detail.trim() {
        "" => String::new(),
        detail => format!(": {}", one_line(detail)),
    };
    let again = tunnel.state == before;
    match TunnelState::try_from(tunnel.state) {
        Ok(TunnelState::Closed) => Some(StateNote::Closed(format!("tunnel {id} was closed"))),
        // Each attempt may come with new detail; say it without repeating
        // the news.
        Ok(TunnelState::Reconnecting) if again => Some(StateNote::Trouble(format!(
            "tunnel {id} is still reconnecting{detail}"
        ))),
        Ok(TunnelState::Reconnecting) => Some(StateNote::Trouble(format!(
            "tunnel {id} lost its SSH connection; tunneld is reconnecting{detail}"
        ))),
        Ok(TunnelState::Failed) if again => Some(StateNote::Trouble(format!(
            "tunnel {id} still cannot be restored{detail}"
        ))),
        Ok(TunnelState::Failed) => Some(StateNote::Trouble(format!(
            "tunnel {id} failed{detail}; tunneld keeps retrying until it is closed"
        ))),
        Ok(TunnelState::Open) if before != TunnelState::Open as i32 => {
            Some(StateNote::Restored(format!("tunnel {id} is open again")))
        }
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
            tunnel_id: "t-3".into(),
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
            tunnel_id: "t-3".into(),
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
            r#"{"connectionOpened":{"connectionId":"1","peer":"127.0.0.1:50312","tunnelId":"t-3"}}"#
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
        let open = TunnelState::Open as i32;
        let note = |state, detail, before| {
            let m = state_changed(state, detail);
            let Some(Event::StateChanged(t)) = m.event else {
                unreachable!()
            };
            state_note(&t, before)
        };
        assert_eq!(
            note(TunnelState::Closed, "", open),
            Some(StateNote::Closed("tunnel t-1 was closed".into()))
        );
        assert_eq!(
            note(
                TunnelState::Reconnecting,
                "attempt 2, next in 1s:\nconnection reset",
                open
            ),
            Some(StateNote::Trouble(
                "tunnel t-1 lost its SSH connection; tunneld is reconnecting: attempt 2, next in 1s: connection reset".into()
            ))
        );
        assert_eq!(
            note(TunnelState::Failed, "port 8080 is taken", open),
            Some(StateNote::Trouble(
                "tunnel t-1 failed: port 8080 is taken; tunneld keeps retrying until it is closed"
                    .into()
            ))
        );
        let reconnecting = TunnelState::Reconnecting as i32;
        assert_eq!(
            note(TunnelState::Reconnecting, "attempt 3", reconnecting),
            Some(StateNote::Trouble(
                "tunnel t-1 is still reconnecting: attempt 3".into()
            ))
        );
        assert_eq!(
            note(
                TunnelState::Failed,
                "port taken",
                TunnelState::Failed as i32
            ),
            Some(StateNote::Trouble(
                "tunnel t-1 still cannot be restored: port taken".into()
            ))
        );
        assert_eq!(
            note(TunnelState::Failed, "", open),
            Some(StateNote::Trouble(
                "tunnel t-1 failed; tunneld keeps retrying until it is closed".into()
            ))
        );
        assert_eq!(
            note(TunnelState::Open, "", TunnelState::Reconnecting as i32),
            Some(StateNote::Restored("tunnel t-1 is open again".into()))
        );
        assert_eq!(note(TunnelState::Open, "", open), None);
    }
}
