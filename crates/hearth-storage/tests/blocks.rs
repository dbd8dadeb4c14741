//! Blocks written to a bucket read back exactly, on the in-memory and filesystem
//! backends and on a real S3 protocol server (moto, from PyPI).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use hearth_core::{
    Labels, MatchOp, Matcher, Queryable, SelectHints, SeriesData, Tenant, WriteBatch,
};
use hearth_ingester::{Head, HeadOptions, HeadQueryable};
use hearth_storage::testing::ship;
use hearth_storage::{open_bucket, Backend, BlockInput, BucketConfig, BucketStore};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const HOUR: i64 = 3_600_000;
const BASE: i64 = 1_700_000_000_000 / (2 * HOUR) * (2 * HOUR);

/// 120 series over three hours, 15 s apart, with jitter and a counter reset.
fn head() -> Arc<Head> {
    let head = Arc::new(Head::new(HeadOptions::default()));
    let mut series = Vec::new();
    for job in ["api", "db", "web"] {
        for i in 0..40 {
            let labels = Labels::from_pairs(&[
                (
                    "__name__",
                    if i % 2 == 0 {
                        "http_requests_total"
                    } else {
                        "cpu_seconds"
                    },
                ),
                ("job", job),
                ("instance", &format!("host-{i}")),
            ]);
            let samples: Vec<hearth_core::Sample> = (0..720)
                .map(|k| hearth_core::Sample {
                    t: BASE + k * 15_000 + (i * 7) % 1_000,
                    v: if k == 400 {
                        0.0
                    } else {
                        (k * (i + 1)) as f64 * 0.5
                    },
                })
                .collect();
            series.push((labels, samples));
        }
    }
    // In time order, as scrapes arrive: the head refuses samples far behind its newest.
    for k in 0..720 {
        let step: Vec<(Labels, Vec<hearth_core::Sample>)> = series
            .iter()
            .map(|(l, s)| (l.clone(), vec![s[k]]))
            .collect();
        let out = head.apply(&Tenant::anonymous(), &WriteBatch::from_series(&step));
        assert_eq!(out.samples_rejected, 0);
    }
    head
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

async fn samples_of(
    q: &dyn Queryable,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Vec<(String, Vec<(i64, u64)>)> {
    let stream = q
        .select(
            &Tenant::anonymous(),
            matchers,
            mint,
            maxt,
            &SelectHints::default(),
        )
        .await
        .unwrap();
    let all: Vec<_> = stream.try_collect().await.unwrap();
    all.into_iter()
        .map(|s| {
            let mut pts = Vec::new();
            match s.data {
                SeriesData::Chunks(cs) => {
                    for c in cs {
                        pts.extend(hearth_series::chunkenc::decode_all(&c.data).unwrap());
                    }
                }
                SeriesData::Samples(ss) => pts.extend(ss.into_iter().map(|s| (s.t, s.v))),
            }
            let pts = pts
                .into_iter()
                .filter(|(t, _)| *t >= mint && *t <= maxt)
                .map(|(t, v)| (t, v.to_bits()))
                .collect();
            (s.labels.to_string(), pts)
        })
        .filter(|(_, p): &(String, Vec<_>)| !p.is_empty())
        .collect()
}

/// The head's data for `[mint, maxt)` as block input.
async fn input(head: &Arc<Head>, mint: i64, maxt: i64) -> BlockInput {
    let q = HeadQueryable(Arc::clone(head));
    let all = m(MatchOp::RegexMatch, "__name__", ".+");
    let stream = q
        .select(
            &Tenant::anonymous(),
            &[all],
            mint,
            maxt - 1,
            &SelectHints::default(),
        )
        .await
        .unwrap();
    let series: Vec<(Labels, SeriesData)> = stream
        .map_ok(|s| (s.labels, s.data))
        .try_collect()
        .await
        .unwrap();
    BlockInput {
        shard_group: None,
        tenant: Tenant::anonymous(),
        min_time: mint,
        max_time: maxt,
        level: 1,
        sources: Vec::new(),
        resolution: 0,
        series,
    }
}

/// Ships two 2 h blocks of the head to `bucket` and checks every answer against the
/// head's, then again from a store that found the blocks by listing the bucket.
async fn blocks_answer_as_the_head(bucket: Arc<dyn ObjectStore>) {
    let head = head();
    let store = BucketStore::new(Arc::clone(&bucket));
    let first = ship(&store, input(&head, BASE, BASE + 2 * HOUR).await)
        .await
        .unwrap();
    assert_eq!(first.stats.num_series, 120);
    assert_eq!(first.stats.num_samples, 120 * 480);
    let second = ship(&store, input(&head, BASE + 2 * HOUR, BASE + 4 * HOUR).await)
        .await
        .unwrap();
    assert_eq!(second.stats.num_samples, 120 * 240);

    // A block whose upload never finished (no meta.json) is not a block.
    bucket
        .put(
            &object_store::path::Path::from("anonymous/01JZZZZZZZZZZZZZZZZZZZZZZZ/labels.parquet"),
            PutPayload::from_static(b"partial"),
        )
        .await
        .unwrap();
    let found = BucketStore::new(Arc::clone(&bucket));
    assert_eq!(found.sync().await.unwrap(), 2);

    let head_q = HeadQueryable(Arc::clone(&head));
    let cases: Vec<(Vec<Matcher>, i64, i64)> = vec![
        (
            vec![m(MatchOp::Equal, "__name__", "http_requests_total")],
            BASE,
            BASE + 3 * HOUR,
        ),
        (
            vec![
                m(MatchOp::RegexMatch, "__name__", "cpu.*"),
                m(MatchOp::NotEqual, "job", "db"),
            ],
            BASE + HOUR + 17,
            BASE + 2 * HOUR + 5 * 60_000,
        ),
        (
            vec![m(MatchOp::Equal, "instance", "host-7")],
            BASE - HOUR,
            BASE + 10 * HOUR,
        ),
        (vec![m(MatchOp::Equal, "job", "nope")], BASE, BASE + HOUR),
    ];
    for (matchers, mint, maxt) in cases {
        let want = samples_of(&head_q, &matchers, mint, maxt).await;
        for s in [&store, &found] {
            let got = samples_of(s, &matchers, mint, maxt).await;
            assert_eq!(got, want, "{matchers:?} [{mint}, {maxt}]");
        }
    }
    let names = found
        .label_values(&Tenant::anonymous(), "job", &[], BASE, BASE + HOUR)
        .await
        .unwrap();
    assert_eq!(names, ["api", "db", "web"]);
}

#[tokio::test]
async fn memory_backend() {
    let bucket = open_bucket(&BucketConfig {
        backend: Backend::Memory,
        ..Default::default()
    })
    .unwrap();
    blocks_answer_as_the_head(bucket).await;
}

/// A query repeated is answered from the page cache and the footer kept by the block:
/// even with the chunks files gone from the bucket, the same answer comes back.
#[tokio::test]
async fn repeated_reads_come_from_the_cache() {
    let bucket = open_bucket(&BucketConfig {
        backend: Backend::Memory,
        ..Default::default()
    })
    .unwrap();
    let head = head();
    let store = BucketStore::with_page_cache(Arc::clone(&bucket), 64 << 20);
    ship(&store, input(&head, BASE, BASE + 2 * HOUR).await)
        .await
        .unwrap();
    let matchers = [m(MatchOp::Equal, "__name__", "cpu_seconds")];
    let first = samples_of(&store, &matchers, BASE, BASE + 2 * HOUR).await;
    assert!(!first.is_empty());
    assert!(store.page_cache_bytes().await > 0);
    let chunks: Vec<_> = bucket
        .list(None)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.location.as_ref().ends_with("chunks.parquet"))
        .collect();
    assert_eq!(chunks.len(), 1);
    bucket.delete(&chunks[0].location).await.unwrap();
    let again = samples_of(&store, &matchers, BASE, BASE + 2 * HOUR).await;
    assert_eq!(again, first);
    // A store without a cache has to go to the bucket, and fails.
    let uncached = BucketStore::with_page_cache(Arc::clone(&bucket), 0);
    uncached.sync().await.unwrap();
    assert!(uncached
        .select(
            &Tenant::anonymous(),
            &matchers,
            BASE,
            BASE + 2 * HOUR,
            &SelectHints::default()
        )
        .await
        .is_err());
}

#[tokio::test]
async fn filesystem_backend() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = BucketConfig::default();
    cfg.filesystem.dir = dir.path().join("bucket");
    blocks_answer_as_the_head(open_bucket(&cfg).unwrap()).await;
}

struct Moto(Child);
impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts moto's S3 server on a free loopback port with a bucket `blocks`. A missing
/// moto fails the test loudly (scripts/test.sh installs it); it never skips.
async fn start_moto() -> Option<(Moto, u16)> {
    let present = Command::new("sh")
        .args(["-c", "command -v moto_server"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        present,
        "moto_server is required by this test but is not installed (scripts/test.sh installs it: pip install 'moto[server]')"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let moto = Moto(child);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client
            .put(format!("http://127.0.0.1:{port}/blocks"))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Some((moto, port))
}

#[tokio::test]
async fn s3_backend_against_moto() {
    let Some((_moto, port)) = start_moto().await else {
        return;
    };
    let mut cfg = BucketConfig {
        backend: Backend::S3,
        ..Default::default()
    };
    cfg.s3.endpoint = format!("127.0.0.1:{port}");
    cfg.s3.bucket_name = "blocks".into();
    cfg.s3.region = "us-east-1".into();
    cfg.s3.access_key_id = "hearth".into();
    cfg.s3.secret_access_key = "hearth-secret".into();
    cfg.s3.insecure = true;
    blocks_answer_as_the_head(open_bucket(&cfg).unwrap()).await;
}
