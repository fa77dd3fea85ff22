//! The `SchedulerPlugin` kind (`wkube.dev/v1alpha1`, cluster-scoped): a wasm module that
//! joins the scheduler's filter/score framework for the profiles (`schedulerName`s) it names.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::plugin_host::resource::{
    kubernetes_style, validate_call_limits, AdmissionPolicyStatus, ModuleSource, SpecError, GROUP,
    VERSION,
};

/// A scheduler call's default deadline: a scheduling cycle waits for it, so it is short.
pub const DEFAULT_TIMEOUT_SECONDS: i32 = 1;
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
pub const EXTENSION_POINTS: &[&str] = &["PreFilter", "Filter", "Score"];

/// A scheduler plugin (a wasm module) run for the pods of the profiles it names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.wkube.v1alpha1.SchedulerPlugin", transform = kubernetes_style)]
pub struct SchedulerPlugin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: SchedulerPluginSpec,
    /// `Active` or `Error`, the module digest and the generation they describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AdmissionPolicyStatus>,
}

impl k8s_openapi::Resource for SchedulerPlugin {
    const API_VERSION: &'static str = "wkube.dev/v1alpha1";
    const GROUP: &'static str = GROUP;
    const KIND: &'static str = "SchedulerPlugin";
    const VERSION: &'static str = VERSION;
    const URL_PATH_SEGMENT: &'static str = "schedulerplugins";
    type Scope = k8s_openapi::ClusterResourceScope;
}

/// What the plugin runs, where in the framework, and how.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "dev.wkube.v1alpha1.SchedulerPluginSpec", transform = kubernetes_style)]
pub struct SchedulerPluginSpec {
    /// Where the wasm module comes from: exactly one of `image`, `inline`, `configMapKeyRef`
    /// (whose `namespace` is required).
    pub module: ModuleSource,
    /// Which of `PreFilter`, `Filter`, `Score` the scheduler calls; at least one.
    #[serde(default)]
    pub extension_points: Vec<String>,
    /// Multiplies the plugin's normalized scores (0-100), 1-100 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Handed to the plugin's `configure` as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
    /// What a failed call (trap, timeout, memory, malformed answer) means: `Fail` (the pod is
    /// not placed this cycle, the default) or `Ignore` (the plugin is skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Fail", "Ignore"]))]
    pub failure_policy: Option<String>,
    /// How long one call may run, 1-30 seconds (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    /// Most linear memory the instance may use, as a quantity (default 64Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
    /// The `schedulerName`s whose pods this plugin serves (default `[default-scheduler]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
}

impl SchedulerPluginSpec {
    /// The checks the schema cannot express; each error names its field under `spec`.
    pub fn validate(&self) -> Vec<SpecError> {
        let mut errs = Vec::new();
        let mut err = |field: &str, msg: String| errs.push((format!("spec.{field}"), msg));
        // A SchedulerPlugin is cluster-scoped: a ConfigMap source names its namespace.
        for (field, msg) in self.module.validate(Some("a SchedulerPlugin")) {
            err(&field, msg);
        }
        if self.extension_points.is_empty() {
            err(
                "extensionPoints",
                "name at least one of PreFilter, Filter, Score".into(),
            );
        }
        for (i, p) in self.extension_points.iter().enumerate() {
            if !EXTENSION_POINTS.contains(&p.as_str()) {
                err(
                    &format!("extensionPoints[{i}]"),
                    format!("unsupported value {p:?}: supported values: \"PreFilter\", \"Filter\", \"Score\""),
                );
            }
        }
        if let Some(w) = self.weight {
            if !(1..=100).contains(&w) {
                err("weight", format!("{w}: must be between 1 and 100"));
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
        for (i, p) in self.profiles.iter().enumerate() {
            if p.is_empty() {
                err(&format!("profiles[{i}]"), "must not be empty".into());
            }
        }
        errs
    }

    pub fn has(&self, point: &str) -> bool {
        self.extension_points.iter().any(|p| p == point)
    }

    pub fn profiles(&self) -> Vec<String> {
        if self.profiles.is_empty() {
            vec![crate::scheduler::DEFAULT_SCHEDULER_NAME.to_string()]
        } else {
            self.profiles.clone()
        }
    }
}

/// Decodes and checks a SchedulerPlugin object (the API server's validation hook).
pub fn validate_object(object: &Value) -> Vec<SpecError> {
    match object
        .get("spec")
        .cloned()
        .map(serde_json::from_value::<SchedulerPluginSpec>)
    {
        None => vec![("spec".into(), "required".into())],
        Some(Err(e)) => vec![("spec".into(), e.to_string())],
        Some(Ok(spec)) => spec.validate(),
    }
}
