//! The status questions of the API (metadata, head statistics, log repairs) asked of
//! every ingester and answered as one, as Mimir's queriers sum their ingesters'
//! cardinality: counts add up, top lists are merged by name and cut again. An ingester
//! that cannot answer fails the question (never a silently partial answer).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use hearth_core::{IngesterStatus, MetricMetadata, StorageError, Tenant, TsdbStatus};

pub struct IngestersStatus {
    members: Vec<Arc<dyn IngesterStatus>>,
}

impl IngestersStatus {
    pub fn new(members: Vec<Arc<dyn IngesterStatus>>) -> IngestersStatus {
        IngestersStatus { members }
    }
}

/// Counts by name added up, the largest `limit` kept (ties by name).
fn merge_top(lists: Vec<Vec<(String, u64)>>, limit: usize) -> Vec<(String, u64)> {
    let mut sum: HashMap<String, u64> = HashMap::new();
    for (n, c) in lists.into_iter().flatten() {
        *sum.entry(n).or_insert(0) += c;
    }
    let mut v: Vec<(String, u64)> = sum.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    v
}

#[async_trait]
impl IngesterStatus for IngestersStatus {
    async fn metadata(
        &self,
        tenant: &Tenant,
    ) -> Result<HashMap<String, Vec<MetricMetadata>>, StorageError> {
        let mut out: HashMap<String, Vec<MetricMetadata>> = HashMap::new();
        for r in join_all(self.members.iter().map(|m| m.metadata(tenant))).await {
            for (family, list) in r? {
                let e = out.entry(family).or_default();
                for m in list {
                    if !e.contains(&m) {
                        e.push(m);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn tsdb_status(&self, tenant: &Tenant, limit: usize) -> Result<TsdbStatus, StorageError> {
        let all = join_all(self.members.iter().map(|m| m.tsdb_status(tenant, limit)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        if all.len() == 1 {
            return Ok(all.into_iter().next().expect("one"));
        }
        let mut out = TsdbStatus {
            min_time: i64::MAX,
            max_time: i64::MIN,
            ..TsdbStatus::default()
        };
        let mut tops: [Vec<Vec<(String, u64)>>; 4] = Default::default();
        for s in all {
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
        Ok(out)
    }

    async fn wal_corruptions(&self) -> Result<u64, StorageError> {
        let mut n = 0;
        for r in join_all(self.members.iter().map(|m| m.wal_corruptions())).await {
            n += r?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
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
}
