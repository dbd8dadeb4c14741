//! The in-process transport between replicas: a router that hands each Raft message to
//! the target replica's `Raft` directly. It is what replicas in one process use (the
//! single-process default, and tests that run a group of three in one process), beside
//! the gRPC transport between nodes. A replica can be cut off (both directions) to test
//! partitions.

// openraft's error types are large and are what its traits return.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Raft, Snapshot, Vote};
use parking_lot::RwLock;

use super::log_engine::GroupId;
use super::state_machine::ShardConfig;

type Rpc<T> = Result<T, RPCError<u64, BasicNode, RaftError<u64>>>;

#[derive(Default)]
struct Routes {
    rafts: HashMap<(GroupId, u64), Raft<ShardConfig>>,
    /// Replicas cut off from every other one.
    isolated: HashSet<u64>,
}

/// Routes messages between the replicas registered in this process.
#[derive(Clone, Default)]
pub struct LocalRouter {
    routes: Arc<RwLock<Routes>>,
}

impl LocalRouter {
    pub fn register(&self, group: GroupId, replica: u64, raft: Raft<ShardConfig>) {
        self.routes.write().rafts.insert((group, replica), raft);
    }

    pub fn unregister(&self, group: GroupId, replica: u64) {
        self.routes.write().rafts.remove(&(group, replica));
    }

    /// Cuts `replica` off from every other replica (both directions), or heals it.
    pub fn isolate(&self, replica: u64, isolated: bool) {
        let mut r = self.routes.write();
        if isolated {
            r.isolated.insert(replica);
        } else {
            r.isolated.remove(&replica);
        }
    }

    /// The network factory for one replica of one group.
    pub fn factory(&self, group: GroupId, from: u64) -> LocalNetwork {
        LocalNetwork {
            router: self.clone(),
            group,
            from,
            to: 0,
        }
    }

    /// The replica `to` of `group`, for a message from `from`, unless it is not hosted
    /// here or either side is cut off.
    pub fn target(
        &self,
        group: GroupId,
        from: u64,
        to: u64,
    ) -> Result<Raft<ShardConfig>, Unreachable> {
        let r = self.routes.read();
        if r.isolated.contains(&from) || r.isolated.contains(&to) {
            return Err(Unreachable::new(&NetworkError::new(
                &std::io::Error::other(format!(
                    "replica {to} of group {group} is cut off from {from}"
                )),
            )));
        }
        r.rafts.get(&(group, to)).cloned().ok_or_else(|| {
            Unreachable::new(&NetworkError::new(&std::io::Error::other(format!(
                "replica {to} of group {group} is not running here"
            ))))
        })
    }
}

/// A replica's connection to one other replica of its group.
pub struct LocalNetwork {
    router: LocalRouter,
    group: GroupId,
    from: u64,
    to: u64,
}

impl RaftNetworkFactory<ShardConfig> for LocalNetwork {
    type Network = LocalNetwork;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Self::Network {
        LocalNetwork {
            router: self.router.clone(),
            group: self.group,
            from: self.from,
            to: target,
        }
    }
}

impl LocalNetwork {
    fn target(&self) -> Result<Raft<ShardConfig>, Unreachable> {
        self.router.target(self.group, self.from, self.to)
    }
}

impl RaftNetwork<ShardConfig> for LocalNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ShardConfig>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<u64>> {
        let raft = self.target()?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, _option: RPCOption) -> Rpc<VoteResponse<u64>> {
        let raft = self.target()?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<ShardConfig>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<ShardConfig, Fatal<u64>>> {
        let raft = self.target()?;
        // The receiver copies the checkpoint file into its own directory when it
        // installs it; the sender's file is never moved.
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::RemoteError(RemoteError::new(self.to, e)))
    }
}
