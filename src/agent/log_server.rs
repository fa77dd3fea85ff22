//! The agent's HTTPS endpoint for container logs, the kubelet's `/containerLogs`.
//!
//! Only the API server may call it: clients must present a certificate signed by the cluster
//! CA. The agent's own serving certificate is made at start and its SHA-256 published on the
//! Node, so the API server can pin it without a CA of its own for agents.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::Digest as _;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::logs::LogRegistry;
use super::AgentConfig;
use crate::runtime::logs::{self, ReadOptions};

pub struct LogServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    port: u16,
    cert_sha256: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LogQuery {
    follow: Option<bool>,
    tail_lines: Option<i64>,
    since_seconds: Option<i64>,
    since_time: Option<String>,
    timestamps: Option<bool>,
    previous: Option<bool>,
    limit_bytes: Option<i64>,
}

impl LogServer {
    pub async fn bind(config: &AgentConfig, registry: Arc<LogRegistry>) -> Result<Self, String> {
        let (cert_pem, key_pem) = self_signed(config)?;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
        let cert_sha256 = certs
            .first()
            .map(|c| hex::encode(sha2::Sha256::digest(c.as_ref())))
            .unwrap_or_default();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(config.cluster_ca_pem.as_bytes()) {
            roots
                .add(ca.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| e.to_string())?;
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| e.to_string())?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| format!("listening on {}: {e}", config.listen))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let router = Router::new()
            .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(registry);
        Ok(LogServer {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(tls)),
            router,
            port,
            cert_sha256,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn cert_sha256(&self) -> &str {
        &self.cert_sha256
    }

    pub async fn serve(self) {
        loop {
            let Ok((tcp, _)) = self.listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let acceptor = self.acceptor.clone();
            let router = self.router.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        router.clone().oneshot(req.map(Body::new))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    }
}

fn self_signed(config: &AgentConfig) -> Result<(String, String), String> {
    let names = vec![
        config.node_name.clone(),
        config.node_ip.to_string(),
        "localhost".to_string(),
    ];
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("wkube-agent:{}", config.node_name),
    );
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

async fn container_logs(
    State(registry): State<Arc<LogRegistry>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    Query(q): Query<LogQuery>,
) -> Response {
    let previous = q.previous.unwrap_or(false);
    let Some(loc) = registry.locate(&ns, &pod, &container, previous) else {
        let msg = if previous {
            format!("previous terminated container {container:?} in pod {pod:?} not found")
        } else {
            format!("container {container:?} in pod {pod:?} has no logs yet")
        };
        return (StatusCode::NOT_FOUND, msg).into_response();
    };
    let since = match (q.since_seconds, q.since_time.as_deref()) {
        (Some(s), _) if s > 0 => SystemTime::now().checked_sub(Duration::from_secs(s as u64)),
        (_, Some(t)) => chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc).into()),
        _ => None,
    };
    let opts = ReadOptions {
        follow: q.follow.unwrap_or(false),
        tail_lines: q.tail_lines.filter(|n| *n >= 0).map(|n| n as usize),
        since,
        timestamps: q.timestamps.unwrap_or(false),
        limit_bytes: q.limit_bytes.filter(|n| *n > 0).map(|n| n as usize),
    };
    let mut closed = loc.closed;
    let stop = async move {
        let _ = closed.wait_for(|c| *c).await;
    };
    let stream = logs::read(&loc.path, opts, stop);
    let mut resp = Body::from_stream(stream).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    resp
}
