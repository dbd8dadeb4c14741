//! Replication hot paths: a write part's encoding and decoding, the shared log engine's
//! append (entries of several groups, the page-cache write and the in-memory index; one
//! flush per call), reading recent entries back for replication, and a write through a
//! one-replica group end to end (proposer, openraft, log append and fsync, apply to the
//! head), the path every write of the single process takes.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use hearth_core::{Labels, Sample, Tenant, WriteBatch};
use hearth_ingester::replication::{LogEngine, LogEngineOptions, Replica, ReplicaOptions};
use hearth_ingester::HeadOptions;

fn wait_durable(e: &LogEngine, group: u32, entries: Vec<(u64, Bytes)>) {
    let (tx, rx) = std::sync::mpsc::channel();
    e.append(group, entries, Box::new(move |r| tx.send(r).unwrap()))
        .unwrap();
    rx.recv().unwrap().unwrap();
}

fn log_engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("raft_log");
    let payload = Bytes::from(vec![7u8; 64 << 10]);
    for fsync in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let e = LogEngine::open(
            dir.path(),
            LogEngineOptions {
                fsync,
                ..Default::default()
            },
        )
        .unwrap();
        let mut next = [1u64; 4];
        g.throughput(Throughput::Bytes((4 * 64) << 10));
        let name = if fsync {
            "append_4_groups_64KiB_fsync"
        } else {
            "append_4_groups_64KiB_no_fsync"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                for (group, n) in next.iter_mut().enumerate() {
                    wait_durable(&e, group as u32, vec![(*n, payload.clone())]);
                    *n += 1;
                }
            })
        });
        if !fsync {
            g.throughput(Throughput::Elements(64));
            g.bench_function("read_64_recent_entries", |b| {
                b.iter(|| {
                    let last = next[0] - 1;
                    black_box(
                        e.read(0, last.saturating_sub(63), last + 1, usize::MAX)
                            .unwrap(),
                    )
                })
            });
        }
    }
    g.finish();
}

/// Write `n` of a sender: its own 100 series, one sample each.
fn write(sender: i64, n: i64) -> WriteBatch {
    let series: Vec<_> = (0..100)
        .map(|s| {
            (
                Labels::from_pairs(&[
                    ("__name__", "node_cpu_seconds_total"),
                    ("instance", &format!("host-{s}:9100")),
                    ("job", "node"),
                    ("sender", &sender.to_string()),
                ]),
                vec![Sample::new(1_000_000 + n * 15_000, n as f64)],
            )
        })
        .collect();
    WriteBatch::from_series(&series)
}

/// A one-replica group on a fresh directory, its leader elected.
fn start_group(
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    opts: ReplicaOptions,
) -> Replica {
    rt.block_on(Replica::start_alone(dir, opts)).unwrap()
}

fn one_replica_group(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tenant = Tenant::anonymous();
    let mut g = c.benchmark_group("replica");
    {
        let dir = tempfile::tempdir().unwrap();
        let replica = start_group(&rt, dir.path(), ReplicaOptions::default());
        let mut n = 0i64;
        g.throughput(Throughput::Elements(100));
        g.bench_function("push_100_series_rf1", |b| {
            b.iter_batched(
                || {
                    n += 1;
                    write(0, n)
                },
                |w| rt.block_on(replica.push(&tenant, w)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        rt.block_on(replica.shutdown());
    }
    // Sixteen senders at once (a Prometheus' remote-write shards): what the proposer's
    // batching is for, at several bounds on entries in flight.
    for in_flight in [1usize, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let opts = ReplicaOptions {
            max_in_flight: in_flight,
            ..Default::default()
        };
        let replica = start_group(&rt, dir.path(), opts);
        let replica = &replica;
        let mut n = 0; // Carried across criterion's calls: every sample is new.
        g.throughput(Throughput::Elements(1_600));
        g.bench_function(
            format!("push_16x100_series_rf1_in_flight_{in_flight}"),
            |b| {
                burst_of_16(b, &rt, &mut n, |t, w| async move {
                    replica.push(&t, w).await.map_err(|e| e.to_string())
                })
            },
        );
        rt.block_on(replica.shutdown());
    }
    g.finish();
}

/// Sixteen writes of 100 series pushed at once, each iteration the next sample of every
/// series. The writes are built outside the timing: building 1,600 label sets is the
/// sender's work, not the write path's.
fn burst_of_16<'a, F, Fut>(
    b: &mut criterion::Bencher,
    rt: &tokio::runtime::Runtime,
    n: &mut i64,
    push: F,
) where
    F: Fn(Tenant, WriteBatch) -> Fut + Copy + 'a,
    Fut: std::future::Future<Output = Result<hearth_core::PushOutcome, String>>,
{
    b.iter_batched(
        || {
            *n += 1;
            (0..16).map(|k| write(k, *n)).collect::<Vec<_>>()
        },
        |writes| {
            rt.block_on(async {
                let calls = writes.into_iter().map(|w| push(Tenant::anonymous(), w));
                for r in futures::future::join_all(calls).await {
                    assert_eq!(r.unwrap().samples_rejected, 0);
                }
            })
        },
        BatchSize::SmallInput,
    )
}

/// Ingester nodes on loopback gRPC, written through the distributor's router: one node
/// with every group at RF 1, and three nodes with every group at RF 3, on the same
/// machine in the same run (the cluster does three times the log writes, applies and
/// fsyncs on the same cores).
fn cluster_writes(c: &mut Criterion) {
    use hearth_core::shard::GroupIngester;
    use hearth_core::Ingester;
    use hearth_distributor::{GroupRouter, RouterOptions};
    use hearth_ingester::replication::{IngesterNode, NodeSpec};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("cluster");
    for (nodes, rf) in [(1usize, 1usize), (3, 3)] {
        let dirs: Vec<_> = (0..nodes).map(|_| tempfile::tempdir().unwrap()).collect();
        let addrs: Vec<String> = (0..nodes)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().to_string()
            })
            .collect();
        let (running, router) = rt.block_on(async {
            let mut running = Vec::new();
            for (i, d) in dirs.iter().enumerate() {
                let node = Arc::new(
                    IngesterNode::start(NodeSpec {
                        dir: d.path().to_path_buf(),
                        members: addrs.clone(),
                        me: i,
                        groups: 4,
                        replication_factor: rf,
                        cluster_name: "bench".into(),
                        head: HeadOptions::default(),
                        replica: ReplicaOptions::default(),
                        log: LogEngineOptions::default(),
                        peer_routes: Default::default(),
                    })
                    .await
                    .unwrap(),
                );
                let raft = node.raft_service().into_server();
                let writes = hearth_rpc::IngesterService::for_groups(
                    node.clone() as Arc<dyn GroupIngester>,
                    node.clone() as Arc<dyn hearth_core::IngesterStatus>,
                )
                .into_server();
                let l = tokio::net::TcpListener::bind(&addrs[i]).await.unwrap();
                tokio::spawn(async move {
                    let _ = tonic::transport::Server::builder()
                        .add_service(raft)
                        .add_service(writes)
                        .serve_with_incoming(
                            tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true)),
                        )
                        .await;
                });
                running.push(node);
            }
            let members = addrs
                .iter()
                .map(|a| {
                    let c = hearth_rpc::RemoteIngester::connect_lazy(a).unwrap();
                    (a.clone(), Arc::new(c) as Arc<dyn GroupIngester>)
                })
                .collect();
            let router = GroupRouter::new(members, 4, rf, RouterOptions::default());
            // Every group has a leader before timing starts.
            let mut n = 0;
            loop {
                n += 1;
                match router.push(&Tenant::anonymous(), write(99, n)).await {
                    Ok(_) => break,
                    Err(_) if n < 300 => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(e) => panic!("no leaders: {e}"),
                }
            }
            (running, router)
        });
        let router = &router;
        let mut n = 1_000;
        g.throughput(Throughput::Elements(1_600));
        g.bench_function(format!("push_16x100_series_{nodes}_nodes_rf{rf}"), |b| {
            burst_of_16(b, &rt, &mut n, |t, w| async move {
                router.push(&t, w).await.map_err(|e| e.to_string())
            })
        });
        rt.block_on(async {
            for node in &running {
                node.shutdown().await;
            }
        });
    }
    g.finish();
}

/// A write part's encoding (on the writer's task) and decoding (on a follower), with
/// its 1,000 series named by head id (the steady state) and by labels (new series).
fn entry_codec(c: &mut Criterion) {
    use hearth_ingester::replication::{Command, LogData, WritePart};
    let tenant = Tenant::anonymous();
    let mut batch_series = Vec::new();
    for sender in 0..10 {
        for s in 0..100 {
            batch_series.push((
                Labels::from_pairs(&[
                    ("__name__", "node_cpu_seconds_total"),
                    ("instance", &format!("host-{s}:9100")),
                    ("job", "node"),
                    ("sender", &sender.to_string()),
                ]),
                vec![Sample::new(1_700_000_000_000, s as f64 * 1.5)],
            ));
        }
    }
    let batch = WriteBatch::from_series(&batch_series);
    let mut g = c.benchmark_group("entry");
    g.throughput(Throughput::Elements(batch.len() as u64));
    let by_id: Vec<_> = (0..batch.len() as u32).map(Some).collect();
    let by_labels = vec![None; batch.len()];
    for (name, ids) in [("ids", &by_id), ("labels", &by_labels)] {
        g.bench_function(format!("encode_1000_series_by_{name}"), |b| {
            b.iter(|| black_box(WritePart::new(tenant.clone(), &batch, ids)))
        });
        let mut bytes = Vec::new();
        Command::write(vec![WritePart::new(tenant.clone(), &batch, ids)]).encode(&mut bytes);
        let bytes = Bytes::from(bytes);
        g.bench_function(format!("decode_1000_series_by_{name}"), |b| {
            b.iter(|| black_box(Command::decode(bytes.clone()).unwrap()))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    entry_codec,
    log_engine,
    one_replica_group,
    cluster_writes
);
criterion_main!(benches);
