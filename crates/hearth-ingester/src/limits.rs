//! The tenants' series limits as an ingester enforces them: its share of each tenant's
//! global limits (Mimir's local limit, `global / ingesters`, since the distributors
//! spread a tenant's series evenly by hash). A shard group's leader checks them before
//! proposing, so apply never looks at limits and every replica applies the same.
//!
//! A node holding several shard groups enforces their part of the limit over the series
//! of all of them together ([`HeldSeries`]), counting the new series admitted and not
//! applied yet, so a write whose new series split over several groups cannot pass the
//! limit by being checked in parts. On a node that holds every group (the single
//! process; three nodes at RF 3) that is the global limit, exactly.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use hearth_core::{Overrides, Tenant, WriteBatch};
use hearth_series::postings::SeriesId;
use parking_lot::Mutex;

use crate::head::Head;

#[derive(Clone)]
pub struct SeriesLimits {
    pub overrides: Arc<Overrides>,
    /// Ingesters (or shard groups) the series of a tenant are spread over.
    pub ingesters: usize,
    /// Of those, how many this limit speaks for (the groups a node holds).
    pub held_parts: usize,
    /// The series of every part this limit speaks for; without it, the head being
    /// written is counted alone.
    pub held: Option<Arc<HeldSeries>>,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        SeriesLimits {
            overrides: Arc::new(Overrides::default()),
            ingesters: 1,
            held_parts: 1,
            held: None,
        }
    }
}

impl std::fmt::Debug for SeriesLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesLimits")
            .field("ingesters", &self.ingesters)
            .field("held_parts", &self.held_parts)
            .finish_non_exhaustive()
    }
}

/// The heads of several parts (a node's shard groups) counted as one for the limits,
/// with the new series admitted and not yet applied.
#[derive(Default)]
pub struct HeldSeries {
    /// The parts' current heads (a snapshot install replaces a group's head).
    heads: OnceLock<Box<dyn Fn() -> Vec<Arc<Head>> + Send + Sync>>,
    /// Per tenant: new series admitted and not applied, in all and per metric.
    pending: Mutex<HashMap<Tenant, Pending>>,
}

#[derive(Default)]
struct Pending {
    series: usize,
    per_metric: HashMap<String, usize>,
}

impl HeldSeries {
    /// Sets where the parts' heads are (once, after the parts exist).
    pub fn set_heads(&self, heads: impl Fn() -> Vec<Arc<Head>> + Send + Sync + 'static) {
        let _ = self.heads.set(Box::new(heads));
    }

    fn heads(&self) -> Vec<Arc<Head>> {
        self.heads.get().map(|f| f()).unwrap_or_default()
    }
}

/// New series admitted by the limits, counted as held until this is dropped (once the
/// write carrying them was applied, or failed).
pub struct Reservation {
    held: Arc<HeldSeries>,
    tenant: Tenant,
    series: usize,
    per_metric: Vec<(String, usize)>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut pending = self.held.pending.lock();
        if let Some(p) = pending.get_mut(&self.tenant) {
            p.series = p.series.saturating_sub(self.series);
            for (m, n) in &self.per_metric {
                if let Some(c) = p.per_metric.get_mut(m) {
                    *c = c.saturating_sub(*n);
                    if *c == 0 {
                        p.per_metric.remove(m);
                    }
                }
            }
            if p.series == 0 && p.per_metric.is_empty() {
                pending.remove(&self.tenant);
            }
        }
    }
}

/// What the limits let through: the batch without the refused new series, the samples
/// refused, the first refusal, and the admitted new series' reservation.
pub struct Admitted {
    pub batch: WriteBatch,
    /// The head id of each series of `batch` (`None`: new), as given to `admit`.
    pub ids: Vec<Option<SeriesId>>,
    pub limited: usize,
    pub message: Option<String>,
    pub reservation: Option<Reservation>,
}

impl SeriesLimits {
    /// (per tenant, per metric) limits here; 0 is no limit.
    pub fn local(&self, tenant: &Tenant) -> (usize, usize) {
        let l = self.overrides.get(tenant);
        let share = |global: u64| {
            if global == 0 {
                0
            } else {
                (global as usize * self.held_parts.max(1)).div_ceil(self.ingesters.max(1))
            }
        };
        (
            share(l.max_global_series_per_user),
            share(l.max_global_series_per_metric),
        )
    }

    /// Why one more series (`labels`, of metric `metric`) may not be made when the
    /// tenant holds `held` series and the metric `held_metric`, with `made` and
    /// `made_metric` being made with it, under local limits `(per tenant, per metric)`.
    pub fn refusal(
        (held, held_metric): (usize, usize),
        (max_series, max_per_metric): (usize, usize),
        made: usize,
        made_metric: usize,
        labels: &dyn std::fmt::Display,
    ) -> Option<String> {
        if max_series > 0 && held + made >= max_series {
            Some(format!(
                "per-tenant series limit of {max_series} exceeded on this ingester (ingester.max-global-series-per-user, or max_global_series_per_user in the runtime configuration): series {labels}"
            ))
        } else if max_per_metric > 0 && held_metric + made_metric >= max_per_metric {
            Some(format!(
                "per-metric series limit of {max_per_metric} exceeded on this ingester (ingester.max-global-series-per-metric, or max_global_series_per_metric in the runtime configuration): series {labels}"
            ))
        } else {
            None
        }
    }

    /// Lets through what the tenant's limits allow of `batch`, to be written to `head`
    /// (counting the batch's own new series). `ids` are the head ids of the batch's
    /// series in `head` (`None`: a new series), filtered as the batch is. Without `held`, writes checked at once
    /// may together pass a limit by their new series (they do not see each other's);
    /// the overshoot is bounded by the writes in flight.
    pub fn admit(
        &self,
        head: &Head,
        tenant: &Tenant,
        batch: WriteBatch,
        ids: Vec<Option<SeriesId>>,
    ) -> Admitted {
        let limits = self.local(tenant);
        let all = |batch, ids| Admitted {
            batch,
            ids,
            limited: 0,
            message: None,
            reservation: None,
        };
        if limits == (0, 0) {
            return all(batch, ids);
        }
        let th = head.tenant(tenant);
        let new: Vec<usize> = (0..batch.len()).filter(|&i| ids[i].is_none()).collect();
        if new.is_empty() {
            return all(batch, ids);
        }
        // Checked and reserved under one lock: parts of one write, checked by
        // several groups at once, see each other's new series.
        let mut pending = self.held.as_ref().map(|h| h.pending.lock());
        // The tenant's heads this limit speaks for: every part's, or the one written.
        let tenant_heads: Vec<_> = match &self.held {
            Some(h) => h.heads().iter().filter_map(|h| h.tenant(tenant)).collect(),
            None => th.iter().cloned().collect(),
        };
        let reserved = pending.as_ref().and_then(|p| p.get(tenant));
        let tenant_held = tenant_heads.iter().map(|t| t.num_series()).sum::<usize>()
            + reserved.map_or(0, |p| p.series);
        let mut metric_held = HashMap::<&str, usize>::new();
        let mut refused = vec![false; batch.len()];
        let (mut made, mut made_metric) = (0usize, HashMap::<&str, usize>::new());
        let (mut limited, mut message) = (0usize, None);
        for i in new {
            let s = batch.get(i);
            let metric = s.labels.get(hearth_core::METRIC_NAME).unwrap_or("");
            let held_metric = *metric_held.entry(metric).or_insert_with(|| {
                tenant_heads
                    .iter()
                    .map(|t| t.series_for_metric(metric))
                    .sum::<usize>()
                    + reserved
                        .and_then(|p| p.per_metric.get(metric))
                        .copied()
                        .unwrap_or(0)
            });
            let m = made_metric.entry(metric).or_insert(0);
            match Self::refusal((tenant_held, held_metric), limits, made, *m, &s.labels) {
                Some(why) => {
                    refused[i] = true;
                    limited += s.samples.len();
                    message.get_or_insert(why);
                }
                None => {
                    made += 1;
                    *m += 1;
                }
            }
        }
        let reservation = match (&self.held, pending.as_mut()) {
            (Some(held), Some(pending)) if made > 0 => {
                let p = pending.entry(tenant.clone()).or_default();
                p.series += made;
                let per_metric: Vec<(String, usize)> = made_metric
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(m, n)| (m.to_string(), n))
                    .collect();
                for (m, n) in &per_metric {
                    *p.per_metric.entry(m.clone()).or_insert(0) += n;
                }
                Some(Reservation {
                    held: held.clone(),
                    tenant: tenant.clone(),
                    series: made,
                    per_metric,
                })
            }
            _ => None,
        };
        drop(pending);
        if limited == 0 {
            return Admitted {
                reservation,
                ..all(batch, ids)
            };
        }
        let mut kept = batch
            .split(2, |i| usize::from(refused[i]))
            .into_iter()
            .next()
            .expect("two parts");
        kept.metadata = batch.metadata.clone();
        let ids = ids
            .into_iter()
            .zip(&refused)
            .filter(|(_, r)| !**r)
            .map(|(id, _)| id)
            .collect();
        Admitted {
            batch: kept,
            ids,
            limited,
            message,
            reservation,
        }
    }
}
