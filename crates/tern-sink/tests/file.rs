//! The sink engine against the real archive, into the file sink: a stopped recording copied
//! whole, a live one followed, stopped and resumed with no gap and no duplicate, a key filter,
//! and a source that is not there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tern_client::ArchiveClientConfig;
use tern_sink::file::{read_all, StoredRecord};
use tern_sink::{
    BatchLimits, Destination, EngineError, FileConfig, FileDestination, FileFormat,
    RecordingSource, SinkConfig, SinkEngine, SinkMetrics,
};
use tern_store::RecordingId;
use tern_testkit::tern_archive::SourceLocation;
use tern_testkit::{
    driver, offer, recording_of, wait_stopped, wait_until, ServedArchive, SteadyPublisher,
};
use tern_transport::Client;

const CONTROL: &str = "aeron:ipc?term-length=64k";
const CONTROL_STREAM: i32 = 10;

/// 64 bytes: the sequence, a key (sequence % 4) at 8, a time in microseconds at 16.
fn message(sequence: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 64];
    bytes[0..8].copy_from_slice(&sequence.to_le_bytes());
    bytes[8..16].copy_from_slice(&((sequence % 4) as i64).to_le_bytes());
    bytes[16..24].copy_from_slice(&(1_000_000 + sequence as i64).to_le_bytes());
    bytes
}

fn sequence_of(stored: &StoredRecord) -> u64 {
    u64::from_le_bytes(stored.record.payload[0..8].try_into().expect("8 bytes"))
}

fn sink_config(aeron_dir: &str, recording_id: RecordingId, response_stream: i32) -> SinkConfig {
    let archive = ArchiveClientConfig::local(aeron_dir)
        .with_request(CONTROL, CONTROL_STREAM)
        .with_response(CONTROL, response_stream);
    let mut config = SinkConfig::new(archive, RecordingSource::Id(recording_id));
    config.replay_stream_id = response_stream + 1000;
    config.limits = BatchLimits {
        max_records: 500,
        max_bytes: 1 << 20,
        max_delay: Duration::from_millis(20),
    };
    config
}

fn file_config(dir: &std::path::Path) -> FileConfig {
    let mut config = FileConfig::new(dir);
    config.max_file_bytes = 64 << 10;
    config
}

/// Records `count` messages on IPC `stream`, closes the publication and waits for the
/// recording to stop; returns it.
fn stopped_recording(
    archive: &ServedArchive,
    aeron_dir: &str,
    stream: i32,
    count: u64,
) -> RecordingId {
    archive
        .start_recording("aeron:ipc", stream, SourceLocation::Remote)
        .expect("record");
    let client = Client::connect(aeron_dir).expect("client");
    let publication = client
        .add_publication("aeron:ipc", stream)
        .expect("publication");
    let recording_id = recording_of(archive, stream);
    for sequence in 0..count {
        offer(&publication, &message(sequence));
    }
    drop(publication);
    drop(client);
    wait_stopped(archive, recording_id);
    recording_id
}

fn assert_exactly(stored: &[StoredRecord], count: u64, recording_id: RecordingId) {
    let sequences: Vec<u64> = stored.iter().map(sequence_of).collect();
    let expected: Vec<u64> = (0..count).collect();
    assert_eq!(sequences.len(), expected.len(), "record count");
    assert_eq!(sequences, expected, "every message once, in order");
    assert!(stored
        .windows(2)
        .all(|pair| pair[0].record.position < pair[1].record.position));
    assert!(stored
        .iter()
        .all(|record| record.recording_id == recording_id));
}

#[test]
fn a_stopped_recording_is_copied_whole_and_a_second_run_adds_nothing() {
    let driver = driver("sink");
    let archive = ServedArchive::start("sink-whole", driver.dir(), &[(CONTROL, CONTROL_STREAM)]);
    let recording_id = stopped_recording(&archive, driver.dir(), 1001, 3_000);
    let out = tempfile::tempdir().expect("dir");
    let stop = AtomicBool::new(false);
    for (run, format) in [FileFormat::JsonLines { text: false }, FileFormat::Raw]
        .into_iter()
        .enumerate()
    {
        let dir = out.path().join(format!("run-{run}"));
        let mut files = file_config(&dir);
        files.format = format;
        let mut engine = SinkEngine::new(
            sink_config(driver.dir(), recording_id, 20 + run as i32),
            FileDestination::new(files.clone()),
            SinkMetrics::default(),
        );
        let summary = engine.run(&stop).expect("the sink runs");
        assert!(summary.ended, "the recording ended");
        assert_eq!(summary.records, 3_000);
        drop(engine);
        let stored = read_all(&dir, format).expect("read back");
        assert_exactly(&stored, 3_000, recording_id);
        let end = archive
            .recordings()
            .iter()
            .find(|info| info.descriptor.recording_id == recording_id)
            .map(|info| info.descriptor.stop_position)
            .expect("descriptor");
        assert_eq!(
            summary.position, end,
            "the destination ends at the stop position"
        );
        assert!(
            FileDestination::files(&dir, format).expect("files").len() > 1,
            "rotated"
        );
        let metrics = SinkMetrics::default();
        let mut again = SinkEngine::new(
            sink_config(driver.dir(), recording_id, 30 + run as i32),
            FileDestination::new(files),
            metrics.clone(),
        );
        let summary = again.run(&stop).expect("the second run");
        assert!(summary.ended);
        assert_eq!(summary.records, 0, "nothing written twice");
        assert_eq!(metrics.records.get(), 0);
        drop(again);
        assert_exactly(
            &read_all(&dir, format).expect("read back"),
            3_000,
            recording_id,
        );
    }
}

#[test]
fn a_live_recording_stopped_and_resumed_has_no_gap_and_no_duplicate() {
    let driver = driver("sink");
    let archive = ServedArchive::start("sink-live", driver.dir(), &[(CONTROL, CONTROL_STREAM)]);
    let stream = 1002;
    archive
        .start_recording("aeron:ipc", stream, SourceLocation::Remote)
        .expect("record");
    let publisher = SteadyPublisher::start(
        driver.dir(),
        "aeron:ipc",
        stream,
        (50, Duration::from_millis(1)),
        message,
    );
    let recording_id = recording_of(&archive, stream);
    let out = tempfile::tempdir().expect("dir");
    let dir = out.path().to_path_buf();
    let mut response = 40;
    let mut written = 0;
    for _ in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let metrics = SinkMetrics::default();
        let config = sink_config(driver.dir(), recording_id, response);
        response += 1;
        let (thread_stop, thread_metrics, files) =
            (stop.clone(), metrics.clone(), file_config(&dir));
        let engine = std::thread::spawn(move || {
            SinkEngine::new(config, FileDestination::new(files), thread_metrics).run(&thread_stop)
        });
        let target = written + 2_000;
        wait_until("records stored", Duration::from_secs(30), || {
            metrics.records.get() + written >= target
        });
        stop.store(true, Ordering::Release);
        let summary = engine
            .join()
            .expect("joined")
            .expect("the sink stops cleanly");
        assert!(!summary.ended);
        written += summary.records;
    }
    let sent = publisher.stop();
    wait_stopped(&archive, recording_id);
    let config = sink_config(driver.dir(), recording_id, response);
    let summary = SinkEngine::new(
        config,
        FileDestination::new(file_config(&dir)),
        SinkMetrics::default(),
    )
    .run(&AtomicBool::new(false))
    .expect("the last run");
    assert!(summary.ended);
    assert_eq!(written + summary.records, sent);
    assert_exactly(
        &read_all(&dir, FileFormat::JsonLines { text: false }).expect("read"),
        sent,
        recording_id,
    );
}

#[test]
fn a_key_filter_keeps_one_key_and_positions_stay_the_recordings() {
    let driver = driver("sink");
    let archive = ServedArchive::start("sink-key", driver.dir(), &[(CONTROL, CONTROL_STREAM)]);
    let recording_id = stopped_recording(&archive, driver.dir(), 1003, 1_000);
    let out = tempfile::tempdir().expect("dir");
    let mut config = sink_config(driver.dir(), recording_id, 50);
    config.filter = Some("field:8:i64:2".parse().expect("filter"));
    config.key_kind = Some("field:8:i64".parse().expect("kind"));
    config.time_source = "field:16:us".parse().expect("time");
    let mut engine = SinkEngine::new(
        config,
        FileDestination::new(file_config(out.path())),
        SinkMetrics::default(),
    );
    let summary = engine.run(&AtomicBool::new(false)).expect("runs");
    assert_eq!(summary.records, 250);
    drop(engine);
    let stored = read_all(out.path(), FileFormat::JsonLines { text: false }).expect("read");
    let sequences: Vec<u64> = stored.iter().map(sequence_of).collect();
    assert_eq!(
        sequences,
        (0..1_000).filter(|s| s % 4 == 2).collect::<Vec<_>>()
    );
    // The positions are the recording's: those of the same messages copied unfiltered.
    let all_dir = out.path().join("all");
    SinkEngine::new(
        sink_config(driver.dir(), recording_id, 51),
        FileDestination::new(file_config(&all_dir)),
        SinkMetrics::default(),
    )
    .run(&AtomicBool::new(false))
    .expect("unfiltered");
    let all = read_all(&all_dir, FileFormat::JsonLines { text: false }).expect("read all");
    assert_eq!(all.len(), 1_000);
    for record in &stored {
        let sequence = sequence_of(record);
        assert_eq!(record.record.key, Some(2));
        assert_eq!(
            record.record.timestamp_ns,
            (1_000_000 + sequence as i64) * 1_000
        );
        assert_eq!(
            record.record.position,
            all[sequence as usize].record.position
        );
        assert_eq!(
            all[sequence as usize].record.key, None,
            "no key kind: no key"
        );
    }
}

#[test]
fn an_unknown_recording_or_a_destination_of_another_recording_is_refused() {
    let driver = driver("sink");
    let archive = ServedArchive::start("sink-refuse", driver.dir(), &[(CONTROL, CONTROL_STREAM)]);
    let first = stopped_recording(&archive, driver.dir(), 1004, 10);
    let second = stopped_recording(&archive, driver.dir(), 1005, 10);
    let out = tempfile::tempdir().expect("dir");
    let stop = AtomicBool::new(false);
    let unknown = SinkEngine::new(
        sink_config(driver.dir(), RecordingId::new(999), 60),
        FileDestination::new(file_config(out.path())),
        SinkMetrics::default(),
    )
    .run(&stop);
    assert!(
        matches!(&unknown, Err(EngineError::Source(text)) if text.contains("no recording 999")),
        "{unknown:?}"
    );
    SinkEngine::new(
        sink_config(driver.dir(), first, 61),
        FileDestination::new(file_config(out.path())),
        SinkMetrics::default(),
    )
    .run(&stop)
    .expect("the first recording");
    let other = SinkEngine::new(
        sink_config(driver.dir(), second, 62),
        FileDestination::new(file_config(out.path())),
        SinkMetrics::default(),
    )
    .run(&stop);
    let text = match other {
        Err(EngineError::Source(text)) => text,
        other => panic!("another recording must be refused: {other:?}"),
    };
    assert!(text.contains(&format!("holds recording {first}")), "{text}");
    let mut destination = FileDestination::new(file_config(out.path()));
    assert_eq!(
        destination
            .open()
            .expect("open")
            .map(|resume| resume.recording_id),
        Some(first)
    );
}

/// A destination that fails on purpose: every third write stores the batch and then reports a
/// failure (a commit whose answer was lost), every fifth fails before storing anything, and
/// the open after each failure fails once too (the destination still down).
struct Flaky {
    inner: FileDestination,
    writes: u32,
    down: bool,
}

impl Destination for Flaky {
    fn describe(&self) -> String {
        format!("flaky {}", self.inner.describe())
    }

    fn open(&mut self) -> Result<Option<tern_sink::Resume>, tern_sink::SinkError> {
        if std::mem::take(&mut self.down) {
            return Err(tern_sink::SinkError::Unavailable("still down".into()));
        }
        self.inner.open()
    }

    fn write(&mut self, batch: &tern_sink::Batch) -> Result<(), tern_sink::SinkError> {
        self.writes += 1;
        if self.writes.is_multiple_of(5) {
            self.down = true;
            return Err(tern_sink::SinkError::Unavailable(
                "lost before storing".into(),
            ));
        }
        self.inner.write(batch)?;
        if self.writes.is_multiple_of(3) {
            self.down = true;
            return Err(tern_sink::SinkError::Unavailable(
                "stored, answer lost".into(),
            ));
        }
        Ok(())
    }
}

#[test]
fn failed_writes_are_retried_and_what_was_stored_is_not_written_again() {
    let driver = driver("sink");
    let archive = ServedArchive::start("sink-flaky", driver.dir(), &[(CONTROL, CONTROL_STREAM)]);
    let recording_id = stopped_recording(&archive, driver.dir(), 1006, 5_000);
    let out = tempfile::tempdir().expect("dir");
    let mut config = sink_config(driver.dir(), recording_id, 70);
    config.retry = (Duration::from_millis(1), Duration::from_millis(5));
    let metrics = SinkMetrics::default();
    // One file: a write that goes to a new file cannot repeat an earlier one's records (the
    // file of that first position exists), so rotation would hide a repeated write.
    let mut files = file_config(out.path());
    files.max_file_bytes = 1 << 30;
    let flaky = Flaky {
        inner: FileDestination::new(files),
        writes: 0,
        down: false,
    };
    let summary = SinkEngine::new(config, flaky, metrics.clone())
        .run(&AtomicBool::new(false))
        .expect("the sink gets through");
    assert!(summary.ended);
    assert_eq!(summary.records, 5_000, "each record counted once");
    assert_eq!(metrics.records.get(), 5_000);
    assert!(
        metrics.destination_retries.get() >= 4,
        "{}",
        metrics.destination_retries.get()
    );
    let stored = read_all(out.path(), FileFormat::JsonLines { text: false }).expect("read");
    assert_exactly(&stored, 5_000, recording_id);
}

/// A destination in memory that loses its last two batches once, at its fourth write (a
/// restore from an older backup, a replica that was behind): it then ends before the batch
/// being written.
#[derive(Default)]
struct Forgetful {
    batches: Vec<tern_sink::Batch>,
    writes: u32,
}

impl Destination for Forgetful {
    fn describe(&self) -> String {
        "forgetful memory".into()
    }

    fn open(&mut self) -> Result<Option<tern_sink::Resume>, tern_sink::SinkError> {
        Ok(self.batches.last().map(|batch| tern_sink::Resume {
            recording_id: batch.recording_id,
            position: batch
                .records
                .last()
                .map_or(batch.end_position, |r| r.position),
        }))
    }

    fn write(&mut self, batch: &tern_sink::Batch) -> Result<(), tern_sink::SinkError> {
        self.writes += 1;
        if self.writes == 4 {
            let keep = self.batches.len().saturating_sub(2);
            self.batches.truncate(keep);
            return Err(tern_sink::SinkError::Unavailable("lost two batches".into()));
        }
        self.batches.push(batch.clone());
        Ok(())
    }
}

#[test]
fn a_destination_that_lost_data_is_filled_again_from_where_it_ends() {
    let driver = driver("sink");
    let archive = ServedArchive::start("sink-forget", driver.dir(), &[(CONTROL, CONTROL_STREAM)]);
    let recording_id = stopped_recording(&archive, driver.dir(), 1007, 3_000);
    let mut config = sink_config(driver.dir(), recording_id, 80);
    config.retry = (Duration::from_millis(1), Duration::from_millis(5));
    let mut engine = SinkEngine::new(config, Forgetful::default(), SinkMetrics::default());
    let summary = engine.run(&AtomicBool::new(false)).expect("runs");
    assert!(summary.ended);
    let destination = engine.into_destination();
    let sequences: Vec<u64> = destination
        .batches
        .iter()
        .flat_map(|batch| batch.records.iter())
        .map(|record| u64::from_le_bytes(record.payload[0..8].try_into().expect("8 bytes")))
        .collect();
    assert_eq!(
        sequences,
        (0..3_000).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
}
