//! tunnelctl against a tunneld that authenticates its callers (issue 6): a
//! bearer token from `TUNNELD_TOKEN`, `--token-file` or
//! `TUNNELD_TOKEN_FILE`, sent on every call, streams included; TLS and
//! client certificates from `--tls-*`; the error line for each way it can
//! go wrong, naming the fix; and the token never in tunnelctl's output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nix::sys::signal::Signal;
use tempfile::TempDir;
use tunneld_tests::auth::new_token;
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::pki::write_file;
use tunneld_tests::{CertFiles, Ctl, CtlOutput, Pki, Sshd};

use super::{ctl, parse_tunnel_line};
use crate::support::{Bed, e2e, exchange};

/// How long a following tunnelctl (`watch`, `--attach`) may take to print.
const PROMPT: Duration = Duration::from_secs(10);

/// What tunneld answers a call without a token (its message starts so).
const NO_TOKEN: &str = "this tunneld requires a token";

/// What tunneld answers a token it does not know (its message starts so).
const WRONG_TOKEN: &str = "the token was not accepted";

/// A bed whose tunneld requires `token` (named `ci` in its --token-file).
async fn token_bed(token: &str) -> Result<Bed> {
    Bed::with(Sshd::start()?, |b| b.tokens(&[("ci", token)])).await
}

/// A bed whose tunneld serves mutual TLS with `pki` (server certificate for
/// 127.0.0.1/localhost, clients signed by `pki`), and requires `token` too
/// when given.
async fn mtls_bed(pki: &Pki, token: Option<&str>) -> Result<Bed> {
    Bed::with(Sshd::start()?, |b| {
        let b = match token {
            Some(token) => b.tokens(&[("ci", token)]),
            None => b,
        };
        b.mtls(pki).expect("test CA certificates")
    })
    .await
}

/// `--tls-ca CA --tls-cert CERT --tls-key KEY` for a client certificate.
fn tls_args(ca: &Path, client: Option<&CertFiles>) -> Vec<String> {
    let mut args = vec!["--tls-ca".to_string(), ca.display().to_string()];
    if let Some(client) = client {
        args.extend([
            "--tls-cert".into(),
            client.cert.display().to_string(),
            "--tls-key".into(),
            client.key.display().to_string(),
        ]);
    }
    args
}

/// `args` then `verb...`, as one argument list.
fn with(args: &[String], verb: &[&str]) -> Vec<String> {
    args.iter()
        .cloned()
        .chain(verb.iter().map(|s| s.to_string()))
        .collect()
}

/// Writes `text` to a new file (mode 0600) in `dir`.
fn secret_file(dir: &TempDir, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.path().join(name);
    write_file(&path, text.as_bytes(), 0o600)?;
    Ok(path)
}

/// Fails if `secret` appears anywhere in what tunnelctl printed.
fn never_printed(out: &CtlOutput, secret: &str) -> Result<()> {
    ensure!(
        !out.stdout_text().contains(secret) && !out.stderr_text().contains(secret),
        "tunnelctl printed a token: {out}"
    );
    Ok(())
}

/// The error line of a run that must fail with exit 1 and name every one of
/// `needles`.
fn failed_with(out: &CtlOutput, needles: &[&str]) -> Result<String> {
    out.expect_code(1)?;
    let line = out.error_line()?;
    for needle in needles {
        ensure!(line.contains(needle), "error line lacks {needle:?}: {out}");
    }
    Ok(line)
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_tunnelctl_prints_what_tunneld_asks_for() -> Result<()> {
    e2e(async {
        let token = new_token();
        let bed = token_bed(&token).await?;
        let out = ctl(&bed)?.run(["list"]).await?;
        let line = failed_with(&out, &[NO_TOKEN, "UNAUTHENTICATED", "TUNNELD_TOKEN"])?;
        ensure!(
            line.starts_with("tunnelctl: cannot list tunnels: "),
            "{line}"
        );
        never_printed(&out, &token)?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn tunneld_token_is_sent_by_every_verb_streams_included() -> Result<()> {
    e2e(async {
        let token = new_token();
        let bed = token_bed(&token).await?;
        let ctl = ctl(&bed)?.env("TUNNELD_TOKEN", &token);

        let out = ctl.run(["list"]).await?;
        out.success()?;
        never_printed(&out, &token)?;
        ctl.run(["status", "-q"]).await?.success()?;
        ctl.run(["hosts", "-q"]).await?.success()?;

        // Exec is a bidirectional stream.
        let out = ctl.run(["exec", "--", "echo", "authenticated"]).await?;
        out.success()?;
        ensure!(out.stdout_text() == "authenticated\n", "{out}");

        // Watch is a server stream: it prints the host as it is.
        let mut watch = ctl.spawn(["watch"]).await?;
        let line = watch.expect_line(PROMPT).await?;
        ensure!(line.contains("host default"), "first watch line {line:?}");
        watch.signal(Signal::SIGINT)?;
        let status = watch.wait(PROMPT).await?;
        ensure!(
            status.code() == Some(0),
            "watch: {status}; {}",
            watch.stderr_text()
        );

        // --attach is a server stream holding the tunnel.
        let echo = TcpPeer::echo().await?;
        let spec = format!("0:127.0.0.1:{}", echo.port());
        let mut attached = ctl.spawn(["open-local", "--attach", "-L", &spec]).await?;
        let t = parse_tunnel_line(&attached.expect_line(PROMPT).await?)?;
        let got = exchange(t.listen_port, b"through an attached tunnel", PROMPT).await?;
        ensure!(
            got == b"through an attached tunnel",
            "echo returned {got:?}"
        );
        attached.signal(Signal::SIGINT)?;
        let status = attached.wait(PROMPT).await?;
        ensure!(
            status.code() == Some(0),
            "attach: {status}; {}",
            attached.stderr_text()
        );
        ensure!(
            !attached.stderr_text().contains(&token),
            "attach printed the token"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn token_files_work_and_the_flag_wins_over_the_environment() -> Result<()> {
    e2e(async {
        let token = new_token();
        let bed = token_bed(&token).await?;
        let dir = tempfile::tempdir()?;
        let bare = secret_file(&dir, "bare", &format!("{token}\n"))?;
        let wrong = new_token();

        // A file holding just the token; TUNNELD_TOKEN loses to the flag.
        let out = ctl(&bed)?
            .env("TUNNELD_TOKEN", &wrong)
            .run(["--token-file", &bare.display().to_string(), "list"])
            .await?;
        out.success()?;

        // tunneld's own file, comment and NAME:TOKEN line, works as is.
        let daemons = bed
            .daemon
            .token_file()
            .context("the daemon has no token file")?;
        ctl(&bed)?
            .run(["list", "--token-file", &daemons.display().to_string()])
            .await?
            .success()?;

        // TUNNELD_TOKEN_FILE, and TUNNELD_TOKEN winning over it.
        let by_env = ctl(&bed)?.env("TUNNELD_TOKEN_FILE", bare.display().to_string());
        by_env.run(["list"]).await?.success()?;
        let out = by_env.env("TUNNELD_TOKEN", &wrong).run(["list"]).await?;
        failed_with(
            &out,
            &[WRONG_TOKEN, "tunnelctl sent the token from TUNNELD_TOKEN"],
        )?;

        // A missing token file is named before any call (exit 2).
        let out = ctl(&bed)?
            .run(["--token-file", "/nonexistent/token", "list"])
            .await?;
        out.expect_code(2)?;
        let line = out.error_line()?;
        ensure!(
            line.contains("cannot read the token file /nonexistent/token"),
            "{out}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_refused_and_never_printed() -> Result<()> {
    e2e(async {
        let token = new_token();
        let bed = token_bed(&token).await?;
        let wrong = new_token();
        let dir = tempfile::tempdir()?;
        let file = secret_file(&dir, "wrong", &format!("# mine\nme:{wrong}\n"))?;

        for out in [
            ctl(&bed)?
                .env("TUNNELD_TOKEN", &wrong)
                .run(["list"])
                .await?,
            ctl(&bed)?
                .env("TUNNELD_TOKEN", &wrong)
                .run(["-o", "json", "status"])
                .await?,
            ctl(&bed)?
                .run([
                    "--token-file",
                    &file.display().to_string(),
                    "exec",
                    "--",
                    "true",
                ])
                .await?,
        ] {
            // exec exits 255 for a failed call, as ssh does.
            let code = if out.args.contains(&"exec".to_string()) {
                255
            } else {
                1
            };
            out.expect_code(code)?;
            let line = out.error_line()?;
            ensure!(
                line.contains(WRONG_TOKEN) && line.contains("UNAUTHENTICATED"),
                "{out}"
            );
            never_printed(&out, &wrong)?;
            never_printed(&out, &token)?;
        }
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_is_not_sent_in_plain_text_beyond_this_machine() -> Result<()> {
    e2e(async {
        // Refused before connecting: nothing needs to listen there.
        let token = new_token();
        let out = Ctl::new("192.0.2.1:4522")?
            .env("TUNNELD_TOKEN", &token)
            .run(["list"])
            .await?;
        out.expect_code(2)?;
        let line = out.error_line()?;
        ensure!(
            line.contains("refusing to send the token")
                && line.contains("--addr https://192.0.2.1:4522"),
            "{out}"
        );
        never_printed(&out, &token)?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_works_with_the_tls_flags_and_their_variables() -> Result<()> {
    e2e(async {
        let pki = Pki::new()?;
        let bed = mtls_bed(&pki, None).await?;
        let addr = bed.daemon.addr();
        let alice = pki.client("alice")?;

        // --tls-* select TLS for a plain HOST:PORT.
        let out = ctl(&bed)?
            .run(with(&tls_args(pki.ca_cert(), Some(&alice)), &["list"]))
            .await?;
        out.success()?;

        // https:// with the variables, and a server name other than the
        // address's host.
        let out = Ctl::new(format!("https://{addr}"))?
            .env("TUNNELD_TLS_CA", pki.ca_cert().display().to_string())
            .env("TUNNELD_TLS_CERT", alice.cert.display().to_string())
            .env("TUNNELD_TLS_KEY", alice.key.display().to_string())
            .env("TUNNELD_TLS_SERVER_NAME", "localhost")
            .run(["status", "-q"])
            .await?;
        out.success()?;

        // --tls-cert without --tls-key is a usage error.
        let out = ctl(&bed)?
            .run(["--tls-cert", &alice.cert.display().to_string(), "list"])
            .await?;
        out.expect_code(2)?;
        ensure!(out.error_line()?.contains("--tls-key"), "{out}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_failures_name_the_address_and_the_fix() -> Result<()> {
    e2e(async {
        let pki = Pki::new()?;
        let stranger = Pki::named("another CA")?;
        let bed = mtls_bed(&pki, None).await?;
        let addr = bed.daemon.addr().to_string();
        let handshake = format!("TLS handshake with {addr} failed");

        // No client certificate: tunneld refuses the handshake.
        let out = ctl(&bed)?
            .run(with(&tls_args(pki.ca_cert(), None), &["list"]))
            .await?;
        failed_with(&out, &[&handshake, "--tls-cert", "--tls-client-ca"])?;

        // A client certificate from another CA.
        let mallory = stranger.client("mallory")?;
        let out = ctl(&bed)?
            .run(with(&tls_args(pki.ca_cert(), Some(&mallory)), &["list"]))
            .await?;
        failed_with(&out, &[&handshake, "--tls-client-ca"])?;

        // tunneld's certificate checked against the wrong CA.
        let alice = pki.client("alice")?;
        let out = ctl(&bed)?
            .run(with(&tls_args(stranger.ca_cert(), Some(&alice)), &["list"]))
            .await?;
        failed_with(&out, &[&handshake, "--tls-ca"])?;

        // Plain HTTP/2 to a TLS tunneld.
        let out = ctl(&bed)?.run(["list"]).await?;
        failed_with(&out, &[&addr, &format!("--addr https://{addr}")])?;

        // TLS to a plaintext tunneld.
        let plain = Bed::start().await?;
        let plain_addr = plain.daemon.addr().to_string();
        let out = ctl(&plain)?
            .run(with(&tls_args(pki.ca_cert(), None), &["list"]))
            .await?;
        failed_with(
            &out,
            &[
                &format!("TLS handshake with {plain_addr} failed"),
                "does not seem to serve TLS",
            ],
        )?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn open_local_through_a_token_and_mtls_daemon_carries_bytes() -> Result<()> {
    e2e(async {
        let pki = Pki::new()?;
        let token = new_token();
        let bed = mtls_bed(&pki, Some(&token)).await?;
        let alice = pki.client("alice")?;
        let echo = TcpPeer::echo().await?;
        let ctl = ctl(&bed)?.env("TUNNELD_TOKEN", &token);
        let tls = tls_args(pki.ca_cert(), Some(&alice));

        // The client certificate alone is not enough: the token is required too.
        let out = ctl
            .clone()
            .env("TUNNELD_TOKEN", "")
            .run(with(&tls, &["list"]))
            .await?;
        failed_with(&out, &[NO_TOKEN])?;

        let spec = format!("0:127.0.0.1:{}", echo.port());
        let out = ctl.run(with(&tls, &["open-local", "-L", &spec])).await?;
        out.success()?;
        never_printed(&out, &token)?;
        let lines = out.stdout_lines();
        ensure!(lines.len() == 1, "expected one tunnel line: {out}");
        let t = parse_tunnel_line(&lines[0])?;

        let data = tunneld_tests::data::random_bytes(64 * 1024);
        let got = exchange(t.listen_port, &data, PROMPT).await?;
        ensure!(
            got == data,
            "{} bytes back of {} through {}",
            got.len(),
            data.len(),
            t.id
        );

        ctl.run(with(&tls, &["close", &t.id])).await?.success()?;
        Ok(())
    })
    .await
}
