//! A node's durable consensus state: Raft's hard state (term, vote, commit), the members, the
//! last snapshot's index and term, and where the log starts in its files. Drawn byte by byte in
//! `docs/cluster.md`.
//!
//! The file `raft-state.tern` holds two slots of [`SLOT_LENGTH`] bytes; each write goes to the
//! slot the last one did not use and is synced before it counts, so a torn write damages only the
//! slot being written and the other still holds the state before it. Reading takes the valid
//! slot (magic, version, CRC32C) with the higher sequence number.
//!
//! A new file is written whole under a temporary name ([`STATE_TEMP_FILE`]), synced, renamed to
//! its name and the directory synced: a crash while creating it leaves no state file (a fresh
//! start, the temporary removed) or a complete one, never a file no start accepts.

use crate::error::{ClusterError, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tern_store::crc::crc32c_parts;
use tern_store::storage::{OpenOptions, Storage, StorageFile};

/// The state file's name in the node's directory.
pub const STATE_FILE: &str = "raft-state.tern";
/// The temporary name a new state file is written under before it is renamed.
pub const STATE_TEMP_FILE: &str = "raft-state.tern.tmp";
/// Bytes of each slot.
pub const SLOT_LENGTH: usize = 512;
/// First four bytes of a slot: "TRNS" read as a little-endian u32.
pub const STATE_MAGIC: u32 = u32::from_le_bytes(*b"TRNS");
/// The slot layout's version.
pub const STATE_VERSION: u16 = 1;
/// The most members a cluster has.
pub const MAX_MEMBERS: usize = 7;
const VOTERS_OFFSET: usize = 64;
const CRC_OFFSET: usize = SLOT_LENGTH - 4;

/// What a node keeps across restarts besides its log and snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableState {
    /// Raft's current term.
    pub term: u64,
    /// Who this node voted for in `term` (0: nobody).
    pub vote: u64,
    /// The highest index known committed.
    pub commit: u64,
    /// The last snapshot's index (0: none).
    pub snapshot_index: u64,
    /// The last snapshot's term.
    pub snapshot_term: u64,
    /// Where the valid log starts in its files.
    pub log_start: i64,
    /// The member ids.
    pub voters: Vec<u64>,
}

impl DurableState {
    /// The slot bytes for this state, written with `sequence`.
    pub fn encode(&self, sequence: u64) -> [u8; SLOT_LENGTH] {
        assert!(self.voters.len() <= MAX_MEMBERS, "at most 7 members");
        let mut slot = [0u8; SLOT_LENGTH];
        slot[0..4].copy_from_slice(&STATE_MAGIC.to_le_bytes());
        slot[4..6].copy_from_slice(&STATE_VERSION.to_le_bytes());
        slot[6..8].copy_from_slice(&(self.voters.len() as u16).to_le_bytes());
        let fields = [
            sequence,
            self.term,
            self.vote,
            self.commit,
            self.snapshot_index,
            self.snapshot_term,
            self.log_start as u64,
        ];
        for (i, field) in fields.iter().enumerate() {
            slot[8 + i * 8..16 + i * 8].copy_from_slice(&field.to_le_bytes());
        }
        for (i, voter) in self.voters.iter().enumerate() {
            let at = VOTERS_OFFSET + i * 8;
            slot[at..at + 8].copy_from_slice(&voter.to_le_bytes());
        }
        let crc = crc32c_parts(&[&slot[..CRC_OFFSET]]);
        slot[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        slot
    }

    /// The state and sequence in a slot.
    ///
    /// # Errors
    /// What is wrong with the slot.
    pub fn decode(slot: &[u8]) -> std::result::Result<(Self, u64), String> {
        if slot.len() < SLOT_LENGTH {
            return Err(format!("slot of {} bytes", slot.len()));
        }
        let u64_at = |at: usize| u64::from_le_bytes(slot[at..at + 8].try_into().expect("8"));
        let magic = u32::from_le_bytes(slot[0..4].try_into().expect("4"));
        if magic != STATE_MAGIC {
            return Err(format!("magic {magic:#010x}"));
        }
        let crc = u32::from_le_bytes(slot[CRC_OFFSET..SLOT_LENGTH].try_into().expect("4"));
        if crc != crc32c_parts(&[&slot[..CRC_OFFSET]]) {
            return Err("checksum mismatch".into());
        }
        let version = u16::from_le_bytes([slot[4], slot[5]]);
        if version != STATE_VERSION {
            return Err(format!(
                "version {version} (this build reads {STATE_VERSION})"
            ));
        }
        let count = usize::from(u16::from_le_bytes([slot[6], slot[7]]));
        if count > MAX_MEMBERS {
            return Err(format!("{count} members"));
        }
        let state = Self {
            term: u64_at(16),
            vote: u64_at(24),
            commit: u64_at(32),
            snapshot_index: u64_at(40),
            snapshot_term: u64_at(48),
            log_start: u64_at(56) as i64,
            voters: (0..count).map(|i| u64_at(VOTERS_OFFSET + i * 8)).collect(),
        };
        Ok((state, u64_at(8)))
    }
}

/// The state file of one node.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    sequence: u64,
    state: DurableState,
}

impl StateFile {
    /// Open the state file in `dir`; a new node (no file) starts from `initial`, written (under
    /// a temporary name, then renamed) before this returns. A temporary left by a creation that
    /// did not finish is removed.
    ///
    /// # Errors
    /// The file cannot be read or written, or it exists and neither slot is valid.
    pub fn open(storage: &Arc<dyn Storage>, dir: &Path, initial: DurableState) -> Result<Self> {
        let path = dir.join(STATE_FILE);
        let temporary = dir.join(STATE_TEMP_FILE);
        if storage.exists(&temporary) {
            storage
                .remove_file(&temporary)
                .map_err(tern_store::io_error(
                    &temporary,
                    "remove unfinished state file",
                ))?;
            storage
                .sync_dir(dir)
                .map_err(tern_store::io_error(dir, "sync node directory"))?;
        }
        let file = if storage.exists(&path) {
            let file = storage
                .open(&path, OpenOptions::read_write())
                .map_err(tern_store::io_error(&path, "open state file"))?;
            let length = file
                .len()
                .map_err(tern_store::io_error(&path, "stat state file"))?;
            // Empty: a file an older build created and never wrote (nothing was acknowledged).
            (length > 0).then_some(file)
        } else {
            None
        };
        let Some(file) = file else {
            return Self::create(storage, dir, path, temporary, &initial);
        };
        let mut bytes = vec![0u8; 2 * SLOT_LENGTH];
        let read = file
            .read_full_at(&mut bytes, 0)
            .map_err(tern_store::io_error(&path, "read state file"))?;
        bytes.truncate(read);
        let slots: Vec<_> = bytes
            .chunks(SLOT_LENGTH)
            .map(DurableState::decode)
            .collect();
        let best = slots
            .iter()
            .filter_map(|slot| slot.as_ref().ok())
            .max_by_key(|(_, sequence)| *sequence)
            .cloned();
        match best {
            Some((state, sequence)) => Ok(Self {
                path,
                file,
                sequence,
                state,
            }),
            None => Err(ClusterError::CorruptState {
                path,
                reason: format!(
                    "no valid slot ({})",
                    slots
                        .iter()
                        .map(|slot| slot.as_ref().err().cloned().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            }),
        }
    }

    /// Write a new state file holding `initial`: under `temporary`, synced, renamed to `path`,
    /// the directory synced.
    fn create(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        path: PathBuf,
        temporary: PathBuf,
        initial: &DurableState,
    ) -> Result<Self> {
        let file = storage
            .open(&temporary, OpenOptions::create_new())
            .map_err(tern_store::io_error(&temporary, "create state file"))?;
        let mut state = Self {
            path: temporary,
            file,
            sequence: 0,
            state: initial.clone(),
        };
        state.store(initial)?;
        storage
            .rename(&state.path, &path)
            .map_err(tern_store::io_error(&path, "rename new state file"))?;
        state.path = path;
        storage
            .sync_dir(dir)
            .map_err(tern_store::io_error(dir, "sync node directory"))?;
        Ok(state)
    }

    /// The state last stored.
    pub fn state(&self) -> &DurableState {
        &self.state
    }

    /// Make `state` durable (written to the other slot and synced). Nothing is written when it
    /// equals the state stored.
    ///
    /// # Errors
    /// The write or sync failed: the state is what it was before.
    pub fn store(&mut self, state: &DurableState) -> Result<()> {
        if self.sequence > 0 && *state == self.state {
            return Ok(());
        }
        let sequence = self.sequence + 1;
        let offset = (sequence % 2) * SLOT_LENGTH as u64;
        let slot = state.encode(sequence);
        self.file
            .write_all_at(&slot, offset)
            .map_err(tern_store::io_error(&self.path, "write state file"))?;
        self.file
            .sync_data()
            .map_err(tern_store::io_error(&self.path, "sync state file"))?;
        self.sequence = sequence;
        self.state = state.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::SimDisk;

    fn sample() -> DurableState {
        DurableState {
            term: 5,
            vote: 2,
            commit: 40,
            snapshot_index: 30,
            snapshot_term: 4,
            log_start: 1 << 20,
            voters: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_slot_round_trips_and_names_damage() {
        let slot = sample().encode(9);
        assert_eq!(DurableState::decode(&slot), Ok((sample(), 9)));
        for at in [0, 5, 17, 70, CRC_OFFSET] {
            let mut damaged = slot;
            damaged[at] ^= 1;
            assert!(DurableState::decode(&damaged).is_err(), "flip at {at}");
        }
    }

    #[test]
    fn the_state_survives_a_crash_and_a_torn_write_keeps_the_slot_before() {
        let disk = Arc::new(SimDisk::new());
        let storage: Arc<dyn Storage> = disk.clone();
        let dir = Path::new("/node");
        storage.create_dir_all(dir).expect("dir");
        let mut file = StateFile::open(&storage, dir, DurableState::default()).expect("new");
        file.store(&sample()).expect("store");
        let crashed: Arc<dyn Storage> = Arc::new(disk.crash());
        let reopened = StateFile::open(&crashed, dir, DurableState::default()).expect("reopen");
        assert_eq!(reopened.state(), &sample());

        // A torn write of the next state: the slot being written is damaged, the other holds
        // the state before.
        let mut next = sample();
        next.term = 6;
        let torn_disk = Arc::new(SimDisk::new());
        let torn: Arc<dyn Storage> = torn_disk.clone();
        torn.create_dir_all(dir).expect("dir");
        let mut file = StateFile::open(&torn, dir, DurableState::default()).expect("new");
        file.store(&sample()).expect("store");
        torn_disk.freeze_after_syncs(0);
        let _ = file.store(&next);
        // Of the slot's changed bytes only the first (the sequence) reached the device.
        let after: Arc<dyn Storage> = Arc::new(torn_disk.crash_torn(1));
        let reopened = StateFile::open(&after, dir, DurableState::default()).expect("reopen");
        assert_eq!(reopened.state(), &sample());
    }

    /// A file system that makes a new name durable as soon as it is made (a real one may, at any
    /// moment before the directory is synced): the worst case for a file's first write.
    #[derive(Debug)]
    struct EagerNames(Arc<SimDisk>);

    impl Storage for EagerNames {
        fn open(&self, path: &Path, options: OpenOptions) -> std::io::Result<Arc<dyn StorageFile>> {
            let new = !self.0.exists(path);
            let file = self.0.open(path, options)?;
            if new {
                self.0.sync_dir(path.parent().expect("in a directory"))?;
            }
            Ok(file)
        }

        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            self.0.rename(from, to)?;
            self.0.sync_dir(to.parent().expect("in a directory"))
        }

        fn remove_file(&self, path: &Path) -> std::io::Result<()> {
            self.0.remove_file(path)
        }

        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            self.0.sync_dir(dir)
        }

        fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
            self.0.create_dir_all(dir)
        }

        fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
            self.0.list(dir)
        }

        fn exists(&self, path: &Path) -> bool {
            self.0.exists(path)
        }
    }

    #[test]
    fn a_crash_anywhere_in_the_first_write_leaves_no_file_or_a_valid_one() {
        let dir = Path::new("/node");
        for eager in [false, true] {
            // Every point of the creation: the disk stops making anything durable after `syncs`
            // syncs, and the power goes with some of the bytes written since on the device.
            let mut syncs = 0;
            loop {
                for torn in [0, 1, 7, 100, 511, 512, 513, 1024] {
                    let disk = Arc::new(SimDisk::new());
                    let storage: Arc<dyn Storage> = if eager {
                        Arc::new(EagerNames(disk.clone()))
                    } else {
                        disk.clone()
                    };
                    storage.create_dir_all(dir).expect("dir");
                    disk.freeze_after_syncs(syncs);
                    StateFile::open(&storage, dir, sample()).expect("created");
                    let crashed: Arc<dyn Storage> = Arc::new(if torn == 0 {
                        disk.crash()
                    } else {
                        disk.crash_torn(torn)
                    });
                    let at = format!("eager names {eager}, {syncs} syncs, {torn} bytes torn");
                    let reopened = StateFile::open(&crashed, dir, DurableState::default())
                        .unwrap_or_else(|error| panic!("{at}: {error}"));
                    assert!(
                        *reopened.state() == sample()
                            || *reopened.state() == DurableState::default(),
                        "{at}: {:?}",
                        reopened.state()
                    );
                    assert!(!crashed.exists(&dir.join(STATE_TEMP_FILE)), "{at}");
                    assert!(crashed.exists(&dir.join(STATE_FILE)), "{at}");
                }
                let whole = Arc::new(SimDisk::new());
                let storage: Arc<dyn Storage> = if eager {
                    Arc::new(EagerNames(whole.clone()))
                } else {
                    whole.clone()
                };
                storage.create_dir_all(dir).expect("dir");
                StateFile::open(&storage, dir, sample()).expect("created");
                if syncs >= whole.syncs() {
                    break;
                }
                syncs += 1;
            }
        }
        // A creation that was not cut keeps its state across a crash.
        let disk = Arc::new(SimDisk::new());
        let storage: Arc<dyn Storage> = disk.clone();
        storage.create_dir_all(dir).expect("dir");
        StateFile::open(&storage, dir, sample()).expect("created");
        let crashed: Arc<dyn Storage> = Arc::new(disk.crash());
        let reopened = StateFile::open(&crashed, dir, DurableState::default()).expect("reopen");
        assert_eq!(reopened.state(), &sample());
    }

    #[test]
    fn a_file_with_no_valid_slot_is_refused_with_its_name() {
        let storage: Arc<dyn Storage> = Arc::new(SimDisk::new());
        let dir = Path::new("/node");
        storage.create_dir_all(dir).expect("dir");
        tern_store::storage::write_whole(&*storage, &dir.join(STATE_FILE), &[7u8; 1024])
            .expect("garbage");
        let error = StateFile::open(&storage, dir, DurableState::default()).expect_err("refused");
        assert!(error.to_string().contains("raft-state.tern"), "{error}");
        assert!(error.to_string().contains("no valid slot"), "{error}");
    }
}
