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
/// The directory every wkube runtime's cgroups live under.
pub const PARENT: &str = "wkube";

/// The cgroup parent of the runtime keeping its state in `root`: `/wkube/<tag>`, the tag a
/// digest of the path. One per runtime, so that a restarted agent finds (and cleans) exactly
/// its own leftovers, never those of another agent or test on the same machine.
pub fn parent_for(root: &Path) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
    format!("/{PARENT}/{}", &hex::encode(digest)[..12])
}

/// The `cgroupsPath` of a container under `parent`, relative to each hierarchy's root.
pub fn cgroups_path(parent: &str, container_id: &str) -> String {
    format!("{parent}/{container_id}")
}

/// Kills every process in the cgroups under `parent` (in every hierarchy) and removes them,
/// then `parent` itself: what a runtime left when its agent died. Returns the cgroup
/// directories that could not be removed.
pub fn remove_all_under(parent: &str) -> Vec<PathBuf> {
    let mut stuck = Vec::new();
    for dir in directories(parent) {
        let children: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        for child in children.iter().chain(std::iter::once(&dir)) {
            if !kill_and_remove(child) {
                stuck.push(child.clone());
            }
        }
    }
    stuck
}

/// SIGKILLs the processes of one cgroup directory until it is empty (bounded), then removes
/// it. True when it is gone.
fn kill_and_remove(dir: &Path) -> bool {
    for _ in 0..200 {
        let procs = super::create::cgroup_procs(dir);
        if procs.is_empty() {
            break;
        }
        for pid in procs {
            // SAFETY: plain kill(2) of a process in a cgroup this runtime owns.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
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
        let dirs = directories_under(root.path(), &cgroups_path("/wkube", "c1"));
        assert!(dirs.contains(&root.path().join("memory/wkube/c1")));
        assert!(dirs.contains(&root.path().join("cpu,cpuacct/wkube/c1")));
        assert!(dirs.contains(&root.path().join("unified/wkube/c1")));
        assert!(dirs.contains(&root.path().join("wkube/c1")));
    }
}

#[cfg(test)]
mod parent_tests {
    use super::*;

    #[test]
    fn one_parent_per_runtime_root() {
        let a = parent_for(Path::new("/var/lib/wkube/agent/containers"));
        assert!(
            a.starts_with("/wkube/") && a.len() == "/wkube/".len() + 12,
            "{a}"
        );
        assert_eq!(a, parent_for(Path::new("/var/lib/wkube/agent/containers")));
        assert_ne!(a, parent_for(Path::new("/tmp/other/containers")));
    }
}
