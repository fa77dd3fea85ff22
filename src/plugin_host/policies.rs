//! The policies in force: an in-memory set that every write reads, fed by a small controller
//! that watches the store for `ClusterAdmissionPolicy` and `AdmissionPolicy` objects, loads
//! each one's module, checks its settings (`validate-settings`) and reports the outcome in its
//! status. A policy that cannot be loaded, or whose settings are refused, is `Error` and not
//! enforced; one that loads is `Active` and is in the set before its status says so, so a
//! client that waits for `Active` knows its next request is checked.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use serde_json::{json, Value};
use tracing::Instrument as _;

use super::resource::{self, AdmissionPolicySpec, ModuleSource, PolicyMode};
use super::{
    AdmissionRequest, Call, CallLimits, PluginHost, PolicyError, PolicyModule, PolicyResponse,
};
use crate::api::object;
use crate::api::registry::{ResourceInfo, Subresource};
use crate::api::rest::{Rest, WriteOptions};
use crate::api::storage::{self, ListQuery};
use crate::image::{ImageStore, PullPolicy, RegistryAuth};
use crate::store::{EventKind, Read};

/// Which policy: cluster-wide ones have no namespace and sort first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PolicyKey {
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
}

impl PolicyKey {
    fn of(obj: &Value) -> PolicyKey {
        PolicyKey {
            namespace: object::namespace(obj).map(str::to_string),
            name: object::name(obj).unwrap_or_default().to_string(),
        }
    }

    /// How messages name the policy: `name`, or `namespace/name` for a namespaced one.
    pub(crate) fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A loaded policy whose settings were accepted.
pub(crate) struct ActivePolicy {
    pub(crate) key: PolicyKey,
    pub(crate) spec: AdmissionPolicySpec,
    module: Arc<PolicyModule>,
    settings: Value,
    limits: CallLimits,
}

impl ActivePolicy {
    pub(crate) async fn call(
        &self,
        call: Call,
        request: &AdmissionRequest,
    ) -> Result<PolicyResponse, PolicyError> {
        let span = tracing::debug_span!("admission policy", policy = %self.key.display(), call = call.name(), uid = %request.uid);
        self.module
            .call(call, &self.settings, request, &self.limits)
            .instrument(span)
            .await
    }

    pub(crate) fn monitor(&self) -> bool {
        self.spec.mode() == PolicyMode::Monitor
    }
}

/// The active policies, in the order they run (cluster ones by name, then namespaced ones by
/// namespace and name). Readers take a snapshot, so a change never blocks a write in flight.
#[derive(Default)]
pub struct PolicySet {
    active: RwLock<Arc<BTreeMap<PolicyKey, Arc<ActivePolicy>>>>,
}

impl PolicySet {
    pub(crate) fn snapshot(&self) -> Arc<BTreeMap<PolicyKey, Arc<ActivePolicy>>> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn change(&self, f: impl FnOnce(&mut BTreeMap<PolicyKey, Arc<ActivePolicy>>)) {
        let mut guard = self.active.write().unwrap_or_else(|p| p.into_inner());
        let mut next = (**guard).clone();
        f(&mut next);
        *guard = Arc::new(next);
    }

    fn insert(&self, p: Arc<ActivePolicy>) {
        self.change(|m| {
            m.insert(p.key.clone(), p);
        });
    }

    fn remove(&self, key: &PolicyKey) {
        self.change(|m| {
            m.remove(key);
        });
    }

    fn retain(&self, keep: impl Fn(&PolicyKey) -> bool) {
        self.change(|m| m.retain(|k, _| keep(k)));
    }
}

/// Keeps a [`PolicySet`] in step with the store.
pub(crate) struct PolicyController {
    rest: Rest,
    host: Arc<PluginHost>,
    images: Option<ImageStore>,
    set: Arc<PolicySet>,
    /// The (uid, generation) each policy was last loaded at: status writes do not reload.
    loaded: HashMap<PolicyKey, (String, i64)>,
    /// Policies whose module could not be fetched (a ConfigMap not there yet, a registry
    /// down): tried again every [`RETRY_INTERVAL`] until they load.
    unfetched: HashMap<PolicyKey, ResourceInfo>,
}

/// How often policies whose module could not be fetched are tried again.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// Why a policy is not active: the status message, and whether trying again may help.
struct LoadError {
    message: String,
    fetch: bool,
}

impl From<String> for LoadError {
    fn from(message: String) -> Self {
        LoadError {
            message,
            fetch: false,
        }
    }
}

const PREFIX: &str = "/registry/wkube.dev/";

impl PolicyController {
    pub(crate) fn new(
        rest: Rest,
        host: Arc<PluginHost>,
        images: Option<ImageStore>,
        set: Arc<PolicySet>,
    ) -> Self {
        PolicyController {
            rest,
            host,
            images,
            set,
            loaded: HashMap::new(),
            unfetched: HashMap::new(),
        }
    }

    /// Lists, then follows the watch; lists again if the watch ends (e.g. history compacted).
    pub(crate) async fn run(mut self) {
        loop {
            match self.sync().await {
                Ok(()) => tracing::debug!("policy watch ended; listing again"),
                Err(e) => tracing::warn!(error = %e, "watching admission policies"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn sync(&mut self) -> Result<(), String> {
        let mut present = Vec::new();
        let mut revision = 0;
        for r in self.kinds() {
            let everything = |_: &Value| true;
            let page = self
                .rest
                .objects()
                .list(ListQuery {
                    prefix: storage::resource_prefix(&r),
                    read: Read::Linearizable,
                    limit: None,
                    continue_token: None,
                    filter: &everything,
                    filtered: false,
                })
                .await
                .map_err(|e| e.to_string())?;
            // Watch from the oldest list: replays are harmless (reconcile is idempotent), gaps are not.
            revision = if revision == 0 {
                page.revision
            } else {
                revision.min(page.revision)
            };
            for obj in page.items {
                present.push(PolicyKey::of(&obj));
                self.reconcile(&r, &obj).await;
            }
        }
        self.set.retain(|k| present.contains(k));
        self.loaded.retain(|k, _| present.contains(k));
        let store = self.rest.objects().store().clone();
        let mut events = store
            .watch(PREFIX, revision)
            .await
            .map_err(|e| e.to_string())?;
        let mut retry = tokio::time::interval(RETRY_INTERVAL);
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                _ = retry.tick() => {
                    self.retry_unfetched().await;
                    continue;
                }
            };
            let Some(event) = event else { break };
            let event = event.map_err(|e| e.to_string())?;
            let Some(r) = self.kind_of(&event.kv.key) else {
                continue;
            };
            let obj = storage::decode(&event.kv).map_err(|e| e.to_string())?;
            match event.kind {
                EventKind::Put => self.reconcile(&r, &obj).await,
                EventKind::Delete => self.forget(&PolicyKey::of(&obj)),
            }
        }
        Ok(())
    }

    fn kinds(&self) -> Vec<ResourceInfo> {
        self.rest
            .registry()
            .resources()
            .iter()
            .filter(|r| {
                r.group == resource::GROUP
                    && matches!(r.kind, "ClusterAdmissionPolicy" | "AdmissionPolicy")
            })
            .cloned()
            .collect()
    }

    fn kind_of(&self, key: &str) -> Option<ResourceInfo> {
        self.kinds()
            .into_iter()
            .find(|r| key.starts_with(&storage::resource_prefix(r)))
    }

    /// Loads again the policies whose module could not be fetched.
    async fn retry_unfetched(&mut self) {
        let pending: Vec<(PolicyKey, ResourceInfo)> = self.unfetched.drain().collect();
        for (key, r) in pending {
            let found = self
                .rest
                .objects()
                .get(&r, key.namespace.as_deref(), &key.name, Read::Local)
                .await;
            if let Ok(Some(obj)) = found {
                self.loaded.remove(&key);
                self.reconcile(&r, &obj).await;
            }
        }
    }

    fn forget(&mut self, key: &PolicyKey) {
        self.set.remove(key);
        self.loaded.remove(key);
        self.unfetched.remove(key);
        tracing::info!(policy = %key.display(), "admission policy removed");
    }

    async fn reconcile(&mut self, r: &ResourceInfo, obj: &Value) {
        let key = PolicyKey::of(obj);
        if object::is_deleting(obj) {
            self.forget(&key);
            return;
        }
        let uid = object::uid(obj).unwrap_or_default().to_string();
        let generation = object::meta(obj)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if self.loaded.get(&key) == Some(&(uid.clone(), generation)) {
            return;
        }
        let status = match self.load(&key, obj).await {
            Ok(active) => {
                let digest = active.module.digest().to_string();
                self.set.insert(Arc::new(active));
                tracing::info!(policy = %key.display(), %digest, "admission policy active");
                json!({"phase": "Active", "moduleDigest": digest, "observedGeneration": generation})
            }
            Err(LoadError { message, fetch }) => {
                self.set.remove(&key);
                if fetch {
                    self.unfetched.insert(key.clone(), r.clone());
                }
                tracing::warn!(policy = %key.display(), %message, "admission policy not enforced");
                json!({"phase": "Error", "message": message, "observedGeneration": generation})
            }
        };
        self.loaded.insert(key, (uid, generation));
        self.write_status(r, obj, status).await;
    }

    async fn write_status(&self, r: &ResourceInfo, obj: &Value, status: Value) {
        if obj.get("status") == Some(&status) {
            return;
        }
        let mut body = obj.clone();
        body["status"] = status;
        // Unpinned, so that the update retries on conflicts with other writers.
        object::remove_meta(&mut body, "resourceVersion");
        let name = object::name(obj).unwrap_or_default();
        let written = self
            .rest
            .update(
                r,
                object::namespace(obj),
                name,
                body,
                Some(Subresource::Status),
                &WriteOptions::default(),
            )
            .await;
        match written {
            Ok(_) => {}
            Err(e) if e.reason == "NotFound" => {}
            Err(e) => tracing::warn!(policy = name, error = %e, "writing policy status"),
        }
    }

    /// Loads the module and checks the settings; the error is the status message.
    async fn load(&self, key: &PolicyKey, obj: &Value) -> Result<ActivePolicy, LoadError> {
        let spec: AdmissionPolicySpec =
            serde_json::from_value(obj.get("spec").cloned().unwrap_or(Value::Null))
                .map_err(|e| format!("invalid spec: {e}"))?;
        let bytes = self
            .module_bytes(key, &spec.module)
            .await
            .map_err(|message| LoadError {
                message,
                fetch: true,
            })?;
        let module = self.host.load(bytes).await.map_err(|e| e.to_string())?;
        let limits = CallLimits {
            timeout: Duration::from_secs(
                spec.timeout_seconds
                    .unwrap_or(resource::DEFAULT_TIMEOUT_SECONDS)
                    .clamp(1, resource::MAX_TIMEOUT_SECONDS) as u64,
            ),
            memory_bytes: spec
                .memory_limit
                .as_deref()
                .and_then(resource::parse_bytes)
                .unwrap_or(resource::DEFAULT_MEMORY_BYTES),
        };
        let settings = spec.settings.clone().unwrap_or_else(|| json!({}));
        match module.validate_settings(&settings, &limits).await {
            Ok(Ok(())) => Ok(ActivePolicy {
                key: key.clone(),
                spec,
                module,
                settings,
                limits,
            }),
            Ok(Err(message)) => Err(format!("invalid settings: {message}").into()),
            Err(e) => Err(format!("validate-settings failed: {e}").into()),
        }
    }

    async fn module_bytes(
        &self,
        key: &PolicyKey,
        source: &ModuleSource,
    ) -> Result<Vec<u8>, String> {
        if let Some(text) = &source.inline {
            return decode_base64(text)
                .map_err(|e| format!("spec.module.inline is not base64: {e}"));
        }
        if let Some(r) = &source.config_map_key_ref {
            let ns = key
                .namespace
                .as_deref()
                .or(r.namespace.as_deref())
                .unwrap_or("default");
            return self.config_map_bytes(ns, &r.name, &r.key).await;
        }
        if let Some(reference) = &source.image {
            return self.image_bytes(reference).await;
        }
        Err("spec.module names no source".into())
    }

    async fn config_map_bytes(&self, ns: &str, name: &str, key: &str) -> Result<Vec<u8>, String> {
        let cms = self
            .rest
            .registry()
            .find("", "v1", "configmaps")
            .ok_or("configmaps are not served")?;
        let cm = self
            .rest
            .objects()
            .get(cms, Some(ns), name, Read::Linearizable)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("configmap {ns}/{name} not found"))?;
        let text = cm
            .pointer(&format!(
                "/binaryData/{}",
                key.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("configmap {ns}/{name} has no binaryData key {key:?}"))?;
        decode_base64(text).map_err(|e| format!("configmap {ns}/{name} key {key:?}: {e}"))
    }

    async fn image_bytes(&self, reference: &str) -> Result<Vec<u8>, String> {
        let images = self
            .images
            .as_ref()
            .ok_or("this server has no image store for policy modules")?;
        let policy = PullPolicy::for_container(None, reference);
        let image = images
            .ensure(reference, policy, &RegistryAuth::Anonymous, &|_| {})
            .await
            .map_err(|e| format!("pulling {reference}: {e}"))?;
        tokio::fs::read(&image.wasm_path)
            .await
            .map_err(|e| format!("reading the module of {reference}: {e}"))
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: String = text.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(compact)
}
