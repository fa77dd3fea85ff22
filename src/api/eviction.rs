//! `pods/eviction`: a pod deletion that asks the pod's PodDisruptionBudget first.
//!
//! This is what `kubectl drain` (and later the scheduler's preemption) uses, following upstream's
//! eviction REST: a pod that is not running yet, already finished or already being deleted goes
//! at once; otherwise the one budget that selects the pod must allow a disruption, and the
//! eviction spends it (`disruptionsAllowed - 1`, the pod recorded in `disruptedPods`) with a
//! compare-and-swap on the budget before the pod is deleted, so two concurrent evictions can
//! never both spend the last allowed disruption. The disruption controller recomputes the budget
//! from the pods afterwards.

use std::collections::BTreeMap;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{json, Value};

use super::object;
use super::registry::ResourceInfo;
use super::rest::{DeleteOptions, Rest};
use super::status::{ApiError, ApiResult};
use super::storage::{list_prefix, ListQuery};
use crate::store::Read;

/// Upstream's bound on `disruptedPods`: beyond it the disruption controller is not keeping up.
const MAX_DISRUPTED_PODS: usize = 2000;
/// Attempts when the budget changes between reading and spending it.
const MAX_BUDGET_CONFLICTS: usize = 8;

/// Evicts `ns/name` as the `Eviction` body asks; returns the deleted (or terminating) pod.
#[tracing::instrument(skip_all, fields(ns, name))]
pub async fn evict(
    rest: &Rest,
    pods: &ResourceInfo,
    ns: &str,
    name: &str,
    eviction: &Value,
    query_dry_run: bool,
) -> ApiResult<Value> {
    let mut delete = delete_options(eviction, name)?;
    delete.dry_run |= query_dry_run;
    let budgets = rest
        .registry()
        .find("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not served"))?
        .clone();
    for _ in 0..MAX_BUDGET_CONFLICTS {
        let pod = rest.objects().must_get(pods, Some(ns), name).await?;
        if let Some(uid) = &delete.precondition_uid {
            if object::uid(&pod) != Some(uid.as_str()) {
                return Err(ApiError::conflict(
                    pods,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        object::uid(&pod).unwrap_or_default()
                    ),
                ));
            }
        }
        if !budget_applies(&pod) {
            return rest.delete(pods, Some(ns), name, &delete).await;
        }
        let Some(budget) = the_budget(rest, &budgets, ns, &pod).await? else {
            return rest.delete(pods, Some(ns), name, &delete).await;
        };
        match decide(&budget, &pod) {
            Verdict::Refuse(err) => return Err(err),
            Verdict::DeleteUnhealthy => {
                // The pod must still be the unhealthy one that was judged.
                if delete.precondition_resource_version.is_none() {
                    delete.precondition_resource_version =
                        object::resource_version(&pod).map(str::to_string);
                }
                return rest.delete(pods, Some(ns), name, &delete).await;
            }
            Verdict::Spend => {
                if delete.dry_run {
                    return rest.delete(pods, Some(ns), name, &delete).await;
                }
                match spend(rest, &budgets, &budget, name).await {
                    Err(e) if e.reason == "Conflict" => continue,
                    Err(e) => return Err(e),
                    Ok(()) => return rest.delete(pods, Some(ns), name, &delete).await,
                }
            }
        }
    }
    Err(ApiError::too_many_requests(
        "the pod's disruption budget kept changing; try again",
        1,
    ))
}

/// The delete options of an `Eviction`, after checking it names the pod of the URL.
fn delete_options(eviction: &Value, name: &str) -> ApiResult<DeleteOptions> {
    if let Some(kind) = eviction.get("kind").and_then(Value::as_str) {
        if kind != "Eviction" {
            return Err(ApiError::bad_request(format!(
                "the body of an eviction must be a policy/v1 Eviction, not {kind}"
            )));
        }
    }
    match object::name(eviction) {
        Some(n) if !n.is_empty() && n != name => Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object: {name} != {n}"
        ))),
        _ => match eviction.get("deleteOptions") {
            Some(opts) if opts.is_object() => DeleteOptions::from_body(opts),
            _ => Ok(DeleteOptions::default()),
        },
    }
}

/// Upstream's `canIgnorePDB`: budgets protect running pods only.
fn budget_applies(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    !object::is_deleting(pod) && !matches!(phase, Some("Succeeded" | "Failed" | "Pending") | None)
}

/// The one budget that selects the pod, if any (more than one is refused, as upstream).
async fn the_budget(
    rest: &Rest,
    budgets: &ResourceInfo,
    ns: &str,
    pod: &Value,
) -> ApiResult<Option<(PodDisruptionBudget, Value)>> {
    let labels = crate::label_selector::labels_of(pod);
    let keep = |_: &Value| true;
    let page = rest
        .objects()
        .list(ListQuery {
            prefix: list_prefix(budgets, Some(ns)),
            read: Read::Linearizable,
            limit: None,
            continue_token: None,
            filter: &keep,
            filtered: false,
        })
        .await?;
    let mut selecting = Vec::new();
    for raw in page.items {
        let Ok(pdb) = serde_json::from_value::<PodDisruptionBudget>(raw.clone()) else {
            continue;
        };
        let selects = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .is_some_and(|sel| crate::label_selector::matches(sel, &labels));
        if selects {
            selecting.push((pdb, raw));
        }
    }
    match selecting.len() {
        0 | 1 => Ok(selecting.pop()),
        _ => Err(ApiError::internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        )),
    }
}

enum Verdict {
    Refuse(ApiError),
    /// An unready pod that does not count towards the budget: delete without spending.
    DeleteUnhealthy,
    Spend,
}

fn decide((pdb, _): &(PodDisruptionBudget, Value), pod: &Value) -> Verdict {
    let name = pdb.metadata.name.clone().unwrap_or_default();
    let spec = pdb.spec.clone().unwrap_or_default();
    let status = pdb.status.clone().unwrap_or_default();
    if !is_ready(pod) {
        let always = spec.unhealthy_pod_eviction_policy.as_deref() == Some("AlwaysAllow");
        let budget_met =
            status.current_healthy >= status.desired_healthy && status.desired_healthy > 0;
        if always || budget_met {
            return Verdict::DeleteUnhealthy;
        }
    }
    let observed = status.observed_generation.unwrap_or(0);
    if observed < pdb.metadata.generation.unwrap_or(0) {
        return Verdict::Refuse(ApiError::disruption_budget(format!(
            "The disruption budget {name} is still being processed by the server."
        )));
    }
    if status.disruptions_allowed < 0 {
        return Verdict::Refuse(ApiError::forbidden(format!(
            "poddisruptionbudgets.policy \"{name}\" is forbidden: pdb disruptions allowed is negative"
        )));
    }
    if status.disrupted_pods.as_ref().map_or(0, BTreeMap::len) > MAX_DISRUPTED_PODS {
        return Verdict::Refuse(ApiError::forbidden(format!(
            "poddisruptionbudgets.policy \"{name}\" is forbidden: DisruptedPods map too big - too many evictions not confirmed by PDB controller"
        )));
    }
    if status.disruptions_allowed == 0 {
        return Verdict::Refuse(ApiError::disruption_budget(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status.desired_healthy, status.current_healthy
        )));
    }
    Verdict::Spend
}

/// Pod readiness as the kubelet reports it (upstream's `IsPodReady`).
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Takes one allowed disruption from the budget, compare-and-swap on the revision it was read at.
async fn spend(
    rest: &Rest,
    budgets: &ResourceInfo,
    (_, raw): &(PodDisruptionBudget, Value),
    pod_name: &str,
) -> ApiResult<()> {
    let expected = object::resource_version(raw)
        .and_then(object::parse_resource_version)
        .ok_or_else(|| ApiError::internal("stored budget has no resourceVersion"))?;
    let mut updated = raw.clone();
    let status = updated
        .as_object_mut()
        .ok_or_else(|| ApiError::internal("stored budget is not an object"))?
        .entry("status")
        .or_insert_with(|| json!({}));
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0) - 1;
    status["disruptionsAllowed"] = json!(allowed);
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod_name] = json!(object::now_rfc3339());
    if allowed == 0 {
        set_insufficient(status);
    }
    rest.objects()
        .update(budgets, &updated, expected)
        .await
        .map(|_| ())
}

/// The `DisruptionAllowed` condition once the last disruption is spent.
fn set_insufficient(status: &mut Value) {
    let now = object::now_rfc3339();
    let condition = json!({
        "type": "DisruptionAllowed",
        "status": "False",
        "reason": "InsufficientPods",
        "message": "",
        "lastTransitionTime": now,
        "observedGeneration": status["observedGeneration"].clone(),
    });
    let conditions = status
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    if let Some(Value::Array(list)) = conditions {
        match list.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
            Some(c) if c["status"] == "False" => {}
            Some(c) => *c = condition,
            None => list.push(condition),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(status: Value, spec: Value) -> (PodDisruptionBudget, Value) {
        let raw = json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default", "generation": 1, "resourceVersion": "7"},
            "spec": spec, "status": status,
        });
        (serde_json::from_value(raw.clone()).unwrap(), raw)
    }

    fn pod(ready: bool, phase: &str) -> Value {
        json!({"metadata": {"name": "p"}, "status": {"phase": phase,
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    fn refused_with(v: Verdict) -> (u16, String) {
        match v {
            Verdict::Refuse(e) => (e.code.as_u16(), e.to_status().to_string()),
            _ => panic!("expected a refusal"),
        }
    }

    #[test]
    fn budgets_protect_running_pods_only() {
        assert!(budget_applies(&pod(true, "Running")));
        assert!(!budget_applies(&pod(false, "Pending")));
        assert!(!budget_applies(&pod(false, "Succeeded")));
        let mut deleting = pod(true, "Running");
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!budget_applies(&deleting));
    }

    #[test]
    fn spends_only_what_the_budget_allows() {
        let spec = json!({"minAvailable": 1, "selector": {}});
        let ok = pdb(
            json!({"observedGeneration": 1, "disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2}),
            spec.clone(),
        );
        assert!(matches!(decide(&ok, &pod(true, "Running")), Verdict::Spend));

        let none = pdb(
            json!({"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}),
            spec.clone(),
        );
        let (code, status) = refused_with(decide(&none, &pod(true, "Running")));
        assert_eq!(code, 429);
        assert!(status.contains("would violate the pod's disruption budget"));
        assert!(
            status.contains("The disruption budget web needs 1 healthy pods and has 1 currently")
        );

        let stale = pdb(
            json!({"observedGeneration": 0, "disruptionsAllowed": 3}),
            spec,
        );
        let (code, status) = refused_with(decide(&stale, &pod(true, "Running")));
        assert_eq!(code, 429);
        assert!(status.contains("still being processed"));
    }

    #[test]
    fn unhealthy_pods_follow_the_eviction_policy() {
        let met = json!({"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2});
        let short = json!({"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 2});
        let sel = json!({"minAvailable": 2, "selector": {}});
        let unready = pod(false, "Running");
        assert!(matches!(
            decide(&pdb(met, sel.clone()), &unready),
            Verdict::DeleteUnhealthy
        ));
        assert!(matches!(
            decide(&pdb(short.clone(), sel), &unready),
            Verdict::Refuse(_)
        ));
        let always =
            json!({"minAvailable": 2, "selector": {}, "unhealthyPodEvictionPolicy": "AlwaysAllow"});
        assert!(matches!(
            decide(&pdb(short, always), &unready),
            Verdict::DeleteUnhealthy
        ));
    }

    #[test]
    fn an_eviction_names_its_pod() {
        let e =
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}});
        assert!(delete_options(&e, "p").is_err());
        let e = json!({"kind": "Eviction", "metadata": {"name": "p"},
            "deleteOptions": {"gracePeriodSeconds": 3, "dryRun": ["All"]}});
        let d = delete_options(&e, "p").unwrap();
        assert_eq!(d.grace_period_seconds, Some(3));
        assert!(d.dry_run);
        assert!(delete_options(&json!({"kind": "Pod"}), "p").is_err());
    }

    #[test]
    fn spending_the_last_disruption_flips_the_condition() {
        let mut status = json!({"observedGeneration": 1, "conditions": [
            {"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods"}]});
        set_insufficient(&mut status);
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");
    }
}
