//! One bad sender must not stop anyone's ingestion. A sample whose timestamp is in
//! nanoseconds is refused (400 naming the series, the rest of its request stored) and
//! every later write of every tenant goes on; a seconds-for-milliseconds sender ships
//! two blocks, not half a million empty ranges; one tenant's seal never moves another
//! tenant's window; SIGTERM stops the process within 10 s. Late samples older than
//! what was already shipped are taken inside the out-of-order window, and are
//! answered from the head, from blocks, and after compaction, once.

mod common;

use std::time::{Duration, Instant};

use common::*;

const MINUTE: i64 = 60_000;

fn multitenant(dir: &std::path::Path) -> Vec<String> {
    vec![
        "--auth.multitenancy-enabled=true".into(),
        format!(
            "--blocks-storage.filesystem.dir={}",
            dir.join("bucket").display()
        ),
        "--blocks-storage.tsdb.ship-interval=1s".into(),
    ]
}

async fn flush(client: &reqwest::Client, h: &Hearth) -> serde_json::Value {
    let r = client
        .post(h.url("/ingester/flush"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("flush");
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_timestamp_stops_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let flags = multitenant(dir.path());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut h = start_hearth(&dir.path().join("data"), &flags).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = h.url("/api/v1/push");
    let now = now_ms();

    // A nanosecond timestamp beside a good sample: 400 naming the series and the
    // limit; the good sample is stored.
    let (status, body) = push_as(
        &client,
        &url,
        "team-a",
        vec![
            series(&[("__name__", "good"), ("job", "a")], &[(now, 1.0)]),
            series(
                &[("__name__", "nanos"), ("job", "a")],
                &[(now * 1_000_000, 1.0)],
            ),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("too far in the future"), "{body}");
    assert!(body.contains("nanos{job=\"a\"}"), "{body}");
    assert_eq!(
        single_value(&query_as(&client, &h, "team-a", "good", now).await),
        Some(1.0)
    );
    // Every later write of the same tenant and of another goes on.
    for (i, tenant) in ["team-a", "team-b", "team-a"].iter().enumerate() {
        let t = now + (i as i64 + 1) * 1000;
        let (status, body) = push_as(
            &client,
            &url,
            tenant,
            vec![series(&[("__name__", "good"), ("job", "a")], &[(t, 2.0)])],
        )
        .await;
        assert_eq!(status, 204, "{tenant}: {body}");
    }

    // Seconds sent as milliseconds (1970) on a fresh tenant: accepted, as any backfill
    // into an empty head; shipping visits the two ranges that hold data.
    let (status, body) = push_as(
        &client,
        &url,
        "team-c",
        vec![
            series(&[("__name__", "seconds")], &[(now / 1000, 1.0)]),
            series(&[("__name__", "millis")], &[(now, 1.0)]),
        ],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let flushed = flush(&client, &h).await;
    let c_blocks: Vec<&serde_json::Value> = flushed["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["tenant"] == "team-c")
        .collect();
    assert_eq!(c_blocks.len(), 2, "{flushed}");

    // team-a is now sealed above its newest sample; team-b's window did not move: a
    // sample half an hour old is still new data there.
    let (status, body) = push_as(
        &client,
        &url,
        "team-a",
        vec![series(
            &[("__name__", "good"), ("job", "a")],
            &[(now - 30 * MINUTE, 3.0)],
        )],
    )
    .await;
    assert_eq!(status, 400, "team-a is sealed there: {body}");
    assert!(body.contains("out of bounds"), "{body}");
    let (status, body) = push_as(
        &client,
        &url,
        "team-d",
        vec![series(
            &[("__name__", "other")],
            &[(now - 30 * MINUTE, 3.0)],
        )],
    )
    .await;
    assert_eq!(status, 204, "another tenant's window is its own: {body}");

    // SIGTERM stops the process within 10 s, saying what it does.
    unsafe {
        libc::kill(h.proc.pid(), libc::SIGTERM);
    }
    let asked = Instant::now();
    let exited = loop {
        if let Ok(Some(status)) = h.proc.child.try_wait() {
            break Some(status);
        }
        if asked.elapsed() > Duration::from_secs(10) {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exited.is_some(), "SIGTERM did not stop hearth within 10 s");
    let log = std::fs::read_to_string(dir.path().join("data.log")).unwrap();
    assert!(
        log.contains("nothing to flush"),
        "the shutdown says what it does"
    );
}

/// Samples older than what was shipped, inside the out-of-order window: stored (a
/// Prometheus back from hours offline resends exactly these), answered from the head,
/// shipped as an overlapping block, and merged by the compactor, each sample once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_samples_after_a_flush_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut flags = multitenant(dir.path());
    flags.extend([
        "--storage.tsdb.out-of-order-time-window=3h".to_string(),
        "--compactor.block-ranges=2h".to_string(),
        "--compactor.compaction-interval=1s".to_string(),
        "--compactor.downsampling-enabled=false".to_string(),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let h = start_hearth(&dir.path().join("data"), &flags).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = h.url("/api/v1/push");
    let now = now_ms() / MINUTE * MINUTE;
    let labels = [("__name__", "late_test"), ("job", "a")];
    // An hour, one sample a minute, then shipped.
    let hour: Vec<(i64, f64)> = (0..60)
        .map(|k| (now - 60 * MINUTE + k * MINUTE, 1.0))
        .collect();
    let (status, body) = push_as(&client, &url, "t", vec![series(&labels, &hour)]).await;
    assert_eq!(status, 204, "{body}");
    flush(&client, &h).await;
    // Late: between and before the shipped samples, an hour and a half back.
    let late: Vec<(i64, f64)> = (0..30)
        .map(|k| (now - 90 * MINUTE + k * MINUTE + 30_000, 1.0))
        .collect();
    let (status, body) = push_as(&client, &url, "t", vec![series(&labels, &late)]).await;
    assert_eq!(status, 204, "late samples inside the window: {body}");
    let total = |v: serde_json::Value| single_value(&v);
    let q = "count_over_time(late_test[3h])";
    assert_eq!(
        total(query_as(&client, &h, "t", q, now).await),
        Some(90.0),
        "from the head"
    );
    flush(&client, &h).await;
    assert_eq!(
        total(query_as(&client, &h, "t", q, now).await),
        Some(90.0),
        "from blocks"
    );
    // The compactor merges the overlapping blocks: the same answer, each sample once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&client, &h, "hearth_compactor_blocks_written_total").await < 1.0 {
        assert!(Instant::now() < deadline, "the compactor merged nothing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        total(query_as(&client, &h, "t", q, now).await),
        Some(90.0),
        "after compaction"
    );
    // Beyond the window: refused as too old.
    let (status, body) = push_as(
        &client,
        &url,
        "t",
        vec![series(&labels, &[(now - 5 * 60 * MINUTE, 1.0)])],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("too old"), "{body}");
}
