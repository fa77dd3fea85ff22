//! A container's `securityContext` (pod-level merged under container-level by the agent, see
//! [`super::options`]) turned into the runtime spec's user, capabilities and `noNewPrivileges`,
//! with the semantics of the kubelet and containerd's CRI plugin.

use std::collections::HashSet;
use std::path::Path;

use oci_spec::runtime::{Capabilities, Capability};

use super::spec::{resolve_user, SpecError};

/// Docker's (and containerd's CRI plugin's) default capabilities.
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability `oci-spec` knows, in kernel order (the index is the capability's bit).
const ALL_CAP_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The effective `securityContext` of one container (container fields win over the pod's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    /// The pod's `supplementalGroups` (pod-level only in Kubernetes).
    pub supplemental_groups: Vec<u32>,
    pub run_as_non_root: bool,
    pub read_only_root_filesystem: bool,
    /// Capability names as written in the pod (`NET_ADMIN`, `CAP_NET_ADMIN`, `ALL`).
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub privileged: bool,
    pub allow_privilege_escalation: Option<bool>,
}

/// The identity a container's process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// The uid, gid and groups the container runs as: `runAsUser`/`runAsGroup` over the image's
/// `User` (a `runAsUser` without `runAsGroup` gets that uid's primary group from the image's
/// `/etc/passwd`, as containerd does). Refuses a root uid under `runAsNonRoot`, with the
/// kubelet's message.
pub fn identity(
    sc: &SecurityContext,
    image_user: Option<&str>,
    rootfs: &Path,
) -> Result<Identity, SpecError> {
    let (uid, gid) = match sc.run_as_user {
        Some(uid) => resolve_user(Some(&uid.to_string()), rootfs)?,
        None => resolve_user(image_user, rootfs)?,
    };
    let gid = sc.run_as_group.unwrap_or(gid);
    if sc.run_as_non_root && uid == 0 {
        return Err(SpecError::Invalid(
            "container has runAsNonRoot and image will run as root".into(),
        ));
    }
    let mut additional_gids = sc.supplemental_groups.clone();
    additional_gids.retain(|g| *g != gid);
    additional_gids.dedup();
    Ok(Identity {
        uid,
        gid,
        additional_gids,
    })
}

/// The capability set (bounding = effective = permitted): Docker's defaults, `add: [ALL]` or
/// privileged gives every one, `drop: [ALL]` none, then the named adds and drops (containerd's
/// order, so `drop: [ALL], add: [NET_BIND_SERVICE]` keeps just that one).
pub fn capabilities(sc: &SecurityContext) -> Result<Capabilities, SpecError> {
    let all =
        || node_capabilities(&std::fs::read_to_string("/proc/self/status").unwrap_or_default());
    if sc.privileged {
        return all();
    }
    let is_all = |names: &[String]| names.iter().any(|n| n.eq_ignore_ascii_case("ALL"));
    let mut caps: Capabilities = DEFAULT_CAPS.iter().copied().collect();
    if is_all(&sc.capabilities_add) {
        caps = all()?;
    }
    if is_all(&sc.capabilities_drop) {
        caps = HashSet::new();
    }
    for name in sc
        .capabilities_add
        .iter()
        .filter(|n| !n.eq_ignore_ascii_case("ALL"))
    {
        caps.insert(parse(name)?);
    }
    for name in sc
        .capabilities_drop
        .iter()
        .filter(|n| !n.eq_ignore_ascii_case("ALL"))
    {
        caps.remove(&parse(name)?);
    }
    Ok(caps)
}

/// `noNewPrivileges`: set when `allowPrivilegeEscalation: false`, unless the container is
/// privileged or adds `CAP_SYS_ADMIN` (the API rejects those combinations upstream; escalation
/// is then implied).
pub fn no_new_privileges(sc: &SecurityContext) -> bool {
    let adds_sys_admin = sc
        .capabilities_add
        .iter()
        .any(|n| matches!(parse(n), Ok(Capability::SysAdmin)));
    sc.allow_privilege_escalation == Some(false) && !sc.privileged && !adds_sys_admin
}

/// "Every capability" as containerd grants it: those in the agent's own bounding set
/// (`CapBnd` of its `/proc/self/status`), since a process cannot give more than it has; all
/// known ones if that cannot be read.
fn node_capabilities(status: &str) -> Result<Capabilities, SpecError> {
    let bounding = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX);
    ALL_CAP_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bounding & (1 << bit) != 0)
        .map(|(_, name)| parse(name))
        .collect()
}

/// A capability by its Kubernetes name, with or without `CAP_`, any case.
fn parse(name: &str) -> Result<Capability, SpecError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse()
        .map_err(|_| SpecError::Invalid(format!("unknown capability {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc() -> SecurityContext {
        SecurityContext::default()
    }

    #[test]
    fn capability_sets_follow_containerd() {
        assert_eq!(capabilities(&sc()).unwrap().len(), DEFAULT_CAPS.len());
        let all = capabilities(&SecurityContext {
            privileged: true,
            ..sc()
        })
        .unwrap();
        assert_eq!(
            all,
            node_capabilities("")
                .unwrap()
                .intersection(&all)
                .copied()
                .collect()
        );
        let some = node_capabilities("CapBnd:\t0000000000000401\n").unwrap();
        assert_eq!(
            some,
            [Capability::Chown, Capability::NetBindService]
                .into_iter()
                .collect()
        );
        assert_eq!(node_capabilities("").unwrap().len(), ALL_CAP_NAMES.len());
        let only = capabilities(&SecurityContext {
            capabilities_drop: vec!["ALL".into()],
            capabilities_add: vec!["cap_net_bind_service".into()],
            ..sc()
        })
        .unwrap();
        assert_eq!(only, [Capability::NetBindService].into_iter().collect());
        let more = capabilities(&SecurityContext {
            capabilities_add: vec!["NET_ADMIN".into()],
            capabilities_drop: vec!["CAP_CHOWN".into()],
            ..sc()
        })
        .unwrap();
        assert!(more.contains(&Capability::NetAdmin));
        assert!(!more.contains(&Capability::Chown));
        let bad = capabilities(&SecurityContext {
            capabilities_add: vec!["FLY".into()],
            ..sc()
        });
        assert!(bad.unwrap_err().to_string().contains("FLY"));
    }

    #[test]
    fn no_new_privileges_as_upstream() {
        let deny = Some(false);
        assert!(!no_new_privileges(&sc()));
        let nnp = SecurityContext {
            allow_privilege_escalation: deny,
            ..sc()
        };
        assert!(no_new_privileges(&nnp));
        assert!(!no_new_privileges(&SecurityContext {
            privileged: true,
            ..nnp.clone()
        }));
        assert!(!no_new_privileges(&SecurityContext {
            capabilities_add: vec!["CAP_SYS_ADMIN".into()],
            ..nnp
        }));
    }

    #[test]
    fn identity_and_run_as_non_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\napp:x:1000:1001::/:/bin/sh\n",
        )
        .unwrap();
        let id = |sc: &SecurityContext, user| identity(sc, user, root.path());
        let as_app = SecurityContext {
            run_as_user: Some(1000),
            supplemental_groups: vec![5, 6],
            ..sc()
        };
        assert_eq!(
            id(&as_app, None).unwrap(),
            Identity {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![5, 6]
            }
        );
        let grouped = SecurityContext {
            run_as_group: Some(7),
            ..as_app
        };
        assert_eq!(id(&grouped, Some("root")).unwrap().gid, 7);
        let non_root = SecurityContext {
            run_as_non_root: true,
            ..sc()
        };
        let err = id(&non_root, None).unwrap_err().to_string();
        assert!(
            err.contains("runAsNonRoot and image will run as root"),
            "{err}"
        );
        assert_eq!(id(&non_root, Some("app")).unwrap().uid, 1000);
    }
}
