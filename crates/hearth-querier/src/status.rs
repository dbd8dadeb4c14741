//! The status questions of the API (metadata, head statistics, log repairs) asked of
//! every ingester and answered as one, as Mimir's queriers sum their ingesters'
//! cardinality: counts add up, top lists are merged by name and cut again. An ingester
//! that cannot answer fails the question (never a silently partial answer).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use hearth_core::shard::NodeReplicas;
use hearth_core::{IngesterStatus, MetricMetadata, StorageError, Tenant, TsdbStatus};

pub struct IngestersStatus {
    members: Vec<Arc<dyn IngesterStatus>>,
    /// Each member's name, for the replicas of a member that did not answer.
    names: Vec<String>,
}

impl IngestersStatus {
    /// Every ingester, by name.
    pub fn new(members: Vec<(String, Arc<dyn IngesterStatus>)>) -> IngestersStatus {
        let (names, members) = members.into_iter().unzip();
        IngestersStatus { members, names }
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

    /// Every node's replicas; a node that does not answer is listed with its error (a
    /// status page shows a cluster with a node down, it does not fail).
    async fn replicas(&self, digests: bool) -> Result<Vec<NodeReplicas>, StorageError> {
        let answers = join_all(self.members.iter().map(|m| m.replicas(digests))).await;
        let mut out = Vec::new();
        for (name, answer) in self.names.iter().zip(answers) {
            match answer {
                // Named as this querier knows the member (its id and address).
                Ok(nodes) => out.extend(nodes.into_iter().map(|mut n| {
                    n.node = name.clone();
                    n
                })),
                Err(e) => out.push(NodeReplicas {
                    node: name.clone(),
                    error: Some(e.to_string()),
                    replicas: Vec::new(),
                }),
            }
        }
        Ok(out)
    }
}
