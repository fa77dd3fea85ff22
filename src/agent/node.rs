//! The agent's Node: registration, status heartbeats and the Lease in `kube-node-lease`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::AgentConfig;

/// How often the node's Lease is renewed by default (the kubelet's: a quarter of 40 s).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the Node's conditions are refreshed.
pub const STATUS_PERIOD: Duration = Duration::from_secs(30);

/// The label listing the runtimes a node offers (dot-separated: label values allow no commas).
pub const RUNTIMES_LABEL: &str = "wkube.dev/runtimes";

/// What the node offers, measured once at start.
#[derive(Debug, Clone)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub pods: u32,
    pub ephemeral_storage_bytes: u64,
}

impl Capacity {
    pub fn detect(config: &AgentConfig) -> Capacity {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        Capacity {
            cpu_millis: config.cpu_millis.unwrap_or(cpus * 1000),
            memory_bytes: config.memory_bytes.unwrap_or_else(total_memory),
            pods: config.max_pods,
            ephemeral_storage_bytes: disk_size(&config.data_dir),
        }
    }

    fn as_json(&self) -> Value {
        json!({
            "cpu": format!("{}m", self.cpu_millis),
            "memory": format!("{}Ki", self.memory_bytes / 1024),
            "pods": self.pods.to_string(),
            "ephemeral-storage": format!("{}Ki", self.ephemeral_storage_bytes / 1024),
        })
    }
}

fn total_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(1 << 30, |kib| kib * 1024)
}

fn disk_size(path: &std::path::Path) -> u64 {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs writes into the zeroed struct we own; the path is a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c.as_ptr(), &mut st) == 0 {
            st.f_blocks as u64 * st.f_frsize as u64
        } else {
            0
        }
    }
}

fn os_release() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".to_string())
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn read_id(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// How many images a node lists in its status, largest first (the kubelet's
/// `nodeStatusMaxImages` default): enough for image locality, bounded for huge stores.
const MAX_REPORTED_IMAGES: usize = 50;

/// The images in a node's store as `status.images` lists them (by reference and by digest,
/// with their size), for the scheduler's image locality.
pub fn reported_images(store: &crate::image::ImageStore) -> Vec<Value> {
    let mut images = store.list();
    images.sort_by(|a, b| {
        b.size
            .cmp(&a.size)
            .then_with(|| a.reference.cmp(&b.reference))
    });
    images
        .iter()
        .take(MAX_REPORTED_IMAGES)
        .map(|i| {
            json!({
                "names": [format!("{}@{}", repository_of(&i.reference), i.digest), i.reference],
                "sizeBytes": i.size,
            })
        })
        .collect()
}

/// `registry/repo` of a normalized reference, without its tag or digest.
fn repository_of(reference: &str) -> &str {
    if let Some((repository, _digest)) = reference.split_once('@') {
        return repository;
    }
    match reference.rsplit_once(':') {
        // A colon followed by a slash belongs to a registry port, not a tag.
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => reference,
    }
}

/// The Node status the agent reports.
pub fn node_status(
    config: &AgentConfig,
    capacity: &Capacity,
    log_port: u16,
    images: &[Value],
) -> Value {
    let now = crate::api::object::now_rfc3339();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": config.started_at,
        })
    };
    json!({
        "capacity": capacity.as_json(),
        "allocatable": capacity.as_json(),
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "wkube agent is posting ready status"),
        ],
        "addresses": [
            { "type": "InternalIP", "address": config.node_ip.to_string() },
            { "type": "Hostname", "address": config.node_name },
        ],
        "daemonEndpoints": { "kubeletEndpoint": { "Port": log_port } },
        "images": images,
        // The handlers RuntimeClasses may name on this node (upstream's status.runtimeHandlers).
        "runtimeHandlers": config.runtime_names.iter().map(|n| json!({ "name": n })).collect::<Vec<_>>(),
        "nodeInfo": {
            "machineID": read_id("/etc/machine-id"),
            "systemUUID": read_id("/etc/machine-id"),
            "bootID": read_id("/proc/sys/kernel/random/boot_id"),
            "kernelVersion": kernel_version(),
            "osImage": os_release(),
            "containerRuntimeVersion": "wasmtime://48",
            "kubeletVersion": format!("v{}.{}.0-wkube", crate::api::discovery::KUBE_MAJOR, crate::api::discovery::KUBE_MINOR),
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH },
        },
    })
}

/// Creates the Node if it does not exist, then writes its labels and status.
pub async fn register(
    client: &kube::Client,
    config: &AgentConfig,
    capacity: &Capacity,
    log_port: u16,
    cert_sha256: &str,
    images: &[Value],
) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = json!({
        "kubernetes.io/hostname": config.node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH },
        RUNTIMES_LABEL: config.runtime_names.join("."),
    });
    for (k, v) in &config.labels {
        labels[k] = json!(v);
    }
    let annotations = json!({ super::SERVING_CERT_ANNOTATION: cert_sha256 });
    match nodes.get_opt(&config.node_name).await? {
        None => {
            let node: Node = serde_json::from_value(json!({
                "metadata": { "name": config.node_name, "labels": labels, "annotations": annotations },
                "spec": {},
            }))
            .map_err(kube::Error::SerdeError)?;
            match nodes.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Some(_) => {
            let patch = json!({ "metadata": { "labels": labels, "annotations": annotations } });
            nodes
                .patch(
                    &config.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await?;
        }
    }
    update_status(client, config, capacity, log_port, images).await
}

pub async fn update_status(
    client: &kube::Client,
    config: &AgentConfig,
    capacity: &Capacity,
    log_port: u16,
    images: &[Value],
) -> kube::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({ "status": node_status(config, capacity, log_port, images) });
    nodes
        .patch_status(
            &config.node_name,
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
    Ok(())
}

/// Creates or renews the node's Lease.
pub async fn renew_lease(client: &kube::Client, node_name: &str) -> kube::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    match leases.get_opt(node_name).await? {
        Some(_) => {
            let patch = json!({ "spec": { "holderIdentity": node_name, "renewTime": now, "leaseDurationSeconds": LEASE_DURATION_SECONDS } });
            leases
                .patch(node_name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
        None => {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": { "name": node_name, "namespace": "kube-node-lease" },
                "spec": { "holderIdentity": node_name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": now },
            }))
            .map_err(kube::Error::SerdeError)?;
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_drops_tag_or_digest_but_not_a_port() {
        assert_eq!(
            repository_of("127.0.0.1:5000/demo/bb:v1"),
            "127.0.0.1:5000/demo/bb"
        );
        assert_eq!(
            repository_of("docker.io/library/x@sha256:ab"),
            "docker.io/library/x"
        );
        assert_eq!(
            repository_of("127.0.0.1:5000/demo/bb"),
            "127.0.0.1:5000/demo/bb"
        );
    }
}
