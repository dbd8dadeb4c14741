//! The compactor role: compaction, retention, deletion requests and downsampling over
//! the bucket, and every tenant's bucket index after each pass. It reads the blocks
//! through the process' bucket store (shared with the querier when both run here) and
//! writes through a block writer.

use std::sync::Arc;

use hearth_compactor::{Compactor, CompactorConfig};
use tracing::info;

use super::{Context, Module};
use crate::metrics::Parts;

pub async fn start(ctx: &mut Context) -> anyhow::Result<Module> {
    let store = ctx.bucket_store().await?;
    let writer = ctx.block_writer()?;
    let cfg = &ctx.cfg;
    let compactor = Arc::new(Compactor::new(
        store.clone(),
        writer,
        CompactorConfig {
            block_ranges_ms: cfg.compactor_ranges.0.clone(),
            deletion_delay: cfg.compactor_deletion_delay.std(),
            overrides: ctx.runtime.overrides.clone(),
            downsampling: cfg.downsampling,
        },
    ));
    tokio::spawn(compactor.clone().run(cfg.compactor_interval.std()));
    Ok(Module {
        stopping: Some(Box::new(|| {
            info!("shutting down: a compaction in progress is abandoned; its blocks replace others only once verified, so the next pass redoes it")
        })),
        metrics: Parts {
            compactor: Some(compactor),
            store: Some(store),
            ..Parts::default()
        },
        ..Module::default()
    })
}
