//! `raft::Storage` on tern's files: the log ([`RaftLog`]), the state file ([`StateFile`]) and the
//! snapshot files ([`Snapshots`]) of one node's directory.
//!
//! Persisting is synchronous: [`NodeStorage::persist`] returns once the entries and the term and
//! vote are synced, and the node sends the messages that acknowledge them (votes, append
//! responses) only after it returns.

use crate::error::{ClusterError, Result};
use crate::log::{LogConfig, RaftLog, Recovered};
use crate::snapshot::Snapshots;
use crate::state::{DurableState, StateFile};
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use std::path::{Path, PathBuf};
use tern_store::Io;

/// The directory of the log's segment files inside a node's directory.
pub const LOG_DIR: &str = "log";

/// One node's consensus storage.
#[derive(Debug)]
pub struct NodeStorage {
    dir: PathBuf,
    log: RaftLog,
    state: StateFile,
    /// The state as Raft last gave it; the commit index is stored with the next term or vote
    /// change (a lower commit after a restart is learned again from the leader).
    current: DurableState,
    snapshots: Snapshots,
}

/// What a node found when it opened its storage.
#[derive(Debug)]
pub struct Opened {
    /// The storage.
    pub storage: NodeStorage,
    /// The last snapshot's data, if there is one.
    pub snapshot: Option<Vec<u8>>,
    /// What the log's recovery found.
    pub recovered: Recovered,
}

impl NodeStorage {
    /// Open (or create) the storage in `dir` of a cluster whose members are `voters`.
    ///
    /// # Errors
    /// A file is damaged or unreadable, or the directory belongs to a cluster with other members.
    pub fn open(io: Io, dir: &Path, log_config: LogConfig, voters: &[u64]) -> Result<Opened> {
        let storage = io.storage.clone();
        storage
            .create_dir_all(dir)
            .map_err(tern_store::io_error(dir, "create node directory"))?;
        let initial = DurableState {
            voters: voters.to_vec(),
            ..DurableState::default()
        };
        let state = StateFile::open(&storage, dir, initial)?;
        let current = state.state().clone();
        if current.voters != voters {
            return Err(ClusterError::Config(format!(
                "{} belongs to a cluster of members {:?}, not {voters:?}",
                dir.display(),
                current.voters
            )));
        }
        let snapshots = Snapshots::new(storage, dir);
        let snapshot = if current.snapshot_index > 0 {
            let (term, data) = snapshots.read(current.snapshot_index)?;
            if term != current.snapshot_term {
                return Err(ClusterError::CorruptState {
                    path: dir.join(crate::snapshot::snapshot_file_name(current.snapshot_index)),
                    reason: format!(
                        "snapshot of term {term} where the state file says {}",
                        current.snapshot_term
                    ),
                });
            }
            Some(data)
        } else {
            None
        };
        snapshots.remove_all_but(current.snapshot_index)?;
        let (log, recovered) = RaftLog::open(
            io,
            &dir.join(LOG_DIR),
            log_config,
            current.log_start,
            current.snapshot_index,
        )?;
        if let Some(damage) = &recovered.damage {
            tracing::warn!("cluster log: cut a torn tail: {damage}");
        }
        Ok(Opened {
            storage: Self {
                dir: dir.to_path_buf(),
                log,
                state,
                current,
                snapshots,
            },
            snapshot,
            recovered,
        })
    }

    /// The log.
    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The state as last given (term, vote, commit, snapshot).
    pub fn state(&self) -> &DurableState {
        &self.current
    }

    /// The node's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Make `entries` and the term and vote of `hard_state` durable.
    ///
    /// # Errors
    /// A write or sync failed: nothing of this may be acknowledged.
    pub fn persist(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<()> {
        if !entries.is_empty() {
            self.log.append(entries)?;
            self.log.sync()?;
        }
        if let Some(hard_state) = hard_state {
            let changed =
                hard_state.term != self.current.term || hard_state.vote != self.current.vote;
            self.current.term = hard_state.term;
            self.current.vote = hard_state.vote;
            self.current.commit = self.current.commit.max(hard_state.commit);
            if changed {
                self.state.store(&self.current)?;
            }
        }
        Ok(())
    }

    /// Note a higher commit index (stored lazily, see [`Self::persist`]).
    pub fn set_commit(&mut self, commit: u64) {
        self.current.commit = self.current.commit.max(commit);
    }

    /// Store the state as it is now (the commit index included): at a clean stop.
    ///
    /// # Errors
    /// The write or sync failed.
    pub fn flush_state(&mut self) -> Result<()> {
        self.state.store(&self.current)
    }

    /// Keep a snapshot of this node's own service at `index` (applied, of `term`) and drop the
    /// log before it.
    ///
    /// # Errors
    /// A file cannot be written or deleted.
    pub fn save_snapshot(&mut self, index: u64, term: u64, data: &[u8]) -> Result<()> {
        self.snapshots.write(index, term, data)?;
        let start = self.log.start_after(index);
        self.current.snapshot_index = index;
        self.current.snapshot_term = term;
        self.current.commit = self.current.commit.max(index);
        self.current.log_start = start;
        self.state.store(&self.current)?;
        self.log.compact(index, start)?;
        self.snapshots.remove_all_but(index)?;
        Ok(())
    }

    /// Replace the log with a snapshot from the leader.
    ///
    /// # Errors
    /// A file cannot be written or deleted.
    pub fn install(&mut self, snapshot: &Snapshot) -> Result<()> {
        let metadata = snapshot.get_metadata();
        self.snapshots
            .write(metadata.index, metadata.term, &snapshot.data)?;
        let start = self.log.fresh_start();
        self.current.term = self.current.term.max(metadata.term);
        self.current.commit = self.current.commit.max(metadata.index);
        self.current.snapshot_index = metadata.index;
        self.current.snapshot_term = metadata.term;
        self.current.log_start = start;
        self.state.store(&self.current)?;
        self.log.reset(metadata.index, start)?;
        self.snapshots.remove_all_but(metadata.index)?;
        Ok(())
    }

    fn conf_state(&self) -> ConfState {
        ConfState {
            voters: self.current.voters.clone(),
            ..ConfState::default()
        }
    }
}

fn store_error(error: ClusterError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(error)))
}

impl raft::Storage for NodeStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let hard_state = HardState {
            term: self.current.term,
            vote: self.current.vote,
            commit: self.current.commit.min(self.log.last_index()),
            ..HardState::default()
        };
        Ok(RaftState {
            hard_state,
            conf_state: self.conf_state(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.log.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.log.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut entries: Vec<Entry> = self.log.entries(low, high).cloned().collect();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index == self.current.snapshot_index {
            return Ok(self.current.snapshot_term);
        }
        if index < self.log.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.log.entry(index) {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.log.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.log.last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let index = self.current.snapshot_index;
        if index == 0 || index < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let (term, data) = self.snapshots.read(index).map_err(store_error)?;
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        let metadata = snapshot.mut_metadata();
        metadata.index = index;
        metadata.term = term;
        metadata.set_conf_state(self.conf_state());
        Ok(snapshot)
    }
}
