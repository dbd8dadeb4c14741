//! The per-tenant bucket index (`<tenant>/bucket-index.json.gz`, as Mimir names it): the
//! metas of a tenant's committed blocks and their deletion marks in one small object.
//! The compactor rewrites it after each pass from a full listing; a store gateway reads it
//! instead of listing the bucket and fetching every meta.json, so starting takes a few
//! requests per tenant whatever the number of blocks.
//!
//! Blocks shipped after the index was written are found by listing only the keys after
//! the index's newest block: ULIDs sort by creation time, so an offset listing returns
//! just the fresh folders (see `BucketStore::sync`).

use std::io::{Read, Write};
use std::sync::Arc;

use hearth_core::Tenant;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::block::{BlockError, BlockMeta};

pub const BUCKET_INDEX_FILE: &str = "bucket-index.json.gz";
pub const BUCKET_INDEX_VERSION: u32 = 1;
/// An index larger than this after decompression is refused (a corrupt or hostile
/// object must not exhaust memory); about two million blocks.
const MAX_INDEX_BYTES: u64 = 2 << 30;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IndexDeletionMark {
    pub block_id: String,
    /// Unix seconds the block was marked.
    pub deletion_time: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BucketIndex {
    pub version: u32,
    /// Unix seconds the index was written.
    pub updated_at: i64,
    /// Committed blocks (those with meta.json), marked ones included, oldest ULID first.
    pub blocks: Vec<BlockMeta>,
    pub block_deletion_marks: Vec<IndexDeletionMark>,
}

impl BucketIndex {
    pub fn new(
        updated_at: i64,
        mut blocks: Vec<BlockMeta>,
        marks: Vec<IndexDeletionMark>,
    ) -> BucketIndex {
        blocks.sort_by(|a, b| a.ulid.cmp(&b.ulid));
        BucketIndex {
            version: BUCKET_INDEX_VERSION,
            updated_at,
            blocks,
            block_deletion_marks: marks,
        }
    }

    /// The newest block's ULID: listing past it finds blocks the index does not know.
    pub fn newest_ulid(&self) -> Option<&str> {
        self.blocks.iter().map(|b| b.ulid.as_str()).max()
    }
}

pub fn index_path(tenant: &Tenant) -> Path {
    Path::from(tenant.as_str()).join(BUCKET_INDEX_FILE)
}

/// Writes the tenant's index (one put: readers see the old or the new one whole).
pub async fn write_index(
    bucket: &Arc<dyn ObjectStore>,
    tenant: &Tenant,
    index: &BucketIndex,
) -> Result<(), BlockError> {
    let json = serde_json::to_vec(index).map_err(|e| BlockError::Format(e.to_string()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json)
        .map_err(|e| BlockError::Format(format!("gzip: {e}")))?;
    let bytes = gz
        .finish()
        .map_err(|e| BlockError::Format(format!("gzip: {e}")))?;
    bucket
        .put(&index_path(tenant), PutPayload::from(bytes))
        .await?;
    Ok(())
}

/// Reads the tenant's index; `None` when it has none yet.
pub async fn read_index(
    bucket: &Arc<dyn ObjectStore>,
    tenant: &Tenant,
) -> Result<Option<BucketIndex>, BlockError> {
    let path = index_path(tenant);
    let bytes = match bucket.get(&path).await {
        Ok(r) => r.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .take(MAX_INDEX_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(|e| BlockError::Format(format!("{path}: gzip: {e}")))?;
    if json.len() as u64 > MAX_INDEX_BYTES {
        return Err(BlockError::Format(format!(
            "{path}: larger than {MAX_INDEX_BYTES} bytes"
        )));
    }
    let index: BucketIndex =
        serde_json::from_slice(&json).map_err(|e| BlockError::Format(format!("{path}: {e}")))?;
    if index.version != BUCKET_INDEX_VERSION {
        return Err(BlockError::Format(format!(
            "{path}: version {} (this build reads {BUCKET_INDEX_VERSION})",
            index.version
        )));
    }
    Ok(Some(index))
}
