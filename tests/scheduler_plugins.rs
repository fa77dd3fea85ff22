//! Scheduler plugins through the host, offline: the wasm zone-spread plugin against its
//! native twin (the same `spread.rs`, compiled natively) on randomized clusters, with state
//! sent once and then as deltas; the JavaScript prefer-labels plugin against its native twin
//! (the rule written again in Rust) the same way; the C maintenance-filter command; hostile
//! modules contained by their failurePolicy.

mod common;

#[path = "twins/zone_spread.rs"]
mod twin;

#[path = "twins/prefer_labels.rs"]
mod prefer_twin;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use prefer_twin::PreferLabelsFactory;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use twin::NativeFactory;
use wkube::plugin_host::scheduler::{
    Health, PluginError, PluginSpec, Reporter, SchedulerHost, WasmPlugin,
};
use wkube::plugin_host::CallLimits;
use wkube::scheduler::framework::{Candidates, ExtensionPlugin, NodeInfo, PodInfo};

const ZONE: &str = "topology.kubernetes.io/zone";

fn spec(name: &str, fail: bool, settings: serde_json::Value) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        pre_filter: true,
        filter: true,
        score: true,
        weight: 1,
        fail,
        settings: settings.to_string(),
        limits: CallLimits {
            timeout: Duration::from_millis(500),
            memory_bytes: 32 << 20,
        },
    }
}

fn quiet() -> Reporter {
    Arc::new(|_: &str, _: Health| {})
}

fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(common::wasm_plugins().join(format!("{name}.wasm"))).expect("built plugin")
}

fn node(name: &str, labels: serde_json::Value) -> NodeInfo {
    let n: Node = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels },
        "status": { "allocatable": { "cpu": "4", "memory": "8Gi", "pods": "110" } },
    }))
    .expect("node");
    NodeInfo::from_node(&n)
}

fn pod(name: &str, labels: serde_json::Value) -> PodInfo {
    let p: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"),
            "labels": labels },
        "spec": { "containers": [{ "name": "c", "image": "x" }] },
    }))
    .expect("pod");
    PodInfo::from_pod(&p)
}

fn zone_labels(rng: &mut StdRng) -> serde_json::Value {
    // One node in ten has no zone: the plugin must reject it.
    match rng.random_range(0..10) {
        0 => json!({}),
        z => json!({ ZONE: format!("zone-{}", z % 3) }),
    }
}

fn random_cluster(rng: &mut StdRng, nodes: usize, pods: usize) -> Vec<NodeInfo> {
    let mut out: Vec<NodeInfo> = (0..nodes)
        .map(|i| node(&format!("n{i}"), zone_labels(rng)))
        .collect();
    for i in 0..pods {
        let app = ["web", "db", "cache"][rng.random_range(0..3)];
        let n = rng.random_range(0..nodes);
        out[n].add_pod(&pod(&format!("p{i}"), json!({ "app": app })));
    }
    out
}

/// Pre-filter, filter over all nodes, score over those that pass: what one cycle asks.
fn ask(
    p: &dyn ExtensionPlugin,
    pod: &PodInfo,
    nodes: &[NodeInfo],
) -> (Candidates, Vec<Result<(), String>>, Vec<i64>) {
    let all: Vec<&NodeInfo> = nodes.iter().collect();
    let pre = p.pre_filter(pod, &all).expect("pre-filter");
    if pre == Candidates::Skip {
        return (pre, vec![], vec![]);
    }
    let verdicts = p.filter(pod, &all).expect("filter").expect("filters");
    let feasible: Vec<&NodeInfo> = all
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.is_ok())
        .map(|(n, _)| *n)
        .collect();
    let scores = p.score(pod, &feasible).expect("score").expect("scores");
    let verdicts = verdicts
        .into_iter()
        .map(|v| v.map_err(|r| r.messages().join("; ")))
        .collect();
    (pre, verdicts, scores)
}

#[test]
fn zone_spread_wasm_matches_its_native_twin_through_deltas() {
    let host = SchedulerHost::new().expect("host");
    let module = host.load(&wasm("zone-spread")).expect("zone-spread loads");
    let settings = json!({ "maxSkew": 1 });
    let wasm = WasmPlugin::start(spec("zone-spread", true, settings.clone()), module, quiet())
        .expect("start");
    let native = WasmPlugin::start(
        spec("zone-spread", true, settings.clone()),
        Arc::new(NativeFactory),
        quiet(),
    )
    .expect("start");
    let mut rng = StdRng::seed_from_u64(8);
    let mut nodes = random_cluster(&mut rng, 40, 120);
    let mut rejected_somewhere = false;
    for round in 0..30 {
        let app = ["web", "db", "cache", ""][rng.random_range(0..4)];
        let labels = if app.is_empty() {
            json!({})
        } else {
            json!({ "app": app })
        };
        let pending = pod(&format!("pending-{round}"), labels);
        let w = ask(&*wasm, &pending, &nodes);
        let n = ask(&*native, &pending, &nodes);
        assert_eq!(w, n, "round {round}: wasm and native disagree");
        // A fresh instance that gets everything at once agrees with the incremental ones.
        let fresh = WasmPlugin::start(
            spec("fresh", true, settings.clone()),
            Arc::new(NativeFactory),
            quiet(),
        )
        .expect("start");
        assert_eq!(
            ask(&*fresh, &pending, &nodes),
            w,
            "round {round}: deltas drifted"
        );
        rejected_somewhere |= w.1.iter().any(Result::is_err);
        if app.is_empty() {
            assert_eq!(w.0, Candidates::Skip, "pods without the label are skipped");
        }
        mutate(&mut rng, &mut nodes, round, zone_labels);
    }
    assert!(
        rejected_somewhere,
        "the random clusters never exercised a rejection"
    );
}

/// Binds or removes pods, relabels a node (with labels from `labels`), drops or adds one: the
/// deltas' cases.
fn mutate(
    rng: &mut StdRng,
    nodes: &mut Vec<NodeInfo>,
    round: usize,
    labels: fn(&mut StdRng) -> serde_json::Value,
) {
    for k in 0..3 {
        let i = rng.random_range(0..nodes.len());
        let app = ["web", "db", "cache"][rng.random_range(0..3)];
        nodes[i].add_pod(&pod(&format!("r{round}-{k}"), json!({ "app": app })));
    }
    let i = rng.random_range(0..nodes.len());
    if let Some(victim) = nodes[i].pods.first().cloned() {
        nodes[i].remove_pod(&victim);
    }
    match round % 3 {
        0 => {
            // Relabel: a new node version carrying the same pods.
            let i = rng.random_range(0..nodes.len());
            let mut fresh = node(&nodes[i].name, labels(rng));
            for p in nodes[i].pods.clone() {
                fresh.add_pod(&p);
            }
            nodes[i] = fresh;
        }
        1 => {
            let i = rng.random_range(0..nodes.len());
            nodes.remove(i);
        }
        _ => nodes.push(node(&format!("new-{round}"), labels(rng))),
    }
}

#[test]
fn zone_spread_filter_enforces_max_skew() {
    let host = SchedulerHost::new().expect("host");
    let module = host.load(&wasm("zone-spread")).expect("loads");
    let p = WasmPlugin::start(spec("zs", true, json!({ "maxSkew": 1 })), module, quiet())
        .expect("start");
    let mut nodes = vec![
        node("a", json!({ ZONE: "a" })),
        node("b", json!({ ZONE: "b" })),
        node("c", json!({ ZONE: "c" })),
    ];
    nodes[0].add_pod(&pod("w1", json!({ "app": "web" })));
    let (_, verdicts, scores) = ask(&*p, &pod("w2", json!({ "app": "web" })), &nodes);
    assert!(
        verdicts[0].is_err(),
        "zone a already has one more: {verdicts:?}"
    );
    assert!(verdicts[1].is_ok() && verdicts[2].is_ok());
    assert_eq!(scores, vec![100, 100], "empty zones score alike");
}

const DISK: &str = "disktype";
const GPU: &str = "example.com/gpu";

/// Settings the prefer-labels tests use: a GPU is worth three SSDs.
fn prefer_settings() -> serde_json::Value {
    json!({ "labels": { DISK: "ssd", GPU: "true" }, "weights": { GPU: 3 } })
}

/// Any mix of the preferred labels, wrong values of them, and a label the plugin ignores.
fn disk_labels(rng: &mut StdRng) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    // "" stands for no such label.
    for (key, values) in [(DISK, ["ssd", "hdd", ""]), (GPU, ["true", "false", ""])] {
        let v = values[rng.random_range(0..3)];
        if !v.is_empty() {
            labels.insert(key.into(), v.into());
        }
    }
    labels.insert(
        ZONE.into(),
        format!("zone-{}", rng.random_range(0..3)).into(),
    );
    serde_json::Value::Object(labels)
}

#[test]
fn prefer_labels_js_matches_its_native_twin_through_deltas() {
    let host = SchedulerHost::new().expect("host");
    let module = host
        .load(&wasm("prefer-labels"))
        .expect("prefer-labels loads");
    let settings = prefer_settings();
    let js = WasmPlugin::start(
        spec("prefer-labels", true, settings.clone()),
        module,
        quiet(),
    )
    .expect("start");
    let native = WasmPlugin::start(
        spec("prefer-labels", true, settings.clone()),
        Arc::new(PreferLabelsFactory),
        quiet(),
    )
    .expect("start");
    let mut rng = StdRng::seed_from_u64(9);
    let mut nodes: Vec<NodeInfo> = (0..40)
        .map(|i| node(&format!("n{i}"), disk_labels(&mut rng)))
        .collect();
    let mut distinct_scores = std::collections::BTreeSet::new();
    for round in 0..30 {
        let pending = pod(&format!("pending-{round}"), json!({ "app": "web" }));
        let j = ask(&*js, &pending, &nodes);
        let n = ask(&*native, &pending, &nodes);
        assert_eq!(j, n, "round {round}: JavaScript and native disagree");
        // A fresh instance that gets everything at once agrees with the incremental ones.
        let fresh = WasmPlugin::start(
            spec("fresh", true, settings.clone()),
            Arc::new(PreferLabelsFactory),
            quiet(),
        )
        .expect("start");
        assert_eq!(
            ask(&*fresh, &pending, &nodes),
            j,
            "round {round}: deltas drifted"
        );
        assert_eq!(j.0, Candidates::All, "every pod is scored");
        assert!(j.1.iter().all(Result::is_ok), "a Score plugin rejects none");
        distinct_scores.extend(j.2.iter().copied());
        mutate(&mut rng, &mut nodes, round, disk_labels);
    }
    // 0 (nothing preferred), 25 (ssd), 75 (gpu), 100 (both): the weights mattered.
    assert_eq!(
        distinct_scores.into_iter().collect::<Vec<_>>(),
        vec![0, 25, 75, 100],
        "the random clusters did not exercise every combination"
    );
}

#[test]
fn prefer_labels_scores_the_weighted_sum_scaled_to_the_best() {
    let host = SchedulerHost::new().expect("host");
    let module = host.load(&wasm("prefer-labels")).expect("loads");
    let p = WasmPlugin::start(spec("pl", true, prefer_settings()), module, quiet()).expect("start");
    let nodes = vec![
        node("both", json!({ DISK: "ssd", GPU: "true" })),
        node("gpu", json!({ GPU: "true", DISK: "hdd" })),
        node("ssd", json!({ DISK: "ssd", GPU: "false" })),
        node("none", json!({ "other": "ssd" })),
    ];
    let (_, verdicts, scores) = ask(&*p, &pod("x", json!({})), &nodes);
    assert!(verdicts.iter().all(Result::is_ok));
    // Raw 4, 3, 1, 0; `scale` maps the best to 100.
    assert_eq!(scores, vec![100, 75, 25, 0]);
    // Without the best node, the GPU node is the best there is.
    let (_, _, scores) = ask(&*p, &pod("y", json!({})), &nodes[1..]);
    assert_eq!(scores, vec![100, 33, 0]);
}

#[test]
fn prefer_labels_refuses_bad_settings_as_its_twin_does() {
    let host = SchedulerHost::new().expect("host");
    let module = host.load(&wasm("prefer-labels")).expect("loads");
    let refusal = |factory: Arc<dyn wkube::plugin_host::scheduler::GuestFactory>,
                   settings: &serde_json::Value| {
        let p =
            WasmPlugin::start(spec("pl", true, settings.clone()), factory, quiet()).expect("start");
        match p.probe() {
            Ok(()) => None,
            Err(PluginError::Settings(m)) => Some(m),
            Err(other) => panic!("{settings}: not a settings error: {other}"),
        }
    };
    let bad = [
        (json!({}), "settings.labels: must be an object"),
        (
            json!({ "labels": {} }),
            "settings.labels: must be an object",
        ),
        (
            json!({ "labels": ["ssd"] }),
            "settings.labels: must be an object",
        ),
        (
            json!({ "labels": { DISK: 1 } }),
            "settings.labels.disktype: 1 is not a string",
        ),
        (
            json!({ "labels": { "": "x" } }),
            "settings.labels: a label key is empty",
        ),
        (
            json!({ "labels": { DISK: "ssd" }, "weight": 2 }),
            "settings.weight: unknown setting",
        ),
        (
            json!({ "labels": { DISK: "ssd" }, "weights": 2 }),
            "settings.weights: must be an object",
        ),
        (
            json!({ "labels": { DISK: "ssd" }, "weights": { GPU: 2 } }),
            "settings.weights.example.com/gpu: not one of settings.labels",
        ),
        (
            json!({ "labels": { DISK: "ssd" }, "weights": { DISK: 0 } }),
            "settings.weights.disktype: 0 is not an integer in 1..=1000",
        ),
        (
            json!({ "labels": { DISK: "ssd" }, "weights": { DISK: 1.5 } }),
            "settings.weights.disktype: 1.5 is not an integer",
        ),
        (
            json!({ "labels": { DISK: "ssd" }, "weights": { DISK: "2" } }),
            "settings.weights.disktype: \"2\" is not an integer",
        ),
        (
            json!({ "labels": { DISK: "ssd" }, "weights": { DISK: 1001 } }),
            "settings.weights.disktype: 1001 is not an integer",
        ),
        (json!("labels"), "settings must be an object"),
    ];
    for (settings, expected) in &bad {
        let js = refusal(module.clone(), settings);
        let native = refusal(Arc::new(PreferLabelsFactory), settings);
        let message = js.unwrap_or_else(|| panic!("{settings} was accepted"));
        assert!(message.contains(expected), "{settings}: {message}");
        assert_eq!(Some(message), native, "{settings}: twin differs");
    }
    // Text that is not JSON at all: both refuse, each with its own parser's words.
    let p = WasmPlugin::start(
        PluginSpec {
            settings: "{labels".into(),
            ..spec("pl", true, json!({}))
        },
        module.clone(),
        quiet(),
    )
    .expect("start");
    let err = p.probe().expect_err("not JSON is refused");
    assert!(
        matches!(&err, PluginError::Settings(m) if m.starts_with("settings are not JSON")),
        "{err}"
    );
    // Good settings, including a whole-number weight written as a float, are accepted by both.
    for good in [
        prefer_settings(),
        json!({ "labels": { DISK: "ssd" } }),
        json!({ "labels": { DISK: "ssd" }, "weights": { DISK: 2.0 } }),
    ] {
        assert_eq!(refusal(module.clone(), &good), None, "{good}");
        assert_eq!(
            refusal(Arc::new(PreferLabelsFactory), &good),
            None,
            "{good}"
        );
    }
}

#[test]
fn maintenance_filter_command_rejects_labelled_nodes() {
    let host = SchedulerHost::new().expect("host");
    let module = host.load(&wasm("maintenance-filter")).expect("loads");
    let p = WasmPlugin::start(
        spec(
            "maintenance",
            true,
            json!({ "labelKey": "example.com/maintenance" }),
        ),
        module,
        quiet(),
    )
    .expect("start");
    let nodes = vec![
        node("ok", json!({})),
        node("busy", json!({ "example.com/maintenance": "true" })),
        node("done", json!({ "example.com/maintenance": "false" })),
    ];
    let (_, verdicts, scores) = ask(&*p, &pod("x", json!({})), &nodes);
    assert_eq!(verdicts[0], Ok(()));
    assert_eq!(
        verdicts[1],
        Err("node(s) had label example.com/maintenance=true".to_string())
    );
    assert_eq!(verdicts[2], Ok(()));
    assert_eq!(scores, vec![0, 0]);
    let bad = WasmPlugin::start(
        spec("maintenance", true, json!({ "labelKey": 3 })),
        host.load(&wasm("maintenance-filter")).expect("loads"),
        quiet(),
    )
    .expect("start");
    let err = bad.probe().expect_err("bad settings are refused");
    assert!(matches!(err, PluginError::Settings(_)), "{err}");
}

/// WASI preview 1 commands that misbehave in every way a plugin can.
fn hostile(kind: &str) -> Vec<u8> {
    let body = match kind {
        "loop" => "(loop $l (br $l))",
        "trap" => "unreachable",
        "bomb" => {
            "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable"
        }
        // Writes `not json` to stdout.
        "garbage" => {
            "(i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 8))
             (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)))"
        }
        other => panic!("no hostile module {other}"),
    };
    wat::parse_str(format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write"
                (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "not json")
            (func (export "_start") {body}))"#
    ))
    .expect("wat")
}

#[test]
fn hostile_plugins_are_contained_by_their_failure_policy() {
    let host = SchedulerHost::new().expect("host");
    let nodes = [node("a", json!({})), node("b", json!({}))];
    let all: Vec<&NodeInfo> = nodes.iter().collect();
    let pending = pod("x", json!({ "app": "web" }));
    for kind in ["loop", "trap", "bomb", "garbage"] {
        let module = host.load(&hostile(kind)).expect("hostile modules compile");
        let reports = Arc::new(Mutex::new(Vec::new()));
        let seen = reports.clone();
        let report: Reporter = Arc::new(move |name: &str, h: Health| {
            seen.lock().expect("lock").push((name.to_string(), h));
        });
        let ignore =
            WasmPlugin::start(spec(kind, false, json!({})), module.clone(), report).expect("start");
        let started = Instant::now();
        assert_eq!(
            ignore.pre_filter(&pending, &all),
            Ok(Candidates::Skip),
            "{kind}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{kind} took too long"
        );
        let reports = reports.lock().expect("lock").clone();
        assert!(
            matches!(&reports[..], [(n, Health::Failed(_))] if n == kind),
            "{kind}: {reports:?}"
        );
        let fail = WasmPlugin::start(spec(kind, true, json!({})), module, quiet()).expect("start");
        let err = fail
            .pre_filter(&pending, &all)
            .expect_err("Fail holds the pod");
        assert_eq!(err.plugin, kind);
        // Cooling down: the next pod gets the same answer at once, without another run.
        let again = Instant::now();
        assert!(fail.filter(&pending, &all).is_err());
        assert!(
            again.elapsed() < Duration::from_millis(50),
            "{kind} was called again"
        );
    }
    let err = host.load(b"not wasm at all").err().expect("refused");
    assert!(matches!(err, PluginError::NotWasm(_)), "{err}");
}
