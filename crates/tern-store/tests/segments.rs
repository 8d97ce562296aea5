//! The segment writer and reader alone (no Aeron): random frame streams laid out like an Aeron
//! log (padding at term ends), written in random blocks with random flushes, in both write
//! modes, must read back frame for frame; recovery finds the end; damage is located. On a
//! simulated disk: a crash at every sync keeps every synced frame; short writes, a full disk and
//! a failed sync are met as a user relies on.

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tern_store::frame::{align_frame, term_of, FrameHeader, HEADER_LENGTH, TYPE_DATA, TYPE_PAD};
use tern_store::{
    find_end, find_end_on, list_segments, list_segments_on, FaultDisk, Io, RecordState,
    RecordingDescriptor, RecordingId, RecordingReader, ScanStop, SegmentGeometry, SegmentWriter,
    SimDisk, Storage, StoreError, WriteFault, WriteMode, NULL_POSITION,
};

const TERM: i64 = 64 * 1024;
const SEGMENT: i64 = 2 * TERM;
const INITIAL_TERM_ID: i32 = 7;
const STREAM: i32 = 33;

fn descriptor(start_position: i64) -> RecordingDescriptor {
    RecordingDescriptor {
        recording_id: RecordingId::new(0),
        state: RecordState::Valid,
        start_timestamp_ns: 1,
        stop_timestamp_ns: NULL_POSITION,
        start_position,
        stop_position: NULL_POSITION,
        initial_term_id: INITIAL_TERM_ID,
        segment_length: SEGMENT as i32,
        term_length: TERM as i32,
        mtu_length: 4096,
        session_id: 1,
        stream_id: STREAM,
        stripped_channel: "aeron:ipc".into(),
        original_channel: "aeron:ipc".into(),
        source_identity: "aeron:ipc".into(),
    }
}

/// Lay out messages as an Aeron log does from `start`: a frame that does not fit in the rest of
/// its term is preceded by a padding frame to the term's end. Returns the log bytes and, per
/// frame, (position, payload or None for padding).
/// A frame of a laid-out log: its position and its payload (`None` for padding).
type LaidFrame = (i64, Option<Vec<u8>>);

fn lay_out(start: i64, payloads: &[Vec<u8>]) -> (Vec<u8>, Vec<LaidFrame>) {
    let mut log = Vec::new();
    let mut frames = Vec::new();
    let mut position = start;
    let push = |log: &mut Vec<u8>,
                position: &mut i64,
                frame_length: usize,
                kind: u16,
                payload: Option<&[u8]>| {
        let (term_id, term_offset) = term_of(*position, INITIAL_TERM_ID, TERM as i32);
        let aligned = align_frame(frame_length);
        let mut frame = vec![0u8; aligned];
        FrameHeader {
            frame_length: frame_length as i32,
            flags: 0xC0,
            frame_type: kind,
            term_offset,
            session_id: 1,
            stream_id: STREAM,
            term_id,
            reserved_value: *position,
        }
        .encode(&mut frame);
        if let Some(payload) = payload {
            frame[HEADER_LENGTH..HEADER_LENGTH + payload.len()].copy_from_slice(payload);
        } else {
            // A padding frame's body is whatever the term held: make it noise.
            for (index, byte) in frame.iter_mut().enumerate().skip(HEADER_LENGTH) {
                *byte = index as u8 | 1;
            }
        }
        log.extend_from_slice(&frame);
        *position += aligned as i64;
    };
    for payload in payloads {
        let aligned = align_frame(HEADER_LENGTH + payload.len()) as i64;
        let remaining = TERM - (position & (TERM - 1));
        if aligned > remaining {
            frames.push((position, None));
            push(&mut log, &mut position, remaining as usize, TYPE_PAD, None);
        }
        frames.push((position, Some(payload.clone())));
        push(
            &mut log,
            &mut position,
            HEADER_LENGTH + payload.len(),
            TYPE_DATA,
            Some(payload),
        );
    }
    (log, frames)
}

/// Split the log into blocks of whole frames that never cross a term end, as block_poll gives.
fn blocks(start: i64, log: &[u8], cuts: &[usize]) -> Vec<(i64, Vec<u8>)> {
    let mut result = Vec::new();
    let mut offset = 0usize;
    let mut cut = cuts.iter().cycle();
    while offset < log.len() {
        let position = start + offset as i64;
        let term_end = (TERM - (position & (TERM - 1))) as usize;
        let wanted = (*cut.next().unwrap_or(&4096)).max(1).min(term_end);
        let mut end = offset;
        loop {
            let header = FrameHeader::decode(&log[end..]);
            let next = end + header.aligned_length();
            if end > offset && next - offset > wanted {
                break;
            }
            end = next;
            if end >= log.len() || end - offset >= term_end || header.frame_type == TYPE_PAD {
                break;
            }
        }
        result.push((position, log[offset..end].to_vec()));
        offset = end;
    }
    result
}

fn check_round_trip(
    start: i64,
    payloads: Vec<Vec<u8>>,
    cuts: Vec<usize>,
    flush_every: usize,
    mode: WriteMode,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let geometry = SegmentGeometry {
        dir: dir.path().to_path_buf(),
        recording_id: RecordingId::new(0),
        start_position: start,
        term_length: TERM,
        segment_length: SEGMENT,
    };
    let (log, frames) = lay_out(start, &payloads);
    let end = start + log.len() as i64;
    let mut writer = SegmentWriter::new(geometry, mode, true, 128 * 1024 + 4096).expect("writer");
    for (index, (position, block)) in blocks(start, &log, &cuts).into_iter().enumerate() {
        writer.append(&block, position).expect("append");
        if index % flush_every.max(1) == 0 {
            writer.flush().expect("flush");
        }
    }
    writer.sync().expect("final write and sync");
    assert_eq!(writer.flushed_position(), end);
    assert_eq!(writer.synced_position(), end);
    // Recovery finds the end of the last frame, and every frame reads back.
    assert_eq!(
        recover_in(&tern_store::disk(), dir.path(), start),
        (end, None, frames)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn random_frame_streams_round_trip_through_segments(
        start_frames in 0i64..5000,
        sizes in prop::collection::vec(0usize..3000, 1..300),
        cuts in prop::collection::vec(1usize..20000, 1..20),
        flush_every in 1usize..8,
        direct in any::<bool>(),
    ) {
        let start = start_frames * 32;
        let payloads: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(index, size)| vec![(index % 255) as u8 + 1; *size]).collect();
        let mode = if direct { WriteMode::Direct } else { WriteMode::Buffered };
        check_round_trip(start, payloads, cuts, flush_every, mode);
    }
}

#[test]
fn a_recording_that_starts_mid_segment_and_fills_several_segments() {
    let payloads: Vec<Vec<u8>> = (0..2000)
        .map(|index| vec![index as u8; 100 + index % 700])
        .collect();
    check_round_trip(
        3 * TERM + 4096 + 64,
        payloads.clone(),
        vec![70_000, 5_000],
        1,
        WriteMode::Direct,
    );
    check_round_trip(0, payloads, vec![1, 33, 100_000], 3, WriteMode::Buffered);
}

#[test]
fn a_truncated_or_missing_segment_is_named_with_its_offset() {
    let dir = tempfile::tempdir().expect("temp dir");
    let payloads: Vec<Vec<u8>> = (0..600).map(|index| vec![index as u8; 500]).collect();
    let (log, _) = lay_out(0, &payloads);
    let geometry = SegmentGeometry {
        dir: dir.path().to_path_buf(),
        recording_id: RecordingId::new(0),
        start_position: 0,
        term_length: TERM,
        segment_length: SEGMENT,
    };
    let mut writer =
        SegmentWriter::new(geometry, WriteMode::Direct, true, 256 * 1024).expect("writer");
    for (position, block) in blocks(0, &log, &[8192]) {
        writer.append(&block, position).expect("append");
    }
    writer.sync().expect("write and sync");
    let end = log.len() as i64;
    drop(writer);
    // Recovery reports damage at the start of the last segment, and ends at the previous one.
    let descriptor = descriptor(0);
    let third = dir.path().join(format!("0-{}.rec", 2 * SEGMENT));
    let original = std::fs::read(&third).expect("third segment");
    let mut damaged = original.clone();
    damaged[20] ^= 0x55;
    std::fs::write(&third, damaged).expect("damage");
    let bases = list_segments(dir.path()).expect("segments")[&RecordingId::new(0)].clone();
    let (stop_at, damage) = find_end(dir.path(), &descriptor, &bases).expect("find end");
    assert_eq!(
        stop_at,
        2 * SEGMENT,
        "the end of the valid data: the full second segment"
    );
    let damage = damage.expect("the damaged frame is reported");
    assert_eq!(
        (damage.path.clone(), damage.file_offset),
        (third.clone(), 0)
    );
    std::fs::write(&third, original).expect("repair");

    let second = dir.path().join(format!("0-{SEGMENT}.rec"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&second)
        .expect("open");
    file.set_len(10_000).expect("truncate the second segment");
    drop(file);
    let mut reader = RecordingReader::new(dir.path(), &descriptor);
    let (reached, stop) = reader.scan(0, end, |_| true).expect("scan runs");
    let stop = stop.expect("the truncation is found");
    assert!(
        reached > SEGMENT && reached <= SEGMENT + 10_000,
        "reached {reached}"
    );
    assert_eq!(stop.path, second);
    assert_eq!(stop.file_offset as i64, reached - SEGMENT);
    assert!(
        stop.to_string()
            .contains(&format!("0-{SEGMENT}.rec at offset")),
        "{stop}"
    );

    // A segment file that already exists is never written over.
    let geometry = SegmentGeometry {
        dir: dir.path().to_path_buf(),
        recording_id: RecordingId::new(0),
        start_position: 0,
        term_length: TERM,
        segment_length: SEGMENT,
    };
    let error = SegmentWriter::new(geometry, WriteMode::Direct, true, 256 * 1024)
        .expect_err("exists")
        .to_string();
    assert!(
        error.contains("0-0.rec") && error.contains("create segment"),
        "{error}"
    );

    std::fs::remove_file(&second).expect("remove");
    let error = reader
        .scan(0, end, |_| true)
        .expect_err("missing segment")
        .to_string();
    assert!(
        error.contains(&format!("0-{SEGMENT}.rec")) && error.contains("open segment"),
        "{error}"
    );
}

/// Write the frames before `split` (a frame start), stop, and resume a new writer at `split`
/// for the rest, as an extended recording does: the files read back as one unbroken stream.
fn check_resume(start: i64, payloads: Vec<Vec<u8>>, split_frame: usize, mode: WriteMode) {
    let dir = tempfile::tempdir().expect("temp dir");
    let geometry = SegmentGeometry {
        dir: dir.path().to_path_buf(),
        recording_id: RecordingId::new(0),
        start_position: start,
        term_length: TERM,
        segment_length: SEGMENT,
    };
    let (log, frames) = lay_out(start, &payloads);
    let end = start + log.len() as i64;
    let split = frames[split_frame.min(frames.len() - 1)].0;
    let mut writer =
        SegmentWriter::new(geometry.clone(), mode, true, 128 * 1024 + 4096).expect("writer");
    let all = blocks(start, &log, &[3000, 70_000, 200]);
    let mut resumed = None;
    for (position, block) in all {
        // A block that straddles the split is cut there (the split is a frame start).
        let block_end = position + block.len() as i64;
        let pieces = if position < split && split < block_end {
            let cut = (split - position) as usize;
            vec![
                (position, block[..cut].to_vec()),
                (split, block[cut..].to_vec()),
            ]
        } else {
            vec![(position, block)]
        };
        for (position, block) in pieces {
            if position == split && resumed.is_none() {
                writer.sync().expect("sync before the stop");
                assert_eq!(writer.flushed_position(), split);
                resumed = Some(
                    SegmentWriter::resume(geometry.clone(), split, mode, true, 128 * 1024 + 4096)
                        .expect("resume"),
                );
            }
            match resumed.as_mut() {
                Some(resumed) => resumed.append(&block, position).expect("append resumed"),
                None => writer.append(&block, position).expect("append"),
            };
        }
    }
    drop(writer);
    let mut resumed = resumed.unwrap_or_else(|| {
        SegmentWriter::resume(geometry.clone(), end, mode, true, 128 * 1024 + 4096)
            .expect("resume at the end")
    });
    resumed.sync().expect("final sync");
    assert_eq!(resumed.flushed_position(), end);
    assert_eq!(
        recover_in(&tern_store::disk(), dir.path(), start),
        (end, None, frames)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    #[test]
    fn a_resumed_writer_continues_the_stream_without_a_seam(
        start_frames in 0i64..5000,
        sizes in prop::collection::vec(0usize..3000, 2..300),
        split_fraction in 0.0f64..1.0,
        direct in any::<bool>(),
    ) {
        let start = start_frames * 32;
        let payloads: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(index, size)| vec![(index % 255) as u8 + 1; *size]).collect();
        let split_frame = (payloads.len() as f64 * split_fraction) as usize;
        let mode = if direct { WriteMode::Direct } else { WriteMode::Buffered };
        check_resume(start, payloads, split_frame, mode);
    }
}

fn sim_geometry(start: i64) -> SegmentGeometry {
    SegmentGeometry {
        dir: PathBuf::from("/archive"),
        recording_id: RecordingId::new(0),
        start_position: start,
        term_length: TERM,
        segment_length: SEGMENT,
    }
}

fn sim_disk() -> SimDisk {
    let disk = SimDisk::new();
    disk.create_dir_all(Path::new("/archive")).expect("dir");
    disk
}

/// The frames of recording 0 on `storage` from `start` up to `end`, with recovery's end.
fn recover(storage: &Arc<dyn Storage>, start: i64) -> (i64, Option<ScanStop>, Vec<LaidFrame>) {
    recover_in(storage, Path::new("/archive"), start)
}

/// Recording 0 in `dir` as recovery finds it: its end, the damage there, and every frame (each
/// with its position as its reserved value, as laid out) up to that end.
fn recover_in(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    start: i64,
) -> (i64, Option<ScanStop>, Vec<LaidFrame>) {
    let descriptor = descriptor(start);
    let bases = list_segments_on(storage, dir)
        .expect("segments")
        .remove(&RecordingId::new(0))
        .unwrap_or_default();
    let (end, damage) = find_end_on(storage, dir, &descriptor, &bases).expect("find end");
    let mut read = Vec::new();
    if end > start {
        let mut reader = RecordingReader::new_on(storage, dir, &descriptor);
        let (reached, stop) = reader
            .scan(start, end, |frame| {
                let payload = (!frame.header.is_padding()).then(|| frame.payload().to_vec());
                assert_eq!(frame.header.reserved_value, frame.position);
                read.push((frame.position, payload));
                true
            })
            .expect("scan");
        assert_eq!(
            (reached, stop),
            (end, None),
            "recovery's end is a frame end"
        );
    }
    (end, damage, read)
}

/// Write the blocks through `writer`, asking for a sync every third block; after each call,
/// note (syncs the disk has seen, position the writer reports synced).
fn write_noting_acks(
    writer: &mut SegmentWriter,
    blocks: &[(i64, Vec<u8>)],
    disk: &SimDisk,
) -> Vec<(u64, i64)> {
    let mut acks = Vec::new();
    for (index, (position, block)) in blocks.iter().enumerate() {
        writer.append(block, *position).expect("append");
        if index % 3 == 2 {
            writer.flush().expect("flush");
            writer.request_sync().expect("sync asked");
        }
        writer.poll().expect("poll");
        acks.push((disk.syncs(), writer.synced_position()));
    }
    writer.sync().expect("final sync");
    acks.push((disk.syncs(), writer.synced_position()));
    acks
}

/// The crash tests the hardening issue asked for, at the write in question: the same recording
/// is written once per sync it makes, each time on a disk frozen after that many syncs, then
/// crashed. Recovery must find every frame the writer had reported synced by then (nothing
/// acknowledged is lost), only frames that were written, each one intact, and no damage.
#[test]
fn a_crash_after_any_sync_keeps_every_acknowledged_frame_intact() {
    for mode in [WriteMode::Direct, WriteMode::Buffered] {
        let start = 4096 + 64;
        let payloads: Vec<Vec<u8>> = (0..700)
            .map(|index| vec![(index % 250) as u8 + 1; 40 + (index * 37) % 1500])
            .collect();
        let (log, frames) = lay_out(start, &payloads);
        let end = start + log.len() as i64;
        assert!(
            end > start + 2 * SEGMENT,
            "the recording rolls over segments"
        );
        let blocks = blocks(start, &log, &[3000, 9000, 700]);
        let run = |freeze: Option<u64>| {
            let disk = sim_disk();
            if let Some(syncs) = freeze {
                disk.freeze_after_syncs(syncs);
            }
            let io = Io::inline(Arc::new(disk.clone()));
            let mut writer =
                SegmentWriter::new_on(&io, sim_geometry(start), mode, true, 64 * 1024 + 4096)
                    .expect("writer");
            let acks = write_noting_acks(&mut writer, &blocks, &disk);
            (disk, acks)
        };
        let (disk, acks) = run(None);
        let total = disk.syncs();
        assert!(total > 10, "{total} syncs");
        let all: Arc<dyn Storage> = Arc::new(disk.crash());
        assert_eq!(recover(&all, start), (end, None, frames.clone()));
        for freeze in 0..=total {
            // Deterministic: the run is the same, only the crash point moves.
            let (disk, again) = run(Some(freeze));
            assert_eq!(again, acks, "{mode:?}: the runs differ");
            let acknowledged = acks
                .iter()
                .filter(|(syncs, _)| *syncs <= freeze)
                .map(|(_, synced)| *synced)
                .max()
                .unwrap_or(start);
            let crashed: Arc<dyn Storage> = Arc::new(disk.crash());
            let (found, damage, read) = recover(&crashed, start);
            assert!(
                found >= acknowledged,
                "{mode:?}, crash after sync {freeze}: recovered to {found}, {acknowledged} was acknowledged"
            );
            assert_eq!(damage, None, "{mode:?}, crash after sync {freeze}");
            let expected: Vec<LaidFrame> = frames
                .iter()
                .filter(|(position, _)| *position < found)
                .cloned()
                .collect();
            assert_eq!(read, expected, "{mode:?}, crash after sync {freeze}");
        }
    }
}

#[test]
fn short_writes_are_continued_and_lose_nothing() {
    let start = 0;
    let payloads: Vec<Vec<u8>> = (0..300).map(|index| vec![index as u8 | 1; 900]).collect();
    let (log, frames) = lay_out(start, &payloads);
    let disk = sim_disk();
    let mut faults = FaultDisk::new(Arc::new(disk.clone())).only_files_ending(".rec");
    for nth in 1..40 {
        faults = faults.fail_write(nth, WriteFault::Short(100 + nth as usize * 7));
    }
    let io = Io::inline(Arc::new(faults.clone()));
    let mut writer = SegmentWriter::new_on(
        &io,
        sim_geometry(start),
        WriteMode::Direct,
        true,
        64 * 1024 + 4096,
    )
    .expect("writer");
    for (position, block) in blocks(start, &log, &[5000]) {
        writer.append(&block, position).expect("append");
    }
    writer.sync().expect("sync");
    assert!(faults.delivered() > 5, "short writes happened");
    let storage: Arc<dyn Storage> = Arc::new(disk.crash());
    assert_eq!(
        recover(&storage, start),
        (start + log.len() as i64, None, frames)
    );
}

#[test]
fn a_full_disk_stops_the_writer_with_enospc_and_keeps_what_was_flushed() {
    let start = 0;
    let payloads: Vec<Vec<u8>> = (0..400).map(|index| vec![index as u8 | 1; 1000]).collect();
    let (log, frames) = lay_out(start, &payloads);
    let disk = sim_disk();
    // Room for the first segment only: preallocating the second fails.
    let faults = FaultDisk::new(Arc::new(disk.clone())).space_left(SEGMENT as u64 + 4096);
    let io = Io::inline(Arc::new(faults));
    let mut writer = SegmentWriter::new_on(
        &io,
        sim_geometry(start),
        WriteMode::Direct,
        true,
        64 * 1024 + 4096,
    )
    .expect("writer");
    let mut failure = None;
    for (position, block) in blocks(start, &log, &[5000]) {
        if let Err(error) = writer.append(&block, position) {
            failure = Some(error);
            break;
        }
    }
    let failure = failure.expect("the disk filled up");
    assert!(failure.is_out_of_space(), "{failure}");
    assert!(failure.to_string().contains("0-131072.rec"), "{failure}");
    writer.poll().expect("the first segment's writes went well");
    let flushed = writer.flushed_position();
    assert_eq!(flushed, SEGMENT, "the full first segment is intact");
    // Nothing is written past the failure (no gap): the same frame fails again while the disk
    // is full, and the writer's position has not moved.
    let position = writer.position();
    let (_, block) = blocks(start, &log, &[5000])
        .into_iter()
        .find(|(at, _)| *at == position)
        .expect("the block that failed");
    let again = writer.append(&block, position).expect_err("still full");
    assert!(again.is_out_of_space(), "{again}");
    assert_eq!(writer.position(), position);
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let (found, damage, read) = recover(&storage, start);
    assert_eq!((found, damage), (flushed, None));
    let expected: Vec<LaidFrame> = frames
        .into_iter()
        .filter(|(position, _)| *position < flushed)
        .collect();
    assert_eq!(read, expected);
}

#[test]
fn a_failed_sync_is_reported_and_nothing_is_acknowledged_past_it() {
    let start = 0;
    let payloads: Vec<Vec<u8>> = (0..50).map(|index| vec![index as u8 | 1; 500]).collect();
    let (log, _) = lay_out(start, &payloads);
    let disk = sim_disk();
    let faults = FaultDisk::new(Arc::new(disk.clone()))
        .only_files_ending(".rec")
        .fail_sync(2);
    let io = Io::inline(Arc::new(faults));
    let mut writer = SegmentWriter::new_on(
        &io,
        sim_geometry(start),
        WriteMode::Direct,
        true,
        64 * 1024 + 4096,
    )
    .expect("writer");
    let blocks = blocks(start, &log, &[2000]);
    let half = blocks.len() / 2;
    for (position, block) in &blocks[..half] {
        writer.append(block, *position).expect("append");
    }
    writer.sync().expect("first sync");
    let synced = writer.synced_position();
    assert_eq!(synced, blocks[half].0);
    for (position, block) in &blocks[half..] {
        writer.append(block, *position).expect("append");
    }
    let error = writer.sync().expect_err("the second sync fails");
    assert_eq!(
        match &error {
            StoreError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        },
        Some(libc::EIO),
        "{error}"
    );
    assert_eq!(
        writer.synced_position(),
        synced,
        "nothing more acknowledged"
    );
    assert!(writer.sync().is_err(), "the writer stays stopped");
}
