//! The example admission policies of plugins/, run offline through the plugin host: each
//! refuses what it should, admits what it should, and checks its settings.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::wasm_plugins;
use serde_json::{json, Value};
use wkube::plugin_host::{
    AdmissionRequest, Call, CallLimits, GroupVersionKind, GroupVersionResource, Operation,
    PluginHost, PluginHostConfig, PolicyModule, PolicyResponse, RequestUser,
};

/// Builds plugins/ (incremental) and returns the directory of the built modules.
async fn load(name: &str) -> Arc<PolicyModule> {
    let host = PluginHost::new(&PluginHostConfig {
        max_concurrent_calls: 4,
        max_memory_bytes: 64 << 20,
    })
    .expect("host");
    let bytes = std::fs::read(wasm_plugins().join(name)).expect("built plugin");
    // The host may go: a module keeps what it needs of the engine alive.
    host.load(bytes).await.expect("load")
}

fn request(operation: Operation, object: Value) -> AdmissionRequest {
    let kind = object["kind"].as_str().unwrap_or("Pod").to_string();
    AdmissionRequest {
        uid: "test".into(),
        kind: GroupVersionKind {
            group: String::new(),
            version: "v1".into(),
            kind,
        },
        resource: GroupVersionResource {
            group: String::new(),
            version: "v1".into(),
            resource: "pods".into(),
        },
        sub_resource: None,
        namespace: Some("default".into()),
        name: object["metadata"]["name"].as_str().map(str::to_string),
        operation,
        user_info: RequestUser {
            username: "admin".into(),
            groups: vec!["system:masters".into()],
        },
        old_object: None,
        object: Some(object),
        dry_run: false,
        options: None,
    }
}

fn pod(labels: Value, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": image}]},
    })
}

async fn run(m: &PolicyModule, call: Call, settings: Value, r: AdmissionRequest) -> PolicyResponse {
    m.call(call, &settings, &r, &CallLimits::default())
        .await
        .expect("policy answers")
}

#[tokio::test]
async fn require_labels() {
    let m = load("require-labels.wasm").await;
    let limits = CallLimits::default();
    let settings = json!({"labels": ["team", "app"]});
    assert_eq!(m.validate_settings(&settings, &limits).await, Ok(Ok(())));
    let bad = m.validate_settings(&json!({"labels": []}), &limits).await;
    assert!(
        matches!(bad, Ok(Err(ref msg)) if msg.contains("at least one")),
        "{bad:?}"
    );

    let r = run(
        &m,
        Call::Validate,
        settings.clone(),
        request(Operation::Create, pod(json!({"team": "a"}), "x")),
    )
    .await;
    assert!(!r.allowed);
    assert_eq!(r.message.as_deref(), Some("missing required label(s): app"));
    let ok = pod(json!({"team": "a", "app": "web"}), "x");
    assert!(
        run(
            &m,
            Call::Validate,
            settings.clone(),
            request(Operation::Create, ok)
        )
        .await
        .allowed
    );
    let mut delete = request(Operation::Delete, json!({}));
    delete.object = None;
    assert!(run(&m, Call::Validate, settings, delete).await.allowed);
}

#[tokio::test]
async fn default_resources() {
    let m = load("default-resources.wasm").await;
    let settings =
        json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}});
    assert_eq!(
        m.validate_settings(&settings, &CallLimits::default()).await,
        Ok(Ok(()))
    );
    let mut object = pod(json!({}), "x");
    object["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "own", "image": "y", "resources": {"limits": {"cpu": "2"}}}));
    let update = run(
        &m,
        Call::Mutate,
        settings.clone(),
        request(Operation::Update, object.clone()),
    )
    .await;
    assert!(
        update.allowed && update.patch.is_none(),
        "a pod's resources are immutable: {update:?}"
    );
    let r = run(
        &m,
        Call::Mutate,
        settings,
        request(Operation::Create, object.clone()),
    )
    .await;
    assert!(r.allowed);
    let patch = r.patch.expect("a patch");
    json_patch::patch(&mut object, &patch).expect("the patch applies");
    let c = &object["spec"]["containers"];
    assert_eq!(
        c[0]["resources"],
        json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}})
    );
    // A container's own values win; requests never exceed its own limits.
    assert_eq!(
        c[1]["resources"],
        json!({"requests": {"cpu": "2", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "128Mi"}})
    );
}

#[tokio::test]
async fn allowed_registries() {
    let m = load("allowed-registries.wasm").await;
    let limits = CallLimits::default();
    let settings = json!({"registries": ["wkube.local", "registry.example.com:5000"]});
    assert_eq!(m.validate_settings(&settings, &limits).await, Ok(Ok(())));
    let bad = m
        .validate_settings(&json!({"registries": "x"}), &limits)
        .await;
    assert!(matches!(bad, Ok(Err(_))), "{bad:?}");

    let denied = run(
        &m,
        Call::Validate,
        settings.clone(),
        request(Operation::Create, pod(json!({}), "nginx:1.25")),
    )
    .await;
    assert!(!denied.allowed);
    assert_eq!(
        denied.message.as_deref(),
        Some("image nginx:1.25 comes from registry docker.io, which is not one of the allowed registries (wkube.local, registry.example.com:5000)")
    );
    for image in [
        "wkube.local/hello:v1",
        "registry.example.com:5000/team/app@sha256:00",
    ] {
        let r = run(
            &m,
            Call::Validate,
            settings.clone(),
            request(Operation::Create, pod(json!({}), image)),
        )
        .await;
        assert!(r.allowed, "{image}: {r:?}");
    }
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"initContainers": [{"name": "i", "image": "wkube.local/a"}],
                                       "containers": [{"name": "c", "image": "quay.io/x/y"}]}}},
    });
    let r = run(
        &m,
        Call::Validate,
        settings,
        request(Operation::Create, deployment),
    )
    .await;
    assert!(!r.allowed);
    assert!(r.message.unwrap_or_default().contains("quay.io/x/y"));
}

#[test]
fn wkube_policy_test_runs_a_policy_offline() {
    let dir = tempfile::tempdir().expect("tmp");
    let object = dir.path().join("pod.yaml");
    std::fs::write(
        &object,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: nginx}]\n",
    )
    .expect("write");
    let settings = dir.path().join("settings.json");
    std::fs::write(&settings, r#"{"registries": ["wkube.local"]}"#).expect("write");
    let module = wasm_plugins().join("allowed-registries.wasm");
    let out = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args(["policy", "test", "--module"])
        .arg(&module)
        .arg("--settings")
        .arg(&settings)
        .arg("--object")
        .arg(&object)
        .output()
        .expect("run wkube");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(answer["allowed"], false);
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or("")
            .contains("docker.io"),
        "{answer}"
    );

    std::fs::write(&settings, r#"{"registries": 3}"#).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args(["policy", "test", "--module"])
        .arg(&module)
        .arg("--settings")
        .arg(&settings)
        .arg("--object")
        .arg(&object)
        .output()
        .expect("run wkube");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refuses its settings"));
}

#[test]
fn wkube_policy_bench_prints_latencies() {
    let dir = tempfile::tempdir().expect("tmp");
    let object = dir.path().join("pod.json");
    std::fs::write(
        &object,
        pod(json!({"team": "a"}), "wkube.local/x").to_string(),
    )
    .expect("write");
    let settings = dir.path().join("settings.json");
    std::fs::write(&settings, r#"{"labels": ["team"]}"#).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args(["policy", "bench", "--iterations", "20", "--module"])
        .arg(wasm_plugins().join("require-labels.wasm"))
        .arg("--settings")
        .arg(&settings)
        .arg("--object")
        .arg(&object)
        .output()
        .expect("run wkube");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("20 calls to validate") && stdout.contains("p99"),
        "{stdout}"
    );
}

/// A pod's spec with one container and the given extras merged into the pod spec.
fn pod_spec_with(container: Value, volumes: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [container], "volumes": volumes},
    })
}

#[tokio::test]
async fn deny_privileged_python() {
    let m = load("deny-privileged.wasm").await;
    let limits = CallLimits::default();
    assert_eq!(m.validate_settings(&json!({}), &limits).await, Ok(Ok(())));
    let settings = json!({"allowedHostPaths": ["/var/log"]});
    assert_eq!(m.validate_settings(&settings, &limits).await, Ok(Ok(())));
    for (bad, why) in [
        (
            json!({"allowedHostPath": ["/x"]}),
            "unknown setting(s): allowedHostPath",
        ),
        (json!({"allowedHostPaths": ["relative"]}), "absolute paths"),
    ] {
        let r = m.validate_settings(&bad, &limits).await;
        assert!(
            matches!(r, Ok(Err(ref msg)) if msg.contains(why)),
            "{bad}: {r:?}"
        );
    }

    let validate = |object: Value| {
        let m = m.clone();
        let settings = settings.clone();
        async move {
            run(
                &m,
                Call::Validate,
                settings,
                request(Operation::Create, object),
            )
            .await
        }
    };
    // A privileged container and a host path outside the allowed ones, both named.
    let r = validate(pod_spec_with(
        json!({"name": "c", "image": "x", "securityContext": {"privileged": true}}),
        json!([{"name": "logs", "hostPath": {"path": "/var/log/app"}},
               {"name": "etc", "hostPath": {"path": "/etc"}},
               {"name": "tmp", "emptyDir": {}}]),
    ))
    .await;
    assert!(!r.allowed);
    assert_eq!(
        r.message.as_deref(),
        Some("container \"c\" is privileged; volume \"etc\" mounts host path /etc (privileged containers and hostPath volumes are not allowed)")
    );
    // `/var/logs` is not under `/var/log`: prefixes match whole path segments.
    let r = validate(pod_spec_with(
        json!({"name": "c", "image": "x"}),
        json!([{"name": "l", "hostPath": {"path": "/var/logs"}}]),
    ))
    .await;
    assert!(!r.allowed, "{r:?}");
    // privileged: false, an allowed host path and no volumes at all are fine.
    let ok = validate(pod_spec_with(
        json!({"name": "c", "image": "x", "securityContext": {"privileged": false}}),
        json!([{"name": "logs", "hostPath": {"path": "/var/log"}}]),
    ))
    .await;
    assert!(ok.allowed && ok.message.is_none(), "{ok:?}");

    // Pod templates of workloads, and every container list.
    let cronjob = json!({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "cj"},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "initContainers": [{"name": "setup", "image": "x", "securityContext": {"privileged": true}}],
            "containers": [{"name": "main", "image": "x"}]}}}}},
    });
    let r = validate(cronjob).await;
    assert!(!r.allowed);
    assert!(
        r.message
            .as_deref()
            .unwrap_or("")
            .starts_with("initContainer \"setup\" is privileged"),
        "{r:?}"
    );
    let mut debug = pod_spec_with(json!({"name": "c", "image": "x"}), json!([]));
    debug["spec"]["ephemeralContainers"] =
        json!([{"name": "dbg", "image": "busybox", "securityContext": {"privileged": true}}]);
    let r = validate(debug).await;
    assert!(
        r.message
            .as_deref()
            .unwrap_or("")
            .contains("ephemeralContainer \"dbg\""),
        "{r:?}"
    );
    // Kinds without a pod spec pass.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"spec": "x"}});
    assert!(validate(cm).await.allowed);
}

#[tokio::test]
async fn require_name_and_tag_javascript() {
    let m = load("require-name-and-tag.wasm").await;
    let limits = CallLimits::default();
    assert_eq!(m.validate_settings(&json!({}), &limits).await, Ok(Ok(())));
    let r = m
        .validate_settings(&json!({"labels": ["x"]}), &limits)
        .await;
    assert!(
        matches!(r, Ok(Err(ref msg)) if msg == "this policy takes no settings (got: labels)"),
        "{r:?}"
    );

    let validate = |object: Value| {
        let m = m.clone();
        async move {
            run(
                &m,
                Call::Validate,
                json!({}),
                request(Operation::Create, object),
            )
            .await
        }
    };
    let named = json!({"app.kubernetes.io/name": "web"});
    let r = validate(pod(json!({"team": "a"}), "nginx:1.25")).await;
    assert!(!r.allowed);
    assert_eq!(
        r.message.as_deref(),
        Some("missing required label app.kubernetes.io/name")
    );
    let r = validate(pod(named.clone(), "nginx:latest")).await;
    assert_eq!(
        r.message.as_deref(),
        Some("container \"c\": image nginx:latest uses the :latest tag (pin images to a version tag or a digest)")
    );
    // A registry port is not a tag.
    let r = validate(pod(named.clone(), "127.0.0.1:5000/team/app")).await;
    assert_eq!(
        r.message.as_deref(),
        Some("container \"c\": image 127.0.0.1:5000/team/app has no tag (it would run :latest) (pin images to a version tag or a digest)")
    );
    for image in [
        "nginx:1.25",
        "127.0.0.1:5000/app:v1",
        "nginx@sha256:00",
        "nginx:latest@sha256:00",
    ] {
        let r = validate(pod(named.clone(), image)).await;
        assert!(r.allowed && r.message.is_none(), "{image}: {r:?}");
    }
    // Every problem of a workload's template is listed.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {"spec": {
            "initContainers": [{"name": "i", "image": "busybox"}],
            "containers": [{"name": "c", "image": "nginx:1.25"}, {"name": "s", "image": "envoy:latest"}]}}},
    });
    let r = validate(deployment).await;
    assert_eq!(
        r.message.as_deref(),
        Some("missing required label app.kubernetes.io/name; container \"i\": image busybox has no tag (it would run :latest); container \"s\": image envoy:latest uses the :latest tag (pin images to a version tag or a digest)")
    );
    // Deletes pass whatever the object.
    let mut delete = request(Operation::Delete, json!({}));
    delete.object = None;
    assert!(run(&m, Call::Validate, json!({}), delete).await.allowed);
}
