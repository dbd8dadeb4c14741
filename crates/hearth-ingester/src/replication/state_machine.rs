//! A shard group's state machine is a head: applying an entry appends its samples under
//! the head's rules, which depend only on the head (never on the clock), so replicas that
//! applied the same entries hold the same head. A snapshot is a head checkpoint file
//! with openraft's metadata beside it.
//!
//! On disk, per group: `snapshots/<id>/checkpoint.<index>` and `snapshots/<id>/meta.json`,
//! and `snapshots/current` naming the newest whole one (written last, atomically), so a
//! crash while a snapshot is written or installed leaves the previous one current.

// openraft's StorageError is large and is what its traits return.
#![allow(clippy::result_large_err)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::command::{ApplyResult, Command, WriteResult};
use super::stats::ReplicaStats;
use crate::checkpoint::{self, HeadSnapshot};
use crate::files;
use crate::head::{Head, HeadOptions};

openraft::declare_raft_types!(
    /// The type configuration of a shard group's Raft.
    pub ShardConfig:
        D = Command,
        R = ApplyResult,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<ShardConfig>,
        SnapshotData = SnapshotFile,
);

pub type Meta = SnapshotMeta<u64, BasicNode>;
pub type Membership = StoredMembership<u64, BasicNode>;

/// A snapshot's data: a head checkpoint file on this node's disk (the transport streams
/// it; nothing holds it whole in memory on the way).
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

/// The group's head, replaced whole when a snapshot is installed; readers take the
/// current one.
#[derive(Clone)]
pub struct HeadCell(Arc<RwLock<Arc<Head>>>);

impl HeadCell {
    pub fn new(head: Head) -> HeadCell {
        HeadCell(Arc::new(RwLock::new(Arc::new(head))))
    }

    pub fn get(&self) -> Arc<Head> {
        self.0.read().clone()
    }

    fn replace(&self, head: Head) {
        *self.0.write() = Arc::new(head);
    }
}

#[derive(Serialize, Deserialize)]
struct MetaFile {
    meta: Meta,
    /// The snapshot's directory (beside `current`) and its checkpoint file in it.
    dir: String,
    checkpoint: String,
}

fn sm_err(e: impl ToString) -> StorageError<u64> {
    StorageIOError::write_state_machine(&io::Error::other(e.to_string())).into()
}

fn snap_err(meta: Option<&Meta>, e: impl ToString) -> StorageError<u64> {
    StorageIOError::write_snapshot(
        meta.map(|m| m.signature()),
        &io::Error::other(e.to_string()),
    )
    .into()
}

pub struct HeadStateMachine {
    head: HeadCell,
    head_opts: HeadOptions,
    dir: PathBuf,
    applied: Option<LogId<u64>>,
    membership: Membership,
    /// Names snapshots and incoming files uniquely within this process.
    seq: Arc<AtomicU64>,
    stats: Arc<ReplicaStats>,
}

impl HeadStateMachine {
    /// Opens the group's state machine in `dir`, loading its newest snapshot.
    pub fn open(dir: impl AsRef<Path>, head_opts: HeadOptions) -> io::Result<HeadStateMachine> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with("incoming-") || name.ends_with(".tmp") {
                let _ = fs::remove_file(e.path()).or_else(|_| fs::remove_dir_all(e.path()));
            }
        }
        let head = Head::new(head_opts.clone());
        let mut sm = HeadStateMachine {
            head: HeadCell::new(Head::new(head_opts.clone())),
            head_opts,
            dir,
            applied: None,
            membership: Membership::default(),
            seq: Arc::new(AtomicU64::new(0)),
            stats: Arc::default(),
        };
        if let Some(current) = sm.current()? {
            let loaded = checkpoint::load_latest(&sm.dir.join(current.checkpoint_dir()), &head)?;
            if loaded.is_none() {
                return Err(io::Error::other(format!(
                    "snapshot {} has no readable checkpoint",
                    current.checkpoint
                )));
            }
            sm.applied = current.meta.last_log_id;
            sm.membership = current.meta.last_membership.clone();
            info!(dir = %sm.dir.display(), applied = ?sm.applied, "loaded group snapshot");
        }
        sm.head.replace(head);
        Ok(sm)
    }

    pub fn head(&self) -> &HeadCell {
        &self.head
    }

    /// Counts this state machine's snapshots in `stats` (the replica's).
    pub fn with_stats(mut self, stats: Arc<ReplicaStats>) -> HeadStateMachine {
        self.stats = stats;
        self
    }

    fn current(&self) -> io::Result<Option<MetaFile>> {
        let pointer = match fs::read_to_string(self.dir.join("current")) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = fs::read(self.dir.join(pointer.trim()).join("meta.json"))?;
        serde_json::from_slice(&meta)
            .map(Some)
            .map_err(io::Error::other)
    }

    fn next_name(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl MetaFile {
    /// The snapshot directory, relative to the group's.
    fn checkpoint_dir(&self) -> PathBuf {
        PathBuf::from(&self.dir)
    }
}

/// Makes `sub` (a directory holding `checkpoint.*`) the current snapshot with `meta`:
/// meta first, then the pointer, then older snapshots go.
fn commit_snapshot(dir: &Path, sub: &str, meta: &Meta, checkpoint: &Path) -> io::Result<()> {
    let file = MetaFile {
        meta: meta.clone(),
        dir: sub.to_string(),
        checkpoint: checkpoint
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
    };
    let body = serde_json::to_vec(&file).map_err(io::Error::other)?;
    files::write_atomic(&dir.join(sub).join("meta.json"), &body)?;
    files::write_atomic(&dir.join("current"), sub.as_bytes())?;
    // Older snapshots go on a best-effort basis: `sub` is current now, whatever happens.
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if e.file_type().is_ok_and(|t| t.is_dir()) && name != sub && name.starts_with("snap-") {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

/// How often a snapshot that could not be written is tried again.
const SNAPSHOT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// What a snapshot build copies between two applies, to write out afterwards.
pub struct HeadSnapshotBuilder {
    captured: Option<(HeadSnapshot, Meta)>,
    dir: PathBuf,
    stats: Arc<ReplicaStats>,
}

impl RaftSnapshotBuilder<ShardConfig> for HeadSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<ShardConfig>, StorageError<u64>> {
        let (snap, meta) = self
            .captured
            .take()
            .ok_or_else(|| snap_err(None, "a snapshot builder builds once"))?;
        let started = std::time::Instant::now();
        let snap = Arc::new(snap);
        let sub = format!("snap-{}", meta.snapshot_id);
        // A snapshot that cannot be written (a full disk) is tried again until it is:
        // openraft stops a group for good at a storage error, while the group can go on
        // without this snapshot (its log is kept until one is written). Applies go on
        // meanwhile: openraft builds snapshots in a task of their own.
        let mut failures = 0u64;
        let path = loop {
            let (dir, m, snap, s) = (self.dir.clone(), meta.clone(), snap.clone(), sub.clone());
            let written = tokio::task::spawn_blocking(move || -> io::Result<PathBuf> {
                let written = checkpoint::write(&dir.join(&s), &snap)
                    .and_then(|path| commit_snapshot(&dir, &s, &m, &path).map(|()| path));
                let current = fs::read_to_string(dir.join("current")).unwrap_or_default();
                if written.is_err() && current.trim() != s {
                    let _ = fs::remove_dir_all(dir.join(&s));
                }
                written
            })
            .await
            .map_err(|e| snap_err(Some(&meta), e))?;
            match written {
                Ok(path) => {
                    if failures > 0 {
                        info!(dir = %self.dir.display(), snapshot = %meta.snapshot_id, failures, "the snapshot was written after all");
                    }
                    break path;
                }
                Err(e) => {
                    if failures == 0 {
                        warn!(dir = %self.dir.display(), snapshot = %meta.snapshot_id, error = %e, "writing a snapshot failed; trying again every second (the group goes on, keeping its log)");
                    }
                    failures += 1;
                    tokio::time::sleep(SNAPSHOT_RETRY).await;
                }
            }
        };
        let bytes = fs::metadata(&path).map_or(0, |m| m.len());
        self.stats.snapshot_built(bytes, started.elapsed());
        Ok(Snapshot {
            meta,
            snapshot: Box::new(SnapshotFile { path }),
        })
    }
}

fn checkpoint_id(id: &Option<LogId<u64>>) -> checkpoint::LogId {
    id.as_ref()
        .map_or(checkpoint::LogId::default(), |l| checkpoint::LogId {
            term: l.leader_id.term,
            index: l.index,
        })
}

impl RaftStateMachine<ShardConfig> for HeadStateMachine {
    type SnapshotBuilder = HeadSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, Membership), StorageError<u64>> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyResult>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<ShardConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let head = self.head.get();
        let mut out = Vec::new();
        for e in entries {
            self.applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(ApplyResult::default()),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(ApplyResult::default());
                }
                EntryPayload::Normal(Command::Write(parts)) => {
                    // Head work is CPU: off the async workers, as every head append.
                    let results: Vec<WriteResult> = hearth_core::cpu::foreground(async {
                        parts.iter().map(|p| p.apply(&head)).collect()
                    })
                    .await;
                    let (written, rejected) = results.iter().fold((0, 0), |(w, r), o| {
                        (w + o.samples_written, r + o.samples_rejected)
                    });
                    self.stats
                        .samples_appended
                        .fetch_add(written, std::sync::atomic::Ordering::Relaxed);
                    self.stats
                        .samples_rejected
                        .fetch_add(rejected, std::sync::atomic::Ordering::Relaxed);
                    out.push(ApplyResult(results));
                }
                EntryPayload::Normal(Command::Control(rec)) => {
                    let head = head.clone();
                    hearth_core::cpu::foreground(async move {
                        crate::shipper::apply_control(&head, &rec)
                    })
                    .await;
                    out.push(ApplyResult::default());
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Called between applies: the copy is exactly the state at `applied`.
        let meta = Meta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: self.next_name("built"),
        };
        let snap = checkpoint::capture(&self.head.get(), checkpoint_id(&self.applied));
        HeadSnapshotBuilder {
            captured: Some((snap, meta)),
            dir: self.dir.clone(),
            stats: self.stats.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError<u64>> {
        Ok(Box::new(SnapshotFile {
            path: self.dir.join(self.next_name("incoming")),
        }))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError<u64>> {
        let dir = self.dir.clone();
        let opts = self.head_opts.clone();
        let m = meta.clone();
        let sub = self.next_name("snap");
        let received = snapshot.path;
        let head = tokio::task::spawn_blocking(move || -> io::Result<(Head, u64)> {
            // The received checkpoint becomes this group's snapshot, then its head.
            fs::create_dir_all(dir.join(&sub))?;
            let name = format!("checkpoint.{:020}", m.last_log_id.map_or(0, |l| l.index));
            let path = dir.join(&sub).join(name);
            // A file received into this group's directory is moved; any other (a
            // replica in the same process sent its own) is copied.
            if received.starts_with(&dir) {
                fs::rename(&received, &path)?;
            } else {
                fs::copy(&received, &path)?;
            }
            let head = Head::new(opts);
            if checkpoint::load_latest(&dir.join(&sub), &head)?.is_none() {
                return Err(io::Error::other(
                    "the received snapshot is not a readable checkpoint",
                ));
            }
            commit_snapshot(&dir, &sub, &m, &path)?;
            let bytes = fs::metadata(&path).map_or(0, |m| m.len());
            Ok((head, bytes))
        })
        .await
        .map_err(|e| snap_err(Some(meta), e))?
        .map_err(|e| snap_err(Some(meta), e))?;
        let (head, bytes) = head;
        self.stats.snapshot_installed(bytes);
        self.head.replace(head);
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        info!(dir = %self.dir.display(), applied = ?self.applied, "installed group snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<ShardConfig>>, StorageError<u64>> {
        let Some(current) = self.current().map_err(sm_err)? else {
            return Ok(None);
        };
        let path = self
            .dir
            .join(current.checkpoint_dir())
            .join(&current.checkpoint);
        Ok(Some(Snapshot {
            meta: current.meta,
            snapshot: Box::new(SnapshotFile { path }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::RaftSnapshotBuilder;

    /// A snapshot that cannot be written (here its directory is briefly a file, which
    /// fails as a full disk does, even for root) is written once it can be, instead of
    /// failing the build (which openraft takes as fatal for the group).
    #[tokio::test]
    async fn a_snapshot_that_cannot_be_written_is_tried_until_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("group");
        let mut sm = HeadStateMachine::open(&dir, HeadOptions::default()).unwrap();
        let mut builder = sm.get_snapshot_builder().await;
        let aside = tmp.path().join("aside");
        fs::rename(&dir, &aside).unwrap();
        fs::write(&dir, b"not a directory").unwrap();
        let build = tokio::spawn(async move { builder.build_snapshot().await });
        tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
        assert!(
            !build.is_finished(),
            "the build gave up or wrote somewhere else"
        );
        fs::remove_file(&dir).unwrap();
        fs::rename(&aside, &dir).unwrap();
        let snap = build
            .await
            .unwrap()
            .expect("written once the directory is back");
        let current = fs::read_to_string(dir.join("current")).unwrap();
        assert_eq!(current.trim(), format!("snap-{}", snap.meta.snapshot_id));
        // The state machine opens from it.
        HeadStateMachine::open(&dir, HeadOptions::default()).unwrap();
    }
}
