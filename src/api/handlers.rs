//! HTTP glue for resource URLs: decode the request, call the REST layer, encode the answer
//! (JSON, YAML or a `Table`).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tracing::Instrument as _;

use super::discovery;
use super::eviction;
use super::object;
use super::path::{self, ApiPath};
use super::query::Query;
use super::registry::{ResourceInfo, Subresource};
use super::rest::{DeleteOptions, Patch, PatchType, Written};
use super::selectors::{FieldSelector, LabelSelector};
use super::server::ApiState;
use super::status::{success_status, ApiError, ApiResult};
use super::storage::{list_prefix, ListQuery};
use super::table;
use super::watch;
use crate::store::Read;

/// The largest request body accepted, as the apiserver's 3 MiB limit.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How a response should be encoded, from the `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Yaml,
    Table,
}

pub fn negotiate(headers: &HeaderMap) -> ApiResult<Encoding> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.is_empty() {
        return Ok(Encoding::Json);
    }
    for part in accept.split(',') {
        let media = part.trim();
        let base = media.split(';').next().unwrap_or("").trim();
        if base == "application/json" && media.contains("as=Table") {
            if media.contains("g=meta.k8s.io") {
                return Ok(Encoding::Table);
            }
            continue;
        }
        match base {
            "application/json" | "*/*" | "application/*" => return Ok(Encoding::Json),
            "application/yaml" => return Ok(Encoding::Yaml),
            _ => {}
        }
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io (got {accept:?})"
    )))
}

/// The entry point for everything under `/api` and `/apis`.
pub async fn handle(
    State(state): State<Arc<ApiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let span = tracing::info_span!("request", %method, path = uri.path());
    let result = dispatch(&state, &method, &uri, &headers, body)
        .instrument(span.clone())
        .await;
    match result {
        Ok(resp) => resp,
        Err(err) => {
            tracing::debug!(parent: &span, error = %err, "request failed");
            err.into_response()
        }
    }
}

async fn dispatch(
    state: &Arc<ApiState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let legacy = uri.path() == "/api" || uri.path().starts_with("/api/");
    let query = Query::parse(uri.query());
    let registry = state.rest.registry();
    let parsed = path::parse(registry, uri.path(), legacy)?;
    let rp = match parsed {
        ApiPath::GroupVersion { group, version } => {
            return discovery::resource_list(registry, &group, &version).map(json_response)
        }
        ApiPath::Group { group } => {
            return discovery::api_group(registry, &group).map(json_response)
        }
        ApiPath::Resource(rp) => rp,
    };
    let r = rp.resource;
    if r.namespaced
        && rp.namespace.is_none()
        && (rp.name.is_some() || *method != Method::GET && *method != Method::DELETE)
    {
        return Err(if rp.name.is_some() {
            ApiError::no_route(uri.path())
        } else {
            ApiError::method_not_allowed(format!(
                "{} on {} requires a namespace in the URL",
                method, r.plural
            ))
        });
    }
    if *method == Method::DELETE && r.namespaced && rp.namespace.is_none() {
        return Err(ApiError::method_not_allowed(
            "deletecollection requires a namespace in the URL",
        ));
    }
    let encoding = negotiate(headers)?;
    let ns = rp.namespace.as_deref();
    match (method.clone(), rp.name.as_deref(), rp.subresource) {
        (Method::GET, None, None) => {
            if query.flag("watch")? {
                watch::serve(state.clone(), r, rp.namespace.clone(), &query, encoding).await
            } else {
                list(state, r, ns, &query, encoding).await
            }
        }
        (Method::GET, Some(name), None | Some(Subresource::Status)) => {
            let obj = get_object(state, r, ns, name, &query).await?;
            Ok(encode_one(r, obj, encoding, &query, StatusCode::OK, &[]))
        }
        (Method::GET, Some(name), Some(Subresource::Scale)) => {
            let obj = state.rest.objects().must_get(r, ns, name).await?;
            Ok(encode_plain(scale_of(&obj), encoding, StatusCode::OK, &[]))
        }
        (Method::GET, Some(name), Some(Subresource::Log)) => {
            pod_log(state, r, ns, name, &query).await
        }
        (Method::POST, None, None) => {
            let body = read_body(headers, body).await?;
            let opts = query.write_options()?;
            let written = state.rest.create(r, ns, body, &opts).await?;
            Ok(encode_written(
                r,
                written,
                encoding,
                &query,
                StatusCode::CREATED,
            ))
        }
        (Method::POST, Some(name), Some(Subresource::Eviction)) => {
            let body = read_body(headers, body).await?;
            let dry_run = query.write_options()?.dry_run;
            let pod = eviction::evict(&state.rest, r, ns.unwrap_or_default(), name, &body, dry_run)
                .await?;
            Ok(encode_plain(
                success_status(r, name, object::uid(&pod)),
                Encoding::Json,
                StatusCode::CREATED,
                &[],
            ))
        }
        (Method::POST, Some(name), Some(Subresource::Binding)) => {
            let body = read_body(headers, body).await?;
            bind_pod(state, r, ns, name, body, &query).await
        }
        (Method::PUT, Some(name), sub @ (None | Some(Subresource::Status))) => {
            let body = read_body(headers, body).await?;
            let opts = query.write_options()?;
            let written = state.rest.update(r, ns, name, body, sub, &opts).await?;
            Ok(encode_written(r, written, encoding, &query, StatusCode::OK))
        }
        (Method::PUT, Some(name), Some(Subresource::Scale)) => {
            let body = read_body(headers, body).await?;
            update_scale(state, r, ns, name, ScaleChange::Replace(body), &query).await
        }
        (Method::PATCH, Some(name), sub) => {
            let ct = content_type(headers);
            let patch_type = PatchType::from_content_type(&ct).ok_or_else(|| {
                if ct.starts_with("application/apply-patch") {
                    ApiError::unsupported_media_type_msg(
                        "server-side apply (application/apply-patch+yaml) is not supported by wkube yet; use client-side `kubectl apply`",
                    )
                } else {
                    ApiError::unsupported_media_type_msg(format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {ct:?})"
                    ))
                }
            })?;
            let bytes = read_bytes(body).await?;
            match sub {
                None | Some(Subresource::Status) => {
                    let opts = query.write_options()?;
                    let written = state
                        .rest
                        .patch(
                            r,
                            ns,
                            name,
                            Patch {
                                patch_type,
                                body: &bytes,
                            },
                            sub,
                            &opts,
                        )
                        .await?;
                    Ok(encode_written(r, written, encoding, &query, StatusCode::OK))
                }
                Some(Subresource::Scale) => {
                    update_scale(
                        state,
                        r,
                        ns,
                        name,
                        ScaleChange::Patch(patch_type, bytes),
                        &query,
                    )
                    .await
                }
                Some(other) => Err(ApiError::method_not_allowed(format!(
                    "PATCH is not supported on {}/{}",
                    r.plural,
                    other.name()
                ))),
            }
        }
        (Method::DELETE, Some(name), None) => {
            let bytes = read_bytes(body).await?;
            let body_opts = if bytes.iter().all(u8::is_ascii_whitespace) {
                DeleteOptions::default()
            } else {
                let v: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?;
                DeleteOptions::from_body(&v)?
            };
            let opts = query.delete_options(body_opts)?;
            let obj = state.rest.delete(r, ns, name, &opts).await?;
            Ok(encode_plain(
                obj,
                encoding_no_table(encoding),
                StatusCode::OK,
                &[],
            ))
        }
        (Method::DELETE, None, None) => delete_collection(state, r, ns, &query).await,
        (m, _, sub) => Err(ApiError::method_not_allowed(format!(
            "{m} is not supported on {}{}",
            r.plural,
            sub.map(|s| format!("/{}", s.name())).unwrap_or_default()
        ))),
    }
}

fn encoding_no_table(e: Encoding) -> Encoding {
    if e == Encoding::Table {
        Encoding::Json
    } else {
        e
    }
}

async fn get_object(
    state: &ApiState,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    query: &Query,
) -> ApiResult<Value> {
    let read = match query.get("resourceVersion") {
        Some("0") => Read::Local,
        _ => Read::Linearizable,
    };
    state
        .rest
        .objects()
        .get(r, ns, name, read)
        .await?
        .ok_or_else(|| ApiError::not_found(r, name))
}

/// How fresh a list must be, from `resourceVersion` and `resourceVersionMatch`.
pub fn list_read(query: &Query) -> ApiResult<Read> {
    let rv = query.get("resourceVersion").unwrap_or("");
    let matching = query.get("resourceVersionMatch").unwrap_or("");
    match (rv, matching) {
        ("", "") => Ok(Read::Linearizable),
        ("", m) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch {m:?} is forbidden unless resourceVersion is provided"
        ))),
        ("0", "" | "NotOlderThan") => Ok(Read::Local),
        (v, "Exact") => object::parse_resource_version(v)
            .map(Read::AtRevision)
            .ok_or_else(|| bad_rv(v)),
        (v, "" | "NotOlderThan") => {
            object::parse_resource_version(v).ok_or_else(|| bad_rv(v))?;
            Ok(Read::Local)
        }
        (_, m) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch must be one of Exact or NotOlderThan, got {m:?}"
        ))),
    }
}

fn bad_rv(v: &str) -> ApiError {
    ApiError::bad_request(format!("invalid resource version {v:?}: must be a number"))
}

/// Parses the selectors of a request into one filter.
pub fn selector_filter(
    r: &ResourceInfo,
    query: &Query,
) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))
        .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""), r)
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

async fn list(
    state: &ApiState,
    r: &ResourceInfo,
    ns: Option<&str>,
    query: &Query,
    encoding: Encoding,
) -> ApiResult<Response> {
    let (labels, fields) = selector_filter(r, query)?;
    let filter = |obj: &Value| labels.matches(obj) && fields.matches(obj);
    let read = list_read(query)?;
    if let Read::Local = read {
        if let Some(min) = query
            .get("resourceVersion")
            .and_then(object::parse_resource_version)
        {
            wait_for_revision(state, min).await?;
        }
    }
    let page = state
        .rest
        .objects()
        .list(ListQuery {
            prefix: list_prefix(r, ns),
            read,
            limit: query.number::<usize>("limit")?,
            continue_token: query.get("continue").filter(|c| !c.is_empty()),
            filter: &filter,
            filtered: !labels.is_empty() || !fields.is_empty(),
        })
        .await?;
    let mut metadata = json!({ "resourceVersion": page.revision.to_string() });
    if let Some(c) = &page.continue_token {
        metadata["continue"] = json!(c);
    }
    if let Some(n) = page.remaining {
        metadata["remainingItemCount"] = json!(n);
    }
    if encoding == Encoding::Table {
        let include = query.get("includeObject").unwrap_or("Metadata");
        let table = table_of(r, &page.items, metadata, include, true);
        return Ok(encode_plain(table, Encoding::Json, StatusCode::OK, &[]));
    }
    let list = json!({
        "kind": format!("{}List", r.kind),
        "apiVersion": r.api_version(),
        "metadata": metadata,
        "items": page.items,
    });
    Ok(encode_plain(list, encoding, StatusCode::OK, &[]))
}

/// A "not older than" read waits briefly for this replica to catch up, then gives up as upstream.
async fn wait_for_revision(state: &ApiState, min: u64) -> ApiResult<()> {
    let store = state.rest.objects().store();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while store.current_revision() < min {
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::timeout(format!(
                "Too large resource version: {min}, current: {}",
                store.current_revision()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Builds a `meta.k8s.io/v1 Table` of objects.
pub fn table_of(
    r: &ResourceInfo,
    items: &[Value],
    metadata: Value,
    include_object: &str,
    with_columns: bool,
) -> Value {
    let now = chrono::Utc::now();
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let object = match include_object {
                "None" => Value::Null,
                "Object" => obj.clone(),
                _ => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
                }),
            };
            let mut row = json!({ "cells": table::cells(r, obj, now) });
            if !object.is_null() {
                row["object"] = object;
            }
            row
        })
        .collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "rows": rows,
    });
    if with_columns {
        t["columnDefinitions"] = table::column_definitions_json(&table::columns(r));
    } else {
        t["columnDefinitions"] = json!([]);
    }
    t
}

fn encode_one(
    r: &ResourceInfo,
    obj: Value,
    encoding: Encoding,
    query: &Query,
    status: StatusCode,
    warnings: &[String],
) -> Response {
    if encoding == Encoding::Table {
        let rv = object::resource_version(&obj).unwrap_or("").to_string();
        let include = query.get("includeObject").unwrap_or("Metadata");
        let table = table_of(r, &[obj], json!({ "resourceVersion": rv }), include, true);
        return encode_plain(table, Encoding::Json, status, warnings);
    }
    encode_plain(obj, encoding, status, warnings)
}

fn encode_written(
    r: &ResourceInfo,
    written: Written,
    encoding: Encoding,
    query: &Query,
    status: StatusCode,
) -> Response {
    encode_one(
        r,
        written.object,
        encoding,
        query,
        status,
        &written.warnings,
    )
}

/// Encodes a value as JSON or YAML with warning headers.
pub fn encode_plain(
    value: Value,
    encoding: Encoding,
    status: StatusCode,
    warnings: &[String],
) -> Response {
    let (body, ct) = match encoding {
        Encoding::Yaml => match serde_yaml_ng::to_string(&value) {
            Ok(y) => (y, "application/yaml"),
            Err(e) => return ApiError::internal(format!("encoding YAML: {e}")).into_response(),
        },
        _ => (value.to_string(), "application/json"),
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

pub fn json_response(value: Value) -> Response {
    encode_plain(value, Encoding::Json, StatusCode::OK, &[])
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn read_bytes(body: Body) -> ApiResult<Bytes> {
    use http_body_util::BodyExt as _;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.len();
        if seen <= MAX_BODY_BYTES {
            buf.extend_from_slice(&data);
        } else if seen > MAX_DRAINED_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ApiError::too_large(format!(
            "the request body is larger than the limit of {MAX_BODY_BYTES} bytes"
        )));
    }
    Ok(buf.freeze())
}

/// An oversized body is read (and dropped) up to this much, so that the client finishes
/// sending and reads the 413 instead of a broken connection.
const MAX_DRAINED_BYTES: usize = 64 * 1024 * 1024;

/// Reads a JSON or YAML object body.
async fn read_body(headers: &HeaderMap, body: Body) -> ApiResult<Value> {
    let ct = content_type(headers);
    let base = ct.split(';').next().unwrap_or("").trim().to_string();
    let bytes = read_bytes(body).await?;
    let value: Value = match base.as_str() {
        "" | "application/json" | "*/*" => serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            serde_yaml_ng::from_slice(&bytes).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid YAML: {e}"))
            })?
        }
        super::protobuf::PROTOBUF_MEDIA_TYPE => super::protobuf::decode(&bytes).map_err(|e| {
            ApiError::bad_request(format!(
                "the request body is not a valid Kubernetes protobuf object: {e}"
            ))
        })?,
        _ => return Err(ApiError::unsupported_media_type(&ct)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a single object",
        ));
    }
    Ok(value)
}

/// `autoscaling/v1 Scale` view of a scalable object.
fn scale_of(obj: &Value) -> Value {
    let selector = obj
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": { "replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0) },
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

enum ScaleChange {
    Replace(Value),
    Patch(PatchType, Bytes),
}

async fn update_scale(
    state: &ApiState,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    change: ScaleChange,
    query: &Query,
) -> ApiResult<Response> {
    let opts = query.write_options()?;
    let obj = state.rest.objects().must_get(r, ns, name).await?;
    let current = scale_of(&obj);
    let wanted = match change {
        ScaleChange::Replace(v) => v,
        ScaleChange::Patch(PatchType::Json, bytes) => {
            let p: json_patch::Patch = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &p).map_err(|e| ApiError::unprocessable(e.to_string()))?;
            doc
        }
        ScaleChange::Patch(_, bytes) => {
            let p: Value = serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::bad_request(format!("invalid patch document: {e}")))?;
            let mut doc = current.clone();
            json_patch::merge(&mut doc, &p);
            doc
        }
    };
    let replicas = wanted
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("Scale: spec.replicas must be an integer"))?;
    if let Some(rv) = wanted
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        if Some(rv) != object::resource_version(&obj) {
            return Err(ApiError::stale(r, name));
        }
    }
    let patch = json!({ "spec": { "replicas": replicas } }).to_string();
    let written = state
        .rest
        .patch(
            r,
            ns,
            name,
            Patch {
                patch_type: PatchType::Merge,
                body: patch.as_bytes(),
            },
            None,
            &opts,
        )
        .await?;
    Ok(encode_plain(
        scale_of(&written.object),
        Encoding::Json,
        StatusCode::OK,
        &[],
    ))
}

/// `pods/binding`: the scheduler's way to assign a pod to a node, once.
async fn bind_pod(
    state: &ApiState,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    binding: Value,
    query: &Query,
) -> ApiResult<Response> {
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Binding: target.name (the node) is required"))?
        .to_string();
    let opts = query.write_options()?;
    let uid = binding.pointer("/metadata/uid").and_then(Value::as_str);
    let pod = state
        .rest
        .bind_pod(r, ns, name, &node, uid, opts.dry_run)
        .await?;
    Ok(encode_plain(
        success_status(r, name, object::uid(&pod)),
        Encoding::Json,
        StatusCode::CREATED,
        &[],
    ))
}

/// `pods/log` is served by the node agent that runs the pod; the API server proxies it.
async fn pod_log(
    state: &ApiState,
    r: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    query: &Query,
) -> ApiResult<Response> {
    let pod = state.rest.objects().must_get(r, ns, name).await?;
    let container = log_container(&pod, name, query.get("container"))?;
    let previous = query.flag("previous")?;
    if !previous {
        if let Some(reason) = waiting_to_start(&pod, &container) {
            return Err(ApiError::bad_request(format!(
                "container {container:?} in pod {name:?} is waiting to start: {reason}"
            )));
        }
    }
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let nodes = state
        .rest
        .registry()
        .find("", "v1", "nodes")
        .ok_or_else(|| ApiError::internal("nodes are not served"))?;
    let node = state
        .rest
        .objects()
        .must_get(nodes, None, node_name)
        .await?;
    let address = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x.get("address").and_then(Value::as_str))
        .ok_or_else(|| {
            ApiError::service_unavailable(format!("node {node_name} has no InternalIP"))
        })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| *p > 0 && *p <= u16::MAX as u64)
        .ok_or_else(|| {
            ApiError::service_unavailable(format!("node {node_name} publishes no agent port"))
        })?;
    let pinned = node
        .pointer(&format!(
            "/metadata/annotations/{}",
            crate::agent::SERVING_CERT_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut params = Vec::new();
    for key in [
        "follow",
        "tailLines",
        "sinceSeconds",
        "sinceTime",
        "timestamps",
        "previous",
        "limitBytes",
    ] {
        if let Some(v) = query.get(key).filter(|v| !v.is_empty()) {
            let v: String =
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            params.push(format!("{key}={v}"));
        }
    }
    let ns = ns.unwrap_or("default");
    let path = format!(
        "/containerLogs/{ns}/{name}/{container}?{}",
        params.join("&")
    );
    let resp = state
        .nodes
        .get(address, port as u16, pinned, &path)
        .await
        .map_err(ApiError::service_unavailable)?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(if status == StatusCode::NOT_FOUND {
            ApiError::bad_request(body)
        } else {
            ApiError::internal(format!("node agent answered {status}: {body}"))
        });
    }
    let mut out = Response::new(Body::new(resp.into_body()));
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(out)
}

/// The container whose logs are asked for: named, or the only one.
fn log_container(pod: &Value, name: &str, wanted: Option<&str>) -> ApiResult<String> {
    let names: Vec<String> = ["/spec/initContainers", "/spec/containers"]
        .iter()
        .flat_map(|p| {
            pod.pointer(p)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    match wanted.filter(|w| !w.is_empty()) {
        Some(w) if names.iter().any(|n| n == w) => Ok(w.to_string()),
        Some(w) => Err(ApiError::bad_request(format!(
            "container {w} is not valid for pod {name}"
        ))),
        None => {
            let main: Vec<String> = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect();
            match main.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    main.join(" ")
                ))),
            }
        }
    }
}

/// The waiting reason of a container that has never run, as upstream refuses its logs.
fn waiting_to_start(pod: &Value, container: &str) -> Option<String> {
    let statuses = ["/status/containerStatuses", "/status/initContainerStatuses"];
    let status = statuses
        .iter()
        .flat_map(|p| {
            pod.pointer(p)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .find(|s| s.get("name").and_then(Value::as_str) == Some(container));
    let Some(status) = status else {
        return Some("ContainerCreating".to_string());
    };
    let ran_before = status.pointer("/lastState/terminated").is_some();
    let reason = status
        .pointer("/state/waiting/reason")
        .and_then(Value::as_str)?;
    (!ran_before).then(|| reason.to_string())
}

async fn delete_collection(
    state: &ApiState,
    r: &ResourceInfo,
    ns: Option<&str>,
    query: &Query,
) -> ApiResult<Response> {
    let (labels, fields) = selector_filter(r, query)?;
    let filter = |obj: &Value| labels.matches(obj) && fields.matches(obj);
    let opts = query.delete_options(DeleteOptions::default())?;
    let page = state
        .rest
        .objects()
        .list(ListQuery {
            prefix: list_prefix(r, ns),
            read: Read::Linearizable,
            limit: None,
            continue_token: None,
            filter: &filter,
            filtered: true,
        })
        .await?;
    let mut deleted = Vec::new();
    for obj in page.items {
        let name = object::name(&obj).unwrap_or_default().to_string();
        match state
            .rest
            .delete(r, object::namespace(&obj), &name, &opts)
            .await
        {
            Ok(o) => deleted.push(o),
            Err(e) if e.reason == "NotFound" => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": format!("{}List", r.kind),
        "apiVersion": r.api_version(),
        "metadata": { "resourceVersion": state.rest.objects().store().current_revision().to_string() },
        "items": deleted,
    });
    Ok(json_response(list))
}
