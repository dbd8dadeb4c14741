//! The write side of the bucket, used by the roles that make blocks (the ingester's
//! shipper, the compactor, `hearth import`): writes a block, reads it back in full and
//! checks it, then commits it. The read side is [`crate::BucketStore`]; the two share
//! nothing but the bucket, so a store gateway never carries a writer's state and a
//! writer never carries a gateway's caches.

use std::sync::Arc;

use object_store::ObjectStore;

use crate::block::{
    put_meta, read_meta, write_block_files, BlockError, BlockInput, BlockMeta, BlockReader,
    PageCache, WriteOptions,
};
use hearth_core::Tenant;

/// A block written, verified and committed, with the reader its check opened (so the
/// process that wrote it can serve it at once).
pub struct Shipped {
    pub meta: BlockMeta,
    pub reader: Arc<BlockReader>,
    /// When its meta.json was written: from then on readers that list the bucket can
    /// see it.
    pub visible_since: std::time::SystemTime,
}

pub struct BlockWriter {
    bucket: Arc<dyn ObjectStore>,
    opts: WriteOptions,
    /// Pages the read-back check reads stay here for the reader handed out.
    pages: Option<PageCache>,
}

impl BlockWriter {
    pub fn new(bucket: Arc<dyn ObjectStore>) -> BlockWriter {
        BlockWriter {
            bucket,
            opts: WriteOptions::default(),
            pages: None,
        }
    }

    /// Writes blocks with this sample encoding (XOR chunks by default).
    pub fn with_sample_encoding(mut self, enc: crate::block::cell::SampleEncoding) -> BlockWriter {
        self.opts.sample_encoding = enc;
        self
    }

    /// Keeps the pages the read-back check reads in `pages` (a store's page cache).
    pub fn with_page_cache(mut self, pages: Option<PageCache>) -> BlockWriter {
        self.pages = pages;
        self
    }

    pub fn bucket(&self) -> &Arc<dyn ObjectStore> {
        &self.bucket
    }

    /// Writes a block, reads it back in full and checks it against what was written,
    /// then commits it (meta.json), after which readers see it. Only a block that
    /// passed is ever reported shipped.
    pub async fn ship(&self, input: BlockInput) -> Result<Shipped, BlockError> {
        self.ship_as(input, None).await
    }

    /// [`BlockWriter::ship`] under a chosen ULID (a new one when `None`). The Parquet
    /// files are read back and checked before meta.json is written, so a failed check
    /// or an outage leaves an invisible block; and a retry of the same data under the
    /// same ULID overwrites what an earlier attempt left instead of adding a copy.
    pub async fn ship_as(
        &self,
        input: BlockInput,
        ulid: Option<String>,
    ) -> Result<Shipped, BlockError> {
        // Encoding, compressing and reading back are the heavy part: on the background
        // pool, never on the threads that acknowledge writes.
        let (bucket, opts, pages) = (
            Arc::clone(&self.bucket),
            self.opts.clone(),
            self.pages.clone(),
        );
        let (meta, reader) = hearth_core::cpu::background(async move {
            let meta = write_block_files(&bucket, input, &opts, ulid).await?;
            // The reader is opened from the meta in memory: nothing is visible yet.
            let reader = Arc::new(BlockReader::open_cached(bucket, meta.clone(), pages).await?);
            verify_block(&reader, &meta).await?;
            Ok::<_, BlockError>((meta, reader))
        })
        .await?;
        let tenant = Tenant::new(&meta.hearth.tenant).map_err(BlockError::Format)?;
        put_meta(&self.bucket, &meta).await?;
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
        Ok(Shipped {
            meta,
            reader,
            visible_since: std::time::SystemTime::now(),
        })
    }

    /// The block an earlier attempt shipped under `ulid`, if the bucket holds it: its
    /// meta.json is written only after its files were read back and checked, so a
    /// block with one was shipped whole (and, its id coming from its data, holds what
    /// shipping it again would write). Lets a new leader resume its predecessor's
    /// upload instead of repeating it.
    pub async fn find_shipped(
        &self,
        tenant: &Tenant,
        ulid: &str,
    ) -> Result<Option<Shipped>, BlockError> {
        let Some((meta, visible_since)) =
            crate::block::reader::read_meta_written(&self.bucket, tenant, ulid).await?
        else {
            return Ok(None);
        };
        if meta.ulid != ulid || meta.hearth.tenant != tenant.as_str() {
            return Err(BlockError::Format(format!(
                "block {ulid} of tenant {tenant}: its meta.json names block {} of tenant {}",
                meta.ulid, meta.hearth.tenant
            )));
        }
        let reader = Arc::new(
            BlockReader::open_cached(self.bucket.clone(), meta.clone(), self.pages.clone()).await?,
        );
        Ok(Some(Shipped {
            meta,
            reader,
            visible_since,
        }))
    }
}

/// Reads a written block back in full and checks its series, chunk and sample counts
/// against its meta.
async fn verify_block(reader: &Arc<BlockReader>, meta: &BlockMeta) -> Result<(), BlockError> {
    let all = reader.select(&[], meta.min_time, meta.max_time).await?;
    let mut chunks = 0u64;
    let mut samples = 0u64;
    for s in &all {
        if let hearth_core::SeriesData::Chunks(cs) = &s.data {
            chunks += cs.len() as u64;
            for c in cs {
                samples += hearth_series::chunkenc::decode_all(&c.data)
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
    Ok(())
}
