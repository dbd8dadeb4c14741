//! What a shard group's log entries say, and what applying them answers.
//!
//! A `Write` entry is the writes a leader merged while its previous entries were in
//! flight: each part a tenant and a batch in its wire form (labels, not head ids, so
//! every replica applies it the same way whatever series it already holds). One
//! encoding serves the log and the network: `LogData` for the log, and serde as those
//! same bytes (openraft's messages need serde).

use bytes::Bytes;
use hearth_core::{PushOutcome, Tenant, WriteBatch};
use hearth_series::codec::{get_metadata, put_metadata, Dec, Enc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::log_store::LogData;

const TAG_WRITE: u8 = 1;

#[derive(Clone, Debug)]
pub enum Command {
    /// Writes merged into one entry, applied in order.
    Write(Vec<(Tenant, WriteBatch)>),
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
    /// Payload bytes of the samples and labels it carries (what batching bounds).
    pub fn size(&self) -> usize {
        match self {
            Command::Write(parts) => parts.iter().map(|(_, b)| b.wire_size()).sum(),
        }
    }
}

impl LogData for Command {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Command::Write(parts) => {
                let mut e = Enc::default();
                e.u8(TAG_WRITE);
                e.uvarint(parts.len() as u64);
                for (tenant, batch) in parts {
                    let w = batch.wire_parts();
                    e.str(tenant.as_str());
                    e.bytes(w.arena);
                    e.bytes(&w.label_offsets_le());
                    e.bytes(&w.series_ends_le());
                    e.bytes(&w.samples_le());
                    put_metadata(&mut e, &batch.metadata);
                }
                out.extend_from_slice(&e.buf);
            }
        }
    }

    fn decode(bytes: Bytes) -> Result<Self, String> {
        let bad = |what: &str| format!("undecodable log entry: {what}");
        let mut d = Dec::new(&bytes);
        match d.u8().map_err(|_| bad("empty"))? {
            TAG_WRITE => {
                let n = d.count(5).map_err(|_| bad("part count"))?;
                let mut parts = Vec::with_capacity(n);
                for _ in 0..n {
                    let tenant = d.str().map_err(|_| bad("tenant"))?;
                    let tenant = Tenant::new(tenant).map_err(|e| bad(&e.to_string()))?;
                    let arena = d.bytes().map_err(|_| bad("labels"))?.to_vec();
                    let offsets = d.bytes().map_err(|_| bad("label offsets"))?;
                    let ends = d.bytes().map_err(|_| bad("series ends"))?;
                    let samples = d.bytes().map_err(|_| bad("samples"))?;
                    let mut batch = WriteBatch::from_wire(arena, offsets, ends, samples)
                        .map_err(|e| bad(&e))?;
                    batch.metadata = get_metadata(&mut d).map_err(|_| bad("metadata"))?;
                    parts.push((tenant, batch));
                }
                Ok(Command::Write(parts))
            }
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
        let cmd = Command::Write(vec![
            (Tenant::new("t1").unwrap(), batch.clone()),
            (
                Tenant::new("t2").unwrap(),
                WriteBatch::from_series(&[(a, vec![])]),
            ),
        ]);
        let mut bytes = Vec::new();
        cmd.encode(&mut bytes);
        let back = Command::decode(Bytes::from(bytes.clone())).unwrap();
        let Command::Write(parts) = &back;
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0.as_str(), "t1");
        assert_eq!(parts[0].1.len(), 2);
        assert!(parts[0]
            .1
            .get(0)
            .labels
            .eq_labels(&batch.get(0).labels.to_labels()));
        assert_eq!(parts[0].1.get(1).samples[0].v.to_bits(), f64::NAN.to_bits());
        let json = serde_json::to_vec(&cmd).unwrap();
        let Command::Write(again) = serde_json::from_slice::<Command>(&json).unwrap();
        assert_eq!(again.len(), 2);
        // Every truncation of an entry is an error, never a panic.
        for n in 0..bytes.len() {
            let _ = Command::decode(Bytes::copy_from_slice(&bytes[..n]));
        }
    }
}
