//! The plugin host's own wasmtime [`Engine`] and the thread that advances its epoch.
//!
//! Separate from the pod runtime's engine: policies run inside the API server on every write,
//! so they get a pool sized for many short concurrent calls with small memories, and a finer
//! epoch tick (a timeout is measured in ticks).

use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PolicyError;

/// How often the epoch advances: the longest a guest runs before it yields its thread back to
/// the server's executor, and the resolution of timeouts.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Tunables of a [`super::PluginHost`].
#[derive(Debug, Clone)]
pub struct PluginHostConfig {
    /// Policy calls that may run at once (instances in the pool). A call beyond that fails
    /// to instantiate and follows its policy's `failurePolicy`.
    pub max_concurrent_calls: u32,
    /// The ceiling of any policy's memory limit. The pooling allocator reserves (virtual)
    /// address space for this per memory slot.
    pub max_memory_bytes: u64,
}

impl Default for PluginHostConfig {
    fn default() -> Self {
        PluginHostConfig {
            max_concurrent_calls: 256,
            max_memory_bytes: 256 << 20,
        }
    }
}

pub(crate) fn build_engine(cfg: &PluginHostConfig) -> Result<Engine, PolicyError> {
    let n = cfg.max_concurrent_calls.max(1);
    let max_memory = usize::try_from(cfg.max_memory_bytes).unwrap_or(usize::MAX);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(n)
        // A Rust component holds 3 core instances (the program, WASI adapter, shims); one
        // built by componentize-py holds 14 (libc, libpython, its extension modules, shims),
        // and the pool must fit the largest language we ship an example for.
        .total_core_instances(n.saturating_mul(16))
        .total_memories(n.saturating_mul(2))
        .total_tables(n.saturating_mul(4))
        .total_stacks(n)
        .max_memory_size(max_memory)
        .table_elements(100_000)
        .max_core_instance_size(4 << 20);
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .wasm_component_model(true)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config.cache(None);
    Engine::new(&config).map_err(|e| PolicyError::Host(format!("configuring wasmtime: {e:#}")))
}

/// Advances the epoch every [`EPOCH_TICK`]; ends by itself once the engine is dropped.
pub(crate) fn start_epoch_ticker(engine: &Engine) -> Result<(), PolicyError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        })
        .map(|_| ())
        .map_err(|e| PolicyError::Host(format!("starting the epoch thread: {e}")))
}
