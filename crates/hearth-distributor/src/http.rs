//! POST /api/v1/push (and /api/v1/write): the remote-write receiver.
//!
//! Status codes follow the remote-write specification: 204 stored; 400 for bad data
//! (never retried; the valid rest of the request is stored and the message names the
//! first offending series); 413 above the size limit; 415 for an unsupported content
//! type or encoding; 429/503 only when Hearth cannot take the write now (retried).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hearth_core::{tenant_from_header, Ingester, Overrides, PushError, TENANT_HEADER};
use tracing::debug;

use crate::decode::{decode_request, DecodeError, Protocol};
use crate::rate::RateLimiter;
use crate::validate::Limits;

#[derive(Clone, Debug)]
pub struct DistributorConfig {
    /// Largest decompressed body accepted (413 above). Default 10 MiB.
    pub max_decompressed_bytes: usize,
    /// Per-tenant limits: ingestion rate, series rules, the creation grace period.
    pub overrides: Arc<Overrides>,
    /// Honour `X-Scope-OrgID`; when off every write belongs to `anonymous`.
    pub multitenancy: bool,
}

impl Default for DistributorConfig {
    fn default() -> Self {
        DistributorConfig {
            max_decompressed_bytes: 10 << 20,
            overrides: Arc::new(Overrides::default()),
            multitenancy: false,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl DistributorConfig {
    /// The raw body limit for the HTTP layer: snappy never grows data by more than
    /// about a sixth, so a compressed body above this cannot decompress within limits.
    pub fn max_body_bytes(&self) -> usize {
        self.max_decompressed_bytes + self.max_decompressed_bytes / 6 + 64
    }
}

#[derive(Default)]
pub struct DistributorMetrics {
    pub requests: AtomicU64,
    pub requests_failed: AtomicU64,
    pub samples_received: AtomicU64,
    pub samples_rejected: AtomicU64,
    /// Samples of requests refused whole for the tenant's ingestion rate (429).
    pub rate_limited_samples: AtomicU64,
}

pub struct DistributorState {
    pub ingester: Arc<dyn Ingester>,
    pub cfg: DistributorConfig,
    pub metrics: DistributorMetrics,
    pub rate: RateLimiter,
}

impl DistributorState {
    pub fn new(ingester: Arc<dyn Ingester>, cfg: DistributorConfig) -> DistributorState {
        DistributorState {
            ingester,
            cfg,
            metrics: DistributorMetrics::default(),
            rate: RateLimiter::default(),
        }
    }
}

const V1_PROTO: &str = "prometheus.WriteRequest";
const V2_PROTO: &str = "io.prometheus.write.v2.Request";

/// Picks the message type from `Content-Type`, as the 2.0 specification negotiates it.
pub fn negotiate(content_type: Option<&str>) -> Result<Protocol, String> {
    let Some(ct) = content_type else {
        return Ok(Protocol::V1);
    };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "application/x-protobuf" {
        return Err(format!(
            "unsupported content type {ct:?}: want application/x-protobuf with proto={V1_PROTO} or proto={V2_PROTO}"
        ));
    }
    let mut proto = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("proto") {
                proto = Some(v.trim().trim_matches('"').to_string());
            }
        }
    }
    match proto.as_deref() {
        None | Some(V1_PROTO) => Ok(Protocol::V1),
        Some(V2_PROTO) => Ok(Protocol::V2),
        Some(other) => Err(format!("unsupported remote-write message {other:?}")),
    }
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut msg = msg.into();
    msg.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

pub async fn push_handler(
    State(state): State<Arc<DistributorState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let resp = handle(&state, &headers, &body).await;
    if !resp.status().is_success() {
        state
            .metrics
            .requests_failed
            .fetch_add(1, Ordering::Relaxed);
    }
    resp
}

async fn handle(state: &DistributorState, headers: &HeaderMap, body: &[u8]) -> Response {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let tenant = match tenant_from_header(h(TENANT_HEADER), state.cfg.multitenancy) {
        Ok(t) => t,
        Err(e) => return text(StatusCode::UNAUTHORIZED, e),
    };
    let protocol = match negotiate(h(header::CONTENT_TYPE.as_str())) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::UNSUPPORTED_MEDIA_TYPE, e),
    };
    if let Some(enc) = h(header::CONTENT_ENCODING.as_str()) {
        if !enc.trim().eq_ignore_ascii_case("snappy") {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content encoding {enc:?}: only snappy"),
            );
        }
    }
    let limits = state.cfg.overrides.get(&tenant);
    let decoded = match decode_request(
        protocol,
        body,
        state.cfg.max_decompressed_bytes,
        &Limits::for_tenant(&limits, now_ms()),
    ) {
        Ok(d) => d,
        Err(DecodeError::TooLarge { limit, size }) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "decompressed body of {size} bytes is larger than the limit of {limit} bytes"
                ),
            )
        }
        Err(DecodeError::Malformed(m)) => return text(StatusCode::BAD_REQUEST, m),
    };
    let received = decoded.batch.sample_count();
    state
        .metrics
        .samples_received
        .fetch_add(received as u64, Ordering::Relaxed);
    // Samples and metadata count against the tenant's rate, as in Mimir.
    let items = (received + decoded.batch.metadata.len()) as u64;
    if items > 0 && !state.rate.allow(&tenant, &limits, items) {
        state
            .metrics
            .rate_limited_samples
            .fetch_add(received as u64, Ordering::Relaxed);
        return text(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "the request has been rejected because tenant {tenant} exceeded its ingestion rate limit, set to {} items/s with a maximum allowed burst of {} (distributor.ingestion-rate-limit, distributor.ingestion-burst-size; per tenant: ingestion_rate, ingestion_burst_size in the runtime configuration)",
                limits.ingestion_rate, limits.ingestion_burst_size
            ),
        );
    }
    let outcome = match state.ingester.push(&tenant, decoded.batch).await {
        Ok(o) => o,
        Err(PushError::Unavailable(m)) => return text(StatusCode::SERVICE_UNAVAILABLE, m),
        Err(PushError::RateLimited(m)) => return text(StatusCode::TOO_MANY_REQUESTS, m),
        Err(PushError::Internal(m)) => return text(StatusCode::INTERNAL_SERVER_ERROR, m),
    };
    state
        .metrics
        .samples_rejected
        .fetch_add(outcome.samples_rejected as u64, Ordering::Relaxed);
    let first = decoded.first_error.or(outcome.first_rejection);
    let mut resp = match first {
        Some(m) => {
            debug!(tenant = %tenant, error = %m, "partial write rejected");
            text(StatusCode::BAD_REQUEST, m)
        }
        None => StatusCode::NO_CONTENT.into_response(),
    };
    if protocol == Protocol::V2 {
        let hs = resp.headers_mut();
        hs.insert(
            "X-Prometheus-Remote-Write-Samples-Written",
            HeaderValue::from(outcome.samples_written as u64),
        );
        hs.insert(
            "X-Prometheus-Remote-Write-Histograms-Written",
            HeaderValue::from(0u64),
        );
        hs.insert(
            "X-Prometheus-Remote-Write-Exemplars-Written",
            HeaderValue::from(0u64),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_negotiation() {
        assert_eq!(negotiate(None), Ok(Protocol::V1));
        assert_eq!(negotiate(Some("application/x-protobuf")), Ok(Protocol::V1));
        assert_eq!(
            negotiate(Some(
                "application/x-protobuf;proto=io.prometheus.write.v2.Request"
            )),
            Ok(Protocol::V2)
        );
        assert!(negotiate(Some("application/json")).is_err());
        assert!(negotiate(Some("application/x-protobuf;proto=foo.Bar")).is_err());
    }
}
