//! openraft's state machine (v2 API): applies log entries to the MVCC tables, builds and
//! installs snapshots, and publishes watch events.
//!
//! A batch of entries is applied in one redb write transaction that also records
//! `last_applied`. It is not fsynced on its own (see `begin_replayable_write`): the entries are
//! durable in the raft log, and a crash only makes openraft apply them again, to the same
//! revisions. Events are published after the commit, so a watcher never sees a change that a
//! crash could undo: what it saw is in the durable log and comes back identically.

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta,
    StorageError as RaftStorageError, StorageIOError,
};
use redb::ReadableDatabase;
use tokio::io::AsyncSeekExt;
use tracing::Instrument;

use super::db::{begin_durable_write, begin_replayable_write, raft_err, Ctx, DbSlot, SM_META};
use super::log_store::blocking;
use super::mvcc::{read_meta, SmMeta, SmTables};
use super::raft::{
    Entry, LogId, NodeId, Request, Response, StoredMembership, TxnResult, TypeConfig,
};
use super::snapshot::{load_snapshot, read_header, write_snapshot};
use super::types::{Op, Revision, StoreError, TxnOutcome};
use super::watch::{Published, WatchHub};

type RaftResult<T> = Result<T, RaftStorageError<NodeId>>;

/// File name of the current raft snapshot inside the snapshot dir.
const CURRENT_SNAPSHOT: &str = "current.snap";

/// State shared by the state machine, its snapshot builders and the `Store` front end.
pub(crate) struct SmShared {
    pub(crate) db: Arc<DbSlot>,
    pub(crate) hub: Arc<WatchHub>,
    /// Last applied revision (mirrors redb, for cheap `current_revision()`).
    pub(crate) revision: AtomicU64,
    pub(crate) compacted: AtomicU64,
    /// Automatic compaction keeps at least this many revisions. Must be equal on all replicas:
    /// compaction happens inside apply and has to be deterministic.
    pub(crate) history_revisions: u64,
    pub(crate) snapshot_dir: PathBuf,
}

impl SmShared {
    fn set_counters(&self, revision: Revision, compacted: Revision) {
        self.revision.store(revision, Ordering::SeqCst);
        self.compacted.store(compacted, Ordering::SeqCst);
    }
}

pub(crate) struct StateMachine {
    shared: Arc<SmShared>,
    /// The temporary file of a snapshot being received from the leader.
    receiving: Option<PathBuf>,
}

impl StateMachine {
    pub(crate) fn new(shared: Arc<SmShared>) -> Self {
        StateMachine {
            shared,
            receiving: None,
        }
    }
}

struct ApplyOutput {
    responses: Vec<Response>,
    published: Vec<Published>,
    meta: SmMeta,
}

fn empty_outcome(meta: &SmMeta) -> Response {
    vec![Ok(TxnOutcome {
        revision: meta.revision,
        ops: vec![],
    })]
}

/// Applies one transaction, queues its watch events, and compacts automatically once the
/// history window has doubled (deterministically, so every replica compacts alike).
fn apply_one(
    shared: &SmShared,
    t: &mut SmTables<'_>,
    meta: &mut SmMeta,
    ops: &[Op],
    published: &mut Vec<Published>,
) -> Result<TxnResult, StoreError> {
    let applied = t.apply_txn(meta, ops)?;
    if let Some(ev) = applied.events {
        published.push(Published::Events(Arc::new(ev)));
        let h = shared.history_revisions;
        if meta.revision - meta.compacted > h.saturating_mul(2) {
            let to = meta.revision - h;
            t.compact(meta, to)?;
        }
    }
    Ok(applied.response)
}

/// Applies a batch of committed entries in one redb transaction.
fn apply_blocking(shared: &SmShared, entries: Vec<Entry>) -> Result<ApplyOutput, StoreError> {
    let db = shared.db.get()?;
    let txn = begin_replayable_write(&db)?;
    let mut responses = Vec::with_capacity(entries.len());
    let mut published = Vec::new();
    let meta = {
        let mut t = SmTables::open(&txn)?;
        let mut meta = read_meta(&t.meta)?;
        for entry in entries {
            meta.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => responses.push(empty_outcome(&meta)),
                EntryPayload::Membership(m) => {
                    meta.membership = StoredMembership::new(Some(entry.log_id), m);
                    responses.push(empty_outcome(&meta));
                }
                EntryPayload::Normal(Request::Txn(ops)) => {
                    let result = apply_one(shared, &mut t, &mut meta, &ops, &mut published)?;
                    responses.push(vec![result]);
                }
                EntryPayload::Normal(Request::Batch(txns)) => {
                    let mut results = Vec::with_capacity(txns.len());
                    for ops in &txns {
                        results.push(apply_one(shared, &mut t, &mut meta, ops, &mut published)?);
                    }
                    responses.push(results);
                }
                EntryPayload::Normal(Request::Compact(to)) => {
                    t.compact(&mut meta, to)?;
                    responses.push(empty_outcome(&meta));
                }
            }
        }
        t.write_meta(&meta)?;
        meta
    };
    txn.commit().ctx("commit apply")?;
    Ok(ApplyOutput {
        responses,
        published,
        meta,
    })
}

fn snapshot_err(e: StoreError) -> RaftStorageError<NodeId> {
    StorageIOError::write_snapshot(None, AnyError::new(&e)).into()
}

fn unique_name(kind: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{kind}-{}-{nanos}.tmp", std::process::id())
}

/// fsyncs a directory so that a rename in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("fsync snapshot dir")
}

/// Atomically makes `tmp` the current snapshot file.
fn publish_snapshot_file(dir: &Path, tmp: &Path) -> Result<(), StoreError> {
    std::fs::rename(tmp, dir.join(CURRENT_SNAPSHOT)).ctx("rename snapshot")?;
    sync_dir(dir)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> RaftResult<(Option<LogId>, StoredMembership)> {
        let db = self.shared.db.clone();
        let meta = blocking(move || {
            let db = db.get()?;
            let txn = db.begin_read().ctx("begin read")?;
            read_meta(&txn.open_table(SM_META).ctx("open sm_meta")?)
        })
        .await
        .map_err(raft_err)?;
        Ok((meta.last_applied, meta.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> RaftResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if entries.is_empty() {
            return Ok(vec![]);
        }
        let span = tracing::debug_span!(
            "apply",
            first = entries.first().map(|e| e.log_id.index),
            n = entries.len()
        );
        let shared = self.shared.clone();
        let out = blocking(move || apply_blocking(&shared, entries))
            .instrument(span)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "apply failed; raft will stop");
                raft_err(e)
            })?;
        self.shared
            .set_counters(out.meta.revision, out.meta.compacted);
        for p in out.published {
            self.shared.hub.publish(p);
        }
        tracing::debug!(revision = out.meta.revision, "applied");
        Ok(out.responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> RaftResult<Box<tokio::fs::File>> {
        let dir = self.shared.snapshot_dir.clone();
        tokio::fs::create_dir_all(&dir)
            .await
            .ctx("create snapshot dir")
            .map_err(snapshot_err)?;
        let path = dir.join(unique_name("recv"));
        let f = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .ctx("create snapshot file")
            .map_err(snapshot_err)?;
        if let Some(old) = self.receiving.replace(path) {
            let _ = tokio::fs::remove_file(old).await;
        }
        Ok(Box::new(f))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<tokio::fs::File>,
    ) -> RaftResult<()> {
        tracing::info!(snapshot = %meta, "installing raft snapshot");
        let mut file = *snapshot;
        file.seek(SeekFrom::Start(0))
            .await
            .ctx("rewind snapshot")
            .map_err(snapshot_err)?;
        let mut src = file.into_std().await;
        let shared = self.shared.clone();
        let last_applied = meta.last_log_id;
        let membership = meta.last_membership.clone();
        let new_meta = blocking(move || {
            // Keep the received snapshot as the current one, then load it.
            let dir = &shared.snapshot_dir;
            std::fs::create_dir_all(dir).ctx("create snapshot dir")?;
            let tmp = dir.join(unique_name("install"));
            {
                let mut dst = std::fs::File::create(&tmp).ctx("create snapshot file")?;
                std::io::copy(&mut src, &mut dst).ctx("copy snapshot")?;
                dst.sync_all().ctx("fsync snapshot")?;
            }
            let mut reader = std::fs::File::open(&tmp).ctx("open snapshot")?;
            let db = shared.db.get()?;
            let txn = begin_durable_write(&db)?;
            let m = load_snapshot(&txn, &mut reader, last_applied, membership)?;
            txn.commit().ctx("commit snapshot install")?;
            publish_snapshot_file(dir, &tmp)?;
            Ok(m)
        })
        .await
        .map_err(snapshot_err)?;
        if let Some(p) = self.receiving.take() {
            let _ = tokio::fs::remove_file(p).await;
        }
        self.shared
            .set_counters(new_meta.revision, new_meta.compacted);
        self.shared.hub.publish(Published::Reset(new_meta.revision));
        tracing::info!(revision = new_meta.revision, "raft snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> RaftResult<Option<Snapshot<TypeConfig>>> {
        let path = self.shared.snapshot_dir.join(CURRENT_SNAPSHOT);
        let found = blocking(move || {
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(StoreError::Storage(format!("open snapshot: {e}"))),
            };
            let header = read_header(&mut f)?;
            f.seek(SeekFrom::Start(0)).ctx("rewind snapshot")?;
            Ok(Some((header, f)))
        })
        .await
        .map_err(|e| {
            RaftStorageError::from(StorageIOError::read_snapshot(None, AnyError::new(&e)))
        })?;
        Ok(found.map(|(header, f)| Snapshot {
            meta: header.raft_meta(),
            snapshot: Box::new(tokio::fs::File::from_std(f)),
        }))
    }
}

/// Builds a raft snapshot from a consistent read transaction (applies continue meanwhile).
pub(crate) struct SnapshotBuilder {
    shared: Arc<SmShared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> RaftResult<Snapshot<TypeConfig>> {
        let shared = self.shared.clone();
        let (header, file) = blocking(move || {
            let dir = &shared.snapshot_dir;
            std::fs::create_dir_all(dir).ctx("create snapshot dir")?;
            let tmp = dir.join(unique_name("build"));
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)
                .ctx("create snapshot file")?;
            let db = shared.db.get()?;
            let txn = db.begin_read().ctx("begin read")?;
            let header = write_snapshot(&txn, &mut f)?;
            drop(txn);
            f.sync_all().ctx("fsync snapshot")?;
            publish_snapshot_file(dir, &tmp)?;
            f.seek(SeekFrom::Start(0)).ctx("rewind snapshot")?;
            Ok((header, f))
        })
        .await
        .map_err(snapshot_err)?;
        tracing::info!(
            revision = header.revision,
            keys = header.key_count,
            id = %header.snapshot_id,
            "built raft snapshot"
        );
        Ok(Snapshot {
            meta: header.raft_meta(),
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::{CommittedLeaderId, Entry as RaftEntry};
    use redb::ReadableDatabase;

    use super::*;
    use crate::store::db::{create_tables, open_database, DB_FILE, HISTORY, KV};
    use crate::store::mvcc::get_at;
    use crate::store::types::Op;
    use crate::store::{Store, StoreConfig};

    fn target_sm(dir: &Path) -> (Arc<SmShared>, StateMachine) {
        let db = open_database(&dir.join(DB_FILE), true).unwrap();
        create_tables(&db).unwrap();
        let shared = Arc::new(SmShared {
            db: Arc::new(DbSlot::new(db)),
            hub: Arc::new(WatchHub::new()),
            revision: AtomicU64::new(0),
            compacted: AtomicU64::new(0),
            history_revisions: 10_000,
            snapshot_dir: dir.join("snapshots"),
        });
        (shared.clone(), StateMachine::new(shared))
    }

    fn get(shared: &SmShared, key: &str) -> Option<crate::store::KeyValue> {
        let db = shared.db.get().unwrap();
        let txn = db.begin_read().unwrap();
        let kv = txn.open_table(KV).unwrap();
        let h = txn.open_table(HISTORY).unwrap();
        get_at(&kv, &h, key, None).unwrap()
    }

    /// A snapshot built by one node's openraft is installed into another state machine the
    /// way a follower receives it: streamed into `begin_receiving_snapshot`'s file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raft_snapshot_install_replaces_state() {
        let src_dir = tempfile::tempdir().unwrap();
        let src = Store::open(StoreConfig::new(src_dir.path())).await.unwrap();
        for i in 0..10 {
            let op = Op::Create {
                key: format!("/k{i}"),
                value: vec![i as u8; 10],
            };
            src.txn(vec![op]).await.unwrap();
        }
        src.inner.raft.trigger().snapshot().await.unwrap();
        src.inner
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.snapshot.is_some(), "snapshot")
            .await
            .unwrap();
        let mut snap = src.inner.raft.get_snapshot().await.unwrap().unwrap();

        let dst_dir = tempfile::tempdir().unwrap();
        let (shared, mut sm) = target_sm(dst_dir.path());
        // Pre-existing state that the snapshot must replace.
        let old = RaftEntry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 9), 1),
            payload: EntryPayload::Normal(Request::Txn(vec![Op::Create {
                key: "/old".into(),
                value: b"x".to_vec(),
            }])),
        };
        sm.apply(vec![old]).await.unwrap();
        assert!(get(&shared, "/old").is_some());
        let mut rx = shared.hub.subscribe().unwrap();

        let mut recv = sm.begin_receiving_snapshot().await.unwrap();
        tokio::io::copy(&mut *snap.snapshot, &mut *recv)
            .await
            .unwrap();
        tokio::io::AsyncWriteExt::flush(&mut *recv).await.unwrap();
        sm.install_snapshot(&snap.meta, recv).await.unwrap();

        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, snap.meta.last_log_id);
        assert_eq!(membership, snap.meta.last_membership);
        assert_eq!(shared.revision.load(Ordering::SeqCst), 10);
        assert_eq!(shared.compacted.load(Ordering::SeqCst), 10);
        assert!(get(&shared, "/old").is_none());
        let k3 = get(&shared, "/k3").unwrap();
        assert_eq!((k3.value, k3.mod_revision), (vec![3u8; 10], 4));
        assert!(matches!(rx.recv().await.unwrap(), Published::Reset(10)));
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);
        src.shutdown().await.unwrap();
    }
}
