//! Chunk encoding hot path: appending to and iterating XOR chunks.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hearth_series::chunkenc::{XorAppender, XorIterator};

fn samples() -> Vec<(i64, f64)> {
    // A node_exporter-like counter scraped every 15 s with a little jitter.
    let mut t = 1_700_000_000_000i64;
    let mut v = 1000.0f64;
    (0..120)
        .map(|i| {
            t += 15_000 + (i % 3) as i64;
            v += ((i * 7919) % 13) as f64 * 0.01;
            (t, v)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let s = samples();
    let mut g = c.benchmark_group("xor_chunk");
    g.throughput(Throughput::Elements(s.len() as u64));
    g.bench_function("append_120", |b| {
        b.iter(|| {
            let mut a = XorAppender::new();
            for &(t, v) in &s {
                a.append(t, v);
            }
            black_box(a.bytes().len())
        })
    });
    let mut a = XorAppender::new();
    for &(t, v) in &s {
        a.append(t, v);
    }
    let bytes = a.bytes().to_vec();
    g.bench_function("iterate_120", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            for (_, v) in XorIterator::new(black_box(&bytes)).unwrap() {
                sum += v;
            }
            black_box(sum)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
