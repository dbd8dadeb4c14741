//! The block format: one folder per block, `<tenant>/<ULID>/`, holding labels.parquet,
//! chunks.parquet and meta.json (see docs/block-format.md).

pub mod cell;
pub mod decimal;
pub mod marks;
pub mod meta;
pub mod objreader;
pub mod reader;
pub mod writer;

use hearth_core::Tenant;
use object_store::path::Path;

pub use meta::BlockMeta;
pub use objreader::PageCache;
pub use reader::{read_meta, BlockReader};
pub use writer::{
    put_meta, write_block, write_block_files, write_block_with, BlockInput, WriteOptions,
};

/// Label columns are `l_<label name>`, as in prometheus-community/parquet-common.
pub const LABEL_COLUMN_PREFIX: &str = "l_";
/// Chunk columns are `s_data_<i>`, as in parquet-common.
pub const CHUNKS_COLUMN_PREFIX: &str = "s_data_";

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("object storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("block format: {0}")]
    Format(String),
}

/// The folder of a block in the bucket.
pub fn block_dir(tenant: &Tenant, ulid: &str) -> Path {
    Path::from(tenant.as_str()).join(ulid)
}
