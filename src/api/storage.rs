//! Objects on top of the key-value store: keys, resourceVersions, paginated lists.
//!
//! Objects are stored as JSON without `metadata.resourceVersion`; on the way out the key's
//! `mod_revision` becomes the `resourceVersion`, as the Kubernetes apiserver does over etcd.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::object;
use super::registry::ResourceInfo;
use super::status::{ApiError, ApiResult};
use crate::store::{KeyValue, Op, Read, Revision, Store, StoreError};

/// Storage key of one object.
pub fn object_key(r: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if r.namespaced => format!("{}{}/{}", resource_prefix(r), ns, name),
        _ => format!("{}{}", resource_prefix(r), name),
    }
}

/// Prefix of every object of a resource (all namespaces).
pub fn resource_prefix(r: &ResourceInfo) -> String {
    format!("/registry/{}/{}/", r.storage_group(), r.plural)
}

/// Prefix of a list: one namespace, or all of them when `namespace` is None.
pub fn list_prefix(r: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if r.namespaced => format!("{}{}/", resource_prefix(r), ns),
        _ => resource_prefix(r),
    }
}

/// Decodes a stored value and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    object::set_meta(
        &mut obj,
        "resourceVersion",
        Value::String(kv.mod_revision.to_string()),
    );
    Ok(obj)
}

/// Encodes an object for storage (without its resourceVersion).
pub fn encode(obj: &Value) -> ApiResult<Vec<u8>> {
    let mut obj = obj.clone();
    object::remove_meta(&mut obj, "resourceVersion");
    serde_json::to_vec(&obj).map_err(|e| ApiError::internal(format!("encoding object: {e}")))
}

/// Maps store failures to API errors for a given object.
pub fn store_error(err: StoreError, r: &ResourceInfo, name: &str) -> ApiError {
    match err {
        StoreError::AlreadyExists(_) => ApiError::already_exists(r, name),
        StoreError::NotFound(_) => ApiError::not_found(r, name),
        StoreError::Conflict { .. } => ApiError::stale(r, name),
        other => general_store_error(other),
    }
}

/// Maps store failures that are not about one object.
pub fn general_store_error(err: StoreError) -> ApiError {
    match err {
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        StoreError::FutureRevision { requested, current } => ApiError::timeout(format!(
            "Too large resource version: {requested}, current: {current}"
        )),
        StoreError::ValueTooLarge { size, limit, .. } => ApiError::too_large(format!(
            "etcdserver: request is too large ({size} bytes, limit {limit})"
        )),
        StoreError::Unavailable(msg) => ApiError::service_unavailable(msg),
        StoreError::Storage(msg) => ApiError::internal(msg),
        StoreError::AlreadyExists(key) | StoreError::NotFound(key) => {
            ApiError::internal(format!("unexpected store state for {key}"))
        }
        StoreError::Conflict { key, .. } => {
            ApiError::internal(format!("unexpected conflict on {key}"))
        }
    }
}

/// Continue tokens carry the list's revision and the last key returned, so every page of one
/// list is served from the same revision.
#[derive(Debug, Serialize, Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

pub fn encode_continue(rv: Revision, last_key: &str) -> String {
    let token = ContinueToken {
        rv,
        start: last_key.to_string(),
    };
    let json = serde_json::to_vec(&token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_continue(token: &str, prefix: &str) -> ApiResult<ContinueToken> {
    let bad = || ApiError::bad_request("continue key is not valid: malformed token");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let token: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if !token.start.starts_with(prefix) {
        return Err(ApiError::bad_request(
            "continue key is not valid: it does not belong to this list",
        ));
    }
    Ok(token)
}

/// What a list asks for.
pub struct ListQuery<'a> {
    pub prefix: String,
    pub read: Read,
    pub limit: Option<usize>,
    pub continue_token: Option<&'a str>,
    /// Keeps only the objects the selectors match.
    pub filter: &'a (dyn Fn(&Value) -> bool + Sync),
    /// Whether a filter is active (remainingItemCount is only known without one).
    pub filtered: bool,
}

pub struct ListPage {
    pub items: Vec<Value>,
    pub revision: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// The objects of the API over the store.
#[derive(Clone)]
pub struct Objects {
    store: Store,
}

impl Objects {
    pub fn new(store: Store) -> Self {
        Objects { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One object, or None.
    pub async fn get(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        read: Read,
    ) -> ApiResult<Option<Value>> {
        let key = object_key(r, namespace, name);
        let (kv, _) = self
            .store
            .get(&key, read)
            .await
            .map_err(|e| store_error(e, r, name))?;
        kv.as_ref().map(decode).transpose()
    }

    /// One object, or 404.
    pub async fn must_get(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> ApiResult<Value> {
        self.get(r, namespace, name, Read::Linearizable)
            .await?
            .ok_or_else(|| ApiError::not_found(r, name))
    }

    pub async fn list(&self, q: ListQuery<'_>) -> ApiResult<ListPage> {
        let mut read = q.read;
        let mut start_after: Option<String> = None;
        if let Some(token) = q.continue_token {
            let token = decode_continue(token, &q.prefix)?;
            read = Read::AtRevision(token.rv);
            start_after = Some(token.start);
        }
        let want = q.limit.filter(|l| *l > 0);
        let batch = want.map_or(1000, |l| l.clamp(1, 1000));
        let mut items = Vec::new();
        let mut revision = None;
        loop {
            let page = self
                .store
                .range(&q.prefix, start_after.as_deref(), Some(batch), read)
                .await
                .map_err(general_store_error)?;
            let rev = *revision.get_or_insert(page.revision);
            read = Read::AtRevision(rev);
            let page_len = page.kvs.len();
            for (i, kv) in page.kvs.iter().enumerate() {
                let obj = decode(kv)?;
                if (q.filter)(&obj) {
                    items.push(obj);
                }
                if want.is_some_and(|w| items.len() >= w) {
                    let left = page.remaining + (page_len - i - 1) as u64;
                    if left == 0 {
                        return Ok(ListPage {
                            items,
                            revision: rev,
                            continue_token: None,
                            remaining: None,
                        });
                    }
                    return Ok(ListPage {
                        items,
                        revision: rev,
                        continue_token: Some(encode_continue(rev, &kv.key)),
                        remaining: (!q.filtered).then_some(left),
                    });
                }
            }
            match page.kvs.last() {
                Some(last) if page.remaining > 0 => start_after = Some(last.key.clone()),
                _ => {
                    return Ok(ListPage {
                        items,
                        revision: rev,
                        continue_token: None,
                        remaining: None,
                    })
                }
            }
        }
    }

    pub async fn create(&self, r: &ResourceInfo, obj: &Value) -> ApiResult<Value> {
        let name = object::name(obj).unwrap_or_default().to_string();
        let key = object_key(r, object::namespace(obj), &name);
        let value = encode(obj)?;
        let outcome = self
            .store
            .txn(vec![Op::Create { key, value }])
            .await
            .map_err(|e| store_error(e, r, &name))?;
        stamped(obj, outcome.revision)
    }

    /// Compare-and-swap update: `expected` is the resourceVersion the change was computed from.
    pub async fn update(
        &self,
        r: &ResourceInfo,
        obj: &Value,
        expected: Revision,
    ) -> ApiResult<Value> {
        let name = object::name(obj).unwrap_or_default().to_string();
        let key = object_key(r, object::namespace(obj), &name);
        let value = encode(obj)?;
        let outcome = self
            .store
            .txn(vec![Op::Update {
                key,
                value,
                expected: Some(expected),
            }])
            .await
            .map_err(|e| store_error(e, r, &name))?;
        stamped(obj, outcome.revision)
    }

    /// Compare-and-swap delete; returns the last state of the object.
    pub async fn delete(
        &self,
        r: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        expected: Revision,
    ) -> ApiResult<Value> {
        let key = object_key(r, namespace, name);
        let outcome = self
            .store
            .txn(vec![Op::Delete {
                key,
                expected: Some(expected),
            }])
            .await
            .map_err(|e| store_error(e, r, name))?;
        match outcome.ops.first() {
            Some(op) => decode(&op.kv),
            None => Err(ApiError::internal("delete returned no outcome")),
        }
    }
}

fn stamped(obj: &Value, revision: Revision) -> ApiResult<Value> {
    let mut out = obj.clone();
    object::set_meta(
        &mut out,
        "resourceVersion",
        Value::String(revision.to_string()),
    );
    Ok(out)
}
