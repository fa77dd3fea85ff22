//! Per-container resource limits: memory through the store's [`ResourceLimiter`], CPU and
//! stopping through the store's epoch-deadline callback.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::{ResourceLimiter, UpdateDeadline};

use super::engine::EPOCH_TICK;

/// Largest table a guest may grow to (entries). Tables are bounded by the pool too; this
/// keeps a hostile guest from using the whole slot.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Enforces `resources.limits.memory` over all linear memories of one store. A grow past
/// the limit fails (the guest sees `memory.grow` return -1, its allocator reports out of
/// memory) and is remembered, so that the container's end is reported as `OOMKilled`.
pub(crate) struct MemoryLimiter {
    limit: Option<usize>,
    used: usize,
    /// What the last approved grow added, to take back if the grow then failed anyway.
    last_grant: usize,
    oom: Arc<AtomicBool>,
}

impl MemoryLimiter {
    pub(crate) fn new(limit_bytes: Option<u64>, oom: Arc<AtomicBool>) -> Self {
        MemoryLimiter {
            limit: limit_bytes.map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            used: 0,
            last_grant: 0,
            oom,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grant = desired.saturating_sub(current);
        let total = self.used.saturating_add(grant);
        if let Some(limit) = self.limit {
            if total > limit {
                self.oom.store(true, Ordering::Relaxed);
                tracing::debug!(limit, wanted = total, "memory limit reached");
                return Ok(false);
            }
        }
        self.used = total;
        self.last_grant = grant;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // Approved by us but refused by the pool (slot size): not ours to count.
        self.used = self.used.saturating_sub(self.last_grant);
        self.last_grant = 0;
        tracing::debug!(error = %error, "memory grow failed");
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Set by `stop`; checked on every epoch tick so a running guest ends within a tick, and
/// awaited by the task running the guest so one blocked in a host call ends too.
#[derive(Debug)]
pub(crate) struct KillSwitch {
    killed: AtomicBool,
    /// A watch rather than a `Notify`: any number of waiters, and no wake-up is lost.
    tx: tokio::sync::watch::Sender<bool>,
}

impl Default for KillSwitch {
    fn default() -> Self {
        KillSwitch {
            killed: AtomicBool::new(false),
            tx: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl KillSwitch {
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }

    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Resolves once [`KillSwitch::kill`] has been called (at once if it already was).
    pub(crate) async fn killed(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|k| *k).await;
    }
}

/// The error the epoch callback raises to end a killed guest. The runner recognizes it
/// (downcast) and reports `Killed`.
#[derive(Debug)]
pub(crate) struct Killed;

impl std::fmt::Display for Killed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped")
    }
}

impl std::error::Error for Killed {}

/// Decides, at every epoch tick a guest reaches while running, what happens next:
///
/// * killed -> trap with [`Killed`];
/// * no CPU limit -> yield to the executor (`tokio::task::yield_now`) so other guests on
///   the same worker run: guests share the guest threads round-robin in ~10 ms slices;
/// * a CPU limit -> account the slice in a [`CpuBudget`] and, when the guest has used more
///   than its share, sleep until the share has caught up; otherwise just yield.
pub(crate) struct CpuGovernor {
    budget: Option<CpuBudget>,
    kill: Arc<KillSwitch>,
    /// When the guest last resumed from one of our yields (set by the yield future).
    resumed_at: Arc<Mutex<Instant>>,
    last_check: Instant,
}

/// CPU accounting for a limit of `share` (millicores / 1000) of one CPU: a balance of CPU
/// time, credited with `share` of all wall time and debited with the time the guest ran.
/// A negative balance is paid off by pausing for `-balance / share`. Because the pause
/// itself is credited at the next check, rounding (timer granularity, late wake-ups)
/// corrects itself instead of adding up. The balance is capped at [`CPU_BURST`], so a guest
/// that idled a while may then run flat out briefly, as with CFS quotas.
#[derive(Debug, Clone)]
pub(crate) struct CpuBudget {
    share: f64,
    balance: f64,
}

/// Most CPU time a throttled guest can save up (by idling) and spend at full speed.
const CPU_BURST: Duration = Duration::from_millis(100);

/// The longest single throttling pause (keeps a tiny limit from looking like a hang).
const MAX_THROTTLE: Duration = Duration::from_secs(1);

impl CpuBudget {
    /// `None` for limits that cannot bind a single-threaded guest (a whole CPU or more).
    pub(crate) fn new(limit_millis: u64) -> Option<Self> {
        (limit_millis < 1000).then(|| CpuBudget {
            share: limit_millis.max(1) as f64 / 1000.0,
            balance: 0.0,
        })
    }

    /// Accounts `wall` time since the last check, of which the guest ran `ran`; returns
    /// how long to pause it (zero: just yield).
    pub(crate) fn account(&mut self, wall: Duration, ran: Duration) -> Duration {
        let credit = wall.as_secs_f64() * self.share;
        self.balance = (self.balance + credit - ran.as_secs_f64()).min(CPU_BURST.as_secs_f64());
        if self.balance >= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(-self.balance / self.share)
            .unwrap_or(MAX_THROTTLE)
            .min(MAX_THROTTLE)
    }
}

impl CpuGovernor {
    pub(crate) fn new(limit_millis: Option<u64>, kill: Arc<KillSwitch>) -> Self {
        let now = Instant::now();
        CpuGovernor {
            budget: limit_millis.and_then(CpuBudget::new),
            kill,
            resumed_at: Arc::new(Mutex::new(now)),
            last_check: now,
        }
    }

    /// The epoch-deadline callback body.
    pub(crate) fn on_deadline(&mut self) -> wasmtime::Result<UpdateDeadline> {
        if self.kill.is_killed() {
            return Err(wasmtime::Error::new(Killed));
        }
        let Some(budget) = self.budget.as_mut() else {
            return Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ));
        };
        let now = Instant::now();
        let wall = now.saturating_duration_since(self.last_check);
        self.last_check = now;
        // Running wasm without a break reaches a check within about one tick; anything
        // beyond that since the resume was spent waiting in host calls (or preempted), not
        // computing, so it is not charged.
        let since_resume = self
            .resumed_at
            .lock()
            .map(|t| now.saturating_duration_since(*t))
            .unwrap_or(Duration::ZERO);
        let ran = since_resume.min(EPOCH_TICK * 2).min(wall);
        let pause = budget.account(wall, ran);
        let resumed_at = self.resumed_at.clone();
        let kill = self.kill.clone();
        let fut: Pin<Box<dyn std::future::Future<Output = ()> + Send>> = Box::pin(async move {
            if pause.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = kill.killed() => {}
                }
            }
            if let Ok(mut t) = resumed_at.lock() {
                *t = Instant::now();
            }
        });
        Ok(UpdateDeadline::YieldCustom(1, fut))
    }
}
