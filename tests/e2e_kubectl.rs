//! End-to-end: the real, unmodified kubectl against `wkube up`.

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/getting-started.yaml");

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn apply_get_describe_and_the_output_formats() {
    let c = Cluster::start();
    let out = c.ok(&["apply", "-f", EXAMPLE]);
    for line in [
        "namespace/demo created",
        "configmap/web-config created",
        "secret/web-secret created",
        "deployment.apps/web created",
    ] {
        assert!(out.contains(line), "apply output lacks {line:?}: {out}");
    }

    let ns = c.ok(&["get", "namespaces"]);
    for n in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "demo",
    ] {
        assert!(ns.contains(n), "namespace {n} missing: {ns}");
    }
    assert!(ns.lines().next().unwrap_or("").contains("STATUS"), "{ns}");

    let table = c.ok(&["get", "deploy", "-n", "demo"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("READY") && table.contains("UP-TO-DATE") && table.contains("web"),
        "{table}"
    );
    let wide = c.ok(&["get", "deployments", "-n", "demo", "-o", "wide"]);
    assert!(
        wide.contains("CONTAINERS") && wide.contains("wkube.local/hello-rust:v1"),
        "{wide}"
    );

    let yaml = c.ok(&["get", "configmap", "web-config", "-n", "demo", "-o", "yaml"]);
    assert!(
        yaml.contains("greeting: hello from wkube") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );

    let secret = json(&c.ok(&["get", "secret", "web-secret", "-n", "demo", "-o", "json"]));
    assert_eq!(
        secret["data"]["password"], "czNjcjN0",
        "stringData becomes base64 data"
    );
    assert!(secret.get("stringData").is_none());

    let deploy = json(&c.ok(&["get", "deployment", "web", "-n", "demo", "-o", "json"]));
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(
        deploy["spec"]["strategy"]["type"], "RollingUpdate",
        "defaults applied"
    );
    assert_eq!(deploy["metadata"]["generation"], 1);
    assert!(deploy["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| u.len() == 36));

    let labelled = c.ok(&["get", "cm", "-n", "demo", "-l", "app=web", "-o", "name"]);
    assert_eq!(labelled.trim(), "configmap/web-config");
    let none = c.ok(&["get", "cm", "-n", "demo", "-l", "app=db", "-o", "name"]);
    assert!(none.trim().is_empty(), "{none}");
    let by_field = c.ok(&[
        "get",
        "ns",
        "--field-selector",
        "metadata.name=demo",
        "-o",
        "name",
    ]);
    assert_eq!(by_field.trim(), "namespace/demo");

    let all_ns = c.ok(&["get", "configmaps", "-A"]);
    assert!(
        all_ns.contains("NAMESPACE") && all_ns.contains("demo"),
        "{all_ns}"
    );

    let all = c.ok(&["get", "all", "-n", "demo"]);
    assert!(all.contains("deployment.apps/web"), "{all}");

    let described = c.ok(&["describe", "deployment", "web", "-n", "demo"]);
    assert!(
        described.contains("Name:") && described.contains("web") && described.contains("Replicas:"),
        "{described}"
    );
    let described_ns = c.ok(&["describe", "namespace", "demo"]);
    assert!(described_ns.contains("Active"), "{described_ns}");

    // Deleting the namespace empties it, then removes it (kubectl waits for both).
    let out = c.ok(&["delete", "namespace", "demo", "--timeout=60s"]);
    assert!(out.contains("namespace \"demo\" deleted"), "{out}");
    let gone = c.kubectl(&["get", "namespace", "demo"]);
    assert!(!gone.status.success(), "namespace still there");
    let left = c.ok(&["get", "configmaps,secrets,deployments", "-A", "-o", "name"]);
    assert!(!left.contains("web"), "namespace contents survived: {left}");
}

#[test]
fn label_annotate_and_the_three_patch_types() {
    let c = Cluster::start();
    c.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ]);
    c.ok(&["label", "configmap", "settings", "tier=backend"]);
    c.ok(&["annotate", "configmap", "settings", "owner=ops"]);
    let cm = json(&c.ok(&["get", "cm", "settings", "-o", "json"]));
    assert_eq!(cm["metadata"]["labels"]["tier"], "backend");
    assert_eq!(cm["metadata"]["annotations"]["owner"], "ops");

    c.ok(&[
        "patch",
        "configmap",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"10","b":null}}"#,
    ]);
    c.ok(&[
        "patch",
        "configmap",
        "settings",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/c","value":"3"}]"#,
    ]);
    c.ok(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"d":"4"}}"#,
    ]);
    let cm = json(&c.ok(&["get", "cm", "settings", "-o", "json"]));
    assert_eq!(
        cm["data"],
        serde_json::json!({"a": "10", "c": "3", "d": "4"})
    );

    // A strategic merge patch merges containers by name.
    c.ok_stdin(&["apply", "-f", "-"], POD);
    c.ok(&[
        "patch",
        "pod",
        "hello",
        "-p",
        r#"{"spec":{"containers":[{"name":"main","image":"registry.local/hello:v2"}]}}"#,
    ]);
    let pod = json(&c.ok(&["get", "pod", "hello", "-o", "json"]));
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 2, "{containers:?}");
    assert_eq!(containers[0]["image"], "registry.local/hello:v2");
    assert_eq!(containers[1]["name"], "side");

    // A JSON patch whose test fails is refused and changes nothing.
    let out = c.kubectl(&[
        "patch",
        "cm",
        "settings",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/data/a","value":"nope"}]"#,
    ]);
    assert!(!out.status.success());
    let cm = json(&c.ok(&["get", "cm", "settings", "-o", "json"]));
    assert_eq!(cm["data"]["a"], "10");
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: hello
  labels: {app: hello}
spec:
  containers:
    - name: main
      image: registry.local/hello:v1
    - name: side
      image: registry.local/side:v1
"#;

const DEPLOY_V1: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels: {app: api, stage: one}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          image: registry.local/api:v1
          env:
            - {name: A, value: "1"}
            - {name: B, value: "2"}
        - name: log
          image: registry.local/log:v1
"#;

const DEPLOY_V2: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels: {app: api}
spec:
  replicas: 3
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
        - name: api
          image: registry.local/api:v2
          env:
            - {name: A, value: "1"}
            - {name: C, value: "3"}
        - name: log
          image: registry.local/log:v1
"#;

#[test]
fn reapply_merges_lists_by_key_and_removes_dropped_fields() {
    let c = Cluster::start();
    c.ok_stdin(&["apply", "-f", "-"], DEPLOY_V1);
    // Someone else scales and labels the object between the two applies.
    c.ok(&["label", "deployment", "api", "extra=kept"]);
    let out = c.ok_stdin(&["apply", "-f", "-"], DEPLOY_V2);
    assert!(out.contains("deployment.apps/api configured"), "{out}");
    let d = json(&c.ok(&["get", "deploy", "api", "-o", "json"]));
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["generation"], 2);
    let labels = &d["metadata"]["labels"];
    assert_eq!(
        labels["extra"], "kept",
        "fields apply never managed survive"
    );
    assert!(
        labels.get("stage").is_none(),
        "fields dropped from the manifest go: {labels}"
    );
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0]["image"], "registry.local/api:v2");
    let env: Vec<&str> = containers[0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(env, vec!["A", "C"]);
    // Unchanged re-apply is a no-op: no new generation (the controller may still write status).
    let out = c.ok_stdin(&["apply", "-f", "-"], DEPLOY_V2);
    assert!(out.contains("unchanged"), "{out}");
    let again = json(&c.ok(&["get", "deploy", "api", "-o", "json"]));
    assert_eq!(again["metadata"]["generation"], 2);

    // The scale subresource, as `kubectl scale` uses it.
    let out = c.ok(&["scale", "deployment", "api", "--replicas=5"]);
    assert!(out.contains("scaled"), "{out}");
    let scaled = json(&c.ok(&["get", "deploy", "api", "-o", "json"]));
    assert_eq!(scaled["spec"]["replicas"], 5);
}

#[test]
fn edit_with_an_editor() {
    let c = Cluster::start();
    c.ok(&["create", "configmap", "ed", "--from-literal=color=blue"]);
    let out = Command::new(common::kubectl_path())
        .args(["edit", "configmap", "ed"])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir.path())
        .env("KUBE_EDITOR", "sed -i s/blue/green/")
        .output()
        .expect("kubectl edit");
    common::assert_ok(&["edit"], &out);
    let cm = json(&c.ok(&["get", "cm", "ed", "-o", "json"]));
    assert_eq!(cm["data"]["color"], "green");
}

#[test]
fn watch_sees_added_modified_deleted() {
    let c = Cluster::start();
    c.ok(&["create", "configmap", "sentinel", "--from-literal=k=v"]);
    let mut watcher = Command::new(common::kubectl_path())
        .args(["get", "configmaps", "-w", "--output-watch-events"])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    let mut stdout = watcher.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut all = String::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(all.clone());
        }
    });
    let mut latest = String::new();
    let mut wait_for = |needle: &str| {
        eventually(Duration::from_secs(20), || {
            while let Ok(s) = rx.try_recv() {
                latest = s;
            }
            latest.contains(needle).then(|| latest.clone())
        })
    };
    // The watch is established once it has listed what exists.
    wait_for("sentinel");
    c.ok(&["create", "configmap", "w1", "--from-literal=k=v"]);
    c.ok(&["label", "configmap", "w1", "x=y"]);
    c.ok(&["delete", "configmap", "w1"]);
    let seen = wait_for("DELETED");
    let _ = watcher.kill();
    let _ = watcher.wait();
    // Table rows: EVENT NAME DATA AGE.
    let events: Vec<(String, String)> = seen
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect();
    assert_eq!(
        events.first(),
        Some(&("EVENT".to_string(), "NAME".to_string())),
        "{seen}"
    );
    assert!(
        events.contains(&("ADDED".to_string(), "sentinel".to_string())),
        "{seen}"
    );
    for kind in ["ADDED", "MODIFIED", "DELETED"] {
        assert!(
            events.contains(&(kind.to_string(), "w1".to_string())),
            "no {kind} in {seen}"
        );
    }
}

#[test]
fn delete_explain_api_resources_and_server_dry_run() {
    let c = Cluster::start();
    let dry = c.ok(&[
        "create",
        "configmap",
        "dry",
        "--from-literal=a=b",
        "--dry-run=server",
        "-o",
        "json",
    ]);
    assert_eq!(json(&dry)["metadata"]["name"], "dry");
    let out = c.kubectl(&["get", "configmap", "dry"]);
    assert!(!out.status.success(), "a server dry run stores nothing");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound")
            || String::from_utf8_lossy(&out.stderr).contains("not found")
    );

    c.ok(&["create", "configmap", "gone", "--from-literal=a=b"]);
    let out = c.ok(&["delete", "configmap", "gone"]);
    assert!(out.contains("configmap \"gone\" deleted"), "{out}");

    let resources = c.ok(&["api-resources"]);
    for r in [
        "pods",
        "deployments",
        "namespaces",
        "configmaps",
        "leases",
        "priorityclasses",
        "cronjobs",
    ] {
        assert!(
            resources.contains(r),
            "api-resources lacks {r}: {resources}"
        );
    }
    assert!(resources.contains("deploy"), "short names shown");

    let explained = c.ok(&["explain", "pod.spec"]);
    assert!(
        explained.contains("containers") && explained.contains("FIELDS"),
        "{explained}"
    );
    let explained = c.ok(&["explain", "deployment.spec.template.spec.containers"]);
    assert!(explained.contains("image"), "{explained}");
}

#[test]
fn older_and_newer_kubectl_work_too() {
    let c = Cluster::start();
    for minor in [27, 33] {
        let kubectl = common::kubectl_version(minor);
        let name = format!("cm-{minor}");
        let out = c.kubectl_with(
            &kubectl,
            &["create", "configmap", &name, "--from-literal=a=b"],
            None,
        );
        common::assert_ok(&["create"], &out);
        let out = c.kubectl_with(&kubectl, &["apply", "-f", EXAMPLE], None);
        common::assert_ok(&["apply"], &out);
        let out = c.kubectl_with(&kubectl, &["get", "cm", "-A"], None);
        let text = common::assert_ok(&["get"], &out);
        assert!(
            text.contains(&name) && text.contains("web-config"),
            "kubectl 1.{minor}: {text}"
        );
        let out = c.kubectl_with(
            &kubectl,
            &["get", "deploy", "-n", "demo", "-o", "wide"],
            None,
        );
        let text = common::assert_ok(&["get"], &out);
        assert!(text.contains("web"), "kubectl 1.{minor}: {text}");
    }
}

#[test]
fn events_expire_after_their_ttl() {
    let c = Cluster::start_with(&["--no-agent", "--event-ttl", "2"]);
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: v1
kind: Event
metadata: {name: old-news}
involvedObject: {kind: ConfigMap, name: x, namespace: default, apiVersion: v1}
reason: Testing
message: this event expires
type: Normal
"#,
    );
    let listed = c.ok(&["get", "events"]);
    assert!(listed.contains("this event expires"), "{listed}");
    eventually(Duration::from_secs(30), || {
        let out = c.kubectl(&["get", "event", "old-news"]);
        (!out.status.success()).then_some(())
    });
}

#[test]
fn deleting_a_namespace_with_many_objects_removes_everything() {
    let c = Cluster::start();
    let mut manifest = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: crowded}\n");
    for i in 0..10 {
        manifest.push_str(&format!(
            r#"---
apiVersion: v1
kind: ConfigMap
metadata: {{name: cm-{i}, namespace: crowded}}
data: {{k: v}}
---
apiVersion: v1
kind: Secret
metadata: {{name: secret-{i}, namespace: crowded}}
stringData: {{k: v}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: sa-{i}, namespace: crowded}}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {{name: lease-{i}, namespace: crowded}}
spec: {{holderIdentity: x}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: deploy-{i}, namespace: crowded}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: d{i}}}}}
  template:
    metadata: {{labels: {{app: d{i}}}}}
    spec: {{containers: [{{name: c, image: wkube.local/hello-rust:v1}}]}}
"#
        ));
    }
    c.ok_stdin(&["apply", "-f", "-"], &manifest);
    // The deployments' replicasets and pods appear too.
    eventually(Duration::from_secs(30), || {
        let pods = c.ok(&["get", "pods", "-n", "crowded", "-o", "name"]);
        (pods.lines().count() == 10).then_some(())
    });
    let out = c.ok(&["delete", "namespace", "crowded", "--timeout=120s"]);
    assert!(out.contains("deleted"), "{out}");
    assert!(!c.kubectl(&["get", "namespace", "crowded"]).status.success());
    let left = c.ok(&[
        "get",
        "configmaps,secrets,serviceaccounts,leases,deployments,replicasets,pods",
        "-A",
        "-o",
        "name",
    ]);
    assert!(
        !left.contains("cm-") && !left.contains("deploy-") && !left.contains("lease-"),
        "{left}"
    );
}
