//! The on-disk, content-addressed image store and the kubelet-facing `ensure`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::config::{ContainerImage, ImageConfig};
use super::manifest::{self, WASM_LAYER_MEDIA_TYPE};
use super::reference::sha256_hex;
use super::{ImageError, ImageReference, RegistryAuth};

/// `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// Ask the registry every time (blobs already stored are not downloaded again).
    Always,
    /// Use the stored image for the reference if there is one.
    IfNotPresent,
    /// Only ever use the store.
    Never,
}

impl PullPolicy {
    /// The policy of a container spec: the field if set, otherwise Kubernetes' default, which is
    /// `Always` for `:latest` or untagged images and `IfNotPresent` for everything else.
    pub fn for_container(field: Option<&str>, reference: &str) -> Self {
        match field {
            Some("Always") => PullPolicy::Always,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            Some("Never") => PullPolicy::Never,
            _ => match ImageReference::parse(reference) {
                Ok(r) if r.digest().is_none() && r.tag() == Some("latest") => PullPolicy::Always,
                _ => PullPolicy::IfNotPresent,
            },
        }
    }
}

/// Where the store lives and which registries it may reach without TLS.
#[derive(Debug, Clone, Default)]
pub struct ImageStoreConfig {
    pub root: PathBuf,
    /// Hosts (`host:port`, as written in image references) reached over plain HTTP.
    /// `127.0.0.1`, `localhost` and `[::1]` always are.
    pub insecure_registries: Vec<String>,
}

/// An image in the store, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    /// The normalised reference, e.g. `127.0.0.1:5000/hello:v1`.
    pub reference: String,
    /// `sha256:...` of the manifest the reference resolved to (of the index, when the
    /// reference named one): what `imageID` reports and `reference@digest` pulls again.
    pub digest: String,
    /// The wasm binary (module or component), inside the store. Empty for container images.
    pub wasm_path: PathBuf,
    /// Size of the wasm binary in bytes (of all compressed layers, for container images).
    pub size: u64,
    /// Media type of the layer the binary came from (of the manifest, for container images).
    pub media_type: String,
    /// For a Linux container image: its unpacked layers and config. `None` for wasm images.
    pub container: Option<ContainerImage>,
}

/// Progress of [`ImageStore::ensure`] / [`ImageStore::pull`], for events and CLI output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// Fetching the manifest.
    Resolving,
    /// The manifest is known: the layers this pull needs, in order, with their sizes and
    /// whether the store already holds each one (then it is neither downloaded nor reported).
    Layers { layers: Vec<LayerProgress> },
    /// Downloading a layer (each layer of a container image in turn).
    Downloading {
        digest: String,
        done: u64,
        total: u64,
    },
    /// A container image layer was unpacked into the store (once per layer digest).
    Unpacked { digest: String },
    /// Pulled (possibly without downloading the layer, when the store already had it).
    Done { digest: String, size: u64 },
    /// The pull policy let the stored image be used; no registry was contacted.
    AlreadyPresent { digest: String },
}

/// One layer of a pull, as announced by [`PullEvent::Layers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    pub digest: String,
    /// Compressed size, as the manifest declares it.
    pub size: u64,
    /// Already in the store: nothing to download.
    pub present: bool,
}

/// One line of `refs.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefEntry {
    /// Manifest digest.
    pub digest: String,
    /// Digest of the wasm blob (of the image config, for container images).
    pub wasm: String,
    pub size: u64,
    pub media_type: String,
    /// Set for Linux container images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
}

/// What a container image entry points to, besides its config blob (`RefEntry::wasm`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ContainerRef {
    /// Layer digests (compressed, as the manifest lists them), base layer first; each is
    /// unpacked under `layers/sha256/<hex>`.
    pub layers: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RefsFile {
    version: u32,
    images: BTreeMap<String, RefEntry>,
}

/// Last successful pull of a reference, shared by everyone waiting on its lock, so that pulls
/// that were queued behind a pull that just finished take its result instead of asking again.
type PullSlot = Arc<tokio::sync::Mutex<Option<(Instant, StoredImage)>>>;

struct Inner {
    root: PathBuf,
    insecure_registries: Vec<String>,
    /// In-memory copy of `refs.json`; the lock also serialises rewrites of the file.
    refs: Mutex<RefsFile>,
    /// Modification time of `refs.json` when it was last read, so that changes made by another
    /// process (`wkube image import` next to a running agent) are picked up.
    refs_mtime: Mutex<Option<SystemTime>>,
    /// One async lock per normalised reference. Entries are never removed: one small entry
    /// per distinct image a node ever ran.
    pulls: Mutex<HashMap<String, PullSlot>>,
    tmp_counter: AtomicU64,
}

/// The node's image store. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

const REFS_FILE: &str = "refs.json";
/// A registry name reserved for images imported straight into a node (`wkube image import`):
/// pulling them would only send a lookup of a name that exists nowhere out to the network.
pub const LOCAL_ONLY_REGISTRY: &str = "wkube.local";
/// Downloads older than this in `tmp/` are leftovers of a crash.
const STALE_TMP: Duration = Duration::from_secs(3600);

impl ImageStore {
    /// Opens (creating if needed) the store at `config.root` and loads `refs.json`.
    ///
    /// A `refs.json` that does not parse is moved aside to `refs.json.corrupt` rather than
    /// failing: the blobs are intact, and a node that cannot start because of its image cache
    /// is worse than one that pulls again.
    pub fn open(config: ImageStoreConfig) -> Result<Self, ImageError> {
        let root = config.root;
        fs::create_dir_all(root.join("blobs").join("sha256"))?;
        fs::create_dir_all(root.join("tmp"))?;
        fs::create_dir_all(root.join("layers").join("sha256"))?;
        let refs_path = root.join(REFS_FILE);
        let refs = match fs::read(&refs_path) {
            Ok(bytes) => match serde_json::from_slice::<RefsFile>(&bytes) {
                Ok(refs) => refs,
                Err(e) => {
                    tracing::warn!(path = %refs_path.display(), error = %e,
                        "image index unreadable; moving it aside and starting empty");
                    fs::rename(&refs_path, root.join("refs.json.corrupt"))?;
                    RefsFile::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RefsFile::default(),
            Err(e) => return Err(e.into()),
        };
        remove_stale_tmp(&root.join("tmp"));
        Ok(ImageStore {
            inner: Arc::new(Inner {
                root,
                insecure_registries: config.insecure_registries,
                refs: Mutex::new(refs),
                refs_mtime: Mutex::new(fs::metadata(&refs_path).and_then(|m| m.modified()).ok()),
                pulls: Mutex::new(HashMap::new()),
                tmp_counter: AtomicU64::new(0),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn insecure_registries(&self) -> &[String] {
        &self.inner.insecure_registries
    }

    /// What the kubelet does for a container: honour the policy (`IfNotPresent` and `Never`
    /// use the stored image for that reference if present), pull otherwise. Concurrent calls
    /// for one reference pull once.
    pub async fn ensure(
        &self,
        reference: &str,
        policy: PullPolicy,
        auth: &RegistryAuth,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<StoredImage, ImageError> {
        let parsed = ImageReference::parse(reference)?;
        match policy {
            PullPolicy::Never => {
                let image = self
                    .get_parsed(&parsed)
                    .ok_or_else(|| ImageError::NotPresent(parsed.normalized()))?;
                progress(PullEvent::AlreadyPresent {
                    digest: image.digest.clone(),
                });
                Ok(image)
            }
            PullPolicy::IfNotPresent => {
                let slot = self.pull_slot(&parsed);
                let mut last = slot.lock().await;
                // Checked under the lock: a pull that was running when we arrived is done now.
                if let Some(image) = self.get_parsed(&parsed) {
                    progress(PullEvent::AlreadyPresent {
                        digest: image.digest.clone(),
                    });
                    return Ok(image);
                }
                let image = super::pull::pull_image(self, &parsed, auth, progress).await?;
                *last = Some((Instant::now(), image.clone()));
                Ok(image)
            }
            PullPolicy::Always => self.pull_parsed(&parsed, auth, progress).await,
        }
    }

    /// Pulls `reference` from its registry (manifest always; the wasm layer only if the store
    /// does not have that blob yet).
    pub async fn pull(
        &self,
        reference: &str,
        auth: &RegistryAuth,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<StoredImage, ImageError> {
        let parsed = ImageReference::parse(reference)?;
        self.pull_parsed(&parsed, auth, progress).await
    }

    async fn pull_parsed(
        &self,
        reference: &ImageReference,
        auth: &RegistryAuth,
        progress: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<StoredImage, ImageError> {
        let asked_at = Instant::now();
        let slot = self.pull_slot(reference);
        let mut last = slot.lock().await;
        if let Some((finished_at, image)) = last.as_ref() {
            if *finished_at >= asked_at {
                // Someone pulled this reference while we waited: that answer is as fresh as ours.
                progress(PullEvent::Done {
                    digest: image.digest.clone(),
                    size: image.size,
                });
                return Ok(image.clone());
            }
        }
        let image = super::pull::pull_image(self, reference, auth, progress).await?;
        *last = Some((Instant::now(), image.clone()));
        Ok(image)
    }

    fn pull_slot(&self, reference: &ImageReference) -> PullSlot {
        let mut pulls = lock(&self.inner.pulls);
        pulls.entry(reference.normalized()).or_default().clone()
    }

    /// `wkube image import FILE.wasm --name REF`: straight into the store, no registry. The
    /// image gets the same manifest `push_wasm` would upload, so its digest is the one the
    /// registry copy would have.
    pub fn import(&self, wasm_file: &Path, reference: &str) -> Result<StoredImage, ImageError> {
        let parsed = ImageReference::parse(reference)?;
        let name = parsed.normalized();
        let wasm = fs::read(wasm_file)?;
        if !manifest::is_wasm(&wasm) {
            return Err(ImageError::NotWasm {
                reference: name,
                media_types: Vec::new(),
            });
        }
        let artifact = manifest::build_wasm_artifact(&wasm).map_err(|e| ImageError::Store {
            path: wasm_file.to_path_buf(),
            message: format!("cannot build manifest: {e}"),
        })?;
        self.write_blob(&wasm)?;
        self.write_blob(&artifact.config)?;
        self.write_blob(&artifact.manifest)?;
        let entry = RefEntry {
            digest: artifact.manifest_digest,
            wasm: artifact.layer_digest,
            size: wasm.len() as u64,
            media_type: WASM_LAYER_MEDIA_TYPE.to_string(),
            container: None,
        };
        self.record(&name, entry.clone())?;
        self.stored(&name, &entry).ok_or_else(|| ImageError::Store {
            path: self.inner.root.clone(),
            message: "imported blob vanished".to_string(),
        })
    }

    /// The stored image for a reference (normalised, so `hello` finds
    /// `docker.io/library/hello:latest`), if its wasm blob is on disk.
    pub fn get(&self, reference: &str) -> Option<StoredImage> {
        let parsed = ImageReference::parse(reference).ok()?;
        self.get_parsed(&parsed)
    }

    fn get_parsed(&self, reference: &ImageReference) -> Option<StoredImage> {
        let name = reference.normalized();
        let entry = self.current_refs().images.get(&name).cloned()?;
        self.stored(&name, &entry)
    }

    /// Every stored image whose wasm blob is on disk, sorted by reference.
    pub fn list(&self) -> Vec<StoredImage> {
        let entries: Vec<(String, RefEntry)> = self
            .current_refs()
            .images
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entries
            .iter()
            .filter_map(|(name, entry)| self.stored(name, entry))
            .collect()
    }

    fn stored(&self, name: &str, entry: &RefEntry) -> Option<StoredImage> {
        let blob = self.blob_path(&entry.wasm)?;
        if !blob.is_file() {
            return None;
        }
        let (wasm_path, container) = match &entry.container {
            None => (blob, None),
            Some(c) => (PathBuf::new(), Some(self.container_image(&blob, c)?)),
        };
        Some(StoredImage {
            reference: name.to_string(),
            digest: entry.digest.clone(),
            wasm_path,
            size: entry.size,
            media_type: entry.media_type.clone(),
            container,
        })
    }

    /// A container image whose config blob and every unpacked layer are on disk.
    fn container_image(&self, config_blob: &Path, entry: &ContainerRef) -> Option<ContainerImage> {
        let layers = entry
            .layers
            .iter()
            .map(|d| self.layer_dir(d).filter(|p| p.is_dir()))
            .collect::<Option<Vec<_>>>()?;
        let bytes = fs::read(config_blob).ok()?;
        let config = ImageConfig::parse(&bytes)
            .map_err(|e| tracing::warn!(path = %config_blob.display(), error = %e, "bad stored image config"))
            .ok()?;
        Some(ContainerImage { layers, config })
    }

    /// `root/layers/sha256/<hex>`: where a layer is unpacked. `None` for a malformed digest.
    pub(crate) fn layer_dir(&self, digest: &str) -> Option<PathBuf> {
        let hex = sha256_hex(digest)?;
        Some(self.inner.root.join("layers").join("sha256").join(hex))
    }

    /// `root/blobs/sha256/<hex>`; `None` for anything but a well-formed sha256 digest, so a
    /// digest from a registry can never name a path outside the store.
    pub(crate) fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        let hex = sha256_hex(digest)?;
        Some(self.inner.root.join("blobs").join("sha256").join(hex))
    }

    /// A fresh path in `root/tmp/` for a file that will be renamed into place.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.inner.tmp_counter.fetch_add(1, Ordering::Relaxed);
        self.inner
            .root
            .join("tmp")
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Stores small content (manifests, configs, imported binaries) under its digest.
    pub(crate) fn write_blob(&self, bytes: &[u8]) -> Result<String, ImageError> {
        let digest = manifest::sha256_digest(bytes);
        let path = self.blob_path(&digest).ok_or_else(|| ImageError::Store {
            path: self.inner.root.clone(),
            message: format!("bad digest {digest}"),
        })?;
        if !path.is_file() {
            let tmp = self.tmp_path("blob");
            write_synced(&tmp, bytes)?;
            if let Err(e) = fs::rename(&tmp, &path) {
                let _ = fs::remove_file(&tmp);
                return Err(e.into());
            }
        }
        Ok(digest)
    }

    /// Points `name` at an image and rewrites `refs.json` atomically (temp file, fsync, rename),
    /// so a crash leaves either the old or the new index, never half of one.
    pub(crate) fn record(&self, name: &str, entry: RefEntry) -> Result<(), ImageError> {
        // Other processes may write the index too: hold the file lock over read-modify-write.
        let _file_lock = self.lock_index_file()?;
        let mut refs = self.current_refs();
        let previous = refs.images.insert(name.to_string(), entry);
        refs.version = 1;
        let result = serde_json::to_vec_pretty(&*refs)
            .map_err(|e| ImageError::Store {
                path: self.inner.root.join(REFS_FILE),
                message: e.to_string(),
            })
            .and_then(|bytes| {
                let tmp = self.tmp_path("refs");
                write_synced(&tmp, &bytes)?;
                fs::rename(&tmp, self.inner.root.join(REFS_FILE)).map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    ImageError::from(e)
                })
            });
        if result.is_err() {
            // Keep memory and disk in agreement.
            match previous {
                Some(previous) => refs.images.insert(name.to_string(), previous),
                None => refs.images.remove(name),
            };
        }
        result
    }
}

impl ImageStore {
    /// The index, re-read first if another process changed `refs.json`.
    fn current_refs(&self) -> std::sync::MutexGuard<'_, RefsFile> {
        let mut refs = lock(&self.inner.refs);
        let path = self.inner.root.join(REFS_FILE);
        let on_disk = fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut seen = lock(&self.inner.refs_mtime);
        if on_disk != *seen {
            if let Some(fresh) = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<RefsFile>(&b).ok())
            {
                *refs = fresh;
            }
            *seen = on_disk;
        }
        refs
    }

    /// An exclusive advisory lock on `refs.lock`, released when the file is dropped.
    fn lock_index_file(&self) -> Result<fs::File, ImageError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.inner.root.join("refs.lock"))?;
        // SAFETY: flock on a file descriptor we own; it is released when `file` is closed.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(file)
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn remove_stale_tmp(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > STALE_TMP);
        if stale {
            // Layers are unpacked into temp directories; downloads are files.
            let _ = super::unpack::remove_existing(&entry.path());
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of plain data; the data is
/// still usable, so carry on rather than propagate the panic.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn open(dir: &Path) -> ImageStore {
        ImageStore::open(ImageStoreConfig {
            root: dir.to_path_buf(),
            insecure_registries: Vec::new(),
        })
        .unwrap()
    }

    fn wasm_file(dir: &Path) -> PathBuf {
        let path = dir.join("hello.wasm");
        fs::write(&path, MODULE).unwrap();
        path
    }

    #[test]
    fn import_get_list() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("store"));
        let file = wasm_file(dir.path());
        let image = store.import(&file, "hello:v1").unwrap();
        assert_eq!(image.reference, "docker.io/library/hello:v1");
        assert_eq!(image.size, MODULE.len() as u64);
        assert_eq!(image.media_type, WASM_LAYER_MEDIA_TYPE);
        assert_eq!(fs::read(&image.wasm_path).unwrap(), MODULE);
        assert!(image.wasm_path.starts_with(store.root()));
        assert_eq!(
            image.digest,
            manifest::build_wasm_artifact(MODULE)
                .unwrap()
                .manifest_digest
        );
        // The manifest is in the store under its digest.
        let manifest_path = store.blob_path(&image.digest).unwrap();
        assert_eq!(
            manifest::sha256_digest(&fs::read(manifest_path).unwrap()),
            image.digest
        );

        assert_eq!(store.get("docker.io/library/hello:v1"), Some(image.clone()));
        assert_eq!(store.get("hello:v1"), Some(image.clone()));
        assert_eq!(store.get("hello:v2"), None);
        assert_eq!(store.get("Not A Reference"), None);

        let other = store.import(&file, "127.0.0.1:5000/x/hello").unwrap();
        let list = store.list();
        assert_eq!(list, vec![other.clone(), image.clone()]);
        // Same bytes, same blob.
        assert_eq!(other.wasm_path, image.wasm_path);
    }

    #[test]
    fn import_rejects_non_wasm_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("store"));
        let text = dir.path().join("notes.txt");
        fs::write(&text, b"hello").unwrap();
        let err = store.import(&text, "hello").unwrap_err();
        assert!(matches!(err, ImageError::NotWasm { .. }), "{err}");
        let err = store
            .import(&wasm_file(dir.path()), "UPPER/case")
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidImageName");
        let err = store
            .import(&dir.path().join("missing.wasm"), "hello")
            .unwrap_err();
        assert!(matches!(err, ImageError::Io(_)), "{err}");
        assert!(store.list().is_empty());
    }

    #[test]
    fn refs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let image = open(&root)
            .import(&wasm_file(dir.path()), "hello:v1")
            .unwrap();
        let reopened = open(&root);
        assert_eq!(reopened.get("hello:v1"), Some(image));
        let refs: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join(REFS_FILE)).unwrap()).unwrap();
        assert!(refs["images"]["docker.io/library/hello:v1"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
        // No temp files left behind.
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn missing_blob_is_not_present() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("store"));
        let image = store.import(&wasm_file(dir.path()), "hello:v1").unwrap();
        fs::remove_file(&image.wasm_path).unwrap();
        assert_eq!(store.get("hello:v1"), None);
        assert!(store.list().is_empty());
    }

    #[test]
    fn corrupt_refs_json_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join(REFS_FILE), b"{ not json").unwrap();
        let store = open(&root);
        assert!(store.list().is_empty());
        assert!(root.join("refs.json.corrupt").is_file());
    }

    #[test]
    fn blob_paths_stay_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        assert!(store.blob_path("sha256:../../etc/passwd").is_none());
        assert!(store.blob_path("md5:abc").is_none());
        let ok = format!("sha256:{}", "ab".repeat(32));
        assert!(store.blob_path(&ok).unwrap().starts_with(dir.path()));
    }

    #[tokio::test]
    async fn policies_use_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("store"));
        let events = Mutex::new(Vec::new());
        let progress = |e: PullEvent| lock(&events).push(e);
        let err = store
            .ensure(
                "hello:v1",
                PullPolicy::Never,
                &RegistryAuth::Anonymous,
                &progress,
            )
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "ErrImageNeverPull");
        let err = store
            .ensure(
                "bad name",
                PullPolicy::IfNotPresent,
                &RegistryAuth::Anonymous,
                &progress,
            )
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidImageName");

        let image = store.import(&wasm_file(dir.path()), "hello:v1").unwrap();
        for policy in [PullPolicy::Never, PullPolicy::IfNotPresent] {
            let got = store
                .ensure("hello:v1", policy, &RegistryAuth::Anonymous, &progress)
                .await
                .unwrap();
            assert_eq!(got, image);
        }
        assert_eq!(
            *lock(&events),
            vec![
                PullEvent::AlreadyPresent {
                    digest: image.digest.clone()
                };
                2
            ]
        );
    }

    #[test]
    fn default_pull_policy() {
        assert_eq!(PullPolicy::for_container(None, "hello"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::for_container(None, "hello:latest"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::for_container(None, "hello:v1"),
            PullPolicy::IfNotPresent
        );
        let pinned = format!("hello@sha256:{}", "a".repeat(64));
        assert_eq!(
            PullPolicy::for_container(None, &pinned),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::for_container(Some("Never"), "hello"),
            PullPolicy::Never
        );
    }
}

#[cfg(test)]
mod local_only_tests {
    use super::*;

    #[tokio::test]
    async fn local_only_images_are_never_pulled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(ImageStoreConfig {
            root: dir.path().to_path_buf(),
            insecure_registries: Vec::new(),
        })
        .expect("open");
        let err = store
            .ensure(
                "wkube.local/absent:v1",
                PullPolicy::IfNotPresent,
                &RegistryAuth::Anonymous,
                &|_| {},
            )
            .await
            .expect_err("not imported");
        assert_eq!(err.reason(), "ErrImagePull");
        assert!(err.to_string().contains("wkube image import"), "{err}");
    }
}
