//! End-to-end: a StatefulSet's pods have stable names, start in order, scale down from the
//! top and are replaced one by one on a template change.

mod common;

use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

/// (name, args[1]) of the running, ready pods of the set.
fn ready_pods(c: &Cluster) -> Vec<(String, String)> {
    let out = c.kubectl(&["get", "pods", "-l", "app=db", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let mut v: Vec<(String, String)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running"
        })
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
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

const STS: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: wkube.local/hello-rust:v1
          imagePullPolicy: Never
          args: ["--sleep", "3600"]
"#;

fn named(names: &[&str], arg: &str) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| (n.to_string(), arg.to_string()))
        .collect()
}

#[test]
fn stable_names_order_scale_down_and_rolling_update() {
    let c = Cluster::start_with(&["--restart-backoff", "1"]);
    c.import_examples();
    c.ok_stdin(&["apply", "-f", "-"], STS);
    eventually(Duration::from_secs(60), || {
        (ready_pods(&c) == named(&["db-0", "db-1", "db-2"], "3600")).then_some(())
    });
    // OrderedReady: each pod was created only after the one before it ran.
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=SuccessfulCreate",
        "-o",
        "json",
    ]);
    assert!(
        events.contains("create Pod db-2 in StatefulSet db successful"),
        "{events}"
    );
    let sts: Value =
        serde_json::from_str(&c.ok(&["get", "sts", "db", "-o", "json"])).expect("json");
    assert_eq!(sts["status"]["readyReplicas"], 3, "{sts}");

    c.ok(&["scale", "statefulset", "db", "--replicas=1"]);
    eventually(Duration::from_secs(60), || {
        (ready_pods(&c) == named(&["db-0"], "3600")).then_some(())
    });

    c.ok_stdin(
        &["apply", "-f", "-"],
        &STS.replace("replicas: 3", "replicas: 2")
            .replace("3600", "7200"),
    );
    eventually(Duration::from_secs(90), || {
        (ready_pods(&c) == named(&["db-0", "db-1"], "7200")).then_some(())
    });
}
