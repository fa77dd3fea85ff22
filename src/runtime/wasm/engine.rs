//! The one wasmtime [`Engine`] a node shares, the thread that drives its epochs, and the
//! tokio runtime guests run on.
//!
//! Why a separate tokio runtime: guest code runs *inside* a task's poll between epoch
//! yields. On the agent's own runtime every guest would hold one of its worker threads for up
//! to a tick at a time; on its own runtime the OS scheduler shares the CPU between the agent's
//! threads and the guests' threads instead, and the agent stays responsive however many pods
//! spin.

use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::runtime::RuntimeError;

/// How often the epoch advances: the longest a guest runs before it yields to others.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Tunables of a [`super::WasmRuntime`]. The defaults suit a node; tests use smaller pools.
#[derive(Debug, Clone)]
pub struct WasmRuntimeConfig {
    /// Most containers (instances) that can run at once. The pooling allocator reserves
    /// (virtual, not resident) memory for this many up front.
    pub max_instances: u32,
    /// Largest linear memory any instance may have. Per-container limits
    /// (`resources.limits.memory`) are enforced below this by the store's limiter.
    pub max_memory_bytes: u64,
    /// Threads running guest code (default: one per CPU).
    pub guest_threads: Option<usize>,
}

impl Default for WasmRuntimeConfig {
    fn default() -> Self {
        WasmRuntimeConfig {
            max_instances: 1000,
            max_memory_bytes: 4 << 30,
            guest_threads: None,
        }
    }
}

/// The engine configuration wkube's guests run under (pods here, admission policies in
/// `crate::plugin_host`): epoch interruption, the component model, and a pooling allocator
/// with room for `max_instances` instances (each of up to `core_per_component` core instances,
/// since a component holds several: the program, WASI adapters, shims) of up to
/// `max_memory_bytes` each.
pub(crate) fn pooled_config(
    max_instances: u32,
    core_per_component: u32,
    max_memory_bytes: u64,
) -> Config {
    let n = max_instances.max(1);
    let max_memory = usize::try_from(max_memory_bytes).unwrap_or(usize::MAX);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(core_per_component.max(1)))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size(max_memory)
        // Big toolchains (Go, .NET) have large function tables; this is virtual memory only.
        .table_elements(100_000)
        .max_core_instance_size(4 << 20);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .wasm_component_model(true)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config.cache(None);
    config
}

/// Builds the engine: async calls (guests are tokio tasks), epoch interruption (so they
/// yield and can be stopped), the pooling allocator (instantiation in microseconds, bounded
/// address-space use) and no wasmtime cache (we keep our own, keyed by image digest).
pub(crate) fn build_engine(cfg: &WasmRuntimeConfig) -> Result<Engine, RuntimeError> {
    // Rust and C components hold 3 core instances or fewer.
    let config = pooled_config(cfg.max_instances, 4, cfg.max_memory_bytes);
    Engine::new(&config)
        .map_err(|e| RuntimeError::Create(format!("cannot configure wasmtime: {e:#}")))
}

/// Starts the thread that advances the engine's epoch every [`EPOCH_TICK`]. It holds only a
/// weak reference, so it ends by itself once the engine (and every module of it) is gone.
pub(crate) fn start_epoch_ticker(engine: &Engine) -> Result<(), RuntimeError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        })
        .map(|_| ())
        .map_err(|e| RuntimeError::Create(format!("cannot start epoch thread: {e}")))
}

/// The tokio runtime guests run on. Dropping it (with the [`super::WasmRuntime`]) abandons
/// running guests without blocking: `shutdown_background` is the only way to drop a runtime
/// that is safe inside another runtime's task.
pub(crate) struct GuestExecutor {
    rt: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl GuestExecutor {
    pub(crate) fn new(threads: Option<usize>) -> Result<Self, RuntimeError> {
        let threads = threads
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1)
            .max(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("wasm-guest")
            .enable_all()
            .build()
            .map_err(|e| RuntimeError::Create(format!("cannot start guest threads: {e}")))?;
        let handle = rt.handle().clone();
        Ok(GuestExecutor {
            rt: Some(rt),
            handle,
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for GuestExecutor {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
