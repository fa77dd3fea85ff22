//! `wkube policy test`: runs an admission policy offline on one request, the way the API server
//! would (same plugin host, limits and protocol), and prints its answer.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::api::registry::Registry;
use crate::plugin_host::resource::parse_bytes;
use crate::plugin_host::{
    AdmissionRequest, Call, CallLimits, GroupVersionKind, GroupVersionResource, Operation,
    PluginHost, PluginHostConfig, RequestUser,
};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Run a policy (component or WASI command) on one request and print its response.
    Test(TestArgs),
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
    }
}

async fn test(args: TestArgs) -> anyhow::Result<()> {
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
    let response = module.call(call, &settings, &request, &limits).await?;
    let mut out = serde_json::to_value(&response)?;
    if let (Some(patch), Some(object)) = (&response.patch, &request.object) {
        let mut patched = object.clone();
        json_patch::patch(&mut patched, patch).context("the policy's patch does not apply")?;
        out["patchedObject"] = patched;
    }
    // Not println!: a closed pipe (`| head`) is an error to report, not a panic.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string_pretty(&out)?).context("writing the response")?;
    Ok(())
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
