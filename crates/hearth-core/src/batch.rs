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
}
