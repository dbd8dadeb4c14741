//! The ingester's answer to the query side's status questions (metric metadata, head
//! statistics): what a node's `IngesterStatus` answers from the heads of the groups it
//! leads, so no other room reads a head's internals.

use hearth_core::{MetricMetadata, Tenant, TsdbStatus};
use std::collections::HashMap;

use crate::head::Head;

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
