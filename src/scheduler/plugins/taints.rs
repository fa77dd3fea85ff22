//! Taints and tolerations: NodeUnschedulable, NodeReady and TaintToleration.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::scheduler::framework::{
    default_normalize, FilterPlugin, NodeInfo, PodInfo, Readiness, Reason, ScorePlugin,
};

pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Upstream's `Toleration.ToleratesTaint`: an empty effect matches every effect, an empty key
/// (only valid with `Exists`) matches every key, `Equal` (or no operator) compares values.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

fn untolerated_message(taint: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or("")
    )
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.to_string(),
        effect: effect.to_string(),
        ..Default::default()
    }
}

/// Cordoned nodes (`spec.unschedulable`) take only pods tolerating
/// `node.kubernetes.io/unschedulable:NoSchedule` (upstream NodeUnschedulable).
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        if !node.unschedulable
            || tolerated(&pod.tolerations, &taint(TAINT_UNSCHEDULABLE, "NoSchedule"))
        {
            return Ok(());
        }
        Err(Reason::unresolvable("node(s) were unschedulable"))
    }
}

/// A node whose Ready condition is not True is treated as carrying the taint the node
/// lifecycle controller would put on it (`not-ready` or `unreachable`, NoSchedule), so pods
/// that tolerate it (DaemonSet pods) still land there, as upstream. Checking the condition
/// directly covers clusters where no controller has tainted the node (yet).
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeReady;

impl FilterPlugin for NodeReady {
    fn name(&self) -> &'static str {
        "NodeReady"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        let key = match node.readiness {
            Readiness::Ready => return Ok(()),
            Readiness::NotReady => TAINT_NOT_READY,
            Readiness::Unreachable => TAINT_UNREACHABLE,
        };
        let implied = taint(key, "NoSchedule");
        if tolerated(&pod.tolerations, &implied) {
            return Ok(());
        }
        Err(Reason::unresolvable(untolerated_message(&implied)))
    }
}

/// Filter: the first NoSchedule/NoExecute taint the pod does not tolerate rejects the node.
/// Score: fewer untolerated PreferNoSchedule taints is better.
#[derive(Clone, Copy, Debug)]
pub struct TaintToleration {
    pub weight: i64,
}

impl Default for TaintToleration {
    fn default() -> Self {
        TaintToleration { weight: 1 }
    }
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
        let untolerated = node.taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(&pod.tolerations, t)
        });
        match untolerated {
            None => Ok(()),
            Some(t) => Err(Reason::unresolvable(untolerated_message(t))),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    /// The number of untolerated PreferNoSchedule taints; normalized in reverse.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let count = node
            .taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&pod.tolerations, t))
            .count();
        i64::try_from(count).unwrap_or(i64::MAX)
    }

    fn weight(&self) -> i64 {
        self.weight
    }

    fn normalize(&self, _pod: &PodInfo, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{node, pod};

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: opt(key),
            operator: opt(op),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        }
    }

    fn tnt(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn toleration_matching() {
        let t = tnt("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(
            &tol("dedicated", "Equal", "gpu", "NoSchedule"),
            &t
        ));
        assert!(
            tolerates(&tol("dedicated", "", "gpu", ""), &t),
            "empty op is Equal, empty effect matches all"
        );
        assert!(!tolerates(
            &tol("dedicated", "Equal", "cpu", "NoSchedule"),
            &t
        ));
        assert!(!tolerates(&tol("dedicated", "Equal", "", "NoSchedule"), &t));
        assert!(tolerates(&tol("dedicated", "Exists", "", "NoSchedule"), &t));
        assert!(!tolerates(&tol("dedicated", "Exists", "", "NoExecute"), &t));
        assert!(
            tolerates(&tol("", "Exists", "", ""), &t),
            "empty key + Exists tolerates everything"
        );
        assert!(tolerates(&tol("", "Exists", "", "NoSchedule"), &t));
        assert!(!tolerates(&tol("", "Exists", "", "PreferNoSchedule"), &t));
        assert!(!tolerates(&tol("other", "Exists", "", ""), &t));
        assert!(!tolerates(&tol("dedicated", "Bogus", "gpu", ""), &t));
        // A taint with no value is matched by Equal with no value.
        assert!(tolerates(
            &tol("k", "Equal", "", ""),
            &tnt("k", "", "NoExecute")
        ));
    }

    #[test]
    fn taint_filter_reports_first_untolerated_hard_taint() {
        let mut n = node("n1");
        n.taints = vec![
            tnt("soft", "x", "PreferNoSchedule"),
            tnt("node-role", "x", "NoSchedule"),
            tnt("evict", "", "NoExecute"),
        ];
        let mut p = pod("p");
        let err = TaintToleration::default().filter(&p, &n).unwrap_err();
        assert_eq!(
            err.messages(),
            ["node(s) had untolerated taint {node-role: x}"]
        );
        assert!(err.is_unresolvable());
        p.tolerations = vec![tol("node-role", "Exists", "", "")];
        let err = TaintToleration::default().filter(&p, &n).unwrap_err();
        assert_eq!(err.messages(), ["node(s) had untolerated taint {evict: }"]);
        p.tolerations.push(tol("evict", "Equal", "", "NoExecute"));
        assert!(
            TaintToleration::default().filter(&p, &n).is_ok(),
            "PreferNoSchedule never filters"
        );
    }

    #[test]
    fn taint_score_prefers_fewer_prefer_no_schedule_taints() {
        let plugin = TaintToleration::default();
        let mut a = node("a");
        a.taints = vec![
            tnt("x", "", "PreferNoSchedule"),
            tnt("y", "", "PreferNoSchedule"),
        ];
        let mut b = node("b");
        b.taints = vec![tnt("x", "", "PreferNoSchedule")];
        let c = node("c");
        let mut p = pod("p");
        let mut scores: Vec<i64> = [&a, &b, &c].iter().map(|n| plugin.score(&p, n)).collect();
        assert_eq!(scores, [2, 1, 0]);
        plugin.normalize(&p, &mut scores);
        assert_eq!(scores, [0, 50, 100]);
        p.tolerations = vec![tol("", "Exists", "", "PreferNoSchedule")];
        let mut scores: Vec<i64> = [&a, &b].iter().map(|n| plugin.score(&p, n)).collect();
        plugin.normalize(&p, &mut scores);
        assert_eq!(scores, [100, 100]);
    }

    #[test]
    fn unschedulable_node() {
        let mut n = node("n");
        n.unschedulable = true;
        let mut p = pod("p");
        let err = NodeUnschedulable.filter(&p, &n).unwrap_err();
        assert_eq!(err.messages(), ["node(s) were unschedulable"]);
        p.tolerations = vec![tol(TAINT_UNSCHEDULABLE, "Exists", "", "NoSchedule")];
        assert!(NodeUnschedulable.filter(&p, &n).is_ok());
        p.tolerations = vec![tol(TAINT_UNSCHEDULABLE, "Exists", "", "NoExecute")];
        assert!(NodeUnschedulable.filter(&p, &n).is_err());
        n.unschedulable = false;
        assert!(NodeUnschedulable.filter(&p, &n).is_ok());
    }

    #[test]
    fn not_ready_node_acts_as_tainted() {
        let mut n = node("n");
        let mut p = pod("p");
        assert!(NodeReady.filter(&p, &n).is_ok());
        n.readiness = Readiness::NotReady;
        let err = NodeReady.filter(&p, &n).unwrap_err();
        assert_eq!(
            err.messages(),
            ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
        );
        n.readiness = Readiness::Unreachable;
        let err = NodeReady.filter(&p, &n).unwrap_err();
        assert_eq!(
            err.messages(),
            ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]
        );
        // DaemonSet-style toleration.
        p.tolerations = vec![tol(TAINT_UNREACHABLE, "Exists", "", "")];
        assert!(NodeReady.filter(&p, &n).is_ok());
        n.readiness = Readiness::NotReady;
        assert!(NodeReady.filter(&p, &n).is_err());
    }
}
