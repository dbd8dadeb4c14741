//! Little binary helpers shared by the log records and checkpoints: varints and
//! length-prefixed strings, with a reader that fails instead of panicking.

#[derive(Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.buf.push((x as u8) | 0x80);
            x >>= 7;
        }
        self.buf.push(x as u8);
    }
    pub fn varint(&mut self, x: i64) {
        self.uvarint(((x << 1) ^ (x >> 63)) as u64);
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.uvarint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
}

/// Metric metadata as four strings (family, type, help, unit), after a count.
pub fn put_metadata(e: &mut Enc, md: &[hearth_core::MetricMetadata]) {
    e.uvarint(md.len() as u64);
    for m in md {
        e.str(&m.metric_family);
        e.str(&m.metric_type);
        e.str(&m.help);
        e.str(&m.unit);
    }
}

pub fn get_metadata(d: &mut Dec<'_>) -> Result<Vec<hearth_core::MetricMetadata>, DecodeError> {
    let n = d.count(4)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(hearth_core::MetricMetadata {
            metric_family: d.str()?.to_string(),
            metric_type: d.str()?.to_string(),
            help: d.str()?.to_string(),
            unit: d.str()?.to_string(),
        });
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
#[error("truncated or malformed record")]
pub struct DecodeError;

pub struct Dec<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(data: &'a [u8]) -> Dec<'a> {
        Dec { data, pos: 0 }
    }
    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.pos
    }
    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
    pub fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let mut x: u64 = 0;
        let mut s = 0u32;
        for _ in 0..10 {
            let b = *self.data.get(self.pos).ok_or(DecodeError)?;
            self.pos += 1;
            if b < 0x80 {
                return Ok(x | (b as u64) << s);
            }
            x |= ((b & 0x7f) as u64) << s;
            s += 7;
        }
        Err(DecodeError)
    }
    pub fn varint(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    /// A count that must be plausible for the bytes left (each item >= `min_item` bytes),
    /// so a corrupt length never drives a huge allocation.
    pub fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.uvarint()? as usize;
        if n.saturating_mul(min_item.max(1)) > self.data.len() - self.pos {
            return Err(DecodeError);
        }
        Ok(n)
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.uvarint()? as usize;
        let end = self.pos.checked_add(n).ok_or(DecodeError)?;
        let b = self.data.get(self.pos..end).ok_or(DecodeError)?;
        self.pos = end;
        Ok(b)
    }
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError)
    }
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        let b = self.data.get(self.pos..self.pos + 8).ok_or(DecodeError)?;
        self.pos += 8;
        Ok(f64::from_bits(u64::from_le_bytes(
            b.try_into().map_err(|_| DecodeError)?,
        )))
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.data.get(self.pos).ok_or(DecodeError)?;
        self.pos += 1;
        Ok(b)
    }
}
