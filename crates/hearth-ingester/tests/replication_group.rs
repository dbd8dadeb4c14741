//! A shard group's replicas, each on its own "node" (its own directory, log engine and
//! replica registry), over the in-process transport and over gRPC on loopback: writes
//! are acknowledged only once committed, survive the loss of a leader, a partition, a
//! restart and a purged log, and replicas that applied the same entries hold the same
//! head. Every scenario runs over both transports.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hearth_core::shard::GroupPushError;
use hearth_core::{Labels, PushError, Sample, WriteBatch};
use hearth_ingester::replication::{
    head_digest, raft_config, GrpcNetwork, HeadDigest, LocalRouter, LogEngine, LogEngineOptions,
    PeerChannels, RaftService, Replica, ReplicaOptions, ReplicaSpec,
};
use hearth_ingester::HeadOptions;
use openraft::{BasicNode, ServerState};

const GROUP: u32 = 3;

#[derive(Clone, Copy, Debug)]
enum Transport {
    InProcess,
    Grpc,
}

struct Node {
    dir: PathBuf,
    engine: Option<Arc<LogEngine>>,
    /// The replicas this node hosts, as its Raft service routes to them.
    replicas: LocalRouter,
    addr: String,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    fn engine(&mut self) -> Arc<LogEngine> {
        self.engine
            .get_or_insert_with(|| {
                Arc::new(
                    LogEngine::open(self.dir.join("raftlog"), LogEngineOptions::default()).unwrap(),
                )
            })
            .clone()
    }
}

/// Nodes `1..=n`; replica `i` of the group lives on node `i`.
struct Cluster {
    transport: Transport,
    nodes: Vec<Node>,
    /// The in-process transport's one router (every node's replicas).
    shared: LocalRouter,
    channels: PeerChannels,
    /// What replicas start with.
    opts: ReplicaOptions,
    _dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    async fn new(transport: Transport, n: usize) -> Cluster {
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut nodes = Vec::new();
        for d in &dirs {
            let replicas = LocalRouter::default();
            let (addr, server) = match transport {
                Transport::InProcess => (String::new(), None),
                Transport::Grpc => {
                    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = l.local_addr().unwrap().to_string();
                    let svc = RaftService::new(replicas.clone()).into_server();
                    let server = tokio::spawn(async move {
                        tonic::transport::Server::builder()
                            .add_service(svc)
                            .serve_with_incoming(
                                tonic::transport::server::TcpIncoming::from(l)
                                    .with_nodelay(Some(true)),
                            )
                            .await
                            .unwrap();
                    });
                    (addr, Some(server))
                }
            };
            nodes.push(Node {
                dir: d.path().to_path_buf(),
                engine: None,
                replicas,
                addr,
                server,
            });
        }
        Cluster {
            transport,
            nodes,
            shared: LocalRouter::default(),
            channels: PeerChannels::default(),
            opts: ReplicaOptions::default(),
            _dirs: dirs,
        }
    }

    fn voters(&self) -> BTreeMap<u64, BasicNode> {
        (1..=self.nodes.len() as u64)
            .map(|i| {
                let addr = match self.transport {
                    Transport::InProcess => format!("replica-{i}"),
                    Transport::Grpc => self.nodes[i as usize - 1].addr.clone(),
                };
                (i, BasicNode::new(addr))
            })
            .collect()
    }

    /// Starts replica `id` on its node (reopening the node's log if it was closed).
    async fn start(&mut self, id: u64) -> Replica {
        let transport = self.transport;
        let channels = self.channels.clone();
        let shared = self.shared.clone();
        let node = &mut self.nodes[id as usize - 1];
        let engine = node.engine();
        let spec = ReplicaSpec {
            group: GROUP,
            id,
            dir: node.dir.join(format!("group-{GROUP}")),
            head: HeadOptions::default(),
            raft: raft_config("test").unwrap(),
            opts: self.opts.clone(),
        };
        let r = match transport {
            Transport::InProcess => Replica::start(spec, engine, shared.factory(GROUP, id)).await,
            Transport::Grpc => {
                Replica::start(spec, engine, GrpcNetwork::new(channels, GROUP, id)).await
            }
        }
        .unwrap();
        shared.register(GROUP, id, r.raft().clone());
        node.replicas.register(GROUP, id, r.raft().clone());
        r
    }

    /// Stops replica `id` as a crash of its node would: the replica and its log go.
    async fn stop(&mut self, r: Replica) {
        let id = r.id();
        r.shutdown().await;
        self.shared.unregister(GROUP, id);
        let node = &mut self.nodes[id as usize - 1];
        node.replicas.unregister(GROUP, id);
        drop(r);
        node.engine = None;
    }

    /// Cuts replica `id` off from the others, both ways, or heals it.
    fn isolate(&self, id: u64, cut: bool) {
        self.shared.isolate(id, cut);
        for n in &self.nodes {
            n.replicas.isolate(id, cut);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(s) = n.server.take() {
                s.abort();
            }
        }
    }
}

/// Write `n` of the tests here.
fn write(n: i64) -> WriteBatch {
    common::write(20, n)
}

async fn leader_of(replicas: &[&Replica]) -> usize {
    for _ in 0..600 {
        for (i, r) in replicas.iter().enumerate() {
            let m = r.raft().metrics().borrow().clone();
            if m.state == ServerState::Leader && m.millis_since_quorum_ack.is_some() {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no leader within 30 s");
}

/// Pushes writes `from..to` through whichever replica leads, retrying 503s as a
/// remote-write sender does; returns the writes acknowledged.
async fn push_all(replicas: &[&Replica], from: i64, to: i64) -> Vec<i64> {
    let mut acked = Vec::new();
    for n in from..to {
        for attempt in 0.. {
            let l = leader_of(replicas).await;
            match replicas[l].push(&common::tenant(), write(n)).await {
                Ok(o) => {
                    assert_eq!(o.samples_written, 20, "write {n}: {o:?}");
                    acked.push(n);
                    break;
                }
                Err(
                    GroupPushError::Push(PushError::Unavailable(_))
                    | GroupPushError::NotLeader { .. },
                ) if attempt < 100 => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("write {n}: {e}"),
            }
        }
    }
    acked
}

async fn wait_applied(replicas: &[&Replica], index: u64) {
    for r in replicas {
        r.raft()
            .wait(Some(Duration::from_secs(30)))
            .applied_index_at_least(Some(index), "catch up")
            .await
            .unwrap();
    }
}

fn last_applied(r: &Replica) -> u64 {
    r.raft()
        .metrics()
        .borrow()
        .last_applied
        .map_or(0, |l| l.index)
}

fn digest(r: &Replica) -> HeadDigest {
    head_digest(&r.head())
}

async fn one_replica_keeps_writes_across_restarts_and_snapshots(transport: Transport) {
    let mut c = Cluster::new(transport, 1).await;
    let r = c.start(1).await;
    r.initialize(c.voters()).await.unwrap();
    assert_eq!(push_all(&[&r], 0, 50).await.len(), 50);
    // A sender's retry of its last write (whose outcome it did not learn) is a no-op
    // that counts as written: retries are harmless.
    let again = r.push(&common::tenant(), write(49)).await.unwrap();
    assert_eq!(again.samples_written, 20);
    let before = digest(&r);
    assert_eq!(before.samples, 50 * 20);
    c.stop(r).await;

    // A restart replays the log.
    let r = c.start(1).await;
    leader_of(&[&r]).await;
    wait_applied(&[&r], 51).await;
    assert_eq!(digest(&r), before);
    // Snapshot, which lets openraft purge the log, then restart from it.
    // (Never hold the metrics' borrow across an await: it blocks their sender.)
    let applied = r.raft().metrics().borrow().last_applied.unwrap().index;
    r.raft().trigger().snapshot().await.unwrap();
    r.raft()
        .wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= applied),
            "snapshot",
        )
        .await
        .unwrap();
    push_all(&[&r], 50, 60).await;
    c.stop(r).await;

    let r = c.start(1).await;
    leader_of(&[&r]).await;
    // It started from the snapshot, and the log before it is gone.
    let m = r.raft().metrics().borrow().clone();
    assert!(m.snapshot.is_some_and(|s| s.index >= 52), "{m:?}");
    assert!(m.purged.is_some_and(|p| p.index >= 52), "{m:?}");
    for _ in 0..300 {
        if digest(&r).samples == 60 * 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(digest(&r).samples, 60 * 20);
    c.stop(r).await;
}

/// Replicas 1..=3 started, the group initialized.
async fn three(transport: Transport) -> (Cluster, Vec<Option<Replica>>) {
    let mut c = Cluster::new(transport, 3).await;
    let rs = start_three(&mut c).await;
    (c, rs)
}

/// Starts replicas 1..=3 of a cluster of three nodes and initializes the group.
async fn start_three(c: &mut Cluster) -> Vec<Option<Replica>> {
    let mut rs = Vec::new();
    for id in 1..=3 {
        rs.push(Some(c.start(id).await));
    }
    rs[0]
        .as_ref()
        .unwrap()
        .initialize(c.voters())
        .await
        .unwrap();
    rs
}

fn live(rs: &[Option<Replica>]) -> Vec<&Replica> {
    rs.iter().flatten().collect()
}

async fn lose_nothing_to_a_leader_loss_or_a_partition(transport: Transport) {
    let (mut c, mut rs) = three(transport).await;
    let mut acked = push_all(&live(&rs), 0, 40).await;

    // The leader is cut off: it refuses writes at once once its lease runs out (never
    // hangs them, never acknowledges them), the others elect a new leader, and writes
    // go on there.
    let old = live(&rs)[leader_of(&live(&rs)).await].id();
    c.isolate(old, true);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    match rs[old as usize - 1]
        .as_ref()
        .unwrap()
        .push(&common::tenant(), write(1_000))
        .await
    {
        // Still the leader in its own view, so the lease refuses it.
        Err(GroupPushError::Push(PushError::Unavailable(m))) => {
            assert!(m.contains("lease"), "{m}")
        }
        other => panic!("a cut-off leader answered {other:?}"),
    }
    {
        let rest: Vec<&Replica> = live(&rs).into_iter().filter(|r| r.id() != old).collect();
        acked.extend(push_all(&rest, 40, 80).await);
    }
    c.isolate(old, false);

    // Then a leader crashes (its replica and its node's log close), writes go on, and it
    // comes back from its log and catches up.
    let killed = live(&rs)[leader_of(&live(&rs)).await].id();
    let r = rs[killed as usize - 1].take().unwrap();
    c.stop(r).await;
    acked.extend(push_all(&live(&rs), 80, 120).await);
    rs[killed as usize - 1] = Some(c.start(killed).await);
    acked.extend(push_all(&live(&rs), 120, 130).await);

    // Every replica applies the last entry; all three hold the same head, and it holds
    // every acknowledged sample once.
    let all = live(&rs);
    let index = last_applied(all[leader_of(&all).await]);
    wait_applied(&all, index).await;
    let digests: Vec<HeadDigest> = all.iter().map(|r| digest(r)).collect();
    assert_eq!(acked.len(), 130);
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    assert_eq!(digests[0].samples, 130 * 20);
    assert_eq!(digests[0].series, 20);
    for r in rs.into_iter().flatten() {
        c.stop(r).await;
    }
}

async fn catch_up_from_a_snapshot_behind_a_purged_log(transport: Transport) {
    let (mut c, mut rs) = three(transport).await;
    push_all(&live(&rs), 0, 20).await;
    // Stop a follower; the others go on, snapshot and purge their logs.
    let follower = {
        let all = live(&rs);
        let l = all[leader_of(&all).await].id();
        (1..=3).find(|i| *i != l).unwrap()
    };
    let f = rs[follower as usize - 1].take().unwrap();
    c.stop(f).await;
    push_all(&live(&rs), 20, 60).await;
    // What each had applied when asked to snapshot; entries may apply after that, so
    // wait for the log purged at least that far.
    let mut asked = Vec::new();
    for r in live(&rs) {
        asked.push(r.raft().metrics().borrow().last_applied.unwrap().index);
        r.raft().trigger().snapshot().await.unwrap();
    }
    for (r, index) in live(&rs).into_iter().zip(asked) {
        r.raft()
            .wait(Some(Duration::from_secs(30)))
            .metrics(
                |m| m.purged.is_some_and(|p| p.index >= index),
                "log purged behind the snapshot",
            )
            .await
            .unwrap();
    }
    // Back, it is behind the leader's purged log: only a snapshot can bring it up.
    rs[follower as usize - 1] = Some(c.start(follower).await);
    push_all(&live(&rs), 60, 70).await;
    let all = live(&rs);
    let index = last_applied(all[leader_of(&all).await]);
    wait_applied(&all, index).await;
    let m = rs[follower as usize - 1]
        .as_ref()
        .unwrap()
        .raft()
        .metrics()
        .borrow()
        .clone();
    assert!(
        m.snapshot.is_some(),
        "the follower caught up without a snapshot: {m:?}"
    );
    let digests: Vec<HeadDigest> = all.iter().map(|r| digest(r)).collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    assert_eq!(digests[0].samples, 70 * 20);
    for r in rs.into_iter().flatten() {
        c.stop(r).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_one_replica_keeps_writes_across_restarts_and_snapshots() {
    one_replica_keeps_writes_across_restarts_and_snapshots(Transport::InProcess).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_one_replica_keeps_writes_across_restarts_and_snapshots() {
    one_replica_keeps_writes_across_restarts_and_snapshots(Transport::Grpc).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_three_replicas_lose_nothing_to_a_leader_loss_or_a_partition() {
    lose_nothing_to_a_leader_loss_or_a_partition(Transport::InProcess).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_three_replicas_lose_nothing_to_a_leader_loss_or_a_partition() {
    lose_nothing_to_a_leader_loss_or_a_partition(Transport::Grpc).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_a_replica_behind_a_purged_log_catches_up_from_a_snapshot() {
    catch_up_from_a_snapshot_behind_a_purged_log(Transport::InProcess).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_a_replica_behind_a_purged_log_catches_up_from_a_snapshot() {
    catch_up_from_a_snapshot_behind_a_purged_log(Transport::Grpc).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_entries() {
    let mut c = Cluster::new(Transport::InProcess, 1).await;
    let r = c.start(1).await;
    r.initialize(c.voters()).await.unwrap();
    leader_of(&[&r]).await;
    let before = r.raft().metrics().borrow().last_log_index.unwrap_or(0);
    // Sixteen senders, each its own series, at once: while one entry is in flight the
    // others queue and go together, so they take far fewer than sixteen entries.
    let writes: Vec<WriteBatch> = (0..16)
        .map(|k| {
            let series: Vec<_> = (0..100)
                .map(|s| {
                    (
                        Labels::from_pairs(&[
                            ("__name__", "up"),
                            ("sender", &k.to_string()),
                            ("s", &s.to_string()),
                        ]),
                        vec![Sample::new(1_000, 1.0)],
                    )
                })
                .collect();
            WriteBatch::from_series(&series)
        })
        .collect();
    let t = common::tenant();
    let calls: Vec<_> = writes.into_iter().map(|w| r.push(&t, w)).collect();
    for o in futures::future::join_all(calls).await {
        assert_eq!(o.unwrap().samples_written, 100);
    }
    let entries = r.raft().metrics().borrow().last_log_index.unwrap() - before;
    assert!(entries < 16, "16 concurrent writes took {entries} entries");
    c.stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_log_is_snapshotted_and_purged() {
    let mut c = Cluster::new(Transport::InProcess, 1).await;
    c.opts.snapshot_after_log_bytes = 16 << 10;
    let r = c.start(1).await;
    r.initialize(c.voters()).await.unwrap();
    push_all(&[&r], 0, 200).await;
    // Without being asked, the replica snapshots once its log passes 16 KiB, and
    // openraft purges the log behind the snapshot.
    let mut purged = None;
    for _ in 0..300 {
        purged = r.raft().metrics().borrow().purged;
        if purged.is_some_and(|p| p.index > 100) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(purged.is_some_and(|p| p.index > 100), "purged {purged:?}");
    let engine = c.nodes[0].engine();
    assert!(
        engine.group_bytes(GROUP) < 64 << 10,
        "{} bytes left",
        engine.group_bytes(GROUP)
    );
    assert_eq!(digest(&r).samples, 200 * 20);
    c.stop(r).await;
}

const HOUR: i64 = 3_600_000;
/// A day boundary, so block ranges start on it.
const BASE: i64 = 1_700_006_400_000 / (24 * HOUR) * (24 * HOUR);

/// Minute `k` of the shipping test: 10 series, one sample each.
fn minute(k: i64) -> WriteBatch {
    let series: Vec<_> = (0..10)
        .map(|i| {
            (
                Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]),
                vec![Sample::new(BASE + k * 60_000, (k * 10 + i) as f64)],
            )
        })
        .collect();
    WriteBatch::from_series(&series)
}

/// Shipping under Raft: a leader seals a range (a committed `Seal`) and uploads its
/// blocks, then dies before the `Shipped` entry. The new leader finds the range sealed
/// and not shipped, ships it again under the same block ids (they come from the sealed
/// data, which every replica holds identically), and commits `Shipped`: the bucket holds
/// each block once, every replica dropped the shipped data the same way, and blocks plus
/// heads hold every acknowledged sample once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_resumes_a_cut_under_the_same_block_ids() {
    use hearth_ingester::{ShippedTo, Shipper, ShippingLog};
    let (mut c, mut rs) = three(Transport::InProcess).await;
    // Six hours of minutes: two whole 2 h ranges are due (the head spans 1.5 ranges).
    let tenant = common::tenant();
    for k in 0..6 * 60 {
        for attempt in 0.. {
            let l = leader_of(&live(&rs)).await;
            match live(&rs)[l].push(&tenant, minute(k)).await {
                Ok(o) => {
                    assert_eq!(o.samples_written, 10);
                    break;
                }
                Err(e) if attempt < 100 => {
                    eprintln!("minute {k}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("minute {k}: {e}"),
            }
        }
    }
    let bucket = Arc::new(hearth_storage::testing::WatchedBucket::default());
    let shipper_of = |r: Arc<Replica>| {
        Shipper::new(
            r as Arc<dyn ShippingLog>,
            Arc::new(hearth_storage::BlockWriter::new(bucket.clone())),
            ShippedTo::Store(Arc::new(hearth_storage::BucketStore::new(bucket.clone()))),
            2 * HOUR,
        )
    };

    // The leader seals and uploads, then crashes before Shipped.
    let old = leader_of(&live(&rs)).await;
    let leader = Arc::new(rs[old].take().unwrap());
    let before = BASE + 4 * HOUR;
    let first = shipper_of(leader.clone());
    first.seal(&tenant, before).await.unwrap();
    let uploaded = first.upload_sealed(&tenant, before).await.unwrap();
    assert_eq!(uploaded.len(), 2, "two 2 h blocks");
    let ids: Vec<String> = uploaded.iter().map(|b| b.meta.ulid.clone()).collect();
    let blocks_then = bucket.committed_blocks().await;
    assert_eq!(blocks_then.len(), 2);
    drop(first);
    let sealed_index = last_applied(&leader);
    c.stop(Arc::try_unwrap(leader).ok().expect("no other owner"))
        .await;

    // The new leader resumes: the seal is committed (so replicated), the range is due.
    let new_id = live(&rs)[leader_of(&live(&rs)).await].id();
    let new = new_id as usize - 1;
    let replica = Arc::new(rs[new].take().unwrap());
    wait_applied(&[&replica], sealed_index).await;
    let second = shipper_of(replica.clone());
    let shipped = second.ship_due().await.unwrap();
    let mut again: Vec<String> = shipped.iter().map(|m| m.ulid.clone()).collect();
    again.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(again, ids, "the same blocks, under the same ids");
    assert_eq!(
        bucket.committed_blocks().await,
        blocks_then,
        "no block twice"
    );
    let in_blocks: u64 = shipped.iter().map(|m| m.stats.num_samples).sum();
    assert_eq!(in_blocks, 4 * 60 * 10);
    // A shipped block is followed by a snapshot, so the log of its writes can go.
    let shipped_index = last_applied(&replica);
    replica
        .raft()
        .wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= shipped_index),
            "snapshot after shipping",
        )
        .await
        .unwrap();
    drop(second);
    rs[new] = Some(Arc::try_unwrap(replica).ok().expect("no other owner"));

    // The old leader comes back and catches up; every replica dropped the shipped data
    // and holds the same head: the last two hours.
    let back = c.start(old as u64 + 1).await;
    rs[old] = Some(back);
    let l = leader_of(&live(&rs)).await;
    let index = last_applied(live(&rs)[l]);
    wait_applied(&live(&rs), index).await;
    let digests: Vec<HeadDigest> = live(&rs).iter().map(|r| digest(r)).collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    assert_eq!(digests[0].samples, 2 * 60 * 10);
    for r in live(&rs) {
        assert!(r.head().tenant(&tenant).unwrap().min_time() >= before);
    }
    for r in rs.into_iter().flatten() {
        c.stop(r).await;
    }
}

/// Series limits are the leader's check before proposing: a write over the tenant's
/// limit has the new series beyond it refused (the rest stored, the refusal named), and
/// every replica applies exactly what was proposed, so they hold the same series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_limits_are_checked_before_proposing() {
    let overrides = hearth_core::Overrides::new(hearth_core::TenantLimits {
        max_global_series_per_user: 12,
        ..Default::default()
    });
    let mut c = Cluster::new(Transport::InProcess, 3).await;
    c.opts.series_limits = hearth_ingester::SeriesLimits {
        overrides: Arc::new(overrides),
        ingesters: 1,
        ..Default::default()
    };
    let rs = start_three(&mut c).await;
    let l = leader_of(&live(&rs)).await;
    let leader = live(&rs)[l];
    // 20 new series against a limit of 12: 12 stored, 8 refused.
    let first = leader.push(&common::tenant(), write(1)).await.unwrap();
    assert_eq!((first.samples_written, first.samples_rejected), (12, 8));
    assert!(
        first
            .first_rejection
            .as_deref()
            .is_some_and(|m| m.contains("per-tenant series limit of 12")),
        "{first:?}"
    );
    // The same series again: the 12 held take their sample, the 8 are still refused.
    let second = leader.push(&common::tenant(), write(2)).await.unwrap();
    assert_eq!((second.samples_written, second.samples_rejected), (12, 8));
    let index = last_applied(leader);
    wait_applied(&live(&rs), index).await;
    let digests: Vec<HeadDigest> = live(&rs).iter().map(|r| digest(r)).collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    assert_eq!((digests[0].series, digests[0].samples), (12, 24));
    for r in rs.into_iter().flatten() {
        c.stop(r).await;
    }
}

/// A replica restarted from a snapshot taken after shipping holds the head its peers
/// hold: the group ships with the cluster's wait (`ShippedTo::Gateways`), writes go on
/// between the seal and the Shipped, the leader snapshots after Shipped, restarts from
/// that snapshot and replays the rest, then all three restart at once; every replica
/// at the same applied index then has the same digest, and series wholly below the
/// shipped boundary are gone from every head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_restarted_from_a_snapshot_after_shipping_matches_its_peers() {
    use hearth_ingester::{ShippedTo, Shipper, ShippingLog};
    let (mut c, mut rs) = three(Transport::InProcess).await;
    for k in 0..6 * 60 {
        push_minute(&live(&rs), k).await;
        // Series that stop early, wholly below the boundary that will be shipped (a
        // scrape target that went away).
        if k < 60 {
            let l = leader_of(&live(&rs)).await;
            live(&rs)[l]
                .push(&common::tenant(), old_series(k))
                .await
                .unwrap();
        }
    }
    let bucket = Arc::new(hearth_storage::testing::WatchedBucket::default());
    let l = leader_of(&live(&rs)).await;
    let th = live(&rs)[l].head().tenant(&common::tenant()).unwrap();
    let stale_ids: Vec<_> = old_series(0)
        .iter()
        .map(|s| th.lookup_id(s.hash, &s.labels))
        .collect();
    assert!(stale_ids.iter().all(Option::is_some));
    let max_stale = stale_ids.iter().flatten().max().copied().unwrap();
    drop(th);
    let leader = Arc::new(rs[l].take().unwrap());
    let shipper = Shipper::new(
        leader.clone() as Arc<dyn ShippingLog>,
        Arc::new(hearth_storage::BlockWriter::new(bucket.clone())),
        ShippedTo::Gateways {
            after: Duration::from_millis(300),
        },
        2 * HOUR,
    );
    assert_eq!(shipper.ship_due().await.unwrap().len(), 2);
    // Writes go on while the group waits for the gateways.
    {
        let mut all = live(&rs);
        all.insert(l, &leader);
        for k in 6 * 60..7 * 60 {
            push_minute(&all, k).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    shipper.ship_due().await.unwrap();
    drop(shipper);
    rs[l] = Some(Arc::try_unwrap(leader).ok().expect("no other owner"));
    let r = rs[l].as_ref().unwrap();
    let shipped_index = last_applied(r);
    r.raft()
        .wait(Some(Duration::from_secs(30)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= shipped_index),
            "snapshot after shipping",
        )
        .await
        .unwrap();
    // A write proposed with the ids its series had before they were collected (as
    // one proposed just before a Shipped is applied): no replica applies it by those
    // ids, and the leader writes it again by labels, as new series.
    let late = old_series(7 * 60);
    let r = rs[l].as_ref().unwrap();
    let collected = r.head().tenant(&common::tenant()).unwrap();
    assert!(late
        .iter()
        .all(|s| collected.lookup_id(s.hash, &s.labels).is_none()));
    let out = r
        .push_with_ids(&common::tenant(), late.clone(), stale_ids)
        .await
        .unwrap();
    assert_eq!((out.samples_written, out.samples_rejected), (30, 0));
    let again = r.head().tenant(&common::tenant()).unwrap();
    assert!(late.iter().all(|s| again
        .lookup_id(s.hash, &s.labels)
        .is_some_and(|id| id > max_stale)));
    for k in 7 * 60..8 * 60 {
        push_minute(&live(&rs), k).await;
    }
    // The leader restarts from its snapshot and replays the rest.
    let stopped = rs[l].take().unwrap();
    c.stop(stopped).await;
    for k in 8 * 60..9 * 60 {
        push_minute(&live(&rs), k).await;
    }
    rs[l] = Some(c.start(l as u64 + 1).await);
    for k in 9 * 60..10 * 60 {
        push_minute(&live(&rs), k).await;
    }
    // Then every replica at once, each from its own snapshot (or none) and its log.
    for r in rs.iter_mut() {
        let r = r.take().unwrap();
        c.stop(r).await;
    }
    for id in 1..=3u64 {
        rs[id as usize - 1] = Some(c.start(id).await);
    }
    for k in 10 * 60..10 * 60 + 10 {
        push_minute(&live(&rs), k).await;
    }
    let now = leader_of(&live(&rs)).await;
    let index = last_applied(live(&rs)[now]);
    wait_applied(&live(&rs), index).await;
    let digests: Vec<HeadDigest> = live(&rs).iter().map(|r| digest(r)).collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    // The series that stopped early went with the shipped data; the late write's 30
    // samples came back.
    assert_eq!(digests[0].samples, (10 * 60 + 10 - 4 * 60) * 10 + 30);
    for r in rs.into_iter().flatten() {
        c.stop(r).await;
    }
}

/// Writes minute `k` through whichever replica leads, waiting out elections.
async fn push_minute(live: &[&Replica], k: i64) {
    let tenant = common::tenant();
    for attempt in 0.. {
        let l = leader_of(live).await;
        match live[l].push(&tenant, minute(k)).await {
            Ok(_) => return,
            Err(e) if attempt < 100 => {
                eprintln!("minute {k}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("minute {k}: {e}"),
        }
    }
}

/// Minute `k` of 30 series that stop after the first hour.
fn old_series(k: i64) -> WriteBatch {
    let series: Vec<_> = (0..30)
        .map(|i| {
            (
                Labels::from_pairs(&[("__name__", "gone"), ("i", &i.to_string())]),
                vec![Sample::new(BASE + k * 60_000, i as f64)],
            )
        })
        .collect();
    WriteBatch::from_series(&series)
}
