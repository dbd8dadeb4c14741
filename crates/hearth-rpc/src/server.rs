//! The `Store` service over any `Queryable`, and over a replicated node's
//! `GroupReader` for requests that name a shard group.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use hearth_core::shard::GroupReader;
use hearth_core::Queryable;
use hearth_proto::storage as sp;
use hearth_proto::storage::store_server::{Store, StoreServer};
use tonic::{Request, Response, Status};

use crate::convert::{
    hints_from_wire, matchers_from_wire, series_to_wire, status_from_storage, tenant_from_wire,
};
use crate::MAX_MESSAGE_BYTES;

/// What a store holds now: whether it is ready, and each tenant's time range
/// (inclusive milliseconds).
#[derive(Clone, Debug, Default)]
pub struct StoreInfo {
    pub ready: bool,
    pub tenants: Vec<(String, i64, i64)>,
}

pub type InfoFn = Arc<dyn Fn() -> StoreInfo + Send + Sync>;
/// Whether the store has loaded what it serves (asked on every request: cheap).
pub type ReadyFn = Arc<dyn Fn() -> bool + Send + Sync>;

pub struct StoreService {
    queryable: Option<Arc<dyn Queryable>>,
    groups: Option<Arc<dyn GroupReader>>,
    info: InfoFn,
    ready: ReadyFn,
}

impl StoreService {
    pub fn new(queryable: Arc<dyn Queryable>, info: InfoFn, ready: ReadyFn) -> StoreService {
        StoreService {
            queryable: Some(queryable),
            groups: None,
            info,
            ready,
        }
    }

    /// A replicated node's store: requests must name a shard group, which is read on
    /// the node's replica of it (see `GroupReader`).
    pub fn for_groups(groups: Arc<dyn GroupReader>, info: InfoFn) -> StoreService {
        StoreService {
            queryable: None,
            groups: Some(groups),
            info,
            ready: Arc::new(|| true),
        }
    }

    /// What a request reads: the named shard group's replica, or the whole store.
    async fn source(&self, group: Option<u32>) -> Result<Arc<dyn Queryable>, Status> {
        match (group, &self.groups, &self.queryable) {
            (Some(g), Some(groups), _) => groups.group(g).await.map_err(status_from_storage),
            (None, _, Some(q)) => Ok(q.clone()),
            (Some(_), None, _) => Err(Status::invalid_argument(
                "this store is not a replicated ingester: requests may not name a shard group",
            )),
            (None, _, None) => Err(Status::invalid_argument(
                "this replicated ingester answers per shard group: name one",
            )),
        }
    }

    /// The tonic service, with Hearth's message size limits.
    pub fn into_server(self) -> StoreServer<StoreService> {
        StoreServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

impl StoreService {
    /// A store that has not loaded what it serves answers Unavailable, never "nothing".
    fn check_ready(&self) -> Result<(), Status> {
        if (self.ready)() {
            Ok(())
        } else {
            Err(Status::unavailable(
                "store is not ready (it has not synced the bucket yet)",
            ))
        }
    }
}

fn check_range(mint: i64, maxt: i64) -> Result<(), Status> {
    if mint > maxt {
        return Err(Status::invalid_argument(format!(
            "min_time_ms {mint} is after max_time_ms {maxt}"
        )));
    }
    Ok(())
}

type SelectStream = Pin<Box<dyn Stream<Item = Result<sp::SelectResponse, Status>> + Send>>;

/// Series a Select answer keeps ready ahead of the network.
const SELECT_QUEUE: usize = 16;

#[tonic::async_trait]
impl Store for StoreService {
    type SelectStream = SelectStream;

    async fn select(
        &self,
        request: Request<sp::SelectRequest>,
    ) -> Result<Response<SelectStream>, Status> {
        self.check_ready()?;
        let r = request.into_inner();
        let tenant = tenant_from_wire(&r.tenant)?;
        let matchers = matchers_from_wire(&r.matchers)?;
        check_range(r.min_time_ms, r.max_time_ms)?;
        let mut hints = hints_from_wire(r.hints);
        hints.max_resolution = r.max_resolution_ms.max(0);
        let mut stream = self
            .source(r.shard_group)
            .await?
            .select(&tenant, &matchers, r.min_time_ms, r.max_time_ms, &hints)
            .await
            .map_err(status_from_storage)?;
        // Pulling the stream decodes blocks: a producer off the async workers feeds a
        // short queue, so at most a few series wait in memory for the network, and a
        // client that goes away stops the reading.
        let (tx, rx) = tokio::sync::mpsc::channel(SELECT_QUEUE);
        tokio::spawn(async move {
            hearth_core::cpu::foreground(async move {
                while let Some(item) = stream.next().await {
                    let msg = match item {
                        Ok(s) => Ok(series_to_wire(&s)),
                        Err(e) => Err(status_from_storage(e)),
                    };
                    let failed = msg.is_err();
                    if tx.send(msg).await.is_err() || failed {
                        return;
                    }
                }
            })
            .await
        });
        let answers =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn label_names(
        &self,
        request: Request<sp::LabelNamesRequest>,
    ) -> Result<Response<sp::LabelsResponse>, Status> {
        self.check_ready()?;
        let r = request.into_inner();
        let tenant = tenant_from_wire(&r.tenant)?;
        let matchers = matchers_from_wire(&r.matchers)?;
        check_range(r.min_time_ms, r.max_time_ms)?;
        let values = self
            .source(r.shard_group)
            .await?
            .label_names(&tenant, &matchers, r.min_time_ms, r.max_time_ms)
            .await
            .map_err(status_from_storage)?;
        Ok(Response::new(sp::LabelsResponse { values }))
    }

    async fn label_values(
        &self,
        request: Request<sp::LabelValuesRequest>,
    ) -> Result<Response<sp::LabelsResponse>, Status> {
        self.check_ready()?;
        let r = request.into_inner();
        let tenant = tenant_from_wire(&r.tenant)?;
        let matchers = matchers_from_wire(&r.matchers)?;
        check_range(r.min_time_ms, r.max_time_ms)?;
        let values = self
            .source(r.shard_group)
            .await?
            .label_values(&tenant, &r.name, &matchers, r.min_time_ms, r.max_time_ms)
            .await
            .map_err(status_from_storage)?;
        Ok(Response::new(sp::LabelsResponse { values }))
    }

    async fn info(
        &self,
        _request: Request<sp::InfoRequest>,
    ) -> Result<Response<sp::InfoResponse>, Status> {
        let info = (self.info)();
        Ok(Response::new(sp::InfoResponse {
            ready: info.ready,
            tenants: info
                .tenants
                .into_iter()
                .map(|(tenant, min_time_ms, max_time_ms)| sp::TenantRange {
                    tenant,
                    min_time_ms,
                    max_time_ms,
                })
                .collect(),
        }))
    }
}
