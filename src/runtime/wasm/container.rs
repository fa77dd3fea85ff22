//! One running container: the task running the guest, how its end becomes an
//! [`ExitStatus`], and [`RunningContainer`] for the agent.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use tokio::sync::watch;
use tracing::Instrument;
use wasmtime_wasi::I32Exit;

use super::limits::{KillSwitch, Killed};
use crate::runtime::logs::LogSink;
use crate::runtime::{ExitStatus, RunningContainer};

/// How a guest's run ended, before limits and stopping are taken into account.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// `proc_exit(n)`, `wasi:cli/exit`, returning from `_start` (0) or `run` returning
    /// an error (1).
    Exited(i32),
    /// A trap or a host error; the text is what `kubectl describe` shows.
    Failed(String),
    /// Stopped through the [`KillSwitch`].
    Killed,
}

/// Sorts an error out of wasmtime into an [`Outcome`].
pub(crate) fn classify(err: wasmtime::Error) -> Outcome {
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return Outcome::Exited(exit.0);
    }
    if err.is::<Killed>() {
        return Outcome::Killed;
    }
    tracing::debug!(error = ?err, "guest failed");
    Outcome::Failed(err.root_cause().to_string())
}

/// What the runner needs besides the guest itself to report its end.
pub(crate) struct RunContext {
    pub(crate) kill: Arc<KillSwitch>,
    pub(crate) oom: Arc<AtomicBool>,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) logs: Arc<dyn LogSink>,
    pub(crate) started_at: SystemTime,
    pub(crate) span: tracing::Span,
}

/// Runs `guest` on `handle` and returns the handle the agent keeps.
pub(crate) fn spawn(
    handle: &tokio::runtime::Handle,
    guest: impl Future<Output = Outcome> + Send + 'static,
    ctx: RunContext,
) -> WasmContainer {
    let (tx, rx) = watch::channel(None);
    let kill = ctx.kill.clone();
    let span = ctx.span.clone();
    handle.spawn(
        async move {
            let outcome = {
                // A panic in wasmtime or WASI code must not take the agent down or leave
                // waiters hanging: it ends this container like a trap.
                let guest = AssertUnwindSafe(guest).catch_unwind();
                tokio::select! {
                    biased;
                    _ = ctx.kill.killed() => Outcome::Killed,
                    res = guest => res.unwrap_or_else(|_| {
                        Outcome::Failed("internal error: the runtime panicked running this container".into())
                    }),
                }
                // The guest future (and with it the store, its memory and its log streams)
                // is dropped here, before the log is closed.
            };
            ctx.logs.close();
            let status = exit_status(outcome, &ctx);
            tracing::info!(
                exit_code = status.exit_code,
                reason = %status.reason,
                message = status.message.as_deref().unwrap_or(""),
                "container exited"
            );
            tx.send_replace(Some(status));
        }
        .instrument(span),
    );
    WasmContainer { status: rx, kill }
}

fn exit_status(outcome: Outcome, ctx: &RunContext) -> ExitStatus {
    let oom = ctx.oom.load(Ordering::Relaxed);
    let limit = ctx.memory_limit.unwrap_or(0);
    let (exit_code, reason, message) = match outcome {
        Outcome::Exited(0) => (0, "Completed", None),
        Outcome::Exited(n) if oom => (
            137,
            "OOMKilled",
            Some(format!(
                "memory limit of {limit} bytes reached (the program then exited with code {n})"
            )),
        ),
        Outcome::Exited(n) => (n, "Error", None),
        Outcome::Failed(msg) if oom => (
            137,
            "OOMKilled",
            Some(format!("memory limit of {limit} bytes reached: {msg}")),
        ),
        Outcome::Failed(msg) => (1, "Error", Some(msg)),
        Outcome::Killed => (137, "Killed", Some("stopped by the node agent".to_string())),
    };
    ExitStatus {
        exit_code,
        reason: reason.to_string(),
        message,
        started_at: ctx.started_at,
        finished_at: SystemTime::now(),
    }
}

/// A started wasm container.
pub(crate) struct WasmContainer {
    status: watch::Receiver<Option<ExitStatus>>,
    kill: Arc<KillSwitch>,
}

impl WasmContainer {
    fn ended(&self) -> Option<ExitStatus> {
        self.status.borrow().clone()
    }
}

#[async_trait::async_trait]
impl RunningContainer for WasmContainer {
    async fn wait(&self) -> ExitStatus {
        let mut rx = self.status.clone();
        let ended = match rx.wait_for(Option::is_some).await {
            Ok(s) => s.clone(),
            Err(_) => None,
        };
        ended.unwrap_or_else(|| {
            // The runner vanished without reporting: the runtime was shut down under it.
            let now = SystemTime::now();
            ExitStatus {
                exit_code: 137,
                reason: "Killed".into(),
                message: Some("the wasm runtime shut down".into()),
                started_at: now,
                finished_at: now,
            }
        })
    }

    /// Wasm has no signals to ask politely with, so `grace` is not used: the guest is
    /// stopped at once (within an epoch tick if it is computing, at once if it waits in a
    /// host call). A container that had already ended keeps its real status.
    async fn stop(&self, _grace: Duration) -> ExitStatus {
        if let Some(status) = self.ended() {
            return status;
        }
        self.kill.kill();
        self.wait().await
    }
}
