//! The Kubernetes-compatible API server.
//!
//! Requests flow: TLS + authentication ([`auth`]) -> routing ([`server`], [`path`]) ->
//! HTTP decoding ([`handlers`], [`watch`]) -> REST semantics ([`rest`]) -> objects over the
//! store ([`storage`]). One table of kinds ([`registry`]) drives all of it.

pub mod admission;
pub mod auth;
pub mod discovery;
pub mod eviction;
pub mod handlers;
pub mod node_proxy;
pub mod object;
pub mod openapi;
pub mod patch_strategy;
pub mod path;
pub mod protobuf;
pub mod query;
pub mod registry;
pub mod rest;
pub mod selectors;
pub mod server;
pub mod status;
pub mod storage;
pub mod strategic_merge;
pub mod table;
pub mod validation;
pub mod watch;
mod watch_memo;

pub use auth::{Authenticator, UserInfo};
pub use server::{ApiServer, ServeError};
