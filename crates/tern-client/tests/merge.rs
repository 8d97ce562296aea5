//! Replay-merge against a real media driver: a publisher publishes continuously (over IPC, and
//! over UDP on the loopback), a small archive on a thread of the test records the stream in
//! memory and replays it at its recorded positions, and the merge must hand over every message
//! exactly once and in order, first from the replay, then from the live stream.

mod support;

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::mini::{await_recorded, MiniArchive, MiniArchiveConfig, RECORDING_ID};
use support::{aeron_like, driver, free_udp_port, ok, send, wait_until, MockArchive};
use tern_client::{
    ArchiveClient, ArchiveClientConfig, MergePhase, MergeStart, ReplayMerge, ReplayMergeConfig,
};
use tern_protocol::{Message, TernMessage};
use tern_transport::{BackoffIdle, Client, Header, Idle};

const LIVE_STREAM: i32 = 1001;
const REPLAY_STREAM: i32 = 2002;

/// Message `sequence`: the sequence number, then a body whose length and bytes depend on it;
/// some are longer than the MTU, so they come in several fragments.
fn message(sequence: u64) -> Vec<u8> {
    let length = match sequence % 11 {
        0 => 3000,
        1 => 1500,
        _ => (sequence % 200) as usize,
    };
    let mut bytes = sequence.to_le_bytes().to_vec();
    bytes.extend((0..length).map(|index| (sequence as usize + index) as u8));
    bytes
}

/// Publishes `count` messages on `channel`, a few at a time with short pauses, sending the end
/// position of each; the publication is closed when the thread ends.
fn publish(
    dir: String,
    channel: String,
    count: u64,
    positions: mpsc::Sender<i64>,
) -> JoinHandle<i64> {
    std::thread::Builder::new()
        .name("publisher".into())
        .spawn(move || {
            let client = Client::connect(&dir).expect("publisher client");
            let publication = client
                .add_publication(&channel, LIVE_STREAM)
                .expect("live publication");
            let mut idle = BackoffIdle::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            for sequence in 0..count {
                let bytes = message(sequence);
                let position = loop {
                    match publication.offer(&bytes) {
                        Ok(position) => break position,
                        Err(error) if error.is_retryable() => {
                            assert!(Instant::now() < deadline, "the publisher was held too long");
                            idle.idle(0)
                        }
                        Err(error) => panic!("offer {sequence}: {error}"),
                    }
                };
                idle.reset();
                let _ = positions.send(position);
                if sequence % 20 == 19 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            publication.position()
        })
        .expect("spawn the publisher")
}

/// Checks each delivered message against the expected sequence.
struct Checker {
    next: u64,
    merged_at: Option<u64>,
    last_position: i64,
    live_session: Option<i32>,
}

impl Checker {
    fn new(first: u64) -> Self {
        Self {
            next: first,
            merged_at: None,
            last_position: 0,
            live_session: None,
        }
    }

    fn on_message(&mut self, bytes: &[u8], header: &Header) {
        let sequence = u64::from_le_bytes(bytes[..8].try_into().expect("a sequence"));
        assert_eq!(
            sequence, self.next,
            "message {sequence} delivered when {} was due (a gap or a duplicate)",
            self.next
        );
        assert_eq!(
            bytes,
            message(sequence).as_slice(),
            "message {sequence} damaged"
        );
        assert!(header.position > self.last_position, "positions go forward");
        assert_eq!(
            header.stream_id, LIVE_STREAM,
            "headers carry the live stream id"
        );
        match self.live_session {
            None => self.live_session = Some(header.session_id),
            Some(session) => assert_eq!(header.session_id, session, "one session throughout"),
        }
        self.last_position = header.position;
        self.next += 1;
    }
}

struct Setup {
    control_channel: String,
    live_channel: String,
    replay_channel: String,
    client_config: fn(&str, &str) -> ArchiveClientConfig,
}

fn ipc_setup() -> Setup {
    Setup {
        control_channel: "aeron:ipc".into(),
        live_channel: "aeron:ipc?term-length=64k".into(),
        replay_channel: "aeron:ipc".into(),
        client_config: |dir, _| ArchiveClientConfig::local(dir),
    }
}

fn udp_setup() -> Setup {
    Setup {
        control_channel: format!("aeron:udp?endpoint=localhost:{}", free_udp_port()),
        live_channel: format!(
            "aeron:udp?endpoint=localhost:{}|term-length=64k",
            free_udp_port()
        ),
        // A wildcard port: the merge subscribes first and sends the bound port to the archive.
        replay_channel: "aeron:udp?endpoint=localhost:0".into(),
        client_config: |dir, control| ArchiveClientConfig::new(dir).with_request(control, 10),
    }
}

/// Where a test merge starts: the recording's start, or the start of message `n` given as a
/// position, as a time the archive resolves, or as a cursor the archive keeps.
#[derive(Debug, Clone, Copy)]
enum StartAt {
    RecordingStart,
    Position(u64),
    Time(u64),
    Cursor(u64),
}

/// The time the mini archive gives the start of message `n` (with `TIME_SOURCE`).
fn time_of(n: u64) -> i64 {
    1_764_000_000_000_000_000 + n as i64 * 1_000
}

const TIME_SOURCE: &str = "field:8:ns";
const CURSOR: &str = "late-joiner";

/// Publishes `count` messages, starts a merge when `start_after` were published (from the
/// recording's start, or from the start of message `from`), and checks every message from
/// there on arrives once, in order, with some after the merge.
fn merge_while_publishing(setup: Setup, count: u64, start_after: u64, from: StartAt) {
    let driver = driver();
    let dir = driver.dir().to_string();
    // The recorder subscribes to the live channel as given (a subscription ignores term-length).
    let archive = MiniArchive::start(MiniArchiveConfig {
        dir: dir.clone(),
        control_channel: setup.control_channel.clone(),
        control_stream_id: 10,
        live_channel: setup.live_channel.clone(),
        live_stream_id: LIVE_STREAM,
    });
    let (positions_tx, positions_rx) = mpsc::channel();
    let publisher = publish(dir.clone(), setup.live_channel.clone(), count, positions_tx);
    let mut positions: Vec<i64> = Vec::new();
    while positions.len() < start_after as usize {
        positions.push(
            positions_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the publisher goes on"),
        );
    }
    // The start of message n is the end of message n - 1.
    let start_of = |n: u64| positions[n as usize - 1];
    let (first, start) = match from {
        StartAt::RecordingStart => (0, MergeStart::RecordingStart),
        StartAt::Position(n) => (n, MergeStart::Position(start_of(n))),
        StartAt::Time(n) => {
            // Other times are errors: only a request for this one starts the merge.
            archive
                .observed
                .times
                .lock()
                .expect("times")
                .insert((time_of(n), TIME_SOURCE.into()), start_of(n));
            (n, MergeStart::Time(time_of(n)))
        }
        StartAt::Cursor(n) => {
            archive
                .observed
                .cursors
                .lock()
                .expect("cursors")
                .insert(CURSOR.into(), (RECORDING_ID, start_of(n)));
            (n, MergeStart::Cursor(CURSOR.into()))
        }
    };
    await_recorded(&archive, *positions.last().expect("published"));

    let mut client = ArchiveClient::connect(
        (setup.client_config)(&dir, &setup.control_channel)
            .with_message_timeout(Duration::from_secs(10)),
    )
    .expect("client connects");
    let mut merge = ReplayMerge::new(
        &mut client,
        ReplayMergeConfig::new(
            RECORDING_ID,
            start.clone(),
            setup.replay_channel.clone(),
            REPLAY_STREAM,
        )
        .with_time_source(TIME_SOURCE),
    )
    .expect("merge starts");
    assert_eq!(merge.phase(), MergePhase::Replaying);
    // A time or a cursor was resolved by the archive, once, before the replay was asked for.
    let tern_requests = archive
        .observed
        .tern_requests
        .lock()
        .expect("tern requests")
        .clone();
    match &start {
        MergeStart::Time(time) => assert!(
            matches!(
                tern_requests.as_slice(),
                [TernMessage::PositionAtTimeRequest(request)]
                    if request.timestamp == *time
                        && request.recording_id == RECORDING_ID
                        && request.time_source == TIME_SOURCE
            ),
            "{tern_requests:?}"
        ),
        MergeStart::Cursor(name) => assert!(
            matches!(
                tern_requests.as_slice(),
                [TernMessage::GetCursorRequest(request)] if &request.name == name
            ),
            "{tern_requests:?}"
        ),
        _ => assert!(tern_requests.is_empty(), "{tern_requests:?}"),
    }
    let replayed_from = *archive
        .observed
        .replay_positions
        .lock()
        .expect("replay positions")
        .first()
        .expect("a replay was asked for");
    match from {
        StartAt::RecordingStart => assert_eq!(replayed_from, merge.recording().start_position),
        StartAt::Position(n) | StartAt::Time(n) | StartAt::Cursor(n) => {
            assert_eq!(
                replayed_from,
                start_of(n),
                "the replay starts at message {n}"
            )
        }
    }
    let live_session = merge.recording().session_id;
    assert!(
        merge
            .live_channel()
            .contains(&format!("session-id={live_session}")),
        "{}",
        merge.live_channel()
    );

    let mut checker = Checker::new(first);
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while checker.next < count {
        assert!(
            Instant::now() < deadline,
            "stuck at message {} of {count}: {merge:?}",
            checker.next
        );
        let work = merge
            .poll(|bytes, header| checker.on_message(bytes, header), 64)
            .expect("merge polls");
        if merge.is_merged() && checker.merged_at.is_none() {
            checker.merged_at = Some(checker.next);
        }
        idle.idle(work);
    }
    assert_eq!(checker.live_session, Some(live_session));
    let merged_at = checker
        .merged_at
        .unwrap_or_else(|| panic!("never merged: {merge:?}"));
    assert!(
        merged_at < count - 500,
        "merged only at message {merged_at} of {count}: the live path was hardly used"
    );
    let join = merge.live_join_position().expect("the live image joined");
    assert!(join >= 0);
    let final_position = publisher.join().expect("the publisher finished");
    // The publication closed: the live image ends, and so does the merge.
    wait_until(
        "the end of the live stream",
        Duration::from_secs(30),
        || {
            merge
                .poll(|bytes, header| checker.on_message(bytes, header), 64)
                .expect("merge polls");
            merge.is_ended()
        },
    );
    assert_eq!(checker.next, count, "nothing after the last message");
    assert_eq!(merge.position(), Some(final_position));
    let replay_session_id = merge.replay_session_id();
    drop(merge);
    let started = archive
        .observed
        .replays_started
        .lock()
        .expect("started")
        .clone();
    assert_eq!(started, vec![replay_session_id], "one replay");
    wait_until("the replay to be stopped", Duration::from_secs(10), || {
        client.poll().ok();
        archive
            .observed
            .replays_stopped
            .lock()
            .expect("stopped")
            .contains(&replay_session_id)
    });
    assert!(archive.observed.position_requests.load(Ordering::Acquire) >= 1);
    assert!(
        client.take_errors().is_empty(),
        "{:?}",
        client.take_errors()
    );
}

#[test]
fn merges_an_ipc_stream_from_the_recording_start_with_no_gap_and_no_duplicate() {
    merge_while_publishing(ipc_setup(), 30_000, 8_000, StartAt::RecordingStart);
}

#[test]
fn a_late_joiner_merges_an_ipc_stream_from_a_position() {
    merge_while_publishing(ipc_setup(), 20_000, 6_000, StartAt::Position(2_345));
}

#[test]
fn a_late_joiner_merges_an_ipc_stream_from_a_time() {
    merge_while_publishing(ipc_setup(), 12_000, 4_000, StartAt::Time(1_234));
}

#[test]
fn a_late_joiner_merges_a_udp_stream_from_a_cursor() {
    merge_while_publishing(udp_setup(), 12_000, 4_000, StartAt::Cursor(3_001));
}

#[test]
fn merges_a_udp_stream_with_no_gap_and_no_duplicate() {
    merge_while_publishing(udp_setup(), 20_000, 6_000, StartAt::Position(1_001));
}

#[test]
fn after_the_merge_the_live_stream_goes_on_without_the_archive() {
    let driver = driver();
    let dir = driver.dir().to_string();
    let setup = ipc_setup();
    let archive = MiniArchive::start(MiniArchiveConfig {
        dir: dir.clone(),
        control_channel: setup.control_channel.clone(),
        control_stream_id: 10,
        live_channel: setup.live_channel.clone(),
        live_stream_id: LIVE_STREAM,
    });
    // The publisher stops after the first half until the test lets it go on.
    let (count, half) = (8_000, 4_000);
    let (positions_tx, positions_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let publisher = {
        let dir = dir.clone();
        let channel = setup.live_channel.clone();
        std::thread::spawn(move || {
            let client = Client::connect(&dir).expect("publisher client");
            let publication = client
                .add_publication(&channel, LIVE_STREAM)
                .expect("live publication");
            let mut idle = BackoffIdle::new();
            for sequence in 0..count {
                if sequence == half {
                    go_rx.recv().expect("the test lets the publisher go on");
                }
                let bytes = message(sequence);
                let position = loop {
                    match publication.offer(&bytes) {
                        Ok(position) => break position,
                        Err(error) if error.is_retryable() => idle.idle(0),
                        Err(error) => panic!("offer {sequence}: {error}"),
                    }
                };
                let _ = positions_tx.send(position);
            }
            publication.position()
        })
    };
    let mut published = 0;
    while published < half {
        positions_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the publisher goes on");
        published += 1;
    }
    let mut client = ArchiveClient::connect(ArchiveClientConfig::local(&dir)).expect("connects");
    let mut merge = ReplayMerge::new(
        &mut client,
        ReplayMergeConfig::new(
            RECORDING_ID,
            MergeStart::RecordingStart,
            "aeron:ipc",
            REPLAY_STREAM,
        ),
    )
    .expect("merge starts");
    let mut checker = Checker::new(0);
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(merge.is_merged() && checker.next == half) {
        assert!(Instant::now() < deadline, "no merge: {merge:?}");
        let work = merge
            .poll(|bytes, header| checker.on_message(bytes, header), 64)
            .expect("merge polls");
        idle.idle(work);
    }
    // The archive goes; the client finds out; the merge does not mind.
    drop(archive);
    while !matches!(
        merge.client().poll(),
        Err(tern_client::ClientError::NotConnected(_))
    ) {
        assert!(
            Instant::now() < deadline,
            "the client never saw the archive go"
        );
        let work = merge
            .poll(|bytes, header| checker.on_message(bytes, header), 64)
            .expect("the merged stream does not need the archive");
        idle.idle(work);
    }
    go_tx.send(()).expect("the publisher waits");
    while checker.next < count {
        assert!(
            Instant::now() < deadline,
            "stuck at {}: {merge:?}",
            checker.next
        );
        let work = merge
            .poll(|bytes, header| checker.on_message(bytes, header), 64)
            .expect("the merged stream does not need the archive");
        idle.idle(work);
    }
    assert!(merge.is_merged());
    let end = publisher.join().expect("published");
    wait_until(
        "the end of the live stream",
        Duration::from_secs(30),
        || {
            merge
                .poll(|bytes, header| checker.on_message(bytes, header), 64)
                .expect("merge polls");
            merge.is_ended()
        },
    );
    assert_eq!(merge.position(), Some(end));
}

#[test]
fn a_merge_of_a_finished_recording_delivers_all_of_it_and_ends() {
    let driver = driver();
    let dir = driver.dir().to_string();
    let setup = ipc_setup();
    let archive = MiniArchive::start(MiniArchiveConfig {
        dir: dir.clone(),
        control_channel: setup.control_channel.clone(),
        control_stream_id: 10,
        live_channel: setup.live_channel.clone(),
        live_stream_id: LIVE_STREAM,
    });
    let (positions_tx, _positions_rx) = mpsc::channel();
    let count = 3_000;
    let end = publish(dir.clone(), setup.live_channel.clone(), count, positions_tx)
        .join()
        .expect("published");
    await_recorded(&archive, end);
    let mut client = ArchiveClient::connect(ArchiveClientConfig::local(&dir)).expect("connects");
    // The recording stops once the archive sees the publication's end.
    wait_until("the recording to stop", Duration::from_secs(20), || {
        client
            .recording_position(RECORDING_ID)
            .expect("position")
            .is_none()
    });
    let mut merge = ReplayMerge::new(
        &mut client,
        ReplayMergeConfig::new(
            RECORDING_ID,
            MergeStart::Position(0),
            "aeron:ipc",
            REPLAY_STREAM,
        ),
    )
    .expect("merge starts");
    let mut checker = Checker::new(0);
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !merge.is_ended() {
        assert!(Instant::now() < deadline, "never ended: {merge:?}");
        let work = merge
            .poll(|bytes, header| checker.on_message(bytes, header), 64)
            .expect("merge polls");
        idle.idle(work);
    }
    assert_eq!(checker.next, count);
    assert!(!merge.is_merged(), "there was no live stream to merge with");
    assert_eq!(merge.position(), Some(end));
}

#[test]
fn an_unknown_recording_or_a_bad_position_fails_the_merge_at_once() {
    let driver = driver();
    let dir = driver.dir().to_string();
    let setup = ipc_setup();
    let archive = MiniArchive::start(MiniArchiveConfig {
        dir: dir.clone(),
        control_channel: setup.control_channel.clone(),
        control_stream_id: 10,
        live_channel: setup.live_channel.clone(),
        live_stream_id: LIVE_STREAM,
    });
    let mut client = ArchiveClient::connect(ArchiveClientConfig::local(&dir)).expect("connects");
    match ReplayMerge::new(
        &mut client,
        ReplayMergeConfig::new(RECORDING_ID, MergeStart::RecordingStart, "aeron:ipc", 2002),
    ) {
        Err(tern_client::ClientError::Merge(message)) => {
            assert!(message.contains("unknown"), "{message}")
        }
        other => panic!("expected an unknown recording, got {other:?}"),
    }
    let (positions_tx, _positions_rx) = mpsc::channel();
    let publisher = publish(dir.clone(), setup.live_channel.clone(), 100, positions_tx);
    let end = publisher.join().expect("published");
    await_recorded(&archive, end);
    match ReplayMerge::new(
        &mut client,
        ReplayMergeConfig::new(
            RECORDING_ID,
            MergeStart::Position(end + 4096),
            "aeron:ipc",
            2002,
        ),
    ) {
        Err(tern_client::ClientError::Archive { code, message, .. }) => {
            assert_eq!(code, tern_client::ArchiveErrorCode::InvalidPosition);
            assert!(message.contains("outside"), "{message}");
        }
        other => panic!("expected the archive's refusal, got {other:?}"),
    };
}

#[test]
fn a_merge_from_an_unknown_time_or_cursor_or_a_cursor_elsewhere_fails_at_once() {
    let driver = driver();
    let dir = driver.dir().to_string();
    let setup = ipc_setup();
    let archive = MiniArchive::start(MiniArchiveConfig {
        dir: dir.clone(),
        control_channel: setup.control_channel.clone(),
        control_stream_id: 10,
        live_channel: setup.live_channel.clone(),
        live_stream_id: LIVE_STREAM,
    });
    let (positions_tx, _positions_rx) = mpsc::channel();
    let end = publish(dir.clone(), setup.live_channel.clone(), 100, positions_tx)
        .join()
        .expect("published");
    await_recorded(&archive, end);
    archive
        .observed
        .cursors
        .lock()
        .expect("cursors")
        .insert("elsewhere".into(), (RECORDING_ID + 7, 0));
    let mut client = ArchiveClient::connect(ArchiveClientConfig::local(&dir)).expect("connects");
    let config = |start| ReplayMergeConfig::new(RECORDING_ID, start, "aeron:ipc", REPLAY_STREAM);

    match ReplayMerge::new(&mut client, config(MergeStart::Cursor("elsewhere".into()))) {
        Err(tern_client::ClientError::Merge(message)) => assert_eq!(
            message,
            format!(
                "cursor \"elsewhere\" points into recording {}, not the merged recording \
                 {RECORDING_ID}",
                RECORDING_ID + 7
            )
        ),
        other => panic!("expected a cursor in another recording, got {other:?}"),
    }
    match ReplayMerge::new(&mut client, config(MergeStart::Cursor("missing".into()))) {
        Err(tern_client::ClientError::Archive { message, .. }) => {
            assert_eq!(message, "unknown cursor: missing")
        }
        other => panic!("expected the archive's error, got {other:?}"),
    }
    match ReplayMerge::new(&mut client, config(MergeStart::Time(5))) {
        Err(tern_client::ClientError::Archive { message, .. }) => {
            assert_eq!(message, "no position for (5, \"\")")
        }
        other => panic!("expected the archive's error, got {other:?}"),
    }
    let tern_requests = archive
        .observed
        .tern_requests
        .lock()
        .expect("tern requests")
        .len();
    assert_eq!(tern_requests, 3);
    assert!(
        archive
            .observed
            .replay_positions
            .lock()
            .expect("replay positions")
            .is_empty(),
        "no replay was asked for"
    );
    // The client is still usable: a merge from a resolvable time starts.
    archive
        .observed
        .times
        .lock()
        .expect("times")
        .insert((6, String::new()), 0);
    let merge = ReplayMerge::new(&mut client, config(MergeStart::Time(6))).expect("starts");
    assert_eq!(merge.phase(), MergePhase::Replaying);
    drop(merge);
    assert_eq!(
        archive
            .observed
            .replay_positions
            .lock()
            .expect("replay positions")
            .as_slice(),
        &[0]
    );
}

#[test]
fn a_merge_without_progress_times_out_and_stops_its_replay() {
    let driver = driver();
    let dir = driver.dir().to_string();
    // An archive that accepts the replay but never sends it.
    let archive = MockArchive::start(
        &dir,
        "aeron:ipc",
        10,
        Box::new(|s, message| match message {
            Message::ListRecordingRequest(request) => send(vec![Message::RecordingDescriptor(
                tern_protocol::RecordingDescriptor {
                    control_session_id: s,
                    correlation_id: request.correlation_id,
                    recording_id: request.recording_id,
                    start_timestamp: 0,
                    stop_timestamp: -1,
                    start_position: 0,
                    stop_position: -1,
                    initial_term_id: 0,
                    segment_file_length: 1 << 27,
                    term_buffer_length: 1 << 16,
                    mtu_length: 1408,
                    session_id: 77,
                    stream_id: LIVE_STREAM,
                    stripped_channel: "aeron:ipc".into(),
                    original_channel: "aeron:ipc".into(),
                    source_identity: "aeron:ipc".into(),
                },
            )]),
            Message::ReplayRequest(request) => send(vec![ok(s, request.correlation_id, 0x4242)]),
            Message::StopReplayRequest(request) => send(vec![ok(s, request.correlation_id, 0)]),
            other => aeron_like(s, other),
        }),
    );
    let mut client = ArchiveClient::connect(ArchiveClientConfig::local(&dir)).expect("connects");
    let mut config =
        ReplayMergeConfig::new(5, MergeStart::RecordingStart, "aeron:ipc", REPLAY_STREAM);
    config.progress_timeout = Duration::from_millis(300);
    let mut merge = ReplayMerge::new(&mut client, config).expect("merge starts");
    assert_eq!(merge.live_channel(), "aeron:ipc?session-id=77");
    let started = Instant::now();
    let mut idle = BackoffIdle::new();
    let error = loop {
        match merge.poll(|_, _| panic!("nothing to deliver"), 10) {
            Ok(work) => idle.idle(work),
            Err(error) => break error,
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never timed out"
        );
    };
    assert!(error.is_timeout(), "{error:?}");
    assert!(error.to_string().contains("make progress"), "{error}");
    assert!(merge.has_failed());
    assert!(matches!(
        merge.poll(|_, _| {}, 10),
        Err(tern_client::ClientError::Merge(_))
    ));
    archive.await_request(
        "the replay to be stopped",
        |m| matches!(m, Message::StopReplayRequest(r) if r.replay_session_id == 0x4242),
    );
}
