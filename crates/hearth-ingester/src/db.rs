//! The ingester's storage: the head plus its write-ahead log and checkpoints, with a
//! group-committing write path.
//!
//! A write is encoded on the caller's task, queued to the commit thread, appended to
//! the log together with every other write waiting (one fsync for the group), then
//! applied to the head in log order, and only then acknowledged. On start the newest
//! checkpoint is loaded and the log after it replayed through the same `apply`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use futures::{stream, StreamExt};
use hearth_core::{
    Ingester, Matcher, PushError, PushOutcome, Queryable, SelectHints, SeriesStream, StorageError,
    Tenant, WriteBatch,
};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use crate::checkpoint;
use crate::head::{Head, HeadOptions, MemSeries, TenantHead};
use crate::limits::SeriesLimits;
use crate::record::{self, ControlRecord, LogRecord};
use crate::shipper::apply_control;
use crate::wal::{Entry, LogError, LogId, LogStorage, SegmentLog, SegmentLogOptions};
use hearth_series::postings::SeriesId;

/// The single-node term: without Raft every entry is written in term 1.
const LOCAL_TERM: u64 = 1;

#[derive(Clone, Debug)]
pub struct DbOptions {
    pub dir: PathBuf,
    pub head: HeadOptions,
    pub wal: SegmentLogOptions,
    /// Write a head checkpoint (and purge the log before it) after this many log bytes.
    pub checkpoint_after_bytes: u64,
    /// Writes queued for the commit thread before new ones get 503.
    pub max_pending_writes: usize,
    /// Series limits per tenant, checked before a write is logged.
    pub series_limits: SeriesLimits,
}

impl DbOptions {
    pub fn new(dir: impl AsRef<Path>) -> DbOptions {
        DbOptions {
            dir: dir.as_ref().to_path_buf(),
            head: HeadOptions::default(),
            wal: SegmentLogOptions::default(),
            checkpoint_after_bytes: 256 << 20,
            max_pending_writes: 4096,
            series_limits: SeriesLimits::default(),
        }
    }
}

/// Counters for /metrics.
#[derive(Default)]
pub struct DbStats {
    pub samples_appended: AtomicU64,
    pub samples_rejected: AtomicU64,
    pub writes: AtomicU64,
    pub commit_groups: AtomicU64,
    pub log_bytes_written: AtomicU64,
    pub checkpoints: AtomicU64,
    pub replayed_entries: AtomicU64,
    pub replay_seconds_millis: AtomicU64,
    /// Log appends that failed (disk full, I/O error); their writes got 503.
    pub append_failures: AtomicU64,
    /// Corrupt or torn log records found at the last open (cut away) plus entries
    /// replay could not decode.
    pub wal_corruptions: AtomicU64,
    /// Samples of new series refused by a tenant's series limits.
    pub series_limited_samples: AtomicU64,
}

struct WritePending {
    tenant: Tenant,
    batch: WriteBatch,
    reply: oneshot::Sender<Result<PushOutcome, PushError>>,
}

/// What the commit thread is asked to log: a write, or a control entry of the
/// block-shipping protocol (answered with its log index).
enum Pending {
    Write(WritePending),
    Control {
        rec: ControlRecord,
        reply: oneshot::Sender<Result<u64, PushError>>,
    },
}

/// A write of a group with its series resolved to ids; `found` holds the series that
/// exist already (the rest are created once the log holds the entries), `new` are (id,
/// series index) of the series this write creates. A series refused by a series limit
/// has no id: it is neither logged nor applied.
struct Plan {
    th: Arc<TenantHead>,
    ids: Vec<Option<SeriesId>>,
    found: Vec<Option<Arc<MemSeries>>>,
    new: Vec<(SeriesId, usize)>,
    /// Samples refused by a series limit, and the first such refusal's message.
    limited: usize,
    limit_message: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("write-ahead log: {0}")]
    Log(#[from] LogError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Db {
    head: Arc<Head>,
    log: Arc<SegmentLog>,
    tx: SyncSender<Pending>,
    stats: Arc<DbStats>,
}

impl Db {
    /// Opens the storage at `opts.dir`, replaying checkpoint and log.
    pub fn open(opts: DbOptions) -> Result<Db, OpenError> {
        let started = Instant::now();
        std::fs::create_dir_all(&opts.dir)?;
        let head = Arc::new(Head::new(opts.head.clone()));
        let log = Arc::new(SegmentLog::open(opts.dir.join("wal"), opts.wal.clone())?);
        let stats = Arc::new(DbStats::default());
        let cp_dir = opts.dir.join("checkpoints");
        let cp = checkpoint::load_latest(&cp_dir, &head)?;
        let from = cp.map_or(1, |c| c.index + 1);
        let last = log.state().last.map_or(0, |l| l.index);
        let mut replayed = 0u64;
        let mut undecodable = 0u64;
        let mut at = from;
        while at <= last {
            let to = (at + 1023).min(last);
            for e in log.read_range(at..=to)? {
                match record::decode(&e.payload) {
                    Ok(LogRecord::Write(rec)) => {
                        head.apply_record(&rec);
                    }
                    Ok(LogRecord::Control(rec)) => apply_control(&head, &rec),
                    Err(_) => {
                        undecodable += 1;
                        warn!(index = e.log_id.index, "skipping undecodable log entry")
                    }
                }
                replayed += 1;
            }
            at = to + 1;
        }
        stats.replayed_entries.store(replayed, Ordering::Relaxed);
        stats
            .wal_corruptions
            .store(log.corruptions_repaired() + undecodable, Ordering::Relaxed);
        stats
            .replay_seconds_millis
            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        info!(
            checkpoint = cp.map(|c| c.index),
            replayed,
            series = head.num_series(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "head restored"
        );
        let next_index = log.state().last.map_or(from, |l| l.index + 1).max(from);
        let (tx, rx) = sync_channel(opts.max_pending_writes);
        let committer = Committer {
            head: head.clone(),
            log: log.clone(),
            stats: stats.clone(),
            next_index,
            bytes_since_checkpoint: log.disk_bytes(),
            checkpoint_after: opts.checkpoint_after_bytes,
            checkpoint_dir: cp_dir,
            checkpoint_running: Arc::new(AtomicBool::new(false)),
            series_limits: opts.series_limits.clone(),
        };
        std::thread::Builder::new()
            .name("hearth-commit".into())
            .spawn(move || committer.run(rx))?;
        Ok(Db {
            head,
            log,
            tx,
            stats,
        })
    }

    pub fn head(&self) -> &Arc<Head> {
        &self.head
    }

    pub fn stats(&self) -> &Arc<DbStats> {
        &self.stats
    }

    pub fn wal_disk_bytes(&self) -> u64 {
        self.log.disk_bytes()
    }

    pub fn wal_segments(&self) -> usize {
        self.log.segment_count()
    }

    /// Logs a control entry of the block-shipping protocol (fsynced, then applied to
    /// the head, in log order after every write sent before it). Returns its index.
    pub async fn control(&self, rec: ControlRecord) -> Result<u64, PushError> {
        let (reply, rx) = oneshot::channel();
        let mut p = Pending::Control { rec, reply };
        // Never block the async thread on a full queue: wait for room instead.
        loop {
            match self.tx.try_send(p) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    p = back;
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(PushError::Unavailable("ingester is shutting down".into()))
                }
            }
        }
        rx.await
            .map_err(|_| PushError::Internal("commit thread stopped".into()))?
    }
}

struct Committer {
    head: Arc<Head>,
    log: Arc<SegmentLog>,
    stats: Arc<DbStats>,
    next_index: u64,
    bytes_since_checkpoint: u64,
    checkpoint_after: u64,
    checkpoint_dir: PathBuf,
    checkpoint_running: Arc<AtomicBool>,
    series_limits: SeriesLimits,
}

/// New series of a group, by (tenant, label hash): (id, write, series index).
type PendingNew = HashMap<(Tenant, u64), Vec<(SeriesId, usize, usize)>>;

/// An iterator with a known length (the series of a write that were not refused).
struct SomeIds<I>(I, usize);

impl<I: Iterator> Iterator for SomeIds<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let x = self.0.next();
        if x.is_some() {
            self.1 -= 1;
        }
        x
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for SomeIds<I> {}

/// Most writes one fsync covers.
const MAX_GROUP: usize = 512;

impl Committer {
    fn run(mut self, rx: Receiver<Pending>) {
        while let Ok(first) = rx.recv() {
            let mut group = Vec::new();
            let mut control = None;
            match first {
                Pending::Write(w) => group.push(w),
                Pending::Control { rec, reply } => control = Some((rec, reply)),
            }
            // Group the writes waiting now; a control entry ends the group and goes
            // right after it, so it lands in the log after every write sent before it.
            while control.is_none() && group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Pending::Write(w)) => group.push(w),
                    Ok(Pending::Control { rec, reply }) => control = Some((rec, reply)),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit(group);
            }
            if let Some((rec, reply)) = control {
                let _ = reply.send(self.commit_control(&rec));
            }
        }
    }

    /// Logs and applies a control entry; Shipped is followed by a checkpoint so the log
    /// before it can be purged.
    fn commit_control(&mut self, rec: &ControlRecord) -> Result<u64, PushError> {
        let index = self.next_index;
        let entry = Entry {
            log_id: LogId {
                term: LOCAL_TERM,
                index,
            },
            payload: record::encode_control(rec),
        };
        if let Err(e) = self.log.append(std::slice::from_ref(&entry)) {
            // The log cut whatever part of the entry reached the file (or refuses
            // appends until it can): nothing follows garbage.
            return Err(PushError::Unavailable(format!(
                "write-ahead log append failed: {e}"
            )));
        }
        self.next_index += 1;
        apply_control(&self.head, rec);
        if matches!(rec, ControlRecord::Shipped { .. }) {
            self.bytes_since_checkpoint = self.checkpoint_after;
            self.maybe_checkpoint();
        }
        Ok(index)
    }

    fn commit(&mut self, group: Vec<WritePending>) {
        // Resolve every series to an id, assigning new ids in log order. Nothing is
        // created in the head until the log holds the entries that create it. Series
        // limits are checked here, before logging: the log holds only what is applied.
        let mut plans: Vec<Plan> = Vec::with_capacity(group.len());
        let mut entries: Vec<Entry> = Vec::with_capacity(group.len());
        let mut next_ids: HashMap<Tenant, SeriesId> = HashMap::new();
        let mut pending_new: PendingNew = HashMap::new();
        // Series this group creates, per tenant and per (tenant, metric name).
        let mut created: HashMap<Tenant, usize> = HashMap::new();
        let mut created_per_metric: HashMap<(Tenant, String), usize> = HashMap::new();
        for (gi, p) in group.iter().enumerate() {
            let th = self.head.tenant_or_create(&p.tenant);
            let (max_series, max_per_metric) = self.series_limits.local(&p.tenant);
            let mut ids = Vec::with_capacity(p.batch.len());
            let mut found = Vec::with_capacity(p.batch.len());
            let mut new = Vec::new();
            let (mut limited, mut limit_message) = (0usize, None);
            for (si, s) in p.batch.iter().enumerate() {
                let existing = th.lookup(s.hash, &s.labels);
                let id = match &existing {
                    Some(ms) => Some(ms.id),
                    None => {
                        let key = (p.tenant.clone(), s.hash);
                        let earlier = pending_new.get(&key).and_then(|v| {
                            v.iter()
                                .find(|(_, g, i)| group[*g].batch.get(*i).labels.eq_ref(&s.labels))
                                .map(|(id, _, _)| *id)
                        });
                        match earlier {
                            Some(id) => Some(id),
                            None => {
                                let metric = s.labels.get(hearth_core::METRIC_NAME).unwrap_or("");
                                let made = created.get(&p.tenant).copied().unwrap_or(0);
                                let made_metric = created_per_metric
                                    .get(&(p.tenant.clone(), metric.to_string()))
                                    .copied()
                                    .unwrap_or(0);
                                let refusal = SeriesLimits::refusal(
                                    (th.num_series(), th.series_for_metric(metric)),
                                    (max_series, max_per_metric),
                                    made,
                                    made_metric,
                                    &s.labels,
                                );
                                match refusal {
                                    Some(m) => {
                                        limited += s.samples.len();
                                        limit_message.get_or_insert(m);
                                        None
                                    }
                                    None => {
                                        *created.entry(p.tenant.clone()).or_insert(0) += 1;
                                        *created_per_metric
                                            .entry((p.tenant.clone(), metric.to_string()))
                                            .or_insert(0) += 1;
                                        let n = next_ids
                                            .entry(p.tenant.clone())
                                            .or_insert_with(|| th.next_id());
                                        let id = *n;
                                        *n += 1;
                                        pending_new.entry(key).or_default().push((id, gi, si));
                                        new.push((id, si));
                                        Some(id)
                                    }
                                }
                            }
                        }
                    }
                };
                ids.push(id);
                found.push(existing);
            }
            let payload = record::encode_write(
                &p.tenant,
                &p.batch.metadata,
                new.iter().map(|(id, si)| (*id, p.batch.get(*si).labels)),
                SomeIds(
                    ids.iter()
                        .zip(p.batch.iter())
                        .filter_map(|(id, s)| id.map(|id| (id, s.samples))),
                    ids.iter().flatten().count(),
                ),
                p.batch.sample_count() * 12 + new.len() * 128 + 64,
            );
            entries.push(Entry {
                log_id: LogId {
                    term: LOCAL_TERM,
                    index: self.next_index + gi as u64,
                },
                payload,
            });
            plans.push(Plan {
                th,
                ids,
                found,
                new,
                limited,
                limit_message,
            });
        }
        let bytes: u64 = entries.iter().map(|e| e.payload.len() as u64 + 24).sum();
        if let Err(e) = self.log.append(&entries) {
            error!(error = %e, "write-ahead log append failed; writes are not acknowledged");
            // The log cut whatever part of the group reached the file (or refuses
            // appends until it can), so later acknowledged writes never follow garbage;
            // these writes get 503 and their senders retry.
            self.stats.append_failures.fetch_add(1, Ordering::Relaxed);
            for p in group {
                let _ = p.reply.send(Err(PushError::Unavailable(format!(
                    "write-ahead log append failed: {e}"
                ))));
            }
            return;
        }
        self.next_index += entries.len() as u64;
        self.stats.commit_groups.fetch_add(1, Ordering::Relaxed);
        self.stats
            .log_bytes_written
            .fetch_add(bytes, Ordering::Relaxed);
        self.bytes_since_checkpoint += bytes;
        for (p, mut plan) in group.into_iter().zip(plans) {
            for (id, si) in &plan.new {
                let labels = p.batch.get(*si).labels.to_labels();
                match plan.th.create_with_id(*id, &labels) {
                    Some(ms) => plan.found[*si] = Some(ms),
                    None => {
                        error!(id, series = %labels, "series id assignment diverged from the head")
                    }
                }
            }
            // Series an earlier write of this group created; resolved by id.
            for (slot, id) in plan.found.iter_mut().zip(&plan.ids) {
                if let (None, Some(id)) = (&slot, id) {
                    *slot = plan.th.series(*id);
                }
            }
            let diverged = plan
                .found
                .iter()
                .zip(&plan.ids)
                .any(|(f, id)| id.is_some() && f.is_none());
            let mut out = if !diverged {
                self.head.apply_resolved(&plan.th, &p.batch, &plan.found)
            } else {
                // Only if the head diverged from the log (logged above): never
                // acknowledge samples that were not applied.
                hearth_core::PushOutcome {
                    samples_rejected: p.batch.sample_count() - plan.limited,
                    first_rejection: Some("internal error: series id assignment diverged".into()),
                    ..Default::default()
                }
            };
            if plan.limited > 0 {
                out.samples_rejected += plan.limited;
                if let Some(m) = plan.limit_message {
                    // The limit is what a sender must act on: name it first.
                    out.first_rejection = Some(m);
                }
                self.stats
                    .series_limited_samples
                    .fetch_add(plan.limited as u64, Ordering::Relaxed);
            }
            self.stats
                .samples_appended
                .fetch_add(out.samples_written as u64, Ordering::Relaxed);
            self.stats
                .samples_rejected
                .fetch_add(out.samples_rejected as u64, Ordering::Relaxed);
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
            let _ = p.reply.send(Ok(out));
        }
        self.maybe_checkpoint();
    }

    /// Starts a checkpoint when enough log was written since the last one (and none is
    /// running).
    fn maybe_checkpoint(&mut self) {
        if self.bytes_since_checkpoint >= self.checkpoint_after
            && !self.checkpoint_running.swap(true, Ordering::AcqRel)
        {
            self.bytes_since_checkpoint = 0;
            let log_id = LogId {
                term: LOCAL_TERM,
                index: self.next_index - 1,
            };
            // Capture here, between applies, so the snapshot is exactly the state at
            // `log_id`; write it on another thread so ingestion goes on.
            let snap = checkpoint::capture(&self.head, log_id);
            let dir = self.checkpoint_dir.clone();
            let log = self.log.clone();
            let running = self.checkpoint_running.clone();
            let stats = self.stats.clone();
            let spawned = std::thread::Builder::new()
                .name("hearth-checkpoint".into())
                .spawn(move || {
                    match checkpoint::write(&dir, &snap) {
                        Ok(_) => {
                            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                            if let Err(e) = log.purge(log_id) {
                                warn!(error = %e, "purging the write-ahead log failed");
                            }
                        }
                        Err(e) => {
                            warn!(error = %e, "writing a head checkpoint failed; the log is kept")
                        }
                    }
                    running.store(false, Ordering::Release);
                });
            if spawned.is_err() {
                self.checkpoint_running.store(false, Ordering::Release);
            }
        }
    }
}

#[async_trait]
impl Ingester for Db {
    async fn push(&self, tenant: &Tenant, batch: WriteBatch) -> Result<PushOutcome, PushError> {
        if batch.is_empty() && batch.metadata.is_empty() {
            return Ok(PushOutcome::default());
        }
        let (reply, rx) = oneshot::channel();
        let p = Pending::Write(WritePending {
            tenant: tenant.clone(),
            batch,
            reply,
        });
        match self.tx.try_send(p) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(PushError::Unavailable(
                    "too many writes waiting for the write-ahead log".into(),
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(PushError::Unavailable("ingester is shutting down".into()))
            }
        }
        rx.await
            .map_err(|_| PushError::Internal("commit thread stopped".into()))?
    }
}

/// The head as a `Queryable` (the ingester's read seam; also what tests load data into).
#[derive(Clone)]
pub struct HeadQueryable(pub Arc<Head>);

#[async_trait]
impl Queryable for HeadQueryable {
    async fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let Some(th) = self.0.tenant(tenant) else {
            return Ok(Box::pin(stream::empty()));
        };
        // Only the matching series are listed now; each one's data is copied out when
        // the stream reaches it, so the answer is never held whole.
        let series = if hints.unsorted {
            th.select_series_unsorted(matchers)
        } else {
            th.select_series(matchers)
        };
        Ok(Box::pin(stream::iter(series).filter_map(move |ms| {
            futures::future::ready(crate::head::series_in(&ms, mint, maxt).map(Ok))
        })))
    }

    async fn label_names(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        _mint: i64,
        _maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(self
            .0
            .tenant(tenant)
            .map(|t| t.label_names(matchers))
            .unwrap_or_default())
    }

    async fn label_values(
        &self,
        tenant: &Tenant,
        name: &str,
        matchers: &[Matcher],
        _mint: i64,
        _maxt: i64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(self
            .0
            .tenant(tenant)
            .map(|t| t.label_values(name, matchers))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::{Labels, MatchOp, Sample, SeriesData};
    use hearth_series::postings::SeriesId;

    fn batch(i: i64) -> WriteBatch {
        let series: Vec<(Labels, Vec<Sample>)> = (0..10)
            .map(|s| {
                (
                    Labels::from_pairs(&[("__name__", "m"), ("s", &s.to_string())]),
                    vec![Sample::new(i * 1000, (i * 10 + s) as f64)],
                )
            })
            .collect();
        WriteBatch::from_series(&series)
    }

    fn count(db: &Db) -> usize {
        let m = Matcher::new(MatchOp::Equal, "__name__", "m").unwrap();
        db.head()
            .select(&Tenant::anonymous(), &[m], i64::MIN, i64::MAX)
            .iter()
            .map(|s| match &s.data {
                SeriesData::Chunks(c) => c
                    .iter()
                    .map(|c| hearth_series::chunkenc::decode_all(&c.data).unwrap().len())
                    .sum::<usize>(),
                SeriesData::Samples(s) => s.len(),
            })
            .sum()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replays_log_and_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = DbOptions::new(dir.path());
        opts.checkpoint_after_bytes = 2000;
        opts.wal.segment_bytes = 1500;
        {
            let db = Db::open(opts.clone()).unwrap();
            let t = Tenant::anonymous();
            for i in 0..300 {
                let out = db.push(&t, batch(i)).await.unwrap();
                assert_eq!(out.samples_written, 10);
            }
            assert_eq!(count(&db), 3000);
            // Let a checkpoint finish.
            for _ in 0..100 {
                if db.stats().checkpoints.load(Ordering::Relaxed) > 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert!(db.stats().checkpoints.load(Ordering::Relaxed) > 0);
        }
        let db = Db::open(opts.clone()).unwrap();
        assert_eq!(count(&db), 3000);
        // Appends continue after replay, in order.
        let out = db.push(&Tenant::anonymous(), batch(300)).await.unwrap();
        assert_eq!(out.samples_written, 10);
        drop(db);
        let db = Db::open(opts).unwrap();
        assert_eq!(count(&db), 3010);
    }

    /// The shipping protocol's entries survive restarts: after Seal older samples are
    /// refused (also after replaying the log), after Shipped the head holds only newer
    /// data (also after restoring the checkpoint that follows Shipped). A seal is the
    /// tenant's own: another tenant's window does not move.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seal_and_shipped_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DbOptions::new(dir.path());
        let t = Tenant::anonymous();
        let other = Tenant::new("other").unwrap();
        let seal = |before| ControlRecord::Seal {
            tenant: Some(t.clone()),
            before,
        };
        {
            let db = Db::open(opts.clone()).unwrap();
            for i in 0..100 {
                db.push(&t, batch(i)).await.unwrap();
            }
            for i in 0..50 {
                db.push(&other, batch(i)).await.unwrap();
            }
            db.control(seal(60_000)).await.unwrap();
            // Older than the seal: refused, even though the head is fresh enough.
            let out = db.push(&t, batch(59)).await.unwrap();
            assert_eq!(out.samples_rejected, 10);
            // The other tenant's window is its own: 59 s is new data there.
            let out = db.push(&other, batch(59)).await.unwrap();
            assert_eq!((out.samples_written, out.samples_rejected), (10, 0));
            for i in 100..120 {
                db.push(&t, batch(i)).await.unwrap();
            }
        }
        // Replaying the log (no checkpoint yet) applies Seal again.
        let db = Db::open(opts.clone()).unwrap();
        let th = db.head().tenant(&t).unwrap();
        assert_eq!(th.min_valid_time(), 60_000);
        assert_eq!(count(&db), 1200);
        assert_eq!(db.push(&t, batch(10)).await.unwrap().samples_rejected, 10);
        assert_eq!(
            db.push(&other, batch(60)).await.unwrap().samples_rejected,
            0
        );
        db.control(ControlRecord::Shipped {
            tenant: Some(t.clone()),
            before: 60_000,
            blocks: vec![("anonymous".into(), "01J00000000000000000000000".into())],
        })
        .await
        .unwrap();
        assert_eq!(count(&db), 600);
        assert_eq!((th.min_time(), th.max_time()), (60_000, 119_000));
        assert_eq!(th.shipped_before(), 60_000);
        let o = db.head().tenant(&other).unwrap();
        assert_eq!((o.min_time(), o.min_valid_time()), (0, i64::MIN));
        for i in 120..130 {
            db.push(&t, batch(i)).await.unwrap();
        }
        drop(db);
        // The checkpoint written after Shipped, then the log after it.
        let db = Db::open(opts).unwrap();
        assert_eq!(count(&db), 700);
        let th = db.head().tenant(&t).unwrap();
        assert_eq!((th.min_valid_time(), th.shipped_before()), (60_000, 60_000));
        assert_eq!(db.push(&t, batch(10)).await.unwrap().samples_rejected, 10);
        assert_eq!(
            db.push(&other, batch(61)).await.unwrap().samples_rejected,
            0
        );
    }

    fn gone(t: i64) -> WriteBatch {
        WriteBatch::from_series(&[(
            Labels::from_pairs(&[("__name__", "gone"), ("pod", "p-1")]),
            vec![Sample::new(t, 1.0)],
        )])
    }

    /// (id, labels) of every series of the anonymous tenant.
    fn ids(db: &Db) -> Vec<(SeriesId, String)> {
        let th = db.head().tenant(&Tenant::anonymous()).unwrap();
        th.all_series()
            .iter()
            .map(|s| (s.id, s.labels.to_string()))
            .collect()
    }

    /// Series left empty by shipping are collected (head GC) where Shipped is applied,
    /// live and in replay alike; ids are never reused, so a collected series written
    /// again gets a new id, and the log, the checkpoint and the head agree on every id
    /// across restarts from the checkpoint and from the log alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shipped_series_are_collected_and_ids_stay_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DbOptions::new(dir.path());
        let t = Tenant::anonymous();
        let name = Matcher::new(MatchOp::Equal, "__name__", "gone").unwrap();
        {
            let db = Db::open(opts.clone()).unwrap();
            for i in 0..100 {
                db.push(&t, batch(i)).await.unwrap();
            }
            // Created last, so the newest id is the one collected.
            db.push(&t, gone(50_000)).await.unwrap();
            assert_eq!(db.head().num_series(), 11);
            db.control(ControlRecord::Seal {
                tenant: Some(t.clone()),
                before: 60_000,
            })
            .await
            .unwrap();
            db.control(ControlRecord::Shipped {
                tenant: Some(t.clone()),
                before: 60_000,
                blocks: vec![],
            })
            .await
            .unwrap();
            assert_eq!(db.head().num_series(), 10);
            let th = db.head().tenant(&t).unwrap();
            assert_eq!(th.label_values("__name__", &[]), vec!["m"]);
            assert_eq!(th.label_values("pod", &[]), Vec::<String>::new());
            assert!(!th.label_names(&[]).contains(&"pod".to_string()));
            assert!(db
                .head()
                .select(&t, std::slice::from_ref(&name), 0, i64::MAX)
                .is_empty());
            assert_eq!(th.next_id(), 11, "a collected id is not handed out again");
            // Shipped forces a checkpoint; let it land (the log is purged after it).
            let purged = dir.path().join("wal").join("purged");
            for _ in 0..200 {
                if purged.exists() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert!(purged.exists(), "no checkpoint after Shipped");
        }
        // From the checkpoint Shipped forced: the gap and the next id survive.
        {
            let db = Db::open(opts.clone()).unwrap();
            assert_eq!(db.head().num_series(), 10);
            assert_eq!(db.head().tenant(&t).unwrap().next_id(), 11);
            db.push(&t, gone(130_000)).await.unwrap();
            for i in 100..130 {
                db.push(&t, batch(i)).await.unwrap();
            }
            let ids = ids(&db);
            assert_eq!(ids.len(), 11);
            assert_eq!(ids[10], (11, "gone{pod=\"p-1\"}".to_string()));
        }
        let before = {
            let db = Db::open(opts.clone()).unwrap();
            assert_eq!(count(&db), 700);
            (
                ids(&db),
                db.head()
                    .select(&t, std::slice::from_ref(&name), 0, i64::MAX)
                    .len(),
            )
        };
        assert_eq!(before.1, 1);
        // A crash before that checkpoint was written: the whole log is replayed, Seal
        // and Shipped (with its collection) included, and must give the same head.
        std::fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();
        std::fs::remove_file(dir.path().join("wal").join("purged")).unwrap();
        let db = Db::open(opts).unwrap();
        assert_eq!(db.stats().replayed_entries.load(Ordering::Relaxed), 134);
        assert_eq!(count(&db), 700);
        assert_eq!(ids(&db), before.0);
        let got = db.head().select(&t, &[name], 0, i64::MAX);
        assert_eq!(got.len(), 1);
        db.push(&t, gone(145_000)).await.unwrap();
        assert_eq!(db.head().tenant(&t).unwrap().next_id(), 12);
    }
}
