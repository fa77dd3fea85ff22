//! End-to-end: the controllers run as their own process against a control plane started with
//! `--no-controllers`, and stop cleanly on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, Cluster};

const RS: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: elsewhere}
spec:
  replicas: 3
  selector: {matchLabels: {app: elsewhere}}
  template:
    metadata: {labels: {app: elsewhere}}
    spec:
      containers: [{name: main, image: wkube.local/absent:v1}]
"#;

fn pod_count(c: &Cluster) -> usize {
    c.ok(&["get", "pods", "-l", "app=elsewhere", "-o", "name"])
        .lines()
        .count()
}

#[test]
fn controllers_run_in_their_own_process() {
    let c = Cluster::start_with(&["--no-agent", "--no-controllers"]);
    c.ok_stdin(&["apply", "-f", "-"], RS);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pod_count(&c), 0, "no controller should be running yet");

    let mut manager = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args(["controller-manager", "--kubeconfig"])
        .arg(c.kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start wkube controller-manager");
    eventually(Duration::from_secs(30), || {
        (pod_count(&c) == 3).then_some(())
    });
    let rs = c.ok(&[
        "get",
        "rs",
        "elsewhere",
        "-o",
        "jsonpath={.status.replicas}",
    ]);
    assert_eq!(rs, "3");

    // SIGTERM: the manager stops its controllers and exits 0.
    // SAFETY: kill(2) on a child this test owns.
    unsafe { libc::kill(manager.id() as i32, libc::SIGTERM) };
    let status = manager.wait().expect("wait for the manager");
    assert!(status.success(), "controller manager exited with {status}");
    let mut out = String::new();
    std::io::Read::read_to_string(manager.stdout.as_mut().expect("stdout"), &mut out).ok();
    assert!(
        out.contains("controller manager running against https://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("controller manager stopped"), "{out}");
}

#[test]
fn a_bad_kubeconfig_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_wkube"))
        .args([
            "controller-manager",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ])
        .output()
        .expect("run wkube");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reading /nonexistent/kubeconfig"), "{err}");
}
