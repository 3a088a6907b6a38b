//! The SSH hosts tunneld knows: the `hosts` table.

use std::time::SystemTime;

use comfy_table::Cell;
use tunnel_proto::v1::{HostSource, ListResponse, SshHost};

use super::{Mode, age, host_state_name, json, new_table, one_line, or_dash, reconnect_progress};

/// What `hosts` says on stderr, in table mode, when tunneld knows no host.
pub const NO_HOSTS: &str = "tunneld knows no SSH hosts.";

/// Renders the hosts of a `ListResponse`: a table, the response with only
/// `hosts` set as JSON (`{"hosts":[...]}`), or the names.
pub fn hosts(mode: Mode, hosts: &[SshHost], now: SystemTime) -> anyhow::Result<String> {
    Ok(match mode {
        Mode::Table if hosts.is_empty() => String::new(),
        Mode::Table => table(hosts, now),
        Mode::Json => json::pretty(&ListResponse {
            tunnels: Vec::new(),
            hosts: hosts.to_vec(),
        })?,
        Mode::Quiet => hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// The table of SSH hosts: ADDRESS is followed by `via HOP,…` when the
/// connection goes through jump hosts; CONNECTED is how long the current
/// connection has been up; DETAIL says why the last connection failed, or for a
/// reconnecting host which attempt it is at and when the next one starts.
pub fn table(hosts: &[SshHost], now: SystemTime) -> String {
    let mut table = new_table(["NAME", "ADDRESS", "STATE", "TUNNELS", "CONNECTED", "DETAIL"]);
    for h in hosts {
        table.add_row([
            Cell::new(&h.name),
            Cell::new(address(h)),
            Cell::new(state(h)),
            Cell::new(h.tunnels),
            Cell::new(age(h.connected_at.as_ref(), now)),
            Cell::new(detail(h, now)),
        ]);
    }
    table.trim_fmt()
}

/// The STATE column: the connection's state, then where a host added at
/// runtime comes from: `idle (added)`, `connected (persisted)`.
fn state(h: &SshHost) -> String {
    let name = host_state_name(h.state);
    match HostSource::try_from(h.source) {
        Ok(HostSource::Api) => format!("{name} (added)"),
        Ok(HostSource::Persisted) => format!("{name} (persisted)"),
        _ => name.to_string(),
    }
}

/// The ADDRESS column: `user@host:port`, then `via HOP,…` for a route
/// through jump hosts (as `ssh -J` takes them).
fn address(host: &SshHost) -> String {
    let address = or_dash(&host.address);
    if host.via.is_empty() {
        address.to_string()
    } else {
        format!("{address} via {}", host.via.join(","))
    }
}

/// The DETAIL column: `attempt 2, next in 1.5s: WHY` while reconnecting,
/// else tunneld's `state_detail`, on one line.
fn detail(host: &SshHost, now: SystemTime) -> String {
    match reconnect_progress(host, now) {
        Some(progress) if host.state_detail.trim().is_empty() => progress,
        Some(progress) => format!("{progress}: {}", one_line(&host.state_detail)),
        None => one_line(&host.state_detail),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use tunnel_proto::pbjson_types::Timestamp;
    use tunnel_proto::v1::SshConnectionState;

    fn two_hosts() -> Vec<SshHost> {
        vec![
            SshHost {
                name: "default".into(),
                address: "deploy@10.0.0.5:22".into(),
                state: SshConnectionState::Connected as i32,
                tunnels: 2,
                connected_at: Some(Timestamp {
                    seconds: 1_000,
                    nanos: 0,
                }),
                ..Default::default()
            },
            SshHost {
                name: "web1".into(),
                address: "root@web1:2222".into(),
                state: SshConnectionState::Failed as i32,
                state_detail: "connection refused\nby web1:2222".into(),
                ..Default::default()
            },
        ]
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn table_columns() {
        let table = table(&two_hosts(), at(1_000 + 300));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "ADDRESS", "STATE", "TUNNELS", "CONNECTED", "DETAIL"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["default", "deploy@10.0.0.5:22", "connected", "2", "5m", "-"]
        );
        assert!(
            lines[2].ends_with("failed      0         -           connection refused by web1:2222"),
            "{table}"
        );
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{table}");
    }

    #[test]
    fn a_route_through_jump_hosts_follows_the_address() {
        let mut hosts = two_hosts();
        hosts[0].via = vec!["bastion".into(), "jump@10.0.0.1:2222".into()];
        let table = table(&hosts, at(1_000 + 300));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "default",
                "deploy@10.0.0.5:22",
                "via",
                "bastion,jump@10.0.0.1:2222",
                "connected",
                "2",
                "5m",
                "-"
            ],
            "{table}"
        );
        assert!(lines[2].contains("root@web1:2222 "), "{table}");
        assert!(!lines[2].contains("via"), "{table}");
    }

    #[test]
    fn reconnecting_hosts_show_the_attempt_and_the_next_try() {
        let mut host = SshHost {
            name: "default".into(),
            address: "deploy@10.0.0.5:22".into(),
            state: SshConnectionState::Reconnecting as i32,
            state_detail: "connection lost: reset".into(),
            tunnels: 1,
            reconnect_attempt: 3,
            next_attempt_at: Some(Timestamp {
                seconds: 1_004,
                nanos: 0,
            }),
            ..Default::default()
        };
        let out = table(std::slice::from_ref(&host), at(1_000));
        let row = out.lines().nth(1).unwrap();
        assert!(
            row.ends_with("reconnecting   1         -           attempt 3, next in 4.0s: connection lost: reset"),
            "{out}"
        );
        host.state_detail.clear();
        host.next_attempt_at = None;
        let out = table(&[host], at(1_000));
        assert!(out.ends_with("   attempt 3 under way"), "{out}");
    }

    #[test]
    fn json_is_a_list_response_with_hosts_only() {
        let out = hosts(Mode::Json, &two_hosts(), at(0)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        let object = value.as_object().unwrap();
        assert_eq!(object.keys().collect::<Vec<_>>(), ["hosts"]);
        assert_eq!(value["hosts"][0]["state"], "SSH_CONNECTION_STATE_CONNECTED");
        assert_eq!(value["hosts"][0]["connectedAt"], "1970-01-01T00:16:40Z");
        assert_eq!(
            value["hosts"][1]["stateDetail"],
            "connection refused\nby web1:2222"
        );
        assert!(value["hosts"][1].get("connectedAt").is_none());
    }

    #[test]
    fn quiet_prints_names() {
        assert_eq!(
            hosts(Mode::Quiet, &two_hosts(), at(0)).unwrap(),
            "default\nweb1"
        );
        assert_eq!(hosts(Mode::Table, &[], at(0)).unwrap(), "");
    }
}
