//! The Deployment controller: keeps one ReplicaSet per pod template and moves replicas from
//! the old ones to the new one (RollingUpdate or Recreate), as upstream's
//! `pkg/controller/deployment` does.
//!
//! It is an API client like any other: a kube-runtime [`Controller`] over Deployments that
//! `.owns()` ReplicaSets, with an idempotent [`reconcile`] per Deployment. Decisions live in
//! the pure [`plan`] module; this file reads state and writes the outcome:
//!
//! - ReplicaSets named `<deployment>-<pod-template-hash>`, the hash label on their
//!   selector and template, a controller owner reference and the `revision`,
//!   `desired-replicas` and `max-replicas` annotations; the Deployment's `revision`
//!   annotation follows its new ReplicaSet;
//! - `ScalingReplicaSet` Events (core/v1) on the Deployment;
//! - the status subresource: counts and the Available/Progressing conditions that
//!   `kubectl rollout status` reads.
//!
//! Not done: the deprecated `rollbackTo` spec field (kubectl rolls back client-side), the
//! `ReplicaFailure` condition, releasing owned ReplicaSets whose labels stop matching.

pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::events::{Involved, Recorder};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt as _};
use serde_json::json;
use tracing::{debug, info, warn};

use plan::RsState;

/// The Event source, as upstream names it.
const COMPONENT: &str = "deployment-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("hash collision for {0}: collisionCount raised, retrying")]
    Collision(String),
}

/// Shared with every reconcile.
pub struct Context {
    pub client: Client,
    pub events: Arc<Recorder>,
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(client: Client, shutdown: impl Future<Output = ()> + Send + 'static) {
    let shutdown = super::sync_shutdown(shutdown);
    let deployments: Api<Deployment> = Api::all(client.clone());
    let replica_sets: Api<ReplicaSet> = Api::all(client.clone());
    let events = Arc::new(Recorder::new(client.clone(), COMPONENT));
    let ctx = Arc::new(Context { client, events });
    info!("deployment controller started");
    Controller::new(deployments, watcher::Config::default())
        .owns(replica_sets, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "deployment reconcile failed");
            }
        })
        .await;
    debug!("deployment controller stopped");
}

/// Upstream requeues failed syncs with rate-limited back-off; a fixed short delay does here.
pub fn error_policy(d: Arc<Deployment>, err: &Error, _ctx: Arc<Context>) -> Action {
    match err {
        Error::Api(kube::Error::Api(s)) if s.is_conflict() => {
            Action::requeue(Duration::from_millis(200))
        }
        Error::Collision(_) => Action::requeue(Duration::from_millis(100)),
        _ => {
            warn!(deployment = %d.name_any(), error = %err, "deployment sync failed");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

/// One Deployment's state, read at the start of a sync.
struct Sync {
    d: Deployment,
    ns: String,
    name: String,
    rs_api: Api<ReplicaSet>,
    d_api: Api<Deployment>,
    events: Arc<Recorder>,
    /// Every ReplicaSet it controls (after adoption).
    rss: Vec<ReplicaSet>,
}

/// Upstream `syncDeployment`: idempotent, keyed by the Deployment.
pub async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = d.namespace().unwrap_or_default();
    let name = d.name_any();
    let client = ctx.client.clone();
    let mut s = Sync {
        d: (*d).clone(),
        rs_api: Api::namespaced(client.clone(), &ns),
        d_api: Api::namespaced(client.clone(), &ns),
        events: ctx.events.clone(),
        ns,
        name,
        rss: vec![],
    };
    let sel = plan::selector(&s.d);
    if sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    {
        // Upstream: "This deployment is selecting all pods. A non-empty selector is required."
        s.event(
            "Warning",
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.",
        )
        .await;
        return Ok(Action::await_change());
    }
    s.rss = s.claim_replica_sets().await?;
    if s.d.metadata.deletion_timestamp.is_some() {
        let new = plan::find_new(&s.d, &s.rss);
        s.sync_status(new, false).await?;
        return Ok(Action::await_change());
    }
    let desired = plan::replicas(&s.d);
    let active: Vec<RsState> = s.all_states().into_iter().filter(|r| r.spec > 0).collect();
    if plan::paused(&s.d) || plan::is_scaling_event(desired, &active) {
        return s.sync_scale().await;
    }
    if plan::is_recreate(&s.d) {
        s.rollout_recreate().await
    } else {
        s.rollout_rolling().await
    }
}

impl Sync {
    /// (index of the new RS, indices of the old ones).
    fn new_and_old(&self) -> (Option<usize>, Vec<usize>) {
        let new = plan::find_new(&self.d, &self.rss);
        let old = (0..self.rss.len()).filter(|i| Some(*i) != new).collect();
        (new, old)
    }

    fn states(&self, idx: &[usize]) -> Vec<RsState> {
        idx.iter().map(|&i| RsState::of(&self.rss[i])).collect()
    }

    /// The ReplicaSets this Deployment controls, adopting orphans its selector matches
    /// (upstream `getReplicaSetsForDeployment`).
    async fn claim_replica_sets(&self) -> Result<Vec<ReplicaSet>, Error> {
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let sel = plan::selector(&self.d);
        let mut out = vec![];
        for rs in self.rs_api.list(&ListParams::default()).await?.items {
            let owner = rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true));
            match owner {
                Some(o) if o.uid == uid => out.push(rs),
                Some(_) => {}
                None => {
                    let labels = rs.metadata.labels.clone().unwrap_or_default();
                    if rs.metadata.deletion_timestamp.is_some()
                        || self.d.metadata.deletion_timestamp.is_some()
                        || !crate::label_selector::selects(&sel, &labels)
                    {
                        continue;
                    }
                    let mut owners = rs.metadata.owner_references.clone().unwrap_or_default();
                    owners.push(self.owner_ref());
                    let patch = json!({"metadata": {
                        "ownerReferences": owners,
                        "resourceVersion": rs.metadata.resource_version,
                    }});
                    let adopted = self
                        .rs_api
                        .patch(
                            &rs.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await?;
                    info!(deployment = %self.name, replicaset = %rs.name_any(), "adopted");
                    out.push(adopted);
                }
            }
        }
        Ok(out)
    }

    fn owner_ref(&self) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: self.name.clone(),
            uid: self.d.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Upstream `getNewReplicaSet`: finds (and updates the annotations of) the RS for the
    /// current template, or creates it. Returns its index in `self.rss`.
    async fn ensure_new(&mut self, create: bool) -> Result<Option<usize>, Error> {
        let (new_idx, old_idx) = self.new_and_old();
        let old = self.states(&old_idx);
        let new_revision = plan::max_revision(&old) + 1;
        let d_annotations = self.d.metadata.annotations.clone().unwrap_or_default();
        let now = Timestamp::now();
        if let Some(i) = new_idx {
            let mut rs = self.rss[i].clone();
            let mut ann = rs.metadata.annotations.clone().unwrap_or_default();
            let changed = plan::set_new_rs_annotations(&d_annotations, &mut ann, new_revision);
            let min_ready = plan::min_ready_seconds(&self.d);
            let spec = rs.spec.get_or_insert_with(Default::default);
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready;
            if changed || min_ready_changed {
                spec.min_ready_seconds = Some(min_ready);
                rs.metadata.annotations = Some(ann);
                let updated = self
                    .rs_api
                    .replace(&rs.name_any(), &PostParams::default(), &rs)
                    .await?;
                self.rss[i] = updated;
            }
            let revision = RsState::of(&self.rss[i]).revision;
            self.set_deployment_revision(revision).await?;
            let mut status = self.d.status.clone().unwrap_or_default();
            if plan::progress_deadline(&self.d).is_some()
                && plan::condition(&status, plan::PROGRESSING).is_none()
            {
                let rs_name = self.rss[i].name_any();
                plan::set_condition(
                    &mut status,
                    plan::new_condition(
                        plan::PROGRESSING,
                        "True",
                        plan::FOUND_NEW_RS,
                        format!("Found new replica set \"{rs_name}\""),
                        now,
                    ),
                );
                self.write_status(status).await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        // A new ReplicaSet for the template.
        let collision = self.d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = plan::template(&self.d);
        let hash = plan::template_hash(&template, collision);
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(Default::default)
            .insert(plan::HASH_LABEL.into(), hash.clone());
        let mut selector = plan::selector(&self.d);
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(plan::HASH_LABEL.into(), hash.clone());
        let rs_name = format!("{}-{hash}", self.name);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: Some(self.ns.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![self.owner_ref()]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: Some(plan::min_ready_seconds(&self.d)),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let desired = plan::replicas(&self.d);
        let surge = plan::max_surge(&self.d);
        let replicas = if plan::is_recreate(&self.d) {
            desired
        } else {
            let mut all = self.states(&(0..self.rss.len()).collect::<Vec<_>>());
            let probe = RsState {
                name: rs_name.clone(),
                ..Default::default()
            };
            all.push(probe.clone());
            plan::rolling_new_rs_replicas(desired, surge, &all, &probe)
        };
        rs.spec.as_mut().expect("spec").replicas = Some(replicas);
        let mut ann = BTreeMap::new();
        plan::set_new_rs_annotations(&d_annotations, &mut ann, new_revision);
        ann.insert(plan::DESIRED_REPLICAS.into(), desired.to_string());
        ann.insert(plan::MAX_REPLICAS.into(), (desired + surge).to_string());
        rs.metadata.annotations = Some(ann);
        let mut already_existed = false;
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(c) => c,
            Err(kube::Error::Api(e)) if e.is_already_exists() => {
                let existing = self.rs_api.get(&rs_name).await?;
                let ours = existing
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| {
                        o.controller == Some(true) && Some(&o.uid) == self.d.metadata.uid.as_ref()
                    });
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| plan::equal_ignore_hash(t, &plan::template(&self.d)));
                if ours && same {
                    already_existed = true;
                    existing
                } else {
                    // Upstream: bump collisionCount so the next hash differs.
                    let mut status = self.d.status.clone().unwrap_or_default();
                    status.collision_count = Some(collision.unwrap_or(0) + 1);
                    self.write_status(status).await?;
                    return Err(Error::Collision(rs_name));
                }
            }
            Err(e) => {
                if plan::progress_deadline(&self.d).is_some() {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    plan::set_condition(
                        &mut status,
                        plan::new_condition(
                            plan::PROGRESSING,
                            "False",
                            plan::FAILED_RS_CREATE,
                            format!("Failed to create new replica set \"{rs_name}\": {e}"),
                            now,
                        ),
                    );
                    let _ = self.write_status(status).await;
                }
                return Err(e.into());
            }
        };
        if !already_existed && replicas > 0 {
            self.event(
                "Normal",
                "ScalingReplicaSet",
                &format!("Scaled up replica set {rs_name} from 0 to {replicas}"),
            )
            .await;
        }
        self.rss.push(created);
        let idx = self.rss.len() - 1;
        self.set_deployment_revision(new_revision).await?;
        if !already_existed && plan::progress_deadline(&self.d).is_some() {
            let mut status = self.d.status.clone().unwrap_or_default();
            plan::set_condition(
                &mut status,
                plan::new_condition(
                    plan::PROGRESSING,
                    "True",
                    plan::NEW_RS_CREATED,
                    format!("Created new replica set \"{rs_name}\""),
                    now,
                ),
            );
            self.write_status(status).await?;
        }
        Ok(Some(idx))
    }

    /// Keeps the Deployment's `revision` annotation on its new RS's revision.
    async fn set_deployment_revision(&mut self, revision: i64) -> Result<(), Error> {
        let want = revision.to_string();
        let cur = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(plan::REVISION));
        if revision <= 0 || cur == Some(&want) {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {plan::REVISION: want}}});
        let updated = self
            .d_api
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        // Keep the status we may have computed meanwhile: only metadata changed.
        self.d.metadata = updated.metadata;
        Ok(())
    }

    /// Upstream `scaleReplicaSet`: size and the replica annotations in one update.
    async fn scale(&mut self, rs_name: &str, to: i32) -> Result<bool, Error> {
        let Some(i) = self.rss.iter().position(|r| r.name_any() == rs_name) else {
            return Ok(false);
        };
        let desired = plan::replicas(&self.d);
        let max = desired + plan::max_surge(&self.d);
        let mut rs = self.rss[i].clone();
        let from = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let ann = rs.metadata.annotations.get_or_insert_with(Default::default);
        let ann_changed = ann.get(plan::DESIRED_REPLICAS) != Some(&desired.to_string())
            || ann.get(plan::MAX_REPLICAS) != Some(&max.to_string());
        if from == to && !ann_changed {
            return Ok(false);
        }
        ann.insert(plan::DESIRED_REPLICAS.into(), desired.to_string());
        ann.insert(plan::MAX_REPLICAS.into(), max.to_string());
        rs.spec.get_or_insert_with(Default::default).replicas = Some(to);
        let updated = self
            .rs_api
            .replace(rs_name, &PostParams::default(), &rs)
            .await?;
        self.rss[i] = updated;
        if from != to {
            let dir = if to > from { "up" } else { "down" };
            self.event(
                "Normal",
                "ScalingReplicaSet",
                &format!("Scaled {dir} replica set {rs_name} from {from} to {to}"),
            )
            .await;
        }
        Ok(from != to)
    }

    /// Upstream `sync`: scaling events and paused Deployments; no rollout progress.
    async fn sync_scale(&mut self) -> Result<Action, Error> {
        let new_idx = self.ensure_new(false).await?;
        let all = self.states(&(0..self.rss.len()).collect::<Vec<_>>());
        let status_replicas = self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let plan = plan::proportional_scale(
            plan::replicas(&self.d),
            plan::max_surge(&self.d),
            !plan::is_recreate(&self.d),
            status_replicas,
            &all,
            new_idx,
        );
        for (name, to) in plan {
            self.scale(&name, to).await?;
        }
        if plan::paused(&self.d) {
            self.cleanup(new_idx).await?;
        }
        self.sync_status(new_idx, false).await
    }

    /// Upstream `rolloutRolling`.
    async fn rollout_rolling(&mut self) -> Result<Action, Error> {
        let new_idx = self.ensure_new(true).await?.expect("created");
        let desired = plan::replicas(&self.d);
        let (surge, unavailable) = (plan::max_surge(&self.d), plan::max_unavailable(&self.d));
        // reconcileNewReplicaSet.
        let new = RsState::of(&self.rss[new_idx]);
        let target = if new.spec > desired {
            desired
        } else {
            let all = self.states(&(0..self.rss.len()).collect::<Vec<_>>());
            plan::rolling_new_rs_replicas(desired, surge, &all, &new)
        };
        if new.spec != desired && self.scale(&new.name, target).await? {
            return self.sync_status(Some(new_idx), true).await;
        }
        // reconcileOldReplicaSets.
        let (_, old_idx) = self.new_and_old();
        let old = self.states(&old_idx);
        let new = RsState::of(&self.rss[new_idx]);
        let downs = plan::rolling_old_scale_down(desired, unavailable, &old, Some(&new));
        let mut scaled_down = false;
        for (name, to) in downs {
            scaled_down |= self.scale(&name, to).await?;
        }
        if scaled_down {
            return self.sync_status(Some(new_idx), true).await;
        }
        let status =
            plan::calculate_status(&self.d, &self.all_states(), Some(&new), Timestamp::now());
        if plan::is_complete(&self.d, &status) {
            self.cleanup(Some(new_idx)).await?;
        }
        self.sync_status(Some(new_idx), true).await
    }

    /// Upstream `rolloutRecreate`.
    async fn rollout_recreate(&mut self) -> Result<Action, Error> {
        let existing_new = self.ensure_new(false).await?;
        let old_idx: Vec<usize> = (0..self.rss.len())
            .filter(|i| Some(*i) != existing_new)
            .collect();
        let old = self.states(&old_idx);
        match plan::recreate_step(&old) {
            plan::RecreateStep::ScaleDownOld(names) => {
                for n in names {
                    self.scale(&n, 0).await?;
                }
                self.sync_status(existing_new, true).await
            }
            plan::RecreateStep::WaitForOldPods => self.sync_status(existing_new, true).await,
            plan::RecreateStep::ScaleUpNew => {
                let new_idx = self.ensure_new(true).await?.expect("created");
                let name = self.rss[new_idx].name_any();
                self.scale(&name, plan::replicas(&self.d)).await?;
                let new = RsState::of(&self.rss[new_idx]);
                let status = plan::calculate_status(
                    &self.d,
                    &self.all_states(),
                    Some(&new),
                    Timestamp::now(),
                );
                if plan::is_complete(&self.d, &status) {
                    self.cleanup(Some(new_idx)).await?;
                }
                self.sync_status(Some(new_idx), true).await
            }
        }
    }

    fn all_states(&self) -> Vec<RsState> {
        self.rss.iter().map(RsState::of).collect()
    }

    /// Upstream `cleanupDeployment`: old RSs beyond `revisionHistoryLimit`.
    async fn cleanup(&mut self, new_idx: Option<usize>) -> Result<(), Error> {
        let old: Vec<RsState> = (0..self.rss.len())
            .filter(|i| Some(*i) != new_idx)
            .map(|i| RsState::of(&self.rss[i]))
            .collect();
        for name in plan::history_to_delete(plan::history_limit(&self.d), &old) {
            debug!(deployment = %self.name, replicaset = %name, "deleting old replica set");
            match self.rs_api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Upstream `syncDeploymentStatus` / `syncRolloutStatus` (with `rollout` true, the
    /// Progressing condition too). Writes only when something changed.
    async fn sync_status(
        &mut self,
        new_idx: Option<usize>,
        rollout: bool,
    ) -> Result<Action, Error> {
        let now = Timestamp::now();
        let all = self.all_states();
        let new = new_idx.map(|i| RsState::of(&self.rss[i]));
        let mut status = plan::calculate_status(&self.d, &all, new.as_ref(), now);
        plan::paused_condition(&self.d, &mut status, now);
        let mut requeue = None;
        if rollout {
            requeue = plan::rollout_progress(
                &self.d,
                &mut status,
                new.as_ref().map(|n| n.name.as_str()),
                now,
            );
        }
        self.write_status(status).await?;
        Ok(match requeue {
            Some(secs) => Action::requeue(Duration::from_secs(secs.max(1) as u64)),
            None => Action::await_change(),
        })
    }

    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let patch = json!({ "status": status });
        let updated = self
            .d_api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        self.d.status = updated.status;
        Ok(())
    }

    /// A core/v1 Event about the Deployment. Failures are logged, never fatal.
    async fn event(&self, type_: &str, reason: &str, message: &str) {
        let involved = Involved::of(&self.d);
        if type_ == "Warning" {
            self.events.warning(&involved, reason, message).await;
        } else {
            self.events.normal(&involved, reason, message).await;
        }
        info!(deployment = %self.name, reason, "{message}");
    }
}
