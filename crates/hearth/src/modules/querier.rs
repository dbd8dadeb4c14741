//! The querier role: the Prometheus HTTP API over one `Queryable` that merges recent
//! data (the ingesters: in-process, or every ingester of the ring over gRPC) with
//! history (the store gateway in-process, the store gateways of their ring over gRPC,
//! or the bucket read here), with deletion requests applied to every answer.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hearth_core::Queryable;
use hearth_promql::{Engine, EngineOptions};
use hearth_querier::{ApiConfig, Fanout, Member, MergeQueryable, QuerierState, Source};
use hearth_rpc::RemoteStore;
use tracing::info;

use super::{Context, Module};
use crate::metrics::Parts;

/// How often remote stores are asked what they hold.
fn info_refresh(ctx: &Context) -> Duration {
    ctx.cfg.sync_interval.std().min(Duration::from_secs(10))
}

/// The members of a static ring of remote stores (ingesters or store gateways). An
/// ingester takes new data at any moment (late samples below what it holds too), so it
/// is asked for every query: a query must see a write the moment it was acknowledged,
/// not an `Info` refresh later. Store gateways are asked for what their `Info` covers.
fn remote_members(
    ctx: &Context,
    kind: &str,
    members: &[(String, String)],
    takes_writes: bool,
) -> anyhow::Result<Vec<Member>> {
    let mut out = Vec::with_capacity(members.len());
    for (id, addr) in members {
        let remote = Arc::new(
            RemoteStore::connect_lazy(addr).map_err(|e| anyhow::anyhow!("{kind} {id}: {e}"))?,
        );
        let range: hearth_querier::merge::TimeRange = if takes_writes {
            Arc::new(|_| (i64::MIN, i64::MAX))
        } else {
            remote.spawn_info_refresh(info_refresh(ctx));
            let r = remote.clone();
            Arc::new(move |t| r.time_range(t))
        };
        out.push(Member {
            name: format!("{kind} {id} ({addr})"),
            queryable: remote,
            range,
        });
    }
    Ok(out)
}

pub async fn start(ctx: &mut Context) -> anyhow::Result<Module> {
    // Recent data: the ingester here, or every ingester of the ring (each holds a
    // part of every tenant's series; with replication factor 1 none may be missing).
    let recent = match &ctx.ingester {
        Some(local) => Source {
            name: "ingester",
            queryable: local.queryable.clone(),
            range: local.range.clone(),
        },
        None => {
            let members = remote_members(ctx, "ingester", &ctx.cfg.ingester_members.0, true)?;
            info!(
                ingesters = members.len(),
                "reading recent data from the ingesters"
            );
            let fanout = Arc::new(Fanout::new(members, 1));
            let f = fanout.clone();
            Source {
                name: "ingesters",
                queryable: fanout,
                range: Arc::new(move |t| f.time_range(t)),
            }
        }
    };
    // History: the store gateway here, the store gateways of the ring, or the bucket.
    let history = if let Some(h) = &ctx.history {
        Source {
            name: "store-gateway",
            queryable: h.queryable.clone(),
            range: h.range.clone(),
        }
    } else if !ctx.cfg.gateway_members.is_empty() {
        let members = remote_members(ctx, "store-gateway", &ctx.cfg.gateway_members.0, false)?;
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
