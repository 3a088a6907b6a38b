//! Tunnels: local forwards (`ssh -L`, and `ssh -D` when the target is
//! SOCKS) and remote forwards (`ssh -R`, and its reverse dynamic form), their
//! shared description, counters and registry.
//!
//! Architecture invariant: a tunnel knows its SSH host only through
//! [`crate::ssh::SshHost`]; it knows nothing of gRPC.

mod attachment;
mod connection;
mod counters;
mod dynamic;
mod endpoint;
mod events;
mod local;
mod observer;
mod permitted;
mod registry;
mod remote;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    relay::{
        LocalStream, RelayBuffers, RelayEnd, relay,
        spill::{SpillError, SpillPolicy},
    },
    ssh::{HostHold, Link, SessionUse, SshChannel, SshHost},
};

pub use attachment::{Attachment, AttachmentEvent};
pub use connection::Connection;
pub use counters::{CountersSnapshot, TunnelCounters};
pub use endpoint::{DEFAULT_TARGET_HOST, Endpoint, check_host};
pub use events::TunnelEvent;
pub use local::{ANY_LOCAL_BIND, DEFAULT_LOCAL_BIND, LocalForwardSpec, open_local, resolve_bind};
pub use observer::TunnelObserver;
pub use registry::{NameClaim, Registry, id_of, seq_of};
pub use remote::{DEFAULT_REMOTE_BIND, RemoteForwardSpec, open_remote};

/// Bound on waiting for a closing tunnel's tasks to finish.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How a tunnel is set up, besides where it listens and connects.
#[derive(Clone)]
pub struct TunnelOptions {
    /// Bytes held in memory for one connection whose local reader lags
    /// (see `relay`).
    pub max_buffer: usize,
    /// Where and how much a lagging reader's bytes may wait on disk.
    pub spill: SpillPolicy,
    /// Size of one read from a local socket.
    pub copy_buffer: usize,
    /// Whether the tunnel lives only as long as an [`Attachment`].
    pub attached: bool,
    /// Connections carried at once; more are refused.
    pub max_connections: u32,
    /// Close a connection after this long without a byte either way.
    pub idle_timeout: Option<Duration>,
    /// How long a new connection waits for a lost SSH connection.
    pub reconnect_wait: Duration,
    /// The daemon's cap on connections, shared by every tunnel.
    pub capacity: Arc<Semaphore>,
    /// Who hears of state changes and connection events.
    pub observer: Arc<dyn TunnelObserver>,
    /// The tunnel's name, unique among open tunnels.
    pub name: Option<String>,
    /// Who asked for the tunnel and what keeps it.
    pub source: TunnelSource,
    /// The forward as asked, to open it again elsewhere (its host
    /// replaced at reload).
    pub asked: ForwardSpec,
}

/// Who asked for a tunnel, and so what keeps it across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TunnelSource {
    /// Opened through the API; gone when tunneld stops.
    #[default]
    Api,
    /// Opened through the API to be kept: recorded in the state store and
    /// restored at every start until closed.
    Persisted,
    /// Declared in the config file: opened at start, closed only by taking
    /// it out of the file.
    Declared,
}

/// A forward to open, either way.
#[derive(Debug, Clone)]
pub enum ForwardSpec {
    /// `ssh -L`, or `ssh -D` when the target is [`Endpoint::Socks`].
    Local(LocalForwardSpec),
    /// `ssh -R`, or its reverse dynamic form when the target is
    /// [`Endpoint::Socks`].
    Remote(RemoteForwardSpec),
}

impl ForwardSpec {
    /// The limits the request sets on the tunnel's connections.
    pub fn connection_limits(&self) -> ConnectionLimits {
        match self {
            ForwardSpec::Local(s) => s.limits,
            ForwardSpec::Remote(s) => s.limits,
        }
    }

    /// The kind of tunnel it opens.
    pub fn kind(&self) -> TunnelKind {
        match self {
            ForwardSpec::Local(s) if s.target == Endpoint::Socks => TunnelKind::Dynamic,
            ForwardSpec::Local(_) => TunnelKind::Local,
            ForwardSpec::Remote(s) if s.target == Endpoint::Socks => TunnelKind::RemoteDynamic,
            ForwardSpec::Remote(_) => TunnelKind::Remote,
        }
    }

    /// The ends as a tunnel shows them: (on tunneld's machine, seen from
    /// the SSH server).
    fn ends(&self) -> (Endpoint, Endpoint) {
        match self {
            ForwardSpec::Local(s) => (s.listen.clone(), s.target.clone()),
            ForwardSpec::Remote(s) => (s.target.clone(), s.listen.clone()),
        }
    }

    /// The same forward listening on the port `tunnel` actually got, so
    /// opening it again (a restart) gives the same port even where the
    /// first open asked for any (0).
    pub fn bound_as(mut self, tunnel: &Tunnel) -> ForwardSpec {
        let (listen, bound) = match &mut self {
            ForwardSpec::Local(s) => (&mut s.listen, &tunnel.local),
            ForwardSpec::Remote(s) => (&mut s.listen, &tunnel.remote),
        };
        if let (Endpoint::Tcp { port, .. }, Endpoint::Tcp { port: got, .. }) = (listen, bound) {
            *port = *got;
        }
        self
    }
}

/// Limits a request may set on a tunnel's connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections carried at once; `None`: the daemon's default.
    pub max_connections: Option<u32>,
    /// Close a connection idle this long; `None`: never.
    pub idle_timeout: Option<Duration>,
}

/// Direction of a forward, and whether its targets come from SOCKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    /// Listens here, connects from the SSH server.
    Local,
    /// Listens on the SSH server, connects from here.
    Remote,
    /// A SOCKS proxy here, connecting from the SSH server (`ssh -D`).
    Dynamic,
    /// A SOCKS proxy on the SSH server, connecting from here (`ssh -R PORT`).
    RemoteDynamic,
}

/// Life-cycle state of a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelState {
    /// Carrying connections.
    Open,
    /// The SSH connection under it was lost; tunneld is reconnecting.
    Reconnecting,
    /// Not restored after the SSH connection came back (e.g. the server
    /// refused the remote port); retried until closed.
    Failed,
    /// Closed.
    Closed,
}

/// One open tunnel, shared by its tasks and the registry.
pub struct Tunnel {
    /// Identifier, e.g. `t-3`.
    pub id: String,
    /// Name, unique among open tunnels.
    pub name: Option<String>,
    /// Who asked for it and what keeps it.
    pub source: TunnelSource,
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
    /// The forward as asked ([`ForwardSpec::bound_as`] gives it with the
    /// ports it got).
    pub asked: ForwardSpec,
    /// Cancelled to close the tunnel and all its connections.
    pub(super) cancel: CancellationToken,
    /// Cancelled to stop taking new connections (a drain) while those
    /// open go on; a child of `cancel`.
    pub(super) accepting: CancellationToken,
    /// The tunnel's tasks (listener and connections), awaited on close.
    pub(super) tasks: TaskTracker,
    /// Buffer sizes of each connection (see `relay`).
    buffers: RelayBuffers,
    /// Whether an [`Attachment`] owns the tunnel.
    attached: bool,
    /// Connections carried at once.
    max_connections: u32,
    /// Idle connections are closed after this long.
    idle_timeout: Option<Duration>,
    /// How long a new connection waits for a lost SSH connection.
    reconnect_wait: Duration,
    /// Places under the tunnel's cap and the daemon's.
    slots: Arc<Semaphore>,
    capacity: Arc<Semaphore>,
    /// Times restored after the SSH connection was lost.
    restores: AtomicU32,
    /// A reverse dynamic forward's `permit_remote_open`, as given.
    permit_remote_open: Vec<String>,
    observer: Arc<dyn TunnelObserver>,
    /// Keeps the host reconnecting while the tunnel is open.
    // std Mutex: taken once, on close.
    hold: Mutex<Option<HostHold>>,
    /// State and its detail; a watch so an attachment sees every change.
    status: watch::Sender<(TunnelState, String)>,
    /// Connection events, for whoever is attached ([`events::EVENT_BUFFER`]
    /// of them buffered for an attached tunnel, one otherwise).
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
    /// Name, if it has one.
    pub name: Option<String>,
    /// Who asked for it and what keeps it.
    pub source: TunnelSource,
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
    /// Connections carried at once.
    pub max_connections: u32,
    /// Idle connections are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// Times restored after the SSH connection was lost.
    pub restores: u32,
    /// A reverse dynamic forward's `permit_remote_open`, as given.
    pub permit_remote_open: Vec<String>,
}

impl Tunnel {
    /// Whether an [`Attachment`] owns it (it ends with its caller).
    pub fn is_attached(&self) -> bool {
        self.attached
    }

    /// A new open tunnel whose token is a child of `parent`.
    pub fn new(
        id: String,
        kind: TunnelKind,
        host: &Arc<SshHost>,
        (local, remote): (Endpoint, Endpoint),
        parent: &CancellationToken,
        options: TunnelOptions,
    ) -> Self {
        // Only an attachment reads these. The buffer's slots are allocated
        // up front (1,024 took ~120 KB per tunnel), so a tunnel nobody is
        // attached to gets one slot; watchers read the daemon's bus.
        let capacity = if options.attached {
            events::EVENT_BUFFER
        } else {
            1
        };
        let (events, first) = broadcast::channel(capacity);
        let cancel = parent.child_token();
        let accepting = cancel.child_token();
        Tunnel {
            id,
            name: options.name,
            source: options.source,
            kind,
            host: host.config().name.clone(),
            local,
            remote,
            created_at: SystemTime::now(),
            counters: Default::default(),
            asked: options.asked,
            cancel,
            accepting,
            tasks: TaskTracker::new(),
            buffers: RelayBuffers {
                max_buffer: options.max_buffer,
                read_chunk: options.copy_buffer,
                spill: options.spill,
            },
            attached: options.attached,
            max_connections: options.max_connections,
            idle_timeout: options.idle_timeout,
            reconnect_wait: options.reconnect_wait,
            slots: Arc::new(Semaphore::new(options.max_connections as usize)),
            capacity: options.capacity,
            restores: AtomicU32::new(0),
            permit_remote_open: Vec::new(),
            observer: options.observer,
            hold: Mutex::new(Some(host.hold())),
            status: watch::Sender::new((TunnelState::Open, String::new())),
            events,
            attach_events: Mutex::new(options.attached.then_some(first)),
            connections: AtomicU64::new(0),
        }
    }

    /// Records a reverse dynamic forward's `permit_remote_open`, for List.
    pub fn with_permit_remote_open(mut self, rule: Vec<String>) -> Self {
        self.permit_remote_open = rule;
        self
    }

    /// Starts counting and reporting a connection from `peer`, or refuses
    /// it (counted, `None`) when the tunnel or the daemon is at its cap.
    pub fn connection(&self, peer: impl std::fmt::Display) -> Option<Connection<'_>> {
        let slots = match (
            self.slots.clone().try_acquire_owned(),
            self.capacity.clone().try_acquire_owned(),
        ) {
            (Ok(mine), Ok(daemon)) => [mine, daemon],
            (mine, _) => {
                let refused = self.counters.refuse();
                // Logged at 1, 2, 4, 8, ... refusals: a flood stays readable.
                if refused.is_power_of_two() {
                    let which = if mine.is_err() {
                        format!("the tunnel's cap of {} connections", self.max_connections)
                    } else {
                        "tunneld's cap (--max-connections)".to_string()
                    };
                    tracing::warn!(%peer, refused, "connection refused: {which} is reached");
                }
                return None;
            }
        };
        let id = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        Some(Connection::new(self, id, peer.to_string(), slots))
    }

    /// How long a new connection waits for a lost SSH connection.
    pub fn reconnect_wait(&self) -> Duration {
        self.reconnect_wait
    }

    /// Carries one accepted connection over `channel` until it ends; a
    /// reset at a buffer limit marks it failed, with the limit named. With `session`, a slow
    /// reader may hold that SSH connection back while alone on it.
    pub async fn relay_connection<S: LocalStream>(
        &self,
        conn: &Connection<'_>,
        local: S,
        channel: SshChannel,
        session: Option<&Arc<SessionUse>>,
    ) {
        let cancel = self.cancel.child_token();
        let idled = AtomicBool::new(false);
        let carried = relay(
            local,
            channel,
            conn.byte_counters(),
            &self.buffers,
            session,
            &cancel,
        );
        let end = match self.idle_timeout {
            None => carried.await,
            Some(limit) => tokio::select! {
                end = carried => end,
                () = close_when_idle(conn, limit, &cancel, &idled) => unreachable!(),
            },
        };
        if idled.load(Ordering::Relaxed) {
            let reason = format!(
                "closed after {} without traffic (idle_timeout)",
                humantime::format_duration(self.idle_timeout.unwrap_or_default())
            );
            tracing::debug!("connection {reason}");
            conn.ended_by(reason);
            return;
        }
        match end {
            RelayEnd::Overflow(limit) => {
                let reason = overflow_reason(&limit, &self.buffers);
                tracing::warn!("connection {reason}");
                self.counters.limit_reset();
                conn.fail(reason);
            }
            RelayEnd::SshLost => conn.fail("the SSH connection was lost"),
            RelayEnd::LocalError => tracing::debug!("connection ended by a local reset"),
            end => tracing::debug!(?end, "connection ended"),
        }
    }

    /// Reports an event to whoever is attached or watching.
    fn emit(&self, event: TunnelEvent) {
        self.observer.connection_event(&self.id, &event);
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

    /// Sets the state and its detail, and publishes the change.
    pub fn set_state(&self, state: TunnelState, detail: impl Into<String>) {
        let new = (state, detail.into());
        let changed = self.status.send_if_modified(|s| {
            let changed = *s != new;
            *s = new;
            changed
        });
        if changed {
            self.observer.tunnel_changed(self.snapshot());
        }
    }

    /// Marks the tunnel `Reconnecting`, with the host's attempt and next
    /// try, while its SSH connection is down.
    pub fn on_link(&self, link: &Link) {
        if link.live().is_none() && self.state() != TunnelState::Closed {
            self.set_state(
                TunnelState::Reconnecting,
                format!("reconnecting to {}: {}", self.host, link.state.detail()),
            );
        }
    }

    /// Marks the tunnel carrying again after an outage.
    pub fn restored(&self) {
        if self.state() != TunnelState::Open {
            self.restores.fetch_add(1, Ordering::Relaxed);
            tracing::info!(tunnel = %self.id, "tunnel restored");
            self.set_state(TunnelState::Open, "");
        }
    }

    /// The current state.
    pub fn state(&self) -> TunnelState {
        self.status.borrow().0
    }

    /// Publishes the tunnel as it is now (e.g. just opened).
    pub fn announce(&self) {
        self.observer.tunnel_changed(self.snapshot());
    }

    /// Stops taking new connections (tunneld draining): a local forward
    /// closes its port or socket (a new connection is refused), a remote
    /// one is cancelled on the server; the connections open go on until
    /// they end or the tunnel closes.
    pub fn stop_accepting(&self) {
        self.accepting.cancel();
    }

    /// Connections carried right now.
    pub fn active_connections(&self) -> u64 {
        self.counters
            .active
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Closes the tunnel: cancels its listener and connections, waits
    /// (bounded) for them to end, and returns it with its final counters.
    pub async fn close(&self) -> TunnelSnapshot {
        self.close_as(TunnelState::Closed, String::new()).await
    }

    /// Closes the tunnel as [`Tunnel::close`] does, to be opened again
    /// with its id (its host replaced): it ends RECONNECTING with `why`,
    /// not CLOSED, so watchers are not told of an end that is not one.
    pub async fn close_to_reopen(&self, why: String) -> TunnelSnapshot {
        self.close_as(TunnelState::Reconnecting, why).await
    }

    async fn close_as(&self, last: TunnelState, detail: String) -> TunnelSnapshot {
        self.cancel.cancel();
        self.tasks.close();
        if tokio::time::timeout(CLOSE_TIMEOUT, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(tunnel = %self.id, "tunnel tasks did not finish within {}s", CLOSE_TIMEOUT.as_secs());
        }
        drop(self.hold.lock().unwrap_or_else(|p| p.into_inner()).take());
        self.set_state(last, detail);
        tracing::info!(tunnel = %self.id, "tunnel closed");
        self.snapshot()
    }

    /// A point-in-time view.
    pub fn snapshot(&self) -> TunnelSnapshot {
        let (state, detail) = self.status.borrow().clone();
        TunnelSnapshot {
            id: self.id.clone(),
            name: self.name.clone(),
            source: self.source,
            kind: self.kind,
            host: self.host.clone(),
            local: self.local.clone(),
            remote: self.remote.clone(),
            state,
            detail,
            created_at: self.created_at,
            counters: self.counters.snapshot(),
            attached: self.attached,
            max_connections: self.max_connections,
            idle_timeout: self.idle_timeout,
            restores: self.restores.load(Ordering::Relaxed),
            permit_remote_open: self.permit_remote_open.clone(),
        }
    }

    /// Whether `key` is this tunnel's id or name (what Close and Watch
    /// accept).
    pub fn answers_to(&self, key: &str) -> bool {
        self.id == key || self.name.as_deref() == Some(key)
    }
}

impl TunnelSnapshot {
    /// A tunnel that is not running: a persisted one not restored yet or a
    /// declared one not opened yet (`Reconnecting` while first tried, then
    /// `Failed`, with why), or one closed before it was.
    pub fn not_running(
        id: String,
        source: TunnelSource,
        name: Option<String>,
        host: String,
        spec: &ForwardSpec,
        state: TunnelState,
        detail: String,
    ) -> TunnelSnapshot {
        let (local, remote) = spec.ends();
        let limits = spec.connection_limits();
        let permit_remote_open = match spec {
            ForwardSpec::Remote(r) if r.target == Endpoint::Socks => r.permit_remote_open.entries(),
            _ => Vec::new(),
        };
        TunnelSnapshot {
            id,
            name,
            source,
            kind: spec.kind(),
            host,
            local,
            remote,
            state,
            detail,
            created_at: SystemTime::now(),
            counters: CountersSnapshot::default(),
            attached: false,
            max_connections: limits.max_connections.unwrap_or(0),
            idle_timeout: limits.idle_timeout,
            restores: 0,
            permit_remote_open,
        }
    }
}

/// Why a connection whose reader lagged was reset: the limit it reached and
/// the flag that raises it.
fn overflow_reason(limit: &SpillError, buffers: &RelayBuffers) -> String {
    let memory = size(buffers.max_buffer as u64);
    let spill = &buffers.spill;
    match limit {
        SpillError::Disabled => format!(
            "reset: its reader fell more than {memory} behind (--max-connection-buffer; \
             spilling to disk is off: --max-connection-spill 0)"
        ),
        SpillError::ConnectionLimit => format!(
            "reset: its reader fell more than {memory} in memory and {} on disk behind \
             (--max-connection-spill)",
            size(spill.per_connection())
        ),
        SpillError::TotalLimit => format!(
            "reset: its reader fell more than {memory} behind and tunneld's spill files \
             already hold {}, all that --max-spill allows (--max-spill)",
            size(spill.total())
        ),
        SpillError::Io(e) => format!(
            "reset: its reader fell more than {memory} behind and its spill file in {} \
             failed: {e} (--spill-dir)",
            spill.dir().display()
        ),
    }
}

/// A size as people write it: `8 MiB`, `1 GiB`, `1536 KiB`.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Cancels `cancel` (and sets `idled`) once no byte has moved on `conn` for
/// `limit`; checked four times per `limit`. Never returns.
async fn close_when_idle(
    conn: &Connection<'_>,
    limit: Duration,
    cancel: &CancellationToken,
    idled: &AtomicBool,
) {
    let tick = (limit / 4).max(Duration::from_millis(20));
    let mut last = conn.bytes();
    let mut quiet_since = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(tick).await;
        let now = conn.bytes();
        if now != last {
            last = now;
            quiet_since = tokio::time::Instant::now();
        } else if quiet_since.elapsed() >= limit {
            idled.store(true, Ordering::Relaxed);
            cancel.cancel();
            return std::future::pending().await;
        }
    }
}
