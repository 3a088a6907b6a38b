//! The hosts tunneld knows right now: the config's, and those added at
//! runtime (AddHost, or persisted ones restored at start). Each host has a
//! stop token of its own under the daemon's, so removing one ends its
//! reconnects, its watcher and (with the host) its I/O thread, and nothing
//! else.

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    HostStatus,
    watch::{Bus, Change},
};
use crate::{
    config::HostConfig,
    error::{Error, Result},
    ssh::SshHost,
    tunnel::Registry,
};

/// Who configured a host, and so what keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSource {
    /// The config file, `--ssh` or ssh_config: changed by a reload only.
    Config,
    /// Added through the API; gone when tunneld stops.
    Api,
    /// Added through the API with persist: added again at every start.
    Persisted,
}

/// One known host.
pub(super) struct HostEntry {
    pub host: Arc<SshHost>,
    pub source: HostSource,
    /// Ends the host's publisher and reconnects.
    stop: CancellationToken,
}

impl HostEntry {
    /// Stops the host: no more reconnects, its publisher ends; then its
    /// connections are closed.
    pub async fn stop(&self) {
        self.stop.cancel();
        self.host.disconnect().await;
    }
}

#[derive(Default)]
struct Table {
    map: BTreeMap<String, HostEntry>,
    default: Option<String>,
}

/// The host table.
pub(super) struct Hosts {
    // std RwLock: never held across an await.
    table: RwLock<Table>,
    shutdown: CancellationToken,
    bus: Bus,
    tunnels: Arc<Registry>,
}

impl Hosts {
    /// An empty table; hosts' stop tokens hang from `shutdown`, and their
    /// changes go to `bus` with their tunnel counts from `tunnels`.
    pub fn new(shutdown: CancellationToken, bus: Bus, tunnels: Arc<Registry>) -> Hosts {
        Hosts {
            table: RwLock::default(),
            shutdown,
            bus,
            tunnels,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the host a request naming none gets.
    pub fn set_default(&self, name: Option<String>) {
        self.write().default = name;
    }

    /// The host `name` (empty: the default host), or why there is none.
    pub fn get(&self, name: &str) -> Result<Arc<SshHost>> {
        let table = self.read();
        let known = || table.map.keys().cloned().collect::<Vec<_>>().join(", ");
        // With no default named, a lone host is it (as at start).
        let lone = match table.map.len() {
            1 => table.map.keys().next(),
            _ => None,
        };
        let name = match (name, table.default.as_ref().or(lone)) {
            ("", Some(d)) => d.as_str(),
            ("", None) => return Err(Error::NoDefaultHost { known: known() }),
            (n, _) => n,
        };
        table
            .map
            .get(name)
            .map(|e| e.host.clone())
            .ok_or_else(|| Error::HostNotFound {
                name: name.to_string(),
                known: known(),
            })
    }

    /// How many hosts there are.
    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// Where host `name` comes from, if it exists.
    pub fn source(&self, name: &str) -> Option<HostSource> {
        self.read().map.get(name).map(|e| e.source)
    }

    /// Every host with where it comes from, by name.
    pub fn list(&self) -> Vec<(Arc<SshHost>, HostSource)> {
        self.read()
            .map
            .values()
            .map(|e| (e.host.clone(), e.source))
            .collect()
    }

    /// Every host's configuration, by name (for a new host's jump hops).
    pub fn configs(&self) -> BTreeMap<String, HostConfig> {
        self.read()
            .map
            .iter()
            .map(|(n, e)| (n.clone(), e.host.config().clone()))
            .collect()
    }

    /// The config's hosts, by name.
    pub fn config_hosts(&self) -> BTreeMap<String, Arc<SshHost>> {
        self.read()
            .map
            .iter()
            .filter(|(_, e)| e.source == HostSource::Config)
            .map(|(n, e)| (n.clone(), e.host.clone()))
            .collect()
    }

    /// Adds `config` as a host; refused when its name is taken. With
    /// `replace`, a host of that name is replaced and returned instead
    /// (stop it once its tunnels are moved).
    pub fn insert(
        &self,
        config: HostConfig,
        source: HostSource,
        replace: bool,
    ) -> Result<(Arc<SshHost>, Option<HostEntry>)> {
        let name = config.name.clone();
        let stop = self.shutdown.child_token();
        let host = Arc::new(SshHost::new(config, stop.clone()));
        let old = {
            let mut table = self.write();
            if !replace && let Some(e) = table.map.get(&name) {
                return Err(Error::HostExists {
                    name,
                    how: match e.source {
                        HostSource::Config => "in the config",
                        HostSource::Api => "added through the API",
                        HostSource::Persisted => "added through the API and persisted",
                    },
                });
            }
            table.map.insert(
                name.clone(),
                HostEntry {
                    host: host.clone(),
                    source,
                    stop: stop.clone(),
                },
            )
        };
        // Watchers learn of the new host at once, not at its first change.
        self.bus.send(Change::Host(HostStatus {
            host: host.snapshot(),
            tunnels: 0,
            source,
        }));
        let span = tracing::info_span!(parent: None, "host_publish", host = %name);
        tokio::spawn(
            publish_host(
                host.clone(),
                source,
                self.tunnels.clone(),
                self.bus.clone(),
                stop,
            )
            .instrument(span),
        );
        Ok((host, old))
    }

    /// Takes host `name` out of the table; the caller stops it.
    pub fn remove(&self, name: &str) -> Option<HostEntry> {
        let mut table = self.write();
        let entry = table.map.remove(name)?;
        if table.default.as_deref() == Some(name) {
            table.default = None;
        }
        Some(entry)
    }

    /// Tells watchers that `entry`, taken out by [`Hosts::remove`] and its
    /// tunnels closed, is gone.
    pub fn announce_removed(&self, entry: &HostEntry) {
        self.bus.send(Change::HostRemoved(HostStatus {
            host: entry.host.snapshot(),
            tunnels: 0,
            source: entry.source,
        }));
    }

    /// Takes every host out (shutdown).
    pub fn drain(&self) -> Vec<HostEntry> {
        std::mem::take(&mut self.write().map)
            .into_values()
            .collect()
    }
}

/// Publishes every change of `host`'s connection on `bus` until `stop`.
async fn publish_host(
    host: Arc<SshHost>,
    source: HostSource,
    tunnels: Arc<Registry>,
    bus: Bus,
    stop: CancellationToken,
) {
    let mut link = host.subscribe();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            r = link.changed() => if r.is_err() { break },
        }
        link.borrow_and_update();
        let name = &host.config().name;
        let count = tunnels.list().iter().filter(|t| &t.host == name).count();
        bus.send(Change::Host(HostStatus {
            host: host.snapshot(),
            tunnels: count as u32,
            source,
        }));
    }
}
