//! The filter/score framework: what a plugin sees and how one scheduling decision is made.
//!
//! Plugins get [`PodInfo`] and [`NodeInfo`], both precomputed from the API objects when they
//! change (requests parsed and summed, node usage kept up to date by the cache), so a
//! scheduling cycle over many nodes does no parsing. The two traits are deliberately small so
//! wasm scheduler plugins can later be wrapped as just more implementations of them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, Pod, PreferredSchedulingTerm, Taint, Toleration,
};
use k8s_openapi::jiff::Timestamp;
use rand::Rng;

use super::resources::{self, Resources};

/// Highest score a [`ScorePlugin`] gives a node (upstream's `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// Node label listing the runtimes a node agent offers, dot-separated (label values cannot
/// hold commas), e.g. `wasmtime` or `wasmtime.linux`.
pub const RUNTIMES_LABEL: &str = "wkube.dev/runtimes";
/// Pod annotation that marks a pod without `runtimeClassName` as wasm (`wasm`) or Linux
/// (`linux`).
pub const RUNTIME_ANNOTATION: &str = "wkube.dev/runtime";
/// The runtime name for wasm pods, both as RuntimeClass name and as node offering.
pub const RUNTIME_WASMTIME: &str = "wasmtime";
/// The runtime name for Linux-container pods.
pub const RUNTIME_LINUX: &str = "linux";

/// Everything the plugins need to know about the pod being scheduled.
#[derive(Clone, Debug, PartialEq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `spec.priority`, 0 when unset (the priority admission plugin fills it in upstream).
    pub priority: i32,
    pub created: Option<Timestamp>,
    /// Effective requests: max(sum of containers, largest init step) + overhead.
    pub requests: Resources,
    /// The same with upstream's defaults (100m cpu, 200Mi) for containers that request
    /// nothing; used for scoring so best-effort pods still spread.
    pub non_zero_requests: Resources,
    pub node_selector: BTreeMap<String, String>,
    /// `affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_node_affinity: Option<NodeSelector>,
    /// `affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
    pub preferred_node_affinity: Vec<PreferredSchedulingTerm>,
    pub tolerations: Vec<Toleration>,
    /// The runtime a node must offer (see [`pod_runtime`]).
    pub runtime: String,
    /// `spec.preemptionPolicy: Never`; only changes the failure message (no preemption here).
    pub preemption_never: bool,
}

impl PodInfo {
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let node_affinity = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref());
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            priority: spec.priority.unwrap_or(0),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
            requests: resources::pod_requests(&spec, false),
            non_zero_requests: resources::pod_requests(&spec, true),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_affinity: node_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .clone()
            }),
            preferred_node_affinity: node_affinity
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            runtime: pod_runtime(pod),
            preemption_never: spec.preemption_policy.as_deref() == Some("Never"),
        }
    }

    /// `namespace/name`, the key the queue and cache use.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The runtime a pod needs, kept simple and explicit:
///
/// - `runtimeClassName: wasmtime` -> `wasmtime`; `runtimeClassName: linux` -> `linux`; any
///   other class name must be offered under that exact name.
/// - no class: annotation `wkube.dev/runtime: linux` -> `linux`; otherwise `wasmtime`. A pod
///   that says nothing is assumed to be wasm, because wkube is wasm-first and every agent
///   offers wasmtime; the agent discovers the image kind only when it pulls, and a Linux
///   image sent to a wasmtime-only node fails there, so Linux pods should say so.
pub fn pod_runtime(pod: &Pod) -> String {
    let class = pod
        .spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.as_deref());
    match class {
        Some(c) if !c.is_empty() => c.to_string(),
        _ => {
            let annotation = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(RUNTIME_ANNOTATION))
                .map(String::as_str);
            match annotation {
                Some(RUNTIME_LINUX) => RUNTIME_LINUX.to_string(),
                _ => RUNTIME_WASMTIME.to_string(),
            }
        }
    }
}

/// The node's `Ready` condition as the scheduler cares about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// `Ready=False`, or no Ready condition yet (a freshly registered node: the kubelet
    /// registers with the `not-ready` taint for the same reason).
    NotReady,
    /// `Ready=Unknown`: the node stopped reporting.
    Unreachable,
}

/// Everything the plugins need to know about a node, including what is already on it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    /// Condition type -> status ("True"/"False"/"Unknown").
    pub conditions: BTreeMap<String, String>,
    pub readiness: Readiness,
    pub allocatable: Resources,
    /// `allocatable.pods`; 0 when the node does not say (then nothing fits, as upstream).
    pub allowed_pods: i64,
    /// Sum of the requests of the pods assigned (or assumed) here.
    pub requested: Resources,
    /// The same with the non-zero defaults, for scoring.
    pub non_zero_requested: Resources,
    pub pod_count: i64,
    /// From the [`RUNTIMES_LABEL`] label.
    pub runtimes: BTreeSet<String>,
}

impl NodeInfo {
    /// A node with nothing on it yet; the cache adds the pods.
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let conditions: BTreeMap<String, String> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect();
        let readiness = match conditions.get("Ready").map(String::as_str) {
            Some("True") => Readiness::Ready,
            Some("Unknown") => Readiness::Unreachable,
            _ => Readiness::NotReady,
        };
        let allowed_pods = status
            .allocatable
            .as_ref()
            .and_then(|a| a.get(resources::PODS))
            .and_then(resources::value)
            .unwrap_or(0);
        let runtimes = labels
            .get(RUNTIMES_LABEL)
            .map(|v| {
                v.split('.')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels,
            taints: spec.taints.unwrap_or_default(),
            unschedulable: spec.unschedulable.unwrap_or(false),
            conditions,
            readiness,
            allocatable: Resources::from_list(status.allocatable.as_ref()),
            allowed_pods,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            pod_count: 0,
            runtimes,
        }
    }

    /// Counts a pod against this node.
    pub fn add_pod(&mut self, pod: &PodInfo) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        self.pod_count += 1;
    }

    pub fn remove_pod(&mut self, pod: &PodInfo) {
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero_requests);
        self.pod_count -= 1;
    }
}

/// Why a node cannot take a pod: the texts counted in the failure message (one node can have
/// several, e.g. `Insufficient cpu` and `Insufficient memory`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    messages: Vec<String>,
    unresolvable: bool,
}

impl Reason {
    /// A failure that evicting pods could cure (resources); upstream's `Unschedulable`.
    pub fn resolvable(message: impl Into<String>) -> Self {
        Reason {
            messages: vec![message.into()],
            unresolvable: false,
        }
    }

    /// A failure no preemption can cure (labels, taints, runtime); upstream's
    /// `UnschedulableAndUnresolvable`.
    pub fn unresolvable(message: impl Into<String>) -> Self {
        Reason {
            messages: vec![message.into()],
            unresolvable: true,
        }
    }

    /// Adds another text for the same node.
    pub fn and(mut self, message: impl Into<String>) -> Self {
        self.messages.push(message.into());
        self
    }

    pub fn messages(&self) -> &[String] {
        &self.messages
    }

    pub fn is_unresolvable(&self) -> bool {
        self.unresolvable
    }
}

/// Decides whether a pod may run on a node. Filters run in order; the first failure is the
/// node's reason (as upstream without `runAllFilters`).
pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason>;
}

/// Ranks the nodes that passed the filters.
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// A raw score; `0..=MAX_NODE_SCORE` unless [`ScorePlugin::normalize`] maps it there.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64;
    fn weight(&self) -> i64;
    /// Maps the raw scores of all feasible nodes into `0..=MAX_NODE_SCORE` (upstream's
    /// `NormalizeScore`), for plugins whose raw score is a count or a sum of weights.
    fn normalize(&self, _pod: &PodInfo, _scores: &mut [i64]) {}
}

/// Upstream's `DefaultNormalizeScore`: scale to the highest raw score, optionally reversed
/// (fewer is better).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

/// Why a pod could not be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// The cluster has no nodes at all (upstream's `ErrNoNodesAvailable`).
    NoNodes,
    Fit(FitError),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::NoNodes => f.write_str("no nodes available to schedule pods"),
            ScheduleError::Fit(e) => e.fmt(f),
        }
    }
}

/// Every node failed a filter. Its `Display` is upstream's `FitError` message, including the
/// part the DefaultPreemption post-filter adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitError {
    pub num_nodes: usize,
    /// Node name -> why it was rejected.
    pub reasons: BTreeMap<String, Reason>,
    pub preemption_never: bool,
}

/// `"1 a, 2 b"`: counts per text, sorted as strings (count included, as upstream's
/// `sort.Strings`, so "10 x" sorts before "2 y").
fn histogram<'a>(texts: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in texts {
        *counts.entry(t).or_insert(0) += 1;
    }
    let mut lines: Vec<String> = counts.iter().map(|(t, n)| format!("{n} {t}")).collect();
    lines.sort();
    lines.join(", ")
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.num_nodes;
        write!(f, "0/{n} nodes are available")?;
        let filter = histogram(
            self.reasons
                .values()
                .flat_map(|r| r.messages.iter().map(String::as_str)),
        );
        if !filter.is_empty() {
            write!(f, ": {filter}.")?;
        } else {
            f.write_str(":")?;
        }
        // This scheduler does not preempt; it reports what upstream's DefaultPreemption
        // reports when it finds no candidates, which is exact for pods of equal priority.
        if self.preemption_never {
            return f.write_str(" preemption: not eligible due to preemptionPolicy=Never.");
        }
        let preemption = histogram(self.reasons.values().map(|r| {
            if r.unresolvable {
                "Preemption is not helpful for scheduling"
            } else {
                "No preemption victims found for incoming pod"
            }
        }));
        write!(f, " preemption: 0/{n} nodes are available")?;
        if preemption.is_empty() {
            f.write_str(":")
        } else {
            write!(f, ": {preemption}.")
        }
    }
}

impl std::error::Error for ScheduleError {}

/// The nodes kept by the filters and the scores they got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub node: String,
    pub feasible_nodes: usize,
    pub score: i64,
}

/// An ordered set of filter and score plugins.
pub struct Framework {
    filters: Vec<Box<dyn FilterPlugin>>,
    scores: Vec<Box<dyn ScorePlugin>>,
}

impl Framework {
    pub fn new(filters: Vec<Box<dyn FilterPlugin>>, scores: Vec<Box<dyn ScorePlugin>>) -> Self {
        Framework { filters, scores }
    }

    pub fn filter_names(&self) -> Vec<&'static str> {
        self.filters.iter().map(|p| p.name()).collect()
    }

    pub fn score_names(&self) -> Vec<&'static str> {
        self.scores.iter().map(|p| p.name()).collect()
    }

    /// Runs the filters on one node; the first failure wins.
    pub fn run_filters(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        for plugin in &self.filters {
            plugin.filter(pod, node)?;
        }
        Ok(())
    }

    /// Weighted total score per node, in the order given.
    pub fn run_scores(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> Vec<i64> {
        let mut totals = vec![0i64; nodes.len()];
        for plugin in &self.scores {
            let mut raw: Vec<i64> = nodes.iter().map(|n| plugin.score(pod, n)).collect();
            plugin.normalize(pod, &mut raw);
            let weight = plugin.weight();
            for (total, s) in totals.iter_mut().zip(raw) {
                *total += s.clamp(0, MAX_NODE_SCORE) * weight;
            }
        }
        totals
    }

    /// Filters every node, scores the feasible ones and picks the best, breaking ties
    /// uniformly at random (so equal nodes share the load, as upstream's `selectHost`).
    pub fn schedule<'a, R: Rng + ?Sized>(
        &self,
        pod: &PodInfo,
        nodes: impl IntoIterator<Item = &'a NodeInfo>,
        rng: &mut R,
    ) -> Result<Decision, ScheduleError> {
        let mut feasible = Vec::new();
        let mut reasons = BTreeMap::new();
        let mut num_nodes = 0;
        let name_restriction = node_name_restriction(pod);
        for node in nodes {
            num_nodes += 1;
            if let Some(allowed) = &name_restriction {
                // Upstream's NodeAffinity PreFilter narrows the candidates to these names;
                // the others are reported without running any filter.
                if !allowed.contains(&node.name) {
                    reasons.insert(
                        node.name.clone(),
                        Reason::unresolvable("node(s) didn't satisfy plugin(s) [NodeAffinity]"),
                    );
                    continue;
                }
            }
            match self.run_filters(pod, node) {
                Ok(()) => feasible.push(node),
                Err(reason) => {
                    reasons.insert(node.name.clone(), reason);
                }
            }
        }
        if num_nodes == 0 {
            return Err(ScheduleError::NoNodes);
        }
        if feasible.is_empty() {
            return Err(ScheduleError::Fit(FitError {
                num_nodes,
                reasons,
                preemption_never: pod.preemption_never,
            }));
        }
        let feasible_nodes = feasible.len();
        if feasible_nodes == 1 {
            return Ok(Decision {
                node: feasible[0].name.clone(),
                feasible_nodes,
                score: 0,
            });
        }
        let scores = self.run_scores(pod, &feasible);
        let best = scores.iter().copied().max().unwrap_or(0);
        let winners: Vec<usize> = (0..feasible_nodes).filter(|i| scores[*i] == best).collect();
        let pick = winners[rng.random_range(0..winners.len())];
        Ok(Decision {
            node: feasible[pick].name.clone(),
            feasible_nodes,
            score: best,
        })
    }
}

/// Upstream's NodeAffinity PreFilter: when every required term pins `metadata.name` with
/// `In` (what the DaemonSet controller writes), only those nodes are candidates. Within a
/// term the requirements are ANDed (intersection), terms are ORed (union).
fn node_name_restriction(pod: &PodInfo) -> Option<BTreeSet<String>> {
    let terms = &pod.required_node_affinity.as_ref()?.node_selector_terms;
    if terms.is_empty() {
        return None;
    }
    let mut names = BTreeSet::new();
    for term in terms {
        let mut term_names: Option<BTreeSet<String>> = None;
        for r in term.match_fields.iter().flatten() {
            if r.key == "metadata.name" && r.operator == "In" {
                let set: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
                term_names = Some(match term_names {
                    None => set,
                    Some(prev) => prev.intersection(&set).cloned().collect(),
                });
            }
        }
        // A term without a name pin admits every node, so there is no restriction.
        names.extend(term_names?);
    }
    Some(names)
}
