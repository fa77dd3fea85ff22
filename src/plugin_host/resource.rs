//! The API kinds that configure admission policies: `ClusterAdmissionPolicy` and
//! `AdmissionPolicy` (namespaced) in `wkube.dev/v1alpha1`, their schema (for OpenAPI and the
//! typed round trip of every write) and the semantic checks of a spec.
//!
//! Both kinds share one spec; a namespaced policy only sees requests for objects in its own
//! namespace.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const GROUP: &str = "wkube.dev";
pub const VERSION: &str = "v1alpha1";

/// Longest `timeoutSeconds` a policy may ask for (as admission webhooks).
pub const MAX_TIMEOUT_SECONDS: i32 = 30;
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 10;
/// Memory a policy gets unless `memoryLimit` says otherwise.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;

macro_rules! policy_kind {
    ($ty:ident, $kind:literal, $schema:literal, $plural:literal, $scope:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "camelCase")]
        #[schemars(rename = $schema)]
        #[schemars(transform = kubernetes_style)]
        pub struct $ty {
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub api_version: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub kind: Option<String>,
            #[serde(default)]
            pub metadata: ObjectMeta,
            pub spec: AdmissionPolicySpec,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<AdmissionPolicyStatus>,
        }

        impl k8s_openapi::Resource for $ty {
            const API_VERSION: &'static str = "wkube.dev/v1alpha1";
            const GROUP: &'static str = GROUP;
            const KIND: &'static str = $kind;
            const VERSION: &'static str = VERSION;
            const URL_PATH_SEGMENT: &'static str = $plural;
            type Scope = $scope;
        }
    };
}

policy_kind!(
    ClusterAdmissionPolicy,
    "ClusterAdmissionPolicy",
    "dev.wkube.v1alpha1.ClusterAdmissionPolicy",
    "clusteradmissionpolicies",
    k8s_openapi::ClusterResourceScope,
    "An admission policy (a wasm module) that applies to matching requests in every namespace."
);
policy_kind!(
    AdmissionPolicy,
    "AdmissionPolicy",
    "dev.wkube.v1alpha1.AdmissionPolicy",
    "admissionpolicies",
    k8s_openapi::NamespaceResourceScope,
    "An admission policy (a wasm module) that applies to matching requests in its own namespace."
);

/// What a policy runs, on which requests, and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.wkube.v1alpha1.AdmissionPolicySpec", transform = kubernetes_style)]
pub struct AdmissionPolicySpec {
    /// Where the wasm module comes from: exactly one of `image`, `inline`, `configMapKeyRef`.
    pub module: ModuleSource,
    /// The requests the policy sees (as admission webhooks' rules); at least one.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Only objects in namespaces with matching labels (empty: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Only objects with matching labels (empty: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_selector: Option<LabelSelector>,
    /// Call `mutate` (before schema validation) instead of `validate` (after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutating: Option<bool>,
    /// Handed to the policy as JSON on every call; checked by its `validate-settings`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
    /// What a failed call (trap, timeout, memory, malformed answer) means: `Fail` (deny, the
    /// default) or `Ignore` (admit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Fail", "Ignore"]))]
    pub failure_policy: Option<String>,
    /// How long one call may run, 1-30 seconds (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// Most linear memory one call may use, as a quantity (default 64Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    /// Mutating policies only: `IfNeeded` runs the policy once more when a policy after it
    /// changed the object (upstream's webhook reinvocation); `Never` (the default) does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Never", "IfNeeded"]))]
    pub reinvocation_policy: Option<String>,
    /// `protect` enforces; `monitor` admits everything and only warns what it would deny.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["protect", "monitor"]))]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.wkube.v1alpha1.ModuleSource", transform = kubernetes_style)]
pub struct ModuleSource {
    /// An OCI reference of a wasm artifact, pulled like pod images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The module's bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// A key of a ConfigMap's `binaryData` holding the module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeyRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.wkube.v1alpha1.ConfigMapKeyRef", transform = kubernetes_style)]
pub struct ConfigMapKeyRef {
    pub name: String,
    pub key: String,
    /// Required for a ClusterAdmissionPolicy; an AdmissionPolicy uses its own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// One rule, as `admissionregistration.k8s.io/v1` `RuleWithOperations`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.wkube.v1alpha1.Rule", transform = kubernetes_style)]
pub struct Rule {
    /// `""` is the core group; `*` all.
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub api_versions: Vec<String>,
    /// Plurals, `plural/subresource`, `plural/*`, `*/subresource`, `*` or `*/*`.
    #[serde(default)]
    pub resources: Vec<String>,
    /// CREATE, UPDATE, DELETE or `*`.
    #[serde(default)]
    pub operations: Vec<String>,
    /// `Cluster`, `Namespaced` or `*` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Kept as strings in the spec (so that a wrong value is a field error naming the supported
/// ones, not a decoding failure); read through [`AdmissionPolicySpec::failure_policy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    #[default]
    Fail,
    Ignore,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PolicyMode {
    #[default]
    Protect,
    Monitor,
}

/// Set by the server once it has loaded the module and checked the settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.wkube.v1alpha1.AdmissionPolicyStatus", transform = kubernetes_style)]
pub struct AdmissionPolicyStatus {
    /// `Active` (enforced or monitoring) or `Error` (not enforced; see `message`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `sha256:...` of the module in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_digest: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Optional fields as Kubernetes schemas have them: absent, never `null`. (schemars spells
/// `Option<T>` as a union with null, which kubectl's OpenAPI v2 parser refuses.)
pub(crate) fn kubernetes_style(schema: &mut schemars::Schema) {
    use schemars::transform::{RecursiveTransform, Transform as _};
    RecursiveTransform(|s: &mut schemars::Schema| {
        let Some(obj) = s.as_object_mut() else { return };
        obj.remove("nullable");
        if let Some(Value::Array(types)) = obj.get("type") {
            let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
            if let [only] = kept.as_slice() {
                obj.insert("type".into(), only.clone());
            }
        }
        let variants = ["anyOf", "oneOf"]
            .into_iter()
            .find_map(|k| obj.get(k).and_then(Value::as_array).map(|v| (k, v.clone())));
        if let Some((key, variants)) = variants {
            let kept: Vec<&Value> = variants
                .iter()
                .filter(|v| v.get("type") != Some(&Value::from("null")))
                .collect();
            if let [Value::Object(only)] = kept.as_slice() {
                obj.remove(key);
                for (k, v) in only {
                    obj.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    })
    .transform(schema);
}

/// A problem with one field of a spec: (path, message).
pub type SpecError = (String, String);

impl ModuleSource {
    /// Exactly one source is set; a ConfigMap key names its namespace when the object has none
    /// of its own (`namespace_needed_for` says what kind of object that is). Fields are
    /// relative to `spec`.
    pub(crate) fn validate(&self, namespace_needed_for: Option<&str>) -> Vec<SpecError> {
        let mut errs = Vec::new();
        let sources = [
            self.image.is_some(),
            self.inline.is_some(),
            self.config_map_key_ref.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            errs.push((
                "module".into(),
                "exactly one of image, inline or configMapKeyRef must be set".into(),
            ));
        }
        if let (Some(r), Some(kind)) = (&self.config_map_key_ref, namespace_needed_for) {
            if r.namespace.as_deref().unwrap_or("").is_empty() {
                errs.push((
                    "module.configMapKeyRef.namespace".into(),
                    format!("required for {kind}"),
                ));
            }
        }
        errs
    }
}

/// The call limits admission policies and scheduler plugins share: `failurePolicy`,
/// `timeoutSeconds` and `memoryLimit`. Fields are relative to `spec`.
pub(crate) fn validate_call_limits(
    failure_policy: Option<&str>,
    timeout_seconds: Option<i32>,
    memory_limit: Option<&str>,
) -> Vec<SpecError> {
    let mut errs = Vec::new();
    if let Some(f) = failure_policy.filter(|f| !["Fail", "Ignore"].contains(f)) {
        errs.push((
            "failurePolicy".into(),
            format!("unsupported value {f:?}: must be Fail or Ignore"),
        ));
    }
    if let Some(t) = timeout_seconds.filter(|t| !(1..=MAX_TIMEOUT_SECONDS).contains(t)) {
        errs.push((
            "timeoutSeconds".into(),
            format!("{t}: must be between 1 and {MAX_TIMEOUT_SECONDS}"),
        ));
    }
    if let Some(q) = memory_limit {
        if parse_bytes(q).is_none_or(|b| b < 1 << 20) {
            errs.push((
                "memoryLimit".into(),
                format!("{q:?} is not a memory quantity of at least 1Mi"),
            ));
        }
    }
    errs
}

const OPERATIONS: &[&str] = &["CREATE", "UPDATE", "DELETE", "CONNECT", "*"];

impl AdmissionPolicySpec {
    /// The checks the schema cannot express; each error names its field under `spec`.
    pub fn validate(&self, namespaced: bool) -> Vec<SpecError> {
        let mut errs = Vec::new();
        let mut err = |field: &str, msg: String| errs.push((format!("spec.{field}"), msg));
        let namespace_needed = (!namespaced).then_some("a ClusterAdmissionPolicy");
        for (field, msg) in self.module.validate(namespace_needed) {
            err(&field, msg);
        }
        if self.rules.is_empty() {
            err("rules", "at least one rule is required".into());
        }
        for (i, rule) in self.rules.iter().enumerate() {
            for (field, list) in [
                ("apiGroups", &rule.api_groups),
                ("apiVersions", &rule.api_versions),
                ("resources", &rule.resources),
                ("operations", &rule.operations),
            ] {
                if list.is_empty() {
                    err(&format!("rules[{i}].{field}"), "must not be empty".into());
                }
            }
            for op in &rule.operations {
                if !OPERATIONS.contains(&op.as_str()) {
                    err(&format!("rules[{i}].operations"), format!("unsupported operation {op:?}: must be one of CREATE, UPDATE, DELETE, CONNECT, *"));
                }
            }
            if let Some(scope) = &rule.scope {
                if !["Cluster", "Namespaced", "*"].contains(&scope.as_str()) {
                    err(
                        &format!("rules[{i}].scope"),
                        format!("unsupported scope {scope:?}: must be Cluster, Namespaced or *"),
                    );
                }
            }
        }
        let limits = validate_call_limits(
            self.failure_policy.as_deref(),
            self.timeout_seconds,
            self.memory_limit.as_deref(),
        );
        for (field, msg) in limits {
            err(&field, msg);
        }
        if let Some(m) = self
            .mode
            .as_deref()
            .filter(|m| !["protect", "monitor"].contains(m))
        {
            err(
                "mode",
                format!("unsupported value {m:?}: must be protect or monitor"),
            );
        }
        if let Some(r) = self
            .reinvocation_policy
            .as_deref()
            .filter(|r| !["Never", "IfNeeded"].contains(r))
        {
            err(
                "reinvocationPolicy",
                format!("unsupported value {r:?}: must be Never or IfNeeded"),
            );
        }
        errs
    }

    /// `Fail` unless the spec says `Ignore` (validation refuses anything else).
    pub fn failure_policy(&self) -> FailurePolicy {
        match self.failure_policy.as_deref() {
            Some("Ignore") => FailurePolicy::Ignore,
            _ => FailurePolicy::Fail,
        }
    }

    /// `protect` unless the spec says `monitor` (validation refuses anything else).
    pub fn mode(&self) -> PolicyMode {
        match self.mode.as_deref() {
            Some("monitor") => PolicyMode::Monitor,
            _ => PolicyMode::Protect,
        }
    }

    pub fn is_mutating(&self) -> bool {
        self.mutating.unwrap_or(false)
    }

    /// Whether the policy asked to run again when a later one changed the object.
    pub fn reinvoke_if_needed(&self) -> bool {
        self.reinvocation_policy.as_deref() == Some("IfNeeded")
    }
}

/// Parses a memory quantity (`64Mi`, `1G`, `1048576`) into bytes.
pub fn parse_bytes(q: &str) -> Option<u64> {
    const SUFFIXES: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    let (digits, factor) = SUFFIXES
        .iter()
        .find_map(|(s, f)| q.strip_suffix(s).map(|d| (d, *f)))
        .unwrap_or((q, 1));
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

/// Validates a policy object of either kind as stored JSON (for the API's validation step).
pub fn validate_object(object: &Value, namespaced: bool) -> Vec<SpecError> {
    match object
        .get("spec")
        .cloned()
        .map(serde_json::from_value::<AdmissionPolicySpec>)
    {
        Some(Ok(spec)) => spec.validate(namespaced),
        Some(Err(e)) => vec![("spec".into(), e.to_string())],
        None => vec![("spec".into(), "Required value".into())],
    }
}

/// Whether a selector selects these labels; an absent or empty selector selects everything
/// (as for admission webhooks).
pub(crate) fn selects(sel: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    sel.is_none_or(|sel| crate::label_selector::matches(sel, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn specs_are_checked() {
        let spec: AdmissionPolicySpec = serde_json::from_value(serde_json::json!({
            "module": {"inline": "AA==", "image": "x"},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": [], "operations": ["PATCH"]}],
            "timeoutSeconds": 99,
            "failurePolicy": "Maybe",
            "memoryLimit": "lots",
        }))
        .expect("typed");
        let fields: Vec<String> = spec.validate(false).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "spec.module",
                "spec.rules[0].resources",
                "spec.rules[0].operations",
                "spec.failurePolicy",
                "spec.timeoutSeconds",
                "spec.memoryLimit"
            ]
        );
    }

    #[test]
    fn quantities_and_selectors() {
        assert_eq!(parse_bytes("64Mi"), Some(64 << 20));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_bytes("x"), None);
        let labels: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        assert!(selects(None, &labels));
        let sel = LabelSelector {
            match_labels: Some([("a".to_string(), "1".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "b".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
        };
        assert!(selects(Some(&sel), &labels));
        assert!(!selects(Some(&sel), &BTreeMap::new()));
    }
}
