//! End-to-end: a DaemonSet runs one pod on every eligible node, follows nodes as they join,
//! and rolls a new template out.

mod common;

use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

fn pods_by_node(c: &Cluster) -> Vec<(String, String)> {
    let out = c.kubectl(&["get", "pods", "-l", "app=agent-daemon", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut v: Vec<(String, String)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            (
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                p["spec"]["containers"][0]["args"][1]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

const DS: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent-daemon}
spec:
  selector: {matchLabels: {app: agent-daemon}}
  template:
    metadata: {labels: {app: agent-daemon}}
    spec:
      nodeSelector: {daemons: "yes"}
      containers:
        - name: main
          image: wkube.local/absent:v1
          imagePullPolicy: Never
          args: ["--tick", "ONE"]
"#;

#[test]
fn one_pod_per_eligible_node_and_rolling_updates() {
    let c = Cluster::start_with(&["--no-agent"]);
    let _a = c.join_agent("node-a", &["--node-label", "daemons=yes"]);
    let _b = c.join_agent("node-b", &["--node-label", "daemons=no"]);
    eventually(Duration::from_secs(30), || {
        let out = c.ok(&["get", "nodes", "-o", "name"]);
        (out.lines().count() == 2).then_some(())
    });
    c.ok_stdin(&["apply", "-f", "-"], DS);
    let want = vec![("node-a".to_string(), "ONE".to_string())];
    eventually(Duration::from_secs(30), || {
        (pods_by_node(&c) == want).then_some(())
    });

    // A node that joins later gets its pod.
    let _c = c.join_agent("node-c", &["--node-label", "daemons=yes"]);
    let want = vec![
        ("node-a".to_string(), "ONE".to_string()),
        ("node-c".to_string(), "ONE".to_string()),
    ];
    eventually(Duration::from_secs(60), || {
        (pods_by_node(&c) == want).then_some(())
    });
    let ds: Value =
        serde_json::from_str(&c.ok(&["get", "ds", "agent-daemon", "-o", "json"])).expect("json");
    assert_eq!(ds["status"]["desiredNumberScheduled"], 2, "{ds}");

    // A template change replaces every pod.
    c.ok_stdin(&["apply", "-f", "-"], &DS.replace("ONE", "TWO"));
    let want = vec![
        ("node-a".to_string(), "TWO".to_string()),
        ("node-c".to_string(), "TWO".to_string()),
    ];
    eventually(Duration::from_secs(60), || {
        (pods_by_node(&c) == want).then_some(())
    });
}
