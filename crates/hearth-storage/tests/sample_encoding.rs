//! Blocks written in the decimal-delta sample encoding read back bit for bit, through
//! the same reader as XOR blocks (a store that writes XOR reads them), whatever the
//! values: decimals, arbitrary floats, staleness markers, infinities.

use std::sync::Arc;

use futures::TryStreamExt;
use hearth_core::{Labels, Queryable, Sample, SelectHints, SeriesData, Tenant, STALE_NAN_BITS};
use hearth_storage::block::cell::SampleEncoding;
use hearth_storage::{BlockInput, BucketStore};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const START: i64 = 1_700_006_400_000 / 7_200_000 * 7_200_000;

type ValueFn = Box<dyn Fn(i64) -> f64>;

fn series() -> Vec<(Labels, Vec<Sample>)> {
    let values: [(&str, ValueFn); 4] = [
        ("counter", Box::new(|i| 1000.0 + i as f64 * 12.25)),
        ("gauge", Box::new(|i| (i as f64 / 7.0).sin() * 1e3)),
        (
            "odd",
            Box::new(|i| {
                if i % 50 == 7 {
                    f64::INFINITY
                } else {
                    -0.0 - i as f64 * 1e-9
                }
            }),
        ),
        (
            "stale",
            Box::new(|i| {
                if i == 479 {
                    f64::from_bits(STALE_NAN_BITS)
                } else {
                    i as f64
                }
            }),
        ),
    ];
    values
        .iter()
        .map(|(name, f)| {
            let samples = (0..480)
                .map(|i| Sample {
                    t: START + i * 15_000 + (i % 4),
                    v: f(i),
                })
                .collect();
            (Labels::from_pairs(&[("__name__", *name)]), samples)
        })
        .collect()
}

#[tokio::test]
async fn decimal_delta_blocks_read_back_bit_for_bit() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let writer = hearth_storage::BlockWriter::new(bucket.clone())
        .with_sample_encoding(SampleEncoding::DecimalDelta);
    let input = series();
    // ship() reads the block back and checks series, chunk and sample counts.
    writer
        .ship(BlockInput {
            shard_group: None,
            tenant: Tenant::anonymous(),
            min_time: START,
            max_time: START + 7_200_000,
            level: 1,
            sources: Vec::new(),
            resolution: 0,
            series: input
                .iter()
                .map(|(l, s)| (l.clone(), SeriesData::Samples(s.clone())))
                .collect(),
        })
        .await
        .unwrap();
    let reader = BucketStore::new(bucket);
    reader.sync().await.unwrap();
    let got: Vec<_> = reader
        .select(
            &Tenant::anonymous(),
            &[],
            i64::MIN,
            i64::MAX,
            &SelectHints::default(),
        )
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(got.len(), input.len());
    let mut want = input.clone();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    for (s, (labels, samples)) in got.iter().zip(&want) {
        assert_eq!(&s.labels, labels);
        let SeriesData::Chunks(cs) = &s.data else {
            panic!("blocks answer chunks")
        };
        let back: Vec<(i64, u64)> = cs
            .iter()
            .flat_map(|c| hearth_series::chunkenc::decode_all(&c.data).unwrap())
            .map(|(t, v)| (t, v.to_bits()))
            .collect();
        let want: Vec<(i64, u64)> = samples.iter().map(|s| (s.t, s.v.to_bits())).collect();
        assert_eq!(back, want, "{labels}");
    }
}
