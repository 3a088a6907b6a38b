//! The domain facade: the operations the API offers (exec, open, list,
//! close, shutdown), over the configured hosts and the tunnel registry.
//!
//! Architecture invariant: this is the whole surface the gRPC layer calls; it
//! takes and returns domain types only.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::sync::{Semaphore, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;

use crate::{
    config::{Config, Limits},
    error::{Error, Result},
    exec::{self, ExecOutput, ExecSpec},
    policy::BindPolicy,
    relay::spill::SpillPolicy,
    ssh::{HostSnapshot, SshHost},
    tunnel::{
        self, Attachment, Endpoint, ForwardSpec, LocalForwardSpec, Registry, RemoteForwardSpec,
        Tunnel, TunnelObserver, TunnelOptions, TunnelSnapshot,
    },
};

use self::watch::{Bus, Change, NextTunnel, WatchFilter, Watcher};

pub mod watch;

/// Bound on waiting for running commands to end at shutdown.
const EXEC_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A host and how many tunnels run over it.
#[derive(Debug, Clone)]
pub struct HostStatus {
    /// The host's state.
    pub host: HostSnapshot,
    /// Open tunnels over it.
    pub tunnels: u32,
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
    hosts: BTreeMap<String, Arc<SshHost>>,
    default_host: Option<String>,
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
}

impl Daemon {
    /// A daemon for `config`; cancelling `shutdown` stops everything.
    /// Must be called within a tokio runtime (it starts one task per host
    /// that publishes the host's changes).
    pub fn new(config: Config, shutdown: CancellationToken) -> Self {
        let hosts: BTreeMap<String, Arc<SshHost>> = config
            .hosts
            .into_iter()
            .map(|(name, h)| (name, Arc::new(SshHost::new(h, shutdown.child_token()))))
            .collect();
        let bus = Bus::default();
        let tunnels: Arc<Registry> = Arc::default();
        for (name, host) in &hosts {
            let span = tracing::info_span!(parent: None, "host_publish", host = %name);
            tokio::spawn(
                publish_host(host.clone(), tunnels.clone(), bus.clone(), shutdown.clone())
                    .instrument(span),
            );
        }
        Daemon {
            hosts,
            default_host: config.default_host,
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
        }
    }

    fn host(&self, name: &str) -> Result<Arc<SshHost>> {
        if self.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let known = || self.hosts.keys().cloned().collect::<Vec<_>>().join(", ");
        let name = match (name, &self.default_host) {
            ("", Some(d)) => d.as_str(),
            ("", None) => return Err(Error::NoDefaultHost { known: known() }),
            (n, _) => n,
        };
        self.hosts
            .get(name)
            .cloned()
            .ok_or_else(|| Error::HostNotFound {
                name: name.to_string(),
                known: known(),
            })
    }

    /// Runs a command on `host` (empty: the default host).
    pub async fn exec(&self, host: &str, spec: ExecSpec) -> Result<ExecOutput> {
        let host = self.host(host)?;
        let slot =
            self.exec_slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| Error::LimitReached {
                    what: "commands running",
                    limit: self.limits.max_execs,
                    flag: "--max-execs",
                    hint: "wait for one to end",
                })?;
        let cancel = self.shutdown.child_token();
        let output = exec::start(
            &host,
            spec,
            self.limits.max_buffer_per_connection,
            cancel,
            &self.execs,
        )
        .await?;
        Ok(output.holding(slot))
    }

    /// Opens a local forward over `host`; with a SOCKS target, a dynamic
    /// one (`ssh -D`).
    pub async fn open_local(&self, host: &str, spec: LocalForwardSpec) -> Result<TunnelSnapshot> {
        let (seq, t) = self.open(host, ForwardSpec::Local(spec), false).await?;
        Ok(self.register(seq, t))
    }

    /// Opens a remote forward over `host`.
    pub async fn open_remote(&self, host: &str, spec: RemoteForwardSpec) -> Result<TunnelSnapshot> {
        let (seq, t) = self.open(host, ForwardSpec::Remote(spec), false).await?;
        Ok(self.register(seq, t))
    }

    /// Opens a forward that lives as long as the returned [`Attachment`].
    pub async fn open_attached(&self, host: &str, spec: ForwardSpec) -> Result<Attachment> {
        let (seq, t) = self.open(host, spec, true).await?;
        let events = t.take_attach_events();
        // Registered before the attachment exists, so dropping it always
        // finds the tunnel to close.
        self.tunnels.insert(seq, t.clone());
        t.announce();
        Ok(Attachment::new(t, events, self.tunnels.clone()))
    }

    async fn open(
        &self,
        host: &str,
        spec: ForwardSpec,
        attached: bool,
    ) -> Result<(u64, Arc<Tunnel>)> {
        let host = self.host(host)?;
        let _opening = self.tunnel_slot()?;
        self.check_policy(&host, &spec).await?;
        let (seq, id) = self.tunnels.next_id();
        let limits = spec.connection_limits();
        let options = TunnelOptions {
            max_buffer: self.limits.max_buffer_per_connection,
            spill: self.spill.clone(),
            copy_buffer: self.limits.copy_buffer,
            attached,
            max_connections: limits
                .max_connections
                .unwrap_or(self.limits.max_connections_per_tunnel),
            idle_timeout: limits.idle_timeout,
            reconnect_wait: self.limits.reconnect_wait,
            capacity: self.capacity.clone(),
            observer: self.observer.clone(),
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
                let result = match spec {
                    ForwardSpec::Local(spec) => {
                        tunnel::open_local(host, spec, id, &parent, options).await
                    }
                    ForwardSpec::Remote(spec) => {
                        tunnel::open_remote(host, spec, id, &parent, options).await
                    }
                };
                if let Err(Ok(t)) = taken.send(result) {
                    tracing::info!(tunnel = %t.id, "the caller went away; closing what it opened");
                    t.close().await;
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
        let policy = &config.settings.policy;
        match spec {
            ForwardSpec::Local(l) => {
                if let Endpoint::Tcp { host: bind, port } = &l.listen {
                    let ip = tunnel::resolve_bind(bind, *port).await?.ip();
                    self.allow_local_bind.check(bind, ip)?;
                }
                match &l.target {
                    Endpoint::Tcp { host, port } => policy.check_open(&config.name, host, *port),
                    Endpoint::Unix { path } => {
                        policy.check_open_path(&config.name, &path.to_string_lossy())
                    }
                    Endpoint::Socks => Ok(()),
                }
            }
            ForwardSpec::Remote(r) => match &r.listen {
                Endpoint::Tcp { host, port } => policy.check_listen(&config.name, host, *port),
                Endpoint::Unix { path } => {
                    policy.check_listen_path(&config.name, &path.to_string_lossy())
                }
                Endpoint::Socks => Ok(()),
            },
        }
    }

    fn register(&self, seq: u64, t: Arc<Tunnel>) -> TunnelSnapshot {
        let snapshot = t.snapshot();
        self.tunnels.insert(seq, t.clone());
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
        let hosts = self.hosts().into_iter().map(|h| Change::Host {
            host: h.host,
            tunnels: h.tunnels,
        });
        let watcher = if tunnel_id.is_empty() {
            // The tunnels are walked as they are sent, not copied here.
            let tunnels = self.tunnels.clone();
            let next: NextTunnel =
                Box::new(move |after| tunnels.after(after).map(|(seq, t)| (seq, t.snapshot())));
            Watcher::new(
                hosts.collect(),
                Some(next),
                rx,
                WatchFilter::default(),
                self.shutdown.child_token(),
            )
        } else {
            let t = self
                .tunnels
                .list()
                .into_iter()
                .find(|t| t.id == tunnel_id)
                .ok_or_else(|| Error::TunnelNotFound(tunnel_id.to_string()))?
                .snapshot();
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
    pub fn list(&self) -> (Vec<TunnelSnapshot>, Vec<HostStatus>) {
        let tunnels: Vec<TunnelSnapshot> =
            self.tunnels.list().iter().map(|t| t.snapshot()).collect();
        (tunnels, self.hosts())
    }

    /// Every host with its state and how many tunnels it carries.
    fn hosts(&self) -> Vec<HostStatus> {
        let tunnels = self.tunnels.list();
        self.hosts
            .values()
            .map(|h| HostStatus {
                host: h.snapshot(),
                tunnels: tunnels.iter().filter(|t| t.host == h.config().name).count() as u32,
            })
            .collect()
    }

    /// Closes a tunnel: frees its port or cancels its remote forward, and
    /// closes its connections. Returns it with its final counters.
    pub async fn close(&self, id: &str) -> Result<TunnelSnapshot> {
        let t = self
            .tunnels
            .remove(id)
            .ok_or_else(|| Error::TunnelNotFound(id.to_string()))?;
        // Closed in a task of its own, so a caller that goes away does not
        // leave it half-closed.
        let span = tracing::debug_span!("close", tunnel = %t.id);
        tokio::spawn(async move { t.close().await }.instrument(span))
            .await
            .map_err(|_| Error::ShuttingDown)
    }

    /// Stops everything: cancels the root token, waits (bounded) for tunnels
    /// and execs to end, and disconnects every host.
    /// Only the first call does anything.
    pub async fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shutdown.cancel();
        let tunnels = self.tunnels.drain();
        futures_util::future::join_all(tunnels.iter().map(|t| t.close())).await;
        self.execs.close();
        let _ = tokio::time::timeout(EXEC_SHUTDOWN_TIMEOUT, self.execs.wait()).await;
        for h in self.hosts.values() {
            h.disconnect().await;
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

/// Publishes every change of `host`'s connection on `bus`.
async fn publish_host(
    host: Arc<SshHost>,
    tunnels: Arc<Registry>,
    bus: Bus,
    shutdown: CancellationToken,
) {
    let mut link = host.subscribe();
    let span = tracing::debug_span!("publish_host", host = %host.config().name);
    async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                r = link.changed() => if r.is_err() { break },
            }
            link.borrow_and_update();
            let name = &host.config().name;
            let count = tunnels.list().iter().filter(|t| &t.host == name).count();
            bus.send(Change::Host {
                host: host.snapshot(),
                tunnels: count as u32,
            });
        }
    }
    .instrument(span)
    .await
}
