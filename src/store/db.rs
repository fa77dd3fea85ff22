//! The single redb database that holds the raft log, the vote and the MVCC state machine.
//!
//! Keeping everything in one file lets an apply and its `last_applied` commit in one redb write
//! transaction, so a crash can never leave the state machine ahead of or behind its log pointer.

use std::fmt::Display;
use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::{AnyError, StorageError as RaftStorageError, StorageIOError};
use redb::{Database, DatabaseError, ReadableTable, TableDefinition, WriteTransaction};

use super::raft::NodeId;
use super::types::StoreError;

/// Name of the database file inside the data dir.
pub(crate) const DB_FILE: &str = "store.redb";

/// Raft log entries by index (JSON of `openraft::Entry`).
pub(crate) const RAFT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Raft bookkeeping: `vote`, `last_purged` (JSON), `node_id` (u64 LE).
pub(crate) const RAFT_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_state");
/// Latest version of every live key (`codec::KvRecord`).
pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Superseded versions and tombstones, by (key, revision) (`codec::HistoryRecord`).
pub(crate) const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
/// The watch events of each revision (`codec::encode_events`).
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// State machine counters: `revision`, `compacted` (u64 LE), `last_applied`, `membership` (JSON).
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

pub(crate) const META_REVISION: &str = "revision";
pub(crate) const META_COMPACTED: &str = "compacted";
pub(crate) const META_LAST_APPLIED: &str = "last_applied";
pub(crate) const META_MEMBERSHIP: &str = "membership";
pub(crate) const STATE_VOTE: &str = "vote";
pub(crate) const STATE_LAST_PURGED: &str = "last_purged";
pub(crate) const STATE_NODE_ID: &str = "node_id";

/// Adds context to foreign errors, turning them into `StoreError::Storage`.
pub(crate) trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, StoreError>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Storage(format!("{what}: {e}")))
    }
}

/// Converts a store error into openraft's storage error (which makes raft stop: a storage
/// failure must not be papered over).
pub(crate) fn raft_err(e: StoreError) -> RaftStorageError<NodeId> {
    RaftStorageError::IO {
        source: StorageIOError::write(AnyError::new(&e)),
    }
}

/// The database handle shared by the log store, the state machine, readers and watchers.
///
/// `shutdown` takes the database out of the slot so that nothing new can start and the file
/// lock is released once the in-flight users finish; a reopen in the same process then works.
pub(crate) struct DbSlot {
    db: RwLock<Option<Arc<Database>>>,
}

impl DbSlot {
    pub(crate) fn new(db: Database) -> Self {
        DbSlot {
            db: RwLock::new(Some(Arc::new(db))),
        }
    }

    pub(crate) fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .map_err(|_| StoreError::Storage("database lock poisoned".into()))?
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store is shut down".into()))
    }

    pub(crate) fn take(&self) -> Option<Arc<Database>> {
        self.db.write().ok().and_then(|mut g| g.take())
    }
}

/// Opens (creating if absent) the database file, mapping a held lock to a clear error.
pub(crate) fn open_database(path: &Path, create: bool) -> Result<Database, StoreError> {
    let res = if create {
        Database::create(path)
    } else {
        Database::open(path)
    };
    res.map_err(|e| match e {
        DatabaseError::DatabaseAlreadyOpen => {
            StoreError::Unavailable(format!("{} is locked by a running server", path.display()))
        }
        e => StoreError::Storage(format!("opening {}: {e}", path.display())),
    })
}

/// Begins a write transaction that is fsynced on commit.
pub(crate) fn begin_durable_write(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write().ctx("begin write transaction")?;
    txn.set_durability(redb::Durability::Immediate)
        .ctx("set durability")?;
    Ok(txn)
}

/// Begins a write transaction that is made durable by the next durable commit rather than by
/// its own fsync.
///
/// Only for applying committed raft entries to the state machine: the entries are already
/// fsynced in the raft log, and `last_applied` is written in the same transaction as their
/// effects, so a crash that loses such a commit loses `last_applied` with it and openraft
/// re-applies the same entries (deterministically, to the same revisions) before the store
/// opens. Every raft-log commit (append, truncate, purge) is durable and redb persists all
/// earlier commits with it, so logs are never purged past what is durably applied.
pub(crate) fn begin_replayable_write(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write().ctx("begin write transaction")?;
    txn.set_durability(redb::Durability::None)
        .ctx("set durability")?;
    Ok(txn)
}

/// Creates every table so that read transactions never see a missing one.
pub(crate) fn create_tables(db: &Database) -> Result<(), StoreError> {
    let txn = begin_durable_write(db)?;
    txn.open_table(RAFT_LOG).ctx("create raft_log")?;
    txn.open_table(RAFT_STATE).ctx("create raft_state")?;
    txn.open_table(KV).ctx("create kv")?;
    txn.open_table(HISTORY).ctx("create history")?;
    txn.open_table(EVENTS).ctx("create events")?;
    txn.open_table(SM_META).ctx("create sm_meta")?;
    txn.commit().ctx("commit table creation")
}

/// Reads a u64 stored as 8 little-endian bytes (absent = 0).
pub(crate) fn get_u64<T>(table: &T, key: &str) -> Result<u64, StoreError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    match table.get(key).ctx("read meta")? {
        None => Ok(0),
        Some(v) => {
            let b = v.value();
            let a: [u8; 8] = b
                .try_into()
                .map_err(|_| StoreError::Storage(format!("corrupt meta value {key}")))?;
            Ok(u64::from_le_bytes(a))
        }
    }
}

/// Reads a JSON value (absent = None).
pub(crate) fn get_json<T, V>(table: &T, key: &str) -> Result<Option<V>, StoreError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
    V: serde::de::DeserializeOwned,
{
    match table.get(key).ctx("read meta")? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .ctx("decode meta"),
    }
}

pub(crate) fn json<V: serde::Serialize>(v: &V) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).ctx("encode json")
}
