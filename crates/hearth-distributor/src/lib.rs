//! The distributor: Hearth's front door for writes.
//!
//! This room owns the remote-write wire formats (Prometheus remote-write 1.0 and 2.0:
//! content negotiation, snappy, protobuf), validation of what arrives (label names,
//! duplicates, sizes, limits) and the status codes the remote-write specification gives.
//! It applies each tenant's ingestion rate (`rate`) and hands validated batches to an
//! [`hearth_core::Ingester`]: the ingester of its process, or, in a cluster,
//! [`GroupRouter`] (`groups`), which splits each batch by shard group and sends each
//! part to its group's leader, following leader changes. It may not touch an ingester's
//! storage or any query path.

pub mod decode;
pub mod groups;
pub mod http;
pub mod pbwire;
pub mod rate;
pub mod validate;

pub use decode::{decode_request, DecodeError, Decoded, Protocol};
pub use groups::{GroupRouter, RouterOptions};
pub use http::{push_handler, DistributorConfig, DistributorState};
pub use validate::{Limits, ValidationError};
