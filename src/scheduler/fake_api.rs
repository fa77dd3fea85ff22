//! A tiny in-process API server behind a `kube::Client`, enough to drive the scheduling
//! loop: list/watch of nodes and pods (watch events pushed by the test), `pods/binding`,
//! `pods/status` patches and core/v1 events. Every write is recorded.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use k8s_openapi::api::core::v1::{
    Container, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

type Body = BoxBody<Bytes, Infallible>;

#[derive(Default)]
pub struct State {
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub events: BTreeMap<String, Value>,
    /// (method, path, body) of every write.
    pub writes: Vec<(String, String, Value)>,
    node_watchers: Vec<mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>>,
    pod_watchers: Vec<mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>>,
    revision: u64,
}

impl State {
    /// Watchers resume from an event's resourceVersion, so every change gets a new one.
    fn next_revision(&mut self) -> Option<String> {
        self.revision += 1;
        Some((self.revision + 1).to_string())
    }
}

#[derive(Clone, Default)]
pub struct FakeApi(pub Arc<Mutex<State>>);

fn json_response(code: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn status(code: StatusCode, reason: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": reason, "message": reason, "code": code.as_u16()}),
    )
}

fn watch_line(type_: &str, object: &impl serde::Serialize) -> Bytes {
    let line = json!({"type": type_, "object": object}).to_string() + "\n";
    Bytes::from(line)
}

impl FakeApi {
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.handle(req).await) }
        });
        kube::Client::new(service, "default")
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Adds a node and tells the node watchers.
    pub fn add_node(&self, mut node: Node) {
        let mut s = self.state();
        node.metadata.resource_version = s.next_revision();
        let line = watch_line("ADDED", &node);
        s.node_watchers
            .retain(|w| w.send(Ok(Frame::data(line.clone()))).is_ok());
        let name = node.metadata.name.clone();
        s.nodes.retain(|n| n.metadata.name != name);
        s.nodes.push(node);
    }

    fn set_pod(&self, s: &mut State, mut pod: Pod) {
        pod.metadata.resource_version = s.next_revision();
        let line = watch_line("MODIFIED", &pod);
        s.pod_watchers
            .retain(|w| w.send(Ok(Frame::data(line.clone()))).is_ok());
        let name = pod.metadata.name.clone();
        s.pods.retain(|p| p.metadata.name != name);
        s.pods.push(pod);
    }

    async fn handle(&self, req: Request<kube::client::Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let watch = query.split('&').any(|kv| kv == "watch=true");
        let mut s = self.state();
        if method != Method::GET {
            s.writes
                .push((method.to_string(), path.clone(), body.clone()));
        }
        match (method.clone(), segments.as_slice()) {
            (Method::GET, ["api", "v1", kind @ ("nodes" | "pods")]) => {
                if watch {
                    let (tx, rx) = mpsc::unbounded_channel();
                    if *kind == "nodes" {
                        s.node_watchers.push(tx);
                    } else {
                        s.pod_watchers.push(tx);
                    }
                    let stream = UnboundedReceiverStream::new(rx);
                    let mut r = Response::new(StreamBody::new(stream).boxed());
                    r.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("application/json"),
                    );
                    return r;
                }
                let (list_kind, items) = if *kind == "nodes" {
                    ("NodeList", serde_json::to_value(&s.nodes))
                } else {
                    ("PodList", serde_json::to_value(&s.pods))
                };
                json_response(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": list_kind,
                            "metadata": {"resourceVersion": "1"},
                            "items": items.unwrap_or(Value::Null)}),
                )
            }
            (Method::POST, ["api", "v1", "namespaces", _, "pods", name, "binding"]) => {
                let node = body["target"]["name"].as_str().unwrap_or("").to_string();
                let Some(mut pod) = s
                    .pods
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(*name))
                    .cloned()
                else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                let spec = pod.spec.get_or_insert_with(Default::default);
                if spec.node_name.is_some() {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                spec.node_name = Some(node);
                self.set_pod(&mut s, pod);
                json_response(
                    StatusCode::CREATED,
                    &json!({"kind": "Status", "status": "Success"}),
                )
            }
            (Method::PATCH, ["api", "v1", "namespaces", _, "pods", name, "status"]) => {
                let pod = s
                    .pods
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(*name))
                    .cloned();
                match pod {
                    Some(p) => json_response(StatusCode::OK, &json!(p)),
                    None => status(StatusCode::NOT_FOUND, "NotFound"),
                }
            }
            (Method::GET, ["api", "v1", "namespaces", _, "events", name]) => {
                match s.events.get(*name) {
                    Some(e) => json_response(StatusCode::OK, e),
                    None => status(StatusCode::NOT_FOUND, "NotFound"),
                }
            }
            (Method::POST, ["api", "v1", "namespaces", _, "events"]) => {
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
                if s.events.contains_key(&name) {
                    return status(StatusCode::CONFLICT, "AlreadyExists");
                }
                s.events.insert(name, body.clone());
                json_response(StatusCode::CREATED, &body)
            }
            (Method::PUT, ["api", "v1", "namespaces", _, "events", name]) => {
                s.events.insert(name.to_string(), body.clone());
                json_response(StatusCode::OK, &body)
            }
            _ => status(StatusCode::NOT_FOUND, "NotFound"),
        }
    }
}

pub fn api_node(name: &str, cpu: &str, taints: Vec<Taint>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("wkube.dev/runtimes".to_string(), "wasmtime".to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(taints),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            allocatable: Some(
                [
                    ("cpu".to_string(), Quantity(cpu.into())),
                    ("memory".to_string(), Quantity("4Gi".into())),
                    ("pods".to_string(), Quantity("110".into())),
                ]
                .into(),
            ),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

pub fn api_pod(name: &str, cpu: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            uid: Some(format!("uid-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("example/app.wasm".into()),
                resources: Some(ResourceRequirements {
                    requests: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// Polls `check` until it returns `Some` or 5 s pass.
pub async fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..500 {
        if let Some(v) = check() {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{run, SchedulerConfig};

    fn config() -> SchedulerConfig {
        SchedulerConfig {
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ..Default::default()
        }
    }

    fn bindings(api: &FakeApi) -> Vec<(String, String)> {
        api.state()
            .writes
            .iter()
            .filter(|(m, p, _)| m == "POST" && p.ends_with("/binding"))
            .map(|(_, p, b)| {
                let pod = p.split('/').nth(6).unwrap_or("").to_string();
                (pod, b["target"]["name"].as_str().unwrap_or("").to_string())
            })
            .collect()
    }

    fn events_with_reason(api: &FakeApi, reason: &str) -> Vec<Value> {
        api.state()
            .events
            .values()
            .filter(|e| e["reason"] == reason)
            .cloned()
            .collect()
    }

    #[tokio::test]
    async fn binds_to_the_node_that_fits_and_reports_it() {
        let api = FakeApi::default();
        {
            let mut s = api.state();
            let taint = Taint {
                key: "node-role".into(),
                value: Some("x".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            };
            s.nodes = vec![
                api_node("tainted", "8", vec![taint]),
                api_node("good", "2", vec![]),
            ];
            s.pods = vec![api_pod("web", "500m")];
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(api.client(), config(), None, async {
            let _ = stopped.await;
        }));
        let bound = eventually(|| bindings(&api).first().cloned()).await;
        assert_eq!(bound, Some(("web".to_string(), "good".to_string())));
        let scheduled = eventually(|| events_with_reason(&api, "Scheduled").first().cloned())
            .await
            .unwrap_or_default();
        assert_eq!(
            scheduled["message"],
            "Successfully assigned default/web to good"
        );
        assert_eq!(scheduled["type"], "Normal");
        assert_eq!(scheduled["source"]["component"], "default-scheduler");
        let _ = stop.send(());
        let result = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(
            matches!(result, Ok(Ok(Ok(())))),
            "stops on shutdown: {result:?}"
        );
        assert_eq!(bindings(&api).len(), 1, "bound exactly once");
    }

    #[tokio::test]
    async fn unschedulable_pod_is_reported_then_placed_when_a_node_arrives() {
        let api = FakeApi::default();
        {
            let mut s = api.state();
            s.nodes = vec![api_node("small", "1", vec![])];
            s.pods = vec![api_pod("big", "3")];
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(api.client(), config(), None, async {
            let _ = stopped.await;
        }));
        let failed = eventually(|| {
            events_with_reason(&api, "FailedScheduling")
                .first()
                .cloned()
        })
        .await
        .unwrap_or_default();
        let expected = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are \
                        available: 1 Preemption is not helpful for scheduling.";
        assert_eq!(failed["message"], expected);
        assert_eq!(failed["type"], "Warning");
        assert_eq!(failed["involvedObject"]["name"], "big");
        let patch = api
            .state()
            .writes
            .iter()
            .find(|(m, p, _)| m == "PATCH" && p.ends_with("/pods/big/status"))
            .map(|(_, _, b)| b.clone())
            .unwrap_or_default();
        let cond = &patch["status"]["conditions"][0];
        assert_eq!(cond["type"], "PodScheduled");
        assert_eq!(cond["status"], "False");
        assert_eq!(cond["reason"], "Unschedulable");
        assert_eq!(cond["message"], expected);

        // Nothing changes: the pod waits (no retry storm, no new binding).
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(bindings(&api).is_empty());
        let failures = events_with_reason(&api, "FailedScheduling");
        assert_eq!(failures.len(), 1);

        // A node change that does not help: retried, fails the same way, same event counted.
        let mut relabelled = api_node("small", "1", vec![]);
        if let Some(l) = relabelled.metadata.labels.as_mut() {
            l.insert("zone".into(), "b".into());
        }
        api.add_node(relabelled);
        let counted = eventually(|| {
            let e = events_with_reason(&api, "FailedScheduling");
            (e.len() == 1 && e[0]["count"] == 2).then_some(())
        })
        .await;
        assert!(
            counted.is_some(),
            "{:?}",
            events_with_reason(&api, "FailedScheduling")
        );
        assert!(bindings(&api).is_empty());

        api.add_node(api_node("large", "4", vec![]));
        let bound = eventually(|| bindings(&api).first().cloned()).await;
        assert_eq!(bound, Some(("big".to_string(), "large".to_string())));
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    #[tokio::test]
    async fn second_pod_does_not_race_onto_a_full_node() {
        let api = FakeApi::default();
        {
            let mut s = api.state();
            s.nodes = vec![api_node("one", "1", vec![])];
            s.pods = vec![api_pod("a", "600m"), api_pod("b", "600m")];
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(api.client(), config(), None, async {
            let _ = stopped.await;
        }));
        assert!(eventually(|| events_with_reason(&api, "FailedScheduling")
            .first()
            .cloned())
        .await
        .is_some());
        assert_eq!(bindings(&api).len(), 1, "only one of the two fits");
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}
