//! ImageLocality (upstream's plugin of the same name): prefers nodes that already hold the
//! pod's images, so a pod starts without a pull. The score grows with the size of the images
//! present and is scaled by how widely each image is spread over the cluster, so that the one
//! node holding a big image does not attract every pod that uses it (upstream's guard against
//! "node heating").

use std::collections::HashMap;

use crate::scheduler::framework::{
    ClusterScorePlugin, NodeInfo, NodeScorer, PodInfo, MAX_NODE_SCORE,
};

const MB: i64 = 1024 * 1024;
/// Below this much image data present the score is 0: small images are cheap to pull.
const MIN_THRESHOLD: i64 = 23 * MB;
/// Per container, image data beyond this counts no more.
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

#[derive(Clone, Copy, Debug, Default)]
pub struct ImageLocality;

impl ClusterScorePlugin for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }

    fn weight(&self) -> i64 {
        1
    }

    fn pre_score(
        &self,
        pod: &PodInfo,
        all: &[&NodeInfo],
        _feasible: &[&NodeInfo],
    ) -> Option<Box<dyn NodeScorer>> {
        if pod.images.is_empty() {
            return None;
        }
        let mut holders: HashMap<String, usize> = HashMap::new();
        for node in all.iter().filter(|n| !n.images.is_empty()) {
            for image in &pod.images {
                if node.images.contains_key(image) {
                    *holders.entry(image.clone()).or_default() += 1;
                }
            }
        }
        // No node holds any of the images: every node scores 0, nothing to rank.
        if holders.is_empty() {
            return None;
        }
        Some(Box::new(ImageScores {
            images: pod.images.clone(),
            holders,
            total_nodes: all.len().max(1),
        }))
    }
}

struct ImageScores {
    /// One entry per container (init containers included), as upstream sums them.
    images: Vec<String>,
    holders: HashMap<String, usize>,
    total_nodes: usize,
}

impl NodeScorer for ImageScores {
    fn score(&self, node: &NodeInfo) -> i64 {
        let present: i64 = self
            .images
            .iter()
            .filter_map(|image| {
                let size = *node.images.get(image)?;
                let spread = *self.holders.get(image)? as i64;
                Some(size.saturating_mul(spread) / self.total_nodes as i64)
            })
            .sum();
        let max_threshold = MAX_CONTAINER_THRESHOLD * self.images.len() as i64;
        let clamped = present.clamp(MIN_THRESHOLD, max_threshold);
        MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max_threshold - MIN_THRESHOLD)
    }

    /// Already in `0..=MAX_NODE_SCORE`.
    fn normalize(&self, _scores: &mut [i64]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};

    fn holding(name: &str, images: &[(&str, i64)]) -> NodeInfo {
        let mut n = node(name);
        n.images = images.iter().map(|(i, s)| (i.to_string(), *s)).collect();
        n
    }

    fn scores(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<i64> {
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        match ImageLocality.pre_score(p, &refs, &refs) {
            None => vec![0; nodes.len()],
            Some(s) => nodes.iter().map(|n| s.score(n)).collect(),
        }
    }

    fn using(images: &[&str]) -> PodInfo {
        let mut p = pod("p");
        p.images = images.iter().map(|i| i.to_string()).collect();
        p
    }

    const BIG: &str = "docker.io/library/big:latest";
    const SMALL: &str = "docker.io/library/small:latest";

    #[test]
    fn a_node_with_the_image_wins_in_proportion_to_size_and_spread() {
        let nodes = vec![
            holding("a", &[(BIG, 500 * MB)]),
            holding("b", &[(BIG, 500 * MB)]),
            holding("c", &[]),
            holding("d", &[]),
        ];
        let s = scores(&using(&[BIG]), &nodes);
        // 500 MB held by 2 of 4 nodes counts as 250 MB: (250 - 23) / (1000 - 23) of 100.
        assert_eq!(s, vec![23, 23, 0, 0]);
        // Held everywhere it counts in full, on every node alike.
        let everywhere: Vec<NodeInfo> = (0..4)
            .map(|i| holding(&format!("n{i}"), &[(BIG, 500 * MB)]))
            .collect();
        assert_eq!(scores(&using(&[BIG]), &everywhere), vec![48; 4]);
    }

    #[test]
    fn small_images_and_pods_without_images_score_nothing() {
        let nodes = vec![holding("a", &[(SMALL, 5 * MB)]), holding("b", &[])];
        assert_eq!(scores(&using(&[SMALL]), &nodes), vec![0, 0]);
        assert_eq!(scores(&using(&[]), &nodes), vec![0, 0]);
    }

    #[test]
    fn the_ceiling_grows_with_the_number_of_containers() {
        let nodes = vec![holding("a", &[(BIG, 1000 * MB)])];
        assert_eq!(scores(&using(&[BIG]), &nodes), vec![100]);
        // Two containers and only one image present: (1000 - 23) / (2000 - 23) of 100.
        assert_eq!(scores(&using(&[BIG, SMALL]), &nodes), vec![49]);
    }
}
