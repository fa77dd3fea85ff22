//! The node agent: wkube's kubelet.
//!
//! An API client like any other (it never touches the store), so it runs inside `wkube up` and
//! as `wkube agent` on another machine alike. It registers its Node, renews its Lease, runs the
//! pods bound to it through a [`PodRuntime`](crate::runtime::PodRuntime), reports their status,
//! and serves their logs to the API server over HTTPS.

pub mod hollow;
mod image_pull;
pub mod log_server;
mod logs;
mod node;
mod pods;
mod runtime_class;
mod spec;
mod status;
mod volumes;
mod worker;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::image::ImageStore;
use crate::runtime::PodRuntime;

pub use logs::LogRegistry;
pub use node::RUNTIMES_LABEL;

/// The Node annotation carrying the SHA-256 of the agent's serving certificate, which the API
/// server pins when it connects for logs.
pub const SERVING_CERT_ANNOTATION: &str = "wkube.dev/serving-cert-sha256";

/// How an agent is set up.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    /// The address other components reach this node at (InternalIP).
    pub node_ip: IpAddr,
    pub data_dir: PathBuf,
    /// Where the log endpoint listens (port 0 picks one).
    pub listen: SocketAddr,
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub max_pods: u32,
    pub labels: Vec<(String, String)>,
    pub runtime_names: Vec<String>,
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    /// How often the node's Lease is renewed.
    pub lease_renew_interval: Duration,
    /// RFC 3339 time the agent started (condition transition times).
    pub started_at: String,
    /// PEM of the cluster CA: the API server's client certificate must be signed by it.
    pub cluster_ca_pem: String,
}

impl AgentConfig {
    pub fn new(node_name: &str, data_dir: PathBuf, cluster_ca_pem: String) -> Self {
        AgentConfig {
            node_name: node_name.to_string(),
            node_ip: IpAddr::from([127, 0, 0, 1]),
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cpu_millis: None,
            memory_bytes: None,
            max_pods: 110,
            labels: Vec::new(),
            runtime_names: vec!["wasmtime".to_string()],
            restart_backoff_initial: Duration::from_secs(10),
            restart_backoff_max: Duration::from_secs(300),
            lease_renew_interval: node::LEASE_RENEW,
            started_at: crate::api::object::now_rfc3339(),
            cluster_ca_pem,
        }
    }
}

/// What every part of a running agent shares.
pub struct AgentContext {
    pub client: kube::Client,
    pub config: AgentConfig,
    pub runtime: Arc<dyn PodRuntime>,
    pub images: ImageStore,
    pub logs: Arc<LogRegistry>,
    events: crate::events::Recorder,
}

impl AgentContext {
    /// Where a pod's volumes and logs live on this node.
    pub fn pod_dir(&self, ns: &str, name: &str, uid: &str) -> PathBuf {
        self.config
            .data_dir
            .join("pods")
            .join(format!("{ns}_{name}_{uid}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("log endpoint: {0}")]
    LogServer(String),
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    config: AgentConfig,
    runtime: Arc<dyn PodRuntime>,
    images: ImageStore,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    let logs = Arc::new(LogRegistry::new());
    let server = log_server::LogServer::bind(&config, logs.clone())
        .await
        .map_err(|e| AgentError::LogServer(e.to_string()))?;
    let port = server.port();
    let fingerprint = server.cert_sha256().to_string();
    let capacity = node::Capacity::detect(&config);
    let reported = node::reported_images(&images);
    node::register(&client, &config, &capacity, port, &fingerprint, &reported)
        .await
        .map_err(|source| AgentError::Register {
            node: config.node_name.clone(),
            source,
        })?;
    info!(node = %config.node_name, port, "node registered");
    let events = crate::events::Recorder::for_node(client.clone(), "kubelet", &config.node_name);
    let ctx = Arc::new(AgentContext {
        client,
        config,
        runtime,
        images,
        logs,
        events,
    });
    let server_task = tokio::spawn(server.serve());
    let heartbeat = tokio::spawn(heartbeat(ctx.clone(), capacity, port));
    let pods = tokio::spawn(pods::run(ctx.clone()));
    shutdown.await;
    heartbeat.abort();
    pods.abort();
    server_task.abort();
    Ok(())
}

async fn heartbeat(ctx: Arc<AgentContext>, capacity: node::Capacity, port: u16) {
    let mut lease = tokio::time::interval(ctx.config.lease_renew_interval);
    let mut status = tokio::time::interval(node::STATUS_PERIOD);
    status.tick().await;
    loop {
        tokio::select! {
            _ = lease.tick() => {
                if let Err(e) = node::renew_lease(&ctx.client, &ctx.config.node_name).await {
                    warn!(error = %e, "renewing the node lease failed");
                }
            }
            _ = status.tick() => {
                let images = node::reported_images(&ctx.images);
                if let Err(e) = node::update_status(&ctx.client, &ctx.config, &capacity, port, &images).await {
                    warn!(error = %e, "updating the node status failed");
                }
            }
        }
    }
}
