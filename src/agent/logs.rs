//! Which log file belongs to which container of which pod on this node.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::runtime::logs::{LogFile, LogSink};

/// Log files rotate at 10 MiB, keeping 5, as the kubelet's defaults.
const MAX_LOG_BYTES: u64 = 10 * 1024 * 1024;
const MAX_LOG_FILES: usize = 5;

struct ContainerLogs {
    dir: PathBuf,
    restart_count: u32,
    current: Option<Arc<LogFile>>,
    /// Turns true when the current run stopped writing (ends `logs -f`).
    closed: watch::Sender<bool>,
}

/// Where the logs of each container are, for the log endpoint.
#[derive(Default)]
pub struct LogRegistry {
    pods: Mutex<HashMap<(String, String), HashMap<String, ContainerLogs>>>,
}

/// A container's log file as the log endpoint needs it.
pub struct LogLocation {
    pub path: PathBuf,
    /// Becomes true once the container stopped writing to it (a follower stops then).
    pub closed: watch::Receiver<bool>,
}

impl LogRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens the log file of a container's run number `restart_count`.
    pub fn open(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        dir: &Path,
        restart_count: u32,
    ) -> std::io::Result<Arc<LogFile>> {
        std::fs::create_dir_all(dir)?;
        let file = LogFile::create(dir, restart_count, MAX_LOG_BYTES, MAX_LOG_FILES)?;
        if let Ok(mut pods) = self.pods.lock() {
            let entry = pods.entry((ns.to_string(), pod.to_string())).or_default();
            let (closed, _) = watch::channel(false);
            entry.insert(
                container.to_string(),
                ContainerLogs {
                    dir: dir.to_path_buf(),
                    restart_count,
                    current: Some(file.clone()),
                    closed,
                },
            );
        }
        Ok(file)
    }

    /// The container stopped writing.
    pub fn close(&self, ns: &str, pod: &str, container: &str) {
        if let Ok(mut pods) = self.pods.lock() {
            if let Some(c) = pods
                .get_mut(&(ns.to_string(), pod.to_string()))
                .and_then(|p| p.get_mut(container))
            {
                if let Some(f) = c.current.take() {
                    f.close();
                }
                c.closed.send_replace(true);
            }
        }
    }

    /// The pod is gone from this node.
    pub fn forget(&self, ns: &str, pod: &str) {
        if let Ok(mut pods) = self.pods.lock() {
            pods.remove(&(ns.to_string(), pod.to_string()));
        }
    }

    /// The containers of a pod that have logs, in no particular order.
    pub fn containers(&self, ns: &str, pod: &str) -> Vec<String> {
        self.pods
            .lock()
            .ok()
            .and_then(|p| {
                p.get(&(ns.to_string(), pod.to_string()))
                    .map(|c| c.keys().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// The current (or, with `previous`, the last terminated) log of a container.
    pub fn locate(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<LogLocation> {
        let pods = self.pods.lock().ok()?;
        let c = pods
            .get(&(ns.to_string(), pod.to_string()))?
            .get(container)?;
        if previous {
            let n = c.restart_count.checked_sub(1)?;
            let (_, closed) = watch::channel(true);
            return Some(LogLocation {
                path: c.dir.join(format!("{n}.log")),
                closed,
            });
        }
        Some(LogLocation {
            path: c.dir.join(format!("{}.log", c.restart_count)),
            closed: c.closed.subscribe(),
        })
    }
}
