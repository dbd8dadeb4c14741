//! Per-tenant ingestion rate limits: a token bucket per tenant, refilled at the
//! tenant's `ingestion_rate` up to `ingestion_burst_size` (Mimir's local strategy: each
//! distributor enforces the whole limit). A request that would take more tokens than
//! the bucket holds is refused whole with 429, which remote-write senders retry later;
//! it takes nothing, so a tenant at its limit costs other tenants no tokens and no wait.

use std::collections::HashMap;
use std::time::Instant;

use hearth_core::{Tenant, TenantLimits};
use parking_lot::Mutex;

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Tenant, Bucket>>,
}

impl RateLimiter {
    /// Takes `n` tokens from the tenant's bucket if it holds them.
    pub fn allow(&self, tenant: &Tenant, limits: &TenantLimits, n: u64) -> bool {
        self.allow_at(tenant, limits, n, Instant::now())
    }

    fn allow_at(&self, tenant: &Tenant, limits: &TenantLimits, n: u64, now: Instant) -> bool {
        let burst = limits.ingestion_burst_size as f64;
        let mut buckets = self.buckets.lock();
        let b = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limits.ingestion_rate.max(0.0)).min(burst);
        b.at = now;
        if (n as f64) <= b.tokens {
            b.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refills_at_the_rate_up_to_the_burst_per_tenant() {
        let r = RateLimiter::default();
        let l = TenantLimits {
            ingestion_rate: 100.0,
            ingestion_burst_size: 1000,
            ..TenantLimits::default()
        };
        let (a, b) = (Tenant::new("a").unwrap(), Tenant::new("b").unwrap());
        let t0 = Instant::now();
        assert!(r.allow_at(&a, &l, 1000, t0));
        assert!(!r.allow_at(&a, &l, 1, t0));
        // Another tenant has its own bucket.
        assert!(r.allow_at(&b, &l, 1000, t0));
        // A second refills 100 tokens; a refused request takes none.
        let t1 = t0 + Duration::from_secs(1);
        assert!(!r.allow_at(&a, &l, 101, t1));
        assert!(r.allow_at(&a, &l, 100, t1));
        // Never more than the burst, and a request above it never passes.
        let t2 = t0 + Duration::from_secs(3600);
        assert!(!r.allow_at(&a, &l, 1001, t2));
        assert!(r.allow_at(&a, &l, 1000, t2));
    }
}
