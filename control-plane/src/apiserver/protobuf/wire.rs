//! The protobuf wire format, schema-free: varints, field keys and the four wire types, read
//! from a byte slice with every length checked.

use super::DecodeError;

/// The value of one field occurrence, as the wire carries it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    pub fn wire_name(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "64-bit",
            WireValue::Bytes(_) => "length-delimited",
            WireValue::Fixed32(_) => "32-bit",
        }
    }
}

/// Reads the fields of one message in order.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.bytes.get(self.at) else {
                return Err(DecodeError::malformed(format!(
                    "truncated varint at byte {}",
                    self.at
                )));
            };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::malformed(format!(
            "varint longer than 10 bytes before byte {}",
            self.at
        )))
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                DecodeError::malformed(format!(
                    "truncated {what} at byte {}: {len} bytes wanted, {} left",
                    self.at,
                    self.bytes.len().saturating_sub(self.at)
                ))
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    pub fn fixed64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, "64-bit value")?);
        Ok(u64::from_le_bytes(a))
    }

    pub fn fixed32(&mut self) -> Result<u32, DecodeError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4, "32-bit value")?);
        Ok(u32::from_le_bytes(a))
    }

    /// The next field: (field number, value).
    pub fn field(&mut self) -> Result<(u32, WireValue<'a>), DecodeError> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|n| *n > 0 && *n < (1 << 29))
            .ok_or_else(|| {
                DecodeError::malformed(format!("invalid field number {} in a key", key >> 3))
            })?;
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| {
                    DecodeError::malformed("length-delimited field longer than memory")
                })?;
                WireValue::Bytes(self.take(len, "length-delimited field")?)
            }
            5 => WireValue::Fixed32(self.fixed32()?),
            other => {
                return Err(DecodeError::malformed(format!(
                    "unsupported wire type {other} for field {number}"
                )));
            }
        };
        Ok((number, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_wire_type() {
        // field 1 varint 300, field 2 fixed64 7, field 3 bytes "ab", field 4 fixed32 9
        let bytes = [
            0x08, 0xac, 0x02, 0x11, 7, 0, 0, 0, 0, 0, 0, 0, 0x1a, 2, b'a', b'b', 0x25, 9, 0, 0, 0,
        ];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.field().ok(), Some((1, WireValue::Varint(300))));
        assert_eq!(r.field().ok(), Some((2, WireValue::Fixed64(7))));
        assert_eq!(r.field().ok(), Some((3, WireValue::Bytes(b"ab"))));
        assert_eq!(r.field().ok(), Some((4, WireValue::Fixed32(9))));
        assert!(r.is_done());
    }

    #[test]
    fn truncation_and_bad_keys_are_errors() {
        for bytes in [
            &[0x1a, 5, b'a'][..],
            &[0x08, 0x80],
            &[0x11, 1, 2],
            &[0x0b],
            &[0x00, 0x01],
            &[0xff; 11],
        ] {
            assert!(Reader::new(bytes).field().is_err(), "{bytes:?}");
        }
    }
}
