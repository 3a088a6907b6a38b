//! `open-local --attach` / `open-remote --attach`: the tunnel lives as long
//! as tunnelctl does, like `ssh -N -L`. It prints the tunnel, then a line per
//! connection event; Ctrl-C (SIGINT, also SIGTERM and SIGHUP) closes the
//! tunnel before tunnelctl exits 0; SIGKILL leaves tunneld to close it; a
//! close from elsewhere or a daemon shutdown ends tunnelctl with a message.
//! A lost SSH connection does not end it: tunneld reconnects and restores
//! the tunnel, and tunnelctl says so on stderr and keeps going.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunnel_proto::v1::Tunnel;
use tunneld_tests::peers::{HttpPeer, TcpPeer, http_get, port_is_free};
use tunneld_tests::wait::poll_until;
use tunneld_tests::{CtlChild, Sshd};

use super::open::wait_refused;
use super::{TunnelLine, check_local_tunnel_json, ctl, parse_tunnel_line, str_field};
use crate::support::{Bed, connect, e2e, find_tunnel, list};

/// How long an attached tunnelctl may take to print a line or to exit once
/// told to (its own bound on the closing call is about 3 s).
const PROMPT: Duration = Duration::from_secs(10);

/// Starts `tunnelctl ARGS` (an open verb with `--attach`) and reads the
/// tunnel line it prints first.
async fn start_attached(bed: &Bed, args: &[&str]) -> Result<(CtlChild, TunnelLine)> {
    let mut child = ctl(bed)?.spawn(args).await?;
    let line = child.expect_line(PROMPT).await?;
    let tunnel = parse_tunnel_line(&line)?;
    Ok((child, tunnel))
}

/// A local forward to `echo`, attached.
async fn attach_local(bed: &Bed, echo: &TcpPeer) -> Result<(CtlChild, TunnelLine)> {
    let spec = format!("0:127.0.0.1:{}", echo.port());
    start_attached(bed, &["open-local", "--attach", "-L", &spec]).await
}

/// The tunnel in List; an error when it is not there.
async fn listed(bed: &Bed, id: &str) -> Result<Tunnel> {
    find_tunnel(&bed.client, id)
        .await?
        .with_context(|| format!("{id} is not in List"))
}

/// One echo round trip through 127.0.0.1:`port` on a fresh connection,
/// closed afterwards; returns the client side's port (the peer tunneld sees).
async fn round_trip(port: u16, data: &[u8]) -> Result<u16> {
    let mut stream = connect(port).await?;
    let client_port = stream.local_addr()?.port();
    stream.write_all(data).await?;
    stream.shutdown().await?;
    let mut got = Vec::new();
    tokio::time::timeout(PROMPT, stream.read_to_end(&mut got))
        .await
        .context("echo through the attached tunnel hung")??;
    ensure!(got == data, "echo returned {got:?}");
    Ok(client_port)
}

/// Ctrl-C: tunnelctl exits 0.
async fn ctrl_c_exits_0(child: &mut CtlChild) -> Result<()> {
    child.signal(Signal::SIGINT)?;
    let status = child.wait(PROMPT).await?;
    ensure!(
        status.code() == Some(0),
        "{status}; stderr {:?}",
        child.stderr_text()
    );
    Ok(())
}

/// Ctrl-C: tunnelctl exits 0 and the tunnel `id` is gone from List.
async fn ctrl_c_closes(bed: &Bed, child: &mut CtlChild, id: &str) -> Result<()> {
    ctrl_c_exits_0(child).await?;
    ensure!(
        find_tunnel(&bed.client, id).await?.is_none(),
        "{id} left open after tunnelctl exited"
    );
    Ok(())
}

/// Sends SIGINT/SIGTERM/SIGHUP and checks the contract: exit 0, the tunnel
/// gone from List and its port free as soon as tunnelctl has exited.
async fn interrupt_and_check_closed(
    bed: &Bed,
    child: &mut CtlChild,
    t: &TunnelLine,
    signal: Signal,
) -> Result<()> {
    child.signal(signal)?;
    let status = child.wait(PROMPT).await?;
    ensure!(
        status.code() == Some(0),
        "after {signal}: {status}; stderr {:?}",
        child.stderr_text()
    );
    ensure!(
        find_tunnel(&bed.client, &t.id).await?.is_none(),
        "{} still in List after tunnelctl exited on {signal}",
        t.id
    );
    ensure!(
        port_is_free(t.listen_port),
        "port {} still taken after tunnelctl exited on {signal}",
        t.listen_port
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_prints_connections_and_ctrl_c_closes_the_tunnel() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (mut child, t) = attach_local(&bed, &echo).await?;
        ensure!(t.kind == "local" && t.listen_host == "127.0.0.1", "{t:?}");
        ensure!(t.target == format!("127.0.0.1:{}", echo.port()), "{t:?}");
        let tunnel = listed(&bed, &t.id).await?;
        ensure!(
            tunnel.attached,
            "List does not mark {} as attached: {tunnel:?}",
            t.id
        );

        let out = ctl(&bed)?.run(["list"]).await?;
        out.success()?;
        let row = out
            .stdout_lines()
            .into_iter()
            .find(|l| l.starts_with(&format!("{} ", t.id)))
            .with_context(|| format!("no row for {}: {out}", t.id))?;
        ensure!(
            row.contains("open (attached)"),
            "STATE of an attached tunnel: {row:?}"
        );

        let client_port = round_trip(t.listen_port, b"hello").await?;
        let opened = child.expect_line(PROMPT).await?;
        ensure!(
            opened == format!("{}  + 127.0.0.1:{client_port} connection 1", t.id),
            "connection line {opened:?}"
        );
        let closed = child.expect_line(PROMPT).await?;
        let head = format!(
            "{}  - 127.0.0.1:{client_port} connection 1 closed after ",
            t.id
        );
        ensure!(
            closed.starts_with(&head) && closed.ends_with(": 5 B to target, 5 B back"),
            "closed line {closed:?}"
        );

        interrupt_and_check_closed(&bed, &mut child, &t, Signal::SIGINT).await?;
        let rest = child.rest_of_stdout(PROMPT).await?;
        ensure!(
            rest.is_empty(),
            "printed after the last connection: {rest:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_and_sighup_close_the_tunnel_too() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        for signal in [Signal::SIGTERM, Signal::SIGHUP] {
            let (mut child, t) = attach_local(&bed, &echo).await?;
            interrupt_and_check_closed(&bed, &mut child, &t, signal).await?;
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_leaves_tunneld_to_close_the_tunnel() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (mut child, t) = attach_local(&bed, &echo).await?;
        round_trip(t.listen_port, b"before the kill").await?;
        child.signal(Signal::SIGKILL)?;
        child.wait(PROMPT).await?;
        poll_until("tunneld to close the orphaned tunnel", PROMPT, || async {
            Ok(find_tunnel(&bed.client, &t.id)
                .await?
                .is_none()
                .then_some(()))
        })
        .await?;
        poll_until("its port to be free", Duration::from_secs(5), || async {
            Ok(port_is_free(t.listen_port).then_some(()))
        })
        .await
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn closing_from_elsewhere_ends_tunnelctl_with_a_message() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (mut child, t) = attach_local(&bed, &echo).await?;
        let out = ctl(&bed)?.run(["close", &t.id]).await?;
        out.success()?;
        let status = child.wait(PROMPT).await?;
        let stderr = child.stderr_text();
        ensure!(status.code() == Some(0), "{status}; stderr {stderr:?}");
        ensure!(
            stderr.contains(&format!("tunnelctl: tunnel {} was closed", t.id)),
            "stderr {stderr:?}"
        );
        ensure!(
            port_is_free(t.listen_port),
            "port {} still taken",
            t.listen_port
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_shutdown_ends_tunnelctl_as_closed() -> Result<()> {
    e2e(async {
        let mut bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (mut child, t) = attach_local(&bed, &echo).await?;
        let (daemon_status, _) = bed.daemon.terminate().await?;
        ensure!(
            daemon_status.success(),
            "tunneld exited with {daemon_status}"
        );
        let status = child.wait(PROMPT).await?;
        let stderr = child.stderr_text();
        ensure!(status.code() == Some(0), "{status}; stderr {stderr:?}");
        ensure!(
            stderr.contains(&format!("tunnel {} was closed", t.id)),
            "stderr {stderr:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_tunneld_is_one_error_line_and_exit_1() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let (mut child, _t) = attach_local(&bed, &echo).await?;
        bed.daemon.signal(Signal::SIGKILL)?;
        super::expect_lost_tunneld(&mut child, &bed, PROMPT).await?;
        Ok(())
    })
    .await
}

/// Parses one NDJSON line: a single compact object with exactly one event key.
fn event(line: &str) -> Result<(String, Value)> {
    let value: Value = serde_json::from_str(line)
        .with_context(|| format!("--attach -o json line is not one JSON object: {line:?}"))?;
    let map = value
        .as_object()
        .with_context(|| format!("not an object: {line:?}"))?;
    ensure!(map.len() == 1, "expected one event per line: {line:?}");
    let (key, body) = map.iter().next().context("empty object")?;
    Ok((key.clone(), body.clone()))
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_json_is_one_event_per_line() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let spec = format!("0:127.0.0.1:{}", echo.port());
        let mut child = ctl(&bed)?
            .spawn(["open-local", "--attach", "-o", "json", "-L", &spec])
            .await?;
        let (key, opened) = event(&child.expect_line(PROMPT).await?)?;
        ensure!(key == "opened", "first event {key:?}: {opened}");
        check_local_tunnel_json(&opened, 0, echo.port())?;
        ensure!(
            opened["attached"] == Value::Bool(true),
            "attached in {opened}"
        );
        let id = str_field(&opened, "id")?.to_owned();
        let port = opened["local"]["port"].as_u64().context("local.port")? as u16;
        listed(&bed, &id).await?;

        let client_port = round_trip(port, b"hello").await?;
        let peer = format!("127.0.0.1:{client_port}");
        let (key, body) = event(&child.expect_line(PROMPT).await?)?;
        ensure!(key == "connectionOpened", "second event {key:?}: {body}");
        ensure!(
            body["connectionId"] == "1",
            "connectionId (uint64, a string): {body}"
        );
        ensure!(str_field(&body, "peer")? == peer, "peer: {body}");
        let (key, body) = event(&child.expect_line(PROMPT).await?)?;
        ensure!(key == "connectionClosed", "third event {key:?}: {body}");
        ensure!(
            body["connectionId"] == "1" && str_field(&body, "peer")? == peer,
            "{body}"
        );
        ensure!(
            body["bytesToTarget"] == "5" && body["bytesFromTarget"] == "5",
            "byte counts (uint64, strings): {body}"
        );
        let duration = str_field(&body, "duration")?;
        ensure!(
            duration
                .strip_suffix('s')
                .is_some_and(|n| n.parse::<f64>().is_ok()),
            "duration {duration:?} is not proto3 JSON like \"0.012s\""
        );

        ctrl_c_closes(&bed, &mut child, &id).await?;
        for line in child.rest_of_stdout(PROMPT).await? {
            event(&line)?;
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_quiet_prints_the_id_once() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let spec = format!("0:127.0.0.1:{}", echo.port());
        let mut child = ctl(&bed)?
            .spawn(["open-local", "--attach", "-q", "-L", &spec])
            .await?;
        let id = child.expect_line(PROMPT).await?;
        let tunnel = listed(&bed, &id).await?;
        let port = crate::support::local_port(&tunnel)?;
        round_trip(port, b"quiet").await?;
        // Wait until tunneld has seen the connection end, so its events
        // would have been printed by now.
        poll_until("the connection to be counted", PROMPT, || async {
            let c = listed(&bed, &id).await?.counters.unwrap_or_default();
            Ok((c.total_connections == 1 && c.active_connections == 0).then_some(()))
        })
        .await?;
        ctrl_c_exits_0(&mut child).await?;
        let rest = child.rest_of_stdout(PROMPT).await?;
        ensure!(rest.is_empty(), "-q printed more than the id: {rest:?}");
        ensure!(
            list(&bed.client).await?.tunnels.is_empty(),
            "tunnel left open"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_remote_serves_until_interrupted() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let http = HttpPeer::start("attached remote").await?;
        let spec = format!("0:127.0.0.1:{}", http.port());
        let (mut child, t) =
            start_attached(&bed, &["open-remote", "--attach", "-R", &spec]).await?;
        ensure!(t.kind == "remote" && t.listen_port != 0, "{t:?}");
        let (status, body) = http_get(&format!("http://127.0.0.1:{}/", t.listen_port)).await?;
        ensure!(
            status == 200 && body == "attached remote",
            "{status} {body:?}"
        );

        let opened = child.expect_line(PROMPT).await?;
        ensure!(
            opened.starts_with(&format!("{}  + ", t.id)) && opened.ends_with(" connection 1"),
            "connection line {opened:?}"
        );
        let closed = child.expect_line(PROMPT).await?;
        ensure!(
            closed.starts_with(&format!("{}  - ", t.id))
                && closed.contains(" connection 1 closed after "),
            "closed line {closed:?}"
        );

        ctrl_c_closes(&bed, &mut child, &t.id).await?;
        wait_refused(t.listen_port).await
    })
    .await
}

/// A daemon on a fresh sshd that retries a lost SSH connection quickly.
async fn fast_reconnecting_bed() -> Result<Bed> {
    Bed::with(Sshd::start()?, |b| {
        b.arg("--reconnect-min")
            .arg("100ms")
            .arg("--reconnect-max")
            .arg("1s")
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_ssh_connection_is_a_note_and_the_attachment_goes_on() -> Result<()> {
    e2e(async {
        let bed = fast_reconnecting_bed().await?;
        let http = HttpPeer::start("back again").await?;
        let spec = format!("0:127.0.0.1:{}", http.port());
        let (mut child, t) =
            start_attached(&bed, &["open-remote", "--attach", "-R", &spec]).await?;
        let url = format!("http://127.0.0.1:{}/", t.listen_port);
        let (status, body) = http_get(&url).await?;
        ensure!(status == 200 && body == "back again", "{status} {body:?}");

        // The SSH server's side of the forward dies with its connection;
        // tunneld reconnects and asks for the same port again.
        if bed.sshd.kill_connections()? == 0 {
            bail!("no SSH connection to kill");
        }
        let reconnecting = format!(
            "tunnelctl: tunnel {} lost its SSH connection; tunneld is reconnecting",
            t.id
        );
        poll_until("a note that the tunnel is reconnecting", PROMPT, || async {
            Ok(child.stderr_text().contains(&reconnecting).then_some(()))
        })
        .await?;
        poll_until("the forward to serve again", PROMPT, || async {
            let (status, body) = http_get(&url).await?;
            Ok((status == 200 && body == "back again").then_some(()))
        })
        .await?;
        let again = format!("tunnelctl: tunnel {} is open again", t.id);
        poll_until("a note that the tunnel is open again", PROMPT, || async {
            Ok(child.stderr_text().contains(&again).then_some(()))
        })
        .await?;
        ensure!(
            child.try_wait()?.is_none(),
            "tunnelctl exited after the SSH connection was lost; stderr {:?}",
            child.stderr_text()
        );
        let tunnel = listed(&bed, &t.id).await?;
        ensure!(
            tunnel.restores >= 1,
            "List does not count the restore: {tunnel:?}"
        );

        // Still attached: Ctrl-C closes it as before.
        ctrl_c_closes(&bed, &mut child, &t.id).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_json_reports_reconnecting_as_state_changes() -> Result<()> {
    e2e(async {
        let bed = fast_reconnecting_bed().await?;
        let echo = TcpPeer::echo().await?;
        let spec = format!("0:127.0.0.1:{}", echo.port());
        let mut child = ctl(&bed)?
            .spawn(["open-local", "--attach", "-o", "json", "-L", &spec])
            .await?;
        let (key, opened) = event(&child.expect_line(PROMPT).await?)?;
        ensure!(key == "opened", "first event {key:?}: {opened}");
        let id = str_field(&opened, "id")?.to_owned();
        let port = opened["local"]["port"].as_u64().context("local.port")? as u16;
        if bed.sshd.kill_connections()? == 0 {
            bail!("no SSH connection to kill");
        }
        let mut states = Vec::new();
        while states.last().map(String::as_str) != Some("TUNNEL_STATE_OPEN") {
            let (key, body) = event(&child.expect_line(PROMPT).await?)?;
            ensure!(key == "stateChanged", "unexpected event {key:?}: {body}");
            ensure!(str_field(&body, "id")? == id, "{body}");
            states.push(str_field(&body, "state")?.to_owned());
        }
        ensure!(
            states.first().map(String::as_str) == Some("TUNNEL_STATE_RECONNECTING"),
            "states after the SSH connection was lost: {states:?}"
        );
        round_trip(port, b"after the reconnect").await?;
        ensure!(
            child.try_wait()?.is_none(),
            "tunnelctl exited; stderr {:?}",
            child.stderr_text()
        );
        ctrl_c_exits_0(&mut child).await?;
        Ok(())
    })
    .await
}
