//! Replication: the ingester's head kept identical on several nodes by Raft (openraft),
//! one Raft group per shard group. This part holds the node's one log: a log engine
//! shared by every local group (`log_engine`) and, on top of it, openraft's log
//! storage for each group (`log_store`). See `replication.md` beside this file for the
//! invariants, the failure cases and why.

pub mod command;
pub mod digest;
pub mod grpc_network;
pub mod local_network;
pub mod log_engine;
pub mod log_store;
pub mod node;
pub mod replica;
pub mod state_machine;
pub mod stats;

pub use command::{ApplyResult, Command, WritePart, WriteResult};
pub use digest::{head_digest, HeadDigest};
pub use grpc_network::{GrpcNetwork, PeerChannels, RaftService};
pub use hearth_core::shard::Placement;
pub use local_network::{LocalNetwork, LocalRouter};
pub use log_engine::{EngineError, GroupId, GroupLogState, LogEngine, LogEngineOptions};
pub use log_store::{GroupLogStore, LogData};
pub use node::{IngesterNode, NodeSpec};
pub use replica::{raft_config, Replica, ReplicaOptions, ReplicaSpec};
pub use state_machine::{HeadCell, HeadStateMachine, ShardConfig, SnapshotFile};
pub use stats::ReplicaStats;
