//! Downsampling, end to end through the bucket: the compactor writes 5 m and 1 h blocks
//! for every raw block of the largest range, and the store answers from them when a
//! query accepts that resolution, within each aggregate's meaning: max_over_time reads
//! per-window maxima (exactly the raw maxima of the windows), rate reads a counter whose
//! increase equals the raw counter's increase through resets (inside a block and at the
//! boundary between blocks), other functions read per-window averages. Raw queries are
//! untouched, and the `__aggr__` label never shows.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::TryStreamExt;
use hearth_compactor::{Compactor, CompactorConfig};
use hearth_core::{Labels, Queryable, Sample, SelectHints, SeriesData, Tenant};
use hearth_storage::downsample::{RES_1H, RES_5M};
use hearth_storage::testing::ship;
use hearth_storage::{BlockInput, BlockWriter, BucketStore};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const BASE: i64 = 1_700_006_400_000 / DAY * DAY;

/// The raw value of each series at `t`: a counter that resets every 10 hours (and so
/// once inside each day and not at the day boundary... plus one forced at the second
/// day's start), and a gauge.
fn value(series: usize, t: i64) -> f64 {
    let k = (t - BASE) / 15_000;
    match series {
        0 => {
            // Resets at 10 h, 20 h, 30 h, 40 h; 24 h (the block boundary) starts low too.
            let since = if (t - BASE) >= DAY && (t - BASE) < DAY + 6 * HOUR {
                t - BASE - DAY
            } else {
                (t - BASE) % (10 * HOUR)
            };
            (since / 15_000) as f64 * 2.0
        }
        _ => ((k as f64) / 40.0).sin() * 10.0 + series as f64,
    }
}

fn labels(series: usize) -> Labels {
    let name = if series == 0 {
        "requests_total"
    } else {
        "temperature"
    };
    Labels::from_pairs(&[("__name__", name), ("i", &series.to_string())])
}

fn raw(series: usize, from: i64, to: i64) -> Vec<Sample> {
    (from..to)
        .step_by(15_000)
        .map(|t| Sample {
            t,
            v: value(series, t),
        })
        .collect()
}

fn day(d: i64) -> BlockInput {
    let (from, to) = (BASE + d * DAY, BASE + (d + 1) * DAY);
    BlockInput {
        shard_group: None,
        tenant: Tenant::anonymous(),
        min_time: from,
        max_time: to,
        level: 1,
        sources: Vec::new(),
        resolution: 0,
        series: (0..3)
            .map(|i| (labels(i), SeriesData::Samples(raw(i, from, to))))
            .collect(),
    }
}

async fn select(
    store: &BucketStore,
    name: &str,
    func: Option<&str>,
    max_resolution: i64,
) -> BTreeMap<String, Vec<Sample>> {
    let m = hearth_core::Matcher::new(hearth_core::MatchOp::Equal, "__name__", name).unwrap();
    let hints = SelectHints {
        func: func.map(str::to_string),
        max_resolution,
        ..Default::default()
    };
    let series: Vec<_> = store
        .select(&Tenant::anonymous(), &[m], BASE, BASE + 2 * DAY - 1, &hints)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    series
        .into_iter()
        .map(|s| {
            let pts = match s.data {
                SeriesData::Samples(v) => v,
                SeriesData::Chunks(cs) => cs
                    .iter()
                    .flat_map(|c| hearth_series::chunkenc::decode_all(&c.data).unwrap())
                    .map(|(t, v)| Sample { t, v })
                    .collect(),
            };
            (s.labels.to_string(), pts)
        })
        .collect()
}

/// PromQL's increase without extrapolation: deltas, a drop counting the new value.
fn increase(pts: &[Sample]) -> f64 {
    pts.windows(2)
        .map(|w| {
            if w[1].v < w[0].v {
                w[1].v
            } else {
                w[1].v - w[0].v
            }
        })
        .sum()
}

#[tokio::test]
async fn downsampled_blocks_answer_within_each_aggregates_meaning() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Arc::new(BucketStore::new(bucket.clone()));
    for d in 0..2 {
        ship(&store, day(d)).await.unwrap();
    }
    let raw_before = select(&store, "temperature", None, 0).await;
    let compactor = Compactor::new(
        store.clone(),
        Arc::new(BlockWriter::new(bucket.clone())),
        CompactorConfig {
            block_ranges_ms: vec![DAY],
            ..CompactorConfig::default()
        },
    );
    let report = compactor.run_once(BASE + 10 * DAY).await.unwrap();
    assert_eq!(
        report.downsampled.len(),
        4,
        "5 m and 1 h for each day: {report:?}"
    );
    assert!(compactor
        .run_once(BASE + 10 * DAY)
        .await
        .unwrap()
        .downsampled
        .is_empty());
    let fresh = BucketStore::new(bucket.clone());
    fresh.sync().await.unwrap();
    let res: Vec<i64> = fresh
        .blocks(&Tenant::anonymous())
        .iter()
        .map(|b| b.meta().hearth.resolution)
        .collect();
    assert_eq!(res.iter().filter(|r| **r == RES_5M).count(), 2);
    assert_eq!(res.iter().filter(|r| **r == RES_1H).count(), 2);

    // Raw queries read raw blocks only, unchanged.
    let raw_after = select(&fresh, "temperature", None, 0).await;
    assert_eq!(raw_before.len(), raw_after.len());
    for (k, v) in &raw_before {
        let a: Vec<(i64, u64)> = v.iter().map(|s| (s.t, s.v.to_bits())).collect();
        let b: Vec<(i64, u64)> = raw_after[k].iter().map(|s| (s.t, s.v.to_bits())).collect();
        assert_eq!(a, b, "{k}");
    }

    // max_over_time at 5 m: one point per window, the raw maximum of that window.
    let maxes = select(&fresh, "temperature", Some("max_over_time"), RES_5M).await;
    for (k, pts) in &maxes {
        assert!(!k.contains("__aggr__"), "{k}");
        let raw = &raw_before[k];
        assert_eq!(pts.len() as i64, 2 * DAY / RES_5M, "{k}");
        for p in pts {
            let w = p.t.div_euclid(RES_5M);
            let want = raw
                .iter()
                .filter(|s| s.t.div_euclid(RES_5M) == w)
                .map(|s| s.v)
                .fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(p.v, want, "{k} at {}", p.t);
        }
    }
    // The average of a window is its raw mean; at 1 h there are 24 points a day.
    let avgs = select(&fresh, "temperature", None, RES_1H).await;
    for (k, pts) in &avgs {
        assert_eq!(pts.len() as i64, 48, "{k}");
        let raw = &raw_before[k];
        for p in pts {
            let w = p.t.div_euclid(RES_1H);
            let xs: Vec<f64> = raw
                .iter()
                .filter(|s| s.t.div_euclid(RES_1H) == w)
                .map(|s| s.v)
                .collect();
            let mean = xs.iter().sum::<f64>() / xs.len() as f64;
            assert!((p.v - mean).abs() < 1e-9, "{k}: {} vs {mean}", p.v);
        }
    }

    // rate reads the chained counter: the same increase over the two days as the raw
    // counter (resets inside each day and at the day boundary), ending at the raw value.
    let raw_counter = select(&fresh, "requests_total", Some("rate"), 0).await;
    for resolution in [RES_5M, RES_1H] {
        let counter = select(&fresh, "requests_total", Some("rate"), resolution).await;
        for (k, pts) in &counter {
            let raw = &raw_counter[k];
            assert!(pts.len() < raw.len() / 10);
            let (a, b) = (increase(pts), increase(raw));
            assert!((a - b).abs() < 1e-6, "{k} at {resolution}: {a} vs raw {b}");
            assert!(pts.windows(2).all(|w| w[1].v >= w[0].v), "monotonic");
            assert_eq!(pts.last().unwrap().v, raw.last().unwrap().v);
        }
    }

    // A late block for the first day (a series shipped late) is merged into that day
    // (vertical compaction); the day is downsampled again with it, and the outdated
    // copies are marked.
    let late = BlockInput {
        shard_group: None,
        tenant: Tenant::anonymous(),
        min_time: BASE + 2 * HOUR,
        max_time: BASE + 4 * HOUR,
        level: 1,
        sources: Vec::new(),
        resolution: 0,
        series: vec![(
            Labels::from_pairs(&[("__name__", "temperature"), ("i", "late")]),
            SeriesData::Samples(raw(1, BASE + 2 * HOUR, BASE + 4 * HOUR)),
        )],
    };
    ship(&fresh, late).await.unwrap();
    let again = Compactor::new(
        Arc::new(fresh),
        Arc::new(BlockWriter::new(bucket.clone())),
        CompactorConfig {
            block_ranges_ms: vec![DAY],
            ..CompactorConfig::default()
        },
    );
    let report = again.run_once(BASE + 10 * DAY).await.unwrap();
    assert_eq!(report.compacted.len(), 1, "{report:?}");
    assert_eq!(
        report.downsampled.len(),
        2,
        "5 m and 1 h of the first day: {report:?}"
    );
    let fresh = BucketStore::new(bucket.clone());
    fresh.sync().await.unwrap();
    let per_res = |r: i64| {
        fresh
            .blocks(&Tenant::anonymous())
            .iter()
            .filter(|b| b.meta().hearth.resolution == r)
            .count()
    };
    assert_eq!((per_res(0), per_res(RES_5M), per_res(RES_1H)), (2, 2, 2));
    let maxes = select(&fresh, "temperature", Some("max_over_time"), RES_5M).await;
    assert_eq!(maxes.len(), 3, "the late series is downsampled too");

    // Label names come from raw blocks: no __aggr__.
    let names = fresh
        .label_names(&Tenant::anonymous(), &[], i64::MIN, i64::MAX)
        .await
        .unwrap();
    assert!(!names.iter().any(|n| n == "__aggr__"), "{names:?}");
}
