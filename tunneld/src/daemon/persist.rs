//! The daemon's side of the state store: which tunnels are recorded, the
//! ids reserved for this run, and the persisted tunnels not running yet.
//!
//! A persisted tunnel is recorded before its open returns and forgotten
//! before its close returns, each in one durable transaction. At start every
//! record is read; one that cannot be read or restored is reported by its id
//! and name, kept (never dropped), shown by List as FAILED with the reason,
//! and retried while the reason may pass (the SSH host unreachable, a port
//! still taken).

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use super::watch::{Bus, Change};
use crate::{
    config::DeclaredTunnel,
    error::{Error, Result},
    state::{HostRecord, Store, TunnelRecord},
    tunnel::{NameClaim, Registry, TunnelSnapshot, TunnelSource, TunnelState, id_of},
};

/// Sequence numbers reserved in the store at a time: one durable write per
/// this many opens keeps ids unique across restarts, crashes included. A
/// run skips at most this many ids, and a run that opens nothing none.
const ID_BLOCK: u64 = 64;

/// The store, if tunneld has one, and what it holds that is not running.
pub(super) struct Persistence {
    store: Option<Arc<Store>>,
    /// Why there is no store: the refusal of a persist request.
    missing: String,
    /// No sequence number up to this one is given out by a later run.
    reserved: AtomicU64,
    /// Persisted tunnels not running yet, by sequence number.
    // std Mutex: never held across an await.
    unrestored: Mutex<BTreeMap<u64, Unrestored>>,
    /// The persisted hosts read at start, until the daemon takes them.
    hosts: Mutex<Vec<HostRecord>>,
    /// Where a waiting tunnel's changes are told (Watch).
    bus: Bus,
}

/// A persisted tunnel waiting to be restored, or a declared one waiting to
/// be opened.
pub(super) struct Unrestored {
    pub record: TunnelRecord,
    /// Persisted or declared.
    pub source: TunnelSource,
    /// `Reconnecting` until its first attempt failed, then `Failed`.
    pub state: TunnelState,
    /// Why it is not running (yet).
    pub detail: String,
    /// Its name, held so no other tunnel takes it meanwhile.
    pub claim: Option<NameClaim>,
}

impl Unrestored {
    /// As List and Watch show it, as tunnel `seq`, in `state`.
    fn snapshot(&self, seq: u64, state: TunnelState) -> TunnelSnapshot {
        let detail = match state {
            TunnelState::Closed => String::new(),
            _ => self.detail.clone(),
        };
        TunnelSnapshot::not_running(
            id_of(seq),
            self.source,
            self.record.name.clone(),
            self.record.host.clone(),
            &self.record.spec,
            state,
            detail,
        )
    }
}

impl Persistence {
    /// Opens the store in `dir` (none: no store) and reads it; the tunnels
    /// it holds wait in `unrestored`, their names and ids held in `registry`.
    /// The changes of waiting tunnels are told on `bus`.
    pub fn open(dir: Option<&Path>, registry: &Arc<Registry>, bus: Bus) -> Persistence {
        let mut p = Persistence {
            store: None,
            missing: "tunneld runs without a state directory (--state-dir)".into(),
            reserved: AtomicU64::new(0),
            unrestored: Mutex::default(),
            hosts: Mutex::default(),
            bus,
        };
        let Some(dir) = dir else { return p };
        let store = match Store::open(dir).and_then(|s| s.load().map(|l| (s, l))) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    "{e}; persisted tunnels are not restored and new ones cannot be persisted \
                     until tunneld starts with a usable --state-dir"
                );
                p.missing = e.to_string();
                return p;
            }
        };
        let (store, loaded) = store;
        let path = store.path().display().to_string();
        let mut last = loaded.ids_reserved;
        let mut unrestored = BTreeMap::new();
        for (seq, record) in loaded.tunnels {
            last = last.max(seq);
            match record {
                Ok(record) if record.seq == seq => {
                    let claim = match registry.claim_name(record.name.as_deref()) {
                        Ok(c) => Some(c),
                        Err(_) => {
                            tracing::error!(tunnel = %id_of(seq), name = record.name.as_deref().unwrap_or(""), store = %path, "two persisted tunnels have one name; this one is kept but not restored");
                            None
                        }
                    };
                    let (state, detail) = if claim.is_some() {
                        (TunnelState::Reconnecting, "being restored".to_string())
                    } else {
                        (
                            TunnelState::Failed,
                            "not restored: another persisted tunnel has its name".to_string(),
                        )
                    };
                    unrestored.insert(
                        seq,
                        Unrestored {
                            record,
                            source: TunnelSource::Persisted,
                            state,
                            detail,
                            claim,
                        },
                    );
                }
                Ok(record) => tracing::error!(
                    tunnel = %id_of(seq), store = %path,
                    "persisted record says it is t-{}; it is kept but not restored", record.seq
                ),
                Err(why) => tracing::error!(
                    tunnel = %id_of(seq), store = %path,
                    "persisted tunnel cannot be read: {why}; it is kept but not restored"
                ),
            }
        }
        let mut hosts = Vec::new();
        for (name, record) in loaded.hosts {
            match record {
                Ok(r) => hosts.push(r),
                Err(why) => tracing::error!(
                    host = %name, store = %path,
                    "persisted host cannot be read: {why}; it is kept but not added"
                ),
            }
        }
        p.hosts = Mutex::new(hosts);
        // New ids start past every id a run may have given; the first one
        // this run gives reserves a block (`cover`).
        registry.skip_to(last);
        p.reserved.store(last, Ordering::Release);
        let store = Arc::new(store);
        if !unrestored.is_empty() {
            tracing::info!(tunnels = unrestored.len(), store = %path, "restoring persisted tunnels");
        }
        p.store = Some(store);
        p.unrestored = Mutex::new(unrestored);
        p
    }

    /// Adds the config file's tunnels, each with a fresh id, to be opened
    /// as restored ones are (and retried alike). Called after `open`: a
    /// persisted tunnel keeps a name the file now declares too, and the
    /// declared one waits, saying so.
    /// Returns each one's name, id and what it declares (to tell a changed
    /// one at reload).
    pub fn declare(
        &self,
        registry: &Arc<Registry>,
        tunnels: BTreeMap<String, DeclaredTunnel>,
    ) -> Vec<(String, u64, Vec<u8>)> {
        let mut waiting = self.unrestored();
        let mut declared_now = Vec::new();
        for (name, declared) in tunnels {
            let (seq, id) = registry.next_id();
            declared_now.push((name.clone(), seq, fingerprint(&name, &declared)));
            let (claim, state, detail) = match registry.claim_name(Some(&name)) {
                Ok(claim) => (
                    Some(claim),
                    TunnelState::Reconnecting,
                    "being opened".into(),
                ),
                Err(holder) => {
                    tracing::error!(tunnel = %id, name = %name, "declared tunnel not opened: persisted tunnel {holder} has its name");
                    (
                        None,
                        TunnelState::Failed,
                        format!("not opened: persisted tunnel {holder} has its name; close it"),
                    )
                }
            };
            let record = TunnelRecord {
                seq,
                name: Some(name),
                host: declared.host,
                spec: declared.spec,
            };
            let u = Unrestored {
                record,
                source: TunnelSource::Declared,
                state,
                detail,
                claim,
            };
            self.bus.send(Change::Tunnel(u.snapshot(seq, state)));
            waiting.insert(seq, u);
        }
        declared_now
    }

    /// The store, or why a tunnel (`what`: or a host) cannot be persisted.
    pub fn store(&self, what: &'static str) -> Result<Arc<Store>> {
        self.store.clone().ok_or_else(|| Error::NoStateStore {
            what,
            why: self.missing.clone(),
        })
    }

    /// Reserves more ids when `seq` is past what the store has reserved.
    pub async fn cover(&self, seq: u64) {
        let Some(store) = self.store.clone() else {
            return;
        };
        if seq <= self.reserved.load(Ordering::Acquire) {
            return;
        }
        let upto = seq + ID_BLOCK;
        match tokio::task::spawn_blocking(move || store.reserve_ids(upto)).await {
            Ok(Ok(())) => {
                self.reserved.fetch_max(upto, Ordering::AcqRel);
            }
            Ok(Err(e)) => tracing::warn!("{e}; ids of this run may be given again after a restart"),
            Err(_) => {}
        }
    }

    fn unrestored(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Unrestored>> {
        self.unrestored.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sequence numbers of the tunnels waiting to be restored (not those
    /// kept without their name: they wait for their owner).
    pub fn waiting(&self) -> Vec<u64> {
        self.unrestored()
            .iter()
            .filter(|(_, u)| u.claim.is_some())
            .map(|(seq, _)| *seq)
            .collect()
    }

    /// The record of a waiting tunnel and where it comes from, to try it
    /// again.
    pub fn record(&self, seq: u64) -> Option<(TunnelRecord, TunnelSource)> {
        self.unrestored()
            .get(&seq)
            .map(|u| (u.record.clone(), u.source))
    }

    /// Notes why a waiting tunnel is not running: it is `Failed` now.
    /// Watchers are told when that changes what they saw.
    pub fn set_failed(&self, seq: u64, detail: String) {
        let changed = {
            let mut waiting = self.unrestored();
            let Some(u) = waiting.get_mut(&seq) else {
                return;
            };
            let changed = u.state != TunnelState::Failed || u.detail != detail;
            u.state = TunnelState::Failed;
            u.detail = detail;
            changed.then(|| u.snapshot(seq, TunnelState::Failed))
        };
        if let Some(snapshot) = changed {
            self.bus.send(Change::Tunnel(snapshot));
        }
    }

    /// Takes a waiting tunnel out to run it (restored or opened), with its
    /// name; the running tunnel tells watchers.
    pub fn take(&self, seq: u64) -> Option<Unrestored> {
        self.unrestored().remove(&seq)
    }

    /// Takes a waiting tunnel out for good (closed, or gone from the
    /// config), and returns it as it ends: CLOSED, which watchers see as
    /// its last message.
    pub fn forget(&self, seq: u64) -> Option<TunnelSnapshot> {
        let closed = self
            .unrestored()
            .remove(&seq)?
            .snapshot(seq, TunnelState::Closed);
        self.bus.send(Change::Tunnel(closed.clone()));
        Some(closed)
    }

    /// The waiting tunnel with this id or name, and where it comes from.
    pub fn find(&self, key: &str) -> Option<(u64, TunnelSource)> {
        lookup(&self.unrestored(), key).map(|(seq, u)| (seq, u.source))
    }

    /// The waiting tunnels as List and Watch show them: RECONNECTING while
    /// first tried, then FAILED, with why.
    pub fn snapshots(&self) -> Vec<TunnelSnapshot> {
        self.unrestored()
            .iter()
            .map(|(seq, u)| u.snapshot(*seq, u.state))
            .collect()
    }

    /// The waiting tunnel `key` (id or name) as List shows it.
    pub fn snapshot(&self, key: &str) -> Option<TunnelSnapshot> {
        lookup(&self.unrestored(), key).map(|(seq, u)| u.snapshot(seq, u.state))
    }

    /// The persisted hosts read at start (once; later calls get none).
    pub fn take_hosts(&self) -> Vec<HostRecord> {
        std::mem::take(&mut *self.hosts.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts a tunnel that was running back to wait (its host replaced):
    /// opened again with its id and name by `open_waiting`. Its close told
    /// watchers it is RECONNECTING (`Tunnel::close_to_reopen`), so nothing
    /// is told here.
    pub fn wait_again(
        &self,
        record: TunnelRecord,
        source: TunnelSource,
        claim: NameClaim,
        why: &str,
    ) {
        self.unrestored().insert(
            record.seq,
            Unrestored {
                record,
                source,
                state: TunnelState::Reconnecting,
                detail: format!("being reopened: {why}"),
                claim: Some(claim),
            },
        );
    }

    /// Sequence numbers of the waiting tunnels over host `host`.
    pub fn waiting_over(&self, host: &str) -> Vec<u64> {
        self.unrestored()
            .iter()
            .filter(|(_, u)| u.record.host == host)
            .map(|(seq, _)| *seq)
            .collect()
    }

    /// Records a host, durably.
    pub async fn put_host(store: Arc<Store>, record: HostRecord) -> Result<()> {
        tokio::task::spawn_blocking(move || store.put_host(&record))
            .await
            .map_err(|_| Error::ShuttingDown)?
    }

    /// Forgets a host, durably.
    pub async fn remove_host(store: Arc<Store>, name: String) -> Result<()> {
        tokio::task::spawn_blocking(move || store.remove_host(&name))
            .await
            .map_err(|_| Error::ShuttingDown)?
    }

    /// Records a tunnel, durably.
    pub async fn put(store: Arc<Store>, record: TunnelRecord) -> Result<()> {
        tokio::task::spawn_blocking(move || store.put(&record))
            .await
            .map_err(|_| Error::ShuttingDown)?
    }

    /// Forgets a tunnel, durably.
    pub async fn remove(store: Arc<Store>, seq: u64) -> Result<()> {
        tokio::task::spawn_blocking(move || store.remove(seq))
            .await
            .map_err(|_| Error::ShuttingDown)?
    }
}

/// What a declared tunnel asks for, as bytes to compare: equal bytes, the
/// same tunnel (its host, both ends, its limits).
pub(super) fn fingerprint(name: &str, declared: &DeclaredTunnel) -> Vec<u8> {
    TunnelRecord {
        seq: 0,
        name: Some(name.to_string()),
        host: declared.host.clone(),
        spec: declared.spec.clone(),
    }
    .encode()
}

/// Whether restoring a persisted tunnel may succeed later without anyone
/// changing tunneld's config: an unreachable host or a port still taken
/// may pass; a host that no longer exists or a policy refusal will not.
pub(super) fn worth_retrying(e: &Error) -> bool {
    !matches!(
        e,
        Error::InvalidArgument(_)
            | Error::HostNotFound { .. }
            | Error::NoDefaultHost { .. }
            | Error::NotPermitted(_)
            | Error::NameTaken { .. }
            | Error::ShuttingDown
    )
}

/// The waiting tunnel whose id or name is `key`.
fn lookup<'a>(waiting: &'a BTreeMap<u64, Unrestored>, key: &str) -> Option<(u64, &'a Unrestored)> {
    waiting
        .iter()
        .find(|(seq, u)| id_of(**seq) == key || u.record.name.as_deref() == Some(key))
        .map(|(seq, u)| (*seq, u))
}
