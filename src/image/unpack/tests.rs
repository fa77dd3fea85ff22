use super::*;

/// A tar entry with a raw name (bypassing `tar::Builder`'s own path checks, which would refuse
/// the malicious names these tests need).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: EntryType, link: Option<&str>, data: &[u8]) {
    let mut header = tar::Header::new_old();
    {
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
    }
    header.set_entry_type(kind);
    header.set_mode(if kind == EntryType::Directory {
        0o755
    } else {
        0o644
    });
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(data.len() as u64);
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

fn file(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    raw_entry(out, name, EntryType::Regular, None, data);
}

/// `root/layer` to unpack into and `root/outside` that nothing may touch.
fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let layer = root.path().join("layer");
    let outside = root.path().join("outside");
    fs::create_dir(&layer).unwrap();
    fs::create_dir(&outside).unwrap();
    (root, layer, outside)
}

fn assert_refused(tar: Vec<u8>, layer: &Path, outside: &Path, needle: &str) {
    let err = unpack(&tar[..], layer).unwrap_err();
    assert!(matches!(err, UnpackError::Unsafe { .. }), "{err}");
    assert!(err.to_string().contains(needle), "{err}");
    assert_eq!(fs::read_dir(outside).unwrap().count(), 0, "wrote outside");
}

#[test]
fn files_dirs_links_and_modes() {
    let (_root, layer, _) = dirs();
    let mut t = Vec::new();
    raw_entry(&mut t, "./bin/", EntryType::Directory, None, b"");
    file(&mut t, "bin/busybox", b"#!binary");
    raw_entry(
        &mut t,
        "bin/sh",
        EntryType::Symlink,
        Some("/bin/busybox"),
        b"",
    );
    raw_entry(&mut t, "bin/ash", EntryType::Link, Some("bin/busybox"), b"");
    file(&mut t, "etc/deep/file", b"implied parents");
    let stats = unpack(&finish(t)[..], &layer).unwrap();
    assert_eq!(stats.entries, 5);
    assert_eq!(fs::read(layer.join("bin/busybox")).unwrap(), b"#!binary");
    assert_eq!(
        fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(fs::read(layer.join("bin/ash")).unwrap(), b"#!binary");
    assert_eq!(
        fs::metadata(layer.join("bin/busybox"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    assert_eq!(
        fs::read(layer.join("etc/deep/file")).unwrap(),
        b"implied parents"
    );
}

#[test]
fn later_entries_replace_earlier_ones_without_following_them() {
    let (_root, layer, outside) = dirs();
    let target = outside.join("victim");
    let mut t = Vec::new();
    raw_entry(
        &mut t,
        "x",
        EntryType::Symlink,
        Some(target.to_str().unwrap()),
        b"",
    );
    file(&mut t, "x", b"replaced");
    unpack(&finish(t)[..], &layer).unwrap();
    assert_eq!(fs::read(layer.join("x")).unwrap(), b"replaced");
    assert!(!target.exists());
}

#[test]
fn whiteouts_become_overlay_markers() {
    let (_root, layer, _) = dirs();
    let mut t = Vec::new();
    file(&mut t, "etc/.wh.motd", b"");
    file(&mut t, "var/cache/.wh..wh..opq", b"");
    file(&mut t, "var/cache/kept", b"new");
    let stats = unpack(&finish(t)[..], &layer).unwrap();
    assert_eq!(stats.whiteouts, 2);
    let meta = fs::symlink_metadata(layer.join("etc/motd")).unwrap();
    assert!(is_whiteout(&meta));
    assert!(!layer.join("etc/.wh.motd").exists());
    assert!(is_opaque_dir(&layer.join("var/cache")));
    assert!(!is_opaque_dir(&layer.join("etc")));
    assert!(!layer.join("var/cache/.wh..wh..opq").exists());
    assert_eq!(fs::read(layer.join("var/cache/kept")).unwrap(), b"new");
}

#[test]
fn refuses_parent_dir_components() {
    let (_root, layer, outside) = dirs();
    let mut t = Vec::new();
    file(&mut t, "../outside/escaped", b"x");
    assert_refused(finish(t), &layer, &outside, "`..`");
    let mut t = Vec::new();
    file(&mut t, "a/../../outside/escaped", b"x");
    assert_refused(finish(t), &layer, &outside, "`..`");
}

#[test]
fn refuses_absolute_paths() {
    let (_root, layer, outside) = dirs();
    let mut t = Vec::new();
    let abs = format!("{}/escaped", outside.display());
    file(&mut t, &abs, b"x");
    assert_refused(finish(t), &layer, &outside, "absolute");
}

#[test]
fn refuses_writing_through_a_symlink() {
    let (_root, layer, outside) = dirs();
    for target in [outside.to_str().unwrap(), "../outside", "/"] {
        let mut t = Vec::new();
        raw_entry(&mut t, "evil", EntryType::Symlink, Some(target), b"");
        file(&mut t, "evil/escaped", b"x");
        assert_refused(finish(t), &layer, &outside, "symlink");
        fs::remove_file(layer.join("evil")).unwrap();
    }
    // A whiteout through a symlinked directory would delete outside: refused too.
    fs::write(outside.join("keep"), b"k").unwrap();
    let mut t = Vec::new();
    raw_entry(
        &mut t,
        "evil",
        EntryType::Symlink,
        Some(outside.to_str().unwrap()),
        b"",
    );
    file(&mut t, "evil/.wh.keep", b"");
    let err = unpack(&finish(t)[..], &layer).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(fs::read(outside.join("keep")).unwrap(), b"k");
}

#[test]
fn refuses_hard_links_out_of_the_layer() {
    let (_root, layer, outside) = dirs();
    fs::write(outside.join("secret"), b"s").unwrap();
    let secret = outside.join("secret");
    let cases = [
        ("../outside/secret".to_string(), "`..`"),
        (secret.display().to_string(), "absolute"),
        ("missing".to_string(), "not in this layer"),
    ];
    for (target, needle) in cases {
        let mut t = Vec::new();
        raw_entry(&mut t, "h", EntryType::Link, Some(&target), b"");
        let err = unpack(&finish(t)[..], &layer).unwrap_err();
        assert!(err.to_string().contains(needle), "{target}: {err}");
        assert!(!layer.join("h").exists());
    }
    // Through a symlink that points outside.
    let mut t = Vec::new();
    raw_entry(
        &mut t,
        "d",
        EntryType::Symlink,
        Some(outside.to_str().unwrap()),
        b"",
    );
    raw_entry(&mut t, "h", EntryType::Link, Some("d/secret"), b"");
    let err = unpack(&finish(t)[..], &layer).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(!layer.join("h").exists());
}

#[test]
fn decompresses_gzip_and_zstd() {
    use std::io::Write;
    let mut t = Vec::new();
    file(&mut t, "hello", b"world");
    let plain = finish(t);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&plain[..], 1).unwrap();
    for blob in [plain.clone(), gz, zst] {
        let (_root, layer, _) = dirs();
        unpack(decompress(&blob[..]).unwrap(), &layer).unwrap();
        assert_eq!(fs::read(layer.join("hello")).unwrap(), b"world");
    }
}

#[test]
fn truncated_tarball_is_an_error() {
    let (_root, layer, _) = dirs();
    let mut t = Vec::new();
    file(&mut t, "big", &[7u8; 2000]);
    t.truncate(1024);
    assert!(unpack(&t[..], &layer).is_err());
}
