//! Linux container images end to end: a busybox image built by the test (two layers, one
//! whiteout), pushed with skopeo to a real registry on 127.0.0.1, pulled into the node's
//! image store, and run as a pod through the real kubectl. Needs root, as the agent does.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use common::oci::push_busybox_image;
use common::registry::Registry;
use common::{eventually, Cluster};
use wkube::image::{ImageStore, ImageStoreConfig, PullEvent, RegistryAuth};

fn store(dir: &std::path::Path) -> ImageStore {
    ImageStore::open(ImageStoreConfig {
        root: dir.to_path_buf(),
        insecure_registries: Vec::new(),
    })
    .expect("open store")
}

#[tokio::test]
async fn pull_picks_the_node_platform_and_unpacks_layers_once() {
    assert_eq!(std::env::consts::ARCH, "x86_64", "the test image is amd64");
    let registry = Registry::start();
    let reference = format!("{}/busybox:multi", registry.host());
    let pushed = push_busybox_image(&reference, true);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let events = std::sync::Mutex::new(Vec::new());
    let progress = |e: PullEvent| events.lock().expect("events").push(e);
    let image = store
        .pull(&reference, &RegistryAuth::Anonymous, &progress)
        .await
        .expect("pull");
    assert_eq!(Some(image.digest.clone()), pushed.index_digest);
    let container = image.container.clone().expect("a container image");
    assert_eq!(container.config.architecture, "amd64");
    assert_eq!(container.config.cmd, vec!["sh"]);
    assert_eq!(container.config.env, vec!["PATH=/bin", "FROM_IMAGE=yes"]);
    assert_eq!(container.layers.len(), 2);
    let (base, top) = (&container.layers[0], &container.layers[1]);
    assert!(base.join("bin/busybox").is_file());
    assert!(base.join("etc/doomed").is_file());
    // The whiteout is stored in overlayfs's format: a 0/0 character device.
    let whiteout = std::fs::symlink_metadata(top.join("etc/doomed")).expect("whiteout");
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    assert!(!top.join("etc/.wh.doomed").exists());
    let unpacked = |events: &[PullEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, PullEvent::Unpacked { .. }))
            .count()
    };
    assert_eq!(unpacked(&events.lock().expect("events")), 2);

    // The amd64 manifest was the one followed: it is in the store, the arm64 one is not.
    let blob = |d: &str| dir.path().join("blobs/sha256").join(&d["sha256:".len()..]);
    assert!(blob(&pushed.manifest_digest).is_file());
    assert!(!blob(pushed.other_manifest_digest.as_deref().expect("decoy")).exists());

    // Pulling again (or another tag of the same layers) unpacks nothing again.
    events.lock().expect("events").clear();
    let again = store
        .pull(&reference, &RegistryAuth::Anonymous, &progress)
        .await
        .expect("pull again");
    assert_eq!(again, image);
    assert_eq!(unpacked(&events.lock().expect("events")), 0);
    assert_eq!(store.get(&reference), Some(image));
    // Nothing left in tmp/.
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .count(),
        0
    );
}

fn pod_json(c: &Cluster, name: &str) -> serde_json::Value {
    let out = c.kubectl(&["get", "pod", name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The real kubectl applies a pod whose image is the busybox image in the test's registry:
/// it runs as a Linux container in `wkube up`'s own agent, its output reaches `kubectl logs`,
/// its exit code and reason reach the pod status, the whited-out file is gone, and deleting
/// the pod leaves no mount, cgroup or process behind.
#[test]
fn busybox_pod_runs_as_a_linux_container() {
    let registry = Registry::start();
    let image = format!("{}/busybox:v1", registry.host());
    push_busybox_image(&image, false);
    let c = Cluster::start_with(&["--restart-backoff", "1", "--node-name", "node-a"]);
    let node = c.ok(&["get", "node", "node-a", "-o", "jsonpath={.metadata.labels}"]);
    assert!(node.contains("wasmtime.linux"), "runtimes label: {node}");
    let script = "echo hi; test -e /etc/doomed && echo doomed-is-back; cat /etc/added; \
                  echo env=$FROM_IMAGE; exit 3";
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: busybox-exit
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  containers:
    - name: main
      image: {image}
      command: ["sh", "-c", "{script}"]
"#
    );
    c.ok_stdin(&["apply", "-f", "-"], &manifest);
    let pod = eventually(Duration::from_secs(90), || {
        let p = pod_json(&c, "busybox-exit");
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    let status = &pod["status"]["containerStatuses"][0];
    let terminated = &status["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 3, "{status}");
    assert_eq!(terminated["reason"], "Error", "{status}");
    assert!(status["containerID"]
        .as_str()
        .is_some_and(|id| id.starts_with("linux://")));
    let logs = c.ok(&["logs", "busybox-exit"]);
    assert_eq!(logs, "hi\nfrom the top layer\nenv=yes\n");

    delete_and_check_clean(&c, &["busybox-exit"]);
}

/// Deletes pods and checks that their containers left no mount (of this cluster's data dir)
/// and no cgroup (container ids start with the pod uid's first 13 characters).
fn delete_and_check_clean(c: &Cluster, pods: &[&str]) {
    let uids: Vec<String> = pods
        .iter()
        .map(|p| c.ok(&["get", "pod", p, "-o", "jsonpath={.metadata.uid}"]))
        .map(|uid| uid.chars().take(13).collect())
        .collect();
    let mut args = vec!["delete", "pod", "--wait=true"];
    args.extend(pods);
    c.ok(&args);
    let root = c.dir.path().display().to_string();
    eventually(Duration::from_secs(30), || {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        (!mountinfo.contains(&root)).then_some(())
    });
    let hierarchies = std::fs::read_dir("/sys/fs/cgroup").expect("cgroup root");
    for hierarchy in hierarchies.flatten() {
        let Ok(entries) = std::fs::read_dir(hierarchy.path().join("wkube")) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                !uids.iter().any(|uid| name.starts_with(uid.as_str())),
                "cgroup left: {}",
                entry.path().display()
            );
        }
    }
}

/// Waits for the pod to satisfy `ok`; on a timeout the failure shows the pod's last status and
/// events, so a rare hang can be told apart from a slow machine.
fn wait_for(c: &Cluster, name: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let p = pod_json(c, name);
        if ok(&p) {
            return p;
        }
        if std::time::Instant::now() > deadline {
            let events = c.kubectl(&[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={name}"),
            ]);
            panic!(
                "pod {name} did not get there within 90s; status: {}\nevents:\n{}",
                serde_json::to_string_pretty(&p["status"]).unwrap_or_default(),
                String::from_utf8_lossy(&events.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One pod, three containers: an init container fills a shared emptyDir, then a server and a
/// client that reach each other on 127.0.0.1 (the pod's own network namespace) and read the
/// shared volume. And a pod that overruns its 32Mi memory limit ends `OOMKilled`.
#[test]
fn pod_containers_share_localhost_and_volumes_and_oom_is_reported() {
    let registry = Registry::start();
    let image = format!("{}/busybox:v1", registry.host());
    push_busybox_image(&image, false);
    let c = Cluster::start_with(&["--restart-backoff", "1", "--node-name", "node-a"]);
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: together
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  volumes:
    - name: shared
      emptyDir: {{}}
  initContainers:
    - name: init
      image: {image}
      command: ["sh", "-c", "echo from-init > /shared/init.txt"]
      volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
    - name: server
      image: {image}
      command: ["sh", "-c", "mkdir -p /www && echo served-over-localhost > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"]
    - name: client
      image: {image}
      command: ["sh", "-c", "cat /shared/init.txt; until wget -q -O - http://127.0.0.1:8080/ 2>/dev/null; do sleep 0.2; done"]
      volumeMounts: [{{name: shared, mountPath: /shared}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  containers:
    - name: hog
      image: {image}
      command: ["tail", "/dev/zero"]
      resources:
        limits: {{memory: 32Mi}}
"#
    );
    c.ok_stdin(&["apply", "-f", "-"], &manifest);
    let client_done = |p: &serde_json::Value| {
        p["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["name"] == "client" && s["state"]["terminated"]["exitCode"] == 0)
    };
    wait_for(&c, "together", client_done);
    assert_eq!(
        c.ok(&["logs", "together", "-c", "client"]),
        "from-init\nserved-over-localhost\n"
    );
    let hog = wait_for(&c, "hog", |p| p["status"]["phase"] == "Failed");
    let terminated = &hog["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    assert_eq!(terminated["exitCode"], 137, "{terminated}");

    delete_and_check_clean(&c, &["together", "hog"]);
}
