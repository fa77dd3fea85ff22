//! The plugin host's own wasmtime [`Engine`] and the thread that advances its epoch.
//!
//! Separate from the pod runtime's engine: policies run inside the API server on every write,
//! so they get a pool sized for many short concurrent calls with small memories, and a finer
//! epoch tick (a timeout is measured in ticks).

use std::time::Duration;

use wasmtime::Engine;

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
    // A Rust component holds 3 core instances (the program, WASI adapter, shims); one built by
    // componentize-py holds 14 (libc, libpython, its extension modules, shims), and the pool
    // must fit the largest language we ship an example for.
    let config = crate::runtime::wasm::engine::pooled_config(
        cfg.max_concurrent_calls,
        16,
        cfg.max_memory_bytes,
    );
    Engine::new(&config).map_err(|e| PolicyError::Host(format!("configuring wasmtime: {e:#}")))
}

/// The engine of scheduler plugins: the same configuration with a pool of its own (their
/// calls are synchronous, on threads of their own, and their instances live long).
pub(crate) fn build_blocking_engine(cfg: &PluginHostConfig) -> Result<Engine, PolicyError> {
    let config = crate::runtime::wasm::engine::pooled_config(
        cfg.max_concurrent_calls,
        16,
        cfg.max_memory_bytes,
    );
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
