//! `--max-connections` and `--idle-timeout` on the open verbs: they reach
//! tunneld (seen in `-o json` and `list`), a connection over the cap is
//! refused and counted, an idle connection is closed; bad values are usage
//! errors naming the flag, before any call.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tunneld_tests::Ctl;
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::wait::poll_until;

use super::{ctl, dead_addr, num_field, parse_tunnel_line, str_field};
use crate::support::{Bed, connect, e2e, expect_closed};

/// How long a refused or idle connection may take to be closed.
const PROMPT: Duration = Duration::from_secs(10);

/// Writes `data` on `stream` and reads the echo back.
async fn echo_on(stream: &mut tokio::net::TcpStream, data: &[u8]) -> Result<()> {
    stream.write_all(data).await?;
    let mut got = vec![0; data.len()];
    tokio::time::timeout(PROMPT, stream.read_exact(&mut got))
        .await
        .context("echo hung")??;
    ensure!(got == data, "echo returned {got:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn max_connections_refuses_the_next_one_and_counts_it() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let spec = format!("0:127.0.0.1:{}", echo.port());
        let out = ctl(&bed)?
            .run([
                "open-local",
                "-o",
                "json",
                "-L",
                &spec,
                "--max-connections",
                "1",
                "--idle-timeout",
                "1m",
            ])
            .await?;
        out.success()?;
        let tunnel = out.json()?;
        ensure!(
            num_field(&tunnel, "maxConnections")? == 1,
            "maxConnections (uint32, a number): {tunnel}"
        );
        ensure!(
            str_field(&tunnel, "idleTimeout")? == "60s",
            "idleTimeout (a proto3 JSON duration): {tunnel}"
        );
        let id = str_field(&tunnel, "id")?.to_owned();
        let port = tunnel["local"]["port"].as_u64().context("local.port")? as u16;

        let mut first = connect(port).await?;
        echo_on(&mut first, b"first").await?;
        // The second is accepted by the kernel, then reset by tunneld, so
        // soon that connecting may already report the reset.
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(mut second) => {
                let _ = second.write_all(b"second").await;
                let got = expect_closed(&mut second, PROMPT).await?;
                ensure!(got.is_empty(), "the refused connection got {got:?}");
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => return Err(e).context("connecting a second time"),
        }
        // The first is untouched.
        echo_on(&mut first, b"still here").await?;

        let counters = poll_until("the refusal to be counted", PROMPT, || async {
            let out = ctl(&bed)?.run(["list", "-o", "json"]).await?;
            out.success()?;
            let list = out.json()?;
            let t = list["tunnels"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["id"] == id.as_str()))
                .with_context(|| format!("{id} not in {list}"))?;
            let counters = t["counters"].clone();
            Ok((counters["refusedConnections"] == "1").then_some(counters))
        })
        .await?;
        ensure!(
            counters["totalConnections"] == "1" && counters.get("failedConnections").is_none(),
            "a refused connection is neither total nor failed: {counters}"
        );

        let out = ctl(&bed)?.run(["list"]).await?;
        out.success()?;
        let lines = out.stdout_lines();
        let header = lines.first().context("no header")?;
        let at = header
            .find("REFUSED")
            .with_context(|| format!("no REFUSED column once one was refused: {out}"))?;
        let row = lines
            .iter()
            .find(|l| l.starts_with(&format!("{id} ")))
            .with_context(|| format!("no row for {id}: {out}"))?;
        ensure!(
            row.get(at..).is_some_and(|r| r.starts_with("1 ")),
            "REFUSED of {id}: {out}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_timeout_closes_an_idle_connection_and_says_so() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let spec = format!("0:127.0.0.1:{}", echo.port());
        let mut child = ctl(&bed)?
            .spawn([
                "open-local",
                "--attach",
                "-L",
                &spec,
                "--idle-timeout",
                "300ms",
            ])
            .await?;
        let t = parse_tunnel_line(&child.expect_line(PROMPT).await?)?;
        let mut stream = connect(t.listen_port).await?;
        echo_on(&mut stream, b"then nothing").await?;
        expect_closed(&mut stream, PROMPT).await?;
        let opened = child.expect_line(PROMPT).await?;
        ensure!(opened.contains(" connection 1"), "{opened:?}");
        let closed = child.expect_line(PROMPT).await?;
        ensure!(
            closed.contains(" connection 1 closed after ")
                && closed.contains("12 B to target, 12 B back: error ")
                && closed.contains("idle"),
            "closed line does not say the connection was idle: {closed:?}"
        );
        let out = ctl(&bed)?.run(["list", "-o", "json"]).await?;
        out.success()?;
        let list = out.json()?;
        ensure!(
            list["tunnels"][0]["idleTimeout"] == "0.300s",
            "idleTimeout in List: {list}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_limits_are_usage_errors_naming_the_flag() -> Result<()> {
    e2e(async {
        // Refused before any call: nothing listens at the address.
        let ctl = Ctl::new(dead_addr()?)?;
        let mut failures = Vec::new();
        for verb in [
            &["open-local", "-L", "0:localhost:22"][..],
            &["open-remote", "--rport", "0", "--lport", "22"][..],
            &["open-local", "--attach", "-L", "0:localhost:22"][..],
        ] {
            for (flag, value) in [
                ("--max-connections", "0"),
                ("--max-connections", "-1"),
                ("--max-connections", "abc"),
                ("--idle-timeout", "0"),
                ("--idle-timeout", "-1"),
                ("--idle-timeout", "abc"),
            ] {
                let mut args = verb.to_vec();
                args.extend([flag, value]);
                let out = ctl.run(&args).await?;
                let checked = (|| {
                    out.expect_code(2)?;
                    let line = out.error_line()?;
                    ensure!(
                        line.contains(flag) && line.contains(&format!("'{value}'")),
                        "error line {line:?} names neither the flag nor the value"
                    );
                    ensure!(out.stdout.is_empty(), "stdout not empty");
                    Ok(())
                })();
                if let Err(e) = checked {
                    failures.push(format!("{args:?}: {e:#}\n{out}"));
                }
            }
        }
        ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
        Ok(())
    })
    .await
}
