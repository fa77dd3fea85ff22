//! Wasm pod benchmarks: pod start through the whole system (API -> scheduler -> agent ->
//! wasmtime -> status), instance start inside the runtime beside spawning `/bin/true`, and
//! density (sleeping pods one agent keeps, RSS per pod).
//!
//! Run: `bash examples/build.sh && cargo bench --bench pods`. Loopback only; prints figures.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use wkube::runtime::logs::{LogSink, Stream};
use wkube::runtime::wasm::WasmRuntime;
use wkube::runtime::{ContainerSpec, PodRuntime, ResolvedImage};

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--max-pods",
            "1300",
            "--data-dir",
        ])
        .arg(data)
        .env("WKUBE_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start wkube");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if line.expect("line").starts_with("wkube: ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Server { child }
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
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
/// and the control plane's (server + controllers + in-process agent) CPU and memory meanwhile.
async fn scale_deployment(hello: &Path) {
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
    let kc = kube::config::Kubeconfig::read_from(data.join("kubeconfig")).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(cfg).expect("client");
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
    let (cpu0, rss0) = (cpu_seconds(pid), rss_mib(pid));
    let started = Instant::now();
    let patch = kube::api::Patch::Merge(json!({ "spec": { "replicas": 1000 } }));
    deployments
        .patch_scale("scale", &kube::api::PatchParams::default(), &patch)
        .await
        .expect("scale");
    let mut peak = rss0;
    loop {
        let d = deployments.get("scale").await.expect("get");
        peak = peak.max(rss_mib(pid));
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
    println!(
        "scale a Deployment 1 -> 1000 sleeping wasm pods: 1000 ready after {:.2} s; control plane + agent used {cpu:.1} CPU-s ({:.0}% of one core), RSS {rss0:.1} -> peak {peak:.1} MiB",
        took.as_secs_f64(),
        cpu / took.as_secs_f64() * 100.0
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

    println!("== wasm pod benchmarks (loopback, 2 cores)");
    runtime_vs_process(&hello).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let server = start(&data);
    let import = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args(["image", "import"])
        .arg(&hello)
        .args(["--name", "wkube.local/hello-rust:v1", "--data-dir"])
        .arg(&data)
        .output()
        .expect("import");
    assert!(import.status.success());
    let kc = kube::config::Kubeconfig::read_from(data.join("kubeconfig")).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(cfg).expect("client");
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
    scale_deployment(&hello).await;
}
