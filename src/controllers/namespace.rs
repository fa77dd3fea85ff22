//! Namespace lifecycle: a namespace being deleted is emptied, then released.
//!
//! `DELETE /api/v1/namespaces/x` only marks the namespace (deletionTimestamp, phase
//! Terminating) because its `spec.finalizers` holds `kubernetes`. This loop deletes everything
//! in such a namespace and, once nothing is left, drops that finalizer so the namespace goes.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::api::object;
use crate::api::registry::ResourceInfo;
use crate::api::rest::{DeleteOptions, Rest, WriteOptions};
use crate::api::storage::{list_prefix, ListQuery};
use crate::store::Read;

/// How often terminating namespaces are re-examined when nothing else happens.
const RESYNC: Duration = Duration::from_secs(2);

pub async fn run(rest: Rest) {
    let Some(namespaces) = rest.registry().find("", "v1", "namespaces").cloned() else {
        warn!("namespaces are not served; namespace controller not started");
        return;
    };
    let prefix = list_prefix(&namespaces, None);
    loop {
        let store = rest.objects().store().clone();
        let mut changes = match store.watch(&prefix, store.current_revision()).await {
            Ok(w) => w,
            Err(crate::store::StoreError::Unavailable(_)) => {
                debug!("store closed; namespace controller stops");
                return;
            }
            Err(e) => {
                warn!(error = %e, "namespace controller cannot watch; retrying");
                tokio::time::sleep(RESYNC).await;
                continue;
            }
        };
        loop {
            sync_all(&rest, &namespaces).await;
            tokio::select! {
                next = changes.next() => match next {
                    Some(Ok(_)) => {}
                    // The watch ended (compaction or shutdown): start a new one.
                    Some(Err(_)) | None => break,
                },
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }
}

async fn sync_all(rest: &Rest, namespaces: &ResourceInfo) {
    let all = |_: &Value| true;
    let page = rest
        .objects()
        .list(ListQuery {
            prefix: list_prefix(namespaces, None),
            read: Read::Local,
            limit: None,
            continue_token: None,
            filter: &all,
            filtered: false,
        })
        .await;
    let Ok(page) = page else { return };
    for ns in page.items.iter().filter(|n| object::is_deleting(n)) {
        if let Err(e) = finalize(rest, namespaces, ns).await {
            debug!(namespace = object::name(ns), error = %e, "namespace not finalized yet");
        }
    }
}

/// Deletes what is left in a terminating namespace; releases it once empty.
#[tracing::instrument(skip_all, fields(namespace = object::name(ns)))]
async fn finalize(rest: &Rest, namespaces: &ResourceInfo, ns: &Value) -> Result<(), String> {
    let name = object::name(ns).unwrap_or_default().to_string();
    let mut remaining = 0usize;
    let resources: Vec<ResourceInfo> = rest
        .registry()
        .resources()
        .iter()
        .filter(|r| r.namespaced)
        .cloned()
        .collect();
    for r in &resources {
        let all = |_: &Value| true;
        let page = rest
            .objects()
            .list(ListQuery {
                prefix: list_prefix(r, Some(&name)),
                read: Read::Linearizable,
                limit: None,
                continue_token: None,
                filter: &all,
                filtered: false,
            })
            .await
            .map_err(|e| e.to_string())?;
        for obj in page.items {
            if object::is_deleting(&obj) {
                remaining += 1;
                continue;
            }
            let obj_name = object::name(&obj).unwrap_or_default().to_string();
            match rest
                .delete(r, Some(&name), &obj_name, &DeleteOptions::default())
                .await
            {
                // Marked for a graceful or finalized deletion: still there for now.
                Ok(last) if object::is_deleting(&last) => remaining += 1,
                Ok(_) => {}
                Err(e) if e.reason == "NotFound" => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    if remaining > 0 {
        return Err(format!("{remaining} objects still being deleted"));
    }
    let mut released = ns.clone();
    released["spec"]["finalizers"] = Value::Array(Vec::new());
    rest.update(
        namespaces,
        None,
        &name,
        released,
        None,
        &WriteOptions::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    info!("namespace emptied and removed");
    Ok(())
}
