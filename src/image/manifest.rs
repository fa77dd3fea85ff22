//! Manifest formats: parsing, choosing from an image index, and deciding what kind of image a
//! manifest describes. Pure functions on bytes, so every format rule is unit-tested without a
//! registry.

use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, OciManifest,
    OCI_IMAGE_MEDIA_TYPE,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Config media type of the CNCF TAG Runtime wasm OCI artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Layer media type of the CNCF TAG Runtime wasm OCI artifact.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Layer media type written by the older `wasm-to-oci` tool (and `oci-client`'s wasm helpers).
pub const LEGACY_WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// Every wasm binary, module or component, starts with these bytes.
pub const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// Parses a manifest or image index (OCI or Docker v2 schema 2; both share the JSON shape).
pub fn parse_manifest(bytes: &[u8]) -> Result<OciManifest, String> {
    let versioned: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
    match versioned.get("schemaVersion").and_then(|v| v.as_u64()) {
        Some(2) => {}
        other => {
            return Err(format!(
                "unsupported manifest schemaVersion {}",
                other.map_or("(missing)".to_string(), |v| v.to_string())
            ))
        }
    }
    serde_json::from_slice(bytes).map_err(|e| format!("unsupported manifest: {e}"))
}

/// What a manifest describes, decided from media types alone (plus, for ambiguous single-layer
/// images, the first bytes of the layer). The pull path fetches different things per kind;
/// a Linux container runtime adds its handling to [`ImageKind::Container`].
#[derive(Debug, Clone)]
pub enum ImageKind {
    /// One layer that is the wasm binary. `check_magic`: the media types do not say wasm, so the
    /// layer only counts as wasm if its bytes start with [`WASM_MAGIC`].
    Wasm {
        layer: OciDescriptor,
        check_magic: bool,
    },
    /// Filesystem tarball layers: a Linux container image.
    Container { layers: Vec<OciDescriptor> },
    /// Anything else (several non-tar layers, no layers, ...).
    Unknown,
}

/// Classifies an image manifest (not an index: resolve that with [`select_index_entry`] first).
pub fn classify(manifest: &OciImageManifest) -> ImageKind {
    let layers = &manifest.layers;
    if let [layer] = layers.as_slice() {
        let declared_wasm = layer.media_type == WASM_LAYER_MEDIA_TYPE
            || layer.media_type == LEGACY_WASM_LAYER_MEDIA_TYPE;
        if declared_wasm {
            return ImageKind::Wasm {
                layer: layer.clone(),
                check_magic: false,
            };
        }
    }
    if !layers.is_empty() && layers.iter().all(|l| is_tar_layer(&l.media_type)) {
        return ImageKind::Container {
            layers: layers.clone(),
        };
    }
    match layers.as_slice() {
        [layer] => ImageKind::Wasm {
            layer: layer.clone(),
            check_magic: true,
        },
        _ => ImageKind::Unknown,
    }
}

/// OCI and Docker filesystem layer types (`...tar`, `...tar+gzip`, `...tar+zstd`,
/// `application/vnd.docker.image.rootfs.diff.tar.gzip`, foreign/nondistributable variants).
fn is_tar_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

/// The media types of a manifest's layers, for the `NotWasm` message.
pub fn layer_media_types(manifest: &OciImageManifest) -> Vec<String> {
    manifest
        .layers
        .iter()
        .map(|l| l.media_type.clone())
        .collect()
}

/// The node's architecture as OCI platforms name it (`amd64`, `arm64`, ...).
pub fn node_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Chooses the image of an index this node runs, for a node of architecture `arch`: the first
/// entry for a wasm platform (`os` `wasip1`, `wasip2`, `wasi` or `wasm`, or `architecture`
/// `wasm`) since wasm runs on any node; else the first `linux/<arch>` entry; else the first
/// entry that is not a build attestation (a single-platform index whose platform the pull
/// checks against the image config). `None` for an empty index.
pub fn select_index_entry_for<'a>(
    index: &'a OciImageIndex,
    arch: &str,
) -> Option<&'a ImageIndexEntry> {
    let is_wasm_platform = |entry: &&ImageIndexEntry| {
        entry.platform.as_ref().is_some_and(|p| {
            let os = p.os.to_string();
            matches!(os.as_str(), "wasip1" | "wasip2" | "wasi" | "wasm")
                || p.architecture.to_string() == "wasm"
        })
    };
    let is_node_platform = |entry: &&ImageIndexEntry| {
        entry
            .platform
            .as_ref()
            .is_some_and(|p| p.os.to_string() == "linux" && p.architecture.to_string() == arch)
    };
    let is_attestation = |entry: &&ImageIndexEntry| {
        entry
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("vnd.docker.reference.type"))
    };
    index
        .manifests
        .iter()
        .find(is_wasm_platform)
        .or_else(|| index.manifests.iter().find(is_node_platform))
        .or_else(|| index.manifests.iter().find(|e| !is_attestation(e)))
}

/// [`select_index_entry_for`] this node's architecture.
pub fn select_index_entry(index: &OciImageIndex) -> Option<&ImageIndexEntry> {
    select_index_entry_for(index, node_arch())
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A wasm binary packaged as a CNCF wasm OCI artifact: what `push_wasm` uploads and what
/// `import` records, byte for byte the same, so an imported and a pushed copy of one file
/// have the same manifest digest.
pub struct WasmArtifact {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layer_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig<'a> {
    architecture: &'a str,
    os: &'a str,
    layer_digests: Vec<String>,
}

/// Whether bytes look like a wasm binary (module or component).
pub fn is_wasm(bytes: &[u8]) -> bool {
    bytes.starts_with(WASM_MAGIC)
}

/// Builds the artifact for a wasm binary. The config omits `created` so the result depends on
/// the bytes only.
pub fn build_wasm_artifact(wasm: &[u8]) -> Result<WasmArtifact, serde_json::Error> {
    let layer_digest = sha256_digest(wasm);
    // Version field after the magic: 1 for core modules, 0x0d (layer 1) for components.
    let os = if wasm.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00]) {
        "wasip2"
    } else {
        "wasip1"
    };
    let config = serde_json::to_vec(&WasmConfig {
        architecture: "wasm",
        os,
        layer_digests: vec![layer_digest.clone()],
    })?;
    let config_digest = sha256_digest(&config);
    let manifest = OciImageManifest {
        schema_version: 2,
        media_type: Some(OCI_IMAGE_MEDIA_TYPE.to_string()),
        config: OciDescriptor {
            media_type: WASM_CONFIG_MEDIA_TYPE.to_string(),
            digest: config_digest.clone(),
            size: config.len() as i64,
            ..Default::default()
        },
        layers: vec![OciDescriptor {
            media_type: WASM_LAYER_MEDIA_TYPE.to_string(),
            digest: layer_digest.clone(),
            size: wasm.len() as i64,
            ..Default::default()
        }],
        ..Default::default()
    };
    let manifest = serde_json::to_vec(&manifest)?;
    Ok(WasmArtifact {
        manifest_digest: sha256_digest(&manifest),
        config,
        config_digest,
        layer_digest,
        manifest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn descriptor(media_type: &str, byte: char) -> serde_json::Value {
        serde_json::json!({
            "mediaType": media_type,
            "digest": format!("sha256:{}", byte.to_string().repeat(64)),
            "size": 8
        })
    }

    fn image(config_type: &str, layer_types: &[&str]) -> OciImageManifest {
        let json = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_IMAGE_MEDIA_TYPE,
            "config": descriptor(config_type, 'c'),
            "layers": layer_types.iter().map(|t| descriptor(t, 'a')).collect::<Vec<_>>(),
        });
        match parse_manifest(&serde_json::to_vec(&json).unwrap()).unwrap() {
            OciManifest::Image(m) => m,
            other => panic!("expected image manifest, got {other:?}"),
        }
    }

    #[test]
    fn cncf_wasm_artifact() {
        let m = image(WASM_CONFIG_MEDIA_TYPE, &[WASM_LAYER_MEDIA_TYPE]);
        assert!(matches!(
            classify(&m),
            ImageKind::Wasm {
                check_magic: false,
                ..
            }
        ));
    }

    #[test]
    fn legacy_wasm_to_oci_layer() {
        let m = image(
            "application/vnd.wasm.config.v1+json",
            &[LEGACY_WASM_LAYER_MEDIA_TYPE],
        );
        assert!(matches!(
            classify(&m),
            ImageKind::Wasm {
                check_magic: false,
                ..
            }
        ));
    }

    #[test]
    fn unknown_single_layer_needs_magic() {
        let m = image(
            "application/vnd.oci.image.config.v1+json",
            &["application/octet-stream"],
        );
        assert!(matches!(
            classify(&m),
            ImageKind::Wasm {
                check_magic: true,
                ..
            }
        ));
    }

    #[test]
    fn container_images_are_not_wasm() {
        let m = image(
            "application/vnd.oci.image.config.v1+json",
            &["application/vnd.oci.image.layer.v1.tar+gzip"],
        );
        assert!(matches!(classify(&m), ImageKind::Container { .. }));
        let m = image(
            "application/vnd.docker.container.image.v1+json",
            &[
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ],
        );
        assert!(matches!(classify(&m), ImageKind::Container { .. }));
        assert_eq!(layer_media_types(&m).len(), 2);
        let m = image(
            WASM_CONFIG_MEDIA_TYPE,
            &[WASM_LAYER_MEDIA_TYPE, "text/plain"],
        );
        assert!(matches!(classify(&m), ImageKind::Unknown));
        let m = image(WASM_CONFIG_MEDIA_TYPE, &[]);
        assert!(matches!(classify(&m), ImageKind::Unknown));
    }

    fn index(entries: serde_json::Value) -> OciImageIndex {
        let json = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        });
        match parse_manifest(&serde_json::to_vec(&json).unwrap()).unwrap() {
            OciManifest::ImageIndex(i) => i,
            other => panic!("expected index, got {other:?}"),
        }
    }

    fn entry(byte: char, os: &str, arch: &str) -> serde_json::Value {
        let mut e = descriptor(OCI_IMAGE_MEDIA_TYPE, byte);
        e["platform"] = serde_json::json!({ "os": os, "architecture": arch });
        e
    }

    #[test]
    fn index_prefers_wasm_platforms() {
        let idx = index(serde_json::json!([
            entry('1', "linux", "amd64"),
            entry('2', "wasip2", "wasm32"),
            entry('3', "wasip1", "wasm"),
        ]));
        assert!(select_index_entry(&idx).unwrap().digest.ends_with('2'));
        let idx = index(serde_json::json!([
            entry('1', "linux", "amd64"),
            entry('3', "unknown", "wasm"),
        ]));
        assert!(select_index_entry(&idx).unwrap().digest.ends_with('3'));
    }

    #[test]
    fn index_picks_the_node_platform() {
        let idx = index(serde_json::json!([
            entry('1', "linux", "arm64"),
            entry('2', "windows", "amd64"),
            entry('3', "linux", "amd64"),
        ]));
        assert!(select_index_entry_for(&idx, "amd64")
            .unwrap()
            .digest
            .ends_with('3'));
        assert!(select_index_entry_for(&idx, "arm64")
            .unwrap()
            .digest
            .ends_with('1'));
        // No match: the first entry, whose config the pull then checks.
        assert!(select_index_entry_for(&idx, "s390x")
            .unwrap()
            .digest
            .ends_with('1'));
    }

    #[test]
    fn index_falls_back_to_first_non_attestation() {
        let mut attestation = entry('0', "unknown", "unknown");
        attestation["annotations"] =
            serde_json::json!({ "vnd.docker.reference.type": "attestation-manifest" });
        let idx = index(serde_json::json!([
            attestation,
            entry('1', "linux", "arm64")
        ]));
        assert!(select_index_entry(&idx).unwrap().digest.ends_with('1'));
        assert!(select_index_entry(&index(serde_json::json!([]))).is_none());
    }

    #[test]
    fn rejects_unsupported_manifests() {
        assert!(parse_manifest(b"{}").is_err());
        assert!(parse_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#).is_err());
        assert!(parse_manifest(b"\0asm").is_err());
    }

    #[test]
    fn built_artifact_classifies_as_wasm() {
        let artifact = build_wasm_artifact(MODULE).unwrap();
        assert_eq!(artifact.manifest_digest, sha256_digest(&artifact.manifest));
        let OciManifest::Image(m) = parse_manifest(&artifact.manifest).unwrap() else {
            panic!("not an image manifest")
        };
        assert_eq!(m.config.media_type, WASM_CONFIG_MEDIA_TYPE);
        assert_eq!(m.config.digest, artifact.config_digest);
        let ImageKind::Wasm { layer, check_magic } = classify(&m) else {
            panic!("not wasm")
        };
        assert!(!check_magic);
        assert_eq!(layer.digest, sha256_digest(MODULE));
        let config: serde_json::Value = serde_json::from_slice(&artifact.config).unwrap();
        assert_eq!(config["os"], "wasip1");
        assert_eq!(config["layerDigests"][0], artifact.layer_digest.as_str());
        // Deterministic: the same bytes give the same digest.
        assert_eq!(
            build_wasm_artifact(MODULE).unwrap().manifest_digest,
            artifact.manifest_digest
        );
        let component = build_wasm_artifact(b"\0asm\x0d\0\x01\0").unwrap();
        let config: serde_json::Value = serde_json::from_slice(&component.config).unwrap();
        assert_eq!(config["os"], "wasip2");
    }
}
