//! `wkube controller-manager`: the controllers as a process of their own, talking to a cluster
//! through a kubeconfig (as kube-controller-manager does), so they can be placed, restarted and
//! measured apart from the API server.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::controllers::cronjob::Clock;
use crate::controllers::manager::ManagerConfig;
use crate::controllers::node_lifecycle::NodeLifecycleConfig;

/// Controller settings, shared by `wkube up` and `wkube controller-manager`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllerFlags {
    /// Seconds a node's Lease may go unrenewed before the node is marked unreachable and its
    /// pods are evicted (after their tolerationSeconds).
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,

    /// How long Events are kept, in seconds (the apiserver's `--event-ttl`).
    #[arg(long, default_value_t = 3600)]
    event_ttl: u64,

    /// Seconds a Job waits before replacing its first failed pod; doubled for each further
    /// failure, up to ten minutes (upstream's fixed 10 s).
    #[arg(long, default_value_t = 10)]
    job_failure_backoff: u64,

    /// Makes the CronJob controller's clock run this many times faster (for tests of schedules).
    #[arg(long, default_value_t = 1, hide = true)]
    cronjob_time_scale: u32,
}

impl ControllerFlags {
    pub fn config(&self) -> ManagerConfig {
        let grace = self.node_monitor_grace_period.max(1);
        ManagerConfig {
            node_lifecycle: NodeLifecycleConfig {
                grace_period: Duration::from_secs(grace),
                period: Duration::from_secs((grace / 4).clamp(1, 5)),
            },
            event_ttl: Duration::from_secs(self.event_ttl.max(1)),
            cronjob_clock: Clock::scaled(self.cronjob_time_scale),
            job_failure_backoff: Duration::from_secs(self.job_failure_backoff),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ControllerManagerArgs {
    /// The cluster to manage (e.g. the kubeconfig `wkube up` writes).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,

    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    context: Option<String>,

    #[command(flatten)]
    controllers: ControllerFlags,
}

pub async fn run(args: ControllerManagerArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let options = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .context("loading the kubeconfig")?;
    // Watches stay open for as long as the controllers run.
    config.read_timeout = None;
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("building the API client")?;
    client
        .apiserver_version()
        .await
        .with_context(|| format!("reaching the API server at {server}"))?;
    println!("wkube: controller manager running against {server}");
    crate::controllers::manager::run(
        client,
        args.controllers.config(),
        super::up::shutdown_signal(),
    )
    .await;
    println!("wkube: controller manager stopped");
    Ok(())
}
