//! A full disk under the write-ahead log: writes get 503 (retried by senders) while the
//! disk refuses them, writes succeed again once space is freed, and every write that
//! was acknowledged survives a kill -9 and restart; no write answered "not stored"
//! comes back. (The write whose log entry met the full disk is answered 503 with its
//! outcome unknown: its entry is written once space is back, as a Raft log must.)
//! The disk is a real tmpfs of a few MiB that the test fills.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use hearth_proto::prometheus as pb;

const SERIES: usize = 50;

/// One remote-write request of `SERIES` series with one sample each at step `i`.
fn request(i: i64, base: i64) -> Vec<u8> {
    write_request(
        (0..SERIES)
            .map(|s| pb::TimeSeries {
                labels: vec![
                    label("__name__", "disk_full_test"),
                    label("series", &s.to_string()),
                ],
                samples: vec![pb::Sample {
                    value: (i * 1000 + s as i64) as f64,
                    timestamp: base + i * 1000,
                }],
                ..Default::default()
            })
            .collect(),
    )
}

/// Steps stored in Hearth (any series), from a range selector over everything.
async fn stored_steps(client: &reqwest::Client, h: &Hearth, base: i64) -> BTreeMap<i64, usize> {
    let q = urlencode("disk_full_test[1d]");
    let t = (base + 3_600_000) as f64 / 1000.0;
    let v = get_json(client, &h.url(&format!("/api/v1/query?query={q}&time={t}"))).await;
    assert_eq!(v["status"], "success", "{v}");
    let mut steps = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let series: i64 = s["metric"]["series"].as_str().unwrap().parse().unwrap();
        for p in s["values"].as_array().unwrap() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            let v: f64 = p[1].as_str().unwrap().parse().unwrap();
            let i = (t - base) / 1000;
            assert_eq!(
                v,
                (i * 1000 + series) as f64,
                "value of series {series} at step {i}"
            );
            *steps.entry(i).or_insert(0) += 1;
        }
    }
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_answers_503_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The head's log lives on an 8 MiB tmpfs; the bucket and the process log elsewhere.
    let disk = TmpFs::mount(&data, 8 << 20);
    let bucket = format!(
        "--blocks-storage.filesystem.dir={}",
        dir.path().join("bucket").display()
    );
    let mut h = start_hearth(&data, &[&bucket]).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = h.url("/api/v1/push");
    let base = 1_700_000_000_000i64;
    let content = "application/x-protobuf";
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    let mut unknown = Vec::new();
    let mut i = 0i64;
    // 1. A disk with room: every write is stored.
    for _ in 0..40 {
        let (status, body) = push(&client, &url, request(i, base), content).await;
        assert_eq!(status, 204, "{body}");
        acked.push(i);
        i += 1;
    }
    // 2. The disk is full: writes are refused with 503 (a write may still fit in the
    //    last page of the segment; it is acknowledged and must survive like the rest).
    let (filler, filled) = disk.fill("filler");
    eprintln!("filled the tmpfs with {filled} bytes");
    for _ in 0..40 {
        let (status, body) = push(&client, &url, request(i, base), content).await;
        // Shown with a failure: what each write was answered while the disk was full.
        eprintln!("step {i}: {status} {body}");
        match status {
            204 => acked.push(i),
            503 => {
                assert!(
                    body.contains("write-ahead log"),
                    "503 names the log: {body}"
                );
                if body.contains("outcome is unknown") {
                    unknown.push(i)
                } else {
                    assert!(body.contains("not stored"), "{body}");
                    refused.push(i)
                }
            }
            other => panic!("a full disk must give 503 (retried), not {other}: {body}"),
        }
        i += 1;
    }
    assert!(
        refused.len() >= 30,
        "a full disk refused only {} of 40 writes ({} with their outcome unknown)",
        refused.len(),
        unknown.len()
    );
    assert!(
        unknown.len() <= 2,
        "{} writes with their outcome unknown",
        unknown.len()
    );
    let failures = metric(&client, &h, "hearth_wal_append_failures_total").await;
    assert!(
        failures >= refused.len() as f64,
        "{failures} append failures counted"
    );
    // 3. Space comes back: writes are stored again, straight away.
    std::fs::remove_file(&filler).unwrap();
    for _ in 0..40 {
        let (status, body) = push(&client, &url, request(i, base), content).await;
        assert_eq!(status, 204, "after space was freed: {body}");
        acked.push(i);
        i += 1;
    }
    // 4. kill -9 and restart: every acknowledged write is there, no refused one is.
    h.proc.kill9();
    let h = start_hearth(&data, &[&bucket]).await;
    let steps = stored_steps(&client, &h, base).await;
    for a in &acked {
        assert_eq!(steps.get(a), Some(&SERIES), "acknowledged step {a} lost");
    }
    for r in &refused {
        assert_eq!(
            steps.get(r),
            None,
            "step {r} was refused with 503 but is stored"
        );
    }
    for u in &unknown {
        let stored = steps.get(u).copied().unwrap_or(0);
        eprintln!(
            "step {u}, answered 503 with its outcome unknown: {stored} of {SERIES} series stored"
        );
    }
    eprintln!(
        "{} acknowledged writes ({} samples) survived; {} refused while the disk was full, {} with their outcome unknown",
        acked.len(),
        acked.len() * SERIES,
        refused.len(),
        unknown.len()
    );
    drop(h);
    drop(disk);
}
