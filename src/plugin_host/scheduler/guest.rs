//! A loaded plugin instance behind one small trait, whatever it is made of: a component of
//! the `wkube:scheduler/plugin` world (stateful, [`ComponentGuest`]), a WASI preview 1 command
//! (stateless JSON, [`CommandGuest`]), or native code (the tests' and benchmark's twins).

use super::types::{Delta, Normalization, PodView, PreFilter, Verdict};
use super::PluginError;

/// One live plugin instance. Calls come from one thread at a time, in the contract's order
/// (configure first, then syncs and calls). After an error the host drops the instance.
pub trait Guest: Send {
    /// `Ok(Err(message))`: the plugin refuses its settings.
    fn configure(&mut self, settings: &str) -> Result<Result<Normalization, String>, PluginError>;
    fn sync(&mut self, delta: &Delta) -> Result<(), PluginError>;
    fn pre_filter(&mut self, pod: &PodView) -> Result<PreFilter, PluginError>;
    /// One verdict per candidate (the host checks the length).
    fn filter(&mut self, pod: &PodView, candidates: &[u32]) -> Result<Vec<Verdict>, PluginError>;
    /// One raw score per candidate (the host checks the length).
    fn score(&mut self, pod: &PodView, candidates: &[u32]) -> Result<Vec<i64>, PluginError>;
}

/// Makes instances of one plugin: a compiled module, or a native twin.
pub trait GuestFactory: Send + Sync {
    /// `sha256:<hex>` of the module (or a name for native code).
    fn digest(&self) -> &str;
    fn instantiate(
        &self,
        limits: &crate::plugin_host::CallLimits,
    ) -> Result<Box<dyn Guest>, PluginError>;
}
