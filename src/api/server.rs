//! The HTTPS server: TLS with optional client certificates, authentication, routing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::auth::{self, Authenticator, PeerIdentity};
use super::discovery;
use super::handlers::{self, json_response};
use super::node_proxy::NodeProxy;
use super::openapi::OpenApi;
use super::rest::Rest;
use super::status::ApiError;
use crate::pki::ClusterPki;

/// What every request handler shares.
pub struct ApiState {
    pub rest: Rest,
    pub openapi: Arc<OpenApi>,
    /// Reaches node agents for `pods/log`.
    pub nodes: NodeProxy,
    /// Object versions decoded once for all watches.
    pub(crate) watch_memo: super::watch_memo::WatchMemo,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, not yet serving API server.
pub struct ApiServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
}

impl ApiServer {
    pub async fn bind(
        addr: SocketAddr,
        rest: Rest,
        pki: &ClusterPki,
        authenticator: Authenticator,
    ) -> Result<Self, ServeError> {
        let openapi = rest.openapi().clone();
        let nodes = NodeProxy::new(&pki.kubelet_client_cert_pem, &pki.kubelet_client_key_pem)
            .map_err(ServeError::Tls)?;
        let state = Arc::new(ApiState {
            rest,
            openapi,
            nodes,
            watch_memo: Default::default(),
        });
        let router = router(state, Arc::new(authenticator));
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(pki)?));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok(ApiServer {
            listener,
            acceptor,
            router,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves connections until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let acceptor = self.acceptor.clone();
                        let router = self.router.clone();
                        tokio::spawn(serve_connection(acceptor, router, tcp, peer));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    router: Router,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let identity = PeerIdentity(
        tls.get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|c| auth::identity_from_cert(c)),
    );
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(identity.clone());
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

fn tls_config(pki: &ClusterPki) -> Result<rustls::ServerConfig, ServeError> {
    let tls = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()) {
        roots.add(ca.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn router(state: Arc<ApiState>, authenticator: Arc<Authenticator>) -> Router {
    let api = Router::new()
        .route(
            "/version",
            get(|| async { json_response(discovery::version()) }),
        )
        .route("/healthz", get(health))
        .route("/livez", get(health))
        .route("/readyz", get(health))
        .route("/api", get(core_discovery))
        .route("/apis", get(group_discovery))
        .route("/api/{*rest}", any(handlers::handle))
        .route("/apis/{*rest}", any(handlers::handle))
        .route("/wkube/v1/snapshot", get(snapshot))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3_index))
        .route("/openapi/v3/{*path}", get(openapi_v3))
        .fallback(not_found)
        .with_state(state);
    let inflight = Arc::new(tokio::sync::Semaphore::new(MAX_REQUESTS_IN_FLIGHT));
    api.layer(axum::middleware::from_fn_with_state(
        inflight,
        limit_in_flight,
    ))
    .layer(axum::middleware::from_fn_with_state(
        authenticator,
        auth::authenticate,
    ))
    .layer(axum::middleware::from_fn(trace_request))
}

/// Requests served at once before the server answers 429, as the apiserver's
/// `--max-requests-inflight` (watches are long-running and not counted).
const MAX_REQUESTS_IN_FLIGHT: usize = 400;

async fn limit_in_flight(
    State(inflight): State<Arc<tokio::sync::Semaphore>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let watching = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=1" || p == "watch=true"));
    if watching {
        return next.run(req).await;
    }
    match inflight.try_acquire() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError::too_many_requests("Too many requests, please try again later.", 1)
            .into_response(),
    }
}

/// A span per request with method and path (the user is recorded once authenticated).
async fn trace_request(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument as _;
    let span = tracing::debug_span!(
        "http",
        method = %req.method(),
        uri = %req.uri(),
        user = tracing::field::Empty
    );
    async move {
        let resp = next.run(req).await;
        tracing::debug!(status = resp.status().as_u16(), "done");
        resp
    }
    .instrument(span)
    .await
}

async fn health() -> &'static str {
    "ok"
}

async fn core_discovery(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    discovery::core(state.rest.registry(), &headers)
}

async fn group_discovery(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    discovery::groups(state.rest.registry(), &headers)
}

/// kubectl asks for the v2 document in gnostic's protobuf form; other clients get JSON.
async fn openapi_v2(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if super::openapi::v2_accepts_protobuf(accept) {
        let mut resp = (StatusCode::OK, state.openapi.v2_protobuf().to_vec()).into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(super::openapi::V2_PROTOBUF_CONTENT_TYPE),
        );
        return resp;
    }
    json_response(state.openapi.v2().clone())
}

async fn openapi_v3_index(State(state): State<Arc<ApiState>>) -> Response {
    json_response(state.openapi.v3_index().clone())
}

async fn openapi_v3(State(state): State<Arc<ApiState>>, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches("/openapi/v3/");
    match state.openapi.v3_group_version(path) {
        Some((doc, hash)) => {
            let mut resp = json_response(doc.clone());
            if let Ok(etag) = axum::http::HeaderValue::from_str(&format!("\"{hash}\"")) {
                resp.headers_mut().insert(axum::http::header::ETAG, etag);
            }
            resp
        }
        None => ApiError::no_route(uri.path()).into_response(),
    }
}

/// Streams a store snapshot to an administrator (`wkube snapshot save` on a running server).
async fn snapshot(
    State(state): State<Arc<ApiState>>,
    user: Option<axum::Extension<super::auth::UserInfo>>,
) -> Response {
    let is_admin = user.is_some_and(|u| u.groups.iter().any(|g| g == crate::pki::ADMIN_GROUP));
    if !is_admin {
        return ApiError::forbidden("snapshots may only be taken by cluster administrators")
            .into_response();
    }
    let mut buf = Vec::new();
    match state.rest.objects().store().save_snapshot(&mut buf).await {
        Ok(revision) => {
            let mut resp = (StatusCode::OK, buf).into_response();
            let headers = resp.headers_mut();
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert("x-wkube-revision", axum::http::HeaderValue::from(revision));
            resp
        }
        Err(e) => ApiError::internal(format!("taking a snapshot: {e}")).into_response(),
    }
}

async fn not_found(uri: Uri) -> Response {
    let mut resp = ApiError::no_route(uri.path()).into_response();
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp
}
