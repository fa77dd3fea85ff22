//! End-to-end: wasm admission policies in the API server's write path, driven by the real
//! kubectl. The policies are the examples of plugins/ (built once by plugins/build.sh) and
//! hostile modules written in WAT.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{eventually, wasm_plugins, Cluster};
use serde_json::{json, Value};

fn plugin(name: &str) -> Vec<u8> {
    std::fs::read(wasm_plugins().join(name)).expect("built plugin")
}

/// A ClusterAdmissionPolicy on pod creates and updates, with the module inline.
fn policy(name: &str, module: &[u8], spec: Value) -> String {
    let mut full = json!({
        "module": {"inline": base64::engine::general_purpose::STANDARD.encode(module)},
        "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
                   "operations": ["CREATE", "UPDATE"]}],
    });
    if let (Some(f), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        f.extend(extra.clone());
    }
    json!({
        "apiVersion": "wkube.dev/v1alpha1",
        "kind": "ClusterAdmissionPolicy",
        "metadata": {"name": name},
        "spec": full,
    })
    .to_string()
}

fn pod(name: &str, labels: Value, image: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": image}]},
    })
    .to_string()
}

fn wait_for_phase(c: &Cluster, name: &str, phase: &str) {
    let path = "jsonpath={.status.phase}";
    eventually(Duration::from_secs(60), || {
        let out = c.kubectl(&["get", "clusteradmissionpolicy", name, "-o", path]);
        (String::from_utf8_lossy(&out.stdout) == phase).then_some(())
    });
}

/// Runs `kubectl apply -f -` and returns (success, stderr).
fn apply(c: &Cluster, manifest: &str) -> (bool, String) {
    let out = c.kubectl_stdin(&["apply", "-f", "-"], manifest);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_rust_policy_refuses_warns_and_can_be_misconfigured() {
    let c = Cluster::start();
    let module = plugin("require-labels.wasm");
    c.ok_stdin(
        &["apply", "-f", "-"],
        &policy(
            "require-team",
            &module,
            json!({"settings": {"labels": ["team"]}}),
        ),
    );
    wait_for_phase(&c, "require-team", "Active");
    let table = c.ok(&["get", "clusteradmissionpolicies"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "MODE", "STATUS", "AGE"], "{table}");
    assert!(
        table.contains("require-team") && table.contains("protect") && table.contains("Active"),
        "{table}"
    );

    let (ok, err) = apply(&c, &pod("bad", json!({"app": "x"}), "wkube.local/hello:v1"));
    assert!(!ok, "a pod without the label was admitted");
    assert!(
        err.contains(
            "admission policy \"require-team\" denied the request: missing required label(s): team"
        ),
        "{err}"
    );
    let (ok, err) = apply(
        &c,
        &pod("good", json!({"team": "a"}), "wkube.local/hello:v1"),
    );
    assert!(ok, "{err}");

    // A dry run is judged too, and stores nothing.
    let out = c.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &pod("bad", json!({}), "x"),
    );
    assert!(!out.status.success());
    c.ok_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &pod("dry", json!({"team": "a"}), "x"),
    );
    assert!(!c.kubectl(&["get", "pod", "dry"]).status.success());

    // Monitor mode admits and warns.
    c.ok_stdin(
        &["apply", "-f", "-"],
        &policy(
            "require-team",
            &module,
            json!({"settings": {"labels": ["team"]}, "mode": "monitor"}),
        ),
    );
    eventually(Duration::from_secs(30), || {
        let out = c.kubectl_stdin(&["apply", "-f", "-"], &pod("watched", json!({}), "x"));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &pod("watched-too", json!({}), "x"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: admission policy \"require-team\" (monitor mode) would deny the request: missing required label(s): team"),
        "{stderr}"
    );

    // Settings the policy refuses: status Error with its message, and nothing is enforced.
    c.ok_stdin(
        &["apply", "-f", "-"],
        &policy("require-team", &module, json!({"settings": {"labels": []}})),
    );
    wait_for_phase(&c, "require-team", "Error");
    let message = c.ok(&[
        "get",
        "clusteradmissionpolicy",
        "require-team",
        "-o",
        "jsonpath={.status.message}",
    ]);
    assert!(
        message.contains("invalid settings") && message.contains("at least one"),
        "{message}"
    );
    let (ok, err) = apply(&c, &pod("unchecked", json!({}), "x"));
    assert!(ok, "{err}");

    // A spec the server refuses names its fields.
    let (ok, err) = apply(
        &c,
        &policy(
            "wrong",
            &module,
            json!({"failurePolicy": "Maybe", "timeoutSeconds": 99}),
        ),
    );
    assert!(!ok);
    assert!(
        err.contains("ClusterAdmissionPolicy \"wrong\" is invalid")
            && err.contains("spec.failurePolicy")
            && err.contains("spec.timeoutSeconds"),
        "{err}"
    );

    // Deleting the policy is always possible.
    c.ok(&["delete", "clusteradmissionpolicy", "require-team"]);
}

#[test]
fn a_mutating_rust_policy_and_a_c_policy() {
    let c = Cluster::start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        &policy(
            "default-resources",
            &plugin("default-resources.wasm"),
            json!({"mutating": true, "settings": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}}),
        ),
    );
    c.ok_stdin(
        &["apply", "-f", "-"],
        &policy(
            "allowed-registries",
            &plugin("allowed-registries.wasm"),
            json!({"settings": {"registries": ["wkube.local"]}}),
        ),
    );
    wait_for_phase(&c, "default-resources", "Active");
    wait_for_phase(&c, "allowed-registries", "Active");

    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod("defaults", json!({}), "wkube.local/hello:v1"),
    );
    let resources = c.ok(&[
        "get",
        "pod",
        "defaults",
        "-o",
        "jsonpath={.spec.containers[0].resources}",
    ]);
    let resources: Value = serde_json::from_str(&resources).expect("JSON");
    assert_eq!(
        resources,
        json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}})
    );
    let yaml = c.ok(&["get", "pod", "defaults", "-o", "yaml"]);
    assert!(yaml.contains("memory: 128Mi"), "{yaml}");
    // Mutation comes before validation, so the QoS class sees the defaults.
    assert!(yaml.contains("qosClass: Burstable"), "{yaml}");

    let (ok, err) = apply(&c, &pod("hub", json!({}), "nginx:1.25"));
    assert!(!ok);
    assert!(
        err.contains("admission policy \"allowed-registries\" denied the request: image nginx:1.25 comes from registry docker.io, which is not one of the allowed registries (wkube.local)"),
        "{err}"
    );
}

/// A preview 1 command that accepts any settings and then misbehaves on `validate` by running
/// `body` (it tells the calls apart by the byte after `{"operation":"validate`).
fn hostile(body: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 512) "{{\"valid\": true}}")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 1024))
            (i32.store (i32.const 4) (i32.const 4096))
            (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
            (if (i32.eq (i32.load8_u (i32.const 1046)) (i32.const 45))
              (then
                (i32.store (i32.const 16) (i32.const 512))
                (i32.store (i32.const 20) (i32.const 15))
                (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
                (return)))
            {body}))"#
    );
    wat::parse_str(wat).expect("valid WAT")
}

#[test]
fn hostile_policies_follow_their_failure_policy() {
    let c = Cluster::start();
    let cases = [
        ("spin", "(loop (br 0))", "did not answer within 1s"),
        (
            "bomb",
            "(loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable",
            "needed more memory than its limit",
        ),
        ("trap", "unreachable", "trapped"),
        ("mute", "", "malformed"),
    ];
    for (name, body, _) in &cases {
        c.ok_stdin(
            &["apply", "-f", "-"],
            &policy(
                name,
                &hostile(body),
                json!({"timeoutSeconds": 1, "memoryLimit": "16Mi", "failurePolicy": "Fail"}),
            ),
        );
        wait_for_phase(&c, name, "Active");
    }
    let (ok, err) = apply(&c, &pod("p1", json!({}), "x"));
    assert!(!ok, "admitted past failing policies");
    // The first failing policy in name order answers for the request.
    assert!(
        err.contains("admission policy \"bomb\" failed (failurePolicy Fail): the policy needed more memory than its limit"),
        "{err}"
    );
    for (name, _, why) in &cases {
        // Every other policy ignores its failure, so this one's reason surfaces.
        for (other, body, _) in &cases {
            let failure = if other == name { "Fail" } else { "Ignore" };
            c.ok_stdin(
                &["apply", "-f", "-"],
                &policy(
                    other,
                    &hostile(body),
                    json!({"timeoutSeconds": 1, "memoryLimit": "16Mi", "failurePolicy": failure}),
                ),
            );
        }
        let denied = eventually(Duration::from_secs(30), || {
            let (ok, err) = apply(&c, &pod("p2", json!({}), "x"));
            (!ok && err.contains(&format!("admission policy \"{name}\" failed"))).then_some(err)
        });
        assert!(denied.contains(why), "{name}: {denied}");
    }
    for (name, body, _) in &cases {
        c.ok_stdin(
            &["apply", "-f", "-"],
            &policy(
                name,
                &hostile(body),
                json!({"timeoutSeconds": 1, "memoryLimit": "16Mi", "failurePolicy": "Ignore"}),
            ),
        );
    }
    let admitted = eventually(Duration::from_secs(30), || {
        let out = c.kubectl_stdin(&["apply", "-f", "-"], &pod("p3", json!({}), "x"));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(admitted.contains("failed and was ignored"), "{admitted}");
    // The server is still healthy.
    c.ok(&["get", "namespaces"]);

    // A module that is not wasm never becomes active.
    c.ok_stdin(
        &["apply", "-f", "-"],
        &policy("not-wasm", b"#!/bin/sh\nexit 0\n", json!({})),
    );
    wait_for_phase(&c, "not-wasm", "Error");
    let message = c.ok(&[
        "get",
        "clusteradmissionpolicy",
        "not-wasm",
        "-o",
        "jsonpath={.status.message}",
    ]);
    assert!(message.contains("not WebAssembly"), "{message}");
}

#[test]
fn modules_from_a_registry_and_a_configmap_namespaces_and_selectors() {
    let registry = common::registry::Registry::start();
    let c = Cluster::start();
    let dir = wasm_plugins();

    // A cluster policy pulled by OCI reference, enforced only in namespaces labelled enforce=yes.
    let reference = format!("{}/policies/require-labels:v1", registry.host());
    let wasm = dir
        .join("require-labels.wasm")
        .to_string_lossy()
        .to_string();
    let out = c.wkube(&["image", "push", &wasm, &reference]);
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = json!({
        "apiVersion": "wkube.dev/v1alpha1", "kind": "ClusterAdmissionPolicy",
        "metadata": {"name": "require-team"},
        "spec": {
            "module": {"image": reference},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"]}],
            "namespaceSelector": {"matchLabels": {"enforce": "yes"}},
            "settings": {"labels": ["team"]},
        },
    });
    c.ok_stdin(&["apply", "-f", "-"], &manifest.to_string());
    wait_for_phase(&c, "require-team", "Active");
    let digest = c.ok(&[
        "get",
        "cap",
        "require-team",
        "-o",
        "jsonpath={.status.moduleDigest}",
    ]);
    assert!(digest.starts_with("sha256:"), "{digest}");

    c.ok(&["create", "namespace", "team-a"]);
    c.ok(&["label", "namespace", "team-a", "enforce=yes"]);
    let (ok, err) = apply(&c, &pod("free", json!({}), "nginx"));
    assert!(ok, "the default namespace is not selected: {err}");
    let in_team_a = |name: &str, image: &str| {
        let mut p: Value =
            serde_json::from_str(&pod(name, json!({"team": "a"}), image)).expect("json");
        p["metadata"]["namespace"] = json!("team-a");
        apply(&c, &p.to_string())
    };
    let mut unlabelled: Value = serde_json::from_str(&pod("bare", json!({}), "x")).expect("json");
    unlabelled["metadata"]["namespace"] = json!("team-a");
    let (ok, err) = apply(&c, &unlabelled.to_string());
    assert!(
        !ok && err.contains("admission policy \"require-team\" denied the request"),
        "{err}"
    );

    // A namespaced policy whose module is in a ConfigMap (kubectl puts binary files in binaryData).
    let manifest = json!({
        "apiVersion": "wkube.dev/v1alpha1", "kind": "AdmissionPolicy",
        "metadata": {"name": "registries", "namespace": "team-a"},
        "spec": {
            "module": {"configMapKeyRef": {"name": "policies", "key": "registries.wasm"}},
            "rules": [{"apiGroups": ["*"], "apiVersions": ["*"], "resources": ["pods"], "operations": ["*"]}],
            "settings": {"registries": ["wkube.local"]},
        },
    });
    c.ok_stdin(&["apply", "-f", "-"], &manifest.to_string());
    // The ConfigMap is not there yet: Error, and the policy loads once it appears.
    let phase = || {
        let path = "jsonpath={.status.phase} {.status.message}";
        let out = c.kubectl(&["get", "ap", "registries", "-n", "team-a", "-o", path]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let error = eventually(Duration::from_secs(60), || {
        Some(phase()).filter(|p| p.starts_with("Error"))
    });
    assert!(
        error.contains("configmap team-a/policies not found"),
        "{error}"
    );
    let c_wasm = dir
        .join("allowed-registries.wasm")
        .to_string_lossy()
        .to_string();
    c.ok(&[
        "create",
        "configmap",
        "policies",
        "-n",
        "team-a",
        &format!("--from-file=registries.wasm={c_wasm}"),
    ]);
    eventually(Duration::from_secs(60), || {
        let out = c.kubectl(&[
            "get",
            "admissionpolicy",
            "registries",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.status.phase}",
        ]);
        (String::from_utf8_lossy(&out.stdout) == "Active").then_some(())
    });
    let listed = c.ok(&["get", "admissionpolicies", "-n", "team-a"]);
    assert!(
        listed.contains("registries") && listed.contains("Active"),
        "{listed}"
    );
    let (ok, err) = in_team_a("hub", "nginx");
    assert!(!ok && err.contains("admission policy \"team-a/registries\" denied the request: image nginx comes from registry docker.io"), "{err}");
    let (ok, err) = in_team_a("local", "wkube.local/hello:v1");
    assert!(ok, "{err}");
    // The namespaced policy does not reach other namespaces.
    let (ok, err) = apply(&c, &pod("hub-default", json!({}), "nginx"));
    assert!(ok, "{err}");
}

/// A preview 1 command that answers `validate-settings` with `{"valid":true}` and `mutate` with
/// the fixed `answer`: the input JSON's keys are sorted, so byte 14 is the operation's first
/// letter (`m` for mutate).
fn fixed_mutator(answer: &str) -> Vec<u8> {
    let escaped = answer.replace('\\', "\\\\").replace('"', "\\\"");
    let wat = format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 1024) "{escaped}")
          (data (i32.const 3072) "{{\"valid\":true}}")
          (func $write (param $ptr i32) (param $len i32)
            (i32.store (i32.const 0) (local.get $ptr))
            (i32.store (i32.const 4) (local.get $len))
            (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
          (func (export "_start")
            (i32.store (i32.const 16) (i32.const 4096))
            (i32.store (i32.const 20) (i32.const 64))
            (drop (call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 24)))
            (if (i32.eq (i32.load8_u (i32.const 4110)) (i32.const 109))
              (then (call $write (i32.const 1024) (i32.const {len})))
              (else (call $write (i32.const 3072) (i32.const 14))))))"#,
        len = answer.len()
    );
    wat::parse_str(wat).expect("valid WAT")
}

#[test]
fn mutating_policies_that_ask_are_reinvoked_after_later_changes() {
    let c = Cluster::start();
    // "a-" runs first: it only acts once "b-" has labelled the pod, so only a second look helps.
    let look_again = fixed_mutator(
        r#"{"allowed":true,"patch":[{"op":"test","path":"/metadata/labels/stage","value":"two"},{"op":"add","path":"/metadata/labels/seen-stage-two","value":"yes"}]}"#,
    );
    let stage_two = fixed_mutator(
        r#"{"allowed":true,"patch":[{"op":"add","path":"/metadata/labels/stage","value":"two"}]}"#,
    );
    let a = |reinvocation: &str| {
        policy(
            "a-second-look",
            &look_again,
            json!({"mutating": true, "failurePolicy": "Ignore", "reinvocationPolicy": reinvocation}),
        )
    };
    let (ok, err) = apply(&c, &a("IfNeeded"));
    assert!(ok, "{err}");
    let (ok, err) = apply(
        &c,
        &policy("b-stage-two", &stage_two, json!({"mutating": true})),
    );
    assert!(ok, "{err}");
    wait_for_phase(&c, "a-second-look", "Active");
    wait_for_phase(&c, "b-stage-two", "Active");

    let labels = |name: &str| -> Value {
        let out = c.ok(&["get", "pod", name, "-o", "json"]);
        serde_json::from_str::<Value>(&out).unwrap_or(Value::Null)["metadata"]["labels"].clone()
    };
    let (ok, err) = apply(&c, &pod("again", json!({"app": "x"}), "wkube.local/x:v1"));
    assert!(ok, "{err}");
    let got = labels("again");
    assert_eq!(got["stage"], "two", "{got}");
    assert_eq!(
        got["seen-stage-two"], "yes",
        "reinvoked after b changed the pod: {got}"
    );

    // Never (the default): the first look is the only one. The change is in force once the
    // status describes the new generation.
    let (ok, err) = apply(&c, &a("Never"));
    assert!(ok, "{err}");
    eventually(Duration::from_secs(30), || {
        let out = c.ok(&[
            "get",
            "clusteradmissionpolicy",
            "a-second-look",
            "-o",
            "json",
        ]);
        let p: Value = serde_json::from_str(&out).ok()?;
        (p["status"]["observedGeneration"] == p["metadata"]["generation"]).then_some(())
    });
    let (ok, err) = apply(&c, &pod("once", json!({"app": "x"}), "wkube.local/x:v1"));
    assert!(ok, "{err}");
    let got = labels("once");
    assert_eq!(got["stage"], "two", "{got}");
    assert!(got["seen-stage-two"].is_null(), "not reinvoked: {got}");

    let (ok, err) = apply(&c, &a("Sometimes"));
    assert!(!ok);
    assert!(err.contains("reinvocationPolicy"), "{err}");
}

/// Pushes a built example policy to `registry` as a wasm OCI artifact and returns its
/// reference. The Python and JavaScript components are 12-18 MB (an interpreter inside): past
/// the 3 MiB request body limit for `module.inline`, and the 1 MiB object limit for a
/// ConfigMap, so an OCI reference is the way such a policy reaches the cluster.
fn push_plugin(c: &Cluster, registry: &common::registry::Registry, file: &str) -> String {
    let reference = format!(
        "{}/policies/{}:v1",
        registry.host(),
        file.trim_end_matches(".wasm")
    );
    let wasm = wasm_plugins().join(file).to_string_lossy().to_string();
    let out = c.wkube(&["image", "push", &wasm, &reference]);
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    reference
}

/// A ClusterAdmissionPolicy pulled by OCI reference, for creates of pods and deployments.
fn policy_from(name: &str, reference: &str, settings: Value) -> String {
    json!({
        "apiVersion": "wkube.dev/v1alpha1", "kind": "ClusterAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "module": {"image": reference},
            "rules": [{"apiGroups": ["", "apps"], "apiVersions": ["v1"],
                       "resources": ["pods", "deployments"], "operations": ["CREATE", "UPDATE"]}],
            "settings": settings,
        },
    })
    .to_string()
}

#[test]
fn a_python_policy_refuses_privileged_pods_and_host_paths() {
    let registry = common::registry::Registry::start();
    let c = Cluster::start();
    let reference = push_plugin(&c, &registry, "deny-privileged.wasm");
    c.ok_stdin(
        &["apply", "-f", "-"],
        &policy_from(
            "deny-privileged",
            &reference,
            json!({"allowedHostPaths": ["/var/log"]}),
        ),
    );
    wait_for_phase(&c, "deny-privileged", "Active");

    let privileged = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "shell", "image": "busybox:1.36",
                                 "securityContext": {"privileged": true}}],
                 "volumes": [{"name": "host", "hostPath": {"path": "/"}}]},
    });
    let (ok, err) = apply(&c, &privileged.to_string());
    assert!(!ok, "a privileged pod was admitted");
    assert!(
        err.contains("admission policy \"deny-privileged\" denied the request: container \"shell\" is privileged; volume \"host\" mounts host path / (privileged containers and hostPath volumes are not allowed)"),
        "{err}"
    );
    // The pod template of a workload is checked as well.
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"initContainers": [{"name": "setup", "image": "busybox:1.36",
                                                           "securityContext": {"privileged": true}}],
                                       "containers": [{"name": "main", "image": "busybox:1.36"}]}}},
    });
    let (ok, err) = apply(&c, &deployment.to_string());
    assert!(
        !ok,
        "a deployment with a privileged init container was admitted"
    );
    assert!(
        err.contains("initContainer \"setup\" is privileged"),
        "{err}"
    );

    let logs = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shipper"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                 "securityContext": {"privileged": false}}],
                 "volumes": [{"name": "logs", "hostPath": {"path": "/var/log/pods"}}]},
    });
    let (ok, err) = apply(&c, &logs.to_string());
    assert!(ok, "{err}");
    c.ok(&["get", "pod", "shipper"]);
}

#[test]
fn a_javascript_policy_requires_a_name_and_a_pinned_tag() {
    let registry = common::registry::Registry::start();
    let c = Cluster::start();
    let reference = push_plugin(&c, &registry, "require-name-and-tag.wasm");
    c.ok_stdin(
        &["apply", "-f", "-"],
        &policy_from("name-and-tag", &reference, json!({})),
    );
    wait_for_phase(&c, "name-and-tag", "Active");

    let named = json!({"app.kubernetes.io/name": "web"});
    let (ok, err) = apply(&c, &pod("anonymous", json!({"team": "a"}), "nginx:1.25"));
    assert!(!ok, "a pod without app.kubernetes.io/name was admitted");
    assert!(
        err.contains("admission policy \"name-and-tag\" denied the request: missing required label app.kubernetes.io/name"),
        "{err}"
    );
    let (ok, err) = apply(&c, &pod("floating", named.clone(), "nginx:latest"));
    assert!(!ok, "a :latest image was admitted");
    assert!(
        err.contains("container \"c\": image nginx:latest uses the :latest tag"),
        "{err}"
    );
    let (ok, err) = apply(&c, &pod("untagged", named.clone(), "nginx"));
    assert!(!ok && err.contains("image nginx has no tag"), "{err}");

    let (ok, err) = apply(&c, &pod("pinned", named, "nginx:1.25"));
    assert!(ok, "{err}");
    c.ok(&["get", "pod", "pinned"]);
}

#[test]
fn wkube_policy_push_publishes_only_policies() {
    let registry = common::registry::Registry::start();
    let c = Cluster::start();
    let dir = tempfile::tempdir().expect("tmp");
    let settings = dir.path().join("settings.yaml");
    let module = wasm_plugins()
        .join("require-labels.wasm")
        .to_string_lossy()
        .to_string();
    let reference = format!("{}/policies/require-team:v2", registry.host());
    let settings_arg = settings.to_string_lossy().to_string();
    let push = |file: &str, reference: &str| {
        let out = c.wkube(&[
            "policy",
            "push",
            file,
            reference,
            "--settings",
            &settings_arg,
        ]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let tags = |name: &str| {
        common::registry::http_status(registry.port, &format!("/v2/policies/{name}/tags/list"))
    };

    // Settings the policy refuses: nothing is pushed.
    std::fs::write(&settings, "labels: []\n").expect("write");
    let (ok, _, err) = push(&module, &reference);
    assert!(!ok);
    assert!(
        err.contains("the policy refuses the settings") && err.contains("at least one"),
        "{err}"
    );
    assert_eq!(tags("require-team"), Some(404));

    // A wasm component that is not a policy (a hello-world command) is refused too.
    std::fs::write(&settings, "labels: [team]\n").expect("write");
    let hello = common::wasm_examples()
        .join("hello-component.wasm")
        .to_string_lossy()
        .to_string();
    let other = format!("{}/policies/hello:v1", registry.host());
    let (ok, _, err) = push(&hello, &other);
    assert!(!ok);
    assert!(err.contains("is not an admission policy"), "{err}");
    assert_eq!(tags("hello"), Some(404));

    // A policy is published, and a cluster policy pulls it by reference and enforces it.
    let (ok, out, err) = push(&module, &reference);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("as {reference}@sha256:")), "{out}");
    assert_eq!(tags("require-team"), Some(200));
    let manifest = json!({
        "apiVersion": "wkube.dev/v1alpha1", "kind": "ClusterAdmissionPolicy",
        "metadata": {"name": "require-team"},
        "spec": {
            "module": {"image": reference},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"]}],
            "settings": {"labels": ["team"]},
        },
    });
    c.ok_stdin(&["apply", "-f", "-"], &manifest.to_string());
    wait_for_phase(&c, "require-team", "Active");
    let (ok, err) = apply(&c, &pod("bare", json!({}), "x"));
    assert!(
        !ok && err.contains("missing required label(s): team"),
        "{err}"
    );
}
