//! `tunnelctl hosts` (the SSH hosts tunneld knows and their connection
//! state) and `tunnelctl status` (tunneld's version, pid, health and what it
//! holds), in table, JSON and quiet form.

use std::collections::HashMap;

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::{HostSpec, Sshd, exec};

use super::{check_camel_case, ctl, is_rfc3339_utc, num_field, str_field};
use crate::support::{Bed, e2e, open_local};

/// The version every workspace crate shares, tunneld's included.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A bed whose daemon also knows `web1` (the same sshd, never used here, so
/// it stays idle) besides `default`, with `default` connected.
async fn two_host_bed() -> Result<Bed> {
    let sshd = Sshd::start()?;
    let web1 = HostSpec::from_sshd(&sshd);
    let bed = Bed::with(sshd, |b| b.host("web1", web1)).await?;
    exec::run_ok(&bed.client, "true").await?;
    Ok(bed)
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_table_shows_each_host_and_its_state() -> Result<()> {
    e2e(async {
        let bed = two_host_bed().await?;
        let echo = TcpPeer::echo().await?;
        open_local(&bed.client, "", echo.port()).await?;
        let out = ctl(&bed)?.run(["hosts"]).await?;
        out.success()?;
        let lines = out.stdout_lines();
        let header: Vec<&str> = lines
            .first()
            .context("no output")?
            .split_whitespace()
            .collect();
        ensure!(
            header == ["NAME", "ADDRESS", "STATE", "TUNNELS", "CONNECTED", "DETAIL"],
            "header {header:?}: {out}"
        );
        let row = |name: &str| -> Result<Vec<String>> {
            let line = lines
                .iter()
                .find(|l| l.split_whitespace().next() == Some(name))
                .with_context(|| format!("no row for {name}: {out}"))?;
            Ok(line.split_whitespace().map(str::to_owned).collect())
        };
        let default = row("default")?;
        ensure!(
            default[1] == bed.sshd.address() && default[2] == "connected" && default[3] == "1",
            "default row {default:?}"
        );
        ensure!(
            default[4].ends_with(['s', 'm']),
            "CONNECTED of a host connected seconds ago: {default:?}"
        );
        let web1 = row("web1")?;
        ensure!(
            web1[2] == "idle" && web1[3] == "0" && web1[4] == "-",
            "web1 row {web1:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_json_and_quiet() -> Result<()> {
    e2e(async {
        let bed = two_host_bed().await?;
        let ctl = ctl(&bed)?;
        let out = ctl.run(["hosts", "-o", "json"]).await?;
        out.success()?;
        let doc = out.json()?;
        check_camel_case(&doc)?;
        let keys: Vec<&String> = doc.as_object().context("not an object")?.keys().collect();
        ensure!(keys == ["hosts"], "expected only \"hosts\": {doc}");
        let hosts = doc["hosts"].as_array().context("hosts is not an array")?;
        let names: Vec<&str> = hosts
            .iter()
            .map(|h| str_field(h, "name"))
            .collect::<Result<_>>()?;
        ensure!(names == ["default", "web1"], "host names {names:?}");
        let default = &hosts[0];
        ensure!(
            str_field(default, "address")? == bed.sshd.address(),
            "{default}"
        );
        ensure!(
            str_field(default, "state")? == "SSH_CONNECTION_STATE_CONNECTED",
            "{default}"
        );
        ensure!(
            is_rfc3339_utc(str_field(default, "connectedAt")?),
            "connectedAt in {default}"
        );
        ensure!(
            str_field(&hosts[1], "state")? == "SSH_CONNECTION_STATE_IDLE",
            "{}",
            hosts[1]
        );

        let out = ctl.run(["hosts", "-q"]).await?;
        out.success()?;
        ensure!(out.stdout_lines() == ["default", "web1"], "hosts -q: {out}");
        Ok(())
    })
    .await
}

/// `status`'s table as key → value.
fn key_values(text: &str) -> Result<HashMap<String, String>> {
    text.lines()
        .map(|line| {
            let (key, value) = line
                .split_once(char::is_whitespace)
                .with_context(|| format!("status line {line:?} is not `key value`"))?;
            Ok((key.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_version_pid_health_and_counts() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        exec::run_ok(&bed.client, "true").await?;
        let echo = TcpPeer::echo().await?;
        open_local(&bed.client, "", echo.port()).await?;
        let out = ctl(&bed)?.run(["status"]).await?;
        out.success()?;
        let kv = key_values(&out.stdout_text())?;
        let get = |k: &str| {
            kv.get(k)
                .map(String::as_str)
                .with_context(|| format!("no {k:?} line: {out}"))
        };
        let pid = bed.daemon.pid().context("tunneld not running")?.to_string();
        ensure!(
            get("address")? == bed.daemon.addr().to_string(),
            "address: {out}"
        );
        ensure!(get("version")? == VERSION, "version: {out}");
        ensure!(get("pid")? == pid, "pid (tunneld is {pid}): {out}");
        ensure!(get("health")? == "SERVING", "health: {out}");
        ensure!(get("tunnels")? == "1 open", "tunnels: {out}");
        ensure!(get("hosts")? == "default (connected)", "hosts: {out}");
        let uptime = get("uptime")?;
        let since = uptime
            .split_once("(since ")
            .and_then(|(_, s)| s.strip_suffix(')'))
            .with_context(|| format!("uptime {uptime:?} has no `(since …)`"))?;
        ensure!(is_rfc3339_utc(since), "uptime since {since:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn status_json_and_quiet() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        let out = ctl.run(["status", "-o", "json"]).await?;
        out.success()?;
        let doc = out.json()?;
        check_camel_case(&doc)?;
        ensure!(
            str_field(&doc, "address")? == bed.daemon.addr().to_string(),
            "{doc}"
        );
        ensure!(str_field(&doc, "health")? == "SERVING", "{doc}");
        let info = doc.get("info").context("no info")?;
        ensure!(str_field(info, "version")? == VERSION, "{info}");
        ensure!(
            num_field(info, "pid")? == u64::from(bed.daemon.pid().context("tunneld not running")?),
            "{info}"
        );
        ensure!(
            is_rfc3339_utc(str_field(info, "startedAt")?),
            "startedAt in {info}"
        );
        // No tunnels: 0 is still a count a script reads, so either 0 or absent.
        ensure!(
            doc.get("tunnels").is_none_or(|n| n == &Value::from(0)),
            "tunnels in {doc}"
        );
        let hosts = doc["hosts"].as_array().context("no hosts array")?;
        ensure!(
            hosts.iter().any(|h| h["name"] == "default"),
            "no default host in {doc}"
        );

        let out = ctl.run(["status", "-q"]).await?;
        out.success()?;
        ensure!(out.stdout.is_empty(), "status -q printed: {out}");
        Ok(())
    })
    .await
}
