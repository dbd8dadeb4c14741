//! The ingester's answer to the query side's status questions (metric metadata, head
//! statistics, log repairs): `IngesterStatus` over its own head (or, on a replicated
//! node, the heads of the groups it leads), so no other room reads a head's internals.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use hearth_core::{IngesterStatus, MetricMetadata, StorageError, Tenant, TsdbStatus};

use crate::head::Head;
use crate::Db;

fn top(mut v: Vec<(String, usize)>, limit: usize) -> Vec<(String, u64)> {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    v.into_iter().map(|(n, c)| (n, c as u64)).collect()
}

/// A head's metric metadata of `tenant`, by family.
pub fn head_metadata(head: &Head, tenant: &Tenant) -> HashMap<String, Vec<MetricMetadata>> {
    head.tenant(tenant)
        .map(|t| t.metadata())
        .unwrap_or_default()
}

/// A head's statistics of `tenant`, top lists cut to `limit`.
pub fn head_tsdb_status(head: &Head, tenant: &Tenant, limit: usize) -> TsdbStatus {
    let Some(th) = head.tenant(tenant) else {
        return TsdbStatus::default();
    };
    let stats = th.postings_stats();
    let chunks: usize = th
        .all_series()
        .iter()
        .map(|s| {
            let st = s.state.lock();
            st.closed.len() + usize::from(st.head.is_some())
        })
        .sum();
    TsdbStatus {
        num_series: th.num_series() as u64,
        num_label_pairs: stats.series_per_pair.len() as u64,
        chunk_count: chunks as u64,
        min_time: th.min_time(),
        max_time: th.max_time(),
        series_count_by_metric_name: top(stats.series_per_metric, limit),
        label_value_count_by_label_name: top(stats.values_per_name, limit),
        memory_in_bytes_by_label_name: top(stats.memory_in_bytes_per_name, limit),
        series_count_by_label_value_pair: top(stats.series_per_pair, limit),
    }
}

#[async_trait]
impl IngesterStatus for Db {
    async fn metadata(
        &self,
        tenant: &Tenant,
    ) -> Result<HashMap<String, Vec<MetricMetadata>>, StorageError> {
        Ok(head_metadata(self.head(), tenant))
    }

    async fn wal_corruptions(&self) -> Result<u64, StorageError> {
        Ok(self.stats().wal_corruptions.load(Ordering::Relaxed))
    }

    async fn tsdb_status(&self, tenant: &Tenant, limit: usize) -> Result<TsdbStatus, StorageError> {
        Ok(head_tsdb_status(self.head(), tenant, limit))
    }
}
