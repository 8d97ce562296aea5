//! The archive against a real embedded media driver: record, stop, replay, verify (replays
//! by time, pacing, pause and seek: `pacing.rs`; filtered by key: `keys.rs`).

mod support;

use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};
use tern_archive::{
    Archive, ArchiveConfig, ArchiveError, ArchiveView, RecordingId, ReplayId, ReplayRequest,
    ReplayState, SourceLocation, StoreError,
};
use tern_transport::{BackoffIdle, Client, Idle, Publication};

use support::*;
use tern_testkit::{archive, driver, offer, offer_with, seed, wait_recorded, wait_until, TERM};

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
            ..ReplayRequest::default()
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
            ..ReplayRequest::default()
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
            follow: true,
            channel: "aeron:ipc".into(),
            stream_id: 4242,
            ..ReplayRequest::default()
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
        channel: "aeron:ipc".into(),
        stream_id: 5,
        ..ReplayRequest::default()
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
            recording_id: RecordingId::new(99),
            ..request(None)
        })
        .expect_err("unknown");
    assert!(
        matches!(
            unknown,
            ArchiveError::Store(StoreError::UnknownRecording(id)) if id == RecordingId::new(99)
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
            channel: "aeron:ipc".into(),
            stream_id: 77,
            ..ReplayRequest::default()
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
    let replays: Vec<ReplayId> = streams
        .iter()
        .map(|stream| {
            archive
                .start_replay(&ReplayRequest {
                    recording_id,
                    channel: "aeron:ipc".into(),
                    stream_id: *stream,
                    ..ReplayRequest::default()
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
                        assert_eq!(header.session_id, replays[index].image_session_id());
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
    // The recording is stopped in the catalog, then its failure reported: wait for both.
    wait_until("the failed recording", Duration::from_secs(10), || {
        archive.recordings().iter().any(|info| !info.active)
            && !archive.recording_failures().is_empty()
    });
    let info = archive.recordings().remove(0);
    assert_eq!(
        info.descriptor.stop_position, info.descriptor.start_position,
        "stopped at its start"
    );
    let failures = archive.recording_failures();
    assert!(
        failures.len() == 1
            && failures[0].recording_id == Some(RecordingId::new(0))
            && failures[0].error.contains("0.tix"),
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
            channel: "aeron:ipc".into(),
            stream_id: 7007,
            ..ReplayRequest::default()
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
        length: Some(5 * 256 + 100),
        ..ReplayRequest::default()
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
        ..ReplayRequest::default()
    };
    let replayed = replay_messages(&archive, &client, request, sent.len());
    let messages: Vec<Vec<u8>> = replayed.into_iter().map(|(bytes, _)| bytes).collect();
    assert_eq!(messages, sent);
}
