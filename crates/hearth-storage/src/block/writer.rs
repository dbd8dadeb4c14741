//! Writes a block: labels.parquet, chunks.parquet, then meta.json (the commit point).

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use hearth_core::{ChunkEncoding, EncodedChunk, Labels, Sample, SeriesData, Tenant};
use hearth_series::chunkenc::{decode_all, XorAppender};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::meta::{
    BlockMeta, BlockStats, Compaction, HearthMeta, CHUNKS_FILE, FORMAT_VERSION, LABELS_FILE,
    META_FILE,
};
use super::{block_dir, BlockError, CHUNKS_COLUMN_PREFIX, LABEL_COLUMN_PREFIX};

/// Rows per row group: small enough that a query for one metric name skips most of a
/// big block, large enough that footers stay small.
pub const ROW_GROUP_ROWS: usize = 20_000;
/// Default target size of a chunks page (see [`WriteOptions::chunk_page_bytes`]);
/// chosen by measurement, docs/block-format.md.
pub const DEFAULT_CHUNK_PAGE_BYTES: usize = 64 << 10;
/// Rows the Parquet writer takes at a time for chunks files, so pages end near the
/// target size (a cell is up to tens of kilobytes).
const CHUNK_WRITE_BATCH_ROWS: usize = 8;
/// The widest chunks column (parquet-common's default data column width).
pub const MAX_COLUMN_DURATION_MS: i64 = 8 * 3_600_000;
/// Samples per chunk when chunks are re-encoded (Prometheus' target).
const SAMPLES_PER_CHUNK: usize = 120;

/// What to write: series sorted by labels, each with its chunks (any order, any
/// boundaries; the writer cuts them to the block and its columns) or samples.
pub struct BlockInput {
    pub tenant: Tenant,
    pub min_time: i64,
    pub max_time: i64,
    pub level: u32,
    pub sources: Vec<String>,
    pub resolution: i64,
    pub series: Vec<(Labels, SeriesData)>,
    /// The shard group the block is cut from (meta.json's `hearth.shardGroup`).
    pub shard_group: Option<u32>,
}

fn encode_samples(samples: &[Sample]) -> Vec<EncodedChunk> {
    samples
        .chunks(SAMPLES_PER_CHUNK)
        .map(|part| {
            let mut app = XorAppender::new();
            for s in part {
                app.append(s.t, s.v);
            }
            EncodedChunk {
                min_t: part[0].t,
                max_t: part[part.len() - 1].t,
                encoding: ChunkEncoding::Xor,
                data: Arc::from(app.bytes()),
            }
        })
        .collect()
}

/// Cuts a series' chunks into the block's columns: a chunk inside one column is kept
/// byte for byte; one that crosses a column edge or the block's range is decoded and
/// its samples in range re-encoded. Returns one list per column, and the sample count.
pub fn cut_into_columns(
    chunks: &[EncodedChunk],
    meta: &BlockMeta,
) -> Result<(Vec<Vec<EncodedChunk>>, u64), BlockError> {
    let n = meta.num_columns();
    let mut columns: Vec<Vec<EncodedChunk>> = vec![Vec::new(); n];
    let mut loose: Vec<Vec<Sample>> = vec![Vec::new(); n];
    let mut samples = 0u64;
    let column_of = |t: i64| {
        (((t - meta.min_time) / meta.hearth.chunks_column_duration_ms.max(1)) as usize).min(n - 1)
    };
    for c in chunks {
        if c.max_t < meta.min_time || c.min_t >= meta.max_time {
            continue;
        }
        let col = column_of(c.min_t.max(meta.min_time));
        let (start, end) = meta.column_range(col);
        if c.min_t >= start && c.max_t < end {
            let count = hearth_series::chunkenc::XorIterator::new(&c.data)
                .map_err(|e| BlockError::Format(format!("bad chunk: {e:?}")))?
                .declared_samples();
            samples += u64::from(count);
            columns[col].push(c.clone());
            continue;
        }
        let decoded =
            decode_all(&c.data).map_err(|e| BlockError::Format(format!("bad chunk: {e:?}")))?;
        for (t, v) in decoded {
            if t >= meta.min_time && t < meta.max_time {
                loose[column_of(t)].push(Sample { t, v });
            }
        }
    }
    for (col, mut extra) in loose.into_iter().enumerate() {
        if extra.is_empty() {
            columns[col].sort_by_key(|c| c.min_t);
            continue;
        }
        // Merge the loose samples with the column's kept chunks, in time order, with
        // duplicates (same timestamp) dropped.
        // The kept chunks were counted when kept: they are counted again below, merged.
        for c in columns[col].drain(..) {
            let decoded = decode_all(&c.data).unwrap_or_default();
            samples -= decoded.len() as u64;
            for (t, v) in decoded {
                extra.push(Sample { t, v });
            }
        }
        extra.sort_by_key(|s| s.t);
        extra.dedup_by_key(|s| s.t);
        samples += extra.len() as u64;
        columns[col] = encode_samples(&extra);
    }
    Ok((columns, samples))
}

/// How the Parquet files are encoded. The defaults are what docs/block-format.md
/// records as measured best (benches/src/blockfmt.rs compares the alternatives).
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub compression: Compression,
    /// Dictionary-encode label values.
    pub label_dictionary: bool,
    /// Encoding of the chunk columns.
    pub chunk_encoding: Encoding,
    /// How samples are stored in the chunk cells.
    pub sample_encoding: super::cell::SampleEncoding,
    /// Target size of a chunks-column page before compression. A query decompresses
    /// every page that holds a row it wants, so smaller pages mean less read for a
    /// selective query, at some cost in compression.
    pub chunk_page_bytes: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compression: Compression::ZSTD(ZstdLevel::try_new(9).expect("valid level")),
            label_dictionary: true,
            chunk_encoding: Encoding::DELTA_LENGTH_BYTE_ARRAY,
            sample_encoding: super::cell::SampleEncoding::Xor,
            chunk_page_bytes: DEFAULT_CHUNK_PAGE_BYTES,
        }
    }
}

fn writer_properties(
    key_values: Vec<KeyValue>,
    binary_columns: &[String],
    opts: &WriteOptions,
) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(opts.compression)
        .set_dictionary_enabled(opts.label_dictionary)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(key_values));
    for c in binary_columns {
        // XOR chunks do not repeat: no dictionary, lengths delta-encoded.
        b = b
            .set_column_dictionary_enabled(c.as_str().into(), false)
            .set_column_encoding(c.as_str().into(), opts.chunk_encoding);
    }
    if !binary_columns.is_empty() {
        // The writer checks the page size after each mini-batch of rows: with the
        // default 1,024 rows of kilobyte cells a page would hold a whole column.
        b = b
            .set_data_page_size_limit(opts.chunk_page_bytes)
            .set_write_batch_size(CHUNK_WRITE_BATCH_ROWS);
    }
    b.build()
}

async fn write_parquet(
    store: &Arc<dyn ObjectStore>,
    path: Path,
    batch: RecordBatch,
    props: WriterProperties,
) -> Result<(), BlockError> {
    let object = BufWriter::new(Arc::clone(store), path);
    let mut w = AsyncArrowWriter::try_new(object, batch.schema(), Some(props))?;
    // Row by row groups, so the writer never buffers more than one group.
    let mut offset = 0;
    while offset < batch.num_rows() {
        let len = ROW_GROUP_ROWS.min(batch.num_rows() - offset);
        w.write(&batch.slice(offset, len)).await?;
        offset += len;
    }
    w.close().await?;
    Ok(())
}

/// Writes the block and returns its meta. meta.json goes last: until it exists, the
/// block is invisible to readers, so a crash mid-way leaves only garbage to collect.
pub async fn write_block(
    store: &Arc<dyn ObjectStore>,
    input: BlockInput,
) -> Result<BlockMeta, BlockError> {
    write_block_with(store, input, &WriteOptions::default()).await
}

/// [`write_block`] with chosen Parquet encodings.
pub async fn write_block_with(
    store: &Arc<dyn ObjectStore>,
    input: BlockInput,
    opts: &WriteOptions,
) -> Result<BlockMeta, BlockError> {
    let meta = write_block_files(store, input, opts, None).await?;
    put_meta(store, &meta).await?;
    Ok(meta)
}

/// Commits a block whose files are written: writes its meta.json, after which readers
/// see it.
pub async fn put_meta(store: &Arc<dyn ObjectStore>, meta: &BlockMeta) -> Result<(), BlockError> {
    let tenant = Tenant::new(&meta.hearth.tenant).map_err(BlockError::Format)?;
    let json = serde_json::to_vec_pretty(meta).expect("meta serializes");
    store
        .put(
            &block_dir(&tenant, &meta.ulid).join(META_FILE),
            PutPayload::from(json),
        )
        .await?;
    Ok(())
}

/// Writes a block's Parquet files, not its meta.json: the block stays invisible until
/// [`put_meta`]. `ulid` names the block (a new ULID when `None`): writing the same data
/// again under the same ULID overwrites an earlier attempt instead of adding a copy.
pub async fn write_block_files(
    store: &Arc<dyn ObjectStore>,
    input: BlockInput,
    opts: &WriteOptions,
    ulid: Option<String>,
) -> Result<BlockMeta, BlockError> {
    let span = input.max_time - input.min_time;
    if span <= 0 {
        return Err(BlockError::Format(format!(
            "empty block range [{}, {})",
            input.min_time, input.max_time
        )));
    }
    let mut meta = BlockMeta {
        ulid: ulid.unwrap_or_else(|| ulid::Ulid::new().to_string()),
        min_time: input.min_time,
        max_time: input.max_time,
        stats: BlockStats::default(),
        compaction: Compaction {
            level: input.level.max(1),
            sources: Vec::new(),
        },
        version: 1,
        hearth: HearthMeta {
            tenant: input.tenant.as_str().to_string(),
            resolution: input.resolution,
            chunks_column_duration_ms: span.min(MAX_COLUMN_DURATION_MS),
            format_version: FORMAT_VERSION,
            shard_group: input.shard_group,
        },
    };
    meta.compaction.sources = if input.sources.is_empty() {
        vec![meta.ulid.clone()]
    } else {
        input.sources
    };

    // Cut every series first: series left without samples in range are dropped.
    let mut rows: Vec<(Labels, Vec<Vec<EncodedChunk>>)> = Vec::with_capacity(input.series.len());
    for (labels, data) in input.series {
        let chunks = match data {
            SeriesData::Chunks(c) => c,
            SeriesData::Samples(s) => encode_samples(&s),
        };
        let (columns, samples) = cut_into_columns(&chunks, &meta)?;
        if samples == 0 {
            continue;
        }
        meta.stats.num_samples += samples;
        meta.stats.num_chunks += columns.iter().map(|c| c.len() as u64).sum::<u64>();
        rows.push((labels, columns));
    }
    meta.stats.num_series = rows.len() as u64;

    let names: Vec<String> = rows
        .iter()
        .flat_map(|(l, _)| l.iter().map(|l| l.name.to_string()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let dir = block_dir(&input.tenant, &meta.ulid);
    let kv = vec![
        KeyValue::new("hearth.block".to_string(), meta.ulid.clone()),
        KeyValue::new(
            "data_col_duration_ms".to_string(),
            meta.hearth.chunks_column_duration_ms.to_string(),
        ),
    ];

    // labels.parquet: a column per label name, null where a series lacks the label.
    let fields: Vec<Field> = names
        .iter()
        .map(|n| Field::new(format!("{LABEL_COLUMN_PREFIX}{n}"), DataType::Utf8, true))
        .collect();
    let columns: Vec<ArrayRef> = names
        .iter()
        .map(|n| Arc::new(StringArray::from_iter(rows.iter().map(|(l, _)| l.get(n)))) as ArrayRef)
        .collect();
    let labels_batch = if names.is_empty() {
        RecordBatch::new_empty(Arc::new(Schema::new(fields)))
    } else {
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?
    };
    write_parquet(
        store,
        dir.clone().join(LABELS_FILE),
        labels_batch,
        writer_properties(kv.clone(), &[], opts),
    )
    .await?;

    // chunks.parquet: the same rows, a binary column per time column.
    let chunk_names: Vec<String> = (0..meta.num_columns())
        .map(|i| format!("{CHUNKS_COLUMN_PREFIX}{i}"))
        .collect();
    let fields: Vec<Field> = chunk_names
        .iter()
        .map(|n| Field::new(n, DataType::Binary, false))
        .collect();
    let columns: Vec<ArrayRef> = (0..meta.num_columns())
        .map(|i| {
            let start = meta.column_range(i).0;
            let cells: Vec<Vec<u8>> = rows
                .iter()
                .map(|(_, cols)| super::cell::encode_as(&cols[i], start, opts.sample_encoding))
                .collect();
            Arc::new(BinaryArray::from_iter_values(cells.iter())) as ArrayRef
        })
        .collect();
    let chunks_batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    write_parquet(
        store,
        dir.clone().join(CHUNKS_FILE),
        chunks_batch,
        writer_properties(kv, &chunk_names, opts),
    )
    .await?;
    Ok(meta)
}
