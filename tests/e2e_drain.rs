//! End-to-end: `kubectl drain` evicts a node's pods through `pods/eviction`, one disruption at a
//! time as their PodDisruptionBudget allows, and stops at a budget that allows none.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn json(c: &Cluster, args: &[&str]) -> Value {
    let out = c.kubectl(args);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: web
          image: wkube.local/hello-rust:v1
          args: ["--tick", "1"]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: web}}
"#;

/// (node, ready) of the live pods of the Deployment.
fn web_pods(c: &Cluster) -> Vec<(String, bool)> {
    let list = json(c, &["get", "pods", "-l", "app=web", "-o", "json"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            (
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                ready,
            )
        })
        .collect()
}

fn allowed_disruptions(c: &Cluster) -> i64 {
    json(c, &["get", "pdb", "web", "-o", "json"])["status"]["disruptionsAllowed"]
        .as_i64()
        .unwrap_or(-1)
}

#[test]
fn drain_evicts_within_the_disruption_budget() {
    let c = Cluster::start_with(&["--no-agent"]);
    c.import_examples_for_agent("node-a");
    c.import_examples_for_agent("node-b");
    let _a = c.join_agent("node-a", &[]);
    let _b = c.join_agent("node-b", &[]);
    eventually(WAIT, || {
        (c.ok(&["get", "nodes", "-o", "name"]).lines().count() == 2).then_some(())
    });
    // Everything starts on node-a.
    c.ok(&["cordon", "node-b"]);
    c.ok_stdin(&["apply", "-f", "-"], WEB);
    eventually(WAIT, || {
        let pods = web_pods(&c);
        (pods.len() == 2 && pods.iter().all(|(n, r)| n == "node-a" && *r)).then_some(())
    });
    eventually(WAIT, || (allowed_disruptions(&c) == 1).then_some(()));
    let table = c.ok(&["get", "pdb", "web"]);
    assert!(
        table.contains("MIN AVAILABLE") && table.contains("ALLOWED DISRUPTIONS"),
        "{table}"
    );

    // While node-a drains, at least one web pod stays ready at every moment.
    c.ok(&["uncordon", "node-b"]);
    let stop = Arc::new(AtomicBool::new(false));
    let lowest_ready = {
        let stop = stop.clone();
        let kubeconfig = c.kubeconfig();
        std::thread::spawn(move || {
            let mut lowest = usize::MAX;
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new(common::kubectl_path())
                    .args(["get", "pods", "-l", "app=web", "-o", "json", "--kubeconfig"])
                    .arg(&kubeconfig)
                    .output()
                    .expect("kubectl");
                let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                let ready = list["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| {
                        p["status"]["conditions"].as_array().is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                    })
                    .count();
                if out.status.success() {
                    lowest = lowest.min(ready);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            lowest
        })
    };
    let drained = c.ok(&[
        "drain",
        "node-a",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=120s",
    ]);
    assert!(drained.contains("evicted"), "{drained}");
    assert!(drained.contains("node/node-a drained"), "{drained}");
    eventually(WAIT, || {
        let pods = web_pods(&c);
        (pods.len() == 2 && pods.iter().all(|(n, r)| n == "node-b" && *r)).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let lowest = lowest_ready.join().expect("watcher");
    assert!(
        lowest >= 1,
        "the budget allowed all pods down at once ({lowest} ready)"
    );
    let node = json(&c, &["get", "node", "node-a", "-o", "json"]);
    assert_eq!(node["spec"]["unschedulable"], true, "{node}");

    // A budget that allows nothing stops the drain, with the budget's reason.
    c.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":2}}"#,
    ]);
    eventually(WAIT, || (allowed_disruptions(&c) == 0).then_some(()));
    let out = c.kubectl(&["drain", "node-b", "--timeout=8s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain succeeded against the budget");
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{stderr}"
    );
    assert_eq!(
        web_pods(&c).len(),
        2,
        "a pod was evicted despite the budget"
    );
}

#[test]
fn evicting_a_pod_that_is_not_running_deletes_it_at_once() {
    let c = Cluster::start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata: {name: waiting, labels: {app: waiting}}
spec:
  containers: [{name: main, image: wkube.local/absent:v1}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: strict}
spec:
  maxUnavailable: 0
  selector: {matchLabels: {app: waiting}}
"#,
    );
    // Unscheduled (no agent): Pending pods are not protected, as upstream.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        use k8s_openapi::api::core::v1::Pod;
        let client = c.client().await;
        let pods: kube::Api<Pod> = kube::Api::default_namespaced(client);
        pods.evict("waiting", &Default::default())
            .await
            .expect("evict a pending pod");
        let err = pods
            .evict("absent", &Default::default())
            .await
            .expect_err("no such pod");
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 404),
            "{err}"
        );
    });
    let out = c.kubectl(&["get", "pod", "waiting"]);
    assert!(!out.status.success(), "the pod is still there");
}
