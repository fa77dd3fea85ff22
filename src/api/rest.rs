//! The REST semantics of every resource, independent of HTTP: create, update, patch, delete,
//! with the metadata rules, status subresource split, graceful deletion and finalizers that
//! Kubernetes applies. HTTP handlers parse requests and call in here; in-process controllers
//! may call in here too.

use std::sync::{Arc, OnceLock};

use rand::Rng as _;
use serde_json::{json, Value};
use tracing::debug;

use super::admission::{AdmissionAttributes, AdmissionHook, AdmissionOperation};
use super::auth::UserInfo;
use super::object;
use super::openapi::OpenApi;
use super::registry::{Registry, ResourceInfo, Subresource};
use super::status::{ApiError, ApiResult, Cause};
use super::storage::{list_prefix, ListQuery, Objects};
use super::strategic_merge;
use super::validation::{self, FieldError};
use crate::store::Read;

/// How many times a write that did not pin a resourceVersion is retried on a conflict.
const MAX_CONFLICT_RETRIES: usize = 8;

/// `fieldValidation`: what to do with fields the schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: &str) -> ApiResult<Self> {
        match s {
            "Ignore" => Ok(Self::Ignore),
            "Warn" | "" => Ok(Self::Warn),
            "Strict" => Ok(Self::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn or Strict, got {other:?}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// Who writes (for admission policies); None for the server's own writes.
    pub user: Option<UserInfo>,
}

/// The result of a write: the object as stored, and warnings for the client.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
}

/// Patch documents by media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::StrategicMerge),
            _ => None,
        }
    }
}

/// A patch request: its media type and document.
#[derive(Debug, Clone, Copy)]
pub struct Patch<'a> {
    pub patch_type: PatchType,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
    /// Who deletes (for admission policies); None for the server's own deletes.
    pub user: Option<UserInfo>,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body (JSON); query parameters are merged by the caller.
    pub fn from_body(body: &Value) -> ApiResult<Self> {
        let mut opts = DeleteOptions {
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            ..Default::default()
        };
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation = Some(parse_propagation(p)?);
        } else if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            opts.propagation = Some(Propagation::Orphan);
        }
        if let Some(pre) = body.get("preconditions") {
            opts.precondition_uid = pre.get("uid").and_then(Value::as_str).map(str::to_string);
            opts.precondition_resource_version = pre
                .get("resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        if let Some(dry) = body.get("dryRun").and_then(Value::as_array) {
            opts.dry_run = parse_dry_run(dry.iter().filter_map(Value::as_str))?;
        }
        Ok(opts)
    }
}

pub fn parse_propagation(p: &str) -> ApiResult<Propagation> {
    match p {
        "Orphan" => Ok(Propagation::Orphan),
        "Background" => Ok(Propagation::Background),
        "Foreground" => Ok(Propagation::Foreground),
        other => Err(ApiError::bad_request(format!(
            "propagationPolicy must be one of Orphan, Background or Foreground, got {other:?}"
        ))),
    }
}

/// `dryRun` values: only `All` is defined.
pub fn parse_dry_run<'a>(values: impl Iterator<Item = &'a str>) -> ApiResult<bool> {
    let mut dry = false;
    for v in values {
        match v {
            "All" => dry = true,
            "" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "Invalid dryRun value: {other:?}, only \"All\" is supported"
                )))
            }
        }
    }
    Ok(dry)
}

/// REST operations over the object storage.
#[derive(Clone)]
pub struct Rest {
    objects: Objects,
    registry: Arc<Registry>,
    openapi: Arc<OpenApi>,
    /// Admission control, installed once at start-up (shared by every clone).
    admission: Arc<OnceLock<Arc<dyn AdmissionHook>>>,
}

impl Rest {
    pub fn new(objects: Objects, registry: Arc<Registry>, openapi: Arc<OpenApi>) -> Self {
        Rest {
            objects,
            registry,
            openapi,
            admission: Arc::new(OnceLock::new()),
        }
    }

    /// Puts admission control into the write path of this `Rest` and all its clones. Only the
    /// first call counts; returns whether it was this one.
    pub fn install_admission(&self, hook: Arc<dyn AdmissionHook>) -> bool {
        self.admission.set(hook).is_ok()
    }

    async fn admit_mutating(
        &self,
        attrs: &AdmissionAttributes<'_>,
        obj: &mut Value,
    ) -> ApiResult<Vec<String>> {
        match self.admission.get() {
            Some(hook) => hook.mutate(attrs, obj).await,
            None => Ok(Vec::new()),
        }
    }

    async fn admit_validating(
        &self,
        attrs: &AdmissionAttributes<'_>,
        obj: Option<&Value>,
    ) -> ApiResult<Vec<String>> {
        match self.admission.get() {
            Some(hook) => hook.validate(attrs, obj).await,
            None => Ok(Vec::new()),
        }
    }

    /// REST over a store, serving the built-in kinds.
    pub fn with_builtin_kinds(store: crate::store::Store) -> Self {
        let registry = Arc::new(Registry::builtin());
        let openapi = Arc::new(OpenApi::build(&registry));
        Rest::new(Objects::new(store), registry, openapi)
    }

    pub fn openapi(&self) -> &Arc<OpenApi> {
        &self.openapi
    }

    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// POST to a collection.
    #[tracing::instrument(skip_all, fields(resource = r.plural, ns = url_namespace))]
    pub async fn create(
        &self,
        r: &ResourceInfo,
        url_namespace: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let (mut obj, mut warnings) = self.admit_body(r, body, url_namespace, opts)?;
        if let Some(ns) = object::namespace(&obj).filter(|_| r.namespaced) {
            self.check_namespace_open(ns).await?;
        }
        // Mutating admission sees the object as sent, before the server fills in what it
        // owns (as upstream: a generateName is not resolved yet, status is not computed).
        let mut attrs = AdmissionAttributes {
            resource: r,
            subresource: None,
            operation: AdmissionOperation::Create,
            namespace: object::namespace(&obj).map(str::to_string),
            name: object::name(&obj).unwrap_or_default().to_string(),
            old_object: None,
            user: opts.user.as_ref(),
            dry_run: opts.dry_run,
        };
        warnings.extend(self.admit_mutating(&attrs, &mut obj).await?);
        if r.group.is_empty() && r.kind == "Pod" {
            self.resolve_priority(&mut obj).await?;
            super::runtime_class::admit_pod(self, &mut obj).await?;
        }
        self.prepare_create(r, &mut obj)?;
        let name = object::name(&obj).unwrap_or_default().to_string();
        attrs.name = name.clone();
        let errors = validation::validate_create(r, &obj);
        if !errors.is_empty() {
            return Err(invalid(r, &name, &errors));
        }
        warnings.extend(self.admit_validating(&attrs, Some(&obj)).await?);
        let object = if opts.dry_run {
            obj
        } else {
            self.objects.create(r, &obj).await?
        };
        debug!(name, "created");
        Ok(Written { object, warnings })
    }

    /// PUT to an object or its status subresource.
    #[tracing::instrument(skip_all, fields(resource = r.plural, ns = url_namespace, name))]
    pub async fn update(
        &self,
        r: &ResourceInfo,
        url_namespace: Option<&str>,
        name: &str,
        body: Value,
        sub: Option<Subresource>,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let (new, warnings) = self.admit_body(r, body, url_namespace, opts)?;
        match object::name(&new) {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            _ => {}
        }
        let pinned = object::resource_version(&new).map(str::to_string);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let old = self.objects.must_get(r, url_namespace, name).await?;
            if let Some(rv) = &pinned {
                if object::resource_version(&old) != Some(rv.as_str()) {
                    return Err(ApiError::stale(r, name));
                }
            }
            let mut admitted = warnings.clone();
            match self
                .commit_update(r, &old, new.clone(), sub, opts, &mut admitted)
                .await
            {
                Err(e) if is_conflict(&e) && pinned.is_none() => continue,
                other => {
                    return other.map(|object| Written {
                        object,
                        warnings: admitted,
                    });
                }
            }
        }
        Err(ApiError::stale(r, name))
    }

    /// PATCH an object or its status subresource.
    #[tracing::instrument(skip_all, fields(resource = r.plural, ns = url_namespace, name, patch_type = ?patch.patch_type))]
    pub async fn patch(
        &self,
        r: &ResourceInfo,
        url_namespace: Option<&str>,
        name: &str,
        patch: Patch<'_>,
        sub: Option<Subresource>,
        opts: &WriteOptions,
    ) -> ApiResult<Written> {
        let patch_type = patch.patch_type;
        let patch = parse_patch(patch_type, patch.body)?;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let old = self.objects.must_get(r, url_namespace, name).await?;
            let patched = self.apply_patch(r, &old, patch_type, &patch)?;
            // A patch may pin the version it was computed from; a retry re-reads and re-checks.
            if object::resource_version(&patched) != object::resource_version(&old) {
                return Err(ApiError::stale(r, name));
            }
            if object::name(&patched) != Some(name) {
                return Err(ApiError::bad_request(
                    "metadata.name: the name of an object cannot be changed by a patch",
                ));
            }
            let (new, mut warnings) = self.admit_body(r, patched, url_namespace, opts)?;
            match self
                .commit_update(r, &old, new, sub, opts, &mut warnings)
                .await
            {
                Err(e) if is_conflict(&e) => continue,
                other => return other.map(|object| Written { object, warnings }),
            }
        }
        Err(ApiError::stale(r, name))
    }

    fn apply_patch(
        &self,
        r: &ResourceInfo,
        old: &Value,
        patch_type: PatchType,
        patch: &PatchDoc,
    ) -> ApiResult<Value> {
        match (patch_type, patch) {
            (PatchType::Json, PatchDoc::Json(p)) => {
                let mut doc = old.clone();
                json_patch::patch(&mut doc, p).map_err(|e| {
                    ApiError::unprocessable(format!(
                        "the server rejected our request due to an error in our request: {e}"
                    ))
                })?;
                Ok(doc)
            }
            (PatchType::Merge, PatchDoc::Value(p)) => {
                let mut doc = old.clone();
                json_patch::merge(&mut doc, p);
                Ok(doc)
            }
            (PatchType::StrategicMerge, PatchDoc::Value(p)) => {
                let schema = self.openapi.patch_schema(r.schema_name);
                strategic_merge::strategic_merge(old, p, schema)
                    .map_err(|e| ApiError::bad_request(e.to_string()))
            }
            _ => Err(ApiError::internal("patch document does not match its type")),
        }
    }

    /// `pods/binding`: assigns a pod to a node, once. This is the one way `spec.nodeName`
    /// changes after creation, so it bypasses the pod-update rules; it also records the
    /// PodScheduled condition, as the apiserver's binding storage does.
    pub async fn bind_pod(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        node: &str,
        uid: Option<&str>,
        dry_run: bool,
    ) -> ApiResult<Value> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let pod = self.objects.must_get(r, ns, name).await?;
            if let Some(uid) = uid.filter(|u| !u.is_empty()) {
                if object::uid(&pod) != Some(uid) {
                    return Err(ApiError::conflict(r, name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", object::uid(&pod).unwrap_or(""))));
                }
            }
            if object::is_deleting(&pod) {
                return Err(ApiError::conflict(
                    r,
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            if let Some(current) = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                return Err(ApiError::conflict(
                    r,
                    name,
                    &format!("pod {name} is already assigned to node {current:?}"),
                ));
            }
            let mut bound = pod.clone();
            bound["spec"]["nodeName"] = json!(node);
            let now = object::now_rfc3339();
            let mut conditions: Vec<Value> = pod
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conditions.push(json!({ "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now }));
            bound["status"]["conditions"] = Value::Array(conditions);
            if dry_run {
                return Ok(bound);
            }
            match self.objects.update(r, &bound, revision_of(&pod)?).await {
                Err(e) if is_conflict(&e) => continue,
                other => return other,
            }
        }
        Err(ApiError::stale(r, name))
    }

    /// DELETE an object: graceful for bound pods, deferred while finalizers remain.
    pub async fn delete(
        &self,
        r: &ResourceInfo,
        url_namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        self.delete_admitted(r, url_namespace, name, opts)
            .await
            .map(|w| w.object)
    }

    /// DELETE, with the warnings of admission for the client.
    #[tracing::instrument(skip_all, fields(resource = r.plural, ns = url_namespace, name))]
    pub async fn delete_admitted(
        &self,
        r: &ResourceInfo,
        url_namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Written> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let old = self.objects.must_get(r, url_namespace, name).await?;
            check_preconditions(r, name, &old, opts)?;
            let attrs = AdmissionAttributes {
                resource: r,
                subresource: None,
                operation: AdmissionOperation::Delete,
                namespace: object::namespace(&old).map(str::to_string),
                name: name.to_string(),
                old_object: Some(&old),
                user: opts.user.as_ref(),
                dry_run: opts.dry_run,
            };
            let warnings = self.admit_validating(&attrs, None).await?;
            match self.delete_once(r, url_namespace, name, &old, opts).await {
                Err(e) if is_conflict(&e) => continue,
                other => return other.map(|object| Written { object, warnings }),
            }
        }
        Err(ApiError::stale(r, name))
    }

    async fn delete_once(
        &self,
        r: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        old: &Value,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let old_rv = revision_of(old)?;
        let mut new = old.clone();
        let mut finalizers = object::finalizers(old);
        match opts.propagation {
            Some(Propagation::Foreground)
                if !finalizers.iter().any(|f| f == "foregroundDeletion") =>
            {
                finalizers.push("foregroundDeletion".into())
            }
            Some(Propagation::Orphan) if !finalizers.iter().any(|f| f == "orphan") => {
                finalizers.push("orphan".into())
            }
            _ => {}
        }
        let grace = self.grace_period(r, old, opts);
        let namespace_finalizing = r.group.is_empty()
            && r.kind == "Namespace"
            && old
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        if grace > 0 || !finalizers.is_empty() || namespace_finalizing {
            if object::is_deleting(old) && grace > 0 {
                // Already terminating: a second delete does not restart the clock.
                return Ok(old.clone());
            }
            object::set_meta(&mut new, "finalizers", json!(finalizers));
            if finalizers.is_empty() {
                object::remove_meta(&mut new, "finalizers");
            }
            if !object::is_deleting(old) {
                object::set_meta(&mut new, "deletionTimestamp", json!(object::time_in(grace)));
            }
            object::set_meta(&mut new, "deletionGracePeriodSeconds", json!(grace));
            if namespace_finalizing {
                new["status"]["phase"] = json!("Terminating");
            }
            if opts.dry_run {
                return Ok(new);
            }
            return self.objects.update(r, &new, old_rv).await;
        }
        if opts.dry_run {
            return Ok(old.clone());
        }
        self.objects.delete(r, ns, name, old_rv).await
    }

    /// The grace period a delete gets: only pods bound to a node wait for their kubelet.
    fn grace_period(&self, r: &ResourceInfo, old: &Value, opts: &DeleteOptions) -> i64 {
        if !(r.group.is_empty() && r.kind == "Pod") {
            return 0;
        }
        let bound = old
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            old.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded") | Some("Failed")
        );
        if !bound || finished {
            return 0;
        }
        let default = old
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30);
        opts.grace_period_seconds.unwrap_or(default).max(0)
    }

    /// Body checks shared by create, update and patch: kind and apiVersion, namespace, a typed
    /// round trip that surfaces type errors and unknown fields.
    fn admit_body(
        &self,
        r: &ResourceInfo,
        mut body: Value,
        url_namespace: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<(Value, Vec<String>)> {
        if !body.is_object() {
            return Err(ApiError::bad_request(format!(
                "the body of the request must be a JSON object describing a {}",
                r.kind
            )));
        }
        check_type_meta(r, &mut body)?;
        // Type errors first, before anything below reshapes the body.
        let mut typed = (r.roundtrip)(body.clone()).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {}",
                r.kind, r.version, r.kind, e
            ))
        })?;
        if r.namespaced {
            match (object::namespace(&typed), url_namespace) {
                (Some(b), Some(u)) if b != u => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                (None, Some(u)) => object::set_meta(&mut typed, "namespace", json!(u)),
                _ => {}
            }
        } else {
            object::remove_meta(&mut typed, "namespace");
        }
        let mut unknown = Vec::new();
        unknown_fields(&body, &typed, "", &mut unknown);
        let mut warnings = Vec::new();
        if !unknown.is_empty() {
            let msgs: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            match opts.field_validation {
                FieldValidation::Strict => {
                    return Err(ApiError::bad_request(format!(
                        "strict decoding error: {}",
                        msgs.join(", ")
                    )))
                }
                FieldValidation::Warn => warnings = msgs,
                FieldValidation::Ignore => {}
            }
        }
        Ok((typed, warnings))
    }

    /// Upstream's Priority admission: the pod's `priorityClassName` (or the class marked
    /// `globalDefault`) becomes its `spec.priority` and default `preemptionPolicy`.
    async fn resolve_priority(&self, pod: &mut Value) -> ApiResult<()> {
        let name = object::name(pod).unwrap_or_default().to_string();
        let named = pod
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let class = match &named {
            Some(class) => Some(self.priority_class(class).await?.ok_or_else(|| {
                ApiError::forbidden(format!(
                    "pods \"{name}\" is forbidden: no PriorityClass with name {class} was found"
                ))
            })?),
            None => self.global_default_priority_class().await?,
        };
        let Some(class) = class else {
            return Ok(());
        };
        let value = class.get("value").and_then(Value::as_i64).unwrap_or(0);
        let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
            if given != value {
                return Err(ApiError::forbidden(format!(
                    "pods \"{name}\" is forbidden: the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
                )));
            }
        }
        spec.insert("priority".into(), json!(value));
        if named.is_none() {
            spec.insert(
                "priorityClassName".into(),
                class["metadata"]["name"].clone(),
            );
        }
        if !spec.contains_key("preemptionPolicy") {
            let policy = class
                .get("preemptionPolicy")
                .cloned()
                .unwrap_or_else(|| json!("PreemptLowerPriority"));
            spec.insert("preemptionPolicy".into(), policy);
        }
        Ok(())
    }

    /// A PriorityClass by name; the two system classes exist even when nobody created them.
    async fn priority_class(&self, class: &str) -> ApiResult<Option<Value>> {
        let system = |value: i64| json!({"metadata": {"name": class}, "value": value, "preemptionPolicy": "PreemptLowerPriority"});
        let Some(r) = self
            .registry
            .find("scheduling.k8s.io", "v1", "priorityclasses")
        else {
            return Ok(None);
        };
        let stored = self.objects.get(r, None, class, Read::Local).await?;
        Ok(stored.or_else(|| match class {
            "system-node-critical" => Some(system(2_000_001_000)),
            "system-cluster-critical" => Some(system(2_000_000_000)),
            _ => None,
        }))
    }

    async fn global_default_priority_class(&self) -> ApiResult<Option<Value>> {
        let Some(r) = self
            .registry
            .find("scheduling.k8s.io", "v1", "priorityclasses")
        else {
            return Ok(None);
        };
        let is_default = |c: &Value| c.get("globalDefault").and_then(Value::as_bool) == Some(true);
        let page = self
            .objects
            .list(ListQuery {
                prefix: list_prefix(r, None),
                read: Read::Local,
                limit: None,
                continue_token: None,
                filter: &is_default,
                filtered: true,
            })
            .await?;
        Ok(page.items.into_iter().next())
    }

    /// Fills in the fields the server owns on create.
    fn prepare_create(&self, r: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
        if object::resource_version(obj).is_some() {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if object::name(obj).is_none() {
            match object::meta_str(obj, "generateName") {
                Some(prefix) => {
                    let name = generate_name(prefix);
                    object::set_meta(obj, "name", json!(name));
                }
                None => {
                    return Err(ApiError::invalid(
                        r,
                        "",
                        vec![Cause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    ))
                }
            }
        }
        object::set_meta(obj, "uid", json!(uuid::Uuid::new_v4().to_string()));
        object::set_meta(obj, "creationTimestamp", json!(object::now_rfc3339()));
        for field in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ] {
            object::remove_meta(obj, field);
        }
        if obj.get("spec").is_some() {
            object::set_meta(obj, "generation", json!(1));
        } else {
            object::remove_meta(obj, "generation");
        }
        if r.has_subresource(Subresource::Status) {
            reset_status_for_create(r, obj);
        }
        if r.group.is_empty() && r.kind == "Pod" {
            add_default_tolerations(obj);
        }
        validation::apply_defaults(r, obj);
        Ok(())
    }

    /// Applies an update computed from `old`: subresource split, system metadata kept,
    /// generation bumped on spec changes, admission, deletion once the last finalizer goes.
    /// Admission warnings are added to `warnings`.
    async fn commit_update(
        &self,
        r: &ResourceInfo,
        old: &Value,
        incoming: Value,
        sub: Option<Subresource>,
        opts: &WriteOptions,
        warnings: &mut Vec<String>,
    ) -> ApiResult<Value> {
        let old_rv = revision_of(old)?;
        let name = object::name(old).unwrap_or_default().to_string();
        let mut new = match sub {
            Some(Subresource::Status) => {
                let mut merged = old.clone();
                merged["status"] = incoming.get("status").cloned().unwrap_or(Value::Null);
                if merged["status"].is_null() {
                    if let Some(m) = merged.as_object_mut() {
                        m.remove("status");
                    }
                }
                merged
            }
            _ => {
                let mut merged = incoming;
                if r.has_subresource(Subresource::Status) {
                    match old.get("status") {
                        Some(s) => merged["status"] = s.clone(),
                        None => {
                            if let Some(m) = merged.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                merged
            }
        };
        // Mutating admission first (as upstream, before the server restores what it owns), so
        // that what a policy changes counts for the generation and gets defaults too.
        let attrs = AdmissionAttributes {
            resource: r,
            subresource: sub,
            operation: AdmissionOperation::Update,
            namespace: object::namespace(old).map(str::to_string),
            name: name.clone(),
            old_object: Some(old),
            user: opts.user.as_ref(),
            dry_run: opts.dry_run,
        };
        warnings.extend(self.admit_mutating(&attrs, &mut new).await?);
        keep_system_metadata(old, &mut new);
        if old.get("spec") != new.get("spec") {
            let generation = object::meta(old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            object::set_meta(&mut new, "generation", json!(generation + 1));
        }
        validation::apply_defaults(r, &mut new);
        let errors = validation::validate_update(r, old, &new);
        if !errors.is_empty() {
            return Err(invalid(r, &name, &errors));
        }
        warnings.extend(self.admit_validating(&attrs, Some(&new)).await?);
        if object::is_deleting(&new)
            && object::finalizers(&new).is_empty()
            && namespace_released(r, &new)
        {
            if opts.dry_run {
                return Ok(new);
            }
            return self
                .objects
                .delete(r, object::namespace(&new), &name, old_rv)
                .await;
        }
        if without_rv(old) == without_rv(&new) {
            return Ok(old.clone());
        }
        if opts.dry_run {
            return Ok(new);
        }
        self.objects.update(r, &new, old_rv).await
    }

    async fn check_namespace_open(&self, ns: &str) -> ApiResult<()> {
        let Some(ns_resource) = self.registry.find("", "v1", "namespaces") else {
            return Ok(());
        };
        let found = self
            .objects
            // Like the apiserver's NamespaceLifecycle admission, which reads an informer cache:
            // a namespace deleted a moment ago is caught by the namespace controller anyway.
            .get(ns_resource, None, ns, crate::store::Read::Local)
            .await?;
        match found {
            None => Err(ApiError::not_found(ns_resource, ns)),
            Some(n) if object::is_deleting(&n) => Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ))),
            Some(_) => Ok(()),
        }
    }
}

fn is_conflict(e: &ApiError) -> bool {
    e.reason == "Conflict"
}

/// The revision an object was read at.
fn revision_of(obj: &Value) -> ApiResult<u64> {
    object::resource_version(obj)
        .and_then(object::parse_resource_version)
        .ok_or_else(|| ApiError::internal("stored object has no resourceVersion"))
}

fn without_rv(obj: &Value) -> Value {
    let mut o = obj.clone();
    object::remove_meta(&mut o, "resourceVersion");
    o
}

/// A namespace is only removed once its own `spec.finalizers` are gone too.
fn namespace_released(r: &ResourceInfo, obj: &Value) -> bool {
    !(r.group.is_empty() && r.kind == "Namespace")
        || obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())
}

fn check_type_meta(r: &ResourceInfo, body: &mut Value) -> ApiResult<()> {
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if !api_version.is_empty() && api_version != r.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            r.api_version()
        )));
    }
    if !kind.is_empty() && kind != r.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            r.kind
        )));
    }
    body["apiVersion"] = json!(r.api_version());
    body["kind"] = json!(r.kind);
    Ok(())
}

/// Collects the paths of fields present in `input` but dropped by the typed round trip.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(tv) => unknown_fields(v, tv, &p, out),
                    None if v.is_null() => {}
                    // Empty maps and lists of optional fields are omitted on the way out.
                    None if v.as_object().is_some_and(|m| m.is_empty())
                        || v.as_array().is_some_and(|a| a.is_empty()) => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                unknown_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Server-owned metadata survives every update; clients cannot change it.
fn keep_system_metadata(old: &Value, new: &mut Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match object::meta(old).and_then(|m| m.get(field)) {
            Some(v) => object::set_meta(new, field, v.clone()),
            None => object::remove_meta(new, field),
        }
    }
    object::remove_meta(new, "managedFields");
}

fn reset_status_for_create(r: &ResourceInfo, obj: &mut Value) {
    let status = match (r.group, r.kind) {
        ("", "Pod") => json!({ "phase": "Pending", "qosClass": qos_class(obj) }),
        ("", "Namespace") => {
            // The namespace strategy's create-time finalizer: deletion waits for the namespace
            // controller to empty the namespace.
            let finalizers = obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !finalizers.iter().any(|f| f == "kubernetes") {
                let mut all = finalizers;
                all.push(json!("kubernetes"));
                obj["spec"]["finalizers"] = Value::Array(all);
            }
            json!({ "phase": "Active" })
        }
        // Nodes report their own status when they register.
        ("", "Node") => return,
        _ => json!({}),
    };
    obj["status"] = status;
}

/// Upstream's DefaultTolerationSeconds admission: pods tolerate a not-ready or unreachable
/// node for 300 s before the node lifecycle controller evicts them, unless they say otherwise.
fn add_default_tolerations(pod: &mut Value) {
    const DEFAULT_SECONDS: i64 = 300;
    let mut tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let covered = tolerations.iter().any(|t| {
            let key_matches = match t.get("key").and_then(Value::as_str) {
                None | Some("") => t.get("operator").and_then(Value::as_str) == Some("Exists"),
                Some(k) => k == key,
            };
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            key_matches && (effect.is_empty() || effect == "NoExecute")
        });
        if !covered {
            tolerations.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_SECONDS,
            }));
        }
    }
    pod["spec"]["tolerations"] = Value::Array(tolerations);
}

/// The pod's QoS class, as the apiserver computes it on create.
fn qos_class(pod: &Value) -> &'static str {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let requests = c.pointer("/resources/requests");
        let limits = c.pointer("/resources/limits");
        let has = |v: Option<&Value>, k: &str| v.and_then(|m| m.get(k)).is_some();
        if has(requests, "cpu")
            || has(requests, "memory")
            || has(limits, "cpu")
            || has(limits, "memory")
        {
            any = true;
        }
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|m| m.get(res));
            let request = requests.and_then(|m| m.get(res)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// `generateName` + 5 characters from the alphabet Kubernetes uses (no vowels, no confusables).
fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    let max_prefix = 63 - suffix.len();
    let prefix = if prefix.len() > max_prefix {
        &prefix[..max_prefix]
    } else {
        prefix
    };
    format!("{prefix}{suffix}")
}

fn check_preconditions(
    r: &ResourceInfo,
    name: &str,
    obj: &Value,
    opts: &DeleteOptions,
) -> ApiResult<()> {
    if let Some(uid) = &opts.precondition_uid {
        let have = object::uid(obj).unwrap_or("");
        if have != uid {
            return Err(ApiError::conflict(
                r,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                ),
            ));
        }
    }
    if let Some(rv) = &opts.precondition_resource_version {
        let have = object::resource_version(obj).unwrap_or("");
        if have != rv {
            return Err(ApiError::conflict(
                r,
                name,
                &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"),
            ));
        }
    }
    Ok(())
}

fn invalid(r: &ResourceInfo, name: &str, errors: &[FieldError]) -> ApiError {
    let causes = errors
        .iter()
        .map(|e| Cause {
            reason: e.reason.cause_type().to_string(),
            message: e.body(),
            field: e.field.clone(),
        })
        .collect();
    ApiError::invalid(r, name, causes)
}

/// A parsed patch document.
#[derive(Debug)]
pub enum PatchDoc {
    Json(json_patch::Patch),
    Value(Value),
}

fn parse_patch(patch_type: PatchType, bytes: &[u8]) -> ApiResult<PatchDoc> {
    match patch_type {
        PatchType::Json => serde_json::from_slice::<json_patch::Patch>(bytes)
            .map(PatchDoc::Json)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}"))),
        PatchType::Merge | PatchType::StrategicMerge => {
            let v: Value = serde_json::from_slice(bytes)
                .map_err(|e| ApiError::bad_request(format!("invalid patch document: {e}")))?;
            if !v.is_object() {
                return Err(ApiError::bad_request(
                    "invalid patch document: a merge patch must be a JSON object",
                ));
            }
            Ok(PatchDoc::Value(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_with_paths() {
        let input =
            json!({"spec": {"containers": [{"name": "a", "imag": "x"}], "bogus": 1}, "x": null});
        let typed = json!({"spec": {"containers": [{"name": "a"}]}});
        let mut out = Vec::new();
        unknown_fields(&input, &typed, "", &mut out);
        assert_eq!(out, vec!["spec.bogus", "spec.containers[0].imag"]);
    }

    #[test]
    fn generated_names_keep_the_prefix_and_fit() {
        let n = generate_name("web-");
        assert!(n.starts_with("web-") && n.len() == 9);
        let long = "x".repeat(80);
        assert_eq!(generate_name(&long).len(), 63);
    }

    #[test]
    fn qos_classes() {
        let be = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(qos_class(&be), "BestEffort");
        let g = json!({"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&b), "Burstable");
    }
}
