//! The archive operations of Aeron's control protocol against a real embedded media driver:
//! truncate, purge, extend, recording events, auto-stop, stop by identity, bounded replays,
//! concurrency limits and error codes.

use std::path::Path;
use std::time::{Duration, Instant};
use tern_archive::frame::term_of;
use tern_archive::{
    Archive, ArchiveConfig, ArchiveError, ArchiveErrorCode, ArchiveView, RecordingDescriptor,
    RecordingEvent, RecordingId, RecordingSignalKind, ReplayRequest, ReplayState, SourceLocation,
    StoreError,
};
use tern_transport::{BackoffIdle, Client, FragmentAssembler, Idle};

use tern_testkit::{archive, driver, offer_with, wait_recorded, wait_stopped, wait_until, TERM};
const SEGMENT: i64 = 2 * TERM as i64;

fn config(dir: &Path, aeron_dir: &str) -> ArchiveConfig {
    tern_testkit::archive_config(dir, aeron_dir, SEGMENT as i32)
}

/// Message `sequence`: its sequence, then filler.
fn message(sequence: u32) -> Vec<u8> {
    let length = 100 + (sequence as usize * 37) % 900;
    let mut bytes = sequence.to_le_bytes().to_vec();
    while bytes.len() < length {
        bytes.push((sequence as usize * 7 + bytes.len()) as u8);
    }
    bytes
}

fn sequence_of(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"))
}

/// Record messages `sequences` on `aeron:ipc` `stream` from one publication, wait until all
/// are recorded and stop; returns the recording id and the subscription id.
fn record_and_stop(
    archive: &Archive,
    client: &Client,
    stream: i32,
    sequences: std::ops::Range<u32>,
) -> (RecordingId, i64) {
    let subscription_id = archive
        .start_recording("aeron:ipc", stream, SourceLocation::Remote)
        .expect("record");
    let publication = client.add_publication("aeron:ipc", stream).expect("pub");
    let session_id = publication.session_id();
    wait_until("the recording to start", Duration::from_secs(10), || {
        archive.find_recording(stream, session_id).is_some()
    });
    for sequence in sequences {
        offer_with(|| publication.offer(&message(sequence)));
    }
    let recording_id = archive
        .find_recording(stream, session_id)
        .expect("recording")
        .descriptor
        .recording_id;
    wait_recorded(archive, recording_id, publication.position());
    archive.stop_recording(subscription_id).expect("stop");
    (recording_id, subscription_id)
}

/// The channel of a publication that starts where `descriptor` stopped, with its geometry: the
/// publication that can extend it.
fn continuing_channel(descriptor: &RecordingDescriptor, position: i64) -> String {
    let (term_id, term_offset) =
        term_of(position, descriptor.initial_term_id, descriptor.term_length);
    format!(
        "aeron:ipc?init-term-id={}|term-id={term_id}|term-offset={term_offset}|term-length={}|mtu={}",
        descriptor.initial_term_id, descriptor.term_length, descriptor.mtu_length
    )
}

fn replay_request(recording_id: RecordingId) -> ReplayRequest {
    ReplayRequest {
        recording_id,
        channel: "aeron:ipc".into(),
        stream_id: 9000 + (Client::nano_clock() % 1000) as i32,
        ..ReplayRequest::default()
    }
}

/// Replay the whole recording and return its messages' sequences with the positions after them.
fn replay_all(archive: &Archive, client: &Client, recording_id: RecordingId) -> Vec<(u32, i64)> {
    let request = replay_request(recording_id);
    let subscription = client
        .add_subscription(&request.channel, request.stream_id)
        .expect("replay subscription");
    let start = archive
        .recording(recording_id)
        .expect("recording")
        .descriptor
        .start_position;
    let replay_id = archive.start_replay(&request).expect("replay starts");
    let status = archive.replay_status(replay_id).expect("status");
    let mut assembler = FragmentAssembler::new();
    let mut received: Vec<(u32, i64)> = Vec::new();
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Done means all was sent; what was sent may still be on its way.
        let reached = received.last().map_or(start, |(_, position)| *position);
        if status.is_finished() && reached >= status.position() {
            break;
        }
        let work = subscription
            .poll(
                |fragment, header| {
                    assembler.on_fragment(fragment, header, &mut |message, header| {
                        received.push((sequence_of(message), header.position))
                    })
                },
                64,
            )
            .expect("poll");
        assert!(
            Instant::now() < deadline,
            "replay stuck: {:?} at {} of {}",
            status.state(),
            received.last().map_or(start, |(_, position)| *position),
            status.position()
        );
        idle.idle(work);
    }
    assert_eq!(status.state(), ReplayState::Done, "{:?}", status.error());
    received
}

/// The messages of a recording read from its files, with the positions after them.
fn messages_on_disk(dir: &Path, recording_id: RecordingId) -> Vec<(u32, i64)> {
    let view = ArchiveView::open(dir).expect("view");
    let mut messages = Vec::new();
    view.messages(recording_id, None, None, |bytes, header| {
        messages.push((sequence_of(bytes), header.position));
        true
    })
    .expect("read");
    let report = view.verify(recording_id, |_| {}).expect("verify");
    assert!(report.problem.is_none(), "{:?}", report.problem);
    messages
}

fn segment_files(dir: &Path, recording_id: RecordingId) -> Vec<i64> {
    tern_archive::list_segments(dir)
        .expect("list")
        .remove(&recording_id)
        .unwrap_or_default()
}

/// Extend `recording_id` (stopped at `stop`) with messages `sequences` from a publication that
/// starts at the stop; returns the subscription id and the end position. The publication is
/// closed at the end; with `auto_stop` that stops the extension.
fn extend_with(
    archive: &Archive,
    client: &Client,
    recording_id: RecordingId,
    sequences: std::ops::Range<u32>,
    auto_stop: bool,
) -> (i64, i64) {
    let descriptor = archive
        .recording(recording_id)
        .expect("recording")
        .descriptor;
    let subscription_id = archive
        .extend_recording(
            recording_id,
            "aeron:ipc",
            descriptor.stream_id,
            SourceLocation::Remote,
            auto_stop,
        )
        .expect("extend");
    let publication = client
        .add_exclusive_publication(
            &continuing_channel(&descriptor, descriptor.stop_position),
            descriptor.stream_id,
        )
        .expect("continuing publication");
    assert_eq!(publication.position(), descriptor.stop_position);
    wait_until("the extension to start", Duration::from_secs(10), || {
        archive.recording_subscription_of(recording_id) == Some(subscription_id)
    });
    for sequence in sequences {
        offer_with(|| publication.offer(&message(sequence)));
    }
    let end = publication.position();
    wait_recorded(archive, recording_id, end);
    (subscription_id, end)
}

fn events_of(receiver: &std::sync::mpsc::Receiver<RecordingEvent>) -> Vec<RecordingEvent> {
    receiver.try_iter().collect()
}

fn event(
    signal: RecordingSignalKind,
    recording_id: RecordingId,
    subscription_id: i64,
    position: i64,
) -> RecordingEvent {
    RecordingEvent {
        signal,
        recording_id: Some(recording_id),
        subscription_id,
        position,
    }
}

#[test]
fn an_extended_recording_replays_every_message_once_in_order_and_signals_each_step() {
    let driver = driver("extend");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let events = archive.subscribe_events();
    let (recording_id, first_subscription) = record_and_stop(&archive, &client, 2001, 0..300);
    let first = archive
        .recording(recording_id)
        .expect("recording")
        .descriptor;
    // Its Stop is signalled by the time `stop_recording` returns (the recorder's answer goes
    // through the conductor after its report).
    assert_eq!(
        events_of(&events),
        vec![
            event(
                RecordingSignalKind::Start,
                recording_id,
                first_subscription,
                first.start_position
            ),
            event(
                RecordingSignalKind::Stop,
                recording_id,
                first_subscription,
                first.stop_position
            ),
        ]
    );

    let (extension, end) = extend_with(&archive, &client, recording_id, 300..700, true);
    assert!(archive.recording(recording_id).expect("recording").active);
    assert_eq!(
        archive
            .recording(recording_id)
            .expect("recording")
            .descriptor
            .stop_position,
        tern_archive::NULL_POSITION,
        "the catalog says active while extended"
    );
    // Closing the publication ends the image: auto-stop removes the subscription.
    let stopped = wait_stopped(&archive, recording_id);
    wait_until("the auto-stop", Duration::from_secs(10), || {
        archive
            .recording_subscriptions()
            .iter()
            .all(|subscription| subscription.subscription_id != extension)
    });
    assert_eq!(stopped.stop_position, end);
    assert_eq!(stopped.start_position, first.start_position);
    assert_eq!(archive.recordings().len(), 1, "no new recording");

    let replayed = replay_all(&archive, &client, recording_id);
    let sequences: Vec<u32> = replayed.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(sequences, (0..700).collect::<Vec<_>>());
    assert_eq!(replayed.last().map(|(_, position)| *position), Some(end));
    assert_eq!(messages_on_disk(data.path(), recording_id), replayed);

    assert_eq!(
        events_of(&events),
        vec![
            event(
                RecordingSignalKind::Extend,
                recording_id,
                extension,
                first.stop_position
            ),
            event(RecordingSignalKind::Stop, recording_id, extension, end),
        ]
    );

    // The time index goes on: a time after the extension began finds a position in it.
    let entries = ArchiveView::open(data.path())
        .expect("view")
        .time_index(
            &ArchiveView::open(data.path())
                .expect("view")
                .recording(recording_id)
                .expect("recording"),
        )
        .expect("time index");
    assert!(entries
        .iter()
        .any(|entry| entry.position >= first.stop_position));
    assert!(entries
        .windows(2)
        .all(|pair| pair[0].position <= pair[1].position
            && pair[0].timestamp_ns <= pair[1].timestamp_ns));
}

#[test]
fn an_image_that_does_not_continue_the_recording_is_refused_and_a_fitting_one_extends_it() {
    let driver = driver("refuse");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (recording_id, _) = record_and_stop(&archive, &client, 2002, 0..50);
    let descriptor = archive
        .recording(recording_id)
        .expect("recording")
        .descriptor;
    let events = archive.subscribe_events();
    let subscription_id = archive
        .extend_recording(
            recording_id,
            "aeron:ipc",
            2002,
            SourceLocation::Remote,
            false,
        )
        .expect("extend");
    // Starts at position 0 with its own initial term id: refused, not recorded.
    let stranger = client
        .add_exclusive_publication("aeron:ipc", 2002)
        .expect("stranger");
    offer_with(|| stranger.offer(&message(999)));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(archive.recording_subscription_of(recording_id), None);
    assert_eq!(
        archive.recordings().len(),
        1,
        "the stranger is not recorded"
    );
    assert_eq!(
        archive
            .recording(recording_id)
            .expect("recording")
            .descriptor,
        descriptor,
        "the recording is untouched"
    );
    // The refusal is signalled (a control client gets an error response), nothing else.
    let seen = events_of(&events);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (
            seen[0].signal,
            seen[0].recording_id,
            seen[0].subscription_id
        ),
        (
            RecordingSignalKind::Failed,
            Some(recording_id),
            subscription_id
        )
    );
    let failures = archive.recording_failures();
    assert!(
        failures.len() == 1 && failures[0].error.contains("cannot record the image"),
        "{failures:?}"
    );
    drop(stranger);
    // A publication at the stop position with the recording's geometry continues it.
    let publication = client
        .add_exclusive_publication(
            &continuing_channel(&descriptor, descriptor.stop_position),
            2002,
        )
        .expect("continuing publication");
    wait_until("the extension to start", Duration::from_secs(10), || {
        archive.recording_subscription_of(recording_id) == Some(subscription_id)
    });
    for sequence in 50..80 {
        offer_with(|| publication.offer(&message(sequence)));
    }
    wait_recorded(&archive, recording_id, publication.position());
    // Refusals of the request itself.
    assert!(matches!(
        archive.extend_recording(
            recording_id,
            "aeron:ipc",
            2003,
            SourceLocation::Remote,
            false
        ),
        Err(ArchiveError::Invalid(_))
    ));
    let active = archive
        .extend_recording(
            recording_id,
            "aeron:udp?endpoint=localhost:20999",
            2002,
            SourceLocation::Remote,
            false,
        )
        .expect_err("active");
    assert!(matches!(active, ArchiveError::Active { .. }), "{active}");
    assert_eq!(active.code(), ArchiveErrorCode::ActiveRecording);
    assert!(matches!(
        archive.extend_recording(RecordingId::new(4242), "aeron:ipc", 2002, SourceLocation::Remote, false),
        Err(ArchiveError::Store(StoreError::UnknownRecording(id))) if id == RecordingId::new(4242)
    ));
    let end = publication.position();
    archive.stop_recording(subscription_id).expect("stop");
    assert_eq!(
        archive
            .recording(recording_id)
            .expect("recording")
            .descriptor
            .stop_position,
        end
    );
    let sequences: Vec<u32> = replay_all(&archive, &client, recording_id)
        .iter()
        .map(|(sequence, _)| *sequence)
        .collect();
    assert_eq!(sequences, (0..80).collect::<Vec<_>>());
}

#[test]
fn truncate_keeps_exactly_the_messages_before_the_position_and_extend_goes_on_from_there() {
    let driver = driver("truncate");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (recording_id, _) = record_and_stop(&archive, &client, 2004, 0..600);
    let original = messages_on_disk(data.path(), recording_id);
    let before = segment_files(data.path(), recording_id);
    assert!(before.len() >= 3, "several segments: {before:?}");
    let descriptor = archive
        .recording(recording_id)
        .expect("recording")
        .descriptor;

    // A replay that runs (waiting for a subscriber) is stopped by the truncate.
    let waiting = archive
        .start_replay(&replay_request(recording_id))
        .expect("replay");
    let events = archive.subscribe_events();
    // Cut in the second segment, at the start of message 250.
    let keep = original
        .iter()
        .position(|(_, position)| *position > SEGMENT + 1000)
        .expect("a message in the second segment");
    let position = original[keep - 1].1;
    let deleted = archive
        .truncate_recording(recording_id, position)
        .expect("truncate");
    let after = segment_files(data.path(), recording_id);
    assert_eq!(deleted, before.len() - after.len());
    assert!(after.iter().all(|base| *base <= position));
    assert_eq!(
        archive.replay_status(waiting).expect("status").state(),
        ReplayState::Stopped
    );
    assert_eq!(
        events_of(&events),
        vec![event(RecordingSignalKind::Delete, recording_id, -1, -1)]
    );
    let truncated = archive.recording(recording_id).expect("recording");
    assert!(!truncated.active);
    assert_eq!(truncated.descriptor.stop_position, position);
    assert!(truncated.descriptor.stop_timestamp_ns <= descriptor.stop_timestamp_ns);
    assert!(truncated.descriptor.stop_timestamp_ns >= descriptor.start_timestamp_ns);

    // Replay and the files show exactly the messages before the position.
    assert_eq!(
        replay_all(&archive, &client, recording_id),
        original[..keep]
    );
    assert_eq!(
        messages_on_disk(data.path(), recording_id),
        original[..keep]
    );
    // The rest of the segment holding the position reads as zeroes.
    let base = *after.last().expect("a segment");
    let bytes =
        std::fs::read(data.path().join(format!("{recording_id}-{base}.rec"))).expect("segment");
    assert!(bytes[(position - base) as usize..]
        .iter()
        .all(|byte| *byte == 0));
    let view = ArchiveView::open(data.path()).expect("view");
    let entries = view
        .time_index(&view.recording(recording_id).expect("recording"))
        .expect("time index");
    assert!(entries.iter().all(|entry| entry.position < position));
    let raw_entries = (std::fs::metadata(data.path().join(format!("{recording_id}.tix")))
        .expect("tix")
        .len()
        - 32)
        / 16;
    assert_eq!(
        raw_entries,
        entries.len() as u64,
        "the index file itself is cut"
    );

    // Nothing more is written to it: a new publication makes a new recording.
    let (next, _) = record_and_stop(&archive, &client, 2004, 0..5);
    assert_ne!(next, recording_id);
    assert_eq!(
        archive
            .recording(recording_id)
            .expect("recording")
            .descriptor
            .stop_position,
        position
    );
    // An extension goes on from the truncated stop.
    let (_, end) = extend_with(&archive, &client, recording_id, 1000..1200, true);
    wait_stopped(&archive, recording_id);
    let replayed = replay_all(&archive, &client, recording_id);
    let expected: Vec<u32> = (0..keep as u32).chain(1000..1200).collect();
    assert_eq!(
        replayed
            .iter()
            .map(|(sequence, _)| *sequence)
            .collect::<Vec<_>>(),
        expected
    );
    assert_eq!(replayed.last().map(|(_, position)| *position), Some(end));
    assert_eq!(messages_on_disk(data.path(), recording_id), replayed);
}

#[test]
fn truncate_refuses_active_recordings_bad_positions_and_unknown_ids() {
    let driver = driver("refusals");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (recording_id, _) = record_and_stop(&archive, &client, 2005, 0..20);
    let messages = messages_on_disk(data.path(), recording_id);
    let descriptor = archive
        .recording(recording_id)
        .expect("recording")
        .descriptor;
    let stop = descriptor.stop_position;
    for (position, code, says) in [
        (
            messages[3].1 + 17,
            ArchiveErrorCode::InvalidPosition,
            "not frame aligned",
        ),
        (
            messages[3].1 + 32,
            ArchiveErrorCode::InvalidPosition,
            "not the start of a frame",
        ),
        (
            stop + 32,
            ArchiveErrorCode::InvalidPosition,
            "past the recording's end",
        ),
        (
            descriptor.start_position - 32,
            ArchiveErrorCode::InvalidPosition,
            "before the recording's start",
        ),
    ] {
        let error = archive
            .truncate_recording(recording_id, position)
            .expect_err("refused");
        assert!(error.to_string().contains(says), "{position}: {error}");
        assert_eq!(error.code(), code);
    }
    let unknown = archive
        .truncate_recording(RecordingId::new(77), 0)
        .expect_err("unknown");
    assert!(matches!(
        unknown,
        ArchiveError::Store(StoreError::UnknownRecording(id)) if id == RecordingId::new(77)
    ));
    assert_eq!(unknown.code(), ArchiveErrorCode::UnknownRecording);
    // At the stop position: nothing changes.
    assert_eq!(
        archive
            .truncate_recording(recording_id, stop)
            .expect("no-op"),
        0
    );
    assert_eq!(messages_on_disk(data.path(), recording_id), messages);

    // An active recording.
    archive
        .start_recording("aeron:ipc", 2006, SourceLocation::Remote)
        .expect("record");
    let publication = client.add_publication("aeron:ipc", 2006).expect("pub");
    offer_with(|| publication.offer(&message(0)));
    wait_until("the recording", Duration::from_secs(10), || {
        archive
            .find_recording(2006, publication.session_id())
            .is_some()
    });
    let live = archive
        .find_recording(2006, publication.session_id())
        .expect("live")
        .descriptor;
    for error in [
        archive
            .truncate_recording(live.recording_id, live.start_position)
            .expect_err("active"),
        archive
            .purge_recording(live.recording_id)
            .expect_err("active"),
    ] {
        assert!(matches!(error, ArchiveError::Active { .. }), "{error}");
        assert!(error.to_string().contains("active recording"), "{error}");
        assert_eq!(error.code(), ArchiveErrorCode::ActiveRecording);
    }

    // At the start: every segment file goes, the recording is empty.
    let deleted = archive
        .truncate_recording(recording_id, descriptor.start_position)
        .expect("truncate to the start");
    assert_eq!(deleted, 1);
    assert!(segment_files(data.path(), recording_id).is_empty());
    assert!(messages_on_disk(data.path(), recording_id).is_empty());
    assert!(replay_all(&archive, &client, recording_id).is_empty());
}

#[test]
fn purge_deletes_the_files_and_the_listing_but_never_the_id() {
    let driver = driver("purge");
    let data = tempfile::tempdir().expect("temp dir");
    let client = Client::connect(driver.dir()).expect("client");
    let (purged, kept);
    {
        let archive = archive(data.path(), driver.dir());
        (purged, _) = record_and_stop(&archive, &client, 2007, 0..400);
        (kept, _) = record_and_stop(&archive, &client, 2008, 0..10);
        std::fs::write(data.path().join(format!("{purged}-0.keys")), b"sidecar").expect("sidecar");
        // A replay that runs (waiting for its subscriber) keeps the recording.
        let waiting = archive
            .start_replay(&replay_request(purged))
            .expect("replay");
        let error = archive.purge_recording(purged).expect_err("replay running");
        assert!(
            matches!(error, ArchiveError::ReplayRunning { .. }),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            format!("cannot purge recording {purged} with active replay")
        );
        archive.stop_replay(waiting).expect("stop replay");
        let status = archive.replay_status(waiting).expect("status");
        wait_until("the replay to stop", Duration::from_secs(10), || {
            status.is_finished()
        });
        let events = archive.subscribe_events();
        let segments = segment_files(data.path(), purged).len();
        assert_eq!(archive.purge_recording(purged).expect("purge"), segments);
        assert_eq!(
            events_of(&events),
            vec![event(RecordingSignalKind::Delete, purged, -1, -1)]
        );
        let left: Vec<String> = std::fs::read_dir(data.path())
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .into_string()
                    .expect("name")
            })
            .filter(|name| {
                name.starts_with(&format!("{purged}-")) || name.starts_with(&format!("{purged}."))
            })
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(matches!(
            archive.recording(purged),
            Err(ArchiveError::Store(StoreError::UnknownRecording(_)))
        ));
        assert!(matches!(
            archive.start_replay(&replay_request(purged)),
            Err(ArchiveError::Store(StoreError::UnknownRecording(_)))
        ));
        assert!(matches!(
            archive.purge_recording(purged),
            Err(ArchiveError::Store(StoreError::UnknownRecording(_)))
        ));
        let ids: Vec<RecordingId> = archive
            .recordings()
            .iter()
            .map(|info| info.descriptor.recording_id)
            .collect();
        assert_eq!(ids, vec![kept]);
        archive.shutdown();
    }
    // After a restart: still gone, still listed nowhere, the id not reused, verify content.
    let archive = archive(data.path(), driver.dir());
    assert!(matches!(
        archive.recording(purged),
        Err(ArchiveError::Store(StoreError::UnknownRecording(_)))
    ));
    let view = ArchiveView::open(data.path()).expect("view");
    let listed: Vec<RecordingId> = view
        .recordings()
        .expect("list")
        .iter()
        .map(|recording| recording.descriptor.recording_id)
        .collect();
    assert_eq!(listed, vec![kept]);
    assert_eq!(messages_on_disk(data.path(), kept).len(), 10);
    let (next, _) = record_and_stop(&archive, &client, 2009, 0..3);
    assert!(
        next > purged && next > kept,
        "ids are never reused ({next})"
    );
}

#[test]
fn auto_stop_removes_the_subscription_and_stop_by_identity_stops_a_recordings_subscription() {
    let driver = driver("identity");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let events = archive.subscribe_events();

    let automatic = archive
        .start_recording_with("aeron:ipc", 2010, SourceLocation::Remote, true)
        .expect("record");
    let publication = client
        .add_exclusive_publication("aeron:ipc", 2010)
        .expect("pub");
    wait_until("the recording", Duration::from_secs(10), || {
        archive
            .find_recording(2010, publication.session_id())
            .is_some()
    });
    let first = archive
        .find_recording(2010, publication.session_id())
        .expect("recording")
        .descriptor
        .recording_id;
    assert_eq!(archive.recording_subscription_of(first), Some(automatic));
    offer_with(|| publication.offer(&message(0)));
    let end = publication.position();
    wait_recorded(&archive, first, end);
    drop(publication);
    wait_stopped(&archive, first);
    wait_until("the auto-stop", Duration::from_secs(10), || {
        archive.recording_subscriptions().is_empty()
    });
    assert_eq!(archive.recording_subscription_of(first), None);
    assert!(matches!(
        archive.stop_recording(automatic),
        Err(ArchiveError::UnknownSubscription(_))
    ));
    assert_eq!(
        archive.stop_recording(automatic).expect_err("gone").code(),
        ArchiveErrorCode::UnknownSubscription
    );

    // Without auto-stop the subscription stays; stop by identity removes it.
    let manual = archive
        .start_recording("aeron:ipc", 2011, SourceLocation::Remote)
        .expect("record");
    let duplicate = archive
        .start_recording("aeron:ipc", 2011, SourceLocation::Remote)
        .expect_err("duplicate");
    assert!(matches!(
        duplicate,
        ArchiveError::DuplicateSubscription { .. }
    ));
    assert_eq!(duplicate.code(), ArchiveErrorCode::ActiveSubscription);
    // The same without waiting for the recorder: the answer comes by polling.
    let pending = archive
        .begin_recording("aeron:ipc", 2011, SourceLocation::Remote, false)
        .expect("handed to the recorder");
    let mut answer = None;
    wait_until("the recorder's answer", Duration::from_secs(10), || {
        answer = pending.poll();
        answer.is_some()
    });
    assert!(matches!(
        answer.expect("polled"),
        Err(ArchiveError::DuplicateSubscription { .. })
    ));
    let pending = archive.begin_stop_recording(424_242).expect("handed over");
    let mut answer = None;
    wait_until("the recorder's answer", Duration::from_secs(10), || {
        answer = pending.poll();
        answer.is_some()
    });
    assert!(matches!(
        answer.expect("polled"),
        Err(ArchiveError::UnknownSubscription(424_242))
    ));
    let publication = client
        .add_exclusive_publication("aeron:ipc", 2011)
        .expect("pub");
    wait_until("the recording", Duration::from_secs(10), || {
        archive
            .find_recording(2011, publication.session_id())
            .is_some()
    });
    let second = archive
        .find_recording(2011, publication.session_id())
        .expect("recording")
        .descriptor
        .recording_id;
    assert_eq!(archive.recording_subscription_of(second), Some(manual));
    assert!(archive.stop_recording_by_identity(second).expect("stop"));
    assert!(!archive.recording(second).expect("recording").active);
    assert!(archive.recording_subscriptions().is_empty());
    assert!(!archive.stop_recording_by_identity(second).expect("again"));
    assert!(!archive.stop_recording_by_identity(first).expect("stopped"));
    assert!(matches!(
        archive.stop_recording_by_identity(RecordingId::new(999)),
        Err(ArchiveError::Store(StoreError::UnknownRecording(id))) if id == RecordingId::new(999)
    ));

    let seen: Vec<(RecordingSignalKind, RecordingId, i64)> = events_of(&events)
        .iter()
        .map(|event| {
            let recording_id = event.recording_id.expect("a recording's event");
            (event.signal, recording_id, event.subscription_id)
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (RecordingSignalKind::Start, first, automatic),
            (RecordingSignalKind::Stop, first, automatic),
            (RecordingSignalKind::Start, second, manual),
            (RecordingSignalKind::Stop, second, manual),
        ]
    );
}

/// A replay of the whole recording bounded by counter `counter_id`, its subscription made
/// first; the subscription, the replay's status and the request (its channel and stream).
fn start_bounded(
    archive: &Archive,
    client: &Client,
    recording_id: RecordingId,
    counter_id: i32,
) -> (
    tern_transport::Subscription,
    std::sync::Arc<tern_archive::ReplayStatus>,
    ReplayRequest,
) {
    let request = ReplayRequest {
        limit_counter_id: Some(counter_id),
        ..replay_request(recording_id)
    };
    let subscription = client
        .add_subscription(&request.channel, request.stream_id)
        .expect("sub");
    let replay_id = archive.start_replay(&request).expect("bounded replay");
    let status = archive.replay_status(replay_id).expect("status");
    (subscription, status, request)
}

/// Wait `wait`, then take whatever arrived: each fragment appends `u32::MAX` to `seen`, so a
/// check of `seen` fails if anything came.
fn nothing_more(subscription: &tern_transport::Subscription, seen: &mut Vec<u32>, wait: Duration) {
    std::thread::sleep(wait);
    while subscription
        .poll(|_, _| seen.push(u32::MAX), 16)
        .expect("poll")
        > 0
    {}
}

/// Poll until `count` messages arrived (their sequences appended to `seen`).
fn receive(
    subscription: &tern_transport::Subscription,
    seen: &mut Vec<u32>,
    count: usize,
    status: &tern_archive::ReplayStatus,
) {
    let mut idle = BackoffIdle::new();
    let mut assembler = FragmentAssembler::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < count {
        assert!(
            Instant::now() < deadline,
            "got {} of {count}: {:?} {:?}",
            seen.len(),
            status.state(),
            status.error()
        );
        let work = subscription
            .poll(
                |fragment, header| {
                    assembler.on_fragment(fragment, header, &mut |message, _| {
                        seen.push(sequence_of(message))
                    })
                },
                16,
            )
            .expect("poll");
        idle.idle(work);
    }
}

#[test]
fn a_bounded_replay_stops_at_its_counter_and_goes_on_when_it_grows() {
    let driver = driver("bounded");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (recording_id, _) = record_and_stop(&archive, &client, 2012, 0..100);
    let messages = messages_on_disk(data.path(), recording_id);
    let limit = client
        .add_counter(1001, &[], "replay limit")
        .expect("counter");
    limit.set(messages[39].1);
    let (subscription, status, request) =
        start_bounded(&archive, &client, recording_id, limit.id());
    let mut seen = Vec::new();
    receive(&subscription, &mut seen, 40, &status);
    nothing_more(&subscription, &mut seen, Duration::from_millis(300));
    assert_eq!(
        seen,
        (0..40).collect::<Vec<_>>(),
        "nothing past the counter"
    );
    assert!(!status.is_finished(), "{:?}", status.state());
    assert_eq!(status.position(), messages[39].1);
    // The counter grows in two steps; the replay follows and ends at the stop.
    limit.set(messages[69].1 + 8);
    receive(&subscription, &mut seen, 70, &status);
    limit.set(i64::MAX);
    receive(&subscription, &mut seen, 100, &status);
    wait_until("the bounded replay to end", Duration::from_secs(10), || {
        status.is_finished()
    });
    assert_eq!(status.state(), ReplayState::Done);
    assert_eq!(seen, (0..100).collect::<Vec<_>>());

    // A counter freed below the stop ends the replay at its last value.
    let short = client
        .add_counter(1001, &[], "short limit")
        .expect("counter");
    short.set(messages[9].1);
    let request = ReplayRequest {
        limit_counter_id: Some(short.id()),
        ..request
    };
    let replay_id = archive.start_replay(&request).expect("bounded replay");
    let status = archive.replay_status(replay_id).expect("status");
    let mut seen = Vec::new();
    receive(&subscription, &mut seen, 10, &status);
    drop(short);
    wait_until(
        "the replay to end with its counter",
        Duration::from_secs(10),
        || status.is_finished(),
    );
    assert_eq!(status.state(), ReplayState::Done);
    assert_eq!(status.position(), messages[9].1);

    // A counter id that is not allocated is refused.
    let error = archive
        .start_replay(&ReplayRequest {
            limit_counter_id: Some(100_000),
            ..request
        })
        .expect_err("no such counter");
    assert!(error.to_string().contains("counter"), "{error}");
}

#[test]
fn a_bounded_replay_of_a_live_recording_follows_it_up_to_the_counter() {
    let driver = driver("bounded-live");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let subscription_id = archive
        .start_recording("aeron:ipc", 2013, SourceLocation::Remote)
        .expect("record");
    let publication = client
        .add_exclusive_publication("aeron:ipc", 2013)
        .expect("pub");
    wait_until("the recording", Duration::from_secs(10), || {
        archive
            .find_recording(2013, publication.session_id())
            .is_some()
    });
    let recording_id = archive
        .find_recording(2013, publication.session_id())
        .expect("recording")
        .descriptor
        .recording_id;
    let limit = client
        .add_counter(1001, &[], "live limit")
        .expect("counter");
    let mut ends = Vec::new();
    for sequence in 0..20 {
        offer_with(|| publication.offer(&message(sequence)));
        ends.push(publication.position());
    }
    limit.set(ends[9]);
    let (replay_subscription, status, _) =
        start_bounded(&archive, &client, recording_id, limit.id());
    let mut seen = Vec::new();
    receive(&replay_subscription, &mut seen, 10, &status);
    nothing_more(&replay_subscription, &mut seen, Duration::from_millis(200));
    assert_eq!(
        seen.len(),
        10,
        "not past the counter though more is recorded"
    );
    // More is published; the counter lets all of it through, and the replay ends with the stop.
    for sequence in 20..30 {
        offer_with(|| publication.offer(&message(sequence)));
    }
    let end = publication.position();
    limit.set(end);
    receive(&replay_subscription, &mut seen, 30, &status);
    assert!(!status.is_finished(), "it follows the live recording");
    wait_recorded(&archive, recording_id, end);
    archive.stop_recording(subscription_id).expect("stop");
    wait_until(
        "the replay to end with the recording",
        Duration::from_secs(10),
        || status.is_finished(),
    );
    assert_eq!(status.state(), ReplayState::Done);
    assert_eq!(seen, (0..30).collect::<Vec<_>>());
}

#[test]
fn limits_refuse_recordings_and_replays_past_the_maximum() {
    let driver = driver("limits");
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = config(data.path(), driver.dir());
    config.max_concurrent_recordings = 1;
    config.max_concurrent_replays = 1;
    let archive = Archive::launch(config).expect("archive");
    let client = Client::connect(driver.dir()).expect("client");
    let subscription_id = archive
        .start_recording("aeron:ipc", 2014, SourceLocation::Remote)
        .expect("first");
    let error = archive
        .start_recording("aeron:ipc", 2015, SourceLocation::Remote)
        .expect_err("second");
    assert!(matches!(error, ArchiveError::MaxRecordings(1)), "{error}");
    assert_eq!(error.code(), ArchiveErrorCode::MaxRecordings);
    assert_eq!(error.to_string(), "max concurrent recordings reached at 1");
    // Two images on the one subscription: only one is recorded.
    let first = client
        .add_exclusive_publication("aeron:ipc", 2014)
        .expect("pub");
    let second = client
        .add_exclusive_publication("aeron:ipc", 2014)
        .expect("pub");
    offer_with(|| first.offer(&message(0)));
    offer_with(|| second.offer(&message(0)));
    wait_until("a recording", Duration::from_secs(10), || {
        archive.recordings().len() == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(archive.recordings().len(), 1);
    let recording_id = archive.recordings()[0].descriptor.recording_id;
    archive.stop_recording(subscription_id).expect("stop");
    // An extension is a recording subscription too.
    let extension = archive
        .extend_recording(
            recording_id,
            "aeron:ipc",
            2014,
            SourceLocation::Remote,
            false,
        )
        .expect("extend");
    let error = archive
        .start_recording("aeron:ipc", 2016, SourceLocation::Remote)
        .expect_err("past the limit");
    assert!(matches!(error, ArchiveError::MaxRecordings(1)), "{error}");
    archive.stop_recording(extension).expect("stop");

    let waiting = archive
        .start_replay(&replay_request(recording_id))
        .expect("replay");
    let error = archive
        .start_replay(&replay_request(recording_id))
        .expect_err("second replay");
    assert!(matches!(error, ArchiveError::MaxReplays(1)), "{error}");
    assert_eq!(error.code(), ArchiveErrorCode::MaxReplays);
    archive.stop_replay(waiting).expect("stop");
    let status = archive.replay_status(waiting).expect("status");
    wait_until("the replay to stop", Duration::from_secs(10), || {
        status.is_finished()
    });
    let next = archive
        .start_replay(&replay_request(recording_id))
        .expect("room again");
    archive.stop_replay(next).expect("stop");
    let status = archive.replay_status(next).expect("status");
    wait_until("the replay to stop", Duration::from_secs(10), || {
        status.is_finished()
    });

    // A replay begun without waiting for the replayer counts against the limit at once, and
    // its start is told by polling.
    let pending = archive
        .begin_replay(&replay_request(recording_id))
        .expect("begin");
    let error = archive
        .begin_replay(&replay_request(recording_id))
        .expect_err("the pending replay holds the only place");
    assert!(matches!(error, ArchiveError::MaxReplays(1)), "{error}");
    let mut started = None;
    wait_until("the begun replay to start", Duration::from_secs(10), || {
        started = archive.poll_replay_start(&pending);
        started.is_some()
    });
    let replay_id = started.expect("polled").expect("started");
    assert_eq!(replay_id, pending.id());
    archive.stop_replay(replay_id).expect("stop");
    let status = archive.replay_status(replay_id).expect("status");
    wait_until("the replay to stop", Duration::from_secs(10), || {
        status.is_finished()
    });
    // One the replayer cannot start (a channel the driver refuses) is told as an error, and
    // frees its place.
    let mut refused = replay_request(recording_id);
    refused.channel = "aeron:udp?endpoint=localhost".into();
    let pending = archive.begin_replay(&refused).expect("begin");
    // Until its refusal is taken in, it is known, and finished: a truncate of the recording
    // waiting for its replays to stop does not wait for it.
    let status = archive
        .replay_status(pending.id())
        .expect("known from the start");
    wait_until(
        "the refused replay to be finished",
        Duration::from_secs(10),
        || status.is_finished(),
    );
    let mut outcome = None;
    wait_until("the refusal", Duration::from_secs(10), || {
        outcome = archive.poll_replay_start(&pending);
        outcome.is_some()
    });
    let error = outcome.expect("polled").expect_err("refused");
    assert!(error.to_string().contains("endpoint"), "{error}");
    let again = archive
        .start_replay(&replay_request(recording_id))
        .expect("the refused one holds no place");
    archive.stop_replay(again).expect("stop");
}

#[test]
fn bytes_past_a_stop_position_are_ignored_and_cleared_by_an_extension() {
    let driver = driver("leftovers");
    let data = tempfile::tempdir().expect("temp dir");
    let client = Client::connect(driver.dir()).expect("client");
    let (recording_id, messages);
    {
        let archive = archive(data.path(), driver.dir());
        (recording_id, _) = record_and_stop(&archive, &client, 2017, 0..500);
        archive.shutdown();
    }
    messages = messages_on_disk(data.path(), recording_id);
    // A truncate that crashed after its catalog update: the files still hold everything.
    let cut = messages[99].1;
    {
        let mut catalog = tern_archive::Catalog::open(data.path(), true).expect("catalog");
        let mut descriptor = catalog.get(recording_id).expect("recording").clone();
        descriptor.stop_position = cut;
        catalog.update(&descriptor).expect("update");
    }
    let archive = archive(data.path(), driver.dir());
    assert_eq!(
        archive
            .recording(recording_id)
            .expect("recording")
            .descriptor
            .stop_position,
        cut,
        "recovery leaves a stopped recording alone"
    );
    assert_eq!(messages_on_disk(data.path(), recording_id), messages[..100]);
    assert_eq!(replay_all(&archive, &client, recording_id), messages[..100]);
    // The extension clears what follows the stop before it writes.
    let (_, end) = extend_with(&archive, &client, recording_id, 2000..2100, true);
    wait_stopped(&archive, recording_id);
    let expected: Vec<u32> = (0..100).chain(2000..2100).collect();
    let replayed = replay_all(&archive, &client, recording_id);
    assert_eq!(
        replayed
            .iter()
            .map(|(sequence, _)| *sequence)
            .collect::<Vec<_>>(),
        expected
    );
    assert_eq!(replayed.last().map(|(_, position)| *position), Some(end));
    assert_eq!(messages_on_disk(data.path(), recording_id), replayed);
    assert!(segment_files(data.path(), recording_id)
        .iter()
        .all(|base| *base < end));
}

const CHILD: &str = "TERN_OPS_KILL_CHILD";

/// Not a test by itself: the archive process that the kill test runs and kills.
#[test]
#[ignore = "run by a_kill_9_during_an_extension_is_recovered_at_the_right_end"]
fn extension_child_process() {
    let Ok(arguments) = std::env::var(CHILD) else {
        return;
    };
    let mut parts = arguments.split('|');
    let (Some(dir), Some(aeron_dir), Some(recording_id)) =
        (parts.next(), parts.next(), parts.next())
    else {
        panic!("bad {CHILD}: {arguments}");
    };
    let recording_id = RecordingId::new(recording_id.parse().expect("id"));
    let archive = archive(Path::new(dir), aeron_dir);
    let stream = archive
        .recording(recording_id)
        .expect("recording")
        .descriptor
        .stream_id;
    let subscription = archive
        .extend_recording(
            recording_id,
            "aeron:ipc",
            stream,
            SourceLocation::Remote,
            false,
        )
        .expect("extend");
    println!("extending {subscription}");
    loop {
        let info = archive.recording(recording_id).expect("recording");
        println!("recorded {} {}", info.active, info.recorded_position);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_kill_9_during_an_extension_is_recovered_at_the_right_end() {
    use std::io::BufRead;
    let driver = driver("kill");
    let data = tempfile::tempdir().expect("temp dir");
    let client = Client::connect(driver.dir()).expect("client");
    let recording_id;
    {
        let archive = archive(data.path(), driver.dir());
        (recording_id, _) = record_and_stop(&archive, &client, 2018, 0..300);
        archive.shutdown();
    }
    let descriptor = ArchiveView::open(data.path())
        .expect("view")
        .recording(recording_id)
        .expect("recording")
        .descriptor;
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "extension_child_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(
            CHILD,
            format!("{}|{}|{recording_id}", data.path().display(), driver.dir()),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("child");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next_line = || lines.next().expect("a line from the child").expect("read");
    while !next_line().starts_with("extending") {}
    let publication = client
        .add_exclusive_publication(
            &continuing_channel(&descriptor, descriptor.stop_position),
            2018,
        )
        .expect("continuing publication");
    for sequence in 300..1300 {
        offer_with(|| publication.offer(&message(sequence)));
    }
    let end = publication.position();
    loop {
        let line = next_line();
        if let Some(rest) = line.strip_prefix("recorded ") {
            let (active, position) = rest.split_once(' ').expect("two fields");
            if active == "true" && position.parse::<i64>().expect("position") >= end {
                break;
            }
        }
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    drop(publication);
    // The catalog still says active: the next launch recovers the end of the extension.
    let view = ArchiveView::open(data.path()).expect("view");
    assert!(view.recording(recording_id).expect("recording").active);
    let archive = archive(data.path(), driver.dir());
    let recovered = archive
        .recording(recording_id)
        .expect("recording")
        .descriptor;
    assert_eq!(recovered.stop_position, end);
    assert_eq!(recovered.start_position, descriptor.start_position);
    let replayed = replay_all(&archive, &client, recording_id);
    assert_eq!(
        replayed
            .iter()
            .map(|(sequence, _)| *sequence)
            .collect::<Vec<_>>(),
        (0..1300).collect::<Vec<_>>()
    );
    assert_eq!(messages_on_disk(data.path(), recording_id), replayed);
}
