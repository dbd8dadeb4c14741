//! Merging series from several sources (the head and blocks, or overlapping blocks),
//! as Prometheus' storage merge does: series with the same labels become one; their
//! chunks are kept as they are when they do not overlap in time, and otherwise decoded
//! and merged sample by sample, a timestamp present in several sources taken once.

use std::collections::BTreeMap;

use futures::StreamExt;
use hearth_core::{EncodedChunk, Labels, Sample, Series, SeriesData, SeriesStream};

use crate::chunkenc::XorIterator;

fn samples_of(data: SeriesData, out: &mut Vec<Sample>) {
    match data {
        SeriesData::Samples(s) => out.extend(s),
        SeriesData::Chunks(chunks) => {
            for c in chunks {
                if let Ok(it) = XorIterator::new(&c.data) {
                    out.extend(it.map(|(t, v)| Sample { t, v }));
                }
            }
        }
    }
}

/// One series from the data of several sources.
pub fn merge_data(parts: Vec<SeriesData>) -> SeriesData {
    if parts.len() == 1 {
        return parts.into_iter().next().expect("one part");
    }
    if parts.iter().all(|p| matches!(p, SeriesData::Chunks(_))) {
        let mut chunks: Vec<EncodedChunk> = parts
            .into_iter()
            .flat_map(|p| match p {
                SeriesData::Chunks(c) => c,
                SeriesData::Samples(_) => unreachable!("checked above"),
            })
            .collect();
        chunks.sort_by_key(|c| (c.min_t, c.max_t));
        if chunks.windows(2).all(|w| w[0].max_t < w[1].min_t) {
            return SeriesData::Chunks(chunks);
        }
        let mut samples = Vec::new();
        samples_of(SeriesData::Chunks(chunks), &mut samples);
        return dedup(samples);
    }
    let mut samples = Vec::new();
    for p in parts {
        samples_of(p, &mut samples);
    }
    dedup(samples)
}

/// Sorts by time and keeps the first sample of each timestamp (the sort is stable, so
/// the first source given wins).
fn dedup(mut samples: Vec<Sample>) -> SeriesData {
    samples.sort_by_key(|s| s.t);
    samples.dedup_by_key(|s| s.t);
    SeriesData::Samples(samples)
}

/// [`merge_series`] as the seam's stream: what every merging `Queryable` answers.
pub fn merged_stream(sets: Vec<Vec<Series>>) -> SeriesStream {
    futures::stream::iter(merge_series(sets).into_iter().map(Ok)).boxed()
}

/// Merges series sets into one, sorted by labels.
pub fn merge_series(sets: Vec<Vec<Series>>) -> Vec<Series> {
    if sets.len() == 1 {
        return sets.into_iter().next().expect("one set");
    }
    let mut by_labels: BTreeMap<Labels, Vec<SeriesData>> = BTreeMap::new();
    for s in sets.into_iter().flatten() {
        by_labels.entry(s.labels).or_default().push(s.data);
    }
    by_labels
        .into_iter()
        .map(|(labels, parts)| Series {
            labels,
            data: merge_data(parts),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hearth_core::ChunkEncoding;

    use super::*;
    use crate::chunkenc::XorAppender;

    fn chunk(ts: &[i64]) -> EncodedChunk {
        let mut app = XorAppender::new();
        for &t in ts {
            app.append(t, t as f64);
        }
        EncodedChunk {
            min_t: ts[0],
            max_t: *ts.last().unwrap(),
            encoding: ChunkEncoding::Xor,
            data: Arc::from(app.bytes()),
        }
    }

    #[test]
    fn disjoint_chunks_stay_chunks_and_overlaps_merge_once() {
        let l = Labels::from_pairs(&[("__name__", "a")]);
        let sets = vec![
            vec![Series {
                labels: l.clone(),
                data: SeriesData::Chunks(vec![chunk(&[10, 20])]),
            }],
            vec![Series {
                labels: l.clone(),
                data: SeriesData::Chunks(vec![chunk(&[1, 5])]),
            }],
        ];
        let merged = merge_series(sets);
        assert_eq!(merged.len(), 1);
        match &merged[0].data {
            SeriesData::Chunks(c) => {
                assert_eq!(c.iter().map(|c| c.min_t).collect::<Vec<_>>(), [1, 10])
            }
            other => panic!("{other:?}"),
        }
        let sets = vec![
            vec![Series {
                labels: l.clone(),
                data: SeriesData::Chunks(vec![chunk(&[1, 5, 10])]),
            }],
            vec![Series {
                labels: l,
                data: SeriesData::Chunks(vec![chunk(&[5, 10, 15])]),
            }],
        ];
        match &merge_series(sets)[0].data {
            SeriesData::Samples(s) => {
                assert_eq!(s.iter().map(|s| s.t).collect::<Vec<_>>(), [1, 5, 10, 15])
            }
            other => panic!("{other:?}"),
        }
    }
}
