//! Unpacking one layer tarball into a directory of its own, safely.
//!
//! Every layer of a container image is unpacked once, into `layers/sha256/<hex>`, and then used
//! read-only as an overlayfs lower directory by every container of every image that shares it.
//! That decides two things here:
//!
//! * **Whiteouts are converted to overlayfs's own format** at unpack time (as containerd does):
//!   `.wh.NAME` becomes a character device 0/0 named `NAME`, and `.wh..wh..opq` becomes the
//!   `trusted.overlay.opaque=y` attribute on its directory. The kernel then hides what lower
//!   layers had there. The copy fallback of the rootfs reads the same markers.
//! * **Nothing may land outside the layer directory.** A tarball comes from a registry, so it is
//!   untrusted: entries with `..` or an absolute path are refused, as are entries whose parent
//!   directory is a symlink (the classic "symlink, then a file through it" escape) and hard links
//!   whose target is not inside the layer. Symlink *targets* are stored as written: they are
//!   resolved inside the container's root at run time, never by the agent.
//!
//! The first refused entry fails the whole layer; the caller unpacks into a temporary directory
//! and deletes it on failure, so a bad layer leaves nothing behind.

use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// The prefix of a whiteout entry (`.wh.NAME` deletes `NAME` of lower layers).
const WHITEOUT_PREFIX: &str = ".wh.";
/// The entry that makes its directory opaque (hides everything lower layers had in it).
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// The attribute overlayfs reads to treat a directory as opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The entry would write outside the layer directory, or is otherwise refused.
    #[error("refusing layer entry {entry:?}: {why}")]
    Unsafe { entry: String, why: String },
    /// The tarball is malformed or truncated.
    #[error("reading the layer tarball: {0}")]
    Tar(#[source] io::Error),
    /// Writing an entry failed.
    #[error("unpacking {entry:?}: {source}")]
    Io {
        entry: String,
        #[source]
        source: io::Error,
    },
}

/// What one unpack did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub whiteouts: u64,
}

/// Wraps a layer blob in the right decompressor, chosen by the first bytes (the media type
/// is not trusted for this: Docker schema 2 calls every layer gzip).
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::new(reader);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Box::new(zstd::stream::read::Decoder::with_buffer(reader)?))
    } else {
        Ok(Box::new(reader))
    }
}

/// Unpacks an (already decompressed) tar stream into `dest`, which must exist.
pub fn unpack(tar_stream: impl Read, dest: &Path) -> Result<UnpackStats, UnpackError> {
    let mut archive = tar::Archive::new(tar_stream);
    let mut stats = UnpackStats::default();
    for entry in archive.entries().map_err(UnpackError::Tar)? {
        let mut entry = entry.map_err(UnpackError::Tar)?;
        let raw = entry.path().map_err(UnpackError::Tar)?.into_owned();
        let name = raw.display().to_string();
        let rel = relative(&raw).map_err(|why| unsafe_entry(&name, why))?;
        if rel.as_os_str().is_empty() {
            continue; // "./": the layer root itself.
        }
        stats.entries += 1;
        if unpack_whiteout(dest, &rel, &name)? {
            stats.whiteouts += 1;
            continue;
        }
        unpack_entry(&mut entry, dest, &rel, &name)?;
    }
    Ok(stats)
}

fn unsafe_entry(entry: &str, why: impl Into<String>) -> UnpackError {
    UnpackError::Unsafe {
        entry: entry.to_string(),
        why: why.into(),
    }
}

fn io_error(entry: &str) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        entry: entry.to_string(),
        source,
    }
}

/// The entry's path as plain relative components; `..` and absolute paths are refused.
fn relative(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("the path contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("the path is absolute"),
        }
    }
    Ok(out)
}

/// Creates the parent directories of `rel` under `dest` (mode 0755, as tar does for implied
/// directories) and returns the full path of `rel`. A parent that is a symlink is refused:
/// following it is exactly how a layer would write outside its directory.
fn prepare_parent(dest: &Path, rel: &Path, entry: &str) -> Result<PathBuf, UnpackError> {
    let mut current = dest.to_path_buf();
    if let Some(parent) = rel.parent() {
        for part in parent.components() {
            current.push(part);
            match fs::symlink_metadata(&current) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(unsafe_entry(
                        entry,
                        format!(
                            "its parent {:?} is a symlink (writing through it could leave the \
                             layer)",
                            part.as_os_str()
                        ),
                    ))
                }
                Ok(_) => {
                    return Err(unsafe_entry(
                        entry,
                        format!("its parent {:?} is not a directory", part.as_os_str()),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&current).map_err(io_error(entry))?;
                    fs::set_permissions(&current, fs::Permissions::from_mode(0o755))
                        .map_err(io_error(entry))?;
                }
                Err(e) => return Err(io_error(entry)(e)),
            }
        }
    }
    Ok(dest.join(rel))
}

/// Handles `.wh.*` entries. Returns whether the entry was a whiteout.
fn unpack_whiteout(dest: &Path, rel: &Path, entry: &str) -> Result<bool, UnpackError> {
    let Some(file_name) = rel.file_name().and_then(|n| n.to_str()) else {
        return Ok(false);
    };
    let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(false);
    };
    let full = prepare_parent(dest, rel, entry)?;
    let dir = full.parent().unwrap_or(dest);
    if file_name == OPAQUE_MARKER {
        set_xattr(dir, OVERLAY_OPAQUE_XATTR, b"y").map_err(io_error(entry))?;
        return Ok(true);
    }
    if hidden.is_empty() || hidden == "." || hidden == ".." {
        return Err(unsafe_entry(entry, "whiteout of an invalid name"));
    }
    let target = dir.join(hidden);
    remove_existing(&target).map_err(io_error(entry))?;
    // Mode 0: overlayfs only looks at the type and device number.
    mknod(&target, libc::S_IFCHR, 0, 0).map_err(io_error(entry))?;
    Ok(true)
}

/// Writes one ordinary entry (file, directory, link, device, fifo) with its owner and mode.
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
    rel: &Path,
    name: &str,
) -> Result<(), UnpackError> {
    let full = prepare_parent(dest, rel, name)?;
    let header = entry.header();
    let mode = header.mode().map_err(UnpackError::Tar)? & 0o7777;
    let uid = header.uid().map_err(UnpackError::Tar)?;
    let gid = header.gid().map_err(UnpackError::Tar)?;
    let kind = header.entry_type();
    let is_dir = kind == EntryType::Directory;
    let existing_dir = fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir());
    if !(is_dir && existing_dir) {
        // A later entry replaces an earlier one; never open or follow what was there.
        remove_existing(&full).map_err(io_error(name))?;
    }
    match kind {
        EntryType::Regular | EntryType::Continuous => {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&full)
                .map_err(io_error(name))?;
            io::copy(entry, &mut file).map_err(io_error(name))?;
        }
        EntryType::Directory => {
            if !existing_dir {
                fs::create_dir(&full).map_err(io_error(name))?;
            }
        }
        EntryType::Symlink => {
            let target = link_name(entry, name)?;
            std::os::unix::fs::symlink(&target, &full).map_err(io_error(name))?;
            lchown(&full, uid, gid).map_err(io_error(name))?;
            return Ok(());
        }
        EntryType::Link => {
            let target = hard_link_target(entry, dest, name)?;
            fs::hard_link(&target, &full).map_err(io_error(name))?;
            return Ok(());
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let file_type = match kind {
                EntryType::Char => libc::S_IFCHR,
                EntryType::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            mknod(&full, file_type | 0o600, major, minor).map_err(io_error(name))?;
        }
        other => {
            tracing::debug!(entry = name, kind = ?other, "skipping unsupported layer entry type");
            return Ok(());
        }
    }
    // chown first: it clears set-id bits, which the chmod below puts back.
    lchown(&full, uid, gid).map_err(io_error(name))?;
    fs::set_permissions(&full, fs::Permissions::from_mode(mode)).map_err(io_error(name))
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> Result<PathBuf, UnpackError> {
    entry
        .link_name()
        .map_err(UnpackError::Tar)?
        .map(|l| l.into_owned())
        .ok_or_else(|| unsafe_entry(name, "a link without a target"))
}

/// A hard link's target must be an earlier entry of this layer, reached without `..`, an
/// absolute path or a symlinked directory.
fn hard_link_target<R: Read>(
    entry: &tar::Entry<'_, R>,
    dest: &Path,
    name: &str,
) -> Result<PathBuf, UnpackError> {
    let raw = link_name(entry, name)?;
    let rel = relative(&raw)
        .map_err(|why| unsafe_entry(name, format!("hard link target {raw:?}: {why}")))?;
    let mut current = dest.to_path_buf();
    let count = rel.components().count();
    for (i, part) in rel.components().enumerate() {
        current.push(part);
        let meta = fs::symlink_metadata(&current).map_err(|_| {
            unsafe_entry(
                name,
                format!("hard link target {raw:?} is not in this layer"),
            )
        })?;
        let last = i + 1 == count;
        if !last && !meta.is_dir() {
            return Err(unsafe_entry(
                name,
                format!("hard link target {raw:?} goes through a symlink or file"),
            ));
        }
        if last && meta.is_dir() {
            return Err(unsafe_entry(
                name,
                format!("hard link target {raw:?} is a directory"),
            ));
        }
    }
    if count == 0 {
        return Err(unsafe_entry(name, "hard link to the layer root"));
    }
    Ok(current)
}

/// Removes whatever is at `path` (file, symlink, device or whole directory), if anything.
pub(crate) fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn mknod(path: &Path, mode: libc::mode_t, major: u32, minor: u32) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), mode, libc::makedev(major, minor)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn lchown(path: &Path, uid: u64, gid: u64) -> io::Result<()> {
    let uid = u32::try_from(uid).map_err(|_| io::Error::other("uid out of range"))?;
    let gid = u32::try_from(gid).map_err(|_| io::Error::other("gid out of range"))?;
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

/// Sets an extended attribute on `path` (not following symlinks).
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c = c_path(path)?;
    let n = CString::new(name).map_err(|_| io::Error::other("attribute name contains NUL"))?;
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether `path` carries the overlayfs opaque marker.
pub fn is_opaque_dir(path: &Path) -> bool {
    let (Ok(c), Ok(n)) = (c_path(path), CString::new(OVERLAY_OPAQUE_XATTR)) else {
        return false;
    };
    let mut value = [0u8; 1];
    // SAFETY: valid NUL-terminated strings and a one-byte buffer.
    let len = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    len == 1 && value[0] == b'y'
}

/// Whether a directory entry is an overlayfs whiteout (a character device 0/0).
pub fn is_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device() && meta.rdev() == 0
}

#[cfg(test)]
mod tests;
