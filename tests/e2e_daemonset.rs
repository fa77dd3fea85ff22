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

const EVERYWHERE: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: everywhere}
spec:
  selector: {matchLabels: {app: everywhere}}
  template:
    metadata: {labels: {app: everywhere}}
    spec:
      containers:
        - name: main
          image: wkube.local/hello-rust:v1
          args: ["--tick", "1"]
"#;

/// Nodes with a running, ready pod of the `everywhere` DaemonSet, sorted.
fn nodes_running_daemon(c: &Cluster) -> Vec<String> {
    let out = c.kubectl(&["get", "pods", "-l", "app=everywhere", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut nodes: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter(|p| {
            p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect();
    nodes.sort();
    nodes
}

#[test]
fn a_daemon_runs_on_all_three_agents_and_on_a_fourth_that_joins() {
    let c = Cluster::start_with(&["--no-agent"]);
    let names = ["node-a", "node-b", "node-c", "node-d"];
    for n in names {
        c.import_examples_for_agent(n);
    }
    let _three: Vec<_> = names[..3].iter().map(|n| c.join_agent(n, &[])).collect();
    eventually(Duration::from_secs(30), || {
        (c.ok(&["get", "nodes", "-o", "name"]).lines().count() == 3).then_some(())
    });
    c.ok_stdin(&["apply", "-f", "-"], EVERYWHERE);
    eventually(Duration::from_secs(60), || {
        (nodes_running_daemon(&c) == names[..3]).then_some(())
    });
    let _fourth = c.join_agent("node-d", &[]);
    eventually(Duration::from_secs(60), || {
        (nodes_running_daemon(&c) == names).then_some(())
    });
    let ds = eventually(Duration::from_secs(30), || {
        let ds: Value =
            serde_json::from_str(&c.ok(&["get", "ds", "everywhere", "-o", "json"])).ok()?;
        (ds["status"]["numberReady"] == 4).then_some(ds)
    });
    assert_eq!(ds["status"]["desiredNumberScheduled"], 4, "{ds}");
    assert_eq!(ds["status"]["currentNumberScheduled"], 4, "{ds}");
    assert_eq!(ds["status"]["numberMisscheduled"], 0, "{ds}");
}
