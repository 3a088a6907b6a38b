//! systemd's service notifications (`sd_notify`, through the sd-notify
//! crate): `READY=1`, `RELOADING=1` with `MONOTONIC_USEC` (what
//! `Type=notify-reload` waits for after its SIGHUP), `STOPPING=1`, and
//! `WATCHDOG=1` at half of `WatchdogSec`. Without `NOTIFY_SOCKET` in the
//! environment (not started by systemd with `Type=notify*`) nothing is
//! sent. A failed send is logged once per kind and never stops tunneld.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// What tunneld tells systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Started, or done reloading.
    Ready,
    /// A reload began.
    Reloading,
    /// Stopping began.
    Stopping,
}

/// Whether systemd listens (`NOTIFY_SOCKET` is set).
fn wanted() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Sends `notice` to systemd, if it listens.
pub fn notify(notice: Notice) {
    if !wanted() {
        return;
    }
    let sent = match notice {
        Notice::Ready => sd_notify::notify(false, &[NotifyState::Ready]),
        Notice::Reloading => NotifyState::monotonic_usec_now()
            .and_then(|now| sd_notify::notify(false, &[NotifyState::Reloading, now])),
        Notice::Stopping => sd_notify::notify(false, &[NotifyState::Stopping]),
    };
    if let Err(e) = sent {
        tracing::warn!("cannot tell systemd {notice:?} (NOTIFY_SOCKET): {e}");
    }
}

/// Pings systemd's watchdog at half of `WatchdogSec` until `stop`, when
/// the unit sets one; a runtime too wedged to run this task misses its
/// pings and systemd restarts tunneld.
pub fn spawn_watchdog(stop: CancellationToken) {
    let mut usec = 0;
    if !wanted() || !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let every = Duration::from_micros(usec / 2);
    tracing::info!("systemd watchdog: pinging every {every:?}");
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = sd_notify::notify(false, &[NotifyState::Watchdog]) {
                tracing::warn!("cannot ping systemd's watchdog: {e}");
                return;
            }
        }
    });
}
