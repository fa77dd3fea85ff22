//! The container's init process as the agent sees it: a pidfd to wait on and signal it
//! without pid-reuse races, and the pipes its stdout and stderr go through to the log sink.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio::io::AsyncReadExt;

use crate::runtime::logs::{LogSink, Stream};

/// A pipe as (read end, write end), both close-on-exec (the write end is dup'ed onto the
/// container's stdout/stderr, which clears the flag on that copy only).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `/dev/null`, for the container's stdin.
pub fn dev_null() -> io::Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")?.into())
}

/// A process file descriptor for `pid` (a child of the agent).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success it returns a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: a fresh descriptor from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `signal` through a pidfd. Signalling a process that has already exited is not an
/// error (ESRCH): it is what a stop racing with an exit looks like.
pub fn send_signal(pidfd: &impl AsRawFd, signal: i32) -> io::Result<()> {
    // SAFETY: a valid pidfd, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(err)
    }
}

/// Resolves once the process has exited (the pidfd turns readable). It is then a zombie:
/// still ours to inspect, not yet reaped.
pub async fn exited(pidfd: &AsyncFd<OwnedFd>) -> io::Result<()> {
    let _ready = pidfd.readable().await?;
    Ok(())
}

/// Reaps the exited process and returns its exit code the way a shell reports it (signal
/// deaths as 128 + signal number), with the signal if it was killed by one.
pub fn reap(pid: i32) -> io::Result<(i32, Option<i32>)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid out-pointer; `pid` is our own child.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if libc::WIFEXITED(status) {
        Ok((libc::WEXITSTATUS(status), None))
    } else if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        Ok((128 + signal, Some(signal)))
    } else {
        Ok((-1, None))
    }
}

/// Reaps the agent's zombie children that are not in `supervised`: the intermediate and init
/// processes libcontainer leaves unreaped when a create fails. Only zombies are touched, and
/// the caller holds the lock every create holds, so no create in flight loses a child.
pub fn reap_strays(supervised: &std::collections::HashSet<i32>) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            if supervised.contains(&pid) || !is_zombie(pid) {
                continue;
            }
            let mut status: libc::c_int = 0;
            // SAFETY: `pid` is a zombie child of ours; WNOHANG never blocks.
            let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            tracing::debug!(pid, reaped, "reaped a process left by a failed create");
        }
    }
}

/// Whether `/proc/<pid>/stat` says the process is a zombie (state `Z`, after the `(comm)`).
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, after) = stat.rsplit_once(')')?;
            after.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(false)
}

/// Copies one output pipe into the log sink until every writer has closed it.
pub async fn pump(read_end: OwnedFd, stream: Stream, sink: Arc<dyn LogSink>) {
    let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(read_end) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, ?stream, "cannot read the container's output");
            return;
        }
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => sink.write(stream, &buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, ?stream, "reading the container's output failed");
                return;
            }
        }
    }
}
