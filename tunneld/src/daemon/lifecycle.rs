//! Where tunneld is in its life: starting, ready, reloading, draining,
//! stopping. One watch that the API's health service, the metrics
//! endpoint's `/healthz` and `/readyz`, and the binary's systemd
//! notifications all follow, so they never disagree.

use tokio::sync::watch;

use crate::sys::systemd::{self, Notice};

/// A phase of tunneld's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The API answers; declared and persisted tunnels are being opened
    /// for the first time.
    Starting,
    /// Every declared and persisted tunnel was tried once.
    Ready,
    /// The config file is being read again and applied.
    Reloading,
    /// Stopping: no new connection is taken, open ones get
    /// `--drain-timeout` to end.
    Draining,
    /// Closing everything.
    Stopping,
}

/// The phase, shared: cheap to clone, every clone sees every change.
#[derive(Debug, Clone)]
pub struct Lifecycle(watch::Sender<Phase>);

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle(watch::Sender::new(Phase::Starting))
    }
}

impl Lifecycle {
    /// The phase now.
    pub fn phase(&self) -> Phase {
        *self.0.borrow()
    }

    /// Follows every change from now on.
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.0.subscribe()
    }

    /// Whether tunneld serves new work: ready, or reloading once ready.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase(), Phase::Ready | Phase::Reloading)
    }

    /// Whether tunneld is on its way out (draining or stopping).
    pub fn is_stopping(&self) -> bool {
        matches!(self.phase(), Phase::Draining | Phase::Stopping)
    }

    /// Moves on to `next`. A stopping tunneld never goes back, and a
    /// reload that ends while draining leaves the drain alone.
    pub(crate) fn set(&self, next: Phase) {
        self.0.send_if_modified(|now| {
            let allowed = match (*now, next) {
                (a, b) if a == b => false,
                (Phase::Stopping, _) => false,
                (Phase::Draining, Phase::Stopping) => true,
                (Phase::Draining, _) => false,
                _ => true,
            };
            if allowed {
                // Told as it happens, never coalesced: systemd's
                // notify-reload waits for RELOADING=1 after its SIGHUP.
                let notice = match (*now, next) {
                    (_, Phase::Ready) => Some(Notice::Ready),
                    (_, Phase::Reloading) => Some(Notice::Reloading),
                    (Phase::Draining, Phase::Stopping) => None,
                    (_, Phase::Draining | Phase::Stopping) => Some(Notice::Stopping),
                    (_, Phase::Starting) => None,
                };
                *now = next;
                if let Some(n) = notice {
                    systemd::notify(n);
                }
            }
            allowed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_never_goes_back() {
        let l = Lifecycle::default();
        assert_eq!(l.phase(), Phase::Starting);
        assert!(!l.is_ready());
        l.set(Phase::Ready);
        l.set(Phase::Reloading);
        assert!(l.is_ready());
        l.set(Phase::Draining);
        l.set(Phase::Ready); // a reload ending during the drain
        assert_eq!(l.phase(), Phase::Draining);
        assert!(l.is_stopping() && !l.is_ready());
        l.set(Phase::Stopping);
        l.set(Phase::Draining);
        assert_eq!(l.phase(), Phase::Stopping);
    }
}
