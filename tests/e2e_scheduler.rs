//! End-to-end: the scheduler places pods over several `wkube agent` nodes.

mod common;

use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

fn get(c: &Cluster, args: &[&str]) -> Value {
    let out = c.kubectl(args);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn ready_nodes(c: &Cluster) -> usize {
    let nodes = get(c, &["get", "nodes", "-o", "json"]);
    nodes["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|n| {
                    n["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

fn pod(name: &str, selector: &str, memory: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  nodeSelector: {selector}
  containers:
    - name: main
      image: wkube.local/absent:v1
      imagePullPolicy: Never
      resources:
        requests: {{memory: {memory}}}
"#
    )
}

#[test]
fn pods_land_where_they_fit_and_wait_when_nothing_does() {
    let c = Cluster::start_with(&["--no-agent"]);
    let _a = c.join_agent("node-a", &["--memory", "2Gi", "--node-label", "zone=a"]);
    let _b = c.join_agent("node-b", &["--memory", "2Gi", "--node-label", "zone=b"]);
    let _c = c.join_agent("node-c", &["--memory", "4Gi", "--node-label", "zone=c"]);
    eventually(Duration::from_secs(30), || {
        (ready_nodes(&c) == 3).then_some(())
    });
    let nodes = c.ok(&["get", "nodes"]);
    assert!(
        nodes.contains("node-a") && nodes.contains("Ready"),
        "{nodes}"
    );

    c.ok_stdin(&["apply", "-f", "-"], &pod("in-b", "{zone: b}", "100Mi"));
    let placed = eventually(Duration::from_secs(30), || {
        let p = get(&c, &["get", "pod", "in-b", "-o", "json"]);
        p["spec"]["nodeName"].as_str().map(str::to_string)
    });
    assert_eq!(placed, "node-b");

    c.ok_stdin(&["apply", "-f", "-"], &pod("huge", "{}", "64Gi"));
    let message = eventually(Duration::from_secs(30), || {
        let p = get(&c, &["get", "pod", "huge", "-o", "json"]);
        p["status"]["conditions"]
            .as_array()
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
            })
            .and_then(|c| c["message"].as_str().map(str::to_string))
    });
    assert!(
        message.starts_with("0/3 nodes are available: 3 Insufficient memory."),
        "{message}"
    );
    let described = c.ok(&["describe", "pod", "huge"]);
    assert!(described.contains("FailedScheduling"), "{described}");

    // A bigger node joins: the waiting pod is retried and lands there.
    let _big = c.join_agent("node-big", &["--memory", "128Gi"]);
    let placed = eventually(Duration::from_secs(60), || {
        let p = get(&c, &["get", "pod", "huge", "-o", "json"]);
        p["spec"]["nodeName"].as_str().map(str::to_string)
    });
    assert_eq!(placed, "node-big");
}
