//! Event expiry: Events older than their TTL are deleted, as the apiserver's `--event-ttl`
//! (one hour by default) does through etcd leases.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use kube::ResourceExt as _;
use serde_json::Value;
use tracing::debug;

/// How often expired events are looked for.
const PERIOD: Duration = Duration::from_secs(60);

pub async fn run(
    client: kube::Client,
    ttl: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(PERIOD.min(ttl.max(Duration::from_secs(1))));
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {
                if let Err(e) = expire(&client, ttl).await {
                    debug!(error = %e, "expiring events failed");
                }
            }
        }
    }
}

/// When an event last happened: lastTimestamp, eventTime, or its creation.
fn last_seen(event: &Value) -> Option<DateTime<Utc>> {
    [
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| event.pointer(p).and_then(Value::as_str))
    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    .map(|t| t.with_timezone(&Utc))
}

async fn expire(client: &kube::Client, ttl: Duration) -> kube::Result<()> {
    let all: Api<Event> = Api::all(client.clone());
    let cutoff = Utc::now() - chrono::Duration::from_std(ttl).unwrap_or_default();
    let mut expired = 0usize;
    for event in all.list(&ListParams::default()).await? {
        let v = serde_json::to_value(&event).unwrap_or(Value::Null);
        if last_seen(&v).is_some_and(|t| t < cutoff) {
            let api: Api<Event> =
                Api::namespaced(client.clone(), &event.namespace().unwrap_or_default());
            super::delete_background(&api, &event.name_any()).await?;
            expired += 1;
        }
    }
    if expired > 0 {
        debug!(expired, "expired old events");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_latest_time_an_event_knows_counts() {
        let e = json!({"lastTimestamp": "2026-01-02T00:00:00Z", "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(
            last_seen(&e).map(|t| t.to_rfc3339()),
            Some("2026-01-02T00:00:00+00:00".to_string())
        );
        let e = json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}});
        assert!(last_seen(&e).is_some());
        assert!(last_seen(&json!({})).is_none());
    }
}
