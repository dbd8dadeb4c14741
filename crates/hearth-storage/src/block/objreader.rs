//! Parquet's `AsyncFileReader` over an object: every read is a ranged GET (the footer
//! by a suffix range, then only the pages a query needs), and with a [`PageCache`] the
//! byte ranges read before come from memory.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

fn parquet_err(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

/// Byte ranges of block files, bounded by their total size (moka, TinyLFU admission).
/// Blocks are immutable, so an entry never goes stale.
#[derive(Clone)]
pub struct PageCache {
    cache: moka::future::Cache<(Path, u64, u64), Bytes>,
}

impl PageCache {
    pub fn new(max_bytes: u64) -> PageCache {
        PageCache {
            cache: moka::future::Cache::builder()
                .weigher(|_k: &(Path, u64, u64), v: &Bytes| {
                    u32::try_from(v.len() + 64).unwrap_or(u32::MAX)
                })
                .max_capacity(max_bytes)
                .build(),
        }
    }

    /// Bytes held, as last accounted.
    pub fn weighted_size_now(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Bytes held now (after pending evictions run).
    pub async fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.weighted_size()
    }
}

#[derive(Clone)]
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    cache: Option<PageCache>,
}

impl ObjectReader {
    pub fn new(store: Arc<dyn ObjectStore>, path: Path) -> ObjectReader {
        ObjectReader {
            store,
            path,
            cache: None,
        }
    }

    pub fn with_cache(mut self, cache: Option<PageCache>) -> ObjectReader {
        self.cache = cache;
        self
    }
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(parquet_err)
            .boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        async move {
            let Some(cache) = &self.cache else {
                return self
                    .store
                    .get_ranges(&self.path, &ranges)
                    .await
                    .map_err(parquet_err);
            };
            let mut out: Vec<Option<Bytes>> = Vec::with_capacity(ranges.len());
            let mut missing = Vec::new();
            for (i, r) in ranges.iter().enumerate() {
                let hit = cache.cache.get(&(self.path.clone(), r.start, r.end)).await;
                if hit.is_none() {
                    missing.push(i);
                }
                out.push(hit);
            }
            if !missing.is_empty() {
                let want: Vec<Range<u64>> = missing.iter().map(|&i| ranges[i].clone()).collect();
                let got = self
                    .store
                    .get_ranges(&self.path, &want)
                    .await
                    .map_err(parquet_err)?;
                for (&i, bytes) in missing.iter().zip(got) {
                    let r = &ranges[i];
                    cache
                        .cache
                        .insert((self.path.clone(), r.start, r.end), bytes.clone())
                        .await;
                    out[i] = Some(bytes);
                }
            }
            Ok(out
                .into_iter()
                .map(|b| b.expect("every range filled"))
                .collect())
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_via_suffix_and_finish(self)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

impl MetadataSuffixFetch for &mut ObjectReader {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, Result<Bytes>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(suffix as u64)),
            ..Default::default()
        };
        async move {
            let resp = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(parquet_err)?;
            resp.bytes().await.map_err(parquet_err)
        }
        .boxed()
    }
}
