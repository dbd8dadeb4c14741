//! The blocks of a bucket as one `Queryable`: discovers committed blocks (those with a
//! meta.json), by listing the bucket or through the per-tenant bucket index, and answers
//! from the ones whose time range overlaps a query. A block is known by its meta alone;
//! its labels file is read the first time a query needs it, so a store with thousands of
//! blocks is ready as soon as it has read the metas. With a ring it serves only the
//! blocks the ring gives to its instance (store-gateway sharding).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use hearth_core::{
    Matcher, Queryable, Ring, SelectHints, Series, SeriesStream, StorageError, Tenant,
};
use object_store::path::Path;
use object_store::ObjectStore;
use parking_lot::RwLock;
use tracing::{debug, warn};

use crate::block::{read_meta, BlockError, BlockMeta, BlockReader, PageCache};
use crate::bucket_index::{read_index, BucketIndex};

/// A committed block, known by its meta; its reader (labels and postings, read from
/// the labels file) lives in the store's byte-bounded cache while queries use it.
pub struct StoreBlock {
    meta: BlockMeta,
}

impl StoreBlock {
    fn new(meta: BlockMeta) -> StoreBlock {
        StoreBlock { meta }
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    fn key(&self) -> String {
        format!("{}/{}", self.meta.hearth.tenant, self.meta.ulid)
    }
}

/// How a store finds the blocks of a bucket.
#[derive(Clone, Debug)]
pub enum Discovery {
    /// List every tenant's folder and read each new block's meta.json: the truth, and
    /// what the compactor (which writes the index) and a single process use.
    Listing,
    /// Read each tenant's bucket index, plus an offset listing past its newest block;
    /// an index older than `max_stale` (or missing) falls back to listing that tenant.
    BucketIndex { max_stale: Duration },
}

/// Which blocks this store serves: those the ring gives to `instance`.
#[derive(Clone, Debug)]
pub struct Shard {
    pub ring: Ring,
    pub instance: String,
}

/// Every known block, by tenant.
pub struct BucketStore {
    bucket: Arc<dyn ObjectStore>,
    blocks: RwLock<BTreeMap<String, Vec<Arc<StoreBlock>>>>,
    /// Chunk pages read from the bucket, shared by every block, bounded in bytes.
    pages: Option<PageCache>,
    /// Opened blocks (labels and postings) by tenant/ULID, bounded in bytes: the least
    /// used are dropped and read again when a query needs them.
    readers: moka::future::Cache<String, Arc<BlockReader>>,
    discovery: Discovery,
    shard: Option<Shard>,
    /// Set once a sync has completed: before it, the store knows no blocks, and a store
    /// gateway must not answer as if the bucket were empty (it reports not ready).
    synced: AtomicBool,
    /// Labels files read (blocks opened), for /metrics.
    opened: AtomicU64,
}

/// The chunk page cache's default size.
pub const DEFAULT_PAGE_CACHE_BYTES: u64 = 512 << 20;
/// The opened-blocks (labels) cache's default size.
pub const DEFAULT_LABELS_CACHE_BYTES: u64 = 1 << 30;

fn unavailable(e: BlockError) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl BucketStore {
    pub fn new(bucket: Arc<dyn ObjectStore>) -> BucketStore {
        Self::with_page_cache(bucket, DEFAULT_PAGE_CACHE_BYTES)
    }

    /// A store whose chunk page cache holds at most `bytes` (0: no cache).
    pub fn with_page_cache(bucket: Arc<dyn ObjectStore>, bytes: u64) -> BucketStore {
        BucketStore {
            bucket,
            blocks: RwLock::new(BTreeMap::new()),
            pages: (bytes > 0).then(|| PageCache::new(bytes)),
            readers: readers_cache(DEFAULT_LABELS_CACHE_BYTES),
            discovery: Discovery::Listing,
            shard: None,
            synced: AtomicBool::new(false),
            opened: AtomicU64::new(0),
        }
    }

    /// Keeps at most about `bytes` of opened blocks' labels and postings in memory.
    pub fn with_labels_cache(mut self, bytes: u64) -> BucketStore {
        self.readers = readers_cache(bytes);
        self
    }

    /// Bytes of opened blocks held (labels and postings), as last accounted.
    pub fn labels_cache_bytes_now(&self) -> u64 {
        self.readers.weighted_size()
    }

    /// Bytes of opened blocks held now (after pending evictions run).
    pub async fn labels_cache_bytes(&self) -> u64 {
        self.readers.run_pending_tasks().await;
        self.readers.weighted_size()
    }

    /// Whether the block's labels are in memory now.
    pub fn is_open(&self, block: &StoreBlock) -> bool {
        self.readers.contains_key(&block.key())
    }

    /// Finds blocks the given way (the default is [`Discovery::Listing`]).
    pub fn with_discovery(mut self, discovery: Discovery) -> BucketStore {
        self.discovery = discovery;
        self
    }

    /// Serves only the blocks the ring gives to `shard.instance`.
    pub fn with_shard(mut self, shard: Shard) -> BucketStore {
        self.shard = Some(shard);
        self
    }

    /// Whether a sync has completed since start.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Labels files read since start (blocks opened by a query, a ship or a compaction).
    pub fn blocks_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    fn owns(&self, ulid: &str) -> bool {
        self.shard
            .as_ref()
            .is_none_or(|s| s.ring.owns(&s.instance, ulid.as_bytes()))
    }

    /// The block's reader, reading its labels file when it is not in the cache (the
    /// first time, or after it was evicted). Concurrent callers share one read.
    pub async fn open(&self, block: &StoreBlock) -> Result<Arc<BlockReader>, BlockError> {
        self.readers
            .try_get_with(block.key(), async {
                let r = BlockReader::open_cached(
                    Arc::clone(&self.bucket),
                    block.meta.clone(),
                    self.pages.clone(),
                )
                .await?;
                self.opened.fetch_add(1, Ordering::Relaxed);
                debug!(block = %block.meta.ulid, series = r.series_labels().len(), "block opened");
                Ok::<_, BlockError>(Arc::new(r))
            })
            .await
            .map_err(|e| BlockError::Format(e.to_string()))
    }

    /// Blocks open, over every tenant.
    pub fn num_blocks(&self) -> usize {
        self.blocks.read().values().map(Vec::len).sum()
    }

    /// Bytes the chunk page cache holds (without waiting for pending evictions).
    /// The chunk page cache, for a writer whose read-back checks should warm it.
    pub fn page_cache(&self) -> Option<PageCache> {
        self.pages.clone()
    }

    pub fn page_cache_bytes_now(&self) -> u64 {
        self.pages.as_ref().map_or(0, PageCache::weighted_size_now)
    }

    /// Bytes the chunk page cache holds now.
    pub async fn page_cache_bytes(&self) -> u64 {
        match &self.pages {
            Some(p) => p.weighted_size().await,
            None => 0,
        }
    }

    pub fn bucket(&self) -> &Arc<dyn ObjectStore> {
        &self.bucket
    }

    /// The blocks of a tenant, oldest first.
    pub fn blocks(&self, tenant: &Tenant) -> Vec<Arc<StoreBlock>> {
        self.blocks
            .read()
            .get(tenant.as_str())
            .cloned()
            .unwrap_or_default()
    }

    /// The tenants with blocks known, and the time range each covers (inclusive).
    pub fn tenant_ranges(&self) -> Vec<(String, i64, i64)> {
        let tenants: Vec<String> = self.blocks.read().keys().cloned().collect();
        tenants
            .into_iter()
            .filter_map(|t| {
                let tenant = Tenant::new(&t).ok()?;
                let (lo, hi) = self.time_range(&tenant);
                (lo <= hi).then_some((t, lo, hi))
            })
            .collect()
    }

    fn insert(&self, block: StoreBlock) {
        let tenant = block.meta.hearth.tenant.clone();
        self.insert_many(&tenant, vec![block]);
    }

    /// Adds blocks not known yet, in one pass (a sync may bring thousands).
    fn insert_many(&self, tenant: &str, blocks: Vec<StoreBlock>) {
        if blocks.is_empty() {
            return;
        }
        let mut all = self.blocks.write();
        let list = all.entry(tenant.to_string()).or_default();
        let mut known: HashSet<String> = list.iter().map(|b| b.meta().ulid.clone()).collect();
        let before = list.len();
        for b in blocks {
            if known.insert(b.meta.ulid.clone()) {
                list.push(Arc::new(b));
            }
        }
        if list.len() != before {
            list.sort_by(|a, b| {
                (a.meta().min_time, &a.meta().ulid).cmp(&(b.meta().min_time, &b.meta().ulid))
            });
        }
    }

    fn known_ulids(&self, tenant: &Tenant) -> HashSet<String> {
        self.blocks
            .read()
            .get(tenant.as_str())
            .map(|l| l.iter().map(|b| b.meta().ulid.clone()).collect())
            .unwrap_or_default()
    }

    /// The tenants with a folder in the bucket.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, BlockError> {
        let root = self.bucket.list_with_delimiter(None).await?;
        Ok(root
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(|n| Tenant::new(n).ok()))
            .collect())
    }

    /// A tenant's block folders: ULID, whether it has meta.json (is committed) and
    /// whether it is marked for deletion. One recursive listing.
    pub async fn list_blocks(
        &self,
        tenant: &Tenant,
    ) -> Result<Vec<(String, bool, bool)>, BlockError> {
        let prefix = Path::from(tenant.as_str());
        let objects: Vec<_> = self.bucket.list(Some(&prefix)).try_collect().await?;
        Ok(group_block_objects(objects))
    }

    /// Finds the committed blocks of every tenant (by listing or through the bucket
    /// index, as the store's [`Discovery`] says) and reads the metas of new ones; blocks
    /// gone from the bucket, marked for deletion (replaced by a compacted block, or past
    /// retention) or not this instance's are dropped. Returns how many blocks are known.
    pub async fn sync(&self) -> Result<usize, BlockError> {
        let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for tenant in self.list_tenants().await? {
            let found = match &self.discovery {
                Discovery::Listing => self.sync_listing(&tenant).await?,
                Discovery::BucketIndex { max_stale } => {
                    match read_index(&self.bucket, &tenant).await {
                        Ok(Some(index))
                            if unix_now() - index.updated_at <= max_stale.as_secs() as i64 =>
                        {
                            self.sync_index(&tenant, &index).await?
                        }
                        Ok(Some(index)) => {
                            warn!(tenant = %tenant, updated_at = index.updated_at, "bucket index is stale (is the compactor running?); listing the bucket");
                            self.sync_listing(&tenant).await?
                        }
                        Ok(None) => self.sync_listing(&tenant).await?,
                        Err(e) => {
                            warn!(tenant = %tenant, error = %e, "bucket index unreadable; listing the bucket");
                            self.sync_listing(&tenant).await?
                        }
                    }
                }
            };
            live.insert(tenant.as_str().to_string(), found);
        }
        let known = {
            let mut all = self.blocks.write();
            for (tenant, list) in all.iter_mut() {
                let keep = live.get(tenant);
                list.retain(|b| keep.is_some_and(|k| k.contains(&b.meta().ulid)));
            }
            all.retain(|_, list| !list.is_empty());
            all.values().map(Vec::len).sum()
        };
        // Readers of blocks no longer served (gone, marked, forgotten) free their memory.
        let stale: Vec<String> = self
            .readers
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| {
                let (tenant, ulid) = k.split_once('/').unwrap_or((k.as_str(), ""));
                !live.get(tenant).is_some_and(|l| l.contains(ulid))
            })
            .collect();
        for k in stale {
            self.readers.invalidate(&k).await;
        }
        self.synced.store(true, Ordering::Release);
        Ok(known)
    }

    /// One tenant by listing: every block folder, meta.json read for new ones.
    async fn sync_listing(&self, tenant: &Tenant) -> Result<BTreeSet<String>, BlockError> {
        let listed = self.list_blocks(tenant).await?;
        self.take_listed(tenant, listed).await
    }

    /// Adds the committed, unmarked, owned blocks of a listing; returns their ULIDs.
    async fn take_listed(
        &self,
        tenant: &Tenant,
        listed: Vec<(String, bool, bool)>,
    ) -> Result<BTreeSet<String>, BlockError> {
        let mut live = BTreeSet::new();
        let known = self.known_ulids(tenant);
        let mut new = Vec::new();
        for (ulid, committed, marked) in listed {
            // No meta.json yet: an upload in progress or abandoned; not a block.
            if !committed || marked || !self.owns(&ulid) {
                continue;
            }
            live.insert(ulid.clone());
            if known.contains(&ulid) {
                continue;
            }
            if let Some(meta) = read_meta(&self.bucket, tenant, &ulid).await? {
                new.push(StoreBlock::new(meta));
            }
        }
        self.insert_many(tenant.as_str(), new);
        Ok(live)
    }

    /// One tenant through its index: the index's blocks, then an offset listing past
    /// its newest block for blocks shipped since it was written.
    async fn sync_index(
        &self,
        tenant: &Tenant,
        index: &BucketIndex,
    ) -> Result<BTreeSet<String>, BlockError> {
        let mut live = BTreeSet::new();
        let marked: HashSet<&str> = index
            .block_deletion_marks
            .iter()
            .map(|m| m.block_id.as_str())
            .collect();
        let known = self.known_ulids(tenant);
        let mut new = Vec::new();
        for meta in &index.blocks {
            if marked.contains(meta.ulid.as_str())
                || !self.owns(&meta.ulid)
                || meta.hearth.tenant != tenant.as_str()
            {
                continue;
            }
            live.insert(meta.ulid.clone());
            if !known.contains(&meta.ulid) {
                new.push(StoreBlock::new(meta.clone()));
            }
        }
        self.insert_many(tenant.as_str(), new);
        let fresh = match index.newest_ulid() {
            Some(newest) => {
                let offset = Path::from(tenant.as_str()).join(newest);
                let objects: Vec<_> = self
                    .bucket
                    .list_with_offset(Some(&Path::from(tenant.as_str())), &offset)
                    .try_collect()
                    .await?;
                group_block_objects(objects)
                    .into_iter()
                    .filter(|(ulid, _, _)| ulid.as_str() > newest)
                    .collect()
            }
            None => self.list_blocks(tenant).await?,
        };
        live.extend(self.take_listed(tenant, fresh).await?);
        Ok(live)
    }

    /// Stops serving a block at once (the compactor, after marking it).
    pub fn forget(&self, tenant: &Tenant, ulid: &str) {
        if let Some(list) = self.blocks.write().get_mut(tenant.as_str()) {
            list.retain(|b| b.meta().ulid != ulid);
        }
    }

    /// Serves a block this process has just written and committed (its reader opened
    /// for the read-back check), so queries see it before the next sync.
    pub async fn add(&self, shipped: &crate::writer::Shipped) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let block = StoreBlock::new(shipped.meta.clone());
        self.readers
            .insert(block.key(), shipped.reader.clone())
            .await;
        self.insert(block);
    }

    /// The time range the tenant's blocks cover, inclusive; `(i64::MAX, i64::MIN)`
    /// when it has none.
    pub fn time_range(&self, tenant: &Tenant) -> (i64, i64) {
        self.blocks(tenant)
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), b| {
                (lo.min(b.meta().min_time), hi.max(b.meta().max_time - 1))
            })
    }

    /// The readers of the tenant's raw blocks that overlap `[mint, maxt]`, opening
    /// those not open yet.
    async fn overlapping(
        &self,
        tenant: &Tenant,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Arc<BlockReader>>, StorageError> {
        let blocks: Vec<_> = self
            .blocks(tenant)
            .into_iter()
            .filter(|b| b.meta().hearth.resolution == 0 && b.meta().overlaps(mint, maxt))
            .collect();
        self.open_all(&blocks).await
    }

    async fn open_all(
        &self,
        blocks: &[Arc<StoreBlock>],
    ) -> Result<Vec<Arc<BlockReader>>, StorageError> {
        let mut out = Vec::with_capacity(blocks.len());
        for b in blocks {
            out.push(self.open(b).await.map_err(unavailable)?);
        }
        Ok(out)
    }

    /// The blocks to read for `[mint, maxt]` when resolutions up to `max_resolution`
    /// are accepted: the coarsest downsampled block for each time range that has one,
    /// and raw blocks for the rest (a raw block is left out only when a chosen
    /// downsampled block covers it whole).
    fn plan_resolution(
        &self,
        tenant: &Tenant,
        mint: i64,
        maxt: i64,
        max_resolution: i64,
    ) -> (Vec<Arc<StoreBlock>>, Vec<Arc<StoreBlock>>) {
        let all: Vec<_> = self
            .blocks(tenant)
            .into_iter()
            .filter(|b| b.meta().overlaps(mint, maxt))
            .collect();
        let mut candidates: Vec<&Arc<StoreBlock>> = all
            .iter()
            .filter(|b| {
                let r = b.meta().hearth.resolution;
                r > 0 && r <= max_resolution
            })
            .collect();
        candidates.sort_by_key(|b| std::cmp::Reverse(b.meta().hearth.resolution));
        let mut chosen: Vec<Arc<StoreBlock>> = Vec::new();
        for d in candidates {
            let (lo, hi) = (d.meta().min_time, d.meta().max_time);
            if chosen
                .iter()
                .all(|c| c.meta().max_time <= lo || hi <= c.meta().min_time)
            {
                chosen.push(Arc::clone(d));
            }
        }
        let raw = all
            .into_iter()
            .filter(|b| {
                b.meta().hearth.resolution == 0
                    && !chosen.iter().any(|c| {
                        c.meta().min_time <= b.meta().min_time
                            && b.meta().max_time <= c.meta().max_time
                    })
            })
            .collect();
        chosen.sort_by_key(|b| b.meta().min_time);
        (raw, chosen)
    }

    /// Series from downsampled blocks (oldest first), as the query's function reads
    /// them (see `downsample::read_for`), without the `__aggr__` label, sorted.
    async fn select_downsampled(
        &self,
        blocks: &[Arc<StoreBlock>],
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        func: Option<&str>,
    ) -> Result<Vec<Series>, StorageError> {
        use crate::downsample::{chain_counter, read_for, split_aggr, Aggr, CounterSegment, Read};
        let read = read_for(func);
        let wanted = match read {
            Read::One(Aggr::Counter) => "counter|counter_resets".to_string(),
            Read::One(a) => a.name().to_string(),
            Read::Average => "count|sum".to_string(),
        };
        let mut ms = matchers.to_vec();
        ms.push(
            Matcher::new(
                hearth_core::MatchOp::RegexMatch,
                crate::downsample::AGGR_LABEL,
                &wanted,
            )
            .map_err(|e| StorageError::Internal(e.to_string()))?,
        );
        // Per series, per block (in time order): the aggregates read.
        type PerBlock = BTreeMap<Aggr, Vec<hearth_core::Sample>>;
        let mut by_series: BTreeMap<hearth_core::Labels, Vec<PerBlock>> = BTreeMap::new();
        for (i, reader) in self.open_all(blocks).await?.into_iter().enumerate() {
            for s in reader.select(&ms, mint, maxt).await.map_err(unavailable)? {
                let Some((labels, aggr)) = split_aggr(&s.labels) else {
                    continue;
                };
                let mut pts = Vec::new();
                if let hearth_core::SeriesData::Chunks(cs) = &s.data {
                    for c in cs {
                        let decoded = hearth_series::chunkenc::decode_all(&c.data)
                            .map_err(|e| StorageError::Internal(format!("chunk: {e:?}")))?;
                        pts.extend(
                            decoded
                                .into_iter()
                                .map(|(t, v)| hearth_core::Sample { t, v }),
                        );
                    }
                }
                let per = by_series.entry(labels).or_default();
                per.resize_with(blocks.len(), BTreeMap::new);
                per[i].insert(aggr, pts);
            }
        }
        let in_range = |p: &hearth_core::Sample| p.t >= mint && p.t <= maxt;
        let mut out = Vec::with_capacity(by_series.len());
        for (labels, per) in by_series {
            let samples: Vec<hearth_core::Sample> = match read {
                Read::One(Aggr::Counter) => chain_counter(
                    per.into_iter()
                        .filter_map(|mut b| {
                            let points = b.remove(&Aggr::Counter)?;
                            let resets = b
                                .remove(&Aggr::CounterResets)
                                .and_then(|r| r.last().map(|p| p.v))
                                .unwrap_or(0.0);
                            Some(CounterSegment { points, resets })
                        })
                        .collect(),
                ),
                Read::One(a) => per
                    .into_iter()
                    .flat_map(|mut b| b.remove(&a).unwrap_or_default())
                    .collect(),
                Read::Average => per
                    .into_iter()
                    .flat_map(|mut b| {
                        let counts = b.remove(&Aggr::Count).unwrap_or_default();
                        let sums = b.remove(&Aggr::Sum).unwrap_or_default();
                        counts
                            .into_iter()
                            .zip(sums)
                            .filter(|(c, s)| c.t == s.t && c.v > 0.0)
                            .map(|(c, s)| hearth_core::Sample {
                                t: c.t,
                                v: s.v / c.v,
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            };
            let samples: Vec<_> = samples.into_iter().filter(in_range).collect();
            if !samples.is_empty() {
                out.push(Series {
                    labels,
                    data: hearth_core::SeriesData::Samples(samples),
                });
            }
        }
        Ok(out)
    }
}

fn readers_cache(bytes: u64) -> moka::future::Cache<String, Arc<BlockReader>> {
    moka::future::Cache::builder()
        .weigher(|_k: &String, r: &Arc<BlockReader>| {
            u32::try_from(r.approx_bytes()).unwrap_or(u32::MAX)
        })
        .max_capacity(bytes)
        .build()
}

/// A listing's objects grouped by block folder: ULID, whether it has meta.json (is
/// committed) and whether it is marked for deletion.
fn group_block_objects(objects: Vec<object_store::ObjectMeta>) -> Vec<(String, bool, bool)> {
    let mut by_block: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for o in objects {
        let mut parts = o.location.parts().skip(1);
        let (Some(ulid), Some(file)) = (parts.next(), parts.next()) else {
            continue;
        };
        if ulid.as_ref().parse::<ulid::Ulid>().is_err() {
            continue;
        }
        let entry = by_block.entry(ulid.as_ref().to_string()).or_default();
        match file.as_ref() {
            crate::block::meta::META_FILE => entry.0 = true,
            crate::block::marks::DELETION_MARK_FILE => entry.1 = true,
            _ => {}
        }
    }
    by_block
        .into_iter()
        .map(|(ulid, (meta, mark))| (ulid, meta, mark))
        .collect()
}

#[async_trait]
impl Queryable for BucketStore {
    async fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        // Reading labels files, decompressing pages and aggregating downsampled data
        // are CPU work: off the async workers.
        hearth_core::cpu::foreground(async {
            if hints.max_resolution <= 0 {
                let blocks = self.overlapping(tenant, mint, maxt).await?;
                return select_in(&blocks, matchers, mint, maxt).await;
            }
            let (raw, downsampled) = self.plan_resolution(tenant, mint, maxt, hints.max_resolution);
            let mut streams = streams_in(&self.open_all(&raw).await?, matchers, mint, maxt).await?;
            if !downsampled.is_empty() {
                // Downsampled series are aggregated across their blocks first: what
                // they hold is the coarse answer, a few points per series and window.
                let coarse = self
                    .select_downsampled(&downsampled, matchers, mint, maxt, hints.func.as_deref())
                    .await?;
                streams.push(futures::stream::iter(coarse.into_iter().map(Ok)).boxed());
            }
            Ok(hearth_series::merge::merge_streams(streams))
        })
        .await
    }

    async fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        hearth_core::cpu::foreground(async {
            let blocks = self.overlapping(tenant, mint, maxt).await?;
            Ok(label_names_in(&blocks, matchers))
        })
        .await
    }

    async fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        hearth_core::cpu::foreground(async {
            let blocks = self.overlapping(tenant, mint, maxt).await?;
            Ok(label_values_in(&blocks, name, matchers))
        })
        .await
    }
}

/// The series of open blocks that match, merged (samples in several blocks taken once).
pub async fn select_in(
    blocks: &[Arc<BlockReader>],
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Result<SeriesStream, StorageError> {
    Ok(hearth_series::merge::merge_streams(
        streams_in(blocks, matchers, mint, maxt).await?,
    ))
}

/// Each open block's matching series as a stream (sorted by labels), one per block.
async fn streams_in(
    blocks: &[Arc<BlockReader>],
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Result<Vec<SeriesStream>, StorageError> {
    let mut streams = Vec::with_capacity(blocks.len() + 1);
    for b in blocks {
        streams.push(
            b.select_stream(matchers, mint, maxt)
                .await
                .map_err(unavailable)?,
        );
    }
    Ok(streams)
}

/// Sorted label names of the series of open blocks that match.
pub fn label_names_in(blocks: &[Arc<BlockReader>], matchers: &[Matcher]) -> Vec<String> {
    let mut names = BTreeSet::new();
    for b in blocks {
        for r in b.matching_rows(matchers) {
            names.extend(b.series_labels()[r].iter().map(|l| l.name.to_string()));
        }
    }
    names.into_iter().collect()
}

/// Sorted values of label `name` over the series of open blocks that match.
pub fn label_values_in(
    blocks: &[Arc<BlockReader>],
    name: &str,
    matchers: &[Matcher],
) -> Vec<String> {
    let mut values = BTreeSet::new();
    for b in blocks {
        for r in b.matching_rows(matchers) {
            if let Some(v) = b.series_labels()[r].get(name) {
                values.insert(v.to_string());
            }
        }
    }
    values.into_iter().collect()
}
