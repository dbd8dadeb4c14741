//! The `Ingester` service over any `Ingester` and `IngesterStatus`, and over a
//! replicated node's `GroupIngester`: what an ingester process serves to distributors
//! (writes) and queriers (status questions).

use std::sync::Arc;

use hearth_core::shard::{GroupIngester, GroupPushError, ReplicaDigest, ReplicaState};
use hearth_core::{Ingester, IngesterStatus, MetricMetadata, PushError, WriteBatch};
use hearth_proto::ingester as ip;
use hearth_proto::ingester::ingester_server::{Ingester as IngesterRpc, IngesterServer};
use tonic::{Request, Response, Status};

use crate::convert::{status_from_storage, tenant_from_wire};
use crate::MAX_MESSAGE_BYTES;

pub struct IngesterService {
    ingester: Option<Arc<dyn Ingester>>,
    status: Option<Arc<dyn IngesterStatus>>,
    groups: Option<Arc<dyn GroupIngester>>,
}

impl IngesterService {
    pub fn new(ingester: Arc<dyn Ingester>, status: Arc<dyn IngesterStatus>) -> IngesterService {
        IngesterService {
            ingester: Some(ingester),
            status: Some(status),
            groups: None,
        }
    }

    /// A replicated node's service: writes by shard group (a plain Push answers
    /// Unimplemented: distributors route by group) and the status questions.
    pub fn for_groups(
        groups: Arc<dyn GroupIngester>,
        status: Arc<dyn IngesterStatus>,
    ) -> IngesterService {
        IngesterService {
            ingester: None,
            status: Some(status),
            groups: Some(groups),
        }
    }

    fn ingester(&self) -> Result<&Arc<dyn Ingester>, Status> {
        self.ingester.as_ref().ok_or_else(|| {
            Status::unimplemented("this ingester takes writes by shard group (PushGroup)")
        })
    }

    fn status(&self) -> Result<&Arc<dyn IngesterStatus>, Status> {
        self.status
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this ingester does not answer status questions"))
    }

    /// The tonic service, with Hearth's message size limits.
    pub fn into_server(self) -> IngesterServer<IngesterService> {
        IngesterServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

pub fn metadata_to_wire(m: &MetricMetadata) -> ip::Metadata {
    ip::Metadata {
        metric_family: m.metric_family.clone(),
        r#type: m.metric_type.clone(),
        help: m.help.clone(),
        unit: m.unit.clone(),
    }
}

pub fn metadata_from_wire(m: ip::Metadata) -> MetricMetadata {
    MetricMetadata {
        metric_family: m.metric_family,
        metric_type: m.r#type,
        help: m.help,
        unit: m.unit,
    }
}

/// A push off the wire as a batch, every offset and string checked.
pub fn batch_from_wire(r: ip::PushRequest) -> Result<WriteBatch, Status> {
    let mut batch = WriteBatch::from_wire(r.arena, &r.label_offsets, &r.series_ends, &r.samples)
        .map_err(|e| Status::invalid_argument(format!("write batch: {e}")))?;
    batch.metadata = r.metadata.into_iter().map(metadata_from_wire).collect();
    Ok(batch)
}

fn status_from_push(e: PushError) -> Status {
    match e {
        PushError::Unavailable(m) => Status::unavailable(m),
        PushError::RateLimited(m) => Status::resource_exhausted(m),
        PushError::Internal(m) => Status::internal(m),
    }
}

fn counts(v: Vec<(String, u64)>) -> Vec<ip::NameCount> {
    v.into_iter()
        .map(|(name, count)| ip::NameCount { name, count })
        .collect()
}

#[tonic::async_trait]
impl IngesterRpc for IngesterService {
    async fn push(
        &self,
        request: Request<ip::PushRequest>,
    ) -> Result<Response<ip::PushResponse>, Status> {
        let r = request.into_inner();
        let tenant = tenant_from_wire(&r.tenant)?;
        let batch = batch_from_wire(r)?;
        let out = self
            .ingester()?
            .push(&tenant, batch)
            .await
            .map_err(status_from_push)?;
        Ok(Response::new(ip::PushResponse {
            samples_written: out.samples_written as u64,
            samples_rejected: out.samples_rejected as u64,
            first_rejection: out.first_rejection.unwrap_or_default(),
        }))
    }

    async fn push_group(
        &self,
        request: Request<ip::GroupPushRequest>,
    ) -> Result<Response<ip::GroupPushResponse>, Status> {
        let groups = self.groups.as_ref().ok_or_else(|| {
            Status::unimplemented("this ingester is not replicated: it takes writes by Push")
        })?;
        let r = request.into_inner();
        let write = r
            .write
            .ok_or_else(|| Status::invalid_argument("a group push without a write"))?;
        let tenant = tenant_from_wire(&write.tenant)?;
        let batch = batch_from_wire(write)?;
        match groups.push_group(r.group, &tenant, batch).await {
            Ok(out) => Ok(Response::new(ip::GroupPushResponse {
                result: Some(ip::PushResponse {
                    samples_written: out.samples_written as u64,
                    samples_rejected: out.samples_rejected as u64,
                    first_rejection: out.first_rejection.unwrap_or_default(),
                }),
                not_leader: false,
                leader_replica: 0,
            })),
            Err(GroupPushError::NotLeader { leader, .. }) => {
                Ok(Response::new(ip::GroupPushResponse {
                    result: None,
                    not_leader: true,
                    leader_replica: leader.unwrap_or(0),
                }))
            }
            Err(GroupPushError::Push(e)) => Err(status_from_push(e)),
        }
    }

    async fn metadata(
        &self,
        request: Request<ip::MetadataRequest>,
    ) -> Result<Response<ip::MetadataResponse>, Status> {
        let tenant = tenant_from_wire(&request.into_inner().tenant)?;
        let all = self
            .status()?
            .metadata(&tenant)
            .await
            .map_err(status_from_storage)?;
        let mut metadata: Vec<ip::Metadata> =
            all.values().flatten().map(metadata_to_wire).collect();
        metadata.sort_by(|a, b| a.metric_family.cmp(&b.metric_family));
        Ok(Response::new(ip::MetadataResponse { metadata }))
    }

    async fn tsdb_status(
        &self,
        request: Request<ip::TsdbStatusRequest>,
    ) -> Result<Response<ip::TsdbStatusResponse>, Status> {
        let r = request.into_inner();
        let tenant = tenant_from_wire(&r.tenant)?;
        let s = self
            .status()?
            .tsdb_status(&tenant, r.limit as usize)
            .await
            .map_err(status_from_storage)?;
        Ok(Response::new(ip::TsdbStatusResponse {
            num_series: s.num_series,
            num_label_pairs: s.num_label_pairs,
            chunk_count: s.chunk_count,
            min_time: s.min_time,
            max_time: s.max_time,
            series_count_by_metric_name: counts(s.series_count_by_metric_name),
            label_value_count_by_label_name: counts(s.label_value_count_by_label_name),
            memory_in_bytes_by_label_name: counts(s.memory_in_bytes_by_label_name),
            series_count_by_label_value_pair: counts(s.series_count_by_label_value_pair),
        }))
    }

    async fn wal_corruptions(
        &self,
        _request: Request<ip::WalCorruptionsRequest>,
    ) -> Result<Response<ip::WalCorruptionsResponse>, Status> {
        let corruptions = self
            .status()?
            .wal_corruptions()
            .await
            .map_err(status_from_storage)?;
        Ok(Response::new(ip::WalCorruptionsResponse { corruptions }))
    }

    async fn replicas(
        &self,
        request: Request<ip::ReplicasRequest>,
    ) -> Result<Response<ip::ReplicasResponse>, Status> {
        let nodes = self
            .status()?
            .replicas(request.into_inner().digests)
            .await
            .map_err(status_from_storage)?;
        // A node answers for itself: one entry (none for a single-node ingester).
        let Some(node) = nodes.into_iter().next() else {
            return Ok(Response::new(ip::ReplicasResponse::default()));
        };
        Ok(Response::new(ip::ReplicasResponse {
            node: node.node,
            replicas: node.replicas.into_iter().map(replica_to_wire).collect(),
        }))
    }
}

pub fn replica_to_wire(r: ReplicaState) -> ip::ReplicaState {
    ip::ReplicaState {
        group: r.group,
        replica: r.replica,
        role: r.role,
        term: r.term,
        leader: r.leader,
        applied_index: r.applied_index,
        last_log_index: r.last_log_index,
        snapshot_index: r.snapshot_index,
        millis_since_quorum_ack: r.millis_since_quorum_ack,
        head_series: r.head_series,
        shipped_watermark_ms: r.shipped_watermark_ms,
        digest_series: r.digest.map(|d| d.series),
        digest_samples: r.digest.map(|d| d.samples),
        digest_hash: r.digest.map(|d| d.hash),
    }
}

pub fn replica_from_wire(r: ip::ReplicaState) -> ReplicaState {
    let digest = match (r.digest_series, r.digest_samples, r.digest_hash) {
        (Some(series), Some(samples), Some(hash)) => Some(ReplicaDigest {
            series,
            samples,
            hash,
        }),
        _ => None,
    };
    ReplicaState {
        group: r.group,
        replica: r.replica,
        role: r.role,
        term: r.term,
        leader: r.leader,
        applied_index: r.applied_index,
        last_log_index: r.last_log_index,
        snapshot_index: r.snapshot_index,
        millis_since_quorum_ack: r.millis_since_quorum_ack,
        head_series: r.head_series,
        shipped_watermark_ms: r.shipped_watermark_ms,
        digest,
    }
}
