//! The CronJob controller: creates Jobs on a cron schedule (upstream
//! `pkg/controller/cronjob`, the v2 controller).
//!
//! Built on `kube::runtime::Controller`: CronJobs are the primary resource, their Jobs are
//! watched through `.owns()`. A reconcile first folds the owned Jobs into `status.active` /
//! `lastSuccessfulTime` and trims the history, then starts the most recent missed run (if any,
//! subject to `startingDeadlineSeconds`, `suspend` and `concurrencyPolicy`) and requeues itself
//! for the next schedule time.
//!
//! Schedules are parsed by [`crate::api::validation::cron`] (the validator's parser). Time zones:
//! `timeZone` (or a `TZ=`/`CRON_TZ=` prefix) may be any IANA name found in the host's
//! `/usr/share/zoneinfo` (read through `jiff`'s TZif parser); without one, UTC.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike as _, NaiveDate, NaiveDateTime, Timelike as _};
use futures::StreamExt as _;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tracing::{debug, info};

use super::job::finished_condition;
use crate::api::validation::cron::{parse_schedule, Schedule};
use crate::events::{Involved, Recorder};

/// Annotation on created Jobs: the scheduled time, RFC 3339 in the CronJob's zone.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// More missed runs than this get a warning event, as upstream.
const TOO_MANY_MISSED: usize = 100;
/// Bound on the search for missed runs (about two months of `* * * * *`).
const MAX_ITERATIONS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: Client,
    events: Recorder,
    clock: Clock,
}

/// The time schedules are read against: the wall clock, or one that runs `scale` times faster
/// from the moment the controller starts (`wkube up --cronjob-time-scale`, so that tests see
/// several `* * * * *` activations in seconds). Only scheduling reads it; the Jobs' own
/// timestamps stay real.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start_ms: i64,
    scale: u32,
}

impl Clock {
    pub fn scaled(scale: u32) -> Self {
        Clock {
            start_ms: chrono::Utc::now().timestamp_millis(),
            scale: scale.max(1),
        }
    }

    /// Unix seconds on this clock.
    fn now(&self) -> i64 {
        let elapsed = chrono::Utc::now().timestamp_millis() - self.start_ms;
        (self.start_ms + elapsed * i64::from(self.scale)) / 1000
    }

    /// The real wait until `seconds` have passed on this clock.
    fn real_wait(&self, seconds: i64) -> Duration {
        Duration::from_millis((seconds.max(0) as u64) * 1000 / u64::from(self.scale))
    }
}

/// Runs the CronJob controller until `shutdown` completes.
pub async fn run(
    client: Client,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let shutdown = super::sync_shutdown(shutdown);
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        events: Recorder::new(client.clone(), "cronjob-controller"),
        clock,
    });
    info!("cronjob controller started");
    Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client), watcher::Config::default())
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|res| async move {
        if let Err(e) = res {
            debug!(error = %e, "cronjob reconcile failed");
        }
    })
    .await;
}

fn error_policy(_cj: Arc<CronJob>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    debug!(error = %err, "cronjob requeued");
    Action::requeue(Duration::from_secs(2))
}

// ---------------------------------------------------------------------------------------------
// Schedules in a time zone

/// A schedule with the zone its fields are read in.
#[derive(Debug, Clone)]
pub struct ZonedSchedule {
    pub schedule: Schedule,
    pub zone: jiff::tz::TimeZone,
}

/// Loads an IANA zone from the host's zoneinfo; `UTC` and `Etc/UTC` need no files.
pub fn load_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    if matches!(name, "UTC" | "Etc/UTC" | "") {
        return Ok(jiff::tz::TimeZone::UTC);
    }
    if name.contains("..") || name.starts_with('/') {
        return Err(format!("unknown time zone {name}"));
    }
    let dir = std::env::var("ZONEINFO").unwrap_or_else(|_| "/usr/share/zoneinfo".into());
    let data = std::fs::read(std::path::Path::new(&dir).join(name))
        .map_err(|_| format!("unknown time zone {name}"))?;
    jiff::tz::TimeZone::tzif(name, &data).map_err(|e| format!("invalid time zone {name}: {e}"))
}

/// Parses `spec.schedule` with `spec.timeZone` (or the schedule's `TZ=` prefix).
pub fn zoned_schedule(spec: &str, time_zone: Option<&str>) -> Result<ZonedSchedule, String> {
    let schedule = parse_schedule(spec)?;
    let prefix_zone = spec
        .strip_prefix("CRON_TZ=")
        .or_else(|| spec.strip_prefix("TZ="))
        .and_then(|rest| rest.split_whitespace().next());
    let zone = load_zone(time_zone.or(prefix_zone).unwrap_or("UTC"))?;
    Ok(ZonedSchedule { schedule, zone })
}

fn to_naive(dt: jiff::civil::DateTime) -> Option<NaiveDateTime> {
    NaiveDate::from_ymd_opt(dt.year().into(), dt.month() as u32, dt.day() as u32)?.and_hms_opt(
        dt.hour() as u32,
        dt.minute() as u32,
        dt.second() as u32,
    )
}

fn to_civil(t: NaiveDateTime) -> Option<jiff::civil::DateTime> {
    jiff::civil::DateTime::new(
        i16::try_from(t.year()).ok()?,
        t.month() as i8,
        t.day() as i8,
        t.hour() as i8,
        t.minute() as i8,
        t.second() as i8,
        0,
    )
    .ok()
}

impl ZonedSchedule {
    /// The first activation strictly after `t` (unix seconds). Wall-clock times skipped by a
    /// DST gap run at the first instant after it; repeated ones run once (the first).
    pub fn next_after(&self, t: i64) -> Option<i64> {
        let ts = jiff::Timestamp::from_second(t).ok()?;
        let mut local = to_naive(self.zone.to_datetime(ts))?;
        for _ in 0..1000 {
            let next = self.schedule.next_after(local)?;
            let at = self
                .zone
                .to_ambiguous_timestamp(to_civil(next)?)
                .compatible()
                .ok()?
                .as_second();
            if at > t {
                return Some(at);
            }
            local = next;
        }
        None
    }

    /// RFC 3339 of `t` in this zone (the scheduled-timestamp annotation).
    pub fn format(&self, t: i64) -> String {
        jiff::Timestamp::from_second(t)
            .map(|ts| {
                ts.to_zoned(self.zone.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            })
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Pure decisions

/// Upstream's `mostRecentScheduleTime`: the latest activation in `(earliest, now]` and how many
/// there were. `earliest` is lastScheduleTime (else creation), moved up to
/// `now - startingDeadlineSeconds` when that is later.
pub fn most_recent_schedule(
    sched: &ZonedSchedule,
    last_schedule: Option<i64>,
    created: i64,
    starting_deadline: Option<i64>,
    now: i64,
) -> (Option<i64>, usize) {
    let mut earliest = last_schedule.unwrap_or(created);
    if let Some(d) = starting_deadline {
        earliest = earliest.max(now - d);
    }
    let mut most_recent = None;
    let mut count = 0;
    let mut t = earliest;
    while let Some(next) = sched.next_after(t) {
        if next > now {
            break;
        }
        count += 1;
        most_recent = Some(next);
        t = next;
        if count >= MAX_ITERATIONS {
            // Skip ahead: only the most recent run matters, the count is "too many" anyway.
            let (recent, _) = most_recent_schedule(sched, None, now - 7 * 86_400, None, now);
            return (recent.or(most_recent), count);
        }
    }
    (most_recent, count)
}

/// What to do about the most recent due activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is due (or it was already started).
    Wait,
    /// Due, but later than `startingDeadlineSeconds` allows.
    TooLate { scheduled: i64 },
    /// Due, but a previous Job still runs and the policy is Forbid.
    Forbidden { scheduled: i64 },
    /// Start a Job for `scheduled`, first deleting the active ones when `replace`.
    Start { scheduled: i64, replace: bool },
}

pub struct Inputs<'a> {
    pub suspend: bool,
    pub concurrency_policy: &'a str,
    pub starting_deadline: Option<i64>,
    pub last_schedule: Option<i64>,
    pub most_recent: Option<i64>,
    pub active: usize,
    pub now: i64,
}

/// Upstream's `syncCronJob` decision after the Jobs were reconciled.
pub fn decide(i: &Inputs<'_>) -> Decision {
    let Some(scheduled) = i.most_recent else {
        return Decision::Wait;
    };
    if i.suspend || i.last_schedule == Some(scheduled) {
        return Decision::Wait;
    }
    if let Some(d) = i.starting_deadline {
        if scheduled + d < i.now {
            return Decision::TooLate { scheduled };
        }
    }
    match i.concurrency_policy {
        "Forbid" if i.active > 0 => Decision::Forbidden { scheduled },
        "Replace" => Decision::Start {
            scheduled,
            replace: i.active > 0,
        },
        _ => Decision::Start {
            scheduled,
            replace: false,
        },
    }
}

/// Job name for an activation: `<cronjob>-<minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: i64) -> String {
    format!("{cronjob}-{}", scheduled.div_euclid(60))
}

/// A finished child Job, for history cleanup.
#[derive(Debug, Clone)]
pub struct Finished {
    pub name: String,
    pub start: Option<i64>,
    pub succeeded: bool,
}

/// The finished Jobs beyond the history limits, oldest first (by start time, then name).
pub fn history_to_delete(
    mut finished: Vec<Finished>,
    successful_limit: Option<i32>,
    failed_limit: Option<i32>,
) -> Vec<String> {
    finished.sort_by(|a, b| (a.start, &a.name).cmp(&(b.start, &b.name)));
    let mut out = Vec::new();
    for (ok, limit) in [(true, successful_limit), (false, failed_limit)] {
        let Some(limit) = limit else { continue };
        let of_kind: Vec<&Finished> = finished.iter().filter(|f| f.succeeded == ok).collect();
        let excess = of_kind.len().saturating_sub(limit.max(0) as usize);
        out.extend(of_kind[..excess].iter().map(|f| f.name.clone()));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reconcile

fn time(t: i64) -> Time {
    Time(jiff::Timestamp::from_second(t).unwrap_or_default())
}

fn unix(t: &Time) -> i64 {
    t.0.as_second()
}

async fn event(ctx: &Ctx, cj: &CronJob, type_: EventType, reason: &str, note: String) {
    let involved = Involved::of(cj);
    match type_ {
        EventType::Normal => ctx.events.normal(&involved, reason, &note).await,
        EventType::Warning => ctx.events.warning(&involved, reason, &note).await,
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// The Job for one activation (upstream's `getJobFromTemplate2`).
pub fn job_for(cj: &CronJob, sched: &ZonedSchedule, scheduled: i64) -> Job {
    let spec = cj.spec.clone().unwrap_or_default();
    let template = spec.job_template;
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), sched.format(scheduled));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&cj.name_any(), scheduled)),
            namespace: cj.namespace(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: cj.name_any(),
                uid: cj.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

async fn delete_job(jobs: &Api<Job>, name: &str) -> Result<(), Error> {
    Ok(super::delete_background(jobs, name).await?)
}

#[tracing::instrument(skip_all, fields(cronjob = %cached.name_any(), ns = cached.namespace().unwrap_or_default()))]
async fn reconcile(cached: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let cronjobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(mut cj) = cronjobs.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = cj.uid().unwrap_or_default();
    let spec = cj.spec.clone().unwrap_or_default();
    let old_status = cj.status.clone().unwrap_or_default();
    let mut status = old_status.clone();
    let now_s = ctx.clock.now();

    // 1. Fold the owned Jobs into the status.
    let children: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == uid)
        })
        .collect();
    let mut active: Vec<ObjectReference> = status.active.clone().unwrap_or_default();
    let mut finished: Vec<Finished> = Vec::new();
    for j in &children {
        let in_active = active.iter().any(|r| r.uid == j.metadata.uid);
        let jstatus = j.status.clone().unwrap_or_default();
        match finished_condition(&jstatus) {
            Some(cond) => {
                let ok = cond.type_ == "Complete";
                if in_active {
                    active.retain(|r| r.uid != j.metadata.uid);
                    event(
                        &ctx,
                        &cj,
                        EventType::Normal,
                        "SawCompletedJob",
                        format!(
                            "Saw completed job: {}, condition: {}",
                            j.name_any(),
                            cond.type_
                        ),
                    )
                    .await;
                }
                if ok {
                    if let Some(done) = &jstatus.completion_time {
                        if status
                            .last_successful_time
                            .as_ref()
                            .is_none_or(|t| unix(t) < unix(done))
                        {
                            status.last_successful_time = Some(done.clone());
                        }
                    }
                }
                if j.metadata.deletion_timestamp.is_none() {
                    finished.push(Finished {
                        name: j.name_any(),
                        start: jstatus.start_time.as_ref().map(unix),
                        succeeded: ok,
                    });
                }
            }
            None if !in_active && j.metadata.deletion_timestamp.is_none() => {
                active.push(job_ref(j))
            }
            None => {}
        }
    }
    // Active references whose Job is gone.
    let before = active.len();
    active.retain(|r| children.iter().any(|j| j.metadata.uid == r.uid));
    if active.len() != before {
        event(
            &ctx,
            &cj,
            EventType::Normal,
            "MissingJob",
            "Active job went missing".into(),
        )
        .await;
    }

    // 2. History limits.
    for victim in history_to_delete(
        finished,
        spec.successful_jobs_history_limit,
        spec.failed_jobs_history_limit,
    ) {
        delete_job(&jobs_api, &victim).await?;
        event(
            &ctx,
            &cj,
            EventType::Normal,
            "SuccessfulDelete",
            format!("Deleted job {victim}"),
        )
        .await;
    }

    // 3. Scheduling.
    let sched = match zoned_schedule(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => Some(s),
        Err(e) => {
            let reason = if e.contains("time zone") {
                "UnknownTimeZone"
            } else {
                "UnparseableSchedule"
            };
            event(
                &ctx,
                &cj,
                EventType::Warning,
                reason,
                format!("invalid schedule: {} : {e}", spec.schedule),
            )
            .await;
            None
        }
    };
    let mut requeue = None;
    if let Some(sched) = &sched {
        let created = cj
            .metadata
            .creation_timestamp
            .as_ref()
            .map(unix)
            .unwrap_or(now_s);
        let last = status.last_schedule_time.as_ref().map(unix);
        let (most_recent, missed) =
            most_recent_schedule(sched, last, created, spec.starting_deadline_seconds, now_s);
        if missed > TOO_MANY_MISSED {
            event(
                &ctx,
                &cj,
                EventType::Warning,
                "TooManyMissedTimes",
                format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
            )
            .await;
        }
        let decision = decide(&Inputs {
            suspend: spec.suspend == Some(true),
            concurrency_policy: spec.concurrency_policy.as_deref().unwrap_or("Allow"),
            starting_deadline: spec.starting_deadline_seconds,
            last_schedule: last,
            most_recent,
            active: active.len(),
            now: now_s,
        });
        match decision {
            Decision::Wait => {}
            Decision::TooLate { scheduled } => {
                event(
                    &ctx,
                    &cj,
                    EventType::Warning,
                    "MissSchedule",
                    format!(
                        "Missed scheduled time to start a job: {}",
                        sched.format(scheduled)
                    ),
                )
                .await;
            }
            Decision::Forbidden { scheduled } => {
                debug!(
                    scheduled,
                    "not starting: the previous run is active and concurrencyPolicy is Forbid"
                );
                event(
                    &ctx,
                    &cj,
                    EventType::Normal,
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                )
                .await;
            }
            Decision::Start { scheduled, replace } => {
                if replace {
                    for r in std::mem::take(&mut active) {
                        let jname = r.name.clone().unwrap_or_default();
                        delete_job(&jobs_api, &jname).await?;
                        event(
                            &ctx,
                            &cj,
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("Deleted job {jname}"),
                        )
                        .await;
                    }
                }
                let job = job_for(&cj, sched, scheduled);
                match jobs_api.create(&PostParams::default(), &job).await {
                    Ok(created) => {
                        event(
                            &ctx,
                            &cj,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("Created job {}", created.name_any()),
                        )
                        .await;
                        if !active.iter().any(|r| r.uid == created.metadata.uid) {
                            active.push(job_ref(&created));
                        }
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        // Already created by an earlier reconcile: adopt it when it is ours.
                        debug!(job = %job.name_any(), "job already exists");
                    }
                    Err(e) => {
                        event(
                            &ctx,
                            &cj,
                            EventType::Warning,
                            "FailedCreate",
                            format!("Error creating job: {e}"),
                        )
                        .await;
                        return Err(e.into());
                    }
                }
                status.last_schedule_time = Some(time(scheduled));
            }
        }
        if spec.suspend != Some(true) {
            requeue = sched
                .next_after(now_s)
                .map(|next| ctx.clock.real_wait(next - now_s) + Duration::from_millis(100));
        }
    }

    status.active = (!active.is_empty()).then_some(active);
    if status != old_status {
        cj.status = Some(CronJobStatus { ..status });
        cronjobs
            .replace_status(&name, &PostParams::default(), &cj)
            .await?;
    }
    Ok(match requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix_of(s: &str) -> i64 {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
            .timestamp()
    }

    fn utc(spec: &str) -> ZonedSchedule {
        zoned_schedule(spec, None).unwrap()
    }

    #[test]
    fn most_recent_missed_run() {
        let s = utc("*/10 * * * *");
        let created = unix_of("2024-01-01 10:03");
        let now = unix_of("2024-01-01 10:35");
        let (recent, n) = most_recent_schedule(&s, None, created, None, now);
        assert_eq!((recent, n), (Some(unix_of("2024-01-01 10:30")), 3));
        // Already ran at 10:30: nothing new.
        let (recent, n) = most_recent_schedule(&s, recent, created, None, now);
        assert_eq!((recent, n), (None, 0));
        // A starting deadline narrows the window.
        let (recent, n) = most_recent_schedule(&s, None, created, Some(120), now);
        assert_eq!((recent, n), (None, 0));
        let (recent, n) = most_recent_schedule(&s, None, created, Some(600), now);
        assert_eq!((recent, n), (Some(unix_of("2024-01-01 10:30")), 1));
        // Exactly at the activation counts.
        let (recent, _) =
            most_recent_schedule(&s, None, created, None, unix_of("2024-01-01 10:10"));
        assert_eq!(recent, Some(unix_of("2024-01-01 10:10")));
    }

    #[test]
    fn many_missed_runs_still_find_the_latest() {
        let s = utc("* * * * *");
        let created = unix_of("2023-01-01 00:00");
        let now = unix_of("2024-01-01 00:00") + 30;
        let (recent, n) = most_recent_schedule(&s, None, created, None, now);
        assert_eq!(recent, Some(unix_of("2024-01-01 00:00")));
        assert!(n > TOO_MANY_MISSED);
    }

    fn inputs(policy: &str) -> Inputs<'_> {
        Inputs {
            suspend: false,
            concurrency_policy: policy,
            starting_deadline: None,
            last_schedule: None,
            most_recent: Some(1000),
            active: 1,
            now: 1030,
        }
    }

    #[test]
    fn concurrency_policies() {
        assert_eq!(
            decide(&inputs("Allow")),
            Decision::Start {
                scheduled: 1000,
                replace: false
            }
        );
        assert_eq!(
            decide(&inputs("Forbid")),
            Decision::Forbidden { scheduled: 1000 }
        );
        assert_eq!(
            decide(&Inputs {
                active: 0,
                ..inputs("Forbid")
            }),
            Decision::Start {
                scheduled: 1000,
                replace: false
            }
        );
        assert_eq!(
            decide(&inputs("Replace")),
            Decision::Start {
                scheduled: 1000,
                replace: true
            }
        );
    }

    #[test]
    fn suspend_deadline_and_already_started() {
        assert_eq!(
            decide(&Inputs {
                suspend: true,
                ..inputs("Allow")
            }),
            Decision::Wait
        );
        assert_eq!(
            decide(&Inputs {
                starting_deadline: Some(10),
                ..inputs("Allow")
            }),
            Decision::TooLate { scheduled: 1000 }
        );
        assert_eq!(
            decide(&Inputs {
                last_schedule: Some(1000),
                ..inputs("Allow")
            }),
            Decision::Wait
        );
        assert_eq!(
            decide(&Inputs {
                most_recent: None,
                ..inputs("Allow")
            }),
            Decision::Wait
        );
    }

    #[test]
    fn job_names_use_minutes_since_epoch() {
        assert_eq!(
            job_name("backup", unix_of("2024-01-01 00:00")),
            "backup-28401120"
        );
    }

    #[test]
    fn history_limits_delete_the_oldest() {
        let f = |name: &str, start: i64, ok: bool| Finished {
            name: name.into(),
            start: Some(start),
            succeeded: ok,
        };
        let jobs = vec![
            f("s3", 30, true),
            f("s1", 10, true),
            f("f1", 15, false),
            f("s2", 20, true),
            f("f2", 25, false),
        ];
        assert_eq!(
            history_to_delete(jobs.clone(), Some(1), Some(1)),
            vec!["s1", "s2", "f1"]
        );
        assert_eq!(
            history_to_delete(jobs.clone(), Some(3), None),
            Vec::<String>::new()
        );
        assert_eq!(history_to_delete(jobs, Some(0), Some(0)).len(), 5);
    }

    #[test]
    fn time_zones() {
        // Fixed zone and UTC.
        let s = utc("0 9 * * *");
        assert_eq!(
            s.next_after(unix_of("2024-01-01 09:00")),
            Some(unix_of("2024-01-02 09:00"))
        );
        assert_eq!(
            s.format(unix_of("2024-01-01 09:00")),
            "2024-01-01T09:00:00+00:00"
        );
        assert!(zoned_schedule("0 9 * * *", Some("No/Such_Zone")).is_err());
        if std::path::Path::new("/usr/share/zoneinfo/Europe/Berlin").exists() {
            let s = zoned_schedule("0 9 * * *", Some("Europe/Berlin")).unwrap();
            // Winter: UTC+1; summer: UTC+2.
            assert_eq!(
                s.next_after(unix_of("2024-01-01 00:00")),
                Some(unix_of("2024-01-01 08:00"))
            );
            assert_eq!(
                s.next_after(unix_of("2024-07-01 00:00")),
                Some(unix_of("2024-07-01 07:00"))
            );
            // 02:30 does not exist on 2024-03-31: runs at 03:30 local (01:30 UTC).
            let s = zoned_schedule("30 2 * * *", Some("Europe/Berlin")).unwrap();
            assert_eq!(
                s.next_after(unix_of("2024-03-30 12:00")),
                Some(unix_of("2024-03-31 01:30"))
            );
            let s = zoned_schedule("TZ=Europe/Berlin 0 9 * * *", None).unwrap();
            assert_eq!(
                s.next_after(unix_of("2024-01-01 00:00")),
                Some(unix_of("2024-01-01 08:00"))
            );
        }
    }
}
