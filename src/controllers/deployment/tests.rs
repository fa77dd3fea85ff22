//! Unit tests of the pure planning functions in [`super::plan`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStatus, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::plan::*;

fn tmpl(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "hello".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

fn deploy(replicas: i32, surge: Option<IntOrString>, unavail: Option<IntOrString>) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: surge,
                    max_unavailable: unavail,
                }),
            }),
            template: tmpl("img:v1"),
            ..Default::default()
        }),
        status: None,
    }
}

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn rs(name: &str, created: i64, spec: i32, available: i32) -> RsState {
    RsState {
        name: name.into(),
        spec,
        replicas: spec,
        ready: available,
        available,
        created: Some(ts(created)),
        ..Default::default()
    }
}

#[test]
fn hash_is_stable_and_depends_on_template_and_collisions() {
    let a = template_hash(&tmpl("img:v1"), None);
    assert_eq!(a, template_hash(&tmpl("img:v1"), None));
    // Pinned: a change here renames every ReplicaSet of existing Deployments.
    assert_eq!(a, PINNED_HASH);
    assert_ne!(a, template_hash(&tmpl("img:v2"), None));
    assert_ne!(a, template_hash(&tmpl("img:v1"), Some(1)));
    assert_ne!(
        template_hash(&tmpl("img:v1"), Some(1)),
        template_hash(&tmpl("img:v1"), Some(2))
    );
    assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    assert!(!a.is_empty() && a.len() <= 10);
}

const PINNED_HASH: &str = "74477b5b59";

#[test]
fn safe_encoding_matches_upstream() {
    // rand.SafeEncodeString("123") upstream: '1'=49 -> 49%27=22 -> '5', '2'=50 -> '6', '3' -> '7'.
    assert_eq!(safe_encode("123"), "567");
}

#[test]
fn templates_compare_without_the_hash_label() {
    let a = tmpl("img:v1");
    let mut b = tmpl("img:v1");
    b.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(HASH_LABEL.into(), "abc".into());
    assert!(equal_ignore_hash(&a, &b));
    assert!(!equal_ignore_hash(&a, &tmpl("img:v2")));
    let bare = PodTemplateSpec::default();
    let hashed_bare = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([(HASH_LABEL.into(), "x".into())])),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(equal_ignore_hash(&bare, &hashed_bare));
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    let pct = |s: &str| IntOrString::String(s.into());
    assert_eq!(resolve_fenceposts(None, None, 10), Ok((3, 2)));
    assert_eq!(resolve_fenceposts(None, None, 3), Ok((1, 0)));
    assert_eq!(resolve_fenceposts(None, None, 1), Ok((1, 0)));
    assert_eq!(
        resolve_fenceposts(Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0)), 5),
        Ok((0, 1))
    );
    assert_eq!(
        resolve_fenceposts(Some(&IntOrString::Int(2)), Some(&pct("50%")), 5),
        Ok((2, 2))
    );
    assert_eq!(
        resolve_fenceposts(Some(&pct("10%")), Some(&pct("10%")), 11),
        Ok((2, 1))
    );
    assert!(resolve_fenceposts(Some(&pct("abc")), None, 3).is_err());
    assert!(resolve_fenceposts(Some(&IntOrString::String("3".into())), None, 3).is_err());

    let d = deploy(4, Some(IntOrString::Int(1)), Some(IntOrString::Int(9)));
    assert_eq!(max_surge(&d), 1);
    assert_eq!(max_unavailable(&d), 4, "capped at replicas");
    let mut r = deploy(4, None, None);
    r.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    assert_eq!((max_surge(&r), max_unavailable(&r)), (0, 0));
}

#[test]
fn new_rs_grows_within_surge() {
    let old = rs("old", 0, 3, 3);
    let new = rs("new", 10, 0, 0);
    assert_eq!(
        rolling_new_rs_replicas(3, 1, &[old.clone(), new.clone()], &new),
        1
    );
    // Already at the surge limit: unchanged.
    let new1 = rs("new", 10, 1, 0);
    assert_eq!(
        rolling_new_rs_replicas(3, 1, &[old.clone(), new1.clone()], &new1),
        1
    );
    // Never beyond desired.
    let old0 = rs("old", 0, 0, 0);
    let new2 = rs("new", 10, 2, 2);
    assert_eq!(
        rolling_new_rs_replicas(3, 5, &[old0, new2.clone()], &new2),
        3
    );
}

#[test]
fn old_rs_scale_down_keeps_min_available() {
    // desired 3, maxUnavailable 0: the new RS has 1 pod but it is not available yet.
    let old = [rs("old", 0, 3, 3)];
    let new = rs("new", 10, 1, 0);
    assert!(rolling_old_scale_down(3, 0, &old, Some(&new)).is_empty());
    // Once available, one old pod may go.
    let new = rs("new", 10, 1, 1);
    assert_eq!(
        rolling_old_scale_down(3, 0, &old, Some(&new)),
        vec![("old".to_string(), 2)]
    );
    // Unhealthy old replicas are removed first, without availability cost, within
    // `all - minAvailable - newUnavailable` (4 - 3 - 0 = 1 here).
    let old = [rs("a", 0, 2, 2), rs("b", 5, 2, 0)];
    let new = rs("new", 10, 0, 0);
    assert_eq!(
        rolling_old_scale_down(4, 1, &old, Some(&new)),
        vec![("b".to_string(), 1)]
    );
    // With room for more (maxUnavailable 100%), all unhealthy ones go, then healthy ones.
    assert_eq!(
        rolling_old_scale_down(4, 4, &old, Some(&new)),
        vec![("a".to_string(), 0), ("b".to_string(), 0)]
    );
}

/// Simulates a rolling update where every pod becomes available at once, checking the
/// invariant `available >= desired - maxUnavailable` and `total <= desired + maxSurge`.
#[test]
fn rolling_update_converges_within_bounds() {
    for (desired, surge, unavail) in [(3, 1, 0), (3, 0, 1), (10, 3, 2), (5, 2, 2), (1, 1, 0)] {
        let mut old = rs("old", 0, desired, desired);
        let mut new = rs("new", 10, 0, 0);
        for step in 0..50 {
            let all = [old.clone(), new.clone()];
            let up = rolling_new_rs_replicas(desired, surge, &all, &new);
            new.spec = up;
            for (_, to) in
                rolling_old_scale_down(desired, unavail, std::slice::from_ref(&old), Some(&new))
            {
                old.spec = to;
            }
            assert!(old.spec + new.spec <= desired + surge, "step {step}");
            // Pods follow the specs: removed at once, new ones become available.
            old.available = old.spec;
            old.replicas = old.spec;
            assert!(
                old.available + new.available >= desired - unavail,
                "step {step}"
            );
            new.available = new.spec;
            new.replicas = new.spec;
            if new.spec == desired && old.spec == 0 {
                break;
            }
        }
        assert_eq!(
            (old.spec, new.spec),
            (0, desired),
            "{desired}/{surge}/{unavail}"
        );
    }
}

#[test]
fn recreate_scales_down_waits_then_up() {
    let old = [rs("a", 0, 3, 3), rs("b", 1, 0, 0)];
    assert_eq!(
        recreate_step(&old),
        RecreateStep::ScaleDownOld(vec!["a".into()])
    );
    let mut waiting = rs("a", 0, 0, 0);
    waiting.replicas = 2;
    assert_eq!(recreate_step(&[waiting]), RecreateStep::WaitForOldPods);
    assert_eq!(recreate_step(&[rs("a", 0, 0, 0)]), RecreateStep::ScaleUpNew);
    assert_eq!(recreate_step(&[]), RecreateStep::ScaleUpNew);
}

#[test]
fn history_cleanup_deletes_oldest_idle_beyond_limit() {
    let mut old: Vec<RsState> = (1..=5)
        .map(|i| {
            let mut r = rs(&format!("r{i}"), i, 0, 0);
            r.revision = i;
            r
        })
        .collect();
    assert_eq!(history_to_delete(2, &old), vec!["r1", "r2", "r3"]);
    assert_eq!(history_to_delete(10, &old), Vec::<String>::new());
    // Still running pods: kept, and it still counts towards the limit.
    old[0].replicas = 1;
    assert_eq!(history_to_delete(2, &old), vec!["r2", "r3"]);
    // Being deleted: not counted; the busy r1 still takes a slot among the oldest.
    old[1].deleting = true;
    assert_eq!(history_to_delete(2, &old), vec!["r3"]);
    assert_eq!(history_to_delete(0, &old[2..]), vec!["r3", "r4", "r5"]);
}

#[test]
fn annotations_bump_revision_and_keep_history_on_rollback() {
    let d_ann = BTreeMap::from([
        ("kubernetes.io/change-cause".to_string(), "v1".to_string()),
        (REVISION.to_string(), "9".to_string()),
    ]);
    let mut ann = BTreeMap::new();
    assert!(set_new_rs_annotations(&d_ann, &mut ann, 1));
    assert_eq!(ann.get(REVISION).map(String::as_str), Some("1"));
    assert_eq!(
        ann.get("kubernetes.io/change-cause").map(String::as_str),
        Some("v1")
    );
    assert!(!ann.contains_key(REVISION_HISTORY));
    assert!(!set_new_rs_annotations(&d_ann, &mut ann, 1), "idempotent");
    // Rolled back to: revision 3, old revision kept.
    assert!(set_new_rs_annotations(&d_ann, &mut ann, 3));
    assert_eq!(ann.get(REVISION).map(String::as_str), Some("3"));
    assert_eq!(ann.get(REVISION_HISTORY).map(String::as_str), Some("1"));
    assert!(set_new_rs_annotations(&d_ann, &mut ann, 5));
    assert_eq!(ann.get(REVISION_HISTORY).map(String::as_str), Some("1,3"));
    // Never lowered.
    assert!(!set_new_rs_annotations(&d_ann, &mut ann, 2));
    assert_eq!(ann.get(REVISION).map(String::as_str), Some("5"));
}

#[test]
fn scaling_events_and_proportional_scaling() {
    let mut a = rs("a", 0, 3, 3);
    a.desired_annotation = Some(3);
    assert!(!is_scaling_event(3, std::slice::from_ref(&a)));
    assert!(is_scaling_event(5, std::slice::from_ref(&a)));

    // One active RS: it takes the new size.
    assert_eq!(
        proportional_scale(5, 2, true, 3, &[a.clone(), rs("b", 1, 0, 0)], Some(1)),
        vec![("a".to_string(), 5)]
    );
    // Mid-rollout 10 -> 20 (surge 25%: 3 -> 5): RSs of 8 and 5 (max annotation 13) grow
    // in proportion to 25 pods in all.
    let mut old = rs("old", 0, 8, 8);
    old.max_annotation = Some(13);
    let mut new = rs("new", 10, 5, 0);
    new.max_annotation = Some(13);
    let out = proportional_scale(20, 5, true, 13, &[old, new], Some(1));
    let sizes: BTreeMap<String, i32> = out.into_iter().collect();
    assert_eq!(sizes.values().sum::<i32>(), 25);
    assert_eq!(sizes["old"], 15);
    assert_eq!(sizes["new"], 10);
    // Scaling to zero empties everything.
    let out = proportional_scale(0, 0, true, 13, &[rs("x", 0, 8, 8), rs("y", 1, 5, 5)], None);
    assert!(out.iter().all(|(_, s)| *s == 0) && out.len() == 2);
}

#[test]
fn status_counts_and_conditions() {
    let d = deploy(3, Some(IntOrString::Int(1)), Some(IntOrString::Int(0)));
    let mut old = rs("web-old", 0, 1, 1);
    old.replicas = 2;
    let new = rs("web-new", 10, 3, 2);
    let now = ts(100);
    let s = calculate_status(&d, &[old.clone(), new.clone()], Some(&new), now);
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(s.replicas, Some(5));
    assert_eq!(s.updated_replicas, Some(3));
    assert_eq!(s.ready_replicas, Some(3));
    assert_eq!(s.available_replicas, Some(3));
    assert_eq!(s.unavailable_replicas, Some(1));
    let av = condition(&s, AVAILABLE).unwrap();
    assert_eq!(
        (av.status.as_str(), av.reason.as_deref()),
        ("True", Some(MIN_AVAILABLE))
    );
    assert_eq!(
        av.message.as_deref(),
        Some("Deployment has minimum availability.")
    );
    assert!(!is_complete(&d, &s));

    let lonely = rs("web-new", 10, 3, 1);
    let s = calculate_status(&d, std::slice::from_ref(&lonely), Some(&lonely), now);
    let av = condition(&s, AVAILABLE).unwrap();
    assert_eq!(
        (av.status.as_str(), av.reason.as_deref()),
        ("False", Some(MIN_UNAVAILABLE))
    );
}

#[test]
fn progressing_condition_follows_upstream() {
    let mut d = deploy(3, None, None);
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(60);
    let new = rs("web-1", 0, 3, 1);
    // First progress: ReplicaSetUpdated, requeue for the deadline.
    let mut s = calculate_status(&d, std::slice::from_ref(&new), Some(&new), ts(0));
    let requeue = rollout_progress(&d, &mut s, Some("web-1"), ts(0));
    let p = condition(&s, PROGRESSING).unwrap().clone();
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("True", Some(RS_UPDATED))
    );
    assert_eq!(
        p.message.as_deref(),
        Some("ReplicaSet \"web-1\" is progressing.")
    );
    assert_eq!(requeue, Some(61));
    // No progress past the deadline: timed out.
    d.status = Some(s.clone());
    let mut s2 = calculate_status(&d, std::slice::from_ref(&new), Some(&new), ts(100));
    assert_eq!(rollout_progress(&d, &mut s2, Some("web-1"), ts(100)), None);
    let p = condition(&s2, PROGRESSING).unwrap();
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("False", Some(TIMED_OUT))
    );
    assert_eq!(
        p.message.as_deref(),
        Some("ReplicaSet \"web-1\" has timed out progressing.")
    );
    // Everything available: NewReplicaSetAvailable.
    let done = rs("web-1", 0, 3, 3);
    let mut s3 = calculate_status(&d, std::slice::from_ref(&done), Some(&done), ts(200));
    rollout_progress(&d, &mut s3, Some("web-1"), ts(200));
    let p = condition(&s3, PROGRESSING).unwrap();
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("True", Some(NEW_RS_AVAILABLE))
    );
    assert_eq!(
        p.message.as_deref(),
        Some("ReplicaSet \"web-1\" has successfully progressed.")
    );
    assert!(is_complete(&d, &s3));
    // Rolled back to an older ReplicaSet right after: progress is tracked again.
    // (The first sync after the undo saw none of its pods yet.)
    d.status = Some(DeploymentStatus {
        updated_replicas: Some(0),
        ..s3
    });
    let old = rs("web-1", 0, 2, 2);
    let back = rs("web-0", 1, 2, 1);
    let mut s4 = calculate_status(&d, &[old, back.clone()], Some(&back), ts(300));
    rollout_progress(&d, &mut s4, Some("web-0"), ts(300));
    let p = condition(&s4, PROGRESSING).unwrap();
    assert_eq!(p.reason.as_deref(), Some(RS_UPDATED), "{p:?}");
}

#[test]
fn paused_condition_is_unknown() {
    let mut d = deploy(3, None, None);
    d.spec.as_mut().unwrap().paused = Some(true);
    let mut s = DeploymentStatus::default();
    paused_condition(&d, &mut s, ts(0));
    let p = condition(&s, PROGRESSING).unwrap();
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("Unknown", Some(PAUSED))
    );
    d.spec.as_mut().unwrap().paused = Some(false);
    paused_condition(&d, &mut s, ts(1));
    let p = condition(&s, PROGRESSING).unwrap();
    assert_eq!(p.reason.as_deref(), Some(RESUMED));
    assert_eq!(p.message.as_deref(), Some("Deployment is resumed"));
}
