//! The set of open tunnels, by id.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use super::Tunnel;

/// Open tunnels. Ids are `t-N`, never reused while the daemon runs.
#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    // std Mutex: insert/remove/clone only, never held across an await.
    // Keyed by sequence number so listing is oldest first.
    tunnels: Mutex<BTreeMap<u64, Arc<Tunnel>>>,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Tunnel>>> {
        self.tunnels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh id and its sequence number.
    pub fn next_id(&self) -> (u64, String) {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        (n, format!("t-{n}"))
    }

    /// Adds a tunnel under its sequence number.
    pub fn insert(&self, seq: u64, tunnel: Arc<Tunnel>) {
        self.map().insert(seq, tunnel);
    }

    /// Removes and returns the tunnel with this id.
    pub fn remove(&self, id: &str) -> Option<Arc<Tunnel>> {
        let mut map = self.map();
        let seq = map.iter().find(|(_, t)| t.id == id).map(|(s, _)| *s)?;
        map.remove(&seq)
    }

    /// Removes and returns every tunnel.
    pub fn drain(&self) -> Vec<Arc<Tunnel>> {
        std::mem::take(&mut *self.map()).into_values().collect()
    }

    /// How many tunnels are open.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// The oldest tunnel opened after sequence number `seq`, with its own.
    pub fn after(&self, seq: u64) -> Option<(u64, Arc<Tunnel>)> {
        let map = self.map();
        let (s, t) = map.range(seq.saturating_add(1)..).next()?;
        Some((*s, t.clone()))
    }

    /// Every tunnel, oldest first.
    pub fn list(&self) -> Vec<Arc<Tunnel>> {
        self.map().values().cloned().collect()
    }
}
