//! One `Queryable` over the members of a sharded, replicated set (the ingesters, or the
//! store gateways of a ring): every member whose time range overlaps is asked at once,
//! answers are merged and deduplicated as they stream. Each piece of data lives on
//! `replication_factor` members, so up to `replication_factor - 1` members may fail (at
//! any point of their answer) and the answer is still whole; one more failure fails
//! the query (never a silently short answer).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use futures::{StreamExt, TryStreamExt};
use hearth_core::{Matcher, Queryable, SelectHints, SeriesStream, StorageError, Tenant};
use tracing::warn;

use crate::merge::TimeRange;

pub struct Member {
    pub name: String,
    pub queryable: Arc<dyn Queryable>,
    pub range: TimeRange,
}

pub struct Fanout {
    members: Vec<Member>,
    tolerate_failures: usize,
}

impl Fanout {
    /// `replication_factor`: how many members hold each piece of data.
    pub fn new(members: Vec<Member>, replication_factor: usize) -> Fanout {
        Fanout {
            members,
            tolerate_failures: replication_factor.saturating_sub(1),
        }
    }

    /// The union of the members' time ranges.
    pub fn time_range(&self, tenant: &Tenant) -> (i64, i64) {
        self.members
            .iter()
            .map(|m| (m.range)(tenant))
            .fold((i64::MAX, i64::MIN), |(lo, hi), (a, b)| {
                (lo.min(a), hi.max(b))
            })
    }

    fn overlapping(&self, tenant: &Tenant, mint: i64, maxt: i64) -> Vec<&Member> {
        self.members
            .iter()
            .filter(|m| {
                let (lo, hi) = (m.range)(tenant);
                lo <= maxt && hi >= mint
            })
            .collect()
    }

    /// Keeps the answers of members that answered; fails when more failed than the
    /// replication allows.
    fn settle<T>(
        &self,
        results: Vec<(&Member, Result<T, StorageError>)>,
    ) -> Result<Vec<T>, StorageError> {
        let mut ok = Vec::with_capacity(results.len());
        let mut failed: Vec<(String, StorageError)> = Vec::new();
        for (m, r) in results {
            match r {
                Ok(v) => ok.push(v),
                Err(e) => failed.push((m.name.clone(), e)),
            }
        }
        if failed.len() > self.tolerate_failures {
            let (name, first) = failed.swap_remove(0);
            return Err(match first {
                StorageError::Invalid(m) => StorageError::Invalid(format!("{name}: {m}")),
                StorageError::Unavailable(m) => StorageError::Unavailable(format!(
                    "{name}: {m} ({} of the members failed, {} tolerated)",
                    failed.len() + 1,
                    self.tolerate_failures
                )),
                StorageError::Internal(m) => StorageError::Internal(format!("{name}: {m}")),
            });
        }
        for (name, e) in failed {
            warn!(member = %name, error = %e, "a replica failed; answering from the others");
        }
        Ok(ok)
    }
}

#[async_trait]
impl Queryable for Fanout {
    async fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let members = self.overlapping(tenant, mint, maxt);
        let sorted = SelectHints {
            unsorted: false,
            ..hints.clone()
        };
        let results = join_all(members.iter().map(|m| {
            let sorted = &sorted;
            async move {
                let r = m
                    .queryable
                    .select(tenant, matchers, mint, maxt, sorted)
                    .await;
                (*m, r.map(|stream| (m.name.clone(), stream)))
            }
        }))
        .await;
        // Failures to answer at all count against the replicas' budget; what is left of
        // it covers members that fail while they stream.
        let budget = self.tolerate_failures
            - results
                .iter()
                .filter(|(_, r)| r.is_err())
                .count()
                .min(self.tolerate_failures);
        let streams = self.settle(results)?;
        let tolerated = self.tolerate_failures;
        let sources = streams
            .into_iter()
            .map(|(name, stream)| {
                let n = name.clone();
                hearth_series::merge::MergeSource {
                    name: name.clone(),
                    stream: stream
                        .map_err(move |e| match e {
                            StorageError::Unavailable(m) => StorageError::Unavailable(format!(
                                "{n}: {m} (more members failed than the {tolerated} tolerated)"
                            )),
                            StorageError::Invalid(m) => StorageError::Invalid(format!("{n}: {m}")),
                            StorageError::Internal(m) => {
                                StorageError::Internal(format!("{n}: {m}"))
                            }
                        })
                        .boxed(),
                }
            })
            .collect();
        Ok(hearth_series::merge::merge_tolerant(sources, budget))
    }

    async fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let members = self.overlapping(tenant, mint, maxt);
        let results = join_all(members.iter().map(|m| async move {
            (
                *m,
                m.queryable.label_names(tenant, matchers, mint, maxt).await,
            )
        }))
        .await;
        let all: BTreeSet<String> = self.settle(results)?.into_iter().flatten().collect();
        Ok(all.into_iter().collect())
    }

    async fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let members = self.overlapping(tenant, mint, maxt);
        let results = join_all(members.iter().map(|m| async move {
            (
                *m,
                m.queryable
                    .label_values(tenant, name, matchers, mint, maxt)
                    .await,
            )
        }))
        .await;
        let all: BTreeSet<String> = self.settle(results)?.into_iter().flatten().collect();
        Ok(all.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::{Labels, Sample, Series, SeriesData};

    /// A member holding one series, or one that is down.
    struct Fixed(Option<Vec<Sample>>);

    #[async_trait]
    impl Queryable for Fixed {
        async fn select(
            &self,
            _: &Tenant,
            _: &[Matcher],
            _: i64,
            _: i64,
            _: &SelectHints,
        ) -> Result<SeriesStream, StorageError> {
            let samples = self
                .0
                .clone()
                .ok_or_else(|| StorageError::Unavailable("connection refused".into()))?;
            let s = Series {
                labels: Labels::from_pairs(&[("__name__", "up")]),
                data: SeriesData::Samples(samples),
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
            Ok(vec![])
        }
        async fn label_values(
            &self,
            _: &Tenant,
            _: &str,
            _: &[Matcher],
            _: i64,
            _: i64,
        ) -> Result<Vec<String>, StorageError> {
            Ok(vec![])
        }
    }

    fn member(name: &str, q: Fixed) -> Member {
        Member {
            name: name.into(),
            queryable: Arc::new(q),
            range: Arc::new(|_| (0, 100)),
        }
    }

    async fn samples(f: &Fanout) -> Result<Vec<Sample>, StorageError> {
        let s: Vec<Series> = f
            .select(&Tenant::anonymous(), &[], 0, 100, &SelectHints::default())
            .await?
            .try_collect()
            .await?;
        match &s[0].data {
            SeriesData::Samples(v) => Ok(v.clone()),
            SeriesData::Chunks(_) => unreachable!(),
        }
    }

    #[tokio::test]
    async fn replicas_merge_and_one_failure_is_tolerated_only_with_replication() {
        let a = vec![Sample { t: 1, v: 1.0 }, Sample { t: 2, v: 2.0 }];
        let b = vec![Sample { t: 2, v: 2.0 }, Sample { t: 3, v: 3.0 }];
        let both = Fanout::new(
            vec![
                member("gw-1", Fixed(Some(a.clone()))),
                member("gw-2", Fixed(Some(b))),
            ],
            2,
        );
        assert_eq!(samples(&both).await.unwrap().len(), 3, "deduplicated union");
        let one_down = || {
            vec![
                member("gw-1", Fixed(Some(a.clone()))),
                member("gw-2", Fixed(None)),
            ]
        };
        assert_eq!(samples(&Fanout::new(one_down(), 2)).await.unwrap(), a);
        let err = samples(&Fanout::new(one_down(), 1)).await.unwrap_err();
        assert!(err.to_string().contains("gw-2"), "{err}");
    }
}
