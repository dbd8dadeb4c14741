//! `delete_series` reaches the bucket: the compactor rewrites exactly the blocks that
//! hold samples of a deletion request, without them, and leaves everything else as it
//! was; a second pass finds nothing left to do.

use std::sync::Arc;

use futures::TryStreamExt;
use hearth_compactor::{Compactor, CompactorConfig};
use hearth_core::{MatchOp, Matcher, Queryable, Sample, SelectHints, SeriesData, Tenant};
use hearth_storage::testing::ship;
use hearth_storage::tombstones::Tombstones;
use hearth_storage::{BlockInput, BlockWriter, BucketStore};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const HOUR: i64 = 3_600_000;
const BASE: i64 = 1_700_006_400_000 / (24 * HOUR) * (24 * HOUR);

fn block(k: i64) -> BlockInput {
    let start = BASE + k * 2 * HOUR;
    BlockInput {
        shard_group: None,
        tenant: Tenant::anonymous(),
        min_time: start,
        max_time: start + 2 * HOUR,
        level: 1,
        sources: Vec::new(),
        resolution: 0,
        series: (0..3)
            .map(|i| {
                let labels = hearth_core::Labels::from_pairs(&[
                    ("__name__", "up"),
                    ("job", &format!("j{i}")),
                ]);
                let samples = (0..480)
                    .map(|n| Sample {
                        t: start + n * 15_000,
                        v: (n + i) as f64,
                    })
                    .collect();
                (labels, SeriesData::Samples(samples))
            })
            .collect(),
    }
}

/// Every (job, timestamp) the store holds.
async fn points(store: &BucketStore) -> Vec<(String, i64)> {
    let series: Vec<_> = store
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
    let mut out = Vec::new();
    for s in series {
        let job = s.labels.get("job").unwrap().to_string();
        if let SeriesData::Chunks(cs) = s.data {
            for c in cs {
                for (t, _) in hearth_series::chunkenc::decode_all(&c.data).unwrap() {
                    out.push((job.clone(), t));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn compactor_rewrites_blocks_without_deleted_samples() {
    let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Arc::new(BucketStore::new(bucket.clone()));
    for k in 0..3 {
        ship(&store, block(k)).await.unwrap();
    }
    let before = points(&store).await;
    assert_eq!(before.len(), 3 * 3 * 480);
    // Delete job j1 from 1 h to 3 h into the data: the first two blocks hold samples of
    // it, the third does not.
    let (from, to) = (BASE + HOUR, BASE + 3 * HOUR);
    Tombstones::new(bucket.clone())
        .add(
            &Tenant::anonymous(),
            &[vec![Matcher::new(MatchOp::Equal, "job", "j1").unwrap()]],
            from,
            to,
            // j1 held samples through the whole interval when the request was made.
            std::collections::HashMap::from([(
                hearth_core::Labels::from_pairs(&[("__name__", "up"), ("job", "j1")]).hash64(),
                to,
            )]),
            0,
        )
        .await
        .unwrap();
    let now_ms = BASE + 100 * HOUR;
    let compactor = Compactor::new(
        store.clone(),
        Arc::new(BlockWriter::new(bucket.clone())),
        CompactorConfig {
            block_ranges_ms: vec![2 * HOUR],
            downsampling: false,
            ..CompactorConfig::default()
        },
    );
    let report = compactor.run_once(now_ms).await.unwrap();
    assert_eq!(report.rewritten.len(), 2, "{report:?}");
    assert_eq!(report.marked, 2);

    // A fresh reader of the bucket (no tombstones applied) sees exactly the rest.
    let fresh = BucketStore::new(bucket.clone());
    fresh.sync().await.unwrap();
    let mut want: Vec<_> = before
        .into_iter()
        .filter(|(job, t)| !(job == "j1" && (from..=to).contains(t)))
        .collect();
    let mut got = points(&fresh).await;
    want.sort();
    got.sort();
    assert_eq!(got.len(), 3 * 3 * 480 - (2 * 240 + 1));
    assert_eq!(got, want);

    // Nothing left to rewrite.
    let again = compactor.run_once(now_ms).await.unwrap();
    assert!(again.rewritten.is_empty() && again.marked == 0, "{again:?}");
}
