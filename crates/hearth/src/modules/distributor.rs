//! The distributor role: the remote-write front door. It validates and rate-limits
//! each request and hands it to the ingester nodes (the one in this process when it is
//! the only one, or the cluster's): each series to its shard group, each group's part
//! to the group's leader, every part at once, acknowledged only when every part is
//! committed on a quorum of the group's replicas.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use hearth_core::shard::GroupIngester;
use hearth_core::Ingester;
use hearth_distributor::{
    push_handler, DistributorConfig, DistributorState, GroupRouter, RouterOptions,
};
use tracing::info;

use super::{Context, Module};
use crate::metrics::Parts;

pub async fn start(ctx: &mut Context) -> anyhow::Result<Module> {
    let cfg = &ctx.cfg;
    // Each write is split by shard group and each part sent to its group's leader:
    // on the node in this process (a cluster of one), or wherever it is.
    let mut members: Vec<(String, Arc<dyn GroupIngester>)> = Vec::new();
    match &ctx.ingester {
        Some(local) => members.push(("this process".to_string(), local.node.clone())),
        None => {
            for (id, addr) in &cfg.ingester_members.0 {
                members.push((
                    format!("{id} ({addr})"),
                    Arc::new(hearth_rpc::RemoteIngester::connect_lazy(addr)?),
                ));
            }
        }
    }
    info!(
        ingesters = members.len(),
        shard_groups = cfg.shard_groups(),
        replication_factor = cfg.ingester_rf(),
        "writing to the shard groups' leaders"
    );
    let ingester: Arc<dyn Ingester> = Arc::new(GroupRouter::new(
        members,
        cfg.shard_groups(),
        cfg.ingester_rf(),
        RouterOptions::default(),
    ));
    let state = Arc::new(DistributorState::new(
        ingester,
        DistributorConfig {
            max_decompressed_bytes: cfg.max_recv_msg_size,
            multitenancy: cfg.multitenancy,
            overrides: ctx.runtime.overrides.clone(),
        },
    ));
    let http = Router::new()
        .route("/api/v1/push", post(push_handler))
        .route("/api/v1/write", post(push_handler))
        .layer(DefaultBodyLimit::max(state.cfg.max_body_bytes()))
        .with_state(state.clone());
    Ok(Module {
        http: Some(http),
        metrics: Parts {
            distributor: Some(state),
            ..Parts::default()
        },
        ..Module::default()
    })
}
