//! What a Linux container takes from its pod beyond what every runtime needs: the merged
//! `securityContext` and `shareProcessNamespace`. The agent builds it with
//! [`LinuxOptions::from_pod`]; the wasm runtime ignores it.

use serde_json::Value;

use super::security::SecurityContext;

/// Linux-only settings of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinuxOptions {
    pub security: SecurityContext,
    /// `spec.shareProcessNamespace`: the pod's containers share one PID namespace.
    pub share_process_namespace: bool,
}

impl LinuxOptions {
    /// Reads the pod's and the container's `securityContext` (the container's fields win,
    /// as in the kubelet) and `shareProcessNamespace` from their JSON.
    pub fn from_pod(pod: &Value, container: &Value) -> LinuxOptions {
        let pod_sc = pod.pointer("/spec/securityContext");
        let c_sc = container.get("securityContext");
        let field = |name: &str| {
            c_sc.and_then(|s| s.get(name))
                .filter(|v| !v.is_null())
                .or_else(|| pod_sc.and_then(|s| s.get(name)).filter(|v| !v.is_null()))
        };
        let id = |name: &str| {
            field(name)
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        let flag = |v: Option<&Value>| v.and_then(Value::as_bool);
        let names = |path: &str| -> Vec<String> {
            c_sc.and_then(|s| s.pointer(path))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let security = SecurityContext {
            run_as_user: id("runAsUser"),
            run_as_group: id("runAsGroup"),
            supplemental_groups: pod_sc
                .and_then(|s| s.get("supplementalGroups"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_u64)
                        .filter_map(|g| u32::try_from(g).ok())
                        .collect()
                })
                .unwrap_or_default(),
            run_as_non_root: flag(field("runAsNonRoot")).unwrap_or(false),
            read_only_root_filesystem: flag(c_sc.and_then(|s| s.get("readOnlyRootFilesystem")))
                .unwrap_or(false),
            capabilities_add: names("/capabilities/add"),
            capabilities_drop: names("/capabilities/drop"),
            privileged: flag(c_sc.and_then(|s| s.get("privileged"))).unwrap_or(false),
            allow_privilege_escalation: flag(c_sc.and_then(|s| s.get("allowPrivilegeEscalation"))),
        };
        LinuxOptions {
            security,
            share_process_namespace: flag(pod.pointer("/spec/shareProcessNamespace"))
                .unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_fields_win_over_the_pods() {
        let pod = json!({"spec": {
            "shareProcessNamespace": true,
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": true,
                                "supplementalGroups": [4000, 4001]}}});
        let container = json!({"securityContext": {
            "runAsUser": 2000, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}});
        let o = LinuxOptions::from_pod(&pod, &container);
        assert!(o.share_process_namespace);
        let s = o.security;
        assert_eq!((s.run_as_user, s.run_as_group), (Some(2000), Some(3000)));
        assert_eq!(s.supplemental_groups, vec![4000, 4001]);
        assert!(s.run_as_non_root && s.read_only_root_filesystem && !s.privileged);
        assert_eq!(s.allow_privilege_escalation, Some(false));
        assert_eq!(s.capabilities_add, vec!["NET_ADMIN"]);
        assert_eq!(s.capabilities_drop, vec!["ALL"]);
        assert_eq!(
            LinuxOptions::from_pod(&json!({}), &json!({})),
            LinuxOptions::default()
        );
    }
}
