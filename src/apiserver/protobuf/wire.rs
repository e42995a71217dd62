//! Reading the protobuf wire format: varints, keys and length-delimited fields over a byte slice.
//!
//! Every read checks its bounds and returns [`Error`] on truncated or malformed input, so that a
//! request body can never make the decoder panic.

use super::Error;

/// The wire types of the protobuf encoding (the low three bits of a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireType {
    Varint,
    Fixed64,
    Len,
    StartGroup,
    EndGroup,
    Fixed32,
}

impl WireType {
    fn from_bits(bits: u64) -> Option<WireType> {
        Some(match bits {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::Len,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            _ => return None,
        })
    }
}

/// A cursor over the bytes of one message.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(super) fn varint(&mut self) -> Result<u64, Error> {
        let mut value = 0u64;
        for (index, byte) in self.bytes.iter().enumerate().take(10) {
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may only carry the single top bit of a 64-bit value.
            if index == 9 && *byte > 1 {
                return Err(Error::malformed("varint overflows 64 bits"));
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                self.bytes = &self.bytes[index + 1..];
                return Ok(value);
            }
        }
        Err(if self.bytes.len() >= 10 {
            Error::malformed("varint longer than 10 bytes")
        } else {
            Error::malformed("truncated varint")
        })
    }

    /// A field key: the field number and the wire type of its value.
    pub(super) fn key(&mut self) -> Result<(u32, WireType), Error> {
        let key = self.varint()?;
        let wire = WireType::from_bits(key & 7)
            .ok_or_else(|| Error::malformed(format!("invalid wire type {}", key & 7)))?;
        match u32::try_from(key >> 3) {
            Ok(number) if (1..=(1 << 29) - 1).contains(&number) => Ok((number, wire)),
            _ => Err(Error::malformed(format!(
                "invalid field number {}",
                key >> 3
            ))),
        }
    }

    pub(super) fn len_delimited(&mut self) -> Result<&'a [u8], Error> {
        let len = self.varint()?;
        match usize::try_from(len) {
            Ok(len) if len <= self.bytes.len() => {
                let (value, rest) = self.bytes.split_at(len);
                self.bytes = rest;
                Ok(value)
            }
            _ => Err(Error::malformed(format!(
                "length {len} runs past the end of the message ({} bytes left)",
                self.bytes.len()
            ))),
        }
    }

    fn take(&mut self, count: usize) -> Result<(), Error> {
        if count > self.bytes.len() {
            return Err(Error::malformed("truncated fixed-width field"));
        }
        self.bytes = &self.bytes[count..];
        Ok(())
    }

    /// Skips the value of a field this decoder does not know, as protobuf parsers do.
    pub(super) fn skip(&mut self, wire: WireType) -> Result<(), Error> {
        match wire {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8),
            WireType::Len => self.len_delimited().map(drop),
            WireType::Fixed32 => self.take(4),
            // Groups are a proto2 feature that go-to-protobuf never generates.
            WireType::StartGroup | WireType::EndGroup => {
                Err(Error::malformed("groups are not supported"))
            }
        }
    }

    /// The value of a varint field, after checking the key said so.
    pub(super) fn expect_varint(&mut self, wire: WireType) -> Result<u64, Error> {
        expect(wire, WireType::Varint)?;
        self.varint()
    }

    /// The bytes of a length-delimited field, after checking the key said so.
    pub(super) fn expect_len(&mut self, wire: WireType) -> Result<&'a [u8], Error> {
        expect(wire, WireType::Len)?;
        self.len_delimited()
    }
}

fn expect(found: WireType, expected: WireType) -> Result<(), Error> {
    if found == expected {
        Ok(())
    } else {
        Err(Error::malformed(format!(
            "wire type {found:?} where {expected:?} was expected"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_through_prost() {
        for value in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(value, &mut buf);
            let mut reader = Reader::new(&buf);
            assert_eq!(reader.varint().unwrap(), value);
            assert!(reader.is_empty());
        }
    }

    #[test]
    fn truncated_and_overlong_input_is_an_error() {
        assert!(Reader::new(&[0x80]).varint().is_err());
        assert!(Reader::new(&[0xff; 11]).varint().is_err());
        assert!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])
                .varint()
                .is_err()
        );
        assert!(Reader::new(&[0x05, b'a']).len_delimited().is_err());
        assert!(Reader::new(&[0x00]).key().is_err(), "field number 0");
        assert!(Reader::new(&[0x0e]).key().is_err(), "wire type 6");
        assert!(Reader::new(&[0x01, 0, 0]).skip(WireType::Fixed64).is_err());
    }
}
