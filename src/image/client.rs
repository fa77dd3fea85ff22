//! Building `oci-client` clients and turning their errors into the registry's own words.

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciEnvelope};
use oci_client::Client;

use super::error::error_chain;
use super::ImageReference;

/// A client for one reference's registry. Built per pull/push: the scheme decision depends on
/// the registry, `oci-client` caches the credentials it was first given per registry, and a
/// pull is rare next to the cost of running the image, so there is nothing worth sharing.
pub(crate) fn client_for(
    reference: &ImageReference,
    insecure_registries: &[String],
) -> Result<Client, String> {
    super::install_crypto_provider();
    let mut plain_http: Vec<String> = insecure_registries.to_vec();
    if reference.uses_plain_http(insecure_registries) {
        // `HttpsExcept` compares against the host actually contacted.
        plain_http.push(reference.resolved_registry().to_string());
    }
    let config = ClientConfig {
        protocol: ClientProtocol::HttpsExcept(plain_http),
        // Index entries are chosen by `manifest::select_index_entry`, not by the client.
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(120)),
        ..Default::default()
    };
    Client::try_from(config)
        .map_err(|e| format!("cannot build registry client: {}", error_chain(&e)))
}

/// The most useful text of a registry failure: the OCI error envelope's codes and messages
/// (`MANIFEST_UNKNOWN: manifest unknown`) when there is one, the full cause chain otherwise
/// (connection refused, DNS failure, TLS error).
pub(crate) fn registry_message(err: &OciDistributionError) -> String {
    match err {
        OciDistributionError::RegistryError { envelope, url } => {
            format!("{} ({url})", envelope_text(envelope))
        }
        OciDistributionError::ServerError { code, url, message } => {
            // Some paths (blob uploads) report 4xx as a plain server error with the OCI
            // envelope still in the body.
            if let Ok(envelope) = serde_json::from_str::<OciEnvelope>(message) {
                if !envelope.errors.is_empty() {
                    return format!("{} (HTTP {code}, {url})", envelope_text(&envelope));
                }
            }
            let mut message = message.trim().to_string();
            if message.len() > 512 {
                let mut cut = 512;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
                message.push_str("...");
            }
            format!("HTTP {code}: {message} ({url})")
        }
        OciDistributionError::UnauthorizedError { url } => {
            format!("unauthorized: authentication required ({url})")
        }
        other => error_chain(other),
    }
}

/// `CODE: message; CODE: message` from an OCI error envelope.
fn envelope_text(envelope: &OciEnvelope) -> String {
    let errors: Vec<String> = envelope
        .errors
        .iter()
        .map(|e| {
            let code = serde_json::to_value(&e.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{:?}", e.code));
            if e.message.is_empty() {
                code
            } else {
                format!("{code}: {}", e.message)
            }
        })
        .collect();
    errors.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_in_a_server_error_is_unpacked() {
        let err = OciDistributionError::ServerError {
            code: 401,
            url: "http://r/v2/x/blobs/uploads/".to_string(),
            message: r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[]}]}"#
                .to_string(),
        };
        assert_eq!(
            registry_message(&err),
            "UNAUTHORIZED: authentication required (HTTP 401, http://r/v2/x/blobs/uploads/)"
        );
        let err = OciDistributionError::ServerError {
            code: 502,
            url: "u".to_string(),
            message: "x".repeat(2000),
        };
        assert!(registry_message(&err).len() < 600);
    }
}
