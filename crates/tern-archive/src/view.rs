//! Read-only access to an archive directory, with or without an archive running on it: listing,
//! describing, verifying and reading recordings. Active recordings' ends are found by scanning.

use crate::catalog::{Catalog, CatalogEntry};
use crate::descriptor::RecordingDescriptor;
use crate::error::{ArchiveError, Result};
use crate::frame::FrameHeader;
use crate::recording_reader::{find_end, list_segments, FrameRef, RecordingReader, ScanStop};
use crate::time_index::{read_time_index, TimeEntry};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tern_transport::{FragmentAssembler, Header};

/// A recording seen from the directory.
#[derive(Debug, Clone)]
pub struct RecordingView {
    /// The catalog's descriptor.
    pub descriptor: RecordingDescriptor,
    /// The stop position, or for an active (or interrupted) recording the end of its valid data.
    pub end_position: i64,
    /// Whether the catalog says it has not stopped.
    pub active: bool,
}

/// What `verify` found in one recording.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The recording.
    pub recording_id: i64,
    /// Data frames checked.
    pub frames: u64,
    /// Bytes checked.
    pub bytes: i64,
    /// The first bad frame, if any.
    pub problem: Option<ScanStop>,
}

/// A segment file of a recording.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Its base position.
    pub base: i64,
    /// Its path.
    pub path: PathBuf,
    /// Its size on disk.
    pub file_length: u64,
}

/// An archive directory opened read-only.
pub struct ArchiveView {
    dir: PathBuf,
    catalog: Catalog,
    segments: BTreeMap<i64, Vec<i64>>,
}

impl ArchiveView {
    /// Open `dir` read-only.
    ///
    /// # Errors
    /// No catalog, or a damaged catalog header.
    pub fn open(dir: &Path) -> Result<Self> {
        let catalog = Catalog::open(dir, false)?;
        let segments = list_segments(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            catalog,
            segments,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// All catalog slots, damaged and deleted (purged) ones included.
    pub fn entries(&self) -> &[CatalogEntry] {
        self.catalog.entries()
    }

    fn bases(&self, recording_id: i64) -> &[i64] {
        self.segments
            .get(&recording_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// One recording, its end found by scanning if it is active.
    ///
    /// # Errors
    /// Unknown id, damaged entry, unreadable segment.
    pub fn recording(&self, recording_id: i64) -> Result<RecordingView> {
        let descriptor = self.catalog.get(recording_id)?.clone();
        self.view_of(descriptor)
    }

    fn view_of(&self, descriptor: RecordingDescriptor) -> Result<RecordingView> {
        let active = descriptor.is_active();
        let end_position = if active {
            find_end(&self.dir, &descriptor, self.bases(descriptor.recording_id))?.0
        } else {
            descriptor.stop_position
        };
        Ok(RecordingView {
            descriptor,
            end_position,
            active,
        })
    }

    /// Every readable recording.
    ///
    /// # Errors
    /// An unreadable segment of an active recording.
    pub fn recordings(&self) -> Result<Vec<RecordingView>> {
        self.catalog
            .recordings()
            .cloned()
            .map(|descriptor| self.view_of(descriptor))
            .collect()
    }

    /// The segment files of a recording.
    pub fn segment_files(&self, recording_id: i64) -> Vec<SegmentInfo> {
        self.bases(recording_id)
            .iter()
            .map(|base| {
                let path = self
                    .dir
                    .join(crate::segment::segment_file_name(recording_id, *base));
                let file_length = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                SegmentInfo {
                    base: *base,
                    path,
                    file_length,
                }
            })
            .collect()
    }

    /// The time index of a recording.
    ///
    /// # Errors
    /// The index file is missing, unreadable or damaged.
    pub fn time_index(&self, view: &RecordingView) -> Result<Vec<TimeEntry>> {
        read_time_index(&self.dir, view.descriptor.recording_id, view.end_position)
    }

    /// The position to replay from to start at the first message captured at or after
    /// `timestamp_ns` (epoch nanoseconds): the recording's start for a time before its first
    /// message, its end for a time after its last.
    ///
    /// # Errors
    /// Unknown id, or a missing or unreadable time index.
    pub fn position_at_time(&self, recording_id: i64, timestamp_ns: i64) -> Result<i64> {
        self.position_at_time_from(recording_id, timestamp_ns, Default::default())
    }

    /// As [`Self::position_at_time`], with the time of each message taken from `source`.
    ///
    /// # Errors
    /// Unknown id, an unreadable time index or segment.
    pub fn position_at_time_from(
        &self,
        recording_id: i64,
        timestamp_ns: i64,
        source: crate::message_time::TimeSource,
    ) -> Result<i64> {
        let view = self.recording(recording_id)?;
        position_at_message_time(
            &self.dir,
            &view.descriptor,
            view.end_position,
            timestamp_ns,
            source,
        )
    }

    /// Check every frame of a recording (header and CRC32C), calling `progress` with the bytes
    /// checked so far now and then.
    ///
    /// # Errors
    /// Unknown id, or an unreadable segment.
    pub fn verify(&self, recording_id: i64, mut progress: impl FnMut(i64)) -> Result<VerifyReport> {
        let view = self.recording(recording_id)?;
        let descriptor = &view.descriptor;
        let mut reader = RecordingReader::new(&self.dir, descriptor);
        let mut frames = 0u64;
        let mut last_report = descriptor.start_position;
        let (reached, problem) =
            reader.scan(descriptor.start_position, view.end_position, |frame| {
                if !frame.header.is_padding() {
                    frames += 1;
                }
                if frame.position - last_report >= 16 << 20 {
                    last_report = frame.position;
                    progress(frame.position - descriptor.start_position);
                }
                true
            })?;
        progress(reached - descriptor.start_position);
        Ok(VerifyReport {
            recording_id,
            frames,
            bytes: reached - descriptor.start_position,
            problem,
        })
    }

    /// Visit the frames of a recording from `from` (a frame start; `None`: the start) up to `to`
    /// (`None`: the end).
    ///
    /// # Errors
    /// Unknown id, a bad position, an unreadable segment, or a damaged frame.
    pub fn frames(
        &self,
        recording_id: i64,
        from: Option<i64>,
        to: Option<i64>,
        mut visit: impl FnMut(&FrameRef<'_>) -> bool,
    ) -> Result<i64> {
        let view = self.recording(recording_id)?;
        let from = from.unwrap_or(view.descriptor.start_position);
        let to = to.unwrap_or(view.end_position).min(view.end_position);
        crate::archive::check_replay_position(
            &self.dir,
            &view.descriptor,
            from,
            view.end_position,
        )?;
        let mut reader = RecordingReader::new(&self.dir, &view.descriptor);
        let (reached, problem) = reader.scan(from, to, &mut visit)?;
        if let Some(problem) = problem {
            if reached < to {
                return Err(ArchiveError::Corrupt {
                    path: problem.path.clone(),
                    offset: problem.file_offset,
                    reason: format!("position {}: {}", problem.position, problem.problem),
                });
            }
        }
        Ok(reached)
    }

    /// Visit the whole messages of a recording (fragments reassembled) with their headers; the
    /// header's session id is the recording's, its position the position after the message.
    /// Returns the position after the last whole message visited (where a later call resumes
    /// without cutting a fragmented message).
    ///
    /// # Errors
    /// As [`Self::frames`].
    pub fn messages(
        &self,
        recording_id: i64,
        from: Option<i64>,
        to: Option<i64>,
        mut visit: impl FnMut(&[u8], &Header) -> bool,
    ) -> Result<i64> {
        let recording = self.recording(recording_id)?;
        let session_id = recording.descriptor.session_id;
        let mut resume = from.unwrap_or(recording.descriptor.start_position);
        let mut assembler = FragmentAssembler::new();
        let mut more = true;
        let mut in_message = false;
        self.frames(recording_id, from, to, |frame| {
            let end = frame.position + frame.aligned_length as i64;
            if frame.header.is_padding() {
                if !in_message {
                    resume = end;
                }
                return true;
            }
            let flags = frame.header.flags;
            in_message = if flags & tern_transport::BEGIN_FLAG != 0 {
                flags & tern_transport::END_FLAG == 0
            } else {
                in_message && flags & tern_transport::END_FLAG == 0
            };
            let header = header_of(&frame.header, end, session_id);
            assembler.on_fragment(frame.payload(), &header, &mut |message, header| {
                more = more && visit(message, header);
            });
            if !in_message {
                resume = end;
            }
            more
        })?;
        Ok(resume)
    }
}

fn header_of(frame: &FrameHeader, position_after: i64, session_id: i32) -> Header {
    Header {
        session_id,
        stream_id: frame.stream_id,
        term_id: frame.term_id,
        term_offset: frame.term_offset,
        position: position_after,
        reserved_value: frame.reserved_value,
        flags: frame.flags,
        frame_length: frame.frame_length,
    }
}

/// Where to start a replay of `descriptor` (whose data ends at `end`) to begin at the first
/// message captured at or after `timestamp_ns`.
///
/// # Errors
/// A missing or unreadable time index.
pub fn position_at_time(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    end: i64,
    timestamp_ns: i64,
) -> Result<i64> {
    let reader = crate::time_index::TimeIndexReader::open(dir, descriptor.recording_id)?;
    Ok(match reader.seek(timestamp_ns, end)? {
        crate::time_index::TimeSeek::At(entry) => entry.position.max(descriptor.start_position),
        crate::time_index::TimeSeek::AfterLast => end,
    })
}

/// The time of the first message at or after `from` that `source` can read, and its position.
fn first_timed_message(
    reader: &mut RecordingReader,
    from: i64,
    end: i64,
    source: crate::message_time::TimeSource,
    at_or_after: Option<i64>,
) -> Result<Option<(i64, i64)>> {
    let mut found = None;
    reader.scan(from, end, |frame| {
        if frame.header.is_padding() || frame.header.flags & tern_transport::BEGIN_FLAG == 0 {
            return true;
        }
        match source.message_time(frame.payload()) {
            Some(time) if at_or_after.is_none_or(|target| time >= target) => {
                found = Some((time, frame.position));
                false
            }
            _ => true,
        }
    })?;
    Ok(found)
}

/// Where to start a replay of `descriptor` to begin at the first message whose own time (read by
/// `source`) is at or after `timestamp_ns`. Message times are taken to grow with positions (as a
/// cluster's egress timestamps do): a binary search over the capture-time index, reading the
/// message at each probed entry, then a scan of one stretch between two entries.
///
/// # Errors
/// An unreadable time index or segment.
pub fn position_at_message_time(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    end: i64,
    timestamp_ns: i64,
    source: crate::message_time::TimeSource,
) -> Result<i64> {
    if !source.is_in_message() {
        return position_at_time(dir, descriptor, end, timestamp_ns);
    }
    let index = crate::time_index::TimeIndexReader::open(dir, descriptor.recording_id)?;
    let mut reader = RecordingReader::new(dir, descriptor);
    let usable = index.first_after_position(end - 1)?;
    // The first entry whose first readable message is at or after the time.
    let (mut low, mut high) = (0u64, usable);
    while low < high {
        let middle = low + (high - low) / 2;
        let entry = index.entry(middle)?;
        match first_timed_message(
            &mut reader,
            entry.position.max(descriptor.start_position),
            end,
            source,
            None,
        )? {
            Some((time, _)) if time < timestamp_ns => low = middle + 1,
            _ => high = middle,
        }
    }
    let from = match low {
        0 => descriptor.start_position,
        later => index
            .entry(later - 1)?
            .position
            .max(descriptor.start_position),
    };
    Ok(
        first_timed_message(&mut reader, from, end, source, Some(timestamp_ns))?
            .map_or(end, |(_, position)| position),
    )
}
