//! Postings hot path: intersecting sorted series-id lists and resolving matchers.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use hearth_core::{Labels, MatchOp, Matcher};
use hearth_series::postings::{intersect, MemPostings};

fn bench(c: &mut Criterion) {
    let a: Vec<u32> = (0..1_000_000).step_by(3).collect();
    let b: Vec<u32> = (0..1_000_000).step_by(7).collect();
    let small: Vec<u32> = (0..1_000_000).step_by(997).collect();
    c.bench_function("intersect_333k_x_142k", |bn| {
        bn.iter(|| black_box(intersect(&a, &b).len()))
    });
    c.bench_function("intersect_1k_x_333k_gallop", |bn| {
        bn.iter(|| black_box(intersect(&small, &a).len()))
    });

    // 100k node_exporter-like series: 100 instances x 1000 series.
    let mut p = MemPostings::default();
    let mut id = 0u32;
    for inst in 0..100 {
        for m in 0..100 {
            for cpu in 0..10 {
                let labels = Labels::from_pairs(&[
                    ("__name__", format!("node_metric_{m}").as_str()),
                    ("instance", format!("host-{inst}:9100").as_str()),
                    ("job", "node"),
                    ("cpu", cpu.to_string().as_str()),
                ]);
                p.add(id, &labels);
                id += 1;
            }
        }
    }
    let eq = vec![
        Matcher::new(MatchOp::Equal, "__name__", "node_metric_7").unwrap(),
        Matcher::new(MatchOp::Equal, "instance", "host-42:9100").unwrap(),
    ];
    let re = vec![
        Matcher::new(MatchOp::Equal, "__name__", "node_metric_7").unwrap(),
        Matcher::new(MatchOp::RegexMatch, "instance", "host-4.*").unwrap(),
        Matcher::new(MatchOp::NotEqual, "cpu", "3").unwrap(),
    ];
    c.bench_function("select_eq_eq_100k_series", |bn| {
        bn.iter(|| black_box(p.select(&eq).len()))
    });
    c.bench_function("select_eq_re_neq_100k_series", |bn| {
        bn.iter(|| black_box(p.select(&re).len()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
