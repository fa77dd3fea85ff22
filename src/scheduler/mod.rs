//! The scheduler: assigns pending pods to nodes, the way kube-scheduler does.
//!
//! It is an API client like any other (it may run inside the control-plane process, but only
//! talks to it through a [`kube::Client`]): it watches nodes and pods into a [`cache`], keeps
//! pending pods in a [`queue`] with back-off, runs the [`framework`]'s filter and score
//! [`plugins`] over the cached nodes, binds the pod ([`binder`]) and reports the outcome as
//! the `PodScheduled` condition and Events ([`events`]).
//!
//! Pods that fit nowhere may [`preemption`] lower-priority pods: the victims are deleted
//! gracefully and the pod, nominated to their node, is retried once they are gone.
//!
//! In big clusters a cycle filters only a rotating sample of the nodes (upstream's adaptive
//! `percentageOfNodesToScore`, [`framework::feasible_nodes_to_find`]).
//!
//! Wasm scheduler plugins (`SchedulerPlugin` objects, `crate::plugin_host::scheduler`) join
//! as [`framework::ExtensionPlugin`]s, one batched call per pod per extension point; a pod's
//! `schedulerName` picks the profile, i.e. which of them run besides the built-ins.
//!
//! Not done (yet): volume and port plugins.

pub mod binder;
pub mod cache;
mod driver;
pub mod events;
#[cfg(test)]
mod fake_api;
pub mod framework;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::future::Future;
use std::time::Duration;

pub use framework::{
    FilterPlugin, FitError, Framework, NodeInfo, PodInfo, Reason, ScheduleError, ScorePlugin,
    RUNTIME_ANNOTATION,
};
pub use plugins::default_framework;

/// How long the watches may fail without a break before [`run`] decides the API server
/// is gone for good. kube-runtime's watcher retries with back-off (up to 30 s apart) all the
/// while, so restarts and short outages pass unnoticed.
pub const API_GIVE_UP: Duration = Duration::from_secs(120);

/// The scheduler name pods get when they do not ask for another.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this (or empty, when this is the default name) are
    /// ours; the name is also the Event source.
    pub scheduler_name: String,
    /// Back-off after the first failed attempt; doubles per failure.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_string(),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The watches kept failing for [`API_GIVE_UP`]: the API server is gone.
    #[error("API server unavailable for {0:?}: {1}")]
    ApiUnavailable(Duration, String),
    /// A watch stream ended, which kube-runtime's watcher never does on its own.
    #[error("the {0} watch ended")]
    WatchEnded(&'static str),
}

/// Runs until the client's server goes away for good (its watches fail for
/// [`API_GIVE_UP`] on end) or `shutdown` resolves. Bindings still in flight at
/// shutdown are abandoned; the pods stay pending for the next scheduler.
///
/// Also runs the `SchedulerPlugin` controller, so wasm plugins join and leave live; if the
/// plugin host cannot start, the scheduler runs with the built-ins alone.
pub async fn run(
    client: kube::Client,
    config: SchedulerConfig,
    plugin_images: Option<crate::image::ImageStore>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SchedulerError> {
    use crate::plugin_host::scheduler::{controller::Controller, PluginSet, SchedulerHost};
    let mut framework = default_framework();
    let mut controller = None;
    match SchedulerHost::new() {
        Ok(host) => {
            let set = std::sync::Arc::new(PluginSet::default());
            framework = framework.with_extensions(set.clone());
            let c = Controller::new(
                client.clone(),
                std::sync::Arc::new(host),
                set,
                plugin_images,
                &config.scheduler_name,
            );
            controller = Some(tokio::spawn(c.run()));
        }
        Err(e) => tracing::warn!(error = %e, "no wasm scheduler plugins: the host did not start"),
    }
    let out = run_with(client, config, framework, shutdown).await;
    if let Some(c) = controller {
        c.abort();
    }
    out
}

/// [`run`] with a custom set of plugins.
pub async fn run_with(
    client: kube::Client,
    config: SchedulerConfig,
    framework: Framework,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SchedulerError> {
    driver::Driver::new(client, config, framework)
        .run(shutdown)
        .await
}
