//! The payload of a log entry: one committed write batch of one tenant.
//!
//! Layout: a kind byte, a compression byte (0 none, 1 snappy), then the body: tenant,
//! metadata, and per series its labels and samples (timestamps delta-encoded as
//! varints, values as raw 64-bit floats, so staleness markers survive bit for bit).

use hearth_core::{Labels, LabelsBuilder, MetricMetadata, Sample, Tenant, WriteBatch, WriteSeries};

use crate::codec::{Dec, DecodeError, Enc};

const KIND_WRITE: u8 = 1;
const COMPRESS_NONE: u8 = 0;
const COMPRESS_SNAPPY: u8 = 1;

pub fn encode_write(tenant: &Tenant, batch: &WriteBatch) -> Vec<u8> {
    let mut e = Enc::default();
    e.str(tenant.as_str());
    e.uvarint(batch.metadata.len() as u64);
    for m in &batch.metadata {
        e.str(&m.metric_family);
        e.str(&m.metric_type);
        e.str(&m.help);
        e.str(&m.unit);
    }
    e.uvarint(batch.series.len() as u64);
    for s in &batch.series {
        e.uvarint(s.labels.len() as u64);
        for l in &s.labels {
            e.str(&l.name);
            e.str(&l.value);
        }
        e.uvarint(s.samples.len() as u64);
        let mut prev = 0i64;
        for smp in &s.samples {
            e.varint(smp.t.wrapping_sub(prev));
            prev = smp.t;
            e.f64(smp.v);
        }
    }
    let body = e.buf;
    let mut out = Vec::with_capacity(body.len() / 2 + 8);
    out.push(KIND_WRITE);
    if body.len() > 256 {
        if let Ok(c) = snap::raw::Encoder::new().compress_vec(&body) {
            out.push(COMPRESS_SNAPPY);
            out.extend_from_slice(&c);
            return out;
        }
    }
    out.push(COMPRESS_NONE);
    out.extend_from_slice(&body);
    out
}

pub fn decode_write(payload: &[u8]) -> Result<(Tenant, WriteBatch), DecodeError> {
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
    let nm = d.count(4)?;
    let mut metadata = Vec::with_capacity(nm);
    for _ in 0..nm {
        metadata.push(MetricMetadata {
            metric_family: d.str()?.to_string(),
            metric_type: d.str()?.to_string(),
            help: d.str()?.to_string(),
            unit: d.str()?.to_string(),
        });
    }
    let ns = d.count(2)?;
    let mut series = Vec::with_capacity(ns);
    for _ in 0..ns {
        let nl = d.count(2)?;
        let mut b = LabelsBuilder::new();
        for _ in 0..nl {
            let n = d.str()?;
            let v = d.str()?;
            b.set(n, v);
        }
        let labels: Labels = b.build();
        let nsmp = d.count(9)?;
        let mut samples = Vec::with_capacity(nsmp);
        let mut prev = 0i64;
        for _ in 0..nsmp {
            let t = prev.wrapping_add(d.varint()?);
            prev = t;
            samples.push(Sample { t, v: d.f64()? });
        }
        series.push(WriteSeries { labels, samples });
    }
    Ok((tenant, WriteBatch { series, metadata }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let batch = WriteBatch {
            series: (0..50)
                .map(|i| WriteSeries {
                    labels: Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]),
                    samples: vec![Sample::new(1000 + i, i as f64), Sample::new(2000 + i, f64::NAN)],
                })
                .collect(),
            metadata: vec![MetricMetadata {
                metric_family: "m".into(),
                metric_type: "gauge".into(),
                help: "h".into(),
                unit: "".into(),
            }],
        };
        let t = Tenant::new("t1").unwrap();
        let enc = encode_write(&t, &batch);
        let (t2, b2) = decode_write(&enc).unwrap();
        assert_eq!(t2, t);
        assert_eq!(b2.series.len(), 50);
        assert_eq!(b2.series[7].labels, batch.series[7].labels);
        assert_eq!(b2.series[7].samples[0], batch.series[7].samples[0]);
        assert!(b2.series[7].samples[1].v.is_nan());
        assert_eq!(b2.metadata, batch.metadata);
        for cut in 0..enc.len() {
            let _ = decode_write(&enc[..cut]);
        }
    }
}
