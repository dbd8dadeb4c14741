//! Merging series from several sources (the head and blocks, or overlapping blocks),
//! as Prometheus' storage merge does: series with the same labels become one; their
//! chunks are kept as they are when they do not overlap in time, and otherwise decoded
//! and merged sample by sample, a timestamp present in several sources taken once.

use std::collections::BTreeMap;

use futures::StreamExt;
use hearth_core::{EncodedChunk, Labels, Sample, Series, SeriesData, SeriesStream};

use crate::chunkenc::XorIterator;

/// Appends every sample of a series' data to `out`, in the data's order (chunks are
/// decoded; an undecodable chunk contributes nothing).
pub fn samples_of(data: SeriesData, out: &mut Vec<Sample>) {
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

/// [`merge_series`] over sets already in memory, as the seam's stream.
pub fn merged_stream(sets: Vec<Vec<Series>>) -> SeriesStream {
    futures::stream::iter(merge_series(sets).into_iter().map(Ok)).boxed()
}

/// One source of a streaming merge: its series, sorted by labels, and its name for
/// errors and logs.
pub struct MergeSource {
    pub name: String,
    pub stream: SeriesStream,
}

/// Merges sorted series streams as they stream (a k-way merge): series with the same
/// labels become one, duplicate samples taken once; the output is sorted by labels.
/// Only one series of each source is held at a time, so no source's whole answer is
/// ever in memory. The first error of any source ends the merge with that error.
pub fn merge_streams(sources: Vec<SeriesStream>) -> SeriesStream {
    merge_tolerant(
        sources
            .into_iter()
            .enumerate()
            .map(|(i, stream)| MergeSource {
                name: format!("source {i}"),
                stream,
            })
            .collect(),
        0,
    )
}

struct MergeState {
    names: Vec<String>,
    streams: Vec<Option<SeriesStream>>,
    heads: Vec<Option<Series>>,
    /// Failures still tolerated.
    tolerate: usize,
}

/// [`merge_streams`] where up to `tolerate` sources may fail (at any point: their
/// series already merged stay, the rest of their answer comes from the other
/// replicas); one failure more ends the merge with an error naming the source.
pub fn merge_tolerant(sources: Vec<MergeSource>, tolerate: usize) -> SeriesStream {
    if sources.len() == 1 && tolerate == 0 {
        return sources.into_iter().next().expect("one source").stream;
    }
    let n = sources.len();
    let mut names = Vec::with_capacity(n);
    let mut streams = Vec::with_capacity(n);
    for s in sources {
        names.push(s.name);
        streams.push(Some(s.stream));
    }
    let state = MergeState {
        names,
        streams,
        heads: (0..n).map(|_| None).collect(),
        tolerate,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut st = state?;
        // Every live source shows its next series.
        for i in 0..st.streams.len() {
            if st.heads[i].is_some() {
                continue;
            }
            let Some(stream) = st.streams[i].as_mut() else {
                continue;
            };
            match stream.next().await {
                Some(Ok(s)) => st.heads[i] = Some(s),
                Some(Err(e)) if st.tolerate > 0 => {
                    st.tolerate -= 1;
                    tracing::warn!(source = %st.names[i], error = %e, "a source failed; answering from the others");
                    st.streams[i] = None;
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None => st.streams[i] = None,
            }
        }
        let min = st
            .heads
            .iter()
            .flatten()
            .map(|s| &s.labels)
            .min()?
            .clone();
        let mut parts = Vec::new();
        for h in st.heads.iter_mut() {
            if h.as_ref().is_some_and(|s| s.labels == min) {
                parts.push(h.take().expect("checked").data);
            }
        }
        let merged = Series {
            labels: min,
            data: merge_data(parts),
        };
        Some((Ok(merged), Some(st)))
    })
    .boxed()
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

    use futures::TryStreamExt;
    use hearth_core::StorageError;

    fn stream(items: Vec<Result<Series, StorageError>>) -> SeriesStream {
        futures::stream::iter(items).boxed()
    }

    fn named(name: &str, ts: &[i64]) -> Series {
        Series {
            labels: Labels::from_pairs(&[("__name__", name)]),
            data: SeriesData::Chunks(vec![chunk(ts)]),
        }
    }

    /// Sorted streams merge in label order, the same series from several sources
    /// becoming one; the result equals the in-memory merge.
    #[tokio::test]
    async fn streams_merge_like_sets() {
        let a = vec![named("a", &[1, 2]), named("c", &[1]), named("e", &[5])];
        let b = vec![named("b", &[1]), named("c", &[2, 3]), named("e", &[5])];
        let got: Vec<Series> = merge_streams(vec![
            stream(a.iter().cloned().map(Ok).collect()),
            stream(b.iter().cloned().map(Ok).collect()),
            stream(vec![]),
        ])
        .try_collect()
        .await
        .unwrap();
        let want = merge_series(vec![a, b]);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.labels, w.labels);
            assert_eq!(format!("{:?}", g.data), format!("{:?}", w.data));
        }
        assert_eq!(
            got.iter().map(|s| s.labels.to_string()).collect::<Vec<_>>(),
            ["a", "b", "c", "e"]
        );
    }

    /// A failing source ends the merge, unless it is tolerated: then the others answer.
    #[tokio::test]
    async fn failures_are_tolerated_up_to_the_budget() {
        let failing = || {
            stream(vec![
                Ok(named("a", &[1])),
                Err(StorageError::Unavailable("gone".into())),
            ])
        };
        let good = || stream(vec![Ok(named("a", &[1])), Ok(named("b", &[2]))]);
        let strict: Result<Vec<Series>, _> =
            merge_streams(vec![failing(), good()]).try_collect().await;
        assert!(strict.is_err());
        let sources = |f: SeriesStream| {
            vec![
                MergeSource {
                    name: "gw-1".into(),
                    stream: f,
                },
                MergeSource {
                    name: "gw-2".into(),
                    stream: good(),
                },
            ]
        };
        let tolerant: Vec<Series> = merge_tolerant(sources(failing()), 1)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(tolerant.len(), 2);
    }

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
