//! The ingester role: it takes writes into its head and write-ahead log, answers for
//! recent data, and ships what the head no longer needs as blocks to the bucket, after
//! Prometheus' tsdb package (head, WAL, checkpoints) one job per file.
//!
//! This room owns the bytes of recent data and the lossless path to blocks: the
//! in-memory head with its label index and append rules (`head`), the write-ahead log
//! shaped as Raft log storage (`wal`, see wal/wal.md), its records (`record`), head
//! checkpoints (`checkpoint`), the group-committing write path that ties them and the
//! `Ingester` and `Queryable` seams it serves (`db`), its answers to status questions
//! (`status`), the decision of what to cut and
//! when and the order of the steps that make shipping lossless (`shipper`, see
//! shipping.md), and the blocks it shipped that it answers for until store gateways know
//! them (`recent`), and replication (`replication`, see replication/replication.md): the
//! node's one Raft log shared by its shard groups, each group's head as an openraft
//! state machine, the proposer that batches writes into entries, and the transports
//! between replicas (in-process, and gRPC: Raft between ingesters is this room's own
//! protocol). It writes blocks only through hearth-storage and changes the head only
//! through log entries; it may not know about HTTP, PromQL, remote-write wire formats or
//! other roles.

pub mod checkpoint;
pub mod db;
pub mod head;
pub mod limits;
pub mod recent;
pub mod record;
pub mod replication;
pub mod shipper;
pub mod status;
pub mod wal;

pub use db::{Db, DbOptions, DbStats, HeadQueryable};
pub use head::{Head, HeadOptions};
pub use limits::SeriesLimits;
pub use recent::RecentlyShipped;
pub use shipper::{block_id, ShipError, ShippedTo, Shipper, ShipperStats, ShippingLog};
