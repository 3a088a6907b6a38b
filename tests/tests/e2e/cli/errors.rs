//! Failures as a user meets them: exactly one `tunnelctl: ` line on stderr
//! that names what failed (the address, the host, the flag), a non-zero exit
//! (1, 255 for exec, 2 for bad usage) within a few seconds, never a panic.

use std::time::Duration;

use anyhow::{Result, ensure};
use tunneld_tests::Ctl;

use super::{ctl, dead_addr, expect_usage_errors};
use crate::support::{Bed, e2e, list};

/// How soon a refused connection must be reported.
const FAST: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn tunneld_down_is_one_line_naming_the_address() -> Result<()> {
    e2e(async {
        let addr = dead_addr()?;
        let ctl = Ctl::new(addr)?;
        let out = ctl.run(["list"]).await?;
        out.expect_code(1)?;
        ensure!(out.took < FAST, "took {:?} to report a refused connection", out.took);
        let line = out.error_line()?;
        ensure!(
            line == format!(
                "tunnelctl: tunneld is not reachable at {addr}: connection refused — is tunneld running?"
            ),
            "error line {line:?}"
        );
        ensure!(out.stdout.is_empty(), "{out}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_verb_reports_tunneld_down_with_its_exit_code() -> Result<()> {
    e2e(async {
        let addr = dead_addr()?;
        let ctl = Ctl::new(addr)?;
        let cases: &[(&[&str], i32)] = &[
            (&["exec", "--", "true"], 255),
            (&["open-local", "--lport", "0", "--rport", "22"], 1),
            (&["open-remote", "-R", "0:localhost:22"], 1),
            (&["open-local", "--attach", "-L", "0:localhost:22"], 1),
            (&["ls", "-q"], 1),
            (&["list", "-o", "json"], 1),
            (&["close", "t-1"], 1),
            (&["close", "--all"], 1),
            (&["hosts"], 1),
            (&["status"], 1),
            (&["status", "-q"], 1),
        ];
        let mut failures = Vec::new();
        for (args, code) in cases {
            let out = ctl.run(args.iter()).await?;
            let checked = (|| {
                out.expect_code(*code)?;
                ensure!(out.took < FAST, "took {:?}", out.took);
                let line = out.error_line()?;
                ensure!(
                    line.contains(&addr.to_string()) && line.contains("is tunneld running?"),
                    "error line {line:?} lacks the address or the hint"
                );
                ensure!(out.stdout.is_empty(), "stdout not empty");
                Ok(())
            })();
            if let Err(e) = checked {
                failures.push(format!("{args:?}: {e:#}\n{out}"));
            }
        }
        ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_bounds_a_tunneld_that_does_not_answer() -> Result<()> {
    e2e(async {
        // Accepts TCP connections (the kernel completes the handshake) but
        // never speaks HTTP/2.
        let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = silent.local_addr()?;
        let out = Ctl::new(addr)?.run(["--timeout", "1s", "list"]).await?;
        out.expect_code(1)?;
        ensure!(
            out.took < Duration::from_secs(4),
            "--timeout 1s took {:?}",
            out.took
        );
        let line = out.error_line()?;
        ensure!(
            line.contains(&addr.to_string()),
            "error line {line:?} does not name {addr}"
        );
        drop(silent);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_errors_are_one_line_naming_what_failed() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;

        let out = ctl
            .run([
                "open-local",
                "--host",
                "no-such-host",
                "--lport",
                "0",
                "--rport",
                "22",
            ])
            .await?;
        out.expect_code(1)?;
        let line = out.error_line()?;
        ensure!(
            line.contains("no-such-host"),
            "error line {line:?} does not name the host"
        );

        // A port already taken on tunneld's machine.
        let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = taken.local_addr()?.port().to_string();
        let out = ctl
            .run(["open-local", "--lport", &port, "--rport", "22"])
            .await?;
        out.expect_code(1)?;
        let line = out.error_line()?;
        ensure!(
            line.contains(&port),
            "error line {line:?} does not name port {port}"
        );

        let open = list(&bed.client).await?.tunnels;
        ensure!(open.is_empty(), "failed opens left tunnels: {open:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_usage_exits_2_naming_the_flag_and_calls_nothing() -> Result<()> {
    e2e(async {
        // A dead address, given by the environment so that the cases can
        // give `--addr` themselves: if any of these made a call, it would
        // fail with 1 (or 255), not 2.
        let ctl = Ctl::without_addr()?.env("TUNNELD_ADDR", dead_addr()?.to_string());
        let cases: &[(&[&str], &[&str])] = &[
            (&["list", "--no-such-flag"], &["--no-such-flag"]),
            (&["--addr", "ftp://127.0.0.1:1", "list"], &["--addr"]),
            (&["--tls-cert", "c.pem", "list"], &["--tls-key"]),
            (&["--addr", "127.0.0.1:70000", "list"], &["--addr"]),
            (&["-o", "yaml", "list"], &["--output"]),
            (&["--timeout", "soon", "list"], &["--timeout"]),
            (&["exec", "-e", "1BAD=x", "--", "true"], &["--env"]),
            (&["exec"], &["COMMAND"]),
            (&["no-such-verb"], &["no-such-verb"]),
        ];
        expect_usage_errors(&ctl, cases).await
    })
    .await
}
