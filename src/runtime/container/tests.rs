//! The container runtime in-process, with a rootfs made from Debian's busybox-static. Needs
//! root (namespaces, mounts, cgroups), as the agent does.

use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::image::ImageConfig;
use crate::runtime::Mount;

/// Container tests share the process's children and the cgroup tree: one at a time, so each
/// can assert that it left nothing behind.
pub(super) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const APPLETS: &[&str] = &[
    "sh", "tail", "sleep", "cat", "readlink", "hostname", "pwd", "id", "touch", "grep", "ps",
];

fn busybox_layer(dir: &Path) -> PathBuf {
    let layer = dir.join("layer");
    std::fs::create_dir_all(layer.join("bin")).unwrap();
    std::fs::create_dir_all(layer.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", layer.join("bin/busybox"))
        .expect("/bin/busybox: install busybox-static");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
    }
    std::fs::write(layer.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    layer
}

#[derive(Default)]
struct Output {
    out: Mutex<Vec<u8>>,
    err: Mutex<Vec<u8>>,
    closed: std::sync::atomic::AtomicBool,
}

impl LogSink for Output {
    fn write(&self, stream: Stream, bytes: &[u8]) {
        let target = match stream {
            Stream::Stdout => &self.out,
            Stream::Stderr => &self.err,
        };
        target.lock().unwrap().extend_from_slice(bytes);
    }
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

impl Output {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    layer: PathBuf,
    runtime: ContainerRuntime,
}

fn fixture() -> Fixture {
    fixture_with(RuntimeConfig::default())
}

/// A busybox layer and a runtime with `config` in a fresh temp dir.
fn fixture_with(config: RuntimeConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let layer = busybox_layer(dir.path());
    let root = dir.path().join("containers");
    let runtime = ContainerRuntime::with_config(&root, config).unwrap();
    Fixture {
        _dir: dir,
        root,
        layer,
        runtime,
    }
}

impl Fixture {
    fn spec(&self, pod_uid: &str, name: &str, argv: &[&str], logs: Arc<Output>) -> ContainerSpec {
        ContainerSpec {
            pod_uid: pod_uid.into(),
            namespace: "default".into(),
            pod_name: "busybox-pod".into(),
            container_name: name.into(),
            image: ResolvedImage {
                reference: "test/busybox:v1".into(),
                digest: "sha256:test".into(),
                wasm_path: PathBuf::new(),
                container: Some(ContainerImage {
                    layers: vec![self.layer.clone()],
                    config: ImageConfig {
                        env: vec!["FROM_IMAGE=image".into(), "PATH=/bin".into()],
                        ..ImageConfig::default()
                    },
                }),
            },
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("FROM_POD".into(), "pod".into())],
            mounts: vec![],
            working_dir: None,
            memory_limit_bytes: None,
            cpu_limit_millis: None,
            cpu_request_millis: None,
            linux: Default::default(),
            logs,
        }
    }

    async fn run(&self, spec: ContainerSpec) -> ExitStatus {
        let handle = self.runtime.start(spec).await.expect("start");
        tokio::time::timeout(Duration::from_secs(60), handle.wait())
            .await
            .expect("container ended in time")
    }

    /// Releases the pod, then checks nothing is left: no mount under the runtime's root, no
    /// cgroup of the pod, no child process, no state.
    async fn release_and_check(&self, pod_uid: &str) {
        self.runtime.release_pod(pod_uid).await;
        let root = self.root.display().to_string();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mountinfo.contains(&root), "mounts left:\n{mountinfo}");
        for dir in cgroup::directories(&self.runtime.inner.cgroup_parent) {
            for entry in read_dir(&dir) {
                let name = entry.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    !name.starts_with(pod_uid),
                    "cgroup left: {}",
                    entry.display()
                );
            }
        }
        for sub in ["state", "bundles", "sandboxes"] {
            assert_eq!(
                read_dir(&self.root.join(sub)),
                Vec::<PathBuf>::new(),
                "{sub}"
            );
        }
        assert_eq!(children(), "", "child processes left");
    }
}

/// The pids of this process's children, from every thread's `children` list.
fn children() -> String {
    let mut all = String::new();
    for task in read_dir(Path::new("/proc/self/task")) {
        all.push_str(
            std::fs::read_to_string(task.join("children"))
                .unwrap_or_default()
                .trim(),
        );
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_logs_env_and_volumes() {
    let _serial = SERIAL.lock().await;
    let f = fixture();
    let out = Arc::new(Output::default());
    let vol = f._dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("f"), "from the volume\n").unwrap();
    let mut spec = f.spec(
        "t-exit-0000001",
        "main",
        &[
            "sh",
            "-c",
            "echo hi; echo $FROM_IMAGE $FROM_POD; cat /vol/f; pwd; echo oops >&2; exit 3",
        ],
        out.clone(),
    );
    spec.mounts = vec![Mount {
        host_path: vol,
        container_path: "/vol".into(),
        read_only: true,
    }];
    spec.working_dir = Some("/tmp".into());
    let status = f.run(spec).await;
    assert_eq!(status.exit_code, 3, "{status:?} {}", out.stderr());
    assert_eq!(status.reason, "Error");
    assert_eq!(out.stdout(), "hi\nimage pod\nfrom the volume\n/tmp\n");
    assert_eq!(out.stderr(), "oops\n");
    assert!(out.closed.load(Ordering::SeqCst));
    f.release_and_check("t-exit-0000001").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_ends_in_oom_killed() {
    let _serial = SERIAL.lock().await;
    let f = fixture();
    let out = Arc::new(Output::default());
    let mut spec = f.spec("t-oom-00000001", "hog", &["tail", "/dev/zero"], out.clone());
    spec.memory_limit_bytes = Some(32 * 1024 * 1024);
    let status = f.run(spec).await;
    assert_eq!(status.reason, "OOMKilled", "{status:?} {}", out.stderr());
    assert_eq!(status.exit_code, 137);
    f.release_and_check("t-oom-00000001").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_sigterm_then_sigkill() {
    let _serial = SERIAL.lock().await;
    let f = fixture();
    let uid = "t-stop-0000001";
    // A shell that traps SIGTERM exits cleanly within the grace period.
    let out = Arc::new(Output::default());
    let trap = "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
    let handle = f
        .runtime
        .start(f.spec(uid, "trap", &["sh", "-c", trap], out.clone()))
        .await
        .expect("start");
    wait_for_output(&out, "ready").await;
    let status = handle.stop(Duration::from_secs(20)).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));
    assert_eq!(out.stdout(), "ready\nbye\n");
    // One that ignores it (PID 1 without a handler) is killed after the grace period.
    let out = Arc::new(Output::default());
    let handle = f
        .runtime
        .start(f.spec(
            uid,
            "stubborn",
            &["sh", "-c", "echo ready; sleep 600"],
            out.clone(),
        ))
        .await
        .expect("start");
    wait_for_output(&out, "ready").await;
    let status = handle.stop(Duration::from_millis(300)).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (137, "Killed"));
    f.release_and_check(uid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_share_network_ipc_and_uts() {
    let _serial = SERIAL.lock().await;
    let f = fixture();
    let uid = "t-share-000001";
    let script = "for n in net ipc uts pid; do readlink /proc/self/ns/$n; done; hostname";
    let mut seen = Vec::new();
    for name in ["a", "b"] {
        let out = Arc::new(Output::default());
        let status = f
            .run(f.spec(uid, name, &["sh", "-c", script], out.clone()))
            .await;
        assert_eq!(status.exit_code, 0, "{}", out.stderr());
        seen.push(out.stdout());
    }
    let lines = |s: &str| s.lines().map(str::to_string).collect::<Vec<_>>();
    let (a, b) = (lines(&seen[0]), lines(&seen[1]));
    assert_eq!(a.len(), 5, "{a:?}");
    assert_eq!(a[..3], b[..3], "net, ipc and uts are shared");
    assert_eq!(a[4], "busybox-pod");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        a[0],
        host_net.display().to_string(),
        "not the node's network"
    );
    f.release_and_check(uid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_command_is_a_start_error_and_leaves_nothing() {
    let _serial = SERIAL.lock().await;
    let f = fixture();
    let uid = "t-bad-00000001";
    let out = Arc::new(Output::default());
    let err = match f.runtime.start(f.spec(uid, "none", &[], out.clone())).await {
        Ok(_) => panic!("started without a command"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("no command specified"), "{err}");
    f.release_and_check(uid).await;
}

async fn wait_for_output(out: &Output, needle: &str) {
    for _ in 0..600 {
        if out.stdout().contains(needle) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {needle:?} in the output: {:?}", out.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_program_is_a_start_error_and_leaves_nothing() {
    let _serial = SERIAL.lock().await;
    let f = fixture();
    let uid = "t-nobin-000001";
    let out = Arc::new(Output::default());
    let err = match f
        .runtime
        .start(f.spec(uid, "nobin", &["/no/such/program"], out.clone()))
        .await
    {
        Ok(h) => panic!("started: {:?}", h.wait().await),
        Err(e) => e,
    };
    assert!(err.to_string().contains("no/such/program"), "{err}");
    f.release_and_check(uid).await;
}

/// A log writer behind a mutex, as the agent's stderr writer is: the lock a cloned child
/// could inherit while another thread holds it.
struct LockedSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LockedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut sink = self.0.lock().unwrap();
        sink.extend_from_slice(buf);
        if sink.len() > 1 << 20 {
            sink.clear();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Many creates at once while other threads allocate and log at full speed through a
/// subscriber that takes a lock per line (debug level, so libcontainer's own events are
/// enabled too): the conditions under which a cloned child inherits a held lock. Every
/// container must start and end, in time, and leave nothing.
///
/// Not in the default run: about one full suite in six, a container's init process (cloned by
/// libcontainer with raw `clone3`, which skips glibc's fork handlers) inherits a malloc arena
/// lock another thread held and hangs in `malloc` before `exec`. The create watchdog does not
/// cover that stage. The fix is to start containers from a single-threaded helper process
/// (fork + exec) instead of cloning the agent; run this with `cargo test --lib -- --ignored
/// creates_under` to reproduce until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "reproduces a known hang: init cloned while a malloc lock is held (see doc)"]
async fn creates_under_allocation_and_logging_pressure() {
    let _serial = SERIAL.lock().await;
    let sink = Arc::new(Mutex::new(Vec::new()));
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || LockedSink(writer.clone()))
        .finish();
    let _default = tracing::subscriber::set_global_default(subscriber);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noise: Vec<_> = (0..3)
        .map(|n| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut kept: Vec<Vec<u8>> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    kept.push(vec![n as u8; 64 + kept.len() * 97 % 70_000]);
                    if kept.len() > 64 {
                        kept.clear();
                    }
                    tracing::debug!(thread = n, held = kept.len(), "noise");
                }
            })
        })
        .collect();
    let f = Arc::new(fixture());
    let uid = "t-stress-00001";
    let tasks: Vec<_> = (0..24)
        .map(|n| {
            let f = f.clone();
            tokio::spawn(async move {
                let out = Arc::new(Output::default());
                let name = format!("c{n}");
                let spec = f.spec(uid, &name, &["sh", "-c", "echo $$"], out.clone());
                let status = f.run(spec).await;
                (status, out.stdout())
            })
        })
        .collect();
    let results = tokio::time::timeout(Duration::from_secs(240), futures::future::join_all(tasks))
        .await
        .expect("every create finished");
    stop.store(true, Ordering::Relaxed);
    for t in noise {
        t.join().unwrap();
    }
    for r in results {
        let (status, stdout) = r.unwrap();
        assert_eq!(status.exit_code, 0, "{status:?}");
        assert_eq!(stdout, "1\n", "the shell is PID 1 of its own namespace");
    }
    f.release_and_check(uid).await;
}

/// Runs `script` in a container with `security` and returns (exit code, stdout, stderr).
async fn run_secured(
    f: &Fixture,
    uid: &str,
    name: &str,
    security: security::SecurityContext,
    script: &str,
) -> (i32, String, String) {
    let out = Arc::new(Output::default());
    let mut spec = f.spec(uid, name, &["sh", "-c", script], out.clone());
    spec.linux.security = security;
    let status = f.run(spec).await;
    (status.exit_code, out.stdout(), out.stderr())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_context_user_groups_capabilities_and_read_only_root() {
    let _serial = SERIAL.lock().await;
    let f = fixture();
    let uid = "t-secctx-00001";
    let caps = "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status";
    // Defaults: root with Docker's capabilities, privilege escalation allowed.
    let (code, out, err) = run_secured(&f, uid, "default", Default::default(), caps).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "CapEff:\t00000000a80425fb\nNoNewPrivs:\t0\n");
    let user = security::SecurityContext {
        run_as_user: Some(1000),
        run_as_group: Some(2000),
        supplemental_groups: vec![3000],
        run_as_non_root: true,
        allow_privilege_escalation: Some(false),
        ..Default::default()
    };
    let script = format!("id -u; id -g; id -G; {caps}; grep -q ' /proc/sys ' /proc/self/mountinfo");
    let (code, out, err) = run_secured(&f, uid, "user", user, &script).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "1000\n2000\n2000 3000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n"
    );
    let narrow = security::SecurityContext {
        capabilities_drop: vec!["ALL".into()],
        capabilities_add: vec!["NET_BIND_SERVICE".into()],
        read_only_root_filesystem: true,
        ..Default::default()
    };
    let script = format!("{caps}; touch /x && echo writable");
    let (code, out, err) = run_secured(&f, uid, "narrow", narrow, &script).await;
    assert_ne!(code, 0, "wrote to a read-only root: {out}");
    assert_eq!(out, "CapEff:\t0000000000000400\nNoNewPrivs:\t0\n");
    assert!(err.contains("Read-only file system"), "{err}");
    let privileged = security::SecurityContext {
        privileged: true,
        allow_privilege_escalation: Some(false),
        ..Default::default()
    };
    // /proc/sys is a read-only bind mount of its own unless privileged.
    let script = format!("{caps}; grep -q ' /proc/sys ' /proc/self/mountinfo || echo unmasked");
    let (code, out, err) = run_secured(&f, uid, "privileged", privileged, &script).await;
    assert_eq!(code, 0, "{err}");
    // Every capability the agent itself has.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap();
    assert!(
        out.starts_with(&format!("CapEff:{bounding}\nNoNewPrivs:\t0\nunmasked")),
        "{out}"
    );
    f.release_and_check(uid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_as_non_root_refuses_a_root_image() {
    let _serial = SERIAL.lock().await;
    let f = fixture();
    let uid = "t-nonroot-0001";
    let out = Arc::new(Output::default());
    let mut spec = f.spec(uid, "root", &["sh", "-c", "exit 0"], out);
    spec.linux.security.run_as_non_root = true;
    let err = match f.runtime.start(spec).await {
        Ok(h) => panic!("started as root: {:?}", h.wait().await),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("container has runAsNonRoot and image will run as root"),
        "{err}"
    );
    f.release_and_check(uid).await;
}

/// The directory of the one running container of pod `uid` in hierarchy `root`.
fn container_cgroup(f: &Fixture, root: &Path, uid: &str) -> PathBuf {
    let prefix: String = uid.chars().take(13).collect();
    let parent = f.runtime.inner.cgroup_parent.trim_start_matches('/');
    let found: Vec<PathBuf> = read_dir(&root.join(parent))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

fn cgroup_file(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_become_cgroup_v1_limits() {
    let _serial = SERIAL.lock().await;
    let f = fixture_with(RuntimeConfig {
        pids_limit: Some(77),
        cgroup_mode: cgroup::Mode::V1,
        ..RuntimeConfig::default()
    });
    let uid = "t-limits-00001";
    let out = Arc::new(Output::default());
    let mut spec = f.spec(
        uid,
        "limited",
        &["sh", "-c", "echo ready; sleep 600"],
        out.clone(),
    );
    spec.cpu_request_millis = Some(250);
    spec.cpu_limit_millis = Some(500);
    spec.memory_limit_bytes = Some(64 << 20);
    let handle = f.runtime.start(spec).await.expect("start");
    wait_for_output(&out, "ready").await;
    let v1 = Path::new("/sys/fs/cgroup");
    let cpu = container_cgroup(&f, &v1.join("cpu"), uid);
    assert_eq!(cgroup_file(&cpu, "cpu.shares"), "256");
    assert_eq!(cgroup_file(&cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_file(&cpu, "cpu.cfs_period_us"), "100000");
    let memory = container_cgroup(&f, &v1.join("memory"), uid);
    assert_eq!(
        cgroup_file(&memory, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    let pids = container_cgroup(&f, &v1.join("pids"), uid);
    assert_eq!(cgroup_file(&pids, "pids.max"), "77");
    let procs = create::cgroup_procs(&pids);
    assert_eq!(
        procs.len(),
        1,
        "the container in its cgroup (sh execs sleep): {procs:?}"
    );
    let status = handle.stop(Duration::from_millis(200)).await;
    assert_eq!(status.reason, "Killed");
    f.release_and_check(uid).await;
    assert!(!cpu.exists() && !memory.exists() && !pids.exists());
}

/// An agent that dies with a container running leaves it to the next runtime on the same
/// directory, which kills it and removes its cgroups, mounts, state and sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_runtime_cleans_what_an_abandoned_one_left() {
    let _serial = SERIAL.lock().await;
    let f = fixture();
    let uid = "t-abandon-0001";
    let out = Arc::new(Output::default());
    let handle = f
        .runtime
        .start(f.spec(
            uid,
            "left",
            &["sh", "-c", "echo ready; sleep 600"],
            out.clone(),
        ))
        .await
        .expect("start");
    wait_for_output(&out, "ready").await;
    let cgroup_dirs: Vec<PathBuf> = cgroup::directories(&f.runtime.inner.cgroup_parent)
        .into_iter()
        .filter(|d| d.is_dir())
        .collect();
    assert!(!cgroup_dirs.is_empty());
    // The old runtime is abandoned: no stop, no release. A new one takes over the directory.
    let next = ContainerRuntime::new(&f.root).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .expect("the leftover container was killed");
    assert_eq!(status.exit_code, 137, "{status:?}");
    let f = Fixture { runtime: next, ..f };
    f.release_and_check(uid).await;
    for dir in cgroup_dirs {
        assert!(!dir.exists(), "cgroup left: {}", dir.display());
    }
}

/// `shareProcessNamespace`: a container sees the others' processes, also after an earlier
/// (init-like) container of the pod has exited; PID 1 is the sandbox's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_process_namespace_across_containers() {
    let _serial = SERIAL.lock().await;
    let f = fixture();
    let uid = "t-sharepid-001";
    let shared = |mut spec: ContainerSpec| {
        spec.linux.share_process_namespace = true;
        spec
    };
    let out = Arc::new(Output::default());
    let init = f.spec(uid, "init", &["sh", "-c", "echo $$"], out.clone());
    let status = f.run(shared(init)).await;
    assert_eq!(status.exit_code, 0);
    assert_ne!(
        out.stdout(),
        "1\n",
        "PID 1 is the sandbox's, not a container's"
    );
    let app_out = Arc::new(Output::default());
    let app = f.spec(
        uid,
        "app",
        &["sh", "-c", "echo ready; exec sleep 600"],
        app_out.clone(),
    );
    let app = f.runtime.start(shared(app)).await.expect("start");
    wait_for_output(&app_out, "ready").await;
    let look = Arc::new(Output::default());
    let script = "cat /proc/1/comm; for p in /proc/[0-9]*; do cat $p/comm; done";
    let status = f
        .run(shared(f.spec(
            uid,
            "look",
            &["sh", "-c", script],
            look.clone(),
        )))
        .await;
    assert_eq!(status.exit_code, 0, "{}", look.stderr());
    let seen = look.stdout();
    assert!(seen.starts_with("wkube-pause\n"), "{seen}");
    assert!(
        seen.lines().any(|l| l == "sleep"),
        "the app's sleep: {seen}"
    );
    app.stop(Duration::from_millis(200)).await;
    f.release_and_check(uid).await;
}

/// cgroup v2 forced on this hybrid host: the container's process is placed in its own cgroup
/// of the v2 mount; the limits that mount has no controller for are not applied anywhere (and
/// said so), and the cgroup is gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgroup_v2_mode_places_the_container_in_the_unified_hierarchy() {
    let _serial = SERIAL.lock().await;
    let f = fixture_with(RuntimeConfig {
        cgroup_mode: cgroup::Mode::V2,
        ..RuntimeConfig::default()
    });
    let uid = "t-cgroupv2-001";
    let out = Arc::new(Output::default());
    let mut spec = f.spec(
        uid,
        "v2",
        &["sh", "-c", "echo ready; exec sleep 600"],
        out.clone(),
    );
    spec.memory_limit_bytes = Some(64 << 20);
    let handle = f.runtime.start(spec).await.expect("start");
    wait_for_output(&out, "ready").await;
    let unified = Path::new("/sys/fs/cgroup/unified");
    let v2 = container_cgroup(&f, unified, uid);
    let procs = create::cgroup_procs(&v2);
    assert_eq!(procs.len(), 1, "{procs:?}");
    let cgroup_of_proc = std::fs::read_to_string(format!("/proc/{}/cgroup", procs[0])).unwrap();
    assert!(
        cgroup_of_proc.contains(
            &format!("0::{}", v2.strip_prefix(unified).unwrap().display()).replace("0::", "0::/")
        ),
        "{cgroup_of_proc}"
    );
    // Not enforced through v1 behind the mode's back either.
    let memory = container_cgroup(&f, Path::new("/sys/fs/cgroup/memory"), uid);
    assert_ne!(
        cgroup_file(&memory, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    handle.stop(Duration::from_millis(200)).await;
    f.release_and_check(uid).await;
    assert!(!v2.exists(), "v2 cgroup left: {}", v2.display());
}
