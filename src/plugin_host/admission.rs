//! The write path's admission hook, answered by the active wasm policies: which policies see a
//! request (rules, namespace, selectors), the request they get, and what their answers (or
//! failures) mean for the client.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::policies::{ActivePolicy, PolicySet};
use super::resource::{self, FailurePolicy};
use super::{
    AdmissionRequest, Call, GroupVersionKind, GroupVersionResource, Operation, PolicyError,
    RequestUser,
};
use crate::api::admission::{AdmissionAttributes, AdmissionHook, AdmissionOperation};
use crate::api::registry::{BuiltinKind, ResourceInfo};
use crate::api::status::{ApiError, ApiResult};
use crate::api::storage::Objects;
use crate::store::Read;

/// Admission by the policies of a [`PolicySet`].
pub struct PolicyAdmission {
    set: Arc<PolicySet>,
    objects: Objects,
    namespaces: Option<ResourceInfo>,
}

impl PolicyAdmission {
    pub(crate) fn new(
        set: Arc<PolicySet>,
        objects: Objects,
        namespaces: Option<ResourceInfo>,
    ) -> Self {
        PolicyAdmission {
            set,
            objects,
            namespaces,
        }
    }

    /// The policies that see this request, in order.
    async fn matching(
        &self,
        attrs: &AdmissionAttributes<'_>,
        object: Option<&Value>,
        mutating: bool,
    ) -> ApiResult<Vec<Arc<ActivePolicy>>> {
        // Policies never judge policies: a bad one must stay removable.
        if BuiltinKind::of(attrs.resource) == BuiltinKind::AdmissionPolicy {
            return Ok(Vec::new());
        }
        let mut namespace_labels = None;
        let mut out = Vec::new();
        for p in self.set.snapshot().values() {
            if p.spec.is_mutating() != mutating || !static_match(p, attrs, object) {
                continue;
            }
            if p.spec.namespace_selector.is_some() {
                if namespace_labels.is_none() {
                    namespace_labels = Some(self.namespace_labels(attrs, object).await?);
                }
                let selected = match &namespace_labels {
                    Some(Some(labels)) => {
                        resource::selects(p.spec.namespace_selector.as_ref(), labels)
                    }
                    // Cluster-scoped objects are not in a namespace: the selector does not apply.
                    _ => true,
                };
                if !selected {
                    continue;
                }
            }
            out.push(p.clone());
        }
        Ok(out)
    }

    /// The labels of the namespace the object is in (or of the namespace being written).
    async fn namespace_labels(
        &self,
        attrs: &AdmissionAttributes<'_>,
        object: Option<&Value>,
    ) -> ApiResult<Option<BTreeMap<String, String>>> {
        if BuiltinKind::of(attrs.resource) == BuiltinKind::Namespace {
            return Ok(object
                .or(attrs.old_object)
                .map(crate::label_selector::labels_of));
        }
        let (Some(ns), Some(r)) = (&attrs.namespace, &self.namespaces) else {
            return Ok(None);
        };
        let found = self.objects.get(r, None, ns, Read::Local).await?;
        Ok(Some(
            found
                .as_ref()
                .map(crate::label_selector::labels_of)
                .unwrap_or_default(),
        ))
    }
}

#[async_trait::async_trait]
impl AdmissionHook for PolicyAdmission {
    async fn mutate(
        &self,
        attrs: &AdmissionAttributes<'_>,
        object: &mut Value,
    ) -> ApiResult<Vec<String>> {
        let mut warnings = Vec::new();
        let policies = self.matching(attrs, Some(object), true).await?;
        let mut last_change = None;
        for (i, p) in policies.iter().enumerate() {
            if mutate_once(p, attrs, object, &mut warnings).await? {
                last_change = Some(i);
            }
        }
        // Upstream's reinvocation: one more round for the policies that asked for it and ran
        // before the last change, so they see what later policies did.
        if let Some(last) = last_change {
            for p in policies[..last]
                .iter()
                .filter(|p| p.spec.reinvoke_if_needed())
            {
                mutate_once(p, attrs, object, &mut warnings).await?;
            }
        }
        Ok(warnings)
    }

    async fn validate(
        &self,
        attrs: &AdmissionAttributes<'_>,
        object: Option<&Value>,
    ) -> ApiResult<Vec<String>> {
        let mut warnings = Vec::new();
        for p in self.matching(attrs, object, false).await? {
            let request = request(attrs, object);
            let answer = p.call(Call::Validate, &request).await;
            judge(&p, answer, &mut warnings)?;
        }
        Ok(warnings)
    }
}

/// Runs one mutating policy and applies its patch; returns whether the object changed.
async fn mutate_once(
    p: &ActivePolicy,
    attrs: &AdmissionAttributes<'_>,
    object: &mut Value,
    warnings: &mut Vec<String>,
) -> ApiResult<bool> {
    let request = request(attrs, Some(object));
    let answer = p.call(Call::Mutate, &request).await;
    let Some(patch) = judge(p, answer, warnings)? else {
        return Ok(false);
    };
    match apply_patch(attrs.resource, object, &patch) {
        Ok(patched) => {
            let changed = patched != *object;
            *object = patched;
            Ok(changed)
        }
        Err(why) => {
            judge(p, Err(PolicyError::BadResponse(why)), warnings)?;
            Ok(false)
        }
    }
}

/// Scope, rules and object selector: what can be decided without reading the store.
fn static_match(p: &ActivePolicy, attrs: &AdmissionAttributes<'_>, object: Option<&Value>) -> bool {
    if p.key.namespace.is_some() && p.key.namespace != attrs.namespace {
        return false;
    }
    let rules = p.spec.rules.iter().any(|rule| rule_matches(rule, attrs));
    let selected = || {
        let sel = p.spec.object_selector.as_ref();
        [object, attrs.old_object]
            .into_iter()
            .flatten()
            .any(|o| resource::selects(sel, &crate::label_selector::labels_of(o)))
    };
    rules && (p.spec.object_selector.is_none() || selected())
}

fn rule_matches(rule: &resource::Rule, attrs: &AdmissionAttributes<'_>) -> bool {
    let r = attrs.resource;
    let any = |list: &[String], value: &str| list.iter().any(|v| v == "*" || v == value);
    let operation = match attrs.operation {
        AdmissionOperation::Create => "CREATE",
        AdmissionOperation::Update => "UPDATE",
        AdmissionOperation::Delete => "DELETE",
    };
    let scope = match rule.scope.as_deref() {
        Some("Cluster") => !r.namespaced,
        Some("Namespaced") => r.namespaced,
        _ => true,
    };
    let resource = rule.resources.iter().any(|pattern| {
        let (res, sub) = pattern.split_once('/').unwrap_or((pattern.as_str(), ""));
        let res_ok = res == "*" || res == r.plural;
        let sub_ok = match attrs.subresource {
            None => sub.is_empty(),
            Some(s) => sub == "*" || sub == s.name(),
        };
        res_ok && sub_ok
    });
    scope
        && resource
        && any(&rule.operations, operation)
        && any(&rule.api_groups, r.group)
        && any(&rule.api_versions, r.version)
}

/// What the policy is shown: `AdmissionReview.request`.
fn request(attrs: &AdmissionAttributes<'_>, object: Option<&Value>) -> AdmissionRequest {
    let r = attrs.resource;
    let (operation, options_kind) = match attrs.operation {
        AdmissionOperation::Create => (Operation::Create, "CreateOptions"),
        AdmissionOperation::Update => (Operation::Update, "UpdateOptions"),
        AdmissionOperation::Delete => (Operation::Delete, "DeleteOptions"),
    };
    let mut options = json!({"apiVersion": "meta.k8s.io/v1", "kind": options_kind});
    if attrs.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    AdmissionRequest {
        uid: uuid::Uuid::new_v4().to_string(),
        kind: GroupVersionKind {
            group: r.group.to_string(),
            version: r.version.to_string(),
            kind: r.kind.to_string(),
        },
        resource: GroupVersionResource {
            group: r.group.to_string(),
            version: r.version.to_string(),
            resource: r.plural.to_string(),
        },
        sub_resource: attrs.subresource.map(|s| s.name().to_string()),
        namespace: attrs.namespace.clone(),
        name: Some(attrs.name.clone()).filter(|n| !n.is_empty()),
        operation,
        user_info: attrs
            .user
            .map(|u| RequestUser {
                username: u.username.clone(),
                groups: u.groups.clone(),
            })
            .unwrap_or_default(),
        object: object.cloned(),
        old_object: attrs.old_object.cloned(),
        dry_run: attrs.dry_run,
        options: Some(options),
    }
}

/// Turns a policy's answer into the request's fate: `Err` stops the request; otherwise the
/// patch to apply, if any. Monitor mode turns every refusal into a warning.
fn judge(
    p: &ActivePolicy,
    answer: Result<super::PolicyResponse, PolicyError>,
    warnings: &mut Vec<String>,
) -> ApiResult<Option<json_patch::Patch>> {
    let name = p.key.display();
    match answer {
        Ok(resp) => {
            warnings.extend(
                resp.warnings
                    .iter()
                    .map(|w| format!("admission policy \"{name}\": {w}")),
            );
            if !resp.allowed {
                let message = resp.message.unwrap_or_else(|| "no reason given".into());
                if p.monitor() {
                    warnings.push(format!(
                        "admission policy \"{name}\" (monitor mode) would deny the request: {message}"
                    ));
                    return Ok(None);
                }
                return Err(denial(&name, resp.code, &message));
            }
            if p.monitor() && resp.patch.is_some() {
                warnings.push(format!(
                    "admission policy \"{name}\" (monitor mode) would change the object"
                ));
                return Ok(None);
            }
            Ok(resp.patch)
        }
        Err(e) => {
            tracing::warn!(policy = %name, error = %e, "admission policy failed");
            match (p.spec.failure_policy(), p.monitor()) {
                (FailurePolicy::Fail, false) => Err(ApiError::internal(format!(
                    "admission policy \"{name}\" failed (failurePolicy Fail): {e}"
                ))),
                _ => {
                    warnings.push(format!(
                        "admission policy \"{name}\" failed and was ignored: {e}"
                    ));
                    Ok(None)
                }
            }
        }
    }
}

fn denial(name: &str, code: Option<u16>, message: &str) -> ApiError {
    let mut err = ApiError::forbidden(format!(
        "admission policy \"{name}\" denied the request: {message}"
    ));
    if let Some(code) = code.and_then(|c| StatusCode::from_u16(c).ok()) {
        err.code = code;
        err.reason = match code.as_u16() {
            400 => "BadRequest",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            422 => "Invalid",
            429 => "TooManyRequests",
            c if c >= 500 => "InternalError",
            _ => "Forbidden",
        };
    }
    err
}

/// Applies a mutating policy's patch; the result must still be the same object, of its kind.
fn apply_patch(
    r: &ResourceInfo,
    object: &Value,
    patch: &json_patch::Patch,
) -> Result<Value, String> {
    let mut doc = object.clone();
    json_patch::patch(&mut doc, patch).map_err(|e| format!("its patch does not apply: {e}"))?;
    for pointer in [
        "/apiVersion",
        "/kind",
        "/metadata/name",
        "/metadata/namespace",
        "/metadata/uid",
    ] {
        if doc.pointer(pointer) != object.pointer(pointer) {
            return Err(format!(
                "its patch changes {pointer}, which a policy may not change"
            ));
        }
    }
    (r.roundtrip)(doc).map_err(|e| format!("its patch makes the object invalid: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::{Registry, Subresource};
    use resource::Rule;

    fn attrs<'a>(
        r: &'a ResourceInfo,
        sub: Option<Subresource>,
        op: AdmissionOperation,
    ) -> AdmissionAttributes<'a> {
        AdmissionAttributes {
            resource: r,
            subresource: sub,
            operation: op,
            namespace: Some("default".into()),
            name: "x".into(),
            old_object: None,
            user: None,
            dry_run: false,
        }
    }

    fn rule(resources: &[&str], ops: &[&str], scope: Option<&str>) -> Rule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Rule {
            api_groups: v(&["*"]),
            api_versions: v(&["*"]),
            resources: v(resources),
            operations: v(ops),
            scope: scope.map(str::to_string),
        }
    }

    #[test]
    fn rules_match_resources_subresources_operations_and_scope() {
        let reg = Registry::builtin();
        let pods = reg.find("", "v1", "pods").expect("pods");
        let nodes = reg.find("", "v1", "nodes").expect("nodes");
        let create = attrs(pods, None, AdmissionOperation::Create);
        let status = attrs(pods, Some(Subresource::Status), AdmissionOperation::Update);
        assert!(rule_matches(&rule(&["pods"], &["CREATE"], None), &create));
        assert!(!rule_matches(&rule(&["pods"], &["UPDATE"], None), &create));
        assert!(!rule_matches(&rule(&["pods"], &["*"], None), &status));
        assert!(rule_matches(&rule(&["pods/status"], &["*"], None), &status));
        assert!(rule_matches(&rule(&["*/*"], &["*"], None), &status));
        assert!(rule_matches(&rule(&["*"], &["*"], None), &create));
        assert!(!rule_matches(
            &rule(&["*"], &["*"], Some("Cluster")),
            &create
        ));
        let node = attrs(nodes, None, AdmissionOperation::Delete);
        assert!(rule_matches(
            &rule(&["*"], &["DELETE"], Some("Cluster")),
            &node
        ));
        let mut core_only = rule(&["*"], &["*"], None);
        core_only.api_groups = vec!["apps".into()];
        assert!(!rule_matches(&core_only, &create));
    }

    #[test]
    fn denials_carry_the_policy_code() {
        let e = denial("p", None, "no");
        assert_eq!(e.code, StatusCode::FORBIDDEN);
        assert_eq!(e.message, "admission policy \"p\" denied the request: no");
        let e = denial("p", Some(422), "no");
        assert_eq!((e.code.as_u16(), e.reason), (422, "Invalid"));
    }

    #[test]
    fn patches_may_not_change_identity_or_break_the_type() {
        let reg = Registry::builtin();
        let pods = reg.find("", "v1", "pods").expect("pods");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
                         "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let patch = |p: Value| serde_json::from_value::<json_patch::Patch>(p).expect("patch");
        let ok = apply_patch(
            pods,
            &pod,
            &patch(json!([{"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}])),
        );
        assert_eq!(ok.expect("applies")["metadata"]["labels"]["x"], "y");
        let rename = apply_patch(
            pods,
            &pod,
            &patch(json!([{"op": "replace", "path": "/metadata/name", "value": "b"}])),
        );
        assert!(rename.is_err());
        let bad_type = apply_patch(
            pods,
            &pod,
            &patch(json!([{"op": "replace", "path": "/spec/containers", "value": 7}])),
        );
        assert!(bad_type.is_err());
        let missing = apply_patch(
            pods,
            &pod,
            &patch(json!([{"op": "remove", "path": "/nope"}])),
        );
        assert!(missing.is_err());
    }
}
