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
//! usage: testbed [--no-stdin] [--token] [--tls] [--audit-log]
//!
//! TUNNELD_ADDR=127.0.0.1:PORT   gRPC address of tunneld (plain HOST:PORT, also with --tls)
//! TUNNELD_PID=…                 its pid
//! TUNNELD_LOG=…                 the file its stderr (its log) goes to
//! SSHD_PORT=…                   the sshd the default host points at
//! SSH_USER=…  SSH_IDENTITY=…  SSH_KNOWN_HOSTS=…
//! READY
//! ```
//!
//! `--token` starts tunneld with a `--token-file` holding one generated
//! token (named `testbed`) and adds:
//!
//! ```text
//! TUNNELD_TOKEN=…        the token: send "authorization: Bearer $TUNNELD_TOKEN"
//! TUNNELD_TOKEN_FILE=…   the daemon's token file (a `testbed:TOKEN` line, mode 0600)
//! ```
//!
//! `--tls` makes a CA for this run, serves TLS with a certificate valid for
//! `localhost` and `127.0.0.1` and requires client certificates signed by
//! that CA (`--tls-client-ca`: mutual TLS), and adds a client certificate
//! (subject `CN=testbed-client`, so tunneld names the caller
//! `cert:CN=testbed-client`):
//!
//! ```text
//! TUNNELD_TLS_CA=…            CA certificate (PEM) that signed tunneld's certificate
//! TUNNELD_TLS_CERT=…          client certificate (PEM)
//! TUNNELD_TLS_KEY=…           its private key (PEM, mode 0600)
//! TUNNELD_TLS_SERVER_NAME=localhost   the name to check tunneld's certificate against
//! ```
//!
//! `--audit-log` adds `--audit-log FILE` and prints `TUNNELD_AUDIT_LOG=FILE`.
//! The flags combine; the variable names are the ones tunnelctl reads.

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};
use tunneld_tests::auth::new_token;
use tunneld_tests::{Pki, Sshd, Tunneld};

const USAGE: &str = "usage: testbed [--no-stdin] [--token] [--tls] [--audit-log]";

#[tokio::main]
async fn main() -> Result<()> {
    let mut watch_stdin = true;
    let (mut token, mut tls, mut audit) = (false, false, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--no-stdin" => watch_stdin = false,
            "--token" => token = true,
            "--tls" => tls = true,
            "--audit-log" => audit = true,
            "-h" | "--help" => {
                println!(
                    "{USAGE}\n\nStarts sshd and tunneld, prints KEY=VALUE lines and READY, runs until SIGINT/SIGTERM or stdin closes.\n\
                     --token      require a generated token (prints TUNNELD_TOKEN, TUNNELD_TOKEN_FILE)\n\
                     --tls        mutual TLS with a CA of this run (prints TUNNELD_TLS_CA, TUNNELD_TLS_CERT, TUNNELD_TLS_KEY, TUNNELD_TLS_SERVER_NAME)\n\
                     --audit-log  write audit lines to a file (prints TUNNELD_AUDIT_LOG)"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} ({USAGE})"),
        }
    }

    // Signals are ours from the start, and the binaries are built before
    // sshd exists: a testbed stopped while it builds or starts leaves no
    // process behind (a signal during the start drops what was started).
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    tokio::select! {
        built = tokio::task::spawn_blocking(tunneld_tests::binaries::bin_dir) => {
            built.context("build task panicked")?.context("building tunneld")?;
        }
        // Nothing is started yet, and returning would wait for the build
        // (tokio's blocking pool): leave at once, cargo finishes alone.
        _ = sigint.recv() => std::process::exit(130),
        _ = sigterm.recv() => std::process::exit(143),
    }
    let sshd = Sshd::start().context("starting sshd")?;
    let mut builder = Tunneld::builder(&sshd);
    let secret = new_token();
    if token {
        builder = builder.tokens(&[("testbed", &secret)]);
    }
    // Held until the end: the certificates live in its temp dir.
    let pki = if tls {
        let pki = Pki::new().context("making a CA")?;
        builder = builder.mtls(&pki)?;
        Some(pki)
    } else {
        None
    };
    if audit {
        builder = builder.audit_log();
    }
    let daemon = tokio::select! {
        started = builder.start() => started.context("starting tunneld")?,
        _ = sigint.recv() => return Ok(()),
        _ = sigterm.recv() => return Ok(()),
    };

    let mut vars = vec![
        ("TUNNELD_ADDR", daemon.addr().to_string()),
        (
            "TUNNELD_PID",
            daemon.pid().map(|p| p.to_string()).unwrap_or_default(),
        ),
        ("TUNNELD_LOG", daemon.log_path().display().to_string()),
        ("SSHD_PORT", sshd.port().to_string()),
        ("SSH_USER", sshd.user().to_owned()),
        ("SSH_IDENTITY", sshd.identity().display().to_string()),
        ("SSH_KNOWN_HOSTS", sshd.known_hosts().display().to_string()),
    ];
    if token {
        vars.push(("TUNNELD_TOKEN", secret.clone()));
        let file = daemon.token_file().context("no token file")?;
        vars.push(("TUNNELD_TOKEN_FILE", file.display().to_string()));
    }
    if let Some(pki) = &pki {
        let client = pki.client("testbed-client")?;
        vars.push(("TUNNELD_TLS_CA", pki.ca_cert().display().to_string()));
        vars.push(("TUNNELD_TLS_CERT", client.cert.display().to_string()));
        vars.push(("TUNNELD_TLS_KEY", client.key.display().to_string()));
        vars.push((
            "TUNNELD_TLS_SERVER_NAME",
            tunneld_tests::auth::TLS_SERVER_NAME.to_owned(),
        ));
    }
    if let Some(path) = daemon.audit_log() {
        vars.push(("TUNNELD_AUDIT_LOG", path.display().to_string()));
    }
    for (key, value) in vars {
        println!("{key}={}", shell_quote(&value));
    }
    println!("READY");

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
    drop(pki);
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
