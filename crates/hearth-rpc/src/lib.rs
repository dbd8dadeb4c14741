//! Hearth's seams over gRPC: the `hearth.storage.Store` service (proto/hearth/storage.proto)
//! as a tonic server that serves any `Queryable` and a client that is itself a
//! `Queryable`; the `hearth.ingester.Ingester` service (proto/hearth/ingester.proto) as a
//! server over any `Ingester` and `IngesterStatus` and a client that is both. A role
//! behind the network looks to its caller exactly as it does in-process (Quickwit's
//! "trait per service, gRPC adapter beside it").
//!
//! This room owns the conversions between hearth-core's types and the wire messages and
//! the mapping of errors to gRPC status codes. It may not hold storage, PromQL or role
//! logic: what is served is whatever `Queryable` it is handed.

pub mod client;
pub mod convert;
pub mod ingester_client;
pub mod ingester_server;
pub mod server;

pub use client::RemoteStore;
pub use ingester_client::RemoteIngester;
pub use ingester_server::IngesterService;
pub use server::{StoreInfo, StoreService};

/// Largest message either side accepts: one series' chunks over a long range, with room.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
