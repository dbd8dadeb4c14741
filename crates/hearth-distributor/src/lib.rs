//! The distributor: Hearth's front door for writes.
//!
//! This room owns the remote-write wire formats (Prometheus remote-write 1.0 and 2.0:
//! content negotiation, snappy, protobuf), validation of what arrives (label names,
//! duplicates, sizes, limits) and the status codes the remote-write specification gives.
//! It hands validated batches to an [`hearth_core::Ingester`]; it may not touch an
//! ingester's storage or any query path.

pub mod decode;
pub mod http;
pub mod pbwire;
pub mod rate;
pub mod validate;

pub use decode::{decode_request, DecodeError, Decoded, Protocol};
pub use http::{push_handler, DistributorConfig, DistributorState};
pub use validate::{Limits, ValidationError};
