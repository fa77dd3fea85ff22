//! Events written by controllers, as kube-controller-manager records them.
//!
//! Same pattern as the node agent's recorder (`src/agent/events.rs`): repeats of the same
//! (object, reason, message) bump the count of one Event instead of creating new ones. Writing
//! an event is best effort: a failure is logged and never fails the caller.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt as _};
use serde_json::{json, Value};

/// The object an event is about.
#[derive(Debug, Clone)]
pub struct Involved {
    pub kind: String,
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Involved {
    /// The reference to a typed object (kind and apiVersion from its type).
    pub fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Self {
        Involved {
            kind: K::kind(&()).into_owned(),
            api_version: K::api_version(&()).into_owned(),
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            uid: obj.uid().unwrap_or_default(),
        }
    }
}

/// (object uid, reason, message): what makes two events "the same".
type EventKey = (String, String, String);

pub struct Recorder {
    client: kube::Client,
    component: String,
    seen: Mutex<HashMap<EventKey, (String, i32)>>,
}

impl Recorder {
    /// `component` is the reporting controller, e.g. `replicaset-controller`.
    pub fn new(client: kube::Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.to_string(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub async fn normal(&self, obj: &Involved, reason: &str, message: &str) {
        self.record(obj, "Normal", reason, message).await;
    }

    pub async fn warning(&self, obj: &Involved, reason: &str, message: &str) {
        self.record(obj, "Warning", reason, message).await;
    }

    async fn record(&self, obj: &Involved, type_: &str, reason: &str, message: &str) {
        let ns = if obj.namespace.is_empty() {
            "default".to_string()
        } else {
            obj.namespace.clone()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let key = (obj.uid.clone(), reason.to_string(), message.to_string());
        let now = crate::api::object::now_rfc3339();
        let repeat = self.seen.lock().ok().and_then(|mut m| {
            m.get_mut(&key).map(|(name, count)| {
                *count += 1;
                (name.clone(), *count)
            })
        });
        if let Some((name, count)) = repeat {
            let patch = json!({ "count": count, "lastTimestamp": now });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => return,
                Err(e) => tracing::debug!(error = %e, "updating event failed; creating a new one"),
            }
        }
        let name = format!("{}.{:x}", obj.name, rand::random::<u64>());
        let mut involved = json!({
            "kind": obj.kind,
            "apiVersion": obj.api_version,
            "name": obj.name,
            "uid": obj.uid,
        });
        if !obj.namespace.is_empty() {
            involved["namespace"] = json!(obj.namespace);
        }
        let event: Value = json!({
            "metadata": { "name": name, "namespace": ns },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": { "component": self.component },
            "reportingComponent": self.component,
            "reportingInstance": self.component,
        });
        let Ok(event) = serde_json::from_value::<Event>(event) else {
            return;
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if let Ok(mut m) = self.seen.lock() {
                    if m.len() > 10_000 {
                        m.clear();
                    }
                    m.insert(key, (name, 1));
                }
            }
            Err(e) => tracing::debug!(error = %e, reason, "recording event failed"),
        }
    }
}
