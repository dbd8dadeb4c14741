//! The ingester role: it takes writes into its tsdb (hearth-tsdb's `Db`: log, head,
//! checkpoints) and ships what the head no longer needs as blocks to the bucket
//! (`shipper`, see shipping.md), answering for blocks it shipped until store gateways
//! know them (`recent`).
//!
//! This room owns the decision of what to cut and when, and the order of the steps that
//! make shipping lossless. It writes blocks only through hearth-storage and changes the
//! head only through log entries; it may not know about HTTP, PromQL or other roles.

pub mod recent;
pub mod shipper;

pub use recent::RecentlyShipped;
pub use shipper::{ShipError, Shipper, ShipperStats};
