//! `hearth import prometheus-tsdb`: a real Prometheus 2.42 (Debian; its promtool writes
//! the blocks from OpenMetrics text) and Hearth after importing those blocks answer the
//! same queries alike.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;

/// Eight hours of one-minute samples for 12 series (counters with a reset, gauges),
/// in OpenMetrics text, timestamps in seconds.
fn openmetrics(start: i64) -> String {
    let mut out = String::new();
    out.push_str("# TYPE requests counter\n");
    for inst in 0..6 {
        for k in 0..(8 * 60) {
            let t = start + k * MINUTE + inst;
            let v = if k < 200 {
                k * (inst + 1)
            } else {
                (k - 200) * (inst + 2)
            };
            out.push_str(&format!(
                "requests_total{{instance=\"i{inst}\",job=\"imp\"}} {v} {t}\n"
            ));
        }
    }
    out.push_str("# TYPE level gauge\n");
    for inst in 0..6 {
        for k in 0..(8 * 60) {
            let t = start + k * MINUTE + inst;
            let v = ((k as f64) / 13.0).sin() * 10.0 + inst as f64;
            out.push_str(&format!(
                "level{{instance=\"i{inst}\",job=\"imp\"}} {v} {t}\n"
            ));
        }
    }
    out.push_str("# EOF\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_blocks_answer_as_prometheus() {
    if !require_peer("promtool") || !require_peer("prometheus") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start = (now - 30 * HOUR) / (2 * HOUR) * (2 * HOUR) + 7;
    let om = dir.path().join("data.om");
    std::fs::write(&om, openmetrics(start)).unwrap();
    let prom_data = dir.path().join("prom-data");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&prom_data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Import before Prometheus opens the directory (it may compact the blocks).
    let bucket = dir.path().join("bucket");
    let bucket_flag = format!("--blocks-storage.filesystem.dir={}", bucket.display());
    let out = Command::new(hearth_bin())
        .args(["import", "prometheus-tsdb"])
        .arg(&prom_data)
        .arg(&bucket_flag)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("done: "), "{stdout}");
    assert!(stdout.contains("[1/"), "progress is shown: {stdout}");
    // Running it again imports nothing twice.
    let again = Command::new(hearth_bin())
        .args(["import", "prometheus-tsdb"])
        .arg(&prom_data)
        .arg(&bucket_flag)
        .output()
        .unwrap();
    let again = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.contains("imported before, skipped"), "{again}");
    assert!(!again.contains("->"), "{again}");

    let (mut prom, pport) = start_prometheus(
        dir.path(),
        |_| "global:\n  scrape_interval: 1h\n".to_string(),
        &[],
    );
    // start_prometheus uses <dir>/prom-data, where promtool wrote the blocks.
    wait_ready(
        &format!("http://127.0.0.1:{pport}/-/ready"),
        Duration::from_secs(60),
    )
    .await;
    let h = start_hearth(&dir.path().join("hearth-data"), &[&bucket_flag]).await;
    let client = reqwest::Client::new();

    // Evaluation times off the sample grid: no sample sits on a range boundary, where
    // 2.42 (closed ranges) and 3.x (left-open, as Hearth) differ by design.
    let (s, e) = (start as f64 + 13.5, (start + 8 * HOUR) as f64);
    let queries = [
        "rate(requests_total[5m])",
        "sum by (job) (increase(requests_total[1h]))",
        "max_over_time(level[30m])",
        "avg(level)",
        "count_over_time(level[10m])",
    ];
    let mut compared = 0;
    for q in queries {
        let path = format!(
            "/api/v1/query_range?query={}&start={s}&end={e}&step=600",
            urlencode(q)
        );
        let p = get_json(&client, &format!("http://127.0.0.1:{pport}{path}")).await;
        let hv = get_json(&client, &h.url(&path)).await;
        assert_eq!(p["status"], "success", "{q}: {p}");
        let pm = by_metric(&p);
        let hm = by_metric(&hv);
        assert!(!pm.is_empty(), "{q}: Prometheus has no data");
        assert_eq!(pm.len(), hm.len(), "{q}: series");
        for (k, pv) in &pm {
            let hvv = &hm[k];
            assert_eq!(pv.len(), hvv.len(), "{q} {k}: points");
            for ((pt, px), (ht, hx)) in pv.iter().zip(hvv) {
                assert_eq!(pt, ht, "{q} {k}");
                let tol = 1e-9 * px.abs().max(1.0);
                assert!((px - hx).abs() <= tol, "{q} {k} @{pt}: {px} vs {hx}");
                compared += 1;
            }
        }
    }
    println!("{compared} points agree with Prometheus");
    assert!(compared > 300, "only {compared} points compared");
    prom.terminate();
}

fn by_metric(v: &Value) -> std::collections::BTreeMap<String, Vec<(String, f64)>> {
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let pts = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p[0].to_string(),
                        p[1].as_str().unwrap().parse::<f64>().unwrap(),
                    )
                })
                .collect();
            (s["metric"].to_string(), pts)
        })
        .collect()
}
