//! PodTopologySpread: `topologySpreadConstraints` keep the pods a selector picks evenly spread
//! over the domains of a topology key (upstream's plugin of that name).
//!
//! For each constraint the matching pods of the pod's namespace are counted per domain, over
//! the nodes that count: those with the key, that pass the pod's node affinity and selector
//! (`nodeAffinityPolicy: Honor`, the default) and, with `nodeTaintsPolicy: Honor`, whose
//! taints the pod tolerates. Every such domain counts, empty ones included, so the global
//! minimum sees them; with fewer domains than `minDomains` the minimum is 0.
//! `DoNotSchedule` constraints filter: placing the pod must not make its domain's count exceed
//! the minimum by more than `maxSkew`. `ScheduleAnyway` constraints score: fewer matching pods
//! in the node's domain is better, each constraint weighted by log(domains + 2) as upstream.
//! `matchLabelKeys` adds the pod's own values of those labels to the selector.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::label_selector;
use crate::scheduler::framework::{
    ClusterFilterPlugin, ClusterScorePlugin, FilterPlugin as _, NodeFilter, NodeInfo, NodeScorer,
    PodInfo, Reason, MAX_NODE_SCORE,
};

use super::{NodeAffinity, TaintToleration};

#[derive(Clone, Copy, Debug)]
pub struct PodTopologySpread {
    pub weight: i64,
}

impl Default for PodTopologySpread {
    fn default() -> Self {
        // Upstream's default profile weight.
        PodTopologySpread { weight: 2 }
    }
}

/// One constraint, resolved for the pod being scheduled.
struct Spread {
    key: String,
    max_skew: i64,
    min_domains: usize,
    selector: Option<LabelSelector>,
    honor_affinity: bool,
    honor_taints: bool,
}

impl Spread {
    fn of(c: &TopologySpreadConstraint, pod: &PodInfo) -> Spread {
        // matchLabelKeys: the pod's values of those keys become `In` requirements.
        let selector = c.label_selector.clone().map(|mut sel| {
            let extra = c.match_label_keys.iter().flatten().filter_map(|k| {
                pod.labels.get(k).map(|v| LabelSelectorRequirement {
                    key: k.clone(),
                    operator: "In".into(),
                    values: Some(vec![v.clone()]),
                })
            });
            sel.match_expressions
                .get_or_insert_with(Vec::new)
                .extend(extra);
            sel
        });
        Spread {
            key: c.topology_key.clone(),
            max_skew: i64::from(c.max_skew.max(1)),
            min_domains: c.min_domains.unwrap_or(1).max(1) as usize,
            selector,
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// A null selector selects no pod (so every count is 0).
    fn selects(&self, pod: &PodInfo) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| label_selector::matches(s, &pod.labels))
    }

    fn counts_node(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        node.labels.contains_key(&self.key)
            && (!self.honor_affinity || NodeAffinity::default().filter(pod, node).is_ok())
            && (!self.honor_taints || TaintToleration::default().filter(pod, node).is_ok())
    }

    /// Matching pods per domain value, over the nodes that count.
    fn count(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> HashMap<String, i64> {
        let mut counts: HashMap<String, i64> = HashMap::new();
        for node in nodes.iter().filter(|n| self.counts_node(pod, n)) {
            let matching = node
                .pods
                .iter()
                .filter(|p| p.namespace == pod.namespace && !p.terminating && self.selects(p))
                .count() as i64;
            if let Some(value) = node.labels.get(&self.key) {
                *counts.entry(value.clone()).or_default() += matching;
            }
        }
        counts
    }
}

fn constraints<'a>(
    pod: &'a PodInfo,
    when: &'a str,
) -> impl Iterator<Item = &'a TopologySpreadConstraint> + 'a {
    pod.topology_spread
        .iter()
        .filter(move |c| c.when_unsatisfiable == when)
}

impl ClusterFilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn pre_filter(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> Option<Box<dyn NodeFilter>> {
        let checks: Vec<SkewCheck> = constraints(pod, "DoNotSchedule")
            .map(|c| {
                let spread = Spread::of(c, pod);
                let counts = spread.count(pod, nodes);
                let min = if counts.len() < spread.min_domains {
                    0
                } else {
                    counts.values().copied().min().unwrap_or(0)
                };
                SkewCheck {
                    self_match: i64::from(spread.selects(pod)),
                    spread,
                    counts,
                    min,
                }
            })
            .collect();
        (!checks.is_empty()).then(|| Box::new(SkewChecks(checks)) as Box<dyn NodeFilter>)
    }
}

struct SkewCheck {
    spread: Spread,
    counts: HashMap<String, i64>,
    min: i64,
    /// 1 when the pod itself is one of the pods being spread.
    self_match: i64,
}

struct SkewChecks(Vec<SkewCheck>);

impl NodeFilter for SkewChecks {
    fn filter(&self, node: &NodeInfo) -> Result<(), Reason> {
        for c in &self.0 {
            let Some(value) = node.labels.get(&c.spread.key) else {
                return Err(Reason::unresolvable(
                    "node(s) didn't match pod topology spread constraints (missing required label)",
                ));
            };
            let here = c.counts.get(value).copied().unwrap_or(0);
            if here + c.self_match - c.min > c.spread.max_skew {
                return Err(Reason::resolvable(
                    "node(s) didn't match pod topology spread constraints",
                ));
            }
        }
        Ok(())
    }
}

impl ClusterScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn weight(&self) -> i64 {
        self.weight
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        all: &[&NodeInfo],
        _feasible: &[&NodeInfo],
    ) -> Option<Box<dyn NodeScorer>> {
        let soft: Vec<(Spread, HashMap<String, i64>, f64)> = constraints(pod, "ScheduleAnyway")
            .map(|c| {
                let spread = Spread::of(c, pod);
                let counts = spread.count(pod, all);
                let weight = ((counts.len() + 2) as f64).ln();
                (spread, counts, weight)
            })
            .collect();
        (!soft.is_empty()).then(|| Box::new(SpreadScores(soft)) as Box<dyn NodeScorer>)
    }
}

struct SpreadScores(Vec<(Spread, HashMap<String, i64>, f64)>);

/// Fixed-point factor so the log weights survive integer scores.
const SCALE: f64 = 1000.0;

impl NodeScorer for SpreadScores {
    /// Weighted matching pods in the node's domains (lower is better); -1 for a node missing a
    /// key, which then scores 0 after normalizing.
    fn score(&self, node: &NodeInfo) -> i64 {
        let mut total = 0.0;
        for (spread, counts, weight) in &self.0 {
            let Some(value) = node.labels.get(&spread.key) else {
                return -1;
            };
            total += counts.get(value).copied().unwrap_or(0) as f64 * weight;
        }
        (total * SCALE).round() as i64
    }

    /// Upstream's normalization: `100 * (max + min - s) / max` over the nodes with the keys.
    fn normalize(&self, scores: &mut [i64]) {
        let valid = scores.iter().copied().filter(|s| *s >= 0);
        let (min, max) = valid.fold((i64::MAX, 0), |(lo, hi), s| (lo.min(s), hi.max(s)));
        for s in scores.iter_mut() {
            *s = match *s {
                s if s < 0 => 0,
                _ if max == 0 => MAX_NODE_SCORE,
                s => MAX_NODE_SCORE * (max + min - s) / max,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};
    use std::collections::BTreeMap;

    fn web(name: &str) -> PodInfo {
        let mut p = pod(name);
        p.labels.insert("app".into(), "web".into());
        p
    }

    fn zone_node(name: &str, zone: &str, pods: usize) -> NodeInfo {
        let mut n = node(name);
        n.labels.insert("zone".into(), zone.into());
        for i in 0..pods {
            n.add_pod(&web(&format!("{name}-{i}")));
        }
        n
    }

    fn spread(when: &str, max_skew: i32) -> TopologySpreadConstraint {
        TopologySpreadConstraint {
            max_skew,
            topology_key: "zone".into(),
            when_unsatisfiable: when.into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn verdicts(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<bool> {
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        match PodTopologySpread::default().pre_filter(p, &refs) {
            None => vec![true; nodes.len()],
            Some(check) => nodes.iter().map(|n| check.filter(n).is_ok()).collect(),
        }
    }

    #[test]
    fn max_skew_keeps_zones_even() {
        let nodes = vec![
            zone_node("a", "z1", 2),
            zone_node("b", "z2", 1),
            zone_node("c", "z3", 1),
            node("no-zone"),
        ];
        let mut p = web("new");
        p.topology_spread = vec![spread("DoNotSchedule", 1)];
        assert_eq!(verdicts(&p, &nodes), vec![false, true, true, false]);
        p.topology_spread = vec![spread("DoNotSchedule", 2)];
        assert_eq!(verdicts(&p, &nodes), vec![true, true, true, false]);
    }

    #[test]
    fn empty_domains_and_min_domains_lower_the_minimum() {
        let nodes = vec![zone_node("a", "z1", 1), zone_node("b", "z2", 0)];
        let mut p = web("new");
        p.topology_spread = vec![spread("DoNotSchedule", 1)];
        assert_eq!(verdicts(&p, &nodes), vec![false, true], "z2 is empty");

        let nodes = vec![zone_node("a", "z1", 1), zone_node("b", "z2", 1)];
        let mut c = spread("DoNotSchedule", 1);
        c.min_domains = Some(3);
        p.topology_spread = vec![c];
        assert_eq!(
            verdicts(&p, &nodes),
            vec![false, false],
            "two domains < minDomains 3: the minimum is 0"
        );
    }

    #[test]
    fn node_affinity_policy_decides_which_nodes_count() {
        let mut excluded = zone_node("b", "z2", 0);
        excluded.labels.insert("pool".into(), "gpu".into());
        let mut fine = zone_node("a", "z1", 1);
        fine.labels.insert("pool".into(), "cpu".into());
        let nodes = vec![fine, excluded];
        let mut p = web("new");
        p.node_selector.insert("pool".into(), "cpu".into());
        p.topology_spread = vec![spread("DoNotSchedule", 1)];
        // Honor (default): the gpu zone does not count, so z1 is the minimum.
        assert!(verdicts(&p, &nodes)[0]);
        let mut ignore = spread("DoNotSchedule", 1);
        ignore.node_affinity_policy = Some("Ignore".into());
        p.topology_spread = vec![ignore];
        assert!(!verdicts(&p, &nodes)[0]);
    }

    #[test]
    fn match_label_keys_narrow_the_selector() {
        let mut old = zone_node("a", "z1", 0);
        let mut v1 = web("old");
        v1.labels.insert("pod-template-hash".into(), "v1".into());
        old.add_pod(&v1);
        old.add_pod(&v1.clone());
        let nodes = vec![old, zone_node("b", "z2", 0)];
        let mut p = web("new");
        p.labels.insert("pod-template-hash".into(), "v2".into());
        let mut c = spread("DoNotSchedule", 1);
        c.match_label_keys = Some(vec!["pod-template-hash".into()]);
        p.topology_spread = vec![c];
        assert_eq!(
            verdicts(&p, &nodes),
            vec![true, true],
            "v1 pods do not count"
        );
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let nodes = [
            zone_node("a", "z1", 3),
            zone_node("b", "z2", 0),
            node("no-zone"),
        ];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let mut p = web("new");
        p.topology_spread = vec![spread("ScheduleAnyway", 1)];
        let scorer = PodTopologySpread::default()
            .pre_score(&p, &refs, &refs)
            .expect("a scorer");
        let mut scores: Vec<i64> = nodes.iter().map(|n| scorer.score(n)).collect();
        scorer.normalize(&mut scores);
        assert!(scores[1] > scores[0], "{scores:?}");
        assert_eq!(scores[2], 0);
    }
}
