//! Rendering results: human lines and tables, proto3 JSON, or ids only.
//!
//! Every function here returns a `String` and prints nothing, so the
//! formatting is tested without a daemon; the commands do the printing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::{Cell, ContentArrangement, Table, presets};
use serde::Serialize;
use tunnel_proto::pbjson_types::Timestamp;
use tunnel_proto::v1::{
    Endpoint, ListResponse, SshConnectionState, SshHost, Tunnel, TunnelKind, TunnelState,
};

use crate::cli::OutputFormat;

/// How results are printed, from `--output` and `--quiet` (which wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Human-readable lines and tables.
    Table,
    /// proto3 JSON, as grpcurl prints it.
    Json,
    /// Tunnel ids only, one per line, for scripts.
    Quiet,
}

impl Mode {
    /// Picks the mode from the global flags.
    pub fn new(format: OutputFormat, quiet: bool) -> Self {
        match (quiet, format) {
            (true, _) => Mode::Quiet,
            (false, OutputFormat::Table) => Mode::Table,
            (false, OutputFormat::Json) => Mode::Json,
        }
    }
}

/// Serializes a message as pretty proto3 JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)?)
}

/// Renders one tunnel just opened (or closed).
pub fn tunnel(mode: Mode, tunnel: &Tunnel) -> anyhow::Result<String> {
    Ok(match mode {
        Mode::Table => tunnel_line(tunnel),
        Mode::Json => json(tunnel)?,
        Mode::Quiet => tunnel.id.clone(),
    })
}

/// Renders the answer to `list`.
pub fn list(mode: Mode, list: &ListResponse, now: SystemTime) -> anyhow::Result<String> {
    Ok(match mode {
        Mode::Table => format!(
            "{}\n\n{}",
            tunnels_table(&list.tunnels, now),
            hosts_table(&list.hosts)
        ),
        Mode::Json => json(list)?,
        Mode::Quiet => list
            .tunnels
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// One line saying what a tunnel carries, listening side first:
/// `t-1  local  127.0.0.1:7777 -> localhost:7780 via default`.
pub fn tunnel_line(tunnel: &Tunnel) -> String {
    let (listen, target) = listen_and_target(tunnel);
    format!(
        "{}  {}  {} -> {} via {}",
        tunnel.id,
        kind_name(tunnel.kind),
        endpoint(listen),
        endpoint(target),
        or_dash(&tunnel.host),
    )
}

/// The listening and target ends: a local forward listens on the local end,
/// a remote forward on the remote end.
fn listen_and_target(tunnel: &Tunnel) -> (Option<&Endpoint>, Option<&Endpoint>) {
    if tunnel.kind == TunnelKind::Remote as i32 {
        (tunnel.remote.as_ref(), tunnel.local.as_ref())
    } else {
        (tunnel.local.as_ref(), tunnel.remote.as_ref())
    }
}

/// The table of tunnels printed by `list`.
pub fn tunnels_table(tunnels: &[Tunnel], now: SystemTime) -> String {
    let mut table = new_table([
        "ID", "KIND", "LOCAL", "REMOTE", "HOST", "STATE", "CONNS", "BYTES", "AGE",
    ]);
    for t in tunnels {
        let counters = t.counters.unwrap_or_default();
        table.add_row([
            Cell::new(&t.id),
            Cell::new(kind_name(t.kind)),
            Cell::new(endpoint(t.local.as_ref())),
            Cell::new(endpoint(t.remote.as_ref())),
            Cell::new(or_dash(&t.host)),
            Cell::new(tunnel_state_name(t.state)),
            Cell::new(format!(
                "{}/{}",
                counters.active_connections, counters.total_connections
            )),
            Cell::new(format!(
                "{} / {}",
                human_bytes(counters.bytes_to_target),
                human_bytes(counters.bytes_from_target)
            )),
            Cell::new(age(t.created_at.as_ref(), now)),
        ]);
    }
    table.trim_fmt()
}

/// The table of SSH hosts printed by `list`.
pub fn hosts_table(hosts: &[SshHost]) -> String {
    let mut table = new_table(["NAME", "ADDRESS", "STATE", "TUNNELS", "DETAIL"]);
    for h in hosts {
        table.add_row([
            Cell::new(&h.name),
            Cell::new(or_dash(&h.address)),
            Cell::new(host_state_name(h.state)),
            Cell::new(h.tunnels),
            Cell::new(one_line(&h.state_detail)),
        ]);
    }
    table.trim_fmt()
}

/// A borderless table in the kubectl style: columns separated by spaces,
/// never wrapped (scripts cut columns out of it).
fn new_table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
    }
    table
}

/// `host:port`, with IPv6 addresses in brackets; `-` when unset.
pub fn endpoint(endpoint: Option<&Endpoint>) -> String {
    match endpoint {
        None => "-".into(),
        Some(e) if e.host.contains(':') => format!("[{}]:{}", e.host, e.port),
        Some(e) => format!("{}:{}", e.host, e.port),
    }
}

/// `local` or `remote`.
pub fn kind_name(kind: i32) -> &'static str {
    match TunnelKind::try_from(kind) {
        Ok(TunnelKind::Local) => "local",
        Ok(TunnelKind::Remote) => "remote",
        _ => "unknown",
    }
}

/// `open`, `failed` or `closed`.
pub fn tunnel_state_name(state: i32) -> &'static str {
    match TunnelState::try_from(state) {
        Ok(TunnelState::Open) => "open",
        Ok(TunnelState::Failed) => "failed",
        Ok(TunnelState::Closed) => "closed",
        _ => "unknown",
    }
}

/// `idle`, `connecting`, `connected` or `failed`.
pub fn host_state_name(state: i32) -> &'static str {
    match SshConnectionState::try_from(state) {
        Ok(SshConnectionState::Idle) => "idle",
        Ok(SshConnectionState::Connecting) => "connecting",
        Ok(SshConnectionState::Connected) => "connected",
        Ok(SshConnectionState::Failed) => "failed",
        _ => "unknown",
    }
}

/// Bytes in binary units with one decimal: `512 B`, `1.2 KiB`, `3.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Move up while the rounded value would print as 1024.0 or more.
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Time since `since`, in the largest whole unit: `5s`, `3m`, `2h`, `4d`;
/// `-` when unset.
pub fn age(since: Option<&Timestamp>, now: SystemTime) -> String {
    let Some(since) = since else {
        return "-".into();
    };
    let now = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    human_duration(Duration::from_secs(
        now.saturating_sub(since.seconds).max(0) as u64,
    ))
}

/// A duration in its largest whole unit: `5s`, `3m`, `2h`, `4d`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Keeps a table cell on one line.
fn one_line(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tunnel_proto::v1::TunnelCounters;

    fn ep(host: &str, port: u32) -> Option<Endpoint> {
        Some(Endpoint {
            host: host.into(),
            port,
        })
    }

    fn local_tunnel() -> Tunnel {
        Tunnel {
            id: "t-1".into(),
            kind: TunnelKind::Local as i32,
            host: "default".into(),
            local: ep("127.0.0.1", 7777),
            remote: ep("localhost", 7780),
            state: TunnelState::Open as i32,
            state_detail: String::new(),
            created_at: Some(Timestamp {
                seconds: 1_000,
                nanos: 0,
            }),
            counters: Some(TunnelCounters {
                active_connections: 1,
                total_connections: 3,
                failed_connections: 0,
                bytes_to_target: 1229,
                bytes_from_target: 300,
            }),
            attached: false,
        }
    }

    fn remote_tunnel() -> Tunnel {
        Tunnel {
            id: "t-2".into(),
            kind: TunnelKind::Remote as i32,
            host: "web1".into(),
            local: ep("localhost", 3000),
            remote: ep("::1", 8080),
            state: TunnelState::Failed as i32,
            ..Default::default()
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn tunnel_line_reads_listen_to_target() {
        assert_eq!(
            tunnel_line(&local_tunnel()),
            "t-1  local  127.0.0.1:7777 -> localhost:7780 via default"
        );
        assert_eq!(
            tunnel_line(&remote_tunnel()),
            "t-2  remote  [::1]:8080 -> localhost:3000 via web1"
        );
    }

    #[test]
    fn quiet_and_json_modes() {
        let t = local_tunnel();
        assert_eq!(tunnel(Mode::Quiet, &t).unwrap(), "t-1");
        let json: serde_json::Value =
            serde_json::from_str(&tunnel(Mode::Json, &t).unwrap()).unwrap();
        // proto3 JSON mapping: camelCase, enum names, 64-bit ints as strings.
        assert_eq!(json["kind"], "TUNNEL_KIND_LOCAL");
        assert_eq!(json["local"]["port"], 7777);
        assert_eq!(json["counters"]["bytesToTarget"], "1229");
        assert_eq!(json["createdAt"], "1970-01-01T00:16:40+00:00");

        let list_response = ListResponse {
            tunnels: vec![local_tunnel(), remote_tunnel()],
            hosts: vec![],
        };
        assert_eq!(
            list(Mode::Quiet, &list_response, at(0)).unwrap(),
            "t-1\nt-2"
        );
    }

    #[test]
    fn tunnels_table_columns() {
        let table = tunnels_table(&[local_tunnel(), remote_tunnel()], at(1_000 + 150));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "ID", "KIND", "LOCAL", "REMOTE", "HOST", "STATE", "CONNS", "BYTES", "AGE"
            ]
        );
        assert!(lines[0].starts_with("ID "), "no leading padding: {table}");
        assert!(
            lines.iter().all(|l| !l.ends_with(' ')),
            "trailing spaces: {table}"
        );
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "t-1",
                "local",
                "127.0.0.1:7777",
                "localhost:7780",
                "default",
                "open",
                "1/3",
                "1.2",
                "KiB",
                "/",
                "300",
                "B",
                "2m"
            ]
        );
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "t-2",
                "remote",
                "localhost:3000",
                "[::1]:8080",
                "web1",
                "failed",
                "0/0",
                "0",
                "B",
                "/",
                "0",
                "B",
                "-"
            ]
        );
        // Columns line up: every row's second column starts where KIND does.
        let kind_at = lines[0].find("KIND").unwrap();
        assert_eq!(lines[1].find("local"), Some(kind_at));
        assert_eq!(lines[2].find("remote"), Some(kind_at));
    }

    #[test]
    fn hosts_table_columns() {
        let hosts = [
            SshHost {
                name: "default".into(),
                address: "deploy@10.0.0.5:22".into(),
                state: SshConnectionState::Connected as i32,
                tunnels: 2,
                ..Default::default()
            },
            SshHost {
                name: "web1".into(),
                address: "root@web1:2222".into(),
                state: SshConnectionState::Failed as i32,
                state_detail: "connection refused\nby web1:2222".into(),
                ..Default::default()
            },
        ];
        let table = hosts_table(&hosts);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["NAME", "ADDRESS", "STATE", "TUNNELS", "DETAIL"]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["default", "deploy@10.0.0.5:22", "connected", "2", "-"]
        );
        assert!(
            lines[2].ends_with("failed      0         connection refused by web1:2222"),
            "{table}"
        );
    }

    #[test]
    fn empty_list_still_has_headers() {
        let out = list(Mode::Table, &ListResponse::default(), at(0)).unwrap();
        assert_eq!(
            out,
            "ID   KIND   LOCAL   REMOTE   HOST   STATE   CONNS   BYTES   AGE\n\nNAME   ADDRESS   STATE   TUNNELS   DETAIL"
        );
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1229), "1.2 KiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 + 512 * 1024), "5.5 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn ages_in_largest_unit() {
        let ts = Timestamp {
            seconds: 1_000,
            nanos: 0,
        };
        assert_eq!(age(Some(&ts), at(1_005)), "5s");
        assert_eq!(age(Some(&ts), at(1_000 + 59)), "59s");
        assert_eq!(age(Some(&ts), at(1_000 + 180)), "3m");
        assert_eq!(age(Some(&ts), at(1_000 + 2 * 3600 + 59 * 60)), "2h");
        assert_eq!(age(Some(&ts), at(1_000 + 3 * 86400)), "3d");
        // A daemon clock ahead of ours is not a negative age.
        assert_eq!(age(Some(&ts), at(900)), "0s");
        assert_eq!(age(None, at(900)), "-");
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint(ep("fd00::1", 22).as_ref()), "[fd00::1]:22");
        assert_eq!(endpoint(None), "-");
    }
}
