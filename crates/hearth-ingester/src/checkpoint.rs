//! Head checkpoints: the whole head at one log index, so replay starts there and the
//! log before it can be purged (Raft's snapshot, in the replicated form).
//!
//! File `checkpoint.<index>`: magic, term, index, then per tenant its metadata and
//! series (labels, closed chunks, open chunk, out-of-order samples), and a trailing
//! CRC-32C of everything before it. Written to a temporary name, fsynced and renamed, so
//! a checkpoint is either whole or absent.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hearth_core::{Label, Labels, MetricMetadata, Sample, Tenant};
use tracing::{info, warn};

use crate::head::{ClosedChunk, Head, SeriesState};
use hearth_series::chunkenc::XorAppender;
use hearth_series::codec::{get_metadata, put_metadata, Dec, DecodeError, Enc};
use hearth_series::postings::SeriesId;

/// Version 4 keeps the shipping state per tenant (its sealed boundary, its last
/// Shipped boundary, its newest sample time) and each series' sealed late samples.
/// Version 3 names each series' id and each tenant's next id: after head GC the ids
/// have gaps, and the log after the checkpoint goes on from the next id. Version 2
/// added the head's min valid time (one sealed boundary for every tenant) after the
/// index. Older versions are still read (their ids are dense: 0, 1, 2, ... in file
/// order).
const MAGIC: &[u8; 8] = b"HRTHCKP4";

/// The log position a checkpoint holds the head at: its group's Raft log id (term and
/// index) of the last entry applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogId {
    pub term: u64,
    pub index: u64,
}
const MAGIC_V3: &[u8; 8] = b"HRTHCKP3";
const MAGIC_V2: &[u8; 8] = b"HRTHCKP2";
const MAGIC_V1: &[u8; 8] = b"HRTHCKP1";

/// A copy of one series, taken under its lock (chunks shared, not copied).
pub struct SeriesSnapshot {
    pub id: SeriesId,
    pub labels: Labels,
    pub closed: Vec<ClosedChunk>,
    pub head: Option<(i64, Vec<u8>)>,
    pub max_t: i64,
    pub last_v: f64,
    pub ooo: Vec<Sample>,
    pub ooo_sealed: Vec<Sample>,
}

pub struct TenantSnapshot {
    pub tenant: Tenant,
    pub next_id: SeriesId,
    /// The tenant's sealed boundary, last Shipped boundary and newest sample time.
    pub min_valid: i64,
    pub shipped_before: i64,
    pub max_t: i64,
    pub metadata: Vec<MetricMetadata>,
    pub series: Vec<SeriesSnapshot>,
}

/// The head as of one log index.
pub struct HeadSnapshot {
    pub log_id: LogId,
    pub tenants: Vec<TenantSnapshot>,
}

/// Copies the head. Call it where no write is being applied (the commit thread), so
/// the copy is exactly the state after `log_id`.
pub fn capture(head: &Head, log_id: LogId) -> HeadSnapshot {
    let mut tenants = Vec::new();
    for (tenant, th) in head.tenants() {
        let mut series = Vec::new();
        for s in th.all_series() {
            let st = s.state.lock();
            series.push(SeriesSnapshot {
                id: s.id,
                labels: s.labels.clone(),
                closed: st.closed.clone(),
                head: st.head.as_ref().map(|(t, a)| (*t, a.bytes().to_vec())),
                max_t: st.max_t,
                last_v: st.last_v,
                ooo: st.ooo.clone(),
                ooo_sealed: st.ooo_sealed.clone(),
            });
        }
        let metadata = th.metadata().into_values().flatten().collect();
        tenants.push(TenantSnapshot {
            tenant,
            next_id: th.next_id(),
            min_valid: th.min_valid_time(),
            shipped_before: th.shipped_before(),
            max_t: th.max_time(),
            metadata,
            series,
        });
    }
    HeadSnapshot { log_id, tenants }
}

fn file_name(index: u64) -> String {
    format!("checkpoint.{index:020}")
}

struct CrcWriter<W: Write> {
    inner: W,
    crc: u32,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.inner.write_all(b)
    }
}

/// Writes a snapshot durably and removes older checkpoints. Returns its path.
pub fn write(dir: &Path, snap: &HeadSnapshot) -> std::io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(file_name(snap.log_id.index));
    let tmp = dir.join(format!("{}.tmp", file_name(snap.log_id.index)));
    let written = write_to(&tmp, snap);
    if written.is_err() {
        // A half-written checkpoint on a full disk would keep the disk full.
        let _ = fs::remove_file(&tmp);
    }
    let series_total = written?;
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    for old in list(dir)? {
        if old.0 < snap.log_id.index {
            let _ = fs::remove_file(&old.1);
        }
    }
    info!(path = %path.display(), series = series_total, index = snap.log_id.index, "wrote head checkpoint");
    Ok(path)
}

/// Writes the snapshot to `tmp` and fsyncs it; returns the number of series.
fn write_to(tmp: &Path, snap: &HeadSnapshot) -> std::io::Result<usize> {
    let f = File::create(tmp)?;
    let mut w = CrcWriter {
        inner: BufWriter::with_capacity(1 << 20, f),
        crc: 0,
    };
    let mut e = Enc::default();
    e.buf.extend_from_slice(MAGIC);
    e.uvarint(snap.log_id.term);
    e.uvarint(snap.log_id.index);
    e.uvarint(snap.tenants.len() as u64);
    let mut series_total = 0usize;
    for t in &snap.tenants {
        e.str(t.tenant.as_str());
        e.uvarint(t.next_id as u64);
        e.varint(t.min_valid);
        e.varint(t.shipped_before);
        e.varint(t.max_t);
        put_metadata(&mut e, &t.metadata);
        e.uvarint(t.series.len() as u64);
        for s in &t.series {
            series_total += 1;
            e.uvarint(s.id as u64);
            e.uvarint(s.labels.len() as u64);
            for l in &s.labels {
                e.str(&l.name);
                e.str(&l.value);
            }
            e.varint(s.max_t);
            e.f64(s.last_v);
            e.uvarint(s.closed.len() as u64);
            for c in &s.closed {
                e.varint(c.min_t);
                e.varint(c.max_t);
                e.bytes(&c.data);
            }
            match &s.head {
                Some((min_t, bytes)) => {
                    e.u8(1);
                    e.varint(*min_t);
                    e.bytes(bytes);
                }
                None => e.u8(0),
            }
            for set in [&s.ooo, &s.ooo_sealed] {
                e.uvarint(set.len() as u64);
                for x in set {
                    e.varint(x.t);
                    e.f64(x.v);
                }
            }
            if e.buf.len() > 1 << 20 {
                w.put(&e.buf)?;
                e.buf.clear();
            }
        }
    }
    w.put(&e.buf)?;
    let crc = w.crc;
    w.inner.write_all(&crc.to_le_bytes())?;
    let f = w.inner.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok(series_total)
}

/// Checkpoints in `dir`, oldest first; leftover temporary files are removed.
fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".tmp") {
            let _ = fs::remove_file(e.path());
            continue;
        }
        if let Some(n) = name.strip_prefix("checkpoint.") {
            if let Ok(i) = n.parse::<u64>() {
                out.push((i, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Loads the newest valid checkpoint into `head`; returns its log id. A corrupt
/// checkpoint is reported and skipped for an older one.
pub fn load_latest(dir: &Path, head: &Head) -> std::io::Result<Option<LogId>> {
    for (_, path) in list(dir)?.into_iter().rev() {
        let mut data = Vec::new();
        File::open(&path)?.read_to_end(&mut data)?;
        match decode_into(&data, head) {
            Ok(id) => {
                info!(path = %path.display(), index = id.index, "loaded head checkpoint");
                return Ok(Some(id));
            }
            Err(_) => warn!(path = %path.display(), "checkpoint is corrupt; trying an older one"),
        }
    }
    Ok(None)
}

fn decode_into(data: &[u8], head: &Head) -> Result<LogId, DecodeError> {
    if data.len() < MAGIC.len() + 4 {
        return Err(DecodeError);
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err(DecodeError);
    }
    let version = match &body[..8] {
        m if m == MAGIC => 4,
        m if m == MAGIC_V3 => 3,
        m if m == MAGIC_V2 => 2,
        m if m == MAGIC_V1 => 1,
        _ => return Err(DecodeError),
    };
    let mut d = Dec::new(&body[8..]);
    let term = d.uvarint()?;
    let index = d.uvarint()?;
    // Versions 2 and 3: one sealed boundary for every tenant, with the last Shipped
    // unknown (so a seal above the data shipped is shipped again, maybe as nothing).
    let global_seal = if (2..4).contains(&version) {
        d.varint()?
    } else {
        i64::MIN
    };
    let nt = d.count(2)?;
    for _ in 0..nt {
        let tenant = Tenant::new(d.str()?).map_err(|_| DecodeError)?;
        let next_id = if version >= 3 {
            Some(series_id(d.uvarint()?)?)
        } else {
            None
        };
        let th = head.tenant_or_create(&tenant);
        if version >= 4 {
            let (min_valid, shipped_before, max_t) = (d.varint()?, d.varint()?, d.varint()?);
            th.restore_bounds(min_valid, shipped_before, max_t);
        } else {
            th.restore_bounds(global_seal, i64::MIN, i64::MIN);
        }
        for m in get_metadata(&mut d)? {
            th.set_metadata(m);
        }
        let ns = d.count(4)?;
        let mut prev_id: Option<SeriesId> = None;
        for i in 0..ns {
            let id = if version >= 3 {
                series_id(d.uvarint()?)?
            } else {
                series_id(i as u64)?
            };
            // Ids are written in increasing order and below the tenant's next id.
            if prev_id.is_some_and(|p| id <= p) || next_id.is_some_and(|n| id >= n) {
                return Err(DecodeError);
            }
            prev_id = Some(id);
            let nl = d.count(2)?;
            let mut labels = Vec::with_capacity(nl);
            for _ in 0..nl {
                let n = d.str()?;
                let v = d.str()?;
                labels.push(Label::new(n, v));
            }
            let max_t = d.varint()?;
            let last_v = d.f64()?;
            let nc = d.count(3)?;
            let mut closed = Vec::with_capacity(nc);
            for _ in 0..nc {
                let min_t = d.varint()?;
                let cmax = d.varint()?;
                let b = d.bytes()?;
                closed.push(ClosedChunk {
                    min_t,
                    max_t: cmax,
                    data: Arc::from(b),
                });
            }
            let head_chunk = match d.u8()? {
                1 => {
                    let min_t = d.varint()?;
                    let b = d.bytes()?;
                    Some((min_t, XorAppender::from_bytes(b).map_err(|_| DecodeError)?))
                }
                _ => None,
            };
            let ooo = samples(&mut d)?;
            let ooo_sealed = if version >= 4 {
                samples(&mut d)?
            } else {
                Vec::new()
            };
            let state = SeriesState::from_parts(closed, head_chunk, max_t, last_v, ooo, ooo_sealed);
            head.restore_series(&tenant, id, &Labels::from_sorted(labels), state);
        }
        if let Some(n) = next_id {
            th.raise_next_id(n);
        }
    }
    Ok(LogId { term, index })
}

/// A count, then (timestamp, value) pairs.
fn samples(d: &mut Dec<'_>) -> Result<Vec<Sample>, DecodeError> {
    let n = d.count(9)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = d.varint()?;
        out.push(Sample { t, v: d.f64()? });
    }
    Ok(out)
}

fn series_id(v: u64) -> Result<SeriesId, DecodeError> {
    SeriesId::try_from(v).map_err(|_| DecodeError)
}
