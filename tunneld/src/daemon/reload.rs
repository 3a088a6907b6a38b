//! Reloading the config file (SIGHUP): the declared tunnels are compared
//! with what runs, by name. An unchanged one keeps running, untouched (its
//! connections carry on); a changed one is closed and opened as the file
//! now says; a removed one is closed; a new one is opened (and retried like
//! any declared tunnel). A file with any problem changes nothing: every
//! problem is logged with its place and the running set stays as it was.
//!
//! Hosts are read at start only: a reload that adds, removes or changes a
//! host says so in the log and leaves the hosts as they are (a declared
//! tunnel over a host that is not there waits, FAILED, naming it).

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
    /// Hosts added, removed or changed, which wait for a restart.
    pub hosts_pending: Vec<String>,
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
                    hosts_pending = ?done.hosts_pending,
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

    /// Applies `config`'s declared tunnels over the running ones.
    async fn reload(self: &Arc<Self>, config: Config) -> Reloaded {
        let hosts_pending = self.note_host_changes(&config);
        let wanted: BTreeMap<String, Vec<u8>> = config
            .tunnels
            .iter()
            .map(|(name, d)| (name.clone(), fingerprint(name, d)))
            .collect();
        let mut done = Reloaded {
            hosts_pending,
            ..Reloaded::default()
        };
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
        done
    }

    /// Closes the declared tunnel `seq`, running or waiting.
    async fn close_declared(&self, name: &str, seq: u64) {
        let id = id_of(seq);
        if let Some(t) = self.tunnels.remove(&id) {
            t.close().await;
        } else {
            self.persistence.take(seq);
        }
        tracing::info!(tunnel = %id, name, "declared tunnel closed: changed or removed in the config file");
    }

    /// Logs host changes, which take effect at the next start; returns
    /// their names.
    fn note_host_changes(&self, config: &Config) -> Vec<String> {
        let mut changed: Vec<&str> = Vec::new();
        for (name, host) in &self.hosts {
            match config.hosts.get(name) {
                Some(h) if format!("{h:?}") == format!("{:?}", host.config()) => {}
                _ => changed.push(name),
            }
        }
        changed.extend(
            config
                .hosts
                .keys()
                .filter(|n| !self.hosts.contains_key(*n))
                .map(String::as_str),
        );
        if !changed.is_empty() {
            tracing::warn!(
                hosts = ?changed,
                "hosts added, removed or changed in the config take effect at the next start; \
                 the reload applies the declared tunnels only"
            );
        }
        changed.into_iter().map(str::to_string).collect()
    }
}
