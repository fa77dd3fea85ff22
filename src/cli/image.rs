//! `wkube image`: push wasm modules to registries, import them straight into a node, list.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::image::{push_wasm, ImageStore, ImageStoreConfig, RegistryAuth};

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
    /// List the images in the local node's store.
    Ls {
        #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = super::default_data_dir())]
        data_dir: PathBuf,
    },
}

fn store(agent_data_dir: &std::path::Path) -> anyhow::Result<ImageStore> {
    ImageStore::open(ImageStoreConfig {
        root: agent_data_dir.join("images"),
        insecure_registries: Vec::new(),
    })
    .context("opening the image store")
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
            let auth = match (username, password) {
                (Some(username), Some(password)) => RegistryAuth::Basic { username, password },
                _ => RegistryAuth::Anonymous,
            };
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
            let img = store(&agent_dir)?.import(&file, &name)?;
            println!(
                "wkube: imported {} as {} ({})",
                file.display(),
                img.reference,
                img.digest
            );
        }
        ImageCommand::Ls { data_dir } => {
            println!("{:<50} {:<20} {:>10}", "REFERENCE", "DIGEST", "SIZE");
            for img in store(&data_dir.join("agent"))?.list() {
                let short = img
                    .digest
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>();
                println!("{:<50} {:<20} {:>10}", img.reference, short, img.size);
            }
        }
    }
    Ok(())
}
