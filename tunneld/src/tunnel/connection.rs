//! One connection carried by a tunnel: it is counted as active while alive,
//! keeps its own byte counts, and reports its opening and closing as
//! [`TunnelEvent`]s.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use tokio::sync::OwnedSemaphorePermit;

use super::{
    Tunnel, TunnelKind,
    counters::ActiveConnection,
    events::{ClosedConnection, TunnelEvent},
};
use crate::relay::{ByteCounters, Counted};

/// A live connection of a tunnel; reports its end when dropped.
pub struct Connection<'a> {
    tunnel: &'a Tunnel,
    id: u64,
    peer: String,
    started: Instant,
    bytes_to_target: AtomicU64,
    bytes_from_target: AtomicU64,
    // std Mutex: set once, read once on drop.
    error: Mutex<Option<String>>,
    /// Counted as active until taken, just before the end is reported.
    active: Option<ActiveConnection<'a>>,
    /// Its places under the tunnel's and the daemon's caps.
    _slots: [OwnedSemaphorePermit; 2],
}

impl<'a> Connection<'a> {
    /// Counts a new connection from `peer` and reports it.
    pub(super) fn new(
        tunnel: &'a Tunnel,
        id: u64,
        peer: String,
        slots: [OwnedSemaphorePermit; 2],
    ) -> Self {
        let active = tunnel.counters.connection();
        tunnel.emit(TunnelEvent::ConnectionOpened {
            id,
            peer: peer.clone(),
        });
        Connection {
            tunnel,
            id,
            peer,
            started: Instant::now(),
            bytes_to_target: AtomicU64::new(0),
            bytes_from_target: AtomicU64::new(0),
            error: Mutex::new(None),
            active: Some(active),
            _slots: slots,
        }
    }

    /// Bytes moved either way so far.
    pub fn bytes(&self) -> u64 {
        self.bytes_to_target.load(Ordering::Relaxed)
            + self.bytes_from_target.load(Ordering::Relaxed)
    }

    /// Records why the connection was ended, without counting it failed.
    pub fn ended_by(&self, reason: impl Into<String>) {
        let mut error = self.error.lock().unwrap_or_else(|p| p.into_inner());
        error.get_or_insert_with(|| reason.into());
    }

    /// Marks the connection as failed, with the reason its end will report.
    pub fn fail(&self, reason: impl Into<String>) {
        self.tunnel.counters.fail();
        let mut error = self.error.lock().unwrap_or_else(|p| p.into_inner());
        error.get_or_insert_with(|| reason.into());
    }

    /// Counts bytes a SOCKS client sent after its request, which reach the
    /// target before the relay starts.
    pub(super) fn count_to_target(&self, bytes: usize) {
        let bytes = bytes as u64;
        self.tunnel
            .counters
            .bytes_to_target
            .fetch_add(bytes, Ordering::Relaxed);
        self.bytes_to_target.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Where the relay counts this connection's bytes: the local side is the
    /// client of a local forward but the target of a remote one.
    pub(super) fn byte_counters(&self) -> ByteCounters<'_> {
        let c = &self.tunnel.counters;
        let to_target = Counted {
            total: &c.bytes_to_target,
            connection: &self.bytes_to_target,
        };
        let from_target = Counted {
            total: &c.bytes_from_target,
            connection: &self.bytes_from_target,
        };
        match self.tunnel.kind {
            TunnelKind::Local | TunnelKind::Dynamic => ByteCounters {
                local_to_channel: to_target,
                channel_to_local: from_target,
                spilled: &c.spilled_bytes,
            },
            TunnelKind::Remote | TunnelKind::RemoteDynamic => ByteCounters {
                local_to_channel: from_target,
                channel_to_local: to_target,
                spilled: &c.spilled_bytes,
            },
        }
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        drop(self.active.take());
        let error = self
            .error
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.tunnel
            .emit(TunnelEvent::ConnectionClosed(ClosedConnection {
                id: self.id,
                peer: std::mem::take(&mut self.peer),
                bytes_to_target: self.bytes_to_target.load(Ordering::Relaxed),
                bytes_from_target: self.bytes_from_target.load(Ordering::Relaxed),
                error,
                duration: self.started.elapsed(),
            }));
    }
}
