//! `tunnelctl watch [ID]`: the hosts and tunnels as they are, then one line
//! per change as it happens — a tunnel opened elsewhere, its connections
//! with their byte counts, its close. With an id it follows that tunnel and
//! ends (exit 0) when it is closed; an unknown id is the usual error line.
//! `-o json` is NDJSON: one `WatchResponse` per line in proto3 JSON.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunneld_tests::CtlChild;
use tunneld_tests::peers::TcpPeer;

use super::{check_camel_case, ctl, is_rfc3339_utc, parse_tunnel_line, str_field};
use crate::support::{Bed, connect, e2e};

/// How long a watching tunnelctl may take to print a line or to exit.
const PROMPT: Duration = Duration::from_secs(10);

/// One table line of `watch`, split into its columns (runs of two or more
/// spaces separate them; none of them holds two spaces in a row).
#[derive(Debug, Clone, PartialEq, Eq)]
struct WatchLine {
    /// RFC 3339 UTC, to the second.
    time: String,
    /// `host NAME` or `tunnel ID`.
    subject: String,
    /// The state, or `conn #N opened|closed`.
    what: String,
    /// The rest; may be empty.
    detail: String,
}

/// Parses a `watch` line; fails, quoting it, when it has another shape.
fn parse_watch_line(line: &str) -> Result<WatchLine> {
    let columns: Vec<&str> = line
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    let (time, subject, what, detail) = match columns[..] {
        [time, subject, what] => (time, subject, what, ""),
        [time, subject, what, detail] => (time, subject, what, detail),
        _ => bail!("watch line {line:?} is not `TIME  SUBJECT  WHAT  DETAIL`"),
    };
    ensure!(
        is_rfc3339_utc(time) && !time.contains('.'),
        "watch line {line:?} does not start with an RFC 3339 UTC time to the second"
    );
    ensure!(
        line.ends_with(line.trim_end()),
        "watch line {line:?} has trailing spaces"
    );
    Ok(WatchLine {
        time: time.into(),
        subject: subject.into(),
        what: what.into(),
        detail: detail.into(),
    })
}

/// Reads lines until one satisfies `matches`; the lines skipped on the way
/// are returned with it (for messages, and to check what came before).
async fn line_where(
    child: &mut CtlChild,
    what: &str,
    mut matches: impl FnMut(&WatchLine) -> bool,
) -> Result<(WatchLine, Vec<String>)> {
    let mut skipped = Vec::new();
    loop {
        let line = child
            .expect_line(PROMPT)
            .await
            .with_context(|| format!("waiting for {what}; lines so far: {skipped:#?}"))?;
        let parsed = parse_watch_line(&line)?;
        if matches(&parsed) {
            return Ok((parsed, skipped));
        }
        skipped.push(line);
    }
}

/// Opens a local forward to `echo` with `tunnelctl open-local` and returns
/// its id and port.
async fn open_local(bed: &Bed, echo: &TcpPeer) -> Result<(String, u16)> {
    let spec = format!("0:127.0.0.1:{}", echo.port());
    let out = ctl(bed)?.run(["open-local", "-L", &spec]).await?;
    out.success()?;
    let t = parse_tunnel_line(out.stdout_text().trim_end())?;
    Ok((t.id, t.listen_port))
}

/// One echo round trip of `data` on a fresh connection, closed afterwards;
/// returns the client's port (the peer tunneld reports).
async fn round_trip(port: u16, data: &[u8]) -> Result<u16> {
    let mut stream = connect(port).await?;
    let client_port = stream.local_addr()?.port();
    stream.write_all(data).await?;
    stream.shutdown().await?;
    let mut got = Vec::new();
    tokio::time::timeout(PROMPT, stream.read_to_end(&mut got))
        .await
        .context("echo through the tunnel hung")??;
    ensure!(got == data, "echo returned {got:?}");
    Ok(client_port)
}

/// Sends `signal` and checks the quiet exit: code 0, nothing on stderr.
async fn stop_quietly(child: &mut CtlChild, signal: Signal) -> Result<()> {
    child.signal(signal)?;
    let status = child.wait(PROMPT).await?;
    let stderr = child.stderr_text();
    ensure!(
        status.code() == Some(0),
        "after {signal}: {status}; stderr {stderr:?}"
    );
    ensure!(stderr.is_empty(), "stderr after {signal}: {stderr:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_shows_the_state_then_a_tunnel_and_its_connections() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (first, first_port) = open_local(&bed, &echo).await?;
        let mut child = ctl(&bed)?.spawn(["watch"]).await?;

        // The state as it is: the host (connected by the first tunnel), then
        // the tunnel.
        let host = parse_watch_line(&child.expect_line(PROMPT).await?)?;
        ensure!(
            host.subject == "host default" && host.what == "connected",
            "first line {host:?}"
        );
        ensure!(
            host.detail.ends_with(&format!(":{}", bed.sshd.port())),
            "host detail is not its address: {host:?}"
        );
        let tunnel = parse_watch_line(&child.expect_line(PROMPT).await?)?;
        ensure!(
            tunnel.subject == format!("tunnel {first}") && tunnel.what == "open",
            "second line {tunnel:?}"
        );
        ensure!(
            tunnel.detail
                == format!(
                    "local 127.0.0.1:{first_port} -> 127.0.0.1:{} via default",
                    echo.port()
                ),
            "tunnel detail {tunnel:?}"
        );

        // A tunnel opened by another tunnelctl.
        let (id, port) = open_local(&bed, &echo).await?;
        let subject = format!("tunnel {id}");
        let (opened, skipped) =
            line_where(&mut child, "the new tunnel", |l| l.subject == subject).await?;
        ensure!(opened.what == "open", "{opened:?} after {skipped:?}");
        ensure!(
            opened
                .detail
                .starts_with(&format!("local 127.0.0.1:{port} -> ")),
            "{opened:?}"
        );

        // Its connection, opened and closed, with byte counts.
        let client_port = round_trip(port, b"hello").await?;
        let (conn, _) = line_where(&mut child, "the connection", |l| l.subject == subject).await?;
        ensure!(
            conn.what == "conn #1 opened" && conn.detail == format!("from 127.0.0.1:{client_port}"),
            "{conn:?}"
        );
        let (conn, _) = line_where(&mut child, "its end", |l| l.subject == subject).await?;
        ensure!(
            conn.what == "conn #1 closed" && conn.detail.starts_with("5 B to target, 5 B back, "),
            "{conn:?}"
        );

        // Its close, with its totals.
        ctl(&bed)?.run(["close", &id]).await?.success()?;
        let (closed, _) = line_where(&mut child, "the close", |l| l.subject == subject).await?;
        ensure!(
            closed.what == "closed" && closed.detail == "1 connection, 5 B to target, 5 B back",
            "{closed:?}"
        );

        // Watching everything goes on until told to stop.
        ensure!(
            child.try_wait()?.is_none(),
            "watch ended by itself; stderr {:?}",
            child.stderr_text()
        );
        stop_quietly(&mut child, Signal::SIGTERM).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn watching_one_tunnel_ends_when_it_is_closed() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (id, port) = open_local(&bed, &echo).await?;
        let (other, other_port) = open_local(&bed, &echo).await?;
        let mut child = ctl(&bed)?.spawn(["watch", &id]).await?;
        let subject = format!("tunnel {id}");
        line_where(&mut child, "the watched tunnel", |l| {
            l.subject == subject && l.what == "open"
        })
        .await?;

        // Traffic on the other tunnel, then its close, then this one's: a
        // filter that let the other through would show them first.
        round_trip(other_port, b"not watched").await?;
        ctl(&bed)?.run(["close", &other]).await?.success()?;
        round_trip(port, b"watched").await?;
        ctl(&bed)?.run(["close", &id]).await?.success()?;

        let rest = child.rest_of_stdout(PROMPT).await?;
        let status = child.wait(PROMPT).await?;
        let stderr = child.stderr_text();
        ensure!(status.code() == Some(0), "{status}; stderr {stderr:?}");
        ensure!(stderr.is_empty(), "stderr {stderr:?}");
        ensure!(
            rest.iter().all(|l| !l.contains(&other)),
            "watch {id} printed lines about {other}: {rest:#?}"
        );
        let parsed = rest
            .iter()
            .map(|l| parse_watch_line(l))
            .collect::<Result<Vec<_>>>()?;
        let last = parsed.last().context("nothing after the initial state")?;
        ensure!(
            last.subject == subject && last.what == "closed",
            "the last line is not the close: {rest:#?}"
        );
        ensure!(
            parsed
                .iter()
                .any(|l| l.subject == subject && l.what == "conn #1 closed"),
            "no connection line: {rest:#?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn watching_an_unknown_tunnel_is_an_error() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let out = ctl(&bed)?.run(["watch", "t-999"]).await?;
        out.expect_code(1)?;
        let line = out.error_line()?;
        ensure!(
            line.contains("t-999") && line.contains("NOT_FOUND"),
            "error line {line:?}"
        );
        ensure!(out.stdout.is_empty(), "{out}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_tunneld_ends_watch_with_one_error_line() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let mut child = ctl(&bed)?.spawn(["watch"]).await?;
        child.expect_line(PROMPT).await?;
        bed.daemon.signal(Signal::SIGKILL)?;
        super::expect_lost_tunneld(&mut child, &bed, PROMPT).await?;
        Ok(())
    })
    .await
}

/// Parses one NDJSON line of `watch -o json`: a compact `WatchResponse` with
/// its `time` and exactly one event; returns the event's key and body.
fn watch_event(line: &str) -> Result<(String, Value)> {
    ensure!(
        !line.starts_with(' ') && !line.contains("\": "),
        "not compact JSON: {line:?}"
    );
    let value: Value = serde_json::from_str(line)
        .with_context(|| format!("watch -o json line is not one JSON object: {line:?}"))?;
    check_camel_case(&value)?;
    let map = value
        .as_object()
        .with_context(|| format!("not an object: {line:?}"))?;
    let time = str_field(&value, "time")?;
    ensure!(is_rfc3339_utc(time), "time {time:?} in {line:?}");
    let events: Vec<_> = map.iter().filter(|(k, _)| *k != "time").collect();
    let [(key, body)] = events[..] else {
        bail!("expected one event besides time: {line:?}");
    };
    Ok((key.clone(), body.clone()))
}

/// Reads NDJSON events until one satisfies `matches`; returns it and the
/// events skipped on the way.
async fn event_where(
    child: &mut CtlChild,
    what: &str,
    mut matches: impl FnMut(&str, &Value) -> bool,
) -> Result<(Value, Vec<(String, Value)>)> {
    let mut skipped = Vec::new();
    loop {
        let line = child
            .expect_line(PROMPT)
            .await
            .with_context(|| format!("waiting for {what}; events so far: {skipped:#?}"))?;
        let (key, body) = watch_event(&line)?;
        if matches(&key, &body) {
            return Ok((body, skipped));
        }
        skipped.push((key, body));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_json_is_one_watch_response_per_line() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let mut child = ctl(&bed)?.spawn(["watch", "-o", "json"]).await?;

        // A fresh daemon: its host, no tunnels, then synced.
        let (key, host) = watch_event(&child.expect_line(PROMPT).await?)?;
        ensure!(key == "host", "first event {key:?}: {host}");
        ensure!(str_field(&host, "name")? == "default", "{host}");
        ensure!(
            str_field(&host, "state")?.starts_with("SSH_CONNECTION_STATE_"),
            "state is not an enum name: {host}"
        );
        let (key, synced) = watch_event(&child.expect_line(PROMPT).await?)?;
        ensure!(
            key == "synced" && synced == serde_json::json!({}),
            "second event {key:?}: {synced}"
        );

        // Opening a tunnel connects the host first (its messages come from
        // another task than the tunnel's, so not necessarily before it).
        let (id, port) = open_local(&bed, &echo).await?;
        let mut skipped = Vec::new();
        let (tunnel, before) = event_where(&mut child, "the tunnel", |k, _| k == "tunnel").await?;
        skipped.extend(before);
        ensure!(str_field(&tunnel, "id")? == id, "{tunnel}");
        ensure!(
            str_field(&tunnel, "state")? == "TUNNEL_STATE_OPEN",
            "{tunnel}"
        );
        ensure!(
            tunnel["local"]["port"].as_u64() == Some(u64::from(port)),
            "{tunnel}"
        );

        let client_port = round_trip(port, b"hello").await?;
        // Host messages may come between any of these: keep what is skipped.
        let (opened, before) = event_where(&mut child, "connectionOpened", |k, _| {
            k == "connectionOpened"
        })
        .await?;
        skipped.extend(before);
        ensure!(
            str_field(&opened, "tunnelId")? == id
                && opened["connectionId"] == "1"
                && str_field(&opened, "peer")? == format!("127.0.0.1:{client_port}"),
            "{opened}"
        );
        let (closed, before) = event_where(&mut child, "connectionClosed", |k, _| {
            k == "connectionClosed"
        })
        .await?;
        skipped.extend(before);
        ensure!(
            str_field(&closed, "tunnelId")? == id
                && closed["connectionId"] == "1"
                && closed["bytesToTarget"] == "5"
                && closed["bytesFromTarget"] == "5",
            "byte counts (uint64, strings): {closed}"
        );
        let duration = str_field(&closed, "duration")?;
        ensure!(
            duration
                .strip_suffix('s')
                .is_some_and(|n| n.parse::<f64>().is_ok()),
            "duration {duration:?} is not proto3 JSON like \"0.012s\""
        );

        ctl(&bed)?.run(["close", &id]).await?.success()?;
        let (gone, before) = event_where(&mut child, "the close", |k, _| k == "tunnel").await?;
        skipped.extend(before);
        ensure!(
            skipped
                .iter()
                .any(|(k, h)| k == "host" && h["state"] == "SSH_CONNECTION_STATE_CONNECTED"),
            "no host CONNECTED event: {skipped:#?}"
        );
        ensure!(
            str_field(&gone, "id")? == id && str_field(&gone, "state")? == "TUNNEL_STATE_CLOSED",
            "{gone}"
        );
        ensure!(
            gone["counters"]["totalConnections"] == "1",
            "counters in the last message: {gone}"
        );
        stop_quietly(&mut child, Signal::SIGINT).await
    })
    .await
}

#[test]
fn watch_line_parser_reads_the_documented_lines() {
    let l = parse_watch_line(
        "2026-11-24T10:00:02Z  tunnel t-3      conn #5 closed    12 B to target, 0 B back, 0.3s",
    )
    .unwrap();
    assert_eq!(l.time, "2026-11-24T10:00:02Z");
    assert_eq!(l.subject, "tunnel t-3");
    assert_eq!(l.what, "conn #5 closed");
    assert_eq!(l.detail, "12 B to target, 0 B back, 0.3s");
    let l = parse_watch_line("2026-11-24T10:00:02Z  host web1        failed").unwrap();
    assert_eq!((l.what.as_str(), l.detail.as_str()), ("failed", ""));
    assert!(parse_watch_line("t-3 open").is_err());
    assert!(parse_watch_line("2026-11-24T10:00:02.5Z  host a  idle  x").is_err());
}
