//! The node's image store: where the kubelet gets the wasm binary or the unpacked layers a
//! container runs.
//!
//! Images come from OCI registries (pulled with `oci-client`), from `wkube image import`
//! (a local file, no registry) and go to registries with `wkube image push`. Everything lands
//! in one content-addressed directory:
//!
//! ```text
//! root/blobs/sha256/<hex>   manifests, configs and wasm binaries, named by their digest
//! root/layers/sha256/<hex>  container image layers, unpacked once per (compressed) digest
//! root/refs.json            reference -> manifest digest + wasm blob or config + layers
//! root/tmp/                 downloads and unpacks in progress (same filesystem, so a rename
//!                           publishes them)
//! ```
//!
//! Pulling is split in steps: fetch the manifest (`pull.rs`), classify it
//! ([`manifest::classify`] -> [`manifest::ImageKind`]), then fetch what that kind of image
//! needs: the wasm binary, or the config and every layer of a container image.

mod auth;
mod client;
mod config;
mod error;
pub mod manifest;
mod pull;
mod push;
mod reference;
mod store;
pub mod unpack;

pub use auth::{auth_from_dockerconfigjson, RegistryAuth};
pub use config::{ContainerImage, ImageConfig};
pub use error::ImageError;
pub use push::push_wasm;
pub use reference::ImageReference;
pub use store::{ImageStore, ImageStoreConfig, LayerProgress, PullEvent, PullPolicy, StoredImage};

/// `rustls` is built without a default crypto provider (the crate picks `ring` explicitly), so
/// one has to be installed process-wide before `reqwest` builds its first TLS config. Another
/// part of wkube may have done it already; that is fine.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
