//! Applying deletions to series, as Prometheus' tombstones do at read time: samples of a
//! matching series inside a deleted interval are dropped. A series untouched by every
//! deletion passes through with its chunks as they are; one that is touched is decoded
//! and comes back as samples (or not at all when nothing is left).

use hearth_core::{Deletion, Sample, Series, SeriesData};

use crate::chunkenc::XorIterator;

/// The intervals deleted from this series.
fn intervals(series: &Series, deletions: &[Deletion]) -> Vec<(i64, i64)> {
    deletions
        .iter()
        .filter_map(|d| d.interval(&series.labels))
        .collect()
}

fn covered(hits: &[(i64, i64)], t: i64) -> bool {
    hits.iter().any(|&(a, b)| a <= t && t <= b)
}

fn overlapped(hits: &[(i64, i64)], min_t: i64, max_t: i64) -> bool {
    hits.iter().any(|&(a, b)| a <= max_t && min_t <= b)
}

/// The series without its deleted samples; `None` when none is left.
pub fn apply(series: Series, deletions: &[Deletion]) -> Option<Series> {
    let hits = intervals(&series, deletions);
    if hits.is_empty() {
        return Some(series);
    }
    let touched = match &series.data {
        SeriesData::Chunks(cs) => cs.iter().any(|c| overlapped(&hits, c.min_t, c.max_t)),
        SeriesData::Samples(ss) => ss.iter().any(|s| covered(&hits, s.t)),
    };
    if !touched {
        return Some(series);
    }
    let keep = |t: i64| !covered(&hits, t);
    let samples: Vec<Sample> = match series.data {
        SeriesData::Samples(ss) => ss.into_iter().filter(|s| keep(s.t)).collect(),
        SeriesData::Chunks(cs) => {
            let mut out = Vec::new();
            for c in cs {
                if let Ok(it) = XorIterator::new(&c.data) {
                    out.extend(it.filter(|(t, _)| keep(*t)).map(|(t, v)| Sample { t, v }));
                }
            }
            out
        }
    };
    (!samples.is_empty()).then_some(Series {
        labels: series.labels,
        data: SeriesData::Samples(samples),
    })
}

/// Whether any sample of the series is deleted.
pub fn deletes_any(series: &Series, deletions: &[Deletion]) -> bool {
    let hits = intervals(series, deletions);
    if hits.is_empty() {
        return false;
    }
    match &series.data {
        SeriesData::Samples(ss) => ss.iter().any(|s| covered(&hits, s.t)),
        SeriesData::Chunks(cs) => cs.iter().any(|c| {
            overlapped(&hits, c.min_t, c.max_t)
                && XorIterator::new(&c.data).is_ok_and(|mut it| it.any(|(t, _)| covered(&hits, t)))
        }),
    }
}

/// [`apply`] over a set of series.
pub fn apply_all(series: Vec<Series>, deletions: &[Deletion]) -> Vec<Series> {
    if deletions.is_empty() {
        return series;
    }
    series
        .into_iter()
        .filter_map(|s| apply(s, deletions))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::XorAppender;
    use hearth_core::{ChunkEncoding, EncodedChunk, Labels, MatchOp, Matcher};
    use std::sync::Arc;

    fn series(job: &str, ts: &[i64]) -> Series {
        let mut app = XorAppender::new();
        for &t in ts {
            app.append(t, t as f64);
        }
        Series {
            labels: Labels::from_pairs(&[("__name__", "up"), ("job", job)]),
            data: SeriesData::Chunks(vec![EncodedChunk {
                min_t: ts[0],
                max_t: *ts.last().unwrap(),
                encoding: ChunkEncoding::Xor,
                data: Arc::from(app.bytes()),
            }]),
        }
    }

    fn times(s: &Series) -> Vec<i64> {
        match &s.data {
            SeriesData::Samples(v) => v.iter().map(|s| s.t).collect(),
            SeriesData::Chunks(_) => panic!("expected samples"),
        }
    }

    #[test]
    fn deletes_only_matching_series_inside_the_interval() {
        let d = vec![Deletion {
            matchers: vec![Matcher::new(MatchOp::Equal, "job", "a").unwrap()],
            start: 20,
            end: 40,
            series_ends: None,
        }];
        let a = apply(series("a", &[10, 20, 30, 40, 50]), &d).unwrap();
        assert_eq!(times(&a), vec![10, 50]);
        // Another series, or one whose chunk does not reach the interval, is untouched
        // (its chunks are kept as they are).
        let b = apply(series("b", &[10, 20, 30]), &d).unwrap();
        assert!(matches!(b.data, SeriesData::Chunks(_)));
        let c = apply(series("a", &[41, 60]), &d).unwrap();
        assert!(matches!(c.data, SeriesData::Chunks(_)));
        // A chunk spanning the interval without a sample inside it loses nothing.
        assert!(!deletes_any(&series("a", &[10, 50]), &d));
        assert!(deletes_any(&series("a", &[10, 30, 50]), &d));
        // All gone: no series.
        assert!(apply(series("a", &[20, 25, 40]), &d).is_none());
        // An empty-matching matcher selects series without the label.
        let none = vec![Deletion {
            matchers: vec![Matcher::new(MatchOp::Equal, "zone", "").unwrap()],
            start: i64::MIN,
            end: i64::MAX,
            series_ends: None,
        }];
        assert!(apply_all(vec![series("a", &[1]), series("b", &[2])], &none).is_empty());
    }

    /// A request deletes what each series held when it was made: a series' own end
    /// bounds its interval, and a series it did not list loses nothing.
    #[test]
    fn clamped_requests_spare_samples_written_later() {
        let a = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let d = vec![Deletion {
            matchers: vec![Matcher::new(MatchOp::Equal, "__name__", "up").unwrap()],
            start: 0,
            end: i64::MAX,
            series_ends: Some(Arc::new(std::collections::HashMap::from([(
                a.hash64(),
                30,
            )]))),
        }];
        assert_eq!(
            times(&apply(series("a", &[10, 30, 50]), &d).unwrap()),
            vec![50]
        );
        // job="b" did not exist (or held nothing) when the request was made.
        let b = apply(series("b", &[10, 30]), &d).unwrap();
        assert!(matches!(b.data, SeriesData::Chunks(_)));
    }
}
