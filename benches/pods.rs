//! Wasm pod benchmarks: pod start through the whole system (API -> scheduler -> agent ->
//! wasmtime -> status), instance start inside the runtime beside spawning `/bin/true`, and
//! density (sleeping pods one agent keeps, RSS per pod).
//!
//! Run: `bash examples/build.sh && cargo bench --bench pods`. Loopback only; prints figures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use wkube::runtime::logs::{LogSink, Stream};
use wkube::runtime::wasm::WasmRuntime;
use wkube::runtime::{ContainerSpec, PodRuntime, ResolvedImage};

mod common;

use common::{client, cpu_seconds, pct, rss_mib, start_process, start_wkube, Server};

fn start(data: &Path) -> Server {
    start_with(data, &[])
}

fn start_with(data: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--max-pods", "1300"];
    args.extend(extra);
    start_wkube(data, &args)
}

fn sleeping_pod(name: &str, group: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "bench": group } },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "main",
                "image": "wkube.local/hello-rust:v1",
                "imagePullPolicy": "Never",
                "args": ["--sleep", "3600"],
            }],
        },
    }))
    .expect("pod")
}

type Created = Arc<std::sync::Mutex<HashMap<String, Instant>>>;

/// Follows a watch, recording for each pod the time from its create to its first Running.
struct Tracker {
    created: Created,
    running: std::collections::HashSet<String>,
    latencies: Vec<Duration>,
}

impl Tracker {
    async fn until(
        &mut self,
        stream: &mut futures::stream::BoxStream<'_, kube::Result<WatchEvent<Pod>>>,
        count: usize,
    ) {
        while self.running.len() < count {
            match tokio::time::timeout(Duration::from_secs(120), stream.try_next()).await {
                Ok(Ok(Some(WatchEvent::Added(p) | WatchEvent::Modified(p)))) => {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let phase = p
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_default();
                    if phase == "Running" && self.running.insert(name.clone()) {
                        if let Some(t0) =
                            self.created.lock().ok().and_then(|m| m.get(&name).copied())
                        {
                            self.latencies.push(t0.elapsed());
                        }
                    }
                }
                Ok(Ok(Some(_))) => {}
                other => panic!(
                    "watch ended early after {} running: {other:?}",
                    self.running.len()
                ),
            }
        }
    }
}

/// Times from create to the first Running seen by a watch, per pod.
async fn start_pods(
    api: &Api<Pod>,
    group: &str,
    count: usize,
    at_once: bool,
) -> (Vec<Duration>, Duration) {
    let mut stream = api
        .watch(
            &WatchParams::default()
                .labels(&format!("bench={group}"))
                .timeout(290),
            "0",
        )
        .await
        .expect("watch")
        .boxed();
    let created: Created = Default::default();
    let mut tracker = Tracker {
        created: created.clone(),
        running: Default::default(),
        latencies: Vec::new(),
    };
    let started = Instant::now();
    if at_once {
        let creates = futures::stream::iter(0..count).map(|i| {
            let api = api.clone();
            let created = created.clone();
            let name = format!("{group}-{i}");
            async move {
                if let Ok(mut m) = created.lock() {
                    m.insert(name.clone(), Instant::now());
                }
                api.create(&PostParams::default(), &sleeping_pod(&name, group))
                    .await
                    .expect("create");
            }
        });
        let all_created = creates.buffer_unordered(32).collect::<Vec<()>>();
        futures::join!(all_created, tracker.until(&mut stream, count));
    } else {
        for i in 0..count {
            let name = format!("{group}-{i}");
            if let Ok(mut m) = created.lock() {
                m.insert(name.clone(), Instant::now());
            }
            api.create(&PostParams::default(), &sleeping_pod(&name, group))
                .await
                .expect("create");
            tracker.until(&mut stream, i + 1).await;
        }
    }
    (tracker.latencies, started.elapsed())
}

/// `kubectl scale --replicas=1000` on a Deployment of sleeping wasm pods: time to 1,000 ready,
/// and CPU and memory meanwhile of the server process (API, store, scheduler, in-process agent)
/// and, apart, of the controllers (`wkube controller-manager`).
async fn scale_deployment(hello: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start_with(&data, &["--no-controllers"]);
    let kubeconfig = data.join("kubeconfig").to_string_lossy().to_string();
    let controllers = start_process(
        &["controller-manager", "--kubeconfig", &kubeconfig],
        "wkube: controller manager running",
    );
    let import = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args(["image", "import"])
        .arg(hello)
        .args(["--name", "wkube.local/hello-rust:v1", "--data-dir"])
        .arg(&data)
        .output()
        .expect("import");
    assert!(import.status.success());
    let client = client(&data).await;
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client, "default");
    let d = serde_json::from_value(json!({
        "metadata": { "name": "scale" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "scale" } },
            "template": {
                "metadata": { "labels": { "app": "scale" } },
                "spec": { "terminationGracePeriodSeconds": 0, "containers": [{
                    "name": "main", "image": "wkube.local/hello-rust:v1", "imagePullPolicy": "Never",
                    "args": ["--sleep", "3600"],
                }] },
            },
        },
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create");
    let ready = |d: &k8s_openapi::api::apps::v1::Deployment| {
        d.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    };
    while ready(&deployments.get("scale").await.expect("get")) < 1 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = server.child.id();
    let cm = controllers.child.id();
    let (cpu0, rss0) = (cpu_seconds(pid), rss_mib(pid));
    let (cm_cpu0, cm_rss0) = (cpu_seconds(cm), rss_mib(cm));
    let started = Instant::now();
    let patch = kube::api::Patch::Merge(json!({ "spec": { "replicas": 1000 } }));
    deployments
        .patch_scale("scale", &kube::api::PatchParams::default(), &patch)
        .await
        .expect("scale");
    let (mut peak, mut cm_peak) = (rss0, cm_rss0);
    loop {
        let d = deployments.get("scale").await.expect("get");
        peak = peak.max(rss_mib(pid));
        cm_peak = cm_peak.max(rss_mib(cm));
        if ready(&d) >= 1000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "scale did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    let cpu = cpu_seconds(pid) - cpu0;
    let cm_cpu = cpu_seconds(cm) - cm_cpu0;
    let secs = took.as_secs_f64();
    println!(
        "scale a Deployment 1 -> 1000 sleeping wasm pods: 1000 ready after {secs:.2} s\n  \
         server (API + store + scheduler + agent): {cpu:.1} CPU-s ({:.0}% of one core), RSS {rss0:.1} -> peak {peak:.1} MiB\n  \
         controllers (wkube controller-manager):   {cm_cpu:.1} CPU-s ({:.0}% of one core), RSS {cm_rss0:.1} -> peak {cm_peak:.1} MiB",
        cpu / secs * 100.0,
        cm_cpu / secs * 100.0
    );
}

struct Discard;
impl LogSink for Discard {
    fn write(&self, _stream: Stream, _bytes: &[u8]) {}
    fn close(&self) {}
}

async fn runtime_vs_process(wasm: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = WasmRuntime::new(dir.path()).expect("runtime");
    let image = ResolvedImage {
        reference: "bench/hello".into(),
        digest: "sha256:bench".into(),
        wasm_path: wasm.to_path_buf(),
        container: None,
    };
    runtime.prepare(&image).await.expect("compile");
    let spec = ContainerSpec {
        pod_uid: "uid".into(),
        namespace: "bench".into(),
        pod_name: "p".into(),
        container_name: "c".into(),
        image,
        argv: vec!["hello.wasm".into()],
        env: vec![],
        mounts: vec![],
        working_dir: None,
        memory_limit_bytes: None,
        cpu_limit_millis: None,
        cpu_request_millis: None,
        linux: Default::default(),
        logs: Arc::new(Discard),
    };
    let runs = 300;
    let mut wasm_times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let handle = runtime.start(spec.clone()).await.expect("start");
        let exit = handle.wait().await;
        wasm_times.push(t.elapsed());
        assert_eq!(exit.exit_code, 0);
    }
    let mut native = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let status = Command::new("/bin/true").status().expect("/bin/true");
        native.push(t.elapsed());
        assert!(status.success());
    }
    let w = pct(&mut wasm_times, 0.5);
    let n = pct(&mut native, 0.5);
    println!("instance start+run of hello (in-process, median over {runs}): {w:.3} ms");
    println!("spawn+wait of /bin/true (median over {runs}):                 {n:.3} ms");
    println!("  ratio wasm/native: {:.2}x", w / n);
}

#[tokio::main]
async fn main() {
    let examples = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/build.sh"))
        .output()
        .expect("examples/build.sh");
    assert!(examples.status.success(), "examples/build.sh failed");
    let wasm_dir = PathBuf::from(String::from_utf8_lossy(&examples.stdout).trim().to_string());
    let hello = wasm_dir.join("hello-rust.wasm");

    // `cargo bench --bench pods -- scale` runs only the sections whose name contains "scale".
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |section: &str| filter.as_deref().is_none_or(|f| section.contains(f));
    println!("== wasm pod benchmarks (loopback, 2 cores)");
    if wanted("runtime") {
        runtime_vs_process(&hello).await;
    }
    if wanted("start-and-density") {
        start_and_density(&hello).await;
    }
    if wanted("scale") {
        scale_deployment(&hello).await;
    }
}

/// Pods started one by one and in a burst through the whole system, then the RSS they cost.
async fn start_and_density(hello: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(&data);
    let import = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args(["image", "import"])
        .arg(hello)
        .args(["--name", "wkube.local/hello-rust:v1", "--data-dir"])
        .arg(&data)
        .output()
        .expect("import");
    assert!(import.status.success());
    let client = client(&data).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let idle = rss_mib(server.child.id());

    let (mut seq, _) = start_pods(&pods, "seq", 200, false).await;
    println!(
        "pod start, 200 one by one (create -> Running seen by a watch): p50 {:.1} ms, p99 {:.1} ms",
        pct(&mut seq, 0.5),
        pct(&mut seq, 0.99)
    );
    let (mut burst, wall) = start_pods(&pods, "burst", 1000, true).await;
    println!(
        "pod start, 1000 at once: p50 {:.1} ms, p99 {:.1} ms, all Running after {:.2} s",
        pct(&mut burst, 0.5),
        pct(&mut burst, 0.99),
        wall.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let full = rss_mib(server.child.id());
    println!(
        "density: 1200 sleeping wasm pods on one node; RSS {idle:.1} MiB idle -> {full:.1} MiB ({:.1} KiB per pod)",
        (full - idle) * 1024.0 / 1200.0
    );
    drop(server);
}
