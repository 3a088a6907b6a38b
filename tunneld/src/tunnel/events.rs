//! What a tunnel reports while it runs: connections opening and closing.
//! Sent on a broadcast channel; whoever is attached to the tunnel reads them.

use std::time::Duration;

/// Events buffered per tunnel for a slow reader before the oldest are
/// dropped (the reader is told how many it missed).
pub const EVENT_BUFFER: usize = 1024;

/// One event in a tunnel's life.
#[derive(Debug, Clone)]
pub enum TunnelEvent {
    /// A connection arrived and is being carried.
    ConnectionOpened {
        /// Number of the connection within the tunnel, from 1.
        id: u64,
        /// Where it came from (`host:port`).
        peer: String,
    },
    /// A connection ended.
    ConnectionClosed(ClosedConnection),
}

/// How a connection ended.
#[derive(Debug, Clone)]
pub struct ClosedConnection {
    /// Number of the connection within the tunnel.
    pub id: u64,
    /// Where it came from.
    pub peer: String,
    /// Bytes from the listening side to the target.
    pub bytes_to_target: u64,
    /// Bytes from the target back.
    pub bytes_from_target: u64,
    /// Why it could not be carried or was cut short; `None` for a normal end.
    pub error: Option<String>,
    /// How long it lasted.
    pub duration: Duration,
}
