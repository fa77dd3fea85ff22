//! A small Linux container image made by the tests from Debian's `busybox-static`, as an OCI
//! image layout pushed with skopeo. Two layers: the base (gzip) holds busybox, a few applet
//! links and `/etc/doomed`; the second (plain tar) deletes `/etc/doomed` by whiteout and adds
//! `/etc/added`. Optionally wrapped in an image index that also lists an arm64 image.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

use sha2::Digest as _;

use super::registry::find_binary;

pub const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "cat", "ls", "tail", "sleep", "true", "test", "echo", "mkdir", "httpd", "wget",
];

/// What was pushed: manifest digests, for assertions.
pub struct PushedImage {
    /// Digest of the linux/amd64 (the node's) image manifest.
    pub manifest_digest: String,
    /// Digest of the decoy arm64 manifest (when an index was pushed).
    pub other_manifest_digest: Option<String>,
    /// Digest of the index (when one was pushed).
    pub index_digest: Option<String>,
}

fn busybox_bytes() -> Vec<u8> {
    std::fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("{BUSYBOX}: {e}: install busybox-static (apt-get install busybox-static)")
    })
}

fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).expect("path");
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

fn add_file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) {
    let mut h = header(path, tar::EntryType::Regular, mode, data.len() as u64);
    h.set_cksum();
    b.append(&h, data).expect("append");
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut h = header(path, tar::EntryType::Directory, 0o755, 0);
    h.set_cksum();
    b.append(&h, &[][..]).expect("append dir");
}

fn add_symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
    let mut h = header(path, tar::EntryType::Symlink, 0o777, 0);
    h.set_link_name(target).expect("link");
    h.set_cksum();
    b.append(&h, &[][..]).expect("append link");
}

/// The base layer, uncompressed.
pub fn base_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin/", "etc/", "tmp/", "root/", "proc/", "sys/", "dev/"] {
        add_dir(&mut b, d);
    }
    add_file(&mut b, "bin/busybox", 0o755, &busybox_bytes());
    for applet in APPLETS {
        add_symlink(&mut b, &format!("bin/{applet}"), "busybox");
    }
    add_file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n",
    );
    add_file(&mut b, "etc/group", 0o644, b"root:x:0:\n");
    add_file(&mut b, "etc/doomed", 0o644, b"deleted by the next layer\n");
    b.into_inner().expect("tar")
}

/// The second layer: whites out `/etc/doomed`, adds `/etc/added`.
pub fn top_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    add_dir(&mut b, "etc/");
    add_file(&mut b, "etc/.wh.doomed", 0o644, b"");
    add_file(&mut b, "etc/added", 0o644, b"from the top layer\n");
    b.into_inner().expect("tar")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).expect("gzip");
    gz.finish().expect("gzip")
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

struct Layout<'a> {
    blobs: &'a Path,
}

impl Layout<'_> {
    fn blob(&self, bytes: &[u8]) -> (String, usize) {
        let digest = sha(bytes);
        std::fs::write(self.blobs.join(&digest["sha256:".len()..]), bytes).expect("blob");
        (digest, bytes.len())
    }

    /// An image manifest for `arch`; returns (digest, size).
    fn image(&self, arch: &str, base: &[u8], top: &[u8]) -> (String, usize) {
        let base_gz = gzip(base);
        let (l1, s1) = self.blob(&base_gz);
        let (l2, s2) = self.blob(top);
        let config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": ["PATH=/bin", "FROM_IMAGE=yes"], "Cmd": ["sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [sha(base), sha(top)]},
        })
        .to_string();
        let (c, cs) = self.blob(config.as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": cs},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": l1, "size": s1},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l2, "size": s2},
            ],
        })
        .to_string();
        self.blob(manifest.as_bytes())
    }
}

/// Builds the busybox image and pushes it to `dest` (`127.0.0.1:PORT/name:tag`) with skopeo.
/// With `with_index`, the pushed reference is an image index listing an arm64 image first
/// and the amd64 one second.
pub fn push_busybox_image(dest: &str, with_index: bool) -> PushedImage {
    push_busybox_image_as(dest, with_index, None)
}

/// [`push_busybox_image`] to a registry that requires `user:password`.
pub fn push_busybox_image_as(dest: &str, with_index: bool, creds: Option<&str>) -> PushedImage {
    let skopeo = find_binary("skopeo").expect("install skopeo (apt-get install skopeo)");
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("layout dir");
    let layout = Layout { blobs: &blobs };
    let (base, top) = (base_layer(), top_layer());
    let (amd64, amd64_size) = layout.image("amd64", &base, &top);
    let mut pushed = PushedImage {
        manifest_digest: amd64.clone(),
        other_manifest_digest: None,
        index_digest: None,
    };
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    let top_entry = if with_index {
        // A decoy with a different top layer, so its digest differs.
        let mut decoy_top = top.clone();
        decoy_top.extend_from_slice(&[0u8; 512]);
        let (arm64, arm64_size) = layout.image("arm64", &base, &decoy_top);
        pushed.other_manifest_digest = Some(arm64.clone());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": manifest_type, "digest": arm64, "size": arm64_size,
                 "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": manifest_type, "digest": amd64, "size": amd64_size,
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ],
        })
        .to_string();
        let (index_digest, index_size) = layout.blob(index.as_bytes());
        pushed.index_digest = Some(index_digest.clone());
        serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": index_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}})
    } else {
        serde_json::json!({"mediaType": manifest_type, "digest": amd64, "size": amd64_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}})
    };
    std::fs::write(
        dir.path().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [top_entry]});
    std::fs::write(dir.path().join("index.json"), index.to_string()).expect("index.json");
    let out = Command::new(skopeo)
        .args(["--insecure-policy", "copy", "--all", "--preserve-digests"])
        .args(["--dest-tls-verify=false"])
        .args(creds.map(|c| format!("--dest-creds={c}")))
        .arg(format!("oci:{}:latest", dir.path().display()))
        .arg(format!("docker://{dest}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pushed
}
