//! The scheduler-plugin contract as the host sees it (`wit/scheduler`), also the JSON of the
//! WASI preview 1 command protocol (`wit/scheduler/README.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scheduler::framework::{NodeInfo, PodInfo};
use crate::scheduler::resources::Resources;

pub type NodeHandle = u32;
pub type PodHandle = u32;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Amounts {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

impl From<&Resources> for Amounts {
    fn from(r: &Resources) -> Self {
        Amounts {
            milli_cpu: r.milli_cpu,
            memory: r.memory,
            ephemeral_storage: r.ephemeral_storage,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaintView {
    pub key: String,
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub handle: NodeHandle,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<TaintView>,
    pub unschedulable: bool,
    pub allocatable: Amounts,
    pub requested: Amounts,
    pub pod_count: i64,
}

impl NodeView {
    pub fn of(handle: NodeHandle, n: &NodeInfo) -> Self {
        NodeView {
            handle,
            name: n.name.clone(),
            labels: n.labels.clone(),
            taints: n
                .taints
                .iter()
                .map(|t| TaintView {
                    key: t.key.clone(),
                    value: t.value.clone().unwrap_or_default(),
                    effect: t.effect.clone(),
                })
                .collect(),
            unschedulable: n.unschedulable,
            allocatable: (&n.allocatable).into(),
            requested: (&n.requested).into(),
            pod_count: n.pod_count,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundPod {
    pub handle: PodHandle,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub node: NodeHandle,
}

/// What changed since the previous sync, applied in field order (see `wit/scheduler`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delta {
    pub reset: bool,
    pub pods_removed: Vec<PodHandle>,
    pub nodes_removed: Vec<NodeHandle>,
    pub nodes: Vec<NodeView>,
    pub pods: Vec<BoundPod>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        !self.reset
            && self.pods_removed.is_empty()
            && self.nodes_removed.is_empty()
            && self.nodes.is_empty()
            && self.pods.is_empty()
    }
}

/// The pod being scheduled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node_selector: BTreeMap<String, String>,
    pub priority: i32,
    pub requests: Amounts,
    pub scheduler_name: String,
}

impl From<&PodInfo> for PodView {
    fn from(p: &PodInfo) -> Self {
        PodView {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            labels: p.labels.clone(),
            annotations: p.annotations.clone(),
            node_selector: p.node_selector.clone(),
            priority: p.priority,
            requests: (&p.requests).into(),
            scheduler_name: p.scheduler_name.clone(),
        }
    }
}

/// A plugin's verdict on one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Reject {
        reasons: Vec<String>,
        unresolvable: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreFilter {
    Skip,
    All,
    Only(Vec<NodeHandle>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    #[default]
    None,
    Scale,
    ScaleReverse,
}
