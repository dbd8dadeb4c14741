//! A bit stream, most significant bit first, as Prometheus' `chunkenc/bstream.go` lays
//! out bits: the XOR chunk format depends on exactly this bit order.

/// Appends bits to a byte vector, in exactly the states Prometheus' bstream goes
/// through: writing a whole byte at a byte boundary leaves a trailing zero byte with all
/// 8 bits free (as `bstream.writeByte` does), which shows in the chunk's bytes when
/// nothing follows. Byte-identical chunks need that detail.
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    pub bytes: Vec<u8>,
    /// Bits still free in the last byte: 0 means "start a new byte"; 8 is the trailing
    /// zero byte a whole-byte write leaves.
    pub free: u8,
}

impl BitWriter {
    pub fn from_bytes(bytes: Vec<u8>, free: u8) -> BitWriter {
        BitWriter { bytes, free }
    }

    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if bit {
            *self.bytes.last_mut().expect("a byte was pushed") |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    #[inline]
    pub fn write_byte(&mut self, b: u8) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        let free = self.free as u32;
        *self.bytes.last_mut().expect("free > 0 implies a byte") |=
            ((b as u32) >> (8 - free)) as u8;
        self.bytes.push(((b as u32) << free) as u8);
    }

    /// Writes the low `nbits` bits of `u`, most significant first: whole bytes as
    /// `write_byte` would, then the remaining bits in one step.
    #[inline]
    pub fn write_bits(&mut self, u: u64, nbits: u8) {
        if nbits == 0 {
            return;
        }
        let mut n = nbits as u32;
        let u = if n == 64 { u } else { u & ((1u64 << n) - 1) };
        while n >= 8 {
            n -= 8;
            self.write_byte((u >> n) as u8);
        }
        if n == 0 {
            return;
        }
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        let free = self.free as u32;
        let bits = u & ((1u64 << n) - 1);
        let last = self.bytes.last_mut().expect("a byte exists");
        if n <= free {
            *last |= (bits << (free - n)) as u8;
            self.free -= n as u8;
        } else {
            let hi = n - free;
            *last |= (bits >> hi) as u8;
            self.bytes.push(((bits << (8 - hi)) & 0xff) as u8);
            self.free = (8 - hi) as u8;
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads bits from a byte slice.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> BitReader<'a> {
        BitReader { data, pos: 0 }
    }

    #[inline]
    fn bits_left(&self) -> usize {
        self.data.len() * 8 - self.pos
    }

    #[inline]
    pub fn read_bit(&mut self) -> Option<bool> {
        if self.pos >= self.data.len() * 8 {
            return None;
        }
        let b = self.data[self.pos >> 3] & (0x80 >> (self.pos & 7)) != 0;
        self.pos += 1;
        Some(b)
    }

    /// Reads `n` (<= 64) bits as an unsigned big-endian number.
    #[inline]
    pub fn read_bits(&mut self, n: u8) -> Option<u64> {
        let n = n as usize;
        if n == 0 {
            return Some(0);
        }
        if n > self.bits_left() {
            return None;
        }
        let byte = self.pos >> 3;
        let off = self.pos & 7;
        if off + n <= 64 && byte + 8 <= self.data.len() {
            let word = u64::from_be_bytes(self.data[byte..byte + 8].try_into().ok()?);
            self.pos += n;
            return Some((word << off) >> (64 - n));
        }
        let mut v: u64 = 0;
        let mut need = n;
        while need > 0 {
            let byte = self.data[self.pos >> 3];
            let off = self.pos & 7;
            let avail = 8 - off;
            let take = avail.min(need);
            let bits = ((byte << off) >> (8 - take)) as u64;
            v = if take == 64 { bits } else { (v << take) | bits };
            self.pos += take;
            need -= take;
        }
        Some(v)
    }

    #[inline]
    pub fn read_byte(&mut self) -> Option<u8> {
        self.read_bits(8).map(|b| b as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_mixed_widths() {
        let mut w = BitWriter::default();
        let items: Vec<(u64, u8)> = (0..500u64)
            .map(|i| {
                let n = (i % 64 + 1) as u8;
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & mask, n)
            })
            .collect();
        for (v, n) in &items {
            w.write_bits(*v, *n);
        }
        w.write_bit(true);
        w.write_byte(0xab);
        let mut r = BitReader::new(w.bytes());
        for (v, n) in &items {
            assert_eq!(r.read_bits(*n), Some(*v), "width {n}");
        }
        assert_eq!(r.read_bit(), Some(true));
        assert_eq!(r.read_byte(), Some(0xab));
    }
}
