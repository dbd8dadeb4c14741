//! The payload of a log entry: one committed write of one tenant, with its series
//! resolved to head ids.
//!
//! A series appears with its labels once, in the entry that creates it; every later
//! sample names it by id. Ids are assigned by the one thread that appends to the log,
//! densely and in log order, so replaying the log assigns the same ids. Layout:
//!
//! ```text
//!     u8 kind (2), u8 compression (0 none, 1 snappy: the rest is one snappy block)
//!     tenant, metadata (count, then family/type/help/unit strings)
//!     new series: count, then per series id, label count, name/value strings
//!     samples: count of series, then per series the id (zig-zag delta to the previous
//!              id of the entry), sample count, and per sample the
//!              timestamp delta to the previous sample of the entry (zig-zag varint)
//!              and the raw 64-bit value (staleness markers survive bit for bit)
//! ```

use hearth_core::{Label, Labels, LabelsRef, MetricMetadata, Sample, Tenant};

use hearth_series::codec::{get_metadata, put_metadata, Dec, DecodeError, Enc};
use hearth_series::postings::SeriesId;

const KIND_WRITE: u8 = 2;
/// Block shipping, in two steps (see db.rs): seal a time range, then mark it shipped.
/// Kinds 3 and 4 (every tenant at once) are still read from older logs; kinds 5 and 6
/// name the tenant they apply to.
const KIND_SEAL_ALL: u8 = 3;
const KIND_SHIPPED_ALL: u8 = 4;
const KIND_SEAL: u8 = 5;
const KIND_SHIPPED: u8 = 6;
const COMPRESS_NONE: u8 = 0;
const COMPRESS_SNAPPY: u8 = 1;
/// Entries smaller than this are not worth compressing.
const COMPRESS_MIN: usize = 512;

/// A decoded entry.
#[derive(Debug, Default)]
pub struct WriteRecord {
    pub tenant: Option<Tenant>,
    pub metadata: Vec<MetricMetadata>,
    pub new_series: Vec<(SeriesId, Labels)>,
    pub samples: Vec<(SeriesId, Vec<Sample>)>,
}

/// A control entry of the block-shipping protocol, for one tenant (`None`: every
/// tenant, as logs written before per-tenant shipping have it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlRecord {
    /// From this entry on, the tenant's head takes samples older than `before` only as
    /// late (out-of-order) data, kept apart, so what it held before `before` can no
    /// longer change and can be written as blocks.
    Seal { tenant: Option<Tenant>, before: i64 },
    /// The tenant's data sealed before `before` is in these blocks (tenant, ULID),
    /// uploaded and verified: the head drops it, and the log before this entry can be
    /// purged once a checkpoint follows.
    Shipped {
        tenant: Option<Tenant>,
        before: i64,
        blocks: Vec<(String, String)>,
    },
}

/// Any log entry.
#[derive(Debug)]
pub enum LogRecord {
    Write(WriteRecord),
    Control(ControlRecord),
}

pub fn encode_control(rec: &ControlRecord) -> Vec<u8> {
    let mut e = Enc { buf: Vec::new() };
    match rec {
        ControlRecord::Seal { tenant, before } => {
            match tenant {
                Some(t) => {
                    e.u8(KIND_SEAL);
                    e.str(t.as_str());
                }
                None => e.u8(KIND_SEAL_ALL),
            }
            e.varint(*before);
        }
        ControlRecord::Shipped {
            tenant,
            before,
            blocks,
        } => {
            match tenant {
                Some(t) => {
                    e.u8(KIND_SHIPPED);
                    e.str(t.as_str());
                }
                None => e.u8(KIND_SHIPPED_ALL),
            }
            e.varint(*before);
            e.uvarint(blocks.len() as u64);
            for (tenant, ulid) in blocks {
                e.str(tenant);
                e.str(ulid);
            }
        }
    }
    e.buf
}

/// Decodes any entry.
pub fn decode(payload: &[u8]) -> Result<LogRecord, DecodeError> {
    let Some(&kind) = payload.first() else {
        return Err(DecodeError);
    };
    if kind == KIND_WRITE {
        return decode_write(payload).map(LogRecord::Write);
    }
    let mut d = Dec::new(&payload[1..]);
    let tenant = match kind {
        KIND_SEAL | KIND_SHIPPED => Some(Tenant::new(d.str()?).map_err(|_| DecodeError)?),
        KIND_SEAL_ALL | KIND_SHIPPED_ALL => None,
        _ => return Err(DecodeError),
    };
    let before = d.varint()?;
    if kind == KIND_SEAL || kind == KIND_SEAL_ALL {
        return Ok(LogRecord::Control(ControlRecord::Seal { tenant, before }));
    }
    let n = d.count(2)?;
    let mut blocks = Vec::with_capacity(n);
    for _ in 0..n {
        let t = d.str()?.to_string();
        blocks.push((t, d.str()?.to_string()));
    }
    Ok(LogRecord::Control(ControlRecord::Shipped {
        tenant,
        before,
        blocks,
    }))
}

/// Encodes an entry. `new_series` are created before `samples` are applied.
pub fn encode_write<'a>(
    tenant: &Tenant,
    metadata: &[MetricMetadata],
    new_series: impl ExactSizeIterator<Item = (SeriesId, LabelsRef<'a>)>,
    samples: impl ExactSizeIterator<Item = (SeriesId, &'a [Sample])>,
    size_hint: usize,
) -> Vec<u8> {
    let mut e = Enc {
        buf: Vec::with_capacity(size_hint),
    };
    e.u8(KIND_WRITE);
    e.u8(COMPRESS_NONE);
    e.str(tenant.as_str());
    put_metadata(&mut e, metadata);
    e.uvarint(new_series.len() as u64);
    for (id, labels) in new_series {
        e.uvarint(id as u64);
        e.uvarint(labels.len() as u64);
        for (n, v) in labels.iter_bytes() {
            e.bytes(n);
            e.bytes(v);
        }
    }
    e.uvarint(samples.len() as u64);
    let mut prev = 0i64;
    let mut prev_id = 0i64;
    for (id, ss) in samples {
        e.varint(id as i64 - prev_id);
        prev_id = id as i64;
        e.uvarint(ss.len() as u64);
        for s in ss {
            e.varint(s.t.wrapping_sub(prev));
            prev = s.t;
            e.f64(s.v);
        }
    }
    if e.buf.len() >= COMPRESS_MIN {
        if let Ok(c) = snap::raw::Encoder::new().compress_vec(&e.buf[2..]) {
            if c.len() < e.buf.len() - 2 {
                let mut out = Vec::with_capacity(c.len() + 2);
                out.push(KIND_WRITE);
                out.push(COMPRESS_SNAPPY);
                out.extend_from_slice(&c);
                return out;
            }
        }
    }
    e.buf
}

pub fn decode_write(payload: &[u8]) -> Result<WriteRecord, DecodeError> {
    if payload.len() < 2 || payload[0] != KIND_WRITE {
        return Err(DecodeError);
    }
    let owned;
    let body: &[u8] = match payload[1] {
        COMPRESS_NONE => &payload[2..],
        COMPRESS_SNAPPY => {
            let n = snap::raw::decompress_len(&payload[2..]).map_err(|_| DecodeError)?;
            if n > 1 << 30 {
                return Err(DecodeError);
            }
            owned = snap::raw::Decoder::new()
                .decompress_vec(&payload[2..])
                .map_err(|_| DecodeError)?;
            &owned
        }
        _ => return Err(DecodeError),
    };
    let mut d = Dec::new(body);
    let tenant = Tenant::new(d.str()?).map_err(|_| DecodeError)?;
    let metadata = get_metadata(&mut d)?;
    let nn = d.count(2)?;
    let mut new_series = Vec::with_capacity(nn);
    for _ in 0..nn {
        let id = u32::try_from(d.uvarint()?).map_err(|_| DecodeError)?;
        let nl = d.count(2)?;
        let mut labels = Vec::with_capacity(nl);
        for _ in 0..nl {
            let n = d.str()?;
            let v = d.str()?;
            labels.push(Label::new(n, v));
        }
        if labels.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(DecodeError);
        }
        new_series.push((id, Labels::from_sorted(labels)));
    }
    let ns = d.count(2)?;
    let mut samples = Vec::with_capacity(ns);
    let mut prev = 0i64;
    let mut prev_id = 0i64;
    for _ in 0..ns {
        prev_id = prev_id.checked_add(d.varint()?).ok_or(DecodeError)?;
        let id = u32::try_from(prev_id).map_err(|_| DecodeError)?;
        let n = d.count(9)?;
        let mut ss = Vec::with_capacity(n);
        for _ in 0..n {
            let t = prev.wrapping_add(d.varint()?);
            prev = t;
            ss.push(Sample { t, v: d.f64()? });
        }
        samples.push((id, ss));
    }
    Ok(WriteRecord {
        tenant: Some(tenant),
        metadata,
        new_series,
        samples,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn control_entries_round_trip() {
        let t = Some(Tenant::new("team-a").unwrap());
        for rec in [
            ControlRecord::Seal {
                tenant: None,
                before: -5,
            },
            ControlRecord::Seal {
                tenant: t.clone(),
                before: 9,
            },
            ControlRecord::Shipped {
                tenant: None,
                before: 7_200_000,
                blocks: vec![("a".into(), "01J".into()), ("b".into(), "01K".into())],
            },
            ControlRecord::Shipped {
                tenant: t,
                before: 7_200_000,
                blocks: vec![("team-a".into(), "01J".into())],
            },
        ] {
            match decode(&encode_control(&rec)).unwrap() {
                LogRecord::Control(back) => assert_eq!(back, rec),
                LogRecord::Write(_) => panic!("decoded as a write"),
            }
        }
        assert!(decode(&[4, 2]).is_err());
        assert!(decode(&[6, 0]).is_err());
    }

    use super::*;
    use hearth_core::WriteBatch;

    #[test]
    fn round_trip_and_garbage() {
        let series: Vec<(Labels, Vec<Sample>)> = (0..50)
            .map(|i| {
                (
                    Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]),
                    vec![
                        Sample::new(1000 + i, i as f64),
                        Sample::new(2000 + i, f64::NAN),
                    ],
                )
            })
            .collect();
        let batch = WriteBatch::from_series(&series);
        let md = vec![MetricMetadata {
            metric_family: "m".into(),
            metric_type: "gauge".into(),
            help: "h".into(),
            unit: "".into(),
        }];
        let t = Tenant::new("t1").unwrap();
        let enc = encode_write(
            &t,
            &md,
            batch
                .iter()
                .enumerate()
                .take(10)
                .map(|(i, s)| (i as u32, s.labels)),
            batch.iter().enumerate().map(|(i, s)| (i as u32, s.samples)),
            0,
        );
        let r = decode_write(&enc).unwrap();
        assert_eq!(r.tenant, Some(t));
        assert_eq!(r.new_series.len(), 10);
        assert_eq!(r.new_series[7], (7, series[7].0.clone()));
        assert_eq!(r.samples.len(), 50);
        assert_eq!(r.samples[7].1[0], series[7].1[0]);
        assert!(r.samples[7].1[1].v.is_nan());
        assert_eq!(r.metadata, md);
        for cut in 0..enc.len() {
            let _ = decode_write(&enc[..cut]);
        }
    }
}
