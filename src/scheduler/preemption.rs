//! DefaultPreemption: when a pod fits nowhere, find the node where evicting pods of lower
//! priority makes room at the least cost, as upstream's post-filter does.
//!
//! Only nodes that failed for a reason eviction can cure (resources, anti-affinity) are tried,
//! at most [`MAX_CANDIDATE_NODES`] of them. On each, every lower-priority pod is first removed
//! and the pod must then pass all filters; then victims are given back one by one, most
//! important first and those a PodDisruptionBudget protects before the others, as long as the
//! pod still fits. Among the nodes that work, the choice is upstream's: fewest budget
//! violations, then the lowest highest victim priority, the lowest priority sum, the fewest
//! victims.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use super::framework::{FitError, Framework, NodeInfo, PodInfo};
use crate::label_selector;

/// How many nodes are simulated at most (upstream samples 10% of nodes, at least 100).
pub const MAX_CANDIDATE_NODES: usize = 100;

/// A node and the pods to evict from it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    /// Victims whose eviction goes beyond what their budget allows.
    pub budget_violations: usize,
}

impl Candidate {
    fn rank(&self) -> (usize, i32, i64, usize) {
        let highest = self
            .victims
            .iter()
            .map(|v| v.priority)
            .max()
            .unwrap_or(i32::MIN);
        let sum = self.victims.iter().map(|v| i64::from(v.priority)).sum();
        (self.budget_violations, highest, sum, self.victims.len())
    }
}

/// The disruptions each budget still allows, to count violations.
#[derive(Debug, Default, Clone)]
pub struct Budgets {
    budgets: Vec<(String, PodDisruptionBudget)>,
}

impl Budgets {
    pub fn new(budgets: impl IntoIterator<Item = PodDisruptionBudget>) -> Self {
        Budgets {
            budgets: budgets
                .into_iter()
                .map(|b| (b.metadata.namespace.clone().unwrap_or_default(), b))
                .collect(),
        }
    }

    /// Splits victims into (protected by a budget with no disruption left, the others),
    /// spending the allowed disruptions in order.
    fn split(&self, victims: &[Arc<PodInfo>]) -> (Vec<Arc<PodInfo>>, Vec<Arc<PodInfo>>) {
        let mut left: HashMap<usize, i32> = HashMap::new();
        let (mut protected, mut free) = (Vec::new(), Vec::new());
        for v in victims {
            let mut violates = false;
            for (i, (ns, b)) in self.budgets.iter().enumerate() {
                let selects = *ns == v.namespace
                    && b.spec
                        .as_ref()
                        .and_then(|s| s.selector.as_ref())
                        .is_some_and(|sel| label_selector::matches(sel, &v.labels));
                if selects {
                    let allowed = left
                        .entry(i)
                        .or_insert_with(|| b.status.as_ref().map_or(0, |s| s.disruptions_allowed));
                    *allowed -= 1;
                    violates |= *allowed < 0;
                }
            }
            if violates {
                protected.push(v.clone());
            } else {
                free.push(v.clone());
            }
        }
        (protected, free)
    }
}

/// The best node to preempt on, if evicting lower-priority pods anywhere makes the pod fit.
pub fn find_candidate(
    framework: &Framework,
    pod: &PodInfo,
    nodes: &[&NodeInfo],
    fit: &FitError,
    budgets: &Budgets,
) -> Option<Candidate> {
    if pod.preemption_never {
        return None;
    }
    let curable = nodes
        .iter()
        .filter(|n| {
            fit.reasons
                .get(&n.name)
                .is_some_and(|r| !r.is_unresolvable())
        })
        .take(MAX_CANDIDATE_NODES);
    curable
        .filter_map(|node| victims_on(framework, pod, node, nodes, budgets))
        .min_by_key(Candidate::rank)
}

/// The fewest pods to evict from `node` for the pod to fit, if evicting can work there.
fn victims_on(
    framework: &Framework,
    pod: &PodInfo,
    node: &NodeInfo,
    all: &[&NodeInfo],
    budgets: &Budgets,
) -> Option<Candidate> {
    let mut lower: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority && !p.terminating)
        .cloned()
        .collect();
    if lower.is_empty() {
        return None;
    }
    let mut trial = node.clone();
    for v in &lower {
        trial.remove_pod(v);
    }
    if !fits(framework, pod, &trial, all) {
        return None;
    }
    // Most important first: they are the first given back.
    lower.sort_by_key(|p| std::cmp::Reverse(p.priority));
    let (protected, free) = budgets.split(&lower);
    let mut victims = Vec::new();
    let mut budget_violations = 0;
    for (group, violating) in [(protected, true), (free, false)] {
        for v in group {
            trial.add_pod(&v);
            if !fits(framework, pod, &trial, all) {
                trial.remove_pod(&v);
                budget_violations += usize::from(violating);
                victims.push(v);
            }
        }
    }
    Some(Candidate {
        node: node.name.clone(),
        victims,
        budget_violations,
    })
}

/// Whether the pod passes every filter on `trial`, which stands in for its node in `all`.
fn fits(framework: &Framework, pod: &PodInfo, trial: &NodeInfo, all: &[&NodeInfo]) -> bool {
    let cluster: Vec<&NodeInfo> = all
        .iter()
        .map(|n| if n.name == trial.name { trial } else { *n })
        .collect();
    framework.fits(pod, trial, &cluster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::default_framework;
    use crate::scheduler::testutil::{node, pod, with_requests};
    use rand::SeedableRng as _;

    fn prio(name: &str, priority: i32, cpu: i64) -> PodInfo {
        let mut p = with_requests(pod(name), cpu, 0);
        p.priority = priority;
        p.labels
            .insert("app".into(), name.trim_end_matches(char::is_numeric).into());
        p
    }

    fn full_node(name: &str, pods: &[PodInfo]) -> NodeInfo {
        let mut n = node(name);
        for p in pods {
            n.add_pod(p);
        }
        n
    }

    fn fit_error(fw: &Framework, p: &PodInfo, nodes: &[&NodeInfo]) -> FitError {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        match fw.schedule(p, nodes.iter().copied(), &mut rng) {
            Err(crate::scheduler::framework::ScheduleError::Fit(e)) => e,
            other => panic!("expected a fit error, got {other:?}"),
        }
    }

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        let fw = default_framework();
        // 4 cpu nodes: a holds two low pods (1.5 + 2), b one medium pod (3.5).
        let a = full_node("a", &[prio("low1", 1, 1500), prio("low2", 1, 2000)]);
        let b = full_node("b", &[prio("mid1", 50, 3500)]);
        let nodes = [&a, &b];
        let high = prio("high", 100, 2000);
        let fit = fit_error(&fw, &high, &nodes);
        let c = find_candidate(&fw, &high, &nodes, &fit, &Budgets::default()).expect("a candidate");
        // On a, evicting low2 alone frees enough (1.5 + 2 left = fits after removing 2).
        assert_eq!(c.node, "a");
        assert_eq!(c.victims.len(), 1, "{:?}", c.victims);
        assert_eq!(c.victims[0].priority, 1);
    }

    #[test]
    fn equal_or_higher_priority_pods_are_never_victims() {
        let fw = default_framework();
        let a = full_node("a", &[prio("peer1", 100, 3500)]);
        let nodes = [&a];
        let p = prio("new", 100, 2000);
        let fit = fit_error(&fw, &p, &nodes);
        assert!(find_candidate(&fw, &p, &nodes, &fit, &Budgets::default()).is_none());
        let mut never = prio("polite", 1000, 2000);
        never.preemption_never = true;
        let fit = fit_error(&fw, &never, &nodes);
        assert!(find_candidate(&fw, &never, &nodes, &fit, &Budgets::default()).is_none());
    }

    #[test]
    fn budgets_steer_the_choice() {
        let fw = default_framework();
        let a = full_node("a", &[prio("guarded1", 1, 3500)]);
        let b = full_node("b", &[prio("free1", 1, 3500)]);
        let nodes = [&a, &b];
        let high = prio("high", 100, 2000);
        let fit = fit_error(&fw, &high, &nodes);
        let budget: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "guard", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "guarded"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1},
        }))
        .unwrap();
        let c =
            find_candidate(&fw, &high, &nodes, &fit, &Budgets::new([budget])).expect("a candidate");
        assert_eq!(c.node, "b", "the unguarded pod goes");
        assert_eq!(c.budget_violations, 0);
    }
}
