//! Tunnels: local forwards (`ssh -L`) and remote forwards (`ssh -R`), their
//! shared description, counters and registry.
//!
//! Architecture invariant: a tunnel knows its SSH host only through
//! [`crate::ssh::SshHost`]; it knows nothing of gRPC.

mod counters;
mod local;
mod registry;
mod remote;

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio::net::TcpStream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    relay::{ByteCounters, RelayEnd, relay},
    ssh::SshChannel,
};

pub use counters::{CountersSnapshot, TunnelCounters};
pub use local::{LocalForwardSpec, open_local};
pub use registry::Registry;
pub use remote::{RemoteForwardSpec, open_remote};

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
    // std Mutex: short field updates only.
    status: Mutex<(TunnelState, String)>,
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
}

impl Tunnel {
    /// A new open tunnel whose token is a child of `parent`.
    pub fn new(
        id: String,
        kind: TunnelKind,
        host: &str,
        local: Endpoint,
        remote: Endpoint,
        parent: &CancellationToken,
        max_buffer: usize,
    ) -> Self {
        Tunnel {
            id,
            kind,
            host: host.to_string(),
            local,
            remote,
            created_at: SystemTime::now(),
            counters: Arc::default(),
            cancel: parent.child_token(),
            tasks: TaskTracker::new(),
            max_buffer,
            status: Mutex::new((TunnelState::Open, String::new())),
        }
    }

    /// Carries one accepted connection over `channel` until it ends,
    /// counting its bytes and a reset at the buffer limit.
    pub async fn relay_connection(&self, tcp: TcpStream, channel: SshChannel) {
        let c = &self.counters;
        // The TCP side is the client of a local forward but the target of a
        // remote one.
        let bytes = match self.kind {
            TunnelKind::Local => ByteCounters {
                tcp_to_channel: &c.bytes_to_target,
                channel_to_tcp: &c.bytes_from_target,
            },
            TunnelKind::Remote => ByteCounters {
                tcp_to_channel: &c.bytes_from_target,
                channel_to_tcp: &c.bytes_to_target,
            },
        };
        match relay(tcp, channel, bytes, self.max_buffer, &self.cancel).await {
            RelayEnd::Overflow => {
                c.fail();
                tracing::warn!(
                    limit = self.max_buffer,
                    "connection reset: its reader fell more than the buffer limit behind"
                );
            }
            end => tracing::debug!(?end, "connection ended"),
        }
    }

    /// Sets the state and its detail.
    pub fn set_state(&self, state: TunnelState, detail: impl Into<String>) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = (state, detail.into());
    }

    /// A point-in-time view.
    pub fn snapshot(&self) -> TunnelSnapshot {
        let (state, detail) = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
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
        }
    }
}
