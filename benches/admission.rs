//! Admission policy benchmarks.
//!
//! (a) Per-call latency of each example policy of plugins/ in-process through the plugin host
//!     (a fresh instance per call, as the API server does), beside the require-labels logic
//!     written natively in Rust here, in one run: the ratio is what wasm costs.
//! (b) API create latency and throughput with 0, 1 and 10 active policies (require-labels on
//!     ConfigMaps), then with the Python and the JavaScript policy alone, at 1 and 32 clients:
//!     what policies cost a write.
//!
//! Run: `cargo bench --bench admission` (builds plugins/ first, see plugins/build.sh; needs
//! Debian's `docker-registry`, as the tests do). Everything listens on 127.0.0.1 only. Figures are printed; nothing is asserted beyond the policies
//! really running (a request they must refuse is refused).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind as KubeGvk, PostParams};
use serde_json::{json, Value};
use wkube::plugin_host::{
    AdmissionRequest, Call, CallLimits, Operation, PluginHost, PluginHostConfig, PolicyResponse,
};

mod common;
// The tests' Debian `docker-registry` on a loopback port, for the policies too large to inline.
#[path = "../tests/common/registry.rs"]
mod registry;

use common::{client, pct, start_wkube};

/// Builds plugins/ (incremental) and returns the directory of the built modules.
fn wasm_plugins() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/build.sh");
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("run plugins/build.sh");
    assert!(
        out.status.success(),
        "plugins/build.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A pod every example policy admits, so each runs its whole check rather than stopping at
/// the first problem.
fn compliant_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-0", "namespace": "default",
                     "labels": {"team": "a", "app.kubernetes.io/name": "web"}},
        "spec": {
            "containers": [{"name": "web", "image": "wkube.local/web:v1.2",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                          "limits": {"memory": "128Mi"}},
                            "securityContext": {"privileged": false}},
                           {"name": "sidecar", "image": "wkube.local/proxy:v3",
                            "ports": [{"containerPort": 8080}]}],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    })
}

fn request(object: Value) -> AdmissionRequest {
    AdmissionRequest::for_pod(Operation::Create, object)
}

/// plugins/rust/require-labels compiled natively: the same steps on the same input. The host
/// hands a component its settings and object as JSON text, so the native version starts from
/// the `Value`s the host has and serialises them too, to compare like with like.
fn native_require_labels(settings: &Value, request: &AdmissionRequest) -> PolicyResponse {
    let deny = |message: String| PolicyResponse {
        allowed: false,
        message: Some(message),
        ..PolicyResponse::default()
    };
    if request.operation == Operation::Delete {
        return PolicyResponse {
            allowed: true,
            ..PolicyResponse::default()
        };
    }
    let settings: Value = match serde_json::from_str(&settings.to_string()) {
        Ok(s) => s,
        Err(e) => return deny(format!("settings are not JSON: {e}")),
    };
    let Some(keys) = settings.get("labels").and_then(Value::as_array) else {
        return deny("settings.labels must be a list of label keys".into());
    };
    let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
    let text = request.object.as_ref().map(Value::to_string);
    let object: Value = match text.as_deref().map(serde_json::from_str) {
        Some(Ok(o)) => o,
        _ => return deny("the request carries no object".into()),
    };
    let labels = object.pointer("/metadata/labels");
    let missing: Vec<&str> = keys
        .into_iter()
        .filter(|k| labels.and_then(|l| l.get(*k)).is_none())
        .collect();
    if missing.is_empty() {
        PolicyResponse {
            allowed: true,
            ..PolicyResponse::default()
        }
    } else {
        deny(format!("missing required label(s): {}", missing.join(", ")))
    }
}

/// Calls a policy `iterations` times or for `budget`, whichever ends first; the latencies.
async fn time_calls<F, Fut>(iterations: usize, budget: Duration, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = PolicyResponse>,
{
    // Warm-up: first-touch page faults of the pool and lazy initialisation are not per call.
    for _ in 0..10 {
        assert!(f().await.allowed, "the bench pod must be admitted");
    }
    let mut lat = Vec::with_capacity(iterations);
    let started = Instant::now();
    while lat.len() < iterations && started.elapsed() < budget {
        let t = Instant::now();
        let r = f().await;
        lat.push(t.elapsed());
        assert!(r.allowed, "{r:?}");
    }
    lat
}

async fn per_call() {
    println!("== (a) per-call latency in-process (fresh instance per call, one thread)");
    let dir = wasm_plugins();
    let host = PluginHost::new(&PluginHostConfig {
        max_concurrent_calls: 4,
        max_memory_bytes: 256 << 20,
    })
    .expect("plugin host");
    let limits = CallLimits::default();
    let req = request(compliant_pod());

    let labels = json!({"labels": ["team", "app.kubernetes.io/name"]});
    let mut native = time_calls(200_000, Duration::from_secs(3), || {
        let r = native_require_labels(&labels, &req);
        async move { r }
    })
    .await;
    let native_p50 = pct(&mut native, 0.5);
    println!(
        "{:<44} {:>7} calls  p50 {:>9.4} ms  p99 {:>9.4} ms",
        "require-labels, native Rust (same logic)",
        native.len(),
        native_p50,
        pct(&mut native, 0.99)
    );

    let cases = [
        (
            "require-labels.wasm",
            "Rust component",
            Call::Validate,
            labels.clone(),
        ),
        (
            "default-resources.wasm",
            "Rust component, mutate",
            Call::Mutate,
            json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}),
        ),
        (
            "allowed-registries.wasm",
            "C, WASI p1 command",
            Call::Validate,
            json!({"registries": ["wkube.local"]}),
        ),
        (
            "deny-privileged.wasm",
            "Python component",
            Call::Validate,
            json!({}),
        ),
        (
            "require-name-and-tag.wasm",
            "JavaScript component",
            Call::Validate,
            json!({}),
        ),
    ];
    for (file, shape, call, settings) in cases {
        let bytes = std::fs::read(dir.join(file)).expect("built policy");
        let size_mib = bytes.len() as f64 / (1 << 20) as f64;
        let t = Instant::now();
        let module = host.load(bytes).await.expect("load policy");
        let compile = t.elapsed();
        let mut lat = time_calls(5_000, Duration::from_secs(8), || {
            let module = module.clone();
            let (settings, req) = (&settings, &req);
            async move {
                module
                    .call(call, settings, req, &limits)
                    .await
                    .expect("policy answers")
            }
        })
        .await;
        let p50 = pct(&mut lat, 0.5);
        let name = format!("{} ({shape})", file.trim_end_matches(".wasm"));
        println!(
            "{name:<44} {:>7} calls  p50 {:>9.4} ms  p99 {:>9.4} ms  {:>7.0}x native p50  ({size_mib:.1} MiB, compiled in {:.2} s)",
            lat.len(),
            p50,
            pct(&mut lat, 0.99),
            p50 / native_p50,
            compile.as_secs_f64(),
        );
    }
}

/// Runs `total` creates with `concurrency` clients; (latencies, wall time).
async fn creates(
    cms: &Api<ConfigMap>,
    tag: &str,
    total: usize,
    concurrency: usize,
) -> (Vec<Duration>, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (cms, next, tag) = (cms.clone(), next.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": format!("{tag}-{i}"),
                                 "labels": {"team": "a", "app.kubernetes.io/name": "bench"}},
                    "data": {"payload": "x".repeat(256)},
                }))
                .expect("configmap");
                let t = Instant::now();
                cms.create(&PostParams::default(), &cm)
                    .await
                    .expect("create");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client task"));
    }
    (lat, started.elapsed())
}

/// A ClusterAdmissionPolicy on creates of `resources` (core group).
fn policy(name: &str, module: Value, resources: &[&str], settings: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "wkube.dev/v1alpha1", "kind": "ClusterAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "module": module,
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": resources,
                       "operations": ["CREATE"]}],
            "settings": settings,
        },
    }))
    .expect("policy")
}

async fn wait_active(policies: &Api<DynamicObject>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(p) = policies.get(name).await {
            if p.data["status"]["phase"] == "Active" {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "policy {name} never became Active"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until creating `make(i)` is refused (`refused`) or admitted (`!refused`): the way to
/// know a policy change is in the write path.
async fn wait_until<K>(api: &Api<K>, refused: bool, what: &str, make: impl Fn(usize) -> K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    for i in 0.. {
        if api.create(&PostParams::default(), &make(i)).await.is_err() == refused {
            return;
        }
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One row per client count: `total` labelled ConfigMap creates.
async fn measure(cms: &Api<ConfigMap>, what: &str, tag: &str) {
    for (clients, total) in [(1usize, 1000usize), (32, 4000)] {
        let (mut lat, wall) = creates(cms, &format!("{tag}-c{clients}"), total, clients).await;
        println!(
            "{what:<26} {clients:>2} clients: {:>6.0} creates/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
            lat.len() as f64 / wall.as_secs_f64(),
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99),
        );
    }
}

async fn api_overhead() {
    println!("== (b) API create latency and throughput (ConfigMaps)");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("wkube");
    let server = start_wkube(&data, &["--no-agent"]);
    let c = client(&data).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let gvk = KubeGvk::gvk("wkube.dev", "v1alpha1", "ClusterAdmissionPolicy");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "clusteradmissionpolicies");
    let policies: Api<DynamicObject> = Api::all_with(c.clone(), &resource);
    let plugins = wasm_plugins();
    let rust = std::fs::read(plugins.join("require-labels.wasm")).expect("built policy");
    let inline = json!({"inline": base64::engine::general_purpose::STANDARD.encode(&rust)});
    let pp = PostParams::default();
    let bare = |i: usize| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": format!("bare-{i}")}}))
            .expect("configmap")
    };

    // require-labels (Rust, inline): 0, 1 and 10 copies.
    let mut active = 0;
    for want in [0usize, 1, 10] {
        while active < want {
            let name = format!("require-team-{active}");
            let p = policy(
                &name,
                inline.clone(),
                &["configmaps"],
                json!({"labels": ["team"]}),
            );
            policies.create(&pp, &p).await.expect("create policy");
            wait_active(&policies, &name).await;
            active += 1;
        }
        if want > 0 {
            // The policies must really be in the path: an unlabelled ConfigMap is refused.
            let refused = cms.create(&pp, &bare(usize::MAX - want)).await;
            assert!(refused.is_err(), "an unlabelled ConfigMap was admitted");
        }
        let what = format!("{want:>2} Rust policies,");
        measure(&cms, &what, &format!("rust{want}")).await;
    }
    for i in 0..active {
        let name = format!("require-team-{i}");
        policies
            .delete(&name, &Default::default())
            .await
            .expect("delete policy");
    }
    wait_until(&cms, false, "admitting an unlabelled ConfigMap", bare).await;

    // The interpreted languages, one policy each, pulled from a local registry (too large to
    // be inline). Python: deny-privileged parses each ConfigMap and finds no pod spec in it.
    let registry = registry::Registry::start();
    let push = |file: &str| {
        let reference = format!("{}/bench/{file}:v1", registry.host());
        let wasm = plugins.join(file);
        let out = Command::new(env!("CARGO_BIN_EXE_wkube"))
            .args(["policy", "push"])
            .arg(&wasm)
            .arg(&reference)
            .output()
            .expect("run wkube policy push");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json!({"image": reference})
    };
    let privileged = |i: usize| -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("root-{i}")},
            "spec": {"containers": [{"name": "c", "image": "x:1", "securityContext": {"privileged": true}}]},
        }))
        .expect("pod")
    };
    let p = policy(
        "python",
        push("deny-privileged.wasm"),
        &["configmaps", "pods"],
        json!({}),
    );
    policies.create(&pp, &p).await.expect("create policy");
    wait_active(&policies, "python").await;
    wait_until(&pods, true, "refusing a privileged pod", privileged).await;
    measure(&cms, " 1 Python policy,", "python").await;
    policies
        .delete("python", &Default::default())
        .await
        .expect("delete policy");
    wait_until(&pods, false, "admitting a privileged pod", |i| {
        privileged(1000 + i)
    })
    .await;

    let p = policy(
        "js",
        push("require-name-and-tag.wasm"),
        &["configmaps"],
        json!({}),
    );
    policies.create(&pp, &p).await.expect("create policy");
    wait_active(&policies, "js").await;
    wait_until(&cms, true, "refusing an unnamed ConfigMap", |i| {
        bare(10_000 + i)
    })
    .await;
    measure(&cms, " 1 JavaScript policy,", "js").await;
    drop(server);
}

#[tokio::main]
async fn main() {
    // Criterion-style filters passed by `cargo bench` are ignored: this runs everything once.
    per_call().await;
    api_overhead().await;
}
