//! Node lifecycle: a node whose agent stops renewing its Lease is marked unreachable, and its
//! pods are evicted once their tolerations run out, so their controllers replace them elsewhere.
//!
//! As upstream's node lifecycle controller: after the grace period the node's Ready condition
//! becomes Unknown and it gets the `node.kubernetes.io/unreachable` NoSchedule and NoExecute
//! taints; pods that do not tolerate NoExecute (or whose `tolerationSeconds` have passed since
//! the taint was added) are deleted. When the Lease is renewed again the taints go.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt as _;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Timing of the controller (flags of `wkube up`, shortened by tests).
#[derive(Debug, Clone)]
pub struct NodeLifecycleConfig {
    /// How long a Lease may go unrenewed before the node is unreachable (upstream: 40 s).
    pub grace_period: Duration,
    /// How often nodes are examined.
    pub period: Duration,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            grace_period: Duration::from_secs(40),
            period: Duration::from_secs(5),
        }
    }
}

pub async fn run(
    client: kube::Client,
    config: NodeLifecycleConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(config.period);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {
                if let Err(e) = pass(&client, &config).await {
                    debug!(error = %e, "node lifecycle pass failed");
                }
            }
        }
    }
}

fn parse_time(v: Option<&str>) -> Option<DateTime<Utc>> {
    v.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// When the node's agent last renewed its Lease.
fn last_renewal(lease: &Lease) -> Option<DateTime<Utc>> {
    let v = serde_json::to_value(lease).ok()?;
    parse_time(v.pointer("/spec/renewTime").and_then(Value::as_str))
}

/// The time the unreachable NoExecute taint was added, if the node has it.
fn unreachable_since(node: &Value) -> Option<DateTime<Utc>> {
    node.pointer("/spec/taints")?
        .as_array()?
        .iter()
        .find(|t| t["key"] == UNREACHABLE_TAINT && t["effect"] == "NoExecute")
        .map(|t| parse_time(t["timeAdded"].as_str()).unwrap_or_else(Utc::now))
}

async fn pass(client: &kube::Client, config: &NodeLifecycleConfig) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = Utc::now();
    let grace = chrono::Duration::from_std(config.grace_period).unwrap_or_default();
    for node in nodes.list(&ListParams::default()).await? {
        let name = node.name_any();
        let renewed = leases.get_opt(&name).await?.as_ref().and_then(last_renewal);
        let created = node
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| parse_time(Some(&t.0.to_string())));
        let Some(seen) = renewed.or(created) else {
            continue;
        };
        let v = serde_json::to_value(&node).unwrap_or(Value::Null);
        let stale = now - seen > grace;
        match (stale, unreachable_since(&v)) {
            (true, None) => mark_unreachable(&nodes, &name, &v).await?,
            (true, Some(since)) => evict_pods(client, &name, now - since).await?,
            (false, Some(_)) => clear_unreachable(&nodes, &name, &v).await?,
            (false, None) => {}
        }
    }
    Ok(())
}

fn taints_without_unreachable(node: &Value) -> Vec<Value> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|t| t["key"] != UNREACHABLE_TAINT)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

async fn mark_unreachable(nodes: &Api<Node>, name: &str, node: &Value) -> kube::Result<()> {
    warn!(
        node = name,
        "node stopped renewing its lease: marking it unreachable"
    );
    let now = crate::api::object::now_rfc3339();
    let mut taints = taints_without_unreachable(node);
    taints.push(json!({ "key": UNREACHABLE_TAINT, "effect": "NoSchedule", "timeAdded": now }));
    taints.push(json!({ "key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": now }));
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "taints": taints } })),
        )
        .await?;
    let conditions: Vec<Value> = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            if c["status"] != "Unknown" {
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
                c["lastTransitionTime"] = json!(now);
            }
            c
        })
        .collect();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "conditions": conditions } })),
        )
        .await?;
    Ok(())
}

async fn clear_unreachable(nodes: &Api<Node>, name: &str, node: &Value) -> kube::Result<()> {
    info!(
        node = name,
        "node is renewing its lease again: removing the unreachable taints"
    );
    let taints = taints_without_unreachable(node);
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "taints": taints } })),
        )
        .await?;
    Ok(())
}

/// How long a pod tolerates the unreachable NoExecute taint: None = forever, Some(0) = not at all.
pub fn tolerated_for(pod: &Value) -> Option<Duration> {
    let tolerations = pod.pointer("/spec/tolerations").and_then(Value::as_array);
    let matching = tolerations.into_iter().flatten().find(|t| {
        let key_ok = match t.get("key").and_then(Value::as_str) {
            None | Some("") => t["operator"] == "Exists",
            Some(k) => k == UNREACHABLE_TAINT,
        };
        let effect_ok = matches!(
            t.get("effect").and_then(Value::as_str),
            None | Some("") | Some("NoExecute")
        );
        key_ok && effect_ok
    });
    match matching {
        None => Some(Duration::ZERO),
        Some(t) => t
            .get("tolerationSeconds")
            .and_then(Value::as_i64)
            .map(|s| Duration::from_secs(s.max(0) as u64)),
    }
}

async fn evict_pods(
    client: &kube::Client,
    node: &str,
    tainted_for: chrono::Duration,
) -> kube::Result<()> {
    let pods: Api<Pod> = Api::all(client.clone());
    let on_node = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await?;
    let elapsed = tainted_for.to_std().unwrap_or_default();
    for pod in on_node {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let v = serde_json::to_value(&pod).unwrap_or(Value::Null);
        let due = tolerated_for(&v).is_some_and(|limit| elapsed >= limit);
        if due {
            let ns = pod.namespace().unwrap_or_default();
            info!(pod = %format!("{ns}/{}", pod.name_any()), node, "evicting pod from an unreachable node");
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            super::delete_background(&api, &pod.name_any()).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toleration_of_unreachable_nodes() {
        let none = json!({"spec": {}});
        assert_eq!(tolerated_for(&none), Some(Duration::ZERO));
        let default = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]}});
        assert_eq!(tolerated_for(&default), Some(Duration::from_secs(300)));
        let forever = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(tolerated_for(&forever), None);
        let other = json!({"spec": {"tolerations": [{"key": "x", "operator": "Exists"}]}});
        assert_eq!(tolerated_for(&other), Some(Duration::ZERO));
    }

    #[test]
    fn unreachable_taints_are_found_and_removed() {
        let node = json!({"spec": {"taints": [
            {"key": "a", "effect": "NoSchedule"},
            {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}
        ]}});
        assert_eq!(
            unreachable_since(&node),
            parse_time(Some("2026-01-01T00:00:00Z"))
        );
        assert_eq!(taints_without_unreachable(&node).len(), 1);
    }
}
