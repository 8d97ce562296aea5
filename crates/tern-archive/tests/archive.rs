//! The archive against a real embedded media driver: record, stop, replay, verify.

use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};
use tern_archive::{
    Archive, ArchiveConfig, ArchiveError, ArchiveView, RecordingInfo, ReplayRequest, ReplayState,
    SourceLocation,
};
use tern_transport::{
    BackoffIdle, Client, DriverConfig, FragmentAssembler, Idle, MediaDriver, OfferError,
    Publication,
};

const TERM: usize = 64 * 1024;

fn driver(tag: &str) -> MediaDriver {
    let dir = std::env::temp_dir().join(format!(
        "tern-archive-{tag}-{}-{}",
        std::process::id(),
        Client::nano_clock()
    ));
    MediaDriver::launch(&DriverConfig {
        dir: Some(dir.to_string_lossy().into_owned()),
        ipc_term_length: Some(TERM),
        term_length: Some(TERM),
        spies_simulate_connection: true,
        ..DriverConfig::default()
    })
    .expect("driver starts")
}

fn archive(dir: &Path, aeron_dir: &str) -> Archive {
    let mut config = ArchiveConfig::new(dir, aeron_dir);
    config.segment_length = 2 * TERM as i32;
    Archive::launch(config).expect("archive starts")
}

fn seed() -> u64 {
    let seed = std::env::var("TERN_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| Client::nano_clock() as u64);
    println!("seed {seed} (rerun with TERN_SEED={seed})");
    seed
}

fn offer(publication: &Publication, message: &[u8], idle: &mut BackoffIdle) {
    offer_with(|| publication.offer(message), idle);
}

/// Offer until it goes through, backing off while it is retryable.
fn offer_with(mut offer: impl FnMut() -> Result<i64, OfferError>, idle: &mut BackoffIdle) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match offer() {
            Ok(_) => return,
            Err(error) if error.is_retryable() => {
                assert!(Instant::now() < deadline, "offer stuck: {error}");
                idle.idle(0);
            }
            Err(error) => panic!("offer failed: {error}"),
        }
    }
}

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

fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn wait_recorded(archive: &Archive, recording_id: i64, position: i64) -> RecordingInfo {
    let mut info = archive.recording(recording_id).expect("recording");
    wait_until("the recording to catch up", Duration::from_secs(20), || {
        info = archive.recording(recording_id).expect("recording");
        info.recorded_position >= position
    });
    info
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
    let mut idle = BackoffIdle::new();
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
        offer(&publications[publisher], &bytes, &mut idle);
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
    let mut idle = BackoffIdle::new();
    for sequence in 0..count {
        offer(
            &publication,
            &message(0, sequence, length(sequence)),
            &mut idle,
        );
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
        matches!(unknown, ArchiveError::UnknownRecording(99)),
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
        let mut idle = BackoffIdle::new();
        for sequence in 0..400 {
            offer(&publication, &message(0, sequence, 500), &mut idle);
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
    while subscription.poll(|_, _| count += 1, 64).expect("poll") > 0 {}
    assert!(
        count <= 300,
        "no frame past the damage is replayed ({count})"
    );
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
    assert!(matches!(error, ArchiveError::Locked { .. }), "{error}");
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
    // A stale segment file where recording 0's first segment would go: it cannot be created.
    std::fs::write(data.path().join("0-0.rec"), b"stale").expect("stale file");
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
    // Many terms' worth: a subscriber that no longer moves would stop this at half a term.
    let mut idle = BackoffIdle::new();
    for sequence in 0..400 {
        offer(&publication, &message(0, sequence, 1000), &mut idle);
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
    let mut idle = BackoffIdle::new();
    let mut sent = Vec::new();
    for (sequence, size) in sizes.iter().enumerate() {
        let bytes = message(0, sequence as u32, *size);
        offer_with(|| publication.offer(&bytes), &mut idle);
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
    let mut idle = BackoffIdle::new();
    let mut starts = Vec::new();
    for sequence in 0..8 {
        starts.push(publication.position());
        offer(&publication, &message(0, sequence, 100), &mut idle);
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
        })
        .expect("follow from the end");
    offer(&publication, &message(0, 8, 100), &mut idle);
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
    let mut idle = BackoffIdle::new();
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
        offer_with(|| publication.offer(&message(0, sequence, 64)), &mut idle);
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
    let mut idle = BackoffIdle::new();
    let count = 60u32;
    for sequence in 0..count {
        std::thread::sleep(Duration::from_millis(4));
        offer_with(|| publication.offer(&message(0, sequence, 64)), &mut idle);
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
    let mut idle = BackoffIdle::new();
    let count = 60u32;
    let mut starts = Vec::new();
    for sequence in 0..count {
        std::thread::sleep(Duration::from_millis(3));
        starts.push(publication.position());
        offer_with(|| publication.offer(&message(0, sequence, 64)), &mut idle);
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
    let mut idle = BackoffIdle::new();
    let base_us = 1_700_000_000_000_000i64;
    let mut starts = Vec::new();
    // Back to back, but each message says it was made 10 ms after the one before.
    for sequence in 0..30u32 {
        let mut bytes = message(0, sequence, 64);
        bytes[8..16].copy_from_slice(&(base_us + i64::from(sequence) * 10_000).to_le_bytes());
        starts.push(publication.position());
        offer_with(|| publication.offer(&bytes), &mut idle);
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
