//! The scheduling loop: watch events in, decisions out.
//!
//! One task owns the cache and the queue, so they need no locks. API writes (bindings,
//! status patches, events) run as spawned tasks whose results come back into the loop; the
//! pod is assumed on its node before its binding is sent, so the next pod can be scheduled
//! right away against an up-to-date picture (upstream's scheduling/binding cycle split).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::pin;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt as _;
use kube::{Api, Client};
use rand::rngs::StdRng;
use rand::SeedableRng as _;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, field, info, info_span, warn, Instrument as _, Span};

use super::binder::{self, BindOutcome};
use super::cache::Cache;
use super::events::{self, Condition, PodEvent};
use super::framework::{Framework, NodeInfo, PodInfo, ScheduleError};
use super::preemption::{self, Budgets, Candidate};
use super::queue::SchedulingQueue;
use super::{SchedulerConfig, SchedulerError, API_GIVE_UP, DEFAULT_SCHEDULER_NAME};

/// What a spawned API task reports back.
enum TaskDone {
    Bind(Box<BindDone>),
    Report,
}

struct BindDone {
    pod: PodInfo,
    node: String,
    outcome: BindOutcome,
    span: Span,
    started: Instant,
}

/// Tracks whether a watch keeps failing.
#[derive(Default)]
struct Health {
    failing_since: Option<Instant>,
}

impl Health {
    fn ok(&mut self) {
        self.failing_since = None;
    }

    fn failed(&mut self, what: &str, err: &watcher::Error) -> Result<(), SchedulerError> {
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        let down = now - since;
        if down >= API_GIVE_UP {
            return Err(SchedulerError::ApiUnavailable(down, err.to_string()));
        }
        warn!(watch = what, error = %err, "watch failed; retrying");
        Ok(())
    }
}

pub(super) struct Driver {
    client: Client,
    config: SchedulerConfig,
    framework: Framework,
    cache: Cache,
    queue: SchedulingQueue,
    rng: StdRng,
    /// The `PodScheduled=False` condition pending pods carry, so an unchanged one is not
    /// patched again on every retry.
    conditions: HashMap<String, Condition>,
    tasks: JoinSet<TaskDone>,
    /// Nodes listed since the node watch (re)started, until the list is complete.
    node_relist: Option<Vec<Node>>,
    /// When the pod relist started and which pods it contained so far.
    pod_relist: Option<(Instant, HashSet<String>)>,
    nodes_synced: bool,
    pods_synced: bool,
    /// PodDisruptionBudgets by `namespace/name`, for choosing preemption victims.
    budgets: HashMap<String, PodDisruptionBudget>,
    /// Pods that preempted others, by key: the node their victims are leaving, and the pod.
    /// Pods of lower or equal priority are filtered as if these were already there, so they
    /// cannot take the room preemption freed (upstream's nominated pods).
    nominated: HashMap<String, (String, PodInfo)>,
}

impl Driver {
    pub(super) fn new(client: Client, config: SchedulerConfig, framework: Framework) -> Self {
        let queue = SchedulingQueue::new(config.backoff_initial, config.backoff_max);
        Driver {
            client,
            config,
            framework,
            cache: Cache::new(),
            queue,
            rng: StdRng::from_os_rng(),
            conditions: HashMap::new(),
            tasks: JoinSet::new(),
            node_relist: None,
            pod_relist: None,
            nodes_synced: false,
            pods_synced: false,
            budgets: HashMap::new(),
            nominated: HashMap::new(),
        }
    }

    pub(super) async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), SchedulerError> {
        let nodes = watcher(
            Api::<Node>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff();
        let pods = watcher(
            Api::<Pod>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff();
        // Budgets only steer preemption; a failing watch is retried quietly.
        let budgets = watcher(
            Api::<PodDisruptionBudget>::all(self.client.clone()),
            watcher::Config::default(),
        )
        .default_backoff();
        let mut nodes = pin!(nodes);
        let mut pods = pin!(pods);
        let mut budgets = pin!(budgets);
        let mut shutdown = pin!(shutdown);
        let mut node_health = Health::default();
        let mut pod_health = Health::default();
        // Wasm plugins added, changed or removed: pods they held back get another try.
        let mut plugin_changes = self.framework.extension_changes();
        info!(scheduler = %self.config.scheduler_name, filters = ?self.framework.filter_names(),
            scores = ?self.framework.score_names(), "scheduler started");
        loop {
            let wakeup = self.queue.next_wakeup();
            // Like upstream, nothing is scheduled before both caches have synced.
            let can_schedule = self.nodes_synced && self.pods_synced && self.queue.has_active();
            tokio::select! {
                // Shutdown first, then fresh cluster state, then our own work.
                biased;
                () = &mut shutdown => {
                    info!("scheduler stopping");
                    return Ok(());
                }
                event = nodes.next() => match event {
                    Some(Ok(e)) => {
                        node_health.ok();
                        self.on_node_event(e);
                    }
                    Some(Err(e)) => node_health.failed("nodes", &e)?,
                    None => return Err(SchedulerError::WatchEnded("nodes")),
                },
                event = pods.next() => match event {
                    Some(Ok(e)) => {
                        pod_health.ok();
                        self.on_pod_event(e);
                    }
                    Some(Err(e)) => pod_health.failed("pods", &e)?,
                    None => return Err(SchedulerError::WatchEnded("pods")),
                },
                Some(event) = budgets.next() => match event {
                    Ok(e) => self.on_budget_event(e),
                    Err(e) => debug!(error = %e, "budget watch failed; retrying"),
                },
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => match done {
                    Ok(done) => self.on_task_done(done),
                    Err(e) => warn!(error = %e, "scheduler task failed"),
                },
                Some(()) = plugins_changed(&mut plugin_changes) => {
                    self.queue.move_all_to_active(Instant::now());
                }
                () = tokio::time::sleep_until(wakeup.unwrap_or_else(Instant::now)), if wakeup.is_some() => {
                    self.queue.flush(Instant::now());
                }
                () = std::future::ready(()), if can_schedule => self.schedule_one(),
            }
        }
    }

    fn on_node_event(&mut self, event: Event<Node>) {
        let now = Instant::now();
        match event {
            Event::Apply(node) => {
                if self.cache.apply_node(&node) {
                    self.queue.move_all_to_active(now);
                }
            }
            Event::Delete(node) => {
                // A node going away makes nothing schedulable; nobody moves.
                if let Some(name) = node.metadata.name.as_deref() {
                    self.cache.delete_node(name);
                }
            }
            Event::Init => self.node_relist = Some(Vec::new()),
            Event::InitApply(node) => match self.node_relist.as_mut() {
                Some(list) => list.push(node),
                None => {
                    if self.cache.apply_node(&node) {
                        self.queue.move_all_to_active(now);
                    }
                }
            },
            Event::InitDone => {
                let list = self.node_relist.take().unwrap_or_default();
                if self.cache.replace_nodes(&list) {
                    self.queue.move_all_to_active(now);
                }
                if !self.nodes_synced {
                    info!(nodes = self.cache.node_count(), "node cache synced");
                }
                self.nodes_synced = true;
            }
        }
    }

    fn on_budget_event(&mut self, event: Event<PodDisruptionBudget>) {
        let key = |b: &PodDisruptionBudget| {
            format!(
                "{}/{}",
                b.metadata.namespace.as_deref().unwrap_or(""),
                b.metadata.name.as_deref().unwrap_or("")
            )
        };
        match event {
            Event::Apply(b) | Event::InitApply(b) => {
                self.budgets.insert(key(&b), b);
            }
            Event::Delete(b) => {
                self.budgets.remove(&key(&b));
            }
            Event::Init => self.budgets.clear(),
            Event::InitDone => {}
        }
    }

    fn on_pod_event(&mut self, event: Event<Pod>) {
        let now = Instant::now();
        match event {
            Event::Apply(pod) => self.on_pod(&pod, false, now),
            Event::Delete(pod) => self.on_pod(&pod, true, now),
            Event::Init => self.pod_relist = Some((now, HashSet::new())),
            Event::InitApply(pod) => {
                if let Some((_, seen)) = self.pod_relist.as_mut() {
                    seen.insert(pod_key(&pod));
                }
                self.on_pod(&pod, false, now);
            }
            Event::InitDone => {
                if let Some((started, seen)) = self.pod_relist.take() {
                    // Pods deleted while the watch was down never sent a Delete.
                    if self.cache.retain_pods(&seen, started) {
                        self.queue.move_all_to_active(now);
                    }
                    self.queue.retain(|key| seen.contains(key));
                    self.conditions.retain(|key, _| seen.contains(key));
                }
                if !self.pods_synced {
                    info!(pending = self.queue.len(), "pod cache synced");
                }
                self.pods_synced = true;
            }
        }
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or(DEFAULT_SCHEDULER_NAME);
        // Also the profiles that SchedulerPlugin objects name.
        name == self.config.scheduler_name || self.framework.serves(name)
    }

    fn on_pod(&mut self, pod: &Pod, deleted: bool, now: Instant) {
        let key = pod_key(pod);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let finished = matches!(phase, Some("Succeeded" | "Failed"));
        if deleted || finished {
            // Upstream's informer drops finished pods too: they hold no resources.
            self.nominated.remove(&key);
            self.queue.remove(&key);
            self.conditions.remove(&key);
            if self.cache.remove_pod(&key) {
                self.queue.move_all_to_active(now);
            }
            return;
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty());
        let info = PodInfo::from_pod(pod);
        if let Some(node) = node {
            // Bound, by us or anyone: count it, stop trying.
            self.queue.remove(&key);
            self.conditions.remove(&key);
            self.cache.apply_assigned_pod(info, node);
            return;
        }
        let terminating = pod.metadata.deletion_timestamp.is_some();
        if !self.is_ours(pod) || terminating {
            self.queue.remove(&key);
            self.conditions.remove(&key);
            return;
        }
        if self.cache.is_assumed(&info) {
            // A stale event from before our binding landed.
            return;
        }
        match scheduled_false(pod) {
            Some(c) => self.conditions.insert(key, c),
            None => self.conditions.remove(&key),
        };
        self.queue.add_or_update(info, now);
    }

    /// One scheduling cycle: pick the next pod, choose a node, assume it there and send the
    /// binding off; or report why no node fits.
    fn schedule_one(&mut self) {
        let Some(popped) = self.queue.pop() else {
            return;
        };
        let pod = popped.pod;
        let key = pod.key();
        let span = info_span!(
            "schedule_pod",
            pod = %key,
            attempt = popped.attempts + 1,
            result = field::Empty,
            node = field::Empty,
            duration_ms = field::Empty,
        );
        let started = Instant::now();
        let reserved = self.with_nominated_pods(&pod);
        let decision = span.in_scope(|| {
            let nodes = self
                .cache
                .nodes()
                .map(|n| reserved.get(&n.name).unwrap_or(n));
            self.framework.schedule(&pod, nodes, &mut self.rng)
        });
        match decision {
            Ok(decision) => {
                // Counted on its node from now on; no longer a reservation.
                self.nominated.remove(&key);
                self.cache.assume(&pod, &decision.node, started);
                span.record("node", decision.node.as_str());
                span.in_scope(|| {
                    debug!(
                        feasible = decision.feasible_nodes,
                        score = decision.score,
                        "node chosen; binding"
                    );
                });
                let client = self.client.clone();
                let task_span = span.clone();
                self.tasks.spawn(
                    async move {
                        let outcome = binder::bind(client, &pod, &decision.node).await;
                        TaskDone::Bind(Box::new(BindDone {
                            pod,
                            node: decision.node,
                            outcome,
                            span: task_span,
                            started,
                        }))
                    }
                    .instrument(span),
                );
            }
            Err(ScheduleError::Plugin(failure)) => {
                // Not the cluster's fault: retry with back-off, as after a binding error.
                let message = failure.to_string();
                self.queue.requeue_error(&pod, Instant::now());
                finish(&span, "error", started);
                span.in_scope(|| warn!(reason = %message, "a scheduler plugin failed"));
                self.report_failure(&pod, "SchedulerError", message, span);
            }
            Err(mut err) => {
                if let ScheduleError::Fit(fit) = &mut err {
                    fit.preempting = span.in_scope(|| self.try_preemption(&pod, fit));
                }
                let message = err.to_string();
                self.queue
                    .requeue_unschedulable(&pod, popped.cycle, Instant::now());
                finish(&span, "unschedulable", started);
                span.in_scope(|| info!(reason = %message, "pod is unschedulable"));
                self.report_failure(&pod, "Unschedulable", message, span);
            }
        }
    }

    /// Copies of the nodes that others of at least this pod's priority are nominated to, with
    /// those pods added.
    fn with_nominated_pods(&self, pod: &PodInfo) -> HashMap<String, NodeInfo> {
        let mut out: HashMap<String, NodeInfo> = HashMap::new();
        for (key, (node, nominee)) in &self.nominated {
            if *key == pod.key() || nominee.priority < pod.priority {
                continue;
            }
            let Some(base) = self.cache.node(node) else {
                continue;
            };
            out.entry(node.clone())
                .or_insert_with(|| base.clone())
                .add_pod(nominee);
        }
        out
    }

    /// Upstream's DefaultPreemption post-filter. Returns whether the pod now waits for victims
    /// (already chosen earlier and still terminating, or chosen now).
    fn try_preemption(&mut self, pod: &PodInfo, fit: &super::framework::FitError) -> bool {
        let key = pod.key();
        let nodes: Vec<&NodeInfo> = self.cache.nodes().collect();
        if let Some((node, _)) = self.nominated.get(&key) {
            // Victims still leaving the nominated node: wait for them rather than pick more.
            let leaving = nodes.iter().find(|n| &n.name == node).is_some_and(|n| {
                n.pods
                    .iter()
                    .any(|p| p.terminating && p.priority < pod.priority)
            });
            if leaving {
                return true;
            }
        }
        let budgets = Budgets::new(self.budgets.values().cloned());
        let Some(candidate) =
            preemption::find_candidate(&self.framework, pod, &nodes, fit, &budgets)
        else {
            self.nominated.remove(&key);
            return false;
        };
        info!(node = %candidate.node, victims = candidate.victims.len(),
            budget_violations = candidate.budget_violations, "preempting lower-priority pods");
        self.nominated
            .insert(key, (candidate.node.clone(), pod.clone()));
        let client = self.client.clone();
        let component = self.config.scheduler_name.clone();
        let pod = pod.clone();
        self.tasks.spawn(
            async move {
                preempt(client, &pod, &candidate, &component).await;
                TaskDone::Report
            }
            .in_current_span(),
        );
        true
    }

    fn on_task_done(&mut self, done: TaskDone) {
        let TaskDone::Bind(bind) = done else {
            return;
        };
        let BindDone {
            pod,
            node,
            outcome,
            span,
            started,
        } = *bind;
        let now = Instant::now();
        match outcome {
            BindOutcome::Bound => {
                self.queue.done(&pod);
                self.conditions.remove(&pod.key());
                finish(&span, "bound", started);
                span.in_scope(|| info!(node = %node, "pod bound"));
                self.record_event(&pod, PodEvent::scheduled(&pod, &node), span);
            }
            BindOutcome::Moot(why) => {
                // Someone else bound it, or it is gone; the watch tells the rest.
                self.cache.forget(&pod);
                self.queue.done(&pod);
                finish(&span, "dropped", started);
                span.in_scope(|| info!(reason = %why, "binding moot; pod dropped from the queue"));
            }
            BindOutcome::Failed(e) => {
                self.cache.forget(&pod);
                self.queue.requeue_error(&pod, now);
                // The room it was assumed to take is free again.
                self.queue.move_all_to_active(now);
                finish(&span, "error", started);
                span.in_scope(|| warn!(error = %e, "binding failed; will retry"));
                self.report_failure(
                    &pod,
                    "SchedulerError",
                    format!("binding rejected: {e}"),
                    span,
                );
            }
        }
    }

    /// Sets `PodScheduled=False` (when it differs from what the pod carries) and records a
    /// FailedScheduling event.
    fn report_failure(&mut self, pod: &PodInfo, reason: &str, message: String, span: Span) {
        let condition = Condition {
            reason: reason.to_string(),
            message: message.clone(),
        };
        let previous = self.conditions.insert(pod.key(), condition.clone());
        let patch = previous.as_ref() != Some(&condition);
        let transition = previous.is_none();
        let client = self.client.clone();
        let pod = pod.clone();
        let component = self.config.scheduler_name.clone();
        self.tasks.spawn(
            async move {
                if patch {
                    if let Err(e) =
                        events::set_unschedulable(client.clone(), &pod, &condition, transition)
                            .await
                    {
                        debug!(error = %e, "could not set the PodScheduled condition");
                    }
                }
                if let Err(e) =
                    events::record(client, &pod, &PodEvent::failed(&message), &component).await
                {
                    debug!(error = %e, "could not record the FailedScheduling event");
                }
                TaskDone::Report
            }
            .instrument(span),
        );
    }

    fn record_event(&mut self, pod: &PodInfo, event: PodEvent, span: Span) {
        let client = self.client.clone();
        let pod = pod.clone();
        let component = self.config.scheduler_name.clone();
        self.tasks.spawn(
            async move {
                if let Err(e) = events::record(client, &pod, &event, &component).await {
                    debug!(error = %e, reason = event.reason, "could not record event");
                }
                TaskDone::Report
            }
            .instrument(span),
        );
    }
}

/// Nominates the preemptor to the node and evicts the victims: each is marked with upstream's
/// `DisruptionTarget` condition, gets a `Preempted` event and is deleted gracefully (uid
/// precondition, so a recreated pod of the same name is left alone).
async fn preempt(client: Client, pod: &PodInfo, candidate: &Candidate, component: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    let nominate = serde_json::json!({ "status": { "nominatedNodeName": candidate.node } });
    if let Err(e) = pods
        .patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(nominate))
        .await
    {
        debug!(error = %e, "could not set nominatedNodeName");
    }
    for victim in &candidate.victims {
        let api: Api<Pod> = Api::namespaced(client.clone(), &victim.namespace);
        let condition = serde_json::json!({ "status": { "conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": format!("{component}: preempting to accommodate a higher priority pod"),
            "lastTransitionTime": crate::api::object::now_rfc3339(),
        }] } });
        if let Err(e) = api
            .patch_status(
                &victim.name,
                &PatchParams::default(),
                &Patch::Strategic(condition),
            )
            .await
        {
            debug!(victim = %victim.key(), error = %e, "could not mark the victim");
        }
        let event = PodEvent::preempted(pod, &candidate.node);
        if let Err(e) = events::record(client.clone(), victim, &event, component).await {
            debug!(error = %e, "could not record the Preempted event");
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(victim.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&victim.name, &params).await {
            Ok(_) => info!(victim = %victim.key(), node = %candidate.node, "victim preempted"),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => warn!(victim = %victim.key(), error = %e, "could not delete the victim"),
        }
    }
}

/// Resolves when the extension plugins change; never without them (or once their set is gone).
async fn plugins_changed(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<()> {
    if let Some(r) = rx {
        if r.changed().await.is_ok() {
            return Some(());
        }
    }
    std::future::pending().await
}

fn finish(span: &Span, result: &str, started: Instant) {
    span.record("result", result);
    span.record(
        "duration_ms",
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The pod's `PodScheduled` condition if it is False.
fn scheduled_false(pod: &Pod) -> Option<Condition> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    (c.status == "False").then(|| Condition {
        reason: c.reason.clone().unwrap_or_default(),
        message: c.message.clone().unwrap_or_default(),
    })
}
