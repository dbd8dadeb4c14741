//! The time series database of one ingester, after Prometheus' tsdb package.
//!
//! This room owns the bytes of recent data: Gorilla XOR chunks (`chunkenc`, bit
//! compatible with Prometheus), the in-memory head with its label index (`head`,
//! `postings`), the write-ahead log shaped as Raft log storage (`wal`), head checkpoints
//! (`checkpoint`), the group-committing write path that ties them (`db`) and the merge
//! of series from several sources (`merge`). It serves
//! the `Queryable` and `Ingester` seams of hearth-core; it may not know about HTTP,
//! PromQL, remote-write wire formats or other roles.

pub mod bstream;
pub mod checkpoint;
pub mod chunkenc;
mod codec;
pub mod db;
pub mod head;
pub mod merge;
pub mod postings;
pub mod record;
pub mod tombstones;
pub mod wal;

pub use db::{Db, DbOptions, DbStats, HeadQueryable, SeriesLimits};
pub use head::{Head, HeadOptions};
