//! ReplicaSet controller: keeps `spec.replicas` active pods matching `spec.selector`.
//!
//! Written in the style of kube-rs's runtime: a [`Controller`] reconciles one ReplicaSet by
//! key, wakes up on changes to the ReplicaSet and to the pods it owns (`.owns`), and on orphan
//! pods whose labels match some ReplicaSet (`.watches`, for adoption). Everything goes through
//! the `kube::Client` it is given.
//!
//! Instead of upstream's "expectations" (counting creates/deletes in flight until the
//! informer has seen them), every reconcile lists the namespace's pods straight from the API
//! server (a consistent read, not the watch cache). The runtime never runs two reconciles of
//! the same ReplicaSet at once, so a reconcile always sees the pods created or marked for
//! deletion by the previous one: it cannot create twice, and it converges after any crash.

use std::cmp::Ordering;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt as _;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::events::{Involved, Recorder};

/// Re-examined this often even when nothing happens.
const RESYNC: Duration = Duration::from_secs(300);
/// At most this many pods are created or deleted by one reconcile.
const BURST: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube api: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Sync(String),
    #[error("conflict: {0}")]
    Conflict(String),
}

struct Ctx {
    client: kube::Client,
    events: Recorder,
}

/// Runs the ReplicaSet controller until `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()> + Send + 'static) {
    let rs_api: Api<ReplicaSet> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let ctx = Arc::new(Ctx {
        events: Recorder::new(client.clone(), "replicaset-controller"),
        client,
    });
    let shutdown = super::sync_shutdown(shutdown);
    let controller = Controller::new(rs_api, watcher::Config::default());
    let store = controller.store();
    controller
        .owns(pods.clone(), watcher::Config::default())
        .watches(pods, watcher::Config::default(), move |pod: Pod| {
            // Orphans: wake every ReplicaSet that could adopt the pod.
            if controller_ref(&pod).is_some() {
                return Vec::new();
            }
            let ns = pod.namespace().unwrap_or_default();
            let labels = pod.labels().clone();
            store
                .state()
                .iter()
                .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
                .filter(|rs| {
                    rs.spec
                        .as_ref()
                        .is_some_and(|s| crate::label_selector::selects(&s.selector, &labels))
                })
                .map(|rs| ObjectRef::from_obj(rs.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(replicaset = %obj, "reconciled"),
                Err(e) => debug!(error = %e, "replicaset reconcile failed"),
            }
        })
        .await;
    debug!("replicaset controller stopped");
}

fn error_policy(rs: Arc<ReplicaSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    if matches!(err, Error::Conflict(_)) {
        // Someone else wrote the object meanwhile: look again soon.
        debug!(replicaset = %rs.name_any(), error = %err, "replicaset sync raced; retrying");
        return Action::requeue(Duration::from_millis(200));
    }
    warn!(replicaset = %rs.name_any(), error = %err, "replicaset sync failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// A write lost a race (409, or a JSON patch `test` on the resourceVersion failing).
fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409
        || (s.code == 422 && s.message.contains("value did not match")))
}

fn involved(rs: &ReplicaSet) -> Involved {
    Involved::of(rs)
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = rs.namespace().unwrap_or_else(|| "default".into());
    let name = rs.name_any();
    let Some(uid) = rs.uid() else {
        return Ok(Action::await_change());
    };
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);

    // Claim: adopt matching orphans, release owned pods that no longer match.
    let all = pods_api.list(&ListParams::default()).await?;
    let mut owned: Vec<Pod> = Vec::new();
    let mut claim_errors = Vec::new();
    let mut conflicts = false;
    for pod in all.items {
        match claim(&uid, &spec.selector, &pod, deleting) {
            Claim::Owned => owned.push(pod),
            Claim::Ignore => {}
            Claim::Adopt => match adopt(&pods_api, &rs, &pod).await {
                Ok(p) => {
                    info!(replicaset = %name, pod = %p.name_any(), "adopted pod");
                    owned.push(p)
                }
                Err(e) => {
                    conflicts |= is_conflict(&e);
                    claim_errors.push(format!("adopting {}: {}", pod.name_any(), api_message(&e)))
                }
            },
            Claim::Release => {
                if let Err(e) = release(&pods_api, &uid, &pod).await {
                    conflicts |= is_conflict(&e);
                    claim_errors.push(format!("releasing {}: {}", pod.name_any(), api_message(&e)));
                } else {
                    info!(replicaset = %name, pod = %pod.name_any(), "released pod");
                }
            }
        }
    }
    let active: Vec<Pod> = owned.into_iter().filter(is_active).collect();

    // Create or delete toward spec.replicas; never while the ReplicaSet is being deleted.
    let mut manage_error: Option<String> = None;
    if !deleting {
        let want = spec.replicas.unwrap_or(1).max(0) as usize;
        match diff(want, &active) {
            Diff::None => {}
            Diff::Create(n) => {
                let template = pod_from_template(&rs)?;
                for _ in 0..n.min(BURST) {
                    match pods_api.create(&PostParams::default(), &template).await {
                        Ok(p) => {
                            ctx.events
                                .normal(
                                    &involved(&rs),
                                    "SuccessfulCreate",
                                    &format!("Created pod: {}", p.name_any()),
                                )
                                .await;
                        }
                        Err(e) => {
                            let msg = format!("Error creating: {}", api_message(&e));
                            ctx.events
                                .warning(&involved(&rs), "FailedCreate", &msg)
                                .await;
                            manage_error = Some(msg);
                            break;
                        }
                    }
                }
            }
            Diff::Delete(victims) => {
                for i in victims.into_iter().take(BURST) {
                    let pod = &active[i];
                    let dp = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: pod.uid(),
                            resource_version: None,
                        }),
                        ..DeleteParams::default()
                    };
                    match pods_api.delete(&pod.name_any(), &dp).await {
                        Ok(_) => {
                            ctx.events
                                .normal(
                                    &involved(&rs),
                                    "SuccessfulDelete",
                                    &format!("Deleted pod: {}", pod.name_any()),
                                )
                                .await;
                        }
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => {
                            let msg = format!("Error deleting: {}", api_message(&e));
                            ctx.events
                                .warning(&involved(&rs), "FailedDelete", &msg)
                                .await;
                            manage_error = Some(msg);
                        }
                    }
                }
            }
        }
    }

    // Status.
    let now = Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0).max(0) as i64;
    let counts = count_status(&rs, &active, min_ready, now);
    let new_status = status_json(&rs, &counts, manage_error.as_deref());
    if status_changed(rs.status.as_ref(), &new_status) {
        match rs_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": new_status })),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Action::await_change()),
            Err(e) if is_conflict(&e) => return Err(Error::Conflict(api_message(&e))),
            Err(e) => return Err(e.into()),
        }
    }

    if let Some(e) = manage_error {
        return Err(Error::Sync(e));
    }
    if !claim_errors.is_empty() {
        let msg = claim_errors.join("; ");
        return Err(if conflicts {
            Error::Conflict(msg)
        } else {
            Error::Sync(msg)
        });
    }
    // Pods that are ready but not yet available: look again when they will be.
    if let Some(wait) = next_availability(&active, min_ready, now) {
        return Ok(Action::requeue(wait));
    }
    Ok(Action::requeue(RESYNC))
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn owner_ref(rs: &ReplicaSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: rs.name_any(),
        uid: rs.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pod a ReplicaSet creates from its template.
fn pod_from_template(rs: &ReplicaSet) -> Result<Pod, Error> {
    let template = rs
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
        .unwrap_or_default();
    let mut meta = template.metadata.unwrap_or_default();
    meta.name = None;
    meta.generate_name = Some(format!("{}-", rs.name_any()));
    meta.namespace = rs.namespace();
    meta.owner_references = Some(vec![owner_ref(rs)]);
    meta.resource_version = None;
    meta.uid = None;
    let spec = template
        .spec
        .ok_or_else(|| Error::Sync("spec.template.spec is missing".into()))?;
    Ok(Pod {
        metadata: meta,
        spec: Some(spec),
        status: None,
    })
}

async fn adopt(api: &Api<Pod>, rs: &ReplicaSet, pod: &Pod) -> Result<Pod, kube::Error> {
    let r = serde_json::to_value(owner_ref(rs)).unwrap_or(Value::Null);
    let mut ops = vec![
        json!({"op": "test", "path": "/metadata/uid", "value": pod.uid()}),
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": pod.resource_version()}),
    ];
    if pod.metadata.owner_references.is_some() {
        ops.push(json!({"op": "add", "path": "/metadata/ownerReferences/-", "value": r}));
    } else {
        ops.push(json!({"op": "add", "path": "/metadata/ownerReferences", "value": [r]}));
    }
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
        .map_err(|e| kube::Error::Service(e.to_string().into()))?;
    api.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await
}

/// Removes the references to `owner_uid` from an object's ownerReferences (JSON patch that
/// fails if the object changed meanwhile).
pub(crate) fn without_owner_patch(
    uid: Option<&str>,
    resource_version: Option<&str>,
    refs: &[OwnerReference],
    owner_uid: &str,
) -> json_patch::Patch {
    let kept: Vec<&OwnerReference> = refs.iter().filter(|r| r.uid != owner_uid).collect();
    let mut ops = vec![
        json!({"op": "test", "path": "/metadata/uid", "value": uid}),
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}),
    ];
    if kept.is_empty() {
        ops.push(json!({"op": "remove", "path": "/metadata/ownerReferences"}));
    } else {
        ops.push(json!({"op": "replace", "path": "/metadata/ownerReferences", "value": kept}));
    }
    serde_json::from_value(Value::Array(ops)).expect("well-formed JSON patch")
}

async fn release(api: &Api<Pod>, rs_uid: &str, pod: &Pod) -> Result<Pod, kube::Error> {
    let patch = without_owner_patch(
        pod.metadata.uid.as_deref(),
        pod.metadata.resource_version.as_deref(),
        pod.owner_references(),
        rs_uid,
    );
    api.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::<()>::Json(patch),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Pure parts.

/// The controller ownerReference of an object, if any.
pub fn controller_ref<K: kube::Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// What a ReplicaSet does with a pod in its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Controlled by this ReplicaSet and matching: counted.
    Owned,
    /// Matching orphan: add our controller ownerRef.
    Adopt,
    /// Controlled by us but no longer matching: drop our ownerRef.
    Release,
    /// Not ours.
    Ignore,
}

/// Upstream's ClaimPods decision for one pod.
pub fn claim(rs_uid: &str, selector: &LabelSelector, pod: &Pod, rs_deleting: bool) -> Claim {
    let matches = crate::label_selector::selects(selector, pod.labels());
    match controller_ref(pod) {
        Some(r) if r.uid == rs_uid => {
            if matches {
                Claim::Owned
            } else if rs_deleting {
                Claim::Ignore
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None => {
            if matches && !rs_deleting && pod.metadata.deletion_timestamp.is_none() {
                Claim::Adopt
            } else {
                Claim::Ignore
            }
        }
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Counted toward replicas: not terminating, not Succeeded/Failed.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase(pod), "Succeeded" | "Failed")
}

fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(
        c.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready` seconds.
pub fn is_available(pod: &Pod, min_ready: i64, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready == 0 => true,
        Some(t) => t.as_second() + min_ready <= now.as_second(),
    }
}

fn next_availability(pods: &[Pod], min_ready: i64, now: Timestamp) -> Option<Duration> {
    if min_ready == 0 {
        return None;
    }
    pods.iter()
        .filter_map(ready_since)
        .map(|t| t.as_second() + min_ready - now.as_second())
        .filter(|left| *left > 0)
        .min()
        .map(|left| Duration::from_secs(left as u64 + 1))
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn phase_rank(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" | "" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

/// Upstream's ActivePods ordering: `Less` means "delete this one first".
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| {
        p.metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH)
    };
    // Unscheduled before scheduled.
    scheduled(a)
        .cmp(&scheduled(b))
        // Pending < Unknown < Running.
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        // Not ready before ready.
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        // Ready for less time before ready for longer.
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        // More restarts before fewer.
        .then_with(|| restarts(b).cmp(&restarts(a)))
        // Newer before older.
        .then_with(|| created(b).cmp(&created(a)))
}

/// What to do to reach the wanted count.
#[derive(Debug, PartialEq, Eq)]
pub enum Diff {
    None,
    Create(usize),
    /// Indexes into the active pods, least valuable first.
    Delete(Vec<usize>),
}

pub fn diff(want: usize, active: &[Pod]) -> Diff {
    use std::cmp::Ordering::*;
    match active.len().cmp(&want) {
        Equal => Diff::None,
        Less => Diff::Create(want - active.len()),
        Greater => {
            let mut idx: Vec<usize> = (0..active.len()).collect();
            idx.sort_by(|&i, &j| deletion_order(&active[i], &active[j]));
            idx.truncate(active.len() - want);
            Diff::Delete(idx)
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub fully_labeled: i32,
    pub ready: i32,
    pub available: i32,
}

pub fn count_status(rs: &ReplicaSet, active: &[Pod], min_ready: i64, now: Timestamp) -> Counts {
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let mut c = Counts {
        replicas: active.len() as i32,
        ..Counts::default()
    };
    for p in active {
        if template_labels
            .iter()
            .all(|(k, v)| p.labels().get(k) == Some(v))
        {
            c.fully_labeled += 1;
        }
        if is_ready(p) {
            c.ready += 1;
        }
        if is_available(p, min_ready, now) {
            c.available += 1;
        }
    }
    c
}

/// The status to write, as JSON comparable with the serialized current status.
fn status_json(rs: &ReplicaSet, c: &Counts, failure: Option<&str>) -> Value {
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<Value> = old
        .conditions
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != "ReplicaFailure")
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    if let Some(msg) = failure {
        let existing = rs
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "ReplicaFailure"));
        let since = existing
            .and_then(|c| c.last_transition_time.as_ref())
            .and_then(|t| serde_json::to_value(t).ok())
            .unwrap_or_else(|| json!(crate::api::object::now_rfc3339()));
        conditions.push(json!({
            "type": "ReplicaFailure",
            "status": "True",
            "reason": "FailedCreate",
            "message": msg,
            "lastTransitionTime": since,
        }));
    }
    let mut s = json!({
        "replicas": c.replicas,
        "fullyLabeledReplicas": c.fully_labeled,
        "readyReplicas": c.ready,
        "availableReplicas": c.available,
        "observedGeneration": rs.metadata.generation.unwrap_or(0),
    });
    if !conditions.is_empty() {
        s["conditions"] = Value::Array(conditions);
    } else {
        // A merge patch removes the key only when sent as null.
        s["conditions"] = Value::Null;
    }
    s
}

/// Whether writing `new` would change `old` (absent counts are zero, no conditions = empty).
fn status_changed(old: Option<&ReplicaSetStatus>, new: &Value) -> bool {
    fn norm(s: ReplicaSetStatus) -> ReplicaSetStatus {
        ReplicaSetStatus {
            replicas: s.replicas,
            fully_labeled_replicas: Some(s.fully_labeled_replicas.unwrap_or(0)),
            ready_replicas: Some(s.ready_replicas.unwrap_or(0)),
            available_replicas: Some(s.available_replicas.unwrap_or(0)),
            observed_generation: Some(s.observed_generation.unwrap_or(0)),
            terminating_replicas: None,
            conditions: s.conditions.filter(|c| !c.is_empty()),
        }
    }
    let mut new = new.clone();
    if new["conditions"].is_null() {
        if let Some(m) = new.as_object_mut() {
            m.remove("conditions");
        }
    }
    let Ok(new) = serde_json::from_value::<ReplicaSetStatus>(new) else {
        return true;
    };
    norm(old.cloned().unwrap_or_default()) != norm(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(ml: &[(&str, &str)], me: Vec<(&str, &str, Vec<&str>)>) -> LabelSelector {
        LabelSelector {
            match_labels: (!ml.is_empty()).then(|| labels(ml)),
            match_expressions: (!me.is_empty()).then(|| {
                me.into_iter()
                    .map(|(k, op, vs)| LabelSelectorRequirement {
                        key: k.into(),
                        operator: op.into(),
                        values: (!vs.is_empty())
                            .then(|| vs.into_iter().map(String::from).collect()),
                    })
                    .collect()
            }),
        }
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn owned_pod(uid: &str, app: &str) -> Pod {
        pod(json!({
            "metadata": {"name": "p", "uid": "p1", "labels": {"app": app},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                    "uid": uid, "controller": true}]}
        }))
    }

    #[test]
    fn claims() {
        let s = sel(&[("app", "web")], vec![]);
        assert_eq!(
            claim("u1", &s, &owned_pod("u1", "web"), false),
            Claim::Owned
        );
        assert_eq!(
            claim("u1", &s, &owned_pod("u1", "db"), false),
            Claim::Release
        );
        assert_eq!(claim("u1", &s, &owned_pod("u1", "db"), true), Claim::Ignore);
        assert_eq!(
            claim("u1", &s, &owned_pod("u2", "web"), false),
            Claim::Ignore
        );
        let orphan = pod(json!({"metadata": {"name": "o", "labels": {"app": "web"}}}));
        assert_eq!(claim("u1", &s, &orphan, false), Claim::Adopt);
        assert_eq!(claim("u1", &s, &orphan, true), Claim::Ignore);
        // A non-controller owner does not prevent adoption.
        let shared = pod(json!({"metadata": {"name": "o", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "uid": "c1"}]}}));
        assert_eq!(claim("u1", &s, &shared, false), Claim::Adopt);
        let other = pod(json!({"metadata": {"name": "o", "labels": {"app": "db"}}}));
        assert_eq!(claim("u1", &s, &other, false), Claim::Ignore);
        let dying = pod(json!({"metadata": {"name": "o", "labels": {"app": "web"},
            "deletionTimestamp": "2024-01-01T00:00:00Z"}}));
        assert_eq!(claim("u1", &s, &dying, false), Claim::Ignore);
    }

    fn ranked(
        name: &str,
        node: &str,
        phase: &str,
        ready: Option<&str>,
        restarts: i32,
        created: &str,
    ) -> Pod {
        let mut p = json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": phase,
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": ready.is_some(),
                    "restartCount": restarts}]}
        });
        if !node.is_empty() {
            p["spec"]["nodeName"] = json!(node);
        }
        if let Some(t) = ready {
            p["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]);
        }
        pod(p)
    }

    #[test]
    fn ranking_follows_active_pods() {
        let t0 = "2024-01-01T00:00:00Z";
        let t1 = "2024-01-01T01:00:00Z";
        let unscheduled = ranked("unscheduled", "", "Pending", None, 0, t0);
        let pending = ranked("pending", "n", "Pending", None, 0, t0);
        let unknown = ranked("unknown", "n", "Unknown", None, 0, t0);
        let running_notready = ranked("notready", "n", "Running", None, 0, t0);
        let ready_restarts = ranked("restarts", "n", "Running", Some(t0), 5, t0);
        let ready_new = ranked("new", "n", "Running", Some(t0), 0, t1);
        let ready_old = ranked("old", "n", "Running", Some(t0), 0, t0);
        let ready_recent = ranked("recent", "n", "Running", Some(t1), 0, t0);
        let pods = vec![
            ready_old.clone(),
            ready_recent,
            ready_new,
            ready_restarts,
            running_notready,
            unknown,
            pending,
            unscheduled,
        ];
        let Diff::Delete(order) = diff(0, &pods) else {
            panic!("expected deletes")
        };
        let names: Vec<String> = order.iter().map(|&i| pods[i].name_any()).collect();
        assert_eq!(
            names,
            [
                "unscheduled",
                "pending",
                "unknown",
                "notready",
                "recent",
                "restarts",
                "new",
                "old"
            ]
        );
        let Diff::Delete(one) = diff(7, &pods) else {
            panic!()
        };
        assert_eq!(pods[one[0]].name_any(), "unscheduled");
    }

    #[test]
    fn diffs() {
        let p = ranked("a", "n", "Running", None, 0, "2024-01-01T00:00:00Z");
        assert_eq!(diff(3, std::slice::from_ref(&p)), Diff::Create(2));
        assert_eq!(diff(1, std::slice::from_ref(&p)), Diff::None);
        assert_eq!(diff(0, &[]), Diff::None);
    }

    #[test]
    fn activity_and_availability() {
        let now = Timestamp::UNIX_EPOCH + k8s_openapi::jiff::SignedDuration::from_secs(100);
        let p = ranked(
            "a",
            "n",
            "Running",
            Some("1970-01-01T00:01:00Z"),
            0,
            "1970-01-01T00:00:00Z",
        );
        assert!(is_active(&p));
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 40, now));
        assert!(!is_available(&p, 41, now));
        assert_eq!(
            next_availability(std::slice::from_ref(&p), 50, now),
            Some(Duration::from_secs(11))
        );
        let done = ranked("b", "n", "Succeeded", None, 0, "1970-01-01T00:00:00Z");
        assert!(!is_active(&done));
        let dying =
            pod(json!({"metadata": {"name": "x", "deletionTimestamp": "2024-01-01T00:00:00Z"}}));
        assert!(!is_active(&dying));
    }

    #[test]
    fn template_pod_and_status() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 4},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web", "v": "1"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }))
        .unwrap();
        let p = pod_from_template(&rs).unwrap();
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(p.labels().get("v").map(String::as_str), Some("1"));
        let r = &p.owner_references()[0];
        assert_eq!((r.kind.as_str(), r.uid.as_str()), ("ReplicaSet", "u1"));
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );

        let partial = pod(json!({"metadata": {"name": "a", "labels": {"app": "web"}}}));
        let c = count_status(&rs, &[p, partial], 0, Timestamp::now());
        assert_eq!((c.replicas, c.fully_labeled, c.ready), (2, 1, 0));
        let s = status_json(&rs, &c, Some("Error creating: quota"));
        assert_eq!(s["observedGeneration"], 4);
        assert_eq!(s["conditions"][0]["type"], "ReplicaFailure");
        assert!(status_json(&rs, &c, None)["conditions"].is_null());
    }

    #[test]
    fn release_patch_keeps_other_owners() {
        let refs: Vec<OwnerReference> = serde_json::from_value(json!([
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1"},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": "2"}
        ]))
        .unwrap();
        let p =
            serde_json::to_value(without_owner_patch(Some("x"), Some("7"), &refs, "1")).unwrap();
        assert_eq!(p[2]["op"], "replace");
        assert_eq!(p[2]["value"].as_array().unwrap().len(), 1);
        let p = serde_json::to_value(without_owner_patch(Some("x"), Some("7"), &refs[..1], "1"))
            .unwrap();
        assert_eq!(p[2]["op"], "remove");
    }
}
