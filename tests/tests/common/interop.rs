//! The interop scenario with a real Prometheus (Debian package `prometheus`), shared by
//! the single-process test and the local cluster's: it scrapes itself every second and
//! remote-writes to Hearth; then the same queries are asked of both and must give the
//! same answers for the time range both hold.
//!
//! Prometheus' remote-write drops samples older than the moment its queue started, so
//! Hearth may lack the first scrape or two. Every compared window therefore starts
//! after the first sample Hearth holds: with `[1m]` ranges and a 20 s range query that
//! takes about 85 s of scraping.

use std::time::Duration;

use serde_json::Value;

use super::*;

fn prometheus_config(port: u16, push_url: &str) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:{port}"]
remote_write:
  - url: {push_url}
    queue_config:
      batch_send_deadline: 500ms
      max_samples_per_send: 2000
      min_backoff: 100ms
      max_backoff: 1s
    metadata_config:
      send_interval: 2s
"#
    )
}

/// Series of an API result as (labels JSON, [(t, value string)]), sorted.
fn normalise(v: &Value) -> Vec<(String, Vec<(String, String)>)> {
    assert_eq!(v["status"], "success", "{v}");
    let data = &v["data"];
    let mut out: Vec<(String, Vec<(String, String)>)> = match data["resultType"].as_str().unwrap() {
        "vector" => data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["metric"].to_string(),
                    vec![(
                        s["value"][0].to_string(),
                        s["value"][1].as_str().unwrap().to_string(),
                    )],
                )
            })
            .collect(),
        "matrix" => data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["metric"].to_string(),
                    s["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (p[0].to_string(), p[1].as_str().unwrap().to_string()))
                        .collect(),
                )
            })
            .collect(),
        other => panic!("unexpected result type {other}"),
    };
    // Prometheus orders label keys inside "metric" alphabetically, like Hearth; compare
    // parsed label maps to be independent of key order anyway.
    for s in out.iter_mut() {
        let m: serde_json::Map<String, Value> = serde_json::from_str(&s.0).unwrap();
        let mut keys: Vec<_> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
        keys.sort();
        s.0 = keys.join(",");
    }
    out.sort();
    out
}

fn same_values(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => false,
    }
}

fn assert_same(q: &str, prom: &Value, hearth: &Value) {
    let p = normalise(prom);
    let h = normalise(hearth);
    assert!(
        !p.is_empty(),
        "{q}: Prometheus returned nothing; the test proves nothing"
    );
    assert_eq!(
        p.len(),
        h.len(),
        "{q}: series count differs\nprometheus: {p:?}\nhearth: {h:?}"
    );
    for (ps, hs) in p.iter().zip(&h) {
        assert_eq!(ps.0, hs.0, "{q}: labels differ");
        assert_eq!(
            ps.1.len(),
            hs.1.len(),
            "{q} {}: point count differs\nprometheus: {:?}\nhearth: {:?}",
            ps.0,
            ps.1,
            hs.1
        );
        for (pp, hp) in ps.1.iter().zip(&hs.1) {
            assert_eq!(pp.0, hp.0, "{q} {}: timestamps differ", ps.0);
            assert!(
                same_values(&pp.1, &hp.1),
                "{q} {} at {}: prometheus {} hearth {}",
                ps.0,
                pp.0,
                pp.1,
                hp.1
            );
        }
    }
}

/// Remote-read with STREAMED_XOR_CHUNKS: frames of uvarint length, big-endian CRC-32C,
/// then a `ChunkedReadResponse`. Returns the raw XOR chunk bytes.
async fn remote_read_chunks(
    client: &reqwest::Client,
    url: &str,
    metric_re: &str,
    start: i64,
    end: i64,
) -> Vec<Vec<u8>> {
    use hearth_proto::prometheus as pb;
    use prost::Message;
    let req = pb::ReadRequest {
        queries: vec![pb::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: vec![pb::LabelMatcher {
                r#type: 2,
                name: "__name__".into(),
                value: metric_re.into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![pb::read_request::ResponseType::StreamedXorChunks as i32],
    };
    let r = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Read-Version", "0.1.0")
        .body(snappy(&req.encode_to_vec()))
        .send()
        .await
        .expect("remote read");
    assert!(r.status().is_success(), "remote read status {}", r.status());
    let body = r.bytes().await.unwrap();
    let mut out = Vec::new();
    let mut b = &body[..];
    while !b.is_empty() {
        let (len, n) = {
            let mut x: u64 = 0;
            let mut s = 0;
            let mut i = 0;
            loop {
                let byte = b[i];
                x |= ((byte & 0x7f) as u64) << s;
                i += 1;
                if byte < 0x80 {
                    break;
                }
                s += 7;
            }
            (x as usize, i)
        };
        let crc = u32::from_be_bytes(b[n..n + 4].try_into().unwrap());
        let msg = &b[n + 4..n + 4 + len];
        assert_eq!(crc32c(msg), crc, "frame checksum");
        let resp = pb::ChunkedReadResponse::decode(msg).expect("ChunkedReadResponse");
        for s in resp.chunked_series {
            for c in s.chunks {
                assert_eq!(c.r#type, pb::chunk::Encoding::Xor as i32);
                out.push(c.data);
            }
        }
        b = &b[n + 4 + len..];
    }
    out
}

fn crc32c(data: &[u8]) -> u32 {
    let mut crc: u32 = !0;
    for &byte in data {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A real Prometheus scrapes itself every second and remote-writes to `push_url`; then
/// the same queries, series, label and metadata requests are asked of it and of the
/// Prometheus API at `query_base`, which must answer the same for the time range both
/// hold. Returns how many answers were compared.
pub async fn answers_match_prometheus(
    dir: &std::path::Path,
    push_url: &str,
    query_base: &str,
) -> usize {
    require_peer("prometheus");
    let h = Api(query_base.trim_end_matches('/').to_string());
    let (mut prom, pport) = start_prometheus(dir, |port| prometheus_config(port, push_url), &[]);
    let purl = |p: &str| format!("http://127.0.0.1:{pport}{p}");
    wait_ready(&purl("/-/ready"), Duration::from_secs(60)).await;
    let client = reqwest::Client::new();
    // The first sample Hearth holds: compared windows start after it.
    let first_t = loop {
        let v = get_json(
            &client,
            &h.url(&format!("/api/v1/query?query={}", urlencode("up[10m]"))),
        )
        .await;
        if let Some(t) = v["data"]["result"][0]["values"][0][0].as_f64() {
            break (t * 1000.0).round() as i64;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let need_until = first_t + 60_000 + 20_000 + 10_000;
    let wait = (need_until - now_ms()).max(0) as u64;
    eprintln!("first sample in Hearth at {first_t}; scraping {wait} ms more");
    tokio::time::sleep(Duration::from_millis(wait)).await;

    // Pick an evaluation time well in the past (everything before it is settled in
    // Prometheus) and half a scrape interval away from the scrape ticks, so no sample
    // sits on a range boundary (where Prometheus 2.x and 3.x differ).
    let v = get_json(&client, &purl("/api/v1/query?query=timestamp(up)")).await;
    let last_scrape: f64 = v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let t = ((last_scrape - 8.0) * 1000.0).round() as i64 + 500;
    assert!(
        t - 20_000 - 60_000 > first_t,
        "not enough data yet: t={t} first={first_t}"
    );
    // Wait until Hearth holds samples newer than t (remote-write lags a little).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = get_json(&client, &h.url("/api/v1/query?query=timestamp(up)")).await;
        let ts = v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok());
        if ts.is_some_and(|ts| (ts * 1000.0) as i64 > t + 2000) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Hearth never received samples past t={t}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ts = format!("{}.{:03}", t / 1000, t % 1000);
    let start = format!("{}.{:03}", (t - 20_000) / 1000, (t - 20_000) % 1000);

    let queries = [
        "up",
        "prometheus_tsdb_head_series",
        "rate(prometheus_http_requests_total[1m])",
        "sum by (job) (rate(prometheus_http_requests_total[1m]))",
        "sum by (handler) (increase(prometheus_http_requests_total[30s]))",
        "irate(process_cpu_seconds_total[10s])",
        "max_over_time(go_goroutines[20s]) - min_over_time(go_goroutines[20s])",
        "count by (__name__) ({__name__=~\"prometheus_tsdb_.*\"})",
        "prometheus_tsdb_head_series offset 5s",
        "topk(3, prometheus_http_requests_total)",
        "histogram_quantile(0.9, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[20s])))",
    ];
    let mut compared = 0;
    for q in queries {
        let enc = urlencode(q);
        let p = get_json(
            &client,
            &purl(&format!("/api/v1/query?query={enc}&time={ts}")),
        )
        .await;
        let hh = get_json(
            &client,
            &h.url(&format!("/api/v1/query?query={enc}&time={ts}")),
        )
        .await;
        assert_same(q, &p, &hh);
        let path = format!("/api/v1/query_range?query={enc}&start={start}&end={ts}&step=1");
        let p = get_json(&client, &purl(&path)).await;
        let hh = get_json(&client, &h.url(&path)).await;
        assert_same(q, &p, &hh);
        compared += 2;
    }

    // Series and label names over the range both hold.
    let range = format!("start={start}&end={ts}");
    let p = get_json(
        &client,
        &purl(&format!("/api/v1/series?match[]=up&{range}")),
    )
    .await;
    let hh = get_json(
        &client,
        &h.url(&format!("/api/v1/series?match[]=up&{range}")),
    )
    .await;
    assert_eq!(p["data"], hh["data"], "series differ");
    let m = urlencode("{__name__=~\"prometheus_http.*\"}");
    let p = get_json(
        &client,
        &purl(&format!("/api/v1/series?match[]={m}&{range}")),
    )
    .await;
    let hh = get_json(
        &client,
        &h.url(&format!("/api/v1/series?match[]={m}&{range}")),
    )
    .await;
    let mut ps: Vec<String> = p["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect();
    let mut hs: Vec<String> = hh["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect();
    ps.sort();
    hs.sort();
    assert!(!ps.is_empty());
    assert_eq!(ps, hs, "series differ");
    let p = get_json(&client, &purl(&format!("/api/v1/labels?{range}"))).await;
    let hh = get_json(&client, &h.url(&format!("/api/v1/labels?{range}"))).await;
    assert_eq!(p["data"], hh["data"], "label names differ");
    let p = get_json(&client, &purl(&format!("/api/v1/label/job/values?{range}"))).await;
    let hh = get_json(
        &client,
        &h.url(&format!("/api/v1/label/job/values?{range}")),
    )
    .await;
    assert_eq!(p["data"], hh["data"], "job values differ");
    // Metadata arrives by remote-write too.
    let hh = get_json(
        &client,
        &h.url("/api/v1/metadata?metric=prometheus_http_requests_total"),
    )
    .await;
    assert_eq!(
        hh["data"]["prometheus_http_requests_total"][0]["type"], "counter",
        "{hh}"
    );

    // Chunk bytes: Prometheus streams its own XOR chunks over remote-read; Hearth's
    // decoder must read them and Hearth's encoder must write the very same bytes.
    let chunks = remote_read_chunks(
        &client,
        &purl("/api/v1/read"),
        "go_.*|process_.*|prometheus_.*",
        t - 120_000,
        t,
    )
    .await;
    assert!(!chunks.is_empty(), "remote-read returned no chunks");
    let mut samples_checked = 0;
    for data in &chunks {
        let decoded = hearth_series::chunkenc::decode_all(data).expect("Prometheus chunk decodes");
        let mut app = hearth_series::chunkenc::XorAppender::new();
        for (t, v) in &decoded {
            app.append(*t, *v);
        }
        assert_eq!(
            app.bytes(),
            &data[..],
            "re-encoded chunk differs from Prometheus' bytes"
        );
        samples_checked += decoded.len();
    }
    eprintln!("{} Prometheus chunks ({samples_checked} samples) are byte-identical when re-encoded by Hearth", chunks.len());

    eprintln!("compared {compared} query answers with Prometheus at t={ts}");
    prom.terminate();
    compared
}

/// A Prometheus API base URL.
struct Api(String);

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}
