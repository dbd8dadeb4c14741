//! Remote-write bodies to validated batches.
//!
//! Every input is hostile: sizes are checked before allocating (snappy's declared
//! length against the limit), protobuf errors become 400s, and one bad series never
//! costs the valid rest of the request.

use hearth_core::{ArenaLabel, ArenaSeries, MetricMetadata, Sample, WriteBatch};

use crate::pbwire::{Reader, WireError, FIXED64, LEN, VARINT};
use crate::validate::{describe, validate_series, Limits};

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
        Protocol::V1 => decode_v1(raw, limits),
        Protocol::V2 => decode_v2(raw, limits),
    }
}

fn metric_type_name(t: u64) -> &'static str {
    // The same numbering in remote-write 1.0 and 2.0.
    match t {
        1 => "counter",
        2 => "gauge",
        3 => "histogram",
        4 => "gaugehistogram",
        5 => "summary",
        6 => "info",
        7 => "stateset",
        _ => "unknown",
    }
}

fn wire(e: WireError) -> DecodeError {
    DecodeError::Malformed(format!("protobuf: {}", e.0))
}

fn utf8(buf: &[u8], r: (usize, usize)) -> Result<&str, DecodeError> {
    std::str::from_utf8(&buf[r.0..r.1])
        .map_err(|_| DecodeError::Malformed("protobuf: string field is not valid UTF-8".into()))
}

/// Tables a decoder fills while it borrows the buffer; turned into a batch at the end.
#[derive(Default)]
struct Tables {
    labels: Vec<ArenaLabel>,
    series: Vec<ArenaSeries>,
    samples: Vec<Sample>,
}

impl Tables {
    /// Validates one series' labels and keeps it if it has samples.
    fn finish_series(
        &mut self,
        buf: &[u8],
        scratch: &mut Vec<ArenaLabel>,
        samples: &[Sample],
        histograms: usize,
        limits: &Limits,
        out: &mut Decoded,
    ) {
        let hash = match validate_series(buf, scratch, limits) {
            Ok(h) => h,
            Err(e) => {
                out.reject(e.0);
                return;
            }
        };
        if histograms > 0 {
            out.histograms_rejected += histograms;
            out.reject(format!(
                "native histogram samples are not supported yet: series {}",
                describe(buf, scratch)
            ));
        }
        if samples.is_empty() {
            return;
        }
        self.labels.extend_from_slice(scratch);
        let before = self.samples.len();
        for s in samples {
            if s.t > limits.max_timestamp_ms {
                out.reject(format!(
                    "sample timestamp too far in the future (more than validation.create-grace-period after now): series {}, timestamp {}",
                    describe(buf, scratch),
                    s.t
                ));
                continue;
            }
            self.samples.push(*s);
        }
        if self.samples.len() == before {
            self.labels.truncate(self.labels.len() - scratch.len());
            return;
        }
        self.series.push(ArenaSeries {
            labels_end: self.labels.len() as u32,
            samples_end: self.samples.len() as u32,
            hash,
        });
    }
}

fn pos(r: (usize, usize)) -> (u32, u32) {
    (r.0 as u32, r.1 as u32)
}

/// `prometheus.Sample` / `io.prometheus.write.v2.Sample`: value 1 (double), timestamp 2.
fn read_sample(r: &mut Reader<'_>) -> Result<Sample, WireError> {
    let mut s = Sample { t: 0, v: 0.0 };
    while !r.eof() {
        let (f, wt) = r.key()?;
        match (f, wt) {
            (1, FIXED64) => s.v = f64::from_bits(r.fixed64()?),
            (2, VARINT) => s.t = r.varint()? as i64,
            _ => r.skip(wt)?,
        }
    }
    Ok(s)
}

/// Label positions are u32 offsets into the body.
fn offsets_fit(raw: &[u8]) -> Result<(), DecodeError> {
    if raw.len() > u32::MAX as usize {
        return Err(DecodeError::TooLarge {
            limit: u32::MAX as usize,
            size: raw.len(),
        });
    }
    Ok(())
}

pub fn decode_v1(raw: Vec<u8>, limits: &Limits) -> Result<Decoded, DecodeError> {
    offsets_fit(&raw)?;
    let mut out = Decoded::default();
    let mut t = Tables::default();
    let mut metadata = Vec::new();
    {
        let buf = &raw[..];
        let mut scratch: Vec<ArenaLabel> = Vec::with_capacity(16);
        let mut samples: Vec<Sample> = Vec::with_capacity(4);
        let mut r = Reader::new(buf);
        while !r.eof() {
            let (f, wt) = r.key().map_err(wire)?;
            match f {
                1 => {
                    Reader::expect(wt, LEN).map_err(wire)?;
                    let (s0, s1) = r.len_delimited().map_err(wire)?;
                    let mut ts = r.sub(s0, s1);
                    scratch.clear();
                    samples.clear();
                    let mut histograms = 0;
                    while !ts.eof() {
                        let (f, wt) = ts.key().map_err(wire)?;
                        match f {
                            1 => {
                                Reader::expect(wt, LEN).map_err(wire)?;
                                let (l0, l1) = ts.len_delimited().map_err(wire)?;
                                let mut lr = ts.sub(l0, l1);
                                let (mut name, mut value) = ((l0, l0), (l0, l0));
                                while !lr.eof() {
                                    let (f, wt) = lr.key().map_err(wire)?;
                                    match (f, wt) {
                                        (1, LEN) => name = lr.len_delimited().map_err(wire)?,
                                        (2, LEN) => value = lr.len_delimited().map_err(wire)?,
                                        _ => lr.skip(wt).map_err(wire)?,
                                    }
                                }
                                scratch.push(ArenaLabel {
                                    name: pos(name),
                                    value: pos(value),
                                });
                            }
                            2 => {
                                Reader::expect(wt, LEN).map_err(wire)?;
                                let (a, b) = ts.len_delimited().map_err(wire)?;
                                samples.push(read_sample(&mut ts.sub(a, b)).map_err(wire)?);
                            }
                            3 => {
                                out.exemplars_received += 1;
                                ts.skip(wt).map_err(wire)?;
                            }
                            4 => {
                                histograms += 1;
                                ts.skip(wt).map_err(wire)?;
                            }
                            _ => ts.skip(wt).map_err(wire)?,
                        }
                    }
                    t.finish_series(buf, &mut scratch, &samples, histograms, limits, &mut out);
                }
                3 => {
                    Reader::expect(wt, LEN).map_err(wire)?;
                    let (a, b) = r.len_delimited().map_err(wire)?;
                    let mut mr = r.sub(a, b);
                    let mut m = MetricMetadata {
                        metric_family: String::new(),
                        metric_type: "unknown".into(),
                        help: String::new(),
                        unit: String::new(),
                    };
                    while !mr.eof() {
                        let (f, wt) = mr.key().map_err(wire)?;
                        match (f, wt) {
                            (1, VARINT) => {
                                m.metric_type = metric_type_name(mr.varint().map_err(wire)?).into()
                            }
                            (2, LEN) => {
                                m.metric_family =
                                    utf8(buf, mr.len_delimited().map_err(wire)?)?.into()
                            }
                            (4, LEN) => {
                                m.help = utf8(buf, mr.len_delimited().map_err(wire)?)?.into()
                            }
                            (5, LEN) => {
                                m.unit = utf8(buf, mr.len_delimited().map_err(wire)?)?.into()
                            }
                            _ => mr.skip(wt).map_err(wire)?,
                        }
                    }
                    metadata.push(m);
                }
                _ => r.skip(wt).map_err(wire)?,
            }
        }
    }
    out.batch = WriteBatch::from_arena_parts(raw, t.labels, t.series, t.samples);
    out.batch.metadata = metadata;
    Ok(out)
}

pub fn decode_v2(raw: Vec<u8>, limits: &Limits) -> Result<Decoded, DecodeError> {
    offsets_fit(&raw)?;
    let mut out = Decoded::default();
    let mut t = Tables::default();
    let mut metadata: Vec<MetricMetadata> = Vec::new();
    let mut seen_metadata: std::collections::HashSet<MetricMetadata> =
        std::collections::HashSet::new();
    {
        let buf = &raw[..];
        // Pass 1: the symbol table (it may come after the series on the wire).
        let mut symbols: Vec<(usize, usize)> = Vec::new();
        let mut r = Reader::new(buf);
        while !r.eof() {
            let (f, wt) = r.key().map_err(wire)?;
            if f == 4 {
                Reader::expect(wt, LEN).map_err(wire)?;
                let s = r.len_delimited().map_err(wire)?;
                utf8(buf, s)?;
                symbols.push(s);
            } else {
                r.skip(wt).map_err(wire)?;
            }
        }
        if symbols.first().is_some_and(|s| s.0 != s.1) {
            return Err(DecodeError::Malformed(
                "symbols table must start with the empty string".into(),
            ));
        }
        let sym = |i: u64| symbols.get(i as usize).copied();
        // Pass 2: the series.
        let mut scratch: Vec<ArenaLabel> = Vec::with_capacity(16);
        let mut samples: Vec<Sample> = Vec::with_capacity(4);
        let mut refs: Vec<u64> = Vec::with_capacity(32);
        let mut r = Reader::new(buf);
        while !r.eof() {
            let (f, wt) = r.key().map_err(wire)?;
            if f != 5 {
                r.skip(wt).map_err(wire)?;
                continue;
            }
            Reader::expect(wt, LEN).map_err(wire)?;
            let (s0, s1) = r.len_delimited().map_err(wire)?;
            let mut ts = r.sub(s0, s1);
            scratch.clear();
            samples.clear();
            refs.clear();
            let mut histograms = 0;
            let mut md: Option<(u64, u64, u64)> = None;
            while !ts.eof() {
                let (f, wt) = ts.key().map_err(wire)?;
                match (f, wt) {
                    (1, LEN) => {
                        // Packed refs.
                        let (a, b) = ts.len_delimited().map_err(wire)?;
                        let mut pr = ts.sub(a, b);
                        while !pr.eof() {
                            refs.push(pr.varint().map_err(wire)?);
                        }
                    }
                    (1, VARINT) => refs.push(ts.varint().map_err(wire)?),
                    (2, LEN) => {
                        let (a, b) = ts.len_delimited().map_err(wire)?;
                        samples.push(read_sample(&mut ts.sub(a, b)).map_err(wire)?);
                    }
                    (3, _) => {
                        histograms += 1;
                        ts.skip(wt).map_err(wire)?;
                    }
                    (4, _) => {
                        out.exemplars_received += 1;
                        ts.skip(wt).map_err(wire)?;
                    }
                    (5, LEN) => {
                        let (a, b) = ts.len_delimited().map_err(wire)?;
                        let mut mr = ts.sub(a, b);
                        let mut m = (0u64, 0u64, 0u64);
                        while !mr.eof() {
                            let (f, wt) = mr.key().map_err(wire)?;
                            match (f, wt) {
                                (1, VARINT) => m.0 = mr.varint().map_err(wire)?,
                                (3, VARINT) => m.1 = mr.varint().map_err(wire)?,
                                (4, VARINT) => m.2 = mr.varint().map_err(wire)?,
                                _ => mr.skip(wt).map_err(wire)?,
                            }
                        }
                        md = Some(m);
                    }
                    _ => ts.skip(wt).map_err(wire)?,
                }
            }
            if !refs.len().is_multiple_of(2) {
                out.reject("labels_refs has an odd length".into());
                continue;
            }
            let mut bad_ref = None;
            for p in refs.chunks_exact(2) {
                match (sym(p[0]), sym(p[1])) {
                    (Some(n), Some(v)) => scratch.push(ArenaLabel {
                        name: pos(n),
                        value: pos(v),
                    }),
                    _ => {
                        bad_ref = Some(p[0].max(p[1]));
                        break;
                    }
                }
            }
            if let Some(bad) = bad_ref {
                out.reject(format!(
                    "label reference {bad} is outside the symbols table of {} entries",
                    symbols.len()
                ));
                continue;
            }
            if let Some((ty, help, unit)) = md {
                let help = sym(help).map(|s| utf8(buf, s)).transpose()?.unwrap_or("");
                let unit = sym(unit).map(|s| utf8(buf, s)).transpose()?.unwrap_or("");
                let family = scratch
                    .iter()
                    .find(|l| &buf[l.name.0 as usize..l.name.1 as usize] == b"__name__")
                    .map(|l| {
                        String::from_utf8_lossy(&buf[l.value.0 as usize..l.value.1 as usize])
                            .into_owned()
                    });
                if let Some(family) = family {
                    if ty != 0 || !help.is_empty() || !unit.is_empty() {
                        let m = MetricMetadata {
                            metric_family: family,
                            metric_type: metric_type_name(ty).into(),
                            help: help.into(),
                            unit: unit.into(),
                        };
                        // A set, not `metadata.contains`: a crafted request with
                        // many families made that quadratic.
                        if seen_metadata.insert(m.clone()) {
                            metadata.push(m);
                        }
                    }
                }
            }
            t.finish_series(buf, &mut scratch, &samples, histograms, limits, &mut out);
        }
    }
    out.batch = WriteBatch::from_arena_parts(raw, t.labels, t.series, t.samples);
    out.batch.metadata = metadata;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::{prometheus as pb, write_v2};
    use prost::Message;

    fn snappy(b: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(b).unwrap()
    }

    fn v1_body() -> Vec<u8> {
        let req = pb::WriteRequest {
            timeseries: vec![
                pb::TimeSeries {
                    labels: vec![
                        pb::Label {
                            name: "job".into(),
                            value: "a".into(),
                        },
                        pb::Label {
                            name: "__name__".into(),
                            value: "up".into(),
                        },
                    ],
                    samples: vec![pb::Sample {
                        value: 1.0,
                        timestamp: 1000,
                    }],
                    ..Default::default()
                },
                pb::TimeSeries {
                    labels: vec![pb::Label {
                        name: "bad-name".into(),
                        value: "x".into(),
                    }],
                    samples: vec![pb::Sample {
                        value: 1.0,
                        timestamp: 1000,
                    }],
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
        assert_eq!(d.batch.len(), 1);
        assert_eq!(d.invalid_series, 1);
        assert!(d.first_error.unwrap().contains("missing metric name"));
    }

    #[test]
    fn v2_symbols() {
        let req = write_v2::Request {
            symbols: vec![
                "".into(),
                "__name__".into(),
                "up".into(),
                "job".into(),
                "a".into(),
                "help!".into(),
            ],
            timeseries: vec![
                write_v2::TimeSeries {
                    labels_refs: vec![1, 2, 3, 4],
                    samples: vec![write_v2::Sample {
                        value: 2.0,
                        timestamp: 5,
                    }],
                    metadata: Some(write_v2::Metadata {
                        r#type: 2,
                        help_ref: 5,
                        unit_ref: 0,
                    }),
                    ..Default::default()
                },
                write_v2::TimeSeries {
                    labels_refs: vec![1, 99],
                    samples: vec![write_v2::Sample {
                        value: 2.0,
                        timestamp: 5,
                    }],
                    ..Default::default()
                },
            ],
        };
        let d = decode_request(
            Protocol::V2,
            &snappy(&req.encode_to_vec()),
            1 << 20,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(d.batch.len(), 1);
        assert_eq!(d.batch.get(0).labels.to_string(), r#"up{job="a"}"#);
        assert_eq!(d.batch.metadata[0].metric_type, "gauge");
        assert_eq!(d.batch.metadata[0].help, "help!");
        assert!(d.first_error.unwrap().contains("outside the symbols table"));
    }

    /// Metadata of many distinct families (the fuzz corpus' crafted request): each kept
    /// once, in order; repeats of one family collapse.
    #[test]
    fn v2_metadata_families_are_deduplicated() {
        let n = 20_000u32;
        let mut symbols = vec!["".to_string(), "__name__".to_string()];
        symbols.extend((0..n).map(|i| format!("f{i}")));
        let series = |i: u32| write_v2::TimeSeries {
            labels_refs: vec![1, 2 + i],
            metadata: Some(write_v2::Metadata {
                r#type: 1,
                help_ref: 0,
                unit_ref: 0,
            }),
            ..Default::default()
        };
        let mut timeseries: Vec<_> = (0..n).map(series).collect();
        timeseries.extend((0..10).map(|_| series(7)));
        let req = write_v2::Request {
            symbols,
            timeseries,
        };
        let d = decode_request(
            Protocol::V2,
            &snappy(&req.encode_to_vec()),
            10 << 20,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(d.batch.metadata.len(), n as usize);
        assert_eq!(d.batch.metadata[7].metric_family, "f7");
        assert_eq!(d.batch.metadata[7].metric_type, "counter");
    }

    /// Samples too far after the receiving clock are refused, the rest of the series
    /// kept.
    #[test]
    fn future_samples_are_refused() {
        let req = pb::WriteRequest {
            timeseries: vec![pb::TimeSeries {
                labels: vec![pb::Label {
                    name: "__name__".into(),
                    value: "up".into(),
                }],
                samples: vec![
                    pb::Sample {
                        value: 1.0,
                        timestamp: 1_000,
                    },
                    pb::Sample {
                        value: 2.0,
                        timestamp: 1_000_000_000,
                    },
                ],
                ..Default::default()
            }],
            metadata: vec![],
        };
        let limits = Limits {
            max_timestamp_ms: 600_000,
            ..Limits::default()
        };
        let d = decode_request(
            Protocol::V1,
            &snappy(&req.encode_to_vec()),
            1 << 20,
            &limits,
        )
        .unwrap();
        assert_eq!(d.batch.sample_count(), 1);
        assert!(d.first_error.unwrap().contains("too far in the future"));
    }

    /// The hand-written wire reader against prost on many generated requests.
    #[test]
    fn agrees_with_prost() {
        let mut x: u64 = 7;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..200 {
            let mut req = pb::WriteRequest::default();
            for i in 0..rnd(20) {
                let mut labels = vec![pb::Label {
                    name: "__name__".into(),
                    value: format!("m{}", rnd(5)),
                }];
                for j in 0..rnd(6) {
                    labels.push(pb::Label {
                        name: format!("l{j}"),
                        value: format!("v{}é", rnd(3)),
                    });
                }
                let samples = (0..rnd(4))
                    .map(|k| pb::Sample {
                        value: (i * k) as f64 / 3.0,
                        timestamp: (k as i64) * 15_000 - 7,
                    })
                    .collect();
                req.timeseries.push(pb::TimeSeries {
                    labels,
                    samples,
                    ..Default::default()
                });
            }
            let raw = req.encode_to_vec();
            let d = decode_v1(raw, &Limits::default()).unwrap();
            let want: Vec<_> = req
                .timeseries
                .iter()
                .filter(|t| !t.samples.is_empty())
                .collect();
            assert_eq!(d.batch.len(), want.len());
            for (got, want) in d.batch.iter().zip(want) {
                let mut pairs: Vec<(String, String)> = want
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                pairs.sort();
                let got_pairs: Vec<(String, String)> = got
                    .labels
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                assert_eq!(got_pairs, pairs);
                assert_eq!(got.samples.len(), want.samples.len());
                for (a, b) in got.samples.iter().zip(&want.samples) {
                    assert_eq!(a.t, b.timestamp);
                    assert_eq!(a.v.to_bits(), b.value.to_bits());
                }
                assert_eq!(got.hash, got.labels.to_labels().hash64());
            }
        }
    }

    #[test]
    fn hostile_bodies() {
        let l = Limits::default();
        assert!(matches!(
            decode_request(Protocol::V1, b"garbage", 1 << 20, &l),
            Err(DecodeError::Malformed(_))
        ));
        let body = v1_body();
        for cut in 0..body.len() {
            let _ = decode_request(Protocol::V1, &body[..cut], 1 << 20, &l);
            let _ = decode_request(Protocol::V2, &body[..cut], 1 << 20, &l);
        }
        let big = snappy(&vec![0u8; 2 << 20]);
        assert!(matches!(
            decode_request(Protocol::V1, &big, 1 << 20, &l),
            Err(DecodeError::TooLarge { .. })
        ));
    }
}
