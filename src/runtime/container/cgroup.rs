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

/// Which cgroup version containers are placed with (the agent's `--cgroup-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// As the kubelet picks: v2 when `/sys/fs/cgroup` is a cgroup2 mount, else v1.
    #[default]
    Auto,
    V1,
    V2,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Mode::Auto),
            "v1" => Ok(Mode::V1),
            "v2" => Ok(Mode::V2),
            other => Err(format!("cgroup version {other:?}: expected auto, v1 or v2")),
        }
    }
}

/// How cgroups are laid out on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `/sys/fs/cgroup` is cgroup2.
    Unified,
    /// v1 hierarchies plus a cgroup2 mount at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// v1 hierarchies only.
    Legacy,
}

/// Who places a container's processes and applies its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// libcontainer, which picks v1 or v2 from the host's layout (the mode matches it).
    Libcontainer,
    /// v2 forced on a hybrid host: libcontainer still files the process in the v1 hierarchies
    /// (0.7 picks its manager from the layout and cannot be handed one), without limits; wkube
    /// creates the cgroup in the v2 mount at `root`, moves the process there and writes the
    /// limits whose controllers that mount has.
    OwnV2 { root: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot tell the cgroup layout of {CGROUP_ROOT}: {0}")]
    Detect(#[source] std::io::Error),
    #[error("cgroup {wanted} was asked for, but this host has only cgroup {has}")]
    Unavailable {
        wanted: &'static str,
        has: &'static str,
    },
    #[error("cgroup v2 {path}: {source}")]
    V2 {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The host's layout, as libcgroups and the kubelet tell it (the file system type of the
/// mounts).
pub fn layout() -> Result<Layout, CgroupError> {
    let is_cgroup2 = |p: &str| -> std::io::Result<bool> {
        let c = std::ffi::CString::new(p).map_err(std::io::Error::other)?;
        // SAFETY: `st` is a valid out-pointer, `c` a NUL-terminated path.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st.f_type == libc::CGROUP2_SUPER_MAGIC)
    };
    if is_cgroup2(CGROUP_ROOT).map_err(CgroupError::Detect)? {
        return Ok(Layout::Unified);
    }
    match is_cgroup2(&format!("{CGROUP_ROOT}/unified")) {
        Ok(true) => Ok(Layout::Hybrid),
        _ => Ok(Layout::Legacy),
    }
}

/// The driver for `mode` on a host with `layout`.
pub fn driver(mode: Mode, layout: Layout) -> Result<Driver, CgroupError> {
    match (mode, layout) {
        (Mode::V1, Layout::Unified) => Err(CgroupError::Unavailable {
            wanted: "v1",
            has: "v2",
        }),
        (Mode::V2, Layout::Legacy) => Err(CgroupError::Unavailable {
            wanted: "v2",
            has: "v1",
        }),
        (Mode::V2, Layout::Hybrid) => Ok(Driver::OwnV2 {
            root: Path::new(CGROUP_ROOT).join("unified"),
        }),
        _ => Ok(Driver::Libcontainer),
    }
}

/// Creates the v2 cgroup `path` under `root`, writes `files` (controller, file, value) whose
/// controller `root` offers (enabling it on the way down), and moves `pid` in. Returns the
/// limits that could not be enforced, each said in a warning too.
pub fn place_v2(
    root: &Path,
    path: &str,
    pid: i32,
    files: &[(&'static str, &'static str, String)],
) -> Result<Vec<String>, CgroupError> {
    let dir = root.join(path.trim_start_matches('/'));
    let fail = |p: &Path| {
        let path = p.to_path_buf();
        move |source| CgroupError::V2 { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(fail(&dir))?;
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let mut unenforced = Vec::new();
    for (controller, file, value) in files {
        if !available.split_whitespace().any(|c| c == *controller) {
            tracing::warn!(limit = %format!("{file}={value}"), root = %root.display(),
                "cgroup v2 mode cannot enforce this limit: the {controller} controller is not \
                 in this v2 hierarchy (on a hybrid host it is bound to a v1 hierarchy)");
            unenforced.push(format!("{file}={value}"));
            continue;
        }
        enable_down(root, &dir, controller).map_err(fail(&dir))?;
        std::fs::write(dir.join(file), value).map_err(fail(&dir.join(file)))?;
    }
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())
        .map_err(fail(&dir.join("cgroup.procs")))?;
    Ok(unenforced)
}

/// Writes `+controller` into `cgroup.subtree_control` of every directory from `root` down to
/// `dir`'s parent, so that `dir` gets the controller's files.
fn enable_down(root: &Path, dir: &Path, controller: &str) -> std::io::Result<()> {
    let Ok(relative) = dir.strip_prefix(root) else {
        return Ok(());
    };
    let mut at = root.to_path_buf();
    for part in relative.components() {
        std::fs::write(at.join("cgroup.subtree_control"), format!("+{controller}"))?;
        at.push(part);
    }
    Ok(())
}

/// Removes whatever directories of the cgroup `path` are left (empty ones only; the kernel
/// refuses others), in every hierarchy.
pub fn remove_dirs(path: &str) {
    for dir in directories(path) {
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod mode_tests {
    use super::*;

    #[test]
    fn drivers_per_layout() {
        assert_eq!(
            driver(Mode::Auto, Layout::Hybrid).unwrap(),
            Driver::Libcontainer
        );
        assert_eq!(
            driver(Mode::Auto, Layout::Unified).unwrap(),
            Driver::Libcontainer
        );
        assert_eq!(
            driver(Mode::V1, Layout::Hybrid).unwrap(),
            Driver::Libcontainer
        );
        assert!(matches!(
            driver(Mode::V2, Layout::Hybrid).unwrap(),
            Driver::OwnV2 { .. }
        ));
        assert!(driver(Mode::V1, Layout::Unified).is_err());
        assert!(driver(Mode::V2, Layout::Legacy).is_err());
        assert_eq!("v2".parse::<Mode>().unwrap(), Mode::V2);
        assert!("v3".parse::<Mode>().is_err());
    }

    /// This machine is hybrid: its unified mount offers no memory/cpu/pids controller.
    #[test]
    fn v2_placement_on_this_host_reports_what_it_cannot_enforce() {
        assert_eq!(
            layout().unwrap(),
            Layout::Hybrid,
            "the build machines are hybrid"
        );
        let root = Path::new(CGROUP_ROOT).join("unified");
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let path = "/wkube/t-place-v2";
        let files = vec![
            ("memory", "memory.max", "1048576".to_string()),
            ("pids", "pids.max", "10".to_string()),
        ];
        let unenforced = place_v2(&root, path, pid, &files).unwrap();
        assert_eq!(unenforced, vec!["memory.max=1048576", "pids.max=10"]);
        let dir = root.join("wkube/t-place-v2");
        assert_eq!(super::super::create::cgroup_procs(&dir), vec![pid]);
        child.kill().unwrap();
        child.wait().unwrap();
        remove_dirs(path);
        assert!(!dir.exists());
    }
}
