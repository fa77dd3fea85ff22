//! Node lifecycle: a node whose agent stops renewing its Lease is marked unreachable, one whose
//! agent reports it not ready is marked not-ready, and the pods of either are evicted once their
//! tolerations run out, so their controllers replace them elsewhere.
//!
//! As upstream's node lifecycle controller: after the grace period the node's conditions become
//! Unknown and it gets the `node.kubernetes.io/unreachable` NoSchedule and NoExecute taints; a
//! node whose Ready condition is False gets the `node.kubernetes.io/not-ready` ones. Pods that do
//! not tolerate the NoExecute taint (or whose `tolerationSeconds` have passed since it was added)
//! are deleted. When the node is healthy again the taints go.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt as _;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

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

/// What the controller makes of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Ready,
    /// The agent renews its Lease but reports the node not ready.
    NotReady,
    /// The agent stopped renewing its Lease.
    Unreachable,
}

impl Health {
    /// The condition taint of this state, if any.
    fn taint_key(self) -> Option<&'static str> {
        match self {
            Health::Ready => None,
            Health::NotReady => Some(NOT_READY_TAINT),
            Health::Unreachable => Some(UNREACHABLE_TAINT),
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

/// A renewing node is as ready as its agent says.
fn reported_health(node: &Value) -> Health {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    match ready {
        Some(c) if c["status"] == "False" => Health::NotReady,
        _ => Health::Ready,
    }
}

fn is_condition_taint(t: &Value) -> bool {
    t["key"] == UNREACHABLE_TAINT || t["key"] == NOT_READY_TAINT
}

/// The time the NoExecute taint `key` was added, if the node has it.
fn tainted_since(node: &Value, key: &str) -> Option<DateTime<Utc>> {
    node.pointer("/spec/taints")?
        .as_array()?
        .iter()
        .find(|t| t["key"] == key && t["effect"] == "NoExecute")
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
        let health = if now - seen > grace {
            Health::Unreachable
        } else {
            reported_health(&v)
        };
        let key = health.taint_key();
        match key.and_then(|k| tainted_since(&v, k)) {
            Some(since) => evict_pods(client, &name, key.unwrap_or_default(), now - since).await?,
            None => set_condition_taints(&nodes, &name, &v, health).await?,
        }
    }
    Ok(())
}

/// The node's taints with the condition taints replaced by those of `health`.
fn taints_for(node: &Value, health: Health, now: &str) -> Vec<Value> {
    let mut taints: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|t| !is_condition_taint(t))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if let Some(key) = health.taint_key() {
        taints.push(json!({ "key": key, "effect": "NoSchedule", "timeAdded": now }));
        taints.push(json!({ "key": key, "effect": "NoExecute", "timeAdded": now }));
    }
    taints
}

async fn set_condition_taints(
    nodes: &Api<Node>,
    name: &str,
    node: &Value,
    health: Health,
) -> kube::Result<()> {
    let now = crate::api::object::now_rfc3339();
    let taints = taints_for(node, health, &now);
    let current = node.pointer("/spec/taints").and_then(Value::as_array);
    if current.map_or(0, Vec::len) == taints.len()
        && current.is_none_or(|c| c.iter().all(|t| !is_condition_taint(t)))
    {
        return Ok(());
    }
    match health {
        Health::Ready => info!(
            node = name,
            "node is healthy again: removing its condition taints"
        ),
        Health::NotReady => warn!(node = name, "node reports not ready: tainting it not-ready"),
        Health::Unreachable => {
            warn!(
                node = name,
                "node stopped renewing its lease: marking it unreachable"
            )
        }
    }
    // Conditions first, then taints, as upstream (its taint pass reads the Ready condition):
    // whoever sees the unreachable taint also sees why.
    if health == Health::Unreachable {
        mark_conditions_unknown(nodes, name, node, &now).await?;
    }
    nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "taints": taints } })),
        )
        .await?;
    Ok(())
}

/// Nobody reports on an unreachable node any more: its conditions are Unknown, as upstream.
async fn mark_conditions_unknown(
    nodes: &Api<Node>,
    name: &str,
    node: &Value,
    now: &str,
) -> kube::Result<()> {
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

/// How long a pod tolerates the NoExecute taint `key`: None = forever, Some(0) = not at all.
pub fn tolerated_for(pod: &Value, key: &str) -> Option<Duration> {
    let tolerations = pod.pointer("/spec/tolerations").and_then(Value::as_array);
    let matching = tolerations.into_iter().flatten().find(|t| {
        let key_ok = match t.get("key").and_then(Value::as_str) {
            None | Some("") => t["operator"] == "Exists",
            Some(k) => k == key,
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
    taint: &str,
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
        let due = tolerated_for(&v, taint).is_some_and(|limit| elapsed >= limit);
        if due {
            let ns = pod.namespace().unwrap_or_default();
            info!(pod = %format!("{ns}/{}", pod.name_any()), node, taint, "evicting pod from a tainted node");
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
        assert_eq!(
            tolerated_for(&none, UNREACHABLE_TAINT),
            Some(Duration::ZERO)
        );
        let default = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]}});
        assert_eq!(
            tolerated_for(&default, UNREACHABLE_TAINT),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            tolerated_for(&default, NOT_READY_TAINT),
            Some(Duration::ZERO)
        );
        let forever = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(tolerated_for(&forever, NOT_READY_TAINT), None);
        let other = json!({"spec": {"tolerations": [{"key": "x", "operator": "Exists"}]}});
        assert_eq!(
            tolerated_for(&other, UNREACHABLE_TAINT),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn condition_taints_follow_health() {
        let node = json!({"spec": {"taints": [
            {"key": "a", "effect": "NoSchedule"},
            {"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}
        ]}});
        assert_eq!(
            tainted_since(&node, UNREACHABLE_TAINT),
            parse_time(Some("2026-01-01T00:00:00Z"))
        );
        assert_eq!(tainted_since(&node, NOT_READY_TAINT), None);
        let now = "2026-01-02T00:00:00Z";
        assert_eq!(taints_for(&node, Health::Ready, now).len(), 1);
        let not_ready = taints_for(&node, Health::NotReady, now);
        assert_eq!(not_ready.len(), 3);
        assert!(not_ready
            .iter()
            .any(|t| t["key"] == NOT_READY_TAINT && t["effect"] == "NoExecute"));
        assert!(!not_ready.iter().any(|t| t["key"] == UNREACHABLE_TAINT));
    }

    #[test]
    fn a_renewing_node_is_as_ready_as_it_reports() {
        let with = |status: &str| {
            json!({"status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": status}]}})
        };
        assert_eq!(reported_health(&with("True")), Health::Ready);
        assert_eq!(reported_health(&with("False")), Health::NotReady);
        assert_eq!(reported_health(&with("Unknown")), Health::Ready);
    }
}
