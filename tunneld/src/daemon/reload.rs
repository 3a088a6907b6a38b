//! Reloading the config file (SIGHUP): the hosts, then the declared
//! tunnels, are compared with what runs, by name. An unchanged one keeps
//! running, untouched (its connections carry on); a changed host is
//! replaced and its tunnels opened again over it with their ids, names and
//! ports; a changed tunnel is closed and opened as the file now says; a
//! removed one is closed (a persisted tunnel over a removed host waits for
//! it); a new one is opened (and retried like any declared tunnel). A file
//! with any problem changes nothing: every problem is logged with its place
//! and the running set stays as it was. Hosts added at runtime are the
//! API's: a reload neither changes nor removes them, and a file host of the
//! same name waits (`hosts_pending`).

use std::{collections::BTreeMap, sync::Arc};

use super::{Daemon, persist::fingerprint};
use crate::{
    config::Config,
    error::{Error, Result},
    tunnel::id_of,
};

/// What a reload did, by tunnel name.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Declared tunnels kept as they were.
    pub unchanged: Vec<String>,
    /// Closed and opened again as the file now says.
    pub changed: Vec<String>,
    /// Closed: no longer in the file.
    pub removed: Vec<String>,
    /// Opened: new in the file.
    pub added: Vec<String>,
    /// File hosts not applied: a host added at runtime has the name.
    pub hosts_pending: Vec<String>,
    /// File hosts added.
    pub hosts_added: Vec<String>,
    /// File hosts replaced by their new settings.
    pub hosts_changed: Vec<String>,
    /// File hosts closed: no longer in the file.
    pub hosts_removed: Vec<String>,
}

impl Daemon {
    /// Waits for reload requests (SIGHUP) and applies each; returns when
    /// tunneld stops. Without a reloader it returns at once.
    pub async fn follow_reloads(self: Arc<Self>) {
        let Some(reloader) = self.reloader.clone() else {
            return;
        };
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = reloader.requested() => {}
            }
            // Logged either way by `reload_file`.
            let _ = self.reload_file().await;
        }
    }

    /// Reads the config file again and applies it (SIGHUP, the Reload
    /// call); one reload at a time. A file with any problem changes
    /// nothing: `Error::ConfigRejected` with every problem, one a line.
    pub async fn reload_file(self: &Arc<Self>) -> Result<Reloaded> {
        let reloader = self.reloader.clone().ok_or_else(|| {
            Error::ConfigRejected("this tunneld has no config to read again".into())
        })?;
        let _one = self.reloading.lock().await;
        // Told (systemd's RELOADING=1) only once ready: a reload while the
        // first opens run leaves the phase to them.
        let _back = (self.lifecycle.phase() == super::Phase::Ready).then(|| {
            self.lifecycle.set(super::Phase::Reloading);
            ReadyAgain(&self.lifecycle)
        });
        // Reading files blocks: off the async workers.
        let config = tokio::task::spawn_blocking(move || reloader.load())
            .await
            .map_err(|_| Error::ShuttingDown)?;
        match config {
            Ok(config) => {
                let done = self.reload(config).await;
                tracing::info!(
                    unchanged = ?done.unchanged, changed = ?done.changed,
                    removed = ?done.removed, added = ?done.added,
                    hosts_added = ?done.hosts_added, hosts_changed = ?done.hosts_changed,
                    hosts_removed = ?done.hosts_removed, hosts_pending = ?done.hosts_pending,
                    "config reloaded"
                );
                Ok(done)
            }
            Err(e) => {
                tracing::error!(
                    "config not reloaded, nothing changed; fix these and reload again:\n{e}"
                );
                Err(Error::ConfigRejected(e.to_string()))
            }
        }
    }

    /// Applies `config`'s hosts and declared tunnels over the running ones.
    async fn reload(self: &Arc<Self>, mut config: Config) -> Reloaded {
        let mut done = Reloaded::default();
        let removed_hosts = self.apply_hosts(&mut config, &mut done).await;
        let wanted: BTreeMap<String, Vec<u8>> = config
            .tunnels
            .iter()
            .map(|(name, d)| (name.clone(), fingerprint(name, d)))
            .collect();
        let mut to_close = Vec::new();
        {
            let declared = self.declared.lock().unwrap_or_else(|p| p.into_inner());
            for (name, (seq, print)) in declared.iter() {
                match wanted.get(name) {
                    Some(p) if p == print => done.unchanged.push(name.clone()),
                    Some(_) => {
                        done.changed.push(name.clone());
                        to_close.push((name.clone(), *seq));
                    }
                    None => {
                        done.removed.push(name.clone());
                        to_close.push((name.clone(), *seq));
                    }
                }
            }
        }
        for (name, seq) in &to_close {
            self.close_declared(name, *seq).await;
        }
        let fresh: BTreeMap<_, _> = config
            .tunnels
            .into_iter()
            .filter(|(name, _)| !done.unchanged.contains(name))
            .collect();
        done.added = fresh
            .keys()
            .filter(|n| !done.changed.contains(n))
            .cloned()
            .collect();
        let opened = self.persistence.declare(&self.tunnels, fresh);
        {
            let mut declared = self.declared.lock().unwrap_or_else(|p| p.into_inner());
            for (name, _) in &to_close {
                declared.remove(name);
            }
            for (name, seq, print) in &opened {
                declared.insert(name.clone(), (*seq, print.clone()));
            }
        }
        self.open_waiting(opened.into_iter().map(|(_, seq, _)| seq).collect())
            .await;
        // Last: the declared tunnels over them are closed by now.
        for name in removed_hosts {
            self.drop_config_host(&name).await;
            done.hosts_removed.push(name);
        }
        done
    }

    /// Adds and replaces the file's hosts (and takes its defaults for
    /// hosts added later); returns the names of the file hosts to remove,
    /// once the declared tunnels over them are closed.
    async fn apply_hosts(
        self: &Arc<Self>,
        config: &mut Config,
        done: &mut Reloaded,
    ) -> Vec<String> {
        *self
            .host_defaults
            .write()
            .unwrap_or_else(|p| p.into_inner()) = config.host_defaults.clone();
        let running = self.hosts.config_hosts();
        let wanted = std::mem::take(&mut config.hosts);
        let removed = running
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect();
        for (name, host) in wanted {
            match running.get(&name) {
                Some(old) if old.config() == &host => {}
                Some(_) => {
                    self.replace_host(host).await;
                    done.hosts_changed.push(name);
                }
                None => match self.add_config_host(host).await {
                    Ok(()) => done.hosts_added.push(name),
                    Err(e) => {
                        tracing::warn!(host = %name, "file host not added: {e}");
                        done.hosts_pending.push(name);
                    }
                },
            }
        }
        self.hosts.set_default(config.default_host.clone());
        removed
    }

    /// Closes the declared tunnel `seq`, running or waiting.
    async fn close_declared(&self, name: &str, seq: u64) {
        let id = id_of(seq);
        if let Some(t) = self.tunnels.remove(&id) {
            t.close().await;
        } else {
            self.persistence.forget(seq);
        }
        tracing::info!(tunnel = %id, name, "declared tunnel closed: changed or removed in the config file");
    }
}

/// Sets the phase back to ready when a reload ends, however it ends (a
/// drain under way stays a drain).
struct ReadyAgain<'a>(&'a super::Lifecycle);

impl Drop for ReadyAgain<'_> {
    fn drop(&mut self) {
        self.0.set(super::Phase::Ready);
    }
}
