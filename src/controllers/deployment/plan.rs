//! The pure half of the deployment controller: everything that decides, nothing that talks to
//! the API. Mirrors upstream's `pkg/controller/deployment` (`sync.go`, `rolling.go`,
//! `recreate.go`, `progress.go`) and `deployment/util`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";

/// Deployment annotations not copied onto its ReplicaSets (upstream `annotationsToSkip`).
const SKIPPED_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Upstream caps `revision-history` at this many characters.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";

// ---------------------------------------------------------------------------------------
// Hashing

const SAFE_ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Upstream's `rand.SafeEncodeString`: maps each byte onto consonants and digits that cannot
/// spell words.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| SAFE_ALPHANUMS[usize::from(b) % SAFE_ALPHANUMS.len()] as char)
        .collect()
}

fn fnv32a(h: &mut u32, bytes: &[u8]) {
    for b in bytes {
        *h ^= u32::from(*b);
        *h = h.wrapping_mul(0x0100_0193);
    }
}

/// The `pod-template-hash`: FNV-32a over the template's canonical JSON (k8s-openapi serializes
/// struct fields in a fixed order and maps sorted) plus the collision count, printed in
/// decimal and safe-encoded, as upstream's `ComputeHash`.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let json = serde_json::to_vec(template).unwrap_or_default();
    fnv32a(&mut h, &json);
    if let Some(c) = collision_count {
        fnv32a(&mut h, &(c as u32).to_le_bytes());
    }
    safe_encode(&h.to_string())
}

/// Template equality ignoring the `pod-template-hash` label (upstream `EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn strip(t: &PodTemplateSpec) -> serde_json::Value {
        let mut t = t.clone();
        let meta = t.metadata.get_or_insert_with(Default::default);
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(HASH_LABEL);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
        if meta == &Default::default() {
            t.metadata = None;
        }
        serde_json::to_value(&t).unwrap_or_default()
    }
    strip(a) == strip(b)
}

// ---------------------------------------------------------------------------------------
// Spec accessors with upstream's defaults (the API server does not default Deployments)

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

pub fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

pub fn history_limit(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
}

pub fn progress_deadline(d: &Deployment) -> Option<i64> {
    let secs = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    // Upstream treats MaxInt32 as "no deadline".
    (secs != i32::MAX).then_some(i64::from(secs))
}

pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

pub fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

pub fn selector(d: &Deployment) -> LabelSelector {
    d.spec
        .as_ref()
        .map(|s| s.selector.clone())
        .unwrap_or_default()
}

/// Upstream's `GetScaledValueFromIntOrPercent`: ints as they are, `"25%"` of `total`
/// rounded up or down.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(pct) = s.strip_suffix('%') else {
                return Err(format!(
                    "invalid value for IntOrString: invalid type: string is not a percentage: {s:?}"
                ));
            };
            let pct: i64 = pct
                .trim()
                .parse()
                .map_err(|_| format!("invalid value {s:?}: not a percentage"))?;
            let prod = pct * i64::from(total);
            let v = if round_up {
                (prod + 99).div_euclid(100)
            } else {
                prod.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// Upstream's `ResolveFenceposts`: (maxSurge rounded up, maxUnavailable rounded down); both
/// zero would deadlock a rollout, so then one pod may be unavailable.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let quarter = IntOrString::String("25%".into());
    let surge = scaled_value(max_surge.unwrap_or(&quarter), desired, true)?;
    let unavailable = scaled_value(max_unavailable.unwrap_or(&quarter), desired, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

fn rolling_params(d: &Deployment) -> (Option<&IntOrString>, Option<&IntOrString>) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    (
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
    )
}

/// `MaxSurge(d)`: 0 unless rolling.
pub fn max_surge(d: &Deployment) -> i32 {
    if is_recreate(d) {
        return 0;
    }
    let (s, u) = rolling_params(d);
    resolve_fenceposts(s, u, replicas(d))
        .map(|(s, _)| s)
        .unwrap_or(0)
}

/// `MaxUnavailable(d)`: 0 unless rolling, at most `replicas`.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let desired = replicas(d);
    if is_recreate(d) || desired == 0 {
        return 0;
    }
    let (s, u) = rolling_params(d);
    let u = resolve_fenceposts(s, u, desired)
        .map(|(_, u)| u)
        .unwrap_or(0);
    u.min(desired)
}

// ---------------------------------------------------------------------------------------
// ReplicaSet state

/// What the planner needs of a ReplicaSet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RsState {
    pub name: String,
    /// `spec.replicas`.
    pub spec: i32,
    /// `status.replicas`: pods that exist.
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub revision: i64,
    pub created: Option<Timestamp>,
    pub deleting: bool,
    pub generation: i64,
    pub observed_generation: i64,
    pub desired_annotation: Option<i32>,
    pub max_annotation: Option<i32>,
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

impl RsState {
    pub fn of(rs: &ReplicaSet) -> RsState {
        let status = rs.status.as_ref();
        RsState {
            name: rs.metadata.name.clone().unwrap_or_default(),
            spec: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            replicas: status.map(|s| s.replicas).unwrap_or(0),
            ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            available: status.and_then(|s| s.available_replicas).unwrap_or(0),
            revision: annotation(rs, REVISION)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
            created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            deleting: rs.metadata.deletion_timestamp.is_some(),
            generation: rs.metadata.generation.unwrap_or(0),
            observed_generation: status.and_then(|s| s.observed_generation).unwrap_or(0),
            desired_annotation: annotation(rs, DESIRED_REPLICAS).and_then(|v| v.parse().ok()),
            max_annotation: annotation(rs, MAX_REPLICAS).and_then(|v| v.parse().ok()),
        }
    }
}

/// Oldest first; ties by name (upstream `ReplicaSetsByCreationTimestamp`).
pub fn by_creation(a: &RsState, b: &RsState) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

/// The index of the "new" ReplicaSet: the oldest whose template equals the Deployment's.
pub fn find_new(d: &Deployment, rss: &[ReplicaSet]) -> Option<usize> {
    let want = template(d);
    let mut idx: Vec<usize> = (0..rss.len()).collect();
    idx.sort_by(|&a, &b| by_creation(&RsState::of(&rss[a]), &RsState::of(&rss[b])));
    idx.into_iter().find(|&i| {
        rss[i]
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, &want))
    })
}

pub fn max_revision(old: &[RsState]) -> i64 {
    old.iter().map(|r| r.revision).max().unwrap_or(0)
}

/// Upstream `SetNewReplicaSetAnnotations` (the part other than the replica annotations):
/// copies the Deployment's annotations, raises the revision (keeping a reused RS's old
/// revision in `revision-history`). Returns whether anything changed.
pub fn set_new_rs_annotations(
    d_annotations: &BTreeMap<String, String>,
    rs_annotations: &mut BTreeMap<String, String>,
    new_revision: i64,
) -> bool {
    let mut changed = false;
    for (k, v) in d_annotations {
        if SKIPPED_ANNOTATIONS.contains(&k.as_str()) {
            continue;
        }
        if rs_annotations.get(k) != Some(v) {
            rs_annotations.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    let old = rs_annotations.get(REVISION).cloned().unwrap_or_default();
    let old_int: i64 = if old.is_empty() {
        0
    } else {
        match old.parse() {
            Ok(v) => v,
            Err(_) => return changed,
        }
    };
    if old_int < new_revision {
        rs_annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if !old.is_empty() {
            let history = match rs_annotations.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => {
                    let mut parts: Vec<&str> = h.split(',').collect();
                    parts.push(&old);
                    let mut s = parts.join(",");
                    while s.len() > MAX_REVISION_HISTORY_CHARS {
                        match s.find(',') {
                            Some(i) => s = s[i + 1..].to_string(),
                            None => break,
                        }
                    }
                    s
                }
                _ => old.clone(),
            };
            rs_annotations.insert(REVISION_HISTORY.into(), history);
        }
    }
    changed
}

// ---------------------------------------------------------------------------------------
// Scaling decisions

/// Upstream `NewRSNewReplicas` for RollingUpdate: grow the new RS as far as `maxSurge`
/// allows, counting every RS's `spec.replicas`.
pub fn rolling_new_rs_replicas(desired: i32, surge: i32, all: &[RsState], new: &RsState) -> i32 {
    let current: i32 = all.iter().map(|r| r.spec).sum();
    let max_total = desired + surge;
    if current >= max_total {
        return new.spec;
    }
    let up = (max_total - current).min(desired - new.spec).max(0);
    new.spec + up
}

/// Upstream `reconcileOldReplicaSets` (with `cleanupUnhealthyReplicas` and
/// `scaleDownOldReplicaSetsForRollingUpdate`): the new sizes of the old RSs (only those that
/// change), keeping `desired - maxUnavailable` pods available by the RSs'
/// `status.availableReplicas`.
pub fn rolling_old_scale_down(
    desired: i32,
    unavailable: i32,
    old: &[RsState],
    new: Option<&RsState>,
) -> Vec<(String, i32)> {
    let old_count: i32 = old.iter().map(|r| r.spec).sum();
    if old_count == 0 {
        return vec![];
    }
    let new_spec = new.map(|n| n.spec).unwrap_or(0);
    let all_count = old_count + new_spec;
    let min_available = desired - unavailable;
    let new_unavailable = new.map(|n| n.spec - n.available).unwrap_or(0);
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return vec![];
    }
    let mut sorted: Vec<&RsState> = old.iter().collect();
    sorted.sort_by(|a, b| by_creation(a, b));
    let mut sizes: Vec<i32> = sorted.iter().map(|r| r.spec).collect();
    // Unhealthy replicas go first: removing them costs no availability.
    let mut cleaned = 0;
    for (i, rs) in sorted.iter().enumerate() {
        if cleaned >= max_scaled_down {
            break;
        }
        if rs.spec == 0 || rs.spec == rs.available {
            continue;
        }
        let down = (max_scaled_down - cleaned)
            .min(rs.spec - rs.available)
            .max(0);
        sizes[i] = rs.spec - down;
        cleaned += down;
    }
    // Then healthy ones, as far as availability allows.
    let available: i32 =
        old.iter().map(|r| r.available).sum::<i32>() + new.map(|n| n.available).unwrap_or(0);
    if available > min_available {
        let total = available - min_available;
        let mut scaled = 0;
        for size in sizes.iter_mut() {
            if scaled >= total {
                break;
            }
            if *size == 0 {
                continue;
            }
            let down = (*size).min(total - scaled);
            *size -= down;
            scaled += down;
        }
    }
    sorted
        .iter()
        .zip(sizes)
        .filter(|(r, s)| r.spec != *s)
        .map(|(r, s)| (r.name.clone(), s))
        .collect()
}

/// What a Recreate rollout does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecreateStep {
    /// Scale these old RSs to 0.
    ScaleDownOld(Vec<String>),
    /// Old RSs are at 0 but their pods are not gone yet.
    WaitForOldPods,
    /// Old pods are gone: create the new RS (if missing) and scale it to `replicas`.
    ScaleUpNew,
}

/// Upstream `rolloutRecreate`: old to zero, wait for their pods (`status.replicas`), new up.
pub fn recreate_step(old: &[RsState]) -> RecreateStep {
    let active: Vec<String> = old
        .iter()
        .filter(|r| r.spec > 0)
        .map(|r| r.name.clone())
        .collect();
    if !active.is_empty() {
        return RecreateStep::ScaleDownOld(active);
    }
    if old.iter().any(|r| r.replicas > 0) {
        return RecreateStep::WaitForOldPods;
    }
    RecreateStep::ScaleUpNew
}

/// Upstream `isScalingEvent`: an active RS was sized for a different `spec.replicas`.
pub fn is_scaling_event(desired: i32, active: &[RsState]) -> bool {
    active
        .iter()
        .filter(|r| r.spec > 0)
        .any(|r| r.desired_annotation.is_some_and(|v| v != desired))
}

/// Upstream `scale()` (the path taken for scaling events and paused Deployments): new
/// sizes for the RSs that change. `new` is the index of the new RS in `all`, if any.
pub fn proportional_scale(
    desired: i32,
    surge: i32,
    rolling: bool,
    status_replicas: i32,
    all: &[RsState],
    new: Option<usize>,
) -> Vec<(String, i32)> {
    let active: Vec<&RsState> = all.iter().filter(|r| r.spec > 0).collect();
    // FindActiveOrLatest.
    let single = match active.len() {
        0 => match new {
            Some(i) => Some(&all[i]),
            None => all.iter().max_by(|a, b| by_creation(a, b)),
        },
        1 => Some(active[0]),
        _ => None,
    };
    if let Some(rs) = single {
        if rs.spec == desired {
            return vec![];
        }
        return vec![(rs.name.clone(), desired)];
    }
    // IsSaturated: the new RS runs everything, the rest goes.
    if let Some(n) = new.map(|i| &all[i]) {
        if n.spec == desired && n.desired_annotation == Some(desired) && n.available == desired {
            return all
                .iter()
                .enumerate()
                .filter(|(i, r)| Some(*i) != new && r.spec != 0)
                .map(|(_, r)| (r.name.clone(), 0))
                .collect();
        }
    }
    if !rolling {
        return vec![];
    }
    let current: i32 = active.iter().map(|r| r.spec).sum();
    let allowed = if desired > 0 { desired + surge } else { 0 };
    let to_add = allowed - current;
    let mut sorted = active.clone();
    // Bigger first; ties: newer first when growing, older first when shrinking.
    sorted.sort_by(|a, b| {
        b.spec.cmp(&a.spec).then_with(|| {
            if to_add > 0 {
                by_creation(b, a)
            } else {
                by_creation(a, b)
            }
        })
    });
    let deployment_replicas = desired + surge;
    let mut added = 0;
    let mut sizes: Vec<i32> = sorted.iter().map(|r| r.spec).collect();
    if to_add != 0 {
        for (i, rs) in sorted.iter().enumerate() {
            if to_add == added {
                break;
            }
            let fraction = if desired == 0 {
                -rs.spec
            } else {
                let annotated = rs.max_annotation.unwrap_or(status_replicas);
                if annotated == 0 {
                    0
                } else {
                    let v =
                        f64::from(rs.spec) * f64::from(deployment_replicas) / f64::from(annotated);
                    v.round() as i32 - rs.spec
                }
            };
            let allowed_left = to_add - added;
            let p = if to_add > 0 {
                fraction.min(allowed_left)
            } else {
                fraction.max(allowed_left)
            };
            sizes[i] += p;
            added += p;
        }
        if let Some(first) = sizes.first_mut() {
            *first += to_add - added;
            if *first < 0 {
                *first = 0;
            }
        }
    }
    sorted
        .iter()
        .zip(sizes)
        .filter(|(r, s)| r.spec != *s)
        .map(|(r, s)| (r.name.clone(), s))
        .collect()
}

/// Upstream `cleanupDeployment`: the oldest (by revision) old RSs beyond
/// `revisionHistoryLimit` that have nothing left to do.
pub fn history_to_delete(limit: i32, old: &[RsState]) -> Vec<String> {
    let mut alive: Vec<&RsState> = old.iter().filter(|r| !r.deleting).collect();
    let diff = alive.len() as i64 - i64::from(limit.max(0));
    if diff <= 0 {
        return vec![];
    }
    alive.sort_by(|a, b| a.revision.cmp(&b.revision).then_with(|| by_creation(a, b)));
    alive
        .iter()
        .take(diff as usize)
        .filter(|r| r.replicas == 0 && r.spec == 0 && r.generation <= r.observed_generation)
        .map(|r| r.name.clone())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Status

pub fn condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream `SetDeploymentCondition`: nothing changes when status and reason are the same;
/// the transition time is kept when only the reason changes.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conds = s.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

/// Upstream `calculateStatus`: counts from the RSs, the Available condition.
pub fn calculate_status(
    d: &Deployment,
    all: &[RsState],
    new: Option<&RsState>,
    now: Timestamp,
) -> DeploymentStatus {
    let old = d.status.clone().unwrap_or_default();
    let available: i32 = all.iter().map(|r| r.available).sum();
    let total: i32 = all.iter().map(|r| r.spec).sum();
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|r| r.replicas).sum()),
        updated_replicas: Some(new.map(|n| n.replicas).unwrap_or(0)),
        ready_replicas: Some(all.iter().map(|r| r.ready).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut s,
            new_condition(
                AVAILABLE,
                "True",
                MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut s,
            new_condition(
                AVAILABLE,
                "False",
                MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    s
}

/// Upstream `DeploymentComplete`.
pub fn is_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let want = replicas(d);
    s.updated_replicas == Some(want)
        && s.replicas == Some(want)
        && s.available_replicas == Some(want)
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Upstream `DeploymentProgressing`: more updated, fewer old, more ready or available pods.
pub fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let upd = |s: &DeploymentStatus| s.updated_replicas.unwrap_or(0);
    let old_rs = |s: &DeploymentStatus| s.replicas.unwrap_or(0) - upd(s);
    upd(new) > upd(&old)
        || old_rs(new) < old_rs(&old)
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// Upstream `DeploymentTimedOut`: the Progressing condition was last updated longer than
/// the deadline ago.
pub fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(s, PROGRESSING) else {
        return false;
    };
    if c.reason.as_deref() == Some(TIMED_OUT) {
        return true;
    }
    let Some(from) = c.last_update_time.as_ref() else {
        return false;
    };
    now.as_second() > from.0.as_second() + deadline
}

/// Upstream `syncRolloutStatus`'s condition logic: updates Progressing in `s` (computed by
/// [`calculate_status`]) and says after how many seconds to look again for a deadline.
pub fn rollout_progress(
    d: &Deployment,
    s: &mut DeploymentStatus,
    new_rs: Option<&str>,
    now: Timestamp,
) -> Option<i64> {
    let deadline = progress_deadline(d)?;
    if paused(d) {
        return None;
    }
    let cur = condition(s, PROGRESSING).cloned();
    // A resync of a finished rollout estimates no progress; a new rollout (old pods around)
    // does, even when the condition still says the last one finished.
    let is_complete_cond = s.replicas == s.updated_replicas
        && cur
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    if is_complete_cond {
        return None;
    }
    let name = new_rs.unwrap_or_default();
    if is_complete(d, s) {
        set_condition(
            s,
            new_condition(
                PROGRESSING,
                "True",
                NEW_RS_AVAILABLE,
                format!("ReplicaSet \"{name}\" has successfully progressed."),
                now,
            ),
        );
        return None;
    }
    if is_progressing(d, s) {
        let mut c = new_condition(
            PROGRESSING,
            "True",
            RS_UPDATED,
            format!("ReplicaSet \"{name}\" is progressing."),
            now,
        );
        if let Some(cur) = &cur {
            if cur.status == "True" {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            remove_condition(s, PROGRESSING);
        }
        s.conditions.get_or_insert_with(Vec::new).push(c);
    } else if timed_out(d, s, now) {
        set_condition(
            s,
            new_condition(
                PROGRESSING,
                "False",
                TIMED_OUT,
                format!("ReplicaSet \"{name}\" has timed out progressing."),
                now,
            ),
        );
    }
    // requeueStuckDeployment: look again when the deadline would pass.
    let c = condition(s, PROGRESSING)?;
    if c.status != "True" {
        return None;
    }
    let from = c.last_update_time.as_ref()?.0.as_second();
    Some((from + deadline - now.as_second()).max(0) + 1)
}

/// Upstream `checkPausedConditions`: Progressing=Unknown while paused.
pub fn paused_condition(d: &Deployment, s: &mut DeploymentStatus, now: Timestamp) {
    if progress_deadline(d).is_none() {
        return;
    }
    let cur = condition(s, PROGRESSING);
    if cur.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
        return;
    }
    let paused_exists = cur.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
    if paused(d) && !paused_exists {
        set_condition(
            s,
            new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED,
                "Deployment is paused".into(),
                now,
            ),
        );
    } else if !paused(d) && paused_exists {
        set_condition(
            s,
            new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED,
                "Deployment is resumed".into(),
                now,
            ),
        );
    }
}
