//! PromQL functions. Range functions see, per step, the samples of a series in the
//! window `(te - range, te]`; instant functions map an instant vector step by step.

use std::collections::HashMap;

use chrono::{Datelike, TimeZone, Timelike, Utc};
use hearth_core::{Labels, Sample, METRIC_NAME};
use promql_parser::parser::{Call, Expr};

use crate::engine::{eval, eval_vector_selector, Ctx, QueryError};
use crate::value::{MatrixArg, StepSeries, Value};

/// Kahan-Babuska-Neumaier summation step, as Prometheus' `kahansum.Inc`.
#[inline]
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn arg_scalar(ctx: &mut Ctx<'_>, e: &Expr) -> Result<Vec<f64>, QueryError> {
    match eval(ctx, e)? {
        Value::Scalar(s) => Ok(s),
        _ => Err(QueryError::BadData("expected a scalar argument".into())),
    }
}

fn arg_vector(ctx: &mut Ctx<'_>, e: &Expr) -> Result<Vec<StepSeries>, QueryError> {
    match eval(ctx, e)? {
        Value::Vector(v) => Ok(v),
        _ => Err(QueryError::BadData(
            "expected an instant vector argument".into(),
        )),
    }
}

fn arg_matrix(ctx: &mut Ctx<'_>, e: &Expr) -> Result<MatrixArg, QueryError> {
    match eval(ctx, e)? {
        Value::Matrix(m) => Ok(m),
        _ => Err(QueryError::BadData(
            "expected a range vector argument".into(),
        )),
    }
}

fn arg_string(ctx: &mut Ctx<'_>, e: &Expr) -> Result<String, QueryError> {
    match eval(ctx, e)? {
        Value::String(s) => Ok(s),
        _ => Err(QueryError::BadData("expected a string argument".into())),
    }
}

/// Applies `f` to each series' window at each step.
fn over_windows(
    ctx: &Ctx<'_>,
    m: &MatrixArg,
    keep_name: bool,
    mut f: impl FnMut(&[Sample], i64, i64) -> Option<f64>,
) -> Vec<StepSeries> {
    over_windows_at(ctx, m, keep_name, |_, w, s, e| f(w, s, e))
}

/// As [`over_windows`], with the step's index (for step-dependent parameters).
fn over_windows_at(
    ctx: &Ctx<'_>,
    m: &MatrixArg,
    keep_name: bool,
    mut f: impl FnMut(usize, &[Sample], i64, i64) -> Option<f64>,
) -> Vec<StepSeries> {
    let mut out = Vec::with_capacity(m.series.len());
    for s in m.series.iter() {
        let mut values = Vec::with_capacity(ctx.ts.len());
        let mut any = false;
        // Steps increase, so the window's ends only move forward: slide them instead of
        // searching from scratch (an `@` pins the window; then every step is the same).
        let (mut lo, mut hi) = (0usize, 0usize);
        for (step, &t) in ctx.ts.iter().enumerate() {
            let te = m.at_ms.unwrap_or(t) - m.offset_ms;
            let ts = te - m.range_ms;
            while lo < s.samples.len() && s.samples[lo].t <= ts {
                lo += 1;
            }
            if hi < lo {
                hi = lo;
            }
            while hi < s.samples.len() && s.samples[hi].t <= te {
                hi += 1;
            }
            let w = &s.samples[lo..hi];
            let v = if w.is_empty() {
                None
            } else {
                f(step, w, ts, te)
            };
            any |= v.is_some();
            values.push(v);
        }
        if any {
            let (labels, drop_name) = if keep_name {
                (s.labels.clone(), false)
            } else {
                crate::engine::drop_name(ctx, s.labels.clone())
            };
            out.push(StepSeries {
                labels,
                values,
                drop_name,
            });
        }
    }
    out
}

/// Drops staleness markers from windows of raw samples (subquery output has none).
fn without_stale(w: &[Sample]) -> std::borrow::Cow<'_, [Sample]> {
    if w.iter().any(|s| hearth_core::is_stale_nan(s.v)) {
        std::borrow::Cow::Owned(
            w.iter()
                .filter(|s| !hearth_core::is_stale_nan(s.v))
                .copied()
                .collect(),
        )
    } else {
        std::borrow::Cow::Borrowed(w)
    }
}

/// Prometheus' `extrapolatedRate` for rate, increase and delta.
fn extrapolated_rate(
    w: &[Sample],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let first = w[0];
    let last = w[w.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        let mut prev = first.v;
        for s in &w[1..] {
            if s.v < prev {
                result += prev;
            }
            prev = s.v;
        }
    }
    let mut to_start = (first.t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last.t) as f64 / 1000.0;
    let sampled = (last.t - first.t) as f64 / 1000.0;
    let avg = sampled / (w.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let to_zero = sampled * (first.v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

fn instant_value(w: &[Sample], is_rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let last = w[w.len() - 1];
    let prev = w[w.len() - 2];
    let mut v = if is_rate && last.v < prev.v {
        last.v
    } else {
        last.v - prev.v
    };
    let dt = last.t - prev.t;
    if dt == 0 {
        return None;
    }
    if is_rate {
        v /= dt as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares slope and intercept at `intercept_t` (Prometheus' linearRegression).
fn linear_regression(w: &[Sample], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let const_y = w.iter().all(|s| s.v == w[0].v);
    if const_y {
        return (0.0, w[0].v);
    }
    for s in w {
        let x = (s.t - intercept_t) as f64 / 1000.0;
        n += 1.0;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(s.v, sy, cy);
        (sxy, cxy) = kahan_inc(x * s.v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    let sx = sx + cx;
    let sy = sy + cy;
    let sxy = sxy + cxy;
    let sx2 = sx2 + cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

fn kahan_sum(w: &[Sample]) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for x in w {
        (s, c) = kahan_inc(x.v, s, c);
    }
    if s.is_infinite() {
        s
    } else {
        s + c
    }
}

fn avg_over(w: &[Sample]) -> f64 {
    kahan_mean(w.iter().map(|s| s.v))
}

/// The mean as Prometheus computes it: a Kahan sum divided at the end, switching to an
/// incremental mean only if the sum would overflow, and keeping an infinite mean when
/// finite values follow it (so `Inf, 1` stays `Inf` instead of `Inf - Inf = NaN`).
pub fn kahan_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut incremental = false;
    for f in values {
        count += 1.0;
        if !incremental {
            let (ns, nc) = kahan_inc(f, sum, c);
            if count == 1.0 || !ns.is_infinite() {
                sum = ns;
                c = nc;
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        if mean.is_infinite() {
            if f.is_infinite() && (mean > 0.0) == (f > 0.0) {
                continue;
            }
            if !f.is_infinite() && !f.is_nan() {
                continue;
            }
        }
        let corrected = mean + c;
        (mean, c) = kahan_inc(f / count - corrected / count, mean, c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn variance(w: &[Sample]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
    for x in w {
        count += 1.0;
        let delta = x.v - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (x.v - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

/// The φ-quantile of values (Prometheus' `quantile`), sorting in place.
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn map_vector(
    delayed: bool,
    vs: Vec<StepSeries>,
    keep_name: bool,
    f: impl Fn(f64) -> f64,
) -> Value {
    Value::Vector(
        vs.into_iter()
            .map(|s| {
                let (labels, drop_name) = if keep_name {
                    (s.labels, s.drop_name)
                } else if delayed {
                    (s.labels, true)
                } else {
                    (s.labels.without_metric_name(), false)
                };
                StepSeries {
                    labels,
                    values: s.values.into_iter().map(|v| v.map(&f)).collect(),
                    drop_name,
                }
            })
            .collect(),
    )
}

fn date_fn(
    ctx: &mut Ctx<'_>,
    c: &Call,
    f: fn(chrono::DateTime<Utc>) -> f64,
) -> Result<Value, QueryError> {
    let conv = move |secs: f64| -> f64 {
        if secs.is_nan() || secs.is_infinite() {
            return f64::NAN;
        }
        match Utc.timestamp_opt(secs.floor() as i64, 0).single() {
            Some(d) => f(d),
            None => f64::NAN,
        }
    };
    if c.args.args.is_empty() {
        let ts = ctx.ts.clone();
        return Ok(Value::Vector(vec![StepSeries::new(
            Labels::empty(),
            ts.iter().map(|t| Some(conv(*t as f64 / 1000.0))).collect(),
        )]));
    }
    let v = arg_vector(ctx, &c.args.args[0])?;
    Ok(map_vector(ctx.opts.delayed_name_removal, v, false, conv))
}

fn days_in_month(d: chrono::DateTime<Utc>) -> f64 {
    let (y, m) = (d.year(), d.month());
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let first_next = chrono::NaiveDate::from_ymd_opt(ny, nm, 1).expect("valid date");
    let first = chrono::NaiveDate::from_ymd_opt(y, m, 1).expect("valid date");
    (first_next - first).num_days() as f64
}

pub(crate) fn eval_call(ctx: &mut Ctx<'_>, c: &Call) -> Result<Value, QueryError> {
    let v = eval_call_inner(ctx, c)?;
    if let Value::Vector(vs) = &v {
        check_duplicates(vs, ctx.steps())?;
    }
    Ok(v)
}

fn eval_call_inner(ctx: &mut Ctx<'_>, c: &Call) -> Result<Value, QueryError> {
    let name = c.func.name;
    let args = &c.args.args;
    let n = ctx.steps();
    macro_rules! range_fn {
        ($keep:expr, $f:expr) => {{
            let m = arg_matrix(ctx, &args[0])?;
            Ok(Value::Vector(over_windows(ctx, &m, $keep, $f)))
        }};
    }
    macro_rules! counter_fn {
        ($f:expr) => {{
            let m = arg_matrix(ctx, &args[0])?;
            // As Prometheus: an info per series that has samples and whose name does not
            // look like a counter's.
            for s in m.series.iter() {
                if let Some(metric) = s.labels.metric_name() {
                    if !s.samples.is_empty() && !["_total", "_sum", "_count", "_bucket"].iter().any(|x| metric.ends_with(x)) {
                        ctx.annotations.info(format!(
                            "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}"
                        ));
                    }
                }
            }
            Ok(Value::Vector(over_windows(ctx, &m, false, $f)))
        }};
    }
    match name {
        "info" => eval_info(ctx, c),
        "rate" => counter_fn!(|w, s, e| extrapolated_rate(&without_stale(w), s, e, true, true)),
        "increase" => {
            counter_fn!(|w, s, e| extrapolated_rate(&without_stale(w), s, e, true, false))
        }
        "delta" => range_fn!(false, |w, s, e| extrapolated_rate(
            &without_stale(w),
            s,
            e,
            false,
            false
        )),
        "irate" => range_fn!(false, |w, _, _| instant_value(&without_stale(w), true)),
        "idelta" => range_fn!(false, |w, _, _| instant_value(&without_stale(w), false)),
        "avg_over_time" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            (!w.is_empty()).then(|| avg_over(&w))
        }),
        "sum_over_time" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            (!w.is_empty()).then(|| kahan_sum(&w))
        }),
        "count_over_time" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            (!w.is_empty()).then(|| w.len() as f64)
        }),
        "min_over_time" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            w.iter()
                .map(|s| s.v)
                .reduce(|a, b| if b < a || a.is_nan() { b } else { a })
        }),
        "max_over_time" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            w.iter()
                .map(|s| s.v)
                .reduce(|a, b| if b > a || a.is_nan() { b } else { a })
        }),
        "last_over_time" => range_fn!(true, |w, _, _| without_stale(w).last().map(|s| s.v)),
        "first_over_time" => range_fn!(true, |w, _, _| without_stale(w).first().map(|s| s.v)),
        "mad_over_time" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            if w.is_empty() {
                return None;
            }
            let mut vals: Vec<f64> = w.iter().map(|s| s.v).collect();
            let median = quantile(0.5, &mut vals);
            let mut dev: Vec<f64> = w.iter().map(|s| (s.v - median).abs()).collect();
            Some(quantile(0.5, &mut dev))
        }),
        "ts_of_min_over_time" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            let mut best: Option<Sample> = None;
            for s in w.iter() {
                if best.is_none_or(|b| s.v <= b.v || b.v.is_nan()) {
                    best = Some(*s);
                }
            }
            best.map(|b| b.t as f64 / 1000.0)
        }),
        "ts_of_max_over_time" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            let mut best: Option<Sample> = None;
            for s in w.iter() {
                if best.is_none_or(|b| s.v >= b.v || b.v.is_nan()) {
                    best = Some(*s);
                }
            }
            best.map(|b| b.t as f64 / 1000.0)
        }),
        "ts_of_last_over_time" => range_fn!(false, |w, _, _| without_stale(w)
            .last()
            .map(|s| s.t as f64 / 1000.0)),
        "ts_of_first_over_time" => range_fn!(false, |w, _, _| without_stale(w)
            .first()
            .map(|s| s.t as f64 / 1000.0)),
        "present_over_time" => range_fn!(false, |w, _, _| (!without_stale(w).is_empty())
            .then_some(1.0)),
        "stddev_over_time" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            (!w.is_empty()).then(|| variance(&w).sqrt())
        }),
        "stdvar_over_time" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            (!w.is_empty()).then(|| variance(&w))
        }),
        "changes" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            if w.is_empty() {
                return None;
            }
            let mut c = 0.0;
            for p in w.windows(2) {
                if p[1].v != p[0].v && !(p[1].v.is_nan() && p[0].v.is_nan()) {
                    c += 1.0;
                }
            }
            Some(c)
        }),
        "resets" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            if w.is_empty() {
                return None;
            }
            Some(w.windows(2).filter(|p| p[1].v < p[0].v).count() as f64)
        }),
        "deriv" => range_fn!(false, |w, _, _| {
            let w = without_stale(w);
            if w.len() < 2 {
                return None;
            }
            Some(linear_regression(&w, w[0].t).0)
        }),
        "predict_linear" => {
            let m = arg_matrix(ctx, &args[0])?;
            let dur = arg_scalar(ctx, &args[1])?;
            let ts = ctx.ts.clone();
            // The regression's intercept is at the evaluation time, as in Prometheus.
            Ok(Value::Vector(over_windows_at(
                ctx,
                &m,
                false,
                |step, w, _, _| {
                    let w = without_stale(w);
                    (w.len() >= 2).then(|| {
                        let (slope, intercept) = linear_regression(&w, ts[step]);
                        slope * dur[step] + intercept
                    })
                },
            )))
        }
        "quantile_over_time" => {
            let q = arg_scalar(ctx, &args[0])?;
            warn_quantile(ctx, &q);
            let m = arg_matrix(ctx, &args[1])?;
            Ok(Value::Vector(over_windows_at(
                ctx,
                &m,
                false,
                |step, w, _, _| {
                    let mut vals: Vec<f64> = without_stale(w).iter().map(|x| x.v).collect();
                    (!vals.is_empty()).then(|| quantile(q[step], &mut vals))
                },
            )))
        }
        "double_exponential_smoothing" | "holt_winters" => {
            let m = arg_matrix(ctx, &args[0])?;
            let sf = arg_scalar(ctx, &args[1])?;
            let tf = arg_scalar(ctx, &args[2])?;
            if sf[0] <= 0.0 || sf[0] >= 1.0 {
                return Err(QueryError::Execution(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {}",
                    sf[0]
                )));
            }
            if tf[0] <= 0.0 || tf[0] >= 1.0 {
                return Err(QueryError::Execution(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {}",
                    tf[0]
                )));
            }
            let (sf, tf) = (sf[0], tf[0]);
            Ok(Value::Vector(over_windows(ctx, &m, false, |w, _, _| {
                let w = without_stale(w);
                if w.len() < 2 {
                    return None;
                }
                let mut s0 = 0.0;
                let mut s1 = w[0].v;
                let mut b = w[1].v - w[0].v;
                for (i, x) in w.iter().enumerate().skip(1) {
                    if i > 1 {
                        b = tf * (s1 - s0) + (1.0 - tf) * b;
                    }
                    let next = sf * x.v + (1.0 - sf) * (s1 + b);
                    s0 = s1;
                    s1 = next;
                }
                Some(s1)
            })))
        }
        "absent_over_time" => {
            let m = arg_matrix(ctx, &args[0])?;
            let present = over_windows(ctx, &m, false, |w, _, _| {
                (!without_stale(w).is_empty()).then_some(1.0)
            });
            let labels = absent_labels(&args[0]);
            let values = (0..n)
                .map(|i| {
                    if present.iter().any(|s| s.values[i].is_some()) {
                        None
                    } else {
                        Some(1.0)
                    }
                })
                .collect();
            Ok(Value::Vector(vec![StepSeries::new(labels, values)]))
        }
        "absent" => {
            let v = arg_vector(ctx, &args[0])?;
            let labels = absent_labels(&args[0]);
            let values = (0..n)
                .map(|i| {
                    if v.iter().any(|s| s.values[i].is_some()) {
                        None
                    } else {
                        Some(1.0)
                    }
                })
                .collect();
            Ok(Value::Vector(vec![StepSeries::new(labels, values)]))
        }
        "abs" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::abs,
        )),
        "ceil" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::ceil,
        )),
        "floor" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::floor,
        )),
        "exp" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::exp,
        )),
        "sqrt" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::sqrt,
        )),
        "ln" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::ln,
        )),
        "log2" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::log2,
        )),
        "log10" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::log10,
        )),
        "sin" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::sin,
        )),
        "cos" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::cos,
        )),
        "tan" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::tan,
        )),
        "asin" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::asin,
        )),
        "acos" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::acos,
        )),
        "atan" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::atan,
        )),
        "sinh" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::sinh,
        )),
        "cosh" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::cosh,
        )),
        "tanh" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::tanh,
        )),
        "asinh" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::asinh,
        )),
        "acosh" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::acosh,
        )),
        "atanh" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::atanh,
        )),
        "deg" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::to_degrees,
        )),
        "rad" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            f64::to_radians,
        )),
        "sgn" => Ok(map_vector(
            ctx.opts.delayed_name_removal,
            arg_vector(ctx, &args[0])?,
            false,
            |v| {
                if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    v
                }
            },
        )),
        "pi" => Ok(Value::Scalar(vec![std::f64::consts::PI; n])),
        "time" => Ok(Value::Scalar(
            ctx.ts.iter().map(|t| *t as f64 / 1000.0).collect(),
        )),
        "round" => {
            let v = arg_vector(ctx, &args[0])?;
            let to = if args.len() > 1 {
                arg_scalar(ctx, &args[1])?[0]
            } else {
                1.0
            };
            let inv = 1.0 / to;
            Ok(map_vector(
                ctx.opts.delayed_name_removal,
                v,
                false,
                move |x| (x * inv + 0.5).floor() / inv,
            ))
        }
        "clamp" => {
            let v = arg_vector(ctx, &args[0])?;
            let lo = arg_scalar(ctx, &args[1])?[0];
            let hi = arg_scalar(ctx, &args[2])?[0];
            if hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(map_vector(
                ctx.opts.delayed_name_removal,
                v,
                false,
                move |x| x.max(lo).min(hi),
            ))
        }
        "clamp_min" => {
            let v = arg_vector(ctx, &args[0])?;
            let lo = arg_scalar(ctx, &args[1])?[0];
            Ok(map_vector(
                ctx.opts.delayed_name_removal,
                v,
                false,
                move |x| if x.is_nan() { x } else { x.max(lo) },
            ))
        }
        "clamp_max" => {
            let v = arg_vector(ctx, &args[0])?;
            let hi = arg_scalar(ctx, &args[1])?[0];
            Ok(map_vector(
                ctx.opts.delayed_name_removal,
                v,
                false,
                move |x| if x.is_nan() { x } else { x.min(hi) },
            ))
        }
        "timestamp" => {
            if let Expr::VectorSelector(vs) = &*args[0] {
                return match eval_vector_selector(ctx, vs, true)? {
                    Value::Vector(v) => {
                        Ok(map_vector(ctx.opts.delayed_name_removal, v, false, |x| x))
                    }
                    other => Ok(other),
                };
            }
            let v = arg_vector(ctx, &args[0])?;
            let ts = ctx.ts.clone();
            Ok(Value::Vector(
                v.into_iter()
                    .map(|s| {
                        let (labels, drop_name) = crate::engine::drop_name(ctx, s.labels.clone());
                        StepSeries {
                            labels,
                            values: s
                                .values
                                .iter()
                                .zip(&ts)
                                .map(|(v, t)| v.map(|_| *t as f64 / 1000.0))
                                .collect(),
                            drop_name,
                        }
                    })
                    .collect(),
            ))
        }
        "vector" => {
            let s = arg_scalar(ctx, &args[0])?;
            Ok(Value::Vector(vec![StepSeries::new(
                Labels::empty(),
                s.into_iter().map(Some).collect(),
            )]))
        }
        "scalar" => {
            let v = arg_vector(ctx, &args[0])?;
            Ok(Value::Scalar(
                (0..n)
                    .map(|i| {
                        let mut it = v.iter().filter_map(|s| s.values[i]);
                        match (it.next(), it.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ))
        }
        "sort" | "sort_desc" => {
            let mut v = arg_vector(ctx, &args[0])?;
            // Only meaningful for instant queries; range results are sorted by labels.
            let desc = name == "sort_desc";
            v.sort_by(|a, b| {
                let (x, y) = (
                    a.values[0].unwrap_or(f64::NAN),
                    b.values[0].unwrap_or(f64::NAN),
                );
                let o = if desc {
                    y.partial_cmp(&x)
                } else {
                    x.partial_cmp(&y)
                };
                o.unwrap_or_else(|| {
                    // NaN sorts last either way.
                    x.is_nan().cmp(&y.is_nan())
                })
            });
            Ok(Value::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = arg_vector(ctx, &args[0])?;
            let mut names = Vec::new();
            for a in &args[1..] {
                names.push(arg_string(ctx, a)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                let mut o = std::cmp::Ordering::Equal;
                for n in &names {
                    o = natural_cmp(a.labels.get(n).unwrap_or(""), b.labels.get(n).unwrap_or(""));
                    if o != std::cmp::Ordering::Equal {
                        break;
                    }
                }
                if o == std::cmp::Ordering::Equal {
                    o = a.labels.cmp(&b.labels);
                }
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
            Ok(Value::Vector(v))
        }
        "label_replace" => {
            let v = arg_vector(ctx, &args[0])?;
            let dst = arg_string(ctx, &args[1])?;
            let repl = arg_string(ctx, &args[2])?;
            let src = arg_string(ctx, &args[3])?;
            let re_s = arg_string(ctx, &args[4])?;
            let re = regex::Regex::new(&format!("^(?s:{re_s})$")).map_err(|e| {
                QueryError::BadData(format!(
                    "invalid regular expression in label_replace(): {re_s}: {e}"
                ))
            })?;
            if !is_valid_label_name(&dst) {
                return Err(QueryError::Execution(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let mut out = Vec::with_capacity(v.len());
            for s in v {
                let sv = s.labels.get(&src).unwrap_or("").to_string();
                let labels = match re.captures(&sv) {
                    Some(caps) => {
                        let mut res = String::new();
                        caps.expand(&go_template(&repl), &mut res);
                        let mut b = s.labels.builder();
                        b.set(&dst, &res);
                        b.build()
                    }
                    None => s.labels,
                };
                // Setting the name explicitly keeps it.
                out.push(StepSeries {
                    labels,
                    values: s.values,
                    drop_name: s.drop_name && dst != METRIC_NAME,
                });
            }
            Ok(Value::Vector(out))
        }
        "label_join" => {
            let v = arg_vector(ctx, &args[0])?;
            let dst = arg_string(ctx, &args[1])?;
            let sep = arg_string(ctx, &args[2])?;
            let mut srcs = Vec::new();
            for a in &args[3..] {
                srcs.push(arg_string(ctx, a)?);
            }
            if !is_valid_label_name(&dst) {
                return Err(QueryError::Execution(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            let mut out = Vec::with_capacity(v.len());
            for s in v {
                let joined: Vec<&str> =
                    srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
                let mut b = s.labels.builder();
                b.set(&dst, &joined.join(&sep));
                out.push(StepSeries {
                    labels: b.build(),
                    values: s.values,
                    drop_name: s.drop_name && dst != METRIC_NAME,
                });
            }
            Ok(Value::Vector(out))
        }
        "histogram_quantile" => {
            let q = arg_scalar(ctx, &args[0])?;
            warn_quantile(ctx, &q);
            let v = arg_vector(ctx, &args[1])?;
            let out = crate::aggregate::histogram_quantile(&q, v, n, &mut ctx.annotations);
            Ok(Value::Vector(out))
        }
        "histogram_fraction" => {
            let lo = arg_scalar(ctx, &args[0])?;
            let hi = arg_scalar(ctx, &args[1])?;
            let v = arg_vector(ctx, &args[2])?;
            Ok(Value::Vector(crate::aggregate::histogram_fraction(
                &lo,
                &hi,
                v,
                n,
                &mut ctx.annotations,
            )))
        }
        "minute" => date_fn(ctx, c, |d| d.minute() as f64),
        "hour" => date_fn(ctx, c, |d| d.hour() as f64),
        "day_of_week" => date_fn(ctx, c, |d| d.weekday().num_days_from_sunday() as f64),
        "day_of_month" => date_fn(ctx, c, |d| d.day() as f64),
        "day_of_year" => date_fn(ctx, c, |d| d.ordinal() as f64),
        "days_in_month" => date_fn(ctx, c, days_in_month),
        "month" => date_fn(ctx, c, |d| d.month() as f64),
        "year" => date_fn(ctx, c, |d| d.year() as f64),
        other => Err(QueryError::BadData(format!(
            "function {other:?} is not supported yet"
        ))),
    }
}

/// `info(v, [selector])`: adds to each series the data labels of the info series
/// (`target_info` unless the selector names others) that share its identifying labels
/// `instance` and `job`, as Prometheus' experimental `info` does: labels the series
/// already has are kept, a label two info series disagree on is an error, and with a
/// selector only its labels are added (a series with none of them is dropped unless every
/// selector matcher matches the empty string).
fn eval_info(ctx: &mut Ctx<'_>, c: &Call) -> Result<Value, QueryError> {
    const IDENTIFYING: [&str; 2] = ["instance", "job"];
    let args = &c.args.args;
    let base = arg_vector(ctx, &args[0])?;
    let n = ctx.steps();
    let mut name_matchers: Vec<hearth_core::Matcher> = Vec::new();
    let mut data_matchers: Vec<hearth_core::Matcher> = Vec::new();
    if let Some(Expr::VectorSelector(sel)) = args.get(1).map(|a| &**a) {
        for m in crate::engine::selector_matchers(sel)?
            .into_iter()
            .next()
            .unwrap_or_default()
        {
            if m.name == METRIC_NAME {
                name_matchers.push(m);
            } else {
                data_matchers.push(m);
            }
        }
    }
    if name_matchers.is_empty() {
        name_matchers.push(hearth_core::Matcher::equal(METRIC_NAME, "target_info"));
    }
    let key = c as *const Call as usize;
    let info = ctx.data.get(&key).cloned().unwrap_or_default();
    // Each info series' newest sample at each step (within the lookback), by timestamp.
    let lookback = ctx.opts.lookback_delta_ms;
    let info_at: Vec<Vec<Option<i64>>> = info
        .iter()
        .map(|s| {
            let mut idx = 0;
            ctx.ts
                .iter()
                .map(|&t| {
                    while idx < s.samples.len() && s.samples[idx].t <= t {
                        idx += 1;
                    }
                    (idx > 0)
                        .then(|| s.samples[idx - 1])
                        .filter(|x| x.t > t - lookback && !hearth_core::is_stale_nan(x.v))
                        .map(|x| x.t)
                })
                .collect()
        })
        .collect();
    let sig = |name: &str, l: &Labels| -> String {
        let mut s = String::from(name);
        for id in IDENTIFYING {
            s.push('\u{ff}');
            s.push_str(l.get(id).unwrap_or(""));
        }
        s
    };
    let info_names: Vec<String> = {
        let mut v: Vec<String> = info
            .iter()
            .filter_map(|s| s.labels.metric_name().map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let all_match_empty = data_matchers.iter().all(|m| m.matches_empty());
    let mut out: Vec<StepSeries> = Vec::new();
    let mut slot: HashMap<Labels, usize> = HashMap::new();
    for step in 0..n {
        // The newest info sample per (info metric, identifying labels).
        let mut by_sig: HashMap<String, (usize, i64)> = HashMap::new();
        for (i, s) in info.iter().enumerate() {
            let Some(t) = info_at[i][step] else { continue };
            let name = s.labels.metric_name().unwrap_or("");
            match by_sig.entry(sig(name, &s.labels)) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((i, t));
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    if e.get().1 == t {
                        return Err(QueryError::Execution(format!(
                            "found duplicate series for info metric {name}"
                        )));
                    }
                    if e.get().1 < t {
                        e.insert((i, t));
                    }
                }
            }
        }
        for b in &base {
            let Some(v) = b.values[step] else { continue };
            let is_info = b
                .labels
                .metric_name()
                .is_some_and(|n| name_matchers.iter().any(|m| m.matches(n)));
            let labels = if is_info {
                b.labels.clone()
            } else {
                let mut added: Vec<(String, String)> = Vec::new();
                for name in &info_names {
                    let Some(&(i, _)) = by_sig.get(&sig(name, &b.labels)) else {
                        continue;
                    };
                    for l in &info[i].labels {
                        if &*l.name == METRIC_NAME {
                            continue;
                        }
                        if !data_matchers.is_empty()
                            && !data_matchers.iter().any(|m| m.name == *l.name)
                        {
                            continue;
                        }
                        if let Some((_, prev)) = added.iter().find(|(n, _)| n == &*l.name) {
                            if prev != &*l.value {
                                return Err(QueryError::Execution(format!(
                                    "conflicting label: {}",
                                    l.name
                                )));
                            }
                            continue;
                        }
                        if b.labels.get(&l.name).is_some() {
                            continue;
                        }
                        added.push((l.name.to_string(), l.value.to_string()));
                    }
                }
                if added.is_empty() && !all_match_empty {
                    continue;
                }
                let mut lb = b.labels.builder();
                for (n, v) in &added {
                    lb.set(n, v);
                }
                lb.build()
            };
            let k = *slot.entry(labels.clone()).or_insert_with(|| {
                out.push(StepSeries {
                    labels,
                    values: vec![None; n],
                    drop_name: b.drop_name,
                });
                out.len() - 1
            });
            if out[k].values[step].is_some() {
                return Err(QueryError::Execution(
                    "vector cannot contain metrics with the same labelset".into(),
                ));
            }
            out[k].values[step] = Some(v);
        }
    }
    Ok(Value::Vector(out))
}

/// Prometheus warns once per query when a quantile parameter is outside [0, 1].
pub(crate) fn warn_quantile(ctx: &mut Ctx<'_>, q: &[f64]) {
    if let Some(bad) = q.iter().find(|q| q.is_nan() || **q < 0.0 || **q > 1.0) {
        ctx.annotations.warn(format!(
            "quantile value should be between 0 and 1, got {bad}"
        ));
    }
}

fn is_valid_label_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Go's `$1`/`${1}` templates mean the same in the regex crate, except that Go treats
/// `$1x` as the group named `1x`; the regex crate does too. Nothing to translate.
fn go_template(s: &str) -> String {
    s.to_string()
}

/// Natural order: runs of digits compare as numbers ("2" < "10"), the rest bytewise.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = std::str::from_utf8(&a[si..i])
                .unwrap_or("")
                .trim_start_matches('0');
            let nb = std::str::from_utf8(&b[sj..j])
                .unwrap_or("")
                .trim_start_matches('0');
            let o = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if o != Ordering::Equal {
                return o;
            }
            continue;
        }
        let o = a[i].cmp(&b[j]);
        if o != Ordering::Equal {
            return o;
        }
        i += 1;
        j += 1;
    }
    (a.len() - i).cmp(&(b.len() - j))
}

/// Prometheus' "vector cannot contain metrics with the same labelset": two series of
/// one result with equal labels (after dropping names) that both have a value at a step.
pub(crate) fn check_duplicates(v: &[StepSeries], n: usize) -> Result<(), QueryError> {
    let mut first: std::collections::HashMap<u64, usize> =
        std::collections::HashMap::with_capacity(v.len());
    for (i, s) in v.iter().enumerate() {
        if let Some(&j) = first.get(&s.labels.hash64()) {
            if v[j].labels == s.labels
                && (0..n).any(|k| v[j].values[k].is_some() && s.values[k].is_some())
            {
                return Err(QueryError::Execution(
                    "vector cannot contain metrics with the same labelset".into(),
                ));
            }
        } else {
            first.insert(s.labels.hash64(), i);
        }
    }
    Ok(())
}

/// Labels of `absent(...)`: the equality matchers of the selector, except the name.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut b = hearth_core::LabelsBuilder::new();
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for m in &vs.matchers.matchers {
        *seen.entry(m.name.as_str()).or_default() += 1;
    }
    for m in &vs.matchers.matchers {
        if m.name != METRIC_NAME
            && matches!(m.op, promql_parser::label::MatchOp::Equal)
            && seen[m.name.as_str()] == 1
        {
            b.set(&m.name, &m.value);
        }
    }
    b.build()
}
