//! A digest of a head's content: what replicas of a group at the same applied index
//! must agree on (every tenant, series and sample, in a fixed order), with the counts a
//! checker wants beside it.

use hearth_series::merge::samples_of;
use xxhash_rust::xxh3::Xxh3;

use crate::head::{series_in, Head};

/// What a head holds, summed up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadDigest {
    pub series: u64,
    pub samples: u64,
    pub hash: u64,
}

pub fn head_digest(head: &Head) -> HeadDigest {
    let mut d = HeadDigest::default();
    let mut h = Xxh3::new();
    let mut tenants = head.tenants();
    tenants.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    for (tenant, th) in tenants {
        h.update(tenant.as_str().as_bytes());
        let mut all = th.all_series();
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        for s in all {
            let Some(series) = series_in(&s, i64::MIN, i64::MAX) else {
                continue;
            };
            d.series += 1;
            h.update(&series.labels.hash64().to_le_bytes());
            let mut samples = Vec::new();
            samples_of(series.data, &mut samples);
            for x in samples {
                d.samples += 1;
                h.update(&x.t.to_le_bytes());
                h.update(&x.v.to_bits().to_le_bytes());
            }
        }
    }
    d.hash = h.digest();
    d
}
