//! The `tunneld` binary: parses flags, binds the API listener, wires signals,
//! and hands everything to [`tunneld::run`].
//!
//! - [`flags`]: the command line (clap);
//! - [`logs`]: stderr and the audit file;
//! - [`signals`]: SIGINT/SIGTERM stop, SIGHUP reloads.

mod flags;
mod logs;
mod signals;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use tracing::Instrument;
use tunneld::{
    ApiAccess,
    config::{Flags, expand_home},
};

use crate::{
    flags::Args,
    logs::init_logging,
    signals::{on_sighup, stop_signals},
};

/// How long shutdown may take before tunneld exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    // Before logging starts: a check writes no audit file.
    if let Some(file) = args.check_config.take() {
        return check_config(args.daemon, file);
    }
    if let Err(e) = init_logging(
        args.log_format,
        args.audit_log.as_deref().map(expand_home).as_deref(),
    ) {
        eprintln!("tunneld: {e}");
        return ExitCode::from(2);
    }

    let mut config = match tunneld::config::load(&args.daemon) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tunneld: {e}");
            return ExitCode::from(2);
        }
    };
    // Each carried connection holds a descriptor; take what the hard limit
    // allows, as OpenSSH and Go programs do.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!("cannot raise the open file limit: {e}"),
    }
    let (access, exposure) = match ApiAccess::from_flags(&args.api) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tunneld: {e}");
            return ExitCode::from(2);
        }
    };
    // SIGHUP reads the config again with the same flags; the daemon
    // applies it.
    let reloader = {
        let flags = args.daemon.clone();
        tunneld::config::Reloader::new(move || tunneld::config::load(&flags))
    };
    config.reloader = Some(reloader.clone());
    // Registered before the API listens, so no SIGHUP finds the default
    // action (exit) in place.
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hup) => {
            tokio::spawn(
                on_sighup(hup, access.auth.tokens.clone(), reloader.clone())
                    .instrument(tracing::info_span!("sighup")),
            );
        }
        Err(e) => tracing::warn!("cannot handle SIGHUP: {e}"),
    }
    let listener = match tunneld::bind_api(&args.api.listen, &exposure).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tunneld: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics = match &args.api.metrics_listen {
        Some(text) => match tunneld::bind_metrics(text, args.api.insecure_metrics_listen).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("tunneld: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let health = match &args.api.health_listen {
        Some(text) => match tunneld::bind_health(text).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("tunneld: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let addr = listener.to_string();
    // One line on stdout so scripts and tests learn the port when it was 0.
    println!("tunneld listening on {addr}");
    if let Some(m) = &metrics {
        match m.local_addr() {
            Ok(a) => println!("tunneld metrics on {a}"),
            Err(e) => tracing::warn!("metrics listener: {e}"),
        }
    }
    if let Some(h) = &health {
        match h.local_addr() {
            Ok(a) => println!("tunneld health on {a}"),
            Err(e) => tracing::warn!("health listener: {e}"),
        }
    }
    tracing::info!(%addr, hosts = ?config.hosts.keys().collect::<Vec<_>>(), default = ?config.default_host, "tunneld started");

    let control = tunneld::Control::default();
    let shutdown = control.shutdown.clone();
    tokio::spawn(
        stop_signals(control.drain.clone(), shutdown.clone())
            .instrument(tracing::info_span!("stop_signal")),
    );
    let ops = tunneld::OpsListeners { metrics, health };
    let run = tunneld::run_with(listener, ops, access, config, control);
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = run => match r {
            Ok(()) => {
                tracing::info!("tunneld stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tunneld: {e}");
                ExitCode::FAILURE
            }
        },
        () = grace => {
            tracing::warn!("shutdown took longer than {}s; exiting anyway", SHUTDOWN_GRACE.as_secs());
            ExitCode::SUCCESS
        }
    }
}

/// `--check-config FILE`: loads the configuration as `--config FILE` would,
/// without the side effects of starting (no spill directory, no listener,
/// no connection), and reports on it.
fn check_config(mut flags: Flags, file: PathBuf) -> ExitCode {
    flags.config = Some(file.clone());
    match tunneld::config::check(&flags) {
        Ok(config) => {
            println!(
                "{}: ok ({} hosts, {} tunnels)",
                file.display(),
                config.hosts.len(),
                config.tunnels.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            ExitCode::from(2)
        }
    }
}
