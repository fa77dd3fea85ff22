//! Per-call limits: memory through the store's [`ResourceLimiter`], time through the epoch
//! deadline, and the mapping of a failed call to a [`PolicyError`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, Store, UpdateDeadline};

use super::PolicyError;

/// The limits one call runs under (from the policy's `timeoutSeconds` and memory limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub timeout: Duration,
    pub memory_bytes: u64,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            timeout: Duration::from_secs(10),
            memory_bytes: 64 << 20,
        }
    }
}

/// Caps the total linear memory of one store and remembers being hit, so that the allocator
/// failure (usually a trap in the guest) is reported as what it is. The accounting is the pod
/// runtime's limiter; a plugin call only needs to ask afterwards whether it was hit.
pub(crate) struct MemoryLimiter {
    inner: crate::runtime::wasm::limits::MemoryLimiter,
    hit: Arc<AtomicBool>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        let hit = Arc::new(AtomicBool::new(false));
        MemoryLimiter {
            inner: crate::runtime::wasm::limits::MemoryLimiter::new(Some(limit), hit.clone()),
            hit,
        }
    }

    /// Whether a growth was refused.
    pub(crate) fn hit(&self) -> bool {
        self.hit.load(Ordering::Relaxed)
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.memory_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }
}

/// Raised from the epoch callback when a call has used up its time.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

/// Makes the guest yield to the executor every epoch tick (so a spinning policy never holds a
/// server thread for longer than a tick) and stop once `timeout` has passed.
pub(crate) fn arm_deadline<T>(store: &mut Store<T>, timeout: Duration) {
    arm(store, timeout, true);
}

/// [`arm_deadline`] for stores run without async support (scheduler plugins, on a thread of
/// their own): the guest keeps running each tick until `timeout` has passed.
pub(crate) fn arm_deadline_blocking<T>(store: &mut Store<T>, timeout: Duration) {
    arm(store, timeout, false);
}

fn arm<T>(store: &mut Store<T>, timeout: Duration, yield_each_tick: bool) {
    let started = Instant::now();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if started.elapsed() >= timeout {
            Err(wasmtime::Error::new(DeadlineExceeded))
        } else if yield_each_tick {
            Ok(UpdateDeadline::Yield(1))
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
}

/// Names the reason a call failed.
pub(crate) fn classify(
    err: &wasmtime::Error,
    memory_hit: bool,
    limits: &CallLimits,
) -> PolicyError {
    if err.downcast_ref::<DeadlineExceeded>().is_some() {
        return PolicyError::Timeout(limits.timeout);
    }
    if memory_hit {
        return PolicyError::MemoryLimit(limits.memory_bytes);
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        return PolicyError::Trap(trap.to_string());
    }
    PolicyError::Trap(format!("{err:#}"))
}
