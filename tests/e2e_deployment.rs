//! End-to-end: the Deployment controller inside `wkube up`, driven by kubectl.
//!
//! The first tests look only at what the Deployment controller itself writes (ReplicaSets,
//! their specs and annotations, Deployment status fields that do not need pods), so they
//! pass with or without the ReplicaSet controller. The pod-dependent checks are in the
//! ignored test at the end.

mod common;

use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn json(c: &Cluster, args: &[&str]) -> Value {
    let out = c.kubectl(args);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The ReplicaSets owned by Deployment `name`, by image (creation times have a resolution
/// of a second, so they do not order reliably).
fn replica_sets(c: &Cluster, name: &str) -> Vec<Value> {
    let list = json(c, &["get", "replicasets", "-o", "json"]);
    let mut out: Vec<Value> = list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|os| {
                    os.iter().any(|o| {
                        o["kind"] == "Deployment" && o["name"] == name && o["controller"] == true
                    })
                })
        })
        .collect();
    out.sort_by_key(|rs| image(rs).to_string());
    out
}

fn ann<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj["metadata"]["annotations"][key].as_str().unwrap_or("")
}

fn spec_replicas(rs: &Value) -> i64 {
    rs["spec"]["replicas"].as_i64().unwrap_or(-1)
}

fn image(rs: &Value) -> &str {
    rs["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
}

fn condition<'a>(d: &'a Value, type_: &str) -> Option<&'a Value> {
    d["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn events(c: &Cluster) -> Vec<String> {
    let list = json(c, &["get", "events", "-o", "json"]);
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["reason"] == "ScalingReplicaSet")
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Waits until Deployment `name` owns ReplicaSets with these (image, spec.replicas), sorted
/// by image, and returns them.
fn wait_for_sets(c: &Cluster, name: &str, want: &[(&str, i64)]) -> Vec<Value> {
    eventually(WAIT, || {
        let rss = replica_sets(c, name);
        let got: Vec<(&str, i64)> = rss.iter().map(|r| (image(r), spec_replicas(r))).collect();
        (got == want).then(|| rss.clone())
    })
}

#[test]
fn deployment_rolls_out_replica_sets() {
    let c = Cluster::start_with(&["--restart-backoff", "1"]);
    let v1 = "wkube.local/hello-rust:v1";
    let v2 = "wkube.local/hello-rust:v2";
    c.ok(&[
        "create",
        "deployment",
        "web",
        &format!("--image={v1}"),
        "--replicas=3",
    ]);

    // One ReplicaSet for the template, named after its hash.
    let rss = wait_for_sets(&c, "web", &[(v1, 3)]);
    let first = &rss[0];
    let first_name = first["metadata"]["name"].as_str().unwrap().to_string();
    let hash = first["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .expect("hash label")
        .to_string();
    assert_eq!(first_name, format!("web-{hash}"));
    assert_eq!(
        first["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(first["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(
        first["spec"]["template"]["metadata"]["labels"]["pod-template-hash"],
        hash.as_str()
    );
    assert_eq!(ann(first, "deployment.kubernetes.io/revision"), "1");
    assert_eq!(ann(first, "deployment.kubernetes.io/desired-replicas"), "3");
    // maxSurge 25% of 3, rounded up.
    assert_eq!(ann(first, "deployment.kubernetes.io/max-replicas"), "4");
    let owner = &first["metadata"]["ownerReferences"][0];
    assert_eq!(owner["apiVersion"], "apps/v1");
    assert_eq!(owner["blockOwnerDeletion"], true);

    // Deployment: revision annotation and status written through the status subresource.
    let d = eventually(WAIT, || {
        let d = json(&c, &["get", "deployment", "web", "-o", "json"]);
        (d["status"]["observedGeneration"] == d["metadata"]["generation"]
            && condition(&d, "Available").is_some()
            && condition(&d, "Progressing").is_some())
        .then_some(d)
    });
    assert_eq!(ann(&d, "deployment.kubernetes.io/revision"), "1");
    let progressing = condition(&d, "Progressing").unwrap();
    assert_eq!(progressing["status"], "True");
    let reason = progressing["reason"].as_str().unwrap();
    assert!(
        [
            "NewReplicaSetCreated",
            "ReplicaSetUpdated",
            "NewReplicaSetAvailable"
        ]
        .contains(&reason),
        "{progressing}"
    );
    if reason == "NewReplicaSetCreated" {
        assert_eq!(
            progressing["message"],
            format!("Created new replica set \"{first_name}\"")
        );
    }
    let want = format!("Scaled up replica set {first_name} from 0 to 3");
    eventually(WAIT, || events(&c).contains(&want).then_some(()));

    // A new template: a second ReplicaSet, revision 2. maxUnavailable 100% lets the rollout
    // finish without waiting for pods to become available (so this test needs no pods).
    c.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":"100%"}}}}"#,
    ]);
    c.ok(&[
        "set",
        "image",
        "deployment/web",
        &format!("hello-rust={v2}"),
    ]);
    let rss = wait_for_sets(&c, "web", &[(v1, 0), (v2, 3)]);
    let second_name = rss[1]["metadata"]["name"].as_str().unwrap().to_string();
    assert_ne!(second_name, first_name);
    assert_eq!(ann(&rss[1], "deployment.kubernetes.io/revision"), "2");
    assert_eq!(ann(&rss[0], "deployment.kubernetes.io/revision"), "1");
    eventually(WAIT, || {
        let d = json(&c, &["get", "deployment", "web", "-o", "json"]);
        (ann(&d, "deployment.kubernetes.io/revision") == "2").then_some(())
    });
    let evs = events(&c);
    assert!(
        evs.iter()
            .any(|e| e.starts_with(&format!("Scaled up replica set {second_name} from 0 to"))),
        "{evs:?}"
    );
    assert!(
        evs.iter()
            .any(|e| e.starts_with(&format!("Scaled down replica set {first_name} from 3 to"))),
        "{evs:?}"
    );

    // Undo: back to the first ReplicaSet (same hash, same name), now revision 3.
    c.ok(&["rollout", "undo", "deployment/web"]);
    let rss = wait_for_sets(&c, "web", &[(v1, 3), (v2, 0)]);
    assert_eq!(rss[0]["metadata"]["name"], first_name.as_str());
    eventually(WAIT, || {
        let rss = replica_sets(&c, "web");
        (ann(&rss[0], "deployment.kubernetes.io/revision") == "3").then_some(())
    });
    let rss = replica_sets(&c, "web");
    assert_eq!(
        ann(&rss[0], "deployment.kubernetes.io/revision-history"),
        "1"
    );
    assert_eq!(ann(&rss[1], "deployment.kubernetes.io/revision"), "2");
    eventually(WAIT, || {
        let d = json(&c, &["get", "deployment", "web", "-o", "json"]);
        (ann(&d, "deployment.kubernetes.io/revision") == "3").then_some(())
    });

    // Scale: the active ReplicaSet follows, with its annotations.
    c.ok(&["scale", "deployment", "web", "--replicas=5"]);
    let rss = wait_for_sets(&c, "web", &[(v1, 5), (v2, 0)]);
    assert_eq!(
        ann(&rss[0], "deployment.kubernetes.io/desired-replicas"),
        "5"
    );
    assert_eq!(ann(&rss[0], "deployment.kubernetes.io/max-replicas"), "7");
    let want = format!("Scaled up replica set {first_name} from 3 to 5");
    eventually(WAIT, || events(&c).contains(&want).then_some(()));

    // History lists the revisions the ReplicaSets carry.
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, vec!["2", "3"], "{history}");
    let rev2 = c.ok(&["rollout", "history", "deployment/web", "--revision=2"]);
    assert!(rev2.contains(v2), "{rev2}");

    // Paused: a template change makes no new ReplicaSet until resumed.
    c.ok(&["rollout", "pause", "deployment/web"]);
    c.ok(&[
        "set",
        "image",
        "deployment/web",
        "hello-rust=wkube.local/hello-rust:v3",
    ]);
    eventually(WAIT, || {
        let d = json(&c, &["get", "deployment", "web", "-o", "json"]);
        let p = condition(&d, "Progressing")?;
        (p["reason"] == "DeploymentPaused" && p["status"] == "Unknown").then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(replica_sets(&c, "web").len(), 2);
    c.ok(&["rollout", "resume", "deployment/web"]);
    let rss = wait_for_sets(
        &c,
        "web",
        &[(v1, 0), (v2, 0), ("wkube.local/hello-rust:v3", 5)],
    );
    assert_eq!(ann(&rss[2], "deployment.kubernetes.io/revision"), "4");

    // Settled: the controller does not keep rewriting what it owns.
    let snapshot = |c: &Cluster| {
        let d = json(c, &["get", "deployment", "web", "-o", "json"]);
        let sets: Vec<(Value, Value, Value)> = replica_sets(c, "web")
            .iter()
            .map(|r| {
                (
                    r["metadata"]["name"].clone(),
                    r["metadata"]["generation"].clone(),
                    r["metadata"]["annotations"].clone(),
                )
            })
            .collect();
        (
            d["metadata"]["annotations"].clone(),
            d["status"]["conditions"].clone(),
            sets,
        )
    };
    // (Pods, once a ReplicaSet controller makes them, may still move the conditions for a
    // while; a controller fighting itself never settles.)
    eventually(WAIT, || {
        let before = snapshot(&c);
        std::thread::sleep(Duration::from_millis(1500));
        (before == snapshot(&c)).then_some(())
    });
}

#[test]
fn recreate_replaces_the_replica_set() {
    let c = Cluster::start_with(&["--restart-backoff", "1"]);
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: batch
spec:
  replicas: 2
  strategy:
    type: Recreate
  selector:
    matchLabels: {app: batch}
  template:
    metadata:
      labels: {app: batch}
    spec:
      containers:
        - name: main
          image: wkube.local/hello-rust:v1
          imagePullPolicy: Never
          args: ["--sleep", "3600"]
"#,
    );
    let rss = wait_for_sets(&c, "batch", &[("wkube.local/hello-rust:v1", 2)]);
    // Recreate: no surge.
    assert_eq!(ann(&rss[0], "deployment.kubernetes.io/max-replicas"), "2");
    c.ok(&[
        "set",
        "image",
        "deployment/batch",
        "main=wkube.local/hello-rust:v2",
    ]);
    let rss = wait_for_sets(
        &c,
        "batch",
        &[
            ("wkube.local/hello-rust:v1", 0),
            ("wkube.local/hello-rust:v2", 2),
        ],
    );
    assert_eq!(ann(&rss[1], "deployment.kubernetes.io/revision"), "2");
}

const SLEEPY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  revisionHistoryLimit: 1
  strategy:
    rollingUpdate: {maxSurge: 1, maxUnavailable: 1}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: hello-rust
          image: wkube.local/hello-rust:v1
          imagePullPolicy: Never
          args: ["--sleep", "3600"]
"#;

fn ready_pods(pods: &Value) -> i64 {
    pods["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count() as i64
        })
        .unwrap_or(0)
}

#[test]
fn rollout_status_completes_and_keeps_availability() {
    let c = Cluster::start_with(&["--restart-backoff", "1"]);
    c.import_examples();
    let wasm = common::wasm_examples().join("hello-rust.wasm");
    let data = c.data_dir.to_string_lossy().to_string();
    let out = c.wkube(&[
        "image",
        "import",
        &wasm.to_string_lossy(),
        "--name",
        "wkube.local/hello-rust:v2",
        "--data-dir",
        &data,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    c.ok_stdin(&["apply", "-f", "-"], SLEEPY);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let d = json(&c, &["get", "deployment", "web", "-o", "json"]);
    assert_eq!(d["status"]["readyReplicas"], 3);
    assert_eq!(d["status"]["availableReplicas"], 3);
    assert_eq!(d["status"]["updatedReplicas"], 3);
    assert_eq!(
        condition(&d, "Available").unwrap()["reason"],
        "MinimumReplicasAvailable"
    );
    assert_eq!(
        condition(&d, "Progressing").unwrap()["reason"],
        "NewReplicaSetAvailable"
    );

    // Watch ready pods through a rolling update: never fewer than replicas - maxUnavailable.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let kubeconfig = c.kubeconfig();
        std::thread::spawn(move || {
            let (mut min, mut samples) = (i64::MAX, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = std::process::Command::new(common::kubectl_path())
                    .args(["get", "pods", "-l", "app=web", "-o", "json"])
                    .env("KUBECONFIG", &kubeconfig)
                    .output()
                    .expect("kubectl");
                if let Ok(pods) = serde_json::from_slice::<Value>(&out.stdout) {
                    min = min.min(ready_pods(&pods));
                    samples += 1;
                }
            }
            (min, samples)
        })
    };
    c.ok(&[
        "set",
        "image",
        "deployment/web",
        "hello-rust=wkube.local/hello-rust:v2",
    ]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (min_ready, samples) = watcher.join().unwrap();
    assert!(samples > 0, "the pod watcher saw nothing");
    assert!(
        min_ready >= 2,
        "saw only {min_ready} ready pods during the rollout"
    );

    // revisionHistoryLimit 1: the v1 ReplicaSet stays, scaled to 0.
    wait_for_sets(
        &c,
        "web",
        &[
            ("wkube.local/hello-rust:v1", 0),
            ("wkube.local/hello-rust:v2", 3),
        ],
    );
    c.ok(&["rollout", "undo", "deployment/web"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    let rss = wait_for_sets(
        &c,
        "web",
        &[
            ("wkube.local/hello-rust:v1", 3),
            ("wkube.local/hello-rust:v2", 0),
        ],
    );
    assert_eq!(ann(&rss[0], "deployment.kubernetes.io/revision"), "3");
    // revisionHistoryLimit 0: the idle v2 ReplicaSet goes once the rollout is complete.
    c.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"revisionHistoryLimit":0,"progressDeadlineSeconds":3}}"#,
    ]);
    wait_for_sets(&c, "web", &[("wkube.local/hello-rust:v1", 3)]);

    // An image that does not exist: the rollout stalls with at most one unavailable pod,
    // then exceeds its progress deadline, which `kubectl rollout status` reports.
    c.ok(&[
        "set",
        "image",
        "deployment/web",
        "hello-rust=wkube.local/hello-rust:v1b",
    ]);
    let d = eventually(Duration::from_secs(60), || {
        let d = json(&c, &["get", "deployment", "web", "-o", "json"]);
        let p = condition(&d, "Progressing")?;
        (p["reason"] == "ProgressDeadlineExceeded").then_some(d)
    });
    assert!(
        d["status"]["availableReplicas"].as_i64() >= Some(2),
        "{}",
        d["status"]
    );
    let p = condition(&d, "Progressing").unwrap();
    assert_eq!(p["status"], "False");
    let out = c.kubectl(&["rollout", "status", "deployment/web", "--timeout=30s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
}

#[test]
fn a_control_plane_crash_mid_rollout_leaves_no_duplicates_or_orphans() {
    let mut c = Cluster::start_with(&["--restart-backoff", "1"]);
    c.import_examples();
    let dir = common::wasm_examples();
    let file = dir.join("hello-rust.wasm").to_string_lossy().to_string();
    let data = c.data_dir.to_string_lossy().to_string();
    let out = c.wkube(&[
        "image",
        "import",
        &file,
        "--name",
        "wkube.local/hello-rust:v2",
        "--data-dir",
        &data,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: steady}
spec:
  replicas: 4
  # Each step waits for new pods to be available for 2 s, so the crash lands mid-rollout.
  minReadySeconds: 2
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}
  selector: {matchLabels: {app: steady}}
  template:
    metadata: {labels: {app: steady}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: wkube.local/hello-rust:v1
          imagePullPolicy: Never
          args: ["--sleep", "3600"]
"#,
    );
    c.ok(&["rollout", "status", "deployment/steady", "--timeout=60s"]);
    c.ok(&[
        "set",
        "image",
        "deployment/steady",
        "main=wkube.local/hello-rust:v2",
    ]);
    // Crash while the rollout is under way, then start again on the same data.
    c.restart();
    c.ok(&["rollout", "status", "deployment/steady", "--timeout=120s"]);
    let sets = replica_sets(&c, "steady");
    let live: Vec<Value> = eventually(Duration::from_secs(60), || {
        let pods = json(&c, &["get", "pods", "-l", "app=steady", "-o", "json"]);
        let live: Vec<Value> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .cloned()
            .collect();
        (live.len() == 4).then_some(live)
    });
    for pod in &live {
        assert_eq!(
            pod["spec"]["containers"][0]["image"], "wkube.local/hello-rust:v2",
            "{pod}"
        );
        let owner = pod["metadata"]["ownerReferences"][0]["uid"]
            .as_str()
            .unwrap_or("");
        assert!(
            sets.iter().any(|rs| rs["metadata"]["uid"] == owner),
            "pod owned by no ReplicaSet of the deployment: {pod}"
        );
    }
}
