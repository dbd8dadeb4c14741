//! The series toolkit both sides of Hearth share, after Prometheus' `chunkenc` and
//! `storage` packages: a leaf below the ingester, the block format and the query side,
//! so none of them depends on another to read a chunk.
//!
//! This room owns the bytes and the merging of series: Gorilla XOR chunks (`bstream`,
//! `chunkenc`, bit compatible with Prometheus), the inverted index of label pairs to
//! sorted series ids (`postings`), merging series from several sources, in memory or as
//! they stream (`merge`), applying `delete_series` requests to series (`tombstones`) and
//! the varint codec of Hearth's own binary formats (`codec`). It holds no state and does
//! no I/O; it may not know about the head, the log, blocks, PromQL or roles.

pub mod bstream;
pub mod chunkenc;
pub mod codec;
pub mod merge;
pub mod postings;
pub mod tombstones;
