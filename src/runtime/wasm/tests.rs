//! Tests of the wasm runtime.
//!
//! The guests are written in WAT. The crate has no WAT-to-binary encoder of its own (the
//! `wat` crate is only reachable through wasmtime's `wat` feature, i.e. `Module::new` on
//! text), so most tests compile their WAT with the runtime's engine and put the artifact in
//! the runtime's compile cache under the image's digest, with the WAT text as the "image
//! file": prepare then loads the artifact, exactly as on a node that compiled the image
//! before, and if it ever compiled the file instead the test would fail with InvalidImage.
//! The compile path itself is tested with a small hand-assembled binary module.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::runtime::logs::{LogFile, LogSink, Stream};
use crate::runtime::{ExitStatus, Mount};

/// `(module (func (export "_start")))`, assembled by hand.
const EMPTY_COMMAND: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // preamble
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
    0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, // export
    0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code: no locals, end
];

const HELLO: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wasm\n")
  (data (i32.const 48) "to stderr\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 48))
    (i32.store (i32.const 4) (i32.const 10))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// Writes its argv strings, then its environment strings, to stdout (NUL-separated, as
/// `args_get`/`environ_get` lay them out).
const ARGS_ENV: &str = r#"
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $args_get (i32.const 1024) (i32.const 4096)))
    (call $write (i32.const 4096) (i32.load (i32.const 20)))
    (drop (call $environ_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $environ_get (i32.const 1024) (i32.const 8192)))
    (call $write (i32.const 8192) (i32.load (i32.const 20)))))
"#;

const EXIT_3: &str = r#"
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 3))))
"#;

const TRAP: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start") unreachable))
"#;

const SPIN: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))
"#;

/// Sleeps an hour in `poll_oneoff` (a relative clock subscription), i.e. waits in the host.
const SLEEP_HOUR: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i64.store8 (i32.const 8) (i64.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
"#;

/// A fixed amount of pure computation (a countdown).
const BUSY_WORK: &str = r#"
(module
  (memory (export "memory") 1)
  (global $sink (mut i32) (i32.const 0))
  (func (export "_start")
    (local $n i32)
    (local.set $n (i32.const 150000000))
    (loop $l
      (global.set $sink (i32.add (global.get $sink) (local.get $n)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n)))))
"#;

/// Grows memory by 1 MiB at a time until refused, then aborts like an allocator would.
const MEMORY_BOMB: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
      (br $l))))
"#;

/// With one (read-only) preopen at fd 3: escaping it with `../..` must fail (else exit 42),
/// creating a file must fail (else exit 43), reading `greeting.txt` must work (else exit
/// 10 + errno); the file's contents go to stdout.
const PREOPEN: &str = r#"
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "greeting.txt")
  (data (i32.const 200) "../../etc/passwd")
  (data (i32.const 240) "new.txt")
  (func $open (param $path i32) (param $len i32) (param $oflags i32) (param $rights i64) (result i32)
    (call $path_open (i32.const 3) (i32.const 0) (local.get $path) (local.get $len)
      (local.get $oflags) (local.get $rights) (i64.const 0) (i32.const 0) (i32.const 300)))
  (func (export "_start")
    (local $errno i32)
    (if (i32.eqz (call $open (i32.const 200) (i32.const 16) (i32.const 0) (i64.const 2)))
      (then (call $exit (i32.const 42))))
    (if (i32.eqz (call $open (i32.const 240) (i32.const 7) (i32.const 1) (i64.const 64)))
      (then (call $exit (i32.const 43))))
    (local.set $errno (call $open (i32.const 100) (i32.const 12) (i32.const 0) (i64.const 2)))
    (if (local.get $errno) (then (call $exit (i32.add (i32.const 10) (local.get $errno)))))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 256))
    (drop (call $fd_read (i32.load (i32.const 300)) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 4) (i32.load (i32.const 8)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

/// A component exporting `wasi:cli/run` whose `run` returns `ok` or `err` per `RESULT`.
const COMPONENT_RUN: &str = r#"
(component
  (core module $m (func (export "run") (result i32) (i32.const RESULT)))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $cli (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $cli)))
"#;

/// Captures a container's output in memory.
#[derive(Default)]
struct MemLog {
    out: Mutex<Vec<u8>>,
    err: Mutex<Vec<u8>>,
    closed: std::sync::atomic::AtomicBool,
}

impl LogSink for MemLog {
    fn write(&self, stream: Stream, bytes: &[u8]) {
        let buf = match stream {
            Stream::Stdout => &self.out,
            Stream::Stderr => &self.err,
        };
        buf.lock().expect("lock").extend_from_slice(bytes);
    }
    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl MemLog {
    fn stdout(&self) -> Vec<u8> {
        self.out.lock().expect("lock").clone()
    }
}

fn runtime(cache: &Path) -> WasmRuntime {
    WasmRuntime::with_config(
        cache,
        WasmRuntimeConfig {
            max_instances: 16,
            max_memory_bytes: 256 << 20,
            guest_threads: Some(2),
        },
    )
    .expect("runtime")
}

/// An image whose compiled form (from WAT) is already in the runtime's cache.
fn wat_image(rt: &WasmRuntime, dir: &Path, name: &str, wat: &str) -> ResolvedImage {
    let digest = format!("sha256:{name}");
    let engine = &rt.inner.engine;
    let artifact = if wat.trim_start().starts_with("(component") {
        wasmtime::component::Component::new(engine, wat)
            .expect("component wat")
            .serialize()
    } else {
        wasmtime::Module::new(engine, wat).expect("wat").serialize()
    }
    .expect("serialize");
    let cached = rt.inner.cache.path_for(&digest).expect("cache path");
    std::fs::write(&cached, artifact).expect("write artifact");
    let wasm_path = dir.join(format!("{name}.wat"));
    std::fs::write(&wasm_path, wat).expect("write image");
    ResolvedImage {
        reference: format!("test/{name}:v1"),
        digest,
        wasm_path,
        container: None,
    }
}

fn binary_image(dir: &Path, name: &str, bytes: &[u8]) -> ResolvedImage {
    let wasm_path = dir.join(format!("{name}.wasm"));
    std::fs::write(&wasm_path, bytes).expect("write image");
    ResolvedImage {
        reference: format!("test/{name}:v1"),
        digest: format!("sha256:{name}"),
        wasm_path,
        container: None,
    }
}

fn spec(image: ResolvedImage, logs: Arc<dyn LogSink>) -> ContainerSpec {
    ContainerSpec {
        pod_uid: "uid-1".into(),
        namespace: "default".into(),
        pod_name: "pod".into(),
        container_name: "main".into(),
        image,
        argv: vec!["prog".into()],
        env: vec![],
        mounts: vec![],
        working_dir: None,
        memory_limit_bytes: None,
        cpu_limit_millis: None,
        cpu_request_millis: None,
        linux: Default::default(),
        logs,
    }
}

async fn run_to_end(rt: &WasmRuntime, spec: ContainerSpec) -> ExitStatus {
    let c = rt.start(spec).await.expect("start");
    tokio::time::timeout(Duration::from_secs(20), c.wait())
        .await
        .expect("container ends")
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    rt: WasmRuntime,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let rt = runtime(&dir.join("cache"));
    Fixture { _tmp: tmp, dir, rt }
}

#[test]
fn detects_wasm_kinds() {
    assert_eq!(is_wasm(EMPTY_COMMAND), Some(WasmKind::Module));
    assert_eq!(
        is_wasm(&[0, 0x61, 0x73, 0x6d, 0x0d, 0, 1, 0]),
        Some(WasmKind::Component)
    );
    assert_eq!(is_wasm(b"\0asm"), None);
    assert_eq!(is_wasm(b"#!/bin/sh\necho hi\n"), None);
    assert_eq!(is_wasm(&[0, 0x61, 0x73, 0x6d, 2, 0, 0, 0]), None);
}

#[tokio::test]
async fn hello_goes_to_the_log_file() {
    let f = fixture();
    let image = wat_image(&f.rt, &f.dir, "hello", HELLO);
    let logs = LogFile::create(&f.dir.join("logs"), 0, 1 << 20, 5).expect("log file");
    let status = run_to_end(&f.rt, spec(image, logs.clone())).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(status.reason, "Completed");
    assert!(status.finished_at >= status.started_at);
    let text = std::fs::read_to_string(logs.path()).expect("log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].ends_with(" stdout F hello from wasm"), "{text}");
    assert!(lines[1].ends_with(" stderr F to stderr"), "{text}");
    assert_eq!(f.rt.compiled_count(), 0, "the cached artifact was used");
}

#[tokio::test]
async fn args_and_env_are_the_specs_only() {
    let f = fixture();
    let image = wat_image(&f.rt, &f.dir, "argsenv", ARGS_ENV);
    let log = Arc::new(MemLog::default());
    let mut s = spec(image, log.clone());
    s.argv = vec!["prog".into(), "--flag".into(), "two words".into()];
    s.env = vec![
        ("GREETING".into(), "hi".into()),
        ("EMPTY".into(), String::new()),
    ];
    let status = run_to_end(&f.rt, s).await;
    assert_eq!(status.reason, "Completed", "{status:?}");
    assert_eq!(
        log.stdout(),
        b"prog\0--flag\0two words\0GREETING=hi\0EMPTY=\0".to_vec()
    );
    assert!(log.closed.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test]
async fn proc_exit_code_is_the_exit_code() {
    let f = fixture();
    let image = wat_image(&f.rt, &f.dir, "exit3", EXIT_3);
    let status = run_to_end(&f.rt, spec(image, Arc::new(MemLog::default()))).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (3, "Error"));
    assert_eq!(status.message, None);
}

#[tokio::test]
async fn trap_is_error_with_the_trap_text() {
    let f = fixture();
    let image = wat_image(&f.rt, &f.dir, "trap", TRAP);
    let status = run_to_end(&f.rt, spec(image, Arc::new(MemLog::default()))).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (1, "Error"));
    let msg = status.message.unwrap_or_default();
    assert!(msg.contains("unreachable"), "{msg}");
}

#[tokio::test]
async fn stop_kills_a_spinning_guest_quickly_and_others_still_run() {
    let f = fixture();
    let spin = wat_image(&f.rt, &f.dir, "spin", SPIN);
    let hello = wat_image(&f.rt, &f.dir, "hello", HELLO);
    let spinner =
        f.rt.start(spec(spin, Arc::new(MemLog::default())))
            .await
            .expect("start");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let log = Arc::new(MemLog::default());
    let status = run_to_end(&f.rt, spec(hello, log.clone())).await;
    assert_eq!(status.reason, "Completed");
    assert_eq!(log.stdout(), b"hello from wasm\n");

    let t = Instant::now();
    let status = spinner.stop(Duration::from_secs(30)).await;
    let took = t.elapsed();
    // Killed at once, not after the 30 s grace period (the bound leaves room for a busy CI box).
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    assert_eq!((status.exit_code, status.reason.as_str()), (137, "Killed"));
    // Everyone gets the same answer, also later.
    assert_eq!(spinner.wait().await, status);
    assert_eq!(spinner.stop(Duration::ZERO).await, status);
}

#[tokio::test]
async fn stop_ends_a_guest_waiting_in_the_host() {
    let f = fixture();
    let image = wat_image(&f.rt, &f.dir, "sleep", SLEEP_HOUR);
    let c =
        f.rt.start(spec(image, Arc::new(MemLog::default())))
            .await
            .expect("start");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let status = c.stop(Duration::from_secs(30)).await;
    // Not the 30 s grace period (the bound leaves room for a busy CI box).
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        t.elapsed()
    );
    assert_eq!((status.exit_code, status.reason.as_str()), (137, "Killed"));
}

#[tokio::test]
async fn stop_after_the_end_returns_the_real_status() {
    let f = fixture();
    let image = wat_image(&f.rt, &f.dir, "exit3", EXIT_3);
    let c =
        f.rt.start(spec(image, Arc::new(MemLog::default())))
            .await
            .expect("start");
    let ended = c.wait().await;
    assert_eq!(c.stop(Duration::ZERO).await, ended);
    assert_eq!(ended.exit_code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guests_do_not_starve_others_or_the_agent() {
    let f = fixture();
    let spin = wat_image(&f.rt, &f.dir, "spin", SPIN);
    let hello = wat_image(&f.rt, &f.dir, "hello", HELLO);
    // More spinners than guest threads (2).
    let mut spinners = Vec::new();
    for i in 0..4 {
        let mut s = spec(spin.clone(), Arc::new(MemLog::default()));
        if i == 0 {
            s.cpu_limit_millis = Some(100);
        }
        spinners.push(f.rt.start(s).await.expect("start"));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The agent's own timers keep their pace.
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        worst = worst.max(t.elapsed());
    }
    // Starved timers would wait for the spinners (forever); a busy machine only delays them.
    assert!(
        worst < Duration::from_secs(2),
        "agent timer late by {worst:?}"
    );
    // Other guests still get their turn.
    let t = Instant::now();
    let status = run_to_end(&f.rt, spec(hello, Arc::new(MemLog::default()))).await;
    assert_eq!(status.reason, "Completed");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "hello took {:?}",
        t.elapsed()
    );
    for s in &spinners {
        assert_eq!(s.stop(Duration::ZERO).await.reason, "Killed");
    }
}

#[tokio::test]
async fn cpu_limit_slows_a_busy_guest_down() {
    let f = fixture();
    let image = wat_image(&f.rt, &f.dir, "busy", BUSY_WORK);
    let t = Instant::now();
    let status = run_to_end(&f.rt, spec(image.clone(), Arc::new(MemLog::default()))).await;
    let free = t.elapsed();
    assert_eq!(status.reason, "Completed");
    let mut s = spec(image, Arc::new(MemLog::default()));
    s.cpu_limit_millis = Some(200);
    let t = Instant::now();
    let status = run_to_end(&f.rt, s).await;
    let limited = t.elapsed();
    assert_eq!(status.reason, "Completed");
    // At 200m it should take ~5x as long; allow a wide margin for noisy machines (and for
    // very fast ones, where the work fits in a few ticks).
    assert!(
        limited >= free * 5 / 2 || free < Duration::from_millis(20),
        "free {free:?}, limited {limited:?}"
    );
}

#[tokio::test]
async fn memory_bomb_is_oom_killed() {
    let f = fixture();
    let image = wat_image(&f.rt, &f.dir, "bomb", MEMORY_BOMB);
    let mut s = spec(image, Arc::new(MemLog::default()));
    s.memory_limit_bytes = Some(16 << 20);
    let status = run_to_end(&f.rt, s).await;
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "OOMKilled"),
        "{status:?}"
    );

    // Without the bomb's limit being reached the same code is not OOM: a tiny program
    // with a limit completes.
    let hello = wat_image(&f.rt, &f.dir, "hello", HELLO);
    let mut s = spec(hello, Arc::new(MemLog::default()));
    s.memory_limit_bytes = Some(16 << 20);
    assert_eq!(run_to_end(&f.rt, s).await.reason, "Completed");
}

#[tokio::test]
async fn initial_memory_over_the_limit_is_oom() {
    let f = fixture();
    let image = wat_image(
        &f.rt,
        &f.dir,
        "big",
        r#"(module (memory 512) (func (export "_start")))"#,
    );
    let mut s = spec(image, Arc::new(MemLog::default()));
    s.memory_limit_bytes = Some(16 << 20);
    let status = run_to_end(&f.rt, s).await;
    assert_eq!(status.reason, "OOMKilled", "{status:?}");
}

#[tokio::test]
async fn preopened_dir_is_readable_and_nothing_else() {
    let f = fixture();
    let vol = f.dir.join("volume");
    std::fs::create_dir_all(&vol).expect("mkdir");
    std::fs::write(vol.join("greeting.txt"), "hi from the volume\n").expect("write");
    let image = wat_image(&f.rt, &f.dir, "preopen", PREOPEN);
    let log = Arc::new(MemLog::default());
    let mut s = spec(image, log.clone());
    s.mounts = vec![Mount {
        host_path: vol.clone(),
        container_path: "/config".into(),
        read_only: true,
    }];
    let status = run_to_end(&f.rt, s).await;
    assert_eq!(status.reason, "Completed", "{status:?} {:?}", log.stdout());
    assert_eq!(log.stdout(), b"hi from the volume\n");
    assert!(!vol.join("new.txt").exists());
}

#[tokio::test]
async fn missing_volume_is_a_create_error() {
    let f = fixture();
    let image = wat_image(&f.rt, &f.dir, "hello", HELLO);
    let mut s = spec(image, Arc::new(MemLog::default()));
    s.mounts = vec![Mount {
        host_path: f.dir.join("does-not-exist"),
        container_path: "/data".into(),
        read_only: false,
    }];
    match f.rt.start(s).await {
        Err(RuntimeError::Create(msg)) => assert!(msg.contains("/data"), "{msg}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("started with a missing volume"),
    }
}

#[tokio::test]
async fn not_wasm_is_an_invalid_image() {
    let f = fixture();
    let image = binary_image(&f.dir, "script", b"#!/bin/sh\necho hello\n");
    match f.rt.prepare(&image).await {
        Err(RuntimeError::InvalidImage(msg)) => {
            assert!(
                msg.contains("not a WebAssembly module or component"),
                "{msg}"
            );
            assert!(msg.contains("#!/bin/sh"), "{msg}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Start says the same, and a later prepare retries rather than caching the failure.
    assert!(matches!(
        f.rt.start(spec(image.clone(), Arc::new(MemLog::default())))
            .await,
        Err(RuntimeError::InvalidImage(_))
    ));
    std::fs::write(&image.wasm_path, EMPTY_COMMAND).expect("rewrite");
    f.rt.prepare(&image).await.expect("prepare after fix");
}

#[tokio::test]
async fn hostile_digest_is_refused() {
    let f = fixture();
    let mut image = binary_image(&f.dir, "empty", EMPTY_COMMAND);
    image.digest = "../../etc/evil".into();
    assert!(matches!(
        f.rt.prepare(&image).await,
        Err(RuntimeError::InvalidImage(_))
    ));
}

#[tokio::test]
async fn reactor_module_is_refused() {
    let f = fixture();
    // The empty command without its export section: a valid module with no `_start`.
    let mut reactor = EMPTY_COMMAND[..18].to_vec();
    reactor.extend_from_slice(&EMPTY_COMMAND[30..]);
    let image = binary_image(&f.dir, "reactor", &reactor);
    match f.rt.prepare(&image).await {
        Err(RuntimeError::InvalidImage(msg)) => assert!(msg.contains("_start"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn compiled_images_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    let image = binary_image(tmp.path(), "empty", EMPTY_COMMAND);
    {
        let rt = runtime(&cache);
        rt.prepare(&image).await.expect("prepare");
        rt.prepare(&image).await.expect("prepare again");
        assert_eq!(rt.compiled_count(), 1);
        assert!(cache.join("sha256:empty.cwasm").is_file());
    }
    // A new runtime (as after an agent restart) loads the artifact instead of compiling.
    let rt = runtime(&cache);
    let status = run_to_end(&rt, spec(image.clone(), Arc::new(MemLog::default()))).await;
    assert_eq!(status.reason, "Completed");
    assert_eq!(rt.compiled_count(), 0);

    // A damaged artifact is replaced by compiling again, not trusted. (Replaced as a new
    // file: the live runtime above has the old one mapped, and truncating a mapped file
    // would fault it — which is why the cache itself only ever renames files into place.)
    let damaged = cache.join("sha256:empty.cwasm");
    std::fs::remove_file(&damaged).expect("remove");
    std::fs::write(&damaged, b"garbage").expect("damage");
    let rt = runtime(&cache);
    rt.prepare(&image).await.expect("prepare");
    assert_eq!(rt.compiled_count(), 1);
}

#[tokio::test]
async fn concurrent_prepares_compile_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(&tmp.path().join("cache"));
    let image = binary_image(tmp.path(), "empty", EMPTY_COMMAND);
    let (a, b) = tokio::join!(rt.prepare(&image), rt.prepare(&image));
    a.expect("a");
    b.expect("b");
    assert_eq!(rt.compiled_count(), 1);
}

#[tokio::test]
async fn components_run_through_wasi_cli_run() {
    let f = fixture();
    let ok = wat_image(&f.rt, &f.dir, "cok", &COMPONENT_RUN.replace("RESULT", "0"));
    let status = run_to_end(&f.rt, spec(ok, Arc::new(MemLog::default()))).await;
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (0, "Completed"),
        "{status:?}"
    );
    let err = wat_image(&f.rt, &f.dir, "cerr", &COMPONENT_RUN.replace("RESULT", "1"));
    let status = run_to_end(&f.rt, spec(err, Arc::new(MemLog::default()))).await;
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (1, "Error"),
        "{status:?}"
    );
}

#[tokio::test]
async fn many_short_lived_instances() {
    let f = fixture();
    let image = wat_image(&f.rt, &f.dir, "hello", HELLO);
    // More runs than pool slots: slots are reused as instances end.
    for _ in 0..40 {
        let status = run_to_end(&f.rt, spec(image.clone(), Arc::new(MemLog::default()))).await;
        assert_eq!(status.reason, "Completed");
    }
}

#[test]
fn cpu_budget_accounting() {
    use super::limits::CpuBudget;
    let ms = Duration::from_millis;
    let close = |a: Duration, b: Duration| a.abs_diff(b) < Duration::from_micros(10);
    assert!(CpuBudget::new(1000).is_none() && CpuBudget::new(4000).is_none());
    let mut b = CpuBudget::new(200).expect("binding limit");
    // Ran 10 ms flat out: owes 8 ms of CPU, paid by pausing 40 ms.
    let p = b.account(ms(10), ms(10));
    assert!(close(p, ms(40)), "{p:?}");
    // Steady state: 10 ms run + the 40 ms pause -> another 40 ms.
    let p = b.account(ms(50), ms(10));
    assert!(close(p, ms(40)), "{p:?}");
    // Overslept by 10 ms: the next pause is shorter by that.
    let p = b.account(ms(60), ms(10));
    assert!(close(p, ms(30)), "{p:?}");
    // A long idle only saves up a limited burst.
    let mut b = CpuBudget::new(500).expect("binding limit");
    assert_eq!(b.account(Duration::from_secs(3600), ms(10)), Duration::ZERO);
    assert_eq!(b.account(ms(90), ms(90)), Duration::ZERO);
    assert!(b.account(ms(200), ms(200)) > Duration::ZERO);
    // Tiny limits are capped per pause.
    let mut b = CpuBudget::new(1).expect("binding limit");
    assert_eq!(b.account(ms(500), ms(500)), Duration::from_secs(1));
}

#[test]
fn runtime_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert_eq!(runtime(tmp.path()).name(), "wasmtime");
}
