//! Where logs go: stderr (RUST_LOG, escaped fields, rate-limited repeats)
//! and, with `--audit-log`, a JSON file of audit lines.

use std::io::IsTerminal;

use tunneld::AUDIT_TARGET;

use crate::flags::LogFormat;

/// Logs when RUST_LOG is not set: info, less of russh, and tonic's line
/// about each failed TLS handshake (a client without a certificate, or one
/// from another CA), which it logs at debug; those, like refused calls,
/// are rate-limited on stderr ([`tunneld::Throttled`]).
const DEFAULT_LOG_FILTER: &str = "info,russh=warn,tonic::transport::server::io_stream=debug";

/// Logs to stderr (filtered by RUST_LOG) and, with `--audit-log`, audit
/// lines as JSON to that file whatever RUST_LOG says.
pub fn init_logging(format: LogFormat, audit_log: Option<&std::path::Path>) -> Result<(), String> {
    use tracing_subscriber::filter::FilterExt as _;
    use tracing_subscriber::{
        Layer as _, filter, layer::SubscriberExt as _, util::SubscriberInitExt as _,
    };
    let stderr_filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER))
            .and(tunneld::Throttled)
    };
    let stderr = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .fmt_fields(tunneld::escaped_fields())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(stderr_filter())
            .boxed(),
        // JSON escapes every string itself; the spans' fields (tunnel,
        // host, peer) are in each line's `span` and `spans`.
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_filter(stderr_filter())
            .boxed(),
    };
    let audit = match audit_log {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("--audit-log {}: {e}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_filter(
                        filter::Targets::new().with_target(AUDIT_TARGET, tracing::Level::INFO),
                    ),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(audit)
        .init();
    Ok(())
}
