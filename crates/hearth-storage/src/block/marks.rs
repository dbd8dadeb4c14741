//! Deletion marks (Thanos' `deletion-mark.json`): a block replaced by a compacted one,
//! or past retention, is first marked; readers stop using it at their next sync, and it
//! is deleted only after a delay, so queries already reading it finish.

use std::sync::Arc;

use futures::TryStreamExt;
use hearth_core::Tenant;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::meta::META_FILE;
use super::{block_dir, BlockError};

pub const DELETION_MARK_FILE: &str = "deletion-mark.json";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    /// The block's ULID.
    pub id: String,
    /// When it was marked, in Unix seconds.
    pub deletion_time: i64,
    pub version: u32,
}

pub async fn mark_for_deletion(
    store: &Arc<dyn ObjectStore>,
    tenant: &Tenant,
    ulid: &str,
    now_secs: i64,
) -> Result<(), BlockError> {
    let mark = DeletionMark {
        id: ulid.to_string(),
        deletion_time: now_secs,
        version: 1,
    };
    let body = serde_json::to_vec_pretty(&mark).expect("mark serializes");
    store
        .put(
            &block_dir(tenant, ulid).join(DELETION_MARK_FILE),
            PutPayload::from(body),
        )
        .await?;
    Ok(())
}

pub async fn read_mark(
    store: &Arc<dyn ObjectStore>,
    tenant: &Tenant,
    ulid: &str,
) -> Result<Option<DeletionMark>, BlockError> {
    match store
        .get(&block_dir(tenant, ulid).join(DELETION_MARK_FILE))
        .await
    {
        Ok(r) => Ok(serde_json::from_slice(&r.bytes().await?).ok()),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a block: meta.json first (from then on it is not a block), then its other
/// objects, the deletion mark last.
pub async fn delete_block(
    store: &Arc<dyn ObjectStore>,
    tenant: &Tenant,
    ulid: &str,
) -> Result<(), BlockError> {
    let dir = block_dir(tenant, ulid);
    let ignore_missing = |r: Result<(), object_store::Error>| match r {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    };
    ignore_missing(store.delete(&dir.clone().join(META_FILE)).await)?;
    let objects: Vec<_> = store.list(Some(&dir)).try_collect().await?;
    let mark = dir.clone().join(DELETION_MARK_FILE);
    for o in objects.iter().filter(|o| o.location != mark) {
        ignore_missing(store.delete(&o.location).await)?;
    }
    ignore_missing(store.delete(&mark).await)?;
    Ok(())
}
