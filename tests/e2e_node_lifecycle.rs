//! End-to-end: a node whose agent dies turns unreachable and its pods are evicted once their
//! tolerations run out.

mod common;

use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

fn get(c: &Cluster, args: &[&str]) -> Value {
    let out = c.kubectl(args);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn pod(name: &str, tolerations: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  {tolerations}
  containers:
    - name: main
      image: wkube.local/absent:v1
      imagePullPolicy: Never
"#
    )
}

#[test]
fn pods_leave_a_node_whose_agent_died() {
    let c = Cluster::start_with(&["--no-agent", "--node-monitor-grace-period", "3"]);
    let agent = c.join_agent("node-a", &["--lease-renew-interval", "0.5"]);
    eventually(Duration::from_secs(30), || {
        let n = get(&c, &["get", "node", "node-a", "-o", "json"]);
        n["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .then_some(())
    });
    c.ok_stdin(&["apply", "-f", "-"], &pod("impatient", r#"tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}]"#));
    c.ok_stdin(&["apply", "-f", "-"], &pod("patient", ""));
    for name in ["impatient", "patient"] {
        eventually(Duration::from_secs(30), || {
            get(&c, &["get", "pod", name, "-o", "json"])["spec"]["nodeName"]
                .as_str()
                .map(str::to_string)
        });
    }
    // Defaults as upstream's DefaultTolerationSeconds admission adds them.
    let patient = get(&c, &["get", "pod", "patient", "-o", "json"]);
    assert!(
        patient["spec"]["tolerations"].as_array().is_some_and(|ts| {
            ts.iter().any(|t| {
                t["key"] == "node.kubernetes.io/unreachable" && t["tolerationSeconds"] == 300
            })
        }),
        "{patient}"
    );

    // A live agent keeps the node reachable well past the grace period.
    std::thread::sleep(Duration::from_secs(5));
    let node = get(&c, &["get", "node", "node-a", "-o", "json"]);
    assert!(
        node["spec"]["taints"].is_null() || node["spec"]["taints"] == Value::Array(vec![]),
        "{node}"
    );
    let impatient = get(&c, &["get", "pod", "impatient", "-o", "json"]);
    assert!(
        impatient["metadata"]["deletionTimestamp"].is_null(),
        "{impatient}"
    );

    drop(agent);
    let node = eventually(Duration::from_secs(60), || {
        let n = get(&c, &["get", "node", "node-a", "-o", "json"]);
        let tainted = n["spec"]["taints"].as_array().is_some_and(|ts| {
            ts.iter()
                .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute")
        });
        tainted.then_some(n)
    });
    let ready = node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(ready["status"], "Unknown", "{node}");
    // The pod that tolerates 1 s is evicted; the one with the default 300 s stays.
    eventually(Duration::from_secs(60), || {
        let p = get(&c, &["get", "pod", "impatient", "-o", "json"]);
        (p.is_null() || p["metadata"]["deletionTimestamp"].is_string()).then_some(())
    });
    let patient = get(&c, &["get", "pod", "patient", "-o", "json"]);
    assert!(
        patient["metadata"]["deletionTimestamp"].is_null(),
        "{patient}"
    );
}
