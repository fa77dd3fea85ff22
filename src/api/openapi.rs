//! The OpenAPI documents the server publishes: swagger 2.0 at `/openapi/v2` and OpenAPI 3.0 per
//! group version under `/openapi/v3`.
//!
//! kubectl reads them for more than documentation, so their *shape* matters as much as content:
//!
//! * `kubectl apply`/`create` (cli-runtime `resource/query_param_verifier_v3.go`) looks, in the
//!   group version's v3 document, for a PATCH operation whose `x-kubernetes-group-version-kind`
//!   is the object's kind and which lists the `fieldValidation` query parameter *on the
//!   operation*. Only then does it leave strict validation to the server.
//! * `kubectl apply` (kubectl `pkg/cmd/apply/patcher.go`) requires that PATCH operation to
//!   accept `application/strategic-merge-patch+json` in its `requestBody`, then picks the
//!   component schema whose `x-kubernetes-group-version-kind` *list* contains the kind and walks
//!   it with apimachinery's `PatchMetaFromOpenAPIV3`, which follows `allOf[0]`/`$ref` one level
//!   per field and reads `x-kubernetes-patch-strategy`/`-merge-key` on the property.
//! * `kubectl explain` (kubectl `pkg/explain/v2/templates/plaintext.tmpl`) finds the kind via
//!   the GVK extension of a get/post/put/patch/delete operation on the resource's collection or
//!   item path, then the schema via the components' GVK list, and prints `description`s.
//! * The v3 index (client-go `openapi/client.go`) maps `api/v1`, `apis/apps/v1`, … to a
//!   `serverRelativeURL` that carries a `hash` so clients can cache by URL.
//!
//! Everything is computed once from the [`Registry`] at start-up.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::{autoscaling, core};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use super::patch_strategy;
use super::registry::{Registry, ResourceInfo, Subresource};
use super::strategic_merge::PatchSchema;

/// The Kubernetes version the schemas come from (k8s-openapi feature `v1_33`).
const SPEC_VERSION: &str = "v1.33.0";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
const BINDING: &str = "io.k8s.api.core.v1.Binding";
const EVICTION: &str = "io.k8s.api.policy.v1.Eviction";

/// The `Content-Type` to answer a protobuf request for `/openapi/v2` with (kube-openapi's
/// `handler.go` does the same). kubectl *asks* with the deprecated spelling
/// `…spec.v2@v1.0+protobuf`, but Go's `mime.ParseMediaType` rejects the `@` in a response, so
/// echoing it back makes kubectl fail with "mime: unexpected content after media subtype".
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Whether an `Accept` header of a `/openapi/v2` request asks for [`OpenApi::v2_protobuf`]
/// (either spelling of the protobuf media type) rather than JSON.
pub fn v2_accepts_protobuf(accept: &str) -> bool {
    accept.split(',').any(|clause| {
        let media = clause.split(';').next().unwrap_or("").trim();
        media == "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
            || media == V2_PROTOBUF_CONTENT_TYPE
    })
}

/// The media types a PATCH accepts; kubectl checks for the strategic one.
pub const PATCH_CONTENT_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
const RESPONSE_TYPES: [&str; 2] = ["application/json", "application/yaml"];

/// The published OpenAPI documents, built once at server start.
#[derive(Debug, Clone)]
pub struct OpenApi {
    v2: Value,
    /// `v2` encoded as gnostic's `openapi_v2.Document` protobuf: all that kubectl accepts.
    v2_protobuf: Vec<u8>,
    v3_index: Value,
    /// `api/v1` / `apis/apps/v1` -> (document, hash of the document).
    v3: BTreeMap<String, (Value, String)>,
    /// All v3-style definitions, for strategic merge navigation.
    definitions: Map<String, Value>,
}

impl OpenApi {
    /// Builds the v2 document, one v3 document per served group version, and the v3 index.
    pub fn build(registry: &Registry) -> OpenApi {
        let v2 = build_v2(registry);
        let definitions = build_definitions(registry, Flavor::V3);
        let mut v3 = BTreeMap::new();
        let mut index = Map::new();
        for (group, version) in registry.group_versions() {
            let doc = build_v3_group_version(registry, group, version, &definitions);
            let hash = content_hash(&doc);
            let key = group_version_key(group, version);
            let url = format!("/openapi/v3/{key}?hash={hash}");
            index.insert(key.clone(), json!({ "serverRelativeURL": url }));
            v3.insert(key, (doc, hash));
        }
        OpenApi {
            v2_protobuf: proto::encode_document(&v2),
            v2,
            v3_index: json!({ "paths": index }),
            v3,
            definitions,
        }
    }

    /// The swagger 2.0 document served at `GET /openapi/v2` (as JSON).
    pub fn v2(&self) -> &Value {
        &self.v2
    }

    /// The v2 document as protobuf, to serve at `GET /openapi/v2` (with `Content-Type`
    /// [`V2_PROTOBUF_CONTENT_TYPE`]) when [`v2_accepts_protobuf`] says the client wants it.
    ///
    /// kubectl never reads the JSON form: client-go's `DiscoveryClient.OpenAPISchema()`
    /// (`discovery/discovery_client.go`) asks for this media type only and `proto.Unmarshal`s
    /// the body, and `kubectl explain --output=plaintext-openapiv2` (as well as the v2 fallbacks
    /// of apply and validation) goes through it.
    pub fn v2_protobuf(&self) -> &[u8] {
        &self.v2_protobuf
    }

    /// The discovery index served at `GET /openapi/v3`.
    pub fn v3_index(&self) -> &Value {
        &self.v3_index
    }

    /// The v3 document of one group version, by its index key (`api/v1`, `apis/apps/v1`; a
    /// leading `/` is tolerated), with the hash that its `serverRelativeURL` carries.
    pub fn v3_group_version(&self, path: &str) -> Option<(&Value, &str)> {
        let key = path.trim_start_matches('/');
        self.v3.get(key).map(|(doc, hash)| (doc, hash.as_str()))
    }

    /// Strategic-merge navigation rooted at the definition `schema_name`
    /// (e.g. `io.k8s.api.core.v1.Pod`).
    pub fn patch_schema(&self, schema_name: &str) -> Option<PatchSchema<'_>> {
        let root = self.definitions.get(schema_name)?;
        Some(PatchSchema::new(&self.definitions, root))
    }
}

/// `api/v1` for the core group, `apis/<group>/<version>` otherwise: the keys of the v3 index.
fn group_version_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A stable content hash (64-bit FNV-1a over the serialized document, upper-case hex).
///
/// It only needs to change when the document changes, so clients that cache by
/// `serverRelativeURL` refetch after an upgrade; it is not a security boundary.
fn content_hash(doc: &Value) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let bytes = doc.to_string();
    let hash = bytes
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    format!("{hash:016X}")
}

/// Differences between swagger 2.0 and OpenAPI 3.0 that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    V2,
    V3,
}

impl Flavor {
    fn ref_prefix(self) -> &'static str {
        match self {
            Flavor::V2 => "#/definitions/",
            Flavor::V3 => "#/components/schemas/",
        }
    }

    fn reference(self, name: &str) -> Value {
        json!({ "$ref": format!("{}{name}", self.ref_prefix()) })
    }

    /// v2 keeps `$ref` siblings (descriptions), as upstream's swagger does; v3 wraps them in
    /// `allOf`, which is the form `PatchMetaFromOpenAPIV3` and `kubectl explain` expect.
    fn generator(self) -> SchemaGenerator {
        match self {
            Flavor::V2 => SchemaSettings::draft07()
                .with(|s| {
                    s.definitions_path = "/definitions".into();
                    s.meta_schema = None;
                    s.transforms = Vec::new();
                })
                .into_generator(),
            Flavor::V3 => SchemaSettings::openapi3()
                .with(|s| s.meta_schema = None)
                .into_generator(),
        }
    }
}

/// A group/version/kind as the `x-kubernetes-group-version-kind` extension spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Gvk {
    group: String,
    version: String,
    kind: String,
}

impl Gvk {
    fn new(group: &str, version: &str, kind: &str) -> Gvk {
        Gvk {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    fn of(r: &ResourceInfo) -> Gvk {
        Gvk::new(r.group, r.version, r.kind)
    }

    fn to_json(&self) -> Value {
        json!({ "group": self.group, "kind": self.kind, "version": self.version })
    }
}

// ---------------------------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------------------------

/// All definitions the documents need: the registry's kinds and what they reference, their
/// `<Kind>List`s, the subresource kinds, and the meta types operations use; with the patch
/// extensions and the GVK extensions injected.
fn build_definitions(registry: &Registry, flavor: Flavor) -> Map<String, Value> {
    let mut gen = flavor.generator();
    for r in registry.resources() {
        (r.schema)(&mut gen);
    }
    gen.subschema_for::<autoscaling::v1::Scale>();
    gen.subschema_for::<core::v1::Binding>();
    gen.subschema_for::<k8s_openapi::api::policy::v1::Eviction>();
    gen.subschema_for::<meta::DeleteOptions>();
    gen.subschema_for::<meta::Status>();
    gen.subschema_for::<meta::Patch>();
    gen.subschema_for::<meta::ListMeta>();
    gen.subschema_for::<meta::WatchEvent<core::v1::Pod>>();

    let defs = gen.definitions_mut();
    patch_strategy::inject(defs);
    fix_string_formats(defs);
    add_list_definitions(registry, defs, flavor);
    add_gvk_extensions(registry, defs);
    let mut defs = gen.take_definitions(true);
    defs.sort_keys();
    defs
}

/// k8s-openapi describes IntOrString and Quantity only by `x-kubernetes-int-or-string`;
/// upstream publishes them as strings (with format `int-or-string`), which is what
/// `kubectl explain` prints as their type.
fn fix_string_formats(defs: &mut Map<String, Value>) {
    let fixes = [
        (
            "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
            Some("int-or-string"),
        ),
        ("io.k8s.apimachinery.pkg.api.resource.Quantity", None),
    ];
    for (name, format) in fixes {
        if let Some(Value::Object(def)) = defs.get_mut(name) {
            def.insert("type".into(), "string".into());
            if let Some(format) = format {
                def.insert("format".into(), format.into());
            }
        }
    }
}

/// k8s-openapi has no schema for its generic `List<T>`, so `<Kind>List` definitions are built
/// here in upstream's shape (apiVersion, items, kind, metadata).
fn add_list_definitions(registry: &Registry, defs: &mut Map<String, Value>, flavor: Flavor) {
    for r in registry.resources() {
        let mut meta_ref = flavor.reference(LIST_META);
        if let Value::Object(m) = &mut meta_ref {
            m.insert(
                "description".into(),
                "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds".into(),
            );
        }
        let list = json!({
            "description": format!("{}List is a list of {} objects.", r.kind, r.kind),
            "type": "object",
            "properties": {
                "apiVersion": {
                    "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                    "type": "string"
                },
                "items": {
                    "description": format!("List of {}.", r.plural),
                    "type": "array",
                    "items": flavor.reference(r.schema_name)
                },
                "kind": {
                    "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                    "type": "string"
                },
                "metadata": meta_ref
            },
            "required": ["items"]
        });
        defs.insert(format!("{}List", r.schema_name), list);
    }
}

/// Adds `x-kubernetes-group-version-kind` (always a list, as upstream) to every top-level kind.
fn add_gvk_extensions(registry: &Registry, defs: &mut Map<String, Value>) {
    let mut kinds: Vec<(String, Vec<Gvk>)> = Vec::new();
    for r in registry.resources() {
        kinds.push((r.schema_name.to_string(), vec![Gvk::of(r)]));
        let list_kind = format!("{}List", r.kind);
        kinds.push((
            format!("{}List", r.schema_name),
            vec![Gvk::new(r.group, r.version, &list_kind)],
        ));
    }
    kinds.push((SCALE.into(), vec![Gvk::new("autoscaling", "v1", "Scale")]));
    kinds.push((BINDING.into(), vec![Gvk::new("", "v1", "Binding")]));
    kinds.push((EVICTION.into(), vec![Gvk::new("policy", "v1", "Eviction")]));
    kinds.push((STATUS.into(), vec![Gvk::new("", "v1", "Status")]));
    // DeleteOptions and WatchEvent are registered in every group version upstream.
    let per_group_version = |kind: &str| -> Vec<Gvk> {
        registry
            .group_versions()
            .into_iter()
            .map(|(g, v)| Gvk::new(g, v, kind))
            .collect()
    };
    kinds.push((DELETE_OPTIONS.into(), per_group_version("DeleteOptions")));
    kinds.push((WATCH_EVENT.into(), per_group_version("WatchEvent")));

    for (name, gvks) in kinds {
        if let Some(Value::Object(def)) = defs.get_mut(&name) {
            // k8s-openapi requires `metadata` (its field is not an Option); upstream does not,
            // and `kubectl explain` would print it as `-required-`.
            if let Some(Value::Array(required)) = def.get_mut("required") {
                required.retain(|r| r != "metadata");
                if required.is_empty() {
                    def.remove("required");
                }
            }
            let list = gvks.iter().map(Gvk::to_json).collect();
            def.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
        }
    }
}

/// Collects the definition names referenced (transitively) from `roots`.
fn referenced_definitions(roots: &[&Value], defs: &Map<String, Value>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut queue: Vec<String> = Vec::new();
    for root in roots {
        collect_refs(root, &mut queue);
    }
    while let Some(name) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(def) = defs.get(&name) {
            collect_refs(def, &mut queue);
        }
    }
    seen
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.rsplit('/').next() {
                            out.push(name.to_string());
                        }
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------------------------

fn info() -> Value {
    json!({ "title": "Kubernetes", "version": SPEC_VERSION })
}

fn build_v2(registry: &Registry) -> Value {
    let definitions = build_definitions(registry, Flavor::V2);
    let mut paths = Map::new();
    for r in registry.resources() {
        for p in resource_paths(r) {
            paths.insert(p.path.clone(), p.render(Flavor::V2));
        }
    }
    json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey"
            }
        },
        "security": [{ "BearerToken": [] }]
    })
}

/// One group version's v3 document: its paths, and only the schemas they reach.
fn build_v3_group_version(
    registry: &Registry,
    group: &str,
    version: &str,
    all: &Map<String, Value>,
) -> Value {
    let mut paths = Map::new();
    for r in registry.in_group_version(group, version) {
        for p in resource_paths(r) {
            paths.insert(p.path.clone(), p.render(Flavor::V3));
        }
    }
    let paths = Value::Object(paths);
    let names = referenced_definitions(&[&paths], all);
    let schemas: Map<String, Value> = names
        .into_iter()
        .filter_map(|n| all.get(&n).map(|d| (n, d.clone())))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "description": "Bearer Token authentication",
                    "in": "header",
                    "name": "authorization",
                    "type": "apiKey"
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Paths and operations
// ---------------------------------------------------------------------------------------------

/// Query parameters: (name, JSON type, description). Descriptions abridged from upstream.
const QUERY_PARAMS: &[(&str, &str, &str)] = &[
    ("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion."),
    ("continue", "string", "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue)."),
    ("dryRun", "string", "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed"),
    ("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint."),
    ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
    ("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered."),
    ("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests."),
    ("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately."),
    ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
    ("limit", "integer", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results."),
    ("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned."),
    ("propagationPolicy", "string", "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'."),
    ("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details."),
    ("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
    ("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection."),
    ("timeoutSeconds", "integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."),
    ("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    ("container", "string", "The container for which to stream logs. Defaults to only container if there is one container in the pod."),
    ("follow", "boolean", "Follow the log stream of the pod. Defaults to false."),
    ("limitBytes", "integer", "If set, the number of bytes to read from the server before terminating the log output."),
    ("previous", "boolean", "Return previous terminated container logs. Defaults to false."),
    ("sinceSeconds", "integer", "A relative time in seconds before the current time from which to show logs."),
    ("tailLines", "integer", "If set, the number of lines from the end of the logs to show."),
    ("timestamps", "boolean", "If true, add an RFC3339 or RFC3339Nano timestamp at the beginning of every line of log output. Defaults to false."),
];

const LIST_QUERY: &[&str] = &[
    "allowWatchBookmarks",
    "continue",
    "fieldSelector",
    "labelSelector",
    "limit",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
    "watch",
];
const WRITE_QUERY: &[&str] = &["dryRun", "fieldManager", "fieldValidation"];
const PATCH_QUERY: &[&str] = &["dryRun", "fieldManager", "fieldValidation", "force"];
const DELETE_QUERY: &[&str] = &[
    "dryRun",
    "gracePeriodSeconds",
    "orphanDependents",
    "propagationPolicy",
];
const DELETE_COLLECTION_QUERY: &[&str] = &[
    "continue",
    "dryRun",
    "fieldSelector",
    "gracePeriodSeconds",
    "labelSelector",
    "limit",
    "orphanDependents",
    "propagationPolicy",
    "resourceVersion",
    "resourceVersionMatch",
    "sendInitialEvents",
    "timeoutSeconds",
];
const LOG_QUERY: &[&str] = &[
    "container",
    "follow",
    "limitBytes",
    "previous",
    "sinceSeconds",
    "tailLines",
    "timestamps",
];

/// What an operation's request body is.
#[derive(Debug, Clone)]
enum Body {
    /// An object of the named definition (`*/*`, as upstream).
    Object(String),
    /// A patch document in any of [`PATCH_CONTENT_TYPES`].
    Patch,
}

/// What an operation returns on success.
#[derive(Debug, Clone)]
enum Returns {
    Object(String),
    Text,
}

/// One HTTP operation on a path, independent of the OpenAPI flavor.
#[derive(Debug, Clone)]
struct Operation {
    method: &'static str,
    /// `x-kubernetes-action`.
    action: &'static str,
    id: String,
    description: String,
    gvk: Gvk,
    query: &'static [&'static str],
    body: Option<Body>,
    returns: Returns,
    /// Success codes besides 200 (201 Created, 202 Accepted).
    extra_codes: &'static [&'static str],
    tag: String,
}

/// One path with its path-level parameters and operations.
#[derive(Debug, Clone)]
struct PathItem {
    path: String,
    namespaced: bool,
    named: bool,
    name_of: String,
    operations: Vec<Operation>,
}

/// `CoreV1`, `AppsV1`, `DiscoveryV1`: the group-version part of upstream's operation ids.
fn operation_group(r: &ResourceInfo) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    format!("{}{}", capitalize(group), capitalize(r.version))
}

/// `core_v1`, `apps_v1`, `discovery_v1`: upstream's operation tags.
fn operation_tag(r: &ResourceInfo) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    format!("{group}_{}", r.version)
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One kind of operation: HTTP method, `x-kubernetes-action`, the verb of upstream's
/// operation ids, its query parameters and its success codes besides 200.
#[derive(Debug, Clone, Copy)]
struct Verb {
    method: &'static str,
    action: &'static str,
    id: &'static str,
    query: &'static [&'static str],
    extra_codes: &'static [&'static str],
}

const LIST: Verb = Verb {
    method: "get",
    action: "list",
    id: "list",
    query: LIST_QUERY,
    extra_codes: &[],
};
const CREATE: Verb = Verb {
    method: "post",
    action: "post",
    id: "create",
    query: WRITE_QUERY,
    extra_codes: &["201", "202"],
};
const DELETE_COLLECTION: Verb = Verb {
    method: "delete",
    action: "deletecollection",
    id: "deleteCollection",
    query: DELETE_COLLECTION_QUERY,
    extra_codes: &[],
};
const READ: Verb = Verb {
    method: "get",
    action: "get",
    id: "read",
    query: &[],
    extra_codes: &[],
};
const REPLACE: Verb = Verb {
    method: "put",
    action: "put",
    id: "replace",
    query: WRITE_QUERY,
    extra_codes: &["201"],
};
const DELETE: Verb = Verb {
    method: "delete",
    action: "delete",
    id: "delete",
    query: DELETE_QUERY,
    extra_codes: &["202"],
};
const PATCH_VERB: Verb = Verb {
    method: "patch",
    action: "patch",
    id: "patch",
    query: PATCH_QUERY,
    extra_codes: &["201"],
};
const READ_LOG: Verb = Verb {
    query: LOG_QUERY,
    ..READ
};

/// Builds the operations of one resource with upstream's naming
/// (`patchCoreV1NamespacedPodStatus`, tag `core_v1`).
struct OpFactory<'a> {
    r: &'a ResourceInfo,
    prefix: String,
    scope: &'static str,
    tag: String,
}

impl<'a> OpFactory<'a> {
    fn new(r: &'a ResourceInfo) -> Self {
        OpFactory {
            r,
            prefix: operation_group(r),
            scope: if r.namespaced { "Namespaced" } else { "" },
            tag: operation_tag(r),
        }
    }

    /// An operation on the resource itself (`suffix` "") or on a subresource (`suffix`
    /// "Status", "Scale", …), about objects of `gvk`.
    fn op(
        &self,
        verb: Verb,
        suffix: &str,
        gvk: Gvk,
        body: Option<Body>,
        returns: Returns,
    ) -> Operation {
        let subject = if suffix.is_empty() {
            self.r.kind.to_string()
        } else {
            format!("{} of {}", suffix.to_lowercase(), self.r.kind)
        };
        Operation {
            method: verb.method,
            action: verb.action,
            id: format!(
                "{}{}{}{}{suffix}",
                verb.id, self.prefix, self.scope, self.r.kind
            ),
            description: format!("{} {subject}", verb.id),
            gvk,
            query: verb.query,
            body,
            returns,
            extra_codes: verb.extra_codes,
            tag: self.tag.clone(),
        }
    }
}

/// The collection, item, all-namespaces and subresource paths of a resource.
fn resource_paths(r: &ResourceInfo) -> Vec<PathItem> {
    let f = OpFactory::new(r);
    let base = r.group_version_path();
    let collection = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let item_path = format!("{collection}/{{name}}");
    let kind = Gvk::of(r);
    let object = || Returns::Object(r.schema_name.to_string());
    let list = || Returns::Object(format!("{}List", r.schema_name));
    let status = || Returns::Object(STATUS.to_string());
    let kind_body = || Some(Body::Object(r.schema_name.to_string()));
    let delete_options = || Some(Body::Object(DELETE_OPTIONS.to_string()));

    let collection_ops = vec![
        f.op(LIST, "", kind.clone(), None, list()),
        f.op(CREATE, "", kind.clone(), kind_body(), object()),
        f.op(
            DELETE_COLLECTION,
            "",
            kind.clone(),
            delete_options(),
            status(),
        ),
    ];
    let item_ops = vec![
        f.op(READ, "", kind.clone(), None, object()),
        f.op(REPLACE, "", kind.clone(), kind_body(), object()),
        f.op(DELETE, "", kind.clone(), delete_options(), status()),
        f.op(PATCH_VERB, "", kind.clone(), Some(Body::Patch), object()),
    ];
    let mut paths = vec![
        path_item(r, collection, false, collection_ops),
        path_item(r, item_path.clone(), true, item_ops),
    ];
    if r.namespaced {
        let mut op = f.op(LIST, "", kind, None, list());
        op.id = format!("list{}{}ForAllNamespaces", f.prefix, r.kind);
        paths.push(PathItem {
            path: format!("{base}/{}", r.plural),
            namespaced: false,
            named: false,
            name_of: r.kind.to_string(),
            operations: vec![op],
        });
    }
    for sub in r.subresources {
        paths.push(subresource_path(&f, r, &item_path, *sub));
    }
    paths
}

fn path_item(r: &ResourceInfo, path: String, named: bool, operations: Vec<Operation>) -> PathItem {
    PathItem {
        path,
        namespaced: r.namespaced,
        named,
        name_of: r.kind.to_string(),
        operations,
    }
}

/// `/status` (get/put/patch of the kind), `/scale` (autoscaling/v1 Scale), `/binding` (POST a
/// Binding), `/eviction` (POST a policy/v1 Eviction), `/log` (GET text).
fn subresource_path(f: &OpFactory, r: &ResourceInfo, item: &str, sub: Subresource) -> PathItem {
    let path = format!("{item}/{}", sub.name());
    let read_update_patch = |suffix: &str, gvk: Gvk, schema: &str| {
        let obj = || Returns::Object(schema.to_string());
        let body = || Some(Body::Object(schema.to_string()));
        vec![
            f.op(READ, suffix, gvk.clone(), None, obj()),
            f.op(REPLACE, suffix, gvk.clone(), body(), obj()),
            f.op(PATCH_VERB, suffix, gvk, Some(Body::Patch), obj()),
        ]
    };
    let operations = match sub {
        Subresource::Status => read_update_patch("Status", Gvk::of(r), r.schema_name),
        Subresource::Scale => {
            read_update_patch("Scale", Gvk::new("autoscaling", "v1", "Scale"), SCALE)
        }
        Subresource::Binding => {
            let binding = || BINDING.to_string();
            let gvk = Gvk::new("", "v1", "Binding");
            let body = Some(Body::Object(binding()));
            vec![f.op(CREATE, "Binding", gvk, body, Returns::Object(binding()))]
        }
        Subresource::Log => vec![f.op(READ_LOG, "Log", Gvk::of(r), None, Returns::Text)],
        Subresource::Eviction => {
            let gvk = Gvk::new("policy", "v1", "Eviction");
            let body = Some(Body::Object(EVICTION.to_string()));
            vec![f.op(
                CREATE,
                "Eviction",
                gvk,
                body,
                Returns::Object(EVICTION.to_string()),
            )]
        }
    };
    path_item(r, path, true, operations)
}

impl PathItem {
    fn render(&self, flavor: Flavor) -> Value {
        let mut item = Map::new();
        let mut params = Vec::new();
        if self.named {
            params.push(parameter(
                flavor,
                "name",
                "path",
                "string",
                &format!("name of the {}", self.name_of),
                true,
            ));
        }
        if self.namespaced {
            params.push(parameter(
                flavor,
                "namespace",
                "path",
                "string",
                "object name and auth scope, such as for teams and projects",
                true,
            ));
        }
        params.push(parameter(
            flavor,
            "pretty",
            "query",
            "string",
            "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
            false,
        ));
        item.insert("parameters".into(), Value::Array(params));
        for op in &self.operations {
            item.insert(op.method.into(), op.render(flavor));
        }
        Value::Object(item)
    }
}

/// A parameter; v2 puts the type inline, v3 under `schema`.
fn parameter(
    flavor: Flavor,
    name: &str,
    location: &str,
    ty: &str,
    description: &str,
    required: bool,
) -> Value {
    let mut p = Map::new();
    p.insert("name".into(), name.into());
    p.insert("in".into(), location.into());
    p.insert("description".into(), description.into());
    if required {
        p.insert("required".into(), true.into());
    }
    let schema = json!({ "type": ty, "uniqueItems": true });
    match flavor {
        Flavor::V2 => {
            if let Value::Object(s) = schema {
                p.extend(s);
            }
        }
        Flavor::V3 => {
            p.insert("schema".into(), schema);
        }
    }
    Value::Object(p)
}

fn query_parameter(flavor: Flavor, name: &str) -> Option<Value> {
    QUERY_PARAMS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(n, ty, desc)| parameter(flavor, n, "query", ty, desc, false))
}

impl Operation {
    fn render(&self, flavor: Flavor) -> Value {
        let mut op = Map::new();
        op.insert("description".into(), self.description.clone().into());
        op.insert("operationId".into(), self.id.clone().into());
        op.insert("tags".into(), json!([self.tag]));
        let mut params: Vec<Value> = self
            .query
            .iter()
            .filter_map(|q| query_parameter(flavor, q))
            .collect();
        match (flavor, &self.body) {
            (Flavor::V2, Some(body)) => {
                params.insert(0, self.v2_body_parameter(body));
                op.insert("consumes".into(), json!(self.consumes()));
            }
            (Flavor::V3, Some(body)) => {
                op.insert("requestBody".into(), self.v3_request_body(body));
            }
            (_, None) => {
                if flavor == Flavor::V2 {
                    op.insert("consumes".into(), json!(["*/*"]));
                }
            }
        }
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if flavor == Flavor::V2 {
            op.insert("produces".into(), json!(self.produces()));
            op.insert("schemes".into(), json!(["https"]));
        }
        op.insert("responses".into(), self.responses(flavor));
        op.insert("x-kubernetes-action".into(), self.action.into());
        op.insert("x-kubernetes-group-version-kind".into(), self.gvk.to_json());
        Value::Object(op)
    }

    fn consumes(&self) -> Vec<&'static str> {
        match self.body {
            Some(Body::Patch) => PATCH_CONTENT_TYPES.to_vec(),
            _ => vec!["*/*"],
        }
    }

    fn produces(&self) -> Vec<&'static str> {
        match self.returns {
            Returns::Text => vec!["text/plain", "application/json", "application/yaml"],
            Returns::Object(_) if self.action == "list" => {
                vec![
                    "application/json",
                    "application/yaml",
                    "application/json;stream=watch",
                ]
            }
            Returns::Object(_) => RESPONSE_TYPES.to_vec(),
        }
    }

    fn body_schema_name(body: &Body) -> &str {
        match body {
            Body::Object(name) => name,
            Body::Patch => PATCH,
        }
    }

    fn v2_body_parameter(&self, body: &Body) -> Value {
        let schema = Flavor::V2.reference(Self::body_schema_name(body));
        json!({ "in": "body", "name": "body", "required": true, "schema": schema })
    }

    fn v3_request_body(&self, body: &Body) -> Value {
        let schema = Flavor::V3.reference(Self::body_schema_name(body));
        let content: Map<String, Value> = self
            .consumes()
            .into_iter()
            .map(|t| (t.to_string(), json!({ "schema": schema })))
            .collect();
        json!({ "content": content, "required": true })
    }

    fn responses(&self, flavor: Flavor) -> Value {
        let schema = match &self.returns {
            Returns::Object(name) => flavor.reference(name),
            Returns::Text => json!({ "type": "string" }),
        };
        let ok = |description: &str| match flavor {
            Flavor::V2 => json!({ "description": description, "schema": schema }),
            Flavor::V3 => {
                let content: Map<String, Value> = self
                    .produces()
                    .into_iter()
                    .map(|t| (t.to_string(), json!({ "schema": schema })))
                    .collect();
                json!({ "description": description, "content": content })
            }
        };
        let mut responses = Map::new();
        responses.insert("200".into(), ok("OK"));
        for code in self.extra_codes {
            let description = if *code == "201" {
                "Created"
            } else {
                "Accepted"
            };
            responses.insert((*code).into(), ok(description));
        }
        responses.insert("401".into(), json!({ "description": "Unauthorized" }));
        Value::Object(responses)
    }
}

/// Encoding of a swagger 2.0 JSON document as gnostic's `openapi_v2.Document` protobuf
/// (google/gnostic-models `openapiv2/OpenAPIv2.proto`), covering what these documents use.
///
/// Hand-written because it is small and needs no generated code: proto3 wire format is
/// tag-length-value, and unknown or absent fields may simply be left out.
mod proto {
    use serde_json::{Map, Value};

    /// A protobuf message under construction.
    #[derive(Default)]
    pub(super) struct Writer {
        buf: Vec<u8>,
    }

    const VARINT: u64 = 0;
    const FIXED64: u64 = 1;
    const LEN: u64 = 2;

    impl Writer {
        fn varint(&mut self, mut v: u64) {
            while v >= 0x80 {
                self.buf.push((v as u8 & 0x7f) | 0x80);
                v >>= 7;
            }
            self.buf.push(v as u8);
        }

        fn key(&mut self, field: u64, wire: u64) {
            self.varint((field << 3) | wire);
        }

        fn bytes(&mut self, field: u64, bytes: &[u8]) {
            self.key(field, LEN);
            self.varint(bytes.len() as u64);
            self.buf.extend_from_slice(bytes);
        }

        pub(super) fn string(&mut self, field: u64, s: &str) {
            if !s.is_empty() {
                self.bytes(field, s.as_bytes());
            }
        }

        fn bool(&mut self, field: u64, b: bool) {
            if b {
                self.key(field, VARINT);
                self.varint(1);
            }
        }

        fn int64(&mut self, field: u64, v: i64) {
            if v != 0 {
                self.key(field, VARINT);
                self.varint(v as u64);
            }
        }

        fn double(&mut self, field: u64, v: f64) {
            if v != 0.0 {
                self.key(field, FIXED64);
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
        }

        /// An embedded message, written even when empty (presence matters for messages).
        pub(super) fn message(&mut self, field: u64, build: impl FnOnce(&mut Writer)) {
            let mut inner = Writer::default();
            build(&mut inner);
            self.bytes(field, &inner.buf);
        }

        fn str_field(&mut self, field: u64, v: Option<&Value>) {
            if let Some(s) = v.and_then(Value::as_str) {
                self.string(field, s);
            }
        }

        fn bool_field(&mut self, field: u64, v: Option<&Value>) {
            self.bool(field, v.and_then(Value::as_bool).unwrap_or(false));
        }

        fn strings(&mut self, field: u64, v: Option<&Value>) {
            for s in v.and_then(Value::as_array).into_iter().flatten() {
                if let Some(s) = s.as_str() {
                    self.bytes(field, s.as_bytes());
                }
            }
        }

        /// `Any { yaml = 2 }`: JSON is valid YAML, which is how kube-openapi reads it back.
        fn any(&mut self, field: u64, v: &Value) {
            self.message(field, |w| w.string(2, &v.to_string()));
        }

        /// `repeated NamedAny vendor_extension`: every `x-` key of the object.
        fn extensions(&mut self, field: u64, obj: &Map<String, Value>) {
            for (k, v) in obj.iter().filter(|(k, _)| k.starts_with("x-")) {
                self.message(field, |w| {
                    w.string(1, k);
                    w.any(2, v);
                });
            }
        }

        pub(super) fn into_bytes(self) -> Vec<u8> {
            self.buf
        }
    }

    fn object(v: &Value) -> &Map<String, Value> {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        v.as_object().unwrap_or_else(|| EMPTY.get_or_init(Map::new))
    }

    /// `Document`: swagger 1, info 2, paths 8, definitions 9, security 12,
    /// security_definitions 13.
    pub(super) fn encode_document(doc: &Value) -> Vec<u8> {
        let mut w = Writer::default();
        w.str_field(1, doc.get("swagger"));
        w.message(2, |w| {
            w.str_field(1, doc.pointer("/info/title"));
            w.str_field(2, doc.pointer("/info/version"));
        });
        w.message(8, |w| {
            for (path, item) in object(&doc["paths"]) {
                w.message(2, |w| {
                    w.string(1, path);
                    w.message(2, |w| path_item(w, item));
                });
            }
        });
        w.message(9, |w| named_schemas(w, 1, &doc["definitions"]));
        for requirement in doc["security"].as_array().into_iter().flatten() {
            w.message(12, |w| {
                for (name, scopes) in object(requirement) {
                    w.message(1, |w| {
                        w.string(1, name);
                        w.message(2, |w| w.strings(1, Some(scopes)));
                    });
                }
            });
        }
        w.message(13, |w| {
            for (name, def) in object(&doc["securityDefinitions"]) {
                w.message(1, |w| {
                    w.string(1, name);
                    // SecurityDefinitionsItem.api_key_security = 2
                    w.message(2, |w| {
                        w.message(2, |w| {
                            w.str_field(1, def.get("type"));
                            w.str_field(2, def.get("name"));
                            w.str_field(3, def.get("in"));
                            w.str_field(4, def.get("description"));
                        })
                    });
                });
            }
        });
        w.into_bytes()
    }

    /// `PathItem`: get 2, put 3, post 4, delete 5, patch 8, parameters 9, extensions 10.
    fn path_item(w: &mut Writer, item: &Value) {
        for (method, field) in [
            ("get", 2),
            ("put", 3),
            ("post", 4),
            ("delete", 5),
            ("patch", 8),
        ] {
            if let Some(op) = item.get(method) {
                w.message(field, |w| operation(w, op));
            }
        }
        parameters(w, 9, &item["parameters"]);
        w.extensions(10, object(item));
    }

    /// `Operation`: tags 1, description 3, operation_id 5, produces 6, consumes 7,
    /// parameters 8, responses 9, schemes 10, extensions 13.
    fn operation(w: &mut Writer, op: &Value) {
        w.strings(1, op.get("tags"));
        w.str_field(3, op.get("description"));
        w.str_field(5, op.get("operationId"));
        w.strings(6, op.get("produces"));
        w.strings(7, op.get("consumes"));
        parameters(w, 8, &op["parameters"]);
        w.message(9, |w| {
            for (code, response) in object(&op["responses"]) {
                // NamedResponseValue { name, value: ResponseValue { response = 1 } }
                w.message(1, |w| {
                    w.string(1, code);
                    w.message(2, |w| {
                        w.message(1, |w| {
                            w.str_field(1, response.get("description"));
                            if let Some(s) = response.get("schema") {
                                // SchemaItem.schema = 1
                                w.message(2, |w| w.message(1, |w| schema(w, s)));
                            }
                        })
                    });
                });
            }
        });
        w.strings(10, op.get("schemes"));
        w.extensions(13, object(op));
    }

    /// `repeated ParametersItem { parameter = 1 { body_parameter = 1 | non_body_parameter = 2 } }`.
    fn parameters(w: &mut Writer, field: u64, params: &Value) {
        for p in params.as_array().into_iter().flatten() {
            w.message(field, |w| {
                w.message(1, |w| match p["in"].as_str() {
                    Some("body") => w.message(1, |w| body_parameter(w, p)),
                    Some("path") => w.message(2, |w| w.message(4, |w| path_parameter(w, p))),
                    _ => w.message(2, |w| w.message(3, |w| query_parameter(w, p))),
                });
            });
        }
    }

    /// `BodyParameter`: description 1, name 2, in 3, required 4, schema 5.
    fn body_parameter(w: &mut Writer, p: &Value) {
        w.str_field(1, p.get("description"));
        w.str_field(2, p.get("name"));
        w.str_field(3, p.get("in"));
        w.bool_field(4, p.get("required"));
        if let Some(s) = p.get("schema") {
            w.message(5, |w| schema(w, s));
        }
    }

    /// `PathParameterSubSchema`: required 1, in 2, description 3, name 4, type 5, unique_items 19.
    fn path_parameter(w: &mut Writer, p: &Value) {
        w.bool_field(1, p.get("required"));
        w.str_field(2, p.get("in"));
        w.str_field(3, p.get("description"));
        w.str_field(4, p.get("name"));
        w.str_field(5, p.get("type"));
        w.bool_field(19, p.get("uniqueItems"));
    }

    /// `QueryParameterSubSchema`: required 1, in 2, description 3, name 4, type 6, unique_items 20.
    fn query_parameter(w: &mut Writer, p: &Value) {
        w.bool_field(1, p.get("required"));
        w.str_field(2, p.get("in"));
        w.str_field(3, p.get("description"));
        w.str_field(4, p.get("name"));
        w.str_field(6, p.get("type"));
        w.bool_field(20, p.get("uniqueItems"));
    }

    /// `repeated NamedSchema` (`Definitions`, `Properties`).
    fn named_schemas(w: &mut Writer, field: u64, map: &Value) {
        for (name, s) in object(map) {
            w.message(field, |w| {
                w.string(1, name);
                w.message(2, |w| schema(w, s));
            });
        }
    }

    /// `Schema`, field numbers as in OpenAPIv2.proto.
    fn schema(w: &mut Writer, s: &Value) {
        w.str_field(1, s.get("$ref"));
        w.str_field(2, s.get("format"));
        w.str_field(3, s.get("title"));
        w.str_field(4, s.get("description"));
        if let Some(d) = s.get("default") {
            w.any(5, d);
        }
        let number = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let integer = |k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0);
        w.double(6, number("multipleOf"));
        w.double(7, number("maximum"));
        w.bool_field(8, s.get("exclusiveMaximum"));
        w.double(9, number("minimum"));
        w.bool_field(10, s.get("exclusiveMinimum"));
        w.int64(11, integer("maxLength"));
        w.int64(12, integer("minLength"));
        w.str_field(13, s.get("pattern"));
        w.int64(14, integer("maxItems"));
        w.int64(15, integer("minItems"));
        w.bool_field(16, s.get("uniqueItems"));
        w.strings(19, s.get("required"));
        for e in s["enum"].as_array().into_iter().flatten() {
            w.any(20, e);
        }
        match s.get("additionalProperties") {
            Some(Value::Bool(b)) => w.message(21, |w| {
                w.key(2, VARINT);
                w.varint(u64::from(*b));
            }),
            Some(ap @ Value::Object(_)) => w.message(21, |w| w.message(1, |w| schema(w, ap))),
            _ => {}
        }
        match s.get("type") {
            Some(Value::String(t)) => w.message(22, |w| w.string(1, t)),
            Some(types @ Value::Array(_)) => w.message(22, |w| w.strings(1, Some(types))),
            _ => {}
        }
        match s.get("items") {
            Some(items @ Value::Object(_)) => w.message(23, |w| w.message(1, |w| schema(w, items))),
            Some(Value::Array(items)) => w.message(23, |w| {
                for i in items {
                    w.message(1, |w| schema(w, i));
                }
            }),
            _ => {}
        }
        for sub in s["allOf"].as_array().into_iter().flatten() {
            w.message(24, |w| schema(w, sub));
        }
        if s.get("properties").is_some() {
            w.message(25, |w| named_schemas(w, 1, &s["properties"]));
        }
        w.bool_field(27, s.get("readOnly"));
        w.extensions(31, object(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn api() -> &'static OpenApi {
        static API: OnceLock<OpenApi> = OnceLock::new();
        API.get_or_init(|| OpenApi::build(&Registry::builtin()))
    }

    fn gvk_json(r: &ResourceInfo) -> Value {
        json!({ "group": r.group, "kind": r.kind, "version": r.version })
    }

    fn v3_doc(r: &ResourceInfo) -> &'static Value {
        let key = group_version_key(r.group, r.version);
        api()
            .v3_group_version(&key)
            .expect("group version document")
            .0
    }

    #[test]
    fn every_kind_has_a_definition_with_its_gvk() {
        let reg = Registry::builtin();
        for r in reg.resources() {
            let v2_def = &api().v2()["definitions"][r.schema_name];
            let v3_def = &v3_doc(r)["components"]["schemas"][r.schema_name];
            for def in [v2_def, v3_def] {
                let gvks = def["x-kubernetes-group-version-kind"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{} has no GVK list", r.schema_name));
                assert!(gvks.contains(&gvk_json(r)), "{}", r.schema_name);
                assert!(
                    def["properties"]["metadata"].is_object(),
                    "{}",
                    r.schema_name
                );
            }
            let list = &api().v2()["definitions"][format!("{}List", r.schema_name)];
            assert_eq!(
                list["x-kubernetes-group-version-kind"][0]["kind"],
                format!("{}List", r.kind)
            );
        }
    }

    #[test]
    fn v3_index_lists_every_group_version_with_its_hash() {
        let reg = Registry::builtin();
        let paths = api().v3_index()["paths"].as_object().expect("paths");
        assert_eq!(paths.len(), reg.group_versions().len());
        for (group, version) in reg.group_versions() {
            let key = group_version_key(group, version);
            let url = paths[&key]["serverRelativeURL"].as_str().expect("url");
            let (doc, hash) = api().v3_group_version(&key).expect("document");
            assert_eq!(url, format!("/openapi/v3/{key}?hash={hash}"));
            assert_eq!(doc["openapi"], "3.0.0");
            assert!(api().v3_group_version(&format!("/{key}")).is_some());
        }
        assert!(paths.contains_key("api/v1") && paths.contains_key("apis/apps/v1"));
        assert!(api().v3_group_version("apis/nope/v1").is_none());
        // Stable across builds, different across documents.
        let again = OpenApi::build(&reg);
        assert_eq!(again.v3_index(), api().v3_index());
        let (_, core) = api().v3_group_version("api/v1").expect("core");
        let (_, apps) = api().v3_group_version("apis/apps/v1").expect("apps");
        assert_ne!(core, apps);
    }

    #[test]
    fn pod_spec_containers_carry_patch_metadata() {
        let v2 = &api().v2()["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"];
        let core = &api().v3_group_version("api/v1").expect("core").0;
        let v3 = &core["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"];
        for props in [v2, v3] {
            assert_eq!(props["containers"]["x-kubernetes-patch-merge-key"], "name");
            assert_eq!(props["containers"]["x-kubernetes-patch-strategy"], "merge");
            assert_eq!(props["containers"]["x-kubernetes-list-type"], "map");
            assert_eq!(
                props["volumes"]["x-kubernetes-patch-strategy"],
                "merge,retainKeys"
            );
            assert_eq!(
                props["containers"]["description"]
                    .as_str()
                    .map(|d| !d.is_empty()),
                Some(true)
            );
        }
        // v3 wraps described references in allOf, as upstream does.
        assert!(v3["affinity"]["allOf"][0]["$ref"].is_string());
        assert!(v3["affinity"]["description"].is_string());
        let strategy = &api().v2()["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"]
            ["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    }

    #[test]
    fn patch_table_names_existing_properties() {
        let defs = &api().definitions;
        for (name, fields) in patch_strategy::FIELDS {
            for f in *fields {
                assert!(
                    defs[*name]["properties"].get(f.property).is_some(),
                    "{name}.{} is not in the schema",
                    f.property
                );
            }
        }
        for name in patch_strategy::ATOMIC_STRUCTS {
            assert_eq!(defs[*name]["x-kubernetes-map-type"], "atomic", "{name}");
        }
    }

    /// Every `$ref` in a document must resolve inside that document.
    fn assert_refs_resolve(doc: &Value, prefix: &str, defs: &Value) {
        let mut refs = Vec::new();
        collect_refs_full(doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("bad ref {r}"));
            assert!(defs.get(name).is_some(), "dangling ref {r}");
        }
    }

    fn collect_refs_full(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| match (k.as_str(), v) {
                ("$ref", Value::String(s)) => out.push(s.clone()),
                _ => collect_refs_full(v, out),
            }),
            Value::Array(a) => a.iter().for_each(|v| collect_refs_full(v, out)),
            _ => {}
        }
    }

    #[test]
    fn documents_serialize_and_refs_resolve() {
        let v2 = api().v2();
        assert!(serde_json::to_string(v2).expect("v2").len() > 100_000);
        assert_refs_resolve(v2, "#/definitions/", &v2["definitions"]);
        assert!(serde_json::to_string(api().v3_index()).is_ok());
        for (key, (doc, _)) in &api().v3 {
            let text = serde_json::to_string(doc).expect("v3");
            let back: Value = serde_json::from_str(&text).expect("round trip");
            assert_eq!(&back, doc, "{key}");
            assert_refs_resolve(doc, "#/components/schemas/", &doc["components"]["schemas"]);
        }
    }

    /// What cli-runtime's `supportsQueryParamV3` and kubectl's `gvkSupportsPatchOpenAPIV3` look
    /// for: PATCH operations of the kind listing `fieldValidation` and accepting strategic merge.
    #[test]
    fn patch_operations_support_field_validation_and_strategic_merge() {
        for r in Registry::builtin().resources() {
            let doc = v3_doc(r);
            let mut found = 0;
            for (path, item) in doc["paths"].as_object().expect("paths") {
                let Some(patch) = item.get("patch") else {
                    continue;
                };
                if patch["x-kubernetes-group-version-kind"] != gvk_json(r) {
                    continue;
                }
                found += 1;
                let params = patch["parameters"].as_array().expect("parameters");
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
                    "{path}"
                );
                let content = &patch["requestBody"]["content"];
                for t in PATCH_CONTENT_TYPES {
                    assert!(content.get(t).is_some(), "{path} lacks {t}");
                }
            }
            assert!(found >= 1, "no PATCH operation for {}", r.kind);
        }
    }

    /// What `kubectl explain`'s template does: find the GVK on an operation of the resource's
    /// collection path, then the schema whose GVK list contains it.
    #[test]
    fn explain_finds_kind_through_paths() {
        for r in Registry::builtin().resources() {
            let doc = v3_doc(r);
            let prefix = if r.group.is_empty() {
                "/api".to_string()
            } else {
                format!("/apis/{}", r.group)
            };
            let path = if r.namespaced {
                format!(
                    "{prefix}/{}/namespaces/{{namespace}}/{}",
                    r.version, r.plural
                )
            } else {
                format!("{prefix}/{}/{}", r.version, r.plural)
            };
            let gvk = &doc["paths"][&path]["get"]["x-kubernetes-group-version-kind"];
            assert_eq!(gvk, &gvk_json(r), "{path}");
            let schemas = doc["components"]["schemas"].as_object().expect("schemas");
            let hit = schemas.values().find(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|l| l.contains(gvk))
            });
            let schema = hit.unwrap_or_else(|| panic!("no schema for {}", r.kind));
            assert!(schema["description"].is_string(), "{}", r.kind);
        }
    }

    /// apimachinery's `PatchMetaFromOpenAPIV3`: one property step, then `allOf[0]`, then `$ref`.
    fn v3_step<'a>(
        schemas: &'a Value,
        schema: &'a Value,
        key: &str,
        slice: bool,
    ) -> (&'a Value, &'a Value) {
        let prop = &schema["properties"][key];
        assert!(prop.is_object(), "unable to find api field {key}");
        let mut next = if slice { &prop["items"] } else { prop };
        if let Some(first) = next.get("allOf").and_then(|a| a.get(0)) {
            next = first;
        }
        if let Some(r) = next.get("$ref").and_then(Value::as_str) {
            next = &schemas[r.trim_start_matches("#/components/schemas/")];
        }
        (prop, next)
    }

    #[test]
    fn apply_patch_meta_walk_reaches_container_fields() {
        let doc = api().v3_group_version("apis/apps/v1").expect("apps").0;
        let schemas = &doc["components"]["schemas"];
        let deploy = &schemas["io.k8s.api.apps.v1.Deployment"];
        let (_, spec) = v3_step(schemas, deploy, "spec", false);
        let (strategy, _) = v3_step(schemas, spec, "strategy", false);
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        let (_, template) = v3_step(schemas, spec, "template", false);
        let (_, pod_spec) = v3_step(schemas, template, "spec", false);
        let (containers, container) = v3_step(schemas, pod_spec, "containers", true);
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let (env, _) = v3_step(schemas, container, "env", true);
        assert_eq!(env["x-kubernetes-patch-merge-key"], "name");
        let (ports, _) = v3_step(schemas, container, "ports", true);
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    }

    #[test]
    fn v2_has_parameters_inline_and_subresources() {
        let paths = &api().v2()["paths"];
        let patch = &paths["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-action"], "patch");
        assert!(patch["consumes"]
            .as_array()
            .is_some_and(|c| c.contains(&json!("application/strategic-merge-patch+json"))));
        let params = patch["parameters"].as_array().expect("params");
        assert!(params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["type"] == "string"));
        assert!(params.iter().any(|p| p["in"] == "body"));
        assert!(paths["/api/v1/pods"]["get"].is_object());
        assert!(paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"].is_object());
        assert!(paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"]["post"].is_object());
        assert!(paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"].is_object());
        let scale =
            &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
        assert!(paths["/api/v1/namespaces/{name}"]["get"].is_object());
        assert!(paths["/api/v1/nodes/{name}/status"]["put"].is_object());
        let list = &paths["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"];
        assert_eq!(list["operationId"], "listAppsV1NamespacedDeployment");
    }

    /// Decodes one protobuf message into (field number, payload) pairs; varints as payload bytes.
    fn decode(mut buf: &[u8]) -> Vec<(u64, Vec<u8>)> {
        fn varint(buf: &mut &[u8]) -> u64 {
            let mut v = 0u64;
            let mut shift = 0;
            loop {
                let b = buf[0];
                *buf = &buf[1..];
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    return v;
                }
            }
        }
        let mut out = Vec::new();
        while !buf.is_empty() {
            let key = varint(&mut buf);
            let payload = match key & 7 {
                0 => varint(&mut buf).to_le_bytes().to_vec(),
                1 => {
                    let (p, rest) = buf.split_at(8);
                    buf = rest;
                    p.to_vec()
                }
                2 => {
                    let len = varint(&mut buf) as usize;
                    let (p, rest) = buf.split_at(len);
                    buf = rest;
                    p.to_vec()
                }
                w => panic!("unexpected wire type {w}"),
            };
            out.push((key >> 3, payload));
        }
        out
    }

    fn field<'a>(msg: &'a [(u64, Vec<u8>)], n: u64) -> impl Iterator<Item = &'a Vec<u8>> + 'a {
        msg.iter().filter(move |(f, _)| *f == n).map(|(_, p)| p)
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).expect("utf8")
    }

    #[test]
    fn v2_protobuf_carries_definitions_with_gvk() {
        let doc = decode(api().v2_protobuf());
        assert_eq!(text(field(&doc, 1).next().expect("swagger")), "2.0");
        let definitions = decode(field(&doc, 9).next().expect("definitions"));
        let named: Vec<_> = field(&definitions, 1).map(|d| decode(d)).collect();
        assert_eq!(
            named.len(),
            api().v2()["definitions"].as_object().map_or(0, |d| d.len())
        );
        let pod = named
            .iter()
            .find(|n| text(field(n, 1).next().expect("name")) == "io.k8s.api.core.v1.Pod")
            .expect("Pod definition");
        let schema = decode(field(pod, 2).next().expect("schema"));
        assert!(text(field(&schema, 4).next().expect("description")).contains("Pod"));
        assert!(field(&schema, 25).next().is_some(), "properties");
        let ext = decode(field(&schema, 31).next().expect("vendor extension"));
        assert_eq!(
            text(field(&ext, 1).next().expect("name")),
            "x-kubernetes-group-version-kind"
        );
        let any = decode(field(&ext, 2).next().expect("any"));
        let yaml: Value =
            serde_json::from_str(&text(field(&any, 2).next().expect("yaml"))).expect("json");
        assert_eq!(yaml[0]["kind"], "Pod");
        let paths = decode(field(&doc, 8).next().expect("paths"));
        assert_eq!(
            field(&paths, 2).count(),
            api().v2()["paths"].as_object().map_or(0, |p| p.len())
        );
    }

    /// kube-openapi's `proto.NewOpenAPIData` (used by kubectl for v2) rejects arrays without
    /// exactly one item schema, multiple types, and `$ref`s with properties.
    #[test]
    fn v2_definitions_satisfy_kube_openapi_parser() {
        fn check(s: &Value, at: &str) {
            let Some(obj) = s.as_object() else { return };
            assert!(
                !obj.get("type").is_some_and(Value::is_array),
                "{at}: multiple types"
            );
            if obj.get("type") == Some(&json!("array")) {
                assert!(
                    obj.get("items").is_some_and(Value::is_object),
                    "{at}: array without items"
                );
            }
            if obj.contains_key("$ref") {
                assert!(
                    !obj.contains_key("properties"),
                    "{at}: $ref with properties"
                );
            }
            for (k, v) in obj.iter().filter(|(k, _)| !k.starts_with("x-")) {
                match (k.as_str(), v) {
                    ("properties", Value::Object(props)) => props
                        .iter()
                        .for_each(|(n, p)| check(p, &format!("{at}.{n}"))),
                    ("items" | "additionalProperties", v) => check(v, &format!("{at}[]")),
                    _ => {}
                }
            }
        }
        for (name, def) in api().v2()["definitions"].as_object().expect("definitions") {
            check(def, name);
        }
    }

    #[test]
    fn protobuf_accept_header_detection() {
        assert!(v2_accepts_protobuf(
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        ));
        assert!(v2_accepts_protobuf(
            "application/json;q=0.5, application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        ));
        assert!(!v2_accepts_protobuf("application/json"));
        assert!(!v2_accepts_protobuf(""));
    }

    #[test]
    fn patch_schema_navigates_pod() {
        let pod = api().patch_schema("io.k8s.api.core.v1.Pod").expect("pod");
        let spec = pod.property("spec").expect("spec");
        assert_eq!(
            spec.list_strategy("containers"),
            crate::api::strategic_merge::ListStrategy::MergeByKey("name")
        );
        let container = spec
            .property("containers")
            .and_then(|c| c.items())
            .expect("container");
        assert_eq!(
            container.list_strategy("args"),
            crate::api::strategic_merge::ListStrategy::Replace
        );
        let meta = pod.property("metadata").expect("metadata");
        assert_eq!(
            meta.list_strategy("finalizers"),
            crate::api::strategic_merge::ListStrategy::MergePrimitives
        );
        assert!(api().patch_schema("io.k8s.api.core.v1.Nope").is_none());
    }
}
