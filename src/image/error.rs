//! Errors of the image store, and the pod status reasons the kubelet shows for them.

use std::path::PathBuf;

/// Why an image could not be resolved, pulled, imported or pushed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse as `[registry/]repository[:tag][@digest]`.
    #[error("invalid image reference {0:?}")]
    InvalidReference(String),
    /// Talking to the registry failed; `message` carries the registry's own error text so the
    /// user sees e.g. "MANIFEST_UNKNOWN: manifest unknown" rather than a generic failure.
    #[error("failed to pull image {reference:?}: {message}")]
    Pull { reference: String, message: String },
    /// Pushing to the registry failed.
    #[error("failed to push image {reference:?}: {message}")]
    Push { reference: String, message: String },
    /// The image exists but is not a WebAssembly image this node can run.
    #[error("{}", not_wasm_message(reference, media_types))]
    NotWasm {
        reference: String,
        media_types: Vec<String>,
    },
    /// `imagePullPolicy: Never` and the image is not in the store.
    #[error("image {0:?} is not present with pull policy of Never")]
    NotPresent(String),
    /// A `kubernetes.io/dockerconfigjson` secret that does not parse.
    #[error("invalid registry credentials: {0}")]
    InvalidCredentials(String),
    /// The store's own files (refs.json) are unreadable.
    #[error("image store at {path}: {message}")]
    Store { path: PathBuf, message: String },
    #[error("image store I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl ImageError {
    /// The `waiting.reason` the kubelet puts on the container status, as upstream uses them.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::InvalidReference(_) => "InvalidImageName",
            ImageError::NotPresent(_) => "ErrImageNeverPull",
            ImageError::Pull { .. }
            | ImageError::Push { .. }
            | ImageError::NotWasm { .. }
            | ImageError::InvalidCredentials(_)
            | ImageError::Store { .. }
            | ImageError::Io(_) => "ErrImagePull",
        }
    }
}

fn not_wasm_message(reference: &str, media_types: &[String]) -> String {
    let found = if media_types.is_empty() {
        "its content does not start with the wasm magic bytes".to_string()
    } else {
        format!("layer media types: [{}]", media_types.join(", "))
    };
    format!(
        "image {reference:?} is not a WebAssembly image ({found}); expected a wasm OCI artifact \
         (config application/vnd.wasm.config.v0+json, one application/wasm layer)"
    )
}

/// The full text of an error and its causes ("a: b: c"): `reqwest` keeps the useful part
/// (connection refused, DNS failure) in the source chain, not in the top-level message.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
