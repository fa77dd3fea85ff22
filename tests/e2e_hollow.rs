//! End-to-end: `wkube agent --hollow N` registers simulated nodes across zones that play their
//! pods' lifecycle without running anything, so scale can be tested on one machine.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&c.ok(&all)).unwrap_or(Value::Null)
}

const FLEET: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: fleet}
spec:
  replicas: 30
  selector: {matchLabels: {app: fleet}}
  template:
    metadata: {labels: {app: fleet}}
    spec:
      containers: [{name: main, image: registry.invalid/never-pulled:v1}]
"#;

const SHORT_LIVED: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: short-lived
  annotations: {wkube.dev/hollow-run-seconds: "0.5", wkube.dev/hollow-exit-code: "3"}
spec:
  restartPolicy: Never
  nodeSelector: {wkube.dev/hollow: "true"}
  containers: [{name: main, image: registry.invalid/never-pulled:v1}]
"#;

#[test]
fn hollow_nodes_register_across_zones_and_play_pod_lifecycles() {
    let c = Cluster::start_with(&["--no-agent"]);
    let _fleet = c.join_agent(
        "hollow",
        &["--hollow", "30", "--hollow-zones", "3", "--cpus", "2"],
    );
    let nodes = eventually(WAIT, || {
        let nodes = json(&c, &["get", "nodes", "-l", "wkube.dev/hollow=true"]);
        let items = nodes["items"].as_array().cloned().unwrap_or_default();
        let ready = items.iter().all(|n| {
            n["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        });
        (items.len() == 30 && ready).then_some(items)
    });
    let zone_of: BTreeMap<String, String> = nodes
        .iter()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                n["metadata"]["labels"]["topology.kubernetes.io/zone"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(zone_of["hollow-4"], "zone-1");
    assert_eq!(nodes[0]["status"]["allocatable"]["cpu"], "2000m");

    c.ok_stdin(&["apply", "-f", "-"], FLEET);
    let placed = eventually(WAIT, || {
        let pods = json(&c, &["get", "pods", "-l", "app=fleet"]);
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        let running: Vec<String> = items
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            .collect();
        (running.len() == 30).then_some(running)
    });
    let mut per_zone: BTreeMap<&str, usize> = BTreeMap::new();
    for node in &placed {
        *per_zone.entry(zone_of[node].as_str()).or_default() += 1;
    }
    assert_eq!(per_zone.len(), 3, "pods in every zone: {per_zone:?}");
    eventually(WAIT, || {
        let d = json(&c, &["get", "deployment", "fleet"]);
        (d["status"]["readyReplicas"] == 30).then_some(())
    });

    // A pod that "runs" half a second and exits 3.
    c.ok_stdin(&["apply", "-f", "-"], SHORT_LIVED);
    let pod = eventually(WAIT, || {
        let p = json(&c, &["get", "pod", "short-lived"]);
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3,
        "{pod}"
    );

    // Deleted pods go at once, as a kubelet would remove them after stopping.
    c.ok(&["delete", "deployment", "fleet"]);
    eventually(WAIT, || {
        let pods = json(&c, &["get", "pods", "-l", "app=fleet"]);
        pods["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    });
}
