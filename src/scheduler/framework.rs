//! The filter/score framework: what a plugin sees and how one scheduling decision is made.
//!
//! Plugins get [`PodInfo`] and [`NodeInfo`], both precomputed from the API objects when they
//! change (requests parsed and summed, node usage kept up to date by the cache), so a
//! scheduling cycle over many nodes does no parsing. The two traits are deliberately small so
//! wasm scheduler plugins can later be wrapped as just more implementations of them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, NodeSelector, Pod, PodAffinityTerm, PreferredSchedulingTerm, Taint, Toleration,
    TopologySpreadConstraint, WeightedPodAffinityTerm,
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
    pub labels: BTreeMap<String, String>,
    /// For extension plugins, which get a pod's annotations.
    pub annotations: BTreeMap<String, String>,
    /// `spec.schedulerName`, defaulted: the profile whose extension plugins run for it.
    pub scheduler_name: String,
    /// `affinity.podAffinity` and `affinity.podAntiAffinity`.
    pub pod_affinity: PodAffinityRules,
    pub topology_spread: Vec<TopologySpreadConstraint>,
    /// Being deleted (upstream's topology spreading does not count such pods).
    pub terminating: bool,
    /// The image of every container, init containers included, normalized
    /// (`docker.io/library/busybox:latest`), for image locality.
    pub images: Vec<String>,
}

/// A pod's inter-pod (anti-)affinity terms, required and preferred.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodAffinityRules {
    pub required: Vec<PodAffinityTerm>,
    pub preferred: Vec<WeightedPodAffinityTerm>,
    pub required_anti: Vec<PodAffinityTerm>,
    pub preferred_anti: Vec<WeightedPodAffinityTerm>,
}

impl PodAffinityRules {
    fn of(spec: &k8s_openapi::api::core::v1::PodSpec) -> Self {
        let affinity = spec.affinity.as_ref();
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        PodAffinityRules {
            required: pa
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            preferred: pa
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            required_anti: anti
                .and_then(|a| {
                    a.required_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
            preferred_anti: anti
                .and_then(|a| {
                    a.preferred_during_scheduling_ignored_during_execution
                        .clone()
                })
                .unwrap_or_default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.required.is_empty()
            && self.preferred.is_empty()
            && self.required_anti.is_empty()
            && self.preferred_anti.is_empty()
    }
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
            labels: meta.labels.clone().unwrap_or_default(),
            annotations: meta.annotations.clone().unwrap_or_default(),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| super::DEFAULT_SCHEDULER_NAME.to_string()),
            pod_affinity: PodAffinityRules::of(&spec),
            topology_spread: spec.topology_spread_constraints.clone().unwrap_or_default(),
            terminating: meta.deletion_timestamp.is_some(),
            images: pod_images(&spec),
        }
    }

    /// `namespace/name`, the key the queue and cache use.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Normalizes an image name the way nodes report theirs; a name that does not parse is kept
/// as written (it can only match a node reporting the same text).
fn normalized_image(name: &str) -> String {
    crate::image::ImageReference::parse(name)
        .map(|r| r.normalized())
        .unwrap_or_else(|_| name.to_string())
}

fn pod_images(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<String> {
    let init = spec.init_containers.iter().flatten();
    init.chain(&spec.containers)
        .filter_map(|c| c.image.as_deref())
        .map(normalized_image)
        .collect()
}

/// The runtime a pod needs, kept simple and explicit:
///
/// - with `runtimeClassName`: the class's handler, which RuntimeClass admission records in the
///   [`RUNTIME_ANNOTATION`] annotation (nodes advertise handlers; a class may be named
///   anything); for a pod admitted without that record, the class name itself.
/// - no class: annotation `wkube.dev/runtime: linux` -> `linux`; otherwise `wasmtime`. A pod
///   that says nothing is assumed to be wasm, because wkube is wasm-first and every agent
///   offers wasmtime; the agent discovers the image kind only when it pulls, and a Linux
///   image sent to a wasmtime-only node fails there, so Linux pods should say so.
pub fn pod_runtime(pod: &Pod) -> String {
    let class = pod
        .spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.as_deref())
        .filter(|c| !c.is_empty());
    let annotation = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RUNTIME_ANNOTATION))
        .map(String::as_str)
        .filter(|a| !a.is_empty());
    match (class, annotation) {
        (Some(_), Some(handler)) => handler.to_string(),
        (Some(class), None) => class.to_string(),
        (None, Some(RUNTIME_LINUX)) => RUNTIME_LINUX.to_string(),
        (None, _) => RUNTIME_WASMTIME.to_string(),
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
#[derive(Clone, Debug)]
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
    /// The pods assigned (or assumed) here, for the rules that look at other pods.
    pub pods: Vec<Arc<PodInfo>>,
    /// Those of [`NodeInfo::pods`] with inter-pod (anti-)affinity terms of their own (upstream's
    /// `PodsWithAffinity`): a pod without terms is affected only by these, so inter-pod
    /// affinity costs nothing per cycle in a cluster that does not use it.
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    /// `status.images`: normalized name -> size in bytes.
    pub images: HashMap<String, i64>,
    /// Unique per version of this value (fresh on creation and on every pod added or removed;
    /// a clone keeps it): extension plugins that mirror the cluster find what changed since
    /// their last call by comparing these instead of whole nodes. Not part of equality.
    pub generation: u64,
}

/// Source of [`NodeInfo::generation`]; process-wide so that no two versions share one.
static NODE_GENERATION: AtomicU64 = AtomicU64::new(1);

/// A fresh [`NodeInfo::generation`], for code that edits a node's fields in place.
pub fn next_generation() -> u64 {
    NODE_GENERATION.fetch_add(1, Ordering::Relaxed)
}

impl PartialEq for NodeInfo {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.labels == other.labels
            && self.taints == other.taints
            && self.unschedulable == other.unschedulable
            && self.conditions == other.conditions
            && self.readiness == other.readiness
            && self.allocatable == other.allocatable
            && self.allowed_pods == other.allowed_pods
            && self.requested == other.requested
            && self.non_zero_requested == other.non_zero_requested
            && self.pod_count == other.pod_count
            && self.runtimes == other.runtimes
            && self.pods == other.pods
            && self.pods_with_affinity == other.pods_with_affinity
            && self.images == other.images
    }
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
            pods: Vec::new(),
            pods_with_affinity: Vec::new(),
            images: node_images(&status),
            generation: next_generation(),
        }
    }

    /// Counts a pod against this node.
    pub fn add_pod(&mut self, pod: &PodInfo) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        self.pod_count += 1;
        let pod = Arc::new(pod.clone());
        if !pod.pod_affinity.is_empty() {
            self.pods_with_affinity.push(pod.clone());
        }
        self.pods.push(pod);
        self.generation = next_generation();
    }

    pub fn remove_pod(&mut self, pod: &PodInfo) {
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero_requests);
        self.pod_count -= 1;
        self.generation = next_generation();
        let same = |p: &Arc<PodInfo>| {
            p.uid == pod.uid && p.name == pod.name && p.namespace == pod.namespace
        };
        if let Some(i) = self.pods.iter().position(same) {
            self.pods.swap_remove(i);
        }
        if let Some(i) = self.pods_with_affinity.iter().position(same) {
            self.pods_with_affinity.swap_remove(i);
        }
    }
}

fn node_images(status: &k8s_openapi::api::core::v1::NodeStatus) -> HashMap<String, i64> {
    let mut images = HashMap::new();
    for image in status.images.iter().flatten() {
        let size = image.size_bytes.unwrap_or(0);
        for name in image.names.iter().flatten() {
            images.insert(normalized_image(name), size);
        }
    }
    images
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

/// A placement rule that depends on the pods of other nodes (inter-pod affinity, topology
/// spread). Once per scheduling cycle it sees every node and returns the per-node check for
/// this pod — upstream's PreFilter + Filter, with the cycle state owned by the returned value
/// instead of a shared map. `None`: the pod has nothing for this rule to check.
pub trait ClusterFilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn pre_filter(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> Option<Box<dyn NodeFilter>>;
}

/// The per-node half of a [`ClusterFilterPlugin`].
pub trait NodeFilter {
    fn filter(&self, node: &NodeInfo) -> Result<(), Reason>;
}

/// A ranking that depends on the pods of other nodes: once per cycle, over all nodes and the
/// feasible ones, it prepares a per-node scorer (upstream's PreScore + Score + NormalizeScore).
pub trait ClusterScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn weight(&self) -> i64;
    fn pre_score(
        &self,
        pod: &PodInfo,
        all: &[&NodeInfo],
        feasible: &[&NodeInfo],
    ) -> Option<Box<dyn NodeScorer>>;
}

/// The per-node half of a [`ClusterScorePlugin`]; raw scores are normalized over all feasible
/// nodes into `0..=MAX_NODE_SCORE`.
pub trait NodeScorer {
    fn score(&self, node: &NodeInfo) -> i64;
    fn normalize(&self, scores: &mut [i64]);
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

/// A plugin consulted once per pod per extension point over a whole batch of nodes: how
/// wasm scheduler plugins (`SchedulerPlugin` objects) join the framework. Unlike a built-in,
/// a call may fail; the plugin applies its own `failurePolicy`, so an ignored failure comes
/// back as "no opinion" (`Candidates::Skip`, `Ok(None)`) and only a failure that must hold the
/// pod back is an `Err`.
pub trait ExtensionPlugin: Send + Sync {
    fn name(&self) -> &str;
    /// Multiplies the plugin's normalized scores.
    fn weight(&self) -> i64;
    /// PreFilter, once per cycle before anything else: whether the plugin has a say for this
    /// pod and on which nodes. `all` is the whole cluster.
    fn pre_filter(&self, pod: &PodInfo, all: &[&NodeInfo]) -> Result<Candidates, PluginFailure>;
    /// Filter: one verdict per candidate, in order; `None` when the plugin does not filter.
    #[allow(clippy::type_complexity)]
    fn filter(
        &self,
        pod: &PodInfo,
        candidates: &[&NodeInfo],
    ) -> Result<Option<Vec<Result<(), Reason>>>, PluginFailure>;
    /// Score: one normalized score (`0..=MAX_NODE_SCORE`) per node, in order; `None` when the
    /// plugin does not score.
    fn score(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> Result<Option<Vec<i64>>, PluginFailure>;
}

/// What an [`ExtensionPlugin`]'s PreFilter decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Candidates {
    /// Nothing to check or rank for this pod.
    Skip,
    All,
    /// Only these nodes (by name); the others are rejected as unresolvable.
    Only(BTreeSet<String>),
}

/// An extension plugin failed and its `failurePolicy` is `Fail`: the pod waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginFailure {
    pub plugin: String,
    pub message: String,
}

impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SchedulerPlugin {} failed (failurePolicy Fail): {}",
            self.plugin, self.message
        )
    }
}

/// The live set of extension plugins, by profile (`schedulerName`). Consulted per pod, so
/// plugins added, changed or removed take effect on the next cycle.
pub trait Extensions: Send + Sync {
    /// The plugins for pods of this scheduler name, in order.
    fn for_profile(&self, scheduler_name: &str) -> Vec<Arc<dyn ExtensionPlugin>>;
    /// Whether some plugin names this profile (so that its pods are ours to schedule).
    fn serves(&self, scheduler_name: &str) -> bool;
    /// Ticks whenever the set changes: pods that no node fit deserve another try then.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Why a pod could not be placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// The cluster has no nodes at all (upstream's `ErrNoNodesAvailable`).
    NoNodes,
    Fit(FitError),
    /// An extension plugin with `failurePolicy: Fail` failed.
    Plugin(PluginFailure),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::NoNodes => f.write_str("no nodes available to schedule pods"),
            ScheduleError::Fit(e) => e.fmt(f),
            ScheduleError::Plugin(e) => e.fmt(f),
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
    /// Preemption found victims: the pod waits for them instead (the message then has no
    /// `preemption:` part, as upstream's).
    pub preempting: bool,
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
        if self.preempting {
            return Ok(());
        }
        // What upstream's DefaultPreemption reports when it finds no candidates.
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
    cluster_filters: Vec<Box<dyn ClusterFilterPlugin>>,
    cluster_scores: Vec<Box<dyn ClusterScorePlugin>>,
    extensions: Option<Arc<dyn Extensions>>,
    /// Where the next cycle starts filtering, so that sampling visits every node in turn.
    next_start: AtomicUsize,
}

/// An extension plugin taking part in one cycle, with its PreFilter's narrowing.
struct Active {
    plugin: Arc<dyn ExtensionPlugin>,
    only: Option<BTreeSet<String>>,
}

/// Upstream's adaptive `percentageOfNodesToScore`: in a big cluster a cycle stops filtering
/// once it has found this many feasible nodes (all of them below 100 nodes; 50% minus one
/// point per 125 nodes, at least 5%, and never fewer than 100).
pub fn feasible_nodes_to_find(all: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if all < MIN_FEASIBLE {
        return all;
    }
    let percentage = 50usize.saturating_sub(all / 125).max(5);
    (all * percentage / 100).max(MIN_FEASIBLE)
}

impl Framework {
    pub fn new(filters: Vec<Box<dyn FilterPlugin>>, scores: Vec<Box<dyn ScorePlugin>>) -> Self {
        Framework {
            filters,
            scores,
            cluster_filters: Vec::new(),
            cluster_scores: Vec::new(),
            extensions: None,
            next_start: AtomicUsize::new(0),
        }
    }

    /// Adds the rules that look across nodes; they run after the per-node ones.
    pub fn with_cluster_plugins(
        mut self,
        filters: Vec<Box<dyn ClusterFilterPlugin>>,
        scores: Vec<Box<dyn ClusterScorePlugin>>,
    ) -> Self {
        self.cluster_filters = filters;
        self.cluster_scores = scores;
        self
    }

    /// Adds the live set of extension (wasm) plugins, run after the built-ins.
    pub fn with_extensions(mut self, extensions: Arc<dyn Extensions>) -> Self {
        self.extensions = Some(extensions);
        self
    }

    /// Whether pods of this `schedulerName` have extension plugins here.
    pub fn serves(&self, scheduler_name: &str) -> bool {
        self.extensions
            .as_ref()
            .is_some_and(|e| e.serves(scheduler_name))
    }

    /// Ticks when the extension plugins change (`None` without extensions).
    pub fn extension_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.extensions.as_ref().map(|e| e.changes())
    }

    fn extensions_for(&self, pod: &PodInfo) -> Vec<Arc<dyn ExtensionPlugin>> {
        self.extensions
            .as_ref()
            .map(|e| e.for_profile(&pod.scheduler_name))
            .unwrap_or_default()
    }

    /// Runs every extension plugin's PreFilter; those that skip the pod drop out.
    fn pre_filter_extensions(
        &self,
        pod: &PodInfo,
        all: &[&NodeInfo],
    ) -> Result<Vec<Active>, PluginFailure> {
        let mut active = Vec::new();
        for plugin in self.extensions_for(pod) {
            let only = match plugin.pre_filter(pod, all)? {
                Candidates::Skip => continue,
                Candidates::All => None,
                Candidates::Only(names) => Some(names),
            };
            active.push(Active { plugin, only });
        }
        Ok(active)
    }

    /// One batched Filter call per active extension plugin over `chunk`; the survivors join
    /// `feasible`, the others get their reasons.
    fn filter_extensions<'a>(
        pod: &PodInfo,
        active: &[Active],
        mut chunk: Vec<&'a NodeInfo>,
        reasons: &mut BTreeMap<String, Reason>,
        feasible: &mut Vec<&'a NodeInfo>,
    ) -> Result<(), PluginFailure> {
        for a in active {
            if chunk.is_empty() {
                break;
            }
            let Some(verdicts) = a.plugin.filter(pod, &chunk)? else {
                continue;
            };
            let mut kept = Vec::with_capacity(chunk.len());
            for (node, verdict) in chunk.into_iter().zip(verdicts) {
                match verdict {
                    Ok(()) => kept.push(node),
                    Err(reason) => {
                        reasons.insert(node.name.clone(), reason);
                    }
                }
            }
            chunk = kept;
        }
        feasible.extend(chunk);
        Ok(())
    }

    /// Adds each active extension plugin's weighted scores.
    fn score_extensions(
        pod: &PodInfo,
        active: &[Active],
        nodes: &[&NodeInfo],
        totals: &mut [i64],
    ) -> Result<(), PluginFailure> {
        for a in active {
            let Some(scores) = a.plugin.score(pod, nodes)? else {
                continue;
            };
            let weight = a.plugin.weight();
            for (total, s) in totals.iter_mut().zip(scores) {
                *total += s.clamp(0, MAX_NODE_SCORE) * weight;
            }
        }
        Ok(())
    }

    /// Whether the extension plugins accept `node` (preemption's question); a failing plugin
    /// does not.
    fn extensions_fit(&self, pod: &PodInfo, node: &NodeInfo, all: &[&NodeInfo]) -> bool {
        let Ok(active) = self.pre_filter_extensions(pod, all) else {
            return false;
        };
        active.iter().all(|a| {
            a.only.as_ref().is_none_or(|o| o.contains(&node.name))
                && match a.plugin.filter(pod, &[node]) {
                    Ok(Some(v)) => v.first().is_some_and(Result::is_ok),
                    Ok(None) => true,
                    Err(_) => false,
                }
        })
    }

    pub fn filter_names(&self) -> Vec<&'static str> {
        let per_node = self.filters.iter().map(|p| p.name());
        per_node
            .chain(self.cluster_filters.iter().map(|p| p.name()))
            .collect()
    }

    pub fn score_names(&self) -> Vec<&'static str> {
        let per_node = self.scores.iter().map(|p| p.name());
        per_node
            .chain(self.cluster_scores.iter().map(|p| p.name()))
            .collect()
    }

    /// Runs the per-node filters on one node; the first failure wins.
    pub fn run_filters(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        for plugin in &self.filters {
            plugin.filter(pod, node)?;
        }
        Ok(())
    }

    /// Whether the pod passes every filter, per-node and cluster-wide, on `node`, with `all` as
    /// the cluster (preemption asks this of a node with some pods taken away).
    pub fn fits(&self, pod: &PodInfo, node: &NodeInfo, all: &[&NodeInfo]) -> bool {
        self.run_filters(pod, node).is_ok()
            && self
                .cluster_filters
                .iter()
                .filter_map(|p| p.pre_filter(pod, all))
                .all(|check| check.filter(node).is_ok())
            && self.extensions_fit(pod, node, all)
    }

    /// Weighted total score per node, in the order given.
    pub fn run_scores(&self, pod: &PodInfo, all: &[&NodeInfo], nodes: &[&NodeInfo]) -> Vec<i64> {
        let mut totals = vec![0i64; nodes.len()];
        let mut add = |raw: Vec<i64>, weight: i64| {
            for (total, s) in totals.iter_mut().zip(raw) {
                *total += s.clamp(0, MAX_NODE_SCORE) * weight;
            }
        };
        for plugin in &self.scores {
            let mut raw: Vec<i64> = nodes.iter().map(|n| plugin.score(pod, n)).collect();
            plugin.normalize(pod, &mut raw);
            add(raw, plugin.weight());
        }
        for plugin in &self.cluster_scores {
            if let Some(scorer) = plugin.pre_score(pod, all, nodes) {
                let mut raw: Vec<i64> = nodes.iter().map(|n| scorer.score(n)).collect();
                scorer.normalize(&mut raw);
                add(raw, plugin.weight());
            }
        }
        totals
    }

    /// Filters every node, scores the feasible ones and picks the best, breaking ties
    /// uniformly at random (so equal nodes share the load, as upstream's `selectHost`).
    ///
    /// Nodes are filtered in chunks: the built-in filters pick up to the number of feasible
    /// nodes still wanted, then each extension plugin filters the chunk in one call, until
    /// enough nodes are feasible or all were seen.
    pub fn schedule<'a, R: Rng + ?Sized>(
        &self,
        pod: &PodInfo,
        nodes: impl IntoIterator<Item = &'a NodeInfo>,
        rng: &mut R,
    ) -> Result<Decision, ScheduleError> {
        let mut feasible = Vec::new();
        let mut reasons = BTreeMap::new();
        let name_restriction = node_name_restriction(pod);
        let all: Vec<&NodeInfo> = nodes.into_iter().collect();
        let num_nodes = all.len();
        let active = self
            .pre_filter_extensions(pod, &all)
            .map_err(ScheduleError::Plugin)?;
        let cluster_checks: Vec<Box<dyn NodeFilter>> = self
            .cluster_filters
            .iter()
            .filter_map(|p| p.pre_filter(pod, &all))
            .collect();
        let enough = feasible_nodes_to_find(num_nodes);
        let start = self.next_start.load(Ordering::Relaxed) % num_nodes.max(1);
        let mut processed = 0;
        while feasible.len() < enough && processed < num_nodes {
            let want = enough - feasible.len();
            let mut chunk = Vec::with_capacity(want);
            while chunk.len() < want && processed < num_nodes {
                let node = all[(start + processed) % num_nodes];
                processed += 1;
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
                let verdict = self
                    .run_filters(pod, node)
                    .and_then(|()| cluster_checks.iter().try_for_each(|c| c.filter(node)))
                    .and_then(|()| narrowed(&active, node));
                match verdict {
                    Ok(()) => chunk.push(node),
                    Err(reason) => {
                        reasons.insert(node.name.clone(), reason);
                    }
                }
            }
            Self::filter_extensions(pod, &active, chunk, &mut reasons, &mut feasible)
                .map_err(ScheduleError::Plugin)?;
        }
        self.next_start
            .store((start + processed) % num_nodes.max(1), Ordering::Relaxed);
        if num_nodes == 0 {
            return Err(ScheduleError::NoNodes);
        }
        if feasible.is_empty() {
            return Err(ScheduleError::Fit(FitError {
                num_nodes,
                reasons,
                preemption_never: pod.preemption_never,
                preempting: false,
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
        let mut scores = self.run_scores(pod, &all, &feasible);
        Self::score_extensions(pod, &active, &feasible, &mut scores)
            .map_err(ScheduleError::Plugin)?;
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

/// Rejects a node that an extension plugin's PreFilter left out.
fn narrowed(active: &[Active], node: &NodeInfo) -> Result<(), Reason> {
    for a in active {
        if a.only.as_ref().is_some_and(|o| !o.contains(&node.name)) {
            return Err(Reason::unresolvable(format!(
                "node(s) didn't satisfy plugin(s) [{}]",
                a.plugin.name()
            )));
        }
    }
    Ok(())
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

#[cfg(test)]
mod extension_tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};
    use rand::rngs::StdRng;
    use rand::SeedableRng as _;

    /// An extension plugin whose answers are functions of the node.
    struct Fake {
        reject: fn(&NodeInfo) -> bool,
        score: fn(&NodeInfo) -> i64,
        weight: i64,
        only: Option<BTreeSet<String>>,
        fail: bool,
        calls: AtomicUsize,
    }

    impl Fake {
        fn new(reject: fn(&NodeInfo) -> bool, score: fn(&NodeInfo) -> i64) -> Fake {
            Fake {
                reject,
                score,
                weight: 1,
                only: None,
                fail: false,
                calls: AtomicUsize::new(0),
            }
        }
    }

    impl ExtensionPlugin for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn weight(&self) -> i64 {
            self.weight
        }
        fn pre_filter(&self, _: &PodInfo, _: &[&NodeInfo]) -> Result<Candidates, PluginFailure> {
            Ok(match &self.only {
                Some(o) => Candidates::Only(o.clone()),
                None => Candidates::All,
            })
        }
        fn filter(
            &self,
            _: &PodInfo,
            nodes: &[&NodeInfo],
        ) -> Result<Option<Vec<Result<(), Reason>>>, PluginFailure> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.fail {
                return Err(PluginFailure {
                    plugin: "fake".into(),
                    message: "trapped".into(),
                });
            }
            Ok(Some(
                nodes
                    .iter()
                    .map(|n| match (self.reject)(n) {
                        true => Err(Reason::unresolvable("node(s) rejected by fake")),
                        false => Ok(()),
                    })
                    .collect(),
            ))
        }
        fn score(
            &self,
            _: &PodInfo,
            nodes: &[&NodeInfo],
        ) -> Result<Option<Vec<i64>>, PluginFailure> {
            Ok(Some(nodes.iter().map(|n| (self.score)(n)).collect()))
        }
    }

    struct Set(Arc<Fake>, tokio::sync::watch::Sender<u64>);

    impl Extensions for Set {
        fn for_profile(&self, name: &str) -> Vec<Arc<dyn ExtensionPlugin>> {
            if name == "default-scheduler" {
                vec![self.0.clone()]
            } else {
                vec![]
            }
        }
        fn serves(&self, name: &str) -> bool {
            name == "default-scheduler"
        }
        fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
            self.1.subscribe()
        }
    }

    fn framework(fake: Fake) -> (Framework, Arc<Fake>) {
        let fake = Arc::new(fake);
        let set = Set(fake.clone(), tokio::sync::watch::Sender::new(0));
        let f = Framework::new(vec![], vec![]).with_extensions(Arc::new(set));
        (f, fake)
    }

    fn nodes(n: usize) -> Vec<NodeInfo> {
        (0..n).map(|i| node(&format!("n{i:04}"))).collect()
    }

    fn index(n: &NodeInfo) -> usize {
        n.name[1..].parse().unwrap_or(0)
    }

    #[test]
    fn rejections_are_reasons_and_sampling_goes_on_until_enough_pass() {
        let (f, fake) = framework(Fake::new(|n| index(n).is_multiple_of(2), |_| 0));
        let all = nodes(1000);
        let d = f
            .schedule(&pod("p"), &all, &mut StdRng::seed_from_u64(1))
            .expect("fits");
        assert_eq!(d.feasible_nodes, feasible_nodes_to_find(1000));
        let chosen: usize = d.node[1..].parse().expect("a node index");
        assert!(
            !chosen.is_multiple_of(2),
            "an odd node, as the plugin wants"
        );
        assert!(
            fake.calls.load(Ordering::Relaxed) > 1,
            "one batched call per chunk"
        );
        let (f, _) = framework(Fake::new(|_| true, |_| 0));
        let Err(ScheduleError::Fit(e)) =
            f.schedule(&pod("p"), &all[..3], &mut StdRng::seed_from_u64(1))
        else {
            panic!("nothing fits");
        };
        assert!(e.to_string().contains("3 node(s) rejected by fake"), "{e}");
    }

    #[test]
    fn weighted_scores_decide_and_only_narrows() {
        let mut fake = Fake::new(|_| false, |n| if n.name == "n0001" { 100 } else { 0 });
        fake.weight = 5;
        let (f, _) = framework(fake);
        let all = nodes(4);
        for seed in 0..5 {
            let d = f
                .schedule(&pod("p"), &all, &mut StdRng::seed_from_u64(seed))
                .expect("fits");
            assert_eq!(d.node, "n0001");
            assert_eq!(d.score, 500);
        }
        let mut fake = Fake::new(|_| false, |_| 0);
        fake.only = Some(BTreeSet::from(["n0002".to_string()]));
        let (f, _) = framework(fake);
        let d = f
            .schedule(&pod("p"), &all, &mut StdRng::seed_from_u64(0))
            .expect("fits");
        assert_eq!(d.node, "n0002");
    }

    #[test]
    fn a_failing_plugin_under_fail_holds_the_pod_and_other_profiles_skip_it() {
        let mut fake = Fake::new(|_| false, |_| 0);
        fake.fail = true;
        let (f, _) = framework(fake);
        let all = nodes(3);
        let err = f
            .schedule(&pod("p"), &all, &mut StdRng::seed_from_u64(0))
            .expect_err("held");
        assert!(matches!(err, ScheduleError::Plugin(_)));
        assert!(
            err.to_string().contains("SchedulerPlugin fake failed"),
            "{err}"
        );
        assert!(!f.fits(&pod("p"), &all[0], &all.iter().collect::<Vec<_>>()));
        let mut other = pod("q");
        other.scheduler_name = "other".into();
        assert!(f
            .schedule(&other, &all, &mut StdRng::seed_from_u64(0))
            .is_ok());
        assert!(f.serves("default-scheduler") && !f.serves("other"));
    }
}
