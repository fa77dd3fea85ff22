//! Compiled images on disk: `<cache_dir>/<image digest>.cwasm`, written by
//! `Module::serialize`/`Component::serialize` and loaded with `deserialize_file`, so a node
//! compiles an image once, not once per agent start.
//!
//! Soundness of loading: `deserialize_file` is `unsafe` because wasmtime runs the machine
//! code in the file as is; a file from anyone else would be arbitrary code execution. We only
//! ever load files at names this module writes, in a directory the agent owns, and we write
//! them atomically (temporary file + rename), so a file at such a name is always a complete
//! artifact that wasmtime itself produced. Wasmtime additionally checks the artifact's header
//! (wasmtime version, target, engine settings) and refuses mismatches; we then recompile.
//!
//! `deserialize_file` maps the file into memory. Replacing an entry by rename leaves the old
//! mapping intact; truncating or rewriting one in place would fault the process (SIGBUS) the
//! next time that code runs — so nothing, not even cleanup tooling, may edit these files in
//! place (deleting them is fine).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::component::Component;
use wasmtime::{Engine, Module, Precompiled};

use super::{is_wasm, WasmKind};
use crate::runtime::{ResolvedImage, RuntimeError};

/// A compiled image, ready to be linked.
pub(crate) enum Compiled {
    Module(Module),
    Component(Component),
}

pub(crate) struct CompileCache {
    dir: PathBuf,
    /// How many images this process compiled (not loaded from disk); for tests and metrics.
    compiles: AtomicU64,
}

impl CompileCache {
    pub(crate) fn new(dir: &Path) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            RuntimeError::Create(format!(
                "cannot create compile cache {}: {e}",
                dir.display()
            ))
        })?;
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            compiles: AtomicU64::new(0),
        })
    }

    pub(crate) fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Where the compiled form of the image with `digest` lives.
    pub(crate) fn path_for(&self, digest: &str) -> Result<PathBuf, RuntimeError> {
        Ok(self.dir.join(format!("{}.cwasm", checked_digest(digest)?)))
    }

    /// Loads the image's compiled form from disk, or compiles the wasm file and stores the
    /// result. Blocking (file I/O, compilation): call from `spawn_blocking`.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        image: &ResolvedImage,
    ) -> Result<Compiled, RuntimeError> {
        let cached = self.path_for(&image.digest)?;
        if cached.is_file() {
            match load(engine, &cached) {
                Ok(c) => {
                    tracing::debug!(path = %cached.display(), "loaded compiled image");
                    return Ok(c);
                }
                Err(e) => {
                    tracing::info!(path = %cached.display(), error = %e, "compiled image unusable (other wasmtime version?); recompiling");
                }
            }
        }
        let bytes = std::fs::read(&image.wasm_path).map_err(|e| {
            RuntimeError::InvalidImage(format!(
                "cannot read wasm file {}: {e}",
                image.wasm_path.display()
            ))
        })?;
        let kind = check_header(&bytes)?;
        let started = std::time::Instant::now();
        let (compiled, serialized) = match kind {
            WasmKind::Module => {
                let m = Module::from_binary(engine, &bytes)
                    .map_err(|e| RuntimeError::Create(format!("compiling wasm module: {e:#}")))?;
                let s = m.serialize();
                (Compiled::Module(m), s)
            }
            WasmKind::Component => {
                let c = Component::from_binary(engine, &bytes).map_err(|e| {
                    RuntimeError::Create(format!("compiling wasm component: {e:#}"))
                })?;
                let s = c.serialize();
                (Compiled::Component(c), s)
            }
        };
        self.compiles.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            ?kind,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compiled image"
        );
        // Failing to cache is not failing to run: log and go on.
        match serialized {
            Ok(data) => {
                if let Err(e) = write_atomically(&cached, &data) {
                    tracing::warn!(path = %cached.display(), error = %e, "cannot store compiled image");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialize compiled image"),
        }
        Ok(compiled)
    }
}

fn load(engine: &Engine, path: &Path) -> wasmtime::Result<Compiled> {
    match Engine::detect_precompiled_file(path)? {
        // SAFETY: `path` is one of our cache file names, which only ever hold complete
        // artifacts serialized by wasmtime (see the module docs); wasmtime checks that it
        // matches this engine before using it.
        Some(Precompiled::Module) => Ok(Compiled::Module(unsafe {
            Module::deserialize_file(engine, path)?
        })),
        // SAFETY: as above.
        Some(Precompiled::Component) => Ok(Compiled::Component(unsafe {
            Component::deserialize_file(engine, path)?
        })),
        None => Err(wasmtime::format_err!("not a wasmtime artifact")),
    }
}

/// The wasm header check, with the errors a user should see.
pub(crate) fn check_header(bytes: &[u8]) -> Result<WasmKind, RuntimeError> {
    if let Some(kind) = is_wasm(bytes) {
        return Ok(kind);
    }
    let head = &bytes[..bytes.len().min(16)];
    if head.starts_with(b"\0asm") && head.len() >= 8 {
        return Err(RuntimeError::InvalidImage(format!(
            "unsupported WebAssembly version/layer {:02x?} (want 01 00 00 00 for a module or 0d 00 01 00 for a component)",
            &head[4..8]
        )));
    }
    Err(RuntimeError::InvalidImage(format!(
        "not a WebAssembly module or component: file starts with \"{}\"{}",
        head.escape_ascii(),
        if bytes.is_empty() {
            " (empty file)"
        } else {
            ""
        }
    )))
}

/// Digests become file names: allow only what digests are made of, so a hostile one cannot
/// point outside the cache directory.
fn checked_digest(digest: &str) -> Result<&str, RuntimeError> {
    let ok = !digest.is_empty()
        && digest.len() <= 200
        && !digest.starts_with('.')
        && digest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'-' | b'.' | b'+'));
    if ok {
        Ok(digest)
    } else {
        Err(RuntimeError::InvalidImage(format!(
            "bad image digest {:?}",
            digest.escape_debug().to_string()
        )))
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    let res = (|| {
        tmp.1.write_all(data)?;
        tmp.1.sync_all()?;
        std::fs::rename(&tmp.0, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp.0);
    }
    res
}

/// A fresh file next to the cache entries (same filesystem, so the rename is atomic).
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = dir.join(format!(".tmp-{}-{n}.cwasm", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
        {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}
