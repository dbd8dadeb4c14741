//! The PromQL engine: Prometheus 3.x query semantics over the `Queryable` seam.
//!
//! This room owns evaluation: parsing is the `promql-parser` crate's (with `syntax`
//! re-reading rejected queries for Prometheus' error positions and messages); the evaluator
//! (selectors with lookback and staleness, range functions with Prometheus'
//! extrapolation, aggregations, vector matching) is ours. It reads data only through
//! `hearth_core::Queryable` and decodes chunks with `hearth_series::chunkenc`; it may not
//! reach into the head, the log or any role.

pub mod aggregate;
pub mod binary;
pub mod engine;
pub mod functions;
pub mod syntax;
pub mod value;

pub use aggregate::format_value;
pub use engine::{Annotations, Engine, EngineOptions, QueryError, QueryOutput, QueryStats};
pub use value::{QueryValue, RangeSeries};
