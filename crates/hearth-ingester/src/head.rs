//! The in-memory head: every series of every tenant with its recent chunks, the label
//! index, and the append rules (bounds, order, out-of-order window, duplicates).
//!
//! Appends are applied by one thread at a time, in write-ahead-log order (the state
//! machine of the log), so the outcome of a write is a pure function of the log. Readers
//! run concurrently, taking short per-series locks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use hearth_core::{
    ChunkEncoding, EncodedChunk, Label, Labels, LabelsRef, Matcher, MetricMetadata, PushOutcome,
    Sample, Series, SeriesData, Tenant, WriteBatch,
};
use parking_lot::{Mutex, RwLock};

use hearth_series::chunkenc::{XorAppender, SAMPLES_PER_CHUNK};
use hearth_series::postings::{MemPostings, SeriesId};

use crate::series_ids::SeriesIds;

const STRIPES: usize = 64;

/// Hashes an already-hashed u64 key with one multiply (keys are xxh3 digests; the
/// multiply spreads the bits the stripe choice consumed).
#[derive(Default, Clone, Copy)]
struct PrehashedHasher(u64);

impl std::hash::Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = v as u64;
    }
}

type Prehashed = std::hash::BuildHasherDefault<PrehashedHasher>;

/// One stripe of the series-by-hash map: hash -> first series, and the rare further
/// series whose labels hash the same (collisions) on the side. It holds the series
/// themselves, so the write path's lookup is one probe and one label comparison.
#[derive(Default)]
struct HashStripe {
    first: HashMap<u64, Arc<MemSeries>, Prehashed>,
    collisions: HashMap<u64, Vec<Arc<MemSeries>>, Prehashed>,
}

impl HashStripe {
    fn candidates(&self, hash: u64) -> impl Iterator<Item = &Arc<MemSeries>> + '_ {
        self.first
            .get(&hash)
            .into_iter()
            .chain(self.collisions.get(&hash).into_iter().flatten())
    }

    fn remove(&mut self, hash: u64, id: SeriesId) {
        let first_is =
            |f: &HashMap<u64, Arc<MemSeries>, Prehashed>| f.get(&hash).is_some_and(|s| s.id == id);
        if let Some(rest) = self.collisions.get_mut(&hash) {
            if let Some(i) = rest.iter().position(|x| x.id == id) {
                rest.remove(i);
            } else if first_is(&self.first) {
                // Promote a collision to first.
                let next = rest.remove(0);
                self.first.insert(hash, next);
            }
            if rest.is_empty() {
                self.collisions.remove(&hash);
            }
        } else if first_is(&self.first) {
            self.first.remove(&hash);
        }
    }

    fn insert(&mut self, hash: u64, series: Arc<MemSeries>) {
        match self.first.entry(hash) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(series);
            }
            std::collections::hash_map::Entry::Occupied(_) => {
                self.collisions.entry(hash).or_default().push(series);
            }
        }
    }
}

/// Settings of the head, as Prometheus names them.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// The block range: chunks never span a multiple of it, and samples older than half
    /// of it behind the newest sample are out of bounds. Default 2 h.
    pub block_range_ms: i64,
    /// `out_of_order_time_window`: how far behind the newest sample an out-of-order
    /// sample is still accepted. 0 (the default) turns out-of-order ingestion off.
    pub out_of_order_window_ms: i64,
}

impl Default for HeadOptions {
    fn default() -> Self {
        HeadOptions {
            block_range_ms: 2 * 3600 * 1000,
            out_of_order_window_ms: 0,
        }
    }
}

/// A chunk that will not change any more.
#[derive(Clone, Debug)]
pub struct ClosedChunk {
    pub min_t: i64,
    pub max_t: i64,
    pub data: Arc<[u8]>,
}

/// The mutable part of a series.
#[derive(Debug)]
pub struct SeriesState {
    pub closed: Vec<ClosedChunk>,
    pub head: Option<(i64, XorAppender)>,
    /// Newest in-order timestamp and its value (for duplicate detection).
    pub max_t: i64,
    pub last_v: f64,
    /// Out-of-order samples, sorted by time, unique timestamps.
    pub ooo: Vec<Sample>,
    /// Out-of-order samples older than the tenant's last seal when it was applied:
    /// being shipped, dropped by the Shipped that follows. Late samples that arrive
    /// after the seal go to `ooo` and are shipped the next time.
    pub ooo_sealed: Vec<Sample>,
}

impl SeriesState {
    /// Holds no sample (all it had was shipped): the series can be collected.
    fn is_empty(&self) -> bool {
        self.closed.is_empty()
            && self.head.is_none()
            && self.ooo.is_empty()
            && self.ooo_sealed.is_empty()
    }

    fn new() -> SeriesState {
        SeriesState {
            closed: Vec::new(),
            head: None,
            max_t: i64::MIN,
            last_v: 0.0,
            ooo: Vec::new(),
            ooo_sealed: Vec::new(),
        }
    }

    fn min_t(&self) -> i64 {
        let a = self.closed.first().map(|c| c.min_t);
        let b = self.head.as_ref().map(|h| h.0);
        let c = self.ooo.first().map(|s| s.t);
        let d = self.ooo_sealed.first().map(|s| s.t);
        [a, b, c, d].into_iter().flatten().min().unwrap_or(i64::MAX)
    }

    /// The newest sample time, out-of-order samples included.
    fn newest(&self) -> i64 {
        let a = self.ooo.last().map_or(i64::MIN, |s| s.t);
        let b = self.ooo_sealed.last().map_or(i64::MIN, |s| s.t);
        self.max_t.max(a).max(b)
    }

    /// Applies a seal at `before`: closes the open chunk (no chunk reaches across it)
    /// and sets the out-of-order samples before it apart for shipping.
    fn seal(&mut self, before: i64) {
        if let Some((min_t, app)) = self.head.take() {
            self.closed.push(ClosedChunk {
                min_t,
                max_t: app.last_timestamp(),
                data: Arc::from(app.bytes()),
            });
        }
        let split = self.ooo.partition_point(|x| x.t < before);
        if split > 0 {
            let moved: Vec<Sample> = self.ooo.drain(..split).collect();
            self.ooo_sealed.extend(moved);
            self.ooo_sealed.sort_by_key(|x| x.t);
            self.ooo_sealed.dedup_by_key(|x| x.t);
        }
    }

    fn append_in_order(&mut self, t: i64, v: f64, block_range: i64) {
        let cut = match &self.head {
            None => true,
            Some((min_t, app)) => {
                app.num_samples() >= SAMPLES_PER_CHUNK || t >= chunk_range_end(*min_t, block_range)
            }
        };
        if cut {
            if let Some((min_t, app)) = self.head.take() {
                self.closed.push(ClosedChunk {
                    min_t,
                    max_t: app.last_timestamp(),
                    data: Arc::from(app.bytes()),
                });
            }
            self.head = Some((t, XorAppender::new()));
        }
        let (_, app) = self.head.as_mut().expect("head chunk exists after cut");
        app.append(t, v);
        self.max_t = t;
        self.last_v = v;
    }

    fn insert_ooo(&mut self, s: Sample) -> Result<(), RejectReason> {
        // A retry of a late sample that is being shipped: the same value is a no-op.
        if let Ok(i) = self.ooo_sealed.binary_search_by_key(&s.t, |x| x.t) {
            return if self.ooo_sealed[i].v.to_bits() == s.v.to_bits() {
                Ok(())
            } else {
                Err(RejectReason::Duplicate)
            };
        }
        match self.ooo.binary_search_by_key(&s.t, |x| x.t) {
            Ok(i) => {
                if self.ooo[i].v.to_bits() == s.v.to_bits() {
                    Ok(())
                } else {
                    Err(RejectReason::Duplicate)
                }
            }
            Err(i) => {
                self.ooo.insert(i, s);
                Ok(())
            }
        }
    }

    /// Chunks and samples overlapping [mint, maxt].
    pub fn data_in(&self, mint: i64, maxt: i64) -> SeriesData {
        self.data_in_with(mint, maxt, true)
    }

    /// What a seal froze in [mint, maxt]: the chunks and the sealed late samples, not
    /// the late samples that arrived after the seal (they are shipped next time).
    pub fn sealed_data_in(&self, mint: i64, maxt: i64) -> SeriesData {
        self.data_in_with(mint, maxt, false)
    }

    fn data_in_with(&self, mint: i64, maxt: i64, unsealed_ooo: bool) -> SeriesData {
        let mut chunks: Vec<EncodedChunk> = self
            .closed
            .iter()
            .filter(|c| c.max_t >= mint && c.min_t <= maxt)
            .map(|c| EncodedChunk {
                min_t: c.min_t,
                max_t: c.max_t,
                encoding: ChunkEncoding::Xor,
                data: c.data.clone(),
            })
            .collect();
        if let Some((min_t, app)) = &self.head {
            if app.last_timestamp() >= mint && *min_t <= maxt {
                chunks.push(EncodedChunk {
                    min_t: *min_t,
                    max_t: app.last_timestamp(),
                    encoding: ChunkEncoding::Xor,
                    data: Arc::from(app.bytes()),
                });
            }
        }
        let ooo_sets: &[&[Sample]] = if unsealed_ooo {
            &[&self.ooo_sealed, &self.ooo]
        } else {
            &[&self.ooo_sealed]
        };
        let in_range = |x: &&Sample| x.t >= mint && x.t <= maxt;
        if !ooo_sets.iter().any(|set| set.iter().any(|x| in_range(&x))) {
            return SeriesData::Chunks(chunks);
        }
        // Merge in-order chunks with the out-of-order buffer.
        let mut samples: Vec<Sample> = Vec::new();
        for c in &chunks {
            for (t, v) in hearth_series::chunkenc::XorIterator::new(&c.data)
                .into_iter()
                .flatten()
            {
                if t >= mint && t <= maxt {
                    samples.push(Sample { t, v });
                }
            }
        }
        for set in ooo_sets {
            samples.extend(set.iter().filter(in_range));
        }
        samples.sort_by_key(|s| s.t);
        samples.dedup_by_key(|s| s.t);
        SeriesData::Samples(samples)
    }
}

/// The series with its data in [mint, maxt], if it has any there.
pub fn series_in(s: &MemSeries, mint: i64, maxt: i64) -> Option<Series> {
    let st = s.state.lock();
    if st.newest() < mint || st.min_t() > maxt {
        return None;
    }
    let data = st.data_in(mint, maxt);
    drop(st);
    let empty = match &data {
        SeriesData::Chunks(c) => c.is_empty(),
        SeriesData::Samples(s) => s.is_empty(),
    };
    (!empty).then(|| Series {
        labels: s.labels.clone(),
        data,
    })
}

/// The end of the chunk range that holds `t`: chunks never span a block boundary.
fn chunk_range_end(min_t: i64, block_range: i64) -> i64 {
    min_t.div_euclid(block_range) * block_range + block_range
}

/// How a log entry names a series.
#[derive(Clone, Copy)]
pub enum SeriesName<'a> {
    /// By the id the leader's head gave it. Ids are never reused, so an id the head
    /// still holds is that series on every replica.
    Id(SeriesId),
    /// By its labels (a series the leader's head did not hold): found, or created with
    /// the next id.
    Labels { labels: LabelsRef<'a>, hash: u64 },
}

#[derive(Debug)]
pub struct MemSeries {
    pub id: SeriesId,
    pub labels: Labels,
    pub state: Mutex<SeriesState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectReason {
    OutOfBounds,
    OutOfOrder,
    TooOldForOutOfOrder,
    Duplicate,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OutOfBounds => "out of bounds",
            RejectReason::OutOfOrder => "out of order sample",
            RejectReason::TooOldForOutOfOrder => "too old sample",
            RejectReason::Duplicate => "duplicate sample for timestamp",
        }
    }
}

/// One tenant's series and index.
///
/// Series ids are handed out densely and in log order and are never reused: a series
/// collected after shipping leaves a gap, and the same labels written again get a new id.
pub struct TenantHead {
    strings: Mutex<HashSet<Arc<str>>>,
    stripes: Vec<RwLock<HashStripe>>,
    series: RwLock<SeriesIds>,
    postings: RwLock<MemPostings>,
    next_id: AtomicU32,
    /// The oldest and newest sample the tenant's head holds (`i64::MAX` when empty);
    /// the newest stays after shipping, as the reference of the appendable window.
    min_t: AtomicI64,
    max_t: AtomicI64,
    /// The tenant's sealed boundary: older samples are taken only as late
    /// (out-of-order) data, or refused when out-of-order ingestion is off.
    min_valid: AtomicI64,
    /// The boundary of the tenant's last Shipped: a seal above it is being shipped.
    shipped_before: AtomicI64,
    metadata: RwLock<HashMap<String, Vec<MetricMetadata>>>,
}

impl Default for TenantHead {
    fn default() -> Self {
        TenantHead {
            strings: Mutex::new(HashSet::new()),
            stripes: (0..STRIPES)
                .map(|_| RwLock::new(HashStripe::default()))
                .collect(),
            series: RwLock::new(SeriesIds::default()),
            postings: RwLock::new(MemPostings::default()),
            next_id: AtomicU32::new(0),
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
            min_valid: AtomicI64::new(i64::MIN),
            shipped_before: AtomicI64::new(i64::MIN),
            metadata: RwLock::new(HashMap::new()),
        }
    }
}

impl TenantHead {
    fn intern(&self, s: &Arc<str>) -> Arc<str> {
        let mut set = self.strings.lock();
        if let Some(x) = set.get(s) {
            return x.clone();
        }
        set.insert(s.clone());
        s.clone()
    }

    /// The series with exactly these labels, if it exists.
    pub fn get(&self, labels: &Labels, hash: u64) -> Option<Arc<MemSeries>> {
        let stripe = self.stripes[(hash as usize) % STRIPES].read();
        let found = stripe
            .candidates(hash)
            .find(|s| s.labels == *labels)
            .cloned();
        found
    }

    /// The series with these labels, if it exists (the write path's lookup: no
    /// allocation; hash collisions are resolved by comparing labels).
    pub fn lookup(&self, hash: u64, labels: &LabelsRef<'_>) -> Option<Arc<MemSeries>> {
        let stripe = self.stripes[(hash as usize) % STRIPES].read();
        let found = stripe
            .candidates(hash)
            .find(|s| labels.eq_labels(&s.labels))
            .cloned();
        found
    }

    /// The id of the series with these labels, if it exists (what a leader names a
    /// series by in the entries it proposes).
    pub fn lookup_id(&self, hash: u64, labels: &LabelsRef<'_>) -> Option<SeriesId> {
        let stripe = self.stripes[(hash as usize) % STRIPES].read();
        let found = stripe
            .candidates(hash)
            .find(|s| labels.eq_labels(&s.labels))
            .map(|s| s.id);
        found
    }

    /// The id the next new series gets.
    pub fn next_id(&self) -> SeriesId {
        self.next_id.load(Ordering::Acquire)
    }

    pub fn series(&self, id: SeriesId) -> Option<Arc<MemSeries>> {
        self.series.read().get(id).cloned()
    }

    /// Finds or creates a series; hash collisions are resolved by comparing labels.
    pub fn get_or_create(&self, labels: &Labels) -> Arc<MemSeries> {
        let hash = labels.hash64();
        if let Some(s) = self.get(labels, hash) {
            return s;
        }
        self.create(hash, labels, None)
    }

    /// Creates a series with the id `id` (restoring a checkpoint, whose ids may have
    /// gaps), or with the next id. An existing series with these labels is returned.
    fn create(&self, hash: u64, labels: &Labels, id: Option<SeriesId>) -> Arc<MemSeries> {
        let mut stripe = self.stripes[(hash as usize) % STRIPES].write();
        if let Some(s) = stripe.candidates(hash).find(|s| s.labels == *labels) {
            return s.clone();
        }
        let interned = Labels::from_sorted(
            labels
                .iter()
                .map(|l| Label {
                    name: self.intern(&l.name),
                    value: self.intern(&l.value),
                })
                .collect(),
        );
        let id = match id {
            Some(id) => {
                self.next_id.fetch_max(id + 1, Ordering::SeqCst);
                id
            }
            None => self.next_id.fetch_add(1, Ordering::SeqCst),
        };
        let s = Arc::new(MemSeries {
            id,
            labels: interned,
            state: Mutex::new(SeriesState::new()),
        });
        {
            let mut all = self.series.write();
            let previous = all.insert(id, s.clone());
            debug_assert!(previous.is_none(), "series id {id} given twice");
        }
        self.postings.write().add(id, &s.labels);
        stripe.insert(hash, s.clone());
        s
    }

    pub fn num_series(&self) -> usize {
        self.series.read().len()
    }

    /// Series of one metric name.
    pub fn series_for_metric(&self, name: &str) -> usize {
        self.postings
            .read()
            .get(hearth_core::METRIC_NAME, name)
            .len()
    }

    pub fn min_time(&self) -> i64 {
        self.min_t.load(Ordering::Acquire)
    }

    pub fn max_time(&self) -> i64 {
        self.max_t.load(Ordering::Acquire)
    }

    fn note_time(&self, t: i64) {
        self.min_t.fetch_min(t, Ordering::AcqRel);
        self.max_t.fetch_max(t, Ordering::AcqRel);
    }

    /// The starts of the block ranges (of `range` ms) that hold sealed data before
    /// `before`: shipping visits only these, however far apart they are.
    pub fn sealed_ranges(&self, before: i64, range: i64) -> std::collections::BTreeSet<i64> {
        let start = |t: i64| t.div_euclid(range) * range;
        let mut out = std::collections::BTreeSet::new();
        for ms in self.all_series() {
            let st = ms.state.lock();
            let spans = st
                .closed
                .iter()
                .map(|c| (c.min_t, c.max_t))
                .chain(st.head.as_ref().map(|(m, a)| (*m, a.last_timestamp())));
            for (lo, hi) in spans.filter(|(lo, _)| *lo < before) {
                // A chunk never spans a block boundary, except one restored from
                // before that rule; walk its few ranges.
                let mut r = start(lo);
                while r <= hi.min(before - 1) {
                    out.insert(r);
                    r += range;
                }
            }
            for x in st.ooo_sealed.iter().filter(|x| x.t < before) {
                out.insert(start(x.t));
            }
        }
        out
    }

    /// Whether the head holds any sample of this tenant.
    pub fn is_empty(&self) -> bool {
        self.min_time() == i64::MAX
    }

    /// The tenant's sealed boundary (`i64::MIN` until its first seal).
    pub fn min_valid_time(&self) -> i64 {
        self.min_valid.load(Ordering::Acquire)
    }

    /// The boundary of the tenant's last Shipped (`i64::MIN` until its first).
    pub fn shipped_before(&self) -> i64 {
        self.shipped_before.load(Ordering::Acquire)
    }

    /// Restores the shipping boundaries and the newest sample time (a checkpoint).
    pub fn restore_bounds(&self, min_valid: i64, shipped_before: i64, max_t: i64) {
        self.min_valid.fetch_max(min_valid, Ordering::AcqRel);
        self.shipped_before
            .fetch_max(shipped_before, Ordering::AcqRel);
        self.max_t.fetch_max(max_t, Ordering::AcqRel);
    }

    /// Seals the tenant's data before `before` (see [`ControlRecord::Seal`]): older
    /// samples are refused or kept apart as late data from now on, every open chunk is
    /// closed and out-of-order samples before it are set apart, so what the head holds
    /// before `before` can no longer change.
    ///
    /// [`ControlRecord::Seal`]: crate::record::ControlRecord::Seal
    pub fn seal(&self, before: i64) {
        self.min_valid.fetch_max(before, Ordering::AcqRel);
        for ms in self.all_series() {
            ms.state.lock().seal(before);
        }
    }

    /// Drops what was sealed before `before` and is now in blocks; late samples that
    /// arrived after the seal stay. Series left empty stay until [`TenantHead::gc`].
    pub fn truncate_before(&self, before: i64) {
        let mut min_t = i64::MAX;
        for ms in self.all_series() {
            let mut st = ms.state.lock();
            st.closed.retain(|c| c.max_t >= before);
            if st.closed.first().is_some_and(|c| c.min_t < before) {
                // Only a chunk written before the seal could reach across it; keep
                // its samples from `before` on.
                let c = st.closed.remove(0);
                let kept: Vec<(i64, f64)> = hearth_series::chunkenc::decode_all(&c.data)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(t, _)| *t >= before)
                    .collect();
                if let (Some(first), Some(last)) = (kept.first(), kept.last()) {
                    let mut app = XorAppender::new();
                    for (t, v) in &kept {
                        app.append(*t, *v);
                    }
                    st.closed.insert(
                        0,
                        ClosedChunk {
                            min_t: first.0,
                            max_t: last.0,
                            data: Arc::from(app.bytes()),
                        },
                    );
                }
            }
            if st
                .head
                .as_ref()
                .is_some_and(|(_, app)| app.last_timestamp() < before)
            {
                st.head = None;
            }
            st.ooo_sealed.retain(|x| x.t >= before);
            min_t = min_t.min(st.min_t());
        }
        self.min_t.store(min_t, Ordering::Release);
        self.shipped_before.fetch_max(before, Ordering::AcqRel);
    }

    /// Series matching all matchers, sorted by labels.
    pub fn select_series(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let mut out = self.select_series_unsorted(matchers);
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Matching series in id (creation) order: no label comparisons.
    pub fn select_series_unsorted(&self, matchers: &[Matcher]) -> Vec<Arc<MemSeries>> {
        let ids = self.postings.read().select(matchers);
        let all = self.series.read();
        ids.into_iter()
            .filter_map(|id| all.get(id).cloned())
            .collect()
    }

    pub fn label_names(&self, matchers: &[Matcher]) -> Vec<String> {
        if matchers.is_empty() {
            let p = self.postings.read();
            let mut v: Vec<String> = p.label_names().map(|s| s.to_string()).collect();
            v.sort();
            return v;
        }
        let mut set: HashSet<Arc<str>> = HashSet::new();
        for s in self.select_series(matchers) {
            for l in &s.labels {
                set.insert(l.name.clone());
            }
        }
        let mut v: Vec<String> = set.into_iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    pub fn label_values(&self, name: &str, matchers: &[Matcher]) -> Vec<String> {
        if matchers.is_empty() {
            let p = self.postings.read();
            let mut v: Vec<String> = p.label_values(name).map(|s| s.to_string()).collect();
            v.sort();
            return v;
        }
        let mut set: HashSet<Arc<str>> = HashSet::new();
        for s in self.select_series(matchers) {
            for l in &s.labels {
                if &*l.name == name {
                    set.insert(l.value.clone());
                }
            }
        }
        let mut v: Vec<String> = set.into_iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    pub fn metadata(&self) -> HashMap<String, Vec<MetricMetadata>> {
        self.metadata.read().clone()
    }

    /// (label name, distinct values), (label name, series with it), (pair, series).
    pub fn postings_stats(&self) -> PostingsStats {
        let p = self.postings.read();
        let card = p.cardinality();
        PostingsStats {
            values_per_name: card.iter().map(|(n, v, _)| (n.to_string(), *v)).collect(),
            series_per_name: card.iter().map(|(n, _, s)| (n.to_string(), *s)).collect(),
            series_per_pair: p
                .pair_counts()
                .into_iter()
                .map(|(n, v, c)| (format!("{n}={v}"), c))
                .collect(),
            series_per_metric: p
                .label_values("__name__")
                .map(|v| (v.to_string(), p.get("__name__", v).len()))
                .collect(),
            memory_in_bytes_per_name: card
                .iter()
                .map(|(n, _, _)| {
                    let bytes: usize = p.label_values(n).map(|v| v.len()).sum();
                    (n.to_string(), bytes)
                })
                .collect(),
        }
    }

    /// Every series, in id order.
    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        self.series.read().values().cloned().collect()
    }

    /// Raises the next id to at least `next` (restoring a checkpoint: the newest
    /// series may have been collected, and the log after the checkpoint goes on from
    /// the id it had).
    pub fn raise_next_id(&self, next: SeriesId) {
        self.next_id.fetch_max(next, Ordering::SeqCst);
    }

    /// Removes the series that hold no sample any more (everything they had was
    /// shipped), as Prometheus' head GC does: from the series map, the hash stripes,
    /// the postings and the string table. Returns how many were removed.
    ///
    /// Runs where writes are applied (the commit thread, in log order), so a write
    /// never names a collected id: a write resolved after this sees the series gone and
    /// creates it again under a new id, and replay collects at the same point.
    pub fn gc(&self) -> usize {
        let dead: Vec<Arc<MemSeries>> = self
            .series
            .read()
            .values()
            .filter(|s| s.state.lock().is_empty())
            .cloned()
            .collect();
        if dead.is_empty() {
            return 0;
        }
        for s in &dead {
            let hash = s.labels.hash64();
            self.stripes[(hash as usize) % STRIPES]
                .write()
                .remove(hash, s.id);
        }
        {
            let mut all = self.series.write();
            for s in &dead {
                all.remove(s.id);
            }
        }
        self.postings
            .write()
            .delete(dead.iter().map(|s| (s.id, &s.labels)));
        let n = dead.len();
        drop(dead);
        // Strings only the table still holds belonged to collected series alone.
        self.strings.lock().retain(|s| Arc::strong_count(s) > 1);
        n
    }

    pub fn set_metadata(&self, m: MetricMetadata) {
        let mut map = self.metadata.write();
        let list = map.entry(m.metric_family.clone()).or_default();
        if !list.contains(&m) {
            // The newest metadata first; keep a few distinct versions as Prometheus does.
            list.insert(0, m);
            list.truncate(4);
        }
    }
}

/// Index statistics for /api/v1/status/tsdb.
pub struct PostingsStats {
    pub values_per_name: Vec<(String, usize)>,
    pub series_per_name: Vec<(String, usize)>,
    pub series_per_pair: Vec<(String, usize)>,
    pub series_per_metric: Vec<(String, usize)>,
    pub memory_in_bytes_per_name: Vec<(String, usize)>,
}

/// The head of every tenant. Each tenant has its own bounds, seal and shipping, so one
/// tenant's data never moves another's appendable window (Mimir keeps a TSDB per tenant
/// for the same reason).
pub struct Head {
    opts: HeadOptions,
    tenants: RwLock<HashMap<Tenant, Arc<TenantHead>>>,
    /// Series collected since start (replay included).
    series_removed: AtomicU64,
}

impl Head {
    pub fn new(opts: HeadOptions) -> Head {
        Head {
            opts,
            tenants: RwLock::new(HashMap::new()),
            series_removed: AtomicU64::new(0),
        }
    }

    /// The tenants a control entry applies to: one, or every tenant (entries of logs
    /// written before per-tenant shipping).
    fn tenants_of(&self, tenant: Option<&Tenant>) -> Vec<Arc<TenantHead>> {
        match tenant {
            Some(t) => vec![self.tenant_or_create(t)],
            None => self.tenants().into_iter().map(|(_, th)| th).collect(),
        }
    }

    /// Seals `tenant`'s data (every tenant's for `None`) before `before`; see
    /// [`TenantHead::seal`].
    pub fn seal(&self, tenant: Option<&Tenant>, before: i64) {
        for th in self.tenants_of(tenant) {
            th.seal(before);
        }
    }

    /// Drops `tenant`'s data (every tenant's for `None`) sealed before `before`; see
    /// [`TenantHead::truncate_before`].
    pub fn truncate_before(&self, tenant: Option<&Tenant>, before: i64) {
        for th in self.tenants_of(tenant) {
            th.truncate_before(before);
        }
    }

    /// The oldest and newest sample time over every tenant (`(i64::MAX, i64::MIN)` when
    /// the head holds nothing).
    pub fn time_range(&self) -> (i64, i64) {
        self.tenants
            .read()
            .values()
            .fold((i64::MAX, i64::MIN), |(lo, hi), t| {
                (lo.min(t.min_time()), hi.max(t.max_time()))
            })
    }

    /// Collects the series of every tenant that hold no sample any more (see
    /// [`TenantHead::gc`]). Returns how many were removed.
    pub fn gc(&self) -> usize {
        let n = self.tenants().iter().map(|(_, th)| th.gc()).sum();
        self.series_removed.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Series collected by [`Head::gc`] since start.
    pub fn series_removed(&self) -> u64 {
        self.series_removed.load(Ordering::Relaxed)
    }

    pub fn options(&self) -> &HeadOptions {
        &self.opts
    }

    pub fn tenant(&self, t: &Tenant) -> Option<Arc<TenantHead>> {
        self.tenants.read().get(t).cloned()
    }

    pub fn tenant_or_create(&self, t: &Tenant) -> Arc<TenantHead> {
        if let Some(h) = self.tenant(t) {
            return h;
        }
        self.tenants.write().entry(t.clone()).or_default().clone()
    }

    pub fn tenants(&self) -> Vec<(Tenant, Arc<TenantHead>)> {
        let mut v: Vec<_> = self
            .tenants
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn num_series(&self) -> usize {
        self.tenants.read().values().map(|t| t.num_series()).sum()
    }

    /// Applies a write whose series are all named by labels (entries of the earlier
    /// forms, and tests): see [`Head::apply_named`].
    pub fn apply(&self, tenant: &Tenant, batch: &WriteBatch) -> PushOutcome {
        let named = batch.iter().map(|s| {
            let name = SeriesName::Labels {
                labels: s.labels,
                hash: s.hash,
            };
            (name, s.samples)
        });
        self.apply_named(tenant, &batch.metadata, named).0
    }

    /// Applies one committed write whose series are named by head id or by labels (see
    /// [`SeriesName`]), in order. A series named by an id the head no longer holds (it
    /// was collected after the write was proposed) is not applied: its index is in the
    /// second result, for the proposer to write again by labels. Deterministic: the
    /// same log applied in the same order gives the same head, the same ids and the
    /// same outcome, which replay and Raft replicas rely on.
    pub fn apply_named<'a>(
        &self,
        tenant: &Tenant,
        metadata: &[MetricMetadata],
        series: impl Iterator<Item = (SeriesName<'a>, &'a [Sample])>,
    ) -> (PushOutcome, Vec<u32>) {
        let th = self.tenant_or_create(tenant);
        for m in metadata {
            th.set_metadata(m.clone());
        }
        let mut out = PushOutcome::default();
        let mut unresolved = Vec::new();
        let mut labeled = Vec::new();
        {
            // The series named by id, under one read of the id index: nothing but this
            // apply creates or collects series, and ids named were handed out before
            // this write. A series appears once per write, or every time by the same
            // kind of name, so appending the labeled ones after changes no outcome.
            let all = th.series.read();
            for (i, (name, samples)) in series.enumerate() {
                match name {
                    SeriesName::Id(id) => match all.get(id) {
                        Some(ms) => self
                            .append_samples(&th, ms, samples, &mut out, &|| ms.labels.to_string()),
                        None => unresolved.push(i as u32),
                    },
                    SeriesName::Labels { labels, hash } => labeled.push((labels, hash, samples)),
                }
            }
        }
        for (labels, hash, samples) in labeled {
            let ms = match th.lookup(hash, &labels) {
                Some(ms) => ms,
                None => th.create(hash, &labels.to_labels(), None),
            };
            self.append_samples(&th, &ms, samples, &mut out, &|| ms.labels.to_string());
        }
        (out, unresolved)
    }

    /// Applies samples to one series under the append rules, counting the outcome.
    pub fn append_samples(
        &self,
        th: &TenantHead,
        ms: &MemSeries,
        samples: &[Sample],
        out: &mut PushOutcome,
        describe: &dyn Fn() -> String,
    ) {
        let mut st = ms.state.lock();
        for s in samples {
            let head_max = th.max_time();
            let res = self
                .check_bounds(head_max, th.min_valid_time(), s.t)
                .and_then(|in_bounds| self.append_one(&mut st, *s, in_bounds, head_max));
            match res {
                Ok(true) => {
                    out.samples_written += 1;
                    th.note_time(s.t);
                }
                // An identical duplicate: a no-op that counts as written (senders retry).
                Ok(false) => out.samples_written += 1,
                Err(r) => {
                    out.samples_rejected += 1;
                    if out.first_rejection.is_none() {
                        out.first_rejection = Some(format!(
                            "{}: series {}, timestamp {}",
                            r.as_str(),
                            describe(),
                            s.t
                        ));
                    }
                }
            }
        }
    }

    /// Ok(true) when the sample is in the tenant's in-order window, Ok(false) when only
    /// the out-of-order window takes it. Below the tenant's sealed boundary a sample is
    /// late data: taken by the out-of-order window only (as Prometheus' and Mimir's
    /// out-of-order heads take samples older than what was compacted), else refused.
    fn check_bounds(&self, head_max: i64, sealed: i64, t: i64) -> Result<bool, RejectReason> {
        let below_seal = t < sealed;
        if below_seal && (self.opts.out_of_order_window_ms == 0 || head_max == i64::MIN) {
            return Err(RejectReason::OutOfBounds);
        }
        if head_max == i64::MIN {
            return Ok(true); // A fresh head accepts any timestamp (backfill).
        }
        let min_valid = head_max.saturating_sub(self.opts.block_range_ms / 2);
        if t >= min_valid && !below_seal {
            return Ok(true);
        }
        if self.opts.out_of_order_window_ms > 0
            && t >= head_max.saturating_sub(self.opts.out_of_order_window_ms)
        {
            return Ok(false);
        }
        if self.opts.out_of_order_window_ms > 0 {
            Err(RejectReason::TooOldForOutOfOrder)
        } else {
            Err(RejectReason::OutOfBounds)
        }
    }

    /// Ok(true): stored; Ok(false): an exact duplicate, ignored.
    fn append_one(
        &self,
        st: &mut SeriesState,
        s: Sample,
        in_bounds: bool,
        head_max: i64,
    ) -> Result<bool, RejectReason> {
        let ooo_on = self.opts.out_of_order_window_ms > 0;
        if in_bounds && s.t > st.max_t {
            st.append_in_order(s.t, s.v, self.opts.block_range_ms);
            return Ok(true);
        }
        if s.t == st.max_t {
            return if st.last_v.to_bits() == s.v.to_bits() {
                Ok(false)
            } else {
                Err(RejectReason::Duplicate)
            };
        }
        if !ooo_on {
            return Err(RejectReason::OutOfOrder);
        }
        if s.t < head_max.saturating_sub(self.opts.out_of_order_window_ms) {
            return Err(RejectReason::TooOldForOutOfOrder);
        }
        st.insert_ooo(s).map(|_| true)
    }

    /// Every series of a tenant with sealed data in [mint, maxt], sorted by labels:
    /// what a block of that range holds (late samples that arrived after the seal are
    /// left for the next shipping).
    pub fn sealed_series_data(&self, tenant: &Tenant, mint: i64, maxt: i64) -> Vec<Series> {
        let Some(th) = self.tenant(tenant) else {
            return Vec::new();
        };
        let mut out: Vec<Series> = th
            .all_series()
            .iter()
            .filter_map(|ms| {
                let data = ms.state.lock().sealed_data_in(mint, maxt);
                let empty = match &data {
                    SeriesData::Chunks(c) => c.is_empty(),
                    SeriesData::Samples(s) => s.is_empty(),
                };
                (!empty).then(|| Series {
                    labels: ms.labels.clone(),
                    data,
                })
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    pub fn select(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<Series> {
        self.select_with(tenant, matchers, mint, maxt, true)
    }

    /// As [`Head::select`]; `sorted = false` returns series in id order, skipping the
    /// sort by labels.
    pub fn select_with(
        &self,
        tenant: &Tenant,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        sorted: bool,
    ) -> Vec<Series> {
        let Some(th) = self.tenant(tenant) else {
            return Vec::new();
        };
        let series = if sorted {
            th.select_series(matchers)
        } else {
            th.select_series_unsorted(matchers)
        };
        series
            .iter()
            .filter_map(|s| series_in(s, mint, maxt))
            .collect()
    }

    /// Restores one series from a checkpoint under the id it had.
    pub fn restore_series(
        &self,
        tenant: &Tenant,
        id: SeriesId,
        labels: &Labels,
        state: SeriesState,
    ) {
        let th = self.tenant_or_create(tenant);
        let ms = th.create(labels.hash64(), labels, Some(id));
        debug_assert_eq!(ms.id, id, "a checkpoint names one series twice");
        if !state.is_empty() {
            th.note_time(state.min_t());
            th.note_time(state.newest());
        }
        *ms.state.lock() = state;
    }
}

impl SeriesState {
    /// Rebuilds a series state from checkpointed parts.
    pub fn from_parts(
        closed: Vec<ClosedChunk>,
        head: Option<(i64, XorAppender)>,
        max_t: i64,
        last_v: f64,
        ooo: Vec<Sample>,
        ooo_sealed: Vec<Sample>,
    ) -> SeriesState {
        SeriesState {
            closed,
            head,
            max_t,
            last_v,
            ooo,
            ooo_sealed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_core::MatchOp;

    fn batch(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> WriteBatch {
        WriteBatch::from_series(&[(
            Labels::from_pairs(labels),
            samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
        )])
    }

    fn samples(head: &Head, name: &str) -> Vec<(i64, f64)> {
        let m = Matcher::new(MatchOp::Equal, "__name__", name).unwrap();
        let mut out = Vec::new();
        for s in head.select(&Tenant::anonymous(), &[m], i64::MIN, i64::MAX) {
            match s.data {
                SeriesData::Chunks(cs) => {
                    for c in cs {
                        out.extend(hearth_series::chunkenc::decode_all(&c.data).unwrap());
                    }
                }
                SeriesData::Samples(ss) => out.extend(ss.iter().map(|s| (s.t, s.v))),
            }
        }
        out
    }

    #[test]
    fn cuts_chunks_at_120_samples_and_block_boundaries() {
        let head = Head::new(HeadOptions::default());
        let t = Tenant::anonymous();
        let pts: Vec<(i64, f64)> = (0..1000).map(|i| (i * 15_000, i as f64)).collect();
        let out = head.apply(&t, &batch(&[("__name__", "m")], &pts));
        assert_eq!(out.samples_written, 1000);
        assert_eq!(samples(&head, "m"), pts);
        let th = head.tenant(&t).unwrap();
        let s = &th.all_series()[0];
        let st = s.state.lock();
        assert!(st
            .closed
            .iter()
            .all(|c| c.max_t < chunk_range_end(c.min_t, 7_200_000)));
        assert!(st.closed.iter().all(|c| c.data.len() > 2));
    }

    #[test]
    fn rejects_out_of_order_duplicates_and_out_of_bounds() {
        let head = Head::new(HeadOptions::default());
        let t = Tenant::anonymous();
        head.apply(&t, &batch(&[("__name__", "m")], &[(10_000_000, 1.0)]));
        let out = head.apply(
            &t,
            &batch(
                &[("__name__", "m")],
                &[
                    (9_999_000, 1.0),
                    (10_000_000, 1.0),
                    (10_000_000, 2.0),
                    (1, 1.0),
                ],
            ),
        );
        assert_eq!(out.samples_written, 1); // the identical duplicate is a no-op success
        assert_eq!(out.samples_rejected, 3);
        assert!(out
            .first_rejection
            .unwrap()
            .starts_with("out of order sample: series m"));
    }

    #[test]
    fn out_of_order_window_accepts_and_merges() {
        let head = Head::new(HeadOptions {
            out_of_order_window_ms: 3_600_000,
            ..HeadOptions::default()
        });
        let t = Tenant::anonymous();
        head.apply(
            &t,
            &batch(
                &[("__name__", "m")],
                &[(10_000_000, 1.0), (10_030_000, 3.0)],
            ),
        );
        let out = head.apply(
            &t,
            &batch(&[("__name__", "m")], &[(10_015_000, 2.0), (1, 0.0)]),
        );
        assert_eq!(out.samples_written, 1);
        assert_eq!(out.samples_rejected, 1);
        assert_eq!(
            samples(&head, "m"),
            vec![(10_000_000, 1.0), (10_015_000, 2.0), (10_030_000, 3.0)]
        );
    }

    #[test]
    fn hash_collisions_resolve_by_labels() {
        let ms = |id: SeriesId| {
            Arc::new(MemSeries {
                id,
                labels: Labels::from_pairs(&[("__name__", "x")]),
                state: Mutex::new(SeriesState::new()),
            })
        };
        let ids =
            |stripe: &HashStripe, h: u64| stripe.candidates(h).map(|s| s.id).collect::<Vec<_>>();
        let mut stripe = HashStripe::default();
        stripe.insert(42, ms(1));
        stripe.insert(42, ms(7));
        stripe.insert(43, ms(2));
        assert_eq!(ids(&stripe, 42), vec![1, 7]);
        // Removing the first promotes the collision; removing the last empties both.
        stripe.insert(42, ms(9));
        stripe.remove(42, 1);
        assert_eq!(ids(&stripe, 42), vec![7, 9]);
        stripe.remove(42, 9);
        stripe.remove(42, 7);
        assert_eq!(stripe.candidates(42).count(), 0);
        assert!(!stripe.first.contains_key(&42) && stripe.collisions.is_empty());
        assert_eq!(ids(&stripe, 43), vec![2]);
        // A lookup whose hash matches another series' must still compare labels.
        let th = TenantHead::default();
        let a = Labels::from_pairs(&[("__name__", "a")]);
        let b = WriteBatch::from_series(&[(Labels::from_pairs(&[("__name__", "b")]), vec![])]);
        let sa = th.get_or_create(&a);
        assert!(th.lookup(a.hash64(), &b.get(0).labels).is_none());
        let ba = WriteBatch::from_series(&[(a.clone(), vec![])]);
        assert_eq!(th.lookup(a.hash64(), &ba.get(0).labels).unwrap().id, sa.id);
    }

    /// GC removes only empty series, from every index, and frees their strings.
    #[test]
    fn gc_collects_empty_series_only() {
        let head = Head::new(HeadOptions::default());
        let t = Tenant::anonymous();
        head.apply(
            &t,
            &batch(&[("__name__", "old"), ("only_old", "x")], &[(1_000, 1.0)]),
        );
        head.apply(
            &t,
            &batch(&[("__name__", "m")], &[(1_000, 1.0), (9_000, 2.0)]),
        );
        head.seal(Some(&t), 5_000);
        head.truncate_before(Some(&t), 5_000);
        let th = head.tenant(&t).unwrap();
        let strings_before = th.strings.lock().len();
        assert_eq!(head.gc(), 1);
        assert_eq!(head.series_removed(), 1);
        assert_eq!(th.num_series(), 1);
        assert_eq!(th.label_names(&[]), vec!["__name__"]);
        assert_eq!(th.label_values("__name__", &[]), vec!["m"]);
        let old = Labels::from_pairs(&[("__name__", "old"), ("only_old", "x")]);
        assert!(th.get(&old, old.hash64()).is_none());
        // "old", "only_old" and "x" were only the collected series'.
        assert_eq!(th.strings.lock().len(), strings_before - 3);
        assert_eq!(samples(&head, "m"), vec![(9_000, 2.0)]);
        assert_eq!(head.gc(), 0);
        // Written again, it is a new series with a new id.
        head.apply(
            &t,
            &batch(&[("__name__", "old"), ("only_old", "x")], &[(9_500, 3.0)]),
        );
        assert_eq!(th.get(&old, old.hash64()).unwrap().id, 2);
        assert_eq!(samples(&head, "old"), vec![(9_500, 3.0)]);
    }

    #[test]
    fn tenants_are_isolated() {
        let head = Head::new(HeadOptions::default());
        let a = Tenant::new("a").unwrap();
        head.apply(&a, &batch(&[("__name__", "m")], &[(1, 1.0)]));
        assert!(samples(&head, "m").is_empty());
        assert_eq!(head.tenant(&a).unwrap().num_series(), 1);
    }
}
