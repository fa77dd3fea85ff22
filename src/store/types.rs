//! The store's public vocabulary: keys and values, write operations, reads, watch events, errors.
//!
//! Values are opaque bytes (the API layer stores object JSON without `resourceVersion`; it puts
//! the key's `mod_revision` there on the way out, as the Kubernetes apiserver does over etcd).

use serde::{Deserialize, Serialize};

/// One cluster-wide, strictly increasing counter. Every applied transaction that changes
/// something takes the next revision. 0 means "nothing written yet".
pub type Revision = u64;

/// A key and its latest value, with the revisions that created and last modified it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (its current incarnation).
    pub create_revision: Revision,
    /// Revision of the last write to this key. For the value carried by a delete event this is
    /// the revision of the delete.
    pub mod_revision: Revision,
}

/// A write. A transaction is a list of these, applied atomically at one revision, all or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Fails with `AlreadyExists` if the key exists.
    Create { key: String, value: Vec<u8> },
    /// Fails with `NotFound` if the key is absent, and with `Conflict` if `expected` is given
    /// and differs from the key's current `mod_revision` (compare-and-swap).
    Update {
        key: String,
        value: Vec<u8>,
        expected: Option<Revision>,
    },
    /// Fails with `NotFound` if absent, `Conflict` as for `Update`.
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// What one `Op` of a committed transaction did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpOutcome {
    /// The key after the op (for a delete: the deleted value with `mod_revision` = the delete's).
    pub kv: KeyValue,
    /// The key before the op (None for a create).
    pub prev: Option<KeyValue>,
}

/// The result of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOutcome {
    pub revision: Revision,
    pub ops: Vec<OpOutcome>,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Confirmed with the raft leader first (read-index): sees every write acknowledged before
    /// the read started. The default, as in Kubernetes.
    Linearizable,
    /// Whatever this replica has applied (Kubernetes' `resourceVersion=0`).
    Local,
    /// The state as of an exact past revision (for paginated lists: every page of one list is
    /// served at the revision of its first page). `Compacted` if older than the compaction point,
    /// `FutureRevision` if not yet reached.
    AtRevision(Revision),
}

/// A page of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResult {
    /// Keys in lexical order.
    pub kvs: Vec<KeyValue>,
    /// The revision the read was served at.
    pub revision: Revision,
    /// How many more keys match after the last one returned.
    pub remaining: u64,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub kind: EventKind,
    /// For `Put` the new value; for `Delete` the last value, with `mod_revision` = delete revision.
    pub kv: KeyValue,
    /// The value before this change (None for a put that created the key).
    pub prev: Option<KeyValue>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    #[error("key {0:?} not found")]
    NotFound(String),
    #[error("conflict on key {key:?}: expected revision {expected}, current is {current}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("value of {size} bytes for key {key:?} exceeds the limit of {limit} bytes")]
    ValueTooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    #[error("store is not available: {0}")]
    Unavailable(String),
    #[error("store I/O error: {0}")]
    Storage(String),
}

impl StoreError {
    /// True for errors that say something about the request (not the store's health).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, StoreError::Unavailable(_) | StoreError::Storage(_))
    }
}
