//! Differential test: a real Prometheus 2.42 (Debian) and Hearth are fed the same data by
//! remote-write, and a few hundred generated queries across functions, aggregations and
//! operators must agree within a relative 1e-6.
//!
//! Timestamps carry per-series and per-sample jitter and evaluation times are odd
//! milliseconds, so no sample sits exactly on a range boundary, where Prometheus 2.x
//! (closed ranges) and 3.x (left-open ranges) differ by design. Not generated, because
//! 2.42 and 3.x differ on purpose: functions that only exist in 3.x, `holt_winters`
//! (renamed `double_exponential_smoothing` in 3.x), and `atan2` between vectors (3.x
//! drops the metric name, as for every arithmetic operator; 2.42 keeps it).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use hearth_proto::prometheus as pb;
use serde_json::Value;

const STEP_MS: i64 = 15_000;
const SAMPLES: i64 = 240; // one hour

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The data set: counters with resets, gauges crossing zero, classic histograms.
fn generate(base: i64) -> Vec<pb::TimeSeries> {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut out = Vec::new();
    let mut add = |labels: Vec<(&str, String)>, values: Vec<f64>, rng: &mut Rng| {
        let offset = rng.below(14_000) as i64 + 7; // like a scrape offset
        let samples = values
            .into_iter()
            .enumerate()
            .map(|(k, v)| pb::Sample {
                value: v,
                timestamp: base + k as i64 * STEP_MS + offset + rng.below(40) as i64,
            })
            .collect();
        let mut labels: Vec<pb::Label> = labels.into_iter().map(|(n, v)| label(n, &v)).collect();
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        out.push(pb::TimeSeries {
            labels,
            samples,
            ..Default::default()
        });
    };
    for job in ["api", "db", "web"] {
        for inst in 0..3 {
            let instance = format!("host-{inst}:9100");
            for method in ["GET", "POST"] {
                let mut v = 0.0;
                let vals: Vec<f64> = (0..SAMPLES)
                    .map(|k| {
                        if k > 0 && rng.below(97) == 0 {
                            v = 0.0; // counter reset
                        }
                        v += rng.below(50) as f64 + if rng.below(3) == 0 { 0.5 } else { 0.0 };
                        v
                    })
                    .collect();
                add(
                    vec![
                        ("__name__", "diff_requests_total".into()),
                        ("job", job.into()),
                        ("instance", instance.clone()),
                        ("method", method.into()),
                    ],
                    vals,
                    &mut rng,
                );
            }
            let mut t = 20.0 + inst as f64;
            let vals: Vec<f64> = (0..SAMPLES)
                .map(|_| {
                    t += (rng.below(2001) as f64 - 1000.0) / 400.0;
                    t
                })
                .collect();
            add(
                vec![
                    ("__name__", "diff_temperature".into()),
                    ("job", job.into()),
                    ("instance", instance.clone()),
                ],
                vals,
                &mut rng,
            );
            // A classic histogram: cumulative buckets.
            let bounds = ["0.1", "0.5", "1", "5", "+Inf"];
            let mut counts = [0.0f64; 5];
            let mut series: Vec<Vec<f64>> = vec![Vec::new(); 5];
            for _ in 0..SAMPLES {
                let n = rng.below(20);
                for _ in 0..n {
                    let b = rng.below(5) as usize;
                    for c in counts.iter_mut().skip(b) {
                        *c += 1.0;
                    }
                }
                for (i, c) in counts.iter().enumerate() {
                    series[i].push(*c);
                }
            }
            for (i, vals) in series.into_iter().enumerate() {
                add(
                    vec![
                        ("__name__", "diff_latency_seconds_bucket".into()),
                        ("job", job.into()),
                        ("instance", instance.clone()),
                        ("le", bounds[i].into()),
                    ],
                    vals,
                    &mut rng,
                );
            }
        }
    }
    out
}

fn queries() -> Vec<String> {
    let mut q = Vec::new();
    let counters = ["diff_requests_total", "diff_requests_total{method=\"GET\"}"];
    let gauges = ["diff_temperature", "diff_temperature{job=~\"api|db\"}"];
    for m in counters {
        for f in ["rate", "irate", "increase", "resets", "changes"] {
            for r in ["1m", "5m", "17m"] {
                q.push(format!("{f}({m}[{r}])"));
            }
        }
    }
    for m in gauges {
        for f in [
            "delta",
            "idelta",
            "deriv",
            "avg_over_time",
            "min_over_time",
            "max_over_time",
            "sum_over_time",
            "count_over_time",
            "stddev_over_time",
            "stdvar_over_time",
            "last_over_time",
            "present_over_time",
            "changes",
        ] {
            for r in ["1m", "5m", "17m"] {
                q.push(format!("{f}({m}[{r}])"));
            }
        }
        q.push(format!("quantile_over_time(0.3, {m}[10m])"));
        q.push(format!("quantile_over_time(0.9, {m}[10m])"));
        q.push(format!("predict_linear({m}[10m], 600)"));
        for f in [
            "abs",
            "ceil",
            "floor",
            "round",
            "sgn",
            "timestamp",
            "sqrt",
            "ln",
            "log2",
            "log10",
            "exp",
            "sin",
            "cos",
            "deg",
            "rad",
        ] {
            q.push(format!("{f}({m})"));
        }
        q.push(format!("clamp({m}, 15, 25)"));
        q.push(format!("clamp_min({m}, 20)"));
        q.push(format!("clamp_max({m}, 20)"));
        q.push(format!("round({m}, 0.5)"));
        q.push(format!("-{m}"));
        q.push(format!("{m} offset 7m"));
    }
    let rate = "rate(diff_requests_total[5m])";
    for agg in [
        "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group",
    ] {
        q.push(format!("{agg}({rate})"));
        q.push(format!("{agg} by (job) ({rate})"));
        q.push(format!("{agg} without (instance) ({rate})"));
        q.push(format!("{agg} by (job, method) (diff_temperature * on(job, instance) group_right diff_requests_total)"));
    }
    for k in ["1", "2", "5"] {
        q.push(format!("topk({k}, {rate})"));
        q.push(format!("bottomk({k}, diff_temperature)"));
        q.push(format!("topk by (job) ({k}, diff_temperature)"));
    }
    for p in ["0", "0.25", "0.5", "0.9", "1"] {
        q.push(format!("quantile({p}, diff_temperature)"));
        q.push(format!("quantile by (job) ({p}, {rate})"));
    }
    q.push("count_values(\"v\", round(diff_temperature))".into());
    q.push("count_values by (job) (\"v\", ceil(diff_temperature / 5))".into());
    for p in ["0.5", "0.9", "0.99"] {
        q.push(format!(
            "histogram_quantile({p}, sum by (le, job) (rate(diff_latency_seconds_bucket[5m])))"
        ));
        q.push(format!(
            "histogram_quantile({p}, rate(diff_latency_seconds_bucket[10m]))"
        ));
    }
    for op in ["+", "-", "*", "/", "%", "^"] {
        q.push(format!("diff_temperature {op} 3"));
        q.push(format!("7 {op} diff_temperature"));
        q.push(format!("diff_temperature {op} on(job, instance) group_left rate(diff_requests_total{{method=\"GET\"}}[5m])"));
    }
    for op in ["==", "!=", ">", "<", ">=", "<="] {
        q.push(format!("diff_temperature {op} 20"));
        q.push(format!("diff_temperature {op} bool 20"));
        q.push(format!("20 {op} bool diff_temperature"));
        q.push(format!(
            "diff_temperature {op} ignoring(job) diff_temperature offset 1m"
        ));
    }
    q.push(format!(
        "{rate} / ignoring(method) group_left sum without(method) ({rate})"
    ));
    q.push(format!(
        "sum by (job, instance) ({rate}) / on(job, instance) diff_temperature"
    ));
    q.push("diff_temperature and on(job) (diff_temperature > 21)".into());
    q.push("diff_temperature or on(job) diff_requests_total".into());
    q.push("diff_temperature unless on(job) (diff_temperature > 22)".into());
    q.push("diff_temperature > 18 < 23".into());
    q.push("label_replace(diff_temperature, \"host\", \"$1\", \"instance\", \"(.*):.*\")".into());
    q.push("label_join(diff_temperature, \"id\", \"/\", \"job\", \"instance\")".into());
    q.push("absent(nonexistent_metric{job=\"x\"})".into());
    q.push("absent(diff_temperature)".into());
    q.push("absent_over_time(nonexistent_metric[5m])".into());
    q.push("vector(1) + vector(2)".into());
    q.push("scalar(sum(diff_temperature))".into());
    q.push("diff_temperature * scalar(count(diff_temperature))".into());
    q.push("time() - timestamp(diff_temperature)".into());
    q.push("sort_desc(diff_temperature)".into());
    q.push("max_over_time(rate(diff_requests_total[1m])[10m:1m])".into());
    q.push("avg_over_time(diff_temperature[15m:30s])".into());
    q.push("min_over_time(sum by (job) (diff_temperature)[20m:2m] offset 3m)".into());
    q.push("sum(diff_temperature @ end())".into());
    q.push("rate(diff_requests_total[5m] @ start())".into());
    q.push(
        "day_of_week() + hour() + minute() + month() + year() + day_of_month() + days_in_month()"
            .into(),
    );
    q
}

/// A result as label-set -> [(t, value)], for set comparison.
fn result_map(v: &Value) -> Result<(String, BTreeMap<String, Vec<(String, f64)>>), String> {
    if v["status"] != "success" {
        return Err(format!("error: {}", v["error"]));
    }
    let data = &v["data"];
    let kind = data["resultType"].as_str().unwrap_or("").to_string();
    let mut out = BTreeMap::new();
    let parse = |p: &Value| -> (String, f64) {
        let s = p[1].as_str().unwrap_or("");
        let f = match s {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            _ => s.parse().unwrap_or(f64::NAN),
        };
        (p[0].to_string(), f)
    };
    match kind.as_str() {
        "scalar" => {
            out.insert("scalar".into(), vec![parse(&data["result"])]);
        }
        "vector" | "matrix" => {
            for s in data["result"].as_array().unwrap() {
                let m: BTreeMap<String, String> =
                    serde_json::from_value(s["metric"].clone()).unwrap();
                let key = format!("{m:?}");
                let pts = if kind == "vector" {
                    vec![parse(&s["value"])]
                } else {
                    s["values"].as_array().unwrap().iter().map(parse).collect()
                };
                out.insert(key, pts);
            }
        }
        _ => return Err(format!("unexpected type {kind}")),
    }
    Ok((kind, out))
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() || a == b {
        return true;
    }
    let d = (a - b).abs();
    d <= 1e-6 * a.abs().max(b.abs()) || d < 1e-9
}

fn diff(prom: &Value, hearth: &Value) -> Option<String> {
    let (p, h) = match (result_map(prom), result_map(hearth)) {
        (Ok(p), Ok(h)) => (p, h),
        (Err(pe), Err(_)) => {
            return if pe.is_empty() {
                Some("both failed".into())
            } else {
                None
            }
        }
        (Ok(_), Err(e)) => return Some(format!("hearth {e}")),
        (Err(e), Ok(_)) => return Some(format!("prometheus {e}, hearth succeeded")),
    };
    if p.0 != h.0 {
        return Some(format!("result type {} vs {}", p.0, h.0));
    }
    if p.1.len() != h.1.len() {
        return Some(format!(
            "{} series vs {}: {:?} / {:?}",
            p.1.len(),
            h.1.len(),
            p.1.keys().collect::<Vec<_>>(),
            h.1.keys().collect::<Vec<_>>()
        ));
    }
    for (k, pv) in &p.1 {
        let Some(hv) = h.1.get(k) else {
            return Some(format!("series {k} missing in hearth"));
        };
        if pv.len() != hv.len() {
            return Some(format!("{k}: {} points vs {}", pv.len(), hv.len()));
        }
        for (a, b) in pv.iter().zip(hv) {
            if a.0 != b.0 || !close(a.1, b.1) {
                return Some(format!(
                    "{k} at {}: prometheus {} hearth {} (t {})",
                    a.0, a.1, b.1, b.0
                ));
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_queries_agree_with_prometheus() {
    if !require_peer("prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let h = start_hearth(&dir.path().join("hearth-data"), &[]).await;
    let (mut prom, pport) = start_prometheus(
        dir.path(),
        |_| "global:\n  scrape_interval: 1h\n".to_string(),
        &["--web.enable-remote-write-receiver"],
    );
    let purl = |p: &str| format!("http://127.0.0.1:{pport}{p}");
    wait_ready(&purl("/-/ready"), Duration::from_secs(60)).await;
    let client = reqwest::Client::new();

    // Two hours ago, aligned to nothing in particular.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = now - 2 * 3_600_000 - 123;
    let data = generate(base);
    // Push in time order, one round of samples at a time, to both.
    for k in 0..SAMPLES as usize {
        let round: Vec<pb::TimeSeries> = data
            .iter()
            .map(|s| pb::TimeSeries {
                labels: s.labels.clone(),
                samples: vec![s.samples[k].clone()],
                ..Default::default()
            })
            .collect();
        let body = write_request(round);
        for url in [purl("/api/v1/write"), h.url("/api/v1/push")] {
            let (s, m) = push(&client, &url, body.clone(), "application/x-protobuf").await;
            assert!(s == 204 || s == 200, "{url}: {s} {m}");
        }
    }

    let qs = queries();
    let end = base + SAMPLES * STEP_MS;
    // Odd-millisecond evaluation times inside the data.
    let times = [
        end - 20 * 60_000 + 4_321,
        end - 6_789,
        base + 31 * 60_000 + 997,
    ];
    let fmt = |t: i64| format!("{}.{:03}", t / 1000, t % 1000);
    let mut compared = 0;
    let mut failures = Vec::new();
    for q in &qs {
        let enc = urlencode(q);
        let mut paths: Vec<String> = times
            .iter()
            .map(|t| format!("/api/v1/query?query={enc}&time={}", fmt(*t)))
            .collect();
        paths.push(format!(
            "/api/v1/query_range?query={enc}&start={}&end={}&step=61",
            fmt(end - 40 * 60_000 + 1_357),
            fmt(end - 1_357)
        ));
        for path in paths {
            let p = get_json(&client, &purl(&path)).await;
            let hh = get_json(&client, &h.url(&path)).await;
            if p["status"] != "success" {
                // Not a meaningful comparison point (e.g. a type error in Prometheus too).
                assert_eq!(
                    hh["status"], "error",
                    "{q}: Prometheus failed ({}) but Hearth answered",
                    p["error"]
                );
                continue;
            }
            compared += 1;
            if let Some(d) = diff(&p, &hh) {
                failures.push(format!("{q} [{path}]: {d}"));
            }
        }
    }
    prom.terminate();
    for f in &failures {
        eprintln!("MISMATCH {f}");
    }
    eprintln!(
        "{} queries, {compared} answers compared, {} mismatches",
        qs.len(),
        failures.len()
    );
    assert!(compared > 500, "too few comparisons: {compared}");
    assert!(
        failures.is_empty(),
        "{} of {compared} answers differ from Prometheus",
        failures.len()
    );
}
