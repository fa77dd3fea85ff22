//! Garbage collector: cascading deletion by `metadata.ownerReferences`.
//!
//! - A dependent all of whose owners are gone (404 on a live lookup by kind and name, or a
//!   different uid) is deleted (background). A dependent with some owners gone and others
//!   still there only loses the references to the gone ones.
//! - An owner being deleted with the `foregroundDeletion` finalizer gets its dependents deleted
//!   (themselves in the foreground); once no dependent with `blockOwnerDeletion` is left, the
//!   finalizer is removed and the API server removes the owner.
//! - An owner being deleted with the `orphan` finalizer gets the references to it removed from
//!   its dependents, then the finalizer removed.
//!
//! Which kinds: a fixed list ([`KINDS`]) of the namespaced kinds the API server serves that
//! take part in ownership (workloads, pods, endpoint slices, and the config objects people
//! hang on owners). Owners of any other kind are treated as present, so nothing is deleted on
//! their account. The loop keeps a watch-fed cache (kube-runtime reflectors) of those kinds
//! and passes over it after changes (debounced) and periodically; every destructive decision
//! is confirmed against the API server first (the owner is looked up live before a dependent
//! is deleted; dependents are listed live before a finalizer is removed), and every write is
//! a precondition-guarded request, so a stale cache or a crash at any point cannot cause a
//! wrong deletion, only a later one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, Preconditions,
};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::ResourceExt as _;
use serde_json::{json, Value};
use tracing::{debug, info};

/// (group, version, kind, plural) of the kinds the collector looks at. All namespaced.
pub const KINDS: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "Pod", "pods"),
    ("apps", "v1", "ReplicaSet", "replicasets"),
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("batch", "v1", "Job", "jobs"),
    ("batch", "v1", "CronJob", "cronjobs"),
    ("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    ("", "v1", "Service", "services"),
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Secret", "secrets"),
];

/// A full pass runs at least this often.
const RESYNC: Duration = Duration::from_secs(10);
/// Changes arriving within this window are handled by one pass.
const DEBOUNCE: Duration = Duration::from_millis(150);

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

fn resources() -> Vec<ApiResource> {
    KINDS
        .iter()
        .map(|(g, v, k, p)| ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), p))
        .collect()
}

/// Runs the garbage collector until `shutdown` completes.
pub async fn run(client: kube::Client, shutdown: impl Future<Output = ()> + Send + 'static) {
    let kinds = resources();
    let changed = Arc::new(tokio::sync::Notify::new());
    let mut readers: Vec<Store<DynamicObject>> = Vec::new();
    let mut tasks = Vec::new();
    for ar in &kinds {
        let writer: Writer<DynamicObject> = Writer::new(ar.clone());
        readers.push(writer.as_reader());
        let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        let changed = changed.clone();
        let kind = ar.kind.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(_) => changed.notify_one(),
                    Err(e) => debug!(kind, error = %e, "gc watch error"),
                }
            }
        }));
    }
    let gc = Gc {
        client,
        kinds,
        readers,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let ready = futures::future::join_all(gc.readers.iter().map(|r| r.wait_until_ready()));
    tokio::select! {
        _ = &mut shutdown => {}
        _ = ready => loop {
            gc.pass().await;
            tokio::select! {
                _ = &mut shutdown => break,
                _ = changed.notified() => tokio::time::sleep(DEBOUNCE).await,
                _ = tokio::time::sleep(RESYNC) => {}
            }
        },
    }
    for t in tasks {
        t.abort();
    }
    debug!("garbage collector stopped");
}

struct Gc {
    client: kube::Client,
    kinds: Vec<ApiResource>,
    readers: Vec<Store<DynamicObject>>,
}

/// What is known of one owner of a dependent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Gone (404, or the name now belongs to an object with another uid).
    Absent,
    /// There, and not waiting for its dependents.
    Solid,
    /// Being deleted in the foreground: its dependents must go first.
    Waiting,
}

/// What to do with a dependent, given the state of each of its owners (upstream's
/// attemptToDeleteItem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependentAction {
    Keep,
    /// Delete it; in the foreground when an owner waits for it.
    Delete {
        foreground: bool,
    },
    /// Remove the references to these owner uids (other owners keep it alive).
    RemoveRefs(Vec<String>),
}

pub fn decide_dependent(owners: &[(String, OwnerState)]) -> DependentAction {
    if owners.is_empty() {
        return DependentAction::Keep;
    }
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Solid);
    let not_solid: Vec<String> = owners
        .iter()
        .filter(|(_, s)| *s != OwnerState::Solid)
        .map(|(u, _)| u.clone())
        .collect();
    if solid {
        if not_solid.is_empty() {
            DependentAction::Keep
        } else {
            DependentAction::RemoveRefs(not_solid)
        }
    } else {
        let waiting = owners.iter().any(|(_, s)| *s == OwnerState::Waiting);
        DependentAction::Delete {
            foreground: waiting,
        }
    }
}

/// The state of an owner, from the object found under its kind and name (None: 404).
pub fn owner_state(reference: &OwnerReference, found: Option<&DynamicObject>) -> OwnerState {
    match found {
        None => OwnerState::Absent,
        Some(o) if o.metadata.uid.as_deref() != Some(reference.uid.as_str()) => OwnerState::Absent,
        Some(o) if o.metadata.deletion_timestamp.is_some() && has_finalizer(o, FOREGROUND) => {
            OwnerState::Waiting
        }
        Some(_) => OwnerState::Solid,
    }
}

pub fn has_finalizer(o: &DynamicObject, f: &str) -> bool {
    o.finalizers().iter().any(|x| x == f)
}

pub fn refers_to(o: &DynamicObject, owner_uid: &str) -> bool {
    o.owner_references().iter().any(|r| r.uid == owner_uid)
}

/// Dependents that keep a foreground-deleting owner around: those with blockOwnerDeletion.
pub fn blocking<'a>(owner_uid: &str, deps: impl IntoIterator<Item = &'a DynamicObject>) -> usize {
    deps.into_iter()
        .filter(|d| {
            d.owner_references()
                .iter()
                .any(|r| r.uid == owner_uid && r.block_owner_deletion == Some(true))
        })
        .count()
}

/// A JSON patch removing one finalizer, failing if the object changed meanwhile.
pub fn remove_finalizer_patch(o: &DynamicObject, f: &str) -> json_patch::Patch {
    let kept: Vec<&String> = o.finalizers().iter().filter(|x| *x != f).collect();
    let ops = json!([
        {"op": "test", "path": "/metadata/uid", "value": o.metadata.uid},
        {"op": "test", "path": "/metadata/resourceVersion", "value": o.metadata.resource_version},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ]);
    serde_json::from_value(ops).expect("well-formed JSON patch")
}

impl Gc {
    fn kind_of(&self, api_version: &str, kind: &str) -> Option<&ApiResource> {
        self.kinds
            .iter()
            .find(|k| k.api_version == api_version && k.kind == kind)
    }

    fn api(&self, ar: &ApiResource, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, ar)
    }

    async fn pass(&self) {
        let mut all: Vec<(usize, Arc<DynamicObject>)> = Vec::new();
        for (i, r) in self.readers.iter().enumerate() {
            all.extend(r.state().into_iter().map(|o| (i, o)));
        }
        // uid -> (kind index, object). List items need not carry their kind, so the kind
        // comes from the cache they are in.
        let by_uid: HashMap<&str, (usize, &DynamicObject)> = all
            .iter()
            .filter_map(|(i, o)| o.metadata.uid.as_deref().map(|u| (u, (*i, o.as_ref()))))
            .collect();
        for (i, o) in &all {
            let ar = &self.kinds[*i];
            let res = if o.metadata.deletion_timestamp.is_some() {
                if has_finalizer(o, ORPHAN) {
                    self.orphan(ar, o).await
                } else if has_finalizer(o, FOREGROUND) {
                    self.foreground(ar, o).await
                } else {
                    Ok(())
                }
            } else if !o.owner_references().is_empty() {
                self.dependent(ar, o, &by_uid).await
            } else {
                Ok(())
            };
            if let Err(e) = res {
                debug!(kind = ar.kind, name = %o.name_any(), error = %e, "gc: will retry");
            }
        }
    }

    /// Finds the owners' states (cache first; anything not seen there is looked up live)
    /// and acts on the dependent.
    async fn dependent(
        &self,
        ar: &ApiResource,
        o: &DynamicObject,
        by_uid: &HashMap<&str, (usize, &DynamicObject)>,
    ) -> Result<(), kube::Error> {
        let ns = o.namespace().unwrap_or_default();
        let mut owners = Vec::new();
        for r in o.owner_references() {
            let Some(owner_ar) = self.kind_of(&r.api_version, &r.kind) else {
                // Not a kind we know: assume it is there.
                owners.push((r.uid.clone(), OwnerState::Solid));
                continue;
            };
            let cached = by_uid
                .get(r.uid.as_str())
                .filter(|(i, _)| std::ptr::eq(&self.kinds[*i], owner_ar))
                .map(|(_, c)| *c);
            let state = match cached {
                Some(c) if c.name_any() == r.name && c.namespace().unwrap_or_default() == ns => {
                    owner_state(r, Some(c))
                }
                _ => {
                    let found = self.api(owner_ar, &ns).get_opt(&r.name).await?;
                    owner_state(r, found.as_ref())
                }
            };
            owners.push((r.uid.clone(), state));
        }
        match decide_dependent(&owners) {
            DependentAction::Keep => Ok(()),
            DependentAction::Delete { foreground } => {
                info!(kind = ar.kind, namespace = %ns, name = %o.name_any(), foreground,
                    "gc: deleting dependent whose owners are gone or deleting");
                let mut dp = if foreground {
                    DeleteParams::foreground()
                } else {
                    DeleteParams::background()
                };
                dp.preconditions = Some(Preconditions {
                    uid: o.metadata.uid.clone(),
                    resource_version: None,
                });
                match self.api(ar, &ns).delete(&o.name_any(), &dp).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(e),
                }
            }
            DependentAction::RemoveRefs(uids) => {
                let mut refs = o.owner_references().to_vec();
                refs.retain(|r| !uids.contains(&r.uid));
                let ops = json!([
                    {"op": "test", "path": "/metadata/uid", "value": o.metadata.uid},
                    {"op": "test", "path": "/metadata/resourceVersion", "value": o.metadata.resource_version},
                    {"op": "replace", "path": "/metadata/ownerReferences", "value": refs},
                ]);
                self.json_patch(ar, &ns, &o.name_any(), ops).await
            }
        }
    }

    async fn json_patch(
        &self,
        ar: &ApiResource,
        ns: &str,
        name: &str,
        ops: Value,
    ) -> Result<(), kube::Error> {
        let patch: json_patch::Patch =
            serde_json::from_value(ops).map_err(|e| kube::Error::Service(e.to_string().into()))?;
        match self
            .api(ar, ns)
            .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every object of the known kinds in `ns` that refers to `owner_uid`, read live.
    async fn live_dependents(
        &self,
        ns: &str,
        owner_uid: &str,
    ) -> Result<Vec<(usize, DynamicObject)>, kube::Error> {
        let mut out = Vec::new();
        for (i, ar) in self.kinds.iter().enumerate() {
            let list = self.api(ar, ns).list(&ListParams::default()).await?;
            out.extend(
                list.items
                    .into_iter()
                    .filter(|d| refers_to(d, owner_uid))
                    .map(|d| (i, d)),
            );
        }
        Ok(out)
    }

    async fn remove_finalizer(
        &self,
        ar: &ApiResource,
        o: &DynamicObject,
        f: &str,
    ) -> Result<(), kube::Error> {
        let patch = remove_finalizer_patch(o, f);
        let ns = o.namespace().unwrap_or_default();
        match self
            .api(ar, &ns)
            .patch(
                &o.name_any(),
                &PatchParams::default(),
                &Patch::<()>::Json(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `orphan` finalizer: drop the references to the owner from its dependents, then the
    /// finalizer.
    async fn orphan(&self, ar: &ApiResource, owner: &DynamicObject) -> Result<(), kube::Error> {
        let ns = owner.namespace().unwrap_or_default();
        let uid = owner.metadata.uid.clone().unwrap_or_default();
        for (i, d) in self.live_dependents(&ns, &uid).await? {
            let dep_ar = &self.kinds[i];
            let patch = crate::controllers::replicaset::without_owner_patch(
                d.metadata.uid.as_deref(),
                d.metadata.resource_version.as_deref(),
                d.owner_references(),
                &uid,
            );
            let ops = serde_json::to_value(patch).unwrap_or(Value::Null);
            self.json_patch(dep_ar, &ns, &d.name_any(), ops).await?;
            info!(kind = dep_ar.kind, name = %d.name_any(), owner = %owner.name_any(), "gc: orphaned dependent");
        }
        self.remove_finalizer(ar, owner, ORPHAN).await?;
        info!(kind = ar.kind, namespace = %ns, name = %owner.name_any(), "gc: orphan finalizer removed");
        Ok(())
    }

    /// `foregroundDeletion` finalizer: delete the dependents; drop the finalizer once none
    /// with blockOwnerDeletion is left.
    async fn foreground(&self, ar: &ApiResource, owner: &DynamicObject) -> Result<(), kube::Error> {
        let ns = owner.namespace().unwrap_or_default();
        let uid = owner.metadata.uid.clone().unwrap_or_default();
        let deps = self.live_dependents(&ns, &uid).await?;
        for (i, d) in &deps {
            if d.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let dep_ar = &self.kinds[*i];
            // Another owner still there keeps it alive: only our reference goes.
            let mut others = Vec::new();
            for r in d.owner_references().iter().filter(|r| r.uid != uid) {
                let state = match self.kind_of(&r.api_version, &r.kind) {
                    None => OwnerState::Solid,
                    Some(oar) => {
                        let found = self.api(oar, &ns).get_opt(&r.name).await?;
                        owner_state(r, found.as_ref())
                    }
                };
                others.push((r.uid.clone(), state));
            }
            let mut states = others;
            states.push((uid.clone(), OwnerState::Waiting));
            match decide_dependent(&states) {
                DependentAction::Keep => {}
                DependentAction::RemoveRefs(uids) => {
                    let mut refs = d.owner_references().to_vec();
                    refs.retain(|r| !uids.contains(&r.uid));
                    let ops = json!([
                        {"op": "test", "path": "/metadata/uid", "value": d.metadata.uid},
                        {"op": "test", "path": "/metadata/resourceVersion", "value": d.metadata.resource_version},
                        {"op": "replace", "path": "/metadata/ownerReferences", "value": refs},
                    ]);
                    self.json_patch(dep_ar, &ns, &d.name_any(), ops).await?;
                }
                DependentAction::Delete { foreground } => {
                    let mut dp = if foreground {
                        DeleteParams::foreground()
                    } else {
                        DeleteParams::background()
                    };
                    dp.preconditions = Some(Preconditions {
                        uid: d.metadata.uid.clone(),
                        resource_version: None,
                    });
                    match self.api(dep_ar, &ns).delete(&d.name_any(), &dp).await {
                        Ok(_) | Err(kube::Error::Api(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        let left = blocking(&uid, deps.iter().map(|(_, d)| d));
        if left > 0 {
            debug!(kind = ar.kind, name = %owner.name_any(), left, "gc: waiting for dependents");
            return Ok(());
        }
        self.remove_finalizer(ar, owner, FOREGROUND).await?;
        info!(kind = ar.kind, namespace = %ns, name = %owner.name_any(), "gc: foreground deletion finished");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    fn oref(uid: &str, block: bool) -> OwnerReference {
        serde_json::from_value(
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
            "uid": uid, "blockOwnerDeletion": block}),
        )
        .unwrap()
    }

    #[test]
    fn dependent_decisions() {
        use OwnerState::*;
        let s = |v: &[(&str, OwnerState)]| -> Vec<(String, OwnerState)> {
            v.iter().map(|(u, s)| (u.to_string(), *s)).collect()
        };
        assert_eq!(decide_dependent(&[]), DependentAction::Keep);
        assert_eq!(decide_dependent(&s(&[("a", Solid)])), DependentAction::Keep);
        assert_eq!(
            decide_dependent(&s(&[("a", Absent)])),
            DependentAction::Delete { foreground: false }
        );
        assert_eq!(
            decide_dependent(&s(&[("a", Absent), ("b", Waiting)])),
            DependentAction::Delete { foreground: true }
        );
        assert_eq!(
            decide_dependent(&s(&[("a", Absent), ("b", Solid), ("c", Waiting)])),
            DependentAction::RemoveRefs(vec!["a".into(), "c".into()])
        );
    }

    #[test]
    fn owner_states() {
        let r = oref("u1", true);
        assert_eq!(owner_state(&r, None), OwnerState::Absent);
        let other = obj(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "rs", "uid": "u2"}}));
        assert_eq!(owner_state(&r, Some(&other)), OwnerState::Absent);
        let same = obj(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "rs", "uid": "u1"}}));
        assert_eq!(owner_state(&r, Some(&same)), OwnerState::Solid);
        let fg = obj(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "rs", "uid": "u1", "deletionTimestamp": "2024-01-01T00:00:00Z",
                "finalizers": ["foregroundDeletion"]}}));
        assert_eq!(owner_state(&r, Some(&fg)), OwnerState::Waiting);
        let orphaning = obj(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "rs", "uid": "u1", "deletionTimestamp": "2024-01-01T00:00:00Z",
                "finalizers": ["orphan"]}}));
        assert_eq!(owner_state(&r, Some(&orphaning)), OwnerState::Solid);
    }

    #[test]
    fn blocking_counts_only_block_owner_deletion() {
        let d = |uid: &str, block: bool| {
            obj(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "ownerReferences": [oref(uid, block)]}}))
        };
        let deps = [d("u1", true), d("u1", false), d("u2", true)];
        assert_eq!(blocking("u1", deps.iter()), 1);
        assert!(refers_to(&deps[1], "u1"));
        assert!(!refers_to(&deps[2], "u1"));
    }

    #[test]
    fn finalizer_patch_keeps_others() {
        let o = obj(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "rs", "uid": "u1", "resourceVersion": "9",
                "finalizers": ["example.com/x", "orphan"]}}));
        let p = serde_json::to_value(remove_finalizer_patch(&o, ORPHAN)).unwrap();
        assert_eq!(p[1]["value"], "9");
        assert_eq!(p[2]["value"], json!(["example.com/x"]));
    }

    #[test]
    fn kinds_cover_the_served_workloads() {
        let kinds: Vec<&str> = KINDS.iter().map(|k| k.2).collect();
        for k in [
            "Pod",
            "ReplicaSet",
            "Deployment",
            "Job",
            "DaemonSet",
            "StatefulSet",
            "CronJob",
            "EndpointSlice",
        ] {
            assert!(kinds.contains(&k), "{k}");
        }
        let reg = crate::api::registry::Registry::builtin();
        for (g, v, _, p) in KINDS {
            let r = reg
                .find(g, v, p)
                .unwrap_or_else(|| panic!("{p} not served"));
            assert!(r.namespaced);
        }
    }
}
