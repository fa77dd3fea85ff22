//! The parts of an OCI / Docker image config a container runtime needs, and what a stored
//! container image is made of.

use std::path::PathBuf;

use serde::Deserialize;

/// The runtime defaults an image carries (`config` of the image configuration JSON). Docker
/// and OCI configs share these field names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` strings, in the image's order.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// `user`, `uid`, `user:group` or `uid:gid`, as written in the image.
    pub user: Option<String>,
    /// `os` and `architecture` of the image, for messages.
    pub os: String,
    pub architecture: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawRuntimeConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RawImageConfig {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    config: Option<RawRuntimeConfig>,
}

impl ImageConfig {
    /// Parses an image configuration blob.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let raw: RawImageConfig = serde_json::from_slice(bytes)
            .map_err(|e| format!("image config is not valid JSON: {e}"))?;
        let c = raw.config.unwrap_or_default();
        Ok(ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.filter(|w| !w.is_empty()),
            user: c.user.filter(|u| !u.is_empty()),
            os: raw.os,
            architecture: raw.architecture,
        })
    }
}

/// A Linux container image ready to run: its unpacked layers and its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    /// Unpacked layer directories, lowest (base) layer first. Whiteouts in them are in
    /// overlayfs's format (see `unpack`).
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_and_oci_configs() {
        let json = br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sh"],
            "Cmd":["-c","echo"],"Env":["PATH=/bin","A=1"],"WorkingDir":"/srv","User":"1000:1000"},
            "rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = ImageConfig::parse(json).unwrap();
        assert_eq!(c.entrypoint, vec!["/bin/sh"]);
        assert_eq!(c.cmd, vec!["-c", "echo"]);
        assert_eq!(c.env, vec!["PATH=/bin", "A=1"]);
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.architecture, "amd64");
        let bare =
            ImageConfig::parse(br#"{"os":"linux","config":{"Cmd":null,"User":""}}"#).unwrap();
        assert!(bare.cmd.is_empty() && bare.user.is_none());
        assert!(ImageConfig::parse(b"[").is_err());
    }
}
