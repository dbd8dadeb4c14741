//! openraft's storage conformance suite against the node's shared log engine: every
//! test of the suite gets a fresh group in the same engine, so the suite also proves
//! that groups sharing one log do not see each other.
//!
//! The suite drives a state machine too: it runs once with the head as the state
//! machine (what a shard group runs), and twice with a small in-memory one that keeps
//! the focus on the log (one cached, one reading every entry from the segment files).

use std::io::Cursor;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hearth_ingester::replication::{
    GroupLogStore, HeadStateMachine, LogData, LogEngine, LogEngineOptions,
};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(Vec<u8>);

impl LogData for Payload {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn decode(bytes: Bytes) -> Result<Self, String> {
        Ok(Payload(bytes.to_vec()))
    }
    fn heap_size(&self) -> usize {
        self.0.capacity()
    }
}

openraft::declare_raft_types!(
    pub Config:
        D = Payload,
        R = (),
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<Config>,
        SnapshotData = Cursor<Vec<u8>>,
);

#[derive(Clone, Default, Serialize, Deserialize)]
struct State {
    applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, openraft::BasicNode>,
    data: Vec<Payload>,
}

type Meta = SnapshotMeta<u64, openraft::BasicNode>;
type Current = Arc<Mutex<Option<(Meta, Vec<u8>)>>>;

#[derive(Clone, Default)]
struct MemStateMachine {
    state: State,
    /// Shared with the snapshot builders this machine hands out.
    current: Current,
    built: u64,
}

impl RaftSnapshotBuilder<Config> for MemStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Config>, StorageError<u64>> {
        self.built += 1;
        let bytes = serde_json::to_vec(&self.state).unwrap();
        let meta = SnapshotMeta {
            last_log_id: self.state.applied,
            last_membership: self.state.membership.clone(),
            snapshot_id: format!("snap-{}", self.built),
        };
        *self.current.lock().unwrap() = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<Config> for MemStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<u64>>,
            StoredMembership<u64, openraft::BasicNode>,
        ),
        StorageError<u64>,
    > {
        Ok((self.state.applied, self.state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Config>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for e in entries {
            self.state.applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(d) => self.state.data.push(d),
                EntryPayload::Membership(m) => {
                    self.state.membership = StoredMembership::new(Some(e.log_id), m)
                }
            }
            out.push(());
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        self.state = serde_json::from_slice(&bytes).unwrap();
        *self.current.lock().unwrap() = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<Config>>, StorageError<u64>> {
        Ok(self
            .current
            .lock()
            .unwrap()
            .clone()
            .map(|(meta, b)| Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(b)),
            }))
    }
}

struct Builder {
    engine: Arc<LogEngine>,
    next_group: AtomicU32,
}

impl StoreBuilder<Config, GroupLogStore<Config>, MemStateMachine, ()> for Builder {
    async fn build(
        &self,
    ) -> Result<((), GroupLogStore<Config>, MemStateMachine), StorageError<u64>> {
        let group = self.next_group.fetch_add(1, Ordering::Relaxed);
        Ok((
            (),
            GroupLogStore::new(self.engine.clone(), group, 1 << 20),
            MemStateMachine::default(),
        ))
    }
}

#[test]
fn openraft_storage_suite_on_the_shared_log() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments, so the suite's purges and truncations cross segment boundaries
    // and delete segments while other groups still use the log.
    let engine = LogEngine::open(
        dir.path(),
        LogEngineOptions {
            segment_bytes: 4 << 10,
            cache_bytes_per_group: 512,
            fsync: true,
        },
    )
    .unwrap();
    let builder = Builder {
        engine: Arc::new(engine),
        next_group: AtomicU32::new(1),
    };
    Suite::test_all(builder).unwrap();
}

#[test]
fn openraft_storage_suite_with_an_uncached_log() {
    // Only the newest entry of a group stays in memory: reads go to the segment files.
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(
        dir.path(),
        LogEngineOptions {
            segment_bytes: 64 << 20,
            cache_bytes_per_group: 0,
            fsync: false,
        },
    )
    .unwrap();
    Suite::test_all(Builder {
        engine: Arc::new(engine),
        next_group: AtomicU32::new(100),
    })
    .unwrap();
}

/// The suite again with the real pair: a group's log in the shared engine and its head
/// as the state machine (snapshots are checkpoint files).
struct HeadBuilder {
    engine: Arc<LogEngine>,
    dir: std::path::PathBuf,
    next_group: AtomicU32,
}

type ShardStore = GroupLogStore<hearth_ingester::replication::ShardConfig>;

impl StoreBuilder<hearth_ingester::replication::ShardConfig, ShardStore, HeadStateMachine, ()>
    for HeadBuilder
{
    async fn build(&self) -> Result<((), ShardStore, HeadStateMachine), StorageError<u64>> {
        let group = self.next_group.fetch_add(1, Ordering::Relaxed);
        let sm = HeadStateMachine::open(
            self.dir.join(format!("group-{group}")),
            hearth_ingester::HeadOptions::default(),
        )
        .unwrap();
        Ok((
            (),
            GroupLogStore::new(self.engine.clone(), group, 1 << 20),
            sm,
        ))
    }
}

#[test]
fn openraft_storage_suite_with_the_head_as_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path().join("log"), LogEngineOptions::default()).unwrap();
    Suite::test_all(HeadBuilder {
        engine: Arc::new(engine),
        dir: dir.path().to_path_buf(),
        next_group: AtomicU32::new(1),
    })
    .unwrap();
}
