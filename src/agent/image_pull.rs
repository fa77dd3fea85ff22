//! Getting a container's image onto the node, with the kubelet's events: `Pulling`, progress
//! while a long pull runs, then `Pulled` (or `Failed` with the registry's message).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::Value;

use super::AgentContext;
use crate::events::Involved;
use crate::image::{PullEvent, PullPolicy, RegistryAuth};
use crate::runtime::ResolvedImage;

/// A progress event at most this often while a pull runs (events are for people reading
/// `kubectl describe`, not a progress bar).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What a pull has reported so far.
#[derive(Debug, Default)]
struct Progress {
    /// When the pull itself began, after waiting for any other pull of the same reference.
    started: Option<Instant>,
    /// Layers still to fetch: digest -> (bytes done, bytes total).
    layers: BTreeMap<String, (u64, u64)>,
    /// Another pull finished first and left the image in the store.
    already_present: bool,
}

impl Progress {
    fn record(&mut self, event: PullEvent) {
        match event {
            PullEvent::Resolving => self.started = Some(Instant::now()),
            PullEvent::Layers { layers } => {
                self.layers = layers
                    .into_iter()
                    .filter(|l| !l.present)
                    .map(|l| (l.digest, (0, l.size)))
                    .collect();
            }
            PullEvent::Downloading {
                digest,
                done,
                total,
            } => {
                self.layers.insert(digest, (done, total));
            }
            PullEvent::AlreadyPresent { .. } => self.already_present = true,
            PullEvent::Unpacked { .. } | PullEvent::Done { .. } => {}
        }
    }

    /// `12.0 MiB of 45.6 MiB (26%), 1 of 3 layers done`, or None before anything is known.
    fn summary(&self) -> Option<String> {
        if self.layers.is_empty() {
            return None;
        }
        let done: u64 = self.layers.values().map(|(d, _)| d).sum();
        let total: u64 = self.layers.values().map(|(_, t)| t).sum();
        let complete = self
            .layers
            .values()
            .filter(|(d, t)| d >= t && *t > 0)
            .count();
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        Some(format!(
            "{} of {} ({percent}%), {complete} of {} layers done",
            mib(done),
            mib(total),
            self.layers.len()
        ))
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Pulls (or finds) the container's image. `Err` is the waiting reason and message.
pub(super) async fn pull(
    ctx: &AgentContext,
    pod: &Value,
    container: &Value,
    who: &Involved,
) -> Result<ResolvedImage, (String, String)> {
    let reference = text(container, "/image");
    let policy = match container.get("imagePullPolicy").and_then(Value::as_str) {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        _ => PullPolicy::IfNotPresent,
    };
    let present = !matches!(policy, PullPolicy::Always) && ctx.images.get(&reference).is_some();
    if present {
        if let Some(img) = ctx.images.get(&reference) {
            let msg = format!("Container image {reference:?} already present on machine");
            ctx.events.normal(who, "Pulled", &msg).await;
            return Ok(resolved(reference, img));
        }
    }
    let auth = registry_auth(ctx, pod, &reference).await;
    if !matches!(policy, PullPolicy::Never) {
        ctx.events
            .normal(who, "Pulling", &format!("Pulling image {reference:?}"))
            .await;
    }
    let asked = Instant::now();
    let progress = Mutex::new(Progress::default());
    let record = |e: PullEvent| {
        if let Ok(mut p) = progress.lock() {
            p.record(e);
        }
    };
    let pulling = ctx.images.ensure(&reference, policy, &auth, &record);
    let post = |summary: String| {
        let msg = format!("Pulling image {reference:?}: {summary}");
        async move { ctx.events.normal(who, "Pulling", &msg).await }
    };
    let result = report_while(pulling, &progress, PROGRESS_EVERY, post).await;
    match result {
        Ok(img) => {
            let (started, already) = progress
                .lock()
                .map(|p| (p.started, p.already_present))
                .unwrap_or((None, false));
            let msg = if already {
                format!("Container image {reference:?} already present on machine")
            } else {
                let pulled_in = started.map_or(asked.elapsed(), |s| s.elapsed());
                format!(
                    "Successfully pulled image {reference:?} in {:.3}s ({:.3}s including waiting). Image size: {} bytes.",
                    pulled_in.as_secs_f64(),
                    asked.elapsed().as_secs_f64(),
                    img.size
                )
            };
            ctx.events.normal(who, "Pulled", &msg).await;
            Ok(resolved(reference, img))
        }
        Err(e) => {
            let reason = e.reason().to_string();
            let message = e.to_string();
            ctx.events
                .warning(
                    who,
                    "Failed",
                    &format!("Failed to pull image {reference:?}: {message}"),
                )
                .await;
            Err((reason, message))
        }
    }
}

/// Drives the pull, posting a progress summary `every` so often while it runs (only when
/// something moved since the last one).
async fn report_while<F: std::future::Future, P>(
    pulling: F,
    progress: &Mutex<Progress>,
    every: Duration,
    mut post: impl FnMut(String) -> P,
) -> F::Output
where
    P: std::future::Future<Output = ()>,
{
    tokio::pin!(pulling);
    let first = tokio::time::Instant::now() + every;
    let mut tick = tokio::time::interval_at(first, every);
    let mut last: Option<String> = None;
    loop {
        tokio::select! {
            out = &mut pulling => return out,
            _ = tick.tick() => {
                let summary = progress.lock().ok().and_then(|p| p.summary());
                if let Some(summary) = summary.filter(|s| last.as_ref() != Some(s)) {
                    post(summary.clone()).await;
                    last = Some(summary);
                }
            }
        }
    }
}

fn resolved(reference: String, img: crate::image::StoredImage) -> ResolvedImage {
    ResolvedImage {
        reference,
        digest: img.digest,
        wasm_path: img.wasm_path,
        container: img.container,
    }
}

fn text(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Credentials for the image's registry from the pod's `imagePullSecrets`.
async fn registry_auth(ctx: &AgentContext, pod: &Value, reference: &str) -> RegistryAuth {
    let host = registry_host(reference);
    let ns = text(pod, "/metadata/namespace");
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    for s in pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = s.get("name").and_then(Value::as_str) else {
            continue;
        };
        let secret = match secrets.get_opt(name).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                tracing::warn!(secret = name, "image pull secret not found");
                continue;
            }
            Err(e) => {
                tracing::warn!(secret = name, error = %e, "reading an image pull secret failed");
                continue;
            }
        };
        let Some(data) = secret
            .data
            .as_ref()
            .and_then(|d| d.get(".dockerconfigjson"))
        else {
            continue;
        };
        match crate::image::auth_from_dockerconfigjson(&data.0, &host) {
            Ok(Some(auth)) => return auth,
            Ok(None) => {}
            Err(e) => tracing::warn!(secret = name, error = %e, "unreadable image pull secret"),
        }
    }
    RegistryAuth::Anonymous
}

/// The registry host of a reference (`docker.io` when none is named).
fn registry_host(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::LayerProgress;

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("127.0.0.1:5000/hello:v1"), "127.0.0.1:5000");
        assert_eq!(registry_host("ghcr.io/org/x"), "ghcr.io");
        assert_eq!(registry_host("busybox"), "docker.io");
        assert_eq!(registry_host("library/busybox"), "docker.io");
        assert_eq!(registry_host("localhost/x"), "localhost");
    }

    /// A pull that holds each of three states for 300 ms, with a 50 ms reporting period:
    /// each state is posted at most once, in order, and the pull's result comes back.
    #[tokio::test]
    async fn progress_is_posted_while_it_moves_and_never_twice() {
        let progress = Mutex::new(Progress::default());
        let total = 4u64 << 20;
        let pulling = async {
            for done in [total / 4, total / 2, total] {
                if let Ok(mut p) = progress.lock() {
                    p.record(PullEvent::Downloading {
                        digest: "a".into(),
                        done,
                        total,
                    });
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            "pulled"
        };
        let posted = Mutex::new(Vec::new());
        let post = |s: String| {
            if let Ok(mut p) = posted.lock() {
                p.push(s);
            }
            std::future::ready(())
        };
        let every = Duration::from_millis(50);
        assert_eq!(
            report_while(pulling, &progress, every, post).await,
            "pulled"
        );
        let posted = posted.into_inner().unwrap_or_default();
        let states = [
            "1.0 MiB of 4.0 MiB (25%), 0 of 1 layers done",
            "2.0 MiB of 4.0 MiB (50%), 0 of 1 layers done",
            "4.0 MiB of 4.0 MiB (100%), 1 of 1 layers done",
        ];
        let order: Vec<usize> = posted
            .iter()
            .map(|p| states.iter().position(|s| s == p).expect("a known state"))
            .collect();
        assert!(!order.is_empty(), "nothing posted in 900 ms");
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{posted:?}");
    }

    #[test]
    fn progress_counts_only_layers_to_fetch() {
        let mut p = Progress::default();
        assert_eq!(p.summary(), None);
        p.record(PullEvent::Resolving);
        assert!(p.started.is_some());
        let layer = |d: &str, size: u64, present: bool| LayerProgress {
            digest: d.into(),
            size,
            present,
        };
        p.record(PullEvent::Layers {
            layers: vec![
                layer("a", 1 << 20, true),
                layer("b", 3 << 20, false),
                layer("c", 1 << 20, false),
            ],
        });
        p.record(PullEvent::Downloading {
            digest: "c".into(),
            done: 1 << 20,
            total: 1 << 20,
        });
        p.record(PullEvent::Downloading {
            digest: "b".into(),
            done: 1 << 20,
            total: 3 << 20,
        });
        assert_eq!(
            p.summary().as_deref(),
            Some("2.0 MiB of 4.0 MiB (50%), 1 of 2 layers done")
        );
    }
}
