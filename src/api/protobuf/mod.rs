//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`).
//!
//! kubectl 1.32+ sends built-in kinds from its typed clients in protobuf, with no fallback to
//! JSON. The server keeps objects as JSON, so [`decode`] turns such a body into exactly the JSON
//! Go's `encoding/json` would give for the same object: field names from the Go `json` tags,
//! non-pointer `omitempty` scalars left out when zero (Go's protobuf encoder always writes them),
//! and the special messages (`Quantity`, `IntOrString`, `Time`, `MicroTime`, `Duration`,
//! `RawExtension`, `FieldsV1`) as the JSON scalars or embedded JSON they marshal to.
//!
//! The body is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message: 1 `typeMeta`
//! (1 apiVersion, 2 kind), 2 `raw` (the object's own message), 3 `contentEncoding`,
//! 4 `contentType`. The per-message field table is generated ([`schema`], by
//! `tools/gen_protobuf_schema.py`) from upstream `generated.proto` files and Go types.
//!
//! Not reproduced: Go would emit `null` for a non-`omitempty` slice or map that is empty (and
//! so absent from the wire); the decoder leaves such fields out.

pub mod schema;
pub mod table;
mod wire;

#[cfg(test)]
mod tests;

use base64::Engine as _;
use serde_json::{Map, Value};

use table::{Label, Message, Ty};
use wire::{Reader, WireValue};

/// The media type of Kubernetes protobuf bodies.
pub const PROTOBUF_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// How deeply messages (and protobuf objects embedded in `RawExtension`s) may nest.
pub const MAX_DEPTH: usize = 64;

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    #[error("not a Kubernetes protobuf body: it does not start with the magic \"k8s\\0\"")]
    BadMagic,
    #[error("truncated varint at offset {offset}")]
    TruncatedVarint { offset: usize },
    #[error("varint longer than 64 bits at offset {offset}")]
    VarintOverflow { offset: usize },
    #[error("truncated data at offset {offset}: {needed} bytes needed, {available} available")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("invalid field number {number} at offset {offset}")]
    BadFieldNumber { offset: usize, number: u64 },
    #[error("unsupported wire type {wire_type} at offset {offset}")]
    UnsupportedWireType { offset: usize, wire_type: u8 },
    #[error("wrong wire type {wire_type} for field {field} at offset {offset}")]
    WrongWireType {
        field: String,
        wire_type: u8,
        offset: usize,
    },
    #[error("invalid UTF-8 in string field {field} at offset {offset}")]
    InvalidUtf8 { field: String, offset: usize },
    #[error("invalid value of field {field}: {reason}")]
    InvalidValue { field: String, reason: String },
    #[error("the envelope carries no {0}")]
    MissingTypeMeta(&'static str),
    #[error("unknown kind {kind:?} of apiVersion {api_version:?}: no protobuf schema for it")]
    UnknownKind { api_version: String, kind: String },
    #[error("unsupported content encoding {0:?} in the envelope")]
    UnsupportedContentEncoding(String),
    #[error("messages nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Decodes a protobuf-encoded request body (the `k8s\0` magic + runtime.Unknown envelope
/// carrying apiVersion/kind and the raw message) into the object's JSON form, with
/// "apiVersion" and "kind" set.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    decode_envelope(body, 0, 0)
}

/// The table's message for a kind: `v1 Pod` -> `k8s.io.api.core.v1.Pod`,
/// `coordination.k8s.io/v1 Lease` -> `k8s.io.api.coordination.v1.Lease`; the meta kinds every
/// group version carries (`DeleteOptions`, ...) fall back to `meta.v1`.
pub fn message_for_kind(api_version: &str, kind: &str) -> Option<usize> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let group = match group {
        "" => "core",
        g => g.strip_suffix(".k8s.io").unwrap_or(g),
    };
    let name = format!("k8s.io.api.{group}.{version}.{kind}");
    if let Some(i) = find_message(&name) {
        return Some(i);
    }
    const META_KINDS: &[&str] = &[
        "DeleteOptions",
        "CreateOptions",
        "UpdateOptions",
        "PatchOptions",
        "GetOptions",
        "ListOptions",
        "Status",
    ];
    if version == "v1" && META_KINDS.contains(&kind) {
        return find_message(&format!("k8s.io.apimachinery.pkg.apis.meta.v1.{kind}"));
    }
    None
}

/// The index of a message by full proto name.
pub fn find_message(name: &str) -> Option<usize> {
    schema::MESSAGES.binary_search_by(|m| m.name.cmp(name)).ok()
}

fn decode_envelope(body: &[u8], base: usize, depth: usize) -> Result<Value, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let Some(rest) = body.strip_prefix(MAGIC) else {
        return Err(ProtobufError::BadMagic);
    };
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: (&[u8], usize) = (&[], base + 4);
    let mut content_encoding = String::new();
    let mut r = Reader::new(rest, base + MAGIC.len());
    while !r.at_end() {
        let (tag, value, offset) = r.field()?;
        match tag {
            1 => {
                let (buf, start) = expect_len(value, "runtime.Unknown.typeMeta", offset)?;
                let mut tr = Reader::new(buf, start);
                while !tr.at_end() {
                    let (tag, value, offset) = tr.field()?;
                    match tag {
                        1 => {
                            api_version =
                                expect_string(value, "runtime.TypeMeta.apiVersion", offset)?
                        }
                        2 => kind = expect_string(value, "runtime.TypeMeta.kind", offset)?,
                        _ => {}
                    }
                }
            }
            2 => raw = expect_len(value, "runtime.Unknown.raw", offset)?,
            3 => {
                content_encoding = expect_string(value, "runtime.Unknown.contentEncoding", offset)?
            }
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(ProtobufError::UnsupportedContentEncoding(content_encoding));
    }
    if api_version.is_empty() {
        return Err(ProtobufError::MissingTypeMeta("apiVersion"));
    }
    if kind.is_empty() {
        return Err(ProtobufError::MissingTypeMeta("kind"));
    }
    let Some(index) = message_for_kind(&api_version, &kind) else {
        return Err(ProtobufError::UnknownKind { api_version, kind });
    };
    let mut object = match decode_message(index, raw.0, raw.1, depth + 1)? {
        Value::Object(map) => map,
        _ => return Err(ProtobufError::UnknownKind { api_version, kind }),
    };
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    Ok(object.into())
}

fn message(index: usize) -> Result<&'static Message, ProtobufError> {
    schema::MESSAGES
        .get(index)
        .ok_or_else(|| ProtobufError::InvalidValue {
            field: format!("message #{index}"),
            reason: "not in the schema table".into(),
        })
}

/// `k8s.io.api.core.v1.Pod` -> `core.v1.Pod`, for messages.
fn short_name(name: &str) -> &str {
    name.strip_prefix("k8s.io.api.")
        .or_else(|| name.strip_prefix("k8s.io.apimachinery.pkg.apis."))
        .or_else(|| name.strip_prefix("k8s.io.apimachinery.pkg."))
        .unwrap_or(name)
}

fn field_name(msg: &Message, field: &table::Field) -> String {
    if field.json.is_empty() {
        format!("{}.<inline #{}>", short_name(msg.name), field.tag)
    } else {
        format!("{}.{}", short_name(msg.name), field.json)
    }
}

fn expect_len<'a>(
    value: WireValue<'a>,
    field: &str,
    offset: usize,
) -> Result<(&'a [u8], usize), ProtobufError> {
    match value {
        WireValue::Len(buf, start) => Ok((buf, start)),
        other => Err(ProtobufError::WrongWireType {
            field: field.to_string(),
            wire_type: other.wire_type(),
            offset,
        }),
    }
}

fn expect_string(
    value: WireValue<'_>,
    field: &str,
    offset: usize,
) -> Result<String, ProtobufError> {
    let (buf, start) = expect_len(value, field, offset)?;
    utf8(buf, field, start)
}

fn utf8(buf: &[u8], field: &str, offset: usize) -> Result<String, ProtobufError> {
    String::from_utf8(buf.to_vec()).map_err(|_| ProtobufError::InvalidUtf8 {
        field: field.to_string(),
        offset,
    })
}

/// Decodes one message of the table into its JSON form (an object, or an array for a Go named
/// slice).
fn decode_message(
    index: usize,
    buf: &[u8],
    base: usize,
    depth: usize,
) -> Result<Value, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let msg = message(index)?;
    let mut object = Map::new();
    let mut r = Reader::new(buf, base);
    while !r.at_end() {
        let (tag, value, offset) = r.field()?;
        let Some(field) = msg.field(tag) else {
            continue; // unknown fields are skipped, as protobuf does
        };
        let name = || field_name(msg, field);
        match field.label {
            Label::Optional => {
                let v = decode_value(field.ty, value, offset, depth, &name)?;
                if field.omit_zero && is_zero_scalar(field.ty, &v) {
                    object.remove(field.json);
                } else {
                    match (object.get_mut(field.json), v) {
                        // A message given twice merges, as protobuf does (shallowly here).
                        (Some(Value::Object(old)), Value::Object(new)) => old.extend(new),
                        (_, v) => {
                            object.insert(field.json.to_string(), v);
                        }
                    }
                }
            }
            Label::Inline => {
                if let Value::Object(inner) = decode_value(field.ty, value, offset, depth, &name)? {
                    object.extend(inner);
                }
            }
            Label::Repeated => {
                let items = decode_repeated(field.ty, value, offset, depth, &name)?;
                let entry = object
                    .entry(field.json)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = entry {
                    list.extend(items);
                } else {
                    *entry = Value::Array(items);
                }
            }
            Label::Map => {
                let (entry_buf, start) = expect_len(value, &name(), offset)?;
                let (key, v) = decode_map_entry(field.ty, entry_buf, start, depth, &name)?;
                let entry = object
                    .entry(field.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = entry {
                    map.insert(key, v);
                } else {
                    *entry = Value::Object(Map::from_iter([(key, v)]));
                }
            }
        }
    }
    if msg.array_wrapper {
        return Ok(object
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_else(|| Value::Array(Vec::new())));
    }
    Ok(Value::Object(object))
}

fn is_zero_scalar(ty: Ty, v: &Value) -> bool {
    match ty {
        Ty::String | Ty::Bytes => v.as_str() == Some(""),
        Ty::Bool => v.as_bool() == Some(false),
        Ty::Int32 | Ty::Int64 => v.as_i64() == Some(0),
        Ty::Double => v.as_f64() == Some(0.0),
        // Go's `omitempty` never leaves out a struct (these are structs in Go).
        _ => false,
    }
}

fn decode_map_entry(
    ty: Ty,
    buf: &[u8],
    base: usize,
    depth: usize,
    name: &dyn Fn() -> String,
) -> Result<(String, Value), ProtobufError> {
    let mut key = String::new();
    let mut value = None;
    let mut r = Reader::new(buf, base);
    while !r.at_end() {
        let (tag, v, offset) = r.field()?;
        match tag {
            1 => key = expect_string(v, &format!("{}.key", name()), offset)?,
            2 => value = Some(decode_value(ty, v, offset, depth, name)?),
            _ => {}
        }
    }
    let value = match value {
        Some(v) => v,
        None => zero_value(ty, base, depth, name)?,
    };
    Ok((key, value))
}

/// The JSON of a type's zero value (a map entry without a value).
fn zero_value(
    ty: Ty,
    base: usize,
    depth: usize,
    name: &dyn Fn() -> String,
) -> Result<Value, ProtobufError> {
    match ty {
        Ty::Bool => Ok(Value::Bool(false)),
        Ty::Int32 | Ty::Int64 => Ok(Value::from(0)),
        Ty::Double => Ok(Value::from(0.0)),
        Ty::String | Ty::Bytes => Ok(Value::String(String::new())),
        _ => decode_value(ty, WireValue::Len(&[], base), base, depth, name),
    }
}

fn decode_repeated(
    ty: Ty,
    value: WireValue<'_>,
    offset: usize,
    depth: usize,
    name: &dyn Fn() -> String,
) -> Result<Vec<Value>, ProtobufError> {
    let packable = matches!(ty, Ty::Bool | Ty::Int32 | Ty::Int64 | Ty::Double);
    match value {
        WireValue::Len(buf, start) if packable => {
            // Packed: the elements back to back, without keys.
            let mut out = Vec::new();
            let mut r = Reader::new(buf, start);
            while !r.at_end() {
                let offset = r.offset();
                let element = if ty == Ty::Double {
                    let bytes = r.take_fixed64()?;
                    WireValue::Fixed64(bytes)
                } else {
                    WireValue::Varint(r.varint()?)
                };
                out.push(decode_value(ty, element, offset, depth, name)?);
            }
            Ok(out)
        }
        other => Ok(vec![decode_value(ty, other, offset, depth, name)?]),
    }
}

fn wrong_wire(name: &dyn Fn() -> String, value: &WireValue<'_>, offset: usize) -> ProtobufError {
    ProtobufError::WrongWireType {
        field: name(),
        wire_type: value.wire_type(),
        offset,
    }
}

fn invalid(name: &dyn Fn() -> String, reason: impl Into<String>) -> ProtobufError {
    ProtobufError::InvalidValue {
        field: name(),
        reason: reason.into(),
    }
}

/// Decodes one value of a field.
fn decode_value(
    ty: Ty,
    value: WireValue<'_>,
    offset: usize,
    depth: usize,
    name: &dyn Fn() -> String,
) -> Result<Value, ProtobufError> {
    match ty {
        Ty::Bool | Ty::Int32 | Ty::Int64 => {
            let WireValue::Varint(v) = value else {
                return Err(wrong_wire(name, &value, offset));
            };
            Ok(match ty {
                Ty::Bool => Value::Bool(v != 0),
                // int32 is sign-extended to 64 bits on the wire; truncation gives it back.
                Ty::Int32 => Value::from(v as u32 as i32),
                _ => Value::from(v as i64),
            })
        }
        Ty::Double => {
            let WireValue::Fixed64(bits) = value else {
                return Err(wrong_wire(name, &value, offset));
            };
            let f = f64::from_bits(bits);
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| invalid(name, format!("{f} has no JSON form")))
        }
        _ => {
            let WireValue::Len(buf, start) = value else {
                return Err(wrong_wire(name, &value, offset));
            };
            decode_len(ty, buf, start, depth, name)
        }
    }
}

fn decode_len(
    ty: Ty,
    buf: &[u8],
    start: usize,
    depth: usize,
    name: &dyn Fn() -> String,
) -> Result<Value, ProtobufError> {
    match ty {
        Ty::String => Ok(Value::String(utf8(buf, &name(), start)?)),
        Ty::Bytes => Ok(Value::String(
            base64::engine::general_purpose::STANDARD.encode(buf),
        )),
        Ty::Message(index) => decode_message(usize::from(index), buf, start, depth + 1),
        Ty::Quantity => {
            // 1: string. Go's zero Quantity marshals as "0".
            let mut out = None;
            for_each_field(buf, start, |tag, v, offset| {
                if tag == 1 {
                    out = Some(expect_string(v, &name(), offset)?);
                }
                Ok(())
            })?;
            Ok(Value::String(out.unwrap_or_else(|| "0".to_string())))
        }
        Ty::IntOrString => {
            // 1: type (0 int, 1 string), 2: intVal, 3: strVal.
            let (mut kind, mut int_val, mut str_val) = (0u64, 0i32, String::new());
            for_each_field(buf, start, |tag, v, offset| {
                match (tag, v) {
                    (1, WireValue::Varint(x)) => kind = x,
                    (2, WireValue::Varint(x)) => int_val = x as u32 as i32,
                    (3, v) => str_val = expect_string(v, &name(), offset)?,
                    (1 | 2, v) => return Err(wrong_wire(name, &v, offset)),
                    _ => {}
                }
                Ok(())
            })?;
            match kind {
                0 => Ok(Value::from(int_val)),
                1 => Ok(Value::String(str_val)),
                other => Err(invalid(name, format!("IntOrString type {other}"))),
            }
        }
        Ty::Time | Ty::MicroTime => {
            // 1: seconds, 2: nanos. An empty message is Go's zero time, which marshals as null.
            if buf.is_empty() {
                return Ok(Value::Null);
            }
            let (mut seconds, mut nanos) = (0i64, 0i64);
            for_each_field(buf, start, |tag, v, offset| {
                match (tag, v) {
                    (1, WireValue::Varint(x)) => seconds = x as i64,
                    (2, WireValue::Varint(x)) => nanos = i64::from(x as u32 as i32),
                    (1 | 2, v) => return Err(wrong_wire(name, &v, offset)),
                    _ => {}
                }
                Ok(())
            })?;
            format_time(seconds, nanos, ty == Ty::MicroTime)
                .map(Value::String)
                .ok_or_else(|| invalid(name, format!("time {seconds}s {nanos}ns out of range")))
        }
        Ty::Duration => {
            // 1: duration in nanoseconds.
            let mut nanos = 0i64;
            for_each_field(buf, start, |tag, v, offset| {
                match (tag, v) {
                    (1, WireValue::Varint(x)) => nanos = x as i64,
                    (1, v) => return Err(wrong_wire(name, &v, offset)),
                    _ => {}
                }
                Ok(())
            })?;
            Ok(Value::String(format_go_duration(nanos)))
        }
        Ty::RawExtension | Ty::FieldsV1 => {
            // 1: raw bytes, JSON (or, in a RawExtension, possibly a protobuf object).
            let mut raw: Option<(&[u8], usize)> = None;
            for_each_field(buf, start, |tag, v, offset| {
                if tag == 1 {
                    raw = Some(expect_len(v, &name(), offset)?);
                }
                Ok(())
            })?;
            let Some((raw, raw_start)) = raw else {
                return Ok(Value::Null);
            };
            if raw.starts_with(MAGIC) {
                return decode_envelope(raw, raw_start, depth + 1);
            }
            if raw.is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_slice(raw)
                .map_err(|e| invalid(name, format!("embedded JSON does not parse: {e}")))
        }
        Ty::Bool | Ty::Int32 | Ty::Int64 | Ty::Double => Err(ProtobufError::WrongWireType {
            field: name(),
            wire_type: wire::LEN,
            offset: start,
        }),
    }
}

fn for_each_field<'a>(
    buf: &'a [u8],
    start: usize,
    mut f: impl FnMut(u32, WireValue<'a>, usize) -> Result<(), ProtobufError>,
) -> Result<(), ProtobufError> {
    let mut r = Reader::new(buf, start);
    while !r.at_end() {
        let (tag, v, offset) = r.field()?;
        f(tag, v, offset)?;
    }
    Ok(())
}

/// RFC 3339 in UTC as Go's `metav1.Time` (seconds) or `metav1.MicroTime` (6 fractional digits)
/// marshal it; `None` outside the years 0..=9999, where Go's marshalling fails too.
fn format_time(seconds: i64, nanos: i64, micro: bool) -> Option<String> {
    let seconds = seconds.checked_add(nanos.div_euclid(1_000_000_000))?;
    let nanos = nanos.rem_euclid(1_000_000_000) as u32;
    // metav1.Time drops the nanoseconds when it unmarshals.
    let nanos = if micro { nanos / 1000 * 1000 } else { 0 };
    let t = chrono::DateTime::from_timestamp(seconds, nanos)?;
    let year = chrono::Datelike::year(&t);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(if micro {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    })
}

/// Formats nanoseconds as Go's `time.Duration.String` does: `1h2m3.5s`, `1.5ms`, `0s`.
pub fn format_go_duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let mut u = nanos.unsigned_abs();
    // The digits of u / 10^prec after the point, without trailing zeros; u becomes the integer part.
    fn frac(u: &mut u64, prec: u32) -> String {
        let mut digits = String::new();
        let mut print = false;
        for _ in 0..prec {
            let digit = *u % 10;
            print = print || digit != 0;
            if print {
                digits.insert(0, char::from(b'0' + digit as u8));
            }
            *u /= 10;
        }
        if print {
            digits.insert(0, '.');
        }
        digits
    }
    let mut out = if u == 0 {
        return "0s".to_string();
    } else if u < 1_000_000_000 {
        let (prec, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let f = frac(&mut u, prec);
        format!("{u}{f}{unit}")
    } else {
        let f = frac(&mut u, 9);
        let secs = u % 60;
        u /= 60;
        let mut s = format!("{secs}{f}s");
        if u > 0 {
            s = format!("{}m{s}", u % 60);
            u /= 60;
            if u > 0 {
                s = format!("{u}h{s}");
            }
        }
        s
    };
    if neg {
        out.insert(0, '-');
    }
    out
}
