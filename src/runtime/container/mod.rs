//! Linux containers from OCI images, started in-process with youki's libcontainer: no
//! containerd, no shim, no `runc` binary.
//!
//! Per container: a root filesystem stacked from the image's unpacked layers ([`rootfs`]), a
//! runtime spec ([`spec`]), the pod's shared namespaces ([`sandbox`]), a cgroup libcontainer
//! creates from the limits ([`cgroup`] reads its OOM counter), and the init process watched
//! through a pidfd with its output piped into the log sink ([`process`]).
//!
//! On disk, under the runtime's root (the agent's `<data>/containers`):
//!
//! ```text
//! state/<id>/             libcontainer's own state of each container
//! bundles/<id>/           config.json and the rootfs (upper, work, merged)
//! sandboxes/<pod uid>/    pinned net/ipc/uts namespaces, etc/{hosts,hostname,resolv.conf}
//! ```
//!
//! A container is deleted (libcontainer state, cgroup, rootfs, bundle) as soon as its process
//! has ended; the pod's sandbox when the agent releases the pod.

pub mod cgroup;
pub mod create;
pub mod options;
pub mod pidns;
pub mod process;
pub mod resources;
pub mod rootfs;
pub mod sandbox;
pub mod security;
pub mod spec;

pub use options::LinuxOptions;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tracing::Instrument as _;

use self::rootfs::Rootfs;
use self::sandbox::Sandbox;
use crate::image::ContainerImage;
use crate::runtime::logs::{LogSink, Stream};
use crate::runtime::{
    ContainerSpec, ExitStatus, PodRuntime, ResolvedImage, RunningContainer, RuntimeError,
};

/// The runtime's name as RuntimeClass handlers and the node's runtimes label use it.
pub const RUNTIME_NAME: &str = "linux";

/// Runs Linux containers. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct ContainerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    /// Pids of the container processes being supervised. Its lock is held over every
    /// libcontainer create, so that after a failed one the processes it left behind can be
    /// told apart from everyone else's (see [`process::reap_strays`]).
    supervised: std::sync::Mutex<std::collections::HashSet<i32>>,
    /// One sandbox per pod uid, made by the pod's first container start.
    sandboxes: tokio::sync::Mutex<HashMap<String, Arc<Sandbox>>>,
    counter: AtomicU64,
    config: RuntimeConfig,
    /// `/wkube/<tag>`: every cgroup of this runtime is under it ([`cgroup::parent_for`]).
    cgroup_parent: String,
    cgroup_driver: cgroup::Driver,
    /// The thread libcontainer creates run on.
    creator: create::Creator,
}

/// Settings of the runtime (the agent's flags).
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The pids limit of every container's cgroup; `None` for none.
    pub pids_limit: Option<i64>,
    /// How long a libcontainer create may take before [`create::guarded`] steps in.
    pub create_timeout: Duration,
    /// Which cgroup version to place containers with.
    pub cgroup_mode: cgroup::Mode,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            pids_limit: Some(resources::DEFAULT_PIDS_LIMIT),
            create_timeout: create::DEFAULT_TIMEOUT,
            cgroup_mode: cgroup::Mode::Auto,
        }
    }
}

impl ContainerRuntime {
    /// A runtime keeping its state under `root` (created if needed). Leftovers of a previous
    /// run (an agent killed with containers running) are cleaned up first (see
    /// `clean_leftovers` for why cleaning and not adopting).
    pub fn new(root: &Path) -> Result<Self, RuntimeError> {
        Self::with_config(root, RuntimeConfig::default())
    }

    /// As [`ContainerRuntime::new`], with settings.
    pub fn with_config(root: &Path, config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let layout = cgroup::layout().map_err(|e| RuntimeError::Create(e.to_string()))?;
        let cgroup_driver = cgroup::driver(config.cgroup_mode, layout)
            .map_err(|e| RuntimeError::Create(e.to_string()))?;
        tracing::info!(mode = ?config.cgroup_mode, ?layout, driver = ?cgroup_driver, "container cgroups");
        for sub in ["state", "bundles", "sandboxes"] {
            std::fs::create_dir_all(root.join(sub)).map_err(|e| {
                RuntimeError::Create(format!("creating {}: {e}", root.join(sub).display()))
            })?;
        }
        let runtime = ContainerRuntime {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                sandboxes: tokio::sync::Mutex::new(HashMap::new()),
                supervised: std::sync::Mutex::new(std::collections::HashSet::new()),
                counter: AtomicU64::new(0),
                config,
                cgroup_driver,
                creator: create::Creator::new().map_err(|e| RuntimeError::Create(e.to_string()))?,
                cgroup_parent: cgroup::parent_for(
                    &std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
                ),
            }),
        };
        runtime.clean_leftovers();
        Ok(runtime)
    }

    /// Removes everything a previous run of the agent on the same directory left: its
    /// containers' processes (killed), cgroups, rootfs mounts, bundles, libcontainer state and
    /// pinned sandbox namespaces. The agent then restarts the pods by their restartPolicy, as
    /// after a node reboot.
    ///
    /// Cleaning rather than adopting, on purpose: an adopted container would need its stdout
    /// and stderr pipes back (they died with the old agent, so its logs would stop), a
    /// supervisor that is not its parent (no waitpid, no exit code) and the pod worker's
    /// state; a clean restart is what the kubelet does after a reboot, and it is testable.
    fn clean_leftovers(&self) {
        let root = &self.inner.root;
        let state = read_dir(&root.join("state"));
        let bundles = read_dir(&root.join("bundles"));
        let sandboxes = read_dir(&root.join("sandboxes"));
        let found = state.len() + bundles.len() + sandboxes.len();
        for entry in state {
            if let Ok(mut container) = Container::load(entry.clone()) {
                if let Err(e) = container.delete(true) {
                    tracing::warn!(container = %entry.display(), error = %e, "deleting a leftover container");
                }
            }
            let _ = std::fs::remove_dir_all(&entry);
        }
        // Also the cgroups of creates that never got as far as libcontainer's state.
        for dir in cgroup::remove_all_under(&self.inner.cgroup_parent) {
            tracing::warn!(cgroup = %dir.display(), "a leftover cgroup could not be removed");
        }
        for entry in bundles {
            if let Err(e) = rootfs::remove_dir(&entry.join("rootfs")) {
                tracing::warn!(error = %e, "removing a leftover rootfs");
            }
            let _ = std::fs::remove_dir_all(&entry);
        }
        for entry in sandboxes {
            if let Err(e) = sandbox::remove_pins(&entry) {
                tracing::warn!(sandbox = %entry.display(), error = %e, "removing a leftover sandbox");
            }
        }
        if found > 0 {
            tracing::info!(found, "cleaned up what a previous agent run left");
        }
    }

    /// The pod's sandbox, made on first use.
    async fn sandbox(&self, spec: &ContainerSpec) -> Result<Arc<Sandbox>, RuntimeError> {
        let mut sandboxes = self.inner.sandboxes.lock().await;
        if let Some(s) = sandboxes.get(&spec.pod_uid) {
            return Ok(s.clone());
        }
        let dir = self
            .inner
            .root
            .join("sandboxes")
            .join(safe_name(&spec.pod_uid));
        let host = hostname(&spec.pod_name);
        let share_pid = spec.linux.share_process_namespace;
        let made = tokio::task::spawn_blocking(move || Sandbox::create(&dir, &host, share_pid))
            .await
            .map_err(|e| RuntimeError::Create(format!("pod sandbox: {e}")))?
            .map_err(|e| RuntimeError::Create(e.to_string()))?;
        tracing::debug!(pod_uid = %spec.pod_uid, "pod sandbox created");
        let made = Arc::new(made);
        sandboxes.insert(spec.pod_uid.clone(), made.clone());
        Ok(made)
    }

    fn next_id(&self, spec: &ContainerSpec) -> String {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let uid: String = safe_name(&spec.pod_uid).chars().take(13).collect();
        format!("{uid}-{}-{n}", safe_name(&spec.container_name))
    }
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Keeps `[A-Za-z0-9_.-]`: container ids and directory names made from API names and uids.
fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A pod's hostname: its name, cut to the 63 bytes a hostname may have (as the kubelet does).
fn hostname(pod_name: &str) -> String {
    pod_name
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

#[async_trait::async_trait]
impl PodRuntime for ContainerRuntime {
    fn name(&self) -> &'static str {
        RUNTIME_NAME
    }

    async fn prepare(&self, image: &ResolvedImage) -> Result<(), RuntimeError> {
        match &image.container {
            Some(_) => Ok(()),
            None => Err(RuntimeError::InvalidImage(format!(
                "{} is a wasm image, not a Linux container image",
                image.reference
            ))),
        }
    }

    async fn start(&self, spec: ContainerSpec) -> Result<Box<dyn RunningContainer>, RuntimeError> {
        let span = tracing::info_span!(
            "linux_container",
            pod = %format!("{}/{}", spec.namespace, spec.pod_name),
            container = %spec.container_name,
            image = %spec.image.reference,
        );
        async {
            let image = spec.image.container.clone().ok_or_else(|| {
                RuntimeError::InvalidImage(format!(
                    "{} is not a Linux container image",
                    spec.image.reference
                ))
            })?;
            let sandbox = self.sandbox(&spec).await?;
            let started_at = SystemTime::now();
            let started = create::with_retry(|_attempt| {
                let id = self.next_id(&spec);
                let job = StartJob {
                    id: id.clone(),
                    root: self.inner.root.clone(),
                    inner: self.inner.clone(),
                    spec: spec.clone(),
                    image: image.clone(),
                    sandbox: sandbox.clone(),
                };
                let inner = self.inner.clone();
                create::guarded(
                    &self.inner.creator,
                    self.inner.config.create_timeout,
                    cgroup::cgroups_path(&self.inner.cgroup_parent, &id),
                    move || job.run(),
                    move |late: Result<Started, RuntimeError>| {
                        if let Ok(started) = late {
                            abandon(&inner, started);
                        }
                    },
                )
            })
            .await
            .map_err(|e| RuntimeError::Create(e.to_string()))??;
            let id = started.id.clone();
            tracing::info!(id = %id, pid = started.pid, "container started");
            match LinuxContainer::supervise(self.inner.clone(), started, spec.logs, started_at) {
                Ok(c) => Ok(Box::new(c) as Box<dyn RunningContainer>),
                Err(failed) => {
                    let (error, started) = *failed;
                    let inner = self.inner.clone();
                    let _ = tokio::task::spawn_blocking(move || abandon(&inner, started)).await;
                    Err(error)
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn release_pod(&self, pod_uid: &str) {
        let removed = self.inner.sandboxes.lock().await.remove(pod_uid);
        if let Some(sandbox) = removed {
            let result = tokio::task::spawn_blocking(move || sandbox.remove()).await;
            match result {
                Ok(Ok(())) => tracing::debug!(pod_uid, "pod sandbox removed"),
                Ok(Err(e)) => tracing::warn!(pod_uid, error = %e, "removing the pod sandbox"),
                Err(e) => tracing::warn!(pod_uid, error = %e, "removing the pod sandbox"),
            }
        }
    }
}

/// The blocking part of a start: rootfs, spec, libcontainer create + start.
struct StartJob {
    id: String,
    root: PathBuf,
    inner: Arc<Inner>,
    spec: ContainerSpec,
    image: ContainerImage,
    sandbox: Arc<Sandbox>,
}

/// What libcontainer gave back for a started container.
struct Launched {
    container: Container,
    pid: i32,
    pidfd: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    cgroups_path: String,
}

/// A created and started container, handed to its supervisor.
struct Started {
    id: String,
    pid: i32,
    pidfd: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    container: Container,
    rootfs: Rootfs,
    bundle: PathBuf,
    cgroups_path: String,
}

fn create_error(what: &str) -> impl FnOnce(String) -> RuntimeError + '_ {
    move |e| RuntimeError::Create(format!("{what}: {e}"))
}

impl StartJob {
    fn run(self) -> Result<Started, RuntimeError> {
        let bundle = self.root.join("bundles").join(&self.id);
        std::fs::create_dir_all(&bundle)
            .map_err(|e| create_error("creating the bundle")(e.to_string()))?;
        let rootfs = match Rootfs::create(&self.image.layers, &bundle.join("rootfs")) {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&bundle);
                return Err(RuntimeError::Create(e.to_string()));
            }
        };
        match self.create_and_start(&bundle, &rootfs) {
            Ok(l) => Ok(Started {
                id: self.id,
                pid: l.pid,
                pidfd: l.pidfd,
                stdout: l.stdout,
                stderr: l.stderr,
                container: l.container,
                rootfs,
                bundle,
                cgroups_path: l.cgroups_path,
            }),
            Err(e) => {
                let path = cgroup::cgroups_path(&self.inner.cgroup_parent, &self.id);
                cleanup(None, Some(rootfs), &bundle, &path);
                Err(e)
            }
        }
    }

    fn create_and_start(&self, bundle: &Path, rootfs: &Rootfs) -> Result<Launched, RuntimeError> {
        let cgroups_path = cgroup::cgroups_path(&self.inner.cgroup_parent, &self.id);
        let cwd = self
            .spec
            .working_dir
            .as_deref()
            .or(self.image.config.working_dir.as_deref())
            .unwrap_or("/");
        create_working_dir(rootfs.path(), cwd)
            .map_err(|e| create_error("creating the working directory")(e.to_string()))?;
        let identity = security::identity(
            &self.spec.linux.security,
            self.image.config.user.as_deref(),
            rootfs.path(),
        )
        .map_err(|e| RuntimeError::Create(e.to_string()))?;
        let limits = resources::Limits::of(&self.spec, self.inner.config.pids_limit);
        let oci = spec::build(&spec::SpecInput {
            container: &self.spec,
            image: &self.image.config,
            rootfs: rootfs.path(),
            sandbox: &self.sandbox,
            cgroups_path: &cgroups_path,
            identity,
            // The v2 driver applies the limits itself (and says which it cannot).
            limits: match self.inner.cgroup_driver {
                cgroup::Driver::Libcontainer => Some(limits),
                cgroup::Driver::OwnV2 { .. } => None,
            },
            pid_namespace: self.sandbox.pid_ns_path(),
        })
        .map_err(|e| RuntimeError::Create(e.to_string()))?;
        oci.save(bundle.join("config.json"))
            .map_err(|e| create_error("writing config.json")(e.to_string()))?;
        let io = |e: std::io::Error| create_error("container stdio")(e.to_string());
        let (stdout_r, stdout_w) = process::pipe().map_err(io)?;
        let (stderr_r, stderr_w) = process::pipe().map_err(io)?;
        let mut supervised = lock_within(&self.inner.supervised, self.inner.config.create_timeout)
            .ok_or_else(|| {
                RuntimeError::Create("another container create is stuck; not starting".into())
            })?;
        let stdin = process::dev_null().map_err(io)?;
        let builder = ContainerBuilder::new(self.id.clone(), SyscallType::Linux)
            .with_root_path(self.root.join("state"))
            .map_err(|e| create_error("libcontainer")(e.to_string()))?
            .with_stdin(stdin)
            .with_stdout(stdout_w)
            .with_stderr(stderr_w)
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(true);
        let built = create::without_tracing(|| builder.build());
        let mut container = match built {
            Ok(c) => c,
            Err(e) => {
                process::reap_strays(&supervised);
                return Err(create_error("creating the container")(e.to_string()));
            }
        };
        let started = container
            .pid()
            .ok_or_else(|| "libcontainer reported no pid".to_string())
            .and_then(|pid| {
                let pidfd = process::pidfd_open(pid.as_raw()).map_err(|e| e.to_string())?;
                Ok((pid.as_raw(), pidfd))
            })
            .and_then(|(pid, pidfd)| {
                // Placed before it runs a single instruction of the workload.
                if let cgroup::Driver::OwnV2 { root } = &self.inner.cgroup_driver {
                    cgroup::place_v2(root, &cgroups_path, pid, &limits.v2_files())
                        .map_err(|e| e.to_string())?;
                }
                create::without_tracing(|| container.start()).map_err(|e| e.to_string())?;
                Ok((pid, pidfd))
            });
        match started {
            Ok((pid, pidfd)) => {
                supervised.insert(pid);
                Ok(Launched {
                    container,
                    pid,
                    pidfd,
                    stdout: stdout_r,
                    stderr: stderr_r,
                    cgroups_path,
                })
            }
            Err(e) => {
                let _ = container.delete(true);
                process::reap_strays(&supervised);
                Err(RuntimeError::Create(format!("starting the container: {e}")))
            }
        }
    }
}

/// Locks `mutex`, giving up after `bound`: a create stuck while holding it must not make every
/// later start wait forever too.
fn lock_within<T>(
    mutex: &std::sync::Mutex<T>,
    bound: Duration,
) -> Option<std::sync::MutexGuard<'_, T>> {
    let deadline = std::time::Instant::now() + bound;
    loop {
        match mutex.try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(std::sync::TryLockError::WouldBlock) => return None,
        }
    }
}

/// Creates a missing working directory in the rootfs (runc and containerd do too). Stops at a
/// symlink: the agent would resolve it against the node's root, not the container's; the
/// container's own chdir then resolves it correctly, or fails with a clear error.
fn create_working_dir(rootfs: &Path, cwd: &str) -> std::io::Result<()> {
    let mut path = rootfs.to_path_buf();
    for part in Path::new(cwd).components() {
        let std::path::Component::Normal(part) = part else {
            continue;
        };
        path.push(part);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(&path)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes what a container leaves: libcontainer state and cgroup, rootfs, bundle.
fn cleanup(
    container: Option<&mut Container>,
    rootfs: Option<Rootfs>,
    bundle: &Path,
    cgroups_path: &str,
) {
    if let Some(container) = container {
        if let Err(e) = container.delete(true) {
            tracing::warn!(id = %container.id(), error = %e, "deleting the container");
        }
    }
    if let Some(rootfs) = rootfs {
        if let Err(e) = rootfs.remove() {
            tracing::warn!(error = %e, "removing the rootfs");
        }
    }
    // What libcontainer does not delete: the cgroup of the v2 driver on a hybrid host.
    cgroup::remove_dirs(cgroups_path);
    if let Err(e) = std::fs::remove_dir_all(bundle) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(bundle = %bundle.display(), error = %e, "removing the bundle");
        }
    }
}

/// A running Linux container: a supervisor task owns it and publishes how it ended.
struct LinuxContainer {
    pidfd: Arc<AsyncFd<OwnedFd>>,
    status: watch::Receiver<Option<ExitStatus>>,
    /// Set when the agent had to SIGKILL it (grace period over).
    killed: Arc<std::sync::atomic::AtomicBool>,
}

impl LinuxContainer {
    /// Hands a started container to a supervisor task. Fails (killing and deleting the
    /// container) only if its pidfd cannot be registered with the reactor.
    fn supervise(
        inner: Arc<Inner>,
        started: Started,
        logs: Arc<dyn LogSink>,
        started_at: SystemTime,
    ) -> Result<Self, Box<(RuntimeError, Started)>> {
        let Started {
            id,
            pid,
            pidfd,
            stdout,
            stderr,
            container,
            rootfs,
            bundle,
            cgroups_path,
        } = started;
        // SAFETY: the pidfd is an `OwnedFd` moved into the `AsyncFd`, which owns it from here
        // on; nothing else closes or replaces it.
        let registered =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) };
        let pidfd = match registered {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                let (pidfd, e) = e.into_parts();
                let error = RuntimeError::Create(format!("watching the container process: {e}"));
                let back = Started {
                    id,
                    pid,
                    pidfd,
                    stdout,
                    stderr,
                    container,
                    rootfs,
                    bundle,
                    cgroups_path,
                };
                return Err(Box::new((error, back)));
            }
        };
        let (tx, rx) = watch::channel(None);
        let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let supervisor = Supervisor {
            inner,
            id,
            pid,
            pidfd: pidfd.clone(),
            container,
            rootfs,
            bundle,
            cgroups_path,
            killed: killed.clone(),
            started_at,
        };
        let pumps = [
            tokio::spawn(process::pump(stdout, Stream::Stdout, logs.clone())),
            tokio::spawn(process::pump(stderr, Stream::Stderr, logs.clone())),
        ];
        tokio::spawn(
            async move {
                let status = supervisor.run(pumps, logs).await;
                let _ = tx.send(Some(status));
            }
            .in_current_span(),
        );
        Ok(LinuxContainer {
            pidfd,
            status: rx,
            killed,
        })
    }
}

/// Kills and deletes a container that could not be handed to a supervisor.
fn abandon(inner: &Inner, started: Started) {
    let _ = process::send_signal(&started.pidfd, libc::SIGKILL);
    let _ = process::reap(started.pid);
    inner
        .supervised
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&started.pid);
    let mut container = started.container;
    cleanup(
        Some(&mut container),
        Some(started.rootfs),
        &started.bundle,
        &started.cgroups_path,
    );
}

/// Owns a container from start to deletion.
struct Supervisor {
    inner: Arc<Inner>,
    id: String,
    pid: i32,
    pidfd: Arc<AsyncFd<OwnedFd>>,
    container: Container,
    rootfs: Rootfs,
    bundle: PathBuf,
    cgroups_path: String,
    killed: Arc<std::sync::atomic::AtomicBool>,
    started_at: SystemTime,
}

impl Supervisor {
    /// Waits for the process to end, then: OOM counter (while the cgroup exists), delete
    /// (while the process is still an unreaped zombie, so its pid cannot have been reused),
    /// reap, let the output drain, and report.
    async fn run(
        self,
        pumps: [tokio::task::JoinHandle<()>; 2],
        logs: Arc<dyn LogSink>,
    ) -> ExitStatus {
        let exited = match process::exited(&self.pidfd).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "polling the pidfd failed; waiting in a thread");
                false
            }
        };
        let Supervisor {
            inner,
            id,
            pid,
            container,
            rootfs,
            bundle,
            cgroups_path,
            killed,
            started_at,
            ..
        } = self;
        let ended = tokio::task::spawn_blocking(move || {
            let mut container = container;
            if !exited {
                // Reaping is what waits when the pidfd could not be polled.
                let reaped = process::reap(pid);
                let oom_kills = cgroup::oom_kills(&cgroups_path);
                cleanup(Some(&mut container), Some(rootfs), &bundle, &cgroups_path);
                return (reaped, oom_kills);
            }
            // The process is an unreaped zombie: read the OOM counter while the cgroup exists,
            // delete while the pid cannot have been reused by anyone, then reap.
            let oom_kills = cgroup::oom_kills(&cgroups_path);
            cleanup(Some(&mut container), Some(rootfs), &bundle, &cgroups_path);
            (process::reap(pid), oom_kills)
        })
        .await;
        inner
            .supervised
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&pid);
        for pump in pumps {
            let _ = pump.await;
        }
        logs.close();
        let finished_at = SystemTime::now();
        let (reaped, oom_kills) = match ended {
            Ok(v) => v,
            Err(e) => (Err(std::io::Error::other(e.to_string())), 0),
        };
        let status = exit_status(reaped, oom_kills, killed.load(Ordering::SeqCst));
        tracing::info!(id = %id, code = status.0, reason = status.1, "container ended");
        ExitStatus {
            exit_code: status.0,
            reason: status.1.to_string(),
            message: status.2,
            started_at,
            finished_at,
        }
    }
}

/// Exit code, Kubernetes reason and message of an ended container.
fn exit_status(
    reaped: std::io::Result<(i32, Option<i32>)>,
    oom_kills: u64,
    killed_by_agent: bool,
) -> (i32, &'static str, Option<String>) {
    match reaped {
        Err(e) => (
            -1,
            "Error",
            Some(format!("lost track of the container process: {e}")),
        ),
        Ok((code, signal)) if oom_kills > 0 => (
            code,
            "OOMKilled",
            Some(match signal {
                Some(s) => format!("killed by signal {s} after reaching its memory limit"),
                None => "a process reached the memory limit and was killed".to_string(),
            }),
        ),
        Ok((code, Some(libc::SIGKILL))) if killed_by_agent => (
            code,
            "Killed",
            Some("stopped by the node agent after the grace period".to_string()),
        ),
        Ok((0, _)) => (0, "Completed", None),
        Ok((code, _)) => (code, "Error", None),
    }
}

#[async_trait::async_trait]
impl RunningContainer for LinuxContainer {
    async fn wait(&self) -> ExitStatus {
        let mut rx = self.status.clone();
        let ended = rx.wait_for(Option::is_some).await.map(|s| s.clone());
        match ended {
            Ok(Some(status)) => status,
            // The supervisor task is gone without a word (runtime shutting down).
            _ => ExitStatus {
                exit_code: -1,
                reason: "Error".into(),
                message: Some("the container's supervisor stopped".into()),
                started_at: SystemTime::now(),
                finished_at: SystemTime::now(),
            },
        }
    }

    async fn stop(&self, grace: Duration) -> ExitStatus {
        if self.status.borrow().is_none() {
            if let Err(e) = process::send_signal(self.pidfd.get_ref(), libc::SIGTERM) {
                tracing::warn!(error = %e, "sending SIGTERM");
            }
            if tokio::time::timeout(grace, self.wait()).await.is_err() {
                self.killed.store(true, Ordering::SeqCst);
                tracing::info!(grace_s = grace.as_secs_f64(), "grace period over; SIGKILL");
                if let Err(e) = process::send_signal(self.pidfd.get_ref(), libc::SIGKILL) {
                    tracing::warn!(error = %e, "sending SIGKILL");
                }
            }
        }
        self.wait().await
    }
}

#[cfg(test)]
mod tests;
