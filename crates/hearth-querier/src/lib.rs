//! The querier: the Prometheus HTTP API v1 over the `Queryable` seam.
//!
//! This room owns the API's shapes (parameters, JSON, error objects, status codes),
//! drives the PromQL engine, and merges its sources (`merge`: ingesters for recent
//! data, blocks for history) into the one `Queryable` the engine reads. It reads series only through `hearth_core::Queryable` and
//! ingester status through the [`StatusSource`] trait; it may not touch storage
//! internals or the write path.

pub mod api;
pub mod deletes;
pub mod fanout;
pub mod json;
pub mod merge;
pub mod params;

pub use api::{router, ApiConfig, ConfigStatus, QuerierState, StatusSource, TsdbStatus};
pub use deletes::{DeletionFilter, DeletionsFn, SeriesDeleter};
pub use fanout::{Fanout, Member};
pub use merge::{MergeQueryable, Source};
