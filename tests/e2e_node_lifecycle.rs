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

const SPREAD: &str = r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: survivors}
spec:
  replicas: 6
  selector: {matchLabels: {app: survivors}}
  template:
    metadata: {labels: {app: survivors}}
    spec:
      tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}]
      containers:
        - name: main
          image: wkube.local/absent:v1
          imagePullPolicy: Never
"#;

/// (node of each live pod, count of live pods) for the ReplicaSet.
fn live_pods(c: &Cluster) -> Vec<String> {
    let list = get(c, &["get", "pods", "-l", "app=survivors", "-o", "json"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn pods_of_a_dead_node_are_replaced_on_the_others() {
    let c = Cluster::start_with(&["--no-agent", "--node-monitor-grace-period", "3"]);
    let fast = ["--lease-renew-interval", "0.5"];
    let mut agents: Vec<_> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|n| c.join_agent(n, &fast))
        .collect();
    eventually(Duration::from_secs(30), || {
        let nodes = get(&c, &["get", "nodes", "-o", "json"]);
        (nodes["items"].as_array().map_or(0, Vec::len) == 3).then_some(())
    });
    c.ok_stdin(&["apply", "-f", "-"], SPREAD);
    let placed = eventually(Duration::from_secs(30), || {
        let nodes = live_pods(&c);
        (nodes.len() == 6 && nodes.iter().all(|n| !n.is_empty())).then_some(nodes)
    });
    // Kill the agent of a node that has pods.
    let victim = placed[0].clone();
    let index = ["node-a", "node-b", "node-c"]
        .iter()
        .position(|n| *n == victim)
        .expect("known node");
    drop(agents.remove(index));
    let survivors = eventually(Duration::from_secs(60), || {
        let nodes = live_pods(&c);
        assert!(nodes.len() <= 6, "more live pods than replicas: {nodes:?}");
        (nodes.len() == 6 && nodes.iter().all(|n| !n.is_empty() && *n != victim)).then_some(nodes)
    });
    assert!(survivors.iter().all(|n| *n != victim), "{survivors:?}");
}

/// (key, effect) of the node's taints.
fn taints(c: &Cluster, node: &str) -> Vec<(String, String)> {
    let n = get(c, &["get", "node", node, "-o", "json"]);
    n["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["key"].as_str().unwrap_or("").to_string(),
                t["effect"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_node_that_reports_not_ready_is_tainted_and_its_pods_evicted() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Node;
    use kube::api::{Api, Patch, PatchParams, PostParams};
    use serde_json::json;

    let c = Cluster::start_with(&["--no-agent", "--node-monitor-grace-period", "3"]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = rt.block_on(c.client());
    // A node whose "agent" (this test) keeps its Lease fresh but reports Ready=False.
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let ready = |status: &str| {
        json!({"status": {"conditions": [{"type": "Ready", "status": status,
            "reason": "KubeletNotReady", "message": "container runtime is down",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
    };
    rt.block_on(async {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "sick"}})).unwrap();
        nodes.create(&PostParams::default(), &node).await.unwrap();
        nodes
            .patch_status(
                "sick",
                &PatchParams::default(),
                &Patch::Merge(ready("False")),
            )
            .await
            .unwrap();
        let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "sick"},
            "spec": {"holderIdentity": "sick", "leaseDurationSeconds": 40}}))
        .unwrap();
        leases.create(&PostParams::default(), &lease).await.unwrap();
    });
    let renewing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let renewer = {
        let renewing = renewing.clone();
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            while renewing.load(std::sync::atomic::Ordering::Relaxed) {
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                let renewal = json!({"spec": {"renewTime": now}});
                let _ = handle.block_on(leases.patch(
                    "sick",
                    &PatchParams::default(),
                    &Patch::Merge(renewal),
                ));
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    for (name, tolerations) in [
        (
            "impatient",
            r#"tolerations: [{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 1}]"#,
        ),
        ("patient", ""),
    ] {
        let manifest = pod(name, tolerations).replace(
            "restartPolicy: Never",
            "restartPolicy: Never\n  nodeName: sick",
        );
        c.ok_stdin(&["apply", "-f", "-"], &manifest);
    }
    let want = |key: &str| {
        vec![
            (key.to_string(), "NoSchedule".to_string()),
            (key.to_string(), "NoExecute".to_string()),
        ]
    };
    eventually(Duration::from_secs(30), || {
        (taints(&c, "sick") == want("node.kubernetes.io/not-ready")).then_some(())
    });
    eventually(Duration::from_secs(30), || {
        let p = get(&c, &["get", "pod", "impatient", "-o", "json"]);
        (p.is_null() || p["metadata"]["deletionTimestamp"].is_string()).then_some(())
    });
    let patient = get(&c, &["get", "pod", "patient", "-o", "json"]);
    assert!(
        patient["metadata"]["deletionTimestamp"].is_null(),
        "{patient}"
    );

    // Ready again: the taints go.
    rt.block_on(async {
        nodes
            .patch_status(
                "sick",
                &PatchParams::default(),
                &Patch::Merge(ready("True")),
            )
            .await
            .unwrap();
    });
    eventually(Duration::from_secs(30), || {
        taints(&c, "sick").is_empty().then_some(())
    });

    // Silent: the Lease goes stale and not-ready gives way to unreachable.
    renewing.store(false, std::sync::atomic::Ordering::Relaxed);
    renewer.join().expect("renewer");
    eventually(Duration::from_secs(30), || {
        (taints(&c, "sick") == want("node.kubernetes.io/unreachable")).then_some(())
    });
}
