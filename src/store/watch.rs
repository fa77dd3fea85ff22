//! Watches: replay from the `events` table, then follow the live broadcast.
//!
//! The state machine publishes each revision's events on one `tokio::sync::broadcast` channel
//! after the redb commit. A watcher subscribes *before* reading history, so every revision is
//! either in what it reads or arrives on the channel; duplicates are dropped by revision. A
//! watcher is a receiver plus a little state (no task of its own), which keeps thousands cheap.
//! A receiver that lags behind the channel catches up from the `events` table again.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use redb::ReadableDatabase;
use tokio::sync::broadcast;

use super::codec::decode_events;
use super::db::{get_u64, Ctx, DbSlot, EVENTS, META_COMPACTED, SM_META};
use super::types::{Revision, StoreError, WatchEvent};

/// How many revisions a catching-up watcher reads from redb at a time.
const REPLAY_PAGE: usize = 512;
/// Broadcast capacity; a watcher further behind than this replays from redb. Small in tests so
/// that the lag-and-replay path is exercised.
pub(crate) const BROADCAST_CAPACITY: usize = if cfg!(test) { 64 } else { 4096 };

/// What the state machine publishes.
#[derive(Clone, Debug)]
pub(crate) enum Published {
    /// All events of one revision.
    Events(Arc<(Revision, Vec<WatchEvent>)>),
    /// A raft snapshot replaced the state: history before this revision is gone.
    Reset(Revision),
}

/// The sending side, closed on shutdown so that watch streams end.
pub(crate) struct WatchHub {
    tx: Mutex<Option<broadcast::Sender<Published>>>,
}

impl WatchHub {
    pub(crate) fn new() -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        WatchHub {
            tx: Mutex::new(Some(tx)),
        }
    }

    pub(crate) fn publish(&self, msg: Published) {
        if let Ok(g) = self.tx.lock() {
            if let Some(tx) = g.as_ref() {
                // No receivers is fine.
                let _ = tx.send(msg);
            }
        }
    }

    pub(crate) fn subscribe(&self) -> Option<broadcast::Receiver<Published>> {
        self.tx.lock().ok()?.as_ref().map(|tx| tx.subscribe())
    }

    pub(crate) fn close(&self) {
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
    }
}

/// A stream of watch events; see `Store::watch`.
pub struct WatchStream {
    inner: Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>,
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent, StoreError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatchStream")
    }
}

struct WatchState {
    prefix: String,
    /// Every revision up to this one has been delivered (or did not match).
    last: Revision,
    rx: broadcast::Receiver<Published>,
    db: Arc<DbSlot>,
    buffer: VecDeque<WatchEvent>,
    replay: bool,
    done: bool,
}

impl WatchState {
    fn push(&mut self, rev: Revision, events: &[WatchEvent]) {
        if rev <= self.last {
            return;
        }
        self.last = rev;
        self.buffer.extend(
            events
                .iter()
                .filter(|e| e.kv.key.starts_with(&self.prefix))
                .cloned(),
        );
    }
}

/// Starts a watch; `rx` must have been subscribed before anything is read from redb.
pub(crate) fn start(
    db: Arc<DbSlot>,
    rx: broadcast::Receiver<Published>,
    prefix: &str,
    after: Revision,
) -> WatchStream {
    let st = WatchState {
        prefix: prefix.to_string(),
        last: after,
        rx,
        db,
        buffer: VecDeque::new(),
        replay: true,
        done: false,
    };
    let s = futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(ev) = st.buffer.pop_front() {
                return Some((Ok(ev), st));
            }
            if st.done {
                return None;
            }
            if st.replay {
                match read_page(st.db.clone(), st.last).await {
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                    Ok(page) => {
                        let more = page.len() == REPLAY_PAGE;
                        for (rev, events) in page {
                            st.push(rev, &events);
                        }
                        st.replay = more;
                    }
                }
                continue;
            }
            match st.rx.recv().await {
                Ok(Published::Events(e)) => st.push(e.0, &e.1),
                Ok(Published::Reset(rev)) => {
                    if rev > st.last {
                        st.done = true;
                        let err = StoreError::Compacted {
                            requested: st.last,
                            compacted: rev,
                        };
                        return Some((Err(err), st));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, after = st.last, "watcher lagged; replaying");
                    st.replay = true;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    WatchStream { inner: Box::pin(s) }
}

type Page = Vec<(Revision, Vec<WatchEvent>)>;

/// Reads up to `REPLAY_PAGE` revisions after `after` from the events table.
async fn read_page(db: Arc<DbSlot>, after: Revision) -> Result<Page, StoreError> {
    tokio::task::spawn_blocking(move || {
        let db = db.get()?;
        let txn = db.begin_read().ctx("begin read")?;
        let meta = txn.open_table(SM_META).ctx("open sm_meta")?;
        let compacted = get_u64(&meta, META_COMPACTED)?;
        if after < compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted,
            });
        }
        let events = txn.open_table(EVENTS).ctx("open events")?;
        let mut out = Vec::new();
        for item in events
            .range((after.saturating_add(1))..)
            .ctx("range events")?
            .take(REPLAY_PAGE)
        {
            let (k, v) = item.ctx("read events")?;
            out.push((k.value(), decode_events(v.value())?));
        }
        Ok(out)
    })
    .await
    .map_err(|e| StoreError::Storage(format!("watch replay task: {e}")))?
}
