//! meta.json: what a block holds, in the shape Prometheus and Thanos use, with Hearth's
//! own fields under `hearth`. It is written last: a block without it does not exist.

use serde::{Deserialize, Serialize};

pub const META_FILE: &str = "meta.json";
pub const LABELS_FILE: &str = "labels.parquet";
pub const CHUNKS_FILE: &str = "chunks.parquet";
/// The block format version Hearth writes and reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    pub num_series: u64,
    pub num_samples: u64,
    pub num_chunks: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    /// 1 for a block cut from a head; one more for each compaction.
    pub level: u32,
    /// The ULIDs of the level-1 blocks whose data this block holds.
    pub sources: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HearthMeta {
    pub tenant: String,
    /// Downsampling resolution in milliseconds; 0 for raw data.
    pub resolution: i64,
    /// Each chunks column holds this much time (parquet-common's data column width).
    pub chunks_column_duration_ms: i64,
    pub format_version: u32,
    /// The Raft shard group whose leader cut this block from its head; absent for a
    /// single node's blocks and for compacted blocks (which may merge groups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_group: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub ulid: String,
    /// Inclusive lower bound, milliseconds.
    pub min_time: i64,
    /// Exclusive upper bound, milliseconds (as Prometheus' blocks).
    pub max_time: i64,
    pub stats: BlockStats,
    pub compaction: Compaction,
    /// Prometheus' meta.json version field (its index format); kept at 1.
    pub version: u32,
    pub hearth: HearthMeta,
}

impl BlockMeta {
    /// The number of chunks columns, each `chunks_column_duration_ms` wide.
    pub fn num_columns(&self) -> usize {
        let d = self.hearth.chunks_column_duration_ms.max(1);
        ((self.max_time - self.min_time + d - 1) / d).max(1) as usize
    }

    /// The time range `[start, end)` of chunks column `i`.
    pub fn column_range(&self, i: usize) -> (i64, i64) {
        let d = self.hearth.chunks_column_duration_ms.max(1);
        let start = self.min_time + i as i64 * d;
        (start, (start + d).min(self.max_time))
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.min_time <= maxt && mint < self.max_time
    }
}
