//! Builders shared by the unit tests.

use std::collections::{BTreeMap, BTreeSet};

use super::framework::{NodeInfo, PodInfo, Readiness};
use super::resources::Resources;

/// A ready node with 4 cpu, 8Gi memory, room for 110 pods, offering wasmtime.
pub fn node(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.to_string(),
        labels: BTreeMap::from([("kubernetes.io/hostname".to_string(), name.to_string())]),
        taints: vec![],
        unschedulable: false,
        conditions: BTreeMap::from([("Ready".to_string(), "True".to_string())]),
        readiness: Readiness::Ready,
        allocatable: Resources {
            milli_cpu: 4000,
            memory: 8 << 30,
            ephemeral_storage: 0,
            scalar: BTreeMap::new(),
        },
        allowed_pods: 110,
        requested: Resources::default(),
        non_zero_requested: Resources::default(),
        pod_count: 0,
        runtimes: BTreeSet::from(["wasmtime".to_string()]),
        pods: vec![],
        pods_with_affinity: vec![],
        images: Default::default(),
        generation: super::framework::next_generation(),
    }
}

/// A wasm pod in `default` requesting nothing.
pub fn pod(name: &str) -> PodInfo {
    PodInfo {
        namespace: "default".into(),
        name: name.to_string(),
        uid: format!("uid-{name}"),
        priority: 0,
        created: None,
        requests: Resources::default(),
        non_zero_requests: Resources {
            milli_cpu: 100,
            memory: 200 << 20,
            ..Default::default()
        },
        node_selector: BTreeMap::new(),
        required_node_affinity: None,
        preferred_node_affinity: vec![],
        tolerations: vec![],
        runtime: "wasmtime".into(),
        preemption_never: false,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        scheduler_name: "default-scheduler".into(),
        pod_affinity: Default::default(),
        topology_spread: vec![],
        terminating: false,
        images: vec![],
    }
}

/// Sets cpu (millicores) and memory (bytes) requests, real and non-zero alike.
pub fn with_requests(mut p: PodInfo, milli_cpu: i64, memory: i64) -> PodInfo {
    p.requests.milli_cpu = milli_cpu;
    p.requests.memory = memory;
    p.non_zero_requests.milli_cpu = if milli_cpu == 0 { 100 } else { milli_cpu };
    p.non_zero_requests.memory = if memory == 0 { 200 << 20 } else { memory };
    p
}
