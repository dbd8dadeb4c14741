//! One `Queryable` over several: the ingesters' heads (recent data) and the blocks of
//! the bucket (history). A query asks only the sources whose time range overlaps it;
//! series with the same labels from several sources become one, with samples that
//! appear in more than one (a block and the head around a shipping) taken once.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use hearth_core::{Matcher, Queryable, SelectHints, SeriesStream, StorageError, Tenant};

/// The time range a source holds now, inclusive; `(i64::MAX, i64::MIN)` when empty.
pub type TimeRange = Arc<dyn Fn(&Tenant) -> (i64, i64) + Send + Sync>;

pub struct Source {
    /// Names the source in errors ("store-gateway: storage unavailable: ...").
    pub name: &'static str,
    pub queryable: Arc<dyn Queryable>,
    pub range: TimeRange,
}

pub struct MergeQueryable {
    sources: Vec<Source>,
}

/// The error of one source, naming it, in the same class.
fn named(name: &str, e: StorageError) -> StorageError {
    match e {
        StorageError::Invalid(m) => StorageError::Invalid(format!("{name}: {m}")),
        StorageError::Unavailable(m) => StorageError::Unavailable(format!("{name}: {m}")),
        StorageError::Internal(m) => StorageError::Internal(format!("{name}: {m}")),
    }
}

impl MergeQueryable {
    pub fn new(sources: Vec<Source>) -> MergeQueryable {
        MergeQueryable { sources }
    }

    fn overlapping(&self, tenant: &Tenant, mint: i64, maxt: i64) -> Vec<&Source> {
        self.sources
            .iter()
            .filter(|s| {
                let (lo, hi) = (s.range)(tenant);
                lo <= maxt && hi >= mint
            })
            .collect()
    }
}

#[async_trait]
impl Queryable for MergeQueryable {
    async fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let sources = self.overlapping(tenant, mint, maxt);
        match sources.as_slice() {
            [] => Ok(futures::stream::empty().boxed()),
            [one] => one
                .queryable
                .select(tenant, matchers, mint, maxt, hints)
                .await
                .map_err(|e| named(one.name, e)),
            several => {
                let sorted = SelectHints {
                    unsorted: false,
                    ..hints.clone()
                };
                // Every source at once; their answers are merged as they stream.
                let opened = futures::future::join_all(several.iter().map(|s| {
                    let sorted = &sorted;
                    async move {
                        let name = s.name;
                        s.queryable
                            .select(tenant, matchers, mint, maxt, sorted)
                            .await
                            .map(|st| st.map_err(move |e| named(name, e)).boxed())
                            .map_err(|e| named(name, e))
                    }
                }))
                .await;
                let streams = opened.into_iter().collect::<Result<Vec<_>, _>>()?;
                Ok(hearth_series::merge::merge_streams(streams))
            }
        }
    }

    async fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut all = BTreeSet::new();
        for s in self.overlapping(tenant, mint, maxt) {
            all.extend(
                s.queryable
                    .label_names(tenant, matchers, mint, maxt)
                    .await
                    .map_err(|e| named(s.name, e))?,
            );
        }
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
        let mut all = BTreeSet::new();
        for s in self.overlapping(tenant, mint, maxt) {
            all.extend(
                s.queryable
                    .label_values(tenant, name, matchers, mint, maxt)
                    .await
                    .map_err(|e| named(s.name, e))?,
            );
        }
        Ok(all.into_iter().collect())
    }
}
