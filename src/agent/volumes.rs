//! Pod volumes on the node: emptyDir, configMap, secret, hostPath and downwardAPI become
//! directories that runtimes mount (wasm: preopened directories).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A referenced object is missing: the kubelet reports `CreateContainerConfigError`.
    #[error("{kind} {name:?} not found")]
    Missing { kind: &'static str, name: String },
    #[error("volume {volume:?}: {message}")]
    Invalid { volume: String, message: String },
    #[error("volume {volume:?}: {source}")]
    Io {
        volume: String,
        source: std::io::Error,
    },
    #[error("reading {kind} {name:?}: {source}")]
    Api {
        kind: &'static str,
        name: String,
        source: kube::Error,
    },
}

/// Directories of a pod's volumes, by volume name.
pub type VolumeDirs = HashMap<String, PathBuf>;

/// Prepares every volume of the pod under `pod_dir/volumes/`.
pub async fn prepare(
    client: &kube::Client,
    pod: &Value,
    pod_dir: &Path,
) -> Result<VolumeDirs, VolumeError> {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut dirs = VolumeDirs::new();
    for vol in pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = vol
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let dir = pod_dir.join("volumes").join(&name);
        let io = |source| VolumeError::Io {
            volume: name.clone(),
            source,
        };
        if let Some(host) = vol.get("hostPath") {
            dirs.insert(name.clone(), host_path(&name, host)?);
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        if vol.get("emptyDir").is_some() {
            // Nothing to fill: it lives as long as the pod does on this node.
        } else if let Some(cm) = vol.get("configMap") {
            let files = config_map_files(client, ns, cm).await?;
            write_files(&dir, files, mode_of(cm)).map_err(io)?;
        } else if let Some(sec) = vol.get("secret") {
            let files = secret_files(client, ns, sec).await?;
            write_files(&dir, files, mode_of(sec)).map_err(io)?;
        } else if let Some(dapi) = vol.get("downwardAPI") {
            let files = downward_files(pod, dapi);
            write_files(&dir, files, mode_of(dapi)).map_err(io)?;
        } else {
            return Err(VolumeError::Invalid {
                volume: name,
                message: "this volume type is not supported by the wkube agent (supported: emptyDir, configMap, secret, hostPath, downwardAPI)".into(),
            });
        }
        dirs.insert(name, dir);
    }
    Ok(dirs)
}

fn mode_of(source: &Value) -> u32 {
    source
        .get("defaultMode")
        .and_then(Value::as_u64)
        .map_or(0o644, |m| m as u32)
}

fn host_path(volume: &str, host: &Value) -> Result<PathBuf, VolumeError> {
    let path = PathBuf::from(host.get("path").and_then(Value::as_str).unwrap_or_default());
    let invalid = |message: String| VolumeError::Invalid {
        volume: volume.to_string(),
        message,
    };
    if !path.is_absolute() {
        return Err(invalid(format!("hostPath {:?} must be absolute", path)));
    }
    match host.get("type").and_then(Value::as_str).unwrap_or("") {
        "DirectoryOrCreate" => std::fs::create_dir_all(&path).map_err(|source| VolumeError::Io { volume: volume.to_string(), source })?,
        "Directory" if !path.is_dir() => return Err(invalid(format!("hostPath type check failed: {} is not a directory", path.display()))),
        "" | "Directory" => {}
        other => return Err(invalid(format!("hostPath type {other:?} is not supported for wasm pods (only directories can be preopened)"))),
    }
    Ok(path)
}

/// Keys to files, honouring `items` (key -> path) when given.
fn select_items(data: Vec<(String, Vec<u8>)>, source: &Value) -> Vec<(String, Vec<u8>)> {
    let Some(items) = source.get("items").and_then(Value::as_array) else {
        return data;
    };
    items
        .iter()
        .filter_map(|item| {
            let key = item.get("key")?.as_str()?;
            let path = item.get("path").and_then(Value::as_str).unwrap_or(key);
            data.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| (path.to_string(), v.clone()))
        })
        .collect()
}

/// What a configMap or secret volume source names.
struct SourceRef {
    kind: &'static str,
    name: String,
    optional: bool,
}

impl SourceRef {
    fn of(source: &Value, kind: &'static str, name_field: &str) -> Self {
        SourceRef {
            kind,
            name: source
                .get(name_field)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            optional: source
                .get("optional")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }

    /// The object's data, an empty set for a missing optional one, or `Missing`.
    fn data(
        &self,
        found: Option<Vec<(String, Vec<u8>)>>,
        source: &Value,
    ) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
        match found {
            Some(data) => Ok(select_items(data, source)),
            None if self.optional => Ok(Vec::new()),
            None => Err(VolumeError::Missing {
                kind: self.kind,
                name: self.name.clone(),
            }),
        }
    }

    fn api_error(&self, source: kube::Error) -> VolumeError {
        VolumeError::Api {
            kind: self.kind,
            name: self.name.clone(),
            source,
        }
    }
}

async fn config_map_files(
    client: &kube::Client,
    ns: &str,
    source: &Value,
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    let r = SourceRef::of(source, "configmap", "name");
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = api.get_opt(&r.name).await.map_err(|e| r.api_error(e))?;
    let found = cm.map(|cm| {
        let mut data: Vec<(String, Vec<u8>)> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        data.extend(
            cm.binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0)),
        );
        data
    });
    r.data(found, source)
}

async fn secret_files(
    client: &kube::Client,
    ns: &str,
    source: &Value,
) -> Result<Vec<(String, Vec<u8>)>, VolumeError> {
    let r = SourceRef::of(source, "secret", "secretName");
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = api.get_opt(&r.name).await.map_err(|e| r.api_error(e))?;
    let found = secret.map(|s| {
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    });
    r.data(found, source)
}

/// Downward API files: metadata fields of the pod itself.
fn downward_files(pod: &Value, source: &Value) -> Vec<(String, Vec<u8>)> {
    source
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let path = item.get("path")?.as_str()?.to_string();
            let field = item.pointer("/fieldRef/fieldPath")?.as_str()?;
            Some((path, super::spec::field_ref(pod, field).into_bytes()))
        })
        .collect()
}

/// Writes files below `dir`, refusing paths that would escape it.
fn write_files(dir: &Path, files: Vec<(String, Vec<u8>)>, mode: u32) -> std::io::Result<()> {
    for (rel, bytes) in files {
        let rel_path = Path::new(&rel);
        let safe = rel_path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("file path {rel:?} must be relative and stay inside the volume"),
            ));
        }
        let path = dir.join(rel_path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_cannot_escape_the_volume() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = vec![("../escape".to_string(), b"x".to_vec())];
        assert!(write_files(dir.path(), bad, 0o644).is_err());
        let abs = vec![("/etc/x".to_string(), b"x".to_vec())];
        assert!(write_files(dir.path(), abs, 0o644).is_err());
        let ok = vec![("a/b.txt".to_string(), b"hi".to_vec())];
        write_files(dir.path(), ok, 0o600).expect("write");
        assert_eq!(
            std::fs::read(dir.path().join("a/b.txt")).expect("read"),
            b"hi"
        );
    }

    #[test]
    fn items_select_and_rename_keys() {
        let data = vec![
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ];
        let source = serde_json::json!({"items": [{"key": "b", "path": "renamed"}]});
        assert_eq!(
            select_items(data, &source),
            vec![("renamed".to_string(), b"2".to_vec())]
        );
    }
}
