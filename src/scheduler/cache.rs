//! The scheduler's view of the cluster: nodes and what is already placed on them.
//!
//! Fed by the node and pod watches. Node usage is kept incrementally (a pod added or removed
//! adjusts its node's [`NodeInfo`]) so a scheduling cycle just reads it. After a successful
//! decision the pod is *assumed* on its node at once, before the binding is even sent, so the
//! next cycle already sees the node as fuller; without this two pods could race onto a node
//! with room for one. The assumption is confirmed when the watch shows the pod bound and
//! dropped if the binding fails.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::Node;
use tokio::time::Instant;

use super::framework::{NodeInfo, PodInfo};

struct CachedPod {
    node: String,
    info: PodInfo,
    /// `Some(when)` until the watch confirms the binding.
    assumed_at: Option<Instant>,
}

#[derive(Default)]
pub struct Cache {
    nodes: BTreeMap<String, NodeInfo>,
    /// Pods counted against a node, by `namespace/name`.
    pods: HashMap<String, CachedPod>,
}

impl Cache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Adds or updates a node. Returns whether anything the plugins look at changed (a
    /// heartbeat-only update does not), which is when unschedulable pods deserve a retry.
    pub fn apply_node(&mut self, node: &Node) -> bool {
        let mut info = NodeInfo::from_node(node);
        if info.name.is_empty() {
            return false;
        }
        match self.nodes.get(&info.name) {
            Some(old) => {
                info.requested = old.requested.clone();
                info.non_zero_requested = old.non_zero_requested.clone();
                info.pod_count = old.pod_count;
                info.pods = old.pods.clone();
                info.pods_with_affinity = old.pods_with_affinity.clone();
                if *old == info {
                    return false;
                }
            }
            None => {
                let name = info.name.clone();
                for p in self.pods.values().filter(|p| p.node == name) {
                    info.add_pod(&p.info);
                }
            }
        }
        self.nodes.insert(info.name.clone(), info);
        true
    }

    pub fn delete_node(&mut self, name: &str) -> bool {
        self.nodes.remove(name).is_some()
    }

    /// After a relist: drops nodes that are gone, applies the rest. Returns whether anything
    /// changed.
    pub fn replace_nodes(&mut self, nodes: &[Node]) -> bool {
        let names: HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        let before = self.nodes.len();
        self.nodes.retain(|name, _| names.contains(name.as_str()));
        let mut changed = self.nodes.len() != before;
        for n in nodes {
            changed |= self.apply_node(n);
        }
        changed
    }

    /// Counts (or re-counts) a pod the watch shows bound to `node`.
    pub fn apply_assigned_pod(&mut self, info: PodInfo, node: &str) {
        let key = info.key();
        self.remove_pod(&key);
        if let Some(n) = self.nodes.get_mut(node) {
            n.add_pod(&info);
        }
        self.pods.insert(
            key,
            CachedPod {
                node: node.to_string(),
                info,
                assumed_at: None,
            },
        );
    }

    /// Stops counting a pod (deleted or finished). Returns whether it was counted, i.e.
    /// whether room was freed.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(old) = self.pods.remove(key) else {
            return false;
        };
        if let Some(n) = self.nodes.get_mut(&old.node) {
            n.remove_pod(&old.info);
        }
        true
    }

    /// Counts a pod on the node chosen for it, ahead of the watch.
    pub fn assume(&mut self, info: &PodInfo, node: &str, now: Instant) {
        self.apply_assigned_pod(info.clone(), node);
        if let Some(p) = self.pods.get_mut(&info.key()) {
            p.assumed_at = Some(now);
        }
    }

    /// The binding failed: undo [`Cache::assume`] unless the watch has confirmed it since.
    pub fn forget(&mut self, info: &PodInfo) {
        let key = info.key();
        let assumed = self
            .pods
            .get(&key)
            .is_some_and(|p| p.assumed_at.is_some() && p.info.uid == info.uid);
        if assumed {
            self.remove_pod(&key);
        }
    }

    /// Whether this pod (this incarnation) is assumed and not yet confirmed; a stale watch
    /// event showing it unbound must then not queue it again.
    pub fn is_assumed(&self, info: &PodInfo) -> bool {
        self.pods
            .get(&info.key())
            .is_some_and(|p| p.assumed_at.is_some() && p.info.uid == info.uid)
    }

    /// Where the cache counts a pod, if anywhere.
    pub fn node_of(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|p| p.node.as_str())
    }

    /// After a pod relist that started at `list_started`: forgets counted pods the list did
    /// not contain. Assumptions made after the list started are kept (the list may predate
    /// the binding). Returns whether room was freed.
    pub fn retain_pods(&mut self, listed: &HashSet<String>, list_started: Instant) -> bool {
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(k, p)| !listed.contains(*k) && p.assumed_at.is_none_or(|t| t < list_started))
            .map(|(k, _)| k.clone())
            .collect();
        let freed = !gone.is_empty();
        for k in gone {
            self.remove_pod(&k);
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{pod, with_requests};
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn api_node(name: &str, cpu: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                allocatable: Some(
                    [
                        ("cpu".to_string(), Quantity(cpu.into())),
                        ("memory".to_string(), Quantity("8Gi".into())),
                        ("pods".to_string(), Quantity("110".into())),
                    ]
                    .into(),
                ),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn usage_follows_pods_and_survives_node_updates() {
        let mut c = Cache::new();
        assert!(c.apply_node(&api_node("n", "4")));
        assert!(!c.apply_node(&api_node("n", "4")), "no relevant change");
        c.apply_assigned_pod(with_requests(pod("a"), 1000, 0), "n");
        c.apply_assigned_pod(with_requests(pod("a"), 1500, 0), "n"); // updated, not added twice
        assert_eq!(c.node("n").unwrap().requested.milli_cpu, 1500);
        assert_eq!(c.node("n").unwrap().pod_count, 1);
        assert!(c.apply_node(&api_node("n", "8")));
        let n = c.node("n").unwrap();
        assert_eq!(
            (n.allocatable.milli_cpu, n.requested.milli_cpu),
            (8000, 1500)
        );
        assert!(c.remove_pod("default/a"));
        assert!(!c.remove_pod("default/a"));
        assert_eq!(c.node("n").unwrap().pod_count, 0);
    }

    #[test]
    fn pods_seen_before_their_node_are_counted_when_it_appears() {
        let mut c = Cache::new();
        c.apply_assigned_pod(with_requests(pod("a"), 1000, 0), "late");
        c.apply_node(&api_node("late", "4"));
        assert_eq!(c.node("late").unwrap().requested.milli_cpu, 1000);
        c.delete_node("late");
        c.apply_node(&api_node("late", "4"));
        assert_eq!(c.node("late").unwrap().pod_count, 1);
    }

    #[test]
    fn assume_confirm_and_forget() {
        let now = Instant::now();
        let mut c = Cache::new();
        c.apply_node(&api_node("n", "4"));
        let p = with_requests(pod("a"), 1000, 0);
        c.assume(&p, "n", now);
        assert!(c.is_assumed(&p));
        assert_eq!(c.node("n").unwrap().requested.milli_cpu, 1000);
        c.forget(&p);
        assert_eq!(c.node("n").unwrap().requested.milli_cpu, 0);

        c.assume(&p, "n", now);
        c.apply_assigned_pod(p.clone(), "n"); // the watch confirms
        assert!(!c.is_assumed(&p));
        c.forget(&p); // a late failure report must not undo a confirmed pod
        assert_eq!(c.node("n").unwrap().pod_count, 1);
    }

    #[test]
    fn relist_drops_missing_pods_but_keeps_fresh_assumptions() {
        let t0 = Instant::now();
        let mut c = Cache::new();
        c.apply_node(&api_node("n", "4"));
        c.apply_assigned_pod(pod("old"), "n");
        c.apply_assigned_pod(pod("kept"), "n");
        c.assume(&pod("fresh"), "n", t0 + std::time::Duration::from_secs(1));
        let listed: HashSet<String> = ["default/kept".to_string()].into();
        assert!(c.retain_pods(&listed, t0));
        assert_eq!(c.node("n").unwrap().pod_count, 2);
        assert_eq!(c.node_of("default/fresh"), Some("n"));
        assert_eq!(c.node_of("default/old"), None);
    }

    #[test]
    fn replace_nodes_drops_vanished() {
        let mut c = Cache::new();
        c.apply_node(&api_node("a", "4"));
        c.apply_node(&api_node("b", "4"));
        assert!(c.replace_nodes(&[api_node("b", "4")]));
        assert_eq!(c.node_count(), 1);
        assert!(!c.replace_nodes(&[api_node("b", "4")]));
    }
}
