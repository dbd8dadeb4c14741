//! Remote-write bodies to validated batches.
//!
//! Every input is hostile: sizes are checked before allocating (snappy's declared
//! length against the limit), protobuf errors become 400s, and one bad series never
//! costs the valid rest of the request.

use hearth_core::{MetricMetadata, Sample, WriteBatch, WriteSeries};
use hearth_proto::{prometheus as pb, write_v2};
use prost::Message;

use crate::validate::{validate_labels, Limits};

/// Which message a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `prometheus.WriteRequest`
    V1,
    /// `io.prometheus.write.v2.Request`
    V2,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The decompressed body would exceed the limit (413).
    TooLarge { limit: usize, size: usize },
    /// Bad snappy or protobuf (400).
    Malformed(String),
}

/// A decoded request: the valid series, and the first problem with the rest.
#[derive(Debug, Default)]
pub struct Decoded {
    pub batch: WriteBatch,
    pub invalid_series: usize,
    pub first_error: Option<String>,
    pub histograms_rejected: usize,
    pub exemplars_received: usize,
}

impl Decoded {
    fn reject(&mut self, msg: String) {
        self.invalid_series += 1;
        if self.first_error.is_none() {
            self.first_error = Some(msg);
        }
    }
}

/// Snappy block format, bounded by `max_decompressed`.
pub fn decompress(body: &[u8], max_decompressed: usize) -> Result<Vec<u8>, DecodeError> {
    let n = snap::raw::decompress_len(body)
        .map_err(|e| DecodeError::Malformed(format!("snappy: {e}")))?;
    if n > max_decompressed {
        return Err(DecodeError::TooLarge {
            limit: max_decompressed,
            size: n,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Malformed(format!("snappy: {e}")))
}

pub fn decode_request(
    protocol: Protocol,
    snappy_body: &[u8],
    max_decompressed: usize,
    limits: &Limits,
) -> Result<Decoded, DecodeError> {
    let raw = decompress(snappy_body, max_decompressed)?;
    match protocol {
        Protocol::V1 => decode_v1(&raw, limits),
        Protocol::V2 => decode_v2(&raw, limits),
    }
}

fn metric_type_v1(t: i32) -> &'static str {
    use pb::metric_metadata::MetricType as T;
    match T::try_from(t).unwrap_or(T::Unknown) {
        T::Counter => "counter",
        T::Gauge => "gauge",
        T::Histogram => "histogram",
        T::Gaugehistogram => "gaugehistogram",
        T::Summary => "summary",
        T::Info => "info",
        T::Stateset => "stateset",
        T::Unknown => "unknown",
    }
}

fn metric_type_v2(t: i32) -> &'static str {
    use write_v2::metadata::MetricType as T;
    match T::try_from(t).unwrap_or(T::Unspecified) {
        T::Counter => "counter",
        T::Gauge => "gauge",
        T::Histogram => "histogram",
        T::Gaugehistogram => "gaugehistogram",
        T::Summary => "summary",
        T::Info => "info",
        T::Stateset => "stateset",
        T::Unspecified => "unknown",
    }
}

pub fn decode_v1(raw: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let req = pb::WriteRequest::decode(raw)
        .map_err(|e| DecodeError::Malformed(format!("protobuf: {e}")))?;
    let mut out = Decoded::default();
    for m in req.metadata {
        out.batch.metadata.push(MetricMetadata {
            metric_type: metric_type_v1(m.r#type).to_string(),
            metric_family: m.metric_family_name,
            help: m.help,
            unit: m.unit,
        });
    }
    for ts in req.timeseries {
        out.exemplars_received += ts.exemplars.len();
        let pairs = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        let labels = match validate_labels(pairs, limits) {
            Ok(l) => l,
            Err(e) => {
                out.reject(e.0);
                continue;
            }
        };
        if !ts.histograms.is_empty() {
            out.histograms_rejected += ts.histograms.len();
            out.reject(format!(
                "native histogram samples are not supported yet: series {labels}"
            ));
        }
        if ts.samples.is_empty() {
            continue;
        }
        out.batch.series.push(WriteSeries {
            labels,
            samples: ts
                .samples
                .into_iter()
                .map(|s| Sample::new(s.timestamp, s.value))
                .collect(),
        });
    }
    Ok(out)
}

pub fn decode_v2(raw: &[u8], limits: &Limits) -> Result<Decoded, DecodeError> {
    let req = write_v2::Request::decode(raw)
        .map_err(|e| DecodeError::Malformed(format!("protobuf: {e}")))?;
    let symbols = req.symbols;
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(DecodeError::Malformed(
            "symbols table must start with the empty string".into(),
        ));
    }
    let sym = |r: u32| -> Option<&str> { symbols.get(r as usize).map(String::as_str) };
    let mut out = Decoded::default();
    for ts in req.timeseries {
        out.exemplars_received += ts.exemplars.len();
        if ts.labels_refs.len() % 2 != 0 {
            out.reject("labels_refs has an odd length".into());
            continue;
        }
        let mut pairs = Vec::with_capacity(ts.labels_refs.len() / 2);
        let mut bad_ref = None;
        for p in ts.labels_refs.chunks_exact(2) {
            match (sym(p[0]), sym(p[1])) {
                (Some(n), Some(v)) => pairs.push((n.to_string(), v.to_string())),
                _ => {
                    bad_ref = Some(p[0].max(p[1]));
                    break;
                }
            }
        }
        if let Some(r) = bad_ref {
            out.reject(format!(
                "label reference {r} is outside the symbols table of {} entries",
                symbols.len()
            ));
            continue;
        }
        let labels = match validate_labels(pairs, limits) {
            Ok(l) => l,
            Err(e) => {
                out.reject(e.0);
                continue;
            }
        };
        if let Some(md) = &ts.metadata {
            let help = sym(md.help_ref).unwrap_or("").to_string();
            let unit = sym(md.unit_ref).unwrap_or("").to_string();
            if md.r#type != 0 || !help.is_empty() || !unit.is_empty() {
                let family = labels.metric_name().unwrap_or("").to_string();
                let m = MetricMetadata {
                    metric_family: family,
                    metric_type: metric_type_v2(md.r#type).to_string(),
                    help,
                    unit,
                };
                if !out.batch.metadata.contains(&m) {
                    out.batch.metadata.push(m);
                }
            }
        }
        if !ts.histograms.is_empty() {
            out.histograms_rejected += ts.histograms.len();
            out.reject(format!(
                "native histogram samples are not supported yet: series {labels}"
            ));
        }
        if ts.samples.is_empty() {
            continue;
        }
        out.batch.series.push(WriteSeries {
            labels,
            samples: ts
                .samples
                .into_iter()
                .map(|s| Sample::new(s.timestamp, s.value))
                .collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snappy(b: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(b).unwrap()
    }

    fn v1_body() -> Vec<u8> {
        let req = pb::WriteRequest {
            timeseries: vec![
                pb::TimeSeries {
                    labels: vec![
                        pb::Label { name: "job".into(), value: "a".into() },
                        pb::Label { name: "__name__".into(), value: "up".into() },
                    ],
                    samples: vec![pb::Sample { value: 1.0, timestamp: 1000 }],
                    ..Default::default()
                },
                pb::TimeSeries {
                    labels: vec![pb::Label { name: "bad-name".into(), value: "x".into() }],
                    samples: vec![pb::Sample { value: 1.0, timestamp: 1000 }],
                    ..Default::default()
                },
            ],
            metadata: vec![],
        };
        snappy(&req.encode_to_vec())
    }

    #[test]
    fn v1_partial() {
        let d = decode_request(Protocol::V1, &v1_body(), 1 << 20, &Limits::default()).unwrap();
        assert_eq!(d.batch.series.len(), 1);
        assert_eq!(d.invalid_series, 1);
        assert!(d.first_error.unwrap().contains("missing metric name"));
    }

    #[test]
    fn v2_symbols() {
        let req = write_v2::Request {
            symbols: vec!["".into(), "__name__".into(), "up".into(), "job".into(), "a".into(), "help!".into()],
            timeseries: vec![write_v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![write_v2::Sample { value: 2.0, timestamp: 5 }],
                metadata: Some(write_v2::Metadata { r#type: 2, help_ref: 5, unit_ref: 0 }),
                ..Default::default()
            }, write_v2::TimeSeries {
                labels_refs: vec![1, 99],
                samples: vec![write_v2::Sample { value: 2.0, timestamp: 5 }],
                ..Default::default()
            }],
        };
        let d = decode_request(Protocol::V2, &snappy(&req.encode_to_vec()), 1 << 20, &Limits::default()).unwrap();
        assert_eq!(d.batch.series.len(), 1);
        assert_eq!(d.batch.series[0].labels.to_string(), r#"up{job="a"}"#);
        assert_eq!(d.batch.metadata[0].metric_type, "gauge");
        assert_eq!(d.batch.metadata[0].help, "help!");
        assert!(d.first_error.unwrap().contains("outside the symbols table"));
    }

    #[test]
    fn hostile_bodies() {
        let l = Limits::default();
        assert!(matches!(decode_request(Protocol::V1, b"garbage", 1 << 20, &l), Err(DecodeError::Malformed(_))));
        let body = v1_body();
        for cut in 0..body.len() {
            let _ = decode_request(Protocol::V1, &body[..cut], 1 << 20, &l);
            let _ = decode_request(Protocol::V2, &body[..cut], 1 << 20, &l);
        }
        let big = snappy(&vec![0u8; 2 << 20]);
        assert!(matches!(decode_request(Protocol::V1, &big, 1 << 20, &l), Err(DecodeError::TooLarge { .. })));
    }
}
