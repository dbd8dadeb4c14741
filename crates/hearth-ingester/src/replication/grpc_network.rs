//! Raft between nodes over gRPC (proto/hearth/raft.proto): the client a replica uses
//! to reach its group's replicas on other nodes, and the service a node runs to hand
//! incoming messages to the replica they name.
//!
//! One channel per peer node, shared by every group (HTTP/2 multiplexes them). The
//! service routes through the node's [`LocalRouter`], so a message for a replica the
//! node does not host is refused, never answered by another. Snapshots stream a
//! checkpoint file in chunks from disk to disk; the receiver fsyncs it before
//! installing, and a stream that breaks leaves nothing behind.

// openraft's error types are large and are what its traits return.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hearth_proto::raft as pb;
use hearth_proto::raft::raft_client::RaftClient;
use hearth_proto::raft::raft_server::{Raft as RaftRpc, RaftServer};
use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed, StreamingError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, Snapshot, Vote};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use super::local_network::LocalRouter;
use super::log_engine::GroupId;
use super::log_store::{decode_entry, encode_entry};
use super::state_machine::{Meta, ShardConfig, SnapshotFile};

/// Largest message either side accepts: replication messages are capped well below it
/// (`ReplicaOptions::max_message_bytes`), snapshot chunks are 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
const SNAPSHOT_CHUNK: usize = 1 << 20;

type Rpc<T> = Result<T, RPCError<u64, BasicNode, RaftError<u64>>>;

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("openraft's messages serialize")
}

fn from_json<T: DeserializeOwned>(b: &[u8], what: &str) -> Result<T, Status> {
    serde_json::from_slice(b).map_err(|e| Status::invalid_argument(format!("{what}: {e}")))
}

/// Channels to peer nodes by address, shared by every group's replicas on this node.
#[derive(Clone, Default)]
pub struct PeerChannels {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// Where this node dials a member's address instead (a member's address is part of
    /// every group's replicated membership; a route is this node's own, such as a
    /// fault proxy between two nodes in tests and deploy/local/cluster.sh).
    routes: Arc<HashMap<String, String>>,
}

impl PeerChannels {
    /// Channels that dial `routes[addr]` for the members listed there.
    pub fn with_routes(routes: HashMap<String, String>) -> PeerChannels {
        PeerChannels {
            channels: Arc::default(),
            routes: Arc::new(routes),
        }
    }

    fn client(&self, addr: &str) -> Result<RaftClient<Channel>, String> {
        let mut m = self.channels.lock();
        let ch = match m.get(addr) {
            Some(c) => c.clone(),
            None => {
                let dial = self.routes.get(addr).map_or(addr, |r| r.as_str());
                let c = Endpoint::from_shared(format!("http://{dial}"))
                    .map_err(|e| e.to_string())?
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .connect_lazy();
                m.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(RaftClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// A replica's network factory: one connection per target replica, through the
/// node's shared channels.
#[derive(Clone)]
pub struct GrpcNetwork {
    channels: PeerChannels,
    group: GroupId,
    from: u64,
}

impl GrpcNetwork {
    pub fn new(channels: PeerChannels, group: GroupId, from: u64) -> GrpcNetwork {
        GrpcNetwork {
            channels,
            group,
            from,
        }
    }
}

pub struct GrpcConnection {
    client: Result<RaftClient<Channel>, String>,
    target: pb::Target,
}

impl RaftNetworkFactory<ShardConfig> for GrpcNetwork {
    type Network = GrpcConnection;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Self::Network {
        GrpcConnection {
            client: self.channels.client(&node.addr),
            target: pb::Target {
                group: self.group,
                replica: target,
                from: self.from,
            },
        }
    }
}

fn unreachable(e: impl ToString) -> Unreachable {
    Unreachable::new(&std::io::Error::other(e.to_string()))
}

/// Whether a failed call means the peer is away: it could not be reached or does not
/// host the replica. openraft waits 500 ms before it tries an unreachable peer again.
///
/// A connection broken under the call (Unknown "transport error", Cancelled) is not
/// counted as away: counting it was tried, and it stopped the tight loop of calls
/// against a dead peer behind a proxy that accepts connections, but it lengthened the
/// failover of an asymmetric partition from about 3.5 s to 7-8 s in three runs of the
/// multi-process test (replication.md).
fn peer_away(code: tonic::Code) -> bool {
    matches!(code, tonic::Code::Unavailable | tonic::Code::NotFound)
}

/// A failed call: the peer is away (see [`peer_away`]), or the exchange failed.
fn status_error(s: Status) -> RPCError<u64, BasicNode, RaftError<u64>> {
    if peer_away(s.code()) {
        RPCError::Unreachable(unreachable(s))
    } else {
        RPCError::Network(NetworkError::new(&std::io::Error::other(s.to_string())))
    }
}

impl GrpcConnection {
    fn client(&self) -> Result<RaftClient<Channel>, Unreachable> {
        self.client.clone().map_err(unreachable)
    }

    fn reply<T: DeserializeOwned>(&self, r: pb::RaftReply) -> Rpc<T> {
        if !r.error.is_empty() {
            let e: RaftError<u64> = serde_json::from_slice(&r.error)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
            return Err(RPCError::RemoteError(RemoteError::new(
                self.target.replica,
                e,
            )));
        }
        serde_json::from_slice(&r.ok).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetwork<ShardConfig> for GrpcConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ShardConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<u64>> {
        let mut entries = Vec::with_capacity(rpc.entries.len());
        for e in &rpc.entries {
            let b = encode_entry(e)
                .map_err(|e| RPCError::Network(NetworkError::new(&std::io::Error::other(e))))?;
            entries.push(b.to_vec());
        }
        let mut req = Request::new(pb::AppendEntriesRequest {
            target: Some(self.target),
            vote: json(&rpc.vote),
            prev_log_id: json(&rpc.prev_log_id),
            leader_commit: json(&rpc.leader_commit),
            entries,
        });
        req.set_timeout(option.hard_ttl());
        let r = self
            .client()?
            .append_entries(req)
            .await
            .map_err(status_error)?;
        self.reply(r.into_inner())
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> Rpc<VoteResponse<u64>> {
        let mut req = Request::new(pb::VoteRequest {
            target: Some(self.target),
            request: json(&rpc),
        });
        req.set_timeout(option.hard_ttl());
        let r = self.client()?.vote(req).await.map_err(status_error)?;
        self.reply(r.into_inner())
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<u64>,
        snapshot: Snapshot<ShardConfig>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<u64>, StreamingError<ShardConfig, Fatal<u64>>> {
        let client = self.client()?;
        let file = tokio::fs::File::open(&snapshot.snapshot.path)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let first = pb::SnapshotChunk {
            target: Some(self.target),
            vote: json(&vote),
            meta: json(&snapshot.meta),
            data: Vec::new(),
            done: false,
        };
        let target = self.target;
        // The file is read a chunk at a time as the stream is polled: never whole.
        let rest = futures::stream::unfold(Some(file), move |file| async move {
            let mut file = file?;
            let mut buf = vec![0u8; SNAPSHOT_CHUNK];
            let mut n = 0;
            while n < buf.len() {
                match file.read(&mut buf[n..]).await {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    // The receiver sees a stream that ends without `done` and drops it.
                    Err(_) => return None,
                }
            }
            buf.truncate(n);
            let done = n < SNAPSHOT_CHUNK;
            let chunk = pb::SnapshotChunk {
                target: Some(target),
                data: buf,
                done,
                ..Default::default()
            };
            Some((chunk, if done { None } else { Some(file) }))
        });
        let stream = futures::stream::iter([first]).chain(rest);
        let mut client = client;
        let call = client.install_snapshot(Request::new(stream));
        let r = tokio::select! {
            r = call => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        let r = r
            .map_err(|s| {
                if peer_away(s.code()) {
                    StreamingError::Unreachable(unreachable(s))
                } else {
                    StreamingError::Network(NetworkError::new(&std::io::Error::other(
                        s.to_string(),
                    )))
                }
            })?
            .into_inner();
        if !r.error.is_empty() {
            let e: Fatal<u64> = serde_json::from_slice(&r.error)
                .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
            return Err(StreamingError::RemoteError(RemoteError::new(
                target.replica,
                e,
            )));
        }
        serde_json::from_slice(&r.ok).map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}

/// The node's Raft service: hands each message to the replica it names.
#[derive(Clone)]
pub struct RaftService {
    replicas: LocalRouter,
}

impl RaftService {
    pub fn new(replicas: LocalRouter) -> RaftService {
        RaftService { replicas }
    }

    /// The tonic server for this service, with the message cap raised for replication.
    pub fn into_server(self) -> RaftServer<RaftService> {
        RaftServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn raft(&self, t: Option<pb::Target>) -> Result<openraft::Raft<ShardConfig>, Status> {
        let t = t.ok_or_else(|| Status::invalid_argument("a Raft message names its target"))?;
        self.replicas
            .target(t.group, t.from, t.replica)
            .map_err(|e| Status::not_found(e.to_string()))
    }
}

fn reply<T: Serialize, E: Serialize>(r: Result<T, E>) -> Response<pb::RaftReply> {
    Response::new(match r {
        Ok(v) => pb::RaftReply {
            ok: json(&v),
            error: Vec::new(),
        },
        Err(e) => pb::RaftReply {
            ok: Vec::new(),
            error: json(&e),
        },
    })
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let r = request.into_inner();
        let raft = self.raft(r.target)?;
        let mut entries = Vec::with_capacity(r.entries.len());
        for e in r.entries {
            entries.push(
                decode_entry::<ShardConfig>(Bytes::from(e)).map_err(Status::invalid_argument)?,
            );
        }
        let rpc = AppendEntriesRequest {
            vote: from_json(&r.vote, "vote")?,
            prev_log_id: from_json(&r.prev_log_id, "prev_log_id")?,
            leader_commit: from_json(&r.leader_commit, "leader_commit")?,
            entries,
        };
        Ok(reply(raft.append_entries(rpc).await))
    }

    async fn vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let r = request.into_inner();
        let raft = self.raft(r.target)?;
        let rpc: VoteRequest<u64> = from_json(&r.request, "vote request")?;
        Ok(reply(raft.vote(rpc).await))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::RaftReply>, Status> {
        let mut chunks = request.into_inner();
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an empty snapshot stream"))?;
        let raft = self.raft(first.target)?;
        let vote: Vote<u64> = from_json(&first.vote, "vote")?;
        let meta: Meta = from_json(&first.meta, "snapshot meta")?;
        let into = raft
            .begin_receiving_snapshot()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let path = into.path.clone();
        // A stream that breaks, or a call dropped mid-stream (its sender died: the
        // server drops this future, so nothing after the await would run), leaves no
        // partial file behind. Once the file is whole it is openraft's to install (a
        // call dropped from here on leaves it to openraft, which may still install it;
        // one it does not is removed when the group next opens).
        let partial = PartialFile(Some(path.clone()));
        receive(&mut chunks, &path, first).await?;
        partial.keep();
        let snapshot = Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile { path: path.clone() }),
        };
        let installed = raft.install_full_snapshot(vote, snapshot).await;
        // openraft answers once the snapshot is installed (the file moved into the
        // group's snapshots), or at once when it does not install it (a stale vote, or
        // not newer than what the replica has committed): then the file is never used.
        // (Not found: it was installed.)
        let _ = tokio::fs::remove_file(&path).await;
        Ok(reply(installed))
    }
}

/// A snapshot file being received: removed when dropped unless kept.
struct PartialFile(Option<PathBuf>);

impl PartialFile {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes the streamed file (the first chunk's data too) and syncs it; an error if the
/// stream ended before its last chunk.
async fn receive(
    chunks: &mut Streaming<pb::SnapshotChunk>,
    path: &PathBuf,
    first: pb::SnapshotChunk,
) -> Result<(), Status> {
    let io = |e: std::io::Error| Status::internal(format!("writing the received snapshot: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut done = first.done;
    file.write_all(&first.data).await.map_err(io)?;
    while !done {
        let Some(c) = chunks.message().await? else {
            return Err(Status::aborted(
                "the snapshot stream ended before its last chunk",
            ));
        };
        file.write_all(&c.data).await.map_err(io)?;
        done = c.done;
    }
    file.sync_all().await.map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that is away gets openraft's backoff; a broken call or an error answer
    /// does not.
    #[test]
    fn only_a_peer_that_cannot_be_reached_is_unreachable() {
        for code in [tonic::Code::Unavailable, tonic::Code::NotFound] {
            assert!(
                matches!(
                    status_error(Status::new(code, "x")),
                    RPCError::Unreachable(_)
                ),
                "{code:?}"
            );
        }
        for code in [
            tonic::Code::Cancelled,
            tonic::Code::Unknown,
            tonic::Code::Internal,
            tonic::Code::InvalidArgument,
            tonic::Code::DeadlineExceeded,
            tonic::Code::ResourceExhausted,
        ] {
            assert!(
                matches!(status_error(Status::new(code, "x")), RPCError::Network(_)),
                "{code:?}"
            );
        }
    }
}
