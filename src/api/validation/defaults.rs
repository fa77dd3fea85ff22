//! Defaulting, as upstream's `SetDefaults_*` functions (core/v1, apps/v1, batch/v1,
//! scheduling/v1, discovery/v1), plus the few create-time fills upstream does in strategies or
//! admission that every client observes (namespace finalizers, pod priority, Job selectors,
//! Secret `stringData`).

use super::json::{arr_of, at, ensure_obj, int_of, is_blank, present, set_default, str_of};
use super::Kind;
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// Upstream's default grace period for pod termination.
const DEFAULT_TERMINATION_GRACE: i64 = 30;
/// 0644, the default file mode of projected files.
const DEFAULT_MODE: i64 = 0o644;

/// Applies the defaults of one kind.
pub(crate) fn apply(kind: Kind, obj: &mut Value) {
    match kind {
        Kind::Pod => default_pod(obj),
        Kind::Deployment => default_deployment(obj),
        Kind::ReplicaSet => default_replica_set(obj),
        Kind::DaemonSet => default_daemon_set(obj),
        Kind::StatefulSet => default_stateful_set(obj),
        Kind::Job => default_job(obj),
        Kind::CronJob => default_cron_job(obj),
        Kind::Service => default_service(obj),
        Kind::Secret => default_secret(obj),
        Kind::Namespace => default_namespace(obj),
        Kind::Endpoints => default_endpoints(obj),
        Kind::EndpointSlice => default_endpoint_slice(obj),
        Kind::PriorityClass => set_default(obj, "preemptionPolicy", json!("PreemptLowerPriority")),
        _ => {}
    }
}

/// Runs `f` on the object at `keys` (creating objects on the way), when reachable.
fn with_obj(obj: &mut Value, keys: &[&str], f: impl FnOnce(&mut Value)) {
    let mut cur = obj;
    for k in keys {
        if ensure_obj(cur, k).is_none() {
            return;
        }
        let Some(next) = cur.get_mut(*k) else { return };
        cur = next;
    }
    f(cur);
}

/// Runs `f` on each element of the array at `key`, if any.
fn each(obj: &mut Value, key: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(Value::Array(items)) = obj.get_mut(key) {
        items.iter_mut().for_each(&mut f);
    }
}

/// `SetDefaults_Pod` + the pod spec defaults. Only Pods (not templates) get requests copied
/// from limits, enableServiceLinks, and hostNetwork host ports; priority 0 and
/// preemptionPolicy come from upstream's Priority admission when no class is named.
fn default_pod(pod: &mut Value) {
    with_obj(pod, &["spec"], |spec| {
        default_pod_spec(spec);
        for field in ["containers", "initContainers"] {
            each(spec, field, default_requests_from_limits);
        }
        set_default(spec, "enableServiceLinks", json!(true));
        if at(spec, &["hostNetwork"]).and_then(Value::as_bool) == Some(true) {
            for field in ["containers", "initContainers"] {
                each(spec, field, |c| each(c, "ports", default_host_port));
            }
        }
        if is_blank(spec, "priorityClassName") {
            set_default(spec, "priority", json!(0));
            set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
    });
}

/// When limits are set, missing requests default to the limits.
fn default_requests_from_limits(container: &mut Value) {
    let Some(limits) = at(container, &["resources", "limits"]).and_then(Value::as_object) else {
        return;
    };
    let limits = limits.clone();
    with_obj(container, &["resources", "requests"], |req| {
        for (k, v) in limits {
            set_default(req, &k, v);
        }
    });
}

/// With host networking the host port is the container port.
fn default_host_port(port: &mut Value) {
    if int_of(port, "hostPort").unwrap_or(0) == 0 {
        if let Some(cp) = present(port, "containerPort").cloned() {
            if let Some(m) = port.as_object_mut() {
                m.insert("hostPort".to_string(), cp);
            }
        }
    }
}

/// `SetDefaults_PodSpec` and everything nested in a pod spec.
pub(crate) fn default_pod_spec(spec: &mut Value) {
    default_string(spec, "dnsPolicy", "ClusterFirst");
    default_string(spec, "restartPolicy", "Always");
    set_default(spec, "securityContext", json!({}));
    set_default(
        spec,
        "terminationGracePeriodSeconds",
        json!(DEFAULT_TERMINATION_GRACE),
    );
    default_string(spec, "schedulerName", "default-scheduler");
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        each(spec, field, default_container);
    }
    each(spec, "volumes", default_volume);
}

/// Sets a string field, replacing an empty string (Go's zero value) too.
fn set_string(obj: &mut Value, key: &str, value: &str) {
    if let Some(m) = obj.as_object_mut() {
        m.insert(key.to_string(), json!(value));
    }
}

/// Sets a string field only if it is absent or empty.
fn default_string(obj: &mut Value, key: &str, value: &str) {
    if is_blank(obj, key) {
        set_string(obj, key, value);
    }
}

/// `SetDefaults_Container` and the defaults of its ports, env, probes and hooks.
fn default_container(c: &mut Value) {
    if is_blank(c, "imagePullPolicy") {
        let policy = default_pull_policy(str_of(c, "image"));
        set_string(c, "imagePullPolicy", policy);
    }
    default_string(c, "terminationMessagePath", "/dev/termination-log");
    default_string(c, "terminationMessagePolicy", "File");
    set_default(c, "resources", json!({}));
    each(c, "ports", |p| default_string(p, "protocol", "TCP"));
    each(c, "env", |e| {
        if at(e, &["valueFrom", "fieldRef"]).is_some() {
            with_obj(e, &["valueFrom", "fieldRef"], |r| {
                default_string(r, "apiVersion", "v1")
            });
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if present(c, probe).is_some() {
            with_obj(c, &[probe], default_probe);
        }
    }
    for hook in ["postStart", "preStop"] {
        if at(c, &["lifecycle", hook, "httpGet"]).is_some() {
            with_obj(c, &["lifecycle", hook, "httpGet"], default_http_get);
        }
    }
}

/// `Always` for `:latest` or untagged images without a digest, otherwise `IfNotPresent` (as
/// upstream's `parsers.ParseImageName`, where unparsable names also get `IfNotPresent`).
pub(crate) fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_segment_start = name.rfind('/').map_or(0, |i| i + 1);
    let tag = name[last_segment_start..].split_once(':').map(|(_, t)| t);
    let repo = match tag {
        Some(t) => &name[..name.len() - t.len() - 1],
        None => name,
    };
    let parses = !repo.is_empty()
        && repo
            .rsplit('/')
            .next()
            .is_some_and(|last| !last.bytes().any(|c| c.is_ascii_uppercase()));
    if !parses {
        return "IfNotPresent";
    }
    match (tag, digest) {
        (Some("latest"), _) | (None, None) => "Always",
        _ => "IfNotPresent",
    }
}

/// `SetDefaults_Probe` and its HTTP action.
fn default_probe(p: &mut Value) {
    set_default(p, "timeoutSeconds", json!(1));
    set_default(p, "periodSeconds", json!(10));
    set_default(p, "successThreshold", json!(1));
    set_default(p, "failureThreshold", json!(3));
    if present(p, "httpGet").is_some() {
        with_obj(p, &["httpGet"], default_http_get);
    }
}

/// `SetDefaults_HTTPGetAction`.
fn default_http_get(h: &mut Value) {
    default_string(h, "path", "/");
    default_string(h, "scheme", "HTTP");
}

/// `SetDefaults_Volume` and the per-source defaults (file modes, hostPath type, token expiry).
fn default_volume(v: &mut Value) {
    if !super::pod::VOLUME_SOURCES
        .iter()
        .any(|k| present(v, k).is_some())
    {
        set_default(v, "emptyDir", json!({}));
    }
    for source in ["configMap", "secret", "downwardAPI", "projected"] {
        if present(v, source).is_some() {
            with_obj(v, &[source], |s| {
                set_default(s, "defaultMode", json!(DEFAULT_MODE))
            });
        }
    }
    if present(v, "hostPath").is_some() {
        with_obj(v, &["hostPath"], |h| set_default(h, "type", json!("")));
    }
    if present(v, "iscsi").is_some() {
        with_obj(v, &["iscsi"], |s| {
            default_string(s, "iscsiInterface", "default")
        });
    }
    if let Some(Value::Array(sources)) = v.get_mut("projected").and_then(|p| p.get_mut("sources")) {
        for s in sources {
            if present(s, "serviceAccountToken").is_some() {
                with_obj(s, &["serviceAccountToken"], |t| {
                    set_default(t, "expirationSeconds", json!(3600))
                });
            }
        }
    }
}

/// Pod template defaults (`spec.template.spec`).
fn default_template(obj: &mut Value, keys: &[&str]) {
    with_obj(obj, keys, default_pod_spec);
}

/// `SetDefaults_Deployment`: one replica, RollingUpdate 25%/25%, history 10, deadline 600s.
fn default_deployment(d: &mut Value) {
    with_obj(d, &["spec"], |spec| {
        set_default(spec, "replicas", json!(1));
        with_obj(spec, &["strategy"], |s| {
            default_string(s, "type", "RollingUpdate");
            if str_of(s, "type") == "RollingUpdate" {
                with_obj(s, &["rollingUpdate"], |ru| {
                    set_default(ru, "maxUnavailable", json!("25%"));
                    set_default(ru, "maxSurge", json!("25%"));
                });
            }
        });
        set_default(spec, "revisionHistoryLimit", json!(10));
        set_default(spec, "progressDeadlineSeconds", json!(600));
    });
    default_template(d, &["spec", "template", "spec"]);
}

/// `SetDefaults_ReplicaSet`.
fn default_replica_set(rs: &mut Value) {
    with_obj(rs, &["spec"], |spec| {
        set_default(spec, "replicas", json!(1))
    });
    default_template(rs, &["spec", "template", "spec"]);
}

/// `SetDefaults_DaemonSet`: RollingUpdate with maxUnavailable 1 and maxSurge 0, history 10.
fn default_daemon_set(ds: &mut Value) {
    with_obj(ds, &["spec"], |spec| {
        with_obj(spec, &["updateStrategy"], |s| {
            default_string(s, "type", "RollingUpdate");
            if str_of(s, "type") == "RollingUpdate" {
                with_obj(s, &["rollingUpdate"], |ru| {
                    set_default(ru, "maxUnavailable", json!(1));
                    set_default(ru, "maxSurge", json!(0));
                });
            }
        });
        set_default(spec, "revisionHistoryLimit", json!(10));
    });
    default_template(ds, &["spec", "template", "spec"]);
}

/// `SetDefaults_StatefulSet`: OrderedReady, RollingUpdate partition 0, Retain PVC policy,
/// one replica, history 10; claim templates get `volumeMode: Filesystem`.
fn default_stateful_set(sts: &mut Value) {
    with_obj(sts, &["spec"], |spec| {
        default_string(spec, "podManagementPolicy", "OrderedReady");
        with_obj(spec, &["updateStrategy"], |s| {
            if is_blank(s, "type") {
                set_string(s, "type", "RollingUpdate");
                set_default(s, "rollingUpdate", json!({}));
            }
            if str_of(s, "type") == "RollingUpdate" && present(s, "rollingUpdate").is_some() {
                with_obj(s, &["rollingUpdate"], |ru| {
                    set_default(ru, "partition", json!(0))
                });
            }
        });
        with_obj(spec, &["persistentVolumeClaimRetentionPolicy"], |p| {
            default_string(p, "whenDeleted", "Retain");
            default_string(p, "whenScaled", "Retain");
        });
        set_default(spec, "replicas", json!(1));
        set_default(spec, "revisionHistoryLimit", json!(10));
        each(spec, "volumeClaimTemplates", |c| {
            with_obj(c, &["spec"], |s| {
                default_string(s, "volumeMode", "Filesystem")
            });
        });
    });
    default_template(sts, &["spec", "template", "spec"]);
}

/// `SetDefaults_Job`, plus the selector upstream's Job strategy generates on create.
fn default_job(job: &mut Value) {
    let template_labels = at(job, &["spec", "template", "metadata", "labels"]).cloned();
    with_obj(job, &["spec"], default_job_spec);
    let labels_empty = at(job, &["metadata", "labels"])
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    if let (Some(labels), true) = (template_labels, labels_empty) {
        with_obj(job, &["metadata"], |m| {
            if let Some(obj) = m.as_object_mut() {
                obj.insert("labels".to_string(), labels);
            }
        });
    }
    generate_job_selector(job);
    default_template(job, &["spec", "template", "spec"]);
}

/// The JobSpec defaults: completions/parallelism 1, backoffLimit 6 (or MaxInt32 with a
/// per-index limit), NonIndexed, not suspended, pod replacement policy.
fn default_job_spec(spec: &mut Value) {
    if present(spec, "completions").is_none() && present(spec, "parallelism").is_none() {
        set_default(spec, "completions", json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let backoff = if present(spec, "backoffLimitPerIndex").is_some() {
        i64::from(i32::MAX)
    } else {
        6
    };
    set_default(spec, "backoffLimit", json!(backoff));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    let replacement = if present(spec, "podFailurePolicy").is_some() {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_default(spec, "podReplacementPolicy", json!(replacement));
    if let Some(Value::Array(rules)) = spec
        .get_mut("podFailurePolicy")
        .and_then(|p| p.get_mut("rules"))
    {
        for rule in rules {
            each(rule, "onPodConditions", |c| {
                default_string(c, "status", "True")
            });
        }
    }
}

/// Upstream's Job strategy: unless `manualSelector`, select on the Job's uid and label the
/// template with it. Needs `metadata.uid`; without one nothing is generated.
fn generate_job_selector(job: &mut Value) {
    let uid = str_of(at(job, &["metadata"]).unwrap_or(&Value::Null), "uid").to_string();
    let manual = at(job, &["spec", "manualSelector"]).and_then(Value::as_bool) == Some(true);
    if uid.is_empty() || manual || at(job, &["spec", "selector"]).is_some() {
        return;
    }
    let name = str_of(at(job, &["metadata"]).unwrap_or(&Value::Null), "name").to_string();
    with_obj(job, &["spec"], |spec| {
        set_default(spec, "manualSelector", json!(false));
        set_default(
            spec,
            "selector",
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    });
    with_obj(job, &["spec", "template", "metadata", "labels"], |labels| {
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            set_default(labels, k, json!(v));
        }
    });
}

/// `SetDefaults_CronJob`; the job template's pod spec gets pod defaults (not Job defaults).
fn default_cron_job(cj: &mut Value) {
    with_obj(cj, &["spec"], |spec| {
        default_string(spec, "concurrencyPolicy", "Allow");
        set_default(spec, "suspend", json!(false));
        set_default(spec, "successfulJobsHistoryLimit", json!(3));
        set_default(spec, "failedJobsHistoryLimit", json!(1));
    });
    default_template(cj, &["spec", "jobTemplate", "spec", "template", "spec"]);
}

/// `SetDefaults_Service`, plus the IP family fields upstream's REST layer fills for
/// single-stack IPv4 clusters (cluster IP allocation itself is the caller's).
fn default_service(svc: &mut Value) {
    with_obj(svc, &["spec"], |spec| {
        default_string(spec, "sessionAffinity", "None");
        match str_of(spec, "sessionAffinity") {
            "None" => {
                if let Some(m) = spec.as_object_mut() {
                    m.remove("sessionAffinityConfig");
                }
            }
            "ClientIP" => with_obj(spec, &["sessionAffinityConfig", "clientIP"], |c| {
                set_default(c, "timeoutSeconds", json!(10800))
            }),
            _ => {}
        }
        default_string(spec, "type", "ClusterIP");
        each(spec, "ports", default_service_port);
        default_service_policies(spec);
    });
}

/// Protocol TCP; targetPort defaults to port.
fn default_service_port(p: &mut Value) {
    default_string(p, "protocol", "TCP");
    let unset = match p.get("targetPort") {
        None | Some(Value::Null) => true,
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    };
    if unset {
        if let Some(port) = present(p, "port").cloned() {
            if let Some(m) = p.as_object_mut() {
                m.insert("targetPort".to_string(), port);
            }
        }
    }
}

/// Traffic policies, load-balancer node ports, and IP families by service type.
fn default_service_policies(spec: &mut Value) {
    let svc_type = str_of(spec, "type").to_string();
    let externally_accessible = svc_type == "LoadBalancer"
        || svc_type == "NodePort"
        || (svc_type == "ClusterIP" && !arr_of(spec, "externalIPs").is_empty());
    if externally_accessible {
        default_string(spec, "externalTrafficPolicy", "Cluster");
    }
    if matches!(svc_type.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
        let headless_without_selector = str_of(spec, "clusterIP") == "None"
            && at(spec, &["selector"])
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty);
        let policy = if headless_without_selector {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        set_default(spec, "ipFamilyPolicy", json!(policy));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
    }
    if svc_type == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
}

/// `SetDefaults_Secret` (type Opaque), and the v1 conversion that merges `stringData` into
/// `data` (upstream never stores `stringData`).
fn default_secret(s: &mut Value) {
    default_string(s, "type", "Opaque");
    let Some(Value::Object(string_data)) = s.as_object_mut().and_then(|m| m.remove("stringData"))
    else {
        return;
    };
    with_obj(s, &["data"], |data| {
        if let Some(m) = data.as_object_mut() {
            for (k, v) in string_data {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""));
                m.insert(k, json!(encoded));
            }
        }
    });
}

/// `SetDefaults_Namespace` (the `kubernetes.io/metadata.name` label) and phase Active.
fn default_namespace(ns: &mut Value) {
    let name = str_of(at(ns, &["metadata"]).unwrap_or(&Value::Null), "name").to_string();
    if !name.is_empty() {
        with_obj(ns, &["metadata", "labels"], |l| {
            set_string(l, "kubernetes.io/metadata.name", &name)
        });
    }
    // The `kubernetes` finalizer is added on create only (REST layer), so that the namespace
    // controller's removal of it is not undone by defaulting on that update.
    with_obj(ns, &["status"], |st| default_string(st, "phase", "Active"));
}

/// Endpoint ports default to TCP.
fn default_endpoints(ep: &mut Value) {
    each(ep, "subsets", |ss| {
        each(ss, "ports", |p| default_string(p, "protocol", "TCP"))
    });
}

/// EndpointSlice ports default to TCP and the empty name.
fn default_endpoint_slice(es: &mut Value) {
    each(es, "ports", |p| {
        default_string(p, "protocol", "TCP");
        set_default(p, "name", json!(""));
    });
}
