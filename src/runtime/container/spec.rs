//! The OCI runtime spec (`config.json`) of one container, built with `oci-spec` from what the
//! agent resolved ([`ContainerSpec`]) and the image config.
//!
//! Choices, and why:
//! * Starts from `oci-spec`'s defaults, which are runc's `spec` template (default mounts, masked
//!   and read-only paths), minus the `/sys/fs/cgroup` mount and cgroup namespace: on the hybrid
//!   v1+v2 hosts wkube runs on, what a container would see there is half of each hierarchy,
//!   which helps nothing inside and confuses tools.
//! * Own mount namespace; network, IPC and UTS joined from the pod's sandbox; PID namespace
//!   own, or the pod's under `shareProcessNamespace`.
//! * Docker's default capability set and `noNewPrivileges: false`, which is what a pod without
//!   a `securityContext` gets from containerd on a kubelet node; [`super::security`] applies
//!   the `securityContext` over that.
//! * A deny-all device rule; libcontainer then allows its default devices (null, zero, tty...).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

use super::resources::Limits;
use super::sandbox::Sandbox;
use super::security::{self, Identity};
use crate::image::ImageConfig;
use crate::runtime::ContainerSpec;

/// `PATH` for images that set none (Docker's default).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a runtime spec could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    Invalid(String),
    #[error("building the runtime spec: {0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// Everything a spec is built from.
pub struct SpecInput<'a> {
    pub container: &'a ContainerSpec,
    pub image: &'a ImageConfig,
    pub rootfs: &'a Path,
    pub sandbox: &'a Sandbox,
    pub cgroups_path: &'a str,
    /// uid, gid and supplementary groups the process runs as.
    pub identity: Identity,
    /// The cgroup limits libcontainer is to apply; `None` when another driver applies them
    /// (the cgroup v2 driver on a hybrid host, see [`super::cgroup`]).
    pub limits: Option<Limits>,
    /// The PID namespace to join (the pod's, under `shareProcessNamespace`); a new one if
    /// `None`.
    pub pid_namespace: Option<PathBuf>,
}

/// Builds the runtime spec.
pub fn build(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
    let c = input.container;
    if c.argv.is_empty() {
        return Err(SpecError::Invalid(
            "no command specified: the image has no Entrypoint or Cmd and the pod sets no \
             command"
                .into(),
        ));
    }
    let cwd = c
        .working_dir
        .clone()
        .or_else(|| input.image.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(SpecError::Invalid(format!(
            "workingDir {cwd:?} must be an absolute path"
        )));
    }
    let sc = &c.linux.security;
    let caps = security::capabilities(sc)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(c.argv.clone())
        .env(environment(&input.image.env, &c.env, &c.pod_name))
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(input.identity.uid)
                .gid(input.identity.gid)
                .additional_gids(input.identity.additional_gids.clone())
                .build()?,
        )
        .no_new_privileges(security::no_new_privileges(sc))
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                // Explicitly empty: oci-spec's defaults would put AUDIT_WRITE, KILL and
                // NET_BIND_SERVICE in both, which keeps them for a non-root user after exec
                // (containerd gives non-root processes no capabilities).
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .build()?,
        )
        .build()?;
    let mut spec = Spec::default();
    spec.set_hostname(None);
    spec.set_process(Some(process));
    spec.set_root(Some(
        RootBuilder::default()
            .path(input.rootfs.to_path_buf())
            .readonly(sc.read_only_root_filesystem)
            .build()?,
    ));
    spec.set_mounts(Some(mounts(input)?));
    spec.set_linux(Some(linux(input)?));
    Ok(spec)
}

/// The image's environment, then the pod's (which wins for a name both set), with `PATH` and
/// `HOSTNAME` as Docker and the kubelet provide them.
pub fn environment(image_env: &[String], pod_env: &[(String, String)], host: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        env.retain(|(existing, _)| existing != k);
        env.push((k.to_string(), v.to_string()));
    };
    if let Some((k, v)) = DEFAULT_PATH.split_once('=') {
        set(k, v);
    }
    set("HOSTNAME", host);
    for entry in image_env {
        let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
        set(k, v);
    }
    for (k, v) in pod_env {
        set(k, v);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn mounts(input: &SpecInput<'_>) -> Result<Vec<Mount>, SpecError> {
    let mut out: Vec<Mount> = oci_spec::runtime::get_default_mounts()
        .into_iter()
        .filter(|m| m.destination() != Path::new("/sys/fs/cgroup"))
        .collect();
    for (file, name) in [
        ("hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        out.push(bind(&input.sandbox.etc_file(file), name, false)?);
    }
    for m in &input.container.mounts {
        if !m.container_path.starts_with('/') {
            return Err(SpecError::Invalid(format!(
                "mountPath {:?} must be an absolute path",
                m.container_path
            )));
        }
        out.push(bind(&m.host_path, &m.container_path, m.read_only)?);
    }
    Ok(out)
}

fn bind(source: &Path, destination: &str, read_only: bool) -> Result<Mount, SpecError> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    options.push(if read_only { "ro" } else { "rw" }.to_string());
    Ok(MountBuilder::default()
        .destination(PathBuf::from(destination))
        .typ("bind")
        .source(source.to_path_buf())
        .options(options)
        .build()?)
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> Result<LinuxNamespace, SpecError> {
    let builder = LinuxNamespaceBuilder::default().typ(typ);
    Ok(match path {
        Some(p) => builder.path(p).build()?,
        None => builder.build()?,
    })
}

fn linux(input: &SpecInput<'_>) -> Result<oci_spec::runtime::Linux, SpecError> {
    let sandbox = input.sandbox;
    let namespaces = vec![
        namespace(LinuxNamespaceType::Pid, input.pid_namespace.clone())?,
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Network, Some(sandbox.ns_path("net")))?,
        namespace(LinuxNamespaceType::Ipc, Some(sandbox.ns_path("ipc")))?,
        namespace(LinuxNamespaceType::Uts, Some(sandbox.ns_path("uts")))?,
    ];
    let privileged = input.container.linux.security.privileged;
    // Deny all, then libcontainer's defaults; privileged: every device (runc's privileged
    // rule), though the node's device nodes are not bind-mounted in.
    let mut resources =
        LinuxResourcesBuilder::default().devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(privileged)
            .access("rwm")
            .build()?]);
    if let Some(limits) = &input.limits {
        resources = limits.apply(resources)?;
    }
    let mut linux = oci_spec::runtime::Linux::default();
    if privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    }
    linux.set_namespaces(Some(namespaces));
    linux.set_resources(Some(resources.build()?));
    linux.set_cgroups_path(Some(PathBuf::from(input.cgroups_path)));
    Ok(linux)
}

/// The uid and gid a container runs as, from the image's `User`: `uid`, `uid:gid`, `name` or
/// `name:group`, names looked up in the image's `/etc/passwd` and `/etc/group` (as Docker
/// does); root when unset. A user given without a group gets the user's primary group.
pub fn resolve_user(user: Option<&str>, rootfs: &Path) -> Result<(u32, u32), SpecError> {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Ok((0, 0));
    };
    let (name, group) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = image_file(rootfs, "passwd");
    let (uid, primary_gid) = match name.parse::<u32>() {
        Ok(uid) => {
            let gid = lookup(&passwd, |f| f.get(2) == Some(&name)).and_then(|f| field(&f, 3));
            (uid, gid.unwrap_or(0))
        }
        Err(_) => {
            let entry = lookup(&passwd, |f| f.first() == Some(&name)).ok_or_else(|| {
                SpecError::Invalid(format!(
                    "unable to find user {name}: no matching entries in passwd file"
                ))
            })?;
            let uid = field(&entry, 2).ok_or_else(|| bad_entry("passwd", name))?;
            (uid, field(&entry, 3).unwrap_or(0))
        }
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = image_file(rootfs, "group");
                let entry = lookup(&groups, |f| f.first() == Some(&g)).ok_or_else(|| {
                    SpecError::Invalid(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?;
                field(&entry, 2).ok_or_else(|| bad_entry("group", g))?
            }
        },
    };
    Ok((uid, gid))
}

fn bad_entry(file: &str, name: &str) -> SpecError {
    SpecError::Invalid(format!("malformed /etc/{file} entry for {name}"))
}

/// `/etc/<name>` of the image, read only if neither it nor `/etc` is a symlink: the agent
/// resolves symlinks against the node's root, not the container's, so following one could
/// read a node file.
fn image_file(rootfs: &Path, name: &str) -> String {
    let etc = rootfs.join("etc");
    let file = etc.join(name);
    let plain = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| !m.file_type().is_symlink());
    if plain(&etc) && plain(&file) {
        std::fs::read_to_string(file).unwrap_or_default()
    } else {
        String::new()
    }
}

fn lookup<'a>(text: &'a str, matches: impl Fn(&Vec<&'a str>) -> bool) -> Option<Vec<&'a str>> {
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|fields| matches(fields))
}

fn field(fields: &[&str], index: usize) -> Option<u32> {
    fields.get(index).and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_from_the_image() {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(etc.join("group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let r = |u: &str| resolve_user(Some(u), root.path());
        assert_eq!(resolve_user(None, root.path()).unwrap(), (0, 0));
        assert_eq!(r("app").unwrap(), (1000, 1001));
        assert_eq!(r("1000").unwrap(), (1000, 1001));
        assert_eq!(r("4242").unwrap(), (4242, 0));
        assert_eq!(r("app:staff").unwrap(), (1000, 50));
        assert_eq!(r("7:8").unwrap(), (7, 8));
        assert!(r("nobody").is_err());
        assert!(r("app:nogroup").is_err());
    }

    #[test]
    fn pod_env_wins_over_image_env() {
        let env = environment(
            &["PATH=/bin".into(), "A=image".into(), "B=image".into()],
            &[("B".into(), "pod".into()), ("C".into(), "pod".into())],
            "web-1",
        );
        assert_eq!(
            env,
            vec!["HOSTNAME=web-1", "PATH=/bin", "A=image", "B=pod", "C=pod"]
        );
        let env = environment(&[], &[], "h");
        assert!(env.contains(&DEFAULT_PATH.to_string()));
    }
}
