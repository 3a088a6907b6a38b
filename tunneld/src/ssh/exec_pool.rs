//! The SSH connections a host's Exec commands run on: one command at a time
//! on each, kept open between commands for reuse.
//!
//! russh re-opens a channel's window as soon as data arrives, so the only way
//! to slow a remote command down to its caller's pace is to stop reading the
//! whole SSH connection. On the host's shared connection that would stall
//! every tunnel with it. On a connection the command holds alone it is
//! exactly the backpressure `ssh host cmd` gets from OpenSSH's channel
//! window: sshd stops reading the command's output until the caller takes
//! some. A finished command's connection waits here for the next one (as
//! OpenSSH's ControlPersist keeps a master), at most [`MAX_IDLE`] per host,
//! each closed after the host's `exec_idle_timeout`.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::SshSession;

/// Most idle Exec connections kept per host; more are closed at once.
pub const MAX_IDLE: usize = 4;

/// Most Exec connections of one host in their handshake at once; a burst of
/// Execs waits for a slot. sshd's default `MaxStartups 10:30:100` starts
/// dropping new connections at 10 unauthenticated ones, and the host's
/// shared connection may be starting too.
pub const MAX_HANDSHAKES: usize = 4;

/// Idle Exec connections of one host.
pub struct ExecPool {
    idle: Mutex<Vec<Idle>>,
    next_id: AtomicU64,
    keep_idle: Duration,
    shutdown: CancellationToken,
    handshakes: Semaphore,
}

/// A connection waiting for the next Exec.
struct Idle {
    id: u64,
    session: Arc<SshSession>,
}

impl ExecPool {
    /// A pool that keeps a connection `keep_idle` after its command ended
    /// (zero: closes it at once); `shutdown` ends the keeping.
    pub fn new(keep_idle: Duration, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(ExecPool {
            idle: Mutex::default(),
            next_id: AtomicU64::new(0),
            keep_idle,
            shutdown,
            handshakes: Semaphore::new(MAX_HANDSHAKES),
        })
    }

    /// Waits for a turn to open a new connection (see [`MAX_HANDSHAKES`]);
    /// the turn lasts as long as the permit.
    pub async fn handshake_turn(&self) -> SemaphorePermit<'_> {
        // Never closed, so acquiring cannot fail; the fallback is only there
        // so this has no panic path.
        match self.handshakes.acquire().await {
            Ok(permit) => permit,
            Err(_) => std::future::pending().await,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection that is still alive, if any.
    pub fn take_idle(self: &Arc<Self>) -> Option<ExecLease> {
        let mut idle = self.idle();
        while let Some(entry) = idle.pop() {
            if !entry.session.is_closed() {
                return Some(ExecLease::new(entry.session, self.clone(), true));
            }
        }
        None
    }

    /// Keeps `session` for the next command, or closes it when the pool is
    /// full, keeps nothing, or tunneld is stopping.
    fn put_back(self: &Arc<Self>, session: Arc<SshSession>) {
        if session.is_closed() {
            return;
        }
        let keep = !self.shutdown.is_cancelled()
            && !self.keep_idle.is_zero()
            && self.idle().len() < MAX_IDLE;
        if !keep {
            close_in_background(session);
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.idle().push(Idle { id, session });
        let pool = self.clone();
        let span = tracing::debug_span!(parent: None, "exec_idle", id);
        tokio::spawn(
            async move {
                tokio::select! {
                    () = tokio::time::sleep(pool.keep_idle) => {}
                    () = pool.shutdown.cancelled() => return,
                }
                let expired = {
                    let mut idle = pool.idle();
                    let at = idle.iter().position(|e| e.id == id);
                    at.map(|i| idle.remove(i).session)
                };
                if let Some(session) = expired {
                    tracing::debug!("closing an Exec connection idle for {:?}", pool.keep_idle);
                    session.disconnect().await;
                }
            }
            .instrument(span),
        );
    }

    /// Closes every idle connection.
    pub async fn drain(&self) {
        let idle: Vec<Idle> = std::mem::take(&mut *self.idle());
        for entry in idle {
            entry.session.disconnect().await;
        }
    }
}

fn close_in_background(session: Arc<SshSession>) {
    let span = tracing::debug_span!(parent: None, "exec_close");
    tokio::spawn(async move { session.disconnect().await }.instrument(span));
}

/// An Exec connection held by one command. [`ExecLease::give_back`] returns
/// it for reuse; dropped otherwise, it is closed.
pub struct ExecLease {
    session: Arc<SshSession>,
    pool: Arc<ExecPool>,
    reused: bool,
    /// Given back or closed already.
    settled: bool,
}

impl ExecLease {
    /// A lease of `session` from `pool`; `reused` if it ran a command before.
    pub fn new(session: Arc<SshSession>, pool: Arc<ExecPool>, reused: bool) -> Self {
        ExecLease {
            session,
            pool,
            reused,
            settled: false,
        }
    }

    /// The connection.
    pub fn session(&self) -> &Arc<SshSession> {
        &self.session
    }

    /// Whether the connection ran an earlier command (so it may have died
    /// while idle without tunneld noticing yet).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// The command ended cleanly: the connection waits for the next one.
    pub fn give_back(mut self) {
        self.settled = true;
        self.pool.put_back(self.session.clone());
    }

    /// The command was cut short: the connection may still carry its
    /// output, so it is closed.
    pub async fn discard(mut self) {
        self.settled = true;
        self.session.disconnect().await;
    }
}

impl Drop for ExecLease {
    fn drop(&mut self) {
        if !self.settled {
            close_in_background(self.session.clone());
        }
    }
}
