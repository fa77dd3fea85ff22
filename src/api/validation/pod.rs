//! Pod and pod-template validation (upstream's `ValidatePodSpec`, `ValidatePodUpdate`).

use super::json::{arr_of, at, int_of, obj_of, opt_str, present, str_of, sub};
use super::meta::{
    validate_annotations, validate_label_name, validate_labels, validate_nonnegative,
};
use super::names::{
    inclusive_range_error, is_config_map_key, is_dns1123_label, is_dns1123_subdomain,
    is_env_var_name, is_label_value, is_valid_port_name, is_valid_port_num,
};
use super::quantity::{self, Quantity, QUANTITY_FORMAT_ERR};
use super::render::{json, quote};
use super::{FieldError, Path};
use serde_json::{Map, Value};
use std::collections::HashSet;

const MAX_INT32: i64 = i32::MAX as i64;
const FILE_MODE_ERR: &str = "must be a number between 0 and 0777 (octal), both inclusive";

/// Every field of a v1 `VolumeSource`, in the order upstream checks them (the first one set
/// wins; later ones are reported as extra); a volume must set exactly one.
pub(super) const VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// The downward-API paths an env var may reference (besides label/annotation subscripts).
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Whether a container is a regular, init or sidecar (init with restartPolicy Always) one;
/// upstream applies different rules to each.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ContainerKind {
    Regular,
    Init,
}

/// Validates a Pod object's spec.
pub(crate) fn validate_pod(pod: &Value) -> Vec<FieldError> {
    validate_pod_spec(sub(pod, &["spec"]), &Path::new("spec"))
}

/// Validates a `PodTemplateSpec` at `path` (e.g. `spec.template`). Upstream reports template
/// labels at `<path>.labels`, not `<path>.metadata.labels`; that quirk is kept.
pub(crate) fn validate_pod_template(template: &Value, path: &Path) -> Vec<FieldError> {
    let meta = sub(template, &["metadata"]);
    let mut errs = validate_labels(meta.get("labels"), &path.child("labels"));
    errs.extend(validate_annotations(
        meta.get("annotations"),
        &path.child("annotations"),
    ));
    let spec = sub(template, &["spec"]);
    errs.extend(validate_pod_spec(spec, &path.child("spec")));
    if !arr_of(spec, "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// Validates a `PodSpec` at `path`.
pub(crate) fn validate_pod_spec(spec: &Value, path: &Path) -> Vec<FieldError> {
    let (volumes, mut errs) = validate_volumes(arr_of(spec, "volumes"), &path.child("volumes"));
    errs.extend(validate_all_containers(spec, path, &volumes));
    errs.extend(validate_restart_policy(spec, path));
    errs.extend(validate_dns_policy(spec, path));
    errs.extend(validate_labels(
        spec.get("nodeSelector"),
        &path.child("nodeSelector"),
    ));
    errs.extend(validate_spec_names(spec, path));
    if let Some(ads) = int_of(spec, "activeDeadlineSeconds") {
        if !(1..=MAX_INT32).contains(&ads) {
            errs.push(FieldError::invalid(
                &path.child("activeDeadlineSeconds"),
                ads.to_string(),
                &inclusive_range_error(1, MAX_INT32),
            ));
        }
    }
    errs.extend(validate_tolerations(
        arr_of(spec, "tolerations"),
        &path.child("tolerations"),
    ));
    errs.extend(validate_host_network_ports(spec, path));
    errs
}

/// Regular containers are required; names are unique across regular and init containers.
fn validate_all_containers(
    spec: &Value,
    path: &Path,
    volumes: &HashSet<String>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    let containers = arr_of(spec, "containers");
    let ctr_path = path.child("containers");
    if containers.is_empty() {
        errs.push(FieldError::required(&ctr_path, ""));
    }
    for (i, c) in containers.iter().enumerate() {
        errs.extend(validate_container(
            c,
            &ctr_path.index(i),
            volumes,
            &mut names,
            ContainerKind::Regular,
        ));
    }
    let init_path = path.child("initContainers");
    for (i, c) in arr_of(spec, "initContainers").iter().enumerate() {
        errs.extend(validate_container(
            c,
            &init_path.index(i),
            volumes,
            &mut names,
            ContainerKind::Init,
        ));
    }
    errs
}

fn validate_restart_policy(spec: &Value, path: &Path) -> Vec<FieldError> {
    let p = path.child("restartPolicy");
    match str_of(spec, "restartPolicy") {
        "" => vec![FieldError::required(&p, "")],
        "Always" | "OnFailure" | "Never" => Vec::new(),
        other => vec![FieldError::not_supported(
            &p,
            quote(other),
            &["Always", "OnFailure", "Never"],
        )],
    }
}

fn validate_dns_policy(spec: &Value, path: &Path) -> Vec<FieldError> {
    let p = path.child("dnsPolicy");
    match str_of(spec, "dnsPolicy") {
        "" => vec![FieldError::required(&p, "")],
        "None" if present(spec, "dnsConfig").is_none() => vec![FieldError::required(
            &path.child("dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        )],
        "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None" => Vec::new(),
        other => vec![FieldError::not_supported(
            &p,
            quote(other),
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        )],
    }
}

/// References by name to other objects (service account, node, priority class) and the DNS
/// names the pod will carry.
fn validate_spec_names(spec: &Value, path: &Path) -> Vec<FieldError> {
    type Check = fn(&str) -> Vec<String>;
    let checks: [(&str, Check); 5] = [
        ("serviceAccountName", is_dns1123_subdomain),
        ("nodeName", is_dns1123_subdomain),
        ("priorityClassName", is_dns1123_subdomain),
        ("hostname", is_dns1123_label),
        ("subdomain", is_dns1123_label),
    ];
    let mut errs = Vec::new();
    for (field, check) in checks {
        let value = str_of(spec, field);
        if value.is_empty() {
            continue;
        }
        for m in check(value) {
            errs.push(FieldError::invalid(&path.child(field), quote(value), &m));
        }
    }
    errs
}

/// With host networking, a declared hostPort must equal the containerPort.
fn validate_host_network_ports(spec: &Value, path: &Path) -> Vec<FieldError> {
    if !super::json::bool_of(spec, "hostNetwork") {
        return Vec::new();
    }
    let mut errs = Vec::new();
    for field in ["containers", "initContainers"] {
        for (i, c) in arr_of(spec, field).iter().enumerate() {
            for (j, port) in arr_of(c, "ports").iter().enumerate() {
                let cp = int_of(port, "containerPort").unwrap_or(0);
                let hp = int_of(port, "hostPort").unwrap_or(0);
                if hp != 0 && hp != cp {
                    errs.push(FieldError::invalid(
                        &path
                            .child(field)
                            .index(i)
                            .child("ports")
                            .index(j)
                            .child("containerPort"),
                        cp.to_string(),
                        "must match `hostPort` when `hostNetwork` is true",
                    ));
                }
            }
        }
    }
    errs
}

/// Volumes: exactly one source, DNS-label names, unique. Returns the names of the volumes that
/// validated cleanly (upstream only lets mounts reference those) and the errors.
fn validate_volumes(volumes: &[Value], path: &Path) -> (HashSet<String>, Vec<FieldError>) {
    let mut names = HashSet::new();
    let mut errs = Vec::new();
    for (i, vol) in volumes.iter().enumerate() {
        let idx = path.index(i);
        let name_path = idx.child("name");
        let name = str_of(vol, "name");
        let mut el = validate_volume_source(vol, &idx);
        if name.is_empty() {
            el.push(FieldError::required(&name_path, ""));
        } else {
            el.extend(
                is_dns1123_label(name)
                    .iter()
                    .map(|m| FieldError::invalid(&name_path, quote(name), m)),
            );
        }
        if names.contains(name) {
            el.push(FieldError::duplicate(&name_path, quote(name)));
        }
        if el.is_empty() {
            names.insert(name.to_string());
        } else {
            errs.extend(el);
        }
    }
    (names, errs)
}

fn validate_volume_source(vol: &Value, path: &Path) -> Vec<FieldError> {
    let sources: Vec<&str> = VOLUME_SOURCES
        .iter()
        .copied()
        .filter(|s| present(vol, s).is_some())
        .collect();
    let mut errs = Vec::new();
    match sources.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a volume type")),
        [first, rest @ ..] => {
            errs.extend(validate_one_source(
                first,
                sub(vol, &[first]),
                &path.child(first),
            ));
            for extra in rest {
                errs.push(FieldError::forbidden(
                    &path.child(extra),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    errs
}

/// The required fields of the common volume sources.
fn validate_one_source(kind: &str, src: &Value, path: &Path) -> Vec<FieldError> {
    let required = match kind {
        "configMap" => Some("name"),
        "secret" => Some("secretName"),
        "hostPath" => Some("path"),
        "persistentVolumeClaim" => Some("claimName"),
        "nfs" => Some("server"),
        _ => None,
    };
    let mut errs = Vec::new();
    if let Some(field) = required {
        if str_of(src, field).is_empty() {
            errs.push(FieldError::required(&path.child(field), ""));
        }
    }
    if let Some(mode) = int_of(src, "defaultMode") {
        if !(0..=0o777).contains(&mode) {
            errs.push(FieldError::invalid(
                &path.child("defaultMode"),
                mode.to_string(),
                FILE_MODE_ERR,
            ));
        }
    }
    errs
}

/// One container: name, image, pull policy, ports, env, mounts, resources, probes.
fn validate_container(
    c: &Value,
    path: &Path,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    kind: ContainerKind,
) -> Vec<FieldError> {
    let mut errs = validate_container_name(c, path, names);
    errs.extend(validate_image(c, path));
    errs.extend(validate_pull_policy(c, path));
    errs.extend(validate_termination_message_policy(c, path));
    errs.extend(validate_container_ports(
        arr_of(c, "ports"),
        &path.child("ports"),
    ));
    errs.extend(validate_env(arr_of(c, "env"), &path.child("env")));
    errs.extend(validate_volume_mounts(
        arr_of(c, "volumeMounts"),
        volumes,
        &path.child("volumeMounts"),
    ));
    errs.extend(validate_resources(
        sub(c, &["resources"]),
        &path.child("resources"),
    ));
    errs.extend(validate_container_restart_policy(c, path, kind));
    errs.extend(validate_probes(c, path, kind));
    errs
}

fn validate_container_name(c: &Value, path: &Path, names: &mut HashSet<String>) -> Vec<FieldError> {
    let name = str_of(c, "name");
    let p = path.child("name");
    if name.is_empty() {
        return vec![FieldError::required(&p, "")];
    }
    let mut errs: Vec<FieldError> = is_dns1123_label(name)
        .iter()
        .map(|m| FieldError::invalid(&p, quote(name), m))
        .collect();
    if !names.insert(name.to_string()) {
        errs.push(FieldError::duplicate(&p, quote(name)));
    }
    errs
}

fn validate_image(c: &Value, path: &Path) -> Vec<FieldError> {
    let image = str_of(c, "image");
    let p = path.child("image");
    if image.is_empty() {
        vec![FieldError::required(&p, "")]
    } else if image.trim() != image {
        vec![FieldError::invalid(
            &p,
            quote(image),
            "must not have leading or trailing whitespace",
        )]
    } else {
        Vec::new()
    }
}

fn validate_pull_policy(c: &Value, path: &Path) -> Vec<FieldError> {
    let p = path.child("imagePullPolicy");
    match str_of(c, "imagePullPolicy") {
        "" => vec![FieldError::required(&p, "")],
        "Always" | "IfNotPresent" | "Never" => Vec::new(),
        other => vec![FieldError::not_supported(
            &p,
            quote(other),
            &["Always", "IfNotPresent", "Never"],
        )],
    }
}

fn validate_termination_message_policy(c: &Value, path: &Path) -> Vec<FieldError> {
    let p = path.child("terminationMessagePolicy");
    match str_of(c, "terminationMessagePolicy") {
        "" => vec![FieldError::required(&p, "")],
        "File" | "FallbackToLogsOnError" => Vec::new(),
        other => vec![FieldError::not_supported(
            &p,
            quote(other),
            &["File", "FallbackToLogsOnError"],
        )],
    }
}

/// Container ports: valid unique names, 1–65535, a supported protocol.
fn validate_container_ports(ports: &[Value], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let idx = path.index(i);
        let name = str_of(port, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                errs.extend(
                    msgs.iter()
                        .map(|m| FieldError::invalid(&idx.child("name"), quote(name), m)),
                );
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(&idx.child("name"), quote(name)));
            }
        }
        match int_of(port, "containerPort").unwrap_or(0) {
            0 => errs.push(FieldError::required(&idx.child("containerPort"), "")),
            n => errs.extend(
                is_valid_port_num(n)
                    .iter()
                    .map(|m| FieldError::invalid(&idx.child("containerPort"), n.to_string(), m)),
            ),
        }
        let host_port = int_of(port, "hostPort").unwrap_or(0);
        if host_port != 0 {
            errs.extend(
                is_valid_port_num(host_port)
                    .iter()
                    .map(|m| FieldError::invalid(&idx.child("hostPort"), host_port.to_string(), m)),
            );
        }
        errs.extend(validate_protocol(port, &idx.child("protocol")));
    }
    errs
}

/// A port protocol: required, one of TCP/UDP/SCTP (listed sorted, as upstream's set).
pub(crate) fn validate_protocol(port: &Value, path: &Path) -> Vec<FieldError> {
    match str_of(port, "protocol") {
        "" => vec![FieldError::required(path, "")],
        "TCP" | "UDP" | "SCTP" => Vec::new(),
        other => vec![FieldError::not_supported(
            path,
            quote(other),
            &["SCTP", "TCP", "UDP"],
        )],
    }
}

/// Env vars: names required and valid, `valueFrom` with exactly one source.
fn validate_env(vars: &[Value], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, ev) in vars.iter().enumerate() {
        let idx = path.index(i);
        let name = str_of(ev, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&idx.child("name"), ""));
        } else {
            errs.extend(
                is_env_var_name(name)
                    .iter()
                    .map(|m| FieldError::invalid(&idx.child("name"), quote(name), m)),
            );
        }
        if let Some(from) = present(ev, "valueFrom") {
            errs.extend(validate_env_value_from(ev, from, &idx.child("valueFrom")));
        }
    }
    errs
}

fn validate_env_value_from(ev: &Value, from: &Value, path: &Path) -> Vec<FieldError> {
    let sources: Vec<&str> = [
        "fieldRef",
        "resourceFieldRef",
        "configMapKeyRef",
        "secretKeyRef",
    ]
    .into_iter()
    .filter(|s| present(from, s).is_some())
    .collect();
    let mut errs = Vec::new();
    match sources.len() {
        0 => errs.push(FieldError::invalid(path, quote(""), "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`")),
        1 => {}
        _ => errs.push(FieldError::invalid(path, quote(""), "may not have more than one field specified at a time")),
    }
    if !str_of(ev, "value").is_empty() && !sources.is_empty() {
        errs.push(FieldError::invalid(
            path,
            quote(""),
            "may not be specified when `value` is not empty",
        ));
    }
    for key_ref in ["configMapKeyRef", "secretKeyRef"] {
        if let Some(r) = present(from, key_ref) {
            errs.extend(validate_key_ref(r, &path.child(key_ref)));
        }
    }
    if let Some(r) = present(from, "fieldRef") {
        errs.extend(validate_field_ref(r, &path.child("fieldRef")));
    }
    errs
}

fn validate_key_ref(r: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if str_of(r, "name").is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    }
    let key = str_of(r, "key");
    if key.is_empty() {
        errs.push(FieldError::required(&path.child("key"), ""));
    } else {
        errs.extend(
            is_config_map_key(key)
                .iter()
                .map(|m| FieldError::invalid(&path.child("key"), quote(key), m)),
        );
    }
    errs
}

/// A downward-API field reference: apiVersion (defaulted to v1) and a supported fieldPath.
fn validate_field_ref(r: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if str_of(r, "apiVersion").is_empty() {
        errs.push(FieldError::required(&path.child("apiVersion"), ""));
    }
    let fp = str_of(r, "fieldPath");
    let fp_path = path.child("fieldPath");
    if fp.is_empty() {
        errs.push(FieldError::required(&fp_path, ""));
        return errs;
    }
    let subscripted = ["metadata.labels['", "metadata.annotations['"]
        .iter()
        .any(|p| fp.starts_with(p) && fp.ends_with("']"));
    if !subscripted && !ENV_FIELD_PATHS.contains(&fp) {
        errs.push(FieldError::not_supported(
            &fp_path,
            quote(fp),
            ENV_FIELD_PATHS,
        ));
    }
    errs
}

/// Mounts must name a (valid) volume and have unique, non-empty mount paths.
fn validate_volume_mounts(
    mounts: &[Value],
    volumes: &HashSet<String>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut mount_points = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let idx = path.index(i);
        let name = str_of(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(&idx.child("name"), ""));
        }
        if !volumes.contains(name) {
            errs.push(FieldError::not_found(&idx.child("name"), quote(name)));
        }
        let mount_path = str_of(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(&idx.child("mountPath"), ""));
        }
        if !mount_points.insert(mount_path) {
            errs.push(FieldError::invalid(
                &idx.child("mountPath"),
                quote(mount_path),
                "must be unique",
            ));
        }
    }
    errs
}

/// Standard container resources need no domain prefix.
fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// Extended resources (a non-kubernetes.io domain) are integral and cannot be overcommitted.
fn is_extended_resource(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/") && !name.starts_with("requests.")
}

/// Native resources other than hugepages may be requested below their limit.
fn overcommit_allowed(name: &str) -> bool {
    !is_extended_resource(name) && !name.starts_with("hugepages-")
}

/// Resource requirements: names, parseable non-negative quantities, requests ≤ limits.
fn validate_resources(res: &Value, path: &Path) -> Vec<FieldError> {
    let lim_path = path.child("limits");
    let req_path = path.child("requests");
    let empty = Map::new();
    let limits = obj_of(res, "limits").unwrap_or(&empty);
    let requests = obj_of(res, "requests").unwrap_or(&empty);
    let mut errs = Vec::new();
    for (name, q) in sorted(limits) {
        errs.extend(validate_resource_entry(name, q, &lim_path.key(name)).1);
    }
    for (name, q) in sorted(requests) {
        let (parsed, e) = validate_resource_entry(name, q, &req_path.key(name));
        errs.extend(e);
        let limit = limits.get(name);
        match (parsed, limit.and_then(quantity::from_value)) {
            (Some(req), Some(lim)) => {
                errs.extend(compare_request_limit(name, q, &req, limit, &lim, &req_path));
            }
            (_, None) if limit.is_none() && !overcommit_allowed(name) => {
                errs.push(FieldError::required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                ));
            }
            _ => {}
        }
    }
    errs
}

fn sorted(m: &Map<String, Value>) -> Vec<(&str, &Value)> {
    let mut v: Vec<(&str, &Value)> = m.iter().map(|(k, v)| (k.as_str(), v)).collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// One resource name and quantity; returns the parsed quantity for the limit comparison.
pub(crate) fn validate_resource_entry(
    name: &str,
    q: &Value,
    path: &Path,
) -> (Option<Quantity>, Vec<FieldError>) {
    let mut errs = validate_label_name(name, path);
    if !name.contains('/') && !is_standard_container_resource(name) {
        errs.push(FieldError::invalid(
            path,
            quote(name),
            "must be a standard resource for containers",
        ));
    }
    let Some(parsed) = quantity::from_value(q) else {
        errs.push(FieldError::invalid(
            path,
            quote(&quantity::text(q)),
            QUANTITY_FORMAT_ERR,
        ));
        return (None, errs);
    };
    if parsed.is_negative() {
        errs.push(FieldError::invalid(
            path,
            quote(&quantity::text(q)),
            super::meta::IS_NEGATIVE,
        ));
    }
    if is_extended_resource(name) && !parsed.is_integer() {
        errs.push(FieldError::invalid(
            path,
            quote(&quantity::text(q)),
            "must be an integer",
        ));
    }
    (Some(parsed), errs)
}

/// Requests may not exceed limits; for non-overcommittable resources they must be equal.
/// Upstream reports these at the un-keyed `requests` path.
fn compare_request_limit(
    name: &str,
    req_value: &Value,
    req: &Quantity,
    limit_value: Option<&Value>,
    lim: &Quantity,
    req_path: &Path,
) -> Vec<FieldError> {
    let limit_text = limit_value.map(quantity::text).unwrap_or_default();
    let ord = req.cmp_value(lim);
    let detail = if ord != std::cmp::Ordering::Equal && !overcommit_allowed(name) {
        format!("must be equal to {name} limit of {limit_text}")
    } else if ord == std::cmp::Ordering::Greater {
        format!("must be less than or equal to {name} limit of {limit_text}")
    } else {
        return Vec::new();
    };
    vec![FieldError::invalid(
        req_path,
        quote(&quantity::text(req_value)),
        &detail,
    )]
}

/// Container-level restartPolicy only exists for init containers (sidecars), and only as
/// `Always`.
fn validate_container_restart_policy(
    c: &Value,
    path: &Path,
    kind: ContainerKind,
) -> Vec<FieldError> {
    let Some(policy) = opt_str(c, "restartPolicy") else {
        return Vec::new();
    };
    let p = path.child("restartPolicy");
    match (kind, policy) {
        (ContainerKind::Regular, _) => vec![FieldError::forbidden(
            &p,
            "may not be set for non-init containers",
        )],
        (ContainerKind::Init, "") => vec![FieldError::required(&p, "")],
        (ContainerKind::Init, "Always") => Vec::new(),
        (ContainerKind::Init, other) => {
            vec![FieldError::not_supported(&p, quote(other), &["Always"])]
        }
    }
}

/// Probes: handlers and counters; liveness/startup need successThreshold 1; plain init
/// containers may not have probes or lifecycle hooks at all.
fn validate_probes(c: &Value, path: &Path, kind: ContainerKind) -> Vec<FieldError> {
    let is_sidecar = str_of(c, "restartPolicy") == "Always";
    let mut errs = Vec::new();
    for probe in [
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
    ] {
        let Some(p) = present(c, probe) else { continue };
        if kind == ContainerKind::Init && !is_sidecar {
            errs.push(FieldError::forbidden(
                &path.child(probe),
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        if probe == "lifecycle" {
            continue;
        }
        errs.extend(validate_probe(p, &path.child(probe)));
        let threshold = int_of(p, "successThreshold").unwrap_or(1);
        if probe != "readinessProbe" && threshold != 1 {
            errs.push(FieldError::invalid(
                &path.child(probe).child("successThreshold"),
                threshold.to_string(),
                "must be 1",
            ));
        }
    }
    errs
}

fn validate_probe(probe: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = validate_handler(probe, path);
    for field in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        if let Some(v) = int_of(probe, field) {
            errs.extend(validate_nonnegative(v, &path.child(field)));
        }
    }
    if let Some(t) = int_of(probe, "terminationGracePeriodSeconds") {
        if t <= 0 {
            errs.push(FieldError::invalid(
                &path.child("terminationGracePeriodSeconds"),
                t.to_string(),
                "must be greater than 0",
            ));
        }
    }
    errs
}

/// Exactly one of exec/httpGet/tcpSocket/grpc, each with its required fields.
fn validate_handler(h: &Value, path: &Path) -> Vec<FieldError> {
    let handlers: Vec<&str> = ["exec", "httpGet", "tcpSocket", "grpc"]
        .into_iter()
        .filter(|k| present(h, k).is_some())
        .collect();
    let mut errs = Vec::new();
    match handlers.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a handler type")),
        [first, rest @ ..] => {
            errs.extend(validate_handler_action(
                first,
                sub(h, &[first]),
                &path.child(first),
            ));
            for extra in rest {
                errs.push(FieldError::forbidden(
                    &path.child(extra),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
    errs
}

fn validate_handler_action(kind: &str, action: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match kind {
        "exec" if arr_of(action, "command").is_empty() => {
            errs.push(FieldError::required(&path.child("command"), ""));
        }
        "httpGet" => {
            if str_of(action, "path").is_empty() {
                errs.push(FieldError::required(&path.child("path"), ""));
            }
            errs.extend(validate_port_num_or_name(
                action.get("port"),
                &path.child("port"),
            ));
            let scheme = str_of(action, "scheme");
            if !matches!(scheme, "HTTP" | "HTTPS") {
                errs.push(FieldError::not_supported(
                    &path.child("scheme"),
                    quote(scheme),
                    &["HTTP", "HTTPS"],
                ));
            }
        }
        "tcpSocket" => {
            errs.extend(validate_port_num_or_name(
                action.get("port"),
                &path.child("port"),
            ));
        }
        "grpc" => {
            let port = int_of(action, "port").unwrap_or(0);
            errs.extend(
                is_valid_port_num(port)
                    .iter()
                    .map(|m| FieldError::invalid(&path.child("port"), port.to_string(), m)),
            );
        }
        _ => {}
    }
    errs
}

/// An IntOrString port: a number in range or a valid port name.
pub(crate) fn validate_port_num_or_name(port: Option<&Value>, path: &Path) -> Vec<FieldError> {
    match port {
        Some(Value::String(s)) => is_valid_port_name(s)
            .iter()
            .map(|m| FieldError::invalid(path, quote(s), m))
            .collect(),
        other => {
            let n = other.and_then(Value::as_i64).unwrap_or(0);
            is_valid_port_num(n)
                .iter()
                .map(|m| FieldError::invalid(path, n.to_string(), m))
                .collect()
        }
    }
}

/// Upstream's `validateTolerations`.
pub(crate) fn validate_tolerations(tolerations: &[Value], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let idx = path.index(i);
        let key = str_of(t, "key");
        let op = str_of(t, "operator");
        let effect = str_of(t, "effect");
        if !key.is_empty() {
            errs.extend(validate_label_name(key, &idx.child("key")));
        }
        if key.is_empty() && op != "Exists" {
            errs.push(FieldError::invalid(
                &idx.child("operator"),
                quote(op),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if present(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                &idx.child("effect"),
                quote(effect),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        errs.extend(validate_toleration_operator(t, op, &idx));
        if !effect.is_empty() {
            errs.extend(validate_taint_effect(effect, &idx.child("effect")));
        }
    }
    errs
}

fn validate_toleration_operator(t: &Value, op: &str, idx: &Path) -> Vec<FieldError> {
    let value = str_of(t, "value");
    match op {
        "Equal" | "" => {
            let msgs = is_label_value(value);
            if msgs.is_empty() {
                Vec::new()
            } else {
                vec![FieldError::invalid(
                    &idx.child("operator"),
                    quote(value),
                    &msgs.join(";"),
                )]
            }
        }
        "Exists" if !value.is_empty() => vec![FieldError::invalid(
            &idx.child("operator"),
            json(t),
            "value must be empty when `operator` is 'Exists'",
        )],
        "Exists" => Vec::new(),
        other => vec![FieldError::not_supported(
            &idx.child("operator"),
            quote(other),
            &["Equal", "Exists"],
        )],
    }
}

/// A taint effect (non-empty here; callers decide whether empty is allowed).
pub(crate) fn validate_taint_effect(effect: &str, path: &Path) -> Vec<FieldError> {
    match effect {
        "NoSchedule" | "PreferNoSchedule" | "NoExecute" => Vec::new(),
        "" => vec![FieldError::required(path, "")],
        other => vec![FieldError::not_supported(
            path,
            quote(other),
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        )],
    }
}

/// The message upstream gives when a pod update touches anything it may not.
const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Pod updates may only change images, shorten activeDeadlineSeconds, add tolerations, remove
/// scheduling gates, and fix a negative grace period to 1. Everything else in the spec is
/// compared after copying those fields from the old spec (upstream's "munged" spec).
pub(crate) fn validate_pod_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let spec_path = Path::new("spec");
    let old_spec = sub(old, &["spec"]);
    let new_spec = sub(new, &["spec"]);
    let mut errs = Vec::new();
    for field in ["containers", "initContainers"] {
        let (o, n) = (arr_of(old_spec, field), arr_of(new_spec, field));
        if o.len() != n.len() {
            errs.push(FieldError::forbidden(
                &spec_path.child(field),
                "pod updates may not add or remove containers",
            ));
            return errs;
        }
    }
    if let Some(e) = validate_active_deadline_update(old_spec, new_spec, &spec_path) {
        errs.push(e);
        return errs;
    }
    errs.extend(validate_only_added_tolerations(
        arr_of(new_spec, "tolerations"),
        arr_of(old_spec, "tolerations"),
        &spec_path.child("tolerations"),
    ));
    let old_norm = normalized(old_spec);
    let munged = normalized(&munge_pod_spec(old_spec, new_spec));
    if munged != old_norm {
        let detail = format!("{POD_UPDATE_MSG}\n{}", spec_diff(&old_norm, &munged));
        errs.push(FieldError::forbidden(&spec_path, &detail));
    }
    errs
}

/// activeDeadlineSeconds may be set from nil, or lowered; never raised or removed.
fn validate_active_deadline_update(old: &Value, new: &Value, spec: &Path) -> Option<FieldError> {
    let p = spec.child("activeDeadlineSeconds");
    match (
        int_of(old, "activeDeadlineSeconds"),
        int_of(new, "activeDeadlineSeconds"),
    ) {
        (_, Some(n)) if !(0..=MAX_INT32).contains(&n) => Some(FieldError::invalid(
            &p,
            n.to_string(),
            &inclusive_range_error(0, MAX_INT32),
        )),
        (Some(o), Some(n)) if o < n => Some(FieldError::invalid(
            &p,
            n.to_string(),
            "must be less than or equal to previous value",
        )),
        (Some(_), None) => Some(FieldError::invalid(
            &p,
            "null".to_string(),
            "must not update from a positive integer to nil value",
        )),
        _ => None,
    }
}

/// Every old toleration must still be present (tolerationSeconds may change).
fn validate_only_added_tolerations(new: &[Value], old: &[Value], path: &Path) -> Vec<FieldError> {
    let without_seconds = |t: &Value| {
        let mut t = normalized(t);
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let new_stripped: Vec<Value> = new.iter().map(without_seconds).collect();
    let all_kept = old
        .iter()
        .all(|o| new_stripped.contains(&without_seconds(o)));
    if all_kept {
        validate_tolerations(new, path)
    } else {
        vec![FieldError::forbidden(
            path,
            "existing toleration can not be modified except its tolerationSeconds",
        )]
    }
}

/// The new spec with every field a pod update may change copied back from the old spec.
fn munge_pod_spec(old: &Value, new: &Value) -> Value {
    let mut munged = new.clone();
    let Some(m) = munged.as_object_mut() else {
        return munged;
    };
    for field in ["containers", "initContainers"] {
        if let Some(Value::Array(ctrs)) = m.get_mut(field) {
            for (i, c) in ctrs.iter_mut().enumerate() {
                let old_image = at(old, &[field])
                    .and_then(|a| a.get(i))
                    .and_then(|c| c.get("image"))
                    .cloned();
                if let (Some(obj), Some(img)) = (c.as_object_mut(), old_image) {
                    obj.insert("image".to_string(), img);
                }
            }
        }
    }
    copy_field(m, old, "activeDeadlineSeconds");
    copy_field(m, old, "tolerations");
    let old_grace = int_of(old, "terminationGracePeriodSeconds");
    let new_grace = m
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
        copy_field(m, old, "terminationGracePeriodSeconds");
    }
    let old_gates = arr_of(old, "schedulingGates");
    let gates_removed_only = m
        .get("schedulingGates")
        .and_then(Value::as_array)
        .is_none_or(|g| g.iter().all(|x| old_gates.contains(x)));
    if gates_removed_only {
        copy_field(m, old, "schedulingGates");
    }
    munged
}

/// Sets `field` in `m` to its value in `old` (or removes it when `old` lacks it).
fn copy_field(m: &mut Map<String, Value>, old: &Value, field: &str) {
    match present(old, field) {
        Some(v) => {
            m.insert(field.to_string(), v.clone());
        }
        None => {
            m.remove(field);
        }
    }
}

/// A copy without `null` members, so "absent" and "null" compare equal as Go's zero values do.
pub(crate) fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), normalized(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        other => other.clone(),
    }
}

/// A compact, cmp.Diff-like listing of the top-level spec fields that differ.
fn spec_diff(old: &Value, new: &Value) -> String {
    let mut keys: Vec<&String> = old
        .as_object()
        .into_iter()
        .chain(new.as_object())
        .flat_map(|m| m.keys())
        .collect();
    keys.sort();
    keys.dedup();
    let mut lines = vec!["  core.PodSpec{".to_string()];
    for k in keys {
        let (o, n) = (old.get(k.as_str()), new.get(k.as_str()));
        if o != n {
            if let Some(o) = o {
                lines.push(format!("- \t{k}: {o},"));
            }
            if let Some(n) = n {
                lines.push(format!("+ \t{k}: {n},"));
            }
        }
    }
    lines.push("  }".to_string());
    lines.join("\n")
}
