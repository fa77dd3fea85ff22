//! What the benchmarks share: starting `wkube` processes, reading their CPU and memory, a client
//! for a cluster, percentiles.
#![allow(dead_code)] // each bench uses a different part

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `wkube` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub ready_after: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wkube up --listen 127.0.0.1:0 --data-dir DATA EXTRA...`, returned once it says it is ready.
pub fn start_wkube(data_dir: &Path, extra: &[&str]) -> Server {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("WKUBE_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start wkube");
    let stdout = child.stdout.take().expect("stdout");
    let mut url = String::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if let Some(u) = line.strip_prefix("wkube: API server listening on ") {
            url = u.trim().to_string();
        }
        if line.starts_with("wkube: ready") {
            break;
        }
    }
    let ready_after = started.elapsed();
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        url,
        ready_after,
    }
}

/// Runs `wkube ARGS...` in the background and returns once a line of its output starts with
/// `ready_line`.
pub fn start_process(args: &[&str], ready_line: &str) -> Server {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args(args)
        .env("WKUBE_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start wkube");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if line.expect("line").starts_with(ready_line) {
            break;
        }
    }
    let ready_after = started.elapsed();
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        url: String::new(),
        ready_after,
    }
}

/// An admin client for the cluster whose data dir is `data_dir`.
pub async fn client(data_dir: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(data_dir.join("kubeconfig")).expect("kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

/// CPU seconds (user + system) the process has used.
pub fn cpu_seconds(pid: u32) -> f64 {
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

/// Resident memory of the process, in MiB.
pub fn rss_mib(pid: u32) -> f64 {
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

/// The `p` quantile (0..=1) in milliseconds; sorts `v`.
pub fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}
