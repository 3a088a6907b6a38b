//! The command-line flags of the API's listener and who may call it.

// The doc comments below are clap's help text, where `[HOST:]PORT` is
// usage syntax, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::Args;

use super::listen::ListenAddr;
use crate::config::positive;

/// Where the API listens and who may call it.
#[derive(Debug, Args)]
pub struct ApiFlags {
    /// Address of the gRPC API: HOST:PORT (port 0 picks a free one), which
    /// must be loopback unless --insecure-listen is given, or unix:/PATH for
    /// a unix socket only this user can open (mode 0600).
    #[arg(long, env = "TUNNELD_LISTEN", default_value = tunnel_proto::addr::DEFAULT_API_ADDR, value_name = "ADDR")]
    pub listen: ListenAddr,

    /// Allow a non-loopback --listen address without TLS and client
    /// authentication: anyone who reaches it can run commands with your SSH
    /// keys.
    #[arg(long)]
    pub insecure_listen: bool,

    /// File of API tokens, one `NAME:TOKEN` per line; every call but health
    /// must then send `authorization: Bearer TOKEN`. Must be mode 0600.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// PEM certificate (chain) to serve the API over TLS with.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert. Must be mode 0600.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: clients must present a certificate it signed (mTLS);
    /// the certificate's subject names the caller in the audit log.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// API connections open at once; past it a new one is closed at once
    /// (tunnels are not affected). Default: an eighth of the open file
    /// limit, from 16 to 4096.
    #[arg(long, value_name = "N", value_parser = positive)]
    pub max_api_connections: Option<usize>,

    /// Serve Prometheus metrics (/metrics) and health probes (/healthz,
    /// /readyz) over plain HTTP on HOST:PORT (port 0 picks a free one).
    /// Off unless given. Loopback only unless --insecure-metrics-listen.
    #[arg(long, env = "TUNNELD_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// Allow a non-loopback --metrics-listen address. The endpoint has no
    /// TLS and no authentication: anyone who reaches it reads tunnel and
    /// host names and traffic counts (never commands or keys). Needed where
    /// Prometheus scrapes from another host, e.g. a Kubernetes pod's IP;
    /// restrict who reaches the port (NetworkPolicy, firewall) instead.
    #[arg(long, requires = "metrics_listen")]
    pub insecure_metrics_listen: bool,

    /// Serve the gRPC health service (grpc.health.v1) alone, plaintext and
    /// without tokens, on HOST:PORT (port 0 picks a free one), for probes
    /// that speak neither TLS nor tokens: Kubernetes' native gRPC probes,
    /// grpc_health_probe. Service "" is SERVING until a drain starts;
    /// "readiness" once declared and persisted tunnels were opened once.
    /// Off unless given. It tells only whether tunneld is up and ready, so
    /// any address is allowed.
    #[arg(long, env = "TUNNELD_HEALTH_LISTEN", value_name = "ADDR")]
    pub health_listen: Option<String>,
}
