//! The ingesters a distributor writes to, as one `Ingester`: each series goes to the
//! ingester the ring gives the hash of its tenant and labels (so a series always lands
//! on the same ingester, and a tenant's series spread over all of them), every
//! ingester's part is pushed at once, and the write is acknowledged only when every
//! part is durable. A part that fails fails the write (503 for an unreachable
//! ingester): the sender retries it whole, and the parts that were stored take the
//! retry as exact duplicates, which ingesters store once.

use std::sync::Arc;

use async_trait::async_trait;
use hearth_core::shard;
use hearth_core::{Ingester, PushError, PushOutcome, Ring, Tenant, WriteBatch};

pub struct IngesterRing {
    /// (id, ingester) in ring order.
    members: Vec<(String, Arc<dyn Ingester>)>,
    ring: Ring,
}

/// Where a series of a tenant lands on the ring: the low bits of its placement key.
fn series_token(tenant_hash: u64, series_hash: u64) -> u32 {
    hearth_core::shard::series_key(tenant_hash, series_hash) as u32
}

/// The ring key of a metric family's metadata.
fn family_key(tenant: &Tenant, family: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.as_str().len() + family.len() + 2);
    k.extend_from_slice(tenant.as_str().as_bytes());
    k.extend_from_slice(&[0xff, 0xfe]);
    k.extend_from_slice(family.as_bytes());
    k
}

impl IngesterRing {
    /// A ring over `members` (distinct ids).
    pub fn new(members: Vec<(String, Arc<dyn Ingester>)>, tokens_per_member: usize) -> Self {
        let ids: Vec<String> = members.iter().map(|(id, _)| id.clone()).collect();
        let ring = Ring::new(&ids, tokens_per_member, 1);
        let mut members = members;
        // The ring's member order (sorted ids), so its indexes are ours.
        members.sort_by(|a, b| a.0.cmp(&b.0));
        IngesterRing { members, ring }
    }

    fn owner_of_token(&self, token: u32) -> usize {
        self.ring.primary_of_token(token).unwrap_or(0)
    }

    /// The id of the ingester a series of `tenant` with label hash `hash` goes to.
    pub fn owner_of(&self, tenant: &Tenant, hash: u64) -> &str {
        &self.members[self.owner_of_token(series_token(shard::tenant_hash(tenant), hash))].0
    }

    /// The batch split by owner, in one pass: (member, its part), members without a
    /// part left out.
    fn split(&self, tenant: &Tenant, batch: WriteBatch) -> Vec<(usize, WriteBatch)> {
        let th = shard::tenant_hash(tenant);
        let owners: Vec<usize> = batch
            .iter()
            .map(|s| self.owner_of_token(series_token(th, s.hash)))
            .collect();
        let mut parts = batch.split(self.members.len(), |i| owners[i]);
        for md in &batch.metadata {
            let m = self.owner_of_token(Ring::token_of(&family_key(tenant, &md.metric_family)));
            parts[m].metadata.push(md.clone());
        }
        parts
            .into_iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty() || !p.metadata.is_empty())
            .collect()
    }
}

#[async_trait]
impl Ingester for IngesterRing {
    async fn push(&self, tenant: &Tenant, batch: WriteBatch) -> Result<PushOutcome, PushError> {
        if self.members.len() == 1 {
            return self.members[0].1.push(tenant, batch).await;
        }
        let parts = self.split(tenant, batch);
        let results = futures::future::join_all(
            parts
                .into_iter()
                .map(|(m, part)| self.members[m].1.push(tenant, part)),
        )
        .await;
        // An unreachable ingester is what the sender must hear first: 503.
        PushOutcome::combine(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::{Labels, MetricMetadata, Sample};
    use parking_lot::Mutex;

    /// An ingester that records what it was sent, or is down.
    struct Recording {
        got: Mutex<Vec<(String, usize)>>,
        metadata: Mutex<Vec<String>>,
        down: bool,
    }

    #[async_trait]
    impl Ingester for Recording {
        async fn push(&self, _: &Tenant, b: WriteBatch) -> Result<PushOutcome, PushError> {
            if self.down {
                return Err(PushError::Unavailable("connection refused".into()));
            }
            let mut got = self.got.lock();
            for s in b.iter() {
                got.push((s.labels.to_string(), s.samples.len()));
            }
            self.metadata
                .lock()
                .extend(b.metadata.iter().map(|m| m.metric_family.clone()));
            Ok(PushOutcome {
                samples_written: b.sample_count(),
                ..Default::default()
            })
        }
    }

    fn member(down: bool) -> Arc<Recording> {
        Arc::new(Recording {
            got: Mutex::new(Vec::new()),
            metadata: Mutex::new(Vec::new()),
            down,
        })
    }

    fn batch(n: usize) -> WriteBatch {
        let series: Vec<(Labels, Vec<Sample>)> = (0..n)
            .map(|i| {
                (
                    Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]),
                    vec![Sample::new(1, 1.0), Sample::new(2, 2.0)],
                )
            })
            .collect();
        let mut b = WriteBatch::from_series(&series);
        b.metadata.push(MetricMetadata {
            metric_family: "m".into(),
            metric_type: "gauge".into(),
            help: String::new(),
            unit: String::new(),
        });
        b
    }

    /// Every series reaches exactly the ingester the ring gives it, whole; the parts
    /// are spread; the outcome adds up; metadata goes to one ingester.
    #[tokio::test]
    async fn series_split_by_the_ring() {
        let ms: Vec<Arc<Recording>> = (0..3).map(|_| member(false)).collect();
        let ring = IngesterRing::new(
            ms.iter()
                .enumerate()
                .map(|(i, m)| {
                    (
                        format!("ingester-{}", i + 1),
                        m.clone() as Arc<dyn Ingester>,
                    )
                })
                .collect(),
            128,
        );
        let t = Tenant::new("t").unwrap();
        let out = ring.push(&t, batch(300)).await.unwrap();
        assert_eq!(out.samples_written, 600);
        let b = batch(300);
        for (i, m) in ms.iter().enumerate() {
            let got = m.got.lock();
            assert!(
                got.len() > 50,
                "ingester {i} got {} of 300 series",
                got.len()
            );
            for (labels, n) in got.iter() {
                assert_eq!(*n, 2);
                let s = b.iter().find(|s| s.labels.to_string() == *labels).unwrap();
                assert_eq!(ring.owner_of(&t, s.hash), format!("ingester-{}", i + 1));
            }
        }
        let total: usize = ms.iter().map(|m| m.got.lock().len()).sum();
        assert_eq!(total, 300);
        let md: usize = ms.iter().map(|m| m.metadata.lock().len()).sum();
        assert_eq!(md, 1);
    }

    /// One unreachable ingester fails the write with Unavailable (503): never a success
    /// for data that is not in a log.
    #[tokio::test]
    async fn an_unreachable_ingester_fails_the_write() {
        let ring = IngesterRing::new(
            vec![
                ("a".into(), member(false) as Arc<dyn Ingester>),
                ("b".into(), member(true) as Arc<dyn Ingester>),
                ("c".into(), member(false) as Arc<dyn Ingester>),
            ],
            128,
        );
        match ring.push(&Tenant::anonymous(), batch(100)).await {
            Err(PushError::Unavailable(m)) => assert!(m.contains("refused")),
            other => panic!("want unavailable, got {other:?}"),
        }
    }
}
