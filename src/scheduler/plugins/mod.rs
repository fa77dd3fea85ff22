//! The built-in plugins and the default profile.
//!
//! Each one is a direct port of the upstream plugin of the same name, restricted to what wkube
//! needs, plus RuntimeFit (wasm vs Linux nodes), which has no upstream counterpart.

mod image_locality;
mod inter_pod_affinity;
mod node_affinity;
mod node_resources;
mod runtime_fit;
mod taints;
mod topology_spread;

pub use image_locality::ImageLocality;
pub use inter_pod_affinity::InterPodAffinity;
pub use node_affinity::{node_selector_term_matches, NodeAffinity};
pub use node_resources::{BalancedAllocation, LeastAllocated, NodeResourcesFit};
pub use runtime_fit::RuntimeFit;
pub use taints::{tolerates, NodeReady, NodeUnschedulable, TaintToleration};
pub use topology_spread::PodTopologySpread;

use super::framework::Framework;

/// The default profile. Filter order follows upstream's (cheap, unresolvable checks first);
/// only the first failing filter names a node's reason, so the order shows in messages.
///
/// The per-node score plugins weigh 1 here (upstream weighs TaintToleration 3 and NodeAffinity
/// 2; build a [`Framework`] by hand to get those); the cross-node ones, InterPodAffinity and
/// PodTopologySpread, weigh 2 as upstream, so spreading holds its own against packing.
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
    .with_cluster_plugins(
        vec![
            Box::new(PodTopologySpread::default()),
            Box::new(InterPodAffinity::default()),
        ],
        vec![
            Box::new(PodTopologySpread::default()),
            Box::new(InterPodAffinity::default()),
            Box::new(ImageLocality),
        ],
    )
}
