//! Writing key index files off the recorder's hot path, and checking and rebuilding them.
//!
//! The recorder notes the keys of each message as it appends it (a few nanoseconds a message);
//! when a segment is full, or the recording stops, it hands the notes of that segment to the
//! indexer thread (`tern-indexer`), which sorts them and writes one file per kind. The queue is
//! bounded: when the indexer falls behind, a full segment's notes are dropped (logged), and the
//! segment is indexed from its file as soon as the indexer takes the recording's next segment
//! (a `CheckActive` job; or at the recording's stop, the next start of the archive, `tern verify`). At launch the
//! indexer checks every recording's index files and rebuilds missing or damaged ones by reading
//! their segment (after a crash: the segment that was being written, and any the indexer had not
//! written yet).

use crate::descriptor::RecordingDescriptor;
use crate::error::Result;
use crate::ids::RecordingId;
use crate::key::KeyKind;
use crate::key_index::{
    encode_key_index, key_index_file_name, read_manifest_on, write_atomically_on, Expected,
    KeyCollector, KeyIndexReader,
};
use crate::recording_reader::{list_segments_on, RecordingReader, ScanStop};
use crate::storage::{disk, read_all, Storage};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

/// Jobs queued before the recorder drops a full segment's notes rather than wait.
pub const QUEUE_LENGTH: usize = 8;

pub enum IndexJob {
    /// A segment is finished: its messages before `end_position` are in `collector`. The
    /// collector's lists go back through `recycle` once written, for the next segment's notes
    /// (memory already mapped: no page faults on the recorder's thread).
    Segment {
        recording_id: RecordingId,
        end_position: i64,
        collector: KeyCollector,
        recycle: Option<std::sync::mpsc::Sender<Vec<(i64, u32)>>>,
    },
    /// Check the index files of these (stopped) recordings; rebuild what is missing or damaged.
    Check {
        recordings: Vec<RecordingDescriptor>,
    },
    /// Index the finished segments of a recording (active, or stopped at `end_position`) that
    /// have no index files: those whose notes were dropped while the indexer was behind.
    CheckActive {
        descriptor: RecordingDescriptor,
        end_position: i64,
    },
}

/// Write the key index files of the jobs that come, until the queue closes. A check of the
/// recordings at launch stops early (between recordings) when `stopping` is set.
pub fn run_indexer(dir: PathBuf, jobs: Receiver<IndexJob>, stopping: Arc<AtomicBool>) {
    run_indexer_on(disk(), dir, jobs, stopping)
}

/// [`run_indexer`] with the files in `dir` of `storage`.
pub fn run_indexer_on(
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    jobs: Receiver<IndexJob>,
    stopping: Arc<AtomicBool>,
) {
    let storage = &storage;
    for job in jobs {
        match job {
            IndexJob::Segment {
                recording_id,
                end_position,
                collector,
                recycle,
            } => write_segment(
                storage,
                &dir,
                recording_id,
                end_position,
                collector,
                recycle,
            ),
            IndexJob::CheckActive {
                descriptor,
                end_position,
            } => match check_recording_on(
                storage,
                &dir,
                &descriptor,
                end_position,
                None,
                CheckMode::Repair,
            ) {
                Ok(checks) => {
                    for check in checks.iter().filter(|check| check.rebuilt) {
                        tracing::info!(
                            "recording {}: key index {} written from its segment ({})",
                            descriptor.recording_id,
                            check.file_name(descriptor.recording_id),
                            check.found
                        );
                    }
                }
                Err(error) => tracing::warn!(
                    "recording {}: key indexes not checked: {error}",
                    descriptor.recording_id
                ),
            },
            IndexJob::Check { recordings } => {
                for descriptor in recordings {
                    if stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    match check_recording_on(
                        storage,
                        &dir,
                        &descriptor,
                        descriptor.stop_position,
                        None,
                        CheckMode::Repair,
                    ) {
                        Ok(checks) => {
                            for check in checks.iter().filter(|check| check.rebuilt) {
                                tracing::info!(
                                    "recording {}: key index {} rebuilt ({})",
                                    descriptor.recording_id,
                                    check.file_name(descriptor.recording_id),
                                    check.found
                                );
                            }
                        }
                        Err(error) => tracing::warn!(
                            "recording {}: key indexes not checked: {error}",
                            descriptor.recording_id
                        ),
                    }
                }
            }
        }
    }
}

fn write_segment(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
    end_position: i64,
    collector: KeyCollector,
    recycle: Option<std::sync::mpsc::Sender<Vec<(i64, u32)>>>,
) {
    let base = collector.base();
    for (kind, mut entries) in collector.into_entries() {
        let bytes = encode_key_index(kind, recording_id, base, end_position, &mut entries);
        if let Some(recycle) = &recycle {
            entries.clear();
            let _ = recycle.send(entries);
        }
        let name = key_index_file_name(recording_id, base, &kind);
        if let Err(error) = write_atomically_on(storage, dir, &name, &bytes, true) {
            tracing::warn!(
                "recording {recording_id}: key index {name} not written (a filtered replay scans the segment; `tern verify` rebuilds it): {error}"
            );
        }
    }
}

/// The segments of a recording that hold data and are finished, with where their data ends:
/// `(base, end)`. `end_position` is the recording's stop, or for an active recording the end of
/// its data (its last segment, still being written, is left out).
pub fn finished_segments(
    descriptor: &RecordingDescriptor,
    bases: &[i64],
    end_position: i64,
    stopped: bool,
) -> Vec<(i64, i64)> {
    let length = i64::from(descriptor.segment_length);
    bases
        .iter()
        .filter(|base| **base + length > descriptor.start_position && **base < end_position)
        .filter_map(|base| {
            let segment_end = base + length;
            if stopped {
                Some((*base, segment_end.min(end_position)))
            } else {
                (segment_end <= end_position).then_some((*base, segment_end))
            }
        })
        .collect()
}

/// What was found of one index file, and whether it was rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndexCheck {
    /// The segment's base.
    pub segment_base: i64,
    /// The kind.
    pub kind: KeyKind,
    /// `ok`, `missing`, or what is wrong with it.
    pub found: String,
    /// Whether it was written anew.
    pub rebuilt: bool,
}

impl KeyIndexCheck {
    /// Whether the file was good as found.
    pub fn is_ok(&self) -> bool {
        self.found == "ok"
    }

    /// The file's name.
    pub fn file_name(&self, recording_id: RecordingId) -> String {
        key_index_file_name(recording_id, self.segment_base, &self.kind)
    }
}

fn describe_error(error: &crate::StoreError) -> String {
    match error {
        crate::StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            "missing".into()
        }
        crate::StoreError::Corrupt { offset, reason, .. } => {
            format!("damaged at offset {offset}: {reason}")
        }
        other => other.to_string(),
    }
}

/// Read one finished segment and note its messages' keys of `kinds`.
///
/// # Errors
/// The segment is unreadable; a damaged frame is returned as `Err(Ok(stop))`.
fn collect_segment(
    reader: &mut RecordingReader,
    descriptor: &RecordingDescriptor,
    kinds: &[KeyKind],
    base: i64,
    end: i64,
) -> Result<std::result::Result<KeyCollector, ScanStop>> {
    let mut collector = KeyCollector::new(kinds, base);
    let from = base.max(descriptor.start_position);
    let (_, stop) = reader.scan(from, end, |frame| {
        if !frame.header.is_padding() && frame.header.flags & crate::frame::BEGIN_FLAG != 0 {
            collector.note(&frame.header, frame.payload(), frame.position);
        }
        true
    })?;
    Ok(match stop {
        Some(stop) => Err(stop),
        None => Ok(collector),
    })
}

/// How index files are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckMode {
    /// Header, length and key table of each file; nothing is written (`describe`).
    Look,
    /// As `Look`, and the files found wrong are rebuilt from their segment (archive launch).
    Repair,
    /// Every file read whole and compared with what its segment gives; the ones that differ are
    /// rebuilt (`verify`, `index`).
    Full,
}

/// Check the key index files of a recording whose data ends at `end_position` (its stop, or for
/// an active one the end of its data), for `kinds` (`None`: the kinds of its manifest).
///
/// # Errors
/// The manifest or a segment is unreadable.
pub fn check_recording(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    end_position: i64,
    kinds: Option<&[KeyKind]>,
    mode: CheckMode,
) -> Result<Vec<KeyIndexCheck>> {
    check_recording_on(&disk(), dir, descriptor, end_position, kinds, mode)
}

/// [`check_recording`] with the files in `dir` of `storage`.
///
/// # Errors
/// The manifest or a segment is unreadable.
pub fn check_recording_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    descriptor: &RecordingDescriptor,
    end_position: i64,
    kinds: Option<&[KeyKind]>,
    mode: CheckMode,
) -> Result<Vec<KeyIndexCheck>> {
    let recording_id = descriptor.recording_id;
    let kinds = match kinds {
        Some(kinds) => kinds.to_vec(),
        None => read_manifest_on(storage, dir, recording_id)?,
    };
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    let stopped = !descriptor.is_active();
    let segments = list_segments_on(storage, dir)?;
    let bases = segments
        .get(&recording_id)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut reader = RecordingReader::new_on(storage, dir, descriptor);
    let mut checks = Vec::new();
    for (base, end) in finished_segments(descriptor, bases, end_position, stopped) {
        let looked: Vec<String> = if mode == CheckMode::Full {
            Vec::new()
        } else {
            kinds
                .iter()
                .map(|kind| {
                    let expected = Expected {
                        kind: *kind,
                        recording_id,
                        segment_base: base,
                        end_position: end,
                    };
                    match KeyIndexReader::open_on(storage, dir, &expected) {
                        Ok(_) => "ok".to_string(),
                        Err(error) => describe_error(&error),
                    }
                })
                .collect()
        };
        let all_ok = mode != CheckMode::Full && looked.iter().all(|state| state == "ok");
        if mode == CheckMode::Look || all_ok {
            checks.extend(kinds.iter().zip(looked).map(|(kind, found)| KeyIndexCheck {
                segment_base: base,
                kind: *kind,
                found,
                rebuilt: false,
            }));
            continue;
        }
        match collect_segment(&mut reader, descriptor, &kinds, base, end)? {
            Ok(collector) => {
                let found = (mode != CheckMode::Full).then_some(looked);
                checks.extend(check_collected_on(
                    storage,
                    dir,
                    recording_id,
                    end,
                    collector,
                    found,
                ));
            }
            Err(stop) => {
                // A damaged segment (verify reports it): its index files are left as they are.
                checks.extend(kinds.iter().map(|kind| KeyIndexCheck {
                    segment_base: base,
                    kind: *kind,
                    found: format!("not checked: the segment is damaged: {stop}"),
                    rebuilt: false,
                }));
            }
        }
    }
    Ok(checks)
}

/// Compare a finished segment's index files (segment data ending at `end`) with the messages
/// `collector` noted in it, and rewrite those that differ. `found` gives what a look at each
/// file found (rewritten unless `ok`); without it every file is read whole and must hold exactly
/// what the segment gives (the encoding is deterministic). A file that cannot be written is
/// reported so, not as an error.
pub fn check_collected(
    dir: &Path,
    recording_id: RecordingId,
    end: i64,
    collector: KeyCollector,
    found: Option<Vec<String>>,
) -> Vec<KeyIndexCheck> {
    check_collected_on(&disk(), dir, recording_id, end, collector, found)
}

/// [`check_collected`] with the files in `dir` of `storage`.
pub fn check_collected_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
    end: i64,
    collector: KeyCollector,
    found: Option<Vec<String>>,
) -> Vec<KeyIndexCheck> {
    let base = collector.base();
    let mut checks = Vec::new();
    for (index, (kind, mut entries)) in collector.into_entries().into_iter().enumerate() {
        let bytes = encode_key_index(kind, recording_id, base, end, &mut entries);
        let name = key_index_file_name(recording_id, base, &kind);
        let state = match &found {
            Some(found) => found[index].clone(),
            None => {
                let expected = Expected {
                    kind,
                    recording_id,
                    segment_base: base,
                    end_position: end,
                };
                match read_all(storage.as_ref(), &dir.join(&name)) {
                    Ok(existing) if existing == bytes => "ok".to_string(),
                    Ok(existing) => match crate::key_index::check_key_index(&existing, &expected) {
                        Ok(_) => "stale: it does not list the segment's messages".into(),
                        Err((offset, reason)) => format!("damaged at offset {offset}: {reason}"),
                    },
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => "missing".into(),
                    Err(error) => format!("unreadable: {error}"),
                }
            }
        };
        let (state, rebuilt) = if state == "ok" {
            (state, false)
        } else {
            match write_atomically_on(storage, dir, &name, &bytes, true) {
                Ok(()) => (state, true),
                Err(error) => (format!("{state}; not rebuilt: {error}"), false),
            }
        };
        checks.push(KeyIndexCheck {
            segment_base: base,
            kind,
            found: state,
            rebuilt,
        });
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::{RecordState, NULL_POSITION};

    #[test]
    fn finished_segments_of_stopped_and_active_recordings() {
        let descriptor = RecordingDescriptor {
            recording_id: RecordingId::new(0),
            state: RecordState::Valid,
            start_timestamp_ns: 0,
            stop_timestamp_ns: NULL_POSITION,
            start_position: 4096,
            stop_position: NULL_POSITION,
            initial_term_id: 0,
            segment_length: 1 << 17,
            term_length: 1 << 16,
            mtu_length: 1408,
            session_id: 1,
            stream_id: 1,
            stripped_channel: "aeron:ipc".into(),
            original_channel: "aeron:ipc".into(),
            source_identity: "aeron:ipc".into(),
        };
        let bases = [0, 1 << 17, 2 << 17];
        assert_eq!(
            finished_segments(&descriptor, &bases, (2 << 17) + 64, true),
            vec![(0, 1 << 17), (1 << 17, 2 << 17), (2 << 17, (2 << 17) + 64)]
        );
        assert_eq!(
            finished_segments(&descriptor, &bases, (2 << 17) + 64, false),
            vec![(0, 1 << 17), (1 << 17, 2 << 17)],
            "the segment being written is not finished"
        );
        assert_eq!(
            finished_segments(&descriptor, &bases, 2 << 17, true),
            vec![(0, 1 << 17), (1 << 17, 2 << 17)],
            "a segment file that starts at the stop holds nothing"
        );
    }

    /// A segment of tern egress messages of four cluster sessions, among messages that are not
    /// (another kind, another version, Aeron Cluster's header, too short), written by the
    /// segment writer; its `tern-egress` index, built from the file, finds each session's
    /// messages and nothing else.
    #[test]
    fn the_tern_egress_index_of_a_segment_finds_each_sessions_messages() {
        use crate::egress_header::encode_header;
        use crate::frame::{align_frame, term_of, FrameHeader, HEADER_LENGTH, TYPE_DATA};
        use crate::key_index::{Expected, KeyIndexReader};
        use crate::segment_writer::{SegmentGeometry, SegmentWriter, WriteMode};
        const TERM: i64 = 64 * 1024;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut descriptor = crate::descriptor::sample(RecordingId::new(0));
        descriptor.start_position = 0;
        descriptor.initial_term_id = 0;
        descriptor.term_length = TERM as i32;
        descriptor.segment_length = TERM as i32;
        descriptor.session_id = 0;
        descriptor.stream_id = 1;
        let mut block = Vec::new();
        let mut expected: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
        let mut sequences = [0u64; 4];
        for number in 0..300u64 {
            let session = 1000 + (number * 7 % 4) as i64;
            let mut payload = Vec::new();
            let egress = !number.is_multiple_of(5);
            if egress {
                let sequence = &mut sequences[(session - 1000) as usize];
                *sequence += 1;
                encode_header(
                    session,
                    *sequence,
                    10 + number,
                    1_700_000_000_000_000_000 + number as i64 * 1_000,
                    number + 1,
                    &mut payload,
                );
                payload.resize(payload.len() + (number % 50) as usize, number as u8);
                expected
                    .entry(session)
                    .or_default()
                    .push(block.len() as i64);
            } else {
                // Not tern egress, with the session id where the header has it.
                let mut other = Vec::new();
                encode_header(session, 1, 1, 1, 1, &mut other);
                match number % 4 {
                    0 => other[1] = 11,
                    1 => other[0] = 1,
                    2 => other.truncate(47),
                    _ => other[4] = 1,
                }
                payload = other;
            }
            let length = HEADER_LENGTH + payload.len();
            let mut frame = vec![0u8; align_frame(length)];
            let (term_id, term_offset) = term_of(block.len() as i64, 0, TERM as i32);
            FrameHeader {
                frame_length: length as i32,
                flags: 0xC0,
                frame_type: TYPE_DATA,
                term_offset,
                session_id: 0,
                stream_id: 1,
                term_id,
                reserved_value: session,
            }
            .encode(&mut frame);
            frame[HEADER_LENGTH..length].copy_from_slice(&payload);
            block.extend_from_slice(&frame);
        }
        assert!(block.len() < TERM as usize, "one segment");
        let end = block.len() as i64;
        let geometry = SegmentGeometry {
            dir: dir.path().to_path_buf(),
            recording_id: RecordingId::new(0),
            start_position: 0,
            term_length: TERM,
            segment_length: TERM,
        };
        let mut writer =
            SegmentWriter::new(geometry, WriteMode::Buffered, false, 2 * TERM as usize)
                .expect("writer");
        writer.append(&block, 0).expect("append");
        writer.sync().expect("sync");
        drop(writer);
        descriptor.stop_position = end;
        let checks = check_recording(
            dir.path(),
            &descriptor,
            end,
            Some(&[KeyKind::TernEgress]),
            CheckMode::Repair,
        )
        .expect("check");
        assert_eq!(checks.len(), 1, "{checks:?}");
        assert!(checks[0].rebuilt, "{checks:?}");
        assert_eq!(
            checks[0].file_name(RecordingId::new(0)),
            "0-0.tern-egress.kix"
        );
        let mut reader = KeyIndexReader::open(
            dir.path(),
            &Expected {
                kind: KeyKind::TernEgress,
                recording_id: RecordingId::new(0),
                segment_base: 0,
                end_position: end,
            },
        )
        .expect("index");
        assert_eq!(expected.len(), 4);
        for (session, positions) in &expected {
            assert_eq!(&reader.positions_of(*session).expect("lookup"), positions);
        }
        assert_eq!(
            expected.values().map(Vec::len).sum::<usize>(),
            240,
            "the others have no key"
        );
        assert!(reader.positions_of(1).expect("lookup").is_empty());
        // A full check finds the file as the segment gives it.
        let again = check_recording(
            dir.path(),
            &descriptor,
            end,
            Some(&[KeyKind::TernEgress]),
            CheckMode::Full,
        )
        .expect("check again");
        assert!(again.iter().all(KeyIndexCheck::is_ok), "{again:?}");
    }
}
