//! `wkube image`: push wasm modules to registries, import them straight into a node, pull any
//! image into a node's store (with progress), list what a node holds.

use std::path::PathBuf;

use anyhow::Context as _;

use super::image_progress::{human_bytes, PullReporter};
use crate::image::{push_wasm, ImageStore, ImageStoreConfig, RegistryAuth, StoredImage};

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Push a .wasm module or component to a registry as a wasm OCI artifact.
    Push {
        file: PathBuf,
        reference: String,
        /// Registries (host:port) reached over plain HTTP; loopback ones always are.
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        #[arg(long, env = "WKUBE_REGISTRY_USER")]
        username: Option<String>,
        #[arg(long, env = "WKUBE_REGISTRY_PASSWORD")]
        password: Option<String>,
    },
    /// Put a .wasm file into the local node's image store under a name (no registry needed).
    Import {
        file: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = super::default_data_dir())]
        data_dir: PathBuf,
        /// The store of a `wkube agent` started with this `--agent-data-dir` (default: the
        /// node of `wkube up`, DATA_DIR/agent).
        #[arg(long)]
        agent_data_dir: Option<PathBuf>,
    },
    /// Pull an image (wasm artifact or Linux container image) into a node's store, showing
    /// progress, so that its pods start without waiting for the registry.
    Pull {
        reference: String,
        #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = super::default_data_dir())]
        data_dir: PathBuf,
        /// The store of a `wkube agent` started with this `--agent-data-dir` (default: the
        /// node of `wkube up`, DATA_DIR/agent).
        #[arg(long)]
        agent_data_dir: Option<PathBuf>,
        /// Registries (host:port) reached over plain HTTP; loopback ones always are.
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        #[arg(long, env = "WKUBE_REGISTRY_USER")]
        username: Option<String>,
        #[arg(long, env = "WKUBE_REGISTRY_PASSWORD")]
        password: Option<String>,
    },
    /// List the images in the local node's store.
    Ls {
        #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = super::default_data_dir())]
        data_dir: PathBuf,
        /// The store of a `wkube agent` started with this `--agent-data-dir`.
        #[arg(long)]
        agent_data_dir: Option<PathBuf>,
    },
}

fn store(agent_data_dir: &std::path::Path, insecure: Vec<String>) -> anyhow::Result<ImageStore> {
    ImageStore::open(ImageStoreConfig {
        root: agent_data_dir.join("images"),
        insecure_registries: insecure,
    })
    .with_context(|| format!("opening the image store of {}", agent_data_dir.display()))
}

fn auth(username: Option<String>, password: Option<String>) -> anyhow::Result<RegistryAuth> {
    match (username, password) {
        (Some(username), Some(password)) => Ok(RegistryAuth::Basic { username, password }),
        (None, None) => Ok(RegistryAuth::Anonymous),
        _ => anyhow::bail!("--username and --password go together"),
    }
}

/// `wasm` or `container`, as `wkube image ls` shows it.
fn kind(image: &StoredImage) -> &'static str {
    if image.container.is_some() {
        "container"
    } else {
        "wasm"
    }
}

pub async fn run(cmd: ImageCommand) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    match cmd {
        ImageCommand::Push {
            file,
            reference,
            insecure_registries,
            username,
            password,
        } => {
            let auth = auth(username, password)?;
            println!("wkube: pushing {} to {reference}", file.display());
            let digest = push_wasm(&file, &reference, &auth, &insecure_registries).await?;
            println!("wkube: pushed {reference}@{digest}");
        }
        ImageCommand::Import {
            file,
            name,
            data_dir,
            agent_data_dir,
        } => {
            let agent_dir = agent_data_dir.unwrap_or_else(|| data_dir.join("agent"));
            let img = store(&agent_dir, Vec::new())?.import(&file, &name)?;
            println!(
                "wkube: imported {} as {} ({})",
                file.display(),
                img.reference,
                img.digest
            );
        }
        ImageCommand::Pull {
            reference,
            data_dir,
            agent_data_dir,
            insecure_registries,
            username,
            password,
        } => {
            let agent_dir = agent_data_dir.unwrap_or_else(|| data_dir.join("agent"));
            let store = store(&agent_dir, insecure_registries)?;
            let auth = auth(username, password)?;
            println!("wkube: pulling {reference} into {}", store.root().display());
            let reporter = PullReporter::for_stdout();
            let progress = |e| reporter.report(e);
            let started = std::time::Instant::now();
            let img = store
                .pull(&reference, &auth, &progress)
                .await
                .with_context(|| format!("pulling {reference}"))?;
            println!(
                "wkube: pulled {} ({} image) in {:.1}s",
                img.reference,
                kind(&img),
                started.elapsed().as_secs_f64()
            );
            println!("digest: {}", img.digest);
            println!("size: {} ({} bytes)", human_bytes(img.size), img.size);
        }
        ImageCommand::Ls {
            data_dir,
            agent_data_dir,
        } => {
            let agent_dir = agent_data_dir.unwrap_or_else(|| data_dir.join("agent"));
            println!(
                "{:<50} {:<10} {:<20} {:>10}",
                "REFERENCE", "KIND", "DIGEST", "SIZE"
            );
            for img in store(&agent_dir, Vec::new())?.list() {
                let short = img
                    .digest
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>();
                println!(
                    "{:<50} {:<10} {:<20} {:>10}",
                    img.reference,
                    kind(&img),
                    short,
                    img.size
                );
            }
        }
    }
    Ok(())
}
