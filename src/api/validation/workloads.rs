//! apps/v1 and batch/v1 workloads (upstream's `pkg/apis/apps/validation` and
//! `pkg/apis/batch/validation`).

use super::cron::validate_schedule;
use super::json::{arr_of, at, bool_of, int_of, opt_str, present, str_of, sub};
use super::meta::{
    selector_is_empty, selector_matches, validate_label_selector, validate_nonnegative,
    FIELD_IMMUTABLE,
};
use super::pod::{normalized, validate_pod_template};
use super::render::{json, opt_json, quote, string_map};
use super::{FieldError, Path};
use serde_json::{json, Value};

const IS_NOT_POSITIVE: &str = "must be greater than zero";
const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

/// What differs between the replica-managing controllers' shared checks.
struct ControllerRules {
    /// Message for a selector with no requirements.
    empty_selector: &'static str,
    /// Message for a template that sets activeDeadlineSeconds.
    active_deadline: &'static str,
}

/// Deployment: selector, template, strategy and the counters.
pub(crate) fn validate_deployment(obj: &Value) -> Vec<FieldError> {
    let spec = sub(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = validate_replicas(spec, &path);
    if present(spec, "selector").is_none() {
        errs.push(FieldError::required(&path.child("selector"), ""));
        return errs;
    }
    errs.extend(validate_selector_and_template(
        spec,
        &path,
        &ControllerRules {
            empty_selector: "empty selector is invalid for deployment",
            active_deadline: "activeDeadlineSeconds in ReplicaSet is not Supported",
        },
    ));
    errs.extend(validate_deployment_strategy(
        sub(spec, &["strategy"]),
        &path.child("strategy"),
    ));
    errs.extend(validate_counters(spec, &path));
    errs
}

/// ReplicaSet: selector, template, replicas.
pub(crate) fn validate_replica_set(obj: &Value) -> Vec<FieldError> {
    let spec = sub(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = validate_replicas(spec, &path);
    errs.extend(validate_selector_and_template(
        spec,
        &path,
        &ControllerRules {
            empty_selector: "empty selector is invalid for deployment",
            active_deadline: "activeDeadlineSeconds in ReplicaSet is not Supported",
        },
    ));
    if let Some(v) = int_of(spec, "minReadySeconds") {
        errs.extend(validate_nonnegative(v, &path.child("minReadySeconds")));
    }
    errs
}

/// DaemonSet: selector, template, update strategy.
pub(crate) fn validate_daemon_set(obj: &Value) -> Vec<FieldError> {
    let spec = sub(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = validate_selector_and_template(
        spec,
        &path,
        &ControllerRules {
            empty_selector: "empty selector is invalid for daemonset",
            active_deadline: "activeDeadlineSeconds in DaemonSet is not Supported",
        },
    );
    errs.extend(validate_daemon_set_strategy(
        sub(spec, &["updateStrategy"]),
        &path.child("updateStrategy"),
    ));
    for field in ["minReadySeconds", "revisionHistoryLimit"] {
        if let Some(v) = int_of(spec, field) {
            errs.extend(validate_nonnegative(v, &path.child(field)));
        }
    }
    errs
}

/// StatefulSet: pod management, update strategy, selector and template. The template's
/// volumeMounts may name volumeClaimTemplates as well as volumes.
pub(crate) fn validate_stateful_set(obj: &Value) -> Vec<FieldError> {
    let spec = sub(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let pmp = path.child("podManagementPolicy");
    match str_of(spec, "podManagementPolicy") {
        "" => errs.push(FieldError::required(&pmp, "")),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            &pmp,
            quote(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    errs.extend(validate_stateful_set_strategy(
        sub(spec, &["updateStrategy"]),
        &path.child("updateStrategy"),
    ));
    errs.extend(validate_replicas(spec, &path));
    let with_claims = spec_with_claim_volumes(spec);
    errs.extend(validate_selector_and_template(
        &with_claims,
        &path,
        &ControllerRules {
            empty_selector: "empty selector is not valid for statefulset.",
            active_deadline: "must not be specified",
        },
    ));
    for field in ["minReadySeconds", "revisionHistoryLimit"] {
        if let Some(v) = int_of(spec, field) {
            errs.extend(validate_nonnegative(v, &path.child(field)));
        }
    }
    errs
}

/// A copy of a StatefulSet spec whose template lists each volumeClaimTemplate as a PVC
/// volume, so mounts of claim templates validate like mounts of volumes.
fn spec_with_claim_volumes(spec: &Value) -> Value {
    let mut copy = spec.clone();
    let claims: Vec<Value> = arr_of(spec, "volumeClaimTemplates")
        .iter()
        .filter_map(|c| at(c, &["metadata", "name"]).and_then(Value::as_str))
        .map(|name| json!({"name": name, "persistentVolumeClaim": {"claimName": name}}))
        .collect();
    if claims.is_empty() {
        return copy;
    }
    let pod_spec = copy
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut);
    if let Some(ps) = pod_spec {
        let vols = ps
            .entry("volumes".to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(arr) = vols.as_array_mut() {
            arr.extend(claims);
        } else {
            *vols = Value::Array(claims);
        }
    }
    copy
}

fn validate_replicas(spec: &Value, path: &Path) -> Vec<FieldError> {
    int_of(spec, "replicas")
        .map(|r| validate_nonnegative(r, &path.child("replicas")))
        .unwrap_or_default()
}

/// Selector present, valid, non-empty and matching the template's labels; the template is a
/// valid pod template with restartPolicy Always and no activeDeadlineSeconds.
fn validate_selector_and_template(
    spec: &Value,
    path: &Path,
    rules: &ControllerRules,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sel_path = path.child("selector");
    let template = sub(spec, &["template"]);
    let tpl_path = path.child("template");
    match present(spec, "selector") {
        None => errs.push(FieldError::required(&sel_path, "")),
        Some(sel) => {
            errs.extend(validate_label_selector(sel, &sel_path));
            if selector_is_empty(sel) {
                errs.push(FieldError::invalid(
                    &sel_path,
                    json(sel),
                    rules.empty_selector,
                ));
            } else {
                errs.extend(validate_template_labels(sel, template, &tpl_path));
            }
        }
    }
    errs.extend(validate_pod_template(template, &tpl_path));
    let tpl_spec = sub(template, &["spec"]);
    let rp = str_of(tpl_spec, "restartPolicy");
    if rp != "Always" {
        errs.push(FieldError::not_supported(
            &tpl_path.child("spec").child("restartPolicy"),
            quote(rp),
            &["Always"],
        ));
    }
    if let Some(ads) = int_of(tpl_spec, "activeDeadlineSeconds") {
        errs.push(FieldError::invalid(
            &tpl_path.child("spec").child("activeDeadlineSeconds"),
            ads.to_string(),
            rules.active_deadline,
        ));
    }
    errs
}

/// The selector must select the pods the template produces.
fn validate_template_labels(
    selector: &Value,
    template: &Value,
    tpl_path: &Path,
) -> Vec<FieldError> {
    let labels = at(template, &["metadata", "labels"]);
    if selector_matches(selector, labels) {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            &tpl_path.child("metadata").child("labels"),
            string_map(labels),
            SELECTOR_MISMATCH,
        )]
    }
}

/// minReadySeconds, revisionHistoryLimit, progressDeadlineSeconds (> minReadySeconds).
fn validate_counters(spec: &Value, path: &Path) -> Vec<FieldError> {
    let min_ready = int_of(spec, "minReadySeconds").unwrap_or(0);
    let mut errs = validate_nonnegative(min_ready, &path.child("minReadySeconds"));
    if let Some(v) = int_of(spec, "revisionHistoryLimit") {
        errs.extend(validate_nonnegative(v, &path.child("revisionHistoryLimit")));
    }
    if let Some(pds) = int_of(spec, "progressDeadlineSeconds") {
        let p = path.child("progressDeadlineSeconds");
        if pds <= 0 {
            errs.push(FieldError::invalid(&p, pds.to_string(), IS_NOT_POSITIVE));
        }
        if pds <= min_ready {
            errs.push(FieldError::invalid(
                &p,
                pds.to_string(),
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

fn validate_deployment_strategy(strategy: &Value, path: &Path) -> Vec<FieldError> {
    let ru_path = path.child("rollingUpdate");
    match str_of(strategy, "type") {
        "Recreate" if present(strategy, "rollingUpdate").is_some() => vec![FieldError::forbidden(
            &ru_path,
            "may not be specified when strategy `type` is 'Recreate'",
        )],
        "Recreate" => Vec::new(),
        "RollingUpdate" => match present(strategy, "rollingUpdate") {
            None => vec![FieldError::required(
                &ru_path,
                "this should be defaulted and never be nil",
            )],
            Some(ru) => validate_rolling_update_deployment(ru, &ru_path),
        },
        _ => vec![FieldError::not_supported(
            path,
            json(strategy),
            &["Recreate", "RollingUpdate"],
        )],
    }
}

fn validate_rolling_update_deployment(ru: &Value, path: &Path) -> Vec<FieldError> {
    let mu_path = path.child("maxUnavailable");
    let mut errs = validate_int_or_percent(ru.get("maxUnavailable"), &mu_path);
    errs.extend(validate_int_or_percent(
        ru.get("maxSurge"),
        &path.child("maxSurge"),
    ));
    if int_or_percent_value(ru.get("maxUnavailable")) == 0
        && int_or_percent_value(ru.get("maxSurge")) == 0
    {
        errs.push(FieldError::invalid(
            &mu_path,
            int_or_string(ru.get("maxUnavailable")),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    errs.extend(not_more_than_100_percent(
        ru.get("maxUnavailable"),
        &mu_path,
    ));
    errs
}

fn validate_daemon_set_strategy(strategy: &Value, path: &Path) -> Vec<FieldError> {
    match str_of(strategy, "type") {
        "OnDelete" => Vec::new(),
        "RollingUpdate" => match present(strategy, "rollingUpdate") {
            None => vec![FieldError::required(&path.child("rollingUpdate"), "")],
            Some(ru) => validate_rolling_update_daemon_set(ru, &path.child("rollingUpdate")),
        },
        _ => vec![FieldError::not_supported(
            path,
            json(strategy),
            &["RollingUpdate", "OnDelete"],
        )],
    }
}

/// Exactly one of maxUnavailable / maxSurge must be non-zero for a DaemonSet.
fn validate_rolling_update_daemon_set(ru: &Value, path: &Path) -> Vec<FieldError> {
    let (mu, ms) = (ru.get("maxUnavailable"), ru.get("maxSurge"));
    let (mu_path, ms_path) = (path.child("maxUnavailable"), path.child("maxSurge"));
    let mut errs = validate_int_or_percent(mu, &mu_path);
    errs.extend(validate_int_or_percent(ms, &ms_path));
    errs.extend(not_more_than_100_percent(mu, &mu_path));
    errs.extend(not_more_than_100_percent(ms, &ms_path));
    match (int_or_percent_value(mu) != 0, int_or_percent_value(ms) != 0) {
        (true, true) => errs.push(FieldError::invalid(
            &ms_path,
            int_or_string(ms),
            "may not be set when maxUnavailable is non-zero",
        )),
        (false, false) => errs.push(FieldError::invalid(
            &mu_path,
            int_or_string(mu),
            "cannot be 0 when maxSurge is 0",
        )),
        _ => {}
    }
    errs
}

fn validate_stateful_set_strategy(strategy: &Value, path: &Path) -> Vec<FieldError> {
    let ru_path = path.child("rollingUpdate");
    match str_of(strategy, "type") {
        "" => vec![FieldError::required(path, "")],
        "OnDelete" if present(strategy, "rollingUpdate").is_some() => {
            vec![FieldError::invalid(
                &ru_path,
                opt_json(strategy.get("rollingUpdate")),
                "only allowed for updateStrategy 'RollingUpdate'",
            )]
        }
        "OnDelete" => Vec::new(),
        "RollingUpdate" => int_of(sub(strategy, &["rollingUpdate"]), "partition")
            .map(|p| validate_nonnegative(p, &ru_path.child("partition")))
            .unwrap_or_default(),
        _ => vec![FieldError::invalid(
            path,
            json(strategy),
            "must be 'RollingUpdate' or 'OnDelete'",
        )],
    }
}

/// An IntOrString rendered as upstream prints it (its `String()`: no quotes).
fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    }
}

/// A non-negative integer or a percentage string.
pub(super) fn validate_int_or_percent(v: Option<&Value>, path: &Path) -> Vec<FieldError> {
    match v {
        Some(Value::String(s)) => super::names::is_valid_percent(s)
            .iter()
            .map(|m| FieldError::invalid(path, s.clone(), m))
            .collect(),
        Some(Value::Number(n)) => validate_nonnegative(n.as_i64().unwrap_or(0), path),
        _ => Vec::new(),
    }
}

/// The numeric part of an IntOrString (percent sign dropped); unparsable counts as 0.
fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.trim_end_matches('%').parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

pub(super) fn not_more_than_100_percent(v: Option<&Value>, path: &Path) -> Vec<FieldError> {
    match v {
        Some(Value::String(s)) if s.ends_with('%') && int_or_percent_value(v) > 100 => {
            vec![FieldError::invalid(
                path,
                s.clone(),
                "must not be greater than 100%",
            )]
        }
        _ => Vec::new(),
    }
}

/// apps/v1 selectors are immutable.
pub(crate) fn validate_selector_immutable(old: &Value, new: &Value) -> Vec<FieldError> {
    immutable(
        old,
        new,
        &["spec", "selector"],
        &Path::new("spec").child("selector"),
    )
}

/// Upstream's `ValidateImmutableField` on the value at `keys`.
fn immutable(old: &Value, new: &Value, keys: &[&str], path: &Path) -> Vec<FieldError> {
    let o = at(old, keys).map(normalized);
    let n = at(new, keys).map(normalized);
    if o == n {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            path,
            opt_json(n.as_ref()),
            FIELD_IMMUTABLE,
        )]
    }
}

/// The StatefulSet spec fields an update may change (1.33).
const STS_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

/// Only the fields in [`STS_MUTABLE`] may change.
pub(crate) fn validate_stateful_set_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let strip = |v: &Value| {
        let mut s = normalized(sub(v, &["spec"]));
        if let Some(m) = s.as_object_mut() {
            for f in STS_MUTABLE {
                m.remove(*f);
            }
        }
        s
    };
    if strip(old) == strip(new) {
        Vec::new()
    } else {
        vec![FieldError::forbidden(
            &Path::new("spec"),
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        )]
    }
}

/// Job: counters, completion mode, selector (required: it is generated from the uid unless
/// `manualSelector`), template labels, and restartPolicy OnFailure or Never.
pub(crate) fn validate_job(obj: &Value) -> Vec<FieldError> {
    let spec = sub(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = validate_job_spec(spec, &path);
    let sel_path = path.child("selector");
    match present(spec, "selector") {
        None => errs.push(FieldError::required(&sel_path, "")),
        Some(sel) => {
            errs.extend(validate_label_selector(sel, &sel_path));
            errs.extend(validate_template_labels(
                sel,
                sub(spec, &["template"]),
                &path.child("template"),
            ));
        }
    }
    errs
}

/// The JobSpec rules shared by Jobs and CronJob job templates.
fn validate_job_spec(spec: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        if let Some(v) = int_of(spec, field) {
            errs.extend(validate_nonnegative(v, &path.child(field)));
        }
    }
    if let Some(mode) = opt_str(spec, "completionMode") {
        match mode {
            "NonIndexed" => {}
            "Indexed" if int_of(spec, "completions").is_none() => errs.push(FieldError::required(
                &path.child("completions"),
                "when completion mode is Indexed",
            )),
            "Indexed" => {}
            other => errs.push(FieldError::not_supported(
                &path.child("completionMode"),
                quote(other),
                &["NonIndexed", "Indexed"],
            )),
        }
    }
    let tpl_path = path.child("template");
    errs.extend(validate_pod_template(sub(spec, &["template"]), &tpl_path));
    let rp = str_of(sub(spec, &["template", "spec"]), "restartPolicy");
    if rp != "OnFailure" && rp != "Never" {
        errs.push(FieldError::not_supported(
            &tpl_path.child("spec").child("restartPolicy"),
            quote(rp),
            &["OnFailure", "Never"],
        ));
    }
    errs
}

/// Template fields a suspended, never-started Job may still change (mutable scheduling
/// directives).
const JOB_TEMPLATE_MUTABLE_WHEN_SUSPENDED: &[&[&str]] = &[
    &["metadata", "labels"],
    &["metadata", "annotations"],
    &["spec", "nodeSelector"],
    &["spec", "tolerations"],
    &["spec", "affinity"],
    &["spec", "schedulingGates"],
];

/// Job updates: selector, template (bar scheduling directives of a suspended, unstarted job),
/// completionMode and completions (bar Indexed jobs scaled with parallelism) are immutable.
pub(crate) fn validate_job_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let spec = Path::new("spec");
    let mut errs = immutable(old, new, &["spec", "selector"], &spec.child("selector"));
    errs.extend(validate_job_template_update(old, new, &spec));
    for field in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        errs.extend(immutable(old, new, &["spec", field], &spec.child(field)));
    }
    let new_spec = sub(new, &["spec"]);
    let elastic_indexed = str_of(new_spec, "completionMode") == "Indexed"
        && int_of(new_spec, "completions") == int_of(new_spec, "parallelism");
    if !elastic_indexed {
        errs.extend(immutable(
            old,
            new,
            &["spec", "completions"],
            &spec.child("completions"),
        ));
    }
    errs
}

fn validate_job_template_update(old: &Value, new: &Value, spec: &Path) -> Vec<FieldError> {
    let suspended_unstarted =
        bool_of(sub(old, &["spec"]), "suspend") && at(old, &["status", "startTime"]).is_none();
    if !suspended_unstarted {
        return immutable(old, new, &["spec", "template"], &spec.child("template"));
    }
    let strip = |v: &Value| {
        let mut t = normalized(sub(v, &["spec", "template"]));
        for keys in JOB_TEMPLATE_MUTABLE_WHEN_SUSPENDED {
            if let Some(m) = t.get_mut(keys[0]).and_then(Value::as_object_mut) {
                m.remove(keys[1]);
            }
        }
        t
    };
    if strip(old) == strip(new) {
        Vec::new()
    } else {
        let shown = opt_json(at(new, &["spec", "template"]));
        vec![FieldError::invalid(
            &spec.child("template"),
            shown,
            FIELD_IMMUTABLE,
        )]
    }
}

/// CronJob: name short enough for its jobs' names, schedule, time zone, concurrency policy,
/// history limits and the job template (whose selector is always generated).
pub(crate) fn validate_cron_job(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec = sub(obj, &["spec"]);
    let path = Path::new("spec");
    let mut errs = Vec::new();
    let name = str_of(sub(obj, &["metadata"]), "name");
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            &Path::new("metadata").child("name"),
            quote(name),
            "must be no more than 52 characters",
        ));
    }
    let schedule = str_of(spec, "schedule");
    let sched_path = path.child("schedule");
    if schedule.is_empty() {
        errs.push(FieldError::required(&sched_path, ""));
    } else {
        let allow_tz = old.is_some_and(|o| str_of(sub(o, &["spec"]), "schedule").contains("TZ"));
        errs.extend(validate_schedule(
            schedule,
            allow_tz,
            opt_str(spec, "timeZone"),
            &sched_path,
        ));
    }
    for field in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        if let Some(v) = int_of(spec, field) {
            errs.extend(validate_nonnegative(v, &path.child(field)));
        }
    }
    let old_tz = old.and_then(|o| at(o, &["spec", "timeZone"]));
    if old.is_none() || old_tz != at(spec, &["timeZone"]) {
        errs.extend(validate_time_zone(
            opt_str(spec, "timeZone"),
            &path.child("timeZone"),
        ));
    }
    errs.extend(validate_concurrency_policy(
        spec,
        &path.child("concurrencyPolicy"),
    ));
    errs.extend(validate_job_template(
        sub(spec, &["jobTemplate"]),
        &path.child("jobTemplate"),
    ));
    errs
}

fn validate_concurrency_policy(spec: &Value, path: &Path) -> Vec<FieldError> {
    match str_of(spec, "concurrencyPolicy") {
        "" => vec![FieldError::required(path, "")],
        "Allow" | "Forbid" | "Replace" => Vec::new(),
        other => vec![FieldError::not_supported(
            path,
            quote(other),
            &["Allow", "Forbid", "Replace"],
        )],
    }
}

/// A time zone name: IANA-like path segments (the zone database itself is not consulted).
fn validate_time_zone(tz: Option<&str>, path: &Path) -> Vec<FieldError> {
    let Some(tz) = tz else { return Vec::new() };
    if tz.is_empty() {
        return vec![FieldError::invalid(
            path,
            quote(tz),
            "timeZone must be nil or non-empty string",
        )];
    }
    let part_ok = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'))
    };
    if !tz.split('/').all(part_ok) {
        return vec![FieldError::invalid(
            path,
            quote(tz),
            &format!("unknown time zone {tz}"),
        )];
    }
    if tz.eq_ignore_ascii_case("Local") {
        return vec![FieldError::invalid(
            path,
            quote(tz),
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        )];
    }
    Vec::new()
}

/// A CronJob's job template: the job spec without a selector (it is generated per Job).
fn validate_job_template(tpl: &Value, path: &Path) -> Vec<FieldError> {
    let spec_path = path.child("spec");
    let spec = sub(tpl, &["spec"]);
    let mut errs = validate_job_spec(spec, &spec_path);
    if let Some(sel) = present(spec, "selector") {
        errs.push(FieldError::invalid(
            &spec_path.child("selector"),
            json(sel),
            "`selector` will be auto-generated",
        ));
    }
    if bool_of(spec, "manualSelector") {
        errs.push(FieldError::not_supported(
            &spec_path.child("manualSelector"),
            "true".to_string(),
            &["nil", "false"],
        ));
    }
    errs
}
