//! `wkube image push`: upload a wasm binary as a CNCF wasm OCI artifact.

use std::path::Path;

use oci_client::manifest::OCI_IMAGE_MEDIA_TYPE;
use tracing::Instrument;

use super::client::{client_for, registry_message};
use super::manifest;
use super::{ImageError, ImageReference, RegistryAuth};

/// `wkube image push FILE.wasm REF`: pushes a wasm module or component as a CNCF wasm OCI
/// artifact (config `application/vnd.wasm.config.v0+json`, one `application/wasm` layer) and
/// returns the manifest digest.
///
/// The manifest bytes are built here and uploaded as they are (not re-serialised by the
/// client), so the returned digest is exactly the one the registry stores and the one
/// `ImageStore::import` of the same file records.
pub async fn push_wasm(
    file: &Path,
    reference: &str,
    auth: &RegistryAuth,
    insecure_registries: &[String],
) -> Result<String, ImageError> {
    let parsed = ImageReference::parse(reference)?;
    let name = parsed.normalized();
    let fail = |message: String| ImageError::Push {
        reference: name.clone(),
        message,
    };
    let wasm = tokio::fs::read(file).await?;
    if !manifest::is_wasm(&wasm) {
        return Err(ImageError::NotWasm {
            reference: name.clone(),
            media_types: Vec::new(),
        });
    }
    let artifact = manifest::build_wasm_artifact(&wasm)
        .map_err(|e| fail(format!("building manifest: {e}")))?;

    let span = tracing::info_span!("image_push", image = %name);
    async {
        let client = client_for(&parsed, insecure_registries).map_err(&fail)?;
        let oci = parsed.oci();
        // Token registries need the scope negotiated before blob uploads; this also stores the
        // credentials in the client for the calls below.
        client
            .auth(oci, &auth.to_oci(), oci_client::RegistryOperation::Push)
            .await
            .map_err(|e| fail(registry_message(&e)))?;
        client
            .push_blob(oci, wasm, &artifact.layer_digest)
            .await
            .map_err(|e| fail(registry_message(&e)))?;
        client
            .push_blob(oci, artifact.config.clone(), &artifact.config_digest)
            .await
            .map_err(|e| fail(registry_message(&e)))?;
        let content_type = http::HeaderValue::from_static(OCI_IMAGE_MEDIA_TYPE);
        client
            .push_manifest_raw(oci, artifact.manifest.clone(), content_type)
            .await
            .map_err(|e| fail(registry_message(&e)))?;
        tracing::info!(digest = %artifact.manifest_digest, "pushed");
        Ok(artifact.manifest_digest.clone())
    }
    .instrument(span)
    .await
}
