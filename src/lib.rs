//! wkube: a WebAssembly-native container orchestrator that speaks the Kubernetes API.
//!
//! The crate is one binary's worth of parts; see `DESIGN.md` in the project's shared folder for
//! how they fit. Dependencies point one way: `cli` -> (`api`, `agent`, `scheduler`, `controllers`) ->
//! (`store`, `runtime`, `image`, `pki`). The agent and the scheduler only talk to the API.

pub mod agent;
pub mod api;
pub mod cli;
pub mod controllers;
pub mod events;
pub mod image;
pub mod label_selector;
pub mod pki;
pub mod runtime;
pub mod scheduler;
pub mod store;

/// Makes ring the process-wide rustls crypto provider (for clients that do not pick one).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
