//! Policies that are WASI preview 1 commands: one JSON request on stdin, one JSON response on
//! stdout (the schema is in `wit/admission/README.md`).

use wasmtime::{Engine, ExternType, InstancePre, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use super::limits::{arm_deadline, classify, CallLimits, MemoryLimiter};
use super::protocol::{self, AdmissionRequest, Call, PolicyResponse, MAX_OUTPUT_BYTES};
use super::PolicyError;

pub(crate) struct CommandState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

pub(crate) type Pre = InstancePre<CommandState>;

pub(crate) fn linker(engine: &Engine) -> Result<Linker<CommandState>, PolicyError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut CommandState| &mut s.wasi)
        .map_err(|e| PolicyError::Host(format!("setting up WASI preview 1: {e:#}")))?;
    Ok(linker)
}

/// Resolves the imports once and checks the module is a command.
pub(crate) fn pre(linker: &Linker<CommandState>, module: &Module) -> Result<Pre, PolicyError> {
    match module.get_export("_start") {
        Some(ExternType::Func(f)) if f.params().len() == 0 && f.results().len() == 0 => {}
        _ => {
            return Err(PolicyError::Contract(
                "a core module must be a WASI preview 1 command exporting `_start`".into(),
            ))
        }
    }
    linker
        .instantiate_pre(module)
        .map_err(|e| PolicyError::Contract(format!("it imports more than WASI preview 1: {e:#}")))
}

/// The WASI context of one run of a plugin command: `input` on stdin, the pipes for its
/// output, no arguments but its name, no environment, files or network.
pub(crate) fn sealed_wasi(
    name: &str,
    input: Vec<u8>,
    stdout: &MemoryOutputPipe,
    stderr: &MemoryOutputPipe,
) -> WasiP1Ctx {
    WasiCtxBuilder::new()
        .arg(name)
        .stdin(MemoryInputPipe::new(input))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build_p1()
}

/// What one run of the command printed.
struct Output {
    stdout: Vec<u8>,
}

/// Runs the command once with `input` on stdin.
async fn run(pre: &Pre, input: Vec<u8>, limits: &CallLimits) -> Result<Output, PolicyError> {
    let stdout = MemoryOutputPipe::new(MAX_OUTPUT_BYTES);
    let stderr = MemoryOutputPipe::new(16 << 10);
    let wasi = sealed_wasi("policy", input, &stdout, &stderr);
    let mut store = Store::new(
        pre.module().engine(),
        CommandState {
            wasi,
            limiter: MemoryLimiter::new(limits.memory_bytes),
        },
    );
    store.limiter(|s| &mut s.limiter);
    arm_deadline(&mut store, limits.timeout);
    let instance = pre.instantiate_async(&mut store).await.map_err(|e| {
        if store.data().limiter.hit() {
            PolicyError::MemoryLimit(limits.memory_bytes)
        } else {
            PolicyError::Instantiate(format!("{e:#}"))
        }
    })?;
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|e| PolicyError::Contract(format!("{e:#}")))?;
    let ran = start.call_async(&mut store, ()).await;
    let stdout = stdout.contents().to_vec();
    let stderr = stderr.contents();
    if !stderr.is_empty() {
        tracing::debug!(stderr = %String::from_utf8_lossy(&stderr), "policy wrote to stderr");
    }
    let code = match ran {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => exit.0,
            None if stdout.len() >= MAX_OUTPUT_BYTES => {
                return Err(PolicyError::BadResponse(format!(
                    "more than {MAX_OUTPUT_BYTES} bytes of output"
                )))
            }
            None => return Err(classify(&e, store.data().limiter.hit(), limits)),
        },
    };
    if code != 0 {
        let stderr = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {}", protocol::excerpt(&stderr))
        };
        return Err(PolicyError::Exit { code, stderr });
    }
    Ok(Output { stdout })
}

pub(crate) async fn call(
    pre: &Pre,
    call: Call,
    settings: &serde_json::Value,
    request: &AdmissionRequest,
    limits: &CallLimits,
) -> Result<PolicyResponse, PolicyError> {
    let input = protocol::command_input(call.name(), settings, Some(request))?;
    let out = run(pre, input, limits).await?;
    protocol::parse_response(&out.stdout, call)
}

pub(crate) async fn validate_settings(
    pre: &Pre,
    settings: &serde_json::Value,
    limits: &CallLimits,
) -> Result<Result<(), String>, PolicyError> {
    let input = protocol::command_input("validate-settings", settings, None)?;
    let out = run(pre, input, limits).await?;
    protocol::parse_settings_answer(&out.stdout)
}
