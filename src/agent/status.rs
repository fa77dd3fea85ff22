//! Pod status as the kubelet reports it: container states, phase and conditions.

use std::time::SystemTime;

use serde_json::{json, Value};

use crate::runtime::ExitStatus;

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The state of one container.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: SystemTime,
    },
    Terminated(ExitStatus),
}

#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: String,
    pub restart_count: u32,
    pub state: State,
    pub last_state: Option<ExitStatus>,
    /// Set when the container will not run again (its restart policy is done with it).
    pub finished: bool,
}

impl ContainerStatus {
    pub fn new(name: &str, image: &str, restart_count: u32) -> Self {
        ContainerStatus {
            name: name.to_string(),
            image: image.to_string(),
            image_id: String::new(),
            container_id: String::new(),
            restart_count,
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_state: None,
            finished: false,
        }
    }

    pub fn waiting(&mut self, reason: &str, message: Option<String>) {
        self.state = State::Waiting {
            reason: reason.to_string(),
            message,
        };
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    pub fn succeeded(&self) -> bool {
        matches!(&self.state, State::Terminated(e) if e.exit_code == 0)
    }

    /// Whether the container ever ran (now or before a restart).
    pub fn ever_started(&self) -> bool {
        self.last_state.is_some() || !matches!(self.state, State::Waiting { .. })
    }

    pub fn to_json(&self) -> Value {
        let state = match &self.state {
            State::Waiting { reason, message } => {
                let mut w = json!({ "reason": reason });
                if let Some(m) = message {
                    w["message"] = json!(m);
                }
                json!({ "waiting": w })
            }
            State::Running { started_at } => {
                json!({ "running": { "startedAt": rfc3339(*started_at) } })
            }
            State::Terminated(e) => json!({ "terminated": terminated_json(e, &self.container_id) }),
        };
        let mut out = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.is_running(),
            "started": self.is_running(),
            "restartCount": self.restart_count,
            "state": state,
            "lastState": self.last_state.as_ref().map_or(json!({}), |e| json!({ "terminated": terminated_json(e, &self.container_id) })),
        });
        if !self.container_id.is_empty() {
            out["containerID"] = json!(self.container_id);
        }
        out
    }
}

fn terminated_json(e: &ExitStatus, container_id: &str) -> Value {
    let mut t = json!({
        "exitCode": e.exit_code,
        "reason": e.reason,
        "startedAt": rfc3339(e.started_at),
        "finishedAt": rfc3339(e.finished_at),
    });
    if let Some(m) = &e.message {
        t["message"] = json!(m);
    }
    if !container_id.is_empty() {
        t["containerID"] = json!(container_id);
    }
    t
}

/// The status of a whole pod as the agent knows it.
#[derive(Debug, Clone)]
pub struct PodStatus {
    pub init: Vec<ContainerStatus>,
    pub containers: Vec<ContainerStatus>,
    pub initialized: bool,
    /// Set when the pod failed as a whole (init failure with restartPolicy Never, deadline).
    pub failed: Option<(String, String)>,
    pub host_ip: String,
    pub start_time: SystemTime,
    pub transition: std::collections::HashMap<&'static str, (bool, String)>,
}

impl PodStatus {
    /// The phase, following the kubelet's rules.
    pub fn phase(&self) -> &'static str {
        if self.failed.is_some() {
            return "Failed";
        }
        if !self.initialized {
            return "Pending";
        }
        if self.containers.iter().any(ContainerStatus::is_running) {
            return "Running";
        }
        let all_finished =
            !self.containers.is_empty() && self.containers.iter().all(|c| c.finished);
        if all_finished {
            return if self.containers.iter().all(ContainerStatus::succeeded) {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if self.containers.iter().any(ContainerStatus::ever_started) {
            "Running"
        } else {
            "Pending"
        }
    }

    fn condition(&mut self, type_: &'static str, status: bool, reason: Option<&str>) -> Value {
        let now = crate::api::object::now_rfc3339();
        let entry = self
            .transition
            .entry(type_)
            .or_insert((status, now.clone()));
        if entry.0 != status {
            *entry = (status, now);
        }
        let mut c = json!({
            "type": type_,
            "status": if status { "True" } else { "False" },
            "lastProbeTime": null,
            "lastTransitionTime": entry.1,
        });
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    }

    pub fn render(&mut self) -> Value {
        let phase = self.phase();
        let completed = matches!(phase, "Succeeded" | "Failed");
        let all_running =
            !self.containers.is_empty() && self.containers.iter().all(ContainerStatus::is_running);
        let not_ready_reason = if completed {
            Some("PodCompleted")
        } else if all_running {
            None
        } else {
            Some("ContainersNotReady")
        };
        let init_reason = if self.initialized {
            None
        } else {
            Some("ContainersNotInitialized")
        };
        let conditions = vec![
            self.condition("PodReadyToStartContainers", !completed, None),
            self.condition("Initialized", self.initialized, init_reason),
            self.condition("Ready", all_running, not_ready_reason),
            self.condition("ContainersReady", all_running, not_ready_reason),
            self.condition("PodScheduled", true, None),
        ];
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.host_ip,
            "hostIPs": [{ "ip": self.host_ip }],
            "startTime": rfc3339(self.start_time),
            "containerStatuses": self.containers.iter().map(ContainerStatus::to_json).collect::<Vec<_>>(),
        });
        if !self.init.is_empty() {
            status["initContainerStatuses"] =
                self.init.iter().map(ContainerStatus::to_json).collect();
        }
        if let Some((reason, message)) = &self.failed {
            status["reason"] = json!(reason);
            status["message"] = json!(message);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32) -> ExitStatus {
        ExitStatus {
            exit_code: code,
            reason: if code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            message: None,
            started_at: SystemTime::now(),
            finished_at: SystemTime::now(),
        }
    }

    fn pod(containers: Vec<ContainerStatus>) -> PodStatus {
        PodStatus {
            init: vec![],
            containers,
            initialized: true,
            failed: None,
            host_ip: "127.0.0.1".into(),
            start_time: SystemTime::now(),
            transition: Default::default(),
        }
    }

    #[test]
    fn phases_follow_the_kubelet() {
        let mut c = ContainerStatus::new("a", "img", 0);
        assert_eq!(pod(vec![c.clone()]).phase(), "Pending");
        c.state = State::Running {
            started_at: SystemTime::now(),
        };
        assert_eq!(pod(vec![c.clone()]).phase(), "Running");
        c.state = State::Terminated(exit(0));
        c.finished = true;
        assert_eq!(pod(vec![c.clone()]).phase(), "Succeeded");
        c.state = State::Terminated(exit(2));
        assert_eq!(pod(vec![c.clone()]).phase(), "Failed");
        // Crash-looping: waiting for a restart after having run.
        c.finished = false;
        c.last_state = Some(exit(1));
        c.waiting("CrashLoopBackOff", None);
        assert_eq!(pod(vec![c]).phase(), "Running");
    }

    #[test]
    fn status_json_has_what_kubectl_reads() {
        let mut c = ContainerStatus::new("a", "img", 2);
        c.waiting("CrashLoopBackOff", Some("back-off".into()));
        c.last_state = Some(exit(1));
        let mut p = pod(vec![c]);
        let s = p.render();
        assert_eq!(
            s["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );
        assert_eq!(s["containerStatuses"][0]["restartCount"], 2);
        assert_eq!(
            s["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
            1
        );
        assert_eq!(s["phase"], "Running");
    }
}
