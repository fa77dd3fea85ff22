//! Linux container images end to end: a busybox image built by the test (two layers, one
//! whiteout), pushed with skopeo to a real registry on 127.0.0.1, pulled into the node's
//! image store, and run as a pod through the real kubectl. Needs root, as the agent does.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use common::cgroups::pod_cgroups;
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
    let env = mark(&c);
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
      env: {env}
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
    let uids = short_uids(c, pods);
    delete_pods(c, pods);
    check_clean(c, &uids);
}

fn short_uids(c: &Cluster, pods: &[&str]) -> Vec<String> {
    pods.iter()
        .map(|p| c.ok(&["get", "pod", p, "-o", "jsonpath={.metadata.uid}"]))
        .map(|uid| uid.chars().take(13).collect())
        .collect()
}

/// `kubectl delete --wait=true`; returns how long it took.
fn delete_pods(c: &Cluster, pods: &[&str]) -> Duration {
    let started = std::time::Instant::now();
    let mut args = vec!["delete", "pod", "--wait=true"];
    args.extend(pods);
    c.ok(&args);
    started.elapsed()
}

/// No mount under the cluster's dir, no cgroup and no process of the pods is left.
fn check_clean(c: &Cluster, uids: &[String]) {
    let root = c.dir.path().display().to_string();
    eventually(Duration::from_secs(30), || {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        (!mountinfo.contains(&root)).then_some(())
    });
    // The runtime removes a container's cgroups right after it exits; give it that moment.
    eventually(Duration::from_secs(30), || {
        uids.iter()
            .all(|uid| pod_cgroups(uid).is_empty())
            .then_some(())
    });
    // No process carries this cluster's marker (every test container gets `mark(c)` in its
    // environment).
    let left = marked_processes(c);
    assert!(
        left.is_empty(),
        "processes of deleted pods still run: {left:?}"
    );
}

/// The pids of processes whose environment holds this cluster's marker.
fn marked_processes(c: &Cluster) -> Vec<String> {
    let marker = format!("WKUBE_E2E={}", c.dir.path().display());
    let mut found = Vec::new();
    for proc in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(environ) = std::fs::read(proc.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes())
        {
            found.push(proc.file_name().to_string_lossy().into_owned());
        }
    }
    found
}

/// The `env` entry (YAML flow style) that marks a container as this cluster's, for
/// [`check_clean`]'s process check.
fn mark(c: &Cluster) -> String {
    format!(
        "[{{name: WKUBE_E2E, value: \"{}\"}}]",
        c.dir.path().display()
    )
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
    let env = mark(&c);
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
      env: {env}
      volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
    - name: server
      image: {image}
      command: ["sh", "-c", "mkdir -p /www && echo served-over-localhost > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"]
      env: {env}
    - name: client
      image: {image}
      command: ["sh", "-c", "cat /shared/init.txt; until wget -q -O - http://127.0.0.1:8080/ 2>/dev/null; do sleep 0.2; done"]
      env: {env}
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
      env: {env}
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

/// A shell that traps SIGTERM: `kubectl delete` sends it SIGTERM, the trap writes a marker
/// into a hostPath directory and exits, and the delete returns long before the 30 s grace
/// period would have forced a SIGKILL.
#[test]
fn sigterm_trap_runs_and_delete_does_not_wait_for_the_grace_period() {
    let registry = Registry::start();
    let image = format!("{}/busybox:v1", registry.host());
    push_busybox_image(&image, false);
    let c = Cluster::start_with(&["--restart-backoff", "1", "--node-name", "node-a"]);
    let marks = tempfile::tempdir().expect("marks dir");
    let dir = marks.path().display();
    let env = mark(&c);
    let script = "trap 'echo got-term > /marks/term; exit 0' TERM; echo up > /marks/ready; \
                  while true; do sleep 1; done";
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: trapper
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 30
  volumes:
    - name: marks
      hostPath: {{path: "{dir}", type: Directory}}
  containers:
    - name: main
      image: {image}
      command: ["sh", "-c", "{script}"]
      env: {env}
      volumeMounts: [{{name: marks, mountPath: /marks}}]
"#
    );
    c.ok_stdin(&["apply", "-f", "-"], &manifest);
    wait_for(&c, "trapper", |p| p["status"]["phase"] == "Running");
    eventually(Duration::from_secs(30), || {
        marks.path().join("ready").is_file().then_some(())
    });
    // The process check of check_clean sees the running container.
    assert!(
        !marked_processes(&c).is_empty(),
        "the container's process is not found"
    );
    let events = events_of(&c, "trapper");
    let pulled = events
        .lines()
        .find(|l| l.contains("Successfully pulled image"))
        .unwrap_or_default();
    let expected_start = format!("Successfully pulled image \"{image}\" in ");
    assert!(
        pulled.contains(&expected_start)
            && pulled.contains("s including waiting). Image size: ")
            && pulled.ends_with(" bytes."),
        "{events}"
    );
    let uids = short_uids(&c, &["trapper"]);
    let took = delete_pods(&c, &["trapper"]);
    let term = std::fs::read_to_string(marks.path().join("term")).unwrap_or_default();
    assert_eq!(term, "got-term\n", "the SIGTERM trap did not run");
    // The trap answers within a second (the loop's sleep); a SIGKILL would come after 30 s.
    assert!(
        took < Duration::from_secs(20),
        "delete took {took:?}: the container did not stop on SIGTERM"
    );
    check_clean(&c, &uids);
}

/// Runs `kubectl get pod NAME -w` with a jsonpath of the first container's waiting reason and
/// message, until `done` holds for the lines seen so far.
fn watch_waiting(c: &Cluster, name: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    use std::io::BufRead as _;
    let template = "jsonpath={.status.containerStatuses[0].state.waiting.reason}|\
                    {.status.containerStatuses[0].state.waiting.message}{\"\\n\"}";
    let mut child = std::process::Command::new(common::kubectl_path())
        .args(["get", "pod", name, "-w", "-o", template])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", c.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut lines = Vec::new();
    while !done(&lines) && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            lines.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

/// Whether `first` shows up in `lines` and `then` after it.
fn seen_in_order(lines: &[String], first: &str, then: &str) -> bool {
    lines
        .iter()
        .position(|l| l.starts_with(first))
        .is_some_and(|i| lines[i..].iter().any(|l| l.starts_with(then)))
}

fn events_of(c: &Cluster, name: &str) -> String {
    c.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        "custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message",
    ])
}

/// An image the registry does not have: ErrImagePull with the registry's own message, then
/// ImagePullBackOff, with Pulling/Failed/BackOff events.
#[test]
fn missing_image_goes_from_err_image_pull_to_image_pull_back_off() {
    let registry = Registry::start();
    let image = format!("{}/does-not-exist:v1", registry.host());
    let c = Cluster::start_with(&["--restart-backoff", "1", "--node-name", "node-a"]);
    let env = mark(&c);
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: missing
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: {image}
      env: {env}
"#
    );
    c.ok_stdin(&["apply", "-f", "-"], &manifest);
    let lines = watch_waiting(&c, "missing", |l| {
        seen_in_order(l, "ErrImagePull|", "ImagePullBackOff|")
    });
    assert!(
        seen_in_order(&lines, "ErrImagePull|", "ImagePullBackOff|"),
        "waiting states seen: {lines:#?}"
    );
    // docker-registry's answer for an unknown repository, as it sent it.
    let pull_error = lines
        .iter()
        .find(|l| l.starts_with("ErrImagePull|"))
        .cloned()
        .unwrap_or_default();
    assert!(
        pull_error.contains("repository name not known to registry")
            || pull_error.contains("manifest unknown"),
        "{pull_error}"
    );
    let events = events_of(&c, "missing");
    assert!(
        events.contains(&format!("Pulling image \"{image}\"")),
        "{events}"
    );
    assert!(
        events.contains(&format!("Failed to pull image \"{image}\"")),
        "{events}"
    );
    assert!(
        events.contains(&format!("Back-off pulling image \"{image}\"")),
        "{events}"
    );
    delete_and_check_clean(&c, &["missing"]);
}

/// RuntimeClasses: the two default classes are listed as upstream prints them, the node
/// reports both handlers, `linux` runs a busybox pod, an unknown class is refused with
/// upstream's message, and a wasm image under `linux` fails with a reason and an event.
#[test]
fn runtime_classes_force_the_runtime() {
    let registry = Registry::start();
    let image = format!("{}/busybox:v1", registry.host());
    push_busybox_image(&image, false);
    let wasm_image = format!("{}/hello-wasm:v1", registry.host());
    let module =
        wat::parse_str(r#"(module (func (export "_start")) (memory (export "memory") 1))"#)
            .expect("wat");
    common::registry::skopeo_push_wasm(&module, &wasm_image);
    let mut c = Cluster::start_with(&["--restart-backoff", "1", "--node-name", "node-a"]);

    let classes = c.ok(&["get", "runtimeclass"]);
    let rows: Vec<Vec<&str>> = classes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "HANDLER", "AGE"], "{classes}");
    assert!(
        rows.iter().any(|r| r[..2] == ["linux", "linux"]),
        "{classes}"
    );
    assert!(
        rows.iter().any(|r| r[..2] == ["wasmtime", "wasmtime"]),
        "{classes}"
    );
    let handlers = c.ok(&[
        "get",
        "node",
        "node-a",
        "-o",
        "jsonpath={.status.runtimeHandlers[*].name}",
    ]);
    assert_eq!(handlers, "wasmtime linux");

    let env = mark(&c);
    let pod = |name: &str, class: &str, image: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  runtimeClassName: {class}
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
    - name: main
      image: {image}
      command: ["sh", "-c", "echo under-linux"]
      env: {env}
"#
        )
    };
    let refused = c.kubectl_stdin(&["apply", "-f", "-"], &pod("nope-pod", "nope", &image));
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            r#"pods "nope-pod" is forbidden: pod rejected: RuntimeClass "nope" not found"#
        ),
        "{stderr}"
    );
    assert!(stderr.contains("Forbidden"), "{stderr}");

    c.ok_stdin(&["apply", "-f", "-"], &pod("linux-pod", "linux", &image));
    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod("wasm-under-linux", "linux", &wasm_image),
    );
    wait_for(&c, "linux-pod", |p| p["status"]["phase"] == "Succeeded");
    assert_eq!(c.ok(&["logs", "linux-pod"]), "under-linux\n");
    let mismatch = wait_for(&c, "wasm-under-linux", |p| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerError"
    });
    let message = mismatch["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        message,
        format!(
            "image \"{wasm_image}\" is a wasm artifact, but RuntimeClass \"linux\" (handler \"linux\") runs Linux container images only"
        )
    );
    let events = events_of(&c, "wasm-under-linux");
    assert!(
        events.contains("Failed") && events.contains(&format!("Error: {message}")),
        "{events}"
    );
    delete_and_check_clean(&c, &["linux-pod", "wasm-under-linux"]);

    // Served with an OpenAPI schema; the defaults are created at start without overwriting
    // what a user changed, and come back if deleted.
    let explained = c.ok(&["explain", "runtimeclass.handler"]);
    assert!(explained.contains("FIELD: handler"), "{explained}");
    c.ok(&["label", "runtimeclass", "linux", "edited=yes"]);
    c.ok(&["delete", "runtimeclass", "wasmtime"]);
    c.restart();
    let labels = c.ok(&[
        "get",
        "runtimeclass",
        "linux",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert_eq!(labels, r#"{"edited":"yes"}"#);
    let handler = c.ok(&[
        "get",
        "runtimeclass",
        "wasmtime",
        "-o",
        "jsonpath={.handler}",
    ]);
    assert_eq!(handler, "wasmtime");
}

/// `wkube image pull` into a fresh node store: per-layer progress lines (stdout is not a
/// terminal here), the manifest digest, and the image listed as a container image. A second
/// pull reuses both layers.
#[test]
fn wkube_image_pull_shows_progress_and_the_digest() {
    let registry = Registry::start();
    let image = format!("{}/busybox:v1", registry.host());
    let pushed = push_busybox_image(&image, false);
    let node = tempfile::tempdir().expect("node dir");
    let wkube = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wkube"))
            .args(args)
            .args(["--agent-data-dir", &node.path().display().to_string()])
            .output()
            .expect("run wkube");
        common::assert_ok(args, &out)
    };
    let first = wkube(&["image", "pull", &image]);
    let layer_lines = |out: &str, what: &str| {
        out.lines()
            .filter(|l| l.starts_with("layer sha256:") && l.contains(what))
            .count()
    };
    assert_eq!(layer_lines(&first, "to download"), 2, "{first}");
    assert!(layer_lines(&first, "(100%)") >= 2, "{first}");
    assert_eq!(layer_lines(&first, "unpacked"), 2, "{first}");
    assert!(
        first.contains(&format!("digest: {}\n", pushed.manifest_digest)),
        "{first}"
    );
    assert!(first.contains("(container image)"), "{first}");

    let again = wkube(&["image", "pull", &image]);
    assert_eq!(layer_lines(&again, "already exists"), 2, "{again}");
    assert_eq!(layer_lines(&again, "unpacked"), 0, "{again}");

    let listed = wkube(&["image", "ls"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with(&image))
        .unwrap_or_default();
    assert_eq!(row.split_whitespace().nth(1), Some("container"), "{listed}");
}

/// A registry that requires a password: without `imagePullSecrets` the pull is refused with
/// the registry's 401, with a `kubernetes.io/dockerconfigjson` secret the pod runs.
#[test]
fn image_pull_secrets_open_a_private_registry() {
    // bcrypt of "hunter2" (glibc crypt, cost 4), as in tests/image_registry.rs.
    let registry = Registry::start_with(Some(
        "alice:$2b$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm",
    ));
    let image = format!("{}/private/busybox:v1", registry.host());
    common::oci::push_busybox_image_as(&image, false, Some("alice:hunter2"));
    let c = Cluster::start_with(&["--restart-backoff", "1", "--node-name", "node-a"]);
    let env = mark(&c);
    let pod = |name: &str, secrets: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  imagePullSecrets: {secrets}
  containers:
    - name: main
      image: {image}
      command: ["sh", "-c", "echo pulled-with-a-secret"]
      env: {env}
"#
        )
    };
    c.ok_stdin(&["apply", "-f", "-"], &pod("anonymous", "[]"));
    let refused = wait_for(&c, "anonymous", |p| {
        let reason = &p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"];
        reason == "ErrImagePull" || reason == "ImagePullBackOff"
    });
    let message = refused["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    assert!(message.contains("unauthorized"), "{message}");

    c.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", registry.host()),
        "--docker-username=alice",
        "--docker-password=hunter2",
    ]);
    c.ok_stdin(
        &["apply", "-f", "-"],
        &pod("with-secret", "[{name: regcred}]"),
    );
    wait_for(&c, "with-secret", |p| p["status"]["phase"] == "Succeeded");
    assert_eq!(c.ok(&["logs", "with-secret"]), "pulled-with-a-secret\n");
    delete_and_check_clean(&c, &["anonymous", "with-secret"]);
}
