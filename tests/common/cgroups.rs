//! Finds the cgroups the container runtime made for a pod, in every hierarchy, so tests can
//! check that none is left behind.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

fn dirs(p: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

/// Every cgroup directory (any hierarchy, under any runtime's `/wkube/<tag>`) of a container
/// of the pod with this uid (container cgroups are named after its first 13 characters).
pub fn pod_cgroups(uid: &str) -> Vec<PathBuf> {
    let prefix: String = uid.chars().take(13).collect();
    let mut out = Vec::new();
    for hierarchy in dirs(Path::new("/sys/fs/cgroup")) {
        for runtime in dirs(&hierarchy.join("wkube")) {
            for cgroup in dirs(&runtime) {
                let name = cgroup.file_name().unwrap_or_default().to_string_lossy();
                if name.starts_with(&prefix) {
                    out.push(cgroup);
                }
            }
        }
    }
    out
}
