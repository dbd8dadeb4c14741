//! A write batch in one flat allocation: label bytes in an arena (often the decompressed
//! request body itself, so decoding copies no string), label and series tables of
//! offsets, and the samples in one vector. A distributor builds it once; the ingester
//! hashes, logs and applies it without per-label allocations. Splitting it (by shard
//! group) gives parts that share those tables and select their series by index; a part
//! is copied out only when it is encoded.

use std::fmt;
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

use crate::{Label, Labels, MetricMetadata, Sample, METRIC_NAME};

/// Offsets of one label in the arena: name [n0, n1), value [v0, v1).
#[derive(Clone, Copy, Debug)]
struct LabelSpan {
    n0: u32,
    n1: u32,
    v0: u32,
    v1: u32,
}

#[derive(Clone, Copy, Debug)]
struct SeriesSpan {
    labels: (u32, u32),
    samples: (u32, u32),
    hash: u64,
}

/// A part number that takes no series (`WriteBatch::copy_into`).
const SKIP: usize = usize::MAX;

/// A batch's tables: the label bytes, label and series spans into them, the samples.
#[derive(Clone, Default)]
struct Tables {
    /// Bytes holding every label name and value (valid UTF-8 where referenced).
    arena: Vec<u8>,
    labels: Vec<LabelSpan>,
    series: Vec<SeriesSpan>,
    samples: Vec<Sample>,
}

/// A validated write: series with sorted, unique labels and their samples.
#[derive(Clone, Default)]
pub struct WriteBatch {
    tables: Arc<Tables>,
    /// The series of `tables` this batch holds, in order (`None`: all of them). The
    /// parts of a split share their batch's tables, so splitting a write by shard
    /// group copies no label and no sample; a part's wire form is compacted instead.
    select: Option<Arc<[u32]>>,
    /// Samples of the selected series (with `select`).
    selected_samples: usize,
    pub metadata: Vec<MetricMetadata>,
}

/// A batch in its wire form, owned: the label arena and the little-endian tables
/// [`WireParts`] describes, and the metadata.
#[derive(Debug, Default)]
pub struct WireForm {
    pub arena: Vec<u8>,
    pub label_offsets: Vec<u8>,
    pub series_ends: Vec<u8>,
    pub samples: Vec<u8>,
    pub metadata: Vec<MetricMetadata>,
}

/// A batch's tables for its wire form (see [`WriteBatch::wire_parts`]): borrowed, or a
/// compacted copy of a split's part.
pub struct WireParts<'a> {
    batch: std::borrow::Cow<'a, WriteBatch>,
}

impl WireParts<'_> {
    /// The label bytes.
    pub fn arena(&self) -> &[u8] {
        &self.batch.tables.arena
    }

    /// Every label's four offsets, as little-endian `u32`s.
    pub fn label_offsets_le(&self) -> Vec<u8> {
        let labels = &self.batch.tables.labels;
        let mut out = Vec::with_capacity(labels.len() * 16);
        for l in labels {
            for o in [l.n0, l.n1, l.v0, l.v1] {
                out.extend_from_slice(&o.to_le_bytes());
            }
        }
        out
    }

    /// Each series' labels end and samples end, as little-endian `u32`s.
    pub fn series_ends_le(&self) -> Vec<u8> {
        let series = &self.batch.tables.series;
        let mut out = Vec::with_capacity(series.len() * 8);
        for s in series {
            out.extend_from_slice(&s.labels.1.to_le_bytes());
            out.extend_from_slice(&s.samples.1.to_le_bytes());
        }
        out
    }

    /// Each sample's timestamp and value bits, as little-endian `i64` and `u64`.
    pub fn samples_le(&self) -> Vec<u8> {
        let samples = &self.batch.tables.samples;
        let mut out = Vec::with_capacity(samples.len() * 16);
        for s in samples {
            out.extend_from_slice(&s.t.to_le_bytes());
            out.extend_from_slice(&s.v.to_bits().to_le_bytes());
        }
        out
    }
}

/// The labels of one series of a batch, borrowed.
#[derive(Clone, Copy)]
pub struct LabelsRef<'a> {
    arena: &'a [u8],
    spans: &'a [LabelSpan],
}

/// One series of a batch, borrowed.
#[derive(Clone, Copy)]
pub struct BatchSeries<'a> {
    pub labels: LabelsRef<'a>,
    pub samples: &'a [Sample],
    /// `Labels::hash64` of the labels.
    pub hash: u64,
}

fn as_str(b: &[u8]) -> &str {
    // Spans are validated when they are added; a failure here is a bug, not input.
    std::str::from_utf8(b).unwrap_or("")
}

impl<'a> LabelsRef<'a> {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// (name, value) pairs as bytes, sorted by name.
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let arena = self.arena;
        self.spans.iter().map(move |s| {
            (
                &arena[s.n0 as usize..s.n1 as usize],
                &arena[s.v0 as usize..s.v1 as usize],
            )
        })
    }

    /// (name, value) pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.iter_bytes().map(|(n, v)| (as_str(n), as_str(v)))
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Equal to an owned label set?
    pub fn eq_labels(&self, l: &Labels) -> bool {
        l.len() == self.spans.len()
            && self
                .iter_bytes()
                .zip(l.iter())
                .all(|((n, v), x)| n == x.name.as_bytes() && v == x.value.as_bytes())
    }

    /// Equal to another borrowed label set?
    pub fn eq_ref(&self, o: &LabelsRef<'_>) -> bool {
        self.spans.len() == o.spans.len() && self.iter_bytes().eq(o.iter_bytes())
    }

    pub fn to_labels(&self) -> Labels {
        Labels::from_sorted(self.iter().map(|(n, v)| Label::new(n, v)).collect())
    }
}

impl fmt::Display for LabelsRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.get(METRIC_NAME).unwrap_or("");
        f.write_str(name)?;
        f.write_str("{")?;
        let mut first = true;
        for (n, v) in self.iter().filter(|(n, _)| *n != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// The hash `Labels::hash64` gives, over borrowed pairs: xxh3 of
/// `name 0xff value 0xff ...`, laid out in a reused buffer and hashed in one call
/// (much faster than streaming many small pieces, and the same digest).
pub fn hash_label_bytes<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> u64 {
    thread_local! {
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        b.clear();
        for (n, v) in pairs {
            b.extend_from_slice(n);
            b.push(0xff);
            b.extend_from_slice(v);
            b.push(0xff);
        }
        if b.len() > 1 << 20 {
            // Do not keep a huge buffer alive for the thread's lifetime.
            let mut h = Xxh3::new();
            h.update(&b);
            let d = h.digest();
            *b = Vec::new();
            return d;
        }
        xxhash_rust::xxh3::xxh3_64(&b)
    })
}

/// Where a decoded series' labels and samples end in the tables, and its label hash.
#[derive(Clone, Copy, Debug)]
pub struct ArenaSeries {
    pub labels_end: u32,
    pub samples_end: u32,
    pub hash: u64,
}

/// A label as offsets into the arena, given by a decoder that borrowed from it.
#[derive(Clone, Copy, Debug)]
pub struct ArenaLabel {
    pub name: (u32, u32),
    pub value: (u32, u32),
}

impl WriteBatch {
    /// An empty batch whose arena is `arena` (e.g. a decompressed request body) so that
    /// [`WriteBatch::push_arena_series`] can reference labels inside it without copying.
    pub fn with_arena(arena: Vec<u8>) -> WriteBatch {
        WriteBatch {
            tables: Arc::new(Tables {
                arena,
                ..Tables::default()
            }),
            ..WriteBatch::default()
        }
    }

    /// The tables, to add series to: only a whole batch is built on, never a part.
    fn tables_mut(&mut self) -> &mut Tables {
        assert!(
            self.select.is_none(),
            "series are added to a whole batch, not to a part of one"
        );
        Arc::make_mut(&mut self.tables)
    }

    /// The index in the tables of the batch's `i`-th series.
    fn index(&self, i: usize) -> usize {
        match &self.select {
            Some(s) => s[i] as usize,
            None => i,
        }
    }

    /// The batch's series' spans, in order.
    fn spans(&self) -> impl Iterator<Item = &SeriesSpan> + '_ {
        (0..self.len()).map(move |i| &self.tables.series[self.index(i)])
    }

    /// Adds a series whose labels are ranges of the arena. The caller guarantees the
    /// ranges are in bounds, valid UTF-8, sorted by name and unique.
    pub fn push_arena_series(&mut self, labels: &[ArenaLabel], samples: &[Sample]) {
        let t = self.tables_mut();
        let l0 = t.labels.len() as u32;
        for l in labels {
            t.labels.push(LabelSpan {
                n0: l.name.0,
                n1: l.name.1,
                v0: l.value.0,
                v1: l.value.1,
            });
        }
        let l1 = t.labels.len() as u32;
        let s0 = t.samples.len() as u32;
        t.samples.extend_from_slice(samples);
        let s1 = t.samples.len() as u32;
        let arena = &t.arena;
        let spans = &t.labels[l0 as usize..l1 as usize];
        let hash = hash_label_bytes(spans.iter().map(|s| {
            (
                &arena[s.n0 as usize..s.n1 as usize],
                &arena[s.v0 as usize..s.v1 as usize],
            )
        }));
        t.series.push(SeriesSpan {
            labels: (l0, l1),
            samples: (s0, s1),
            hash,
        });
    }

    /// Builds a batch from a decoder's tables: `labels` hold ranges of `arena` (valid
    /// UTF-8, sorted and unique per series), and each series gives where its labels and
    /// samples end (starts follow the previous series) and its label hash.
    pub fn from_arena_parts(
        arena: Vec<u8>,
        labels: Vec<ArenaLabel>,
        series: Vec<ArenaSeries>,
        samples: Vec<Sample>,
    ) -> WriteBatch {
        let mut out = Tables {
            arena,
            labels: labels
                .into_iter()
                .map(|l| LabelSpan {
                    n0: l.name.0,
                    n1: l.name.1,
                    v0: l.value.0,
                    v1: l.value.1,
                })
                .collect(),
            series: Vec::with_capacity(series.len()),
            samples,
        };
        let (mut l0, mut s0) = (0u32, 0u32);
        for s in series {
            out.series.push(SeriesSpan {
                labels: (l0, s.labels_end),
                samples: (s0, s.samples_end),
                hash: s.hash,
            });
            l0 = s.labels_end;
            s0 = s.samples_end;
        }
        WriteBatch {
            tables: Arc::new(out),
            ..WriteBatch::default()
        }
    }

    /// Adds a series with owned labels (copied into the arena).
    pub fn push(&mut self, labels: &Labels, samples: &[Sample]) {
        let mut spans = Vec::with_capacity(labels.len());
        let arena = &mut self.tables_mut().arena;
        for l in labels {
            let n0 = arena.len() as u32;
            arena.extend_from_slice(l.name.as_bytes());
            let n1 = arena.len() as u32;
            arena.extend_from_slice(l.value.as_bytes());
            let v1 = arena.len() as u32;
            spans.push(ArenaLabel {
                name: (n0, n1),
                value: (n1, v1),
            });
        }
        self.push_arena_series(&spans, samples);
    }

    pub fn from_series(series: &[(Labels, Vec<Sample>)]) -> WriteBatch {
        let mut b = WriteBatch::default();
        for (l, s) in series {
            b.push(l, s);
        }
        b
    }

    /// The batch taken apart for its wire form, the arena moved out rather than
    /// copied, the tables as [`WriteBatch::from_wire`] reads them.
    pub fn into_wire(self) -> WireForm {
        let whole = match self.select {
            Some(_) => self.compacted(),
            None => self,
        };
        let w = whole.wire_parts();
        let (label_offsets, series_ends, samples) =
            (w.label_offsets_le(), w.series_ends_le(), w.samples_le());
        drop(w);
        let arena = Arc::try_unwrap(whole.tables).map_or_else(|t| t.arena.clone(), |t| t.arena);
        WireForm {
            arena,
            label_offsets,
            series_ends,
            samples,
            metadata: whole.metadata,
        }
    }

    /// The batch as a whole batch of its own (a part of a split copied out), with its
    /// metadata.
    fn compacted(&self) -> WriteBatch {
        let of = vec![0; self.len()];
        let mut out = self.copy_into(1, &of, true).pop().unwrap_or_default();
        out.metadata = self.metadata.clone();
        out
    }

    /// The batch's tables as a wire form carries them: the arena, each label's
    /// `[name start, name end, value start, value end)` offsets, each series' label and
    /// sample end, and the samples. [`WriteBatch::from_wire`] is the inverse.
    pub fn wire_parts(&self) -> WireParts<'_> {
        let batch = match self.select {
            Some(_) => std::borrow::Cow::Owned(self.compacted()),
            None => std::borrow::Cow::Borrowed(self),
        };
        WireParts { batch }
    }

    /// Rebuilds a batch from its wire form, checking everything (it came from the
    /// network): offsets in bounds and in order, names and values valid UTF-8, labels
    /// of each series sorted by name and unique. Hashes are computed here, not trusted.
    /// The tables are little-endian arrays: four `u32` per label, two `u32` per series
    /// (labels end, samples end), an `i64` timestamp and the `f64` value's bits per
    /// sample (see [`WireParts`]).
    pub fn from_wire(
        arena: Vec<u8>,
        label_offsets: &[u8],
        series_ends: &[u8],
        samples: &[u8],
    ) -> Result<WriteBatch, String> {
        if !label_offsets.len().is_multiple_of(16)
            || !series_ends.len().is_multiple_of(8)
            || !samples.len().is_multiple_of(16)
        {
            return Err("a table's length is not a whole number of entries".into());
        }
        let u32s = |b: &[u8]| -> Vec<u32> {
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        // One validation of every byte, then each offset only needs to fall on a
        // character boundary for its slice to be valid UTF-8 too.
        let text = std::str::from_utf8(&arena)
            .map_err(|_| "the label bytes are not valid UTF-8".to_string())?;
        let offsets = u32s(label_offsets);
        let mut labels = Vec::with_capacity(offsets.len() / 4);
        for q in offsets.chunks_exact(4) {
            let (n0, n1, v0, v1) = (q[0], q[1], q[2], q[3]);
            if n0 > n1 || v0 > v1 || n1 as usize > arena.len() || v1 as usize > arena.len() {
                return Err(format!(
                    "label offsets {q:?} outside the arena of {} bytes",
                    arena.len()
                ));
            }
            if !q.iter().all(|&o| text.is_char_boundary(o as usize)) {
                return Err("a label offset splits a character".into());
            }
            labels.push(LabelSpan { n0, n1, v0, v1 });
        }
        let samples: Vec<Sample> = samples
            .chunks_exact(16)
            .map(|c| Sample {
                t: i64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
                v: f64::from_bits(u64::from_le_bytes(c[8..].try_into().expect("8 bytes"))),
            })
            .collect();
        let ends = u32s(series_ends);
        let mut series = Vec::with_capacity(ends.len() / 2);
        let (mut l0, mut s0) = (0u32, 0u32);
        for e in ends.chunks_exact(2) {
            let (l1, s1) = (e[0], e[1]);
            if l1 < l0 || l1 as usize > labels.len() || s1 < s0 || s1 as usize > samples.len() {
                return Err("series ends out of order or out of bounds".into());
            }
            let spans = &labels[l0 as usize..l1 as usize];
            let name = |s: &LabelSpan| &arena[s.n0 as usize..s.n1 as usize];
            if spans.windows(2).any(|w| name(&w[0]) >= name(&w[1])) {
                return Err("a series' labels are not sorted by name and unique".into());
            }
            let hash = hash_label_bytes(spans.iter().map(|s| {
                (
                    &arena[s.n0 as usize..s.n1 as usize],
                    &arena[s.v0 as usize..s.v1 as usize],
                )
            }));
            series.push(SeriesSpan {
                labels: (l0, l1),
                samples: (s0, s1),
                hash,
            });
            (l0, s0) = (l1, s1);
        }
        Ok(WriteBatch {
            tables: Arc::new(Tables {
                arena,
                labels,
                series,
                samples,
            }),
            ..WriteBatch::default()
        })
    }

    /// The batch split into `parts` batches: series `i` goes to part `part_of(i)`.
    /// The parts share this batch's tables (nothing is copied; a part's wire form is
    /// compacted when it is encoded). Metadata is not carried over.
    pub fn split(&self, parts: usize, part_of: impl Fn(usize) -> usize) -> Vec<WriteBatch> {
        let guess = self.len() / parts.max(1) + 1;
        let mut selected: Vec<Vec<u32>> = (0..parts).map(|_| Vec::with_capacity(guess)).collect();
        let mut samples = vec![0usize; parts];
        for i in 0..self.len() {
            let (p, at) = (part_of(i), self.index(i));
            let s = &self.tables.series[at];
            selected[p].push(at as u32);
            samples[p] += (s.samples.1 - s.samples.0) as usize;
        }
        selected
            .into_iter()
            .zip(samples)
            .map(|(select, n)| WriteBatch {
                tables: self.tables.clone(),
                select: Some(select.into()),
                selected_samples: n,
                metadata: Vec::new(),
            })
            .collect()
    }

    /// The labels (and no samples) of the series `keep` selects, in order, as a batch of
    /// their own (hashes kept).
    pub fn labels_of(&self, keep: impl Fn(usize) -> bool) -> WriteBatch {
        let of: Vec<usize> = (0..self.len())
            .map(|i| if keep(i) { 0 } else { SKIP })
            .collect();
        self.copy_into(1, &of, false).pop().unwrap_or_default()
    }

    /// How a series' labels are copied: the one arena range they lie in when it holds
    /// little else (a decoded request's series: its labels and their framing) and is
    /// valid UTF-8 as a whole (a wire form's arena must be: framing bytes of a label
    /// longer than 127 bytes are not), else label by label (labels spread over the
    /// arena, as symbols of a table are); and the bytes the copy takes.
    fn label_bytes(arena: &[u8], labels: &[LabelSpan]) -> (Option<std::ops::Range<usize>>, usize) {
        let (mut lo, mut hi, mut own) = (u32::MAX, 0u32, 0usize);
        for l in labels {
            lo = lo.min(l.n0).min(l.v0);
            hi = hi.max(l.n1).max(l.v1);
            own += (l.n1 - l.n0 + l.v1 - l.v0) as usize;
        }
        let range = (lo as usize)..(hi as usize);
        if lo <= hi
            && range.len() <= 2 * own + 64
            && arena
                .get(range.clone())
                .is_some_and(|b| std::str::from_utf8(b).is_ok())
        {
            let n = range.len();
            (Some(range), n)
        } else {
            (None, own)
        }
    }

    /// Copies the batch's series `i` into part `of[i]` (none for `SKIP`), with its
    /// samples or not, into tables of their own.
    fn copy_into(&self, parts: usize, of: &[usize], samples: bool) -> Vec<WriteBatch> {
        let src = &*self.tables;
        #[derive(Clone, Copy, Default)]
        struct Size {
            arena: usize,
            labels: usize,
            series: usize,
            samples: usize,
        }
        let mut sizes = vec![Size::default(); parts];
        for (span, &p) in self.spans().zip(of) {
            let Some(z) = sizes.get_mut(p) else {
                continue;
            };
            let labels = &src.labels[span.labels.0 as usize..span.labels.1 as usize];
            z.arena += Self::label_bytes(&src.arena, labels).1;
            z.labels += labels.len();
            z.series += 1;
            z.samples += (span.samples.1 - span.samples.0) as usize;
        }
        let mut out: Vec<Tables> = sizes
            .iter()
            .map(|z| Tables {
                arena: Vec::with_capacity(z.arena),
                labels: Vec::with_capacity(z.labels),
                series: Vec::with_capacity(z.series),
                samples: Vec::with_capacity(if samples { z.samples } else { 0 }),
            })
            .collect();
        for (span, &p) in self.spans().zip(of) {
            let Some(o) = out.get_mut(p) else {
                continue;
            };
            let l0 = o.labels.len() as u32;
            let labels = &src.labels[span.labels.0 as usize..span.labels.1 as usize];
            match Self::label_bytes(&src.arena, labels) {
                (Some(range), _) => {
                    // One copy of the bytes the labels lie in, their offsets moved.
                    let to = o.arena.len() as u32;
                    o.arena.extend_from_slice(&src.arena[range.clone()]);
                    let at = |x: u32| x - range.start as u32 + to;
                    o.labels.extend(labels.iter().map(|l| LabelSpan {
                        n0: at(l.n0),
                        n1: at(l.n1),
                        v0: at(l.v0),
                        v1: at(l.v1),
                    }));
                }
                (None, _) => {
                    for l in labels {
                        let n0 = o.arena.len() as u32;
                        o.arena
                            .extend_from_slice(&src.arena[l.n0 as usize..l.n1 as usize]);
                        let n1 = o.arena.len() as u32;
                        o.arena
                            .extend_from_slice(&src.arena[l.v0 as usize..l.v1 as usize]);
                        o.labels.push(LabelSpan {
                            n0,
                            n1,
                            v0: n1,
                            v1: o.arena.len() as u32,
                        });
                    }
                }
            }
            let s0 = o.samples.len() as u32;
            if samples {
                o.samples.extend_from_slice(
                    &src.samples[span.samples.0 as usize..span.samples.1 as usize],
                );
            }
            o.series.push(SeriesSpan {
                labels: (l0, o.labels.len() as u32),
                samples: (s0, o.samples.len() as u32),
                hash: span.hash,
            });
        }
        out.into_iter()
            .map(|t| WriteBatch {
                tables: Arc::new(t),
                ..WriteBatch::default()
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        match &self.select {
            Some(s) => s.len(),
            None => self.tables.series.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn sample_count(&self) -> usize {
        match &self.select {
            Some(_) => self.selected_samples,
            None => self.tables.samples.len(),
        }
    }

    /// Heap bytes its tables and metadata hold (the tables whole, even when shared with
    /// other views): what a cache of batches charges for one.
    pub fn heap_size(&self) -> usize {
        let t = &*self.tables;
        t.arena.capacity()
            + t.labels.capacity() * std::mem::size_of::<LabelSpan>()
            + t.series.capacity() * std::mem::size_of::<SeriesSpan>()
            + t.samples.capacity() * std::mem::size_of::<Sample>()
            + self.select.as_ref().map_or(0, |s| s.len() * 4)
            + self.metadata.capacity() * std::mem::size_of::<MetricMetadata>()
    }

    pub fn get(&self, i: usize) -> BatchSeries<'_> {
        let t = &*self.tables;
        let s = t.series[self.index(i)];
        BatchSeries {
            labels: LabelsRef {
                arena: &t.arena,
                spans: &t.labels[s.labels.0 as usize..s.labels.1 as usize],
            },
            samples: &t.samples[s.samples.0 as usize..s.samples.1 as usize],
            hash: s.hash,
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = BatchSeries<'_>> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

impl fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|s| (s.labels.to_string(), s.samples.len())))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_batch_matches_owned_labels() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let b = WriteBatch::from_series(&[(l.clone(), vec![Sample::new(1, 2.0)])]);
        let s = b.get(0);
        assert!(s.labels.eq_labels(&l));
        assert_eq!(s.hash, l.hash64());
        assert_eq!(s.labels.to_labels(), l);
        assert_eq!(s.labels.to_string(), r#"up{job="a"}"#);
        assert_eq!(b.sample_count(), 1);
    }

    /// The wire form round-trips, and a split keeps every series whole.
    #[test]
    fn wire_form_and_splits() {
        let a = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs(&[("__name__", "up"), ("job", "b"), ("zone", "é")]);
        let batch = WriteBatch::from_series(&[
            (a.clone(), vec![Sample::new(1, 2.0)]),
            (b.clone(), vec![Sample::new(3, 4.0), Sample::new(5, 6.0)]),
        ]);
        let w = batch.wire_parts();
        let (offsets, ends, samples) = (w.label_offsets_le(), w.series_ends_le(), w.samples_le());
        let back = WriteBatch::from_wire(w.arena().to_vec(), &offsets, &ends, &samples).unwrap();
        assert_eq!(back.len(), 2);
        assert!(back.get(1).labels.eq_labels(&b));
        assert_eq!(back.get(1).hash, b.hash64());
        assert_eq!(
            back.get(1).samples,
            &[Sample::new(3, 4.0), Sample::new(5, 6.0)]
        );
        // Hostile forms are refused, never panic.
        let off = |v: &[u32]| v.iter().flat_map(|o| o.to_le_bytes()).collect::<Vec<u8>>();
        assert!(WriteBatch::from_wire(vec![], &off(&[0, 5, 0, 0]), &off(&[1, 0]), &[]).is_err());
        assert!(
            WriteBatch::from_wire(w.arena().to_vec(), &offsets, &off(&[9, 1]), &samples).is_err()
        );
        assert!(
            WriteBatch::from_wire(w.arena().to_vec(), &offsets[..15], &ends, &samples).is_err()
        );
        // The two labels of the first series swapped.
        let mut twisted = offsets[16..32].to_vec();
        twisted.extend_from_slice(&offsets[..16]);
        twisted.extend_from_slice(&offsets[32..]);
        assert!(
            WriteBatch::from_wire(w.arena().to_vec(), &twisted, &ends, &samples).is_err(),
            "unsorted labels"
        );
        // An offset inside the two bytes of "é".
        let last = w.arena().len() as u32;
        let mut split_char = offsets.clone();
        split_char[offsets.len() - 8..offsets.len() - 4].copy_from_slice(&(last - 1).to_le_bytes());
        assert!(WriteBatch::from_wire(w.arena().to_vec(), &split_char, &ends, &samples).is_err());
        let parts = batch.split(2, |i| 1 - i);
        assert_eq!((parts[0].len(), parts[1].len()), (1, 1));
        assert!(parts[0].get(0).labels.eq_labels(&b));
        assert_eq!(parts[0].get(0).hash, b.hash64());
        assert_eq!(parts[0].sample_count(), 2);
        assert!(parts[1].get(0).labels.eq_labels(&a));
        // Labels alone, of the series kept, in order.
        let labels = batch.labels_of(|i| i == 1);
        assert_eq!((labels.len(), labels.sample_count()), (1, 0));
        assert!(labels.get(0).labels.eq_labels(&b));
        assert_eq!(labels.get(0).hash, b.hash64());
        assert_eq!(labels.tables.arena.len(), "__name__upjobbzoneé".len());
        // A split's parts share the tables; each one's wire form holds only its own
        // series, and rebuilds to the same batch.
        assert!(Arc::ptr_eq(&parts[0].tables, &batch.tables));
        // A batch rebuilt from its wire form.
        let rebuilt = |part: &WriteBatch| {
            let w = part.wire_parts();
            let back = WriteBatch::from_wire(
                w.arena().to_vec(),
                &w.label_offsets_le(),
                &w.series_ends_le(),
                &w.samples_le(),
            );
            (back.unwrap(), w.arena().to_vec())
        };
        for (part, l, samples) in [(&parts[0], &b, 2), (&parts[1], &a, 1)] {
            let (back, arena) = rebuilt(part);
            assert!(arena.len() < batch.tables.arena.len());
            assert_eq!((back.len(), back.sample_count()), (1, samples));
            assert!(back.get(0).labels.eq_labels(l));
            let owned = part.clone().into_wire();
            assert_eq!(owned.arena, arena);
        }
        // Labels lying among bytes that are not UTF-8 (a request's framing: the length
        // of a label longer than 127 bytes) are copied label by label, so a part's wire
        // form still rebuilds.
        let long = "v".repeat(200);
        let mut arena = b"\x0a__name__\x12up\x0a".to_vec();
        arena.extend_from_slice(&[0xc8, 0x01]); // varint 200: not UTF-8
        arena.extend_from_slice(b"job");
        arena.extend_from_slice(long.as_bytes());
        let mut framed = WriteBatch::with_arena(arena);
        framed.push_arena_series(
            &[
                ArenaLabel {
                    name: (1, 9),
                    value: (10, 12),
                },
                ArenaLabel {
                    name: (15, 18),
                    value: (18, 218),
                },
            ],
            &[Sample::new(1, 1.0)],
        );
        let want = Labels::from_pairs(&[("__name__", "up"), ("job", &long)]);
        assert!(framed.get(0).labels.eq_labels(&want));
        for part in [framed.split(1, |_| 0).remove(0), framed.labels_of(|_| true)] {
            assert!(rebuilt(&part).0.get(0).labels.eq_labels(&want));
        }
        // A part of a part.
        let again = parts[0].split(2, |_| 1);
        assert_eq!((again[0].len(), again[1].len()), (0, 1));
        assert!(again[1].get(0).labels.eq_labels(&b));
        assert_eq!(again[1].sample_count(), 2);
        assert!(batch.labels_of(|_| false).is_empty());
    }
}
