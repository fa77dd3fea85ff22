//! wkube: a WebAssembly-native container orchestrator that speaks the Kubernetes API.
//!
//! The crate is one binary's worth of parts; see `DESIGN.md` in the project's shared folder for
//! how they fit. Dependencies point one way: `cli` -> `api` -> `store`, `pki`.

pub mod api;
pub mod cli;
pub mod controllers;
pub mod pki;
pub mod store;
