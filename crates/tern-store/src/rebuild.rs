//! The way back from a lost or damaged catalog: `tern catalog rebuild`.
//!
//! Every record of the old catalog that still passes its checksum is kept as it is. A recording
//! whose record is gone (the catalog deleted, cut short, or the record damaged) but whose segment
//! files are there gets a descriptor reconstructed from its frames: stream id, term geometry,
//! start and stop positions from the frame headers, times from its time index (or the files'
//! modification times). What the frames do not hold (the publisher's session id, the channel,
//! the source identity) is said in the report. Ids with neither a record nor files become deleted
//! records, so ids are never reused. See `docs/formats.md` section 16.

use crate::catalog::{self, CATALOG_FILE, HEADER_LENGTH};
use crate::descriptor::{RecordState, RecordingDescriptor, NULL_POSITION, RECORD_LENGTH};
use crate::error::{io_error, Result, StoreError};
use crate::frame::{self, FrameHeader, FRAME_ALIGNMENT, HEADER_LENGTH as FRAME_HEADER};
use crate::ids::RecordingId;
use crate::recording_reader::{find_end, list_segments};
use crate::segment::segment_file_name;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The channel written into a reconstructed descriptor: the frames do not hold it.
pub const UNKNOWN_CHANNEL: &str = "unknown (catalog rebuilt from segment files)";
/// Aeron's default MTU: the MTU of a reconstructed descriptor unless a longer frame was seen.
const DEFAULT_MTU: i32 = 1408;
const MIN_TERM_LENGTH: i64 = 64 * 1024;
const MAX_LENGTH: i64 = 1 << 30;
const READ_CHUNK: usize = 1 << 20;

/// Where a rebuilt record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebuiltFrom {
    /// The old catalog's record, intact.
    Kept,
    /// Reconstructed from the segment files; the notes say what could not be recovered.
    Segments {
        /// What was inferred or is unknown (session id, channel, term length, ...).
        notes: Vec<String>,
    },
    /// Neither a record nor files: written as deleted so the id is not reused.
    Missing,
}

/// One recording of a rebuilt catalog.
#[derive(Debug, Clone)]
pub struct RebuiltRecording {
    /// The record written.
    pub descriptor: RecordingDescriptor,
    /// Where it came from.
    pub from: RebuiltFrom,
}

/// What `rebuild_catalog` did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    /// The new catalog's path.
    pub catalog: PathBuf,
    /// Where the old catalog was moved (kept for inspection), if there was one.
    pub old_catalog: Option<PathBuf>,
    /// Every record of the new catalog, in id order.
    pub recordings: Vec<RebuiltRecording>,
}

/// Records of the catalog file's slots that still pass their checks, by id, whatever the state
/// of its header (records sit at fixed offsets; each has its own checksum).
fn salvage(path: &Path) -> Result<BTreeMap<RecordingId, RecordingDescriptor>> {
    let mut kept = BTreeMap::new();
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(io_error(path, "read catalog")(error)),
    };
    let mut offset = HEADER_LENGTH;
    while offset + RECORD_LENGTH <= bytes.len() {
        let slot = RecordingId::new(((offset - HEADER_LENGTH) / RECORD_LENGTH) as i64);
        if let Ok(descriptor) = RecordingDescriptor::decode(&bytes[offset..offset + RECORD_LENGTH])
        {
            if descriptor.recording_id == slot {
                kept.insert(slot, descriptor);
            }
        }
        offset += RECORD_LENGTH;
    }
    // The last record written, whole in the redo file, is newer than its slot's copy.
    if let Some((slot, descriptor, _)) = path.parent().and_then(catalog::read_redo) {
        if slot as u64 <= (bytes.len().saturating_sub(HEADER_LENGTH) / RECORD_LENGTH) as u64 {
            kept.insert(RecordingId::new(slot as i64), descriptor);
        }
    }
    Ok(kept)
}

/// Rebuild the catalog of `dir` (no archive may run on it) from what the old catalog still holds
/// and from the segment files. The old catalog, if any, is kept as `catalog.tern.old-<seconds>`.
///
/// # Errors
/// The directory is in use or unreadable, a segment file cannot be read, or its frames do not
/// describe a recording (then nothing is changed).
pub fn rebuild_catalog(dir: &Path) -> Result<RebuildReport> {
    let _lock = crate::directory::lock_directory(dir)?;
    let path = dir.join(CATALOG_FILE);
    let kept = salvage(&path)?;
    let segments = list_segments(dir)?;
    let last = kept
        .keys()
        .chain(segments.keys())
        .map(|id| id.get())
        .max()
        .unwrap_or(-1);
    let mut recordings = Vec::new();
    for recording_id in (0..=last).map(RecordingId::new) {
        let rebuilt = match (kept.get(&recording_id), segments.get(&recording_id)) {
            (Some(descriptor), _) => RebuiltRecording {
                descriptor: descriptor.clone(),
                from: RebuiltFrom::Kept,
            },
            (None, Some(bases)) => {
                let (descriptor, notes) = reconstruct(dir, recording_id, bases)?;
                RebuiltRecording {
                    descriptor,
                    from: RebuiltFrom::Segments { notes },
                }
            }
            (None, None) => RebuiltRecording {
                descriptor: placeholder(recording_id),
                from: RebuiltFrom::Missing,
            },
        };
        recordings.push(rebuilt);
    }
    let old_catalog = if path.exists() {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0);
        let old = dir.join(format!("{CATALOG_FILE}.old-{seconds}"));
        std::fs::copy(&path, &old).map_err(io_error(&old, "keep the old catalog"))?;
        Some(old)
    } else {
        None
    };
    let records: Vec<RecordingDescriptor> = recordings
        .iter()
        .map(|recording| recording.descriptor.clone())
        .collect();
    catalog::replace(dir, &records)?;
    Ok(RebuildReport {
        catalog: path,
        old_catalog,
        recordings,
    })
}

fn placeholder(recording_id: RecordingId) -> RecordingDescriptor {
    RecordingDescriptor {
        recording_id,
        state: RecordState::Deleted,
        start_timestamp_ns: 0,
        stop_timestamp_ns: 0,
        start_position: 0,
        stop_position: 0,
        initial_term_id: 0,
        segment_length: MIN_TERM_LENGTH as i32,
        term_length: MIN_TERM_LENGTH as i32,
        mtu_length: DEFAULT_MTU,
        session_id: 0,
        stream_id: 0,
        stripped_channel: UNKNOWN_CHANNEL.into(),
        original_channel: UNKNOWN_CHANNEL.into(),
        source_identity: String::new(),
    }
}

/// What the frames of the first segment tell: where the first frame is, and what the headers up
/// to the first change of term (or the end of the segment's data) say.
#[derive(Debug, Default)]
struct FirstFrames {
    /// (file offset, header) of the first frame.
    first: Option<(u64, FrameHeader)>,
    /// (file offset, header) of the first frame in a later term than the first frame's.
    next_term: Option<(u64, FrameHeader)>,
    /// The highest `term_offset + aligned length` seen in the first frame's term.
    term_end: i64,
    /// The longest data frame seen.
    longest: i64,
}

fn bad(path: &Path, offset: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Walk the frames of a segment file from its first frame to the first change of term id, the
/// first frame that does not parse, or its end.
fn read_first_frames(path: &Path) -> Result<FirstFrames> {
    let file = File::open(path).map_err(io_error(path, "open segment"))?;
    let length = file
        .metadata()
        .map_err(io_error(path, "read segment metadata"))?
        .len();
    let mut seen = FirstFrames::default();
    // Skip the zeroes before the first frame (a recording that started inside a term).
    let mut offset = 0u64;
    let mut chunk = vec![0u8; READ_CHUNK];
    'find: while offset < length {
        let read = file
            .read_at(&mut chunk, offset)
            .map_err(io_error(path, "read segment"))?;
        let whole = read - read % FRAME_ALIGNMENT;
        if whole == 0 {
            offset = length;
            break;
        }
        for at in (0..whole).step_by(FRAME_ALIGNMENT) {
            if chunk[at..at + FRAME_HEADER.min(whole - at)]
                .iter()
                .any(|byte| *byte != 0)
            {
                offset += at as u64;
                break 'find;
            }
        }
        offset += whole as u64;
    }
    if offset + FRAME_HEADER as u64 > length {
        return Ok(seen);
    }
    let mut header = [0u8; FRAME_HEADER];
    while offset + FRAME_HEADER as u64 <= length {
        file.read_exact_at(&mut header, offset)
            .map_err(io_error(path, "read segment"))?;
        if header.iter().all(|byte| *byte == 0) {
            break;
        }
        let decoded = FrameHeader::decode(&header);
        let plausible = decoded.frame_length >= FRAME_HEADER as i32
            && (decoded.frame_type == frame::TYPE_DATA || decoded.frame_type == frame::TYPE_PAD)
            && decoded.term_offset >= 0
            && (decoded.term_offset as usize).is_multiple_of(FRAME_ALIGNMENT);
        if !plausible {
            if seen.first.is_none() {
                return Err(bad(path, offset, "the first frame's header is damaged"));
            }
            break;
        }
        match &seen.first {
            None => seen.first = Some((offset, decoded)),
            Some((_, first)) if decoded.term_id != first.term_id => {
                seen.next_term = Some((offset, decoded));
                break;
            }
            Some(_) => {}
        }
        let aligned = decoded.aligned_length() as i64;
        seen.term_end = seen.term_end.max(i64::from(decoded.term_offset) + aligned);
        if !decoded.is_padding() {
            seen.longest = seen.longest.max(i64::from(decoded.frame_length));
        }
        offset += aligned as u64;
    }
    Ok(seen)
}

/// The first frame's header of a segment file, if it starts with one.
fn header_at_start(path: &Path) -> Result<Option<FrameHeader>> {
    let file = File::open(path).map_err(io_error(path, "open segment"))?;
    let mut header = [0u8; FRAME_HEADER];
    match file.read_exact_at(&mut header, 0) {
        Ok(()) if header.iter().any(|byte| *byte != 0) => Ok(Some(FrameHeader::decode(&header))),
        Ok(()) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(error) => Err(io_error(path, "read segment")(error)),
    }
}

fn is_power_of_two(value: i64) -> bool {
    value > 0 && value & (value - 1) == 0
}

/// A descriptor for recording `recording_id` from its segment files (bases ascending), and notes
/// on what was inferred.
fn reconstruct(
    dir: &Path,
    recording_id: RecordingId,
    bases: &[i64],
) -> Result<(RecordingDescriptor, Vec<String>)> {
    let mut notes = Vec::new();
    let base0 = bases[0];
    let first_path = dir.join(segment_file_name(recording_id, base0));
    let seen = read_first_frames(&first_path)?;
    let Some((first_offset, first)) = seen.first else {
        // No frame at all in the first segment: an empty recording.
        notes.push("no frames: an empty recording".into());
        let mut descriptor = placeholder(recording_id);
        descriptor.state = RecordState::Valid;
        let term = if base0 % MIN_TERM_LENGTH == 0 {
            MIN_TERM_LENGTH
        } else {
            return Err(bad(
                &first_path,
                0,
                "an empty segment whose base is not a term boundary",
            ));
        };
        descriptor.term_length = term as i32;
        descriptor.segment_length = term as i32;
        descriptor.start_position = base0;
        descriptor.stop_position = base0;
        let (start, stop) = times(
            dir,
            recording_id,
            base0,
            &first_path,
            &first_path,
            &mut notes,
        );
        descriptor.start_timestamp_ns = start;
        descriptor.stop_timestamp_ns = stop;
        push_unknowns(&mut notes);
        return Ok((descriptor, notes));
    };
    let start_position = base0 + first_offset as i64;
    if first_offset as i64 != i64::from(first.term_offset) {
        return Err(bad(
            &first_path,
            first_offset,
            format!(
                "the first frame is at file offset {first_offset} but says term offset {}: not the \
                 first segment of a recording",
                first.term_offset
            ),
        ));
    }
    let term_base = start_position - i64::from(first.term_offset);
    // The term length: from two frames in different terms, or else the smallest length that
    // holds the first term's frames.
    let later = match seen.next_term {
        Some((offset, header)) => Some((base0 + offset as i64, header)),
        None => match bases.get(1) {
            Some(base1) => header_at_start(&dir.join(segment_file_name(recording_id, *base1)))?
                .map(|header| (*base1, header)),
            None => None,
        },
    };
    let term_length = match later {
        Some((position, header)) => {
            let terms = i64::from(header.term_id.wrapping_sub(first.term_id));
            let span = position - i64::from(header.term_offset) - term_base;
            if terms <= 0 || span <= 0 || span % terms != 0 || !is_power_of_two(span / terms) {
                return Err(bad(
                    &first_path,
                    first_offset,
                    format!(
                        "frames of term {} and term {} at positions {start_position} and \
                         {position} give no power-of-two term length",
                        first.term_id, header.term_id
                    ),
                ));
            }
            span / terms
        }
        None => {
            let mut length = MIN_TERM_LENGTH;
            while length < seen.term_end || term_base % length != 0 {
                length *= 2;
                if length > MAX_LENGTH {
                    return Err(bad(&first_path, first_offset, "no term length fits"));
                }
            }
            notes.push(format!(
                "term length {length} inferred (all data in one term: the smallest that holds it)"
            ));
            length
        }
    };
    if !(MIN_TERM_LENGTH..=MAX_LENGTH).contains(&term_length) || term_base % term_length != 0 {
        return Err(bad(
            &first_path,
            first_offset,
            format!("term length {term_length} does not fit the frames"),
        ));
    }
    let segment_length = match bases.get(1) {
        Some(base1) => base1 - base0,
        None => {
            let size = std::fs::metadata(&first_path)
                .map_err(io_error(&first_path, "read segment metadata"))?
                .len() as i64;
            let length = (size.max(term_length) as u64).next_power_of_two() as i64;
            notes.push(format!(
                "segment length {length} inferred (one segment file of {size} bytes)"
            ));
            length
        }
    };
    if !is_power_of_two(segment_length)
        || segment_length < term_length
        || segment_length > MAX_LENGTH
    {
        return Err(bad(
            &first_path,
            0,
            format!("segment files {segment_length} bytes apart: not a segment length"),
        ));
    }
    let terms_before = term_base / term_length;
    let initial_term_id = first.term_id.wrapping_sub(terms_before as i32);
    let mtu_length = DEFAULT_MTU.max(frame::align_frame(seen.longest as usize) as i32);
    if mtu_length > DEFAULT_MTU {
        notes.push(format!(
            "MTU {mtu_length} inferred from the longest frame seen"
        ));
    }
    let mut descriptor = RecordingDescriptor {
        recording_id,
        state: RecordState::Valid,
        start_timestamp_ns: 0,
        stop_timestamp_ns: NULL_POSITION,
        start_position,
        stop_position: NULL_POSITION,
        initial_term_id,
        segment_length: segment_length as i32,
        term_length: term_length as i32,
        mtu_length,
        session_id: 0,
        stream_id: first.stream_id,
        stripped_channel: UNKNOWN_CHANNEL.into(),
        original_channel: UNKNOWN_CHANNEL.into(),
        source_identity: String::new(),
    };
    descriptor.validate().map_err(|reason| {
        bad(
            &first_path,
            first_offset,
            format!("reconstructed descriptor: {reason}"),
        )
    })?;
    let (stop, damage) = find_end(dir, &descriptor, bases)?;
    if let Some(damage) = damage {
        notes.push(format!("stops at {stop}: damaged data after it: {damage}"));
    }
    descriptor.stop_position = stop;
    let last_path = dir.join(segment_file_name(
        recording_id,
        *bases.last().unwrap_or(&base0),
    ));
    let (start, stop_time) = times(dir, recording_id, stop, &first_path, &last_path, &mut notes);
    descriptor.start_timestamp_ns = start;
    descriptor.stop_timestamp_ns = stop_time.max(start);
    push_unknowns(&mut notes);
    Ok((descriptor, notes))
}

fn push_unknowns(notes: &mut Vec<String>) {
    notes.push(
        "session id, channel and source identity are not in segment files: session 0, channel unknown"
            .into(),
    );
}

/// Start and stop times: the time index's first and last entries, or the segment files'
/// modification times.
fn times(
    dir: &Path,
    recording_id: RecordingId,
    stop_position: i64,
    first: &Path,
    last: &Path,
    notes: &mut Vec<String>,
) -> (i64, i64) {
    if let Ok(entries) = crate::time_index::read_time_index(dir, recording_id, stop_position) {
        if let (Some(start), Some(stop)) = (entries.first(), entries.last()) {
            return (start.timestamp_ns, stop.timestamp_ns);
        }
    }
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|elapsed| elapsed.as_nanos() as i64)
            .unwrap_or(0)
    };
    notes.push("times from the segment files' modification times (no time index)".into());
    let stop = modified(last);
    (modified(first).min(stop), stop)
}

/// The error for a directory whose catalog does not describe its segment files.
fn mismatch(dir: &Path, problem: String, orphans: &BTreeMap<RecordingId, Vec<i64>>) -> StoreError {
    let segments = orphans.values().map(Vec::len).sum();
    let example = orphans
        .iter()
        .next()
        .map(|(id, bases)| segment_file_name(*id, bases.first().copied().unwrap_or(0)))
        .unwrap_or_default();
    StoreError::CatalogMismatch {
        dir: dir.to_path_buf(),
        problem,
        segments,
        example,
    }
}

/// Open the catalog of `dir` to record into it, refusing a directory whose segment files the
/// catalog does not describe (no catalog, a damaged header, or a catalog shorter than the
/// recordings on disk): a new recording would take the id of one whose files are there.
///
/// # Errors
/// [`StoreError::CatalogMismatch`], naming `tern catalog rebuild`; a file error.
pub fn open_for_recording(dir: &Path) -> Result<crate::Catalog> {
    open_for_recording_on(&crate::storage::disk(), dir)
}

/// [`open_for_recording`] in `dir` of `storage`.
///
/// # Errors
/// As [`open_for_recording`].
pub fn open_for_recording_on(
    storage: &std::sync::Arc<dyn crate::storage::Storage>,
    dir: &Path,
) -> Result<crate::Catalog> {
    let segments = crate::recording_reader::list_segments_on(storage, dir)?;
    let path = dir.join(CATALOG_FILE);
    if !storage.exists(&path) {
        if segments.is_empty() {
            return crate::Catalog::open_on(storage, dir, true);
        }
        return Err(mismatch(dir, format!("no {CATALOG_FILE}"), &segments));
    }
    let catalog = match crate::Catalog::open_on(storage, dir, true) {
        Ok(catalog) => catalog,
        Err(error @ StoreError::Corrupt { .. }) => {
            return Err(mismatch(dir, error.to_string(), &segments))
        }
        Err(error) => return Err(error),
    };
    let listed = catalog.entries().len() as i64;
    let orphans: BTreeMap<RecordingId, Vec<i64>> = segments
        .into_iter()
        .filter(|(id, _)| id.get() >= listed)
        .collect();
    if !orphans.is_empty() {
        let ids: Vec<String> = orphans.keys().take(5).map(ToString::to_string).collect();
        let more = if orphans.len() > 5 { ", ..." } else { "" };
        return Err(mismatch(
            dir,
            format!(
                "{CATALOG_FILE} lists {listed} recording{} but segment files of recording {}{more} are not in it",
                if listed == 1 { "" } else { "s" },
                ids.join(", ")
            ),
            &orphans,
        ));
    }
    Ok(catalog)
}
