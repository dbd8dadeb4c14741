//! Aggregation operators and classic-histogram quantiles.

use std::collections::HashMap;

use hearth_core::{Labels, LabelsBuilder, METRIC_NAME};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::engine::{eval, Annotations, Ctx, QueryError};
use crate::functions::{kahan_inc, quantile};
use crate::value::{StepSeries, Value};

fn group_labels(l: &Labels, m: &Option<LabelModifier>) -> Labels {
    match m {
        None => Labels::empty(),
        Some(LabelModifier::Include(ls)) => l.filtered(&ls.labels, true),
        Some(LabelModifier::Exclude(ls)) => {
            let mut names = ls.labels.clone();
            names.push(METRIC_NAME.to_string());
            l.filtered(&names, false)
        }
    }
}

pub(crate) fn eval_aggregate(ctx: &mut Ctx<'_>, a: &AggregateExpr) -> Result<Value, QueryError> {
    let op = a.op.to_string();
    let n = ctx.steps();
    let param = match &a.param {
        Some(p) => Some(eval(ctx, p)?),
        None => None,
    };
    let input = match eval(ctx, &a.expr)? {
        Value::Vector(v) => v,
        _ => {
            return Err(QueryError::BadData(format!(
                "expected instant vector in aggregation {op}"
            )))
        }
    };
    let scalar_param = |p: &Option<Value>| -> Result<Vec<f64>, QueryError> {
        match p {
            Some(Value::Scalar(s)) => Ok(s.clone()),
            _ => Err(QueryError::BadData(format!(
                "expected scalar parameter in aggregation {op}"
            ))),
        }
    };
    // Group series once: labels do not change across steps.
    let mut groups: Vec<(Labels, Vec<usize>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for (i, s) in input.iter().enumerate() {
        let g = group_labels(&s.labels, &a.modifier);
        let gi = *index.entry(g.clone()).or_insert_with(|| {
            groups.push((g, Vec::new()));
            groups.len() - 1
        });
        groups[gi].1.push(i);
    }
    match op.as_str() {
        "topk" | "bottomk" | "limitk" => {
            let k = scalar_param(&param)?;
            let mut keep: Vec<Vec<bool>> = vec![vec![false; n]; input.len()];
            for (_, members) in &groups {
                for step in 0..n {
                    if k[step].is_nan() {
                        return Err(QueryError::Execution(format!(
                            "Parameter value is NaN for {op}"
                        )));
                    }
                    let kk = k[step].max(0.0).min(members.len() as f64) as usize;
                    if kk == 0 {
                        continue;
                    }
                    let mut present: Vec<(usize, f64)> = members
                        .iter()
                        .filter_map(|&i| input[i].values[step].map(|v| (i, v)))
                        .collect();
                    if op != "limitk" {
                        let top = op == "topk";
                        present.sort_by(|x, y| {
                            // NaN is always the least preferred.
                            match (x.1.is_nan(), y.1.is_nan()) {
                                (true, false) => std::cmp::Ordering::Greater,
                                (false, true) => std::cmp::Ordering::Less,
                                _ => {
                                    let o =
                                        x.1.partial_cmp(&y.1).unwrap_or(std::cmp::Ordering::Equal);
                                    if top {
                                        o.reverse()
                                    } else {
                                        o
                                    }
                                }
                            }
                        });
                    }
                    for (i, _) in present.into_iter().take(kk) {
                        keep[i][step] = true;
                    }
                }
            }
            let mut out: Vec<(usize, StepSeries)> = input
                .into_iter()
                .zip(keep)
                .enumerate()
                .filter_map(|(i, (s, k))| {
                    let values: Vec<Option<f64>> = s
                        .values
                        .iter()
                        .zip(&k)
                        .map(|(v, k)| if *k { *v } else { None })
                        .collect();
                    values.iter().any(Option::is_some).then_some((
                        i,
                        StepSeries {
                            labels: s.labels,
                            values,
                            drop_name: s.drop_name,
                        },
                    ))
                })
                .collect();
            if n == 1 && op != "limitk" {
                // An instant result lists each group's selection best first, as Prometheus.
                let group_of: HashMap<usize, usize> = groups
                    .iter()
                    .enumerate()
                    .flat_map(|(g, (_, m))| m.iter().map(move |&i| (i, g)))
                    .collect();
                let top = op == "topk";
                out.sort_by(|(ia, a), (ib, b)| {
                    let (ga, gb) = (group_of[ia], group_of[ib]);
                    let (x, y) = (
                        a.values[0].unwrap_or(f64::NAN),
                        b.values[0].unwrap_or(f64::NAN),
                    );
                    ga.cmp(&gb).then_with(|| match (x.is_nan(), y.is_nan()) {
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ => {
                            let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
                            if top {
                                o.reverse()
                            } else {
                                o
                            }
                        }
                    })
                });
            }
            return Ok(Value::Vector(out.into_iter().map(|(_, s)| s).collect()));
        }
        "limit_ratio" => {
            // Keeps a series when its position in [0, 1) from the Prometheus label hash
            // (xxhash64 of `name 0xff value 0xff ...`) falls under the ratio (or, for a
            // negative ratio, in the complementary tail), so the selection is stable
            // across steps and matches Prometheus'.
            let r = scalar_param(&param)?;
            let out = input
                .into_iter()
                .filter_map(|s| {
                    let offset = prometheus_label_hash(&s.labels) as f64 / u64::MAX as f64;
                    let values: Vec<Option<f64>> = s
                        .values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let r = r[i].clamp(-1.0, 1.0);
                            let keep = (r >= 0.0 && offset < r) || (r < 0.0 && offset >= 1.0 + r);
                            if keep {
                                *v
                            } else {
                                None
                            }
                        })
                        .collect();
                    values.iter().any(Option::is_some).then_some(StepSeries {
                        labels: s.labels,
                        values,
                        drop_name: s.drop_name,
                    })
                })
                .collect();
            return Ok(Value::Vector(out));
        }
        "count_values" => {
            let label = match &param {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(QueryError::BadData(
                        "expected string parameter in count_values".into(),
                    ))
                }
            };
            let mut out: HashMap<Labels, Vec<Option<f64>>> = HashMap::new();
            for (g, members) in &groups {
                for step in 0..n {
                    for &i in members {
                        if let Some(v) = input[i].values[step] {
                            let mut b: LabelsBuilder = g.builder();
                            b.set(&label, &format_plain(v));
                            let e = out.entry(b.build()).or_insert_with(|| vec![None; n]);
                            e[step] = Some(e[step].unwrap_or(0.0) + 1.0);
                        }
                    }
                }
            }
            return Ok(Value::Vector(
                out.into_iter()
                    .map(|(labels, values)| StepSeries::new(labels, values))
                    .collect(),
            ));
        }
        _ => {}
    }
    let q = if op == "quantile" {
        Some(scalar_param(&param)?)
    } else {
        None
    };
    if let Some(q) = &q {
        crate::functions::warn_quantile(ctx, q);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (g, members) in groups {
        let mut values = Vec::with_capacity(n);
        let mut buf: Vec<f64> = Vec::new();
        for step in 0..n {
            buf.clear();
            buf.extend(members.iter().filter_map(|&i| input[i].values[step]));
            if buf.is_empty() {
                values.push(None);
                continue;
            }
            let v = match op.as_str() {
                "sum" => {
                    let (mut s, mut c) = (0.0, 0.0);
                    for &x in &buf {
                        (s, c) = kahan_inc(x, s, c);
                    }
                    if s.is_infinite() {
                        s
                    } else {
                        s + c
                    }
                }
                "avg" => crate::functions::kahan_mean(buf.iter().copied()),
                "count" => buf.len() as f64,
                "group" => 1.0,
                "min" => buf
                    .iter()
                    .copied()
                    .reduce(|a, b| if b < a || a.is_nan() { b } else { a })
                    .unwrap_or(f64::NAN),
                "max" => buf
                    .iter()
                    .copied()
                    .reduce(|a, b| if b > a || a.is_nan() { b } else { a })
                    .unwrap_or(f64::NAN),
                "stddev" | "stdvar" => {
                    let (mut count, mut mean, mut cmean, mut aux, mut caux) =
                        (0.0f64, 0.0, 0.0, 0.0, 0.0);
                    for &x in &buf {
                        count += 1.0;
                        let delta = x - (mean + cmean);
                        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
                        (aux, caux) = kahan_inc(delta * (x - (mean + cmean)), aux, caux);
                    }
                    let var = (aux + caux) / count;
                    if op == "stddev" {
                        var.sqrt()
                    } else {
                        var
                    }
                }
                "quantile" => quantile(q.as_ref().expect("quantile param")[step], &mut buf),
                other => {
                    return Err(QueryError::BadData(format!(
                        "aggregation {other:?} is not supported yet"
                    )))
                }
            };
            values.push(Some(v));
        }
        // A kept name (`by (__name__)`) still goes if every input's was to go.
        let drop_name = g.metric_name().is_some() && members.iter().all(|&i| input[i].drop_name);
        out.push(StepSeries {
            labels: g,
            values,
            drop_name,
        });
    }
    Ok(Value::Vector(out))
}

/// Prometheus' `labels.Hash()`: xxhash64 over `name 0xff value 0xff ...`.
fn prometheus_label_hash(l: &Labels) -> u64 {
    let mut b = Vec::with_capacity(l.byte_size() + 2 * l.len());
    for x in l {
        b.extend_from_slice(x.name.as_bytes());
        b.push(0xff);
        b.extend_from_slice(x.value.as_bytes());
        b.push(0xff);
    }
    xxhash_rust::xxh64::xxh64(&b, 0)
}

/// Formats a float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` (count_values labels).
pub fn format_plain(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    format!("{v}")
}

/// Formats a sample value as Prometheus' JSON API does: shortest round-trip digits,
/// in exponent form below 1e-6 and from 1e21 on (Go's 'e' with a 2-digit exponent).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let abs = v.abs();
    if !(1e-6..1e21).contains(&abs) {
        // Rust's `{:e}` gives the shortest digits like Go; fix the exponent form.
        let s = format!("{v:e}");
        let (mant, exp) = s.split_once('e').expect("exponent form");
        let exp: i32 = exp.parse().expect("numeric exponent");
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    format!("{v}")
}

/// Classic buckets grouped by their labels besides `le` and the name; a bucket with a
/// missing or malformed `le` is dropped with a warning, as Prometheus does.
fn bucket_groups<'a>(
    v: &'a [StepSeries],
    ann: &mut Annotations,
) -> HashMap<Labels, Vec<(f64, &'a StepSeries)>> {
    let mut groups: HashMap<Labels, Vec<(f64, &StepSeries)>> = HashMap::new();
    for s in v {
        let le = s.labels.get("le").unwrap_or("");
        let Ok(ub) = parse_le(le) else {
            ann.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of {le:?}"
            ));
            continue;
        };
        let key = s
            .labels
            .filtered(&["le".to_string(), METRIC_NAME.to_string()], false);
        groups.entry(key).or_default().push((ub, s));
    }
    groups
}

/// Applies `f` to each bucket group's (upper bound, count) pairs at each step.
fn per_bucket_group(
    v: &[StepSeries],
    n: usize,
    ann: &mut Annotations,
    mut f: impl FnMut(usize, &mut Vec<(f64, f64)>, &mut Annotations) -> f64,
) -> Vec<StepSeries> {
    let groups = bucket_groups(v, ann);
    let mut out = Vec::new();
    for (labels, buckets) in groups {
        let mut values = Vec::with_capacity(n);
        for step in 0..n {
            let mut bs: Vec<(f64, f64)> = buckets
                .iter()
                .filter_map(|(ub, s)| s.values[step].map(|c| (*ub, c)))
                .collect();
            values.push((!bs.is_empty()).then(|| f(step, &mut bs, ann)));
        }
        if values.iter().any(Option::is_some) {
            out.push(StepSeries::new(labels, values));
        }
    }
    out
}

/// histogram_fraction(lower, upper, buckets) over classic buckets: the estimated share
/// of observations in [lower, upper], interpolating linearly inside buckets.
pub(crate) fn histogram_fraction(
    lo: &[f64],
    hi: &[f64],
    v: Vec<StepSeries>,
    n: usize,
    ann: &mut Annotations,
) -> Vec<StepSeries> {
    per_bucket_group(&v, n, ann, |step, bs, _| {
        bucket_fraction(lo[step], hi[step], bs)
    })
}

fn bucket_fraction(lower: f64, upper: f64, b: &mut [(f64, f64)]) -> f64 {
    b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    if b.len() < 2 || !b.last().is_some_and(|x| x.0 == f64::INFINITY) {
        return f64::NAN;
    }
    let total = b[b.len() - 1].1;
    if total == 0.0 || total.is_nan() || lower.is_nan() || upper.is_nan() || lower >= upper {
        return if lower >= upper && !lower.is_nan() && !upper.is_nan() && total > 0.0 {
            0.0
        } else {
            f64::NAN
        };
    }
    // Cumulative count at x, interpolating linearly within a bucket; the lowest bucket
    // starts at 0 when its upper bound is positive (as for histogram_quantile).
    let cum_at = |x: f64| -> f64 {
        let mut prev_ub = f64::NEG_INFINITY;
        let mut prev_c = 0.0;
        for (i, &(ub, c)) in b.iter().enumerate() {
            if x <= ub {
                if ub == f64::INFINITY {
                    return prev_c;
                }
                let start = if i == 0 {
                    if ub > 0.0 {
                        0.0
                    } else {
                        return if x >= ub { c } else { 0.0 };
                    }
                } else {
                    prev_ub
                };
                if x <= start {
                    return prev_c;
                }
                return prev_c + (c - prev_c) * (x - start) / (ub - start);
            }
            prev_ub = ub;
            prev_c = c;
        }
        total
    };
    (cum_at(upper) - cum_at(lower)) / total
}

/// histogram_quantile over classic `le` buckets, grouped by the labels besides `le`.
pub(crate) fn histogram_quantile(
    q: &[f64],
    v: Vec<StepSeries>,
    n: usize,
    ann: &mut Annotations,
) -> Vec<StepSeries> {
    per_bucket_group(&v, n, ann, |step, bs, ann| {
        let (v, fixed) = bucket_quantile(q[step], bs);
        if fixed {
            ann.info("input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name \"\"".to_string());
        }
        v
    })
}

fn parse_le(s: &str) -> Result<f64, ()> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse::<f64>().map_err(|_| ()),
    }
}

/// (quantile, whether the counts had to be forced monotonic).
fn bucket_quantile(q: f64, b: &mut Vec<(f64, f64)>) -> (f64, bool) {
    let mut fixed = false;
    let v = bucket_quantile_inner(q, b, &mut fixed);
    (v, fixed)
}

fn bucket_quantile_inner(q: f64, b: &mut Vec<(f64, f64)>, fixed: &mut bool) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    if !b.last().is_some_and(|x| x.0.is_infinite() && x.0 > 0.0) {
        return f64::NAN;
    }
    // Coalesce equal bounds.
    let mut c: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for &(ub, cnt) in b.iter() {
        match c.last_mut() {
            Some(last) if last.0 == ub => last.1 += cnt,
            _ => c.push((ub, cnt)),
        }
    }
    // Force monotonic counts, ignoring tiny float deltas (as Prometheus' 1e-12 tolerance).
    let mut max = f64::NEG_INFINITY;
    for x in c.iter_mut() {
        if x.1 < max {
            if max - x.1 > 1e-12 * max.abs() {
                *fixed = true;
            }
            x.1 = max;
        } else {
            max = x.1;
        }
    }
    if c.len() < 2 {
        return f64::NAN;
    }
    let obs = c[c.len() - 1].1;
    if obs == 0.0 || obs.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * obs;
    let last = c.len() - 1;
    let idx = c[..last].partition_point(|x| x.1 < rank);
    if idx == last {
        return c[last - 1].0;
    }
    if idx == 0 && c[0].0 <= 0.0 {
        return c[0].0;
    }
    let (mut start, end, mut count) = (0.0, c[idx].0, c[idx].1);
    if idx > 0 {
        start = c[idx - 1].0;
        count -= c[idx - 1].1;
        rank -= c[idx - 1].1;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(format_value(1.5e-7), "1.5e-07");
        assert_eq!(format_value(123456789.0), "123456789");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn bucket_quantile_interpolates() {
        let mut b = vec![(0.1, 10.0), (0.5, 20.0), (f64::INFINITY, 20.0)];
        assert!((bucket_quantile(0.5, &mut b).0 - 0.1).abs() < 1e-12);
        let mut b = vec![(1.0, 0.0), (2.0, 10.0), (f64::INFINITY, 10.0)];
        assert!((bucket_quantile(0.5, &mut b).0 - 1.5).abs() < 1e-12);
    }
}
