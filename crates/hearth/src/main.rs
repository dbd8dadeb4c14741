//! The `hearth` binary: parses flags and the YAML file, wires the roles together and
//! serves them. With no arguments every role runs in one process on the embedded
//! default (data under ./data, 127.0.0.1:9009), connected through the same service
//! traits (`Ingester`, `Queryable`) a cluster uses between processes.

mod config;
mod metrics;
mod runtime_config;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use hearth_distributor::{push_handler, DistributorConfig, DistributorState};
use hearth_ingester::{Db, DbOptions, HeadOptions, HeadQueryable};
use hearth_promql::{Engine, EngineOptions};
use hearth_querier::{ApiConfig, MergeQueryable, QuerierState, Source};
use tracing::{info, warn};

use crate::config::{Command, Config, ImportSource};
use crate::metrics::SelfMetrics;

/// What a role runs, for the operational endpoints (/metrics, /-/ready, flush).
struct App {
    shipper: Option<Arc<hearth_ingester::Shipper>>,
    compactor: Option<Arc<hearth_compactor::Compactor>>,
    blocks: Arc<hearth_storage::BucketStore>,
    db: Option<Arc<Db>>,
    distributor: Option<Arc<DistributorState>>,
    metrics: SelfMetrics,
    /// Ready only once the bucket store has synced (a store gateway must not answer as
    /// if the bucket were empty).
    ready_after_sync: bool,
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
    let cfg = match Config::from_args(std::env::args_os()) {
        Ok(c) => c,
        // Help and version requests, and bad flags, as the parser answers them.
        Err(config::ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("hearth: {e}");
            std::process::exit(2);
        }
    };
    init_tracing(&cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hearth")
        // Query parsing and evaluation recurse on the expression tree (bounded by
        // hearth_promql::syntax::MAX_NESTING); 16 MiB of (lazily committed) stack per
        // thread covers the deepest accepted query in debug builds too.
        .thread_stack_size(16 << 20)
        .build()?;
    let result = rt.block_on(async move {
        match cfg.command.clone() {
            Some(Command::Import {
                source: ImportSource::PrometheusTsdb { dir, tenant },
            }) => import_prometheus(&cfg, &dir, &tenant).await,
            None => match cfg.target.as_str() {
                "store-gateway" => run_store_gateway(cfg).await,
                "compactor" => run_compactor(cfg).await,
                _ => run(cfg).await,
            },
        }
    });
    // Background work (a block upload, a compaction, a query's evaluation) is dropped
    // at its next await; work that does not yield gets a few seconds, so SIGTERM stops
    // the process within 10 s whatever it was doing. Nothing acknowledged depends on
    // it: writes are in the log before they are acknowledged.
    rt.shutdown_timeout(SHUTDOWN_BACKGROUND);
    result
}

/// How long in-flight HTTP requests may finish after SIGTERM.
const SHUTDOWN_REQUESTS: Duration = Duration::from_secs(5);
/// How long background work that does not yield may go on after that.
const SHUTDOWN_BACKGROUND: Duration = Duration::from_secs(3);

/// Serves `router` until SIGTERM or Ctrl-C, then lets in-flight requests finish for a
/// bounded time; `stopping` logs what the role is doing as it stops.
async fn serve_until_signal(
    listener: tokio::net::TcpListener,
    router: Router,
    stopping: impl FnOnce(),
) -> anyhow::Result<()> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = stop_rx.changed().await;
    });
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r?,
        _ = shutdown_signal() => {
            stopping();
            let _ = stop_tx.send(true);
            match tokio::time::timeout(SHUTDOWN_REQUESTS, &mut server).await {
                Ok(r) => r?,
                Err(_) => warn!(waited_s = SHUTDOWN_REQUESTS.as_secs(), "requests still running; stopping without them"),
            }
        }
    }
    info!("stopped");
    Ok(())
}

/// What an ingester says as it stops: nothing needs flushing (every acknowledged
/// write is in the fsynced log), and what shipping was doing.
fn log_ingester_stopping(app: &App) {
    if let Some(db) = &app.db {
        info!(
            series = db.head().num_series(),
            log_bytes = db.wal_disk_bytes(),
            "shutting down: the head is durable in the write-ahead log and is restored from it at the next start; nothing to flush"
        );
    }
    match app.shipper.as_ref().and_then(|s| s.activity()) {
        Some(a) => {
            info!(shipping = %a, "shutting down: stopping the shipping in progress; the data stays sealed in the head and is shipped again after the restart")
        }
        None => info!("shutting down: no shipping in progress"),
    }
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
    let store = hearth_storage::BucketStore::new(hearth_storage::open_bucket(&cfg.bucket())?)
        .with_sample_encoding(cfg.sample_encoding());
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
    let runtime = runtime_config(&cfg)?;
    let overrides = runtime.overrides.clone();
    let mut db_opts = DbOptions::new(&cfg.storage_path);
    db_opts.head = HeadOptions {
        block_range_ms: cfg.block_duration.ms(),
        out_of_order_window_ms: cfg.ooo_window.ms(),
    };
    db_opts.checkpoint_after_bytes = cfg.checkpoint_after_bytes;
    db_opts.series_limits = hearth_ingester::SeriesLimits {
        overrides: overrides.clone(),
        ingesters: 1,
    };
    let db = tokio::task::spawn_blocking(move || Db::open(db_opts)).await??;
    let db = Arc::new(db);
    // The ingester's read seam: its head, behind the same trait a gRPC client will have.
    let head: Arc<dyn hearth_core::Queryable> = Arc::new(HeadQueryable(db.head().clone()));

    // History: the blocks in the bucket, found by listing it.
    let bucket = hearth_storage::open_bucket(&cfg.bucket())?;
    let blocks = Arc::new(
        hearth_storage::BucketStore::with_page_cache(bucket, cfg.page_cache_bytes)
            .with_labels_cache(cfg.labels_cache_bytes)
            .with_sample_encoding(cfg.sample_encoding()),
    );
    // A bucket that is down does not keep the ingester from starting: writes go to the
    // head and log; the listing is retried every sync interval.
    spawn_bucket_sync(blocks.clone(), &cfg, true).await;
    // With store gateways serving the bucket, shipped blocks stay answerable from here
    // until the gateways' next syncs have surely found them.
    let recent = (!cfg.gateway_members.is_empty()).then(|| {
        Arc::new(hearth_ingester::RecentlyShipped::new(
            Duration::from_millis(2 * cfg.sync_interval.ms() as u64) + Duration::from_secs(30),
        ))
    });
    let mut shipper =
        hearth_ingester::Shipper::new(db.clone(), blocks.clone(), cfg.block_duration.ms());
    if let Some(r) = &recent {
        shipper = shipper.with_recent(r.clone());
    }
    let shipper = Arc::new(shipper);
    tokio::spawn(
        shipper
            .clone()
            .run(Duration::from_millis(cfg.ship_interval.ms() as u64)),
    );
    let compactor = Arc::new(hearth_compactor::Compactor::new(
        blocks.clone(),
        compactor_config(&cfg, overrides.clone()),
    ));
    tokio::spawn(
        compactor
            .clone()
            .run(Duration::from_millis(cfg.compactor_interval.ms() as u64)),
    );
    // The querier's one source: head and history, merged. History is the store
    // gateways when the ring names them, else this process' own bucket store.
    let head_range = db.head().clone();
    let history = history_source(&cfg, &blocks)?;
    let mut sources = vec![
        Source {
            name: "ingester",
            queryable: head.clone(),
            range: Arc::new(move |t| match head_range.tenant(t) {
                Some(th) if th.min_time() != i64::MAX => (th.min_time(), i64::MAX),
                _ => (i64::MAX, i64::MIN),
            }),
        },
        history,
    ];
    if let Some(r) = recent {
        let rr = r.clone();
        sources.push(Source {
            name: "ingester (shipped blocks)",
            queryable: r,
            range: Arc::new(move |t| rr.time_range(t)),
        });
    }
    // Deleted series stay out of every answer (tombstones in the bucket, applied at
    // read time until the compactor has rewritten the blocks).
    let tombstones = Arc::new(hearth_storage::tombstones::Tombstones::new(
        blocks.bucket().clone(),
    ));
    spawn_tombstone_sync(tombstones.clone(), &cfg).await;
    let deletions = tombstones.clone();
    let merged: Arc<dyn hearth_core::Queryable> = Arc::new(hearth_querier::DeletionFilter::new(
        Arc::new(MergeQueryable::new(sources)),
        Arc::new(move |t| deletions.deletions(t)),
    ));

    let distributor = Arc::new(DistributorState::new(
        db.clone(),
        DistributorConfig {
            max_decompressed_bytes: cfg.max_recv_msg_size,
            multitenancy: cfg.multitenancy,
            overrides: overrides.clone(),
        },
    ));
    let engine = Engine::new(
        merged.clone(),
        EngineOptions {
            lookback_delta_ms: cfg.lookback_delta.ms(),
            max_samples: cfg.max_samples,
            timeout: Duration::from_millis(cfg.query_timeout.ms().max(1) as u64),
            max_concurrency: cfg.max_concurrency.max(1),
            delayed_name_removal: cfg.delayed_name_removal,
            ..EngineOptions::default()
        },
    );
    let querier = Arc::new(QuerierState {
        queryable: merged,
        admin: cfg.enable_admin_api.then(|| {
            Arc::new(AdminDeleter(tombstones.clone())) as Arc<dyn hearth_querier::SeriesDeleter>
        }),
        engine,
        status: Arc::new(status::HeadStatus(db.clone())),
        config_status: Arc::new(runtime.clone()),
        cfg: ApiConfig {
            multitenancy: cfg.multitenancy,
            flags: cfg.flag_map(),
            config_yaml: cfg.raw_yaml.clone(),
        },
        started: SystemTime::now(),
        started_instant: Instant::now(),
    });
    let app = Arc::new(App {
        shipper: Some(shipper),
        compactor: Some(compactor),
        blocks: blocks.clone(),
        db: Some(db.clone()),
        distributor: Some(distributor.clone()),
        metrics: SelfMetrics::new(),
        ready_after_sync: false,
    });

    let push = Router::new()
        .route("/api/v1/push", post(push_handler))
        .route("/api/v1/write", post(push_handler))
        .layer(DefaultBodyLimit::max(distributor.cfg.max_body_bytes()))
        .with_state(distributor.clone());
    let ops = ops_router(app.clone()).merge(
        Router::new()
            .route("/ingester/flush", post(flush_handler))
            .with_state(app.clone()),
    );
    let router = Router::new()
        .merge(push)
        .merge(ops)
        .merge(hearth_querier::router(querier))
        .layer(tower_http::trace::TraceLayer::new_for_http());

    let listener = bind_http(&cfg).await?;
    info!(address = %listener.local_addr()?, series = db.head().num_series(), startup_ms = started.elapsed().as_millis() as u64, "listening");
    serve_until_signal(listener, router, || log_ingester_stopping(&app)).await
}

/// Lists the bucket now and then every sync interval. With `tolerate_failure`, a first
/// listing that fails is only logged (an ingester starts with the bucket down); without,
/// the first listing is retried every few seconds in the background until it succeeds
/// (a store gateway stays not-ready meanwhile).
async fn spawn_bucket_sync(
    store: Arc<hearth_storage::BucketStore>,
    cfg: &Config,
    tolerate_failure: bool,
) {
    let every = Duration::from_millis(cfg.sync_interval.ms() as u64);
    if tolerate_failure {
        match store.sync().await {
            Ok(found) => info!(blocks = found, "bucket synced"),
            Err(e) => warn!(error = %e, "listing the bucket failed; retrying in the background"),
        }
    }
    tokio::spawn(async move {
        if !tolerate_failure {
            let t = Instant::now();
            loop {
                match store.sync().await {
                    Ok(found) => {
                        info!(
                            blocks = found,
                            sync_ms = t.elapsed().as_millis() as u64,
                            "bucket synced"
                        );
                        break;
                    }
                    Err(e) => {
                        warn!(error = %e, "first bucket sync failed; retrying");
                        tokio::time::sleep(every.min(Duration::from_secs(5))).await;
                    }
                }
            }
        }
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = store.sync().await {
                warn!(error = %e, "listing the bucket failed; serving the blocks known");
            }
        }
    });
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

/// Reads the bucket's tombstones now (a failure is logged: the bucket may be down) and
/// then every sync interval, so deletions made through other queriers apply here.
async fn spawn_tombstone_sync(t: Arc<hearth_storage::tombstones::Tombstones>, cfg: &Config) {
    if let Err(e) = t.sync().await {
        warn!(error = %e, "reading deletion requests from the bucket failed; retrying");
    }
    let every = Duration::from_millis(cfg.sync_interval.ms() as u64);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = t.sync().await {
                warn!(error = %e, "reading deletion requests from the bucket failed");
            }
        }
    });
}

/// Where the querier reads history: the store gateways of the ring over gRPC, or this
/// process' own bucket store, behind the same trait.
fn history_source(
    cfg: &Config,
    blocks: &Arc<hearth_storage::BucketStore>,
) -> anyhow::Result<Source> {
    if cfg.gateway_members.is_empty() {
        let block_range = blocks.clone();
        return Ok(Source {
            name: "store-gateway",
            queryable: blocks.clone(),
            range: Arc::new(move |t| block_range.time_range(t)),
        });
    }
    let refresh = Duration::from_millis(cfg.sync_interval.ms() as u64).min(Duration::from_secs(10));
    let mut members = Vec::with_capacity(cfg.gateway_members.0.len());
    for (id, addr) in &cfg.gateway_members.0 {
        let remote = Arc::new(
            hearth_rpc::RemoteStore::connect_lazy(addr)
                .map_err(|e| anyhow::anyhow!("store-gateway.sharding-ring.members: {e}"))?,
        );
        remote.spawn_info_refresh(refresh);
        let r = remote.clone();
        members.push(hearth_querier::Member {
            name: format!("store-gateway {id} ({addr})"),
            queryable: remote,
            range: Arc::new(move |t| r.time_range(t)),
        });
    }
    let fanout = Arc::new(hearth_querier::Fanout::new(members, cfg.gateway_rf));
    let f = fanout.clone();
    info!(
        gateways = cfg.gateway_members.0.len(),
        replication_factor = cfg.gateway_rf,
        "reading history from the store gateways"
    );
    Ok(Source {
        name: "store-gateway",
        queryable: fanout,
        range: Arc::new(move |t| f.time_range(t)),
    })
}

/// /metrics, /-/ready, /-/healthy and / for every role.
fn ops_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/-/ready", get(ready_handler))
        .route("/-/healthy", get(|| async { "Hearth is Healthy.\n" }))
        .route(
            "/",
            get(|| async {
                "Hearth: a Prometheus-compatible metrics backend. See /api/v1 and /metrics.\n"
            }),
        )
        .with_state(app)
}

async fn ready_handler(State(app): State<Arc<App>>) -> impl IntoResponse {
    if app.ready_after_sync && !app.blocks.is_synced() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: the bucket has not been synced yet.\n",
        );
    }
    (StatusCode::OK, "Hearth is Ready.\n")
}

/// `--target=store-gateway`: serves the blocks the ring gives this instance over gRPC
/// (the `Store` service), found through the bucket index and opened at first use.
async fn run_store_gateway(cfg: Config) -> anyhow::Result<()> {
    let started = Instant::now();
    info!(version = env!("CARGO_PKG_VERSION"), target = %cfg.target, instance = %cfg.gateway_instance, "starting hearth");
    let bucket = hearth_storage::open_bucket(&cfg.bucket())?;
    let mut store = hearth_storage::BucketStore::with_page_cache(bucket, cfg.page_cache_bytes)
        .with_labels_cache(cfg.labels_cache_bytes)
        .with_sample_encoding(cfg.sample_encoding())
        .with_discovery(hearth_storage::Discovery::BucketIndex {
            max_stale: Duration::from_millis(cfg.index_max_stale.ms().max(0) as u64),
        });
    if !cfg.gateway_members.is_empty() {
        let ids = cfg.gateway_members.ids();
        store = store.with_shard(hearth_storage::Shard {
            ring: hearth_core::Ring::new(
                &ids,
                hearth_core::ring::DEFAULT_TOKENS_PER_MEMBER,
                cfg.gateway_rf,
            ),
            instance: cfg.gateway_instance.clone(),
        });
    }
    let store = Arc::new(store);
    spawn_bucket_sync(store.clone(), &cfg, false).await;
    let info_store = store.clone();
    let ready_store = store.clone();
    let service = hearth_rpc::StoreService::new(
        store.clone(),
        Arc::new(move || hearth_rpc::StoreInfo {
            ready: info_store.is_synced(),
            tenants: info_store.tenant_ranges(),
        }),
        Arc::new(move || ready_store.is_synced()),
    );
    let grpc_addr: SocketAddr = cfg.grpc_listen_address.parse().map_err(|e| {
        anyhow::anyhow!(
            "server.grpc-listen-address {:?}: {e}",
            cfg.grpc_listen_address
        )
    })?;
    let app = Arc::new(App {
        shipper: None,
        compactor: None,
        blocks: store,
        db: None,
        distributor: None,
        metrics: SelfMetrics::new(),
        ready_after_sync: true,
    });
    let listener = bind_http(&cfg).await?;
    info!(http = %listener.local_addr()?, grpc = %grpc_addr, startup_ms = started.elapsed().as_millis() as u64, "listening");
    let grpc = tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve(grpc_addr);
    let http = axum::serve(
        listener,
        ops_router(app).layer(tower_http::trace::TraceLayer::new_for_http()),
    );
    tokio::select! {
        r = grpc => r?,
        r = http => r?,
        _ = shutdown_signal() => {}
    }
    info!("stopped");
    Ok(())
}

/// `--target=compactor`: compaction, retention, deletion and the bucket indexes.
async fn run_compactor(cfg: Config) -> anyhow::Result<()> {
    info!(version = env!("CARGO_PKG_VERSION"), target = %cfg.target, "starting hearth");
    let runtime = runtime_config(&cfg)?;
    let store = Arc::new(
        hearth_storage::BucketStore::with_page_cache(
            hearth_storage::open_bucket(&cfg.bucket())?,
            cfg.page_cache_bytes,
        )
        .with_labels_cache(cfg.labels_cache_bytes)
        .with_sample_encoding(cfg.sample_encoding()),
    );
    let compactor = Arc::new(hearth_compactor::Compactor::new(
        store.clone(),
        compactor_config(&cfg, runtime.overrides.clone()),
    ));
    tokio::spawn(
        compactor
            .clone()
            .run(Duration::from_millis(cfg.compactor_interval.ms() as u64)),
    );
    let app = Arc::new(App {
        shipper: None,
        compactor: Some(compactor),
        blocks: store,
        db: None,
        distributor: None,
        metrics: SelfMetrics::new(),
        ready_after_sync: false,
    });
    let listener = bind_http(&cfg).await?;
    info!(address = %listener.local_addr()?, "listening");
    serve_until_signal(listener, ops_router(app), || {
        info!("shutting down: a compaction in progress is abandoned; its blocks are replaced only once verified, so the next pass redoes it")
    })
    .await
}

fn compactor_config(
    cfg: &Config,
    overrides: Arc<hearth_core::Overrides>,
) -> hearth_compactor::CompactorConfig {
    hearth_compactor::CompactorConfig {
        block_ranges_ms: cfg.compactor_ranges.0.clone(),
        deletion_delay: cfg.compactor_deletion_delay.std(),
        overrides,
        downsampling: cfg.downsampling,
    }
}

/// The per-tenant limits every role reads: the flags' defaults and the runtime
/// configuration file's overrides, reloaded while running.
fn runtime_config(cfg: &Config) -> anyhow::Result<runtime_config::RuntimeConfig> {
    runtime_config::RuntimeConfig::start(
        cfg.runtime_config_path(),
        cfg.default_limits(),
        cfg.runtime_config_reload.std(),
    )
}

async fn bind_http(cfg: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    let addr: SocketAddr = cfg
        .listen_address
        .parse()
        .map_err(|e| anyhow::anyhow!("web.listen-address {:?}: {e}", cfg.listen_address))?;
    Ok(tokio::net::TcpListener::bind(addr).await?)
}

/// `POST /ingester/flush`: ships the whole head to the bucket now and answers with the
/// blocks written (for operators, shutdowns and benchmarks).
async fn flush_handler(State(app): State<Arc<App>>) -> impl IntoResponse {
    let Some(shipper) = &app.shipper else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                serde_json::json!({"status": "error", "error": "this role runs no ingester"}),
            ),
        );
    };
    let shipper = shipper.clone();
    match hearth_core::cpu::background(async move { shipper.flush().await }).await {
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
    let body = app.metrics.render(&metrics::Parts {
        db: app.db.as_deref(),
        distributor: app.distributor.as_ref().map(|d| &d.metrics),
        shipper: app.shipper.as_deref(),
        compactor: app.compactor.as_deref(),
        store: Some(&app.blocks),
    });
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
