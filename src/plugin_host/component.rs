//! Policies that are components of the `wkube:admission/policy` world.

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::limits::{arm_deadline, classify, CallLimits, MemoryLimiter};
use super::protocol::{AdmissionRequest, Call, Operation, PolicyResponse};
use super::PolicyError;

wasmtime::component::bindgen!({
    path: "wit/admission",
    world: "policy",
    exports: { default: async },
});

use self::wkube::admission::types as wit;

/// What a component policy's store holds: an empty WASI world (no files, network,
/// environment or stdin; stderr kept for the debug log) and the memory limiter.
pub(crate) struct ComponentState {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    stderr: MemoryOutputPipe,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// A component resolved against the linker once, so each call only instantiates.
pub(crate) type Pre = PolicyPre<ComponentState>;

/// WASI preview 2 is the only thing a component policy may import: every language's standard
/// library needs some of it.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<ComponentState>, PolicyError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| PolicyError::Host(format!("setting up WASI preview 2: {e:#}")))?;
    Ok(linker)
}

pub(crate) fn pre(
    linker: &Linker<ComponentState>,
    component: &Component,
) -> Result<Pre, PolicyError> {
    let pre = linker.instantiate_pre(component).map_err(|e| {
        PolicyError::Contract(format!("it imports more than WASI preview 2: {e:#}"))
    })?;
    PolicyPre::new(pre).map_err(|e| PolicyError::Contract(format!("{e:#}")))
}

impl ComponentState {
    /// The empty WASI world under a memory limit (also what scheduler plugins get).
    pub(crate) fn new(memory_bytes: u64) -> Self {
        let stderr = MemoryOutputPipe::new(64 << 10);
        let ctx = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        ComponentState {
            ctx,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes),
            stderr,
        }
    }

    pub(crate) fn limiter(&mut self) -> &mut MemoryLimiter {
        &mut self.limiter
    }

    /// Whether the memory limit refused a growth (the likely cause of a trap).
    pub(crate) fn memory_hit(&self) -> bool {
        self.limiter.hit()
    }

    pub(crate) fn log_stderr(&self) {
        let err = self.stderr.contents();
        if !err.is_empty() {
            tracing::debug!(stderr = %String::from_utf8_lossy(&err), "plugin wrote to stderr");
        }
    }
}

fn store(engine: &Engine, limits: &CallLimits) -> Store<ComponentState> {
    let mut store = Store::new(engine, ComponentState::new(limits.memory_bytes));
    store.limiter(|s| &mut s.limiter);
    arm_deadline(&mut store, limits.timeout);
    store
}

/// Instantiates the policy and calls `validate` or `mutate` once.
pub(crate) async fn call(
    pre: &Pre,
    call: Call,
    settings: &str,
    request: &AdmissionRequest,
    limits: &CallLimits,
) -> Result<PolicyResponse, PolicyError> {
    let request = to_wit(request)?;
    let mut store = store(pre.engine(), limits);
    let policy = instantiate(pre, &mut store, limits).await?;
    let answer = match call {
        Call::Validate => policy.call_validate(&mut store, settings, &request).await,
        Call::Mutate => policy.call_mutate(&mut store, settings, &request).await,
    };
    log_stderr(&store);
    let answer = answer.map_err(|e| classify(&e, store.data().limiter.hit(), limits))?;
    from_wit(answer)?.checked(call)
}

/// Instantiates the policy and calls `validate-settings` once.
pub(crate) async fn validate_settings(
    pre: &Pre,
    settings: &str,
    limits: &CallLimits,
) -> Result<Result<(), String>, PolicyError> {
    let mut store = store(pre.engine(), limits);
    let policy = instantiate(pre, &mut store, limits).await?;
    let answer = policy.call_validate_settings(&mut store, settings).await;
    log_stderr(&store);
    answer.map_err(|e| classify(&e, store.data().limiter.hit(), limits))
}

async fn instantiate(
    pre: &Pre,
    store: &mut Store<ComponentState>,
    limits: &CallLimits,
) -> Result<Policy, PolicyError> {
    pre.instantiate_async(&mut *store).await.map_err(|e| {
        if store.data().limiter.hit() {
            PolicyError::MemoryLimit(limits.memory_bytes)
        } else {
            PolicyError::Instantiate(format!("{e:#}"))
        }
    })
}

fn log_stderr(store: &Store<ComponentState>) {
    store.data().log_stderr();
}

fn to_wit(r: &AdmissionRequest) -> Result<wit::Request, PolicyError> {
    let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    Ok(wit::Request {
        uid: r.uid.clone(),
        kind: wit::GroupVersionKind {
            group: r.kind.group.clone(),
            version: r.kind.version.clone(),
            kind: r.kind.kind.clone(),
        },
        resource: wit::GroupVersionResource {
            group: r.resource.group.clone(),
            version: r.resource.version.clone(),
            resource: r.resource.resource.clone(),
        },
        sub_resource: r.sub_resource.clone(),
        namespace: r.namespace.clone(),
        name: r.name.clone(),
        operation: match r.operation {
            Operation::Create => wit::Operation::Create,
            Operation::Update => wit::Operation::Update,
            Operation::Delete => wit::Operation::Delete,
            Operation::Connect => wit::Operation::Connect,
        },
        user_info: wit::UserInfo {
            username: r.user_info.username.clone(),
            groups: r.user_info.groups.clone(),
        },
        object: json(&r.object),
        old_object: json(&r.old_object),
        dry_run: r.dry_run,
        options: json(&r.options),
    })
}

fn from_wit(r: wit::Response) -> Result<PolicyResponse, PolicyError> {
    let patch = match r.patch {
        None => None,
        Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
            PolicyError::BadResponse(format!("the patch is not an RFC 6902 JSON patch: {e}"))
        })?),
    };
    Ok(PolicyResponse {
        allowed: r.allowed,
        message: r.message,
        code: r.code,
        warnings: r.warnings,
        patch,
    })
}
