//! The snapshot format, shared by `Store::save_snapshot`, `restore_snapshot` and the raft
//! snapshots that openraft builds, sends to followers and installs.
//!
//! Layout (integers little-endian):
//! ```text
//! "WKUBESN1"  u32 header_len  header (JSON: revisions, raft pointers, key_count)
//! key_count x ( u64 key_len key  u64 create_rev  u64 mod_rev  u64 value_len value )
//! u32 crc32 of everything before it
//! ```
//! Only live keys are included, not history or events: whoever installs a snapshot starts with
//! its compaction point at the snapshot's revision. Snapshots are streamed in both directions
//! so that their size is not bounded by memory.

use std::io::{Read, Write};

use openraft::{BasicNode, SnapshotMeta};
use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::codec::{Crc32, KvRecord};
use super::db::{Ctx, KV, SM_META};
use super::mvcc::{read_meta, SmMeta, SmTables};
use super::raft::{LogId, NodeId, StoredMembership};
use super::types::{Revision, StoreError};

const MAGIC: &[u8; 8] = b"WKUBESN1";
/// Upper bound for any length field, so a damaged file fails cleanly instead of allocating.
const MAX_FIELD: u64 = 1 << 31;

/// What a snapshot says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    pub(crate) revision: Revision,
    pub(crate) compacted: Revision,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
    pub(crate) snapshot_id: String,
    pub(crate) key_count: u64,
}

impl SnapshotHeader {
    pub(crate) fn raft_meta(&self) -> SnapshotMeta<NodeId, BasicNode> {
        SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        }
    }
}

struct CrcWriter<'a> {
    w: &'a mut dyn Write,
    crc: Crc32,
}

impl Write for CrcWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.w.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.flush()
    }
}

struct CrcReader<'a> {
    r: &'a mut dyn Read,
    crc: Crc32,
}

impl Read for CrcReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

/// Writes a snapshot of the state visible in `txn` (a consistent MVCC view).
pub(crate) fn write_snapshot(
    txn: &ReadTransaction,
    w: &mut dyn Write,
) -> Result<SnapshotHeader, StoreError> {
    let meta = read_meta(&txn.open_table(SM_META).ctx("open sm_meta")?)?;
    let kv = txn.open_table(KV).ctx("open kv")?;
    let header = SnapshotHeader {
        revision: meta.revision,
        compacted: meta.compacted,
        last_applied: meta.last_applied,
        membership: meta.membership,
        snapshot_id: format!(
            "rev-{}-log-{}",
            meta.revision,
            meta.last_applied
                .map(|l| l.to_string())
                .unwrap_or_else(|| "none".into())
        ),
        key_count: kv.len().ctx("count keys")?,
    };
    let mut buffered = std::io::BufWriter::with_capacity(256 * 1024, w);
    let mut cw = CrcWriter {
        w: &mut buffered,
        crc: Crc32::new(),
    };
    let hj = serde_json::to_vec(&header).ctx("encode snapshot header")?;
    let io = |e: std::io::Error| StoreError::Storage(format!("writing snapshot: {e}"));
    cw.write_all(MAGIC).map_err(io)?;
    cw.write_all(&(hj.len() as u32).to_le_bytes()).map_err(io)?;
    cw.write_all(&hj).map_err(io)?;
    let mut written = 0u64;
    for item in kv.iter().ctx("scan kv")? {
        let (k, v) = item.ctx("scan kv")?;
        let key = k.value();
        let rec = KvRecord::decode(v.value())?;
        cw.write_all(&(key.len() as u64).to_le_bytes())
            .map_err(io)?;
        cw.write_all(key.as_bytes()).map_err(io)?;
        cw.write_all(&rec.create_revision.to_le_bytes())
            .map_err(io)?;
        cw.write_all(&rec.mod_revision.to_le_bytes()).map_err(io)?;
        cw.write_all(&(rec.value.len() as u64).to_le_bytes())
            .map_err(io)?;
        cw.write_all(&rec.value).map_err(io)?;
        written += 1;
    }
    if written != header.key_count {
        return Err(StoreError::Storage(format!(
            "snapshot wrote {written} keys, expected {}",
            header.key_count
        )));
    }
    let crc = cw.crc.finish();
    buffered.write_all(&crc.to_le_bytes()).map_err(io)?;
    buffered.flush().map_err(io)?;
    Ok(header)
}

fn read_exact(r: &mut dyn Read, n: usize) -> Result<Vec<u8>, StoreError> {
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)
        .map_err(|e| StoreError::Storage(format!("reading snapshot: {e}")))?;
    Ok(b)
}

fn read_u64(r: &mut dyn Read) -> Result<u64, StoreError> {
    let mut a = [0u8; 8];
    r.read_exact(&mut a)
        .map_err(|e| StoreError::Storage(format!("reading snapshot: {e}")))?;
    Ok(u64::from_le_bytes(a))
}

fn read_len(r: &mut dyn Read) -> Result<usize, StoreError> {
    let n = read_u64(r)?;
    if n > MAX_FIELD {
        return Err(StoreError::Storage(format!(
            "corrupt snapshot: field length {n}"
        )));
    }
    Ok(n as usize)
}

fn read_header_from(r: &mut dyn Read) -> Result<SnapshotHeader, StoreError> {
    let magic = read_exact(r, MAGIC.len())?;
    if magic != MAGIC {
        return Err(StoreError::Storage("not a wkube store snapshot".into()));
    }
    let mut a = [0u8; 4];
    r.read_exact(&mut a)
        .map_err(|e| StoreError::Storage(format!("reading snapshot: {e}")))?;
    let hj = read_exact(r, u32::from_le_bytes(a) as usize)?;
    serde_json::from_slice(&hj).ctx("decode snapshot header")
}

/// Reads only the header (to describe a stored snapshot without loading it).
pub(crate) fn read_header(r: &mut dyn Read) -> Result<SnapshotHeader, StoreError> {
    read_header_from(r)
}

/// Reads a whole snapshot, handing every key to `sink`, and verifies its checksum.
pub(crate) fn read_snapshot(
    r: &mut dyn Read,
    mut sink: impl FnMut(&str, KvRecord) -> Result<(), StoreError>,
) -> Result<SnapshotHeader, StoreError> {
    let mut buffered = std::io::BufReader::with_capacity(256 * 1024, r);
    let mut cr = CrcReader {
        r: &mut buffered,
        crc: Crc32::new(),
    };
    let header = read_header_from(&mut cr)?;
    for _ in 0..header.key_count {
        let klen = read_len(&mut cr)?;
        let key = String::from_utf8(read_exact(&mut cr, klen)?)
            .map_err(|_| StoreError::Storage("corrupt snapshot: key is not UTF-8".into()))?;
        let create_revision = read_u64(&mut cr)?;
        let mod_revision = read_u64(&mut cr)?;
        let vlen = read_len(&mut cr)?;
        let value = read_exact(&mut cr, vlen)?;
        sink(
            &key,
            KvRecord {
                create_revision,
                mod_revision,
                value,
            },
        )?;
    }
    let computed = cr.crc.finish();
    let mut a = [0u8; 4];
    buffered
        .read_exact(&mut a)
        .map_err(|e| StoreError::Storage(format!("reading snapshot checksum: {e}")))?;
    if u32::from_le_bytes(a) != computed {
        return Err(StoreError::Storage(
            "snapshot checksum mismatch (damaged or truncated)".into(),
        ));
    }
    Ok(header)
}

/// Replaces the state machine in `txn` with the snapshot read from `r`. History and events are
/// dropped, so the compaction point becomes the snapshot's revision. The raft pointers are
/// given by the caller (openraft's snapshot meta, or none for a restore into a fresh group).
/// Nothing is visible unless the caller commits `txn`, which it must not do on error.
pub(crate) fn load_snapshot(
    txn: &WriteTransaction,
    r: &mut dyn Read,
    last_applied: Option<LogId>,
    membership: StoredMembership,
) -> Result<SmMeta, StoreError> {
    let mut t = SmTables::open(txn)?;
    t.kv.retain(|_, _| false).ctx("clear kv")?;
    t.history.retain(|_, _| false).ctx("clear history")?;
    t.events.retain(|_, _| false).ctx("clear events")?;
    let header = {
        let kv = &mut t.kv;
        read_snapshot(r, |key, rec| {
            kv.insert(key, rec.encode().as_slice())
                .map(|_| ())
                .ctx("load kv")
        })?
    };
    let meta = SmMeta {
        revision: header.revision,
        compacted: header.revision,
        last_applied,
        membership,
    };
    t.write_meta(&meta)?;
    Ok(meta)
}
