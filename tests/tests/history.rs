//! History in the bucket: three days backfilled by remote-write are cut into blocks and
//! uploaded to a real S3 protocol server (moto); the answers from the head, from the
//! blocks after a flush, and from a fresh Hearth whose local storage was wiped are
//! identical. A second run checks that the head ships on its own (1.5 block ranges).

mod common;

use std::time::{Duration, Instant};

use common::*;
use hearth_proto::prometheus as pb;
use serde_json::Value;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAYS: i64 = 3;
/// The single process' shard groups; the 24 series of `backfill` land in each of them,
/// and each group ships its own blocks.
const GROUPS: usize = 4;

/// The 2 h ranges among `blocks` (flush answers), checking that each range has one
/// block from every shard group and no group shipped a range twice.
fn block_ranges(blocks: &[Value]) -> usize {
    let mut per_range = std::collections::BTreeMap::<i64, Vec<u64>>::new();
    for b in blocks {
        per_range
            .entry(b["minTime"].as_i64().unwrap())
            .or_default()
            .push(b["shardGroup"].as_u64().unwrap());
    }
    for (t, groups) in &mut per_range {
        groups.sort_unstable();
        assert_eq!(
            groups.len(),
            GROUPS,
            "blocks of the range at {t}: groups {groups:?}"
        );
        groups.dedup();
        assert_eq!(
            groups.len(),
            GROUPS,
            "a group shipped the range at {t} twice"
        );
    }
    per_range.len()
}

/// One hour of 24 series (a counter and a gauge per instance), one sample a minute.
fn hour_of_data(start: i64) -> Vec<pb::TimeSeries> {
    let mut out = Vec::new();
    for job in ["api", "db", "web"] {
        for inst in 0..4 {
            for (name, counter) in [("http_requests_total", true), ("temperature", false)] {
                let samples = (0..60)
                    .map(|k| {
                        let t = start + k * MINUTE + inst * 1_000;
                        let step = (t / MINUTE) as f64;
                        let v = if counter {
                            step * (inst + 1) as f64 % 50_000.0
                        } else {
                            20.0 + ((step / 37.0).sin() * 5.0) + inst as f64
                        };
                        pb::Sample {
                            value: v,
                            timestamp: t,
                        }
                    })
                    .collect();
                out.push(pb::TimeSeries {
                    labels: vec![
                        label("__name__", name),
                        label("instance", &format!("host-{inst}")),
                        label("job", job),
                    ],
                    samples,
                    ..Default::default()
                });
            }
        }
    }
    out
}

async fn backfill(client: &reqwest::Client, h: &Hearth, start: i64, end: i64) {
    let mut t = start;
    while t < end {
        let (status, body) = push(
            client,
            &h.url("/api/v1/push"),
            write_request(hour_of_data(t)),
            "application/x-protobuf",
        )
        .await;
        assert_eq!(status, 204, "{body}");
        t += HOUR;
    }
}

/// The answers a user would look at over the three days.
async fn answers(
    client: &reqwest::Client,
    h: &Hearth,
    start: i64,
    end: i64,
) -> Vec<(String, Value)> {
    let (s, e) = (start as f64 / 1000.0, end as f64 / 1000.0);
    let queries = [
        ("sum by (job) (rate(http_requests_total[5m]))", 3600),
        ("max_over_time(temperature[1h])", 7200),
        ("count(temperature)", 1800),
        ("avg by (instance) (temperature)", 900),
        ("increase(http_requests_total{job=\"db\"}[2h])", 10800),
    ];
    let mut out = Vec::new();
    for (q, step) in queries {
        // Raw samples: these answers must agree exactly wherever the blocks are.
        let url = h.url(&format!(
            "/api/v1/query_range?query={}&start={s}&end={e}&step={step}&max_source_resolution=0s",
            urlencode(q)
        ));
        let v = get_json(client, &url).await;
        assert_eq!(v["status"], "success", "{q}: {v}");
        assert!(
            !v["data"]["result"].as_array().unwrap().is_empty(),
            "{q}: empty"
        );
        out.push((q.to_string(), v["data"].clone()));
    }
    for at in [start + 5 * HOUR + 17, start + 30 * HOUR, end - 1_000] {
        let url = h.url(&format!(
            "/api/v1/query?query={}&time={}",
            urlencode("temperature"),
            at as f64 / 1000.0
        ));
        let v = get_json(client, &url).await;
        out.push((format!("temperature @ {at}"), v["data"].clone()));
    }
    let url = h.url(&format!(
        "/api/v1/series?match[]={}&start={s}&end={e}",
        urlencode("{job=\"web\"}")
    ));
    out.push((
        "series".into(),
        get_json(client, &url).await["data"].clone(),
    ));
    let url = h.url(&format!("/api/v1/label/instance/values?start={s}&end={e}"));
    out.push((
        "instances".into(),
        get_json(client, &url).await["data"].clone(),
    ));
    out
}

/// A range query's series (labels -> points) and the samples it read (query stats),
/// at `max_source_resolution` `res`, step 1 h.
async fn range_query(
    client: &reqwest::Client,
    h: &Hearth,
    q: &str,
    start: i64,
    end: i64,
    res: &str,
) -> (std::collections::BTreeMap<String, Vec<(f64, f64)>>, u64) {
    let url = h.url(&format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=3600&max_source_resolution={res}&stats=all",
        urlencode(q),
        start as f64 / 1000.0,
        end as f64 / 1000.0
    ));
    let v = get_json(client, &url).await;
    assert_eq!(v["status"], "success", "{q}: {v}");
    let series = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let pts = r["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap(),
                        p[1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect();
            (r["metric"].to_string(), pts)
        })
        .collect();
    let samples = v["data"]["stats"]["samples"]["totalQueryableSamples"]
        .as_u64()
        .unwrap();
    (series, samples)
}

/// Instant vectors come in storage order, which Prometheus leaves unspecified (the
/// head's order differs from a block's): compare them sorted by labels.
fn normalized(v: &Value) -> Value {
    let mut v = v.clone();
    if v["resultType"] == "vector" {
        if let Some(r) = v["result"].as_array_mut() {
            r.sort_by_key(|x| x["metric"].to_string());
        }
    }
    v
}

fn assert_same(a: &[(String, Value)], b: &[(String, Value)], what: &str) {
    assert_eq!(a.len(), b.len());
    for ((q, x), (_, y)) in a.iter().zip(b) {
        assert_eq!(normalized(x), normalized(y), "{what}: {q}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_losing_every_ingester() {
    let Some(moto) = start_moto(0, "history").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let end = now_ms() / (2 * HOUR) * (2 * HOUR);
    let start = end - DAYS * 24 * HOUR;
    let mut flags = moto.flags("history");
    // No shipping on its own in this run: the flush does it, so the head's answers can
    // be taken first.
    flags.push("--blocks-storage.tsdb.ship-interval=24h".into());
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();

    let mut h = start_hearth(&dir.path().join("first"), &flag_refs).await;
    backfill(&client, &h, start, end).await;
    let from_head = answers(&client, &h, start, end).await;

    let r = client.post(h.url("/ingester/flush")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let flushed: Value = r.json().await.unwrap();
    let blocks = flushed["blocks"].as_array().unwrap();
    // Three days of 2 h blocks, one per shard group.
    assert_eq!(block_ranges(blocks) as i64, DAYS * 12, "{flushed}");
    let samples: u64 = blocks
        .iter()
        .map(|b| b["numSamples"].as_u64().unwrap())
        .sum();
    assert_eq!(samples as i64, DAYS * 24 * 60 * 24);
    // /metrics counts what was shipped and what the store serves.
    let metrics = get_text(&client, &h.url("/metrics")).await;
    for line in [
        "hearth_ingester_shipped_blocks_total 144",
        "hearth_ingester_shipped_samples_total 103680",
        "hearth_ingester_ship_failures_total 0",
        "hearth_bucket_store_blocks 144",
        // Everything was shipped: the head collected all 24 series (head GC).
        "hearth_head_series 0",
        "hearth_head_series_removed_total 24",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in /metrics");
    }
    let from_blocks = answers(&client, &h, start, end).await;
    assert_same(&from_head, &from_blocks, "head vs blocks");

    // Lose the ingester and its disk; a new one on the same bucket answers the same.
    h.proc.kill9();
    std::fs::remove_dir_all(dir.path().join("first")).unwrap();
    let h2 = start_hearth(&dir.path().join("second"), &flag_refs).await;
    let from_bucket = answers(&client, &h2, start, end).await;
    assert_same(
        &from_head,
        &from_bucket,
        "head vs a fresh Hearth on the bucket",
    );

    // Its compactor (which runs at start) merges the 2 h blocks into 12 h and 24 h ones
    // and marks the originals; the answers stay the same.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (0, 0);
    loop {
        let now = bucket_state(&client, moto.port, "history").await;
        // Done once blocks were merged and the bucket stopped changing.
        if now.0 < 36 && now == last {
            break;
        }
        last = now;
        assert!(
            Instant::now() < deadline,
            "not compacted: {now:?} (live, marked)"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let after_compaction = answers(&client, &h2, start, end).await;
    assert_same(&from_head, &after_compaction, "head vs compacted blocks");

    // The compactor also wrote 5 m and 1 h blocks for the two whole days; queries that
    // accept them read far fewer samples and agree with raw within each aggregate's
    // meaning.
    // avg_over_time over a range that holds both 5 m points and raw samples (a day
    // that is downsampled next to one that is not) weighs a 5 m point like one sample,
    // as Thanos does; such steps are left out for it.
    // The steps start an hour after the first sample: a 5 m point is stamped with the
    // last sample of its window (as Thanos does), so when the first day is downsampled
    // (a run between 00:00 and 02:00 UTC) a step at the very first sample sees a raw
    // sample and no downsampled point yet.
    let first_step = start + HOUR;
    for (q, tolerance, window_s) in [
        ("max_over_time(temperature[1h])", 0.5, 0.0),
        ("sum by (job) (rate(http_requests_total[1h]))", 0.1, 0.0),
        ("avg_over_time(temperature[2h])", 0.5, 7200.0),
    ] {
        let (raw, raw_samples) = range_query(&client, &h2, q, first_step, end, "0s").await;
        let (ds, ds_samples) = range_query(&client, &h2, q, first_step, end, "auto").await;
        // Two of the three days at 5 m instead of one sample a minute: under half.
        assert!(
            ds_samples * 2 < raw_samples,
            "{q}: {ds_samples} samples read downsampled vs {raw_samples} raw"
        );
        assert_eq!(raw.len(), ds.len(), "{q}: series");
        for (labels, points) in &raw {
            let other = &ds[labels];
            assert_eq!(points.len(), other.len(), "{q} {labels}: steps");
            for ((t, a), (u, b)) in points.iter().zip(other) {
                assert_eq!(t, u);
                if window_s > 0.0 && t.rem_euclid(86_400.0) < window_s {
                    continue;
                }
                // Absolute for gauges (amplitude 5), relative for rates.
                let off = if q.contains("rate") {
                    (a - b).abs() / a.abs().max(1e-9)
                } else {
                    (a - b).abs()
                };
                assert!(
                    off <= tolerance,
                    "{q} {labels} at {t}: raw {a} vs downsampled {b}"
                );
            }
        }
    }
    let r =
        client
            .get(h2.url(
                "/api/v1/query_range?query=up&start=0&end=60&step=15&max_source_resolution=soon",
            ))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status().as_u16(), 400, "a bad max_source_resolution");
    drop(h2);
    drop(moto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_ships_old_ranges_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let bucket = dir.path().join("bucket");
    let h = start_hearth(
        &dir.path().join("data"),
        &[
            &format!("--blocks-storage.filesystem.dir={}", bucket.display()),
            "--blocks-storage.tsdb.ship-interval=1s",
        ],
    )
    .await;
    let end = now_ms() / (2 * HOUR) * (2 * HOUR);
    let start = end - 12 * HOUR;
    backfill(&client, &h, start, end).await;
    let before = answers(&client, &h, start, end).await;
    // Everything older than 1.5 block ranges behind the newest sample is shipped: five
    // whole 2 h blocks of the twelve hours (the sixth ends less than an hour back).
    // Each range is shipped by every shard group.
    let deadline = Instant::now() + Duration::from_secs(60);
    let count = || {
        std::fs::read_dir(bucket.join("anonymous"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("meta.json").exists())
                    .count()
            })
            .unwrap_or(0)
    };
    while count() < 5 * GROUPS {
        assert!(Instant::now() < deadline, "only {} blocks shipped", count());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(), 5 * GROUPS);
    let mut ranges: Vec<(i64, u64)> = std::fs::read_dir(bucket.join("anonymous"))
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path().join("meta.json")).ok())
        .map(|b| {
            let m: Value = serde_json::from_slice(&b).unwrap();
            (
                m["minTime"].as_i64().unwrap(),
                m["hearth"]["shardGroup"].as_u64().unwrap(),
            )
        })
        .collect();
    ranges.sort_unstable();
    ranges.dedup();
    assert_eq!(
        ranges.len(),
        5 * GROUPS,
        "a group shipped a range twice: {ranges:?}"
    );
    let after = answers(&client, &h, start, end).await;
    assert_same(&before, &after, "before vs after shipping");
}

/// (committed blocks not marked for deletion, blocks marked), by listing through S3.
async fn bucket_state(client: &reqwest::Client, port: u16, bucket: &str) -> (usize, usize) {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut url = format!("http://127.0.0.1:{port}/{bucket}?list-type=2&prefix=anonymous/");
        if let Some(t) = &token {
            url.push_str(&format!("&continuation-token={}", urlencode(t)));
        }
        let body = client.get(url).send().await.unwrap().text().await.unwrap();
        for part in body.split("<Key>").skip(1) {
            keys.push(part.split("</Key>").next().unwrap().to_string());
        }
        token = body.split("<NextContinuationToken>").nth(1).map(|t| {
            t.split("</NextContinuationToken>")
                .next()
                .unwrap()
                .to_string()
        });
        if token.is_none() {
            break;
        }
    }
    let block = |k: &str| k.split('/').nth(1).unwrap_or("").to_string();
    let metas: std::collections::BTreeSet<String> = keys
        .iter()
        .filter(|k| k.ends_with("/meta.json"))
        .map(|k| block(k))
        .collect();
    let marks: std::collections::BTreeSet<String> = keys
        .iter()
        .filter(|k| k.ends_with("/deletion-mark.json"))
        .map(|k| block(k))
        .collect();
    (metas.difference(&marks).count(), marks.len())
}

/// The blocks in the bucket, by listing it through S3 (moto).
async fn bucket_blocks(client: &reqwest::Client, port: u16, bucket: &str) -> usize {
    let r = client
        .get(format!(
            "http://127.0.0.1:{port}/{bucket}?list-type=2&prefix=anonymous/"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    r.matches("/meta.json</Key>").count()
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: sending a signal to a child process we started.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// The bucket stops answering for a minute while writes go on: every write is
/// acknowledged meanwhile, shipping resumes once the bucket is back, and a fresh Hearth
/// on the bucket finds every sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_outage_loses_nothing() {
    let Some(moto) = start_moto(0, "outage").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut flags = moto.flags("outage");
    flags.push("--blocks-storage.tsdb.ship-interval=1s".into());
    let flag_refs: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut h = start_hearth(&dir.path().join("first"), &flag_refs).await;
    let end = now_ms() / (2 * HOUR) * (2 * HOUR);
    let start = end - 12 * HOUR;

    backfill(&client, &h, start, start + 6 * HOUR).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while bucket_blocks(&client, moto.port, "outage").await < 2 {
        assert!(
            Instant::now() < deadline,
            "the first blocks were not shipped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The bucket hangs (SIGSTOP: connections open, nothing answers) for a minute.
    signal(moto.proc.pid(), libc::SIGSTOP);
    let stopped = Instant::now();
    backfill(&client, &h, start + 6 * HOUR, end).await;
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(stopped.elapsed())).await;
    signal(moto.proc.pid(), libc::SIGCONT);

    let r = client.post(h.url("/ingester/flush")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        bucket_blocks(&client, moto.port, "outage").await,
        6 * GROUPS
    );

    // Every sample is in the bucket: a fresh Hearth there counts them all.
    h.proc.kill9();
    let h2 = start_hearth(&dir.path().join("second"), &flag_refs).await;
    let q = urlencode(
        "sum(count_over_time(temperature[12h])) + sum(count_over_time(http_requests_total[12h]))",
    );
    let v = get_json(
        &client,
        &h2.url(&format!(
            "/api/v1/query?query={q}&time={}",
            (end - 1) as f64 / 1000.0
        )),
    )
    .await;
    assert_eq!(v["data"]["result"][0]["value"][1], "17280", "{v}");
    drop(h2);
    drop(moto);
}

/// An hour of a metric no other query reads, so it can be shipped late.
fn late_data(start: i64) -> Vec<pb::TimeSeries> {
    (0..3)
        .map(|i| pb::TimeSeries {
            labels: vec![
                label("__name__", "late_metric"),
                label("host", &format!("late-{i}")),
                label("job", "late"),
            ],
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

/// History from store gateways: the compactor role writes the bucket index, two
/// store gateways split the blocks by the ring and are ready from the index, a fresh
/// Hearth reads history from them over gRPC and answers exactly as the head did. Blocks
/// shipped after the gateways synced stay answerable; a gateway lost fails queries
/// loudly (one replica) until it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_gateways_serve_history_over_grpc() {
    let Some(moto) = start_moto(0, "gateways").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let end = now_ms() / (2 * HOUR) * (2 * HOUR);
    let start = end - DAYS * 24 * HOUR;
    let mut base = moto.flags("gateways");
    // No merging in this run (the blocks stay the 2 h ones the ingester shipped) and
    // no shipping but by flush.
    base.push("--compactor.block-ranges=2h".into());
    base.push("--compactor.downsampling-enabled=false".into());
    base.push("--blocks-storage.tsdb.ship-interval=24h".into());
    let with = |extra: &[String]| -> Vec<String> { base.iter().chain(extra).cloned().collect() };

    let first = with(&[]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let mut a = start_hearth(&dir.path().join("a"), &first).await;
    backfill(&client, &a, start, end).await;
    let from_head = answers(&client, &a, start, end).await;
    let r = client.post(a.url("/ingester/flush")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    a.proc.kill9();

    // The compactor role writes the tenant's bucket index.
    let c_flags = with(&["--target=compactor".into()]);
    let c_refs: Vec<&str> = c_flags.iter().map(String::as_str).collect();
    let mut c = start_hearth(&dir.path().join("c"), &c_refs).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&client, &c, "hearth_compactor_bucket_index_writes_total").await < 1.0 {
        assert!(Instant::now() < deadline, "no bucket index written");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.proc.terminate();

    // Two store gateways, one replica of each block.
    let grpc = [free_port(), free_port()];
    let members = format!(
        "--store-gateway.sharding-ring.members=gw-1=127.0.0.1:{},gw-2=127.0.0.1:{}",
        grpc[0], grpc[1]
    );
    let gateway_flags = |i: usize| {
        with(&[
            "--target=store-gateway".into(),
            members.clone(),
            format!("--store-gateway.sharding-ring.instance-id=gw-{}", i + 1),
            format!("--server.grpc-listen-address=127.0.0.1:{}", grpc[i]),
            // They sync once at start in this test: later blocks are not seen by them.
            "--blocks-storage.bucket-store.sync-interval=1h".into(),
        ])
    };
    let mut gateways = Vec::new();
    for i in 0..2 {
        let f = gateway_flags(i);
        let f: Vec<&str> = f.iter().map(String::as_str).collect();
        let t = Instant::now();
        let g = start_hearth(&dir.path().join(format!("gw-{}", i + 1)), &f).await;
        eprintln!("store gateway gw-{} ready in {:?}", i + 1, t.elapsed());
        gateways.push(g);
    }
    let mut held = 0.0;
    for g in &gateways {
        let n = metric(&client, g, "hearth_bucket_store_blocks").await;
        assert!(n > 0.0, "a gateway holds no block");
        held += n;
        // Ready from the index alone: no labels file read yet.
        assert_eq!(
            metric(&client, g, "hearth_bucket_store_blocks_loaded_total").await,
            0.0
        );
    }
    assert_eq!(held, 36.0, "each of the 36 blocks on exactly one gateway");

    let b_flags = with(std::slice::from_ref(&members));
    let b_refs: Vec<&str> = b_flags.iter().map(String::as_str).collect();
    let b = start_hearth(&dir.path().join("b"), &b_refs).await;
    let from_gateways = answers(&client, &b, start, end).await;
    assert_same(
        &from_head,
        &from_gateways,
        "head vs store gateways over gRPC",
    );
    for g in &gateways {
        assert!(metric(&client, g, "hearth_bucket_store_blocks_loaded_total").await > 0.0);
    }

    // Blocks shipped now are not known to the gateways (they sync hourly here); the
    // ingester keeps answering for them.
    for h in (1..=4).rev() {
        let (status, body) = push(
            &client,
            &b.url("/api/v1/push"),
            write_request(late_data(end - h * HOUR)),
            "application/x-protobuf",
        )
        .await;
        assert_eq!(status, 204, "{body}");
    }
    let late_q = b.url(&format!(
        "/api/v1/query?query={}&time={}",
        urlencode("sum(count_over_time(late_metric[4h]))"),
        (end - 1) as f64 / 1000.0
    ));
    let before = get_json(&client, &late_q).await;
    assert_eq!(before["data"]["result"][0]["value"][1], "720", "{before}");
    let r = client.post(b.url("/ingester/flush")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let after = get_json(&client, &late_q).await;
    assert_eq!(before["data"], after["data"], "shipped blocks unanswered");
    let mut held = 0.0;
    for g in &gateways {
        held += metric(&client, g, "hearth_bucket_store_blocks").await;
    }
    assert_eq!(
        held, 36.0,
        "the gateways should not have synced the new blocks yet"
    );

    // A gateway lost: with one replica its blocks are missing, and the query says so
    // instead of answering short.
    gateways[1].proc.kill9();
    let q = b.url(&format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=3600",
        urlencode("count(temperature)"),
        start as f64 / 1000.0,
        end as f64 / 1000.0
    ));
    let r = client.get(&q).send().await.unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "error", "{v}");
    assert!(status >= 500, "{status}");
    assert!(v["error"].as_str().unwrap().contains("gw-2"), "{v}");
    // Back: whole answers again.
    let f = gateway_flags(1);
    let f: Vec<&str> = f.iter().map(String::as_str).collect();
    gateways[1] = start_hearth(&dir.path().join("gw-2b"), &f).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get_json(&client, &q).await;
        if v["status"] == "success" {
            break;
        }
        assert!(Instant::now() < deadline, "gw-2 back but queries fail: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let again = answers(&client, &b, start, end).await;
    assert_same(&from_head, &again, "head vs gateways after a restart");
    drop(b);
    drop(gateways);
    drop(moto);
}
