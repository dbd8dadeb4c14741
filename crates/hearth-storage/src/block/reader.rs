//! Reads a block: meta.json, the labels file (held in memory once opened), and from
//! the chunks file only the rows that match and the columns that overlap the query,
//! through ranged reads of the object.

use std::sync::Arc;

use arrow_array::{Array, BinaryArray, StringArray};
use futures::{StreamExt, TryStreamExt};
use hearth_core::{Label, Labels, Matcher, Series, SeriesData, SeriesStream, StorageError, Tenant};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::file::metadata::PageIndexPolicy;

use super::meta::{BlockMeta, CHUNKS_FILE, LABELS_FILE, META_FILE};
use super::objreader::{ObjectReader, PageCache};
use super::{block_dir, BlockError, CHUNKS_COLUMN_PREFIX, LABEL_COLUMN_PREFIX};
use hearth_series::postings::MemPostings;

/// An opened block.
pub struct BlockReader {
    store: Arc<dyn ObjectStore>,
    meta: BlockMeta,
    chunks_path: Path,
    /// Every series' labels, in row order (sorted by labels).
    rows: Vec<Labels>,
    /// Label pair -> rows, the head's inverted index over the block's rows, so a select
    /// resolves matchers as the head does instead of scanning every row.
    postings: MemPostings,
    /// The chunks file's footer (schema, row groups, page index), read once.
    chunks_footer: tokio::sync::OnceCell<ArrowReaderMetadata>,
    pages: Option<PageCache>,
    /// About how much memory the labels and postings take (for the store's cache).
    approx_bytes: u64,
}

/// Reads a block's meta.json; `None` when the block has none (not committed).
pub async fn read_meta(
    store: &Arc<dyn ObjectStore>,
    tenant: &Tenant,
    ulid: &str,
) -> Result<Option<BlockMeta>, BlockError> {
    Ok(read_meta_written(store, tenant, ulid)
        .await?
        .map(|(meta, _)| meta))
}

/// [`read_meta`], with when the bucket says its meta.json was written (when the block
/// became visible).
pub async fn read_meta_written(
    store: &Arc<dyn ObjectStore>,
    tenant: &Tenant,
    ulid: &str,
) -> Result<Option<(BlockMeta, std::time::SystemTime)>, BlockError> {
    let path = block_dir(tenant, ulid).clone().join(META_FILE);
    match store.get(&path).await {
        Ok(r) => {
            let written = std::time::SystemTime::from(r.meta.last_modified);
            let bytes = r.bytes().await?;
            let meta: BlockMeta = serde_json::from_slice(&bytes)
                .map_err(|e| BlockError::Format(format!("{path}: {e}")))?;
            Ok(Some((meta, written)))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl BlockReader {
    /// Opens a block whose meta is known: reads the labels file.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        meta: BlockMeta,
    ) -> Result<BlockReader, BlockError> {
        Self::open_cached(store, meta, None).await
    }

    /// [`BlockReader::open`], reading chunk pages through a shared page cache.
    pub async fn open_cached(
        store: Arc<dyn ObjectStore>,
        meta: BlockMeta,
        pages: Option<PageCache>,
    ) -> Result<BlockReader, BlockError> {
        let tenant = Tenant::new(&meta.hearth.tenant).map_err(BlockError::Format)?;
        let dir = block_dir(&tenant, &meta.ulid);
        let reader = ObjectReader::new(Arc::clone(&store), dir.clone().join(LABELS_FILE));
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
        let names: Vec<(usize, String)> = builder
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter_map(|(i, f)| {
                f.name()
                    .strip_prefix(LABEL_COLUMN_PREFIX)
                    .map(|n| (i, n.to_string()))
            })
            .collect();
        let batches: Vec<_> = builder.build()?.try_collect().await?;
        let mut rows = Vec::with_capacity(meta.stats.num_series as usize);
        let names_arc: Vec<Arc<str>> = names.iter().map(|(_, n)| Arc::from(n.as_str())).collect();
        for batch in batches {
            let cols: Vec<&StringArray> = names
                .iter()
                .map(|(i, _)| {
                    batch
                        .column(*i)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .ok_or_else(|| BlockError::Format("label column is not a string".into()))
                })
                .collect::<Result<_, _>>()?;
            for r in 0..batch.num_rows() {
                let mut labels = Vec::new();
                for (k, col) in cols.iter().enumerate() {
                    if col.is_valid(r) {
                        labels.push(Label {
                            name: Arc::clone(&names_arc[k]),
                            value: Arc::from(col.value(r)),
                        });
                    }
                }
                rows.push(Labels::from_sorted(labels));
            }
        }
        if rows.len() as u64 != meta.stats.num_series {
            return Err(BlockError::Format(format!(
                "block {}: labels file has {} rows, meta.json says {} series",
                meta.ulid,
                rows.len(),
                meta.stats.num_series
            )));
        }
        // Strings are shared (Arc) between rows; count each label's pointers and the
        // postings entry it makes, and the strings once per row as an upper bound.
        let approx_bytes: u64 = rows
            .iter()
            .map(|l| {
                64 + l
                    .iter()
                    .map(|x| (x.name.len() + x.value.len() + 48) as u64)
                    .sum::<u64>()
            })
            .sum();
        let mut postings = MemPostings::default();
        for (i, l) in rows.iter().enumerate() {
            let id = u32::try_from(i)
                .map_err(|_| BlockError::Format("more than 2^32 series in a block".into()))?;
            postings.add(id, l);
        }
        Ok(BlockReader {
            chunks_path: dir.clone().join(CHUNKS_FILE),
            store,
            meta,
            postings,
            rows,
            chunks_footer: tokio::sync::OnceCell::new(),
            pages,
            approx_bytes,
        })
    }

    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// About how much memory the opened block holds (labels, postings).
    pub fn approx_bytes(&self) -> u64 {
        self.approx_bytes
    }

    pub fn series_labels(&self) -> &[Labels] {
        &self.rows
    }

    /// Row numbers of the series that match every matcher (sorted), by Prometheus'
    /// matcher rules (an empty-matching matcher also selects series without the label).
    pub fn matching_rows(&self, matchers: &[Matcher]) -> Vec<usize> {
        if matchers.is_empty() {
            return (0..self.rows.len()).collect();
        }
        self.postings
            .select(matchers)
            .into_iter()
            .map(|id| id as usize)
            .collect()
    }

    /// The series that match, with their chunks overlapping `[mint, maxt]`, sorted by
    /// labels. Series without such chunks are left out.
    pub async fn select(
        self: &Arc<Self>,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, BlockError> {
        self.select_stream(matchers, mint, maxt)
            .await?
            .try_collect()
            .await
            .map_err(|e| BlockError::Format(e.to_string()))
    }

    /// [`BlockReader::select`] as a stream: the chunks file is read and decoded a batch
    /// of rows at a time as the stream is pulled, so a block's answer is never held
    /// whole. Decoding happens in the puller's thread.
    pub async fn select_stream(
        self: &Arc<Self>,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<SeriesStream, BlockError> {
        let rows = self.matching_rows(matchers);
        if rows.is_empty() || !self.meta.overlaps(mint, maxt) {
            return Ok(futures::stream::empty().boxed());
        }
        let columns: Vec<usize> = (0..self.meta.num_columns())
            .filter(|&i| {
                let (start, end) = self.meta.column_range(i);
                start <= maxt && mint < end
            })
            .collect();
        let mut reader = ObjectReader::new(Arc::clone(&self.store), self.chunks_path.clone())
            .with_cache(self.pages.clone());
        let footer = self
            .chunks_footer
            .get_or_try_init(|| {
                ArrowReaderMetadata::load_async(
                    &mut reader,
                    ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
                )
            })
            .await?
            .clone();
        let builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, footer);
        let schema = builder.schema().clone();
        let leaves: Vec<usize> = columns
            .iter()
            .map(|i| {
                schema
                    .index_of(&format!("{CHUNKS_COLUMN_PREFIX}{i}"))
                    .map_err(|e| BlockError::Format(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), leaves.iter().copied());
        let batches = builder
            .with_projection(mask)
            .with_row_selection(selection(&rows, self.rows.len()))
            .build()?;
        let me = Arc::clone(self);
        let mut next_row = 0usize;
        let series = batches
            .map_err(|e| StorageError::Unavailable(format!("reading a block: {e}")))
            .map_ok(move |batch| {
                let out = me.series_of(&batch, &rows, &mut next_row, &columns, mint, maxt);
                futures::stream::iter(match out {
                    Ok(v) => v.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(StorageError::Internal(e.to_string()))],
                })
            })
            .try_flatten();
        Ok(series.boxed())
    }

    /// The series of one batch of selected rows (`rows[*next..]` are the batch's rows).
    fn series_of(
        &self,
        batch: &arrow_array::RecordBatch,
        rows: &[usize],
        next: &mut usize,
        columns: &[usize],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Series>, BlockError> {
        let cells: Vec<&BinaryArray> = (0..batch.num_columns())
            .map(|c| {
                batch
                    .column(c)
                    .as_any()
                    .downcast_ref::<BinaryArray>()
                    .ok_or_else(|| BlockError::Format("chunks column is not binary".into()))
            })
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(batch.num_rows());
        for r in 0..batch.num_rows() {
            let row = *rows
                .get(*next)
                .ok_or_else(|| BlockError::Format("more chunk rows than selected".into()))?;
            *next += 1;
            let mut chunks = Vec::new();
            for (k, col) in cells.iter().enumerate() {
                let start = self.meta.column_range(columns[k]).0;
                for c in super::cell::decode(col.value(r), start).map_err(BlockError::Format)? {
                    if c.min_t <= maxt && c.max_t >= mint {
                        chunks.push(c);
                    }
                }
            }
            if !chunks.is_empty() {
                out.push(Series {
                    labels: self.rows[row].clone(),
                    data: SeriesData::Chunks(chunks),
                });
            }
        }
        Ok(out)
    }
}

/// A row selection that reads exactly `rows` (sorted) out of `total`.
fn selection(rows: &[usize], total: usize) -> RowSelection {
    let mut selectors = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while i < rows.len() {
        let start = rows[i];
        let mut end = start + 1;
        while i + 1 < rows.len() && rows[i + 1] == end {
            i += 1;
            end += 1;
        }
        if start > at {
            selectors.push(RowSelector::skip(start - at));
        }
        selectors.push(RowSelector::select(end - start));
        at = end;
        i += 1;
    }
    if total > at {
        selectors.push(RowSelector::skip(total - at));
    }
    selectors.into()
}
