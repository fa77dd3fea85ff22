//! wkube: a WebAssembly-native container orchestrator that speaks the Kubernetes API.

pub mod api;
