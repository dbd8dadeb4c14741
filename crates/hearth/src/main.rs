//! The `hearth` binary: parses flags and the YAML file, wires the roles together and
//! serves them. With no arguments every role runs in one process on the embedded
//! default (data under ./data, 127.0.0.1:9009), connected through the same service
//! traits (`Ingester`, `Queryable`) a cluster uses between processes.

mod config;
mod metrics;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use hearth_distributor::{push_handler, DistributorConfig, DistributorState};
use hearth_promql::{Engine, EngineOptions};
use hearth_querier::{ApiConfig, MergeQueryable, QuerierState, Source};
use hearth_tsdb::{Db, DbOptions, HeadOptions, HeadQueryable};
use tracing::{info, warn};

use crate::config::{Command, Config, Flags, ImportSource};
use crate::metrics::SelfMetrics;

struct App {
    shipper: Arc<hearth_ingester::Shipper>,
    compactor: Arc<hearth_compactor::Compactor>,
    blocks: Arc<hearth_storage::BucketStore>,
    db: Arc<Db>,
    distributor: Arc<DistributorState>,
    metrics: SelfMetrics,
}

fn init_tracing(cfg: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{},h2=warn,hyper=warn,tower=warn",
        cfg.log_level
    ))
    .map_err(|e| anyhow::anyhow!("log.level {:?}: {e}", cfg.log_level))?;
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let cfg = match Config::resolve(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hearth: {e}");
            std::process::exit(2);
        }
    };
    init_tracing(&cfg)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hearth")
        // Query parsing and evaluation recurse on the expression tree (bounded by
        // hearth_promql::syntax::MAX_NESTING); 16 MiB of (lazily committed) stack per
        // thread covers the deepest accepted query in debug builds too.
        .thread_stack_size(16 << 20)
        .build()?
        .block_on(async move {
            match flags.command {
                Some(Command::Import {
                    source: ImportSource::PrometheusTsdb { dir, tenant },
                }) => import_prometheus(&cfg, &dir, &tenant).await,
                None => run(cfg).await,
            }
        })
}

/// `hearth import prometheus-tsdb <dir>`: every block of a Prometheus data directory
/// into the bucket, with progress on stdout.
async fn import_prometheus(
    cfg: &Config,
    dir: &std::path::Path,
    tenant: &str,
) -> anyhow::Result<()> {
    use hearth_storage::promblock::{block_dirs, import_block};
    let tenant = hearth_core::Tenant::new(tenant).map_err(|e| anyhow::anyhow!(e))?;
    let dirs = if dir.join("meta.json").is_file() {
        vec![dir.to_path_buf()]
    } else {
        block_dirs(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
    };
    if dirs.is_empty() {
        anyhow::bail!(
            "{}: no Prometheus blocks (directories with meta.json and index)",
            dir.display()
        );
    }
    let store = hearth_storage::BucketStore::new(hearth_storage::open_bucket(&cfg.bucket)?);
    store.sync().await?;
    println!(
        "importing {} Prometheus blocks from {} as tenant {tenant}",
        dirs.len(),
        dir.display()
    );
    let started = Instant::now();
    let (mut series, mut samples, mut skipped) = (0usize, 0u64, 0usize);
    for (i, d) in dirs.iter().enumerate() {
        let t = Instant::now();
        let done = import_block(&store, &tenant, d).await?;
        match &done.block {
            Some(meta) => println!(
                "[{}/{}] {} -> {}: {} series, {} samples, {:.1}s",
                i + 1,
                dirs.len(),
                done.prometheus_ulid,
                meta.ulid,
                done.series,
                done.samples,
                t.elapsed().as_secs_f64()
            ),
            None => println!(
                "[{}/{}] {}: imported before, skipped",
                i + 1,
                dirs.len(),
                done.prometheus_ulid
            ),
        }
        series += done.series;
        samples += done.samples;
        skipped += done.skipped_chunks;
    }
    println!(
        "done: {series} series, {samples} samples in {:.1}s{}",
        started.elapsed().as_secs_f64(),
        if skipped > 0 {
            format!("; {skipped} native-histogram chunks left out (not supported yet)")
        } else {
            String::new()
        }
    );
    Ok(())
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    info!(version = env!("CARGO_PKG_VERSION"), target = %cfg.target, storage = %cfg.storage_path.display(), "starting hearth");
    let mut db_opts = DbOptions::new(&cfg.storage_path);
    db_opts.head = HeadOptions {
        block_range_ms: cfg.block_duration_ms,
        out_of_order_window_ms: cfg.ooo_window_ms,
    };
    db_opts.checkpoint_after_bytes = cfg.checkpoint_after_bytes;
    let db = tokio::task::spawn_blocking(move || Db::open(db_opts)).await??;
    let db = Arc::new(db);
    // The ingester's read seam: its head, behind the same trait a gRPC client will have.
    let head: Arc<dyn hearth_core::Queryable> = Arc::new(HeadQueryable(db.head().clone()));

    // History: the blocks in the bucket, found by listing it.
    let bucket = hearth_storage::open_bucket(&cfg.bucket)?;
    let blocks = Arc::new(hearth_storage::BucketStore::with_page_cache(
        bucket,
        cfg.page_cache_bytes,
    ));
    // A bucket that is down does not keep the ingester from starting: writes go to the
    // head and log; the listing is retried every sync interval.
    match blocks.sync().await {
        Ok(found) => info!(blocks = found, "bucket synced"),
        Err(e) => warn!(error = %e, "listing the bucket failed; retrying in the background"),
    }
    {
        let blocks = blocks.clone();
        let every = Duration::from_millis(cfg.sync_interval_ms as u64);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = blocks.sync().await {
                    warn!(error = %e, "listing the bucket failed; serving the blocks known");
                }
            }
        });
    }
    let shipper = Arc::new(hearth_ingester::Shipper::new(
        db.clone(),
        blocks.clone(),
        cfg.block_duration_ms,
    ));
    tokio::spawn(
        shipper
            .clone()
            .run(Duration::from_millis(cfg.ship_interval_ms as u64)),
    );
    let compactor = Arc::new(hearth_compactor::Compactor::new(
        blocks.clone(),
        hearth_compactor::CompactorConfig {
            block_ranges_ms: cfg.compactor_ranges_ms.clone(),
            deletion_delay: Duration::from_millis(cfg.compactor_deletion_delay_ms.max(0) as u64),
            retention_ms: cfg.retention_ms,
            tenant_retention_ms: cfg.tenant_retention_ms.clone(),
        },
    ));
    tokio::spawn(
        compactor
            .clone()
            .run(Duration::from_millis(cfg.compactor_interval_ms as u64)),
    );
    // The querier's one source: head and blocks, merged.
    let head_range = db.head().clone();
    let block_range = blocks.clone();
    let merged: Arc<dyn hearth_core::Queryable> = Arc::new(MergeQueryable::new(vec![
        Source {
            name: "ingester",
            queryable: head.clone(),
            range: Arc::new(move |t| match head_range.tenant(t) {
                Some(th) if th.min_time() != i64::MAX => (th.min_time(), i64::MAX),
                _ => (i64::MAX, i64::MIN),
            }),
        },
        Source {
            name: "store-gateway",
            queryable: blocks.clone(),
            range: Arc::new(move |t| block_range.time_range(t)),
        },
    ]));

    let distributor = Arc::new(DistributorState {
        ingester: db.clone(),
        cfg: DistributorConfig {
            max_decompressed_bytes: cfg.max_recv_msg_size,
            multitenancy: cfg.multitenancy,
            ..DistributorConfig::default()
        },
        metrics: Default::default(),
    });
    let engine = Engine::new(
        merged.clone(),
        EngineOptions {
            lookback_delta_ms: cfg.lookback_delta_ms,
            max_samples: cfg.max_samples,
            timeout: Duration::from_millis(cfg.query_timeout_ms.max(1) as u64),
            max_concurrency: cfg.max_concurrency.max(1),
            delayed_name_removal: cfg.delayed_name_removal,
            ..EngineOptions::default()
        },
    );
    let querier = Arc::new(QuerierState {
        queryable: merged,
        engine,
        status: Arc::new(status::HeadStatus(db.clone())),
        cfg: ApiConfig {
            multitenancy: cfg.multitenancy,
            flags: cfg.flag_map(),
            config_yaml: cfg.raw_yaml.clone(),
            storage_retention: "unlimited (no blocks yet)".into(),
        },
        started: SystemTime::now(),
        started_instant: Instant::now(),
    });
    let app = Arc::new(App {
        shipper,
        compactor,
        blocks: blocks.clone(),
        db: db.clone(),
        distributor: distributor.clone(),
        metrics: SelfMetrics::new(),
    });

    let push = Router::new()
        .route("/api/v1/push", post(push_handler))
        .route("/api/v1/write", post(push_handler))
        .layer(DefaultBodyLimit::max(distributor.cfg.max_body_bytes()))
        .with_state(distributor.clone());
    let ops = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/-/ready", get(|| async { "Hearth is Ready.\n" }))
        .route("/ingester/flush", post(flush_handler))
        .route("/-/healthy", get(|| async { "Hearth is Healthy.\n" }))
        .route(
            "/",
            get(|| async {
                "Hearth: a Prometheus-compatible metrics backend. See /api/v1 and /metrics.\n"
            }),
        )
        .with_state(app.clone());
    let router = Router::new()
        .merge(push)
        .merge(ops)
        .merge(hearth_querier::router(querier))
        .layer(tower_http::trace::TraceLayer::new_for_http());

    let addr: SocketAddr = cfg
        .listen_address
        .parse()
        .map_err(|e| anyhow::anyhow!("web.listen-address {:?}: {e}", cfg.listen_address))?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(address = %listener.local_addr()?, series = db.head().num_series(), startup_ms = started.elapsed().as_millis() as u64, "listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    info!("stopped");
    Ok(())
}

/// `POST /ingester/flush`: ships the whole head to the bucket now and answers with the
/// blocks written (for operators, shutdowns and benchmarks).
async fn flush_handler(State(app): State<Arc<App>>) -> impl IntoResponse {
    match app.shipper.flush().await {
        Ok(blocks) => {
            let list: Vec<serde_json::Value> = blocks
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
                .collect();
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({"status": "success", "blocks": list})),
            )
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "error", "error": e.to_string()})),
        ),
    }
}

async fn metrics_handler(State(app): State<Arc<App>>) -> impl IntoResponse {
    let body = app.metrics.render(
        &app.db,
        &app.distributor.metrics,
        &metrics::BlocksParts {
            shipper: &app.shipper,
            compactor: &app.compactor,
            store: &app.blocks,
        },
    );
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutting down");
}
