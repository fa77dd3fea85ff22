//! The image store against a real registry: Debian's `docker-registry` (distribution 2.8) on a
//! free loopback port, plus `skopeo` as an independent pusher when it is installed.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use common::registry::{find_binary, Registry};

use sha2::{Digest, Sha256};
use wkube::image::{
    push_wasm, ImageError, ImageStore, ImageStoreConfig, PullEvent, PullPolicy, RegistryAuth,
};

/// The smallest valid wasm module.
const MODULE: &[u8] = b"\0asm\x01\0\0\0";

fn open_store(dir: &Path) -> ImageStore {
    ImageStore::open(ImageStoreConfig {
        root: dir.to_path_buf(),
        insecure_registries: Vec::new(),
    })
    .unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Collects progress events.
#[derive(Default)]
struct Events(Mutex<Vec<PullEvent>>);

impl Events {
    fn push(&self, e: PullEvent) {
        self.0.lock().unwrap().push(e);
    }
    fn take(&self) -> Vec<PullEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test]
async fn push_pull_ensure_and_errors() {
    let mut registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("hello.wasm");
    std::fs::write(&file, MODULE).unwrap();
    let reference = format!("{}/demo/hello:v1", registry.host());

    let pushed = push_wasm(&file, &reference, &RegistryAuth::Anonymous, &[])
        .await
        .unwrap();
    assert!(pushed.starts_with("sha256:"), "{pushed}");

    let store = open_store(&work.path().join("store"));
    let events = Events::default();
    let progress = |e: PullEvent| events.push(e);
    let image = store
        .pull(&reference, &RegistryAuth::Anonymous, &progress)
        .await
        .unwrap();
    assert_eq!(image.digest, pushed);
    assert_eq!(image.reference, reference);
    assert_eq!(image.media_type, "application/wasm");
    assert_eq!(image.size, MODULE.len() as u64);
    assert_eq!(std::fs::read(&image.wasm_path).unwrap(), MODULE);
    let seen = events.take();
    assert_eq!(seen.first(), Some(&PullEvent::Resolving));
    assert!(seen.contains(&PullEvent::Downloading {
        digest: wkube::image::manifest::sha256_digest(MODULE),
        done: MODULE.len() as u64,
        total: MODULE.len() as u64
    }));
    assert_eq!(
        seen.last(),
        Some(&PullEvent::Done {
            digest: pushed.clone(),
            size: MODULE.len() as u64
        })
    );

    // Import of the same file yields the same manifest digest as the registry copy.
    let imported = open_store(&work.path().join("other"))
        .import(&file, "local/hello:v1")
        .unwrap();
    assert_eq!(imported.digest, pushed);

    // Pull by digest.
    let by_digest = format!("{}/demo/hello@{pushed}", registry.host());
    let pinned = store
        .pull(&by_digest, &RegistryAuth::Anonymous, &progress)
        .await
        .unwrap();
    assert_eq!(pinned.digest, pushed);
    assert_eq!(pinned.wasm_path, image.wasm_path);

    // A tag the registry does not have: the registry's own words, reason ErrImagePull.
    let missing = format!("{}/demo/hello:nope", registry.host());
    let err = store
        .ensure(
            &missing,
            PullPolicy::IfNotPresent,
            &RegistryAuth::Anonymous,
            &progress,
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ErrImagePull");
    eprintln!("missing tag: {err}");
    assert!(err.to_string().contains("manifest unknown"), "{err}");
    assert!(store.get(&missing).is_none());

    // With the registry gone, IfNotPresent still resolves from the store...
    registry.stop();
    events.take();
    let again = store
        .ensure(
            &reference,
            PullPolicy::IfNotPresent,
            &RegistryAuth::Anonymous,
            &progress,
        )
        .await
        .unwrap();
    assert_eq!(again, image);
    assert_eq!(
        events.take(),
        vec![PullEvent::AlreadyPresent {
            digest: pushed.clone()
        }]
    );
    // ... also after a restart of the node (refs.json) ...
    let reopened = open_store(&work.path().join("store"));
    let again = reopened
        .ensure(
            &reference,
            PullPolicy::IfNotPresent,
            &RegistryAuth::Anonymous,
            &progress,
        )
        .await
        .unwrap();
    assert_eq!(again.digest, pushed);
    // ... while Always has to ask the registry, and says why it could not.
    let err = reopened
        .ensure(
            &reference,
            PullPolicy::Always,
            &RegistryAuth::Anonymous,
            &progress,
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ErrImagePull");
    eprintln!("registry down: {err}");
    assert!(
        err.to_string().to_lowercase().contains("connect"),
        "expected a connection error: {err}"
    );
}

#[tokio::test]
async fn concurrent_ensure_pulls_once() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("hello.wasm");
    std::fs::write(&file, MODULE).unwrap();
    let reference = format!("{}/hello:v2", registry.host());
    let pushed = push_wasm(&file, &reference, &RegistryAuth::Anonymous, &[])
        .await
        .unwrap();

    let store = open_store(&work.path().join("store"));
    let events = Events::default();
    let progress = |e: PullEvent| events.push(e);
    let ensures = (0..6).map(|_| {
        store.ensure(
            &reference,
            PullPolicy::IfNotPresent,
            &RegistryAuth::Anonymous,
            &progress,
        )
    });
    let results = futures::future::join_all(ensures).await;
    for result in results {
        assert_eq!(result.unwrap().digest, pushed);
    }
    let seen = events.take();
    let resolving = seen.iter().filter(|e| **e == PullEvent::Resolving).count();
    let present = seen
        .iter()
        .filter(|e| matches!(e, PullEvent::AlreadyPresent { .. }))
        .count();
    assert_eq!((resolving, present), (1, 5), "{seen:?}");
}

/// Pushes a manifest with arbitrary layers straight through `oci-client`, for formats
/// `push_wasm` does not produce.
async fn push_raw(host: &str, repo: &str, config_type: &str, layers: &[(&str, &[u8])]) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let reference: oci_client::Reference = format!("{host}/{repo}").parse().unwrap();
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol: oci_client::client::ClientProtocol::Http,
        ..Default::default()
    });
    let layers: Vec<oci_client::client::ImageLayer> = layers
        .iter()
        .map(|(media_type, data)| {
            oci_client::client::ImageLayer::new(data.to_vec(), media_type.to_string(), None)
        })
        .collect();
    let config = oci_client::client::Config::new(b"{}".to_vec(), config_type.to_string(), None);
    client
        .push(
            &reference,
            &layers,
            config,
            &oci_client::secrets::RegistryAuth::Anonymous,
            None,
        )
        .await
        .unwrap();
    reference.whole()
}

#[tokio::test]
async fn other_formats_and_rejections() {
    let registry = Registry::start();
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let store = open_store(work.path());
    let progress = |_e: PullEvent| {};
    let anon = RegistryAuth::Anonymous;

    // wasm-to-oci's layer type.
    let old = push_raw(
        &host,
        "old:v1",
        "application/vnd.wasm.config.v1+json",
        &[("application/vnd.wasm.content.layer.v1+wasm", MODULE)],
    )
    .await;
    let image = store.pull(&old, &anon, &progress).await.unwrap();
    assert_eq!(std::fs::read(&image.wasm_path).unwrap(), MODULE);

    // One layer of a generic type: accepted because the bytes are wasm...
    let generic = push_raw(
        &host,
        "generic:v1",
        "application/vnd.oci.image.config.v1+json",
        &[("application/octet-stream", MODULE)],
    )
    .await;
    let image = store.pull(&generic, &anon, &progress).await.unwrap();
    assert_eq!(image.media_type, "application/octet-stream");

    // ... and refused when they are not.
    let text = push_raw(
        &host,
        "text:v1",
        "application/vnd.oci.image.config.v1+json",
        &[("application/octet-stream", b"#!/bin/sh\necho hi\n")],
    )
    .await;
    let err = store.pull(&text, &anon, &progress).await.unwrap_err();
    assert!(matches!(err, ImageError::NotWasm { .. }), "{err}");
    assert!(store.get(&text).is_none());

    // A Linux container image (tar layers) is pulled as one; these layers are not tarballs,
    // so the pull fails naming the layer, and nothing is stored.
    let linux = push_raw(
        &host,
        "linux:v1",
        "application/vnd.oci.image.config.v1+json",
        &[
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                b"not really gzip",
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                b"another layer",
            ),
        ],
    )
    .await;
    let err = store.pull(&linux, &anon, &progress).await.unwrap_err();
    assert!(matches!(err, ImageError::Pull { .. }), "{err}");
    assert_eq!(err.reason(), "ErrImagePull");
    assert!(err.to_string().contains("layer tarball"), "{err}");
    assert!(store.get(&linux).is_none());
}

/// An OCI image layout directory, written by hand, holding the wasm artifact under `wasm`
/// and an image index (linux entry first, wasip1 entry second) under `multi`.
struct Layout {
    manifest_digest: String,
}

fn write_blob(dir: &Path, bytes: &[u8]) -> (String, usize) {
    let digest = sha256(bytes);
    let hex = digest.trim_start_matches("sha256:");
    std::fs::write(dir.join("blobs/sha256").join(hex), bytes).unwrap();
    (digest, bytes.len())
}

fn write_layout(dir: &Path) -> Layout {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let (layer_digest, layer_size) = write_blob(dir, MODULE);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm", "os": "wasip1", "layerDigests": [layer_digest],
    }))
    .unwrap();
    let (config_digest, config_size) = write_blob(dir, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/wasm", "digest": layer_digest, "size": layer_size}],
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = write_blob(dir, &manifest);

    // A "linux" image for the index, so selection has something to skip.
    let (tar_digest, tar_size) = write_blob(dir, b"pretend tarball");
    let (lconfig_digest, lconfig_size) = write_blob(dir, b"{}");
    let linux = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": lconfig_digest, "size": lconfig_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": tar_digest, "size": tar_size}],
    }))
    .unwrap();
    let (linux_digest, linux_size) = write_blob(dir, &linux);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": linux_digest,
             "size": linux_size, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
             "size": manifest_size, "platform": {"os": "wasip1", "architecture": "wasm"}},
        ],
    }))
    .unwrap();
    let (index_digest, index_size) = write_blob(dir, &index);

    let layout_index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
             "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": "wasm"}},
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest,
             "size": index_size, "annotations": {"org.opencontainers.image.ref.name": "multi"}},
        ],
    }))
    .unwrap();
    std::fs::write(dir.join("index.json"), layout_index).unwrap();
    Layout { manifest_digest }
}

/// Copies with skopeo; returns the digest of the manifest as written to the destination
/// (skopeo may re-serialise an index, so the layout's own digest is not necessarily it).
fn skopeo_copy(source: &str, dest: &str, all: bool, digest_file: &Path) -> String {
    let skopeo = find_binary("skopeo").unwrap();
    let mut cmd = Command::new(skopeo);
    cmd.args(["--insecure-policy", "copy", "--dest-tls-verify=false"]);
    cmd.arg("--digestfile").arg(digest_file);
    if all {
        cmd.arg("--all");
    }
    let out = cmd.arg(source).arg(dest).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {source} {dest} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(digest_file)
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn pulls_what_skopeo_pushed() {
    if find_binary("skopeo").is_none() {
        eprintln!("skipping: skopeo not installed (apt-get install skopeo)");
        return;
    }
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let layout_dir = work.path().join("layout");
    let layout = write_layout(&layout_dir);
    let layout_ref = |tag: &str| format!("oci:{}:{tag}", layout_dir.display());
    let dest = |name: &str| format!("{}/skopeo/{name}", registry.host());

    let digest_file = work.path().join("digest");
    let hello_digest = skopeo_copy(
        &layout_ref("wasm"),
        &format!("docker://{}", dest("hello:v1")),
        false,
        &digest_file,
    );
    // A single manifest is copied byte for byte.
    assert_eq!(hello_digest, layout.manifest_digest);
    let multi_digest = skopeo_copy(
        &layout_ref("multi"),
        &format!("docker://{}", dest("multi:v1")),
        true,
        &digest_file,
    );

    let store = open_store(&work.path().join("store"));
    let progress = |_e: PullEvent| {};
    let image = store
        .pull(&dest("hello:v1"), &RegistryAuth::Anonymous, &progress)
        .await
        .unwrap();
    assert_eq!(image.digest, layout.manifest_digest);
    assert_eq!(std::fs::read(&image.wasm_path).unwrap(), MODULE);

    // The index resolves to its wasip1 entry; the image is known by the index digest
    // (as the registry holds it: skopeo re-serialises indexes).
    let multi = store
        .pull(&dest("multi:v1"), &RegistryAuth::Anonymous, &progress)
        .await
        .unwrap();
    assert_eq!(multi.digest, multi_digest);
    assert_eq!(multi.wasm_path, image.wasm_path);
}

#[tokio::test]
async fn credentials_from_a_pull_secret() {
    // bcrypt of "hunter2" (glibc crypt, cost 4).
    let registry = Registry::start_with(Some(
        "alice:$2b$04$abcdefghijklmnopqrstuuV3duMsC0HpUex6N9qapiuOHHWkwRXVm",
    ));
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("hello.wasm");
    std::fs::write(&file, MODULE).unwrap();
    let reference = format!("{}/private/hello:v1", registry.host());
    let alice = RegistryAuth::Basic {
        username: "alice".to_string(),
        password: "hunter2".to_string(),
    };
    let wrong = RegistryAuth::Basic {
        username: "alice".to_string(),
        password: "nope".to_string(),
    };

    let err = push_wasm(&file, &reference, &wrong, &[]).await.unwrap_err();
    eprintln!("push with a wrong password: {err}");
    assert!(
        err.to_string().to_lowercase().contains("unauthorized"),
        "{err}"
    );
    let pushed = push_wasm(&file, &reference, &alice, &[]).await.unwrap();

    let store = open_store(&work.path().join("store"));
    let progress = |_e: PullEvent| {};
    let err = store
        .pull(&reference, &RegistryAuth::Anonymous, &progress)
        .await
        .unwrap_err();
    eprintln!("anonymous pull: {err}");
    assert_eq!(err.reason(), "ErrImagePull");
    assert!(
        err.to_string().to_lowercase().contains("unauthorized"),
        "{err}"
    );

    let secret = format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
        registry.host(),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:hunter2")
    );
    let auth = wkube::image::auth_from_dockerconfigjson(secret.as_bytes(), &registry.host())
        .unwrap()
        .unwrap();
    let image = store.pull(&reference, &auth, &progress).await.unwrap();
    assert_eq!(image.digest, pushed);
}
