//! The ingester role in a cluster (`ingester.ring.members` given): this process is one
//! ingester node, an `IngesterNode` with one Raft log and a replica of every shard group
//! the static placement puts here. It serves, on its gRPC listener, Raft to its peers,
//! writes per shard group (`Ingester.PushGroup`, proposed by the group's leader) to
//! distributors, and reads per shard group (the `Store` service) to queriers; it ships
//! the groups it leads, keeping shipped data in the heads until store gateways have
//! synced the blocks. Distributors and queriers reach it over gRPC, even in the same
//! process: a cluster has no in-process shortcut to one node.

use std::collections::HashMap;
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

use super::{Context, Module};

/// The Raft cluster name every node of a Hearth cluster shares.
const CLUSTER_NAME: &str = "hearth";

pub async fn start(ctx: &mut Context) -> anyhow::Result<Module> {
    let cfg = &ctx.cfg;
    let members = &cfg.ingester_members.0;
    let me = members
        .iter()
        .position(|(id, _)| *id == cfg.ingester_instance)
        .ok_or_else(|| anyhow::anyhow!("ingester.ring.instance-id is not a member"))?;
    let addr_of: HashMap<&str, &str> = members
        .iter()
        .map(|(id, a)| (id.as_str(), a.as_str()))
        .collect();
    let peer_routes = cfg
        .raft_peer_routes
        .0
        .iter()
        .map(|(id, route)| (addr_of[id.as_str()].to_string(), route.clone()))
        .collect();
    let spec = NodeSpec {
        dir: cfg.storage_path.clone(),
        members: members.iter().map(|(_, a)| a.clone()).collect(),
        me,
        groups: cfg.shard_groups,
        replication_factor: cfg.ingester_rf,
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
            },
            ..ReplicaOptions::default()
        },
        log: LogEngineOptions::default(),
        peer_routes,
    };
    let node = Arc::new(
        IngesterNode::start(spec)
            .await
            .map_err(|e| anyhow::anyhow!("starting the ingester node: {e}"))?,
    );

    // A shipped block's data stays in the group's head, answered by every replica,
    // until the store gateways (or queriers reading the bucket) have surely synced it;
    // only then does the group log Shipped and drop it (ShippedTo::Gateways).
    let keep = 2 * cfg.sync_interval.std() + Duration::from_secs(30);
    node.start_shipping(
        ctx.block_writer()?,
        move |_| ShippedTo::Gateways { after: keep },
        ctx.cfg.block_duration.ms(),
        ctx.cfg.ship_interval.std(),
    );

    let grpc = tonic::service::Routes::new(node.raft_service().into_server())
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
        );
    info!(
        member = %ctx.cfg.ingester_instance,
        groups = node.replicas().count(),
        shard_groups = ctx.cfg.shard_groups,
        replication_factor = ctx.cfg.ingester_rf,
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
        grpc: Some(grpc),
        ready: Some(Arc::new(move || ready_node.ready())),
        stopping: Some(Box::new(move || {
            info!(
                groups = stopping_node.replicas().count(),
                "shutting down: every acknowledged write is in the Raft log of a quorum of its group; the groups led here elect new leaders among their other replicas"
            );
            let activity = stopping_node.shipping_activity();
            if activity.is_empty() {
                info!("shutting down: no shipping in progress");
            } else {
                info!(shipping = ?activity, "shutting down: stopping the shipping in progress; the next leader of each group resumes it under the same block ids");
            }
        })),
        metrics: crate::metrics::Parts {
            node: Some(metrics_node),
            ..Default::default()
        },
    })
}

/// `POST /ingester/flush`: ships the whole head of every group this node leads now.
async fn flush_handler(State(node): State<Arc<IngesterNode>>) -> impl IntoResponse {
    match node.flush().await {
        Ok(blocks) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({
                "status": "success",
                "blocks": super::ingester::blocks_json(&blocks),
            })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "error", "error": e.to_string()})),
        ),
    }
}
