//! The data seams. Every source of series (the head, a block reader, a gRPC client of an
//! ingester or store gateway, the merging fan-in) implements [`Queryable`]; every sink of
//! writes (the ingester, its gRPC client, the distributor's ring of ingesters)
//! implements [`Ingester`]; what queriers ask ingesters besides series (metadata, head
//! statistics) is [`IngesterStatus`]. The PromQL engine and the HTTP API know nothing
//! else.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{Labels, Matcher, Sample, Tenant, WriteBatch};

/// What the query engine will do with the data, so a source may prune or pre-aggregate.
#[derive(Clone, Debug, Default)]
pub struct SelectHints {
    pub start: i64,
    pub end: i64,
    pub step: i64,
    pub range: i64,
    pub func: Option<String>,
    pub grouping: Vec<String>,
    pub by: bool,
    /// The caller does not need series sorted by labels (as Prometheus' `sortSeries =
    /// false`): a source may skip the sort. Merging fan-ins must ask for sorted input.
    pub unsorted: bool,
    /// The coarsest downsampled resolution (ms) the caller accepts in place of raw
    /// samples (Thanos' `max_source_resolution`); 0: raw samples only.
    pub max_resolution: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkEncoding {
    /// Prometheus' Gorilla XOR float chunk, byte for byte.
    Xor,
}

/// One encoded chunk, shared without copying.
#[derive(Clone, Debug)]
pub struct EncodedChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub encoding: ChunkEncoding,
    pub data: Arc<[u8]>,
}

/// A series' data: encoded chunks as stored, or plain samples.
#[derive(Clone, Debug)]
pub enum SeriesData {
    Chunks(Vec<EncodedChunk>),
    Samples(Vec<Sample>),
}

#[derive(Clone, Debug)]
pub struct Series {
    pub labels: Labels,
    pub data: SeriesData,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    Invalid(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("internal storage error: {0}")]
    Internal(String),
}

/// Series come as a stream so a source never has to hold a whole answer.
pub type SeriesStream = BoxStream<'static, Result<Series, StorageError>>;

/// The one read seam, in the spirit of Prometheus' `storage.Querier` and Thanos' StoreAPI.
/// Times are inclusive milliseconds. Series come sorted by labels unless the hints say
/// `unsorted`.
#[async_trait]
pub trait Queryable: Send + Sync + 'static {
    async fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesStream, StorageError>;

    /// Sorted label names of series that match (all series when `matchers` is empty).
    async fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Sorted values of label `name` over series that match.
    async fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError>;
}

/// Metric metadata as remote-write carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MetricMetadata {
    pub metric_family: String,
    /// Prometheus type name: counter, gauge, histogram, gaugehistogram, summary, info,
    /// stateset or unknown.
    pub metric_type: String,
    pub help: String,
    pub unit: String,
}

/// What an ingester stored of a write. A write is partial when some samples were
/// rejected (too old, out of order); the rest is stored and durable.
#[derive(Clone, Debug, Default)]
pub struct PushOutcome {
    pub samples_written: usize,
    pub samples_rejected: usize,
    /// The first rejection, naming its series, for the 400 message.
    pub first_rejection: Option<String>,
}

impl PushOutcome {
    /// The outcome of a write split into parts: their counts summed and the first
    /// rejection kept; when a part failed, the write failed, with an `Unavailable`
    /// (the sender retries) named before any other failure.
    pub fn combine(
        parts: impl IntoIterator<Item = Result<PushOutcome, PushError>>,
    ) -> Result<PushOutcome, PushError> {
        let mut out = PushOutcome::default();
        let mut failure: Option<PushError> = None;
        for r in parts {
            match r {
                Ok(o) => {
                    out.samples_written += o.samples_written;
                    out.samples_rejected += o.samples_rejected;
                    if out.first_rejection.is_none() {
                        out.first_rejection = o.first_rejection;
                    }
                }
                Err(e) => match (&failure, &e) {
                    (None, _) | (Some(_), PushError::Unavailable(_)) => failure = Some(e),
                    _ => {}
                },
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// The words an unavailable write's message carries when nothing of it was stored (it
/// was refused before being proposed): only then may a write of several parts be
/// answered "not stored". Any other failure may have stored part of it.
pub const NOT_STORED: &str = "was not stored";

/// The words a message carries when a write may or may not be stored (a retry of the
/// same samples is harmless either way).
pub const OUTCOME_UNKNOWN: &str = "outcome is unknown";

#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    /// The ingester cannot take the write now (remote-write senders retry: 503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The tenant is over a limit (429, retried later).
    #[error("rate limited: {0}")]
    RateLimited(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl PushError {
    /// Whether it says nothing of the write was stored (see [`NOT_STORED`]).
    pub fn not_stored(&self) -> bool {
        matches!(self, PushError::Unavailable(m) if m.contains(NOT_STORED))
    }
}

/// The write seam: a durable, acknowledged write of a batch.
#[async_trait]
pub trait Ingester: Send + Sync + 'static {
    async fn push(&self, tenant: &Tenant, batch: WriteBatch) -> Result<PushOutcome, PushError>;
}

/// Head statistics for /api/v1/status/tsdb, in Prometheus' field names; the top lists
/// are (name, count), largest first.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct TsdbStatus {
    pub num_series: u64,
    pub num_label_pairs: u64,
    pub chunk_count: u64,
    pub min_time: i64,
    pub max_time: i64,
    pub series_count_by_metric_name: Vec<(String, u64)>,
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

impl TsdbStatus {
    /// Several heads' statistics as one, as Mimir's queriers sum their ingesters'
    /// cardinality: counts add up, top lists are merged by name and cut to `limit` again.
    pub fn sum(parts: Vec<TsdbStatus>, limit: usize) -> TsdbStatus {
        if parts.len() == 1 {
            return parts.into_iter().next().expect("one");
        }
        let mut out = TsdbStatus {
            min_time: i64::MAX,
            max_time: i64::MIN,
            ..TsdbStatus::default()
        };
        let mut tops: [Vec<Vec<(String, u64)>>; 4] = Default::default();
        for s in parts {
            out.num_series += s.num_series;
            out.num_label_pairs += s.num_label_pairs;
            out.chunk_count += s.chunk_count;
            if s.num_series > 0 {
                out.min_time = out.min_time.min(s.min_time);
                out.max_time = out.max_time.max(s.max_time);
            }
            tops[0].push(s.series_count_by_metric_name);
            tops[1].push(s.label_value_count_by_label_name);
            tops[2].push(s.memory_in_bytes_by_label_name);
            tops[3].push(s.series_count_by_label_value_pair);
        }
        let [a, b, c, d] = tops;
        out.series_count_by_metric_name = merge_top(a, limit);
        out.label_value_count_by_label_name = merge_top(b, limit);
        out.memory_in_bytes_by_label_name = merge_top(c, limit);
        out.series_count_by_label_value_pair = merge_top(d, limit);
        out
    }
}

/// Counts by name added up, the largest `limit` kept (ties by name).
pub fn merge_top(lists: Vec<Vec<(String, u64)>>, limit: usize) -> Vec<(String, u64)> {
    let mut sum: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for (n, c) in lists.into_iter().flatten() {
        *sum.entry(n).or_insert(0) += c;
    }
    let mut v: Vec<(String, u64)> = sum.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    v
}

/// Several sources' metadata by family as one, each distinct entry once.
pub fn merge_metadata(
    parts: Vec<std::collections::HashMap<String, Vec<MetricMetadata>>>,
) -> std::collections::HashMap<String, Vec<MetricMetadata>> {
    let mut out: std::collections::HashMap<String, Vec<MetricMetadata>> =
        std::collections::HashMap::new();
    for part in parts {
        for (family, list) in part {
            let e = out.entry(family).or_default();
            for m in list {
                if !e.contains(&m) {
                    e.push(m);
                }
            }
        }
    }
    out
}

/// What queriers ask ingesters besides series: metric metadata, head statistics and the
/// write-ahead log repairs, for Prometheus' /api/v1/metadata, /api/v1/status/tsdb and
/// runtimeinfo.
#[async_trait]
pub trait IngesterStatus: Send + Sync + 'static {
    /// Metadata by metric family, newest first per family.
    async fn metadata(
        &self,
        tenant: &Tenant,
    ) -> Result<std::collections::HashMap<String, Vec<MetricMetadata>>, StorageError>;
    /// The tenant's head statistics, each top list cut at `limit`.
    async fn tsdb_status(&self, tenant: &Tenant, limit: usize) -> Result<TsdbStatus, StorageError>;
    /// Corrupt write-ahead log records found (and cut away) when the logs were last
    /// opened.
    async fn wal_corruptions(&self) -> Result<u64, StorageError>;
    /// The shard-group replicas of each replicated ingester node answering (none for a
    /// single-node ingester), with head digests when `digests`.
    async fn replicas(
        &self,
        _digests: bool,
    ) -> Result<Vec<crate::shard::NodeReplicas>, StorageError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;

    #[test]
    fn top_lists_add_up_by_name() {
        let got = merge_top(
            vec![
                vec![("up".into(), 5), ("a".into(), 4)],
                vec![("up".into(), 3), ("b".into(), 6)],
            ],
            2,
        );
        assert_eq!(got, vec![("up".to_string(), 8), ("b".to_string(), 6)]);
    }

    #[test]
    fn statuses_sum_and_metadata_merges_once_each() {
        let a = TsdbStatus {
            num_series: 2,
            min_time: 10,
            max_time: 20,
            series_count_by_metric_name: vec![("up".into(), 2)],
            ..TsdbStatus::default()
        };
        let b = TsdbStatus {
            num_series: 3,
            min_time: 5,
            max_time: 15,
            series_count_by_metric_name: vec![("up".into(), 1), ("x".into(), 2)],
            ..TsdbStatus::default()
        };
        let s = TsdbStatus::sum(vec![a, b, TsdbStatus::default()], 10);
        assert_eq!((s.num_series, s.min_time, s.max_time), (5, 5, 20));
        assert_eq!(s.series_count_by_metric_name[0], ("up".to_string(), 3));
        let m = MetricMetadata {
            metric_family: "up".into(),
            metric_type: "gauge".into(),
            help: String::new(),
            unit: String::new(),
        };
        let part = || [("up".to_string(), vec![m.clone()])].into_iter().collect();
        assert_eq!(merge_metadata(vec![part(), part()])["up"].len(), 1);
    }
}
