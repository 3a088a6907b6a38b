//! Hosts changed while tunneld runs: added (AddHost, a persisted one at
//! start, a reload), removed (RemoveHost, a reload), replaced (a reload
//! that changes one). A replaced host's tunnels are opened again over the
//! new one with their ids, names and ports, as a restart would; their
//! connections in flight end, as when the SSH connection is lost.

use std::sync::Arc;

use super::{Daemon, HostStatus, host_status, hosts::HostSource, persist::Persistence};
use crate::{
    config::{HostConfig, HostDefaults, HostRequest},
    error::{Error, Result},
    state::{HostRecord, TunnelRecord},
    tunnel::{TunnelSnapshot, TunnelSource, id_of},
};

/// What RemoveHost did.
#[derive(Debug)]
pub struct HostRemoved {
    /// The host as it was when removed.
    pub host: HostStatus,
    /// The tunnels closed with it.
    pub closed: Vec<TunnelSnapshot>,
}

impl Daemon {
    /// What a host added now starts from.
    fn host_defaults(&self) -> Option<Arc<HostDefaults>> {
        self.host_defaults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds the persisted hosts read at start, before any tunnel is
    /// restored. One that cannot be added is logged by name and kept.
    pub(super) fn restore_hosts(&self) {
        let mut pending = self.persistence.take_hosts();
        if pending.is_empty() {
            return;
        }
        let Some(defaults) = self.host_defaults() else {
            tracing::error!(
                "persisted hosts not added: this tunneld was built without host defaults"
            );
            return;
        };
        // A host whose jump hops name another persisted host comes after it.
        while !pending.is_empty() {
            let names: Vec<String> = pending.iter().map(|r| r.name.clone()).collect();
            let (mut ready, later): (Vec<_>, Vec<_>) = pending
                .into_iter()
                .partition(|r| !hops(r).iter().any(|h| h != &r.name && names.contains(h)));
            pending = later;
            if ready.is_empty() {
                // They name one another in a loop: each is tried, and says so.
                ready = std::mem::take(&mut pending);
            }
            for record in ready {
                let name = record.name.clone();
                let request = request_of(record);
                let added = request
                    .resolve(&defaults, &self.hosts.configs())
                    .and_then(|config| self.hosts.insert(config, HostSource::Persisted, false));
                match added {
                    Ok((host, _)) => {
                        tracing::info!(host = %name, address = %host.config().display_address(), "persisted host added")
                    }
                    Err(e) => {
                        tracing::error!(host = %name, "persisted host not added: {e}; it is kept: remove it (tunnelctl host remove) or fix the cause and restart")
                    }
                }
            }
        }
    }

    /// Adds a host (AddHost); with `persist`, records it so every start
    /// adds it again. The tunnels persisted over a host of that name that
    /// were waiting for it are opened.
    pub async fn add_host(
        self: &Arc<Self>,
        request: HostRequest,
        persist: bool,
    ) -> Result<HostStatus> {
        if self.shutdown.is_cancelled() || self.lifecycle.is_stopping() {
            return Err(Error::ShuttingDown);
        }
        let defaults = self.host_defaults().ok_or_else(|| {
            Error::ConfigRejected(
                "this tunneld was built without host defaults: it cannot add hosts".into(),
            )
        })?;
        if self.hosts.len() >= self.limits.max_hosts {
            return Err(Error::LimitReached {
                what: "hosts",
                limit: self.limits.max_hosts,
                flag: "--max-hosts",
                hint: "remove hosts you no longer use",
            });
        }
        let store = match persist {
            true => Some(self.persistence.store("host")?),
            false => None,
        };
        let config = request
            .resolve(&defaults, &self.hosts.configs())
            .map_err(|e| match e {
                Error::Config(m) => Error::InvalidArgument(m),
                e => e,
            })?;
        let source = match persist {
            true => HostSource::Persisted,
            false => HostSource::Api,
        };
        // The table is the name's claim: a second add of the name fails here.
        let (host, _) = self.hosts.insert(config, source, false)?;
        // Runs to its end whatever the caller does.
        let daemon = self.clone();
        let name = request.name.clone();
        tokio::spawn(async move {
            if let Some(store) = store
                && let Err(e) = Persistence::put_host(store, record_of(&request)).await
            {
                if let Some(entry) = daemon.hosts.remove(&request.name) {
                    entry.stop().await;
                    daemon.hosts.announce_removed(&entry);
                }
                return Err(e);
            }
            tracing::info!(host = %request.name, address = %host.config().display_address(), persisted = persist, "host added");
            let waiting = daemon.persistence.waiting_over(&request.name);
            if !waiting.is_empty() {
                let d = daemon.clone();
                tokio::spawn(async move { d.open_waiting(waiting).await });
            }
            Ok(host_status(&host, source, &daemon.tunnels.list()))
        })
        .await
        .map_err(|_| Error::ShuttingDown)?
        .inspect_err(|e| tracing::warn!(host = %name, "host not added: {e}"))
    }

    /// Removes a host added at runtime (RemoveHost): refused while tunnels
    /// run over it unless `force`, which closes them (forgetting persisted
    /// ones). A persisted host is forgotten by the store first.
    pub async fn remove_host(self: &Arc<Self>, name: &str, force: bool) -> Result<HostRemoved> {
        if name.is_empty() {
            return Err(Error::InvalidArgument(
                "name the host to remove (tunnelctl host remove NAME)".into(),
            ));
        }
        // NOT_FOUND naming the hosts there are.
        self.hosts.get(name)?;
        let source = self.hosts.source(name).ok_or_else(|| Error::HostNotFound {
            name: name.to_string(),
            known: String::new(),
        })?;
        if source == HostSource::Config {
            let origin = match &self.config_file {
                Some(f) => format!(
                    "tunneld's config ({}, --ssh or --ssh-config-hosts)",
                    f.display()
                ),
                None => "tunneld's flags (--ssh or --ssh-config-hosts)".into(),
            };
            return Err(Error::ConfigHost {
                name: name.to_string(),
                origin,
            });
        }
        let running = self.tunnels.over_host(name);
        let waiting = self.persistence.waiting_over(name);
        if !force && (!running.is_empty() || !waiting.is_empty()) {
            let mut ids: Vec<u64> = running.iter().map(|(s, _)| *s).chain(waiting).collect();
            ids.sort_unstable();
            return Err(Error::HostBusy {
                name: name.to_string(),
                tunnels: ids.into_iter().map(id_of).collect::<Vec<_>>().join(", "),
            });
        }
        let store = match source {
            HostSource::Persisted => Some(self.persistence.store("host")?),
            _ => None,
        };
        let daemon = self.clone();
        let name = name.to_string();
        // Runs to its end whatever the caller does.
        tokio::spawn(async move {
            // Forgotten first: a crash after the acknowledged removal
            // cannot bring it back.
            if let Some(store) = store {
                Persistence::remove_host(store, name.clone()).await?;
            }
            let entry = daemon
                .hosts
                .remove(&name)
                .ok_or_else(|| Error::HostNotFound {
                    name: name.clone(),
                    known: String::new(),
                })?;
            let status = host_status(&entry.host, source, &daemon.tunnels.list());
            let mut closed = Vec::new();
            // Twice: an open that had the host before it was removed may
            // have registered its tunnel meanwhile.
            for _ in 0..2 {
                for (seq, _) in daemon.tunnels.over_host(&name) {
                    match daemon.close(&id_of(seq)).await {
                        Ok(t) => closed.push(t),
                        Err(e) => tracing::warn!(tunnel = %id_of(seq), host = %name, "not closed with its host: {e}"),
                    }
                }
                for seq in daemon.persistence.waiting_over(&name) {
                    if let Ok(t) = daemon.close(&id_of(seq)).await {
                        closed.push(t);
                    }
                }
            }
            entry.stop().await;
            daemon.hosts.announce_removed(&entry);
            tracing::info!(host = %name, tunnels = closed.len(), "host removed");
            Ok(HostRemoved {
                host: status,
                closed,
            })
        })
        .await
        .map_err(|_| Error::ShuttingDown)?
    }

    /// Replaces the config host of `config`'s name by it (a reload that
    /// changed it): its tunnels are opened again over the new one with
    /// their ids, names and ports; attached ones end.
    pub(super) async fn replace_host(self: &Arc<Self>, config: HostConfig) {
        let name = config.name.clone();
        let old = match self.hosts.insert(config, HostSource::Config, true) {
            Ok((_, old)) => old,
            Err(e) => {
                tracing::error!(host = %name, "host not replaced: {e}");
                return;
            }
        };
        let moved = self.set_aside(&name, "its host was replaced").await;
        if let Some(old) = old {
            old.stop().await;
        }
        tracing::info!(host = %name, tunnels = moved.len(), "host replaced by its new settings; reopening its tunnels");
        self.open_waiting(moved).await;
    }

    /// Closes the tunnels over host `name` and puts each back to wait with
    /// its id and name (attached ones just close); returns their sequence
    /// numbers.
    async fn set_aside(&self, name: &str, why: &str) -> Vec<u64> {
        let mut moved = Vec::new();
        for (seq, t) in self.tunnels.over_host(name) {
            if t.is_attached() {
                if let Some(t) = self.tunnels.remove(&t.id) {
                    t.close().await;
                }
                continue;
            }
            let Some((t, claim)) = self.tunnels.take_keeping_name(seq) else {
                continue;
            };
            t.close_to_reopen(format!("being reopened: {why}")).await;
            let record = TunnelRecord {
                seq,
                name: t.name.clone(),
                host: name.to_string(),
                spec: t.asked.clone().bound_as(&t),
            };
            tracing::info!(tunnel = %t.id, host = %name, "tunnel closed to be reopened: {why}");
            self.persistence.wait_again(record, t.source, claim, why);
            moved.push(seq);
        }
        moved
    }

    /// Removes the config host `name` (a reload that no longer has it):
    /// tunnels through the API over it close; persisted ones wait for a
    /// host of that name to come back.
    pub(super) async fn drop_config_host(self: &Arc<Self>, name: &str) {
        let Some(entry) = self.hosts.remove(name) else {
            return;
        };
        for (_, t) in self.tunnels.over_host(name) {
            if t.source == TunnelSource::Persisted {
                continue;
            }
            if let Some(t) = self.tunnels.remove(&t.id) {
                t.close().await;
            }
        }
        let waiting = self
            .set_aside(name, "its host was removed from the config")
            .await;
        for seq in waiting {
            self.persistence.set_failed(
                seq,
                format!("not opened: host {name:?} is no longer configured; it opens when a host of that name is added"),
            );
        }
        entry.stop().await;
        self.hosts.announce_removed(&entry);
        tracing::info!(host = %name, "host removed from the config: closed");
    }

    /// Adds the config host `config` (a reload that adds it), and opens
    /// the persisted tunnels waiting for it. Refused when a host added at
    /// runtime has the name.
    pub(super) async fn add_config_host(self: &Arc<Self>, config: HostConfig) -> Result<()> {
        let name = config.name.clone();
        self.hosts.insert(config, HostSource::Config, false)?;
        tracing::info!(host = %name, "host added from the config");
        let waiting = self.persistence.waiting_over(&name);
        self.open_waiting(waiting).await;
        Ok(())
    }
}

/// The jump hops a persisted host names.
fn hops(r: &HostRecord) -> Vec<String> {
    r.jump
        .as_deref()
        .map(|j| j.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

fn request_of(r: HostRecord) -> HostRequest {
    HostRequest {
        name: r.name,
        ssh: r.ssh,
        identity: r.identity,
        known_hosts: r.known_hosts,
        jump: r.jump,
    }
}

fn record_of(r: &HostRequest) -> HostRecord {
    HostRecord {
        name: r.name.clone(),
        ssh: r.ssh.clone(),
        identity: r.identity.clone(),
        known_hosts: r.known_hosts.clone(),
        jump: r.jump.clone(),
    }
}
