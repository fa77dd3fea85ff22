//! Gives every container that does not say otherwise default resource requests and limits:
//!
//! ```yaml
//! mutating: true
//! settings:
//!   requests: {cpu: 100m, memory: 64Mi}
//!   limits: {memory: 128Mi}
//! ```
//!
//! Only what is missing is added (per container, per resource), as a JSON patch; pods (on
//! create: their resources are immutable) and the pod templates of workloads (Deployment,
//! ReplicaSet, StatefulSet, DaemonSet, Job, CronJob) are covered.

use serde_json::{json, Map, Value};

wit_bindgen::generate!({ path: "../../../wit/admission", world: "policy" });

use wkube::admission::types::Operation;

struct DefaultResources;

/// `requests` and `limits` from the settings: maps of resource name to quantity string.
struct Defaults {
    requests: Map<String, Value>,
    limits: Map<String, Value>,
}

fn defaults(settings: &str) -> Result<Defaults, String> {
    let settings: Value =
        serde_json::from_str(settings).map_err(|e| format!("settings are not JSON: {e}"))?;
    let section = |name: &str| -> Result<Map<String, Value>, String> {
        match settings.get(name) {
            None => Ok(Map::new()),
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    if !v.is_string() {
                        return Err(format!("settings.{name}.{k} must be a quantity string"));
                    }
                }
                Ok(m.clone())
            }
            Some(_) => Err(format!(
                "settings.{name} must be a map of resource to quantity"
            )),
        }
    };
    let d = Defaults {
        requests: section("requests")?,
        limits: section("limits")?,
    };
    if d.requests.is_empty() && d.limits.is_empty() {
        return Err("settings must give requests or limits".into());
    }
    Ok(d)
}

/// Where the pod spec sits in objects of each kind.
fn pod_spec_path(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            Some("/spec/template/spec")
        }
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// JSON pointer escaping of one path segment.
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The patch operations that fill in one container's missing defaults.
fn container_patch(path: &str, container: &Value, d: &Defaults, ops: &mut Vec<Value>) {
    let resources = container.get("resources");
    if resources.is_none() {
        ops.push(json!({"op": "add", "path": format!("{path}/resources"), "value": {}}));
    }
    for (section, wanted) in [("requests", &d.requests), ("limits", &d.limits)] {
        if wanted.is_empty() {
            continue;
        }
        let have = resources.and_then(|r| r.get(section));
        match have {
            None => {
                let mut value = wanted.clone();
                if section == "requests" {
                    // A request above the container's own limit would be invalid: keep its limit.
                    if let Some(limits) = resources
                        .and_then(|r| r.get("limits"))
                        .and_then(Value::as_object)
                    {
                        for (k, v) in limits {
                            value.insert(k.clone(), v.clone());
                        }
                    }
                }
                ops.push(json!({"op": "add", "path": format!("{path}/resources/{section}"), "value": value}));
            }
            Some(have) => {
                for (k, v) in wanted {
                    if have.get(k).is_none() {
                        ops.push(json!({"op": "add", "path": format!("{path}/resources/{section}/{}", escape(k)), "value": v}));
                    }
                }
            }
        }
    }
}

fn patch_for(object: &Value, d: &Defaults) -> Vec<Value> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let mut ops = Vec::new();
    let Some(spec_path) = pod_spec_path(kind) else {
        return ops;
    };
    for list in ["initContainers", "containers"] {
        let path = format!("{spec_path}/{list}");
        if let Some(containers) = object.pointer(&path).and_then(Value::as_array) {
            for (i, c) in containers.iter().enumerate() {
                container_patch(&format!("{path}/{i}"), c, d, &mut ops);
            }
        }
    }
    ops
}

fn answer(allowed: bool, message: Option<String>, patch: Option<String>) -> Response {
    Response {
        allowed,
        message,
        code: None,
        warnings: Vec::new(),
        patch,
    }
}

impl Guest for DefaultResources {
    fn validate(_settings: String, _request: Request) -> Response {
        answer(true, None, None)
    }

    fn mutate(settings: String, request: Request) -> Response {
        if !matches!(request.operation, Operation::Create | Operation::Update) {
            return answer(true, None, None);
        }
        let d = match defaults(&settings) {
            Ok(d) => d,
            Err(e) => return answer(false, Some(e), None),
        };
        let object: Value = match request.object.as_deref().map(serde_json::from_str) {
            Some(Ok(o)) => o,
            _ => return answer(false, Some("the request carries no object".into()), None),
        };
        // A pod's resources cannot change after creation: only a pod being created gets them
        // (pod templates of workloads are filled in on update too).
        let is_pod = object.get("kind").and_then(Value::as_str) == Some("Pod");
        if is_pod && request.operation == Operation::Update {
            return answer(true, None, None);
        }
        let ops = patch_for(&object, &d);
        let patch = (!ops.is_empty()).then(|| Value::Array(ops).to_string());
        answer(true, None, patch)
    }

    fn validate_settings(settings: String) -> Result<(), String> {
        defaults(&settings).map(|_| ())
    }
}

export!(DefaultResources);
