//! A remote `Store` as a `Queryable`. It keeps the store's last `Info` answer so the
//! querier asks it only for queries that overlap what it holds; until the first answer
//! (or while the store is not ready) it is asked for every query, so a store that cannot
//! answer makes the query fail rather than silently come back short.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use hearth_core::{Matcher, Queryable, SelectHints, SeriesStream, StorageError, Tenant};
use hearth_proto::storage as sp;
use hearth_proto::storage::store_client::StoreClient;
use parking_lot::RwLock;
use tonic::transport::Channel;
use tracing::debug;

use crate::convert::{hints_to_wire, matchers_to_wire, series_from_wire, storage_from_status};
use crate::MAX_MESSAGE_BYTES;

/// The last `Info` a store gave.
#[derive(Default)]
struct Known {
    ready: bool,
    tenants: HashMap<String, (i64, i64)>,
}

pub struct RemoteStore {
    /// The address, naming the store in errors.
    name: String,
    client: StoreClient<Channel>,
    known: RwLock<Option<Known>>,
    /// On a replicated ingester node: the shard group this client reads.
    group: Option<u32>,
}

impl RemoteStore {
    /// A client of the store at `address` (`host:port` or a URL). Connects on first use
    /// and reconnects after failures, so the caller can start before the store does.
    pub fn connect_lazy(address: &str) -> Result<RemoteStore, StorageError> {
        let client = StoreClient::new(crate::convert::endpoint(address, "store")?.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(RemoteStore {
            name: address.to_string(),
            client,
            known: RwLock::new(None),
            group: None,
        })
    }

    /// A client of the same node that reads one shard group (on the node's replica of
    /// it), sharing this one's connection.
    pub fn for_group(&self, group: u32) -> RemoteStore {
        RemoteStore {
            name: format!("{} (group {group})", self.name),
            client: self.client.clone(),
            known: RwLock::new(None),
            group: Some(group),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks the store what it holds now.
    pub async fn refresh_info(&self) -> Result<bool, StorageError> {
        let info = self
            .client
            .clone()
            .info(sp::InfoRequest {})
            .await
            .map_err(|s| storage_from_status(&self.name, s))?
            .into_inner();
        let ready = info.ready;
        *self.known.write() = Some(Known {
            ready,
            tenants: info
                .tenants
                .into_iter()
                .map(|t| (t.tenant, (t.min_time_ms, t.max_time_ms)))
                .collect(),
        });
        Ok(ready)
    }

    /// Refreshes the store's info every `every`, for as long as the client lives.
    pub fn spawn_info_refresh(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { return };
                if let Err(e) = me.refresh_info().await {
                    debug!(store = %me.name, error = %e, "store info refresh failed");
                    // Unknown again: ask the store for every query, so a failure shows.
                    *me.known.write() = None;
                }
            }
        });
    }

    /// The time range the store holds for `tenant`, inclusive; the whole line while
    /// that is not known (the store is asked), empty when it holds nothing.
    pub fn time_range(&self, tenant: &Tenant) -> (i64, i64) {
        match &*self.known.read() {
            Some(k) if k.ready => k
                .tenants
                .get(tenant.as_str())
                .copied()
                .unwrap_or((i64::MAX, i64::MIN)),
            _ => (i64::MIN, i64::MAX),
        }
    }
}

#[async_trait]
impl Queryable for RemoteStore {
    async fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let request = sp::SelectRequest {
            tenant: tenant.as_str().to_string(),
            matchers: matchers_to_wire(matchers),
            min_time_ms: mint,
            max_time_ms: maxt,
            hints: Some(hints_to_wire(hints)),
            max_resolution_ms: hints.max_resolution,
            shard_group: self.group,
        };
        let stream = self
            .client
            .clone()
            .select(request)
            .await
            .map_err(|s| storage_from_status(&self.name, s))?
            .into_inner();
        let name = self.name.clone();
        Ok(stream
            .map_err(move |s| storage_from_status(&name, s))
            .and_then(|r| async move { series_from_wire(r) })
            .boxed())
    }

    async fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let r = self
            .client
            .clone()
            .label_names(sp::LabelNamesRequest {
                tenant: tenant.as_str().to_string(),
                matchers: matchers_to_wire(matchers),
                min_time_ms: mint,
                max_time_ms: maxt,
                shard_group: self.group,
            })
            .await
            .map_err(|s| storage_from_status(&self.name, s))?;
        Ok(r.into_inner().values)
    }

    async fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let r = self
            .client
            .clone()
            .label_values(sp::LabelValuesRequest {
                tenant: tenant.as_str().to_string(),
                name: name.to_string(),
                matchers: matchers_to_wire(matchers),
                min_time_ms: mint,
                max_time_ms: maxt,
                shard_group: self.group,
            })
            .await
            .map_err(|s| storage_from_status(&self.name, s))?;
        Ok(r.into_inner().values)
    }
}

/// A replicated ingester node read one shard group at a time, over its Store service.
#[async_trait]
impl hearth_core::shard::GroupReader for RemoteStore {
    async fn group(&self, group: u32) -> Result<Arc<dyn Queryable>, StorageError> {
        Ok(Arc::new(self.for_group(group)))
    }
}
