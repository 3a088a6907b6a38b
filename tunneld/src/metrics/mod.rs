//! Prometheus metrics and health probes on an HTTP endpoint of their own
//! (`--metrics-listen`).
//!
//! - `collector.rs`: tunnels and hosts, read from the daemon at each
//!   scrape (the snapshots `List` answers with);
//! - `process.rs`: CPU, memory and file descriptors, from `/proc/self`;
//! - `grpc_layer.rs`: the API's calls by method and code, and their
//!   durations, counted by a tower layer around the API;
//! - `http.rs`: the bounded HTTP/1.1 server of `/metrics`, `/healthz` and
//!   `/readyz`.
//!
//! Architecture invariant: the metrics read the daemon's public surface and
//! own no state of tunnels or hosts; the only series stored here are the
//! API's calls. The domain knows nothing of metrics.

mod collector;
mod grpc_layer;
mod http;
mod process;

use std::sync::Arc;

use prometheus_client::{metrics::info::Info, registry::Registry};

use crate::daemon::Daemon;

pub use grpc_layer::{GrpcMetricsLayer, GrpcStats};
pub use http::serve;

/// The commit tunneld was built from (`build.rs`), or `unknown`.
const COMMIT: &str = env!("TUNNELD_COMMIT");

/// Everything `/metrics` reports.
pub struct Metrics {
    registry: Registry,
    daemon: Arc<Daemon>,
}

impl Metrics {
    /// The metrics of `daemon`, with the API's calls from `grpc`.
    pub fn new(daemon: Arc<Daemon>, grpc: &GrpcStats) -> Self {
        let mut registry = Registry::default();
        registry.register(
            "tunneld_build",
            // prometheus-client adds the final period.
            "tunneld's version and the commit it was built from",
            Info::new([("version", env!("CARGO_PKG_VERSION")), ("commit", COMMIT)]),
        );
        grpc.register(&mut registry);
        registry.register_collector(Box::new(collector::DaemonCollector(daemon.clone())));
        registry.register_collector(Box::new(process::ProcessCollector));
        Metrics { registry, daemon }
    }

    /// The OpenMetrics text of every series.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
