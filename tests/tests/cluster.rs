//! The local multi-process cluster of deploy/local/cluster.sh (3 ingester nodes holding
//! every shard group at RF 3, 2 distributors, 2 queriers, a store gateway and a
//! compactor over moto's S3 server, each its own process on loopback), started once
//! for every scenario here: one harness, not one cluster per test.
//!
//! 1. A real Prometheus remote-writes through a distributor; a querier (another
//!    process) answers as Prometheus does (common/interop.rs).
//! 2. Under continuous writes through both distributors, each recording every
//!    acknowledged sample, one fault after another: kill -9 of a node (the leader of
//!    some groups, a follower of the others), a node cut off from its peers and healed,
//!    an asymmetric partition (the node can send but not hear) healed, a node paused
//!    (SIGSTOP) for 20 s, kill -9 of a group's leader while it streams a snapshot to a
//!    node that was down (`SnapshotKill`), the bucket unreachable for 2 minutes with a
//!    node killed while its uploads hang, and kill -9 of every ingester at once
//!    followed by a restart of all. Every group ships all along (10 s blocks), so the
//!    faults hit seals, uploads, `Shipped` records and the snapshots after them, and
//!    most answers come from blocks. During every single-node fault the other two keep
//!    a quorum of every group, so writes must go on being acknowledged. After each fault both queriers return
//!    every acknowledged sample; at the end every series is returned once, holding
//!    every acknowledged sample and nothing that was never sent. The longest write gap
//!    each writer saw in each fault is printed (an outcome to read, not asserted).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
        require_peer("moto_server");
        let dir = tempfile::tempdir().unwrap();
        // A failed `up` leaves what it started running: stop it before failing.
        let out = match std::panic::catch_unwind(|| run_script(dir.path(), &["up"])) {
            Ok(out) => out,
            Err(failure) => {
                let _ = std::panic::catch_unwind(|| run_script(dir.path(), &["down"]));
                std::panic::resume_unwind(failure)
            }
        };
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

    /// A port cluster.sh chose at `up` (`ports.env`), e.g. `S3_PORT`.
    fn port(&self, key: &str) -> String {
        let ports = std::fs::read_to_string(self.dir.path().join("ports.env")).unwrap();
        ports
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} not in ports.env"))
            .to_string()
    }

    fn pid(&self, name: &str) -> i32 {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// Flags for every process: the writers here push fast, and every group ships all
/// along (10 s blocks, shipped every second, gateways syncing every 2 s), so the
/// faults also hit seals, uploads, `Shipped` records and the snapshots after them. A
/// write the distributor retried for seconds can land more than half a block behind
/// the newest sample: the out-of-order window takes it (as late data once sealed).
const FLAGS: &str = "--distributor.ingestion-rate-limit=10000000 \
    --distributor.ingestion-burst-size=100000000 \
    --storage.tsdb.out-of-order-time-window=1m \
    --storage.tsdb.block-duration=10s --compactor.block-ranges=10s,20s \
    --blocks-storage.tsdb.ship-interval=1s --blocks-storage.bucket-store.sync-interval=2s";

/// Runs cluster.sh with the cluster's directory, the test build of `hearth` first on
/// PATH, and [`FLAGS`].
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
        .env("HEARTH_CLUSTER_FLAGS", FLAGS)
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
        if std::thread::panicking() {
            // The nodes' logs, data and snapshots, for whoever reads the failure.
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("the failed cluster's directory is kept: {}", kept.display());
        }
    }
}

const WRITERS: usize = 4;
const SERIES: usize = 30;

/// What the writers saw, shared with the scenarios.
#[derive(Default)]
struct Log {
    /// (writer, series) -> acknowledged (t, v).
    acked: HashMap<(usize, usize), Vec<(i64, f64)>>,
    /// Per writer, when each acknowledgement came.
    ack_times: Vec<Vec<Instant>>,
    /// Writes answered with a status other than 204 or 5xx.
    other: usize,
    failed: usize,
}

type Shared = Arc<Mutex<Log>>;

/// Sample time and value of writer `w`'s step `step` for series `s`: every sample
/// returned can be checked against what was sent.
fn sample(base: i64, step: i64, s: usize) -> (i64, f64) {
    (base + step * 10, (step * 1000 + s as i64) as f64 + 0.5)
}

/// One writer: a write of its 30 series per step, through the distributors in turn,
/// until stopped. No write is retried: a 5xx's samples may or may not be stored.
async fn writer(urls: Vec<String>, w: usize, base: i64, log: Shared, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut step = -1i64;
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) {
        // Sample times follow the clock (the head's appendable window is half a 10 s
        // block behind its newest sample, so a writer must not fall behind the others).
        step = (step + 1).max((now_ms() - base) / 10);
        let series: Vec<_> = (0..SERIES)
            .map(|s| {
                let (t, v) = sample(base, step, s);
                series(
                    &[
                        ("__name__", "cluster_test"),
                        ("writer", &w.to_string()),
                        ("series", &s.to_string()),
                    ],
                    &[(t, v)],
                )
            })
            .collect();
        let url = &urls[turn % urls.len()];
        turn += 1;
        let (status, body) = push(
            &client,
            url,
            write_request(series),
            "application/x-protobuf",
        )
        .await;
        {
            let mut l = log.lock().unwrap();
            match status {
                204 => {
                    for s in 0..SERIES {
                        l.acked
                            .entry((w, s))
                            .or_default()
                            .push(sample(base, step, s));
                    }
                    l.ack_times[w].push(Instant::now());
                }
                500..=599 => l.failed += 1,
                _ => {
                    eprintln!("writer {w}: {status} {body}");
                    l.other += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Reads every writer's series from one querier: (writer, series) -> samples, and how
/// many times each series came back.
async fn read_back(
    client: &reqwest::Client,
    query: &str,
) -> (
    HashMap<(usize, usize), Vec<(i64, f64)>>,
    HashMap<(usize, usize), usize>,
) {
    let mut samples = HashMap::new();
    let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
    for w in 0..WRITERS {
        let q = urlencode(&format!("cluster_test{{writer=\"{w}\"}}[30m]"));
        let v = get_json(
            client,
            &format!(
                "{query}/api/v1/query?query={q}&time={}",
                now_ms() as f64 / 1000.0
            ),
        )
        .await;
        assert_eq!(v["status"], "success", "{query}: {v}");
        for s in v["data"]["result"].as_array().unwrap() {
            let series: usize = s["metric"]["series"].as_str().unwrap().parse().unwrap();
            *seen.entry((w, series)).or_default() += 1;
            let pts: &mut Vec<(i64, f64)> = samples.entry((w, series)).or_default();
            for p in s["values"].as_array().unwrap() {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                pts.push((t, p[1].as_str().unwrap().parse().unwrap()));
            }
        }
    }
    (samples, seen)
}

/// Every acknowledged sample so far is returned by every querier; at the end (`all`),
/// also: each series once, each sample once, and every sample returned was sent.
async fn verify(c: &Cluster, log: &Shared, base: i64, all: bool) -> usize {
    let acked = log.lock().unwrap().acked.clone();
    let client = reqwest::Client::new();
    let mut checked = 0;
    for q in &c.query {
        let (got, seen) = read_back(&client, q).await;
        for (key, pts) in &acked {
            let have: HashMap<i64, f64> = got
                .get(key)
                .map_or(HashMap::new(), |v| v.iter().copied().collect());
            for (t, v) in pts {
                assert_eq!(
                    have.get(t),
                    Some(v),
                    "acknowledged sample writer={} series={} t={t} missing from {q}",
                    key.0,
                    key.1
                );
                checked += 1;
            }
        }
        if all {
            for (key, n) in &seen {
                assert_eq!(*n, 1, "{q}: series {key:?} returned {n} times");
            }
            for ((w, s), pts) in &got {
                let mut ts: Vec<i64> = pts.iter().map(|p| p.0).collect();
                ts.sort_unstable();
                ts.dedup();
                assert_eq!(
                    ts.len(),
                    pts.len(),
                    "{q}: writer {w} series {s}: a sample returned twice"
                );
                for (t, v) in pts {
                    let step = (t - base) / 10;
                    assert!(
                        (t - base) % 10 == 0 && step >= 0 && sample(base, step, *s) == (*t, *v),
                        "{q}: writer {w} series {s}: ({t}, {v}) was never sent"
                    );
                }
            }
        }
    }
    checked
}

/// The longest time any writer waited between two acknowledgements in `[from, to]`.
fn longest_gap(log: &Shared, from: Instant, to: Instant) -> Duration {
    let l = log.lock().unwrap();
    let mut worst = Duration::ZERO;
    for times in &l.ack_times {
        let mut prev = from;
        for t in times.iter().filter(|t| **t >= from && **t <= to) {
            worst = worst.max(t.duration_since(prev));
            prev = *t;
        }
        worst = worst.max(to.saturating_duration_since(prev));
    }
    worst
}

fn acks(log: &Shared) -> usize {
    log.lock().unwrap().ack_times.iter().map(Vec::len).sum()
}

/// Runs one fault under the writers: `fault`, a while with the fault on, `recover`,
/// a while after. Asserts writes were acknowledged while the fault was on (when
/// `quorum_kept`) and after recovery, then that every acknowledged sample is returned.
/// The cluster under the writers' load.
struct Load<'a> {
    c: &'a Cluster,
    log: Shared,
    base: i64,
}

async fn scenario(
    load: &Load<'_>,
    name: &str,
    quorum_kept: bool,
    fault: impl FnOnce(),
    hold: Duration,
    recover: impl FnOnce(),
) {
    let (c, log, base) = (load.c, &load.log, load.base);
    let start = Instant::now();
    let before = acks(log);
    tokio::task::block_in_place(fault);
    let during_from = acks(log);
    tokio::time::sleep(hold).await;
    let during = acks(log) - during_from;
    tokio::task::block_in_place(recover);
    let after_from = acks(log);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = acks(log) - after_from;
    let gap = longest_gap(log, start, Instant::now());
    eprintln!(
        "{name}: {} writes acknowledged ({during} while the fault was on, {after} after recovery); longest write gap {:.1} s",
        acks(log) - before,
        gap.as_secs_f64()
    );
    if quorum_kept {
        assert!(
            during > 0,
            "{name}: no write acknowledged while two of three nodes were up"
        );
    }
    assert!(after > 0, "{name}: no write acknowledged after recovery");
    let n = verify(c, log, base, false).await;
    eprintln!("{name}: {n} acknowledged samples returned by both queriers");
}

fn signal(pid: i32, sig: i32) {
    unsafe {
        libc::kill(pid, sig);
    }
}

async fn faults_under_load(c: &Cluster) {
    let log: Shared = Arc::new(Mutex::new(Log {
        ack_times: vec![Vec::new(); WRITERS],
        ..Log::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let base = now_ms();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(c.push.clone(), w, base, log.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let load = Load {
        c,
        log: log.clone(),
        base,
    };

    scenario(
        &load,
        "kill -9 of ingester-2",
        true,
        || {
            c.run(&["kill", "ingester-2"]);
        },
        Duration::from_secs(5),
        || {
            c.run(&["start", "ingester-2"]);
        },
    )
    .await;
    scenario(
        &load,
        "ingester-1 cut off from its peers",
        true,
        || {
            c.run(&["partition", "ingester-1"]);
        },
        Duration::from_secs(8),
        || {
            c.run(&["heal", "ingester-1"]);
        },
    )
    .await;
    scenario(
        &load,
        "ingester-3 can send but not hear",
        true,
        || {
            c.run(&["partition", "ingester-3", "--asymmetric"]);
        },
        Duration::from_secs(10),
        || {
            c.run(&["heal", "ingester-3"]);
        },
    )
    .await;
    let paused = c.pid("ingester-1");
    scenario(
        &load,
        "ingester-1 paused for 20 s",
        true,
        || signal(paused, libc::SIGSTOP),
        Duration::from_secs(20),
        || signal(paused, libc::SIGCONT),
    )
    .await;
    let snapshot_to = SnapshotKill::default();
    scenario(
        &load,
        "kill -9 of a leader while it streams a snapshot to ingester-2",
        // The group whose leader dies commits again only once ingester-2 (which needs
        // a snapshot) has caught up with the new leader.
        false,
        || snapshot_to.fault(c),
        Duration::from_secs(5),
        || snapshot_to.recover(c),
    )
    .await;
    snapshot_to.check(c).await;
    scenario(
        &load,
        "the bucket unreachable for 2 minutes, ingester-3 killed mid-upload",
        true,
        || {
            c.run(&["partition", "bucket"]);
            // Seals are logged and uploads hang on the silent bucket meanwhile.
            std::thread::sleep(Duration::from_secs(60));
            c.run(&["kill", "ingester-3"]);
        },
        Duration::from_secs(60),
        || {
            c.run(&["start", "ingester-3"]);
            c.run(&["heal", "bucket"]);
        },
    )
    .await;
    scenario(
        &load,
        "kill -9 of every ingester, then all restarted",
        false,
        || {
            for n in ["ingester-1", "ingester-2", "ingester-3"] {
                c.run(&["kill", n]);
            }
        },
        Duration::from_secs(2),
        || {
            // Each start waits for its node to be ready, which needs its groups'
            // leaders: the first two start together, so their groups can elect.
            let dir = c.dir.path().to_path_buf();
            let second = std::thread::spawn(move || run_script(&dir, &["start", "ingester-2"]));
            c.run(&["start", "ingester-1"]);
            second.join().unwrap();
            c.run(&["start", "ingester-3"]);
        },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let ok = acks(&log);
    let (failed, other) = {
        let l = log.lock().unwrap();
        (l.failed, l.other)
    };
    eprintln!("writes: {ok} acknowledged, {failed} failed with 5xx, {other} other");
    assert_eq!(other, 0, "only 204 and 5xx are expected");
    assert!(
        ok > 200,
        "too few writes acknowledged to prove anything: {ok}"
    );
    let n = verify(c, &log, base, true).await;
    assert_eq!(n, 2 * ok * SERIES);
    eprintln!("every one of {ok} acknowledged writes returned exactly once by both queriers");
    let in_heads = replicas_agree(c).await;
    eprintln!("{in_heads} samples in the heads (writers' and Prometheus')");
}

/// The size of a group's current snapshot (its checkpoint file) in the group's
/// directory on a node.
fn snapshot_size(group_dir: &Path) -> u64 {
    let sub = std::fs::read_to_string(group_dir.join("current")).unwrap();
    std::fs::read_dir(group_dir.join(sub.trim()))
        .unwrap()
        .flatten()
        .find(|f| f.file_name().to_string_lossy().starts_with("checkpoint."))
        .map(|f| f.metadata().unwrap().len())
        .unwrap()
}

async fn cluster_status(c: &Cluster) -> serde_json::Value {
    let url = format!("{}/api/v1/status/cluster", c.query[0]);
    let v = get_json(&reqwest::Client::new(), &url).await;
    assert_eq!(v["status"], "success", "{v}");
    v["data"].clone()
}

/// The replica of `group` on `node` in a cluster status.
fn replica_on<'a>(
    status: &'a serde_json::Value,
    group: u64,
    node: &str,
) -> Option<&'a serde_json::Value> {
    status["groups"]
        .as_array()?
        .iter()
        .find(|g| g["group"] == group)?["replicas"]
        .as_array()?
        .iter()
        .find(|r| {
            r["node"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{node} (")))
        })
}

/// kill -9 of a group's leader in the middle of streaming a snapshot: ingester-2 is
/// killed until groups have shipped and purged their logs past what it holds (a
/// snapshot follows every `Shipped`), then restarted behind a slow link, so its
/// leaders stream it their snapshots at 16 KiB/s; once a snapshot file is arriving
/// (`incoming-*` in the group's directory), the group's leader is killed (and
/// ingester-2 cut off for a moment, so the dead leader's kernel cannot finish the
/// stream for it), then the link is healed. ingester-2 then catches up from the new leader (its log, or its snapshot
/// when it purged past what ingester-2 holds); the half-received snapshot must leave
/// nothing behind.
#[derive(Default)]
struct SnapshotKill {
    /// (group, the node killed mid-stream, its PID)
    killed: Mutex<Option<(u64, String, i32)>>,
}

impl SnapshotKill {
    fn fault(&self, c: &Cluster) {
        tokio::runtime::Handle::current().block_on(async {
            let before = cluster_status(c).await;
            c.run(&["kill", "ingester-2"]);
            // ingester-2's newest log index per group, when it died.
            let held: HashMap<u64, u64> = (0..16u64)
                .filter_map(|g| {
                    let r = replica_on(&before, g, "ingester-2")?;
                    Some((g, r["lastLogIndex"].as_u64().unwrap_or(0)))
                })
                .collect();
            // Shipping (so snapshots) moves on only where leaders stay put; groups
            // whose leadership just moved wait for the gateways again.
            let deadline = Instant::now() + Duration::from_secs(150);
            loop {
                let now = cluster_status(c).await;
                let purged = held
                    .iter()
                    .filter(|(g, last)| {
                        ["ingester-1", "ingester-3"].iter().any(|n| {
                            replica_on(&now, **g, n)
                                .and_then(|r| r["snapshotIndex"].as_u64())
                                .is_some_and(|s| s > **last)
                        })
                    })
                    .count();
                // Most groups, ideally: what the leaders then send ingester-2 is mostly
                // snapshots, not a backlog of entries that would crowd the slow link.
                // One is enough for the scenario.
                if purged >= 12 || (purged >= 1 && Instant::now() >= deadline) {
                    eprintln!("{purged} groups snapshotted past ingester-2's log");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "no group snapshotted past ingester-2's log in 150 s"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        c.run(&["slow", "ingester-2"]);
        // Not waiting for it to be ready: behind the slow link its groups' entries and
        // snapshots queue on one connection, and it may take minutes.
        c.run(&["start", "ingester-2", "--no-wait"]);
        let groups = c.dir.path().join("ingester-2/groups");
        let deadline = Instant::now() + Duration::from_secs(60);
        // (group, bytes received so far)
        let (group, received) = loop {
            let arriving = std::fs::read_dir(&groups).unwrap().flatten().find_map(|g| {
                let file = std::fs::read_dir(g.path())
                    .ok()?
                    .flatten()
                    .find(|f| f.file_name().to_string_lossy().starts_with("incoming-"))?;
                let group = g.file_name().to_string_lossy().parse::<u64>().ok()?;
                Some((group, file.metadata().ok()?.len()))
            });
            if let Some(found) = arriving {
                break found;
            }
            assert!(
                Instant::now() < deadline,
                "no snapshot started streaming to ingester-2 in 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let status = tokio::runtime::Handle::current().block_on(cluster_status(c));
        let g = status["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["group"] == group)
            .unwrap();
        let leader = g["leaderNode"].as_str().unwrap_or_default();
        let node = ["ingester-1", "ingester-3"]
            .into_iter()
            .find(|n| leader.starts_with(&format!("{n} (")))
            .unwrap_or_else(|| {
                panic!("group {group} streams a snapshot but its leader is {leader:?}")
            });
        // The snapshot being sent: the leader's current checkpoint. Far from whole at
        // the slow link's pace, so the kill lands mid-stream.
        let sending = snapshot_size(&c.dir.path().join(format!("{node}/groups/{group}")));
        assert!(
            received + 4096 < sending,
            "group {group}: {received} of {sending} bytes already received"
        );
        let pid = c.pid(node);
        // kill -9 at once, then ingester-2 cut off (which closes the proxy's
        // connections to it): a killed process' kernel still sends what it had
        // buffered, a whole small snapshot, where a crashed machine's would not. At
        // the slow link's pace little of the rest arrives before the cut.
        signal(pid, libc::SIGKILL);
        c.run(&["partition", "ingester-2"]);
        eprintln!("group {group}: its leader {node} killed with {received} of the {sending} bytes of its snapshot sent to ingester-2");
        *self.killed.lock().unwrap() = Some((group, node.to_string(), pid));
        let deadline = Instant::now() + Duration::from_secs(10);
        while unsafe { libc::kill(pid, 0) } == 0 {
            assert!(Instant::now() < deadline, "{node} survived kill -9");
            std::thread::sleep(Duration::from_millis(50));
        }
        // At full speed again, ingester-2 catches up from the new leaders before they
        // purge past it again.
        c.run(&["heal", "ingester-2"]);
    }

    fn recover(&self, c: &Cluster) {
        let (_, node, _) = self.killed.lock().unwrap().clone().unwrap();
        c.run(&["start", &node]);
        c.run(&["wait", "ingester-2"]);
    }

    /// ingester-2's replica of the group caught up with the new leader, from its log or
    /// its snapshot, never from the killed leader's (its stream broke), and no file of
    /// the broken stream is left.
    async fn check(&self, c: &Cluster) {
        let (group, _, killed_pid) = self.killed.lock().unwrap().clone().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = cluster_status(c).await;
            let caught_up = replica_on(&status, group, "ingester-2")
                .is_some_and(|r| r["lag"] == 0 && !r["appliedIndex"].is_null());
            if caught_up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ingester-2's replica of group {group} did not catch up: {status}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let dir = c.dir.path().join(format!("ingester-2/groups/{group}"));
        let left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|f| f.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with("incoming-"))
            .collect();
        assert!(left.is_empty(), "{}: {left:?} left behind", dir.display());
        // The snapshot the replica holds now: built by itself, or received; a
        // snapshot's id names the process that built it (`built-<pid>-<n>`).
        let current = std::fs::read_to_string(dir.join("current")).unwrap();
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join(current.trim()).join("meta.json")).unwrap(),
        )
        .unwrap();
        let id = meta["meta"]["snapshot_id"].as_str().unwrap().to_string();
        assert!(
            !id.starts_with(&format!("built-{killed_pid}-")),
            "group {group}: ingester-2 installed {id}, the killed leader's snapshot: its stream was not broken"
        );
        eprintln!(
            "group {group}: ingester-2 caught up with the new leader (its snapshot now: {id})"
        );
    }
}

/// Once the writes stopped, every group's three replicas reach the same applied index
/// and hold identical heads (digests from /api/v1/status/cluster, each node asked over
/// gRPC); then `cluster.sh status` shows the groups through `hearth cluster status`.
/// Returns the samples the heads hold (each group counted once).
async fn replicas_agree(c: &Cluster) -> u64 {
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/status/cluster?digests=true", c.query[0]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let groups = loop {
        let v = get_json(&client, &url).await;
        assert_eq!(v["status"], "success", "{v}");
        let groups = v["data"]["groups"].as_array().unwrap().clone();
        let settled = v["data"]["nodes"].as_array().unwrap().len() == 3
            && groups.len() == 16
            && groups.iter().all(|g| {
                let rs = g["replicas"].as_array().unwrap();
                rs.len() == 3
                    && !g["leader"].is_null()
                    && rs
                        .iter()
                        .all(|r| r["lag"] == 0 && r["appliedIndex"] == rs[0]["appliedIndex"])
            });
        if settled {
            break groups;
        }
        assert!(Instant::now() < deadline, "replicas did not settle: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (mut series, mut samples) = (0, 0);
    for g in &groups {
        let rs = g["replicas"].as_array().unwrap();
        let digest = &rs[0]["digest"];
        assert!(digest.is_object(), "{g}");
        for r in rs {
            assert_eq!(
                &r["digest"], digest,
                "group {}: replicas differ: {g}",
                g["group"]
            );
        }
        series += digest["series"].as_u64().unwrap();
        samples += digest["samples"].as_u64().unwrap();
    }
    // The writers' series and Prometheus' (the interop scenario), each in one group.
    assert!(
        series >= (WRITERS * SERIES) as u64,
        "{series} series in the heads"
    );
    eprintln!("16 groups: every replica at the same applied index with the same head digest ({series} series)");
    let status = c.run(&["status"]);
    assert_eq!(status.matches(" leader ").count(), 16, "{status}");
    assert_eq!(status.matches(" follower ").count(), 32, "{status}");
    assert!(status.contains("ingester-2 (127.0.0.1:"), "{status}");
    // Each node's /metrics: a line per group, each group led by exactly one node, and
    // commits timed on the leaders.
    let mut leaders = 0.0;
    let mut commits = 0.0;
    for n in 1..=3 {
        let port = c.port(&format!("HTTP_ingester_{n}"));
        let body = get_text(&client, &format!("http://127.0.0.1:{port}/metrics")).await;
        let values = |name: &str| -> Vec<f64> {
            body.lines()
                .filter(|l| l.starts_with(&format!("{name}{{group=")))
                .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
                .collect()
        };
        assert_eq!(values("hearth_raft_leader").len(), 16, "{body}");
        leaders += values("hearth_raft_leader").iter().sum::<f64>();
        commits += values("hearth_raft_commit_seconds_count")
            .iter()
            .sum::<f64>();
    }
    assert_eq!(leaders, 16.0);
    assert!(commits > 0.0);
    samples
}

/// No sample is in the bucket twice. A leader that takes over a cut uploads the same
/// blocks under the same ids, and late data goes into blocks of their own, so two
/// blocks cut from one group's head (level 1, raw) for the same tenant may overlap in
/// time only when one holds late data: every such overlapping pair is read back, and
/// no (series, timestamp) may be in both. Reads cannot show this (they merge equal
/// timestamps). The compactor's deletion delay (12 h) keeps the blocks it merged
/// listable. Returns the level-1 blocks and the overlapping pairs read.
async fn bucket_holds_each_sample_once(c: &Cluster) -> (usize, usize) {
    use futures::{StreamExt, TryStreamExt};
    use hearth_storage::{BlockMeta, BlockReader};
    use object_store::ObjectStoreExt;

    let s3 = c.port("S3_PORT");
    let cfg = hearth_storage::BucketConfig {
        backend: hearth_storage::Backend::S3,
        s3: hearth_storage::bucket::S3Config {
            endpoint: format!("127.0.0.1:{s3}"),
            bucket_name: "hearth".into(),
            region: "us-east-1".into(),
            access_key_id: "hearth".into(),
            secret_access_key: "hearth-secret".into(),
            insecure: true,
        },
        ..Default::default()
    };
    let bucket = hearth_storage::open_bucket(&cfg).unwrap();
    let objects: Vec<_> = bucket.list(None).try_collect().await.unwrap();
    let metas: Vec<BlockMeta> = futures::stream::iter(
        objects
            .iter()
            .filter(|o| o.location.as_ref().ends_with("/meta.json"))
            .map(|o| {
                let bucket = bucket.clone();
                let path = o.location.clone();
                async move {
                    let body = bucket.get(&path).await.unwrap().bytes().await.unwrap();
                    serde_json::from_slice::<BlockMeta>(&body).unwrap()
                }
            }),
    )
    .buffer_unordered(8)
    .collect()
    .await;
    let mut cut: Vec<BlockMeta> = metas
        .into_iter()
        .filter(|m| m.compaction.level == 1 && m.hearth.resolution == 0)
        .collect();
    cut.sort_by_key(|m| (m.hearth.shard_group, m.hearth.tenant.clone(), m.min_time));
    let all =
        hearth_core::Matcher::new(hearth_core::MatchOp::RegexMatch, "__name__", ".+").unwrap();
    let samples_of = |m: BlockMeta| {
        let bucket = bucket.clone();
        let all = all.clone();
        async move {
            let reader = Arc::new(BlockReader::open(bucket, m).await.unwrap());
            let mut out = std::collections::HashSet::new();
            for s in reader.select(&[all], i64::MIN, i64::MAX).await.unwrap() {
                let labels = s.labels.to_string();
                let mut samples = Vec::new();
                hearth_series::merge::samples_of(s.data, &mut samples);
                out.extend(samples.into_iter().map(|x| (labels.clone(), x.t)));
            }
            out
        }
    };
    let mut pairs = 0;
    for (i, a) in cut.iter().enumerate() {
        for b in &cut[i + 1..] {
            let same = (a.hearth.shard_group, &a.hearth.tenant)
                == (b.hearth.shard_group, &b.hearth.tenant);
            if !same || b.min_time >= a.max_time {
                continue;
            }
            pairs += 1;
            let (x, y) = (samples_of(a.clone()).await, samples_of(b.clone()).await);
            let both: Vec<_> = x.intersection(&y).take(3).collect();
            assert!(
                both.is_empty(),
                "blocks {} and {} (group {:?}) both hold {both:?}",
                a.ulid,
                b.ulid,
                a.hearth.shard_group
            );
        }
    }
    (cut.len(), pairs)
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

    // 2. Faults under load.
    faults_under_load(&c).await;

    // 3. Whatever the faults did to shipping, the bucket holds each sample once.
    let (blocks, pairs) = bucket_holds_each_sample_once(&c).await;
    assert!(blocks > 16, "only {blocks} blocks shipped");
    eprintln!("{blocks} blocks cut from the heads, {pairs} pairs of them overlapping in time: no sample in two of them");
}
