//! Deletion requests kept in the bucket, one object per request at
//! `<tenant>/tombstones/<ULID>.json` (where Cortex keeps its delete requests too), so
//! every querier and the compactor see the same ones and a restart forgets none. A
//! request is acknowledged only once its object is written.
//!
//! Tombstones are kept: they are small, and a deletion must keep hiding samples of its
//! interval that an ingester still holds or ships later; the compactor rewrites blocks
//! that hold deleted samples, so the data itself goes away.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::TryStreamExt;
use hearth_core::{Deletion, MatchOp, Matcher, Tenant};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::block::BlockError;

pub const TOMBSTONES_DIR: &str = "tombstones";
/// A request names up to a million series with their ends (about 40 bytes each).
const MAX_TOMBSTONE_BYTES: u64 = 64 << 20;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct WireMatcher {
    name: String,
    /// `=`, `!=`, `=~` or `!~`.
    op: String,
    value: String,
}

/// The stored form of one request: one or more matcher sets (`match[]`), one interval,
/// and (version 2) each series it deleted from with that series' end, so samples
/// written after the request are never hidden (see `hearth_core::Deletion`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct TombstoneFile {
    version: u32,
    id: String,
    /// Unix milliseconds the request was accepted.
    created_ms: i64,
    matcher_sets: Vec<Vec<WireMatcher>>,
    start: i64,
    end: i64,
    /// `[labels hash, newest sample in the interval]` per series; absent in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    series_ends: Option<Vec<(u64, i64)>>,
}

fn op_str(op: MatchOp) -> &'static str {
    match op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::RegexMatch => "=~",
        MatchOp::RegexNoMatch => "!~",
    }
}

fn op_from(s: &str) -> Option<MatchOp> {
    Some(match s {
        "=" => MatchOp::Equal,
        "!=" => MatchOp::NotEqual,
        "=~" => MatchOp::RegexMatch,
        "!~" => MatchOp::RegexNoMatch,
        _ => return None,
    })
}

impl TombstoneFile {
    fn deletions(&self) -> Result<Vec<Deletion>, String> {
        let series_ends = self
            .series_ends
            .as_ref()
            .map(|v| Arc::new(v.iter().copied().collect::<HashMap<u64, i64>>()));
        self.matcher_sets
            .iter()
            .map(|set| {
                let matchers = set
                    .iter()
                    .map(|m| {
                        let op = op_from(&m.op).ok_or_else(|| format!("matcher op {:?}", m.op))?;
                        Matcher::new(op, &m.name, &m.value).map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Deletion {
                    matchers,
                    start: self.start,
                    end: self.end,
                    series_ends: series_ends.clone(),
                })
            })
            .collect()
    }
}

/// Every tenant's deletions, as last read from the bucket plus those added here.
pub struct Tombstones {
    bucket: Arc<dyn ObjectStore>,
    /// tenant -> (tombstone id -> its deletions).
    known: RwLock<BTreeMap<String, BTreeMap<String, Vec<Deletion>>>>,
}

impl Tombstones {
    pub fn new(bucket: Arc<dyn ObjectStore>) -> Tombstones {
        Tombstones {
            bucket,
            known: RwLock::new(BTreeMap::new()),
        }
    }

    fn dir(tenant: &Tenant) -> Path {
        Path::from(tenant.as_str()).join(TOMBSTONES_DIR)
    }

    /// Records a deletion of the series matching any of `sets` from `start` to `end`
    /// (inclusive), each series only up to its end in `series_ends` (series not there
    /// lose nothing): written to the bucket first, then in effect here.
    pub async fn add(
        &self,
        tenant: &Tenant,
        sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
        series_ends: HashMap<u64, i64>,
        now_ms: i64,
    ) -> Result<(), BlockError> {
        let id = ulid::Ulid::new().to_string();
        let mut ends: Vec<(u64, i64)> = series_ends.into_iter().collect();
        ends.sort_unstable();
        let file = TombstoneFile {
            version: 2,
            series_ends: Some(ends),
            id: id.clone(),
            created_ms: now_ms,
            matcher_sets: sets
                .iter()
                .map(|set| {
                    set.iter()
                        .map(|m| WireMatcher {
                            name: m.name.clone(),
                            op: op_str(m.op).into(),
                            value: m.value.clone(),
                        })
                        .collect()
                })
                .collect(),
            start,
            end,
        };
        let json = serde_json::to_vec(&file).map_err(|e| BlockError::Format(e.to_string()))?;
        let path = Self::dir(tenant).join(format!("{id}.json"));
        self.bucket.put(&path, PutPayload::from(json)).await?;
        let deletions = file.deletions().map_err(BlockError::Format)?;
        self.known
            .write()
            .entry(tenant.as_str().to_string())
            .or_default()
            .insert(id, deletions);
        Ok(())
    }

    /// Reads the tombstones of every tenant in the bucket (new ones; tombstones are
    /// never removed, so what is known stays).
    pub async fn sync(&self) -> Result<usize, BlockError> {
        let root = self.bucket.list_with_delimiter(None).await?;
        for prefix in root.common_prefixes {
            let Some(tenant) = prefix.filename().and_then(|n| Tenant::new(n).ok()) else {
                continue;
            };
            let objects: Vec<_> = self
                .bucket
                .list(Some(&Self::dir(&tenant)))
                .try_collect()
                .await?;
            for o in objects {
                let Some(id) = o
                    .location
                    .filename()
                    .and_then(|f| f.strip_suffix(".json"))
                    .map(str::to_string)
                else {
                    continue;
                };
                let seen = self
                    .known
                    .read()
                    .get(tenant.as_str())
                    .is_some_and(|m| m.contains_key(&id));
                if seen {
                    continue;
                }
                if o.size > MAX_TOMBSTONE_BYTES {
                    return Err(BlockError::Format(format!(
                        "{}: larger than {MAX_TOMBSTONE_BYTES} bytes",
                        o.location
                    )));
                }
                let bytes = self.bucket.get(&o.location).await?.bytes().await?;
                let file: TombstoneFile = serde_json::from_slice(&bytes)
                    .map_err(|e| BlockError::Format(format!("{}: {e}", o.location)))?;
                let deletions = file
                    .deletions()
                    .map_err(|e| BlockError::Format(format!("{}: {e}", o.location)))?;
                self.known
                    .write()
                    .entry(tenant.as_str().to_string())
                    .or_default()
                    .insert(id, deletions);
            }
        }
        Ok(self.known.read().values().map(BTreeMap::len).sum())
    }

    /// The tenant's deletions in effect.
    pub fn deletions(&self, tenant: &Tenant) -> Vec<Deletion> {
        self.known
            .read()
            .get(tenant.as_str())
            .map(|m| m.values().flatten().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn tombstones_survive_in_the_bucket() {
        let bucket: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let t = Tombstones::new(bucket.clone());
        let tenant = Tenant::new("team-a").unwrap();
        let sets = vec![vec![
            Matcher::new(MatchOp::Equal, "__name__", "up").unwrap(),
            Matcher::new(MatchOp::RegexMatch, "job", "a|b").unwrap(),
        ]];
        let up = hearth_core::Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        t.add(
            &tenant,
            &sets,
            10,
            20,
            HashMap::from([(up.hash64(), 15)]),
            1,
        )
        .await
        .unwrap();
        assert_eq!(t.deletions(&tenant).len(), 1);
        assert!(t.deletions(&Tenant::anonymous()).is_empty());
        // Another process reads the same deletions from the bucket.
        let other = Tombstones::new(bucket);
        assert_eq!(other.sync().await.unwrap(), 1);
        let d = &other.deletions(&tenant)[0];
        assert_eq!((d.start, d.end), (10, 20));
        assert_eq!(d.interval(&up), Some((10, 15)));
        assert_eq!(d.matchers.len(), 2);
        assert_eq!(d.matchers[1].op, MatchOp::RegexMatch);
        assert_eq!(d.matchers[1].value, "a|b");
    }
}
