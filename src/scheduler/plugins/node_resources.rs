//! NodeResourcesFit (filter) and the two resource scores, LeastAllocated and
//! BalancedAllocation, over cpu and memory with equal weights as upstream's defaults.

use crate::scheduler::framework::{
    FilterPlugin, NodeInfo, PodInfo, Reason, ScorePlugin, MAX_NODE_SCORE,
};
use crate::scheduler::resources::Resources;

/// Rejects nodes without room for the pod's requests or another pod.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    /// All shortfalls are reported (each counts in the message), in upstream's order. A
    /// request larger than the whole node is unresolvable (no eviction helps), anything else
    /// could be cured by preemption.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        let mut messages: Vec<String> = Vec::new();
        let mut unresolvable = false;
        if node.pod_count + 1 > node.allowed_pods {
            messages.push("Too many pods".into());
        }
        let want = &pod.requests;
        let have = &node.allocatable;
        let used = &node.requested;
        let mut check = |name: &str, want: i64, have: i64, used: i64| {
            if want > 0 && want > have.saturating_sub(used) {
                messages.push(format!("Insufficient {name}"));
                unresolvable |= want > have;
            }
        };
        check("cpu", want.milli_cpu, have.milli_cpu, used.milli_cpu);
        check("memory", want.memory, have.memory, used.memory);
        check(
            "ephemeral-storage",
            want.ephemeral_storage,
            have.ephemeral_storage,
            used.ephemeral_storage,
        );
        for (name, amount) in &want.scalar {
            let have = have.scalar.get(name).copied().unwrap_or(0);
            let used = used.scalar.get(name).copied().unwrap_or(0);
            check(name, *amount, have, used);
        }
        let mut messages = messages.into_iter();
        let Some(first) = messages.next() else {
            return Ok(());
        };
        let start = if unresolvable {
            Reason::unresolvable(first)
        } else {
            Reason::resolvable(first)
        };
        Err(messages.fold(start, Reason::and))
    }
}

/// (requested, allocatable) for cpu and memory once the pod is added, using the non-zero
/// requests (upstream scores with those so best-effort pods still spread).
fn cpu_memory(
    pod_requests: &Resources,
    node_requested: &Resources,
    node: &NodeInfo,
) -> [(i64, i64); 2] {
    [
        (
            node_requested
                .milli_cpu
                .saturating_add(pod_requests.milli_cpu),
            node.allocatable.milli_cpu,
        ),
        (
            node_requested.memory.saturating_add(pod_requests.memory),
            node.allocatable.memory,
        ),
    ]
}

/// Prefers the emptiest node: the mean over cpu and memory of `(free after) / allocatable`.
#[derive(Clone, Copy, Debug)]
pub struct LeastAllocated {
    pub weight: i64,
}

impl Default for LeastAllocated {
    fn default() -> Self {
        LeastAllocated { weight: 1 }
    }
}

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesLeastAllocated"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let mut total = 0;
        let mut counted = 0;
        for (requested, allocatable) in
            cpu_memory(&pod.non_zero_requests, &node.non_zero_requested, node)
        {
            if allocatable <= 0 {
                continue;
            }
            counted += 1;
            if requested <= allocatable {
                total += (allocatable - requested) * MAX_NODE_SCORE / allocatable;
            }
        }
        if counted == 0 {
            0
        } else {
            total / counted
        }
    }

    fn weight(&self) -> i64 {
        self.weight
    }
}

/// Prefers nodes whose cpu and memory would be used in the same proportion, so neither is
/// stranded: `(1 - |cpu fraction - memory fraction| / 2) * 100`. Like upstream it uses the
/// real requests, not the non-zero defaults.
#[derive(Clone, Copy, Debug)]
pub struct BalancedAllocation {
    pub weight: i64,
}

impl Default for BalancedAllocation {
    fn default() -> Self {
        BalancedAllocation { weight: 1 }
    }
}

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let fractions: Vec<f64> = cpu_memory(&pod.requests, &node.requested, node)
            .into_iter()
            .filter(|(_, allocatable)| *allocatable > 0)
            .map(|(requested, allocatable)| (requested as f64 / allocatable as f64).min(1.0))
            .collect();
        let std = match fractions.as_slice() {
            [a, b] => ((a - b) / 2.0).abs(),
            _ => 0.0,
        };
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }

    fn weight(&self) -> i64 {
        self.weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod, with_requests};

    const GI: i64 = 1 << 30;

    #[test]
    fn fits_until_allocatable_is_used_up() {
        let mut n = node("n"); // 4 cpu, 8Gi
        let p = with_requests(pod("p"), 1000, GI);
        assert!(NodeResourcesFit.filter(&p, &n).is_ok());
        n.requested.milli_cpu = 3000;
        n.requested.memory = 7 * GI;
        assert!(
            NodeResourcesFit.filter(&p, &n).is_ok(),
            "exactly full is a fit"
        );
        n.requested.milli_cpu = 3001;
        let err = NodeResourcesFit.filter(&p, &n).unwrap_err();
        assert_eq!(err.messages(), ["Insufficient cpu"]);
        assert!(!err.is_unresolvable(), "evicting pods would help");
        n.requested.memory = 7 * GI + 1;
        let err = NodeResourcesFit.filter(&p, &n).unwrap_err();
        assert_eq!(err.messages(), ["Insufficient cpu", "Insufficient memory"]);
    }

    #[test]
    fn request_above_allocatable_is_unresolvable() {
        let n = node("n");
        let p = with_requests(pod("p"), 5000, 0);
        let err = NodeResourcesFit.filter(&p, &n).unwrap_err();
        assert_eq!(err.messages(), ["Insufficient cpu"]);
        assert!(err.is_unresolvable());
    }

    #[test]
    fn pod_count_and_other_resources() {
        let mut n = node("n");
        n.allowed_pods = 2;
        n.pod_count = 2;
        let mut p = pod("p");
        let err = NodeResourcesFit.filter(&p, &n).unwrap_err();
        assert_eq!(
            err.messages(),
            ["Too many pods"],
            "even a pod without requests"
        );
        n.pod_count = 1;
        p.requests.ephemeral_storage = 1;
        p.requests.scalar.insert("example.com/gpu".into(), 1);
        let err = NodeResourcesFit.filter(&p, &n).unwrap_err();
        assert_eq!(
            err.messages(),
            [
                "Insufficient ephemeral-storage",
                "Insufficient example.com/gpu"
            ]
        );
        n.allocatable.ephemeral_storage = 10;
        n.allocatable.scalar.insert("example.com/gpu".into(), 1);
        assert!(NodeResourcesFit.filter(&p, &n).is_ok());
    }

    #[test]
    fn init_containers_count_through_pod_requests() {
        use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let c = |cpu: &str| Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![c("1")],
                init_containers: Some(vec![c("4500m")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = PodInfo::from_pod(&pod);
        let err = NodeResourcesFit.filter(&info, &node("n")).unwrap_err();
        assert_eq!(
            err.messages(),
            ["Insufficient cpu"],
            "the init container needs 4.5 cpu"
        );
    }

    #[test]
    fn least_allocated_prefers_free_nodes() {
        let p = with_requests(pod("p"), 1000, GI);
        let empty = node("a");
        let mut busy = node("b");
        busy.non_zero_requested.milli_cpu = 2000;
        busy.non_zero_requested.memory = 4 * GI;
        // empty: cpu (4000-1000)/4000 = 75, mem (8-1)/8 = 87 -> 81
        assert_eq!(LeastAllocated::default().score(&p, &empty), 81);
        // busy: cpu 25, mem 37 -> 31
        assert_eq!(LeastAllocated::default().score(&p, &busy), 31);
        busy.non_zero_requested.milli_cpu = 10_000;
        assert_eq!(
            LeastAllocated::default().score(&p, &busy),
            18,
            "overcommitted cpu scores 0"
        );
    }

    #[test]
    fn balanced_allocation_prefers_even_usage() {
        let p = with_requests(pod("p"), 2000, GI);
        let n = node("n"); // cpu 0.5, mem 0.125 -> 1 - 0.1875 = 81
        assert_eq!(BalancedAllocation::default().score(&p, &n), 81);
        let p = with_requests(pod("p"), 2000, 4 * GI);
        assert_eq!(BalancedAllocation::default().score(&p, &n), 100);
    }
}
