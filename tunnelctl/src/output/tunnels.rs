//! Tunnels: the line an open verb prints, and the `list` table.

use std::time::SystemTime;

use comfy_table::Cell;
use tunnel_proto::v1::{ListResponse, Tunnel, TunnelKind, TunnelSource, TunnelState};

use super::{
    Mode, age, endpoint, human_bytes, json, kind_name, new_table, or_dash, tunnel_state_name,
};

/// What `list` says on stderr, in table mode, when no tunnel is open (stdout
/// stays empty, so `$(tunnelctl list)` is empty too).
pub const NO_TUNNELS: &str = "No tunnels are open.";

/// Renders one tunnel just opened.
pub fn tunnel(mode: Mode, tunnel: &Tunnel) -> anyhow::Result<String> {
    Ok(match mode {
        Mode::Table => tunnel_line(tunnel),
        Mode::Json => json::pretty(tunnel)?,
        Mode::Quiet => tunnel.id.clone(),
    })
}

/// Renders the answer to `list`: the tunnels table (empty when there are no
/// tunnels; see [`NO_TUNNELS`]), the whole `ListResponse` as JSON, or ids.
pub fn list(mode: Mode, list: &ListResponse, now: SystemTime) -> anyhow::Result<String> {
    Ok(match mode {
        Mode::Table if list.tunnels.is_empty() => String::new(),
        Mode::Table => table(&list.tunnels, now),
        Mode::Json => json::pretty(list)?,
        Mode::Quiet => list
            .tunnels
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// How the side of a dynamic forward where each connection names its own
/// target is shown.
pub const SOCKS: &str = "SOCKS";

/// One line saying what a tunnel carries, listening side first:
/// `t-1  local  127.0.0.1:7777 -> localhost:7780 via default`; a name
/// follows the id (`t-1 (db)`), and a tunnel that outlives tunneld says so
/// at the end (`, persisted`).
pub fn tunnel_line(tunnel: &Tunnel) -> String {
    let (kind, listen, target, host) = carries(tunnel);
    let name = if tunnel.name.is_empty() {
        String::new()
    } else {
        format!(" ({})", tunnel.name)
    };
    let kept = source_name(tunnel.source)
        .map(|s| format!(", {s}"))
        .unwrap_or_default();
    format!(
        "{}{name}  {kind}  {listen} -> {target} via {host}{kept}",
        tunnel.id
    )
}

/// `persisted` or `declared`; `None` for a tunnel opened through the API
/// for this run only.
pub fn source_name(source: i32) -> Option<&'static str> {
    match TunnelSource::try_from(source) {
        Ok(TunnelSource::Persisted) => Some("persisted"),
        Ok(TunnelSource::Declared) => Some("declared"),
        _ => None,
    }
}

/// What a tunnel carries, as `tunnel_line` and `watch` show it: its kind,
/// listening side, target (with a reverse SOCKS proxy's
/// `(permit-remote-open: a:1,b:2)` when it has any) and SSH host.
pub fn carries(tunnel: &Tunnel) -> (&'static str, String, String, &str) {
    let (listen, mut target) = listen_and_target(tunnel);
    if let Some(permits) = permits(tunnel) {
        target = format!("{target} ({permits})");
    }
    (
        kind_name(tunnel.kind),
        listen,
        target,
        or_dash(&tunnel.host),
    )
}

/// The listening and target ends, shown: a local or dynamic forward listens
/// on the local end, a remote one on the remote end.
pub fn listen_and_target(tunnel: &Tunnel) -> (String, String) {
    let local = local_end(tunnel);
    let remote = remote_end(tunnel);
    match TunnelKind::try_from(tunnel.kind) {
        Ok(TunnelKind::Remote | TunnelKind::RemoteDynamic) => (remote, local),
        _ => (local, remote),
    }
}

/// The LOCAL column: tunneld's side; `SOCKS` for a reverse dynamic forward.
pub fn local_end(tunnel: &Tunnel) -> String {
    if tunnel.kind == TunnelKind::RemoteDynamic as i32 {
        SOCKS.to_string()
    } else {
        endpoint(tunnel.local.as_ref())
    }
}

/// The REMOTE column: the SSH server's side; `SOCKS` for a dynamic forward.
pub fn remote_end(tunnel: &Tunnel) -> String {
    if tunnel.kind == TunnelKind::Dynamic as i32 {
        SOCKS.to_string()
    } else {
        endpoint(tunnel.remote.as_ref())
    }
}

/// `permit-remote-open: a:1,b:2`, when the tunnel has any.
fn permits(tunnel: &Tunnel) -> Option<String> {
    if tunnel.permit_remote_open.is_empty() {
        return None;
    }
    Some(format!(
        "permit-remote-open: {}",
        tunnel.permit_remote_open.join(",")
    ))
}

/// The table of tunnels printed by `list`. Two columns appear only when
/// they have something to say, to keep the usual table narrow: REFUSED
/// (connections turned away at a cap) after CONNS, and DETAIL (why a tunnel
/// is not open, how often it was restored) at the end.
pub fn table(tunnels: &[Tunnel], now: SystemTime) -> String {
    let refused = tunnels
        .iter()
        .any(|t| t.counters.unwrap_or_default().refused_connections > 0);
    let details: Vec<String> = tunnels.iter().map(detail).collect();
    let with_detail = details.iter().any(|d| !d.is_empty());

    let named = tunnels.iter().any(|t| !t.name.is_empty());
    let mut header = vec!["ID"];
    if named {
        header.push("NAME");
    }
    header.extend(["KIND", "LOCAL", "REMOTE", "HOST", "STATE", "CONNS"]);
    if refused {
        header.push("REFUSED");
    }
    header.extend(["BYTES", "AGE"]);
    if with_detail {
        header.push("DETAIL");
    }
    let mut table = new_table(header);
    for (t, detail) in tunnels.iter().zip(details) {
        let counters = t.counters.unwrap_or_default();
        let mut row = vec![Cell::new(&t.id)];
        if named {
            row.push(Cell::new(or_dash(&t.name)));
        }
        row.extend([
            Cell::new(kind_name(t.kind)),
            Cell::new(local_end(t)),
            Cell::new(remote_end(t)),
            Cell::new(or_dash(&t.host)),
            Cell::new(state(t)),
            Cell::new(format!(
                "{}/{}",
                counters.active_connections, counters.total_connections
            )),
        ]);
        if refused {
            row.push(Cell::new(counters.refused_connections));
        }
        row.extend([
            Cell::new(format!(
                "{} / {}",
                human_bytes(counters.bytes_to_target),
                human_bytes(counters.bytes_from_target)
            )),
            Cell::new(age(t.created_at.as_ref(), now)),
        ]);
        if with_detail {
            row.push(Cell::new(or_dash(&detail)));
        }
        table.add_row(row);
    }
    table.trim_fmt()
}

/// The STATE column: the state's name, with `(attached)` for a tunnel that
/// lives only as long as some `--attach` call, `(persisted)` or
/// `(declared)` for one that outlives tunneld.
fn state(tunnel: &Tunnel) -> String {
    let name = tunnel_state_name(tunnel.state);
    let closed = tunnel.state == TunnelState::Closed as i32;
    match source_name(tunnel.source) {
        _ if tunnel.attached && !closed => format!("{name} (attached)"),
        Some(source) if !closed => format!("{name} ({source})"),
        _ => name.to_string(),
    }
}

/// The DETAIL column: why the tunnel is not open (tunneld's `state_detail`),
/// the targets a reverse SOCKS proxy may reach, how many times it was
/// restored after losing its SSH connection, and what its slow readers cost
/// (bytes that waited on disk, connections reset at a spill limit); empty
/// when there is none of these.
pub fn detail(tunnel: &Tunnel) -> String {
    let mut parts = Vec::new();
    let why = tunnel.state_detail.split_whitespace().collect::<Vec<_>>();
    if !why.is_empty() {
        parts.push(why.join(" "));
    }
    parts.extend(permits(tunnel));
    match tunnel.restores {
        0 => {}
        1 => parts.push("restored once".to_string()),
        n => parts.push(format!("restored {n} times")),
    }
    let counters = tunnel.counters.unwrap_or_default();
    if counters.spilled_bytes > 0 {
        parts.push(format!(
            "{} spilled to disk",
            human_bytes(counters.spilled_bytes)
        ));
    }
    match counters.buffer_limit_resets {
        0 => {}
        1 => parts.push("1 reset at a spill limit".to_string()),
        n => parts.push(format!("{n} reset at a spill limit")),
    }
    parts.join("; ")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use tunnel_proto::pbjson_types::Timestamp;
    use tunnel_proto::v1::{Endpoint, TunnelCounters};

    fn ep(host: &str, port: u32) -> Option<Endpoint> {
        Some(Endpoint {
            host: host.into(),
            port,
            ..Default::default()
        })
    }

    /// An open local forward with some traffic, made at second 1000.
    pub(crate) fn local_tunnel() -> Tunnel {
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
                refused_connections: 0,
                ..Default::default()
            }),
            attached: false,
            max_connections: 1024,
            idle_timeout: None,
            restores: 0,
            permit_remote_open: Vec::new(),
            name: String::new(),
            source: TunnelSource::Api as i32,
        }
    }

    #[test]
    fn names_and_sources_show_only_when_there_are_some() {
        let plain = local_tunnel();
        assert!(!tunnel_line(&plain).contains('('));
        let table_plain = table(std::slice::from_ref(&plain), SystemTime::UNIX_EPOCH);
        assert!(!table_plain.contains("NAME"));
        let mut kept = local_tunnel();
        kept.name = "db".into();
        kept.source = TunnelSource::Persisted as i32;
        assert_eq!(
            tunnel_line(&kept),
            "t-1 (db)  local  127.0.0.1:7777 -> localhost:7780 via default, persisted"
        );
        let t = table(&[plain, kept], SystemTime::UNIX_EPOCH);
        assert!(
            t.contains("NAME") && t.contains("db") && t.contains("open (persisted)"),
            "{t}"
        );
    }

    /// A failed remote forward over web1.
    pub(crate) fn remote_tunnel() -> Tunnel {
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

    /// An open SOCKS proxy on local port 1080 (`ssh -D 1080`), its remote
    /// side all empty.
    pub(crate) fn dynamic_tunnel() -> Tunnel {
        Tunnel {
            id: "t-3".into(),
            kind: TunnelKind::Dynamic as i32,
            host: "bastion".into(),
            local: ep("127.0.0.1", 1080),
            remote: Some(Endpoint::default()),
            state: TunnelState::Open as i32,
            ..Default::default()
        }
    }

    /// A reverse SOCKS proxy on the server's port 1080 (`ssh -R 1080`).
    fn remote_dynamic_tunnel() -> Tunnel {
        Tunnel {
            id: "t-4".into(),
            kind: TunnelKind::RemoteDynamic as i32,
            host: "web1".into(),
            local: None,
            remote: ep("127.0.0.1", 1080),
            state: TunnelState::Open as i32,
            permit_remote_open: vec!["intranet:80".into(), "db:*".into()],
            ..Default::default()
        }
    }

    /// A local forward between two unix sockets.
    fn socket_tunnel() -> Tunnel {
        let path = |p: &str| {
            Some(Endpoint {
                path: p.into(),
                ..Default::default()
            })
        };
        Tunnel {
            id: "t-5".into(),
            kind: TunnelKind::Local as i32,
            host: "db1".into(),
            local: path("/tmp/pg.sock"),
            remote: path("/run/postgresql/.s.PGSQL.5432"),
            state: TunnelState::Open as i32,
            ..Default::default()
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn dynamic_kinds_show_socks_and_paths_show_as_paths() {
        assert_eq!(
            tunnel_line(&dynamic_tunnel()),
            "t-3  dynamic  127.0.0.1:1080 -> SOCKS via bastion"
        );
        assert_eq!(
            tunnel_line(&remote_dynamic_tunnel()),
            "t-4  remote-dynamic  127.0.0.1:1080 -> SOCKS (permit-remote-open: intranet:80,db:*) via web1"
        );
        let mut open = remote_dynamic_tunnel();
        open.permit_remote_open.clear();
        assert_eq!(
            tunnel_line(&open),
            "t-4  remote-dynamic  127.0.0.1:1080 -> SOCKS via web1"
        );
        assert_eq!(
            tunnel_line(&socket_tunnel()),
            "t-5  local  /tmp/pg.sock -> /run/postgresql/.s.PGSQL.5432 via db1"
        );
    }

    #[test]
    fn table_shows_socks_paths_and_permits() {
        let table = table(
            &[dynamic_tunnel(), remote_dynamic_tunnel(), socket_tunnel()],
            at(0),
        );
        let lines: Vec<&str> = table.lines().collect();
        let column = |line: &str, name: &str| {
            let at = lines[0].find(name).unwrap();
            line[at..].split("  ").next().unwrap().to_string()
        };
        let cells = |line: &str| ["KIND", "LOCAL", "REMOTE", "HOST"].map(|name| column(line, name));
        assert_eq!(
            cells(lines[1]),
            ["dynamic", "127.0.0.1:1080", "SOCKS", "bastion"]
        );
        assert_eq!(
            cells(lines[2]),
            ["remote-dynamic", "SOCKS", "127.0.0.1:1080", "web1"]
        );
        assert_eq!(
            cells(lines[3]),
            [
                "local",
                "/tmp/pg.sock",
                "/run/postgresql/.s.PGSQL.5432",
                "db1"
            ]
        );
        assert_eq!(column(lines[1], "DETAIL"), "-");
        assert_eq!(
            &lines[2][lines[0].find("DETAIL").unwrap()..],
            "permit-remote-open: intranet:80,db:*"
        );
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{table}");
    }

    #[test]
    fn json_names_the_new_kinds_and_fields() {
        let json: serde_json::Value =
            serde_json::from_str(&tunnel(Mode::Json, &dynamic_tunnel()).unwrap()).unwrap();
        assert_eq!(json["kind"], "TUNNEL_KIND_DYNAMIC");
        assert_eq!(json["local"]["port"], 1080);
        let json: serde_json::Value =
            serde_json::from_str(&tunnel(Mode::Json, &remote_dynamic_tunnel()).unwrap()).unwrap();
        assert_eq!(json["kind"], "TUNNEL_KIND_REMOTE_DYNAMIC");
        assert_eq!(json["permitRemoteOpen"][1], "db:*");
        let json: serde_json::Value =
            serde_json::from_str(&tunnel(Mode::Json, &socket_tunnel()).unwrap()).unwrap();
        assert_eq!(json["local"]["path"], "/tmp/pg.sock");
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
        assert_eq!(json["createdAt"], "1970-01-01T00:16:40Z");

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
    fn table_columns() {
        let table = table(&[local_tunnel(), remote_tunnel()], at(1_000 + 150));
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
    fn refused_and_detail_columns_appear_when_needed() {
        let mut busy = local_tunnel();
        busy.counters.as_mut().unwrap().refused_connections = 4;
        let mut troubled = remote_tunnel();
        troubled.state = TunnelState::Reconnecting as i32;
        troubled.state_detail = "SSH connection to web1 lost:\nreset".into();
        troubled.restores = 2;
        let table = table(&[busy, troubled], at(1_000 + 150));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "ID", "KIND", "LOCAL", "REMOTE", "HOST", "STATE", "CONNS", "REFUSED", "BYTES",
                "AGE", "DETAIL"
            ]
        );
        let column = |line: &str, name: &str| {
            let at = lines[0].find(name).unwrap();
            line[at..].split("  ").next().unwrap().to_string()
        };
        assert_eq!(column(lines[1], "REFUSED"), "4");
        assert_eq!(column(lines[1], "DETAIL"), "-");
        assert_eq!(column(lines[2], "STATE"), "reconnecting");
        assert_eq!(column(lines[2], "REFUSED"), "0");
        assert_eq!(
            &lines[2][lines[0].find("DETAIL").unwrap()..],
            "SSH connection to web1 lost: reset; restored 2 times"
        );
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{table}");
    }

    #[test]
    fn failed_tunnels_say_why() {
        let mut t = remote_tunnel();
        t.state_detail = "the server refused port 8080".into();
        t.restores = 1;
        assert_eq!(detail(&t), "the server refused port 8080; restored once");
        assert_eq!(detail(&local_tunnel()), "");
    }

    #[test]
    fn slow_readers_costs_show_in_the_detail() {
        let mut t = local_tunnel();
        if let Some(c) = t.counters.as_mut() {
            c.spilled_bytes = 3 << 20;
            c.buffer_limit_resets = 2;
        }
        assert_eq!(
            detail(&t),
            format!(
                "{} spilled to disk; 2 reset at a spill limit",
                human_bytes(3 << 20)
            )
        );
    }

    #[test]
    fn attached_tunnels_say_so() {
        let mut t = local_tunnel();
        t.attached = true;
        let table = table(&[t], at(1_000));
        let row = table.lines().nth(1).unwrap();
        assert!(row.contains("   open (attached)   1/3"), "{table}");
        let conns_at = table.lines().next().unwrap().find("CONNS").unwrap();
        assert_eq!(row.find("1/3"), Some(conns_at), "{table}");
    }

    #[test]
    fn empty_list_prints_nothing_on_stdout_in_table_mode() {
        let empty = ListResponse::default();
        assert_eq!(list(Mode::Table, &empty, at(0)).unwrap(), "");
        assert_eq!(list(Mode::Quiet, &empty, at(0)).unwrap(), "");
        assert_eq!(list(Mode::Json, &empty, at(0)).unwrap(), "{}");
    }

    #[test]
    fn list_table_has_no_hosts() {
        let response = ListResponse {
            tunnels: vec![local_tunnel()],
            hosts: vec![tunnel_proto::v1::SshHost {
                name: "web1".into(),
                ..Default::default()
            }],
        };
        let out = list(Mode::Table, &response, at(1_000)).unwrap();
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(!out.contains("NAME") && !out.contains("web1"), "{out}");
    }
}
