//! What the scheduler tells users: the `PodScheduled` condition and core/v1 Events.
//!
//! Events are named `<pod>.<hash of uid, type, reason, message>`, so a pod failing the same
//! way again finds its event by name and bumps `count`/`lastTimestamp` (what `kubectl
//! describe` shows as "x5 over 2m") instead of piling up new objects, and a restarted
//! scheduler continues the same series.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

use super::framework::PodInfo;

/// Upstream truncates event notes to this many bytes (`noteLengthLimit`).
const NOTE_LIMIT: usize = 1024;

/// `PodScheduled=False` as the scheduler reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `Unschedulable`, or `SchedulerError` for failures that are not about fit.
    pub reason: String,
    pub message: String,
}

/// Patches `status.conditions[type=PodScheduled]` with a strategic merge patch (merge key
/// `type`, so the other conditions stay). `transition` says whether the status changes
/// (then `lastTransitionTime` is set, as upstream only does on a change).
pub async fn set_unschedulable(
    client: Client,
    pod: &PodInfo,
    condition: &Condition,
    transition: bool,
) -> Result<(), kube::Error> {
    let mut cond = json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": condition.reason,
        "message": condition.message,
        "lastProbeTime": null,
    });
    if transition {
        cond["lastTransitionTime"] = json!(Timestamp::now().to_string());
    }
    let patch = json!({ "status": { "conditions": [cond] } });
    let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
    api.patch_status(
        &pod.name,
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await?;
    Ok(())
}

/// Upstream's `truncateMessage`.
pub fn truncate_note(message: &str) -> String {
    if message.len() <= NOTE_LIMIT {
        return message.to_string();
    }
    let suffix = " ...";
    let mut end = NOTE_LIMIT - suffix.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &message[..end])
}

/// 64-bit FNV-1a: stable across runs and builds (std's hasher is not), which the event
/// names rely on.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

pub fn event_name(pod: &PodInfo, type_: &str, reason: &str, message: &str) -> String {
    format!(
        "{}.{:016x}",
        pod.name,
        fnv1a(&[&pod.uid, type_, reason, message])
    )
}

/// One event to record about a pod.
#[derive(Clone, Debug)]
pub struct PodEvent {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

impl PodEvent {
    pub fn scheduled(pod: &PodInfo, node: &str) -> Self {
        PodEvent {
            type_: "Normal",
            reason: "Scheduled",
            action: "Binding",
            message: format!(
                "Successfully assigned {}/{} to {node}",
                pod.namespace, pod.name
            ),
        }
    }

    /// On a victim: upstream's wording, naming the preemptor by uid.
    pub fn preempted(preemptor: &PodInfo, node: &str) -> Self {
        PodEvent {
            type_: "Normal",
            reason: "Preempted",
            action: "Preempting",
            message: format!("Preempted by pod {} on node {node}", preemptor.uid),
        }
    }

    pub fn failed(message: &str) -> Self {
        PodEvent {
            type_: "Warning",
            reason: "FailedScheduling",
            action: "Scheduling",
            message: truncate_note(message),
        }
    }
}

/// The Event object for a first occurrence.
pub fn new_event(pod: &PodInfo, ev: &PodEvent, component: &str, now: Timestamp) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(pod, ev.type_, ev.reason, &ev.message)),
            namespace: Some(pod.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: (!pod.uid.is_empty()).then(|| pod.uid.clone()),
            ..Default::default()
        },
        type_: Some(ev.type_.into()),
        reason: Some(ev.reason.into()),
        action: Some(ev.action.into()),
        message: Some(ev.message.clone()),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        reporting_component: Some(component.to_string()),
        reporting_instance: Some(component.to_string()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        ..Default::default()
    }
}

/// Creates the event, or bumps the count of the one already recorded for the same thing.
pub async fn record(
    client: Client,
    pod: &PodInfo,
    ev: &PodEvent,
    component: &str,
) -> Result<(), kube::Error> {
    let api: Api<Event> = Api::namespaced(client, &pod.namespace);
    let now = Timestamp::now();
    let fresh = new_event(pod, ev, component, now);
    let name = fresh.metadata.name.clone().unwrap_or_default();
    // Two tries: a concurrent writer (another replica, a racing report) makes the first
    // create or update conflict; the second sees its result.
    let mut last_err = None;
    for _ in 0..2 {
        let outcome = match api.get_opt(&name).await? {
            Some(mut existing) => {
                existing.count = Some(existing.count.unwrap_or(1).saturating_add(1));
                existing.last_timestamp = Some(Time(now));
                api.replace(&name, &PostParams::default(), &existing)
                    .await
                    .map(|_| ())
            }
            None => api.create(&PostParams::default(), &fresh).await.map(|_| ()),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
                last_err = Some(kube::Error::Api(s));
            }
            Err(e) => return Err(e),
        }
    }
    match last_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::pod;

    #[test]
    fn event_names_are_stable_and_distinct() {
        let p = pod("web");
        let a = event_name(&p, "Warning", "FailedScheduling", "0/1 nodes are available");
        assert_eq!(
            a,
            event_name(&p, "Warning", "FailedScheduling", "0/1 nodes are available")
        );
        assert!(a.starts_with("web."));
        assert_eq!(a.len(), "web.".len() + 16);
        assert_ne!(
            a,
            event_name(&p, "Warning", "FailedScheduling", "0/2 nodes are available")
        );
        let mut other = pod("web");
        other.uid = "another".into();
        assert_ne!(
            a,
            event_name(
                &other,
                "Warning",
                "FailedScheduling",
                "0/1 nodes are available"
            )
        );
    }

    #[test]
    fn events_look_like_the_default_schedulers() {
        let p = pod("web");
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let e = new_event(
            &p,
            &PodEvent::scheduled(&p, "node-1"),
            "default-scheduler",
            now,
        );
        assert_eq!(
            e.message.as_deref(),
            Some("Successfully assigned default/web to node-1")
        );
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.reason.as_deref(), Some("Scheduled"));
        assert_eq!(e.count, Some(1));
        assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(e.involved_object.uid.as_deref(), Some("uid-web"));
        assert_eq!(
            e.source.as_ref().and_then(|s| s.component.as_deref()),
            Some("default-scheduler")
        );
        assert_eq!(e.reporting_component.as_deref(), Some("default-scheduler"));
        assert_eq!(e.first_timestamp, e.last_timestamp);
        let f = PodEvent::failed("nope");
        assert_eq!((f.type_, f.reason), ("Warning", "FailedScheduling"));
    }

    #[test]
    fn long_notes_are_truncated() {
        let long = "é".repeat(600);
        let t = truncate_note(&long);
        assert!(t.len() <= NOTE_LIMIT);
        assert!(t.ends_with(" ..."));
        assert_eq!(truncate_note("short"), "short");
    }
}
