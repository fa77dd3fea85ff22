//! The native twin of the zone-spread plugin: its own `spread.rs`, compiled natively, behind
//! the same guest trait a wasm instance has. Included by the tests and the benchmark.

#[allow(dead_code)]
#[path = "../../plugins/rust/zone-spread/src/spread.rs"]
mod spread;

use std::collections::BTreeMap;

use wkube::plugin_host::scheduler::types::{Delta, Normalization, PodView, PreFilter, Verdict};
use wkube::plugin_host::scheduler::{Guest, GuestFactory, PluginError};
use wkube::plugin_host::CallLimits;

pub struct NativeSpread(spread::Spread);

fn pairs(m: &BTreeMap<String, String>) -> Vec<(String, String)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl Guest for NativeSpread {
    fn configure(&mut self, settings: &str) -> Result<Result<Normalization, String>, PluginError> {
        Ok(spread::Settings::parse(settings).map(|s| {
            self.0 = spread::Spread::new(s);
            Normalization::ScaleReverse
        }))
    }

    fn sync(&mut self, d: &Delta) -> Result<(), PluginError> {
        if d.reset {
            self.0.reset();
        }
        d.pods_removed.iter().for_each(|p| self.0.remove_pod(*p));
        d.nodes_removed.iter().for_each(|n| self.0.remove_node(*n));
        for n in &d.nodes {
            self.0.upsert_node(n.handle, &pairs(&n.labels));
        }
        for p in &d.pods {
            self.0
                .upsert_pod(p.handle, &p.namespace, &pairs(&p.labels), p.node);
        }
        Ok(())
    }

    fn pre_filter(&mut self, pod: &PodView) -> Result<PreFilter, PluginError> {
        Ok(match self.0.group(&pod.namespace, &pairs(&pod.labels)) {
            Some(_) => PreFilter::All,
            None => PreFilter::Skip,
        })
    }

    fn filter(&mut self, pod: &PodView, c: &[u32]) -> Result<Vec<Verdict>, PluginError> {
        let Some(g) = self.0.group(&pod.namespace, &pairs(&pod.labels)) else {
            return Ok(c.iter().map(|_| Verdict::Pass).collect());
        };
        Ok(self
            .0
            .filter(&g, c)
            .into_iter()
            .map(|r| match r {
                None => Verdict::Pass,
                Some((m, u)) => Verdict::Reject {
                    reasons: vec![m],
                    unresolvable: u,
                },
            })
            .collect())
    }

    fn score(&mut self, pod: &PodView, c: &[u32]) -> Result<Vec<i64>, PluginError> {
        Ok(match self.0.group(&pod.namespace, &pairs(&pod.labels)) {
            Some(g) => self.0.score(&g, c),
            None => vec![0; c.len()],
        })
    }
}

pub struct NativeFactory;

impl GuestFactory for NativeFactory {
    fn digest(&self) -> &str {
        "native:zone-spread"
    }

    fn instantiate(&self, _: &CallLimits) -> Result<Box<dyn Guest>, PluginError> {
        let settings = spread::Settings::parse("{}").map_err(PluginError::Settings)?;
        Ok(Box::new(NativeSpread(spread::Spread::new(settings))))
    }
}
