//! The node agent dies (SIGKILL) with a Linux container pod running and comes back on the same
//! data dir: the runtime cleans what the dead agent left and the pod runs again, and once the
//! pod is deleted and wkube stopped, nothing of it is left (process, mount or cgroup, in any
//! hierarchy). Needs root, as the agent does.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::cgroups::pod_cgroups;
use common::oci::push_busybox_image;
use common::registry::Registry;
use common::{eventually, Cluster};

fn pod_json(c: &Cluster, name: &str) -> serde_json::Value {
    let out = c.kubectl(&["get", "pod", name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn processes_of(cgroups: &[PathBuf]) -> Vec<i32> {
    let mut pids: Vec<i32> = cgroups
        .iter()
        .flat_map(|c| {
            std::fs::read_to_string(c.join("cgroup.procs"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn alive(pid: i32) -> bool {
    // A zombie is not running any more.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_string())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

fn running_container(pod: &serde_json::Value) -> Option<(String, u64)> {
    let status = &pod["status"]["containerStatuses"][0];
    status["state"]["running"].as_object()?;
    Some((
        status["containerID"].as_str()?.to_string(),
        status["restartCount"].as_u64().unwrap_or(0),
    ))
}

#[test]
fn agent_killed_and_restarted_leaks_nothing_and_the_pod_runs_again() {
    let registry = Registry::start();
    let image = format!("{}/busybox:restart", registry.host());
    push_busybox_image(&image, false);
    let mut c = Cluster::start_with(&["--restart-backoff", "1", "--node-name", "node-r"]);
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: survivor
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 2
  containers:
    - name: main
      image: {image}
      command: ["sh", "-c", "echo up; exec sleep 600"]
"#
    );
    c.ok_stdin(&["apply", "-f", "-"], &manifest);
    let (first_id, first_restarts) = eventually(Duration::from_secs(90), || {
        running_container(&pod_json(&c, "survivor"))
    });
    let uid = c.ok(&["get", "pod", "survivor", "-o", "jsonpath={.metadata.uid}"]);
    let uid13: String = uid.chars().take(13).collect();
    let old = eventually(Duration::from_secs(30), || {
        let pids = processes_of(&pod_cgroups(&uid13));
        (!pids.is_empty()).then_some(pids)
    });

    // The agent dies without a word. Its container is not its child any more, but it lives on:
    // nothing in a container ties it to the agent's life.
    c.kill();
    assert!(
        old.iter().all(|p| alive(*p)),
        "container processes {old:?} died with the agent"
    );

    // A new agent on the same data dir: the leftovers are killed and cleaned, the pod restarts.
    c.restart();
    eventually(Duration::from_secs(60), || {
        (!old.iter().any(|p| alive(*p))).then_some(())
    });
    let (second_id, second_restarts) = eventually(Duration::from_secs(120), || {
        let pod = pod_json(&c, "survivor");
        running_container(&pod).filter(|(id, n)| *id != first_id || *n > first_restarts)
    });
    assert!(
        second_id != first_id || second_restarts > first_restarts,
        "{second_id} {second_restarts}"
    );
    let new = eventually(Duration::from_secs(30), || {
        let pids = processes_of(&pod_cgroups(&uid13));
        (!pids.is_empty()).then_some(pids)
    });
    assert!(
        new.iter().all(|p| !old.contains(p)),
        "old {old:?} new {new:?}"
    );

    c.ok(&["delete", "pod", "survivor", "--wait=true"]);
    c.stop();
    for pid in old.iter().chain(&new) {
        assert!(!alive(*pid), "process {pid} of the pod left");
    }
    let root = c.dir.path().display().to_string();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let left: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&root)).collect();
    assert!(left.is_empty(), "mounts left: {left:#?}");
    assert_eq!(pod_cgroups(&uid13), Vec::<PathBuf>::new(), "cgroups left");
    let working_in_dir = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/cwd"))
                .is_ok_and(|cwd| cwd.starts_with(c.dir.path()))
        })
        .count();
    assert_eq!(
        working_in_dir, 0,
        "processes working in the cluster's dir left"
    );
}
