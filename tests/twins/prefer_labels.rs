//! The native twin of the JavaScript prefer-labels plugin (`plugins/js/prefer-labels/plugin.js`):
//! the same rule written again in Rust, behind the guest trait a wasm instance has, so the tests
//! can check the component against an independent implementation through the same host.
//! Keep the two in step: settings checks (and their messages), the view kept from deltas, the
//! scores.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use wkube::plugin_host::scheduler::types::{Delta, Normalization, PodView, PreFilter, Verdict};
use wkube::plugin_host::scheduler::{Guest, GuestFactory, PluginError};
use wkube::plugin_host::CallLimits;

/// The plugin's bound on one label's weight.
const MAX_WEIGHT: i64 = 1000;

/// One preferred label: key, value and what carrying it is worth.
type Wanted = (String, String, i64);

/// Parses `spec.settings` as the plugin does, with the same first complaint. serde_json's
/// objects are sorted maps, which is why the plugin checks keys in sorted order.
pub fn parse_settings(text: &str) -> Result<Vec<Wanted>, String> {
    let text = if text.is_empty() { "{}" } else { text };
    let s: Value = serde_json::from_str(text).map_err(|e| format!("settings are not JSON: {e}"))?;
    let Value::Object(s) = s else {
        return Err("settings must be an object".into());
    };
    if let Some(key) = s.keys().find(|k| *k != "labels" && *k != "weights") {
        return Err(format!(
            "settings.{key}: unknown setting (known: labels, weights)"
        ));
    }
    let labels = match s.get("labels") {
        Some(Value::Object(l)) if !l.is_empty() => l,
        _ => {
            return Err(
                "settings.labels: must be an object of at least one label key -> value".into(),
            )
        }
    };
    let mut values = BTreeMap::new();
    for (key, value) in labels {
        if key.is_empty() {
            return Err("settings.labels: a label key is empty".into());
        }
        let Value::String(value) = value else {
            return Err(format!("settings.labels.{key}: {value} is not a string"));
        };
        values.insert(key.clone(), value.clone());
    }
    let empty = serde_json::Map::new();
    let weights = match s.get("weights") {
        None => &empty,
        Some(Value::Object(w)) => w,
        Some(_) => return Err("settings.weights: must be an object of label key -> weight".into()),
    };
    for (key, w) in weights {
        if !values.contains_key(key) {
            return Err(format!(
                "settings.weights.{key}: not one of settings.labels"
            ));
        }
        // JavaScript has one number type: 2.0 is the integer 2 there, so it is here too.
        let whole = w
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= MAX_WEIGHT as f64);
        if whole.is_none() {
            return Err(format!(
                "settings.weights.{key}: {w} is not an integer in 1..={MAX_WEIGHT}"
            ));
        }
    }
    Ok(values
        .into_iter()
        .map(|(k, v)| {
            let w = weights
                .get(&k)
                .and_then(Value::as_f64)
                .map_or(1, |f| f as i64);
            (k, v, w)
        })
        .collect())
}

#[derive(Default)]
pub struct NativePreferLabels {
    wanted: Vec<Wanted>,
    /// Node handle -> its labels, from the deltas.
    nodes: HashMap<u32, BTreeMap<String, String>>,
}

impl NativePreferLabels {
    fn score_of(&self, handle: u32) -> i64 {
        let Some(labels) = self.nodes.get(&handle) else {
            return 0;
        };
        self.wanted
            .iter()
            .filter(|(k, v, _)| labels.get(k) == Some(v))
            .map(|(_, _, w)| w)
            .sum()
    }
}

impl Guest for NativePreferLabels {
    fn configure(&mut self, settings: &str) -> Result<Result<Normalization, String>, PluginError> {
        Ok(parse_settings(settings).map(|w| {
            self.wanted = w;
            Normalization::Scale
        }))
    }

    fn sync(&mut self, d: &Delta) -> Result<(), PluginError> {
        if d.reset {
            self.nodes.clear();
        }
        for n in &d.nodes_removed {
            self.nodes.remove(n);
        }
        for n in &d.nodes {
            self.nodes.insert(n.handle, n.labels.clone());
        }
        Ok(())
    }

    fn pre_filter(&mut self, _: &PodView) -> Result<PreFilter, PluginError> {
        Ok(PreFilter::All)
    }

    fn filter(&mut self, _: &PodView, c: &[u32]) -> Result<Vec<Verdict>, PluginError> {
        Ok(c.iter().map(|_| Verdict::Pass).collect())
    }

    fn score(&mut self, _: &PodView, c: &[u32]) -> Result<Vec<i64>, PluginError> {
        Ok(c.iter().map(|h| self.score_of(*h)).collect())
    }
}

pub struct PreferLabelsFactory;

impl GuestFactory for PreferLabelsFactory {
    fn digest(&self) -> &str {
        "native:prefer-labels"
    }

    fn instantiate(&self, _: &CallLimits) -> Result<Box<dyn Guest>, PluginError> {
        // `configure` always comes first and sets the rule.
        Ok(Box::<NativePreferLabels>::default())
    }
}
