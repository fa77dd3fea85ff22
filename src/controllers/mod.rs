//! Control loops that run inside the control plane process.
//!
//! They act through the same REST layer as API requests, so every rule (validation, finalizers,
//! graceful deletion) applies to them too.

pub mod deployment;
pub mod namespace;
