//! `wkube snapshot save|restore`: disaster recovery in the manner of `etcdctl snapshot`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use http_body_util::BodyExt as _;

use crate::store::Store;

#[derive(Debug, clap::Subcommand)]
pub enum SnapshotCommand {
    /// Save the store's state to FILE. Reads a stopped server's data dir directly, or asks the
    /// running server through its API (using the data dir's kubeconfig).
    Save {
        file: PathBuf,
        #[arg(long, env = "WKUBE_DATA_DIR", default_value_os_t = super::default_data_dir())]
        data_dir: PathBuf,
        /// Ask a running server through this kubeconfig instead of the data dir's.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Create a new data dir whose store holds the snapshot in FILE (a new one-member cluster;
    /// certificates and kubeconfig are made afresh when it starts).
    Restore {
        file: PathBuf,
        /// The new data dir: must not exist or be empty.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

pub async fn run(cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Save {
            file,
            data_dir,
            kubeconfig,
        } => save(&file, &data_dir, kubeconfig.as_deref()).await,
        SnapshotCommand::Restore { file, data_dir } => restore(&file, &data_dir),
    }
}

async fn save(file: &Path, data_dir: &Path, kubeconfig: Option<&Path>) -> anyhow::Result<()> {
    let tmp = file.with_extension("part");
    let revision = match kubeconfig {
        Some(kc) => save_online(kc, &tmp).await?,
        None => match save_offline(data_dir, &tmp) {
            Ok(rev) => rev,
            Err(offline) => {
                let kc = data_dir.join("kubeconfig");
                save_online(&kc, &tmp).await.map_err(|online| {
                    anyhow::anyhow!(
                        "could not read the data dir ({offline:#}) nor reach a running server ({online:#})"
                    )
                })?
            }
        },
    };
    std::fs::rename(&tmp, file).with_context(|| format!("writing {}", file.display()))?;
    println!(
        "wkube: snapshot at revision {revision} saved to {}",
        file.display()
    );
    Ok(())
}

fn save_offline(data_dir: &Path, out: &Path) -> anyhow::Result<u64> {
    let mut f =
        std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let rev = Store::save_snapshot_offline(data_dir, &mut f)?;
    f.sync_all()?;
    Ok(rev)
}

async fn save_online(kubeconfig: &Path, out: &Path) -> anyhow::Result<u64> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading the kubeconfig")?;
    let client = kube::Client::try_from(config).context("building a client")?;
    let req = http::Request::get("/wkube/v1/snapshot")
        .body(kube::client::Body::empty())
        .context("building the request")?;
    let resp = client.send(req).await.context("requesting the snapshot")?;
    let status = resp.status();
    let revision = resp
        .headers()
        .get("x-wkube-revision")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the snapshot")?
        .to_bytes();
    if !status.is_success() {
        anyhow::bail!(
            "server answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    std::fs::write(out, &body).with_context(|| format!("writing {}", out.display()))?;
    Ok(revision)
}

fn restore(file: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let revision = Store::restore_snapshot(&mut f, data_dir, 1)?;
    println!(
        "wkube: restored revision {revision} into {} (start it with `wkube up --data-dir {}`)",
        data_dir.display(),
        data_dir.display()
    );
    Ok(())
}
