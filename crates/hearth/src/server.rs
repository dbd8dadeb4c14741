//! Serving the started roles: one HTTP listener (the roles' routes, and /metrics,
//! /-/ready, /-/healthy for every role) and, when a role serves gRPC, one gRPC listener;
//! then a bounded graceful stop on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tracing::{info, warn};

use crate::config::Config;
use crate::metrics::{Parts, SelfMetrics};
use crate::modules::{Module, ReadyFn, Role};

/// How long in-flight requests may finish after SIGTERM.
const SHUTDOWN_REQUESTS: Duration = Duration::from_secs(5);
/// How long the ingester node's shard groups may take to stop after that (the process
/// stops within 10 s of SIGTERM).
const SHUTDOWN_NODE: Duration = Duration::from_secs(3);

/// What the operational endpoints read.
struct Ops {
    metrics: SelfMetrics,
    parts: Parts,
    ready: Vec<(&'static str, ReadyFn)>,
}

/// Serves the roles until a signal, then stops them within a bounded time.
pub async fn serve(
    cfg: &Config,
    modules: Vec<(Role, Module)>,
    started: Instant,
) -> anyhow::Result<()> {
    let mut router = Router::new();
    let mut grpc: Option<tonic::service::Routes> = None;
    let mut parts = Parts::default();
    let mut ready = Vec::new();
    let mut stopping = Vec::new();
    for (role, m) in modules {
        if let Some(r) = m.http {
            router = router.merge(r);
        }
        if let Some(g) = m.grpc {
            grpc = Some(match grpc {
                None => g,
                Some(all) => {
                    let mut builder = all.into_axum_router();
                    builder = builder.merge(g.into_axum_router());
                    tonic::service::Routes::from(builder)
                }
            });
        }
        if let Some(f) = m.ready {
            ready.push((role.name(), f));
        }
        if let Some(s) = m.stopping {
            stopping.push(s);
        }
        parts.merge(m.metrics);
    }
    let ops = Arc::new(Ops {
        metrics: SelfMetrics::new(&parts),
        parts,
        ready,
    });
    let node = ops.parts.node.clone();
    let router = router
        .merge(ops_router(ops))
        .layer(tower_http::trace::TraceLayer::new_for_http());

    let addr: SocketAddr = cfg
        .listen_address
        .parse()
        .map_err(|e| anyhow::anyhow!("web.listen-address {:?}: {e}", cfg.listen_address))?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc_task = match grpc {
        Some(routes) => {
            let grpc_addr: SocketAddr = cfg.grpc_listen_address.parse().map_err(|e| {
                anyhow::anyhow!(
                    "server.grpc-listen-address {:?}: {e}",
                    cfg.grpc_listen_address
                )
            })?;
            let incoming = tokio::net::TcpListener::bind(grpc_addr).await?;
            info!(grpc = %grpc_addr, "serving gRPC");
            let mut rx = stop_rx.clone();
            Some(tokio::spawn(
                tonic::transport::Server::builder()
                    .add_routes(routes)
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(incoming)
                            .with_nodelay(Some(true)),
                        async move {
                            let _ = rx.changed().await;
                        },
                    ),
            ))
        }
        None => None,
    };
    info!(address = %listener.local_addr()?, roles = %cfg.target, startup_ms = started.elapsed().as_millis() as u64, "listening");
    let mut rx = stop_rx.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = rx.changed().await;
    });
    let server = std::future::IntoFuture::into_future(server);
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r?,
        _ = shutdown_signal() => {
            for s in stopping {
                s();
            }
            let _ = stop_tx.send(true);
            let stopped = async {
                let _ = (&mut server).await;
                if let Some(g) = grpc_task {
                    let _ = g.await;
                }
            };
            if tokio::time::timeout(SHUTDOWN_REQUESTS, stopped).await.is_err() {
                warn!(waited_s = SHUTDOWN_REQUESTS.as_secs(), "requests still running; stopping without them");
            }
            // The node's groups stop their Raft cores (their logs are durable already:
            // this only ends the tasks, so nothing complains of a vanished listener).
            if let Some(node) = node {
                if tokio::time::timeout(SHUTDOWN_NODE, node.shutdown()).await.is_err() {
                    warn!("the ingester node's shard groups did not stop in time; exiting without them");
                }
            }
        }
    }
    info!("stopped");
    Ok(())
}

/// /metrics, /-/ready, /-/healthy and / for every role.
fn ops_router(ops: Arc<Ops>) -> Router {
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
        .with_state(ops)
}

async fn ready_handler(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    for (role, f) in &ops.ready {
        if let Err(why) = f() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Not ready: {role}: {why}.\n"),
            );
        }
    }
    (StatusCode::OK, "Hearth is Ready.\n".to_string())
}

async fn metrics_handler(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    let body = ops.metrics.render(&ops.parts);
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

/// Lists the bucket now and then every `every`. With `tolerate_failure`, a first
/// listing that fails is only logged (an ingester or querier starts with the bucket
/// down); without, the first listing is retried every few seconds in the background
/// until it succeeds (a store gateway stays not ready meanwhile).
pub async fn spawn_bucket_sync(
    store: Arc<hearth_storage::BucketStore>,
    every: Duration,
    tolerate_failure: bool,
) {
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

/// Reads the bucket's tombstones now (a failure is logged: the bucket may be down) and
/// then every `every`, so deletions made through other queriers apply here.
pub async fn spawn_tombstone_sync(t: Arc<hearth_storage::tombstones::Tombstones>, every: Duration) {
    if let Err(e) = t.sync().await {
        warn!(error = %e, "reading deletion requests from the bucket failed; retrying");
    }
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
