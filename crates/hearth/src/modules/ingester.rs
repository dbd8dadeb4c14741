//! The ingester role: the head and its write-ahead log (`Db`), the shipper that cuts
//! the head into blocks, and the blocks it shipped lately. Served in-process to the
//! roles beside it, and over gRPC (the `Ingester` service for writes and status, the
//! `Store` service for recent series) when it runs on its own.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use hearth_core::Queryable;
use hearth_ingester::{
    Db, DbOptions, HeadOptions, HeadQueryable, RecentlyShipped, ShippedTo, Shipper,
};
use hearth_querier::{MergeQueryable, Source};
use tracing::info;

use super::{Context, LocalIngester, Module};
use crate::metrics::Parts;

pub async fn start(ctx: &mut Context) -> anyhow::Result<Module> {
    let cfg = &ctx.cfg;
    let mut opts = DbOptions::new(&cfg.storage_path);
    opts.head = HeadOptions {
        block_range_ms: cfg.block_duration.ms(),
        out_of_order_window_ms: cfg.ooo_window.ms(),
    };
    opts.checkpoint_after_bytes = cfg.checkpoint_after_bytes;
    opts.series_limits = hearth_ingester::SeriesLimits {
        overrides: ctx.runtime.overrides.clone(),
        // Distributors spread each tenant's series over every ingester of the ring.
        ingesters: cfg.ingester_members.0.len().max(1),
    };
    let db = Arc::new(tokio::task::spawn_blocking(move || Db::open(opts)).await??);

    // Shipped blocks are answered from the bucket store of this process when it serves
    // the bucket (every role here); otherwise from here until the stores serving the
    // bucket have surely synced them.
    let local_store = if ctx.all && ctx.cfg.gateway_members.is_empty() {
        Some(ctx.bucket_store().await?)
    } else {
        None
    };
    let recent = Arc::new(RecentlyShipped::new(
        2 * ctx.cfg.sync_interval.std() + Duration::from_secs(30),
    ));
    let shipped_to = match &local_store {
        Some(store) => ShippedTo::Store(store.clone()),
        None => ShippedTo::Recent(recent.clone()),
    };
    let shipper = Arc::new(Shipper::new(
        db.clone(),
        ctx.block_writer()?,
        shipped_to,
        ctx.cfg.block_duration.ms(),
    ));
    tokio::spawn(shipper.clone().run(ctx.cfg.ship_interval.std()));

    // Recent data: the head, and the blocks shipped lately (when kept here).
    let head = db.head().clone();
    let head_range = head.clone();
    let rr = recent.clone();
    let mut sources = vec![Source {
        name: "ingester head",
        queryable: Arc::new(HeadQueryable(head)),
        range: Arc::new(move |t| match head_range.tenant(t) {
            Some(th) if !th.is_empty() => (th.min_time(), i64::MAX),
            _ => (i64::MAX, i64::MIN),
        }),
    }];
    if local_store.is_none() {
        sources.push(Source {
            name: "ingester (shipped blocks)",
            queryable: recent.clone(),
            range: Arc::new(move |t| rr.time_range(t)),
        });
    }
    let queryable: Arc<dyn Queryable> = Arc::new(MergeQueryable::new(sources));
    let (h, r) = (db.head().clone(), recent.clone());
    let range: hearth_querier::merge::TimeRange = Arc::new(move |t| {
        let head = match h.tenant(t) {
            Some(th) if !th.is_empty() => (th.min_time(), i64::MAX),
            _ => (i64::MAX, i64::MIN),
        };
        let shipped = r.time_range(t);
        (head.0.min(shipped.0), head.1.max(shipped.1))
    });

    let grpc = if ctx.all {
        None
    } else {
        let info_db = db.clone();
        let info_recent = recent.clone();
        let store = hearth_rpc::StoreService::new(
            queryable.clone(),
            Arc::new(move || hearth_rpc::StoreInfo {
                ready: true,
                tenants: tenant_ranges(&info_db, &info_recent),
            }),
            Arc::new(|| true),
        );
        let service = hearth_rpc::IngesterService::new(db.clone(), db.clone());
        Some(tonic::service::Routes::new(service.into_server()).add_service(store.into_server()))
    };

    ctx.ingester = Some(LocalIngester {
        db: db.clone(),
        queryable,
        range,
    });
    info!(series = db.head().num_series(), "ingester ready");
    let stopping_db = db.clone();
    let stopping_shipper = shipper.clone();
    Ok(Module {
        http: Some(
            Router::new()
                .route("/ingester/flush", post(flush_handler))
                .with_state(shipper.clone()),
        ),
        grpc,
        ready: None,
        stopping: Some(Box::new(move || {
            info!(
                series = stopping_db.head().num_series(),
                log_bytes = stopping_db.wal_disk_bytes(),
                "shutting down: the head is durable in the write-ahead log and is restored from it at the next start; nothing to flush"
            );
            match stopping_shipper.activity() {
                Some(a) => {
                    info!(shipping = %a, "shutting down: stopping the shipping in progress; the data stays sealed in the head and is shipped again after the restart")
                }
                None => info!("shutting down: no shipping in progress"),
            }
        })),
        metrics: Parts {
            db: Some(db),
            shipper: Some(shipper),
            ..Parts::default()
        },
    })
}

/// Every tenant's time range over the head and the blocks shipped lately.
fn tenant_ranges(db: &Db, recent: &RecentlyShipped) -> Vec<(String, i64, i64)> {
    db.head()
        .tenants()
        .into_iter()
        .filter_map(|(t, th)| {
            let head = if th.is_empty() {
                (i64::MAX, i64::MIN)
            } else {
                (th.min_time(), th.max_time())
            };
            let shipped = recent.time_range(&t);
            let (lo, hi) = (head.0.min(shipped.0), head.1.max(shipped.1));
            (lo <= hi).then(|| (t.as_str().to_string(), lo, hi))
        })
        .collect()
}

/// `POST /ingester/flush`: ships the whole head to the bucket now and answers with the
/// blocks written (for operators, shutdowns and benchmarks).
async fn flush_handler(State(shipper): State<Arc<Shipper>>) -> impl IntoResponse {
    let s = shipper.clone();
    match hearth_core::cpu::background(async move { s.flush().await }).await {
        Ok(blocks) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "success", "blocks": blocks_json(&blocks)})),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "error", "error": e.to_string()})),
        ),
    }
}

/// The blocks a flush wrote, as the flush endpoint lists them.
pub fn blocks_json(blocks: &[hearth_storage::BlockMeta]) -> Vec<serde_json::Value> {
    blocks
        .iter()
        .map(|m| {
            serde_json::json!({
                "tenant": m.hearth.tenant,
                "ulid": m.ulid,
                "minTime": m.min_time,
                "maxTime": m.max_time,
                "numSeries": m.stats.num_series,
                "numSamples": m.stats.num_samples,
            })
        })
        .collect()
}
