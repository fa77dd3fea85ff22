//! RuntimeFit: a pod goes only to a node whose agent offers its runtime.
//!
//! wkube nodes run wasm pods in wasmtime and, where the host allows, Linux containers. The
//! agent advertises what it offers in the `wkube.dev/runtimes` label (`wasmtime` or
//! `wasmtime.linux`); which runtime a pod needs is decided by
//! [`pod_runtime`](crate::scheduler::framework::pod_runtime). A node without the label offers
//! nothing, as a node outside a RuntimeClass's node selector would upstream: the scheduler does
//! not guess what an unlabelled node can run.

use crate::scheduler::framework::{FilterPlugin, NodeInfo, PodInfo, Reason};

#[derive(Clone, Copy, Debug, Default)]
pub struct RuntimeFit;

impl FilterPlugin for RuntimeFit {
    fn name(&self) -> &'static str {
        "RuntimeFit"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        if node.runtimes.contains(&pod.runtime) {
            Ok(())
        } else {
            Err(Reason::unresolvable(format!(
                "node(s) didn't offer runtime {}",
                pod.runtime
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::framework::{NodeInfo, PodInfo};
    use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node_with(label: Option<&str>) -> NodeInfo {
        NodeInfo::from_node(&Node {
            metadata: ObjectMeta {
                name: Some("n".into()),
                labels: label.map(|l| [("wkube.dev/runtimes".to_string(), l.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn pod_with(class: Option<&str>, annotation: Option<&str>) -> PodInfo {
        PodInfo::from_pod(&Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                annotations: annotation
                    .map(|a| [("wkube.dev/runtime".to_string(), a.to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                runtime_class_name: class.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn pod_runtime_rules() {
        assert_eq!(
            pod_with(None, None).runtime,
            "wasmtime",
            "unmarked pods are wasm"
        );
        assert_eq!(pod_with(None, Some("wasm")).runtime, "wasmtime");
        assert_eq!(pod_with(None, Some("linux")).runtime, "linux");
        assert_eq!(
            pod_with(Some("fast"), Some("linux")).runtime,
            "linux",
            "with a class, the handler admission recorded wins over the class name"
        );
        assert_eq!(pod_with(Some("linux"), None).runtime, "linux");
        assert_eq!(pod_with(Some("gvisor"), None).runtime, "gvisor");
    }

    #[test]
    fn nodes_offer_runtimes_by_label() {
        let wasm_only = node_with(Some("wasmtime"));
        let both = node_with(Some("wasmtime.linux"));
        let unlabelled = node_with(None);
        let wasm = pod_with(None, None);
        let linux = pod_with(Some("linux"), None);
        assert!(RuntimeFit.filter(&wasm, &wasm_only).is_ok());
        assert!(RuntimeFit.filter(&wasm, &both).is_ok());
        assert!(RuntimeFit.filter(&linux, &both).is_ok());
        let err = RuntimeFit.filter(&linux, &wasm_only).unwrap_err();
        assert_eq!(err.messages(), ["node(s) didn't offer runtime linux"]);
        assert!(err.is_unresolvable());
        assert!(RuntimeFit.filter(&wasm, &unlabelled).is_err());
        assert!(RuntimeFit
            .filter(&pod_with(Some("gvisor"), None), &both)
            .is_err());
    }
}
