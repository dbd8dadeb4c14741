//! A shipping attempt that fails is retried without leaving copies behind: the Parquet
//! files are checked before meta.json is written (a failed check leaves nothing
//! visible), and a retry of a sealed range writes the same block under the same ULID
//! (block ids come from the sealed data itself), so even a block that became visible
//! before its attempt failed is not duplicated: it is found whole (a block gets its
//! meta.json only once checked) and taken as it is. A new leader resumes its
//! predecessor's upload the same way. The bucket is hearth-storage's test bucket,
//! failing one chosen request.

use std::sync::Arc;

use futures::TryStreamExt;
use hearth_core::{Labels, Sample, Tenant, WriteBatch};
use hearth_ingester::replication::{Replica, ReplicaOptions};
use hearth_ingester::{ShippedTo, Shipper};
use hearth_storage::testing::WatchedBucket;
use hearth_storage::{BlockWriter, BucketStore};
use object_store::ObjectStore;

const HOUR: i64 = 3_600_000;
const BASE: i64 = 1_700_006_400_000 / (24 * HOUR) * (24 * HOUR);

/// Every file in the bucket.
async fn files(bucket: &WatchedBucket) -> usize {
    bucket
        .inner()
        .list(None)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .len()
}

/// A one-replica shard group (as the single process runs four), its leader elected.
async fn one_replica(dir: &std::path::Path) -> Arc<Replica> {
    Arc::new(
        Replica::start_alone(dir, ReplicaOptions::default())
            .await
            .unwrap(),
    )
}

/// How many of `calls` were PUTs.
fn puts(calls: Vec<(&'static str, String)>) -> usize {
    calls.iter().filter(|c| c.0 == "put").count()
}

/// A shipper as a replicated group's leader runs it: the head keeps shipped data for
/// `wait` after its blocks became visible.
fn shipping_to_gateways(
    db: &Arc<Replica>,
    bucket: &Arc<WatchedBucket>,
    wait: std::time::Duration,
) -> Shipper {
    Shipper::new(
        db.clone(),
        Arc::new(BlockWriter::new(bucket.clone())),
        ShippedTo::Gateways { after: wait },
        2 * HOUR,
    )
}

async fn write_hours(db: &Replica, hours: i64) {
    let t = Tenant::anonymous();
    for k in 0..hours * 60 {
        let ts = BASE + k * 60_000;
        let series: Vec<(Labels, Vec<Sample>)> = (0..3)
            .map(|i| {
                (
                    Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]),
                    vec![Sample::new(ts, (k + i) as f64)],
                )
            })
            .collect();
        db.push(&t, WriteBatch::from_series(&series)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_leave_no_copies() {
    let dir = tempfile::tempdir().unwrap();
    let db = one_replica(dir.path()).await;
    let bucket = Arc::new(WatchedBucket::default());
    // As the single process ships: its own bucket store answers for a block at once.
    let shipper = Shipper::new(
        db.clone(),
        Arc::new(BlockWriter::new(bucket.clone())),
        ShippedTo::Store(Arc::new(BucketStore::new(bucket.clone()))),
        2 * HOUR,
    );
    write_hours(&db, 6).await;

    // 1. The read-back of the first block's chunks fails: the check runs before
    //    meta.json is written, so nothing is visible, and nothing is shipped.
    bucket.fail_next_get_of("/chunks.parquet");
    assert!(shipper.flush().await.is_err());
    assert!(bucket.committed_blocks().await.is_empty());
    assert_eq!(db.head().num_series(), 3, "the head keeps the data");

    // 2. The read-back of a meta.json fails after it was written: that block is
    //    visible although its attempt failed.
    bucket.fail_next_get_of("/meta.json");
    assert!(shipper.flush().await.is_err());
    let visible = bucket.committed_blocks().await;
    assert_eq!(visible.len(), 1);

    // 3. The retry ships the three 2 h blocks, the first under the same ULID (found
    //    whole in the bucket, so taken as it is): three blocks, no copy.
    let shipped = shipper.flush().await.unwrap();
    assert_eq!(shipped.len(), 3);
    let now = bucket.committed_blocks().await;
    assert_eq!(now.len(), 3, "{now:?}");
    assert!(now.contains(&visible[0]));
    assert_eq!(files(&bucket).await, 3 * 3);
    let samples: u64 = shipped.iter().map(|m| m.stats.num_samples).sum();
    assert_eq!(samples, 3 * 6 * 60);
    assert_eq!(
        db.head().num_series(),
        0,
        "everything shipped and collected"
    );
    assert_eq!(
        shipper
            .stats
            .failures
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    drop(shipper);
    Arc::try_unwrap(db).ok().unwrap().shutdown().await;
}

/// With `ShippedTo::Gateways` (how a replicated group ships) the head keeps the data of
/// the blocks it uploaded until the wait for the store gateways' sync is over: rounds
/// in between upload nothing again and drop nothing; the first round after it logs
/// Shipped, and the head lets the data go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_data_stays_in_the_head_until_the_gateways_have_synced() {
    let dir = tempfile::tempdir().unwrap();
    let db = one_replica(dir.path()).await;
    let bucket = Arc::new(WatchedBucket::default());
    let wait = std::time::Duration::from_millis(500);
    let shipper = shipping_to_gateways(&db, &bucket, wait);
    write_hours(&db, 6).await;
    let t = Tenant::anonymous();
    let samples_in_head = || -> usize {
        db.head()
            .tenant(&t)
            .unwrap()
            .all_series()
            .iter()
            .filter_map(|s| hearth_ingester::head::series_in(s, i64::MIN, i64::MAX))
            .map(|s| {
                let mut v = Vec::new();
                hearth_series::merge::samples_of(s.data, &mut v);
                v.len()
            })
            .sum()
    };
    let shipped = shipper.ship_due().await.unwrap();
    assert_eq!(
        shipped.len(),
        2,
        "the two whole 2 h ranges behind the newest"
    );
    assert_eq!(bucket.committed_blocks().await.len(), 2);
    assert_eq!(samples_in_head(), 3 * 6 * 60, "nothing dropped yet");
    assert_eq!(db.head().tenant(&t).unwrap().shipped_before(), i64::MIN);
    assert!(
        puts(bucket.take_calls()) >= 2 * 3,
        "two blocks of three files"
    );
    // A round within the wait: nothing uploaded again, nothing dropped.
    assert!(shipper.ship_due().await.unwrap().is_empty());
    assert_eq!(samples_in_head(), 3 * 6 * 60);
    assert_eq!(
        puts(bucket.take_calls()),
        0,
        "the sealed data is not uploaded twice"
    );
    tokio::time::sleep(wait).await;
    // The first round after it: Shipped, and the head keeps only the last 2 h.
    shipper.ship_due().await.unwrap();
    assert_eq!(
        db.head().tenant(&t).unwrap().shipped_before(),
        BASE + 4 * HOUR
    );
    assert_eq!(samples_in_head(), 3 * 2 * 60);
    assert_eq!(bucket.committed_blocks().await.len(), 2, "no block twice");
    drop(shipper);
    Arc::try_unwrap(db).ok().unwrap().shutdown().await;
}

/// A leader that takes over a group whose previous leader uploaded blocks and died
/// before logging Shipped (its wait for the gateways lived in its memory) finds the
/// blocks in the bucket: it uploads nothing again and waits only what is left of the
/// wait since they became visible, so a group whose leader keeps changing still ships.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_resumes_an_upload_without_repeating_it_or_its_wait() {
    let dir = tempfile::tempdir().unwrap();
    let db = one_replica(dir.path()).await;
    let bucket = Arc::new(WatchedBucket::default());
    let wait = std::time::Duration::from_millis(1_500);
    let leader = || shipping_to_gateways(&db, &bucket, wait);
    write_hours(&db, 6).await;
    let t = Tenant::anonymous();

    // The first leader uploads two blocks, then is gone before its wait is over.
    let first = leader();
    assert_eq!(first.ship_due().await.unwrap().len(), 2);
    assert!(
        puts(bucket.take_calls()) >= 2 * 3,
        "two blocks of three files"
    );
    drop(first);

    // The next one finds both blocks: nothing uploaded, nothing dropped yet (the
    // gateways may not have seen them).
    let second = leader();
    assert_eq!(second.ship_due().await.unwrap().len(), 2);
    assert_eq!(puts(bucket.take_calls()), 0, "no block uploaded again");
    assert_eq!(db.head().tenant(&t).unwrap().shipped_before(), i64::MIN);
    tokio::time::sleep(wait).await;
    drop(second);

    // A third takes over once the wait since the upload is over: it releases the data
    // at its next round instead of waiting the whole time again.
    let third = leader();
    assert_eq!(third.ship_due().await.unwrap().len(), 2);
    third.ship_due().await.unwrap();
    assert_eq!(
        db.head().tenant(&t).unwrap().shipped_before(),
        BASE + 4 * HOUR,
        "shipped without a second full wait"
    );
    assert_eq!(puts(bucket.take_calls()), 0, "no block uploaded again");
    assert_eq!(bucket.committed_blocks().await.len(), 2, "no block twice");
    drop(third);
    Arc::try_unwrap(db).ok().unwrap().shutdown().await;
}
