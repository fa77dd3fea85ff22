//! The `wkube` command line.

mod agent;
mod controller_manager;
mod image;
mod image_progress;
mod kubeconfig;
mod policy;
mod snapshot;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// wkube: a WebAssembly-native container orchestrator that speaks the Kubernetes API.
#[derive(Debug, Parser)]
#[command(name = "wkube", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `wkube=debug`.
    #[arg(
        long,
        global = true,
        env = "WKUBE_LOG",
        default_value = "info,openraft=warn"
    )]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a single-node cluster: control plane and embedded store in one process.
    Up(up::UpArgs),
    /// Join a cluster as a worker node: run its pods and serve their logs.
    Agent(agent::AgentArgs),
    /// Run the workload, garbage-collection and node-lifecycle controllers against a cluster.
    ControllerManager(controller_manager::ControllerManagerArgs),
    /// Pull, push, import and list images (wasm artifacts and Linux container images).
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Save or restore a snapshot of the store (like `etcdctl snapshot`).
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// Run admission policies offline (`wkube policy test`, `wkube policy bench`).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

/// `~/.wkube`, the default data dir.
pub fn default_data_dir() -> PathBuf {
    home_dir().join(".wkube")
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wkube: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::Agent(args) => agent::run(args).await,
            Command::ControllerManager(args) => controller_manager::run(args).await,
            Command::Image(cmd) => image::run(cmd).await,
            Command::Snapshot(cmd) => snapshot::run(cmd).await,
            Command::Policy(cmd) => policy::run(cmd).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wkube: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
