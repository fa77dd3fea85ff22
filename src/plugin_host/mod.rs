//! The plugin host: runs admission policies compiled to wasm inside the API server.
//!
//! A module is compiled once per digest ([`PluginHost::load`]) and resolved against its
//! imports once (an `InstancePre`); every call then gets a fresh instance from the pooling
//! allocator, runs under an epoch deadline and a memory limit ([`CallLimits`]), and yields to
//! the executor every tick, so a hostile policy costs at most its timeout and never a server
//! thread. Every way a policy can fail is a [`PolicyError`], never a panic.
//!
//! Two kinds of module implement the contract in `wit/admission`: components of the
//! `wkube:admission/policy` world ([`component`]) and WASI preview 1 commands speaking JSON over
//! stdin/stdout ([`command`]).

mod admission;
mod command;
mod component;
mod engine;
mod error;
mod limits;
mod policies;
mod protocol;
pub mod resource;
pub mod scheduler;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tracing::Instrument as _;
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

pub use admission::PolicyAdmission;
pub use engine::PluginHostConfig;
pub use error::PolicyError;
pub use limits::CallLimits;
pub use policies::PolicySet;
pub use protocol::{
    AdmissionRequest, Call, GroupVersionKind, GroupVersionResource, Operation, PolicyResponse,
    RequestUser,
};

/// Puts the cluster's admission policies into `rest`'s write path: a plugin host, the set of
/// active policies, and the controller (a task on the current runtime) that keeps that set in
/// step with the store. Policy modules named by OCI reference are pulled into `images`.
pub fn start_admission(
    rest: &crate::api::rest::Rest,
    images: Option<crate::image::ImageStore>,
) -> Result<Arc<PolicySet>, PolicyError> {
    let host = Arc::new(PluginHost::new(&PluginHostConfig::default())?);
    let set = Arc::new(PolicySet::default());
    let namespaces = rest.registry().find("", "v1", "namespaces").cloned();
    let hook = PolicyAdmission::new(set.clone(), rest.objects().clone(), namespaces);
    if !rest.install_admission(Arc::new(hook)) {
        return Err(PolicyError::Host(
            "admission control was already installed".into(),
        ));
    }
    let controller = policies::PolicyController::new(rest.clone(), host, images, set.clone());
    tokio::spawn(controller.run());
    Ok(set)
}

/// Compiles and runs policy modules. One per API server; cheap to share behind an `Arc`.
pub struct PluginHost {
    engine: Engine,
    components: wasmtime::component::Linker<component::ComponentState>,
    commands: wasmtime::Linker<command::CommandState>,
    /// Compiled modules by digest, kept while some policy uses them.
    cache: Mutex<HashMap<String, Weak<PolicyModule>>>,
}

impl PluginHost {
    pub fn new(cfg: &PluginHostConfig) -> Result<Self, PolicyError> {
        let engine = engine::build_engine(cfg)?;
        engine::start_epoch_ticker(&engine)?;
        Ok(PluginHost {
            components: component::linker(&engine)?,
            commands: command::linker(&engine)?,
            engine,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Compiles `bytes` (a component or a WASI preview 1 command), or returns the module
    /// compiled before from the same bytes.
    pub async fn load(&self, bytes: Vec<u8>) -> Result<Arc<PolicyModule>, PolicyError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if let Some(m) = self.cached(&digest) {
            return Ok(m);
        }
        let kind = detect(&bytes)?;
        let engine = self.engine.clone();
        let compiled = tokio::task::spawn_blocking(move || compile(&engine, kind, &bytes))
            .instrument(tracing::debug_span!("compile policy", %digest))
            .await
            .map_err(|e| PolicyError::Host(format!("the compile task failed: {e}")))??;
        let runner = match compiled {
            Compiled::Component(c) => Runner::Component(component::pre(&self.components, &c)?),
            Compiled::Command(m) => Runner::Command(command::pre(&self.commands, &m)?),
        };
        let module = Arc::new(PolicyModule {
            digest: digest.clone(),
            runner,
        });
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, m| m.strong_count() > 0);
        cache.insert(digest, Arc::downgrade(&module));
        Ok(module)
    }

    fn cached(&self, digest: &str) -> Option<Arc<PolicyModule>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(digest).and_then(Weak::upgrade)
    }
}

/// A compiled policy, ready to be instantiated per call.
pub struct PolicyModule {
    digest: String,
    runner: Runner,
}

enum Runner {
    Component(component::Pre),
    Command(command::Pre),
}

impl PolicyModule {
    /// `sha256:<hex>` of the module's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Calls `validate` or `mutate` with the policy's settings (JSON) on one request.
    pub async fn call(
        &self,
        call: Call,
        settings: &Value,
        request: &AdmissionRequest,
        limits: &CallLimits,
    ) -> Result<PolicyResponse, PolicyError> {
        let run = async {
            match &self.runner {
                Runner::Component(pre) => {
                    component::call(pre, call, &settings.to_string(), request, limits).await
                }
                Runner::Command(pre) => command::call(pre, call, settings, request, limits).await,
            }
        };
        guarded(limits, run).await
    }

    /// Calls `validate-settings`: `Ok(Err(message))` when the policy refuses the settings.
    pub async fn validate_settings(
        &self,
        settings: &Value,
        limits: &CallLimits,
    ) -> Result<Result<(), String>, PolicyError> {
        let run = async {
            match &self.runner {
                Runner::Component(pre) => {
                    component::validate_settings(pre, &settings.to_string(), limits).await
                }
                Runner::Command(pre) => command::validate_settings(pre, settings, limits).await,
            }
        };
        guarded(limits, run).await
    }
}

/// The epoch deadline stops guest code; this also bounds time spent outside it (instantiation,
/// host calls), so that no call outlives its timeout by more than a little.
async fn guarded<T>(
    limits: &CallLimits,
    run: impl std::future::Future<Output = Result<T, PolicyError>>,
) -> Result<T, PolicyError> {
    let slack = engine::EPOCH_TICK * 20;
    tokio::time::timeout(limits.timeout + slack, run)
        .await
        .unwrap_or(Err(PolicyError::Timeout(limits.timeout)))
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Component,
    Command,
}

pub(crate) enum Compiled {
    Component(Component),
    Command(Module),
}

/// Tells a core module from a component by the binary header, before compiling anything.
pub(crate) fn detect(bytes: &[u8]) -> Result<Kind, PolicyError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(PolicyError::NotWasm(
            "it does not start with the wasm magic number".into(),
        ));
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Ok(Kind::Command),
        // The component binary's version 0x0d with layer 1.
        [_, _, 1, 0] => Ok(Kind::Component),
        _ => Err(PolicyError::NotWasm(format!(
            "unknown wasm binary version {:02x?}",
            &bytes[4..8]
        ))),
    }
}

pub(crate) fn compile(engine: &Engine, kind: Kind, bytes: &[u8]) -> Result<Compiled, PolicyError> {
    let err = |e: wasmtime::Error| PolicyError::Compile(format!("{e:#}"));
    match kind {
        Kind::Component => Component::new(engine, bytes)
            .map(Compiled::Component)
            .map_err(err),
        Kind::Command => Module::new(engine, bytes)
            .map(Compiled::Command)
            .map_err(err),
    }
}
