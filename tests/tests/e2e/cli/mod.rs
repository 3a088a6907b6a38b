//! End-to-end tests of `tunnelctl`, the real binary, against a real tunneld
//! and sshd: what a user types and what they see — stdout, stderr, exit
//! codes, ports freed — checked against the CLI contract of issue 3.
//!
//! One module per concern. The helpers here read tunnelctl's output formats
//! (the one-line tunnel, proto3 JSON) and make addresses nothing listens on.

use std::net::{SocketAddr, TcpListener};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tunneld_tests::{Ctl, CtlChild};

use crate::support::Bed;

mod addr;
mod attach;
mod auth;
mod completions;
mod errors;
mod exec;
mod exec_stream;
mod forward_forms;
mod host;
mod hosts_status;
mod limits;
mod list_close;
mod names;
mod open;
mod watch;

/// A tunnelctl runner pointed at the bed's daemon.
pub fn ctl(bed: &Bed) -> Result<Ctl> {
    Ctl::new(bed.daemon.addr())
}

/// After tunneld died under a following tunnelctl (`--attach`, `watch`):
/// it exits 1 within `within` with one error line naming tunneld's address.
pub async fn expect_lost_tunneld(
    child: &mut CtlChild,
    bed: &Bed,
    within: std::time::Duration,
) -> Result<()> {
    let status = child.wait(within).await?;
    let stderr = child.stderr_text();
    ensure!(status.code() == Some(1), "{status}; stderr {stderr:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    ensure!(
        lines.len() == 1 && lines[0].starts_with("tunnelctl: "),
        "expected one error line, stderr {stderr:?}"
    );
    ensure!(
        lines[0].contains(&bed.daemon.addr().to_string()),
        "error line does not name tunneld's address: {stderr:?}"
    );
    Ok(())
}

/// An address on 127.0.0.1 where nothing listens: bound to learn a free
/// port, then released, so connecting is refused.
pub fn dead_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    Ok(addr)
}

/// A tunnel as `open-local`/`open-remote` print it in table mode:
/// `t-1  local  127.0.0.1:7777 -> localhost:7780 via default`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelLine {
    /// The tunnel id.
    pub id: String,
    /// `local` or `remote`.
    pub kind: String,
    /// Host of the listening side.
    pub listen_host: String,
    /// Port of the listening side.
    pub listen_port: u16,
    /// The target, `host:port`.
    pub target: String,
    /// The SSH host it runs over.
    pub via: String,
}

/// Parses a tunnel line; fails, quoting the line, when it has another shape.
pub fn parse_tunnel_line(line: &str) -> Result<TunnelLine> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [id, kind, listen, arrow, target, via_word, via] = words[..] else {
        bail!("tunnel line {line:?} is not `ID KIND LISTEN -> TARGET via HOST`");
    };
    ensure!(
        arrow == "->" && via_word == "via",
        "tunnel line {line:?} is not `ID KIND LISTEN -> TARGET via HOST`"
    );
    ensure!(
        line.starts_with(&format!("{id}  {kind}  ")),
        "tunnel line {line:?}: fields are not separated by two spaces"
    );
    let (host, port) = listen
        .rsplit_once(':')
        .with_context(|| format!("listening end {listen:?} in {line:?} has no port"))?;
    let listen_port = port
        .parse()
        .with_context(|| format!("listening port {port:?} in {line:?}"))?;
    Ok(TunnelLine {
        id: id.into(),
        kind: kind.into(),
        listen_host: host.into(),
        listen_port,
        target: target.into(),
        via: via.into(),
    })
}

/// `value[key]` as a string, failing with the document when absent or not a
/// string.
pub fn str_field<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("no string {key:?} in {value}"))
}

/// `value[key]` as an integer, failing when absent or not a JSON number
/// (proto3 JSON writes 32-bit integers as numbers).
pub fn num_field(value: &Value, key: &str) -> Result<u64> {
    value
        .get(key)
        .and_then(Value::as_u64)
        .with_context(|| format!("no number {key:?} in {value}"))
}

/// Checks the proto3 JSON mapping's naming everywhere in `value`: every key
/// lowerCamelCase (no `_`), as grpcurl prints.
pub fn check_camel_case(value: &Value) -> Result<()> {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                ensure!(
                    !key.contains('_')
                        && key.chars().next().is_some_and(|c| c.is_ascii_lowercase()),
                    "key {key:?} is not lowerCamelCase in {value}"
                );
                check_camel_case(v)?;
            }
        }
        Value::Array(items) => items.iter().try_for_each(check_camel_case)?,
        _ => {}
    }
    Ok(())
}

/// True for an RFC 3339 timestamp in UTC as the proto3 JSON mapping writes
/// it: `2026-11-24T10:00:00Z` with 0, 3, 6 or 9 fraction digits.
pub fn is_rfc3339_utc(s: &str) -> bool {
    let Some(body) = s.strip_suffix('Z') else {
        return false;
    };
    let (main, fraction) = match body.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (body, None),
    };
    let shape_ok = main.len() == 19
        && main.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        });
    let fraction_ok = match fraction {
        None => true,
        Some(f) => matches!(f.len(), 3 | 6 | 9) && f.chars().all(|c| c.is_ascii_digit()),
    };
    shape_ok && fraction_ok
}

/// Checks the fields every `Tunnel` JSON object of a fresh local forward
/// from 127.0.0.1:`listen` (0: any) to 127.0.0.1:`target` has.
pub fn check_local_tunnel_json(t: &Value, listen: u16, target: u16) -> Result<()> {
    check_camel_case(t)?;
    ensure!(str_field(t, "id")?.starts_with("t-"), "id in {t}");
    ensure!(
        str_field(t, "kind")? == "TUNNEL_KIND_LOCAL",
        "kind is not the enum name TUNNEL_KIND_LOCAL: {t}"
    );
    ensure!(str_field(t, "host")? == "default", "host in {t}");
    let local = t.get("local").context("no local endpoint")?;
    ensure!(
        str_field(local, "host")? == "127.0.0.1",
        "local.host in {t}"
    );
    let port = num_field(local, "port")?;
    ensure!(
        port != 0 && (listen == 0 || port == u64::from(listen)),
        "local.port {port} in {t}"
    );
    let remote = t.get("remote").context("no remote endpoint")?;
    ensure!(
        str_field(remote, "host")? == "127.0.0.1",
        "remote.host in {t}"
    );
    ensure!(
        num_field(remote, "port")? == u64::from(target),
        "remote.port in {t}"
    );
    let created = str_field(t, "createdAt")?;
    ensure!(
        is_rfc3339_utc(created),
        "createdAt {created:?} is not RFC 3339 in UTC with Z"
    );
    Ok(())
}

#[test]
fn rfc3339_checker_accepts_only_the_proto3_forms() {
    for good in [
        "2026-11-24T10:00:00Z",
        "2026-11-24T10:00:00.123Z",
        "2026-11-24T10:00:00.123456Z",
        "2026-11-24T10:00:00.123456789Z",
    ] {
        assert!(is_rfc3339_utc(good), "{good}");
    }
    for bad in [
        "2026-11-24T10:00:00+00:00",
        "2026-11-24 10:00:00Z",
        "2026-11-24T10:00:00.1Z",
        "1764000000",
    ] {
        assert!(!is_rfc3339_utc(bad), "{bad}");
    }
}

#[test]
fn tunnel_line_parser_reads_the_documented_line() {
    let t = parse_tunnel_line("t-1  local  127.0.0.1:7777 -> localhost:7780 via default").unwrap();
    assert_eq!(t.id, "t-1");
    assert_eq!(t.kind, "local");
    assert_eq!((t.listen_host.as_str(), t.listen_port), ("127.0.0.1", 7777));
    assert_eq!(t.target, "localhost:7780");
    assert_eq!(t.via, "default");
    assert!(parse_tunnel_line("t-1 local 127.0.0.1:7777").is_err());
}

/// Runs each case's arguments and checks tunnelctl refused them as usage
/// errors: exit 2, nothing on stdout, one error line naming every needle.
/// Reports all the cases that failed at once.
pub async fn expect_usage_errors(ctl: &Ctl, cases: &[(&[&str], &[&str])]) -> Result<()> {
    let mut failures = Vec::new();
    for (args, needles) in cases {
        let out = ctl.run(args.iter()).await?;
        let checked = (|| {
            out.expect_code(2)?;
            let line = out.error_line()?;
            for needle in needles.iter() {
                ensure!(
                    line.contains(needle),
                    "error line {line:?} does not name {needle}"
                );
            }
            ensure!(out.stdout.is_empty(), "stdout not empty");
            Ok(())
        })();
        if let Err(e) = checked {
            failures.push(format!("{args:?}: {e:#}\n{out}"));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}
