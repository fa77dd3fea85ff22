//! The wasm runtime: pods' containers as wasmtime instances.
//!
//! * One [`wasmtime::Engine`] per node (`engine.rs`): pooling allocator, epoch interruption,
//!   async calls. A thread advances the epoch every 10 ms.
//! * [`PodRuntime::prepare`] compiles an image once per digest, keeps the artifact on disk
//!   (`compile_cache.rs`) and a pre-linked instance in memory, so starts are cheap.
//! * [`PodRuntime::start`] gives the guest a WASI context made from the pod spec (`wasi.rs`),
//!   memory and CPU limits (`limits.rs`) and runs it as a task on the runtime's own guest
//!   threads (`container.rs`). Core modules run as WASI preview 1 commands (`p1.rs`),
//!   components as `wasi:cli/run` commands (`p2.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::OnceCell;
use tracing::Instrument;
use wasmtime::Engine;

use crate::runtime::{ContainerSpec, PodRuntime, ResolvedImage, RunningContainer, RuntimeError};

mod compile_cache;
mod container;
pub(crate) mod engine;
pub(crate) mod limits;
mod output;
mod p1;
mod p2;
mod wasi;

#[cfg(test)]
mod tests;

pub use engine::WasmRuntimeConfig;

use compile_cache::{CompileCache, Compiled};
use limits::{CpuGovernor, KillSwitch, MemoryLimiter};

/// What kind of wasm binary a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (`\0asm`, version 1).
    Module,
    /// A component (`\0asm`, version 0x0d, layer 1).
    Component,
}

/// Tells a wasm binary from anything else by its preamble: the magic `\0asm` followed by the
/// version/layer field. Cheap enough to run on every image layer.
pub fn is_wasm(bytes: &[u8]) -> Option<WasmKind> {
    match bytes.get(..8)? {
        [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00] => Some(WasmKind::Module),
        [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00] => Some(WasmKind::Component),
        _ => None,
    }
}

/// An image ready to start: imports resolved against the runtime's WASI linker.
enum Prepared {
    Module(wasmtime::InstancePre<p1::P1State>),
    Component(wasmtime_wasi::p2::bindings::CommandPre<p2::P2State>),
}

/// Runs containers as wasmtime instances. Cheap to share (`Arc<dyn PodRuntime>`); dropping
/// it abandons the containers still running.
pub struct WasmRuntime {
    inner: Arc<Inner>,
    /// Last, so it goes after everything the guests might still use.
    executor: engine::GuestExecutor,
}

struct Inner {
    engine: Engine,
    cache: CompileCache,
    p1_linker: wasmtime::Linker<p1::P1State>,
    p2_linker: wasmtime::component::Linker<p2::P2State>,
    /// Image digest -> prepared image. The cell makes concurrent prepares of one image
    /// compile once; a failed prepare leaves it empty so a later one retries.
    prepared: Mutex<HashMap<String, Arc<OnceCell<Arc<Prepared>>>>>,
}

impl WasmRuntime {
    /// A runtime with the node defaults, keeping compiled images in `cache_dir`.
    pub fn new(cache_dir: &Path) -> Result<Self, RuntimeError> {
        Self::with_config(cache_dir, WasmRuntimeConfig::default())
    }

    pub fn with_config(cache_dir: &Path, config: WasmRuntimeConfig) -> Result<Self, RuntimeError> {
        let engine = engine::build_engine(&config)?;
        engine::start_epoch_ticker(&engine)?;
        let inner = Inner {
            cache: CompileCache::new(cache_dir)?,
            p1_linker: p1::linker(&engine)?,
            p2_linker: p2::linker(&engine)?,
            engine,
            prepared: Mutex::new(HashMap::new()),
        };
        Ok(WasmRuntime {
            inner: Arc::new(inner),
            executor: engine::GuestExecutor::new(config.guest_threads)?,
        })
    }

    /// How many images this runtime compiled itself (rather than loading them from the
    /// cache directory). For metrics and tests.
    pub fn compiled_count(&self) -> u64 {
        self.inner.cache.compiles()
    }

    async fn prepared(&self, image: &ResolvedImage) -> Result<Arc<Prepared>, RuntimeError> {
        let cell = {
            let mut map = self
                .inner
                .prepared
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            map.entry(image.digest.clone()).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            let inner = self.inner.clone();
            let image = image.clone();
            tokio::task::spawn_blocking(move || inner.prepare_blocking(&image))
                .await
                .map_err(|e| RuntimeError::Create(format!("preparing image: {e}")))?
        })
        .await
        .cloned()
    }
}

impl Inner {
    fn prepare_blocking(&self, image: &ResolvedImage) -> Result<Arc<Prepared>, RuntimeError> {
        let prepared = match self.cache.load_or_compile(&self.engine, image)? {
            Compiled::Module(m) => Prepared::Module(p1::pre(&self.p1_linker, &m)?),
            Compiled::Component(c) => Prepared::Component(p2::pre(&self.p2_linker, &c)?),
        };
        Ok(Arc::new(prepared))
    }
}

#[async_trait::async_trait]
impl PodRuntime for WasmRuntime {
    fn name(&self) -> &'static str {
        "wasmtime"
    }

    async fn prepare(&self, image: &ResolvedImage) -> Result<(), RuntimeError> {
        if image.container.is_some() {
            return Err(RuntimeError::InvalidImage(format!(
                "{} is a Linux container image, not a wasm image",
                image.reference
            )));
        }
        let span =
            tracing::info_span!("wasm_prepare", image = %image.reference, digest = %image.digest);
        self.prepared(image).instrument(span).await.map(|_| ())
    }

    async fn start(&self, spec: ContainerSpec) -> Result<Box<dyn RunningContainer>, RuntimeError> {
        let span = tracing::info_span!(
            "wasm_container",
            pod = %format!("{}/{}", spec.namespace, spec.pod_name),
            container = %spec.container_name,
            image = %spec.image.reference,
        );
        let prepared = self.prepared(&spec.image).instrument(span.clone()).await?;
        let _enter = span.enter();
        let started_at = SystemTime::now();
        let kill = Arc::new(KillSwitch::default());
        let oom = Arc::new(AtomicBool::new(false));
        let limiter = MemoryLimiter::new(spec.memory_limit_bytes, oom.clone());
        let governor = CpuGovernor::new(spec.cpu_limit_millis, kill.clone());
        let mut wasi = wasi::builder(&spec)?;
        let engine = &self.inner.engine;
        let ctx = container::RunContext {
            kill,
            oom,
            memory_limit: spec.memory_limit_bytes,
            logs: spec.logs.clone(),
            started_at,
            span: span.clone(),
        };
        let handle = self.executor.handle();
        let running = match &*prepared {
            Prepared::Module(pre) => {
                let store = p1::store(engine, &mut wasi, limiter, governor);
                container::spawn(handle, p1::run(store, pre.clone()), ctx)
            }
            Prepared::Component(pre) => {
                let store = p2::store(engine, &mut wasi, limiter, governor);
                container::spawn(handle, p2::run(store, pre.clone()), ctx)
            }
        };
        tracing::info!(
            kind = if matches!(&*prepared, Prepared::Module(_)) {
                "module"
            } else {
                "component"
            },
            "container started"
        );
        Ok(Box::new(running))
    }
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime").finish_non_exhaustive()
    }
}
