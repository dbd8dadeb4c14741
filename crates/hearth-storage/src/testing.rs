//! A bucket for tests (feature `test-util`): in memory, recording every request it
//! gets, and failing a chosen one on demand, so tests can count what a component asks
//! an S3 bucket for and inject the failures an outage causes.

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::ObjectStoreExt;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use parking_lot::Mutex;

/// An in-memory bucket that records requests as (operation, path) and can fail the
/// next GET of an object whose path ends with a given suffix.
#[derive(Debug, Default)]
pub struct WatchedBucket {
    inner: InMemory,
    calls: Mutex<Vec<(&'static str, String)>>,
    fail_get_of: Mutex<Option<String>>,
}

impl WatchedBucket {
    /// The requests since the last call (put, get, list, list_with_offset,
    /// list_with_delimiter, copy; deletes are not recorded).
    pub fn take_calls(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.calls.lock())
    }

    /// The next GET of an existing object whose path ends with `suffix` fails (once).
    pub fn fail_next_get_of(&self, suffix: &str) {
        *self.fail_get_of.lock() = Some(suffix.to_string());
    }

    /// The bucket itself, past the recording and the failures.
    /// The committed blocks' meta.json paths (a block is visible once it has one),
    /// sorted.
    pub async fn committed_blocks(&self) -> Vec<String> {
        use futures::TryStreamExt;
        let mut out: Vec<String> = self
            .inner
            .list(None)
            .try_collect::<Vec<_>>()
            .await
            .expect("an in-memory listing")
            .into_iter()
            .map(|m| m.location.to_string())
            .filter(|p| p.ends_with("/meta.json"))
            .collect();
        out.sort();
        out
    }

    pub fn inner(&self) -> &InMemory {
        &self.inner
    }

    fn log(&self, op: &'static str, p: &Path) {
        self.calls.lock().push((op, p.to_string()));
    }
}

impl fmt::Display for WatchedBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Watched({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for WatchedBucket {
    async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> Result<PutResult> {
        self.log("put", l);
        self.inner.put_opts(l, p, o).await
    }
    async fn put_multipart_opts(
        &self,
        l: &Path,
        o: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.log("put", l);
        self.inner.put_multipart_opts(l, o).await
    }
    async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
        self.log("get", l);
        // Only a read of what exists fails (a lookup of a missing object is not the
        // read the test means to break).
        let exists = self.fail_get_of.lock().is_some() && self.inner.head(l).await.is_ok();
        let fail = exists && {
            let mut f = self.fail_get_of.lock();
            let hit = f.as_deref().is_some_and(|s| l.as_ref().ends_with(s));
            hit && f.take().is_some()
        };
        if fail {
            return Err(object_store::Error::Generic {
                store: "watched",
                source: "injected failure".into(),
            });
        }
        self.inner.get_opts(l, o).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.log("list", prefix.unwrap_or(&Path::default()));
        self.inner.list(prefix)
    }
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.log("list_with_offset", prefix.unwrap_or(&Path::default()));
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.log("list_with_delimiter", prefix.unwrap_or(&Path::default()));
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> Result<()> {
        self.log("copy", from);
        self.inner.copy_opts(from, to, o).await
    }
}

/// Writes a block into the store's bucket through a [`crate::BlockWriter`] sharing the
/// store's page cache and serves it from `store` at once: what a shipper or compactor
/// beside the store does.
pub async fn ship(
    store: &crate::BucketStore,
    input: crate::BlockInput,
) -> std::result::Result<crate::BlockMeta, crate::BlockError> {
    let writer =
        crate::BlockWriter::new(store.bucket().clone()).with_page_cache(store.page_cache());
    ship_with(store, &writer, input).await
}

/// [`ship`] through a chosen writer.
pub async fn ship_with(
    store: &crate::BucketStore,
    writer: &crate::BlockWriter,
    input: crate::BlockInput,
) -> std::result::Result<crate::BlockMeta, crate::BlockError> {
    let shipped = writer.ship(input).await?;
    store.add(&shipped).await;
    Ok(shipped.meta)
}
