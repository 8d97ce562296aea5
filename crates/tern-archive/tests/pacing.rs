//! Replays in time against a real embedded media driver: from a time, paced at a speed (capture
//! times or times inside the messages), paused and resumed, seeking.

mod support;

use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};
use tern_archive::{
    ArchiveError, ArchiveView, ReplayId, ReplayRequest, ReplayState, SourceLocation,
};
use tern_transport::Client;

use support::*;
use tern_testkit::{archive, driver, offer, offer_with, seed, wait_recorded, wait_until};

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
            ..ReplayRequest::default()
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
            follow: true,
            channel: "aeron:ipc".into(),
            stream_id: 4343,
            ..ReplayRequest::default()
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
            channel: "aeron:ipc".into(),
            stream_id: 5,
            speed: Some(5000.0),
            ..ReplayRequest::default()
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
                channel: "aeron:ipc".into(),
                stream_id: stream,
                speed: Some(speed),
                ..ReplayRequest::default()
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
            channel: "aeron:ipc".into(),
            stream_id: 8200,
            speed: Some(1.0),
            ..ReplayRequest::default()
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
        archive.resume_replay(ReplayId::new(77)),
        Err(ArchiveError::UnknownReplay(id)) if id == ReplayId::new(77)
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
            channel: "aeron:ipc".into(),
            stream_id: 8300,
            speed: Some(1.0),
            ..ReplayRequest::default()
        })
        .expect("paced replay");
    let status = archive.replay_status(replay_id).expect("status");
    let first_session = status.session_id();
    assert_eq!(first_session, replay_id.image_session_id());
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
            channel: "aeron:ipc".into(),
            stream_id: 8400,
            speed: Some(1.0),
            time_source: source,
            ..ReplayRequest::default()
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
            channel: "aeron:ipc".into(),
            stream_id: 8401,
            speed: Some(0.1),
            time_source: source,
            ..ReplayRequest::default()
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
