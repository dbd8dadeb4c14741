//! Replication: the ingester's head kept identical on several nodes by Raft (openraft),
//! one Raft group per shard group. This part holds the node's one log: a log engine
//! shared by every local group (`log_engine`) and, on top of it, openraft's log
//! storage for each group (`log_store`). See `replication.md` beside this file for the
//! invariants, the failure cases and why.

pub mod log_engine;
pub mod log_store;

pub use log_engine::{EngineError, GroupId, GroupLogState, LogEngine, LogEngineOptions};
pub use log_store::{GroupLogStore, LogData};
