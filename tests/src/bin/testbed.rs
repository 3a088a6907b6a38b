//! `testbed`: an sshd and a tunneld running against it, for scripts and the
//! other languages' test suites.
//!
//! Prints shell-sourceable `KEY=VALUE` lines on stdout, then `READY`, and
//! keeps both running until SIGINT, SIGTERM or end of stdin (unless
//! `--no-stdin`: then signals only, for `testbed --no-stdin &` in a shell
//! whose background jobs get /dev/null as stdin). Everything is stopped and
//! removed on the way out.
//!
//! ```text
//! TUNNELD_ADDR=127.0.0.1:PORT   gRPC address of tunneld
//! TUNNELD_PID=…                 its pid
//! SSHD_PORT=…                   the sshd the default host points at
//! SSH_USER=…  SSH_IDENTITY=…  SSH_KNOWN_HOSTS=…
//! READY
//! ```

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};
use tunneld_tests::{Sshd, Tunneld};

#[tokio::main]
async fn main() -> Result<()> {
    let mut watch_stdin = true;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--no-stdin" => watch_stdin = false,
            "-h" | "--help" => {
                println!(
                    "usage: testbed [--no-stdin]\n\nStarts sshd and tunneld, prints KEY=VALUE lines and READY, runs until SIGINT/SIGTERM or stdin closes."
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (usage: testbed [--no-stdin])"),
        }
    }

    let sshd = Sshd::start().context("starting sshd")?;
    let daemon = Tunneld::start(&sshd).await.context("starting tunneld")?;

    let vars = [
        ("TUNNELD_ADDR", daemon.addr().to_string()),
        (
            "TUNNELD_PID",
            daemon.pid().map(|p| p.to_string()).unwrap_or_default(),
        ),
        ("SSHD_PORT", sshd.port().to_string()),
        ("SSH_USER", sshd.user().to_owned()),
        ("SSH_IDENTITY", sshd.identity().display().to_string()),
        ("SSH_KNOWN_HOSTS", sshd.known_hosts().display().to_string()),
    ];
    for (key, value) in vars {
        println!("{key}={}", shell_quote(&value));
    }
    println!("READY");

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // Stdin is read on a plain thread, not tokio's blocking pool: a read
    // cannot be cancelled, and the runtime waits for its pool on exit, so a
    // SIGTERM would otherwise hang until stdin closed. The thread dies with
    // the process.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    if watch_stdin {
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            let mut stdin = std::io::stdin();
            while matches!(std::io::Read::read(&mut stdin, &mut buf), Ok(n) if n > 0) {}
            let _ = closed_tx.send(());
        });
    }
    let stdin_closed = async {
        if closed_rx.await.is_err() {
            // Not watching: never.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
        () = stdin_closed => {}
    }
    // The daemon first (it holds connections to sshd), gracefully; a daemon
    // that does not stop in time is killed by Drop.
    let mut daemon = daemon;
    if let Err(e) = daemon.terminate().await {
        eprintln!("testbed: {e:#}");
    }
    drop(daemon);
    drop(sshd);
    Ok(())
}

/// Single-quotes `s` for a POSIX shell when it holds anything but safe
/// characters.
fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
