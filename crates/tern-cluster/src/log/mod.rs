//! The Raft log on segment files of tern's frame format: one data frame per entry (see
//! [`codec`]), written by the archive's [`SegmentWriter`] and read by its [`RecordingReader`], so
//! the CRC32C of every frame, torn-tail detection and the crash-tested write path are the
//! archive's.
//!
//! The entries after the last snapshot are also kept in memory ([`RaftLog::entries`]); the files
//! are what survives a crash. A conflicting suffix is cut from the files before the new entries
//! are written (the cut is the archive's truncate: later segments deleted highest first, the
//! segment holding the cut zeroed from it), so the files always hold one consistent log.

pub mod codec;

use crate::error::{ClusterError, Result};
use codec::{decode_entry, encode_entry, LOG_RECORDING_ID, LOG_STREAM_ID};
use raft::prelude::Entry;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use tern_store::descriptor::{RecordState, RecordingDescriptor, NULL_POSITION};
use tern_store::frame::{FrameProblem, HEADER_LENGTH};
use tern_store::segment::segment_file_name;
use tern_store::segment_writer::erase_segment_from;
use tern_store::{
    list_segments_on, Io, RecordingReader, SegmentGeometry, SegmentWriter, WriteMode,
};

/// The shape of the log's files.
#[derive(Debug, Clone, Copy)]
pub struct LogConfig {
    /// Term length of the log's frames (a power of two, 64 KiB .. 1 GiB): the largest entry.
    pub term_length: i32,
    /// Segment file length (a power-of-two multiple of the term length).
    pub segment_length: i32,
    /// How segments are written.
    pub mode: WriteMode,
    /// Bytes of each write (at least the largest entry's frame).
    pub buffer_length: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            term_length: 16 << 20,
            segment_length: 128 << 20,
            mode: WriteMode::Buffered,
            buffer_length: (2 << 20) + 4096,
        }
    }
}

impl LogConfig {
    /// The largest entry (context plus data) a frame of this log holds.
    pub fn max_entry_length(&self) -> usize {
        (self.term_length as usize).min(self.buffer_length)
            - HEADER_LENGTH
            - codec::ENTRY_HEADER_LENGTH
    }
}

/// What [`RaftLog::open`] found in the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// What was found where the valid frames end, when it was not clean zeroes: a torn tail (a
    /// write the crash interrupted, never synced, so never acknowledged), cut away.
    pub damage: Option<String>,
    /// Segment files before the log's start deleted (a compaction the crash interrupted).
    pub stale_segments: usize,
}

/// The Raft log of one node.
pub struct RaftLog {
    io: Io,
    dir: PathBuf,
    config: LogConfig,
    writer: Option<SegmentWriter>,
    /// Where the valid log starts in the files (a segment base).
    start_position: i64,
    /// The index just before `entries[0]` (the snapshot's index).
    after_index: u64,
    entries: VecDeque<Entry>,
    /// The stream position of each entry's frame.
    positions: VecDeque<i64>,
    /// The position after the last entry.
    end: i64,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for RaftLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLog")
            .field("dir", &self.dir)
            .field("start_position", &self.start_position)
            .field("after_index", &self.after_index)
            .field("entries", &self.entries.len())
            .field("end", &self.end)
            .finish()
    }
}

fn descriptor(config: &LogConfig, start_position: i64) -> RecordingDescriptor {
    RecordingDescriptor {
        recording_id: LOG_RECORDING_ID,
        state: RecordState::Valid,
        start_timestamp_ns: 0,
        stop_timestamp_ns: 0,
        start_position,
        stop_position: NULL_POSITION,
        initial_term_id: 0,
        segment_length: config.segment_length,
        term_length: config.term_length,
        mtu_length: config.term_length.min(1 << 24),
        session_id: 0,
        stream_id: LOG_STREAM_ID,
        stripped_channel: "tern:cluster-log".into(),
        original_channel: "tern:cluster-log".into(),
        source_identity: String::new(),
    }
}

impl RaftLog {
    /// Open the log in `dir` (created if missing), whose valid part starts at `start_position`
    /// (a segment base) and holds the entries after `after_index` (entries at or before it, left
    /// from before a compaction, are skipped). Segments before the start are deleted, a torn tail
    /// is cut, and the entries are read into memory.
    ///
    /// # Errors
    /// A file cannot be read or changed, or the frames do not form one log: an entry's index
    /// does not follow the one before it, or a frame is damaged before a later segment's data.
    pub fn open(
        io: Io,
        dir: &Path,
        config: LogConfig,
        start_position: i64,
        after_index: u64,
    ) -> Result<(Self, Recovered)> {
        let storage = io.storage.clone();
        storage
            .create_dir_all(dir)
            .map_err(tern_store::io_error(dir, "create log directory"))?;
        let segment_length = i64::from(config.segment_length);
        let bases = list_segments_on(&storage, dir)?
            .remove(&LOG_RECORDING_ID)
            .unwrap_or_default();
        let mut recovered = Recovered::default();
        for base in bases
            .iter()
            .filter(|base| **base + segment_length <= start_position)
        {
            remove_segment(&io, dir, *base)?;
            recovered.stale_segments += 1;
        }
        let live: Vec<i64> = bases
            .into_iter()
            .filter(|base| *base + segment_length > start_position)
            .collect();
        let mut log = Self {
            io,
            dir: dir.to_path_buf(),
            config,
            writer: None,
            start_position,
            after_index,
            entries: VecDeque::new(),
            positions: VecDeque::new(),
            end: start_position,
            scratch: Vec::new(),
        };
        if let Some(last) = live.last().copied() {
            log.read_files(&live, &mut recovered)?;
            // Nothing may follow the end in the files: the writer resumes there.
            for base in live
                .iter()
                .rev()
                .filter(|base| **base > log.base_of(log.end))
            {
                remove_segment(&log.io, dir, *base)?;
            }
            let base = log.base_of(log.end);
            if base <= last {
                erase_segment_from(
                    &log.io.storage,
                    &dir.join(segment_file_name(LOG_RECORDING_ID, base)),
                    (log.end - base) as u64,
                    segment_length as u64,
                )?;
            }
        }
        log.writer = Some(log.new_writer()?);
        Ok((log, recovered))
    }

    fn base_of(&self, position: i64) -> i64 {
        tern_store::segment::segment_base(
            self.start_position,
            position,
            i64::from(self.config.term_length),
            i64::from(self.config.segment_length),
        )
    }

    fn segment_end_of(&self, base: i64) -> i64 {
        base + i64::from(self.config.segment_length)
    }

    fn geometry(&self) -> SegmentGeometry {
        SegmentGeometry {
            dir: self.dir.clone(),
            recording_id: LOG_RECORDING_ID,
            start_position: self.start_position,
            term_length: i64::from(self.config.term_length),
            segment_length: i64::from(self.config.segment_length),
        }
    }

    fn new_writer(&self) -> Result<SegmentWriter> {
        let writer = if self.end == self.start_position
            && !self
                .io
                .storage
                .exists(&self.geometry().path_of(self.start_position))
        {
            SegmentWriter::new_on(
                &self.io,
                self.geometry(),
                self.config.mode,
                false,
                self.config.buffer_length,
            )?
        } else {
            SegmentWriter::resume_on(
                &self.io,
                self.geometry(),
                self.end,
                self.config.mode,
                false,
                self.config.buffer_length,
            )?
        };
        Ok(writer)
    }

    fn read_files(&mut self, bases: &[i64], recovered: &mut Recovered) -> Result<()> {
        let descriptor = descriptor(&self.config, self.start_position);
        let mut reader = RecordingReader::new_on(&self.io.storage, &self.dir, &descriptor);
        let last = *bases.last().expect("segments");
        let mut problem: Option<ClusterError> = None;
        let from = self.start_position;
        let to = self.segment_end_of(last);
        let (end, stop) = reader.scan(from, to, |frame| {
            if frame.header.is_padding() {
                return true;
            }
            let entry = match decode_entry(frame.payload(), frame.header.reserved_value) {
                Ok(entry) => entry,
                Err(error) => {
                    problem = Some(ClusterError::CorruptLog {
                        position: frame.position,
                        reason: error.to_string(),
                    });
                    return false;
                }
            };
            if entry.index <= self.after_index {
                return true;
            }
            let expected = self.after_index + self.entries.len() as u64 + 1;
            if entry.index != expected {
                problem = Some(ClusterError::CorruptLog {
                    position: frame.position,
                    reason: format!("entry index {} where {expected} was expected", entry.index),
                });
                return false;
            }
            if let Some(previous) = self.entries.back() {
                if entry.term < previous.term {
                    problem = Some(ClusterError::CorruptLog {
                        position: frame.position,
                        reason: format!(
                            "entry {} of term {} after term {}",
                            entry.index, entry.term, previous.term
                        ),
                    });
                    return false;
                }
            }
            self.positions.push_back(frame.position);
            self.entries.push_back(entry);
            true
        })?;
        if let Some(problem) = problem {
            return Err(problem);
        }
        if let Some(stop) = stop {
            let clean = matches!(stop.problem, FrameProblem::Empty | FrameProblem::EndOfFile);
            if !clean {
                if self.base_of(end) < last {
                    // Damage with whole segments after it is not a torn tail.
                    return Err(ClusterError::CorruptLog {
                        position: end,
                        reason: format!(
                            "{} (segment {} follows)",
                            stop.to_error(),
                            segment_file_name(LOG_RECORDING_ID, last)
                        ),
                    });
                }
                recovered.damage = Some(stop.to_string());
            }
        }
        self.end = end;
        Ok(())
    }

    /// The index of the first entry (one after the snapshot's).
    pub fn first_index(&self) -> u64 {
        self.after_index + 1
    }

    /// The index of the last entry (the snapshot's when there is none after it).
    pub fn last_index(&self) -> u64 {
        self.after_index + self.entries.len() as u64
    }

    /// The entry at `index`, if the log holds it.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// The entries from `low` to `high` (exclusive), which must be within the log.
    pub fn entries(&self, low: u64, high: u64) -> impl Iterator<Item = &Entry> {
        let first = self.first_index();
        self.entries
            .range((low - first) as usize..(high - first) as usize)
    }

    /// Where the valid log starts in the files.
    pub fn start_position(&self) -> i64 {
        self.start_position
    }

    /// The position after the last entry.
    pub fn end_position(&self) -> i64 {
        self.end
    }

    fn writer(&mut self) -> Result<&mut SegmentWriter> {
        match self.writer.as_mut() {
            Some(writer) => Ok(writer),
            None => Err(ClusterError::LogBroken),
        }
    }

    /// Append `entries` (consecutive). When the first one's index is already in the log, the
    /// log from it on is cut from the files first (a conflicting suffix, replaced). Not durable
    /// until [`Self::sync`].
    ///
    /// # Errors
    /// An entry does not follow the log, is too long, or a file cannot be written.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index <= self.after_index || first.index > self.last_index() + 1 {
            return Err(ClusterError::Gap {
                index: first.index,
                first: self.first_index(),
                last: self.last_index(),
            });
        }
        if first.index <= self.last_index() {
            self.cut_from(first.index)?;
        }
        let max = self.config.max_entry_length();
        for entry in entries {
            let length = entry.context.len() + entry.data.len();
            if length > max {
                return Err(ClusterError::EntryTooLong { length, max });
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            let encoded = encode_entry(entry, self.end, self.config.term_length, &mut scratch);
            let end = self.end;
            let result = (|| {
                let writer = self.writer()?;
                if encoded.padding > 0 {
                    writer.append(&scratch[..encoded.padding], end)?;
                }
                writer.append(&scratch[encoded.padding..], encoded.position)?;
                Ok::<_, ClusterError>(())
            })();
            self.scratch = scratch;
            if let Err(error) = result {
                // What was handed over may be half written: nothing more goes in.
                self.writer = None;
                return Err(error);
            }
            self.positions.push_back(encoded.position);
            self.entries.push_back(entry.clone());
            self.end = encoded.end;
        }
        Ok(())
    }

    /// Write and sync everything appended: durable when this returns.
    ///
    /// # Errors
    /// A write or sync failed; the log takes no more entries.
    pub fn sync(&mut self) -> Result<()> {
        let result = self.writer()?.sync();
        if result.is_err() {
            self.writer = None;
        }
        Ok(result?)
    }

    /// Cut the entries from `index` on, in memory and in the files (synced).
    fn cut_from(&mut self, index: u64) -> Result<()> {
        let offset = (index - self.first_index()) as usize;
        let position = self.positions[offset];
        // What comes before the cut must be on disk before the files are cut under the writer.
        self.sync()?;
        self.writer = None;
        let base = self.base_of(position);
        let bases = list_segments_on(&self.io.storage, &self.dir)?
            .remove(&LOG_RECORDING_ID)
            .unwrap_or_default();
        for later in bases.iter().rev().filter(|later| **later > base) {
            remove_segment(&self.io, &self.dir, *later)?;
        }
        erase_segment_from(
            &self.io.storage,
            &self.dir.join(segment_file_name(LOG_RECORDING_ID, base)),
            (position - base) as u64,
            self.config.segment_length as u64,
        )?;
        self.entries.truncate(offset);
        self.positions.truncate(offset);
        self.end = position;
        self.writer = Some(self.new_writer()?);
        Ok(())
    }

    /// The start position the log would have once the entries up to `index` are dropped: the
    /// base of the segment that holds entry `index + 1` (the end's segment when there is none).
    pub fn start_after(&self, index: u64) -> i64 {
        let position = self.entry_position(index + 1).unwrap_or(self.end);
        self.base_of(position).max(self.start_position)
    }

    fn entry_position(&self, index: u64) -> Option<i64> {
        let offset = index.checked_sub(self.first_index())?;
        self.positions.get(usize::try_from(offset).ok()?).copied()
    }

    /// Drop the entries up to `index` (a snapshot holds them) from memory, and delete the
    /// segment files before `start_position` (what [`Self::start_after`] gave, made durable by
    /// the caller first, so a crash never finds the start's segment missing).
    ///
    /// # Errors
    /// A file cannot be deleted.
    pub fn compact(&mut self, index: u64, start_position: i64) -> Result<()> {
        let index = index.min(self.last_index());
        while self.after_index < index {
            self.entries.pop_front();
            self.positions.pop_front();
            self.after_index += 1;
        }
        self.delete_before(start_position)
    }

    fn delete_before(&mut self, start_position: i64) -> Result<()> {
        let bases = list_segments_on(&self.io.storage, &self.dir)?
            .remove(&LOG_RECORDING_ID)
            .unwrap_or_default();
        for base in bases
            .iter()
            .filter(|base| **base + i64::from(self.config.segment_length) <= start_position)
        {
            remove_segment(&self.io, &self.dir, *base)?;
        }
        self.start_position = self.start_position.max(start_position);
        Ok(())
    }

    /// The position where a log that drops everything starts over: the next segment's base.
    pub fn fresh_start(&self) -> i64 {
        self.base_of(self.end) + i64::from(self.config.segment_length)
    }

    /// Drop every entry and start over empty after `index` (a snapshot from the leader replaces
    /// the log) at `start_position` ([`Self::fresh_start`], made durable by the caller first).
    ///
    /// # Errors
    /// A file cannot be deleted or created.
    pub fn reset(&mut self, index: u64, start_position: i64) -> Result<()> {
        self.writer = None;
        self.entries.clear();
        self.positions.clear();
        self.after_index = index;
        self.start_position = start_position;
        self.end = start_position;
        self.delete_before(start_position)?;
        self.writer = Some(self.new_writer()?);
        Ok(())
    }
}

fn remove_segment(io: &Io, dir: &Path, base: i64) -> Result<()> {
    let path = dir.join(segment_file_name(LOG_RECORDING_ID, base));
    match io.storage.remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(tern_store::io_error(&path, "delete log segment")(error).into()),
    }
    io.storage
        .sync_dir(dir)
        .map_err(tern_store::io_error(dir, "sync log directory"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tern_store::{SimDisk, Storage};

    fn config() -> LogConfig {
        LogConfig {
            term_length: 64 << 10,
            segment_length: 128 << 10,
            mode: WriteMode::Buffered,
            buffer_length: (64 << 10) + 4096,
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            // Sizes vary so entries cross terms (padding) and segments.
            data: vec![(index % 251) as u8; 100 + (index as usize * 37) % 3000].into(),
            ..Entry::default()
        }
    }

    fn open(disk: &Arc<SimDisk>, start: i64, after: u64) -> Result<(RaftLog, Recovered)> {
        let storage: Arc<dyn Storage> = disk.clone();
        RaftLog::open(
            Io::inline(storage),
            Path::new("/node/log"),
            config(),
            start,
            after,
        )
    }

    fn indexes_and_terms(log: &RaftLog) -> Vec<(u64, u64)> {
        log.entries(log.first_index(), log.last_index() + 1)
            .map(|entry| (entry.index, entry.term))
            .collect()
    }

    #[test]
    fn synced_entries_survive_a_crash_and_unsynced_ones_go_cleanly() {
        let disk = Arc::new(SimDisk::new());
        let (mut log, _) = open(&disk, 0, 0).expect("open");
        let entries: Vec<Entry> = (1..=200).map(|index| entry(index, 1)).collect();
        log.append(&entries[..150]).expect("append");
        log.sync().expect("sync");
        assert!(log.end_position() > 128 << 10, "crosses a segment");
        log.append(&entries[150..]).expect("append");
        log.writer().expect("writer").flush().expect("flush");
        for torn in [0, 1, 33, 5000] {
            let crashed = Arc::new(disk.crash_torn(torn));
            let (mut reopened, _) = open(&crashed, 0, 0).expect("reopen");
            // What was synced is there; of the rest, a prefix may have reached the disk (a
            // full segment is synced as it rolls), never a damaged or out-of-order entry.
            let last = reopened.last_index();
            assert!((150..=200).contains(&last), "torn {torn}: {last}");
            assert_eq!(
                reopened.entries(1, last + 1).cloned().collect::<Vec<_>>(),
                entries[..last as usize].to_vec()
            );
            // It goes on from there, and a second crash finds one log, nothing resurrected.
            let mut next = entry(last + 1, 2);
            next.data = b"after".to_vec().into();
            reopened.append(&[next.clone()]).expect("append after");
            reopened.sync().expect("sync");
            let (again, _) = open(&Arc::new(crashed.crash()), 0, 0).expect("again");
            assert_eq!(again.last_index(), last + 1);
            assert_eq!(again.entry(last + 1), Some(&next));
        }
    }

    #[test]
    fn a_conflicting_suffix_is_replaced_in_the_files() {
        let disk = Arc::new(SimDisk::new());
        let (mut log, _) = open(&disk, 0, 0).expect("open");
        let old: Vec<Entry> = (1..=120).map(|index| entry(index, 1)).collect();
        log.append(&old).expect("append");
        log.sync().expect("sync");
        let new: Vec<Entry> = (40..=60).map(|index| entry(index, 2)).collect();
        log.append(&new).expect("replace");
        log.sync().expect("sync");
        assert_eq!(log.last_index(), 60);
        let (reopened, _) = open(&Arc::new(disk.crash()), 0, 0).expect("reopen");
        let expected: Vec<(u64, u64)> = (1..=60)
            .map(|index| (index, if index < 40 { 1 } else { 2 }))
            .collect();
        assert_eq!(indexes_and_terms(&reopened), expected);
        // An append that leaves a gap, or reaches into the snapshot, is refused.
        let mut log = reopened;
        assert!(matches!(
            log.append(&[entry(70, 2)]),
            Err(ClusterError::Gap { index: 70, .. })
        ));
    }

    #[test]
    fn a_crash_in_the_middle_of_a_cut_leaves_a_prefix_of_the_old_log() {
        let disk = Arc::new(SimDisk::new());
        let (mut log, _) = open(&disk, 0, 0).expect("open");
        let old: Vec<Entry> = (1..=120).map(|index| entry(index, 1)).collect();
        log.append(&old).expect("append");
        log.sync().expect("sync");
        for syncs in 0..6 {
            let disk = Arc::new(disk.crash());
            let (mut log, _) = open(&disk, 0, 0).expect("open");
            disk.freeze_after_syncs(syncs);
            let _ = log.append(&[entry(10, 2)]).and_then(|()| log.sync());
            let (after, _) = open(&Arc::new(disk.crash()), 0, 0).expect("reopen");
            let found = indexes_and_terms(&after);
            let is_old_prefix = found.iter().all(|(_, term)| *term == 1);
            let is_new = found.len() == 10 && found[9] == (10, 2);
            assert!(is_old_prefix || is_new, "after {syncs} syncs: {found:?}");
            assert!(
                found.len() >= 9,
                "nothing before the cut is lost: {found:?}"
            );
        }
    }

    #[test]
    fn compaction_deletes_whole_segments_and_a_restart_skips_what_the_snapshot_holds() {
        let disk = Arc::new(SimDisk::new());
        let (mut log, _) = open(&disk, 0, 0).expect("open");
        let entries: Vec<Entry> = (1..=200).map(|index| entry(index, 1)).collect();
        log.append(&entries).expect("append");
        log.sync().expect("sync");
        let start = log.start_after(150);
        assert!(start > 0 && start % (128 << 10) == 0);
        log.compact(150, start).expect("compact");
        assert_eq!((log.first_index(), log.last_index()), (151, 200));
        let names = disk.list(Path::new("/node/log")).expect("list");
        assert!(!names.contains(&"0-0.rec".to_string()), "{names:?}");
        let (reopened, _) = open(&Arc::new(disk.crash()), start, 150).expect("reopen");
        assert_eq!(
            reopened.entries(151, 201).cloned().collect::<Vec<_>>(),
            entries[150..]
        );
        // A crash after the state moved the start but before the deletes: they happen at open.
        let disk = Arc::new(SimDisk::new());
        let (mut log, _) = open(&disk, 0, 0).expect("open");
        log.append(&entries).expect("append");
        log.sync().expect("sync");
        let start = log.start_after(150);
        let (reopened, recovered) = open(&Arc::new(disk.crash()), start, 150).expect("reopen");
        assert!(recovered.stale_segments > 0);
        assert_eq!(reopened.first_index(), 151);
    }

    #[test]
    fn a_reset_starts_an_empty_log_after_the_snapshot() {
        let disk = Arc::new(SimDisk::new());
        let (mut log, _) = open(&disk, 0, 0).expect("open");
        log.append(&(1..=50).map(|index| entry(index, 1)).collect::<Vec<_>>())
            .expect("append");
        log.sync().expect("sync");
        let start = log.fresh_start();
        log.reset(500, start).expect("reset");
        log.append(&[entry(501, 3)]).expect("append");
        log.sync().expect("sync");
        let (reopened, _) = open(&Arc::new(disk.crash()), start, 500).expect("reopen");
        assert_eq!(indexes_and_terms(&reopened), vec![(501, 3)]);
    }

    #[test]
    fn damage_before_a_later_segment_is_an_error_naming_the_position() {
        let disk = Arc::new(SimDisk::new());
        let (mut log, _) = open(&disk, 0, 0).expect("open");
        log.append(&(1..=200).map(|index| entry(index, 1)).collect::<Vec<_>>())
            .expect("append");
        log.sync().expect("sync");
        drop(log);
        let storage: Arc<dyn Storage> = disk.clone();
        let file = storage
            .open(
                Path::new("/node/log/0-0.rec"),
                tern_store::OpenOptions::read_write(),
            )
            .expect("segment");
        file.write_all_at(&[0xAB], 5000).expect("flip");
        file.sync_data().expect("sync");
        let error = open(&disk, 0, 0).expect_err("refused");
        assert!(matches!(error, ClusterError::CorruptLog { .. }), "{error}");
        assert!(error.to_string().contains("segment 0-"), "{error}");
        // An entry out of order is refused too.
        let disk = Arc::new(SimDisk::new());
        let (mut log, _) = open(&disk, 0, 0).expect("open");
        log.append(&[entry(1, 1)]).expect("append");
        log.sync().expect("sync");
        // Written past the log's own checks: index 3 after 1.
        let mut frames = Vec::new();
        let encoded = encode_entry(&entry(3, 1), log.end_position(), 64 << 10, &mut frames);
        let position = log.end_position();
        let writer = log.writer().expect("writer");
        writer
            .append(&frames[encoded.padding..], position)
            .expect("raw");
        writer.sync().expect("sync");
        drop(log);
        let error = open(&Arc::new(disk.crash()), 0, 0).expect_err("refused");
        assert!(
            error.to_string().contains("entry index 3 where 2"),
            "{error}"
        );
    }
}
