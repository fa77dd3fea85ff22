//! The MVCC key space (like etcd's): latest values, superseded versions, per-revision events.
//!
//! Everything here is deterministic and runs inside one redb transaction, so every replica that
//! applies the same log computes the same revisions, outcomes and compactions.

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::{ReadableTable, Table, WriteTransaction};

use super::codec::{encode_events, HistoryRecord, KvRecord};
use super::db::{
    get_json, get_u64, json, Ctx, EVENTS, HISTORY, KV, META_COMPACTED, META_LAST_APPLIED,
    META_MEMBERSHIP, META_REVISION, SM_META,
};
use super::raft::{LogId, StoredMembership, TxnError, TxnResult};
use super::types::{
    EventKind, KeyValue, Op, OpOutcome, Revision, StoreError, TxnOutcome, WatchEvent,
};

/// The state machine's counters and raft pointers, committed together with the data.
#[derive(Debug, Clone, Default)]
pub(crate) struct SmMeta {
    pub(crate) revision: Revision,
    pub(crate) compacted: Revision,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

pub(crate) fn read_meta<T>(t: &T) -> Result<SmMeta, StoreError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    Ok(SmMeta {
        revision: get_u64(t, META_REVISION)?,
        compacted: get_u64(t, META_COMPACTED)?,
        last_applied: get_json::<_, Option<LogId>>(t, META_LAST_APPLIED)?.flatten(),
        membership: get_json(t, META_MEMBERSHIP)?.unwrap_or_default(),
    })
}

/// The state machine tables opened in one write transaction.
pub(crate) struct SmTables<'t> {
    pub(crate) kv: Table<'t, &'static str, &'static [u8]>,
    pub(crate) history: Table<'t, (&'static str, u64), &'static [u8]>,
    pub(crate) events: Table<'t, u64, &'static [u8]>,
    pub(crate) meta: Table<'t, &'static str, &'static [u8]>,
}

/// The result of applying one transaction.
pub(crate) struct TxnApplied {
    pub(crate) response: TxnResult,
    /// The events of the new revision (None if the transaction failed or was empty).
    pub(crate) events: Option<(Revision, Vec<WatchEvent>)>,
}

impl<'t> SmTables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(SmTables {
            kv: txn.open_table(KV).ctx("open kv")?,
            history: txn.open_table(HISTORY).ctx("open history")?,
            events: txn.open_table(EVENTS).ctx("open events")?,
            meta: txn.open_table(SM_META).ctx("open sm_meta")?,
        })
    }

    pub(crate) fn write_meta(&mut self, m: &SmMeta) -> Result<(), StoreError> {
        let t = &mut self.meta;
        t.insert(META_REVISION, m.revision.to_le_bytes().as_slice())
            .ctx("write revision")?;
        t.insert(META_COMPACTED, m.compacted.to_le_bytes().as_slice())
            .ctx("write compacted")?;
        t.insert(META_LAST_APPLIED, json(&m.last_applied)?.as_slice())
            .ctx("write last_applied")?;
        t.insert(META_MEMBERSHIP, json(&m.membership)?.as_slice())
            .ctx("write membership")?;
        Ok(())
    }

    fn load(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        match self.kv.get(key).ctx("read kv")? {
            None => Ok(None),
            Some(v) => Ok(Some(KvRecord::decode(v.value())?.into_kv(key.to_string()))),
        }
    }

    /// Checks and applies `ops` at `meta.revision + 1`. A failed check changes nothing and
    /// consumes no revision; so does an empty transaction.
    pub(crate) fn apply_txn(
        &mut self,
        meta: &mut SmMeta,
        ops: &[Op],
    ) -> Result<TxnApplied, StoreError> {
        let rev = meta.revision + 1;
        // Phase 1: evaluate every op against the state as left by the previous ops.
        let mut overlay: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            let key = op.key();
            let cur = match overlay.get(key) {
                Some(v) => v.clone(),
                None => self.load(key)?,
            };
            let check = |cur: &Option<KeyValue>, expected: &Option<Revision>| match (cur, expected)
            {
                (None, _) => Err(TxnError::NotFound(key.to_string())),
                (Some(c), Some(e)) if c.mod_revision != *e => Err(TxnError::Conflict {
                    key: key.to_string(),
                    expected: *e,
                    current: c.mod_revision,
                }),
                (Some(c), _) => Ok(c.clone()),
            };
            let result = match op {
                Op::Create { value, .. } => match cur {
                    Some(_) => Err(TxnError::AlreadyExists(key.to_string())),
                    None => {
                        let kv = KeyValue {
                            key: key.to_string(),
                            value: value.clone(),
                            create_revision: rev,
                            mod_revision: rev,
                        };
                        Ok((EventKind::Put, kv.clone(), None, Some(kv)))
                    }
                },
                Op::Update {
                    value, expected, ..
                } => check(&cur, expected).map(|prev| {
                    let kv = KeyValue {
                        key: key.to_string(),
                        value: value.clone(),
                        create_revision: prev.create_revision,
                        mod_revision: rev,
                    };
                    (EventKind::Put, kv.clone(), Some(prev), Some(kv))
                }),
                Op::Delete { expected, .. } => check(&cur, expected).map(|prev| {
                    let kv = KeyValue {
                        mod_revision: rev,
                        ..prev.clone()
                    };
                    (EventKind::Delete, kv, Some(prev), None)
                }),
            };
            let (kind, kv, prev, after) = match result {
                Ok(x) => x,
                Err(e) => {
                    return Ok(TxnApplied {
                        response: Err(e),
                        events: None,
                    })
                }
            };
            overlay.insert(key.to_string(), after);
            outcomes.push(OpOutcome {
                kv: kv.clone(),
                prev: prev.clone(),
            });
            events.push(WatchEvent { kind, kv, prev });
        }
        if ops.is_empty() {
            return Ok(TxnApplied {
                response: Ok(TxnOutcome {
                    revision: meta.revision,
                    ops: vec![],
                }),
                events: None,
            });
        }

        // Phase 2: write. The version each touched key had before this revision moves to
        // history, so that reads at older revisions still find it.
        for (key, after) in &overlay {
            let before = self.load(key)?;
            if let Some(b) = &before {
                let rec = HistoryRecord::Put {
                    create_revision: b.create_revision,
                    value: b.value.clone(),
                };
                self.history
                    .insert((key.as_str(), b.mod_revision), rec.encode().as_slice())
                    .ctx("write history")?;
            }
            match after {
                Some(kv) => {
                    let rec = KvRecord {
                        create_revision: kv.create_revision,
                        mod_revision: kv.mod_revision,
                        value: kv.value.clone(),
                    };
                    self.kv
                        .insert(key.as_str(), rec.encode().as_slice())
                        .ctx("write kv")?;
                }
                None if before.is_some() => {
                    self.kv.remove(key.as_str()).ctx("delete kv")?;
                    self.history
                        .insert(
                            (key.as_str(), rev),
                            HistoryRecord::Tombstone.encode().as_slice(),
                        )
                        .ctx("write tombstone")?;
                }
                None => {}
            }
        }
        self.events
            .insert(rev, encode_events(&events).as_slice())
            .ctx("write events")?;
        meta.revision = rev;
        Ok(TxnApplied {
            response: Ok(TxnOutcome {
                revision: rev,
                ops: outcomes,
            }),
            events: Some((rev, events)),
        })
    }

    /// Compacts to `to` if that moves the compaction point forward and is not in the future:
    /// drops events at or below `to` and every history version that no read at a revision
    /// `>= to` can see. Returns whether anything was done.
    pub(crate) fn compact(&mut self, meta: &mut SmMeta, to: Revision) -> Result<bool, StoreError> {
        if to <= meta.compacted || to > meta.revision {
            return Ok(false);
        }
        let span = tracing::info_span!("compact", from = meta.compacted, to);
        let _g = span.enter();
        self.events
            .retain_in(..=to, |_, _| false)
            .ctx("compact events")?;

        let mut doomed: Vec<(String, u64)> = Vec::new();
        {
            // Versions of one key, in revision order: (revision, is_tombstone).
            let mut group: Vec<(u64, bool)> = Vec::new();
            let mut group_key: Option<String> = None;
            let mut iter = self.history.iter().ctx("scan history")?;
            loop {
                let next = match iter.next() {
                    None => None,
                    Some(item) => {
                        let (k, v) = item.ctx("scan history")?;
                        let (key, rev) = k.value();
                        let tomb =
                            matches!(HistoryRecord::decode(v.value())?, HistoryRecord::Tombstone);
                        Some((key.to_string(), rev, tomb))
                    }
                };
                let same = matches!((&next, &group_key), (Some((k, _, _)), Some(g)) if k == g);
                if !same {
                    if let Some(g) = group_key.take() {
                        self.doom_versions(&g, &group, to, &mut doomed)?;
                    }
                    group.clear();
                }
                match next {
                    None => break,
                    Some((key, rev, tomb)) => {
                        group_key = Some(key);
                        group.push((rev, tomb));
                    }
                }
            }
        }
        for (key, rev) in &doomed {
            self.history
                .remove((key.as_str(), *rev))
                .ctx("compact history")?;
        }
        tracing::info!(removed_versions = doomed.len(), "compacted");
        meta.compacted = to;
        Ok(true)
    }

    /// Decides which history versions of `key` are invisible at every revision `>= to`.
    fn doom_versions(
        &self,
        key: &str,
        versions: &[(u64, bool)],
        to: Revision,
        doomed: &mut Vec<(String, u64)>,
    ) -> Result<(), StoreError> {
        // The version visible at `to` is the last one at or below it; older ones are dead.
        let Some(j) = versions.iter().rposition(|(r, _)| *r <= to) else {
            return Ok(());
        };
        let (_, tomb_j) = versions[j];
        // It is dead too if it is a tombstone (absence needs no record), or if it was
        // superseded by the live value in `kv` which itself is at or below `to`.
        let dead_j = tomb_j
            || (j + 1 == versions.len()
                && match self.kv.get(key).ctx("read kv")? {
                    Some(v) => KvRecord::decode(v.value())?.mod_revision <= to,
                    None => false,
                });
        let end = if dead_j { j + 1 } else { j };
        doomed.extend(versions[..end].iter().map(|(r, _)| (key.to_string(), *r)));
        Ok(())
    }
}

/// Reads one key, at the latest revision (`at = None`) or as of revision `at`.
pub(crate) fn get_at<K, H>(
    kv: &K,
    history: &H,
    key: &str,
    at: Option<Revision>,
) -> Result<Option<KeyValue>, StoreError>
where
    K: ReadableTable<&'static str, &'static [u8]>,
    H: ReadableTable<(&'static str, u64), &'static [u8]>,
{
    if let Some(v) = kv.get(key).ctx("read kv")? {
        let rec = KvRecord::decode(v.value())?;
        match at {
            Some(r) if rec.mod_revision > r => {}
            _ => return Ok(Some(rec.into_kv(key.to_string()))),
        }
    }
    let Some(r) = at else { return Ok(None) };
    let mut range = history.range((key, 0u64)..=(key, r)).ctx("read history")?;
    match range.next_back() {
        None => Ok(None),
        Some(item) => {
            let (k, v) = item.ctx("read history")?;
            let (_, rev) = k.value();
            Ok(match HistoryRecord::decode(v.value())? {
                HistoryRecord::Tombstone => None,
                HistoryRecord::Put {
                    create_revision,
                    value,
                } => Some(KeyValue {
                    key: key.to_string(),
                    value,
                    create_revision,
                    mod_revision: rev,
                }),
            })
        }
    }
}

/// Keys starting with `prefix` (after `start_after`), as of `at` (None = latest), at most
/// `limit` of them (None or 0 = all), plus how many more match.
pub(crate) fn range_at<K, H>(
    kv: &K,
    history: &H,
    prefix: &str,
    start_after: Option<&str>,
    limit: Option<usize>,
    at: Option<Revision>,
) -> Result<(Vec<KeyValue>, u64), StoreError>
where
    K: ReadableTable<&'static str, &'static [u8]>,
    H: ReadableTable<(&'static str, u64), &'static [u8]>,
{
    let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    // Where to start: after `start_after` if that is past the prefix, else at the prefix.
    let (start, exclusive) = match start_after {
        Some(s) if s >= prefix => (s, true),
        _ => (prefix, false),
    };
    let lower = if exclusive {
        Bound::Excluded(start)
    } else {
        Bound::Included(start)
    };
    let mut out = Vec::new();
    let mut remaining = 0u64;
    let mut push = |kv: KeyValue| {
        if out.len() < limit {
            out.push(kv);
        } else {
            remaining += 1;
        }
    };
    let mut kv_iter = kv
        .range::<&str>((lower, Bound::Unbounded))
        .ctx("range kv")?;
    let mut next_kv = || -> Result<Option<(String, KvRecord)>, StoreError> {
        match kv_iter.next() {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.ctx("range kv")?;
                let key = k.value();
                if !key.starts_with(prefix) {
                    return Ok(None);
                }
                Ok(Some((key.to_string(), KvRecord::decode(v.value())?)))
            }
        }
    };

    let Some(at) = at else {
        // Latest state: the kv table alone.
        while let Some((key, rec)) = next_kv()? {
            push(rec.into_kv(key));
        }
        return Ok((out, remaining));
    };

    // As of `at`: merge the live keys with the keys that only history knows (deleted later).
    let mut h_iter = history.range((start, 0u64)..).ctx("range history")?;
    let mut next_h = || -> Result<Option<(String, u64, HistoryRecord)>, StoreError> {
        loop {
            match h_iter.next() {
                None => return Ok(None),
                Some(item) => {
                    let (k, v) = item.ctx("range history")?;
                    let (key, rev) = k.value();
                    if exclusive && key == start {
                        continue;
                    }
                    if !key.starts_with(prefix) {
                        return Ok(None);
                    }
                    return Ok(Some((
                        key.to_string(),
                        rev,
                        HistoryRecord::decode(v.value())?,
                    )));
                }
            }
        }
    };
    let mut cur_kv = next_kv()?;
    let mut cur_h = next_h()?;
    loop {
        let key = match (&cur_kv, &cur_h) {
            (None, None) => break,
            (Some((k, _)), None) => k.clone(),
            (None, Some((k, _, _))) => k.clone(),
            (Some((a, _)), Some((b, _, _))) => a.min(b).clone(),
        };
        let mut found = None;
        if matches!(&cur_kv, Some((k, _)) if *k == key) {
            if let Some((k, rec)) = cur_kv.take() {
                if rec.mod_revision <= at {
                    found = Some(rec.into_kv(k));
                }
            }
            cur_kv = next_kv()?;
        }
        let mut best: Option<(u64, HistoryRecord)> = None;
        while matches!(&cur_h, Some((k, _, _)) if *k == key) {
            if let Some((_, rev, rec)) = cur_h.take() {
                if rev <= at {
                    best = Some((rev, rec));
                }
            }
            cur_h = next_h()?;
        }
        if found.is_none() {
            if let Some((
                rev,
                HistoryRecord::Put {
                    create_revision,
                    value,
                },
            )) = best
            {
                found = Some(KeyValue {
                    key: key.clone(),
                    value,
                    create_revision,
                    mod_revision: rev,
                });
            }
        }
        if let Some(kv) = found {
            push(kv);
        }
    }
    Ok((out, remaining))
}
