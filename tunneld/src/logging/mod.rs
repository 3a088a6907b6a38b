//! Log hygiene: what a text log line may hold, and how often a repeating
//! warning may be written.
//!
//! - [`fields`]: every field of a text line is escaped (control and
//!   invisible characters shown, not written) and cut, so no client value
//!   can forge a line or drive the terminal of someone tailing the log.
//!   Values a client sends are also clipped where they enter a message
//!   (`tunnel_proto::clip`); this is the net under all of them.
//! - [`throttle`]: a repeating warning (a refused call, a failed accept, a
//!   refused connection) is written a few times per interval, then counted,
//!   and the count is written as one "N similar lines suppressed" line.

pub mod fields;
pub mod throttle;

pub use fields::escaped_fields;
pub use throttle::Throttle;

use std::time::Duration;

use tracing::{Level, Metadata};

/// The tracing target of audit lines (the `--audit-log` file takes them).
pub const AUDIT_TARGET: &str = "tunneld::audit";

/// Where tonic logs a failed TLS handshake, one line per connection.
pub const TONIC_ACCEPT_TARGET: &str = "tonic::transport::server::io_stream";

/// tonic's lines about failed handshakes.
static TLS_FAILURES: Throttle = Throttle::new(
    "failed TLS handshakes on the API",
    5,
    Duration::from_secs(10),
);

/// Audit lines of refused calls (bad or missing token, wrong peer).
static REFUSED_CALLS: Throttle = Throttle::new(
    "refused API calls; the --audit-log file has each",
    10,
    Duration::from_secs(10),
);

/// The stderr log's filter for lines a client can repeat at its own pace
/// from outside tunneld's code (tonic's handshake failures) or that the
/// audit file must keep whole (refused calls): a few per 10 s are written,
/// the rest counted. The `--audit-log` file is not filtered.
///
/// Judged per event (`event_enabled`): a per-callsite answer would be
/// cached by tracing and never asked again.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throttled;

impl<S> tracing_subscriber::layer::Filter<S> for Throttled {
    fn enabled(
        &self,
        _meta: &Metadata<'_>,
        _cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        true
    }

    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _cx: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        admit(event.metadata())
    }
}

/// Whether a line with `meta` may be written now (see [`Throttled`]).
fn admit(meta: &Metadata<'_>) -> bool {
    if meta.target() == TONIC_ACCEPT_TARGET {
        return TLS_FAILURES.admit();
    }
    if meta.target() == AUDIT_TARGET && *meta.level() == Level::WARN {
        return REFUSED_CALLS.admit();
    }
    true
}
