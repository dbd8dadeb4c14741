//! Cutting the head into blocks: seal, upload and verify, mark shipped (see
//! shipping.md for the invariants and the failure cases). The records go to a
//! [`ShippingLog`]: a shard group's replica, where they are Raft entries every replica
//! applies.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::head::{Head, TenantHead};
use crate::record::ControlRecord;
use async_trait::async_trait;
use hearth_core::{PushError, SeriesData, Tenant};
use hearth_storage::{BlockInput, BlockMeta, BlockWriter, BucketStore};
use tokio::sync::Mutex;
use tracing::{info, warn};

/// Where the shipper reads the head and writes its protocol's records.
#[async_trait]
pub trait ShippingLog: Send + Sync + 'static {
    /// The head as applied now.
    fn head(&self) -> Arc<Head>;
    /// Logs a shipping record and applies it; returns once it is durable (for a shard
    /// group: committed on a quorum) and applied.
    async fn control(&self, rec: ControlRecord) -> Result<(), PushError>;
    /// The shard group whose blocks these are (none for a single node): written in
    /// their meta.json, and mixed into their ids so two groups' blocks of the same
    /// tenant and range never share one.
    fn shard_group(&self) -> Option<u32>;
}

/// A block's id, from what it holds: the ULID's time is the block's start (clamped to
/// the ULID's range) and its 80 random bits are a hash of the scope, the tenant, the
/// range and every sample. Sealed data cannot change, so every attempt to ship it (a
/// retry after a failed upload, a new leader resuming a cut its predecessor started)
/// writes the same objects under the same id and overwrites rather than duplicates;
/// different data (late samples shipped as an overlapping block) gets a different id.
pub fn block_id(
    scope: &str,
    tenant: &Tenant,
    start: i64,
    end: i64,
    series: &[(hearth_core::Labels, SeriesData)],
) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [
        scope.as_bytes(),
        &[0xff],
        tenant.as_str().as_bytes(),
        &[0xff],
    ] {
        h.update(part);
    }
    h.update(&start.to_le_bytes());
    h.update(&end.to_le_bytes());
    let mut samples = Vec::new();
    for (labels, data) in series {
        for l in labels.iter() {
            h.update(l.name.as_bytes());
            h.update(&[0xfe]);
            h.update(l.value.as_bytes());
            h.update(&[0xfd]);
        }
        samples.clear();
        hearth_series::merge::samples_of(data.clone(), &mut samples);
        h.update(&(samples.len() as u64).to_le_bytes());
        for s in &samples {
            h.update(&s.t.to_le_bytes());
            h.update(&s.v.to_bits().to_le_bytes());
        }
    }
    let random = h.digest128() & ((1u128 << 80) - 1);
    let time = start.clamp(0, (1i64 << 48) - 1) as u64;
    ulid::Ulid::from_parts(time, random).to_string()
}

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
    log: Arc<dyn ShippingLog>,
    writer: Arc<BlockWriter>,
    block_range_ms: i64,
    /// Held while shipping: one at a time.
    running: Mutex<()>,
    /// Where shipped blocks are answered from at once.
    shipped_to: ShippedTo,
    /// The block being uploaded now, for the shutdown log.
    activity: parking_lot::Mutex<Option<String>>,
    /// With `ShippedTo::Gateways`: per tenant, the uploaded data whose Shipped waits
    /// for the store gateways to have synced.
    pending: parking_lot::Mutex<std::collections::HashMap<Tenant, PendingRelease>>,
    pub stats: ShipperStats,
}

/// Blocks uploaded and verified whose data the head keeps until `at`.
#[derive(Clone)]
struct PendingRelease {
    before: i64,
    blocks: Vec<(String, String)>,
    at: std::time::Instant,
}

/// Where the blocks an ingester ships are answered from the moment they are shipped,
/// before the head drops their data.
#[derive(Clone)]
pub enum ShippedTo {
    /// The bucket store of this process, which serves them from then on.
    Store(Arc<BucketStore>),
    /// Nothing here: store gateways find blocks in the bucket at their next sync, so
    /// the head keeps the shipped data (answered as before, by every replica of a
    /// shard group) until they surely have, `after` the upload; only then is
    /// `Shipped` logged and the data dropped. A replicated group ships this way: a
    /// block shipped by one replica must not vanish from the answers of the next
    /// leader, which never held a reader for it (replication.md).
    Gateways { after: Duration },
}

/// The start of the block range holding `t`.
fn range_start(t: i64, range: i64) -> i64 {
    t.div_euclid(range) * range
}

impl Shipper {
    /// Ships `log`'s head through `writer`; every shipped block is answered from
    /// `shipped_to` before the head lets go of its data.
    pub fn new(
        log: Arc<dyn ShippingLog>,
        writer: Arc<BlockWriter>,
        shipped_to: ShippedTo,
        block_range_ms: i64,
    ) -> Shipper {
        Shipper {
            log,
            writer,
            block_range_ms,
            running: Mutex::new(()),
            shipped_to,
            activity: parking_lot::Mutex::new(None),
            pending: parking_lot::Mutex::new(std::collections::HashMap::new()),
            stats: ShipperStats::default(),
        }
    }

    /// The boundary to ship `tenant`'s head up to now, if any: a seal not followed by
    /// its Shipped (a crash or a failed upload between the two, or late data below the
    /// boundary after a flush), else whole block ranges once the head spans one and a
    /// half of them (Prometheus' rule for compacting the head).
    fn due(&self, th: &TenantHead) -> Option<i64> {
        if th.is_empty() {
            return None;
        }
        let (min_t, max_t) = (th.min_time(), th.max_time());
        let sealed = th.min_valid_time();
        if sealed > th.shipped_before() {
            return Some(sealed);
        }
        let r = self.block_range_ms;
        if max_t.saturating_sub(min_t) < r + r / 2 {
            return None;
        }
        // Every whole range that ends at least half a range behind the newest sample.
        let end = range_start(max_t - r / 2, r);
        (end > min_t).then_some(end)
    }

    /// Ships what is due for every tenant; returns the blocks written (none when
    /// nothing is due). A tenant whose shipping fails does not stop the others; the
    /// first failure is returned once every tenant had its turn.
    pub async fn ship_due(&self) -> Result<Vec<BlockMeta>, ShipError> {
        let _running = self.running.lock().await;
        let mut shipped = Vec::new();
        let mut first_error = self.release_pending().await.err();
        for (tenant, th) in self.log.head().tenants() {
            let Some(before) = self.due(&th) else {
                continue;
            };
            if self.is_pending(&tenant, before) {
                continue;
            }
            match self.ship_before(&tenant, before).await {
                Ok(blocks) => shipped.extend(blocks),
                Err(e) => {
                    warn!(tenant = %tenant, error = %e, "shipping the tenant's blocks failed; its data stays in the head and will be shipped again");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if shipped.is_empty() => Err(e),
            _ => Ok(shipped),
        }
    }

    /// Ships everything the head holds now (`POST /ingester/flush`): the head keeps
    /// taking samples newer than what it held.
    pub async fn flush(&self) -> Result<Vec<BlockMeta>, ShipError> {
        let _running = self.running.lock().await;
        let mut shipped = Vec::new();
        for (tenant, th) in self.log.head().tenants() {
            if th.is_empty() {
                continue;
            }
            let before = (th.max_time().saturating_add(1)).max(th.min_valid_time());
            shipped.extend(self.ship_before(&tenant, before).await?);
        }
        Ok(shipped)
    }

    /// What shipping is doing now, for the shutdown log: the tenant and range being
    /// uploaded, if any.
    pub fn activity(&self) -> Option<String> {
        self.activity.lock().clone()
    }

    /// The protocol, for one tenant: 1. log Seal(tenant, before), after which the
    /// tenant's data before `before` cannot change; 2. write every block of that data
    /// and read it back; 3. log Shipped(tenant, before), which drops it from the head
    /// (and lets the log be purged after the checkpoint that follows). A failure before
    /// 3 leaves the data in the head and the log, sealed, and `due` ships it again next
    /// time.
    async fn ship_before(&self, tenant: &Tenant, before: i64) -> Result<Vec<BlockMeta>, ShipError> {
        let result = self.ship_before_inner(tenant, before).await;
        *self.activity.lock() = None;
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
        tenant: &Tenant,
        before: i64,
    ) -> Result<Vec<BlockMeta>, ShipError> {
        self.seal(tenant, before).await?;
        let done = self.upload_sealed(tenant, before).await?;
        match &self.shipped_to {
            ShippedTo::Gateways { after } => {
                // The wait runs from when the newest block became visible: a leader
                // that found its predecessor's blocks in the bucket waits only what
                // is left of it (by the bucket's clock against this node's; the wait's
                // margin covers their skew).
                let newest = done.iter().map(|b| b.visible_since).max();
                let waited = newest.map_or(*after, |v| {
                    std::time::SystemTime::now()
                        .duration_since(v)
                        .unwrap_or_default()
                });
                self.pending.lock().insert(
                    tenant.clone(),
                    PendingRelease {
                        before,
                        blocks: block_ids(&done),
                        at: std::time::Instant::now() + after.saturating_sub(waited),
                    },
                );
            }
            _ => self.mark_shipped(tenant, before, &done).await?,
        }
        Ok(done.into_iter().map(|b| b.meta).collect())
    }

    /// Whether `tenant`'s data before `before` is uploaded and waits for its release.
    fn is_pending(&self, tenant: &Tenant, before: i64) -> bool {
        self.pending
            .lock()
            .get(tenant)
            .is_some_and(|p| p.before == before)
    }

    /// Logs Shipped for the uploads whose wait is over (the store gateways have
    /// synced them), so the head drops their data. One that fails stays pending and is
    /// tried again at the next round.
    async fn release_pending(&self) -> Result<(), ShipError> {
        let now = std::time::Instant::now();
        let ready: Vec<(Tenant, PendingRelease)> = self
            .pending
            .lock()
            .iter()
            .filter(|(_, p)| p.at <= now)
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        for (tenant, PendingRelease { before, blocks, .. }) in ready {
            // Shipped already (by a leader that took over while this one waited, then
            // handed back): nothing to log.
            let done = self
                .log
                .head()
                .tenant(&tenant)
                .is_some_and(|th| th.shipped_before() >= before);
            if !done {
                self.log_shipped(&tenant, before, blocks).await?;
            }
            self.pending.lock().remove(&tenant);
        }
        Ok(())
    }

    /// Logs Shipped: from its apply on, the head no longer holds the data.
    async fn log_shipped(
        &self,
        tenant: &Tenant,
        before: i64,
        blocks: Vec<(String, String)>,
    ) -> Result<(), ShipError> {
        self.log
            .control(ControlRecord::Shipped {
                tenant: Some(tenant.clone()),
                before,
                blocks,
            })
            .await?;
        Ok(())
    }

    /// Step 1: after this, the tenant's data before `before` cannot change.
    pub async fn seal(&self, tenant: &Tenant, before: i64) -> Result<(), ShipError> {
        self.log
            .control(ControlRecord::Seal {
                tenant: Some(tenant.clone()),
                before,
            })
            .await?;
        Ok(())
    }

    /// Step 2: writes and verifies every block of the tenant's data sealed before
    /// `before`, each under the id its content gives it ([`block_id`]).
    pub async fn upload_sealed(
        &self,
        tenant: &Tenant,
        before: i64,
    ) -> Result<Vec<hearth_storage::Shipped>, ShipError> {
        let head = self.log.head();
        let group = self.log.shard_group();
        let scope = group.map(|g| format!("group-{g}")).unwrap_or_default();
        let th = head.tenant_or_create(tenant);
        let r = self.block_range_ms;
        let mut done = Vec::new();
        // Only the ranges that hold data: a tenant with one sample from 1970 and the
        // rest from today ships two blocks, not half a million empty ranges.
        for start in th.sealed_ranges(before, r) {
            let end = (start + r).min(before);
            *self.activity.lock() = Some(format!(
                "tenant {tenant}: block [{start}, {end}) of the data sealed before {before}"
            ));
            let series: Vec<_> = head
                .sealed_series_data(tenant, start, end - 1)
                .into_iter()
                .map(|s| (s.labels, s.data))
                .collect();
            if series.is_empty() {
                continue;
            }
            let ulid = block_id(&scope, tenant, start, end, &series);
            // Shipped whole already (by a leader before this one, or an attempt whose
            // last step failed): taken as it is, not uploaded and checked again.
            if let Some(found) = self.writer.find_shipped(tenant, &ulid).await? {
                info!(tenant = %tenant, block = %ulid, "block already in the bucket; not uploaded again");
                done.push(found);
                continue;
            }
            let shipped = self
                .writer
                .ship_as(
                    BlockInput {
                        shard_group: group,
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
            let meta = &shipped.meta;
            info!(
                tenant = %tenant,
                block = %meta.ulid,
                min_time = meta.min_time,
                max_time = meta.max_time,
                series = meta.stats.num_series,
                samples = meta.stats.num_samples,
                "block shipped"
            );
            done.push(shipped);
        }
        Ok(done)
    }

    /// Step 3: the blocks answer for the data (from `shipped_to`), then the head drops
    /// it.
    pub async fn mark_shipped(
        &self,
        tenant: &Tenant,
        before: i64,
        done: &[hearth_storage::Shipped],
    ) -> Result<(), ShipError> {
        let blocks = block_ids(done);
        // Before the head drops the data: from here the blocks answer for it.
        for b in done {
            match &self.shipped_to {
                ShippedTo::Store(s) => s.add(b).await,
                ShippedTo::Gateways { .. } => {}
            }
        }
        self.log_shipped(tenant, before, blocks).await
    }

    /// Ships what is due every `interval`, forever; failures (a bucket outage) are
    /// logged and retried at the next tick while the data stays in the head and log.
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Several ranges may be due after a backfill: ship until none is. Reading
            // the head and encoding blocks run on the background pool.
            loop {
                let me = self.clone();
                match hearth_core::cpu::background(async move { me.ship_due().await }).await {
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

/// (tenant, ULID) of each block, as `Shipped` lists them.
fn block_ids(done: &[hearth_storage::Shipped]) -> Vec<(String, String)> {
    done.iter()
        .map(|b| (b.meta.hearth.tenant.clone(), b.meta.ulid.clone()))
        .collect()
}

/// Applies a shipping record to the head: the same function live, in replay, and on
/// every replica of a shard group.
pub(crate) fn apply_control(head: &Head, rec: &ControlRecord) {
    match rec {
        ControlRecord::Seal { tenant, before } => head.seal(tenant.as_ref(), *before),
        ControlRecord::Shipped {
            tenant,
            before,
            blocks,
        } => {
            head.truncate_before(tenant.as_ref(), *before);
            let collected = head.gc();
            info!(
                tenant = tenant.as_ref().map_or("(every tenant)", |t| t.as_str()),
                before,
                blocks = blocks.len(),
                series_collected = collected,
                series = head.num_series(),
                "shipped data dropped from the head"
            );
        }
    }
}
