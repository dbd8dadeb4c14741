//! What a shard group's log entries say, and what applying them answers.
//!
//! A `Write` entry is the writes a leader merged while its previous entries were in
//! flight: each part a tenant and a batch in its wire form (labels, not head ids, so
//! every replica applies it the same way whatever series it already holds). One
//! encoding serves the log and the network: `LogData` for the log, and serde as those
//! same bytes (openraft's messages need serde).
//!
//! Each part is encoded once, by the writer's own task when it is proposed
//! ([`WritePart::new`]), and keeps its bytes next to its batch; an entry's encoding is
//! then its parts' bytes one after another, so neither the group's Raft core (which
//! encodes entries as it appends them) nor a message to a follower encodes samples
//! again. A decoded part keeps a slice of the bytes it came from, for the same reason.
//!
//! A part's bytes are LZ4-compressed (as the single-node log compressed its records
//! with Snappy; LZ4 costs less CPU for about the same size): a write's labels repeat (metric names, label names, instance and job),
//! and carrying them in every entry would otherwise make the log, and every message to
//! a follower, several times the size of the samples. Entries of the first,
//! uncompressed form still decode.

use std::sync::Arc;

use bytes::Bytes;
use hearth_core::{PushOutcome, Tenant, WriteBatch};
use hearth_series::codec::{get_metadata, put_metadata, Dec, Enc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::log_store::LogData;
use crate::record::{self, ControlRecord, LogRecord};

/// Writes whose parts are uncompressed (the first form; decoded, no longer written).
const TAG_WRITE: u8 = 1;
const TAG_CONTROL: u8 = 2;
/// Writes whose parts are each an LZ4 block of the uncompressed form, its length first.
const TAG_WRITE_LZ4: u8 = 3;
/// A part larger than this uncompressed is corruption, not data (bounds allocation).
const MAX_PART_BYTES: usize = 1 << 30;

#[derive(Clone, Debug)]
pub enum Command {
    /// Writes merged into one entry, applied in order. Shared: openraft clones entries
    /// (into its log cache, into messages), and a clone must not copy samples.
    Write(Arc<[WritePart]>),
    /// A step of the shipping protocol (`Seal` freezes a tenant's range, `Shipped`
    /// drops it once its blocks are in the bucket), in the single-node log's encoding.
    Control(Arc<ControlRecord>),
}

/// One write of an entry: a tenant's batch and its encoding.
#[derive(Clone, Debug)]
pub struct WritePart {
    pub tenant: Tenant,
    pub batch: WriteBatch,
    wire: Bytes,
}

impl WritePart {
    /// Encodes the part (on the caller's task, so writers encode in parallel).
    pub fn new(tenant: Tenant, batch: WriteBatch) -> WritePart {
        let plain = Self::plain(&tenant, &batch);
        let compressed = lz4_flex::block::compress_prepend_size(&plain);
        let mut framed = Enc::default();
        framed.bytes(&compressed);
        WritePart {
            tenant,
            batch,
            wire: Bytes::from(framed.buf),
        }
    }

    /// The uncompressed form: tenant, the batch's wire parts, metadata.
    fn plain(tenant: &Tenant, batch: &WriteBatch) -> Vec<u8> {
        let mut e = Enc::default();
        let w = batch.wire_parts();
        e.str(tenant.as_str());
        e.bytes(w.arena);
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

    /// Decodes the part at the start of `d`, keeping a slice of `all` (what `d` reads)
    /// as its encoding.
    fn decode(all: &Bytes, d: &mut Dec<'_>, compressed: bool) -> Result<WritePart, String> {
        let bad = |what: &str| format!("undecodable log entry: {what}");
        let start = d.position();
        if !compressed {
            let mut part = Self::decode_plain(d)?;
            part.wire = all.slice(start..d.position());
            return Ok(part);
        }
        let block = d.bytes().map_err(|_| bad("compressed part"))?;
        let len = block
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| bad("compressed part"))?;
        if len > MAX_PART_BYTES {
            return Err(bad("a part larger than 1 GiB"));
        }
        let plain = lz4_flex::block::decompress_size_prepended(block)
            .map_err(|_| bad("compressed part"))?;
        let mut inner = Dec::new(&plain);
        let mut part = Self::decode_plain(&mut inner)?;
        part.wire = all.slice(start..d.position());
        Ok(part)
    }

    /// Decodes a part's uncompressed form (its `wire` left empty).
    fn decode_plain(d: &mut Dec<'_>) -> Result<WritePart, String> {
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
        Ok(WritePart {
            tenant,
            batch,
            wire: Bytes::new(),
        })
    }
}

/// What applying one entry answered: an outcome per write part, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult(pub Vec<WriteResult>);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResult {
    pub samples_written: u64,
    pub samples_rejected: u64,
    pub first_rejection: Option<String>,
}

impl From<PushOutcome> for WriteResult {
    fn from(o: PushOutcome) -> Self {
        WriteResult {
            samples_written: o.samples_written as u64,
            samples_rejected: o.samples_rejected as u64,
            first_rejection: o.first_rejection,
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
                e.u8(TAG_WRITE_LZ4);
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
            tag @ (TAG_WRITE | TAG_WRITE_LZ4) => {
                let n = d.count(2).map_err(|_| bad("part count"))?;
                let mut parts = Vec::with_capacity(n);
                for _ in 0..n {
                    parts.push(WritePart::decode(&bytes, &mut d, tag == TAG_WRITE_LZ4)?);
                }
                Ok(Command::write(parts))
            }
            TAG_CONTROL => match record::decode(&bytes[1..]) {
                Ok(LogRecord::Control(rec)) => Ok(Command::Control(Arc::new(rec))),
                _ => Err(bad("shipping record")),
            },
            t => Err(bad(&format!("unknown command {t}"))),
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
    use hearth_core::{Labels, Sample};

    #[test]
    fn a_write_entry_round_trips_through_log_and_serde() {
        let a = Labels::from_pairs(&[("__name__", "up"), ("job", "a")]);
        let b = Labels::from_pairs(&[("__name__", "up"), ("job", "b")]);
        let batch = WriteBatch::from_series(&[
            (a.clone(), vec![Sample::new(1, 1.0), Sample::new(2, 2.0)]),
            (b, vec![Sample::new(3, f64::NAN)]),
        ]);
        let cmd = Command::write(vec![
            WritePart::new(Tenant::new("t1").unwrap(), batch.clone()),
            WritePart::new(
                Tenant::new("t2").unwrap(),
                WriteBatch::from_series(&[(a, vec![])]),
            ),
        ]);
        let mut bytes = Vec::new();
        cmd.encode(&mut bytes);
        let back = Command::decode(Bytes::from(bytes.clone())).unwrap();
        let Command::Write(parts) = &back else {
            panic!("{back:?}")
        };
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].tenant.as_str(), "t1");
        assert_eq!(parts[0].batch.len(), 2);
        assert!(parts[0]
            .batch
            .get(0)
            .labels
            .eq_labels(&batch.get(0).labels.to_labels()));
        assert_eq!(
            parts[0].batch.get(1).samples[0].v.to_bits(),
            f64::NAN.to_bits()
        );
        // A decoded entry encodes to the same bytes (its parts kept theirs).
        let mut again_bytes = Vec::new();
        back.encode(&mut again_bytes);
        assert_eq!(again_bytes, bytes);
        let json = serde_json::to_vec(&cmd).unwrap();
        let Command::Write(again) = serde_json::from_slice::<Command>(&json).unwrap() else {
            panic!("not a write")
        };
        assert_eq!(again.len(), 2);
        // Every truncation of an entry is an error, never a panic.
        for n in 0..bytes.len() {
            let _ = Command::decode(Bytes::copy_from_slice(&bytes[..n]));
        }
        // Compressed: a part of many alike series is under half its plain form.
        let many: Vec<_> = (0..500)
            .map(|i| {
                let l = Labels::from_pairs(&[
                    ("__name__", "node_cpu_seconds_total"),
                    ("cpu", &(i % 8).to_string()),
                    ("instance", &format!("host-{}:9100", i / 8)),
                    ("job", "node"),
                ]);
                (l, vec![Sample::new(1_700_000_000_000, i as f64)])
            })
            .collect();
        let many = WriteBatch::from_series(&many);
        let t = Tenant::new("t1").unwrap();
        let plain = WritePart::plain(&t, &many).len();
        let part = WritePart::new(t.clone(), many.clone());
        assert!(
            part.wire_len() * 2 < plain,
            "{} of {plain} bytes",
            part.wire_len()
        );
        // An entry of the first, uncompressed form still decodes.
        let mut first_form = vec![TAG_WRITE, 1];
        first_form.extend_from_slice(&WritePart::plain(&t, &many));
        let Command::Write(parts) = Command::decode(Bytes::from(first_form)).unwrap() else {
            panic!("not a write")
        };
        assert_eq!(parts[0].batch.len(), 500);
        assert!(parts[0]
            .batch
            .get(7)
            .labels
            .eq_labels(&many.get(7).labels.to_labels()));
        let seal = Command::Control(Arc::new(ControlRecord::Seal {
            tenant: Some(Tenant::new("t1").unwrap()),
            before: 7_200_000,
        }));
        let mut bytes = Vec::new();
        seal.encode(&mut bytes);
        match Command::decode(Bytes::from(bytes)).unwrap() {
            Command::Control(rec) => assert!(matches!(
                &*rec,
                ControlRecord::Seal { tenant: Some(t), before: 7_200_000 } if t.as_str() == "t1"
            )),
            other => panic!("{other:?}"),
        }
    }
}
