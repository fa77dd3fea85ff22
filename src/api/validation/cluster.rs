//! Namespaces, Nodes, PriorityClasses, Leases and Events.

use super::json::{arr_of, at, int_of, opt_str, present, str_of, sub};
use super::meta::{validate_label_name, FIELD_IMMUTABLE};
use super::names::{is_dns1123_subdomain, is_label_value, is_qualified_name};
use super::pod::validate_taint_effect;
use super::render::{opt_json, quote};
use super::{FieldError, Path};
use serde_json::Value;

/// Finalizer names that need no domain prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// Highest priority a user-defined PriorityClass may have.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

/// The built-in system priority classes and their fixed values.
const SYSTEM_PRIORITY_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// Namespace: spec.finalizers are qualified names, unprefixed ones must be standard.
pub(crate) fn validate_namespace(obj: &Value) -> Vec<FieldError> {
    let path = Path::new("spec").child("finalizers");
    let mut errs = Vec::new();
    for f in arr_of(sub(obj, &["spec"]), "finalizers") {
        let f = f.as_str().unwrap_or("");
        errs.extend(
            is_qualified_name(f)
                .iter()
                .map(|m| FieldError::invalid(&path, quote(f), m)),
        );
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(&f) {
            errs.push(FieldError::invalid(
                &path,
                quote(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// Node: taints need valid keys, values and effects, unique per (key, effect).
pub(crate) fn validate_node(obj: &Value) -> Vec<FieldError> {
    let path = Path::new("spec").child("taints");
    let mut errs = Vec::new();
    let mut seen = Vec::new();
    for (i, t) in arr_of(sub(obj, &["spec"]), "taints").iter().enumerate() {
        let idx = path.index(i);
        let (key, effect) = (str_of(t, "key"), str_of(t, "effect"));
        errs.extend(validate_label_name(key, &idx.child("key")));
        let value = str_of(t, "value");
        errs.extend(
            is_label_value(value)
                .iter()
                .map(|m| FieldError::invalid(&idx.child("value"), quote(value), m)),
        );
        errs.extend(validate_taint_effect(effect, &idx.child("effect")));
        if seen.contains(&(key, effect)) {
            errs.push(FieldError::duplicate(
                &idx,
                serde_json::json!({"key": key, "effect": effect}).to_string(),
            ));
        } else {
            seen.push((key, effect));
        }
    }
    errs
}

/// PriorityClass: `system-` names are reserved; user values are capped at one billion.
pub(crate) fn validate_priority_class(obj: &Value) -> Vec<FieldError> {
    let name = str_of(sub(obj, &["metadata"]), "name");
    let value = int_of(obj, "value").unwrap_or(0);
    let mut errs = Vec::new();
    if name.starts_with("system-") {
        if let Err(e) = known_system_class(name, value) {
            errs.push(FieldError::forbidden(
                &Path::new("metadata").child("name"),
                &format!(
                    "priority class names with 'system-' prefix are reserved for system use only. error: {e}"
                ),
            ));
        }
    } else if value > HIGHEST_USER_PRIORITY {
        errs.push(FieldError::forbidden(
            &Path::new("value"),
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        ));
    }
    if let Some(policy) = opt_str(obj, "preemptionPolicy") {
        errs.extend(validate_preemption_policy(
            policy,
            &Path::new("preemptionPolicy"),
        ));
    }
    errs
}

fn known_system_class(name: &str, value: i64) -> Result<(), String> {
    match SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == name) {
        None => Err(format!("{name} is not a known system priority class")),
        Some((_, v)) if *v != value => Err(format!("value of {name} PriorityClass must be {v}")),
        Some(_) => Ok(()),
    }
}

pub(crate) fn validate_preemption_policy(policy: &str, path: &Path) -> Vec<FieldError> {
    match policy {
        "PreemptLowerPriority" | "Never" => Vec::new(),
        "" => vec![FieldError::required(path, "")],
        other => vec![FieldError::not_supported(
            path,
            quote(other),
            &["PreemptLowerPriority", "Never"],
        )],
    }
}

/// A PriorityClass's value and preemption policy are fixed once created.
pub(crate) fn validate_priority_class_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if int_of(old, "value") != int_of(new, "value") {
        errs.push(FieldError::forbidden(
            &Path::new("value"),
            "may not be changed in an update.",
        ));
    }
    if present(old, "preemptionPolicy") != present(new, "preemptionPolicy") {
        errs.push(FieldError::invalid(
            &Path::new("preemptionPolicy"),
            opt_json(present(new, "preemptionPolicy")),
            FIELD_IMMUTABLE,
        ));
    }
    errs
}

/// Lease: positive duration, non-negative transitions, preferredHolder needs a strategy.
pub(crate) fn validate_lease(obj: &Value) -> Vec<FieldError> {
    let spec = sub(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    if let Some(d) = int_of(spec, "leaseDurationSeconds") {
        if d <= 0 {
            errs.push(FieldError::invalid(
                &path.child("leaseDurationSeconds"),
                d.to_string(),
                "must be greater than 0",
            ));
        }
    }
    if let Some(t) = int_of(spec, "leaseTransitions") {
        if t < 0 {
            errs.push(FieldError::invalid(
                &path.child("leaseTransitions"),
                t.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    let preferred = str_of(spec, "preferredHolder");
    if !preferred.is_empty() && str_of(spec, "strategy").is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("preferredHolder"),
            "may only be specified if `strategy` is defined",
        ));
    }
    errs
}

/// Field names that differ between core/v1 and events.k8s.io/v1 Events.
struct EventFields {
    involved: &'static str,
    controller: &'static str,
    controller_path: &'static str,
    instance: &'static str,
}

const CORE_EVENT: EventFields = EventFields {
    involved: "involvedObject",
    controller: "reportingComponent",
    controller_path: "reportingComponent",
    instance: "reportingInstance",
};

const EVENTS_EVENT: EventFields = EventFields {
    involved: "regarding",
    controller: "reportingController",
    controller_path: "reportingController",
    instance: "reportingInstance",
};

/// Events (upstream's `legacyValidateEvent`, plus the strict events.k8s.io/v1 rules). Paths
/// use upstream's internal names (`involvedObject`) as upstream reports them.
pub(crate) fn validate_event(obj: &Value, events_api: bool) -> Vec<FieldError> {
    let f = if events_api {
        &EVENTS_EVENT
    } else {
        &CORE_EVENT
    };
    let event_ns = str_of(sub(obj, &["metadata"]), "namespace");
    let involved_ns = str_of(sub(obj, &[f.involved]), "namespace");
    let has_time = at(obj, &["eventTime"]).is_some();
    let mut errs = Vec::new();
    let ns_path = Path::new("involvedObject").child("namespace");
    let mismatch = if has_time {
        involved_ns.is_empty() && event_ns != "default" && event_ns != "kube-system"
    } else if involved_ns.is_empty() {
        !event_ns.is_empty() && event_ns != "default"
    } else {
        event_ns != involved_ns
    };
    if mismatch {
        errs.push(FieldError::invalid(
            &ns_path,
            quote(involved_ns),
            "does not match event.namespace",
        ));
    }
    if has_time || events_api {
        errs.extend(validate_new_style_event(obj, f));
    }
    if events_api && !has_time {
        errs.push(FieldError::required(&Path::new("eventTime"), ""));
    }
    errs.extend(
        is_dns1123_subdomain(event_ns)
            .iter()
            .map(|m| FieldError::invalid(&Path::new("namespace"), quote(event_ns), m)),
    );
    errs
}

/// Events with an eventTime must say who reported them and what happened.
fn validate_new_style_event(obj: &Value, f: &EventFields) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let controller = str_of(obj, f.controller);
    let cpath = Path::new(f.controller_path);
    if controller.is_empty() {
        errs.push(FieldError::required(&cpath, ""));
    }
    errs.extend(
        is_qualified_name(controller)
            .iter()
            .map(|m| FieldError::invalid(&cpath, quote(controller), m)),
    );
    for (field, limit) in [(f.instance, 128usize), ("action", 128)] {
        let v = str_of(obj, field);
        if v.is_empty() {
            errs.push(FieldError::required(&Path::new(field), ""));
        } else if v.len() > limit {
            errs.push(FieldError::invalid(
                &Path::new(field),
                quote(""),
                &format!("can have at most {limit} characters"),
            ));
        }
    }
    let event_type = str_of(obj, "type");
    if event_type != "Normal" && event_type != "Warning" {
        errs.push(FieldError::invalid(
            &Path::new("type"),
            quote(""),
            &format!("has invalid value: {event_type}"),
        ));
    }
    let note_field = if f.controller == "reportingController" {
        "note"
    } else {
        "message"
    };
    if str_of(obj, note_field).len() > 1024 {
        errs.push(FieldError::invalid(
            &Path::new(note_field),
            quote(""),
            "can have at most 1024 characters",
        ));
    }
    errs
}
