//! End-to-end: the Job and CronJob controllers inside `wkube up`, driven by the real kubectl.

mod common;

use std::time::Duration;

use common::{eventually, Cluster};
use serde_json::Value;

fn start() -> Cluster {
    let c = Cluster::start_with(&["--restart-backoff", "1", "--job-failure-backoff", "1"]);
    c.import_examples();
    c
}

fn job(name: &str, args: &[&str], spec: &str) -> String {
    let args: Vec<String> = args.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
  {spec}
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
        - name: main
          image: wkube.local/hello-rust:v1
          imagePullPolicy: Never
          args: [{}]
"#,
        args.join(", ")
    )
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&c.ok(&all)).unwrap_or(Value::Null)
}

fn job_pods(c: &Cluster, job: &str) -> Vec<Value> {
    let list = json(c, &["get", "pods", "-l", &format!("job-name={job}")]);
    list["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn job_with_completions_and_parallelism_completes() {
    let c = start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        &job(
            "three",
            &["--exit", "0"],
            "completions: 3\n  parallelism: 2",
        ),
    );
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/three",
        "--timeout=60s",
    ]);
    let table = c.ok(&["get", "jobs"]);
    let row = table.lines().find(|l| l.starts_with("three")).unwrap_or("");
    assert!(row.contains("3/3"), "{table}");
    let j = json(&c, &["get", "job", "three"]);
    let st = &j["status"];
    assert_eq!(st["succeeded"], 3, "{st}");
    assert!(st["failed"].as_i64().unwrap_or(0) == 0, "{st}");
    assert!(
        st["startTime"].is_string() && st["completionTime"].is_string(),
        "{st}"
    );
    assert!(st["uncountedTerminatedPods"]["succeeded"].is_null(), "{st}");
    let pods = job_pods(&c, "three");
    assert_eq!(pods.len(), 3, "{pods:?}");
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Succeeded");
        assert!(
            p["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("three-"),
            "{p}"
        );
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner["kind"], &owner["controller"]),
            (&"Job".into(), &true.into())
        );
        // Counted, so the tracking finalizer is gone.
        assert!(
            p["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty()),
            "{p}"
        );
    }
    // Counts stay right once the pods are gone.
    c.ok(&["delete", "pods", "-l", "job-name=three", "--wait=false"]);
    eventually(Duration::from_secs(30), || {
        job_pods(&c, "three").is_empty().then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let st = json(&c, &["get", "job", "three"])["status"].clone();
    assert_eq!(
        (st["succeeded"].as_i64(), st["failed"].as_i64().unwrap_or(0)),
        (Some(3), 0),
        "{st}"
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=three",
    ]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains("Completed"), "{events}");
}

#[test]
fn failing_job_hits_its_backoff_limit() {
    let c = start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        &job("boom", &["--exit", "1"], "backoffLimit: 2"),
    );
    c.ok(&[
        "wait",
        "--for=condition=failed",
        "job/boom",
        "--timeout=60s",
    ]);
    let j = json(&c, &["get", "job", "boom"]);
    let failed = j["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Failed").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{j}");
    assert_eq!(j["status"]["failed"], 3, "{j}");
    assert_eq!(j["status"]["active"].as_i64().unwrap_or(0), 0, "{j}");
    // No new pods after failing.
    std::thread::sleep(Duration::from_secs(2));
    let pods = job_pods(&c, "boom");
    assert_eq!(pods.len(), 3);
    // Replacements waited 1 s, then 2 s (the failure back-off): the pods span 3 s or more.
    let mut created: Vec<i64> = pods
        .iter()
        .filter_map(|p| p["metadata"]["creationTimestamp"].as_str())
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp())
        .collect();
    created.sort();
    assert!(created[2] - created[0] >= 3, "pods created at {created:?}");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=boom",
    ]);
    assert!(events.contains("BackoffLimitExceeded"), "{events}");
}

#[test]
fn indexed_job_and_job_from_cronjob() {
    let c = start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        &job(
            "idx",
            &["--exit", "0"],
            "completions: 3\n  parallelism: 3\n  completionMode: Indexed",
        ),
    );
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/idx",
        "--timeout=60s",
    ]);
    let j = json(&c, &["get", "job", "idx"]);
    assert_eq!(j["status"]["completedIndexes"], "0-2", "{j}");
    let mut indexes: Vec<String> = job_pods(&c, "idx")
        .iter()
        .map(|p| {
            p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);

    // A CronJob that will not fire during the test; a Job made from it by hand runs.
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
spec:
  schedule: "0 3 1 1 *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: main
              image: wkube.local/hello-rust:v1
              imagePullPolicy: Never
              args: ["--exit", "0"]
"#,
    );
    c.ok(&["create", "job", "--from=cronjob/nightly", "manual"]);
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/manual",
        "--timeout=60s",
    ]);
    let table = c.ok(&["get", "jobs"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("manual") && l.contains("1/1")),
        "{table}"
    );
    let cj = json(&c, &["get", "cronjob", "nightly"]);
    assert!(cj["status"]["lastScheduleTime"].is_null(), "{cj}");
}

#[test]
fn suspended_jobs_wait_and_finished_jobs_expire() {
    let c = start();
    c.ok_stdin(
        &["apply", "-f", "-"],
        &job(
            "later",
            &["--exit", "0"],
            "suspend: true\n  ttlSecondsAfterFinished: 1",
        ),
    );
    let st = eventually(Duration::from_secs(30), || {
        let j = json(&c, &["get", "job", "later"]);
        let suspended = j["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Suspended" && c["status"] == "True")
        });
        suspended.then_some(j["status"].clone())
    });
    assert!(st["startTime"].is_null(), "{st}");
    assert!(job_pods(&c, "later").is_empty());
    c.ok(&[
        "patch",
        "job",
        "later",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/later",
        "--timeout=60s",
    ]);
    // ttlSecondsAfterFinished: the Job and its pods go.
    eventually(Duration::from_secs(30), || {
        let out = c.kubectl(&["get", "job", "later"]);
        (!out.status.success()).then_some(())
    });
    eventually(Duration::from_secs(30), || {
        job_pods(&c, "later").is_empty().then_some(())
    });
}

/// `* * * * *` on a clock that runs 30 times faster (`--cronjob-time-scale`): a Job every two
/// seconds, each one named by its scheduled minute, and only the history limit kept.
#[test]
fn cronjob_fires_on_schedule_and_keeps_its_history_limit() {
    let c = Cluster::start_with(&[
        "--restart-backoff",
        "1",
        "--job-failure-backoff",
        "1",
        "--cronjob-time-scale",
        "30",
    ]);
    c.import_examples();
    c.ok_stdin(
        &["apply", "-f", "-"],
        r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: minutely
spec:
  schedule: "* * * * *"
  successfulJobsHistoryLimit: 2
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: main
              image: wkube.local/hello-rust:v1
              imagePullPolicy: Never
              args: ["--exit", "0"]
"#,
    );
    let mut seen = std::collections::BTreeSet::new();
    eventually(Duration::from_secs(90), || {
        let jobs = json(&c, &["get", "jobs"]);
        for j in jobs["items"].as_array().into_iter().flatten() {
            assert_eq!(
                j["metadata"]["ownerReferences"][0]["kind"], "CronJob",
                "{j}"
            );
            seen.insert(j["metadata"]["name"].as_str().unwrap_or("").to_string());
        }
        (seen.len() >= 4).then_some(())
    });
    // Names carry the scheduled minute (a busy machine may skip a minute, as upstream does
    // when it misses one, so only distinct whole minutes are required).
    let minutes: Vec<i64> = seen
        .iter()
        .filter_map(|n| n.strip_prefix("minutely-")?.parse().ok())
        .collect();
    assert_eq!(minutes.len(), seen.len(), "{seen:?}");
    assert!(minutes.windows(2).all(|w| w[1] > w[0]), "{minutes:?}");

    c.ok(&[
        "patch",
        "cronjob",
        "minutely",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    let cj = eventually(Duration::from_secs(30), || {
        let jobs = json(&c, &["get", "jobs"]);
        let items = jobs["items"].as_array().cloned().unwrap_or_default();
        let all_done = items.iter().all(|j| j["status"]["succeeded"] == 1);
        let cj = json(&c, &["get", "cronjob", "minutely"]);
        let settled = cj["status"]["active"].is_null();
        (items.len() == 2 && all_done && settled).then_some(cj)
    });
    assert!(cj["status"]["lastSuccessfulTime"].is_string(), "{cj}");
    assert!(cj["status"]["lastScheduleTime"].is_string(), "{cj}");
}
