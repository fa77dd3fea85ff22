//! NodeAffinity: `nodeSelector` and required node affinity filter, preferred terms score.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};

use crate::scheduler::framework::{
    default_normalize, FilterPlugin, NodeInfo, PodInfo, Reason, ScorePlugin,
};

/// The only field `matchFields` may name (upstream validation allows just this one).
const NODE_NAME_FIELD: &str = "metadata.name";

#[derive(Clone, Copy, Debug)]
pub struct NodeAffinity {
    pub weight: i64,
}

impl Default for NodeAffinity {
    fn default() -> Self {
        NodeAffinity { weight: 1 }
    }
}

/// One label requirement, as upstream's `labels.Requirement.Matches`. A malformed requirement
/// (unknown operator, `Gt`/`Lt` without exactly one integer) matches nothing, which is what
/// upstream's lazy-error selector does.
fn label_requirement_matches(
    r: &NodeSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let label = labels.get(&r.key);
    match r.operator.as_str() {
        "In" => label.is_some_and(|v| values.contains(v)),
        "NotIn" => label.is_none_or(|v| !values.contains(v)),
        "Exists" => label.is_some(),
        "DoesNotExist" => label.is_none(),
        "Gt" | "Lt" => {
            let [bound] = values else { return false };
            let (Ok(bound), Some(Ok(actual))) =
                (bound.parse::<i64>(), label.map(|v| v.parse::<i64>()))
            else {
                return false;
            };
            if r.operator == "Gt" {
                actual > bound
            } else {
                actual < bound
            }
        }
        _ => false,
    }
}

fn field_requirement_matches(r: &NodeSelectorRequirement, node_name: &str) -> bool {
    if r.key != NODE_NAME_FIELD {
        return false;
    }
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => values.iter().any(|v| v == node_name),
        "NotIn" => values.iter().all(|v| v != node_name),
        _ => false,
    }
}

/// A term matches when all its expressions and fields do; an empty term matches nothing
/// (upstream: "a nil or empty term selects no objects").
pub fn node_selector_term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| label_requirement_matches(r, &node.labels))
        && fields
            .iter()
            .all(|r| field_requirement_matches(r, &node.name))
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        let selector_ok = pod
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v));
        // Terms are ORed; a required affinity with no terms matches no node.
        let affinity_ok = pod.required_node_affinity.as_ref().is_none_or(|ns| {
            ns.node_selector_terms
                .iter()
                .any(|t| node_selector_term_matches(t, node))
        });
        if selector_ok && affinity_ok {
            Ok(())
        } else {
            Err(Reason::unresolvable(
                "node(s) didn't match Pod's node affinity/selector",
            ))
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    /// Sum of the weights of the preferred terms the node matches; normalized to the best.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.preferred_node_affinity
            .iter()
            .filter(|t| t.weight != 0 && node_selector_term_matches(&t.preference, node))
            .map(|t| i64::from(t.weight))
            .sum()
    }

    fn weight(&self) -> i64 {
        self.weight
    }

    fn normalize(&self, _pod: &PodInfo, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};
    use k8s_openapi::api::core::v1::{NodeSelector, PreferredSchedulingTerm};

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn term(exprs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(exprs),
            match_fields: None,
        }
    }

    fn labelled(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
        let mut n = node(name);
        for (k, v) in labels {
            n.labels.insert(k.to_string(), v.to_string());
        }
        n
    }

    #[test]
    fn operators() {
        let n = labelled("n", &[("zone", "a"), ("cores", "8")]);
        let m = |r| node_selector_term_matches(&term(vec![r]), &n);
        assert!(m(req("zone", "In", &["a", "b"])));
        assert!(!m(req("zone", "In", &["b"])));
        assert!(!m(req("missing", "In", &["a"])));
        assert!(m(req("zone", "NotIn", &["b"])));
        assert!(!m(req("zone", "NotIn", &["a"])));
        assert!(
            m(req("missing", "NotIn", &["a"])),
            "NotIn matches an absent label"
        );
        assert!(m(req("zone", "Exists", &[])));
        assert!(!m(req("missing", "Exists", &[])));
        assert!(m(req("missing", "DoesNotExist", &[])));
        assert!(!m(req("zone", "DoesNotExist", &[])));
        assert!(m(req("cores", "Gt", &["4"])));
        assert!(!m(req("cores", "Gt", &["8"])));
        assert!(m(req("cores", "Lt", &["16"])));
        assert!(!m(req("cores", "Lt", &["8"])));
        assert!(!m(req("zone", "Gt", &["1"])), "non-integer label");
        assert!(!m(req("cores", "Gt", &["x"])), "non-integer bound");
        assert!(
            !m(req("cores", "Gt", &["1", "2"])),
            "Gt needs exactly one value"
        );
        assert!(!m(req("missing", "Lt", &["100"])));
        assert!(!m(req("zone", "Bogus", &["a"])));
    }

    #[test]
    fn match_fields_metadata_name() {
        let n = node("n1");
        let fields = |op: &str, key: &str| NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req(key, op, &["n1"])]),
        };
        assert!(node_selector_term_matches(
            &fields("In", "metadata.name"),
            &n
        ));
        assert!(!node_selector_term_matches(
            &fields("NotIn", "metadata.name"),
            &n
        ));
        assert!(!node_selector_term_matches(
            &fields("In", "metadata.uid"),
            &n
        ));
        assert!(
            !node_selector_term_matches(&NodeSelectorTerm::default(), &n),
            "empty term"
        );
    }

    #[test]
    fn filter_combines_selector_and_ored_terms() {
        let n = labelled("n", &[("zone", "a"), ("disk", "ssd")]);
        let plugin = NodeAffinity::default();
        let mut p = pod("p");
        assert!(plugin.filter(&p, &n).is_ok(), "no constraints");
        p.node_selector.insert("disk".into(), "ssd".into());
        assert!(plugin.filter(&p, &n).is_ok());
        p.required_node_affinity = Some(NodeSelector {
            node_selector_terms: vec![
                term(vec![req("zone", "In", &["b"])]),
                term(vec![req("zone", "In", &["a"]), req("disk", "Exists", &[])]),
            ],
        });
        assert!(plugin.filter(&p, &n).is_ok(), "second term matches");
        p.node_selector.insert("gpu".into(), "yes".into());
        let err = plugin.filter(&p, &n).unwrap_err();
        assert_eq!(
            err.messages(),
            ["node(s) didn't match Pod's node affinity/selector"]
        );
        p.node_selector.clear();
        p.required_node_affinity = Some(NodeSelector {
            node_selector_terms: vec![],
        });
        assert!(plugin.filter(&p, &n).is_err(), "no terms match nothing");
    }

    #[test]
    fn preferred_terms_score_normalized() {
        let plugin = NodeAffinity::default();
        let a = labelled("a", &[("zone", "a"), ("disk", "ssd")]);
        let b = labelled("b", &[("zone", "a")]);
        let c = node("c");
        let mut p = pod("p");
        p.preferred_node_affinity = vec![
            PreferredSchedulingTerm {
                weight: 30,
                preference: term(vec![req("zone", "In", &["a"])]),
            },
            PreferredSchedulingTerm {
                weight: 10,
                preference: term(vec![req("disk", "In", &["ssd"])]),
            },
        ];
        let mut scores: Vec<i64> = [&a, &b, &c].iter().map(|n| plugin.score(&p, n)).collect();
        assert_eq!(scores, [40, 30, 0]);
        plugin.normalize(&p, &mut scores);
        assert_eq!(scores, [100, 75, 0]);
    }
}
