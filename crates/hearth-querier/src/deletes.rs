//! Deleted series stay deleted in every answer: a `Queryable` that drops, from what the
//! source below returns, the samples of accepted deletion requests (Prometheus applies
//! its tombstones at read time the same way). Series untouched by a deletion pass
//! through with their chunks as they are. Label names and values are not filtered, as
//! Prometheus' index keeps a deleted series' labels until compaction.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use hearth_core::{
    Deletion, Matcher, Queryable, SelectHints, SeriesData, SeriesStream, StorageError, Tenant,
};

/// The deletions in effect for a tenant.
pub type DeletionsFn = Arc<dyn Fn(&Tenant) -> Vec<Deletion> + Send + Sync>;

/// Takes deletion requests (`POST /api/v1/admin/tsdb/delete_series`): once it returns,
/// the deletion is durable and in effect. `series_ends` bounds each matching series'
/// interval by what it held when the request was made (see [`series_ends`]).
#[async_trait]
pub trait SeriesDeleter: Send + Sync + 'static {
    async fn delete_series(
        &self,
        tenant: &Tenant,
        sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
        series_ends: HashMap<u64, i64>,
    ) -> Result<(), StorageError>;
}

/// Most series one deletion request may name (the request stores each one's end).
pub const MAX_SERIES_PER_DELETION: usize = 1_000_000;

/// Each series matching one of `sets` with samples in `[start, end]` now, by
/// `Labels::hash64`, with its newest sample there: what a deletion made now removes
/// from it, as Prometheus clamps a tombstone to the series' data (`Head.Delete`).
pub async fn series_ends(
    queryable: &dyn Queryable,
    tenant: &Tenant,
    sets: &[Vec<Matcher>],
    start: i64,
    end: i64,
) -> Result<HashMap<u64, i64>, StorageError> {
    let mut ends: HashMap<u64, i64> = HashMap::new();
    let hints = SelectHints {
        start,
        end,
        unsorted: true,
        ..Default::default()
    };
    for set in sets {
        let mut stream = queryable.select(tenant, set, start, end, &hints).await?;
        while let Some(s) = stream.next().await {
            let s = s?;
            // A chunk reaching past `end` means the series holds data beyond it: the
            // interval ends at `end` then.
            let newest = match &s.data {
                SeriesData::Chunks(cs) => cs.iter().map(|c| c.max_t.min(end)).max(),
                SeriesData::Samples(ss) => ss
                    .iter()
                    .map(|x| x.t)
                    .filter(|t| (start..=end).contains(t))
                    .max(),
            };
            if let Some(t) = newest {
                let e = ends.entry(s.labels.hash64()).or_insert(t);
                *e = (*e).max(t);
            }
            if ends.len() > MAX_SERIES_PER_DELETION {
                return Err(StorageError::Invalid(format!(
                    "the deletion matches more than {MAX_SERIES_PER_DELETION} series; narrow match[] or the time range"
                )));
            }
        }
    }
    Ok(ends)
}

pub struct DeletionFilter {
    inner: Arc<dyn Queryable>,
    deletions: DeletionsFn,
}

impl DeletionFilter {
    pub fn new(inner: Arc<dyn Queryable>, deletions: DeletionsFn) -> DeletionFilter {
        DeletionFilter { inner, deletions }
    }
}

#[async_trait]
impl Queryable for DeletionFilter {
    async fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let stream = self
            .inner
            .select(tenant, matchers, mint, maxt, hints)
            .await?;
        let deletions: Vec<Deletion> = (self.deletions)(tenant)
            .into_iter()
            .filter(|d| d.overlaps(mint, maxt))
            .collect();
        if deletions.is_empty() {
            return Ok(stream);
        }
        let deletions = Arc::new(deletions);
        Ok(stream
            .filter_map(move |item| {
                let out = match item {
                    Ok(s) => hearth_series::tombstones::apply(s, &deletions).map(Ok),
                    Err(e) => Some(Err(e)),
                };
                async move { out }
            })
            .boxed())
    }

    async fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.label_names(tenant, matchers, mint, maxt).await
    }

    async fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.inner
            .label_values(tenant, name, matchers, mint, maxt)
            .await
    }
}
