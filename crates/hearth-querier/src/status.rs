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

#[async_trait]
impl IngesterStatus for IngestersStatus {
    async fn metadata(
        &self,
        tenant: &Tenant,
    ) -> Result<HashMap<String, Vec<MetricMetadata>>, StorageError> {
        let parts = join_all(self.members.iter().map(|m| m.metadata(tenant)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok(hearth_core::queryable::merge_metadata(parts))
    }

    async fn tsdb_status(&self, tenant: &Tenant, limit: usize) -> Result<TsdbStatus, StorageError> {
        let all = join_all(self.members.iter().map(|m| m.tsdb_status(tenant, limit)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TsdbStatus::sum(all, limit))
    }

    async fn wal_corruptions(&self) -> Result<u64, StorageError> {
        let mut n = 0;
        for r in join_all(self.members.iter().map(|m| m.wal_corruptions())).await {
            n += r?;
        }
        Ok(n)
    }
}
