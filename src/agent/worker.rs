//! One pod on this node, from its first container start to its removal: the kubelet's pod
//! worker, the same for wasm and Linux containers (the runtime is chosen per image).
//!
//! Init containers run one after another; then every container runs in its own loop that
//! applies the restart policy with the kubelet's exponential back-off. A status writer
//! publishes changes; a deletion stops the containers within the grace period and then
//! removes the pod object (grace 0, uid precondition) as the kubelet does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn, Instrument as _};

use super::image_pull;
use super::runtime_class;
use super::spec;
use super::status::{ContainerStatus, PodStatus, State};
use super::volumes;
use super::AgentContext;
use crate::events::Involved;
use crate::runtime::{ContainerSpec, ExitStatus, ResolvedImage};

/// Restarts reset their back-off after a container ran this long, as the kubelet does.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// What the pod watcher tells a worker: the latest object, or None when it is gone.
pub type PodUpdates = watch::Receiver<Option<Value>>;

struct Shared {
    status: Mutex<PodStatus>,
    changed: Notify,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut PodStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
        self.changed.notify_one();
    }
}

fn text(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Runs the pod until it is deleted.
pub async fn run(ctx: Arc<AgentContext>, mut updates: PodUpdates) {
    let Some(pod) = updates.borrow().clone() else {
        return;
    };
    let ns = text(&pod, "/metadata/namespace");
    let name = text(&pod, "/metadata/name");
    let uid = text(&pod, "/metadata/uid");
    let span = tracing::info_span!("pod", pod = %format!("{ns}/{name}"), uid = %uid);
    async move {
        let shared = Arc::new(Shared { status: Mutex::new(initial_status(&ctx, &pod)), changed: Notify::new() });
        let writer = tokio::spawn(write_status(ctx.clone(), ns.clone(), name.clone(), shared.clone()));
        let (stop_tx, stop_rx) = watch::channel(None::<Duration>);
        let finished_before = matches!(text(&pod, "/status/phase").as_str(), "Succeeded" | "Failed");
        let lifecycle = {
            let ctx = ctx.clone();
            let shared = shared.clone();
            let pod = pod.clone();
            tokio::spawn(async move {
                if !finished_before {
                    run_containers(ctx.clone(), pod.clone(), shared, stop_rx).await;
                    // No container of the pod runs any more: per-pod runtime state goes.
                    ctx.runtime.release_pod(&text(&pod, "/metadata/uid")).await;
                }
            })
        };
        // Wait for deletion (graceful or not) or for the object to vanish.
        let deadline = active_deadline(&pod);
        let mut deadline_fired = false;
        loop {
            let current = updates.borrow().clone();
            match current {
                None => {
                    let _ = stop_tx.send(Some(Duration::ZERO));
                    break;
                }
                Some(p) if p.pointer("/metadata/deletionTimestamp").is_some() => {
                    let grace = p.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(30).max(0);
                    info!(grace, "pod is being deleted; stopping containers");
                    ctx.events.normal(&involved(&p, None), "Killing", "Stopping pod").await;
                    let _ = stop_tx.send(Some(Duration::from_secs(grace as u64)));
                    break;
                }
                Some(_) => {}
            }
            let sleep_for = match deadline {
                Some(d) if !deadline_fired => d.saturating_duration_since(Instant::now()),
                _ => Duration::from_secs(3600),
            };
            tokio::select! {
                changed = updates.changed() => if changed.is_err() { let _ = stop_tx.send(Some(Duration::ZERO)); break; },
                _ = tokio::time::sleep(sleep_for), if deadline.is_some() && !deadline_fired => {
                    deadline_fired = true;
                    warn!("activeDeadlineSeconds passed; stopping the pod");
                    shared.update(|s| s.failed = Some(("DeadlineExceeded".into(), "Pod was active on the node longer than the specified deadline".into())));
                    let _ = stop_tx.send(Some(Duration::ZERO));
                }
            }
        }
        let _ = lifecycle.await;
        // The final status is written below, then the object removed.
        writer.abort();
        let gone = updates.borrow().is_none();
        if !gone {
            flush_status(&ctx, &ns, &name, &shared).await;
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                ..Default::default()
            };
            match pods.delete(&name, &params).await {
                Ok(_) => info!("pod removed"),
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => warn!(error = %e, "removing the pod failed"),
            }
        }
        ctx.logs.forget(&ns, &name);
        let _ = std::fs::remove_dir_all(ctx.pod_dir(&ns, &name, &uid).join("volumes"));
    }
    .instrument(span)
    .await
}

fn active_deadline(pod: &Value) -> Option<Instant> {
    let secs = pod
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)?;
    let started = pod
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now);
    let elapsed = (chrono::Utc::now() - started).to_std().unwrap_or_default();
    let left = Duration::from_secs(secs.max(0) as u64).saturating_sub(elapsed);
    Some(Instant::now() + left)
}

/// Status from what the pod object says, so that an agent restart neither loses a pod nor
/// runs one twice: restart counts carry over, finished containers stay finished, and a
/// container that was running when the agent went away (wasm instances live in the agent) is
/// restarted if its policy allows, or reported lost (`ContainerStatusUnknown`) if not.
fn initial_status(ctx: &AgentContext, pod: &Value) -> PodStatus {
    let policy = pod
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always");
    let build = |field: &str, list: &str| -> Vec<ContainerStatus> {
        let init = field == "initContainers";
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                let previous = pod
                    .pointer(&format!("/status/{list}"))
                    .and_then(Value::as_array)
                    .and_then(|a| {
                        a.iter()
                            .find(|s| s.get("name").and_then(Value::as_str) == Some(name))
                    });
                let restarts = previous
                    .and_then(|p| p.get("restartCount").and_then(Value::as_u64))
                    .unwrap_or(0) as u32;
                let mut s = ContainerStatus::new(name, image, restarts);
                if field == "containers" && pod.pointer("/spec/initContainers").is_some() {
                    s.waiting("PodInitializing", None);
                }
                if let Some(prev) = previous {
                    adopt(
                        &mut s,
                        prev,
                        if init && policy != "Never" {
                            "OnFailure"
                        } else {
                            policy
                        },
                    );
                }
                s
            })
            .collect()
    };
    let start_time = pod
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(SystemTime::now, |t| t.with_timezone(&chrono::Utc).into());
    let init = build("initContainers", "initContainerStatuses");
    PodStatus {
        initialized: init.iter().all(|c| c.finished && c.succeeded()),
        init,
        containers: build("containers", "containerStatuses"),
        failed: None,
        host_ip: ctx.config.node_ip.to_string(),
        start_time,
        transition: Default::default(),
    }
}

fn parse_time(v: &Value, ptr: &str) -> SystemTime {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(SystemTime::now, |t| t.with_timezone(&chrono::Utc).into())
}

fn terminated_from(t: &Value) -> ExitStatus {
    ExitStatus {
        exit_code: t.get("exitCode").and_then(Value::as_i64).unwrap_or(0) as i32,
        reason: t
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("Error")
            .to_string(),
        message: t.get("message").and_then(Value::as_str).map(str::to_string),
        started_at: parse_time(t, "/startedAt"),
        finished_at: parse_time(t, "/finishedAt"),
    }
}

/// Applies a container's previously reported state (see [`initial_status`]).
fn adopt(s: &mut ContainerStatus, prev: &Value, policy: &str) {
    s.image_id = prev
        .get("imageID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    s.container_id = prev
        .get("containerID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(t) = prev.pointer("/lastState/terminated") {
        s.last_state = Some(terminated_from(t));
    }
    if let Some(t) = prev.pointer("/state/terminated") {
        let exit = terminated_from(t);
        let will_restart = match policy {
            "Always" => true,
            "OnFailure" => exit.exit_code != 0,
            _ => false,
        };
        if will_restart {
            s.last_state = Some(exit);
            s.restart_count += 1;
        } else {
            s.state = State::Terminated(exit);
            s.finished = true;
        }
    } else if let Some(r) = prev.pointer("/state/running") {
        let lost = ExitStatus {
            exit_code: 137,
            reason: "ContainerStatusUnknown".to_string(),
            message: Some(
                "The container could not be located when the pod was terminated".to_string(),
            ),
            started_at: parse_time(r, "/startedAt"),
            finished_at: SystemTime::now(),
        };
        if policy == "Never" {
            s.state = State::Terminated(lost);
            s.finished = true;
        } else {
            s.last_state = Some(lost);
            s.restart_count += 1;
        }
    }
}

/// Publishes the status whenever it changes.
async fn write_status(ctx: Arc<AgentContext>, ns: String, name: String, shared: Arc<Shared>) {
    loop {
        // Changes made while a write is in flight collapse into one permit: bursts coalesce
        // into a single follow-up write without delaying the first one.
        shared.changed.notified().await;
        flush_status(&ctx, &ns, &name, &shared).await;
    }
}

async fn flush_status(ctx: &AgentContext, ns: &str, name: &str, shared: &Shared) {
    let status = match shared.status.lock() {
        Ok(mut s) => s.render(),
        Err(_) => return,
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let patch = json!({ "status": status });
    if let Err(e) = pods
        .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        debug!(error = %e, "writing pod status failed");
    }
}

fn involved(pod: &Value, container: Option<(&str, usize, bool)>) -> Involved {
    Involved {
        kind: "Pod".to_string(),
        api_version: "v1".to_string(),
        namespace: text(pod, "/metadata/namespace"),
        name: text(pod, "/metadata/name"),
        uid: text(pod, "/metadata/uid"),
        field_path: container.map(|(name, i, init)| {
            if init {
                format!("spec.initContainers{{{name}}}")
            } else {
                let _ = i;
                format!("spec.containers{{{name}}}")
            }
        }),
    }
}

/// Which list a container belongs to, and its index there.
#[derive(Debug, Clone, Copy)]
struct Slot {
    init: bool,
    index: usize,
}

fn with_container(shared: &Shared, slot: Slot, f: impl FnOnce(&mut ContainerStatus)) {
    shared.update(|s| {
        let list = if slot.init {
            &mut s.init
        } else {
            &mut s.containers
        };
        if let Some(c) = list.get_mut(slot.index) {
            f(c);
        }
    });
}

async fn run_containers(
    ctx: Arc<AgentContext>,
    pod: Value,
    shared: Arc<Shared>,
    stop: watch::Receiver<Option<Duration>>,
) {
    let ns = text(&pod, "/metadata/namespace");
    let name = text(&pod, "/metadata/name");
    let uid = text(&pod, "/metadata/uid");
    let policy = pod
        .pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always")
        .to_string();
    let pod_dir = ctx.pod_dir(&ns, &name, &uid);
    // Volumes: retried until they can be made (a configmap may appear later).
    let volumes = loop {
        match volumes::prepare(&ctx.client, &pod, &pod_dir).await {
            Ok(v) => break v,
            Err(e) => {
                let msg = e.to_string();
                shared.update(|s| {
                    for c in s.init.iter_mut().chain(s.containers.iter_mut()) {
                        c.waiting("CreateContainerConfigError", Some(msg.clone()));
                    }
                });
                ctx.events
                    .warning(&involved(&pod, None), "FailedMount", &msg)
                    .await;
                if wait_or_stop(&stop, Duration::from_secs(2)).await {
                    return;
                }
            }
        }
    };
    let volumes = Arc::new(volumes);
    let init_specs: Vec<Value> = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (index, container) in init_specs.iter().enumerate() {
        let slot = Slot { init: true, index };
        // Init containers restart on failure unless the pod's policy is Never.
        let init_policy = if policy == "Never" {
            "Never"
        } else {
            "OnFailure"
        };
        let ok = container_loop(
            &ctx,
            &pod,
            container,
            slot,
            init_policy,
            &volumes,
            &shared,
            stop.clone(),
        )
        .await;
        if !ok {
            if policy == "Never" && stop.borrow().is_none() {
                shared.update(|s| {
                    s.failed = Some((
                        "Failed".into(),
                        format!(
                            "init container {:?} failed",
                            container.get("name").and_then(Value::as_str).unwrap_or("")
                        ),
                    ))
                });
            }
            return;
        }
    }
    shared.update(|s| {
        s.initialized = true;
        for c in s.containers.iter_mut() {
            if matches!(&c.state, State::Waiting { reason, .. } if reason == "PodInitializing") {
                c.waiting("ContainerCreating", None);
            }
        }
    });
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut tasks = Vec::new();
    for (index, container) in containers.into_iter().enumerate() {
        let (ctx, pod, shared, volumes, stop, policy) = (
            ctx.clone(),
            pod.clone(),
            shared.clone(),
            volumes.clone(),
            stop.clone(),
            policy.clone(),
        );
        tasks.push(tokio::spawn(async move {
            container_loop(
                &ctx,
                &pod,
                &container,
                Slot { init: false, index },
                &policy,
                &volumes,
                &shared,
                stop,
            )
            .await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Sleeps, returning early (true) if the pod is being stopped.
async fn wait_or_stop(stop: &watch::Receiver<Option<Duration>>, d: Duration) -> bool {
    let mut stop = stop.clone();
    if stop.borrow().is_some() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => stop.borrow().is_some(),
        _ = stop.changed() => true,
    }
}

fn backoff(ctx: &AgentContext, failures: u32) -> Duration {
    let base = ctx.config.restart_backoff_initial;
    let d = base.saturating_mul(1u32 << failures.min(16).saturating_sub(1));
    d.min(ctx.config.restart_backoff_max)
}

/// Runs one container under its restart policy. Returns whether it ended successfully.
#[allow(clippy::too_many_arguments)]
async fn container_loop(
    ctx: &Arc<AgentContext>,
    pod: &Value,
    container: &Value,
    slot: Slot,
    policy: &str,
    volumes: &Arc<volumes::VolumeDirs>,
    shared: &Arc<Shared>,
    stop: watch::Receiver<Option<Duration>>,
) -> bool {
    let cname = text(container, "/name");
    let image_ref = text(container, "/image");
    let who = involved(pod, Some((&cname, slot.index, slot.init)));
    let mut failures = 0u32;
    // Finished before an agent restart: nothing to run again.
    let done_before = shared.status.lock().ok().and_then(|s| {
        let list = if slot.init { &s.init } else { &s.containers };
        list.get(slot.index)
            .filter(|c| c.finished)
            .map(|c| c.succeeded())
    });
    if let Some(success) = done_before {
        return success;
    }
    loop {
        if stop.borrow().is_some() {
            return false;
        }
        // 1. The runtime handler the pod's RuntimeClass forces, if any.
        let handler = match runtime_class::handler(&ctx.client, pod).await {
            Ok(h) => h,
            Err(message) => {
                let failure = Failure {
                    reason: "CreateContainerConfigError",
                    message,
                    retry_in: Duration::from_secs(5),
                };
                if setback(ctx, shared, slot, &who, failure, &stop).await {
                    return false;
                }
                continue;
            }
        };
        // 2. The image.
        let image = match image_pull::pull(ctx, pod, container, &who).await {
            Ok(image) => image,
            Err((reason, message)) => {
                failures += 1;
                with_container(shared, slot, |c| c.waiting(&reason, Some(message.clone())));
                if reason == "InvalidImageName" || reason == "ErrImageNeverPull" {
                    if wait_or_stop(&stop, Duration::from_secs(10)).await {
                        return false;
                    }
                    continue;
                }
                let delay = backoff(ctx, failures);
                if wait_or_stop(&stop, Duration::from_millis(300)).await {
                    return false;
                }
                with_container(shared, slot, |c| {
                    c.waiting(
                        "ImagePullBackOff",
                        Some(format!("Back-off pulling image {image_ref:?}: {message}")),
                    )
                });
                ctx.events
                    .normal(
                        &who,
                        "BackOff",
                        &format!("Back-off pulling image {image_ref:?}"),
                    )
                    .await;
                if wait_or_stop(&stop, delay).await {
                    return false;
                }
                continue;
            }
        };
        with_container(shared, slot, |c| c.image_id = image.digest.clone());
        if let Some(handler) = &handler {
            let class = text(pod, "/spec/runtimeClassName");
            if let Err(message) =
                runtime_class::check(handler, &class, &image, &ctx.config.runtime_names)
            {
                failures += 1;
                let failure = Failure {
                    reason: "CreateContainerError",
                    message,
                    retry_in: backoff(ctx, failures),
                };
                if setback(ctx, shared, slot, &who, failure, &stop).await {
                    return false;
                }
                continue;
            }
        }
        // 3. Compile (once per digest) and assemble the container.
        if let Err(e) = ctx.runtime.prepare(&image).await {
            failures += 1;
            let delay = backoff(ctx, failures);
            let failure = Failure {
                reason: "CreateContainerError",
                message: e.to_string(),
                retry_in: delay,
            };
            if setback(ctx, shared, slot, &who, failure, &stop).await {
                return false;
            }
            continue;
        }
        let restart_count = {
            let s = shared.status.lock().ok();
            s.and_then(|s| {
                let list = if slot.init { &s.init } else { &s.containers };
                list.get(slot.index).map(|c| c.restart_count)
            })
            .unwrap_or(0)
        };
        let spec = match build_spec(ctx, pod, container, &image, volumes, restart_count).await {
            Ok(s) => s,
            Err(message) => {
                failures += 1;
                let retry_in = Duration::from_secs(2);
                let failure = Failure {
                    reason: "CreateContainerConfigError",
                    message,
                    retry_in,
                };
                if setback(ctx, shared, slot, &who, failure, &stop).await {
                    return false;
                }
                continue;
            }
        };
        // 4. Run it.
        let scheme = if image.container.is_some() {
            "linux"
        } else {
            "wasm"
        };
        let container_id = format!(
            "{scheme}://{}/{}/{}",
            text(pod, "/metadata/uid"),
            cname,
            restart_count
        );
        let handle = match ctx.runtime.start(spec).await {
            Ok(h) => h,
            Err(e) => {
                failures += 1;
                let delay = backoff(ctx, failures);
                let failure = Failure {
                    reason: "CreateContainerError",
                    message: e.to_string(),
                    retry_in: delay,
                };
                if setback(ctx, shared, slot, &who, failure, &stop).await {
                    return false;
                }
                continue;
            }
        };
        let started = SystemTime::now();
        with_container(shared, slot, |c| {
            c.container_id = container_id.clone();
            c.state = State::Running {
                started_at: started,
            };
        });
        ctx.events
            .normal(&who, "Created", &format!("Created container {cname}"))
            .await;
        ctx.events
            .normal(&who, "Started", &format!("Started container {cname}"))
            .await;
        let mut stop_rx = stop.clone();
        let exit: ExitStatus = tokio::select! {
            exit = handle.wait() => exit,
            grace = async {
                // Copy the grace period out so no borrow of the channel is held across awaits.
                let stopped = stop_rx.wait_for(Option::is_some).await;
                stopped.map(|g| g.unwrap_or_default()).unwrap_or_default()
            } => handle.stop(grace).await,
        };
        ctx.logs.close(
            &text(pod, "/metadata/namespace"),
            &text(pod, "/metadata/name"),
            &cname,
        );
        info!(container = %cname, code = exit.exit_code, reason = %exit.reason, "container exited");
        let ran_for = exit
            .finished_at
            .duration_since(exit.started_at)
            .unwrap_or_default();
        if ran_for > BACKOFF_RESET_AFTER {
            failures = 0;
        }
        let success = exit.exit_code == 0;
        let restart = stop.borrow().is_none()
            && match policy {
                "Always" => true,
                "OnFailure" => !success,
                _ => false,
            };
        with_container(shared, slot, |c| {
            c.state = State::Terminated(exit.clone());
            c.finished = !restart;
        });
        if !restart {
            return success;
        }
        failures += 1;
        let delay = backoff(ctx, failures);
        let pod_name = text(pod, "/metadata/name");
        let pod_ns = text(pod, "/metadata/namespace");
        let message = format!(
            "back-off {}s restarting failed container={cname} pod={pod_name}_{pod_ns}({})",
            delay.as_secs(),
            text(pod, "/metadata/uid")
        );
        with_container(shared, slot, |c| {
            c.last_state = Some(exit.clone());
            c.waiting("CrashLoopBackOff", Some(message.clone()));
        });
        ctx.events
            .warning(&who, "BackOff", "Back-off restarting failed container")
            .await;
        if wait_or_stop(&stop, delay).await {
            return false;
        }
        with_container(shared, slot, |c| c.restart_count += 1);
    }
}

/// Why a container could not be started this time.
struct Failure {
    reason: &'static str,
    message: String,
    retry_in: Duration,
}

/// Reports a failed start (waiting reason, Warning event) and waits before the next attempt.
/// Returns true if the pod is being stopped meanwhile.
async fn setback(
    ctx: &AgentContext,
    shared: &Shared,
    slot: Slot,
    who: &Involved,
    failure: Failure,
    stop: &watch::Receiver<Option<Duration>>,
) -> bool {
    with_container(shared, slot, |c| {
        c.waiting(failure.reason, Some(failure.message.clone()))
    });
    ctx.events
        .warning(who, "Failed", &format!("Error: {}", failure.message))
        .await;
    wait_or_stop(stop, failure.retry_in).await
}

async fn build_spec(
    ctx: &AgentContext,
    pod: &Value,
    container: &Value,
    image: &ResolvedImage,
    volumes: &volumes::VolumeDirs,
    restart_count: u32,
) -> Result<ContainerSpec, String> {
    let ns = text(pod, "/metadata/namespace");
    let name = text(pod, "/metadata/name");
    let cname = text(container, "/name");
    let env = spec::environment(&ctx.client, pod, container)
        .await
        .map_err(|e| e.to_string())?;
    let argv = match &image.container {
        Some(linux) => spec::container_argv(container, &linux.config, &env),
        None => spec::argv(container, &spec::module_name(&image.reference), &env),
    };
    let mounts = spec::mounts(container, volumes).map_err(|e| e.to_string())?;
    let log_dir = ctx
        .pod_dir(&ns, &name, &text(pod, "/metadata/uid"))
        .join("logs")
        .join(&cname);
    let logs = ctx
        .logs
        .open(&ns, &name, &cname, &log_dir, restart_count)
        .map_err(|e| format!("creating the log file: {e}"))?;
    Ok(ContainerSpec {
        pod_uid: text(pod, "/metadata/uid"),
        namespace: ns,
        pod_name: name,
        container_name: cname,
        image: image.clone(),
        argv,
        env,
        mounts,
        working_dir: container
            .get("workingDir")
            .and_then(Value::as_str)
            .map(str::to_string),
        memory_limit_bytes: spec::limit(container, "memory").map(|v| v as u64),
        cpu_limit_millis: spec::limit(container, "cpu").map(|v| (v * 1000.0).ceil() as u64),
        cpu_request_millis: container
            .pointer("/resources/requests/cpu")
            .and_then(Value::as_str)
            .and_then(crate::api::validation::quantity_value)
            .map(|v| (v * 1000.0).ceil() as u64),
        linux: crate::runtime::container::LinuxOptions::from_pod(pod, container),
        logs,
    })
}
