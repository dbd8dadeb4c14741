//! `POST /api/v1/admin/tsdb/delete_series` as Prometheus answers it: off unless
//! `--web.enable-admin-api` (500 `unavailable`, Prometheus 2.42's answer), `match[]`
//! required, 204 once the deletion is durable. Deleted samples leave every answer at
//! once, stay gone through a kill -9 and restart, through shipping to blocks, and after
//! the compactor has rewritten the blocks without them.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hearth_proto::prometheus as pb;
use serde_json::Value;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// An hour of `jobs_up{job}` for jobs a, b, c: one sample a minute.
fn hour(start: i64) -> Vec<pb::TimeSeries> {
    ["a", "b", "c"]
        .iter()
        .map(|job| pb::TimeSeries {
            labels: vec![label("__name__", "jobs_up"), label("job", job)],
            samples: (0..60)
                .map(|k| pb::Sample {
                    value: k as f64,
                    timestamp: start + k * MINUTE,
                })
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// Samples per job over the four hours, and the series seen in the deleted span.
async fn state(client: &reqwest::Client, h: &Hearth, end: i64, del: (i64, i64)) -> Value {
    let q = h.url(&format!(
        "/api/v1/query?query={}&time={}",
        urlencode("sort(count_over_time(jobs_up[4h]))"),
        (end - 1) as f64 / 1000.0
    ));
    let counts = get_json(client, &q).await;
    assert_eq!(counts["status"], "success", "{counts}");
    let mid = h.url(&format!(
        "/api/v1/query?query={}&time={}",
        urlencode("count(jobs_up)"),
        (del.0 + del.1) as f64 / 2000.0
    ));
    let in_span = get_json(client, &mid).await;
    serde_json::json!({"counts": counts["data"], "in_span": in_span["data"]["result"][0]["value"][1]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_series_stay_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let bucket = format!(
        "--blocks-storage.filesystem.dir={}",
        dir.path().join("bucket").display()
    );

    // Off by default, as in Prometheus.
    let off = start_hearth(&dir.path().join("off"), &[&bucket]).await;
    let r = client
        .post(off.url("/api/v1/admin/tsdb/delete_series?match[]=up"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status":"error","errorType":"unavailable","error":"admin APIs disabled"})
    );
    drop(off);

    let flags = [
        bucket.as_str(),
        "--web.enable-admin-api",
        "--blocks-storage.tsdb.ship-interval=24h",
        "--compactor.block-ranges=2h",
        "--compactor.downsampling-enabled=false",
        "--compactor.compaction-interval=1s",
    ];
    let data = dir.path().join("on");
    let mut h = start_hearth(&data, &flags).await;
    let end = now_ms() / (2 * HOUR) * (2 * HOUR) - 2 * HOUR;
    let start = end - 4 * HOUR;
    for k in 0..4 {
        let (status, body) = push(
            &client,
            &h.url("/api/v1/push"),
            write_request(hour(start + k * HOUR)),
            "application/x-protobuf",
        )
        .await;
        assert_eq!(status, 204, "{body}");
    }
    let url = h.url("/api/v1/admin/tsdb/delete_series");
    // Bad requests, with Prometheus' answers.
    assert_eq!(
        client.get(&url).send().await.unwrap().status().as_u16(),
        405
    );
    let r = client.post(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "no match[] parameter provided");
    let r = client
        .post(format!("{url}?match[]=%7B"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // Delete job b from 1 h to 2.5 h into the data (a form body, as promtool sends).
    let del = (start + HOUR, start + 150 * MINUTE);
    let r = client
        .post(&url)
        .form(&[
            ("match[]", "jobs_up{job=\"b\"}".to_string()),
            ("start", format!("{}", del.0 as f64 / 1000.0)),
            ("end", format!("{}", del.1 as f64 / 1000.0)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let after = state(&client, &h, end, del).await;
    // b lost the 91 samples of [1 h, 2.5 h]; a and c keep their 240.
    let counts: Vec<(String, String)> = after["counts"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["job"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            ("b".to_string(), "149".to_string()),
            ("a".to_string(), "240".to_string()),
            ("c".to_string(), "240".to_string())
        ]
    );
    assert_eq!(after["in_span"], "2", "{after}");

    // Durable: kill -9 and restart on the same disk and bucket.
    h.proc.kill9();
    let mut h = start_hearth(&data, &flags).await;
    assert_eq!(state(&client, &h, end, del).await, after, "after kill -9");

    // Shipped to blocks, then rewritten by the compactor: the same answers.
    let r = client.post(h.url("/ingester/flush")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(state(&client, &h, end, del).await, after, "from blocks");
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&client, &h, "hearth_compactor_blocks_written_total").await < 1.0 {
        assert!(Instant::now() < deadline, "the compactor rewrote no block");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        state(&client, &h, end, del).await,
        after,
        "after the rewrite"
    );
    h.proc.terminate();
}

/// Samples of `jobs_up` per job over [from, to], from a range selector.
async fn samples_per_job(
    client: &reqwest::Client,
    h: &Hearth,
    to: i64,
    window_h: i64,
) -> Vec<(String, usize)> {
    let q = h.url(&format!(
        "/api/v1/query?query={}&time={}",
        urlencode(&format!("jobs_up[{window_h}h]")),
        to as f64 / 1000.0
    ));
    let v = get_json(client, &q).await;
    assert_eq!(v["status"], "success", "{v}");
    let mut out: Vec<(String, usize)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["job"].as_str().unwrap().to_string(),
                r["values"].as_array().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `delete_series` without `end` deletes what the series hold when it is made, as
/// Prometheus clamps tombstones to the data: samples pushed afterwards, to a deleted
/// series or to a new series the matchers also match, stay, in the head, after a kill
/// -9 and once shipped to blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_spares_samples_written_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let flags = [
        format!(
            "--blocks-storage.filesystem.dir={}",
            dir.path().join("bucket").display()
        ),
        "--web.enable-admin-api".into(),
        "--blocks-storage.tsdb.ship-interval=24h".into(),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let data = dir.path().join("data");
    let mut h = start_hearth(&data, &flags).await;
    let start = now_ms() / HOUR * HOUR - 3 * HOUR;
    let pushed = |series: Vec<pb::TimeSeries>| {
        let (client, url) = (client.clone(), h.url("/api/v1/push"));
        async move {
            let (status, body) = push(
                &client,
                &url,
                write_request(series),
                "application/x-protobuf",
            )
            .await;
            assert_eq!(status, 204, "{body}");
        }
    };
    pushed(hour(start)).await;
    // No start, no end: "all time".
    let r = client
        .post(h.url("/api/v1/admin/tsdb/delete_series"))
        .form(&[("match[]", "jobs_up{job=~\"b|c|d\"}")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // Written after the request: the next hour of every job, and a new job d.
    pushed(hour(start + HOUR)).await;
    pushed(
        hour(start + HOUR)
            .into_iter()
            .map(|mut s| {
                s.labels[1].value = "d".into();
                s
            })
            .take(1)
            .collect(),
    )
    .await;
    let want = vec![
        ("a".to_string(), 120),
        ("b".to_string(), 60),
        ("c".to_string(), 60),
        ("d".to_string(), 60),
    ];
    let to = start + 2 * HOUR;
    assert_eq!(
        samples_per_job(&client, &h, to, 3).await,
        want,
        "from the head"
    );
    h.proc.kill9();
    let h = start_hearth(&data, &flags).await;
    assert_eq!(
        samples_per_job(&client, &h, to, 3).await,
        want,
        "after kill -9"
    );
    let r = client.post(h.url("/ingester/flush")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        samples_per_job(&client, &h, to, 3).await,
        want,
        "from blocks"
    );
}
