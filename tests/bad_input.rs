//! Malformed and hostile requests: each gets the status Kubernetes would give, the server keeps
//! serving, and nothing in the store changes.

mod common;

use common::Cluster;
use http::{header, Method, Request};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    content_type: &'static str,
    accept: Option<&'static str>,
    body: Vec<u8>,
    code: u16,
    reason: &'static str,
}

fn case(
    what: &'static str,
    method: Method,
    path: &str,
    ct: &'static str,
    body: impl Into<Vec<u8>>,
    code: u16,
    reason: &'static str,
) -> Case {
    Case {
        what,
        method,
        path: path.to_string(),
        content_type: ct,
        accept: None,
        body: body.into(),
        code,
        reason,
    }
}

async fn send(client: &kube::Client, c: &Case) -> (u16, Value) {
    let mut req = Request::builder().method(c.method.clone()).uri(&c.path);
    if !c.content_type.is_empty() {
        req = req.header(header::CONTENT_TYPE, c.content_type);
    }
    if let Some(a) = c.accept {
        req = req.header(header::ACCEPT, a);
    }
    let req = req
        .body(kube::client::Body::from(c.body.clone()))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (code, value)
}

const CM: &str = "/api/v1/namespaces/default/configmaps";
const JSON: &str = "application/json";

fn cm(name: &str) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_proper_statuses_and_change_nothing() {
    let c = Cluster::start();
    let client = c.client().await;
    // Fixtures the cases refer to.
    for name in ["existing", "victim"] {
        let (code, _) = send(
            &client,
            &case("setup", Method::POST, CM, JSON, cm(name), 201, ""),
        )
        .await;
        assert_eq!(code, 201);
    }
    let before = list_everything(&client).await;

    let long_name = "a".repeat(300);
    let huge_body = vec![b' '; 4 * 1024 * 1024];
    let big_configmap =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
        "data": {"blob": "x".repeat(2 * 1024 * 1024)}})
        .to_string();
    let big_pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
        "spec": {"containers": [{"name": "c", "image": "x", "args": ["y".repeat(2 * 1024 * 1024)]}]}})
    .to_string();
    let existing = format!("{CM}/existing");
    let victim = format!("{CM}/victim");
    let cases = vec![
        case(
            "truncated JSON",
            Method::POST,
            CM,
            JSON,
            "{\"apiVersion\": ",
            400,
            "BadRequest",
        ),
        case(
            "not JSON at all",
            Method::POST,
            CM,
            JSON,
            vec![0xff, 0xfe, 0x00, 0x01],
            400,
            "BadRequest",
        ),
        case(
            "broken YAML",
            Method::POST,
            CM,
            "application/yaml",
            "a: [b\n  - c: {",
            400,
            "BadRequest",
        ),
        case(
            "a list, not an object",
            Method::POST,
            CM,
            JSON,
            "[1,2,3]",
            400,
            "BadRequest",
        ),
        case(
            "wrong field type",
            Method::POST,
            CM,
            JSON,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"},"data":"oops"}"#,
            400,
            "BadRequest",
        ),
        case(
            "metadata of the wrong type",
            Method::POST,
            CM,
            JSON,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":["x"]}"#,
            400,
            "BadRequest",
        ),
        case(
            "kind does not match the URL",
            Method::POST,
            CM,
            JSON,
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}"#,
            400,
            "BadRequest",
        ),
        case(
            "apiVersion does not match the URL",
            Method::POST,
            CM,
            JSON,
            r#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"s"}}"#,
            400,
            "BadRequest",
        ),
        case(
            "invalid name",
            Method::POST,
            CM,
            JSON,
            cm("Bad_Name"),
            422,
            "Invalid",
        ),
        case(
            "name too long",
            Method::POST,
            CM,
            JSON,
            cm(&long_name),
            422,
            "Invalid",
        ),
        case(
            "no name",
            Method::POST,
            CM,
            JSON,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#,
            422,
            "Invalid",
        ),
        case(
            "invalid label",
            Method::POST,
            CM,
            JSON,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"l","labels":{"bad key!":"v"}}}"#,
            422,
            "Invalid",
        ),
        case(
            "namespace differs from the URL",
            Method::POST,
            CM,
            JSON,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n","namespace":"other"}}"#,
            400,
            "BadRequest",
        ),
        case(
            "namespace does not exist",
            Method::POST,
            "/api/v1/namespaces/nowhere/configmaps",
            JSON,
            cm("x"),
            404,
            "NotFound",
        ),
        case(
            "body over 3 MiB",
            Method::POST,
            CM,
            JSON,
            huge_body,
            413,
            "RequestEntityTooLarge",
        ),
        // The apiserver's own limit for configmap data (1 MiB) comes first...
        case(
            "configmap over 1 MiB",
            Method::POST,
            CM,
            JSON,
            big_configmap,
            422,
            "Invalid",
        ),
        // ...and the store's value limit (1.5 MiB, like etcd's) catches everything else.
        case(
            "object over the store's 1.5 MiB",
            Method::POST,
            "/api/v1/namespaces/default/pods",
            JSON,
            big_pod,
            413,
            "RequestEntityTooLarge",
        ),
        case(
            "unsupported body type",
            Method::POST,
            CM,
            "text/plain",
            cm("t"),
            415,
            "UnsupportedMediaType",
        ),
        case(
            "unknown resource",
            Method::GET,
            "/api/v1/widgets",
            "",
            "",
            404,
            "NotFound",
        ),
        case(
            "unknown group",
            Method::GET,
            "/apis/nope.example/v1/things",
            "",
            "",
            404,
            "NotFound",
        ),
        case(
            "missing object",
            Method::GET,
            &format!("{CM}/nope"),
            "",
            "",
            404,
            "NotFound",
        ),
        case(
            "create over an existing object",
            Method::POST,
            CM,
            JSON,
            cm("existing"),
            409,
            "AlreadyExists",
        ),
        case(
            "stale resourceVersion",
            Method::PUT,
            &existing,
            JSON,
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"existing","resourceVersion":"1"},"data":{"k":"changed"}}"#,
            409,
            "Conflict",
        ),
        case(
            "name differs from the URL",
            Method::PUT,
            &existing,
            JSON,
            cm("other"),
            400,
            "BadRequest",
        ),
        case(
            "JSON patch that is not a list",
            Method::PATCH,
            &existing,
            "application/json-patch+json",
            r#"{"op":"add"}"#,
            400,
            "BadRequest",
        ),
        case(
            "JSON patch on a missing path",
            Method::PATCH,
            &existing,
            "application/json-patch+json",
            r#"[{"op":"remove","path":"/data/nope"}]"#,
            422,
            "Invalid",
        ),
        case(
            "merge patch that is not an object",
            Method::PATCH,
            &existing,
            "application/merge-patch+json",
            "\"text\"",
            400,
            "BadRequest",
        ),
        case(
            "strategic patch with a bad directive",
            Method::PATCH,
            &existing,
            "application/strategic-merge-patch+json",
            r#"{"data":{"$patch":"explode"}}"#,
            400,
            "BadRequest",
        ),
        case(
            "patch of an unknown type",
            Method::PATCH,
            &existing,
            "text/plain",
            "{}",
            415,
            "UnsupportedMediaType",
        ),
        case(
            "patch changing the kind",
            Method::PATCH,
            &existing,
            "application/merge-patch+json",
            r#"{"kind":"Secret"}"#,
            400,
            "BadRequest",
        ),
        case(
            "bad label selector",
            Method::GET,
            &format!("{CM}?labelSelector=app%20in%20web"),
            "",
            "",
            400,
            "BadRequest",
        ),
        case(
            "bad field selector",
            Method::GET,
            &format!("{CM}?fieldSelector=nonsense"),
            "",
            "",
            400,
            "BadRequest",
        ),
        case(
            "unsupported field selector",
            Method::GET,
            &format!("{CM}?fieldSelector=spec.x%3Dy"),
            "",
            "",
            400,
            "BadRequest",
        ),
        case(
            "limit not a number",
            Method::GET,
            &format!("{CM}?limit=abc"),
            "",
            "",
            400,
            "BadRequest",
        ),
        case(
            "forged continue token",
            Method::GET,
            &format!("{CM}?limit=1&continue=Zm9vYmFy"),
            "",
            "",
            400,
            "BadRequest",
        ),
        case(
            "resourceVersionMatch alone",
            Method::GET,
            &format!("{CM}?resourceVersionMatch=Exact"),
            "",
            "",
            400,
            "BadRequest",
        ),
        case(
            "uid precondition fails",
            Method::DELETE,
            &victim,
            JSON,
            r#"{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"uid":"not-the-uid"}}"#,
            409,
            "Conflict",
        ),
        case(
            "bad dryRun value",
            Method::POST,
            &format!("{CM}?dryRun=Maybe"),
            JSON,
            cm("d"),
            400,
            "BadRequest",
        ),
        case(
            "bad propagationPolicy",
            Method::DELETE,
            &format!("{victim}?propagationPolicy=Sideways"),
            "",
            "",
            400,
            "BadRequest",
        ),
        case(
            "pods need a namespace to be created",
            Method::POST,
            "/api/v1/pods",
            JSON,
            "{}",
            405,
            "MethodNotAllowed",
        ),
        case(
            "unknown subresource",
            Method::GET,
            &format!("{existing}/status"),
            "",
            "",
            404,
            "NotFound",
        ),
    ];
    let mut failures = Vec::new();
    let mut protobuf_only = case(
        "protobuf only",
        Method::GET,
        CM,
        "",
        "",
        406,
        "NotAcceptable",
    );
    protobuf_only.accept = Some("application/vnd.kubernetes.protobuf");
    let total = cases.len() + 1;
    for c in cases.iter().chain(std::iter::once(&protobuf_only)) {
        let (code, status) = send(&client, c).await;
        let reason = status["reason"].as_str().unwrap_or("");
        let kind = status["kind"].as_str().unwrap_or("");
        if code != c.code || reason != c.reason || kind != "Status" || status["code"] != c.code {
            failures.push(format!("{}: got {code} {reason:?} {status}", c.what));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total >= 30);

    // Still serving, and the store is as it was.
    let (code, _) = send(
        &client,
        &case("version", Method::GET, "/version", "", "", 200, ""),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(list_everything(&client).await, before, "the store changed");
}

/// The names and resourceVersions of every configmap and namespace.
async fn list_everything(client: &kube::Client) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for path in ["/api/v1/configmaps", "/api/v1/namespaces"] {
        let (code, list) = send(client, &case("list", Method::GET, path, "", "", 200, "")).await;
        assert_eq!(code, 200, "{list}");
        for item in list["items"].as_array().into_iter().flatten() {
            out.push((
                item["metadata"]["name"].as_str().unwrap_or("").to_string(),
                item["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_and_wrong_credentials_get_401() {
    let c = Cluster::start();
    let kc = kube::config::Kubeconfig::read_from(c.kubeconfig()).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    config.auth_info = Default::default();
    let anonymous = kube::Client::try_from(config.clone()).expect("client");
    let (code, status) = send(
        &anonymous,
        &case("anon", Method::GET, CM, "", "", 401, "Unauthorized"),
    )
    .await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (401, Some("Unauthorized"))
    );
    let (code, _) = send(
        &anonymous,
        &case("health", Method::GET, "/readyz", "", "", 200, ""),
    )
    .await;
    assert_eq!(code, 200, "health checks are public");

    config.auth_info.token = Some("not-the-token".to_string().into());
    let wrong = kube::Client::try_from(config).expect("client");
    let (code, _) = send(
        &wrong,
        &case("wrong", Method::GET, CM, "", "", 401, "Unauthorized"),
    )
    .await;
    assert_eq!(code, 401);

    // The client-certificate identity works as well as the token.
    let by_cert = c.client_for_context("wkube-cert").await;
    let (code, _) = send(&by_cert, &case("cert", Method::GET, CM, "", "", 200, "")).await;
    assert_eq!(code, 200);
}
