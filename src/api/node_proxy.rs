//! Connections from the API server to node agents (for `pods/log`).
//!
//! The API server authenticates with a client certificate signed by the cluster CA; it
//! authenticates the agent by the SHA-256 of the agent's serving certificate, which the agent
//! published on its Node object (only a node's own agent writes it).

use std::sync::Arc;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest as _;

/// Accepts exactly one certificate, by its SHA-256.
#[derive(Debug)]
struct PinnedCert {
    sha256_hex: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = hex::encode(sha2::Sha256::digest(end_entity.as_ref()));
        if !self.sha256_hex.is_empty() && got == self.sha256_hex {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "node agent certificate {got} does not match the one its Node publishes"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The API server's client side towards agents.
#[derive(Clone)]
pub struct NodeProxy {
    cert_chain: Vec<CertificateDer<'static>>,
    key_pem: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl NodeProxy {
    pub fn new(client_cert_pem: &str, client_key_pem: &str) -> Result<Self, String> {
        let cert_chain = CertificateDer::pem_slice_iter(client_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        PrivateKeyDer::from_pem_slice(client_key_pem.as_bytes()).map_err(|e| e.to_string())?;
        Ok(NodeProxy {
            cert_chain,
            key_pem: client_key_pem.to_string(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// GETs `path` on an agent and returns the response with a streaming body.
    pub async fn get(
        &self,
        host: &str,
        port: u16,
        pinned_sha256: &str,
        path: &str,
    ) -> Result<hyper::Response<Incoming>, String> {
        let key =
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| e.to_string())?;
        let verifier = Arc::new(PinnedCert {
            sha256_hex: pinned_sha256.to_string(),
            provider: self.provider.clone(),
        });
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.cert_chain.clone(), key)
            .map_err(|e| e.to_string())?;
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("connecting to node agent {addr}: {e}"))?;
        let server_name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS to node agent {addr}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP to node agent {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, addr.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        sender
            .send_request(req)
            .await
            .map_err(|e| format!("request to node agent {addr}: {e}"))
    }
}
