//! End-to-end placement rules on hollow nodes: topology spread constraints and inter-pod
//! anti-affinity, as kubectl users write them.

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

/// Node name -> zone of every node.
fn zones(c: &Cluster) -> BTreeMap<String, String> {
    let nodes = json(c, &["get", "nodes"]);
    nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["metadata"]["name"].as_str().unwrap_or("").to_string(),
                n["metadata"]["labels"]["topology.kubernetes.io/zone"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

/// (node, phase) of the pods with `app=<app>`.
fn pods(c: &Cluster, app: &str) -> Vec<(String, String)> {
    let list = json(c, &["get", "pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                p["status"]["phase"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

const SPREAD: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 30
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: DoNotSchedule
          labelSelector: {matchLabels: {app: spread}}
      containers: [{name: main, image: registry.invalid/never-pulled:v1}]
"#;

const APART: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: apart}
spec:
  replicas: 3
  selector: {matchLabels: {app: apart}}
  template:
    metadata: {labels: {app: apart}}
    spec:
      nodeSelector: {pool: small}
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            - topologyKey: kubernetes.io/hostname
              labelSelector: {matchLabels: {app: apart}}
      containers: [{name: main, image: registry.invalid/never-pulled:v1}]
"#;

#[test]
fn spread_constraints_and_anti_affinity_on_hollow_nodes() {
    let c = Cluster::start_with(&["--no-agent"]);
    // Ten nodes in zone-a, one each in zone-0 and zone-1: packing would favour zone-a.
    let _big = c.join_agent(
        "big",
        &[
            "--hollow",
            "10",
            "--node-label",
            "topology.kubernetes.io/zone=zone-a",
        ],
    );
    let _small = c.join_agent(
        "small",
        &[
            "--hollow",
            "2",
            "--hollow-zones",
            "2",
            "--node-label",
            "pool=small",
        ],
    );
    let zone_of = eventually(WAIT, || {
        let z = zones(&c);
        (z.len() == 12).then_some(z)
    });

    c.ok_stdin(&["apply", "-f", "-"], SPREAD);
    let placed = eventually(WAIT, || {
        let p = pods(&c, "spread");
        (p.len() == 30 && p.iter().all(|(_, phase)| phase == "Running")).then_some(p)
    });
    let mut per_zone: BTreeMap<&str, i64> = BTreeMap::new();
    for (node, _) in &placed {
        *per_zone.entry(zone_of[node].as_str()).or_default() += 1;
    }
    let max = per_zone.values().max().copied().unwrap_or(0);
    let min = per_zone.values().min().copied().unwrap_or(0);
    assert_eq!(per_zone.len(), 3, "{per_zone:?}");
    assert!(
        max - min <= 1,
        "skew {} > maxSkew 1: {per_zone:?}",
        max - min
    );

    // Three replicas that refuse to share a node, on a pool of two nodes: one stays Pending.
    c.ok_stdin(&["apply", "-f", "-"], APART);
    let apart = eventually(WAIT, || {
        let p = pods(&c, "apart");
        let running: Vec<String> = p
            .iter()
            .filter(|(_, phase)| phase == "Running")
            .map(|(n, _)| n.clone())
            .collect();
        (p.len() == 3 && running.len() == 2).then_some(running)
    });
    assert_ne!(
        apart[0], apart[1],
        "two anti-affine pods share {}",
        apart[0]
    );
    let pending = eventually(WAIT, || {
        let list = json(&c, &["get", "pods", "-l", "app=apart"]);
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["status"]["phase"] == "Pending")
            .and_then(|p| {
                p["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "PodScheduled")?["message"]
                    .as_str()
                    .map(str::to_string)
            })
    });
    assert!(
        pending.contains("didn't match pod anti-affinity rules"),
        "{pending}"
    );
}
