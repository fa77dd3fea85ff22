//! What a plugin instance has been told about the cluster, and the delta that brings it up to
//! date with the scheduler's current nodes.
//!
//! Every [`NodeInfo`] version carries a process-unique `generation`, so an unchanged cluster
//! costs one integer comparison per node, and a changed node is found without comparing its
//! contents; its pods are compared by `Arc` identity.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
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

/// Hashes the address of a node: one multiplication (the keys are distinct addresses).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[derive(Default)]
pub(crate) struct Mirror {
    /// (generation, handle) of the nodes of the last diff, in their order: an unchanged
    /// cluster, or one where only some nodes changed in place, needs no lookups by name.
    order: Vec<(u64, u32)>,
    /// Addresses of the last diff's nodes and their handles: candidates are those same
    /// values, so mapping them costs no string hashing.
    addrs: Vec<usize>,
    by_addr: HashMap<usize, u32, BuildHasherDefault<AddrHasher>>,
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
    /// The handle of a node of the last diff (by address), or of any node by name (a
    /// preemption what-if copy, say).
    pub(crate) fn handle(&self, node: &NodeInfo) -> Option<u32> {
        let addr = std::ptr::from_ref(node) as usize;
        self.by_addr
            .get(&addr)
            .copied()
            .or_else(|| self.nodes.get(&node.name).map(|e| e.handle))
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
        if !self.diff_in_place(all, &mut delta) {
            self.diff_all(all, &mut delta);
        }
        self.order = all
            .iter()
            .map(|n| {
                (
                    n.generation,
                    self.nodes.get(&n.name).map_or(0, |e| e.handle),
                )
            })
            .collect();
        self.index_addresses(all);
        delta
    }

    /// The common case: the same nodes in the same order, some changed. Returns false (and
    /// sends nothing) when the nodes themselves differ.
    fn diff_in_place(&mut self, all: &[&NodeInfo], delta: &mut Delta) -> bool {
        if self.order.len() != all.len() {
            return false;
        }
        let mut changed = Vec::new();
        for (i, (node, (generation, handle))) in all.iter().zip(&self.order).enumerate() {
            if node.generation == *generation {
                continue;
            }
            if self.nodes.get(&node.name).map(|e| e.handle) != Some(*handle) {
                return false;
            }
            changed.push(i);
        }
        // No node came or went, so nothing to sweep: only the changed ones are visited.
        for i in changed {
            self.visit(all[i], delta);
        }
        true
    }

    fn diff_all(&mut self, all: &[&NodeInfo], delta: &mut Delta) {
        self.pass += 1;
        for node in all {
            self.visit(node, delta);
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
                self.drop_pods(&e.pods, e.handle, &[], delta);
                delta.nodes_removed.push(e.handle);
                self.node_handles.give(e.handle);
            }
        }
    }

    /// Rebuilds the address index when the nodes moved (rarely: the cache keeps them put).
    fn index_addresses(&mut self, all: &[&NodeInfo]) {
        let same = self.addrs.len() == all.len()
            && all
                .iter()
                .zip(&self.addrs)
                .all(|(n, a)| std::ptr::from_ref(*n) as usize == *a);
        if same {
            return;
        }
        self.addrs = all
            .iter()
            .map(|n| std::ptr::from_ref(*n) as usize)
            .collect();
        self.by_addr.clear();
        for (addr, (_, handle)) in self.addrs.iter().zip(&self.order) {
            self.by_addr.insert(*addr, *handle);
        }
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
