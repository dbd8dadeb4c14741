//! hearth-pushprobe: remote-write latency as a sender sees it, while something else
//! (a compaction, a flush, a heavy query) runs in the server.
//!
//! Sends one small request (`--series` series, one sample each, the current time) every
//! `--interval-ms`, one at a time, for `--seconds`, and prints the latency percentiles
//! of the acknowledged ones as JSON. Requests not answered 2xx are counted apart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use hearth_proto::prometheus as pb;
use prost::Message;

#[derive(Parser, Debug)]
#[command(name = "hearth-pushprobe")]
struct Args {
    /// Remote-write URL of the server under test.
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 100)]
    series: usize,
    #[arg(long, default_value_t = 20)]
    interval_ms: u64,
    /// Senders, each sending one request at a time every `--interval-ms` (a Prometheus
    /// remote-writes with several shards at once).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Name to print in the results.
    #[arg(long, default_value = "probe")]
    name: String,
    /// Stop early once this `/metrics` URL shows `--stop-metric` at 1 or more (for
    /// example once a compaction pass has finished).
    #[arg(long)]
    stop_url: Option<String>,
    #[arg(long, default_value = "hearth_compactor_runs_total")]
    stop_metric: String,
}

/// The value of `name` in a Prometheus text exposition.
async fn metric(client: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let body = client.get(url).send().await.ok()?.text().await.ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn request(series: usize, sender: usize, t: i64, v: f64) -> Vec<u8> {
    let ts = (0..series)
        .map(|i| pb::TimeSeries {
            labels: vec![
                pb::Label {
                    name: "__name__".into(),
                    value: "pushprobe".into(),
                },
                pb::Label {
                    name: "i".into(),
                    value: i.to_string(),
                },
                pb::Label {
                    name: "sender".into(),
                    value: sender.to_string(),
                },
            ],
            samples: vec![pb::Sample {
                value: v,
                timestamp: t,
            }],
            ..Default::default()
        })
        .collect();
    let raw = pb::WriteRequest {
        timeseries: ts,
        metadata: vec![],
    }
    .encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// One sender: (latencies in ms of acknowledged requests, failed requests).
async fn sender(
    args: Arc<Args>,
    id: usize,
    end: Instant,
    stop: Arc<AtomicBool>,
) -> (Vec<f64>, u64) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut ms, mut failed) = (Vec::new(), 0u64);
    let mut last_t = 0i64;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        let t = now.max(last_t + 1);
        last_t = t;
        let body = request(args.series, id, t, t as f64);
        let sent = Instant::now();
        let r = client
            .post(&args.url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .body(body)
            .send()
            .await;
        match r {
            Ok(resp) if resp.status().is_success() => {
                ms.push(sent.elapsed().as_secs_f64() * 1000.0)
            }
            _ => failed += 1,
        }
    }
    (ms, failed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let end = Instant::now() + Duration::from_secs(args.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..args.concurrency.max(1))
        .map(|id| tokio::spawn(sender(args.clone(), id, end, stop.clone())))
        .collect();
    if let Some(u) = &args.stop_url {
        let client = reqwest::Client::new();
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if metric(&client, u, &args.stop_metric).await.unwrap_or(0.0) >= 1.0 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    }
    let (mut ms, mut failed) = (Vec::new(), 0u64);
    for s in senders {
        let (m, f) = s.await?;
        ms.extend(m);
        failed += f;
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{}",
        serde_json::json!({
            "name": args.name,
            "concurrency": args.concurrency,
            "requests": ms.len(),
            "failed": failed,
            "p50_ms": percentile(&ms, 0.50),
            "p90_ms": percentile(&ms, 0.90),
            "p99_ms": percentile(&ms, 0.99),
            "max_ms": ms.last().copied().unwrap_or(f64::NAN),
        })
    );
    Ok(())
}
