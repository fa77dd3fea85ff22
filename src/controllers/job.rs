//! The Job controller: runs a Job's pods to completion (upstream `pkg/controller/job`).
//!
//! Built on `kube::runtime::Controller`: Jobs are the primary resource, their pods are watched
//! through `.owns()`, and every reconcile recomputes the Job from the API (idempotent by key).
//!
//! Counting finished pods follows upstream's tracking protocol, so a pod is counted exactly
//! once even after it is deleted:
//! 1. every pod is created with the `batch.kubernetes.io/job-tracking` finalizer;
//! 2. a finished pod that still carries it is first written to
//!    `status.uncountedTerminatedPods` (one status write, guarded by resourceVersion);
//! 3. then the finalizer is removed from the pod;
//! 4. then the uids move from `uncountedTerminatedPods` to `succeeded` / `failed`.
//!
//! A crash between any two steps is resumed by the next reconcile; a stale Job in the cache
//! loses on the resourceVersion check. Pods whose Job is gone get their finalizer removed by a
//! periodic sweep, so they never hang in Terminating.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, Pod};

use crate::events::{Involved, Recorder};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{debug, info, warn};

/// Finalizer put on every pod a Job creates until the pod's outcome is counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Label and annotation carrying an Indexed Job pod's index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Label every Job pod carries (set by the API server's Job defaults).
pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

/// Resync when nothing else happens.
const RESYNC: Duration = Duration::from_secs(300);
/// How often pods whose Job is gone are released.
const ORPHAN_SWEEP: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("invalid job: {0}")]
    Invalid(String),
}

/// Upstream's cap on the delay before a failed pod is replaced.
const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(600);

struct Ctx {
    client: Client,
    events: Recorder,
    /// The delay before the first replacement of a failed pod (upstream: 10 s); it doubles with
    /// each further failure since the last success.
    failure_backoff: Duration,
}

/// Runs the Job controller until `shutdown` completes.
pub async fn run(
    client: Client,
    failure_backoff: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown = super::sync_shutdown(shutdown);
    let sweeper = tokio::spawn(sweep_orphans(client.clone()));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        events: Recorder::new(client.clone(), "job-controller"),
        failure_backoff,
    });
    info!("job controller started");
    Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns(
            Api::<Pod>::all(client),
            watcher::Config::default().labels(CONTROLLER_UID),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "job reconcile failed");
            }
        })
        .await;
    sweeper.abort();
}

fn error_policy(_job: Arc<Job>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    debug!(error = %err, "job requeued");
    Action::requeue(Duration::from_secs(2))
}

// ---------------------------------------------------------------------------------------------
// Pure decisions

/// What a reconcile sees of a Job's pods and counters.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Counted plus not-yet-counted successes.
    pub succeeded: i32,
    /// Counted plus not-yet-counted failures.
    pub failed: i32,
    /// Running or pending pods (not finished, not being deleted).
    pub active: Vec<ActivePod>,
    /// Indexed Jobs: the indexes that succeeded.
    pub completed_indexes: BTreeSet<i32>,
    /// Seconds since the Job started (None while it has not started).
    pub running_for: Option<i64>,
    /// How much longer new pods must wait after recent failures.
    pub backoff: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePod {
    pub name: String,
    pub index: Option<i32>,
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Complete,
    Failed { reason: String, message: String },
}

/// What to do next with a Job that is not finished yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub finish: Option<Finish>,
    /// Pods to create: one entry per pod, its completion index for Indexed Jobs.
    pub create: Vec<Option<i32>>,
    /// Active pods to delete, by name.
    pub delete: Vec<String>,
    /// Pods are wanted but held back by the failure back-off for this long.
    pub wait: Option<Duration>,
}

fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

/// Upstream's `syncJob` / `manageJob` decisions for an unfinished Job, with new pods held back
/// while the failure back-off runs.
pub fn plan(spec: &JobSpec, obs: &Observed) -> Plan {
    let mut plan = plan_pods(spec, obs);
    if !plan.create.is_empty() && !obs.backoff.is_zero() {
        plan.create.clear();
        plan.wait = Some(obs.backoff);
    }
    plan
}

fn plan_pods(spec: &JobSpec, obs: &Observed) -> Plan {
    let mut plan = Plan::default();
    let all_active = || {
        obs.active
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
    };
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    if obs.failed > backoff_limit {
        plan.finish = Some(Finish::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into(),
        });
        plan.delete = all_active();
        return plan;
    }
    if let (Some(deadline), Some(running)) = (spec.active_deadline_seconds, obs.running_for) {
        if running >= deadline {
            plan.finish = Some(Finish::Failed {
                reason: "DeadlineExceeded".into(),
                message: "Job was active longer than specified deadline".into(),
            });
            plan.delete = all_active();
            return plan;
        }
    }
    let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
    if is_indexed(spec) {
        let completions = spec.completions.unwrap_or(0).max(0);
        if obs.completed_indexes.len() as i32 >= completions {
            plan.finish = Some(Finish::Complete);
            plan.delete = all_active();
            return plan;
        }
        if spec.suspend == Some(true) {
            plan.delete = all_active();
            return plan;
        }
        // Drop pods without a valid index, for a completed index, or duplicating one.
        let mut seen = BTreeSet::new();
        let mut keep = Vec::new();
        for p in &obs.active {
            match p.index {
                Some(i)
                    if (0..completions).contains(&i)
                        && !obs.completed_indexes.contains(&i)
                        && seen.insert(i) =>
                {
                    keep.push(p)
                }
                _ => plan.delete.push(p.name.clone()),
            }
        }
        let remaining = (completions as usize).saturating_sub(obs.completed_indexes.len());
        let want = parallelism.min(remaining);
        if keep.len() > want {
            keep.sort_by_key(|p| p.index);
            for p in keep.split_off(want) {
                plan.delete.push(p.name.clone());
            }
        } else {
            plan.create = (0..completions)
                .filter(|i| !obs.completed_indexes.contains(i) && !seen.contains(i))
                .take(want - keep.len())
                .map(Some)
                .collect();
        }
        return plan;
    }
    let active = obs.active.len();
    match spec.completions {
        Some(n) if obs.succeeded >= n => {
            plan.finish = Some(Finish::Complete);
            plan.delete = all_active();
            return plan;
        }
        None if obs.succeeded > 0 && active == 0 => {
            plan.finish = Some(Finish::Complete);
            return plan;
        }
        _ => {}
    }
    if spec.suspend == Some(true) {
        plan.delete = all_active();
        return plan;
    }
    let want = match spec.completions {
        // Work queue: once one pod succeeded, no new pods; the rest finish on their own.
        None if obs.succeeded > 0 => active.min(parallelism),
        None => parallelism,
        Some(n) => parallelism.min((n - obs.succeeded).max(0) as usize),
    };
    if active > want {
        // Prefer deleting pods that are not ready yet, newest names last.
        let mut victims: Vec<&ActivePod> = obs.active.iter().collect();
        victims.sort_by_key(|p| (p.ready, std::cmp::Reverse(p.name.clone())));
        plan.delete = victims[..active - want]
            .iter()
            .map(|p| p.name.clone())
            .collect();
    } else {
        plan.create = vec![None; want - active];
    }
    plan
}

/// Parses `status.completedIndexes` ("1,3-5").
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(i) = part.parse() {
                    out.insert(i);
                }
            }
        }
    }
    out
}

/// Formats indexes the way upstream does: sorted, runs collapsed to `a-b`.
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// Renders a label selector in the `?labelSelector=` syntax.
pub fn selector_string(sel: Option<&LabelSelector>) -> Result<String, Error> {
    let Some(sel) = sel else {
        return Err(Error::Invalid("spec.selector is missing".into()));
    };
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            op => return Err(Error::Invalid(format!("unknown selector operator {op}"))),
        });
    }
    if parts.is_empty() {
        return Err(Error::Invalid("empty selector".into()));
    }
    Ok(parts.join(","))
}

// ---------------------------------------------------------------------------------------------
// Helpers on API objects

fn now() -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(chrono::Utc::now().timestamp())
            .unwrap_or_default(),
    )
}

fn unix(t: &Time) -> i64 {
    t.0.as_second()
}

fn controller_uid(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Some(true) succeeded, Some(false) failed (a deleted pod that did not succeed counts as
/// failed, as upstream's `isPodFailed`), None still active.
fn outcome(pod: &Pod) -> Option<bool> {
    match phase(pod) {
        "Succeeded" => Some(true),
        "Failed" => Some(false),
        _ if pod.metadata.deletion_timestamp.is_some() => Some(false),
        _ => None,
    }
}

/// When a finished pod's last container ended (its creation time if it never ran).
fn finished_at(pod: &Pod) -> Option<i64> {
    let status = pod.status.as_ref();
    let terminated = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(unix)
        .max();
    terminated.or_else(|| pod.metadata.creation_timestamp.as_ref().map(unix))
}

/// What remains of the failure back-off at `now`: after `n` failures since the last success
/// (upstream's backoff record, rebuilt from the pods), new pods wait `base * 2^(n-1)` (capped)
/// from the last failure.
pub fn failure_backoff(pods: &[Pod], base: Duration, now: i64) -> Duration {
    let finished: Vec<(i64, bool)> = pods
        .iter()
        .filter_map(|p| Some((finished_at(p)?, outcome(p)?)))
        .collect();
    let last_success = finished.iter().filter(|(_, ok)| *ok).map(|(t, _)| *t).max();
    let failures: Vec<i64> = finished
        .iter()
        .filter(|(t, ok)| !ok && last_success.is_none_or(|s| *t >= s))
        .map(|(t, _)| *t)
        .collect();
    let Some(last_failure) = failures.iter().max() else {
        return Duration::ZERO;
    };
    let doublings = (failures.len() as u32 - 1).min(16);
    let delay = base
        .saturating_mul(1 << doublings)
        .min(MAX_POD_FAILURE_BACKOFF);
    let since = Duration::from_secs((now - last_failure).max(0) as u64);
    delay.saturating_sub(since)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_index(pod: &Pod) -> Option<i32> {
    pod.annotations()
        .get(COMPLETION_INDEX)
        .or_else(|| pod.labels().get(COMPLETION_INDEX))
        .and_then(|v| v.parse().ok())
}

/// The condition that finished the Job (Complete or Failed, status True).
pub fn finished_condition(status: &JobStatus) -> Option<&JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

fn set_condition(status: &mut JobStatus, type_: &str, cstatus: &str, reason: &str, msg: &str) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    let now = now();
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == cstatus && c.reason.as_deref() == Some(reason) => {}
        Some(c) => {
            if c.status != cstatus {
                c.last_transition_time = Some(now.clone());
            }
            c.status = cstatus.into();
            c.reason = Some(reason.into());
            c.message = Some(msg.into());
            c.last_probe_time = Some(now);
        }
        None => conds.push(JobCondition {
            type_: type_.into(),
            status: cstatus.into(),
            reason: Some(reason.into()),
            message: Some(msg.into()),
            last_probe_time: Some(now.clone()),
            last_transition_time: Some(now),
        }),
    }
}

fn owner_ref(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.name_any(),
        uid: job.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pod a Job creates: its template, owned by the Job, with the tracking finalizer and, for
/// Indexed Jobs, the completion index (annotation, label, hostname and `JOB_COMPLETION_INDEX`).
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let spec = job.spec.clone().unwrap_or_default();
    let template = spec.template;
    let mut meta = template.metadata.unwrap_or_default();
    let name = job.name_any();
    meta.name = None;
    meta.namespace = job.namespace();
    meta.generate_name = Some(match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    });
    meta.owner_references = Some(vec![owner_ref(job)]);
    meta.finalizers = Some(vec![TRACKING_FINALIZER.into()]);
    let mut pod_spec = template.spec.unwrap_or_default();
    if let Some(i) = index {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(COMPLETION_INDEX.into(), i.to_string());
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(COMPLETION_INDEX.into(), i.to_string());
        if pod_spec.hostname.is_none() {
            pod_spec.hostname = Some(format!("{name}-{i}"));
        }
        let env = EnvVar {
            name: "JOB_COMPLETION_INDEX".into(),
            value: Some(i.to_string()),
            value_from: None,
        };
        let containers = pod_spec
            .containers
            .iter_mut()
            .chain(pod_spec.init_containers.iter_mut().flatten());
        for c in containers {
            let envs = c.env.get_or_insert_with(Vec::new);
            if !envs.iter().any(|e| e.name == env.name) {
                envs.push(env.clone());
            }
        }
    }
    Pod {
        metadata: meta,
        spec: Some(pod_spec),
        status: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Reconcile

async fn event(ctx: &Ctx, job: &Job, type_: EventType, reason: &str, note: String) {
    let involved = Involved::of(job);
    match type_ {
        EventType::Normal => ctx.events.normal(&involved, reason, &note).await,
        EventType::Warning => ctx.events.warning(&involved, reason, &note).await,
    }
}

async fn remove_finalizer(pods: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let remaining: Vec<String> = pod
        .finalizers()
        .iter()
        .filter(|f| *f != TRACKING_FINALIZER)
        .cloned()
        .collect();
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": remaining,
            "resourceVersion": pod.resource_version(),
        }
    });
    match pods
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn delete_pod(pods: &Api<Pod>, name: &str) -> Result<(), Error> {
    Ok(super::delete_background(pods, name).await?)
}

#[tracing::instrument(skip_all, fields(job = %cached.name_any(), ns = cached.namespace().unwrap_or_default()))]
async fn reconcile(cached: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    // Read the Job fresh: the cache may lag our own status writes.
    let Some(mut job) = jobs.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let uid = job.uid().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    let selector = selector_string(spec.selector.as_ref())?;
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| controller_uid(&p.metadata) == Some(uid.as_str()))
        .collect();

    if job.metadata.deletion_timestamp.is_some() {
        for p in pods.iter().filter(|p| has_finalizer(p)) {
            remove_finalizer(&pods_api, p).await?;
        }
        return Ok(Action::await_change());
    }

    let mut old_status = job.status.clone().unwrap_or_default();
    if old_status.uncounted_terminated_pods.is_none() {
        old_status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    }
    let mut status = old_status.clone();
    let already_finished = finished_condition(&status).is_some();
    let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_ok: Vec<String> = uncounted.succeeded.clone().unwrap_or_default();
    let mut unc_fail: Vec<String> = uncounted.failed.clone().unwrap_or_default();

    // Finished pods not yet recorded anywhere.
    let mut active_pods: Vec<&Pod> = Vec::new();
    for p in &pods {
        let pid = p.uid().unwrap_or_default();
        match outcome(p) {
            Some(ok) if has_finalizer(p) && !unc_ok.contains(&pid) && !unc_fail.contains(&pid) => {
                if ok {
                    unc_ok.push(pid);
                } else {
                    unc_fail.push(pid);
                }
            }
            Some(_) => {}
            None => active_pods.push(p),
        }
    }
    let mut completed = parse_indexes(status.completed_indexes.as_deref().unwrap_or_default());
    if is_indexed(&spec) {
        for p in pods
            .iter()
            .filter(|p| unc_ok.contains(&p.uid().unwrap_or_default()))
        {
            if let Some(i) = pod_index(p) {
                completed.insert(i);
            }
        }
    }

    let now_t = now();
    let mut requeue = RESYNC;
    let mut finish_event: Option<Finish> = None;
    if already_finished {
        // A finished Job keeps no pods running; what is left is counted as failed.
        for p in &active_pods {
            delete_pod(&pods_api, &p.name_any()).await?;
            if has_finalizer(p) {
                unc_fail.push(p.uid().unwrap_or_default());
            }
        }
        active_pods.clear();
    } else {
        // Suspension and start time.
        let suspended = spec.suspend == Some(true);
        if suspended {
            if status.start_time.is_some() || active_pods.is_empty() {
                set_condition(
                    &mut status,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                );
            }
            status.start_time = None;
        } else {
            if status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Suspended" && c.status == "True")
            {
                set_condition(
                    &mut status,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                );
            }
            if status.start_time.is_none() {
                status.start_time = Some(now_t.clone());
            }
        }
        let obs = Observed {
            succeeded: status.succeeded.unwrap_or(0) + unc_ok.len() as i32,
            failed: status.failed.unwrap_or(0) + unc_fail.len() as i32,
            active: active_pods
                .iter()
                .map(|p| ActivePod {
                    name: p.name_any(),
                    index: pod_index(p),
                    ready: is_ready(p),
                })
                .collect(),
            completed_indexes: completed.clone(),
            running_for: status.start_time.as_ref().map(|t| unix(&now_t) - unix(t)),
            backoff: failure_backoff(&pods, ctx.failure_backoff, unix(&now_t)),
        };
        let plan = plan(&spec, &obs);
        for victim in &plan.delete {
            delete_pod(&pods_api, victim).await?;
            event(
                &ctx,
                &job,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {victim}"),
            )
            .await;
        }
        let deleted: BTreeSet<&String> = plan.delete.iter().collect();
        let mut still_active: Vec<&Pod> = Vec::new();
        for p in active_pods.drain(..) {
            if deleted.contains(&p.name_any()) {
                if plan.finish.is_some() && has_finalizer(p) {
                    unc_fail.push(p.uid().unwrap_or_default());
                }
            } else {
                still_active.push(p);
            }
        }
        active_pods = still_active;
        let mut created = 0;
        for index in &plan.create {
            let pod = pod_for(&job, *index);
            match pods_api.create(&PostParams::default(), &pod).await {
                Ok(p) => {
                    created += 1;
                    event(
                        &ctx,
                        &job,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    )
                    .await;
                }
                Err(e) => {
                    event(
                        &ctx,
                        &job,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    )
                    .await;
                    return Err(e.into());
                }
            }
        }
        match &plan.finish {
            Some(Finish::Complete) => {
                set_condition(
                    &mut status,
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                );
                set_condition(
                    &mut status,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                );
                status.completion_time = Some(now_t.clone());
                finish_event = plan.finish.clone();
            }
            Some(Finish::Failed { reason, message }) => {
                set_condition(&mut status, "FailureTarget", "True", reason, message);
                set_condition(&mut status, "Failed", "True", reason, message);
                finish_event = plan.finish.clone();
            }
            None => {
                if let Some(wait) = plan.wait {
                    // One second more than the back-off: the pod times have second resolution.
                    requeue = requeue.min(wait + Duration::from_secs(1));
                }
                if let (Some(deadline), Some(start)) =
                    (spec.active_deadline_seconds, &status.start_time)
                {
                    let left = unix(start) + deadline - unix(&now_t);
                    requeue = requeue.min(Duration::from_secs(left.max(1) as u64));
                }
            }
        }
        // Pods just created are active and not ready.
        status.active = Some(active_pods.len() as i32 + created);
    }
    if already_finished || finish_event.is_some() {
        status.active = Some(0);
    }
    status.ready = Some(active_pods.iter().filter(|p| is_ready(p)).count() as i32);
    if is_indexed(&spec) && (!completed.is_empty() || status.completed_indexes.is_some()) {
        status.completed_indexes = Some(format_indexes(&completed));
    }
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
        succeeded: (!unc_ok.is_empty()).then(|| unc_ok.clone()),
        failed: (!unc_fail.is_empty()).then(|| unc_fail.clone()),
    });

    // Step 2: record the uncounted pods (and the new state) before touching finalizers.
    if status != old_status {
        job.status = Some(status.clone());
        job = jobs
            .replace_status(&name, &PostParams::default(), &job)
            .await?;
    }
    // Step 3: release the pods.
    let mut released: BTreeSet<String> = BTreeSet::new();
    for p in &pods {
        let pid = p.uid().unwrap_or_default();
        if unc_ok.contains(&pid) || unc_fail.contains(&pid) {
            if has_finalizer(p) {
                remove_finalizer(&pods_api, p).await?;
            }
            released.insert(pid);
        }
    }
    // Step 4: count them. Uids without a pod are gone already: their finalizer was removed.
    if !unc_ok.is_empty() || !unc_fail.is_empty() {
        let mut status = job.status.clone().unwrap_or_default();
        status.succeeded = Some(status.succeeded.unwrap_or(0) + unc_ok.len() as i32);
        status.failed = Some(status.failed.unwrap_or(0) + unc_fail.len() as i32);
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
        job.status = Some(status);
        job = jobs
            .replace_status(&name, &PostParams::default(), &job)
            .await?;
    }
    match finish_event {
        Some(Finish::Complete) => {
            event(
                &ctx,
                &job,
                EventType::Normal,
                "Completed",
                "Job completed".into(),
            )
            .await
        }
        Some(Finish::Failed { reason, message }) => {
            event(&ctx, &job, EventType::Warning, &reason, message).await
        }
        None => {}
    }

    // Finished: all pods released; time-to-live.
    let status = job.status.clone().unwrap_or_default();
    if let Some(cond) = finished_condition(&status) {
        for p in pods.iter().filter(|p| has_finalizer(p)) {
            if !released.contains(&p.uid().unwrap_or_default()) {
                remove_finalizer(&pods_api, p).await?;
            }
        }
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let finished_at = status
                .completion_time
                .as_ref()
                .or(cond.last_transition_time.as_ref())
                .map(unix)
                .unwrap_or_else(|| unix(&now_t));
            let left = finished_at + i64::from(ttl) - unix(&now());
            if left <= 0 {
                info!("deleting finished job after its ttl");
                for p in &pods {
                    delete_pod(&pods_api, &p.name_any()).await?;
                }
                let dp = DeleteParams {
                    propagation_policy: Some(PropagationPolicy::Background),
                    ..DeleteParams::default()
                };
                match jobs.delete(&name, &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
                return Ok(Action::await_change());
            }
            return Ok(Action::requeue(Duration::from_secs(left as u64)));
        }
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(requeue))
}

/// Releases pods that still carry the tracking finalizer although their Job is gone
/// (deleted with background propagation, or never seen finishing them).
async fn sweep_orphans(client: Client) {
    let pods: Api<Pod> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client.clone());
    loop {
        tokio::time::sleep(ORPHAN_SWEEP).await;
        let Ok(list) = pods
            .list(&ListParams::default().labels(CONTROLLER_UID))
            .await
        else {
            continue;
        };
        let tracked: Vec<Pod> = list.items.into_iter().filter(has_finalizer).collect();
        if tracked.is_empty() {
            continue;
        }
        let Ok(job_list) = jobs.list(&ListParams::default()).await else {
            continue;
        };
        let live: BTreeSet<String> = job_list
            .items
            .iter()
            .filter(|j| j.metadata.deletion_timestamp.is_none())
            .filter_map(|j| j.uid())
            .collect();
        for p in tracked {
            let owner = controller_uid(&p.metadata).map(str::to_string);
            if owner.is_some_and(|o| live.contains(&o)) {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace().unwrap_or_default());
            if let Err(e) = remove_finalizer(&api, &p).await {
                warn!(pod = %p.name_any(), error = %e, "releasing orphaned job pod failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished_pod(ok: bool, finished: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": if ok {"Succeeded"} else {"Failed"}, "containerStatuses": [{
                "name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": if ok {0} else {1}, "finishedAt": finished}}}]},
        }))
        .unwrap()
    }

    #[test]
    fn failures_since_the_last_success_double_the_wait() {
        let base = Duration::from_secs(10);
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp();
        let at = |s: &str| finished_pod(false, s);
        let one = vec![at("2026-01-01T00:01:00Z")];
        assert_eq!(
            failure_backoff(&one, base, t("2026-01-01T00:01:04Z")),
            Duration::from_secs(6)
        );
        assert_eq!(
            failure_backoff(&one, base, t("2026-01-01T00:01:30Z")),
            Duration::ZERO
        );
        let three = vec![
            at("2026-01-01T00:01:00Z"),
            at("2026-01-01T00:01:20Z"),
            at("2026-01-01T00:02:00Z"),
        ];
        assert_eq!(
            failure_backoff(&three, base, t("2026-01-01T00:02:00Z")),
            Duration::from_secs(40)
        );
        // A success resets the count: only the failure after it counts.
        let mut reset = three.clone();
        reset.push(finished_pod(true, "2026-01-01T00:01:50Z"));
        assert_eq!(
            failure_backoff(&reset, base, t("2026-01-01T00:02:00Z")),
            Duration::from_secs(10)
        );
        // Capped at ten minutes.
        let many: Vec<Pod> = (0..12)
            .map(|i| at(&format!("2026-01-01T00:{i:02}:00Z")))
            .collect();
        assert_eq!(
            failure_backoff(&many, base, t("2026-01-01T00:11:00Z")),
            MAX_POD_FAILURE_BACKOFF
        );
    }

    #[test]
    fn the_back_off_holds_new_pods_only() {
        let s = spec(Some(3), 2);
        let obs = Observed {
            backoff: Duration::from_secs(5),
            ..Observed::default()
        };
        let p = plan(&s, &obs);
        assert!(p.create.is_empty());
        assert_eq!(p.wait, Some(Duration::from_secs(5)));
        let failed = Observed {
            failed: 7,
            backoff: Duration::from_secs(5),
            ..Observed::default()
        };
        assert!(
            plan(&s, &failed).finish.is_some(),
            "the back-off never delays failing"
        );
    }

    fn spec(completions: Option<i32>, parallelism: i32) -> JobSpec {
        JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(2),
            ..JobSpec::default()
        }
    }

    fn active(names: &[&str]) -> Vec<ActivePod> {
        names
            .iter()
            .map(|n| ActivePod {
                name: n.to_string(),
                index: None,
                ready: false,
            })
            .collect()
    }

    #[test]
    fn creates_up_to_parallelism_and_remaining_completions() {
        let s = spec(Some(3), 2);
        let p = plan(&s, &Observed::default());
        assert_eq!(p.create.len(), 2);
        assert_eq!(p.finish, None);
        // One succeeded, one running: one more to reach 3.
        let obs = Observed {
            succeeded: 1,
            active: active(&["a"]),
            ..Observed::default()
        };
        assert_eq!(plan(&s, &obs).create.len(), 1);
        // Two succeeded, two running: one too many.
        let obs = Observed {
            succeeded: 2,
            active: active(&["a", "b"]),
            ..Observed::default()
        };
        let p = plan(&s, &obs);
        assert_eq!((p.create.len(), p.delete.len()), (0, 1));
        let obs = Observed {
            succeeded: 3,
            ..Observed::default()
        };
        assert_eq!(plan(&s, &obs).finish, Some(Finish::Complete));
    }

    #[test]
    fn work_queue_completes_when_one_succeeded_and_none_active() {
        let s = spec(None, 3);
        assert_eq!(plan(&s, &Observed::default()).create.len(), 3);
        let obs = Observed {
            succeeded: 1,
            active: active(&["a", "b"]),
            ..Observed::default()
        };
        let p = plan(&s, &obs);
        assert_eq!(p, Plan::default(), "no new pods, wait for the others");
        let obs = Observed {
            succeeded: 1,
            failed: 1,
            ..Observed::default()
        };
        assert_eq!(plan(&s, &obs).finish, Some(Finish::Complete));
    }

    #[test]
    fn backoff_limit_and_deadline_fail_the_job() {
        let s = spec(Some(5), 2);
        let obs = Observed {
            failed: 2,
            active: active(&["a"]),
            ..Observed::default()
        };
        assert_eq!(
            plan(&s, &obs).create.len(),
            1,
            "at the limit: still retrying"
        );
        let obs = Observed {
            failed: 3,
            active: active(&["a"]),
            ..Observed::default()
        };
        let p = plan(&s, &obs);
        assert!(
            matches!(p.finish, Some(Finish::Failed { ref reason, .. }) if reason == "BackoffLimitExceeded")
        );
        assert_eq!(p.delete, vec!["a".to_string()]);
        let s = JobSpec {
            active_deadline_seconds: Some(10),
            ..spec(Some(5), 2)
        };
        let obs = Observed {
            running_for: Some(10),
            active: active(&["a", "b"]),
            ..Observed::default()
        };
        let p = plan(&s, &obs);
        assert!(
            matches!(p.finish, Some(Finish::Failed { ref reason, .. }) if reason == "DeadlineExceeded")
        );
        assert_eq!(p.delete.len(), 2);
    }

    #[test]
    fn suspended_jobs_run_nothing() {
        let s = JobSpec {
            suspend: Some(true),
            ..spec(Some(3), 2)
        };
        let obs = Observed {
            active: active(&["a"]),
            ..Observed::default()
        };
        let p = plan(&s, &obs);
        assert_eq!((p.create.len(), p.delete.len()), (0, 1));
    }

    #[test]
    fn indexed_jobs_fill_missing_indexes() {
        let s = JobSpec {
            completion_mode: Some("Indexed".into()),
            ..spec(Some(4), 2)
        };
        assert_eq!(
            plan(&s, &Observed::default()).create,
            vec![Some(0), Some(1)]
        );
        let obs = Observed {
            completed_indexes: [0, 2].into(),
            active: vec![
                ActivePod {
                    name: "x-1".into(),
                    index: Some(1),
                    ready: true,
                },
                ActivePod {
                    name: "dup".into(),
                    index: Some(1),
                    ready: true,
                },
            ],
            ..Observed::default()
        };
        let p = plan(&s, &obs);
        assert_eq!(p.delete, vec!["dup".to_string()]);
        assert_eq!(p.create, vec![Some(3)]);
        let obs = Observed {
            completed_indexes: [0, 1, 2, 3].into(),
            ..Observed::default()
        };
        assert_eq!(plan(&s, &obs).finish, Some(Finish::Complete));
    }

    #[test]
    fn completed_indexes_round_trip() {
        let set = parse_indexes("0,2-4,7");
        assert_eq!(set, [0, 2, 3, 4, 7].into());
        assert_eq!(format_indexes(&set), "0,2-4,7");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "j", "namespace": "ns", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"job-name": "j"}},
                     "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}
        }))
        .unwrap();
        let pod = pod_for(&job, Some(3));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("j-3-"));
        assert_eq!(
            pod.annotations().get(COMPLETION_INDEX).map(String::as_str),
            Some("3")
        );
        assert_eq!(pod.finalizers(), &[TRACKING_FINALIZER.to_string()]);
        let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
        assert_eq!(pod.metadata.owner_references.unwrap()[0].uid, "u1");
    }
}
