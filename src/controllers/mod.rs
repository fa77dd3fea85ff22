//! Control loops that run inside the control plane process.
//!
//! `namespace` acts through the same REST layer as API requests, so every rule (validation,
//! finalizers, graceful deletion) applies to it too. The workload controllers (`replicaset`,
//! `job`, `cronjob`, `gc`) are kube-rs runtime controllers talking to the API server only through a
//! `kube::Client`, so they could run in another process just as well.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod event_ttl;
pub mod gc;
pub mod job;
pub mod manager;
pub mod namespace;
pub mod node_lifecycle;
pub mod replicaset;
pub mod statefulset;

/// Deletes an object in the background; one that is already gone counts as deleted.
pub(crate) async fn delete_background<K>(api: &kube::Api<K>, name: &str) -> kube::Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api
        .delete(name, &kube::api::DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// kube-runtime's `graceful_shutdown_on` wants a `Sync` future, which a caller's shutdown signal
/// need not be: this bridges one to the other through a oneshot channel.
pub(crate) fn sync_shutdown(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown.await;
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}
