//! Routes of /api/v1, in Prometheus' shapes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use hearth_core::{
    tenant_from_header, IngesterStatus, Labels, Matcher, MetricMetadata, Queryable, SelectHints,
    Tenant, TENANT_HEADER,
};
use hearth_promql::{Engine, QueryError};
use promql_parser::parser::Expr;
use serde_json::{json, Value as Json};

use crate::json::{push_labels, query_data};
use crate::params::{parse_duration, parse_time, Params, MAX_TIME_MS, MIN_TIME_MS};

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub multitenancy: bool,
    /// Command-line flags for /api/v1/status/flags.
    pub flags: BTreeMap<String, String>,
    /// The YAML configuration for /api/v1/status/config.
    pub config_yaml: String,
}

/// What /api/v1/status/runtimeinfo reports of the configuration that can change while
/// running (the runtime configuration file's per-tenant limits).
pub trait ConfigStatus: Send + Sync + 'static {
    /// The blocks retention, as Prometheus words it (`15d`, `unlimited`).
    fn storage_retention(&self) -> String;
    /// Whether the last reload succeeded, and when the configuration last loaded.
    fn last_reload(&self) -> (bool, SystemTime);
}

pub struct QuerierState {
    pub queryable: Arc<dyn Queryable>,
    /// Takes `delete_series` requests; `None` when the admin API is off (Prometheus'
    /// `--web.enable-admin-api`).
    pub admin: Option<Arc<dyn crate::deletes::SeriesDeleter>>,
    pub engine: Engine,
    pub status: Arc<dyn IngesterStatus>,
    pub config_status: Arc<dyn ConfigStatus>,
    pub cfg: ApiConfig,
    pub started: SystemTime,
    pub started_instant: Instant,
}

pub fn router(state: Arc<QuerierState>) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .route("/api/v1/status/cluster", get(cluster_status))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(delete_series).put(delete_series),
        )
        .with_state(state)
}

/// An API error in Prometheus' shape.
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    msg: String,
}

impl ApiError {
    fn bad_data(msg: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            msg: msg.into(),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        let (status, kind) = match &e {
            QueryError::BadData(_) => (StatusCode::BAD_REQUEST, "bad_data"),
            QueryError::Execution(_) | QueryError::TooManySamples(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "execution")
            }
            QueryError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            QueryError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            // Prometheus answers 499 (client closed the connection) for canceled queries.
            QueryError::Canceled(_) => {
                (StatusCode::from_u16(499).expect("valid status"), "canceled")
            }
        };
        ApiError {
            status,
            kind,
            msg: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"status": "error", "errorType": self.kind, "error": self.msg});
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn success_raw(data: &str) -> Response {
    let body = format!("{{\"status\":\"success\",\"data\":{data}}}");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A query response with its annotations (and statistics when asked), in Prometheus'
/// shape: `stats` sits inside `data`.
fn query_success(out: &hearth_promql::QueryOutput, with_stats: bool) -> Response {
    let mut data = query_data(&out.value);
    if with_stats {
        let s = &out.stats;
        let stats = json!({
            "timings": {
                "evalTotalTime": s.eval_total_seconds,
                "resultSortTime": s.result_sort_seconds,
                "queryPreparationTime": s.query_preparation_seconds,
                "innerEvalTime": s.inner_eval_seconds,
                "execQueueTime": s.exec_queue_seconds,
                "execTotalTime": s.exec_total_seconds,
            },
            "samples": {
                "totalQueryableSamples": s.total_queryable_samples,
                "peakSamples": s.peak_samples,
            },
        });
        data.pop();
        data.push_str(",\"stats\":");
        data.push_str(&stats.to_string());
        data.push('}');
    }
    let mut body = format!("{{\"status\":\"success\",\"data\":{data}");
    if !out.annotations.warnings.is_empty() {
        body.push_str(",\"warnings\":");
        body.push_str(&Json::from(out.annotations.warnings.clone()).to_string());
    }
    if !out.annotations.infos.is_empty() {
        body.push_str(",\"infos\":");
        body.push_str(&Json::from(out.annotations.infos.clone()).to_string());
    }
    body.push('}');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn success(data: Json) -> Response {
    success_raw(&data.to_string())
}

fn tenant(state: &QuerierState, headers: &HeaderMap) -> Result<Tenant, ApiError> {
    let h = headers.get(TENANT_HEADER).and_then(|v| v.to_str().ok());
    tenant_from_header(h, state.cfg.multitenancy).map_err(|e| ApiError {
        status: StatusCode::UNAUTHORIZED,
        kind: "bad_data",
        msg: e,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None | Some("") => Ok(default),
        Some(s) => parse_time(s)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"{name}\": {e}"))),
    }
}

fn parse_expr(q: &str) -> Result<Expr, ApiError> {
    Engine::parse(q).map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))
}

async fn with_timeout<T>(
    state: &QuerierState,
    p: &Params,
    fut: impl std::future::Future<Output = Result<T, QueryError>>,
) -> Result<T, ApiError> {
    let mut timeout = state.engine.options().timeout;
    if let Some(t) = p.get("timeout") {
        let ms = parse_duration(t)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"timeout\": {e}")))?;
        if ms > 0 {
            timeout = timeout.min(std::time::Duration::from_millis(ms as u64));
        }
    }
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(QueryError::Timeout("query execution").into()),
    }
}

/// A metadata request (/series, /labels, /label/../values) bounded by the query timeout
/// (shortened by a `timeout` parameter), as queries are: 503 `timeout` beyond it.
async fn meta_timeout<T>(
    state: &QuerierState,
    p: &Params,
    fut: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    with_timeout(state, p, async { Ok::<_, QueryError>(fut.await) }).await?
}

async fn query(
    State(s): State<Arc<QuerierState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, &body);
    let tenant = tenant(&s, &headers)?;
    let q = p.get("query").ok_or_else(|| {
        ApiError::bad_data("invalid parameter \"query\": query must not be empty")
    })?;
    let t = time_param(&p, "time", now_ms())?;
    let expr = parse_expr(q)?;
    let res = max_source_resolution(&p)?;
    let out = with_timeout(&s, &p, s.engine.instant_with(&tenant, &expr, t, res)).await?;
    Ok(query_success(
        &out,
        p.get("stats").is_some_and(|v| !v.is_empty()),
    ))
}

async fn query_range(
    State(s): State<Arc<QuerierState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, &body);
    let tenant = tenant(&s, &headers)?;
    let start = match p.get("start") {
        Some(v) => parse_time(v)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"start\": {e}")))?,
        None => {
            return Err(ApiError::bad_data(
                "invalid parameter \"start\": cannot parse \"\" to a valid timestamp",
            ))
        }
    };
    let end = match p.get("end") {
        Some(v) => parse_time(v)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"end\": {e}")))?,
        None => {
            return Err(ApiError::bad_data(
                "invalid parameter \"end\": cannot parse \"\" to a valid timestamp",
            ))
        }
    };
    if end < start {
        return Err(ApiError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = match p.get("step") {
        Some(v) => parse_duration(v)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"step\": {e}")))?,
        None => {
            return Err(ApiError::bad_data(
                "invalid parameter \"step\": cannot parse \"\" to a valid duration",
            ))
        }
    };
    if step <= 0 {
        return Err(ApiError::bad_data("invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"));
    }
    if (end - start) / step > 11000 {
        return Err(ApiError::bad_data("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"));
    }
    let q = p.get("query").ok_or_else(|| {
        ApiError::bad_data("invalid parameter \"query\": query must not be empty")
    })?;
    let expr = parse_expr(q)?;
    let res = max_source_resolution(&p)?;
    let out = with_timeout(
        &s,
        &p,
        s.engine.range_with(&tenant, &expr, start, end, step, res),
    )
    .await?;
    Ok(query_success(
        &out,
        p.get("stats").is_some_and(|v| !v.is_empty()),
    ))
}

/// Thanos' `max_source_resolution`: the coarsest downsampled data a query may read
/// (`0s` or `raw`: raw samples only; `5m`, `1h`, any duration); absent or `auto`: chosen
/// from the step and each selector's window (`None`).
fn max_source_resolution(p: &Params) -> Result<Option<i64>, ApiError> {
    match p.get("max_source_resolution") {
        None | Some("") | Some("auto") => Ok(None),
        Some("raw") => Ok(Some(0)),
        Some(v) => {
            let ms = parse_duration(v).map_err(|e| {
                ApiError::bad_data(format!("invalid parameter \"max_source_resolution\": {e}"))
            })?;
            if ms < 0 {
                return Err(ApiError::bad_data(
                    "invalid parameter \"max_source_resolution\": negative resolution",
                ));
            }
            Ok(Some(ms))
        }
    }
}

/// `match[]` selectors as matcher sets.
fn match_sets(p: &Params, required: bool) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let raw = p.all("match[]");
    if raw.is_empty() && required {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let mut out = Vec::new();
    for m in raw {
        let e = Engine::parse(m)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))?;
        let Expr::VectorSelector(vs) = e else {
            return Err(ApiError::bad_data(format!(
                "invalid parameter \"match[]\": {m} is not a vector selector"
            )));
        };
        let conv = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, ApiError> {
            let mut set = Vec::new();
            for x in ms {
                let op = match &x.op {
                    promql_parser::label::MatchOp::Equal => hearth_core::MatchOp::Equal,
                    promql_parser::label::MatchOp::NotEqual => hearth_core::MatchOp::NotEqual,
                    promql_parser::label::MatchOp::Re(_) => hearth_core::MatchOp::RegexMatch,
                    promql_parser::label::MatchOp::NotRe(_) => hearth_core::MatchOp::RegexNoMatch,
                };
                set.push(
                    Matcher::new(op, &x.name, &x.value)
                        .map_err(|e| ApiError::bad_data(e.to_string()))?,
                );
            }
            if let Some(n) = &vs.name {
                set.push(Matcher::equal("__name__", n));
            }
            Ok(set)
        };
        if vs.matchers.or_matchers.is_empty() {
            out.push(conv(&vs.matchers.matchers)?);
        } else {
            for g in &vs.matchers.or_matchers {
                out.push(conv(g)?);
            }
        }
    }
    Ok(out)
}

fn limit_param(p: &Params) -> Result<usize, ApiError> {
    match p.get("limit") {
        None | Some("") => Ok(0),
        Some(v) => v.parse::<i64>().map(|l| l.max(0) as usize).map_err(|_| {
            ApiError::bad_data(format!(
                "invalid parameter \"limit\": cannot parse {v:?} to a valid limit"
            ))
        }),
    }
}

fn with_limit_warning(mut data: Vec<Json>, limit: usize) -> Response {
    if limit > 0 && data.len() > limit {
        data.truncate(limit);
        let body = json!({"status": "success", "data": data, "warnings": ["results truncated due to limit"]});
        return (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    success(Json::Array(data))
}

/// An ingester that cannot answer a status question: 500, as Prometheus answers a
/// failing storage.
fn internal_error(e: hearth_core::StorageError) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "internal",
        msg: e.to_string(),
    }
}

/// A storage failure while answering a metadata query (Prometheus answers 422).
fn storage_error(e: hearth_core::StorageError) -> ApiError {
    ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        kind: "execution",
        msg: e.to_string(),
    }
}

/// The parameters /series, /labels and /label/../values share.
struct MetaParams {
    tenant: Tenant,
    /// Matcher sets; one empty set (everything) when no `match[]` was given.
    sets: Vec<Vec<Matcher>>,
    start: i64,
    end: i64,
    limit: usize,
}

fn meta_params(
    s: &QuerierState,
    p: &Params,
    headers: &HeaderMap,
    require_match: bool,
) -> Result<MetaParams, ApiError> {
    let tenant = tenant(s, headers)?;
    let sets = match_sets(p, require_match)?;
    Ok(MetaParams {
        tenant,
        sets: if sets.is_empty() {
            vec![Vec::new()]
        } else {
            sets
        },
        start: time_param(p, "start", MIN_TIME_MS)?,
        end: time_param(p, "end", MAX_TIME_MS)?,
        limit: limit_param(p)?,
    })
}

/// `POST|PUT /api/v1/admin/tsdb/delete_series`: 204 once the deletion is durable. As
/// Prometheus: `match[]` required, `start`/`end` default to all time, 500 `unavailable`
/// when the admin API is off.
async fn delete_series(
    State(s): State<Arc<QuerierState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(admin) = &s.admin else {
        return Err(ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "unavailable",
            msg: "admin APIs disabled".into(),
        });
    };
    let p = Params::from_request(&method, &uri, &headers, &body);
    let tenant = tenant(&s, &headers)?;
    let sets = match_sets(&p, true)?;
    let start = time_param(&p, "start", MIN_TIME_MS)?;
    let end = time_param(&p, "end", MAX_TIME_MS)?;
    // What each matching series holds now bounds what is deleted from it (Prometheus
    // never deletes beyond a series' current data): samples written later stay.
    let ends = crate::deletes::series_ends(s.queryable.as_ref(), &tenant, &sets, start, end)
        .await
        .map_err(storage_error)?;
    admin
        .delete_series(&tenant, &sets, start, end, ends)
        .await
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            msg: e.to_string(),
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn series(
    State(s): State<Arc<QuerierState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, &body);
    let MetaParams {
        tenant,
        sets,
        start,
        end,
        limit,
    } = meta_params(&s, &p, &headers, true)?;
    let read = hearth_core::cpu::foreground(async {
        let mut all: BTreeSet<Labels> = BTreeSet::new();
        for set in sets {
            let hints = SelectHints {
                start,
                end,
                func: Some("series".into()),
                ..Default::default()
            };
            let mut st = s
                .queryable
                .select(&tenant, &set, start, end, &hints)
                .await
                .map_err(storage_error)?;
            let mut taken = 0usize;
            while let Some(x) = st.next().await {
                let x = x.map_err(storage_error)?;
                all.insert(x.labels);
                taken += 1;
                // A set's series come sorted: past `limit + 1` of them, none can be
                // among the first `limit + 1` of the answer. Stop reading.
                if limit > 0 && taken > limit {
                    break;
                }
            }
            while limit > 0 && all.len() > limit + 1 {
                all.pop_last();
            }
        }
        Ok(all)
    });
    let all = meta_timeout(&s, &p, read).await?;
    let data: Vec<Json> = all
        .iter()
        .map(|l| {
            let mut out = String::new();
            push_labels(&mut out, l);
            serde_json::from_str(&out).expect("labels are valid JSON")
        })
        .collect();
    Ok(with_limit_warning(data, limit))
}

async fn labels(
    State(s): State<Arc<QuerierState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, &body);
    let MetaParams {
        tenant,
        sets,
        start,
        end,
        limit,
    } = meta_params(&s, &p, &headers, false)?;
    let read = async {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for set in sets {
            let v = s
                .queryable
                .label_names(&tenant, &set, start, end)
                .await
                .map_err(storage_error)?;
            names.extend(v);
        }
        Ok(names)
    };
    let names = meta_timeout(&s, &p, read).await?;
    Ok(with_limit_warning(
        names.into_iter().map(Json::String).collect(),
        limit,
    ))
}

async fn label_values(
    State(s): State<Arc<QuerierState>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, &[]);
    let MetaParams {
        tenant,
        sets,
        start,
        end,
        limit,
    } = meta_params(&s, &p, &headers, false)?;
    // Prometheus 3 accepts UTF-8 names escaped as U__...; plain names are the common case.
    let name = if let Some(rest) = name.strip_prefix("U__") {
        unescape_utf8_name(rest).unwrap_or(name.clone())
    } else {
        name
    };
    let read = async {
        let mut values: BTreeSet<String> = BTreeSet::new();
        for set in sets {
            let v = s
                .queryable
                .label_values(&tenant, &name, &set, start, end)
                .await
                .map_err(storage_error)?;
            values.extend(v);
        }
        Ok(values)
    };
    let values = meta_timeout(&s, &p, read).await?;
    Ok(with_limit_warning(
        values.into_iter().map(Json::String).collect(),
        limit,
    ))
}

/// Prometheus' `U__` escaping: `_` stays, `__` is `_`, `_XX_` is the code point XX (hex).
fn unescape_utf8_name(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        loop {
            match chars.next() {
                Some('_') => break,
                Some(h) if h.is_ascii_hexdigit() => hex.push(h),
                _ => return None,
            }
        }
        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
    }
    Some(out)
}

async fn metadata(
    State(s): State<Arc<QuerierState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, &[]);
    let tenant = tenant(&s, &headers)?;
    let limit = limit_param(&p)?;
    let per_metric = match p.get("limit_per_metric") {
        None | Some("") => 0usize,
        Some(v) => v
            .parse::<i64>()
            .map(|l| l.max(0) as usize)
            .map_err(|_| ApiError::bad_data("invalid parameter \"limit_per_metric\""))?,
    };
    let metric = p.get("metric").filter(|m| !m.is_empty());
    let md = s.status.metadata(&tenant).await.map_err(internal_error)?;
    let mut sorted: Vec<(String, Vec<MetricMetadata>)> = md
        .into_iter()
        .filter(|(k, _)| metric.is_none_or(|m| m == k))
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = serde_json::Map::new();
    for (k, list) in sorted {
        if limit > 0 && out.len() >= limit {
            break;
        }
        let mut items = Vec::new();
        for m in list {
            if per_metric > 0 && items.len() >= per_metric {
                break;
            }
            items.push(json!({"type": m.metric_type, "help": m.help, "unit": m.unit}));
        }
        out.insert(k, Json::Array(items));
    }
    Ok(success(Json::Object(out)))
}

async fn format_query(
    State(_s): State<Arc<QuerierState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, &body);
    let q = p.get("query").unwrap_or("");
    let e = parse_expr(q)?;
    Ok(success(Json::String(e.prettify())))
}

async fn query_exemplars(
    State(s): State<Arc<QuerierState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    // Exemplars are not stored yet: answer the valid empty result Prometheus gives for
    // a query whose series have none, after validating the query.
    let p = Params::from_request(&method, &uri, &headers, &body);
    let _ = tenant(&s, &headers)?;
    let q = p.get("query").ok_or_else(|| {
        ApiError::bad_data("invalid parameter \"query\": query must not be empty")
    })?;
    parse_expr(q)?;
    Ok(success(json!([])))
}

async fn buildinfo() -> ApiResult {
    Ok(success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("HEARTH_GIT_REVISION").unwrap_or("unknown"),
        "branch": "main",
        "buildUser": "hearth",
        "buildDate": "unknown",
        "goVersion": "rust",
    })))
}

async fn flags(State(s): State<Arc<QuerierState>>) -> ApiResult {
    Ok(success(json!(s.cfg.flags)))
}

async fn config(State(s): State<Arc<QuerierState>>) -> ApiResult {
    Ok(success(json!({"yaml": s.cfg.config_yaml})))
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

async fn runtimeinfo(State(s): State<Arc<QuerierState>>) -> ApiResult {
    let start = chrono::DateTime::<chrono::Utc>::from(s.started)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0);
    let (reload_ok, loaded) = s.config_status.last_reload();
    let loaded = chrono::DateTime::<chrono::Utc>::from(loaded)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    Ok(success(json!({
        "startTime": start,
        "CWD": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": reload_ok,
        "lastConfigTime": loaded,
        "corruptionCount": s.status.wal_corruptions().await.map_err(internal_error)?,
        "goroutineCount": threads,
        "GOMAXPROCS": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "GOMEMLIMIT": i64::MAX,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": s.config_status.storage_retention(),
        "rssBytes": rss_bytes(),
        "uptimeSeconds": s.started_instant.elapsed().as_secs(),
    })))
}

/// `/api/v1/status/cluster[?digests=true]`: the ingester nodes and shard groups
/// (crate::cluster); with `digests`, each replica's head digest (a pass over every
/// sample of every head: for checks).
async fn cluster_status(
    State(s): State<Arc<QuerierState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, &[]);
    let digests = match p.get("digests") {
        None | Some("") | Some("false") | Some("0") => false,
        Some("true") | Some("1") => true,
        Some(v) => {
            return Err(ApiError::bad_data(format!(
                "digests: {v:?} is not a boolean"
            )))
        }
    };
    let nodes = s.status.replicas(digests).await.map_err(internal_error)?;
    Ok(success(crate::cluster::cluster_view(&nodes)))
}

async fn tsdb_status(
    State(s): State<Arc<QuerierState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> ApiResult {
    let p = Params::from_request(&method, &uri, &headers, &[]);
    let tenant = tenant(&s, &headers)?;
    let limit = match p.get("limit") {
        None | Some("") => 10,
        Some(v) => match v.parse::<usize>() {
            Ok(l) if l > 0 => l,
            _ => return Err(ApiError::bad_data("limit must be a positive number")),
        },
    };
    let st = s
        .status
        .tsdb_status(&tenant, limit)
        .await
        .map_err(internal_error)?;
    let pairs = |v: &[(String, u64)]| -> Json {
        Json::Array(
            v.iter()
                .map(|(n, c)| json!({"name": n, "value": c}))
                .collect(),
        )
    };
    Ok(success(json!({
        "headStats": {
            "numSeries": st.num_series,
            "numLabelPairs": st.num_label_pairs,
            "chunkCount": st.chunk_count,
            "minTime": st.min_time,
            "maxTime": st.max_time,
        },
        "seriesCountByMetricName": pairs(&st.series_count_by_metric_name),
        "labelValueCountByLabelName": pairs(&st.label_value_count_by_label_name),
        "memoryInBytesByLabelName": pairs(&st.memory_in_bytes_by_label_name),
        "seriesCountByLabelValuePair": pairs(&st.series_count_by_label_value_pair),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_names() {
        assert_eq!(unescape_utf8_name("my_2e_name").unwrap(), "my.name");
        assert_eq!(unescape_utf8_name("a__b").unwrap(), "a_b");
    }
}
