//! openraft's log storage for one group, as a handle onto the node's shared
//! [`LogEngine`]: what openraft calls append, truncate, purge, vote and committed
//! become records of that group in the one log, and openraft's entries become bytes.
//!
//! Entry encoding: the log id as JSON behind its length (u32 LE), then a tag (0 blank,
//! 1 normal, 2 membership) and the payload: the application's own bytes for a normal
//! entry ([`LogData`]), JSON for a membership. Log ids, votes and memberships are small
//! and rare next to normal entries, which are batches of samples and are never turned
//! into JSON.

// openraft's StorageError is large and is what its traits return.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftTypeConfig, StorageError,
    StorageIOError, Vote,
};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::log_engine::{durable, EngineError, GroupId, LogEngine};

/// The application data of normal entries, as bytes in the log.
pub trait LogData: Sized {
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: Bytes) -> Result<Self, String>;
    /// Heap bytes it holds decoded: what the window of recent entries charges for it.
    fn heap_size(&self) -> usize;
}

const TAG_BLANK: u8 = 0;
const TAG_NORMAL: u8 = 1;
const TAG_MEMBERSHIP: u8 = 2;

/// A group's log storage (and its reader: a clone reads the same log).
pub struct GroupLogStore<C: RaftTypeConfig> {
    engine: Arc<LogEngine>,
    group: GroupId,
    /// Most payload bytes one `limited_get_log_entries` returns, so a replication
    /// message stays well under the transport's cap.
    max_read_bytes: usize,
    recent: Arc<Mutex<Recent<C>>>,
    progress: Arc<LogProgress>,
}

/// How far the group's log has been written and synced: the proposer holds writes
/// until its previous entry is on disk (see `replica`).
#[derive(Debug)]
pub struct LogProgress {
    appended: AtomicU64,
    flushed: watch::Sender<u64>,
}

impl LogProgress {
    /// The index of the last entry appended (0 before any).
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Acquire)
    }

    /// Returns once an entry after `index` is on disk.
    pub async fn flushed_past(&self, index: u64) {
        let mut rx = self.flushed.subscribe();
        let _ = rx.wait_for(|f| *f > index).await;
    }
}

/// The newest entries as openraft appended them, so applying them (and sending them to
/// followers) reads them back without decoding their bytes again: they are read
/// within milliseconds of being appended. A contiguous window of indexes, bounded in
/// the heap bytes its entries hold decoded (a few times their encoded size: charging
/// encoded bytes once let it hold 4x its budget); what it holds is always also in the
/// engine, whose cache keeps the encoded bytes.
struct Recent<C: RaftTypeConfig> {
    /// Each entry with its encoded and its decoded size.
    entries: VecDeque<(Entry<C>, usize, usize)>,
    /// Decoded bytes of `entries`.
    bytes: usize,
    budget: usize,
}

impl<C: RaftTypeConfig<Entry = Entry<C>>> Recent<C> {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|(e, _, _)| e.log_id.index)
    }

    fn push(&mut self, e: Entry<C>, len: usize, heap: usize) {
        let follows = self
            .entries
            .back()
            .is_none_or(|(b, _, _)| b.log_id.index + 1 == e.log_id.index);
        if !follows {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += heap;
        self.entries.push_back((e, len, heap));
        while self.bytes > self.budget && self.entries.len() > 1 {
            let (_, _, n) = self.entries.pop_front().expect("not empty");
            self.bytes -= n;
        }
    }

    /// Drops entries with index >= `from`.
    fn truncate(&mut self, from: u64) {
        while self
            .entries
            .back()
            .is_some_and(|(e, _, _)| e.log_id.index >= from)
        {
            let (_, _, n) = self.entries.pop_back().expect("not empty");
            self.bytes -= n;
        }
    }

    /// Drops entries with index <= `upto`.
    fn purge(&mut self, upto: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(e, _, _)| e.log_id.index <= upto)
        {
            let (_, _, n) = self.entries.pop_front().expect("not empty");
            self.bytes -= n;
        }
    }
}

impl<C: RaftTypeConfig> Clone for GroupLogStore<C> {
    fn clone(&self) -> Self {
        GroupLogStore {
            engine: self.engine.clone(),
            group: self.group,
            max_read_bytes: self.max_read_bytes,
            recent: self.recent.clone(),
            progress: self.progress.clone(),
        }
    }
}

impl<C: RaftTypeConfig> GroupLogStore<C> {
    /// A group's log in `engine`; its recent window holds as many decoded bytes as the
    /// engine's cache of the group holds encoded.
    pub fn new(engine: Arc<LogEngine>, group: GroupId, max_read_bytes: usize) -> Self {
        let budget = engine.cache_bytes_per_group();
        GroupLogStore {
            engine,
            group,
            max_read_bytes,
            recent: Arc::new(Mutex::new(Recent {
                entries: VecDeque::new(),
                bytes: 0,
                budget,
            })),
            progress: Arc::new(LogProgress {
                appended: AtomicU64::new(0),
                flushed: watch::Sender::new(0),
            }),
        }
    }

    /// How far the log has been written and synced.
    pub fn progress(&self) -> Arc<LogProgress> {
        self.progress.clone()
    }

    pub fn group(&self) -> GroupId {
        self.group
    }
}

fn io_err(e: impl ToString) -> io::Error {
    io::Error::other(e.to_string())
}

fn read_err<NID: openraft::NodeId>(e: impl ToString) -> StorageError<NID> {
    StorageIOError::read_logs(&io_err(e)).into()
}

fn write_err<NID: openraft::NodeId>(e: impl ToString) -> StorageError<NID> {
    StorageIOError::write_logs(&io_err(e)).into()
}

fn engine_write_err<NID: openraft::NodeId>(e: EngineError) -> StorageError<NID> {
    write_err(e)
}

/// How often a write the disk refused is tried again.
const REFUSED_WRITE_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs an engine write, again every `REFUSED_WRITE_RETRY` while the disk refuses it
/// (full, EIO). openraft stops a group for good at a storage error, and a refused write
/// left nothing behind (the engine cut its bytes away), so waiting for space is the
/// safe answer; the group's core waits with it, and its replica refuses new writes
/// meanwhile (`LogEngine::refusing`). A failed sync is not retried: the engine then
/// refuses everything until a restart.
async fn while_disk_refuses<T>(
    mut attempt: impl FnMut() -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    loop {
        match attempt() {
            Err(EngineError::Io(_)) => tokio::time::sleep(REFUSED_WRITE_RETRY).await,
            other => return other,
        }
    }
}

/// [`durable`], tried again while the disk refuses the write. (A failed sync is
/// reported as `Io` too; the attempt after it finds the engine `Failed` and stops.)
async fn durable_when_disk_allows(
    mut submit: impl FnMut(super::log_engine::OnDurable) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    loop {
        match durable(&mut submit).await {
            Err(EngineError::Io(_)) => tokio::time::sleep(REFUSED_WRITE_RETRY).await,
            other => return other,
        }
    }
}

/// Encodes an entry as this module's documentation says.
pub fn encode_entry<C>(e: &Entry<C>) -> Result<Bytes, String>
where
    C: RaftTypeConfig,
    C::D: LogData,
{
    let id = serde_json::to_vec(&e.log_id).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(id.len() + 16);
    out.put_u32_le(id.len() as u32);
    out.extend_from_slice(&id);
    match &e.payload {
        EntryPayload::Blank => out.push(TAG_BLANK),
        EntryPayload::Normal(d) => {
            out.push(TAG_NORMAL);
            d.encode(&mut out);
        }
        EntryPayload::Membership(m) => {
            out.push(TAG_MEMBERSHIP);
            serde_json::to_writer(&mut out, m).map_err(|e| e.to_string())?;
        }
    }
    Ok(Bytes::from(out))
}

fn split_log_id(b: &Bytes) -> Result<(&[u8], usize), String> {
    let n = b
        .get(..4)
        .map(|l| u32::from_le_bytes(l.try_into().expect("4 bytes")) as usize)
        .ok_or("entry shorter than its header")?;
    let id = b.get(4..4 + n).ok_or("entry shorter than its log id")?;
    Ok((id, 4 + n))
}

/// The log id of an encoded entry, without decoding its payload.
pub fn decode_log_id<NID: openraft::NodeId>(b: &Bytes) -> Result<LogId<NID>, String> {
    let (id, _) = split_log_id(b)?;
    serde_json::from_slice(id).map_err(|e| e.to_string())
}

pub fn decode_entry<C>(b: Bytes) -> Result<Entry<C>, String>
where
    C: RaftTypeConfig,
    C::D: LogData,
{
    let (id, at) = split_log_id(&b)?;
    let log_id = serde_json::from_slice(id).map_err(|e| e.to_string())?;
    let tag = *b.get(at).ok_or("entry without a payload tag")?;
    let payload = match tag {
        TAG_BLANK => EntryPayload::Blank,
        TAG_NORMAL => EntryPayload::Normal(C::D::decode(b.slice(at + 1..))?),
        TAG_MEMBERSHIP => EntryPayload::Membership(
            serde_json::from_slice(&b[at + 1..]).map_err(|e| e.to_string())?,
        ),
        t => return Err(format!("unknown entry tag {t}")),
    };
    Ok(Entry { log_id, payload })
}

fn range_of(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => e.saturating_add(1),
        Bound::Excluded(e) => *e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl<C> GroupLogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: LogData + Clone,
{
    /// Entries `start..end`: at least one, then as many as fit in `max_bytes` (encoded).
    /// Those still in the recent window come from it, older ones from the engine.
    fn read(
        &self,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<Entry<C>>, StorageError<C::NodeId>> {
        let mut out = Vec::new();
        let mut next = start;
        let mut bytes = 0usize;
        let first_recent = self.recent.lock().first();
        // Older than the window: from the engine, decoded.
        let below = first_recent.map_or(end, |f| f.min(end));
        if next < below {
            let raw = self
                .engine
                .read(self.group, next, below, max_bytes)
                .map_err(read_err)?;
            let capped = raw.last().is_some_and(|(i, _)| i + 1 < below);
            for (i, b) in raw {
                bytes += b.len();
                out.push(
                    decode_entry::<C>(b)
                        .map_err(|e| StorageIOError::read_log_at_index(i, &io_err(e)))?,
                );
            }
            if capped {
                return Ok(out);
            }
            // Indexes the log does not hold (before its first entry) are skipped.
            next = below;
        }
        if next >= end {
            return Ok(out);
        }
        {
            let recent = self.recent.lock();
            let Some(first) = recent.first() else {
                return Ok(out);
            };
            if next >= first {
                for (e, len, _) in recent.entries.iter().skip((next - first) as usize) {
                    if e.log_id.index >= end || (!out.is_empty() && bytes + len > max_bytes) {
                        return Ok(out);
                    }
                    bytes += len;
                    out.push(e.clone());
                    next += 1;
                }
            }
        }
        // The window moved meanwhile (a purge or an eviction): the rest from the engine.
        if next < end && (out.is_empty() || bytes < max_bytes) {
            let raw = self
                .engine
                .read(
                    self.group,
                    next,
                    end,
                    max_bytes.saturating_sub(bytes).max(1),
                )
                .map_err(read_err)?;
            for (i, b) in raw {
                out.push(
                    decode_entry::<C>(b)
                        .map_err(|e| StorageIOError::read_log_at_index(i, &io_err(e)))?,
                );
            }
        }
        Ok(out)
    }
}

impl<C> RaftLogReader<C> for GroupLogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: LogData + Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        let (start, end) = range_of(&range);
        self.read(start, end, usize::MAX)
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<C::Entry>, StorageError<C::NodeId>> {
        self.read(start, end, self.max_read_bytes)
    }
}

impl<C> RaftLogStorage<C> for GroupLogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: LogData + Clone,
{
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let s = self.engine.state(self.group).map_err(read_err)?;
        let last_purged_log_id = match &s.purged {
            Some((_, meta)) => Some(serde_json::from_slice(meta).map_err(read_err)?),
            None => None,
        };
        let last_log_id = match &s.last {
            Some((_, b)) => Some(decode_log_id(b).map_err(read_err)?),
            None => last_purged_log_id.clone(),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let b = Bytes::from(
            serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&io_err(e)))?,
        );
        durable_when_disk_allows(|cb| self.engine.save_vote(self.group, b.clone(), cb))
            .await
            .map_err(|e| StorageIOError::write_vote(&io_err(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        match self.engine.vote(self.group) {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StorageIOError::read_vote(&io_err(e)).into()),
        }
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> Result<(), StorageError<C::NodeId>> {
        let b = Bytes::from(serde_json::to_vec(&committed).map_err(write_err)?);
        // Synced with the next write, not waited for: see LogEngine::save_committed.
        while_disk_refuses(|| self.engine.save_committed(self.group, b.clone()))
            .await
            .map_err(engine_write_err)
    }

    async fn read_committed(
        &mut self,
    ) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        match self.engine.committed(self.group) {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b).map_err(read_err),
        }
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut raw = Vec::new();
        let mut decoded = Vec::new();
        for e in entries {
            let b = encode_entry(&e)
                .map_err(|err| StorageIOError::write_log_entry(e.log_id.clone(), &io_err(err)))?;
            raw.push((e.log_id.index, b.clone()));
            let heap = match &e.payload {
                EntryPayload::Normal(d) => d.heap_size(),
                _ => b.len(),
            };
            decoded.push((e, b.len(), heap));
        }
        if raw.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let last = raw.last().map_or(0, |(i, _)| *i);
        // Given to the engine's callback of the attempt that succeeds (a refused
        // attempt drops its callback uncalled).
        let callback = Arc::new(Mutex::new(Some(callback)));
        let mut decoded = Some(decoded);
        while_disk_refuses(|| {
            let progress = self.progress.clone();
            let callback = callback.clone();
            // Under the window's lock, so a reader never sees the window ahead of the log.
            let mut recent = self.recent.lock();
            self.engine.append(
                self.group,
                raw.clone(),
                Box::new(move |r| {
                    if r.is_ok() {
                        progress.flushed.send_if_modified(|f| {
                            let newer = last > *f;
                            *f = (*f).max(last);
                            newer
                        });
                    }
                    if let Some(cb) = callback.lock().take() {
                        cb.log_io_completed(r)
                    }
                }),
            )?;
            self.progress.appended.fetch_max(last, Ordering::AcqRel);
            for (e, len, heap) in decoded.take().into_iter().flatten() {
                recent.push(e, len, heap);
            }
            Ok(())
        })
        .await
        .map_err(engine_write_err)
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        self.recent.lock().truncate(log_id.index);
        durable_when_disk_allows(|cb| self.engine.truncate(self.group, log_id.index, cb))
            .await
            .map_err(engine_write_err)
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let meta = Bytes::from(serde_json::to_vec(&log_id).map_err(write_err)?);
        self.recent.lock().purge(log_id.index);
        durable_when_disk_allows(|cb| {
            self.engine
                .purge(self.group, log_id.index, meta.clone(), cb)
        })
        .await
        .map_err(engine_write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::state_machine::ShardConfig;
    use openraft::CommittedLeaderId;

    fn entry(index: u64) -> Entry<ShardConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn the_recent_window_is_bounded_by_what_its_entries_hold_decoded() {
        let mut recent = Recent::<ShardConfig> {
            entries: VecDeque::new(),
            bytes: 0,
            budget: 1_000,
        };
        // 100 bytes encoded, 400 decoded: charged by what they hold, two fit.
        for i in 1..=10 {
            recent.push(entry(i), 100, 400);
        }
        assert_eq!(recent.entries.len(), 2);
        assert_eq!(recent.bytes, 800);
        assert_eq!(recent.first(), Some(9));
        // One entry bigger than the budget stays alone (a read always finds the newest).
        recent.push(entry(11), 100, 5_000);
        assert_eq!(recent.entries.len(), 1);
        assert_eq!(recent.first(), Some(11));
        recent.truncate(11);
        assert_eq!((recent.entries.len(), recent.bytes), (0, 0));
    }
}
