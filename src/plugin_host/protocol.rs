//! The admission request and response as the host sees them, and their JSON form (the
//! stdin/stdout protocol of preview 1 commands; see `wit/admission/README.md`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::PolicyError;

/// The most a preview 1 policy may write to stdout; more is a malformed response.
pub(crate) const MAX_OUTPUT_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionResource {
    pub group: String,
    pub version: String,
    pub resource: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestUser {
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `AdmissionReview.request`, with the objects as JSON values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub operation: Operation,
    pub user_info: RequestUser,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_object: Option<Value>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
}

impl AdmissionRequest {
    /// A request about the core/v1 Pod `pod` (its name and namespace, default `default`, read
    /// from its metadata) from a cluster administrator: what offline runs, tests and
    /// benchmarks feed a policy.
    pub fn for_pod(operation: Operation, pod: Value) -> Self {
        let meta = |field: &str| {
            pod.pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        AdmissionRequest {
            uid: uuid::Uuid::new_v4().to_string(),
            kind: GroupVersionKind {
                group: String::new(),
                version: "v1".into(),
                kind: "Pod".into(),
            },
            resource: GroupVersionResource {
                group: String::new(),
                version: "v1".into(),
                resource: "pods".into(),
            },
            sub_resource: None,
            namespace: Some(meta("namespace").unwrap_or_else(|| "default".into())),
            name: meta("name"),
            operation,
            user_info: RequestUser {
                username: "admin".into(),
                groups: vec!["system:masters".into()],
            },
            object: Some(pod),
            old_object: None,
            dry_run: false,
            options: None,
        }
    }
}

/// A policy's answer to `validate` or `mutate`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyResponse {
    pub allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<json_patch::Patch>,
}

/// The entry points of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Validate,
    Mutate,
}

impl Call {
    pub fn name(self) -> &'static str {
        match self {
            Call::Validate => "validate",
            Call::Mutate => "mutate",
        }
    }
}

impl PolicyResponse {
    /// Checks what the contract requires of an answer beyond its shape.
    pub(crate) fn checked(self, call: Call) -> Result<Self, PolicyError> {
        if call == Call::Validate && self.patch.is_some() {
            return Err(PolicyError::BadResponse(
                "validate returned a patch (only mutate may)".into(),
            ));
        }
        if let Some(code) = self.code {
            if !(400..=599).contains(&code) {
                return Err(PolicyError::BadResponse(format!(
                    "code {code} is not an HTTP error code (400-599)"
                )));
            }
        }
        Ok(self)
    }
}

/// The answer to `validate-settings` on stdout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsAnswer {
    valid: bool,
    #[serde(default)]
    message: Option<String>,
}

/// The one JSON document a preview 1 command reads on stdin.
pub(crate) fn command_input(
    operation: &str,
    settings: &Value,
    request: Option<&AdmissionRequest>,
) -> Result<Vec<u8>, PolicyError> {
    let mut input = serde_json::json!({ "operation": operation, "settings": settings });
    if let Some(r) = request {
        input["request"] = serde_json::to_value(r)
            .map_err(|e| PolicyError::Host(format!("encoding the request: {e}")))?;
    }
    serde_json::to_vec(&input).map_err(|e| PolicyError::Host(format!("encoding the request: {e}")))
}

pub(crate) fn parse_response(stdout: &[u8], call: Call) -> Result<PolicyResponse, PolicyError> {
    let response: PolicyResponse = serde_json::from_slice(trim(stdout))
        .map_err(|e| PolicyError::BadResponse(format!("{e} (output: {})", excerpt(stdout))))?;
    response.checked(call)
}

pub(crate) fn parse_settings_answer(stdout: &[u8]) -> Result<Result<(), String>, PolicyError> {
    let answer: SettingsAnswer = serde_json::from_slice(trim(stdout))
        .map_err(|e| PolicyError::BadResponse(format!("{e} (output: {})", excerpt(stdout))))?;
    Ok(if answer.valid {
        Ok(())
    } else {
        Err(answer
            .message
            .unwrap_or_else(|| "the settings are invalid".into()))
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// A short, printable piece of guest output for error messages.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    let more = if bytes.len() > MAX { "..." } else { "" };
    format!("{:?}{more}", text)
}
