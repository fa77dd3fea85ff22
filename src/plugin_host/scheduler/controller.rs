//! Keeps the scheduler's [`PluginSet`] in step with the `SchedulerPlugin` objects: loads and
//! compiles a plugin's module, checks its settings (`configure`) on a first instance, swaps it
//! into the set, and writes the object's status (`Active`/`Error`, message, module digest,
//! observedGeneration). A plugin's failing calls (reported by [`WasmPlugin`]) set `Error` and
//! record a Warning event; its first good call after that sets `Active` again.
//!
//! It is an API client like the scheduler. Modules come inline or from a ConfigMap; OCI
//! references need an image store, which only a scheduler started with one has.

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event as WatchEvent};
use kube::runtime::WatchStreamExt as _;
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn, Instrument as _};

use super::kind::{SchedulerPluginSpec, DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT_SECONDS};
use super::{Health, PluginSet, PluginSpec, Reporter, SchedulerHost, WasmPlugin};
use crate::image::{ImageStore, PullPolicy, RegistryAuth};
use crate::plugin_host::resource::parse_bytes;
use crate::plugin_host::CallLimits;

fn api_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("wkube.dev", "v1alpha1", "SchedulerPlugin");
    ApiResource::from_gvk_with_plural(&gvk, "schedulerplugins")
}

/// What is loaded for one object.
struct Loaded {
    generation: i64,
    uid: String,
}

/// How often objects that failed to load are tried again (a ConfigMap created later, a
/// registry back up).
const RETRY: Duration = Duration::from_secs(10);

pub struct Controller {
    client: Client,
    host: Arc<SchedulerHost>,
    set: Arc<PluginSet>,
    images: Option<ImageStore>,
    component: String,
    loaded: HashMap<String, Loaded>,
    /// (object, message) of the objects whose last load failed, to retry.
    failed: HashMap<String, (DynamicObject, String)>,
    health_tx: mpsc::UnboundedSender<(String, Health)>,
    health_rx: mpsc::UnboundedReceiver<(String, Health)>,
}

impl Controller {
    pub fn new(
        client: Client,
        host: Arc<SchedulerHost>,
        set: Arc<PluginSet>,
        images: Option<ImageStore>,
        component: &str,
    ) -> Self {
        let (health_tx, health_rx) = mpsc::unbounded_channel();
        Controller {
            client,
            host,
            set,
            images,
            component: component.to_string(),
            loaded: HashMap::new(),
            failed: HashMap::new(),
            health_tx,
            health_rx,
        }
    }

    fn api(&self) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &api_resource())
    }

    /// Runs until the task is dropped; watch failures are retried with back-off.
    pub async fn run(mut self) {
        let stream = watcher(self.api(), watcher::Config::default()).default_backoff();
        let mut stream = pin!(stream);
        let mut relist: Option<HashSet<String>> = None;
        let mut retry = tokio::time::interval(RETRY);
        loop {
            tokio::select! {
                _ = retry.tick() => self.retry_failed().await,
                event = stream.next() => match event {
                    Some(Ok(e)) => self.on_event(e, &mut relist).await,
                    Some(Err(e)) => debug!(error = %e, "SchedulerPlugin watch failed; retrying"),
                    None => return,
                },
                Some((name, health)) = self.health_rx.recv() => self.on_health(&name, health).await,
            }
        }
    }

    async fn on_event(
        &mut self,
        event: WatchEvent<DynamicObject>,
        relist: &mut Option<HashSet<String>>,
    ) {
        match event {
            WatchEvent::Init => *relist = Some(HashSet::new()),
            WatchEvent::InitApply(obj) => {
                if let (Some(seen), Some(name)) = (relist.as_mut(), obj.metadata.name.clone()) {
                    seen.insert(name);
                }
                self.reconcile(&obj).await;
            }
            WatchEvent::InitDone => {
                let seen = relist.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .loaded
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                gone.iter().for_each(|name| self.forget(name));
            }
            WatchEvent::Apply(obj) => self.reconcile(&obj).await,
            WatchEvent::Delete(obj) => {
                if let Some(name) = obj.metadata.name.as_deref() {
                    self.forget(name);
                }
            }
        }
    }

    async fn retry_failed(&mut self) {
        let names: Vec<String> = self.failed.keys().cloned().collect();
        for name in names {
            let Some((obj, _)) = self.failed.get(&name).cloned() else {
                continue;
            };
            self.loaded.remove(&name);
            self.reconcile(&obj).await;
        }
    }

    fn forget(&mut self, name: &str) {
        self.failed.remove(name);
        self.loaded.remove(name);
        if self.set.remove(name) {
            info!(plugin = %name, "scheduler plugin removed");
        }
    }

    async fn reconcile(&mut self, obj: &DynamicObject) {
        let Some(name) = obj.metadata.name.clone() else {
            return;
        };
        let generation = obj.metadata.generation.unwrap_or(0);
        let uid = obj.metadata.uid.clone().unwrap_or_default();
        let current = self
            .loaded
            .get(&name)
            .is_some_and(|l| l.generation == generation && l.uid == uid);
        if current {
            // Our own status write, or nothing the plugin depends on.
            return;
        }
        self.loaded.insert(name.clone(), Loaded { generation, uid });
        let span = info_span!("load_scheduler_plugin", plugin = %name, generation);
        let outcome = self.load(&name, obj).instrument(span.clone()).await;
        let status = match outcome {
            Ok(plugin) => {
                self.failed.remove(&name);
                let digest = plugin.digest().to_string();
                span.in_scope(|| info!(digest = %digest, "scheduler plugin active"));
                let profiles = plugin_profiles(obj);
                self.set.insert(&name, plugin, profiles);
                json!({ "phase": "Active", "message": "", "moduleDigest": digest,
                    "observedGeneration": generation })
            }
            Err(message) => {
                self.set.remove(&name);
                let repeated = self
                    .failed
                    .insert(name.clone(), (obj.clone(), message.clone()))
                    .is_some_and(|(before, text)| {
                        text == message && before.metadata.generation == obj.metadata.generation
                    });
                if repeated {
                    // Still failing the same way: the status says so already.
                    return;
                }
                span.in_scope(|| warn!(error = %message, "scheduler plugin not loaded"));
                json!({ "phase": "Error", "message": message, "observedGeneration": generation })
            }
        };
        self.write_status(&name, status).await;
    }

    async fn load(&self, name: &str, obj: &DynamicObject) -> Result<Arc<WasmPlugin>, String> {
        let spec: SchedulerPluginSpec = obj
            .data
            .get("spec")
            .cloned()
            .map(serde_json::from_value)
            .ok_or("no spec")?
            .map_err(|e| format!("spec: {e}"))?;
        let bytes = self.module_bytes(&spec).await?;
        let host = self.host.clone();
        let factory = tokio::task::spawn_blocking(move || host.load(&bytes))
            .await
            .map_err(|e| format!("the compile task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let plugin = WasmPlugin::start(plugin_spec(name, &spec), factory, self.reporter())
            .map_err(|e| e.to_string())?;
        let probe = plugin.clone();
        tokio::task::spawn_blocking(move || probe.probe())
            .await
            .map_err(|e| format!("the probe task failed: {e}"))?
            .map_err(|e| e.to_string())?;
        Ok(plugin)
    }

    fn reporter(&self) -> Reporter {
        let tx = self.health_tx.clone();
        Arc::new(move |name: &str, health: Health| {
            let _ = tx.send((name.to_string(), health));
        })
    }

    async fn module_bytes(&self, spec: &SchedulerPluginSpec) -> Result<Vec<u8>, String> {
        let source = &spec.module;
        if let Some(text) = &source.inline {
            return decode_base64(text)
                .map_err(|e| format!("spec.module.inline is not base64: {e}"));
        }
        if let Some(r) = &source.config_map_key_ref {
            let ns = r.namespace.as_deref().unwrap_or("default");
            let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
            let cm = cms
                .get_opt(&r.name)
                .await
                .map_err(|e| format!("reading configmap {ns}/{}: {e}", r.name))?
                .ok_or_else(|| format!("configmap {ns}/{} not found", r.name))?;
            let data = cm
                .binary_data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .ok_or_else(|| {
                    format!(
                        "configmap {ns}/{} has no binaryData key {:?}",
                        r.name, r.key
                    )
                })?;
            return Ok(data.0.clone());
        }
        if let Some(reference) = &source.image {
            return self.image_bytes(reference).await;
        }
        Err("spec.module names no source".into())
    }

    async fn image_bytes(&self, reference: &str) -> Result<Vec<u8>, String> {
        let images = self.images.as_ref().ok_or(
            "this scheduler has no image store: give the module inline or by configMapKeyRef",
        )?;
        let policy = PullPolicy::for_container(None, reference);
        let image = images
            .ensure(reference, policy, &RegistryAuth::Anonymous, &|_| {})
            .await
            .map_err(|e| format!("pulling {reference}: {e}"))?;
        tokio::fs::read(&image.wasm_path)
            .await
            .map_err(|e| format!("reading the module of {reference}: {e}"))
    }

    async fn on_health(&mut self, name: &str, health: Health) {
        if !self.loaded.contains_key(name) {
            return;
        }
        let (status, type_, reason, message) = match health {
            Health::Failed(m) => (
                json!({ "phase": "Error", "message": format!("call failed: {m}") }),
                "Warning",
                "PluginFailed",
                m,
            ),
            Health::Recovered => (
                json!({ "phase": "Active", "message": "" }),
                "Normal",
                "PluginRecovered",
                "calls succeed again".to_string(),
            ),
        };
        self.write_status(name, status).await;
        self.record_event(name, type_, reason, &message).await;
    }

    async fn write_status(&self, name: &str, status: Value) {
        let patch = Patch::Merge(json!({ "status": status }));
        if let Err(e) = self
            .api()
            .patch_status(name, &PatchParams::default(), &patch)
            .await
        {
            debug!(plugin = %name, error = %e, "could not write the SchedulerPlugin status");
        }
    }

    /// A cluster-scoped object's events live in `default`, as upstream's for nodes.
    async fn record_event(&self, name: &str, type_: &str, reason: &str, message: &str) {
        let uid = self.loaded.get(name).map(|l| l.uid.clone());
        let now = Time(Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}.")),
                namespace: Some("default".into()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("wkube.dev/v1alpha1".into()),
                kind: Some("SchedulerPlugin".into()),
                name: Some(name.to_string()),
                uid,
                ..Default::default()
            },
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            message: Some(message.chars().take(1000).collect()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), "default");
        if let Err(e) = events.create(&PostParams::default(), &event).await {
            debug!(plugin = %name, error = %e, "could not record the plugin event");
        }
    }
}

fn plugin_profiles(obj: &DynamicObject) -> Vec<String> {
    obj.data
        .get("spec")
        .cloned()
        .and_then(|s| serde_json::from_value::<SchedulerPluginSpec>(s).ok())
        .map(|s| s.profiles())
        .unwrap_or_default()
}

fn plugin_spec(name: &str, spec: &SchedulerPluginSpec) -> PluginSpec {
    let timeout = spec
        .timeout_seconds
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
        .max(1);
    PluginSpec {
        name: name.to_string(),
        pre_filter: spec.has("PreFilter"),
        filter: spec.has("Filter"),
        score: spec.has("Score"),
        weight: spec.weight.unwrap_or(1),
        fail: spec.failure_policy.as_deref() != Some("Ignore"),
        settings: spec
            .settings
            .clone()
            .unwrap_or_else(|| json!({}))
            .to_string(),
        limits: CallLimits {
            timeout: Duration::from_secs(u64::try_from(timeout).unwrap_or(1)),
            memory_bytes: spec
                .memory_limit
                .as_deref()
                .and_then(parse_bytes)
                .unwrap_or(DEFAULT_MEMORY_BYTES),
        },
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine as _;
    let compact: String = text.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(compact)
}
