//! One [`PodRuntime`] in front of the node's runtimes: each container goes to the runtime its
//! image needs. A wasm artifact runs in wasmtime; a Linux container image (tar layers) runs in
//! the Linux container runtime, if this node has one.
//!
//! The choice follows the image rather than the pod, so a pod may mix both kinds of
//! containers, and the agent's pod worker stays the same for every runtime.

use std::sync::Arc;

use super::{ContainerSpec, PodRuntime, ResolvedImage, RunningContainer, RuntimeError};

/// The node's runtimes, chosen per image.
pub struct ByImage {
    wasm: Arc<dyn PodRuntime>,
    linux: Option<Arc<dyn PodRuntime>>,
}

impl ByImage {
    /// `linux` is `None` on nodes that cannot run Linux containers (not root, say).
    pub fn new(wasm: Arc<dyn PodRuntime>, linux: Option<Arc<dyn PodRuntime>>) -> Self {
        ByImage { wasm, linux }
    }

    /// The runtime for an image.
    pub fn for_image(&self, image: &ResolvedImage) -> Result<&dyn PodRuntime, RuntimeError> {
        if image.container.is_none() {
            return Ok(self.wasm.as_ref());
        }
        self.linux.as_deref().ok_or_else(|| {
            RuntimeError::InvalidImage(format!(
                "{} is a Linux container image and this node runs no Linux containers",
                image.reference
            ))
        })
    }

    /// The names of the runtimes offered, for the node's runtimes label.
    pub fn names(&self) -> Vec<String> {
        let mut names = vec![self.wasm.name().to_string()];
        names.extend(self.linux.iter().map(|l| l.name().to_string()));
        names
    }
}

#[async_trait::async_trait]
impl PodRuntime for ByImage {
    fn name(&self) -> &'static str {
        "wkube"
    }

    async fn prepare(&self, image: &ResolvedImage) -> Result<(), RuntimeError> {
        self.for_image(image)?.prepare(image).await
    }

    async fn start(&self, spec: ContainerSpec) -> Result<Box<dyn RunningContainer>, RuntimeError> {
        self.for_image(&spec.image)?.start(spec).await
    }

    async fn release_pod(&self, pod_uid: &str) {
        self.wasm.release_pod(pod_uid).await;
        if let Some(linux) = &self.linux {
            linux.release_pod(pod_uid).await;
        }
    }
}
