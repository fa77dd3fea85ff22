//! The controller manager: every client-based control loop, started together and stopped
//! together, inside `wkube up` or as its own process (`wkube controller-manager`).

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::cronjob::Clock;
use super::node_lifecycle::NodeLifecycleConfig;

/// What the loops need beyond an API client.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub node_lifecycle: NodeLifecycleConfig,
    /// How long Events are kept (the apiserver's `--event-ttl`).
    pub event_ttl: Duration,
    pub cronjob_clock: Clock,
    /// The Job controller's first delay before replacing a failed pod (upstream: 10 s).
    pub job_failure_backoff: Duration,
}

/// Runs every controller until `shutdown` completes, then waits for all of them to stop.
pub async fn run(
    client: kube::Client,
    config: ManagerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let c = || client.clone();
    let loops: Vec<JoinHandle<()>> = vec![
        tokio::spawn(super::replicaset::run(c(), stopped())),
        tokio::spawn(super::deployment::run(c(), stopped())),
        tokio::spawn(super::daemonset::run(c(), stopped())),
        tokio::spawn(super::statefulset::run(c(), stopped())),
        tokio::spawn(super::job::run(c(), config.job_failure_backoff, stopped())),
        tokio::spawn(super::cronjob::run(c(), config.cronjob_clock, stopped())),
        tokio::spawn(super::gc::run(c(), stopped())),
        tokio::spawn(super::disruption::run(c(), stopped())),
        tokio::spawn(super::event_ttl::run(c(), config.event_ttl, stopped())),
        tokio::spawn(super::node_lifecycle::run(
            c(),
            config.node_lifecycle,
            stopped(),
        )),
    ];
    shutdown.await;
    let _ = stop_tx.send(true);
    for handle in loops {
        let _ = handle.await;
    }
}
