//! The set of open tunnels, by id, and the names they hold.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use super::Tunnel;

/// Open tunnels. Ids are `t-N`, never reused while the daemon runs (and,
/// with a state store, across restarts: see `Registry::skip_to`).
#[derive(Default)]
pub struct Registry {
    // std Mutex: insert/remove/clone only, never held across an await.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The last sequence number given out.
    last: u64,
    /// Keyed by sequence number so listing is oldest first.
    tunnels: BTreeMap<u64, Arc<Tunnel>>,
    /// Names of open tunnels and of tunnels being opened: claimed before
    /// the open starts, so two opens cannot both take one.
    names: BTreeSet<String>,
}

/// A name held for a tunnel being opened; released when dropped unless the
/// tunnel was inserted.
#[must_use]
pub struct NameClaim {
    registry: Arc<Registry>,
    name: Option<String>,
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            self.registry.map().names.remove(&name);
        }
    }
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh id and its sequence number.
    pub fn next_id(&self) -> (u64, String) {
        let mut map = self.map();
        map.last += 1;
        (map.last, id_of(map.last))
    }

    /// Gives out no sequence number up to `seq`: those of restored tunnels
    /// and, past them, the ones a store reserved for an earlier run.
    pub fn skip_to(&self, seq: u64) {
        let mut map = self.map();
        map.last = map.last.max(seq);
    }

    /// Holds `name` (if any) for a tunnel being opened; `Err` with the id
    /// of the tunnel holding it (empty while that one is still opening).
    pub fn claim_name(self: &Arc<Self>, name: Option<&str>) -> Result<NameClaim, String> {
        let mut map = self.map();
        if let Some(name) = name
            && !map.names.insert(name.to_string())
        {
            let holder = map
                .tunnels
                .values()
                .find(|t| t.name.as_deref() == Some(name))
                .map(|t| t.id.clone())
                .unwrap_or_default();
            return Err(holder);
        }
        Ok(NameClaim {
            registry: self.clone(),
            name: name.map(str::to_string),
        })
    }

    /// Adds a tunnel under its sequence number; its name stays held until
    /// it is removed.
    pub fn insert(&self, seq: u64, tunnel: Arc<Tunnel>, mut claim: NameClaim) {
        claim.name = None;
        let mut map = self.map();
        map.last = map.last.max(seq);
        map.tunnels.insert(seq, tunnel);
    }

    /// The tunnel with this id or name.
    pub fn find(&self, key: &str) -> Option<(u64, Arc<Tunnel>)> {
        let map = self.map();
        map.tunnels
            .iter()
            .find(|(_, t)| t.answers_to(key))
            .map(|(s, t)| (*s, t.clone()))
    }

    /// Removes and returns the tunnel with this id or name.
    pub fn remove(&self, key: &str) -> Option<Arc<Tunnel>> {
        let mut map = self.map();
        let seq = map
            .tunnels
            .iter()
            .find(|(_, t)| t.answers_to(key))
            .map(|(s, _)| *s)?;
        let t = map.tunnels.remove(&seq)?;
        if let Some(name) = &t.name {
            map.names.remove(name);
        }
        Some(t)
    }

    /// Removes the tunnel `seq` but keeps holding its name, for the caller
    /// to open it again under the same name (its host replaced).
    pub fn take_keeping_name(self: &Arc<Self>, seq: u64) -> Option<(Arc<Tunnel>, NameClaim)> {
        let t = self.map().tunnels.remove(&seq)?;
        let claim = NameClaim {
            registry: self.clone(),
            name: t.name.clone(),
        };
        Some((t, claim))
    }

    /// The tunnels over host `host`, with their sequence numbers.
    pub fn over_host(&self, host: &str) -> Vec<(u64, Arc<Tunnel>)> {
        self.map()
            .tunnels
            .iter()
            .filter(|(_, t)| t.host == host)
            .map(|(s, t)| (*s, t.clone()))
            .collect()
    }

    /// Removes and returns every tunnel.
    pub fn drain(&self) -> Vec<Arc<Tunnel>> {
        let mut map = self.map();
        map.names.clear();
        std::mem::take(&mut map.tunnels).into_values().collect()
    }

    /// How many tunnels are open.
    pub fn len(&self) -> usize {
        self.map().tunnels.len()
    }

    /// The oldest tunnel opened after sequence number `seq`, with its own.
    pub fn after(&self, seq: u64) -> Option<(u64, Arc<Tunnel>)> {
        let map = self.map();
        let (s, t) = map.tunnels.range(seq.saturating_add(1)..).next()?;
        Some((*s, t.clone()))
    }

    /// Every tunnel, oldest first.
    pub fn list(&self) -> Vec<Arc<Tunnel>> {
        self.map().tunnels.values().cloned().collect()
    }
}

/// The id of sequence number `seq`.
pub fn id_of(seq: u64) -> String {
    format!("t-{seq}")
}

/// The sequence number of id `t-N`.
pub fn seq_of(id: &str) -> Option<u64> {
    id.strip_prefix("t-")?.parse().ok()
}
