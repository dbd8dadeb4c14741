//! A minimal protobuf wire reader over one buffer, for the remote-write hot path: it
//! hands out positions into the buffer instead of allocating strings, so a decoded
//! request's labels stay where they arrived. Every read is bounds-checked; malformed
//! input is an error, never a panic.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub &'static str);

pub const VARINT: u8 = 0;
pub const FIXED64: u8 = 1;
pub const LEN: u8 = 2;
pub const FIXED32: u8 = 5;

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// A reader over `[start, end)` of the same buffer (positions stay absolute).
    pub fn sub(&self, start: usize, end: usize) -> Reader<'a> {
        Reader {
            buf: self.buf,
            pos: start,
            end,
        }
    }

    pub fn eof(&self) -> bool {
        self.pos >= self.end
    }

    #[inline]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let mut x: u64 = 0;
        let mut shift = 0u32;
        while shift < 64 {
            if self.pos >= self.end {
                return Err(WireError("truncated varint"));
            }
            let b = self.buf[self.pos];
            self.pos += 1;
            x |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(x);
            }
            shift += 7;
        }
        Err(WireError("varint longer than 10 bytes"))
    }

    #[inline]
    pub fn key(&mut self) -> Result<(u32, u8), WireError> {
        let k = self.varint()?;
        let field = (k >> 3) as u32;
        if field == 0 {
            return Err(WireError("field number 0"));
        }
        Ok((field, (k & 7) as u8))
    }

    #[inline]
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        if self.end - self.pos < 8 {
            return Err(WireError("truncated fixed64"));
        }
        let v = u64::from_le_bytes(
            self.buf[self.pos..self.pos + 8]
                .try_into()
                .map_err(|_| WireError("fixed64"))?,
        );
        self.pos += 8;
        Ok(v)
    }

    /// A length-delimited field: its absolute [start, end).
    #[inline]
    pub fn len_delimited(&mut self) -> Result<(usize, usize), WireError> {
        let n = self.varint()?;
        if n > (self.end - self.pos) as u64 {
            return Err(WireError("length-delimited field runs past its message"));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok((start, self.pos))
    }

    pub fn skip(&mut self, wire_type: u8) -> Result<(), WireError> {
        match wire_type {
            VARINT => self.varint().map(|_| ()),
            FIXED64 => self.fixed64().map(|_| ()),
            LEN => self.len_delimited().map(|_| ()),
            FIXED32 => {
                if self.end - self.pos < 4 {
                    return Err(WireError("truncated fixed32"));
                }
                self.pos += 4;
                Ok(())
            }
            _ => Err(WireError("unsupported wire type (groups are not allowed)")),
        }
    }

    /// Fails unless the field has the expected wire type.
    #[inline]
    pub fn expect(wire_type: u8, want: u8) -> Result<(), WireError> {
        if wire_type == want {
            Ok(())
        } else {
            Err(WireError("field has the wrong wire type"))
        }
    }
}
