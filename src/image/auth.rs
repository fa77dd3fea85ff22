//! Registry credentials, and reading them from `kubernetes.io/dockerconfigjson` pull secrets.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::Deserialize;

use super::ImageError;

/// How to authenticate to a registry. Basic credentials are also what token-based registries
/// (Docker Hub, GHCR) exchange for a bearer token; `oci-client` does that exchange.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
}

impl fmt::Debug for RegistryAuth {
    /// Never prints the password: these values end up in logs and test output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

impl RegistryAuth {
    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        match self {
            RegistryAuth::Anonymous => oci_client::secrets::RegistryAuth::Anonymous,
            RegistryAuth::Basic { username, password } => {
                oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone())
            }
        }
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: Option<BTreeMap<String, DockerAuthEntry>>,
    /// The legacy `.dockercfg` layout has the entries at the top level.
    #[serde(flatten)]
    legacy: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct DockerAuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Registry credentials from a `kubernetes.io/dockerconfigjson` secret's `.dockerconfigjson`
/// bytes, for a registry host as written in the image reference (e.g. `docker.io`,
/// `127.0.0.1:5000`).
///
/// Keys are matched the way Docker does: scheme and path are ignored
/// (`https://index.docker.io/v1/` is Docker Hub), and Docker Hub's aliases are one registry.
/// An entry is either `auth` (base64 of `user:password`) or separate `username`/`password`;
/// when both are present `auth` wins, as in the docker CLI. `Ok(None)`: no entry for this
/// registry (the caller tries the next secret, then anonymous).
pub fn auth_from_dockerconfigjson(
    json: &[u8],
    registry: &str,
) -> Result<Option<RegistryAuth>, ImageError> {
    let config: DockerConfig = serde_json::from_slice(json)
        .map_err(|e| ImageError::InvalidCredentials(format!("dockerconfigjson: {e}")))?;
    let entries: BTreeMap<String, DockerAuthEntry> = match config.auths {
        Some(auths) => auths,
        None => config
            .legacy
            .into_iter()
            .filter_map(|(k, v)| serde_json::from_value(v).ok().map(|e| (k, e)))
            .collect(),
    };
    let wanted = canonical_registry(registry);
    let Some(entry) = entries
        .iter()
        .find(|(key, _)| canonical_registry(key) == wanted)
        .map(|(_, entry)| entry)
    else {
        return Ok(None);
    };
    entry_credentials(entry)
}

fn entry_credentials(entry: &DockerAuthEntry) -> Result<Option<RegistryAuth>, ImageError> {
    if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| ImageError::InvalidCredentials(format!("auth is not base64: {e}")))?;
        let text = String::from_utf8(decoded)
            .map_err(|_| ImageError::InvalidCredentials("auth is not UTF-8".to_string()))?;
        let (username, password) = text.split_once(':').ok_or_else(|| {
            ImageError::InvalidCredentials("auth is not base64 of user:password".to_string())
        })?;
        return Ok(Some(RegistryAuth::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) if !username.is_empty() => Ok(Some(RegistryAuth::Basic {
            username: username.clone(),
            password: password.clone(),
        })),
        _ => Ok(None),
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`; `http://127.0.0.1:5000/x` -> `127.0.0.1:5000`.
fn canonical_registry(key: &str) -> String {
    let key = key.trim();
    let without_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or(without_scheme)
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(u: &str, p: &str) -> Option<RegistryAuth> {
        Some(RegistryAuth::Basic {
            username: u.to_string(),
            password: p.to_string(),
        })
    }

    #[test]
    fn auth_field_is_base64_user_password() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let json = format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{encoded}"}}}}}}"#);
        let got = auth_from_dockerconfigjson(json.as_bytes(), "127.0.0.1:5000").unwrap();
        assert_eq!(got, basic("alice", "s3cr:et"));
        assert_eq!(
            auth_from_dockerconfigjson(json.as_bytes(), "ghcr.io").unwrap(),
            None
        );
    }

    #[test]
    fn username_password_fields() {
        let json = br#"{"auths":{"https://ghcr.io/v2/":{"username":"bob","password":"pw","email":"b@x"}}}"#;
        assert_eq!(
            auth_from_dockerconfigjson(json, "ghcr.io").unwrap(),
            basic("bob", "pw")
        );
    }

    #[test]
    fn docker_hub_aliases() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("u:p");
        let json =
            format!(r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{encoded}"}}}}}}"#);
        assert_eq!(
            auth_from_dockerconfigjson(json.as_bytes(), "docker.io").unwrap(),
            basic("u", "p")
        );
    }

    #[test]
    fn legacy_dockercfg_layout() {
        let json = br#"{"registry.lan:5000":{"username":"u","password":"p"}}"#;
        assert_eq!(
            auth_from_dockerconfigjson(json, "registry.lan:5000").unwrap(),
            basic("u", "p")
        );
    }

    #[test]
    fn malformed_secrets() {
        assert!(auth_from_dockerconfigjson(b"not json", "x").is_err());
        let json = br#"{"auths":{"x":{"auth":"!!!"}}}"#;
        assert!(auth_from_dockerconfigjson(json, "x").is_err());
        let no_colon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        let json = format!(r#"{{"auths":{{"x":{{"auth":"{no_colon}"}}}}}}"#);
        assert!(auth_from_dockerconfigjson(json.as_bytes(), "x").is_err());
        // An entry without credentials is no credentials, not an error.
        let json = br#"{"auths":{"x":{}}}"#;
        assert_eq!(auth_from_dockerconfigjson(json, "x").unwrap(), None);
    }

    #[test]
    fn debug_redacts_password() {
        let text = format!("{:?}", basic("alice", "hunter2").unwrap());
        assert!(text.contains("alice") && !text.contains("hunter2"));
    }
}
