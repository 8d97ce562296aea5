//! The time index of a recording: sparse (capture time, position) pairs, appended as the
//! recording grows, so a reader finds the position of a point in time by binary search.
//!
//! File `<recordingId>.tix`: a 32-byte header (magic `TERNTIX\0`, version u32, entry length u32,
//! recording id i64, reserved) then 16-byte entries {timestamp_ns i64, position i64}, both
//! non-decreasing. See `docs/formats.md`.

use crate::error::{io_error, Result, StoreError};
use crate::ids::RecordingId;
use crate::storage::{disk, read_all, OpenOptions, Storage, StorageFile};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"TERNTIX\0";
const VERSION: u32 = 1;
/// Length of the file header.
pub const HEADER_LENGTH: usize = 32;
/// Length of one entry.
pub const ENTRY_LENGTH: usize = 16;

/// The time index file name of a recording.
pub fn time_index_file_name(recording_id: RecordingId) -> String {
    format!("{recording_id}.tix")
}

/// One entry: frames captured at `timestamp_ns` (epoch nanoseconds) start at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Capture time, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// Stream position of the first frame captured then.
    pub position: i64,
}

/// Appends entries for a recording being written.
pub struct TimeIndexWriter {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    /// Where the next entries go: the end of the file.
    end: u64,
    pending: Vec<u8>,
    interval_ns: i64,
    last_timestamp_ns: i64,
    /// A write failed: entries could be misaligned after a partial write, so none are added.
    broken: bool,
}

fn header(recording_id: RecordingId) -> [u8; HEADER_LENGTH] {
    let mut header = [0u8; HEADER_LENGTH];
    header[0..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(ENTRY_LENGTH as u32).to_le_bytes());
    header[16..24].copy_from_slice(&recording_id.get().to_le_bytes());
    header
}

impl TimeIndexWriter {
    /// Create the index of `recording_id` in `dir`; entries closer than `interval_ns` to the last
    /// one are skipped.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create(dir: &Path, recording_id: RecordingId, interval_ns: i64) -> Result<Self> {
        Self::create_on(&disk(), dir, recording_id, interval_ns)
    }

    /// [`Self::create`] in `dir` of `storage`.
    ///
    /// # Errors
    /// The file cannot be created.
    pub fn create_on(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        recording_id: RecordingId,
        interval_ns: i64,
    ) -> Result<Self> {
        let path = dir.join(time_index_file_name(recording_id));
        let file = storage
            .open(&path, OpenOptions::create())
            .map_err(io_error(&path, "create time index"))?;
        file.set_len(0)
            .and_then(|()| file.write_all_at(&header(recording_id), 0))
            .map_err(io_error(&path, "write time index"))?;
        Ok(Self {
            path,
            file,
            end: HEADER_LENGTH as u64,
            pending: Vec::with_capacity(4096),
            interval_ns,
            last_timestamp_ns: i64::MIN,
            broken: false,
        })
    }

    /// Continue the index of a stopped recording being extended at `stop_position`: the entries
    /// before it are kept (later ones, and a torn tail, are cut off) and new ones are appended,
    /// never with a timestamp before the last kept one. An index that is missing or unreadable
    /// is started again, empty (with a warning).
    ///
    /// # Errors
    /// The file cannot be opened, cut or created.
    pub fn resume(
        dir: &Path,
        recording_id: RecordingId,
        interval_ns: i64,
        stop_position: i64,
    ) -> Result<Self> {
        Self::resume_on(&disk(), dir, recording_id, interval_ns, stop_position)
    }

    /// [`Self::resume`] in `dir` of `storage`.
    ///
    /// # Errors
    /// The file cannot be opened, cut or created.
    pub fn resume_on(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        recording_id: RecordingId,
        interval_ns: i64,
        stop_position: i64,
    ) -> Result<Self> {
        let entries = match read_time_index_on(storage, dir, recording_id, stop_position) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(
                    "recording {recording_id}: time index restarted empty at {stop_position}: {error}"
                );
                return Self::create_on(storage, dir, recording_id, interval_ns);
            }
        };
        let path = dir.join(time_index_file_name(recording_id));
        let file = storage
            .open(&path, OpenOptions::read_write())
            .map_err(io_error(&path, "open time index"))?;
        let end = (HEADER_LENGTH + entries.len() * ENTRY_LENGTH) as u64;
        file.set_len(end)
            .map_err(io_error(&path, "cut time index"))?;
        Ok(Self {
            path,
            file,
            end,
            pending: Vec::with_capacity(4096),
            interval_ns,
            last_timestamp_ns: entries.last().map_or(i64::MIN, |entry| entry.timestamp_ns),
            broken: false,
        })
    }

    /// Note that frames starting at `position` were captured at `timestamp_ns`.
    pub fn record(&mut self, timestamp_ns: i64, position: i64) {
        if self.broken {
            return;
        }
        if self.last_timestamp_ns != i64::MIN
            && timestamp_ns - self.last_timestamp_ns < self.interval_ns
        {
            return;
        }
        let timestamp_ns = timestamp_ns.max(self.last_timestamp_ns);
        self.last_timestamp_ns = timestamp_ns;
        self.pending.extend_from_slice(&timestamp_ns.to_le_bytes());
        self.pending.extend_from_slice(&position.to_le_bytes());
    }

    /// Write the entries noted so far. Entries may point past what the segments hold yet: a
    /// reader bounds them by the recorded position.
    ///
    /// # Errors
    /// The write failed; the index then takes no more entries (a partial write could leave the
    /// next ones misaligned), and the recording goes on without them.
    pub fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() || self.broken {
            return Ok(());
        }
        let written = self.file.write_all_at(&self.pending, self.end);
        self.end += self.pending.len() as u64;
        self.pending.clear();
        if let Err(error) = written {
            self.broken = true;
            return Err(io_error(&self.path, "write time index")(error));
        }
        Ok(())
    }

    /// The index file (for syncs on another thread), and its path.
    pub fn file_handle(&self) -> (PathBuf, Arc<dyn StorageFile>) {
        (self.path.clone(), self.file.clone())
    }

    /// Sync the index to the device.
    ///
    /// # Errors
    /// `fdatasync` failed.
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(io_error(&self.path, "sync time index"))
    }
}

/// Empty the time index of a recording (its header kept), synced.
///
/// # Errors
/// The file cannot be written.
pub fn reset_time_index(dir: &Path, recording_id: RecordingId) -> Result<()> {
    reset_time_index_on(&disk(), dir, recording_id)
}

/// [`reset_time_index`] in `dir` of `storage`.
///
/// # Errors
/// The file cannot be written.
pub fn reset_time_index_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
) -> Result<()> {
    let writer = TimeIndexWriter::create_on(storage, dir, recording_id, 0)?;
    writer
        .file
        .sync_data()
        .map_err(io_error(&writer.path, "sync time index"))
}

/// Read the whole time index of a recording. Entries at or past `stop_position` (written before
/// a crash for frames that did not survive) and a torn last entry are left out.
///
/// # Errors
/// The file is missing, unreadable or not a time index.
pub fn read_time_index(
    dir: &Path,
    recording_id: RecordingId,
    stop_position: i64,
) -> Result<Vec<TimeEntry>> {
    read_time_index_on(&disk(), dir, recording_id, stop_position)
}

/// [`read_time_index`] in `dir` of `storage`.
///
/// # Errors
/// The file is missing, unreadable or not a time index.
pub fn read_time_index_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
    stop_position: i64,
) -> Result<Vec<TimeEntry>> {
    let path = dir.join(time_index_file_name(recording_id));
    let bytes = read_all(storage.as_ref(), &path).map_err(io_error(&path, "read time index"))?;
    check_header(&path, &bytes, recording_id)?;
    let mut entries = Vec::with_capacity((bytes.len() - HEADER_LENGTH) / ENTRY_LENGTH);
    for (index, chunk) in bytes[HEADER_LENGTH..]
        .chunks_exact(ENTRY_LENGTH)
        .enumerate()
    {
        let entry = TimeEntry {
            timestamp_ns: i64::from_le_bytes(chunk[0..8].try_into().expect("8 bytes")),
            position: i64::from_le_bytes(chunk[8..16].try_into().expect("8 bytes")),
        };
        if entry.position >= stop_position {
            break;
        }
        if let Some(last) = entries.last() {
            let last: &TimeEntry = last;
            if entry.position < last.position || entry.timestamp_ns < last.timestamp_ns {
                return Err(StoreError::Corrupt {
                    path,
                    offset: (HEADER_LENGTH + index * ENTRY_LENGTH) as u64,
                    reason: "time index entries go backwards".into(),
                });
            }
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn check_header(path: &Path, bytes: &[u8], recording_id: RecordingId) -> Result<()> {
    let corrupt = |offset: u64, reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    if bytes.len() < HEADER_LENGTH || &bytes[0..8] != MAGIC {
        return Err(corrupt(0, "not a tern time index".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(corrupt(
            8,
            format!("time index version {version}; this tern reads version {VERSION}"),
        ));
    }
    let entry_length = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if entry_length as usize != ENTRY_LENGTH {
        return Err(corrupt(
            12,
            format!("entry length {entry_length}, expected {ENTRY_LENGTH}"),
        ));
    }
    let owner = RecordingId::new(i64::from_le_bytes(
        bytes[16..24].try_into().expect("8 bytes"),
    ));
    if owner != recording_id {
        return Err(corrupt(
            16,
            format!("time index of recording {owner}, not {recording_id}"),
        ));
    }
    Ok(())
}

/// Where a point in time falls in a recording's time index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSeek {
    /// The first entry captured at or after the time: replay from its position.
    At(TimeEntry),
    /// Every entry (before the limit) was captured before the time.
    AfterLast,
}

/// Entries read at once at the end of a seek (4 KiB, a page).
pub const SEEK_WINDOW: u64 = 256;

/// Reads a time index by interpolation search, a few reads per seek whatever its size.
pub struct TimeIndexReader {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    entries: u64,
}

impl TimeIndexReader {
    /// Open the index of `recording_id` in `dir` as it is now (a live recording's index grows;
    /// entries appended later are not seen).
    ///
    /// # Errors
    /// The file is missing, unreadable or not this recording's time index.
    pub fn open(dir: &Path, recording_id: RecordingId) -> Result<Self> {
        Self::open_on(&disk(), dir, recording_id)
    }

    /// [`Self::open`] in `dir` of `storage`.
    ///
    /// # Errors
    /// The file is missing, unreadable or not this recording's time index.
    pub fn open_on(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        recording_id: RecordingId,
    ) -> Result<Self> {
        let path = dir.join(time_index_file_name(recording_id));
        let file = storage
            .open(&path, OpenOptions::read())
            .map_err(io_error(&path, "open time index"))?;
        let mut header = [0u8; HEADER_LENGTH];
        let read = file
            .read_full_at(&mut header, 0)
            .map_err(io_error(&path, "read time index"))?;
        check_header(&path, &header[..read], recording_id)?;
        let length = file.len().map_err(io_error(&path, "stat time index"))?;
        let entries = length.saturating_sub(HEADER_LENGTH as u64) / ENTRY_LENGTH as u64;
        Ok(Self {
            path,
            file,
            entries,
        })
    }

    /// See the entries appended since the index was opened (a live recording's).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn refresh(&mut self) -> Result<()> {
        let length = self
            .file
            .len()
            .map_err(io_error(&self.path, "stat time index"))?;
        self.entries = length.saturating_sub(HEADER_LENGTH as u64) / ENTRY_LENGTH as u64;
        Ok(())
    }

    /// The index of the first entry whose position is after `position`.
    ///
    /// # Errors
    /// A read failed.
    pub fn first_after_position(&self, position: i64) -> Result<u64> {
        self.partition(|entry| entry.position <= position)
    }

    /// Entries in the file (a torn last one excluded).
    pub fn len(&self) -> u64 {
        self.entries
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Entry `index`.
    ///
    /// # Errors
    /// The read failed.
    pub fn entry(&self, index: u64) -> Result<TimeEntry> {
        let mut bytes = [0u8; ENTRY_LENGTH];
        let offset = HEADER_LENGTH as u64 + index * ENTRY_LENGTH as u64;
        let read = self
            .file
            .read_full_at(&mut bytes, offset)
            .map_err(io_error(&self.path, "read time index"))?;
        if read < ENTRY_LENGTH {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                offset,
                reason: "time index entry truncated".into(),
            });
        }
        Ok(TimeEntry {
            timestamp_ns: i64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes")),
            position: i64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
        })
    }

    /// The first entry captured at or after `timestamp_ns`, among the entries whose position is
    /// before `limit_position` (a recording's end: entries past it were written for frames a
    /// crash lost).
    ///
    /// Capture times grow about evenly, so the search interpolates (bisecting whenever a guess
    /// did not halve the range) down to at most [`SEEK_WINDOW`] entries, then reads those at
    /// once: a handful of reads whatever the index's size, which matters when it is not cached.
    ///
    /// # Errors
    /// A read failed.
    pub fn seek(&self, timestamp_ns: i64, limit_position: i64) -> Result<TimeSeek> {
        if self.entries == 0 {
            return Ok(TimeSeek::AfterLast);
        }
        let last = self.entry(self.entries - 1)?;
        let usable = if last.position < limit_position {
            self.entries
        } else {
            self.partition(|entry| entry.position < limit_position)?
        };
        if usable == 0 {
            return Ok(TimeSeek::AfterLast);
        }
        let first = self.entry(0)?;
        if first.timestamp_ns >= timestamp_ns {
            return Ok(TimeSeek::At(first));
        }
        let high_entry = if usable == self.entries {
            last
        } else {
            self.entry(usable - 1)?
        };
        if high_entry.timestamp_ns < timestamp_ns {
            return Ok(TimeSeek::AfterLast);
        }
        // Entry `low` is before the time, entry `high` at or after it.
        let (mut low, mut high) = (0u64, usable - 1);
        let (mut low_time, mut high_time) = (first.timestamp_ns, high_entry.timestamp_ns);
        let mut bisect = false;
        while high - low > SEEK_WINDOW {
            let guess = if bisect || high_time <= low_time {
                low + (high - low) / 2
            } else {
                let fraction = (i128::from(timestamp_ns) - i128::from(low_time))
                    * i128::from(high - low)
                    / (i128::from(high_time) - i128::from(low_time));
                low + (fraction as u64).clamp(1, high - low - 1)
            };
            let range = high - low;
            let entry = self.entry(guess)?;
            if entry.timestamp_ns < timestamp_ns {
                low = guess;
                low_time = entry.timestamp_ns;
            } else {
                high = guess;
                high_time = entry.timestamp_ns;
            }
            // A guess that did not halve the range is followed by a bisection.
            bisect = !bisect && (high - low) * 2 > range;
        }
        let window = self.entries_between(low, high)?;
        let found = window.partition_point(|entry| entry.timestamp_ns < timestamp_ns);
        Ok(TimeSeek::At(window[found.min(window.len() - 1)]))
    }

    /// Entries `first..=last`, read at once.
    fn entries_between(&self, first: u64, last: u64) -> Result<Vec<TimeEntry>> {
        let count = (last - first + 1) as usize;
        let mut bytes = vec![0u8; count * ENTRY_LENGTH];
        let offset = HEADER_LENGTH as u64 + first * ENTRY_LENGTH as u64;
        let read = self
            .file
            .read_full_at(&mut bytes, offset)
            .map_err(io_error(&self.path, "read time index"))?;
        if read < bytes.len() {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                offset: offset + read as u64,
                reason: "time index shorter than it was".into(),
            });
        }
        Ok(bytes
            .chunks_exact(ENTRY_LENGTH)
            .map(|chunk| TimeEntry {
                timestamp_ns: i64::from_le_bytes(chunk[0..8].try_into().expect("8 bytes")),
                position: i64::from_le_bytes(chunk[8..16].try_into().expect("8 bytes")),
            })
            .collect())
    }

    /// The number of leading entries for which `keep` holds (it must hold for a prefix).
    fn partition(&self, keep: impl Fn(&TimeEntry) -> bool) -> Result<u64> {
        let (mut low, mut high) = (0u64, self.entries);
        while low < high {
            let middle = low + (high - low) / 2;
            if keep(&self.entry(middle)?) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_closer_than_the_interval_are_skipped_and_stale_ones_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut writer =
            TimeIndexWriter::create(dir.path(), RecordingId::new(4), 1000).expect("create");
        writer.record(10_000, 0);
        writer.record(10_500, 64);
        writer.record(11_000, 128);
        writer.record(13_000, 4096);
        writer.flush().expect("flush");
        let path = dir.path().join(time_index_file_name(RecordingId::new(4)));
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&path, bytes).expect("torn tail");
        let entries = read_time_index(dir.path(), RecordingId::new(4), 4096).expect("read");
        assert_eq!(
            entries,
            vec![
                TimeEntry {
                    timestamp_ns: 10_000,
                    position: 0
                },
                TimeEntry {
                    timestamp_ns: 11_000,
                    position: 128
                }
            ]
        );
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;

    #[test]
    fn a_resumed_index_drops_entries_past_the_stop_and_never_goes_back_in_time() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut writer =
            TimeIndexWriter::create(dir.path(), RecordingId::new(2), 0).expect("create");
        writer.record(1_000, 0);
        writer.record(2_000, 640);
        writer.record(3_000, 1280);
        writer.flush().expect("flush");
        drop(writer);
        let mut resumed =
            TimeIndexWriter::resume(dir.path(), RecordingId::new(2), 0, 1280).expect("resume");
        resumed.record(1_500, 1280);
        resumed.record(4_000, 1920);
        resumed.flush().expect("flush");
        let entries = read_time_index(dir.path(), RecordingId::new(2), i64::MAX).expect("read");
        let pairs: Vec<(i64, i64)> = entries
            .iter()
            .map(|entry| (entry.timestamp_ns, entry.position))
            .collect();
        // The entry of a clock behind the last kept one is skipped.
        assert_eq!(pairs, vec![(1_000, 0), (2_000, 640), (4_000, 1920)]);
    }
}

#[cfg(test)]
mod seek_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

        /// Against a linear search, on indexes with even, bursty and flat stretches of time.
        #[test]
        fn seek_finds_the_first_entry_at_or_after_the_time(
            gaps in prop::collection::vec(prop_oneof![Just(0i64), 1i64..50, 1_000i64..1_000_000], 1..20_000),
            probes in prop::collection::vec(any::<u32>(), 1..40),
            limit_fraction in 0.0f64..1.2,
        ) {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut writer = TimeIndexWriter::create(dir.path(), RecordingId::new(1), 0).expect("create");
            let mut time = 1_000_000i64;
            let mut entries = Vec::new();
            for (index, gap) in gaps.iter().enumerate() {
                time += gap;
                writer.record(time, index as i64 * 64);
                entries.push(TimeEntry { timestamp_ns: time, position: index as i64 * 64 });
            }
            writer.flush().expect("flush");
            let reader = TimeIndexReader::open(dir.path(), RecordingId::new(1)).expect("open");
            let limit = (entries.len() as f64 * 64.0 * limit_fraction) as i64;
            let usable: Vec<TimeEntry> = entries.iter().copied().filter(|e| e.position < limit).collect();
            let span = time - 1_000_000 + 20;
            for probe in probes {
                let target = 1_000_000 - 10 + i64::from(probe) % span;
                let expected = usable.iter().find(|e| e.timestamp_ns >= target).copied();
                let found = reader.seek(target, limit).expect("seek");
                prop_assert_eq!(found, expected.map_or(TimeSeek::AfterLast, TimeSeek::At));
            }
        }
    }
}

/// What `verify` found in a recording's time index, and what it did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeIndexCheck {
    /// The index file.
    pub path: PathBuf,
    /// Entries that passed every check (before the recording's end).
    pub entries: u64,
    /// The first problem: its file offset and what is wrong. `None`: the index is sound.
    pub problem: Option<(u64, String)>,
    /// Entries at or after the problem, left out of the rebuilt index.
    pub dropped: u64,
    /// Whether the file was rewritten with the entries that passed.
    pub rebuilt: bool,
}

impl TimeIndexCheck {
    /// Whether the index is sound.
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// How far an entry's capture time may lie outside the recording's start and stop times.
const TIME_SLACK_NS: i64 = 60_000_000_000;

/// The file offset of entry `index`.
pub fn entry_offset(index: usize) -> u64 {
    (HEADER_LENGTH + index * ENTRY_LENGTH) as u64
}

/// Read a recording's time index for checking: the entries before `end_position` that pass
/// every check up to the first that does not, that problem (file offset, reason), and how many
/// entries the file holds. Checked: the header, then each entry's position (a multiple of the
/// frame alignment, not before the start), its time (within a minute of the recording's start
/// and stop, or of now for an active one) and that both go forward.
pub fn check_entries(
    dir: &Path,
    descriptor: &crate::RecordingDescriptor,
    end_position: i64,
) -> (Vec<TimeEntry>, Option<(u64, String)>, u64) {
    let path = dir.join(time_index_file_name(descriptor.recording_id));
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) => return (Vec::new(), Some((0, format!("cannot be read: {error}"))), 0),
    };
    if let Err(error) = check_header(&path, &bytes, descriptor.recording_id) {
        let offset = match &error {
            StoreError::Corrupt { offset, .. } => *offset,
            _ => 0,
        };
        let reason = match error {
            StoreError::Corrupt { reason, .. } => reason,
            other => other.to_string(),
        };
        let total = (bytes.len().saturating_sub(HEADER_LENGTH) / ENTRY_LENGTH) as u64;
        return (Vec::new(), Some((offset, reason)), total);
    }
    let total = ((bytes.len() - HEADER_LENGTH) / ENTRY_LENGTH) as u64;
    let earliest = descriptor.start_timestamp_ns.saturating_sub(TIME_SLACK_NS);
    let latest = if descriptor.is_active() {
        crate::clock::epoch_nanos()
    } else {
        descriptor.stop_timestamp_ns
    }
    .saturating_add(TIME_SLACK_NS);
    let mut entries = Vec::new();
    let mut last: Option<TimeEntry> = None;
    for (index, chunk) in bytes[HEADER_LENGTH..]
        .chunks_exact(ENTRY_LENGTH)
        .enumerate()
    {
        let entry = TimeEntry {
            timestamp_ns: i64::from_le_bytes(chunk[0..8].try_into().expect("8 bytes")),
            position: i64::from_le_bytes(chunk[8..16].try_into().expect("8 bytes")),
        };
        let problem = if entry.position < descriptor.start_position
            || entry.position % crate::frame::FRAME_ALIGNMENT as i64 != 0
        {
            Some(format!(
                "entry {index}: position {} is not a frame position of the recording",
                entry.position
            ))
        } else if entry.timestamp_ns < earliest || entry.timestamp_ns > latest {
            Some(format!(
                "entry {index}: time {} ns is outside the recording's time range",
                entry.timestamp_ns
            ))
        } else if last.is_some_and(|last| {
            entry.position < last.position || entry.timestamp_ns < last.timestamp_ns
        }) {
            Some(format!("entry {index}: time index entries go backwards"))
        } else {
            None
        };
        if let Some(problem) = problem {
            return (entries, Some((entry_offset(index), problem)), total);
        }
        last = Some(entry);
        if entry.position < end_position {
            entries.push(entry);
        }
    }
    (entries, None, total)
}

/// Replace a recording's time index with `entries`, in one step (a temporary file, synced,
/// renamed over it, the directory synced).
///
/// # Errors
/// A file error.
pub fn replace_time_index(
    dir: &Path,
    recording_id: RecordingId,
    entries: &[TimeEntry],
) -> Result<()> {
    let path = dir.join(time_index_file_name(recording_id));
    let temporary = dir.join(format!("{}.rebuild", time_index_file_name(recording_id)));
    let mut bytes = Vec::with_capacity(HEADER_LENGTH + entries.len() * ENTRY_LENGTH);
    bytes.extend_from_slice(&header(recording_id));
    for entry in entries {
        bytes.extend_from_slice(&entry.timestamp_ns.to_le_bytes());
        bytes.extend_from_slice(&entry.position.to_le_bytes());
    }
    {
        let mut file =
            std::fs::File::create(&temporary).map_err(io_error(&temporary, "create time index"))?;
        file.write_all(&bytes)
            .map_err(io_error(&temporary, "write time index"))?;
        file.sync_all()
            .map_err(io_error(&temporary, "sync time index"))?;
    }
    std::fs::rename(&temporary, &path).map_err(io_error(&path, "replace time index"))?;
    crate::catalog::sync_directory(dir)
}
