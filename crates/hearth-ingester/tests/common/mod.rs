//! What the replication tests share: the tenant they write as and the writes they send.

use hearth_core::{Labels, Sample, Tenant, WriteBatch};

pub fn tenant() -> Tenant {
    Tenant::new("team-a").unwrap()
}

/// Write `n`: `series` series `up{instance="host-i"}`, one sample each at time n.
pub fn write(series: usize, n: i64) -> WriteBatch {
    let series: Vec<_> = (0..series)
        .map(|s| {
            (
                Labels::from_pairs(&[("__name__", "up"), ("instance", &format!("host-{s}"))]),
                vec![Sample::new(1_000_000 + n * 1_000, n as f64)],
            )
        })
        .collect();
    WriteBatch::from_series(&series)
}
