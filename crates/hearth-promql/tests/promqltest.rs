//! The PromQL corpus runner: Prometheus' own `.test` files (promql/promqltest/testdata),
//! read from `HEARTH_PROMQLTEST_DIR`, loaded into a real head and evaluated by the same
//! engine the HTTP API uses. Prints a per-file table and the totals, and fails when the
//! pass rate of the evals that need no native histograms falls below the threshold kept
//! in `tests/promqltest-threshold.txt` (which only ever goes up).
//!
//! Set `HEARTH_PROMQLTEST_FAILURES=<file>` to write every failure with its reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use hearth_core::{Label, Labels, Sample, Tenant, WriteBatch, STALE_NAN_BITS};
use hearth_ingester::{Head, HeadOptions, HeadQueryable};
use hearth_promql::{Engine, EngineOptions, QueryValue};

// ---------------------------------------------------------------- the .test language

#[derive(Debug, Clone)]
enum Val {
    Float(f64),
    Missing,
    Histogram,
}

#[derive(Debug)]
enum Expect {
    Series(Labels, Vec<Val>),
    Scalar(f64),
    String(String),
}

#[derive(Debug)]
struct Eval {
    line: usize,
    expr: String,
    /// (start, end, step) in ms; instant evals have start == end and step 0.
    range: (i64, i64, i64),
    instant: bool,
    fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    ordered: bool,
    warn: bool,
    info: bool,
    expected: Vec<Expect>,
    histogram_expected: bool,
}

#[derive(Debug)]
enum Cmd {
    Load {
        interval: i64,
        series: Vec<(Labels, Vec<Val>)>,
        nhcb: bool,
    },
    Clear,
    Eval(Box<Eval>),
}

/// A duration of the test language: a Prometheus duration, or plain seconds, maybe negative.
fn parse_duration(s: &str) -> Option<i64> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let v = match s.parse::<i64>() {
        Ok(n) => n * 1000,
        Err(_) => hearth_core::duration::parse_duration_ms(s)?,
    };
    Some(if neg { -v } else { v })
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => return Some(f64::INFINITY),
        "-Inf" | "-inf" => return Some(f64::NEG_INFINITY),
        "NaN" | "nan" => return Some(f64::NAN),
        _ => {}
    }
    s.parse::<f64>().ok()
}

/// Splits whitespace-separated value tokens, keeping `{{ ... }}` histograms whole.
fn value_tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in s.chars() {
        match c {
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth -= 1;
                cur.push(c);
            }
            c if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn parse_values(s: &str) -> Option<Vec<Val>> {
    let mut out = Vec::new();
    for tok in value_tokens(s) {
        if tok.starts_with("{{") {
            // A native histogram, possibly repeated: {{...}}xN or {{...}}+{{...}}xN.
            let n = tok
                .rsplit_once("}}x")
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .map_or(1, |n| n + 1);
            out.extend(std::iter::repeat_n(Val::Histogram, n));
            continue;
        }
        if tok == "_" {
            out.push(Val::Missing);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            out.extend(std::iter::repeat_n(Val::Missing, n.parse().ok()?));
            continue;
        }
        if tok == "stale" {
            out.push(Val::Float(f64::from_bits(STALE_NAN_BITS)));
            continue;
        }
        // a, axN, a+bxN, a-bxN
        let (base, times) = match tok.rfind('x') {
            // In series values `x` is always the repeat operator (`0x59` is 0, 59 more times).
            Some(i) if tok[i + 1..].chars().all(|c| c.is_ascii_digit()) && i + 1 < tok.len() => {
                (&tok[..i], Some(tok[i + 1..].parse::<usize>().ok()?))
            }
            _ => (tok.as_str(), None),
        };
        let b = base.as_bytes();
        let mut split = None;
        for i in 1..b.len() {
            if (b[i] == b'+' || b[i] == b'-') && !matches!(b[i - 1], b'e' | b'E') {
                split = Some(i);
                break;
            }
        }
        match (split, times) {
            (Some(i), Some(n)) => {
                let a = parse_float(&base[..i])?;
                let mut d = parse_float(&base[i + 1..])?;
                if b[i] == b'-' {
                    d = -d;
                }
                for k in 0..=n {
                    out.push(Val::Float(a + d * k as f64));
                }
            }
            (None, Some(n)) => {
                let a = parse_float(base)?;
                out.extend(std::iter::repeat_n(Val::Float(a), n + 1));
            }
            (_, None) => out.push(Val::Float(parse_float(base)?)),
        }
    }
    Some(out)
}

fn unquote(s: &str) -> Option<(String, usize)> {
    let mut chars = s.char_indices();
    let (_, q) = chars.next()?;
    if q != '"' && q != '\'' && q != '`' {
        return None;
    }
    let mut out = String::new();
    let mut bytes: Vec<u8> = Vec::new();
    let flush = |out: &mut String, bytes: &mut Vec<u8>| {
        if !bytes.is_empty() {
            out.push_str(&String::from_utf8_lossy(bytes));
            bytes.clear();
        }
    };
    while let Some((i, c)) = chars.next() {
        if c == q {
            flush(&mut out, &mut bytes);
            return Some((out, i + 1));
        }
        if c == '\\' && q != '`' {
            let (_, e) = chars.next()?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'x' => {
                    let h: String = (0..2).filter_map(|_| chars.next().map(|x| x.1)).collect();
                    bytes.push(u8::from_str_radix(&h, 16).ok()?);
                    continue;
                }
                'u' => {
                    let h: String = (0..4).filter_map(|_| chars.next().map(|x| x.1)).collect();
                    out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
            flush(&mut out, &mut bytes);
            continue;
        }
        flush(&mut out, &mut bytes);
        out.push(c);
    }
    None
}

/// `name{a="b", ...}`, `{a="b"}`, `{"utf8.name", a="b"}` -> labels and the rest of the line.
fn parse_series_desc(line: &str) -> Option<(Labels, &str)> {
    let line = line.trim_start();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    if name_end > 0 {
        pairs.push(("__name__".into(), line[..name_end].to_string()));
    }
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        rest = &rest[1..];
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            // A label name, bare or quoted; a quoted string alone is the metric name.
            let (name, after) = if let Some((q, n)) = unquote(rest) {
                (q, &rest[n..])
            } else {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '.'))?;
                (rest[..end].to_string(), &rest[end..])
            };
            let after = after.trim_start();
            if let Some(a) = after.strip_prefix('=') {
                let a = a.trim_start();
                let (v, n) = unquote(a)?;
                pairs.push((name, v));
                rest = &a[n..];
            } else {
                pairs.push(("__name__".into(), name));
                rest = after;
            }
        }
    }
    let mut labels: Vec<Label> = Vec::new();
    for (n, v) in pairs {
        labels.retain(|l| *l.name != *n);
        labels.push(Label::new(n, v));
    }
    labels.sort();
    labels.retain(|l| !l.value.is_empty());
    Some((Labels::from_sorted(labels), rest))
}

fn parse_file(text: &str) -> Result<Vec<Cmd>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    let is_cmd = |l: &str| {
        let t = l.trim_start();
        l == t && (t.starts_with("load") || t.starts_with("eval") || t.starts_with("clear"))
    };
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            i += 1;
            continue;
        }
        if t == "clear" {
            cmds.push(Cmd::Clear);
            i += 1;
            continue;
        }
        let load = t
            .strip_prefix("load_with_nhcb ")
            .map(|r| (r, true))
            .or_else(|| t.strip_prefix("load ").map(|r| (r, false)));
        if let Some((r, nhcb)) = load {
            // load_with_nhcb also loads classic histograms as native histograms with
            // custom buckets under the base name: evals on those need native histograms.
            let interval =
                parse_duration(r.trim()).ok_or(format!("line {}: bad interval", i + 1))?;
            let mut series = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].trim().is_empty() && !is_cmd(lines[i]) {
                let l = lines[i].trim();
                if !l.starts_with('#') {
                    let (labels, rest) =
                        parse_series_desc(l).ok_or(format!("line {}: bad series", i + 1))?;
                    let vals =
                        parse_values(rest).ok_or(format!("line {}: bad values {rest:?}", i + 1))?;
                    series.push((labels, vals));
                }
                i += 1;
            }
            cmds.push(Cmd::Load {
                interval,
                series,
                nhcb,
            });
            continue;
        }
        if t.starts_with("eval") {
            let (kw, rest) = t
                .split_once(' ')
                .ok_or(format!("line {}: bad eval", i + 1))?;
            let mut ev = Eval {
                line: i + 1,
                expr: String::new(),
                range: (0, 0, 0),
                instant: true,
                fail: kw == "eval_fail",
                fail_msg: None,
                fail_regex: None,
                ordered: kw == "eval_ordered",
                warn: kw == "eval_warn",
                info: kw == "eval_info",
                expected: Vec::new(),
                histogram_expected: false,
            };
            let rest = rest.trim();
            if let Some(r) = rest.strip_prefix("instant at ") {
                let (at, expr) = r
                    .split_once(' ')
                    .ok_or(format!("line {}: bad eval", i + 1))?;
                let at = parse_duration(at).ok_or(format!("line {}: bad time", i + 1))?;
                ev.range = (at, at, 0);
                ev.expr = expr.trim().to_string();
            } else if let Some(r) = rest.strip_prefix("range from ") {
                let parts: Vec<&str> = r.splitn(6, ' ').collect();
                if parts.len() < 6 || parts[1] != "to" || parts[3] != "step" {
                    return Err(format!("line {}: bad range eval", i + 1));
                }
                let s = parse_duration(parts[0]).ok_or("bad start")?;
                let e = parse_duration(parts[2]).ok_or("bad end")?;
                let st = parse_duration(parts[4]).ok_or("bad step")?;
                ev.range = (s, e, st);
                ev.instant = false;
                ev.expr = parts[5].trim().to_string();
            } else {
                return Err(format!("line {}: bad eval {rest:?}", i + 1));
            }
            i += 1;
            while i < lines.len() && !lines[i].trim().is_empty() && !is_cmd(lines[i]) {
                let l = lines[i].trim();
                i += 1;
                if l.starts_with('#') {
                    continue;
                }
                if let Some(e) = l.strip_prefix("expect ") {
                    let e = e.trim();
                    if let Some(f) = e.strip_prefix("fail") {
                        ev.fail = true;
                        let f = f.trim();
                        if let Some(m) = f.strip_prefix("msg:") {
                            ev.fail_msg = Some(m.trim().to_string());
                        } else if let Some(m) = f.strip_prefix("regex:") {
                            ev.fail_regex = Some(m.trim().to_string());
                        }
                    } else if e == "ordered" {
                        ev.ordered = true;
                    } else if e.starts_with("warn") {
                        ev.warn = true;
                    } else if e.starts_with("info") {
                        ev.info = true;
                    } else if let Some(s) = e.strip_prefix("string") {
                        let s = s.trim();
                        ev.expected.push(Expect::String(
                            unquote(s).map(|x| x.0).unwrap_or_else(|| s.to_string()),
                        ));
                    }
                    continue;
                }
                if let Some(m) = l.strip_prefix("expected_fail_message ") {
                    ev.fail_msg = Some(m.trim().to_string());
                    continue;
                }
                if let Some(m) = l.strip_prefix("expected_fail_regexp ") {
                    ev.fail_regex = Some(m.trim().to_string());
                    continue;
                }
                if l.contains("{{") {
                    ev.histogram_expected = true;
                }
                if let Some(v) = parse_float(l) {
                    ev.expected.push(Expect::Scalar(v));
                    continue;
                }
                if l.starts_with('"') {
                    ev.expected
                        .push(Expect::String(unquote(l).map(|x| x.0).unwrap_or_default()));
                    continue;
                }
                let (labels, rest) =
                    parse_series_desc(l).ok_or(format!("line {}: bad expectation {l:?}", i))?;
                let vals = parse_values(rest).ok_or(format!("line {}: bad values {rest:?}", i))?;
                if vals.iter().any(|v| matches!(v, Val::Histogram)) {
                    ev.histogram_expected = true;
                }
                ev.expected.push(Expect::Series(labels, vals));
            }
            cmds.push(Cmd::Eval(Box::new(ev)));
            continue;
        }
        return Err(format!("line {}: unknown command {t:?}", i + 1));
    }
    Ok(cmds)
}

// ---------------------------------------------------------------- running

fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::MIN_POSITIVE;
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < 1e-6 * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < 1e-6
}

enum Outcome {
    Pass,
    Fail(String),
    Skip(&'static str),
}

fn fmt_vals(v: &[Val]) -> String {
    v.iter()
        .map(|x| match x {
            Val::Float(f) => f.to_string(),
            Val::Missing => "_".into(),
            Val::Histogram => "{{..}}".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn compare(ev: &Eval, got: QueryValue) -> Result<(), String> {
    // Actual results as (labels, values per step).
    let steps = if ev.instant {
        1
    } else {
        ((ev.range.1 - ev.range.0) / ev.range.2 + 1) as usize
    };
    let actual: Vec<(Labels, Vec<Val>)> = match got {
        QueryValue::Scalar { v, .. } => {
            return match ev.expected.as_slice() {
                [Expect::Scalar(e)] if almost_equal(*e, v) => Ok(()),
                [Expect::Series(l, vals)] if l.is_empty() && vals.len() == 1 => match vals[0] {
                    Val::Float(e) if almost_equal(e, v) => Ok(()),
                    _ => Err(format!("scalar {v}, want {:?}", ev.expected)),
                },
                _ => Err(format!("scalar {v}, want {:?}", ev.expected)),
            };
        }
        QueryValue::String { v, .. } => {
            return match ev.expected.as_slice() {
                [Expect::String(e)] if *e == v => Ok(()),
                _ => Err(format!("string {v:?}, want {:?}", ev.expected)),
            };
        }
        QueryValue::Vector(vs) => vs
            .into_iter()
            .map(|(l, _, v)| (l, vec![Val::Float(v)]))
            .collect(),
        QueryValue::Matrix(ms) => {
            if ev.instant {
                // A range vector from an instant query: the raw samples in order.
                ms.into_iter()
                    .map(|s| {
                        (
                            s.labels,
                            s.samples.iter().map(|x| Val::Float(x.v)).collect(),
                        )
                    })
                    .collect()
            } else {
                ms.into_iter()
                    .map(|s| {
                        let mut vals = vec![Val::Missing; steps];
                        for x in s.samples {
                            let i = ((x.t - ev.range.0) / ev.range.2) as usize;
                            if i < steps {
                                vals[i] = Val::Float(x.v);
                            }
                        }
                        (s.labels, vals)
                    })
                    .collect()
            }
        }
    };
    let expected: Vec<(&Labels, &Vec<Val>)> = ev
        .expected
        .iter()
        .filter_map(|e| match e {
            Expect::Series(l, v) => Some((l, v)),
            _ => None,
        })
        .collect();
    if expected.len() != ev.expected.len() {
        return Err(format!(
            "got a vector/matrix of {} series, want {:?}",
            actual.len(),
            ev.expected
        ));
    }
    if actual.len() != expected.len() {
        let got: Vec<String> = actual
            .iter()
            .map(|(l, v)| format!("{l} {}", fmt_vals(v)))
            .collect();
        return Err(format!(
            "got {} series, want {}: got {got:?}",
            actual.len(),
            expected.len()
        ));
    }
    for (pos, (el, ev_vals)) in expected.iter().enumerate() {
        let Some((ai, (_, av))) = actual.iter().enumerate().find(|(_, (al, _))| al == *el) else {
            let got: Vec<String> = actual.iter().map(|(l, _)| l.to_string()).collect();
            return Err(format!("missing series {el}; got {got:?}"));
        };
        if ev.ordered && ai != pos {
            return Err(format!("series {el} at position {ai}, want {pos}"));
        }
        // Range expectations may omit trailing missing steps.
        let n = ev_vals.len().max(av.len());
        for k in 0..n {
            let e = ev_vals.get(k).cloned().unwrap_or(Val::Missing);
            let a = av.get(k).cloned().unwrap_or(Val::Missing);
            let ok = match (&e, &a) {
                (Val::Missing, Val::Missing) => true,
                (Val::Float(x), Val::Float(y)) => almost_equal(*x, *y),
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "series {el}: got [{}], want [{}]",
                    fmt_vals(av),
                    fmt_vals(ev_vals)
                ));
            }
        }
    }
    Ok(())
}

/// Does the expression name `metric` as a whole identifier?
fn mentions(expr: &str, metric: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    expr.match_indices(metric).any(|(i, _)| {
        let before = expr[..i].chars().next_back();
        let after = expr[i + metric.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Does any selector of the expression select a series that holds native histograms?
fn selects_histograms(e: &promql_parser::parser::Expr, hist: &[Labels]) -> bool {
    use promql_parser::parser::Expr;
    let vs_hits = |vs: &promql_parser::parser::VectorSelector| -> bool {
        let groups: Vec<&Vec<promql_parser::label::Matcher>> = if vs.matchers.or_matchers.is_empty()
        {
            vec![&vs.matchers.matchers]
        } else {
            vs.matchers.or_matchers.iter().collect()
        };
        hist.iter().any(|l| {
            groups.iter().any(|ms| {
                vs.name
                    .as_ref()
                    .is_none_or(|n| l.metric_name() == Some(n.as_str()))
                    && ms.iter().all(|m| {
                        let v = l.get(&m.name).unwrap_or("");
                        let op = match &m.op {
                            promql_parser::label::MatchOp::Equal => hearth_core::MatchOp::Equal,
                            promql_parser::label::MatchOp::NotEqual => {
                                hearth_core::MatchOp::NotEqual
                            }
                            promql_parser::label::MatchOp::Re(_) => {
                                hearth_core::MatchOp::RegexMatch
                            }
                            promql_parser::label::MatchOp::NotRe(_) => {
                                hearth_core::MatchOp::RegexNoMatch
                            }
                        };
                        hearth_core::Matcher::new(op, &m.name, &m.value)
                            .is_ok_and(|hm| hm.matches(v))
                    })
            })
        })
    };
    match e {
        Expr::VectorSelector(vs) => vs_hits(vs),
        Expr::MatrixSelector(ms) => vs_hits(&ms.vs),
        Expr::Aggregate(a) => {
            selects_histograms(&a.expr, hist)
                || a.param
                    .as_ref()
                    .is_some_and(|p| selects_histograms(p, hist))
        }
        Expr::Unary(u) => selects_histograms(&u.expr, hist),
        Expr::Binary(b) => selects_histograms(&b.lhs, hist) || selects_histograms(&b.rhs, hist),
        Expr::Paren(p) => selects_histograms(&p.expr, hist),
        Expr::Subquery(s) => selects_histograms(&s.expr, hist),
        Expr::Call(c) => c.args.args.iter().any(|a| selects_histograms(a, hist)),
        _ => false,
    }
}

async fn run_eval(
    head: &Arc<Head>,
    ev: &Eval,
    histogram_metrics: &[String],
    histogram_series: &[Labels],
) -> Outcome {
    if ev.histogram_expected {
        return Outcome::Skip("native histograms");
    }
    if histogram_metrics.iter().any(|m| mentions(&ev.expr, m)) {
        return Outcome::Skip("native histograms");
    }
    if Engine::parse(&ev.expr).is_ok_and(|e| selects_histograms(&e, histogram_series)) {
        return Outcome::Skip("native histograms");
    }
    // As Prometheus' own test engine: delayed name removal on (name_label_dropping.test
    // depends on it; every other file passes either way).
    let engine = Engine::new(
        Arc::new(HeadQueryable(head.clone())),
        EngineOptions {
            delayed_name_removal: true,
            ..EngineOptions::default()
        },
    );
    let tenant = Tenant::anonymous();
    let res = match Engine::parse(&ev.expr) {
        Err(e) => Err(e),
        Ok(expr) => {
            if ev.instant {
                engine.instant(&tenant, &expr, ev.range.0).await
            } else {
                engine
                    .range(&tenant, &expr, ev.range.0, ev.range.1, ev.range.2)
                    .await
            }
        }
    };
    match (res, ev.fail) {
        (Err(e), true) => {
            let msg = e.to_string();
            if let Some(want) = &ev.fail_msg {
                if msg != *want && !msg.ends_with(want.as_str()) {
                    return Outcome::Fail(format!("failed with {msg:?}, want message {want:?}"));
                }
            }
            if let Some(re) = &ev.fail_regex {
                match regex::Regex::new(re) {
                    Ok(r) if r.is_match(&msg) => {}
                    _ => return Outcome::Fail(format!("failed with {msg:?}, want /{re}/")),
                }
            }
            Outcome::Pass
        }
        (Err(e), false) => Outcome::Fail(format!("error: {e}")),
        (Ok(_), true) => Outcome::Fail("succeeded, want an error".into()),
        (Ok(out), false) => {
            if let Err(e) = compare(ev, out.value) {
                return Outcome::Fail(e);
            }
            // Annotations are checked both ways, as Prometheus' runner does (except for
            // ordered evals).
            let (w, i) = (&out.annotations.warnings, &out.annotations.infos);
            if !ev.ordered {
                if ev.warn && w.is_empty() {
                    return Outcome::Fail("expected a warning, got none".into());
                }
                if !ev.warn && !w.is_empty() {
                    return Outcome::Fail(format!("unexpected warnings {w:?}"));
                }
                if ev.info && i.is_empty() {
                    return Outcome::Fail("expected an info annotation, got none".into());
                }
                if !ev.info && !i.is_empty() {
                    return Outcome::Fail(format!("unexpected infos {i:?}"));
                }
            }
            Outcome::Pass
        }
    }
}

fn load(
    head: &Head,
    interval: i64,
    series: &[(Labels, Vec<Val>)],
    histogram_metrics: &mut Vec<String>,
) {
    // A series listed twice keeps the later value at a timestamp, as Prometheus' loader.
    let mut merged: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
    for (labels, vals) in series {
        let entry = merged.entry(labels.clone()).or_default();
        for (i, v) in vals.iter().enumerate() {
            match v {
                Val::Float(f) => {
                    entry.insert(i as i64 * interval, *f);
                }
                Val::Missing => {}
                Val::Histogram => {
                    if let Some(n) = labels.metric_name() {
                        if !histogram_metrics.iter().any(|m| m == n) {
                            histogram_metrics.push(n.to_string());
                        }
                    }
                }
            }
        }
    }
    let mut batch = WriteBatch::default();
    for (labels, samples) in &merged {
        let samples: Vec<Sample> = samples.iter().map(|(t, v)| Sample::new(*t, *v)).collect();
        batch.push(labels, &samples);
    }
    let out = head.apply(&Tenant::anonymous(), &batch);
    assert_eq!(
        out.samples_rejected, 0,
        "loading rejected samples: {:?}",
        out.first_rejection
    );
}

fn new_head() -> Arc<Head> {
    // Test data is loaded series by series from time 0: no appendable window applies.
    Arc::new(Head::new(HeadOptions {
        block_range_ms: 1 << 50,
        out_of_order_window_ms: 1 << 50,
    }))
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
    skipped: BTreeMap<&'static str, usize>,
}

/// This crate's directory, read at run time (cargo sets it for test runs), so a test
/// binary reused from another checkout through a shared target directory still finds
/// this checkout's files.
fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test"))
}

/// The corpus directory: `HEARTH_PROMQLTEST_DIR`, or ../shared/promqltest beside the
/// repository. A missing corpus fails the test loudly; it never skips.
fn corpus_dir() -> Option<PathBuf> {
    match std::env::var("HEARTH_PROMQLTEST_DIR") {
        Ok(d) => Some(PathBuf::from(d)),
        Err(_) => {
            let beside = manifest_dir().join("../../../shared/promqltest");
            assert!(
                beside.is_dir(),
                "the PromQL corpus is missing: set HEARTH_PROMQLTEST_DIR to the Prometheus .test files (scripts/test.sh looks beside the clone)"
            );
            Some(beside)
        }
    }
}

/// The error reader (`hearth_promql::syntax`) only runs on queries promql-parser
/// rejects, so it must never object to a query Prometheus accepts: every corpus query
/// promql-parser parses must read as error-free.
#[test]
fn corpus_queries_read_as_valid_by_the_error_reader() {
    let Some(dir) = corpus_dir() else {
        return;
    };
    let mut checked = 0;
    let mut objections = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "test") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let Ok(cmds) = parse_file(&text) else {
            continue;
        };
        for cmd in cmds {
            let Cmd::Eval(ev) = cmd else { continue };
            if promql_parser::parser::parse(&ev.expr).is_err() {
                continue;
            }
            checked += 1;
            let errors = hearth_promql::syntax::diagnose(&ev.expr);
            if !errors.is_empty() {
                objections.push(format!(
                    "{}:{}: {} -> {:?}",
                    path.display(),
                    ev.line,
                    ev.expr,
                    errors
                ));
            }
        }
    }
    println!("error reader: {checked} corpus queries checked");
    assert!(checked > 1000, "only {checked} corpus queries");
    assert!(objections.is_empty(), "{}", objections.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_promql_corpus() {
    let Some(dir) = corpus_dir() else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    let mut per_file: Vec<(String, Tally)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        let cmds = parse_file(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut tally = Tally::default();
        let experimental = match name.as_str() {
            "type_and_unit.test" => Some("experimental feature: type and unit labels"),
            _ => None,
        };
        let duration_exprs = name == "duration_expression.test";
        let mut head = new_head();
        let mut histogram_metrics: Vec<String> = Vec::new();
        let mut histogram_series: Vec<Labels> = Vec::new();
        for c in &cmds {
            match c {
                Cmd::Clear => {
                    head = new_head();
                    histogram_metrics.clear();
                    histogram_series.clear();
                }
                Cmd::Load {
                    interval,
                    series,
                    nhcb,
                } => {
                    if *nhcb {
                        for (l, _) in series {
                            if let Some(base) =
                                l.metric_name().and_then(|n| n.strip_suffix("_bucket"))
                            {
                                if !histogram_metrics.iter().any(|m| m == base) {
                                    histogram_metrics.push(base.to_string());
                                }
                            }
                        }
                    }
                    for (l, vals) in series {
                        if vals.iter().any(|v| matches!(v, Val::Histogram)) {
                            histogram_series.push(l.clone());
                        }
                    }
                    load(&head, *interval, series, &mut histogram_metrics)
                }
                Cmd::Eval(ev) => {
                    let outcome = match experimental {
                        Some(r) => Outcome::Skip(r),
                        // Arithmetic in durations (promql-duration-expr) is experimental in
                        // Prometheus 3.5 and promql-parser 0.11 does not parse it.
                        None if duration_exprs && Engine::parse(&ev.expr).is_err() && !ev.fail => {
                            Outcome::Skip("experimental feature: duration expressions (not parsed by promql-parser)")
                        }
                        None => run_eval(&head, ev, &histogram_metrics, &histogram_series).await,
                    };
                    match outcome {
                        Outcome::Pass => tally.passed += 1,
                        Outcome::Skip(r) => *tally.skipped.entry(r).or_default() += 1,
                        Outcome::Fail(why) => {
                            tally.failed += 1;
                            failures.push(format!("{name}:{} `{}`: {why}", ev.line, ev.expr));
                        }
                    }
                }
            }
        }
        per_file.push((name, tally));
    }
    println!(
        "\n{:<28} {:>7} {:>7} {:>8}",
        "file", "passed", "failed", "skipped"
    );
    let mut total = Tally::default();
    for (name, t) in &per_file {
        let sk: usize = t.skipped.values().sum();
        println!("{:<28} {:>7} {:>7} {:>8}", name, t.passed, t.failed, sk);
        total.passed += t.passed;
        total.failed += t.failed;
        for (r, n) in &t.skipped {
            *total.skipped.entry(r).or_default() += n;
        }
    }
    let skipped: usize = total.skipped.values().sum();
    let rate = 100.0 * total.passed as f64 / (total.passed + total.failed).max(1) as f64;
    println!(
        "{:<28} {:>7} {:>7} {:>8}",
        "total", total.passed, total.failed, skipped
    );
    for (r, n) in &total.skipped {
        println!("  skipped {n}: {r}");
    }
    println!("pass rate (evals needing no native histograms): {rate:.2}%");
    if let Ok(p) = std::env::var("HEARTH_PROMQLTEST_FAILURES") {
        std::fs::write(&p, failures.join("\n") + "\n").unwrap();
    }
    for f in failures.iter().take(40) {
        println!("FAIL {f}");
    }
    let threshold: f64 =
        std::fs::read_to_string(manifest_dir().join("tests/promqltest-threshold.txt"))
            .expect("threshold file")
            .trim()
            .parse()
            .expect("threshold is a percentage");
    println!(
        "{} passed, {} failed, {} skipped",
        total.passed, total.failed, skipped
    );
    assert!(
        rate >= threshold,
        "PromQL corpus pass rate {rate:.2}% fell below the threshold {threshold:.2}%"
    );
}
