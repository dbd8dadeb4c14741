//! A remote ingester as an `Ingester` and an `IngesterStatus`: what distributors push
//! to and queriers ask, behind the same traits as the ingester in-process.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use hearth_core::shard::{GroupIngester, GroupPushError, NodeReplicas};
use hearth_core::{
    Ingester, IngesterStatus, MetricMetadata, PushError, PushOutcome, StorageError, Tenant,
    TsdbStatus, WriteBatch,
};
use hearth_proto::ingester as ip;
use hearth_proto::ingester::ingester_client::IngesterClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::convert::storage_from_status;
use crate::ingester_server::{metadata_from_wire, metadata_to_wire, replica_from_wire};
use crate::MAX_MESSAGE_BYTES;

/// How long a push may take before the distributor gives up on it (503, retried by the
/// sender): below remote-write senders' own 30 s timeout.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(20);

pub struct RemoteIngester {
    /// The address, naming the ingester in errors.
    name: String,
    client: IngesterClient<Channel>,
}

impl RemoteIngester {
    /// A client of the ingester at `address` (`host:port` or a URL). Connects on first
    /// use and reconnects after failures, so distributors can start before ingesters.
    pub fn connect_lazy(address: &str) -> Result<RemoteIngester, StorageError> {
        let endpoint = crate::convert::endpoint(address, "ingester")?.timeout(PUSH_TIMEOUT);
        let client = IngesterClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(RemoteIngester {
            name: address.to_string(),
            client,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A batch in its wire form (its label bytes moved, not copied).
pub fn batch_to_wire(tenant: &Tenant, batch: WriteBatch) -> ip::PushRequest {
    let w = batch.into_wire();
    ip::PushRequest {
        tenant: tenant.as_str().to_string(),
        arena: w.arena,
        label_offsets: w.label_offsets,
        series_ends: w.series_ends,
        samples: w.samples,
        metadata: w.metadata.iter().map(metadata_to_wire).collect(),
    }
}

/// A failed push as the write seam's error: unreachable or overloaded ingesters are
/// `Unavailable` (503, the sender retries), never a success.
fn push_error(peer: &str, s: Status) -> PushError {
    let m = format!("ingester {peer}: {}", s.message());
    match s.code() {
        Code::ResourceExhausted => PushError::RateLimited(m),
        Code::InvalidArgument | Code::Internal | Code::Unimplemented | Code::DataLoss => {
            PushError::Internal(m)
        }
        _ => PushError::Unavailable(m),
    }
}

fn counts(v: Vec<ip::NameCount>) -> Vec<(String, u64)> {
    v.into_iter().map(|c| (c.name, c.count)).collect()
}

#[async_trait]
impl Ingester for RemoteIngester {
    async fn push(&self, tenant: &Tenant, batch: WriteBatch) -> Result<PushOutcome, PushError> {
        let r = self
            .client
            .clone()
            .push(batch_to_wire(tenant, batch))
            .await
            .map_err(|s| push_error(&self.name, s))?
            .into_inner();
        Ok(PushOutcome {
            samples_written: r.samples_written as usize,
            samples_rejected: r.samples_rejected as usize,
            first_rejection: (!r.first_rejection.is_empty()).then_some(r.first_rejection),
        })
    }
}

#[async_trait]
impl GroupIngester for RemoteIngester {
    async fn push_group(
        &self,
        group: u32,
        tenant: &Tenant,
        batch: WriteBatch,
    ) -> Result<PushOutcome, GroupPushError> {
        let r = self
            .client
            .clone()
            .push_group(ip::GroupPushRequest {
                group,
                write: Some(batch_to_wire(tenant, batch)),
            })
            .await
            .map_err(|s| push_error(&self.name, s))?
            .into_inner();
        if r.not_leader {
            return Err(GroupPushError::NotLeader {
                group,
                leader: (r.leader_replica != 0).then_some(r.leader_replica),
            });
        }
        let r = r.result.ok_or_else(|| {
            PushError::Internal(format!(
                "ingester {}: a group push answered nothing",
                self.name
            ))
        })?;
        Ok(PushOutcome {
            samples_written: r.samples_written as usize,
            samples_rejected: r.samples_rejected as usize,
            first_rejection: (!r.first_rejection.is_empty()).then_some(r.first_rejection),
        })
    }
}

#[async_trait]
impl IngesterStatus for RemoteIngester {
    async fn metadata(
        &self,
        tenant: &Tenant,
    ) -> Result<HashMap<String, Vec<MetricMetadata>>, StorageError> {
        let r = self
            .client
            .clone()
            .metadata(ip::MetadataRequest {
                tenant: tenant.as_str().to_string(),
            })
            .await
            .map_err(|s| storage_from_status(&self.name, s))?
            .into_inner();
        let mut out: HashMap<String, Vec<MetricMetadata>> = HashMap::new();
        for m in r.metadata {
            let m = metadata_from_wire(m);
            out.entry(m.metric_family.clone()).or_default().push(m);
        }
        Ok(out)
    }

    async fn tsdb_status(&self, tenant: &Tenant, limit: usize) -> Result<TsdbStatus, StorageError> {
        let r = self
            .client
            .clone()
            .tsdb_status(ip::TsdbStatusRequest {
                tenant: tenant.as_str().to_string(),
                limit: limit.min(u32::MAX as usize) as u32,
            })
            .await
            .map_err(|s| storage_from_status(&self.name, s))?
            .into_inner();
        Ok(TsdbStatus {
            num_series: r.num_series,
            num_label_pairs: r.num_label_pairs,
            chunk_count: r.chunk_count,
            min_time: r.min_time,
            max_time: r.max_time,
            series_count_by_metric_name: counts(r.series_count_by_metric_name),
            label_value_count_by_label_name: counts(r.label_value_count_by_label_name),
            memory_in_bytes_by_label_name: counts(r.memory_in_bytes_by_label_name),
            series_count_by_label_value_pair: counts(r.series_count_by_label_value_pair),
        })
    }

    async fn wal_corruptions(&self) -> Result<u64, StorageError> {
        Ok(self
            .client
            .clone()
            .wal_corruptions(ip::WalCorruptionsRequest {})
            .await
            .map_err(|s| storage_from_status(&self.name, s))?
            .into_inner()
            .corruptions)
    }

    async fn replicas(&self, digests: bool) -> Result<Vec<NodeReplicas>, StorageError> {
        let r = self
            .client
            .clone()
            .replicas(ip::ReplicasRequest { digests })
            .await
            .map_err(|s| storage_from_status(&self.name, s))?
            .into_inner();
        if r.node.is_empty() && r.replicas.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![NodeReplicas {
            node: r.node,
            error: None,
            replicas: r.replicas.into_iter().map(replica_from_wire).collect(),
        }])
    }
}
