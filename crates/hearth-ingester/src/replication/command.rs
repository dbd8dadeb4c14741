//! What a shard group's log entries say, and what applying them answers.
//!
//! A `Write` entry is the writes a leader merged while its previous entries were in
//! flight: each part a tenant and its series with their samples. A part names each
//! series by the id the leader's head gave it, or by its labels where the leader's head
//! did not hold it (yet). Ids are dense, handed out in apply order and never reused, and
//! snapshots keep them, so every replica that applied the same entries gives a series
//! the same id: an id the applying head still holds is that series everywhere. An id it
//! no longer holds (the series was collected after shipping, between proposing and
//! applying) is not applied by any replica, and the write's proposer writes those
//! series again by labels ([`WriteResult::unresolved`]). So the log carries a series'
//! labels about once per head lifetime, as Prometheus' WAL does with series records,
//! and apply never hashes or compares labels for a series it holds.
//!
//! One encoding serves the log and the network: `LogData` for the log, and serde as
//! those same bytes (openraft's messages need serde). Each part is encoded once, by the
//! writer's own task when it is proposed ([`WritePart::new`]), and the leader applies
//! the part decoded from those bytes, exactly as a follower does; an entry's encoding is
//! then its parts' bytes one after another, so neither the group's Raft core (which
//! encodes entries as it appends them) nor a message to a follower encodes samples
//! again. A decoded part keeps a slice of the bytes it came from, for the same reason.
//!
//! A part's labels (of the series named by labels) are LZ4-compressed: they repeat
//! (metric names, label names, instance and job). Its samples are not: the timestamps
//! are delta-encoded varints, the values 8 bytes each. Entries of the two earlier forms,
//! which named every series by its labels, still decode and apply.

use std::sync::Arc;

use bytes::Bytes;
use hearth_core::{MetricMetadata, PushOutcome, Sample, Tenant, WriteBatch};
use hearth_series::codec::{get_metadata, put_metadata, Dec, Enc};
use hearth_series::postings::SeriesId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::log_store::LogData;
use crate::head::{Head, SeriesName};
use crate::record::{self, ControlRecord};

/// Writes whose parts name every series by labels, uncompressed (the first form;
/// decoded, no longer written).
const TAG_WRITE: u8 = 1;
const TAG_CONTROL: u8 = 2;
/// Writes whose parts are each an LZ4 block of the first form, its length first (the
/// second form; decoded, no longer written).
const TAG_WRITE_LZ4: u8 = 3;
/// Writes whose parts name series by head id or by labels ([`RefBatch`]).
const TAG_WRITE_REFS: u8 = 4;
/// A part larger than this uncompressed is corruption, not data (bounds allocation).
const MAX_PART_BYTES: usize = 1 << 30;

#[derive(Clone, Debug)]
pub enum Command {
    /// Writes merged into one entry, applied in order. Shared: openraft clones entries
    /// (into its log cache, into messages), and a clone must not copy samples.
    Write(Arc<[WritePart]>),
    /// A step of the shipping protocol (`Seal` freezes a tenant's range, `Shipped`
    /// drops it once its blocks are in the bucket), in record.rs' encoding.
    Control(Arc<ControlRecord>),
}

/// One write of an entry: a tenant's series and samples, and their encoding.
#[derive(Clone, Debug)]
pub struct WritePart {
    pub tenant: Tenant,
    pub body: PartBody,
    /// Which entry form `wire` is in (every part of an entry shares it).
    form: u8,
    wire: Bytes,
}

/// A part's series, as its entry's form names them.
#[derive(Clone, Debug)]
pub enum PartBody {
    /// Every series by its labels (entries of the two earlier forms).
    Labels(WriteBatch),
    /// Series by head id where the leader's head held them, else by labels.
    Refs(RefBatch),
}

/// A write whose series are named by head id or by labels.
#[derive(Clone, Debug, Default)]
pub struct RefBatch {
    /// Per series, its head id, or `None`: the next series of `labeled`.
    ids: Vec<Option<SeriesId>>,
    /// The labels of the series named by labels, in order (no samples).
    labeled: WriteBatch,
    /// Where each series' samples end in `samples`.
    ends: Vec<u32>,
    samples: Vec<Sample>,
    metadata: Vec<MetricMetadata>,
}

impl RefBatch {
    /// Each series' name and samples, in order.
    pub fn series(&self) -> impl Iterator<Item = (SeriesName<'_>, &[Sample])> + '_ {
        let mut labeled = self.labeled.iter();
        let mut start = 0usize;
        self.ids.iter().zip(&self.ends).map(move |(id, &end)| {
            let samples = &self.samples[start..end as usize];
            start = end as usize;
            let name = match id {
                Some(id) => SeriesName::Id(*id),
                None => {
                    // Decoding checked there is one labeled series per `None`.
                    let s = labeled.next().expect("a labeled series per None");
                    SeriesName::Labels {
                        labels: s.labels,
                        hash: s.hash,
                    }
                }
            };
            (name, samples)
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl WritePart {
    /// Encodes a write (on the caller's task, so writers encode in parallel): series
    /// `i` of `batch` is named by `ids[i]` where the leader's head holds it (see the
    /// module's doc), else by its labels. The part keeps what its bytes decode to (built
    /// from the same values, not decoded again), so the leader applies what its
    /// followers decode.
    pub fn new(tenant: Tenant, batch: &WriteBatch, ids: &[Option<SeriesId>]) -> WritePart {
        debug_assert_eq!(batch.len(), ids.len());
        // The labels of the series named by labels, as the first form's tables.
        let labeled = batch.labels_of(|i| ids.get(i).copied().flatten().is_none());
        let label_section = (!labeled.is_empty()).then(|| {
            let mut t = Enc::default();
            let w = labeled.wire_parts();
            t.bytes(w.arena());
            t.bytes(&w.label_offsets_le());
            t.bytes(&w.series_ends_le());
            lz4_flex::block::compress_prepend_size(&t.buf)
        });
        let label_len = label_section.as_ref().map_or(0, Vec::len);
        let mut e = Enc::default();
        // Enough for ids below 2^21 and timestamp steps below 2^20 ms (what a stream
        // of scrapes has), so the buffer is not grown (and left half empty) by doubling.
        e.buf.reserve(
            32 + tenant.as_str().len() + label_len + batch.len() * 4 + batch.sample_count() * 11,
        );
        e.str(tenant.as_str());
        e.uvarint(batch.len() as u64);
        e.bytes(label_section.as_deref().unwrap_or(&[]));
        for (s, id) in batch.iter().zip(ids) {
            e.uvarint(id.map_or(0, |id| id as u64 + 1));
            e.uvarint(s.samples.len() as u64);
        }
        let mut prev = batch
            .iter()
            .find_map(|s| s.samples.first())
            .map_or(0, |s| s.t);
        e.varint(prev);
        for s in batch.iter() {
            for x in s.samples {
                e.varint(x.t.wrapping_sub(prev));
                prev = x.t;
                e.f64(x.v);
            }
        }
        put_metadata(&mut e, &batch.metadata);
        let mut samples = Vec::with_capacity(batch.sample_count());
        let ends = batch
            .iter()
            .map(|s| {
                samples.extend_from_slice(s.samples);
                samples.len() as u32
            })
            .collect();
        let body = RefBatch {
            ids: ids.to_vec(),
            labeled,
            ends,
            samples,
            metadata: batch.metadata.clone(),
        };
        WritePart {
            tenant,
            body: PartBody::Refs(body),
            form: TAG_WRITE_REFS,
            wire: Bytes::from(e.buf),
        }
    }

    /// The first form's uncompressed part: tenant, the batch's wire tables, metadata.
    #[cfg(test)]
    fn plain(tenant: &Tenant, batch: &WriteBatch) -> Vec<u8> {
        let mut e = Enc::default();
        let w = batch.wire_parts();
        e.str(tenant.as_str());
        e.bytes(w.arena());
        e.bytes(&w.label_offsets_le());
        e.bytes(&w.series_ends_le());
        e.bytes(&w.samples_le());
        put_metadata(&mut e, &batch.metadata);
        e.buf
    }

    /// Bytes of its encoding: what batching and replication messages are bounded by.
    pub fn wire_len(&self) -> usize {
        self.wire.len()
    }

    /// Heap bytes it holds: its encoding and what that decodes to.
    pub fn heap_size(&self) -> usize {
        use std::mem::size_of;
        let body = match &self.body {
            PartBody::Labels(batch) => batch.heap_size(),
            PartBody::Refs(r) => {
                r.ids.capacity() * size_of::<Option<SeriesId>>()
                    + r.ends.capacity() * size_of::<u32>()
                    + r.samples.capacity() * size_of::<Sample>()
                    + r.labeled.heap_size()
                    + r.metadata.capacity() * size_of::<MetricMetadata>()
            }
        };
        size_of::<WritePart>() + self.wire.len() + body
    }

    /// Applies the part to `head` (see [`Head::apply_named`]).
    pub fn apply(&self, head: &Head) -> WriteResult {
        match &self.body {
            PartBody::Labels(batch) => head.apply(&self.tenant, batch).into(),
            PartBody::Refs(r) => {
                let (outcome, unresolved) = head.apply_named(&self.tenant, &r.metadata, r.series());
                WriteResult {
                    unresolved,
                    ..outcome.into()
                }
            }
        }
    }

    /// Decodes the part of form `form` at the start of `d`, keeping a slice of `all`
    /// (what `d` reads) as its encoding.
    fn decode(all: &Bytes, d: &mut Dec<'_>, form: u8) -> Result<WritePart, String> {
        let bad = |what: &str| format!("undecodable log entry: {what}");
        let start = d.position();
        let (tenant, body) = match form {
            TAG_WRITE => {
                let (t, b) = Self::decode_plain(d)?;
                (t, PartBody::Labels(b))
            }
            TAG_WRITE_LZ4 => {
                let block = d.bytes().map_err(|_| bad("compressed part"))?;
                let plain = decompress(block)?;
                let (t, b) = Self::decode_plain(&mut Dec::new(&plain))?;
                (t, PartBody::Labels(b))
            }
            _ => {
                let (t, b) = Self::decode_refs(d)?;
                (t, PartBody::Refs(b))
            }
        };
        Ok(WritePart {
            tenant,
            body,
            form,
            wire: all.slice(start..d.position()),
        })
    }

    /// Decodes a part of the refs form.
    fn decode_refs(d: &mut Dec<'_>) -> Result<(Tenant, RefBatch), String> {
        let bad = |what: &str| format!("undecodable log entry: {what}");
        let tenant = d.str().map_err(|_| bad("tenant"))?;
        let tenant = Tenant::new(tenant).map_err(|e| bad(&e.to_string()))?;
        // Each series takes at least two bytes (its name and its sample count).
        let n = d.count(2).map_err(|_| bad("series count"))?;
        let block = d.bytes().map_err(|_| bad("labels"))?;
        let labeled = if block.is_empty() {
            WriteBatch::default()
        } else {
            let tables = decompress(block)?;
            let mut t = Dec::new(&tables);
            let arena = t.bytes().map_err(|_| bad("labels"))?.to_vec();
            let offsets = t.bytes().map_err(|_| bad("label offsets"))?;
            let ends = t.bytes().map_err(|_| bad("series ends"))?;
            WriteBatch::from_wire(arena, offsets, ends, &[]).map_err(|e| bad(&e))?
        };
        let mut ids = Vec::with_capacity(n);
        let mut ends = Vec::with_capacity(n);
        let (mut total, mut named_by_labels) = (0u64, 0usize);
        for _ in 0..n {
            let id = d.uvarint().map_err(|_| bad("series"))?;
            ids.push(match id {
                0 => {
                    named_by_labels += 1;
                    None
                }
                id => Some(SeriesId::try_from(id - 1).map_err(|_| bad("series id"))?),
            });
            total += d.uvarint().map_err(|_| bad("sample count"))?;
            ends.push(u32::try_from(total).map_err(|_| bad("sample count"))?);
        }
        if named_by_labels != labeled.len() {
            return Err(bad("series named by labels and labels disagree"));
        }
        let first = d.varint().map_err(|_| bad("samples"))?;
        // Each sample takes at least nine bytes: bound the allocation by what is left.
        let total = total as usize;
        if total.saturating_mul(9) > d.remaining() {
            return Err(bad("more samples than bytes"));
        }
        let mut samples = Vec::with_capacity(total);
        let mut t = first;
        for _ in 0..total {
            t = t.wrapping_add(d.varint().map_err(|_| bad("samples"))?);
            let v = d.f64().map_err(|_| bad("samples"))?;
            samples.push(Sample { t, v });
        }
        let metadata = get_metadata(d).map_err(|_| bad("metadata"))?;
        Ok((
            tenant,
            RefBatch {
                ids,
                labeled,
                ends,
                samples,
                metadata,
            },
        ))
    }

    /// Decodes a part of the first form (uncompressed, every series by labels).
    fn decode_plain(d: &mut Dec<'_>) -> Result<(Tenant, WriteBatch), String> {
        let bad = |what: &str| format!("undecodable log entry: {what}");
        let tenant = d.str().map_err(|_| bad("tenant"))?;
        let tenant = Tenant::new(tenant).map_err(|e| bad(&e.to_string()))?;
        let arena = d.bytes().map_err(|_| bad("labels"))?.to_vec();
        let offsets = d.bytes().map_err(|_| bad("label offsets"))?;
        let ends = d.bytes().map_err(|_| bad("series ends"))?;
        let samples = d.bytes().map_err(|_| bad("samples"))?;
        let mut batch =
            WriteBatch::from_wire(arena, offsets, ends, samples).map_err(|e| bad(&e))?;
        batch.metadata = get_metadata(d).map_err(|_| bad("metadata"))?;
        Ok((tenant, batch))
    }
}

/// An LZ4 block with its uncompressed length first, bounded.
fn decompress(block: &[u8]) -> Result<Vec<u8>, String> {
    let bad = || "undecodable log entry: compressed part".to_string();
    let len = block
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or_else(bad)?;
    if len > MAX_PART_BYTES {
        return Err("undecodable log entry: a part larger than 1 GiB".into());
    }
    lz4_flex::block::decompress_size_prepended(block).map_err(|_| bad())
}

/// What applying one entry answered: an outcome per write part, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult(pub Vec<WriteResult>);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResult {
    pub samples_written: u64,
    pub samples_rejected: u64,
    pub first_rejection: Option<String>,
    /// The part's series (by index) named by an id the head no longer held when the
    /// entry was applied: not applied on any replica, to be written again by labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<u32>,
}

impl From<PushOutcome> for WriteResult {
    fn from(o: PushOutcome) -> Self {
        WriteResult {
            samples_written: o.samples_written as u64,
            samples_rejected: o.samples_rejected as u64,
            first_rejection: o.first_rejection,
            unresolved: Vec::new(),
        }
    }
}

impl From<WriteResult> for PushOutcome {
    fn from(w: WriteResult) -> Self {
        PushOutcome {
            samples_written: w.samples_written as usize,
            samples_rejected: w.samples_rejected as usize,
            first_rejection: w.first_rejection,
        }
    }
}

impl Command {
    pub fn write(parts: Vec<WritePart>) -> Command {
        Command::Write(parts.into())
    }

    /// Encoded bytes of the writes it carries (what batching bounds).
    pub fn size(&self) -> usize {
        match self {
            Command::Write(parts) => parts.iter().map(WritePart::wire_len).sum(),
            Command::Control(_) => 0,
        }
    }
}

impl LogData for Command {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Command::Write(parts) => {
                let mut e = Enc::default();
                // Every part of an entry shares a form: the proposer makes only the
                // newest, and a decoded entry keeps its own.
                e.u8(parts.first().map_or(TAG_WRITE_REFS, |p| p.form));
                e.uvarint(parts.len() as u64);
                out.reserve(e.buf.len() + self.size());
                out.extend_from_slice(&e.buf);
                for p in parts.iter() {
                    out.extend_from_slice(&p.wire);
                }
            }
            Command::Control(rec) => {
                out.push(TAG_CONTROL);
                out.extend_from_slice(&record::encode_control(rec));
            }
        }
    }

    fn decode(bytes: Bytes) -> Result<Self, String> {
        let bad = |what: &str| format!("undecodable log entry: {what}");
        let mut d = Dec::new(&bytes);
        match d.u8().map_err(|_| bad("empty"))? {
            form @ (TAG_WRITE | TAG_WRITE_LZ4 | TAG_WRITE_REFS) => {
                let n = d.count(2).map_err(|_| bad("part count"))?;
                let mut parts = Vec::with_capacity(n);
                for _ in 0..n {
                    parts.push(WritePart::decode(&bytes, &mut d, form)?);
                }
                Ok(Command::write(parts))
            }
            TAG_CONTROL => match record::decode_control(&bytes[1..]) {
                Ok(rec) => Ok(Command::Control(Arc::new(rec))),
                Err(_) => Err(bad("shipping record")),
            },
            t => Err(bad(&format!("unknown command {t}"))),
        }
    }

    fn heap_size(&self) -> usize {
        match self {
            Command::Write(parts) => parts.iter().map(WritePart::heap_size).sum(),
            Command::Control(_) => 0,
        }
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = Vec::new();
        self.encode(&mut out);
        s.serialize_bytes(&out)
    }
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let b: Vec<u8> = serde::de::Deserialize::deserialize(d)?;
        Command::decode(Bytes::from(b)).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::HeadOptions;
    use hearth_core::{Labels, Sample};

    fn encode(cmd: &Command) -> Vec<u8> {
        let mut bytes = Vec::new();
        cmd.encode(&mut bytes);
        bytes
    }

    /// A part's series as comparable values: name (id, or labels and hash), samples.
    fn named(p: &WritePart) -> Vec<(String, Vec<(i64, u64)>)> {
        let PartBody::Refs(r) = &p.body else {
            panic!("not the refs form")
        };
        r.series()
            .map(|(name, samples)| {
                let name = match name {
                    SeriesName::Id(id) => format!("id {id}"),
                    SeriesName::Labels { labels, hash } => format!("{labels} {hash}"),
                };
                let samples = samples.iter().map(|s| (s.t, s.v.to_bits())).collect();
                (name, samples)
            })
            .collect()
    }

    fn labels(i: usize) -> Labels {
        Labels::from_pairs(&[
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", &(i % 8).to_string()),
            ("instance", &format!("host-{}:9100", i / 8)),
            ("job", "node"),
        ])
    }

    #[test]
    fn a_split_part_encodes_only_its_own_series() {
        let series: Vec<(Labels, Vec<Sample>)> = (0..16)
            .map(|i| (labels(i), vec![Sample::new(1_000 + i as i64, i as f64)]))
            .collect();
        let batch = WriteBatch::from_series(&series);
        let t = Tenant::anonymous();
        let parts = hearth_core::shard::split_by_group(&t, &batch, 4);
        let mut total = 0;
        for (g, part) in &parts {
            for ids in [
                vec![None; part.len()],
                (0..part.len()).map(|i| Some(i as u32)).collect(),
            ] {
                let w = WritePart::new(t.clone(), part, &ids);
                let cmd = Command::write(vec![w]);
                let back = Command::decode(Bytes::from(encode(&cmd))).unwrap();
                let Command::Write(ps) = back else { panic!() };
                let n = named(&ps[0]);
                assert_eq!(n.len(), part.len(), "group {g}");
                let samples: usize = n.iter().map(|(_, s)| s.len()).sum();
                assert_eq!(samples, part.sample_count());
            }
            total += part.len();
        }
        assert_eq!(total, 16);
    }

    #[test]
    fn a_write_entry_round_trips_through_log_and_serde() {
        let a = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs(&[("__name__", "up"), ("job", "b")]);
        let batch = WriteBatch::from_series(&[
            (a.clone(), vec![Sample::new(1, 1.0), Sample::new(2, 2.0)]),
            (b, vec![Sample::new(3, f64::NAN), Sample::new(-5, 0.5)]),
        ]);
        let t1 = Tenant::new("t1").unwrap();
        let cmd = Command::write(vec![
            WritePart::new(t1.clone(), &batch, &[Some(7), None]),
            WritePart::new(
                Tenant::new("t2").unwrap(),
                &WriteBatch::from_series(&[(a.clone(), vec![])]),
                &[None],
            ),
        ]);
        let bytes = encode(&cmd);
        let back = Command::decode(Bytes::from(bytes.clone())).unwrap();
        let Command::Write(parts) = &back else {
            panic!("{back:?}")
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].tenant.as_str(), "t1");
        let PartBody::Refs(r) = &parts[0].body else {
            panic!("not the refs form")
        };
        let series: Vec<_> = r.series().collect();
        assert_eq!(series.len(), 2);
        assert!(matches!(series[0].0, SeriesName::Id(7)));
        assert_eq!(series[0].1, &[Sample::new(1, 1.0), Sample::new(2, 2.0)]);
        let SeriesName::Labels { labels, hash } = series[1].0 else {
            panic!("not by labels")
        };
        assert!(labels.eq_labels(&batch.get(1).labels.to_labels()));
        assert_eq!(hash, batch.get(1).hash);
        assert_eq!(series[1].1[0].v.to_bits(), f64::NAN.to_bits());
        assert_eq!(series[1].1[1], Sample::new(-5, 0.5));
        // What a part holds is what its bytes decode to.
        let Command::Write(built) = &cmd else {
            panic!("not a write")
        };
        for (b, d) in built.iter().zip(parts.iter()) {
            assert_eq!(named(b), named(d));
        }
        // A decoded entry encodes to the same bytes (its parts kept theirs).
        assert_eq!(encode(&back), bytes);
        let json = serde_json::to_vec(&cmd).unwrap();
        let Command::Write(again) = serde_json::from_slice::<Command>(&json).unwrap() else {
            panic!("not a write")
        };
        assert_eq!(again.len(), 2);
        // Every truncation of an entry is an error, never a panic.
        for n in 0..bytes.len() {
            assert!(Command::decode(Bytes::copy_from_slice(&bytes[..n])).is_err());
        }
    }

    #[test]
    fn series_the_head_holds_cost_a_few_bytes_and_apply_alike_everywhere() {
        let t = Tenant::new("t1").unwrap();
        let batch = WriteBatch::from_series(
            &(0..500)
                .map(|i| (labels(i), vec![Sample::new(1_700_000_000_000, i as f64)]))
                .collect::<Vec<_>>(),
        );
        // Two replicas apply the same entries: the first names every series by labels
        // (the leader's head was empty), the next by the ids the first gave them.
        let (leader, follower) = (
            Head::new(HeadOptions::default()),
            Head::new(HeadOptions::default()),
        );
        let first = WritePart::new(t.clone(), &batch, &vec![None; 500]);
        let plain = WritePart::plain(&t, &batch).len();
        assert!(
            first.wire_len() * 2 < plain,
            "{} of {plain}",
            first.wire_len()
        );
        for h in [&leader, &follower] {
            let r = first.apply(h);
            assert_eq!((r.samples_written, r.unresolved.len()), (500, 0));
        }
        let th = leader.tenant(&t).unwrap();
        let next = WriteBatch::from_series(
            &(0..500)
                .map(|i| (labels(i), vec![Sample::new(1_700_000_015_000, i as f64)]))
                .collect::<Vec<_>>(),
        );
        let ids: Vec<_> = next
            .iter()
            .map(|s| th.lookup_id(s.hash, &s.labels))
            .collect();
        assert!(ids.iter().all(Option::is_some));
        let second = WritePart::new(t.clone(), &next, &ids);
        // An id, a sample count, a timestamp delta and a value: about 13 bytes a sample.
        assert!(second.wire_len() < 500 * 14, "{}", second.wire_len());
        let bytes = encode(&Command::write(vec![second]));
        let Command::Write(parts) = Command::decode(Bytes::from(bytes)).unwrap() else {
            panic!("not a write")
        };
        for h in [&leader, &follower] {
            let r = parts[0].apply(h);
            assert_eq!((r.samples_written, r.unresolved.len()), (500, 0));
        }
        let dump = |h: &Head| {
            let th = h.tenant(&t).unwrap();
            th.all_series()
                .iter()
                .map(|s| {
                    (
                        s.id,
                        s.labels.to_string(),
                        s.state.lock().data_in(0, i64::MAX),
                    )
                })
                .map(|(id, l, d)| format!("{id} {l} {d:?}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(dump(&leader), dump(&follower));
        assert_eq!(dump(&leader).len(), 500);
    }

    #[test]
    fn an_id_the_head_no_longer_holds_is_applied_nowhere_and_reported() {
        let t = Tenant::new("t1").unwrap();
        let head = Head::new(HeadOptions::default());
        let one = |ts| WriteBatch::from_series(&[(labels(1), vec![Sample::new(ts, 1.0)])]);
        let r = WritePart::new(t.clone(), &one(1_000), &[None]).apply(&head);
        assert_eq!(r.samples_written, 1);
        let id = head
            .tenant(&t)
            .unwrap()
            .lookup_id(one(0).get(0).hash, &one(0).get(0).labels);
        assert_eq!(id, Some(0));
        // Proposed by id; then its data is shipped and the series collected.
        let by_id = WritePart::new(t.clone(), &one(8_000_000), &[id]);
        head.seal(Some(&t), 7_200_000);
        head.truncate_before(Some(&t), 7_200_000);
        assert_eq!(head.gc(), 1);
        let r = by_id.apply(&head);
        assert_eq!((r.samples_written, r.samples_rejected), (0, 0));
        assert_eq!(r.unresolved, vec![0]);
        // Written again by labels, it is a new series with a new id.
        let r = WritePart::new(t.clone(), &one(8_000_000), &[None]).apply(&head);
        assert_eq!((r.samples_written, r.unresolved.len()), (1, 0));
        let th = head.tenant(&t).unwrap();
        assert_eq!(
            th.lookup_id(one(0).get(0).hash, &one(0).get(0).labels),
            Some(1)
        );
    }

    #[test]
    fn entries_of_the_earlier_forms_still_decode_and_apply() {
        let t = Tenant::new("t1").unwrap();
        let many = WriteBatch::from_series(
            &(0..50)
                .map(|i| (labels(i), vec![Sample::new(1_700_000_000_000, i as f64)]))
                .collect::<Vec<_>>(),
        );
        let plain = WritePart::plain(&t, &many);
        let mut first_form = vec![TAG_WRITE, 1];
        first_form.extend_from_slice(&plain);
        let mut lz4_form = vec![TAG_WRITE_LZ4, 1];
        let mut e = Enc::default();
        e.bytes(&lz4_flex::block::compress_prepend_size(&plain));
        lz4_form.extend_from_slice(&e.buf);
        for bytes in [first_form, lz4_form] {
            let cmd = Command::decode(Bytes::from(bytes.clone())).unwrap();
            // Re-encoded (to a follower, say) in its own form.
            assert_eq!(encode(&cmd), bytes);
            let Command::Write(parts) = cmd else {
                panic!("not a write")
            };
            let PartBody::Labels(b) = &parts[0].body else {
                panic!("not by labels")
            };
            assert!(b.get(7).labels.eq_labels(&many.get(7).labels.to_labels()));
            let head = Head::new(HeadOptions::default());
            assert_eq!(parts[0].apply(&head).samples_written, 50);
        }
        let seal = Command::Control(Arc::new(ControlRecord::Seal {
            tenant: Some(Tenant::new("t1").unwrap()),
            before: 7_200_000,
        }));
        match Command::decode(Bytes::from(encode(&seal))).unwrap() {
            Command::Control(rec) => assert!(matches!(
                &*rec,
                ControlRecord::Seal { tenant: Some(t), before: 7_200_000 } if t.as_str() == "t1"
            )),
            other => panic!("{other:?}"),
        }
    }
}
