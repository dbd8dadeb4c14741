//! The blocks of a bucket as one `Queryable`: discovers committed blocks (those with a
//! meta.json), opens them, and answers from the ones whose time range overlaps a query.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use hearth_core::{Matcher, Queryable, SelectHints, Series, SeriesStream, StorageError, Tenant};
use object_store::path::Path;
use object_store::ObjectStore;
use parking_lot::RwLock;

use crate::block::{
    read_meta, write_block, BlockError, BlockInput, BlockMeta, BlockReader, PageCache,
};

/// Every opened block, by tenant.
pub struct BucketStore {
    bucket: Arc<dyn ObjectStore>,
    blocks: RwLock<BTreeMap<String, Vec<Arc<BlockReader>>>>,
    /// Chunk pages read from the bucket, shared by every block, bounded in bytes.
    pages: Option<PageCache>,
}

/// The chunk page cache's default size.
pub const DEFAULT_PAGE_CACHE_BYTES: u64 = 512 << 20;

fn unavailable(e: BlockError) -> StorageError {
    StorageError::Unavailable(e.to_string())
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
        }
    }

    /// Blocks open, over every tenant.
    pub fn num_blocks(&self) -> usize {
        self.blocks.read().values().map(Vec::len).sum()
    }

    /// Bytes the chunk page cache holds (without waiting for pending evictions).
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
    pub fn blocks(&self, tenant: &Tenant) -> Vec<Arc<BlockReader>> {
        self.blocks
            .read()
            .get(tenant.as_str())
            .cloned()
            .unwrap_or_default()
    }

    fn insert(&self, reader: Arc<BlockReader>) {
        let mut all = self.blocks.write();
        let list = all.entry(reader.meta().hearth.tenant.clone()).or_default();
        if list.iter().any(|b| b.meta().ulid == reader.meta().ulid) {
            return;
        }
        list.push(reader);
        list.sort_by(|a, b| {
            (a.meta().min_time, &a.meta().ulid).cmp(&(b.meta().min_time, &b.meta().ulid))
        });
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
        Ok(by_block
            .into_iter()
            .map(|(ulid, (meta, mark))| (ulid, meta, mark))
            .collect())
    }

    /// Lists the bucket and opens every committed block not open yet; blocks gone from
    /// the bucket or marked for deletion (replaced by a compacted block, or past
    /// retention) are dropped. Returns how many blocks are open.
    pub async fn sync(&self) -> Result<usize, BlockError> {
        let mut live: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for tenant in self.list_tenants().await? {
            for (ulid, committed, marked) in self.list_blocks(&tenant).await? {
                // No meta.json yet: an upload in progress or abandoned; not a block.
                if !committed || marked {
                    continue;
                }
                live.entry(tenant.as_str().to_string())
                    .or_default()
                    .insert(ulid.clone());
                if self.blocks(&tenant).iter().any(|b| b.meta().ulid == ulid) {
                    continue;
                }
                if let Some(meta) = read_meta(&self.bucket, &tenant, &ulid).await? {
                    let reader = BlockReader::open_cached(
                        Arc::clone(&self.bucket),
                        meta,
                        self.pages.clone(),
                    )
                    .await?;
                    self.insert(Arc::new(reader));
                }
            }
        }
        let mut all = self.blocks.write();
        for (tenant, list) in all.iter_mut() {
            let keep = live.get(tenant);
            list.retain(|b| keep.is_some_and(|k| k.contains(&b.meta().ulid)));
        }
        Ok(all.values().map(Vec::len).sum())
    }

    /// Stops serving a block at once (the compactor, after marking it).
    pub fn forget(&self, tenant: &Tenant, ulid: &str) {
        if let Some(list) = self.blocks.write().get_mut(tenant.as_str()) {
            list.retain(|b| b.meta().ulid != ulid);
        }
    }

    /// Writes a block, reads it back in full and checks it against what was written,
    /// then makes it visible to queries. Only a block that passed is ever reported
    /// shipped.
    pub async fn ship(&self, input: BlockInput) -> Result<BlockMeta, BlockError> {
        let meta = write_block(&self.bucket, input).await?;
        let tenant = Tenant::new(&meta.hearth.tenant).map_err(BlockError::Format)?;
        let stored = read_meta(&self.bucket, &tenant, &meta.ulid)
            .await?
            .ok_or_else(|| {
                BlockError::Format(format!(
                    "block {}: meta.json missing after upload",
                    meta.ulid
                ))
            })?;
        if stored != meta {
            return Err(BlockError::Format(format!(
                "block {}: meta.json read back differs",
                meta.ulid
            )));
        }
        let reader =
            BlockReader::open_cached(Arc::clone(&self.bucket), stored, self.pages.clone()).await?;
        let all = reader.select(&[], meta.min_time, meta.max_time).await?;
        let mut chunks = 0u64;
        let mut samples = 0u64;
        for s in &all {
            if let hearth_core::SeriesData::Chunks(cs) = &s.data {
                chunks += cs.len() as u64;
                for c in cs {
                    samples += hearth_tsdb::chunkenc::decode_all(&c.data)
                        .map_err(|e| BlockError::Format(format!("chunk read back: {e:?}")))?
                        .len() as u64;
                }
            }
        }
        if all.len() as u64 != meta.stats.num_series
            || chunks != meta.stats.num_chunks
            || samples != meta.stats.num_samples
        {
            return Err(BlockError::Format(format!(
                "block {}: read back {} series, {chunks} chunks, {samples} samples; wrote {:?}",
                meta.ulid,
                all.len(),
                meta.stats
            )));
        }
        self.insert(Arc::new(reader));
        Ok(meta)
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

    fn overlapping(&self, tenant: &Tenant, mint: i64, maxt: i64) -> Vec<Arc<BlockReader>> {
        self.blocks(tenant)
            .into_iter()
            .filter(|b| b.meta().overlaps(mint, maxt))
            .collect()
    }
}

#[async_trait]
impl Queryable for BucketStore {
    async fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        _hints: &SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let blocks = self.overlapping(tenant, mint, maxt);
        let mut sets = Vec::with_capacity(blocks.len());
        for b in blocks {
            sets.push(b.select(matchers, mint, maxt).await.map_err(unavailable)?);
        }
        let merged: Vec<Series> = hearth_tsdb::merge::merge_series(sets);
        Ok(futures::stream::iter(merged.into_iter().map(Ok)).boxed())
    }

    async fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut names = BTreeSet::new();
        for b in self.overlapping(tenant, mint, maxt) {
            let rows = b.matching_rows(matchers);
            for r in rows {
                for l in b.series_labels()[r].iter() {
                    names.insert(l.name.to_string());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    async fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut values = BTreeSet::new();
        for b in self.overlapping(tenant, mint, maxt) {
            for r in b.matching_rows(matchers) {
                if let Some(v) = b.series_labels()[r].get(name) {
                    values.insert(v.to_string());
                }
            }
        }
        Ok(values.into_iter().collect())
    }
}
