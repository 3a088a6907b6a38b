//! A configured SSH server and the connection tunneld holds to it: opened on
//! first use and shared by every tunnel. When it is lost while something
//! holds the host (a tunnel), it is reconnected with exponential backoff;
//! otherwise the next request reconnects. Exec commands run on connections
//! of their own (see [`super::exec_pool`]).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backoff;
use super::{ExecLease, ExecPool, ForwardRoutes, HostConfig, HostCounters, IoThread, SshSession};
use crate::error::{Error, Result};

/// State of the connection to a host, with what each state knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not connected yet; the first request connects.
    Idle,
    /// Connecting or authenticating.
    Connecting,
    /// Connected and authenticated.
    Connected,
    /// Lost while tunnels need it; reconnecting with backoff.
    Reconnecting {
        /// The attempt under way or next, from 1.
        attempt: u32,
        /// When the next attempt starts; `None` while one is under way.
        next_at: Option<SystemTime>,
        /// Why, e.g. the last attempt's error.
        detail: String,
    },
    /// The last attempt failed or the connection was lost, and nothing holds
    /// the host; the next request connects.
    Failed {
        /// What failed.
        detail: String,
    },
}

impl ConnectionState {
    /// What a person reads next to the state: the error or the progress.
    pub fn detail(&self) -> &str {
        match self {
            ConnectionState::Reconnecting { detail, .. } | ConnectionState::Failed { detail } => {
                detail
            }
            _ => "",
        }
    }

    /// The reconnect attempt under way or next; 0 unless reconnecting.
    pub fn attempt(&self) -> u32 {
        match self {
            ConnectionState::Reconnecting { attempt, .. } => *attempt,
            _ => 0,
        }
    }

    fn is_reconnecting(&self) -> bool {
        matches!(self, ConnectionState::Reconnecting { .. })
    }
}

/// The connection as tunnels and watchers see it; every change is published.
#[derive(Clone)]
pub struct Link {
    /// The live connection, if any.
    pub session: Option<Arc<SshSession>>,
    /// State.
    pub state: ConnectionState,
}

impl Link {
    /// The connection, if it is still alive.
    pub fn live(&self) -> Option<Arc<SshSession>> {
        self.session.clone().filter(|s| !s.is_closed())
    }
}

/// A point-in-time view of a host.
#[derive(Debug, Clone)]
pub struct HostSnapshot {
    /// Host name.
    pub name: String,
    /// `user@host:port`.
    pub address: String,
    /// The jump hosts the connection goes through, first hop first; empty
    /// when dialled directly.
    pub via: Vec<String>,
    /// Connection state.
    pub state: ConnectionState,
    /// When the current connection was made.
    pub connected_at: Option<SystemTime>,
}

/// One configured SSH server.
pub struct SshHost {
    config: Arc<HostConfig>,
    /// Remote-forward routing, kept across reconnects.
    routes: Arc<ForwardRoutes>,
    link: watch::Sender<Link>,
    /// Serialises connection attempts so concurrent requests share one.
    connecting: tokio::sync::Mutex<()>,
    /// Tunnels running over the host: while any, a lost connection is
    /// reconnected without waiting for a request.
    holders: AtomicUsize,
    /// Whether the reconnecting task runs.
    reconnecting: AtomicBool,
    shutdown: CancellationToken,
    /// Where the session and the host's connections run.
    io: IoThread,
    /// Connections waiting for the next Exec.
    exec_pool: Arc<ExecPool>,
    /// Reconnects, keepalive failures, Exec outcomes.
    counters: HostCounters,
}

/// Keeps a host reconnecting whenever its connection is lost; see
/// [`SshHost::hold`].
pub struct HostHold(Arc<SshHost>);

impl Drop for HostHold {
    fn drop(&mut self) {
        self.0.holders.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SshHost {
    /// A host that connects on first use; `shutdown` stops new connections.
    pub fn new(config: HostConfig, shutdown: CancellationToken) -> Self {
        SshHost {
            io: IoThread::new(&config.name, config.settings.thread),
            exec_pool: ExecPool::new(config.settings.exec_idle_timeout, shutdown.clone()),
            config: Arc::new(config),
            routes: Arc::default(),
            link: watch::Sender::new(Link {
                session: None,
                state: ConnectionState::Idle,
            }),
            connecting: tokio::sync::Mutex::new(()),
            holders: AtomicUsize::new(0),
            reconnecting: AtomicBool::new(false),
            shutdown,
            counters: HostCounters::default(),
        }
    }

    /// What happened to the host's connections and commands so far.
    pub fn counters(&self) -> &HostCounters {
        &self.counters
    }

    /// The thread (runtime) the host's session and its tunnels' connections
    /// run on.
    pub fn io(&self) -> &IoThread {
        &self.io
    }

    /// The host's configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Where forwarded channels of this host's remote forwards are routed.
    pub fn routes(&self) -> &Arc<ForwardRoutes> {
        &self.routes
    }

    /// Follows the connection: every state change and new session.
    pub fn subscribe(&self) -> watch::Receiver<Link> {
        self.link.subscribe()
    }

    /// Marks the host as needed (by a tunnel) until the guard drops: a lost
    /// connection is then reconnected with backoff at once.
    pub fn hold(self: &Arc<Self>) -> HostHold {
        self.holders.fetch_add(1, Ordering::AcqRel);
        HostHold(self.clone())
    }

    fn live_session(&self) -> Option<Arc<SshSession>> {
        self.link.borrow().live()
    }

    /// The live connection, connecting first if there is none.
    pub async fn session(self: &Arc<Self>) -> Result<Arc<SshSession>> {
        if let Some(s) = self.live_session() {
            return Ok(s);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(s) = self.live_session() {
            return Ok(s);
        }
        self.connect_locked().await
    }

    /// The live connection; while the host is (re)connecting, waits for it
    /// up to `bound`. Connects at once when nothing is under way.
    pub async fn wait_session(self: &Arc<Self>, bound: Duration) -> Result<Arc<SshSession>> {
        let deadline = tokio::time::Instant::now() + bound;
        let mut rx = self.link.subscribe();
        loop {
            let (live, state) = {
                let l = rx.borrow_and_update();
                (l.live(), l.state.clone())
            };
            if let Some(s) = live {
                return Ok(s);
            }
            if !matches!(
                state,
                ConnectionState::Reconnecting { .. } | ConnectionState::Connecting
            ) {
                return self.session().await;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Error::ShuttingDown),
                Err(_) => {
                    return Err(self.config.connection_failed(format!(
                        "the SSH connection is down and did not come back within {} \
                         (--reconnect-wait); tunneld keeps reconnecting (attempt {})",
                        humantime::format_duration(bound),
                        state.attempt()
                    )));
                }
            }
        }
    }

    /// A connection for one Exec command, held by it alone: an idle one
    /// unless `fresh`, else a new one. It runs on the caller's runtime, where
    /// the command's output is streamed.
    pub async fn exec_session(self: &Arc<Self>, fresh: bool) -> Result<ExecLease> {
        if !fresh && let Some(lease) = self.exec_pool.take_idle() {
            return Ok(lease);
        }
        let _turn = tokio::select! {
            turn = self.exec_pool.handshake_turn() => turn,
            () = self.shutdown.cancelled() => return Err(Error::ShuttingDown),
        };
        // A command may have ended meanwhile and left its connection.
        if !fresh && let Some(lease) = self.exec_pool.take_idle() {
            return Ok(lease);
        }
        // Its own routes: no remote forward is requested on it, so any
        // forwarded channel the server opens there is refused.
        let connect = SshSession::connect(self.config.clone(), Arc::default());
        let session = tokio::select! {
            r = connect => r?,
            () = self.shutdown.cancelled() => return Err(Error::ShuttingDown),
        };
        Ok(ExecLease::new(
            Arc::new(session),
            self.exec_pool.clone(),
            false,
        ))
    }

    /// Connects; the caller holds `connecting`.
    async fn connect_locked(self: &Arc<Self>) -> Result<Arc<SshSession>> {
        if self.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let reconnecting = self.reconnecting.load(Ordering::Acquire);
        self.link.send_modify(|l| {
            l.state = if reconnecting {
                let attempt = l.state.attempt().max(1);
                ConnectionState::Reconnecting {
                    attempt,
                    next_at: None,
                    detail: format!("attempt {attempt} under way"),
                }
            } else {
                ConnectionState::Connecting
            };
        });
        // Connected from the host's thread, so russh's session task runs
        // there.
        let connect = self.io.run(SshSession::connect(
            self.config.clone(),
            self.routes.clone(),
        ));
        let result = tokio::select! {
            r = connect => r.unwrap_or_else(|| Err(self.config.connection_failed(
                "the connection attempt ended without a result (tunneld bug; see the log)".into(),
            ))),
            () = self.shutdown.cancelled() => Err(Error::ShuttingDown),
        };
        match result {
            Ok(session) => {
                let session = Arc::new(session);
                // Cleared before the session is watched, so a loss right
                // away starts a new reconnecting task.
                self.reconnecting.store(false, Ordering::Release);
                self.link.send_modify(|l| {
                    l.session = Some(session.clone());
                    l.state = ConnectionState::Connected;
                });
                self.watch(session.clone());
                Ok(session)
            }
            Err(e) => {
                if !self.reconnecting.load(Ordering::Acquire) {
                    self.link.send_modify(|l| {
                        l.session = None;
                        l.state = ConnectionState::Failed {
                            detail: e.to_string(),
                        };
                    });
                }
                tracing::warn!(host = %self.config.name, "SSH connection failed: {e}");
                Err(e)
            }
        }
    }

    /// When this session ends (unless replaced by then): reconnects if the
    /// host is held, else marks it failed for the next request.
    fn watch(self: &Arc<Self>, session: Arc<SshSession>) {
        let host = self.clone();
        // A root span: called from the reconnect task, a child span would
        // nest one level deeper on every reconnect (and keep each old one).
        let span = tracing::info_span!(parent: None, "ssh_watch", host = %self.config.name);
        tokio::spawn(
            async move {
                session.closed().await;
                let reason = session.close_reason();
                if session.lost_keepalives() {
                    host.counters.keepalive_failed();
                }
                let stopping = host.shutdown.is_cancelled();
                let held = host.holders.load(Ordering::Acquire) > 0;
                // The session is cleared and the next state set in one
                // change, so nobody sees a connection that is neither up
                // nor reconnecting.
                let mut ours = false;
                host.link.send_if_modified(|l| {
                    ours = l.session.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session));
                    if ours {
                        l.session = None;
                        if stopping {
                            l.state = ConnectionState::Idle;
                        } else if held {
                            lost_while_held(l, &reason);
                        } else {
                            l.state = ConnectionState::Failed {
                                detail: format!("{reason}; the next request reconnects"),
                            };
                        }
                    }
                    ours
                });
                if ours && !stopping && held {
                    tracing::warn!("SSH connection lost ({reason}); reconnecting");
                    host.start_reconnecting(reason);
                }
            }
            .instrument(span),
        );
    }

    /// Reconnects with backoff until connected, nothing holds the host any
    /// more, or tunneld stops.
    fn start_reconnecting(self: &Arc<Self>, reason: String) {
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.link.send_if_modified(|l| {
            let changed = !l.state.is_reconnecting();
            if changed {
                lost_while_held(l, &reason);
            }
            changed
        });
        let host = self.clone();
        // A root span, as `ssh_watch`'s: reconnects never nest.
        let span = tracing::info_span!(parent: None, "ssh_reconnect", host = %self.config.name);
        tokio::spawn(
            async move {
                let started = tokio::time::Instant::now();
                let waiting = |next: u32, delay: Duration, e: &Error| {
                    tracing::info!(
                        attempt = next - 1,
                        "reconnect failed: {e}; next in {delay:?}"
                    );
                    host.link.send_modify(|l| {
                        l.state = ConnectionState::Reconnecting {
                            attempt: next,
                            next_at: Some(SystemTime::now() + delay),
                            detail: format!(
                                "attempt {} failed: {e}; next in {}",
                                next - 1,
                                humantime::format_duration(round_ms(delay))
                            ),
                        };
                    });
                };
                let attempt = |n: u32| {
                    let host = host.clone();
                    async move {
                        let _one_at_a_time = host.connecting.lock().await;
                        if host.live_session().is_some() {
                            return Ok(true);
                        }
                        if host.holders.load(Ordering::Acquire) == 0 {
                            return Ok(false);
                        }
                        host.link.send_modify(|l| {
                            l.state = ConnectionState::Reconnecting {
                                attempt: n,
                                next_at: None,
                                detail: format!("attempt {n} under way"),
                            }
                        });
                        host.connect_locked().await.map(|_| true)
                    }
                };
                let outcome = backoff::retry(
                    host.config.settings.reconnect,
                    host.shutdown.cancelled(),
                    waiting,
                    attempt,
                )
                .await;
                match outcome {
                    Some(true) => {
                        host.counters.reconnected();
                        tracing::info!(
                            "SSH connection restored after {:.1}s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    Some(false) | None => {
                        host.reconnecting.store(false, Ordering::Release);
                        let stopping = host.shutdown.is_cancelled();
                        host.link.send_modify(|l| {
                            if l.live().is_none() {
                                l.state = if stopping {
                                    ConnectionState::Idle
                                } else {
                                    ConnectionState::Failed {
                                        detail: "not reconnecting: no tunnel needs the \
                                                 connection; the next request reconnects"
                                            .into(),
                                    }
                                };
                            }
                        });
                    }
                }
            }
            .instrument(span),
        );
    }

    /// A point-in-time view.
    pub fn snapshot(&self) -> HostSnapshot {
        let link = self.link.borrow();
        let live = link.live();
        // Lost a moment ago; the watching task has not recorded it yet.
        let state = match (&live, &link.state) {
            (None, ConnectionState::Connected) if self.holders.load(Ordering::Acquire) > 0 => {
                ConnectionState::Reconnecting {
                    attempt: 1,
                    next_at: None,
                    detail: "connection lost; reconnecting".to_string(),
                }
            }
            (None, ConnectionState::Connected) => ConnectionState::Failed {
                detail: "the SSH connection was lost".to_string(),
            },
            (_, s) => s.clone(),
        };
        HostSnapshot {
            name: self.config.name.clone(),
            address: self.config.display_address(),
            via: self.config.via(),
            state,
            connected_at: live.map(|s| s.connected_at),
        }
    }

    /// Closes the connection, if any, and the idle Exec connections.
    pub async fn disconnect(&self) {
        self.exec_pool.drain().await;
        let session = self.link.borrow().session.clone();
        if let Some(s) = session {
            self.link.send_modify(|l| l.session = None);
            s.disconnect().await;
            self.link.send_modify(|l| l.state = ConnectionState::Idle);
        }
    }
}

/// The state of a link lost while tunnels need it: reconnecting, first
/// attempt at once.
fn lost_while_held(l: &mut Link, reason: &str) {
    l.state = ConnectionState::Reconnecting {
        attempt: 1,
        next_at: None,
        detail: format!("connection lost: {reason}"),
    };
}

/// `d` to whole milliseconds, so details read "next in 1s 234ms".
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
