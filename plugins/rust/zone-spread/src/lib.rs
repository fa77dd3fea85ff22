//! Spreads the pods of one group across the values of a node label (zones, racks):
//!
//! ```yaml
//! settings:
//!   topologyKey: topology.kubernetes.io/zone   # the node label whose values are domains
//!   labelKey: app                              # pods with the same value form a group
//!   maxSkew: 1                                 # Filter: most pods above the emptiest domain
//! ```
//!
//! Filter rejects nodes that would break `maxSkew` (and nodes without the label); Score
//! prefers the least-loaded domain. Pods without `labelKey` are not this plugin's business
//! (PreFilter skips them). The rule lives in `spread.rs`; this file only maps the contract.

// The generated bindings lower records into many flat arguments.
#![allow(clippy::too_many_arguments)]

mod spread;

use std::cell::RefCell;

use spread::{Settings, Spread};

wit_bindgen::generate!({ path: "../../../wit/scheduler", world: "plugin" });

use wkube::scheduler::types::Rejection;

thread_local! {
    /// The instance's state: wasm instances are single-threaded and live across calls.
    static STATE: RefCell<Option<Spread>> = const { RefCell::new(None) };
}

fn with<T>(f: impl FnOnce(&mut Spread) -> T) -> T {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        // `configure` always comes first; defaults keep a misbehaving host from trapping us.
        let spread = s.get_or_insert_with(|| {
            Spread::new(Settings::parse("{}").unwrap_or(Settings {
                topology_key: "topology.kubernetes.io/zone".into(),
                label_key: "app".into(),
                max_skew: 1,
            }))
        });
        f(spread)
    })
}

struct ZoneSpread;

impl Guest for ZoneSpread {
    fn configure(settings: String) -> Result<Normalization, String> {
        let settings = Settings::parse(&settings)?;
        STATE.with(|s| *s.borrow_mut() = Some(Spread::new(settings)));
        Ok(Normalization::ScaleReverse)
    }

    fn sync(delta: Delta) {
        with(|s| {
            if delta.reset {
                s.reset();
            }
            for p in delta.pods_removed {
                s.remove_pod(p);
            }
            for n in delta.nodes_removed {
                s.remove_node(n);
            }
            for n in &delta.nodes {
                s.upsert_node(n.handle, &n.labels);
            }
            for p in &delta.pods {
                s.upsert_pod(p.handle, &p.namespace, &p.labels, p.node);
            }
        })
    }

    fn pre_filter(pod: Pod) -> PreFilterResult {
        match with(|s| s.group(&pod.namespace, &pod.labels)) {
            Some(_) => PreFilterResult::All,
            None => PreFilterResult::Skip,
        }
    }

    fn filter(pod: Pod, candidates: Vec<u32>) -> Vec<Verdict> {
        with(|s| {
            let Some(group) = s.group(&pod.namespace, &pod.labels) else {
                return candidates.iter().map(|_| Verdict::Pass).collect();
            };
            s.filter(&group, &candidates)
                .into_iter()
                .map(|r| match r {
                    None => Verdict::Pass,
                    Some((reason, unresolvable)) => Verdict::Reject(Rejection {
                        reasons: vec![reason],
                        unresolvable,
                    }),
                })
                .collect()
        })
    }

    fn score(pod: Pod, candidates: Vec<u32>) -> Vec<i64> {
        with(|s| match s.group(&pod.namespace, &pod.labels) {
            Some(group) => s.score(&group, &candidates),
            None => vec![0; candidates.len()],
        })
    }
}

export!(ZoneSpread);
