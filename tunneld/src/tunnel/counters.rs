//! Per-tunnel traffic counters, updated lock-free by connection tasks.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of a tunnel.
#[derive(Debug, Default)]
pub struct TunnelCounters {
    /// Connections being carried.
    pub active: AtomicU64,
    /// Connections accepted, including active ones.
    pub total: AtomicU64,
    /// Connections that could not be carried or were cut by a limit.
    pub failed: AtomicU64,
    /// Bytes from the listening side to the target.
    pub bytes_to_target: AtomicU64,
    /// Bytes from the target to the listening side.
    pub bytes_from_target: AtomicU64,
    /// Connections refused at a cap; not in `total`.
    pub refused: AtomicU64,
    /// Bytes that waited in a spill file for a slow local reader.
    pub spilled_bytes: AtomicU64,
    /// Connections reset because their reader fell further behind than the
    /// memory buffer and spill limits allow; also in `failed`.
    pub limit_resets: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Connections being carried.
    pub active: u64,
    /// Connections accepted.
    pub total: u64,
    /// Connections failed.
    pub failed: u64,
    /// Bytes to the target.
    pub bytes_to_target: u64,
    /// Bytes from the target.
    pub bytes_from_target: u64,
    /// Connections refused at a cap.
    pub refused: u64,
    /// Bytes that waited in a spill file.
    pub spilled_bytes: u64,
    /// Connections reset at a buffer or spill limit.
    pub limit_resets: u64,
}

impl TunnelCounters {
    /// Reads every counter.
    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            active: self.active.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            bytes_to_target: self.bytes_to_target.load(Ordering::Relaxed),
            bytes_from_target: self.bytes_from_target.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            spilled_bytes: self.spilled_bytes.load(Ordering::Relaxed),
            limit_resets: self.limit_resets.load(Ordering::Relaxed),
        }
    }

    /// Counts a new connection as active until the guard drops.
    pub fn connection(&self) -> ActiveConnection<'_> {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveConnection(self)
    }

    /// Counts a connection refused at a cap; returns how many so far.
    pub fn refuse(&self) -> u64 {
        self.refused.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a connection reset at a buffer or spill limit (the caller
    /// also counts it failed).
    pub fn limit_reset(&self) {
        self.limit_resets.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection that could not be carried.
    pub fn fail(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Keeps a connection counted as active while alive.
pub struct ActiveConnection<'a>(&'a TunnelCounters);

impl Drop for ActiveConnection<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
