//! Compact binary encodings for what the store keeps in redb and in snapshots.
//!
//! Values are opaque bytes of up to 1.5 MiB; a JSON encoding would triple them (serde_json writes
//! `Vec<u8>` as an array of numbers), so records, events and raft requests use this little
//! length-prefixed little-endian format instead. Every decoder checks bounds and reports
//! corruption as `StoreError::Storage` rather than panicking.

use super::types::{EventKind, KeyValue, Op, Revision, StoreError, WatchEvent};

/// Appends primitive values to a byte buffer.
#[derive(Default)]
pub(crate) struct Enc {
    pub(crate) buf: Vec<u8>,
}

impl Enc {
    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }
    pub(crate) fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub(crate) fn kv(&mut self, kv: &KeyValue) -> &mut Self {
        self.str(&kv.key)
            .bytes(&kv.value)
            .u64(kv.create_revision)
            .u64(kv.mod_revision)
    }
}

/// Reads primitive values back; every read is bounds-checked.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Dec<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Dec { buf, pos: 0, what }
    }
    fn corrupt(&self) -> StoreError {
        StoreError::Storage(format!(
            "corrupt {} record (truncated at byte {} of {})",
            self.what,
            self.pos,
            self.buf.len()
        ))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.corrupt())?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.corrupt())?;
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u64(&mut self) -> Result<u64, StoreError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let n = usize::try_from(self.u64()?).map_err(|_| self.corrupt())?;
        self.take(n)
    }
    pub(crate) fn string(&mut self) -> Result<String, StoreError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.corrupt())
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        s
    }
    pub(crate) fn kv(&mut self) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.string()?,
            value: self.bytes()?.to_vec(),
            create_revision: self.u64()?,
            mod_revision: self.u64()?,
        })
    }
    pub(crate) fn finish(&self) -> Result<(), StoreError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.corrupt())
        }
    }
}

/// The latest version of a key, as stored in the `kv` table (the key is the table key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KvRecord {
    pub(crate) create_revision: Revision,
    pub(crate) mod_revision: Revision,
    pub(crate) value: Vec<u8>,
}

impl KvRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.u64(self.create_revision).u64(self.mod_revision);
        e.buf.extend_from_slice(&self.value);
        e.buf
    }
    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        let mut d = Dec::new(b, "kv");
        Ok(KvRecord {
            create_revision: d.u64()?,
            mod_revision: d.u64()?,
            value: d.rest().to_vec(),
        })
    }
    pub(crate) fn into_kv(self, key: String) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

/// A superseded version in the `history` table, keyed by (key, revision of that version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HistoryRecord {
    /// The key was deleted at this revision.
    Tombstone,
    /// The key had this value from this revision on (until the next version).
    Put {
        create_revision: Revision,
        value: Vec<u8>,
    },
}

impl HistoryRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        match self {
            HistoryRecord::Tombstone => {
                e.u8(0);
            }
            HistoryRecord::Put {
                create_revision,
                value,
            } => {
                e.u8(1).u64(*create_revision);
                e.buf.extend_from_slice(value);
            }
        }
        e.buf
    }
    pub(crate) fn decode(b: &[u8]) -> Result<Self, StoreError> {
        let mut d = Dec::new(b, "history");
        match d.u8()? {
            0 => Ok(HistoryRecord::Tombstone),
            1 => Ok(HistoryRecord::Put {
                create_revision: d.u64()?,
                value: d.rest().to_vec(),
            }),
            t => Err(StoreError::Storage(format!(
                "corrupt history record tag {t}"
            ))),
        }
    }
}

/// Encodes the events of one revision for the `events` table.
pub(crate) fn encode_events(events: &[WatchEvent]) -> Vec<u8> {
    let mut e = Enc::default();
    e.u64(events.len() as u64);
    for ev in events {
        e.u8(match ev.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        e.kv(&ev.kv);
        match &ev.prev {
            None => {
                e.u8(0);
            }
            Some(p) => {
                e.u8(1).kv(p);
            }
        }
    }
    e.buf
}

pub(crate) fn decode_events(b: &[u8]) -> Result<Vec<WatchEvent>, StoreError> {
    let mut d = Dec::new(b, "events");
    let n = d.u64()?;
    let mut out = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        let kind = match d.u8()? {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            t => return Err(StoreError::Storage(format!("corrupt event kind {t}"))),
        };
        let kv = d.kv()?;
        let prev = match d.u8()? {
            0 => None,
            _ => Some(d.kv()?),
        };
        out.push(WatchEvent { kind, kv, prev });
    }
    d.finish()?;
    Ok(out)
}

/// Encodes a transaction's ops (the payload of a raft log entry).
pub(crate) fn encode_ops(e: &mut Enc, ops: &[Op]) {
    e.u64(ops.len() as u64);
    for op in ops {
        match op {
            Op::Create { key, value } => {
                e.u8(0).str(key).bytes(value);
            }
            Op::Update {
                key,
                value,
                expected,
            } => {
                e.u8(1).str(key).bytes(value);
                opt_u64(e, *expected);
            }
            Op::Delete { key, expected } => {
                e.u8(2).str(key);
                opt_u64(e, *expected);
            }
        }
    }
}

fn opt_u64(e: &mut Enc, v: Option<u64>) {
    match v {
        None => {
            e.u8(0);
        }
        Some(v) => {
            e.u8(1).u64(v);
        }
    }
}

fn read_opt_u64(d: &mut Dec<'_>) -> Result<Option<u64>, StoreError> {
    Ok(match d.u8()? {
        0 => None,
        _ => Some(d.u64()?),
    })
}

pub(crate) fn decode_ops(d: &mut Dec<'_>) -> Result<Vec<Op>, StoreError> {
    let n = d.u64()?;
    let mut ops = Vec::with_capacity(n.min(1024) as usize);
    for _ in 0..n {
        let op = match d.u8()? {
            0 => Op::Create {
                key: d.string()?,
                value: d.bytes()?.to_vec(),
            },
            1 => Op::Update {
                key: d.string()?,
                value: d.bytes()?.to_vec(),
                expected: read_opt_u64(d)?,
            },
            2 => Op::Delete {
                key: d.string()?,
                expected: read_opt_u64(d)?,
            },
            t => return Err(StoreError::Storage(format!("corrupt op tag {t}"))),
        };
        ops.push(op);
    }
    Ok(ops)
}

/// CRC-32 (IEEE) so that a truncated or damaged snapshot is rejected instead of restored.
pub(crate) struct Crc32(u32);

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Crc32 {
    pub(crate) fn new() -> Self {
        Crc32(0xFFFF_FFFF)
    }
    pub(crate) fn update(&mut self, data: &[u8]) {
        let mut c = self.0;
        for b in data {
            c = CRC_TABLE[((c ^ u32::from(*b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }
    pub(crate) fn finish(&self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_value() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xCBF4_3926);
    }

    #[test]
    fn roundtrips() {
        let rec = KvRecord {
            create_revision: 3,
            mod_revision: 9,
            value: b"hello".to_vec(),
        };
        assert_eq!(KvRecord::decode(&rec.encode()).unwrap(), rec);
        let h = HistoryRecord::Put {
            create_revision: 2,
            value: vec![1, 2, 3],
        };
        assert_eq!(HistoryRecord::decode(&h.encode()).unwrap(), h);
        assert_eq!(
            HistoryRecord::decode(&HistoryRecord::Tombstone.encode()).unwrap(),
            HistoryRecord::Tombstone
        );
        let ops = vec![
            Op::Create {
                key: "a".into(),
                value: vec![0; 10],
            },
            Op::Update {
                key: "b".into(),
                value: vec![],
                expected: Some(4),
            },
            Op::Delete {
                key: "c".into(),
                expected: None,
            },
        ];
        let mut e = Enc::default();
        encode_ops(&mut e, &ops);
        let mut d = Dec::new(&e.buf, "ops");
        assert_eq!(decode_ops(&mut d).unwrap(), ops);
        d.finish().unwrap();
        assert!(KvRecord::decode(&[1, 2]).is_err());
    }
}
