//! Finding 4: durations out of range. Before: tunnelctl panicked (exit
//! 101) on `--timeout 9223372036854775807s` and inside tonic on
//! `exec --timeout 300000000000y`; one tunnel opened with
//! `--idle-timeout 10001y` broke `tunnelctl -o json list` for everyone; and
//! tunneld took `--keepalive-interval 500000000000y`, then panicked its
//! connect task. Now every entry point checks one range, 0s to 365d, and
//! names the field.

use anyhow::{Context, Result, ensure};
use tonic::Code;
use tunnel_proto::pbjson_types::Duration as PbDuration;
use tunnel_proto::v1::{ExecRequest, OpenLocalForwardRequest};
use tunneld_tests::peers::TcpPeer;
use tunneld_tests::{Ctl, Sshd, Tunneld};

use crate::support::{Bed, e2e, expect_status};

const RANGE: &str = "0s to 365d";

#[tokio::test(flavor = "multi_thread")]
async fn tunnelctl_refuses_out_of_range_durations_with_usage_errors() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = Ctl::new(bed.daemon.api_addr())?;
        let cases: &[(&[&str], &str)] = &[
            (&["--timeout", "9223372036854775807s", "list"], "--timeout"),
            (&["--timeout", "18446744073709551615s", "list"], "--timeout"),
            (&["--timeout", "366d", "list"], "--timeout"),
            (
                &["exec", "--timeout", "300000000000y", "--", "true"],
                "--timeout",
            ),
            (
                &[
                    "open-local",
                    "--lport",
                    "0",
                    "--rport",
                    "9",
                    "--idle-timeout",
                    "10001y",
                ],
                "--idle-timeout",
            ),
            (
                &[
                    "open-local",
                    "--lport",
                    "0",
                    "--rport",
                    "9",
                    "--idle-timeout=-1s",
                ],
                "--idle-timeout",
            ),
        ];
        for (args, flag) in cases {
            let out = ctl.run(args.iter().copied()).await?;
            let err = out.stderr_text();
            ensure!(
                out.code() == Some(2),
                "tunnelctl {args:?}: exit {:?}, stderr {err}",
                out.code()
            );
            ensure!(
                err.contains(flag) && !err.contains("panicked"),
                "tunnelctl {args:?}: {err}"
            );
        }
        // The range's ends work.
        ctl.run(["--timeout", "365d", "list"]).await?.success()?;
        let out = ctl
            .run(["exec", "--timeout", "365d", "--", "echo", "ok"])
            .await?;
        out.success()?;
        ensure!(out.stdout_text() == "ok\n", "{:?}", out.stdout_text());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn tunneld_refuses_out_of_range_durations_in_flags_and_the_config_file() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        for flag in [
            "--keepalive-interval",
            "--reconnect-min",
            "--reconnect-max",
            "--reconnect-wait",
            "--exec-idle-timeout",
        ] {
            let refused = Tunneld::builder(&sshd)
                .arg(flag)
                .arg("500000000000y")
                .start_refused()
                .await?;
            ensure!(
                refused.status.code() == Some(2),
                "{flag}: exit {}",
                refused.status
            );
            ensure!(
                refused.stderr.contains(flag) && refused.stderr.contains(RANGE),
                "{flag}: {}",
                refused.stderr
            );
        }
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("hosts.toml");
        std::fs::write(
            &config,
            format!(
                "[hosts.far]\naddress = \"{}\"\nkeepalive_interval = \"10001y\"\n",
                sshd.address()
            ),
        )?;
        let refused = Tunneld::builder(&sshd)
            .arg("--config")
            .arg(config.display().to_string())
            .start_refused()
            .await?;
        ensure!(
            refused.stderr.contains("keepalive_interval") && refused.stderr.contains(RANGE),
            "config: {}",
            refused.stderr
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_refuses_out_of_range_durations_and_sends_only_valid_json_ones() -> Result<()> {
    e2e(async {
        let sshd = Sshd::start()?;
        let echo = TcpPeer::echo().await?;
        let bed = Bed::with(sshd, |b| b).await?;
        let open = |idle: PbDuration| OpenLocalForwardRequest {
            local_port: 0,
            remote_host: "127.0.0.1".into(),
            remote_port: echo.port().into(),
            idle_timeout: Some(idle),
            ..Default::default()
        };
        let d = |seconds, nanos| PbDuration { seconds, nanos };
        let bad = [
            (d(i64::MAX, 999_999_999), RANGE),
            (d(315_576_000_001, 0), RANGE),
            (d(365 * 86_400, 1), RANGE),
            (d(-1, 0), "negative"),
            (d(0, -1), "negative"),
            (d(i64::MIN, 0), "negative"),
            (d(1, 1_000_000_000), "nanos"),
        ];
        for (idle, needle) in bad {
            let r = bed.client.clone().open_local_forward(open(idle)).await;
            let s = expect_status(
                &format!("idle_timeout {idle:?}"),
                r,
                Code::InvalidArgument,
                &[needle],
            )?;
            ensure!(s.message().contains("idle_timeout"), "{:?}", s.message());
            let r = bed
                .client
                .clone()
                .exec(ExecRequest {
                    command: "true".into(),
                    timeout: Some(idle),
                    ..Default::default()
                })
                .await
                .map(|_| ());
            let s = expect_status(
                &format!("Exec timeout {idle:?}"),
                r,
                Code::InvalidArgument,
                &[needle],
            )?;
            ensure!(s.message().contains("timeout"), "{:?}", s.message());
        }
        // The longest allowed is kept, and every client can still list.
        bed.client
            .clone()
            .open_local_forward(open(d(365 * 86_400, 0)))
            .await
            .context("idle_timeout of 365d")?;
        let out = Ctl::new(bed.daemon.api_addr())?
            .run(["-o", "json", "list"])
            .await?;
        out.success()?;
        let json = out.json()?;
        ensure!(
            json.to_string().contains("\"31536000s\""),
            "the 365d idle timeout is not in the JSON list: {json}"
        );
        Ok(())
    })
    .await
}
