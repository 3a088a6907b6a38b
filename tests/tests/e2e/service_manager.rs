//! What a service manager and a log shipper see: systemd's notifications
//! (`NOTIFY_SOCKET`, a datagram socket standing in for systemd) and
//! `--log-format json` on stderr.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use nix::sys::signal::Signal;
use serde_json::Value;
use tunnel_proto::v1::OpenLocalForwardRequest;
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::sshd::free_port;
use tunneld_tests::{Sshd, Tunneld};

use crate::support::{carries, close, e2e, local_port, open_local_req};

/// The next datagram on `socket`, as text, within `within`.
async fn next_notice(socket: &UnixDatagram, within: Duration) -> Result<String> {
    let socket = socket.try_clone()?;
    socket.set_read_timeout(Some(within))?;
    tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 4096];
        let n = socket
            .recv(&mut buf)
            .context("no notification from tunneld in time")?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .await?
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_is_told_ready_reloading_and_stopping() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path)?;
        let mut daemon = Tunneld::builder(&sshd)
            .env("NOTIFY_SOCKET", path.display().to_string())
            .start()
            .await?;
        let wait = Duration::from_secs(10);

        // READY=1 once the API listens (the harness saw its line) and the
        // first opens were tried.
        let ready = next_notice(&socket, wait).await?;
        ensure!(ready == "READY=1\n", "first notice {ready:?}");
        daemon
            .client()
            .get_info(tunnel_proto::v1::GetInfoRequest {})
            .await?;

        daemon.signal(Signal::SIGHUP)?;
        let reloading = next_notice(&socket, wait).await?;
        let lines: Vec<&str> = reloading.lines().collect();
        ensure!(
            lines.first() == Some(&"RELOADING=1")
                && lines.iter().any(|l| l
                    .strip_prefix("MONOTONIC_USEC=")
                    .is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0))),
            "on SIGHUP: {reloading:?}"
        );
        let again = next_notice(&socket, wait).await?;
        ensure!(again == "READY=1\n", "after the reload: {again:?}");

        daemon.signal(Signal::SIGTERM)?;
        let stopping = next_notice(&socket, wait).await?;
        ensure!(stopping == "STOPPING=1\n", "on SIGTERM: {stopping:?}");
        let status = daemon.exited_within(wait).await?;
        ensure!(status.code() == Some(0), "exit {status}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_a_line_and_name_the_tunnel_and_host() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let echo = TcpPeer::echo().await?;
        let mut declared = toml::Table::new();
        declared.insert(
            "local".into(),
            format!("{}:127.0.0.1:{}", free_port()?, echo.port()).into(),
        );
        let mut daemon = Tunneld::builder(&sshd)
            .arg("--log-format=json")
            .tunnel("decl", declared)
            .start()
            .await?;
        let client = daemon.client();
        let t = open_local_req(
            &client,
            OpenLocalForwardRequest {
                remote_host: "127.0.0.1".into(),
                remote_port: u32::from(echo.port()),
                name: "jsonlog".into(),
                ..Default::default()
            },
        )
        .await?;
        carries(local_port(&t)?, "the forward").await?;
        close(&client, &t.id).await?;
        daemon.terminate().await?;

        let log = daemon.log();
        let mut lines = 0;
        let mut opened = None;
        let mut declared_open = None;
        let mut conn_with_peer = false;
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .with_context(|| format!("not a JSON object: {line:?}"))?;
            ensure!(
                v["timestamp"].is_string() && v["level"].is_string() && v["target"].is_string(),
                "missing timestamp/level/target: {line}"
            );
            lines += 1;
            let fields = &v["fields"];
            // The API's tunnel's line (the declared one logs one too).
            if fields["message"] == "local forward open" && fields["tunnel"] == t.id.as_str() {
                opened = Some(v.clone());
            }
            if fields["message"] == "declared tunnel open" {
                declared_open = Some(v.clone());
            }
            // A line inside a connection's span carries the peer, and the
            // tunnel and host of its forward's span.
            let spans = v["spans"].as_array().cloned().unwrap_or_default();
            let has = |key: &str| spans.iter().any(|s| s.get(key).is_some());
            if has("peer") && has("tunnel") && has("host") {
                conn_with_peer = true;
            }
        }
        ensure!(lines > 5, "only {lines} log lines");
        let Some(opened) = opened else {
            bail!("no \"local forward open\" line for {} in:\n{log}", t.id)
        };
        ensure!(
            opened["fields"]["tunnel"] == t.id.as_str() && opened["fields"]["host"] == "default",
            "the open line lacks its tunnel and host: {opened}"
        );
        let Some(declared_open) = declared_open else {
            bail!("no \"declared tunnel open\" line in:\n{log}")
        };
        let f = &declared_open["fields"];
        ensure!(
            f["name"] == "decl"
                && f["host"] == "default"
                && f["tunnel"].as_str().is_some_and(|t| t.starts_with("t-")),
            "the declared tunnel's open line: {declared_open}"
        );
        ensure!(
            conn_with_peer,
            "no line carries peer, tunnel and host:\n{log}"
        );
        Ok(())
    })
    .await
}
