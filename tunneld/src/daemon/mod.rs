//! The domain facade: the operations the API offers (exec, open, list,
//! close, shutdown), over the configured hosts and the tunnel registry.
//!
//! Architecture invariant: this is the whole surface the gRPC layer calls; it
//! takes and returns domain types only.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::sync::{Semaphore, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    config::{self, Config, HostDefaults, Limits},
    error::{Error, Result},
    exec::{self, ExecOutput, ExecSpec},
    policy::BindPolicy,
    relay::spill::SpillPolicy,
    ssh::{ExecOutcome, HostCountersSnapshot, HostSnapshot, SshHost},
    state::TunnelRecord,
    tunnel::{
        self, Attachment, Endpoint, ForwardSpec, LocalForwardSpec, NameClaim, Registry,
        RemoteForwardSpec, Tunnel, TunnelObserver, TunnelOptions, TunnelSnapshot, TunnelSource,
        id_of, seq_of,
    },
};

pub use self::{
    host_changes::HostRemoved,
    hosts::HostSource,
    lifecycle::{Lifecycle, Phase},
    reload::Reloaded,
};
/// What AddHost asks for (the config's type: it resolves like `--ssh`).
pub use crate::config::HostRequest;

use self::{
    hosts::Hosts,
    persist::{Persistence, worth_retrying},
    watch::{Bus, Change, NextTunnel, WatchFilter, Watcher},
};

mod host_changes;
mod hosts;
mod lifecycle;
mod persist;
mod reload;
pub mod watch;

/// First wait before trying again to restore a persisted tunnel; doubled
/// after each failure up to [`RESTORE_RETRY_MAX`].
const RESTORE_RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest wait between attempts to restore a persisted tunnel.
const RESTORE_RETRY_MAX: Duration = Duration::from_secs(60);

/// What a caller asks of a tunnel besides the forward itself.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// A name, unique among open tunnels (checked by the caller's layer
    /// with `tunnel_proto::name::check_tunnel_name`).
    pub name: Option<String>,
    /// Keep it across restarts, in the state store.
    pub persist: bool,
}

/// How one open runs: the id it takes and what it records.
struct Opening {
    /// A restored tunnel's own sequence number; `None`: a fresh one.
    seq: Option<u64>,
    attached: bool,
    name: Option<String>,
    source: TunnelSource,
    /// Record it in the store once open (a new persisted tunnel).
    record: bool,
}

/// How often a drain looks whether the open connections ended.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Bound on waiting for running commands to end at shutdown.
const EXEC_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A host, how many tunnels run over it, and where it comes from.
#[derive(Debug, Clone)]
pub struct HostStatus {
    /// The host's state.
    pub host: HostSnapshot,
    /// Open tunnels over it.
    pub tunnels: u32,
    /// Who configured it.
    pub source: HostSource,
}

/// What the daemon says about itself.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    /// tunneld's version.
    pub version: &'static str,
    /// When the daemon was created.
    pub started_at: SystemTime,
    /// Its process id.
    pub pid: u32,
}

/// tunneld's core: hosts, tunnels, and running execs.
pub struct Daemon {
    /// The hosts known now: the config's and those added at runtime.
    hosts: Hosts,
    /// What a host added at runtime starts from; replaced at reload.
    host_defaults: RwLock<Option<Arc<HostDefaults>>>,
    /// Shared with attachments, which remove their tunnel when dropped.
    tunnels: Arc<Registry>,
    limits: Limits,
    /// Where a lagging reader's bytes wait on disk.
    spill: SpillPolicy,
    /// Where local forwards may listen beyond loopback.
    allow_local_bind: BindPolicy,
    /// Places for connections under `--max-connections`, shared by tunnels.
    capacity: Arc<Semaphore>,
    /// Places for Watch streams under `--max-watchers`.
    watchers: Arc<Semaphore>,
    /// Places for running commands under `--max-execs`.
    exec_slots: Arc<Semaphore>,
    /// Opens under way, counted with the open tunnels against
    /// `--max-tunnels`.
    opening: Arc<AtomicUsize>,
    /// Every change to hosts and tunnels, for watchers.
    bus: Bus,
    /// The bus as every tunnel's observer: one, shared.
    observer: Arc<dyn TunnelObserver>,
    started_at: SystemTime,
    /// Root of the cancellation tree: every host connect, tunnel and exec
    /// holds a child.
    shutdown: CancellationToken,
    /// Set by the first `shutdown` call.
    stopped: AtomicBool,
    execs: TaskTracker,
    /// The state store, and the persisted and declared tunnels not running
    /// yet.
    persistence: Persistence,
    /// The config file, which alone may close a declared tunnel.
    config_file: Option<std::path::PathBuf>,
    /// The declared tunnels by name: their id and what they declare.
    // std Mutex: never held across an await.
    declared: Mutex<BTreeMap<String, (u64, Vec<u8>)>>,
    /// How to read the config again on SIGHUP.
    reloader: Option<config::Reloader>,
    /// Held by the reload under way: one at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Starting, ready, reloading, draining, stopping.
    lifecycle: Lifecycle,
}

impl Daemon {
    /// A daemon for `config`; cancelling `shutdown` stops everything.
    /// Must be called within a tokio runtime (it starts one task per host
    /// that publishes the host's changes).
    pub fn new(config: Config, shutdown: CancellationToken, lifecycle: Lifecycle) -> Self {
        let bus = Bus::default();
        let tunnels: Arc<Registry> = Arc::default();
        let hosts = Hosts::new(shutdown.clone(), bus.clone(), tunnels.clone());
        for (_, h) in config.hosts {
            // Names are unique in the config's map: no refusal here.
            let _ = hosts.insert(h, HostSource::Config, false);
        }
        hosts.set_default(config.default_host);
        let persistence = Persistence::open(config.state_dir.as_deref(), &tunnels, bus.clone());
        let declared = persistence
            .declare(&tunnels, config.tunnels)
            .into_iter()
            .map(|(name, seq, print)| (name, (seq, print)))
            .collect();
        let daemon = Daemon {
            hosts,
            host_defaults: RwLock::new(config.host_defaults),
            tunnels,
            capacity: Arc::new(Semaphore::new(config.limits.max_connections)),
            watchers: Arc::new(Semaphore::new(config.limits.max_watchers)),
            exec_slots: Arc::new(Semaphore::new(config.limits.max_execs)),
            opening: Arc::default(),
            observer: Arc::new(bus.clone()),
            bus,
            limits: config.limits,
            spill: config.spill,
            allow_local_bind: config.allow_local_bind,
            started_at: SystemTime::now(),
            shutdown,
            stopped: AtomicBool::new(false),
            execs: TaskTracker::new(),
            persistence,
            config_file: config.file,
            declared: Mutex::new(declared),
            reloader: config.reloader,
            reloading: tokio::sync::Mutex::new(()),
            lifecycle,
        };
        // Before any tunnel is restored: persisted tunnels may run over them.
        daemon.restore_hosts();
        if daemon.hosts.len() == 0 {
            tracing::warn!(
                "no SSH host configured: add one with `tunnelctl host add NAME --ssh USER@HOST[:PORT]`, \
                 or start tunneld with --ssh or --config"
            );
        }
        daemon
    }

    /// Restores the persisted tunnels: tries each once and returns; those
    /// that failed for a reason that may pass are tried again in the
    /// background (1 s, doubling to 60 s) until restored, closed, or
    /// tunneld stops.
    pub async fn restore(self: &Arc<Self>) {
        self.open_waiting(self.persistence.waiting()).await;
        self.lifecycle.set(Phase::Ready);
    }

    /// Where tunneld is in its life.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    /// Drains (the first SIGTERM): no new work (opens and Execs are
    /// refused), every tunnel stops taking connections, and the open ones
    /// get up to `timeout` to end; returns then, or when every one ended,
    /// or when `now` resolves (a second SIGTERM). The caller then shuts
    /// down.
    pub async fn drain(&self, timeout: Duration, now: impl std::future::Future<Output = ()>) {
        self.lifecycle.set(Phase::Draining);
        for t in self.tunnels.list() {
            t.stop_accepting();
        }
        let open = || -> u64 {
            self.tunnels
                .list()
                .iter()
                .map(|t| t.active_connections())
                .sum()
        };
        let n = open();
        if n == 0 {
            tracing::info!("draining: no connection open");
            return;
        }
        tracing::info!(
            connections = n,
            "draining: no new connections; the open ones get up to {} (--drain-timeout) to end; \
             SIGTERM again stops at once",
            humantime::format_duration(timeout)
        );
        let ended = async {
            while open() > 0 {
                tokio::time::sleep(DRAIN_POLL).await;
            }
        };
        tokio::select! {
            () = ended => tracing::info!("drained: every connection ended"),
            () = tokio::time::sleep(timeout) => tracing::warn!(
                connections = open(),
                "drain time over (--drain-timeout): closing the connections still open"
            ),
            () = now => tracing::info!(connections = open(), "drain cut short: stopping now"),
        }
    }

    /// Opens the waiting tunnels `waiting` once each, then keeps trying
    /// those that failed for a reason that may pass.
    async fn open_waiting(self: &Arc<Self>, waiting: Vec<u64>) {
        let first = waiting.iter().map(|&seq| self.restore_once(seq));
        let results = futures_util::future::join_all(first).await;
        for (seq, retry) in waiting.into_iter().zip(results) {
            if retry {
                let daemon = self.clone();
                let span = tracing::info_span!(parent: None, "restore", tunnel = %id_of(seq));
                tokio::spawn(
                    async move {
                        let mut wait = RESTORE_RETRY_MIN;
                        loop {
                            tokio::select! {
                                () = daemon.shutdown.cancelled() => return,
                                () = tokio::time::sleep(wait) => {}
                            }
                            if !daemon.restore_once(seq).await {
                                return;
                            }
                            wait = (wait * 2).min(RESTORE_RETRY_MAX);
                        }
                    }
                    .instrument(span),
                );
            }
        }
    }

    /// One attempt to restore the persisted tunnel `seq`; whether it is
    /// worth another.
    async fn restore_once(&self, seq: u64) -> bool {
        let Some((record, source)) = self.persistence.record(seq) else {
            return false; // closed meanwhile
        };
        let id = id_of(seq);
        let how = Opening {
            seq: Some(seq),
            attached: false,
            name: record.name.clone(),
            source,
            record: false,
        };
        let what = match source {
            TunnelSource::Declared => "declared tunnel",
            TunnelSource::Persisted => "persisted tunnel",
            TunnelSource::Api => "tunnel",
        };
        match self.open(&record.host, record.spec.clone(), how).await {
            Ok((seq, t)) => match self.persistence.take(seq).and_then(|w| w.claim) {
                Some(claim) => {
                    tracing::info!(tunnel = %id, name = record.name.as_deref().unwrap_or(""), host = %record.host, local = %t.local, remote = %t.remote, "{what} open");
                    self.tunnels.insert(seq, t.clone(), claim);
                    t.announce();
                    false
                }
                // Closed while it was being opened (or, never, a tunnel
                // without its name).
                None => {
                    t.close().await;
                    false
                }
            },
            Err(e) => {
                let retry = worth_retrying(&e);
                let then = if retry {
                    "tunneld tries again"
                } else {
                    "it is kept: fix the cause and restart, or close it to forget it"
                };
                tracing::error!(tunnel = %id, name = record.name.as_deref().unwrap_or(""), host = %record.host, "{what} not opened: {e}; {then}");
                self.persistence
                    .set_failed(seq, format!("not opened: {e}; {then}"));
                retry
            }
        }
    }

    fn host(&self, name: &str) -> Result<Arc<SshHost>> {
        if self.shutdown.is_cancelled() || self.lifecycle.is_stopping() {
            return Err(Error::ShuttingDown);
        }
        self.hosts.get(name)
    }

    /// Runs a command on `host` (empty: the default host).
    pub async fn exec(&self, host: &str, spec: ExecSpec) -> Result<ExecOutput> {
        let host = self.host(host)?;
        let slot = self.exec_slots.clone().try_acquire_owned().map_err(|_| {
            host.counters().exec_ended(ExecOutcome::Error);
            Error::LimitReached {
                what: "commands running",
                limit: self.limits.max_execs,
                flag: "--max-execs",
                hint: "wait for one to end",
            }
        })?;
        let cancel = self.shutdown.child_token();
        let output = exec::start(
            &host,
            spec,
            self.limits.max_buffer_per_connection,
            cancel,
            &self.execs,
        )
        .await
        .inspect_err(|_| host.counters().exec_ended(ExecOutcome::Error))?;
        Ok(output.holding(slot).counted_on(host))
    }

    /// Opens a local forward over `host`; with a SOCKS target, a dynamic
    /// one (`ssh -D`).
    pub async fn open_local(
        &self,
        host: &str,
        spec: LocalForwardSpec,
        options: OpenOptions,
    ) -> Result<TunnelSnapshot> {
        self.open_kept(host, ForwardSpec::Local(spec), options)
            .await
    }

    /// Opens a remote forward over `host`.
    pub async fn open_remote(
        &self,
        host: &str,
        spec: RemoteForwardSpec,
        options: OpenOptions,
    ) -> Result<TunnelSnapshot> {
        self.open_kept(host, ForwardSpec::Remote(spec), options)
            .await
    }

    /// Opens a tunnel that stays until closed (and, persisted, across
    /// restarts).
    async fn open_kept(
        &self,
        host: &str,
        spec: ForwardSpec,
        options: OpenOptions,
    ) -> Result<TunnelSnapshot> {
        if options.persist {
            self.persistence.store("tunnel")?;
        }
        let claim = self.claim_name(options.name.as_deref())?;
        let how = Opening {
            seq: None,
            attached: false,
            name: options.name,
            source: if options.persist {
                TunnelSource::Persisted
            } else {
                TunnelSource::Api
            },
            record: options.persist,
        };
        let (seq, t) = self.open(host, spec, how).await?;
        Ok(self.register(seq, t, claim))
    }

    /// Holds `name` for a tunnel being opened, or says who has it.
    fn claim_name(&self, name: Option<&str>) -> Result<NameClaim> {
        self.tunnels
            .claim_name(name)
            .map_err(|holder| Error::NameTaken {
                name: name.unwrap_or_default().to_string(),
                holder,
            })
    }

    /// Opens a forward that lives as long as the returned [`Attachment`].
    /// Attached tunnels are never persisted: their caller is their life.
    pub async fn open_attached(
        &self,
        host: &str,
        spec: ForwardSpec,
        name: Option<String>,
    ) -> Result<Attachment> {
        let claim = self.claim_name(name.as_deref())?;
        let how = Opening {
            seq: None,
            attached: true,
            name,
            source: TunnelSource::Api,
            record: false,
        };
        let (seq, t) = self.open(host, spec, how).await?;
        let events = t.take_attach_events();
        // Registered before the attachment exists, so dropping it always
        // finds the tunnel to close.
        self.tunnels.insert(seq, t.clone(), claim);
        t.announce();
        Ok(Attachment::new(t, events, self.tunnels.clone()))
    }

    async fn open(
        &self,
        host: &str,
        spec: ForwardSpec,
        how: Opening,
    ) -> Result<(u64, Arc<Tunnel>)> {
        let host = self.host(host)?;
        let _opening = self.tunnel_slot()?;
        self.check_policy(&host, &spec).await?;
        let (seq, id) = match how.seq {
            Some(seq) => (seq, id_of(seq)),
            None => self.tunnels.next_id(),
        };
        self.persistence.cover(seq).await;
        let store = if how.record {
            Some(self.persistence.store("tunnel")?)
        } else {
            None
        };
        let limits = spec.connection_limits();
        let options = TunnelOptions {
            max_buffer: self.limits.max_buffer_per_connection,
            spill: self.spill.clone(),
            copy_buffer: self.limits.copy_buffer,
            attached: how.attached,
            name: how.name.clone(),
            source: how.source,
            max_connections: limits
                .max_connections
                .unwrap_or(self.limits.max_connections_per_tunnel),
            idle_timeout: limits.idle_timeout,
            reconnect_wait: self.limits.reconnect_wait,
            capacity: self.capacity.clone(),
            observer: self.observer.clone(),
            asked: spec.clone(),
        };
        // Opened in a task of its own: a caller that goes away (deadline,
        // cancel) while the server's reply is pending does not stop it
        // half-way; the task closes what it opened when nobody takes it (a
        // remote forward's cancel-tcpip-forward, a local port's release).
        let parent = self.shutdown.clone();
        let (taken, opened) = oneshot::channel();
        let span = tracing::debug_span!("open", tunnel = %id, host = %host.config().name);
        tokio::spawn(
            async move {
                let host_name = host.config().name.clone();
                let result = match spec.clone() {
                    ForwardSpec::Local(spec) => {
                        tunnel::open_local(host, spec, id, &parent, options).await
                    }
                    ForwardSpec::Remote(spec) => {
                        tunnel::open_remote(host, spec, id, &parent, options).await
                    }
                };
                // A new persisted tunnel is recorded before anyone is told
                // it is open; if it cannot be, it is closed.
                let result = match (result, &store) {
                    (Ok(t), Some(store)) => {
                        let record = TunnelRecord {
                            seq,
                            name: how.name,
                            host: host_name,
                            spec: spec.bound_as(&t),
                        };
                        match Persistence::put(store.clone(), record).await {
                            Ok(()) => Ok(t),
                            Err(e) => {
                                t.close().await;
                                Err(e)
                            }
                        }
                    }
                    (result, _) => result,
                };
                if let Err(Ok(t)) = taken.send(result) {
                    tracing::info!(tunnel = %t.id, "the caller went away; closing what it opened");
                    t.close().await;
                    if let Some(store) = store
                        && let Err(e) = Persistence::remove(store, seq).await
                    {
                        tracing::error!(tunnel = %t.id, "{e}; the tunnel will come back at the next start");
                    }
                }
            }
            .instrument(span),
        );
        // Nothing awaits between this and the caller registering it.
        let t = opened.await.map_err(|_| Error::ShuttingDown)??;
        Ok((seq, t))
    }

    /// Counts an open under way against `--max-tunnels`, or refuses it.
    fn tunnel_slot(&self) -> Result<OpeningGuard> {
        let opening = self.opening.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = OpeningGuard(self.opening.clone());
        if self.tunnels.len() + opening > self.limits.max_tunnels {
            return Err(Error::LimitReached {
                what: "tunnels open",
                limit: self.limits.max_tunnels,
                flag: "--max-tunnels",
                hint: "close tunnels you no longer use",
            });
        }
        Ok(guard)
    }

    /// The forward policy, before anything is bound, dialled or asked. A
    /// dynamic forward's targets are checked per SOCKS request.
    async fn check_policy(&self, host: &SshHost, spec: &ForwardSpec) -> Result<()> {
        let config = host.config();
        let bind_ip = match spec {
            ForwardSpec::Local(l) => match &l.listen {
                Endpoint::Tcp { host: bind, port } => {
                    Some(tunnel::resolve_bind(bind, *port).await?.ip())
                }
                _ => None,
            },
            ForwardSpec::Remote(_) => None,
        };
        spec.check_permitted(
            &config.name,
            &config.settings.policy,
            &self.allow_local_bind,
            bind_ip,
        )
    }

    fn register(&self, seq: u64, t: Arc<Tunnel>, claim: NameClaim) -> TunnelSnapshot {
        let snapshot = t.snapshot();
        self.tunnels.insert(seq, t.clone(), claim);
        t.announce();
        snapshot
    }

    /// Follows hosts and tunnels: first their state now, then changes.
    /// With `tunnel_id`, only that tunnel and its host, until it closes.
    pub fn watch(&self, tunnel_id: &str) -> Result<Watcher> {
        let slot = self
            .watchers
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::LimitReached {
                what: "Watch streams open",
                limit: self.limits.max_watchers,
                flag: "--max-watchers",
                hint: "end a Watch you no longer read",
            })?;
        // Subscribed before the state is read: a change in between is seen
        // twice rather than lost.
        let rx = self.bus.subscribe();
        let hosts = self.hosts().into_iter().map(Change::Host);
        let watcher = if tunnel_id.is_empty() {
            // Those not running yet (persisted, declared: as List shows
            // them, a few at most) come after the hosts; the running
            // tunnels are walked as they are sent, not copied here.
            let waiting = self.persistence.snapshots().into_iter().map(Change::Tunnel);
            let tunnels = self.tunnels.clone();
            let next: NextTunnel =
                Box::new(move |after| tunnels.after(after).map(|(seq, t)| (seq, t.snapshot())));
            Watcher::new(
                hosts.chain(waiting).collect(),
                Some(next),
                rx,
                WatchFilter::default(),
                self.shutdown.child_token(),
            )
        } else {
            let t = match self.tunnels.find(tunnel_id) {
                Some((_, t)) => t.snapshot(),
                // One not running yet: its opening is its next message.
                None => self
                    .persistence
                    .snapshot(tunnel_id)
                    .ok_or_else(|| Error::TunnelNotFound(tunnel_id.to_string()))?,
            };
            let filter = WatchFilter {
                tunnel: Some((t.id.clone(), t.host.clone())),
            };
            let initial = hosts
                .chain(std::iter::once(Change::Tunnel(t)))
                .filter(|c| filter.wants(c))
                .collect();
            Watcher::new(initial, None, rx, filter, self.shutdown.child_token())
        };
        Ok(watcher.holding(slot))
    }

    /// The daemon's version, start time and process id.
    pub fn info(&self) -> DaemonInfo {
        DaemonInfo {
            version: env!("CARGO_PKG_VERSION"),
            started_at: self.started_at,
            pid: std::process::id(),
        }
    }

    /// Every open tunnel (oldest first) and every host with its state.
    /// Persisted tunnels not restored yet are listed too: `Reconnecting`
    /// while first tried, then `Failed` with the reason.
    pub fn list(&self) -> (Vec<TunnelSnapshot>, Vec<HostStatus>) {
        (self.tunnel_snapshots(), self.hosts())
    }

    /// What the metrics endpoint reports, read at each scrape: the tunnels
    /// as [`Daemon::list`] shows them, and each host's state with its
    /// counters.
    pub fn metrics_view(
        &self,
    ) -> (
        Vec<TunnelSnapshot>,
        Vec<(HostSnapshot, HostCountersSnapshot)>,
    ) {
        let hosts = self
            .hosts
            .list()
            .into_iter()
            .map(|(h, _)| (h.snapshot(), h.counters().snapshot()))
            .collect();
        (self.tunnel_snapshots(), hosts)
    }

    /// Every open tunnel and every persisted one not restored yet, oldest
    /// first.
    fn tunnel_snapshots(&self) -> Vec<TunnelSnapshot> {
        let mut tunnels: Vec<TunnelSnapshot> =
            self.tunnels.list().iter().map(|t| t.snapshot()).collect();
        let waiting = self.persistence.snapshots();
        if !waiting.is_empty() {
            tunnels.extend(waiting);
            tunnels.sort_by_key(|t| seq_of(&t.id));
        }
        tunnels
    }

    /// Every host with its state and how many tunnels it carries.
    fn hosts(&self) -> Vec<HostStatus> {
        let tunnels = self.tunnels.list();
        self.hosts
            .list()
            .into_iter()
            .map(|(h, source)| host_status(&h, source, &tunnels))
            .collect()
    }

    /// Closes a tunnel: frees its port or cancels its remote forward, and
    /// closes its connections. Returns it with its final counters.
    /// `key` is the tunnel's id or name. A persisted tunnel is forgotten by
    /// the store before the call returns.
    pub async fn close(&self, key: &str) -> Result<TunnelSnapshot> {
        let Some((seq, t)) = self.tunnels.find(key) else {
            return self.forget_waiting(key).await;
        };
        let store = match t.source {
            TunnelSource::Persisted => Some(self.persistence.store("tunnel")?),
            TunnelSource::Declared => return Err(self.declared(&t.id, t.name.as_deref())),
            TunnelSource::Api => None,
        };
        // Closed in a task of its own, so a caller that goes away does not
        // leave it half-closed.
        let tunnels = self.tunnels.clone();
        let span = tracing::debug_span!("close", tunnel = %t.id);
        tokio::spawn(
            async move {
                // Forgotten first: a crash after this leaves no record of a
                // tunnel whose close was acknowledged.
                if let Some(store) = store {
                    Persistence::remove(store, seq).await?;
                }
                let t = tunnels
                    .remove(&t.id)
                    .ok_or_else(|| Error::TunnelNotFound(t.id.clone()))?;
                Ok(t.close().await)
            }
            .instrument(span),
        )
        .await
        .map_err(|_| Error::ShuttingDown)?
    }

    /// The refusal to close a declared tunnel: its file says what to edit.
    fn declared(&self, id: &str, name: Option<&str>) -> Error {
        Error::DeclaredTunnel {
            id: id.to_string(),
            name: name.unwrap_or_default().to_string(),
            file: self.config_file.clone().unwrap_or_default(),
        }
    }

    /// Closes a persisted tunnel that is not running: forgets its record.
    async fn forget_waiting(&self, key: &str) -> Result<TunnelSnapshot> {
        let (seq, source) = self
            .persistence
            .find(key)
            .ok_or_else(|| Error::TunnelNotFound(key.to_string()))?;
        if source == TunnelSource::Declared {
            let name = self.persistence.record(seq).and_then(|(r, _)| r.name);
            return Err(self.declared(&id_of(seq), name.as_deref()));
        }
        if source == TunnelSource::Persisted {
            let store = self.persistence.store("tunnel")?;
            Persistence::remove(store, seq).await?;
        }
        let closed = self
            .persistence
            .forget(seq)
            .ok_or_else(|| Error::TunnelNotFound(key.to_string()))?;
        tracing::info!(tunnel = %closed.id, name = closed.name.as_deref().unwrap_or(""), "tunnel that was not running forgotten");
        Ok(closed)
    }

    /// Stops everything: cancels the root token, waits (bounded) for tunnels
    /// and execs to end, and disconnects every host.
    /// Only the first call does anything.
    pub async fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        self.lifecycle.set(Phase::Stopping);
        self.shutdown.cancel();
        let tunnels = self.tunnels.drain();
        futures_util::future::join_all(tunnels.iter().map(|t| t.close())).await;
        self.execs.close();
        let _ = tokio::time::timeout(EXEC_SHUTDOWN_TIMEOUT, self.execs.wait()).await;
        for h in self.hosts.drain() {
            h.stop().await;
        }
        tracing::info!(
            tunnels = tunnels.len(),
            "all tunnels closed and SSH connections ended"
        );
    }
}

/// An open under way; uncounted when dropped.
struct OpeningGuard(Arc<AtomicUsize>);

impl Drop for OpeningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `host` as List shows it, counting its tunnels among `tunnels`.
fn host_status(host: &SshHost, source: HostSource, tunnels: &[Arc<Tunnel>]) -> HostStatus {
    let name = &host.config().name;
    HostStatus {
        host: host.snapshot(),
        tunnels: tunnels.iter().filter(|t| &t.host == name).count() as u32,
        source,
    }
}
