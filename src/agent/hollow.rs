//! Hollow nodes: many simulated nodes in one process, so scheduling and controllers can be
//! exercised at the scale of thousands of nodes on one machine (KWOK's idea, inside wkube).
//!
//! Each hollow node is registered like a real one (labels, capacity, Ready conditions) and
//! renews its Lease, but runs nothing: a pod bound to it is reported Running and Ready at once,
//! and, when it carries [`RUN_SECONDS_ANNOTATION`], ends after that long with the exit code of
//! [`EXIT_CODE_ANNOTATION`] (0 by default). A pod being deleted is removed right away, as a
//! kubelet would once its containers stopped.
//!
//! One watch serves all the nodes, and Lease renewals are spread evenly over the renew interval,
//! so the load on the API server is steady rather than a burst of N writes every interval.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::ResourceExt as _;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tracing::{debug, info, warn, Instrument as _};

use super::node::{self, Capacity};
use super::AgentConfig;

/// Pod annotation: seconds a pod on a hollow node "runs" before it ends.
pub const RUN_SECONDS_ANNOTATION: &str = "wkube.dev/hollow-run-seconds";
/// Pod annotation: the exit code a pod on a hollow node ends with (default 0).
pub const EXIT_CODE_ANNOTATION: &str = "wkube.dev/hollow-exit-code";
/// Label every hollow node carries, so workloads can select or avoid them.
pub const HOLLOW_LABEL: &str = "wkube.dev/hollow";
/// The zone label hollow nodes are spread over.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Registrations and renewals in flight at once.
const CONCURRENCY: usize = 32;

/// What the hollow nodes look like.
#[derive(Debug, Clone)]
pub struct HollowConfig {
    /// Nodes are named `<prefix>-<i>`.
    pub prefix: String,
    pub count: usize,
    /// When > 0, node i is in zone `zone-<i % zones>`.
    pub zones: usize,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub max_pods: u32,
    /// Extra labels on every node.
    pub labels: Vec<(String, String)>,
    pub lease_renew_interval: Duration,
}

impl HollowConfig {
    pub fn node_name(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    fn agent_config(&self, i: usize) -> AgentConfig {
        let name = self.node_name(i);
        let mut config = AgentConfig::new(&name, std::env::temp_dir(), String::new());
        config.labels = self.labels.clone();
        config.labels.push((HOLLOW_LABEL.into(), "true".into()));
        if self.zones > 0 {
            config
                .labels
                .push((ZONE_LABEL.into(), format!("zone-{}", i % self.zones)));
        }
        config.max_pods = self.max_pods;
        config
    }

    fn capacity(&self) -> Capacity {
        Capacity {
            cpu_millis: self.cpu_millis,
            memory_bytes: self.memory_bytes,
            pods: self.max_pods,
            // Nothing is stored on a hollow node; report a plausible disk.
            ephemeral_storage_bytes: 100 << 30,
        }
    }
}

/// Registers the nodes, then keeps them alive and fakes their pods until `shutdown`.
pub async fn run(
    client: kube::Client,
    config: HollowConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> kube::Result<()> {
    let names: HashSet<String> = (0..config.count).map(|i| config.node_name(i)).collect();
    register_all(&client, &config).await?;
    let renewer = tokio::spawn(renew_leases(client.clone(), config.clone()));
    let pods = tokio::spawn(
        fake_pods(client.clone(), Arc::new(names)).instrument(tracing::info_span!("hollow-pods")),
    );
    shutdown.await;
    renewer.abort();
    pods.abort();
    Ok(())
}

async fn register_all(client: &kube::Client, config: &HollowConfig) -> kube::Result<()> {
    let started = std::time::Instant::now();
    let capacity = config.capacity();
    futures::stream::iter(0..config.count)
        .map(|i| {
            let agent = config.agent_config(i);
            let capacity = &capacity;
            async move {
                node::register(client, &agent, capacity, 0, "", &[]).await?;
                node::renew_lease(client, &agent.node_name).await
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    info!(
        nodes = config.count,
        ms = started.elapsed().as_millis() as u64,
        "hollow nodes registered"
    );
    Ok(())
}

/// Renews every Lease once per interval, a slice of the nodes at a time.
async fn renew_leases(client: kube::Client, config: HollowConfig) {
    let slices = (config.lease_renew_interval.as_millis() / 100).max(1) as usize;
    let per_slice = config.count.div_ceil(slices).max(1);
    let mut tick = tokio::time::interval(config.lease_renew_interval / slices as u32);
    let mut next = 0;
    loop {
        tick.tick().await;
        let batch: Vec<String> = (next..(next + per_slice).min(config.count))
            .map(|i| config.node_name(i))
            .collect();
        next = if next + per_slice >= config.count {
            0
        } else {
            next + per_slice
        };
        futures::stream::iter(batch)
            .for_each_concurrent(CONCURRENCY, |name| {
                let client = client.clone();
                async move {
                    if let Err(e) = node::renew_lease(&client, &name).await {
                        debug!(node = %name, error = %e, "hollow lease renewal failed");
                    }
                }
            })
            .await;
    }
}

/// Follows every bound pod and plays the part of its kubelet when it is on a hollow node.
async fn fake_pods(client: kube::Client, nodes: Arc<HashSet<String>>) {
    let api: Api<Pod> = Api::all(client.clone());
    let cfg = watcher::Config::default().fields("spec.nodeName!=");
    // Pods whose end is already scheduled, so a status echo does not schedule it twice.
    let ending: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut events = std::pin::pin!(watcher(api, cfg).applied_objects());
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(pod) => pod,
            Err(e) => {
                debug!(error = %e, "hollow pod watch error; it retries");
                continue;
            }
        };
        let on_hollow = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some_and(|n| nodes.contains(n));
        if on_hollow {
            let client = client.clone();
            let ending = ending.clone();
            tokio::spawn(async move {
                if let Err(e) = play(&client, &pod, &ending).await {
                    debug!(pod = %pod.name_any(), error = %e, "hollow pod update failed");
                }
            });
        }
    }
    warn!("hollow pod watch ended");
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// One step of a hollow pod's life: start it, end it on time, or remove it when deleted.
async fn play(
    client: &kube::Client,
    pod: &Pod,
    ending: &Mutex<HashSet<String>>,
) -> kube::Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        ending.lock().await.remove(&uid);
        return match api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(e),
        };
    }
    match phase(pod) {
        "Pending" => {
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": running_status(pod) })),
            )
            .await?;
            Ok(())
        }
        "Running" => {
            let Some(seconds) = annotation::<f64>(pod, RUN_SECONDS_ANNOTATION) else {
                return Ok(());
            };
            if !ending.lock().await.insert(uid.clone()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs_f64(seconds.max(0.0))).await;
            let code = annotation::<i32>(pod, EXIT_CODE_ANNOTATION).unwrap_or(0);
            let patch = json!({ "status": ended_status(pod, code) });
            let result = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await;
            ending.lock().await.remove(&uid);
            result.map(|_| ())
        }
        _ => Ok(()),
    }
}

fn annotation<T: std::str::FromStr>(pod: &Pod, key: &str) -> Option<T> {
    pod.annotations().get(key)?.trim().parse().ok()
}

fn container_names(pod: &Pod) -> Vec<(String, String)> {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

fn conditions(ready: bool, now: &str) -> Value {
    let status = if ready { "True" } else { "False" };
    let c = |t: &str, s: &str| json!({ "type": t, "status": s, "lastTransitionTime": now });
    json!([
        c("PodScheduled", "True"),
        c("Initialized", "True"),
        c("ContainersReady", status),
        c("Ready", status),
    ])
}

fn running_status(pod: &Pod) -> Value {
    let now = crate::api::object::now_rfc3339();
    let statuses: Vec<Value> = container_names(pod)
        .into_iter()
        .map(|(name, image)| {
            json!({
                "name": name, "image": image, "imageID": "", "ready": true, "started": true,
                "restartCount": 0, "state": { "running": { "startedAt": now } },
            })
        })
        .collect();
    json!({
        "phase": "Running",
        "startTime": now,
        "conditions": conditions(true, &now),
        "containerStatuses": statuses,
    })
}

fn ended_status(pod: &Pod, code: i32) -> Value {
    let now = crate::api::object::now_rfc3339();
    let started: BTreeMap<String, String> = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let at = c.state.as_ref()?.running.as_ref()?.started_at.as_ref()?;
            Some((c.name.clone(), at.0.to_string()))
        })
        .collect();
    let reason = if code == 0 { "Completed" } else { "Error" };
    let statuses: Vec<Value> = container_names(pod)
        .into_iter()
        .map(|(name, image)| {
            let started_at = started.get(&name).cloned().unwrap_or_else(|| now.clone());
            json!({
                "name": name, "image": image, "imageID": "", "ready": false, "started": false,
                "restartCount": 0, "state": { "terminated": {
                    "exitCode": code, "reason": reason, "startedAt": started_at, "finishedAt": now,
                } },
            })
        })
        .collect();
    json!({
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "conditions": conditions(false, &now),
        "containerStatuses": statuses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": {RUN_SECONDS_ANNOTATION: "1.5", EXIT_CODE_ANNOTATION: "3"}},
            "spec": {"nodeName": "hollow-0", "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_hollow_pod_runs_then_ends_with_its_exit_code() {
        let p = pod();
        let running = running_status(&p);
        assert_eq!(running["phase"], "Running");
        assert_eq!(running["containerStatuses"].as_array().unwrap().len(), 2);
        assert_eq!(running["conditions"][3]["status"], "True");
        assert_eq!(annotation::<f64>(&p, RUN_SECONDS_ANNOTATION), Some(1.5));
        let ended = ended_status(&p, 3);
        assert_eq!(ended["phase"], "Failed");
        assert_eq!(
            ended["containerStatuses"][1]["state"]["terminated"]["exitCode"],
            3
        );
        assert_eq!(ended_status(&p, 0)["phase"], "Succeeded");
    }

    #[test]
    fn nodes_are_named_and_spread_over_zones() {
        let config = HollowConfig {
            prefix: "hollow".into(),
            count: 5,
            zones: 3,
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            max_pods: 110,
            labels: vec![("rack".into(), "r1".into())],
            lease_renew_interval: Duration::from_secs(10),
        };
        let a = config.agent_config(4);
        assert_eq!(a.node_name, "hollow-4");
        assert!(a.labels.contains(&(ZONE_LABEL.into(), "zone-1".into())));
        assert!(a.labels.contains(&(HOLLOW_LABEL.into(), "true".into())));
        assert!(a.labels.contains(&("rack".into(), "r1".into())));
    }
}
