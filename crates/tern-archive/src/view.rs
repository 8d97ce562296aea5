//! Read-only access to an archive directory, with or without an archive running on it: listing,
//! describing, verifying and reading recordings. Active recordings' ends are found by scanning.

use crate::error::{ArchiveError, Result};
use crate::replay::key_search::{check_session, Found, KeySearch, SearchStats};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tern_store::catalog::{Catalog, CatalogEntry};
use tern_store::descriptor::RecordingDescriptor;
use tern_store::indexer::{check_collected, check_recording, CheckMode, KeyIndexCheck};
use tern_store::key::{KeyFilter, KeyKind};
use tern_store::key_index::{read_manifest, KeyCollector};
use tern_store::recording_reader::{find_end, list_segments, FrameRef, RecordingReader, ScanStop};
use tern_store::time_index::{read_time_index, TimeEntry};
use tern_store::RecordingId;
use tern_transport::{FragmentAssembler, Header};

/// Bytes read at first for one message of a filtered read (more if it is longer): one message,
/// not a whole chunk of the recording. The reader grows a read 4 times: the second read is a
/// page, the amount the key search announces to the kernel per message, so it never waits for
/// the disk (growing 8 times went past the announced page on every 1 KiB message).
const MESSAGE_READ: usize = 1024;

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
    pub recording_id: RecordingId,
    /// Data frames checked.
    pub frames: u64,
    /// Bytes checked.
    pub bytes: i64,
    /// The first bad frame, if any.
    pub problem: Option<ScanStop>,
    /// The key index files of the finished segments checked (whole, against the segment's
    /// messages), for the kinds the recording indexes, and which were rebuilt.
    pub key_indexes: Vec<KeyIndexCheck>,
    /// The time index checked (header, every entry, each entry's position a frame start) and,
    /// for a stopped recording, rebuilt from its sound entries if it was not sound.
    pub time_index: tern_store::time_index::TimeIndexCheck,
}

/// What a read filtered by key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilteredRead {
    /// Where a later read resumes without missing or repeating a message: after the last message
    /// visited, or where the search reached (every message with the key before it was visited).
    pub resume: i64,
    /// How the messages were found: index files read, frames scanned.
    pub stats: SearchStats,
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
    segments: BTreeMap<RecordingId, Vec<i64>>,
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

    fn bases(&self, recording_id: RecordingId) -> &[i64] {
        self.segments
            .get(&recording_id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// One recording, its end found by scanning if it is active.
    ///
    /// # Errors
    /// Unknown id, damaged entry, unreadable segment.
    pub fn recording(&self, recording_id: RecordingId) -> Result<RecordingView> {
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
    pub fn segment_files(&self, recording_id: RecordingId) -> Vec<SegmentInfo> {
        self.bases(recording_id)
            .iter()
            .map(|base| {
                let path = self
                    .dir
                    .join(tern_store::segment::segment_file_name(recording_id, *base));
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
        Ok(read_time_index(
            &self.dir,
            view.descriptor.recording_id,
            view.end_position,
        )?)
    }

    /// The position to replay from to start at the first message captured at or after
    /// `timestamp_ns` (epoch nanoseconds): the recording's start for a time before its first
    /// message, its end for a time after its last.
    ///
    /// # Errors
    /// Unknown id, or a missing or unreadable time index.
    pub fn position_at_time(&self, recording_id: RecordingId, timestamp_ns: i64) -> Result<i64> {
        self.position_at_time_from(recording_id, timestamp_ns, Default::default())
    }

    /// As [`Self::position_at_time`], with the time of each message taken from `source`.
    ///
    /// # Errors
    /// Unknown id, an unreadable time index or segment.
    pub fn position_at_time_from(
        &self,
        recording_id: RecordingId,
        timestamp_ns: i64,
        source: tern_store::message_time::TimeSource,
    ) -> Result<i64> {
        let view = self.recording(recording_id)?;
        Ok(tern_store::time_seek::position_at_message_time(
            &self.dir,
            &view.descriptor,
            view.end_position,
            timestamp_ns,
            source,
        )?)
    }

    /// Refuse a time source that can read no message of the recording: its timestamp ends past
    /// the longest first fragment (the MTU less the frame header), as a key field is refused.
    ///
    /// # Errors
    /// Unknown id, or [`ArchiveError::Invalid`] saying why.
    pub fn check_time_source(
        &self,
        recording_id: RecordingId,
        source: tern_store::message_time::TimeSource,
    ) -> Result<()> {
        let view = self.recording(recording_id)?;
        Ok(tern_store::time_seek::check_time_source(
            &view.descriptor,
            source,
        )?)
    }

    /// Check every frame of a recording (header and CRC32C), calling `progress` with the bytes
    /// checked so far now and then; in the same pass, check the key index file of each finished
    /// segment for the kinds the recording indexes (its manifest) against the segment's messages,
    /// and rebuild the missing, damaged or stale ones.
    ///
    /// # Errors
    /// Unknown id, or an unreadable segment or manifest.
    pub fn verify(
        &self,
        recording_id: RecordingId,
        mut progress: impl FnMut(i64),
    ) -> Result<VerifyReport> {
        let view = self.recording(recording_id)?;
        let descriptor = &view.descriptor;
        let kinds = read_manifest(&self.dir, recording_id)?;
        let mut reader = RecordingReader::new(&self.dir, descriptor);
        let mut frames = 0u64;
        let mut last_report = descriptor.start_position;
        let segment_length = i64::from(descriptor.segment_length);
        let mut collector: Option<KeyCollector> = None;
        let mut key_indexes = Vec::new();
        let dir = self.dir.clone();
        let (mut entries, mut time_problem, total_entries) =
            tern_store::time_index::check_entries(&self.dir, descriptor, view.end_position);
        let mut next_entry = 0;
        let (reached, problem) =
            reader.scan(descriptor.start_position, view.end_position, |frame| {
                // Each time index entry must point at a frame start.
                while next_entry < entries.len() && entries[next_entry].position < frame.position {
                    time_problem = Some((
                        tern_store::time_index::entry_offset(next_entry),
                        format!(
                            "entry {next_entry}: position {} is not a frame start",
                            entries[next_entry].position
                        ),
                    ));
                    entries.truncate(next_entry);
                }
                while next_entry < entries.len() && entries[next_entry].position == frame.position {
                    next_entry += 1;
                }
                if !kinds.is_empty() {
                    let base = tern_store::segment::segment_base(
                        descriptor.start_position,
                        frame.position,
                        i64::from(descriptor.term_length),
                        segment_length,
                    );
                    if collector.as_ref().is_some_and(|c| c.base() != base) {
                        // Every segment before the one of this frame is finished.
                        let done = collector.take().expect("a collector");
                        let end = done.base() + segment_length;
                        key_indexes.extend(check_collected(&dir, recording_id, end, done, None));
                    }
                    let collector =
                        collector.get_or_insert_with(|| KeyCollector::new(&kinds, base));
                    if !frame.header.is_padding()
                        && frame.header.flags & tern_transport::BEGIN_FLAG != 0
                    {
                        collector.note(&frame.header, frame.payload(), frame.position);
                    }
                }
                if !frame.header.is_padding() {
                    frames += 1;
                }
                if frame.position - last_report >= 16 << 20 {
                    last_report = frame.position;
                    progress(frame.position - descriptor.start_position);
                }
                true
            })?;
        if let Some(last) = collector {
            // The last segment is finished when the recording stopped (or its data fills it).
            let segment_end = last.base() + segment_length;
            let finished = !view.active || reached == segment_end;
            if problem.is_none() && finished {
                let end = reached.min(segment_end);
                key_indexes.extend(check_collected(&self.dir, recording_id, end, last, None));
            }
        }
        progress(reached - descriptor.start_position);
        if problem.is_none() && next_entry < entries.len() {
            time_problem = Some((
                tern_store::time_index::entry_offset(next_entry),
                format!(
                    "entry {next_entry}: position {} is not a frame start",
                    entries[next_entry].position
                ),
            ));
            entries.truncate(next_entry);
        }
        let time_index = self.settle_time_index(&view, entries, time_problem, total_entries)?;
        Ok(VerifyReport {
            recording_id,
            frames,
            bytes: reached - descriptor.start_position,
            problem,
            key_indexes,
            time_index,
        })
    }

    /// The outcome of a time index check; a stopped recording's unsound index is rewritten with
    /// its sound entries (or, with none, the recording's start time at its start position).
    fn settle_time_index(
        &self,
        view: &RecordingView,
        mut entries: Vec<TimeEntry>,
        problem: Option<(u64, String)>,
        total: u64,
    ) -> Result<tern_store::time_index::TimeIndexCheck> {
        let descriptor = &view.descriptor;
        let recording_id = descriptor.recording_id;
        let path = self
            .dir
            .join(tern_store::time_index::time_index_file_name(recording_id));
        let sound = entries.len() as u64;
        let mut check = tern_store::time_index::TimeIndexCheck {
            path,
            entries: sound,
            dropped: if problem.is_some() {
                total.saturating_sub(sound)
            } else {
                0
            },
            problem,
            rebuilt: false,
        };
        if check.problem.is_some() && !view.active {
            if entries.is_empty() && view.end_position > descriptor.start_position {
                entries.push(TimeEntry {
                    timestamp_ns: descriptor.start_timestamp_ns,
                    position: descriptor.start_position,
                });
            }
            tern_store::time_index::replace_time_index(&self.dir, recording_id, &entries)?;
            check.rebuilt = true;
        }
        Ok(check)
    }

    /// The kinds a recording is indexed by (its manifest), and what a look at each index file of
    /// its finished segments finds (header, length, key table; nothing is written).
    ///
    /// # Errors
    /// Unknown id, an unreadable manifest.
    pub fn key_indexes(
        &self,
        recording_id: RecordingId,
    ) -> Result<(Vec<KeyKind>, Vec<KeyIndexCheck>)> {
        let view = self.recording(recording_id)?;
        let kinds = read_manifest(&self.dir, recording_id)?;
        let checks = check_recording(
            &self.dir,
            &view.descriptor,
            view.end_position,
            Some(&kinds),
            CheckMode::Look,
        )?;
        Ok((kinds, checks))
    }

    /// Index a recording by `kinds` as well (added to its manifest): build the index files of its
    /// finished segments for every kind of the manifest that are missing or differ from the
    /// segment's messages. For a recording an archive is writing, its segments finished so far.
    ///
    /// # Errors
    /// Unknown id, a kind that cannot be indexed, an unreadable segment, a manifest that cannot be
    /// read or written.
    pub fn build_key_index(
        &self,
        recording_id: RecordingId,
        kinds: &[KeyKind],
    ) -> Result<Vec<KeyIndexCheck>> {
        let view = self.recording(recording_id)?;
        if let Some(kind) = kinds.iter().find(|kind| !kind.is_indexable()) {
            return Err(ArchiveError::Invalid(format!(
                "key kind {kind} cannot be indexed: a session is a whole recording"
            )));
        }
        let mut all = read_manifest(&self.dir, recording_id)?;
        for kind in kinds {
            if !all.contains(kind) {
                all.push(*kind);
            }
        }
        let bytes = tern_store::key_index::encode_manifest(recording_id, &all);
        tern_store::key_index::write_atomically(
            &self.dir,
            &tern_store::key_index::manifest_file_name(recording_id),
            &bytes,
            true,
        )?;
        Ok(check_recording(
            &self.dir,
            &view.descriptor,
            view.end_position,
            Some(&all),
            CheckMode::Full,
        )?)
    }

    /// Visit the frames of a recording from `from` (a frame start; `None`: the start) up to `to`
    /// (`None`: the end).
    ///
    /// # Errors
    /// Unknown id, a bad position, an unreadable segment, or a damaged frame.
    pub fn frames(
        &self,
        recording_id: RecordingId,
        from: Option<i64>,
        to: Option<i64>,
        mut visit: impl FnMut(&FrameRef<'_>) -> bool,
    ) -> Result<i64> {
        let view = self.recording(recording_id)?;
        let from = from.unwrap_or(view.descriptor.start_position);
        let to = to.unwrap_or(view.end_position).min(view.end_position);
        tern_store::check_replay_position(&self.dir, &view.descriptor, from, view.end_position)?;
        let mut reader = RecordingReader::new(&self.dir, &view.descriptor);
        let (reached, problem) = reader.scan(from, to, &mut visit)?;
        if let Some(problem) = problem {
            if reached < to {
                return Err(problem.to_error().into());
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
        recording_id: RecordingId,
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
            let header = Header::from_frame(&frame.header, end, session_id);
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

impl ArchiveView {
    /// Visit the whole messages of a recording that have the key of `filter` (fragments
    /// reassembled), as [`Self::messages`] does, from `from` (a frame start) up to `to`. The key's
    /// messages are found through the key index of each finished segment, or by scanning the
    /// segment where its index is missing or damaged (or the recording is active and the segment
    /// not finished). A session key selects the whole recording of that session, or is refused
    /// naming the recordings of that session on the stream.
    ///
    /// # Errors
    /// As [`Self::frames`]; a session key of another session.
    pub fn messages_with_key(
        &self,
        recording_id: RecordingId,
        from: Option<i64>,
        to: Option<i64>,
        filter: &KeyFilter,
        mut visit: impl FnMut(&[u8], &Header) -> bool,
    ) -> Result<FilteredRead> {
        let recording = self.recording(recording_id)?;
        let descriptor = &recording.descriptor;
        if filter.kind == KeyKind::Session {
            check_session(descriptor, filter.value, self.catalog.recordings())?;
            let resume = self.messages(recording_id, from, to, visit)?;
            return Ok(FilteredRead {
                resume,
                stats: SearchStats::default(),
            });
        }
        crate::replay::key_search::check_filter(descriptor, filter)?;
        let available = recording.end_position;
        let from = from.unwrap_or(descriptor.start_position);
        let end = to.unwrap_or(available).min(available);
        tern_store::check_replay_position(&self.dir, descriptor, from, available)?;
        let session_id = descriptor.session_id;
        let mut search = KeySearch::new(
            &tern_store::disk(),
            self.dir.clone(),
            descriptor,
            *filter,
            from,
        );
        let mut reader = RecordingReader::new(&self.dir, descriptor).scattered();
        let mut assembler = FragmentAssembler::new();
        loop {
            let start = match search.next(end, available, !recording.active, usize::MAX)? {
                Found::Budget => continue,
                Found::Exhausted(reached) => {
                    return Ok(FilteredRead {
                        resume: reached,
                        stats: search.stats(),
                    })
                }
                Found::At(start) => start,
            };
            search.read_ahead();
            let mut outcome: Option<Result<i64, String>> = None;
            let mut more = true;
            let mut first = true;
            let (_, problem) = reader.scan_reading(start, end, MESSAGE_READ, |frame| {
                let flags = frame.header.flags;
                if first {
                    first = false;
                    if frame.header.is_padding() || flags & tern_transport::BEGIN_FLAG == 0 {
                        outcome = Some(Err("not the first frame of a message".into()));
                        return false;
                    }
                    if !filter.matches(frame.header.reserved_value, frame.payload()) {
                        outcome = Some(Err(format!("a message without key {filter}")));
                        return false;
                    }
                } else if frame.header.is_padding() {
                    // Fragments are contiguous: a message cut short (damage Aeron never writes).
                    outcome = Some(Ok(frame.position));
                    return false;
                }
                let after = frame.position + frame.aligned_length as i64;
                let header = Header::from_frame(&frame.header, after, session_id);
                assembler.on_fragment(frame.payload(), &header, &mut |message, header| {
                    more = visit(message, header);
                });
                if flags & tern_transport::END_FLAG != 0 {
                    outcome = Some(Ok(after));
                    return false;
                }
                true
            })?;
            match outcome {
                Some(Ok(after)) => {
                    search.take();
                    if !more {
                        return Ok(FilteredRead {
                            resume: after,
                            stats: search.stats(),
                        });
                    }
                }
                Some(Err(why)) => search.distrust(start, &why),
                None => {
                    if let Some(problem) = problem {
                        return Err(problem.to_error().into());
                    }
                    // The message's last frames are past `to` (or not recorded yet): resume at it.
                    return Ok(FilteredRead {
                        resume: start,
                        stats: search.stats(),
                    });
                }
            }
        }
    }
}
