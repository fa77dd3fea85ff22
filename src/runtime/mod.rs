//! Pod runtimes: what turns a container of a pod into something running on this node.
//!
//! The agent resolves everything a container needs (image file, argv, environment, volumes,
//! limits) into a [`ContainerSpec`] and hands it to a [`PodRuntime`]; the runtime reports back
//! one [`ExitStatus`]. The wasm runtime ([`wasm`]) and the Linux container runtime
//! ([`container`]) implement it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub mod container;
pub mod logs;
pub mod select;
pub mod wasm;

/// One directory made visible to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Directory on the node.
    pub host_path: PathBuf,
    /// Where the container sees it (absolute, e.g. `/config`).
    pub container_path: String,
    pub read_only: bool,
}

/// The image as found in the node's content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The reference the pod named, e.g. `127.0.0.1:5000/hello:v1`.
    pub reference: String,
    /// `sha256:...` of the image manifest (what `imageID` reports).
    pub digest: String,
    /// The wasm binary (module or component) on disk. Empty for container images.
    pub wasm_path: PathBuf,
    /// For a Linux container image: its unpacked layers and config. `None` for wasm images.
    pub container: Option<crate::image::ContainerImage>,
}

/// Everything needed to start one container of a pod.
#[derive(Clone)]
pub struct ContainerSpec {
    pub pod_uid: String,
    pub namespace: String,
    pub pod_name: String,
    pub container_name: String,
    pub image: ResolvedImage,
    /// argv as the program sees it; argv[0] is the program name.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub working_dir: Option<String>,
    /// `resources.limits.memory` in bytes.
    pub memory_limit_bytes: Option<u64>,
    /// `resources.limits.cpu` in millicores.
    pub cpu_limit_millis: Option<u64>,
    /// `resources.requests.cpu` in millicores.
    pub cpu_request_millis: Option<u64>,
    /// What only the Linux container runtime uses: securityContext, shareProcessNamespace.
    pub linux: container::LinuxOptions,
    /// Where stdout and stderr go.
    pub logs: Arc<dyn logs::LogSink>,
}

impl std::fmt::Debug for ContainerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSpec")
            .field("pod", &format!("{}/{}", self.namespace, self.pod_name))
            .field("container", &self.container_name)
            .field("image", &self.image.reference)
            .field("argv", &self.argv)
            .finish_non_exhaustive()
    }
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    pub exit_code: i32,
    /// Kubernetes' terminated reason: `Completed`, `Error`, `OOMKilled`, `DeadlineExceeded`,
    /// `Killed` (stopped by the agent), `StartError`.
    pub reason: String,
    /// A human explanation (trap message, missing export, ...), shown in `kubectl describe`.
    pub message: Option<String>,
    pub started_at: SystemTime,
    pub finished_at: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not something this runtime can run (e.g. not wasm at all).
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// The container could not be created (bad volume, bad working dir, compile error, ...).
    #[error("cannot create container: {0}")]
    Create(String),
}

/// A started container. Dropping it does not stop it; call [`RunningContainer::stop`].
#[async_trait::async_trait]
pub trait RunningContainer: Send + Sync {
    /// Waits for the container to end (returns at once if it already has).
    async fn wait(&self) -> ExitStatus;
    /// Asks the container to stop, forcing it after `grace`. Resolves when it has ended.
    async fn stop(&self, grace: Duration) -> ExitStatus;
}

/// A way to run containers.
#[async_trait::async_trait]
pub trait PodRuntime: Send + Sync {
    /// The runtime's name as RuntimeClass handlers and node labels use it (`wasmtime`).
    fn name(&self) -> &'static str;
    /// Prepares (e.g. compiles and caches) an image ahead of its first start.
    async fn prepare(&self, image: &ResolvedImage) -> Result<(), RuntimeError>;
    /// Starts a container.
    async fn start(&self, spec: ContainerSpec) -> Result<Box<dyn RunningContainer>, RuntimeError>;
    /// Every container of the pod has ended and none will start again: release what the
    /// runtime keeps per pod (the Linux runtime's sandbox namespaces). Nothing by default.
    async fn release_pod(&self, _pod_uid: &str) {}
}
