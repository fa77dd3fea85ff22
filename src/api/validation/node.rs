//! node.k8s.io/v1 RuntimeClasses (upstream's `pkg/apis/node/validation`).

use serde_json::Value;

use super::json::{arr_of, obj_of, present, str_of, sub};
use super::meta::{validate_labels, FIELD_IMMUTABLE};
use super::names::is_dns1123_label;
use super::pod::{validate_resource_entry, validate_tolerations};
use super::render::quote;
use super::{FieldError, Path};

/// The handler names a runtime the way a CRI handler is named (a DNS label); the pod overhead
/// is a list of non-negative quantities; the scheduling constraints are a valid node selector
/// and valid tolerations.
pub(crate) fn validate_runtime_class(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let handler = str_of(obj, "handler");
    for msg in is_dns1123_label(handler) {
        errs.push(FieldError::invalid(
            &Path::new("handler"),
            quote(handler),
            &msg,
        ));
    }
    let pod_fixed = Path::new("overhead").child("podFixed");
    for (name, quantity) in obj_of(sub(obj, &["overhead"]), "podFixed")
        .into_iter()
        .flatten()
    {
        errs.extend(validate_resource_entry(name, quantity, &pod_fixed.key(name)).1);
    }
    let scheduling = sub(obj, &["scheduling"]);
    let path = Path::new("scheduling");
    errs.extend(validate_labels(
        present(scheduling, "nodeSelector"),
        &path.child("nodeSelector"),
    ));
    errs.extend(validate_tolerations(
        arr_of(scheduling, "tolerations"),
        &path.child("tolerations"),
    ));
    errs
}

/// The handler is fixed once created: pods already admitted were placed for it.
pub(crate) fn validate_runtime_class_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let (before, after) = (str_of(old, "handler"), str_of(new, "handler"));
    if before == after {
        return Vec::new();
    }
    vec![FieldError::invalid(
        &Path::new("handler"),
        quote(after),
        FIELD_IMMUTABLE,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(|e| e.field.clone()).collect()
    }

    #[test]
    fn handler_overhead_and_scheduling_are_checked() {
        let ok = json!({"metadata": {"name": "linux"}, "handler": "linux",
            "overhead": {"podFixed": {"cpu": "100m", "memory": "16Mi"}},
            "scheduling": {"nodeSelector": {"kubernetes.io/os": "linux"},
                           "tolerations": [{"key": "k", "operator": "Exists"}]}});
        assert!(validate_runtime_class(&ok).is_empty());
        let bad = json!({"metadata": {"name": "x"}, "handler": "Not_A_Label",
            "overhead": {"podFixed": {"cpu": "-1"}},
            "scheduling": {"nodeSelector": {"bad key!": "v"},
                           "tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}});
        assert_eq!(
            fields(&validate_runtime_class(&bad)),
            [
                "handler",
                "overhead.podFixed[cpu]",
                "scheduling.nodeSelector",
                "scheduling.tolerations[0].operator"
            ]
        );
    }

    #[test]
    fn handler_is_immutable() {
        let old = json!({"handler": "linux"});
        assert!(validate_runtime_class_update(&old, &old).is_empty());
        let errs = validate_runtime_class_update(&old, &json!({"handler": "wasmtime"}));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].detail, FIELD_IMMUTABLE);
    }
}
