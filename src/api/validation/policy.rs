//! policy/v1 PodDisruptionBudgets (upstream's `pkg/apis/policy/validation`).

use serde_json::Value;

use super::json::{opt_str, present, sub};
use super::meta::validate_label_selector;
use super::render::quote;
use super::workloads::{not_more_than_100_percent, validate_int_or_percent};
use super::{FieldError, Path};

const UNHEALTHY_POD_EVICTION_POLICIES: &[&str] = &["IfHealthyBudget", "AlwaysAllow"];

/// A budget names at most one bound, each a count or a percentage, over a valid selector.
pub(crate) fn validate_pod_disruption_budget(obj: &Value) -> Vec<FieldError> {
    let spec = sub(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let min = present(spec, "minAvailable");
    let max = present(spec, "maxUnavailable");
    if min.is_some() && max.is_some() {
        errs.push(FieldError::invalid(
            &path,
            String::new(),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (key, value) in [("minAvailable", min), ("maxUnavailable", max)] {
        let p = path.child(key);
        errs.extend(validate_int_or_percent(value, &p));
        errs.extend(not_more_than_100_percent(value, &p));
    }
    if let Some(sel) = present(spec, "selector") {
        errs.extend(validate_label_selector(sel, &path.child("selector")));
    }
    if let Some(policy) = opt_str(spec, "unhealthyPodEvictionPolicy") {
        if !UNHEALTHY_POD_EVICTION_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                &path.child("unhealthyPodEvictionPolicy"),
                quote(policy),
                UNHEALTHY_POD_EVICTION_POLICIES,
            ));
        }
    }
    errs
}
