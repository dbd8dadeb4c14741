//! hearth-core types <-> `hearth.storage` / `prometheus` messages. Everything read off
//! the wire is checked here: a bad matcher or tenant is `InvalidArgument`, never a panic.

use std::sync::Arc;

use hearth_core::{
    ChunkEncoding, EncodedChunk, Label, Labels, MatchOp, Matcher, Sample, SelectHints, Series,
    SeriesData, StorageError, Tenant,
};
use hearth_proto::prometheus as pb;
use hearth_proto::storage as sp;
use tonic::{Code, Status};

pub fn matchers_to_wire(matchers: &[Matcher]) -> Vec<pb::LabelMatcher> {
    matchers
        .iter()
        .map(|m| pb::LabelMatcher {
            r#type: match m.op {
                MatchOp::Equal => pb::label_matcher::Type::Eq,
                MatchOp::NotEqual => pb::label_matcher::Type::Neq,
                MatchOp::RegexMatch => pb::label_matcher::Type::Re,
                MatchOp::RegexNoMatch => pb::label_matcher::Type::Nre,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

pub fn matchers_from_wire(wire: &[pb::LabelMatcher]) -> Result<Vec<Matcher>, Status> {
    wire.iter()
        .map(|m| {
            let op = match pb::label_matcher::Type::try_from(m.r#type) {
                Ok(pb::label_matcher::Type::Eq) => MatchOp::Equal,
                Ok(pb::label_matcher::Type::Neq) => MatchOp::NotEqual,
                Ok(pb::label_matcher::Type::Re) => MatchOp::RegexMatch,
                Ok(pb::label_matcher::Type::Nre) => MatchOp::RegexNoMatch,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown matcher type {}",
                        m.r#type
                    )))
                }
            };
            Matcher::new(op, &m.name, &m.value).map_err(|e| Status::invalid_argument(e.to_string()))
        })
        .collect()
}

pub fn tenant_from_wire(tenant: &str) -> Result<Tenant, Status> {
    Tenant::new(tenant).map_err(|e| Status::invalid_argument(format!("tenant: {e}")))
}

pub fn hints_to_wire(h: &SelectHints) -> pb::ReadHints {
    pb::ReadHints {
        step_ms: h.step,
        func: h.func.clone().unwrap_or_default(),
        start_ms: h.start,
        end_ms: h.end,
        grouping: h.grouping.clone(),
        by: h.by,
        range_ms: h.range,
    }
}

pub fn hints_from_wire(h: Option<pb::ReadHints>) -> SelectHints {
    let Some(h) = h else {
        return SelectHints::default();
    };
    SelectHints {
        start: h.start_ms,
        end: h.end_ms,
        step: h.step_ms,
        range: h.range_ms,
        func: (!h.func.is_empty()).then_some(h.func),
        grouping: h.grouping,
        by: h.by,
        // Over the wire series always come sorted: the receiving side merges them.
        unsorted: false,
        // Carried beside the hints (SelectRequest.max_resolution_ms).
        max_resolution: 0,
    }
}

pub fn series_to_wire(s: &Series) -> sp::SelectResponse {
    let labels = s
        .labels
        .iter()
        .map(|l| pb::Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect();
    let (chunks, samples) = match &s.data {
        SeriesData::Chunks(cs) => (
            cs.iter()
                .map(|c| pb::Chunk {
                    min_time_ms: c.min_t,
                    max_time_ms: c.max_t,
                    r#type: match c.encoding {
                        ChunkEncoding::Xor => pb::chunk::Encoding::Xor as i32,
                    },
                    data: c.data.to_vec(),
                })
                .collect(),
            Vec::new(),
        ),
        SeriesData::Samples(ss) => (
            Vec::new(),
            ss.iter()
                .map(|s| pb::Sample {
                    value: s.v,
                    timestamp: s.t,
                })
                .collect(),
        ),
    };
    sp::SelectResponse {
        labels,
        chunks,
        samples,
    }
}

/// A series off the wire. Labels must be sorted and unique, chunks XOR; anything else is
/// a broken peer and an error, not a panic.
pub fn series_from_wire(r: sp::SelectResponse) -> Result<Series, StorageError> {
    let labels: Vec<Label> = r
        .labels
        .into_iter()
        .map(|l| Label::new(l.name, l.value))
        .collect();
    if !labels.windows(2).all(|w| w[0].name < w[1].name) {
        return Err(StorageError::Internal(
            "store sent a series with unsorted or repeated labels".into(),
        ));
    }
    let data = if r.chunks.is_empty() {
        SeriesData::Samples(
            r.samples
                .into_iter()
                .map(|s| Sample {
                    t: s.timestamp,
                    v: s.value,
                })
                .collect(),
        )
    } else {
        let mut chunks = Vec::with_capacity(r.chunks.len());
        for c in r.chunks {
            if c.r#type != pb::chunk::Encoding::Xor as i32 {
                return Err(StorageError::Internal(format!(
                    "store sent a chunk of encoding {} (only XOR is read)",
                    c.r#type
                )));
            }
            chunks.push(EncodedChunk {
                min_t: c.min_time_ms,
                max_t: c.max_time_ms,
                encoding: ChunkEncoding::Xor,
                data: Arc::from(c.data),
            });
        }
        SeriesData::Chunks(chunks)
    };
    Ok(Series {
        labels: Labels::from_sorted(labels),
        data,
    })
}

/// A lazily connecting endpoint for `address` (`host:port` or a URL): the caller may
/// start before the server, and the channel reconnects after failures.
pub fn endpoint(address: &str, what: &str) -> Result<tonic::transport::Endpoint, StorageError> {
    let url = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Ok(tonic::transport::Endpoint::from_shared(url)
        .map_err(|e| StorageError::Invalid(format!("{what} address {address:?}: {e}")))?
        .connect_timeout(std::time::Duration::from_secs(5))
        // A peer that is paused or cut off answers nothing, not even an error: HTTP/2
        // pings find it within a few seconds and fail its calls, so callers move on to
        // another replica instead of waiting out a whole request timeout.
        .http2_keep_alive_interval(std::time::Duration::from_secs(1))
        .keep_alive_timeout(std::time::Duration::from_secs(3))
        .keep_alive_while_idle(false)
        .tcp_nodelay(true))
}

pub fn status_from_storage(e: StorageError) -> Status {
    match e {
        StorageError::Invalid(m) => Status::invalid_argument(m),
        StorageError::Unavailable(m) => Status::unavailable(m),
        StorageError::Internal(m) => Status::internal(m),
    }
}

pub fn storage_from_status(peer: &str, s: Status) -> StorageError {
    let m = format!("{peer}: {}", s.message());
    match s.code() {
        Code::InvalidArgument => StorageError::Invalid(m),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            StorageError::Unavailable(m)
        }
        _ => StorageError::Internal(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_and_matchers_round_trip() {
        let s = Series {
            labels: Labels::from_pairs(&[("__name__", "up"), ("job", "a")]),
            data: SeriesData::Samples(vec![Sample { t: 5, v: 1.5 }]),
        };
        let back = series_from_wire(series_to_wire(&s)).unwrap();
        assert_eq!(back.labels, s.labels);
        assert!(matches!(back.data, SeriesData::Samples(ref v) if v == &[Sample { t: 5, v: 1.5 }]));
        let ms = vec![
            Matcher::new(MatchOp::RegexMatch, "job", "a|b").unwrap(),
            Matcher::new(MatchOp::NotEqual, "x", "").unwrap(),
        ];
        let back = matchers_from_wire(&matchers_to_wire(&ms)).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].op, &*back[0].value), (MatchOp::RegexMatch, "a|b"));
    }

    #[test]
    fn hostile_input_is_an_error() {
        let bad = pb::LabelMatcher {
            r#type: 9,
            name: "a".into(),
            value: "b".into(),
        };
        assert_eq!(
            matchers_from_wire(&[bad]).unwrap_err().code(),
            Code::InvalidArgument
        );
        let bad_re = pb::LabelMatcher {
            r#type: 2,
            name: "a".into(),
            value: "(".into(),
        };
        assert_eq!(
            matchers_from_wire(&[bad_re]).unwrap_err().code(),
            Code::InvalidArgument
        );
        let unsorted = sp::SelectResponse {
            labels: vec![
                pb::Label {
                    name: "b".into(),
                    value: "1".into(),
                },
                pb::Label {
                    name: "a".into(),
                    value: "1".into(),
                },
            ],
            ..Default::default()
        };
        assert!(series_from_wire(unsorted).is_err());
        assert!(tenant_from_wire("").is_err());
    }
}
