//! The cluster's certificates: a CA made at first start, a server certificate signed by it, and
//! an admin identity (client certificate and bearer token) for the kubeconfig.
//!
//! Everything lives under `<data-dir>/pki/`, private keys with mode 0600.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rand::Rng as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The identity the admin credentials carry.
pub const ADMIN_USER: &str = "wkube-admin";
pub const ADMIN_GROUP: &str = "system:masters";
/// The API server's user name when it calls node agents.
pub const KUBELET_CLIENT_USER: &str = "wkube-apiserver-kubelet-client";

/// PEM material of the cluster, loaded from or created in the data dir.
#[derive(Clone)]
pub struct ClusterPki {
    dir: PathBuf,
    pub ca_cert_pem: String,
    ca_key_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub admin_token: String,
    /// The API server's identity towards node agents (issued afresh at every start).
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

impl ClusterPki {
    /// Loads the CA and admin credentials (creating them on first start) and issues a fresh
    /// server certificate for `server_names` (DNS names or IP addresses).
    pub fn load_or_create(data_dir: &Path, server_names: &[String]) -> Result<Self, PkiError> {
        let dir = data_dir.join("pki");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let (ca_cert_pem, ca_key_pem) = match (read(&dir, "ca.crt")?, read(&dir, "ca.key")?) {
            (Some(c), Some(k)) => (c, k),
            _ => {
                let (c, k) = new_ca()?;
                write(&dir, "ca.key", &k, true)?;
                write(&dir, "ca.crt", &c, false)?;
                (c, k)
            }
        };
        let ca_key = KeyPair::from_pem(&ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)?;

        let (admin_cert_pem, admin_key_pem) =
            match (read(&dir, "admin.crt")?, read(&dir, "admin.key")?) {
                (Some(c), Some(k)) => (c, k),
                _ => {
                    let (c, k) = issue_client(&issuer, ADMIN_USER, &[ADMIN_GROUP])?;
                    write(&dir, "admin.key", &k, true)?;
                    write(&dir, "admin.crt", &c, false)?;
                    (c, k)
                }
            };
        let admin_token = match read(&dir, "admin.token")? {
            Some(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let t = random_token();
                write(&dir, "admin.token", &t, true)?;
                t
            }
        };
        let (server_cert_pem, server_key_pem) = issue_server(&issuer, server_names)?;
        let (kubelet_client_cert_pem, kubelet_client_key_pem) =
            issue_client(&issuer, KUBELET_CLIENT_USER, &[ADMIN_GROUP])?;
        write(&dir, "server.key", &server_key_pem, true)?;
        write(&dir, "server.crt", &server_cert_pem, false)?;
        Ok(ClusterPki {
            dir,
            ca_cert_pem,
            ca_key_pem,
            server_cert_pem,
            server_key_pem,
            admin_cert_pem,
            admin_key_pem,
            admin_token,
            kubelet_client_cert_pem,
            kubelet_client_key_pem,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The token nodes join with (`wkube agent --token`), made on first use.
    pub fn node_token(&self) -> Result<String, PkiError> {
        match read(&self.dir, "node.token")? {
            Some(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
            _ => {
                let t = random_token();
                write(&self.dir, "node.token", &t, true)?;
                Ok(t)
            }
        }
    }

    /// Issues a client certificate for `user` in `groups`, signed by the cluster CA.
    pub fn issue_client_cert(
        &self,
        user: &str,
        groups: &[&str],
    ) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key)?;
        issue_client(&issuer, user, groups)
    }
}

fn read(dir: &Path, name: &str) -> Result<Option<String>, PkiError> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path)(e)),
    }
}

/// Writes atomically (temp file + rename), private files readable by the owner only.
fn write(dir: &Path, name: &str, contents: &str, private: bool) -> Result<(), PkiError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time_now();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn new_ca() -> Result<(String, String), PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "wkube-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, 3650);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issue_server(
    issuer: &Issuer<'_, KeyPair>,
    names: &[String],
) -> Result<(String, String), PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "wkube-apiserver");
    for name in names {
        let san = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|_| PkiError::Invalid(format!("invalid server name {name:?}")))?,
            ),
        };
        params.subject_alt_names.push(san);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, 365);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Client certificates carry the user as CN and groups as O, as Kubernetes reads them.
fn issue_client(
    issuer: &Issuer<'_, KeyPair>,
    user: &str,
    groups: &[&str],
) -> Result<(String, String), PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, user);
    for g in groups {
        params.distinguished_name.push(DnType::OrganizationName, *g);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    validity(&mut params, 365);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let a = ClusterPki::load_or_create(dir.path(), &names).expect("create");
        let b = ClusterPki::load_or_create(dir.path(), &names).expect("reload");
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        assert_eq!(a.admin_token, b.admin_token);
        assert_eq!(a.admin_cert_pem, b.admin_cert_pem);
        assert_eq!(a.admin_token.len(), 64);
        let (cert, key) = a.issue_client_cert("alice", &["dev"]).expect("issue");
        assert!(cert.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));
    }
}
