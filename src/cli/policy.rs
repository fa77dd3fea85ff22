//! `wkube policy test`: runs an admission policy offline on one request, the way the API server
//! would (same plugin host, limits and protocol), and prints its answer. `wkube policy push`
//! publishes a policy to an OCI registry once it has checked that the module is one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::api::registry::Registry;
use crate::image::{push_wasm, RegistryAuth};
use crate::plugin_host::resource::parse_bytes;
use crate::plugin_host::{
    AdmissionRequest, Call, CallLimits, GroupVersionKind, GroupVersionResource, Operation,
    PluginHost, PluginHostConfig, RequestUser,
};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Run a policy (component or WASI command) on one request and print its response.
    Test(TestArgs),
    /// Call a policy on one request many times and print the per-call latency.
    Bench {
        #[command(flatten)]
        args: TestArgs,
        /// Calls to time (after a few untimed warm-up calls).
        #[arg(long, default_value_t = 1000)]
        iterations: u32,
    },
    /// Publish a policy to an OCI registry as a wasm artifact (what `spec.module.image` pulls),
    /// after checking that it loads as a policy and, with `--settings`, accepts them.
    Push(PushArgs),
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The policy's wasm module (a component of the policy world or a WASI preview 1 command).
    file: PathBuf,
    /// Where to publish it: HOST[:PORT]/NAME:TAG.
    reference: String,
    /// Settings (JSON or YAML) the policy must accept before it is published.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Registries (host:port) reached over plain HTTP; loopback ones always are.
    #[arg(long = "insecure-registry")]
    insecure_registries: Vec<String>,
    #[arg(long, env = "WKUBE_REGISTRY_USER")]
    username: Option<String>,
    #[arg(long, env = "WKUBE_REGISTRY_PASSWORD")]
    password: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The policy's wasm module.
    #[arg(long)]
    module: PathBuf,
    /// The policy's settings (JSON or YAML); `{}` when not given.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// An `AdmissionReview` or its `request` (JSON or YAML).
    #[arg(long, required_unless_present = "object", conflicts_with = "object")]
    request: Option<PathBuf>,
    /// An object (JSON or YAML) to build the request from.
    #[arg(long)]
    object: Option<PathBuf>,
    /// The operation of a request built from `--object`: CREATE, UPDATE or DELETE.
    #[arg(long, default_value = "CREATE")]
    operation: String,
    /// Call `mutate` instead of `validate`, and print the patched object too.
    #[arg(long)]
    mutate: bool,
    #[arg(long, default_value_t = 10)]
    timeout_seconds: u64,
    #[arg(long, default_value = "64Mi")]
    memory_limit: String,
}

pub async fn run(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Test(args) => test(args).await,
        PolicyCommand::Bench { args, iterations } => bench(args, iterations).await,
        PolicyCommand::Push(args) => push(args).await,
    }
}

/// Checks the module the way the API server will when a policy names it (compiled, resolved
/// against the contract, settings validated), so that a broken policy never reaches the
/// registry, then pushes it with the image push code.
async fn push(args: PushArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let host = PluginHost::new(&PluginHostConfig {
        max_concurrent_calls: 2,
        ..PluginHostConfig::default()
    })?;
    let module = host
        .load(bytes)
        .await
        .with_context(|| format!("{} is not an admission policy", args.file.display()))?;
    if let Some(path) = &args.settings {
        let settings = read_document(path)?;
        if let Err(message) = module
            .validate_settings(&settings, &CallLimits::default())
            .await?
        {
            bail!(
                "the policy refuses the settings in {}: {message}",
                path.display()
            );
        }
    }
    let auth = match (args.username, args.password) {
        (Some(username), Some(password)) => RegistryAuth::Basic { username, password },
        _ => RegistryAuth::Anonymous,
    };
    let digest = push_wasm(
        &args.file,
        &args.reference,
        &auth,
        &args.insecure_registries,
    )
    .await?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "wkube: pushed policy {} ({}) as {}@{digest}",
        args.file.display(),
        module.digest(),
        args.reference
    )
    .context("writing the result")?;
    Ok(())
}

/// A loaded policy with the settings, request and limits to call it with.
struct Prepared {
    module: std::sync::Arc<crate::plugin_host::PolicyModule>,
    settings: Value,
    request: AdmissionRequest,
    limits: CallLimits,
    call: Call,
}

async fn test(args: TestArgs) -> anyhow::Result<()> {
    let p = prepare(&args).await?;
    let response = p
        .module
        .call(p.call, &p.settings, &p.request, &p.limits)
        .await?;
    let mut out = serde_json::to_value(&response)?;
    if let (Some(patch), Some(object)) = (&response.patch, &p.request.object) {
        let mut patched = object.clone();
        json_patch::patch(&mut patched, patch).context("the policy's patch does not apply")?;
        out["patchedObject"] = patched;
    }
    // Not println!: a closed pipe (`| head`) is an error to report, not a panic.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?).context("writing the response")?;
    Ok(())
}

/// Each call is what the API server pays per policy and request: a fresh instance from the
/// pool, the request marshalled in, the answer out.
async fn bench(args: TestArgs, iterations: u32) -> anyhow::Result<()> {
    let p = prepare(&args).await?;
    for _ in 0..10 {
        p.module
            .call(p.call, &p.settings, &p.request, &p.limits)
            .await?;
    }
    let mut times = Vec::with_capacity(iterations as usize);
    for _ in 0..iterations.max(1) {
        let started = std::time::Instant::now();
        p.module
            .call(p.call, &p.settings, &p.request, &p.limits)
            .await?;
        times.push(started.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let total: Duration = times.iter().sum();
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{} calls to {} of {}: p50 {:?}, p99 {:?}, max {:?}, mean {:?}",
        times.len(),
        p.call.name(),
        args.module.display(),
        at(0.50),
        at(0.99),
        at(1.0),
        total / times.len() as u32,
    )
    .context("writing the figures")?;
    Ok(())
}

async fn prepare(args: &TestArgs) -> anyhow::Result<Prepared> {
    let limits = CallLimits {
        timeout: Duration::from_secs(args.timeout_seconds.max(1)),
        memory_bytes: parse_bytes(&args.memory_limit)
            .with_context(|| format!("--memory-limit {:?} is not a quantity", args.memory_limit))?,
    };
    let settings = match &args.settings {
        Some(path) => read_document(path)?,
        None => json!({}),
    };
    let request = match (&args.request, &args.object) {
        (Some(path), _) => request_from_review(read_document(path)?)?,
        (None, Some(path)) => request_for_object(read_document(path)?, &args.operation)?,
        (None, None) => bail!("give --request or --object"),
    };
    let bytes = std::fs::read(&args.module)
        .with_context(|| format!("reading {}", args.module.display()))?;
    let host = PluginHost::new(&PluginHostConfig {
        max_concurrent_calls: 2,
        ..PluginHostConfig::default()
    })?;
    let module = host.load(bytes).await?;
    if let Err(message) = module.validate_settings(&settings, &limits).await? {
        bail!("the policy refuses its settings: {message}");
    }
    let call = if args.mutate {
        Call::Mutate
    } else {
        Call::Validate
    };
    Ok(Prepared {
        module,
        settings,
        request,
        limits,
        call,
    })
}

fn read_document(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not JSON or YAML", path.display()))
}

fn request_from_review(doc: Value) -> anyhow::Result<AdmissionRequest> {
    let request = match doc.get("request") {
        Some(r) if doc.get("kind").and_then(Value::as_str) == Some("AdmissionReview") => r.clone(),
        _ => doc,
    };
    serde_json::from_value(request).context("not an AdmissionReview request")
}

fn request_for_object(object: Value, operation: &str) -> anyhow::Result<AdmissionRequest> {
    let operation = match operation {
        "CREATE" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        other => bail!("--operation {other:?}: must be CREATE, UPDATE or DELETE"),
    };
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let registry = Registry::builtin();
    let r = registry
        .find_kind(group, version, kind)
        .with_context(|| format!("wkube does not serve {api_version} {kind}"))?;
    let meta = |f: &str| {
        object
            .pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let namespace = r
        .namespaced
        .then(|| meta("namespace").unwrap_or_else(|| "default".into()));
    let (new, old) = match operation {
        Operation::Delete => (None, Some(object.clone())),
        Operation::Update => (Some(object.clone()), Some(object.clone())),
        _ => (Some(object.clone()), None),
    };
    Ok(AdmissionRequest {
        uid: uuid::Uuid::new_v4().to_string(),
        kind: GroupVersionKind {
            group: r.group.into(),
            version: r.version.into(),
            kind: r.kind.into(),
        },
        resource: GroupVersionResource {
            group: r.group.into(),
            version: r.version.into(),
            resource: r.plural.into(),
        },
        sub_resource: None,
        namespace,
        name: meta("name"),
        operation,
        user_info: RequestUser {
            username: "wkube-policy-test".into(),
            groups: vec![],
        },
        object: new,
        old_object: old,
        dry_run: true,
        options: None,
    })
}
