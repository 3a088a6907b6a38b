//! What `status` found out: tunneld's identity, health, tunnels and hosts.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tunnel_proto::v1::{GetInfoResponse, ListResponse, TunnelState};

use super::{Mode, elapsed, host_state_name, json, two_units};

/// Everything `status` gathered, from three calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// tunneld's address, as given.
    pub address: String,
    /// The answer to `GetInfo`.
    pub info: GetInfoResponse,
    /// The `grpc.health.v1` serving status of `tunnel.v1.TunnelService`, by
    /// its enum name (`SERVING`, `NOT_SERVING`, `SERVICE_UNKNOWN`, ...).
    pub health: String,
    /// The answer to `List`.
    pub list: ListResponse,
}

/// The JSON shape of [`Status`]: API messages inside as proto3 JSON.
#[derive(Serialize)]
struct StatusJson<'a> {
    address: &'a str,
    info: prost_reflect::DynamicMessage,
    health: &'a str,
    tunnels: usize,
    hosts: Vec<prost_reflect::DynamicMessage>,
}

/// Renders a [`Status`]: `key value` lines, one JSON object, or nothing.
pub fn status(mode: Mode, status: &Status, now: SystemTime) -> anyhow::Result<String> {
    Ok(match mode {
        Mode::Table => lines(status, now),
        Mode::Json => json::pretty_value(&StatusJson {
            address: &status.address,
            info: json::dynamic(&status.info)?,
            health: &status.health,
            tunnels: status.list.tunnels.len(),
            hosts: status
                .list
                .hosts
                .iter()
                .map(json::dynamic)
                .collect::<anyhow::Result<_>>()?,
        })?,
        Mode::Quiet => String::new(),
    })
}

/// The table form: one `key value` line per fact, values in one column.
fn lines(status: &Status, now: SystemTime) -> String {
    let info = &status.info;
    let uptime = match &info.started_at {
        Some(started) => {
            let since = UNIX_EPOCH
                + std::time::Duration::new(
                    started.seconds.max(0) as u64,
                    started.nanos.clamp(0, 999_999_999) as u32,
                );
            format!(
                "{} (since {})",
                two_units(elapsed(started, now)),
                humantime::format_rfc3339_seconds(since)
            )
        }
        None => "-".into(),
    };
    let tunnels = &status.list.tunnels;
    let failed = tunnels
        .iter()
        .filter(|t| t.state == TunnelState::Failed as i32)
        .count();
    let tunnels = match failed {
        0 => format!("{} open", tunnels.len()),
        n => format!("{} open ({n} failed)", tunnels.len()),
    };
    let hosts = if status.list.hosts.is_empty() {
        "-".to_string()
    } else {
        status
            .list
            .hosts
            .iter()
            .map(|h| format!("{} ({})", h.name, host_state_name(h.state)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pid = if info.pid == 0 {
        "-".to_string()
    } else {
        info.pid.to_string()
    };
    let version = if info.version.is_empty() {
        "-"
    } else {
        &info.version
    };
    [
        ("address", status.address.as_str()),
        ("version", version),
        ("pid", &pid),
        ("uptime", &uptime),
        ("health", &status.health),
        ("tunnels", &tunnels),
        ("hosts", &hosts),
    ]
    .iter()
    .map(|(key, value)| format!("{key:<10}{value}"))
    .collect::<Vec<_>>()
    .join("\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::output::tunnels::tests::{local_tunnel, remote_tunnel};
    use tunnel_proto::pbjson_types::Timestamp;
    use tunnel_proto::v1::{SshConnectionState, SshHost};

    /// Started at 2026-11-24T10:00:00Z.
    const STARTED: i64 = 1_795_514_400;

    fn sample() -> Status {
        Status {
            address: "127.0.0.1:4522".into(),
            info: GetInfoResponse {
                version: "0.1.0".into(),
                started_at: Some(Timestamp {
                    seconds: STARTED,
                    nanos: 250_000_000,
                }),
                pid: 1234,
            },
            health: "SERVING".into(),
            list: ListResponse {
                tunnels: vec![local_tunnel(), local_tunnel()],
                hosts: vec![
                    SshHost {
                        name: "default".into(),
                        address: "me@localhost:22".into(),
                        state: SshConnectionState::Connected as i32,
                        tunnels: 2,
                        ..Default::default()
                    },
                    SshHost {
                        name: "web1".into(),
                        state: SshConnectionState::Idle as i32,
                        ..Default::default()
                    },
                ],
            },
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(STARTED as u64 + 2 * 3600 + 3 * 60 + 10)
    }

    #[test]
    fn table_is_key_value_lines() {
        assert_eq!(
            status(Mode::Table, &sample(), now()).unwrap(),
            "\
address   127.0.0.1:4522
version   0.1.0
pid       1234
uptime    2h 3m (since 2026-11-24T10:00:00Z)
health    SERVING
tunnels   2 open
hosts     default (connected), web1 (idle)"
        );
    }

    #[test]
    fn table_counts_failed_tunnels_and_copes_with_nothing() {
        let mut s = sample();
        s.list.tunnels.push(remote_tunnel());
        s.list.hosts.clear();
        s.health = "NOT_SERVING".into();
        let out = status(Mode::Table, &s, now()).unwrap();
        assert!(out.contains("\ntunnels   3 open (1 failed)\n"), "{out}");
        assert!(out.ends_with("\nhosts     -"), "{out}");
        assert!(out.contains("\nhealth    NOT_SERVING\n"), "{out}");

        s.info = GetInfoResponse::default();
        let out = status(Mode::Table, &s, now()).unwrap();
        assert!(
            out.contains("\nversion   -\npid       -\nuptime    -\n"),
            "{out}"
        );
    }

    #[test]
    fn json_nests_the_api_messages() {
        let out = status(Mode::Json, &sample(), now()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "address": "127.0.0.1:4522",
                "info": {
                    "version": "0.1.0",
                    "startedAt": "2026-11-24T10:00:00.250Z",
                    "pid": 1234
                },
                "health": "SERVING",
                "tunnels": 2,
                "hosts": [
                    {
                        "name": "default",
                        "address": "me@localhost:22",
                        "state": "SSH_CONNECTION_STATE_CONNECTED",
                        "tunnels": 2
                    },
                    {"name": "web1", "state": "SSH_CONNECTION_STATE_IDLE"}
                ]
            })
        );
        // Keys in the documented order, as written.
        assert!(
            out.starts_with("{\n  \"address\": \"127.0.0.1:4522\",\n  \"info\": {"),
            "{out}"
        );
    }

    #[test]
    fn quiet_prints_nothing() {
        assert_eq!(status(Mode::Quiet, &sample(), now()).unwrap(), "");
    }
}
