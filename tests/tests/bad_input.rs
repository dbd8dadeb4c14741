//! Hostile input to the remote-write receiver: every kind of bad body gets the status
//! code the remote-write specification gives and a message, the valid rest of a request
//! is stored, and the server keeps serving.

mod common;

use common::*;
use hearth_proto::prometheus as pb;
use hearth_proto::write_v2;
use prost::Message;

const V1: &str = "application/x-protobuf";
const V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn good_series(name: &str, t: i64) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: vec![label("__name__", name), label("job", "bad-input")],
        samples: vec![pb::Sample {
            value: 42.0,
            timestamp: t,
        }],
        ..Default::default()
    }
}

async fn still_serving(client: &reqwest::Client, h: &Hearth) {
    let r = client
        .get(h.url("/-/ready"))
        .send()
        .await
        .expect("server still up");
    assert!(r.status().is_success());
}

async fn value_of(client: &reqwest::Client, h: &Hearth, q: &str, t: i64) -> Option<String> {
    let v = get_json(
        client,
        &h.url(&format!(
            "/api/v1/query?query={}&time={}",
            urlencode(q),
            t as f64 / 1000.0
        )),
    )
    .await;
    v["data"]["result"]
        .as_array()
        .unwrap()
        .first()
        .map(|s| s["value"][1].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let h = start_hearth(
        &dir.path().join("data"),
        &["--distributor.max-recv-msg-size=1048576"],
    )
    .await;
    let client = reqwest::Client::new();
    let url = h.url("/api/v1/push");
    let t = 1_700_000_000_000i64;

    // Garbage that is not snappy.
    let (s, m) = push(&client, &url, b"this is not snappy at all".to_vec(), V1).await;
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("snappy"), "{m}");
    still_serving(&client, &h).await;

    // Truncated snappy.
    let good = write_request(vec![good_series("ok_metric", t)]);
    let (s, m) = push(&client, &url, good[..good.len() / 2].to_vec(), V1).await;
    assert_eq!(s, 400, "{m}");

    // Valid snappy around truncated protobuf.
    let raw = pb::WriteRequest {
        timeseries: vec![good_series("ok_metric", t); 3],
        metadata: vec![],
    }
    .encode_to_vec();
    let (s, m) = push(&client, &url, snappy(&raw[..raw.len() - 7]), V1).await;
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("protobuf"), "{m}");

    // Wrong content type and encoding.
    let (s, m) = push(&client, &url, good.clone(), "application/json").await;
    assert_eq!(s, 415, "{m}");
    let (s, m) = push(
        &client,
        &url,
        good.clone(),
        "application/x-protobuf;proto=foo.Bar",
    )
    .await;
    assert_eq!(s, 415, "{m}");
    let r = client
        .post(&url)
        .header("Content-Type", V1)
        .header("Content-Encoding", "gzip")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);

    // Oversized: 2 MiB decompressed against a 1 MiB limit.
    let big: Vec<pb::TimeSeries> = (0..20000)
        .map(|i| pb::TimeSeries {
            labels: vec![
                label("__name__", "big_metric"),
                label("i", &format!("{i:0>60}")),
            ],
            samples: vec![pb::Sample {
                value: 1.0,
                timestamp: t,
            }],
            ..Default::default()
        })
        .collect();
    let body = write_request(big);
    let (s, m) = push(&client, &url, body, V1).await;
    assert_eq!(s, 413, "{m}");
    still_serving(&client, &h).await;

    // Invalid labels: 400 naming the series; the valid rest is stored.
    for (bad, why) in [
        (vec![label("job", "x")], "missing metric name"),
        (
            vec![label("__name__", "m"), label("bad-name", "x")],
            "invalid label name",
        ),
        (
            vec![label("__name__", "m"), label("a", "1"), label("a", "2")],
            "duplicate label name",
        ),
        (
            vec![label("__name__", "0starts_with_digit")],
            "invalid metric name",
        ),
    ] {
        let series = vec![
            pb::TimeSeries {
                labels: bad,
                samples: vec![pb::Sample {
                    value: 1.0,
                    timestamp: t,
                }],
                ..Default::default()
            },
            good_series(&format!("rest_is_stored_{}", why.replace(' ', "_")), t),
        ];
        let (s, m) = push(&client, &url, write_request(series), V1).await;
        assert_eq!(s, 400, "{why}: {m}");
        assert!(m.contains(why), "{why}: {m}");
        let name = format!("rest_is_stored_{}", why.replace(' ', "_"));
        assert_eq!(
            value_of(&client, &h, &name, t).await.as_deref(),
            Some("42"),
            "{why}: valid rest lost"
        );
    }

    // Out of order and too old: 400 naming the first offending series; the rest stored.
    let (s, _) = push(
        &client,
        &url,
        write_request(vec![good_series("ooo_metric", t + 10 * 3_600_000)]),
        V1,
    )
    .await;
    assert_eq!(s, 204);
    let (s, m) = push(
        &client,
        &url,
        write_request(vec![
            good_series("ooo_metric", t + 10 * 3_600_000 - 1000),
            good_series("fresh_metric", t + 10 * 3_600_000),
        ]),
        V1,
    )
    .await;
    assert_eq!(s, 400, "{m}");
    assert!(
        m.contains("out of order sample") && m.contains("ooo_metric"),
        "{m}"
    );
    assert_eq!(
        value_of(&client, &h, "fresh_metric", t + 10 * 3_600_000)
            .await
            .as_deref(),
        Some("42")
    );
    // Each shard group's head has its own appendable window, as each Prometheus head
    // does (an empty head takes any time): fresh samples in every group first.
    let fresh: Vec<_> = (0..32)
        .map(|i| good_series(&format!("fresh_metric_{i}"), t + 10 * 3_600_000))
        .collect();
    let (s, m) = push(&client, &url, write_request(fresh), V1).await;
    assert_eq!(s, 204, "{m}");
    let (s, m) = push(
        &client,
        &url,
        write_request(vec![good_series("ancient_metric", t)]),
        V1,
    )
    .await;
    assert_eq!(s, 400, "{m}");
    assert!(m.contains("out of bounds"), "{m}");

    // Remote-write 2.0 with its written-count headers.
    let req = write_v2::Request {
        symbols: vec![
            "".into(),
            "__name__".into(),
            "v2_metric".into(),
            "job".into(),
            "x".into(),
        ],
        timeseries: vec![write_v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![write_v2::Sample {
                value: 7.0,
                timestamp: t + 10 * 3_600_000,
            }],
            ..Default::default()
        }],
    };
    let r = client
        .post(&url)
        .header("Content-Type", V2)
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "2.0.0")
        .body(snappy(&req.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        r.headers()["X-Prometheus-Remote-Write-Samples-Written"],
        "1"
    );
    assert_eq!(
        r.headers()["X-Prometheus-Remote-Write-Histograms-Written"],
        "0"
    );
    assert_eq!(
        value_of(&client, &h, "v2_metric", t + 10 * 3_600_000)
            .await
            .as_deref(),
        Some("7")
    );

    // A v2 body sent as v1 and a v2 body with a bad symbol reference.
    let bad_ref = write_v2::Request {
        symbols: vec!["".into(), "__name__".into()],
        timeseries: vec![write_v2::TimeSeries {
            labels_refs: vec![1, 9],
            ..Default::default()
        }],
    };
    let r = client
        .post(&url)
        .header("Content-Type", V2)
        .header("Content-Encoding", "snappy")
        .body(snappy(&bad_ref.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // Random garbage of many shapes never takes the server down.
    let mut x: u64 = 0x9e37_79b9;
    for i in 0..200 {
        let len = (i * 37) % 3000;
        let body: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let body = if i % 2 == 0 { snappy(&body) } else { body };
        let (s, _) = push(&client, &url, body, if i % 3 == 0 { V2 } else { V1 }).await;
        // A garbage snappy header may declare a huge length: 413 before any allocation.
        assert!(s == 400 || s == 204 || s == 413, "status {s} for garbage");
    }
    still_serving(&client, &h).await;

    // Annotations travel beside the data, as Prometheus sends them.
    let v = get_json(
        &client,
        &h.url(&format!(
            "/api/v1/query?query={}&time={}",
            urlencode("quantile(2, v2_metric)"),
            (t + 10 * 3_600_000) as f64 / 1000.0
        )),
    )
    .await;
    assert_eq!(v["status"], "success", "{v}");
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("quantile value should be between 0 and 1"),
        "{v}"
    );

    // Statistics on request, inside data.
    let v = get_json(
        &client,
        &h.url(&format!(
            "/api/v1/query?query=v2_metric&stats=all&time={}",
            (t + 10 * 3_600_000) as f64 / 1000.0
        )),
    )
    .await;
    assert!(
        v["data"]["stats"]["timings"]["execTotalTime"].is_number(),
        "{v}"
    );
    assert_eq!(
        v["data"]["stats"]["samples"]["totalQueryableSamples"], 1,
        "{v}"
    );
    // A query past its timeout is stopped (503 timeout), and the server stays healthy.
    let heavy = urlencode("count(count_over_time(v2_metric[60d:1s]))");
    let r = client
        .get(h.url(&format!("/api/v1/query?query={heavy}&timeout=1ms")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errorType"], "timeout", "{v}");
    // A subquery too large to hold is refused before it allocates anything.
    let huge = urlencode("count_over_time(v2_metric[10y:1ms])");
    let v = get_json(&client, &h.url(&format!("/api/v1/query?query={huge}"))).await;
    assert_eq!(v["errorType"], "execution", "{v}");
    still_serving(&client, &h).await;

    // Deeply nested queries: up to the limit they are answered, past it refused with
    // bad_data; never a stack overflow. Every shape that nests the tree is tried.
    type Shape = fn(usize) -> String;
    let shapes: [(&str, Shape); 6] = [
        ("parentheses", |n| {
            format!("{}v2_metric{}", "(".repeat(n), ")".repeat(n))
        }),
        ("calls", |n| {
            format!("{}v2_metric{}", "abs(".repeat(n), ")".repeat(n))
        }),
        ("aggregations", |n| {
            format!("{}v2_metric{}", "sum(".repeat(n), ")".repeat(n))
        }),
        ("unary minus", |n| format!("{}v2_metric", "-".repeat(n))),
        ("power chain", |n| format!("v2_metric{}", " ^ 1".repeat(n))),
        ("or chain", |n| {
            format!("v2_metric{}", " or v2_metric".repeat(n))
        }),
    ];
    for (name, shape) in shapes {
        let r = client
            .post(h.url("/api/v1/query"))
            .form(&[("query", shape(450))])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{name} at 450 levels");
        let r = client
            .post(h.url("/api/v1/query"))
            .form(&[("query", shape(600))])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{name} at 600 levels");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(
            v["error"].as_str().unwrap().contains("nested too deeply"),
            "{name}: {v}"
        );
    }
    still_serving(&client, &h).await;

    // Query API errors in Prometheus' shape.
    let v = get_json(&client, &h.url("/api/v1/query?query=sum(")).await;
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    let v = get_json(
        &client,
        &h.url("/api/v1/query_range?query=up&start=10&end=0&step=1"),
    )
    .await;
    assert_eq!(v["errorType"], "bad_data");
}
