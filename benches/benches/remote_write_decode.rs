//! Ingest hot path: snappy + protobuf decode and validation of a remote-write request.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hearth_distributor::{decode_request, Limits, Protocol};
use hearth_proto::prometheus as pb;
use prost::Message;

fn request(series: usize) -> Vec<u8> {
    let ts: Vec<pb::TimeSeries> = (0..series)
        .map(|i| pb::TimeSeries {
            labels: vec![
                pb::Label {
                    name: "__name__".into(),
                    value: format!("node_metric_{}", i % 100),
                },
                pb::Label {
                    name: "cpu".into(),
                    value: (i % 8).to_string(),
                },
                pb::Label {
                    name: "instance".into(),
                    value: format!("host-{}:9100", i / 800),
                },
                pb::Label {
                    name: "job".into(),
                    value: "node".into(),
                },
                pb::Label {
                    name: "mode".into(),
                    value: "user".into(),
                },
            ],
            samples: vec![pb::Sample {
                value: i as f64 * 1.5,
                timestamp: 1_700_000_000_000,
            }],
            ..Default::default()
        })
        .collect();
    let raw = pb::WriteRequest {
        timeseries: ts,
        metadata: vec![],
    }
    .encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

fn bench(c: &mut Criterion) {
    let body = request(2000);
    let limits = Limits::default();
    let mut g = c.benchmark_group("remote_write_v1");
    g.throughput(Throughput::Elements(2000));
    g.bench_function("decode_validate_2000_series", |b| {
        b.iter(|| {
            black_box(
                decode_request(Protocol::V1, &body, 10 << 20, &limits)
                    .unwrap()
                    .batch
                    .len(),
            )
        })
    });
    g.finish();
    // The crafted remote-write 2.0 request of the fuzz corpus: 40,000 series with no
    // samples, each with its own metadata family. Its de-duplication was quadratic.
    let crafted = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/seeds/remote_write/rw2_many_metadata_families"
    ))
    .expect("fuzz corpus file");
    let body = snap::raw::Encoder::new()
        .compress_vec(&crafted[1..])
        .unwrap();
    let mut g = c.benchmark_group("remote_write_v2");
    g.sample_size(10);
    g.throughput(Throughput::Elements(40_000));
    g.bench_function("decode_40k_metadata_families", |b| {
        b.iter(|| {
            black_box(
                decode_request(Protocol::V2, &body, 10 << 20, &limits)
                    .unwrap()
                    .batch
                    .metadata
                    .len(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
