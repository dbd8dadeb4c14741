//! The querier: the Prometheus HTTP API v1 over the `Queryable` seam.
//!
//! This room owns the API's shapes (parameters, JSON, error objects, status codes),
//! drives the PromQL engine, and merges its sources into the one `Queryable` the engine
//! reads: `merge` (ingesters for recent data, blocks for history), `fanout` (the members
//! of a sharded, replicated set: ingesters, store gateways), `groups` (replicated
//! ingester nodes read one replica per shard group), `deletes` (deletion
//! requests applied to every answer), `status` (every ingester's status answers as
//! one) and `cluster` (the cluster's nodes and shard groups, /api/v1/status/cluster). It reads series only through `hearth_core::Queryable` and ingester status
//! through `hearth_core::IngesterStatus`; it may not touch storage internals or the
//! write path.

pub mod api;
pub mod cluster;
pub mod deletes;
pub mod fanout;
pub mod groups;
pub mod json;
pub mod merge;
pub mod params;
pub mod status;

pub use api::{router, ApiConfig, ConfigStatus, QuerierState};
pub use deletes::{DeletionFilter, DeletionsFn, SeriesDeleter};
pub use fanout::{Fanout, Member};
pub use groups::GroupFanout;
pub use merge::{MergeQueryable, Source};
pub use status::IngestersStatus;
