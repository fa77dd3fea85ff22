//! Running libcontainer's create so that a hang cannot become a hung pod.
//!
//! Why a create can hang: libcontainer clones its intermediate and init processes with a raw
//! `clone3` syscall from inside the multi-threaded agent. glibc's fork handlers do not run for
//! it, so a child starts with copies of every lock some other thread held at that instant and
//! keeps running Rust code until it execs or exits. If it needs one of those locks it waits
//! forever, and the agent's create waits forever on it. Seen here (stress test, gdb):
//! * a child logging through the agent's subscriber, whose writer mutex another thread held;
//! * the intermediate process in `std::process::exit`, whose runtime cleanup takes std's
//!   thread-info mutex, held by a thread of the agent starting or ending at clone time.
//!
//! What is done about it:
//! * the root cause we control: the create runs with a no-op tracing dispatcher on its thread,
//!   so the cloned children (copies of that thread) never touch the agent's log subscriber and
//!   its locks. Allocation in the children is libcontainer's own and cannot be removed;
//! * creates run one at a time on a long-lived thread ([`Creator`]) named [`THREAD_NAME`], so
//!   its children carry that name (or libcontainer's `youki:[..]` once they set it);
//! * a first watchdog stage for the second case: an intermediate alive after
//!   [`INTERMEDIATE_BOUND`] is killed alone (libcontainer then completes the create);
//! * a watchdog: if the create has not finished within a bound, the children that still carry
//!   those names and every process in the container's cgroup are SIGKILLed and reaped, which
//!   makes libcontainer's wait end with an error and its own cleanup run; the caller retries
//!   once and otherwise fails the start with a clear error (a pod event, not a hang).

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use super::cgroup;

/// Name of the threads that run creates; children cloned from them inherit it.
pub const THREAD_NAME: &str = "wkube-create";
/// The prefix libcontainer names its intermediate and init processes with.
const YOUKI_PREFIX: &str = "youki:";
/// libcontainer's name for its intermediate process.
const INTERMEDIATE_NAME: &str = "youki:[1:INTER]";

/// How long a create may take before the watchdog acts (libcontainer takes milliseconds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long libcontainer's intermediate process may live (it normally lives milliseconds).
const INTERMEDIATE_BOUND: Duration = Duration::from_secs(5);
/// How long the create thread gets to return after its processes were killed.
const AFTER_KILL: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("starting the create thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the create thread panicked")]
    Panicked,
    #[error(
        "libcontainer's create did not finish within {0:?}; its processes were killed \
         and cleaned up"
    )]
    Hung(Duration),
    #[error(
        "libcontainer's create did not finish within {0:?} and its thread is still stuck \
         after its processes were killed"
    )]
    Stuck(Duration),
}

type Job = Box<dyn FnOnce() + Send>;

/// The long-lived thread creates run on, one at a time. One thread rather than one per create:
/// a thread starting or ending takes std's thread-info lock, and one doing so while another
/// clones is exactly what leaves a child stuck in its exit (see the module doc).
pub struct Creator {
    tx: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
}

impl Creator {
    pub fn new() -> Result<Creator, CreateError> {
        Ok(Creator {
            tx: std::sync::Mutex::new(spawn_worker()?),
        })
    }

    /// Queues `job`; a worker that is gone is replaced first.
    fn submit(&self, job: Job) -> Result<(), CreateError> {
        let mut tx = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match tx.send(job) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::SendError(job)) => {
                *tx = spawn_worker()?;
                tx.send(job).map_err(|_| CreateError::Panicked)
            }
        }
    }

    /// Gives up on a worker stuck in a create: later creates get a new one (the old thread ends
    /// once its job returns, if ever).
    fn replace(&self) -> Result<(), CreateError> {
        let fresh = spawn_worker()?;
        *self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        Ok(())
    }
}

fn spawn_worker() -> Result<std::sync::mpsc::Sender<Job>, CreateError> {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                // A panicking job drops its result sender, which its caller reports.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })
        .map_err(CreateError::Thread)?;
    Ok(tx)
}

/// Runs `job` on the creator's thread, with tracing silenced for the code libcontainer runs
/// in cloned children. If it takes longer than `bound`, kills the processes it started (its
/// children by name, everything in `cgroups_path`), waits for the thread to return and gives
/// its result to `late` (to undo a create that succeeded after all), then reports
/// [`CreateError::Hung`].
pub async fn guarded<T, J, L>(
    creator: &Creator,
    bound: Duration,
    cgroups_path: String,
    job: J,
    late: L,
) -> Result<T, CreateError>
where
    T: Send + 'static,
    J: FnOnce() -> T + Send + 'static,
    L: FnOnce(T) + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    creator.submit(Box::new(move || {
        let _ = tx.send(job());
    }))?;
    match tokio::time::timeout(INTERMEDIATE_BOUND.min(bound), &mut rx).await {
        Ok(Ok(result)) => return Ok(result),
        Ok(Err(_)) => return Err(CreateError::Panicked),
        Err(_) => {}
    }
    // First stage: an intermediate process still alive this long is stuck, most likely in
    // its exit (see the module doc). Killing it alone lets a create that got that far succeed
    // (libcontainer only warns about an intermediate killed by a signal), and one that did not
    // fail fast.
    let stuck = tokio::task::spawn_blocking(kill_intermediates)
        .await
        .unwrap_or_default();
    if !stuck.is_empty() {
        tracing::warn!(pids = ?stuck, "killed a stuck libcontainer intermediate process");
    }
    match tokio::time::timeout(bound.saturating_sub(INTERMEDIATE_BOUND), &mut rx).await {
        Ok(Ok(result)) => return Ok(result),
        Ok(Err(_)) => return Err(CreateError::Panicked),
        Err(_) => {}
    }
    tracing::error!(bound_s = bound.as_secs_f64(), cgroup = %cgroups_path,
        "container create hung; killing its processes");
    let killed = tokio::task::spawn_blocking(move || kill_strays(&cgroups_path)).await;
    tracing::warn!(killed = ?killed.unwrap_or_default(), "processes of a hung create killed");
    match tokio::time::timeout(AFTER_KILL, rx).await {
        Ok(Ok(result)) => {
            let _ = tokio::task::spawn_blocking(move || late(result)).await;
            Err(CreateError::Hung(bound))
        }
        Ok(Err(_)) => Err(CreateError::Hung(bound)),
        Err(_) => {
            creator.replace()?;
            Err(CreateError::Stuck(bound))
        }
    }
}

/// Runs `f` with a no-op tracing dispatcher on this thread: libcontainer logs from the children
/// it clones from this thread, and those must not wait on a lock another thread of the agent
/// held at clone time.
pub fn without_tracing<R>(f: impl FnOnce() -> R) -> R {
    tracing::dispatcher::with_default(&tracing::Dispatch::none(), f)
}

/// SIGKILLs the agent's children that a create left mid-way (named after the create thread or
/// by libcontainer) and every process in the cgroup `cgroups_path`, then reaps the children.
/// Returns the pids killed.
pub fn kill_strays(cgroups_path: &str) -> Vec<i32> {
    let children: Vec<i32> = own_children()
        .into_iter()
        .filter(|pid| {
            comm(*pid).is_some_and(|c| c.starts_with(THREAD_NAME) || c.starts_with(YOUKI_PREFIX))
        })
        .collect();
    let mut killed = children.clone();
    for dir in cgroup::directories(cgroups_path) {
        killed.extend(cgroup_procs(&dir));
    }
    killed.sort_unstable();
    killed.dedup();
    for pid in &killed {
        // SAFETY: plain kill(2); a pid that is gone meanwhile gives ESRCH, which is fine.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    for pid in children {
        let mut status = 0;
        // SAFETY: `pid` is our child and was just SIGKILLed, so this returns promptly.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    killed
}

/// SIGKILLs the agent's children that are libcontainer intermediate processes (a create is
/// in flight; creates are serialized). Returns their pids.
fn kill_intermediates() -> Vec<i32> {
    let stuck: Vec<i32> = own_children()
        .into_iter()
        .filter(|pid| comm(*pid).is_some_and(|c| c == INTERMEDIATE_NAME))
        .collect();
    for pid in &stuck {
        // SAFETY: plain kill(2) of our own child; libcontainer's waitpid reaps it.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    stuck
}

/// The pids in a cgroup directory's `cgroup.procs` (none if it does not exist).
pub fn cgroup_procs(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// This process's children, from every thread's `children` list.
pub fn own_children() -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .flat_map(|task| {
            std::fs::read_to_string(task.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_string())
}

/// Runs `create` under [`guarded`], once more if the first attempt hung.
pub async fn with_retry<T, F, Fut>(mut create: F) -> Result<T, CreateError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, CreateError>>,
{
    match create(0).await {
        Err(CreateError::Hung(bound)) => {
            tracing::warn!(
                bound_s = bound.as_secs_f64(),
                "retrying a container create that hung"
            );
            create(1).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt as _;

    /// A stand-in for one of libcontainer's processes, named `name`, and a "create" that
    /// waits for it to end (as libcontainer waits on its socket or waitpid).
    fn stand_in(name: &str) -> (std::process::Child, impl FnOnce() -> &'static str + Send) {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join(name);
        std::os::unix::fs::symlink("/bin/sleep", &fake).unwrap();
        let child = std::process::Command::new(&fake)
            .arg0(name)
            .arg("600")
            .spawn()
            .unwrap();
        let pidfd = super::super::process::pidfd_open(child.id() as i32).unwrap();
        let create = move || {
            let _dir = dir;
            let mut poll = libc::pollfd {
                fd: std::os::fd::AsRawFd::as_raw_fd(&pidfd),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; waits until the process has exited.
            unsafe { libc::poll(&mut poll, 1, -1) };
            "created"
        };
        (child, create)
    }

    #[tokio::test]
    async fn a_hung_create_is_killed_reaped_and_reported() {
        // Serial with the container tests: the kill looks at every child of the process.
        let _serial = super::super::tests::SERIAL.lock().await;
        let (child, create) = stand_in("youki:[2:INIT]");
        let pid = child.id() as i32;
        let late = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let late2 = late.clone();
        let creator = Creator::new().unwrap();
        let result = guarded(
            &creator,
            Duration::from_millis(300),
            "/wkube/no-such-container".into(),
            create,
            move |_| late2.store(true, std::sync::atomic::Ordering::SeqCst),
        )
        .await;
        assert!(matches!(result, Err(CreateError::Hung(_))), "{result:?}");
        assert!(late.load(std::sync::atomic::Ordering::SeqCst));
        // Killed and reaped: no such process any more (not even a zombie).
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        std::mem::forget(child);
    }

    #[tokio::test]
    async fn a_stuck_intermediate_alone_is_killed_and_the_create_completes() {
        let _serial = super::super::tests::SERIAL.lock().await;
        let (mut child, create) = stand_in(INTERMEDIATE_NAME);
        let creator = Creator::new().unwrap();
        let result = guarded(
            &creator,
            Duration::from_secs(60),
            "/wkube/no-such-container".into(),
            create,
            |_| {},
        )
        .await;
        assert_eq!(result.unwrap(), "created");
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
    }

    #[tokio::test]
    async fn retries_once_after_a_hang() {
        let mut attempts = 0;
        let result: Result<(), _> = with_retry(|_| {
            attempts += 1;
            async { Err(CreateError::Hung(Duration::from_millis(1))) }
        })
        .await;
        assert!(matches!(result, Err(CreateError::Hung(_))));
        assert_eq!(attempts, 2);
        let mut attempts = 0;
        let ok = with_retry(|n| {
            attempts += 1;
            async move {
                if n == 0 {
                    Err(CreateError::Hung(Duration::from_millis(1)))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(ok.unwrap(), 1);
        assert_eq!(attempts, 2);
    }
}
