//! Shard groups: the fixed number of Raft groups a cluster's series are split into, and
//! which one a series of a tenant belongs to. Distributors and ingesters compute it the
//! same way, so this is the one definition. The number of groups is chosen when the
//! cluster is created and never follows the number of nodes.

use crate::Tenant;

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
}
