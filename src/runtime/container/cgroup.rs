//! What the runtime reads from a container's cgroup itself (libcontainer creates, configures
//! and deletes it): the OOM-kill counter, and where the cgroup's directories are.
//!
//! The kernel counts OOM kills per memory cgroup: cgroup v1 in `memory.oom_control`
//! (`oom_kill N`, since Linux 4.13), cgroup v2 in `memory.events` (`oom_kill N`). Both are
//! read, so whichever hierarchy holds the memory controller on this host answers; on the
//! hybrid hosts wkube is built on that is v1 (the unified mount carries only hugetlb).

use std::path::{Path, PathBuf};

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Every parent directory wkube's container cgroups live under (`/wkube/<id>`).
pub const PARENT: &str = "wkube";

/// The `cgroupsPath` of a container: `/wkube/<id>`, relative to each hierarchy's root.
pub fn cgroups_path(container_id: &str) -> String {
    format!("/{PARENT}/{container_id}")
}

/// Every directory the cgroup `path` may have: one per v1 controller and the v2 (unified or
/// pure v2) hierarchy.
pub fn directories(path: &str) -> Vec<PathBuf> {
    directories_under(Path::new(CGROUP_ROOT), path)
}

fn directories_under(root: &Path, path: &str) -> Vec<PathBuf> {
    let relative = path.trim_start_matches('/');
    let mut out = vec![root.join(relative), root.join("unified").join(relative)];
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let is_hierarchy =
                entry.file_type().is_ok_and(|t| t.is_dir()) && entry.file_name() != "unified";
            if is_hierarchy {
                out.push(entry.path().join(relative));
            }
        }
    }
    out
}

/// How many processes of the cgroup the kernel's OOM killer has killed (0 when unknown).
pub fn oom_kills(path: &str) -> u64 {
    directories(path)
        .iter()
        .filter_map(|dir| {
            let v1 = std::fs::read_to_string(dir.join("memory.oom_control"));
            let v2 = std::fs::read_to_string(dir.join("memory.events"));
            v1.ok()
                .and_then(|t| oom_kill_field(&t))
                .or_else(|| v2.ok().and_then(|t| oom_kill_field(&t)))
        })
        .max()
        .unwrap_or(0)
}

/// The `oom_kill N` line of `memory.oom_control` (v1) or `memory.events` (v2).
fn oom_kill_field(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_formats() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_field(v1), Some(2));
        assert_eq!(oom_kill_field(v2), Some(1));
        assert_eq!(oom_kill_field("oom 3\n"), None);
    }

    #[test]
    fn directories_cover_every_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        for h in ["memory", "cpu,cpuacct", "unified"] {
            std::fs::create_dir(root.path().join(h)).unwrap();
        }
        let dirs = directories_under(root.path(), &cgroups_path("c1"));
        assert!(dirs.contains(&root.path().join("memory/wkube/c1")));
        assert!(dirs.contains(&root.path().join("cpu,cpuacct/wkube/c1")));
        assert!(dirs.contains(&root.path().join("unified/wkube/c1")));
        assert!(dirs.contains(&root.path().join("wkube/c1")));
    }
}
