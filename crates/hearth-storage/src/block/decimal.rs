//! The decimal-delta sample encoding of a chunk in a block (opt-in,
//! `blocks-storage.block-sample-encoding=decimal-delta`): what VictoriaMetrics does, in a
//! form Parquet's ZSTD compresses well. Timestamps are a first value, a first delta and
//! then deltas of deltas; values, when every value of the chunk is a decimal with at most
//! six fraction digits (checked exactly, bit for bit), are integers scaled by a power of
//! ten stored as deltas; otherwise (NaN, staleness markers, -0, long fractions) the raw
//! bits are stored as deltas of their integer form. Every number is a zigzag varint.
//!
//! Lossless: decoding gives back the same bits. A chunk is re-encoded as a Prometheus
//! XOR chunk when read, so nothing above the block reader sees the difference.
//!
//! Layout: `n | mode | [scale] | t0 | dt1 | dod... | v0 | dv...`, with mode 0 (decimal,
//! followed by the scale exponent) or 1 (raw bits).

const MAX_SAMPLES: u64 = 1 << 16;
const MAX_SCALE: u32 = 6;

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Reads an unsigned LEB128 varint at `pos`; `None` past the end or beyond 64 bits.
pub(super) fn get_uvarint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<i64> {
    let z = get_uvarint(b, pos)?;
    Some(((z >> 1) as i64) ^ -((z & 1) as i64))
}

/// The smallest power of ten that makes every value an exact integer (below 2^53),
/// reproduced bit for bit by `int / 10^k`; `None` when there is none up to 10^6.
fn decimal_scale(values: &[f64]) -> Option<(u32, Vec<i64>)> {
    'scales: for k in 0..=MAX_SCALE {
        let m = 10f64.powi(k as i32);
        let mut ints = Vec::with_capacity(values.len());
        for &v in values {
            let scaled = (v * m).round();
            if !scaled.is_finite() || scaled.abs() >= 9_007_199_254_740_992.0 {
                continue 'scales;
            }
            let i = scaled as i64;
            if (i as f64 / m).to_bits() != v.to_bits() {
                continue 'scales;
            }
            ints.push(i);
        }
        return Some((k, ints));
    }
    None
}

/// Encodes samples (sorted by time).
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 3 + 8);
    put_varint(&mut out, samples.len() as i64);
    let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let ints = match decimal_scale(&values) {
        Some((k, ints)) => {
            out.push(0);
            out.push(k as u8);
            ints
        }
        None => {
            out.push(1);
            values.iter().map(|v| v.to_bits() as i64).collect()
        }
    };
    let (mut pt, mut pdt) = (0i64, 0i64);
    for (i, (t, _)) in samples.iter().enumerate() {
        match i {
            0 => put_varint(&mut out, *t),
            1 => put_varint(&mut out, t.wrapping_sub(pt)),
            _ => put_varint(&mut out, t.wrapping_sub(pt).wrapping_sub(pdt)),
        }
        if i > 0 {
            pdt = t.wrapping_sub(pt);
        }
        pt = *t;
    }
    let mut pv = 0i64;
    for v in ints {
        put_varint(&mut out, v.wrapping_sub(pv));
        pv = v;
    }
    out
}

/// Decodes a chunk; an error says what is wrong (damaged or foreign bytes).
pub fn decode(b: &[u8]) -> Result<Vec<(i64, f64)>, String> {
    let bad = || "damaged decimal-delta chunk".to_string();
    let mut pos = 0;
    let n = get_uvarint(b, &mut pos).ok_or_else(bad)? >> 1;
    if n > MAX_SAMPLES || n as usize > b.len() {
        return Err(format!("decimal-delta chunk claims {n} samples"));
    }
    let mode = *b.get(pos).ok_or_else(bad)?;
    pos += 1;
    let scale = match mode {
        0 => {
            let k = u32::from(*b.get(pos).ok_or_else(bad)?);
            pos += 1;
            if k > MAX_SCALE {
                return Err(format!("decimal-delta chunk scale 10^{k}"));
            }
            Some(10f64.powi(k as i32))
        }
        1 => None,
        m => return Err(format!("decimal-delta chunk mode {m}")),
    };
    let n = n as usize;
    let mut ts = Vec::with_capacity(n);
    let (mut pt, mut pdt) = (0i64, 0i64);
    for i in 0..n {
        let x = get_varint(b, &mut pos).ok_or_else(bad)?;
        let t = match i {
            0 => x,
            1 => pt.wrapping_add(x),
            _ => pt.wrapping_add(pdt).wrapping_add(x),
        };
        if i > 0 {
            pdt = t.wrapping_sub(pt);
        }
        pt = t;
        ts.push(t);
    }
    let mut out = Vec::with_capacity(n);
    let mut pv = 0i64;
    for t in ts {
        let v = pv.wrapping_add(get_varint(b, &mut pos).ok_or_else(bad)?);
        pv = v;
        let f = match scale {
            Some(m) => v as f64 / m,
            None => f64::from_bits(v as u64),
        };
        out.push((t, f));
    }
    if pos != b.len() {
        return Err(bad());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
    }

    #[test]
    fn lossless_for_decimals_and_everything_else() {
        let t = |i: i64| 1_700_000_000_000 + i * 15_000 + (i % 3);
        let cases: Vec<Vec<(i64, f64)>> = vec![
            (0..120).map(|i| (t(i), i as f64 * 0.25 + 1234.5)).collect(),
            (0..120).map(|i| (t(i), 1e9 + i as f64 * 0.01)).collect(),
            (0..50).map(|i| (t(i), (i as f64).sin())).collect(),
            vec![
                (t(0), f64::NAN),
                (t(1), f64::from_bits(0x7ff0_0000_0000_0002)),
                (t(2), -0.0),
            ],
            vec![
                (t(0), f64::INFINITY),
                (t(1), f64::MIN_POSITIVE),
                (t(2), f64::MAX),
            ],
            vec![(i64::MIN, 1.0), (i64::MAX, 2.0)],
            vec![(5, 0.1 + 0.2)],
            vec![],
        ];
        for c in cases {
            let enc = encode(&c);
            let dec = decode(&enc).unwrap();
            assert!(same(&c, &dec), "{c:?} -> {dec:?}");
        }
        // Decimal data takes the decimal mode: a regular counter with two fraction
        // digits is three varint bytes a sample at most, before compression.
        let counter: Vec<(i64, f64)> = (0..120).map(|i| (t(i), 5000.0 + i as f64 * 7.25)).collect();
        let enc = encode(&counter);
        // After n (120, two varint bytes): mode 0 (decimal), scale 10^2.
        assert_eq!((enc[2], enc[3]), (0, 2));
        assert!(enc.len() <= 400, "{}", enc.len());
    }

    #[test]
    fn damage_is_an_error() {
        let c: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, i as f64)).collect();
        let enc = encode(&c);
        assert!(decode(&enc[..enc.len() - 1]).is_err());
        assert!(decode(&[0xff, 0xff, 0xff, 0x7f, 0]).is_err());
        assert!(decode(&[2, 7]).is_err());
        let mut extra = enc.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
    }
}
