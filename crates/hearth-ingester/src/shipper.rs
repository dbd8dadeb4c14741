//! Cutting the head into blocks: seal, upload and verify, mark shipped (see
//! shipping.md for the invariants and the failure cases).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hearth_storage::{BlockInput, BlockMeta, BucketStore};
use hearth_tsdb::record::ControlRecord;
use hearth_tsdb::Db;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::recent::RecentlyShipped;

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("write-ahead log: {0}")]
    Log(#[from] hearth_core::PushError),
    #[error("uploading a block: {0}")]
    Block(#[from] hearth_storage::BlockError),
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct ShipperStats {
    pub blocks_shipped: AtomicU64,
    pub samples_shipped: AtomicU64,
    pub failures: AtomicU64,
}

/// Ships the head's old data to the bucket. One shipping runs at a time.
pub struct Shipper {
    db: Arc<Db>,
    store: Arc<BucketStore>,
    block_range_ms: i64,
    /// Held while shipping (one at a time); holds the ULIDs given to the blocks of an
    /// attempt that has not ended in Shipped yet.
    running: Mutex<Attempted>,
    /// Where shipped blocks stay queryable until store gateways know them.
    recent: Option<Arc<RecentlyShipped>>,
    pub stats: ShipperStats,
}

/// (tenant, range start, range end) -> the ULID an earlier, failed attempt gave that
/// block. The head's data there is sealed, so a retry writes the same block: under the
/// same ULID it overwrites whatever the failed attempt left (even a block that became
/// visible before the attempt failed) instead of adding a duplicate.
type Attempted = std::collections::HashMap<(String, i64, i64), String>;

/// The start of the block range holding `t`.
fn range_start(t: i64, range: i64) -> i64 {
    t.div_euclid(range) * range
}

impl Shipper {
    pub fn new(db: Arc<Db>, store: Arc<BucketStore>, block_range_ms: i64) -> Shipper {
        Shipper {
            db,
            store,
            block_range_ms,
            running: Mutex::new(Attempted::new()),
            recent: None,
            stats: ShipperStats::default(),
        }
    }

    /// Keeps every shipped block answerable through `recent` (when store gateways, not
    /// this process, serve the bucket).
    pub fn with_recent(mut self, recent: Arc<RecentlyShipped>) -> Shipper {
        self.recent = Some(recent);
        self
    }

    /// The boundary to ship up to now, if any: data the head sealed but has not
    /// shipped yet (a crash between the two), else whole block ranges once the head
    /// spans one and a half of them (Prometheus' rule for compacting the head).
    fn due(&self) -> Option<i64> {
        let head = self.db.head();
        let (min_t, max_t) = head.time_range();
        if min_t == i64::MAX {
            return None;
        }
        let sealed = head.min_valid_time();
        if min_t < sealed {
            return Some(sealed);
        }
        let r = self.block_range_ms;
        if max_t - min_t < r + r / 2 {
            return None;
        }
        // Every whole range that ends at least half a range behind the newest sample.
        let end = range_start(max_t - r / 2, r);
        (end > min_t).then_some(end)
    }

    /// Ships what is due; returns the blocks written (none when nothing is due).
    pub async fn ship_due(&self) -> Result<Vec<BlockMeta>, ShipError> {
        let mut attempted = self.running.lock().await;
        match self.due() {
            Some(before) => self.ship_before(before, &mut attempted).await,
            None => Ok(Vec::new()),
        }
    }

    /// Ships everything the head holds now (`POST /ingester/flush`): the head keeps
    /// taking samples newer than what it held.
    pub async fn flush(&self) -> Result<Vec<BlockMeta>, ShipError> {
        let mut attempted = self.running.lock().await;
        let (min_t, max_t) = self.db.head().time_range();
        if min_t == i64::MAX {
            return Ok(Vec::new());
        }
        self.ship_before(max_t + 1, &mut attempted).await
    }

    /// The protocol: 1. log Seal(before), after which the head's data before `before`
    /// cannot change; 2. write every block of that data and read it back; 3. log
    /// Shipped(before), which drops it from the head (and lets the log be purged after
    /// the checkpoint that follows). A failure before 3 leaves the data in the head and
    /// the log, sealed, and `due` ships it again next time.
    async fn ship_before(
        &self,
        before: i64,
        attempted: &mut Attempted,
    ) -> Result<Vec<BlockMeta>, ShipError> {
        let result = self.ship_before_inner(before, attempted).await;
        match &result {
            Ok(blocks) => {
                self.stats
                    .blocks_shipped
                    .fetch_add(blocks.len() as u64, Ordering::Relaxed);
                let samples: u64 = blocks.iter().map(|m| m.stats.num_samples).sum();
                self.stats
                    .samples_shipped
                    .fetch_add(samples, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    async fn ship_before_inner(
        &self,
        before: i64,
        attempted: &mut Attempted,
    ) -> Result<Vec<BlockMeta>, ShipError> {
        self.db.control(ControlRecord::Seal { before }).await?;
        let head = self.db.head();
        let r = self.block_range_ms;
        let mut shipped = Vec::new();
        for (tenant, th) in head.tenants() {
            let min_t = th.min_time();
            if min_t == i64::MAX || min_t >= before {
                continue;
            }
            let mut start = range_start(min_t, r);
            while start < before {
                let end = (start + r).min(before);
                let series: Vec<_> = head
                    .series_data(&tenant, start, end - 1)
                    .into_iter()
                    .map(|s| (s.labels, s.data))
                    .collect();
                if !series.is_empty() {
                    let key = (tenant.as_str().to_string(), start, end);
                    let ulid = attempted
                        .entry(key)
                        .or_insert_with(|| ulid::Ulid::new().to_string())
                        .clone();
                    let meta = self
                        .store
                        .ship_as(
                            BlockInput {
                                tenant: tenant.clone(),
                                min_time: start,
                                max_time: end,
                                level: 1,
                                sources: Vec::new(),
                                resolution: 0,
                                series,
                            },
                            Some(ulid),
                        )
                        .await?;
                    info!(
                        tenant = %tenant,
                        block = %meta.ulid,
                        min_time = meta.min_time,
                        max_time = meta.max_time,
                        series = meta.stats.num_series,
                        samples = meta.stats.num_samples,
                        "block shipped"
                    );
                    shipped.push(meta);
                }
                start = end;
            }
        }
        let blocks = shipped
            .iter()
            .map(|m| (m.hearth.tenant.clone(), m.ulid.clone()))
            .collect();
        // Before the head drops the data: from here the blocks answer for it.
        if let Some(recent) = &self.recent {
            for m in &shipped {
                let Ok(tenant) = hearth_core::Tenant::new(&m.hearth.tenant) else {
                    continue;
                };
                if let Some(b) = self
                    .store
                    .blocks(&tenant)
                    .into_iter()
                    .find(|b| b.meta().ulid == m.ulid)
                {
                    recent.push(self.store.open(&b).await?);
                }
            }
        }
        self.db
            .control(ControlRecord::Shipped { before, blocks })
            .await?;
        attempted.clear();
        Ok(shipped)
    }

    /// Ships what is due every `interval`, forever; failures (a bucket outage) are
    /// logged and retried at the next tick while the data stays in the head and log.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Several ranges may be due after a backfill: ship until none is.
            loop {
                match self.ship_due().await {
                    Ok(blocks) if blocks.is_empty() => break,
                    Ok(_) => continue,
                    Err(e) => {
                        warn!(error = %e, "shipping blocks failed; the data stays in the head and will be shipped again");
                        break;
                    }
                }
            }
        }
    }
}
