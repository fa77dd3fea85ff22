//! Group commit: transactions that arrive while the previous log entry is being written share
//! the next one.
//!
//! openraft 0.9 appends, and so fsyncs, every client write on its own, which would cap the
//! store at one fsync per transaction however many clients write at once. The batcher hands
//! raft one entry at a time: a lone writer's transaction goes alone (a channel hop is all it
//! costs), and under load everything that queued up during the last fsync goes together as a
//! `Request::Batch`. Each transaction stays atomic, gets its own revision and its own result;
//! arrival order is log order.

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use super::raft::{Raft, Request, Response};
use super::types::{Op, StoreError, TxnOutcome};

/// At most this many transactions per log entry, and about this many bytes of values, so one
/// entry stays small enough to append, replicate and apply promptly.
const MAX_TXNS_PER_ENTRY: usize = 512;
const MAX_BYTES_PER_ENTRY: usize = 8 << 20;
/// Transactions waiting for their entry; senders wait when it is full (back-pressure).
const QUEUE_DEPTH: usize = 8192;

type Reply = oneshot::Sender<Result<TxnOutcome, StoreError>>;

struct Pending {
    ops: Vec<Op>,
    bytes: usize,
    reply: Reply,
}

/// The front of the write path; cheap to share.
pub(crate) struct Batcher {
    queue: mpsc::Sender<Pending>,
}

fn shut_down() -> StoreError {
    StoreError::Unavailable("the store is shut down".into())
}

impl Batcher {
    /// Starts the task that feeds `raft`; it ends when the batcher is dropped.
    pub(crate) fn start(raft: Raft) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(feed(raft, rx));
        Batcher { queue }
    }

    /// Commits `ops` as one transaction and returns its outcome once it is applied.
    pub(crate) async fn submit(&self, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let bytes = ops.iter().map(op_bytes).sum();
        self.queue
            .send(Pending { ops, bytes, reply })
            .await
            .map_err(|_| shut_down())?;
        outcome.await.map_err(|_| shut_down())?
    }
}

fn op_bytes(op: &Op) -> usize {
    match op {
        Op::Create { key, value } | Op::Update { key, value, .. } => key.len() + value.len(),
        Op::Delete { key, .. } => key.len(),
    }
}

async fn feed(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < MAX_TXNS_PER_ENTRY && bytes < MAX_BYTES_PER_ENTRY {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.bytes;
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let span = tracing::debug_span!("raft_entry", txns = batch.len(), bytes);
        commit(&raft, batch).instrument(span).await;
    }
}

/// Writes one entry for `batch` and answers every transaction in it.
async fn commit(raft: &Raft, batch: Vec<Pending>) {
    let (ops, replies): (Vec<Vec<Op>>, Vec<Reply>) =
        batch.into_iter().map(|p| (p.ops, p.reply)).unzip();
    let request = match <[Vec<Op>; 1]>::try_from(ops) {
        Ok([one]) => Request::Txn(one),
        Err(many) => Request::Batch(many),
    };
    let results: Result<Response, StoreError> = raft
        .client_write(request)
        .await
        .map(|r| r.data)
        .map_err(super::raft_error);
    match results {
        Ok(results) if results.len() == replies.len() => {
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that gave up (its request was cancelled) needs no answer.
                let _ = reply.send(result.map_err(StoreError::from));
            }
        }
        Ok(results) => {
            let e = format!(
                "raft answered {} results for {} transactions",
                results.len(),
                replies.len()
            );
            tracing::error!("{e}");
            answer_all(replies, &StoreError::Storage(e));
        }
        Err(e) => answer_all(replies, &e),
    }
}

/// Gives every transaction of a failed entry the same error.
fn answer_all(replies: Vec<Reply>, e: &StoreError) {
    for reply in replies {
        let copy = match e {
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            other => StoreError::Storage(other.to_string()),
        };
        let _ = reply.send(Err(copy));
    }
}
