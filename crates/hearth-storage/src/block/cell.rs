//! One cell of the chunks file: the chunks of one series in one time column, each as
//! `encoding (uvarint) | min_t - column start (uvarint) | max_t - min_t (uvarint) |
//! length (uvarint) | bytes`. The bytes are Prometheus XOR chunks as stored (encoding
//! 1), or the same samples in the decimal-delta encoding (2, see `decimal`), which the
//! reader turns back into XOR chunks.

use std::sync::Arc;

use hearth_core::{ChunkEncoding, EncodedChunk};
use hearth_series::chunkenc::{decode_all, XorAppender};

use super::decimal::{self, get_uvarint};

const XOR: u64 = 1;
const DECIMAL_DELTA: u64 = 2;

/// How a block stores its samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SampleEncoding {
    /// Prometheus XOR chunks, byte for byte (parquet-common's layout).
    #[default]
    Xor,
    /// Decimal-delta (`decimal`): smaller, re-encoded as XOR when read.
    DecimalDelta,
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encodes chunks (sorted, each within `[column_start, ...)`) into a cell.
pub fn encode(chunks: &[EncodedChunk], column_start: i64) -> Vec<u8> {
    encode_as(chunks, column_start, SampleEncoding::Xor)
}

/// [`encode`] in the given sample encoding. A chunk that cannot be decoded is kept as
/// XOR bytes (it was verified when written to the head; this never loses it).
pub fn encode_as(chunks: &[EncodedChunk], column_start: i64, enc: SampleEncoding) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunks.iter().map(|c| c.data.len() + 12).sum());
    for c in chunks {
        let converted = match enc {
            SampleEncoding::Xor => None,
            SampleEncoding::DecimalDelta => decode_all(&c.data).ok().map(|s| decimal::encode(&s)),
        };
        let (tag, bytes): (u64, &[u8]) = match &converted {
            Some(b) => (DECIMAL_DELTA, b),
            None => (XOR, &c.data),
        };
        put_uvarint(&mut out, tag);
        put_uvarint(&mut out, (c.min_t - column_start) as u64);
        put_uvarint(&mut out, (c.max_t - c.min_t) as u64);
        put_uvarint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    out
}

/// Decodes a cell; an error names what is wrong (a damaged or foreign file).
pub fn decode(cell: &[u8], column_start: i64) -> Result<Vec<EncodedChunk>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < cell.len() {
        let at = pos;
        let bad = move || format!("damaged chunks cell at byte {at}");
        let enc = get_uvarint(cell, &mut pos).ok_or_else(bad)?;
        if enc != XOR && enc != DECIMAL_DELTA {
            return Err(format!("unknown chunk encoding {enc}"));
        }
        let min_off = get_uvarint(cell, &mut pos).ok_or_else(bad)?;
        let span = get_uvarint(cell, &mut pos).ok_or_else(bad)?;
        let len = get_uvarint(cell, &mut pos).ok_or_else(bad)? as usize;
        let end = pos
            .checked_add(len)
            .filter(|e| *e <= cell.len())
            .ok_or_else(bad)?;
        let min_t = column_start.saturating_add(min_off as i64);
        let data: Arc<[u8]> = if enc == DECIMAL_DELTA {
            let samples = decimal::decode(&cell[pos..end])?;
            let mut app = XorAppender::new();
            for (t, v) in samples {
                app.append(t, v);
            }
            Arc::from(app.bytes())
        } else {
            Arc::from(&cell[pos..end])
        };
        out.push(EncodedChunk {
            min_t,
            max_t: min_t.saturating_add(span as i64),
            encoding: ChunkEncoding::Xor,
            data,
        });
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let chunks = vec![
            EncodedChunk {
                min_t: 1_000,
                max_t: 5_000,
                encoding: ChunkEncoding::Xor,
                data: Arc::from(&[1u8, 2, 3][..]),
            },
            EncodedChunk {
                min_t: 6_000,
                max_t: 6_000,
                encoding: ChunkEncoding::Xor,
                data: Arc::from(&[9u8; 300][..]),
            },
        ];
        let cell = encode(&chunks, 500);
        let back = decode(&cell, 500).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].min_t, back[0].max_t), (1_000, 5_000));
        assert_eq!(&*back[1].data, &[9u8; 300][..]);
        assert!(decode(&cell[..cell.len() - 1], 500).is_err());
        assert!(decode(&[7, 0, 0, 0], 0).is_err());
    }

    #[test]
    fn decimal_delta_cells_read_back_as_the_same_xor_samples() {
        let mut app = XorAppender::new();
        for i in 0..120i64 {
            app.append(1_000 + i * 15_000, 100.0 + i as f64 * 0.5);
        }
        let chunk = EncodedChunk {
            min_t: 1_000,
            max_t: 1_000 + 119 * 15_000,
            encoding: ChunkEncoding::Xor,
            data: Arc::from(app.bytes()),
        };
        let xor = encode_as(std::slice::from_ref(&chunk), 0, SampleEncoding::Xor);
        let dd = encode_as(
            std::slice::from_ref(&chunk),
            0,
            SampleEncoding::DecimalDelta,
        );
        // (Uncompressed, varints are not smaller than XOR bits; the gain is in how
        // well Parquet's ZSTD compresses them, measured by hearth-blockfmt.)
        assert_ne!(dd, xor);
        let back = decode(&dd, 0).unwrap();
        assert_eq!((back[0].min_t, back[0].max_t), (chunk.min_t, chunk.max_t));
        assert_eq!(
            decode_all(&back[0].data).unwrap(),
            decode_all(&chunk.data).unwrap()
        );
    }
}
