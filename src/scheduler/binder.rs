//! Binding: telling the API server which node a pod goes to.

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::Client;

use super::framework::PodInfo;

/// How a binding attempt ended.
#[derive(Debug)]
pub enum BindOutcome {
    Bound,
    /// The pod is already bound (409) or gone (404): nothing left to do for it.
    Moot(String),
    /// Anything else; the pod is retried after its back-off.
    Failed(kube::Error),
}

/// The `pods/binding` body, with the pod's UID as a precondition so a pod deleted and
/// re-created under the same name is not bound by a decision made for the old one.
pub fn binding_for(pod: &PodInfo, node: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: (!pod.uid.is_empty()).then(|| pod.uid.clone()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    }
}

/// POSTs `pods/{name}/binding`.
pub async fn bind(client: Client, pod: &PodInfo, node: &str) -> BindOutcome {
    let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
    let body = binding_for(pod, node);
    let result = api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &pod.name,
            &PostParams::default(),
            &body,
        )
        .await;
    match result {
        Ok(_) => BindOutcome::Bound,
        Err(kube::Error::Api(status)) if status.is_conflict() || status.is_not_found() => {
            BindOutcome::Moot(status.message.clone())
        }
        Err(e) => BindOutcome::Failed(e),
    }
}
