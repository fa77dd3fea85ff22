//! RuntimeClasses (`node.k8s.io/v1`): the classes every cluster starts with, and the pod
//! admission upstream's `RuntimeClass` admission plugin performs on create.
//!
//! A pod naming a class gets the class's `overhead.podFixed` as `spec.overhead` and the class's
//! `scheduling` (node selector, tolerations) merged into its own, so the scheduler needs no
//! knowledge of classes; a class that does not exist refuses the pod. The node agent reads the
//! class's `handler` to pick the runtime, as the kubelet does.

use serde_json::{json, Map, Value};

use super::object;
use super::rest::{Rest, WriteOptions};
use super::status::{ApiError, ApiResult};
use super::validation::quantity_value;
use crate::store::Read;

/// The classes `wkube up` creates at start: (name, handler). The handlers are the names the
/// node agent's runtimes go by.
pub const DEFAULT_CLASSES: &[(&str, &str)] = &[("wasmtime", "wasmtime"), ("linux", "linux")];

/// Creates the default classes that do not exist yet; an existing class (perhaps edited by a
/// user) is left as it is.
pub async fn ensure_defaults(rest: &Rest) -> ApiResult<()> {
    let Some(r) = rest
        .registry()
        .find("node.k8s.io", "v1", "runtimeclasses")
        .cloned()
    else {
        return Err(ApiError::internal("runtimeclasses are not registered"));
    };
    for (name, handler) in DEFAULT_CLASSES {
        let obj = json!({
            "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
            "metadata": { "name": name }, "handler": handler,
        });
        match rest.create(&r, None, obj, &WriteOptions::default()).await {
            Ok(_) => tracing::info!(class = name, handler, "created RuntimeClass"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Upstream's RuntimeClass admission for a pod being created: resolves `runtimeClassName` and
/// applies the class's overhead and scheduling constraints. Refusals are 403 Forbidden with
/// upstream's messages.
pub async fn admit_pod(rest: &Rest, pod: &mut Value) -> ApiResult<()> {
    let name = object::name(pod).unwrap_or_default().to_string();
    let forbidden =
        |why: String| ApiError::forbidden(format!("pods \"{name}\" is forbidden: {why}"));
    let class_name = pod
        .pointer("/spec/runtimeClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let class = match &class_name {
        Some(class_name) => Some(lookup(rest, class_name).await?.ok_or_else(|| {
            forbidden(format!(
                "pod rejected: RuntimeClass {class_name:?} not found"
            ))
        })?),
        None => None,
    };
    apply_class(pod, class.as_ref()).map_err(forbidden)
}

async fn lookup(rest: &Rest, class: &str) -> ApiResult<Option<Value>> {
    let Some(r) = rest.registry().find("node.k8s.io", "v1", "runtimeclasses") else {
        return Ok(None);
    };
    rest.objects().get(r, None, class, Read::Local).await
}

/// The pure part of the admission: overhead, then scheduling. `Err` is the refusal's reason.
fn apply_class(pod: &mut Value, class: Option<&Value>) -> Result<(), String> {
    if let Some(handler) = class.and_then(|c| c.get("handler")).and_then(Value::as_str) {
        record_handler(pod, handler);
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    set_overhead(spec, class)?;
    if let Some(scheduling) = class.and_then(|c| c.get("scheduling")) {
        merge_node_selector(spec, scheduling.get("nodeSelector"))?;
        merge_tolerations(spec, scheduling.get("tolerations"));
    }
    Ok(())
}

/// Writes the class's handler where the scheduler reads the runtime a pod needs (nodes
/// advertise handlers, and a class may be named anything).
fn record_handler(pod: &mut Value, handler: &str) {
    let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    if let Some(a) = annotations.as_object_mut() {
        a.insert(
            crate::scheduler::RUNTIME_ANNOTATION.to_string(),
            Value::String(handler.to_string()),
        );
    }
}

/// A pod may state its overhead only if it equals its class's (clients that copy a pod keep
/// it); otherwise the class's overhead is set.
fn set_overhead(spec: &mut Map<String, Value>, class: Option<&Value>) -> Result<(), String> {
    let fixed = class.and_then(|c| c.pointer("/overhead/podFixed"));
    match (spec.get("overhead"), fixed) {
        (Some(_), None) => Err(
            "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
                .to_string(),
        ),
        (Some(given), Some(fixed)) if !same_quantities(given, fixed) => {
            Err("pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead".into())
        }
        (_, Some(fixed)) => {
            spec.insert("overhead".into(), fixed.clone());
            Ok(())
        }
        (None, None) => Ok(()),
    }
}

/// Resource lists compared by value (`1000m` equals `1`), as upstream's semantic equality.
fn same_quantities(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let value = |v: &Value| v.as_str().and_then(quantity_value);
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k)
                .is_some_and(|w| value(v).is_some() && value(v) == value(w))
        })
}

/// The class's selector is added to the pod's; a key both set to different values refuses it.
fn merge_node_selector(
    spec: &mut Map<String, Value>,
    selector: Option<&Value>,
) -> Result<(), String> {
    let Some(selector) = selector
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty())
    else {
        return Ok(());
    };
    let pod_selector = spec
        .entry("nodeSelector")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("pod rejected: spec.nodeSelector is not a map")?;
    for (key, value) in selector {
        match pod_selector.get(key) {
            Some(existing) if existing != value => {
                return Err(format!(
                    "conflict: runtimeClass.scheduling.nodeSelector[{key}] = {}; pod.spec.nodeSelector[{key}] = {}",
                    value.as_str().unwrap_or_default(),
                    existing.as_str().unwrap_or_default()
                ))
            }
            _ => {
                pod_selector.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(())
}

/// Upstream's `MergeTolerations`: the union, keeping only the broadest of tolerations that
/// cover one another.
fn merge_tolerations(spec: &mut Map<String, Value>, tolerations: Option<&Value>) {
    let Some(extra) = tolerations
        .and_then(Value::as_array)
        .filter(|t| !t.is_empty())
    else {
        return;
    };
    let mut merged: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for t in extra {
        if merged.iter().any(|m| covers(m, t)) {
            continue;
        }
        merged.retain(|m| !covers(t, m));
        merged.push(t.clone());
    }
    spec.insert("tolerations".into(), Value::Array(merged));
}

/// Whether toleration `a` tolerates everything `b` does (upstream's `isSuperset`).
fn covers(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    let field = |t: &Value, k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let exists = |t: &Value| field(t, "operator") == "Exists";
    // An empty key with Exists tolerates every key.
    let any_key = field(a, "key").is_empty() && exists(a);
    if field(a, "key") != field(b, "key") && !any_key {
        return false;
    }
    let effect = field(a, "effect");
    if !effect.is_empty() && effect != field(b, "effect") {
        return false;
    }
    if effect == "NoExecute" {
        let seconds = |t: &Value| t.get("tolerationSeconds").and_then(Value::as_i64);
        if let Some(limit) = seconds(a) {
            if seconds(b).is_none_or(|s| s > limit) {
                return false;
            }
        }
    }
    exists(a) || (!exists(b) && field(a, "value") == field(b, "value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn overhead_is_set_from_the_class_and_must_match_if_given() {
        let class = json!({"handler": "linux", "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}}});
        let mut p = pod(json!({"containers": []}));
        apply_class(&mut p, Some(&class)).expect("admitted");
        assert_eq!(
            p["spec"]["overhead"],
            json!({"cpu": "250m", "memory": "64Mi"})
        );

        let mut same = pod(json!({"overhead": {"cpu": "0.25", "memory": "64Mi"}}));
        apply_class(&mut same, Some(&class)).expect("equal by value");
        let mut other = pod(json!({"overhead": {"cpu": "1"}}));
        let err = apply_class(&mut other, Some(&class)).expect_err("differs");
        assert!(err.contains("doesn't match"), "{err}");

        let mut unclassed = pod(json!({"overhead": {"cpu": "1"}}));
        let err = apply_class(&mut unclassed, None).expect_err("no class");
        assert!(err.contains("without corresponding RuntimeClass"), "{err}");
        let mut plain = pod(json!({"containers": []}));
        apply_class(&mut plain, Some(&json!({"handler": "linux"}))).expect("no overhead");
        assert!(plain["spec"].get("overhead").is_none());
    }

    #[test]
    fn the_handler_is_recorded_for_the_scheduler() {
        let mut p = json!({"metadata": {"name": "p", "annotations": {"wkube.dev/runtime": "wasm"}},
            "spec": {"runtimeClassName": "fast", "containers": []}});
        apply_class(&mut p, Some(&json!({"handler": "linux"}))).expect("admitted");
        assert_eq!(p["metadata"]["annotations"]["wkube.dev/runtime"], "linux");
        let mut bare = json!({"metadata": {"name": "q"}, "spec": {"containers": []}});
        apply_class(&mut bare, Some(&json!({"handler": "wasmtime"}))).expect("admitted");
        assert_eq!(
            bare["metadata"]["annotations"]["wkube.dev/runtime"],
            "wasmtime"
        );
    }

    #[test]
    fn node_selector_is_merged_and_conflicts_refuse() {
        let class = json!({"handler": "linux", "scheduling": {"nodeSelector": {"os": "linux", "pool": "a"}}});
        let mut p = pod(json!({"nodeSelector": {"pool": "a", "zone": "z1"}}));
        apply_class(&mut p, Some(&class)).expect("admitted");
        assert_eq!(
            p["spec"]["nodeSelector"],
            json!({"os": "linux", "pool": "a", "zone": "z1"})
        );
        let mut clash = pod(json!({"nodeSelector": {"pool": "b"}}));
        let err = apply_class(&mut clash, Some(&class)).expect_err("conflict");
        assert_eq!(
            err,
            "conflict: runtimeClass.scheduling.nodeSelector[pool] = a; pod.spec.nodeSelector[pool] = b"
        );
    }

    #[test]
    fn tolerations_keep_the_broadest() {
        let class = json!({"handler": "linux", "scheduling": {"tolerations": [
            {"key": "gpu", "operator": "Exists"},
            {"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"},
        ]}});
        let mut p = pod(json!({"tolerations": [
            {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Exists"},
        ]}));
        apply_class(&mut p, Some(&class)).expect("admitted");
        assert_eq!(
            p["spec"]["tolerations"],
            json!([
                {"key": "dedicated", "operator": "Exists"},
                {"key": "gpu", "operator": "Exists"},
            ])
        );
    }

    #[test]
    fn no_execute_seconds_bound_coverage() {
        let short = json!({"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10});
        let long = json!({"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60});
        let forever = json!({"key": "k", "operator": "Exists", "effect": "NoExecute"});
        assert!(covers(&long, &short));
        assert!(!covers(&short, &long));
        assert!(covers(&forever, &long));
        assert!(!covers(&long, &forever));
    }
}
