//! Head hot paths: applying a remote-write batch to series that exist (the steady
//! state of ingestion: hash lookup, series by id, chunk append), selecting one metric,
//! and the collection of series emptied by shipping.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hearth_core::{Labels, MatchOp, Matcher, Sample, Tenant, WriteBatch};
use hearth_ingester::head::{Head, HeadOptions};

/// 100k node_exporter-like series: 100 instances x 100 metrics x 10 cpus.
fn all_labels() -> Vec<Labels> {
    let mut out = Vec::with_capacity(100_000);
    for inst in 0..100 {
        for m in 0..100 {
            for cpu in 0..10 {
                out.push(Labels::from_pairs(&[
                    ("__name__", format!("node_metric_{m}").as_str()),
                    ("instance", format!("host-{inst}:9100").as_str()),
                    ("job", "node"),
                    ("cpu", cpu.to_string().as_str()),
                ]));
            }
        }
    }
    out
}

fn batch(labels: &[Labels], t: i64) -> WriteBatch {
    let series: Vec<(Labels, Vec<Sample>)> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), vec![Sample::new(t, (i as i64 + t) as f64)]))
        .collect();
    WriteBatch::from_series(&series)
}

fn bench(c: &mut Criterion) {
    let labels = all_labels();
    let tenant = Tenant::anonymous();
    let head = Head::new(HeadOptions::default());
    for chunk in labels.chunks(2000) {
        head.apply(&tenant, &batch(chunk, 0));
    }
    let mut t = 0i64;
    let mut at = 0usize;
    c.bench_function("head_apply_2000_existing_series_of_100k", |b| {
        b.iter_batched(
            || {
                // Every batch of 2,000 series one round later than its previous one.
                let chunk = &labels[at..at + 2000];
                at = (at + 2000) % labels.len();
                if at == 0 {
                    t += 15_000;
                }
                batch(chunk, t + 15_000)
            },
            |wb| black_box(head.apply(&tenant, &wb).samples_written),
            BatchSize::SmallInput,
        )
    });
    // Its own head, so what it reads does not depend on how long the bench above ran:
    // 100k series of 120 samples (one full chunk each).
    let read_head = Head::new(HeadOptions::default());
    for round in 0..120 {
        for chunk in labels.chunks(2000) {
            read_head.apply(&tenant, &batch(chunk, round * 15_000));
        }
    }
    let m = [Matcher::new(MatchOp::Equal, "__name__", "node_metric_7").unwrap()];
    c.bench_function("head_select_one_metric_1000_of_100k_series", |b| {
        b.iter(|| {
            black_box(
                read_head
                    .select_with(&tenant, &m, i64::MIN, i64::MAX, false)
                    .len(),
            )
        })
    });

    let mut g = c.benchmark_group("head_gc");
    g.sample_size(10);
    g.bench_function("collect_50k_empty_of_100k_series", |b| {
        b.iter_batched(
            || {
                let head = Head::new(HeadOptions::default());
                // Half the series only have data before the shipped boundary.
                for (i, chunk) in labels.chunks(2000).enumerate() {
                    let t = if i % 2 == 0 { 1_000 } else { 9_000 };
                    head.apply(&tenant, &batch(chunk, t));
                }
                head.seal(Some(&tenant), 5_000);
                head.truncate_before(Some(&tenant), 5_000);
                head
            },
            // The head is returned, so dropping it is not timed.
            |head| {
                let n = black_box(head.gc());
                (head, n)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
