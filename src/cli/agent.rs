//! `wkube agent`: a worker node joining a cluster, and the node agent inside `wkube up`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::agent::hollow::HollowConfig;
use crate::agent::{self, AgentConfig};
use crate::image::{ImageStore, ImageStoreConfig};
use crate::runtime::container::ContainerRuntime;
use crate::runtime::select::ByImage;
use crate::runtime::wasm::{WasmRuntime, WasmRuntimeConfig};
use crate::runtime::PodRuntime;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The API server, e.g. https://127.0.0.1:6443.
    #[arg(long)]
    server: String,
    /// A node token (`<data-dir>/pki/node.token` of the server) or the admin token.
    #[arg(long, env = "WKUBE_TOKEN")]
    token: String,
    /// The cluster CA certificate (`<data-dir>/pki/ca.crt` of the server).
    #[arg(long)]
    ca_cert: PathBuf,
    #[command(flatten)]
    node: NodeArgs,
    /// Register this many simulated nodes instead of one real node: they run no pods but
    /// report them Running (scale tests; see `wkube.dev/hollow-run-seconds`).
    #[arg(long, default_value_t = 0)]
    hollow: usize,
    /// Spread hollow nodes over this many zones (`topology.kubernetes.io/zone=zone-<i>`).
    #[arg(long, default_value_t = 0)]
    hollow_zones: usize,
}

/// Settings of a node, shared by `wkube agent` and `wkube up`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// The Node's name (default: this host's name).
    #[arg(long)]
    node_name: Option<String>,
    /// Where images, compiled modules, volumes and logs live.
    #[arg(long = "agent-data-dir")]
    agent_data_dir: Option<PathBuf>,
    /// The address the API server reaches this node at.
    #[arg(long, default_value = "127.0.0.1")]
    node_ip: IpAddr,
    /// The log endpoint's address (port 0 picks a free one).
    #[arg(long = "agent-listen", default_value = "127.0.0.1:0")]
    agent_listen: SocketAddr,
    /// Extra node labels, `key=value`.
    #[arg(long = "node-label")]
    node_labels: Vec<String>,
    /// CPU to offer, in cores (default: all).
    #[arg(long)]
    cpus: Option<f64>,
    /// Memory to offer, e.g. 4Gi (default: all).
    #[arg(long)]
    memory: Option<String>,
    /// Pods this node runs at most.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Registries (host:port) reached over plain HTTP; loopback ones always are.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    /// How often the node's Lease is renewed (the control plane's node-monitor grace period
    /// must be several times longer).
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    lease_renew_interval: f64,
    /// First delay before restarting a crashed container (doubles up to 5 minutes).
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    restart_backoff: f64,
    /// cgroup version for Linux containers: auto (v2 when /sys/fs/cgroup is cgroup2), v1, v2.
    #[arg(long = "cgroup-version", default_value = "auto")]
    cgroup_version: crate::runtime::container::cgroup::Mode,
    /// pids limit of each Linux container's cgroup (0: none).
    #[arg(long = "pids-limit", default_value_t = crate::runtime::container::resources::DEFAULT_PIDS_LIMIT)]
    pids_limit: i64,
}

impl NodeArgs {
    fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(hostname)
    }

    /// `--node-label key=value` pairs.
    fn labels(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.node_labels
            .iter()
            .map(|label| {
                let (k, v) = label
                    .split_once('=')
                    .with_context(|| format!("--node-label {label:?} must be key=value"))?;
                Ok((k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// `--memory` in bytes.
    fn memory_bytes(&self) -> anyhow::Result<Option<u64>> {
        self.memory
            .as_ref()
            .map(|m| {
                crate::api::validation::quantity_value(m)
                    .map(|v| v as u64)
                    .with_context(|| format!("invalid --memory {m:?}"))
            })
            .transpose()
    }

    /// `count` hollow nodes named after `--node-name` (default `hollow`), with this node's
    /// capacity flags (default 4 CPUs, 16Gi each).
    pub fn hollow(&self, count: usize, zones: usize) -> anyhow::Result<HollowConfig> {
        Ok(HollowConfig {
            prefix: self.node_name.clone().unwrap_or_else(|| "hollow".into()),
            count,
            zones,
            cpu_millis: self.cpus.map_or(4000, |c| (c * 1000.0) as u64),
            memory_bytes: self.memory_bytes()?.unwrap_or(16 << 30),
            max_pods: self.max_pods,
            labels: self.labels()?,
            lease_renew_interval: Duration::from_secs_f64(self.lease_renew_interval.max(0.1)),
        })
    }

    /// The agent's data dir, or `default` when not given.
    pub fn agent_data_dir_or(&self, default: &Path) -> PathBuf {
        self.agent_data_dir
            .clone()
            .unwrap_or_else(|| default.to_path_buf())
    }
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "wkube-node".to_string())
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let ca_pem = std::fs::read_to_string(&args.ca_cert)
        .with_context(|| format!("reading {}", args.ca_cert.display()))?;
    let client = client_for(&args.server, &args.token, &ca_pem).await?;
    if args.hollow > 0 {
        let hollow = args.node.hollow(args.hollow, args.hollow_zones)?;
        println!(
            "wkube: registering {} hollow nodes ({}-0 ...) with {}",
            hollow.count, hollow.prefix, args.server
        );
        return run_hollow(client, hollow, super::up::shutdown_signal()).await;
    }
    let data_dir = args
        .node
        .agent_data_dir
        .clone()
        .unwrap_or_else(|| super::default_data_dir().join("agent"));
    println!(
        "wkube: agent for node {} joining {}",
        args.node.node_name(),
        args.server
    );
    run_node(
        client,
        &args.node,
        &data_dir,
        ca_pem,
        super::up::shutdown_signal(),
    )
    .await
}

/// A client for an API server from its URL, a bearer token and the CA.
pub async fn client_for(server: &str, token: &str, ca_pem: &str) -> anyhow::Result<kube::Client> {
    use rustls::pki_types::pem::PemObject as _;
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("invalid server URL {server:?}"))?;
    let mut config = kube::Config::new(url);
    let roots: Vec<Vec<u8>> = rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .context("parsing the CA certificate")?;
    config.root_cert = Some(roots);
    config.auth_info.token = Some(token.to_string().into());
    config.read_timeout = None;
    kube::Client::try_from(config).context("building the API client")
}

/// The Linux container runtime, on nodes where the agent runs as root (namespaces, mounts and
/// cgroups need it); other nodes offer wasm only and say so once.
fn linux_runtime(data_dir: &Path, node: &NodeArgs) -> anyhow::Result<Option<Arc<dyn PodRuntime>>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        tracing::warn!("not running as root: this node runs wasm pods only, no Linux containers");
        return Ok(None);
    }
    let config = crate::runtime::container::RuntimeConfig {
        cgroup_mode: node.cgroup_version,
        pids_limit: (node.pids_limit > 0).then_some(node.pids_limit),
        ..Default::default()
    };
    let runtime = ContainerRuntime::with_config(&data_dir.join("containers"), config)
        .context("starting the Linux container runtime")?;
    Ok(Some(Arc::new(runtime)))
}

/// Runs hollow nodes until `shutdown`.
pub async fn run_hollow(
    client: kube::Client,
    hollow: HollowConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let count = hollow.count;
    agent::hollow::run(client, hollow, async {
        println!("wkube: {count} hollow nodes ready");
        shutdown.await
    })
    .await
    .context("running hollow nodes")
}

/// Runs a node agent until `shutdown`.
pub async fn run_node(
    client: kube::Client,
    node: &NodeArgs,
    data_dir: &Path,
    ca_pem: String,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let images = ImageStore::open(ImageStoreConfig {
        root: data_dir.join("images"),
        insecure_registries: node.insecure_registries.clone(),
    })
    .context("opening the image store")?;
    // Room for every container of `max_pods` pods (the pool reserves address space only).
    let runtime_config = WasmRuntimeConfig {
        max_instances: (node.max_pods.saturating_mul(2)).max(1000),
        ..WasmRuntimeConfig::default()
    };
    let wasm = WasmRuntime::with_config(&data_dir.join("compiled"), runtime_config)
        .context("starting the wasm runtime")?;
    let runtime = ByImage::new(Arc::new(wasm), linux_runtime(data_dir, node)?);
    let mut config = AgentConfig::new(&node.node_name(), data_dir.to_path_buf(), ca_pem);
    config.runtime_names = runtime.names();
    config.node_ip = node.node_ip;
    config.listen = node.agent_listen;
    config.max_pods = node.max_pods;
    config.cpu_millis = node.cpus.map(|c| (c * 1000.0) as u64);
    config.memory_bytes = node.memory_bytes()?;
    config.restart_backoff_initial = Duration::from_secs_f64(node.restart_backoff.max(0.0));
    config.lease_renew_interval = Duration::from_secs_f64(node.lease_renew_interval.max(0.1));
    config.labels.extend(node.labels()?);
    agent::run(client, config, Arc::new(runtime), images, shutdown)
        .await
        .context("running the node agent")
}
