//! The archive against a real embedded media driver: record, stop, replay, verify.

use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};
use tern_archive::{
    Archive, ArchiveConfig, ArchiveError, ArchiveView, FieldWidth, KeyFilter, KeyKind,
    ReplayRequest, ReplayState, SourceLocation, StoreError,
};
use tern_transport::{BackoffIdle, Client, FragmentAssembler, Idle, Publication};

use tern_testkit::{archive, driver, offer, offer_with, seed, wait_recorded, wait_until, TERM};

/// Poll `subscription`, adding each message's (image session id, sequence) to `seen`.
fn poll_sequences(
    subscription: &tern_transport::Subscription,
    seen: &mut Vec<(i32, u32)>,
) -> usize {
    subscription
        .poll(
            |fragment, header| {
                seen.push((
                    header.session_id,
                    u32::from_le_bytes(fragment[4..8].try_into().expect("4 bytes")),
                ))
            },
            16,
        )
        .expect("poll")
}

/// A message that says who sent it and its sequence, then filler derived from both.
fn message(publisher: u32, sequence: u32, length: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(length.max(8));
    bytes.extend_from_slice(&publisher.to_le_bytes());
    bytes.extend_from_slice(&sequence.to_le_bytes());
    while bytes.len() < length {
        bytes.push((publisher as usize * 31 + sequence as usize * 7 + bytes.len()) as u8);
    }
    bytes
}

/// Replay `request` into a subscription on the same driver and return (message, position after).
fn replay_messages(
    archive: &Archive,
    client: &Client,
    mut request: ReplayRequest,
    expected: usize,
) -> Vec<(Vec<u8>, i64)> {
    request.channel = "aeron:ipc".into();
    request.stream_id = 9000 + (Client::nano_clock() % 1000) as i32;
    let subscription = client
        .add_subscription(&request.channel, request.stream_id)
        .expect("replay subscription");
    let replay_id = archive.start_replay(&request).expect("replay starts");
    let status = archive.replay_status(replay_id).expect("status");
    let mut assembler = FragmentAssembler::new();
    let mut received = Vec::new();
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < expected {
        assert!(
            Instant::now() < deadline,
            "replay gave {} of {expected} messages: {:?} {:?}",
            received.len(),
            status.state(),
            status.error()
        );
        let work = subscription
            .poll(
                |fragment, header| {
                    assert_eq!(
                        header.session_id, replay_id as i32,
                        "replay image session id"
                    );
                    assembler.on_fragment(fragment, header, &mut |message, header| {
                        received.push((message.to_vec(), header.position))
                    })
                },
                64,
            )
            .expect("poll");
        idle.idle(work);
    }
    wait_until("the replay to finish", Duration::from_secs(10), || {
        status.is_finished()
    });
    assert_eq!(status.state(), ReplayState::Done, "{:?}", status.error());
    received
}

#[test]
fn random_sizes_from_many_publishers_round_trip_with_positions_and_segment_rollover() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let driver = driver("roundtrip");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    archive
        .start_recording("aeron:ipc", 1001, SourceLocation::Remote)
        .expect("record");
    // Four concurrent publications on one IPC channel share one log: one image, one recording.
    let publications: Vec<Publication> = (0..4)
        .map(|_| client.add_publication("aeron:ipc", 1001).expect("pub"))
        .collect();
    let session_id = publications[0].session_id();
    wait_until("the recording to start", Duration::from_secs(10), || {
        archive.find_recording(1001, session_id).is_some()
    });
    let recording_id = archive
        .find_recording(1001, session_id)
        .expect("recording")
        .descriptor
        .recording_id;
    let max = publications[0].max_message_length();
    let mut sent = Vec::new();
    let mut sequences = [0u32; 4];
    for _ in 0..1500 {
        let publisher = rng.gen_range(0..4usize);
        let length = if rng.gen_bool(0.1) {
            rng.gen_range(1409..max)
        } else {
            rng.gen_range(8..1400)
        };
        let bytes = message(publisher as u32, sequences[publisher], length);
        sequences[publisher] += 1;
        offer(&publications[publisher], &bytes);
        sent.push(bytes);
    }
    let end = publications[0].position();
    let info = wait_recorded(&archive, recording_id, end);
    assert!(info.active);
    assert_eq!(info.descriptor.session_id, session_id);
    let stopped = archive.stop_recording(1 << 20).expect("stop");
    assert_eq!(stopped, vec![recording_id]);
    let info = archive.recording(recording_id).expect("recording");
    assert_eq!(info.descriptor.stop_position, end);
    assert!(!info.active);

    let replayed = replay_messages(
        &archive,
        &client,
        ReplayRequest {
            recording_id,
            position: None,
            length: None,
            follow: false,
            channel: String::new(),
            stream_id: 0,
            speed: None,
            time_source: Default::default(),
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        },
        sent.len(),
    );
    let messages: Vec<Vec<u8>> = replayed.iter().map(|(bytes, _)| bytes.clone()).collect();
    assert_eq!(messages, sent, "replayed messages differ from those sent");
    assert_eq!(
        replayed.last().map(|(_, position)| *position),
        Some(end),
        "replay ends at the recorded stop position"
    );

    // Offline: the same messages from the files, several segments, every frame valid.
    let view = ArchiveView::open(data.path()).expect("view");
    let segments = view.segment_files(recording_id);
    assert!(
        segments.len() > 3,
        "expected segment rollover, got {} segments",
        segments.len()
    );
    let mut offline = Vec::new();
    view.messages(recording_id, None, None, |bytes, header| {
        offline.push((bytes.to_vec(), header.position));
        true
    })
    .expect("read offline");
    assert_eq!(offline, replayed);
    let report = view.verify(recording_id, |_| {}).expect("verify");
    assert!(report.problem.is_none(), "{:?}", report.problem);

    // Replay from the middle: a position where a message starts, and the positions match.
    let (_, middle) = replayed[700];
    let tail = replay_messages(
        &archive,
        &client,
        ReplayRequest {
            recording_id,
            position: Some(middle),
            length: Some(end - middle),
            follow: false,
            channel: String::new(),
            stream_id: 0,
            speed: None,
            time_source: Default::default(),
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        },
        sent.len() - 701,
    );
    assert_eq!(tail.as_slice(), &replayed[701..]);
}

#[test]
fn exclusive_and_udp_publishers_each_get_their_own_recording() {
    let driver = driver("sessions");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let port = 20000 + (std::process::id() % 20000) as u16;
    let udp = format!("aeron:udp?endpoint=localhost:{port}");
    archive
        .start_recording(&udp, 7, SourceLocation::Local)
        .expect("record udp");
    archive
        .start_recording("aeron:ipc", 8, SourceLocation::Remote)
        .expect("record ipc");
    let duplicate = archive
        .start_recording(&udp, 7, SourceLocation::Local)
        .expect_err("the same channel and stream twice");
    assert!(
        duplicate.to_string().contains("already recorded"),
        "{duplicate}"
    );
    let udp_a = client.add_exclusive_publication(&udp, 7).expect("udp a");
    let udp_b = client.add_exclusive_publication(&udp, 7).expect("udp b");
    let ipc = client
        .add_exclusive_publication("aeron:ipc", 8)
        .expect("ipc");
    wait_until("three recordings", Duration::from_secs(10), || {
        archive.recordings().len() == 3
    });
    let mut idle = BackoffIdle::new();
    for sequence in 0..200u32 {
        for (index, publication) in [&udp_a, &udp_b, &ipc].iter().enumerate() {
            let bytes = message(index as u32, sequence, 100 + sequence as usize);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match publication.offer(&bytes) {
                    Ok(_) => break,
                    Err(error) if error.is_retryable() && Instant::now() < deadline => idle.idle(0),
                    Err(error) => panic!("offer: {error}"),
                }
            }
        }
    }
    for (index, publication) in [&udp_a, &udp_b, &ipc].iter().enumerate() {
        let stream = if index == 2 { 8 } else { 7 };
        let info = archive
            .find_recording(stream, publication.session_id())
            .expect("its own recording");
        wait_recorded(
            &archive,
            info.descriptor.recording_id,
            publication.position(),
        );
        let view = ArchiveView::open(data.path()).expect("view");
        let mut count = 0u32;
        view.messages(info.descriptor.recording_id, None, None, |bytes, _| {
            assert_eq!(
                bytes,
                message(index as u32, count, 100 + count as usize).as_slice()
            );
            count += 1;
            true
        })
        .expect("read");
        assert_eq!(count, 200);
    }
    let udp_info = archive
        .find_recording(7, udp_a.session_id())
        .expect("udp recording");
    assert_eq!(udp_info.descriptor.stripped_channel, udp);
    drop(udp_a);
    wait_until(
        "the closed publication's recording to stop",
        Duration::from_secs(20),
        || {
            !archive
                .find_recording(7, udp_info.descriptor.session_id)
                .expect("recording")
                .active
        },
    );
}

#[test]
fn replay_follows_a_live_recording_while_it_grows() {
    let driver = driver("follow");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (publication, recording_id) = start_live_recording(&archive, &client, 1002);
    let subscription = client
        .add_subscription("aeron:ipc", 4242)
        .expect("replay subscription");
    let replay_id = archive
        .start_replay(&ReplayRequest {
            recording_id,
            position: None,
            length: None,
            follow: true,
            channel: "aeron:ipc".into(),
            stream_id: 4242,
            speed: None,
            time_source: Default::default(),
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        })
        .expect("follow replay");
    let status = archive.replay_status(replay_id).expect("status");
    let mut idle = BackoffIdle::new();
    let mut received = Vec::new();
    let total = 3000u32;
    let mut sent = 0u32;
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.len() < total as usize {
        assert!(
            Instant::now() < deadline,
            "got {} of {total}: {:?}",
            received.len(),
            status.error()
        );
        if sent < total {
            let bytes = message(0, sent, 64 + (sent as usize % 500));
            if publication.offer(&bytes).is_ok() {
                sent += 1;
            }
        }
        let work = subscription
            .poll(
                |fragment, _| received.push(u32::from_le_bytes(fragment[4..8].try_into().unwrap())),
                32,
            )
            .expect("poll");
        idle.idle(work);
    }
    assert_eq!(received, (0..total).collect::<Vec<_>>());
    assert!(!status.is_finished(), "a follow replay waits for more");
    archive.stop_recording(1 << 20).expect("stop recording");
    wait_until(
        "the follow replay to end with the recording",
        Duration::from_secs(10),
        || status.is_finished(),
    );
    assert_eq!(status.state(), ReplayState::Done);
    assert_eq!(status.position(), publication.position());
}

/// Record `aeron:ipc` `stream` from an exclusive publication; returns it once its recording
/// has started, with the recording's id.
fn start_live_recording(
    archive: &Archive,
    client: &Client,
    stream: i32,
) -> (tern_transport::ExclusivePublication, i64) {
    archive
        .start_recording("aeron:ipc", stream, SourceLocation::Remote)
        .expect("record");
    let publication = client
        .add_exclusive_publication("aeron:ipc", stream)
        .expect("pub");
    let session_id = publication.session_id();
    wait_until("the recording to start", Duration::from_secs(10), || {
        archive.find_recording(stream, session_id).is_some()
    });
    let recording_id = archive
        .find_recording(stream, session_id)
        .expect("recording")
        .descriptor
        .recording_id;
    (publication, recording_id)
}

/// Record `count` messages (of `length(sequence)` bytes) published on `aeron:ipc` `stream`, wait
/// until all are recorded, stop the recording; returns its id and end position.
fn record_and_stop(
    archive: &Archive,
    client: &Client,
    stream: i32,
    count: u32,
    length: impl Fn(u32) -> usize,
) -> (i64, i64) {
    let subscription_id = archive
        .start_recording("aeron:ipc", stream, SourceLocation::Remote)
        .expect("record");
    let publication = client.add_publication("aeron:ipc", stream).expect("pub");
    let session_id = publication.session_id();
    wait_until("the recording to start", Duration::from_secs(10), || {
        archive.find_recording(stream, session_id).is_some()
    });
    for sequence in 0..count {
        offer(&publication, &message(0, sequence, length(sequence)));
    }
    let recording_id = archive
        .find_recording(stream, session_id)
        .expect("recording")
        .descriptor
        .recording_id;
    let end = publication.position();
    wait_recorded(archive, recording_id, end);
    archive.stop_recording(subscription_id).expect("stop");
    (recording_id, end)
}

#[test]
fn misaligned_out_of_range_and_unknown_replays_are_clear_errors() {
    let driver = driver("positions");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (recording_id, end) = record_and_stop(&archive, &client, 1003, 10, |_| 200);
    let request = |position: Option<i64>| ReplayRequest {
        recording_id,
        position,
        length: None,
        follow: false,
        channel: "aeron:ipc".into(),
        stream_id: 5,
        speed: None,
        time_source: Default::default(),
        limit_counter_id: None,
        key: None,
        keep_positions: false,
    };
    let error_of = |position: i64| {
        archive
            .start_replay(&request(Some(position)))
            .expect_err("refused")
            .to_string()
    };
    assert!(
        error_of(17).contains("not frame aligned"),
        "{}",
        error_of(17)
    );
    assert!(
        error_of(64).contains("not the start of a frame"),
        "{}",
        error_of(64)
    );
    assert!(
        error_of(end + 32).contains("past the recording's end"),
        "{}",
        error_of(end + 32)
    );
    assert!(
        error_of(-32).contains("before the recording's start"),
        "{}",
        error_of(-32)
    );
    let unknown = archive
        .start_replay(&ReplayRequest {
            recording_id: 99,
            ..request(None)
        })
        .expect_err("unknown");
    assert!(
        matches!(
            unknown,
            ArchiveError::Store(StoreError::UnknownRecording(99))
        ),
        "{unknown}"
    );
    assert!(matches!(
        archive.stop_recording(12345),
        Err(ArchiveError::UnknownSubscription(12345))
    ));
    // The archive still serves: a good replay from the second frame works.
    let second = 256; // 200 bytes + 32 header, aligned to 256.
    let replayed = replay_messages(&archive, &client, request(Some(second)), 9);
    assert_eq!(replayed.len(), 9);
    assert_eq!(replayed[0].0, message(0, 1, 200));
}

#[test]
fn a_flipped_byte_in_a_segment_is_found_by_verify_and_stops_a_replay_there() {
    let driver = driver("flip");
    let data = tempfile::tempdir().expect("temp dir");
    let client = Client::connect(driver.dir()).expect("client");
    let recording_id;
    {
        let archive = archive(data.path(), driver.dir());
        archive
            .start_recording("aeron:ipc", 1004, SourceLocation::Remote)
            .expect("record");
        let publication = client.add_publication("aeron:ipc", 1004).expect("pub");
        wait_until("the recording to start", Duration::from_secs(10), || {
            archive.recordings().len() == 1
        });
        for sequence in 0..400 {
            offer(&publication, &message(0, sequence, 500));
        }
        recording_id = archive.recordings()[0].descriptor.recording_id;
        wait_recorded(&archive, recording_id, publication.position());
        archive.shutdown();
    }
    // Damage a payload byte of frame 300, in the second segment or later.
    let mut starts = Vec::new();
    ArchiveView::open(data.path())
        .expect("view")
        .frames(recording_id, None, None, |frame| {
            if !frame.header.is_padding() {
                starts.push(frame.position);
            }
            true
        })
        .expect("frames");
    let frame_300 = starts[300];
    let damaged_at = frame_300 + 100;
    let segment_base = damaged_at / (2 * TERM as i64) * (2 * TERM as i64);
    let path = data
        .path()
        .join(format!("{recording_id}-{segment_base}.rec"));
    let mut bytes = std::fs::read(&path).expect("segment");
    bytes[(damaged_at - segment_base) as usize] ^= 0x01;
    std::fs::write(&path, bytes).expect("write back");

    let view = ArchiveView::open(data.path()).expect("view");
    let report = view.verify(recording_id, |_| {}).expect("verify runs");
    let problem = report.problem.expect("damage found");
    assert_eq!(problem.position, frame_300);
    assert_eq!(problem.path, path);
    assert_eq!(problem.file_offset as i64, frame_300 - segment_base);
    assert!(
        problem.to_string().contains("checksum mismatch"),
        "{problem}"
    );
    assert_eq!(report.frames, 300);

    let archive = archive(data.path(), driver.dir());
    let subscription = client.add_subscription("aeron:ipc", 77).expect("sub");
    let replay_id = archive
        .start_replay(&ReplayRequest {
            recording_id,
            position: None,
            length: None,
            follow: false,
            channel: "aeron:ipc".into(),
            stream_id: 77,
            speed: None,
            time_source: Default::default(),
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        })
        .expect("replay starts");
    let status = archive.replay_status(replay_id).expect("status");
    let mut count = 0;
    let mut idle = BackoffIdle::new();
    wait_until(
        "the replay to stop at the damage",
        Duration::from_secs(20),
        || {
            let work = subscription.poll(|_, _| count += 1, 64).expect("poll");
            idle.idle(work);
            status.is_finished()
        },
    );
    assert_eq!(status.state(), ReplayState::Failed);
    let error = status.error().expect("error message");
    assert!(
        error.contains("checksum mismatch")
            && error.contains(&format!("{recording_id}-{segment_base}.rec")),
        "{error}"
    );
    assert!(
        error.contains(&format!("recording {recording_id}"))
            && error.contains(&format!("at offset {}", frame_300 - segment_base)),
        "the error names the recording and the offset: {error}"
    );
    // Every good frame before the damage arrives, none after it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while count < 300 && Instant::now() < deadline {
        let work = subscription.poll(|_, _| count += 1, 64).expect("poll");
        idle.idle(work);
    }
    std::thread::sleep(Duration::from_millis(50));
    while subscription.poll(|_, _| count += 1, 64).expect("poll") > 0 {}
    assert_eq!(count, 300, "every good frame before the damage, none after");
}

#[test]
fn several_replays_of_one_recording_run_at_once() {
    let driver = driver("concurrent");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (recording_id, _) = record_and_stop(&archive, &client, 1005, 2000, |sequence| {
        100 + sequence as usize % 900
    });
    let mut idle = BackoffIdle::new();
    let streams = [6001, 6002, 6003];
    let subscriptions: Vec<_> = streams
        .iter()
        .map(|stream| client.add_subscription("aeron:ipc", *stream).expect("sub"))
        .collect();
    let replays: Vec<i64> = streams
        .iter()
        .map(|stream| {
            archive
                .start_replay(&ReplayRequest {
                    recording_id,
                    position: None,
                    length: None,
                    follow: false,
                    channel: "aeron:ipc".into(),
                    stream_id: *stream,
                    speed: None,
                    time_source: Default::default(),
                    limit_counter_id: None,
                    key: None,
                    keep_positions: false,
                })
                .expect("replay")
        })
        .collect();
    let mut counts = [0u32; 3];
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts.iter().any(|count| *count < 2000) {
        assert!(Instant::now() < deadline, "replays stalled at {counts:?}");
        let mut work = 0;
        for (index, subscription) in subscriptions.iter().enumerate() {
            work += subscription
                .poll(
                    |fragment, header| {
                        assert_eq!(header.session_id, replays[index] as i32);
                        assert_eq!(
                            u32::from_le_bytes(fragment[4..8].try_into().unwrap()),
                            counts[index]
                        );
                        counts[index] += 1;
                    },
                    16,
                )
                .expect("poll");
        }
        idle.idle(work);
    }
    for replay_id in replays {
        let status = archive.replay_status(replay_id).expect("status");
        wait_until("each replay to finish", Duration::from_secs(10), || {
            status.is_finished()
        });
        assert_eq!(status.state(), ReplayState::Done);
    }
}

#[test]
fn a_second_archive_on_the_same_directory_is_refused() {
    let driver = driver("lock");
    let data = tempfile::tempdir().expect("temp dir");
    let _first = archive(data.path(), driver.dir());
    let error = Archive::launch(ArchiveConfig::new(data.path(), driver.dir()))
        .err()
        .expect("refused");
    assert!(
        matches!(error, ArchiveError::Store(StoreError::Locked { .. })),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{error}"
    );
}

#[test]
fn a_recording_that_cannot_start_does_not_hold_back_its_publisher() {
    let driver = driver("blocked");
    let data = tempfile::tempdir().expect("temp dir");
    // A directory where recording 0's time index would go: the recording cannot start. (A stale
    // segment file there would keep the archive from starting at all: the catalog does not
    // describe it.)
    std::fs::create_dir(data.path().join("0.tix")).expect("in the way");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    archive
        .start_recording("aeron:ipc", 1006, SourceLocation::Remote)
        .expect("record");
    let publication = client.add_publication("aeron:ipc", 1006).expect("pub");
    wait_until("the failed recording", Duration::from_secs(10), || {
        archive.recordings().iter().any(|info| !info.active)
    });
    let info = archive.recordings().remove(0);
    assert_eq!(
        info.descriptor.stop_position, info.descriptor.start_position,
        "stopped at its start"
    );
    let failures = archive.recording_failures();
    assert!(
        failures.len() == 1 && failures[0].recording_id == 0 && failures[0].error.contains("0.tix"),
        "the failure is reported: {failures:?}"
    );
    // Many terms' worth: a subscriber that no longer moves would stop this at half a term.
    for sequence in 0..400 {
        offer(&publication, &message(0, sequence, 1000));
    }
}

#[test]
fn a_replay_ends_when_its_subscriber_goes_away() {
    let driver = driver("gone");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (recording_id, _) = record_and_stop(&archive, &client, 1007, 3000, |_| 1000);
    let subscription = client.add_subscription("aeron:ipc", 7007).expect("sub");
    let replay_id = archive
        .start_replay(&ReplayRequest {
            recording_id,
            position: None,
            length: None,
            follow: false,
            channel: "aeron:ipc".into(),
            stream_id: 7007,
            speed: None,
            time_source: Default::default(),
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        })
        .expect("replay");
    let status = archive.replay_status(replay_id).expect("status");
    let mut received = 0;
    wait_until("a few messages", Duration::from_secs(10), || {
        received += subscription.poll(|_, _| {}, 10).expect("poll");
        received >= 10
    });
    drop(subscription);
    wait_until("the replay to end", Duration::from_secs(20), || {
        status.is_finished()
    });
    assert_eq!(status.state(), ReplayState::Failed);
    let error = status.error().expect("why");
    assert!(error.contains("subscriber went away"), "{error}");
}

#[test]
fn a_replay_length_that_ends_inside_a_frame_stops_before_it() {
    let driver = driver("cut");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    // Frames of 200 + 32 bytes, aligned to 256.
    let (recording_id, _) = record_and_stop(&archive, &client, 1008, 20, |_| 200);
    let request = ReplayRequest {
        recording_id,
        position: None,
        length: Some(5 * 256 + 100),
        follow: false,
        channel: String::new(),
        stream_id: 0,
        speed: None,
        time_source: Default::default(),
        limit_counter_id: None,
        key: None,
        keep_positions: false,
    };
    let replayed = replay_messages(&archive, &client, request, 5);
    assert_eq!(replayed.len(), 5);
    assert_eq!(replayed[4].1, 5 * 256);
    let view = ArchiveView::open(data.path()).expect("view");
    let mut printed = 0;
    let resume = view
        .messages(recording_id, Some(0), Some(5 * 256 + 100), |_, _| {
            printed += 1;
            true
        })
        .expect("a cut frame is not damage");
    assert_eq!((printed, resume), (5, 5 * 256));
}

#[test]
fn a_term_end_padding_longer_than_the_longest_message_is_replayed() {
    let driver = driver("padding");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let subscription_id = archive
        .start_recording("aeron:ipc", 1009, SourceLocation::Remote)
        .expect("record");
    let publication = client
        .add_exclusive_publication("aeron:ipc", 1009)
        .expect("pub");
    wait_until("the recording to start", Duration::from_secs(10), || {
        archive.recordings().len() == 1
    });
    let payload = publication.max_payload_length();
    let longest = publication.max_message_length();
    let frame = payload + 32;
    // The longest message takes this much of a term, fragmented.
    let needed = longest / payload * frame + (longest % payload + 32).div_ceil(32) * 32;
    // Leave a little less than that at the end of the first term: Aeron pads the rest, longer
    // than any message.
    let target = TERM - (needed - 32);
    let mut sizes = vec![payload; target / frame];
    let rest = target % frame;
    assert!(rest == 0 || rest >= 64, "layout {rest}");
    if rest > 0 {
        sizes.push(rest - 32);
    }
    sizes.push(longest);
    sizes.extend([100, 200, 300]);
    let mut sent = Vec::new();
    for (sequence, size) in sizes.iter().enumerate() {
        let bytes = message(0, sequence as u32, *size);
        offer_with(|| publication.offer(&bytes));
        sent.push(bytes);
    }
    let recording_id = archive.recordings()[0].descriptor.recording_id;
    wait_recorded(&archive, recording_id, publication.position());
    archive.stop_recording(subscription_id).expect("stop");
    let mut padding = 0;
    ArchiveView::open(data.path())
        .expect("view")
        .frames(recording_id, None, None, |frame| {
            if frame.header.is_padding() {
                padding = padding.max(frame.aligned_length);
            }
            true
        })
        .expect("frames");
    assert!(padding > longest + 32, "a padding of {padding} bytes");
    let request = ReplayRequest {
        recording_id,
        position: None,
        length: None,
        follow: false,
        channel: String::new(),
        stream_id: 0,
        speed: None,
        time_source: Default::default(),
        limit_counter_id: None,
        key: None,
        keep_positions: false,
    };
    let replayed = replay_messages(&archive, &client, request, sent.len());
    let messages: Vec<Vec<u8>> = replayed.into_iter().map(|(bytes, _)| bytes).collect();
    assert_eq!(messages, sent);
}

#[test]
fn replay_from_a_time_starts_at_the_first_message_captured_at_or_after_it() {
    let driver = driver("time");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    archive
        .start_recording("aeron:ipc", 1010, SourceLocation::Remote)
        .expect("record");
    let publication = client.add_publication("aeron:ipc", 1010).expect("pub");
    wait_until("the recording to start", Duration::from_secs(10), || {
        archive.recordings().len() == 1
    });
    let recording_id = archive.recordings()[0].descriptor.recording_id;
    // Messages 20 ms apart: each is captured in a duty cycle of its own.
    let mut starts = Vec::new();
    for sequence in 0..8 {
        starts.push(publication.position());
        offer(&publication, &message(0, sequence, 100));
        wait_recorded(&archive, recording_id, publication.position());
        std::thread::sleep(Duration::from_millis(20));
    }
    let end = publication.position();
    let view = ArchiveView::open(data.path()).expect("view");
    let index = view
        .time_index(&view.recording(recording_id).expect("recording"))
        .expect("index");
    let times: Vec<i64> = starts
        .iter()
        .map(|start| {
            index
                .iter()
                .find(|entry| entry.position == *start)
                .expect("an entry per message")
                .timestamp_ns
        })
        .collect();
    let at = |time: i64| archive.position_at_time(recording_id, time).expect("seek");
    assert_eq!(at(times[0] - 1_000_000_000), starts[0], "before the first");
    assert_eq!(at(times[3]), starts[3], "at a message");
    assert_eq!(at(times[3] + 1), starts[4], "between two messages");
    assert_eq!(at(times[4] - 1), starts[4], "just before a message");
    assert_eq!(at(times[7] + 1), end, "after the last: an empty replay");
    assert_eq!(
        view.position_at_time(recording_id, times[5])
            .expect("offline"),
        starts[5]
    );
    let replayed = replay_messages(
        &archive,
        &client,
        ReplayRequest {
            recording_id,
            position: Some(at(times[5])),
            length: None,
            follow: false,
            channel: String::new(),
            stream_id: 0,
            speed: None,
            time_source: Default::default(),
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        },
        3,
    );
    assert_eq!(replayed[0].0, message(0, 5, 100));

    // A follow replay from a time after the last message waits for new ones.
    let subscription = client.add_subscription("aeron:ipc", 4343).expect("sub");
    archive
        .start_replay(&ReplayRequest {
            recording_id,
            position: Some(at(i64::MAX)),
            length: None,
            follow: true,
            channel: "aeron:ipc".into(),
            stream_id: 4343,
            speed: None,
            time_source: Default::default(),
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        })
        .expect("follow from the end");
    offer(&publication, &message(0, 8, 100));
    let mut received = Vec::new();
    wait_until("the new message", Duration::from_secs(10), || {
        subscription
            .poll(|fragment, _| received.push(fragment.to_vec()), 10)
            .expect("poll");
        !received.is_empty()
    });
    assert_eq!(received, vec![message(0, 8, 100)]);
}

#[test]
fn a_paced_replay_keeps_the_original_timing_divided_by_the_speed() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let driver = driver("pace");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (publication, recording_id) = start_live_recording(&archive, &client, 1011);
    let mut starts = Vec::new();
    let count = 60u32;
    for sequence in 0..count {
        // Irregular gaps, some messages back to back.
        let gap = if rng.gen_bool(0.3) {
            0
        } else {
            rng.gen_range(1..15)
        };
        std::thread::sleep(Duration::from_millis(gap));
        starts.push(publication.position());
        offer_with(|| publication.offer(&message(0, sequence, 64)));
    }
    wait_recorded(&archive, recording_id, publication.position());
    let view = ArchiveView::open(data.path()).expect("view");
    let index = view
        .time_index(&view.recording(recording_id).expect("recording"))
        .expect("index");
    // The capture time of each message: the last index entry at or before its position.
    let captured: Vec<i64> = starts
        .iter()
        .map(|start| {
            index
                .iter()
                .rev()
                .find(|entry| entry.position <= *start)
                .expect("indexed")
                .timestamp_ns
        })
        .collect();
    let too_fast = archive
        .start_replay(&ReplayRequest {
            recording_id,
            position: None,
            length: None,
            follow: false,
            channel: "aeron:ipc".into(),
            stream_id: 5,
            speed: Some(5000.0),
            time_source: Default::default(),
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        })
        .expect_err("out of range");
    assert!(
        too_fast.to_string().contains("outside 0.01 .. 1000"),
        "{too_fast}"
    );
    for (speed, stream) in [(1.0, 8101), (4.0, 8104)] {
        let subscription = client.add_subscription("aeron:ipc", stream).expect("sub");
        archive
            .start_replay(&ReplayRequest {
                recording_id,
                position: None,
                length: None,
                follow: false,
                channel: "aeron:ipc".into(),
                stream_id: stream,
                speed: Some(speed),
                time_source: Default::default(),
                limit_counter_id: None,
                key: None,
                keep_positions: false,
            })
            .expect("paced replay");
        let mut arrivals: Vec<(u32, Instant)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while arrivals.len() < count as usize {
            assert!(Instant::now() < deadline, "got {}", arrivals.len());
            subscription
                .poll(
                    |fragment, _| {
                        let sequence = u32::from_le_bytes(fragment[4..8].try_into().unwrap());
                        arrivals.push((sequence, Instant::now()));
                    },
                    10,
                )
                .expect("poll");
            std::thread::yield_now();
        }
        let order: Vec<u32> = arrivals.iter().map(|(sequence, _)| *sequence).collect();
        assert_eq!(order, (0..count).collect::<Vec<_>>());
        let first = arrivals[0].1;
        let mut errors: Vec<f64> = arrivals
            .iter()
            .map(|(sequence, at)| {
                let scheduled = (captured[*sequence as usize] - captured[0]) as f64 / speed / 1e6;
                let actual = at.duration_since(first).as_secs_f64() * 1e3;
                (actual - scheduled).abs()
            })
            .collect();
        errors.sort_by(f64::total_cmp);
        let worst = errors[errors.len() - 1];
        println!(
            "speed {speed}: median error {:.3} ms, worst {worst:.3} ms",
            errors[errors.len() / 2]
        );
        // Generous for a loaded 2-core test machine; tern-bench measures the fidelity itself.
        assert!(
            worst < 20.0,
            "speed {speed}: a message {worst:.3} ms off its schedule"
        );
        let total = arrivals[arrivals.len() - 1]
            .1
            .duration_since(first)
            .as_secs_f64()
            * 1e3;
        let expected = (captured[count as usize - 1] - captured[0]) as f64 / speed / 1e6;
        assert!(
            (total - expected).abs() < 20.0,
            "took {total:.1} ms, scheduled {expected:.1} ms"
        );
    }
}

#[test]
fn a_paused_replay_sends_nothing_until_resumed_and_loses_or_repeats_nothing() {
    let driver = driver("pause");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (publication, recording_id) = start_live_recording(&archive, &client, 1012);
    let count = 60u32;
    for sequence in 0..count {
        std::thread::sleep(Duration::from_millis(4));
        offer_with(|| publication.offer(&message(0, sequence, 64)));
    }
    wait_recorded(&archive, recording_id, publication.position());
    let subscription = client.add_subscription("aeron:ipc", 8200).expect("sub");
    let replay_id = archive
        .start_replay(&ReplayRequest {
            recording_id,
            position: None,
            length: None,
            follow: false,
            channel: "aeron:ipc".into(),
            stream_id: 8200,
            speed: Some(1.0),
            time_source: Default::default(),
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        })
        .expect("paced replay");
    let status = archive.replay_status(replay_id).expect("status");
    let mut received: Vec<u32> = Vec::new();
    let poll = |received: &mut Vec<u32>| {
        subscription
            .poll(
                |fragment, _| received.push(u32::from_le_bytes(fragment[4..8].try_into().unwrap())),
                16,
            )
            .expect("poll")
    };
    wait_until("a few messages", Duration::from_secs(10), || {
        poll(&mut received);
        received.len() >= 10
    });
    archive.pause_replay(replay_id).expect("pause");
    wait_until("the pause", Duration::from_secs(5), || {
        status.state() == ReplayState::Paused
    });
    // Whatever was already on its way arrives; then nothing for the length of the pause.
    std::thread::sleep(Duration::from_millis(20));
    poll(&mut received);
    let at_pause = received.len();
    let paused = Instant::now();
    while paused.elapsed() < Duration::from_millis(300) {
        poll(&mut received);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(received.len(), at_pause, "nothing is sent while paused");
    assert!(!status.is_finished());
    archive.resume_replay(replay_id).expect("resume");
    wait_until("the rest", Duration::from_secs(10), || {
        poll(&mut received);
        received.len() >= count as usize
    });
    assert_eq!(
        received,
        (0..count).collect::<Vec<_>>(),
        "in order, once each"
    );
    wait_until("the end", Duration::from_secs(5), || status.is_finished());
    assert_eq!(status.state(), ReplayState::Done);
    let ended = archive
        .pause_replay(replay_id)
        .expect_err("an ended replay");
    assert!(ended.to_string().contains("has ended"), "{ended}");
    assert!(matches!(
        archive.resume_replay(77),
        Err(ArchiveError::UnknownReplay(77))
    ));
}

#[test]
fn a_seek_starts_a_new_image_at_the_target_and_nothing_is_lost_or_repeated() {
    let driver = driver("seek");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (publication, recording_id) = start_live_recording(&archive, &client, 1013);
    let count = 60u32;
    let mut starts = Vec::new();
    for sequence in 0..count {
        std::thread::sleep(Duration::from_millis(3));
        starts.push(publication.position());
        offer_with(|| publication.offer(&message(0, sequence, 64)));
    }
    wait_recorded(&archive, recording_id, publication.position());
    let subscription = client.add_subscription("aeron:ipc", 8300).expect("sub");
    let replay_id = archive
        .start_replay(&ReplayRequest {
            recording_id,
            position: None,
            length: None,
            follow: false,
            channel: "aeron:ipc".into(),
            stream_id: 8300,
            speed: Some(1.0),
            time_source: Default::default(),
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        })
        .expect("paced replay");
    let status = archive.replay_status(replay_id).expect("status");
    let first_session = status.session_id();
    assert_eq!(first_session, replay_id as i32);
    let mut received: Vec<(i32, u32)> = Vec::new();
    let poll = |received: &mut Vec<(i32, u32)>| poll_sequences(&subscription, received);
    wait_until("30 messages", Duration::from_secs(10), || {
        poll(&mut received);
        received.len() >= 30
    });
    let misaligned = archive
        .seek_replay(replay_id, starts[10] + 32)
        .expect_err("not a frame start");
    assert!(
        misaligned.to_string().contains("not the start of a frame"),
        "{misaligned}"
    );
    let new_session = archive
        .seek_replay(replay_id, starts[10])
        .expect("seek back");
    assert_ne!(new_session, first_session);
    assert_eq!(status.session_id(), new_session);
    wait_until("the rest from message 10", Duration::from_secs(10), || {
        poll(&mut received);
        received
            .iter()
            .filter(|(session, _)| *session == new_session)
            .count()
            >= 50
    });
    wait_until("the end", Duration::from_secs(5), || status.is_finished());
    poll(&mut received);
    let before: Vec<u32> = received
        .iter()
        .filter(|(s, _)| *s == first_session)
        .map(|(_, m)| *m)
        .collect();
    let after: Vec<u32> = received
        .iter()
        .filter(|(s, _)| *s == new_session)
        .map(|(_, m)| *m)
        .collect();
    assert_eq!(
        before,
        (0..before.len() as u32).collect::<Vec<_>>(),
        "the first image: in order, no gap"
    );
    assert!(before.len() >= 30);
    assert_eq!(
        after,
        (10..count).collect::<Vec<_>>(),
        "the new image: from the target, once each"
    );
    assert_eq!(status.state(), ReplayState::Done);
}

#[test]
fn pacing_and_time_seek_can_use_a_timestamp_inside_each_message() {
    let driver = driver("msgtime");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (publication, recording_id) = start_live_recording(&archive, &client, 1014);
    let base_us = 1_700_000_000_000_000i64;
    let mut starts = Vec::new();
    // Back to back, but each message says it was made 10 ms after the one before.
    for sequence in 0..30u32 {
        let mut bytes = message(0, sequence, 64);
        bytes[8..16].copy_from_slice(&(base_us + i64::from(sequence) * 10_000).to_le_bytes());
        starts.push(publication.position());
        offer_with(|| publication.offer(&bytes));
    }
    wait_recorded(&archive, recording_id, publication.position());
    let source: tern_archive::TimeSource = "field:8:us".parse().expect("source");
    let at = |time_us: i64| {
        archive
            .position_at_time_from(recording_id, time_us * 1_000, source)
            .expect("seek")
    };
    assert_eq!(at(base_us - 1), starts[0]);
    assert_eq!(
        at(base_us + 105_000),
        starts[11],
        "between two message times"
    );
    assert_eq!(at(base_us + 110_000), starts[11], "at a message time");
    assert_eq!(
        at(base_us + 10_000_000),
        publication.position(),
        "after the last"
    );
    let view = ArchiveView::open(data.path()).expect("view");
    assert_eq!(
        view.position_at_time_from(recording_id, (base_us + 200_000) * 1_000, source)
            .expect("offline"),
        starts[20]
    );

    let subscription = client.add_subscription("aeron:ipc", 8400).expect("sub");
    archive
        .start_replay(&ReplayRequest {
            recording_id,
            position: None,
            length: None,
            follow: false,
            channel: "aeron:ipc".into(),
            stream_id: 8400,
            speed: Some(1.0),
            time_source: source,
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        })
        .expect("paced by message time");
    let mut arrivals: Vec<(u32, Instant)> = Vec::new();
    wait_until("all 30", Duration::from_secs(10), || {
        subscription
            .poll(
                |fragment, _| {
                    arrivals.push((
                        u32::from_le_bytes(fragment[4..8].try_into().unwrap()),
                        Instant::now(),
                    ))
                },
                16,
            )
            .expect("poll");
        std::thread::yield_now();
        arrivals.len() >= 30
    });
    let order: Vec<u32> = arrivals.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(order, (0..30).collect::<Vec<_>>());
    let total = arrivals[29].1.duration_since(arrivals[0].1);
    assert!(
        total >= Duration::from_millis(270) && total <= Duration::from_millis(340),
        "290 ms of message time at 1x took {total:?}"
    );

    // A slow replay moved by time, read from the messages: the new image starts at message 25.
    let later = client.add_subscription("aeron:ipc", 8401).expect("sub");
    let replay_id = archive
        .start_replay(&ReplayRequest {
            recording_id,
            position: None,
            length: None,
            follow: false,
            channel: "aeron:ipc".into(),
            stream_id: 8401,
            speed: Some(0.1),
            time_source: source,
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        })
        .expect("slow replay");
    let mut seen: Vec<(i32, u32)> = Vec::new();
    let poll_later = |seen: &mut Vec<(i32, u32)>| poll_sequences(&later, seen);
    wait_until("the first message", Duration::from_secs(10), || {
        poll_later(&mut seen);
        !seen.is_empty()
    });
    let session = archive
        .seek_replay_to_time(replay_id, (base_us + 245_000) * 1_000, source)
        .expect("seek by message time");
    wait_until("messages 25 to 29", Duration::from_secs(10), || {
        poll_later(&mut seen);
        seen.iter().filter(|(s, _)| *s == session).count() >= 5
    });
    let after: Vec<u32> = seen
        .iter()
        .filter(|(s, _)| *s == session)
        .map(|(_, m)| *m)
        .collect();
    assert_eq!(after, (25..30).collect::<Vec<_>>());
}

// ---- Replays filtered by key ------------------------------------------------------------------

/// A message of `publisher`: an Aeron Cluster egress `SessionMessageHeader` (template 1, or 2 when
/// `egress` is false: not an egress message) with `cluster_session`, then the publisher (i32 at
/// 32) and its sequence (u32 at 36), then filler to `length` (at least 40).
fn keyed_message(
    publisher: u32,
    sequence: u32,
    cluster_session: i64,
    egress: bool,
    length: usize,
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(length.max(40));
    bytes.extend_from_slice(&24u16.to_le_bytes());
    bytes.extend_from_slice(&(if egress { 1u16 } else { 2u16 }).to_le_bytes());
    bytes.extend_from_slice(&111u16.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&3i64.to_le_bytes()); // leadershipTermId
    bytes.extend_from_slice(&cluster_session.to_le_bytes());
    bytes.extend_from_slice(&1_700_000_000_000i64.to_le_bytes()); // timestamp
    bytes.extend_from_slice(&(publisher as i32).to_le_bytes());
    bytes.extend_from_slice(&sequence.to_le_bytes());
    while bytes.len() < length {
        bytes.push((publisher as usize * 31 + sequence as usize * 7 + bytes.len()) as u8);
    }
    bytes
}

/// One message sent, with the keys a test expects it to have.
#[derive(Debug, Clone)]
struct Keyed {
    bytes: Vec<u8>,
    /// The frame header's reserved value of its first fragment.
    reserved: i64,
    /// Its clusterSessionId if it is an egress message.
    cluster: Option<i64>,
    /// The i64 at 16 (the clusterSessionId field, whatever the template).
    field16: i64,
    /// The i32 at 32 (the publisher).
    field32: i64,
}

impl Keyed {
    /// Whether the message has `filter`'s key, worked out from what was sent.
    fn has(&self, filter: &KeyFilter) -> bool {
        let key = match filter.kind {
            KeyKind::Reserved => Some(self.reserved),
            KeyKind::ClusterEgress => self.cluster,
            KeyKind::Field {
                offset: 16,
                width: FieldWidth::I64,
            } => Some(self.field16),
            KeyKind::Field {
                offset: 32,
                width: FieldWidth::I32,
            } => Some(self.field32),
            other => panic!("no expectation for {other}"),
        };
        key == Some(filter.value)
    }
}

/// Replay `request` on a new IPC stream and collect (message, position after it) until the replay
/// has finished and the subscriber has consumed up to its last position (padding included).
fn replay_keyed(
    archive: &Archive,
    client: &Client,
    mut request: ReplayRequest,
) -> (
    Vec<(Vec<u8>, i64)>,
    std::sync::Arc<tern_archive::ReplayStatus>,
) {
    request.channel = "aeron:ipc".into();
    request.stream_id = 20_000 + (Client::nano_clock() % 10_000) as i32;
    let subscription = client
        .add_subscription(&request.channel, request.stream_id)
        .expect("replay subscription");
    let replay_id = archive.start_replay(&request).expect("replay starts");
    let status = archive.replay_status(replay_id).expect("status");
    let mut assembler = FragmentAssembler::new();
    let mut received = Vec::new();
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "replay {:?} stuck after {} messages: {:?} {:?}",
            request.key,
            received.len(),
            status.state(),
            status.error()
        );
        let work = subscription
            .poll(
                |fragment, header| {
                    assert_eq!(header.session_id, replay_id as i32);
                    assembler.on_fragment(fragment, header, &mut |message, header| {
                        received.push((message.to_vec(), header.position))
                    })
                },
                64,
            )
            .expect("poll");
        if work == 0 && status.is_finished() {
            let consumed = subscription
                .image_by_session_id(replay_id as i32)
                .map_or(i64::MIN, |image| image.position());
            if consumed >= status.position() || status.state() != ReplayState::Done {
                break;
            }
        }
        idle.idle(work);
    }
    assert_eq!(status.state(), ReplayState::Done, "{:?}", status.error());
    (received, status)
}

fn keyed_request(recording_id: i64, key: &str) -> ReplayRequest {
    ReplayRequest {
        recording_id,
        position: None,
        length: None,
        follow: false,
        channel: String::new(),
        stream_id: 0,
        speed: None,
        time_source: Default::default(),
        key: Some(key.parse().expect("key")),
        keep_positions: true,
        limit_counter_id: None,
    }
}

fn index_file(dir: &Path, recording_id: i64, base: i64, kind: &KeyKind) -> std::path::PathBuf {
    dir.join(tern_archive::key_index::key_index_file_name(
        recording_id,
        base,
        kind,
    ))
}

#[test]
fn key_filters_of_every_kind_replay_exactly_one_keys_messages_of_interleaved_publishers() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed());
    let driver = driver("keys");
    let data = tempfile::tempdir().expect("temp dir");
    let indexed: Vec<KeyKind> = ["reserved", "cluster-egress", "field:16:i64"]
        .iter()
        .map(|kind| kind.parse().expect("kind"))
        .collect();
    let mut config = ArchiveConfig::new(data.path(), driver.dir());
    config.segment_length = 2 * TERM as i32;
    config.key_index = indexed.clone();
    let archive = Archive::launch(config).expect("archive starts");
    let client = Client::connect(driver.dir()).expect("client");
    let subscription_id = archive
        .start_recording("aeron:ipc", 1020, SourceLocation::Remote)
        .expect("record");
    // Four concurrent publications on one IPC channel share one log: one image, one recording.
    let publications: Vec<Publication> = (0..4)
        .map(|_| client.add_publication("aeron:ipc", 1020).expect("pub"))
        .collect();
    let session_id = publications[0].session_id();
    wait_until("the recording to start", Duration::from_secs(10), || {
        archive.find_recording(1020, session_id).is_some()
    });
    let recording_id = archive
        .find_recording(1020, session_id)
        .expect("recording")
        .descriptor
        .recording_id;
    // A follow replay of one cluster session, started before anything is published.
    let live_key: KeyFilter = "cluster-egress:1002".parse().expect("key");
    let live = client.add_subscription("aeron:ipc", 4300).expect("sub");
    let live_replay = archive
        .start_replay(&ReplayRequest {
            follow: true,
            channel: "aeron:ipc".into(),
            stream_id: 4300,
            ..keyed_request(recording_id, "cluster-egress:1002")
        })
        .expect("follow replay");
    let live_status = archive.replay_status(live_replay).expect("status");
    let mut live_assembler = FragmentAssembler::new();
    let mut live_received: Vec<Vec<u8>> = Vec::new();
    let mut poll_live = |received: &mut Vec<Vec<u8>>| {
        live.poll(
            |fragment, header| {
                live_assembler.on_fragment(fragment, header, &mut |message, _| {
                    received.push(message.to_vec())
                })
            },
            64,
        )
        .expect("poll")
    };

    let max_payload = publications[0].max_payload_length();
    let mut sent: Vec<Keyed> = Vec::new();
    let mut sequences = [0u32; 4];
    for _ in 0..1500 {
        let publisher = rng.gen_range(0..4u32);
        let sequence = sequences[publisher as usize];
        sequences[publisher as usize] += 1;
        let cluster_session = 1000 + rng.gen_range(0..5i64);
        let egress = rng.gen_range(0..7) != 0;
        let fragmented = rng.gen_bool(0.1);
        let length = if fragmented {
            rng.gen_range(max_payload + 1..4 * max_payload)
        } else {
            rng.gen_range(40..300)
        };
        let bytes = keyed_message(publisher, sequence, cluster_session, egress, length);
        let publication = &publications[publisher as usize];
        // Small messages carry their publisher in the reserved value; a fragmented one cannot be
        // claimed, and has the default, 0.
        let reserved = if fragmented {
            offer(publication, &bytes);
            0
        } else {
            let reserved = i64::from(publisher) + 1;
            offer_with(|| {
                publication.try_claim(bytes.len(), reserved, |buffer| {
                    buffer.copy_from_slice(&bytes)
                })
            });
            reserved
        };
        sent.push(Keyed {
            reserved,
            cluster: egress.then_some(cluster_session),
            field16: cluster_session,
            field32: i64::from(publisher),
            bytes,
        });
        poll_live(&mut live_received);
    }
    // A publisher of its own session on the same stream: a second recording.
    let exclusive = client
        .add_exclusive_publication("aeron:ipc", 1020)
        .expect("exclusive");
    wait_until("the second recording", Duration::from_secs(10), || {
        archive
            .find_recording(1020, exclusive.session_id())
            .is_some()
    });
    for sequence in 0..3 {
        offer_with(|| exclusive.offer(&keyed_message(9, sequence, 1002, true, 64)));
    }
    let second = archive
        .find_recording(1020, exclusive.session_id())
        .expect("second")
        .descriptor
        .recording_id;
    let end = publications[0].position();
    wait_recorded(&archive, recording_id, end);
    wait_recorded(&archive, second, exclusive.position());
    let live_expected: Vec<Vec<u8>> = sent
        .iter()
        .filter(|message| message.has(&live_key))
        .map(|message| message.bytes.clone())
        .collect();
    wait_until("the live filtered replay", Duration::from_secs(20), || {
        poll_live(&mut live_received);
        live_received.len() >= live_expected.len()
    });
    assert!(!live_status.is_finished(), "a follow replay waits for more");
    archive.stop_recording(subscription_id).expect("stop");
    wait_until("the follow replay to end", Duration::from_secs(10), || {
        poll_live(&mut live_received);
        live_status.is_finished()
    });
    assert_eq!(
        live_status.state(),
        ReplayState::Done,
        "{:?}",
        live_status.error()
    );
    assert_eq!(
        live_received, live_expected,
        "live: exactly the key's messages, in order"
    );
    assert!(
        live_status.search_stats().scanned_bytes > 0,
        "the segment being written is scanned"
    );

    // Every finished segment gets an index file per kind once the recording stopped.
    let view = ArchiveView::open(data.path()).expect("view");
    let segments: Vec<i64> = view
        .segment_files(recording_id)
        .iter()
        .map(|segment| segment.base)
        .filter(|base| *base < end)
        .collect();
    assert!(segments.len() >= 4, "several segments: {segments:?}");
    wait_until("the index files", Duration::from_secs(10), || {
        segments.iter().all(|base| {
            indexed
                .iter()
                .all(|kind| index_file(data.path(), recording_id, *base, kind).exists())
        })
    });
    // Ground truth: every message as recorded (with its position), filtered by what was sent.
    let mut recorded: Vec<(Vec<u8>, i64)> = Vec::new();
    view.messages(recording_id, None, None, |message, header| {
        recorded.push((message.to_vec(), header.position));
        true
    })
    .expect("read all");
    assert_eq!(
        recorded.iter().map(|(bytes, _)| bytes).collect::<Vec<_>>(),
        sent.iter()
            .map(|message| &message.bytes)
            .collect::<Vec<_>>()
    );
    // The messages `range` of the recording that have the key.
    let expected = |filter: &KeyFilter, range: std::ops::Range<usize>| -> Vec<(Vec<u8>, i64)> {
        sent[range.clone()]
            .iter()
            .zip(&recorded[range])
            .filter(|(message, _)| message.has(filter))
            .map(|(_, recorded)| recorded.clone())
            .collect()
    };
    let every = 0..sent.len();
    let start = archive
        .recording(recording_id)
        .expect("info")
        .descriptor
        .start_position;
    let filters = [
        "reserved:1",
        "reserved:2",
        "reserved:3",
        "reserved:4",
        "reserved:0",
        "reserved:77",
        "cluster-egress:1000",
        "cluster-egress:1003",
        "cluster-egress:5",
        "field:16:i64:1003",
        "field:32:i32:2",
    ];
    let mut nonempty = 0;
    for text in filters {
        let filter: KeyFilter = text.parse().expect("filter");
        let wanted = expected(&filter, every.clone());
        nonempty += usize::from(!wanted.is_empty());
        let (received, status) = replay_keyed(&archive, &client, keyed_request(recording_id, text));
        assert_eq!(received.len(), wanted.len(), "{text}: how many");
        assert!(
            received == wanted,
            "{text}: exactly the key's messages, in order, at their recorded positions"
        );
        assert_eq!(
            status.position(),
            end,
            "{text}: padded to the recording's end"
        );
        let stats = status.search_stats();
        if indexed.contains(&filter.kind) {
            assert_eq!(
                (stats.index_segments, stats.scanned_bytes),
                (segments.len() as u64, 0),
                "{text}: found through the index alone"
            );
        } else {
            assert_eq!(stats.index_segments, 0, "{text}");
            assert_eq!(stats.scanned_bytes, (end - start) as u64, "{text}: scanned");
        }
        let mut offline = Vec::new();
        let read = view
            .messages_with_key(recording_id, None, None, &filter, |message, header| {
                offline.push((message.to_vec(), header.position));
                true
            })
            .expect("offline filtered read");
        assert!(offline == wanted, "{text}: offline");
        assert_eq!(read.resume, end);
    }
    assert!(nonempty >= 8, "most filters select something");

    // From message 500 (where message 499 ends is a frame start) to the end of message 1000.
    let from = recorded[498].1;
    let to = recorded[1000].1;
    let filter: KeyFilter = "reserved:3".parse().expect("filter");
    let (received, status) = replay_keyed(
        &archive,
        &client,
        ReplayRequest {
            position: Some(from),
            length: Some(to - from),
            ..keyed_request(recording_id, "reserved:3")
        },
    );
    assert!(received == expected(&filter, 499..1001), "from and length");
    assert!(status.position() <= to);

    // A missing index file and a damaged one: those segments are scanned, nothing changes.
    let reserved = KeyKind::Reserved;
    let egress = KeyKind::ClusterEgress;
    std::fs::remove_file(index_file(
        data.path(),
        recording_id,
        segments[1],
        &reserved,
    ))
    .expect("remove");
    let damaged = index_file(data.path(), recording_id, segments[2], &egress);
    let mut bytes = std::fs::read(&damaged).expect("read");
    bytes[64 + 9] ^= 0x04; // a run's first position in the key table
    std::fs::write(&damaged, bytes).expect("damage");
    for text in ["reserved:2", "cluster-egress:1003"] {
        let filter: KeyFilter = text.parse().expect("filter");
        let (received, status) = replay_keyed(&archive, &client, keyed_request(recording_id, text));
        assert!(
            received == expected(&filter, every.clone()),
            "{text} without its index"
        );
        let stats = status.search_stats();
        assert_eq!(stats.index_segments, segments.len() as u64 - 1, "{text}");
        assert_eq!(stats.scanned_segments, 1, "{text}");
    }
    // verify finds both, rebuilds them, and the replays use the index again.
    let report = view.verify(recording_id, |_| {}).expect("verify");
    assert!(report.problem.is_none());
    let rebuilt: Vec<(i64, KeyKind)> = report
        .key_indexes
        .iter()
        .filter(|check| check.rebuilt)
        .map(|check| (check.segment_base, check.kind))
        .collect();
    assert_eq!(
        rebuilt,
        vec![(segments[1], reserved), (segments[2], egress)],
        "{:?}",
        report.key_indexes
    );
    assert_eq!(report.key_indexes.len(), segments.len() * indexed.len());
    assert!(report.key_indexes.iter().any(|c| c.found == "missing"));
    assert!(report
        .key_indexes
        .iter()
        .any(|c| c.found.contains("key table checksum")));
    let again = view.verify(recording_id, |_| {}).expect("verify again");
    assert!(again.key_indexes.iter().all(|check| check.is_ok()));
    let (_, status) = replay_keyed(&archive, &client, keyed_request(recording_id, "reserved:2"));
    assert_eq!(status.search_stats().scanned_bytes, 0);

    // A session key selects a whole recording, or names the recording of that session.
    let (received, _) = replay_keyed(
        &archive,
        &client,
        keyed_request(recording_id, &format!("session:{session_id}")),
    );
    assert!(received == recorded, "the whole recording");
    let other = archive
        .start_replay(&ReplayRequest {
            channel: "aeron:ipc".into(),
            stream_id: 4400,
            ..keyed_request(recording_id, &format!("session:{}", exclusive.session_id()))
        })
        .expect_err("another session's key");
    assert!(
        other
            .to_string()
            .contains(&format!("is recording {second}")),
        "{other}"
    );
    let nowhere = view
        .messages_with_key(
            recording_id,
            None,
            None,
            &"session:12345".parse().expect("key"),
            |_, _| true,
        )
        .expect_err("no such session");
    assert!(
        nowhere.to_string().contains("no recording of stream 1020"),
        "{nowhere}"
    );
    // A field no first fragment can hold is refused, not scanned for in vain.
    let beyond = archive
        .start_replay(&ReplayRequest {
            channel: "aeron:ipc".into(),
            stream_id: 4401,
            ..keyed_request(recording_id, "field:1400:i32:1")
        })
        .expect_err("a field past the MTU");
    assert!(
        beyond.to_string().contains("past the first fragment"),
        "{beyond}"
    );
}

#[test]
fn a_key_filtered_replay_back_to_back_follows_paces_pauses_and_seeks() {
    let driver = driver("keypace");
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = ArchiveConfig::new(data.path(), driver.dir());
    config.segment_length = 2 * TERM as i32;
    config.key_index = vec![KeyKind::Reserved];
    let archive = Archive::launch(config).expect("archive starts");
    let client = Client::connect(driver.dir()).expect("client");
    let (publication, recording_id) = start_live_recording(&archive, &client, 1030);
    // Key 1 in every third message, followed live, back to back.
    let follow = client.add_subscription("aeron:ipc", 8500).expect("sub");
    let follow_id = archive
        .start_replay(&ReplayRequest {
            follow: true,
            channel: "aeron:ipc".into(),
            stream_id: 8500,
            keep_positions: false,
            ..keyed_request(recording_id, "reserved:1")
        })
        .expect("follow");
    let follow_status = archive.replay_status(follow_id).expect("status");
    let mut followed: Vec<(i32, u32)> = Vec::new();
    let mut starts = Vec::new();
    for sequence in 0..60u32 {
        std::thread::sleep(Duration::from_millis(3));
        starts.push(publication.position());
        let bytes = message(0, sequence, 64);
        offer_with(|| {
            publication.try_claim(bytes.len(), i64::from(sequence % 3), |buffer| {
                buffer.copy_from_slice(&bytes)
            })
        });
        poll_sequences(&follow, &mut followed);
    }
    let end = publication.position();
    wait_recorded(&archive, recording_id, end);
    let ones: Vec<u32> = (0..60).filter(|s| s % 3 == 1).collect();
    wait_until("the followed messages", Duration::from_secs(10), || {
        poll_sequences(&follow, &mut followed);
        followed.len() >= ones.len()
    });
    assert_eq!(
        followed.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        ones,
        "followed live, key 1 only"
    );
    archive.stop_recording(1 << 20).expect("stop");
    wait_until("the follow replay to end", Duration::from_secs(10), || {
        follow_status.is_finished()
    });
    assert_eq!(follow_status.state(), ReplayState::Done);

    // Paced at 1x, back to back: 20 messages 9 ms apart in the recording take about 171 ms.
    let subscription = client.add_subscription("aeron:ipc", 8501).expect("sub");
    let replay_id = archive
        .start_replay(&ReplayRequest {
            channel: "aeron:ipc".into(),
            stream_id: 8501,
            speed: Some(1.0),
            keep_positions: false,
            ..keyed_request(recording_id, "reserved:1")
        })
        .expect("paced");
    let status = archive.replay_status(replay_id).expect("status");
    let mut arrivals: Vec<(u32, i64, Instant)> = Vec::new();
    let poll = |arrivals: &mut Vec<(u32, i64, Instant)>| {
        subscription
            .poll(
                |fragment, header| {
                    arrivals.push((
                        u32::from_le_bytes(fragment[4..8].try_into().expect("4 bytes")),
                        header.position,
                        Instant::now(),
                    ))
                },
                16,
            )
            .expect("poll")
    };
    wait_until("five messages", Duration::from_secs(10), || {
        poll(&mut arrivals);
        std::thread::yield_now();
        arrivals.len() >= 5
    });
    archive.pause_replay(replay_id).expect("pause");
    wait_until("the pause", Duration::from_secs(5), || {
        status.state() == ReplayState::Paused
    });
    std::thread::sleep(Duration::from_millis(20));
    poll(&mut arrivals);
    let at_pause = arrivals.len();
    let paused = Instant::now();
    while paused.elapsed() < Duration::from_millis(200) {
        poll(&mut arrivals);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(arrivals.len(), at_pause, "nothing while paused");
    archive.resume_replay(replay_id).expect("resume");
    wait_until("the rest", Duration::from_secs(10), || {
        poll(&mut arrivals);
        std::thread::yield_now();
        arrivals.len() >= ones.len()
    });
    wait_until("the end", Duration::from_secs(5), || status.is_finished());
    assert_eq!(status.state(), ReplayState::Done, "{:?}", status.error());
    assert_eq!(
        arrivals.iter().map(|(s, _, _)| *s).collect::<Vec<_>>(),
        ones,
        "once each, in order"
    );
    // Back to back: each message right after the one before (64 + 32 bytes, aligned: 96).
    let start = starts[0];
    for (index, (_, position, _)) in arrivals.iter().enumerate() {
        assert_eq!(
            *position,
            start + 96 * (index as i64 + 1),
            "message {index}"
        );
    }
    let before = arrivals[at_pause - 1].2.duration_since(arrivals[0].2);
    let after = arrivals[ones.len() - 1]
        .2
        .duration_since(arrivals[at_pause].2);
    let paced = before + after;
    let expected = Duration::from_millis(9 * (ones.len() as u64 - 2));
    assert!(
        paced >= expected.mul_f64(0.7) && paced <= expected.mul_f64(1.6),
        "paced: {paced:?} for about {expected:?} of recorded time"
    );

    // Seek to message 30: a new image, key 1 from there.
    let slow = client.add_subscription("aeron:ipc", 8502).expect("sub");
    let replay_id = archive
        .start_replay(&ReplayRequest {
            channel: "aeron:ipc".into(),
            stream_id: 8502,
            speed: Some(0.2),
            keep_positions: false,
            ..keyed_request(recording_id, "reserved:1")
        })
        .expect("slow");
    let mut seen: Vec<(i32, u32)> = Vec::new();
    wait_until("the first message", Duration::from_secs(10), || {
        poll_sequences(&slow, &mut seen);
        !seen.is_empty()
    });
    let session = archive.seek_replay(replay_id, starts[30]).expect("seek");
    let after_seek: Vec<u32> = ones.iter().copied().filter(|s| *s >= 30).collect();
    wait_until(
        "the messages after the seek",
        Duration::from_secs(20),
        || {
            poll_sequences(&slow, &mut seen);
            seen.iter().filter(|(s, _)| *s == session).count() >= after_seek.len()
        },
    );
    assert_eq!(
        seen.iter()
            .filter(|(s, _)| *s == session)
            .map(|(_, m)| *m)
            .collect::<Vec<_>>(),
        after_seek
    );
    assert!(
        seen.iter()
            .filter(|(s, _)| *s != session)
            .all(|(_, m)| m % 3 == 1),
        "the first image had key 1 only"
    );
    archive.stop_replay(replay_id).expect("stop");

    // From a time: the first capture time at or after message 45 (the recorder may have taken
    // 45 with the messages before it in one batch, under load: then the next batch's), then
    // key 1 only from there.
    let index = tern_archive::TimeIndexReader::open(data.path(), recording_id).expect("index");
    let at = index.first_after_position(starts[45] - 1).expect("entry");
    let entry = index.entry(at).expect("entry");
    let from = archive
        .position_at_time(recording_id, entry.timestamp_ns)
        .expect("position");
    assert_eq!(from, entry.position);
    let first = starts
        .iter()
        .position(|start| *start == from)
        .expect("a message starts there") as u32;
    assert!(first >= 45, "the entry is at or after message 45");
    let (received, status) = replay_keyed(
        &archive,
        &client,
        ReplayRequest {
            position: Some(from),
            keep_positions: false,
            ..keyed_request(recording_id, "reserved:1")
        },
    );
    assert_eq!(
        received
            .iter()
            .map(|(bytes, _)| u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")))
            .collect::<Vec<_>>(),
        ones.iter()
            .copied()
            .filter(|s| *s >= first)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        status.search_stats().index_segments,
        1,
        "the stopped segment's index"
    );
    assert_eq!(status.search_stats().scanned_bytes, 0);
}

#[test]
fn truncating_an_indexed_recording_drops_the_cut_segment_index_and_keyed_replays_stay_exact() {
    let driver = driver("keytrunc");
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = ArchiveConfig::new(data.path(), driver.dir());
    config.segment_length = 2 * TERM as i32;
    config.key_index = vec![KeyKind::Reserved];
    let archive = Archive::launch(config).expect("archive starts");
    let client = Client::connect(driver.dir()).expect("client");
    let (publication, recording_id) = start_live_recording(&archive, &client, 1040);
    let mut starts = Vec::new();
    // Enough 1 KiB messages to finish a few 128 KiB segments (each then gets its index).
    for sequence in 0..600u32 {
        starts.push(publication.position());
        let bytes = message(0, sequence, 1000);
        offer_with(|| {
            publication.try_claim(bytes.len(), i64::from(sequence % 4), |buffer| {
                buffer.copy_from_slice(&bytes)
            })
        });
    }
    let end = publication.position();
    wait_recorded(&archive, recording_id, end);
    archive.stop_recording(1 << 20).expect("stop");
    drop(archive);
    // Relaunch: every finished segment's index is written (or rebuilt) by now.
    let mut config = ArchiveConfig::new(data.path(), driver.dir());
    config.segment_length = 2 * TERM as i32;
    config.key_index = vec![KeyKind::Reserved];
    let archive = Archive::launch(config).expect("archive restarts");
    // Cut in the middle of the first segment (which was finished and indexed).
    let first_segment_index = index_file(data.path(), recording_id, 0, &KeyKind::Reserved);
    wait_until("the first segment's index", Duration::from_secs(10), || {
        first_segment_index.exists()
    });
    let cut = starts[50];
    archive
        .truncate_recording(recording_id, cut)
        .expect("truncate");
    assert!(
        !first_segment_index.exists(),
        "the cut segment's index is gone: it described what was cut away"
    );
    let subscription = client.add_subscription("aeron:ipc", 8600).expect("sub");
    let replay = archive
        .start_replay(&ReplayRequest {
            channel: "aeron:ipc".into(),
            stream_id: 8600,
            keep_positions: false,
            ..keyed_request(recording_id, "reserved:3")
        })
        .expect("keyed replay");
    let status = archive.replay_status(replay).expect("status");
    let mut seen: Vec<(i32, u32)> = Vec::new();
    wait_until("the keyed replay to end", Duration::from_secs(10), || {
        poll_sequences(&subscription, &mut seen);
        status.is_finished()
    });
    poll_sequences(&subscription, &mut seen);
    assert_eq!(
        seen.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        (0..50).filter(|s| s % 4 == 3).collect::<Vec<u32>>(),
        "only messages before the cut, key 3 only"
    );
}

#[test]
fn reading_a_live_recording_by_key_in_passes_resumes_without_loss_or_repeat() {
    let driver = driver("keypasses");
    let data = tempfile::tempdir().expect("temp dir");
    let archive = archive(data.path(), driver.dir());
    let client = Client::connect(driver.dir()).expect("client");
    let (publication, recording_id) = start_live_recording(&archive, &client, 1031);
    let filter: KeyFilter = "field:0:i32:2".parse().expect("key");
    let mut printed: Vec<u32> = Vec::new();
    let mut resume = None;
    let max = publication.max_payload_length();
    // Three passes, as `tern replay --follow --key` makes, each after more messages, some
    // fragmented, across segments.
    for pass in 0..3u32 {
        for sequence in pass * 200..(pass + 1) * 200 {
            let length = if sequence % 17 == 0 { 3 * max } else { 100 };
            let bytes = message(sequence % 5, sequence, length);
            offer_with(|| publication.offer(&bytes));
        }
        wait_recorded(&archive, recording_id, publication.position());
        let view = ArchiveView::open(data.path()).expect("view");
        let read = view
            .messages_with_key(recording_id, resume, None, &filter, |message, _| {
                printed.push(u32::from_le_bytes(
                    message[4..8].try_into().expect("4 bytes"),
                ));
                true
            })
            .expect("a pass");
        assert!(read.stats.scanned_bytes > 0, "a live recording is scanned");
        resume = Some(read.resume);
    }
    assert_eq!(
        printed,
        (0..600).filter(|s| s % 5 == 2).collect::<Vec<_>>(),
        "every message of the key once, in order"
    );
}
