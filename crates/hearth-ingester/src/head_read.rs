//! Reading a head: the head as a `Queryable`, the seam a shard group's replica answers
//! reads through (and what tests load data into). Series are listed when a select
//! starts; each one's samples are copied out only when the stream reaches it.

use std::sync::Arc;

use async_trait::async_trait;
use futures::{stream, StreamExt};
use hearth_core::{Matcher, Queryable, SelectHints, SeriesStream, StorageError, Tenant};

use crate::head::Head;

/// The head as a `Queryable` (the ingester's read seam; also what tests load data into).
#[derive(Clone)]
pub struct HeadQueryable(pub Arc<Head>);

#[async_trait]
impl Queryable for HeadQueryable {
    async fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let Some(th) = self.0.tenant(tenant) else {
            return Ok(Box::pin(stream::empty()));
        };
        // Only the matching series are listed now; each one's data is copied out when
        // the stream reaches it, so the answer is never held whole.
        let series = if hints.unsorted {
            th.select_series_unsorted(matchers)
        } else {
            th.select_series(matchers)
        };
        Ok(Box::pin(stream::iter(series).filter_map(move |ms| {
            futures::future::ready(crate::head::series_in(&ms, mint, maxt).map(Ok))
        })))
    }

    async fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        _mint: i64,
        _maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(self
            .0
            .tenant(tenant)
            .map(|t| t.label_names(matchers))
            .unwrap_or_default())
    }

    async fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        _mint: i64,
        _maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(self
            .0
            .tenant(tenant)
            .map(|t| t.label_values(name, matchers))
            .unwrap_or_default())
    }
}
