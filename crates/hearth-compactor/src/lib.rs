//! The compactor role: keeps a tenant's blocks few and lean. It merges blocks that
//! overlap in time (vertical compaction: duplicates from a retried shipping, or two
//! replicas), merges adjacent blocks up the configured ranges (2 h -> 12 h -> 24 h),
//! marks blocks past a tenant's retention, rewrites blocks that hold samples of deletion
//! requests (`delete_series` tombstones in the bucket) without them, and deletes marked blocks once the deletion
//! delay has passed so queries already reading them finish, and after each pass rewrites
//! every tenant's bucket index, which store gateways read instead of listing the bucket
//! (see compaction.md beside this file).
//!
//! This room owns the planning and the order of the steps; blocks are read, written,
//! verified and marked only through hearth-storage. It may not touch ingesters, the
//! head or HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hearth_core::{Deletion, Overrides, Series, Tenant};
use hearth_storage::block::marks::{delete_block, mark_for_deletion, read_mark};
use hearth_storage::block::read_meta;
use hearth_storage::bucket_index::{write_index, BucketIndex, IndexDeletionMark};
use hearth_storage::tombstones::Tombstones;
use hearth_storage::{BlockError, BlockInput, BlockMeta, BlockWriter, BucketStore};
use tracing::{info, warn};

#[derive(Clone, Debug)]
pub struct CompactorConfig {
    /// Block ranges, smallest first; the first is the ingesters' block range.
    pub block_ranges_ms: Vec<i64>,
    /// How long a marked block stays before it is deleted.
    pub deletion_delay: Duration,
    /// Per-tenant limits: blocks entirely older than a tenant's
    /// `compactor_blocks_retention_period` are removed (0 keeps everything).
    pub overrides: Arc<Overrides>,
    /// Write 5 m and 1 h downsampled copies of blocks of the largest range.
    pub downsampling: bool,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig {
            block_ranges_ms: vec![2 * 3_600_000, 12 * 3_600_000, 24 * 3_600_000],
            deletion_delay: Duration::from_secs(12 * 3600),
            overrides: Arc::new(Overrides::default()),
            downsampling: true,
        }
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub compacted: Vec<String>,
    /// Blocks rewritten without the samples of deletion requests.
    pub rewritten: Vec<String>,
    /// Downsampled blocks written.
    pub downsampled: Vec<String>,
    pub marked: usize,
    pub deleted: usize,
}

/// Counters for /metrics.
#[derive(Debug, Default)]
pub struct CompactorStats {
    pub runs: AtomicU64,
    pub failed_runs: AtomicU64,
    pub blocks_written: AtomicU64,
    pub blocks_marked: AtomicU64,
    pub blocks_deleted: AtomicU64,
    /// Bucket indexes written.
    pub index_writes: AtomicU64,
}

pub struct Compactor {
    store: Arc<BucketStore>,
    writer: Arc<BlockWriter>,
    /// Deletion requests, read from the bucket at each pass.
    tombstones: Tombstones,
    cfg: CompactorConfig,
    pub stats: CompactorStats,
}

fn overlaps(a: &BlockMeta, b: &BlockMeta) -> bool {
    a.min_time < b.max_time && b.min_time < a.max_time
}

/// The next group of blocks to merge, if any: blocks that overlap in time first, then
/// the blocks inside one window of a larger range, once that window is closed (a newer
/// block exists past its end).
pub fn plan(metas: &[BlockMeta], ranges: &[i64]) -> Option<Vec<BlockMeta>> {
    let mut metas: Vec<&BlockMeta> = metas.iter().collect();
    metas.sort_by_key(|m| (m.min_time, m.max_time));
    for (i, a) in metas.iter().enumerate() {
        let mut group: Vec<&BlockMeta> = vec![a];
        let mut end = a.max_time;
        for b in &metas[i + 1..] {
            if b.min_time < end && b.hearth.resolution == a.hearth.resolution {
                end = end.max(b.max_time);
                group.push(b);
            }
        }
        if group.len() > 1 && group.iter().skip(1).any(|b| overlaps(a, b)) {
            return Some(group.into_iter().cloned().collect());
        }
    }
    let newest = metas.iter().map(|m| m.max_time).max()?;
    for &range in ranges.iter().skip(1) {
        let mut windows: BTreeMap<i64, Vec<&BlockMeta>> = BTreeMap::new();
        for m in &metas {
            let start = m.min_time.div_euclid(range) * range;
            if m.max_time <= start + range && m.max_time - m.min_time < range {
                windows.entry(start).or_default().push(m);
            }
        }
        for (start, group) in windows {
            let same_resolution = group
                .iter()
                .all(|m| m.hearth.resolution == group[0].hearth.resolution);
            if group.len() > 1 && start + range <= newest && same_resolution {
                return Some(group.into_iter().cloned().collect());
            }
        }
    }
    None
}

impl Compactor {
    /// A compactor over the blocks `store` knows, writing through `writer`.
    pub fn new(
        store: Arc<BucketStore>,
        writer: Arc<BlockWriter>,
        cfg: CompactorConfig,
    ) -> Compactor {
        Compactor {
            tombstones: Tombstones::new(store.bucket().clone()),
            store,
            writer,
            cfg,
            stats: CompactorStats::default(),
        }
    }

    /// Writes, verifies and commits a block, and serves it from the store at once.
    async fn ship(&self, input: BlockInput) -> Result<BlockMeta, BlockError> {
        let shipped = self.writer.ship(input).await?;
        self.store.add(&shipped).await;
        Ok(shipped.meta)
    }

    fn retention(&self, tenant: &Tenant) -> i64 {
        self.cfg
            .overrides
            .get(tenant)
            .compactor_blocks_retention_period_ms
    }

    /// Merges a group into one block, verified, then marks the group for deletion.
    async fn compact(
        &self,
        tenant: &Tenant,
        group: &[BlockMeta],
        now_ms: i64,
    ) -> Result<BlockMeta, BlockError> {
        let min_time = group
            .iter()
            .map(|m| m.min_time)
            .min()
            .expect("non-empty group");
        let max_time = group
            .iter()
            .map(|m| m.max_time)
            .max()
            .expect("non-empty group");
        let readers: Vec<_> = self
            .store
            .blocks(tenant)
            .into_iter()
            .filter(|b| group.iter().any(|g| g.ulid == b.meta().ulid))
            .collect();
        if readers.len() != group.len() {
            return Err(BlockError::Format(
                "a block of the group is no longer open".into(),
            ));
        }
        let mut sets: Vec<Vec<Series>> = Vec::with_capacity(readers.len());
        for b in &readers {
            let r = self.store.open(b).await?;
            sets.push(r.select(&[], min_time, max_time - 1).await?);
        }
        let merged = hearth_series::tombstones::apply_all(
            hearth_series::merge::merge_series(sets),
            &self.tombstones.deletions(tenant),
        );
        let sources: BTreeSet<String> = group
            .iter()
            .flat_map(|m| m.compaction.sources.iter().cloned())
            .collect();
        let meta = self
            .ship(BlockInput {
                shard_group: None,
                tenant: tenant.clone(),
                min_time,
                max_time,
                level: group.iter().map(|m| m.compaction.level).max().unwrap_or(1) + 1,
                sources: sources.into_iter().collect(),
                resolution: group[0].hearth.resolution,
                series: merged.into_iter().map(|s| (s.labels, s.data)).collect(),
            })
            .await?;
        for m in group {
            mark_for_deletion(self.store.bucket(), tenant, &m.ulid, now_ms / 1000).await?;
            self.store.forget(tenant, &m.ulid);
        }
        info!(
            tenant = %tenant,
            block = %meta.ulid,
            from = group.len(),
            min_time,
            max_time,
            level = meta.compaction.level,
            "blocks compacted"
        );
        Ok(meta)
    }

    /// One pass over every tenant: retention, compaction until nothing is due, then
    /// deletion of blocks marked longer ago than the deletion delay.
    pub async fn run_once(&self, now_ms: i64) -> Result<Report, BlockError> {
        let mut report = Report::default();
        self.store.sync().await?;
        self.tombstones.sync().await?;
        for tenant in self.store.list_tenants().await? {
            let retention = self.retention(&tenant);
            if retention > 0 {
                for b in self.store.blocks(&tenant) {
                    if b.meta().max_time <= now_ms - retention {
                        mark_for_deletion(
                            self.store.bucket(),
                            &tenant,
                            &b.meta().ulid,
                            now_ms / 1000,
                        )
                        .await?;
                        self.store.forget(&tenant, &b.meta().ulid);
                        report.marked += 1;
                        info!(tenant = %tenant, block = %b.meta().ulid, "block past retention marked for deletion");
                    }
                }
            }
            let (rewritten, marked) = self.apply_deletions(&tenant, now_ms).await?;
            report.rewritten.extend(rewritten);
            report.marked += marked;
            loop {
                let metas: Vec<BlockMeta> = self
                    .store
                    .blocks(&tenant)
                    .iter()
                    .filter(|b| b.meta().hearth.resolution == 0)
                    .map(|b| b.meta().clone())
                    .collect();
                let Some(group) = plan(&metas, &self.cfg.block_ranges_ms) else {
                    break;
                };
                report.marked += group.len();
                let meta = self.compact(&tenant, &group, now_ms).await?;
                report.compacted.push(meta.ulid);
            }
            if self.cfg.downsampling {
                let (written, marked) = self.downsample(&tenant, now_ms).await?;
                report.downsampled.extend(written);
                report.marked += marked;
            }
            let delay = self.cfg.deletion_delay.as_secs() as i64;
            for (ulid, _, marked) in self.store.list_blocks(&tenant).await? {
                if !marked {
                    continue;
                }
                let Some(mark) = read_mark(self.store.bucket(), &tenant, &ulid).await? else {
                    continue;
                };
                if mark.deletion_time + delay <= now_ms / 1000 {
                    delete_block(self.store.bucket(), &tenant, &ulid).await?;
                    report.deleted += 1;
                }
            }
            self.write_bucket_index(&tenant, now_ms).await?;
        }
        Ok(report)
    }

    /// Rewrites every block that still holds samples of a deletion request without
    /// them (verified, then the old block is marked), so deleted data leaves the bucket.
    /// A block whose every series was deleted is only marked.
    /// Returns the blocks written and the number of blocks marked.
    async fn apply_deletions(
        &self,
        tenant: &Tenant,
        now_ms: i64,
    ) -> Result<(Vec<String>, usize), BlockError> {
        let deletions = self.tombstones.deletions(tenant);
        let mut rewritten = Vec::new();
        let mut marked = 0;
        if deletions.is_empty() {
            return Ok((rewritten, marked));
        }
        for b in self.store.blocks(tenant) {
            let m = b.meta().clone();
            let (min_time, max_time) = (m.min_time, m.max_time - 1);
            let relevant: Vec<Deletion> = deletions
                .iter()
                .filter(|d| d.overlaps(min_time, max_time))
                .cloned()
                .collect();
            if relevant.is_empty() {
                continue;
            }
            let reader = self.store.open(&b).await?;
            let mut hit = false;
            for d in &relevant {
                let found = reader
                    .select(&d.matchers, d.start.max(min_time), d.end.min(max_time))
                    .await?;
                if found
                    .iter()
                    .any(|s| hearth_series::tombstones::deletes_any(s, &relevant))
                {
                    hit = true;
                    break;
                }
            }
            if !hit {
                continue;
            }
            let kept = hearth_series::tombstones::apply_all(
                reader.select(&[], min_time, max_time).await?,
                &relevant,
            );
            if !kept.is_empty() {
                let meta = self
                    .ship(BlockInput {
                        shard_group: None,
                        tenant: tenant.clone(),
                        min_time: m.min_time,
                        max_time: m.max_time,
                        level: m.compaction.level,
                        sources: m.compaction.sources.clone(),
                        resolution: m.hearth.resolution,
                        series: kept.into_iter().map(|s| (s.labels, s.data)).collect(),
                    })
                    .await?;
                info!(tenant = %tenant, from = %m.ulid, block = %meta.ulid, "block rewritten without deleted series");
                rewritten.push(meta.ulid);
            } else {
                info!(tenant = %tenant, block = %m.ulid, "every series of the block was deleted");
            }
            mark_for_deletion(self.store.bucket(), tenant, &m.ulid, now_ms / 1000).await?;
            self.store.forget(tenant, &m.ulid);
            marked += 1;
        }
        Ok((rewritten, marked))
    }

    /// Writes the downsampled blocks that are due, as Thanos does: a 5 m block for every
    /// raw block of the largest range (its window is closed: it will not be merged
    /// again), a 1 h block for every such 5 m block. A downsampled block covers its
    /// source's time range; the raw block stays (raw queries, and `max_source_resolution`
    /// chooses). Returns the blocks written.
    ///
    /// A downsampled block counts for a source only if its sources cover the source's:
    /// when a late block was merged into a day already downsampled (vertical
    /// compaction), the day is downsampled again and the outdated copy is marked.
    /// Returns the blocks written and the number marked.
    async fn downsample(
        &self,
        tenant: &Tenant,
        now_ms: i64,
    ) -> Result<(Vec<String>, usize), BlockError> {
        use hearth_storage::downsample::{downsample_aggregates, downsample_raw, RES_1H, RES_5M};
        let top = *self.cfg.block_ranges_ms.last().unwrap_or(&0);
        let mut written = Vec::new();
        let mut marked = 0;
        let sources_of = |m: &BlockMeta| -> BTreeSet<String> {
            if m.compaction.sources.is_empty() {
                BTreeSet::from([m.ulid.clone()])
            } else {
                m.compaction.sources.iter().cloned().collect()
            }
        };
        for (from, to) in [(0, RES_5M), (RES_5M, RES_1H)] {
            let blocks = self.store.blocks(tenant);
            for b in &blocks {
                let m = b.meta();
                if m.hearth.resolution != from || m.max_time - m.min_time != top {
                    continue;
                }
                let want = sources_of(m);
                let copies: Vec<&BlockMeta> = blocks
                    .iter()
                    .map(|d| d.meta())
                    .filter(|d| {
                        d.hearth.resolution == to
                            && d.min_time == m.min_time
                            && d.max_time == m.max_time
                    })
                    .collect();
                if copies.iter().any(|d| sources_of(d).is_superset(&want)) {
                    continue;
                }
                let reader = self.store.open(b).await?;
                let series = reader.select(&[], m.min_time, m.max_time - 1).await?;
                let rows = if from == 0 {
                    downsample_raw(&series, to)?
                } else {
                    downsample_aggregates(&series, to)?
                };
                if rows.is_empty() {
                    continue;
                }
                let sources = if m.compaction.sources.is_empty() {
                    vec![m.ulid.clone()]
                } else {
                    m.compaction.sources.clone()
                };
                let meta = self
                    .ship(BlockInput {
                        shard_group: None,
                        tenant: tenant.clone(),
                        min_time: m.min_time,
                        max_time: m.max_time,
                        level: m.compaction.level,
                        sources,
                        resolution: to,
                        series: rows,
                    })
                    .await?;
                info!(tenant = %tenant, from = %m.ulid, block = %meta.ulid, resolution_ms = to, "block downsampled");
                written.push(meta.ulid);
                // Copies made before the source grew are outdated.
                for old in copies {
                    mark_for_deletion(self.store.bucket(), tenant, &old.ulid, now_ms / 1000)
                        .await?;
                    self.store.forget(tenant, &old.ulid);
                    marked += 1;
                }
            }
        }
        Ok((written, marked))
    }

    /// Rewrites the tenant's bucket index from a listing: every committed block's meta
    /// (marked ones too, with their marks), so store gateways need not list the bucket.
    async fn write_bucket_index(&self, tenant: &Tenant, now_ms: i64) -> Result<(), BlockError> {
        let bucket = self.store.bucket();
        let known: BTreeMap<String, BlockMeta> = self
            .store
            .blocks(tenant)
            .iter()
            .map(|b| (b.meta().ulid.clone(), b.meta().clone()))
            .collect();
        let mut metas = Vec::new();
        let mut marks = Vec::new();
        for (ulid, committed, marked) in self.store.list_blocks(tenant).await? {
            if !committed {
                continue;
            }
            // Metas are immutable: the store's copy saves a read for unmarked blocks.
            let meta = match known.get(&ulid) {
                Some(m) => Some(m.clone()),
                None => read_meta(bucket, tenant, &ulid).await?,
            };
            let Some(meta) = meta else { continue };
            if marked {
                if let Some(mark) = read_mark(bucket, tenant, &ulid).await? {
                    marks.push(IndexDeletionMark {
                        block_id: ulid.clone(),
                        deletion_time: mark.deletion_time,
                    });
                }
            }
            metas.push(meta);
        }
        let index = BucketIndex::new(now_ms / 1000, metas, marks);
        write_index(bucket, tenant, &index).await?;
        self.stats.index_writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs a pass every `interval`; a failed pass is logged and retried next time
    /// (nothing is marked before its replacement is written and verified).
    pub async fn run(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            // A pass decodes, merges and encodes blocks: all of it on the background
            // pool, off the threads that acknowledge writes and answer queries.
            let me = self.clone();
            match hearth_core::cpu::background(async move { me.run_once(now).await }).await {
                Ok(r) => {
                    self.stats.runs.fetch_add(1, Ordering::Relaxed);
                    let s = &self.stats;
                    s.blocks_written.fetch_add(
                        (r.compacted.len() + r.rewritten.len() + r.downsampled.len()) as u64,
                        Ordering::Relaxed,
                    );
                    s.blocks_marked
                        .fetch_add(r.marked as u64, Ordering::Relaxed);
                    s.blocks_deleted
                        .fetch_add(r.deleted as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats.failed_runs.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, "compaction pass failed; retrying at the next interval");
                }
            }
        }
    }
}
