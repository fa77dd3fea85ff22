//! Scheduler throughput at scale, like upstream's scheduler_perf: thousands of hollow nodes
//! (`wkube agent --hollow`), pods created through the API by 32 clients, and the rate from the
//! first creation to the last pod bound (upstream's floor for 5,000 nodes: 680 pods/s), the
//! per-pod creation-to-bound latency, and the server's CPU and memory (the scheduler runs in it).
//!
//! Run: `cargo bench --bench scheduler` (5,000 nodes, 10,000 pods) or
//! `cargo bench --bench scheduler -- NODES PODS`. Loopback only; prints figures.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::sync::Mutex;

use common::{client, cpu_seconds, pct, rss_mib, start_process, start_wkube};

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": "perf" } },
        "spec": { "containers": [{
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
    drop(hollow);
}
