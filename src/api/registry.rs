//! The table of API resources the server knows.
//!
//! Everything generic in the API (routing, discovery, storage keys, OpenAPI, tables) is driven by
//! this one table, so that new kinds — the project's own `wkube.dev` kinds now, and
//! CustomResourceDefinitions later — slot in as rows rather than as new handlers.

use k8s_openapi::api::{apps, batch, coordination, core, discovery, events, scheduling};
use k8s_openapi::Resource as _;

use crate::plugin_host::resource as wkube_policy;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::Value;

/// The built-in kinds that get their own treatment (validation, defaults, table columns), so
/// that dispatch is one `match` rather than string compares everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinKind {
    Pod,
    Namespace,
    Node,
    /// core/v1 Event.
    CoreEvent,
    /// events.k8s.io/v1 Event.
    EventsEvent,
    ConfigMap,
    Secret,
    ServiceAccount,
    Service,
    Endpoints,
    EndpointSlice,
    Lease,
    Deployment,
    ReplicaSet,
    DaemonSet,
    StatefulSet,
    Job,
    CronJob,
    PriorityClass,
    PodDisruptionBudget,
    /// node.k8s.io RuntimeClass (see `super::runtime_class`).
    RuntimeClass,
    /// wkube.dev ClusterAdmissionPolicy and AdmissionPolicy (see `crate::plugin_host`).
    AdmissionPolicy,
    /// wkube.dev SchedulerPlugin (see `crate::plugin_host::scheduler`).
    SchedulerPlugin,
    /// Anything else: the project's own kinds, custom resources.
    Other,
}

impl BuiltinKind {
    /// Chosen by group and kind only: every served version of a kind is treated alike.
    pub fn of(resource: &ResourceInfo) -> BuiltinKind {
        match (resource.group, resource.kind) {
            ("", "Pod") => BuiltinKind::Pod,
            ("", "Namespace") => BuiltinKind::Namespace,
            ("", "Node") => BuiltinKind::Node,
            ("", "Event") => BuiltinKind::CoreEvent,
            ("events.k8s.io", "Event") => BuiltinKind::EventsEvent,
            ("", "ConfigMap") => BuiltinKind::ConfigMap,
            ("", "Secret") => BuiltinKind::Secret,
            ("", "ServiceAccount") => BuiltinKind::ServiceAccount,
            ("", "Service") => BuiltinKind::Service,
            ("", "Endpoints") => BuiltinKind::Endpoints,
            ("discovery.k8s.io", "EndpointSlice") => BuiltinKind::EndpointSlice,
            ("coordination.k8s.io", "Lease") => BuiltinKind::Lease,
            ("apps", "Deployment") => BuiltinKind::Deployment,
            ("apps", "ReplicaSet") => BuiltinKind::ReplicaSet,
            ("apps", "DaemonSet") => BuiltinKind::DaemonSet,
            ("apps", "StatefulSet") => BuiltinKind::StatefulSet,
            ("batch", "Job") => BuiltinKind::Job,
            ("batch", "CronJob") => BuiltinKind::CronJob,
            ("scheduling.k8s.io", "PriorityClass") => BuiltinKind::PriorityClass,
            ("policy", "PodDisruptionBudget") => BuiltinKind::PodDisruptionBudget,
            ("node.k8s.io", "RuntimeClass") => BuiltinKind::RuntimeClass,
            ("wkube.dev", "ClusterAdmissionPolicy" | "AdmissionPolicy") => {
                BuiltinKind::AdmissionPolicy
            }
            ("wkube.dev", "SchedulerPlugin") => BuiltinKind::SchedulerPlugin,
            _ => BuiltinKind::Other,
        }
    }
}

/// A subresource of a resource that the server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    Log,
    /// `pods/eviction`: a delete that honours PodDisruptionBudgets.
    Eviction,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Eviction => "eviction",
        }
    }
}

/// One served resource, e.g. `apps/v1 deployments`.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group; "" for the core (legacy) group served under `/api`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural used in URLs, e.g. `deployments`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Name of the OpenAPI definition of the kind, e.g. `io.k8s.api.core.v1.Pod`.
    pub schema_name: &'static str,
    /// Produces the JSON schema of the kind (schemars, from k8s-openapi's types).
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// Decodes an object into its typed form and back: type errors surface here, unknown fields
    /// are dropped, and the JSON comes out in canonical form.
    pub roundtrip: fn(Value) -> Result<Value, serde_json::Error>,
}

impl ResourceInfo {
    /// `apps/v1` or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The URL prefix of the group version: `/api/v1` or `/apis/apps/v1`.
    pub fn group_version_path(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The group used in storage keys; the core group is stored as `core`.
    pub fn storage_group(&self) -> &'static str {
        if self.group.is_empty() {
            "core"
        } else {
            self.group
        }
    }

    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The verbs this resource supports, as discovery lists them.
    pub fn verbs(&self) -> &'static [&'static str] {
        &[
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
const STATUS: &[Subresource] = &[Subresource::Status];
const STATUS_SCALE: &[Subresource] = &[Subresource::Status, Subresource::Scale];

fn roundtrip_as<T: serde::de::DeserializeOwned + serde::Serialize>(
    value: Value,
) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(value)?;
    serde_json::to_value(typed)
}

fn schema_of<T: JsonSchema>(gen: &mut SchemaGenerator) -> Schema {
    gen.subschema_for::<T>()
}

macro_rules! builtin {
    ($ty:ty, plural: $plural:literal, singular: $singular:literal, namespaced: $ns:expr,
     short: $short:expr, categories: $cat:expr, sub: $sub:expr) => {
        ResourceInfo {
            group: <$ty>::GROUP,
            version: <$ty>::VERSION,
            kind: <$ty>::KIND,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            subresources: $sub,
            schema_name: schema_name_of::<$ty>(),
            schema: schema_of::<$ty>,
            roundtrip: roundtrip_as::<$ty>,
        }
    };
}

/// The definition name k8s-openapi gives a type (a `'static` string in every generated impl).
fn schema_name_of<T: JsonSchema>() -> &'static str {
    match T::schema_name() {
        std::borrow::Cow::Borrowed(name) => name,
        std::borrow::Cow::Owned(name) => Box::leak(name.into_boxed_str()),
    }
}

/// All resources served by the API, in discovery order.
#[derive(Debug, Clone)]
pub struct Registry {
    resources: Vec<ResourceInfo>,
}

impl Registry {
    /// The built-in Kubernetes kinds wkube serves.
    pub fn builtin() -> Self {
        let resources = vec![
            builtin!(core::v1::Namespace, plural: "namespaces", singular: "namespace", namespaced: false,
                short: &["ns"], categories: NONE, sub: STATUS),
            builtin!(core::v1::Pod, plural: "pods", singular: "pod", namespaced: true,
                short: &["po"], categories: ALL,
                sub: &[Subresource::Status, Subresource::Binding, Subresource::Eviction, Subresource::Log]),
            builtin!(core::v1::Node, plural: "nodes", singular: "node", namespaced: false,
                short: &["no"], categories: NONE, sub: STATUS),
            builtin!(core::v1::Event, plural: "events", singular: "event", namespaced: true,
                short: &["ev"], categories: NONE, sub: &[]),
            builtin!(core::v1::ConfigMap, plural: "configmaps", singular: "configmap", namespaced: true,
                short: &["cm"], categories: NONE, sub: &[]),
            builtin!(core::v1::Secret, plural: "secrets", singular: "secret", namespaced: true,
                short: NONE, categories: NONE, sub: &[]),
            builtin!(core::v1::ServiceAccount, plural: "serviceaccounts", singular: "serviceaccount",
                namespaced: true, short: &["sa"], categories: NONE, sub: &[]),
            builtin!(core::v1::Service, plural: "services", singular: "service", namespaced: true,
                short: &["svc"], categories: ALL, sub: STATUS),
            builtin!(core::v1::Endpoints, plural: "endpoints", singular: "endpoints", namespaced: true,
                short: &["ep"], categories: NONE, sub: &[]),
            builtin!(discovery::v1::EndpointSlice, plural: "endpointslices", singular: "endpointslice",
                namespaced: true, short: NONE, categories: NONE, sub: &[]),
            builtin!(coordination::v1::Lease, plural: "leases", singular: "lease", namespaced: true,
                short: NONE, categories: NONE, sub: &[]),
            builtin!(events::v1::Event, plural: "events", singular: "event", namespaced: true,
                short: NONE, categories: NONE, sub: &[]),
            builtin!(apps::v1::Deployment, plural: "deployments", singular: "deployment", namespaced: true,
                short: &["deploy"], categories: ALL, sub: STATUS_SCALE),
            builtin!(apps::v1::ReplicaSet, plural: "replicasets", singular: "replicaset", namespaced: true,
                short: &["rs"], categories: ALL, sub: STATUS_SCALE),
            builtin!(apps::v1::DaemonSet, plural: "daemonsets", singular: "daemonset", namespaced: true,
                short: &["ds"], categories: ALL, sub: STATUS),
            builtin!(apps::v1::StatefulSet, plural: "statefulsets", singular: "statefulset", namespaced: true,
                short: &["sts"], categories: ALL, sub: STATUS_SCALE),
            builtin!(batch::v1::Job, plural: "jobs", singular: "job", namespaced: true,
                short: NONE, categories: ALL, sub: STATUS),
            builtin!(batch::v1::CronJob, plural: "cronjobs", singular: "cronjob", namespaced: true,
                short: &["cj"], categories: ALL, sub: STATUS),
            builtin!(scheduling::v1::PriorityClass, plural: "priorityclasses", singular: "priorityclass",
                namespaced: false, short: &["pc"], categories: NONE, sub: &[]),
            builtin!(k8s_openapi::api::policy::v1::PodDisruptionBudget, plural: "poddisruptionbudgets",
                singular: "poddisruptionbudget", namespaced: true, short: &["pdb"], categories: NONE,
                sub: STATUS),
            builtin!(k8s_openapi::api::node::v1::RuntimeClass, plural: "runtimeclasses",
                singular: "runtimeclass", namespaced: false, short: NONE, categories: NONE, sub: &[]),
            // wkube's own kinds.
            builtin!(wkube_policy::ClusterAdmissionPolicy, plural: "clusteradmissionpolicies",
                singular: "clusteradmissionpolicy", namespaced: false, short: &["cap"],
                categories: NONE, sub: STATUS),
            builtin!(wkube_policy::AdmissionPolicy, plural: "admissionpolicies", singular: "admissionpolicy",
                namespaced: true, short: &["ap"], categories: NONE, sub: STATUS),
            builtin!(crate::plugin_host::scheduler::kind::SchedulerPlugin, plural: "schedulerplugins",
                singular: "schedulerplugin", namespaced: false, short: &["schedplug"],
                categories: NONE, sub: STATUS),
        ];
        Registry { resources }
    }

    pub fn resources(&self) -> &[ResourceInfo] {
        &self.resources
    }

    /// Looks a resource up by group, version and plural (as found in a URL).
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Looks a resource up by its group, version and kind (as found in an object body).
    pub fn find_kind(&self, group: &str, version: &str, kind: &str) -> Option<&ResourceInfo> {
        self.resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// The served (group, version) pairs, in discovery order, without duplicates.
    pub fn group_versions(&self) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&'static str, &'static str)> = Vec::new();
        for r in &self.resources {
            if !out.contains(&(r.group, r.version)) {
                out.push((r.group, r.version));
            }
        }
        out
    }

    /// Resources of one group version.
    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceInfo> + 'a {
        self.resources
            .iter()
            .filter(move |r| r.group == group && r.version == version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_kinds_are_unique_by_url_and_kind() {
        let reg = Registry::builtin();
        for (i, a) in reg.resources().iter().enumerate() {
            for b in &reg.resources()[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "duplicate resource {}/{} {}",
                    a.group,
                    a.version,
                    a.plural
                );
            }
        }
        let pod = reg.find("", "v1", "pods").expect("pods are served");
        assert_eq!(pod.kind, "Pod");
        assert_eq!(pod.schema_name, "io.k8s.api.core.v1.Pod");
        assert_eq!(pod.group_version_path(), "/api/v1");
        let deploy = reg
            .find_kind("apps", "v1", "Deployment")
            .expect("deployments");
        assert_eq!(deploy.group_version_path(), "/apis/apps/v1");
        assert_eq!(deploy.api_version(), "apps/v1");
    }
}
