//! `tunnelctl exec` with stdin streamed as `ssh host cmd` streams it: any
//! size at bounded memory, line by line when the command answers line by
//! line, signals passed on; and `-t`/`tunnelctl ssh` on a real terminal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tunneld_tests::Sshd;
use tunneld_tests::data::{hex, random_bytes};
use tunneld_tests::procs::rss_kib;
use tunneld_tests::pty::{Pty, PtyChild};

use super::ctl;
use crate::support::{Bed, e2e, ssh};

/// What the large-stdin test pipes through.
const LARGE_STDIN: usize = 1 << 30;

/// How much tunneld's resident memory may grow while it passes
/// [`LARGE_STDIN`] on, over its RSS just before.
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn one_gib_of_stdin_reaches_sha256sum_intact_at_bounded_memory() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let ctl = ctl(&bed)?;
        // Warm: the Exec connection exists and the daemon has settled.
        ctl.run(["exec", "--", "true"]).await?.success()?;
        let pid = bed.daemon.pid().context("tunneld is not running")?;
        let idle = rss_kib(pid).context("reading tunneld's RSS")?;
        let peak = Arc::new(AtomicU64::new(idle));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, done) = (peak.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    if let Some(rss) = rss_kib(pid) {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };

        let (mut cmd, _) = ctl.command(["exec", "--", "sha256sum"]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().context("starting tunnelctl exec")?;
        let mut stdin = child.stdin.take().context("stdin not piped")?;
        let writer = async move {
            // Each MiB a different window of 2 MiB of random bytes: cheap to
            // make, and a block lost, repeated or reordered changes the digest.
            const BLOCK: usize = 1 << 20;
            let source = random_bytes(2 * BLOCK);
            let mut hasher = Sha256::new();
            for i in 0..LARGE_STDIN / BLOCK {
                let at = (i * 7919) % BLOCK;
                let block = &source[at..at + BLOCK];
                hasher.update(block);
                stdin.write_all(block).await.context("writing stdin")?;
            }
            drop(stdin);
            Ok::<_, anyhow::Error>(hex(&hasher.finalize()))
        };
        let (want, out) = tokio::join!(writer, child.wait_with_output());
        done.store(true, Ordering::Relaxed);
        sampler.await?;
        let (want, out) = (want?, out?);
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "tunnelctl exec: {:?}, stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            stdout == format!("{want}  -\n"),
            "remote sha256sum {stdout:?}, local {want}"
        );
        let grown = peak.load(Ordering::Relaxed).saturating_sub(idle);
        ensure!(
            grown < RSS_GROWTH_LIMIT_KIB,
            "tunneld's RSS grew by {grown} KiB (idle {idle} KiB) while 1 GiB of stdin went through"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn each_line_comes_back_before_the_next_is_written() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let (mut cmd, _) = ctl(&bed)?.command(["exec", "--", "cat"]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().context("starting tunnelctl exec -- cat")?;
        let mut stdin = child.stdin.take().context("stdin not piped")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout not piped")?).lines();
        for i in 0..100 {
            let line = format!("line {i}: {}", "x".repeat(i));
            stdin.write_all(format!("{line}\n").as_bytes()).await?;
            stdin.flush().await?;
            let echoed = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .with_context(|| format!("line {i} did not come back while stdin stayed open"))??;
            ensure!(
                echoed.as_deref() == Some(line.as_str()),
                "line {i}: {echoed:?}"
            );
        }
        drop(stdin);
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
        ensure!(status.success(), "{status:?}");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_is_passed_to_the_command_and_its_exit_tells() -> Result<()> {
    e2e(async {
        // sshd delivers signals only to sessions under privilege separation,
        // which root's are not.
        let sshd = Sshd::builder().unprivileged_login().start()?;
        let bed = Bed::with(sshd, |b| b).await?;
        let mut child = ctl(&bed)?
            .spawn(["exec", "--", "echo started; exec sleep 60"])
            .await?;
        let line = child.expect_line(Duration::from_secs(20)).await?;
        ensure!(line == "started", "first line {line:?}");
        child.signal(Signal::SIGINT)?;
        let status = child.wait(Duration::from_secs(20)).await?;
        ensure!(
            status.code() == Some(130),
            "exit {status:?}, want 130 (128 + INT); {}",
            child.describe()
        );
        ensure!(
            child.stderr_text().contains("killed by signal INT"),
            "{}",
            child.describe()
        );
        Ok(())
    })
    .await
}

/// How long a terminal test waits for any one thing.
const TERMINAL_WAIT: Duration = Duration::from_secs(20);

/// `tunnelctl ARGS...` against the bed's daemon, on `pty` as its terminal.
fn on_terminal(bed: &Bed, pty: &Pty, args: &[&str]) -> Result<PtyChild> {
    let (cmd, _) = ctl(bed)?.command(args);
    pty.spawn(cmd.as_std())
}

#[tokio::test(flavor = "multi_thread")]
async fn dash_t_gives_a_terminal_of_the_local_size_as_ssh_t_does() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let command = "tty; stty size";
        let pty = Pty::open(100, 37)?;
        let before = pty.stty_g()?;
        let mut child = on_terminal(&bed, &pty, &["exec", "-t", "--", command])?;
        let status = child.wait(TERMINAL_WAIT)?;
        let ours = String::from_utf8_lossy(&pty.output()).into_owned();
        ensure!(
            status.code() == Some(0),
            "exit {status:?}; terminal: {ours:?}"
        );
        ensure!(ours.contains("/dev/pts/"), "tty printed {ours:?}");
        ensure!(ours.contains("37 100\r\n"), "stty size printed {ours:?}");
        ensure!(
            pty.stty_g()? == before,
            "the terminal's mode was not restored after tunnelctl exec -t"
        );

        // OpenSSH's client on a terminal of the same size prints the same.
        let theirs_pty = Pty::open(100, 37)?;
        let mut ssh = ssh(&bed.sshd, bed.sshd.identity(), bed.sshd.known_hosts());
        ssh.args(["-t", command]);
        let status = theirs_pty.spawn(ssh.as_std())?.wait(TERMINAL_WAIT)?;
        let theirs = String::from_utf8_lossy(&theirs_pty.output()).into_owned();
        ensure!(status.code() == Some(0), "ssh -t: {status:?}; {theirs:?}");
        ensure!(
            size_line(&ours) == size_line(&theirs) && theirs.contains("/dev/pts/"),
            "tunnelctl printed {ours:?}, ssh -t printed {theirs:?}"
        );
        Ok(())
    })
    .await
}

/// Waits for `child` to exit with `code`, then checks that the terminal's
/// mode is `before` again: tunnelctl restores it on every way out.
fn ends_restored(
    child: &mut PtyChild,
    pty: &Pty,
    before: &str,
    code: i32,
    after: &str,
) -> Result<()> {
    let status = child.wait(TERMINAL_WAIT)?;
    ensure!(
        status.code() == Some(code),
        "after {after}: exit {status:?}, want {code}; terminal: {:?}",
        String::from_utf8_lossy(&pty.output())
    );
    ensure!(
        pty.stty_g()? == before,
        "the terminal's mode was not restored after {after}"
    );
    Ok(())
}

/// The `ROWS COLUMNS` line `stty size` printed.
fn size_line(out: &str) -> Option<&str> {
    out.split("\r\n")
        .find(|l| l.split(' ').count() == 2 && l.split(' ').all(|w| w.parse::<u32>().is_ok()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resize_reaches_the_remote_and_ctrl_c_interrupts_it() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let pty = Pty::open(80, 24)?;
        let before = pty.stty_g()?;
        let mut child = on_terminal(
            &bed,
            &pty,
            &[
                "exec",
                "-t",
                "--",
                "trap 'stty size' WINCH; echo ready; while :; do sleep 0.1; done",
            ],
        )?;
        pty.wait_for(b"ready", TERMINAL_WAIT)?;
        // The local terminal is raw while the command runs, so keys reach the
        // remote side as they are (this is what the check below undoes).
        ensure!(
            pty.stty_g()? != before,
            "the terminal was not put in raw mode"
        );
        pty.resize(120, 40)?;
        pty.wait_for(b"40 120", TERMINAL_WAIT)?;
        // Ctrl-C is a key on a terminal: the remote terminal turns it into
        // SIGINT for the command, as under ssh -t.
        pty.write(b"\x03")?;
        ends_restored(&mut child, &pty, &before, 130, "Ctrl-C")?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnelctl_ssh_opens_a_login_shell_that_exits_with_its_code() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        let pty = Pty::open(80, 24)?;
        let before = pty.stty_g()?;
        let mut child = on_terminal(&bed, &pty, &["ssh"])?;
        pty.write(b"tty; echo in-the-shell-$((6*7))\r")?;
        pty.wait_for(b"in-the-shell-42", TERMINAL_WAIT)?;
        ensure!(
            String::from_utf8_lossy(&pty.output()).contains("/dev/pts/"),
            "the login shell has no terminal: {:?}",
            String::from_utf8_lossy(&pty.output())
        );
        pty.write(b"exit 3\r")?;
        ends_restored(&mut child, &pty, &before, 3, "the shell")?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_gets_no_terminal_unless_asked_as_with_ssh() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        // ssh's rule: with a command, no terminal unless -t; -T never.
        for args in [&["exec", "--", "tty"][..], &["exec", "-T", "--", "tty"]] {
            let pty = Pty::open(80, 24)?;
            let status = on_terminal(&bed, &pty, args)?.wait(TERMINAL_WAIT)?;
            let out = String::from_utf8_lossy(&pty.output()).into_owned();
            ensure!(
                status.code() == Some(1) && out.contains("not a tty"),
                "{args:?}: exit {status:?}, printed {out:?}"
            );
        }
        // -t with stdin not a terminal: ssh's warning, and no terminal.
        let out = ctl(&bed)?.run(["exec", "-t", "--", "tty"]).await?;
        out.expect_code(1)?;
        ensure!(
            out.stderr_text()
                .contains("Pseudo-terminal will not be allocated because stdin is not a terminal."),
            "{out}"
        );
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_terminal_is_restored_on_a_signal_and_on_a_lost_daemon() -> Result<()> {
    e2e(async {
        let bed = Bed::start().await?;
        // tunnelctl killed (TERM) while the remote command runs on a terminal.
        let pty = Pty::open(80, 24)?;
        let before = pty.stty_g()?;
        let mut child = on_terminal(
            &bed,
            &pty,
            &["exec", "-t", "--", "echo ready; exec sleep 60"],
        )?;
        pty.wait_for(b"ready", TERMINAL_WAIT)?;
        ensure!(
            pty.stty_g()? != before,
            "the terminal was not put in raw mode"
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            Signal::SIGTERM,
        )?;
        ends_restored(&mut child, &pty, &before, 143, "SIGTERM")?;

        // tunneld itself goes away mid-command: an error, and the terminal
        // is restored before it is printed.
        let pty = Pty::open(80, 24)?;
        let before = pty.stty_g()?;
        let mut child = on_terminal(
            &bed,
            &pty,
            &["exec", "-t", "--", "echo ready; exec sleep 60"],
        )?;
        pty.wait_for(b"ready", TERMINAL_WAIT)?;
        bed.daemon.signal(Signal::SIGKILL)?;
        ends_restored(&mut child, &pty, &before, 255, "the call failed")?;
        Ok(())
    })
    .await
}
