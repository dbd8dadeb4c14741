//! The store-gateway role: the blocks of the bucket as one `Queryable`. On its own it
//! finds blocks through the per-tenant bucket index the compactor writes, keeps the
//! blocks the ring gives its id, and serves them over gRPC (the `Store` service). With
//! every role in one process it serves the querier in-process from the bucket store
//! the process shares (unless the configuration names store gateways to read from).

use std::sync::Arc;

use hearth_storage::BucketStore;

use super::{Context, LocalHistory, Module};
use crate::metrics::Parts;

pub async fn start(ctx: &mut Context) -> anyhow::Result<Module> {
    if ctx.all && !ctx.cfg.gateway_members.is_empty() {
        // Every role here, but history comes from the store gateways of the ring.
        return Ok(Module::default());
    }
    if ctx.all {
        let store = ctx.bucket_store().await?;
        let s = store.clone();
        ctx.history = Some(LocalHistory {
            queryable: store.clone(),
            range: Arc::new(move |t| s.time_range(t)),
        });
        return Ok(Module {
            metrics: Parts {
                store: Some(store),
                ..Parts::default()
            },
            ..Module::default()
        });
    }
    let bucket = ctx.bucket()?;
    let cfg = &ctx.cfg;
    let mut store = BucketStore::with_page_cache(bucket, cfg.page_cache_bytes)
        .with_labels_cache(cfg.labels_cache_bytes)
        .with_discovery(hearth_storage::Discovery::BucketIndex {
            max_stale: cfg.index_max_stale.std(),
        });
    if !cfg.gateway_members.is_empty() {
        store = store.with_shard(hearth_storage::Shard {
            ring: hearth_core::Ring::new(
                &cfg.gateway_members.ids(),
                hearth_core::ring::DEFAULT_TOKENS_PER_MEMBER,
                cfg.gateway_rf,
            ),
            instance: cfg.gateway_instance.clone(),
        });
    }
    let store = Arc::new(store);
    // Not ready, and answering Unavailable, until the first sync: a gateway must never
    // answer as if the bucket were empty.
    crate::server::spawn_bucket_sync(store.clone(), cfg.sync_interval.std(), false).await;
    let (info_store, ready_store, check) = (store.clone(), store.clone(), store.clone());
    let service = hearth_rpc::StoreService::new(
        store.clone(),
        Arc::new(move || hearth_rpc::StoreInfo {
            ready: info_store.is_synced(),
            tenants: info_store.tenant_ranges(),
        }),
        Arc::new(move || ready_store.is_synced()),
    );
    Ok(Module {
        grpc: Some(tonic::service::Routes::new(service.into_server())),
        ready: Some(Arc::new(move || {
            if check.is_synced() {
                Ok(())
            } else {
                Err("the bucket has not been synced yet".into())
            }
        })),
        stopping: None,
        http: None,
        metrics: Parts {
            store: Some(store),
            ..Parts::default()
        },
    })
}
