//! The state store: one redb file, `tunneld.redb`, in the state directory.
//! Every change is one transaction committed with `Durability::Immediate`
//! before the call that asked for it returns, so a crash at any moment
//! leaves each tunnel either whole or absent, never half-written.
//!
//! Tables:
//! - `tunnels`: sequence number → a [`TunnelRecord`]'s bytes;
//! - `hosts`: host name → a [`HostRecord`]'s bytes;
//! - `meta`: `ids_reserved` → the highest sequence number any run may have
//!   given out, so ids are never reused across restarts.

use std::{
    fs::{DirBuilder, OpenOptions},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{host_record::HostRecord, record::TunnelRecord};
use crate::error::{Error, Result};

const TUNNELS: TableDefinition<u64, &[u8]> = TableDefinition::new("tunnels");
const HOSTS: TableDefinition<&str, &[u8]> = TableDefinition::new("hosts");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const IDS_RESERVED: &str = "ids_reserved";

/// The store's file name in the state directory.
pub(super) const STORE_FILE: &str = "tunneld.redb";

/// What a store held at start.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// Every record by sequence number: read, or why it could not be.
    pub tunnels: Vec<(u64, std::result::Result<TunnelRecord, String>)>,
    /// Every host record by name: read, or why it could not be.
    pub hosts: Vec<(String, std::result::Result<HostRecord, String>)>,
    /// No sequence number up to this one may be given out again.
    pub ids_reserved: u64,
}

/// The open store. Its calls block on the disk: call them off the async
/// workers (`spawn_blocking`), except at start.
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, creating `dir` 0700 and the
    /// file 0600 if they do not exist.
    pub fn open(dir: &Path) -> Result<Store> {
        let path = dir.join(STORE_FILE);
        let fail = |detail: String| Error::StateStore {
            path: path.clone(),
            detail,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| fail(format!("cannot create the state directory: {e}")))?;
        // Created empty and private before redb writes a byte, so the
        // file is never readable by others; redb initialises an empty file.
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| fail(e.to_string()))?;
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                fail("another tunneld is using it; give each tunneld its own --state-dir".into())
            }
            e => fail(e.to_string()),
        })?;
        let store = Store { db, path };
        // Both tables exist from the first open, so reads never meet a
        // missing one.
        store.write(|txn| {
            txn.open_table(TUNNELS)?;
            txn.open_table(HOSTS)?;
            txn.open_table(META)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, e: impl std::fmt::Display) -> Error {
        Error::StateStore {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }

    /// Runs `f` in one write transaction, committed durably.
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> std::result::Result<(), redb::Error>,
    ) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| self.fail(e))?;
        f(&txn).map_err(|e| self.fail(e))?;
        txn.commit().map_err(|e| self.fail(e))
    }

    /// Everything the store holds.
    pub fn load(&self) -> Result<Loaded> {
        let read = || -> std::result::Result<Loaded, redb::Error> {
            let txn = self.db.begin_read()?;
            let mut loaded = Loaded::default();
            for entry in txn.open_table(TUNNELS)?.iter()? {
                let (seq, bytes) = entry?;
                loaded
                    .tunnels
                    .push((seq.value(), TunnelRecord::decode(bytes.value())));
            }
            for entry in txn.open_table(HOSTS)?.iter()? {
                let (name, bytes) = entry?;
                let name = name.value().to_string();
                let record = HostRecord::decode(bytes.value()).and_then(|r| match r.name == name {
                    true => Ok(r),
                    false => Err(format!("the record names host {:?}", r.name)),
                });
                loaded.hosts.push((name, record));
            }
            if let Some(n) = txn.open_table(META)?.get(IDS_RESERVED)? {
                loaded.ids_reserved = n.value();
            }
            Ok(loaded)
        };
        read().map_err(|e| self.fail(e))
    }

    /// Records a tunnel (replacing a record of the same sequence number).
    pub fn put(&self, record: &TunnelRecord) -> Result<()> {
        let bytes = record.encode();
        self.write(|txn| {
            txn.open_table(TUNNELS)?
                .insert(record.seq, bytes.as_slice())?;
            Ok(())
        })
    }

    /// Forgets a tunnel; forgetting one that is not there is no error.
    pub fn remove(&self, seq: u64) -> Result<()> {
        self.write(|txn| {
            txn.open_table(TUNNELS)?.remove(seq)?;
            Ok(())
        })
    }

    /// Records a host (replacing a record of the same name).
    pub fn put_host(&self, record: &HostRecord) -> Result<()> {
        let bytes = record.encode();
        self.write(|txn| {
            txn.open_table(HOSTS)?
                .insert(record.name.as_str(), bytes.as_slice())?;
            Ok(())
        })
    }

    /// Forgets a host; forgetting one that is not there is no error.
    pub fn remove_host(&self, name: &str) -> Result<()> {
        self.write(|txn| {
            txn.open_table(HOSTS)?.remove(name)?;
            Ok(())
        })
    }

    /// Reserves sequence numbers up to `upto` for this run.
    pub fn reserve_ids(&self, upto: u64) -> Result<()> {
        self.write(|txn| {
            txn.open_table(META)?.insert(IDS_RESERVED, upto)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::tunnel::{ConnectionLimits, Endpoint, ForwardSpec, LocalForwardSpec};

    fn record(seq: u64) -> TunnelRecord {
        TunnelRecord {
            seq,
            name: Some(format!("n{seq}")),
            host: "h".into(),
            spec: ForwardSpec::Local(LocalForwardSpec {
                listen: Endpoint::Tcp {
                    host: "127.0.0.1".into(),
                    port: 1000 + seq as u16,
                },
                target: Endpoint::Socks,
                limits: ConnectionLimits::default(),
            }),
        }
    }

    #[test]
    fn records_survive_reopening_and_files_are_private() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("state");
        {
            let store = Store::open(&dir).expect("open");
            store.put(&record(1)).expect("put");
            store.put(&record(2)).expect("put");
            store.remove(1).expect("remove");
            store.remove(99).expect("removing nothing");
            store.reserve_ids(1024).expect("reserve");
            let host = |name: &str| HostRecord {
                name: name.into(),
                ssh: "u@h:22".into(),
                identity: None,
                known_hosts: None,
                jump: None,
            };
            store.put_host(&host("a")).expect("put host");
            store.put_host(&host("b")).expect("put host");
            store.remove_host("a").expect("remove host");
            store.remove_host("zz").expect("removing no host");
        }
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(STORE_FILE)), 0o600);
        let store = Store::open(&dir).expect("reopen");
        let loaded = store.load().expect("load");
        assert_eq!(loaded.ids_reserved, 1024);
        assert_eq!(loaded.hosts.len(), 1);
        assert_eq!(loaded.hosts[0].0, "b");
        assert_eq!(loaded.hosts[0].1.as_ref().expect("host").ssh, "u@h:22");
        assert_eq!(loaded.tunnels.len(), 1);
        let (seq, r) = &loaded.tunnels[0];
        assert_eq!(*seq, 2);
        assert_eq!(r.as_ref().expect("record").name.as_deref(), Some("n2"));
    }

    #[test]
    fn a_second_opener_is_told_who_holds_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let _first = Store::open(tmp.path()).expect("open");
        let e = Store::open(tmp.path()).unwrap_err().to_string();
        assert!(
            e.contains("another tunneld") && e.contains("--state-dir"),
            "{e}"
        );
    }
}
