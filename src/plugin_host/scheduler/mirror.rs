//! What a plugin instance has been told about the cluster, and the delta that brings it up to
//! date with the scheduler's current nodes.
//!
//! Every [`NodeInfo`] version carries a process-unique `generation`, so an unchanged cluster
//! costs one integer comparison per node, and a changed node is found without comparing its
//! contents; its pods are compared by `Arc` identity.

use std::collections::HashMap;
use std::sync::Arc;

use super::types::{BoundPod, Delta, NodeView};
use crate::scheduler::framework::{NodeInfo, PodInfo};

struct NodeEntry {
    handle: u32,
    generation: u64,
    /// Keys of the pods sent as bound here.
    pods: Vec<String>,
    /// The diff pass that last saw this node.
    seen: u64,
}

struct PodEntry {
    handle: u32,
    node: u32,
    info: Arc<PodInfo>,
}

/// Hands out small integers, reusing freed ones.
#[derive(Default)]
struct Handles {
    free: Vec<u32>,
    next: u32,
}

impl Handles {
    fn take(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }

    fn give(&mut self, h: u32) {
        self.free.push(h);
    }
}

#[derive(Default)]
pub(crate) struct Mirror {
    /// Generations of the nodes of the last diff, in their order (the fast path).
    order: Vec<u64>,
    nodes: HashMap<String, NodeEntry>,
    /// Node names by handle.
    names: Vec<String>,
    pods: HashMap<String, PodEntry>,
    node_handles: Handles,
    pod_handles: Handles,
    pass: u64,
    synced: bool,
}

fn pod_key(p: &PodInfo) -> String {
    if p.uid.is_empty() {
        p.key()
    } else {
        p.uid.clone()
    }
}

impl Mirror {
    pub(crate) fn handle(&self, node: &str) -> Option<u32> {
        self.nodes.get(node).map(|e| e.handle)
    }

    pub(crate) fn name(&self, handle: u32) -> Option<&str> {
        self.names.get(handle as usize).map(String::as_str)
    }

    /// The changes since the last call (everything, with `reset`, the first time).
    pub(crate) fn diff(&mut self, all: &[&NodeInfo]) -> Delta {
        let mut delta = Delta {
            reset: !self.synced,
            ..Delta::default()
        };
        self.synced = true;
        let unchanged = self.order.len() == all.len()
            && all.iter().zip(&self.order).all(|(n, g)| n.generation == *g);
        if unchanged {
            return delta;
        }
        self.pass += 1;
        for node in all {
            self.visit(node, &mut delta);
        }
        let pass = self.pass;
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, e)| e.seen != pass)
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(e) = self.nodes.remove(&name) {
                self.drop_pods(&e.pods, e.handle, &[], &mut delta);
                delta.nodes_removed.push(e.handle);
                self.node_handles.give(e.handle);
            }
        }
        self.order = all.iter().map(|n| n.generation).collect();
        delta
    }

    fn visit(&mut self, node: &NodeInfo, delta: &mut Delta) {
        let pass = self.pass;
        let (handle, old_pods) = match self.nodes.get_mut(&node.name) {
            Some(e) => {
                e.seen = pass;
                if e.generation == node.generation {
                    return;
                }
                e.generation = node.generation;
                (e.handle, std::mem::take(&mut e.pods))
            }
            None => {
                let handle = self.node_handles.take();
                let slot = handle as usize;
                if self.names.len() <= slot {
                    self.names.resize(slot + 1, String::new());
                }
                self.names[slot] = node.name.clone();
                self.nodes.insert(
                    node.name.clone(),
                    NodeEntry {
                        handle,
                        generation: node.generation,
                        pods: Vec::new(),
                        seen: pass,
                    },
                );
                (handle, Vec::new())
            }
        };
        delta.nodes.push(NodeView::of(handle, node));
        let keys: Vec<String> = node.pods.iter().map(|p| pod_key(p)).collect();
        for (pod, key) in node.pods.iter().zip(&keys) {
            self.upsert_pod(pod, key, handle, delta);
        }
        self.drop_pods(&old_pods, handle, &keys, delta);
        if let Some(e) = self.nodes.get_mut(&node.name) {
            e.pods = keys;
        }
    }

    fn upsert_pod(&mut self, pod: &Arc<PodInfo>, key: &str, node: u32, delta: &mut Delta) {
        let handle = match self.pods.get_mut(key) {
            Some(e) if e.node == node && Arc::ptr_eq(&e.info, pod) => return,
            Some(e) => {
                e.node = node;
                e.info = pod.clone();
                e.handle
            }
            None => {
                let handle = self.pod_handles.take();
                self.pods.insert(
                    key.to_string(),
                    PodEntry {
                        handle,
                        node,
                        info: pod.clone(),
                    },
                );
                handle
            }
        };
        delta.pods.push(BoundPod {
            handle,
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            labels: pod.labels.clone(),
            node,
        });
    }

    /// Removes the pods that were on `node` and are not in `kept`, unless they have moved
    /// to a node already visited in this pass.
    fn drop_pods(&mut self, old: &[String], node: u32, kept: &[String], delta: &mut Delta) {
        for key in old {
            if kept.contains(key) {
                continue;
            }
            if self.pods.get(key).is_some_and(|e| e.node == node) {
                if let Some(e) = self.pods.remove(key) {
                    delta.pods_removed.push(e.handle);
                    self.pod_handles.give(e.handle);
                }
            }
        }
    }
}
