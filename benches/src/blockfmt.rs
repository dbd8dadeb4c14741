//! hearth-blockfmt: bytes per sample of a block in each Parquet encoding considered,
//! on the load generator's data (SERIES series, 2 h at 15 s), to choose the block
//! format's encodings by measurement (docs/block-format.md records the result).
//!
//!     cargo run --release -p hearth-benches --bin hearth-blockfmt -- [SERIES]

#[path = "datagen.rs"]
mod datagen;

use std::sync::Arc;

use futures::TryStreamExt;
use hearth_core::{ChunkEncoding, EncodedChunk, Label, Labels, SeriesData, Tenant};
use hearth_storage::block::{write_block_with, BlockInput, WriteOptions};
use hearth_tsdb::chunkenc::XorAppender;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use parquet::basic::{BrotliLevel, Compression, Encoding, GzipLevel, ZstdLevel};

const TWO_H: i64 = 7_200_000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(20_000), |a| a.parse())?;
    let mut gens = datagen::make_series(n);
    let start = 1_700_006_400_000 / TWO_H * TWO_H;
    let mut series: Vec<(Labels, Vec<EncodedChunk>)> = gens
        .iter()
        .map(|g| {
            let labels: Vec<Label> = g
                .labels
                .iter()
                .map(|l| Label::new(l.name.as_str(), l.value.as_str()))
                .collect();
            (Labels::from_sorted(labels), Vec::new())
        })
        .collect();
    for (i, g) in gens.iter_mut().enumerate() {
        let mut app = XorAppender::new();
        let mut first = start;
        for r in 0..480i64 {
            let t = start + r * 15_000;
            if app.num_samples() == 120 {
                series[i].1.push(EncodedChunk {
                    min_t: first,
                    max_t: t - 15_000,
                    encoding: ChunkEncoding::Xor,
                    data: Arc::from(app.bytes()),
                });
                app = XorAppender::new();
                first = t;
            }
            app.append(t, datagen::next_value(g));
        }
        series[i].1.push(EncodedChunk {
            min_t: first,
            max_t: start + 479 * 15_000,
            encoding: ChunkEncoding::Xor,
            data: Arc::from(app.bytes()),
        });
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let samples = (n * 480) as f64;
    let raw_chunk_bytes: usize = series
        .iter()
        .flat_map(|(_, c)| c.iter().map(|c| c.data.len()))
        .sum();
    println!(
        "{n} series, 2 h at 15 s: {samples} samples; XOR chunks alone {:.3} bytes/sample\n",
        raw_chunk_bytes as f64 / samples
    );
    println!("| compression | label dictionary | chunk encoding | labels.parquet | chunks.parquet | bytes/sample | write s |");
    println!("|---|---|---|---|---|---|---|");
    let variants = [
        (
            Compression::ZSTD(ZstdLevel::try_new(3)?),
            true,
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        ),
        (
            Compression::ZSTD(ZstdLevel::try_new(3)?),
            true,
            Encoding::PLAIN,
        ),
        (
            Compression::ZSTD(ZstdLevel::try_new(3)?),
            false,
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        ),
        (
            Compression::ZSTD(ZstdLevel::try_new(6)?),
            true,
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        ),
        (
            Compression::ZSTD(ZstdLevel::try_new(9)?),
            true,
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        ),
        (
            Compression::ZSTD(ZstdLevel::try_new(15)?),
            true,
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        ),
        (Compression::SNAPPY, true, Encoding::DELTA_LENGTH_BYTE_ARRAY),
        (
            Compression::LZ4_RAW,
            true,
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        ),
        (
            Compression::GZIP(GzipLevel::default()),
            true,
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        ),
        (
            Compression::BROTLI(BrotliLevel::default()),
            true,
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        ),
        (
            Compression::UNCOMPRESSED,
            true,
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        ),
    ];
    for (compression, label_dictionary, chunk_encoding) in variants {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let opts = WriteOptions {
            compression,
            label_dictionary,
            chunk_encoding,
        };
        let input = BlockInput {
            tenant: Tenant::anonymous(),
            min_time: start,
            max_time: start + TWO_H,
            level: 1,
            sources: Vec::new(),
            resolution: 0,
            series: series
                .iter()
                .map(|(l, c)| (l.clone(), SeriesData::Chunks(c.clone())))
                .collect(),
        };
        let t = std::time::Instant::now();
        write_block_with(&store, input, &opts).await?;
        let secs = t.elapsed().as_secs_f64();
        let objects: Vec<_> = store.list(None).try_collect().await?;
        let size = |f: &str| -> u64 {
            objects
                .iter()
                .filter(|o| o.location.as_ref().ends_with(f))
                .map(|o| o.size)
                .sum()
        };
        let total: u64 = objects.iter().map(|o| o.size).sum();
        println!(
            "| {compression:?} | {label_dictionary} | {chunk_encoding:?} | {} | {} | {:.3} | {secs:.2} |",
            size("labels.parquet"),
            size("chunks.parquet"),
            total as f64 / samples
        );
    }
    Ok(())
}
