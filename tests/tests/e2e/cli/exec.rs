//! `tunnelctl exec`: the remote command's stdout and stderr on the local
//! ones as they arrive, its exit code (128+N for a signal) as tunnelctl's,
//! stdin piped through byte for byte, and the command line built as `ssh`
//! builds it — checked against the real OpenSSH client.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tunneld_tests::data::random_bytes;

use super::ctl;
use crate::support::{Bed, e2e, ssh};

#[tokio::test(flavor = "multi_thread")]
async fn stdout_and_stderr_land_on_their_own_streams() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let out = ctl(&bed)?
            .run(["exec", "--", "echo to-out; echo to-err >&2; echo more-out"])
            .await?;
        out.success()?;
        ensure!(out.stdout_text() == "to-out\nmore-out\n", "stdout: {out}");
        ensure!(out.stderr_text() == "to-err\n", "stderr: {out}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_code_is_the_remote_code() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        let out = ctl.run(["exec", "--", "echo before; exit 7"]).await?;
        out.expect_code(7)?;
        ensure!(out.stdout_text() == "before\n", "stdout: {out}");
        ensure!(
            out.stderr.is_empty(),
            "a plain exit 7 printed on stderr: {out}"
        );
        ctl.run(["exec", "--", "true"]).await?.success()?;
        ctl.run(["exec", "--", "exit 255"])
            .await?
            .expect_code(255)?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signal_exits_128_plus_its_number() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        let out = ctl.run(["exec", "--", "kill -TERM $$"]).await?;
        out.expect_code(143)?;
        let out = ctl.run(["exec", "--", "kill -KILL $$"]).await?;
        out.expect_code(137)?;
        let out = ctl.run(["exec", "--", "kill -HUP $$"]).await?;
        out.expect_code(129)?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_line_shows_before_the_command_ends() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        // One argument: the remote shell runs `sh -c '…'` as typed.
        let mut child = ctl(&bed)?
            .spawn(["exec", "--", "sh -c 'echo a; sleep 3; echo b'"])
            .await?;
        let first = child.expect_line(Duration::from_secs(10)).await?;
        let first_at = child.elapsed();
        ensure!(first == "a", "first line {first:?}");
        ensure!(
            child.try_wait()?.is_none(),
            "tunnelctl had already exited when `a` was read ({first_at:?}): output was not streamed"
        );
        let second = child.expect_line(Duration::from_secs(10)).await?;
        let second_at = child.elapsed();
        ensure!(second == "b", "second line {second:?}");
        ensure!(
            second_at >= first_at + Duration::from_secs(2),
            "`a` at {first_at:?} and `b` at {second_at:?}: `a` was held back until the end"
        );
        let status = child.wait(Duration::from_secs(10)).await?;
        ensure!(
            status.code() == Some(0),
            "exit status {status}; stderr {:?}",
            child.stderr_text()
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_is_piped_through_cat_byte_for_byte() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        // Random bytes: every value, NULs and invalid UTF-8 included.
        let data = random_bytes(300 * 1024);
        let out = ctl(&bed)?
            .run_with_stdin(["exec", "--", "cat"], &data)
            .await?;
        ensure!(out.code() == Some(0), "exit: {}", out.status);
        ensure!(
            out.stdout == data,
            "cat returned {} bytes, {} sent (first difference at {:?})",
            out.stdout.len(),
            data.len(),
            out.stdout.iter().zip(&data).position(|(a, b)| a != b)
        );
        ensure!(out.stderr.is_empty(), "stderr: {}", out.stderr_text());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn no_stdin_flag_keeps_stdin_local() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let out = ctl(&bed)?
            .run_with_stdin(
                ["exec", "-n", "--", "cat; echo eof-seen"],
                b"must not arrive\n",
            )
            .await?;
        out.success()?;
        ensure!(out.stdout_text() == "eof-seen\n", "stdout: {out}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn env_flags_are_visible_to_the_command() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let tricky = r#"it's "quoted" $HOME `id` ;|& a=b"#;
        let out = ctl(&bed)?
            .run([
                "exec",
                "-e",
                "FOO=bar",
                "--env",
                &format!("TRICKY={tricky}"),
                "--",
                r#"echo "$FOO"; printf '%s' "$TRICKY""#,
            ])
            .await?;
        out.success()?;
        ensure!(
            out.stdout_text() == format!("bar\n{tricky}"),
            "stdout: {out}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn arguments_are_joined_as_ssh_joins_them() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        // Double spaces inside an argument, a variable, quotes kept for the
        // remote shell and an empty argument: ssh joins with single spaces
        // and the remote shell splits again.
        let args = ["printf", "%s,", "a  b", "$USER", "\"x  y\"", ""];
        let mut full = vec!["exec", "--"];
        full.extend(args);
        let ours = ctl(&bed)?.run(full).await?;
        ours.success()?;

        let mut cmd = ssh(&bed.sshd, bed.sshd.identity(), bed.sshd.known_hosts());
        cmd.args(args);
        let theirs = tokio::time::timeout(Duration::from_secs(20), cmd.output())
            .await
            .context("ssh took longer than 20 s")?
            .context("running ssh")?;
        ensure!(theirs.status.success(), "ssh failed: {theirs:?}");
        ensure!(
            ours.stdout == theirs.stdout,
            "tunnelctl printed {:?}, ssh printed {:?}",
            ours.stdout_text(),
            String::from_utf8_lossy(&theirs.stdout)
        );
        let user = bed.sshd.user();
        ensure!(
            ours.stdout_text() == format!("a,b,{user},x  y,"),
            "stdout {:?}",
            ours.stdout_text()
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_timeout_keeps_the_output_and_exits_255() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let out = ctl(&bed)?
            .run(["exec", "--timeout", "1s", "--", "echo started; sleep 30"])
            .await?;
        out.expect_code(255)?;
        ensure!(
            out.took < Duration::from_secs(10),
            "a 1 s timeout took {:?}",
            out.took
        );
        ensure!(
            out.stdout_text() == "started\n",
            "output before the timeout lost: {out}"
        );
        out.error_line()?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_host_exits_255_naming_it() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let out = ctl(&bed)?
            .run(["exec", "--host", "no-such-host", "--", "true"])
            .await?;
        out.expect_code(255)?;
        let line = out.error_line()?;
        ensure!(
            line.contains("no-such-host"),
            "error line {line:?} does not name the host"
        );
        Ok(())
    })
    .await
}
