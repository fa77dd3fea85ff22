//! The replicated key-value store: an etcd-like MVCC key space replicated with openraft and
//! persisted in one redb database.
//!
//! Every write goes through the raft log, also on a single server (a one-member group), so the
//! single-server and HA control planes run the same code. Reads are served from the local
//! state machine, after a read-index round (`Read::Linearizable`) when asked for.

mod batcher;
mod codec;
mod db;
mod log_store;
mod mvcc;
pub mod raft;
mod snapshot;
mod state_machine;
mod types;
mod watch;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use redb::{ReadTransaction, ReadableDatabase, ReadableTable};
use tracing::Instrument;

pub use raft::{NoTransport, RaftTransport, TransportUnavailable, TxnError};
pub use types::*;
pub use watch::WatchStream;

use batcher::Batcher;
use db::{
    begin_durable_write, create_tables, get_u64, open_database, Ctx, DbSlot, DB_FILE, HISTORY, KV,
    RAFT_STATE, SM_META, STATE_NODE_ID,
};
use log_store::{blocking, LogStore};
use mvcc::{get_at, range_at, read_meta};
use raft::{single_member, Network, NodeId, Raft, Request, StoredMembership};
use state_machine::{SmShared, StateMachine};

/// How long `open` waits for this node to become leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// openraft builds a snapshot (and then purges the log) every this many entries.
const SNAPSHOT_EVERY_LOGS: u64 = 5000;

/// Where and how to run the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub node_id: u64,
    /// keep at least this many revisions of history for watches/old reads
    pub history_revisions: u64,
    /// max value size (default 1.5 MiB like etcd)
    pub max_value_bytes: usize,
}

impl StoreConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            node_id: 1,
            history_revisions: 10_000,
            max_value_bytes: 1_572_864,
        }
    }
}

/// A handle to the running store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    raft: Raft,
    batcher: Batcher,
    shared: Arc<SmShared>,
    shut_down: AtomicBool,
}

impl Drop for Inner {
    /// A store dropped without `shutdown` still stops raft and releases the database, in the
    /// background, so that the data dir can be reopened.
    fn drop(&mut self) {
        if self.shut_down.swap(true, Ordering::SeqCst) {
            return;
        }
        self.shared.hub.close();
        let raft = self.raft.clone();
        let slot = self.shared.db.clone();
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                let _ = raft.shutdown().await;
                let _ = close_db(&slot).await;
            });
        }
    }
}

/// Maps an openraft API error: leadership problems and a stopped node are "unavailable".
fn raft_error<E: std::error::Error>(e: RaftError<NodeId, E>) -> StoreError {
    match e {
        RaftError::APIError(e) => StoreError::Unavailable(e.to_string()),
        RaftError::Fatal(Fatal::Stopped) => {
            StoreError::Unavailable("the store is shut down".into())
        }
        RaftError::Fatal(f) => StoreError::Storage(format!("raft stopped: {f}")),
    }
}

/// Takes the database out of its slot and closes it once in-flight users are done.
async fn close_db(slot: &DbSlot) -> Result<(), StoreError> {
    let Some(mut db) = slot.take() else {
        return Ok(());
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Arc::try_unwrap(db) {
            Ok(d) => {
                return blocking(move || {
                    // Persist the state machine's last (replayable) commits, so a clean stop
                    // needs no replay on the next start.
                    begin_durable_write(&d)?
                        .commit()
                        .ctx("final durable commit")?;
                    d.close().ctx("close database")
                })
                .await;
            }
            Err(still_shared) => {
                if Instant::now() > deadline {
                    tracing::warn!("database still in use 10s after shutdown; leaving it to drop");
                    return Ok(());
                }
                db = still_shared;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Opens the database and reads what the store needs before raft starts.
fn open_local(config: &StoreConfig) -> Result<(redb::Database, Revision, Revision), StoreError> {
    std::fs::create_dir_all(&config.data_dir).ctx("create data dir")?;
    let db = open_database(&config.data_dir.join(DB_FILE), true)?;
    create_tables(&db)?;
    let txn = begin_durable_write(&db)?;
    {
        let mut state = txn.open_table(RAFT_STATE).ctx("open raft_state")?;
        let stored = get_u64(&state, STATE_NODE_ID)?;
        let present = state.get(STATE_NODE_ID).ctx("read node id")?.is_some();
        match present {
            true if stored != config.node_id => {
                return Err(StoreError::Storage(format!(
                    "data dir {} belongs to raft node {stored}, not {}",
                    config.data_dir.display(),
                    config.node_id
                )))
            }
            true => {}
            false => {
                state
                    .insert(STATE_NODE_ID, config.node_id.to_le_bytes().as_slice())
                    .ctx("write node id")?;
            }
        }
    }
    let meta = read_meta(&txn.open_table(SM_META).ctx("open sm_meta")?)?;
    txn.commit().ctx("commit open")?;
    Ok((db, meta.revision, meta.compacted))
}

/// Streams snapshot bytes from a blocking producer to the async side.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(buf.to_vec())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "reader gone"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Store {
    /// Opens (creating if absent) the redb database `<data_dir>/store.redb`, starts an openraft
    /// node, and if the raft group is new initializes it as a one-member group {node_id} (the
    /// single-node case: same code path as HA). Returns once this node is leader and has
    /// applied everything in its log.
    pub async fn open(config: StoreConfig) -> Result<Store, StoreError> {
        let span = tracing::info_span!(
            "store_open",
            data_dir = %config.data_dir.display(),
            node_id = config.node_id
        );
        Self::open_inner(config).instrument(span).await
    }

    async fn open_inner(config: StoreConfig) -> Result<Store, StoreError> {
        let cfg = config.clone();
        let (db, revision, compacted) = blocking(move || open_local(&cfg)).await?;
        tracing::info!(revision, compacted, "store database opened");
        let shared = Arc::new(SmShared {
            db: Arc::new(DbSlot::new(db)),
            hub: Arc::new(watch::WatchHub::new()),
            revision: AtomicU64::new(revision),
            compacted: AtomicU64::new(compacted),
            history_revisions: config.history_revisions,
            snapshot_dir: config.data_dir.join("snapshots"),
        });
        let raft_config = openraft::Config {
            cluster_name: "wkube".into(),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_LOGS),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        }
        .validate()
        .ctx("raft config")?;
        let raft = match Raft::new(
            config.node_id,
            Arc::new(raft_config),
            Network::new(Arc::new(NoTransport)),
            LogStore::new(shared.db.clone()),
            StateMachine::new(shared.clone()),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                let _ = close_db(&shared.db).await;
                return Err(StoreError::Storage(format!("starting raft: {e}")));
            }
        };
        let store = Store {
            inner: Arc::new(Inner {
                config,
                batcher: Batcher::start(raft.clone()),
                raft,
                shared,
                shut_down: AtomicBool::new(false),
            }),
        };
        if let Err(e) = store.become_leader().await {
            let _ = store.shutdown().await;
            return Err(e);
        }
        tracing::info!(
            revision = store.current_revision(),
            "store open; this node is the raft leader"
        );
        Ok(store)
    }

    async fn become_leader(&self) -> Result<(), StoreError> {
        let raft = &self.inner.raft;
        let node_id = self.inner.config.node_id;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StoreError::Storage(format!("raft: {e}")))?;
        if !initialized {
            tracing::info!(node_id, "initializing a new one-member raft group");
            match raft.initialize(single_member(node_id)).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(raft_error(e)),
            }
        }
        raft.wait(Some(LEADER_TIMEOUT))
            .state(ServerState::Leader, "store open")
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("this node did not become raft leader: {e}"))
            })?;
        raft.ensure_linearizable().await.map_err(raft_error)?;
        Ok(())
    }

    /// Stops raft, ends all watches, and closes the database (releasing its lock).
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        if self.inner.shut_down.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        tracing::info!("store shutting down");
        let res = self.inner.raft.shutdown().await;
        self.inner.shared.hub.close();
        close_db(&self.inner.shared.db).await?;
        res.map_err(|e| StoreError::Storage(format!("raft shutdown: {e}")))
    }

    /// Applies `ops` atomically at one new revision through the raft log. The checks run
    /// inside the state machine; a failed check fails the whole transaction with that op's
    /// error and consumes no revision.
    pub async fn txn(&self, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        let limit = self.inner.config.max_value_bytes;
        for op in &ops {
            if let Op::Create { key, value } | Op::Update { key, value, .. } = op {
                if value.len() > limit {
                    return Err(StoreError::ValueTooLarge {
                        key: key.clone(),
                        size: value.len(),
                        limit,
                    });
                }
            }
        }
        self.inner.batcher.submit(ops).await
    }

    /// Runs `f` on a read transaction at the freshness `read` asks for. `f` gets the revision
    /// to read at (None = latest) and the revision the read is served at.
    async fn read<T, F>(&self, read: Read, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction, Option<Revision>, Revision) -> Result<T, StoreError>
            + Send
            + 'static,
    {
        if read == Read::Linearizable {
            self.inner
                .raft
                .ensure_linearizable()
                .await
                .map_err(raft_error)?;
        }
        let db = self.inner.shared.db.clone();
        blocking(move || {
            let db = db.get()?;
            let txn = db.begin_read().ctx("begin read")?;
            let meta = read_meta(&txn.open_table(SM_META).ctx("open sm_meta")?)?;
            let (at, served) = match read {
                Read::AtRevision(r) if r < meta.compacted => {
                    return Err(StoreError::Compacted {
                        requested: r,
                        compacted: meta.compacted,
                    })
                }
                Read::AtRevision(r) if r > meta.revision => {
                    return Err(StoreError::FutureRevision {
                        requested: r,
                        current: meta.revision,
                    })
                }
                Read::AtRevision(r) => (Some(r), r),
                Read::Linearizable | Read::Local => (None, meta.revision),
            };
            f(&txn, at, served)
        })
        .await
    }

    /// Reads one key; the revision is the one the read was served at.
    pub async fn get(
        &self,
        key: &str,
        read: Read,
    ) -> Result<(Option<KeyValue>, Revision), StoreError> {
        let key = key.to_string();
        self.read(read, move |txn, at, served| {
            let kv = txn.open_table(KV).ctx("open kv")?;
            let history = txn.open_table(HISTORY).ctx("open history")?;
            Ok((get_at(&kv, &history, &key, at)?, served))
        })
        .await
    }

    /// Keys starting with `prefix`, in lexical order, after `start_after`, at most `limit`.
    pub async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
        read: Read,
    ) -> Result<RangeResult, StoreError> {
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.read(read, move |txn, at, served| {
            let kv = txn.open_table(KV).ctx("open kv")?;
            let history = txn.open_table(HISTORY).ctx("open history")?;
            let (kvs, remaining) =
                range_at(&kv, &history, &prefix, start_after.as_deref(), limit, at)?;
            Ok(RangeResult {
                kvs,
                revision: served,
                remaining,
            })
        })
        .await
    }

    /// Last applied revision on this replica.
    pub fn current_revision(&self) -> Revision {
        self.inner.shared.revision.load(Ordering::SeqCst)
    }

    pub fn compacted_revision(&self) -> Revision {
        self.inner.shared.compacted.load(Ordering::SeqCst)
    }

    /// Events with revision > after, for keys starting with prefix, in revision order, then
    /// live ones. Err(Compacted) if after < compacted_revision. The stream ends (returns None)
    /// only if the store shuts down or the watcher fell so far behind that history it needs
    /// was compacted (then it yields one Err(Compacted) first).
    pub async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        // Subscribe before anything is read, so that no revision can fall in between.
        let rx = self
            .inner
            .shared
            .hub
            .subscribe()
            .ok_or_else(|| StoreError::Unavailable("the store is shut down".into()))?;
        let compacted = self.compacted_revision();
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        Ok(watch::start(
            self.inner.shared.db.clone(),
            rx,
            prefix,
            after,
        ))
    }

    /// Compacts history up to `revision`, through raft (every replica compacts the same).
    pub async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let current = self.current_revision();
        let compacted = self.compacted_revision();
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        if revision < compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted,
            });
        }
        if revision == compacted {
            return Ok(());
        }
        let resp = self
            .inner
            .raft
            .client_write(Request::Compact(revision))
            .await
            .map_err(|e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>| raft_error(e))?;
        resp.data
            .into_iter()
            .try_for_each(|r| r.map(|_| ()).map_err(StoreError::from))
    }

    /// Streams a consistent snapshot of the state machine (all current keys + revision
    /// counters) to w.
    pub async fn save_snapshot(
        &self,
        w: &mut (dyn std::io::Write + Send),
    ) -> Result<Revision, StoreError> {
        let db = self.inner.shared.db.get()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
        let producer = tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().ctx("begin read")?;
            let header = snapshot::write_snapshot(&txn, &mut ChannelWriter { tx })?;
            Ok::<_, StoreError>(header.revision)
        });
        while let Some(chunk) = rx.recv().await {
            w.write_all(&chunk).ctx("write snapshot")?;
        }
        w.flush().ctx("flush snapshot")?;
        let revision = producer
            .await
            .map_err(|e| StoreError::Storage(format!("snapshot task: {e}")))??;
        tracing::info!(revision, "saved snapshot");
        Ok(revision)
    }

    /// Offline: same, reading a stopped server's data dir directly (error if it is locked by a
    /// running server).
    pub fn save_snapshot_offline(
        data_dir: &Path,
        w: &mut dyn std::io::Write,
    ) -> Result<Revision, StoreError> {
        let path = data_dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::Storage(format!(
                "{} does not exist",
                path.display()
            )));
        }
        let db = open_database(&path, false)?;
        let header = {
            let txn = db.begin_read().ctx("begin read")?;
            snapshot::write_snapshot(&txn, w)?
        };
        db.close().ctx("close database")?;
        Ok(header.revision)
    }

    /// Offline: create a brand-new data dir (must not exist or be empty) whose state machine is
    /// the snapshot's and whose raft group is a fresh one-member group (like `etcdctl snapshot
    /// restore`). Revisions are preserved; history before the snapshot's revision is not.
    pub fn restore_snapshot(
        r: &mut dyn std::io::Read,
        new_data_dir: &Path,
        node_id: u64,
    ) -> Result<Revision, StoreError> {
        if new_data_dir.exists() {
            let mut entries = std::fs::read_dir(new_data_dir).ctx("read target dir")?;
            if entries.next().is_some() {
                return Err(StoreError::Storage(format!(
                    "{} exists and is not empty",
                    new_data_dir.display()
                )));
            }
        }
        std::fs::create_dir_all(new_data_dir).ctx("create data dir")?;
        let path = new_data_dir.join(DB_FILE);
        let res = (|| {
            let db = open_database(&path, true)?;
            create_tables(&db)?;
            let txn = begin_durable_write(&db)?;
            // No raft pointers: the first open initializes a new one-member group.
            let meta = snapshot::load_snapshot(&txn, r, None, StoredMembership::default())?;
            txn.open_table(RAFT_STATE)
                .ctx("open raft_state")?
                .insert(STATE_NODE_ID, node_id.to_le_bytes().as_slice())
                .ctx("write node id")?;
            txn.commit().ctx("commit restore")?;
            db.close().ctx("close database")?;
            Ok(meta.revision)
        })();
        match res {
            Ok(rev) => {
                tracing::info!(revision = rev, dir = %new_data_dir.display(), "snapshot restored");
                Ok(rev)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn create(k: &str, v: &str) -> Op {
        Op::Create {
            key: k.into(),
            value: v.as_bytes().to_vec(),
        }
    }

    fn update(k: &str, v: &str, expected: Option<Revision>) -> Op {
        Op::Update {
            key: k.into(),
            value: v.as_bytes().to_vec(),
            expected,
        }
    }

    fn delete(k: &str, expected: Option<Revision>) -> Op {
        Op::Delete {
            key: k.into(),
            expected,
        }
    }

    async fn open_in(dir: &Path) -> Store {
        Store::open(StoreConfig::new(dir)).await.unwrap()
    }

    async fn value(s: &Store, k: &str, read: Read) -> Option<(String, Revision, Revision)> {
        s.get(k, read).await.unwrap().0.map(|kv| {
            (
                String::from_utf8(kv.value).unwrap(),
                kv.create_revision,
                kv.mod_revision,
            )
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn create_get_update_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        assert_eq!(s.current_revision(), 0);
        let out = s.txn(vec![create("/a", "1")]).await.unwrap();
        assert_eq!(out.revision, 1);
        assert_eq!(out.ops[0].prev, None);
        assert_eq!(
            value(&s, "/a", Read::Linearizable).await,
            Some(("1".into(), 1, 1))
        );
        let out = s.txn(vec![update("/a", "2", Some(1))]).await.unwrap();
        assert_eq!(out.revision, 2);
        assert_eq!(out.ops[0].prev.as_ref().unwrap().mod_revision, 1);
        assert_eq!(value(&s, "/a", Read::Local).await, Some(("2".into(), 1, 2)));
        let out = s.txn(vec![delete("/a", Some(2))]).await.unwrap();
        assert_eq!(out.revision, 3);
        assert_eq!(out.ops[0].kv.mod_revision, 3);
        assert_eq!(out.ops[0].kv.value, b"2");
        let (kv, rev) = s.get("/a", Read::Linearizable).await.unwrap();
        assert_eq!((kv, rev), (None, 3));
        assert_eq!(s.current_revision(), 3);
        s.shutdown().await.unwrap();
    }

    /// Concurrent writers share log entries (group commit) yet each transaction keeps its
    /// own revision and its own verdict: a conflict fails only its transaction.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_transactions_keep_their_own_revisions_and_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        let writers: Vec<_> = (0..200)
            .map(|i| {
                let s = s.clone();
                // Every tenth writer races another for the same key.
                let key = format!("/k/{}", if i % 10 == 0 { 0 } else { i });
                tokio::spawn(async move { s.txn(vec![create(&key, "v")]).await })
            })
            .collect();
        let mut revisions = Vec::new();
        let mut exists = 0;
        for w in writers {
            match w.await.unwrap() {
                Ok(out) => revisions.push(out.revision),
                Err(StoreError::AlreadyExists(k)) => {
                    assert_eq!(k, "/k/0");
                    exists += 1;
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert_eq!(exists, 19, "all but one racer for /k/0 lose");
        revisions.sort_unstable();
        let expected: Vec<Revision> = (1..=181).collect();
        assert_eq!(
            revisions, expected,
            "one revision per successful transaction"
        );
        assert_eq!(s.current_revision(), 181);
        s.shutdown().await.unwrap();
        let s = open_in(dir.path()).await;
        assert_eq!(s.current_revision(), 181, "every write survives a restart");
        let all = s
            .range("/k/", None, None, Read::Linearizable)
            .await
            .unwrap();
        assert_eq!(all.kvs.len(), 181);
        s.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_checks_do_not_consume_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        s.txn(vec![create("/a", "1")]).await.unwrap();
        assert!(matches!(
            s.txn(vec![create("/a", "x")]).await,
            Err(StoreError::AlreadyExists(k)) if k == "/a"
        ));
        assert!(matches!(
            s.txn(vec![update("/b", "x", None)]).await,
            Err(StoreError::NotFound(k)) if k == "/b"
        ));
        assert!(matches!(
            s.txn(vec![update("/a", "x", Some(7))]).await,
            Err(StoreError::Conflict {
                expected: 7,
                current: 1,
                ..
            })
        ));
        assert!(matches!(
            s.txn(vec![delete("/a", Some(7))]).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            s.txn(vec![delete("/zz", None)]).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(s.current_revision(), 1);
        assert_eq!(s.txn(vec![create("/b", "1")]).await.unwrap().revision, 2);
        s.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multi_op_txn_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        s.txn(vec![create("/a", "1")]).await.unwrap();
        let err = s
            .txn(vec![
                create("/x", "1"),
                create("/y", "1"),
                update("/a", "2", Some(99)),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }));
        assert_eq!(value(&s, "/x", Read::Linearizable).await, None);
        assert_eq!(value(&s, "/y", Read::Linearizable).await, None);
        assert_eq!(s.current_revision(), 1);
        let out = s
            .txn(vec![
                create("/x", "1"),
                create("/y", "1"),
                update("/a", "2", Some(1)),
            ])
            .await
            .unwrap();
        assert_eq!(out.revision, 2);
        assert_eq!(out.ops.len(), 3);
        assert!(out.ops.iter().all(|o| o.kv.mod_revision == 2));
        s.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn range_prefix_start_after_limit() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        for k in ["/p/a", "/p/b", "/p/c", "/p/d", "/p/e", "/q/x", "/o"] {
            s.txn(vec![create(k, k)]).await.unwrap();
        }
        let keys = |r: &RangeResult| r.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
        let r = s
            .range("/p/", None, Some(2), Read::Linearizable)
            .await
            .unwrap();
        assert_eq!(keys(&r), ["/p/a", "/p/b"]);
        assert_eq!((r.remaining, r.revision), (3, 7));
        let r = s
            .range("/p/", Some("/p/b"), Some(2), Read::Local)
            .await
            .unwrap();
        assert_eq!(keys(&r), ["/p/c", "/p/d"]);
        assert_eq!(r.remaining, 1);
        let r = s.range("/p/", None, None, Read::Local).await.unwrap();
        assert_eq!(r.kvs.len(), 5);
        assert_eq!(r.remaining, 0);
        let r = s.range("", None, None, Read::Local).await.unwrap();
        assert_eq!(r.kvs.len(), 7);
        // Paginating at a fixed revision does not see later writes.
        s.txn(vec![create("/p/bb", "x")]).await.unwrap();
        let r = s
            .range("/p/", Some("/p/b"), Some(2), Read::AtRevision(7))
            .await
            .unwrap();
        assert_eq!(keys(&r), ["/p/c", "/p/d"]);
        assert_eq!((r.remaining, r.revision), (1, 7));
        s.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_at_past_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        s.txn(vec![create("/k", "v1")]).await.unwrap(); // 1
        s.txn(vec![update("/k", "v2", None)]).await.unwrap(); // 2
        s.txn(vec![create("/j", "j")]).await.unwrap(); // 3
        s.txn(vec![delete("/k", None)]).await.unwrap(); // 4
        s.txn(vec![create("/k", "v3")]).await.unwrap(); // 5
        let at = |r| Read::AtRevision(r);
        assert_eq!(value(&s, "/k", at(0)).await, None);
        assert_eq!(value(&s, "/k", at(1)).await, Some(("v1".into(), 1, 1)));
        assert_eq!(value(&s, "/k", at(2)).await, Some(("v2".into(), 1, 2)));
        assert_eq!(value(&s, "/k", at(3)).await, Some(("v2".into(), 1, 2)));
        assert_eq!(value(&s, "/k", at(4)).await, None);
        assert_eq!(value(&s, "/k", at(5)).await, Some(("v3".into(), 5, 5)));
        assert_eq!(s.get("/k", at(3)).await.unwrap().1, 3);
        let r = s.range("/", None, None, at(3)).await.unwrap();
        let got: Vec<_> = r
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.mod_revision))
            .collect();
        assert_eq!(got, [("/j", 3), ("/k", 2)]);
        let r = s.range("/", None, None, at(4)).await.unwrap();
        assert_eq!(r.kvs.len(), 1);
        let r = s.range("/", Some("/j"), None, at(2)).await.unwrap();
        assert_eq!(r.kvs[0].value, b"v2");
        assert!(matches!(
            s.get("/k", at(6)).await,
            Err(StoreError::FutureRevision {
                requested: 6,
                current: 5
            })
        ));
        s.compact(3).await.unwrap();
        assert_eq!(s.compacted_revision(), 3);
        assert!(matches!(
            s.get("/k", at(2)).await,
            Err(StoreError::Compacted {
                requested: 2,
                compacted: 3
            })
        ));
        assert_eq!(value(&s, "/k", at(3)).await, Some(("v2".into(), 1, 2)));
        assert_eq!(value(&s, "/k", at(4)).await, None);
        assert_eq!(value(&s, "/k", at(5)).await, Some(("v3".into(), 5, 5)));
        let r = s.range("/", None, None, at(3)).await.unwrap();
        assert_eq!(r.kvs.len(), 2);
        assert!(matches!(
            s.compact(2).await,
            Err(StoreError::Compacted { .. })
        ));
        assert!(matches!(
            s.compact(9).await,
            Err(StoreError::FutureRevision { .. })
        ));
        s.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn automatic_compaction_keeps_history_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.history_revisions = 5;
        let s = Store::open(cfg).await.unwrap();
        s.txn(vec![create("/k", "0")]).await.unwrap();
        for i in 1..30 {
            s.txn(vec![update("/k", &i.to_string(), None)])
                .await
                .unwrap();
        }
        let (rev, compacted) = (s.current_revision(), s.compacted_revision());
        assert_eq!(rev, 30);
        assert!(compacted > 0 && rev - compacted <= 10, "{compacted}");
        let old = value(&s, "/k", Read::AtRevision(rev - 5)).await.unwrap();
        assert_eq!(old.0, (rev - 6).to_string());
        s.shutdown().await.unwrap();
    }

    async fn collect(w: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
        let mut out = Vec::new();
        while out.len() < n {
            let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
                .await
                .expect("watch timed out")
                .expect("watch ended")
                .expect("watch error");
            out.push(ev);
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_from_zero_sees_everything_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        s.txn(vec![create("/a", "1")]).await.unwrap();
        s.txn(vec![create("/b", "1"), create("/x/c", "1")])
            .await
            .unwrap();
        s.txn(vec![update("/a", "2", None)]).await.unwrap();
        let mut w = s.watch("/", 0).await.unwrap();
        s.txn(vec![delete("/a", None)]).await.unwrap();
        let evs = collect(&mut w, 5).await;
        let got: Vec<_> = evs
            .iter()
            .map(|e| (e.kind.clone(), e.kv.key.as_str(), e.kv.mod_revision))
            .collect();
        assert_eq!(
            got,
            [
                (EventKind::Put, "/a", 1),
                (EventKind::Put, "/b", 2),
                (EventKind::Put, "/x/c", 2),
                (EventKind::Put, "/a", 3),
                (EventKind::Delete, "/a", 4),
            ]
        );
        assert_eq!(evs[3].prev.as_ref().unwrap().value, b"1");
        assert_eq!(evs[4].kv.value, b"2");
        // Prefix filtering.
        let mut wx = s.watch("/x/", 0).await.unwrap();
        let evs = collect(&mut wx, 1).await;
        assert_eq!(evs[0].kv.key, "/x/c");
        s.shutdown().await.unwrap();
        // Shutdown ends streams.
        assert!(w.next().await.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_resume_has_no_gaps_or_duplicates_under_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        for i in 0..50 {
            s.txn(vec![create(&format!("/k{i}"), "v")]).await.unwrap();
        }
        let writer = {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 50..250 {
                    s.txn(vec![create(&format!("/k{i}"), "v")]).await.unwrap();
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut w = s.watch("/", 25).await.unwrap();
        let evs = collect(&mut w, 225).await;
        writer.await.unwrap();
        let revs: Vec<_> = evs.iter().map(|e| e.kv.mod_revision).collect();
        assert_eq!(revs, (26..=250).collect::<Vec<_>>());
        s.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_after_compaction_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        for i in 0..6 {
            s.txn(vec![create(&format!("/k{i}"), "v")]).await.unwrap();
        }
        s.compact(4).await.unwrap();
        assert!(matches!(
            s.watch("/", 3).await,
            Err(StoreError::Compacted {
                requested: 3,
                compacted: 4
            })
        ));
        let mut w = s.watch("/", 4).await.unwrap();
        let evs = collect(&mut w, 2).await;
        assert_eq!(evs[0].kv.mod_revision, 5);
        s.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restart_keeps_keys_revisions_and_watch_history() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        s.txn(vec![create("/a", "1")]).await.unwrap();
        s.txn(vec![update("/a", "2", None), create("/b", "1")])
            .await
            .unwrap();
        s.txn(vec![delete("/b", None)]).await.unwrap();
        let _ = s.txn(vec![create("/a", "x")]).await.unwrap_err();
        s.shutdown().await.unwrap();
        assert!(matches!(
            s.get("/a", Read::Local).await,
            Err(StoreError::Unavailable(_))
        ));

        let s = open_in(dir.path()).await;
        assert_eq!(s.current_revision(), 3);
        assert_eq!(
            value(&s, "/a", Read::Linearizable).await,
            Some(("2".into(), 1, 2))
        );
        assert_eq!(value(&s, "/b", Read::Linearizable).await, None);
        assert_eq!(
            value(&s, "/b", Read::AtRevision(2)).await,
            Some(("1".into(), 2, 2))
        );
        let mut w = s.watch("/", 1).await.unwrap();
        assert_eq!(s.txn(vec![create("/c", "1")]).await.unwrap().revision, 4);
        let revs: Vec<_> = collect(&mut w, 4)
            .await
            .iter()
            .map(|e| e.kv.mod_revision)
            .collect();
        assert_eq!(revs, [2, 2, 3, 4]);
        s.shutdown().await.unwrap();

        // A third start, after a store that was dropped without shutdown.
        let s = open_in(dir.path()).await;
        assert_eq!(s.current_revision(), 4);
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(10);
        let s = loop {
            match Store::open(StoreConfig::new(dir.path())).await {
                Ok(s) => break s,
                Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(s.current_revision(), 4);
        s.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snapshot_save_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        s.txn(vec![create("/a", "1"), create("/b", "1")])
            .await
            .unwrap();
        s.txn(vec![update("/a", "2", None)]).await.unwrap();
        s.txn(vec![create("/c", &"x".repeat(100_000))])
            .await
            .unwrap();
        s.txn(vec![delete("/b", None)]).await.unwrap();
        let mut snap = Vec::new();
        assert_eq!(s.save_snapshot(&mut snap).await.unwrap(), 4);
        // Offline save refuses a running server's dir.
        assert!(matches!(
            Store::save_snapshot_offline(dir.path(), &mut Vec::new()),
            Err(StoreError::Unavailable(_))
        ));
        s.shutdown().await.unwrap();
        let mut offline = Vec::new();
        assert_eq!(
            Store::save_snapshot_offline(dir.path(), &mut offline).unwrap(),
            4
        );

        let new_dir = tempfile::tempdir().unwrap();
        let target = new_dir.path().join("restored");
        assert_eq!(
            Store::restore_snapshot(&mut snap.as_slice(), &target, 1).unwrap(),
            4
        );
        // Not into a non-empty dir; a damaged snapshot is rejected.
        assert!(Store::restore_snapshot(&mut offline.as_slice(), &target, 1).is_err());
        let mut damaged = offline.clone();
        let n = damaged.len();
        damaged[n - 10] ^= 0xff;
        let bad = new_dir.path().join("bad");
        assert!(Store::restore_snapshot(&mut damaged.as_slice(), &bad, 1).is_err());

        let r = open_in(&target).await;
        assert_eq!(r.current_revision(), 4);
        assert_eq!(r.compacted_revision(), 4);
        assert_eq!(
            value(&r, "/a", Read::Linearizable).await,
            Some(("2".into(), 1, 2))
        );
        assert_eq!(value(&r, "/b", Read::Linearizable).await, None);
        let c = r.get("/c", Read::Local).await.unwrap().0.unwrap();
        assert_eq!((c.value.len(), c.mod_revision), (100_000, 3));
        assert!(matches!(
            r.get("/a", Read::AtRevision(3)).await,
            Err(StoreError::Compacted { .. })
        ));
        assert_eq!(r.txn(vec![create("/d", "1")]).await.unwrap().revision, 5);
        r.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn value_too_large_is_rejected_without_a_revision() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.max_value_bytes = 10;
        let s = Store::open(cfg).await.unwrap();
        s.txn(vec![create("/a", "small")]).await.unwrap();
        let err = s
            .txn(vec![create("/b", "1"), update("/a", "01234567890", None)])
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::ValueTooLarge {
                size: 11,
                limit: 10,
                ..
            }
        ));
        assert_eq!(s.current_revision(), 1);
        assert_eq!(value(&s, "/b", Read::Linearizable).await, None);
        s.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lagging_watcher_catches_up_from_history() {
        fn assert_stream<T: futures::Stream + Send + Unpin>(_: &T) {}
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        let mut w = s.watch("/", 0).await.unwrap();
        assert_stream(&w);
        s.txn(vec![create("/k0", "v")]).await.unwrap();
        collect(&mut w, 1).await;
        // Far more revisions than the broadcast holds, while the watcher is not polled.
        for i in 1..(3 * watch::BROADCAST_CAPACITY) {
            s.txn(vec![create(&format!("/k{i}"), "v")]).await.unwrap();
        }
        let n = 3 * watch::BROADCAST_CAPACITY as u64;
        let revs: Vec<_> = collect(&mut w, n as usize - 1)
            .await
            .iter()
            .map(|e| e.kv.mod_revision)
            .collect();
        assert_eq!(revs, (2..=n).collect::<Vec<_>>());
        s.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watcher_behind_compaction_gets_compacted_then_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = StoreConfig::new(dir.path());
        cfg.history_revisions = 5;
        let s = Store::open(cfg).await.unwrap();
        let mut w = s.watch("/", 0).await.unwrap();
        s.txn(vec![create("/k0", "v")]).await.unwrap();
        collect(&mut w, 1).await;
        for i in 1..(2 * watch::BROADCAST_CAPACITY) {
            s.txn(vec![create(&format!("/k{i}"), "v")]).await.unwrap();
        }
        assert!(s.compacted_revision() > 1);
        let mut got_compacted = false;
        while let Some(item) = w.next().await {
            match item {
                Ok(_) => assert!(!got_compacted, "events after Compacted"),
                Err(StoreError::Compacted { .. }) => got_compacted = true,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(got_compacted);
        s.shutdown().await.unwrap();
    }

    const CRASH_DIR_VAR: &str = "WKUBE_STORE_CRASH_TEST_DIR";

    /// The child half of `kill_9_keeps_acknowledged_writes` (does nothing when run normally):
    /// writes forever, printing every acknowledged revision.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_child_writer() {
        let Ok(dir) = std::env::var(CRASH_DIR_VAR) else {
            return;
        };
        let s = open_in(Path::new(&dir)).await;
        for i in 0.. {
            let out = s.txn(vec![create(&format!("/k{i}"), "v")]).await.unwrap();
            println!("ACK {i} {}", out.revision);
        }
    }

    #[test]
    fn kill_9_keeps_acknowledged_writes() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "store::tests::crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_VAR, dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acked = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ACK ") {
                let mut it = rest.split(' ').map(|x| x.parse::<u64>().unwrap());
                acked.push((it.next().unwrap(), it.next().unwrap()));
                if acked.len() == 300 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_eq!(acked.len(), 300);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let s = open_in(dir.path()).await;
            assert!(s.current_revision() >= 300);
            for (i, rev) in acked {
                let kv = s.get(&format!("/k{i}"), Read::Local).await.unwrap().0;
                assert_eq!(kv.map(|kv| kv.mod_revision), Some(rev), "key /k{i}");
            }
            s.shutdown().await.unwrap();
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_watchers_receive_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        let mut watchers = Vec::new();
        for _ in 0..1000 {
            watchers.push(s.watch("/w/", 0).await.unwrap());
        }
        s.txn(vec![create("/w/x", "1")]).await.unwrap();
        let results = futures::future::join_all(watchers.iter_mut().map(|w| collect(w, 1))).await;
        assert!(results
            .iter()
            .all(|evs| evs[0].kv.key == "/w/x" && evs[0].kv.mod_revision == 1));
        s.shutdown().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn raft_snapshot_is_built_and_log_purged() {
        let dir = tempfile::tempdir().unwrap();
        let s = open_in(dir.path()).await;
        for i in 0..20 {
            s.txn(vec![create(&format!("/k{i}"), "v")]).await.unwrap();
        }
        s.inner.raft.trigger().snapshot().await.unwrap();
        let m = s
            .inner
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.snapshot.is_some(), "snapshot built")
            .await
            .unwrap();
        let snap_index = m.snapshot.unwrap().index;
        s.inner.raft.trigger().purge_log(snap_index).await.unwrap();
        s.inner
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.purged.is_some(), "log purged")
            .await
            .unwrap();
        let snap = s.inner.raft.get_snapshot().await.unwrap().unwrap();
        assert_eq!(snap.meta.last_log_id.unwrap().index, snap_index);
        s.shutdown().await.unwrap();
        // Restart with a purged log.
        let s = open_in(dir.path()).await;
        assert_eq!(s.current_revision(), 20);
        assert_eq!(s.txn(vec![create("/z", "v")]).await.unwrap().revision, 21);
        s.shutdown().await.unwrap();
    }
}
