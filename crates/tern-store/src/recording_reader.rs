//! Reads a recording's frames back from its segment files, checking each one.

use crate::descriptor::RecordingDescriptor;
use crate::error::{io_error, Result, StoreError};
use crate::frame::{FrameExpectation, FrameHeader, FrameProblem};
use crate::ids::RecordingId;
use crate::segment::{parse_segment_file_name, segment_base, segment_file_name};
use crate::storage::{Advice, OpenOptions, Storage, StorageFile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CHUNK: usize = 1 << 20;

/// One checked frame, borrowed from the reader's buffer.
#[derive(Debug)]
pub struct FrameRef<'a> {
    /// Stream position of the frame.
    pub position: i64,
    /// Its header (the session id field holds the checksum).
    pub header: FrameHeader,
    /// Header and payload (`frame_length` bytes; for padding only the header).
    pub bytes: &'a [u8],
    /// Distance to the next frame.
    pub aligned_length: usize,
}

impl FrameRef<'_> {
    /// The payload of a data frame (empty for padding).
    pub fn payload(&self) -> &[u8] {
        &self.bytes[crate::frame::HEADER_LENGTH..]
    }
}

/// Where and why a scan stopped before the position it was asked to reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanStop {
    /// Stream position of the frame that failed.
    pub position: i64,
    /// The segment file.
    pub path: PathBuf,
    /// Offset of the frame in the file.
    pub file_offset: u64,
    /// What is wrong.
    pub problem: FrameProblem,
}

impl std::fmt::Display for ScanStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {} (stream position {}): {}",
            self.path.display(),
            self.file_offset,
            self.position,
            self.problem
        )
    }
}

impl ScanStop {
    /// The damage as an error naming the segment file, the offset in it and the stream position.
    pub fn to_error(&self) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            offset: self.file_offset,
            reason: format!("position {}: {}", self.position, self.problem),
        }
    }
}

/// Reads the segments of one recording.
pub struct RecordingReader {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    recording_id: RecordingId,
    start_position: i64,
    term_length: i64,
    segment_length: i64,
    expectation: FrameExpectation,
    open: Option<(i64, Arc<dyn StorageFile>, PathBuf)>,
    buffer: Vec<u8>,
    /// Reads are scattered: no kernel read-ahead on the segment files (`POSIX_FADV_RANDOM`).
    scattered: bool,
}

impl RecordingReader {
    /// A reader of `descriptor`'s segments in `dir`.
    pub fn new(dir: &Path, descriptor: &RecordingDescriptor) -> Self {
        Self::new_on(&crate::storage::disk(), dir, descriptor)
    }

    /// A reader of `descriptor`'s segments in `dir` of `storage`.
    pub fn new_on(
        storage: &Arc<dyn Storage>,
        dir: &Path,
        descriptor: &RecordingDescriptor,
    ) -> Self {
        Self {
            storage: storage.clone(),
            dir: dir.to_path_buf(),
            recording_id: descriptor.recording_id,
            start_position: descriptor.start_position,
            term_length: i64::from(descriptor.term_length),
            segment_length: i64::from(descriptor.segment_length),
            expectation: FrameExpectation {
                initial_term_id: descriptor.initial_term_id,
                term_length: descriptor.term_length,
                stream_id: descriptor.stream_id,
            },
            open: None,
            buffer: Vec::new(),
            scattered: false,
        }
    }

    /// Tell the kernel that this reader reads scattered places (one message here and there), so it
    /// does not read ahead of each read (`POSIX_FADV_RANDOM`): what is needed is read, and read
    /// ahead explicitly with [`Self::will_need`].
    pub fn scattered(mut self) -> Self {
        self.scattered = true;
        self
    }

    /// What frames of this recording must look like.
    pub fn expectation(&self) -> FrameExpectation {
        self.expectation
    }

    /// The base position of the segment holding `position`.
    pub fn segment_base(&self, position: i64) -> i64 {
        segment_base(
            self.start_position,
            position,
            self.term_length,
            self.segment_length,
        )
    }

    /// The segment file holding `position`.
    pub fn segment_path(&self, position: i64) -> PathBuf {
        self.dir.join(segment_file_name(
            self.recording_id,
            self.segment_base(position),
        ))
    }

    fn open_segment(&mut self, base: i64) -> Result<&(i64, Arc<dyn StorageFile>, PathBuf)> {
        if self.open.as_ref().map(|(open_base, _, _)| *open_base) != Some(base) {
            let path = self.dir.join(segment_file_name(self.recording_id, base));
            let file = self
                .storage
                .open(&path, OpenOptions::read())
                .map_err(io_error(&path, "open segment"))?;
            if self.scattered {
                file.advise(0, 0, Advice::Random);
            }
            self.open = Some((base, file, path));
        }
        Ok(self.open.as_ref().expect("opened above"))
    }

    /// Tell the kernel that `length` bytes at `position` will be read soon, so it reads them in
    /// the background (`POSIX_FADV_WILLNEED`): reads of scattered messages then overlap.
    ///
    /// # Errors
    /// The segment file is missing.
    pub fn will_need(&mut self, position: i64, length: usize) -> Result<()> {
        let base = self.segment_base(position);
        let (_, file, _) = self.open_segment(base)?;
        file.advise((position - base) as u64, length as u64, Advice::WillNeed);
        Ok(())
    }

    /// Read bytes from `position` into `buffer`, at most to the end of its segment. Returns the
    /// number of bytes read (fewer than asked at the end of a file).
    ///
    /// # Errors
    /// The segment file is missing or unreadable.
    pub fn read_at(&mut self, position: i64, buffer: &mut [u8]) -> Result<usize> {
        let base = self.segment_base(position);
        let segment_length = self.segment_length;
        let (_, file, path) = self.open_segment(base)?;
        let limit = ((base + segment_length - position) as usize).min(buffer.len());
        file.read_full_at(&mut buffer[..limit], (position - base) as u64)
            .map_err(io_error(path, "read segment"))
    }

    /// Visit every frame from `from` (a frame start) up to `to`, checking each. Stops early when
    /// `visit` returns false. Returns the position reached, and why the scan stopped short of `to`
    /// if it did (a frame failed its checks, or nothing was written there).
    ///
    /// # Errors
    /// A segment file is missing or unreadable.
    pub fn scan(
        &mut self,
        from: i64,
        to: i64,
        visit: impl FnMut(&FrameRef<'_>) -> bool,
    ) -> Result<(i64, Option<ScanStop>)> {
        self.scan_reading(from, to, CHUNK, visit)
    }

    /// As [`Self::scan`], reading only `first_read` bytes at first (more when a frame or the
    /// visit needs them): for a visit of a few frames, such as one message.
    ///
    /// # Errors
    /// A segment file is missing or unreadable.
    pub fn scan_reading(
        &mut self,
        from: i64,
        to: i64,
        first_read: usize,
        mut visit: impl FnMut(&FrameRef<'_>) -> bool,
    ) -> Result<(i64, Option<ScanStop>)> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.resize(CHUNK, 0);
        let result = self.scan_with(
            &mut buffer,
            first_read.clamp(1, CHUNK),
            from,
            to,
            &mut visit,
        );
        self.buffer = buffer;
        result
    }

    fn scan_with(
        &mut self,
        buffer: &mut [u8],
        first_read: usize,
        from: i64,
        to: i64,
        visit: &mut impl FnMut(&FrameRef<'_>) -> bool,
    ) -> Result<(i64, Option<ScanStop>)> {
        let mut position = from;
        let mut length = first_read;
        while position < to {
            // Reads may go past `to` (within the segment): a frame that starts before `to` is
            // whole in the file, and one that ends past `to` ends the scan cleanly, before it.
            let read = self.read_at(position, &mut buffer[..length])?;
            let short = length < buffer.len();
            // Grow to a page first: a filtered read announces one page per message to the kernel.
            length = (length * 4).min(buffer.len());
            let chunk = &buffer[..read];
            let mut offset = 0;
            while offset < chunk.len() && position < to {
                match self.expectation.check(&chunk[offset..], position) {
                    Ok((header, aligned)) => {
                        if position + aligned as i64 > to {
                            return Ok((position, None));
                        }
                        let covered = if header.is_padding() {
                            crate::frame::HEADER_LENGTH
                        } else {
                            header.frame_length as usize
                        };
                        let frame = FrameRef {
                            position,
                            header,
                            bytes: &chunk[offset..offset + covered],
                            aligned_length: aligned,
                        };
                        if !visit(&frame) {
                            return Ok((position + aligned as i64, None));
                        }
                        position += aligned as i64;
                        offset += aligned;
                    }
                    // A frame cut by the end of this chunk: read again from its start.
                    Err(FrameProblem::Truncated) if offset > 0 || short => break,
                    Err(problem) => return Ok((position, Some(self.stop(position, problem)))),
                }
            }
            if read == 0 {
                return Ok((position, Some(self.stop(position, FrameProblem::EndOfFile))));
            }
        }
        Ok((position, None))
    }

    fn stop(&self, position: i64, problem: FrameProblem) -> ScanStop {
        let base = self.segment_base(position);
        ScanStop {
            position,
            path: self.dir.join(segment_file_name(self.recording_id, base)),
            file_offset: (position - base) as u64,
            problem,
        }
    }
}

/// The segment files in `dir`, by recording id, each a sorted list of base positions.
///
/// # Errors
/// The directory cannot be listed.
pub fn list_segments(dir: &Path) -> Result<BTreeMap<RecordingId, Vec<i64>>> {
    list_segments_on(&crate::storage::disk(), dir)
}

/// [`list_segments`] in `dir` of `storage`.
///
/// # Errors
/// The directory cannot be listed.
pub fn list_segments_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
) -> Result<BTreeMap<RecordingId, Vec<i64>>> {
    let mut segments: BTreeMap<RecordingId, Vec<i64>> = BTreeMap::new();
    let names = storage
        .list(dir)
        .map_err(io_error(dir, "list archive directory"))?;
    for name in names {
        if let Some((id, base)) = parse_segment_file_name(&name) {
            segments.entry(id).or_default().push(base);
        }
    }
    for bases in segments.values_mut() {
        bases.sort_unstable();
    }
    Ok(segments)
}

/// Find where an interrupted recording's data ends: the end of its last valid frame, scanning
/// from the start of the last segment that begins with a valid frame. Returns the stop position
/// and, if the data ended with a damaged frame rather than clean zeroes, what was found there.
///
/// # Errors
/// A segment file is unreadable.
pub fn find_end(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    bases: &[i64],
) -> Result<(i64, Option<ScanStop>)> {
    find_end_on(&crate::storage::disk(), dir, descriptor, bases)
}

/// [`find_end`] in `dir` of `storage`.
///
/// # Errors
/// A segment file is unreadable.
pub fn find_end_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    descriptor: &RecordingDescriptor,
    bases: &[i64],
) -> Result<(i64, Option<ScanStop>)> {
    let mut reader = RecordingReader::new_on(storage, dir, descriptor);
    let clean =
        |problem: &FrameProblem| matches!(problem, FrameProblem::Empty | FrameProblem::EndOfFile);
    // Damage at the start of a later segment, reported even when an earlier segment holds the end.
    let mut damage_after = None;
    for base in bases.iter().rev() {
        let from = (*base).max(descriptor.start_position);
        let to = *base + i64::from(descriptor.segment_length);
        if from >= to {
            continue;
        }
        let (end, stop) = reader.scan(from, to, |_| true)?;
        let damage = stop.filter(|stop| !clean(&stop.problem));
        if end > from || from == descriptor.start_position {
            return Ok((end, damage.or(damage_after)));
        }
        damage_after = damage_after.or(damage);
    }
    Ok((descriptor.start_position, damage_after))
}

/// The error for a position that is not the start of a frame of the recording.
pub fn bad_position(
    recording_id: RecordingId,
    position: i64,
    reason: impl Into<String>,
) -> StoreError {
    StoreError::BadPosition {
        recording_id,
        position,
        reason: reason.into(),
    }
}

/// Check that `position` is a frame start of the recording between its start and `end`.
///
/// # Errors
/// [`StoreError::BadPosition`] saying why not.
pub fn check_replay_position(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
    end: i64,
) -> Result<()> {
    check_replay_position_on(&crate::storage::disk(), dir, descriptor, position, end)
}

/// [`check_replay_position`] in `dir` of `storage`.
///
/// # Errors
/// As [`check_replay_position`].
pub fn check_replay_position_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
    end: i64,
) -> Result<()> {
    let recording_id = descriptor.recording_id;
    if position < descriptor.start_position {
        return Err(bad_position(
            recording_id,
            position,
            format!(
                "before the recording's start position {}",
                descriptor.start_position
            ),
        ));
    }
    if position > end {
        return Err(bad_position(
            recording_id,
            position,
            format!("past the recording's end position {end}"),
        ));
    }
    if position % crate::frame::FRAME_ALIGNMENT as i64 != 0 {
        return Err(bad_position(
            recording_id,
            position,
            "not frame aligned (a multiple of 32)",
        ));
    }
    if position < end {
        let mut reader = RecordingReader::new_on(storage, dir, descriptor);
        let (_, stop) = reader.scan(position, end, |_| false)?;
        if let Some(stop) = stop {
            return Err(bad_position(
                recording_id,
                position,
                format!("not the start of a frame: {stop}"),
            ));
        }
    }
    Ok(())
}
