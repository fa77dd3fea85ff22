//! ObjectMeta, labels, annotations and label selectors (upstream's
//! `apimachinery/pkg/api/validation/objectmeta.go` and `apis/meta/v1/validation`).

use super::json::{arr_of, at, obj_of, str_of, string_map};
use super::names::{is_dns1123_label, is_label_value, is_qualified_name, validate_name};
use super::render::{json, quote};
use super::{FieldError, NameRule, Path};
use serde_json::Value;

/// Upstream's limit on the summed size of all annotation keys and values.
pub(crate) const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Upstream's `FieldImmutableErrorMsg`.
pub(crate) const FIELD_IMMUTABLE: &str = "field is immutable";

/// Upstream's message for negative counts and durations.
pub(crate) const IS_NEGATIVE: &str = "must be greater than or equal to 0";

/// Validates `metadata` on create (and on update, where the same format rules apply).
pub(crate) fn validate_object_meta(
    obj: &Value,
    namespaced: bool,
    rule: NameRule,
) -> Vec<FieldError> {
    let path = Path::new("metadata");
    let meta = obj.get("metadata").unwrap_or(&Value::Null);
    let mut errs = validate_meta_name(meta, rule, &path);
    errs.extend(validate_meta_namespace(meta, namespaced, &path));
    if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
        errs.extend(validate_nonnegative(g, &path.child("generation")));
    }
    errs.extend(validate_labels(meta.get("labels"), &path.child("labels")));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        &path.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        arr_of(meta, "ownerReferences"),
        &path.child("ownerReferences"),
    ));
    errs.extend(validate_finalizers(
        arr_of(meta, "finalizers"),
        &path.child("finalizers"),
    ));
    errs
}

/// The name is required (the caller has already generated one from `generateName`) and must
/// follow the kind's naming rule.
fn validate_meta_name(meta: &Value, rule: NameRule, path: &Path) -> Vec<FieldError> {
    let name = str_of(meta, "name");
    let name_path = path.child("name");
    if name.is_empty() {
        return vec![FieldError::required(
            &name_path,
            "name or generateName is required",
        )];
    }
    validate_name(rule, name)
        .iter()
        .map(|m| FieldError::invalid(&name_path, quote(name), m))
        .collect()
}

/// Namespaced kinds need a DNS-label namespace; cluster-scoped kinds must not carry one.
fn validate_meta_namespace(meta: &Value, namespaced: bool, path: &Path) -> Vec<FieldError> {
    let ns = str_of(meta, "namespace");
    let ns_path = path.child("namespace");
    match (namespaced, ns.is_empty()) {
        (true, true) => vec![FieldError::required(&ns_path, "")],
        (true, false) => is_dns1123_label(ns)
            .iter()
            .map(|m| FieldError::invalid(&ns_path, quote(ns), m))
            .collect(),
        (false, false) => vec![FieldError::forbidden(&ns_path, "not allowed on this type")],
        (false, true) => Vec::new(),
    }
}

/// Upstream's `ValidateNonnegativeField`.
pub(crate) fn validate_nonnegative(value: i64, path: &Path) -> Vec<FieldError> {
    if value < 0 {
        vec![FieldError::invalid(path, value.to_string(), IS_NEGATIVE)]
    } else {
        Vec::new()
    }
}

/// A label key (qualified name) at `path`; upstream reports the key itself as the bad value.
pub(crate) fn validate_label_name(key: &str, path: &Path) -> Vec<FieldError> {
    is_qualified_name(key)
        .iter()
        .map(|m| FieldError::invalid(path, quote(key), m))
        .collect()
}

/// Label maps (metadata labels, node selectors, selector matchLabels).
pub(crate) fn validate_labels(labels: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in string_map(labels) {
        errs.extend(validate_label_name(k, path));
        for m in is_label_value(v) {
            errs.push(FieldError::invalid(path, quote(v), &m));
        }
    }
    errs
}

/// Annotation keys are qualified names (case-insensitive); the total size is bounded.
pub(crate) fn validate_annotations(annotations: Option<&Value>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in string_map(annotations) {
        for m in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, quote(k), &m));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// Each reference needs apiVersion (with a version), kind, name and uid; at most one may be
/// the controller. Paths are un-indexed, as upstream's.
fn validate_owner_references(refs: &[Value], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in refs {
        errs.extend(validate_owner_reference(r, path));
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{}/{}", str_of(r, "kind"), str_of(r, "name"));
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    Value::Array(refs.to_vec()).to_string(),
                    &format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    errs
}

fn validate_owner_reference(r: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let api_version = str_of(r, "apiVersion");
    let (group, version) = match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    if version.is_empty() {
        errs.push(FieldError::invalid(
            &path.child("apiVersion"),
            quote(api_version),
            "version must not be empty",
        ));
    }
    for field in ["kind", "name", "uid"] {
        let value = str_of(r, field);
        if value.is_empty() {
            errs.push(FieldError::invalid(
                &path.child(field),
                quote(value),
                "must not be empty",
            ));
        }
    }
    if group.is_empty() && version == "v1" && str_of(r, "kind") == "Event" {
        errs.push(FieldError::invalid(
            path,
            json(r),
            "/v1, Kind=Event is disallowed from being an owner",
        ));
    }
    errs
}

/// Finalizers are qualified names; orphan and foreground deletion exclude each other.
fn validate_finalizers(finalizers: &[Value], path: &Path) -> Vec<FieldError> {
    let names: Vec<&str> = finalizers.iter().filter_map(Value::as_str).collect();
    let mut errs: Vec<FieldError> = names
        .iter()
        .flat_map(|f| {
            is_qualified_name(f)
                .into_iter()
                .map(|m| FieldError::invalid(path, quote(f), &m))
        })
        .collect();
    if names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        errs.push(FieldError::invalid(
            path,
            super::render::string_slice(&names),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// Metadata rules on update: identity fields are immutable, and no finalizer may be added to
/// an object that is being deleted. The uid is only compared when the new object carries one
/// (upstream copies the old uid into requests that omit it), and creationTimestamp /
/// generation are owned by the server, so they are not checked here.
pub(crate) fn validate_object_meta_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let path = Path::new("metadata");
    let old_meta = old.get("metadata").unwrap_or(&Value::Null);
    let new_meta = new.get("metadata").unwrap_or(&Value::Null);
    let mut errs = Vec::new();
    for field in ["name", "namespace", "uid"] {
        let (o, n) = (str_of(old_meta, field), str_of(new_meta, field));
        if o != n && !(field == "uid" && n.is_empty()) {
            errs.push(FieldError::invalid(
                &path.child(field),
                quote(n),
                FIELD_IMMUTABLE,
            ));
        }
    }
    if at(old_meta, &["deletionTimestamp"]).is_some() {
        let old_f: Vec<&str> = arr_of(old_meta, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut extra: Vec<&str> = arr_of(new_meta, "finalizers")
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !old_f.contains(f))
            .collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            errs.push(FieldError::forbidden(
                &path.child("finalizers"),
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    super::render::string_slice(&extra)
                ),
            ));
        }
    }
    errs
}

/// Upstream's `ValidateLabelSelector` (matchLabels and matchExpressions).
pub(crate) fn validate_label_selector(selector: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = validate_labels(selector.get("matchLabels"), &path.child("matchLabels"));
    let exprs_path = path.child("matchExpressions");
    for (i, expr) in arr_of(selector, "matchExpressions").iter().enumerate() {
        errs.extend(validate_selector_requirement(expr, &exprs_path.index(i)));
    }
    errs
}

fn validate_selector_requirement(expr: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let op = str_of(expr, "operator");
    let values = arr_of(expr, "values");
    match op {
        "In" | "NotIn" => {
            if values.is_empty() {
                errs.push(FieldError::required(
                    &path.child("values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                errs.push(FieldError::forbidden(
                    &path.child("values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        _ => errs.push(FieldError::invalid(
            &path.child("operator"),
            quote(op),
            "not a valid selector operator",
        )),
    }
    errs.extend(validate_label_name(str_of(expr, "key"), &path.child("key")));
    for (i, v) in values.iter().enumerate() {
        let v = v.as_str().unwrap_or("");
        for m in is_label_value(v) {
            errs.push(FieldError::invalid(
                &path.child("values").index(i),
                quote(v),
                &m,
            ));
        }
    }
    errs
}

/// Whether a selector has no requirements at all (matches everything).
pub(crate) fn selector_is_empty(selector: &Value) -> bool {
    obj_of(selector, "matchLabels").is_none_or(|m| m.is_empty())
        && arr_of(selector, "matchExpressions").is_empty()
}

/// Whether a label set satisfies a label selector.
pub(crate) fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let labels = string_map(labels);
    let get = |k: &str| labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v);
    let labels_ok = string_map(selector.get("matchLabels"))
        .iter()
        .all(|(k, v)| get(k) == Some(*v));
    let exprs_ok = arr_of(selector, "matchExpressions").iter().all(|e| {
        let value = get(str_of(e, "key"));
        let in_values = |v: &str| arr_of(e, "values").iter().any(|x| x.as_str() == Some(v));
        match str_of(e, "operator") {
            "In" => value.is_some_and(in_values),
            "NotIn" => !value.is_some_and(in_values),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    });
    labels_ok && exprs_ok
}
