//! The zone-spread rule itself, free of any wasm binding, so that the same source is the
//! plugin (through `lib.rs`) and its native twin (included by wkube's tests and benchmark).
//!
//! Pods of one *group* (same namespace, same value of the label `labelKey`, default `app`)
//! are spread across the *domains* given by a node label (`topologyKey`, default
//! `topology.kubernetes.io/zone`): a node is rejected when placing the pod there would make
//! its domain hold more than `maxSkew` (default 1) pods of the group above the emptiest
//! domain, and nodes of less-loaded domains score higher. Nodes without the label are
//! rejected. Counts are kept incrementally from the host's deltas, so a call costs
//! O(candidates), not O(cluster).

use std::collections::HashMap;

/// The plugin's settings (`spec.settings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub topology_key: String,
    pub label_key: String,
    pub max_skew: i64,
}

impl Settings {
    pub fn parse(json: &str) -> Result<Settings, String> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("settings are not JSON: {e}"))?;
        let text = |key: &str, default: &str| -> Result<String, String> {
            match v.get(key) {
                None => Ok(default.to_string()),
                Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(other) => Err(format!("settings.{key}: {other} is not a label key")),
            }
        };
        let max_skew = match v.get("maxSkew") {
            None => 1,
            Some(n) => match n.as_i64() {
                Some(n) if n >= 1 => n,
                _ => return Err(format!("settings.maxSkew: {n} is not an integer >= 1")),
            },
        };
        Ok(Settings {
            topology_key: text("topologyKey", "topology.kubernetes.io/zone")?,
            label_key: text("labelKey", "app")?,
            max_skew,
        })
    }
}

/// Why a node is rejected: (message, unresolvable).
pub type Rejection = (String, bool);

struct PodEntry {
    node: u32,
    /// (namespace, group value) when the pod belongs to a group.
    group: Option<(String, String)>,
}

/// The plugin's view of the cluster and the per-group counts derived from it.
pub struct Spread {
    settings: Settings,
    /// Node handle -> its domain (the topology label's value), if it has one.
    nodes: HashMap<u32, Option<String>>,
    /// Domain -> how many nodes carry it (a domain exists while it has nodes).
    domain_nodes: HashMap<String, u32>,
    pods: HashMap<u32, PodEntry>,
    /// Group -> domain -> pods of the group there.
    counts: HashMap<(String, String), HashMap<String, i64>>,
    /// A node changed domain or went away: recount everything before the next answer.
    stale: bool,
}

fn label<'a>(labels: &'a [(String, String)], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl Spread {
    pub fn new(settings: Settings) -> Spread {
        Spread {
            settings,
            nodes: HashMap::new(),
            domain_nodes: HashMap::new(),
            pods: HashMap::new(),
            counts: HashMap::new(),
            stale: false,
        }
    }

    pub fn reset(&mut self) {
        *self = Spread::new(self.settings.clone());
    }

    /// The pod's group, or `None` when the rule does not apply to it.
    pub fn group(&self, namespace: &str, labels: &[(String, String)]) -> Option<(String, String)> {
        label(labels, &self.settings.label_key).map(|v| (namespace.to_string(), v.to_string()))
    }

    pub fn upsert_node(&mut self, handle: u32, labels: &[(String, String)]) {
        let domain = label(labels, &self.settings.topology_key).map(str::to_string);
        if let Some(old) = self.nodes.get(&handle) {
            if *old == domain {
                return;
            }
            // Its pods now count in another domain.
            self.remove_node(handle);
        }
        if let Some(d) = &domain {
            *self.domain_nodes.entry(d.clone()).or_insert(0) += 1;
        }
        self.nodes.insert(handle, domain);
    }

    pub fn remove_node(&mut self, handle: u32) {
        if let Some(Some(d)) = self.nodes.remove(&handle) {
            if let Some(n) = self.domain_nodes.get_mut(&d) {
                *n -= 1;
                if *n == 0 {
                    self.domain_nodes.remove(&d);
                }
            }
        }
        self.stale = true;
    }

    pub fn upsert_pod(
        &mut self,
        handle: u32,
        namespace: &str,
        labels: &[(String, String)],
        node: u32,
    ) {
        self.remove_pod(handle);
        let entry = PodEntry {
            node,
            group: self.group(namespace, labels),
        };
        self.count(&entry, 1);
        self.pods.insert(handle, entry);
    }

    pub fn remove_pod(&mut self, handle: u32) {
        if let Some(entry) = self.pods.remove(&handle) {
            self.count(&entry, -1);
        }
    }

    fn count(&mut self, entry: &PodEntry, by: i64) {
        let (Some(group), false) = (&entry.group, self.stale) else {
            return;
        };
        let Some(Some(domain)) = self.nodes.get(&entry.node) else {
            return;
        };
        let per_domain = self.counts.entry(group.clone()).or_default();
        *per_domain.entry(domain.clone()).or_insert(0) += by;
    }

    fn recount(&mut self) {
        if !self.stale {
            return;
        }
        self.stale = false;
        self.counts.clear();
        let entries: Vec<(u32, Option<(String, String)>)> = self
            .pods
            .values()
            .map(|p| (p.node, p.group.clone()))
            .collect();
        for (node, group) in entries {
            self.count(&PodEntry { node, group }, 1);
        }
    }

    /// The group's count in each candidate's domain (`None`: no domain) and the minimum over
    /// all domains.
    fn loads(&mut self, group: &(String, String), candidates: &[u32]) -> (Vec<Option<i64>>, i64) {
        self.recount();
        let empty = HashMap::new();
        let per_domain = self.counts.get(group).unwrap_or(&empty);
        let min = self
            .domain_nodes
            .keys()
            .map(|d| per_domain.get(d).copied().unwrap_or(0))
            .min()
            .unwrap_or(0);
        let loads = candidates
            .iter()
            .map(|h| match self.nodes.get(h) {
                Some(Some(d)) => Some(per_domain.get(d).copied().unwrap_or(0)),
                _ => None,
            })
            .collect();
        (loads, min)
    }

    /// One verdict per candidate: `None` passes.
    pub fn filter(
        &mut self,
        group: &(String, String),
        candidates: &[u32],
    ) -> Vec<Option<Rejection>> {
        let (loads, min) = self.loads(group, candidates);
        let max_skew = self.settings.max_skew;
        let key = self.settings.topology_key.clone();
        loads
            .into_iter()
            .map(|load| match load {
                None => Some((format!("node(s) didn't have label {key}"), true)),
                Some(n) if n + 1 - min > max_skew => Some((
                    format!("node(s) would exceed zone-spread maxSkew {max_skew} over {key}"),
                    false,
                )),
                Some(_) => None,
            })
            .collect()
    }

    /// One raw score per candidate: the group's count in its domain (fewer is better; the
    /// host reverses the scale). Nodes without a domain count as the fullest.
    pub fn score(&mut self, group: &(String, String), candidates: &[u32]) -> Vec<i64> {
        let (loads, _) = self.loads(group, candidates);
        let worst = loads.iter().flatten().copied().max().unwrap_or(0) + 1;
        loads.into_iter().map(|l| l.unwrap_or(worst)).collect()
    }
}
