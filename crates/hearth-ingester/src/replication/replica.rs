//! One replica of a shard group on this node: its Raft, its head, and the proposer that
//! turns writes into log entries.
//!
//! openraft 0.9 makes one log append per `client_write` and waits for it inside the
//! group's core, so the proposer merges writes: it proposes the next entry only once
//! its previous one is on disk, keeps at most `max_in_flight` entries proposed and not
//! yet applied, and each entry takes every write that queued meanwhile (up to
//! `max_entry_bytes`). Idle, a write is proposed at once; under load, entries grow with
//! the load.
//!
//! A write is acknowledged only with the result of applying its entry, which happens
//! only once the entry is committed (on a quorum's disks). A leader that has not heard
//! from a quorum within its lease refuses writes at once (openraft 0.9 has no
//! CheckQuorum, so a leader cut off from its group would otherwise take writes and hang
//! them); a replica that is not the leader names the one it knows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hearth_core::shard::GroupPushError;
use hearth_core::{PushError, PushOutcome, StorageError, Tenant, WriteBatch, NOT_STORED};
use openraft::error::ClientWriteError;
use openraft::network::RaftNetworkFactory;
use openraft::{BasicNode, Config, Raft, ServerState};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::{info, warn};

use super::command::{Command, WritePart, WriteResult};
use super::log_engine::{GroupId, LogEngine};
use super::log_store::{GroupLogStore, LogProgress};
use super::state_machine::{HeadCell, HeadStateMachine, ShardConfig};
use super::stats::ReplicaStats;
use crate::head::{Head, HeadOptions};
use crate::limits::SeriesLimits;
use crate::record::ControlRecord;
use crate::shipper::ShippingLog;
use hearth_series::postings::SeriesId;

/// How a replica batches and fences.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// Entries proposed and not yet applied, at most.
    pub max_in_flight: usize,
    /// Payload bytes one entry carries, at most (a single bigger write goes alone).
    pub max_entry_bytes: usize,
    /// Payload bytes one replication message carries, at most.
    pub max_message_bytes: usize,
    /// A leader that has not heard from a quorum for this long refuses writes.
    pub lease: Duration,
    /// Writes waiting for the proposer, at most; beyond it writes get 503.
    pub max_queued_writes: usize,
    /// Take a snapshot (which lets the log before it go) once the group's entries in
    /// the log pass this many bytes, so a restart replays at most about this much.
    pub snapshot_after_log_bytes: u64,
    /// The tenants' series limits, as this group's share (`ingesters` is the number of
    /// groups a tenant's series spread over), checked by the leader before proposing.
    pub series_limits: SeriesLimits,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            max_in_flight: 4,
            max_entry_bytes: 1 << 20,
            max_message_bytes: 8 << 20,
            lease: Duration::from_millis(1_500),
            max_queued_writes: 1_024,
            snapshot_after_log_bytes: 256 << 20,
            series_limits: SeriesLimits::default(),
        }
    }
}

/// How long a shipping record may take to commit before the attempt fails (and is
/// retried at the next round, by whichever replica leads then).
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a read waits for its replica to confirm its leadership with a quorum.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// openraft's settings for shard groups, sized for loaded small machines: a heartbeat
/// of 100 ms (in 0.9 also the replication RPC's timeout), elections after 750-1500 ms,
/// snapshots only when asked for.
pub fn raft_config(cluster_name: &str) -> Result<Arc<Config>, String> {
    let c = Config {
        cluster_name: cluster_name.to_string(),
        heartbeat_interval: 100,
        election_timeout_min: 750,
        election_timeout_max: 1_500,
        max_payload_entries: 64,
        replication_lag_threshold: 20,
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        ..Default::default()
    };
    c.validate().map(Arc::new).map_err(|e| e.to_string())
}

/// Which replica to start, and how.
pub struct ReplicaSpec {
    pub group: GroupId,
    /// The replica's id: never reused, not even by the same node after a wipe.
    pub id: u64,
    /// Where its snapshots live.
    pub dir: PathBuf,
    pub head: HeadOptions,
    pub raft: Arc<Config>,
    pub opts: ReplicaOptions,
}

struct Proposal {
    part: WritePart,
    reply: oneshot::Sender<Result<WriteResult, GroupPushError>>,
    /// When the write reached the proposer (commit latency runs from here).
    at: std::time::Instant,
}

/// A running replica of one shard group.
pub struct Replica {
    group: GroupId,
    id: u64,
    raft: Raft<ShardConfig>,
    head: HeadCell,
    proposals: mpsc::Sender<Proposal>,
    snapshots: tokio::task::AbortHandle,
    stepping_aside: tokio::task::AbortHandle,
    lease: Duration,
    limits: SeriesLimits,
    stats: Arc<ReplicaStats>,
    /// Why the node's log refuses writes, while it does.
    disk: watch::Receiver<Option<String>>,
}

/// How long a write waits for a refusing disk to take writes again before its 503.
const DISK_REFUSAL_WAIT: Duration = Duration::from_millis(300);

impl Replica {
    /// Starts a replica with its log in the node's `engine`, talking to the group's
    /// other replicas through `network`. A brand-new group is bootstrapped separately
    /// ([`Replica::initialize`]).
    pub async fn start<N>(
        spec: ReplicaSpec,
        engine: Arc<LogEngine>,
        network: N,
    ) -> Result<Replica, String>
    where
        N: RaftNetworkFactory<ShardConfig>,
    {
        let ReplicaSpec {
            group,
            id,
            dir,
            head,
            raft,
            opts,
        } = spec;
        let log = GroupLogStore::<ShardConfig>::new(engine.clone(), group, opts.max_message_bytes);
        let progress = log.progress();
        let stats = Arc::new(ReplicaStats::default());
        let sm = HeadStateMachine::open(&dir, head)
            .map_err(|e| e.to_string())?
            .with_stats(stats.clone());
        let head = sm.head().clone();
        let raft = Raft::new(id, raft, network, log, sm)
            .await
            .map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel(opts.max_queued_writes);
        let lease = opts.lease;
        let limits = opts.series_limits.clone();
        let disk = engine.watch_refusing();
        let snapshots = tokio::spawn(snapshot_when_log_grows(
            raft.clone(),
            engine,
            group,
            opts.snapshot_after_log_bytes,
        ))
        .abort_handle();
        // One watcher of the leader's quorum per replica: it tells entries in flight
        // when the lease expired, and stops the heartbeats after a few leases.
        let (lease_tx, lease_rx) = watch::channel(false);
        tokio::spawn(propose(
            raft.clone(),
            rx,
            opts,
            group,
            progress,
            stats.clone(),
            lease_rx,
            disk.clone(),
        ));
        // Aborted with the replica: it holds a handle that would keep the Raft running.
        let stepping_aside = tokio::spawn(step_aside_without_quorum(
            raft.clone(),
            group,
            lease,
            stats.clone(),
            lease_tx,
        ))
        .abort_handle();
        Ok(Replica {
            group,
            id,
            raft,
            head,
            proposals: tx,
            snapshots,
            stepping_aside,
            lease,
            limits,
            stats,
            disk,
        })
    }

    /// A group of one replica on `dir` (its log engine in `dir/log`, its snapshots in
    /// `dir/group`), initialized and leading, talking to no one: what the tests and
    /// benches of a single group start.
    pub async fn start_alone(
        dir: &std::path::Path,
        opts: ReplicaOptions,
    ) -> Result<Replica, String> {
        let engine = Arc::new(
            LogEngine::open(dir.join("log"), Default::default()).map_err(|e| e.to_string())?,
        );
        let spec = ReplicaSpec {
            group: 0,
            id: 1,
            dir: dir.join("group"),
            head: HeadOptions::default(),
            raft: raft_config("alone")?,
            opts,
        };
        let router = super::LocalRouter::default();
        let r = Replica::start(spec, engine, router.factory(0, 1)).await?;
        r.initialize([(1, BasicNode::new("local"))].into_iter().collect())
            .await?;
        r.raft()
            .wait(Some(Duration::from_secs(30)))
            .current_leader(1, "leader")
            .await
            .map_err(|e| e.to_string())?;
        Ok(r)
    }

    /// Makes a brand-new group of these voters (replica id and address each).
    pub async fn initialize(&self, voters: BTreeMap<u64, BasicNode>) -> Result<(), String> {
        self.raft
            .initialize(voters)
            .await
            .map_err(|e| e.to_string())
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn raft(&self) -> &Raft<ShardConfig> {
        &self.raft
    }

    /// Whether this replica leads its group now (as far as it knows).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// What this replica counted (leader changes, commit latency, snapshots).
    pub fn stats(&self) -> &ReplicaStats {
        &self.stats
    }

    /// Where this replica stands (its role, term, log and head), without a digest.
    pub fn state(&self) -> hearth_core::shard::ReplicaState {
        let m = self.raft.metrics().borrow().clone();
        let head = self.head.get();
        let watermark = head
            .tenants()
            .iter()
            .map(|(_, th)| th.shipped_before())
            .filter(|w| *w > i64::MIN)
            .min();
        hearth_core::shard::ReplicaState {
            group: self.group,
            replica: self.id,
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .to_string(),
            term: m.current_term,
            leader: m.current_leader,
            applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            head_series: head.num_series() as u64,
            shipped_watermark_ms: watermark,
            digest: None,
        }
    }

    /// The group's head as this replica applied it.
    pub fn head(&self) -> Arc<Head> {
        self.head.get()
    }

    /// Proposes a write and waits for its entry to be applied: the outcome is then what
    /// every replica applied. `NotLeader` when this replica does not lead the group (the
    /// write was not proposed, or its entry was cut by a new leader); Unavailable (503)
    /// when it cannot take writes (no quorum within its lease, too many writes waiting)
    /// or the outcome is unknown.
    pub async fn push(
        &self,
        tenant: &Tenant,
        batch: WriteBatch,
    ) -> Result<PushOutcome, GroupPushError> {
        // Series are named in the entry by the ids this replica's head gave them (see
        // command.rs); those it does not hold are new, which is also what limits count.
        let ids: Vec<Option<SeriesId>> = match self.head.get().tenant(tenant) {
            Some(th) => batch
                .iter()
                .map(|s| th.lookup_id(s.hash, &s.labels))
                .collect(),
            None => vec![None; batch.len()],
        };
        self.push_with_ids(tenant, batch, ids).await
    }

    /// [`Replica::push`] with the batch's series named by `ids` as given, not as this
    /// replica's head holds them now: what a write proposed just before its series were
    /// collected carries. Public for the tests of that race.
    #[doc(hidden)]
    pub async fn push_with_ids(
        &self,
        tenant: &Tenant,
        batch: WriteBatch,
        ids: Vec<Option<SeriesId>>,
    ) -> Result<PushOutcome, GroupPushError> {
        // Limits are the leader's check before proposing: apply never looks at them.
        let admitted = self.limits.admit(&self.head.get(), tenant, batch, ids);
        let (batch, ids) = (admitted.batch, admitted.ids);
        // The new series it admitted count against the limits until the write is
        // answered (applied, or failed).
        let _reservation = admitted.reservation;
        let refused = PushOutcome {
            samples_written: 0,
            samples_rejected: admitted.limited,
            first_rejection: admitted.message,
        };
        if batch.is_empty() && batch.metadata.is_empty() {
            return Ok(refused);
        }
        // A disk that refuses writes answers at once (after a moment for it to recover),
        // so a sender retries instead of waiting on a write that cannot be made durable.
        if self.disk.borrow().is_some() {
            let mut disk = self.disk.clone();
            let recovered = tokio::time::timeout(DISK_REFUSAL_WAIT, async {
                disk.wait_for(|r| r.is_none()).await.is_ok()
            })
            .await;
            if recovered != Ok(true) {
                let why = disk.borrow().clone();
                return Err(PushError::Unavailable(disk_refusal(self.group, &why)).into());
            }
        }
        let mut applied = self.propose_write(tenant, &batch, &ids).await?;
        let mut outcomes = vec![Ok(refused)];
        if !applied.unresolved.is_empty() {
            // Series collected between proposing and applying: no replica applied
            // them. Written again by labels, which always resolve.
            let unresolved: std::collections::HashSet<u32> =
                std::mem::take(&mut applied.unresolved)
                    .into_iter()
                    .collect();
            let again = batch
                .split(2, |i| usize::from(!unresolved.contains(&(i as u32))))
                .swap_remove(0);
            let by_labels = vec![None; again.len()];
            let retried = self.propose_write(tenant, &again, &by_labels).await?;
            outcomes.push(Ok(PushOutcome::from(retried)));
        }
        outcomes.push(Ok(PushOutcome::from(applied)));
        PushOutcome::combine(outcomes).map_err(GroupPushError::from)
    }

    /// Proposes one write (its series named by `ids` where given) and waits for its
    /// entry to be applied.
    async fn propose_write(
        &self,
        tenant: &Tenant,
        batch: &WriteBatch,
        ids: &[Option<SeriesId>],
    ) -> Result<WriteResult, GroupPushError> {
        let (reply, rx) = oneshot::channel();
        // Encoded here, on the writer's task: see WritePart.
        let part = WritePart::new(tenant.clone(), batch, ids);
        self.proposals
            .try_send(Proposal {
                part,
                reply,
                at: std::time::Instant::now(),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PushError::Unavailable(format!(
                    "group {} has too many writes waiting; retry",
                    self.group
                )),
                mpsc::error::TrySendError::Closed(_) => {
                    PushError::Unavailable(format!("group {} is stopping", self.group))
                }
            })?;
        rx.await.map_err(|_| {
            GroupPushError::from(PushError::Unavailable(format!(
                "group {}: the write's outcome is unknown (its replica stopped); retry",
                self.group
            )))
        })?
    }

    /// The head for a linearizable read: once this replica has confirmed with a quorum
    /// that it leads and has applied everything committed before now, so every write
    /// acknowledged before the call is in it. Unavailable otherwise (not the leader, no
    /// quorum within `READ_TIMEOUT`): the reader asks another replica.
    pub async fn linearizable_head(&self) -> Result<Arc<Head>, StorageError> {
        let group = self.group;
        match tokio::time::timeout(READ_TIMEOUT, self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(self.head.get()),
            Ok(Err(e)) => Err(StorageError::Unavailable(format!(
                "group {group}: replica {} cannot serve a read: {e}",
                self.id
            ))),
            Err(_) => Err(StorageError::Unavailable(format!(
                "group {group}: replica {} could not confirm its leadership within {READ_TIMEOUT:?}",
                self.id
            ))),
        }
    }

    /// Proposes a shipping record and waits for it to be applied here (so on a quorum's
    /// disks): this replica must lead. After `Shipped`, the replica snapshots, so the
    /// log before it (the shipped data's writes) can go.
    async fn propose_control(&self, rec: ControlRecord) -> Result<(), GroupPushError> {
        if let Some(e) = refusal(&self.raft, self.group, self.lease) {
            return Err(e);
        }
        let shipped = matches!(rec, ControlRecord::Shipped { .. });
        let group = self.group;
        // Bounded: a leader that loses its quorum after the lease check would otherwise
        // hold the node's shipping loop, which ships its other groups too.
        let written = tokio::time::timeout(
            CONTROL_TIMEOUT,
            self.raft.client_write(Command::Control(Arc::new(rec))),
        )
        .await
        .map_err(|_| {
            PushError::Unavailable(format!(
                "group {group}: a shipping record was not committed within {CONTROL_TIMEOUT:?}; its outcome is unknown"
            ))
        })?;
        match written {
            Ok(_) => {}
            Err(openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                return Err(GroupPushError::NotLeader {
                    group,
                    leader: f.leader_id,
                })
            }
            Err(e) => {
                return Err(PushError::Unavailable(format!(
                    "group {group}: a shipping record's outcome is unknown: {e}"
                ))
                .into())
            }
        }
        if shipped {
            let _ = self.raft.trigger().snapshot().await;
        }
        Ok(())
    }

    pub async fn shutdown(&self) {
        self.snapshots.abort();
        self.stepping_aside.abort();
        if let Err(e) = self.raft.shutdown().await {
            warn!(group = self.group, replica = self.id, error = %e, "raft shutdown");
        }
    }
}

#[async_trait::async_trait]
impl ShippingLog for Replica {
    fn head(&self) -> Arc<Head> {
        Replica::head(self)
    }

    async fn control(&self, rec: ControlRecord) -> Result<(), PushError> {
        self.propose_control(rec).await.map_err(|e| match e {
            GroupPushError::Push(p) => p,
            not_leader => PushError::Unavailable(not_leader.to_string()),
        })
    }

    fn shard_group(&self) -> Option<u32> {
        Some(self.group)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.snapshots.abort();
        self.stepping_aside.abort();
    }
}

/// A leader that has not heard from a quorum for this many leases stops sending
/// heartbeats, so its followers elect a leader among themselves.
const LEASES_BEFORE_STEPPING_ASIDE: u32 = 2;

/// openraft 0.9 has no CheckQuorum: a leader that can send but not hear (an asymmetric
/// partition) keeps its followers' election timers reset with heartbeats whose answers
/// never reach it, so the group would never elect a leader that can commit. Such a
/// leader already refuses writes (its lease expired, `refusal`); after a few leases
/// this task also turns its heartbeats off, so the followers time out and elect. When
/// it hears the new leader (or any higher term) it becomes a follower and its
/// heartbeats are turned back on for the next time it leads. Ends with the Raft.
async fn step_aside_without_quorum(
    raft: Raft<ShardConfig>,
    group: GroupId,
    lease: Duration,
    stats: Arc<ReplicaStats>,
    lease_expired: watch::Sender<bool>,
) {
    let limit = (lease * LEASES_BEFORE_STEPPING_ASIDE).as_millis() as u64;
    let mut metrics = raft.metrics();
    let mut silenced = false;
    // Leader changes are counted here too, this task seeing every metrics change.
    let mut known_leader = metrics.borrow().current_leader;
    // Since when this replica leads (a new leader has no quorum acknowledgement yet).
    let mut leading_since: Option<std::time::Instant> = None;
    loop {
        let (leader, since_ack) = {
            let m = metrics.borrow_and_update();
            if m.current_leader != known_leader {
                known_leader = m.current_leader;
                stats.leader_changes.fetch_add(1, Ordering::Relaxed);
            }
            (m.state == ServerState::Leader, m.millis_since_quorum_ack)
        };
        leading_since = match (leader, leading_since) {
            (true, None) => Some(std::time::Instant::now()),
            (true, s) => s,
            (false, _) => None,
        };
        // How long this leader has gone without a quorum's acknowledgement.
        let unheard = match since_ack {
            Some(ms) => ms,
            None => leading_since.map_or(0, |s| s.elapsed().as_millis() as u64),
        };
        let expired = leader && unheard > lease.as_millis() as u64;
        lease_expired.send_if_modified(|v| std::mem::replace(v, expired) != expired);
        let lost = leader && unheard > limit;
        if lost && !silenced {
            warn!(
                group,
                millis_since_quorum_ack = ?since_ack,
                "the leader has not heard from a quorum for {} leases; it stops its heartbeats so its followers elect a leader that can commit",
                LEASES_BEFORE_STEPPING_ASIDE
            );
            raft.runtime_config().heartbeat(false);
            silenced = true;
        } else if silenced && !leader {
            info!(
                group,
                "no longer the leader; heartbeats on again for the next leadership"
            );
            raft.runtime_config().heartbeat(true);
            silenced = false;
        }
        // Metrics change on every heartbeat answer; a leader that hears nothing produces
        // no change, hence the timeout.
        if let Ok(Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), metrics.changed()).await
        {
            return;
        }
    }
}

/// Asks for a snapshot whenever the group's log holds more than `limit` bytes: openraft
/// then purges the log up to it. (A request while one is being built is ignored.)
async fn snapshot_when_log_grows(
    raft: Raft<ShardConfig>,
    engine: Arc<LogEngine>,
    group: GroupId,
    limit: u64,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if engine.group_bytes(group) >= limit && raft.trigger().snapshot().await.is_err() {
            return; // The replica stopped.
        }
    }
}

/// The 503 message of a write refused because the disk refuses writes: it was not
/// proposed, so it is not stored.
fn disk_refusal(group: GroupId, why: &Option<String>) -> String {
    format!(
        "group {group}: the write-ahead log cannot write ({}); the write {NOT_STORED}, retry",
        why.as_deref().unwrap_or("the disk refuses writes")
    )
}

/// Why this replica cannot take a write now, if it cannot.
fn refusal(raft: &Raft<ShardConfig>, group: GroupId, lease: Duration) -> Option<GroupPushError> {
    let m = raft.metrics().borrow().clone();
    if m.state != ServerState::Leader {
        return Some(GroupPushError::NotLeader {
            group,
            leader: m.current_leader.filter(|l| *l != m.id),
        });
    }
    match m.millis_since_quorum_ack {
        Some(ms) if ms <= lease.as_millis() as u64 => None,
        _ => Some(
            PushError::Unavailable(format!(
                "group {group}: the leader has not heard from a quorum within its lease"
            ))
            .into(),
        ),
    }
}

async fn propose(
    raft: Raft<ShardConfig>,
    mut rx: mpsc::Receiver<Proposal>,
    opts: ReplicaOptions,
    group: GroupId,
    log: Arc<LogProgress>,
    stats: Arc<ReplicaStats>,
    lease_expired: watch::Receiver<bool>,
    disk: watch::Receiver<Option<String>>,
) {
    let in_flight = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
    while let Some(first) = rx.recv().await {
        // Waiting for a slot is what batches: writes queue meanwhile.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut size = first.part.wire_len();
        let mut waiting = vec![first];
        while size < opts.max_entry_bytes {
            match rx.try_recv() {
                Ok(p) => {
                    size += p.part.wire_len();
                    waiting.push(p);
                }
                Err(_) => break,
            }
        }
        let refused = match &*disk.borrow() {
            Some(why) => {
                Some(PushError::Unavailable(disk_refusal(group, &Some(why.clone()))).into())
            }
            None => refusal(&raft, group, opts.lease),
        };
        if let Some(e) = refused {
            for p in waiting {
                let _ = p.reply.send(Err(e.clone()));
            }
            continue;
        }
        let (parts, replies): (Vec<_>, Vec<_>) = waiting
            .into_iter()
            .map(|p| (p.part, (p.reply, p.at)))
            .unzip();
        let appended_before = log.appended();
        // Handing the entry to openraft here keeps entries in the order writes came.
        let answer = raft.client_write_ff(Command::write(parts)).await;
        let (done, finished) = oneshot::channel::<()>();
        let (mut lease_expired, stats) = (lease_expired.clone(), stats.clone());
        let mut disk_refusing = disk.clone();
        tokio::spawn(async move {
            // Every other failure is a 503: the entry may or may not commit, and a
            // retry of the same samples is a no-op if it did. ForwardToLeader means the
            // entry was never appended here, or was cut by a newer leader's log.
            let unavailable = |m: String| GroupPushError::Push(PushError::Unavailable(m));
            let result: Result<_, GroupPushError> = match answer {
                Err(fatal) => Err(unavailable(format!(
                    "group {group}: {fatal}; the write's outcome is unknown, retry"
                ))),
                Ok(rx) => {
                    // A leader cut off from its quorum would hold the write until it
                    // hears of a newer leader, which a partition delays for its length.
                    // So would a disk that refuses the entry: it is written once the
                    // disk takes writes again, long after the sender gave up.
                    let committed = tokio::select! {
                        r = rx => Ok(r),
                        _ = async {
                            if lease_expired.wait_for(|e| *e).await.is_err() {
                                // The replica stops: the entry's own answer decides.
                                std::future::pending::<()>().await;
                            }
                        } => Err(format!(
                            "group {group}: the leader lost its quorum before the write committed; its outcome is unknown, retry"
                        )),
                        why = async {
                            let refusing = disk_refusing.wait_for(|r| r.is_some()).await.is_ok();
                            if !refusing {
                                std::future::pending::<()>().await;
                            }
                            disk_refusing.borrow().clone().unwrap_or_default()
                        } => Err(format!(
                            "group {group}: the write-ahead log cannot write ({why}); the write's outcome is unknown (it is stored if the disk takes it later), retry"
                        )),
                    };
                    match committed {
                        Err(why) => Err(unavailable(why)),
                        Ok(Err(_)) => Err(unavailable(format!(
                            "group {group}: the write's outcome is unknown (leadership changed); retry"
                        ))),
                        Ok(Ok(Err(ClientWriteError::ForwardToLeader(f)))) => {
                            Err(GroupPushError::NotLeader {
                                group,
                                leader: f.leader_id,
                            })
                        }
                        Ok(Ok(Err(e))) => Err(unavailable(format!(
                            "group {group}: {e}; the write's outcome is unknown, retry"
                        ))),
                        Ok(Ok(Ok(resp))) => Ok(resp.data.0),
                    }
                }
            };
            drop(permit);
            let _ = done.send(());
            match result {
                Ok(outcomes) => {
                    let mut outcomes = outcomes.into_iter();
                    for (r, at) in replies {
                        stats.commit_seconds.observe(at.elapsed().as_secs_f64());
                        let o = outcomes.next().ok_or_else(|| {
                            GroupPushError::from(PushError::Internal(format!(
                                "group {group}: an entry answered fewer writes than it held"
                            )))
                        });
                        let _ = r.send(o);
                    }
                }
                Err(e) => {
                    for (r, _) in replies {
                        let _ = r.send(Err(e.clone()));
                    }
                }
            }
        });
        // openraft 0.9 appends a leader's entries one at a time, each waited to disk:
        // an entry proposed now would be its own fsync after this one's. Held here
        // until this entry is on disk (or answered), the writes arriving meanwhile
        // become one entry and one fsync.
        tokio::select! {
            _ = log.flushed_past(appended_before) => {}
            _ = finished => {}
        }
    }
}
