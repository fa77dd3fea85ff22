//! Control-plane benchmarks: start-up time, idle memory, durable create throughput and latency
//! (against etcd's v3 JSON gateway, run side by side), and watch fan-out.
//!
//! Run: `cargo bench --bench core` (needs Debian's `etcd-server` for the etcd comparison).
//! Everything listens on 127.0.0.1 only. Figures are printed; nothing is asserted.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod common;

use common::{client, rss_mib, start_wkube};

#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Stats {
    fn pct(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        if l.is_empty() {
            return Duration::ZERO;
        }
        l[((l.len() as f64 - 1.0) * p).round() as usize]
    }
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
    fn line(&self, what: &str) -> String {
        format!(
            "{what:<34} {:>9.0} ops/s   p50 {:>8.2} ms   p99 {:>8.2} ms",
            self.throughput(),
            self.pct(0.5).as_secs_f64() * 1e3,
            self.pct(0.99).as_secs_f64() * 1e3
        )
    }
}

/// Runs `total` operations with `concurrency` workers, each op timed.
async fn load<F, Fut>(total: usize, concurrency: usize, op: F) -> Stats
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let op = op.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                op(i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut stats = Stats::default();
    for t in tasks {
        stats.latencies.extend(t.await.expect("worker"));
    }
    stats.wall = started.elapsed();
    stats
}

/// A minimal keep-alive HTTP/1.1 client for etcd's JSON gateway (plain TCP on loopback).
struct EtcdConn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl EtcdConn {
    async fn connect(port: u16) -> Self {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("etcd connect");
        stream.set_nodelay(true).expect("nodelay");
        EtcdConn {
            stream,
            buf: Vec::new(),
        }
    }

    async fn post(&mut self, path: &str, body: &str) {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(req.as_bytes()).await.expect("write");
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "etcd closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_lowercase();
                assert!(head.starts_with("http/1.1 200"), "etcd said {head}");
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    return;
                }
            }
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn start_etcd(dir: &Path, port: u16) -> Option<Child> {
    let child = Command::new("etcd")
        .args([
            "--data-dir",
            dir.to_str()?,
            "--listen-client-urls",
            &format!("http://127.0.0.1:{port}"),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{port}"),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{}", port + 1),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{}", port + 1),
            "--initial-cluster",
            &format!("default=http://127.0.0.1:{}", port + 1),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(child)
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn configmap(i: usize, tag: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": { "name": format!("{tag}-{i}") },
        "data": { "payload": "x".repeat(256) },
    }))
    .expect("configmap")
}

#[tokio::main]
async fn main() {
    // Criterion-style filters passed by `cargo bench` are ignored: this runs everything once.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("wkube");

    println!("== wkube control plane benchmark (loopback, 2 cores)");
    // API only: the fan-out pods must not be run (their images exist nowhere).
    let server = start_wkube(&data, &["--no-agent"]);
    println!(
        "wkube up -> API ready (fresh data dir): {:>8.1} ms",
        server.ready_after.as_secs_f64() * 1e3
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "idle RSS of the server:                {:>8.1} MiB",
        rss_mib(server.child.id())
    );
    let c = client(&data).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let _ = &server.url;

    let mut results = Vec::new();
    for (clients, total) in [(1usize, 1000usize), (32, 4000)] {
        let api = cms.clone();
        let tag = format!("c{clients}");
        let stats = load(total, clients, move |i| {
            let api = api.clone();
            let cm = configmap(i, &tag);
            async move {
                api.create(&PostParams::default(), &cm)
                    .await
                    .expect("create");
            }
        })
        .await;
        println!(
            "{}",
            stats.line(&format!("wkube create, {clients} client(s)"))
        );
        results.push((clients, total, stats));
    }
    println!(
        "RSS after {} creates:                 {:>8.1} MiB",
        results.iter().map(|r| r.1).sum::<usize>(),
        rss_mib(server.child.id())
    );

    // etcd, the same load through its v3 JSON gateway.
    let etcd_port = free_port();
    match start_etcd(&dir.path().join("etcd"), etcd_port) {
        None => println!("etcd: not installed (apt-get install etcd-server) - comparison skipped"),
        Some(mut etcd) => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            for (clients, total, wk) in &results {
                let conns: Arc<Vec<tokio::sync::Mutex<EtcdConn>>> = Arc::new(
                    futures::future::join_all((0..*clients).map(|_| async {
                        tokio::sync::Mutex::new(EtcdConn::connect(etcd_port).await)
                    }))
                    .await,
                );
                let n = *clients;
                let stats = load(*total, *clients, move |i| {
                    let conns = conns.clone();
                    async move {
                        let body = json!({
                            "key": b64(&format!("/registry/configmaps/default/c{n}-{i}")),
                            "value": b64(&"x".repeat(400)),
                        })
                        .to_string();
                        let mut conn = conns[i % n].lock().await;
                        conn.post("/v3/kv/put", &body).await;
                    }
                })
                .await;
                println!("{}", stats.line(&format!("etcd put, {clients} client(s)")));
                println!(
                    "  ratio wkube/etcd: throughput {:.2}x, p50 latency {:.2}x, p99 latency {:.2}x",
                    wk.throughput() / stats.throughput(),
                    wk.pct(0.5).as_secs_f64() / stats.pct(0.5).as_secs_f64(),
                    wk.pct(0.99).as_secs_f64() / stats.pct(0.99).as_secs_f64()
                );
            }
            let _ = etcd.kill();
            let _ = etcd.wait();
        }
    }

    // Watch fan-out: 1,000 watchers on pods, time from write to each delivery.
    let watchers = 1000;
    let writes = 20;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut handles = Vec::new();
    let opened = Arc::new(tokio::sync::Semaphore::new(0));
    for _ in 0..watchers {
        let wc = client(&data).await;
        let api: Api<Pod> = Api::namespaced(wc, "default");
        let tx = tx.clone();
        let opened = opened.clone();
        handles.push(tokio::spawn(async move {
            let stream = api
                .watch(&WatchParams::default().timeout(290), "0")
                .await
                .expect("watch");
            opened.add_permits(1);
            let mut stream = stream.boxed();
            while let Some(Ok(ev)) = stream.next().await {
                if let WatchEvent::Added(p) = ev {
                    let _ = tx.send((p.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        }));
    }
    let _ = opened
        .acquire_many(watchers as u32)
        .await
        .expect("watchers open");
    println!(
        "{watchers} watchers open; RSS {:.1} MiB",
        rss_mib(server.child.id())
    );
    let mut sent = std::collections::HashMap::new();
    for i in 0..writes {
        let name = format!("fan-{i}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "containers": [{ "name": "c", "image": "registry.local/x:1" }] }
        }))
        .expect("pod");
        sent.insert(name, Instant::now());
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut fan = Stats::default();
    let started = Instant::now();
    while fan.latencies.len() < watchers * writes {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some((name, at))) => {
                if let Some(t0) = sent.get(&name) {
                    fan.latencies.push(at.saturating_duration_since(*t0));
                }
            }
            _ => break,
        }
    }
    fan.wall = started.elapsed();
    println!(
        "watch fan-out: {} of {} deliveries; write->event p50 {:.2} ms, p99 {:.2} ms",
        fan.latencies.len(),
        watchers * writes,
        fan.pct(0.5).as_secs_f64() * 1e3,
        fan.pct(0.99).as_secs_f64() * 1e3
    );
    for h in handles {
        h.abort();
    }
}
