//! Findings 5, 7, 8 and 9: what a client can make tunneld write.
//! - a host field holding a newline and a fake log line, or terminal
//!   escapes, wrote them raw into the text log;
//! - 2,000 calls with a bad token wrote 2,000 warnings;
//! - each reconnect nested another `ssh_watch{…}:ssh_reconnect{…}:` into
//!   every later line of that host;
//! - a 1 MiB host name came back whole, in the error and in the log.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tonic::Code;
use tunnel_proto::v1::{CloseRequest, ExecRequest, GetInfoRequest, OpenLocalForwardRequest};
use tunneld_tests::auth::new_token;
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::wait::poll_until;
use tunneld_tests::{Credentials, Sshd};

use super::line_stats;
use crate::reconnect::{echo_ok, fast_reconnect};
use crate::support::{Bed, e2e, expect_status, local_port, open_local};

/// A line that would pass for tunneld's own in a text log.
const FORGED: &str = "2026-12-04T10:00:00.000000Z  INFO tunneld: all tunnels closed (forged)";

#[tokio::test(flavor = "multi_thread")]
async fn newlines_and_escapes_in_client_fields_never_reach_the_log_raw() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let hostile = format!("db\n{FORGED}\u{1b}[2J\u{1b}]0;owned\u{7}\r\u{202e}");
        let open = |host: &str, remote_host: &str| OpenLocalForwardRequest {
            host: host.into(),
            local_port: 0,
            remote_host: remote_host.into(),
            remote_port: 5432,
            ..Default::default()
        };
        let r = bed
            .client
            .clone()
            .open_local_forward(open(&hostile, ""))
            .await;
        let s = expect_status("a forged host", r, Code::NotFound, &["unknown SSH host"])?;
        ensure!(
            !s.message().chars().any(|c| c.is_control()) && s.message().contains("\\n2026"),
            "the error shows the value raw: {:?}",
            s.message()
        );
        let r = bed
            .client
            .clone()
            .open_local_forward(open("", &hostile))
            .await;
        expect_status(
            "a forged remote_host",
            r,
            Code::InvalidArgument,
            &["remote_host"],
        )?;
        let r = bed
            .client
            .clone()
            .close(CloseRequest {
                id: hostile.clone(),
            })
            .await;
        expect_status("a forged id", r, Code::NotFound, &["no tunnel"])?;
        let r = bed
            .client
            .clone()
            .exec(ExecRequest {
                host: hostile.clone(),
                command: format!("echo {hostile}"),
                ..Default::default()
            })
            .await
            .map(|_| ());
        expect_status(
            "a forged Exec host",
            r,
            Code::NotFound,
            &["unknown SSH host"],
        )?;
        // An Exec that runs, with a forged command line, is audited too.
        let out = tunneld_tests::exec::run(
            &bed.client,
            tunneld_tests::exec::request(format!("true '{}'", hostile.replace('\'', ""))),
        )
        .await;
        ensure!(out.error.is_none(), "{out}");

        let log = poll_until("the audit lines", Duration::from_secs(5), || async {
            let log = bed.daemon.log();
            Ok((log.matches("tunneld::audit").count() >= 5).then_some(log))
        })
        .await?;
        for line in log.lines() {
            ensure!(
                !line.starts_with("2026-12-04T10:00:00"),
                "a forged line: {line:?}"
            );
            ensure!(
                !line.chars().any(|c| c.is_control() && c != '\t'),
                "a control character reached the log: {line:?}"
            );
        }
        ensure!(!log.contains('\u{202e}'), "a bidi override reached the log");
        ensure!(
            log.contains("\\n2026-12-04T10:00:00"),
            "the forged text is not shown escaped"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_one_mib_field_is_cut_in_errors_and_in_the_log() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let huge = "h".repeat(1 << 20);
        let (lines_before, _) = line_stats(&bed.daemon.log());
        let r = bed
            .client
            .clone()
            .open_local_forward(OpenLocalForwardRequest {
                host: huge.clone(),
                local_port: 0,
                remote_port: 5432,
                ..Default::default()
            })
            .await;
        let s = expect_status("a 1 MiB host", r, Code::NotFound, &["unknown SSH host"])?;
        ensure!(
            s.message().len() < 1024,
            "the error is {} bytes",
            s.message().len()
        );
        ensure!(
            s.message().contains("1048576 bytes"),
            "{:?}",
            &s.message()[..200.min(s.message().len())]
        );
        for (what, req) in [
            (
                "remote_host",
                OpenLocalForwardRequest {
                    remote_host: huge.clone(),
                    remote_port: 5432,
                    ..Default::default()
                },
            ),
            (
                "bind_address",
                OpenLocalForwardRequest {
                    bind_address: huge.clone(),
                    remote_port: 5432,
                    ..Default::default()
                },
            ),
        ] {
            let r = bed.client.clone().open_local_forward(req).await;
            let s = expect_status(what, r, Code::InvalidArgument, &[what])?;
            ensure!(
                s.message().len() < 1024,
                "{what}: the error is {} bytes",
                s.message().len()
            );
        }
        let r = bed
            .client
            .clone()
            .close(CloseRequest { id: huge.clone() })
            .await;
        let s = expect_status("a 1 MiB id", r, Code::NotFound, &["no tunnel"])?;
        ensure!(
            s.message().len() < 1024,
            "Close: the error is {} bytes",
            s.message().len()
        );
        let r = bed
            .client
            .clone()
            .exec(ExecRequest {
                command: format!("true {huge}"),
                ..Default::default()
            })
            .await;
        // The command is too long for a shell's argument list or is run; either
        // way the answer and the log stay small.
        if let Err(s) = r {
            ensure!(
                s.message().len() < 4096,
                "Exec: the error is {} bytes",
                s.message().len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let log = bed.daemon.log();
        let (lines, longest) = line_stats(&log);
        ensure!(longest < 16 * 1024, "a log line of {longest} bytes");
        ensure!(
            lines - lines_before < 40,
            "{} new lines",
            lines - lines_before
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_refused_calls_write_a_few_lines_and_a_count() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let token = new_token();
        let bed = Bed::with(sshd, |b| b.tokens(&[("ci", &token)]).audit_log()).await?;
        let (lines_before, _) = line_stats(&bed.daemon.log());
        let wrong = bed.daemon.client_with(&Credentials::bearer(new_token()))?;
        let mut calls = tokio::task::JoinSet::new();
        for batch in 0..20 {
            let wrong = wrong.clone();
            calls.spawn(async move {
                for i in 0..100 {
                    let r = wrong.clone().get_info(GetInfoRequest {}).await;
                    match r {
                        Err(s) if s.code() == Code::Unauthenticated => {}
                        other => anyhow::bail!("call {batch}/{i}: {other:?}"),
                    }
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = calls.join_next().await {
            done??;
        }
        let log = bed.daemon.log();
        let refused_lines = log
            .lines()
            .skip(lines_before)
            .filter(|l| l.contains("Unauthenticated"))
            .count();
        ensure!(
            refused_lines <= 20,
            "{refused_lines} lines about refused calls on stderr"
        );
        // The count comes when the 10 s window ends.
        let count_line = poll_until("the suppressed count", Duration::from_secs(15), || async {
            Ok(bed
                .daemon
                .log()
                .lines()
                .find(|l| l.contains("similar lines suppressed") && l.contains("refused API calls"))
                .map(str::to_owned))
        })
        .await?;
        ensure!(count_line.contains("suppressed=19"), "{count_line}");
        // The audit file keeps every one.
        let path = bed.daemon.audit_log().context("audit log")?;
        let records = crate::security::audit_records(path)?;
        let refused = records
            .iter()
            .filter(|r| r.to_string().contains("Unauthenticated"))
            .count();
        ensure!(refused == 2000, "{refused} refused calls in the audit file");
        // The right token still works.
        bed.client
            .clone()
            .get_info(GetInfoRequest {})
            .await
            .context("GetInfo with the token")?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn log_lines_stay_the_same_length_over_repeated_reconnects() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let echo = TcpPeer::echo().await?;
        let bed = Bed::with(sshd, fast_reconnect).await?;
        let tunnel = open_local(&bed.client, "", echo.port()).await?;
        let port = local_port(&tunnel)?;
        let restored = |log: &str| log.matches("SSH connection restored").count();
        let mut lengths = Vec::new();
        for round in 1..=12 {
            bed.sshd.kill_connections()?;
            poll_until("the reconnect", Duration::from_secs(10), || async {
                Ok((restored(&bed.daemon.log()) >= round).then_some(()))
            })
            .await
            .with_context(|| format!("round {round}"))?;
            echo_ok(
                port,
                format!("round {round}").as_bytes(),
                Duration::from_secs(10),
            )
            .await?;
            let log = bed.daemon.log();
            let line = log
                .lines()
                .rfind(|l| l.contains("SSH connection restored"))
                .context("no restored line")?
                .to_owned();
            ensure!(
                line.matches("ssh_reconnect").count() <= 1
                    && line.matches("ssh_watch").count() == 0,
                "round {round}: spans nest: {line}"
            );
            lengths.push(line.len());
        }
        let (first, last) = (lengths[0], *lengths.last().unwrap());
        ensure!(
            last <= first + 8,
            "the restored line grew from {first} to {last} chars: {lengths:?}"
        );
        Ok(())
    })
    .await
}
