//! Per-tenant limits, with Mimir's names and defaults, and the overrides that change
//! them for some tenants without a restart (Mimir's runtime configuration file).
//!
//! The distributor applies the ingestion rate and the per-series rules (label counts
//! and lengths, how far in the future a sample may be); ingesters apply the series
//! limits, where series are created. Every role reads the same [`Overrides`]; the binary
//! reloads it from the file.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Tenant;

/// One tenant's limits. The YAML keys are Mimir's (`overrides:` in the runtime
/// configuration file); the flags that set the defaults are named beside each field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantLimits {
    /// `-distributor.ingestion-rate-limit`: samples per second a tenant may push
    /// (token bucket refill rate). Above it, requests get 429 and senders retry.
    pub ingestion_rate: f64,
    /// `-distributor.ingestion-burst-size`: the token bucket's size.
    pub ingestion_burst_size: u64,
    /// `-ingester.max-global-series-per-user`: series a tenant may have in the
    /// ingesters; 0 means no limit. Each ingester enforces its share.
    pub max_global_series_per_user: u64,
    /// `-ingester.max-global-series-per-metric`: series per metric name; 0: no limit.
    pub max_global_series_per_metric: u64,
    /// `-validation.max-label-names-per-series`.
    pub max_label_names_per_series: usize,
    /// `-validation.max-length-label-name` (bytes).
    pub max_label_name_length: usize,
    /// `-validation.max-length-label-value` (bytes).
    pub max_label_value_length: usize,
    /// `-validation.create-grace-period`: how far after the receiving distributor's
    /// clock a sample's timestamp may be (a Prometheus duration string in YAML).
    #[serde(with = "duration_serde", rename = "creation_grace_period")]
    pub creation_grace_period_ms: i64,
    /// `-compactor.blocks-retention-period`: blocks that end longer ago than this are
    /// deleted by the compactor; 0 keeps everything.
    #[serde(with = "duration_serde", rename = "compactor_blocks_retention_period")]
    pub compactor_blocks_retention_period_ms: i64,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            ingestion_rate: 10_000.0,
            ingestion_burst_size: 200_000,
            max_global_series_per_user: 150_000,
            max_global_series_per_metric: 0,
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            creation_grace_period_ms: 10 * 60 * 1000,
            compactor_blocks_retention_period_ms: 0,
        }
    }
}

/// Durations as Prometheus strings (`10m`) in YAML, milliseconds in memory.
mod duration_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::duration::format_duration_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        crate::duration::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// The limits in effect: defaults from the flags, and per-tenant overrides that can be
/// replaced at any time (the runtime configuration file was reloaded).
#[derive(Debug)]
pub struct Overrides {
    defaults: Arc<TenantLimits>,
    tenants: parking_lot::RwLock<Arc<HashMap<String, Arc<TenantLimits>>>>,
}

impl Overrides {
    pub fn new(defaults: TenantLimits) -> Overrides {
        Overrides {
            defaults: Arc::new(defaults),
            tenants: parking_lot::RwLock::new(Arc::new(HashMap::new())),
        }
    }

    /// The limits of `tenant`: its override, else the defaults.
    pub fn get(&self, tenant: &Tenant) -> Arc<TenantLimits> {
        self.tenants
            .read()
            .get(tenant.as_str())
            .cloned()
            .unwrap_or_else(|| self.defaults.clone())
    }

    pub fn defaults(&self) -> &TenantLimits {
        &self.defaults
    }

    /// Replaces every tenant's override at once.
    pub fn set(&self, tenants: HashMap<String, TenantLimits>) {
        let map = tenants.into_iter().map(|(t, l)| (t, Arc::new(l))).collect();
        *self.tenants.write() = Arc::new(map);
    }

    /// The tenants with an override now.
    pub fn overridden(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tenants.read().keys().cloned().collect();
        v.sort();
        v
    }
}

impl Default for Overrides {
    fn default() -> Self {
        Overrides::new(TenantLimits::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_defaults_per_tenant() {
        let o = Overrides::default();
        let a = Tenant::new("a").unwrap();
        assert_eq!(o.get(&a).max_global_series_per_user, 150_000);
        o.set(HashMap::from([(
            "a".to_string(),
            TenantLimits {
                max_global_series_per_user: 5,
                ..TenantLimits::default()
            },
        )]));
        assert_eq!(o.get(&a).max_global_series_per_user, 5);
        assert_eq!(
            o.get(&Tenant::anonymous()).max_global_series_per_user,
            150_000
        );
        assert_eq!(o.overridden(), vec!["a"]);
    }
}
