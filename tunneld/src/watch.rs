//! Watching the daemon: every change to a host or tunnel, and every
//! connection a tunnel carries, published on one broadcast [`Bus`]; a
//! [`Watcher`] is one subscriber, starting from the state of everything.

use std::collections::VecDeque;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{
    ssh::HostSnapshot,
    tunnel::{TunnelEvent, TunnelSnapshot, TunnelState},
};

/// Changes buffered for a slow watcher before the oldest are dropped (it is
/// told how many it missed).
pub const BUS_BUFFER: usize = 4096;

/// One thing that changed.
#[derive(Debug, Clone)]
pub enum Change {
    /// A host's connection state changed.
    Host {
        /// The host now.
        host: HostSnapshot,
        /// Open tunnels over it.
        tunnels: u32,
    },
    /// A tunnel was opened, changed state, or was closed.
    Tunnel(TunnelSnapshot),
    /// A tunnel's connection opened or closed.
    Connection {
        /// The tunnel.
        tunnel_id: String,
        /// What happened.
        event: TunnelEvent,
    },
}

/// Where changes are published. Cloning shares it; sending with nobody
/// watching costs almost nothing.
#[derive(Clone)]
pub struct Bus(broadcast::Sender<Change>);

impl Default for Bus {
    fn default() -> Self {
        Bus(broadcast::channel(BUS_BUFFER).0)
    }
}

impl Bus {
    /// Publishes a change.
    pub fn send(&self, change: Change) {
        if self.0.receiver_count() > 0 {
            let _ = self.0.send(change);
        }
    }

    /// A receiver of every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.0.subscribe()
    }
}

/// What a watcher yields.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    /// The state of a thing at the start, or a change since.
    Change(Box<Change>),
    /// Everything that existed at the start has been yielded.
    Synced,
    /// The watcher fell behind and this many changes were dropped.
    Missed(u64),
}

/// Which changes a watcher wants.
#[derive(Debug, Clone, Default)]
pub struct WatchFilter {
    /// Only this tunnel (and its host); `None` for everything.
    pub tunnel: Option<(String, String)>,
}

impl WatchFilter {
    /// Whether a watcher with this filter gets `change`.
    pub fn wants(&self, change: &Change) -> bool {
        let Some((id, host)) = &self.tunnel else {
            return true;
        };
        match change {
            Change::Host { host: h, .. } => &h.name == host,
            Change::Tunnel(t) => &t.id == id,
            Change::Connection { tunnel_id, .. } => tunnel_id == id,
        }
    }

    /// Whether this change is the last a watcher of one tunnel gets.
    fn ends_with(&self, change: &Change) -> bool {
        matches!((&self.tunnel, change), (Some((id, _)), Change::Tunnel(t))
            if &t.id == id && t.state == TunnelState::Closed)
    }
}

/// One subscriber: the initial state, then changes as they happen.
pub struct Watcher {
    initial: VecDeque<WatchEvent>,
    rx: broadcast::Receiver<Change>,
    filter: WatchFilter,
    stop: CancellationToken,
    done: bool,
}

impl Watcher {
    /// A watcher that first yields `initial` (already filtered) then
    /// [`WatchEvent::Synced`], then what `rx` receives that `filter` wants,
    /// until `stop` is cancelled.
    pub fn new(
        initial: Vec<Change>,
        rx: broadcast::Receiver<Change>,
        filter: WatchFilter,
        stop: CancellationToken,
    ) -> Self {
        let mut initial: VecDeque<WatchEvent> = initial
            .into_iter()
            .map(|c| WatchEvent::Change(Box::new(c)))
            .collect();
        initial.push_back(WatchEvent::Synced);
        Watcher {
            initial,
            rx,
            filter,
            stop,
            done: false,
        }
    }

    /// The next event; `None` when the watched tunnel closed or tunneld stops.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        if let Some(e) = self.initial.pop_front() {
            return Some(e);
        }
        if self.done {
            return None;
        }
        loop {
            let received = tokio::select! {
                r = self.rx.recv() => r,
                () = self.stop.cancelled() => return None,
            };
            match received {
                Ok(change) if self.filter.wants(&change) => {
                    self.done = self.filter.ends_with(&change);
                    return Some(WatchEvent::Change(Box::new(change)));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("a watcher fell behind; {n} events not sent");
                    return Some(WatchEvent::Missed(n));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
