//! Plugins that are components of the `wkube:scheduler/plugin` world: one instance (one
//! store) per loaded plugin, kept across calls so the plugin's own view of the cluster lives.

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::guest::{Guest, GuestFactory};
use super::types::{Delta, Normalization, PodView, PreFilter, Verdict};
use super::PluginError;
use crate::plugin_host::component::ComponentState;
use crate::plugin_host::limits::{arm_deadline_blocking, classify};
use crate::plugin_host::CallLimits;

mod bindings {
    wasmtime::component::bindgen!({ path: "wit/scheduler", world: "plugin" });
}

use bindings::wkube::scheduler::types as wit;
use bindings::{Plugin, PluginPre};

/// WASI preview 2 (blocking flavour: plugin calls run on a thread of their own) is all a
/// plugin may import.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<ComponentState>, PluginError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|e| PluginError::Host(format!("setting up WASI preview 2: {e:#}")))?;
    Ok(linker)
}

/// A compiled component resolved against the linker once.
pub(crate) struct ComponentFactory {
    pub(crate) digest: String,
    pre: PluginPre<ComponentState>,
}

impl ComponentFactory {
    pub(crate) fn new(
        linker: &Linker<ComponentState>,
        component: &Component,
        digest: String,
    ) -> Result<Self, PluginError> {
        let pre = linker.instantiate_pre(component).map_err(|e| {
            PluginError::Contract(format!("it imports more than WASI preview 2: {e:#}"))
        })?;
        let pre = PluginPre::new(pre).map_err(|e| PluginError::Contract(format!("{e:#}")))?;
        Ok(ComponentFactory { digest, pre })
    }
}

impl GuestFactory for ComponentFactory {
    fn digest(&self) -> &str {
        &self.digest
    }

    fn instantiate(&self, limits: &CallLimits) -> Result<Box<dyn Guest>, PluginError> {
        let mut store = Store::new(self.pre.engine(), ComponentState::new(limits.memory_bytes));
        store.limiter(|s| s.limiter());
        arm_deadline_blocking(&mut store, limits.timeout);
        let plugin = self.pre.instantiate(&mut store).map_err(|e| {
            if store.data().memory_hit() {
                PluginError::MemoryLimit(limits.memory_bytes)
            } else {
                PluginError::Instantiate(format!("{e:#}"))
            }
        })?;
        Ok(Box::new(ComponentGuest {
            store,
            plugin,
            limits: *limits,
        }))
    }
}

pub(crate) struct ComponentGuest {
    store: Store<ComponentState>,
    plugin: Plugin,
    limits: CallLimits,
}

impl ComponentGuest {
    /// Runs one export under a fresh deadline; a failure names its cause.
    fn run<T>(
        &mut self,
        f: impl FnOnce(&Plugin, &mut Store<ComponentState>) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        arm_deadline_blocking(&mut self.store, self.limits.timeout);
        let out = f(&self.plugin, &mut self.store);
        self.store.data().log_stderr();
        out.map_err(|e| classify(&e, self.store.data().memory_hit(), &self.limits).into())
    }
}

fn pairs(m: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn amounts(a: &super::types::Amounts) -> wit::Resources {
    wit::Resources {
        milli_cpu: a.milli_cpu,
        memory: a.memory,
        ephemeral_storage: a.ephemeral_storage,
    }
}

fn pod_to_wit(p: &PodView) -> wit::Pod {
    wit::Pod {
        namespace: p.namespace.clone(),
        name: p.name.clone(),
        labels: pairs(&p.labels),
        annotations: pairs(&p.annotations),
        node_selector: pairs(&p.node_selector),
        priority: p.priority,
        requests: amounts(&p.requests),
        scheduler_name: p.scheduler_name.clone(),
    }
}

fn delta_to_wit(d: &Delta) -> wit::Delta {
    wit::Delta {
        reset: d.reset,
        pods_removed: d.pods_removed.clone(),
        nodes_removed: d.nodes_removed.clone(),
        nodes: d
            .nodes
            .iter()
            .map(|n| wit::Node {
                handle: n.handle,
                name: n.name.clone(),
                labels: pairs(&n.labels),
                taints: n
                    .taints
                    .iter()
                    .map(|t| wit::Taint {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect: t.effect.clone(),
                    })
                    .collect(),
                unschedulable: n.unschedulable,
                allocatable: amounts(&n.allocatable),
                requested: amounts(&n.requested),
                pod_count: n.pod_count,
            })
            .collect(),
        pods: d
            .pods
            .iter()
            .map(|p| wit::BoundPod {
                handle: p.handle,
                namespace: p.namespace.clone(),
                name: p.name.clone(),
                labels: pairs(&p.labels),
                node: p.node,
            })
            .collect(),
    }
}

impl Guest for ComponentGuest {
    fn configure(&mut self, settings: &str) -> Result<Result<Normalization, String>, PluginError> {
        let answer = self.run(|p, s| p.call_configure(s, settings))?;
        Ok(answer.map(|n| match n {
            wit::Normalization::None => Normalization::None,
            wit::Normalization::Scale => Normalization::Scale,
            wit::Normalization::ScaleReverse => Normalization::ScaleReverse,
        }))
    }

    fn sync(&mut self, delta: &Delta) -> Result<(), PluginError> {
        let delta = delta_to_wit(delta);
        self.run(|p, s| p.call_sync(s, &delta))
    }

    fn pre_filter(&mut self, pod: &PodView) -> Result<PreFilter, PluginError> {
        let pod = pod_to_wit(pod);
        Ok(match self.run(|p, s| p.call_pre_filter(s, &pod))? {
            wit::PreFilterResult::Skip => PreFilter::Skip,
            wit::PreFilterResult::All => PreFilter::All,
            wit::PreFilterResult::Only(nodes) => PreFilter::Only(nodes),
        })
    }

    fn filter(&mut self, pod: &PodView, candidates: &[u32]) -> Result<Vec<Verdict>, PluginError> {
        let pod = pod_to_wit(pod);
        let verdicts = self.run(|p, s| p.call_filter(s, &pod, candidates))?;
        Ok(verdicts
            .into_iter()
            .map(|v| match v {
                wit::Verdict::Pass => Verdict::Pass,
                wit::Verdict::Reject(r) => Verdict::Reject {
                    reasons: r.reasons,
                    unresolvable: r.unresolvable,
                },
            })
            .collect())
    }

    fn score(&mut self, pod: &PodView, candidates: &[u32]) -> Result<Vec<i64>, PluginError> {
        let pod = pod_to_wit(pod);
        self.run(|p, s| p.call_score(s, &pod, candidates))
    }
}
