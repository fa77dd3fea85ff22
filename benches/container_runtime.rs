//! create -> start -> exit of busybox `true`: wkube's in-process libcontainer runtime (the code
//! path the agent uses, `ContainerRuntime::start` then `wait`) beside `runc run` and
//! `crun run` (Debian packages) on a bundle with the same rootfs. Needs root and
//! Debian's busybox-static, runc and crun.
//!
//! crun 1.8 refuses this machine's hybrid cgroup layout, so it runs in a private mount
//! namespace without the unified mount (`unshare -m sh -c 'umount ... && crun run ...'`):
//! its figures include that `unshare` + `sh` (a few ms), and the output says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wkube::image::{ContainerImage, ImageConfig};
use wkube::runtime::container::ContainerRuntime;
use wkube::runtime::logs::{LogSink, Stream};
use wkube::runtime::{ContainerSpec, PodRuntime, ResolvedImage};

mod common;

use common::pct;

const RUNS: usize = 100;

struct Discard;
impl LogSink for Discard {
    fn write(&self, _stream: Stream, _bytes: &[u8]) {}
    fn close(&self) {}
}

/// A layer with busybox and its `true` and `sh` applets.
fn busybox_layer(dir: &Path) -> PathBuf {
    let layer = dir.join("layer");
    std::fs::create_dir_all(layer.join("bin")).expect("layer dir");
    std::fs::copy("/bin/busybox", layer.join("bin/busybox"))
        .expect("/bin/busybox missing: apt-get install busybox-static");
    for applet in ["true", "sh"] {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).expect("applet");
    }
    layer
}

fn spec(layer: &Path, n: usize) -> ContainerSpec {
    ContainerSpec {
        pod_uid: "bench-pod".into(),
        namespace: "bench".into(),
        pod_name: "bench".into(),
        container_name: format!("c{n}"),
        image: ResolvedImage {
            reference: "bench/busybox".into(),
            digest: "sha256:bench".into(),
            wasm_path: PathBuf::new(),
            container: Some(ContainerImage {
                layers: vec![layer.to_path_buf()],
                config: ImageConfig::default(),
            }),
        },
        argv: vec!["/bin/true".into()],
        env: vec![],
        mounts: vec![],
        working_dir: None,
        memory_limit_bytes: None,
        cpu_limit_millis: None,
        cpu_request_millis: None,
        linux: Default::default(),
        logs: Arc::new(Discard),
    }
}

async fn wkube_runs(layer: &Path, root: &Path) -> Vec<Duration> {
    let runtime = ContainerRuntime::new(root).expect("container runtime");
    let mut times = Vec::with_capacity(RUNS);
    // One warm-up run creates the pod's sandbox, which later containers of a pod share.
    for n in 0..=RUNS {
        let t = Instant::now();
        let handle = runtime.start(spec(layer, n)).await.expect("start");
        let status = handle.wait().await;
        assert_eq!(status.exit_code, 0, "{status:?}");
        if n > 0 {
            times.push(t.elapsed());
        }
    }
    runtime.release_pod("bench-pod").await;
    times
}

/// An OCI bundle (runc's `spec` template, `true` as the process) over a copy of the layer.
fn bundle(layer: &Path, dir: &Path) -> PathBuf {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).expect("bundle dir");
    let copied = Command::new("cp")
        .args(["-a"])
        .arg(layer)
        .arg(bundle.join("rootfs"))
        .status()
        .expect("cp");
    assert!(copied.success());
    let made = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(&bundle)
        .status()
        .expect("runc spec");
    assert!(made.success());
    let path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("config.json")).expect("json");
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["/bin/true"]);
    std::fs::write(&path, serde_json::to_vec(&config).expect("json")).expect("write config");
    bundle
}

fn run_times(name: &str, mut command: impl FnMut(usize) -> Command) -> Vec<Duration> {
    let mut times = Vec::with_capacity(RUNS);
    for n in 0..=RUNS {
        let t = Instant::now();
        let out = command(n)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if n > 0 {
            times.push(t.elapsed());
        }
    }
    times
}

fn present(binary: &str) -> bool {
    Command::new(binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn report(name: &str, times: &mut [Duration], base: Option<(f64, f64)>) -> (f64, f64) {
    let (p50, p99) = (pct(times, 0.5), pct(times, 0.99));
    let ratio = base
        .map(|(b50, b99)| format!("  ({:.2}x / {:.2}x of wkube)", p50 / b50, p99 / b99))
        .unwrap_or_default();
    println!("  {name:<34} p50 {p50:7.2} ms   p99 {p99:7.2} ms{ratio}");
    (p50, p99)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let layer = busybox_layer(dir.path());
    let mut wkube = wkube_runs(&layer, &dir.path().join("containers")).await;
    let bundle = bundle(&layer, dir.path());
    println!("create -> start -> exit of busybox `true`, {RUNS} runs each:");
    let base = report("wkube (in-process libcontainer)", &mut wkube, None);
    let state = dir.path().join("state");
    if present("runc") {
        let mut runc = run_times("runc", |n| {
            let mut c = Command::new("runc");
            c.arg("--root").arg(state.join("runc"));
            c.args(["run", "--bundle"])
                .arg(&bundle)
                .arg(format!("b{n}"));
            c
        });
        report("runc run", &mut runc, Some(base));
    } else {
        println!("  runc: not installed (apt-get install runc); no figures");
    }
    if present("crun") {
        let mut crun = run_times("crun", |n| {
            let script = format!(
                "umount /sys/fs/cgroup/unified && exec crun --root {} run --bundle {} c{n}",
                state.join("crun").display(),
                bundle.display()
            );
            let mut c = Command::new("unshare");
            c.args(["-m", "sh", "-c", &script]);
            c
        });
        report(
            "crun run (unshare -m + sh around it)",
            &mut crun,
            Some(base),
        );
    } else {
        println!("  crun: not installed (apt-get install crun); no figures");
    }
}
