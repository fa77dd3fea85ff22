//! `wkube up`: a single-node cluster in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use crate::api::rest::{Rest, WriteOptions};
use crate::api::{ApiServer, Authenticator, UserInfo};
use crate::pki::{ClusterPki, ADMIN_GROUP, ADMIN_USER};
use crate::store::{Store, StoreConfig};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where the store, certificates and kubeconfig live.
    #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = super::default_data_dir())]
    data_dir: PathBuf,

    /// Address of the Kubernetes API (HTTPS). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,

    /// Extra DNS names or IP addresses for the server certificate.
    #[arg(long = "tls-san")]
    tls_sans: Vec<String>,

    /// Revisions of change history kept for watches to resume from (older ones answer 410 Gone).
    #[arg(long, default_value_t = 10_000)]
    history_revisions: u64,

    #[command(flatten)]
    controllers: super::controller_manager::ControllerFlags,

    /// Run no controllers in this process (run `wkube controller-manager` beside it).
    #[arg(long)]
    no_controllers: bool,

    /// Run no node agent in this process (a control plane only; nodes join with `wkube agent`).
    #[arg(long)]
    no_agent: bool,

    #[command(flatten)]
    node: super::agent::NodeArgs,

    /// Also register this many hollow (simulated) nodes, for scale tests (`wkube agent --hollow`).
    #[arg(long, default_value_t = 0)]
    hollow_nodes: usize,

    /// Spread the hollow nodes over this many zones.
    #[arg(long, default_value_t = 0)]
    hollow_zones: usize,

    /// Also add a `wkube` context to ~/.kube/config (or $KUBECONFIG's first file).
    #[arg(long)]
    merge_kubeconfig: bool,
}

/// Namespaces every cluster has from the start.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating data dir {}", args.data_dir.display()))?;
    let data_dir = args
        .data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", args.data_dir.display()))?;
    say(&format!("data dir {}", data_dir.display()));

    let pki = ClusterPki::load_or_create(&data_dir, &server_names(&args))
        .context("setting up the cluster certificates")?;

    let mut store_config = StoreConfig::new(&data_dir);
    store_config.history_revisions = args.history_revisions.max(1);
    let store = Store::open(store_config)
        .await
        .context("opening the store")?;
    say(&format!(
        "store open at revision {} ({} ms)",
        store.current_revision(),
        started.elapsed().as_millis()
    ));

    let rest = Rest::with_builtin_kinds(store.clone());
    bootstrap(&rest)
        .await
        .context("creating system namespaces and RuntimeClasses")?;

    tokio::spawn(crate::controllers::namespace::run(rest.clone()));

    // Admission policies (wasm): in the write path from here on; modules named by OCI
    // reference (also those of scheduler plugins) are pulled into their own store.
    let policy_images = crate::image::ImageStore::open(crate::image::ImageStoreConfig {
        root: data_dir.join("policy-images"),
        insecure_registries: Vec::new(),
    })
    .context("opening the policy module store")?;
    crate::plugin_host::start_admission(&rest, Some(policy_images.clone()))
        .context("starting admission policies")?;

    let mut authenticator = Authenticator::new();
    authenticator.add_token(
        pki.admin_token.clone(),
        UserInfo {
            username: ADMIN_USER.into(),
            groups: vec![ADMIN_GROUP.into()],
        },
    );
    let node_token = pki.node_token().context("reading the node token")?;
    authenticator.add_token(
        node_token,
        UserInfo {
            username: "system:node".into(),
            groups: vec!["system:nodes".into()],
        },
    );
    let server = ApiServer::bind(args.listen, rest, &pki, authenticator)
        .await
        .context("starting the API server")?;
    let addr = server.local_addr().context("reading the listen address")?;
    let url = format!("https://{}", client_addr(addr));
    let kubeconfig = data_dir.join("kubeconfig");
    super::kubeconfig::write(&kubeconfig, &url, &pki).context("writing the kubeconfig")?;
    if args.merge_kubeconfig {
        let target = default_kubeconfig();
        super::kubeconfig::merge(&target, &url, &pki)?;
        say(&format!(
            "merged context \"wkube\" into {}",
            target.display()
        ));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    // The scheduler, controllers and node agent run in this process: they reach the API in
    // memory rather than through loopback TLS (the same API, the admin identity).
    let client = server
        .in_process_client(&pki.admin_token)
        .context("building the in-process API client")?;
    let serving = tokio::spawn(server.serve(stopped()));
    say(&format!("API server listening on {url}"));

    crate::install_crypto_provider();
    // Scheduler plugin modules named by OCI reference share the policy module store.
    let scheduler = tokio::spawn(crate::scheduler::run(
        client.clone(),
        crate::scheduler::SchedulerConfig::default(),
        Some(policy_images),
        stopped(),
    ));
    say("scheduler started");
    // Workload controllers: API clients like the scheduler, run here until shutdown (or in a
    // process of their own, `wkube controller-manager`, when started with --no-controllers).
    let controllers = (!args.no_controllers).then(|| {
        tokio::spawn(crate::controllers::manager::run(
            client.clone(),
            args.controllers.config(),
            stopped(),
        ))
    });
    let agent = if args.no_agent {
        None
    } else {
        let agent_dir = args.node.agent_data_dir_or(&data_dir.join("agent"));
        let node = args.node.clone();
        let ca = pki.ca_cert_pem.clone();
        let client = client.clone();
        let stop = stopped();
        say(&format!(
            "node agent starting (data in {})",
            agent_dir.display()
        ));
        Some(tokio::spawn(async move {
            if let Err(e) = super::agent::run_node(client, &node, &agent_dir, ca, stop).await {
                eprintln!("wkube: node agent failed: {e:#}");
            }
        }))
    };
    let hollow = if args.hollow_nodes > 0 {
        let config = args.node.hollow(args.hollow_nodes, args.hollow_zones)?;
        say(&format!("registering {} hollow nodes", config.count));
        Some(tokio::spawn(super::agent::run_hollow(
            client.clone(),
            config,
            stopped(),
        )))
    } else {
        None
    };
    say(&format!("kubeconfig written to {}", kubeconfig.display()));
    say(&format!("ready in {} ms", started.elapsed().as_millis()));
    println!("\n    export KUBECONFIG={}\n", kubeconfig.display());

    shutdown_signal().await;
    let _ = stop_tx.send(true);
    if let Some(agent) = agent {
        let _ = agent.await;
    }
    if let Some(hollow) = hollow {
        if let Ok(Err(e)) = hollow.await {
            eprintln!("wkube: hollow nodes failed: {e:#}");
        }
    }
    let _ = scheduler.await;
    if let Some(controllers) = controllers {
        let _ = controllers.await;
    }
    let _ = serving.await;
    say("shutting down");
    store.shutdown().await.context("closing the store")?;
    say("stopped");
    Ok(())
}

fn say(msg: &str) {
    println!("wkube: {msg}");
}

/// Names the server certificate must cover: loopback, this host, the listen address, extras.
fn server_names(args: &UpArgs) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
    ];
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    let ip = args.listen.ip();
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    names.extend(args.tls_sans.iter().cloned());
    names.dedup();
    names
}

/// The address clients on this machine use: loopback when listening on all interfaces.
fn client_addr(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

fn default_kubeconfig() -> PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).next())
        .filter(|p| !p.as_os_str().is_empty())
    {
        return first;
    }
    super::home_dir().join(".kube").join("config")
}

async fn bootstrap(rest: &Rest) -> anyhow::Result<()> {
    let Some(namespaces) = rest.registry().find("", "v1", "namespaces").cloned() else {
        anyhow::bail!("the namespaces resource is not registered");
    };
    for ns in SYSTEM_NAMESPACES {
        let obj = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
        match rest
            .create(&namespaces, None, obj, &WriteOptions::default())
            .await
        {
            Ok(_) => tracing::info!(namespace = ns, "created system namespace"),
            Err(e) if e.reason == "AlreadyExists" => {}
            Err(e) => return Err(anyhow::anyhow!("namespace {ns}: {e}")),
        }
    }
    crate::api::runtime_class::ensure_defaults(rest)
        .await
        .map_err(|e| anyhow::anyhow!("default RuntimeClasses: {e}"))
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
