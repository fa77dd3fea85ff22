//! The built-in plugins and the default profile.
//!
//! Each one is a direct port of the upstream plugin of the same name, restricted to what wkube
//! needs, plus RuntimeFit (wasm vs Linux nodes), which has no upstream counterpart.

mod node_affinity;
mod node_resources;
mod runtime_fit;
mod taints;

pub use node_affinity::{node_selector_term_matches, NodeAffinity};
pub use node_resources::{BalancedAllocation, LeastAllocated, NodeResourcesFit};
pub use runtime_fit::RuntimeFit;
pub use taints::{tolerates, NodeReady, NodeUnschedulable, TaintToleration};

use super::framework::Framework;

/// The default profile. Filter order follows upstream's (cheap, unresolvable checks first);
/// only the first failing filter names a node's reason, so the order shows in messages.
///
/// Every score plugin weighs 1 here. Upstream's default profile weighs TaintToleration 3
/// and NodeAffinity 2; build a [`Framework`] by hand to get those.
pub fn default_framework() -> Framework {
    Framework::new(
        vec![
            Box::new(NodeUnschedulable),
            Box::new(NodeReady),
            Box::new(TaintToleration::default()),
            Box::new(NodeAffinity::default()),
            Box::new(NodeResourcesFit),
            Box::new(RuntimeFit),
        ],
        vec![
            Box::new(LeastAllocated::default()),
            Box::new(BalancedAllocation::default()),
            Box::new(NodeAffinity::default()),
            Box::new(TaintToleration::default()),
        ],
    )
}
