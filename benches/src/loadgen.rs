//! hearth-loadgen: an end-to-end remote-write load generator.
//!
//! Generates node_exporter-like series (100 metric families per instance, counters and
//! gauges, one sample every 15 s), encodes every request up front (so the generator's
//! own CPU is off the clock), sends them as Prometheus remote-write 1.0 with a given
//! concurrency, and measures the server: CPU microseconds per sample (from
//! /proc/<pid>/stat), samples per second, peak RSS (VmHWM), disk bytes per sample
//! of its data directory, bytes written to storage per sample (/proc/<pid>/io) and the
//! p50/p99 latency of a push (first send to success, retries included). The same run works against Hearth, Prometheus
//! (`--web.enable-remote-write-receiver`) and VictoriaMetrics.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use hearth_proto::prometheus as pb;
use prost::Message;

#[derive(Parser, Debug)]
#[command(name = "hearth-loadgen")]
struct Args {
    /// Remote-write URL of the server under test.
    #[arg(long)]
    url: String,
    /// Active series.
    #[arg(long, default_value_t = 100_000)]
    series: usize,
    /// Rounds: each sends one sample per series, 15 s of sample time apart.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Series per request (Prometheus' default max_samples_per_send is 2000).
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// PID of the server, for CPU and peak RSS; several, comma-separated, for a server
    /// of several processes (a cluster's distributor and ingesters): their CPU and
    /// peak RSS add up.
    #[arg(long, value_delimiter = ',')]
    pid: Vec<i32>,
    /// Data directory of the server, for disk bytes per sample.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// URL to POST/GET after the load so the server persists what it holds in memory.
    #[arg(long)]
    flush_url: Option<String>,
    /// Name to print in the results.
    #[arg(long, default_value = "server")]
    name: String,
    /// Sample time of the first round, ms since the epoch [default: now - rounds*15s].
    #[arg(long)]
    start_ms: Option<i64>,
}

#[path = "datagen.rs"]
mod datagen;
use datagen::{make_series, next_value};

/// `f` added up over every PID; `None` without PIDs or when one cannot be read.
fn sum_of(pids: &[i32], f: fn(i32) -> Option<u64>) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| f(p)).sum()
}

fn proc_cpu_us(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // Children's times (VictoriaMetrics and Prometheus do not fork; kept for safety).
    Some(ticks * 1_000_000 / 100)
}

/// Bytes the process caused to be written to storage (`write_bytes` of /proc/PID/io:
/// what reached the disk's block layer, fsynced or written back, not page-cache copies).
fn proc_written_bytes(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    let line = s.lines().find(|l| l.starts_with("write_bytes:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The `q` quantile of sorted `xs`.
fn quantile(xs: &[f64], q: f64) -> Option<f64> {
    (!xs.is_empty()).then(|| xs[((xs.len() - 1) as f64 * q).round() as usize])
}

fn proc_hwm_bytes(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += dir_bytes(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut series = make_series(args.series);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let start = args.start_ms.unwrap_or(now - args.rounds as i64 * 15_000);
    eprintln!(
        "encoding {} rounds x {} series ...",
        args.rounds, args.series
    );
    let mut requests: Vec<Vec<u8>> = Vec::new();
    for r in 0..args.rounds {
        let t = start + r as i64 * 15_000;
        for chunk in series.chunks_mut(args.batch) {
            let ts: Vec<pb::TimeSeries> = chunk
                .iter_mut()
                .map(|s| pb::TimeSeries {
                    labels: s.labels.clone(),
                    samples: vec![pb::Sample {
                        value: next_value(s),
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
            requests.push(snap::raw::Encoder::new().compress_vec(&raw)?);
        }
    }
    let total_samples = (args.rounds * args.series) as u64;
    let per_round = args.series.div_ceil(args.batch);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let cpu0 = sum_of(&args.pid, proc_cpu_us);
    let written0 = sum_of(&args.pid, proc_written_bytes);
    let mut latencies_ms = Vec::with_capacity(args.rounds * per_round);
    let began = Instant::now();
    let requests = Arc::new(requests);
    // Rounds go in order (a sample's series must see its predecessor first); within a
    // round, `concurrency` requests are in flight.
    for r in 0..args.rounds {
        let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
        let mut handles = Vec::new();
        for i in 0..per_round {
            let idx = r * per_round + i;
            let permit = sem.clone().acquire_owned().await?;
            let client = client.clone();
            let url = args.url.clone();
            let reqs = requests.clone();
            handles.push(tokio::spawn(async move {
                let _permit = permit;
                // A push's latency: from its first send to its success, retries included.
                let sent = Instant::now();
                let mut attempt = 0;
                loop {
                    let res = client
                        .post(&url)
                        .header("Content-Type", "application/x-protobuf")
                        .header("Content-Encoding", "snappy")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .body(reqs[idx].clone())
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().is_success() => {
                            return Ok(sent.elapsed().as_secs_f64() * 1e3)
                        }
                        Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {}
                        Ok(r) => {
                            let s = r.status();
                            return Err(anyhow::anyhow!(
                                "status {s}: {}",
                                r.text().await.unwrap_or_default()
                            ));
                        }
                        Err(e) if attempt > 20 => return Err(e.into()),
                        Err(_) => {}
                    }
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
            }));
        }
        for h in handles {
            latencies_ms.push(h.await?.context("remote-write request")?);
        }
    }
    let elapsed = began.elapsed();
    if let Some(u) = &args.flush_url {
        let _ = client.post(u).send().await;
        let _ = client.get(u).send().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let cpu1 = sum_of(&args.pid, proc_cpu_us);
    let cpu_us = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let hwm = sum_of(&args.pid, proc_hwm_bytes);
    let written = match (written0, sum_of(&args.pid, proc_written_bytes)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    latencies_ms.sort_by(f64::total_cmp);
    let disk = args.data_dir.as_deref().map(dir_bytes);
    let out = serde_json::json!({
        "name": args.name,
        "series": args.series,
        "rounds": args.rounds,
        "samples": total_samples,
        "seconds": elapsed.as_secs_f64(),
        "samples_per_second": total_samples as f64 / elapsed.as_secs_f64(),
        "cpu_us_per_sample": cpu_us.map(|c| c as f64 / total_samples as f64),
        "peak_rss_bytes": hwm,
        "disk_bytes": disk,
        "disk_bytes_per_sample": disk.map(|d| d as f64 / total_samples as f64),
        "written_bytes_per_sample": written.map(|w| w as f64 / total_samples as f64),
        "push_p50_ms": quantile(&latencies_ms, 0.5),
        "push_p99_ms": quantile(&latencies_ms, 0.99),
    });
    println!("{out}");
    Ok(())
}
