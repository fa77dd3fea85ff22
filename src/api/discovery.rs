//! Discovery: `/version`, `/api`, `/apis` (legacy and aggregated forms) and resource lists.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::registry::{Registry, ResourceInfo, Subresource};
use super::status::{ApiError, ApiResult};

/// The Kubernetes minor version whose API wkube serves (it follows k8s-openapi's feature).
pub const KUBE_MAJOR: &str = "1";
pub const KUBE_MINOR: &str = "33";

const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn version() -> Value {
    json!({
        "major": KUBE_MAJOR,
        "minor": KUBE_MINOR,
        "gitVersion": format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0-wkube.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, arch()),
    })
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Whether the client asked for the aggregated discovery document (kubectl 1.26+ does).
fn wants_aggregated(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=APIGroupDiscoveryList") && params.contains(&"v=v2")
    })
}

fn aggregated_response(body: Value) -> Response {
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(AGGREGATED_V2),
    );
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

fn json_response(body: Value) -> Response {
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// `GET /api`.
pub fn core(registry: &Registry, headers: &HeaderMap) -> Response {
    if wants_aggregated(headers) {
        let groups: Vec<Value> = vec![group_discovery(registry, "")];
        return aggregated_response(aggregated_list(groups));
    }
    json_response(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "" }],
    }))
}

/// `GET /apis`.
pub fn groups(registry: &Registry, headers: &HeaderMap) -> Response {
    let names = group_names(registry);
    if wants_aggregated(headers) {
        let groups: Vec<Value> = names.iter().map(|g| group_discovery(registry, g)).collect();
        return aggregated_response(aggregated_list(groups));
    }
    let groups: Vec<Value> = names.iter().map(|g| api_group_value(registry, g)).collect();
    json_response(json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }))
}

fn group_names(registry: &Registry) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for (g, _) in registry.group_versions() {
        if !g.is_empty() && !names.contains(&g) {
            names.push(g);
        }
    }
    names
}

fn versions_of(registry: &Registry, group: &str) -> Vec<&'static str> {
    registry
        .group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(_, v)| v)
        .collect()
}

fn api_group_value(registry: &Registry, group: &str) -> Value {
    let versions: Vec<Value> = versions_of(registry, group)
        .iter()
        .map(|v| json!({ "groupVersion": format!("{group}/{v}"), "version": v }))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// `GET /apis/{group}`.
pub fn api_group(registry: &Registry, group: &str) -> ApiResult<Value> {
    if versions_of(registry, group).is_empty() {
        return Err(ApiError::no_route(&format!("/apis/{group}")));
    }
    let mut v = api_group_value(registry, group);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Ok(v)
}

/// `GET /api/v1` or `/apis/{group}/{version}`: the APIResourceList.
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> ApiResult<Value> {
    let resources: Vec<&ResourceInfo> = registry.in_group_version(group, version).collect();
    if resources.is_empty() {
        let path = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        return Err(ApiError::no_route(&path));
    }
    let mut list = Vec::new();
    for r in resources {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for sub in r.subresources {
            let (kind, group_version, verbs) = subresource_shape(r, *sub);
            let mut e = json!({
                "name": format!("{}/{}", r.plural, sub.name()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if let Some((g, v)) = group_version {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            list.push(e);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}

/// The kind, (group, version) when it differs from the parent's, and verbs of a subresource.
fn subresource_shape(
    r: &ResourceInfo,
    sub: Subresource,
) -> (
    &'static str,
    Option<(&'static str, &'static str)>,
    &'static [&'static str],
) {
    match sub {
        Subresource::Status => (r.kind, None, &["get", "patch", "update"]),
        Subresource::Scale => (
            "Scale",
            Some(("autoscaling", "v1")),
            &["get", "patch", "update"],
        ),
        Subresource::Binding => ("Binding", None, &["create"]),
        Subresource::Log => ("Pod", None, &["get"]),
        // kubectl drain looks for exactly this entry to decide it may evict rather than delete.
        Subresource::Eviction => ("Eviction", Some(("policy", "v1")), &["create"]),
    }
}

fn aggregated_list(items: Vec<Value>) -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

/// One group in the aggregated discovery form.
fn group_discovery(registry: &Registry, group: &str) -> Value {
    let versions: Vec<Value> = versions_of(registry, group)
        .iter()
        .map(|v| {
            let resources: Vec<Value> = registry
                .in_group_version(group, v)
                .map(resource_discovery)
                .collect();
            json!({ "version": v, "resources": resources, "freshness": "Current" })
        })
        .collect();
    json!({ "metadata": { "name": group }, "versions": versions })
}

fn resource_discovery(r: &ResourceInfo) -> Value {
    let mut e = json!({
        "resource": r.plural,
        "responseKind": { "group": r.group, "version": r.version, "kind": r.kind },
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    let subs: Vec<Value> = r
        .subresources
        .iter()
        .map(|s| {
            let (kind, gv, verbs) = subresource_shape(r, *s);
            let (g, v) = gv.unwrap_or((r.group, r.version));
            json!({
                "subresource": s.name(),
                "responseKind": { "group": g, "version": v, "kind": kind },
                "verbs": verbs,
            })
        })
        .collect();
    if !subs.is_empty() {
        e["subresources"] = json!(subs);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_name_subresources() {
        let reg = Registry::builtin();
        let list = resource_list(&reg, "apps", "v1").expect("apps/v1 served");
        let names: Vec<&str> = list["resources"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"deployments"));
        assert!(names.contains(&"deployments/scale"));
        assert!(resource_list(&reg, "apps", "v9").is_err());
    }

    #[test]
    fn aggregated_discovery_is_negotiated() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert!(wants_aggregated(&h));
        let plain = HeaderMap::new();
        assert!(!wants_aggregated(&plain));
    }
}
