//! The same flows through the Rust `kube` client: typed CRUD and a runtime watcher.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Cluster;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "suite": "kube" } },
        "data": { "value": value },
    }))
    .expect("configmap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_crud() {
    let c = Cluster::start();
    let client = c.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("list namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.contains(&"kube-system".to_string()), "{names:?}");

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &configmap("one", "1"))
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    let got = cms.get("one").await.expect("get");
    assert_eq!(
        got.data
            .as_ref()
            .and_then(|d| d.get("value"))
            .map(String::as_str),
        Some("1")
    );

    let patched = cms
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "value": "2" } })),
        )
        .await
        .expect("merge patch");
    assert_eq!(
        patched
            .data
            .as_ref()
            .and_then(|d| d.get("value"))
            .map(String::as_str),
        Some("2")
    );
    assert_ne!(
        patched.metadata.resource_version,
        created.metadata.resource_version
    );

    // Replacing with a stale resourceVersion conflicts.
    let mut stale = created.clone();
    stale.data = Some(BTreeMap::from([("value".to_string(), "stale".to_string())]));
    let err = cms
        .replace("one", &PostParams::default(), &stale)
        .await
        .expect_err("stale replace");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );

    for i in 0..5 {
        cms.create(
            &PostParams::default(),
            &configmap(&format!("page-{i}"), "x"),
        )
        .await
        .expect("create");
    }
    // Paginated list: every page at the first page's revision, no duplicates, nothing lost.
    let mut seen = Vec::new();
    let mut params = ListParams::default().labels("suite=kube").limit(2);
    loop {
        let page = cms.list(&params).await.expect("page");
        seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "registry.local/web:1" }] }
            }
        }
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    let scale = deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 4 } })),
        )
        .await
        .expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(4));
    let d = deployments.get("web").await.expect("get deployment");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(4));

    cms.delete("one", &DeleteParams::default())
        .await
        .expect("delete");
    let err = cms.get("one").await.expect_err("deleted");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_watcher_sees_every_change() {
    let c = Cluster::start();
    let client = c.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for streaming in [false, true] {
        let prefix = if streaming { "s" } else { "l" };
        let mut config = watcher::Config::default().labels(&format!("round={prefix}"));
        if streaming {
            config = config.streaming_lists();
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let stream = watcher(cms.clone(), config);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(ev)) = stream.try_next().await {
                let _ = tx.send(ev);
            }
        });
        // Wait for the initial (empty) state before changing things.
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(watcher::Event::InitDone)) => break,
                Ok(Some(_)) => continue,
                other => panic!("watcher did not initialise: {other:?}"),
            }
        }
        for i in 0..10 {
            let mut cm = configmap(&format!("{prefix}-{i}"), "0");
            cm.metadata.labels = Some(BTreeMap::from([("round".to_string(), prefix.to_string())]));
            cms.create(&PostParams::default(), &cm)
                .await
                .expect("create");
        }
        for i in 0..10 {
            cms.patch(
                &format!("{prefix}-{i}"),
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"value": "1"}})),
            )
            .await
            .expect("patch");
        }
        for i in 0..10 {
            cms.delete(&format!("{prefix}-{i}"), &DeleteParams::default())
                .await
                .expect("delete");
        }
        let (mut applied, mut deleted) = (0, 0);
        while applied < 20 || deleted < 10 {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(watcher::Event::Apply(_))) => applied += 1,
                Ok(Some(watcher::Event::Delete(_))) => deleted += 1,
                Ok(Some(_)) => {}
                other => panic!("watch stalled at {applied} applies, {deleted} deletes: {other:?}"),
            }
        }
        assert_eq!((applied, deleted), (20, 10));
        task.abort();
    }
    // The stream of a plain watch call keeps working too.
    let mut stream = cms
        .watch(&kube::api::WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    cms.create(&PostParams::default(), &configmap("late", "x"))
        .await
        .expect("create");
    let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event in time");
    assert!(
        matches!(ev, Some(Ok(kube::api::WatchEvent::Added(_)))),
        "{ev:?}"
    );
}
