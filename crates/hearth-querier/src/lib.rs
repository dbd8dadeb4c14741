//! The querier: the Prometheus HTTP API v1 over the `Queryable` seam.
//!
//! This room owns the API's shapes (parameters, JSON, error objects, status codes) and
//! drives the PromQL engine. It reads series only through `hearth_core::Queryable` and
//! ingester status through the [`StatusSource`] trait; it may not touch storage
//! internals or the write path.

pub mod api;
pub mod json;
pub mod params;

pub use api::{router, ApiConfig, QuerierState, StatusSource, TsdbStatus};
