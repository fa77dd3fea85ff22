//! From a pod's container to a runtime [`ContainerSpec`]: argv, environment (with `$(VAR)`
//! expansion as the kubelet does), volume mounts and resource limits.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use serde_json::Value;

use super::volumes::VolumeDirs;
use crate::runtime::Mount;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Reported as `CreateContainerConfigError`, as the kubelet does.
    #[error("{0}")]
    Config(String),
    #[error("reading {what}: {source}")]
    Api { what: String, source: kube::Error },
}

/// The value of a downward-API field path of the pod (`metadata.name`, `metadata.labels['x']`...).
pub fn field_ref(pod: &Value, path: &str) -> String {
    let text = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let map_entry = |map: &str, key: &str| {
        pod.pointer(&format!("/metadata/{map}"))
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let map_all = |map: &str| {
        let mut lines: Vec<String> = pod
            .pointer(&format!("/metadata/{map}"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        lines.sort();
        lines.join("\n")
    };
    if let Some(key) = path
        .strip_prefix("metadata.labels['")
        .and_then(|r| r.strip_suffix("']"))
    {
        return map_entry("labels", key);
    }
    if let Some(key) = path
        .strip_prefix("metadata.annotations['")
        .and_then(|r| r.strip_suffix("']"))
    {
        return map_entry("annotations", key);
    }
    match path {
        "metadata.name" => text("/metadata/name"),
        "metadata.namespace" => text("/metadata/namespace"),
        "metadata.uid" => text("/metadata/uid"),
        "metadata.labels" => map_all("labels"),
        "metadata.annotations" => map_all("annotations"),
        "spec.nodeName" => text("/spec/nodeName"),
        "spec.serviceAccountName" => text("/spec/serviceAccountName"),
        "status.podIP" => text("/status/podIP"),
        "status.hostIP" => text("/status/hostIP"),
        _ => String::new(),
    }
}

/// Expands `$(VAR)` references from `vars`; `$$` escapes a dollar; unknown references stay as written.
pub fn expand(input: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Reads configmaps and secrets once per container start.
struct Lookups<'a> {
    client: &'a kube::Client,
    ns: &'a str,
    configmaps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Lookups<'_> {
    async fn configmap(&mut self, name: &str) -> Result<Option<&ConfigMap>, SpecError> {
        if !self.configmaps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), self.ns);
            let cm = api.get_opt(name).await.map_err(|source| SpecError::Api {
                what: format!("configmap {name:?}"),
                source,
            })?;
            self.configmaps.insert(name.to_string(), cm);
        }
        Ok(self.configmaps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, SpecError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), self.ns);
            let s = api.get_opt(name).await.map_err(|source| SpecError::Api {
                what: format!("secret {name:?}"),
                source,
            })?;
            self.secrets.insert(name.to_string(), s);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

/// The container's environment, in order, as the kubelet builds it: envFrom first, then env.
pub async fn environment(
    client: &kube::Client,
    pod: &Value,
    container: &Value,
) -> Result<Vec<(String, String)>, SpecError> {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut lookups = Lookups {
        client,
        ns,
        configmaps: HashMap::new(),
        secrets: HashMap::new(),
    };
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        env.retain(|(existing, _)| *existing != k);
        env.push((k, v));
    };
    for from in container
        .get("envFrom")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let prefix = from.get("prefix").and_then(Value::as_str).unwrap_or("");
        if let Some(r) = from.get("configMapRef") {
            let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
            let optional = r.get("optional").and_then(Value::as_bool).unwrap_or(false);
            match lookups.configmap(name).await? {
                Some(cm) => {
                    for (k, v) in cm.data.clone().unwrap_or_default() {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if optional => {}
                None => return Err(SpecError::Config(format!("configmap {name:?} not found"))),
            }
        }
        if let Some(r) = from.get("secretRef") {
            let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
            let optional = r.get("optional").and_then(Value::as_bool).unwrap_or(false);
            match lookups.secret(name).await? {
                Some(s) => {
                    for (k, v) in s.data.clone().unwrap_or_default() {
                        set(
                            &mut env,
                            format!("{prefix}{k}"),
                            String::from_utf8_lossy(&v.0).into_owned(),
                        );
                    }
                }
                None if optional => {}
                None => return Err(SpecError::Config(format!("secret {name:?} not found"))),
            }
        }
    }
    for var in container
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = var
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let value = match (
            var.get("value").and_then(Value::as_str),
            var.get("valueFrom"),
        ) {
            (Some(v), _) => {
                let known: HashMap<String, String> = env.iter().cloned().collect();
                expand(v, &known)
            }
            (None, Some(from)) => match value_from(&mut lookups, pod, container, from).await? {
                Some(v) => v,
                None => continue,
            },
            (None, None) => String::new(),
        };
        set(&mut env, name, value);
    }
    Ok(env)
}

async fn value_from(
    lookups: &mut Lookups<'_>,
    pod: &Value,
    container: &Value,
    from: &Value,
) -> Result<Option<String>, SpecError> {
    if let Some(r) = from.get("configMapKeyRef") {
        let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
        let key = r.get("key").and_then(Value::as_str).unwrap_or_default();
        let optional = r.get("optional").and_then(Value::as_bool).unwrap_or(false);
        let value = lookups
            .configmap(name)
            .await?
            .map(|cm| cm.data.as_ref().and_then(|d| d.get(key).cloned()));
        return match value {
            Some(Some(v)) => Ok(Some(v)),
            _ if optional => Ok(None),
            None => Err(SpecError::Config(format!("configmap {name:?} not found"))),
            Some(None) => Err(SpecError::Config(format!(
                "couldn't find key {key} in ConfigMap {}/{name}",
                lookups.ns
            ))),
        };
    }
    if let Some(r) = from.get("secretKeyRef") {
        let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
        let key = r.get("key").and_then(Value::as_str).unwrap_or_default();
        let optional = r.get("optional").and_then(Value::as_bool).unwrap_or(false);
        let value = lookups.secret(name).await?.map(|s| {
            s.data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        });
        return match value {
            Some(Some(v)) => Ok(Some(v)),
            _ if optional => Ok(None),
            None => Err(SpecError::Config(format!("secret {name:?} not found"))),
            Some(None) => Err(SpecError::Config(format!(
                "couldn't find key {key} in Secret {}/{name}",
                lookups.ns
            ))),
        };
    }
    if let Some(path) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
        return Ok(Some(field_ref(pod, path)));
    }
    if let Some(r) = from.get("resourceFieldRef") {
        let resource = r
            .get("resource")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (section, name) = resource.split_once('.').unwrap_or(("", ""));
        let raw = container
            .pointer(&format!("/resources/{section}/{name}"))
            .and_then(Value::as_str);
        let divisor = r
            .get("divisor")
            .and_then(Value::as_str)
            .and_then(crate::api::validation::quantity_value)
            .unwrap_or(1.0);
        let value = raw
            .and_then(crate::api::validation::quantity_value)
            .map(|v| (v / divisor).ceil() as i64)
            .unwrap_or(0);
        return Ok(Some(value.to_string()));
    }
    Ok(None)
}

/// argv: the module is argv[0], then `command`, then `args`, with `$(VAR)` expanded.
pub fn argv(container: &Value, module_name: &str, env: &[(String, String)]) -> Vec<String> {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let strings = |field: &str| -> Vec<String> {
        container
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| expand(s, &vars))
            .collect()
    };
    let mut argv = vec![module_name.to_string()];
    argv.extend(strings("command"));
    argv.extend(strings("args"));
    argv
}

/// argv of a Linux container, by Kubernetes' rules: `command` replaces the image's Entrypoint
/// and drops its Cmd; `args` alone replaces Cmd; neither runs Entrypoint + Cmd. `$(VAR)` is
/// expanded in `command` and `args` only, as the kubelet does.
pub fn container_argv(
    container: &Value,
    image: &crate::image::ImageConfig,
    env: &[(String, String)],
) -> Vec<String> {
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let strings = |field: &str| -> Option<Vec<String>> {
        let list = container.get(field).and_then(Value::as_array)?;
        let out: Vec<String> = list
            .iter()
            .filter_map(Value::as_str)
            .map(|s| expand(s, &vars))
            .collect();
        (!out.is_empty()).then_some(out)
    };
    match (strings("command"), strings("args")) {
        (Some(command), args) => command
            .into_iter()
            .chain(args.unwrap_or_default())
            .collect(),
        (None, Some(args)) => image.entrypoint.iter().cloned().chain(args).collect(),
        (None, None) => image
            .entrypoint
            .iter()
            .chain(image.cmd.iter())
            .cloned()
            .collect(),
    }
}

/// The program name a wasm image runs as: the last path segment of its repository.
pub fn module_name(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let name = last.split(':').next().unwrap_or(last);
    if name.ends_with(".wasm") {
        name.to_string()
    } else {
        format!("{name}.wasm")
    }
}

/// The container's volume mounts, resolved to node directories.
pub fn mounts(container: &Value, volumes: &VolumeDirs) -> Result<Vec<Mount>, SpecError> {
    let mut out = Vec::new();
    for m in container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
        let dir = volumes.get(name).ok_or_else(|| {
            SpecError::Config(format!("volume {name:?} is not prepared on this node"))
        })?;
        let mut host_path: PathBuf = dir.clone();
        if let Some(sub) = m
            .get("subPath")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            let safe = std::path::Path::new(sub)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !safe {
                return Err(SpecError::Config(format!(
                    "subPath {sub:?} must be a relative path inside the volume"
                )));
            }
            host_path = host_path.join(sub);
            std::fs::create_dir_all(&host_path)
                .map_err(|e| SpecError::Config(format!("subPath {sub:?}: {e}")))?;
        }
        out.push(Mount {
            host_path,
            container_path: m
                .get("mountPath")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            read_only: m.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    Ok(out)
}

/// `resources.limits.<name>` as a number (bytes for memory, cores for cpu).
pub fn limit(container: &Value, name: &str) -> Option<f64> {
    container
        .pointer(&format!("/resources/limits/{name}"))
        .and_then(Value::as_str)
        .and_then(crate::api::validation::quantity_value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion_follows_the_kubelet() {
        let vars = HashMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand("x$(A)y", &vars), "x1y");
        assert_eq!(expand("$(B)", &vars), "$(B)");
        assert_eq!(expand("$$(A)", &vars), "$(A)");
        assert_eq!(expand("cost $5", &vars), "cost $5");
        assert_eq!(expand("$(A", &vars), "$(A");
    }

    #[test]
    fn argv_puts_the_module_first() {
        let c = json!({"command": ["serve"], "args": ["--port", "$(PORT)"]});
        let env = vec![("PORT".to_string(), "8080".to_string())];
        assert_eq!(
            argv(&c, "hello.wasm", &env),
            vec!["hello.wasm", "serve", "--port", "8080"]
        );
        assert_eq!(module_name("127.0.0.1:5000/demo/hello:v1"), "hello.wasm");
        assert_eq!(module_name("reg/x.wasm@sha256:abc"), "x.wasm");
    }

    #[test]
    fn container_argv_follows_kubernetes() {
        let image = crate::image::ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["default".into()],
            ..Default::default()
        };
        let env = vec![("X".to_string(), "1".to_string())];
        let argv = |c: Value| container_argv(&c, &image, &env);
        assert_eq!(argv(json!({})), vec!["/entry", "default"]);
        assert_eq!(
            argv(json!({"args": ["a", "$(X)"]})),
            vec!["/entry", "a", "1"]
        );
        assert_eq!(argv(json!({"command": ["sh"]})), vec!["sh"]);
        assert_eq!(
            argv(json!({"command": ["sh"], "args": ["-c", "echo"]})),
            vec!["sh", "-c", "echo"]
        );
        let bare = crate::image::ImageConfig::default();
        assert!(container_argv(&json!({}), &bare, &env).is_empty());
    }

    #[test]
    fn field_refs() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n", "labels": {"app": "web"}}, "spec": {"nodeName": "node1"}});
        assert_eq!(field_ref(&pod, "metadata.name"), "p");
        assert_eq!(field_ref(&pod, "metadata.labels['app']"), "web");
        assert_eq!(field_ref(&pod, "metadata.labels"), "app=\"web\"");
        assert_eq!(field_ref(&pod, "spec.nodeName"), "node1");
    }
}
