//! ConfigMaps and Secrets: key formats, size limits, per-type required keys, and the
//! `immutable: true` contract.

use super::json::{at, obj_of, str_of};
use super::meta::FIELD_IMMUTABLE;
use super::names::is_config_map_key;
use super::pod::normalized;
use super::render::quote;
use super::{FieldError, Path};
use base64::Engine as _;
use serde_json::Value;

/// Upstream's `MaxSecretSize`, also applied to ConfigMaps.
const MAX_SECRET_SIZE: usize = 1024 * 1024;

const IMMUTABLE_MSG: &str = "field is immutable when `immutable` is set";

/// The sorted keys of a map field.
fn keys_of<'a>(obj: &'a Value, field: &str) -> Vec<&'a str> {
    let mut keys: Vec<&str> = obj_of(obj, field)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// The decoded size of a base64 wire value (its raw length if it does not decode).
fn decoded_len(v: &Value) -> usize {
    let s = v.as_str().unwrap_or("");
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(|b| b.len())
        .unwrap_or(s.len())
}

fn key_errors(key: &str, path: &Path) -> Vec<FieldError> {
    is_config_map_key(key)
        .iter()
        .map(|m| FieldError::invalid(path, quote(key), m))
        .collect()
}

/// ConfigMap: valid keys, no key in both `data` and `binaryData`, at most 1 MiB in total.
pub(crate) fn validate_config_map(obj: &Value) -> Vec<FieldError> {
    let data_path = Path::new("data");
    let bin_path = Path::new("binaryData");
    let binary_keys = keys_of(obj, "binaryData");
    let mut errs = Vec::new();
    let mut total = 0usize;
    for key in keys_of(obj, "data") {
        errs.extend(key_errors(key, &data_path.key(key)));
        if binary_keys.contains(&key) {
            errs.push(FieldError::invalid(
                &data_path.key(key),
                quote(key),
                "duplicate of key present in binaryData",
            ));
        }
        total += at(obj, &["data", key])
            .and_then(Value::as_str)
            .map_or(0, str::len);
    }
    for key in &binary_keys {
        errs.extend(key_errors(key, &bin_path.key(key)));
        total += at(obj, &["binaryData", key]).map_or(0, decoded_len);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&Path::new(""), MAX_SECRET_SIZE));
    }
    errs
}

/// Secret: valid keys, at most 1 MiB, and the keys each well-known type requires.
pub(crate) fn validate_secret(obj: &Value) -> Vec<FieldError> {
    let data_path = Path::new("data");
    let keys = keys_of(obj, "data");
    let mut errs = Vec::new();
    let mut total = 0usize;
    for key in &keys {
        errs.extend(key_errors(key, &data_path.key(key)));
        total += at(obj, &["data", key]).map_or(0, decoded_len);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&data_path, MAX_SECRET_SIZE));
    }
    errs.extend(validate_secret_type(obj, &keys, &data_path));
    errs
}

/// The keys (or annotation) each built-in secret type requires.
fn validate_secret_type(obj: &Value, keys: &[&str], data_path: &Path) -> Vec<FieldError> {
    let has = |k: &str| keys.contains(&k);
    let required = |k: &str| FieldError::required(&data_path.key(k), "");
    match str_of(obj, "type") {
        "kubernetes.io/service-account-token" => {
            let name = at(
                obj,
                &[
                    "metadata",
                    "annotations",
                    "kubernetes.io/service-account.name",
                ],
            )
            .and_then(Value::as_str)
            .unwrap_or("");
            if name.is_empty() {
                let p = Path::new("metadata")
                    .child("annotations")
                    .key("kubernetes.io/service-account.name");
                vec![FieldError::required(&p, "")]
            } else {
                Vec::new()
            }
        }
        "kubernetes.io/dockercfg" => json_key(obj, ".dockercfg", data_path),
        "kubernetes.io/dockerconfigjson" => json_key(obj, ".dockerconfigjson", data_path),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            vec![required("username"), required("password")]
        }
        "kubernetes.io/ssh-auth" if !has("ssh-privatekey") => vec![required("ssh-privatekey")],
        "kubernetes.io/tls" => ["tls.crt", "tls.key"]
            .into_iter()
            .filter(|k| !has(k))
            .map(required)
            .collect(),
        _ => Vec::new(),
    }
}

/// A key that must be present and hold a JSON object (docker config secrets).
fn json_key(obj: &Value, key: &str, data_path: &Path) -> Vec<FieldError> {
    let Some(raw) = at(obj, &["data", key]).and_then(Value::as_str) else {
        return vec![FieldError::required(&data_path.key(key), "")];
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .unwrap_or_default();
    match serde_json::from_slice::<serde_json::Map<String, Value>>(&decoded) {
        Ok(_) => Vec::new(),
        Err(e) => vec![FieldError::invalid(
            &data_path.key(key),
            quote("<secret contents redacted>"),
            &e.to_string(),
        )],
    }
}

/// Once `immutable: true`, the flag and the data fields may not change.
fn validate_immutable_contents(old: &Value, new: &Value, fields: &[&str]) -> Vec<FieldError> {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return Vec::new();
    }
    let mut errs = Vec::new();
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden(
            &Path::new("immutable"),
            IMMUTABLE_MSG,
        ));
    }
    for field in fields {
        let same = old.get(*field).map(normalized).filter(|v| !is_empty_map(v))
            == new.get(*field).map(normalized).filter(|v| !is_empty_map(v));
        if !same {
            errs.push(FieldError::forbidden(&Path::new(field), IMMUTABLE_MSG));
        }
    }
    errs
}

/// An empty map and an absent one are the same to Go's DeepEqual on a decoded nil map.
fn is_empty_map(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.is_empty()) || v.is_null()
}

pub(crate) fn validate_config_map_update(old: &Value, new: &Value) -> Vec<FieldError> {
    validate_immutable_contents(old, new, &["data", "binaryData"])
}

/// A Secret's type never changes; immutable secrets keep their data.
pub(crate) fn validate_secret_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (o, n) = (str_of(old, "type"), str_of(new, "type"));
    if o != n {
        errs.push(FieldError::invalid(
            &Path::new("type"),
            quote(n),
            FIELD_IMMUTABLE,
        ));
    }
    errs.extend(validate_immutable_contents(old, new, &["data"]));
    errs
}
