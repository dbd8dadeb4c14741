//! The ingester role: this process is one ingester node, an `IngesterNode` with one
//! log engine and a replica of every shard group the placement puts here.
//!
//! In a cluster (`ingester.ring.members` given) the node serves, on its gRPC listener,
//! Raft to its peers, writes per shard group (`Ingester.PushGroup`, proposed by the
//! group's leader) to distributors and reads per shard group (the `Store` service) to
//! queriers; distributors and queriers reach it over gRPC, even in the same process.
//!
//! Alone (the embedded default, or any target with the ingester and no members) it is
//! the same node as a cluster of one: every group on this node at replication factor 1,
//! and the distributor and querier of this process use it in-process through the same
//! service traits (`GroupIngester`, `GroupReader`). Either way it ships the groups it
//! leads.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use hearth_core::shard::{GroupIngester, GroupReader};
use hearth_core::IngesterStatus;
use hearth_ingester::replication::{IngesterNode, LogEngineOptions, NodeSpec, ReplicaOptions};
use hearth_ingester::{HeadOptions, SeriesLimits, ShippedTo};
use tracing::info;

use super::{Context, LocalIngester, Module};

/// The Raft cluster name every node of a Hearth cluster shares.
const CLUSTER_NAME: &str = "hearth";

pub async fn start(ctx: &mut Context) -> anyhow::Result<Module> {
    let cfg = &ctx.cfg;
    let alone = cfg.ingester_members.is_empty();
    let (members, me, peer_routes) = if alone {
        // A cluster of one: the address is never dialled (no group has another replica).
        (vec![cfg.grpc_listen_address.clone()], 0, Default::default())
    } else {
        let members = &cfg.ingester_members.0;
        let me = members
            .iter()
            .position(|(id, _)| *id == cfg.ingester_instance)
            .ok_or_else(|| anyhow::anyhow!("ingester.ring.instance-id is not a member"))?;
        let addr_of = |id: &str| {
            members
                .iter()
                .find(|(m, _)| m == id)
                .map(|(_, a)| a.clone())
                .unwrap_or_default()
        };
        let routes = cfg
            .raft_peer_routes
            .0
            .iter()
            .map(|(id, route)| (addr_of(id), route.clone()))
            .collect();
        (members.iter().map(|(_, a)| a.clone()).collect(), me, routes)
    };
    let spec = NodeSpec {
        dir: cfg.storage_path.clone(),
        members,
        me,
        groups: cfg.shard_groups(),
        replication_factor: cfg.ingester_rf(),
        cluster_name: CLUSTER_NAME.to_string(),
        head: HeadOptions {
            block_range_ms: cfg.block_duration.ms(),
            out_of_order_window_ms: cfg.ooo_window.ms(),
        },
        replica: ReplicaOptions {
            snapshot_after_log_bytes: cfg.checkpoint_after_bytes,
            // The node sets the share: a tenant's series spread over every group.
            series_limits: SeriesLimits {
                overrides: ctx.runtime.overrides.clone(),
                ingesters: 1,
                ..SeriesLimits::default()
            },
            ..ReplicaOptions::default()
        },
        log: LogEngineOptions::default(),
        peer_routes,
    };
    refuse_single_node_log(&cfg.storage_path)?;
    let node = Arc::new(
        IngesterNode::start(spec)
            .await
            .map_err(|e| anyhow::anyhow!("starting the ingester node: {e}"))?,
    );

    // A shipped block's data leaves the group's head once the blocks are served: at
    // once when this process serves the bucket itself (every role here, no store
    // gateways), else once the store gateways (or queriers reading the bucket) have
    // surely synced it; the head answers for it until then.
    let shipped_to = if ctx.all && ctx.cfg.gateway_members.is_empty() {
        ShippedTo::Store(ctx.bucket_store().await?)
    } else {
        ShippedTo::Gateways {
            after: 2 * ctx.cfg.sync_interval.std() + Duration::from_secs(30),
        }
    };
    node.start_shipping(
        ctx.block_writer()?,
        move |_| shipped_to.clone(),
        ctx.cfg.block_duration.ms(),
        ctx.cfg.ship_interval.std(),
    );

    // Alone, the distributor and querier of this process use the node in-process;
    // with nothing else in this process, they reach it over gRPC.
    let grpc = if ctx.all {
        None
    } else {
        Some(
            tonic::service::Routes::new(node.raft_service().into_server())
                .add_service(
                    hearth_rpc::IngesterService::for_groups(
                        node.clone() as Arc<dyn GroupIngester>,
                        node.clone() as Arc<dyn IngesterStatus>,
                    )
                    .into_server(),
                )
                .add_service(
                    hearth_rpc::StoreService::for_groups(
                        node.clone() as Arc<dyn GroupReader>,
                        Arc::new(|| hearth_rpc::StoreInfo {
                            ready: true,
                            tenants: Vec::new(),
                        }),
                    )
                    .into_server(),
                ),
        )
    };
    if alone {
        ctx.ingester = Some(LocalIngester { node: node.clone() });
    }
    info!(
        member = %if alone { "this process" } else { ctx.cfg.ingester_instance.as_str() },
        groups = node.replicas().count(),
        shard_groups = ctx.cfg.shard_groups(),
        replication_factor = ctx.cfg.ingester_rf(),
        series = node.heads().iter().map(|(_, h)| h.num_series()).sum::<usize>(),
        "ingester node ready"
    );
    let ready_node = node.clone();
    let stopping_node = node.clone();
    let metrics_node = node.clone();
    Ok(Module {
        http: Some(
            Router::new()
                .route("/ingester/flush", post(flush_handler))
                .with_state(node),
        ),
        grpc,
        ready: Some(Arc::new(move || ready_node.ready())),
        stopping: Some(Box::new(move || {
            if alone {
                info!(
                    groups = stopping_node.replicas().count(),
                    log_bytes = stopping_node.log().disk_bytes(),
                    "shutting down: every acknowledged write is in the log on disk and is restored from it at the next start; nothing to flush"
                );
            } else {
                info!(
                    groups = stopping_node.replicas().count(),
                    "shutting down: every acknowledged write is in the Raft log of a quorum of its group; the groups led here elect new leaders among their other replicas"
                );
            }
            let activity = stopping_node.shipping_activity();
            if activity.is_empty() {
                info!("shutting down: no shipping in progress");
            } else {
                info!(shipping = ?activity, "shutting down: stopping the shipping in progress; the group's next leader (here, after the restart) resumes it under the same block ids");
            }
        })),
        metrics: crate::metrics::Parts {
            node: Some(metrics_node),
            ..Default::default()
        },
    })
}

/// `POST /ingester/flush`: ships the whole head of every group this node leads now,
/// and answers with the blocks written (for operators, shutdowns and benchmarks).
async fn flush_handler(State(node): State<Arc<IngesterNode>>) -> impl IntoResponse {
    match node.flush().await {
        Ok(blocks) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({
                "status": "success",
                "blocks": blocks_json(&blocks),
            })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "error", "error": e.to_string()})),
        ),
    }
}

/// The blocks a flush wrote, as the flush endpoint lists them.
fn blocks_json(blocks: &[hearth_storage::BlockMeta]) -> Vec<serde_json::Value> {
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
                "shardGroup": m.hearth.shard_group,
            })
        })
        .collect()
}

/// Stops the start when the data directory holds the log of Hearth's earlier single-node
/// ingester (`wal/`, `checkpoints/`), which this node would not read: its data would
/// look lost. Nothing in it is removed.
fn refuse_single_node_log(dir: &std::path::Path) -> anyhow::Result<()> {
    let wal = dir.join("wal");
    let holds_segments = std::fs::read_dir(&wal)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "wal"))
        })
        .unwrap_or(false);
    if holds_segments {
        anyhow::bail!(
            "{} holds the write-ahead log of an earlier Hearth (a single-node `wal/`), which this version does not read; \
             ship it with the earlier version first (`POST /ingester/flush`, then stop it), then move `wal/` and `checkpoints/` away",
            dir.display()
        );
    }
    Ok(())
}
