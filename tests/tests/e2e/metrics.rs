//! The metrics endpoint (`--metrics-listen`): scraped with curl during real
//! traffic and read by the Python Prometheus client's OpenMetrics parser,
//! so what a real scraper sees is what is checked.
//!
//! The parser comes from the tools venv (`scripts/tools.sh` installs
//! `prometheus-client` from `clients/python/requirements-dev.txt` and puts
//! the venv first on PATH); `TUNNELD_TEST_PYTHON` names another Python.

use std::{collections::BTreeMap, process::Stdio, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tunnel_proto::v1::CloseRequest;
use tunneld_tests::data::random_bytes;
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::sshd::{Sshd, free_port};
use tunneld_tests::wait::poll_until;

use crate::support::{Bed, close, curl, e2e, exchange, expect_status, local_port, open_local};

/// Reads OpenMetrics text on stdin with the official parser (strict: a
/// malformed exposition fails), prints every sample as JSON.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([family.type, s.name, s.labels, s.value])
print(json.dumps(out))
"#;

/// One sample: its family's type, name, labels and value.
#[derive(Debug, Clone)]
struct Sample(String, String, BTreeMap<String, String>, f64);

impl Sample {
    fn from_json(v: &serde_json::Value) -> Option<Sample> {
        let labels = v.get(2)?.as_object()?;
        Some(Sample(
            v.get(0)?.as_str()?.to_string(),
            v.get(1)?.as_str()?.to_string(),
            labels
                .iter()
                .map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect::<Option<_>>()?,
            v.get(3)?.as_f64()?,
        ))
    }
}

struct Scrape(Vec<Sample>);

impl Scrape {
    /// The value of `name` with (at least) `labels`, if exposed.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .find(|s| {
                s.1 == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.2.get(*k).map(String::as_str) == Some(v))
            })
            .map(|s| s.3)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Result<f64> {
        self.get(name, labels)
            .with_context(|| format!("no sample {name}{labels:?} in the scrape"))
    }

    /// Whether any sample carries `label` = `value`.
    fn mentions(&self, label: &str, value: &str) -> bool {
        self.0
            .iter()
            .any(|s| s.2.get(label).map(String::as_str) == Some(value))
    }
}

fn python() -> String {
    std::env::var("TUNNELD_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

async fn parse(text: &str) -> Result<Scrape> {
    let mut child = Command::new(python())
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running python3 (source scripts/tools.sh for the tools venv)")?;
    let mut stdin = child.stdin.take().context("python stdin")?;
    stdin.write_all(text.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "the Prometheus parser refused the scrape ({}; is prometheus-client installed? \
             source scripts/tools.sh):\n{}\n---- scrape ----\n{text}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).context("parser output")?;
    json.iter()
        .map(|v| Sample::from_json(v).with_context(|| format!("sample {v}")))
        .collect::<Result<_>>()
        .map(Scrape)
}

/// `GET path`: status code and body.
async fn get(port: u16, path: &str) -> Result<(u16, String)> {
    let c = curl(&[
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        &format!("http://127.0.0.1:{port}{path}"),
    ])
    .await?;
    ensure!(c.code == Some(0), "curl {path}: {c:?}");
    let (body, code) = c
        .out
        .rsplit_once('\n')
        .context("curl output without a code")?;
    Ok((code.trim().parse()?, body.to_string()))
}

async fn scrape(port: u16) -> Result<Scrape> {
    let (code, body) = get(port, "/metrics").await?;
    ensure!(code == 200, "/metrics answered {code}: {body}");
    parse(&body).await
}

async fn bed_with_metrics() -> Result<(Bed, u16)> {
    let port = free_port()?;
    let bed = Bed::with(Sshd::start()?, |b| {
        b.arg("--metrics-listen").arg(format!("127.0.0.1:{port}"))
    })
    .await?;
    Ok((bed, port))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_bytes_calls_and_forget_closed_tunnels() -> Result<()> {
    e2e(async {
        let (bed, port) = bed_with_metrics().await?;
        poll_until("/readyz answers 200", Duration::from_secs(10), || async {
            Ok((get(port, "/readyz").await?.0 == 200).then_some(()))
        })
        .await?;
        let (code, _) = get(port, "/healthz").await?;
        ensure!(code == 200, "/healthz answered {code}");

        let echo = TcpPeer::echo().await?;
        let tunnel = open_local(&bed.client, "", echo.port()).await?;
        let label = [("tunnel", tunnel.id.as_str())];
        let before = scrape(port).await?;
        let to = [("tunnel", tunnel.id.as_str()), ("direction", "to_target")];
        let from = [("tunnel", tunnel.id.as_str()), ("direction", "from_target")];
        let (to0, from0) = (
            before.value("tunneld_tunnel_bytes_total", &to)?,
            before.value("tunneld_tunnel_bytes_total", &from)?,
        );
        ensure!(
            before.value("tunneld_tunnels", &[("kind", "local"), ("state", "open")])? == 1.0,
            "one open local tunnel"
        );

        let data = random_bytes(300_000);
        let back = exchange(local_port(&tunnel)?, &data, Duration::from_secs(10)).await?;
        ensure!(back == data, "the echo came back different");
        let n = data.len() as f64;
        let after = poll_until("the bytes counted", Duration::from_secs(10), || async {
            let s = scrape(port).await?;
            let moved = (
                s.value("tunneld_tunnel_bytes_total", &to)? - to0,
                s.value("tunneld_tunnel_bytes_total", &from)? - from0,
            );
            Ok((moved == (n, n)).then_some(s))
        })
        .await?;
        ensure!(after.value("tunneld_tunnel_connections_total", &label)? >= 1.0);
        ensure!(after.value("tunneld_tunnel_connections_active", &label)? == 0.0);
        ensure!(
            after.value(
                "tunneld_tunnel_connection_failures_total",
                &[("tunnel", tunnel.id.as_str()), ("reason", "buffer_limit")]
            )? == 0.0
        );
        ensure!(
            after.value(
                "tunneld_ssh_connections",
                &[("host", "default"), ("state", "connected")]
            )? == 1.0
        );

        // A failed call, counted under its code.
        let calls = [
            ("method", "tunnel.v1.TunnelService/Close"),
            ("code", "NOT_FOUND"),
        ];
        let failed0 = after
            .get("tunneld_grpc_requests_total", &calls)
            .unwrap_or(0.0);
        let refused = bed
            .client
            .clone()
            .close(CloseRequest {
                id: "no-such-tunnel".into(),
            })
            .await;
        expect_status(
            "Close of an unknown id",
            refused,
            tonic::Code::NotFound,
            &[],
        )?;
        let s = scrape(port).await?;
        let failed = s.value("tunneld_grpc_requests_total", &calls)?;
        ensure!(
            failed == failed0 + 1.0,
            "NOT_FOUND calls {failed0} -> {failed}"
        );
        ensure!(
            s.value(
                "tunneld_grpc_request_duration_seconds_count",
                &[("method", "tunnel.v1.TunnelService/Close")]
            )? >= 1.0
        );
        ensure!(
            s.value(
                "tunneld_grpc_requests_total",
                &[
                    ("method", "tunnel.v1.TunnelService/OpenLocalForward"),
                    ("code", "OK")
                ]
            )? >= 1.0
        );

        // The process, plausibly.
        let rss = s.value("process_resident_memory_bytes", &[])?;
        ensure!((1e6..8e9).contains(&rss), "RSS {rss}");
        let (open, max) = (
            s.value("process_open_fds", &[])?,
            s.value("process_max_fds", &[])?,
        );
        ensure!(open >= 3.0 && open <= max, "fds {open} of {max}");
        let cpu = s.value("process_cpu_seconds_total", &[])?;
        // In clock ticks (10 ms): a young, idle tunneld may show 0.
        ensure!((0.0..3600.0).contains(&cpu), "CPU {cpu}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64();
        let start = s.value("process_start_time_seconds", &[])?;
        ensure!(
            start <= now + 2.0 && start > now - 600.0,
            "start {start} vs now {now}"
        );
        let build =
            s.0.iter()
                .find(|x| x.1 == "tunneld_build_info")
                .context("no tunneld_build_info")?;
        ensure!(build.0 == "info", "tunneld_build_info is a {}", build.0);
        ensure!(
            build.2.get("version").is_some_and(|v| !v.is_empty())
                && build.2.get("commit").is_some_and(|v| !v.is_empty()),
            "build labels {:?}",
            build.2
        );

        // Closed: its series are gone.
        close(&bed.client, &tunnel.id).await?;
        let s = scrape(port).await?;
        ensure!(
            !s.mentions("tunnel", &tunnel.id),
            "a closed tunnel's series remain: {:?}",
            s.0.iter()
                .filter(|x| x.2.get("tunnel") == Some(&tunnel.id))
                .collect::<Vec<_>>()
        );
        ensure!(s.value("tunneld_tunnels", &[("kind", "local"), ("state", "open")])? == 0.0);

        // Only GET, only the three paths.
        let post = curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            &format!("http://127.0.0.1:{port}/metrics"),
        ])
        .await?;
        ensure!(post.out == "405", "POST /metrics: {post:?}");
        ensure!(get(port, "/nope").await?.0 == 404);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_beyond_loopback_need_the_insecure_flag() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let refused = tunneld_tests::daemon::Tunneld::builder(&sshd)
            .arg("--metrics-listen")
            .arg("0.0.0.0:0")
            .start_refused()
            .await?;
        ensure!(refused.status.code() == Some(2), "{refused:?}");
        ensure!(
            refused
                .stderr
                .contains("refusing to serve metrics on non-loopback address 0.0.0.0:0")
                && refused.stderr.contains("--insecure-metrics-listen"),
            "{}",
            refused.stderr
        );
        Ok(())
    })
    .await
}
