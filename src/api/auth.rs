//! Authentication: bearer tokens and client certificates signed by the cluster CA.
//!
//! The TLS layer verifies client certificates against the cluster CA (they are optional, so
//! token clients can connect too); the identity found in a verified certificate travels with
//! each request of that connection as a [`PeerIdentity`] extension.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::status::ApiError;

/// Who is making a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub groups: Vec<String>,
}

/// The identity of a connection's verified client certificate, if it presented one.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity(pub Option<UserInfo>);

/// Static bearer tokens known to the server.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: HashMap<String, UserInfo>,
}

impl Authenticator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add_token(&mut self, token: impl Into<String>, user: UserInfo) {
        self.tokens.insert(token.into(), user);
    }

    fn by_token(&self, token: &str) -> Option<&UserInfo> {
        // Tokens are compared by hash-map lookup; they are 256-bit random strings.
        self.tokens.get(token)
    }
}

/// Paths anyone may read, as the upstream `system:public-info-viewer` role allows.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz")
}

/// Middleware: resolve the user or answer 401.
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let user = identify(&auth, &req);
    match user {
        Some(user) => {
            tracing::Span::current().record("user", user.username.as_str());
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        None if is_public(req.uri().path()) => next.run(req).await,
        None => ApiError::unauthorized().into_response(),
    }
}

fn identify(auth: &Authenticator, req: &Request) -> Option<UserInfo> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let token = value.to_str().ok()?.strip_prefix("Bearer ")?.trim();
        // A presented but unknown token is a failed login, even over a client-cert connection.
        return auth.by_token(token).cloned();
    }
    req.extensions()
        .get::<PeerIdentity>()
        .and_then(|p| p.0.clone())
}

/// Reads user (CN) and groups (O) from a DER certificate the TLS layer already verified.
pub fn identity_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let username = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some(UserInfo { username, groups })
}
