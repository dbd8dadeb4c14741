//! A shard group's replicas in one process, over the in-process transport: writes are
//! acknowledged only once committed, survive the loss of a leader, a partition and a
//! restart, and replicas that applied the same entries hold the same head.
//!
//! Each "node" here has its own directory and log engine, as separate processes would;
//! the cluster tests do the same with real processes and the gRPC transport.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hearth_core::{Labels, PushError, Sample, Tenant, WriteBatch};
use hearth_ingester::replication::{
    head_digest, raft_config, HeadDigest, LocalRouter, LogEngine, LogEngineOptions, Replica,
    ReplicaOptions, ReplicaSpec,
};
use hearth_ingester::HeadOptions;
use openraft::{BasicNode, ServerState};

const GROUP: u32 = 3;

struct Node {
    dir: PathBuf,
    engine: Arc<LogEngine>,
}

impl Node {
    fn open(dir: &Path) -> Node {
        let engine = LogEngine::open(dir.join("raftlog"), LogEngineOptions::default()).unwrap();
        Node {
            dir: dir.to_path_buf(),
            engine: Arc::new(engine),
        }
    }
}

async fn start(node: &Node, id: u64, router: &LocalRouter) -> Replica {
    let spec = ReplicaSpec {
        group: GROUP,
        id,
        dir: node.dir.join(format!("group-{GROUP}")),
        head: HeadOptions::default(),
        raft: raft_config("test").unwrap(),
        opts: ReplicaOptions::default(),
    };
    let r = Replica::start(spec, node.engine.clone(), router.factory(GROUP, id))
        .await
        .unwrap();
    router.register(GROUP, id, r.raft().clone());
    r
}

fn voters(ids: &[u64]) -> BTreeMap<u64, BasicNode> {
    ids.iter()
        .map(|i| (*i, BasicNode::new(format!("replica-{i}"))))
        .collect()
}

fn tenant() -> Tenant {
    Tenant::new("team-a").unwrap()
}

/// Write `n`: 20 series, one sample each at time n.
fn write(n: i64) -> WriteBatch {
    let series: Vec<_> = (0..20)
        .map(|s| {
            (
                Labels::from_pairs(&[("__name__", "up"), ("instance", &format!("host-{s}"))]),
                vec![Sample::new(1_000_000 + n * 1_000, n as f64)],
            )
        })
        .collect();
    WriteBatch::from_series(&series)
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
            match replicas[l].push(&tenant(), write(n)).await {
                Ok(o) => {
                    assert_eq!(o.samples_written, 20, "write {n}: {o:?}");
                    acked.push(n);
                    break;
                }
                Err(PushError::Unavailable(_)) if attempt < 100 => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_group_keeps_writes_across_restarts_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let router = LocalRouter::default();
    let before;
    {
        let node = Node::open(dir.path());
        let r = start(&node, 1, &router).await;
        r.initialize(voters(&[1])).await.unwrap();
        assert_eq!(push_all(&[&r], 0, 50).await.len(), 50);
        // A sender's retry of its last write (whose outcome it did not learn) is a no-op
        // that counts as written: retries are harmless.
        let again = r.push(&tenant(), write(49)).await.unwrap();
        assert_eq!(again.samples_written, 20);
        before = digest(&r);
        assert_eq!(before.samples, 50 * 20);
        r.shutdown().await;
        router.unregister(GROUP, 1);
    }
    // A restart replays the log.
    {
        let node = Node::open(dir.path());
        let r = start(&node, 1, &router).await;
        leader_of(&[&r]).await;
        wait_applied(&[&r], 51).await;
        assert_eq!(digest(&r), before);
        // Snapshot, which lets openraft purge the log, then restart from it.
        r.raft().trigger().snapshot().await.unwrap();
        // (Never hold the metrics' borrow across an await: it blocks their sender.)
        let applied = r.raft().metrics().borrow().last_applied.unwrap();
        r.raft()
            .wait(Some(Duration::from_secs(30)))
            .snapshot(applied, "snapshot")
            .await
            .unwrap();
        push_all(&[&r], 50, 60).await;
        r.shutdown().await;
        router.unregister(GROUP, 1);
    }
    let node = Node::open(dir.path());
    let r = start(&node, 1, &router).await;
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
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_lose_nothing_acknowledged_to_a_leader_loss_or_a_partition() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let router = LocalRouter::default();
    let nodes: Vec<Node> = dirs.iter().map(|d| Node::open(d.path())).collect();
    let mut replicas = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let id = i as u64 + 1;
        replicas.insert(id, start(node, id, &router).await);
    }
    replicas[&1].initialize(voters(&[1, 2, 3])).await.unwrap();
    let all = |m: &HashMap<u64, Replica>| -> Vec<u64> {
        let mut ids: Vec<u64> = m.keys().copied().collect();
        ids.sort();
        ids
    };
    let mut acked = Vec::new();
    {
        let rs: Vec<&Replica> = all(&replicas).iter().map(|i| &replicas[i]).collect();
        acked.extend(push_all(&rs, 0, 40).await);
    }

    // The leader is cut off: it refuses writes at once once its lease runs out (never
    // hangs them, never acknowledges them), the others elect a new leader, and writes
    // go on there.
    let old = {
        let rs: Vec<&Replica> = all(&replicas).iter().map(|i| &replicas[i]).collect();
        rs[leader_of(&rs).await].id()
    };
    router.isolate(old, true);
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    match replicas[&old].push(&tenant(), write(1_000)).await {
        Err(PushError::Unavailable(m)) => assert!(!m.is_empty()),
        other => panic!("a cut-off leader answered {other:?}"),
    }
    {
        let rest: Vec<&Replica> = all(&replicas)
            .iter()
            .filter(|i| **i != old)
            .map(|i| &replicas[i])
            .collect();
        acked.extend(push_all(&rest, 40, 80).await);
    }
    router.isolate(old, false);

    // Then a leader is killed (its replica stops; its node's log stays), writes go on,
    // and it comes back from its log and catches up.
    let killed = {
        let rs: Vec<&Replica> = all(&replicas).iter().map(|i| &replicas[i]).collect();
        rs[leader_of(&rs).await].id()
    };
    let r = replicas.remove(&killed).unwrap();
    r.shutdown().await;
    router.unregister(GROUP, killed);
    drop(r);
    {
        let rs: Vec<&Replica> = all(&replicas).iter().map(|i| &replicas[i]).collect();
        acked.extend(push_all(&rs, 80, 120).await);
    }
    let node = &nodes[killed as usize - 1];
    replicas.insert(killed, start(node, killed, &router).await);
    let rs: Vec<&Replica> = all(&replicas).iter().map(|i| &replicas[i]).collect();
    acked.extend(push_all(&rs, 120, 130).await);

    // Every replica applies the last entry; all three hold the same head, and it holds
    // every acknowledged sample once.
    let l = leader_of(&rs).await;
    let index = last_applied(rs[l]);
    wait_applied(&rs, index).await;
    let digests: Vec<HeadDigest> = rs.iter().map(|r| digest(r)).collect();
    assert_eq!(acked.len(), 130);
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    assert_eq!(digests[0].samples, 130 * 20);
    assert_eq!(digests[0].series, 20);
    for r in rs {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_a_purged_log_catches_up_from_a_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let router = LocalRouter::default();
    let nodes: Vec<Node> = dirs.iter().map(|d| Node::open(d.path())).collect();
    let mut replicas = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        replicas.push(Some(start(node, i as u64 + 1, &router).await));
    }
    replicas[0]
        .as_ref()
        .unwrap()
        .initialize(voters(&[1, 2, 3]))
        .await
        .unwrap();
    let live = |rs: &[Option<Replica>]| -> Vec<usize> {
        (0..rs.len()).filter(|i| rs[*i].is_some()).collect()
    };
    {
        let rs: Vec<&Replica> = replicas.iter().flatten().collect();
        push_all(&rs, 0, 20).await;
    }
    // Stop a follower; the others go on, snapshot and purge their logs.
    let follower = {
        let rs: Vec<&Replica> = replicas.iter().flatten().collect();
        let l = leader_of(&rs).await;
        (0..3).find(|i| *i != l).unwrap()
    };
    let f = replicas[follower].take().unwrap();
    f.shutdown().await;
    router.unregister(GROUP, follower as u64 + 1);
    drop(f);
    {
        let rs: Vec<&Replica> = replicas.iter().flatten().collect();
        push_all(&rs, 20, 60).await;
        for r in &rs {
            r.raft().trigger().snapshot().await.unwrap();
        }
        for r in &rs {
            let applied = r.raft().metrics().borrow().last_applied.unwrap();
            r.raft()
                .wait(Some(Duration::from_secs(30)))
                .purged(Some(applied), "purged")
                .await
                .unwrap();
        }
    }
    assert_eq!(live(&replicas).len(), 2);
    // Back, it is behind the leader's purged log: only a snapshot can bring it up.
    replicas[follower] = Some(start(&nodes[follower], follower as u64 + 1, &router).await);
    let rs: Vec<&Replica> = replicas.iter().flatten().collect();
    push_all(&rs, 60, 70).await;
    let l = leader_of(&rs).await;
    let index = last_applied(rs[l]);
    wait_applied(&rs, index).await;
    let back = replicas[follower].as_ref().unwrap();
    let m = back.raft().metrics().borrow().clone();
    assert!(
        m.snapshot.is_some(),
        "the follower caught up without a snapshot: {m:?}"
    );
    let digests: Vec<HeadDigest> = rs.iter().map(|r| digest(r)).collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    assert_eq!(digests[0].samples, 70 * 20);
    for r in rs {
        r.shutdown().await;
    }
}
