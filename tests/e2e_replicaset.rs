//! End-to-end: the ReplicaSet controller and the garbage collector on `wkube up`, driven by
//! the real kubectl.

mod common;

use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn start() -> Cluster {
    let c = Cluster::start_with(&["--restart-backoff", "1"]);
    c.import_examples();
    c
}

fn rs_manifest(name: &str, replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: main
          image: wkube.local/hello-rust:v1
          imagePullPolicy: Never
          args: ["--sleep", "3600"]
"#
    )
}

/// Pods labelled app=<app>, all of them (terminating ones included).
fn pods(c: &Cluster, app: &str) -> Vec<Value> {
    let out = c.kubectl(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["items"].as_array().cloned().unwrap_or_default()
}

fn live(pods: &[Value]) -> Vec<Value> {
    pods.iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .cloned()
        .collect()
}

fn name(p: &Value) -> String {
    p["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn rs_json(c: &Cluster, name: &str) -> Option<Value> {
    let out = c.kubectl(&["get", "rs", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// Waits until exactly `n` live pods of `app` are Running; returns them.
fn wait_running(c: &Cluster, app: &str, n: usize) -> Vec<Value> {
    eventually(WAIT, || {
        let all = pods(c, app);
        let l = live(&all);
        (l.len() == n && all.len() == n && l.iter().all(|p| p["status"]["phase"] == "Running"))
            .then_some(l)
    })
}

fn assert_owned_by(p: &Value, rs: &Value) {
    let refs = p["metadata"]["ownerReferences"]
        .as_array()
        .expect("ownerRefs");
    assert_eq!(refs.len(), 1, "{p}");
    let r = &refs[0];
    assert_eq!(r["kind"], "ReplicaSet");
    assert_eq!(r["apiVersion"], "apps/v1");
    assert_eq!(r["name"], rs["metadata"]["name"]);
    assert_eq!(r["uid"], rs["metadata"]["uid"]);
    assert_eq!(r["controller"], true);
    assert_eq!(r["blockOwnerDeletion"], true);
}

#[test]
fn replicaset_scales_replaces_and_cascades_in_background() {
    let c = start();
    c.ok_stdin(&["apply", "-f", "-"], &rs_manifest("web", 3));
    let running = wait_running(&c, "web", 3);
    let rs = rs_json(&c, "web").expect("rs");
    for p in &running {
        assert_owned_by(p, &rs);
        assert!(name(p).starts_with("web-"), "{}", name(p));
    }
    // Status catches up.
    eventually(WAIT, || {
        let s = rs_json(&c, "web")?["status"].clone();
        (s["replicas"] == 3 && s["readyReplicas"] == 3 && s["availableReplicas"] == 3).then_some(())
    });
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web",
    ]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains("Created pod: web-"), "{events}");

    // Scale down: two go.
    c.ok(&["scale", "rs", "web", "--replicas=1"]);
    let left = wait_running(&c, "web", 1);
    eventually(WAIT, || {
        let events = c.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web",
        ]);
        events.contains("SuccessfulDelete").then_some(())
    });
    eventually(WAIT, || {
        let s = rs_json(&c, "web")?["status"].clone();
        (s["replicas"] == 1).then_some(())
    });

    // A deleted pod is replaced.
    let victim = name(&left[0]);
    c.ok(&["delete", "pod", &victim, "--wait=false"]);
    let replaced = eventually(WAIT, || {
        let l = live(&pods(&c, "web"));
        (l.len() == 1 && name(&l[0]) != victim && l[0]["status"]["phase"] == "Running").then_some(l)
    });
    assert_owned_by(&replaced[0], &rs);

    // An orphan with matching labels is adopted (and, being one too many, one pod goes).
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: stray
  labels:
    app: web
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: main
      image: wkube.local/hello-rust:v1
      imagePullPolicy: Never
      args: ["--sleep", "3600"]
"#,
    );
    let adopted = eventually(WAIT, || {
        let l = live(&pods(&c, "web"));
        (l.len() == 1).then_some(l)
    });
    assert_owned_by(&adopted[0], &rs);

    // A pod relabelled out of the selector is released, and replaced.
    let out_of_set = name(&adopted[0]);
    c.ok(&["label", "pod", &out_of_set, "app=elsewhere", "--overwrite"]);
    eventually(WAIT, || {
        let p: Value =
            serde_json::from_str(&c.ok(&["get", "pod", &out_of_set, "-o", "json"])).ok()?;
        p["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|r| r.is_empty())
            .then_some(())
    });
    wait_running(&c, "web", 1);

    // Default (background) cascade: the ReplicaSet goes, then its pods.
    c.ok(&["delete", "rs", "web"]);
    eventually(WAIT, || pods(&c, "web").is_empty().then_some(()));
    assert!(rs_json(&c, "web").is_none());
    // The released pod is not the ReplicaSet's, so it stays.
    c.ok(&["get", "pod", &out_of_set]);
}

#[test]
fn orphan_and_foreground_cascades() {
    let c = start();
    // Orphan: the pods stay, without ownerReferences.
    c.ok_stdin(&["apply", "-f", "-"], &rs_manifest("keep", 2));
    let before: Vec<String> = wait_running(&c, "keep", 2).iter().map(name).collect();
    c.ok(&["delete", "rs", "keep", "--cascade=orphan"]);
    eventually(WAIT, || rs_json(&c, "keep").is_none().then_some(()));
    let after = eventually(WAIT, || {
        let l = live(&pods(&c, "keep"));
        l.iter()
            .all(|p| {
                p["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(|r| r.is_empty())
            })
            .then_some(l)
    });
    let mut names: Vec<String> = after.iter().map(name).collect();
    names.sort();
    let mut before = before;
    before.sort();
    assert_eq!(names, before);
    // And they stay: nothing collects them later.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(live(&pods(&c, "keep")).len(), 2);

    // Foreground: the pods go first, the ReplicaSet last.
    c.ok_stdin(&["apply", "-f", "-"], &rs_manifest("fg", 2));
    wait_running(&c, "fg", 2);
    c.ok(&["delete", "rs", "fg", "--cascade=foreground", "--wait=false"]);
    let mut saw_rs_waiting = false;
    eventually(WAIT, || {
        let rs = rs_json(&c, "fg");
        let pods_left = pods(&c, "fg").len();
        match rs {
            Some(rs) => {
                assert!(!rs["metadata"]["deletionTimestamp"].is_null(), "{rs}");
                if pods_left > 0 {
                    saw_rs_waiting = true;
                }
                None
            }
            None => {
                assert_eq!(pods_left, 0, "the ReplicaSet went before its pods");
                Some(())
            }
        }
    });
    assert!(saw_rs_waiting, "the ReplicaSet never waited for its pods");
}
