//! One log for every Raft group a node hosts (TiKV's raft-engine shape): records of all
//! groups interleave in one sequence of segment files, one writer appends them, and one
//! `fdatasync` makes every append, vote and truncation written since the last one
//! durable, whichever group it belongs to. Each group keeps an in-memory index of where
//! its entries are, and the payloads of its most recent entries, so a leader's
//! replication reads rarely touch the disk.
//!
//! The engine knows groups, indexes and bytes; what an entry or a vote means is the
//! caller's (see `log_store.rs`, which puts openraft on top of it). The record format,
//! the recovery rules and why they keep every acknowledged entry are in
//! `replication.md` beside this file.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use tracing::{info, warn};

/// A shard group's id: the groups of a cluster are `0..groups`.
pub type GroupId = u32;

/// Called once the write it was given with is durable (or can never be).
pub type OnDurable = Box<dyn FnOnce(std::io::Result<()>) + Send>;

/// Record header: body length (u32 LE) and CRC-32C of the body (u32 LE). The body starts
/// with the kind (u8) and the group (u32 LE).
const HEADER: usize = 8;
const BODY_PREFIX: usize = 5;
/// A record larger than this is corruption, not data (bounds allocation on recovery).
const MAX_RECORD: usize = 256 << 20;

const KIND_ENTRY: u8 = 1;
const KIND_VOTE: u8 = 2;
const KIND_COMMITTED: u8 = 3;
const KIND_TRUNCATE: u8 = 4;
const KIND_PURGE: u8 = 5;

#[derive(Clone, Debug)]
pub struct LogEngineOptions {
    /// Start a new segment once the active one is larger than this.
    pub segment_bytes: u64,
    /// Payload bytes of recent entries each group keeps in memory.
    pub cache_bytes_per_group: usize,
    /// `fdatasync` before reporting a write durable (tests of throughput may turn it off).
    pub fsync: bool,
}

impl Default for LogEngineOptions {
    fn default() -> Self {
        LogEngineOptions {
            segment_bytes: 64 << 20,
            cache_bytes_per_group: 8 << 20,
            fsync: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("raft log i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft log of group {group}: entry {got} does not follow {last}")]
    NotContiguous { group: GroupId, last: u64, got: u64 },
    #[error("raft log corrupt: {0}")]
    Corrupt(String),
    #[error("raft log stopped after a failed sync ({0}); restart the node to recover from disk")]
    Failed(String),
}

/// What a group's log holds, as its storage answers `get_log_state`.
#[derive(Clone, Debug, Default)]
pub struct GroupLogState {
    /// The last purged entry's index and the caller's bytes for it.
    pub purged: Option<(u64, Bytes)>,
    /// The last entry present, if any.
    pub last: Option<(u64, Bytes)>,
}

/// Where a record sits: segment sequence number, offset of its header, whole length.
#[derive(Clone, Copy, Debug)]
struct Loc {
    seg: u64,
    off: u64,
    len: u32,
}

#[derive(Default)]
struct GroupMem {
    /// Index of `entries[0]`.
    first: u64,
    entries: VecDeque<Loc>,
    /// Payloads of entries `cache_from..`, aligned with the tail of `entries`.
    cache: VecDeque<Bytes>,
    cache_bytes: usize,
    /// Bytes on disk of the entries present (what a snapshot would let go).
    live_bytes: u64,
    vote: Option<Bytes>,
    committed: Option<Bytes>,
    purged: Option<(u64, Bytes)>,
}

impl GroupMem {
    fn last_index(&self) -> Option<u64> {
        if self.entries.is_empty() {
            None
        } else {
            Some(self.first + self.entries.len() as u64 - 1)
        }
    }

    fn next_index(&self) -> Option<u64> {
        match self.last_index() {
            Some(l) => Some(l + 1),
            None => self.purged.as_ref().map(|(i, _)| i + 1),
        }
    }

    fn cached(&self, index: u64) -> Option<&Bytes> {
        let pos = (index - self.first) as usize;
        let uncached = self.entries.len() - self.cache.len();
        pos.checked_sub(uncached).map(|i| &self.cache[i])
    }

    fn push(&mut self, index: u64, loc: Loc, payload: Bytes, budget: usize) {
        if self.entries.is_empty() {
            self.first = index;
        }
        self.entries.push_back(loc);
        self.live_bytes += loc.len as u64;
        self.cache_bytes += payload.len();
        self.cache.push_back(payload);
        while self.cache_bytes > budget && self.cache.len() > 1 {
            let b = self.cache.pop_front().expect("non-empty");
            self.cache_bytes -= b.len();
        }
    }

    /// Forgets entries with index >= `from`.
    fn truncate(&mut self, from: u64) {
        while let Some(last) = self.last_index() {
            if last < from {
                break;
            }
            if let Some(l) = self.entries.pop_back() {
                self.live_bytes -= l.len as u64;
            }
            if let Some(b) = self.cache.pop_back() {
                self.cache_bytes -= b.len();
            }
        }
    }

    /// Forgets entries with index <= `upto`.
    fn purge(&mut self, upto: u64) {
        while !self.entries.is_empty() && self.first <= upto {
            if let Some(l) = self.entries.pop_front() {
                self.live_bytes -= l.len as u64;
            }
            if self.cache.len() > self.entries.len() {
                let b = self.cache.pop_front().expect("non-empty");
                self.cache_bytes -= b.len();
            }
            self.first += 1;
        }
        if self.entries.is_empty() {
            self.first = self.first.max(upto + 1);
        }
    }
}

struct Segment {
    seq: u64,
    path: PathBuf,
    file: Arc<File>,
    size: u64,
}

struct Inner {
    dir: PathBuf,
    segments: Vec<Segment>,
    groups: BTreeMap<GroupId, GroupMem>,
    /// Set when an append failed: the active segment must be cut back to this size
    /// before anything else is written.
    rollback_tail: Option<u64>,
}

struct Flush {
    waiting: Vec<OnDurable>,
    stop: bool,
}

struct Shared {
    opts: LogEngineOptions,
    inner: Mutex<Inner>,
    flush: Mutex<Flush>,
    wake: Condvar,
    /// Set when a sync failed: what was written may or may not be on disk, and the page
    /// cache can no longer tell, so nothing more is accepted (PostgreSQL's lesson).
    failed: Mutex<Option<String>>,
    /// Why the disk refuses writes (full, EIO), from the last write's failure until a
    /// write succeeds again. A refused write left nothing behind (its partial bytes are
    /// cut away), so it may be tried again; replicas refuse new writes meanwhile.
    refusing: tokio::sync::watch::Sender<Option<String>>,
    counters: EngineCounters,
}

/// What the engine did since it opened, for self-metrics.
#[derive(Default)]
pub struct EngineCounters {
    /// Appends, votes, truncations and purges written.
    pub writes: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Syncs, each making every write before it durable.
    pub syncs: AtomicU64,
    /// Writes the disk refused (each is tried again until it succeeds).
    pub write_failures: AtomicU64,
}

/// The node's Raft log: see the module documentation.
pub struct LogEngine {
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
    repaired: u64,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.log")
}

fn encode_record(buf: &mut Vec<u8>, kind: u8, group: GroupId, parts: &[&[u8]]) -> u32 {
    let body_len = BODY_PREFIX + parts.iter().map(|p| p.len()).sum::<usize>();
    let start = buf.len();
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.push(kind);
    buf.extend_from_slice(&group.to_le_bytes());
    for p in parts {
        buf.extend_from_slice(p);
    }
    let crc = crc32c::crc32c(&buf[start + HEADER..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    (HEADER + body_len) as u32
}

/// A parsed record: kind, group and the rest of its body.
struct Record<'a> {
    kind: u8,
    group: GroupId,
    rest: &'a [u8],
    len: usize,
}

fn parse_record(data: &[u8], off: usize) -> Option<Record<'_>> {
    let h = data.get(off..off + HEADER)?;
    let len = u32::from_le_bytes(h[0..4].try_into().ok()?) as usize;
    let want = u32::from_le_bytes(h[4..8].try_into().ok()?);
    if !(BODY_PREFIX..=MAX_RECORD).contains(&len) {
        return None;
    }
    let body = data.get(off + HEADER..off + HEADER + len)?;
    if crc32c::crc32c(body) != want {
        return None;
    }
    Some(Record {
        kind: body[0],
        group: u32::from_le_bytes(body[1..5].try_into().ok()?),
        rest: &body[BODY_PREFIX..],
        len: HEADER + len,
    })
}

fn u64_at(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?))
}

impl LogEngine {
    /// Opens (or creates) the engine in `dir` and replays it into memory. A torn or
    /// corrupt record ends the log there (the file is cut, later segments removed):
    /// nothing after it was ever reported durable.
    pub fn open(dir: impl AsRef<Path>, opts: LogEngineOptions) -> Result<LogEngine, EngineError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let mut seqs = Vec::new();
        for e in fs::read_dir(&dir)? {
            let name = e?.file_name().to_string_lossy().to_string();
            if let Some(n) = name
                .strip_suffix(".log")
                .and_then(|n| n.parse::<u64>().ok())
            {
                seqs.push(n);
            }
        }
        seqs.sort_unstable();
        let mut inner = Inner {
            dir: dir.clone(),
            segments: Vec::new(),
            groups: BTreeMap::new(),
            rollback_tail: None,
        };
        let mut broken = false;
        let mut repaired = 0u64;
        for seq in seqs {
            let path = dir.join(segment_name(seq));
            if broken {
                warn!(segment = %path.display(), "removing raft log segment after a corrupt record");
                fs::remove_file(&path)?;
                continue;
            }
            let mut data = Vec::new();
            File::open(&path)?.read_to_end(&mut data)?;
            let mut off = 0usize;
            while off < data.len() {
                let parsed = parse_record(&data, off);
                let applied = parsed.as_ref().is_some_and(|r| {
                    let loc = Loc {
                        seg: seq,
                        off: off as u64,
                        len: r.len as u32,
                    };
                    replay(&mut inner.groups, r, loc, opts.cache_bytes_per_group)
                });
                let Some(r) = parsed.filter(|_| applied) else {
                    warn!(
                        segment = %path.display(),
                        offset = off,
                        dropped_bytes = data.len() - off,
                        "raft log has a torn, corrupt or out-of-order record; truncating the log there"
                    );
                    crate::files::cut_file(&path, off as u64)?;
                    broken = true;
                    repaired += 1;
                    break;
                };
                off += r.len;
            }
            let file = OpenOptions::new().read(true).append(true).open(&path)?;
            inner.segments.push(Segment {
                seq,
                path,
                file: Arc::new(file),
                size: off as u64,
            });
        }
        let entries: usize = inner.groups.values().map(|g| g.entries.len()).sum();
        info!(dir = %dir.display(), segments = inner.segments.len(), groups = inner.groups.len(), entries, "opened raft log");
        let shared = Arc::new(Shared {
            opts,
            inner: Mutex::new(inner),
            flush: Mutex::new(Flush {
                waiting: Vec::new(),
                stop: false,
            }),
            wake: Condvar::new(),
            failed: Mutex::new(None),
            refusing: tokio::sync::watch::Sender::new(None),
            counters: EngineCounters::default(),
        });
        let s = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("hearth-raftlog".into())
            .spawn(move || flush_loop(&s))?;
        Ok(LogEngine {
            shared,
            flusher: Some(flusher),
            repaired,
        })
    }

    /// Why the disk refuses writes now, if it does (see `Shared::refusing`).
    pub fn refusing(&self) -> Option<String> {
        self.shared.refusing.borrow().clone()
    }

    /// Follows [`LogEngine::refusing`].
    pub fn watch_refusing(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.shared.refusing.subscribe()
    }

    pub fn counters(&self) -> &EngineCounters {
        &self.shared.counters
    }

    /// Torn or corrupt records cut away when the engine was opened.
    pub fn corruptions_repaired(&self) -> u64 {
        self.repaired
    }

    /// The groups that have anything in the log.
    pub fn groups(&self) -> Vec<GroupId> {
        self.shared.inner.lock().groups.keys().copied().collect()
    }

    /// Bytes of recent entries each group keeps in memory.
    pub fn cache_bytes_per_group(&self) -> usize {
        self.shared.opts.cache_bytes_per_group
    }

    pub fn segment_count(&self) -> usize {
        self.shared.inner.lock().segments.len()
    }

    pub fn disk_bytes(&self) -> u64 {
        self.shared
            .inner
            .lock()
            .segments
            .iter()
            .map(|s| s.size)
            .sum()
    }

    /// Appends entries `(index, payload)` of `group`, which must follow its last entry
    /// (or its last purged one; entries at or below the purge point are dropped). They
    /// are readable when this returns; `on_durable` is called once they are on disk.
    pub fn append(
        &self,
        group: GroupId,
        entries: Vec<(u64, Bytes)>,
        on_durable: OnDurable,
    ) -> Result<(), EngineError> {
        self.shared.check_failed()?;
        let mut inner = self.shared.inner.lock();
        let g = inner.groups.entry(group).or_default();
        // Entries at or below the purge point are applied and in a snapshot already:
        // keeping them would open a hole, and nothing ever reads them.
        let purged = g.purged.as_ref().map(|(p, _)| *p);
        let mut entries = entries;
        entries.retain(|(i, _)| purged.is_none_or(|p| *i > p));
        let mut next = g.next_index();
        for (i, _) in &entries {
            if next.is_some_and(|n| *i != n) {
                return Err(EngineError::NotContiguous {
                    group,
                    last: next.map_or(0, |n| n.saturating_sub(1)),
                    got: *i,
                });
            }
            next = Some(i + 1);
        }
        let mut buf = Vec::with_capacity(entries.iter().map(|(_, p)| p.len() + 32).sum());
        let mut lens = Vec::with_capacity(entries.len());
        for (i, p) in &entries {
            lens.push(encode_record(
                &mut buf,
                KIND_ENTRY,
                group,
                &[&i.to_le_bytes(), p],
            ));
        }
        if entries.is_empty() {
            drop(inner);
            self.shared.enqueue(on_durable);
            return Ok(());
        }
        let (seg, base) = self.shared.write(&mut inner, &buf)?;
        let budget = self.shared.opts.cache_bytes_per_group;
        let g = inner.groups.get_mut(&group).expect("created above");
        let mut off = base;
        for ((i, p), len) in entries.into_iter().zip(lens) {
            g.push(i, Loc { seg, off, len }, p, budget);
            off += len as u64;
        }
        self.shared.enqueue(on_durable);
        Ok(())
    }

    /// Records `group`'s vote; `on_durable` is called once it is on disk.
    pub fn save_vote(
        &self,
        group: GroupId,
        vote: Bytes,
        on_durable: OnDurable,
    ) -> Result<(), EngineError> {
        self.save_small(group, KIND_VOTE, &[&vote], Some(on_durable), |g| {
            g.vote = Some(vote.clone())
        })
    }

    /// Records `group`'s committed log id. It is not synced by itself: it reaches the
    /// disk with the next sync (of any group's write), and losing the newest one to a
    /// crash only means a restart applies up to an older commit point and the leader
    /// commits the rest again (openraft allows it). Waiting for a sync here would put a
    /// second fsync on every entry's path, as openraft awaits this before applying.
    pub fn save_committed(&self, group: GroupId, committed: Bytes) -> Result<(), EngineError> {
        self.save_small(group, KIND_COMMITTED, &[&committed], None, |g| {
            g.committed = Some(committed.clone())
        })
    }

    /// Deletes `group`'s entries with index >= `from` (a Raft conflict).
    pub fn truncate(
        &self,
        group: GroupId,
        from: u64,
        on_durable: OnDurable,
    ) -> Result<(), EngineError> {
        self.save_small(
            group,
            KIND_TRUNCATE,
            &[&from.to_le_bytes()],
            Some(on_durable),
            |g| g.truncate(from),
        )
    }

    /// Deletes `group`'s entries with index <= `upto` (applied and in a snapshot);
    /// `meta` is the caller's form of the purged entry's id, answered in
    /// [`GroupLogState::purged`]. Segments nobody needs any more are deleted.
    pub fn purge(
        &self,
        group: GroupId,
        upto: u64,
        meta: Bytes,
        on_durable: OnDurable,
    ) -> Result<(), EngineError> {
        // Segments go only once the purge record is on disk: before that, a crash
        // would replay the old purge point with the entries after it missing.
        let shared = self.shared.clone();
        let then_collect: OnDurable = Box::new(move |r| {
            let r = r.and_then(|()| {
                shared
                    .collect_segments()
                    .map_err(|e| std::io::Error::other(e.to_string()))
            });
            on_durable(r)
        });
        self.save_small(
            group,
            KIND_PURGE,
            &[&upto.to_le_bytes(), &meta],
            Some(then_collect),
            |g| {
                g.purge(upto);
                if g.purged.as_ref().is_none_or(|(p, _)| *p <= upto) {
                    g.purged = Some((upto, meta.clone()));
                }
            },
        )
    }

    fn save_small(
        &self,
        group: GroupId,
        kind: u8,
        parts: &[&[u8]],
        on_durable: Option<OnDurable>,
        apply: impl FnOnce(&mut GroupMem),
    ) -> Result<(), EngineError> {
        self.shared.check_failed()?;
        let mut inner = self.shared.inner.lock();
        let mut buf = Vec::new();
        encode_record(&mut buf, kind, group, parts);
        self.shared.write(&mut inner, &buf)?;
        apply(inner.groups.entry(group).or_default());
        drop(inner);
        if let Some(cb) = on_durable {
            self.shared.enqueue(cb);
        }
        Ok(())
    }

    /// Bytes of `group`'s entries still in the log: what its next snapshot lets go.
    pub fn group_bytes(&self, group: GroupId) -> u64 {
        self.shared
            .inner
            .lock()
            .groups
            .get(&group)
            .map_or(0, |g| g.live_bytes)
    }

    pub fn vote(&self, group: GroupId) -> Option<Bytes> {
        self.shared
            .inner
            .lock()
            .groups
            .get(&group)
            .and_then(|g| g.vote.clone())
    }

    pub fn committed(&self, group: GroupId) -> Option<Bytes> {
        self.shared
            .inner
            .lock()
            .groups
            .get(&group)
            .and_then(|g| g.committed.clone())
    }

    pub fn state(&self, group: GroupId) -> Result<GroupLogState, EngineError> {
        let last = {
            let inner = self.shared.inner.lock();
            let Some(g) = inner.groups.get(&group) else {
                return Ok(GroupLogState::default());
            };
            match g.last_index() {
                None => {
                    return Ok(GroupLogState {
                        purged: g.purged.clone(),
                        last: None,
                    })
                }
                Some(l) => (l, g.purged.clone()),
            }
        };
        let (l, purged) = last;
        let mut e = self.read(group, l, l + 1, usize::MAX)?;
        Ok(GroupLogState {
            purged,
            last: e.pop(),
        })
    }

    /// Entries of `group` with index in `start..end` that are present, in order, at
    /// most `max_bytes` of payload (but at least one entry when any is present).
    pub fn read(
        &self,
        group: GroupId,
        start: u64,
        end: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes)>, EngineError> {
        enum Got {
            Cached(Bytes),
            Disk(Arc<File>, Loc),
        }
        let got: Vec<(u64, Got)> = {
            let inner = self.shared.inner.lock();
            let Some(g) = inner.groups.get(&group) else {
                return Ok(Vec::new());
            };
            let Some(last) = g.last_index() else {
                return Ok(Vec::new());
            };
            let lo = start.max(g.first);
            let hi = end.min(last + 1);
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for i in lo..hi {
                if !out.is_empty() && bytes >= max_bytes {
                    break;
                }
                if let Some(b) = g.cached(i) {
                    bytes += b.len();
                    out.push((i, Got::Cached(b.clone())));
                } else {
                    let loc = g.entries[(i - g.first) as usize];
                    let seg = inner
                        .segments
                        .iter()
                        .find(|s| s.seq == loc.seg)
                        .ok_or_else(|| {
                            EngineError::Corrupt(format!(
                                "segment {} of group {group} entry {i} is gone",
                                loc.seg
                            ))
                        })?;
                    bytes += loc.len as usize;
                    out.push((i, Got::Disk(seg.file.clone(), loc)));
                }
            }
            out
        };
        let mut out = Vec::with_capacity(got.len());
        for (i, g) in got {
            match g {
                Got::Cached(b) => out.push((i, b)),
                Got::Disk(file, loc) => {
                    let mut data = vec![0u8; loc.len as usize];
                    file.read_exact_at(&mut data, loc.off)?;
                    let end = parse_record(&data, 0)
                        .filter(|r| {
                            r.kind == KIND_ENTRY && r.group == group && u64_at(r.rest) == Some(i)
                        })
                        .map(|r| r.len)
                        .ok_or_else(|| {
                            EngineError::Corrupt(format!(
                                "group {group} entry {i} at segment {} offset {}",
                                loc.seg, loc.off
                            ))
                        })?;
                    let start = HEADER + BODY_PREFIX + 8;
                    out.push((i, Bytes::from(data).slice(start..end)));
                }
            }
        }
        Ok(out)
    }

    /// Groups whose oldest entry keeps the oldest segment alive while there are more
    /// than `segments` of them: each should take a snapshot so its log can be purged.
    pub fn pinning_groups(&self, segments: usize) -> Vec<GroupId> {
        let inner = self.shared.inner.lock();
        if inner.segments.len() <= segments {
            return Vec::new();
        }
        let oldest = inner.segments[0].seq;
        inner
            .groups
            .iter()
            .filter(|(_, g)| g.entries.front().is_some_and(|l| l.seg == oldest))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Applies one recovered record to memory; false when it cannot follow what came before.
fn replay(
    groups: &mut BTreeMap<GroupId, GroupMem>,
    r: &Record<'_>,
    loc: Loc,
    budget: usize,
) -> bool {
    let g = groups.entry(r.group).or_default();
    match r.kind {
        KIND_ENTRY => {
            let Some(i) = u64_at(r.rest) else {
                return false;
            };
            if g.next_index().is_some_and(|n| n != i) {
                return false;
            }
            g.push(i, loc, Bytes::copy_from_slice(&r.rest[8..]), budget);
        }
        KIND_VOTE => g.vote = Some(Bytes::copy_from_slice(r.rest)),
        KIND_COMMITTED => g.committed = Some(Bytes::copy_from_slice(r.rest)),
        KIND_TRUNCATE => {
            let Some(from) = u64_at(r.rest) else {
                return false;
            };
            g.truncate(from);
        }
        KIND_PURGE => {
            let Some(upto) = u64_at(r.rest) else {
                return false;
            };
            g.purge(upto);
            if g.purged.as_ref().is_none_or(|(p, _)| *p <= upto) {
                g.purged = Some((upto, Bytes::copy_from_slice(&r.rest[8..])));
            }
        }
        _ => return false,
    }
    true
}

impl Shared {
    /// Deletes the oldest segments while no group has an entry in them. The state
    /// records they hold (votes, committed ids, purges) were written again at the start
    /// of every later segment.
    fn collect_segments(&self) -> Result<(), EngineError> {
        let mut inner = self.inner.lock();
        let pinned = inner
            .groups
            .values()
            .filter_map(|g| g.entries.front().map(|l| l.seg))
            .min()
            .unwrap_or(u64::MAX);
        let mut removed = false;
        while inner.segments.len() > 1 && inner.segments[0].seq < pinned {
            let s = inner.segments.remove(0);
            fs::remove_file(&s.path)?;
            removed = true;
        }
        if removed {
            crate::files::sync_dir(&inner.dir)?;
        }
        Ok(())
    }

    fn check_failed(&self) -> Result<(), EngineError> {
        match &*self.failed.lock() {
            Some(e) => Err(EngineError::Failed(e.clone())),
            None => Ok(()),
        }
    }

    /// Writes `buf` at the end of the active segment (starting a new one first when the
    /// active one is full); returns the segment and the offset it starts at.
    fn write(&self, inner: &mut Inner, buf: &[u8]) -> Result<(u64, u64), EngineError> {
        if let Some(size) = inner.rollback_tail {
            let seg = inner
                .segments
                .last()
                .expect("a failed append had a segment");
            seg.file.set_len(size).and_then(|()| seg.file.sync_all()).map_err(|e| {
                self.refuse(&e);
                EngineError::Io(std::io::Error::other(format!(
                    "the raft log could not cut the tail of a failed append ({e}); refusing writes until it can"
                )))
            })?;
            inner.rollback_tail = None;
        }
        let full = inner
            .segments
            .last()
            .is_none_or(|s| s.size >= self.opts.segment_bytes);
        if full {
            self.roll(inner)?;
        }
        let seg = inner.segments.last_mut().expect("a segment exists");
        let base = seg.size;
        if let Err(e) = (&*seg.file).write_all(buf) {
            self.refuse(&e);
            // Part of it may be in the file (a short write on a full disk): cut it away
            // before anything follows it, or recovery would end the log at it and drop
            // later writes that were reported durable.
            inner.rollback_tail = Some(base);
            let seg = inner.segments.last().expect("a segment exists");
            if seg
                .file
                .set_len(base)
                .and_then(|()| seg.file.sync_all())
                .is_ok()
            {
                inner.rollback_tail = None;
            }
            return Err(e.into());
        }
        seg.size += buf.len() as u64;
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_written
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        if self.refusing.borrow().is_some() {
            info!("the raft log writes again");
            self.refusing.send_replace(None);
        }
        Ok((seg.seq, base))
    }

    /// Records that the disk refused a write.
    fn refuse(&self, e: &dyn std::fmt::Display) {
        self.counters.write_failures.fetch_add(1, Ordering::Relaxed);
        let why = e.to_string();
        self.refusing.send_if_modified(|r| {
            if r.as_deref() == Some(why.as_str()) {
                return false;
            }
            warn!(error = %why, "the raft log cannot write; writes are refused until it can (what it could not write is tried again)");
            *r = Some(why.clone());
            true
        });
    }

    /// Starts a new segment. The old one is synced first (the flusher only syncs the
    /// active one), and the new one opens with every group's vote, committed id and
    /// purge point, so older segments can go once no entry needs them.
    fn roll(&self, inner: &mut Inner) -> Result<(), EngineError> {
        if let Some(s) = inner.segments.last() {
            if self.opts.fsync {
                if let Err(e) = s.file.sync_data() {
                    // As in the flusher: after a failed sync the page cache cannot be
                    // trusted, so this is no refusal to wait out but the engine's end.
                    let mut failed = self.failed.lock();
                    if failed.is_none() {
                        warn!(error = %e, "raft log sync failed; the log refuses every write until the node restarts");
                        *failed = Some(e.to_string());
                    }
                    return Err(EngineError::Failed(e.to_string()));
                }
            }
        }
        let seq = inner.segments.last().map_or(1, |s| s.seq + 1);
        let path = inner.dir.join(segment_name(seq));
        let opened = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .and_then(|f| crate::files::sync_dir(&inner.dir).map(|()| f));
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                self.refuse(&e);
                let _ = fs::remove_file(&path);
                return Err(e.into());
            }
        };
        let mut head = Vec::new();
        for (id, g) in &inner.groups {
            if let Some(v) = &g.vote {
                encode_record(&mut head, KIND_VOTE, *id, &[v]);
            }
            if let Some(c) = &g.committed {
                encode_record(&mut head, KIND_COMMITTED, *id, &[c]);
            }
            if let Some((p, meta)) = &g.purged {
                encode_record(&mut head, KIND_PURGE, *id, &[&p.to_le_bytes(), meta]);
            }
        }
        let written = (&file).write_all(&head).and_then(|()| {
            if self.opts.fsync {
                // Older segments may be deleted as soon as no entry needs them; the
                // state records repeated here must be on disk by then.
                file.sync_data()?;
            }
            Ok(())
        });
        if let Err(e) = written {
            // Half a segment header would end the log at the next start: the segment
            // is made again, whole, by the next write.
            self.refuse(&e);
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(e.into());
        }
        inner.segments.push(Segment {
            seq,
            path,
            file: Arc::new(file),
            size: head.len() as u64,
        });
        Ok(())
    }

    fn enqueue(&self, on_durable: OnDurable) {
        let mut f = self.flush.lock();
        f.waiting.push(on_durable);
        self.wake.notify_one();
    }
}

/// The one syncing thread: it takes every write waiting, syncs the active segment once
/// (earlier segments were synced when they were closed), and reports them all.
fn flush_loop(s: &Shared) {
    loop {
        let batch = {
            let mut f = s.flush.lock();
            while f.waiting.is_empty() && !f.stop {
                s.wake.wait(&mut f);
            }
            if f.waiting.is_empty() && f.stop {
                return;
            }
            std::mem::take(&mut f.waiting)
        };
        // Taken after the batch: every write in it is in this segment or an earlier,
        // already synced one.
        let file = s.inner.lock().segments.last().map(|seg| seg.file.clone());
        let failed = s.failed.lock().clone();
        let result = match (failed, file) {
            (Some(e), _) => Err(std::io::Error::other(e)),
            (None, Some(f)) if s.opts.fsync => {
                s.counters.syncs.fetch_add(1, Ordering::Relaxed);
                f.sync_data()
            }
            _ => Ok(()),
        };
        if let Err(e) = &result {
            let mut failed = s.failed.lock();
            if failed.is_none() {
                warn!(error = %e, "raft log sync failed; the log refuses every write until the node restarts");
                *failed = Some(e.to_string());
            }
        }
        for cb in batch {
            cb(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            });
        }
    }
}

impl Drop for LogEngine {
    fn drop(&mut self) {
        self.shared.flush.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
    }
}

/// Waits for an engine write to be durable, from async code.
pub async fn durable(
    submit: impl FnOnce(OnDurable) -> Result<(), EngineError>,
) -> Result<(), EngineError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    submit(Box::new(move |r| {
        let _ = tx.send(r);
    }))?;
    match rx.await {
        Ok(r) => r.map_err(EngineError::Io),
        Err(_) => Err(EngineError::Failed("the raft log stopped".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn opts(segment_bytes: u64) -> LogEngineOptions {
        LogEngineOptions {
            segment_bytes,
            cache_bytes_per_group: 64,
            fsync: true,
        }
    }

    fn payload(g: GroupId, i: u64) -> Bytes {
        Bytes::from(format!("g{g}-e{i}-").repeat((i % 5 + 1) as usize))
    }

    /// Appends and waits until durable.
    fn append(e: &LogEngine, g: GroupId, from: u64, n: u64) {
        let (tx, rx) = mpsc::channel();
        let entries = (from..from + n).map(|i| (i, payload(g, i))).collect();
        e.append(g, entries, Box::new(move |r| tx.send(r).unwrap()))
            .unwrap();
        rx.recv().unwrap().unwrap();
    }

    fn wait(submit: impl FnOnce(OnDurable) -> Result<(), EngineError>) {
        let (tx, rx) = mpsc::channel();
        submit(Box::new(move |r| tx.send(r).unwrap())).unwrap();
        rx.recv().unwrap().unwrap();
    }

    fn all(e: &LogEngine, g: GroupId) -> Vec<(u64, Bytes)> {
        e.read(g, 0, u64::MAX, usize::MAX).unwrap()
    }

    fn expected(g: GroupId, from: u64, to: u64) -> Vec<(u64, Bytes)> {
        (from..=to).map(|i| (i, payload(g, i))).collect()
    }

    #[test]
    fn groups_interleave_in_one_log_and_come_back_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = LogEngine::open(dir.path(), opts(1 << 10)).unwrap();
            for round in 0..20 {
                for g in 0..3 {
                    append(&e, g, round * 3 + 1, 3);
                }
            }
            wait(|cb| e.save_vote(1, Bytes::from_static(b"vote-1"), cb));
            // Not synced by itself: the truncation's sync covers it.
            e.save_committed(2, Bytes::from_static(b"c-2")).unwrap();
            wait(|cb| e.truncate(0, 50, cb));
            append(&e, 0, 50, 2);
            assert!(e.segment_count() > 3);
            // Reads of old entries come from disk (the cache holds 64 bytes a group).
            assert_eq!(all(&e, 1), expected(1, 1, 60));
        }
        let e = LogEngine::open(dir.path(), opts(1 << 10)).unwrap();
        assert_eq!(e.groups(), vec![0, 1, 2]);
        assert_eq!(all(&e, 0), expected(0, 1, 51));
        assert_eq!(all(&e, 1), expected(1, 1, 60));
        assert_eq!(all(&e, 2), expected(2, 1, 60));
        assert_eq!(e.vote(1).unwrap(), Bytes::from_static(b"vote-1"));
        assert_eq!(e.committed(2).unwrap(), Bytes::from_static(b"c-2"));
        assert_eq!(e.state(0).unwrap().last.unwrap().0, 51);
        // A range, capped in bytes: at least one entry, then up to the cap.
        assert_eq!(e.read(1, 10, 20, usize::MAX).unwrap(), expected(1, 10, 19));
        assert_eq!(e.read(1, 10, 20, 1).unwrap(), expected(1, 10, 10));
        assert!(e.corruptions_repaired() == 0);
    }

    #[test]
    fn appends_must_follow_and_purged_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let e = LogEngine::open(dir.path(), opts(1 << 20)).unwrap();
        append(&e, 4, 5, 3);
        let err = e
            .append(4, vec![(9, payload(4, 9))], Box::new(|_| {}))
            .unwrap_err();
        assert!(
            matches!(err, EngineError::NotContiguous { got: 9, .. }),
            "{err}"
        );
        wait(|cb| e.purge(4, 10, Bytes::from_static(b"p10"), cb));
        assert!(all(&e, 4).is_empty());
        let s = e.state(4).unwrap();
        assert_eq!(s.purged, Some((10, Bytes::from_static(b"p10"))));
        assert!(s.last.is_none());
        // At or below the purge point: dropped. Then the log continues after it.
        append(&e, 4, 9, 1);
        assert!(all(&e, 4).is_empty());
        append(&e, 4, 11, 2);
        assert_eq!(all(&e, 4), expected(4, 11, 12));
    }

    #[test]
    fn purged_segments_are_deleted_and_state_records_survive_them() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = LogEngine::open(dir.path(), opts(512)).unwrap();
            wait(|cb| e.save_vote(7, Bytes::from_static(b"v7"), cb));
            wait(|cb| e.save_vote(8, Bytes::from_static(b"v8"), cb));
            for r in 0..30 {
                append(&e, 7, r * 2 + 1, 2);
                append(&e, 8, r * 2 + 1, 2);
            }
            let before = e.segment_count();
            // Group 8 lags: it pins the oldest segment until it purges too.
            wait(|cb| e.purge(7, 55, Bytes::from_static(b"p55"), cb));
            assert_eq!(e.segment_count(), before);
            assert_eq!(e.pinning_groups(2), vec![8]);
            wait(|cb| e.purge(8, 50, Bytes::from_static(b"p50"), cb));
            assert!(
                e.segment_count() < before / 2,
                "{} of {before}",
                e.segment_count()
            );
            assert!(e.pinning_groups(usize::MAX).is_empty());
        }
        let e = LogEngine::open(dir.path(), opts(512)).unwrap();
        // The votes were in deleted segments; every later segment repeated them.
        assert_eq!(e.vote(7).unwrap(), Bytes::from_static(b"v7"));
        assert_eq!(e.vote(8).unwrap(), Bytes::from_static(b"v8"));
        assert_eq!(all(&e, 7), expected(7, 56, 60));
        assert_eq!(all(&e, 8), expected(8, 51, 60));
        assert_eq!(e.state(8).unwrap().purged.unwrap().0, 50);
    }

    #[test]
    fn a_torn_tail_ends_the_log_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = LogEngine::open(dir.path(), opts(1 << 20)).unwrap();
            append(&e, 1, 1, 10);
            append(&e, 2, 1, 10);
        }
        let seg = dir.path().join(segment_name(1));
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let e = LogEngine::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(e.corruptions_repaired(), 1);
        assert_eq!(all(&e, 1), expected(1, 1, 10));
        assert_eq!(all(&e, 2), expected(2, 1, 9));
        append(&e, 2, 10, 3);
        drop(e);
        let e = LogEngine::open(dir.path(), opts(1 << 20)).unwrap();
        assert_eq!(all(&e, 2), expected(2, 1, 12));
    }

    #[test]
    fn a_flipped_byte_drops_the_suffix_only() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = LogEngine::open(dir.path(), opts(400)).unwrap();
            for r in 0..20 {
                append(&e, 3, r * 4 + 1, 4);
            }
        }
        let mut segs: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        segs.sort();
        assert!(segs.len() >= 4);
        let mut data = fs::read(&segs[2]).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        fs::write(&segs[2], &data).unwrap();
        let e = LogEngine::open(dir.path(), opts(400)).unwrap();
        let got = all(&e, 3);
        assert!(!got.is_empty() && got.len() < 80, "{}", got.len());
        assert_eq!(got, expected(3, 1, got.len() as u64));
        assert_eq!(e.segment_count(), 3);
    }

    #[test]
    fn concurrent_writers_of_many_groups_are_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        {
            let e = Arc::new(LogEngine::open(dir.path(), opts(8 << 10)).unwrap());
            let threads: Vec<_> = (0..8)
                .map(|g| {
                    let e = e.clone();
                    std::thread::spawn(move || {
                        for i in 0..50 {
                            append(&e, g, i * 2 + 1, 2);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
        let e = LogEngine::open(dir.path(), opts(8 << 10)).unwrap();
        for g in 0..8 {
            assert_eq!(all(&e, g), expected(g, 1, 100));
        }
    }
}
