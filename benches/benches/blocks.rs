//! Block reads: opening a block (labels file) and selecting series with their chunks
//! from a 20,000-series, 2 h block in an in-memory bucket (the Parquet decoding cost,
//! without network).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use hearth_core::{ChunkEncoding, EncodedChunk, Labels, MatchOp, Matcher, SeriesData, Tenant};
use hearth_series::chunkenc::XorAppender;
use hearth_storage::block::{read_meta, write_block, BlockInput, BlockReader, PageCache};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const TWO_H: i64 = 7_200_000;

fn block(rt: &tokio::runtime::Runtime) -> (Arc<dyn ObjectStore>, hearth_storage::BlockMeta) {
    let start = 1_700_006_400_000 / TWO_H * TWO_H;
    let mut series = Vec::new();
    for inst in 0..20 {
        for m in 0..10 {
            for k in 0..100 {
                let labels = Labels::from_pairs(&[
                    ("__name__", format!("metric_{m}").as_str()),
                    ("instance", &format!("host-{inst:03}")),
                    ("k", &k.to_string()),
                ]);
                let chunks = (0..4)
                    .map(|c| {
                        let mut app = XorAppender::new();
                        for s in 0..120i64 {
                            let t = start + (c * 120 + s) * 15_000;
                            app.append(t, (s * (k + 1)) as f64);
                        }
                        EncodedChunk {
                            min_t: start + c * 120 * 15_000,
                            max_t: start + (c * 120 + 119) * 15_000,
                            encoding: ChunkEncoding::Xor,
                            data: Arc::from(app.bytes()),
                        }
                    })
                    .collect();
                series.push((labels, SeriesData::Chunks(chunks)));
            }
        }
    }
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let meta = rt
        .block_on(write_block(
            &store,
            BlockInput {
                shard_group: None,
                tenant: Tenant::anonymous(),
                min_time: start,
                max_time: start + TWO_H,
                level: 1,
                sources: Vec::new(),
                resolution: 0,
                series,
            },
        ))
        .unwrap();
    (store, meta)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (store, meta) = block(&rt);
    let stored = rt
        .block_on(read_meta(&store, &Tenant::anonymous(), &meta.ulid))
        .unwrap()
        .unwrap();
    c.bench_function("block open (20k series labels file)", |b| {
        b.iter(|| {
            rt.block_on(BlockReader::open(store.clone(), stored.clone()))
                .unwrap()
        })
    });
    let reader = std::sync::Arc::new(
        rt.block_on(BlockReader::open(store.clone(), stored.clone()))
            .unwrap(),
    );
    let one_metric = [Matcher::new(MatchOp::Equal, "__name__", "metric_3").unwrap()];
    c.bench_function("block select one metric (2,000 series, 2 h)", |b| {
        b.iter(|| {
            rt.block_on(reader.select(&one_metric, meta.min_time, meta.max_time))
                .unwrap()
        })
    });
    let one_series = [
        Matcher::new(MatchOp::Equal, "__name__", "metric_3").unwrap(),
        Matcher::new(MatchOp::Equal, "instance", "host-007").unwrap(),
        Matcher::new(MatchOp::Equal, "k", "42").unwrap(),
    ];
    c.bench_function("block select one series (30 min)", |b| {
        b.iter(|| {
            rt.block_on(reader.select(&one_series, meta.min_time, meta.min_time + 1_800_000))
                .unwrap()
        })
    });
    let cached = std::sync::Arc::new(
        rt.block_on(BlockReader::open_cached(
            store.clone(),
            stored.clone(),
            Some(PageCache::new(256 << 20)),
        ))
        .unwrap(),
    );
    c.bench_function("block select one metric, warm page cache", |b| {
        b.iter(|| {
            rt.block_on(cached.select(&one_metric, meta.min_time, meta.max_time))
                .unwrap()
        })
    });
    c.bench_function("block select one series (30 min), warm page cache", |b| {
        b.iter(|| {
            rt.block_on(cached.select(&one_series, meta.min_time, meta.min_time + 1_800_000))
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
