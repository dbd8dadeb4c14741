//! Ingester nodes hosting many shard groups over gRPC on loopback: three nodes, four
//! groups, three replicas each, written to through the distributor's `GroupRouter`
//! over the nodes' gRPC `PushGroup` and read through the querier's `GroupFanout` over
//! their Store service (the real paths of a cluster). A whole node stops (every replica
//! and its log at once) and comes back while writes and reads go on; the router and the
//! fan-out follow the leaders, every read returns every acknowledged sample exactly
//! once, and the replicas of every group end identical.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use hearth_core::shard::{GroupIngester, GroupReader};
use hearth_core::{Ingester, Matcher, PushError, Queryable, SelectHints, WriteBatch};
use hearth_distributor::{GroupRouter, RouterOptions};
use hearth_ingester::replication::{
    head_digest, HeadDigest, IngesterNode, LogEngineOptions, NodeSpec, ReplicaOptions,
};
use hearth_ingester::HeadOptions;
use hearth_querier::GroupFanout;
use hearth_storage::testing::WatchedBucket;
use openraft::ServerState;

const GROUPS: u32 = 4;

/// A node's gRPC server, stopped as a crashed process' would be: its connections close
/// (HTTP/2 GOAWAY), so peers reconnect to whatever listens there next.
struct Server {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

struct TestNode {
    node: Option<Arc<IngesterNode>>,
    server: Option<Server>,
    listener_addr: String,
    spec: NodeSpec,
}

async fn serve(node: &Arc<IngesterNode>, addr: &str) -> Server {
    // Rebinding the same address after a stop: retry while the old socket lingers.
    let mut listener = None;
    for _ in 0..100 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                listener = Some(l);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let l = listener.expect("the node's address is free again");
    let svc = node.raft_service().into_server();
    let writes = hearth_rpc::IngesterService::for_groups(
        node.clone() as Arc<dyn GroupIngester>,
        node.clone() as Arc<dyn hearth_core::IngesterStatus>,
    )
    .into_server();
    let reads = hearth_rpc::StoreService::for_groups(
        node.clone() as Arc<dyn GroupReader>,
        Arc::new(hearth_rpc::StoreInfo::default),
    )
    .into_server();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .add_service(writes)
            .add_service(reads)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true)),
                async {
                    let _ = stopped.await;
                },
            )
            .await;
    });
    Server { stop, task }
}

async fn cluster(dirs: &[tempfile::TempDir]) -> Vec<TestNode> {
    let mut addrs = Vec::new();
    for _ in dirs {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        addrs.push(l.local_addr().unwrap().to_string());
    }
    let mut nodes = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        let spec = NodeSpec {
            dir: d.path().to_path_buf(),
            members: addrs.clone(),
            me: i,
            groups: GROUPS,
            replication_factor: 3,
            cluster_name: "test".into(),
            head: HeadOptions::default(),
            replica: ReplicaOptions::default(),
            log: LogEngineOptions::default(),
            peer_routes: Default::default(),
        };
        let node = Arc::new(IngesterNode::start(spec.clone()).await.unwrap());
        let server = serve(&node, &addrs[i]).await;
        nodes.push(TestNode {
            node: Some(node),
            server: Some(server),
            listener_addr: addrs[i].clone(),
            spec,
        });
    }
    nodes
}

/// Write `n` of the tests here.
fn write(n: i64) -> WriteBatch {
    common::write(40, n)
}

/// The node whose replica leads `group` with a fresh quorum, waiting for one.
async fn leader(nodes: &[TestNode], group: u32) -> usize {
    for _ in 0..600 {
        for (i, n) in nodes.iter().enumerate() {
            let Some(node) = &n.node else { continue };
            let m = node
                .replica(group)
                .unwrap()
                .raft()
                .metrics()
                .borrow()
                .clone();
            if m.state == ServerState::Leader
                && m.millis_since_quorum_ack.is_some_and(|a| a < 1_000)
            {
                return i;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("group {group} has no leader within 30 s");
}

/// The distributor's router over the nodes' gRPC write service.
fn router(nodes: &[TestNode]) -> GroupRouter {
    let members = nodes
        .iter()
        .map(|n| {
            let client = hearth_rpc::RemoteIngester::connect_lazy(&n.listener_addr).unwrap();
            (
                n.listener_addr.clone(),
                Arc::new(client) as Arc<dyn GroupIngester>,
            )
        })
        .collect();
    GroupRouter::new(members, GROUPS, 3, RouterOptions::default())
}

/// The querier's fan-out over the nodes' gRPC Store service.
fn reader(nodes: &[TestNode]) -> GroupFanout {
    let members = nodes
        .iter()
        .map(|n| {
            let client = hearth_rpc::RemoteStore::connect_lazy(&n.listener_addr).unwrap();
            (
                n.listener_addr.clone(),
                Arc::new(client) as Arc<dyn GroupReader>,
            )
        })
        .collect();
    GroupFanout::new(members, GROUPS, 3, Duration::from_secs(20))
}

/// Reads every series back: each of the 40 series holds the samples of writes
/// `0..writes`, once each (write n's sample is at 1_000_000 + n * 1_000, value n).
async fn check_reads(reader: &GroupFanout, writes: i64) {
    let series = select_all(reader, "up").await;
    assert_eq!(series.len(), 40);
    for s in series {
        let mut samples = Vec::new();
        hearth_series::merge::samples_of(s.data, &mut samples);
        let expected: Vec<(i64, f64)> = (0..writes)
            .map(|n| (1_000_000 + n * 1_000, n as f64))
            .collect();
        let got: Vec<(i64, f64)> = samples.iter().map(|x| (x.t, x.v)).collect();
        assert_eq!(got, expected, "{:?}", s.labels);
    }
    let instances = reader
        .label_values(&common::tenant(), "instance", &[], 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(instances.len(), 40);
}

/// Pushes write `n` through the router as a remote-write sender would: a 503 is
/// retried whole; returns once it is acknowledged, with every sample written.
async fn push(router: &GroupRouter, n: i64) {
    push_batch(router, n, write(n)).await
}

async fn push_batch(router: &GroupRouter, n: i64, batch: WriteBatch) {
    for attempt in 0.. {
        match router.push(&common::tenant(), batch.clone()).await {
            Ok(o) => {
                assert_eq!(o.samples_written, batch.sample_count(), "write {n}: {o:?}");
                return;
            }
            Err(PushError::Unavailable(e)) if attempt < 20 => {
                eprintln!("write {n}: 503 ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("write {n}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_node_stops_and_returns_and_every_group_keeps_every_write() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = cluster(&dirs).await;
    let router = router(&nodes);
    let reader = reader(&nodes);
    for n in 0..30 {
        push(&router, n).await;
    }
    check_reads(&reader, 30).await;
    // Node 2 leads some groups (placement's first guess) before it stops.
    let led_by_2: Vec<u32> = (0..GROUPS).filter(|g| router.leader_of(*g) == 1).collect();
    // Node 2 stops: its replicas of all four groups and its log at once.
    let gone = &mut nodes[1];
    let node = gone.node.take().unwrap();
    node.shutdown().await;
    gone.server.take().unwrap().stop().await;
    drop(node);
    for n in 30..60 {
        push(&router, n).await;
    }
    // Reads go on without the node: every group has a leader with a quorum elsewhere.
    check_reads(&reader, 60).await;
    // The router found the groups' new leaders.
    for g in &led_by_2 {
        assert_ne!(router.leader_of(*g), 1, "group {g}");
    }
    // It comes back on its data and catches up.
    let spec = nodes[1].spec.clone();
    let node = Arc::new(IngesterNode::start(spec).await.unwrap());
    nodes[1].server = Some(serve(&node, &nodes[1].listener_addr).await);
    nodes[1].node = Some(node);
    for n in 60..70 {
        push(&router, n).await;
    }
    check_reads(&reader, 70).await;
    // Per group: every replica at the leader's applied index holds the same head, and
    // the groups together hold every acknowledged sample once.
    let mut total = HeadDigest::default();
    let mut digests_of = BTreeMap::new();
    for g in 0..GROUPS {
        let l = leader(&nodes, g).await;
        let index = nodes[l]
            .node
            .as_ref()
            .unwrap()
            .replica(g)
            .unwrap()
            .raft()
            .metrics()
            .borrow()
            .last_applied;
        let mut digests = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            let r = n.node.as_ref().unwrap().replica(g).unwrap();
            r.raft()
                .wait(Some(Duration::from_secs(30)))
                .applied_index_at_least(index.map(|l| l.index), "catch up")
                .await
                .unwrap();
            digests.insert(i, head_digest(&r.head()));
        }
        let first = *digests.values().next().unwrap();
        assert!(
            digests.values().all(|d| *d == first),
            "group {g}: {digests:?}"
        );
        total.series += first.series;
        total.samples += first.samples;
        digests_of.insert(g, first);
    }
    assert_eq!(total.series, 40);
    assert_eq!(total.samples, 70 * 40);
    // Head statistics, asked of every node over gRPC and summed as the querier does:
    // each group counted once, on its leader.
    let status = hearth_querier::status::IngestersStatus::new(
        nodes
            .iter()
            .map(|n| {
                (
                    n.listener_addr.clone(),
                    Arc::new(hearth_rpc::RemoteIngester::connect_lazy(&n.listener_addr).unwrap())
                        as Arc<dyn hearth_core::IngesterStatus>,
                )
            })
            .collect(),
    );
    use hearth_core::IngesterStatus;
    let s = status.tsdb_status(&common::tenant(), 10).await.unwrap();
    assert_eq!(s.num_series, 40, "{s:?}");
    assert_eq!(s.series_count_by_metric_name, vec![("up".to_string(), 40)]);
    // The replicas over gRPC, as /api/v1/status/cluster asks: every node answers for
    // its four replicas, one leader per group, and the digests agree with the heads'.
    let answers = status.replicas(true).await.unwrap();
    assert_eq!(answers.len(), 3);
    for (node, a) in nodes.iter().zip(&answers) {
        assert_eq!(a.node, node.listener_addr);
        assert_eq!(a.error, None);
        assert_eq!(a.replicas.len(), GROUPS as usize);
    }
    for g in 0..GROUPS {
        let of_group: Vec<_> = answers
            .iter()
            .flat_map(|a| a.replicas.iter().filter(|r| r.group == g))
            .collect();
        assert_eq!(of_group.len(), 3);
        assert_eq!(of_group.iter().filter(|r| r.role == "leader").count(), 1);
        let d = of_group[0].digest.unwrap();
        assert!(of_group.iter().all(|r| r.digest == Some(d)), "{of_group:?}");
        assert_eq!(d.series, digests_of[&g].series);
        assert_eq!(d.hash, digests_of[&g].hash);
    }
    for n in &mut nodes {
        if let Some(node) = n.node.take() {
            node.shutdown().await;
        }
        if let Some(s) = n.server.take() {
            s.stop().await;
        }
    }
}

const HOUR: i64 = 3_600_000;
/// A day boundary, so block ranges start on it.
const BASE: i64 = 1_700_006_400_000 / (24 * HOUR) * (24 * HOUR);

/// Minute `k` of the shipping test: 20 series, one sample each.
fn minute(k: i64) -> WriteBatch {
    let series: Vec<_> = (0..20)
        .map(|i| {
            (
                hearth_core::Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]),
                vec![hearth_core::Sample::new(
                    BASE + k * 60_000,
                    (k * 20 + i) as f64,
                )],
            )
        })
        .collect();
    WriteBatch::from_series(&series)
}

/// The blocks committed to the bucket.
async fn blocks(bucket: &WatchedBucket) -> Vec<hearth_storage::BlockMeta> {
    use object_store::ObjectStoreExt;
    let mut out = Vec::new();
    for path in bucket.committed_blocks().await {
        let bytes = bucket
            .inner()
            .get(&object_store::path::Path::from(path))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push(serde_json::from_slice(&bytes).unwrap());
    }
    out
}

/// Waits until the bucket's blocks hold `samples` samples.
async fn wait_shipped(bucket: &WatchedBucket, samples: u64) -> Vec<hearth_storage::BlockMeta> {
    for _ in 0..600 {
        let b = blocks(bucket).await;
        if b.iter().map(|m| m.stats.num_samples).sum::<u64>() >= samples {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the blocks never held {samples} samples");
}

/// Every series of `metric`, read through the querier's fan-out.
async fn select_all(reader: &GroupFanout, metric: &str) -> Vec<hearth_core::Series> {
    reader
        .select(
            &common::tenant(),
            &[Matcher::equal("__name__", metric)],
            0,
            i64::MAX,
            &SelectHints::default(),
        )
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Samples of metric `m` the groups' heads answer.
async fn head_samples(reader: &GroupFanout) -> usize {
    let series = select_all(reader, "m").await;
    series
        .into_iter()
        .map(|s| {
            let mut v = Vec::new();
            hearth_series::merge::samples_of(s.data, &mut v);
            v.len()
        })
        .sum()
}

/// Every node ships the groups it leads. Six hours written: each group's leader ships
/// its two due ranges. A node stops, two more hours are written, and the groups' new
/// leaders ship the next range. The bucket then holds every shipped sample exactly once
/// (no block twice, none missing), and the heads hold exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_ship_their_groups_and_new_leaders_carry_on() {
    use hearth_ingester::ShippedTo;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = cluster(&dirs).await;
    let router = router(&nodes);
    let reader = reader(&nodes);
    let bucket = Arc::new(WatchedBucket::default());
    for n in &nodes {
        n.node.as_ref().unwrap().start_shipping(
            Arc::new(hearth_storage::BlockWriter::new(bucket.clone())),
            |_| ShippedTo::Store(Arc::new(hearth_storage::BucketStore::new(bucket.clone()))),
            2 * HOUR,
            Duration::from_millis(200),
        );
    }
    for k in 0..6 * 60 {
        push_batch(&router, k, minute(k)).await;
    }
    wait_shipped(&bucket, 4 * 60 * 20).await;

    let gone = &mut nodes[1];
    let node = gone.node.take().unwrap();
    node.shutdown().await;
    gone.server.take().unwrap().stop().await;
    drop(node);
    for k in 6 * 60..8 * 60 {
        push_batch(&router, k, minute(k)).await;
    }
    let shipped = wait_shipped(&bucket, 6 * 60 * 20).await;
    // Give a late duplicate the chance to show: one more shipping round everywhere.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let shipped_again = blocks(&bucket).await;
    assert_eq!(shipped_again.len(), shipped.len());
    let total: u64 = shipped_again.iter().map(|m| m.stats.num_samples).sum();
    assert_eq!(total, 6 * 60 * 20, "every shipped sample once");
    // Every block names the group it was cut from, and every group shipped.
    let mut groups: Vec<u32> = shipped_again
        .iter()
        .map(|m| m.hearth.shard_group.expect("a group's block names it"))
        .collect();
    groups.sort();
    groups.dedup();
    assert_eq!(groups, (0..GROUPS).collect::<Vec<_>>());
    let mut ids: Vec<&str> = shipped_again.iter().map(|m| m.ulid.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), shipped_again.len());
    // The heads hold exactly what is not shipped: the last two hours.
    for _ in 0..100 {
        if head_samples(&reader).await == 2 * 60 * 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(head_samples(&reader).await, 2 * 60 * 20);
    for n in &mut nodes {
        if let Some(node) = n.node.take() {
            node.shutdown().await;
        }
        if let Some(s) = n.server.take() {
            s.stop().await;
        }
    }
}
