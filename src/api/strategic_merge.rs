//! Strategic merge patch (`application/strategic-merge-patch+json`) over `serde_json::Value`.
//!
//! `kubectl apply`, `kubectl edit`, `kubectl scale` and friends send this patch type for
//! built-in kinds, so the server must apply it the way apimachinery's `strategicpatch` package
//! does (`StrategicMergeMapPatchUsingLookupPatchMeta`, i.e. with parallel deletion lists merged
//! and unmatched nulls ignored):
//!
//! * maps merge recursively and `null` deletes a key;
//! * lists replace, unless the field's schema says `x-kubernetes-patch-strategy: merge`: then
//!   lists of objects merge element-wise by `x-kubernetes-patch-merge-key`, and lists of
//!   primitives are unioned;
//! * directives: `$patch: replace|delete|merge` on maps and list elements, `$retainKeys`,
//!   `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`; none reaches the result.
//!
//! The field metadata comes from the OpenAPI definitions through [`PatchSchema`]. Without a
//! schema every list replaces, which makes the patch a JSON merge patch (RFC 7386) that still
//! understands the directives. Fields the schema does not know are treated the same way rather
//! than rejected: unknown fields are the server's strict field validation's business.

use serde_json::{Map, Value};
use thiserror::Error;

use super::patch_strategy::{PATCH_MERGE_KEY, PATCH_STRATEGY};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Why a strategic merge patch could not be applied. Every message names the field (a dotted
/// path from the object root; `<root>` for the object itself).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StrategicMergeError {
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{field}: list element does not contain the merge key {key:?}")]
    MissingMergeKey { field: String, key: String },
    #[error("{field}: unknown $patch directive {value}")]
    UnknownDirective { field: String, value: String },
    #[error("{field}: invalid {directive}: {reason}")]
    InvalidDirective {
        field: String,
        directive: &'static str,
        reason: String,
    },
}

/// How the elements of a list field combine with the patch's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy<'a> {
    /// The patch's list replaces the original (the default).
    Replace,
    /// Objects are merged element-wise, matched by this key.
    MergeByKey(&'a str),
    /// Primitive values are unioned.
    MergePrimitives,
}

/// Navigation through OpenAPI definitions for strategic merge: from an object schema to its
/// fields, their patch strategy and their element schemas.
///
/// It accepts both the v2 (`$ref` with siblings) and the v3 (`allOf: [{$ref}]`) forms, as
/// apimachinery's `PatchMetaFromOpenAPIV3` does.
#[derive(Debug, Clone, Copy)]
pub struct PatchSchema<'a> {
    definitions: &'a Map<String, Value>,
    schema: &'a Value,
}

impl<'a> PatchSchema<'a> {
    /// `definitions` maps definition names to schemas; `schema` is the schema to start from.
    pub fn new(definitions: &'a Map<String, Value>, schema: &'a Value) -> Self {
        PatchSchema {
            definitions,
            schema,
        }
    }

    /// The raw schema this navigator points at.
    pub fn schema(&self) -> &'a Value {
        self.schema
    }

    /// Follows `allOf[0]` and `$ref` until reaching a schema with content. Bounded, since
    /// definitions could in principle refer to themselves.
    fn resolve(self) -> Self {
        let mut schema = self.schema;
        for _ in 0..16 {
            if let Some(first) = schema
                .get("allOf")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            {
                schema = first;
                continue;
            }
            let target = schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
                .and_then(|name| self.definitions.get(name));
            match target {
                Some(def) => schema = def,
                None => break,
            }
        }
        PatchSchema { schema, ..self }
    }

    /// The unresolved schema of property `name` (where the patch extensions live), or, for a
    /// map type, its `additionalProperties` schema.
    fn raw_property(&self, name: &str) -> Option<&'a Value> {
        let resolved = self.resolve().schema;
        if let Some(p) = resolved.get("properties").and_then(|p| p.get(name)) {
            return Some(p);
        }
        resolved
            .get("additionalProperties")
            .filter(|a| a.is_object())
    }

    /// The schema of property `name` (resolved), if the schema knows it.
    pub fn property(&self, name: &str) -> Option<PatchSchema<'a>> {
        self.raw_property(name)
            .map(|schema| PatchSchema { schema, ..*self }.resolve())
    }

    /// The schema of the elements, if this is an array schema.
    pub fn items(&self) -> Option<PatchSchema<'a>> {
        self.resolve()
            .schema
            .get("items")
            .map(|schema| PatchSchema { schema, ..*self }.resolve())
    }

    /// The patch strategies of property `name` (`x-kubernetes-patch-strategy`, comma-split).
    fn strategies(&self, name: &str) -> impl Iterator<Item = &'a str> {
        self.raw_property(name)
            .and_then(|p| p.get(PATCH_STRATEGY))
            .and_then(Value::as_str)
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// How list property `name` merges.
    pub fn list_strategy(&self, name: &str) -> ListStrategy<'a> {
        if !self.strategies(name).any(|s| s == "merge") {
            return ListStrategy::Replace;
        }
        let key = self
            .raw_property(name)
            .and_then(|p| p.get(PATCH_MERGE_KEY))
            .and_then(Value::as_str);
        match key {
            Some(key) => ListStrategy::MergeByKey(key),
            None => ListStrategy::MergePrimitives,
        }
    }

    /// Whether map property `name` is replaced wholesale (`x-kubernetes-patch-strategy: replace`).
    pub fn replaces_map(&self, name: &str) -> bool {
        self.strategies(name).any(|s| s == "replace")
    }
}

/// Applies the strategic merge `patch` to `original`, using `schema` (the object's kind, e.g.
/// from `OpenApi::patch_schema`) for list semantics. A `null` original counts as `{}`.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    schema: Option<PatchSchema<'_>>,
) -> Result<Value, StrategicMergeError> {
    let root = Path::root();
    let patch = expect_object(patch, &root)?.clone();
    let original = match original {
        Value::Null => Map::new(),
        other => expect_object(other, &root)?.clone(),
    };
    merge_map(original, patch, schema, &root).map(Value::Object)
}

/// A field path for error messages, built only as deep as the recursion goes.
#[derive(Debug, Clone)]
struct Path(String);

impl Path {
    fn root() -> Path {
        Path(String::new())
    }

    fn child(&self, key: &str) -> Path {
        if self.0.is_empty() {
            Path(key.to_string())
        } else {
            Path(format!("{}.{key}", self.0))
        }
    }

    fn element(&self, index: usize) -> Path {
        Path(format!("{}[{index}]", self.0))
    }

    fn name(&self) -> String {
        if self.0.is_empty() {
            "<root>".to_string()
        } else {
            self.0.clone()
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn wrong_type(path: &Path, expected: &'static str, found: &Value) -> StrategicMergeError {
    StrategicMergeError::WrongType {
        field: path.name(),
        expected,
        found: type_name(found),
    }
}

fn invalid(path: &Path, directive: &'static str, reason: impl Into<String>) -> StrategicMergeError {
    StrategicMergeError::InvalidDirective {
        field: path.name(),
        directive,
        reason: reason.into(),
    }
}

fn expect_object<'v>(
    v: &'v Value,
    path: &Path,
) -> Result<&'v Map<String, Value>, StrategicMergeError> {
    v.as_object().ok_or_else(|| wrong_type(path, "object", v))
}

/// The `$patch` directive of a map, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    Replace,
    Delete,
    Merge,
}

fn directive_of(
    map: &Map<String, Value>,
    path: &Path,
) -> Result<Option<Directive>, StrategicMergeError> {
    match map.get(DIRECTIVE) {
        None => Ok(None),
        Some(Value::String(s)) if s == "replace" => Ok(Some(Directive::Replace)),
        Some(Value::String(s)) if s == "delete" => Ok(Some(Directive::Delete)),
        Some(Value::String(s)) if s == "merge" => Ok(Some(Directive::Merge)),
        Some(other) => Err(StrategicMergeError::UnknownDirective {
            field: path.name(),
            value: other.to_string(),
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Maps
// ---------------------------------------------------------------------------------------------

/// Merges a patch map into an original map (apimachinery's `mergeMap`).
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Option<PatchSchema<'_>>,
    path: &Path,
) -> Result<Map<String, Value>, StrategicMergeError> {
    match directive_of(&patch, path)? {
        Some(Directive::Replace) => {
            patch.remove(DIRECTIVE);
            return clean_map(patch, path);
        }
        Some(Directive::Delete) => return Ok(Map::new()),
        Some(Directive::Merge) => {
            patch.remove(DIRECTIVE);
        }
        None => {}
    }
    apply_retain_keys(&mut original, &mut patch, path)?;
    apply_set_element_order(&mut original, &mut patch, schema, path)?;

    let mut deletions = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((field.to_string(), value));
            continue;
        }
        merge_field(&mut original, key, value, schema, path)?;
    }
    // Deletion lists apply after additions, so an element both added and deleted is gone.
    for (field, value) in deletions {
        delete_from_primitive_list(&mut original, &field, &value, path)?;
    }
    Ok(original)
}

/// Merges one key of the patch into the original map.
fn merge_field(
    original: &mut Map<String, Value>,
    key: String,
    value: Value,
    schema: Option<PatchSchema<'_>>,
    path: &Path,
) -> Result<(), StrategicMergeError> {
    if value.is_null() {
        original.remove(&key);
        return Ok(());
    }
    let child = path.child(&key);
    let merged = match (original.remove(&key), value) {
        (Some(Value::Object(o)), Value::Object(p)) => {
            if schema.is_some_and(|s| s.replaces_map(&key)) {
                Some(Value::Object(clean_map(p, &child)?))
            } else {
                let sub = schema.and_then(|s| s.property(&key));
                Some(Value::Object(merge_map(o, p, sub, &child)?))
            }
        }
        (Some(Value::Array(o)), Value::Array(p)) => {
            Some(Value::Array(merge_list(o, p, schema, &key, &child)?))
        }
        // Absent in the original: merging into nothing still honours directives in the patch.
        (None, Value::Object(p)) => {
            let sub = schema.and_then(|s| s.property(&key));
            match directive_of(&p, &child)? {
                Some(Directive::Delete) => None,
                _ => Some(Value::Object(merge_map(Map::new(), p, sub, &child)?)),
            }
        }
        (None, Value::Array(p)) => Some(Value::Array(merge_list(
            Vec::new(),
            p,
            schema,
            &key,
            &child,
        )?)),
        // Scalars, and values whose type changed, are replaced by the patch's.
        (_, p) => clean(p, &child)?,
    };
    if let Some(v) = merged {
        original.insert(key, v);
    }
    Ok(())
}

/// `$retainKeys: [...]`: drops original keys not listed; every key the patch sets must be
/// listed (apimachinery's `applyRetainKeysDirective`).
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    path: &Path,
) -> Result<(), StrategicMergeError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(invalid(
            path,
            RETAIN_KEYS,
            format!("expected a list, found {}", type_name(&retain)),
        ));
    };
    let mut keys = Vec::with_capacity(retain.len());
    for k in &retain {
        match k.as_str() {
            Some(k) => keys.push(k),
            None => return Err(invalid(path, RETAIN_KEYS, "expected a list of strings")),
        }
    }
    for (k, v) in patch.iter() {
        let exempt = v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER);
        if !exempt && !keys.contains(&k.as_str()) {
            return Err(invalid(
                path,
                RETAIN_KEYS,
                format!("patch sets {k:?} which is not retained"),
            ));
        }
    }
    original.retain(|k, _| keys.contains(&k.as_str()));
    Ok(())
}

/// `$deleteFromPrimitiveList/<field>: [...]`: removes those values from a primitive list.
fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    field: &str,
    value: &Value,
    path: &Path,
) -> Result<(), StrategicMergeError> {
    let child = path.child(field);
    if field.is_empty() {
        return Err(invalid(
            path,
            "$deleteFromPrimitiveList",
            "missing field name",
        ));
    }
    let Value::Array(remove) = value else {
        return Err(invalid(
            &child,
            "$deleteFromPrimitiveList",
            format!("expected a list, found {}", type_name(value)),
        ));
    };
    if let Some(Value::Array(list)) = original.get_mut(field) {
        list.retain(|v| !remove.contains(v));
    }
    Ok(())
}

/// Removes directives and nulls from a value that is taken over from the patch as a whole.
/// Returns `None` when the value itself says `$patch: delete`.
fn clean(value: Value, path: &Path) -> Result<Option<Value>, StrategicMergeError> {
    match value {
        Value::Object(map) => {
            if directive_of(&map, path)? == Some(Directive::Delete) {
                return Ok(None);
            }
            clean_map(map, path).map(|m| Some(Value::Object(m)))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                if let Some(v) = clean(item, &path.element(i))? {
                    out.push(v);
                }
            }
            Ok(Some(Value::Array(out)))
        }
        other => Ok(Some(other)),
    }
}

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

fn clean_map(
    map: Map<String, Value>,
    path: &Path,
) -> Result<Map<String, Value>, StrategicMergeError> {
    let mut out = Map::new();
    for (k, v) in map {
        if v.is_null() || is_directive_key(&k) {
            continue;
        }
        let child = path.child(&k);
        if let Some(v) = clean(v, &child)? {
            out.insert(k, v);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

/// Merges the list field `field` of the object described by `schema`.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    schema: Option<PatchSchema<'_>>,
    field: &str,
    path: &Path,
) -> Result<Vec<Value>, StrategicMergeError> {
    let strategy = schema.map_or(ListStrategy::Replace, |s| s.list_strategy(field));
    let items = schema
        .and_then(|s| s.property(field))
        .and_then(|p| p.items());
    match strategy {
        ListStrategy::Replace => match clean(Value::Array(patch), path)? {
            Some(Value::Array(list)) => Ok(list),
            _ => Ok(Vec::new()),
        },
        ListStrategy::MergePrimitives => merge_primitive_list(original, patch, path),
        ListStrategy::MergeByKey(key) => merge_keyed_list(original, patch, key, items, path),
    }
}

/// Unions two primitive lists, then orders them as apimachinery does (patch order for patch
/// items, original order for the rest, interleaved by original position).
fn merge_primitive_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    path: &Path,
) -> Result<Vec<Value>, StrategicMergeError> {
    // Objects can only be merged by a key; lists of lists not at all (as upstream).
    if let Some(v) = original
        .iter()
        .chain(patch.iter())
        .find(|v| v.is_object() || v.is_array())
    {
        return Err(wrong_type(path, "list of primitives", v));
    }
    let mut merged = original.clone();
    for v in &patch {
        if !merged.contains(v) {
            merged.push(v.clone());
        }
    }
    let order = ElementOrder::Primitive;
    let (in_patch, server_only) = order.partition(merged, &patch)?;
    order.normalize(in_patch, server_only, &patch, &original, path)
}

/// Merges lists of objects by `key`: `$patch: delete` elements remove matches, a
/// `$patch: replace` element makes the rest of the patch list the result, matching elements
/// merge recursively and new ones are appended (then ordered as apimachinery does).
fn merge_keyed_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    items: Option<PatchSchema<'_>>,
    path: &Path,
) -> Result<Vec<Value>, StrategicMergeError> {
    let (mut original, patch) = apply_list_directives(original, patch, key, path)?;
    let server_order = original.clone();
    for (i, element) in patch.iter().enumerate() {
        let element_path = path.element(i);
        let Value::Object(p) = element else {
            return Err(wrong_type(&element_path, "object", element));
        };
        let id = merge_key_value(p, key, &element_path)?;
        let position = original.iter().position(|o| o.get(key) == Some(id));
        match position {
            Some(pos) => {
                let current = match std::mem::take(&mut original[pos]) {
                    Value::Object(m) => m,
                    other => return Err(wrong_type(&element_path, "object", &other)),
                };
                let merged = merge_map(current, p.clone(), items, &element_path)?;
                original[pos] = Value::Object(merged);
            }
            None => {
                let merged = merge_map(Map::new(), p.clone(), items, &element_path)?;
                original.push(Value::Object(merged));
            }
        }
    }
    let order = ElementOrder::Keyed(key);
    let (in_patch, server_only) = order.partition(original, &patch)?;
    order.normalize(in_patch, server_only, &patch, &server_order, path)
}

fn merge_key_value<'v>(
    element: &'v Map<String, Value>,
    key: &str,
    path: &Path,
) -> Result<&'v Value, StrategicMergeError> {
    element
        .get(key)
        .ok_or_else(|| StrategicMergeError::MissingMergeKey {
            field: path.name(),
            key: key.to_string(),
        })
}

/// Handles the special (`$patch`) elements of a keyed patch list; returns the original as
/// modified by them and the remaining patch elements.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &str,
    path: &Path,
) -> Result<(Vec<Value>, Vec<Value>), StrategicMergeError> {
    let mut rest = Vec::with_capacity(patch.len());
    let mut replace = false;
    for (i, element) in patch.into_iter().enumerate() {
        let element_path = path.element(i);
        let Value::Object(map) = &element else {
            return Err(wrong_type(&element_path, "object", &element));
        };
        match directive_of(map, &element_path)? {
            None => rest.push(element),
            Some(Directive::Delete) => {
                let id = merge_key_value(map, key, &element_path)?;
                original.retain(|o| o.get(key) != Some(id));
            }
            Some(Directive::Replace) => replace = true,
            // An explicit merge is what happens anyway; the marker element carries nothing.
            Some(Directive::Merge) => {}
        }
    }
    if replace {
        let cleaned = match clean(Value::Array(rest), path)? {
            Some(Value::Array(list)) => list,
            _ => Vec::new(),
        };
        return Ok((cleaned, Vec::new()));
    }
    Ok((original, rest))
}

// ---------------------------------------------------------------------------------------------
// $setElementOrder and element ordering
// ---------------------------------------------------------------------------------------------

/// Processes every `$setElementOrder/<field>` of the patch together with its list
/// (apimachinery's `mergePatchIntoOriginal`): the list is merged, then ordered with the
/// directive taking precedence over patch order, and that over the original order.
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Option<PatchSchema<'_>>,
    path: &Path,
) -> Result<(), StrategicMergeError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive_key in keys {
        let order = patch.remove(&directive_key).unwrap_or(Value::Null);
        let field = directive_key[SET_ELEMENT_ORDER.len()..].to_string();
        let child = path.child(&field);
        if field.is_empty() {
            return Err(invalid(path, "$setElementOrder", "missing field name"));
        }
        let Value::Array(order) = order else {
            return Err(invalid(
                &child,
                "$setElementOrder",
                format!("expected a list, found {}", type_name(&order)),
            ));
        };
        let original_list = take_list(original, &field, &child)?;
        let patch_list = take_list(patch, &field, &child)?;
        let strategy = schema.map_or(ListStrategy::Replace, |s| s.list_strategy(&field));
        let element_order = match strategy {
            ListStrategy::MergeByKey(key) => ElementOrder::Keyed(key),
            _ => ElementOrder::Primitive,
        };
        if let Some(p) = &patch_list {
            element_order.validate(p, &order, &child)?;
        }
        let merged = match (original_list, patch_list) {
            (None, None) => continue,
            (Some(o), None) => (o.clone(), o),
            (o, Some(p)) => {
                let o = o.unwrap_or_default();
                let merged = merge_list(o.clone(), p, schema, &field, &child)?;
                (merged, o)
            }
        };
        let (merged, server_order) = merged;
        let result = if strategy == ListStrategy::Replace {
            merged
        } else {
            let (in_patch, server_only) = element_order.partition(merged, &order)?;
            element_order.normalize(in_patch, server_only, &order, &server_order, &child)?
        };
        original.insert(field, Value::Array(result));
    }
    Ok(())
}

/// Removes and returns list `field` of `map`, if present.
fn take_list(
    map: &mut Map<String, Value>,
    field: &str,
    path: &Path,
) -> Result<Option<Vec<Value>>, StrategicMergeError> {
    match map.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) => Ok(Some(list)),
        Some(other) => Err(wrong_type(path, "list", &other)),
    }
}

/// How list elements are identified when ordering: by merge key, or by value.
#[derive(Debug, Clone, Copy)]
enum ElementOrder<'k> {
    Keyed(&'k str),
    Primitive,
}

impl ElementOrder<'_> {
    fn identity<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        match self {
            ElementOrder::Keyed(key) => v.get(*key),
            ElementOrder::Primitive => Some(v),
        }
    }

    fn index_in(&self, list: &[Value], v: &Value) -> Option<usize> {
        let id = self.identity(v)?;
        list.iter().position(|x| self.identity(x) == Some(id))
    }

    /// Splits `merged` into elements present in `by` and the others (server-only).
    fn partition(
        &self,
        merged: Vec<Value>,
        by: &[Value],
    ) -> Result<(Vec<Value>, Vec<Value>), StrategicMergeError> {
        Ok(merged
            .into_iter()
            .partition(|v| self.index_in(by, v).is_some()))
    }

    /// apimachinery's `normalizeElementOrder`: patch items sorted by `patch_order`,
    /// server-only items by `server_order`, then interleaved by `server_order`.
    fn normalize(
        &self,
        mut in_patch: Vec<Value>,
        mut server_only: Vec<Value>,
        patch_order: &[Value],
        server_order: &[Value],
        path: &Path,
    ) -> Result<Vec<Value>, StrategicMergeError> {
        if let ElementOrder::Keyed(key) = self {
            for (i, v) in in_patch.iter().chain(server_only.iter()).enumerate() {
                if v.get(*key).is_none() {
                    return Err(StrategicMergeError::MissingMergeKey {
                        field: path.element(i).name(),
                        key: (*key).to_string(),
                    });
                }
            }
        }
        in_patch.sort_by_key(|v| self.index_in(patch_order, v).unwrap_or(usize::MAX));
        server_only.sort_by_key(|v| self.index_in(server_order, v).unwrap_or(usize::MAX));
        Ok(self.interleave(server_only, in_patch, server_order))
    }

    /// apimachinery's `mergeSortedSlice`: inserts each server-only item before the first patch
    /// item that comes after it in the original list, keeping both lists' relative order.
    fn interleave(
        &self,
        left: Vec<Value>,
        right: Vec<Value>,
        server_order: &[Value],
    ) -> Vec<Value> {
        let mut out = Vec::with_capacity(left.len() + right.len());
        let mut left = left.into_iter().peekable();
        let mut right = right.into_iter().peekable();
        loop {
            let take_left = match (left.peek(), right.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(l), Some(r)) => {
                    match (
                        self.index_in(server_order, l),
                        self.index_in(server_order, r),
                    ) {
                        (Some(li), Some(ri)) => li < ri,
                        _ => false,
                    }
                }
            };
            let next = if take_left { left.next() } else { right.next() };
            out.extend(next);
        }
        out
    }

    /// apimachinery's `validatePatchWithSetOrderList`: the patch's (non-deleting) elements
    /// must appear in the `$setElementOrder` list, in the same relative order.
    fn validate(
        &self,
        patch: &[Value],
        order: &[Value],
        path: &Path,
    ) -> Result<(), StrategicMergeError> {
        let relevant: Vec<&Value> = patch
            .iter()
            .filter(|v| v.get(DIRECTIVE).is_none())
            .collect();
        let mut p = 0;
        let mut o = 0;
        while p < relevant.len() && o < order.len() {
            let pid = self.identity(relevant[p]);
            let oid = self.identity(&order[o]);
            if let (ElementOrder::Keyed(key), None) = (self, oid) {
                return Err(StrategicMergeError::MissingMergeKey {
                    field: path
                        .child(SET_ELEMENT_ORDER.trim_end_matches('/'))
                        .element(o)
                        .name(),
                    key: (*key).to_string(),
                });
            }
            if pid.is_some() && pid == oid {
                p += 1;
            }
            o += 1;
        }
        if p < relevant.len() {
            return Err(invalid(
                path,
                "$setElementOrder",
                "the patch list has elements missing from, or ordered differently than, the $setElementOrder list",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openapi::OpenApi;
    use crate::api::registry::Registry;
    use serde_json::json;
    use std::sync::OnceLock;

    fn api() -> &'static OpenApi {
        static API: OnceLock<OpenApi> = OnceLock::new();
        API.get_or_init(|| OpenApi::build(&Registry::builtin()))
    }

    fn merge(kind: &str, original: Value, patch: Value) -> Result<Value, StrategicMergeError> {
        strategic_merge(&original, &patch, api().patch_schema(kind))
    }

    const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
    const POD: &str = "io.k8s.api.core.v1.Pod";

    fn deployment(containers: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": "patch-demo" },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "nginx" } },
                "template": {
                    "metadata": { "labels": { "app": "nginx" } },
                    "spec": { "containers": containers }
                }
            }
        })
    }

    /// docs: update-api-object-kubectl-patch, "Use a strategic merge patch to update a
    /// Deployment": the new container is merged in by name; the patch item comes first.
    #[test]
    fn docs_strategic_patch_adds_container_by_name() {
        let original = deployment(json!([{ "name": "patch-demo-ctr", "image": "nginx" }]));
        let patch = json!({ "spec": { "template": { "spec": {
            "containers": [{ "name": "patch-demo-ctr-2", "image": "redis" }]
        }}}});
        let out = merge(DEPLOYMENT, original, patch).expect("merge");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([
                { "name": "patch-demo-ctr-2", "image": "redis" },
                { "name": "patch-demo-ctr", "image": "nginx" }
            ])
        );
        assert_eq!(out["spec"]["replicas"], 2);
    }

    /// docs: tolerations have no patch strategy, so the patch's list replaces the original.
    #[test]
    fn docs_tolerations_are_replaced() {
        let mut original = deployment(json!([{ "name": "c", "image": "nginx" }]));
        original["spec"]["template"]["spec"]["tolerations"] =
            json!([{ "effect": "NoSchedule", "key": "dedicated", "value": "test-team" }]);
        let patch = json!({ "spec": { "template": { "spec": {
            "tolerations": [{ "effect": "NoSchedule", "key": "disktype", "value": "ssd" }]
        }}}});
        let out = merge(DEPLOYMENT, original, patch).expect("merge");
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{ "effect": "NoSchedule", "key": "disktype", "value": "ssd" }])
        );
    }

    /// docs: "Use a JSON merge patch" — without a schema, lists are replaced.
    #[test]
    fn without_schema_it_is_a_json_merge_patch() {
        let original = deployment(json!([{ "name": "patch-demo-ctr", "image": "nginx" }]));
        let patch = json!({
            "metadata": { "labels": { "a": "b" } },
            "spec": { "replicas": null, "template": { "spec": {
                "containers": [{ "name": "patch-demo-ctr-3", "image": "gcr.io/google-samples/hello-app:2.0" }]
            }}}
        });
        let out = strategic_merge(&original, &patch, None).expect("merge");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{ "name": "patch-demo-ctr-3", "image": "gcr.io/google-samples/hello-app:2.0" }])
        );
        assert!(out["spec"].get("replicas").is_none());
        assert_eq!(
            out["metadata"],
            json!({ "name": "patch-demo", "labels": { "a": "b" } })
        );
    }

    /// docs: "Use strategic merge patch to update a Deployment using the retainKeys strategy".
    #[test]
    fn docs_retain_keys_clears_unlisted_fields() {
        let mut original = deployment(json!([{ "name": "c", "image": "nginx" }]));
        original["spec"]["strategy"] = json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": "25%" } });
        let without = json!({ "spec": { "strategy": { "type": "Recreate" } } });
        let out = merge(DEPLOYMENT, original.clone(), without).expect("merge");
        assert!(
            out["spec"]["strategy"]["rollingUpdate"].is_object(),
            "merged, not retained"
        );
        let with =
            json!({ "spec": { "strategy": { "$retainKeys": ["type"], "type": "Recreate" } } });
        let out = merge(DEPLOYMENT, original, with).expect("merge");
        assert_eq!(out["spec"]["strategy"], json!({ "type": "Recreate" }));
    }

    /// What `kubectl apply` sends for an edited manifest: a 3-way patch with
    /// `$setElementOrder`, a removed label as null, a changed image by name, an added env var.
    #[test]
    fn kubectl_apply_three_way_patch() {
        let mut original = deployment(json!([
            { "name": "web", "image": "nginx:1.25", "env": [{ "name": "A", "value": "1" }],
              "ports": [{ "containerPort": 80, "protocol": "TCP" }] },
            { "name": "sidecar", "image": "busybox" }
        ]));
        original["metadata"]["labels"] = json!({ "app": "nginx", "old": "x" });
        let patch = json!({
            "metadata": {
                "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{}\n" },
                "labels": { "old": null }
            },
            "spec": { "template": { "spec": {
                "$setElementOrder/containers": [{ "name": "web" }, { "name": "sidecar" }],
                "containers": [{
                    "$setElementOrder/env": [{ "name": "A" }, { "name": "B" }],
                    "env": [{ "name": "B", "value": "2" }],
                    "image": "nginx:1.27",
                    "name": "web"
                }]
            }}}
        });
        let out = merge(DEPLOYMENT, original, patch).expect("merge");
        assert_eq!(out["metadata"]["labels"], json!({ "app": "nginx" }));
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{}\n"
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([
                { "name": "web", "image": "nginx:1.27",
                  "env": [{ "name": "A", "value": "1" }, { "name": "B", "value": "2" }],
                  "ports": [{ "containerPort": 80, "protocol": "TCP" }] },
                { "name": "sidecar", "image": "busybox" }
            ])
        );
        assert!(!out.to_string().contains('$'), "directives leaked: {out}");
    }

    /// The exact patch real kubectl 1.32 sent (captured against these OpenAPI documents) for
    /// an apply that drops a label, switches to the Recreate strategy, bumps an image, adds an
    /// env var, inserts one container, replaces another and swaps a volume's source.
    #[test]
    fn captured_kubectl_apply_patch() {
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "namespace": "default",
                "labels": { "app": "web", "old": "x" },
                "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{old}\n" },
                "uid": "u1", "resourceVersion": "5", "finalizers": ["keep"] },
            "spec": { "replicas": 2, "selector": { "matchLabels": { "app": "web" } },
                "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1 } },
                "template": { "metadata": { "labels": { "app": "web" } }, "spec": {
                    "containers": [
                        { "name": "web", "image": "nginx:1.25", "env": [{ "name": "A", "value": "1" }],
                          "ports": [{ "containerPort": 80 }], "imagePullPolicy": "IfNotPresent" },
                        { "name": "sidecar", "image": "busybox", "args": ["sleep", "1d"] }
                    ],
                    "volumes": [{ "name": "data", "emptyDir": {} }] } } }
        });
        let patch = json!({
            "metadata": { "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{...}\n" },
                "labels": { "old": null } },
            "spec": {
                "strategy": { "$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate" },
                "template": { "spec": {
                    "$setElementOrder/containers": [{ "name": "web" }, { "name": "logger" }, { "name": "sidecar2" }],
                    "$setElementOrder/volumes": [{ "name": "data" }],
                    "containers": [
                        { "$setElementOrder/env": [{ "name": "A" }, { "name": "B" }],
                          "env": [{ "name": "B", "value": "2" }], "image": "nginx:1.27", "name": "web" },
                        { "image": "fluentbit", "name": "logger" },
                        { "image": "busybox", "name": "sidecar2" },
                        { "$patch": "delete", "name": "sidecar" }
                    ],
                    "volumes": [{ "$retainKeys": ["configMap", "name"], "configMap": { "name": "cfg" },
                                  "emptyDir": null, "name": "data" }]
                } }
            }
        });
        let out = merge(DEPLOYMENT, live, patch).expect("merge");
        assert_eq!(out["metadata"]["labels"], json!({ "app": "web" }));
        assert_eq!(out["metadata"]["finalizers"], json!(["keep"]));
        assert_eq!(out["spec"]["strategy"], json!({ "type": "Recreate" }));
        let spec = &out["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"],
            json!([
                { "name": "web", "image": "nginx:1.27",
                  "env": [{ "name": "A", "value": "1" }, { "name": "B", "value": "2" }],
                  "ports": [{ "containerPort": 80 }], "imagePullPolicy": "IfNotPresent" },
                { "name": "logger", "image": "fluentbit" },
                { "name": "sidecar2", "image": "busybox" }
            ])
        );
        assert_eq!(
            spec["volumes"],
            json!([{ "name": "data", "configMap": { "name": "cfg" } }])
        );
        assert!(!out.to_string().contains("\"$"), "directives leaked: {out}");
    }

    #[test]
    fn set_element_order_places_new_elements() {
        let original = deployment(json!([{ "name": "a" }, { "name": "b" }]));
        let patch = json!({ "spec": { "template": { "spec": {
            "$setElementOrder/containers": [{ "name": "a" }, { "name": "c" }, { "name": "b" }],
            "containers": [{ "name": "c", "image": "new" }]
        }}}});
        let out = merge(DEPLOYMENT, original, patch).expect("merge");
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["a", "c", "b"]);
    }

    #[test]
    fn set_element_order_must_agree_with_patch_list() {
        let original = deployment(json!([{ "name": "a" }, { "name": "b" }]));
        let patch = json!({ "spec": { "template": { "spec": {
            "$setElementOrder/containers": [{ "name": "a" }],
            "containers": [{ "name": "b", "image": "x" }]
        }}}});
        let err = merge(DEPLOYMENT, original, patch).expect_err("mismatch");
        assert!(
            err.to_string().contains("spec.template.spec.containers"),
            "{err}"
        );
    }

    #[test]
    fn patch_delete_and_replace_in_lists() {
        let original = deployment(json!([{ "name": "a" }, { "name": "b" }]));
        let delete = json!({ "spec": { "template": { "spec": {
            "containers": [{ "name": "a", "$patch": "delete" }]
        }}}});
        let out = merge(DEPLOYMENT, original.clone(), delete).expect("delete");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{ "name": "b" }])
        );
        let replace = json!({ "spec": { "template": { "spec": {
            "containers": [{ "$patch": "replace" }, { "name": "z", "image": "i" }]
        }}}});
        let out = merge(DEPLOYMENT, original, replace).expect("replace");
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{ "name": "z", "image": "i" }])
        );
    }

    #[test]
    fn patch_directives_on_maps() {
        let original = json!({ "metadata": { "name": "p", "labels": { "a": "1", "b": "2" } } });
        let replace = json!({ "metadata": { "labels": { "$patch": "replace", "c": "3" } } });
        let out = merge(POD, original.clone(), replace).expect("replace");
        assert_eq!(out["metadata"]["labels"], json!({ "c": "3" }));
        let delete = json!({ "metadata": { "labels": { "$patch": "delete" } } });
        let out = merge(POD, original.clone(), delete).expect("delete");
        assert_eq!(out["metadata"]["labels"], json!({}));
        let merge_ = json!({ "metadata": { "labels": { "$patch": "merge", "c": "3" } } });
        let out = merge(POD, original, merge_).expect("merge");
        assert_eq!(
            out["metadata"]["labels"],
            json!({ "a": "1", "b": "2", "c": "3" })
        );
    }

    #[test]
    fn primitive_merge_lists_union_and_delete() {
        let original = json!({ "metadata": { "name": "p", "finalizers": ["a", "b"] } });
        let patch = json!({ "metadata": { "finalizers": ["b", "c"] } });
        let out = merge(POD, original.clone(), patch).expect("union");
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let patch = json!({ "metadata": {
            "$setElementOrder/finalizers": ["c", "b"],
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "finalizers": ["c"]
        }});
        let out = merge(POD, original, patch).expect("delete");
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "b"]));
    }

    #[test]
    fn nested_merge_keys_merge_ports_and_volume_mounts() {
        let original = json!({ "spec": { "containers": [{
            "name": "c", "image": "i",
            "ports": [{ "containerPort": 80 }],
            "volumeMounts": [{ "mountPath": "/a", "name": "va" }]
        }], "volumes": [{ "name": "va", "emptyDir": {} }] } });
        let patch = json!({ "spec": {
            "containers": [{ "name": "c", "ports": [{ "containerPort": 443 }],
                "volumeMounts": [{ "mountPath": "/a", "readOnly": true }] }],
            "volumes": [{ "name": "va", "$retainKeys": ["configMap", "name"], "configMap": { "name": "cm" } }]
        }});
        let out = merge(POD, original, patch).expect("merge");
        let c = &out["spec"]["containers"][0];
        assert_eq!(
            c["ports"],
            json!([{ "containerPort": 443 }, { "containerPort": 80 }])
        );
        assert_eq!(
            c["volumeMounts"],
            json!([{ "mountPath": "/a", "name": "va", "readOnly": true }])
        );
        assert_eq!(
            out["spec"]["volumes"],
            json!([{ "name": "va", "configMap": { "name": "cm" } }])
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = merge(POD, json!({}), json!([1])).expect_err("array patch");
        assert_eq!(
            err,
            StrategicMergeError::WrongType {
                field: "<root>".into(),
                expected: "object",
                found: "list"
            }
        );

        let original = json!({ "spec": { "containers": [{ "name": "c" }] } });
        let no_key = json!({ "spec": { "containers": [{ "image": "x" }] } });
        let err = merge(POD, original.clone(), no_key).expect_err("no merge key");
        assert_eq!(
            err,
            StrategicMergeError::MissingMergeKey {
                field: "spec.containers[0]".into(),
                key: "name".into()
            }
        );

        let bad = json!({ "spec": { "containers": [{ "name": "c", "$patch": "explode" }] } });
        let err = merge(POD, original.clone(), bad).expect_err("unknown directive");
        assert!(
            matches!(&err, StrategicMergeError::UnknownDirective { field, .. } if field == "spec.containers[0]"),
            "{err}"
        );

        let bad = json!({ "metadata": { "$patch": 3 } });
        assert!(matches!(
            merge(POD, json!({}), bad),
            Err(StrategicMergeError::UnknownDirective { .. })
        ));

        let bad = json!({ "spec": { "$retainKeys": "type" } });
        let err = merge(DEPLOYMENT, json!({ "spec": {} }), bad).expect_err("retainKeys");
        assert!(
            err.to_string().contains("spec") && err.to_string().contains("$retainKeys"),
            "{err}"
        );

        let bad =
            json!({ "spec": { "strategy": { "$retainKeys": ["type"], "rollingUpdate": {} } } });
        let err = merge(DEPLOYMENT, json!({ "spec": { "strategy": {} } }), bad)
            .expect_err("not retained");
        assert!(err.to_string().contains("rollingUpdate"), "{err}");

        let bad = json!({ "spec": { "containers": ["nginx"] } });
        let err = merge(POD, original, bad).expect_err("element type");
        assert!(
            err.to_string()
                .starts_with("spec.containers[0]: expected object"),
            "{err}"
        );

        let bad = json!({ "metadata": { "$setElementOrder/finalizers": "a" } });
        let err = merge(POD, json!({}), bad).expect_err("order type");
        assert!(err.to_string().contains("metadata.finalizers"), "{err}");
    }

    #[test]
    fn directives_are_stripped_from_new_values_without_schema() {
        let patch = json!({
            "a": { "$patch": "replace", "b": { "$retainKeys": ["c"], "c": 1, "d": null } },
            "gone": { "$patch": "delete" },
            "list": [{ "x": 1, "$setElementOrder/y": [] }, { "$patch": "delete", "x": 2 }]
        });
        let out = strategic_merge(&json!({ "gone": 1 }), &patch, None).expect("merge");
        assert_eq!(
            out,
            json!({ "a": { "b": { "c": 1 } }, "list": [{ "x": 1 }] })
        );
    }

    #[test]
    fn null_original_and_type_changes() {
        let out = strategic_merge(&Value::Null, &json!({ "a": 1 }), None).expect("null original");
        assert_eq!(out, json!({ "a": 1 }));
        let out = strategic_merge(&json!({ "a": { "b": 1 } }), &json!({ "a": [1] }), None)
            .expect("type change");
        assert_eq!(out, json!({ "a": [1] }));
        let err = strategic_merge(&json!(3), &json!({}), None).expect_err("scalar original");
        assert!(matches!(err, StrategicMergeError::WrongType { .. }));
    }
}
