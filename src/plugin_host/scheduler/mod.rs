//! Scheduler plugins compiled to wasm (`SchedulerPlugin` objects, contract `wit/scheduler`).
//!
//! [`SchedulerHost`] compiles modules (once per digest, on the admission host's pooled
//! engine configuration but without async support); [`WasmPlugin`] runs one loaded plugin as
//! a framework [`crate::scheduler::framework::ExtensionPlugin`], keeping the plugin's view of
//! the cluster current with deltas; [`PluginSet`] is the live set the framework consults per
//! pod; [`controller`] keeps that set in step with the API objects.

mod command;
mod component;
pub mod controller;
mod guest;
pub mod kind;
mod mirror;
mod plugin;
pub mod types;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;

pub use guest::{Guest, GuestFactory};
pub use plugin::{normalize, Health, PluginSpec, Reporter, WasmPlugin, COOLDOWN};

use super::component::ComponentState;
use super::engine::{build_blocking_engine, start_epoch_ticker, PluginHostConfig};
use super::{compile, detect, Compiled, PolicyError};
use crate::scheduler::framework::{ExtensionPlugin, Extensions};

/// Everything that can go wrong with a scheduler plugin; each follows its `failurePolicy`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PluginError {
    #[error("the module is not WebAssembly: {0}")]
    NotWasm(String),
    #[error("the module does not compile: {0}")]
    Compile(String),
    #[error("the module does not implement wkube:scheduler@0.1.0: {0}")]
    Contract(String),
    #[error("the plugin could not be instantiated: {0}")]
    Instantiate(String),
    #[error("the plugin did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the plugin needed more memory than its limit of {0} bytes")]
    MemoryLimit(u64),
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error("the plugin's answer is malformed: {0}")]
    BadAnswer(String),
    #[error("the plugin refused its settings: {0}")]
    Settings(String),
    #[error("the plugin host failed: {0}")]
    Host(String),
}

impl From<PolicyError> for PluginError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::NotWasm(m) => PluginError::NotWasm(m),
            PolicyError::Compile(m) => PluginError::Compile(m),
            PolicyError::Contract(m) => PluginError::Contract(m),
            PolicyError::Instantiate(m) => PluginError::Instantiate(m),
            PolicyError::Timeout(t) => PluginError::Timeout(t),
            PolicyError::MemoryLimit(b) => PluginError::MemoryLimit(b),
            PolicyError::Trap(m) => PluginError::Trap(m),
            PolicyError::Exit { code, stderr } => {
                PluginError::BadAnswer(format!("exited with status {code}{stderr}"))
            }
            PolicyError::BadResponse(m) => PluginError::BadAnswer(m),
            PolicyError::Host(m) => PluginError::Host(m),
        }
    }
}

/// Compiles scheduler plugin modules. One per scheduler.
pub struct SchedulerHost {
    engine: Engine,
    components: wasmtime::component::Linker<ComponentState>,
    commands: wasmtime::Linker<command::CommandState>,
    cache: Mutex<HashMap<String, Weak<dyn GuestFactory>>>,
}

impl SchedulerHost {
    pub fn new() -> Result<Self, PluginError> {
        // Each loaded plugin holds one instance for good (components) or one per call
        // (commands): a small pool is plenty.
        let cfg = PluginHostConfig {
            max_concurrent_calls: 64,
            max_memory_bytes: 256 << 20,
        };
        let engine = build_blocking_engine(&cfg)?;
        start_epoch_ticker(&engine)?;
        Ok(SchedulerHost {
            components: component::linker(&engine)?,
            commands: command::linker(&engine)?,
            engine,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Compiles `bytes` (a component or a WASI preview 1 command), or returns what was
    /// compiled from the same bytes before. Blocking: compiling takes a while.
    pub fn load(&self, bytes: &[u8]) -> Result<Arc<dyn GuestFactory>, PluginError> {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        if let Some(f) = self.cached(&digest) {
            return Ok(f);
        }
        let factory: Arc<dyn GuestFactory> = match compile(&self.engine, detect(bytes)?, bytes)? {
            Compiled::Component(c) => Arc::new(component::ComponentFactory::new(
                &self.components,
                &c,
                digest.clone(),
            )?),
            Compiled::Command(m) => Arc::new(command::CommandFactory::new(
                &self.commands,
                &m,
                digest.clone(),
            )?),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, f| f.strong_count() > 0);
        cache.insert(digest, Arc::downgrade(&factory));
        Ok(factory)
    }

    fn cached(&self, digest: &str) -> Option<Arc<dyn GuestFactory>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(digest).and_then(Weak::upgrade)
    }
}

/// A plugin in the set, with the profiles (`schedulerName`s) that use it.
struct Member {
    plugin: Arc<dyn ExtensionPlugin>,
    profiles: Vec<String>,
}

/// The live set of scheduler plugins, by object name (which is also the run order).
pub struct PluginSet {
    members: RwLock<BTreeMap<String, Member>>,
    changes: tokio::sync::watch::Sender<u64>,
}

impl Default for PluginSet {
    fn default() -> Self {
        PluginSet {
            members: RwLock::default(),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl PluginSet {
    pub fn insert(&self, name: &str, plugin: Arc<dyn ExtensionPlugin>, profiles: Vec<String>) {
        let mut m = self.members.write().unwrap_or_else(|p| p.into_inner());
        m.insert(name.to_string(), Member { plugin, profiles });
        self.changes.send_modify(|v| *v += 1);
    }

    pub fn remove(&self, name: &str) -> bool {
        let mut m = self.members.write().unwrap_or_else(|p| p.into_inner());
        let removed = m.remove(name).is_some();
        if removed {
            self.changes.send_modify(|v| *v += 1);
        }
        removed
    }

    pub fn names(&self) -> Vec<String> {
        let m = self.members.read().unwrap_or_else(|p| p.into_inner());
        m.keys().cloned().collect()
    }
}

impl Extensions for PluginSet {
    fn for_profile(&self, scheduler_name: &str) -> Vec<Arc<dyn ExtensionPlugin>> {
        let m = self.members.read().unwrap_or_else(|p| p.into_inner());
        m.values()
            .filter(|m| m.profiles.iter().any(|p| p == scheduler_name))
            .map(|m| m.plugin.clone())
            .collect()
    }

    fn serves(&self, scheduler_name: &str) -> bool {
        let m = self.members.read().unwrap_or_else(|p| p.into_inner());
        m.values()
            .any(|m| m.profiles.iter().any(|p| p == scheduler_name))
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
