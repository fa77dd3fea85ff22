//! A container's root filesystem: the image's unpacked layers stacked read-only under a
//! writable directory of its own.
//!
//! ```text
//! <dir>/upper    what the container writes (overlayfs upperdir)
//! <dir>/work     overlayfs's scratch space (must be on the upper dir's filesystem)
//! <dir>/merged   the root the container sees
//! ```
//!
//! overlayfs is the normal case: starting a container costs one mount, whatever the image's
//! size, and layers are shared by every container on the node. Where it is unavailable (no
//! kernel support, a data dir on a filesystem overlayfs cannot use as upper, a mount option
//! string too long for one page) the layers are copied into `merged` instead, applying the
//! same overlay-format whiteouts the kernel would, and a warning says so.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::image::unpack::{is_opaque_dir, is_whiteout};

/// Longest overlayfs option string the kernel takes through `mount(2)` (one page).
const MAX_MOUNT_DATA: usize = 4095;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("preparing the rootfs in {path}: {source}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("copying layer {layer} into the rootfs: {source}")]
    Copy {
        layer: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("removing the rootfs {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// How the rootfs was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsKind {
    Overlay,
    Copy,
}

/// A mounted (or copied) root filesystem. Call [`Rootfs::remove`] when the container is gone;
/// dropping it leaves everything in place (the container may still be using it).
#[derive(Debug)]
pub struct Rootfs {
    dir: PathBuf,
    merged: PathBuf,
    kind: RootfsKind,
}

impl Rootfs {
    /// Builds the rootfs for `layers` (base layer first) in `dir`, which must not exist yet.
    pub fn create(layers: &[PathBuf], dir: &Path) -> Result<Rootfs, RootfsError> {
        Self::create_with(layers, dir, true)
    }

    /// As [`Rootfs::create`]; `allow_overlay: false` forces the copy (tests cover both paths).
    pub fn create_with(
        layers: &[PathBuf],
        dir: &Path,
        allow_overlay: bool,
    ) -> Result<Rootfs, RootfsError> {
        let merged = dir.join("merged");
        for sub in ["upper", "work", "merged"] {
            fs::create_dir_all(dir.join(sub)).map_err(|source| RootfsError::Prepare {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut rootfs = Rootfs {
            dir: dir.to_path_buf(),
            merged,
            kind: RootfsKind::Overlay,
        };
        let overlay = if allow_overlay {
            rootfs.mount_overlay(layers)
        } else {
            Err(io::Error::other("overlay not allowed"))
        };
        if let Err(e) = overlay {
            if allow_overlay {
                tracing::warn!(dir = %dir.display(), error = %e,
                    "overlayfs unavailable; copying the image layers into the rootfs instead");
            }
            rootfs.kind = RootfsKind::Copy;
            if let Err(e) = copy_layers(layers, &rootfs.merged) {
                let _ = fs::remove_dir_all(dir);
                return Err(e);
            }
        }
        Ok(rootfs)
    }

    /// The directory the container uses as `/`.
    pub fn path(&self) -> &Path {
        &self.merged
    }

    pub fn kind(&self) -> RootfsKind {
        self.kind
    }

    fn mount_overlay(&self, layers: &[PathBuf]) -> io::Result<()> {
        let options = overlay_options(layers, &self.dir.join("upper"), &self.dir.join("work"))?;
        let target = c_path(&self.merged)?;
        let data = CString::new(options).map_err(|_| io::Error::other("NUL in a layer path"))?;
        // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
        let rc = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                target.as_ptr(),
                c"overlay".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Unmounts (if mounted) and deletes everything of this rootfs, upper dir included.
    pub fn remove(self) -> Result<(), RootfsError> {
        remove_dir(&self.dir)
    }
}

/// Unmounts `<dir>/merged` if it is a mount point and deletes `dir`. Also used to clean up
/// after a crash, when no [`Rootfs`] value exists any more.
pub fn remove_dir(dir: &Path) -> Result<(), RootfsError> {
    let fail = |source| RootfsError::Remove {
        path: dir.to_path_buf(),
        source,
    };
    let merged = c_path(&dir.join("merged")).map_err(fail)?;
    // SAFETY: a valid NUL-terminated path. EINVAL means "not a mount point": nothing to do.
    let rc = unsafe { libc::umount2(merged.as_ptr(), libc::MNT_DETACH) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
            return Err(fail(e));
        }
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

/// `lowerdir=top:...:base,upperdir=..,workdir=..`: overlayfs lists the topmost layer first.
fn overlay_options(layers: &[PathBuf], upper: &Path, work: &Path) -> io::Result<String> {
    let mut all: Vec<&Path> = layers.iter().rev().map(PathBuf::as_path).collect();
    all.extend([upper, work]);
    if layers.is_empty() {
        return Err(io::Error::other("an image without layers"));
    }
    // These characters separate options and layers; overlayfs's escaping is not worth it for
    // paths wkube itself chooses.
    if all
        .iter()
        .any(|p| p.as_os_str().as_bytes().iter().any(|b| b",:".contains(b)))
    {
        return Err(io::Error::other("a layer path contains ',' or ':'"));
    }
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if options.len() > MAX_MOUNT_DATA {
        return Err(io::Error::other(format!(
            "{} layers make a mount option string longer than one page",
            layers.len()
        )));
    }
    Ok(options)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("NUL in a path"))
}

/// The copy fallback: each layer over the previous ones, honouring overlay-format whiteouts
/// (0/0 character devices delete, opaque directories hide what lower layers had).
fn copy_layers(layers: &[PathBuf], merged: &Path) -> Result<(), RootfsError> {
    for layer in layers {
        copy_tree(layer, merged).map_err(|source| RootfsError::Copy {
            layer: layer.clone(),
            source,
        })?;
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from)?;
        if is_whiteout(&meta) {
            crate::image::unpack::remove_existing(&to)?;
            continue;
        }
        if meta.is_dir() {
            let existing_dir = fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir());
            if existing_dir && is_opaque_dir(&from) {
                fs::remove_dir_all(&to)?;
            } else if !existing_dir {
                crate::image::unpack::remove_existing(&to)?;
            }
            if !to.exists() {
                fs::create_dir(&to)?;
            }
            copy_tree(&from, &to)?;
        } else {
            crate::image::unpack::remove_existing(&to)?;
            if meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
            } else if meta.is_file() {
                fs::copy(&from, &to)?;
            } else {
                copy_special(&to, &meta)?;
            }
        }
        std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
        if !meta.file_type().is_symlink() {
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

/// Devices and fifos, recreated with `mknod`.
fn copy_special(to: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let c = c_path(to)?;
    // SAFETY: a valid NUL-terminated path; mode and device come from an existing inode.
    let rc = unsafe { libc::mknod(c.as_ptr(), meta.mode(), meta.rdev()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::unpack::{set_xattr, OVERLAY_OPAQUE_XATTR};

    /// Two layers in overlay format: the top one whites out `/a/gone` and makes `/opaque`
    /// opaque.
    fn layers(root: &Path) -> Vec<PathBuf> {
        let base = root.join("base");
        let top = root.join("top");
        for d in ["a", "opaque"] {
            fs::create_dir_all(base.join(d)).unwrap();
            fs::create_dir_all(top.join(d)).unwrap();
        }
        fs::write(base.join("a/gone"), b"base").unwrap();
        fs::write(base.join("a/kept"), b"base").unwrap();
        fs::write(base.join("a/changed"), b"base").unwrap();
        fs::write(base.join("opaque/hidden"), b"base").unwrap();
        fs::write(top.join("a/changed"), b"top").unwrap();
        fs::write(top.join("opaque/visible"), b"top").unwrap();
        let c = c_path(&top.join("a/gone")).unwrap();
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) }, 0);
        set_xattr(&top.join("opaque"), OVERLAY_OPAQUE_XATTR, b"y").unwrap();
        vec![base, top]
    }

    fn mounted(path: &Path) -> bool {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let needle = path.display().to_string();
        mountinfo.lines().any(|l| l.contains(&needle))
    }

    fn check_view(rootfs: &Rootfs) {
        let p = rootfs.path();
        assert!(!p.join("a/gone").exists(), "whiteout ignored");
        assert_eq!(fs::read(p.join("a/kept")).unwrap(), b"base");
        assert_eq!(fs::read(p.join("a/changed")).unwrap(), b"top");
        assert!(!p.join("opaque/hidden").exists(), "opaque dir ignored");
        assert_eq!(fs::read(p.join("opaque/visible")).unwrap(), b"top");
        fs::write(p.join("a/new"), b"written").unwrap();
    }

    #[test]
    fn overlay_stacks_layers_and_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let layers = layers(root.path());
        let dir = root.path().join("c1");
        let rootfs = Rootfs::create(&layers, &dir).unwrap();
        assert_eq!(rootfs.kind(), RootfsKind::Overlay);
        assert!(mounted(&dir.join("merged")));
        check_view(&rootfs);
        // Writes land in the upper dir, never in a shared layer.
        assert!(dir.join("upper/a/new").is_file());
        assert!(!layers[1].join("a/new").exists());
        rootfs.remove().unwrap();
        assert!(!mounted(&dir));
        assert!(!dir.exists());
    }

    #[test]
    fn copy_fallback_gives_the_same_view() {
        let root = tempfile::tempdir().unwrap();
        let layers = layers(root.path());
        let dir = root.path().join("c2");
        let rootfs = Rootfs::create_with(&layers, &dir, false).unwrap();
        assert_eq!(rootfs.kind(), RootfsKind::Copy);
        assert!(!mounted(&dir));
        check_view(&rootfs);
        assert!(!layers[1].join("a/new").exists());
        rootfs.remove().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn option_string_limits() {
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/wkube/images/layers/sha256/{i:064}")))
            .collect();
        assert!(overlay_options(&many, Path::new("/u"), Path::new("/w")).is_err());
        let odd = vec![PathBuf::from("/a:b")];
        assert!(overlay_options(&odd, Path::new("/u"), Path::new("/w")).is_err());
        let ok = overlay_options(
            &[PathBuf::from("/l1"), PathBuf::from("/l2")],
            Path::new("/u"),
            Path::new("/w"),
        )
        .unwrap();
        assert_eq!(ok, "lowerdir=/l2:/l1,upperdir=/u,workdir=/w");
    }
}
