//! Decodes each stored object version once for all the watches that deliver it.
//!
//! Every watch on pods (scheduler, node agents, each controller, kubectl) receives every pod
//! change; decoding the stored JSON and encoding the event again per watcher made watch
//! fan-out the API server's largest cost under load. Versions are identified by key and
//! `mod_revision` (a store version never changes), so the first watcher to reach a change
//! decodes it and the others share the result. The memo keeps only the most recent versions:
//! watchers are usually within milliseconds of each other, and one that lags behind simply
//! decodes for itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use serde_json::Value;

use super::status::ApiResult;
use super::storage::decode;
use crate::store::{KeyValue, Revision};

/// How many object versions are kept (a decoded pod is some tens of KiB).
const CAPACITY: usize = 512;

/// One decoded object version (resourceVersion included) and, once a watcher needed it, its
/// JSON encoding.
pub struct Decoded {
    pub object: Value,
    json: OnceLock<Bytes>,
}

impl Decoded {
    /// The object as JSON, encoded at most once.
    pub fn json(&self) -> &Bytes {
        self.json
            .get_or_init(|| Bytes::from(self.object.to_string().into_bytes()))
    }
}

type VersionKey = (String, Revision);

#[derive(Default)]
pub struct WatchMemo {
    recent: Mutex<Recent>,
}

#[derive(Default)]
struct Recent {
    by_version: HashMap<VersionKey, Arc<Decoded>>,
    order: VecDeque<VersionKey>,
}

impl WatchMemo {
    /// The decoded form of `kv`, shared with every other watcher of the same version.
    pub fn decode(&self, kv: &KeyValue) -> ApiResult<Arc<Decoded>> {
        let version = (kv.key.clone(), kv.mod_revision);
        if let Some(hit) = self.lock().by_version.get(&version) {
            return Ok(hit.clone());
        }
        // Decoded outside the lock: two watchers may race on a version, and both results are
        // the same, so the loser's copy is simply dropped.
        let decoded = Arc::new(Decoded {
            object: decode(kv)?,
            json: OnceLock::new(),
        });
        let mut recent = self.lock();
        if !recent.by_version.contains_key(&version) {
            if recent.order.len() >= CAPACITY {
                if let Some(old) = recent.order.pop_front() {
                    recent.by_version.remove(&old);
                }
            }
            recent.order.push_back(version.clone());
            recent.by_version.insert(version, decoded.clone());
        }
        Ok(decoded)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        // The map holds no invariant a panicking holder could break half-way.
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, rev: Revision, name: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: serde_json::to_vec(&serde_json::json!({"metadata": {"name": name}})).unwrap(),
            create_revision: 1,
            mod_revision: rev,
        }
    }

    #[test]
    fn a_version_is_decoded_once_and_carries_its_resource_version() {
        let memo = WatchMemo::default();
        let a = memo.decode(&kv("/p/a", 7, "a")).unwrap();
        let b = memo.decode(&kv("/p/a", 7, "a")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.object["metadata"]["resourceVersion"], "7");
        let json: Value = serde_json::from_slice(a.json()).unwrap();
        assert_eq!(json, a.object);
        let newer = memo.decode(&kv("/p/a", 8, "a")).unwrap();
        assert!(!Arc::ptr_eq(&a, &newer));
        assert_eq!(newer.object["metadata"]["resourceVersion"], "8");
    }

    #[test]
    fn old_versions_are_forgotten_and_corrupt_ones_are_errors() {
        let memo = WatchMemo::default();
        let first = memo.decode(&kv("/p/0", 1, "x")).unwrap();
        for i in 1..=CAPACITY as u64 {
            memo.decode(&kv(&format!("/p/{i}"), i + 1, "x")).unwrap();
        }
        assert_eq!(memo.lock().by_version.len(), CAPACITY);
        let again = memo.decode(&kv("/p/0", 1, "x")).unwrap();
        assert!(!Arc::ptr_eq(&first, &again), "evicted, decoded anew");
        let mut bad = kv("/p/bad", 99, "x");
        bad.value = b"{not json".to_vec();
        assert!(memo.decode(&bad).is_err());
    }
}
