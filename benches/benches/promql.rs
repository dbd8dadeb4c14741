//! PromQL evaluation hot paths over a real head: selector decode, rate over 10k series,
//! `sum by`, a binary operation with matching, histogram_quantile.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use hearth_core::{Labels, Sample, Tenant, WriteBatch};
use hearth_ingester::{Head, HeadOptions, HeadQueryable};
use hearth_promql::{Engine, EngineOptions};

const STEP: i64 = 15_000;
const SAMPLES: i64 = 240; // one hour

/// 10k counter series (100 instances x 100 series) and, per instance, a 10-bucket
/// histogram; one hour at 15 s.
fn head() -> Arc<Head> {
    let head = Arc::new(Head::new(HeadOptions::default()));
    let t = Tenant::anonymous();
    let mut series: Vec<(Labels, Vec<Sample>)> = Vec::new();
    for inst in 0..100 {
        let instance = format!("host-{inst}:9100");
        for k in 0..100 {
            let labels = Labels::from_pairs(&[
                ("__name__", "node_cpu_seconds_total"),
                ("cpu", &(k / 10).to_string()),
                ("instance", &instance),
                ("job", if inst % 2 == 0 { "node" } else { "edge" }),
                (
                    "mode",
                    [
                        "user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice",
                        "guest", "other",
                    ][k % 10],
                ),
            ]);
            let samples = (0..SAMPLES)
                .map(|i| Sample::new(i * STEP, (i * (k as i64 + 1)) as f64 * 0.37))
                .collect();
            series.push((labels, samples));
        }
        for (b, le) in [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
        ]
        .iter()
        .enumerate()
        {
            let labels = Labels::from_pairs(&[
                ("__name__", "http_request_duration_seconds_bucket"),
                ("instance", &instance),
                ("job", if inst % 2 == 0 { "node" } else { "edge" }),
                ("le", le),
            ]);
            let samples = (0..SAMPLES)
                .map(|i| Sample::new(i * STEP, (i * (b as i64 + 1) * 3) as f64))
                .collect();
            series.push((labels, samples));
        }
    }
    head.apply(&t, &WriteBatch::from_series(&series));
    head
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::new(Arc::new(HeadQueryable(head())), EngineOptions::default());
    let tenant = Tenant::anonymous();
    let end = (SAMPLES - 1) * STEP;
    let range = |q: &str| {
        let e = Engine::parse(q).unwrap();
        let engine = &engine;
        let tenant = &tenant;
        let rt = &rt;
        move || {
            rt.block_on(async {
                black_box(
                    engine
                        .range(tenant, &e, 10 * 60_000, end, 60_000)
                        .await
                        .unwrap(),
                )
            })
        }
    };
    let mut g = c.benchmark_group("promql_range_1h_step_1m");
    g.sample_size(10);
    let q = range("node_cpu_seconds_total");
    g.bench_function("selector_10k_series", |b| b.iter(&q));
    let q = range("rate(node_cpu_seconds_total[5m])");
    g.bench_function("rate_10k_series", |b| b.iter(&q));
    let q = range("sum by (job, mode) (rate(node_cpu_seconds_total[5m]))");
    g.bench_function("sum_by_rate_10k_series", |b| b.iter(&q));
    let q = range("node_cpu_seconds_total / on(instance, cpu) group_left sum by (instance, cpu) (node_cpu_seconds_total)");
    g.bench_function("binary_group_left_10k_series", |b| b.iter(&q));
    let q = range("histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m])))");
    g.bench_function("histogram_quantile_1k_buckets", |b| b.iter(&q));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
