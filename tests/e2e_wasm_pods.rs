//! End-to-end: wasm pods on `wkube up`'s own node, driven by the real kubectl.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

fn start() -> Cluster {
    let c = Cluster::start_with(&["--restart-backoff", "1", "--node-name", "node-a"]);
    c.import_examples();
    c
}

use common::wasm_examples;

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

#[test]
fn an_agent_restart_neither_loses_nor_reruns_pods() {
    let mut c = start();
    let mut always = pod("ticker", &["--tick", "0.5"], "", "");
    always = always.replace("restartPolicy: Never", "restartPolicy: Always");
    c.ok_stdin(&["apply", "-f", "-"], &always);
    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod("once", &["--sleep", "600"], "", ""),
    );
    c.ok_stdin(&["apply", "-f", "-"], &pod("done", &[], "", ""));
    wait_phase(&c, "ticker", "Running");
    wait_phase(&c, "once", "Running");
    let done = wait_phase(&c, "done", "Succeeded");
    let finished_at =
        done["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"].clone();

    // The whole process dies (SIGKILL): the wasm instances die with it.
    c.restart();

    // Restartable pods come back with one more restart.
    let ticker = eventually(Duration::from_secs(60), || {
        let p = pod_json(&c, "ticker");
        let cs = &p["status"]["containerStatuses"][0];
        (cs["restartCount"].as_u64() >= Some(1) && cs["state"]["running"].is_object()).then_some(p)
    });
    assert_eq!(ticker["status"]["phase"], "Running");
    // A restartPolicy=Never pod is not run a second time: it is reported lost.
    let once = wait_phase(&c, "once", "Failed");
    let t = &once["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "ContainerStatusUnknown", "{once}");
    // A finished pod stays as it was.
    let done = pod_json(&c, "done");
    assert_eq!(done["status"]["phase"], "Succeeded");
    assert_eq!(
        done["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"],
        finished_at
    );
    assert_eq!(done["status"]["containerStatuses"][0]["restartCount"], 0);
}

#[test]
fn kubectl_get_pods_watch_shows_the_lifecycle() {
    let c = start();
    let mut watcher = Command::new(common::kubectl_path())
        .args(["get", "pods", "-w"])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl get pods -w");
    let mut stdout = watcher.stdout.take().expect("stdout");
    std::thread::sleep(Duration::from_millis(500));
    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod("short", &["--sleep", "1"], "", ""),
    );
    wait_phase(&c, "short", "Succeeded");
    std::thread::sleep(Duration::from_millis(500));
    let _ = watcher.kill();
    let _ = watcher.wait();
    let mut seen = String::new();
    use std::io::Read as _;
    let _ = stdout.read_to_string(&mut seen);
    let statuses: Vec<&str> = seen
        .lines()
        .filter(|l| l.starts_with("short"))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert!(statuses.contains(&"Pending"), "{seen}");
    assert!(statuses.contains(&"Running"), "{seen}");
    assert_eq!(statuses.last(), Some(&"Completed"), "{seen}");
}

#[test]
fn pods_pull_wasm_images_from_a_registry() {
    let registry = common::registry::Registry::start();
    let host = registry.host();
    let c = start();
    let dir = wasm_examples();
    // One image pushed by wkube itself, one by skopeo.
    let c_wasm = dir.join("hello-c.wasm").to_string_lossy().to_string();
    let out = c.wkube(&["image", "push", &c_wasm, &format!("{host}/demo/hello-c:v1")]);
    assert!(
        out.status.success(),
        "wkube image push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rust_wasm = std::fs::read(dir.join("hello-rust.wasm")).expect("hello-rust.wasm");
    common::registry::skopeo_push_wasm(&rust_wasm, &format!("{host}/demo/hello-skopeo:v1"));

    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: pulled-c}}
spec:
  restartPolicy: Never
  containers: [{{name: main, image: "{host}/demo/hello-c:v1", env: [{{name: GREETING, value: from-registry}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: pulled-skopeo}}
spec:
  restartPolicy: Never
  containers: [{{name: main, image: "{host}/demo/hello-skopeo:v1", args: ["from", "skopeo"]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: missing}}
spec:
  restartPolicy: Never
  containers: [{{name: main, image: "{host}/demo/nothing-here:v1"}}]
"#
    );
    c.ok_stdin(&["apply", "-f", "-"], &manifest);
    wait_phase(&c, "pulled-c", "Succeeded");
    let logs = c.ok(&["logs", "pulled-c"]);
    assert!(logs.contains("GREETING=from-registry"), "{logs}");
    wait_phase(&c, "pulled-skopeo", "Succeeded");
    let logs = c.ok(&["logs", "pulled-skopeo"]);
    assert!(
        logs.contains(r#"["hello-skopeo.wasm", "from", "skopeo"]"#),
        "{logs}"
    );
    let described = c.ok(&["describe", "pod", "pulled-skopeo"]);
    assert!(
        described.contains("Pulling") && described.contains("Successfully pulled image"),
        "{described}"
    );
    // A tag the registry does not have: ErrImagePull / ImagePullBackOff with its message.
    let waiting = eventually(Duration::from_secs(30), || {
        let p = pod_json(&c, "missing");
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        matches!(
            w["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
        .then_some(w)
    });
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or("")
            .contains("manifest unknown"),
        "{waiting}"
    );
}
