//! End-to-end: wasm pods on `wkube up`'s own node, driven by the real kubectl.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

/// Builds the example workloads once (examples/build.sh) and returns their directory.
fn wasm_examples() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/build.sh");
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("run examples/build.sh");
    assert!(
        out.status.success(),
        "examples/build.sh failed (it needs `rustup target add wasm32-wasip1 wasm32-wasip2` and clang + wasi-libc; the README's test command installs them):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn start() -> Cluster {
    let c = Cluster::start_with(&["--restart-backoff", "1", "--node-name", "node-a"]);
    let dir = wasm_examples();
    let data = c.data_dir.to_string_lossy().to_string();
    for (file, name) in [
        ("hello-rust.wasm", "wkube.local/hello-rust:v1"),
        ("hello-component.wasm", "wkube.local/hello-component:v1"),
        ("hello-c.wasm", "wkube.local/hello-c:v1"),
    ] {
        let path = dir.join(file).to_string_lossy().to_string();
        let out = c.wkube(&[
            "image",
            "import",
            &path,
            "--name",
            name,
            "--data-dir",
            &data,
        ]);
        assert!(
            out.status.success(),
            "import {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    c
}

fn pod_json(c: &Cluster, name: &str) -> Value {
    let out = c.kubectl(&["get", "pod", name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn wait_phase(c: &Cluster, name: &str, phase: &str) -> Value {
    eventually(Duration::from_secs(60), || {
        let p = pod_json(c, name);
        (p["status"]["phase"] == phase).then_some(p)
    })
}

fn pod(name: &str, args: &[&str], extra_container: &str, extra_spec: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  {extra_spec}
  containers:
    - name: main
      image: wkube.local/hello-rust:v1
      imagePullPolicy: Never
      args: [{}]
      {extra_container}
"#,
        args.join(", ")
    )
}

#[test]
fn hello_pod_runs_and_its_logs_and_events_show() {
    let c = start();
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello-wasm.yaml");
    c.ok(&["apply", "-f", manifest]);
    let p = wait_phase(&c, "hello", "Succeeded");
    assert_eq!(p["spec"]["nodeName"], "node-a");
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["terminated"]["reason"], "Completed", "{p}");
    assert!(
        cs["imageID"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{cs}"
    );
    let logs = c.ok(&["logs", "hello"]);
    assert!(logs.contains("hello from wasm!"), "{logs}");
    assert!(
        logs.contains("env GREETING=Hello from a configMap volume"),
        "{logs}"
    );
    assert!(logs.contains("env POD_NAME=hello"), "{logs}");
    assert!(
        logs.contains("/config/greeting: Hello from a configMap volume"),
        "{logs}"
    );
    let table = c.ok(&["get", "pods"]);
    assert!(table.contains("Completed"), "{table}");
    let described = c.ok(&["describe", "pod", "hello"]);
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(
            described.contains(reason),
            "describe lacks {reason}: {described}"
        );
    }
}

#[test]
fn components_and_c_programs_run_too() {
    let c = start();
    c.ok(&[
        "apply",
        "-f",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hello-component.yaml"),
    ]);
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hello-c}
spec:
  restartPolicy: Never
  containers:
    - name: hello
      image: wkube.local/hello-c:v1
      imagePullPolicy: Never
      env: [{name: GREETING, value: hi}, {name: EXIT_CODE, value: "3"}]
"#,
    );
    wait_phase(&c, "hello-component", "Succeeded");
    let logs = c.ok(&["logs", "hello-component"]);
    assert!(
        logs.contains("hello from a wasm component!")
            && logs.contains("GREETING=hello from a component"),
        "{logs}"
    );
    let p = wait_phase(&c, "hello-c", "Failed");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    let logs = c.ok(&["logs", "hello-c"]);
    assert!(
        logs.contains("hello from C compiled to wasm") && logs.contains("GREETING=hi"),
        "{logs}"
    );
}

#[test]
fn crash_looping_pods_back_off_and_count_restarts() {
    let c = start();
    c.ok(&[
        "apply",
        "-f",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/crashloop.yaml"),
    ]);
    let mut saw_backoff = false;
    let p = eventually(Duration::from_secs(60), || {
        let p = pod_json(&c, "crashloop");
        let cs = &p["status"]["containerStatuses"][0];
        if cs["state"]["waiting"]["reason"] == "CrashLoopBackOff" {
            saw_backoff = true;
        }
        (cs["restartCount"].as_u64().unwrap_or(0) >= 2 && saw_backoff).then_some(p)
    });
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1, "{cs}");
    assert_eq!(p["status"]["phase"], "Running");
    let previous = c.ok(&["logs", "crashloop", "--previous"]);
    assert!(previous.contains("hello from wasm!"), "{previous}");
}

#[test]
fn hostile_pods_get_clear_statuses_and_the_node_keeps_serving() {
    let c = start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod("spinner", &["--spin"], "", "activeDeadlineSeconds: 2"),
    );
    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod(
            "bomb",
            &["--alloc", "256"],
            "resources: {limits: {memory: 32Mi}}",
            "",
        ),
    );
    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod("snoop", &["--read", "/etc/passwd"], "", ""),
    );
    // A pod next to them still runs to completion.
    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod("bystander", &["--sleep", "1"], "", ""),
    );

    let spinner = wait_phase(&c, "spinner", "Failed");
    assert_eq!(spinner["status"]["reason"], "DeadlineExceeded", "{spinner}");
    let bomb = wait_phase(&c, "bomb", "Failed");
    assert_eq!(
        bomb["status"]["containerStatuses"][0]["state"]["terminated"]["reason"], "OOMKilled",
        "{bomb}"
    );
    let snoop = wait_phase(&c, "snoop", "Failed");
    assert_eq!(
        snoop["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        2
    );
    let logs = c.ok(&["logs", "snoop"]);
    assert!(logs.contains("cannot read /etc/passwd"), "{logs}");
    assert!(
        !logs.contains("root:"),
        "a wasm pod read a host file: {logs}"
    );
    wait_phase(&c, "bystander", "Succeeded");

    // An image that is not wasm at all.
    let junk = c.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"#!/bin/sh\necho not wasm\n").expect("write junk");
    let data = c.data_dir.to_string_lossy().to_string();
    let out = c.wkube(&[
        "image",
        "import",
        junk.to_str().expect("path"),
        "--name",
        "wkube.local/junk:v1",
        "--data-dir",
        &data,
    ]);
    assert!(!out.status.success(), "importing a non-wasm file must fail");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("wasm"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deleting_a_long_running_pod_finishes_within_its_grace_period() {
    let c = start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod("sleeper", &["--tick", "0.2"], "", ""),
    );
    wait_phase(&c, "sleeper", "Running");
    // logs -f streams while the pod runs.
    let mut follow = Command::new(common::kubectl_path())
        .args(["logs", "-f", "sleeper"])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let mut stdout = follow.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::Read as _;
        let mut buf = vec![0u8; 65536];
        let mut all = String::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || all.contains("tick 5") {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        all
    });
    let streamed = reader.join().expect("reader");
    assert!(
        streamed.contains("tick 1") && streamed.contains("tick 5"),
        "{streamed}"
    );
    let started = std::time::Instant::now();
    c.ok(&["delete", "pod", "sleeper", "--timeout=30s"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "delete took {:?}",
        started.elapsed()
    );
    let _ = follow.kill();
    let _ = follow.wait();
    let out = c.kubectl(&["get", "pod", "sleeper"]);
    assert!(!out.status.success(), "the pod object is gone");
}
