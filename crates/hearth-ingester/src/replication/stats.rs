//! What a replica counts for /metrics: leader changes, how long writes take from the
//! proposer to their apply (commit latency), and its snapshots (built and installed,
//! their sizes and build times). Atomics and prometheus-client histograms, touched on
//! the replica's own paths and read at scrape time; the role, term and log positions
//! come from openraft's metrics at scrape time instead (`Replica::state`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

#[derive(Debug)]
pub struct ReplicaStats {
    /// Times this replica saw its group's leader change (to another replica or none).
    pub leader_changes: AtomicU64,
    /// Seconds from a write entering the proposer to its entry being applied here
    /// (committed on a quorum), for writes this replica led.
    pub commit_seconds: Histogram,
    pub snapshots_built: AtomicU64,
    pub snapshots_installed: AtomicU64,
    /// Bytes of the newest snapshot built or installed.
    pub snapshot_bytes: AtomicU64,
    /// Seconds to write a snapshot out (the copy of the head is taken between applies).
    pub snapshot_build_seconds: Histogram,
    /// Samples this replica's head took, and refused (out of order, out of bounds,
    /// duplicates), applying its group's entries.
    pub samples_appended: AtomicU64,
    pub samples_rejected: AtomicU64,
}

impl Default for ReplicaStats {
    fn default() -> Self {
        ReplicaStats {
            leader_changes: AtomicU64::new(0),
            // 100 µs to about 13 s.
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            snapshots_built: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            snapshot_bytes: AtomicU64::new(0),
            // 1 ms to about 65 s.
            snapshot_build_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
            samples_appended: AtomicU64::new(0),
            samples_rejected: AtomicU64::new(0),
        }
    }
}

impl ReplicaStats {
    pub fn snapshot_built(&self, bytes: u64, took: Duration) {
        self.snapshots_built.fetch_add(1, Ordering::Relaxed);
        self.snapshot_bytes.store(bytes, Ordering::Relaxed);
        self.snapshot_build_seconds.observe(took.as_secs_f64());
    }

    pub fn snapshot_installed(&self, bytes: u64) {
        self.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        self.snapshot_bytes.store(bytes, Ordering::Relaxed);
    }
}
