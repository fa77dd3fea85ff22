//! `metav1.LabelSelector` matching, shared by the controllers and the API (eviction).
//!
//! Two readings of an empty selector exist upstream: `LabelSelectorAsSelector` (used by policy/v1
//! PodDisruptionBudgets) selects everything, while the workload controllers refuse to select
//! everything. [`matches`] is the former, [`selects`] the latter.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

/// The labels of an object in JSON form (empty when it has none; non-string values skipped).
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the selector has no requirement at all.
pub fn is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// Whether a label set satisfies every requirement (an empty selector matches everything).
pub fn matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let got = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => got.is_some_and(|g| values.contains(g)),
                "NotIn" => got.is_none_or(|g| !values.contains(g)),
                "Exists" => got.is_some(),
                "DoesNotExist" => got.is_none(),
                // Validation refuses other operators; an unknown one selects nothing.
                _ => false,
            }
        })
}

/// As a workload controller reads a selector: an empty one selects nothing (apps/v1 and batch/v1
/// validation forbid it anyway, so this only guards against adopting every pod).
pub fn selects(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    !is_empty(sel) && matches(sel, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn empty_selector_matches_all_but_selects_nothing() {
        let l = labels(&[("app", "web")]);
        let empty = LabelSelector::default();
        assert!(matches(&empty, &l));
        assert!(!selects(&empty, &l));
    }

    #[test]
    fn labels_and_expressions_all_apply() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let sel = |ml: &[(&str, &str)], me: Vec<LabelSelectorRequirement>| LabelSelector {
            match_labels: Some(labels(ml)),
            match_expressions: Some(me),
        };
        assert!(selects(&sel(&[("app", "web")], vec![]), &l));
        assert!(!selects(&sel(&[("app", "db")], vec![]), &l));
        assert!(selects(
            &sel(&[], vec![req("tier", "In", &["front", "back"])]),
            &l
        ));
        assert!(!selects(
            &sel(&[], vec![req("tier", "NotIn", &["front"])]),
            &l
        ));
        assert!(selects(
            &sel(&[], vec![req("zone", "DoesNotExist", &[])]),
            &l
        ));
        assert!(!selects(
            &sel(&[("app", "web")], vec![req("zone", "Exists", &[])]),
            &l
        ));
        assert!(!selects(&sel(&[], vec![req("app", "Near", &["web"])]), &l));
    }
}
