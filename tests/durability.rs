//! Durability: a kill -9 loses nothing acknowledged, watches resume across restarts, compacted
//! history answers 410, and snapshots restore the same objects.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::Cluster;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name }, "data": { "n": name } }))
        .expect("configmap")
}

async fn create_many(api: &Api<ConfigMap>, prefix: &str, count: usize) {
    let mut pending = futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let name = format!("{prefix}-{i:04}");
            async move { api.create(&PostParams::default(), &configmap(&name)).await }
        })
        .buffer_unordered(16);
    while let Some(r) = pending.next().await {
        r.expect("create");
    }
}

async fn versions(api: &Api<ConfigMap>) -> (BTreeMap<String, String>, String) {
    let list = api.list(&ListParams::default()).await.expect("list");
    let map = list
        .items
        .into_iter()
        .map(|c| {
            (
                c.metadata.name.unwrap_or_default(),
                c.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect();
    (map, list.metadata.resource_version.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_loses_nothing_and_watch_resumes() {
    let mut c = Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    create_many(&api, "first", 500).await;
    let (_, resume_from) = versions(&api).await;
    create_many(&api, "second", 500).await;
    let (before, _) = versions(&api).await;
    assert_eq!(before.len(), 1000);

    c.kill();
    c.restart();
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    let (after, _) = versions(&api).await;
    assert_eq!(
        after, before,
        "every object is back with the same resourceVersion"
    );

    // A watch from the revision seen before the crash replays exactly what came after it.
    let mut stream = api
        .watch(&WatchParams::default().timeout(30), &resume_from)
        .await
        .expect("watch")
        .boxed();
    let mut added = Vec::new();
    while added.len() < 500 {
        match tokio::time::timeout(Duration::from_secs(20), stream.next()).await {
            Ok(Some(Ok(WatchEvent::Added(cm)))) => added.push(cm.metadata.name.unwrap_or_default()),
            other => panic!(
                "unexpected watch item after {} events: {other:?}",
                added.len()
            ),
        }
    }
    added.sort();
    let expected: Vec<String> = (0..500).map(|i| format!("second-{i:04}")).collect();
    assert_eq!(added, expected, "no gaps, no duplicates");
    c.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_compacted_history_is_gone() {
    let c = Cluster::start_with(&["--no-agent", "--history-revisions", "10"]);
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    api.create(&PostParams::default(), &configmap("churn"))
        .await
        .expect("create");
    for i in 0..60 {
        api.patch(
            "churn",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "n": i.to_string() } })),
        )
        .await
        .expect("patch");
    }
    let mut stream = api
        .watch(&WatchParams::default(), "2")
        .await
        .expect("watch call")
        .boxed();
    match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        Ok(Some(Ok(WatchEvent::Error(status)))) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected a 410 Expired watch error, got {other:?}"),
    }
    // A list at a compacted exact revision is gone too.
    let err = api
        .list(
            &ListParams::default()
                .at("2")
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .expect_err("compacted exact list");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 410 && s.reason == "Expired"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_save_and_restore_serve_the_same_objects() {
    let mut c = Cluster::start();
    let api: Api<ConfigMap> = Api::namespaced(c.client().await, "default");
    create_many(&api, "snap", 50).await;
    let (before, _) = versions(&api).await;

    // Online: the server is running, so the CLI asks it through the API.
    let online = c.dir.path().join("online.snap");
    let data = c.data_dir.to_string_lossy().to_string();
    let out = c.wkube(&[
        "snapshot",
        "save",
        online.to_str().expect("path"),
        "--data-dir",
        &data,
    ]);
    assert!(
        out.status.success(),
        "online save: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Offline: the server is stopped, so the CLI reads the data dir.
    c.stop();
    let offline = c.dir.path().join("offline.snap");
    let out = c.wkube(&[
        "snapshot",
        "save",
        offline.to_str().expect("path"),
        "--data-dir",
        &data,
    ]);
    assert!(
        out.status.success(),
        "offline save: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    for snap in [online, offline] {
        let dir = tempfile::tempdir().expect("tempdir");
        let restored = dir.path().join("restored");
        let out = c.wkube(&[
            "snapshot",
            "restore",
            snap.to_str().expect("path"),
            "--data-dir",
            restored.to_str().expect("path"),
        ]);
        assert!(
            out.status.success(),
            "restore: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r = Cluster::start_on(dir, restored, &["--no-agent"]);
        let api: Api<ConfigMap> = Api::namespaced(r.client().await, "default");
        let (after, _) = versions(&api).await;
        assert_eq!(
            after, before,
            "restored objects keep their resourceVersions"
        );
        // The restored cluster takes writes.
        api.create(&PostParams::default(), &configmap("after-restore"))
            .await
            .expect("write");
    }
}
