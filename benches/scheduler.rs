//! Scheduler throughput at scale, like upstream's scheduler_perf: thousands of hollow nodes
//! (`wkube agent --hollow`), pods created through the API by 32 clients, and the rate from the
//! first creation to the last pod bound (upstream's floor for 5,000 nodes: 680 pods/s), the
//! per-pod creation-to-bound latency, and the server's CPU and memory (the scheduler runs in it).
//!
//! Then, in one run against the same nodes, the same workload through a scheduler running in
//! this process (`wkube::scheduler::run_with`, under a scheduler name of its own, so the
//! server's scheduler leaves those pods alone): built-ins only, built-ins plus the wasm
//! zone-spread plugin (Filter + Score), and built-ins plus its native twin (the same
//! `spread.rs` compiled natively, behind the same host path), with the wasm/native ratio. Last,
//! the in-process cost per pod of one PreFilter + Filter + Score over all nodes, wasm vs
//! native, both straight on the guest and through the host (mirror, deltas, plugin thread).
//!
//! Run: `cargo bench --bench scheduler` (5,000 nodes, 10,000 pods) or
//! `cargo bench --bench scheduler -- NODES PODS`. Loopback only; prints figures.

mod common;
#[path = "../tests/twins/zone_spread.rs"]
mod twin;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::sync::Mutex;

use common::{client, cpu_seconds, pct, rss_mib, start_process, start_wkube};
use k8s_openapi::api::core::v1::Node;
use wkube::plugin_host::scheduler::types::{Delta, NodeView, PodView};
use wkube::plugin_host::scheduler::{
    GuestFactory, Health, PluginSet, PluginSpec, Reporter, SchedulerHost, WasmPlugin,
};
use wkube::plugin_host::CallLimits;
use wkube::scheduler::framework::{ExtensionPlugin as _, NodeInfo, PodInfo};
use wkube::scheduler::SchedulerConfig;

fn pod(name: &str) -> Pod {
    pod_for(name, "server", "default-scheduler")
}

fn pod_for(name: &str, phase: &str, scheduler: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": "perf", "phase": phase } },
        "spec": { "schedulerName": scheduler, "containers": [{
            "name": "main", "image": "registry.invalid/never-pulled:v1",
            "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } },
        }] },
    }))
    .expect("pod")
}

#[tokio::main]
async fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let nodes = numbers.first().copied().unwrap_or(5000);
    let pods = numbers.get(1).copied().unwrap_or(10_000);
    println!("== scheduler throughput: {nodes} hollow nodes, {pods} pods (loopback, 2 cores)");

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // Hollow Leases are renewed every 2 minutes; a long grace keeps the nodes Ready.
    let server = start_wkube(&data, &["--no-agent", "--node-monitor-grace-period", "600"]);
    let token = std::fs::read_to_string(data.join("pki/node.token")).expect("node token");
    let ca = data.join("pki/ca.crt").to_string_lossy().to_string();
    let count = nodes.to_string();
    let hollow = start_process(
        &[
            "agent",
            "--server",
            &server.url,
            "--token",
            token.trim(),
            "--ca-cert",
            &ca,
            "--hollow",
            &count,
            "--hollow-zones",
            "10",
            "--lease-renew-interval",
            "120",
            "--cpus",
            "32",
            "--memory",
            "256Gi",
            "--max-pods",
            "110",
        ],
        &format!("wkube: {nodes} hollow nodes ready"),
    );
    println!(
        "registered {nodes} hollow nodes in {:.1} s",
        hollow.ready_after.as_secs_f64()
    );
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_idle, cpu0) = (rss_mib(pid), cpu_seconds(pid));

    let api: Api<Pod> = Api::namespaced(client(&data).await, "default");
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watcher = {
        let api = api.clone();
        let bound = bound.clone();
        tokio::spawn(async move {
            let mut stream = api
                .watch(&WatchParams::default().labels("app=perf"), "0")
                .await
                .expect("watch")
                .boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let WatchEvent::Added(p) | WatchEvent::Modified(p) = event {
                    let on_node = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                    if on_node {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        let mut b = bound.lock().await;
                        b.entry(name).or_insert_with(Instant::now);
                        if b.len() >= pods {
                            return;
                        }
                    }
                }
            }
        })
    };

    let started = Instant::now();
    let peak = Arc::new(Mutex::new(rss_idle));
    futures::stream::iter(0..pods)
        .for_each_concurrent(32, |i| {
            let (api, created) = (api.clone(), created.clone());
            async move {
                let name = format!("perf-{i}");
                let t = Instant::now();
                api.create(&PostParams::default(), &pod(&name))
                    .await
                    .expect("create");
                created.lock().await.insert(name, t);
            }
        })
        .await;
    let create_rate = pods as f64 / started.elapsed().as_secs_f64();
    while !watcher.is_finished() {
        let mut p = peak.lock().await;
        *p = p.max(rss_mib(pid));
        drop(p);
        assert!(
            started.elapsed() < Duration::from_secs(1200),
            "pods were not all bound"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let total = started.elapsed();
    let cpu = cpu_seconds(pid) - cpu0;
    let created = created.lock().await;
    let bound = bound.lock().await;
    let mut latencies: Vec<Duration> = bound
        .iter()
        .filter_map(|(n, b)| Some(b.saturating_duration_since(*created.get(n)?)))
        .collect();
    println!(
        "created {pods} pods at {create_rate:.0} pods/s (32 clients); all bound after {:.1} s: {:.0} pods/s from creation to bound (upstream floor at 5,000 nodes: 680)",
        total.as_secs_f64(),
        pods as f64 / total.as_secs_f64()
    );
    println!(
        "creation -> bound per pod: p50 {:.0} ms, p99 {:.0} ms",
        pct(&mut latencies, 0.5),
        pct(&mut latencies, 0.99)
    );
    println!(
        "server (API + store + scheduler + controllers): {cpu:.1} CPU-s, RSS {rss_idle:.0} MiB with {nodes} nodes idle -> peak {:.0} MiB",
        *peak.lock().await
    );
    let client = client(&data).await;
    let mut rates = Vec::new();
    for phase in [Phase::Builtin, Phase::Wasm, Phase::Native] {
        let rate = in_process(&client, phase, pods).await;
        rates.push((phase, rate));
    }
    let rate = |p: Phase| rates.iter().find(|(q, _)| *q == p).map_or(0.0, |(_, r)| *r);
    println!(
        "in-process scheduler, {pods} pods each: built-ins {:.0} pods/s, + native zone-spread {:.0} pods/s, + wasm zone-spread {:.0} pods/s; wasm/native {:.2}",
        rate(Phase::Builtin),
        rate(Phase::Native),
        rate(Phase::Wasm),
        rate(Phase::Wasm) / rate(Phase::Native).max(f64::MIN_POSITIVE)
    );
    drop(hollow);
    per_call_cost(nodes);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Builtin,
    Wasm,
    Native,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Builtin => "bench-builtin",
            Phase::Wasm => "bench-wasm",
            Phase::Native => "bench-native",
        }
    }
}

fn zone_spread_wasm() -> Vec<u8> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/build.sh");
    let out = std::process::Command::new("bash")
        .arg(script)
        .output()
        .expect("run plugins/build.sh");
    assert!(out.status.success(), "plugins/build.sh failed");
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::read(std::path::Path::new(&dir).join("zone-spread.wasm")).expect("zone-spread.wasm")
}

fn plugin_spec(name: &str) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        pre_filter: true,
        filter: true,
        score: true,
        weight: 1,
        fail: true,
        settings: json!({ "topologyKey": "topology.kubernetes.io/zone", "maxSkew": 1 }).to_string(),
        limits: CallLimits::default(),
    }
}

fn plugin(phase: Phase) -> Option<Arc<WasmPlugin>> {
    let factory: Arc<dyn GuestFactory> = match phase {
        Phase::Builtin => return None,
        Phase::Native => Arc::new(twin::NativeFactory),
        Phase::Wasm => {
            let host = SchedulerHost::new().expect("plugin host");
            host.load(&zone_spread_wasm()).expect("zone-spread loads")
        }
    };
    let quiet: Reporter = Arc::new(|_: &str, _: Health| {});
    Some(WasmPlugin::start(plugin_spec("zone-spread"), factory, quiet).expect("plugin"))
}

/// Runs a scheduler in this process for one phase's pods; returns pods/s from the first
/// creation to the last binding.
async fn in_process(client: &kube::Client, phase: Phase, pods: usize) -> f64 {
    let name = phase.name();
    let mut framework = wkube::scheduler::default_framework();
    if let Some(p) = plugin(phase) {
        let set = Arc::new(PluginSet::default());
        set.insert("zone-spread", p, vec![name.to_string()]);
        framework = framework.with_extensions(set);
    }
    let config = SchedulerConfig {
        scheduler_name: name.to_string(),
        ..SchedulerConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(wkube::scheduler::run_with(
        client.clone(),
        config,
        framework,
        async move {
            let _ = stopped.await;
        },
    ));
    // Let it list the nodes and pods first: the phase measures scheduling, not the relist.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let selector = format!("phase={name}");
    let mut stream = api
        .watch(&WatchParams::default().labels(&selector), "0")
        .await
        .expect("watch")
        .boxed();
    let started = Instant::now();
    let creator = {
        let api = api.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..pods)
                .for_each_concurrent(32, |i| {
                    let api = api.clone();
                    async move {
                        let pod = pod_for(&format!("{name}-{i}"), name, name);
                        api.create(&PostParams::default(), &pod)
                            .await
                            .expect("create");
                    }
                })
                .await;
        })
    };
    let mut bound = std::collections::HashSet::new();
    while bound.len() < pods {
        let event = tokio::time::timeout(Duration::from_secs(120), stream.next())
            .await
            .expect("pods keep getting bound");
        let Some(Ok(WatchEvent::Added(p) | WatchEvent::Modified(p))) = event else {
            continue;
        };
        if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
            bound.insert(p.metadata.name.clone().unwrap_or_default());
        }
    }
    let rate = pods as f64 / started.elapsed().as_secs_f64();
    creator.await.expect("creator");
    let _ = stop.send(());
    let _ = scheduler.await;
    println!("  {name}: {rate:.0} pods/s");
    rate
}

fn cluster(nodes: usize) -> Vec<NodeInfo> {
    (0..nodes)
        .map(|i| {
            let n: Node = serde_json::from_value(json!({
                "metadata": { "name": format!("n{i}"),
                    "labels": { "topology.kubernetes.io/zone": format!("zone-{}", i % 10) } },
                "status": { "allocatable": { "cpu": "32", "memory": "256Gi", "pods": "110" } },
            }))
            .expect("node");
            NodeInfo::from_node(&n)
        })
        .collect()
}

fn pending(i: usize) -> PodInfo {
    PodInfo::from_pod(&pod_for(&format!("p{i}"), "x", "default-scheduler"))
}

/// Microseconds per pod of PreFilter + Filter + Score over every node, wasm vs native.
fn per_call_cost(nodes: usize) {
    const PODS: usize = 200;
    let host = SchedulerHost::new().expect("plugin host");
    let wasm = host.load(&zone_spread_wasm()).expect("zone-spread loads");
    let native: Arc<dyn GuestFactory> = Arc::new(twin::NativeFactory);
    let spec = plugin_spec("zone-spread");
    let mut guest_us = Vec::new();
    for factory in [&wasm, &native] {
        let mut guest = factory.instantiate(&spec.limits).expect("instance");
        guest
            .configure(&spec.settings)
            .expect("configure")
            .expect("settings");
        let all = cluster(nodes);
        let delta = Delta {
            reset: true,
            nodes: all
                .iter()
                .enumerate()
                .map(|(i, n)| NodeView::of(i as u32, n))
                .collect(),
            ..Delta::default()
        };
        guest.sync(&delta).expect("sync");
        let handles: Vec<u32> = (0..nodes as u32).collect();
        let started = Instant::now();
        for i in 0..PODS {
            let pod = PodView::from(&pending(i));
            guest.pre_filter(&pod).expect("pre-filter");
            guest.filter(&pod, &handles).expect("filter");
            guest.score(&pod, &handles).expect("score");
        }
        guest_us.push(started.elapsed().as_secs_f64() * 1e6 / PODS as f64);
    }
    println!(
        "per pod, PreFilter+Filter+Score over {nodes} nodes on the guest: wasm {:.0} µs, native {:.0} µs (wasm/native {:.2})",
        guest_us[0],
        guest_us[1],
        guest_us[0] / guest_us[1].max(f64::MIN_POSITIVE)
    );
    let mut host_us = Vec::new();
    for phase in [Phase::Wasm, Phase::Native] {
        let plugin = plugin(phase).expect("plugin");
        let mut all = cluster(nodes);
        let started = Instant::now();
        for i in 0..PODS {
            let pod = pending(i);
            let refs: Vec<&NodeInfo> = all.iter().collect();
            plugin.pre_filter(&pod, &refs).expect("pre-filter");
            plugin.filter(&pod, &refs).expect("filter");
            plugin.score(&pod, &refs).expect("score");
            // Bind it, so the next pod's call carries a delta, as in a real cycle.
            let node = i * 7 % nodes;
            all[node].add_pod(&pod);
        }
        host_us.push(started.elapsed().as_secs_f64() * 1e6 / PODS as f64);
    }
    println!(
        "per pod, the same through the host (mirror + delta + plugin thread): wasm {:.0} µs, native {:.0} µs (wasm/native {:.2})",
        host_us[0],
        host_us[1],
        host_us[0] / host_us[1].max(f64::MIN_POSITIVE)
    );
}
