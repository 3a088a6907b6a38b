//! A tunnel tied to a caller: it lives as long as its [`Attachment`], which
//! also hands the caller the tunnel's events. Dropping the attachment (the
//! caller went away) closes the tunnel.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tracing::Instrument;

use super::{Registry, Tunnel, TunnelSnapshot, TunnelState, events::TunnelEvent};

/// What an attached caller sees next.
#[derive(Debug, Clone)]
pub enum AttachmentEvent {
    /// A connection opened or closed.
    Tunnel(TunnelEvent),
    /// The tunnel changed state; after `Closed` nothing follows.
    StateChanged(Box<TunnelSnapshot>),
    /// The caller read too slowly and events were dropped (counted in the
    /// log; the attached stream has no field for it).
    Missed,
}

/// Owns an attached tunnel: yields its events and closes it when dropped.
pub struct Attachment {
    tunnel: Arc<Tunnel>,
    registry: Arc<Registry>,
    events: broadcast::Receiver<TunnelEvent>,
    state: watch::Receiver<(TunnelState, String)>,
    finished: bool,
}

impl Attachment {
    /// Attaches to `tunnel`, reading `events` (subscribed before the tunnel
    /// started, so no connection goes unreported).
    pub(crate) fn new(
        tunnel: Arc<Tunnel>,
        events: broadcast::Receiver<TunnelEvent>,
        registry: Arc<Registry>,
    ) -> Self {
        let state = tunnel.watch_state();
        Attachment {
            tunnel,
            registry,
            events,
            state,
            finished: false,
        }
    }

    /// The tunnel as it is now.
    pub fn snapshot(&self) -> TunnelSnapshot {
        self.tunnel.snapshot()
    }

    /// The next event; `None` once the tunnel is closed and that was told.
    pub async fn next(&mut self) -> Option<AttachmentEvent> {
        if self.finished {
            return None;
        }
        // Connection events first: a tunnel reports its connections' ends
        // before it reports itself closed.
        tokio::select! {
            biased;
            event = self.events.recv() => match event {
                Ok(event) => Some(AttachmentEvent::Tunnel(event)),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(tunnel = %self.tunnel.id, missed = n, "attached caller reads too slowly; connection events dropped");
                    Some(AttachmentEvent::Missed)
                }
                // The tunnel holds the sender, and so do we through it.
                Err(broadcast::error::RecvError::Closed) => self.state_changed().await,
            },
            changed = self.state.changed() => match changed {
                Ok(()) => {
                    let state = self.state.borrow_and_update().0;
                    self.finished = state == TunnelState::Closed;
                    Some(AttachmentEvent::StateChanged(Box::new(self.tunnel.snapshot())))
                }
                Err(_) => {
                    self.finished = true;
                    None
                }
            },
        }
    }

    async fn state_changed(&mut self) -> Option<AttachmentEvent> {
        let _ = self.state.changed().await;
        self.finished = true;
        Some(AttachmentEvent::StateChanged(Box::new(
            self.tunnel.snapshot(),
        )))
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // Still registered: nobody closed it, so the caller's leaving does.
        let Some(tunnel) = self.registry.remove(&self.tunnel.id) else {
            return;
        };
        tracing::info!(tunnel = %tunnel.id, "attached caller went away; closing the tunnel");
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let span = tracing::info_span!(parent: None, "attached_close", tunnel = %tunnel.id);
                rt.spawn(async move { tunnel.close().await }.instrument(span));
            }
            // No runtime (the process is ending): cancelling still stops
            // every task of the tunnel.
            Err(_) => tunnel.cancel.cancel(),
        }
    }
}
