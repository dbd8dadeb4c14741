//! Segment files of CRC-checked records: the on-disk form of [`LogStorage`].

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use tracing::{info, warn};

use super::{Entry, LogError, LogId, LogState, LogStorage};

/// Record header: payload length (u32 LE), CRC-32C of term+index+payload (u32 LE),
/// term (u64 LE), index (u64 LE).
const HEADER: usize = 24;
/// A record larger than this is corruption, not data (bounds allocation on replay).
const MAX_RECORD: usize = 256 << 20;

#[derive(Clone, Debug)]
pub struct SegmentLogOptions {
    /// Start a new segment file once the active one is larger than this.
    pub segment_bytes: u64,
    /// fsync on every append (the default; tests of throughput may turn it off).
    pub fsync: bool,
}

impl Default for SegmentLogOptions {
    fn default() -> Self {
        SegmentLogOptions {
            segment_bytes: 64 << 20,
            fsync: true,
        }
    }
}

struct Segment {
    path: PathBuf,
    first_index: u64,
    /// Byte offset of each record; record i has index first_index + i.
    offsets: Vec<u64>,
    terms: Vec<u64>,
    size: u64,
}

impl Segment {
    fn last_index(&self) -> Option<u64> {
        if self.offsets.is_empty() {
            None
        } else {
            Some(self.first_index + self.offsets.len() as u64 - 1)
        }
    }
}

struct Inner {
    dir: PathBuf,
    segments: Vec<Segment>,
    active: Option<File>,
    last_purged: Option<LogId>,
    /// Set when an append failed: the active segment must be cut back to this size
    /// (its last good record's end) before anything else is appended.
    rollback_tail: Option<u64>,
}

/// A write-ahead log in segment files under one directory.
pub struct SegmentLog {
    opts: SegmentLogOptions,
    inner: Mutex<Inner>,
    /// Torn or corrupt records found (and cut away) when the log was opened.
    repaired: u64,
}

fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.wal")
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn crc(term: u64, index: u64, payload: &[u8]) -> u32 {
    let mut c = crc32c::crc32c(&term.to_le_bytes());
    c = crc32c::crc32c_append(c, &index.to_le_bytes());
    crc32c::crc32c_append(c, payload)
}

fn encode_record(buf: &mut Vec<u8>, e: &Entry) {
    buf.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc(e.log_id.term, e.log_id.index, &e.payload).to_le_bytes());
    buf.extend_from_slice(&e.log_id.term.to_le_bytes());
    buf.extend_from_slice(&e.log_id.index.to_le_bytes());
    buf.extend_from_slice(&e.payload);
}

/// Parses the record at `off`; None when it is torn or corrupt.
fn parse_record(data: &[u8], off: usize) -> Option<(Entry, usize)> {
    let h = data.get(off..off + HEADER)?;
    let len = u32::from_le_bytes(h[0..4].try_into().ok()?) as usize;
    let want = u32::from_le_bytes(h[4..8].try_into().ok()?);
    let term = u64::from_le_bytes(h[8..16].try_into().ok()?);
    let index = u64::from_le_bytes(h[16..24].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = data.get(off + HEADER..off + HEADER + len)?;
    if crc(term, index, payload) != want {
        return None;
    }
    Some((
        Entry {
            log_id: LogId { term, index },
            payload: payload.to_vec(),
        },
        HEADER + len,
    ))
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`. A torn or corrupt tail is truncated and
    /// logged; the log always opens.
    pub fn open(dir: impl AsRef<Path>, opts: SegmentLogOptions) -> Result<SegmentLog, LogError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        let mut firsts: Vec<u64> = Vec::new();
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(num) = name.strip_suffix(".wal") {
                if let Ok(n) = num.parse::<u64>() {
                    firsts.push(n);
                }
            }
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
        firsts.sort_unstable();
        let last_purged = read_marker(&dir.join("purged"))?;
        let mut segments: Vec<Segment> = Vec::new();
        let mut broken = false;
        let mut repaired = 0u64;
        let mut expected_next: Option<u64> = None;
        for first in firsts {
            let path = dir.join(segment_name(first));
            if broken {
                warn!(segment = %path.display(), "removing write-ahead log segment after a corrupt record");
                fs::remove_file(&path)?;
                continue;
            }
            if let Some(n) = expected_next {
                if first != n {
                    warn!(segment = %path.display(), expected = n, "write-ahead log segment does not follow the previous one; dropping it and what follows");
                    broken = true;
                    repaired += 1;
                    fs::remove_file(&path)?;
                    continue;
                }
            }
            let mut data = Vec::new();
            File::open(&path)?.read_to_end(&mut data)?;
            let mut seg = Segment {
                path: path.clone(),
                first_index: first,
                offsets: Vec::new(),
                terms: Vec::new(),
                size: 0,
            };
            let mut off = 0usize;
            while off < data.len() {
                match parse_record(&data, off) {
                    Some((e, n)) if e.log_id.index == first + seg.offsets.len() as u64 => {
                        seg.offsets.push(off as u64);
                        seg.terms.push(e.log_id.term);
                        off += n;
                    }
                    _ => {
                        warn!(
                            segment = %path.display(),
                            offset = off,
                            dropped_bytes = data.len() - off,
                            "write-ahead log has a torn or corrupt record; truncating the log there"
                        );
                        cut_file(&path, off as u64)?;
                        broken = true;
                        repaired += 1;
                        break;
                    }
                }
            }
            seg.size = off as u64;
            expected_next = Some(first + seg.offsets.len() as u64);
            segments.push(seg);
        }
        // Drop empty segments except the last one.
        while segments.len() > 1 && segments[0].offsets.is_empty() {
            let s = segments.remove(0);
            fs::remove_file(&s.path)?;
        }
        let active = match segments.last() {
            Some(s) => Some(OpenOptions::new().append(true).open(&s.path)?),
            None => None,
        };
        let n: usize = segments.iter().map(|s| s.offsets.len()).sum();
        info!(dir = %dir.display(), segments = segments.len(), entries = n, "opened write-ahead log");
        Ok(SegmentLog {
            repaired,
            opts,
            inner: Mutex::new(Inner {
                dir,
                segments,
                active,
                last_purged,
                rollback_tail: None,
            }),
        })
    }

    /// Bytes on disk across all segments.
    pub fn disk_bytes(&self) -> u64 {
        self.inner.lock().segments.iter().map(|s| s.size).sum()
    }

    /// Torn or corrupt records cut away when the log was opened (Prometheus'
    /// `prometheus_tsdb_wal_corruptions_total`).
    pub fn corruptions_repaired(&self) -> u64 {
        self.repaired
    }

    pub fn segment_count(&self) -> usize {
        self.inner.lock().segments.len()
    }
}

fn read_marker(path: &Path) -> Result<Option<LogId>, LogError> {
    match fs::read(path) {
        Ok(b) if b.len() == 20 => {
            let term = u64::from_le_bytes(b[0..8].try_into().expect("8 bytes"));
            let index = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
            let c = u32::from_le_bytes(b[16..20].try_into().expect("4 bytes"));
            if crc32c::crc32c(&b[0..16]) != c {
                warn!(path = %path.display(), "purge marker is corrupt; ignoring it");
                return Ok(None);
            }
            Ok(Some(LogId { term, index }))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Cuts a file to `len` bytes, durably: how a torn or corrupt log tail is removed.
pub(crate) fn cut_file(path: &Path, len: u64) -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()
}

/// Writes a small file atomically: temp file, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

impl Inner {
    fn last_log_id(&self) -> Option<LogId> {
        for s in self.segments.iter().rev() {
            if let Some(i) = s.last_index() {
                return Some(LogId {
                    term: *s.terms.last().expect("terms parallel offsets"),
                    index: i,
                });
            }
        }
        None
    }

    fn next_index(&self) -> u64 {
        match self.last_log_id() {
            Some(l) => l.index + 1,
            None => self.last_purged.map_or(1, |p| p.index + 1),
        }
    }

    /// Cuts the active segment back to `rollback_tail` and makes that durable; true
    /// when the log is clean again (or was).
    fn cut_failed_tail(&mut self) -> bool {
        let Some(size) = self.rollback_tail else {
            return true;
        };
        let Some(seg) = self.segments.last() else {
            self.rollback_tail = None;
            return true;
        };
        let cut = OpenOptions::new()
            .write(true)
            .open(&seg.path)
            .and_then(|f| {
                f.set_len(size)?;
                f.sync_all()
            })
            // The append handle's buffered state is unknown after a failure: reopen.
            .and_then(|()| OpenOptions::new().append(true).open(&seg.path));
        match cut {
            Ok(f) => {
                info!(segment = %seg.path.display(), size, "cut the tail of a failed write-ahead log append");
                self.active = Some(f);
                self.rollback_tail = None;
                true
            }
            Err(e) => {
                warn!(segment = %seg.path.display(), error = %e, "cutting the tail of a failed write-ahead log append failed; appends are refused until it succeeds");
                false
            }
        }
    }

    fn new_segment(&mut self, first_index: u64) -> Result<(), LogError> {
        if let Some(f) = self.active.take() {
            f.sync_all()?;
        }
        let path = self.dir.join(segment_name(first_index));
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            path,
            first_index,
            offsets: Vec::new(),
            terms: Vec::new(),
            size: 0,
        });
        self.active = Some(f);
        Ok(())
    }
}

impl LogStorage for SegmentLog {
    fn state(&self) -> LogState {
        let inner = self.inner.lock();
        LogState {
            last_purged: inner.last_purged,
            last: inner.last_log_id().or(inner.last_purged),
        }
    }

    fn append(&self, entries: &[Entry]) -> Result<(), LogError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut inner = self.inner.lock();
        // The tail of an earlier failed append must be gone before anything follows it.
        if inner.rollback_tail.is_some() && !inner.cut_failed_tail() {
            return Err(LogError::Io(std::io::Error::other(
                "the write-ahead log could not cut the tail of a failed append; \
                 refusing appends until it can",
            )));
        }
        for (next, e) in (inner.next_index()..).zip(entries) {
            if e.log_id.index != next {
                return Err(LogError::NotContiguous {
                    expected_after: next - 1,
                    got: e.log_id.index,
                });
            }
        }
        let need_new = match inner.segments.last() {
            None => true,
            Some(s) => {
                s.size >= self.opts.segment_bytes
                    || (s.offsets.is_empty() && s.first_index != entries[0].log_id.index)
            }
        };
        if need_new {
            inner.new_segment(entries[0].log_id.index)?;
        }
        let mut buf = Vec::with_capacity(entries.iter().map(|e| e.payload.len() + HEADER).sum());
        let base = inner.segments.last().expect("a segment exists").size;
        let mut offsets = Vec::with_capacity(entries.len());
        for e in entries {
            offsets.push(base + buf.len() as u64);
            encode_record(&mut buf, e);
        }
        let f = inner.active.as_mut().expect("active segment is open");
        let written = f.write_all(&buf).and_then(|()| {
            if self.opts.fsync {
                f.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // Part of the group may be in the file (a short write on a full disk, or
            // pages whose fsync failed). Cut it away before anything else is appended:
            // a later record written after garbage would be dropped at the next open.
            inner.rollback_tail = Some(base);
            inner.cut_failed_tail();
            return Err(e.into());
        }
        let seg = inner.segments.last_mut().expect("a segment exists");
        seg.offsets.extend(offsets);
        seg.terms.extend(entries.iter().map(|e| e.log_id.term));
        seg.size += buf.len() as u64;
        Ok(())
    }

    fn truncate(&self, from: u64) -> Result<(), LogError> {
        let mut inner = self.inner.lock();
        if inner.rollback_tail.is_some() && !inner.cut_failed_tail() {
            return Err(LogError::Io(std::io::Error::other(
                "the write-ahead log could not cut the tail of a failed append",
            )));
        }
        while let Some(last) = inner.segments.last() {
            if last.first_index >= from && inner.segments.len() > 1 {
                let s = inner.segments.pop().expect("checked non-empty");
                inner.active = None;
                fs::remove_file(&s.path)?;
                continue;
            }
            break;
        }
        let dir = inner.dir.clone();
        if let Some(seg) = inner.segments.last_mut() {
            if from < seg.first_index + seg.offsets.len() as u64 {
                let keep = from.saturating_sub(seg.first_index) as usize;
                let off = if keep < seg.offsets.len() {
                    seg.offsets[keep]
                } else {
                    seg.size
                };
                let f = OpenOptions::new().write(true).open(&seg.path)?;
                f.set_len(off)?;
                f.sync_all()?;
                seg.offsets.truncate(keep);
                seg.terms.truncate(keep);
                seg.size = off;
            }
            let path = seg.path.clone();
            inner.active = Some(OpenOptions::new().append(true).open(path)?);
        }
        sync_dir(&dir)?;
        Ok(())
    }

    fn purge(&self, upto: LogId) -> Result<(), LogError> {
        let mut inner = self.inner.lock();
        write_atomic(&inner.dir.join("purged"), &{
            let mut b = Vec::with_capacity(20);
            b.extend_from_slice(&upto.term.to_le_bytes());
            b.extend_from_slice(&upto.index.to_le_bytes());
            let c = crc32c::crc32c(&b);
            b.extend_from_slice(&c.to_le_bytes());
            b
        })?;
        inner.last_purged = Some(upto);
        // Remove whole segments that hold only purged entries; the active one stays.
        while inner.segments.len() > 1 {
            let s = &inner.segments[0];
            match s.last_index() {
                Some(l) if l <= upto.index => {
                    let s = inner.segments.remove(0);
                    fs::remove_file(&s.path)?;
                }
                None => {
                    let s = inner.segments.remove(0);
                    fs::remove_file(&s.path)?;
                }
                _ => break,
            }
        }
        let dir = inner.dir.clone();
        sync_dir(&dir)?;
        Ok(())
    }

    fn read_range(&self, range: RangeInclusive<u64>) -> Result<Vec<Entry>, LogError> {
        let inner = self.inner.lock();
        let lo = (*range.start()).max(inner.last_purged.map_or(0, |p| p.index + 1));
        let hi = *range.end();
        let mut out = Vec::new();
        for seg in &inner.segments {
            let Some(last) = seg.last_index() else {
                continue;
            };
            if last < lo || seg.first_index > hi {
                continue;
            }
            let from = lo.max(seg.first_index);
            let to = hi.min(last);
            let start = seg.offsets[(from - seg.first_index) as usize];
            let end = if to == last {
                seg.size
            } else {
                seg.offsets[(to - seg.first_index + 1) as usize]
            };
            let mut f = File::open(&seg.path)?;
            f.seek(SeekFrom::Start(start))?;
            let mut data = vec![0u8; (end - start) as usize];
            f.read_exact(&mut data)?;
            let mut off = 0usize;
            while off < data.len() {
                let (e, n) = parse_record(&data, off).ok_or_else(|| {
                    LogError::Corrupt(format!(
                        "record at {} in {}",
                        start as usize + off,
                        seg.path.display()
                    ))
                })?;
                off += n;
                out.push(e);
            }
        }
        Ok(out)
    }

    fn save_vote(&self, vote: &[u8]) -> Result<(), LogError> {
        let inner = self.inner.lock();
        let mut b = vote.to_vec();
        b.extend_from_slice(&crc32c::crc32c(vote).to_le_bytes());
        write_atomic(&inner.dir.join("vote"), &b)?;
        Ok(())
    }

    fn read_vote(&self) -> Result<Option<Vec<u8>>, LogError> {
        let inner = self.inner.lock();
        match fs::read(inner.dir.join("vote")) {
            Ok(b) if b.len() >= 4 => {
                let (v, c) = b.split_at(b.len() - 4);
                if crc32c::crc32c(v).to_le_bytes() == c {
                    Ok(Some(v.to_vec()))
                } else {
                    Err(LogError::Corrupt("vote file checksum mismatch".into()))
                }
            }
            Ok(_) => Err(LogError::Corrupt("vote file too short".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(from: u64, n: u64) -> Vec<Entry> {
        (from..from + n)
            .map(|i| Entry {
                log_id: LogId { term: 1, index: i },
                payload: format!("payload-{i}")
                    .repeat((i % 7 + 1) as usize)
                    .into_bytes(),
            })
            .collect()
    }

    fn small() -> SegmentLogOptions {
        SegmentLogOptions {
            segment_bytes: 300,
            fsync: true,
        }
    }

    #[test]
    fn append_reopen_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = SegmentLog::open(dir.path(), small()).unwrap();
            log.append(&entries(1, 10)).unwrap();
            log.append(&entries(11, 30)).unwrap();
            assert!(log.segment_count() > 1);
            assert!(log.append(&entries(50, 1)).is_err());
        }
        let log = SegmentLog::open(dir.path(), small()).unwrap();
        assert_eq!(log.read_range(1..=40).unwrap(), entries(1, 40));
        assert_eq!(log.read_range(5..=7).unwrap(), entries(5, 3));
        assert_eq!(log.state().last, Some(LogId { term: 1, index: 40 }));
    }

    #[test]
    fn torn_tail_is_truncated_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = SegmentLog::open(dir.path(), SegmentLogOptions::default()).unwrap();
            log.append(&entries(1, 20)).unwrap();
        }
        let seg = dir.path().join(segment_name(1));
        let len = fs::metadata(&seg).unwrap().len();
        // Tear the last record in half.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let log = SegmentLog::open(dir.path(), SegmentLogOptions::default()).unwrap();
        assert_eq!(log.read_range(1..=100).unwrap(), entries(1, 19));
        // And it keeps appending after the repair.
        log.append(&entries(20, 5)).unwrap();
        drop(log);
        let log = SegmentLog::open(dir.path(), SegmentLogOptions::default()).unwrap();
        assert_eq!(log.read_range(1..=100).unwrap(), entries(1, 24));
    }

    #[test]
    fn corrupt_byte_drops_the_suffix_only() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = SegmentLog::open(dir.path(), small()).unwrap();
            for i in 0..8 {
                log.append(&entries(1 + i * 5, 5)).unwrap();
            }
        }
        let mut segs: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .collect();
        segs.sort();
        assert!(segs.len() >= 3);
        // Flip a byte in the middle of the second segment.
        let mut data = fs::read(&segs[1]).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
        fs::write(&segs[1], &data).unwrap();
        let log = SegmentLog::open(dir.path(), small()).unwrap();
        let got = log.read_range(1..=100).unwrap();
        assert!(!got.is_empty() && got.len() < 40);
        assert_eq!(got, entries(1, got.len() as u64));
        // Garbage files and a garbage segment never stop the log from opening.
        fs::write(dir.path().join(segment_name(1000)), b"garbage").unwrap();
        let log = SegmentLog::open(dir.path(), small()).unwrap();
        assert_eq!(log.read_range(1..=2000).unwrap().len(), got.len());
    }

    #[test]
    fn truncate_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let log = SegmentLog::open(dir.path(), small()).unwrap();
        log.append(&entries(1, 40)).unwrap();
        log.truncate(31).unwrap();
        assert_eq!(log.state().last.unwrap().index, 30);
        log.append(&entries(31, 5)).unwrap();
        log.purge(LogId { term: 1, index: 20 }).unwrap();
        let got = log.read_range(1..=100).unwrap();
        assert_eq!(got.first().unwrap().log_id.index, 21);
        assert_eq!(got.last().unwrap().log_id.index, 35);
        drop(log);
        let log = SegmentLog::open(dir.path(), small()).unwrap();
        assert_eq!(log.state().last_purged, Some(LogId { term: 1, index: 20 }));
        assert_eq!(
            log.read_range(1..=100)
                .unwrap()
                .first()
                .unwrap()
                .log_id
                .index,
            21
        );
        log.save_vote(b"vote-1").unwrap();
        assert_eq!(log.read_vote().unwrap().unwrap(), b"vote-1");
    }
}
