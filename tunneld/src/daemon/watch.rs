//! Watching the daemon: every change to a host or tunnel, and every
//! connection a tunnel carries, published on one broadcast [`Bus`]; a
//! [`Watcher`] is one subscriber, starting from the state of everything.

use std::{collections::VecDeque, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, broadcast};
use tokio_util::sync::CancellationToken;

use super::HostStatus;
use crate::{
    logging::Throttle,
    tunnel::{TunnelEvent, TunnelObserver, TunnelSnapshot, TunnelState},
};

/// Changes buffered for a slow watcher before the oldest are dropped (it is
/// told how many it missed).
pub const BUS_BUFFER: usize = 4096;

/// Watchers falling behind: one line per lagging read would repeat at the
/// pace of every unread stream.
static LAGGING: Throttle = Throttle::new("watchers that fell behind", 5, Duration::from_secs(10));

/// One thing that changed.
#[derive(Debug, Clone)]
pub enum Change {
    /// A host was added or its connection state changed.
    Host(HostStatus),
    /// A host was removed (after its tunnels): the last change about it.
    HostRemoved(HostStatus),
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

impl TunnelObserver for Bus {
    fn tunnel_changed(&self, tunnel: TunnelSnapshot) {
        self.send(Change::Tunnel(tunnel));
    }

    fn connection_event(&self, tunnel_id: &str, event: &TunnelEvent) {
        // Built only when someone listens.
        if self.0.receiver_count() > 0 {
            self.send(Change::Connection {
                tunnel_id: tunnel_id.to_string(),
                event: event.clone(),
            });
        }
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
            Change::Host(h) | Change::HostRemoved(h) => &h.host.name == host,
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

/// The tunnel opened after a sequence number, with its own; how a watcher
/// walks the open tunnels one at a time.
pub type NextTunnel = Box<dyn Fn(u64) -> Option<(u64, TunnelSnapshot)> + Send + Sync>;

/// One subscriber: the initial state, then changes as they happen.
///
/// The initial state is taken as it is sent, one tunnel at a time, never
/// copied whole for each watcher: a thousand watchers of a thousand
/// tunnels hold a cursor each, not a million snapshots. A tunnel that opens
/// or closes meanwhile is sent as a change too (seen twice, never missed).
pub struct Watcher {
    initial: VecDeque<Change>,
    /// Walks the open tunnels from the last one sent; `None` once done.
    tunnels: Option<(NextTunnel, u64)>,
    synced: bool,
    rx: broadcast::Receiver<Change>,
    filter: WatchFilter,
    stop: CancellationToken,
    done: bool,
    /// The watcher's place under `--max-watchers`.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Watcher {
    /// A watcher that first yields `initial` (already filtered), then the
    /// tunnels `next_tunnel` walks (if any), then [`WatchEvent::Synced`],
    /// then what `rx` receives that `filter` wants, until `stop` is
    /// cancelled.
    pub fn new(
        initial: Vec<Change>,
        next_tunnel: Option<NextTunnel>,
        rx: broadcast::Receiver<Change>,
        filter: WatchFilter,
        stop: CancellationToken,
    ) -> Self {
        Watcher {
            initial: initial.into(),
            tunnels: next_tunnel.map(|f| (f, 0)),
            synced: false,
            rx,
            filter,
            stop,
            done: false,
            _slot: None,
        }
    }

    /// Holds `slot` (a place under a cap) as long as the watcher lives.
    pub fn holding(mut self, slot: OwnedSemaphorePermit) -> Self {
        self._slot = Some(slot);
        self
    }

    /// The next event; `None` when the watched tunnel closed or tunneld stops.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        if let Some(c) = self.initial.pop_front() {
            return Some(WatchEvent::Change(Box::new(c)));
        }
        if let Some((next, after)) = &mut self.tunnels {
            match next(*after) {
                Some((seq, t)) => {
                    *after = seq;
                    return Some(WatchEvent::Change(Box::new(Change::Tunnel(t))));
                }
                None => self.tunnels = None,
            }
        }
        if !self.synced {
            self.synced = true;
            return Some(WatchEvent::Synced);
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
                    if LAGGING.admit() {
                        tracing::warn!("a watcher fell behind; {n} events not sent");
                    }
                    return Some(WatchEvent::Missed(n));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}
