//! Recording core/v1 Events, as the kubelet and kube-controller-manager do.
//!
//! Shared by the node agent, the controllers (and anything else that reports through the API).
//! Repeats of the same (object, reason, message) bump the count of one Event instead of
//! creating new ones, so a crash-looping pod does not flood the store. Writing an event is best
//! effort: a failure is logged and never fails the caller.

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
    /// The part of the object, e.g. `spec.containers{web}`.
    pub field_path: Option<String>,
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
            field_path: None,
        }
    }
}

/// (object uid, reason, message): what makes two events "the same".
type EventKey = (String, String, String);

/// Remembered events are forgotten past this many, so the map stays small.
const MAX_REMEMBERED: usize = 10_000;

pub struct Recorder {
    client: kube::Client,
    component: String,
    /// The node, for events a node agent reports (`source.host`).
    host: Option<String>,
    seen: Mutex<HashMap<EventKey, (String, i32)>>,
}

impl Recorder {
    /// `component` is the reporter, e.g. `replicaset-controller`.
    pub fn new(client: kube::Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.to_string(),
            host: None,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// A recorder for a node's agent (`kubelet` on `host`).
    pub fn for_node(client: kube::Client, component: &str, host: &str) -> Self {
        Recorder {
            host: Some(host.to_string()),
            ..Recorder::new(client, component)
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
        if let Some((name, count)) = self.repeat_of(&key) {
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
        let Ok(event) = serde_json::from_value::<Event>(
            self.event(obj, &name, &ns, type_, reason, message, &now),
        ) else {
            return;
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => self.remember(key, name),
            Err(e) => tracing::debug!(error = %e, reason, "recording event failed"),
        }
    }

    /// The name and next count of an event already recorded for this key.
    fn repeat_of(&self, key: &EventKey) -> Option<(String, i32)> {
        let mut seen = self.seen.lock().ok()?;
        let (name, count) = seen.get_mut(key)?;
        *count += 1;
        Some((name.clone(), *count))
    }

    fn remember(&self, key: EventKey, name: String) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() > MAX_REMEMBERED {
                seen.clear();
            }
            seen.insert(key, (name, 1));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        obj: &Involved,
        name: &str,
        ns: &str,
        type_: &str,
        reason: &str,
        message: &str,
        now: &str,
    ) -> Value {
        let mut involved = json!({
            "kind": obj.kind,
            "apiVersion": obj.api_version,
            "name": obj.name,
            "uid": obj.uid,
        });
        if !obj.namespace.is_empty() {
            involved["namespace"] = json!(obj.namespace);
        }
        if let Some(fp) = &obj.field_path {
            involved["fieldPath"] = json!(fp);
        }
        let mut source = json!({ "component": self.component });
        if let Some(host) = &self.host {
            source["host"] = json!(host);
        }
        json!({
            "metadata": { "name": name, "namespace": ns },
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": source,
            "reportingComponent": self.component,
            "reportingInstance": self.host.as_deref().unwrap_or(&self.component),
        })
    }
}
