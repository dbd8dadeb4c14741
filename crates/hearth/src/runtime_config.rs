//! The runtime configuration file (`--runtime-config.file`, Mimir's format): per-tenant
//! limits that change without a restart.
//!
//! ```yaml
//! overrides:
//!   team-a:
//!     ingestion_rate: 50000
//!     max_global_series_per_user: 1000000
//!   team-b:
//!     compactor_blocks_retention_period: 30d
//! ```
//!
//! A tenant's entry starts from the defaults the flags set; the keys it names replace
//! them. The file is read at start (a bad file stops the start, with the error) and
//! again every reload period; a bad edit is logged and counted, and the last good
//! overrides stay in effect.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hearth_core::{Overrides, TenantLimits};
use serde::Deserialize;
use tracing::{info, warn};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RuntimeFile {
    #[serde(default)]
    overrides: HashMap<String, serde_yaml_ng::Mapping>,
}

/// Parses the file's text into every overridden tenant's limits.
pub fn parse(text: &str, defaults: &TenantLimits) -> Result<HashMap<String, TenantLimits>, String> {
    let file: RuntimeFile = if text.trim().is_empty() {
        RuntimeFile::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
    };
    let base = serde_yaml_ng::to_value(defaults).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (tenant, keys) in file.overrides {
        hearth_core::Tenant::new(&tenant).map_err(|e| format!("overrides: {e}"))?;
        let mut merged = base.as_mapping().cloned().unwrap_or_default();
        for (k, v) in keys {
            merged.insert(k, v);
        }
        let limits: TenantLimits = serde_yaml_ng::from_value(serde_yaml_ng::Value::Mapping(merged))
            .map_err(|e| format!("overrides of tenant {tenant:?}: {e}"))?;
        out.insert(tenant, limits);
    }
    Ok(out)
}

/// How the last reads of the file went, for /api/v1/status/runtimeinfo and /metrics.
#[derive(Debug)]
pub struct ReloadStatus {
    pub last_ok: AtomicBool,
    /// Unix milliseconds of the last successful load.
    pub last_ok_ms: AtomicI64,
    pub failures: AtomicU64,
}

impl ReloadStatus {
    fn new() -> ReloadStatus {
        ReloadStatus {
            last_ok: AtomicBool::new(true),
            last_ok_ms: AtomicI64::new(now_ms()),
            failures: AtomicU64::new(0),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The overrides every role reads, and the reloading of the file behind them.
#[derive(Clone)]
pub struct RuntimeConfig {
    pub overrides: Arc<Overrides>,
    pub status: Arc<ReloadStatus>,
}

impl RuntimeConfig {
    /// Reads `path` (none: only the defaults) and, with a path, keeps reading it every
    /// `period` in the background.
    pub fn start(
        path: Option<PathBuf>,
        defaults: TenantLimits,
        period: Duration,
    ) -> anyhow::Result<RuntimeConfig> {
        let overrides = Arc::new(Overrides::new(defaults.clone()));
        let status = Arc::new(ReloadStatus::new());
        let Some(path) = path else {
            return Ok(RuntimeConfig { overrides, status });
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("runtime-config.file {}: {e}", path.display()))?;
        let tenants = parse(&text, &defaults)
            .map_err(|e| anyhow::anyhow!("runtime-config.file {}: {e}", path.display()))?;
        info!(file = %path.display(), tenants = tenants.len(), "runtime configuration loaded");
        overrides.set(tenants);
        let (o, st) = (overrides.clone(), status.clone());
        tokio::spawn(async move {
            let mut last = text;
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let read = tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|e| e.to_string());
                match read.and_then(|t| parse(&t, &defaults).map(|p| (t, p))) {
                    Ok((t, tenants)) => {
                        if t != last {
                            info!(file = %path.display(), tenants = tenants.len(), "runtime configuration reloaded");
                            o.set(tenants);
                            last = t;
                        }
                        st.last_ok.store(true, Ordering::Relaxed);
                        st.last_ok_ms.store(now_ms(), Ordering::Relaxed);
                    }
                    Err(e) => {
                        warn!(file = %path.display(), error = %e, "reloading the runtime configuration failed; the last good one stays in effect");
                        st.last_ok.store(false, Ordering::Relaxed);
                        st.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(RuntimeConfig { overrides, status })
    }
}

impl hearth_querier::ConfigStatus for RuntimeConfig {
    fn storage_retention(&self) -> String {
        let fmt = |ms: i64| {
            if ms <= 0 {
                "unlimited".to_string()
            } else {
                hearth_core::duration::format_duration_ms(ms)
            }
        };
        let o = &self.overrides;
        let default = o.defaults().compactor_blocks_retention_period_ms;
        let per: Vec<String> = o
            .overridden()
            .into_iter()
            .filter_map(|t| {
                let ms = o
                    .get(&hearth_core::Tenant::new(&t).ok()?)
                    .compactor_blocks_retention_period_ms;
                (ms != default).then(|| format!("{t}: {}", fmt(ms)))
            })
            .collect();
        if per.is_empty() {
            fmt(default)
        } else {
            format!("{} (per tenant: {})", fmt(default), per.join(", "))
        }
    }

    fn last_reload(&self) -> (bool, std::time::SystemTime) {
        let ms = self.status.last_ok_ms.load(Ordering::Relaxed);
        (
            self.status.last_ok.load(Ordering::Relaxed),
            std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_start_from_the_defaults() {
        let defaults = TenantLimits {
            ingestion_rate: 123.0,
            ..TenantLimits::default()
        };
        let got = parse(
            "overrides:\n  team-a:\n    max_global_series_per_user: 7\n    creation_grace_period: 1h\n  team-b: {}\n",
            &defaults,
        )
        .unwrap();
        let a = &got["team-a"];
        assert_eq!(a.max_global_series_per_user, 7);
        assert_eq!(a.creation_grace_period_ms, 3_600_000);
        assert_eq!(a.ingestion_rate, 123.0);
        assert_eq!(got["team-b"], defaults);
        assert!(parse("overrides:\n  a:\n    no_such_limit: 1\n", &defaults)
            .unwrap_err()
            .contains("no_such_limit"));
        assert!(parse("limits: {}\n", &defaults).is_err());
        assert!(parse("overrides:\n  'bad/tenant': {}\n", &defaults).is_err());
        assert!(parse("", &defaults).unwrap().is_empty());
    }
}
