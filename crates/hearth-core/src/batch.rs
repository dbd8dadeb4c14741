//! A write batch in one flat allocation: label bytes in an arena (often the decompressed
//! request body itself, so decoding copies no string), label and series tables of
//! offsets, and the samples in one vector. A distributor builds it once; the ingester
//! hashes, logs and applies it without per-label allocations.

use std::fmt;

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

/// A validated write: series with sorted, unique labels and their samples.
#[derive(Clone, Default)]
pub struct WriteBatch {
    /// Bytes holding every label name and value (valid UTF-8 where referenced).
    arena: Vec<u8>,
    labels: Vec<LabelSpan>,
    series: Vec<SeriesSpan>,
    samples: Vec<Sample>,
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

/// A batch's tables, borrowed, for its wire form (see [`WriteBatch::wire_parts`]).
pub struct WireParts<'a> {
    pub arena: &'a [u8],
    labels: &'a [LabelSpan],
    series: &'a [SeriesSpan],
    pub samples: &'a [Sample],
}

impl WireParts<'_> {
    /// Every label's four offsets, as little-endian `u32`s.
    pub fn label_offsets_le(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.labels.len() * 16);
        for l in self.labels {
            for o in [l.n0, l.n1, l.v0, l.v1] {
                out.extend_from_slice(&o.to_le_bytes());
            }
        }
        out
    }

    /// Each series' labels end and samples end, as little-endian `u32`s.
    pub fn series_ends_le(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.series.len() * 8);
        for s in self.series {
            out.extend_from_slice(&s.labels.1.to_le_bytes());
            out.extend_from_slice(&s.samples.1.to_le_bytes());
        }
        out
    }

    /// Each sample's timestamp and value bits, as little-endian `i64` and `u64`.
    pub fn samples_le(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.samples.len() * 16);
        for s in self.samples {
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
            arena,
            ..WriteBatch::default()
        }
    }

    pub fn arena(&self) -> &[u8] {
        &self.arena
    }

    /// Adds a series whose labels are ranges of the arena. The caller guarantees the
    /// ranges are in bounds, valid UTF-8, sorted by name and unique.
    pub fn push_arena_series(&mut self, labels: &[ArenaLabel], samples: &[Sample]) {
        let l0 = self.labels.len() as u32;
        for l in labels {
            self.labels.push(LabelSpan {
                n0: l.name.0,
                n1: l.name.1,
                v0: l.value.0,
                v1: l.value.1,
            });
        }
        let l1 = self.labels.len() as u32;
        let s0 = self.samples.len() as u32;
        self.samples.extend_from_slice(samples);
        let s1 = self.samples.len() as u32;
        let arena = &self.arena;
        let spans = &self.labels[l0 as usize..l1 as usize];
        let hash = hash_label_bytes(spans.iter().map(|s| {
            (
                &arena[s.n0 as usize..s.n1 as usize],
                &arena[s.v0 as usize..s.v1 as usize],
            )
        }));
        self.series.push(SeriesSpan {
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
        let mut out = WriteBatch {
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
            metadata: Vec::new(),
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
        out
    }

    /// Adds a series with owned labels (copied into the arena).
    pub fn push(&mut self, labels: &Labels, samples: &[Sample]) {
        let mut spans = Vec::with_capacity(labels.len());
        for l in labels {
            let n0 = self.arena.len() as u32;
            self.arena.extend_from_slice(l.name.as_bytes());
            let n1 = self.arena.len() as u32;
            self.arena.extend_from_slice(l.value.as_bytes());
            let v1 = self.arena.len() as u32;
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

    /// Bytes of its wire form (labels, their offsets, series ends, samples): what
    /// batching writes together bounds.
    pub fn wire_size(&self) -> usize {
        self.arena.len() + self.labels.len() * 16 + self.series.len() * 8 + self.samples.len() * 16
    }

    /// The batch taken apart for its wire form, the arena moved out rather than
    /// copied, the tables as [`WriteBatch::from_wire`] reads them.
    pub fn into_wire(self) -> WireForm {
        let w = self.wire_parts();
        let (label_offsets, series_ends, samples) =
            (w.label_offsets_le(), w.series_ends_le(), w.samples_le());
        WireForm {
            arena: self.arena,
            label_offsets,
            series_ends,
            samples,
            metadata: self.metadata,
        }
    }

    /// The batch's tables as a wire form carries them: the arena, each label's
    /// `[name start, name end, value start, value end)` offsets, each series' label and
    /// sample end, and the samples. [`WriteBatch::from_wire`] is the inverse.
    pub fn wire_parts(&self) -> WireParts<'_> {
        WireParts {
            arena: &self.arena,
            labels: &self.labels,
            series: &self.series,
            samples: &self.samples,
        }
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
            arena,
            labels,
            series,
            samples,
            metadata: Vec::new(),
        })
    }

    /// The batch split into `parts` batches: series `i` goes to part `part_of(i)`
    /// (labels copied into that part's arena, hashes kept). Metadata is not carried
    /// over. Each part is sized first, so nothing is copied twice by growing.
    pub fn split(&self, parts: usize, part_of: impl Fn(usize) -> usize) -> Vec<WriteBatch> {
        let of: Vec<usize> = (0..self.series.len()).map(part_of).collect();
        self.copy_into(parts, &of, true)
    }

    /// The labels (and no samples) of the series `keep` selects, in order, as a batch of
    /// their own (hashes kept).
    pub fn labels_of(&self, keep: impl Fn(usize) -> bool) -> WriteBatch {
        let of: Vec<usize> = (0..self.series.len())
            .map(|i| if keep(i) { 0 } else { SKIP })
            .collect();
        self.copy_into(1, &of, false).pop().unwrap_or_default()
    }

    /// How a series' labels are copied: the one arena range they lie in when it holds
    /// little else (a decoded request's series: its labels and their framing), else
    /// label by label (labels spread over the arena, as symbols of a table are); and the
    /// bytes the copy takes.
    fn label_bytes(labels: &[LabelSpan]) -> (Option<std::ops::Range<usize>>, usize) {
        let (mut lo, mut hi, mut own) = (u32::MAX, 0u32, 0usize);
        for l in labels {
            lo = lo.min(l.n0).min(l.v0);
            hi = hi.max(l.n1).max(l.v1);
            own += (l.n1 - l.n0 + l.v1 - l.v0) as usize;
        }
        let range = (lo as usize)..(hi as usize);
        if lo <= hi && range.len() <= 2 * own + 64 {
            let n = range.len();
            (Some(range), n)
        } else {
            (None, own)
        }
    }

    /// Copies series `i` into part `of[i]` (none for `SKIP`), with its samples or not.
    fn copy_into(&self, parts: usize, of: &[usize], samples: bool) -> Vec<WriteBatch> {
        #[derive(Clone, Copy, Default)]
        struct Size {
            arena: usize,
            labels: usize,
            series: usize,
            samples: usize,
        }
        let mut sizes = vec![Size::default(); parts];
        for (span, &p) in self.series.iter().zip(of) {
            let Some(z) = sizes.get_mut(p) else {
                continue;
            };
            let labels = &self.labels[span.labels.0 as usize..span.labels.1 as usize];
            z.arena += Self::label_bytes(labels).1;
            z.labels += labels.len();
            z.series += 1;
            z.samples += (span.samples.1 - span.samples.0) as usize;
        }
        let mut out: Vec<WriteBatch> = sizes
            .iter()
            .map(|z| WriteBatch {
                arena: Vec::with_capacity(z.arena),
                labels: Vec::with_capacity(z.labels),
                series: Vec::with_capacity(z.series),
                samples: Vec::with_capacity(if samples { z.samples } else { 0 }),
                metadata: Vec::new(),
            })
            .collect();
        for (span, &p) in self.series.iter().zip(of) {
            let Some(o) = out.get_mut(p) else {
                continue;
            };
            let l0 = o.labels.len() as u32;
            let labels = &self.labels[span.labels.0 as usize..span.labels.1 as usize];
            match Self::label_bytes(labels) {
                (Some(range), _) => {
                    // One copy of the bytes the labels lie in, their offsets moved.
                    let to = o.arena.len() as u32;
                    o.arena.extend_from_slice(&self.arena[range.clone()]);
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
                            .extend_from_slice(&self.arena[l.n0 as usize..l.n1 as usize]);
                        let n1 = o.arena.len() as u32;
                        o.arena
                            .extend_from_slice(&self.arena[l.v0 as usize..l.v1 as usize]);
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
                    &self.samples[span.samples.0 as usize..span.samples.1 as usize],
                );
            }
            o.series.push(SeriesSpan {
                labels: (l0, o.labels.len() as u32),
                samples: (s0, o.samples.len() as u32),
                hash: span.hash,
            });
        }
        out
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    pub fn sample_count(&self) -> usize {
        self.samples.len()
    }

    pub fn get(&self, i: usize) -> BatchSeries<'_> {
        let s = self.series[i];
        BatchSeries {
            labels: LabelsRef {
                arena: &self.arena,
                spans: &self.labels[s.labels.0 as usize..s.labels.1 as usize],
            },
            samples: &self.samples[s.samples.0 as usize..s.samples.1 as usize],
            hash: s.hash,
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = BatchSeries<'_>> + '_ {
        (0..self.series.len()).map(move |i| self.get(i))
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
        let back = WriteBatch::from_wire(w.arena.to_vec(), &offsets, &ends, &samples).unwrap();
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
            WriteBatch::from_wire(w.arena.to_vec(), &offsets, &off(&[9, 1]), &samples).is_err()
        );
        assert!(WriteBatch::from_wire(w.arena.to_vec(), &offsets[..15], &ends, &samples).is_err());
        // The two labels of the first series swapped.
        let mut twisted = offsets[16..32].to_vec();
        twisted.extend_from_slice(&offsets[..16]);
        twisted.extend_from_slice(&offsets[32..]);
        assert!(
            WriteBatch::from_wire(w.arena.to_vec(), &twisted, &ends, &samples).is_err(),
            "unsorted labels"
        );
        // An offset inside the two bytes of "é".
        let last = w.arena.len() as u32;
        let mut split_char = offsets.clone();
        split_char[offsets.len() - 8..offsets.len() - 4].copy_from_slice(&(last - 1).to_le_bytes());
        assert!(WriteBatch::from_wire(w.arena.to_vec(), &split_char, &ends, &samples).is_err());
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
        assert_eq!(labels.arena.len(), "__name__upjobbzoneé".len());
        assert!(batch.labels_of(|_| false).is_empty());
    }
}
