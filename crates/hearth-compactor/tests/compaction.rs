//! Compaction keeps answers identical: six 2 h blocks and a duplicate of one (a retried
//! shipping) become one 12 h block, the replaced blocks are served no more and deleted
//! after the delay, and every query answers exactly as before. Retention removes what
//! is past it.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use hearth_compactor::{plan, Compactor, CompactorConfig};
use hearth_core::{
    Labels, MatchOp, Matcher, Queryable, Sample, SelectHints, SeriesData, Tenant, WriteBatch,
};
use hearth_ingester::{Head, HeadOptions};
use hearth_storage::testing::ship;
use hearth_storage::{open_bucket, Backend, BlockInput, BlockWriter, BucketConfig, BucketStore};

/// A writer into the store's bucket.
fn writer(store: &BucketStore) -> Arc<BlockWriter> {
    Arc::new(BlockWriter::new(store.bucket().clone()))
}

const HOUR: i64 = 3_600_000;
const BASE: i64 = 1_700_006_400_000 / (12 * HOUR) * (12 * HOUR);

fn head() -> Arc<Head> {
    let head = Arc::new(Head::new(HeadOptions::default()));
    let labels: Vec<Labels> = (0..30)
        .map(|i| {
            Labels::from_pairs(&[
                ("__name__", if i % 3 == 0 { "up" } else { "load" }),
                ("instance", &format!("i{i}")),
            ])
        })
        .collect();
    for k in 0..(12 * 120) {
        let step: Vec<(Labels, Vec<Sample>)> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let t = BASE + k * 30_000 + i as i64 * 100;
                (
                    l.clone(),
                    vec![Sample {
                        t,
                        v: (k as f64 * 0.1 + i as f64).sin(),
                    }],
                )
            })
            .collect();
        head.apply(&Tenant::anonymous(), &WriteBatch::from_series(&step));
    }
    head
}

fn input(head: &Head, start: i64, end: i64) -> BlockInput {
    BlockInput {
        shard_group: None,
        tenant: Tenant::anonymous(),
        min_time: start,
        max_time: end,
        level: 1,
        sources: Vec::new(),
        resolution: 0,
        series: head
            .sealed_series_data(&Tenant::anonymous(), start, end - 1)
            .into_iter()
            .map(|s| (s.labels, s.data))
            .collect(),
    }
}

async fn answers(store: &BucketStore) -> Vec<(String, Vec<(i64, u64)>)> {
    let mut out = Vec::new();
    for (m, mint, maxt) in [
        (
            Matcher::new(MatchOp::Equal, "__name__", "up").unwrap(),
            BASE,
            BASE + 12 * HOUR,
        ),
        (
            Matcher::new(MatchOp::RegexMatch, "instance", "i1.*").unwrap(),
            BASE + 3 * HOUR + 5,
            BASE + 7 * HOUR,
        ),
    ] {
        let series: Vec<_> = store
            .select(
                &Tenant::anonymous(),
                &[m],
                mint,
                maxt,
                &SelectHints::default(),
            )
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        for s in series {
            let mut pts: Vec<(i64, u64)> = match s.data {
                SeriesData::Chunks(cs) => cs
                    .iter()
                    .flat_map(|c| hearth_series::chunkenc::decode_all(&c.data).unwrap())
                    .map(|(t, v)| (t, v.to_bits()))
                    .collect(),
                SeriesData::Samples(ss) => ss.iter().map(|s| (s.t, s.v.to_bits())).collect(),
            };
            pts.retain(|(t, _)| *t >= mint && *t <= maxt);
            out.push((s.labels.to_string(), pts));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_answers_identical_and_retention_removes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = BucketConfig {
        backend: Backend::Filesystem,
        ..Default::default()
    };
    cfg.filesystem.dir = dir.path().join("bucket");
    let bucket = open_bucket(&cfg).unwrap();
    let store = Arc::new(BucketStore::new(bucket.clone()));
    let head = head();
    for k in 0..6 {
        ship(
            &store,
            input(&head, BASE + k * 2 * HOUR, BASE + (k + 1) * 2 * HOUR),
        )
        .await
        .unwrap();
    }
    // A retried shipping left a second copy of one range.
    ship(&store, input(&head, BASE + 4 * HOUR, BASE + 6 * HOUR))
        .await
        .unwrap();
    let before = answers(&store).await;
    assert!(before.iter().map(|(_, p)| p.len()).sum::<usize>() > 10_000);

    let metas: Vec<_> = store
        .blocks(&Tenant::anonymous())
        .iter()
        .map(|b| b.meta().clone())
        .collect();
    let first = plan(&metas, &[2 * HOUR, 12 * HOUR]).unwrap();
    assert_eq!(first.len(), 2, "the overlapping pair goes first");

    let compactor = Compactor::new(
        store.clone(),
        writer(&store),
        CompactorConfig {
            block_ranges_ms: vec![2 * HOUR, 12 * HOUR],
            deletion_delay: Duration::from_secs(3600),
            // Merges only here; tests/downsampling.rs covers the downsampled blocks.
            downsampling: false,
            ..Default::default()
        },
    );
    let now = BASE + 13 * HOUR;
    let report = compactor.run_once(now).await.unwrap();
    assert_eq!(report.compacted.len(), 2, "{report:?}");
    let blocks = store.blocks(&Tenant::anonymous());
    assert_eq!(blocks.len(), 1);
    let meta = blocks[0].meta().clone();
    assert_eq!((meta.min_time, meta.max_time), (BASE, BASE + 12 * HOUR));
    assert_eq!(meta.compaction.level, 3);
    assert_eq!(meta.compaction.sources.len(), 7);
    assert_eq!(meta.stats.num_samples, 30 * 12 * 120);
    assert_eq!(answers(&store).await, before, "answers after compaction");

    // Within the delay the replaced blocks (the seven, and the block the overlapping
    // pair became on the way) are still in the bucket, marked; after it they are gone,
    // and a fresh reader of the bucket answers the same.
    let listed = store.list_blocks(&Tenant::anonymous()).await.unwrap();
    assert_eq!(listed.len(), 9);
    assert_eq!(listed.iter().filter(|(_, _, marked)| *marked).count(), 8);
    let report = compactor.run_once(now + 2 * HOUR).await.unwrap();
    assert_eq!(report.deleted, 8);
    assert_eq!(
        store.list_blocks(&Tenant::anonymous()).await.unwrap().len(),
        1
    );
    let fresh = BucketStore::new(bucket.clone());
    fresh.sync().await.unwrap();
    assert_eq!(
        answers(&fresh).await,
        before,
        "answers from the compacted bucket"
    );

    // Retention: a day; a week later everything is past it.
    let compactor = Compactor::new(
        store.clone(),
        writer(&store),
        CompactorConfig {
            block_ranges_ms: vec![2 * HOUR, 12 * HOUR],
            deletion_delay: Duration::ZERO,
            overrides: Arc::new(hearth_core::Overrides::new(hearth_core::TenantLimits {
                compactor_blocks_retention_period_ms: 24 * HOUR,
                ..Default::default()
            })),
            downsampling: false,
        },
    );
    let report = compactor.run_once(BASE + 7 * 24 * HOUR).await.unwrap();
    assert_eq!((report.marked, report.deleted), (1, 1));
    assert!(store.blocks(&Tenant::anonymous()).is_empty());
    assert!(answers(&store).await.is_empty());
}
