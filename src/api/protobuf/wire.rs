//! A reader of the protobuf wire format (just what decoding needs; never panics).

use super::ProtobufError;

/// Wire types of the protobuf encoding.
pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

/// A value as read off the wire, before its schema gives it meaning.
#[derive(Debug, Clone, Copy)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    /// Four bytes, which no field of the schema uses.
    Fixed32,
    /// Length-delimited bytes, with the absolute offset of their first byte.
    Len(&'a [u8], usize),
}

impl WireValue<'_> {
    pub fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => VARINT,
            WireValue::Fixed64(_) => FIXED64,
            WireValue::Fixed32 => FIXED32,
            WireValue::Len(..) => LEN,
        }
    }
}

/// Reads fields from a message's bytes. Offsets in errors are absolute (from the body's start).
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, whose first byte is at absolute offset `base`.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The absolute offset of the next byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub fn varint(&mut self) -> Result<u64, ProtobufError> {
        let start = self.offset();
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(ProtobufError::TruncatedVarint { offset: start });
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(ProtobufError::VarintOverflow { offset: start });
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::VarintOverflow { offset: start })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let available = self.buf.len() - self.pos;
        if n > available {
            return Err(ProtobufError::Truncated {
                offset: self.offset(),
                needed: n,
                available,
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads 8 little-endian bytes (a packed `double`).
    pub fn take_fixed64(&mut self) -> Result<u64, ProtobufError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Reads the next field: its number and value. Groups (wire types 3 and 4) are rejected.
    pub fn field(&mut self) -> Result<(u32, WireValue<'a>, usize), ProtobufError> {
        let offset = self.offset();
        let key = self.varint()?;
        let wire_type = (key & 7) as u8;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(ProtobufError::BadFieldNumber { offset, number });
        }
        let number = number as u32;
        let value = match wire_type {
            VARINT => WireValue::Varint(self.varint()?),
            FIXED64 => WireValue::Fixed64(self.take_fixed64()?),
            FIXED32 => {
                self.take(4)?;
                WireValue::Fixed32
            }
            LEN => {
                let len_offset = self.offset();
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| ProtobufError::Truncated {
                    offset: len_offset,
                    needed: usize::MAX,
                    available: self.buf.len() - self.pos,
                })?;
                let start = self.offset();
                WireValue::Len(self.take(len)?, start)
            }
            other => {
                return Err(ProtobufError::UnsupportedWireType {
                    offset,
                    wire_type: other,
                })
            }
        };
        Ok((number, value, offset))
    }
}
