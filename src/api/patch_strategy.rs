//! Patch metadata that Kubernetes keeps in Go struct tags and comment markers.
//!
//! Upstream, `patchStrategy:"merge" patchMergeKey:"name"` struct tags and `+listType=map` /
//! `+listMapKey=…` / `+mapType=…` / `+structType=…` markers on the Go API types end up in the
//! published OpenAPI as `x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`.
//! k8s-openapi's schemars schemas do not carry them, yet `kubectl apply` computes its strategic
//! merge patch from exactly these extensions, and the server needs them to apply such a patch.
//! So this module restates them as a table (transcribed from the Go types of kubernetes/api and
//! apimachinery at v0.33, matching k8s-openapi's `v1_33` feature) and injects them into schemas.
//!
//! The table covers every definition reachable from the kinds in the registry (plus the
//! subresource and meta types the OpenAPI documents add); entries for definitions that are not
//! present are simply skipped by [`inject`].

use serde_json::{Map, Value};

/// The OpenAPI extension naming a field's patch strategy (`merge`, `retainKeys`, `merge,retainKeys`).
pub const PATCH_STRATEGY: &str = "x-kubernetes-patch-strategy";
/// The OpenAPI extension naming the key that identifies elements of a merged list.
pub const PATCH_MERGE_KEY: &str = "x-kubernetes-patch-merge-key";
/// The OpenAPI extension describing list semantics for server-side apply (`atomic`, `set`, `map`).
pub const LIST_TYPE: &str = "x-kubernetes-list-type";
/// The OpenAPI extension listing the keys of a `map`-typed list.
pub const LIST_MAP_KEYS: &str = "x-kubernetes-list-map-keys";
/// The OpenAPI extension describing map/struct semantics for server-side apply (`atomic`, `granular`).
pub const MAP_TYPE: &str = "x-kubernetes-map-type";

/// Patch metadata of one property of a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldPatchMeta {
    /// JSON name of the property.
    pub property: &'static str,
    pub patch_strategy: Option<&'static str>,
    pub patch_merge_key: Option<&'static str>,
    pub list_type: Option<&'static str>,
    pub list_map_keys: &'static [&'static str],
    pub map_type: Option<&'static str>,
}

/// Short alias so the table below stays readable.
type F = FieldPatchMeta;

impl FieldPatchMeta {
    /// A property with no metadata yet; the builder methods below add it.
    pub const fn new(property: &'static str) -> Self {
        FieldPatchMeta {
            property,
            patch_strategy: None,
            patch_merge_key: None,
            list_type: None,
            list_map_keys: &[],
            map_type: None,
        }
    }

    const fn strategy(mut self, strategy: &'static str) -> Self {
        self.patch_strategy = Some(strategy);
        self
    }

    const fn merge_key(mut self, key: &'static str) -> Self {
        self.patch_merge_key = Some(key);
        self
    }

    const fn list_type(mut self, list_type: &'static str) -> Self {
        self.list_type = Some(list_type);
        self
    }

    /// `+listType=map` with its `+listMapKey`s.
    const fn list_map(mut self, keys: &'static [&'static str]) -> Self {
        self.list_type = Some("map");
        self.list_map_keys = keys;
        self
    }

    const fn map_type(mut self, map_type: &'static str) -> Self {
        self.map_type = Some(map_type);
        self
    }

    /// The extensions this metadata contributes to the property's schema.
    pub fn extensions(&self) -> Map<String, Value> {
        let mut ext = Map::new();
        if let Some(s) = self.patch_strategy {
            ext.insert(PATCH_STRATEGY.into(), s.into());
        }
        if let Some(k) = self.patch_merge_key {
            ext.insert(PATCH_MERGE_KEY.into(), k.into());
        }
        if let Some(t) = self.list_type {
            ext.insert(LIST_TYPE.into(), t.into());
        }
        if !self.list_map_keys.is_empty() {
            let keys = self.list_map_keys.iter().map(|k| Value::from(*k)).collect();
            ext.insert(LIST_MAP_KEYS.into(), Value::Array(keys));
        }
        if let Some(t) = self.map_type {
            ext.insert(MAP_TYPE.into(), t.into());
        }
        ext
    }
}

/// The patch metadata of `property` in the definition named `definition`, if any.
pub fn lookup(definition: &str, property: &str) -> Option<&'static FieldPatchMeta> {
    FIELDS
        .iter()
        .find(|(name, _)| *name == definition)
        .and_then(|(_, fields)| fields.iter().find(|f| f.property == property))
}

/// Adds the patch extensions to the properties of every definition in `definitions` (a map
/// from definition name to schema, as in `#/definitions` or `#/components/schemas`).
///
/// Call this before any transform that restructures `$ref` siblings, so that extensions on a
/// `$ref`-typed property (e.g. `DeploymentSpec.strategy`) travel with its description.
pub fn inject(definitions: &mut Map<String, Value>) {
    for (name, fields) in FIELDS {
        let Some(properties) = definitions
            .get_mut(*name)
            .and_then(|d| d.get_mut("properties"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for field in *fields {
            if let Some(Value::Object(prop)) = properties.get_mut(field.property) {
                prop.extend(field.extensions());
            }
        }
    }
    for name in ATOMIC_STRUCTS {
        if let Some(Value::Object(def)) = definitions.get_mut(*name) {
            def.insert(MAP_TYPE.into(), "atomic".into());
        }
    }
}

/// Per definition, the properties that carry patch metadata (`+listType=atomic` included, since
/// it matters to server-side apply even where it does not change strategic merge).
pub static FIELDS: &[(&str, &[F])] = &[
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        &[F::new("conditions")
            .strategy("merge")
            .merge_key("type")
            .list_map(&["type"])],
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        &[F::new("strategy").strategy("retainKeys")],
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        &[F::new("conditions")
            .strategy("merge")
            .merge_key("type")
            .list_map(&["type"])],
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        &[F::new("conditions")
            .strategy("merge")
            .merge_key("type")
            .list_map(&["type"])],
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetSpec",
        &[F::new("volumeClaimTemplates").list_type("atomic")],
    ),
    (
        "io.k8s.api.apps.v1.StatefulSetStatus",
        &[F::new("conditions")
            .strategy("merge")
            .merge_key("type")
            .list_map(&["type"])],
    ),
    (
        "io.k8s.api.batch.v1.CronJobStatus",
        &[F::new("active").list_type("atomic")],
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        &[F::new("conditions")
            .strategy("merge")
            .merge_key("type")
            .list_type("atomic")],
    ),
    (
        "io.k8s.api.batch.v1.PodFailurePolicy",
        &[F::new("rules").list_type("atomic")],
    ),
    (
        "io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement",
        &[F::new("values").list_type("set")],
    ),
    (
        "io.k8s.api.batch.v1.PodFailurePolicyRule",
        &[F::new("onPodConditions").list_type("atomic")],
    ),
    (
        "io.k8s.api.batch.v1.SuccessPolicy",
        &[F::new("rules").list_type("atomic")],
    ),
    (
        "io.k8s.api.batch.v1.UncountedTerminatedPods",
        &[
            F::new("failed").list_type("set"),
            F::new("succeeded").list_type("set"),
        ],
    ),
    (
        "io.k8s.api.core.v1.Capabilities",
        &[
            F::new("add").list_type("atomic"),
            F::new("drop").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.CephFSVolumeSource",
        &[F::new("monitors").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.ConfigMapProjection",
        &[F::new("items").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.ConfigMapVolumeSource",
        &[F::new("items").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.Container",
        &[
            F::new("args").list_type("atomic"),
            F::new("command").list_type("atomic"),
            F::new("env")
                .strategy("merge")
                .merge_key("name")
                .list_map(&["name"]),
            F::new("envFrom").list_type("atomic"),
            F::new("ports")
                .strategy("merge")
                .merge_key("containerPort")
                .list_map(&["containerPort", "protocol"]),
            F::new("resizePolicy").list_type("atomic"),
            F::new("volumeDevices")
                .strategy("merge")
                .merge_key("devicePath")
                .list_map(&["devicePath"]),
            F::new("volumeMounts")
                .strategy("merge")
                .merge_key("mountPath")
                .list_map(&["mountPath"]),
        ],
    ),
    (
        "io.k8s.api.core.v1.ContainerImage",
        &[F::new("names").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.ContainerStatus",
        &[
            F::new("allocatedResourcesStatus")
                .strategy("merge")
                .merge_key("name")
                .list_map(&["name"]),
            F::new("volumeMounts")
                .strategy("merge")
                .merge_key("mountPath")
                .list_map(&["mountPath"]),
        ],
    ),
    (
        "io.k8s.api.core.v1.DownwardAPIProjection",
        &[F::new("items").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.DownwardAPIVolumeSource",
        &[F::new("items").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.EndpointSubset",
        &[
            F::new("addresses").list_type("atomic"),
            F::new("notReadyAddresses").list_type("atomic"),
            F::new("ports").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.Endpoints",
        &[F::new("subsets").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        &[
            F::new("args").list_type("atomic"),
            F::new("command").list_type("atomic"),
            F::new("env")
                .strategy("merge")
                .merge_key("name")
                .list_map(&["name"]),
            F::new("envFrom").list_type("atomic"),
            F::new("ports")
                .strategy("merge")
                .merge_key("containerPort")
                .list_map(&["containerPort", "protocol"]),
            F::new("resizePolicy").list_type("atomic"),
            F::new("volumeDevices")
                .strategy("merge")
                .merge_key("devicePath")
                .list_map(&["devicePath"]),
            F::new("volumeMounts")
                .strategy("merge")
                .merge_key("mountPath")
                .list_map(&["mountPath"]),
        ],
    ),
    (
        "io.k8s.api.core.v1.ExecAction",
        &[F::new("command").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.FCVolumeSource",
        &[
            F::new("targetWWNs").list_type("atomic"),
            F::new("wwids").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.HTTPGetAction",
        &[F::new("httpHeaders").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.HostAlias",
        &[F::new("hostnames").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.ISCSIVolumeSource",
        &[F::new("portals").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.LinuxContainerUser",
        &[F::new("supplementalGroups").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.LoadBalancerIngress",
        &[F::new("ports").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.LoadBalancerStatus",
        &[F::new("ingress").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.NamespaceSpec",
        &[F::new("finalizers").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        &[F::new("conditions")
            .strategy("merge")
            .merge_key("type")
            .list_map(&["type"])],
    ),
    (
        "io.k8s.api.core.v1.NodeAffinity",
        &[F::new("preferredDuringSchedulingIgnoredDuringExecution").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.NodeSelector",
        &[F::new("nodeSelectorTerms").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.NodeSelectorRequirement",
        &[F::new("values").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.NodeSelectorTerm",
        &[
            F::new("matchExpressions").list_type("atomic"),
            F::new("matchFields").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.NodeSpec",
        &[
            F::new("podCIDRs").strategy("merge").list_type("set"),
            F::new("taints").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        &[
            F::new("addresses")
                .strategy("merge")
                .merge_key("type")
                .list_map(&["type"]),
            F::new("conditions")
                .strategy("merge")
                .merge_key("type")
                .list_map(&["type"]),
            F::new("images").list_type("atomic"),
            F::new("runtimeHandlers").list_type("atomic"),
            F::new("volumesAttached").list_type("atomic"),
            F::new("volumesInUse").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimSpec",
        &[F::new("accessModes").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
        &[
            F::new("accessModes").list_type("atomic"),
            F::new("allocatedResourceStatuses").map_type("granular"),
            F::new("conditions")
                .strategy("merge")
                .merge_key("type")
                .list_map(&["type"]),
        ],
    ),
    (
        "io.k8s.api.core.v1.PodAffinity",
        &[
            F::new("preferredDuringSchedulingIgnoredDuringExecution").list_type("atomic"),
            F::new("requiredDuringSchedulingIgnoredDuringExecution").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.PodAffinityTerm",
        &[
            F::new("matchLabelKeys").list_type("atomic"),
            F::new("mismatchLabelKeys").list_type("atomic"),
            F::new("namespaces").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.PodAntiAffinity",
        &[
            F::new("preferredDuringSchedulingIgnoredDuringExecution").list_type("atomic"),
            F::new("requiredDuringSchedulingIgnoredDuringExecution").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.PodDNSConfig",
        &[
            F::new("nameservers").list_type("atomic"),
            F::new("options").list_type("atomic"),
            F::new("searches").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.PodSecurityContext",
        &[
            F::new("supplementalGroups").list_type("atomic"),
            F::new("sysctls").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        &[
            F::new("containers")
                .strategy("merge")
                .merge_key("name")
                .list_map(&["name"]),
            F::new("ephemeralContainers")
                .strategy("merge")
                .merge_key("name")
                .list_map(&["name"]),
            F::new("hostAliases")
                .strategy("merge")
                .merge_key("ip")
                .list_map(&["ip"]),
            F::new("imagePullSecrets")
                .strategy("merge")
                .merge_key("name")
                .list_map(&["name"]),
            F::new("initContainers")
                .strategy("merge")
                .merge_key("name")
                .list_map(&["name"]),
            F::new("nodeSelector").map_type("atomic"),
            F::new("readinessGates").list_type("atomic"),
            F::new("resourceClaims")
                .strategy("merge,retainKeys")
                .merge_key("name")
                .list_map(&["name"]),
            F::new("schedulingGates")
                .strategy("merge")
                .merge_key("name")
                .list_map(&["name"]),
            F::new("tolerations").list_type("atomic"),
            F::new("topologySpreadConstraints")
                .strategy("merge")
                .merge_key("topologyKey")
                .list_map(&["topologyKey", "whenUnsatisfiable"]),
            F::new("volumes")
                .strategy("merge,retainKeys")
                .merge_key("name")
                .list_map(&["name"]),
        ],
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        &[
            F::new("conditions")
                .strategy("merge")
                .merge_key("type")
                .list_map(&["type"]),
            F::new("containerStatuses").list_type("atomic"),
            F::new("ephemeralContainerStatuses").list_type("atomic"),
            F::new("hostIPs")
                .strategy("merge")
                .merge_key("ip")
                .list_type("atomic"),
            F::new("initContainerStatuses").list_type("atomic"),
            F::new("podIPs")
                .strategy("merge")
                .merge_key("ip")
                .list_map(&["ip"]),
            F::new("resourceClaimStatuses")
                .strategy("merge,retainKeys")
                .merge_key("name")
                .list_map(&["name"]),
        ],
    ),
    (
        "io.k8s.api.core.v1.ProjectedVolumeSource",
        &[F::new("sources").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.RBDVolumeSource",
        &[F::new("monitors").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.ResourceRequirements",
        &[F::new("claims").list_map(&["name"])],
    ),
    (
        "io.k8s.api.core.v1.ResourceStatus",
        &[F::new("resources").list_map(&["resourceID"])],
    ),
    (
        "io.k8s.api.core.v1.SecretProjection",
        &[F::new("items").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.SecretVolumeSource",
        &[F::new("items").list_type("atomic")],
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        &[
            F::new("imagePullSecrets").list_type("atomic"),
            F::new("secrets")
                .strategy("merge")
                .merge_key("name")
                .list_map(&["name"]),
        ],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        &[
            F::new("clusterIPs").list_type("atomic"),
            F::new("externalIPs").list_type("atomic"),
            F::new("ipFamilies").list_type("atomic"),
            F::new("loadBalancerSourceRanges").list_type("atomic"),
            F::new("ports")
                .strategy("merge")
                .merge_key("port")
                .list_map(&["port", "protocol"]),
            F::new("selector").map_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        &[F::new("conditions")
            .strategy("merge")
            .merge_key("type")
            .list_map(&["type"])],
    ),
    (
        "io.k8s.api.core.v1.TopologySpreadConstraint",
        &[F::new("matchLabelKeys").list_type("atomic")],
    ),
    (
        "io.k8s.api.discovery.v1.Endpoint",
        &[F::new("addresses").list_type("set")],
    ),
    (
        "io.k8s.api.discovery.v1.EndpointHints",
        &[
            F::new("forNodes").list_type("atomic"),
            F::new("forZones").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.api.discovery.v1.EndpointSlice",
        &[
            F::new("endpoints").list_type("atomic"),
            F::new("ports").list_type("atomic"),
        ],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        &[F::new("dryRun").list_type("atomic")],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
        &[F::new("matchExpressions").list_type("atomic")],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelectorRequirement",
        &[F::new("values").list_type("atomic")],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        &[
            F::new("finalizers").strategy("merge").list_type("set"),
            F::new("managedFields").list_type("atomic"),
            F::new("ownerReferences")
                .strategy("merge")
                .merge_key("uid")
                .list_map(&["uid"]),
        ],
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.StatusDetails",
        &[F::new("causes").list_type("atomic")],
    ),
];

pub static ATOMIC_STRUCTS: &[&str] = &[
    "io.k8s.api.core.v1.ConfigMapKeySelector",
    "io.k8s.api.core.v1.EndpointAddress",
    "io.k8s.api.core.v1.EndpointPort",
    "io.k8s.api.core.v1.LocalObjectReference",
    "io.k8s.api.core.v1.NodeSelector",
    "io.k8s.api.core.v1.NodeSelectorTerm",
    "io.k8s.api.core.v1.ObjectFieldSelector",
    "io.k8s.api.core.v1.ObjectReference",
    "io.k8s.api.core.v1.ResourceFieldSelector",
    "io.k8s.api.core.v1.SecretKeySelector",
    "io.k8s.api.core.v1.TypedLocalObjectReference",
    "io.k8s.api.discovery.v1.EndpointPort",
    "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector",
    "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_extensions() {
        let containers = lookup("io.k8s.api.core.v1.PodSpec", "containers").expect("containers");
        assert_eq!(containers.patch_merge_key, Some("name"));
        let ext = containers.extensions();
        assert_eq!(ext[PATCH_STRATEGY], "merge");
        assert_eq!(ext[LIST_MAP_KEYS], serde_json::json!(["name"]));
        let ports = lookup("io.k8s.api.core.v1.ServiceSpec", "ports").expect("ports");
        assert_eq!(ports.list_map_keys, ["port", "protocol"]);
        let finalizers = lookup(
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
        );
        assert_eq!(finalizers.and_then(|f| f.patch_merge_key), None);
        assert_eq!(finalizers.and_then(|f| f.list_type), Some("set"));
        assert!(lookup("io.k8s.api.core.v1.PodSpec", "hostname").is_none());
        assert!(lookup("io.k8s.api.core.v1.Nope", "containers").is_none());
    }
}
