//! Framework-level tests: the default profile end to end over cached nodes, and the
//! failure message.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Taint};
use rand::rngs::StdRng;
use rand::SeedableRng as _;

use super::framework::{FitError, Readiness, Reason, ScheduleError};
use super::plugins::default_framework;
use super::testutil::{node, pod, with_requests};

const GI: i64 = 1 << 30;

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn taint(key: &str, value: &str) -> Taint {
    Taint {
        key: key.into(),
        value: Some(value.into()),
        effect: "NoSchedule".into(),
        time_added: None,
    }
}

#[test]
fn upstream_message_format() {
    let err = FitError {
        num_nodes: 3,
        reasons: BTreeMap::from([
            ("a".to_string(), Reason::resolvable("Insufficient memory")),
            (
                "b".to_string(),
                Reason::unresolvable("node(s) had untolerated taint {node-role: x}"),
            ),
            (
                "c".to_string(),
                Reason::unresolvable("node(s) had untolerated taint {node-role: x}"),
            ),
        ]),
        preemption_never: false,
        preempting: false,
    };
    assert_eq!(
        err.to_string(),
        "0/3 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint \
         {node-role: x}. preemption: 0/3 nodes are available: 1 No preemption victims found \
         for incoming pod, 2 Preemption is not helpful for scheduling."
    );
}

#[test]
fn reasons_sort_as_strings_with_their_counts() {
    // Upstream sorts "count reason" strings, so 10 comes before 2.
    let mut reasons = BTreeMap::new();
    for i in 0..10 {
        reasons.insert(
            format!("t{i}"),
            Reason::unresolvable("node(s) were unschedulable"),
        );
    }
    for i in 0..2 {
        reasons.insert(
            format!("m{i}"),
            Reason::resolvable("Insufficient cpu").and("Insufficient memory"),
        );
    }
    let err = FitError {
        num_nodes: 12,
        reasons,
        preemption_never: true,
        preempting: false,
    };
    assert_eq!(
        err.to_string(),
        "0/12 nodes are available: 10 node(s) were unschedulable, 2 Insufficient cpu, \
         2 Insufficient memory. preemption: not eligible due to preemptionPolicy=Never."
    );
}

#[test]
fn no_nodes_at_all() {
    let fw = default_framework();
    let err = fw.schedule(&pod("p"), [], &mut rng()).unwrap_err();
    assert_eq!(err, ScheduleError::NoNodes);
    assert_eq!(err.to_string(), "no nodes available to schedule pods");
}

#[test]
fn default_profile_rejects_each_node_for_its_first_reason() {
    let fw = default_framework();
    let mut full = node("full");
    full.requested.memory = 8 * GI;
    let mut tainted = node("tainted");
    tainted.taints = vec![taint("node-role", "x")];
    let mut cordoned_and_tainted = node("cordoned");
    cordoned_and_tainted.unschedulable = true;
    cordoned_and_tainted.taints = vec![taint("node-role", "x")];
    let mut not_ready = node("not-ready");
    not_ready.readiness = Readiness::NotReady;
    let mut linux_only = node("linux");
    linux_only.runtimes = ["linux".to_string()].into();
    let p = with_requests(pod("p"), 100, GI);
    let nodes = [full, tainted, cordoned_and_tainted, not_ready, linux_only];
    let err = fw.schedule(&p, &nodes, &mut rng()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/5 nodes are available: 1 Insufficient memory, 1 node(s) didn't offer runtime \
         wasmtime, 1 node(s) had untolerated taint {node-role: x}, 1 node(s) had untolerated \
         taint {node.kubernetes.io/not-ready: }, 1 node(s) were unschedulable. preemption: \
         0/5 nodes are available: 1 No preemption victims found for incoming pod, \
         4 Preemption is not helpful for scheduling."
    );
}

#[test]
fn picks_the_best_scoring_node() {
    let fw = default_framework();
    let mut busy = node("busy");
    busy.requested.milli_cpu = 3000;
    busy.non_zero_requested.milli_cpu = 3000;
    let idle = node("idle");
    let mut soft_tainted = node("soft");
    soft_tainted.taints = vec![Taint {
        key: "spot".into(),
        value: None,
        effect: "PreferNoSchedule".into(),
        time_added: None,
    }];
    let p = with_requests(pod("p"), 500, GI);
    for seed in 0..20 {
        let d = fw
            .schedule(
                &p,
                [&busy, &idle, &soft_tainted],
                &mut StdRng::seed_from_u64(seed),
            )
            .unwrap();
        assert_eq!(d.node, "idle");
        assert_eq!(d.feasible_nodes, 3);
    }
}

#[test]
fn preferred_affinity_outweighs_nothing_else_equal() {
    use k8s_openapi::api::core::v1::PreferredSchedulingTerm;
    let fw = default_framework();
    let a = node("a");
    let mut b = node("b");
    b.labels.insert("disk".into(), "ssd".into());
    let mut p = pod("p");
    p.preferred_node_affinity = vec![PreferredSchedulingTerm {
        weight: 1,
        preference: NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: "disk".into(),
                operator: "In".into(),
                values: Some(vec!["ssd".into()]),
            }]),
            match_fields: None,
        },
    }];
    assert_eq!(fw.schedule(&p, [&a, &b], &mut rng()).unwrap().node, "b");
}

#[test]
fn ties_are_broken_at_random() {
    let fw = default_framework();
    let nodes = [node("a"), node("b"), node("c")];
    let p = pod("p");
    let mut seen = std::collections::BTreeSet::new();
    let mut r = rng();
    for _ in 0..60 {
        seen.insert(fw.schedule(&p, &nodes, &mut r).unwrap().node);
    }
    assert_eq!(
        seen.len(),
        3,
        "every equal node gets picked sometimes: {seen:?}"
    );
}

#[test]
fn daemonset_style_name_pinning() {
    let fw = default_framework();
    let mut p = pod("ds");
    p.required_node_affinity = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec!["b".into()]),
            }]),
        }],
    });
    let nodes = [node("a"), node("b")];
    assert_eq!(fw.schedule(&p, &nodes, &mut rng()).unwrap().node, "b");
    let mut full_b = node("b");
    full_b.pod_count = 110;
    let err = fw
        .schedule(&p, [&nodes[0], &full_b], &mut rng())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "0/2 nodes are available: 1 Too many pods, 1 node(s) didn't satisfy plugin(s) \
         [NodeAffinity]. preemption: 0/2 nodes are available: 1 No preemption victims found \
         for incoming pod, 1 Preemption is not helpful for scheduling."
    );
}

#[test]
fn assumed_pods_fill_nodes_between_cycles() {
    use super::cache::Cache;
    use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let api_node = Node {
        metadata: ObjectMeta {
            name: Some("only".into()),
            labels: Some([("wkube.dev/runtimes".to_string(), "wasmtime".to_string())].into()),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            allocatable: Some(
                [
                    ("cpu".to_string(), Quantity("1".into())),
                    ("memory".to_string(), Quantity("1Gi".into())),
                    ("pods".to_string(), Quantity("10".into())),
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
    };
    let mut cache = Cache::new();
    cache.apply_node(&api_node);
    let fw = default_framework();
    let first = with_requests(pod("first"), 600, 0);
    let second = with_requests(pod("second"), 600, 0);
    let d = fw.schedule(&first, cache.nodes(), &mut rng()).unwrap();
    cache.assume(&first, &d.node, tokio::time::Instant::now());
    let err = fw.schedule(&second, cache.nodes(), &mut rng()).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("0/1 nodes are available: 1 Insufficient cpu."));
    cache.forget(&first); // binding failed
    assert!(fw.schedule(&second, cache.nodes(), &mut rng()).is_ok());
}

#[test]
fn big_clusters_filter_a_sample_of_nodes_in_turn() {
    use crate::scheduler::framework::feasible_nodes_to_find;
    use crate::scheduler::testutil::{node, pod};
    use rand::SeedableRng as _;
    assert_eq!(feasible_nodes_to_find(50), 50);
    assert_eq!(feasible_nodes_to_find(150), 100, "never fewer than 100");
    assert_eq!(feasible_nodes_to_find(1000), 420);
    assert_eq!(feasible_nodes_to_find(5000), 500);
    assert_eq!(feasible_nodes_to_find(100_000), 5000);

    let nodes: Vec<_> = (0..1000).map(|i| node(&format!("n{i}"))).collect();
    let fw = crate::scheduler::default_framework();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let first = fw.schedule(&pod("a"), &nodes, &mut rng).expect("fits");
    assert_eq!(first.feasible_nodes, 420);
    // The next cycle starts where this one stopped (it wraps around the node list).
    let second = fw.schedule(&pod("b"), &nodes, &mut rng).expect("fits");
    assert_eq!(second.feasible_nodes, 420);
    let third = fw.schedule(&pod("c"), &nodes, &mut rng).expect("fits");
    assert_eq!(third.feasible_nodes, 420);
}
