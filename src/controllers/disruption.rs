//! Disruption: keeps each PodDisruptionBudget's status in step with the pods it selects, so
//! that `pods/eviction` knows how many voluntary disruptions it may allow right now.
//!
//! As upstream's disruption controller: `expectedPods` is the number of selected pods for an
//! integer `minAvailable`, and the sum of the owning controllers' desired replicas for a
//! percentage or a `maxUnavailable` (so a half-drained Deployment still counts its missing pods);
//! `currentHealthy` counts Ready pods not already spent by an eviction (`disruptedPods`, whose
//! entries are dropped once the pod is gone or after two minutes, the time upstream allows an
//! evicted pod to start deleting).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt as _;
use tracing::debug;

use super::replicaset::{controller_ref, is_ready};
use crate::events::{Involved, Recorder};

/// How long an evicted pod may take to start terminating before it counts as healthy again.
const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
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
        events: Recorder::new(client.clone(), "controllermanager"),
    });
    let controller = Controller::new(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    // Any pod change may change any budget of its namespace.
    controller
        .watches(
            Api::<Pod>::all(client),
            watcher::Config::default(),
            move |pod| {
                let ns = pod.namespace();
                budgets
                    .state()
                    .into_iter()
                    .filter(|b| b.namespace() == ns)
                    .map(|b| ObjectRef::from_obj(&*b))
                    .collect::<Vec<_>>()
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "disruption budget reconcile failed");
            }
        })
        .await;
}

fn error_policy(_pdb: Arc<PodDisruptionBudget>, _err: &Error, _ctx: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_secs(2))
}

#[tracing::instrument(skip_all, fields(pdb = %format!("{}/{}", pdb.namespace().unwrap_or_default(), pdb.name_any())))]
async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let pods: Vec<Pod> = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| selects(&pdb, p))
        .collect();
    let now = Timestamp::now();
    let expected = match expected_and_desired(&pdb, &pods, |owner| {
        controller_scale(&ctx.client, &ns, owner)
    })
    .await
    {
        Ok(counts) => Ok(counts),
        Err(why) => {
            ctx.events
                .warning(
                    &Involved::of(&*pdb),
                    "CalculateExpectedPodCountFailed",
                    &format!("Failed to calculate the number of expected pods: {why}"),
                )
                .await;
            Err(why)
        }
    };
    let status = next_status(&pdb, &pods, expected, now);
    if pdb.status.as_ref() != Some(&status) {
        let mut updated = (*pdb).clone();
        updated.status = Some(status.clone());
        Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &ns)
            .replace_status(&pdb.name_any(), &PostParams::default(), &updated)
            .await?;
    }
    // Spent disruptions expire by time, not only by pod events: look again when the first does.
    Ok(
        match status.disrupted_pods.as_ref().filter(|m| !m.is_empty()) {
            Some(_) => Action::requeue(Duration::from_secs(15)),
            None => Action::await_change(),
        },
    )
}

/// policy/v1: a null selector selects nothing, an empty one every pod of the namespace.
fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    pdb.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|sel| crate::label_selector::matches(sel, pod.labels()))
}

/// `(expectedPods, desiredHealthy)`, or why they cannot be known.
async fn expected_and_desired<F, Fut>(
    pdb: &PodDisruptionBudget,
    pods: &[Pod],
    scale_of: F,
) -> Result<(i32, i32), String>
where
    F: Fn(OwnerReference) -> Fut,
    Fut: std::future::Future<Output = Result<i32, String>>,
{
    let spec = pdb.spec.clone().unwrap_or_default();
    match (&spec.max_unavailable, &spec.min_available) {
        (Some(max), _) => {
            let expected = owners_scale(pods, scale_of).await?;
            let unavailable = scaled(max, expected)?;
            Ok((expected, (expected - unavailable).max(0)))
        }
        (None, Some(IntOrString::Int(min))) => Ok((pods.len() as i32, *min)),
        (None, Some(min)) => {
            let expected = owners_scale(pods, scale_of).await?;
            Ok((expected, scaled(min, expected)?))
        }
        (None, None) => Ok((0, 0)),
    }
}

/// The summed desired replicas of the distinct controllers of the pods.
async fn owners_scale<F, Fut>(pods: &[Pod], scale_of: F) -> Result<i32, String>
where
    F: Fn(OwnerReference) -> Fut,
    Fut: std::future::Future<Output = Result<i32, String>>,
{
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for pod in pods {
        let owner = controller_ref(pod)
            .ok_or_else(|| format!("found no controller for pod {:?}", pod.name_any()))?;
        if seen.insert(owner.uid.clone()) {
            total += scale_of(owner.clone()).await?;
        }
    }
    Ok(total)
}

/// A count or a percentage of `total`, rounded up as upstream's `GetScaledValueFromIntOrPercent`.
fn scaled(v: &IntOrString, total: i32) -> Result<i32, String> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: {s:?}"))?;
            Ok(((pct * i64::from(total) + 99) / 100) as i32)
        }
    }
}

/// The desired replicas of a pod's controller: a ReplicaSet's Deployment when it has one.
async fn controller_scale(
    client: &kube::Client,
    ns: &str,
    owner: OwnerReference,
) -> Result<i32, String> {
    let missing = |kind: &str| format!("{kind} {:?} not found", owner.name);
    let api_err = |e: kube::Error| format!("reading {} {:?}: {e}", owner.kind, owner.name);
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .get_opt(&owner.name)
                .await
                .map_err(api_err)?
                .ok_or_else(|| missing("ReplicaSet"))?;
            if let Some(d) = controller_ref(&rs).filter(|r| r.kind == "Deployment") {
                let dep = Api::<Deployment>::namespaced(client.clone(), ns)
                    .get_opt(&d.name)
                    .await
                    .map_err(api_err)?
                    .ok_or_else(|| missing("Deployment"))?;
                return Ok(dep.spec.and_then(|s| s.replicas).unwrap_or(1));
            }
            Ok(rs.spec.and_then(|s| s.replicas).unwrap_or(1))
        }
        "StatefulSet" => Ok(Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get_opt(&owner.name)
            .await
            .map_err(api_err)?
            .ok_or_else(|| missing("StatefulSet"))?
            .spec
            .and_then(|s| s.replicas)
            .unwrap_or(1)),
        other => Err(format!(
            "pods owned by a {other} have no scale; use an integer minAvailable"
        )),
    }
}

/// The status the budget should have given its pods.
fn next_status(
    pdb: &PodDisruptionBudget,
    pods: &[Pod],
    counts: Result<(i32, i32), String>,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let old = pdb.status.clone().unwrap_or_default();
    let disrupted = still_disrupted(old.disrupted_pods.as_ref(), pods, now);
    let current_healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .filter(|p| is_ready(p))
        .count() as i32;
    let (expected, desired, failure) = match counts {
        Ok((e, d)) => (e, d, None),
        Err(why) => (0, 0, Some(why)),
    };
    let allowed = if expected <= 0 || failure.is_some() {
        0
    } else {
        (current_healthy - desired).max(0)
    };
    let (status, reason, message) = match (&failure, allowed) {
        (Some(why), _) => ("False", "SyncFailed", why.clone()),
        (None, 0) => ("False", "InsufficientPods", String::new()),
        (None, _) => ("True", "SufficientPods", String::new()),
    };
    let generation = pdb.metadata.generation;
    let condition = Condition {
        type_: "DisruptionAllowed".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "DisruptionAllowed" && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now)),
    };
    PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: generation,
        conditions: Some(vec![condition]),
    }
}

/// Evictions still in flight: the pod exists, is not yet deleting, and was evicted recently.
fn still_disrupted(
    recorded: Option<&BTreeMap<String, Time>>,
    pods: &[Pod],
    now: Timestamp,
) -> BTreeMap<String, Time> {
    let live: BTreeMap<String, &Pod> = pods.iter().map(|p| (p.name_any(), p)).collect();
    recorded
        .into_iter()
        .flatten()
        .filter(|(name, at)| {
            live.get(*name)
                .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
                && now.duration_since(at.0) < DELETION_TIMEOUT
        })
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: bool, owner: Option<&str>) -> Pod {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready {"True"} else {"False"},
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        });
        if let Some(o) = owner {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
                "kind": "ReplicaSet", "name": o, "uid": o, "controller": true}]);
        }
        serde_json::from_value(p).unwrap()
    }

    fn pdb(spec: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "generation": 2},
            "spec": spec,
        }))
        .unwrap()
    }

    fn counts(pdb: &PodDisruptionBudget, pods: &[Pod]) -> Result<(i32, i32), String> {
        futures::executor::block_on(expected_and_desired(pdb, pods, |_| async { Ok(4) }))
    }

    #[test]
    fn budgets_count_pods_or_their_controllers() {
        let pods = vec![pod("a", true, Some("rs1")), pod("b", true, Some("rs1"))];
        let min_int = pdb(json!({"minAvailable": 1, "selector": {}}));
        assert_eq!(counts(&min_int, &pods), Ok((2, 1)));
        // Percentages and maxUnavailable count the controller's desired replicas (4 here).
        let max = pdb(json!({"maxUnavailable": 1, "selector": {}}));
        assert_eq!(counts(&max, &pods), Ok((4, 3)));
        let pct = pdb(json!({"minAvailable": "50%", "selector": {}}));
        assert_eq!(counts(&pct, &pods), Ok((4, 2)));
        let max_pct = pdb(json!({"maxUnavailable": "30%", "selector": {}}));
        assert_eq!(
            counts(&max_pct, &pods),
            Ok((4, 2)),
            "30% of 4 rounds up to 2"
        );
        let orphan = vec![pod("c", true, None)];
        assert!(counts(&max, &orphan).unwrap_err().contains("no controller"));
    }

    #[test]
    fn allowed_disruptions_follow_healthy_pods() {
        let budget = pdb(json!({"minAvailable": 1, "selector": {}}));
        let pods = vec![
            pod("a", true, None),
            pod("b", true, None),
            pod("c", false, None),
        ];
        let now = Timestamp::now();
        let s = next_status(&budget, &pods, Ok((3, 1)), now);
        assert_eq!((s.current_healthy, s.disruptions_allowed), (2, 1));
        assert_eq!(s.observed_generation, Some(2));
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SufficientPods")
        );

        // A pod an eviction just spent no longer counts as healthy.
        let mut spent = budget.clone();
        spent.status = Some(PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([("a".to_string(), Time(now))])),
            ..Default::default()
        });
        let s = next_status(&spent, &pods, Ok((3, 1)), now);
        assert_eq!((s.current_healthy, s.disruptions_allowed), (1, 0));
        assert_eq!(s.conditions.as_ref().unwrap()[0].reason, "InsufficientPods");
        // ...until it is gone or the eviction is older than the deletion timeout.
        let later = now + SignedDuration::from_secs(121);
        let s = next_status(&spent, &pods, Ok((3, 1)), later);
        assert_eq!(s.disrupted_pods, None);

        let failed = next_status(&budget, &pods, Err("no scale".into()), now);
        assert_eq!(failed.disruptions_allowed, 0);
        assert_eq!(failed.conditions.unwrap()[0].reason, "SyncFailed");
    }

    #[test]
    fn null_selector_selects_nothing_empty_selects_all() {
        let p = pod("a", true, None);
        assert!(!selects(&pdb(json!({"minAvailable": 1})), &p));
        assert!(selects(&pdb(json!({"selector": {}})), &p));
        assert!(!selects(
            &pdb(json!({"selector": {"matchLabels": {"app": "db"}}})),
            &p
        ));
    }
}
