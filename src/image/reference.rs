//! Image references: parsing, Docker-style normalisation, and which registries speak plain HTTP.

use std::fmt;

use oci_client::Reference;

use super::ImageError;

/// A parsed image reference. Normalised the way Docker and the kubelet do it, so that
/// `hello`, `docker.io/hello` and `docker.io/library/hello:latest` name the same image
/// (and the same entry in the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    inner: Reference,
}

impl ImageReference {
    /// Parses `[registry/]repository[:tag][@digest]`. A missing registry means Docker Hub
    /// (`docker.io/library/...` for single-component names); a missing tag and digest means
    /// `:latest`.
    pub fn parse(reference: &str) -> Result<Self, ImageError> {
        let trimmed = reference.trim();
        if trimmed.is_empty() || trimmed != reference {
            return Err(ImageError::InvalidReference(reference.to_string()));
        }
        let inner: Reference = reference
            .parse()
            .map_err(|_| ImageError::InvalidReference(reference.to_string()))?;
        // Repository names are lowercase (Docker and the kubelet refuse the rest); the parser
        // would otherwise read `UPPER/x` as a Docker Hub path.
        if inner.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ImageError::InvalidReference(reference.to_string()));
        }
        Ok(ImageReference { inner })
    }

    /// The canonical text, e.g. `docker.io/library/hello:latest`; the key in `refs.json`.
    pub fn normalized(&self) -> String {
        self.inner.whole()
    }

    /// The registry as written in the reference (`docker.io`, `127.0.0.1:5000`); what
    /// dockerconfigjson credentials are looked up by.
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The host actually contacted (`index.docker.io` for Docker Hub).
    pub fn resolved_registry(&self) -> &str {
        self.inner.resolve_registry()
    }

    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// Whether this registry is reached over plain HTTP: loopback registries always are (a
    /// local test or cache registry rarely has a certificate), others only when the operator
    /// listed them.
    pub fn uses_plain_http(&self, insecure_registries: &[String]) -> bool {
        let registry = self.resolved_registry();
        is_loopback_registry(registry)
            || insecure_registries
                .iter()
                .any(|r| r == registry || r == self.registry())
    }

    pub(crate) fn oci(&self) -> &Reference {
        &self.inner
    }

    /// The same repository, pinned to a manifest digest (used to follow an image index).
    pub(crate) fn with_digest(&self, digest: &str) -> Self {
        ImageReference {
            inner: self.inner.clone_with_digest(digest.to_string()),
        }
    }
}

impl fmt::Display for ImageReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalized())
    }
}

/// `127.0.0.1[:port]`, any `127.x.y.z`, `localhost[:port]` or `[::1][:port]`.
pub(crate) fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((host, _)) => host,
            None => return false,
        }
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// The single `sha256:<64 hex>` digest form the store accepts. Digests come from registries
/// and become file names, so anything else (other algorithms, `../`) is refused here.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_defaults() {
        let r = ImageReference::parse("hello").unwrap();
        assert_eq!(r.normalized(), "docker.io/library/hello:latest");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.resolved_registry(), "index.docker.io");
        assert_eq!(r.repository(), "library/hello");
        assert_eq!(r.tag(), Some("latest"));

        let r = ImageReference::parse("someone/hello:v1").unwrap();
        assert_eq!(r.normalized(), "docker.io/someone/hello:v1");
        let r = ImageReference::parse("docker.io/hello").unwrap();
        assert_eq!(r.normalized(), "docker.io/library/hello:latest");
        let r = ImageReference::parse("index.docker.io/library/hello:latest").unwrap();
        assert_eq!(r.normalized(), "docker.io/library/hello:latest");
    }

    #[test]
    fn explicit_registries() {
        let r = ImageReference::parse("127.0.0.1:5000/demo/hello:v2").unwrap();
        assert_eq!(r.normalized(), "127.0.0.1:5000/demo/hello:v2");
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "demo/hello");
        let r = ImageReference::parse("localhost/hello").unwrap();
        assert_eq!(r.normalized(), "localhost/hello:latest");
        let r = ImageReference::parse("ghcr.io/org/app").unwrap();
        assert_eq!(r.normalized(), "ghcr.io/org/app:latest");
    }

    #[test]
    fn digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageReference::parse(&format!("ghcr.io/org/app@{d}")).unwrap();
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.tag(), None);
        assert_eq!(r.normalized(), format!("ghcr.io/org/app@{d}"));
        assert!(ImageReference::parse("ghcr.io/org/app@sha256:abc").is_err());
    }

    #[test]
    fn invalid_references() {
        for bad in [
            "",
            " hello",
            "Hello/World",
            "hello:",
            "a//b",
            "hello:tag with space",
        ] {
            let err = ImageReference::parse(bad).unwrap_err();
            assert_eq!(err.reason(), "InvalidImageName", "{bad:?}");
        }
    }

    #[test]
    fn plain_http_registries() {
        let insecure = vec!["registry.lan:5000".to_string()];
        for (reference, plain) in [
            ("127.0.0.1:5000/a", true),
            ("127.1.2.3/a", true),
            ("localhost:5000/a", true),
            ("registry.lan:5000/a", true),
            ("registry.lan/a", false),
            ("ghcr.io/a/b", false),
            ("hello", false),
        ] {
            let r = ImageReference::parse(reference).unwrap();
            assert_eq!(r.uses_plain_http(&insecure), plain, "{reference}");
        }
        assert!(is_loopback_registry("[::1]:5000"));
        assert!(!is_loopback_registry("[::2]:5000"));
    }

    #[test]
    fn digest_file_names() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(sha256_hex(&format!("sha256:{hex}")), Some(hex.as_str()));
        assert_eq!(sha256_hex("sha256:../../etc/passwd"), None);
        assert_eq!(sha256_hex(&format!("sha512:{hex}")), None);
        assert_eq!(sha256_hex(&format!("sha256:{}", hex.to_uppercase())), None);
    }
}
