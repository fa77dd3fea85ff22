//! Object validation and defaulting, as the Kubernetes apiserver does it.
//!
//! Objects arrive in wire form (`serde_json::Value`, camelCase) and have already been
//! type-checked against k8s-openapi's types, so this module only enforces the *semantic* rules
//! upstream implements in `pkg/apis/*/validation` and the `SetDefaults_*` functions. Messages and
//! field paths follow upstream closely because `kubectl` users (and tests written against real
//! clusters) match on them.

mod cluster;
mod config;
pub mod cron;
mod defaults;
mod json;
mod meta;
mod names;
mod node;
mod pod;
mod policy;
mod quantity;
mod service;
mod workloads;

#[cfg(test)]
mod tests;

use crate::api::registry::ResourceInfo;
use serde_json::Value;

/// The kind of a field error; one-to-one with upstream's `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorReason {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
}

impl FieldErrorReason {
    /// The `StatusCause.reason` string the API reports for this error.
    pub fn cause_type(&self) -> &'static str {
        match self {
            FieldErrorReason::Required => "FieldValueRequired",
            FieldErrorReason::Invalid => "FieldValueInvalid",
            FieldErrorReason::NotSupported => "FieldValueNotSupported",
            FieldErrorReason::Duplicate => "FieldValueDuplicate",
            FieldErrorReason::Forbidden => "FieldValueForbidden",
            FieldErrorReason::TooLong => "FieldValueTooLong",
            FieldErrorReason::TooMany => "FieldValueTooMany",
            FieldErrorReason::NotFound => "FieldValueNotFound",
        }
    }

    /// The human-readable label upstream prints (`ErrorType.String()`).
    fn label(&self) -> &'static str {
        match self {
            FieldErrorReason::Required => "Required value",
            FieldErrorReason::Invalid => "Invalid value",
            FieldErrorReason::NotSupported => "Unsupported value",
            FieldErrorReason::Duplicate => "Duplicate value",
            FieldErrorReason::Forbidden => "Forbidden",
            FieldErrorReason::TooLong => "Too long",
            FieldErrorReason::TooMany => "Too many",
            FieldErrorReason::NotFound => "Not found",
        }
    }
}

/// One field error, as upstream's `field.Error`.
///
/// `bad_value` holds the value already rendered the way upstream prints it (strings quoted Go
/// style, numbers bare, label maps as `map[string]string{...}`); `None` means the value is not
/// shown. `message()` renders e.g. `spec.containers[0].image: Required value`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub reason: FieldErrorReason,
    pub field: String,
    pub detail: String,
    pub bad_value: Option<String>,
}

impl FieldError {
    /// The full message, `<field>: <body>`, as upstream's `Error()`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }

    /// The message without the field (upstream's `ErrorBody()`), which is what a `StatusCause`
    /// carries next to its `field`.
    pub fn body(&self) -> String {
        let mut s = self.reason.label().to_string();
        let shows_value = !matches!(
            self.reason,
            FieldErrorReason::Required | FieldErrorReason::Forbidden | FieldErrorReason::TooLong
        );
        if let (true, Some(value)) = (shows_value, &self.bad_value) {
            s.push_str(": ");
            s.push_str(value);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    pub(crate) fn required(path: &Path, detail: &str) -> Self {
        Self::new(FieldErrorReason::Required, path, None, detail)
    }

    /// `value` is the already-rendered bad value (see [`render`] helpers).
    pub(crate) fn invalid(path: &Path, value: String, detail: &str) -> Self {
        Self::new(FieldErrorReason::Invalid, path, Some(value), detail)
    }

    pub(crate) fn not_supported(path: &Path, value: String, valid: &[&str]) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| render::quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(FieldErrorReason::NotSupported, path, Some(value), &detail)
    }

    pub(crate) fn duplicate(path: &Path, value: String) -> Self {
        Self::new(FieldErrorReason::Duplicate, path, Some(value), "")
    }

    pub(crate) fn forbidden(path: &Path, detail: &str) -> Self {
        Self::new(FieldErrorReason::Forbidden, path, None, detail)
    }

    pub(crate) fn too_long(path: &Path, max_bytes: usize) -> Self {
        let detail = format!("must have at most {max_bytes} bytes");
        Self::new(FieldErrorReason::TooLong, path, None, &detail)
    }

    pub(crate) fn too_many(path: &Path, actual: usize, max: usize) -> Self {
        let detail = format!("must have at most {max} items");
        Self::new(
            FieldErrorReason::TooMany,
            path,
            Some(actual.to_string()),
            &detail,
        )
    }

    pub(crate) fn not_found(path: &Path, value: String) -> Self {
        Self::new(FieldErrorReason::NotFound, path, Some(value), "")
    }

    fn new(reason: FieldErrorReason, path: &Path, value: Option<String>, detail: &str) -> Self {
        FieldError {
            reason,
            field: path.to_string(),
            detail: detail.to_string(),
            bad_value: value,
        }
    }
}

/// A field path, rendered as upstream's `field.Path` (`spec.containers[0].ports[1].name`,
/// map keys as `data[key]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn new(root: &str) -> Self {
        Path(root.to_string())
    }

    pub(crate) fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{}", self.0, name))
        }
    }

    pub(crate) fn index(&self, i: usize) -> Self {
        Path(format!("{}[{}]", self.0, i))
    }

    pub(crate) fn key(&self, key: &str) -> Self {
        Path(format!("{}[{}]", self.0, key))
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Rendering of bad values the way Go's `fmt` prints them in upstream messages.
pub(crate) mod render {
    use serde_json::Value;

    /// Go's `%q`: a double-quoted string with Go escapes.
    pub(crate) fn quote(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// A JSON value: strings quoted, scalars bare, composites as compact JSON.
    pub(crate) fn json(v: &Value) -> String {
        match v {
            Value::String(s) => quote(s),
            Value::Null => "null".to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => other.to_string(),
        }
    }

    /// An optional JSON value; absent renders as Go's nil pointer, `null`.
    pub(crate) fn opt_json(v: Option<&Value>) -> String {
        v.map(json).unwrap_or_else(|| "null".to_string())
    }

    /// A `map[string]string` as Go's `%#v` prints it (keys sorted).
    pub(crate) fn string_map(v: Option<&Value>) -> String {
        let mut pairs: Vec<(String, String)> = v
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        pairs.sort();
        let inner: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
            .collect();
        format!("map[string]string{{{}}}", inner.join(", "))
    }

    /// A `[]string` as Go's `%#v` prints it.
    pub(crate) fn string_slice(items: &[&str]) -> String {
        let inner: Vec<String> = items.iter().map(|s| quote(s)).collect();
        format!("[]string{{{}}}", inner.join(", "))
    }
}

/// Which rule a kind's names follow (upstream's per-kind `ValidateNameFunc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
}

pub(crate) use super::registry::BuiltinKind as Kind;

impl Kind {
    /// Upstream's name function for the kind. Services use DNS-1035 labels in 1.33
    /// (RelaxedServiceNameValidation is off); unknown kinds (CRD-like) get path-segment rules.
    pub(crate) fn name_rule(self) -> NameRule {
        match self {
            Kind::Namespace => NameRule::Label,
            Kind::Service => NameRule::Dns1035,
            Kind::Other => NameRule::PathSegment,
            _ => NameRule::Subdomain,
        }
    }
}

/// Applies the defaults Kubernetes applies on create/update (mutates in place).
pub fn apply_defaults(resource: &ResourceInfo, object: &mut Value) {
    defaults::apply(Kind::of(resource), object);
}

/// Validates an object about to be created (after defaults). Includes metadata validation.
pub fn validate_create(resource: &ResourceInfo, object: &Value) -> Vec<FieldError> {
    let kind = Kind::of(resource);
    let mut errs = meta::validate_object_meta(object, resource.namespaced, kind.name_rule());
    errs.extend(validate_kind(kind, object, None));
    errs
}

/// Validates an update: everything validate_create checks plus immutability against the old
/// object.
pub fn validate_update(resource: &ResourceInfo, old: &Value, new: &Value) -> Vec<FieldError> {
    let kind = Kind::of(resource);
    let mut errs = meta::validate_object_meta(new, resource.namespaced, kind.name_rule());
    errs.extend(meta::validate_object_meta_update(old, new));
    errs.extend(validate_kind(kind, new, Some(old)));
    errs.extend(validate_kind_update(kind, old, new));
    errs
}

/// Name rules alone (used for URL names too), as upstream's ValidateNameFunc per kind.
pub fn validate_name(resource: &ResourceInfo, name: &str) -> Vec<String> {
    names::validate_name(Kind::of(resource).name_rule(), name)
}

/// Kind-specific checks of the whole object; `old` is given on update for the few rules that
/// depend on it (e.g. a CronJob may keep a `TZ=` schedule it already had).
fn validate_kind(kind: Kind, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match kind {
        Kind::Pod => pod::validate_pod(obj),
        Kind::Deployment => workloads::validate_deployment(obj),
        Kind::ReplicaSet => workloads::validate_replica_set(obj),
        Kind::DaemonSet => workloads::validate_daemon_set(obj),
        Kind::StatefulSet => workloads::validate_stateful_set(obj),
        Kind::Job => workloads::validate_job(obj),
        Kind::CronJob => workloads::validate_cron_job(obj, old),
        Kind::Service => service::validate_service(obj),
        Kind::Endpoints => service::validate_endpoints(obj),
        Kind::EndpointSlice => service::validate_endpoint_slice(obj),
        Kind::ConfigMap => config::validate_config_map(obj),
        Kind::Secret => config::validate_secret(obj),
        Kind::ServiceAccount => Vec::new(),
        Kind::Namespace => cluster::validate_namespace(obj),
        Kind::Node => cluster::validate_node(obj),
        Kind::PriorityClass => cluster::validate_priority_class(obj),
        Kind::PodDisruptionBudget => policy::validate_pod_disruption_budget(obj),
        Kind::RuntimeClass => node::validate_runtime_class(obj),
        Kind::Lease => cluster::validate_lease(obj),
        Kind::CoreEvent => cluster::validate_event(obj, false),
        Kind::EventsEvent => cluster::validate_event(obj, true),
        Kind::AdmissionPolicy => validate_admission_policy(obj),
        Kind::SchedulerPlugin => validate_scheduler_plugin(obj),
        Kind::Other => Vec::new(),
    }
}

/// The spec rules of wkube.dev scheduler plugins live with the plugins themselves.
fn validate_scheduler_plugin(obj: &Value) -> Vec<FieldError> {
    crate::plugin_host::scheduler::kind::validate_object(obj)
        .into_iter()
        .map(|(field, detail)| FieldError {
            reason: FieldErrorReason::Invalid,
            field,
            detail,
            bad_value: None,
        })
        .collect()
}

/// The spec rules of wkube.dev admission policies live with the policies themselves.
fn validate_admission_policy(obj: &Value) -> Vec<FieldError> {
    let namespaced = obj.get("kind").and_then(Value::as_str) == Some("AdmissionPolicy");
    crate::plugin_host::resource::validate_object(obj, namespaced)
        .into_iter()
        .map(|(field, detail)| FieldError {
            reason: FieldErrorReason::Invalid,
            field,
            detail,
            bad_value: None,
        })
        .collect()
}

/// Kind-specific immutability rules.
fn validate_kind_update(kind: Kind, old: &Value, new: &Value) -> Vec<FieldError> {
    match kind {
        Kind::Pod => pod::validate_pod_update(old, new),
        Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet => {
            workloads::validate_selector_immutable(old, new)
        }
        Kind::StatefulSet => workloads::validate_stateful_set_update(old, new),
        Kind::Job => workloads::validate_job_update(old, new),
        Kind::Service => service::validate_service_update(old, new),
        Kind::ConfigMap => config::validate_config_map_update(old, new),
        Kind::Secret => config::validate_secret_update(old, new),
        Kind::PriorityClass => cluster::validate_priority_class_update(old, new),
        Kind::RuntimeClass => node::validate_runtime_class_update(old, new),
        _ => Vec::new(),
    }
}

/// The value of a resource quantity (`500m` -> 0.5, `1Gi` -> 1073741824), or None if it does not
/// parse. Exact for every realistic value; f64 only loses precision beyond 2^53.
pub fn quantity_value(s: &str) -> Option<f64> {
    quantity::Quantity::parse(s).map(|q| q.approx())
}
