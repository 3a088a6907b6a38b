//! tunneld: an SSH tunnel daemon with a gRPC control API.
//!
//! Module map, top (the API) to bottom (the OS); each layer uses only the
//! ones below it (see ARCHITECTURE.md for the full picture):
//! - `server`: the API's listeners (TCP or unix socket, and when a
//!   non-loopback address is allowed), TLS, and the accept loop that caps
//!   and times out API connections.
//! - `grpc`: the thin gRPC adapter, its auth layer, API tokens and the
//!   audit log.
//! - `metrics`: Prometheus metrics and health probes on their own HTTP
//!   listener, read from the daemon at each scrape, and the API's call
//!   counts.
//! - `daemon`: the domain facade the API calls, and the watch bus.
//! - `state`: what survives a restart (persisted tunnels, ids given out),
//!   in an embedded store.
//! - [`config`]: hosts and limits, from flags and a TOML file.
//! - `tunnel`: local and remote forwards, their counters and registry;
//!   `exec`: one remote command with streamed output; `policy`: which
//!   forwards may be opened (allow_local_bind, permit_open, permit_listen).
//! - `socks`: the server side of the SOCKS4/4a/5 handshake for dynamic
//!   forwards, as a state machine fed bytes.
//! - `relay`: the byte path of one connection, drained promptly into a
//!   bounded buffer, and past it into a spill file, so one slow reader never
//!   stalls the shared SSH connection nor loses a byte.
//! - `ssh`: one shared, lazily (re)opened SSH connection per host; host key
//!   checks against known_hosts; routing of remote-forwarded channels.
//! - `sys`: OS helpers that know nothing of tunnels (listener backlog,
//!   accept back-off, private files).
//! - `logging`: the text log's escaped fields and rate-limited warnings;
//!   `error`: the one error type.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod daemon;
mod error;
mod exec;
mod grpc;
mod logging;
mod metrics;
mod policy;
mod relay;
mod server;
mod socks;
mod ssh;
mod state;
mod sys;
mod tunnel;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use daemon::Daemon;

// What the binary and embedders use: build a Config, bind the API, run.
pub use config::Config;
pub use daemon::{Lifecycle, Phase};
pub use error::{CertificateProblem, Error, HostKeyProblem, Result};
pub use server::listen::{bind as bind_api, bind_health, bind_metrics};
pub use server::{
    ApiAccess, ApiFlags, TlsFiles,
    listen::{ApiListener, Exposure, ListenAddr},
};
// Who may call the API, and the rules of what callers may open.
pub use grpc::tokens::{TokenSet, TokenStore};
pub use policy::{BindPolicy, HostPolicy};
// The log's shape: escaped fields, rate-limited warnings, the audit target.
pub use logging::{AUDIT_TARGET, Throttled, escaped_fields};

/// Parsers of files tunneld reads, for the fuzz targets and property tests;
/// not an API.
#[doc(hidden)]
pub mod parsers {
    pub use crate::ssh::{ciphers, known_hosts};

    /// The SOCKS handshake, fed bytes (the fuzz target's entry point).
    pub mod socks {
        pub use crate::socks::{Handshake, Refusal, Request, Step, Target, Version};
    }
}

/// How a running tunneld is stopped, and where it is in its life.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Cancelled to drain (the first SIGTERM): no new connections, the
    /// open ones get the config's `drain_timeout`, then tunneld stops.
    pub drain: CancellationToken,
    /// Cancelled to stop now (a second SIGTERM, or after the drain).
    pub shutdown: CancellationToken,
    /// Starting, ready, reloading, draining, stopping: for systemd's
    /// notifications and health checks.
    pub lifecycle: Lifecycle,
}

/// Listeners for operators beside the API, each off unless bound.
#[derive(Debug, Default)]
pub struct OpsListeners {
    /// Prometheus metrics and HTTP probes (bound by [`bind_metrics`]).
    pub metrics: Option<tokio::net::TcpListener>,
    /// The plaintext gRPC health service alone (bound by [`bind_health`]).
    pub health: Option<tokio::net::TcpListener>,
}

/// Runs tunneld on `listener`, open to callers as `access` allows, with
/// `config` until `shutdown` is cancelled; returns once every tunnel and SSH
/// connection is closed.
pub async fn run(
    listener: ApiListener,
    access: ApiAccess,
    config: Config,
    shutdown: CancellationToken,
) -> Result<()> {
    let control = Control {
        shutdown,
        ..Control::default()
    };
    run_with(listener, OpsListeners::default(), access, config, control).await
}

/// [`run`], drained first when `control.drain` is cancelled, its phases
/// on `control.lifecycle`; metrics and health are served on the `ops`
/// listeners given, until shutdown.
pub async fn run_with(
    listener: ApiListener,
    ops: OpsListeners,
    access: ApiAccess,
    config: Config,
    control: Control,
) -> Result<()> {
    let Control {
        drain,
        shutdown,
        lifecycle,
    } = control;
    let drain_timeout = config.drain_timeout;
    sys::systemd::spawn_watchdog(shutdown.clone());
    let daemon = Arc::new(Daemon::new(config, shutdown.clone(), lifecycle));
    // The first stop signal drains, then stops; a second cuts it short.
    tokio::spawn({
        let daemon = daemon.clone();
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = drain.cancelled() => {
                    daemon.drain(drain_timeout, shutdown.cancelled()).await;
                    shutdown.cancel();
                }
                () = shutdown.cancelled() => {}
            }
        }
    });
    // Restored while the API already answers: a caller may list them (a
    // tunnel not restored yet shows as FAILED, with why) or close them.
    tokio::spawn({
        let daemon = daemon.clone();
        async move { daemon.restore().await }
    });
    // Config reloads (SIGHUP) for as long as tunneld runs.
    tokio::spawn(daemon.clone().follow_reloads());
    let grpc = Arc::new(metrics::GrpcStats::default());
    if let Some(metrics_listener) = ops.metrics {
        let m = Arc::new(metrics::Metrics::new(daemon.clone(), &grpc));
        tokio::spawn(metrics::serve(metrics_listener, m, shutdown.clone()));
    }
    let health = server::health::following(daemon.lifecycle()).await;
    if let Some(health_listener) = ops.health {
        tokio::spawn(server::health::serve(
            health_listener,
            health.clone(),
            shutdown.clone(),
        ));
    }
    server::serve(listener, access, daemon, health, grpc, shutdown).await
}
