//! Rate-limiting a repeating log line.
//!
//! Each call site that can repeat at a client's pace (refused calls, failed
//! accepts, refused connections) owns a `static` [`Throttle`]: up to
//! `burst` lines per `window` are written; past that the lines are counted,
//! and when the window ends one line says how many were suppressed. OpenSSH
//! and nginx only have coarser tools (LogLevel, error_log level); this is
//! the "N similar messages suppressed" of the kernel's printk_ratelimit.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use tracing::Instrument;

/// A budget of lines per window for one call site.
pub struct Throttle {
    /// What the lines are about, for the "suppressed" line.
    what: &'static str,
    burst: u32,
    window: Duration,
    state: Mutex<State>,
}

struct State {
    window_start: Option<Instant>,
    written: u32,
    suppressed: u64,
    report_due: bool,
}

impl Throttle {
    /// `burst` lines per `window` about `what` (e.g. "refused API calls").
    pub const fn new(what: &'static str, burst: u32, window: Duration) -> Self {
        Throttle {
            what,
            burst,
            window,
            state: Mutex::new(State {
                window_start: None,
                written: 0,
                suppressed: 0,
                report_due: false,
            }),
        }
    }

    /// Whether this line may be written. When it may not, it is counted,
    /// and (inside a tokio runtime) the count is logged at the window's end.
    pub fn admit(&'static self) -> bool {
        let now = Instant::now();
        let Ok(mut s) = self.state.lock() else {
            return true;
        };
        match s.window_start {
            Some(start) if now.duration_since(start) < self.window => {}
            _ => {
                s.window_start = Some(now);
                s.written = 0;
            }
        }
        if s.written < self.burst {
            s.written += 1;
            return true;
        }
        s.suppressed += 1;
        if !s.report_due {
            s.report_due = true;
            let at = s.window_start.unwrap_or(now) + self.window;
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let span = tracing::trace_span!(parent: None, "log_throttle", what = self.what);
                rt.spawn(
                    async move {
                        tokio::time::sleep_until(at.into()).await;
                        self.report();
                    }
                    .instrument(span),
                );
            }
        }
        false
    }

    /// Logs and resets the count of suppressed lines.
    fn report(&self) {
        let n = match self.state.lock() {
            Ok(mut s) => {
                s.report_due = false;
                std::mem::take(&mut s.suppressed)
            }
            Err(_) => return,
        };
        if n > 0 {
            tracing::warn!(
                suppressed = n,
                "{n} similar lines suppressed in the last {}s ({})",
                self.window.as_secs(),
                self.what
            );
        }
    }

    /// Lines counted but not written since the last report.
    #[cfg(test)]
    pub fn pending(&self) -> u64 {
        self.state.lock().map(|s| s.suppressed).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static T: Throttle = Throttle::new("test lines", 3, Duration::from_millis(200));

    #[tokio::test]
    async fn a_burst_then_a_count_then_a_new_window() {
        let admitted = (0..1000).filter(|_| T.admit()).count();
        assert_eq!(admitted, 3);
        assert_eq!(T.pending(), 997);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(T.pending(), 0, "the count was reported at the window's end");
        assert!(T.admit(), "a new window writes again");
    }
}
