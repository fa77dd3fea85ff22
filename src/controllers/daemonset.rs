//! DaemonSet: one pod per eligible node, kept up to date with the template.
//!
//! Pods are pinned to their node with a required node affinity on `metadata.name` (as upstream
//! does since 1.12), so the scheduler binds them; they tolerate the node-condition taints a
//! daemon must survive. A template change rolls out node by node within `maxUnavailable`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt as _;
use serde_json::{json, Value};
use tracing::{debug, info};

use super::deployment::plan::template_hash;
use super::replicaset::{controller_ref, is_active, is_ready};
use crate::events::{Involved, Recorder};
use crate::label_selector;

const HASH_LABEL: &str = "controller-revision-hash";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("daemonset {0}: {1}")]
    Invalid(String, String),
}

struct Ctx {
    client: kube::Client,
    events: Recorder,
}

pub async fn run(
    client: kube::Client,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = super::sync_shutdown(shutdown);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        events: Recorder::new(client.clone(), "daemonset-controller"),
    });
    Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client), watcher::Config::default())
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        if let Err(e) = res {
            debug!(error = %e, "daemonset reconcile failed");
        }
    })
    .await;
}

fn error_policy(_ds: Arc<DaemonSet>, _err: &Error, _ctx: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_secs(2))
}

/// Whether a daemon pod may run on the node: its nodeSelector matches and it tolerates the
/// node's NoSchedule/NoExecute taints.
pub fn should_run(template_spec: &Value, node: &Value) -> bool {
    let labels = node.pointer("/metadata/labels").and_then(Value::as_object);
    let selector_ok = template_spec
        .get("nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| {
            sel.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        });
    let tolerations = template_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let taints_ok = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| matches!(t["effect"].as_str(), Some("NoSchedule" | "NoExecute")))
        // Daemons tolerate the node-condition taints (added to their pods below).
        .filter(|t| !t["key"].as_str().is_some_and(daemon_tolerated))
        .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)));
    selector_ok && taints_ok
}

fn daemon_tolerated(key: &str) -> bool {
    matches!(
        key,
        "node.kubernetes.io/not-ready"
            | "node.kubernetes.io/unreachable"
            | "node.kubernetes.io/disk-pressure"
            | "node.kubernetes.io/memory-pressure"
            | "node.kubernetes.io/pid-pressure"
            | "node.kubernetes.io/unschedulable"
    )
}

fn tolerates(tol: &Value, taint: &Value) -> bool {
    let effect_ok = tol["effect"]
        .as_str()
        .is_none_or(|e| e.is_empty() || Some(e) == taint["effect"].as_str());
    let key_ok = match tol["key"].as_str() {
        None | Some("") => tol["operator"] == "Exists",
        Some(k) => Some(k) == taint["key"].as_str(),
    };
    let value_ok = tol["operator"] == "Exists"
        || tol["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("");
    effect_ok && key_ok && value_ok
}

/// The node a daemon pod is for: its nodeName, or the node its required affinity pins.
fn pod_node(pod: &Value) -> Option<String> {
    if let Some(n) = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        return Some(n.to_string());
    }
    pod.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The pod for one node: the template, pinned to the node, with the daemon tolerations.
fn pod_for(ds: &DaemonSet, template: &Value, hash: &str, node: &str) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or(json!({})),
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    });
    pod["metadata"]["generateName"] = json!(format!("{}-", ds.name_any()));
    pod["metadata"]["labels"][HASH_LABEL] = json!(hash);
    pod["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds.name_any(),
        "uid": ds.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true,
    }]);
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
        "nodeSelectorTerms": [{ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": [node] }] }]
    });
    let mut tolerations = pod["spec"]["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (key, effect) in [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ] {
        tolerations.push(json!({ "key": key, "operator": "Exists", "effect": effect }));
    }
    pod["spec"]["tolerations"] = Value::Array(tolerations);
    pod
}

async fn reconcile(cached: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let dss: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(ds) = dss.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = ds
        .spec
        .clone()
        .ok_or_else(|| Error::Invalid(name.clone(), "no spec".into()))?;
    let template = serde_json::to_value(&spec.template).unwrap_or(Value::Null);
    let hash = template_hash(&spec.template, None);
    let uid = ds.uid().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owned: Vec<Pod> = pods_api
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|p| controller_ref(p).is_some_and(|r| r.uid == uid))
        .filter(|p| {
            label_selector::selects(
                &spec.selector,
                p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
            )
        })
        .filter(is_active)
        .collect();
    let nodes: Vec<Value> = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter_map(|n| serde_json::to_value(n).ok())
        .collect();
    let template_spec = template.get("spec").cloned().unwrap_or(Value::Null);
    let max_unavailable = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref())
        .map(|v| match v {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => {
                (*i).max(1) as usize
            }
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => {
                let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(0.0);
                ((pct / 100.0 * nodes.len() as f64).floor() as usize).max(1)
            }
        })
        .unwrap_or(1);
    let on_delete = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete");

    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in &owned {
        let v = serde_json::to_value(p).unwrap_or(Value::Null);
        if let Some(n) = pod_node(&v) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let mut desired = 0i32;
    let mut to_delete: Vec<String> = Vec::new();
    let mut to_create: Vec<String> = Vec::new();
    let mut outdated_ready: Vec<String> = Vec::new();
    let mut unavailable = 0usize;
    for node in &nodes {
        let node_name = node
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let pods = by_node.remove(&node_name).unwrap_or_default();
        if should_run(&template_spec, node) {
            desired += 1;
            match pods.split_first() {
                None => {
                    to_create.push(node_name);
                    unavailable += 1;
                }
                Some((keep, extra)) => {
                    to_delete.extend(extra.iter().map(|p| p.name_any()));
                    let current = keep.labels().get(HASH_LABEL) == Some(&hash);
                    if !is_ready(keep) {
                        unavailable += 1;
                        if !current && !on_delete {
                            to_delete.push(keep.name_any());
                        }
                    } else if !current && !on_delete {
                        outdated_ready.push(keep.name_any());
                    }
                }
            }
        } else {
            to_delete.extend(pods.iter().map(|p| p.name_any()));
        }
    }
    // Pods for nodes that no longer exist.
    for pods in by_node.values() {
        to_delete.extend(pods.iter().map(|p| p.name_any()));
    }
    // Rolling update: replace outdated ready pods while staying within maxUnavailable.
    let budget = max_unavailable.saturating_sub(unavailable);
    to_delete.extend(outdated_ready.into_iter().take(budget));

    let involved = Involved::of(&ds);
    for node in &to_create {
        let pod: Pod = serde_json::from_value(pod_for(&ds, &template, &hash, node))
            .map_err(|e| Error::Invalid(name.clone(), e.to_string()))?;
        match pods_api.create(&PostParams::default(), &pod).await {
            Ok(created) => {
                ctx.events
                    .normal(
                        &involved,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", created.name_any()),
                    )
                    .await;
            }
            Err(e) => {
                ctx.events
                    .warning(&involved, "FailedCreate", &format!("Error creating: {e}"))
                    .await;
                return Err(e.into());
            }
        }
    }
    for pod in &to_delete {
        super::delete_background(&pods_api, pod).await?;
        ctx.events
            .normal(
                &involved,
                "SuccessfulDelete",
                &format!("Deleted pod: {pod}"),
            )
            .await;
    }
    if !to_create.is_empty() || !to_delete.is_empty() {
        info!(daemonset = %name, created = to_create.len(), deleted = to_delete.len(), "synced");
    }
    let ready = owned.iter().filter(|p| is_ready(p)).count() as i32;
    let updated = owned
        .iter()
        .filter(|p| p.labels().get(HASH_LABEL) == Some(&hash))
        .count() as i32;
    let status = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": owned.len() as i32,
        "numberMisscheduled": 0,
        "numberReady": ready,
        "numberAvailable": ready,
        "numberUnavailable": (desired - ready).max(0),
        "updatedNumberScheduled": updated,
        "observedGeneration": ds.metadata.generation,
    });
    if serde_json::to_value(&ds.status).ok().as_ref() != Some(&status) {
        dss.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    }
    // Nodes come and go without touching the DaemonSet: look again regularly.
    Ok(Action::requeue(Duration::from_secs(5)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemons_go_where_selectors_and_taints_allow() {
        let node = json!({"metadata": {"name": "n", "labels": {"disk": "ssd"}}, "spec": {"taints": [
            {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}
        ]}});
        assert!(
            should_run(&json!({}), &node),
            "node-condition taints are tolerated"
        );
        assert!(should_run(&json!({"nodeSelector": {"disk": "ssd"}}), &node));
        assert!(!should_run(
            &json!({"nodeSelector": {"disk": "hdd"}}),
            &node
        ));
        let tainted = json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}});
        assert!(!should_run(&json!({}), &tainted));
        assert!(should_run(
            &json!({"tolerations": [{"key": "gpu", "operator": "Equal", "value": "yes"}]}),
            &tainted
        ));
    }

    #[test]
    fn daemon_pods_are_pinned_to_their_node() {
        let pod = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}});
        assert_eq!(pod_node(&pod).as_deref(), Some("n1"));
        assert_eq!(
            pod_node(&json!({"spec": {"nodeName": "n2"}})).as_deref(),
            Some("n2")
        );
    }
}
