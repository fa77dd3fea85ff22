//! Table-driven tests of the public face: defaults, create and update validation, names.

use super::FieldErrorReason::{
    Duplicate, Forbidden, Invalid, NotFound, NotSupported, Required, TooLong, TooMany,
};
use super::*;
use crate::api::registry::Registry;
use serde_json::{json, Value};

fn resource(group: &str, kind: &str) -> ResourceInfo {
    Registry::builtin()
        .find_kind(group, "v1", kind)
        .cloned()
        .expect("kind is served")
}

/// Defaults then create-validates, as the create handler will.
fn create(group: &str, kind: &str, mut obj: Value) -> Vec<FieldError> {
    let r = resource(group, kind);
    apply_defaults(&r, &mut obj);
    validate_create(&r, &obj)
}

/// Defaults both sides then update-validates.
fn update(group: &str, kind: &str, mut old: Value, mut new: Value) -> Vec<FieldError> {
    let r = resource(group, kind);
    apply_defaults(&r, &mut old);
    apply_defaults(&r, &mut new);
    validate_update(&r, &old, &new)
}

/// The expected errors of a case, as (field, reason) pairs in order.
type Want = Vec<(&'static str, FieldErrorReason)>;
/// A table row: case name, merge patch onto a base object, expected errors.
type Case = (&'static str, Value, Want);
/// A table row that also names the kind.
type KindCase = (&'static str, &'static str, Value, Want);

/// The (field, reason) pairs of a result, for compact expectations.
fn summary(errs: &[FieldError]) -> Vec<(String, FieldErrorReason)> {
    errs.iter().map(|e| (e.field.clone(), e.reason)).collect()
}

fn expect(errs: &[FieldError], want: &[(&str, FieldErrorReason)], case: &str) {
    let got = summary(errs);
    let want: Vec<(String, FieldErrorReason)> =
        want.iter().map(|(f, r)| (f.to_string(), *r)).collect();
    assert_eq!(
        got,
        want,
        "case {case}: {:#?}",
        errs.iter().map(FieldError::message).collect::<Vec<_>>()
    );
}

/// Applies a JSON merge patch (RFC 7386) so cases can be written as small deltas.
fn merge(base: &Value, patch: &Value) -> Value {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            let mut out = b.clone();
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge(b.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        (_, p) => p.clone(),
    }
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
    })
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx"}]}
            }
        }
    })
}

#[test]
fn messages_render_like_upstream() {
    let cases = [
        (
            FieldError::required(
                &Path::new("spec")
                    .child("containers")
                    .index(0)
                    .child("image"),
                "",
            ),
            "spec.containers[0].image: Required value",
        ),
        (
            FieldError::invalid(
                &Path::new("metadata").child("name"),
                render::quote("Foo"),
                "bad",
            ),
            "metadata.name: Invalid value: \"Foo\": bad",
        ),
        (
            FieldError::not_supported(
                &Path::new("spec.restartPolicy"),
                render::quote("x"),
                &["Always", "Never"],
            ),
            "spec.restartPolicy: Unsupported value: \"x\": supported values: \"Always\", \"Never\"",
        ),
        (
            FieldError::too_long(&Path::new("metadata.annotations"), 262144),
            "metadata.annotations: Too long: must have at most 262144 bytes",
        ),
        (
            FieldError::forbidden(&Path::new("spec"), "nope"),
            "spec: Forbidden: nope",
        ),
        (
            FieldError::duplicate(&Path::new("a").key("k"), render::quote("x")),
            "a[k]: Duplicate value: \"x\"",
        ),
        (
            FieldError::too_many(&Path::new("l"), 5, 3),
            "l: Too many: 5: must have at most 3 items",
        ),
    ];
    for (err, want) in cases {
        assert_eq!(err.message(), want);
    }
    assert_eq!(Required.cause_type(), "FieldValueRequired");
    assert_eq!(NotSupported.cause_type(), "FieldValueNotSupported");
    assert_eq!(TooMany.cause_type(), "FieldValueTooMany");
    assert_eq!(render::quote("a\"b\n"), "\"a\\\"b\\n\"");
    assert_eq!(
        render::string_map(Some(&json!({"b": "2", "a": "1"}))),
        "map[string]string{\"a\":\"1\", \"b\":\"2\"}"
    );
}

#[test]
fn name_rules_per_kind() {
    let cases: &[(&str, &str, &str, bool)] = &[
        ("", "Pod", "web-1", true),
        ("", "Pod", "web.example.com", true),
        ("", "Pod", "Web", false),
        ("", "Pod", "-web", false),
        ("", "Pod", &"a".repeat(254), false),
        ("", "Namespace", "kube-system", true),
        ("", "Namespace", "a.b", false),
        ("", "Service", "frontend", true),
        ("", "Service", "1frontend", false),
        ("", "Service", "front.end", false),
        ("apps", "StatefulSet", "db.v1", true),
        ("", "ConfigMap", "cfg.d", true),
        ("", "ConfigMap", "cfg_d", false),
    ];
    for (group, kind, name, ok) in cases {
        let errs = validate_name(&resource(group, kind), name);
        assert_eq!(errs.is_empty(), *ok, "{kind} {name}: {errs:?}");
    }
    let errs = validate_name(&resource("", "Namespace"), "a.b");
    assert_eq!(errs, vec!["must not contain dots".to_string()]);
    assert_eq!(names::is_path_segment_name(".."), vec!["may not be '..'"]);
    assert_eq!(
        names::is_path_segment_name("a/b%"),
        vec!["may not contain '/'", "may not contain '%'"]
    );
}

#[test]
fn bad_name_message_matches_upstream() {
    let errs = create(
        "",
        "Pod",
        merge(&pod(), &json!({"metadata": {"name": "Foo"}})),
    );
    assert_eq!(errs.len(), 1);
    assert_eq!(
        errs[0].message(),
        "metadata.name: Invalid value: \"Foo\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    let errs = validate_name(&resource("", "Namespace"), "Foo");
    assert_eq!(errs, vec!["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_string()]);
}

#[test]
fn metadata_rules() {
    let big = "x".repeat(TOTAL_ANNOTATIONS + 1);
    let cases: Vec<Case> = vec![
        ("valid", json!({}), vec![]),
        (
            "no name",
            json!({"metadata": {"name": null}}),
            vec![("metadata.name", Required)],
        ),
        (
            "no namespace",
            json!({"metadata": {"namespace": null}}),
            vec![("metadata.namespace", Required)],
        ),
        (
            "bad namespace",
            json!({"metadata": {"namespace": "Kube"}}),
            vec![("metadata.namespace", Invalid)],
        ),
        (
            "label key",
            json!({"metadata": {"labels": {"bad key": "v"}}}),
            vec![("metadata.labels", Invalid)],
        ),
        (
            "label prefix",
            json!({"metadata": {"labels": {"Example.com/k": "v"}}}),
            vec![("metadata.labels", Invalid)],
        ),
        (
            "label ok",
            json!({"metadata": {"labels": {"example.com/k": "v", "k": ""}}}),
            vec![],
        ),
        (
            "label value",
            json!({"metadata": {"labels": {"k": "-v"}}}),
            vec![("metadata.labels", Invalid)],
        ),
        (
            "label value long",
            json!({"metadata": {"labels": {"k": "v".repeat(64)}}}),
            vec![("metadata.labels", Invalid)],
        ),
        (
            "annotation key",
            json!({"metadata": {"annotations": {"a/b/c": "v"}}}),
            vec![("metadata.annotations", Invalid)],
        ),
        (
            "annotation case",
            json!({"metadata": {"annotations": {"Example.COM/Key": "v"}}}),
            vec![],
        ),
        (
            "annotation size",
            json!({"metadata": {"annotations": {"k": big}}}),
            vec![("metadata.annotations", TooLong)],
        ),
        (
            "finalizer",
            json!({"metadata": {"finalizers": ["example.com/f", "bad f"]}}),
            vec![("metadata.finalizers", Invalid)],
        ),
        (
            "owner fields",
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/", "kind": "", "name": "", "uid": ""}]}}),
            vec![
                ("metadata.ownerReferences.apiVersion", Invalid),
                ("metadata.ownerReferences.kind", Invalid),
                ("metadata.ownerReferences.name", Invalid),
                ("metadata.ownerReferences.uid", Invalid),
            ],
        ),
        (
            "two controllers",
            json!({"metadata": {"ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}
            ]}}),
            vec![("metadata.ownerReferences", Invalid)],
        ),
    ];
    for (case, patch, want) in cases {
        expect(&create("", "Pod", merge(&pod(), &patch)), &want, case);
    }
    let ns = json!({"metadata": {"name": "n", "namespace": "default"}});
    expect(
        &create("", "Namespace", ns),
        &[("metadata.namespace", Forbidden)],
        "cluster-scoped",
    );
}

const TOTAL_ANNOTATIONS: usize = 256 * 1024;

#[test]
fn owner_controller_message() {
    let patch = json!({"metadata": {"ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": true},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": true}
    ]}});
    let errs = create("", "Pod", merge(&pod(), &patch));
    assert!(errs[0].detail.starts_with(
        "Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/a and ReplicaSet/b"
    ));
}

#[test]
fn minimal_pod_defaults() {
    let r = resource("", "Pod");
    let mut p = json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "containers": [{
                "name": "app", "image": "nginx",
                "ports": [{"containerPort": 80}],
                "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "1Gi"}},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "livenessProbe": {"httpGet": {"port": 80}}
            }],
            "initContainers": [{"name": "init", "image": "busybox:1.36"}],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "scratch"},
                {"name": "sec", "secret": {"secretName": "s"}}
            ]
        }
    });
    apply_defaults(&r, &mut p);
    let want = json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "containers": [{
                "name": "app", "image": "nginx",
                "imagePullPolicy": "Always",
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "1Gi", "cpu": "500m"}},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName", "apiVersion": "v1"}}}],
                "livenessProbe": {
                    "httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                    "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3
                }
            }],
            "initContainers": [{
                "name": "init", "image": "busybox:1.36",
                "imagePullPolicy": "IfNotPresent",
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "resources": {}
            }],
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "sec", "secret": {"secretName": "s", "defaultMode": 420}}
            ],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "terminationGracePeriodSeconds": 30,
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "enableServiceLinks": true,
            "priority": 0,
            "preemptionPolicy": "PreemptLowerPriority"
        }
    });
    assert_eq!(p, want);
    assert!(
        validate_create(&r, &p).is_empty(),
        "{:?}",
        validate_create(&r, &p)
    );
    // Defaulting is idempotent.
    let mut again = p.clone();
    apply_defaults(&r, &mut again);
    assert_eq!(again, p);
}

#[test]
fn image_pull_policy_defaults() {
    let cases = [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("localhost:5000/nginx", "Always"),
        ("localhost:5000/nginx:v1", "IfNotPresent"),
        ("nginx@sha256:abcd", "IfNotPresent"),
        ("nginx:latest@sha256:abcd", "Always"),
        ("Nginx", "IfNotPresent"),
    ];
    for (image, want) in cases {
        assert_eq!(defaults::default_pull_policy(image), want, "{image}");
    }
}

#[test]
fn minimal_deployment_defaults() {
    let r = resource("apps", "Deployment");
    let mut d = deployment();
    apply_defaults(&r, &mut d);
    let spec = &d["spec"];
    assert_eq!(spec["replicas"], json!(1));
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(spec["revisionHistoryLimit"], json!(10));
    assert_eq!(spec["progressDeadlineSeconds"], json!(600));
    let tpl = &spec["template"]["spec"];
    assert_eq!(tpl["restartPolicy"], json!("Always"));
    assert_eq!(tpl["dnsPolicy"], json!("ClusterFirst"));
    assert_eq!(tpl["schedulerName"], json!("default-scheduler"));
    assert_eq!(tpl["containers"][0]["imagePullPolicy"], json!("Always"));
    // Pod-only defaults stay off templates.
    assert!(tpl.get("enableServiceLinks").is_none());
    assert!(tpl.get("priority").is_none());
    assert!(validate_create(&r, &d).is_empty());
}

#[test]
fn workload_defaults() {
    let mut sts = json!({"metadata": {"name": "db", "namespace": "d"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}}, "serviceName": "db",
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]
    }});
    apply_defaults(&resource("apps", "StatefulSet"), &mut sts);
    assert_eq!(sts["spec"]["podManagementPolicy"], json!("OrderedReady"));
    assert_eq!(
        sts["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(sts["spec"]["replicas"], json!(1));
    assert_eq!(
        sts["spec"]["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"],
        json!("Filesystem")
    );

    let mut ds = json!({"metadata": {"name": "d"}, "spec": {}});
    apply_defaults(&resource("apps", "DaemonSet"), &mut ds);
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );

    let mut job = json!({"metadata": {"name": "j", "uid": "u-1"}, "spec": {"template": {"metadata": {"labels": {"x": "y"}}, "spec": {}}}});
    apply_defaults(&resource("batch", "Job"), &mut job);
    let s = &job["spec"];
    assert_eq!(
        (
            s["completions"].clone(),
            s["parallelism"].clone(),
            s["backoffLimit"].clone()
        ),
        (json!(1), json!(1), json!(6))
    );
    assert_eq!(s["completionMode"], json!("NonIndexed"));
    assert_eq!(s["suspend"], json!(false));
    assert_eq!(s["podReplacementPolicy"], json!("TerminatingOrFailed"));
    assert_eq!(
        s["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
    );
    assert_eq!(s["template"]["metadata"]["labels"]["job-name"], json!("j"));
    assert_eq!(job["metadata"]["labels"], json!({"x": "y"}));

    let mut cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {}}}}}});
    apply_defaults(&resource("batch", "CronJob"), &mut cj);
    let s = &cj["spec"];
    assert_eq!(s["concurrencyPolicy"], json!("Allow"));
    assert_eq!(
        (
            s["successfulJobsHistoryLimit"].clone(),
            s["failedJobsHistoryLimit"].clone()
        ),
        (json!(3), json!(1))
    );
    assert_eq!(s["suspend"], json!(false));
    assert_eq!(
        s["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
        json!("Always")
    );
    assert!(s["jobTemplate"]["spec"].get("backoffLimit").is_none());
}

#[test]
fn core_defaults() {
    let mut svc = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}});
    apply_defaults(&resource("", "Service"), &mut svc);
    let s = &svc["spec"];
    assert_eq!(s["type"], json!("ClusterIP"));
    assert_eq!(s["sessionAffinity"], json!("None"));
    assert_eq!(
        s["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
    assert_eq!(s["ports"][1]["targetPort"], json!("https"));
    assert_eq!(s["internalTrafficPolicy"], json!("Cluster"));
    assert_eq!(s["ipFamilyPolicy"], json!("SingleStack"));
    assert_eq!(s["ipFamilies"], json!(["IPv4"]));
    assert!(s.get("externalTrafficPolicy").is_none());

    let mut np = json!({"spec": {"type": "NodePort", "sessionAffinity": "ClientIP"}});
    apply_defaults(&resource("", "Service"), &mut np);
    assert_eq!(np["spec"]["externalTrafficPolicy"], json!("Cluster"));
    assert_eq!(
        np["spec"]["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );

    let mut sec =
        json!({"metadata": {"name": "s"}, "stringData": {"user": "admin"}, "data": {"a": "Yg=="}});
    apply_defaults(&resource("", "Secret"), &mut sec);
    assert_eq!(
        sec,
        json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "Yg==", "user": "YWRtaW4="}})
    );

    let mut ns = json!({"metadata": {"name": "team-a"}});
    apply_defaults(&resource("", "Namespace"), &mut ns);
    assert_eq!(
        ns,
        json!({
            "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
            "status": {"phase": "Active"}
        })
    );

    let mut pc = json!({"metadata": {"name": "high"}, "value": 1000});
    apply_defaults(&resource("scheduling.k8s.io", "PriorityClass"), &mut pc);
    assert_eq!(pc["preemptionPolicy"], json!("PreemptLowerPriority"));
}

#[test]
fn pod_spec_rules() {
    let cases: Vec<Case> = vec![
        ("valid", json!({}), vec![]),
        (
            "no containers",
            json!({"spec": {"containers": []}}),
            vec![("spec.containers", Required)],
        ),
        (
            "no image",
            json!({"spec": {"containers": [{"name": "app"}]}}),
            vec![("spec.containers[0].image", Required)],
        ),
        (
            "image spaces",
            json!({"spec": {"containers": [{"name": "app", "image": " nginx"}]}}),
            vec![("spec.containers[0].image", Invalid)],
        ),
        (
            "container name",
            json!({"spec": {"containers": [{"name": "App", "image": "x"}]}}),
            vec![("spec.containers[0].name", Invalid)],
        ),
        (
            "container name missing",
            json!({"spec": {"containers": [{"image": "x"}]}}),
            vec![("spec.containers[0].name", Required)],
        ),
        (
            "dup names across init",
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "a", "image": "x"}], "initContainers": [{"name": "a", "image": "x"}]}}),
            vec![
                ("spec.containers[1].name", Duplicate),
                ("spec.initContainers[0].name", Duplicate),
            ],
        ),
        (
            "restartPolicy",
            json!({"spec": {"restartPolicy": "Sometimes"}}),
            vec![("spec.restartPolicy", NotSupported)],
        ),
        (
            "dnsPolicy",
            json!({"spec": {"dnsPolicy": "Google"}}),
            vec![("spec.dnsPolicy", NotSupported)],
        ),
        (
            "dnsPolicy None",
            json!({"spec": {"dnsPolicy": "None"}}),
            vec![("spec.dnsConfig", Required)],
        ),
        (
            "pullPolicy",
            json!({"spec": {"containers": [{"name": "a", "image": "x", "imagePullPolicy": "Sometimes"}]}}),
            vec![("spec.containers[0].imagePullPolicy", NotSupported)],
        ),
        (
            "ports",
            json!({"spec": {"containers": [{"name": "a", "image": "x", "ports": [
                {"containerPort": 0}, {"containerPort": 70000}, {"containerPort": 80, "protocol": "HTTP"},
                {"containerPort": 81, "hostPort": -1}, {"containerPort": 82, "name": "http"}, {"containerPort": 83, "name": "http"},
                {"containerPort": 84, "name": "Bad_Name"}
            ]}]}}),
            vec![
                ("spec.containers[0].ports[0].containerPort", Required),
                ("spec.containers[0].ports[1].containerPort", Invalid),
                ("spec.containers[0].ports[2].protocol", NotSupported),
                ("spec.containers[0].ports[3].hostPort", Invalid),
                ("spec.containers[0].ports[5].name", Duplicate),
                ("spec.containers[0].ports[6].name", Invalid),
            ],
        ),
        (
            "env",
            json!({"spec": {"containers": [{"name": "a", "image": "x", "env": [
                {"name": ""}, {"name": "A=B"}, {"name": "my.var-1"},
                {"name": "X", "valueFrom": {}},
                {"name": "Y", "value": "v", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                {"name": "Z", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "bad/key"}}},
                {"name": "W", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}
            ]}]}}),
            vec![
                ("spec.containers[0].env[0].name", Required),
                ("spec.containers[0].env[1].name", Invalid),
                ("spec.containers[0].env[3].valueFrom", Invalid),
                ("spec.containers[0].env[4].valueFrom", Invalid),
                (
                    "spec.containers[0].env[5].valueFrom.configMapKeyRef.key",
                    Invalid,
                ),
                (
                    "spec.containers[0].env[6].valueFrom.fieldRef.fieldPath",
                    NotSupported,
                ),
            ],
        ),
        (
            "volumes and mounts",
            json!({"spec": {
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}, {"name": "Bad", "emptyDir": {}},
                            {"name": "two", "emptyDir": {}, "hostPath": {"path": "/x"}}, {"name": "cm", "configMap": {"name": ""}}],
                "containers": [{"name": "a", "image": "x", "volumeMounts": [
                    {"name": "data", "mountPath": "/d"}, {"name": "missing", "mountPath": "/m"},
                    {"name": "data", "mountPath": "/d"}, {"name": "data", "mountPath": ""}
                ]}]
            }}),
            vec![
                ("spec.volumes[1].name", Duplicate),
                ("spec.volumes[2].name", Invalid),
                ("spec.volumes[3].hostPath", Forbidden),
                ("spec.volumes[4].configMap.name", Required),
                ("spec.containers[0].volumeMounts[1].name", NotFound),
                ("spec.containers[0].volumeMounts[2].mountPath", Invalid),
                ("spec.containers[0].volumeMounts[3].mountPath", Required),
            ],
        ),
        (
            "resources",
            json!({"spec": {"containers": [{"name": "a", "image": "x", "resources": {
                "limits": {"cpu": "1", "memory": "lots", "example.com/gpu": "1"},
                "requests": {"cpu": "2", "memory": "-1", "widgets": "1", "example.com/gpu": "1", "example.com/fpga": "1"}
            }}]}}),
            vec![
                ("spec.containers[0].resources.limits[memory]", Invalid),
                ("spec.containers[0].resources.requests", Invalid),
                ("spec.containers[0].resources.limits", Required),
                ("spec.containers[0].resources.requests[memory]", Invalid),
                ("spec.containers[0].resources.requests[widgets]", Invalid),
            ],
        ),
        (
            "resources ok",
            json!({"spec": {"containers": [{"name": "a", "image": "x", "resources": {
                "limits": {"cpu": "0.5", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "512Mi"}
            }}]}}),
            vec![],
        ),
        (
            "nodeSelector",
            json!({"spec": {"nodeSelector": {"disk": "s s d"}}}),
            vec![("spec.nodeSelector", Invalid)],
        ),
        (
            "tolerations",
            json!({"spec": {"tolerations": [
                {"operator": "Exists"},
                {"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"},
                {"operator": "Equal", "value": "v"},
                {"key": "k", "operator": "Maybe"},
                {"key": "k", "operator": "Exists", "value": "v"},
                {"key": "k", "effect": "Sometimes"},
                {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}
            ]}}),
            vec![
                ("spec.tolerations[2].operator", Invalid),
                ("spec.tolerations[3].operator", NotSupported),
                ("spec.tolerations[4].operator", Invalid),
                ("spec.tolerations[5].effect", NotSupported),
                ("spec.tolerations[6].effect", Invalid),
            ],
        ),
        (
            "activeDeadlineSeconds",
            json!({"spec": {"activeDeadlineSeconds": 0}}),
            vec![("spec.activeDeadlineSeconds", Invalid)],
        ),
        (
            "serviceAccountName",
            json!({"spec": {"serviceAccountName": "Bad"}}),
            vec![("spec.serviceAccountName", Invalid)],
        ),
        (
            "probes",
            json!({"spec": {"containers": [{"name": "a", "image": "x",
                "livenessProbe": {"successThreshold": 2, "tcpSocket": {"port": 8080}},
                "readinessProbe": {"periodSeconds": -1, "exec": {"command": ["true"]}},
                "startupProbe": {}
            }]}}),
            vec![
                ("spec.containers[0].livenessProbe.successThreshold", Invalid),
                ("spec.containers[0].readinessProbe.periodSeconds", Invalid),
                ("spec.containers[0].startupProbe", Required),
            ],
        ),
        (
            "init probes and sidecars",
            json!({"spec": {"initContainers": [
                {"name": "i", "image": "x", "readinessProbe": {"exec": {"command": ["true"]}}},
                {"name": "s", "image": "x", "restartPolicy": "Always", "readinessProbe": {"exec": {"command": ["true"]}}},
                {"name": "t", "image": "x", "restartPolicy": "Never"}
            ], "containers": [{"name": "a", "image": "x", "restartPolicy": "Always"}]}}),
            vec![
                ("spec.containers[0].restartPolicy", Forbidden),
                ("spec.initContainers[0].readinessProbe", Forbidden),
                ("spec.initContainers[2].restartPolicy", NotSupported),
            ],
        ),
    ];
    for (case, patch, want) in cases {
        expect(&create("", "Pod", merge(&pod(), &patch)), &want, case);
    }
}

#[test]
fn resource_limit_message() {
    let patch = json!({"spec": {"containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}}]}});
    let errs = create("", "Pod", merge(&pod(), &patch));
    assert_eq!(
        errs[0].message(),
        "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"
    );
}

#[test]
fn pod_update_rules() {
    let base = json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {
            "containers": [{"name": "app", "image": "nginx:1"}],
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}],
            "activeDeadlineSeconds": 100
        }
    });
    let cases: Vec<Case> = vec![
        ("unchanged", json!({}), vec![]),
        (
            "image",
            json!({"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}),
            vec![],
        ),
        (
            "labels",
            json!({"metadata": {"labels": {"a": "b"}}}),
            vec![],
        ),
        (
            "deadline lowered",
            json!({"spec": {"activeDeadlineSeconds": 50}}),
            vec![],
        ),
        (
            "deadline raised",
            json!({"spec": {"activeDeadlineSeconds": 200}}),
            vec![("spec.activeDeadlineSeconds", Invalid)],
        ),
        (
            "deadline removed",
            json!({"spec": {"activeDeadlineSeconds": null}}),
            vec![("spec.activeDeadlineSeconds", Invalid)],
        ),
        (
            "toleration added",
            json!({"spec": {"tolerations": [
                {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
                {"key": "j", "operator": "Exists"}
            ]}}),
            vec![],
        ),
        (
            "toleration removed",
            json!({"spec": {"tolerations": []}}),
            vec![("spec.tolerations", Forbidden)],
        ),
        (
            "restartPolicy",
            json!({"spec": {"restartPolicy": "Never"}}),
            vec![("spec", Forbidden)],
        ),
        (
            "containers added",
            json!({"spec": {"containers": [{"name": "app", "image": "nginx:1"}, {"name": "b", "image": "x"}]}}),
            vec![("spec.containers", Forbidden)],
        ),
        (
            "name changed",
            json!({"metadata": {"name": "other"}}),
            vec![("metadata.name", Invalid)],
        ),
        (
            "uid changed",
            json!({"metadata": {"uid": "u2"}}),
            vec![("metadata.uid", Invalid)],
        ),
        ("uid omitted", json!({"metadata": {"uid": null}}), vec![]),
    ];
    for (case, patch, want) in cases {
        expect(
            &update("", "Pod", base.clone(), merge(&base, &patch)),
            &want,
            case,
        );
    }
    let errs = update(
        "",
        "Pod",
        base.clone(),
        merge(&base, &json!({"spec": {"restartPolicy": "Never"}})),
    );
    assert!(errs[0].message().starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"));
    assert!(errs[0].detail.contains("restartPolicy"));
}

#[test]
fn finalizers_cannot_be_added_while_deleting() {
    let old = merge(
        &pod(),
        &json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["a.io/x"]}}),
    );
    let new = merge(
        &old,
        &json!({"metadata": {"finalizers": ["a.io/x", "a.io/y"]}}),
    );
    expect(
        &update("", "Pod", old.clone(), new),
        &[("metadata.finalizers", Forbidden)],
        "add",
    );
    let new = merge(&old, &json!({"metadata": {"finalizers": []}}));
    expect(&update("", "Pod", old, new), &[], "remove");
}

#[test]
fn replica_controller_rules() {
    let cases: Vec<KindCase> = vec![
        ("Deployment", "valid", json!({}), vec![]),
        (
            "Deployment",
            "mismatch",
            json!({"spec": {"template": {"metadata": {"labels": {"app": "other"}}}}}),
            vec![("spec.template.metadata.labels", Invalid)],
        ),
        (
            "Deployment",
            "no selector",
            json!({"spec": {"selector": null}}),
            vec![("spec.selector", Required)],
        ),
        (
            "Deployment",
            "empty selector",
            json!({"spec": {"selector": {"matchLabels": null}}}),
            vec![("spec.selector", Invalid)],
        ),
        (
            "Deployment",
            "negative replicas",
            json!({"spec": {"replicas": -1}}),
            vec![("spec.replicas", Invalid)],
        ),
        (
            "Deployment",
            "template image",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app"}]}}}}),
            vec![("spec.template.spec.containers[0].image", Required)],
        ),
        (
            "Deployment",
            "template label key",
            json!({"spec": {"template": {"metadata": {"labels": {"bad key": "x"}}}}}),
            vec![("spec.template.labels", Invalid)],
        ),
        (
            "Deployment",
            "restartPolicy",
            json!({"spec": {"template": {"spec": {"restartPolicy": "Never"}}}}),
            vec![("spec.template.spec.restartPolicy", NotSupported)],
        ),
        (
            "Deployment",
            "strategy",
            json!({"spec": {"strategy": {"type": "Blue"}}}),
            vec![("spec.strategy", NotSupported)],
        ),
        (
            "Deployment",
            "recreate with rolling",
            json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}}),
            vec![("spec.strategy.rollingUpdate", Forbidden)],
        ),
        (
            "Deployment",
            "both zero",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}}),
            vec![("spec.strategy.rollingUpdate.maxUnavailable", Invalid)],
        ),
        (
            "Deployment",
            "over 100",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": "150%"}}}}),
            vec![("spec.strategy.rollingUpdate.maxUnavailable", Invalid)],
        ),
        (
            "Deployment",
            "bad percent",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": "x%"}}}}),
            vec![("spec.strategy.rollingUpdate.maxSurge", Invalid)],
        ),
        (
            "Deployment",
            "deadline",
            json!({"spec": {"minReadySeconds": 700}}),
            vec![("spec.progressDeadlineSeconds", Invalid)],
        ),
        (
            "Deployment",
            "expressions",
            json!({"spec": {"selector": {"matchLabels": null, "matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}}}),
            vec![],
        ),
        (
            "Deployment",
            "bad expressions",
            json!({"spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}, {"key": "x", "operator": "Near"}, {"key": "y", "operator": "Exists", "values": ["a"]}]}}}),
            vec![
                ("spec.selector.matchExpressions[0].values", Required),
                ("spec.selector.matchExpressions[1].operator", Invalid),
                ("spec.selector.matchExpressions[2].values", Forbidden),
                ("spec.template.metadata.labels", Invalid),
            ],
        ),
        ("ReplicaSet", "valid", json!({}), vec![]),
        (
            "ReplicaSet",
            "mismatch",
            json!({"spec": {"selector": {"matchLabels": {"app": "x"}}}}),
            vec![("spec.template.metadata.labels", Invalid)],
        ),
        ("DaemonSet", "valid", json!({}), vec![]),
        (
            "DaemonSet",
            "deadline",
            json!({"spec": {"template": {"spec": {"activeDeadlineSeconds": 5}}}}),
            vec![("spec.template.spec.activeDeadlineSeconds", Invalid)],
        ),
        (
            "DaemonSet",
            "surge and unavailable",
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}}}),
            vec![("spec.updateStrategy.rollingUpdate.maxSurge", Invalid)],
        ),
        ("StatefulSet", "valid", json!({}), vec![]),
        (
            "StatefulSet",
            "policy",
            json!({"spec": {"podManagementPolicy": "Random"}}),
            vec![("spec.podManagementPolicy", Invalid)],
        ),
        (
            "StatefulSet",
            "partition",
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": -1}}}}),
            vec![("spec.updateStrategy.rollingUpdate.partition", Invalid)],
        ),
        (
            "StatefulSet",
            "claim mount",
            json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}],
                "template": {"spec": {"containers": [{"name": "app", "image": "nginx", "volumeMounts": [{"name": "data", "mountPath": "/d"}, {"name": "nope", "mountPath": "/n"}]}]}}}}),
            vec![(
                "spec.template.spec.containers[0].volumeMounts[1].name",
                NotFound,
            )],
        ),
    ];
    for (kind, case, patch, want) in cases {
        let mut base = deployment();
        base["kind"] = json!(kind);
        if kind != "Deployment" {
            if let Some(spec) = base["spec"].as_object_mut() {
                spec.remove("strategy");
            }
        }
        let errs = create("apps", kind, merge(&base, &patch));
        expect(&errs, &want, &format!("{kind} {case}"));
    }
}

#[test]
fn selector_mismatch_message() {
    let d = merge(
        &deployment(),
        &json!({"spec": {"template": {"metadata": {"labels": {"app": "other"}}}}}),
    );
    let errs = create("apps", "Deployment", d);
    assert_eq!(
        errs[0].message(),
        "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
    );
}

#[test]
fn workload_updates() {
    let d = deployment();
    let moved = merge(
        &d,
        &json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "x"}}, "template": {"metadata": {"labels": {"tier": "x"}}}}}),
    );
    expect(
        &update("apps", "Deployment", d.clone(), moved),
        &[("spec.selector", Invalid)],
        "selector",
    );
    let scaled = merge(
        &d,
        &json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}}}}),
    );
    expect(
        &update("apps", "Deployment", d.clone(), scaled),
        &[],
        "scale and image",
    );

    let mut sts = d.clone();
    sts["kind"] = json!("StatefulSet");
    if let Some(spec) = sts["spec"].as_object_mut() {
        spec.insert("serviceName".into(), json!("db"));
    }
    let renamed = merge(&sts, &json!({"spec": {"serviceName": "other"}}));
    let errs = update("apps", "StatefulSet", sts.clone(), renamed);
    expect(&errs, &[("spec", Forbidden)], "sts serviceName");
    assert!(errs[0].detail.starts_with(
        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template'"
    ));
    let scaled = merge(
        &sts,
        &json!({"spec": {"replicas": 3, "minReadySeconds": 5}}),
    );
    expect(
        &update("apps", "StatefulSet", sts, scaled),
        &[],
        "sts scale",
    );
}

fn job() -> Value {
    json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "1234"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}
    })
}

#[test]
fn job_rules() {
    let cases: Vec<Case> = vec![
        ("valid", json!({}), vec![]),
        (
            "restart Always",
            json!({"spec": {"template": {"spec": {"restartPolicy": "Always"}}}}),
            vec![("spec.template.spec.restartPolicy", NotSupported)],
        ),
        (
            "restart default",
            json!({"spec": {"template": {"spec": {"restartPolicy": null}}}}),
            vec![("spec.template.spec.restartPolicy", NotSupported)],
        ),
        (
            "negative",
            json!({"spec": {"parallelism": -1, "backoffLimit": -2}}),
            vec![
                ("spec.parallelism", Invalid),
                ("spec.backoffLimit", Invalid),
            ],
        ),
        (
            "mode",
            json!({"spec": {"completionMode": "Sometimes"}}),
            vec![("spec.completionMode", NotSupported)],
        ),
        (
            "no selector",
            json!({"metadata": {"uid": null}}),
            vec![("spec.selector", Required)],
        ),
        (
            "manual mismatch",
            json!({"spec": {"manualSelector": true, "selector": {"matchLabels": {"a": "b"}}}}),
            vec![("spec.template.metadata.labels", Invalid)],
        ),
    ];
    for (case, patch, want) in cases {
        expect(&create("batch", "Job", merge(&job(), &patch)), &want, case);
    }
}

#[test]
fn job_updates() {
    let mut old = job();
    apply_defaults(&resource("batch", "Job"), &mut old);
    let image = merge(
        &old,
        &json!({"spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl:2"}]}}}}),
    );
    expect(
        &update("batch", "Job", old.clone(), image),
        &[("spec.template", Invalid)],
        "template",
    );
    let sel = merge(
        &old,
        &json!({"spec": {"selector": {"matchLabels": {"x": "y"}}, "template": {"metadata": {"labels": {"x": "y"}}}}}),
    );
    let errs = update("batch", "Job", old.clone(), sel);
    assert!(summary(&errs).contains(&("spec.selector".to_string(), Invalid)));
    let suspended = merge(&old, &json!({"spec": {"suspend": true}}));
    let moved = merge(
        &suspended,
        &json!({"spec": {"template": {"spec": {"nodeSelector": {"zone": "a"}}}}}),
    );
    expect(
        &update("batch", "Job", suspended, moved),
        &[],
        "suspended scheduling directives",
    );
    let unsuspend = merge(&old, &json!({"spec": {"suspend": true, "parallelism": 3}}));
    expect(
        &update("batch", "Job", old, unsuspend),
        &[],
        "suspend and parallelism are mutable",
    );
}

#[test]
fn cron_job_rules() {
    let base = json!({
        "metadata": {"name": "nightly", "namespace": "default"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}
    });
    let cases: Vec<Case> = vec![
        ("valid", json!({}), vec![]),
        (
            "descriptor",
            json!({"spec": {"schedule": "@hourly"}}),
            vec![],
        ),
        (
            "no schedule",
            json!({"spec": {"schedule": null}}),
            vec![("spec.schedule", Required)],
        ),
        (
            "bad schedule",
            json!({"spec": {"schedule": "61 * * * *"}}),
            vec![("spec.schedule", Invalid)],
        ),
        (
            "tz",
            json!({"spec": {"schedule": "CRON_TZ=UTC 0 3 * * *"}}),
            vec![("spec.schedule", Invalid)],
        ),
        (
            "long name",
            json!({"metadata": {"name": "n".repeat(53)}}),
            vec![("metadata.name", Invalid)],
        ),
        (
            "policy",
            json!({"spec": {"concurrencyPolicy": "Sometimes"}}),
            vec![("spec.concurrencyPolicy", NotSupported)],
        ),
        (
            "time zone",
            json!({"spec": {"timeZone": "Mars/../Base"}}),
            vec![("spec.timeZone", Invalid)],
        ),
        (
            "time zone ok",
            json!({"spec": {"timeZone": "Europe/Paris"}}),
            vec![],
        ),
        (
            "template restart",
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Always"}}}}}}),
            vec![(
                "spec.jobTemplate.spec.template.spec.restartPolicy",
                NotSupported,
            )],
        ),
        (
            "template selector",
            json!({"spec": {"jobTemplate": {"spec": {"selector": {"matchLabels": {"a": "b"}}}}}}),
            vec![("spec.jobTemplate.spec.selector", Invalid)],
        ),
        (
            "history",
            json!({"spec": {"failedJobsHistoryLimit": -1}}),
            vec![("spec.failedJobsHistoryLimit", Invalid)],
        ),
    ];
    for (case, patch, want) in cases {
        expect(
            &create("batch", "CronJob", merge(&base, &patch)),
            &want,
            case,
        );
    }
    let errs = create(
        "batch",
        "CronJob",
        merge(&base, &json!({"spec": {"schedule": "61 * * * *"}})),
    );
    assert_eq!(
        errs[0].message(),
        "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"
    );
}

fn service() -> Value {
    json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
}

#[test]
fn service_rules() {
    let cases: Vec<Case> = vec![
        ("valid", json!({}), vec![]),
        (
            "no ports",
            json!({"spec": {"ports": []}}),
            vec![("spec.ports", Required)],
        ),
        (
            "headless no ports",
            json!({"spec": {"ports": [], "clusterIP": "None"}}),
            vec![],
        ),
        (
            "port range",
            json!({"spec": {"ports": [{"port": 0}]}}),
            vec![
                ("spec.ports[0].port", Invalid),
                ("spec.ports[0].targetPort", Invalid),
            ],
        ),
        (
            "names required",
            json!({"spec": {"ports": [{"port": 80}, {"port": 443}]}}),
            vec![
                ("spec.ports[0].name", Required),
                ("spec.ports[1].name", Required),
            ],
        ),
        (
            "names unique",
            json!({"spec": {"ports": [{"name": "a", "port": 80}, {"name": "a", "port": 443}]}}),
            vec![("spec.ports[1].name", Duplicate)],
        ),
        (
            "dup port",
            json!({"spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}}),
            vec![("spec.ports[1]", Duplicate)],
        ),
        (
            "protocol",
            json!({"spec": {"ports": [{"port": 80, "protocol": "ICMP"}]}}),
            vec![("spec.ports[0].protocol", NotSupported)],
        ),
        (
            "target name",
            json!({"spec": {"ports": [{"port": 80, "targetPort": "HTTP"}]}}),
            vec![
                ("spec.ports[0].targetPort", Invalid),
                ("spec.ports[0].targetPort", Invalid),
            ],
        ),
        (
            "type",
            json!({"spec": {"type": "Magic"}}),
            vec![("spec.type", NotSupported)],
        ),
        (
            "affinity",
            json!({"spec": {"sessionAffinity": "Sticky"}}),
            vec![("spec.sessionAffinity", NotSupported)],
        ),
        (
            "clusterIP",
            json!({"spec": {"clusterIP": "10.0.0.300"}}),
            vec![("spec.clusterIP", Invalid)],
        ),
        (
            "nodePort on ClusterIP",
            json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}),
            vec![("spec.ports[0].nodePort", Forbidden)],
        ),
        (
            "external name",
            json!({"spec": {"type": "ExternalName", "externalName": "db.example.com.", "ports": []}}),
            vec![],
        ),
        (
            "external name missing",
            json!({"spec": {"type": "ExternalName", "ports": []}}),
            vec![("spec.externalName", Required)],
        ),
        (
            "selector",
            json!({"spec": {"selector": {"app": "w b"}}}),
            vec![("spec.selector", Invalid)],
        ),
    ];
    for (case, patch, want) in cases {
        expect(
            &create("", "Service", merge(&service(), &patch)),
            &want,
            case,
        );
    }
    let errs = create(
        "",
        "Service",
        merge(&service(), &json!({"metadata": {"name": "1web"}})),
    );
    expect(&errs, &[("metadata.name", Invalid)], "dns1035 name");
    assert!(errs[0].detail.starts_with("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character"));
}

#[test]
fn service_updates() {
    let old = merge(
        &service(),
        &json!({"spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]}}),
    );
    let same = merge(&old, &json!({"spec": {"ports": [{"port": 8080}]}}));
    expect(
        &update("", "Service", old.clone(), same),
        &[],
        "ports change",
    );
    let omitted = merge(
        &old,
        &json!({"spec": {"clusterIP": null, "clusterIPs": null}}),
    );
    expect(
        &update("", "Service", old.clone(), omitted),
        &[],
        "clusterIP omitted",
    );
    let moved = merge(
        &old,
        &json!({"spec": {"clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"]}}),
    );
    let errs = update("", "Service", old, moved);
    expect(
        &errs,
        &[("spec.clusterIPs[0]", Invalid)],
        "clusterIP changed",
    );
    assert_eq!(
        errs[0].message(),
        "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"
    );
}

#[test]
fn config_map_and_secret_rules() {
    let cm =
        json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"app.conf": "x"}});
    let cases: Vec<Case> = vec![
        ("valid", json!({}), vec![]),
        (
            "bad key",
            json!({"data": {"a/b": "x"}}),
            vec![("data[a/b]", Invalid)],
        ),
        (
            "dot dot",
            json!({"data": {"..a": "x"}}),
            vec![("data[..a]", Invalid)],
        ),
        (
            "duplicate",
            json!({"binaryData": {"app.conf": "eA=="}}),
            vec![("data[app.conf]", Invalid)],
        ),
        (
            "too big",
            json!({"data": {"big": "x".repeat(1024 * 1024 + 1)}}),
            vec![("", TooLong)],
        ),
    ];
    for (case, patch, want) in cases {
        expect(&create("", "ConfigMap", merge(&cm, &patch)), &want, case);
    }

    let sec = json!({"metadata": {"name": "s", "namespace": "default"}, "data": {"k": "dg=="}});
    let cases: Vec<Case> = vec![
        ("valid", json!({}), vec![]),
        (
            "bad key",
            json!({"data": {"k k": "dg=="}}),
            vec![("data[k k]", Invalid)],
        ),
        (
            "tls",
            json!({"type": "kubernetes.io/tls"}),
            vec![("data[tls.crt]", Required), ("data[tls.key]", Required)],
        ),
        (
            "tls ok",
            json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA==", "tls.key": "eA=="}}),
            vec![],
        ),
        (
            "sa token",
            json!({"type": "kubernetes.io/service-account-token"}),
            vec![(
                "metadata.annotations[kubernetes.io/service-account.name]",
                Required,
            )],
        ),
        (
            "dockerconfigjson",
            json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm90IGpzb24="}}),
            vec![("data[.dockerconfigjson]", Invalid)],
        ),
        (
            "basic auth",
            json!({"type": "kubernetes.io/basic-auth"}),
            vec![("data[username]", Required), ("data[password]", Required)],
        ),
    ];
    for (case, patch, want) in cases {
        expect(&create("", "Secret", merge(&sec, &patch)), &want, case);
    }
}

#[test]
fn immutable_config_updates() {
    let cm = json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "1"}, "immutable": true});
    let changed = merge(&cm, &json!({"data": {"a": "2"}}));
    expect(
        &update("", "ConfigMap", cm.clone(), changed),
        &[("data", Forbidden)],
        "data",
    );
    let unset = merge(&cm, &json!({"immutable": false}));
    expect(
        &update("", "ConfigMap", cm.clone(), unset),
        &[("immutable", Forbidden)],
        "flag",
    );
    let labeled = merge(&cm, &json!({"metadata": {"labels": {"a": "b"}}}));
    expect(&update("", "ConfigMap", cm, labeled), &[], "labels");
    let mutable = json!({"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "1"}});
    expect(
        &update(
            "",
            "ConfigMap",
            mutable.clone(),
            merge(&mutable, &json!({"data": {"a": "2"}})),
        ),
        &[],
        "mutable",
    );

    let sec = json!({"metadata": {"name": "s", "namespace": "default"}, "data": {"a": "MQ=="}, "immutable": true});
    let changed = merge(&sec, &json!({"data": {"a": "Mg=="}}));
    expect(
        &update("", "Secret", sec.clone(), changed),
        &[("data", Forbidden)],
        "secret data",
    );
    let retyped = merge(&sec, &json!({"type": "example.com/custom"}));
    let errs = update("", "Secret", sec, retyped);
    expect(&errs, &[("type", Invalid)], "type");
    assert_eq!(
        errs[0].message(),
        "type: Invalid value: \"example.com/custom\": field is immutable"
    );
}

#[test]
fn cluster_kinds() {
    let ns =
        |name: &str, fin: Value| json!({"metadata": {"name": name}, "spec": {"finalizers": fin}});
    expect(
        &create("", "Namespace", ns("team-a", json!(["kubernetes"]))),
        &[],
        "ns valid",
    );
    expect(
        &create("", "Namespace", ns("team.a", json!([]))),
        &[("metadata.name", Invalid)],
        "ns dots",
    );
    expect(
        &create("", "Namespace", ns("team-a", json!(["custom"]))),
        &[("spec.finalizers", Invalid)],
        "ns finalizer",
    );

    let pc = |name: &str, value: i64| json!({"metadata": {"name": name}, "value": value});
    let r = "scheduling.k8s.io";
    expect(
        &create(r, "PriorityClass", pc("high", 1_000_000)),
        &[],
        "pc valid",
    );
    expect(
        &create(r, "PriorityClass", pc("high", 1_000_000_001)),
        &[("value", Forbidden)],
        "pc too high",
    );
    expect(
        &create(
            r,
            "PriorityClass",
            pc("system-node-critical", 2_000_001_000),
        ),
        &[],
        "pc system",
    );
    expect(
        &create(r, "PriorityClass", pc("system-mine", 5)),
        &[("metadata.name", Forbidden)],
        "pc reserved",
    );
    expect(
        &create(
            r,
            "PriorityClass",
            merge(&pc("p", 1), &json!({"preemptionPolicy": "Always"})),
        ),
        &[("preemptionPolicy", NotSupported)],
        "pc policy",
    );
    expect(
        &update(r, "PriorityClass", pc("p", 1), pc("p", 2)),
        &[("value", Forbidden)],
        "pc value update",
    );

    let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule"}, {"key": "j", "effect": ""}]}});
    expect(
        &create("", "Node", node),
        &[
            ("spec.taints[1]", Duplicate),
            ("spec.taints[2].effect", Required),
        ],
        "node taints",
    );

    let lease = json!({"metadata": {"name": "l", "namespace": "kube-node-lease"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
    expect(
        &create("coordination.k8s.io", "Lease", lease),
        &[
            ("spec.leaseDurationSeconds", Invalid),
            ("spec.leaseTransitions", Invalid),
        ],
        "lease",
    );

    let sa = json!({"metadata": {"name": "builder", "namespace": "ci"}});
    expect(&create("", "ServiceAccount", sa), &[], "service account");
}

#[test]
fn events() {
    let ev = json!({"metadata": {"name": "web.1", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Started"});
    expect(&create("", "Event", ev.clone()), &[], "legacy valid");
    let other = merge(&ev, &json!({"involvedObject": {"namespace": "other"}}));
    expect(
        &create("", "Event", other),
        &[("involvedObject.namespace", Invalid)],
        "legacy mismatch",
    );
    let new_style = merge(&ev, &json!({"eventTime": "2024-01-01T00:00:00.000000Z"}));
    expect(
        &create("", "Event", new_style),
        &[
            ("reportingComponent", Required),
            ("reportingComponent", Invalid),
            ("reportingComponent", Invalid),
            ("reportingInstance", Required),
            ("action", Required),
            ("type", Invalid),
        ],
        "new style without reporter",
    );

    let e2 = json!({
        "metadata": {"name": "web.1", "namespace": "default"},
        "eventTime": "2024-01-01T00:00:00.000000Z", "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reportingController": "example.com/ctl", "reportingInstance": "ctl-1", "action": "Start", "type": "Normal", "reason": "Started"
    });
    expect(
        &create("events.k8s.io", "Event", e2.clone()),
        &[],
        "events.k8s.io valid",
    );
    let no_time = merge(&e2, &json!({"eventTime": null, "type": "Loud"}));
    expect(
        &create("events.k8s.io", "Event", no_time),
        &[("type", Invalid), ("eventTime", Required)],
        "events.k8s.io invalid",
    );
}

#[test]
fn endpoints_and_slices() {
    let ep = json!({"metadata": {"name": "web", "namespace": "default"}, "subsets": [
        {"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]},
        {"addresses": [{"ip": "nope"}], "ports": [{"port": 70000}]},
        {"ports": [{"name": "a", "port": 1}, {"port": 2}]}
    ]});
    expect(
        &create("", "Endpoints", ep),
        &[
            ("subsets[1].addresses[0].ip", Invalid),
            ("subsets[1].ports[0].port", Invalid),
            ("subsets[2]", Required),
            ("subsets[2].ports[1].name", Required),
        ],
        "endpoints",
    );
    let slice = |patch: Value| {
        merge(
            &json!({"metadata": {"name": "web-abc", "namespace": "default"}, "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"name": "http", "port": 80}]}),
            &patch,
        )
    };
    let d = "discovery.k8s.io";
    expect(
        &create(d, "EndpointSlice", slice(json!({}))),
        &[],
        "slice valid",
    );
    expect(
        &create(d, "EndpointSlice", slice(json!({"addressType": "IPX"}))),
        &[("addressType", NotSupported)],
        "slice type",
    );
    expect(
        &create(
            d,
            "EndpointSlice",
            slice(json!({"endpoints": [{"addresses": []}, {"addresses": ["::1"]}]})),
        ),
        &[
            ("endpoints[0].addresses", Required),
            ("endpoints[1].addresses[0]", Invalid),
        ],
        "slice addresses",
    );
    let many: Vec<String> = (0..101).map(|i| format!("10.0.0.{}", i % 250)).collect();
    expect(
        &create(
            d,
            "EndpointSlice",
            slice(json!({"endpoints": [{"addresses": many}]})),
        ),
        &[("endpoints[0].addresses", TooMany)],
        "slice too many",
    );
}
