//! What an accept loop does when accepting fails: wait, never spin.
//!
//! Out of descriptors (EMFILE, ENFILE) or memory (ENOBUFS, ENOMEM), the
//! pending connection stays in the backlog and `accept` fails again at
//! once: a loop that retries at once spins a core and, if it logs each
//! failure, floods the log. Like nginx (which disables accept for 500 ms)
//! and Go's net/http (5 ms doubling to 1 s), each loop waits 10 ms, doubling
//! to 1 s while the failures go on, and logs at most one line per second
//! with the count. A failure that concerns only the connection being
//! accepted (the peer reset it first) is skipped at once.

use std::{
    io,
    time::{Duration, Instant},
};

/// First wait after a failed accept.
pub const FIRST_WAIT: Duration = Duration::from_millis(10);
/// Longest wait between accepts while they keep failing.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// Shortest time between two log lines about failed accepts.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// One accept loop's state; `what` names the listener in log lines.
#[derive(Debug)]
pub struct AcceptBackoff {
    what: &'static str,
    wait: Duration,
    failed: u64,
    last_log: Option<Instant>,
}

impl AcceptBackoff {
    /// A loop over the listener that `what` names ("the API",
    /// "the forward's port").
    pub fn new(what: &'static str) -> Self {
        AcceptBackoff {
            what,
            wait: FIRST_WAIT,
            failed: 0,
            last_log: None,
        }
    }

    /// An accept succeeded: the next failure waits [`FIRST_WAIT`] again.
    pub fn accepted(&mut self) {
        self.wait = FIRST_WAIT;
    }

    /// An accept failed with `e`: how long to wait before the next (zero
    /// when only that one connection was lost). Logs at most once per
    /// second, with the count since the last line.
    pub fn failed(&mut self, e: &io::Error) -> Duration {
        if connection_only(e) {
            return Duration::ZERO;
        }
        self.failed += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            let hint = if is_out_of_descriptors(e) {
                "; tunneld is out of file descriptors: raise its limit (LimitNOFILE=, ulimit -n) or lower --max-api-connections / --max-connections"
            } else {
                ""
            };
            tracing::warn!(
                failures = self.failed,
                wait_ms = self.wait.as_millis() as u64,
                "cannot accept on {}: {e}{hint}",
                self.what
            );
            self.failed = 0;
            self.last_log = Some(now);
        }
        let wait = self.wait;
        self.wait = (self.wait * 2).min(MAX_WAIT);
        wait
    }
}

/// Whether `e` is EMFILE or ENFILE.
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
            || code == rustix::io::Errno::NFILE.raw_os_error()
    )
}

/// Failures that lose only the connection being accepted.
fn connection_only(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_a_second_and_reset_on_success() {
        let emfile = io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        assert!(is_out_of_descriptors(&emfile));
        let mut b = AcceptBackoff::new("test");
        let waits: Vec<u128> = (0..9).map(|_| b.failed(&emfile).as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.accepted();
        assert_eq!(b.failed(&emfile), FIRST_WAIT);
        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(b.failed(&reset), Duration::ZERO);
    }
}
