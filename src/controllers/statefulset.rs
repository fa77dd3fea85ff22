//! StatefulSet: pods with stable names (`<set>-<ordinal>`), created and removed in order
//! (OrderedReady) or all at once (Parallel), updated from the highest ordinal down.
//!
//! Volume claim templates are not provisioned: wkube has no persistent volumes yet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt as _;
use serde_json::{json, Value};
use tracing::debug;

use super::deployment::plan::template_hash;
use super::replicaset::{controller_ref, is_ready};
use crate::events::{Involved, Recorder};

const HASH_LABEL: &str = "controller-revision-hash";
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("statefulset {0}: {1}")]
    Invalid(String, String),
}

struct Ctx {
    client: kube::Client,
    events: Recorder,
}

pub async fn run(
    client: kube::Client,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = super::sync_shutdown(shutdown);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        events: Recorder::new(client.clone(), "statefulset-controller"),
    });
    Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client), watcher::Config::default())
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        if let Err(e) = res {
            debug!(error = %e, "statefulset reconcile failed");
        }
    })
    .await;
}

fn error_policy(_s: Arc<StatefulSet>, _e: &Error, _c: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_secs(2))
}

/// The ordinal in a pod name `<set>-<n>`.
pub fn ordinal(set: &str, pod: &str) -> Option<usize> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && is_ready(pod)
}

fn failed(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed") | Some("Succeeded")
    )
}

/// What to do next, in upstream's order: replace failed pods, create missing ones (in order,
/// waiting for readiness unless Parallel), remove extras from the top, then update from the top.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Create(usize),
    Delete(String),
    Wait,
    Done,
}

pub struct View<'a> {
    pub set: &'a str,
    pub replicas: usize,
    pub parallel: bool,
    pub rolling: bool,
    pub partition: usize,
    pub hash: &'a str,
    /// Existing pods by ordinal, with (current revision?, running and ready?, failed?, deleting?).
    pub pods: BTreeMap<usize, (String, bool, bool, bool, bool)>,
}

pub fn plan(v: &View<'_>) -> Vec<Step> {
    let mut steps = Vec::new();
    for (name, _, _, is_failed, deleting) in v.pods.values() {
        if *is_failed && !deleting {
            steps.push(Step::Delete(name.clone()));
        }
    }
    if !steps.is_empty() {
        return steps;
    }
    for i in 0..v.replicas {
        match v.pods.get(&i) {
            None => {
                steps.push(Step::Create(i));
                if !v.parallel {
                    return steps;
                }
            }
            Some((_, _, ready, _, deleting)) => {
                if !v.parallel && (!ready || *deleting) {
                    return if steps.is_empty() {
                        vec![Step::Wait]
                    } else {
                        steps
                    };
                }
            }
        }
    }
    let extras: Vec<&String> = v
        .pods
        .iter()
        .rev()
        .filter(|(i, _)| **i >= v.replicas)
        .map(|(_, p)| &p.0)
        .collect();
    for name in extras {
        steps.push(Step::Delete(name.clone()));
        if !v.parallel {
            return steps;
        }
    }
    if !steps.is_empty() {
        return steps;
    }
    if v.rolling {
        for (i, (name, current, ready, _, deleting)) in v.pods.iter().rev() {
            if *i < v.partition || *i >= v.replicas {
                continue;
            }
            if *deleting || !ready {
                return vec![Step::Wait];
            }
            if !current {
                return vec![Step::Delete(name.clone())];
            }
        }
    }
    vec![Step::Done]
}

fn pod_for(sts: &StatefulSet, template: &Value, hash: &str, i: usize, service: &str) -> Value {
    let name = format!("{}-{i}", sts.name_any());
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or(json!({})),
        "spec": template.get("spec").cloned().unwrap_or(json!({})),
    });
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["labels"][HASH_LABEL] = json!(hash);
    pod["metadata"]["labels"][POD_NAME_LABEL] = json!(name);
    pod["metadata"]["labels"][POD_INDEX_LABEL] = json!(i.to_string());
    pod["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts.name_any(),
        "uid": sts.uid().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true,
    }]);
    pod["spec"]["hostname"] = json!(name);
    if !service.is_empty() {
        pod["spec"]["subdomain"] = json!(service);
    }
    pod
}

async fn reconcile(cached: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(sts) = sets.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if sts.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = sts
        .spec
        .clone()
        .ok_or_else(|| Error::Invalid(name.clone(), "no spec".into()))?;
    let template = serde_json::to_value(&spec.template).unwrap_or(Value::Null);
    let hash = template_hash(&spec.template, None);
    let uid = sts.uid().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owned: Vec<Pod> = pods_api
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|p| controller_ref(p).is_some_and(|r| r.uid == uid))
        .collect();
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let view = View {
        set: &name,
        replicas: spec.replicas.unwrap_or(1).max(0) as usize,
        parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
        rolling: strategy.type_.as_deref() != Some("OnDelete"),
        partition: strategy
            .rolling_update
            .and_then(|r| r.partition)
            .unwrap_or(0)
            .max(0) as usize,
        hash: &hash,
        pods: owned
            .iter()
            .filter_map(|p| {
                let i = ordinal(&name, &p.name_any())?;
                let current = p.labels().get(HASH_LABEL) == Some(&hash);
                Some((
                    i,
                    (
                        p.name_any(),
                        current,
                        running_and_ready(p),
                        failed(p),
                        p.metadata.deletion_timestamp.is_some(),
                    ),
                ))
            })
            .collect(),
    };
    let involved = Involved::of(&sts);
    let service = spec.service_name.clone().unwrap_or_default();
    for step in plan(&view) {
        match step {
            Step::Create(i) => {
                let pod: Pod = serde_json::from_value(pod_for(&sts, &template, &hash, i, &service))
                    .map_err(|e| Error::Invalid(name.clone(), e.to_string()))?;
                match pods_api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        ctx.events
                            .normal(
                                &involved,
                                "SuccessfulCreate",
                                &format!("create Pod {name}-{i} in StatefulSet {name} successful"),
                            )
                            .await
                    }
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => {
                        ctx.events
                            .warning(
                                &involved,
                                "FailedCreate",
                                &format!(
                                    "create Pod {name}-{i} in StatefulSet {name} failed error: {e}"
                                ),
                            )
                            .await;
                        return Err(e.into());
                    }
                }
            }
            Step::Delete(pod) => {
                super::delete_background(&pods_api, &pod).await?;
                ctx.events
                    .normal(
                        &involved,
                        "SuccessfulDelete",
                        &format!("delete Pod {pod} in StatefulSet {name} successful"),
                    )
                    .await;
            }
            Step::Wait | Step::Done => {}
        }
    }
    let ready = owned.iter().filter(|p| running_and_ready(p)).count() as i32;
    let updated = owned
        .iter()
        .filter(|p| p.labels().get(HASH_LABEL) == Some(&hash))
        .count() as i32;
    let status = json!({
        "replicas": owned.len() as i32,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": updated,
        "updatedReplicas": updated,
        "currentRevision": hash,
        "updateRevision": hash,
        "observedGeneration": sts.metadata.generation,
    });
    let current = serde_json::to_value(&sts.status).unwrap_or(Value::Null);
    if [
        "replicas",
        "readyReplicas",
        "updatedReplicas",
        "observedGeneration",
    ]
    .iter()
    .any(|k| current.get(*k) != status.get(*k))
    {
        sets.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    }
    Ok(Action::requeue(Duration::from_secs(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(replicas: usize, parallel: bool, pods: &[(usize, bool, bool)]) -> Vec<Step> {
        let v = View {
            set: "web",
            replicas,
            parallel,
            rolling: true,
            partition: 0,
            hash: "h",
            pods: pods
                .iter()
                .map(|(i, current, ready)| {
                    (*i, (format!("web-{i}"), *current, *ready, false, false))
                })
                .collect(),
        };
        plan(&v)
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        assert_eq!(view(3, false, &[]), vec![Step::Create(0)]);
        assert_eq!(view(3, false, &[(0, true, false)]), vec![Step::Wait]);
        assert_eq!(view(3, false, &[(0, true, true)]), vec![Step::Create(1)]);
        assert_eq!(
            view(3, true, &[]),
            vec![Step::Create(0), Step::Create(1), Step::Create(2)]
        );
    }

    #[test]
    fn scale_down_from_the_top_and_update_from_the_top() {
        assert_eq!(
            view(
                1,
                false,
                &[(0, true, true), (1, true, true), (2, true, true)]
            ),
            vec![Step::Delete("web-2".into())]
        );
        assert_eq!(
            view(2, false, &[(0, false, true), (1, false, true)]),
            vec![Step::Delete("web-1".into())]
        );
        assert_eq!(
            view(2, false, &[(0, false, true), (1, true, true)]),
            vec![Step::Delete("web-0".into())]
        );
        assert_eq!(
            view(2, false, &[(0, true, true), (1, true, true)]),
            vec![Step::Done]
        );
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "webx-1"), None);
    }
}
