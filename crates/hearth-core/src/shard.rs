//! Shard groups: the fixed number of Raft groups a cluster's series are split into, and
//! which one a series of a tenant belongs to. Distributors and ingesters compute it the
//! same way, so this is the one definition. The number of groups is chosen when the
//! cluster is created and never follows the number of nodes.

use async_trait::async_trait;

use std::sync::Arc;

use crate::{PushError, PushOutcome, Queryable, StorageError, Tenant, WriteBatch};

/// Shard groups of a cluster unless configured: enough for placement to spread load
/// over a few dozen nodes, few enough that each node's Raft overhead stays small.
pub const DEFAULT_GROUPS: u32 = 16;
/// Shard groups of the single-process default.
pub const DEFAULT_GROUPS_SINGLE_NODE: u32 = 4;

/// The hash of a tenant, computed once per request.
pub fn tenant_hash(tenant: &Tenant) -> u64 {
    xxhash_rust::xxh3::xxh3_64(tenant.as_str().as_bytes())
}

/// Where a series (its label hash) of a tenant (its [`tenant_hash`]) is placed: mixed
/// once, with no allocation on the write path. Groups and rings both place by it.
pub fn series_key(tenant_hash: u64, series_hash: u64) -> u64 {
    let h = (tenant_hash ^ series_hash.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 32)
}

/// The group of a series (its label hash) of a tenant (its [`tenant_hash`]).
pub fn group_of(tenant_hash: u64, series_hash: u64, groups: u32) -> u32 {
    (series_key(tenant_hash, series_hash) % groups.max(1) as u64) as u32
}

/// The group that keeps a metric family's metadata for a tenant.
pub fn group_of_family(tenant_hash: u64, family: &str, groups: u32) -> u32 {
    group_of(
        tenant_hash,
        xxhash_rust::xxh3::xxh3_64(family.as_bytes()),
        groups,
    )
}

/// Splits a tenant's write into its groups' parts (metadata goes with its family's
/// group); groups with nothing to write are left out.
pub fn split_by_group(tenant: &Tenant, batch: &WriteBatch, groups: u32) -> Vec<(u32, WriteBatch)> {
    let th = tenant_hash(tenant);
    let groups = groups.max(1);
    let part_of: Vec<usize> = batch
        .iter()
        .map(|s| group_of(th, s.hash, groups) as usize)
        .collect();
    let mut parts = batch.split(groups as usize, |i| part_of[i]);
    for md in &batch.metadata {
        parts[group_of_family(th, &md.metric_family, groups) as usize]
            .metadata
            .push(md.clone());
    }
    parts
        .into_iter()
        .enumerate()
        .filter(|(_, p)| !p.is_empty() || !p.metadata.is_empty())
        .map(|(g, p)| (g as u32, p))
        .collect()
}

/// Where groups' replicas are, from the member list alone (static placement, until the
/// elastic-membership work keeps it in a metadata group): the ingester nodes are listed
/// in the same order everywhere, and group `g`'s replicas are on members
/// `g, g+1, ..., g+RF-1` (mod the member count), so groups and their leaders spread
/// evenly. A replica's id is `(member + 1) << 32 | group`: distinct for every group and
/// node, and the member is read back from it (a leader hint names a replica).
#[derive(Clone, Debug)]
pub struct Placement {
    members: usize,
    groups: u32,
    rf: usize,
}

impl Placement {
    pub fn new(members: usize, groups: u32, replication_factor: usize) -> Placement {
        Placement {
            members: members.max(1),
            groups: groups.max(1),
            rf: replication_factor.clamp(1, members.max(1)),
        }
    }

    pub fn groups(&self) -> u32 {
        self.groups
    }

    pub fn members(&self) -> usize {
        self.members
    }

    pub fn replication_factor(&self) -> usize {
        self.rf
    }

    /// The members holding a replica of `group`, the first being where its leader is
    /// expected before anything says otherwise.
    pub fn members_of(&self, group: u32) -> Vec<usize> {
        (0..self.rf)
            .map(|k| (group as usize + k) % self.members)
            .collect()
    }

    /// The groups member `m` holds a replica of.
    pub fn groups_of(&self, m: usize) -> Vec<u32> {
        (0..self.groups)
            .filter(|g| self.members_of(*g).contains(&m))
            .collect()
    }

    pub fn replica_id(member: usize, group: u32) -> u64 {
        ((member as u64 + 1) << 32) | group as u64
    }

    pub fn member_of_replica(id: u64) -> usize {
        ((id >> 32) as usize).saturating_sub(1)
    }
}

/// Why a replica of a shard group did not take a write.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GroupPushError {
    /// This replica does not lead the group now; `leader` is the replica it believes
    /// does (none during an election). Nothing of the write was proposed.
    #[error("group {group}: not the leader{}", leader.map(|l| format!("; replica {l} is")).unwrap_or_default())]
    NotLeader { group: u32, leader: Option<u64> },
    #[error(transparent)]
    Push(#[from] PushError),
}

/// The write seam of a replicated ingester node: a write of one shard group, proposed by
/// the node's replica of it, which must lead the group. Distributors split writes by
/// group and route each part to its leader through this (`GroupRouter`); the node
/// serves it in-process and over gRPC.
#[async_trait]
pub trait GroupIngester: Send + Sync + 'static {
    /// Answers once the part is committed on a quorum and applied (the outcome is what
    /// every replica applied); `NotLeader` when this node's replica does not lead.
    async fn push_group(
        &self,
        group: u32,
        tenant: &Tenant,
        batch: WriteBatch,
    ) -> Result<PushOutcome, GroupPushError>;
}

/// The read seam of a replicated ingester node: one shard group's head, read on the
/// node's replica of it once it has confirmed with a quorum that it still leads and has
/// applied everything committed before (a linearizable read: every write acknowledged
/// before the read began is in the answer). Unavailable when the replica does not lead,
/// so the reader asks the group's next replica. The querier reads one replica per group
/// through this (`GroupFanout`); the node serves it in-process and over the gRPC Store
/// service (its requests' `shard_group`).
#[async_trait]
pub trait GroupReader: Send + Sync + 'static {
    async fn group(&self, group: u32) -> Result<Arc<dyn Queryable>, StorageError>;
}

/// One replica of a shard group as its node sees it, for the cluster's status page
/// (`/api/v1/status/cluster`) and checks.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaState {
    pub group: u32,
    pub replica: u64,
    /// leader, follower, candidate or learner.
    pub role: String,
    pub term: u64,
    /// The replica it believes leads the group.
    pub leader: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// A leader's time since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    pub head_series: u64,
    /// The oldest of the tenants' shipped watermarks: every tenant's data before it is
    /// in blocks (none when nothing was shipped).
    pub shipped_watermark_ms: Option<i64>,
    /// What its head holds, when asked for (a pass over every sample).
    pub digest: Option<ReplicaDigest>,
}

/// A head's content summed up: replicas of a group at the same applied index agree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaDigest {
    pub series: u64,
    pub samples: u64,
    #[serde(serialize_with = "as_hex")]
    pub hash: u64,
}

fn as_hex<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:016x}"))
}

/// One ingester node's replicas, or why it did not answer.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct NodeReplicas {
    pub node: String,
    pub error: Option<String>,
    pub replicas: Vec<ReplicaState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_spread_over_every_group() {
        let t = tenant_hash(&Tenant::new("a").unwrap());
        let mut counts = vec![0u32; 16];
        for i in 0..16_000u64 {
            counts[group_of(t, xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()), 16) as usize] += 1;
        }
        assert!(
            counts.iter().all(|c| (800..1_200).contains(c)),
            "{counts:?}"
        );
        assert_eq!(group_of(t, 42, 0), 0);
    }

    #[test]
    fn placement_spreads_replicas_and_reads_members_back_from_ids() {
        let p = Placement::new(3, 4, 3);
        assert_eq!(p.members_of(0), vec![0, 1, 2]);
        assert_eq!(p.members_of(3), vec![0, 1, 2]);
        assert_eq!(p.members_of(1), vec![1, 2, 0]);
        assert_eq!(p.groups_of(2), vec![0, 1, 2, 3]);
        let one = Placement::new(4, 4, 1);
        assert_eq!(one.groups_of(3), vec![3]);
        for m in 0..5 {
            for g in [0, 7, u32::MAX] {
                assert_eq!(Placement::member_of_replica(Placement::replica_id(m, g)), m);
            }
        }
    }

    #[test]
    fn a_write_splits_into_the_groups_of_its_series_and_families() {
        use crate::{Labels, MetricMetadata, Sample};
        let t = Tenant::new("a").unwrap();
        let series: Vec<_> = (0..64)
            .map(|i| {
                (
                    Labels::from_pairs(&[("__name__", "up"), ("i", &i.to_string())]),
                    vec![Sample::new(1, 1.0)],
                )
            })
            .collect();
        let mut batch = WriteBatch::from_series(&series);
        batch.metadata.push(MetricMetadata {
            metric_family: "up".into(),
            metric_type: "gauge".into(),
            help: String::new(),
            unit: String::new(),
        });
        let parts = split_by_group(&t, &batch, 4);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.iter().map(|(_, p)| p.len()).sum::<usize>(), 64);
        let th = tenant_hash(&t);
        for (g, p) in &parts {
            assert!(p.iter().all(|s| group_of(th, s.hash, 4) == *g));
        }
        let with_md: Vec<_> = parts
            .iter()
            .filter(|(_, p)| !p.metadata.is_empty())
            .collect();
        assert_eq!(with_md.len(), 1);
        assert_eq!(with_md[0].0, group_of_family(th, "up", 4));
    }
}
