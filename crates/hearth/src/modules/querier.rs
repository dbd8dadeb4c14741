//! The querier role: the Prometheus HTTP API over one `Queryable` that merges recent
//! data (one replica of every shard group: on the ingester node in this process when
//! it is the only one, or on the cluster's ingester nodes over gRPC) with
//! history (the store gateway in-process, the store gateways of their ring over gRPC,
//! or the bucket read here), with deletion requests applied to every answer.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hearth_core::shard::GroupReader;
use hearth_core::Queryable;
use hearth_promql::{Engine, EngineOptions};
use hearth_querier::{
    ApiConfig, Fanout, GroupFanout, Member, MergeQueryable, QuerierState, Source,
};
use hearth_rpc::RemoteStore;
use tracing::info;

use super::{Context, Module};
use crate::metrics::Parts;

/// How long a read waits for a shard group with no replica able to serve (an election,
/// a node restarting) before the query fails.
const GROUP_READ_RETRY: Duration = Duration::from_secs(10);

/// How often remote stores are asked what they hold.
fn info_refresh(ctx: &Context) -> Duration {
    ctx.cfg.sync_interval.std().min(Duration::from_secs(10))
}

/// The store gateways of their ring, each asked for what its `Info` says it holds.
fn gateway_members(ctx: &Context, members: &[(String, String)]) -> anyhow::Result<Vec<Member>> {
    let mut out = Vec::with_capacity(members.len());
    for (id, addr) in members {
        let remote = Arc::new(
            RemoteStore::connect_lazy(addr)
                .map_err(|e| anyhow::anyhow!("store-gateway {id}: {e}"))?,
        );
        remote.spawn_info_refresh(info_refresh(ctx));
        let r = remote.clone();
        out.push(Member {
            name: format!("store-gateway {id} ({addr})"),
            queryable: remote,
            range: Arc::new(move |t| r.time_range(t)),
        });
    }
    Ok(out)
}

pub async fn start(ctx: &mut Context) -> anyhow::Result<Module> {
    // Recent data: one replica per shard group, each confirmed current with its group's
    // quorum (every acknowledged write is seen, and no series twice), on the ingester
    // node in this process when it is the only one, or on the cluster's nodes.
    let mut members: Vec<(String, Arc<dyn GroupReader>)> = Vec::new();
    match &ctx.ingester {
        Some(local) => members.push(("this process".to_string(), local.node.clone())),
        None => {
            for (id, addr) in &ctx.cfg.ingester_members.0 {
                let remote = RemoteStore::connect_lazy(addr)
                    .map_err(|e| anyhow::anyhow!("ingester {id}: {e}"))?;
                members.push((format!("ingester {id} ({addr})"), Arc::new(remote)));
            }
        }
    }
    info!(
        ingesters = members.len(),
        shard_groups = ctx.cfg.shard_groups(),
        "reading recent data from one replica of each shard group"
    );
    let recent = Source {
        name: "ingesters",
        queryable: Arc::new(GroupFanout::new(
            members,
            ctx.cfg.shard_groups(),
            ctx.cfg.ingester_rf(),
            GROUP_READ_RETRY,
        )),
        // An ingester takes new data at any moment (late samples too): asked for every
        // query.
        range: Arc::new(|_| (i64::MIN, i64::MAX)),
    };
    // History: the store gateway here, the store gateways of the ring, or the bucket.
    let history = if let Some(h) = &ctx.history {
        Source {
            name: "store-gateway",
            queryable: h.queryable.clone(),
            range: h.range.clone(),
        }
    } else if !ctx.cfg.gateway_members.is_empty() {
        let members = gateway_members(ctx, &ctx.cfg.gateway_members.0)?;
        info!(
            gateways = members.len(),
            replication_factor = ctx.cfg.gateway_rf,
            "reading history from the store gateways"
        );
        let fanout = Arc::new(Fanout::new(members, ctx.cfg.gateway_rf));
        let f = fanout.clone();
        Source {
            name: "store-gateway",
            queryable: fanout,
            range: Arc::new(move |t| f.time_range(t)),
        }
    } else {
        let store = ctx.bucket_store().await?;
        let s = store.clone();
        Source {
            name: "bucket",
            queryable: store,
            range: Arc::new(move |t| s.time_range(t)),
        }
    };

    // Deleted series stay out of every answer (tombstones in the bucket, applied at
    // read time until the compactor has rewritten the blocks).
    let tombstones = Arc::new(hearth_storage::tombstones::Tombstones::new(ctx.bucket()?));
    crate::server::spawn_tombstone_sync(tombstones.clone(), ctx.cfg.sync_interval.std()).await;
    let deletions = tombstones.clone();
    let merged: Arc<dyn Queryable> = Arc::new(hearth_querier::DeletionFilter::new(
        Arc::new(MergeQueryable::new(vec![recent, history])),
        Arc::new(move |t| deletions.deletions(t)),
    ));
    let cfg = &ctx.cfg;
    let engine = Engine::new(
        merged.clone(),
        EngineOptions {
            lookback_delta_ms: cfg.lookback_delta.ms(),
            max_samples: cfg.max_samples,
            timeout: cfg.query_timeout.std().max(Duration::from_millis(1)),
            max_concurrency: cfg.max_concurrency.max(1),
            delayed_name_removal: cfg.delayed_name_removal,
            ..EngineOptions::default()
        },
    );
    let state = Arc::new(QuerierState {
        queryable: merged,
        admin: cfg.enable_admin_api.then(|| {
            Arc::new(AdminDeleter(tombstones.clone())) as Arc<dyn hearth_querier::SeriesDeleter>
        }),
        engine,
        status: ctx.ingester_status()?,
        config_status: Arc::new(ctx.runtime.clone()),
        cfg: ApiConfig {
            multitenancy: cfg.multitenancy,
            flags: cfg.flag_map(),
            config_yaml: cfg.raw_yaml.clone(),
        },
        started: SystemTime::now(),
        started_instant: Instant::now(),
    });
    Ok(Module {
        http: Some(hearth_querier::router(state)),
        metrics: Parts::default(),
        ..Module::default()
    })
}

/// `delete_series` over the bucket's tombstones.
struct AdminDeleter(Arc<hearth_storage::tombstones::Tombstones>);

#[async_trait::async_trait]
impl hearth_querier::SeriesDeleter for AdminDeleter {
    async fn delete_series(
        &self,
        tenant: &hearth_core::Tenant,
        sets: &[Vec<hearth_core::Matcher>],
        start: i64,
        end: i64,
        series_ends: std::collections::HashMap<u64, i64>,
    ) -> Result<(), hearth_core::StorageError> {
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let series = series_ends.len();
        self.0
            .add(tenant, sets, start, end, series_ends, now)
            .await
            .map_err(|e| hearth_core::StorageError::Unavailable(e.to_string()))?;
        info!(tenant = %tenant, start, end, sets = sets.len(), series, "series deleted");
        Ok(())
    }
}
