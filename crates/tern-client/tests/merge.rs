//! Replay-merge against the real archive: a publisher publishes continuously (over IPC, and over
//! UDP on the loopback), tern's archive (`tern_archive::Archive` with its control server, from
//! tern-testkit) records the stream into segment files and replays it at its recorded positions,
//! and the merge must hand over every message exactly once and in order, first from the replay,
//! then from the live stream. What the merge asked the archive for is read from the archive
//! itself: its control request counts, its replays' status, its time index and cursors.

mod support;

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use support::{driver, free_udp_port};
use tern_client::{
    ArchiveClient, ArchiveClientConfig, ArchiveErrorCode, ClientError, MergePhase, MergeStart,
    RecordingId, ReplayId, ReplayMerge, ReplayMergeConfig,
};
use tern_testkit::tern_archive::{epoch_nanos, Archive, ReplayState, SourceLocation};
use tern_testkit::{offer, wait_recorded, wait_stopped, wait_until, ServedArchive};
use tern_transport::{BackoffIdle, Client, Header, Idle, MediaDriver};

const LIVE_STREAM: i32 = 1001;
const REPLAY_STREAM: i32 = 2002;
const CONTROL_STREAM: i32 = 10;
/// The archive's local control channel (Aeron's, which `ArchiveClientConfig::local` uses).
const LOCAL_CONTROL: &str = "aeron:ipc?term-length=64k";
const CURSOR: &str = "late-joiner";

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
/// position of each. With `hold` `(n, go)`, it waits before message `n` until the test sends on
/// `go` (it stops there if `go` is dropped instead). The publication is closed when the thread
/// ends; returns its position then.
fn publish(
    dir: String,
    channel: String,
    count: u64,
    positions: mpsc::Sender<i64>,
    hold: Option<(u64, mpsc::Receiver<()>)>,
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
                if let Some((at, go)) = &hold {
                    if *at == sequence && go.recv_timeout(Duration::from_secs(60)).is_err() {
                        break;
                    }
                }
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

/// Takes the publisher's positions until there are `count`.
fn receive_positions(positions_rx: &mpsc::Receiver<i64>, positions: &mut Vec<i64>, count: u64) {
    while positions.len() < count as usize {
        positions.push(
            positions_rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the publisher goes on"),
        );
    }
}

/// Poll `merge` (each message checked) with a backing-off idle until `done` holds; fails naming
/// `what` after `timeout`. Notes where the merge went live.
fn drive(
    merge: &mut ReplayMerge<'_>,
    checker: &mut Checker,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&ReplayMerge<'_>, &Checker) -> bool,
) {
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + timeout;
    while !done(merge, checker) {
        assert!(
            Instant::now() < deadline,
            "{what}: at message {}: {merge:?}",
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
}

/// Checks each delivered message against the expected sequence.
struct Checker {
    next: u64,
    merged_at: Option<u64>,
    /// The stream position of the first message delivered (its end).
    first_end: Option<i64>,
    last_position: i64,
    live_session: Option<i32>,
}

impl Checker {
    fn new(first: u64) -> Self {
        Self {
            next: first,
            merged_at: None,
            first_end: None,
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
        self.first_end.get_or_insert(header.position);
        self.last_position = header.position;
        self.next += 1;
    }
}

struct Setup {
    /// The channel the archive's control server listens on (stream [`CONTROL_STREAM`]).
    control_channel: String,
    live_channel: String,
    replay_channel: String,
    client_config: fn(&str, &str) -> ArchiveClientConfig,
}

fn ipc_setup() -> Setup {
    Setup {
        control_channel: LOCAL_CONTROL.into(),
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
        client_config: |dir, control| {
            ArchiveClientConfig::new(dir).with_request(control, CONTROL_STREAM)
        },
    }
}

/// A media driver and tern's archive on it, serving the setup's control channel and recording
/// the live channel (as given: a subscription ignores `term-length`). The archive goes first.
struct Fixture {
    archive: ServedArchive,
    driver: MediaDriver,
}

impl Fixture {
    fn start(tag: &str, setup: &Setup) -> Self {
        let driver = driver();
        let archive = ServedArchive::start(
            tag,
            driver.dir(),
            &[(&setup.control_channel, CONTROL_STREAM)],
        );
        archive
            .start_recording(&setup.live_channel, LIVE_STREAM, SourceLocation::Remote)
            .expect("the archive records the live stream");
        Self { archive, driver }
    }

    fn dir(&self) -> String {
        self.driver.dir().to_string()
    }
}

/// Waits for the archive to record the live stream; returns the recording's id.
fn live_recording(archive: &Archive) -> RecordingId {
    let mut found = None;
    wait_until(
        "the live stream's recording",
        Duration::from_secs(20),
        || {
            found = archive
                .recordings()
                .iter()
                .find(|info| info.descriptor.stream_id == LIVE_STREAM)
                .map(|info| info.descriptor.recording_id);
            found.is_some()
        },
    );
    found.expect("found")
}

/// Waits until the archive's replay `replay_id` is in `state`.
fn wait_replay_state(archive: &Archive, replay_id: ReplayId, state: ReplayState) {
    let status = archive
        .replay_status(replay_id)
        .expect("the archive knows the replay");
    wait_until(
        &format!("replay {replay_id} to be {state:?}"),
        Duration::from_secs(10),
        || status.state() == state,
    );
}

/// Where a test merge starts: the recording's start, or the start of message `n` given as a
/// position, as a time the archive resolves with its time index (the instant just before `n`
/// was published, after `n - 1` was recorded), or as a cursor the archive keeps.
#[derive(Debug, Clone, Copy)]
enum StartAt {
    RecordingStart,
    Position(u64),
    Time(u64),
    Cursor(u64),
}

/// Publishes `count` messages, starts a merge when `start_after` were published (from the
/// recording's start, or from the start of message `from`), and checks every message from
/// there on arrives once, in order, with some after the merge, and that the archive was asked
/// for what it should have been: the time or cursor once, one replay from the right position,
/// stopped once the merge went live.
fn merge_while_publishing(setup: Setup, count: u64, start_after: u64, from: StartAt) {
    let fixture = Fixture::start("merge", &setup);
    let (archive, dir) = (&fixture.archive, fixture.dir());
    let (positions_tx, positions_rx) = mpsc::channel();
    // From a time: the publisher waits before message n while the test takes the instant.
    let (go_tx, go_rx) = mpsc::channel();
    let hold = match from {
        StartAt::Time(n) => Some((n, go_rx)),
        _ => None,
    };
    let publisher = publish(
        dir.clone(),
        setup.live_channel.clone(),
        count,
        positions_tx,
        hold,
    );
    let recording_id = live_recording(archive);
    let mut positions: Vec<i64> = Vec::new();
    let mut instant = None;
    if let StartAt::Time(n) = from {
        receive_positions(&positions_rx, &mut positions, n);
        wait_recorded(archive, recording_id, positions[n as usize - 1]);
        // Message n - 1 was captured before the instant, message n is captured after it.
        std::thread::sleep(Duration::from_millis(10));
        instant = Some(epoch_nanos());
        std::thread::sleep(Duration::from_millis(10));
        go_tx.send(()).expect("the publisher waits");
    }
    receive_positions(&positions_rx, &mut positions, start_after);
    // The start of message n is the end of message n - 1.
    let start_of = |n: u64| positions[n as usize - 1];
    wait_recorded(archive, recording_id, *positions.last().expect("published"));
    let (first, start) = match from {
        StartAt::RecordingStart => (0, MergeStart::RecordingStart),
        StartAt::Position(n) => (n, MergeStart::Position(start_of(n))),
        StartAt::Time(n) => {
            let instant = instant.expect("the instant was taken");
            // What the merge should be told: the archive's time index has message n first.
            assert_eq!(
                archive
                    .position_at_time(recording_id, instant)
                    .expect("the archive resolves the time"),
                start_of(n),
                "the time index starts message {n} at the instant"
            );
            (n, MergeStart::Time(instant))
        }
        StartAt::Cursor(n) => {
            archive
                .set_cursor(CURSOR, recording_id, start_of(n))
                .expect("the cursor is set");
            (n, MergeStart::Cursor(CURSOR.into()))
        }
    };

    let mut client = ArchiveClient::connect(
        (setup.client_config)(&dir, &setup.control_channel)
            .with_message_timeout(Duration::from_secs(10)),
    )
    .expect("client connects");
    let mut merge = ReplayMerge::new(
        &mut client,
        ReplayMergeConfig::new(
            recording_id,
            start.clone(),
            setup.replay_channel.clone(),
            REPLAY_STREAM,
        ),
    )
    .expect("merge starts");
    assert_eq!(merge.phase(), MergePhase::Replaying);
    assert_eq!(merge.recording().recording_id, recording_id);
    assert_eq!(
        merge.recording().start_position,
        archive
            .recording(recording_id)
            .expect("the recording")
            .descriptor
            .start_position
    );
    // A time or a cursor was resolved by the archive, once; then one replay was asked for.
    let (time_requests, cursor_requests) = match from {
        StartAt::Time(_) => (1, 0),
        StartAt::Cursor(_) => (0, 1),
        _ => (0, 0),
    };
    assert_eq!(
        archive.control_requests("PositionAtTimeRequest"),
        time_requests
    );
    assert_eq!(
        archive.control_requests("GetCursorRequest"),
        cursor_requests
    );
    assert_eq!(archive.control_requests("ReplayRequest"), 1, "one replay");
    let replay_session_id = merge.replay_session_id();
    let replay = archive
        .replay_status(replay_session_id)
        .expect("the archive runs the merge's replay");
    assert_eq!(replay.recording_id(), recording_id);
    let live_session = merge.recording().session_id;
    assert!(
        merge
            .live_channel()
            .contains(&format!("session-id={live_session}")),
        "{}",
        merge.live_channel()
    );

    let mut checker = Checker::new(first);
    drive(
        &mut merge,
        &mut checker,
        Duration::from_secs(90),
        "every message",
        |_, checker| checker.next >= count,
    );
    // The replay started exactly at message `first`: it came first, whole, ending where the
    // publisher's offer of it ended.
    assert_eq!(
        checker.first_end,
        Some(positions[first as usize]),
        "the replay starts at message {first}"
    );
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
    drop(merge);
    assert_eq!(archive.control_requests("ReplayRequest"), 1, "one replay");
    // The merge stopped its replay when it went live: it asked the archive to, once, and let go
    // of the replay's subscription once that was answered. The archive answers as soon as it has
    // told its replayer, so the replayer can still (rarely) find the subscriber gone before it
    // takes the stop: the replay ends by the one or by the other. It did not run on to the
    // recording's end (a follow replay would have: Done).
    let waited = Instant::now();
    while !replay.is_finished() {
        client.poll().ok();
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "replay {replay_session_id} still {:?} at {}",
            replay.state(),
            replay.position()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let error = replay.error().unwrap_or_default();
    assert!(
        replay.state() == ReplayState::Stopped
            || (replay.state() == ReplayState::Failed
                && error.ends_with("the replay's subscriber went away")),
        "replay {replay_session_id} ended {:?} ({error}) at {}",
        replay.state(),
        replay.position()
    );
    assert!(replay.position() < final_position, "stopped before the end");
    assert_eq!(archive.control_requests("StopReplayRequest"), 1);
    assert!(archive.control_requests("RecordingPositionRequest") >= 1);
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
    let setup = ipc_setup();
    let mut fixture = Fixture::start("without", &setup);
    let dir = fixture.dir();
    // The publisher stops after the first half until the test lets it go on.
    let (count, half) = (8_000, 4_000);
    let (positions_tx, positions_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let publisher = publish(
        dir.clone(),
        setup.live_channel.clone(),
        count,
        positions_tx,
        Some((half, go_rx)),
    );
    let recording_id = live_recording(&fixture.archive);
    let mut positions = Vec::new();
    receive_positions(&positions_rx, &mut positions, half);
    let mut client = ArchiveClient::connect(ArchiveClientConfig::local(&dir)).expect("connects");
    let mut merge = ReplayMerge::new(
        &mut client,
        ReplayMergeConfig::new(
            recording_id,
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
    // The archive goes (its control server, then the archive); the client finds out; the
    // merge does not mind.
    fixture.archive.stop();
    while !matches!(merge.client().poll(), Err(ClientError::NotConnected(_))) {
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
    assert_eq!(checker.next, count);
    assert_eq!(merge.position(), Some(end));
}

#[test]
fn a_merge_of_a_finished_recording_delivers_all_of_it_and_ends() {
    let setup = ipc_setup();
    let fixture = Fixture::start("finished", &setup);
    let (archive, dir) = (&fixture.archive, fixture.dir());
    let (positions_tx, _positions_rx) = mpsc::channel();
    let count = 3_000;
    let end = publish(
        dir.clone(),
        setup.live_channel.clone(),
        count,
        positions_tx,
        None,
    )
    .join()
    .expect("published");
    let recording_id = live_recording(archive);
    // The recording stops once the archive sees the publication's end.
    let descriptor = wait_stopped(archive, recording_id);
    assert_eq!(descriptor.start_position, 0);
    assert_eq!(descriptor.stop_position, end);
    let mut client = ArchiveClient::connect(ArchiveClientConfig::local(&dir)).expect("connects");
    assert_eq!(
        client.recording_position(recording_id).expect("position"),
        None,
        "the client sees the recording stopped"
    );
    let mut merge = ReplayMerge::new(
        &mut client,
        ReplayMergeConfig::new(
            recording_id,
            MergeStart::Position(0),
            "aeron:ipc",
            REPLAY_STREAM,
        ),
    )
    .expect("merge starts");
    let replay_session_id = merge.replay_session_id();
    let mut checker = Checker::new(0);
    drive(
        &mut merge,
        &mut checker,
        Duration::from_secs(60),
        "the end",
        |merge, _| merge.is_ended(),
    );
    assert_eq!(checker.next, count);
    assert!(!merge.is_merged(), "there was no live stream to merge with");
    assert_eq!(merge.position(), Some(end));
    drop(merge);
    // The replay ended on its own at the stop position; nobody had to stop it.
    wait_replay_state(archive, replay_session_id, ReplayState::Done);
    assert_eq!(archive.control_requests("ReplayRequest"), 1);
    assert_eq!(archive.control_requests("StopReplayRequest"), 0);
}

#[test]
fn an_unknown_recording_or_a_bad_position_fails_the_merge_at_once() {
    let setup = ipc_setup();
    let fixture = Fixture::start("bad-start", &setup);
    let (archive, dir) = (&fixture.archive, fixture.dir());
    // Nothing recorded yet: the first recording id the archive will give out is unknown.
    let recording_id = RecordingId::new(archive.recording_id_limit());
    let mut client = ArchiveClient::connect(ArchiveClientConfig::local(&dir)).expect("connects");
    match ReplayMerge::new(
        &mut client,
        ReplayMergeConfig::new(
            recording_id,
            MergeStart::RecordingStart,
            "aeron:ipc",
            REPLAY_STREAM,
        ),
    ) {
        Err(ClientError::Merge(message)) => {
            assert_eq!(message, format!("recording {recording_id} is unknown"))
        }
        other => panic!("expected an unknown recording, got {other:?}"),
    }
    assert_eq!(archive.control_requests("ReplayRequest"), 0);
    let (positions_tx, _positions_rx) = mpsc::channel();
    let publisher = publish(
        dir.clone(),
        setup.live_channel.clone(),
        100,
        positions_tx,
        None,
    );
    let end = publisher.join().expect("published");
    assert_eq!(live_recording(archive), recording_id);
    wait_recorded(archive, recording_id, end);
    match ReplayMerge::new(
        &mut client,
        ReplayMergeConfig::new(
            recording_id,
            MergeStart::Position(end + 4096),
            "aeron:ipc",
            REPLAY_STREAM,
        ),
    ) {
        Err(ClientError::Archive { code, message, .. }) => {
            assert_eq!(code, ArchiveErrorCode::InvalidPosition);
            assert_eq!(
                message,
                format!(
                    "requested replay start position={} must be less than the limit \
                     position={end} for recording {recording_id}",
                    end + 4096
                )
            );
        }
        other => panic!("expected the archive's refusal, got {other:?}"),
    };
    // The archive was asked, and refused: no replay runs.
    assert_eq!(archive.control_requests("ReplayRequest"), 1);
    assert_eq!(archive.stop_all_replays(None), 0);
}

#[test]
fn a_merge_from_an_unknown_time_or_cursor_or_a_cursor_elsewhere_fails_at_once() {
    let setup = ipc_setup();
    let fixture = Fixture::start("bad-resolve", &setup);
    let (archive, dir) = (&fixture.archive, fixture.dir());
    let (positions_tx, positions_rx) = mpsc::channel();
    let end = publish(
        dir.clone(),
        setup.live_channel.clone(),
        100,
        positions_tx,
        None,
    )
    .join()
    .expect("published");
    let recording_id = live_recording(archive);
    wait_stopped(archive, recording_id);
    let mut positions = Vec::new();
    receive_positions(&positions_rx, &mut positions, 100);
    // Another recording, for a cursor that points elsewhere.
    let other_stream = LIVE_STREAM + 7;
    archive
        .start_recording("aeron:ipc", other_stream, SourceLocation::Remote)
        .expect("records the other stream");
    let other_client = Client::connect(&dir).expect("client");
    let other = other_client
        .add_publication("aeron:ipc", other_stream)
        .expect("other publication");
    offer(&other, &message(0));
    let mut other_recording = None;
    wait_until("the other recording", Duration::from_secs(20), || {
        other_recording = archive
            .recordings()
            .iter()
            .find(|info| info.descriptor.stream_id == other_stream)
            .map(|info| info.descriptor.recording_id);
        other_recording.is_some()
    });
    let other_recording = other_recording.expect("found");
    assert_ne!(other_recording, recording_id);
    wait_recorded(archive, other_recording, other.position());
    archive
        .set_cursor("elsewhere", other_recording, 0)
        .expect("the cursor is set");

    let mut client = ArchiveClient::connect(ArchiveClientConfig::local(&dir)).expect("connects");
    let config = |start| ReplayMergeConfig::new(recording_id, start, "aeron:ipc", REPLAY_STREAM);
    match ReplayMerge::new(&mut client, config(MergeStart::Cursor("elsewhere".into()))) {
        Err(ClientError::Merge(message)) => assert_eq!(
            message,
            format!(
                "cursor \"elsewhere\" points into recording {other_recording}, not the merged \
                 recording {recording_id}"
            )
        ),
        other => panic!("expected a cursor in another recording, got {other:?}"),
    }
    match ReplayMerge::new(&mut client, config(MergeStart::Cursor("missing".into()))) {
        Err(ClientError::Archive { message, .. }) => {
            assert_eq!(message, "unknown cursor \"missing\"")
        }
        other => panic!("expected the archive's error, got {other:?}"),
    }
    // A time the archive cannot resolve: the merge's time source reaches it, and is refused.
    match ReplayMerge::new(
        &mut client,
        config(MergeStart::Time(5)).with_time_source("sundial"),
    ) {
        Err(ClientError::Archive { message, .. }) => {
            assert_eq!(
                message,
                "time source \"sundial\": expected capture, cluster-egress[:UNIT], tern-egress or field:OFFSET:UNIT"
            )
        }
        other => panic!("expected the archive's error, got {other:?}"),
    }
    assert_eq!(archive.control_requests("GetCursorRequest"), 2);
    assert_eq!(archive.control_requests("PositionAtTimeRequest"), 1);
    assert_eq!(
        archive.control_requests("ReplayRequest"),
        0,
        "no replay was asked for"
    );
    // The client is still usable: a merge from a time before the first message starts at the
    // recording's start, and delivers all of it.
    let mut merge = ReplayMerge::new(&mut client, config(MergeStart::Time(5))).expect("starts");
    assert_eq!(merge.phase(), MergePhase::Replaying);
    assert_eq!(archive.control_requests("PositionAtTimeRequest"), 2);
    assert_eq!(archive.control_requests("ReplayRequest"), 1);
    let mut checker = Checker::new(0);
    drive(
        &mut merge,
        &mut checker,
        Duration::from_secs(30),
        "the end",
        |merge, _| merge.is_ended(),
    );
    assert_eq!(checker.first_end, Some(positions[0]), "from the start");
    assert_eq!(checker.next, 100);
    assert_eq!(merge.position(), Some(end));
}

#[test]
fn a_merge_without_progress_times_out_and_stops_its_replay() {
    let setup = ipc_setup();
    let fixture = Fixture::start("no-progress", &setup);
    let (archive, dir) = (&fixture.archive, fixture.dir());
    // The recording stays active: the publisher waits before its last message.
    let count = 3_000;
    let (positions_tx, positions_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let publisher = publish(
        dir.clone(),
        setup.live_channel.clone(),
        count + 1,
        positions_tx,
        Some((count, go_rx)),
    );
    let recording_id = live_recording(archive);
    let mut positions = Vec::new();
    receive_positions(&positions_rx, &mut positions, count);
    wait_recorded(archive, recording_id, positions[count as usize - 1]);
    let mut client = ArchiveClient::connect(ArchiveClientConfig::local(&dir)).expect("connects");
    let mut config = ReplayMergeConfig::new(
        recording_id,
        MergeStart::RecordingStart,
        "aeron:ipc",
        REPLAY_STREAM,
    );
    config.progress_timeout = Duration::from_millis(300);
    let mut merge = ReplayMerge::new(&mut client, config).expect("merge starts");
    // The archive accepted the replay; now it sends no more of it. Before the merge polls, the
    // replay can have sent no more than its publication's window (the merge has not read it).
    archive
        .pause_replay(merge.replay_session_id())
        .expect("the replay pauses");
    let replay_session_id = merge.replay_session_id();
    assert_eq!(
        merge.live_channel(),
        format!(
            "{}|session-id={}",
            setup.live_channel,
            merge.recording().session_id
        )
    );
    let mut checker = Checker::new(0);
    let started = Instant::now();
    let mut idle = BackoffIdle::new();
    let error = loop {
        match merge.poll(|bytes, header| checker.on_message(bytes, header), 10) {
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
    assert!(!merge.is_merged());
    assert!(
        checker.next < count,
        "the paused replay held back the rest: {} delivered",
        checker.next
    );
    assert!(matches!(
        merge.poll(|_, _| {}, 10),
        Err(ClientError::Merge(_))
    ));
    // The failed merge stopped its replay.
    wait_replay_state(archive, replay_session_id, ReplayState::Stopped);
    assert_eq!(archive.control_requests("StopReplayRequest"), 1);
    drop(merge);
    drop(go_tx);
    publisher.join().expect("the publisher stops");
}
