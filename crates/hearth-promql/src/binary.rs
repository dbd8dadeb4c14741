//! Binary operators: arithmetic, comparisons (filtering or `bool`), set operators, with
//! Prometheus' vector matching (`on`, `ignoring`, `group_left`, `group_right`).

use std::collections::HashMap;

use hearth_core::{Labels, METRIC_NAME};
use promql_parser::parser::{BinaryExpr, Expr, LabelModifier, VectorMatchCardinality};

use crate::engine::{eval, Ctx, QueryError};
use crate::value::{StepSeries, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Result<Op, QueryError> {
        Ok(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => {
                return Err(QueryError::BadData(format!(
                    "unknown binary operator {other:?}"
                )))
            }
        })
    }
    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }
    fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }
}

/// (value, keep) for one pair of operands.
fn apply(op: Op, l: f64, r: f64) -> (f64, bool) {
    match op {
        Op::Add => (l + r, true),
        Op::Sub => (l - r, true),
        Op::Mul => (l * r, true),
        Op::Div => (l / r, true),
        Op::Mod => (l % r, true),
        Op::Pow => (l.powf(r), true),
        Op::Atan2 => (l.atan2(r), true),
        Op::Eq => (l, l == r),
        Op::Ne => (l, l != r),
        Op::Gt => (l, l > r),
        Op::Lt => (l, l < r),
        Op::Ge => (l, l >= r),
        Op::Le => (l, l <= r),
        Op::And | Op::Or | Op::Unless => (l, true),
    }
}

/// Does evaluating this subtree touch storage data (so running it beside another pays)?
fn reads_data(e: &Expr) -> bool {
    match e {
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => true,
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => false,
        Expr::Paren(p) => reads_data(&p.expr),
        Expr::Unary(u) => reads_data(&u.expr),
        Expr::Subquery(s) => reads_data(&s.expr),
        Expr::Aggregate(a) => reads_data(&a.expr),
        Expr::Binary(b) => reads_data(&b.lhs) || reads_data(&b.rhs),
        Expr::Call(c) => c.args.args.iter().any(|a| reads_data(a)),
    }
}

/// Evaluates both operands; when both read data they run on two threads (the two sides
/// of a binary operator are independent until they are matched).
fn eval_sides(ctx: &mut Ctx<'_>, lhs: &Expr, rhs: &Expr) -> Result<(Value, Value), QueryError> {
    if !(reads_data(lhs) && reads_data(rhs)) {
        let l = eval(ctx, lhs)?;
        let r = eval(ctx, rhs)?;
        return Ok((l, r));
    }
    let mut rctx = ctx.fork();
    let (l, r, rctx) = std::thread::scope(|scope| {
        let handle = scope.spawn(move || {
            let r = eval(&mut rctx, rhs);
            (r, rctx)
        });
        let l = eval(ctx, lhs);
        match handle.join() {
            Ok((r, rctx)) => (l, r, Some(rctx)),
            Err(_) => (
                l,
                Err(QueryError::Internal("evaluation thread panicked".into())),
                None,
            ),
        }
    });
    if let Some(rctx) = rctx {
        ctx.join(rctx)?;
    }
    Ok((l?, r?))
}

pub(crate) fn eval_binary(ctx: &mut Ctx<'_>, b: &BinaryExpr) -> Result<Value, QueryError> {
    let delayed = ctx.opts.delayed_name_removal;
    let op = Op::parse(&b.op.to_string())?;
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let (lhs, rhs) = eval_sides(ctx, &b.lhs, &b.rhs)?;
    let n = ctx.steps();
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(
            (0..n)
                .map(|i| {
                    let (v, keep) = apply(op, l[i], r[i]);
                    if op.is_comparison() {
                        if keep {
                            1.0
                        } else {
                            0.0
                        }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Value::Vector(v), Value::Scalar(s)) => Ok(Value::Vector(vector_scalar(
            op,
            v,
            &s,
            false,
            return_bool,
            delayed,
        ))),
        (Value::Scalar(s), Value::Vector(v)) => Ok(Value::Vector(vector_scalar(
            op,
            v,
            &s,
            true,
            return_bool,
            delayed,
        ))),
        (Value::Vector(l), Value::Vector(r)) => {
            let card = b
                .modifier
                .as_ref()
                .map(|m| m.card.clone())
                .unwrap_or(VectorMatchCardinality::OneToOne);
            let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
            if op.is_set() {
                Ok(Value::Vector(set_op(op, l, r, &matching, n)))
            } else {
                vector_vector(op, l, r, &card, &matching, return_bool, n, delayed)
                    .map(Value::Vector)
            }
        }
        _ => Err(QueryError::BadData(
            "binary operators only work on scalars and instant vectors".into(),
        )),
    }
}

fn vector_scalar(
    op: Op,
    v: Vec<StepSeries>,
    s: &[f64],
    swap: bool,
    return_bool: bool,
    delayed: bool,
) -> Vec<StepSeries> {
    let drop_name = !op.is_comparison() || return_bool;
    v.into_iter()
        .filter_map(|series| {
            let values: Vec<Option<f64>> = series
                .values
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    let x = (*x)?;
                    let (l, r) = if swap { (s[i], x) } else { (x, s[i]) };
                    let (mut val, keep) = apply(op, l, r);
                    if op.is_comparison() {
                        if return_bool {
                            return Some(if keep { 1.0 } else { 0.0 });
                        }
                        if !keep {
                            return None;
                        }
                        val = x;
                    }
                    Some(val)
                })
                .collect();
            values.iter().any(Option::is_some).then(|| {
                let (labels, drop) = if !drop_name {
                    (series.labels, series.drop_name)
                } else if delayed {
                    (series.labels, true)
                } else {
                    (series.labels.without_metric_name(), false)
                };
                StepSeries {
                    labels,
                    values,
                    drop_name: drop,
                }
            })
        })
        .collect()
}

fn signature(l: &Labels, matching: &Option<LabelModifier>) -> u64 {
    match matching {
        Some(LabelModifier::Include(ls)) => l.hash_for(&ls.labels, true),
        Some(LabelModifier::Exclude(ls)) => {
            let mut names = ls.labels.clone();
            names.push(METRIC_NAME.to_string());
            l.hash_for(&names, false)
        }
        None => l.without_metric_name().hash64(),
    }
}

fn set_op(
    op: Op,
    l: Vec<StepSeries>,
    r: Vec<StepSeries>,
    matching: &Option<LabelModifier>,
    n: usize,
) -> Vec<StepSeries> {
    let lsig: Vec<u64> = l.iter().map(|s| signature(&s.labels, matching)).collect();
    let rsig: Vec<u64> = r.iter().map(|s| signature(&s.labels, matching)).collect();
    // Per step, the signatures present on the other side.
    let present =
        |sigs: &[u64], side: &[StepSeries], step: usize| -> std::collections::HashSet<u64> {
            side.iter()
                .zip(sigs)
                .filter(|(s, _)| s.values[step].is_some())
                .map(|(_, g)| *g)
                .collect()
        };
    match op {
        Op::And | Op::Unless => {
            let sets: Vec<_> = (0..n).map(|i| present(&rsig, &r, i)).collect();
            l.into_iter()
                .zip(lsig)
                .filter_map(|(s, g)| {
                    let values: Vec<Option<f64>> = s
                        .values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let hit = sets[i].contains(&g);
                            if (op == Op::And) == hit {
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
                .collect()
        }
        _ => {
            let sets: Vec<_> = (0..n).map(|i| present(&lsig, &l, i)).collect();
            let mut out = l;
            for (s, g) in r.into_iter().zip(rsig) {
                let values: Vec<Option<f64>> = s
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| if sets[i].contains(&g) { None } else { *v })
                    .collect();
                if values.iter().any(Option::is_some) {
                    out.push(StepSeries {
                        labels: s.labels,
                        values,
                        drop_name: s.drop_name,
                    });
                }
            }
            out
        }
    }
}

fn result_labels(
    l: &Labels,
    r: &Labels,
    card: &VectorMatchCardinality,
    matching: &Option<LabelModifier>,
    drop_name: bool,
) -> Labels {
    let mut b = l.builder();
    if drop_name {
        b.del(METRIC_NAME);
    }
    if matches!(card, VectorMatchCardinality::OneToOne) {
        match matching {
            Some(LabelModifier::Include(ls)) => {
                let keep: Vec<String> = ls.labels.clone();
                let kept = b.build().filtered(&keep, true);
                return kept;
            }
            Some(LabelModifier::Exclude(ls)) => {
                for n in &ls.labels {
                    b.del(n);
                }
            }
            None => {}
        }
    }
    if let Some(include) = card.labels() {
        for n in &include.labels {
            match r.get(n) {
                Some(v) if !v.is_empty() => {
                    b.set(n, v);
                }
                _ => {
                    b.del(n);
                }
            }
        }
    }
    b.build()
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    op: Op,
    l: Vec<StepSeries>,
    r: Vec<StepSeries>,
    card: &VectorMatchCardinality,
    matching: &Option<LabelModifier>,
    return_bool: bool,
    n: usize,
    delayed: bool,
) -> Result<Vec<StepSeries>, QueryError> {
    // group_right swaps the sides: the "one" side is always `one`.
    let swapped = matches!(card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (&r, &l) } else { (&l, &r) };
    let many_sig: Vec<u64> = many
        .iter()
        .map(|s| signature(&s.labels, matching))
        .collect();
    let one_sig: Vec<u64> = one.iter().map(|s| signature(&s.labels, matching)).collect();
    let drop_name = !op.is_comparison() || return_bool;
    // Matching is decided per series once; per step only presence is checked.
    let mut one_by_sig: HashMap<u64, Vec<usize>> = HashMap::with_capacity(one.len());
    for (j, g) in one_sig.iter().enumerate() {
        one_by_sig.entry(*g).or_default().push(j);
    }
    let mut many_per_sig: HashMap<u64, usize> = HashMap::with_capacity(many.len());
    for g in &many_sig {
        *many_per_sig.entry(*g).or_default() += 1;
    }
    // Output series: one per distinct result label set; (many, one) pairs map to them.
    let mut outs: Vec<(Labels, Vec<Option<f64>>, bool)> = Vec::new();
    let mut by_labels: HashMap<Labels, usize> = HashMap::new();
    let mut by_pair: HashMap<(usize, usize), usize> = HashMap::new();
    let mut seen_many: HashMap<u64, usize> = HashMap::new();
    for step in 0..n {
        seen_many.clear();
        for (i, s) in many.iter().enumerate() {
            let Some(mv) = s.values[step] else { continue };
            let Some(cands) = one_by_sig.get(&many_sig[i]) else {
                continue;
            };
            let mut present = cands
                .iter()
                .copied()
                .filter(|&j| one[j].values[step].is_some());
            let Some(j) = present.next() else { continue };
            if present.next().is_some() {
                let side = if swapped { "left" } else { "right" };
                return Err(QueryError::Execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, ...];many-to-many matching not allowed: matching labels must be unique on one side",
                    one[j].labels.filtered(&[], false),
                    one[j].labels
                )));
            }
            if matches!(card, VectorMatchCardinality::OneToOne)
                && many_per_sig[&many_sig[i]] > 1
                && seen_many.insert(many_sig[i], i).is_some()
            {
                return Err(QueryError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            let ov = one[j].values[step].expect("present");
            let (lv, rv) = if swapped { (ov, mv) } else { (mv, ov) };
            let (mut val, keep) = apply(op, lv, rv);
            if op.is_comparison() {
                if return_bool {
                    val = if keep { 1.0 } else { 0.0 };
                } else if !keep {
                    continue;
                }
            }
            let slot = match by_pair.get(&(i, j)) {
                Some(&k) => k,
                None => {
                    // With delayed removal the name stays until the query finishes.
                    let labels = result_labels(
                        &s.labels,
                        &one[j].labels,
                        card,
                        matching,
                        drop_name && !delayed,
                    );
                    let flag = if drop_name {
                        delayed && labels.metric_name().is_some()
                    } else {
                        s.drop_name
                    };
                    let k = *by_labels.entry(labels.clone()).or_insert_with(|| {
                        outs.push((labels, vec![None; n], flag));
                        outs.len() - 1
                    });
                    by_pair.insert((i, j), k);
                    k
                }
            };
            if outs[slot].1[step].is_some() {
                return Err(QueryError::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                        .into(),
                ));
            }
            outs[slot].1[step] = Some(val);
        }
    }
    Ok(outs
        .into_iter()
        .map(|(labels, values, drop_name)| StepSeries {
            labels,
            values,
            drop_name,
        })
        .collect())
}
