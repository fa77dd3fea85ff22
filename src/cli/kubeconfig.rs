//! Writing kubeconfig files for the admin identity.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::pki::ClusterPki;

const NAME: &str = "wkube";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The cluster, users and contexts wkube puts in a kubeconfig: `wkube` authenticates with the
/// admin bearer token, `wkube-cert` with the admin client certificate.
fn entries(server: &str, pki: &ClusterPki) -> (Value, Vec<Value>, Vec<Value>) {
    let cluster = json!({
        "name": NAME,
        "cluster": { "server": server, "certificate-authority-data": b64(&pki.ca_cert_pem) },
    });
    let users = vec![
        json!({ "name": "wkube-admin", "user": { "token": pki.admin_token } }),
        json!({ "name": "wkube-admin-cert", "user": {
            "client-certificate-data": b64(&pki.admin_cert_pem),
            "client-key-data": b64(&pki.admin_key_pem),
        }}),
    ];
    let contexts = vec![
        json!({ "name": NAME, "context": { "cluster": NAME, "user": "wkube-admin", "namespace": "default" } }),
        json!({ "name": "wkube-cert", "context": { "cluster": NAME, "user": "wkube-admin-cert", "namespace": "default" } }),
    ];
    (cluster, users, contexts)
}

/// Writes a kubeconfig holding only this cluster (mode 0600: it carries credentials).
pub fn write(path: &Path, server: &str, pki: &ClusterPki) -> anyhow::Result<()> {
    let (cluster, users, contexts) = entries(server, pki);
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": users,
        "contexts": contexts,
        "current-context": NAME,
        "preferences": {},
    });
    save(path, &config)
}

/// Adds or replaces the wkube entries in an existing kubeconfig (`~/.kube/config`), keeping
/// everything else; becomes the current context only if there is none.
pub fn merge(path: &Path, server: &str, pki: &ClusterPki) -> anyhow::Result<()> {
    let mut config: Value = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is not a valid kubeconfig", path.display()))?,
        Ok(_) => json!({}),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if !config.is_object() {
        anyhow::bail!("{} is not a valid kubeconfig (not a map)", path.display());
    }
    config["apiVersion"] = json!("v1");
    config["kind"] = json!("Config");
    let (cluster, users, contexts) = entries(server, pki);
    upsert(&mut config, "clusters", cluster);
    for u in users {
        upsert(&mut config, "users", u);
    }
    for c in contexts {
        upsert(&mut config, "contexts", c);
    }
    if config
        .get("current-context")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        config["current-context"] = json!(NAME);
    }
    save(path, &config)
}

fn upsert(config: &mut Value, list: &str, entry: Value) {
    if !config.get(list).is_some_and(Value::is_array) {
        config[list] = json!([]);
    }
    if let Some(items) = config.get_mut(list).and_then(Value::as_array_mut) {
        items.retain(|e| e.get("name") != entry.get("name"));
        items.push(entry);
    }
}

fn save(path: &Path, config: &Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let yaml = serde_yaml_ng::to_string(config).context("encoding kubeconfig")?;
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write as _;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.write_all(yaml.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_other_entries_and_replaces_ours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = ClusterPki::load_or_create(dir.path(), &["localhost".to_string()]).expect("pki");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\ncurrent-context: prod\nclusters:\n- name: prod\n  cluster: {server: https://prod:6443}\nusers: []\ncontexts:\n- name: prod\n  context: {cluster: prod, user: admin}\n",
        )
        .expect("write");
        merge(&path, "https://127.0.0.1:1", &pki).expect("merge");
        merge(&path, "https://127.0.0.1:2", &pki).expect("merge again");
        let config: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read")).expect("yaml");
        assert_eq!(
            config["current-context"], "prod",
            "an existing context stays current"
        );
        let clusters = config["clusters"].as_array().expect("clusters");
        assert_eq!(clusters.len(), 2);
        let ours = clusters
            .iter()
            .find(|c| c["name"] == "wkube")
            .expect("wkube cluster");
        assert_eq!(ours["cluster"]["server"], "https://127.0.0.1:2");
        assert!(config["contexts"]
            .as_array()
            .expect("contexts")
            .iter()
            .any(|c| c["name"] == "wkube"));

        let fresh = dir.path().join("fresh");
        write(&fresh, "https://127.0.0.1:3", &pki).expect("write");
        let config: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&fresh).expect("read")).expect("yaml");
        assert_eq!(config["current-context"], "wkube");
        assert_eq!(
            config["users"][0]["user"]["token"],
            pki.admin_token.as_str()
        );
    }
}
