//! The evaluator: an expression evaluated over every step of a query at once.
//!
//! Evaluation has two phases, as in Prometheus: first every selector's matchers and
//! time range are pushed down to the `Queryable` and fetched (concurrently), then the
//! tree is evaluated without I/O. Each node yields a value for all steps, so a range
//! query never re-walks the tree per step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use hearth_core::{
    Labels, MatchOp, Matcher, Queryable, Sample, SelectHints, SeriesData, Tenant, METRIC_NAME,
};
use promql_parser::parser::{self, AtModifier, Expr, Offset, VectorSelector};

use crate::value::{MatrixArg, QueryValue, RangeSeries, StepSeries, Value};
use crate::{aggregate, binary, functions};

/// Engine settings, as Prometheus' flags name them.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// `--query.lookback-delta`, default 5 m.
    pub lookback_delta_ms: i64,
    /// `--query.max-samples`, default 50,000,000.
    pub max_samples: usize,
    /// `--query.timeout`, default 2 m.
    pub timeout: Duration,
    /// Default subquery step (the global evaluation interval), default 1 m.
    pub default_subquery_step_ms: i64,
    /// `--query.max-concurrency`: queries evaluated at once; more wait their turn.
    pub max_concurrency: usize,
    /// Prometheus' `promql-delayed-name-removal` (experimental, off by default): drop
    /// `__name__` only when the query finishes, so label functions can still read it.
    pub delayed_name_removal: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            default_subquery_step_ms: 60_000,
            max_concurrency: 20,
            delayed_name_removal: false,
        }
    }
}

/// Errors, in Prometheus' API categories.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{0}")]
    BadData(String),
    #[error("{0}")]
    Execution(String),
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    #[error("{0}")]
    Internal(String),
    #[error("query was canceled in {0}")]
    Canceled(&'static str),
}

/// A failing source (a store gateway down, a bucket unreachable) is Prometheus'
/// `ErrStorage`: an internal error (500), so clients and query frontends retry it; a
/// request the source refused stays an execution error (422).
fn storage_error(e: hearth_core::StorageError) -> QueryError {
    match e {
        hearth_core::StorageError::Invalid(m) => QueryError::Execution(m),
        other => QueryError::Internal(other.to_string()),
    }
}

pub struct Engine {
    opts: EngineOptions,
    queryable: Arc<dyn Queryable>,
    limiter: Arc<tokio::sync::Semaphore>,
}

/// Sets the cancel flag when the query's future is dropped (the client went away or a
/// timeout fired), so the evaluation thread stops at its next check.
struct CancelOnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Per-query statistics, as Prometheus' `stats=all` reports them.
#[derive(Clone, Debug, Default)]
pub struct QueryStats {
    pub exec_queue_seconds: f64,
    pub query_preparation_seconds: f64,
    pub inner_eval_seconds: f64,
    pub result_sort_seconds: f64,
    pub eval_total_seconds: f64,
    pub exec_total_seconds: f64,
    pub total_queryable_samples: u64,
    pub peak_samples: u64,
}

/// What the selectors fetched: range selectors decoded into samples (their windows need
/// random access); instant selectors kept as chunks, decoded while they are evaluated
/// so their samples are never materialised.
#[derive(Default)]
pub(crate) struct Fetched {
    decoded: HashMap<usize, Arc<Vec<RangeSeries>>>,
    raw: HashMap<usize, RawSelection>,
}

pub(crate) struct RawSelection {
    series: Vec<hearth_core::Series>,
    mint: i64,
    maxt: i64,
}

impl Fetched {
    pub(crate) fn get(&self, key: &usize) -> Option<&Arc<Vec<RangeSeries>>> {
        self.decoded.get(key)
    }
}

struct Fetch {
    key: usize,
    matcher_sets: Vec<Vec<Matcher>>,
    mint: i64,
    maxt: i64,
    hints: SelectHints,
    /// Keep chunks undecoded (an instant selector with one matcher set).
    raw: bool,
    /// The windows a range selector is evaluated over, when known exactly.
    windows: Option<StepWindows>,
}

/// The windows `(end - back, end]` of a range selector, one per step, in data time
/// (offset applied): ends `first, first + step, ...` up to `last`. Chunks that fall in
/// no window are not decoded: with a step longer than the range (`rate(x[5m])` every
/// hour) most of a long range query's chunks are between windows.
#[derive(Clone, Copy, Debug, PartialEq)]
struct StepWindows {
    first: i64,
    step: i64,
    last: i64,
    back: i64,
}

impl StepWindows {
    /// Whether a chunk holding samples in `[min_t, max_t]` has any in some window.
    fn needs(&self, min_t: i64, max_t: i64) -> bool {
        // The first window end at or after min_t; the window (end - back, end] then
        // holds a sample of the chunk iff end - back < max_t. Later windows end later.
        let end = if min_t <= self.first {
            self.first as i128
        } else if self.step <= 0 {
            return false;
        } else {
            let (first, step) = (self.first as i128, self.step as i128);
            let k = (min_t as i128 - first + step - 1) / step;
            first + k * step
        };
        end <= self.last as i128 && end - (self.back as i128) < max_t as i128
    }
}

enum FetchResult {
    Decoded(Vec<RangeSeries>),
    Raw(RawSelection),
}

pub(crate) struct Ctx<'a> {
    /// Evaluation timestamps (ms).
    pub ts: Vec<i64>,
    pub query_start: i64,
    pub query_end: i64,
    pub data: &'a Fetched,
    pub opts: &'a EngineOptions,
    pub samples: usize,
    pub annotations: Annotations,
    pub deadline: std::time::Instant,
    pub cancel: Arc<std::sync::atomic::AtomicBool>,
}

/// Warnings and infos of a query, as Prometheus reports them beside the result.
#[derive(Clone, Debug, Default)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn warn(&mut self, msg: String) {
        let msg = format!("PromQL warning: {msg}");
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }
    pub fn info(&mut self, msg: String) {
        let msg = format!("PromQL info: {msg}");
        if !self.infos.contains(&msg) {
            self.infos.push(msg);
        }
    }
}

/// A query's value, its annotations and statistics.
#[derive(Clone, Debug)]
pub struct QueryOutput {
    pub value: QueryValue,
    pub annotations: Annotations,
    pub stats: QueryStats,
}

pub fn duration_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn at_ms(at: &Option<AtModifier>, start: i64, end: i64) -> Option<i64> {
    match at {
        None => None,
        Some(AtModifier::Start) => Some(start),
        Some(AtModifier::End) => Some(end),
        Some(AtModifier::At(t)) => Some(system_time_ms(t)),
    }
}

/// Matcher sets of a selector: the name and matchers, and one set per `or` branch.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let convert = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, QueryError> {
        let mut out = Vec::new();
        for m in ms {
            let op = match &m.op {
                promql_parser::label::MatchOp::Equal => MatchOp::Equal,
                promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
                promql_parser::label::MatchOp::Re(_) => MatchOp::RegexMatch,
                promql_parser::label::MatchOp::NotRe(_) => MatchOp::RegexNoMatch,
            };
            out.push(
                Matcher::new(op, &m.name, &m.value)
                    .map_err(|e| QueryError::BadData(e.to_string()))?,
            );
        }
        if let Some(n) = &vs.name {
            if !out
                .iter()
                .any(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal && &m.value == n)
            {
                out.push(Matcher::equal(METRIC_NAME, n));
            }
        }
        Ok(out)
    };
    let mut sets = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        sets.push(convert(&vs.matchers.matchers)?);
    } else {
        for g in &vs.matchers.or_matchers {
            sets.push(convert(g)?);
        }
    }
    Ok(sets)
}

impl Engine {
    pub fn new(queryable: Arc<dyn Queryable>, opts: EngineOptions) -> Engine {
        let limiter = Arc::new(tokio::sync::Semaphore::new(opts.max_concurrency.max(1)));
        Engine {
            opts,
            queryable,
            limiter,
        }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    pub fn parse(q: &str) -> Result<Expr, QueryError> {
        // Prometheus' own reading first: it rejects what Prometheus rejects, with its
        // positions and messages; promql-parser then builds the AST.
        crate::syntax::check(q).map_err(QueryError::BadData)?;
        parser::parse(q).map_err(QueryError::BadData)
    }

    /// Evaluates `expr` at one instant, from raw samples.
    pub async fn instant(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        t: i64,
    ) -> Result<QueryOutput, QueryError> {
        self.instant_with(tenant, expr, t, Some(0)).await
    }

    /// [`Engine::instant`] reading downsampled data up to `max_resolution` ms (`None`:
    /// raw, as an instant query has no step to size it by).
    pub async fn instant_with(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        t: i64,
        max_resolution: Option<i64>,
    ) -> Result<QueryOutput, QueryError> {
        self.execute(tenant, expr, t, t, 0, Some(max_resolution.unwrap_or(0)))
            .await
    }

    /// Evaluates `expr` at every step of [start, end], choosing the resolution
    /// automatically (see [`Engine::range_with`]).
    pub async fn range(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<QueryOutput, QueryError> {
        self.range_with(tenant, expr, start, end, step, None).await
    }

    /// [`Engine::range`] reading downsampled data up to `max_resolution` ms, Thanos'
    /// `max_source_resolution` (`Some(0)`: raw only). `None` chooses per selector: at most
    /// a fifth of the step and a quarter of the selector's window (its range, or the
    /// lookback delta), so every window still holds several points.
    pub async fn range_with(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        max_resolution: Option<i64>,
    ) -> Result<QueryOutput, QueryError> {
        if step <= 0 {
            return Err(QueryError::BadData("zero or negative query resolution step widths are not accepted. Try a positive integer".into()));
        }
        match expr.value_type() {
            parser::value::ValueType::Vector | parser::value::ValueType::Scalar => {}
            other => {
                return Err(QueryError::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                value_type_name(other)
            )))
            }
        }
        self.execute(tenant, expr, start, end, step, max_resolution)
            .await
    }

    /// Waits for a slot, fetches what every selector needs, then evaluates on a blocking
    /// thread that stops at the deadline or when the caller goes away.
    async fn execute(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        max_resolution: Option<i64>,
    ) -> Result<QueryOutput, QueryError> {
        // Range queries have a positive step (checked by `range_with`).
        let instant = step == 0;
        let began = std::time::Instant::now();
        let deadline = began + self.opts.timeout;
        let _permit =
            match tokio::time::timeout_at(deadline.into(), self.limiter.clone().acquire_owned())
                .await
            {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return Err(QueryError::Internal("query limiter closed".into())),
                Err(_) => return Err(QueryError::Timeout("queue")),
            };
        let queued = began.elapsed();
        // The tree is shared with the evaluation thread; selectors are keyed by their
        // address in this copy.
        let expr = Arc::new(expr.clone());
        let prep_began = std::time::Instant::now();
        let fetched = match tokio::time::timeout_at(
            deadline.into(),
            self.fetch(tenant, &expr, start, end, step, max_resolution),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => return Err(QueryError::Timeout("query preparation")),
        };
        let prepared = prep_began.elapsed();
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let opts = self.opts.clone();
        let peak: u64 = fetched
            .decoded
            .values()
            .map(|v| v.iter().map(|s| s.samples.len() as u64).sum::<u64>())
            .sum();
        let res = tokio::task::spawn_blocking(move || {
            let eval_began = std::time::Instant::now();
            let ts: Vec<i64> = if instant {
                vec![start]
            } else {
                let mut ts = Vec::new();
                let mut t = start;
                while t <= end {
                    ts.push(t);
                    t += step;
                }
                ts
            };
            let mut ctx = Ctx {
                ts: ts.clone(),
                query_start: start,
                query_end: end,
                data: &fetched,
                opts: &opts,
                samples: 0,
                annotations: Annotations::default(),
                deadline,
                cancel,
            };
            let v = finish_names(eval(&mut ctx, &expr)?, ts.len())?;
            let inner = eval_began.elapsed();
            let sort_began = std::time::Instant::now();
            let value = if instant {
                instant_value(v, start)
            } else {
                range_value(v, &ts)?
            };
            let sorted = sort_began.elapsed();
            let stats = QueryStats {
                inner_eval_seconds: inner.as_secs_f64(),
                result_sort_seconds: sorted.as_secs_f64(),
                eval_total_seconds: eval_began.elapsed().as_secs_f64(),
                total_queryable_samples: ctx.samples as u64,
                ..QueryStats::default()
            };
            Ok::<_, QueryError>((value, std::mem::take(&mut ctx.annotations), stats))
        })
        .await
        .map_err(|e| QueryError::Internal(format!("evaluation thread: {e}")))?;
        let (value, annotations, mut stats) = res?;
        stats.exec_queue_seconds = queued.as_secs_f64();
        stats.query_preparation_seconds = prepared.as_secs_f64();
        stats.exec_total_seconds = began.elapsed().as_secs_f64();
        stats.peak_samples = peak;
        Ok(QueryOutput {
            value,
            annotations,
            stats,
        })
    }

    async fn fetch(
        &self,
        tenant: &Tenant,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        max_resolution: Option<i64>,
    ) -> Result<Fetched, QueryError> {
        let mut planner = Planner {
            q_start: start,
            q_end: end,
            opts: &self.opts,
            max_resolution,
            in_subquery: false,
            out: Vec::new(),
        };
        planner.plan(expr, start, end, step, None)?;
        let plan = planner.out;
        let mut out = Fetched::default();
        // What the selectors hold in memory, counted as it is fetched (decoded samples;
        // one per series kept as chunks, the least its evaluation will count), so a
        // query over too much data stops while it fetches, not after.
        let held = std::sync::atomic::AtomicUsize::new(0);
        let max_samples = self.opts.max_samples;
        let hold = |n: usize| {
            let total = held.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
            if total > max_samples {
                Err(QueryError::TooManySamples("query execution"))
            } else {
                Ok(())
            }
        };
        let futs = plan.into_iter().map(|f| {
            let q = self.queryable.clone();
            let tenant = tenant.clone();
            let hold = &hold;
            async move {
                if f.raw && f.matcher_sets.len() == 1 {
                    let mut series = Vec::new();
                    let mut stream = q
                        .select(&tenant, &f.matcher_sets[0], f.mint, f.maxt, &f.hints)
                        .await
                        .map_err(storage_error)?;
                    while let Some(s) = stream.next().await {
                        hold(1)?;
                        series.push(s.map_err(storage_error)?);
                    }
                    return Ok::<_, QueryError>((
                        f.key,
                        FetchResult::Raw(RawSelection {
                            series,
                            mint: f.mint,
                            maxt: f.maxt,
                        }),
                    ));
                }
                let mut all: Vec<RangeSeries> = Vec::new();
                for ms in &f.matcher_sets {
                    let mut stream = q
                        .select(&tenant, ms, f.mint, f.maxt, &f.hints)
                        .await
                        .map_err(storage_error)?;
                    while let Some(s) = stream.next().await {
                        let s = s.map_err(storage_error)?;
                        let samples = decode(&s.data, f.mint, f.maxt, f.windows.as_ref())?;
                        hold(samples.len())?;
                        all.push(RangeSeries {
                            labels: s.labels,
                            samples,
                        });
                    }
                }
                // One matcher set from one source has no duplicates to merge; the
                // result is sorted where the API needs it.
                let all = if f.matcher_sets.len() > 1 {
                    merge_same_series(all)
                } else {
                    all
                };
                Ok::<_, QueryError>((f.key, FetchResult::Decoded(all)))
            }
        });
        // Decoding chunks into samples is CPU work: off the async workers.
        let results = hearth_core::cpu::foreground(futures::future::join_all(futs)).await;
        for r in results {
            match r? {
                (k, FetchResult::Decoded(v)) => {
                    out.decoded.insert(k, Arc::new(v));
                }
                (k, FetchResult::Raw(r)) => {
                    out.raw.insert(k, r);
                }
            }
        }
        Ok(out)
    }
}

/// Removes the names delayed name removal kept, then checks that no two series of the
/// result are the same (as Prometheus does when the query finishes).
fn finish_names(v: Value, steps: usize) -> Result<Value, QueryError> {
    match v {
        Value::Vector(mut vs) if vs.iter().any(|s| s.drop_name) => {
            for s in vs.iter_mut().filter(|s| s.drop_name) {
                s.labels = s.labels.without_metric_name();
                s.drop_name = false;
            }
            crate::functions::check_duplicates(&vs, steps)?;
            Ok(Value::Vector(vs))
        }
        other => Ok(other),
    }
}

/// Labels of a result whose name an operation drops: now, or (delayed removal) when the
/// query finishes.
pub(crate) fn drop_name(ctx: &Ctx<'_>, labels: Labels) -> (Labels, bool) {
    if ctx.opts.delayed_name_removal {
        (labels, true)
    } else {
        (labels.without_metric_name(), false)
    }
}

fn instant_value(v: Value, t: i64) -> QueryValue {
    match v {
        Value::Scalar(s) => QueryValue::Scalar { t, v: s[0] },
        Value::String(s) => QueryValue::String { t, v: s },
        Value::Vector(vs) => QueryValue::Vector(
            vs.into_iter()
                .filter_map(|s| s.values[0].map(|v| (s.labels, t, v)))
                .collect(),
        ),
        Value::Matrix(m) => {
            let te = m.at_ms.unwrap_or(t) - m.offset_ms;
            QueryValue::Matrix(
                m.series
                    .iter()
                    .map(|s| RangeSeries {
                        labels: s.labels.clone(),
                        samples: s
                            .samples
                            .iter()
                            .copied()
                            .filter(|x| x.t > te - m.range_ms && x.t <= te)
                            .collect(),
                    })
                    .filter(|s| !s.samples.is_empty())
                    .collect(),
            )
        }
    }
}

fn range_value(v: Value, ts: &[i64]) -> Result<QueryValue, QueryError> {
    let series = match v {
        Value::Scalar(s) => vec![StepSeries::new(
            Labels::empty(),
            s.into_iter().map(Some).collect(),
        )],
        Value::Vector(vs) => vs,
        _ => {
            return Err(QueryError::Internal(
                "range query produced a non-vector".into(),
            ))
        }
    };
    let mut out: Vec<RangeSeries> = series
        .into_iter()
        .map(|s| RangeSeries {
            labels: s.labels,
            samples: ts
                .iter()
                .zip(s.values)
                .filter_map(|(t, v)| v.map(|v| Sample { t: *t, v }))
                .collect(),
        })
        .filter(|s| !s.samples.is_empty())
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(QueryValue::Matrix(out))
}

fn value_type_name(t: parser::value::ValueType) -> &'static str {
    match t {
        parser::value::ValueType::Vector => "vector",
        parser::value::ValueType::Scalar => "scalar",
        parser::value::ValueType::Matrix => "range vector",
        parser::value::ValueType::String => "string",
    }
}

/// Sorts by labels and merges series that came from several sources or `or` branches.
fn merge_same_series(mut all: Vec<RangeSeries>) -> Vec<RangeSeries> {
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<RangeSeries> = Vec::with_capacity(all.len());
    for s in all {
        match out.last_mut() {
            Some(last) if last.labels == s.labels => {
                last.samples.extend(s.samples);
                last.samples.sort_by_key(|x| x.t);
                last.samples.dedup_by_key(|x| x.t);
            }
            _ => out.push(s),
        }
    }
    out
}

/// The samples of `data` in [mint, maxt], sorted, each timestamp once. With `windows`,
/// chunks that hold no sample of any window are skipped (their samples could not be
/// looked at).
fn decode(
    data: &SeriesData,
    mint: i64,
    maxt: i64,
    windows: Option<&StepWindows>,
) -> Result<Vec<Sample>, QueryError> {
    let wanted = |min_t: i64, max_t: i64| {
        max_t >= mint && min_t <= maxt && windows.is_none_or(|w| w.needs(min_t, max_t))
    };
    match data {
        SeriesData::Samples(s) => Ok(s
            .iter()
            .filter(|x| x.t >= mint && x.t <= maxt)
            .copied()
            .collect()),
        SeriesData::Chunks(chunks) => {
            let declared: usize = chunks
                .iter()
                .filter(|c| wanted(c.min_t, c.max_t))
                .map(|c| {
                    c.data
                        .get(..2)
                        .map_or(0, |h| u16::from_be_bytes([h[0], h[1]]) as usize)
                })
                .sum();
            let mut out = Vec::with_capacity(declared);
            let mut sorted = true;
            for c in chunks {
                if !wanted(c.min_t, c.max_t) {
                    continue;
                }
                let it = hearth_series::chunkenc::XorIterator::new(&c.data)
                    .map_err(|e| QueryError::Internal(e.to_string()))?;
                for (t, v) in it {
                    if t < mint || t > maxt {
                        continue;
                    }
                    if let Some(last) = out.last() {
                        let last: &Sample = last;
                        if t <= last.t {
                            sorted = false;
                        }
                    }
                    out.push(Sample { t, v });
                }
            }
            if !sorted {
                out.sort_by_key(|x| x.t);
                out.dedup_by_key(|x| x.t);
            }
            Ok(out)
        }
    }
}

/// The first instant or range selector of an expression, depth first.
fn first_vector_selector(e: &Expr) -> Option<&VectorSelector> {
    match e {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(ms) => Some(&ms.vs),
        Expr::Aggregate(a) => first_vector_selector(&a.expr),
        Expr::Unary(u) => first_vector_selector(&u.expr),
        Expr::Binary(b) => first_vector_selector(&b.lhs).or_else(|| first_vector_selector(&b.rhs)),
        Expr::Paren(p) => first_vector_selector(&p.expr),
        Expr::Subquery(s) => first_vector_selector(&s.expr),
        Expr::Call(c) => c.args.args.iter().find_map(|a| first_vector_selector(a)),
        _ => None,
    }
}

/// Walks the tree like the evaluator and records what each selector needs: its
/// matchers and the time span the steps that evaluate it look at.
struct Planner<'a> {
    /// The query's own start and end (what `@ start()` / `@ end()` mean).
    q_start: i64,
    q_end: i64,
    opts: &'a EngineOptions,
    /// The query's `max_source_resolution`; `None`: chosen per selector.
    max_resolution: Option<i64>,
    /// Inside a subquery the steps are the subquery's, aligned to its step: their
    /// windows are not computed here, so nothing is skipped.
    in_subquery: bool,
    out: Vec<Fetch>,
}

/// One selection to plan: steps in [start, end] (before offset), each looking `back` ms.
struct Span<'f> {
    start: i64,
    end: i64,
    offset: i64,
    back: i64,
    step: i64,
    range: i64,
    func: Option<&'f str>,
}

impl Planner<'_> {
    /// `[start, end]` of the steps, or the pinned time of an `@` modifier.
    fn pinned(&self, at: &Option<AtModifier>, start: i64, end: i64) -> (i64, i64) {
        match at_ms(at, self.q_start, self.q_end) {
            Some(a) => (a, a),
            None => (start, end),
        }
    }

    fn push(&mut self, key: usize, matcher_sets: Vec<Vec<Matcher>>, sp: Span<'_>, raw: bool) {
        let window = if sp.range > 0 { sp.range } else { sp.back };
        let max_resolution = match self.max_resolution {
            Some(r) => r.max(0),
            None if sp.step > 0 => (sp.step / 5).min(window / 4),
            None => 0,
        };
        // Range selectors outside subqueries: their windows are the query's steps.
        let windows = (!raw && sp.range > 0 && !self.in_subquery).then_some(StepWindows {
            first: sp.start - sp.offset,
            step: sp.step,
            last: sp.end - sp.offset,
            back: sp.back,
        });
        self.out.push(Fetch {
            key,
            windows,
            matcher_sets,
            mint: sp.start - sp.offset - sp.back + 1,
            maxt: sp.end - sp.offset,
            hints: SelectHints {
                start: sp.start - sp.offset - sp.range,
                end: sp.end - sp.offset,
                step: sp.step,
                range: sp.range,
                func: sp.func.map(str::to_string),
                unsorted: true,
                max_resolution,
                ..Default::default()
            },
            raw,
        });
    }

    fn plan(
        &mut self,
        e: &Expr,
        start: i64,
        end: i64,
        step: i64,
        func: Option<&str>,
    ) -> Result<(), QueryError> {
        match e {
            Expr::VectorSelector(vs) => {
                let (s, en) = self.pinned(&vs.at, start, end);
                let sp = Span {
                    start: s,
                    end: en,
                    offset: offset_ms(&vs.offset),
                    back: self.opts.lookback_delta_ms,
                    step,
                    range: 0,
                    func,
                };
                self.push(
                    vs as *const VectorSelector as usize,
                    selector_matchers(vs)?,
                    sp,
                    true,
                );
            }
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let (s, en) = self.pinned(&vs.at, start, end);
                let range = duration_ms(&ms.range);
                let sp = Span {
                    start: s,
                    end: en,
                    offset: offset_ms(&vs.offset),
                    back: range,
                    step,
                    range,
                    func,
                };
                self.push(
                    vs as *const VectorSelector as usize,
                    selector_matchers(vs)?,
                    sp,
                    false,
                );
            }
            Expr::Subquery(sq) => {
                let off = offset_ms(&sq.offset);
                let range = duration_ms(&sq.range);
                let sstep = sq
                    .step
                    .as_ref()
                    .map(duration_ms)
                    .unwrap_or(self.opts.default_subquery_step_ms);
                let (s, en) = self.pinned(&sq.at, start, end);
                let outer = std::mem::replace(&mut self.in_subquery, true);
                let planned = self.plan(&sq.expr, s - off - range, en - off, sstep, None);
                self.in_subquery = outer;
                planned?;
            }
            Expr::Aggregate(a) => {
                self.plan(&a.expr, start, end, step, None)?;
                if let Some(p) = &a.param {
                    self.plan(p, start, end, step, None)?;
                }
            }
            Expr::Unary(u) => self.plan(&u.expr, start, end, step, None)?,
            Expr::Binary(b) => {
                self.plan(&b.lhs, start, end, step, None)?;
                self.plan(&b.rhs, start, end, step, None)?;
            }
            Expr::Paren(p) => self.plan(&p.expr, start, end, step, func)?,
            Expr::Call(c) if c.func.name == "info" => {
                // The base expression as usual; then the info series (target_info unless
                // the label selector names others), selected like an instant selector over
                // the time the base's first selector looks at.
                self.plan(&c.args.args[0], start, end, step, None)?;
                let (mut s, mut en, mut off) = (start, end, 0);
                if let Some(vs) = first_vector_selector(&c.args.args[0]) {
                    off = offset_ms(&vs.offset);
                    (s, en) = self.pinned(&vs.at, start, end);
                }
                let mut matchers = Vec::new();
                if let Some(Expr::VectorSelector(sel)) = c.args.args.get(1).map(|b| &**b) {
                    matchers = selector_matchers(sel)?
                        .into_iter()
                        .next()
                        .unwrap_or_default();
                }
                if !matchers.iter().any(|m| m.name == METRIC_NAME) {
                    matchers.push(Matcher::equal(METRIC_NAME, "target_info"));
                }
                let sp = Span {
                    start: s,
                    end: en,
                    offset: off,
                    back: self.opts.lookback_delta_ms,
                    step,
                    range: 0,
                    func: Some("info"),
                };
                self.push(
                    c as *const promql_parser::parser::Call as usize,
                    vec![matchers],
                    sp,
                    false,
                );
            }
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.plan(a, start, end, step, Some(c.func.name))?;
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
        Ok(())
    }
}

impl<'a> Ctx<'a> {
    pub fn steps(&self) -> usize {
        self.ts.len()
    }

    /// A context for evaluating an independent subtree on another thread: same steps,
    /// data, limits and cancellation; its own sample count and annotations, merged back
    /// with [`Ctx::join`].
    pub fn fork(&self) -> Ctx<'a> {
        Ctx {
            ts: self.ts.clone(),
            query_start: self.query_start,
            query_end: self.query_end,
            data: self.data,
            opts: self.opts,
            samples: 0,
            annotations: Annotations::default(),
            deadline: self.deadline,
            cancel: self.cancel.clone(),
        }
    }

    pub fn join(&mut self, other: Ctx<'_>) -> Result<(), QueryError> {
        for w in other.annotations.warnings {
            if !self.annotations.warnings.contains(&w) {
                self.annotations.warnings.push(w);
            }
        }
        for i in other.annotations.infos {
            if !self.annotations.infos.contains(&i) {
                self.annotations.infos.push(i);
            }
        }
        self.add_samples(other.samples)
    }

    /// Stops evaluation at the deadline or when the query was canceled.
    pub fn check(&self) -> Result<(), QueryError> {
        if self.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(QueryError::Canceled("query execution"));
        }
        if std::time::Instant::now() > self.deadline {
            return Err(QueryError::Timeout("query execution"));
        }
        Ok(())
    }

    pub fn add_samples(&mut self, n: usize) -> Result<(), QueryError> {
        self.samples += n;
        if self.samples > self.opts.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        Ok(())
    }
}

/// Evaluates a node over all steps of `ctx`.
pub(crate) fn eval(ctx: &mut Ctx<'_>, e: &Expr) -> Result<Value, QueryError> {
    ctx.check()?;
    match e {
        Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; ctx.steps()])),
        Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
        Expr::Paren(p) => eval(ctx, &p.expr),
        Expr::Unary(u) => match eval(ctx, &u.expr)? {
            Value::Scalar(s) => Ok(Value::Scalar(s.into_iter().map(|v| -v).collect())),
            Value::Vector(vs) => {
                let out: Vec<StepSeries> = vs
                    .into_iter()
                    .map(|s| {
                        let (labels, drop_name) = drop_name(ctx, s.labels);
                        StepSeries {
                            labels,
                            values: s.values.into_iter().map(|v| v.map(|v| -v)).collect(),
                            drop_name,
                        }
                    })
                    .collect();
                crate::functions::check_duplicates(&out, ctx.steps())?;
                Ok(Value::Vector(out))
            }
            _ => Err(QueryError::BadData(
                "unary minus only works on scalars and instant vectors".into(),
            )),
        },
        Expr::VectorSelector(vs) => eval_vector_selector(ctx, vs, false),
        Expr::MatrixSelector(ms) => {
            let vs = &ms.vs;
            let key = vs as *const VectorSelector as usize;
            let data = ctx.data.get(&key).cloned().unwrap_or_default();
            let n: usize = data.iter().map(|s| s.samples.len()).sum();
            ctx.add_samples(n)?;
            Ok(Value::Matrix(MatrixArg {
                series: data,
                range_ms: duration_ms(&ms.range),
                offset_ms: offset_ms(&vs.offset),
                at_ms: at_ms(&vs.at, ctx.query_start, ctx.query_end),
            }))
        }
        Expr::Subquery(sq) => eval_subquery(ctx, sq),
        Expr::Aggregate(a) => aggregate::eval_aggregate(ctx, a),
        Expr::Binary(b) => binary::eval_binary(ctx, b),
        Expr::Call(c) => functions::eval_call(ctx, c),
        Expr::Extension(_) => Err(QueryError::BadData("unsupported expression".into())),
    }
}

/// Instant-vector selection: per step the newest sample in `(te - lookback, te]`,
/// ignoring staleness markers. With `timestamps`, yields sample times (for timestamp()).
pub(crate) fn eval_vector_selector(
    ctx: &mut Ctx<'_>,
    vs: &VectorSelector,
    timestamps: bool,
) -> Result<Value, QueryError> {
    let key = vs as *const VectorSelector as usize;
    let off = offset_ms(&vs.offset);
    let at = at_ms(&vs.at, ctx.query_start, ctx.query_end);
    let lookback = ctx.opts.lookback_delta_ms;
    // The time each step looks back from; an `@` pins them all.
    let tes: Vec<i64> = ctx.ts.iter().map(|&t| at.unwrap_or(t) - off).collect();
    let mut out = Vec::new();
    let mut loaded = 0usize;
    let mut emit = |labels: &Labels, pick: &mut dyn FnMut(&mut dyn FnMut(Sample))| {
        // Walk the samples once, in time order, and give each step the newest sample at
        // or before it (steps increase; with `@` they are all the same).
        let mut values: Vec<Option<f64>> = vec![None; tes.len()];
        let mut k = 0usize;
        let mut last: Option<Sample> = None;
        let mut any = false;
        let mut settle = |k: usize, last: Option<Sample>, values: &mut Vec<Option<f64>>| {
            if let Some(x) = last {
                if x.t > tes[k] - lookback && !hearth_core::is_stale_nan(x.v) {
                    values[k] = Some(if timestamps { x.t as f64 / 1000.0 } else { x.v });
                    loaded += 1;
                    any = true;
                }
            }
        };
        pick(&mut |x: Sample| {
            while k < tes.len() && x.t > tes[k] {
                settle(k, last, &mut values);
                k += 1;
            }
            last = Some(x);
        });
        while k < tes.len() {
            settle(k, last, &mut values);
            k += 1;
        }
        if any {
            out.push(StepSeries::new(labels.clone(), values));
        }
    };
    if let Some(raw) = ctx.data.raw.get(&key) {
        for s in &raw.series {
            let mut err = None;
            emit(&s.labels, &mut |f: &mut dyn FnMut(Sample)| {
                if let Err(e) = for_each_sample(&s.data, raw.mint, raw.maxt, f) {
                    err = Some(e);
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
        }
    } else if let Some(data) = ctx.data.get(&key).cloned() {
        for s in data.iter() {
            emit(&s.labels, &mut |f: &mut dyn FnMut(Sample)| {
                for x in &s.samples {
                    f(*x);
                }
            });
        }
    }
    ctx.add_samples(loaded)?;
    Ok(Value::Vector(out))
}

/// Calls `f` with every sample of `data` in [mint, maxt], in time order, decoding chunks
/// as it goes. Chunks that overlap in time (several sources) are merged first.
fn for_each_sample(
    data: &SeriesData,
    mint: i64,
    maxt: i64,
    f: &mut dyn FnMut(Sample),
) -> Result<(), QueryError> {
    match data {
        SeriesData::Samples(ss) => {
            for x in ss.iter().filter(|x| x.t >= mint && x.t <= maxt) {
                f(*x);
            }
        }
        SeriesData::Chunks(chunks) => {
            let ordered = chunks.windows(2).all(|w| w[0].max_t < w[1].min_t);
            if !ordered {
                for x in decode(data, mint, maxt, None)? {
                    f(x);
                }
                return Ok(());
            }
            for c in chunks {
                if c.max_t < mint {
                    continue;
                }
                if c.min_t > maxt {
                    break;
                }
                let it = hearth_series::chunkenc::XorIterator::new(&c.data)
                    .map_err(|e| QueryError::Internal(e.to_string()))?;
                for (t, v) in it {
                    if t > maxt {
                        break;
                    }
                    if t >= mint {
                        f(Sample { t, v });
                    }
                }
            }
        }
    }
    Ok(())
}

fn eval_subquery(
    ctx: &mut Ctx<'_>,
    sq: &promql_parser::parser::SubqueryExpr,
) -> Result<Value, QueryError> {
    let off = offset_ms(&sq.offset);
    let range = duration_ms(&sq.range);
    let step = sq
        .step
        .as_ref()
        .map(duration_ms)
        .unwrap_or(ctx.opts.default_subquery_step_ms);
    if step <= 0 {
        return Err(QueryError::BadData("subquery step must be positive".into()));
    }
    let at = at_ms(&sq.at, ctx.query_start, ctx.query_end);
    let (first, last) = match at {
        Some(a) => (a, a),
        None => (ctx.ts[0], *ctx.ts.last().expect("at least one step")),
    };
    // The first step-aligned timestamp after (first - offset - range), as Prometheus aligns.
    let lo = first - off - range;
    let mut start = step * lo.div_euclid(step);
    if start <= lo {
        start += step;
    }
    let end = last - off;
    // Bound the work before allocating: every step of a subquery is at least one sample.
    if end >= start {
        let steps = ((end - start) / step + 1) as usize;
        ctx.add_samples(steps)?;
    }
    let mut ts = Vec::new();
    let mut t = start;
    while t <= end {
        ts.push(t);
        t += step;
    }
    let inner_ts = std::mem::replace(&mut ctx.ts, ts.clone());
    let v = if ts.is_empty() {
        Ok(Value::Vector(Vec::new()))
    } else {
        eval(ctx, &sq.expr)
    };
    ctx.ts = inner_ts;
    let series = match v? {
        Value::Vector(vs) => vs
            .into_iter()
            .map(|s| RangeSeries {
                // A subquery's result is a range vector of its own: a delayed name
                // removal of its inner expression takes effect here.
                labels: if s.drop_name {
                    s.labels.without_metric_name()
                } else {
                    s.labels
                },
                samples: ts
                    .iter()
                    .zip(s.values)
                    .filter_map(|(t, v)| v.map(|v| Sample { t: *t, v }))
                    .collect(),
            })
            .collect(),
        Value::Scalar(s) => vec![RangeSeries {
            labels: Labels::empty(),
            samples: ts.iter().zip(s).map(|(t, v)| Sample { t: *t, v }).collect(),
        }],
        _ => {
            return Err(QueryError::BadData(
                "subquery is only allowed on instant vector or scalar".into(),
            ))
        }
    };
    Ok(Value::Matrix(MatrixArg {
        series: Arc::new(series),
        range_ms: range,
        offset_ms: off,
        at_ms: at,
    }))
}
