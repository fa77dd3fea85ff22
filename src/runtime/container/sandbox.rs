//! The pod sandbox: the network, IPC and UTS namespaces every container of one pod shares.
//!
//! The namespaces are made by a short-lived thread (`unshare`) and kept alive by bind-mounting
//! that thread's `/proc/thread-self/ns/{net,ipc,uts}` onto files in the pod's directory, the
//! way `ip netns add` and CRI-O's `pinns` do. Each container then joins them by path.
//!
//! Why not the alternatives:
//! * joining the first container's `/proc/<pid>/ns/*`: those die with that container, and
//!   init containers always exit before the app containers start (restarts too);
//! * a pause process: a process per pod to supervise and a binary to ship, for what two bind
//!   mounts give with no process at all.
//!
//! The loopback interface is brought up here, so containers of the pod reach each other on
//! `127.0.0.1`; other interfaces come with pod networking.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::pidns::PidNamespace;

/// The namespaces of a sandbox, by their `/proc/<pid>/ns/` name.
pub const SHARED: [(&str, libc::c_int); 3] = [
    ("net", libc::CLONE_NEWNET),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
];

#[derive(Debug, thiserror::Error)]
#[error("pod sandbox in {dir}: {step}: {source}")]
pub struct SandboxError {
    dir: PathBuf,
    step: &'static str,
    #[source]
    source: io::Error,
}

/// Pinned namespaces of one pod. [`Sandbox::remove`] releases them.
#[derive(Debug)]
pub struct Sandbox {
    dir: PathBuf,
    /// The pod's PID namespace under `shareProcessNamespace`.
    pid_ns: Option<PidNamespace>,
}

/// Where a sandbox records the pid of its PID namespace's PID 1 (for restart cleanup).
const PAUSE_PID_FILE: &str = "pause.pid";

impl Sandbox {
    /// Creates the namespaces (hostname set to `hostname`) pinned under `dir`.
    /// With `share_pid`, also a PID namespace all containers of the pod join.
    pub fn create(dir: &Path, hostname: &str, share_pid: bool) -> Result<Sandbox, SandboxError> {
        let mut sandbox = Sandbox {
            dir: dir.to_path_buf(),
            pid_ns: None,
        };
        let fail = |step, source| SandboxError {
            dir: dir.to_path_buf(),
            step,
            source,
        };
        fs::create_dir_all(dir).map_err(|e| fail("creating the directory", e))?;
        for (name, _) in SHARED {
            fs::File::create(dir.join(name)).map_err(|e| fail("creating a pin file", e))?;
        }
        let pins = dir.to_path_buf();
        let name = hostname.to_string();
        // A thread of its own: `unshare` changes the namespaces of the calling thread only, and
        // this one ends right after, so no other work ever runs inside the pod's namespaces.
        let result = std::thread::Builder::new()
            .name("wkube-sandbox".into())
            .spawn(move || pin_new_namespaces(&pins, &name))
            .map_err(|e| fail("starting the sandbox thread", e))?
            .join()
            .unwrap_or_else(|_| Err(("sandbox thread", io::Error::other("panicked"))));
        if let Err((step, source)) = result {
            let _ = sandbox.remove();
            return Err(fail(step, source));
        }
        if let Err(e) = write_etc_files(&dir.join("etc"), hostname) {
            let _ = sandbox.remove();
            return Err(fail("writing /etc files", e));
        }
        if share_pid {
            match PidNamespace::create() {
                Ok(ns) => {
                    let recorded = fs::write(dir.join(PAUSE_PID_FILE), ns.pid().to_string());
                    sandbox.pid_ns = Some(ns);
                    if let Err(e) = recorded {
                        let _ = sandbox.remove();
                        return Err(fail("recording the PID namespace's PID 1", e));
                    }
                }
                Err(e) => {
                    let _ = sandbox.remove();
                    return Err(fail("creating the shared PID namespace", e));
                }
            }
        }
        Ok(sandbox)
    }

    /// A file every container of the pod gets bind-mounted at `/etc/<name>`: `hosts`,
    /// `hostname` or `resolv.conf`.
    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.dir.join("etc").join(name)
    }

    /// The path a container joins for namespace `kind` (`net`, `ipc` or `uts`).
    pub fn ns_path(&self, kind: &str) -> PathBuf {
        self.dir.join(kind)
    }

    /// The PID namespace containers join, under `shareProcessNamespace`.
    pub fn pid_ns_path(&self) -> Option<PathBuf> {
        self.pid_ns.as_ref().map(PidNamespace::ns_path)
    }

    /// Ends the shared PID namespace, unpins the others (they end once no container is in
    /// them) and deletes the files.
    pub fn remove(&self) -> io::Result<()> {
        if let Some(ns) = &self.pid_ns {
            ns.stop()?;
        }
        remove_pins(&self.dir)
    }
}

/// Unmounts whatever pins exist under `dir` and deletes it (also for leftovers of a crash,
/// killing a recorded PID namespace's PID 1 still running).
pub fn remove_pins(dir: &Path) -> io::Result<()> {
    if let Ok(pid) = fs::read_to_string(dir.join(PAUSE_PID_FILE)) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            super::pidns::kill_leftovers(&[pid]);
        }
    }
    for (name, _) in SHARED {
        let path = dir.join(name);
        if let Ok(c) = c_path(&path) {
            // SAFETY: valid NUL-terminated path; EINVAL (not mounted) and ENOENT are fine.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`. The resolver is the node's
/// (`dnsPolicy: Default`) until cluster DNS exists.
fn write_etc_files(dir: &Path, hostname: &str) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    fs::write(dir.join("hosts"), hosts)?;
    fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
    let resolv = fs::read("/etc/resolv.conf").unwrap_or_default();
    fs::write(dir.join("resolv.conf"), resolv)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("NUL in a path"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

type StepResult = Result<(), (&'static str, io::Error)>;

/// Runs on the sandbox thread: new namespaces, hostname, loopback up, bind-mount pins.
fn pin_new_namespaces(dir: &Path, hostname: &str) -> StepResult {
    let flags = SHARED.iter().fold(0, |acc, (_, flag)| acc | flag);
    // SAFETY: plain syscalls on this thread's own state.
    check(unsafe { libc::unshare(flags) }).map_err(|e| ("unshare", e))?;
    check(unsafe { libc::sethostname(hostname.as_ptr().cast(), hostname.len()) })
        .map_err(|e| ("sethostname", e))?;
    loopback_up().map_err(|e| ("bringing up lo", e))?;
    for (name, _) in SHARED {
        let source = c_path(Path::new(&format!("/proc/thread-self/ns/{name}")))
            .map_err(|e| ("pin path", e))?;
        let target = c_path(&dir.join(name)).map_err(|e| ("pin path", e))?;
        // SAFETY: valid NUL-terminated strings; a bind mount takes no data.
        check(unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        })
        .map_err(|e| ("pinning a namespace", e))?;
    }
    Ok(())
}

/// `ip link set lo up`, with the two ioctls it boils down to.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a fresh socket we close below; `ifreq` is plain data, zero is a valid value.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut result = check(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr));
        if result.is_ok() {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = check(libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr));
        }
        libc::close(fd);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_namespaces_until_removed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("sandbox");
        let sandbox = Sandbox::create(&dir, "pod-a", false).unwrap();
        let mountinfo = || fs::read_to_string("/proc/self/mountinfo").unwrap();
        let own_net = fs::read_link("/proc/self/ns/net").unwrap();
        for (name, _) in SHARED {
            assert!(mountinfo().contains(&sandbox.ns_path(name).display().to_string()));
        }
        // This thread is untouched: still in the host's network namespace.
        assert_eq!(fs::read_link("/proc/thread-self/ns/net").unwrap(), own_net);
        let hosts = fs::read_to_string(sandbox.etc_file("hosts")).unwrap();
        assert!(hosts.contains("pod-a"), "{hosts}");
        sandbox.remove().unwrap();
        assert!(!mountinfo().contains(&dir.display().to_string()));
        assert!(!dir.exists());
    }
}
