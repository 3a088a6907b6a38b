//! Named and persisted tunnels through `tunnelctl`: `--name` and `--persist`
//! on the open verbs, the name in the open line, in `list` (table and JSON)
//! and in place of the id for `close` and `watch`; a persisted tunnel that
//! comes back, same id, name and port, after tunneld is SIGKILLed and
//! started again on the same state dir; and the refusals, each with its
//! exit code and an error line naming the problem.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nix::sys::signal::Signal;
use serde_json::Value;
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Ctl, Sshd, Tunneld, sshd};

use super::{ctl, dead_addr, expect_usage_errors, num_field, str_field};
use crate::support::{Bed, IO_TIMEOUT, carries, e2e, list};

/// How long a watching tunnelctl may take to print a line or to exit.
const PROMPT: Duration = Duration::from_secs(10);

/// The `-L` spec of a local forward from 127.0.0.1:`port` to the echo peer.
fn spec(port: u16, echo: &TcpPeer) -> String {
    format!("{port}:127.0.0.1:{}", echo.port())
}

/// The line `open-local` prints for a named, persisted local forward from
/// 127.0.0.1:`port` to the echo peer.
fn persisted_line(id: &str, name: &str, port: u16, echo: &TcpPeer) -> String {
    format!(
        "{id} ({name})  local  127.0.0.1:{port} -> 127.0.0.1:{} via default, persisted",
        echo.port()
    )
}

/// `tunnelctl open-local --name NAME --persist -L PORT:127.0.0.1:ECHO` on a
/// port below the ephemeral range (so nothing else takes it while tunneld is
/// down); checks the line it prints and returns the id and the port.
async fn open_persisted(ctl: &Ctl, name: &str, echo: &TcpPeer) -> Result<(String, u16)> {
    let port = sshd::free_port()?;
    let out = ctl
        .run([
            "open-local",
            "--name",
            name,
            "--persist",
            "-L",
            &spec(port, echo),
        ])
        .await?;
    out.success()?;
    ensure!(out.stderr.is_empty(), "stderr: {out}");
    let lines = out.stdout_lines();
    ensure!(lines.len() == 1, "expected one line: {out}");
    let id = lines[0]
        .split_whitespace()
        .next()
        .context("empty line")?
        .to_string();
    ensure!(
        id.starts_with("t-"),
        "line does not start with an id: {out}"
    );
    let want = persisted_line(&id, name, port, echo);
    ensure!(lines[0] == want, "open line {:?}, want {want:?}", lines[0]);
    Ok((id, port))
}

/// The cell under `column` of the table whose header is `header`: from where
/// the column's title starts to the next run of two spaces.
fn cell(header: &str, row: &str, column: &str) -> Result<String> {
    let at = header
        .find(column)
        .with_context(|| format!("no {column} column in {header:?}"))?;
    let rest = row
        .get(at..)
        .with_context(|| format!("row {row:?} ends before the {column} column"))?;
    Ok(rest.split("  ").next().unwrap_or("").trim().to_string())
}

/// `tunnelctl list -o json`'s tunnels.
async fn json_tunnels(ctl: &Ctl) -> Result<Vec<Value>> {
    let out = ctl.run(["list", "-o", "json"]).await?;
    out.success()?;
    let doc = out.json()?;
    Ok(doc
        .get("tunnels")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// Polls `tunnelctl list -o json` until the tunnel `id` is listed OPEN;
/// returns its JSON.
async fn listed_open(ctl: &Ctl, id: &str) -> Result<Value> {
    poll_until(
        &format!("{id} to be listed open"),
        IO_TIMEOUT,
        || async move {
            let tunnels = json_tunnels(ctl).await?;
            let t = tunnels.iter().find(|t| t["id"] == id);
            match t {
                Some(t) if t["state"] == "TUNNEL_STATE_OPEN" => Ok(Some(t.clone())),
                _ => anyhow::bail!("listed: {tunnels:?}"),
            }
        },
    )
    .await
}

/// Polls until 127.0.0.1:`port` can be bound again.
async fn wait_port_free(port: u16) -> Result<()> {
    poll_until(
        &format!("port {port} to be free"),
        Duration::from_secs(5),
        || async move { Ok(port_is_free(port).then_some(())) },
    )
    .await
}

async fn start(sshd: &Sshd, state: &Path) -> Result<Tunneld> {
    Tunneld::builder(sshd).state_dir(state).start().await
}

#[tokio::test(flavor = "multi_thread")]
async fn named_persisted_tunnel_prints_lists_and_carries_bytes() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let ctl = ctl(&bed)?;
        let (id, port) = open_persisted(&ctl, "db", &echo).await?;
        // An unnamed, unpersisted one beside it: its NAME is `-`, its STATE
        // plain `open`.
        let out = ctl.run(["open-local", "-L", &spec(0, &echo)]).await?;
        out.success()?;
        let plain_line = out.stdout_text();
        let plain = plain_line.split_whitespace().next().context("no id")?;
        ensure!(
            !plain_line.contains('(') && !plain_line.contains("persisted"),
            "an unnamed API tunnel's line: {plain_line:?}"
        );

        let out = ctl.run(["list"]).await?;
        out.success()?;
        let lines = out.stdout_lines();
        let header = lines.first().context("no output")?;
        let titles: Vec<&str> = header.split_whitespace().collect();
        ensure!(
            titles
                == [
                    "ID", "NAME", "KIND", "LOCAL", "REMOTE", "HOST", "STATE", "CONNS", "BYTES",
                    "AGE"
                ],
            "header {titles:?}: {out}"
        );
        let row = |want: &str| {
            lines
                .iter()
                .find(|l| l.split_whitespace().next() == Some(want))
                .with_context(|| format!("no row for {want}: {out}"))
        };
        let db = row(&id)?;
        for (column, want) in [
            ("NAME", "db".to_string()),
            ("KIND", "local".to_string()),
            ("LOCAL", format!("127.0.0.1:{port}")),
            ("REMOTE", format!("127.0.0.1:{}", echo.port())),
            ("STATE", "open (persisted)".to_string()),
        ] {
            let got = cell(header, db, column)?;
            ensure!(
                got == want,
                "{column} of {id} is {got:?}, want {want:?}: {out}"
            );
        }
        let other = row(plain)?;
        ensure!(cell(header, other, "NAME")? == "-", "{out}");
        ensure!(cell(header, other, "STATE")? == "open", "{out}");

        let tunnels = json_tunnels(&ctl).await?;
        let tj = tunnels
            .iter()
            .find(|t| t["id"] == id.as_str())
            .with_context(|| format!("{id} not in {tunnels:?}"))?;
        ensure!(str_field(tj, "name")? == "db", "name in {tj}");
        ensure!(
            str_field(tj, "source")? == "TUNNEL_SOURCE_PERSISTED",
            "source in {tj}"
        );
        ensure!(
            num_field(&tj["local"], "port")? == u64::from(port),
            "local.port in {tj}"
        );
        let pj = tunnels
            .iter()
            .find(|t| t["id"] == plain)
            .with_context(|| format!("{plain} not in {tunnels:?}"))?;
        ensure!(
            pj.get("name").is_none(),
            "an unnamed tunnel has a name: {pj}"
        );
        ensure!(
            str_field(pj, "source")? == "TUNNEL_SOURCE_API",
            "source in {pj}"
        );

        carries(port, "the tunnel named db").await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn persisted_tunnel_survives_sigkill_then_closes_by_name_for_good() -> Result<()> {
    e2e(async {
        let state = tempfile::tempdir()?;
        let sshd = Sshd::start()?;
        let daemon = start(&sshd, state.path()).await?;
        let mut bed = Bed::adopt(daemon, sshd);
        let echo = TcpPeer::echo().await?;
        let (id, port) = open_persisted(&ctl(&bed)?, "db", &echo).await?;
        carries(port, "db before the kill").await?;

        bed.daemon.kill().await?;
        bed.daemon = start(&bed.sshd, state.path()).await?;
        bed.client = bed.daemon.client();
        let ctl = ctl(&bed)?;
        let back = listed_open(&ctl, &id).await?;
        let out = ctl.run(["list", "-q"]).await?;
        out.success()?;
        ensure!(
            out.stdout_lines() == [id.clone()],
            "after SIGKILL and a restart, list -q: {out}"
        );
        ensure!(str_field(&back, "name")? == "db", "{back}");
        ensure!(
            str_field(&back, "source")? == "TUNNEL_SOURCE_PERSISTED",
            "{back}"
        );
        ensure!(
            num_field(&back["local"], "port")? == u64::from(port),
            "came back on another port: {back}"
        );
        let out = ctl.run(["list"]).await?;
        out.success()?;
        ensure!(
            out.stdout_text().contains("open (persisted)"),
            "restored tunnel's STATE: {out}"
        );
        carries(port, "db after SIGKILL and a restart").await?;

        let out = ctl.run(["close", "db"]).await?;
        out.success()?;
        ensure!(
            out.stdout_lines() == [id.clone()],
            "close db printed: {out}"
        );
        wait_port_free(port).await?;
        let out = ctl.run(["list", "-q"]).await?;
        out.success()?;
        ensure!(out.stdout.is_empty(), "still listed after close db: {out}");

        // Closed is forgotten: the next start does not bring it back.
        bed.daemon.terminate().await?;
        bed.daemon = start(&bed.sshd, state.path()).await?;
        bed.client = bed.daemon.client();
        let ctl = super::ctl(&bed)?;
        let out = ctl.run(["list", "-q"]).await?;
        out.success()?;
        ensure!(
            out.stdout.is_empty(),
            "a closed persisted tunnel came back: {out}"
        );
        let api = list(&bed.client).await?.tunnels;
        ensure!(api.is_empty(), "tunnels after the last restart: {api:?}");
        ensure!(
            port_is_free(port),
            "db's port {port} held after the last restart"
        );
        // The name is free again.
        let (again, _) = open_persisted(&ctl, "db", &echo).await?;
        ensure!(again != id, "a new tunnel reused the id {id}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_names_and_persist_with_attach_are_usage_errors_that_call_nothing() -> Result<()> {
    e2e(async {
        // tunnelctl is pointed at a listener that never answers: had it
        // connected, the connection would be waiting in the backlog.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let ctl = Ctl::new(addr)?;
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["open-local", "--name", "DB", "-L", "0:127.0.0.1:1"],
                &["--name", "DB"],
            ),
            (
                &["open-local", "--name", "t-3", "-L", "0:127.0.0.1:1"],
                &["--name", "t-3"],
            ),
            (
                &["open-local", "--name=-db", "-L", "0:127.0.0.1:1"],
                &["-db"],
            ),
            (
                &["open-local", "--name", "a_b", "-L", "0:127.0.0.1:1"],
                &["--name", "a_b"],
            ),
            (
                &["open-remote", "--name", "Web", "-R", "0:127.0.0.1:1"],
                &["--name", "Web"],
            ),
            (
                &["open-dynamic", "--name", "t-9", "-D", "0"],
                &["--name", "t-9"],
            ),
            (
                &["open-local", "--persist", "--attach", "-L", "0:127.0.0.1:1"],
                &["--persist", "--attach"],
            ),
            (
                &[
                    "open-remote",
                    "--attach",
                    "--persist",
                    "-R",
                    "0:127.0.0.1:1",
                ],
                &["--persist", "--attach"],
            ),
            (
                &["open-dynamic", "--persist", "--attach", "-D", "0"],
                &["--persist", "--attach"],
            ),
        ];
        expect_usage_errors(&ctl, cases).await?;
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, from)) => anyhow::bail!("a refused command connected to tunneld (from {from})"),
            Err(e) => return Err(e.into()),
        }
        // The names tunnelctl refuses say why: the id look-alike and the
        // capital letter.
        let out = ctl
            .run(["open-local", "--name", "t-3", "-L", "0:127.0.0.1:1"])
            .await?;
        let line = out.error_line()?;
        ensure!(line.contains("looks like a tunnel id"), "{line:?}");
        let out = ctl
            .run(["open-local", "--name", "DB", "-L", "0:127.0.0.1:1"])
            .await?;
        let line = out.error_line()?;
        ensure!(line.contains("a-z, 0-9 and -"), "{line:?}");
        // The control: the same command with a good name gets past parsing
        // and fails only at the call (1, not 2).
        let out = Ctl::new(dead_addr()?)?
            .run(["open-local", "--name", "db", "-L", "0:127.0.0.1:1"])
            .await?;
        out.expect_code(1)?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn tunneld_refuses_a_taken_name_and_closing_an_unknown_name() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let ctl = ctl(&bed)?;
        let (id, port) = open_persisted(&ctl, "db", &echo).await?;

        // A second db, persisted or not, on another free port.
        for persist in [false, true] {
            let second = sshd::free_port()?;
            let spec = spec(second, &echo);
            let mut args = vec!["open-local", "--name", "db", "-L", &spec];
            if persist {
                args.push("--persist");
            }
            let out = ctl.run(&args).await?;
            out.expect_code(1)?;
            let line = out.error_line()?;
            ensure!(
                line.contains("ALREADY_EXISTS")
                    && line.contains("\"db\"")
                    && line.contains("already open")
                    && line.contains(&id),
                "error line {line:?} does not say db is taken (by {id}, ALREADY_EXISTS)"
            );
            ensure!(out.stdout.is_empty(), "{out}");
            ensure!(
                port_is_free(second),
                "the refused tunnel's port {second} is held"
            );
        }
        // The same name on another verb is taken too.
        let out = ctl.run(["open-dynamic", "--name", "db", "-D", "0"]).await?;
        out.expect_code(1)?;
        ensure!(out.error_line()?.contains("ALREADY_EXISTS"), "{out}");
        let tunnels = list(&bed.client).await?.tunnels;
        ensure!(
            tunnels.len() == 1 && tunnels[0].id == id,
            "refused opens left tunnels: {tunnels:?}"
        );

        // close by an unknown name fails naming it; a known one given with it
        // still closes.
        let out = ctl.run(["close", "nosuch"]).await?;
        out.expect_code(1)?;
        let line = out.error_line()?;
        ensure!(
            line.contains("nosuch") && line.contains("NOT_FOUND"),
            "error line {line:?}"
        );
        ensure!(out.stdout.is_empty(), "{out}");
        let out = ctl.run(["close", "nosuch", "db"]).await?;
        out.expect_code(1)?;
        ensure!(out.error_line()?.contains("nosuch"), "{out}");
        ensure!(out.stdout_lines() == [id.clone()], "closed: {out}");
        wait_port_free(port).await?;
        // Gone: closing it again by name is NOT_FOUND too.
        let out = ctl.run(["close", "db"]).await?;
        out.expect_code(1)?;
        let line = out.error_line()?;
        ensure!(
            line.contains("db") && line.contains("NOT_FOUND"),
            "error line {line:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_by_name_follows_that_tunnel_until_it_closes() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let ctl = ctl(&bed)?;
        let (id, port) = open_persisted(&ctl, "db", &echo).await?;
        let mut child = ctl.spawn(["watch", "db"]).await?;
        let subject = format!("tunnel {id} (db)");
        let want = format!(
            "local 127.0.0.1:{port} -> 127.0.0.1:{} via default",
            echo.port()
        );
        let mut seen = Vec::new();
        let opened = loop {
            let line = child
                .expect_line(PROMPT)
                .await
                .with_context(|| format!("lines so far: {seen:#?}"))?;
            if line.contains(&subject) {
                break line;
            }
            seen.push(line);
        };
        ensure!(
            opened.contains("  open  ") && opened.trim_end().ends_with(&want),
            "watch db's tunnel line {opened:?}, want `{subject}  open  {want}`"
        );
        ensure!(
            seen.iter().all(|l| l.contains("  host default  ")),
            "lines before the tunnel are not its host: {seen:#?}"
        );

        // Another tunnel is not db's business.
        let out = ctl
            .run(["open-local", "--name", "other", "-L", &spec(0, &echo)])
            .await?;
        out.success()?;
        let other = out.stdout_text();
        let other = other.split_whitespace().next().context("no id")?;

        carries(port, "db while watched").await?;
        ctl.run(["close", other]).await?.success()?;
        ctl.run(["close", "db"]).await?.success()?;
        let status = child.wait(PROMPT).await?;
        ensure!(
            status.code() == Some(0),
            "watch db after db closed: {status}; stderr {:?}",
            child.stderr_text()
        );
        let rest = child.rest_of_stdout(PROMPT).await?;
        ensure!(
            rest.iter()
                .all(|l| !l.contains(&format!("tunnel {other} "))),
            "watch db showed the other tunnel: {rest:#?}"
        );
        let last = rest.last().context("nothing after the tunnel line")?;
        ensure!(
            last.contains(&subject) && last.contains("  closed  "),
            "the last line is not db's close: {rest:#?}"
        );
        ensure!(
            rest.iter()
                .any(|l| l.contains(&format!("tunnel {id} ")) && l.contains("conn #1 closed")),
            "no connection line for db: {rest:#?}"
        );

        // -o json: the tunnel event carries the name and the source.
        let out = ctl
            .run(["open-local", "--name", "db", "-L", &spec(0, &echo)])
            .await?;
        out.success()?;
        let line = out.stdout_text();
        let id = line.split_whitespace().next().context("no id")?;
        ensure!(line.starts_with(&format!("{id} (db)  local  ")), "{line:?}");
        let mut child = ctl.spawn(["watch", "-o", "json", "db"]).await?;
        let tunnel = loop {
            let line = child.expect_line(PROMPT).await?;
            let value: Value =
                serde_json::from_str(&line).with_context(|| format!("not JSON: {line:?}"))?;
            if let Some(t) = value.get("tunnel") {
                break t.clone();
            }
        };
        ensure!(str_field(&tunnel, "id")? == id, "{tunnel}");
        ensure!(str_field(&tunnel, "name")? == "db", "{tunnel}");
        ensure!(
            str_field(&tunnel, "source")? == "TUNNEL_SOURCE_API",
            "{tunnel}"
        );
        child.signal(Signal::SIGTERM)?;
        let status = child.wait(PROMPT).await?;
        ensure!(
            status.code() == Some(0),
            "{status}; stderr {:?}",
            child.stderr_text()
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_and_dynamic_forwards_take_names_and_persist() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let ctl = ctl(&bed)?;
        let rport = sshd::free_port()?;
        let rspec = format!("{rport}:127.0.0.1:{}", echo.port());
        let out = ctl
            .run(["open-remote", "--name", "web", "--persist", "-R", &rspec])
            .await?;
        out.success()?;
        let line = out.stdout_text();
        let id = line.split_whitespace().next().context("no id")?;
        let want = format!(
            "{id} (web)  remote  localhost:{rport} -> 127.0.0.1:{} via default, persisted",
            echo.port()
        );
        ensure!(
            line.trim_end() == want,
            "open-remote printed {line:?}, want {want:?}"
        );
        carries(rport, "the remote forward named web").await?;

        let out = ctl
            .run(["open-dynamic", "--name", "socks", "-D", "0"])
            .await?;
        out.success()?;
        let line = out.stdout_text();
        ensure!(
            line.contains(" (socks)  dynamic  127.0.0.1:")
                && line.trim_end().ends_with(" -> SOCKS via default"),
            "open-dynamic printed {line:?}"
        );
        let tunnels = json_tunnels(&ctl).await?;
        let names: Vec<(&str, &str)> = tunnels
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap_or(""),
                    t["source"].as_str().unwrap_or(""),
                )
            })
            .collect();
        ensure!(
            names
                == [
                    ("web", "TUNNEL_SOURCE_PERSISTED"),
                    ("socks", "TUNNEL_SOURCE_API")
                ],
            "names and sources listed: {names:?}"
        );
        let out = ctl.run(["close", "web", "socks"]).await?;
        out.success()?;
        ensure!(out.stdout_lines().len() == 2, "{out}");
        let out = ctl.run(["list", "-q"]).await?;
        ensure!(out.stdout.is_empty(), "left after closing by name: {out}");
        Ok(())
    })
    .await
}
