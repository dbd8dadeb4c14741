//! A consistent-hash ring: which members own a key. Store gateways use it to split the
//! blocks of a bucket between them (each block to `replication_factor` gateways), the
//! way Mimir's store-gateway ring does; the members come from configuration, so every
//! process that reads the same configuration computes the same owners without talking.
//!
//! Each member places `tokens_per_member` tokens on a 32-bit circle, at hashes of its id;
//! a key belongs to the members of the first tokens clockwise from the key's hash, skipping
//! tokens of members already taken. Adding a member moves only the keys its new tokens
//! take over, and those keys move to it.

use xxhash_rust::xxh3::xxh3_64;

/// Tokens each member places: enough that members' shares stay within a few percent.
pub const DEFAULT_TOKENS_PER_MEMBER: usize = 128;

#[derive(Clone, Debug)]
pub struct Ring {
    members: Vec<String>,
    /// (token, member index), sorted by token.
    tokens: Vec<(u32, usize)>,
    replication_factor: usize,
}

fn token_hash(bytes: &[u8]) -> u32 {
    let h = xxh3_64(bytes);
    (h ^ (h >> 32)) as u32
}

impl Ring {
    /// A ring over `members` (distinct ids, in any order). The replication factor is
    /// clamped to the number of members.
    pub fn new(members: &[String], tokens_per_member: usize, replication_factor: usize) -> Ring {
        let mut ids: Vec<String> = members.to_vec();
        ids.sort();
        ids.dedup();
        let mut tokens = Vec::with_capacity(ids.len() * tokens_per_member);
        for (i, id) in ids.iter().enumerate() {
            for t in 0..tokens_per_member {
                tokens.push((token_hash(format!("{id}/{t}").as_bytes()), i));
            }
        }
        // Ties (two members drawing the same token) are ordered by member, so every
        // process sorts the same way.
        tokens.sort_unstable();
        let replication_factor = replication_factor.clamp(1, ids.len().max(1));
        Ring {
            members: ids,
            tokens,
            replication_factor,
        }
    }

    pub fn members(&self) -> &[String] {
        &self.members
    }

    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// The members that own `key`: `replication_factor` distinct ids, primary first.
    pub fn owners(&self, key: &[u8]) -> Vec<&str> {
        if self.tokens.is_empty() {
            return Vec::new();
        }
        let h = token_hash(key);
        let start = self.tokens.partition_point(|(t, _)| *t < h);
        let mut out: Vec<usize> = Vec::with_capacity(self.replication_factor);
        for k in 0..self.tokens.len() {
            let (_, m) = self.tokens[(start + k) % self.tokens.len()];
            if !out.contains(&m) {
                out.push(m);
                if out.len() == self.replication_factor {
                    break;
                }
            }
        }
        out.into_iter().map(|m| self.members[m].as_str()).collect()
    }

    /// The index (in [`Ring::members`] order) of the first owner of a key whose hash is
    /// `token`: the write path's lookup, one binary search and no allocation. `None`
    /// for a ring without members.
    pub fn primary_of_token(&self, token: u32) -> Option<usize> {
        if self.tokens.is_empty() {
            return None;
        }
        let i = self.tokens.partition_point(|(t, _)| *t < token) % self.tokens.len();
        Some(self.tokens[i].1)
    }

    /// The token of a key, as [`Ring::owners`] places it.
    pub fn token_of(key: &[u8]) -> u32 {
        token_hash(key)
    }

    /// Whether `member` is one of the owners of `key`.
    pub fn owns(&self, member: &str, key: &[u8]) -> bool {
        self.owners(key).contains(&member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("store-gateway-{i}")).collect()
    }

    fn keys() -> Vec<String> {
        // Block ULIDs are what the ring hashes; any spread of strings does.
        (0..20_000).map(|i| format!("01J{i:023}")).collect()
    }

    #[test]
    fn shares_are_balanced_and_each_key_has_distinct_owners() {
        let ring = Ring::new(&ids(3), DEFAULT_TOKENS_PER_MEMBER, 2);
        let mut counts = [0usize; 3];
        for k in keys() {
            let owners = ring.owners(k.as_bytes());
            assert_eq!(owners.len(), 2);
            assert_ne!(owners[0], owners[1]);
            let i = ring.members().iter().position(|m| m == owners[0]).unwrap();
            counts[i] += 1;
        }
        for c in counts {
            // A third each, within 20%.
            assert!((5_333..=8_000).contains(&c), "primary shares {counts:?}");
        }
    }

    #[test]
    fn adding_a_member_moves_keys_only_to_it() {
        let before = Ring::new(&ids(3), DEFAULT_TOKENS_PER_MEMBER, 1);
        let after = Ring::new(&ids(4), DEFAULT_TOKENS_PER_MEMBER, 1);
        let mut moved = 0;
        for k in keys() {
            let (a, b) = (
                before.owners(k.as_bytes())[0],
                after.owners(k.as_bytes())[0],
            );
            if a != b {
                assert_eq!(b, "store-gateway-4", "key {k} moved from {a} to {b}");
                moved += 1;
            }
        }
        // About a quarter of the keys move, and only those.
        assert!((3_000..=7_000).contains(&moved), "moved {moved}");
    }

    #[test]
    fn the_primary_by_token_is_the_first_owner() {
        let ring = Ring::new(&ids(3), DEFAULT_TOKENS_PER_MEMBER, 2);
        for k in keys().iter().take(2_000) {
            let i = ring.primary_of_token(Ring::token_of(k.as_bytes())).unwrap();
            assert_eq!(ring.members()[i], ring.owners(k.as_bytes())[0]);
        }
        assert_eq!(Ring::new(&[], 16, 1).primary_of_token(7), None);
    }

    #[test]
    fn order_of_members_does_not_matter_and_factor_is_clamped() {
        let mut rev = ids(3);
        rev.reverse();
        let a = Ring::new(&ids(3), 16, 5);
        let b = Ring::new(&rev, 16, 5);
        assert_eq!(a.replication_factor(), 3);
        for k in keys().iter().take(100) {
            assert_eq!(a.owners(k.as_bytes()), b.owners(k.as_bytes()));
        }
        assert!(Ring::new(&[], 16, 1).owners(b"x").is_empty());
    }
}
