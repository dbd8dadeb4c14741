//! The ingester role: it takes writes into its shard groups' heads through their Raft
//! logs, answers for recent data, and ships what a head no longer needs as blocks to the
//! bucket, after Prometheus' tsdb package (head, WAL, checkpoints) one job per file.
//!
//! This room owns the bytes of recent data and the lossless path to blocks: the
//! in-memory head with its label index and append rules (`head`; its series by id in
//! `series_ids`), reading it
//! (`head_read`: the head as a `Queryable`), head checkpoints (`checkpoint`), the
//! shipping protocol's records (`record`) and the decision of what to cut and when and
//! the order of the steps that make shipping lossless (`shipper`, see shipping.md), the
//! tenants' series limits (`limits`), its answers to status questions (`status`), small
//! durable-file steps (`files`), and replication (`replication`, see
//! replication/replication.md): the node's one Raft log shared by its shard groups, each
//! group's head as an openraft state machine, the proposer that batches writes into
//! entries, and the transports between replicas (in-process, and gRPC: Raft between
//! ingesters is this room's own protocol). The single process and a cluster run the same
//! code: one node holding every group at one replica, or many nodes. It writes blocks
//! only through hearth-storage and changes a head only through log entries; it may not
//! know about HTTP, PromQL, remote-write wire formats or other roles.

pub mod checkpoint;
mod files;
pub mod head;
pub mod head_read;
pub mod limits;
pub mod record;
pub mod replication;
mod series_ids;
pub mod shipper;
pub mod status;

pub use head::{Head, HeadOptions};
pub use head_read::HeadQueryable;
pub use limits::SeriesLimits;
pub use shipper::{block_id, ShipError, ShippedTo, Shipper, ShipperStats, ShippingLog};
