//! openraft's log storage (v2 API) on the shared redb database.
//!
//! Every append, vote and truncation is its own redb write transaction committed with
//! `Durability::Immediate` (fsync) before openraft is told it is done: a write is acknowledged
//! to a client only after its log entry is on disk. redb serializes write transactions, which
//! gives the ordering openraft requires between vote and log writes.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, LogState, RaftLogReader, StorageError as RaftStorageError, StorageIOError, Vote,
};
use redb::{ReadableDatabase, ReadableTable};

use super::db::{
    begin_durable_write, get_json, json, Ctx, DbSlot, RAFT_LOG, RAFT_STATE, STATE_LAST_PURGED,
    STATE_VOTE,
};
use super::raft::{Entry, LogId, NodeId, TypeConfig};
use super::types::StoreError;

type RaftResult<T> = Result<T, RaftStorageError<NodeId>>;

/// Runs redb work off the async threads (fsyncs can take milliseconds).
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Storage(format!("blocking store task failed: {e}")))?
}

fn read_err(e: StoreError) -> RaftStorageError<NodeId> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err(e: StoreError) -> RaftStorageError<NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn decode_entry(b: &[u8]) -> Result<Entry, StoreError> {
    serde_json::from_slice(b).ctx("decode raft log entry")
}

/// The raft log store; cloning it is cheap (it is also its own log reader).
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Arc<DbSlot>,
}

impl LogStore {
    pub(crate) fn new(db: Arc<DbSlot>) -> Self {
        LogStore { db }
    }

    async fn put_state<V>(&self, key: &'static str, v: &V) -> Result<(), StoreError>
    where
        V: serde::Serialize,
    {
        let db = self.db.clone();
        let bytes = json(v)?;
        blocking(move || {
            let db = db.get()?;
            let txn = begin_durable_write(&db)?;
            txn.open_table(RAFT_STATE)
                .ctx("open raft_state")?
                .insert(key, bytes.as_slice())
                .ctx("write raft_state")?;
            txn.commit().ctx("commit raft_state")
        })
        .await
    }

    async fn get_state<V>(&self, key: &'static str) -> Result<Option<V>, StoreError>
    where
        V: serde::de::DeserializeOwned + Send + 'static,
    {
        let db = self.db.clone();
        blocking(move || {
            let db = db.get()?;
            let txn = db.begin_read().ctx("begin read")?;
            get_json(&txn.open_table(RAFT_STATE).ctx("open raft_state")?, key)
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> RaftResult<Vec<Entry>> {
        let db = self.db.clone();
        let bounds: (Bound<u64>, Bound<u64>) =
            (range.start_bound().cloned(), range.end_bound().cloned());
        blocking(move || {
            let db = db.get()?;
            let txn = db.begin_read().ctx("begin read")?;
            let t = txn.open_table(RAFT_LOG).ctx("open raft_log")?;
            let mut out = Vec::new();
            for item in t.range::<u64>(bounds).ctx("range raft_log")? {
                let (_, v) = item.ctx("read raft_log")?;
                out.push(decode_entry(v.value())?);
            }
            Ok(out)
        })
        .await
        .map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> RaftResult<LogState<TypeConfig>> {
        let db = self.db.clone();
        blocking(move || {
            let db = db.get()?;
            let txn = db.begin_read().ctx("begin read")?;
            let state = txn.open_table(RAFT_STATE).ctx("open raft_state")?;
            let last_purged: Option<LogId> = get_json(&state, STATE_LAST_PURGED)?;
            let log = txn.open_table(RAFT_LOG).ctx("open raft_log")?;
            let last = match log.last().ctx("read raft_log")? {
                Some((_, v)) => Some(decode_entry(v.value())?.log_id),
                None => last_purged,
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(read_err)
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> RaftResult<()> {
        tracing::debug!(%vote, "save vote");
        self.put_state(STATE_VOTE, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> RaftResult<Option<Vote<NodeId>>> {
        self.get_state(STATE_VOTE)
            .await
            .map_err(|e| StorageIOError::read_vote(AnyError::new(&e)).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> RaftResult<()>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut rows = Vec::new();
        for e in entries {
            rows.push((e.log_id.index, json(&e).map_err(write_err)?));
        }
        let db = self.db.clone();
        let res = blocking(move || {
            let db = db.get()?;
            let txn = begin_durable_write(&db)?;
            {
                let mut t = txn.open_table(RAFT_LOG).ctx("open raft_log")?;
                for (index, bytes) in &rows {
                    t.insert(*index, bytes.as_slice()).ctx("append raft_log")?;
                }
            }
            txn.commit().ctx("commit raft_log append")
        })
        .await;
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> RaftResult<()> {
        tracing::debug!(%log_id, "truncate raft log");
        let db = self.db.clone();
        blocking(move || {
            let db = db.get()?;
            let txn = begin_durable_write(&db)?;
            txn.open_table(RAFT_LOG)
                .ctx("open raft_log")?
                .retain_in(log_id.index.., |_, _| false)
                .ctx("truncate raft_log")?;
            txn.commit().ctx("commit truncate")
        })
        .await
        .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> RaftResult<()> {
        tracing::debug!(%log_id, "purge raft log");
        let db = self.db.clone();
        let purged = json(&Some(log_id)).map_err(write_err)?;
        blocking(move || {
            let db = db.get()?;
            let txn = begin_durable_write(&db)?;
            txn.open_table(RAFT_STATE)
                .ctx("open raft_state")?
                .insert(STATE_LAST_PURGED, purged.as_slice())
                .ctx("write last_purged")?;
            txn.open_table(RAFT_LOG)
                .ctx("open raft_log")?
                .retain_in(..=log_id.index, |_, _| false)
                .ctx("purge raft_log")?;
            txn.commit().ctx("commit purge")
        })
        .await
        .map_err(write_err)
    }
}
