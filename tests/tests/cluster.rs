//! The local multi-process cluster of deploy/local/cluster.sh (2 distributors, 3
//! ingesters, 2 queriers, a store gateway and a compactor, each its own process on
//! loopback), started once for every scenario here: one harness, not one cluster per
//! test.
//!
//! 1. A real Prometheus remote-writes through a distributor; a querier (another
//!    process) answers as Prometheus does (common/interop.rs).
//! 2. kill -9 of one ingester under load from writers on both distributors: while it is
//!    down writes get 5xx, and after its restart every acknowledged sample is returned
//!    by both queriers (so no write was acknowledged whose data missed a log).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

struct Cluster {
    dir: tempfile::TempDir,
    push: Vec<String>,
    query: Vec<String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/local/cluster.sh")
}

impl Cluster {
    fn run(&self, args: &[&str]) -> String {
        run_script(self.dir.path(), args)
    }

    fn up() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let out = run_script(dir.path(), &["up"]);
        let line = |prefix: &str| -> Vec<String> {
            out.lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.split_once(": ").map(|(_, u)| u.to_string()))
                .collect()
        };
        let c = Cluster {
            push: line("push"),
            query: line("query"),
            dir,
        };
        assert_eq!(
            (c.push.len(), c.query.len()),
            (2, 2),
            "cluster.sh up said:\n{out}"
        );
        c
    }

    fn pid(&self, name: &str) -> i32 {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// Runs cluster.sh with the cluster's directory, the test build of `hearth` first on
/// PATH, and flags that lift the ingestion rate (the writers here push fast).
fn run_script(dir: &Path, args: &[&str]) -> String {
    let bin_dir = hearth_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .env("HEARTH_CLUSTER_DIR", dir)
        .env("PATH", path)
        .env(
            "HEARTH_CLUSTER_FLAGS",
            "--distributor.ingestion-rate-limit=10000000 --distributor.ingestion-burst-size=100000000",
        )
        .output()
        .expect("run cluster.sh");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "cluster.sh {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("down")
            .env("HEARTH_CLUSTER_DIR", self.dir.path())
            .status();
    }
}

const WRITERS: usize = 4;
const SERIES: usize = 30;

/// (writer, series) -> acknowledged (t, v).
type Acked = Arc<Mutex<HashMap<(usize, usize), Vec<(i64, f64)>>>>;

/// An ingester that is never called: the ring only tells which ingester owns a series.
struct Nowhere;

#[async_trait::async_trait]
impl hearth_core::Ingester for Nowhere {
    async fn push(
        &self,
        _: &hearth_core::Tenant,
        _: hearth_core::WriteBatch,
    ) -> Result<hearth_core::PushOutcome, hearth_core::PushError> {
        unreachable!("the ring is only asked for owners")
    }
}

/// The distributors' ring, to know which ingester each test series lands on.
fn ring() -> hearth_distributor::IngesterRing {
    hearth_distributor::IngesterRing::new(
        (1..=3)
            .map(|i| {
                (
                    format!("ingester-{i}"),
                    Arc::new(Nowhere) as Arc<dyn hearth_core::Ingester>,
                )
            })
            .collect(),
        hearth_core::ring::DEFAULT_TOKENS_PER_MEMBER,
    )
}

/// Status counts of one writer: (acknowledged, 5xx, 5xx while ingester-2 was down,
/// other). Every write sent while ingester-2 was down that holds a series it owns must
/// fail: a 2xx there would acknowledge data that is in no log.
async fn writer(
    urls: Vec<String>,
    w: usize,
    acked: Acked,
    stop: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
) -> (usize, usize, usize, usize) {
    let ring = ring();
    let tenant = hearth_core::Tenant::anonymous();
    let owned_by_2: Vec<bool> = (0..SERIES)
        .map(|s| {
            let l = hearth_core::Labels::from_pairs(&[
                ("__name__", "cluster_test"),
                ("series", &s.to_string()),
                ("writer", &w.to_string()),
            ]);
            ring.owner_of(&tenant, l.hash64()) == "ingester-2"
        })
        .collect();
    let touches_2 = owned_by_2.iter().any(|&o| o);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (mut ok, mut failed, mut failed_while_down, mut other) = (0, 0, 0, 0);
    let mut step = 0i64;
    let base = now_ms() - 60_000;
    while !stop.load(Ordering::Relaxed) {
        let t = base + step * 10;
        let v = |s: usize| (step * 1000 + s as i64) as f64 + 0.5;
        let series: Vec<_> = (0..SERIES)
            .map(|s| {
                series(
                    &[
                        ("__name__", "cluster_test"),
                        ("writer", &w.to_string()),
                        ("series", &s.to_string()),
                    ],
                    &[(t, v(s))],
                )
            })
            .collect();
        let was_down = down.load(Ordering::Relaxed);
        let url = &urls[step as usize % urls.len()];
        let (status, body) = push(
            &client,
            url,
            write_request(series),
            "application/x-protobuf",
        )
        .await;
        match status {
            204 => {
                assert!(
                    !(was_down && down.load(Ordering::Relaxed) && touches_2),
                    "writer {w}: a write holding series of ingester-2 was acknowledged while it was down"
                );
                ok += 1;
                let mut a = acked.lock().unwrap();
                for s in 0..SERIES {
                    a.entry((w, s)).or_default().push((t, v(s)));
                }
            }
            500..=599 => {
                failed += 1;
                if was_down && down.load(Ordering::Relaxed) {
                    failed_while_down += 1;
                }
            }
            _ => {
                eprintln!("writer {w}: {status} {body}");
                other += 1;
            }
        }
        step += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (ok, failed, failed_while_down, other)
}

/// Every acknowledged sample, from one querier.
async fn verify(client: &reqwest::Client, query: &str, acked: &Acked) -> usize {
    let acked = acked.lock().unwrap().clone();
    let mut checked = 0;
    for w in 0..WRITERS {
        let q = urlencode(&format!("cluster_test{{writer=\"{w}\"}}[10m]"));
        let v = get_json(
            client,
            &format!(
                "{query}/api/v1/query?query={q}&time={}",
                now_ms() as f64 / 1000.0
            ),
        )
        .await;
        assert_eq!(v["status"], "success", "{v}");
        let mut got: HashMap<usize, HashMap<i64, f64>> = HashMap::new();
        for s in v["data"]["result"].as_array().unwrap() {
            let series: usize = s["metric"]["series"].as_str().unwrap().parse().unwrap();
            let pts = got.entry(series).or_default();
            for p in s["values"].as_array().unwrap() {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                pts.insert(t, p[1].as_str().unwrap().parse().unwrap());
            }
        }
        for s in 0..SERIES {
            let have = got.get(&s).cloned().unwrap_or_default();
            for (t, v) in acked.get(&(w, s)).cloned().unwrap_or_default() {
                assert_eq!(
                    have.get(&t),
                    Some(&v),
                    "acknowledged sample writer={w} series={s} t={t} missing from {query}"
                );
                checked += 1;
            }
        }
    }
    checked
}

async fn kill_one_ingester_under_load(c: &Cluster) {
    let acked: Acked = Arc::new(Mutex::new(HashMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let down = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                c.push.clone(),
                w,
                acked.clone(),
                stop.clone(),
                down.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // kill -9 one ingester under load; it is down once the process is gone.
    let pid = c.pid("ingester-2");
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let gone = |pid: i32| {
        // Gone, or a zombie nobody reaped yet: it takes no write either way.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| {
                st.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !gone(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "ingester-2 survived kill -9"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    down.store(true, Ordering::Relaxed);
    eprintln!("ingester-2 (PID {pid}) killed");
    tokio::time::sleep(Duration::from_secs(3)).await;
    down.store(false, Ordering::Relaxed);
    let said = tokio::task::block_in_place(|| c.run(&["start", "ingester-2"]));
    eprintln!("{}", said.trim());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed, mut failed_down, mut other) = (0, 0, 0, 0);
    for w in writers {
        let (a, b, d, o) = w.await.unwrap();
        ok += a;
        failed += b;
        failed_down += d;
        other += o;
    }
    eprintln!("writes: {ok} acknowledged, {failed} failed with 5xx ({failed_down} while ingester-2 was down), {other} other");
    assert_eq!(other, 0, "only 204 and 5xx are expected");
    assert!(
        ok > 100,
        "too few writes acknowledged to prove anything: {ok}"
    );
    assert!(
        failed_down > 0,
        "no write failed while an ingester was down"
    );
    let client = reqwest::Client::new();
    for q in &c.query {
        let n = verify(&client, q, &acked).await;
        eprintln!("{q}: {n} acknowledged samples verified");
        assert_eq!(n, ok * SERIES);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_cluster() {
    let c = Cluster::up();
    eprintln!("cluster up: push {:?}, query {:?}", c.push, c.query);
    let status = c.run(&["status"]);
    assert_eq!(status.matches(" running ").count(), 9, "{status}");

    // 1. Prometheus through a distributor, answers from a querier.
    let compared = interop::answers_match_prometheus(c.dir.path(), &c.push[0], &c.query[1]).await;
    assert!(compared >= 22, "{compared} answers compared");

    // 2. kill -9 of an ingester under load.
    kill_one_ingester_under_load(&c).await;
}
