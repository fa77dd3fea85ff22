//! Refuses objects that lack any of the labels named in the settings:
//!
//! ```yaml
//! settings:
//!   labels: [team, app.kubernetes.io/name]
//! ```
//!
//! Deletes are always allowed (the labels of an object on its way out do not matter).

use serde_json::Value;

wit_bindgen::generate!({ path: "../../../wit/admission", world: "policy" });

use wkube::admission::types::Operation;

struct RequireLabels;

/// The label keys the settings require, or why the settings are wrong.
fn required(settings: &str) -> Result<Vec<String>, String> {
    let settings: Value =
        serde_json::from_str(settings).map_err(|e| format!("settings are not JSON: {e}"))?;
    let labels = settings
        .get("labels")
        .and_then(Value::as_array)
        .ok_or("settings.labels must be a list of label keys")?;
    if labels.is_empty() {
        return Err("settings.labels must name at least one label".into());
    }
    labels
        .iter()
        .map(|l| match l.as_str() {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(format!("settings.labels: {l} is not a label key")),
        })
        .collect()
}

fn answer(allowed: bool, message: Option<String>) -> Response {
    Response {
        allowed,
        message,
        code: None,
        warnings: Vec::new(),
        patch: None,
    }
}

impl Guest for RequireLabels {
    fn validate(settings: String, request: Request) -> Response {
        if request.operation == Operation::Delete {
            return answer(true, None);
        }
        let keys = match required(&settings) {
            Ok(keys) => keys,
            Err(e) => return answer(false, Some(e)),
        };
        let object: Value = match request.object.as_deref().map(serde_json::from_str) {
            Some(Ok(o)) => o,
            _ => return answer(false, Some("the request carries no object".into())),
        };
        let labels = object.pointer("/metadata/labels");
        let missing: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| labels.and_then(|l| l.get(*k)).is_none())
            .collect();
        if missing.is_empty() {
            answer(true, None)
        } else {
            answer(
                false,
                Some(format!("missing required label(s): {}", missing.join(", "))),
            )
        }
    }

    fn mutate(_settings: String, _request: Request) -> Response {
        answer(true, None)
    }

    fn validate_settings(settings: String) -> Result<(), String> {
        required(&settings).map(|_| ())
    }
}

export!(RequireLabels);
