//! `tunnelctl list` (alias `ls`) and `tunnelctl close`: the tunnels table
//! with its columns, `-q` ids, `-o json` as the API's `ListResponse`, the
//! empty case on stderr; closing several ids, `--all`, and an unknown id
//! that fails without stopping the others.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::wait::poll_until;

use super::{check_camel_case, check_local_tunnel_json, ctl, str_field};
use crate::support::{Bed, e2e, exchange, find_tunnel, list, local_port, open_local};

/// The header of the tunnels table, word by word.
const HEADER: [&str; 9] = [
    "ID", "KIND", "LOCAL", "REMOTE", "HOST", "STATE", "CONNS", "BYTES", "AGE",
];

/// Sends `data` through the tunnel and waits until its counters show it,
/// so what tunnelctl prints afterwards is settled.
async fn traffic(bed: &Bed, id: &str, port: u16, data: &[u8]) -> Result<()> {
    let got = exchange(port, data, Duration::from_secs(10)).await?;
    ensure!(got == data, "echo returned {got:?}");
    poll_until("the counters to settle", Duration::from_secs(5), || async {
        let t = find_tunnel(&bed.client, id)
            .await?
            .context("tunnel vanished")?;
        let c = t.counters.unwrap_or_default();
        Ok((c.active_connections == 0 && c.bytes_from_target == data.len() as u64).then_some(()))
    })
    .await
}

/// Polls until 127.0.0.1:`port` can be bound again.
async fn wait_port_free(port: u16) -> Result<()> {
    poll_until(
        "a closed tunnel's port to be free",
        Duration::from_secs(5),
        || async { Ok(port_is_free(port).then_some(())) },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn list_table_shows_every_column_of_each_tunnel() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let first = open_local(&bed.client, "", echo.port()).await?;
        let second = open_local(&bed.client, "", echo.port()).await?;
        traffic(&bed, &first.id, local_port(&first)?, b"hello").await?;

        for verb in ["list", "ls"] {
            let out = ctl(&bed)?.run([verb]).await?;
            out.success()?;
            let lines = out.stdout_lines();
            let header: Vec<&str> = lines
                .first()
                .context("no output")?
                .split_whitespace()
                .collect();
            ensure!(header == HEADER, "{verb}: header {header:?}: {out}");
            for (t, conns, bytes) in [
                (&first, "0/1", ["5", "B", "/", "5", "B"]),
                (&second, "0/0", ["0", "B", "/", "0", "B"]),
            ] {
                let row = lines
                    .iter()
                    .find(|l| l.split_whitespace().next() == Some(t.id.as_str()))
                    .with_context(|| format!("{verb}: no row for {}: {out}", t.id))?;
                let words: Vec<&str> = row.split_whitespace().collect();
                let local = format!("127.0.0.1:{}", local_port(t)?);
                let remote = format!("127.0.0.1:{}", echo.port());
                let mut want = vec![
                    t.id.as_str(),
                    "local",
                    &local,
                    &remote,
                    "default",
                    "open",
                    conns,
                ];
                want.extend(bytes);
                ensure!(
                    words.len() == want.len() + 1,
                    "{verb}: row {row:?}, want {want:?} AGE"
                );
                ensure!(
                    words[..want.len()] == want[..],
                    "{verb}: row {row:?}, want {want:?} AGE"
                );
                let age = words[want.len()];
                ensure!(
                    age.strip_suffix('s')
                        .is_some_and(|n| n.parse::<u32>().is_ok()),
                    "{verb}: AGE {age:?} of a tunnel seconds old"
                );
            }
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn list_table_holds_tunnels_only() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        open_local(&bed.client, "", echo.port()).await?;
        open_local(&bed.client, "", echo.port()).await?;
        let out = ctl(&bed)?.run(["list"]).await?;
        out.success()?;
        // Hosts have their own verb: one header line and one row per tunnel.
        let lines: Vec<String> = out
            .stdout_lines()
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .collect();
        ensure!(lines.len() == 3, "expected a header and 2 rows: {out}");
        ensure!(out.stderr.is_empty(), "stderr: {out}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn list_quiet_prints_ids_oldest_first() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let a = open_local(&bed.client, "", echo.port()).await?;
        let b = open_local(&bed.client, "", echo.port()).await?;
        let out = ctl(&bed)?.run(["ls", "-q"]).await?;
        out.success()?;
        ensure!(
            out.stdout_lines() == [a.id.clone(), b.id.clone()],
            "ls -q: {out}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn list_json_is_the_list_response() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let t = open_local(&bed.client, "", echo.port()).await?;
        traffic(&bed, &t.id, local_port(&t)?, b"hello").await?;
        let out = ctl(&bed)?.run(["list", "-o", "json"]).await?;
        out.success()?;
        let doc = out.json()?;
        check_camel_case(&doc)?;
        let tunnels = doc["tunnels"].as_array().context("no tunnels array")?;
        ensure!(tunnels.len() == 1, "tunnels: {doc}");
        let tj = &tunnels[0];
        check_local_tunnel_json(tj, local_port(&t)?, echo.port())?;
        ensure!(str_field(tj, "id")? == t.id, "id in {tj}");
        // 64-bit counters are strings in proto3 JSON.
        let c = &tj["counters"];
        for (key, want) in [
            ("totalConnections", "1"),
            ("bytesToTarget", "5"),
            ("bytesFromTarget", "5"),
        ] {
            ensure!(
                c[key] == Value::String(want.into()),
                "counters.{key} is not {want:?}: {c}"
            );
        }
        ensure!(
            c.get("activeConnections").is_none(),
            "zero activeConnections must be omitted: {c}"
        );
        let hosts = doc["hosts"].as_array().context("no hosts array")?;
        let default = hosts
            .iter()
            .find(|h| h["name"] == "default")
            .with_context(|| format!("no default host in {doc}"))?;
        ensure!(
            str_field(default, "state")? == "SSH_CONNECTION_STATE_CONNECTED",
            "default host: {default}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_list_says_so_on_stderr_only() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        let out = ctl.run(["list"]).await?;
        out.success()?;
        ensure!(out.stdout.is_empty(), "stdout not empty: {out}");
        ensure!(
            out.stderr_text() == "No tunnels are open.\n",
            "stderr: {out}"
        );

        let out = ctl.run(["ls", "-q"]).await?;
        out.success()?;
        ensure!(out.stdout.is_empty(), "ls -q with no tunnels: {out}");

        let out = ctl.run(["ls", "-o", "json"]).await?;
        out.success()?;
        let doc = out.json()?;
        ensure!(
            doc.get("tunnels")
                .is_none_or(|t| t.as_array().is_some_and(Vec::is_empty)),
            "tunnels in {doc}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn close_several_ids_closes_those_only() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let a = open_local(&bed.client, "", echo.port()).await?;
        let b = open_local(&bed.client, "", echo.port()).await?;
        let keep = open_local(&bed.client, "", echo.port()).await?;
        let out = ctl(&bed)?.run(["close", &a.id, &b.id]).await?;
        out.success()?;
        ensure!(
            out.stdout_lines() == [a.id.clone(), b.id.clone()],
            "close printed: {out}"
        );
        wait_port_free(local_port(&a)?).await?;
        wait_port_free(local_port(&b)?).await?;
        let left: Vec<String> = list(&bed.client)
            .await?
            .tunnels
            .into_iter()
            .map(|t| t.id)
            .collect();
        ensure!(left == [keep.id.clone()], "still open: {left:?}");
        ensure!(
            !port_is_free(local_port(&keep)?),
            "the untouched tunnel's port was freed"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn close_json_prints_the_closed_tunnels() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let a = open_local(&bed.client, "", echo.port()).await?;
        let b = open_local(&bed.client, "", echo.port()).await?;
        let out = ctl(&bed)?
            .run(["close", "-o", "json", &a.id, &b.id])
            .await?;
        out.success()?;
        let doc = out.json()?;
        let closed = doc
            .as_array()
            .with_context(|| format!("not an array: {doc}"))?;
        let ids: Vec<&str> = closed
            .iter()
            .map(|t| str_field(t, "id"))
            .collect::<Result<_>>()?;
        ensure!(ids == [a.id.as_str(), b.id.as_str()], "closed ids {ids:?}");
        for t in closed {
            check_camel_case(t)?;
            ensure!(
                str_field(t, "state")? == "TUNNEL_STATE_CLOSED",
                "state in {t}"
            );
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn close_all_closes_everything() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let a = open_local(&bed.client, "", echo.port()).await?;
        let b = open_local(&bed.client, "", echo.port()).await?;
        let ctl = ctl(&bed)?;
        let out = ctl.run(["close", "--all"]).await?;
        out.success()?;
        let mut printed = out.stdout_lines();
        printed.sort();
        let mut want = vec![a.id.clone(), b.id.clone()];
        want.sort();
        ensure!(printed == want, "close --all printed: {out}");
        wait_port_free(local_port(&a)?).await?;
        wait_port_free(local_port(&b)?).await?;
        let left = list(&bed.client).await?.tunnels;
        ensure!(left.is_empty(), "still open after --all: {left:?}");

        // Nothing open: still a success, nothing printed.
        let out = ctl.run(["close", "--all"]).await?;
        out.success()?;
        ensure!(
            out.stdout.is_empty(),
            "close --all with nothing open: {out}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_id_fails_naming_it_and_the_others_still_close() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let a = open_local(&bed.client, "", echo.port()).await?;
        let b = open_local(&bed.client, "", echo.port()).await?;
        let out = ctl(&bed)?.run(["close", &a.id, "t-no-such", &b.id]).await?;
        out.expect_code(1)?;
        let line = out.error_line()?;
        ensure!(
            line.contains("t-no-such"),
            "error line {line:?} does not name the id"
        );
        ensure!(
            out.stdout_lines() == [a.id.clone(), b.id.clone()],
            "closed ids printed: {out}"
        );
        let left = list(&bed.client).await?.tunnels;
        ensure!(
            left.is_empty(),
            "ids after the unknown one were not closed: {left:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn close_needs_ids_or_all_but_not_both() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let echo = TcpPeer::echo().await?;
        let a = open_local(&bed.client, "", echo.port()).await?;
        let ctl = ctl(&bed)?;
        for args in [vec!["close"], vec!["close", "--all", a.id.as_str()]] {
            let out = ctl.run(&args).await?;
            out.expect_code(2)?;
            out.error_line()?;
            ensure!(out.stdout.is_empty(), "{args:?}: {out}");
        }
        if find_tunnel(&bed.client, &a.id).await?.is_none() {
            bail!("a usage error closed {}", a.id);
        }
        Ok(())
    })
    .await
}
