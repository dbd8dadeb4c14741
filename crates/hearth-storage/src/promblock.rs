//! Reading a Prometheus TSDB block directory (index format v2, chunk segment files,
//! tombstones, meta.json), for `hearth import prometheus-tsdb`. Every section is
//! checked against its CRC32-C; a damaged block is refused with a clear error, never
//! half imported.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hearth_core::{ChunkEncoding, EncodedChunk, Label, Labels};
use serde::Deserialize;

const INDEX_MAGIC: u32 = 0xBAAA_D700;
const CHUNKS_MAGIC: u32 = 0x85BD_40DD;
const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;
const TOC_LEN: usize = 6 * 8 + 4;
/// Prometheus' float chunk encoding (XOR). Histogram chunks are not imported.
const ENC_XOR: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PromBlockError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromMeta {
    pub ulid: String,
    pub min_time: i64,
    pub max_time: i64,
    #[serde(default)]
    pub stats: PromStats,
    pub version: u32,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromStats {
    #[serde(default)]
    pub num_samples: u64,
    #[serde(default)]
    pub num_series: u64,
}

/// One series of a Prometheus block: labels and its XOR chunks as stored.
pub struct PromSeries {
    pub labels: Labels,
    pub chunks: Vec<EncodedChunk>,
    /// Chunks of another encoding (native histograms), left out.
    pub skipped_chunks: usize,
}

/// An opened block directory.
pub struct PromBlock {
    dir: PathBuf,
    pub meta: PromMeta,
    index: Vec<u8>,
    symbols: Vec<Arc<str>>,
    /// Deleted intervals per series reference, from the tombstones file.
    tombstones: std::collections::HashMap<u64, Vec<(i64, i64)>>,
}

fn crc(b: &[u8]) -> u32 {
    crc32c::crc32c(b)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u32(&mut self) -> Option<u32> {
        let v = self.b.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_be_bytes(v.try_into().ok()?))
    }
    fn u8(&mut self) -> Option<u8> {
        let v = *self.b.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }
    fn uvarint(&mut self) -> Option<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }
    fn varint(&mut self) -> Option<i64> {
        let u = self.uvarint()?;
        Some(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let v = self.b.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(v)
    }
}

impl PromBlock {
    fn format(&self, file: &str, reason: impl Into<String>) -> PromBlockError {
        PromBlockError::Format {
            path: self.dir.join(file),
            reason: reason.into(),
        }
    }

    /// Opens a block directory: meta.json, the index (read whole) and tombstones.
    pub fn open(dir: &Path) -> Result<PromBlock, PromBlockError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|source| PromBlockError::Io {
                path: dir.join(name),
                source,
            })
        };
        let meta: PromMeta =
            serde_json::from_slice(&read("meta.json")?).map_err(|e| PromBlockError::Format {
                path: dir.join("meta.json"),
                reason: e.to_string(),
            })?;
        let mut block = PromBlock {
            dir: dir.to_path_buf(),
            meta,
            index: read("index")?,
            symbols: Vec::new(),
            tombstones: Default::default(),
        };
        block.read_symbols()?;
        if dir.join("tombstones").exists() {
            block.read_tombstones(&read("tombstones")?)?;
        }
        Ok(block)
    }

    fn toc(&self) -> Result<[u64; 6], PromBlockError> {
        let b = &self.index;
        if b.len() < 5 + TOC_LEN {
            return Err(self.format("index", "too short"));
        }
        if u32::from_be_bytes(b[..4].try_into().expect("4 bytes")) != INDEX_MAGIC {
            return Err(self.format("index", "not a Prometheus index (bad magic)"));
        }
        if b[4] != 2 {
            return Err(self.format(
                "index",
                format!("index format version {} (only 2 is read)", b[4]),
            ));
        }
        let toc = &b[b.len() - TOC_LEN..];
        let want = u32::from_be_bytes(toc[48..52].try_into().expect("4 bytes"));
        if crc(&toc[..48]) != want {
            return Err(self.format("index", "table of contents fails its checksum"));
        }
        let mut out = [0u64; 6];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u64::from_be_bytes(toc[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        }
        Ok(out)
    }

    /// A `len <4b> | body | CRC32` section at `off`: its body.
    fn section(&self, off: u64) -> Result<&[u8], PromBlockError> {
        let bad = || self.format("index", format!("section at {off} is out of the file"));
        let at = |from: usize, n: usize| {
            let end = from.checked_add(n)?;
            self.index.get(from..end)
        };
        let start = usize::try_from(off).map_err(|_| bad())?;
        let len =
            u32::from_be_bytes(at(start, 4).ok_or_else(bad)?.try_into().expect("4 bytes")) as usize;
        let body = at(start + 4, len).ok_or_else(bad)?;
        let want = at(start + 4 + len, 4).ok_or_else(bad)?;
        if crc(body).to_be_bytes() != want {
            return Err(self.format("index", format!("section at {off} fails its checksum")));
        }
        Ok(body)
    }

    fn read_symbols(&mut self) -> Result<(), PromBlockError> {
        let toc = self.toc()?;
        let body = self.section(toc[0])?;
        let mut r = Reader { b: body, pos: 0 };
        let n = r
            .u32()
            .ok_or_else(|| self.format("index", "symbol table"))?;
        let mut symbols = Vec::with_capacity((n as usize).min(body.len()));
        for _ in 0..n {
            let s = r
                .uvarint()
                .and_then(|len| r.bytes(len as usize))
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| self.format("index", "symbol table entry"))?;
            symbols.push(Arc::from(s));
        }
        self.symbols = symbols;
        Ok(())
    }

    fn read_tombstones(&mut self, b: &[u8]) -> Result<(), PromBlockError> {
        if b.len() < 9 {
            return Err(self.format("tombstones", "too short"));
        }
        let (body, want) = b.split_at(b.len() - 4);
        if u32::from_be_bytes(body[..4].try_into().expect("4 bytes")) != TOMBSTONES_MAGIC {
            return Err(self.format("tombstones", "bad magic"));
        }
        if crc(&body[5..]).to_be_bytes() != want {
            return Err(self.format("tombstones", "fails its checksum"));
        }
        let mut r = Reader {
            b: &body[5..],
            pos: 0,
        };
        while r.pos < r.b.len() {
            let entry = (|| {
                let series = r.uvarint()?;
                let n = r.uvarint()?;
                let mut list = Vec::new();
                for _ in 0..n {
                    let mint = r.varint()?;
                    let maxt = r.varint()?;
                    list.push((mint, maxt));
                }
                Some((series, list))
            })()
            .ok_or_else(|| self.format("tombstones", "damaged entry"))?;
            self.tombstones.entry(entry.0).or_default().extend(entry.1);
        }
        Ok(())
    }

    /// Every series reference of the block, from the postings list of all series.
    fn all_series_refs(&self) -> Result<Vec<u64>, PromBlockError> {
        let toc = self.toc()?;
        let table = self.section(toc[5])?;
        let mut r = Reader { b: table, pos: 0 };
        let n = r
            .u32()
            .ok_or_else(|| self.format("index", "postings offset table"))?;
        let mut all_off = None;
        for _ in 0..n {
            let entry = (|| {
                let _count = r.u8()?;
                let name_len = r.uvarint()? as usize;
                let name = r.bytes(name_len)?;
                let value_len = r.uvarint()? as usize;
                let value = r.bytes(value_len)?;
                let off = r.uvarint()?;
                Some((name.is_empty() && value.is_empty(), off))
            })()
            .ok_or_else(|| self.format("index", "postings offset table entry"))?;
            if entry.0 {
                all_off = Some(entry.1);
                break;
            }
        }
        let Some(off) = all_off else {
            return Ok(Vec::new());
        };
        let body = self.section(off)?;
        let mut r = Reader { b: body, pos: 0 };
        let n = r
            .u32()
            .ok_or_else(|| self.format("index", "postings list"))?;
        (0..n)
            .map(|_| {
                r.u32()
                    .map(u64::from)
                    .ok_or_else(|| self.format("index", "postings list entry"))
            })
            .collect()
    }

    /// The series in label order, each with its float chunks read from the chunk files
    /// (and tombstoned samples removed).
    pub fn series(&self) -> Result<Vec<PromSeries>, PromBlockError> {
        let mut files: std::collections::HashMap<u64, File> = Default::default();
        let mut out = Vec::new();
        for sref in self.all_series_refs()? {
            let off = (sref * 16) as usize;
            let mut r = Reader {
                b: &self.index,
                pos: off,
            };
            let bad = |what: &str| self.format("index", format!("series {sref}: {what}"));
            let len = r.uvarint().ok_or_else(|| bad("length"))? as usize;
            let start = r.pos;
            let body = r.bytes(len).ok_or_else(|| bad("body"))?;
            let want = r.bytes(4).ok_or_else(|| bad("checksum"))?;
            if crc(body).to_be_bytes() != want {
                return Err(bad("fails its checksum"));
            }
            let mut r = Reader {
                b: &self.index,
                pos: start,
            };
            let nl = r.uvarint().ok_or_else(|| bad("label count"))?;
            let mut labels = Vec::with_capacity((nl as usize).min(len));
            for _ in 0..nl {
                let name = r.uvarint().and_then(|i| self.symbols.get(i as usize));
                let value = r.uvarint().and_then(|i| self.symbols.get(i as usize));
                let (Some(name), Some(value)) = (name, value) else {
                    return Err(bad("label symbol"));
                };
                labels.push(Label {
                    name: name.clone(),
                    value: value.clone(),
                });
            }
            let nc = r.uvarint().ok_or_else(|| bad("chunk count"))?;
            let mut metas = Vec::with_capacity((nc as usize).min(len));
            let (mut maxt, mut cref) = (0i64, 0u64);
            for i in 0..nc {
                // Wrapping arithmetic: a damaged index gives nonsense references, which
                // the chunk reader then refuses, never an overflow.
                let (mint, span, rf) = if i == 0 {
                    let mint = r.varint().ok_or_else(|| bad("chunk"))?;
                    let span = r.uvarint().ok_or_else(|| bad("chunk"))? as i64;
                    let rf = r.uvarint().ok_or_else(|| bad("chunk"))?;
                    (mint, span, rf)
                } else {
                    let delta = r.uvarint().ok_or_else(|| bad("chunk"))? as i64;
                    let mint = maxt.wrapping_add(delta);
                    let span = r.uvarint().ok_or_else(|| bad("chunk"))? as i64;
                    let step = r.varint().ok_or_else(|| bad("chunk"))?;
                    (mint, span, (cref as i64).wrapping_add(step) as u64)
                };
                maxt = mint.wrapping_add(span);
                cref = rf;
                metas.push((mint, maxt, rf));
            }
            let mut chunks = Vec::with_capacity(metas.len());
            let mut skipped = 0;
            for (mint, maxt, rf) in metas {
                let (enc, data) = self.read_chunk(&mut files, rf)?;
                if enc != ENC_XOR {
                    skipped += 1;
                    continue;
                }
                chunks.push(EncodedChunk {
                    min_t: mint,
                    max_t: maxt,
                    encoding: ChunkEncoding::Xor,
                    data: Arc::from(data),
                });
            }
            if let Some(deleted) = self.tombstones.get(&sref) {
                chunks = remove_intervals(chunks, deleted);
            }
            out.push(PromSeries {
                labels: Labels::from_sorted(labels),
                chunks,
                skipped_chunks: skipped,
            });
        }
        Ok(out)
    }

    /// Reads one chunk: `uvarint len | encoding | data | CRC32(encoding, data)` at the
    /// offset in the segment file the reference names.
    fn read_chunk(
        &self,
        files: &mut std::collections::HashMap<u64, File>,
        rf: u64,
    ) -> Result<(u8, Vec<u8>), PromBlockError> {
        let seq = rf >> 32;
        let off = rf & 0xffff_ffff;
        let name = format!("chunks/{:06}", seq + 1);
        let path = self.dir.join(&name);
        let io = |source| PromBlockError::Io {
            path: path.clone(),
            source,
        };
        if let std::collections::hash_map::Entry::Vacant(e) = files.entry(seq) {
            let f = File::open(&path).map_err(io)?;
            let mut head = [0u8; 4];
            f.read_exact_at(&mut head, 0).map_err(io)?;
            if u32::from_be_bytes(head) != CHUNKS_MAGIC {
                return Err(self.format(&name, "not a chunks file (bad magic)"));
            }
            e.insert(f);
        }
        let f = &files[&seq];
        let mut head = [0u8; 11];
        let got = read_up_to(f, &mut head, off).map_err(io)?;
        let mut r = Reader {
            b: &head[..got],
            pos: 0,
        };
        let len = r
            .uvarint()
            .ok_or_else(|| self.format(&name, format!("chunk at {off}: length")))?
            as usize;
        if len > 16 << 20 {
            return Err(self.format(&name, format!("chunk at {off}: {len} bytes is not a chunk")));
        }
        let mut buf = vec![0u8; 1 + len + 4];
        f.read_exact_at(&mut buf, off.saturating_add(r.pos as u64))
            .map_err(io)?;
        let (body, want) = buf.split_at(1 + len);
        if crc(body).to_be_bytes() != want {
            return Err(self.format(&name, format!("chunk at {off} fails its checksum")));
        }
        Ok((body[0], body[1..].to_vec()))
    }
}

fn read_up_to(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = f.read_at(&mut buf[got..], off.saturating_add(got as u64))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Drops the samples inside deleted intervals (inclusive), re-encoding touched chunks.
fn remove_intervals(chunks: Vec<EncodedChunk>, deleted: &[(i64, i64)]) -> Vec<EncodedChunk> {
    let hit = |lo: i64, hi: i64| deleted.iter().any(|(a, b)| *a <= hi && *b >= lo);
    let mut out = Vec::with_capacity(chunks.len());
    for c in chunks {
        if !hit(c.min_t, c.max_t) {
            out.push(c);
            continue;
        }
        let kept: Vec<(i64, f64)> = hearth_series::chunkenc::decode_all(&c.data)
            .unwrap_or_default()
            .into_iter()
            .filter(|(t, _)| !deleted.iter().any(|(a, b)| t >= a && t <= b))
            .collect();
        if let (Some(first), Some(last)) = (kept.first(), kept.last()) {
            let mut app = hearth_series::chunkenc::XorAppender::new();
            for (t, v) in &kept {
                app.append(*t, *v);
            }
            out.push(EncodedChunk {
                min_t: first.0,
                max_t: last.0,
                encoding: ChunkEncoding::Xor,
                data: Arc::from(app.bytes()),
            });
        }
    }
    out
}

/// The block directories (a meta.json and an index) directly under a Prometheus data
/// directory, oldest first.
pub fn block_dirs(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("meta.json").is_file() && p.join("index").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// What importing one Prometheus block did.
pub struct Imported {
    pub prometheus_ulid: String,
    /// `None` when the block was imported before (found by its ULID in a block's
    /// sources).
    pub block: Option<crate::BlockMeta>,
    pub series: usize,
    pub samples: u64,
    /// Native-histogram chunks, which this import leaves out.
    pub skipped_chunks: usize,
}

/// Imports one Prometheus block into the bucket as a Hearth block (written, read back
/// and verified by `BucketStore::ship`). A block imported before is skipped, so an
/// interrupted import can simply be run again.
pub async fn import_block(
    store: &crate::BucketStore,
    writer: &crate::BlockWriter,
    tenant: &hearth_core::Tenant,
    dir: &Path,
) -> Result<Imported, crate::BlockError> {
    let block = PromBlock::open(dir).map_err(|e| crate::BlockError::Format(e.to_string()))?;
    let done = store
        .blocks(tenant)
        .iter()
        .any(|b| b.meta().compaction.sources.contains(&block.meta.ulid));
    if done {
        return Ok(Imported {
            prometheus_ulid: block.meta.ulid.clone(),
            block: None,
            series: 0,
            samples: 0,
            skipped_chunks: 0,
        });
    }
    let series = tokio::task::block_in_place(|| block.series())
        .map_err(|e| crate::BlockError::Format(e.to_string()))?;
    let skipped_chunks = series.iter().map(|s| s.skipped_chunks).sum();
    let input = crate::BlockInput {
        shard_group: None,
        tenant: tenant.clone(),
        min_time: block.meta.min_time,
        max_time: block.meta.max_time,
        level: 1,
        sources: vec![block.meta.ulid.clone()],
        resolution: 0,
        series: series
            .into_iter()
            .filter(|s| !s.chunks.is_empty())
            .map(|s| (s.labels, hearth_core::SeriesData::Chunks(s.chunks)))
            .collect(),
    };
    let shipped = writer.ship(input).await?;
    store.add(&shipped).await;
    let meta = shipped.meta;
    Ok(Imported {
        prometheus_ulid: block.meta.ulid.clone(),
        series: meta.stats.num_series as usize,
        samples: meta.stats.num_samples,
        block: Some(meta),
        skipped_chunks,
    })
}
