//! Pulling an image from a registry into the store.
//!
//! Steps: resolve the manifest (following an image index to one entry), classify it, then
//! fetch what that kind of image needs: the wasm binary into the blob store, or the config and
//! the layers of a Linux container image, each layer verified against its digest and unpacked
//! once (see `unpack`).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use oci_client::manifest::{
    OciDescriptor, OciManifest, IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::Client;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tracing::Instrument;

use super::client::{client_for, registry_message};
use super::config::ImageConfig;
use super::manifest::{self, ImageKind, WASM_MAGIC};
use super::store::{ContainerRef, RefEntry};
use super::{
    ImageError, ImageReference, ImageStore, LayerProgress, PullEvent, RegistryAuth, StoredImage,
};

const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// Report download progress at most this often (bytes), besides the first and last report.
const PROGRESS_STEP: u64 = 256 * 1024;

/// Everything needed while pulling one reference.
struct Pull<'a> {
    store: &'a ImageStore,
    reference: &'a ImageReference,
    client: Client,
    auth: oci_client::secrets::RegistryAuth,
    progress: &'a (dyn Fn(PullEvent) + Send + Sync),
}

impl Pull<'_> {
    fn fail(&self, message: impl Into<String>) -> ImageError {
        ImageError::Pull {
            reference: self.reference.normalized(),
            message: message.into(),
        }
    }
}

/// Pulls `reference` into `store` and records it in `refs.json`. The caller holds the
/// reference's pull lock.
pub(crate) async fn pull_image(
    store: &ImageStore,
    reference: &ImageReference,
    auth: &RegistryAuth,
    progress: &(dyn Fn(PullEvent) + Send + Sync),
) -> Result<StoredImage, ImageError> {
    // Every pull comes through here: the reserved local-only name never reaches the network.
    if reference.registry() == super::store::LOCAL_ONLY_REGISTRY {
        return Err(ImageError::Pull {
            reference: reference.normalized(),
            message: format!(
                "{} images exist only in a node's store and are never pulled: put it there with \
                 `wkube image import FILE.wasm --name {}`",
                super::store::LOCAL_ONLY_REGISTRY,
                reference.normalized()
            ),
        });
    }
    let span = tracing::info_span!("image_pull", image = %reference);
    async move {
        let started = std::time::Instant::now();
        let result = pull_inner(store, reference, auth, progress).await;
        match &result {
            Ok(image) => tracing::info!(digest = %image.digest, size = image.size,
                elapsed_ms = started.elapsed().as_millis() as u64, "pulled"),
            Err(e) => tracing::warn!(error = %e, "pull failed"),
        }
        result
    }
    .instrument(span)
    .await
}

async fn pull_inner(
    store: &ImageStore,
    reference: &ImageReference,
    auth: &RegistryAuth,
    progress: &(dyn Fn(PullEvent) + Send + Sync),
) -> Result<StoredImage, ImageError> {
    progress(PullEvent::Resolving);
    let client =
        client_for(reference, store.insecure_registries()).map_err(|message| ImageError::Pull {
            reference: reference.normalized(),
            message,
        })?;
    let pull = Pull {
        store,
        reference,
        client,
        auth: auth.to_oci(),
        progress,
    };

    let (top_bytes, top_digest) = fetch_manifest(&pull, reference).await?;
    let mut manifests = vec![top_bytes.clone()];
    let image = match manifest::parse_manifest(&top_bytes).map_err(|m| pull.fail(m))? {
        OciManifest::Image(image) => image,
        OciManifest::ImageIndex(index) => {
            let entry = manifest::select_index_entry(&index)
                .ok_or_else(|| pull.fail("image index lists no manifests"))?;
            tracing::debug!(entry = %entry.digest, "following image index");
            let (bytes, _) = fetch_manifest(&pull, &reference.with_digest(&entry.digest)).await?;
            manifests.push(bytes.clone());
            match manifest::parse_manifest(&bytes).map_err(|m| pull.fail(m))? {
                OciManifest::Image(image) => image,
                OciManifest::ImageIndex(_) => {
                    return Err(pull.fail("image index points to another image index"))
                }
            }
        }
    };

    let entry = match manifest::classify(&image) {
        ImageKind::Wasm { layer, check_magic } => {
            announce_layers(&pull, std::slice::from_ref(&layer), |d| store.blob_path(d));
            fetch_wasm_layer(&pull, &layer, check_magic).await?;
            RefEntry {
                digest: top_digest.clone(),
                wasm: layer.digest.clone(),
                size: descriptor_size(&layer),
                media_type: layer.media_type.clone(),
                container: None,
            }
        }
        ImageKind::Container { layers } => {
            let config = fetch_config(&pull, &image.config).await?;
            announce_layers(&pull, &layers, |d| store.layer_dir(d));
            for layer in &layers {
                fetch_and_unpack_layer(&pull, layer).await?;
            }
            tracing::debug!(layers = layers.len(), entrypoint = ?config.entrypoint,
                cmd = ?config.cmd, "container image");
            RefEntry {
                digest: top_digest.clone(),
                wasm: image.config.digest.clone(),
                size: layers.iter().map(descriptor_size).sum(),
                media_type: image
                    .media_type
                    .clone()
                    .unwrap_or_else(|| OCI_IMAGE_MEDIA_TYPE.to_string()),
                container: Some(ContainerRef {
                    layers: layers.iter().map(|l| l.digest.clone()).collect(),
                }),
            }
        }
        ImageKind::Unknown => {
            return Err(ImageError::NotWasm {
                reference: reference.normalized(),
                media_types: manifest::layer_media_types(&image),
            })
        }
    };

    for bytes in &manifests {
        store.write_blob(bytes)?;
    }
    let name = reference.normalized();
    store.record(&name, entry)?;
    let stored = store.get(&name).ok_or_else(|| ImageError::Store {
        path: store.root().to_path_buf(),
        message: format!("{name} vanished right after it was pulled"),
    })?;
    progress(PullEvent::Done {
        digest: top_digest,
        size: stored.size,
    });
    Ok(stored)
}

/// Fetches a manifest and returns it with its sha256 digest, computed here from the bytes
/// (`oci-client` also checks them against the registry's `Docker-Content-Digest` header and a
/// digest in the reference; checking the reference's digest again costs nothing).
async fn fetch_manifest(
    pull: &Pull<'_>,
    reference: &ImageReference,
) -> Result<(Vec<u8>, String), ImageError> {
    let (bytes, _) = pull
        .client
        .pull_manifest_raw(reference.oci(), &pull.auth, ACCEPTED_MANIFESTS)
        .await
        .map_err(|e| pull.fail(registry_message(&e)))?;
    let digest = manifest::sha256_digest(&bytes);
    if let Some(expected) = reference.digest() {
        if expected != digest {
            return Err(pull.fail(format!(
                "manifest digest mismatch: expected {expected}, got {digest}"
            )));
        }
    }
    Ok((bytes.to_vec(), digest))
}

/// Tells the caller which layers this pull needs and which the store has already, so progress
/// can be shown per layer and for the whole image.
fn announce_layers(
    pull: &Pull<'_>,
    layers: &[OciDescriptor],
    stored_at: impl Fn(&str) -> Option<PathBuf>,
) {
    let layers = layers
        .iter()
        .map(|l| LayerProgress {
            digest: l.digest.clone(),
            size: descriptor_size(l),
            present: stored_at(&l.digest).is_some_and(|p| p.exists()),
        })
        .collect();
    (pull.progress)(PullEvent::Layers { layers });
}

fn descriptor_size(layer: &OciDescriptor) -> u64 {
    u64::try_from(layer.size).unwrap_or(0)
}

/// Deletes a temp file unless it was moved into place, including when the pull future is
/// dropped half way (a cancelled pod start).
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
    fn persisted(&mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A directory being unpacked: deleted with everything in it unless it was published,
/// including when the pull is cancelled or the layer is refused half way.
struct TempDir(Option<PathBuf>);

impl TempDir {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = super::unpack::remove_existing(&path);
        }
    }
}

/// Downloads the wasm layer into `blobs/sha256/<hex>` unless it is there already. The blob
/// becomes visible (rename) only once size and digest check out.
async fn fetch_wasm_layer(
    pull: &Pull<'_>,
    layer: &OciDescriptor,
    check_magic: bool,
) -> Result<(), ImageError> {
    let final_path = pull
        .store
        .blob_path(&layer.digest)
        .ok_or_else(|| bad_digest(pull, layer))?;
    if final_path.is_file() {
        tracing::debug!(digest = %layer.digest, "layer already in the store");
        if check_magic && !starts_with_magic(&final_path).await? {
            return Err(not_wasm(pull, layer));
        }
        return Ok(());
    }
    let mut tmp = download(pull, layer, check_magic).await?;
    tokio::fs::rename(tmp.path(), &final_path).await?;
    tmp.persisted();
    Ok(())
}

fn bad_digest(pull: &Pull<'_>, layer: &OciDescriptor) -> ImageError {
    pull.fail(format!(
        "unsupported digest {:?} (only sha256 is supported)",
        layer.digest
    ))
}

/// Largest image config accepted (real ones are a few KiB; the limit keeps a hostile registry
/// from filling the agent's memory).
const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Fetches, verifies, stores and parses a container image's config, and checks that the image
/// is for Linux on this node's architecture.
async fn fetch_config(pull: &Pull<'_>, desc: &OciDescriptor) -> Result<ImageConfig, ImageError> {
    if descriptor_size(desc) > MAX_CONFIG_BYTES {
        return Err(pull.fail(format!(
            "image config of {} bytes is larger than the {MAX_CONFIG_BYTES} accepted",
            desc.size
        )));
    }
    let mut bytes = Vec::new();
    pull.client
        .pull_blob(pull.reference.oci(), desc, &mut bytes)
        .await
        .map_err(|e| pull.fail(registry_message(&e)))?;
    let actual = manifest::sha256_digest(&bytes);
    if actual != desc.digest {
        return Err(pull.fail(format!(
            "image config digest mismatch: expected {}, got {actual}",
            desc.digest
        )));
    }
    let config = ImageConfig::parse(&bytes).map_err(|m| pull.fail(m))?;
    let arch = manifest::node_arch();
    let wrong_os = !config.os.is_empty() && config.os != "linux";
    let wrong_arch = !config.architecture.is_empty() && config.architecture != arch;
    if wrong_os || wrong_arch {
        return Err(pull.fail(format!(
            "image is for {}/{}, this node runs linux/{arch}",
            config.os, config.architecture
        )));
    }
    pull.store.write_blob(&bytes)?;
    Ok(config)
}

/// Makes sure a layer is unpacked in `layers/sha256/<hex>`: downloaded to a temp file (digest
/// verified), unpacked into a temp directory, which a rename then publishes. The compressed
/// blob is not kept: a layer is only ever used unpacked.
async fn fetch_and_unpack_layer(pull: &Pull<'_>, layer: &OciDescriptor) -> Result<(), ImageError> {
    let final_dir = pull
        .store
        .layer_dir(&layer.digest)
        .ok_or_else(|| bad_digest(pull, layer))?;
    if final_dir.is_dir() {
        tracing::debug!(digest = %layer.digest, "layer already unpacked");
        return Ok(());
    }
    let blob = download(pull, layer, false).await?;
    let tmp_dir = TempDir(Some(pull.store.tmp_path("unpack")));
    let dir = tmp_dir.path().to_path_buf();
    let blob_path = blob.path().to_path_buf();
    let started = std::time::Instant::now();
    let stats = tokio::task::spawn_blocking(move || -> Result<_, String> {
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let file = std::fs::File::open(&blob_path).map_err(|e| e.to_string())?;
        let reader = super::unpack::decompress(file).map_err(|e| e.to_string())?;
        super::unpack::unpack(reader, &dir).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| pull.fail(format!("unpacking layer {}: {e}", layer.digest)))?
    .map_err(|e| pull.fail(format!("layer {}: {e}", layer.digest)))?;
    drop(blob);
    publish_dir(tmp_dir, &final_dir)?;
    tracing::info!(digest = %layer.digest, entries = stats.entries, whiteouts = stats.whiteouts,
        elapsed_ms = started.elapsed().as_millis() as u64, "layer unpacked");
    (pull.progress)(PullEvent::Unpacked {
        digest: layer.digest.clone(),
    });
    Ok(())
}

/// Renames an unpacked temp directory into place. Another pull of an image sharing the layer
/// may have won the race; its copy is as good as ours.
fn publish_dir(mut tmp: TempDir, final_dir: &Path) -> Result<(), ImageError> {
    match std::fs::rename(tmp.path(), final_dir) {
        Ok(()) => {
            tmp.0 = None;
            Ok(())
        }
        Err(_) if final_dir.is_dir() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Streams a blob into a temp file, hashing as it goes and refusing more bytes than the
/// descriptor announced; returns the temp file once size and digest check out.
async fn download(
    pull: &Pull<'_>,
    layer: &OciDescriptor,
    check_magic: bool,
) -> Result<TempFile, ImageError> {
    let total = descriptor_size(layer);
    let mut stream = pull
        .client
        .pull_blob_stream(pull.reference.oci(), layer)
        .await
        .map_err(|e| pull.fail(registry_message(&e)))?;
    let tmp = TempFile(Some(pull.store.tmp_path("layer")));
    let mut file = tokio::fs::File::create(tmp.path()).await?;
    let mut hasher = Sha256::new();
    let mut done: u64 = 0;
    let mut reported: u64 = 0;
    let mut head: Vec<u8> = Vec::with_capacity(WASM_MAGIC.len());
    (pull.progress)(PullEvent::Downloading {
        digest: layer.digest.clone(),
        done,
        total,
    });

    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| pull.fail(format!("downloading layer: {e}")))?;
        done += chunk.len() as u64;
        if done > total {
            return Err(pull.fail(format!(
                "layer {} is larger than the {total} bytes its manifest declares",
                layer.digest
            )));
        }
        if head.len() < WASM_MAGIC.len() {
            let want = (WASM_MAGIC.len() - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..want]);
            if check_magic && head.len() == WASM_MAGIC.len() && head != WASM_MAGIC {
                return Err(not_wasm(pull, layer));
            }
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
        if done - reported >= PROGRESS_STEP || done == total {
            reported = done;
            (pull.progress)(PullEvent::Downloading {
                digest: layer.digest.clone(),
                done,
                total,
            });
        }
    }
    file.flush().await?;
    file.sync_all().await?;
    drop(file);

    if done != total {
        return Err(pull.fail(format!(
            "layer {} is {done} bytes, its manifest declares {total}",
            layer.digest
        )));
    }
    if check_magic && head != WASM_MAGIC {
        return Err(not_wasm(pull, layer));
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != layer.digest {
        return Err(pull.fail(format!(
            "layer digest mismatch: expected {}, got {actual}",
            layer.digest
        )));
    }
    Ok(tmp)
}

fn not_wasm(pull: &Pull<'_>, layer: &OciDescriptor) -> ImageError {
    ImageError::NotWasm {
        reference: pull.reference.normalized(),
        media_types: vec![layer.media_type.clone()],
    }
}

async fn starts_with_magic(path: &Path) -> Result<bool, ImageError> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut head = [0u8; 4];
    match file.read_exact(&mut head).await {
        Ok(_) => Ok(&head == WASM_MAGIC),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e.into()),
    }
}
