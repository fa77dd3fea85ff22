//! The WASI context of one container: what the guest may see of the node.
//!
//! Exactly what the pod spec grants: its argv and environment, its volume mounts as
//! preopened directories (read-only ones without write permission), stdout/stderr into its
//! log. Nothing is inherited from the agent (no host stdio, environment or arguments), stdin
//! is empty, and the network is closed (no addresses allowed, no name lookups).

use std::sync::Arc;

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use super::output::LogOutput;
use crate::runtime::logs::Stream;
use crate::runtime::{ContainerSpec, RuntimeError};

pub(crate) fn builder(spec: &ContainerSpec) -> Result<WasiCtxBuilder, RuntimeError> {
    let mut b = WasiCtxBuilder::new();
    if spec.argv.is_empty() {
        // Programs expect argv[0]; give them the container's name like a shell would.
        b.arg(&spec.container_name);
    } else {
        b.args(&spec.argv);
    }
    b.envs(&spec.env);
    b.stdout(LogOutput::new(Arc::clone(&spec.logs), Stream::Stdout));
    b.stderr(LogOutput::new(Arc::clone(&spec.logs), Stream::Stderr));
    b.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if let Some(dir) = &spec.working_dir {
        b.initial_cwd(dir);
    }
    for m in &spec.mounts {
        if !m.container_path.starts_with('/') {
            return Err(RuntimeError::Create(format!(
                "volume mount path {:?} is not absolute",
                m.container_path
            )));
        }
        let perms = if m.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&m.host_path, &m.container_path, perms)
            .map_err(|e| {
                RuntimeError::Create(format!(
                    "volume mount {} at {}: {e:#}",
                    m.host_path.display(),
                    m.container_path
                ))
            })?;
    }
    Ok(b)
}
