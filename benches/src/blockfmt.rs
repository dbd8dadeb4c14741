//! hearth-blockfmt: bytes per sample of a block in each Parquet encoding considered,
//! on the load generator's data (SERIES series, 2 h at 15 s), to choose the block
//! format's encodings by measurement (docs/block-format.md records the result); and the
//! entropy of that data (the floor for any lossless encoding) beside what a columnar
//! decimal-delta encoding reaches.
//!
//!     cargo run --release -p hearth-benches --bin hearth-blockfmt -- [SERIES]

#[path = "datagen.rs"]
mod datagen;

use std::sync::Arc;

use futures::TryStreamExt;
use hearth_core::{ChunkEncoding, EncodedChunk, Label, Labels, SeriesData, Tenant};
use hearth_series::chunkenc::XorAppender;
use hearth_storage::block::cell::SampleEncoding;
use hearth_storage::block::{write_block_with, BlockInput, WriteOptions};
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
    bound_and_columnar(&series, n);
    let samples = (n * 480) as f64;
    let raw_chunk_bytes: usize = series
        .iter()
        .flat_map(|(_, c)| c.iter().map(|c| c.data.len()))
        .sum();
    println!(
        "{n} series, 2 h at 15 s: {samples} samples; XOR chunks alone {:.3} bytes/sample\n",
        raw_chunk_bytes as f64 / samples
    );
    println!("| compression | label dictionary | chunk encoding | sample encoding | chunk page | labels.parquet | chunks.parquet | bytes/sample | write s |");
    println!("|---|---|---|---|---|---|---|---|---|");
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
    let default_page = WriteOptions::default().chunk_page_bytes;
    let zstd9 = || Compression::ZSTD(ZstdLevel::try_new(9).unwrap());
    let dlba = Encoding::DELTA_LENGTH_BYTE_ARRAY;
    let variants: Vec<_> = variants
        .into_iter()
        .map(|(c, d, e)| (c, d, e, SampleEncoding::Xor, default_page))
        .chain([
            (
                zstd9(),
                true,
                dlba,
                SampleEncoding::DecimalDelta,
                default_page,
            ),
            (
                Compression::ZSTD(ZstdLevel::try_new(15).unwrap()),
                true,
                dlba,
                SampleEncoding::DecimalDelta,
                default_page,
            ),
        ])
        // Page sizes: what a selective query decompresses against compression.
        .chain(
            [4 << 20, 1 << 20, 256 << 10, 64 << 10, 16 << 10]
                .into_iter()
                .flat_map(|page| {
                    [SampleEncoding::Xor, SampleEncoding::DecimalDelta]
                        .map(|enc| (zstd9(), true, dlba, enc, page))
                }),
        )
        .collect();
    for (compression, label_dictionary, chunk_encoding, sample_encoding, chunk_page_bytes) in
        variants
    {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let opts = WriteOptions {
            compression,
            label_dictionary,
            chunk_encoding,
            sample_encoding,
            chunk_page_bytes,
        };
        let input = BlockInput {
            shard_group: None,
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
            "| {compression:?} | {label_dictionary} | {chunk_encoding:?} | {sample_encoding:?} | {} KiB | {} | {} | {:.3} | {secs:.2} |",
            chunk_page_bytes >> 10,
            size("labels.parquet"),
            size("chunks.parquet"),
            total as f64 / samples
        );
    }
    Ok(())
}

/// How small any lossless encoding of this data can be, and what a columnar
/// decimal-delta encoding (VictoriaMetrics' approach) reaches. The generator draws each
/// step independently, so the order-0 entropy of the per-series steps (timestamps' and
/// scaled values' deltas) is the entropy rate of the data: no lossless coder can go
/// below it on average.
fn bound_and_columnar(series: &[(Labels, Vec<EncodedChunk>)], n: usize) {
    use std::collections::HashMap;
    let samples = (n * 480) as f64;
    let mut value_steps: HashMap<i64, u64> = HashMap::new();
    let mut time_steps: HashMap<i64, u64> = HashMap::new();
    let mut column: Vec<u8> = Vec::new();
    let push_varint = |out: &mut Vec<u8>, v: i64| {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    };
    for (_, chunks) in series {
        let pts: Vec<(i64, f64)> = chunks
            .iter()
            .flat_map(|c| hearth_series::chunkenc::decode_all(&c.data).unwrap())
            .collect();
        // The smallest decimal scale that makes every value of the series integral.
        let scale = (0..=6)
            .map(|k| 10f64.powi(k))
            .find(|m| {
                pts.iter()
                    .all(|(_, v)| ((v * m).round() - v * m).abs() < 1e-6)
            })
            .unwrap_or(1e6);
        let ints: Vec<i64> = pts
            .iter()
            .map(|(_, v)| (v * scale).round() as i64)
            .collect();
        column.push(scale.log10() as u8);
        let (mut pt, mut pdt, mut pv) = (0i64, 0i64, 0i64);
        for (i, ((t, _), v)) in pts.iter().zip(&ints).enumerate() {
            let dt = t - pt;
            let dod = if i == 0 { *t } else { dt - pdt };
            let dv = if i == 0 { *v } else { v - pv };
            if i > 0 {
                *time_steps.entry(dod).or_default() += 1;
                *value_steps.entry(dv).or_default() += 1;
            }
            push_varint(&mut column, dod);
            push_varint(&mut column, dv);
            (pt, pdt, pv) = (*t, dt, *v);
        }
    }
    let entropy = |h: &HashMap<i64, u64>| -> f64 {
        let total: u64 = h.values().sum();
        h.values()
            .map(|&c| {
                let p = c as f64 / total as f64;
                -p * p.log2()
            })
            .sum::<f64>()
            * total as f64
            / 8.0
    };
    let bound = (entropy(&value_steps) + entropy(&time_steps)) / samples;
    let zstd = zstd::bulk::compress(&column, 19)
        .map(|c| c.len())
        .unwrap_or(0);
    println!(
        "entropy of the steps (a lower bound for any lossless encoding): {bound:.3} bytes/sample"
    );
    println!(
        "columnar decimal-delta varints + ZSTD 19 (samples only, no labels): {:.3} bytes/sample\n",
        zstd as f64 / samples
    );
}
