//! Linux container pod benchmarks, with the busybox image (built as the e2e tests build it,
//! served by Debian's `docker-registry` on 127.0.0.1) already in the node's image store:
//!
//! - pod apply -> Running latency over 100 pods created through the API in batches of 10,
//!   measured by a watch (p50/p99);
//! - the node agent's RSS (a `wkube agent` process of its own, beside `wkube up --no-agent`)
//!   idle and with 50 running `sleep 3600` container pods, per pod, beside the documented
//!   per-container cost of a shim-based runtime.
//!
//! Run as root: `cargo bench --bench container_pods`. Loopback only; prints figures.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

mod common;
#[path = "../tests/common/oci.rs"]
mod oci;
#[path = "../tests/common/registry.rs"]
mod registry;

use common::{client, pct, rss_mib, start_process, start_wkube, Server};

/// Pods of the latency run, and how many are created before waiting for them.
const LATENCY_PODS: usize = 100;
const BATCH: usize = 10;
/// Running pods of the density run.
const DENSITY_PODS: usize = 50;
/// A batch with no pod event for this long is reported as stuck and left behind.
const STALL: Duration = Duration::from_secs(60);

/// RSS of one `containerd-shim` per running container, in MiB, as measured and published by
/// containerd's maintainers when the shim moved to ttrpc: 5248 KiB RSS per running container
/// (containerd/containerd pull request #1767, 2017). containerd 1.6's
/// `containerd-shim-runc-v2` is reported at 9.8-11 MiB RSS per shim (containerd/containerd
/// issue #7878, 2022). With the CRI plugin there is one shim per pod, so for these one-container
/// pods per pod and per container are the same. Not measured here: there is no containerd on
/// the build machines.
const SHIM_RSS_MIB: f64 = 5248.0 / 1024.0;

fn sleeping_pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "bench": "containers" } },
        "spec": {
            "runtimeClassName": "linux",
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        },
    }))
    .expect("pod")
}

type PodEvents<'a> = futures::stream::BoxStream<'a, kube::Result<WatchEvent<Pod>>>;

/// Waits until every pod in `created` has been seen Running; returns create -> Running times.
async fn until_running(
    stream: &mut PodEvents<'_>,
    created: &HashMap<String, Instant>,
    running: &mut HashSet<String>,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    while created.keys().any(|n| !running.contains(n)) {
        let event = tokio::time::timeout(STALL, stream.try_next()).await;
        let pod = match event {
            Ok(Ok(Some(WatchEvent::Added(p) | WatchEvent::Modified(p)))) => p,
            Ok(Ok(Some(_))) => continue,
            Err(_) => {
                // Reported, not hidden: such a pod is left out of the percentiles.
                let stuck: Vec<&String> =
                    created.keys().filter(|n| !running.contains(*n)).collect();
                println!("  WARNING: no pod event for {STALL:?}; never Running: {stuck:?}");
                return latencies;
            }
            other => panic!("watch ended waiting for Running pods: {other:?}"),
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
        if phase == "Failed" {
            panic!("pod {name} failed");
        }
        if phase == "Running" && running.insert(name.clone()) {
            if let Some(t0) = created.get(&name) {
                latencies.push(t0.elapsed());
            }
        }
    }
    latencies
}

/// Creates `count` pods named `prefix-i`, `batch` at a time, each batch waited for Running.
async fn run_pods(pods: &Api<Pod>, image: &str, prefix: &str, count: usize) -> Vec<Duration> {
    let watch = WatchParams::default().labels("bench=containers");
    let mut stream = pods.watch(&watch, "0").await.expect("watch").boxed();
    let mut running = HashSet::new();
    let mut latencies = Vec::new();
    for start in (0..count).step_by(BATCH) {
        let mut created = HashMap::new();
        for i in start..(start + BATCH).min(count) {
            let name = format!("{prefix}-{i}");
            let t0 = Instant::now();
            pods.create(&PostParams::default(), &sleeping_pod(&name, image))
                .await
                .expect("create pod");
            created.insert(name, t0);
        }
        latencies.extend(until_running(&mut stream, &created, &mut running).await);
        eprintln!("  ... {prefix}: {} of {count} running", running.len());
    }
    latencies
}

/// Deletes every bench pod and waits until the agent has removed them all.
async fn delete_all(pods: &Api<Pod>) {
    let list = ListParams::default().labels("bench=containers");
    pods.delete_collection(&DeleteParams::default(), &list)
        .await
        .expect("delete pods");
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        let left = pods.list(&list).await.map(|l| l.items.len()).unwrap_or(1);
        if left == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("bench pods still exist 180 s after delete");
}

/// `wkube agent` for node `bench-node` with its store in `agent_dir`.
fn start_agent(data: &Path, agent_dir: &Path, url: &str) -> Server {
    let pki = data.join("pki");
    let token = std::fs::read_to_string(pki.join("node.token")).expect("node token");
    let ca = pki.join("ca.crt");
    let args = [
        "agent",
        "--server",
        url,
        "--token",
        token.trim(),
        "--ca-cert",
        &ca.display().to_string(),
        "--node-name",
        "bench-node",
        "--agent-data-dir",
        &agent_dir.display().to_string(),
        "--max-pods",
        "200",
    ];
    start_process(&args, "wkube: agent for node")
}

async fn wait_for_node(client: &kube::Client) {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(node)) = nodes.get_opt("bench-node").await {
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("node bench-node did not become Ready");
}

#[tokio::main]
async fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "Linux container pods need root"
    );
    let registry = registry::Registry::start();
    let image = format!("{}/busybox:v1", registry.host());
    oci::push_busybox_image(&image, false);
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, agent_dir) = (dir.path().join("data"), dir.path().join("agent"));
    let pulled = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args(["image", "pull", &image, "--agent-data-dir"])
        .arg(&agent_dir)
        .stdout(Stdio::null())
        .status()
        .expect("wkube image pull");
    assert!(
        pulled.success(),
        "caching {image} in the node's store failed"
    );

    let server = start_wkube(&data, &["--no-agent"]);
    let agent = start_agent(&data, &agent_dir, &server.url);
    let client = client(&data).await;
    wait_for_node(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let agent_pid = agent.child.id();
    println!("container pods, busybox image cached in the node's store");

    // Density first, so that "before" is the agent as it starts, not after 100 pods churned.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(agent_pid);
    let dense = run_pods(&pods, &image, "dense", DENSITY_PODS).await.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let full = rss_mib(agent_pid);
    let per_pod = (full - idle) / dense.max(1) as f64;
    println!(
        "  agent RSS: idle {idle:.1} MiB, with {dense} running pods {full:.1} MiB \
         -> {:.0} KiB per pod (containerd-shim: ~{:.0} KiB per container, {:.1}x)",
        per_pod * 1024.0,
        SHIM_RSS_MIB * 1024.0,
        SHIM_RSS_MIB / per_pod.max(f64::EPSILON)
    );
    delete_all(&pods).await;

    let mut latencies = run_pods(&pods, &image, "lat", LATENCY_PODS).await;
    println!(
        "  apply -> Running ({} of {LATENCY_PODS} pods, batches of {BATCH}): p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        pct(&mut latencies, 0.5),
        pct(&mut latencies, 0.99)
    );
    delete_all(&pods).await;
    drop(agent);
    drop(server);
    report_leftovers(dir.path());
}

/// Mounts the agent left under the bench's directory after every pod was deleted (each pod
/// sandbox pins its namespaces with bind mounts; a leak here would be a runtime bug).
fn report_leftovers(dir: &Path) {
    let root = dir.display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let left: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&root))
        .collect();
    if !left.is_empty() {
        println!(
            "  WARNING: {} mounts left after every pod was deleted: {left:?}",
            left.len()
        );
    }
}
