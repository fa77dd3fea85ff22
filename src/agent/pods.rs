//! Watches the pods bound to this node and keeps one worker per pod.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use super::worker;
use super::AgentContext;

struct Worker {
    updates: watch::Sender<Option<Value>>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs until the watch stream ends for good.
pub async fn run(ctx: Arc<AgentContext>) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    let mut stream = std::pin::pin!(watcher(pods, config));
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut listed: Vec<String> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                if let Ok(v) = serde_json::to_value(&pod) {
                    if let Some(uid) = pod.metadata.uid.clone() {
                        listed.push(uid.clone());
                        dispatch(&ctx, &mut workers, uid, v);
                    }
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(w) = pod.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                    let _ = w.updates.send(None);
                }
            }
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitDone) => {
                // Pods that vanished while the watch was down.
                for (uid, w) in workers.iter() {
                    if !listed.contains(uid) {
                        let _ = w.updates.send(None);
                    }
                }
            }
            Err(e) => warn!(error = %e, "pod watch failed; retrying"),
        }
        workers.retain(|_, w| !w.task.is_finished());
    }
}

fn dispatch(
    ctx: &Arc<AgentContext>,
    workers: &mut HashMap<String, Worker>,
    uid: String,
    pod: Value,
) {
    if let Some(w) = workers.get(&uid) {
        let _ = w.updates.send(Some(pod));
        return;
    }
    info!(pod = %format!("{}/{}", text(&pod, "/metadata/namespace"), text(&pod, "/metadata/name")), "new pod on this node");
    let (tx, rx) = watch::channel(Some(pod));
    let task = tokio::spawn(worker::run(ctx.clone(), rx));
    workers.insert(uid, Worker { updates: tx, task });
}

fn text(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}
