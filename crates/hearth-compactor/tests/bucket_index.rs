//! The bucket index makes a store gateway's start cost a few requests per tenant, not a
//! few per block: the compactor writes each tenant's index, a gateway reads it plus an
//! offset listing past its newest block, and opens a block (reads its labels file) only
//! when a query needs it. The ring splits the blocks between gateways.
//!
//! Requests are counted by hearth-storage's test bucket, which records every call, so
//! the counts below are the requests an S3 bucket would get.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use hearth_compactor::{Compactor, CompactorConfig};
use hearth_core::{
    ChunkEncoding, EncodedChunk, Labels, MatchOp, Matcher, Queryable, Ring, Sample, SelectHints,
    SeriesData, Tenant,
};
use hearth_storage::block::marks::mark_for_deletion;
use hearth_storage::block::write_block;
use hearth_storage::bucket_index::read_index;
use hearth_storage::testing::WatchedBucket;
use hearth_storage::{BlockInput, BlockWriter, BucketStore, Discovery, Shard};
use object_store::ObjectStore;

const HOUR: i64 = 3_600_000;
const BASE: i64 = 1_700_006_400_000 / (24 * HOUR) * (24 * HOUR);

/// A 2 h block of `tenant` with three series.
fn input(tenant: &Tenant, k: i64) -> BlockInput {
    let start = BASE + k * 2 * HOUR;
    let series = (0..3)
        .map(|i| {
            let mut app = hearth_series::chunkenc::XorAppender::new();
            let first = start + i * 1000;
            let mut t = first;
            let mut last = t;
            while t < start + 2 * HOUR {
                app.append(t, (t / 15_000 + i) as f64);
                last = t;
                t += 15_000;
            }
            let labels = Labels::from_pairs(&[("__name__", "up"), ("job", &format!("j{i}"))]);
            let chunk = EncodedChunk {
                min_t: first,
                max_t: last,
                encoding: ChunkEncoding::Xor,
                data: Arc::from(app.bytes()),
            };
            (labels, SeriesData::Chunks(vec![chunk]))
        })
        .collect();
    BlockInput {
        shard_group: None,
        tenant: tenant.clone(),
        min_time: start,
        max_time: start + 2 * HOUR,
        level: 1,
        sources: Vec::new(),
        resolution: 0,
        series,
    }
}

async fn all_samples(store: &dyn Queryable, tenant: &Tenant) -> Vec<(String, Vec<(i64, f64)>)> {
    let m = Matcher::new(MatchOp::Equal, "__name__", "up").unwrap();
    let series: Vec<_> = store
        .select(tenant, &[m], i64::MIN, i64::MAX, &SelectHints::default())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    series
        .into_iter()
        .map(|s| {
            let samples = match s.data {
                SeriesData::Chunks(cs) => cs
                    .iter()
                    .flat_map(|c| hearth_series::chunkenc::decode_all(&c.data).unwrap())
                    .collect(),
                SeriesData::Samples(v) => v.iter().map(|s: &Sample| (s.t, s.v)).collect(),
            };
            (s.labels.to_string(), samples)
        })
        .collect()
}

fn gateway(bucket: Arc<dyn ObjectStore>) -> BucketStore {
    BucketStore::with_page_cache(bucket, 0).with_discovery(Discovery::BucketIndex {
        max_stale: Duration::from_secs(3600),
    })
}

#[tokio::test]
async fn gateways_start_from_the_index_open_blocks_lazily_and_split_them_by_the_ring() {
    let counting = Arc::new(WatchedBucket::default());
    let bucket: Arc<dyn ObjectStore> = counting.clone();
    let tenants: Vec<Tenant> = ["team-a", "team-b", "team-c"]
        .iter()
        .map(|t| Tenant::new(t).unwrap())
        .collect();
    for t in &tenants {
        for k in 0..20 {
            write_block(&bucket, input(t, k)).await.unwrap();
        }
    }
    // The compactor (one range: nothing to merge) writes the three indexes.
    let writer = Arc::new(BucketStore::with_page_cache(bucket.clone(), 0));
    let compactor = Compactor::new(
        writer.clone(),
        Arc::new(BlockWriter::new(bucket.clone())),
        CompactorConfig {
            block_ranges_ms: vec![2 * HOUR],
            downsampling: false,
            ..CompactorConfig::default()
        },
    );
    // The index records when it was written: the wall clock, so gateways trust it.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    compactor.run_once(now_ms).await.unwrap();
    let index = read_index(&bucket, &tenants[0]).await.unwrap().unwrap();
    assert_eq!(index.blocks.len(), 20);
    // Two blocks shipped after the index was written.
    for k in 20..22 {
        write_block(&bucket, input(&tenants[0], k)).await.unwrap();
    }

    counting.take_calls();
    let gw = gateway(bucket.clone());
    assert_eq!(gw.sync().await.unwrap(), 62);
    let calls = counting.take_calls();
    let gets: Vec<_> = calls.iter().filter(|(op, _)| *op == "get").collect();
    // One listing of tenants; per tenant one index read and one offset listing (that
    // finds the two new blocks, whose meta.json are read); no full listing, no labels
    // file: 62 blocks known after 1 + 3 + 3 + 2 requests.
    assert_eq!(calls.len(), 9, "requests: {calls:#?}");
    assert_eq!(gets.len(), 5, "{gets:?}");
    assert!(calls.iter().all(|(op, _)| *op != "list"), "{calls:?}");
    assert!(calls.iter().all(|(_, p)| !p.ends_with(".parquet")));
    assert_eq!(gw.blocks_opened(), 0);

    // Answers equal those of a store that listed the bucket and read every block;
    // a query over two blocks opens just those two.
    let listing = BucketStore::with_page_cache(bucket.clone(), 0);
    listing.sync().await.unwrap();
    for t in &tenants {
        assert_eq!(all_samples(&gw, t).await, all_samples(&listing, t).await);
    }
    assert_eq!(gw.blocks_opened(), 62);
    let fresh = gateway(bucket.clone());
    fresh.sync().await.unwrap();
    let m = Matcher::new(MatchOp::Equal, "job", "j1").unwrap();
    let some: Vec<_> = fresh
        .select(
            &tenants[1],
            &[m],
            BASE + 2 * HOUR,
            BASE + 4 * HOUR - 1,
            &SelectHints::default(),
        )
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(some.len(), 1);
    assert_eq!(fresh.blocks_opened(), 1);

    // Opened blocks live in a byte-bounded cache: with room for about one block, a
    // second pass over everything reads the labels files again and answers the same.
    let small = gateway(bucket.clone()).with_labels_cache(1_000);
    small.sync().await.unwrap();
    for t in &tenants {
        assert_eq!(all_samples(&small, t).await, all_samples(&listing, t).await);
    }
    let first_pass = small.blocks_opened();
    for t in &tenants {
        assert_eq!(all_samples(&small, t).await, all_samples(&listing, t).await);
    }
    assert!(
        small.blocks_opened() > first_pass,
        "evicted blocks are read again ({first_pass} then {})",
        small.blocks_opened()
    );
    assert!(small.labels_cache_bytes().await < 5_000);
    assert!(
        gw.labels_cache_bytes().await > 62 * 3 * 100,
        "the default cache keeps them all"
    );

    // A stale index (the compactor stopped) is not trusted: the tenant is listed.
    let strict =
        BucketStore::with_page_cache(bucket.clone(), 0).with_discovery(Discovery::BucketIndex {
            max_stale: Duration::ZERO,
        });
    tokio::time::sleep(Duration::from_millis(1100)).await;
    counting.take_calls();
    assert_eq!(strict.sync().await.unwrap(), 62);
    assert_eq!(
        counting
            .take_calls()
            .iter()
            .filter(|(op, _)| *op == "list")
            .count(),
        3
    );

    // A block marked for deletion leaves the gateways once the next index says so.
    let gone = index.blocks[0].ulid.clone();
    mark_for_deletion(&bucket, &tenants[0], &gone, now_ms / 1000)
        .await
        .unwrap();
    compactor.run_once(now_ms).await.unwrap();
    assert_eq!(gw.sync().await.unwrap(), 61);
    assert!(gw.blocks(&tenants[0]).iter().all(|b| b.meta().ulid != gone));

    // The ring: with one replica the gateways split the blocks, each block on exactly
    // one; with two replicas each of two gateways holds every block.
    let ids = vec!["gw-1".to_string(), "gw-2".to_string()];
    for (rf, want_each_all) in [(1, false), (2, true)] {
        let mut held: Vec<BTreeSet<String>> = Vec::new();
        for id in &ids {
            let g = gateway(bucket.clone()).with_shard(Shard {
                ring: Ring::new(&ids, 128, rf),
                instance: id.clone(),
            });
            g.sync().await.unwrap();
            held.push(
                tenants
                    .iter()
                    .flat_map(|t| g.blocks(t))
                    .map(|b| b.meta().ulid.clone())
                    .collect(),
            );
        }
        if want_each_all {
            assert_eq!(held[0].len(), 61);
            assert_eq!(held[0], held[1]);
        } else {
            assert!(held[0].is_disjoint(&held[1]));
            assert_eq!(held[0].len() + held[1].len(), 61);
            assert!(
                held[0].len() >= 15 && held[1].len() >= 15,
                "{} / {}",
                held[0].len(),
                held[1].len()
            );
        }
    }
}
