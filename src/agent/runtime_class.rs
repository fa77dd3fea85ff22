//! `runtimeClassName` on the node: the class's handler forces the runtime, as the kubelet
//! hands the handler to its CRI runtime. Without a class the image decides (wasm artifact ->
//! wasmtime, anything else -> Linux container).

use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::Api;
use serde_json::Value;

use crate::runtime::ResolvedImage;

/// The handler that runs wasm artifacts in wasmtime.
pub const WASM_HANDLER: &str = "wasmtime";
/// The handler that runs Linux container images through libcontainer.
pub const LINUX_HANDLER: &str = "linux";

/// The pod's runtime handler: `Ok(None)` when it names no class. `Err` is a message for the
/// container's waiting state (the class is gone, or the API could not be asked).
pub async fn handler(client: &kube::Client, pod: &Value) -> Result<Option<String>, String> {
    let Some(class) = pod
        .pointer("/spec/runtimeClassName")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty())
    else {
        return Ok(None);
    };
    let classes: Api<RuntimeClass> = Api::all(client.clone());
    match classes.get_opt(class).await {
        Ok(Some(rc)) => Ok(Some(rc.handler)),
        Ok(None) => Err(format!("RuntimeClass {class:?} not found")),
        Err(e) => Err(format!("looking up RuntimeClass {class:?}: {e}")),
    }
}

/// Whether an image may run under a handler on a node offering `offered` runtimes. `Err`
/// explains the refusal in words a user can act on.
pub fn check(
    handler: &str,
    class: &str,
    image: &ResolvedImage,
    offered: &[String],
) -> Result<(), String> {
    if !offered.iter().any(|o| o == handler) {
        return Err(format!(
            "RuntimeClass {class:?} names handler {handler:?}, which this node does not offer (it offers: {})",
            offered.join(", ")
        ));
    }
    let (is_linux, kind) = match &image.container {
        Some(_) => (true, "a Linux container image"),
        None => (false, "a wasm artifact"),
    };
    let fits = match handler {
        WASM_HANDLER => !is_linux,
        LINUX_HANDLER => is_linux,
        _ => false,
    };
    if fits {
        return Ok(());
    }
    let runs = match handler {
        WASM_HANDLER => "wasm artifacts only",
        LINUX_HANDLER => "Linux container images only",
        _ => "no image this node knows how to run",
    };
    Err(format!(
        "image {:?} is {kind}, but RuntimeClass {class:?} (handler {handler:?}) runs {runs}",
        image.reference
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(linux: bool) -> ResolvedImage {
        ResolvedImage {
            reference: "r/x:v1".into(),
            digest: "sha256:00".into(),
            wasm_path: Default::default(),
            container: linux.then(|| crate::image::ContainerImage {
                layers: Vec::new(),
                config: Default::default(),
            }),
        }
    }

    #[test]
    fn the_handler_must_match_the_image_kind() {
        let offered = vec!["wasmtime".to_string(), "linux".to_string()];
        assert!(check("linux", "linux", &image(true), &offered).is_ok());
        assert!(check("wasmtime", "wasmtime", &image(false), &offered).is_ok());
        let err = check("linux", "linux", &image(false), &offered).unwrap_err();
        assert_eq!(
            err,
            "image \"r/x:v1\" is a wasm artifact, but RuntimeClass \"linux\" (handler \"linux\") runs Linux container images only"
        );
        let err = check("wasmtime", "wasm", &image(true), &offered).unwrap_err();
        assert!(err.contains("runs wasm artifacts only"), "{err}");
    }

    #[test]
    fn a_handler_the_node_lacks_is_refused() {
        let err = check("linux", "linux", &image(true), &["wasmtime".to_string()]).unwrap_err();
        assert!(
            err.contains("does not offer (it offers: wasmtime)"),
            "{err}"
        );
        let err = check("gvisor", "sandboxed", &image(true), &["linux".to_string()]).unwrap_err();
        assert!(err.contains("handler \"gvisor\""), "{err}");
    }
}
