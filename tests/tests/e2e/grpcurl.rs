//! grpcurl, the tool operators poke the daemon with, run for real against
//! tunneld through server reflection: no proto files on its side.
//!
//! grpcurl comes from `scripts/tools.sh` (pinned, through the Go module
//! proxy), which exports `GRPCURL`; otherwise it is looked up on `PATH`. A
//! missing grpcurl fails these tests: they never skip.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tunnel_proto::v1::ExecStreamRequest;
use tunnel_proto::v1::exec_stream_request::Message;
use tunnel_proto::v1::exec_stream_response::Event;
use tunnel_proto::v1::{ExecStreamResponse, ExitStatus, exit_status};
use tunneld_tests::auth::new_token;
use tunneld_tests::data::{random_bytes, sha256_hex};
use tunneld_tests::peers::{TcpPeer, port_is_free};
use tunneld_tests::{Pki, Sshd, Tunneld};

use crate::support::{Bed, IO_TIMEOUT, curl_socks, curl_unix, e2e, exchange};

/// Bound on one grpcurl run.
const GRPCURL_TIMEOUT: Duration = Duration::from_secs(20);

fn grpcurl_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("GRPCURL") {
        return Ok(PathBuf::from(p));
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("grpcurl"))
        .find(|p| p.is_file())
        .context(
            "grpcurl not found: run `. scripts/tools.sh` (installs the pinned grpcurl and sets GRPCURL), \
             or set GRPCURL to its path",
        )
}

/// Runs `grpcurl -plaintext ARGS... ADDR_ARGS` and returns its output.
async fn grpcurl(target: &[&str], args: &[&str]) -> Result<Output> {
    let mut all = vec!["-plaintext"];
    all.extend_from_slice(args);
    grpcurl_env(target, &all, &[]).await
}

/// Runs `grpcurl ARGS... ADDR_ARGS` (no `-plaintext` added) with extra
/// environment variables, and returns its output.
async fn grpcurl_env(target: &[&str], args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
    grpcurl_io(target, args, env, None).await
}

/// Runs `grpcurl ARGS... ADDR_ARGS` (no `-plaintext` added) with extra
/// environment variables and, when `stdin` is given, those bytes on its
/// standard input followed by end-of-file (what `-d @` reads); else an empty
/// stdin. Returns its output.
async fn grpcurl_io(
    target: &[&str],
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> Result<Output> {
    let bin = grpcurl_path()?;
    let mut cmd = Command::new(&bin);
    cmd.args(args)
        .args(target)
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // On a timeout the future below is dropped, and grpcurl with it.
        .kill_on_drop(true);
    let shown = format!("grpcurl {} {}", args.join(" "), target.join(" "));
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    let pipe = child.stdin.take();
    let run = async move {
        // Written while grpcurl's output is read, so neither side waits on
        // a full pipe.
        let write = async move {
            if let (Some(mut pipe), Some(bytes)) = (pipe, stdin) {
                pipe.write_all(bytes).await?;
                // Dropped here: the pipe closes, grpcurl's end of input.
            }
            std::io::Result::Ok(())
        };
        let (written, output) = tokio::join!(write, child.wait_with_output());
        let output = output.context("waiting for grpcurl")?;
        written.with_context(|| {
            format!(
                "writing grpcurl's stdin (it exited {}: {})",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        anyhow::Ok(output)
    };
    tokio::time::timeout(GRPCURL_TIMEOUT, run)
        .await
        .with_context(|| format!("{shown} still running after {GRPCURL_TIMEOUT:?}"))?
}

/// Runs grpcurl and fails unless it succeeded; returns stdout.
async fn grpcurl_ok(target: &[&str], args: &[&str]) -> Result<String> {
    let out = grpcurl(target, args).await?;
    ensure!(
        out.status.success(),
        "grpcurl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// Runs a unary call with a JSON request and parses the JSON answer.
async fn call(addr: &str, method: &str, request: &str) -> Result<Value> {
    let out = grpcurl_ok(&[addr, method], &["-d", request]).await?;
    serde_json::from_str(&out).with_context(|| format!("{method} printed non-JSON: {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_lists_and_describes_the_services_through_reflection() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let addr = bed.daemon.addr().to_string();
        let services = grpcurl_ok(&[&addr, "list"], &[]).await?;
        for name in [
            "tunnel.v1.TunnelService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ] {
            ensure!(
                services.lines().any(|l| l.trim() == name),
                "`grpcurl list` does not show {name}: {services}"
            );
        }
        let described = grpcurl_ok(&[&addr, "describe", "tunnel.v1.TunnelService"], &[]).await?;
        for rpc in [
            "rpc Exec ( .tunnel.v1.ExecRequest ) returns ( stream .tunnel.v1.ExecResponse )",
            "rpc ExecStream ( stream .tunnel.v1.ExecStreamRequest ) returns ( stream .tunnel.v1.ExecStreamResponse )",
            "rpc OpenLocalForward",
            "rpc OpenRemoteForward",
            "rpc OpenAttached",
            "rpc List",
            "rpc Close",
            "rpc GetInfo",
        ] {
            ensure!(
                described.contains(rpc),
                "describe lacks {rpc:?}: {described}"
            );
        }
        // Message descriptions come with the proto's comments.
        let message = grpcurl_ok(&[&addr, "describe", "tunnel.v1.Tunnel"], &[]).await?;
        ensure!(
            message.contains("google.protobuf.Timestamp created_at")
                && message.contains("Stable identifier"),
            "describe tunnel.v1.Tunnel lacks fields or comments: {message}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_opens_uses_lists_and_closes_a_forward() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let addr = bed.daemon.addr().to_string();
        let echo = TcpPeer::echo().await?;

        let opened = call(
            &addr,
            "tunnel.v1.TunnelService/OpenLocalForward",
            &format!(
                r#"{{"remoteHost": "127.0.0.1", "remotePort": {}}}"#,
                echo.port()
            ),
        )
        .await?;
        let id = opened["tunnel"]["id"]
            .as_str()
            .context("no tunnel.id")?
            .to_string();
        let port = opened["tunnel"]["local"]["port"]
            .as_u64()
            .context("no tunnel.local.port")? as u16;
        ensure!(
            opened["tunnel"]["kind"] == "TUNNEL_KIND_LOCAL",
            "kind {}",
            opened["tunnel"]["kind"]
        );
        let back = exchange(port, b"through grpcurl's tunnel", IO_TIMEOUT).await?;
        ensure!(
            back == b"through grpcurl's tunnel",
            "echo differs: {back:?}"
        );

        let listed = call(&addr, "tunnel.v1.TunnelService/List", "{}").await?;
        let tunnels = listed["tunnels"].as_array().context("no tunnels array")?;
        ensure!(
            tunnels.len() == 1 && tunnels[0]["id"] == id.as_str(),
            "List shows {tunnels:?}"
        );
        // 64-bit counters are JSON strings in the proto3 mapping.
        ensure!(
            tunnels[0]["counters"]["bytesToTarget"] == "24",
            "counters {}",
            tunnels[0]["counters"]
        );

        let closed = call(
            &addr,
            "tunnel.v1.TunnelService/Close",
            &format!(r#"{{"id": "{id}"}}"#),
        )
        .await?;
        ensure!(
            closed["tunnel"]["state"] == "TUNNEL_STATE_CLOSED",
            "Close answered {closed}"
        );
        ensure!(port_is_free(port), "port {port} still taken after Close");

        // An unknown id: grpcurl exits non-zero and prints the code and message.
        let out = grpcurl(
            &[&addr, "tunnel.v1.TunnelService/Close"],
            &["-d", &format!(r#"{{"id": "{id}"}}"#)],
        )
        .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            !out.status.success() && stderr.contains("NotFound") && stderr.contains(&id),
            "closing {id} twice: {} {stderr}",
            out.status
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_streams_exec_and_checks_health() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let addr = bed.daemon.addr().to_string();
        let health = call(&addr, "grpc.health.v1.Health/Check", "{}").await?;
        ensure!(health["status"] == "SERVING", "overall health {health}");
        let health = call(
            &addr,
            "grpc.health.v1.Health/Check",
            r#"{"service": "tunnel.v1.TunnelService"}"#,
        )
        .await?;
        ensure!(health["status"] == "SERVING", "service health {health}");

        // A server stream: grpcurl prints one JSON object per message.
        let out = grpcurl_ok(
            &[&addr, "tunnel.v1.TunnelService/Exec"],
            &["-d", r#"{"command": "echo hi; exit 3"}"#],
        )
        .await?;
        let messages: Vec<Value> = serde_json::Deserializer::from_str(&out)
            .into_iter()
            .collect::<Result<_, _>>()
            .with_context(|| format!("Exec output is not a JSON stream: {out}"))?;
        // bytes are base64 in JSON: "hi\n" is "aGkK".
        ensure!(
            messages.iter().any(|m| m["stdout"] == "aGkK"),
            "no stdout \"hi\": {messages:?}"
        );
        match messages.last() {
            Some(last) if last["exit"]["code"] == 3 => Ok(()),
            other => bail!("last message is not exit code 3: {other:?}"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_feeds_exec_stream_the_messages_on_its_stdin() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let addr = bed.daemon.addr().to_string();
        // More than the SSH channel's 2 MiB window in all, in chunks of
        // uneven sizes (each at most the 1 MiB the proto recommends).
        let chunks: Vec<Vec<u8>> = [1, 1 << 20, 700_001, 1 << 20]
            .into_iter()
            .map(random_bytes)
            .collect();
        // `-d @`: grpcurl reads one JSON message after another from its
        // stdin and sends each as it is parsed; the call's input ends with
        // stdinEof (end of grpcurl's stdin would half-close it too). bytes
        // are base64 in JSON: the stdin messages come from the proto
        // crate's serde impls, which follow the proto3 JSON mapping.
        let mut input = String::from(r#"{"start": {"command": "sha256sum"}}"#);
        input.push('\n');
        for chunk in &chunks {
            let message = ExecStreamRequest {
                message: Some(Message::Stdin(chunk.clone())),
            };
            input += &serde_json::to_string(&message)?;
            input.push('\n');
        }
        input += r#"{"stdinEof": true}"#;
        ensure!(
            input
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with(r#"{"stdin":""#)),
            "not a stdin message in JSON: {:.80}",
            input.lines().nth(1).unwrap_or_default()
        );

        let out = grpcurl_io(
            &[&addr, "tunnel.v1.TunnelService/ExecStream"],
            &["-plaintext", "-d", "@"],
            &[],
            Some(input.as_bytes()),
        )
        .await?;
        let printed = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "grpcurl ExecStream failed ({}): {} {printed}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // One JSON object per response; stdout chunks are base64.
        let messages: Vec<ExecStreamResponse> = serde_json::Deserializer::from_slice(&out.stdout)
            .into_iter()
            .collect::<Result<_, _>>()
            .with_context(|| format!("ExecStream output is not a JSON stream: {printed}"))?;
        let mut stdout = Vec::new();
        let mut exits = Vec::new();
        for m in &messages {
            match &m.event {
                Some(Event::Stdout(d)) => stdout.extend_from_slice(d),
                Some(Event::Exit(status)) => exits.push(status),
                _ => {}
            }
        }
        let want = format!("{}  -\n", sha256_hex(&chunks.concat()));
        ensure!(
            stdout == want.as_bytes(),
            "the host's sha256sum printed {:?}, the bytes sent hash to {want:?}",
            String::from_utf8_lossy(&stdout)
        );
        let exit_zero = ExitStatus {
            status: Some(exit_status::Status::Code(0)),
            ..Default::default()
        };
        ensure!(
            exits == [&exit_zero]
                && matches!(messages.last(), Some(m) if matches!(m.event, Some(Event::Exit(_)))),
            "want one exit status, code 0, last: {printed}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_reaches_tunneld_on_a_unix_socket() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("tunneld.sock");
        let _daemon = Tunneld::builder(&sshd).listen_unix(&socket).start().await?;
        let path = socket.to_str().context("socket path is not UTF-8")?;
        let info = grpcurl_ok(&[path, "tunnel.v1.TunnelService/GetInfo"], &["-unix"]).await?;
        let info: Value = serde_json::from_str(&info)?;
        ensure!(
            info["version"] == env!("CARGO_PKG_VERSION"),
            "GetInfo over the unix socket: {info}"
        );
        Ok(())
    })
    .await
}

/// Fails unless grpcurl failed with `code` and printed every one of `needles`.
fn expect_grpcurl_error(what: &str, out: &Output, code: &str, needles: &[&str]) -> Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success(),
        "{what}: grpcurl succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    ensure!(stderr.contains(code), "{what}: no {code} in {stderr}");
    for needle in needles {
        ensure!(stderr.contains(needle), "{what}: no {needle:?} in {stderr}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_calls_a_token_protected_tunneld_with_an_authorization_header() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let token = new_token();
        let bed = Bed::with(sshd, |b| b.tokens(&[("ci", &token)])).await?;
        let addr = bed.daemon.addr().to_string();
        // The token stays out of the command line (and `ps`): grpcurl
        // expands ${TUNNELD_TOKEN} from its environment.
        let env = [("TUNNELD_TOKEN", token.as_str())];
        let header = "authorization: Bearer ${TUNNELD_TOKEN}";

        let anonymous = grpcurl(&[&addr, "list"], &[]).await?;
        expect_grpcurl_error(
            "list without a token",
            &anonymous,
            "Unauthenticated",
            &["requires a token"],
        )?;

        let with_token = ["-plaintext", "-expand-headers", "-H", header];
        let out = grpcurl_env(&[&addr, "list"], &with_token, &env).await?;
        let services = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success()
                && services
                    .lines()
                    .any(|l| l.trim() == "tunnel.v1.TunnelService"),
            "list with the token ({}): {services} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let out = grpcurl_env(
            &[&addr, "tunnel.v1.TunnelService/Exec"],
            &[
                &with_token[..],
                &["-d", r#"{"command": "echo via-grpcurl"}"#],
            ]
            .concat(),
            &env,
        )
        .await?;
        // "via-grpcurl\n" in base64.
        ensure!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("dmlhLWdycGN1cmwK"),
            "Exec with the token ({}): {} {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        // The token only for reflection (which grpcurl needs to know the
        // schema): health answers without one, the API does not.
        let reflect_only = ["-plaintext", "-expand-headers", "-reflect-header", header];
        let out = grpcurl_env(&[&addr, "grpc.health.v1.Health/Check"], &reflect_only, &env).await?;
        let health = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && health.contains("SERVING"),
            "health check without a token ({}): {health} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let out = grpcurl_env(
            &[&addr, "tunnel.v1.TunnelService/GetInfo"],
            &reflect_only,
            &env,
        )
        .await?;
        expect_grpcurl_error(
            "GetInfo without a token",
            &out,
            "Unauthenticated",
            &["requires a token"],
        )?;
        let log = bed.daemon.log();
        ensure!(!log.contains(&token), "the token appears in tunneld's log");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_calls_a_mutual_tls_tunneld_with_a_client_certificate() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let pki = Pki::new()?;
        let server = pki.server()?;
        let fixture = pki.client("fixture")?;
        let ca = pki.ca_cert().to_path_buf();
        let bed = Bed::with(sshd, |b| b.tls(server, Some(ca)).client_cert(fixture)).await?;
        let addr = bed.daemon.addr().to_string();
        let client = pki.client("grpcurl")?;
        let (ca, cert, key) = (
            pki.ca_cert().display().to_string(),
            client.cert.display().to_string(),
            client.key.display().to_string(),
        );
        let trust = ["-cacert", ca.as_str(), "-authority", "localhost"];
        let mtls = [&trust[..], &["-cert", cert.as_str(), "-key", key.as_str()]].concat();
        let out = grpcurl_env(&[&addr, "tunnel.v1.TunnelService/GetInfo"], &mtls, &[]).await?;
        let info: Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "GetInfo over mTLS ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        ensure!(
            info["version"] == env!("CARGO_PKG_VERSION"),
            "GetInfo over mTLS: {info}"
        );
        let out = grpcurl_env(&[&addr, "list"], &trust, &[]).await?;
        ensure!(
            !out.status.success(),
            "grpcurl without a client certificate got through: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_opens_a_socks_proxy_and_a_unix_socket_forward_as_the_readme_shows() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let addr = bed.daemon.addr().to_string();
        let http = tunneld_tests::peers::HttpPeer::start("through grpcurl's proxy").await?;
        let opened = call(&addr, "tunnel.v1.TunnelService/OpenDynamicForward", "{}").await?;
        ensure!(
            opened["tunnel"]["kind"] == "TUNNEL_KIND_DYNAMIC",
            "kind {}",
            opened["tunnel"]["kind"]
        );
        let port = opened["tunnel"]["local"]["port"]
            .as_u64()
            .context("no tunnel.local.port")?;
        let port = u16::try_from(port)?;
        let body = curl_socks(port, &format!("http://localhost:{}/", http.port())).await?;
        ensure!(body == http.body(), "curl through the proxy got {body:?}");

        let dir = tempfile::Builder::new().prefix("tdg").tempdir_in("/tmp")?;
        let sock = dir.path().join("g.sock");
        let opened = call(
            &addr,
            "tunnel.v1.TunnelService/OpenLocalForward",
            &format!(
                r#"{{"localPath": "{}", "remoteHost": "127.0.0.1", "remotePort": {}}}"#,
                sock.display(),
                http.port()
            ),
        )
        .await?;
        ensure!(
            opened["tunnel"]["local"]["path"] == sock.display().to_string(),
            "local end {}",
            opened["tunnel"]["local"]
        );
        let body = curl_unix(&sock).await?;
        ensure!(body == http.body(), "curl --unix-socket got {body:?}");
        Ok(())
    })
    .await
}
