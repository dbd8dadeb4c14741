//! Self-metrics on /metrics, in the Prometheus text format (prometheus-client).
//! Values owned by other rooms (head, log, distributor) are read from their counters at
//! scrape time, so the hot paths only touch atomics.

use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::Arc;

use hearth_distributor::DistributorState;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub struct SelfMetrics {
    registry: Registry,
    head_series: Gauge,
    head_series_removed: Counter<u64, AtomicU64>,
    samples_appended: Counter<u64, AtomicU64>,
    samples_rejected: Counter<u64, AtomicU64>,
    wal_writes: Counter<u64, AtomicU64>,
    wal_commit_groups: Counter<u64, AtomicU64>,
    wal_bytes_written: Counter<u64, AtomicU64>,
    wal_disk_bytes: Gauge,
    wal_segments: Gauge,
    wal_append_failures: Counter<u64, AtomicU64>,
    wal_corruptions: Counter<u64, AtomicU64>,
    checkpoints: Counter<u64, AtomicU64>,
    push_requests: Counter<u64, AtomicU64>,
    push_failed: Counter<u64, AtomicU64>,
    push_samples: Counter<u64, AtomicU64>,
    push_rejected: Counter<u64, AtomicU64>,
    rss: Gauge,
    cpu_seconds: Gauge<f64, AtomicU64>,
    start_time: Gauge,
    blocks_shipped: Counter<u64, AtomicU64>,
    samples_shipped: Counter<u64, AtomicU64>,
    ship_failures: Counter<u64, AtomicU64>,
    bucket_blocks: Gauge,
    page_cache_bytes: Gauge,
    labels_cache_bytes: Gauge,
    compactor_runs: Counter<u64, AtomicU64>,
    compactor_failed_runs: Counter<u64, AtomicU64>,
    compactor_blocks_written: Counter<u64, AtomicU64>,
    compactor_blocks_marked: Counter<u64, AtomicU64>,
    compactor_blocks_deleted: Counter<u64, AtomicU64>,
    compactor_index_writes: Counter<u64, AtomicU64>,
    bucket_blocks_loaded: Counter<u64, AtomicU64>,
}

/// The parts the roles of this process run, whose counters /metrics shows; parts no
/// role runs stay at zero.
#[derive(Default)]
pub struct Parts {
    pub distributor: Option<Arc<DistributorState>>,
    pub compactor: Option<Arc<hearth_compactor::Compactor>>,
    pub store: Option<Arc<hearth_storage::BucketStore>>,
    /// The ingester node: its log engine and its shard groups' replicas.
    pub node: Option<Arc<hearth_ingester::replication::IngesterNode>>,
}

impl Parts {
    /// Takes what `other` has that this lacks (each part belongs to one role).
    pub fn merge(&mut self, other: Parts) {
        self.distributor = self.distributor.take().or(other.distributor);
        self.compactor = self.compactor.take().or(other.compactor);
        self.store = self.store.take().or(other.store);
        self.node = self.node.take().or(other.node);
    }
}

fn set_counter(c: &Counter<u64, AtomicU64>, v: u64) {
    c.inner().store(v, Ordering::Relaxed);
}

impl SelfMetrics {
    pub fn new(parts: &Parts) -> SelfMetrics {
        let mut r = Registry::default();
        if let Some(node) = &parts.node {
            r.register_collector(Box::new(crate::raft_metrics::ReplicaCollector(
                node.clone(),
            )));
        }
        let m = SelfMetrics {
            head_series: Gauge::default(),
            head_series_removed: Counter::default(),
            samples_appended: Counter::default(),
            samples_rejected: Counter::default(),
            wal_writes: Counter::default(),
            wal_commit_groups: Counter::default(),
            wal_bytes_written: Counter::default(),
            wal_disk_bytes: Gauge::default(),
            wal_segments: Gauge::default(),
            wal_append_failures: Counter::default(),
            wal_corruptions: Counter::default(),
            checkpoints: Counter::default(),
            push_requests: Counter::default(),
            push_failed: Counter::default(),
            push_samples: Counter::default(),
            push_rejected: Counter::default(),
            rss: Gauge::default(),
            cpu_seconds: Gauge::default(),
            start_time: Gauge::default(),
            blocks_shipped: Counter::default(),
            samples_shipped: Counter::default(),
            ship_failures: Counter::default(),
            bucket_blocks: Gauge::default(),
            page_cache_bytes: Gauge::default(),
            labels_cache_bytes: Gauge::default(),
            compactor_runs: Counter::default(),
            compactor_failed_runs: Counter::default(),
            compactor_blocks_written: Counter::default(),
            compactor_blocks_marked: Counter::default(),
            compactor_blocks_deleted: Counter::default(),
            compactor_index_writes: Counter::default(),
            bucket_blocks_loaded: Counter::default(),
            registry: Registry::default(),
        };
        for (name, help, c) in [
            (
                "hearth_ingester_shipped_blocks",
                "Blocks the ingester shipped to the bucket (written and verified)",
                &m.blocks_shipped,
            ),
            (
                "hearth_ingester_shipped_samples",
                "Samples the ingester shipped to the bucket",
                &m.samples_shipped,
            ),
            (
                "hearth_ingester_ship_failures",
                "Shipping attempts that failed (the data stays in the head and is shipped again)",
                &m.ship_failures,
            ),
            (
                "hearth_compactor_runs",
                "Compaction passes completed",
                &m.compactor_runs,
            ),
            (
                "hearth_compactor_failed_runs",
                "Compaction passes that failed",
                &m.compactor_failed_runs,
            ),
            (
                "hearth_compactor_blocks_written",
                "Blocks the compactor wrote",
                &m.compactor_blocks_written,
            ),
            (
                "hearth_compactor_blocks_marked_for_deletion",
                "Blocks marked for deletion (replaced or past retention)",
                &m.compactor_blocks_marked,
            ),
            (
                "hearth_compactor_blocks_deleted",
                "Marked blocks deleted after the deletion delay",
                &m.compactor_blocks_deleted,
            ),
            (
                "hearth_compactor_bucket_index_writes",
                "Per-tenant bucket indexes the compactor wrote",
                &m.compactor_index_writes,
            ),
            (
                "hearth_bucket_store_blocks_loaded",
                "Blocks whose labels file the bucket store has read (lazily, at first use)",
                &m.bucket_blocks_loaded,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        r.register(
            "hearth_bucket_store_blocks",
            "Blocks the bucket store serves",
            m.bucket_blocks.clone(),
        );
        r.register(
            "hearth_bucket_store_page_cache_bytes",
            "Bytes of chunk pages in the bucket store's cache",
            m.page_cache_bytes.clone(),
        );
        r.register(
            "hearth_bucket_store_labels_cache_bytes",
            "Bytes of opened blocks' labels and postings in the bucket store's cache (approximate)",
            m.labels_cache_bytes.clone(),
        );
        r.register(
            "hearth_build",
            "Hearth build information",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "hearth_head_series",
            "Series in the head",
            m.head_series.clone(),
        );
        r.register(
            "hearth_head_series_removed",
            "Series removed from the head once everything they held was shipped",
            m.head_series_removed.clone(),
        );
        r.register(
            "hearth_head_samples_appended",
            "Samples appended to the head",
            m.samples_appended.clone(),
        );
        r.register(
            "hearth_head_samples_rejected",
            "Samples rejected by the head (out of order, out of bounds, duplicates)",
            m.samples_rejected.clone(),
        );
        r.register(
            "hearth_wal_writes",
            "Write batches committed to the write-ahead log",
            m.wal_writes.clone(),
        );
        r.register(
            "hearth_wal_commit_groups",
            "Group commits (one fsync each)",
            m.wal_commit_groups.clone(),
        );
        r.register(
            "hearth_wal_written_bytes",
            "Bytes written to the write-ahead log",
            m.wal_bytes_written.clone(),
        );
        r.register(
            "hearth_wal_disk_bytes",
            "Bytes of write-ahead log on disk",
            m.wal_disk_bytes.clone(),
        );
        r.register(
            "hearth_wal_segments",
            "Write-ahead log segment files",
            m.wal_segments.clone(),
        );
        r.register(
            "hearth_wal_append_failures",
            "Writes to the write-ahead log that the disk refused (full, I/O errors), each attempt counted; new writes get 503 while it refuses",
            m.wal_append_failures.clone(),
        );
        r.register(
            "hearth_wal_corruptions",
            "Torn or corrupt write-ahead log records cut away (or skipped) at the last start",
            m.wal_corruptions.clone(),
        );
        r.register(
            "hearth_head_checkpoints",
            "Head checkpoints written",
            m.checkpoints.clone(),
        );
        r.register(
            "hearth_distributor_push_requests",
            "Remote-write requests received",
            m.push_requests.clone(),
        );
        r.register(
            "hearth_distributor_push_failed_requests",
            "Remote-write requests answered with a non-2xx status",
            m.push_failed.clone(),
        );
        r.register(
            "hearth_distributor_received_samples",
            "Valid samples received by remote-write",
            m.push_samples.clone(),
        );
        r.register(
            "hearth_distributor_rejected_samples",
            "Samples rejected by the ingester",
            m.push_rejected.clone(),
        );
        r.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            m.rss.clone(),
        );
        r.register(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            m.cpu_seconds.clone(),
        );
        r.register(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            m.start_time.clone(),
        );
        m.start_time.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        );
        SelfMetrics { registry: r, ..m }
    }

    pub fn render(&self, parts: &Parts) -> String {
        // The node's group shippers, summed.
        let shipped = parts.node.as_deref().map(|node| node.shipping_totals());
        if let Some((blocks, samples, failures)) = shipped {
            set_counter(&self.blocks_shipped, blocks);
            set_counter(&self.samples_shipped, samples);
            set_counter(&self.ship_failures, failures);
        }
        if let Some(compactor) = parts.compactor.as_deref() {
            let cs = &compactor.stats;
            set_counter(&self.compactor_runs, cs.runs.load(Ordering::Relaxed));
            set_counter(
                &self.compactor_failed_runs,
                cs.failed_runs.load(Ordering::Relaxed),
            );
            set_counter(
                &self.compactor_blocks_written,
                cs.blocks_written.load(Ordering::Relaxed),
            );
            set_counter(
                &self.compactor_blocks_marked,
                cs.blocks_marked.load(Ordering::Relaxed),
            );
            set_counter(
                &self.compactor_blocks_deleted,
                cs.blocks_deleted.load(Ordering::Relaxed),
            );
            set_counter(
                &self.compactor_index_writes,
                cs.index_writes.load(Ordering::Relaxed),
            );
        }
        if let Some(store) = parts.store.as_deref() {
            self.bucket_blocks.set(store.num_blocks() as i64);
            self.page_cache_bytes
                .set(store.page_cache_bytes_now() as i64);
            self.labels_cache_bytes
                .set(store.labels_cache_bytes_now() as i64);
            set_counter(&self.bucket_blocks_loaded, store.blocks_opened());
        }
        if let Some(node) = parts.node.as_deref() {
            let heads = node.heads();
            self.head_series
                .set(heads.iter().map(|(_, h)| h.num_series()).sum::<usize>() as i64);
            set_counter(
                &self.head_series_removed,
                heads.iter().map(|(_, h)| h.series_removed()).sum(),
            );
            let sum = |f: &dyn Fn(&hearth_ingester::replication::ReplicaStats) -> u64| {
                node.replicas().map(|r| f(r.stats())).sum::<u64>()
            };
            set_counter(
                &self.samples_appended,
                sum(&|s| s.samples_appended.load(Ordering::Relaxed)),
            );
            set_counter(
                &self.samples_rejected,
                sum(&|s| s.samples_rejected.load(Ordering::Relaxed)),
            );
            set_counter(
                &self.checkpoints,
                sum(&|s| s.snapshots_built.load(Ordering::Relaxed)),
            );
            let log = node.log();
            let c = log.counters();
            set_counter(&self.wal_writes, c.writes.load(Ordering::Relaxed));
            set_counter(&self.wal_commit_groups, c.syncs.load(Ordering::Relaxed));
            set_counter(
                &self.wal_bytes_written,
                c.bytes_written.load(Ordering::Relaxed),
            );
            set_counter(
                &self.wal_append_failures,
                c.write_failures.load(Ordering::Relaxed),
            );
            set_counter(&self.wal_corruptions, log.corruptions_repaired());
            self.wal_disk_bytes.set(log.disk_bytes() as i64);
            self.wal_segments.set(log.segment_count() as i64);
        }
        if let Some(dist) = parts.distributor.as_ref().map(|d| &d.metrics) {
            set_counter(&self.push_requests, dist.requests.load(Ordering::Relaxed));
            set_counter(
                &self.push_failed,
                dist.requests_failed.load(Ordering::Relaxed),
            );
            set_counter(
                &self.push_samples,
                dist.samples_received.load(Ordering::Relaxed),
            );
            set_counter(
                &self.push_rejected,
                dist.samples_rejected.load(Ordering::Relaxed),
            );
        }
        let (rss, cpu) = proc_stats();
        self.rss.set(rss as i64);
        self.cpu_seconds.set(cpu);
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// (resident bytes, CPU seconds) of this process from /proc.
pub fn proc_stats() -> (u64, f64) {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|p| p * 4096)
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0);
    (rss, cpu)
}
