//! One `Queryable` over replicated ingester nodes, reading one replica per shard group:
//! a group's series live on its replicas only, so every group is asked once, on the
//! replica that answered last (its leader, most likely), and the groups' answers, which
//! hold disjoint series, are merged as they stream. A replica answers only after it has
//! confirmed with a quorum that it leads and has applied everything committed
//! (`GroupReader`), so an acknowledged write is never missing from a later answer, and
//! no series is counted twice because no group is read twice.
//!
//! A replica that cannot serve (not the leader, cut off, down) is passed over for the
//! group's next one; when none can (an election), the group is tried again after a
//! short wait until `retry_for` has passed, then the query fails: never a short answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::join_all;
use hearth_core::shard::{GroupReader, Placement};
use hearth_core::{Matcher, Queryable, SelectHints, SeriesStream, StorageError, Tenant};
use tracing::debug;

pub struct GroupFanout {
    /// (name, node) per member, in the cluster's member order.
    members: Vec<(String, Arc<dyn GroupReader>)>,
    placement: Placement,
    /// Per group: the member whose replica answered last.
    readers: Vec<AtomicUsize>,
    retry_for: Duration,
}

impl GroupFanout {
    /// Reads over the cluster's ingester nodes, listed in the member order every node
    /// was given; a group with no replica able to serve is retried for `retry_for`.
    pub fn new(
        members: Vec<(String, Arc<dyn GroupReader>)>,
        groups: u32,
        replication_factor: usize,
        retry_for: Duration,
    ) -> GroupFanout {
        let placement = Placement::new(members.len(), groups, replication_factor);
        let readers = (0..placement.groups())
            .map(|g| AtomicUsize::new(placement.members_of(g)[0]))
            .collect();
        GroupFanout {
            members,
            placement,
            readers,
            retry_for,
        }
    }

    /// Runs `read` on one replica of `group`: the one that answered last first, then the
    /// others, in rounds until one answers or `retry_for` has passed.
    async fn on_group<T, F, Fut>(&self, group: u32, read: F) -> Result<T, StorageError>
    where
        F: Fn(Arc<dyn Queryable>) -> Fut,
        Fut: std::future::Future<Output = Result<T, StorageError>>,
    {
        let replicas = self.placement.members_of(group);
        let deadline = Instant::now() + self.retry_for;
        loop {
            let first = self.readers[group as usize].load(Ordering::Relaxed);
            let order =
                std::iter::once(first).chain(replicas.iter().copied().filter(|m| *m != first));
            let mut failures = Vec::new();
            for m in order {
                let (name, node) = &self.members[m];
                let answer = match node.group(group).await {
                    Ok(q) => read(q).await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(v) => {
                        self.readers[group as usize].store(m, Ordering::Relaxed);
                        return Ok(v);
                    }
                    // The request itself is wrong: no replica would take it.
                    Err(e @ StorageError::Invalid(_)) => return Err(e),
                    Err(e) => failures.push(format!("{name}: {e}")),
                }
            }
            if Instant::now() >= deadline {
                return Err(StorageError::Unavailable(format!(
                    "shard group {group}: no replica could serve the read within {:?} ({})",
                    self.retry_for,
                    failures.join("; ")
                )));
            }
            debug!(group, failures = ?failures, "no replica of the group served the read; retrying");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every group's answer to `read`.
    async fn all_groups<T, F, Fut>(&self, read: F) -> Result<Vec<T>, StorageError>
    where
        F: Fn(Arc<dyn Queryable>) -> Fut + Clone,
        Fut: std::future::Future<Output = Result<T, StorageError>>,
    {
        join_all((0..self.placement.groups()).map(|g| self.on_group(g, read.clone())))
            .await
            .into_iter()
            .collect()
    }
}

fn union(lists: Vec<Vec<String>>) -> Vec<String> {
    let mut all: Vec<String> = lists.into_iter().flatten().collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[async_trait]
impl Queryable for GroupFanout {
    async fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let streams = self
            .all_groups(|q| async move { q.select(tenant, matchers, mint, maxt, hints).await })
            .await?;
        Ok(hearth_series::merge::merge_streams(streams))
    }

    async fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let lists = self
            .all_groups(|q| async move { q.label_names(tenant, matchers, mint, maxt).await })
            .await?;
        Ok(union(lists))
    }

    async fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let lists = self
            .all_groups(|q| async move { q.label_values(tenant, name, matchers, mint, maxt).await })
            .await?;
        Ok(union(lists))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use hearth_core::{Labels, Sample, Series, SeriesData};

    /// A group's head holding one series named after the group.
    struct GroupHead(u32);

    #[async_trait]
    impl Queryable for GroupHead {
        async fn select(
            &self,
            _: &Tenant,
            _: &[Matcher],
            _: i64,
            _: i64,
            _: &SelectHints,
        ) -> Result<SeriesStream, StorageError> {
            let s = Series {
                labels: Labels::from_pairs(&[("__name__", "up"), ("g", &self.0.to_string())]),
                data: SeriesData::Samples(vec![Sample::new(1, 1.0)]),
            };
            Ok(futures::StreamExt::boxed(futures::stream::iter([Ok(s)])))
        }
        async fn label_names(
            &self,
            _: &Tenant,
            _: &[Matcher],
            _: i64,
            _: i64,
        ) -> Result<Vec<String>, StorageError> {
            Ok(vec!["__name__".into(), "g".into()])
        }
        async fn label_values(
            &self,
            _: &Tenant,
            _: &str,
            _: &[Matcher],
            _: i64,
            _: i64,
        ) -> Result<Vec<String>, StorageError> {
            Ok(vec![self.0.to_string()])
        }
    }

    /// A node whose replicas serve reads only for the groups it leads.
    struct Node(Vec<u32>);

    #[async_trait]
    impl GroupReader for Node {
        async fn group(&self, group: u32) -> Result<Arc<dyn Queryable>, StorageError> {
            if self.0.contains(&group) {
                Ok(Arc::new(GroupHead(group)))
            } else {
                Err(StorageError::Unavailable(format!(
                    "group {group}: not the leader"
                )))
            }
        }
    }

    fn fanout(leads: [Vec<u32>; 3]) -> GroupFanout {
        let members = leads
            .into_iter()
            .enumerate()
            .map(|(i, l)| (format!("n{i}"), Arc::new(Node(l)) as Arc<dyn GroupReader>))
            .collect();
        GroupFanout::new(members, 4, 3, Duration::from_millis(300))
    }

    #[tokio::test]
    async fn each_group_is_read_once_on_the_replica_that_serves_it() {
        // Every group is led by a member other than placement's first guess.
        let f = fanout([vec![1], vec![2, 3], vec![0]]);
        let t = Tenant::anonymous();
        let series: Vec<Series> = f
            .select(&t, &[], 0, 10, &SelectHints::default())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let groups: Vec<String> = series
            .iter()
            .map(|s| s.labels.get("g").unwrap().to_string())
            .collect();
        assert_eq!(groups, vec!["0", "1", "2", "3"], "each group once, sorted");
        assert_eq!(f.label_values(&t, "g", &[], 0, 10).await.unwrap().len(), 4);
        assert_eq!(
            f.label_names(&t, &[], 0, 10).await.unwrap(),
            vec!["__name__", "g"]
        );
        assert_eq!(f.readers[0].load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_group_no_replica_serves_fails_the_read_rather_than_shortening_it() {
        // Nobody serves group 2 (an election that outlasts the retry window).
        let f = fanout([vec![0], vec![1], vec![3]]);
        let e = f
            .select(&Tenant::anonymous(), &[], 0, 10, &SelectHints::default())
            .await
            .err()
            .expect("a failed read");
        assert!(matches!(e, StorageError::Unavailable(_)), "{e:?}");
        assert!(e.to_string().contains("shard group 2"), "{e}");
    }
}
