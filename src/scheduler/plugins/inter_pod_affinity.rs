//! InterPodAffinity: pods that must (or would like to) run in the same topology domain as
//! other pods, or away from them, for any `topologyKey` (upstream's plugin of that name).
//!
//! The filter enforces, once per cycle over every node's pods:
//! - the pod's required affinity terms: a node qualifies when its domain (its value of the
//!   term's topologyKey) holds a pod the term selects; if no pod anywhere matches and the pod
//!   matches its own terms, any node with the keys will do (the first pod of a group);
//! - the pod's required anti-affinity terms: no selected pod in the node's domain;
//! - existing pods' required anti-affinity terms that select this pod (symmetry).
//!
//! The score sums, per domain, the weights of preferred terms in both directions (and of
//! existing pods' required affinity to this pod, upstream's hardPodAffinityWeight of 1).
//!
//! Namespaces: a term covers its `namespaces` plus those its `namespaceSelector` selects, or
//! the pod's own namespace when it names neither. The scheduler does not watch Namespaces, so a
//! namespaceSelector is matched against the `kubernetes.io/metadata.name` label only (which
//! every namespace has): `{}` selects all, `{matchLabels: {kubernetes.io/metadata.name: x}}`
//! selects x; selectors on other namespace labels select nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::PodAffinityTerm;

use crate::label_selector;
use crate::scheduler::framework::{
    ClusterFilterPlugin, ClusterScorePlugin, NodeFilter, NodeInfo, NodeScorer, PodInfo, Reason,
    MAX_NODE_SCORE,
};

const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// Upstream's weight for an existing pod's *required* affinity towards the incoming pod.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

#[derive(Clone, Copy, Debug)]
pub struct InterPodAffinity {
    pub weight: i64,
}

impl Default for InterPodAffinity {
    fn default() -> Self {
        // Upstream's default profile weight.
        InterPodAffinity { weight: 2 }
    }
}

/// Whether `term`, written by a pod in `owner_ns`, selects `other`.
pub fn term_selects(term: &PodAffinityTerm, owner_ns: &str, other: &PodInfo) -> bool {
    namespaces_match(term, owner_ns, &other.namespace)
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| label_selector::matches(s, &other.labels))
}

fn namespaces_match(term: &PodAffinityTerm, owner_ns: &str, ns: &str) -> bool {
    let listed = term.namespaces.as_deref().unwrap_or_default();
    match &term.namespace_selector {
        None if listed.is_empty() => ns == owner_ns,
        None => listed.iter().any(|n| n == ns),
        Some(sel) => {
            let labels = BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), ns.to_string())]);
            listed.iter().any(|n| n == ns) || label_selector::matches(sel, &labels)
        }
    }
}

/// The (topologyKey, value) domain of a node for a key, if it has the label.
fn domain(node: &NodeInfo, key: &str) -> Option<(String, String)> {
    node.labels.get(key).map(|v| (key.to_string(), v.clone()))
}

impl ClusterFilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn pre_filter(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> Option<Box<dyn NodeFilter>> {
        let rules = &pod.pod_affinity;
        let mut check = AffinityCheck {
            existing_anti: HashSet::new(),
            affinity: vec![HashSet::new(); rules.required.len()],
            affinity_keys: rules
                .required
                .iter()
                .map(|t| t.topology_key.clone())
                .collect(),
            anti: vec![HashSet::new(); rules.required_anti.len()],
            anti_keys: rules
                .required_anti
                .iter()
                .map(|t| t.topology_key.clone())
                .collect(),
            first_of_group: false,
        };
        // Without terms of its own, only existing pods with anti-affinity can turn this pod away.
        let own_terms = !rules.required.is_empty() || !rules.required_anti.is_empty();
        for node in nodes {
            let others = if own_terms {
                &node.pods
            } else {
                &node.pods_with_affinity
            };
            for other in others {
                for term in &other.pod_affinity.required_anti {
                    if term_selects(term, &other.namespace, pod) {
                        check.existing_anti.extend(domain(node, &term.topology_key));
                    }
                }
                for (i, term) in rules.required.iter().enumerate() {
                    if term_selects(term, &pod.namespace, other) {
                        check.affinity[i].extend(domain(node, &term.topology_key));
                    }
                }
                for (i, term) in rules.required_anti.iter().enumerate() {
                    if term_selects(term, &pod.namespace, other) {
                        check.anti[i].extend(domain(node, &term.topology_key));
                    }
                }
            }
        }
        check.first_of_group = !rules.required.is_empty()
            && check.affinity.iter().all(HashSet::is_empty)
            && rules
                .required
                .iter()
                .all(|t| term_selects(t, &pod.namespace, pod));
        let nothing_to_check = check.existing_anti.is_empty()
            && rules.required.is_empty()
            && rules.required_anti.is_empty();
        (!nothing_to_check).then(|| Box::new(check) as Box<dyn NodeFilter>)
    }
}

/// The domains the incoming pod may and may not go to, computed once per cycle.
struct AffinityCheck {
    /// Domains holding a pod whose required anti-affinity selects the incoming pod.
    existing_anti: HashSet<(String, String)>,
    /// Per required affinity term: the domains holding a pod it selects.
    affinity: Vec<HashSet<(String, String)>>,
    affinity_keys: Vec<String>,
    /// Per required anti-affinity term: the domains holding a pod it selects.
    anti: Vec<HashSet<(String, String)>>,
    anti_keys: Vec<String>,
    /// No pod matches the affinity terms but the pod matches them itself.
    first_of_group: bool,
}

impl NodeFilter for AffinityCheck {
    /// In upstream's order, which decides the reason a node reports.
    fn filter(&self, node: &NodeInfo) -> Result<(), Reason> {
        let affinity_ok = self
            .affinity_keys
            .iter()
            .zip(&self.affinity)
            .all(|(key, domains)| match domain(node, key) {
                None => false,
                Some(d) => self.first_of_group || domains.contains(&d),
            });
        if !affinity_ok {
            return Err(Reason::unresolvable(
                "node(s) didn't match pod affinity rules",
            ));
        }
        let anti_hit = self
            .anti_keys
            .iter()
            .zip(&self.anti)
            .any(|(key, domains)| domain(node, key).is_some_and(|d| domains.contains(&d)));
        if anti_hit {
            return Err(Reason::resolvable(
                "node(s) didn't match pod anti-affinity rules",
            ));
        }
        let in_domain = |(k, v): &(String, String)| node.labels.get(k) == Some(v);
        if self.existing_anti.iter().any(in_domain) {
            return Err(Reason::resolvable(
                "node(s) didn't satisfy existing pods anti-affinity rules",
            ));
        }
        Ok(())
    }
}

impl ClusterScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
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
        let rules = &pod.pod_affinity;
        let mut scores: HashMap<(String, String), i64> = HashMap::new();
        let mut add = |node: &NodeInfo, key: &str, weight: i64| {
            if let Some(d) = domain(node, key) {
                *scores.entry(d).or_default() += weight;
            }
        };
        // Without preferences of its own, only existing pods' terms can score this pod.
        let own_terms = !rules.preferred.is_empty() || !rules.preferred_anti.is_empty();
        for node in all {
            let others = if own_terms {
                &node.pods
            } else {
                &node.pods_with_affinity
            };
            for other in others {
                for w in &rules.preferred {
                    if term_selects(&w.pod_affinity_term, &pod.namespace, other) {
                        add(node, &w.pod_affinity_term.topology_key, i64::from(w.weight));
                    }
                }
                for w in &rules.preferred_anti {
                    if term_selects(&w.pod_affinity_term, &pod.namespace, other) {
                        add(
                            node,
                            &w.pod_affinity_term.topology_key,
                            -i64::from(w.weight),
                        );
                    }
                }
                let theirs = &other.pod_affinity;
                for t in &theirs.required {
                    if term_selects(t, &other.namespace, pod) {
                        add(node, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
                for w in &theirs.preferred {
                    if term_selects(&w.pod_affinity_term, &other.namespace, pod) {
                        add(node, &w.pod_affinity_term.topology_key, i64::from(w.weight));
                    }
                }
                for w in &theirs.preferred_anti {
                    if term_selects(&w.pod_affinity_term, &other.namespace, pod) {
                        add(
                            node,
                            &w.pod_affinity_term.topology_key,
                            -i64::from(w.weight),
                        );
                    }
                }
            }
        }
        (!scores.is_empty()).then(|| Box::new(DomainScores(scores)) as Box<dyn NodeScorer>)
    }
}

struct DomainScores(HashMap<(String, String), i64>);

impl NodeScorer for DomainScores {
    fn score(&self, node: &NodeInfo) -> i64 {
        self.0
            .iter()
            .filter(|((k, v), _)| node.labels.get(k) == Some(v))
            .map(|(_, s)| s)
            .sum()
    }

    /// Min-max scaling, as upstream: the best node gets 100, the worst 0.
    fn normalize(&self, scores: &mut [i64]) {
        let (min, max) = scores
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), s| (lo.min(*s), hi.max(*s)));
        let spread = max - min;
        for s in scores.iter_mut() {
            *s = if spread > 0 {
                MAX_NODE_SCORE * (*s - min) / spread
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};
    use k8s_openapi::api::core::v1::WeightedPodAffinityTerm;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn term(app: &str, key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
                ..Default::default()
            }),
            topology_key: key.into(),
            ..Default::default()
        }
    }

    fn labelled(name: &str, app: &str) -> PodInfo {
        let mut p = pod(name);
        p.labels.insert("app".into(), app.into());
        p
    }

    fn zone_node(name: &str, zone: &str, pods: &[PodInfo]) -> NodeInfo {
        let mut n = node(name);
        n.labels.insert("zone".into(), zone.into());
        for p in pods {
            n.add_pod(p);
        }
        n
    }

    fn verdicts(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<bool> {
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        match InterPodAffinity::default().pre_filter(p, &refs) {
            None => vec![true; nodes.len()],
            Some(check) => nodes.iter().map(|n| check.filter(n).is_ok()).collect(),
        }
    }

    #[test]
    fn required_affinity_follows_the_selected_pods_domain() {
        let nodes = vec![
            zone_node("a", "z1", &[labelled("db", "db")]),
            zone_node("b", "z1", &[]),
            zone_node("c", "z2", &[]),
        ];
        let mut web = labelled("web", "web");
        web.pod_affinity.required = vec![term("db", "zone")];
        assert_eq!(verdicts(&web, &nodes), vec![true, true, false]);
        // Per node (hostname): only where the db pod is.
        web.pod_affinity.required = vec![term("db", "kubernetes.io/hostname")];
        assert_eq!(verdicts(&web, &nodes), vec![true, false, false]);
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere() {
        let nodes = vec![zone_node("a", "z1", &[]), node("no-zone")];
        let mut web = labelled("web-1", "web");
        web.pod_affinity.required = vec![term("web", "zone")];
        assert_eq!(verdicts(&web, &nodes), vec![true, false], "needs the key");
        let mut other = labelled("x", "x");
        other.pod_affinity.required = vec![term("web", "zone")];
        assert_eq!(verdicts(&other, &nodes), vec![false, false]);
    }

    #[test]
    fn anti_affinity_both_ways() {
        let nodes = vec![
            zone_node("a", "z1", &[labelled("web-1", "web")]),
            zone_node("b", "z2", &[]),
        ];
        let mut web = labelled("web-2", "web");
        web.pod_affinity.required_anti = vec![term("web", "kubernetes.io/hostname")];
        assert_eq!(verdicts(&web, &nodes), vec![false, true]);

        // An existing pod that refuses company keeps a plain pod off its zone.
        let mut loner = labelled("loner", "loner");
        loner.pod_affinity.required_anti = vec![term("web", "zone")];
        let nodes = [zone_node("a", "z1", &[loner]), zone_node("b", "z2", &[])];
        let err = {
            let refs: Vec<&NodeInfo> = nodes.iter().collect();
            let check = InterPodAffinity::default()
                .pre_filter(&labelled("w", "web"), &refs)
                .expect("a check");
            check.filter(&nodes[0]).unwrap_err()
        };
        assert_eq!(
            err.messages(),
            ["node(s) didn't satisfy existing pods anti-affinity rules"]
        );
        assert!(!err.is_unresolvable(), "preemption could help");
    }

    #[test]
    fn namespaces_of_a_term() {
        let mut t = term("db", "zone");
        let mut db = labelled("db", "db");
        db.namespace = "data".into();
        assert!(!term_selects(&t, "default", &db), "own namespace only");
        t.namespaces = Some(vec!["data".into()]);
        assert!(term_selects(&t, "default", &db));
        t.namespaces = None;
        t.namespace_selector = Some(LabelSelector::default());
        assert!(
            term_selects(&t, "default", &db),
            "an empty selector selects all"
        );
        t.namespace_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_string(),
                "other".to_string(),
            )])),
            ..Default::default()
        });
        assert!(!term_selects(&t, "default", &db));
    }

    #[test]
    fn preferred_terms_score_domains() {
        let nodes = [
            zone_node("a", "z1", &[labelled("cache", "cache")]),
            zone_node("b", "z2", &[]),
            zone_node("c", "z1", &[]),
        ];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let mut web = labelled("web", "web");
        web.pod_affinity.preferred = vec![WeightedPodAffinityTerm {
            weight: 10,
            pod_affinity_term: term("cache", "zone"),
        }];
        let scorer = InterPodAffinity::default()
            .pre_score(&web, &refs, &refs)
            .expect("a scorer");
        let mut scores: Vec<i64> = nodes.iter().map(|n| scorer.score(n)).collect();
        scorer.normalize(&mut scores);
        assert_eq!(scores, vec![100, 0, 100]);
        assert!(InterPodAffinity::default()
            .pre_score(&labelled("plain", "x"), &refs, &refs)
            .is_none());
    }
}
