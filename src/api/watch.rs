//! `?watch=1`: a stream of `{"type": ..., "object": ...}` lines, fed by the store's revision log.
//!
//! Semantics follow the Kubernetes API: without a resourceVersion (or with "0") the stream opens
//! with synthetic ADDED events for the current state; with one it resumes right after it, or
//! reports `410 Expired` in an ERROR event when that history is compacted; `sendInitialEvents`
//! ends the initial state with a bookmark; selectors turn objects that stop matching into
//! DELETED events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use rand::Rng as _;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::handlers::{list_read, selector_filter, table_of, Encoding};
use super::object;
use super::query::Query;
use super::registry::ResourceInfo;
use super::selectors::{FieldSelector, LabelSelector};
use super::server::ApiState;
use super::status::{ApiError, ApiResult};
use super::storage::{general_store_error, list_prefix, ListQuery};
use super::watch_memo::{Decoded, WatchMemo};
use crate::store::{EventKind, Read, Revision, WatchEvent};

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

struct WatchSpec {
    resource: ResourceInfo,
    prefix: String,
    labels: LabelSelector,
    fields: FieldSelector,
    bookmarks: bool,
    table: bool,
    include_object: String,
    timeout: Duration,
}

impl WatchSpec {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// How the stream starts.
enum Start {
    /// Synthetic ADDED events for the state read with this consistency, then changes.
    WithState {
        read: Read,
        initial_events_end: bool,
    },
    /// Changes after this revision only.
    After(Revision),
}

pub async fn serve(
    state: Arc<ApiState>,
    r: &ResourceInfo,
    namespace: Option<String>,
    query: &Query,
    encoding: Encoding,
) -> ApiResult<Response> {
    let (labels, fields) = selector_filter(r, query)?;
    let timeout = match query.number::<u64>("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t),
        // Upstream spreads long-lived watches over 30-60 minutes so reconnects do not align.
        _ => Duration::from_secs(rand::rng().random_range(1800..3600)),
    };
    let spec = WatchSpec {
        resource: r.clone(),
        prefix: list_prefix(r, namespace.as_deref()),
        labels,
        fields,
        bookmarks: query.flag("allowWatchBookmarks")?,
        table: encoding == Encoding::Table,
        include_object: query.get("includeObject").unwrap_or("Metadata").to_string(),
        timeout,
    };
    let start = start_of(query)?;
    if let Start::WithState {
        initial_events_end: true,
        ..
    } = start
    {
        if !spec.bookmarks {
            return Err(ApiError::invalid_plain(
                "sendInitialEvents requires allowWatchBookmarks=true",
            ));
        }
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let span = tracing::debug_span!(
            "watch",
            resource = spec.resource.plural,
            prefix = spec.prefix
        );
        let _ = tracing::Instrument::instrument(run(state, spec, start, tx), span).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

fn start_of(query: &Query) -> ApiResult<Start> {
    let rv = query.get("resourceVersion").unwrap_or("");
    let send_initial = match query.get("sendInitialEvents") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        None | Some("") => None,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid value {other:?} for sendInitialEvents"
            )))
        }
    };
    if send_initial == Some(true) {
        if query.get("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::invalid_plain(
                "sendInitialEvents requires resourceVersionMatch=NotOlderThan",
            ));
        }
        let read = if rv.is_empty() {
            Read::Linearizable
        } else {
            list_read(query)?
        };
        return Ok(Start::WithState {
            read,
            initial_events_end: true,
        });
    }
    match rv {
        "" if send_initial != Some(false) => Ok(Start::WithState {
            read: Read::Linearizable,
            initial_events_end: false,
        }),
        "0" if send_initial != Some(false) => Ok(Start::WithState {
            read: Read::Local,
            initial_events_end: false,
        }),
        "" | "0" => Ok(Start::After(0)),
        v => object::parse_resource_version(v)
            .map(Start::After)
            .ok_or_else(|| ApiError::bad_request(format!("invalid resource version {v:?}"))),
    }
}

type Sink = mpsc::Sender<Result<Bytes, Infallible>>;

/// Runs one watch until the client goes away, the timeout passes, or the store ends it.
async fn run(state: Arc<ApiState>, spec: WatchSpec, start: Start, tx: Sink) -> Result<(), ()> {
    let mut writer = EventWriter {
        spec: &spec,
        tx: &tx,
        memo: &state.watch_memo,
        sent_columns: false,
    };
    let objects = state.rest.objects();
    let mut after = match start {
        Start::After(0) => objects.store().current_revision(),
        Start::After(rv) => rv,
        Start::WithState {
            read,
            initial_events_end,
        } => {
            let filter = |obj: &Value| spec.matches(obj);
            let mut token: Option<String> = None;
            let mut revision;
            loop {
                let page = objects
                    .list(ListQuery {
                        prefix: spec.prefix.clone(),
                        read,
                        limit: Some(500),
                        continue_token: token.as_deref(),
                        filter: &filter,
                        filtered: true,
                    })
                    .await;
                let page = match page {
                    Ok(p) => p,
                    Err(e) => return writer.error(e).await,
                };
                revision = page.revision;
                for obj in page.items {
                    writer.listed(obj).await?;
                }
                match page.continue_token {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
            if initial_events_end {
                writer.bookmark(revision, true).await?;
            }
            revision
        }
    };
    let mut events = match objects.store().watch(&spec.prefix, after).await {
        Ok(s) => s,
        Err(e) => return writer.error(general_store_error(e)).await,
    };
    let deadline = tokio::time::sleep(spec.timeout);
    tokio::pin!(deadline);
    let mut bookmark_tick = tokio::time::interval(BOOKMARK_INTERVAL);
    bookmark_tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut deadline => return Ok(()),
            _ = tx.closed() => return Err(()),
            _ = bookmark_tick.tick(), if spec.bookmarks => writer.bookmark(after, false).await?,
            next = events.next() => match next {
                None => return Ok(()),
                Some(Err(e)) => return writer.error(general_store_error(e)).await,
                Some(Ok(ev)) => {
                    after = ev.kv.mod_revision;
                    writer.change(ev).await?;
                }
            },
        }
    }
}

struct EventWriter<'a> {
    spec: &'a WatchSpec,
    tx: &'a Sink,
    memo: &'a WatchMemo,
    sent_columns: bool,
}

impl EventWriter<'_> {
    async fn send(&mut self, line: Value) -> Result<(), ()> {
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        self.tx.send(Ok(Bytes::from(bytes))).await.map_err(|_| ())
    }

    /// An object of the initial state, as an ADDED event.
    async fn listed(&mut self, obj: Value) -> Result<(), ()> {
        if self.spec.table {
            return self.table_event("ADDED", obj).await;
        }
        self.send(json!({ "type": "ADDED", "object": obj })).await
    }

    async fn table_event(&mut self, kind: &str, obj: Value) -> Result<(), ()> {
        let rv = object::resource_version(&obj).unwrap_or("").to_string();
        let with_columns = !self.sent_columns;
        self.sent_columns = true;
        let table = table_of(
            &self.spec.resource,
            &[obj],
            json!({ "resourceVersion": rv }),
            &self.spec.include_object,
            with_columns,
        );
        self.send(json!({ "type": kind, "object": table })).await
    }

    /// A change, sent as the shared encoding of the object (only the event type is this
    /// watcher's own).
    async fn shared_event(&mut self, kind: &str, obj: &Decoded) -> Result<(), ()> {
        if self.spec.table {
            return self.table_event(kind, obj.object.clone()).await;
        }
        let json = obj.json();
        let mut line = Vec::with_capacity(json.len() + 40);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(json);
        line.extend_from_slice(b"}\n");
        self.tx.send(Ok(Bytes::from(line))).await.map_err(|_| ())
    }

    /// Translates a store change into what this watcher sees through its selectors.
    async fn change(&mut self, ev: WatchEvent) -> Result<(), ()> {
        let Ok(obj) = self.memo.decode(&ev.kv) else {
            return Ok(());
        };
        let unfiltered = self.spec.labels.is_empty() && self.spec.fields.is_empty();
        let was = match &ev.prev {
            None => false,
            // Without selectors every version matches: no need to decode the old one.
            Some(_) if unfiltered => true,
            Some(p) => self
                .memo
                .decode(p)
                .is_ok_and(|p| self.spec.matches(&p.object)),
        };
        let is = unfiltered || self.spec.matches(&obj.object);
        let kind = match (ev.kind, was, is) {
            (EventKind::Delete, true, _) => "DELETED",
            (EventKind::Delete, false, _) => return Ok(()),
            (EventKind::Put, false, true) => "ADDED",
            (EventKind::Put, true, true) => "MODIFIED",
            (EventKind::Put, true, false) => "DELETED",
            (EventKind::Put, false, false) => return Ok(()),
        };
        self.shared_event(kind, &obj).await
    }

    async fn bookmark(&mut self, revision: Revision, initial_events_end: bool) -> Result<(), ()> {
        let mut metadata = json!({ "resourceVersion": revision.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object = json!({
            "kind": self.spec.resource.kind,
            "apiVersion": self.spec.resource.api_version(),
            "metadata": metadata,
        });
        self.send(json!({ "type": "BOOKMARK", "object": object }))
            .await
    }

    async fn error(&mut self, err: ApiError) -> Result<(), ()> {
        self.send(json!({ "type": "ERROR", "object": err.to_status() }))
            .await
    }
}
