//! The blocks this ingester shipped lately, still answered by the ingester. Once a block
//! is shipped its data leaves the head, but store gateways learn of a new block only at
//! their next bucket sync; until then the ingester answers for it from the block it
//! wrote and verified (the reader is already open), as Mimir's ingesters keep serving
//! their shipped blocks for a while. Kept for a few gateway sync intervals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hearth_core::{Matcher, Queryable, SelectHints, SeriesStream, StorageError, Tenant};
use hearth_storage::store::{label_names_in, label_values_in, select_in};
use hearth_storage::BlockReader;
use parking_lot::Mutex;

pub struct RecentlyShipped {
    keep: Duration,
    blocks: Mutex<Vec<(Instant, Arc<BlockReader>)>>,
}

impl RecentlyShipped {
    pub fn new(keep: Duration) -> RecentlyShipped {
        RecentlyShipped {
            keep,
            blocks: Mutex::new(Vec::new()),
        }
    }

    pub fn push(&self, block: Arc<BlockReader>) {
        let mut all = self.blocks.lock();
        all.retain(|(at, _)| at.elapsed() < self.keep);
        all.push((Instant::now(), block));
    }

    fn of(&self, tenant: &Tenant, mint: i64, maxt: i64) -> Vec<Arc<BlockReader>> {
        let mut all = self.blocks.lock();
        all.retain(|(at, _)| at.elapsed() < self.keep);
        all.iter()
            .filter(|(_, b)| {
                b.meta().hearth.tenant == tenant.as_str() && b.meta().overlaps(mint, maxt)
            })
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// The time range the kept blocks of `tenant` cover, inclusive.
    pub fn time_range(&self, tenant: &Tenant) -> (i64, i64) {
        self.of(tenant, i64::MIN, i64::MAX)
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), b| {
                (lo.min(b.meta().min_time), hi.max(b.meta().max_time - 1))
            })
    }
}

#[async_trait]
impl Queryable for RecentlyShipped {
    async fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        _hints: &SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        select_in(&self.of(tenant, mint, maxt), matchers, mint, maxt).await
    }

    async fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(label_names_in(&self.of(tenant, mint, maxt), matchers))
    }

    async fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(label_values_in(
            &self.of(tenant, mint, maxt),
            name,
            matchers,
        ))
    }
}
