//! What happened to one host's connections, counted lock-free: reconnects,
//! keepalive failures, and how its Exec commands ended. Plain atomics read
//! through a snapshot; whoever reports them (the metrics endpoint) reads
//! the snapshot and `ssh/` knows nothing of it.

use std::sync::atomic::{AtomicU64, Ordering};

/// How an Exec command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecOutcome {
    /// Exited with status 0.
    Ok,
    /// Exited with another status.
    Nonzero,
    /// Killed by a signal.
    Signal,
    /// Never ran, failed, timed out, or its caller went away first.
    Error,
}

impl ExecOutcome {
    /// Every outcome, in the order of [`HostCountersSnapshot::execs`].
    pub const ALL: [ExecOutcome; 4] = [
        ExecOutcome::Ok,
        ExecOutcome::Nonzero,
        ExecOutcome::Signal,
        ExecOutcome::Error,
    ];

    /// A short lowercase name (`ok`, `nonzero`, `signal`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExecOutcome::Ok => "ok",
            ExecOutcome::Nonzero => "nonzero",
            ExecOutcome::Signal => "signal",
            ExecOutcome::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Live counters of one host.
#[derive(Debug, Default)]
pub struct HostCounters {
    /// Connections lost while tunnels held the host and restored by the
    /// reconnecting task.
    reconnects: AtomicU64,
    /// Connections russh dropped because the server left keepalives
    /// unanswered.
    keepalive_failures: AtomicU64,
    /// Exec commands by [`ExecOutcome`].
    execs: [AtomicU64; 4],
}

/// A copy of a host's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCountersSnapshot {
    /// See [`HostCounters`].
    pub reconnects: u64,
    /// See [`HostCounters`].
    pub keepalive_failures: u64,
    /// Exec commands, indexed as [`ExecOutcome::ALL`].
    pub execs: [u64; 4],
}

impl HostCounters {
    /// Counts a connection restored after a loss.
    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection lost to unanswered keepalives.
    pub fn keepalive_failed(&self) {
        self.keepalive_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an Exec command that ended with `outcome`.
    pub fn exec_ended(&self, outcome: ExecOutcome) {
        self.execs[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> HostCountersSnapshot {
        HostCountersSnapshot {
            reconnects: self.reconnects.load(Ordering::Relaxed),
            keepalive_failures: self.keepalive_failures.load(Ordering::Relaxed),
            execs: std::array::from_fn(|i| self.execs[i].load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_land_in_their_own_slot() {
        let c = HostCounters::default();
        c.exec_ended(ExecOutcome::Signal);
        c.exec_ended(ExecOutcome::Signal);
        c.exec_ended(ExecOutcome::Ok);
        c.reconnected();
        let s = c.snapshot();
        assert_eq!(s.execs, [1, 0, 2, 0]);
        assert_eq!(s.reconnects, 1);
        assert_eq!(s.keepalive_failures, 0);
        for (i, o) in ExecOutcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }
}
