//! The segment writer and reader alone (no Aeron): random frame streams laid out like an Aeron
//! log (padding at term ends), written in random blocks with random flushes, in both write
//! modes, must read back frame for frame; recovery finds the end; damage is located.

use proptest::prelude::*;
use tern_store::frame::{align_frame, term_of, FrameHeader, HEADER_LENGTH, TYPE_DATA, TYPE_PAD};
use tern_store::{
    find_end, list_segments, RecordState, RecordingDescriptor, RecordingReader, SegmentGeometry,
    SegmentWriter, WriteMode, NULL_POSITION,
};

const TERM: i64 = 64 * 1024;
const SEGMENT: i64 = 2 * TERM;
const INITIAL_TERM_ID: i32 = 7;
const STREAM: i32 = 33;

fn descriptor(start_position: i64) -> RecordingDescriptor {
    RecordingDescriptor {
        recording_id: 0,
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
        recording_id: 0,
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
    let descriptor = descriptor(start);
    let mut reader = RecordingReader::new(dir.path(), &descriptor);
    let mut read = Vec::new();
    let (reached, stop) = reader
        .scan(start, end, |frame| {
            let payload = (!frame.header.is_padding()).then(|| frame.payload().to_vec());
            assert_eq!(frame.header.reserved_value, frame.position);
            read.push((frame.position, payload));
            true
        })
        .expect("scan");
    assert_eq!(stop, None);
    assert_eq!(reached, end);
    assert_eq!(read, frames);
    let segments = list_segments(dir.path()).expect("segments");
    let (found_end, damage) = find_end(dir.path(), &descriptor, &segments[&0]).expect("find end");
    assert_eq!(
        (found_end, damage),
        (end, None),
        "recovery finds the end of the last frame"
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
        recording_id: 0,
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
    let bases = list_segments(dir.path()).expect("segments")[&0].clone();
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
        recording_id: 0,
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
        recording_id: 0,
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
    let descriptor = descriptor(start);
    let mut reader = RecordingReader::new(dir.path(), &descriptor);
    let mut read = Vec::new();
    let (reached, stop) = reader
        .scan(start, end, |frame| {
            let payload = (!frame.header.is_padding()).then(|| frame.payload().to_vec());
            read.push((frame.position, payload));
            true
        })
        .expect("scan");
    assert_eq!((reached, stop), (end, None));
    assert_eq!(read, frames);
    let segments = list_segments(dir.path()).expect("segments");
    let (found_end, damage) = find_end(dir.path(), &descriptor, &segments[&0]).expect("find end");
    assert_eq!((found_end, damage), (end, None));
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
