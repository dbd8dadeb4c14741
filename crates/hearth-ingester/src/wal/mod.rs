//! The write-ahead log, shaped as Raft log storage.
//!
//! [`LogStorage`] is the contract openraft's log store needs (entries with index and
//! term; append, truncate a conflicting suffix, purge an applied prefix, read a range;
//! the vote). [`SegmentLog`] implements it with CRC-checked records in segment files.
//! In the single-node default the log is written with one fixed term; the replication
//! issue plugs the same storage under openraft unchanged.
//!
//! See `wal.md` beside this file for the record format and the recovery rules.

mod segment;

pub(crate) use segment::{cut_file, write_atomic};
pub use segment::{SegmentLog, SegmentLogOptions};

use std::ops::RangeInclusive;

/// Where an entry sits in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogId {
    pub term: u64,
    pub index: u64,
}

/// One log entry: an opaque payload (a write batch, or a control record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub log_id: LogId,
    pub payload: Vec<u8>,
}

/// First and last entries present (after purges and truncations).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogState {
    /// The last purged entry, if any: everything up to it is gone.
    pub last_purged: Option<LogId>,
    pub last: Option<LogId>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("log entry {got} does not follow {expected_after}")]
    NotContiguous { expected_after: u64, got: u64 },
    #[error("log corrupt: {0}")]
    Corrupt(String),
}

/// Raft log storage. Every method that returns `Ok` has made its effect durable.
pub trait LogStorage: Send + Sync {
    fn state(&self) -> LogState;
    /// Appends entries whose indexes follow the last one, durably (one fsync a call).
    fn append(&self, entries: &[Entry]) -> Result<(), LogError>;
    /// Deletes every entry with index >= `from` (a Raft conflict).
    fn truncate(&self, from: u64) -> Result<(), LogError>;
    /// Deletes every entry with index <= `upto` (applied and snapshotted).
    fn purge(&self, upto: LogId) -> Result<(), LogError>;
    /// Entries with index in `range` that are present.
    fn read_range(&self, range: RangeInclusive<u64>) -> Result<Vec<Entry>, LogError>;
    fn save_vote(&self, vote: &[u8]) -> Result<(), LogError>;
    fn read_vote(&self) -> Result<Option<Vec<u8>>, LogError>;
}
