//! Long-term storage: the block format and the object storage blocks live in.
//!
//! This room owns the bucket (`bucket`: filesystem, S3 and S3-compatible, GCS, Azure,
//! memory, through the `object_store` crate), the Parquet block format (`block`: writer,
//! reader, meta.json, see docs/block-format.md), and the two sides of a bucket of
//! blocks: the write side, [`BlockWriter`] (`writer`: write, read back and verify,
//! commit), which the roles that make blocks use, and the read side, [`BucketStore`]
//! (`store`: the blocks of a bucket as one `Queryable`, found by listing or through the
//! per-tenant `bucket_index`, see discovery.md, opened at first use, sharded by a ring),
//! which store gateways and queriers serve. Beside them: downsampling (`downsample`: the
//! aggregates and how they are read), `delete_series` requests kept in the bucket
//! (`tombstones`), and the reader of Prometheus' own block directories that `hearth
//! import prometheus-tsdb` uses (`promblock`). With feature `test-util`, `testing` has a
//! recording, failing bucket for other rooms' tests. It reads and writes chunks with
//! hearth-series' encoding; it may not know about HTTP, PromQL or which role runs it.

pub mod block;
pub mod bucket;
pub mod bucket_index;
pub mod downsample;
pub mod promblock;
pub mod store;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tombstones;
pub mod writer;

pub use block::{BlockError, BlockInput, BlockMeta, BlockReader};
pub use bucket::{open_bucket, Backend, BucketConfig, BucketError};
pub use store::{BucketStore, Discovery, Shard, StoreBlock};
pub use writer::{BlockWriter, Shipped};
