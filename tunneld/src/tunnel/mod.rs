//! Tunnels: local forwards (`ssh -L`) and remote forwards (`ssh -R`), their
//! shared description, counters and registry.
//!
//! Architecture invariant: a tunnel knows its SSH host only through
//! [`crate::ssh::SshHost`]; it knows nothing of gRPC.

mod attachment;
mod connection;
mod counters;
mod events;
mod local;
mod registry;
mod remote;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::{
    net::TcpStream,
    sync::{broadcast, watch},
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    relay::{RelayEnd, relay},
    ssh::SshChannel,
};

pub use attachment::{Attachment, AttachmentEvent};
pub use connection::Connection;
pub use counters::{CountersSnapshot, TunnelCounters};
pub use events::{ClosedConnection, TunnelEvent};
pub use local::{LocalForwardSpec, open_local};
pub use registry::Registry;
pub use remote::{RemoteForwardSpec, open_remote};

/// Bound on waiting for a closing tunnel's tasks to finish.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a tunnel is set up, besides where it listens and connects.
#[derive(Debug, Clone, Copy)]
pub struct TunnelOptions {
    /// Bytes held for one connection whose local reader lags (see `relay`).
    pub max_buffer: usize,
    /// Whether the tunnel lives only as long as an [`Attachment`].
    pub attached: bool,
}

/// A forward to open, either way.
#[derive(Debug, Clone)]
pub enum ForwardSpec {
    /// `ssh -L`.
    Local(LocalForwardSpec),
    /// `ssh -R`.
    Remote(RemoteForwardSpec),
}

/// Direction of a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    /// Listens here, connects from the SSH server.
    Local,
    /// Listens on the SSH server, connects from here.
    Remote,
}

/// Life-cycle state of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelState {
    /// Carrying connections.
    Open,
    /// The SSH connection under it was lost (remote forwards).
    Failed,
    /// Closed.
    Closed,
}

/// A host (name or address) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One open tunnel, shared by its tasks and the registry.
pub struct Tunnel {
    /// Identifier, e.g. `t-3`.
    pub id: String,
    /// Direction.
    pub kind: TunnelKind,
    /// Name of the SSH host.
    pub host: String,
    /// The end on tunneld's machine.
    pub local: Endpoint,
    /// The end seen from the SSH server.
    pub remote: Endpoint,
    /// When it was opened.
    pub created_at: SystemTime,
    /// Traffic counters.
    pub counters: Arc<TunnelCounters>,
    /// Cancelled to close the tunnel and all its connections.
    pub cancel: CancellationToken,
    /// The tunnel's tasks (listener and connections), awaited on close.
    pub tasks: TaskTracker,
    /// Bytes held for one connection whose local reader lags (see `relay`).
    max_buffer: usize,
    /// Whether an [`Attachment`] owns the tunnel.
    attached: bool,
    /// State and its detail; a watch so an attachment sees every change.
    status: watch::Sender<(TunnelState, String)>,
    /// Connection events, for whoever is attached.
    events: broadcast::Sender<TunnelEvent>,
    /// The receiver an attachment takes: subscribed at creation, so the
    /// first connections are not missed. `None` for unattached tunnels.
    // std Mutex: taken once.
    attach_events: Mutex<Option<broadcast::Receiver<TunnelEvent>>>,
    /// Numbers the tunnel's connections.
    connections: AtomicU64,
}

/// A point-in-time view of a tunnel.
#[derive(Debug, Clone)]
pub struct TunnelSnapshot {
    /// Identifier.
    pub id: String,
    /// Direction.
    pub kind: TunnelKind,
    /// Name of the SSH host.
    pub host: String,
    /// The end on tunneld's machine.
    pub local: Endpoint,
    /// The end seen from the SSH server.
    pub remote: Endpoint,
    /// State.
    pub state: TunnelState,
    /// Detail on the state.
    pub detail: String,
    /// When it was opened.
    pub created_at: SystemTime,
    /// Counters.
    pub counters: CountersSnapshot,
    /// Whether it closes when its attached caller goes away.
    pub attached: bool,
}

impl Tunnel {
    /// A new open tunnel whose token is a child of `parent`.
    pub fn new(
        id: String,
        kind: TunnelKind,
        host: &str,
        (local, remote): (Endpoint, Endpoint),
        parent: &CancellationToken,
        options: TunnelOptions,
    ) -> Self {
        let (events, first) = broadcast::channel(events::EVENT_BUFFER);
        Tunnel {
            id,
            kind,
            host: host.to_string(),
            local,
            remote,
            created_at: SystemTime::now(),
            counters: Default::default(),
            cancel: parent.child_token(),
            tasks: TaskTracker::new(),
            max_buffer: options.max_buffer,
            attached: options.attached,
            status: watch::Sender::new((TunnelState::Open, String::new())),
            events,
            attach_events: Mutex::new(options.attached.then_some(first)),
            connections: AtomicU64::new(0),
        }
    }

    /// Starts counting and reporting a connection from `peer`.
    pub fn connection(&self, peer: impl std::fmt::Display) -> Connection<'_> {
        let id = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        Connection::new(self, id, peer.to_string())
    }

    /// Carries one accepted connection over `channel` until it ends; a
    /// reset at the buffer limit marks it failed.
    pub async fn relay_connection(
        &self,
        conn: &Connection<'_>,
        tcp: TcpStream,
        channel: SshChannel,
    ) {
        match relay(
            tcp,
            channel,
            conn.byte_counters(),
            self.max_buffer,
            &self.cancel,
        )
        .await
        {
            RelayEnd::Overflow => {
                let reason = format!(
                    "reset: its reader fell more than {} KiB behind (--max-connection-buffer)",
                    self.max_buffer / 1024
                );
                tracing::warn!("connection {reason}");
                conn.fail(reason);
            }
            RelayEnd::SshLost => conn.fail("the SSH connection was lost"),
            RelayEnd::LocalError => tracing::debug!("connection ended by a local reset"),
            end => tracing::debug!(?end, "connection ended"),
        }
    }

    /// Reports an event to whoever is attached (nobody, usually).
    fn emit(&self, event: TunnelEvent) {
        let _ = self.events.send(event);
    }

    /// The receiver of the tunnel's events set aside for its attachment
    /// when it was created, or else a new one.
    pub(crate) fn take_attach_events(&self) -> broadcast::Receiver<TunnelEvent> {
        self.attach_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_else(|| self.events.subscribe())
    }

    /// Follows the tunnel's state.
    pub fn watch_state(&self) -> watch::Receiver<(TunnelState, String)> {
        self.status.subscribe()
    }

    /// Sets the state and its detail.
    pub fn set_state(&self, state: TunnelState, detail: impl Into<String>) {
        self.status.send_replace((state, detail.into()));
    }

    /// Closes the tunnel: cancels its listener and connections, waits
    /// (bounded) for them to end, and returns it with its final counters.
    pub async fn close(&self) -> TunnelSnapshot {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(CLOSE_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(tunnel = %self.id, "tunnel tasks did not finish within {}s", CLOSE_TIMEOUT.as_secs());
        }
        self.set_state(TunnelState::Closed, "");
        tracing::info!(tunnel = %self.id, "tunnel closed");
        self.snapshot()
    }

    /// A point-in-time view.
    pub fn snapshot(&self) -> TunnelSnapshot {
        let (state, detail) = self.status.borrow().clone();
        TunnelSnapshot {
            id: self.id.clone(),
            kind: self.kind,
            host: self.host.clone(),
            local: self.local.clone(),
            remote: self.remote.clone(),
            state,
            detail,
            created_at: self.created_at,
            counters: self.counters.snapshot(),
            attached: self.attached,
        }
    }
}
