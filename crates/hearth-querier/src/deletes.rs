//! Deleted series stay deleted in every answer: a `Queryable` that drops, from what the
//! source below returns, the samples of accepted deletion requests (Prometheus applies
//! its tombstones at read time the same way). Series untouched by a deletion pass
//! through with their chunks as they are. Label names and values are not filtered, as
//! Prometheus' index keeps a deleted series' labels until compaction.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use hearth_core::{Deletion, Matcher, Queryable, SelectHints, SeriesStream, StorageError, Tenant};

/// The deletions in effect for a tenant.
pub type DeletionsFn = Arc<dyn Fn(&Tenant) -> Vec<Deletion> + Send + Sync>;

/// Takes deletion requests (`POST /api/v1/admin/tsdb/delete_series`): once it returns,
/// the deletion is durable and in effect.
#[async_trait]
pub trait SeriesDeleter: Send + Sync + 'static {
    async fn delete_series(
        &self,
        tenant: &Tenant,
        sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Result<(), StorageError>;
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
                    Ok(s) => hearth_tsdb::tombstones::apply(s, &deletions).map(Ok),
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
