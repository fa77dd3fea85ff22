//! End-to-end: wasm scheduler plugins applied with kubectl as `SchedulerPlugin` objects on a
//! cluster of hollow nodes. zone-spread (Rust component, from a ConfigMap) spreads a group
//! over racks; maintenance-filter (C command, from an OCI registry) keeps pods off nodes labelled with
//! kubectl; prefer-labels (JavaScript component, from the registry too) draws pods to the node
//! labelled with kubectl; a plugin answering garbage is skipped under `Ignore` (status Error,
//! event) and holds pods Pending under `Fail` until it is deleted; bad specs are refused with
//! causes.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use common::registry::Registry;
use common::{eventually, wasm_plugins, Cluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
const RACK: &str = "example.com/rack";
const MAINTENANCE: &str = "example.com/maintenance";
const DISK: &str = "example.com/disktype";

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&c.ok(&all)).unwrap_or(Value::Null)
}

fn inline(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A WASI preview 1 command that answers `{"normalization":"none"}` to everything: its
/// `configure` succeeds, every later call is a malformed answer.
fn garbage_plugin() -> Vec<u8> {
    let answer = r#"{"normalization":"none"}"#;
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write"
                (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 64) "{}")
            (func (export "_start")
                (i32.store (i32.const 0) (i32.const 64))
                (i32.store (i32.const 4) (i32.const {}))
                (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))))"#,
        answer.replace('"', "\\\""),
        answer.len()
    ))
    .expect("wat")
}

/// Node name -> rack label.
fn racks(c: &Cluster) -> BTreeMap<String, String> {
    let nodes = json(c, &["get", "nodes"]);
    nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let rack = n["metadata"]["labels"][RACK].as_str()?;
            Some((
                n["metadata"]["name"].as_str()?.to_string(),
                rack.to_string(),
            ))
        })
        .collect()
}

/// Name -> node of the pods with this label, once all are bound.
fn bound(c: &Cluster, selector: &str, want: usize) -> BTreeMap<String, String> {
    eventually(WAIT, || {
        let pods = json(c, &["get", "pods", "-l", selector]);
        let placed: BTreeMap<String, String> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p["metadata"]["name"].as_str()?.to_string(),
                    p["spec"]["nodeName"].as_str()?.to_string(),
                ))
            })
            .collect();
        (placed.len() == want).then_some(placed)
    })
}

/// Pushes the built plugin `name` to the test's registry; returns its reference.
fn push_plugin(c: &Cluster, registry: &Registry, plugins: &Path, name: &str) -> String {
    let reference = format!("{}/plugins/{name}:v1", registry.host());
    let module = plugins.join(format!("{name}.wasm"));
    let out = c.wkube(&["image", "push", &module.to_string_lossy(), &reference]);
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    reference
}

fn pod(name: &str, app: &str, scheduler: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","labels":{{"app":"{app}"}}}},
        "spec":{{"schedulerName":"{scheduler}","containers":[{{"name":"main","image":"registry.invalid/never-pulled:v1"}}]}}}}"#
    )
}

fn plugin_status(c: &Cluster, name: &str) -> (String, String) {
    let p = json(c, &["get", "schedulerplugin", name]);
    (
        p["status"]["phase"].as_str().unwrap_or("").to_string(),
        p["status"]["message"].as_str().unwrap_or("").to_string(),
    )
}

fn wait_phase(c: &Cluster, name: &str, phase: &str) -> String {
    eventually(WAIT, || {
        let (p, message) = plugin_status(c, name);
        (p == phase).then_some(message)
    })
}

#[test]
fn scheduler_plugins_change_placement_and_are_contained() {
    let plugins = wasm_plugins();
    let c = Cluster::start_with(&["--no-agent"]);
    // Four nodes in rack r0, two in r1: spreading over nodes alone would favour r0.
    let _r0 = c.join_agent(
        "rzero",
        &["--hollow", "4", "--node-label", &format!("{RACK}=r0")],
    );
    let _r1 = c.join_agent(
        "rone",
        &["--hollow", "2", "--node-label", &format!("{RACK}=r1")],
    );
    let rack_of = eventually(WAIT, || {
        let r = racks(&c);
        (r.len() == 6).then_some(r)
    });

    // zone-spread from a ConfigMap, for the profile `spread-scheduler` only. Applied before
    // its ConfigMap exists: Error until it does.
    c.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"{{"apiVersion":"wkube.dev/v1alpha1","kind":"SchedulerPlugin","metadata":{{"name":"zone-spread"}},
            "spec":{{"module":{{"configMapKeyRef":{{"name":"zone-spread","key":"plugin.wasm","namespace":"default"}}}},
            "extensionPoints":["PreFilter","Filter","Score"],"weight":10,"failurePolicy":"Fail",
            "settings":{{"topologyKey":"{RACK}","maxSkew":1}},"profiles":["spread-scheduler"]}}}}"#
        ),
    );
    let message = wait_phase(&c, "zone-spread", "Error");
    assert!(message.contains("not found"), "{message}");
    let wasm = plugins.join("zone-spread.wasm");
    c.ok(&[
        "create",
        "configmap",
        "zone-spread",
        &format!("--from-file=plugin.wasm={}", wasm.display()),
    ]);
    wait_phase(&c, "zone-spread", "Active");
    let table = c.ok(&["get", "schedplug", "-o", "wide"]);
    assert!(
        table.contains("EXTENSION POINTS") && table.contains("PreFilter,Filter,Score"),
        "{table}"
    );
    assert!(
        table.contains("Active") && table.contains("spread-scheduler"),
        "{table}"
    );
    let digest = json(&c, &["get", "schedplug", "zone-spread"])["status"]["moduleDigest"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");

    for i in 0..6 {
        c.ok_stdin(
            &["apply", "-f", "-"],
            &pod(&format!("web-{i}"), "web", "spread-scheduler"),
        );
    }
    let placed = bound(&c, "app=web", 6);
    let mut per_rack: BTreeMap<&str, usize> = BTreeMap::new();
    for node in placed.values() {
        *per_rack.entry(rack_of[node].as_str()).or_default() += 1;
    }
    assert_eq!(
        per_rack,
        BTreeMap::from([("r0", 3), ("r1", 3)]),
        "zone-spread keeps racks within maxSkew 1: {placed:?}"
    );

    // maintenance-filter, pulled by OCI reference from the test's own registry, for the
    // profile `maint-scheduler`.
    let names: Vec<String> = rack_of.keys().cloned().collect();
    let registry = Registry::start();
    let reference = push_plugin(&c, &registry, &plugins, "maintenance-filter");
    c.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"{{"apiVersion":"wkube.dev/v1alpha1","kind":"SchedulerPlugin","metadata":{{"name":"maintenance"}},
            "spec":{{"module":{{"image":"{reference}"}},"extensionPoints":["Filter"],
            "settings":{{"labelKey":"{MAINTENANCE}"}},"profiles":["maint-scheduler"]}}}}"#
        ),
    );
    wait_phase(&c, "maintenance", "Active");
    for n in &names[..5] {
        c.ok(&["label", "node", n, &format!("{MAINTENANCE}=true")]);
    }
    for i in 0..3 {
        c.ok_stdin(
            &["apply", "-f", "-"],
            &pod(&format!("m-{i}"), "maint", "maint-scheduler"),
        );
    }
    let placed = bound(&c, "app=maint", 3);
    assert!(
        placed.values().all(|n| *n == names[5]),
        "only {} is out of maintenance: {placed:?}",
        names[5]
    );
    c.ok(&["label", "node", &names[5], &format!("{MAINTENANCE}=true")]);
    c.ok(&[
        "label",
        "node",
        &names[0],
        &format!("{MAINTENANCE}=false"),
        "--overwrite",
    ]);
    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod("m-late", "maint-late", "maint-scheduler"),
    );
    let late = bound(&c, "app=maint-late", 1);
    assert_eq!(late["m-late"], names[0], "pods follow the labels");

    // prefer-labels (JavaScript component, 12 MB: too big for inline or a ConfigMap, so by OCI
    // reference too), Score only and weighted to outweigh the built-in scores, for the profile
    // `prefer-scheduler`: its pods go to the one node labelled with kubectl.
    let reference = push_plugin(&c, &registry, &plugins, "prefer-labels");
    c.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"{{"apiVersion":"wkube.dev/v1alpha1","kind":"SchedulerPlugin","metadata":{{"name":"prefer-ssd"}},
            "spec":{{"module":{{"image":"{reference}"}},"extensionPoints":["Score"],"weight":100,
            "settings":{{"labels":{{"{DISK}":"ssd"}}}},"profiles":["prefer-scheduler"]}}}}"#
        ),
    );
    wait_phase(&c, "prefer-ssd", "Active");
    c.ok(&["label", "node", &names[3], &format!("{DISK}=ssd")]);
    c.ok(&["label", "node", &names[4], &format!("{DISK}=hdd")]);
    for i in 0..3 {
        c.ok_stdin(
            &["apply", "-f", "-"],
            &pod(&format!("p-{i}"), "prefer", "prefer-scheduler"),
        );
    }
    let placed = bound(&c, "app=prefer", 3);
    assert!(
        placed.values().all(|n| *n == names[3]),
        "{} is the only ssd node: {placed:?}",
        names[3]
    );

    // A plugin answering garbage, Ignore: pods schedule, the plugin shows Error and an event.
    let garbage = inline(&garbage_plugin());
    let hostile = |name: &str, policy: &str, profile: &str| {
        format!(
            r#"{{"apiVersion":"wkube.dev/v1alpha1","kind":"SchedulerPlugin","metadata":{{"name":"{name}"}},
            "spec":{{"module":{{"inline":"{garbage}"}},"extensionPoints":["Filter"],
            "failurePolicy":"{policy}","timeoutSeconds":1,"profiles":["{profile}"]}}}}"#
        )
    };
    c.ok_stdin(
        &["apply", "-f", "-"],
        &hostile("garbage-ignore", "Ignore", "lenient"),
    );
    wait_phase(&c, "garbage-ignore", "Active");
    c.ok_stdin(&["apply", "-f", "-"], &pod("lenient", "lenient", "lenient"));
    bound(&c, "app=lenient", 1);
    let message = wait_phase(&c, "garbage-ignore", "Error");
    assert!(message.contains("malformed"), "{message}");
    let events = eventually(WAIT, || {
        let out = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=garbage-ignore",
        ]);
        out.contains("PluginFailed").then_some(out)
    });
    assert!(events.contains("malformed"), "{events}");

    // The same plugin with Fail, for every default-scheduler pod: they wait, and say why.
    c.ok_stdin(
        &["apply", "-f", "-"],
        &hostile("garbage-fail", "Fail", "default-scheduler"),
    );
    wait_phase(&c, "garbage-fail", "Active");
    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod("held", "held", "default-scheduler"),
    );
    let why = eventually(WAIT, || {
        let p = json(&c, &["get", "pod", "held"]);
        let conditions = p["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        conditions
            .iter()
            .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
            .and_then(|c| c["message"].as_str().map(str::to_string))
    });
    assert!(why.contains("SchedulerPlugin garbage-fail"), "{why}");
    assert!(json(&c, &["get", "pod", "held"])["spec"]["nodeName"].is_null());
    // Deleting the plugin restores the built-ins alone.
    c.ok(&["delete", "schedulerplugin", "garbage-fail"]);
    bound(&c, "app=held", 1);

    // Bad specs: 422 with the fields at fault.
    let out = c.kubectl_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion":"wkube.dev/v1alpha1","kind":"SchedulerPlugin","metadata":{"name":"bad"},
        "spec":{"module":{"inline":"AA=="},"extensionPoints":["Bogus"],"weight":0,"failurePolicy":"Maybe"}}"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad spec was accepted");
    for field in [
        "spec.extensionPoints[0]",
        "spec.weight",
        "spec.failurePolicy",
    ] {
        assert!(err.contains(field), "{field} not named: {err}");
    }
    let explain = c.ok(&["explain", "schedulerplugin.spec.profiles"]);
    assert!(explain.contains("schedulerName"), "{explain}");
}
