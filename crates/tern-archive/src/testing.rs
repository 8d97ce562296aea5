//! What the crate's unit tests share: a stopped recording written on any storage, without a
//! media driver.

use std::path::Path;
use tern_store::catalog::Catalog;
use tern_store::descriptor::{RecordState, RecordingDescriptor};
use tern_store::segment_writer::{SegmentGeometry, SegmentWriter};
use tern_store::time_index::TimeIndexWriter;
use tern_store::{Io, RecordingId, WriteMode};
use tern_transport::{BlockSource, SimLog, SimStream};

/// Term and segment length of the recordings written here.
pub(crate) const TERM: i32 = 64 * 1024;

/// A recording written by [`stopped_recording`].
pub(crate) struct Written {
    /// Its record, stopped at its end.
    pub descriptor: RecordingDescriptor,
    /// Where each message's frame starts.
    pub frames: Vec<i64>,
    /// The catalog it is in.
    pub catalog: Catalog,
}

/// Record `messages` messages of 400 bytes (the nth filled with `n as u8`) as the next recording
/// of the catalog in `dir` on `io`: 64 KiB terms and segment files (448 bytes a frame, so 300
/// messages fill three files), a time index entry per message 1 ms apart, every file synced,
/// the record stopped at the end.
pub(crate) fn stopped_recording(io: &Io, dir: &Path, messages: u32) -> Written {
    let mut catalog =
        tern_store::rebuild::open_for_recording_on(&io.storage, dir).expect("catalog");
    let stream = SimStream {
        session_id: 9,
        stream_id: 1001,
        initial_term_id: 3,
        term_length: TERM,
        mtu: 1408,
        start_position: 0,
    };
    let recording_id = RecordingId::new(catalog.entries().len() as i64);
    let log = SimLog::new(stream);
    let image = log.image();
    let geometry = SegmentGeometry {
        dir: dir.to_path_buf(),
        recording_id,
        start_position: 0,
        term_length: i64::from(TERM),
        segment_length: i64::from(TERM),
    };
    let mut writer =
        SegmentWriter::new_on(io, geometry, WriteMode::Buffered, true, 64 * 1024).expect("writer");
    let mut time_index =
        TimeIndexWriter::create_on(&io.storage, dir, recording_id, 0).expect("time index");
    let start_ns = 1_700_000_000_000_000_000;
    let mut frames = Vec::new();
    for index in 0..messages {
        frames.push(log.position());
        time_index.record(start_ns + i64::from(index) * 1_000_000, log.position());
        log.offer(&[index as u8; 400]).expect("offered");
        while image
            .block_poll(
                |block, position| {
                    writer.append(block, position).expect("appended");
                },
                64 * 1024,
            )
            .expect("polled")
            > 0
        {}
    }
    writer.sync().expect("synced");
    time_index.flush().expect("time index flushed");
    time_index.sync().expect("time index synced");
    let descriptor = catalog
        .add(RecordingDescriptor {
            recording_id,
            state: RecordState::Valid,
            start_timestamp_ns: start_ns,
            stop_timestamp_ns: start_ns + i64::from(messages) * 1_000_000,
            start_position: 0,
            stop_position: log.position(),
            initial_term_id: stream.initial_term_id,
            segment_length: TERM,
            term_length: TERM,
            mtu_length: stream.mtu as i32,
            session_id: stream.session_id,
            stream_id: stream.stream_id,
            stripped_channel: "aeron:ipc".into(),
            original_channel: "aeron:ipc".into(),
            source_identity: "aeron:ipc".into(),
        })
        .expect("added");
    Written {
        descriptor,
        frames,
        catalog,
    }
}
