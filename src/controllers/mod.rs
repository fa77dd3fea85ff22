//! Control loops that run inside the control plane process.
//!
//! `namespace` acts through the same REST layer as API requests, so every rule (validation,
//! finalizers, graceful deletion) applies to it too. The workload controllers (`replicaset`,
//! `job`, `cronjob`, `gc`) are kube-rs runtime controllers talking to the API server only through a
//! `kube::Client`, so they could run in another process just as well.

pub mod cronjob;
pub mod deployment;
pub mod gc;
pub mod job;
pub mod namespace;
pub mod replicaset;
