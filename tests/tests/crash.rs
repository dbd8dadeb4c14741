//! Durability: every sample Hearth acknowledged survives kill -9 at a random moment.
//!
//! Writers push remote-write batches concurrently and record what was acknowledged
//! (204). Hearth is killed with SIGKILL at a random point, restarted on the same
//! storage path, and every acknowledged sample must come back, bit for bit. Three
//! rounds, so recovery of a recovered log is covered too.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hearth_proto::prometheus as pb;
use rand::Rng;

const WRITERS: usize = 4;
const SERIES_PER_WRITER: usize = 20;

type Acked = Arc<Mutex<HashMap<(usize, usize), Vec<(i64, f64)>>>>;

async fn writer(
    url: String,
    w: usize,
    start_step: i64,
    base: i64,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> i64 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut step = start_step;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let t = base + step * 1000;
        let series: Vec<pb::TimeSeries> = (0..SERIES_PER_WRITER)
            .map(|s| pb::TimeSeries {
                labels: vec![
                    label("__name__", "crash_test_metric"),
                    label("writer", &w.to_string()),
                    label("series", &s.to_string()),
                ],
                samples: vec![pb::Sample {
                    value: (step * 1000 + s as i64) as f64 + 0.25,
                    timestamp: t,
                }],
                ..Default::default()
            })
            .collect();
        let body = write_request(series);
        let r = client
            .post(&url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .body(body)
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().as_u16() == 204 => {
                let mut a = acked.lock().unwrap();
                for s in 0..SERIES_PER_WRITER {
                    a.entry((w, s))
                        .or_default()
                        .push((t, (step * 1000 + s as i64) as f64 + 0.25));
                }
                step += 1;
            }
            Ok(resp) => panic!(
                "unexpected status {} from a live Hearth: {:?}",
                resp.status(),
                resp.text().await
            ),
            Err(_) => break, // killed
        }
    }
    step
}

async fn verify(h: &Hearth, acked: &Acked, base: i64) -> usize {
    let client = reqwest::Client::new();
    let acked = acked.lock().unwrap().clone();
    let mut checked = 0;
    for w in 0..WRITERS {
        // Raw samples through a range selector at a time after every write.
        let q = urlencode(&format!("crash_test_metric{{writer=\"{w}\"}}[7d]"));
        let t = (base + 10_000_000) as f64 / 1000.0;
        let v = get_json(
            &client,
            &h.url(&format!("/api/v1/query?query={q}&time={t}")),
        )
        .await;
        assert_eq!(v["status"], "success", "{v}");
        let mut got: HashMap<usize, Vec<(i64, f64)>> = HashMap::new();
        for s in v["data"]["result"].as_array().unwrap() {
            let series: usize = s["metric"]["series"].as_str().unwrap().parse().unwrap();
            let pts = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                    let v: f64 = p[1].as_str().unwrap().parse().unwrap();
                    (t, v)
                })
                .collect();
            got.insert(series, pts);
        }
        for s in 0..SERIES_PER_WRITER {
            let want = acked.get(&(w, s)).cloned().unwrap_or_default();
            let have: std::collections::HashMap<i64, f64> = got
                .get(&s)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .collect();
            for (t, v) in want {
                assert_eq!(
                    have.get(&t),
                    Some(&v),
                    "acknowledged sample writer={w} series={s} t={t} is lost"
                );
                checked += 1;
            }
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_samples_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked: Acked = Arc::new(Mutex::new(HashMap::new()));
    let base = 1_700_000_000_000i64;
    let mut next_step = vec![0i64; WRITERS];
    let mut rng = rand::rng();
    for round in 0..3 {
        // Small checkpoint threshold so kills also land around checkpoints and purges.
        let mut h = start_hearth(&data, &["--storage.tsdb.checkpoint-after-bytes=200000"]).await;
        if round > 0 {
            let n = verify(&h, &acked, base).await;
            eprintln!("round {round}: {n} acknowledged samples verified after restart");
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                tokio::spawn(writer(
                    h.url("/api/v1/push"),
                    w,
                    next_step[w],
                    base,
                    acked.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        let wait = rng.random_range(800..2500);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        h.proc.kill9();
        for (w, hd) in handles.into_iter().enumerate() {
            next_step[w] = hd.await.unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        eprintln!("round {round}: killed after {wait} ms; steps per writer {next_step:?}");
    }
    let h = start_hearth(&data, &[]).await;
    let n = verify(&h, &acked, base).await;
    eprintln!("final: {n} acknowledged samples verified");
    assert!(
        n > 1000,
        "too few samples were written to prove anything: {n}"
    );
}

/// A torn record at the log's tail (a crash mid-write) is cut away at the next start,
/// and the repair is reported, not hidden: `corruptionCount` of
/// /api/v1/status/runtimeinfo and `hearth_wal_corruptions_total`. The retention shown
/// there is the configured one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repaired_log_tail_and_retention_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flags = ["--compactor.blocks-retention-period=30d"];
    let client = reqwest::Client::new();
    let mut h = start_hearth(&data, &flags).await;
    let info = get_json(&client, &h.url("/api/v1/status/runtimeinfo")).await;
    assert_eq!(info["data"]["corruptionCount"], 0, "{info}");
    assert_eq!(info["data"]["storageRetention"], "30d", "{info}");
    let t = 1_700_000_000_000i64;
    let body = write_request(vec![pb::TimeSeries {
        labels: vec![label("__name__", "torn_tail_test")],
        samples: vec![pb::Sample {
            value: 1.0,
            timestamp: t,
        }],
        ..Default::default()
    }]);
    let (status, text) = push(
        &client,
        &h.url("/api/v1/push"),
        body,
        "application/x-protobuf",
    )
    .await;
    assert_eq!(status, 204, "{text}");
    h.proc.kill9();
    // Half a record at the end of the newest segment, as a crash mid-append leaves it.
    let mut segments: Vec<_> = std::fs::read_dir(data.join("raftlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let newest = segments.last().expect("a log segment");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(newest)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0x40, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3]).unwrap();
    drop(f);
    let h = start_hearth(&data, &flags).await;
    let info = get_json(&client, &h.url("/api/v1/status/runtimeinfo")).await;
    assert_eq!(info["data"]["corruptionCount"], 1, "{info}");
    assert_eq!(
        metric(&client, &h, "hearth_wal_corruptions_total").await,
        1.0
    );
    // The single process is a cluster of one: 4 shard groups, each one replica that
    // leads it, the one series in one of their heads.
    let cluster = get_json(&client, &h.url("/api/v1/status/cluster")).await;
    let groups = cluster["data"]["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 4, "{cluster}");
    let mut series = 0;
    for g in groups {
        let replicas = g["replicas"].as_array().unwrap();
        assert_eq!(replicas.len(), 1, "{g}");
        assert_eq!(replicas[0]["role"], "leader", "{g}");
        series += replicas[0]["headSeries"].as_u64().unwrap();
    }
    assert_eq!(series, 1, "{cluster}");
    // What was acknowledged before the torn record is all there.
    let q = urlencode("torn_tail_test");
    let v = get_json(
        &client,
        &h.url(&format!("/api/v1/query?query={q}&time={}", t / 1000 + 10)),
    )
    .await;
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
}
