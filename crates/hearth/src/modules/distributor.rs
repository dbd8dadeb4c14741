//! The distributor role: the remote-write front door. It validates and rate-limits
//! each request and hands it to the ingesters: the one in this process, or the ring of
//! remote ingesters (each series to the ingester its hash gives, every part pushed at
//! once, acknowledged only when every part is durable).

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use hearth_core::Ingester;
use hearth_distributor::{push_handler, DistributorConfig, DistributorState, IngesterRing};
use tracing::info;

use super::{Context, Module};
use crate::metrics::Parts;

pub async fn start(ctx: &mut Context) -> anyhow::Result<Module> {
    let cfg = &ctx.cfg;
    let ingester: Arc<dyn Ingester> = match &ctx.ingester {
        Some(local) => local.db.clone(),
        None => {
            let mut members: Vec<(String, Arc<dyn Ingester>)> = Vec::new();
            for (id, addr) in &cfg.ingester_members.0 {
                members.push((
                    id.clone(),
                    Arc::new(hearth_rpc::RemoteIngester::connect_lazy(addr)?),
                ));
            }
            info!(ingesters = members.len(), "writing to the ingester ring");
            Arc::new(IngesterRing::new(
                members,
                hearth_core::ring::DEFAULT_TOKENS_PER_MEMBER,
            ))
        }
    };
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
