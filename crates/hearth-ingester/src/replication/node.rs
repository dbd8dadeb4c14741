//! An ingester node: one log engine, and a replica of every shard group placed on it.
//!
//! Placement is static for now (`hearth_core::shard::Placement`; the elastic-membership
//! work replaces it with the metadata group): the members are listed in the same order
//! on every node and every distributor. Every replica of a group calls openraft's `initialize` with the same voters on its
//! first start, which openraft documents as safe; a group already formed ignores it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use hearth_core::shard::{
    split_by_group, GroupIngester, GroupPushError, GroupReader, NodeReplicas, Placement,
    ReplicaDigest,
};
use hearth_core::{
    IngesterStatus, MetricMetadata, PushError, PushOutcome, Queryable, StorageError, Tenant,
    TsdbStatus, WriteBatch,
};
use openraft::BasicNode;
use tracing::{info, warn};

use super::grpc_network::{GrpcNetwork, PeerChannels, RaftService};
use super::local_network::LocalRouter;
use super::log_engine::{GroupId, LogEngine, LogEngineOptions};
use super::replica::{raft_config, Replica, ReplicaOptions, ReplicaSpec};
use crate::head::{Head, HeadOptions};
use crate::shipper::{ShippedTo, Shipper, ShippingLog};

/// Which node this is and how the cluster is laid out.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// The node's data directory: `raftlog/` and `groups/<g>/`.
    pub dir: PathBuf,
    /// Every ingester node's Raft address, in the same order on every node.
    pub members: Vec<String>,
    /// This node's index in `members`.
    pub me: usize,
    pub groups: u32,
    pub replication_factor: usize,
    pub cluster_name: String,
    pub head: HeadOptions,
    pub replica: ReplicaOptions,
    pub log: LogEngineOptions,
    /// Member address -> the address this node dials for it instead (empty: the
    /// members' own; see `PeerChannels::with_routes`).
    pub peer_routes: HashMap<String, String>,
}

/// The file in a node's directory that records how many shard groups the series are
/// split into, fixed when the directory (and its cluster) is created.
const SHARDING_FILE: &str = "sharding.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct Sharding {
    shard_groups: u32,
}

/// Records the shard-group count in a new node directory, and refuses to start on one
/// created with another count: series would hash to other groups than the ones holding
/// them (and with fewer groups, the groups beyond the count would not even start).
/// A directory from before the count was recorded takes the configured one.
fn check_shard_groups(dir: &std::path::Path, groups: u32) -> Result<(), String> {
    let path = dir.join(SHARDING_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let recorded: Sharding = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not readable: {e}", path.display()))?;
            if recorded.shard_groups != groups {
                return Err(format!(
                    "{} was created with {} shard groups, and this start asks for {groups}; \
                     the count is fixed when a cluster is created: set ingester.shard-groups={} \
                     (or start on a new directory)",
                    dir.display(),
                    recorded.shard_groups,
                    recorded.shard_groups
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let body = serde_json::to_vec(&Sharding {
                shard_groups: groups,
            })
            .map_err(|e| e.to_string())?;
            crate::files::write_atomic(&path, &body).map_err(|e| format!("{}: {e}", path.display()))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A node snapshots the groups that keep its oldest segment alive once it has more
/// segments than this (one idle group must not pin the log other groups wrote since).
pub const MAX_SEGMENTS_BEFORE_SNAPSHOTS: usize = 8;

pub struct IngesterNode {
    spec: NodeSpec,
    placement: Placement,
    replicas: BTreeMap<GroupId, Arc<Replica>>,
    router: LocalRouter,
    engine: Arc<LogEngine>,
    pins: tokio::task::AbortHandle,
    shipping: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
    shippers: parking_lot::Mutex<Vec<(Arc<Replica>, Arc<Shipper>)>>,
}

impl IngesterNode {
    /// Opens the node's log and starts a replica of every group placed on it.
    pub async fn start(spec: NodeSpec) -> Result<IngesterNode, String> {
        let placement = Placement::new(spec.members.len(), spec.groups, spec.replication_factor);
        if spec.me >= spec.members.len() {
            return Err(format!(
                "this node is member {} of a list of {}",
                spec.me,
                spec.members.len()
            ));
        }
        check_shard_groups(&spec.dir, spec.groups)?;
        let engine = Arc::new(
            LogEngine::open(spec.dir.join("raftlog"), spec.log.clone())
                .map_err(|e| e.to_string())?,
        );
        let config = raft_config(&spec.cluster_name)?;
        // A tenant's series spread over the groups: this node enforces the share of the
        // groups it holds, over the series of all of them (exact on a node that holds
        // every group, as the single process and a three-node cluster at RF 3 do).
        let held_groups = placement.groups_of(spec.me);
        let held = Arc::new(crate::limits::HeldSeries::default());
        let mut replica_opts = spec.replica.clone();
        replica_opts.series_limits.ingesters = placement.groups() as usize;
        replica_opts.series_limits.held_parts = held_groups.len();
        replica_opts.series_limits.held = Some(held.clone());
        let router = LocalRouter::default();
        let channels = PeerChannels::with_routes(spec.peer_routes.clone());
        let mut replicas = BTreeMap::new();
        for g in held_groups {
            let id = Placement::replica_id(spec.me, g);
            let r = Replica::start(
                ReplicaSpec {
                    group: g,
                    id,
                    dir: spec.dir.join("groups").join(g.to_string()),
                    head: spec.head.clone(),
                    raft: config.clone(),
                    opts: replica_opts.clone(),
                },
                engine.clone(),
                GrpcNetwork::new(channels.clone(), g, id),
            )
            .await?;
            router.register(g, id, r.raft().clone());
            let voters: BTreeMap<u64, BasicNode> = placement
                .members_of(g)
                .into_iter()
                .map(|m| {
                    (
                        Placement::replica_id(m, g),
                        BasicNode::new(&spec.members[m]),
                    )
                })
                .collect();
            if !r.raft().is_initialized().await.map_err(|e| e.to_string())? {
                // Every voter does this with the same voters: safe, and the group forms
                // whichever starts first.
                if let Err(e) = r.initialize(voters).await {
                    info!(group = g, error = %e, "group already formed");
                }
            }
            replicas.insert(g, Arc::new(r));
        }
        let weak: Vec<std::sync::Weak<Replica>> = replicas.values().map(Arc::downgrade).collect();
        held.set_heads(move || {
            weak.iter()
                .filter_map(|r| r.upgrade())
                .map(|r| r.head())
                .collect()
        });
        let rafts = replicas
            .iter()
            .map(|(g, r)| (*g, r.raft().clone()))
            .collect();
        let pins = tokio::spawn(snapshot_pinning_groups(engine.clone(), rafts)).abort_handle();
        info!(
            member = spec.me,
            groups = replicas.len(),
            "ingester node started"
        );
        Ok(IngesterNode {
            spec,
            placement,
            replicas,
            router,
            engine,
            pins,
            shipping: parking_lot::Mutex::new(None),
            shippers: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// Ready once every replica here knows its group's leader (itself or a peer): the
    /// groups formed, and this node caught up with them after a restart.
    pub fn ready(&self) -> Result<(), String> {
        let waiting: Vec<GroupId> = self
            .replicas
            .iter()
            .filter(|(_, r)| r.raft().metrics().borrow().current_leader.is_none())
            .map(|(g, _)| *g)
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("shard groups {waiting:?} have no known leader yet"))
        }
    }

    /// The node's Raft service, for its gRPC server.
    pub fn raft_service(&self) -> RaftService {
        RaftService::new(self.router.clone())
    }

    /// The replicas this node hosts, as the Raft service routes to them (tests cut
    /// replicas off through it).
    pub fn router(&self) -> &LocalRouter {
        &self.router
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    pub fn replica(&self, group: GroupId) -> Option<&Replica> {
        self.replicas.get(&group).map(|r| &**r)
    }

    pub fn replicas(&self) -> impl Iterator<Item = &Replica> {
        self.replicas.values().map(|r| &**r)
    }

    /// Ships the groups this node leads: every `interval`, each replica that leads its
    /// group runs its group's shipper (the single node's protocol, as Raft entries; see
    /// replication.md), telling `shipped_to(group)` of each block it shipped. A replica
    /// that loses its leadership mid-way fails that attempt (NotLeader at its next
    /// entry); the new leader resumes the cut under the same block ids. Stops with the
    /// node.
    pub fn start_shipping(
        &self,
        writer: Arc<hearth_storage::BlockWriter>,
        shipped_to: impl Fn(GroupId) -> ShippedTo,
        block_range_ms: i64,
        interval: std::time::Duration,
    ) {
        let shippers: Vec<(Arc<Replica>, Arc<Shipper>)> = self
            .replicas
            .values()
            .map(|r| {
                let shipper = Shipper::new(
                    r.clone() as Arc<dyn ShippingLog>,
                    writer.clone(),
                    shipped_to(r.group()),
                    block_range_ms,
                );
                (r.clone(), Arc::new(shipper))
            })
            .collect();
        *self.shippers.lock() = shippers.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for (replica, shipper) in &shippers {
                    if !replica.is_leader() {
                        continue;
                    }
                    let s = shipper.clone();
                    // Reading the head and encoding blocks run on the background pool.
                    if let Err(e) =
                        hearth_core::cpu::background(async move { s.ship_due().await }).await
                    {
                        warn!(group = replica.group(), error = %e, "shipping the group's blocks failed; its data stays in the head and will be shipped again");
                    }
                }
            }
        });
        *self.shipping.lock() = Some(task.abort_handle());
    }

    /// Ships the whole head of every group this node leads now (`POST /ingester/flush`
    /// on each node flushes the cluster), with the blocks written. Fails with the first
    /// group that could not ship; groups shipped before it stay shipped.
    pub async fn flush(&self) -> Result<Vec<hearth_storage::BlockMeta>, crate::ShipError> {
        let shippers = self.shippers.lock().clone();
        let mut blocks = Vec::new();
        for (replica, shipper) in shippers {
            if !replica.is_leader() {
                continue;
            }
            blocks
                .extend(hearth_core::cpu::background(async move { shipper.flush().await }).await?);
        }
        Ok(blocks)
    }

    /// What the shippers of the groups this node leads are doing, if anything.
    pub fn shipping_activity(&self) -> Vec<String> {
        self.shippers
            .lock()
            .iter()
            .filter_map(|(r, s)| s.activity().map(|a| format!("group {}: {a}", r.group())))
            .collect()
    }

    /// Blocks and samples shipped, and failed attempts, summed over this node's
    /// groups since it started (each counted by the replica that shipped while it led).
    pub fn shipping_totals(&self) -> (u64, u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.shippers
            .lock()
            .iter()
            .fold((0, 0, 0), |(b, s, f), (_, sh)| {
                (
                    b + sh.stats.blocks_shipped.load(Relaxed),
                    s + sh.stats.samples_shipped.load(Relaxed),
                    f + sh.stats.failures.load(Relaxed),
                )
            })
    }

    /// Every group's head held here.
    pub fn heads(&self) -> Vec<(GroupId, Arc<Head>)> {
        self.replicas.iter().map(|(g, r)| (*g, r.head())).collect()
    }

    /// Splits a write by shard group; each part is proposed by this node's replica of
    /// its group, which must lead it (else 503 naming the leader it knows). Metadata goes
    /// with its family's group. 2xx only when every part is committed. (Distributors
    /// route each part to its leader instead: `push_group`.)
    pub async fn push(&self, tenant: &Tenant, batch: WriteBatch) -> Result<PushOutcome, PushError> {
        let calls = split_by_group(tenant, &batch, self.placement.groups())
            .into_iter()
            .map(|(g, part)| async move {
                self.push_group(g, tenant, part).await.map_err(|e| match e {
                    GroupPushError::Push(p) => p,
                    not_leader => PushError::Unavailable(not_leader.to_string()),
                })
            });
        PushOutcome::combine(futures::future::join_all(calls).await)
    }

    /// Stops every replica; messages still arriving find none (NotFound, which peers
    /// treat as unreachable).
    pub async fn shutdown(&self) {
        self.pins.abort();
        if let Some(s) = self.shipping.lock().take() {
            s.abort();
        }
        for r in self.replicas.values() {
            self.router.unregister(r.group(), r.id());
            r.shutdown().await;
        }
    }

    /// The node's log engine (every group's Raft log).
    pub fn log(&self) -> &LogEngine {
        &self.engine
    }

    pub fn spec(&self) -> &NodeSpec {
        &self.spec
    }
}

#[async_trait]
impl GroupIngester for IngesterNode {
    async fn push_group(
        &self,
        group: u32,
        tenant: &Tenant,
        batch: WriteBatch,
    ) -> Result<PushOutcome, GroupPushError> {
        let Some(r) = self.replicas.get(&group) else {
            return Err(PushError::Unavailable(format!(
                "group {group} has no replica on this node (it is on members {:?})",
                self.placement.members_of(group)
            ))
            .into());
        };
        r.push(tenant, batch).await
    }
}

/// Status over the groups this node leads: each group is counted on its leader, so the
/// querier's sum over every node counts each once (statistics, not data: during an
/// election a group may be missing from the sum or, briefly, counted twice).
#[async_trait]
impl IngesterStatus for IngesterNode {
    async fn metadata(
        &self,
        tenant: &Tenant,
    ) -> Result<HashMap<String, Vec<MetricMetadata>>, StorageError> {
        let parts = self
            .replicas
            .values()
            .filter(|r| r.is_leader())
            .map(|r| crate::status::head_metadata(&r.head(), tenant))
            .collect();
        Ok(hearth_core::queryable::merge_metadata(parts))
    }

    async fn tsdb_status(&self, tenant: &Tenant, limit: usize) -> Result<TsdbStatus, StorageError> {
        let parts: Vec<TsdbStatus> = self
            .replicas
            .values()
            .filter(|r| r.is_leader())
            .map(|r| crate::status::head_tsdb_status(&r.head(), tenant, limit))
            .collect();
        Ok(TsdbStatus::sum(parts, limit))
    }

    async fn wal_corruptions(&self) -> Result<u64, StorageError> {
        Ok(self.engine.corruptions_repaired())
    }

    async fn replicas(&self, digests: bool) -> Result<Vec<NodeReplicas>, StorageError> {
        let mut states = Vec::with_capacity(self.replicas.len());
        for r in self.replicas.values() {
            let mut state = r.state();
            if digests {
                let head = r.head();
                // A pass over every sample: off the async workers, on the foreground
                // pool as a query's decoding (the background pool's thread can be held
                // for minutes by a shipping backlog, and status would wait behind it).
                let d =
                    hearth_core::cpu::foreground(async move { super::head_digest(&head) }).await;
                state.digest = Some(ReplicaDigest {
                    series: d.series,
                    samples: d.samples,
                    hash: d.hash,
                });
            }
            states.push(state);
        }
        Ok(vec![NodeReplicas {
            node: self.spec.members[self.spec.me].clone(),
            error: None,
            replicas: states,
        }])
    }
}

#[async_trait]
impl GroupReader for IngesterNode {
    async fn group(&self, group: u32) -> Result<Arc<dyn Queryable>, StorageError> {
        let Some(r) = self.replicas.get(&group) else {
            return Err(StorageError::Unavailable(format!(
                "group {group} has no replica on this node (it is on members {:?})",
                self.placement.members_of(group)
            )));
        };
        let head = r.linearizable_head().await?;
        Ok(Arc::new(crate::HeadQueryable(head)))
    }
}

impl Drop for IngesterNode {
    fn drop(&mut self) {
        self.pins.abort();
        if let Some(s) = self.shipping.lock().take() {
            s.abort();
        }
    }
}

/// Every 10 s: the groups that pin the oldest of too many segments take a snapshot, so
/// their log is purged and the segments can go.
async fn snapshot_pinning_groups(
    engine: Arc<LogEngine>,
    rafts: BTreeMap<GroupId, openraft::Raft<super::state_machine::ShardConfig>>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for g in engine.pinning_groups(MAX_SEGMENTS_BEFORE_SNAPSHOTS) {
            if let Some(raft) = rafts.get(&g) {
                info!(
                    group = g,
                    segments = engine.segment_count(),
                    "group pins old log segments; snapshotting it"
                );
                let _ = raft.trigger().snapshot().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_directory_keeps_the_shard_group_count_it_was_created_with() {
        let dir = tempfile::tempdir().unwrap();
        super::check_shard_groups(dir.path(), 4).unwrap();
        super::check_shard_groups(dir.path(), 4).unwrap();
        let e = super::check_shard_groups(dir.path(), 16).unwrap_err();
        assert!(
            e.contains("created with 4 shard groups") && e.contains("16"),
            "{e}"
        );
    }
}
