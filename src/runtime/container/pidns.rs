//! The pod's shared PID namespace (`shareProcessNamespace: true`).
//!
//! A PID namespace dies with its PID 1, so unlike the net/ipc/uts namespaces it cannot be
//! pinned by a bind mount alone: something must stay PID 1. Joining the first container's
//! namespace would break init containers (they exit before the app containers start), so the
//! sandbox holds a tiny PID 1 of its own, as the kubelet's pause container does: a child of the
//! agent cloned straight into a new PID namespace, named `wkube-pause`, which only reaps the
//! orphans reparented to it. Every container of the pod joins it through
//! `/proc/<pid>/ns/pid`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

/// The name the PID 1 process carries (what restart cleanup looks for).
pub const PAUSE_NAME: &str = "wkube-pause";

/// A running PID 1 of a pod's PID namespace. [`PidNamespace::stop`] ends it.
#[derive(Debug)]
pub struct PidNamespace {
    pid: i32,
    pidfd: OwnedFd,
}

impl PidNamespace {
    /// Clones the PID 1 of a new PID namespace.
    pub fn create() -> io::Result<PidNamespace> {
        #[repr(C)]
        struct CloneArgs {
            flags: u64,
            pidfd: u64,
            child_tid: u64,
            parent_tid: u64,
            exit_signal: u64,
            stack: u64,
            stack_size: u64,
            tls: u64,
        }
        let mut pidfd: libc::c_int = -1;
        let mut args = CloneArgs {
            flags: (libc::CLONE_NEWPID | libc::CLONE_PIDFD) as u64,
            pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
            child_tid: 0,
            parent_tid: 0,
            exit_signal: libc::SIGCHLD as u64,
            stack: 0,
            stack_size: 0,
            tls: 0,
        };
        // SAFETY: clone3 without CLONE_VM is a fork; the child runs only async-signal-safe
        // syscalls (no allocation, no locks) and never returns.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                std::ptr::addr_of_mut!(args),
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match rc {
            -1 => Err(io::Error::last_os_error()),
            0 => pause_forever(),
            pid => Ok(PidNamespace {
                pid: i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?,
                // SAFETY: CLONE_PIDFD stored a fresh descriptor we now own.
                pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
            }),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// What a container joins: the namespace of the PID 1.
    pub fn ns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/pid", self.pid))
    }

    /// Kills the PID 1 (and with it every process left in the namespace) and reaps it.
    pub fn stop(&self) -> io::Result<()> {
        super::process::send_signal(&self.pidfd, libc::SIGKILL)?;
        match super::process::reap(self.pid) {
            // Already reaped by the sweep after a failed create (`process::reap_strays`).
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// The PID 1: names itself, then reaps children for ever (orphans of the pod's containers).
fn pause_forever() -> ! {
    let name = c"wkube-pause";
    // SAFETY: only raw syscalls from here on (see `create`).
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr());
        loop {
            let mut status = 0;
            if libc::waitpid(-1, &mut status, 0) < 0 {
                libc::sleep(1);
            }
        }
    }
}

/// Kills the PID 1s a previous agent run recorded (`pids`), each only if it still carries
/// [`PAUSE_NAME`] (a pid reused by something else is spared). After a restart they are no
/// longer the agent's children; whoever adopted them reaps them. Returns how many were killed.
pub fn kill_leftovers(pids: &[i32]) -> usize {
    let mut killed = 0;
    for pid in pids {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == PAUSE_NAME {
            // SAFETY: plain kill(2) of a process found by its pid file and name.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
            killed += 1;
        }
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_one_of_a_new_namespace_until_stopped() {
        let ns = PidNamespace::create().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{}/status", ns.pid)).unwrap();
        // NSpid: its pid here, then 1 in its own namespace.
        let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
        assert!(nspid.trim_end().ends_with("\t1"), "{nspid}");
        assert_ne!(
            std::fs::read_link(ns.ns_path()).unwrap(),
            std::fs::read_link("/proc/self/ns/pid").unwrap()
        );
        ns.stop().unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{}", ns.pid)).exists());
    }
}
