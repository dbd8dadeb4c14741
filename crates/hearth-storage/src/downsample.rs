//! Downsampling, as Thanos does it: a block at 5 m (or 1 h) resolution holds, per series
//! and window, the count, sum, min and max of the samples and a counter value, so a
//! query over months reads one point per window instead of twenty (or 240).
//!
//! Layout: a downsampled block is an ordinary block (same files, `meta.json` resolution
//! set) whose rows are the aggregates, each a series with the extra label
//! `__aggr__` = count, sum, min, max, counter or counter_resets. The store strips that
//! label when it reads them, so it never reaches a user.
//!
//! Points are stamped with the time of the last sample of their window. The counter is
//! made monotonic within the block: each value is the raw value plus the resets seen
//! so far in the block (`counter`, whose first point is the block's first raw sample),
//! and `counter_resets` holds the block's total at its last sample, so a reader can
//! recover the raw last value and chain blocks (see `chain_counter`).

use std::collections::BTreeMap;

use hearth_core::{Label, Labels, Sample, Series, SeriesData};

use crate::block::BlockError;

pub const AGGR_LABEL: &str = "__aggr__";
pub const RES_5M: i64 = 5 * 60_000;
pub const RES_1H: i64 = 60 * 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Aggr {
    Count,
    Sum,
    Min,
    Max,
    Counter,
    CounterResets,
}

impl Aggr {
    pub const ALL: [Aggr; 6] = [
        Aggr::Count,
        Aggr::Sum,
        Aggr::Min,
        Aggr::Max,
        Aggr::Counter,
        Aggr::CounterResets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Aggr::Count => "count",
            Aggr::Sum => "sum",
            Aggr::Min => "min",
            Aggr::Max => "max",
            Aggr::Counter => "counter",
            Aggr::CounterResets => "counter_resets",
        }
    }

    pub fn from_name(s: &str) -> Option<Aggr> {
        Aggr::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// What a query reads from downsampled data, by the function around the selector (the
/// select hint), as Thanos chooses: the counter for rate-like functions, min, max,
/// count or sum for their `_over_time`, and the average (sum / count) otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    One(Aggr),
    Average,
}

pub fn read_for(func: Option<&str>) -> Read {
    match func.unwrap_or("") {
        "rate" | "increase" | "irate" | "resets" => Read::One(Aggr::Counter),
        "min_over_time" => Read::One(Aggr::Min),
        "max_over_time" => Read::One(Aggr::Max),
        "count_over_time" => Read::One(Aggr::Count),
        "sum_over_time" => Read::One(Aggr::Sum),
        _ => Read::Average,
    }
}

fn samples_of(data: &SeriesData) -> Result<Vec<Sample>, BlockError> {
    Ok(match data {
        SeriesData::Samples(s) => s.clone(),
        SeriesData::Chunks(cs) => {
            let mut out = Vec::new();
            for c in cs {
                let decoded = hearth_series::chunkenc::decode_all(&c.data)
                    .map_err(|e| BlockError::Format(format!("chunk: {e:?}")))?;
                out.extend(decoded.into_iter().map(|(t, v)| Sample { t, v }));
            }
            out
        }
    })
}

fn with_aggr(labels: &Labels, a: Aggr) -> Labels {
    let mut ls: Vec<Label> = labels.iter().cloned().collect();
    ls.push(Label::new(AGGR_LABEL, a.name()));
    ls.sort_by(|x, y| x.name.cmp(&y.name));
    Labels::from_sorted(ls)
}

/// The aggregate rows of raw series at `resolution`.
pub fn downsample_raw(
    series: &[Series],
    resolution: i64,
) -> Result<Vec<(Labels, SeriesData)>, BlockError> {
    let mut out = Vec::new();
    for s in series {
        let samples: Vec<Sample> = samples_of(&s.data)?
            .into_iter()
            .filter(|x| !hearth_core::is_stale_nan(x.v))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let mut rows: BTreeMap<Aggr, Vec<Sample>> = BTreeMap::new();
        let mut resets = 0.0;
        let mut prev: Option<f64> = None;
        let first = samples[0];
        rows.entry(Aggr::Counter).or_default().push(first);
        let mut i = 0;
        while i < samples.len() {
            let window = samples[i].t.div_euclid(resolution);
            let mut j = i;
            let (mut count, mut sum, mut min, mut max) =
                (0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY);
            while j < samples.len() && samples[j].t.div_euclid(resolution) == window {
                let v = samples[j].v;
                if let Some(p) = prev {
                    if v < p {
                        resets += p;
                    }
                }
                prev = Some(v);
                count += 1.0;
                sum += v;
                min = min.min(v);
                max = max.max(v);
                j += 1;
            }
            let t = samples[j - 1].t;
            let counter = samples[j - 1].v + resets;
            for (a, v) in [
                (Aggr::Count, count),
                (Aggr::Sum, sum),
                (Aggr::Min, min),
                (Aggr::Max, max),
            ] {
                rows.entry(a).or_default().push(Sample { t, v });
            }
            let c = rows.entry(Aggr::Counter).or_default();
            if c.last().is_some_and(|p| p.t == t) {
                c.pop();
            }
            c.push(Sample { t, v: counter });
            i = j;
        }
        let last_t = samples[samples.len() - 1].t;
        rows.insert(
            Aggr::CounterResets,
            vec![Sample {
                t: last_t,
                v: resets,
            }],
        );
        for (a, pts) in rows {
            out.push((with_aggr(&s.labels, a), SeriesData::Samples(pts)));
        }
    }
    Ok(out)
}

/// The aggregate rows of a downsampled block's series (with their `__aggr__` label)
/// at a coarser `resolution`: counts and sums add up, min of mins, max of maxes, the
/// counter's last value per window (and its first point), resets as they are.
pub fn downsample_aggregates(
    series: &[Series],
    resolution: i64,
) -> Result<Vec<(Labels, SeriesData)>, BlockError> {
    let mut out = Vec::new();
    for s in series {
        let Some(a) = s.labels.get(AGGR_LABEL).and_then(Aggr::from_name) else {
            return Err(BlockError::Format(format!(
                "series {} of a downsampled block has no {AGGR_LABEL}",
                s.labels
            )));
        };
        let samples = samples_of(&s.data)?;
        if a == Aggr::CounterResets {
            out.push((s.labels.clone(), SeriesData::Samples(samples)));
            continue;
        }
        let mut pts: Vec<Sample> = Vec::new();
        if a == Aggr::Counter {
            if let Some(f) = samples.first() {
                pts.push(*f);
            }
        }
        let mut i = 0;
        while i < samples.len() {
            let window = samples[i].t.div_euclid(resolution);
            let mut j = i;
            let mut acc: Option<f64> = None;
            while j < samples.len() && samples[j].t.div_euclid(resolution) == window {
                let v = samples[j].v;
                acc = Some(match (a, acc) {
                    (_, None) => v,
                    (Aggr::Count | Aggr::Sum, Some(x)) => x + v,
                    (Aggr::Min, Some(x)) => x.min(v),
                    (Aggr::Max, Some(x)) => x.max(v),
                    (_, Some(_)) => v,
                });
                j += 1;
            }
            let t = samples[j - 1].t;
            if pts.last().is_some_and(|p| p.t == t) {
                pts.pop();
            }
            pts.push(Sample {
                t,
                v: acc.unwrap_or(0.0),
            });
            i = j;
        }
        out.push((s.labels.clone(), SeriesData::Samples(pts)));
    }
    Ok(out)
}

/// The labels without `__aggr__`, and which aggregate the row holds.
pub fn split_aggr(labels: &Labels) -> Option<(Labels, Aggr)> {
    let a = labels.get(AGGR_LABEL).and_then(Aggr::from_name)?;
    let rest: Vec<Label> = labels
        .iter()
        .filter(|l| &*l.name != AGGR_LABEL)
        .cloned()
        .collect();
    Some((Labels::from_sorted(rest), a))
}

/// One downsampled block's counter for a series: its monotonic points and the resets
/// total, from which the raw first and last values follow.
pub struct CounterSegment {
    pub points: Vec<Sample>,
    pub resets: f64,
}

/// Chains the counter segments of consecutive downsampled blocks (oldest first) into one
/// series whose increments are the raw counter's increments, resets accounted for as
/// PromQL counts them, and which ends at the raw value of its last sample, so raw data
/// that follows (a newer raw block, the head) continues it without a false reset.
pub fn chain_counter(segments: Vec<CounterSegment>) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    let mut offset = 0.0;
    let mut prev_raw_last: Option<f64> = None;
    let mut raw_last = 0.0;
    for seg in segments {
        let (Some(first), Some(last)) = (seg.points.first(), seg.points.last()) else {
            continue;
        };
        // The first point is raw (no reset before it in the block).
        if let Some(p) = prev_raw_last {
            if first.v < p {
                offset += p;
            }
        }
        raw_last = last.v - seg.resets;
        for s in &seg.points {
            if out.last().is_some_and(|o| o.t >= s.t) {
                continue;
            }
            out.push(Sample {
                t: s.t,
                v: s.v + offset,
            });
        }
        offset += seg.resets;
        prev_raw_last = Some(raw_last);
    }
    // Anchor at the end: the last value is the raw one.
    if let Some(end) = out.last().map(|s| s.v) {
        let shift = end - raw_last;
        for s in &mut out {
            s.v -= shift;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, pts: &[(i64, f64)]) -> Series {
        Series {
            labels: Labels::from_pairs(&[("__name__", name)]),
            data: SeriesData::Samples(pts.iter().map(|&(t, v)| Sample { t, v }).collect()),
        }
    }

    fn row(rows: &[(Labels, SeriesData)], a: Aggr) -> Vec<(i64, f64)> {
        let (_, d) = rows
            .iter()
            .find(|(l, _)| l.get(AGGR_LABEL) == Some(a.name()))
            .unwrap();
        match d {
            SeriesData::Samples(s) => s.iter().map(|s| (s.t, s.v)).collect(),
            SeriesData::Chunks(_) => unreachable!(),
        }
    }

    #[test]
    fn windows_aggregate_and_the_counter_survives_resets() {
        let m = 60_000;
        // Two 5 m windows; the counter resets inside the second.
        let s = raw(
            "c",
            &[
                (0, 10.0),
                (m, 12.0),
                (4 * m, 20.0),
                (5 * m, 25.0),
                (6 * m, 3.0),
                (9 * m, 8.0),
            ],
        );
        let rows = downsample_raw(&[s], RES_5M).unwrap();
        assert_eq!(rows.len(), 6);
        assert_eq!(row(&rows, Aggr::Count), vec![(4 * m, 3.0), (9 * m, 3.0)]);
        assert_eq!(row(&rows, Aggr::Sum), vec![(4 * m, 42.0), (9 * m, 36.0)]);
        assert_eq!(row(&rows, Aggr::Min), vec![(4 * m, 10.0), (9 * m, 3.0)]);
        assert_eq!(row(&rows, Aggr::Max), vec![(4 * m, 20.0), (9 * m, 25.0)]);
        // First raw point, then window ends: 8 + 25 (the reset) = 33.
        assert_eq!(
            row(&rows, Aggr::Counter),
            vec![(0, 10.0), (4 * m, 20.0), (9 * m, 33.0)]
        );
        assert_eq!(row(&rows, Aggr::CounterResets), vec![(9 * m, 25.0)]);
        // The label is added and stripped.
        let (l, a) = split_aggr(&rows[0].0).unwrap();
        assert_eq!(l, Labels::from_pairs(&[("__name__", "c")]));
        assert_eq!(a, Aggr::Count);
        // 1 h from 5 m: sums add, the counter keeps its first and last points.
        let five: Vec<Series> = rows
            .into_iter()
            .map(|(labels, data)| Series { labels, data })
            .collect();
        let hour = downsample_aggregates(&five, RES_1H).unwrap();
        assert_eq!(row(&hour, Aggr::Count), vec![(9 * m, 6.0)]);
        assert_eq!(row(&hour, Aggr::Min), vec![(9 * m, 3.0)]);
        assert_eq!(row(&hour, Aggr::Counter), vec![(0, 10.0), (9 * m, 33.0)]);
    }

    #[test]
    fn chained_counters_increase_as_the_raw_counter_did_and_end_raw() {
        // Block A: 10 -> 30 (resets 0). Block B starts at 5: a reset at the boundary,
        // then 5 -> 9, reset, 0 -> 4 (resets 9).
        let a = CounterSegment {
            points: vec![Sample { t: 0, v: 10.0 }, Sample { t: 10, v: 30.0 }],
            resets: 0.0,
        };
        let b = CounterSegment {
            points: vec![
                Sample { t: 20, v: 5.0 },
                Sample { t: 30, v: 9.0 },
                Sample { t: 40, v: 13.0 },
            ],
            resets: 9.0,
        };
        let out = chain_counter(vec![a, b]);
        let v: Vec<f64> = out.iter().map(|s| s.v).collect();
        // Increments: 20, then the reset counts the new value 5, then 4, then 4.
        let inc: Vec<f64> = v.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(inc, vec![20.0, 5.0, 4.0, 4.0]);
        assert_eq!(*v.last().unwrap(), 4.0, "ends at the raw last value");
    }
}
