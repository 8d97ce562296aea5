//! The control server's tern extensions (schema 1101) against a real embedded media driver, byte
//! by byte: replays from a time, at a pace, from a cursor; pause, resume, seek; cursors that
//! survive a restart.

mod control_support;

use std::time::{Duration, Instant};
use tern_archive::control::Authenticator;
use tern_archive::{Archive, ArchiveConfig};
use tern_protocol::{self as proto, AnyMessage, ControlResponseCode, Message, TernMessage};
use tern_transport::{BackoffIdle, Client, Idle, Subscription};

use control_support::*;
use tern_testkit::{driver, wait_until, TERM};

/// Record two bursts of 20 messages 250 ms apart on `stream`; returns (recording id, start
/// position, frame length, a time between the bursts).
fn record_two_bursts(fixture: &Fixture, raw: &mut Raw, stream: i32) -> (i64, i64, i64, i64) {
    let (_, publication, _client) = start_protocol_recording(fixture, raw, stream);
    let mut between = 0;
    for sequence in 0..40u32 {
        if sequence == 20 {
            std::thread::sleep(Duration::from_millis(125));
            between = tern_archive::epoch_nanos();
            std::thread::sleep(Duration::from_millis(125));
        }
        let mut body = sequence.to_le_bytes().to_vec();
        body.resize(100, 0);
        tern_testkit::offer_with(|| publication.offer(&body));
    }
    let end = publication.position();
    let info = fixture
        .archive
        .recordings()
        .into_iter()
        .find(|r| r.descriptor.stream_id == stream)
        .expect("recording");
    let id = info.descriptor.recording_id;
    wait_until("everything recorded", TIMEOUT, || {
        fixture
            .archive
            .recording(id)
            .is_ok_and(|info| info.recorded_position >= end)
    });
    ok(&raw.call(|s, c| {
        Message::StopRecordingRequest(proto::StopRecordingRequest {
            control_session_id: s,
            correlation_id: c,
            stream_id: stream,
            channel: "aeron:ipc".into(),
        })
    }));
    let start = info.descriptor.start_position;
    (id.get(), start, (end - start) / 40, between)
}

fn tern_replay(recording_id: i64, stream: i32) -> impl FnOnce(i64, i64) -> TernMessage {
    move |s, c| {
        TernMessage::TernReplayRequest(proto::TernReplayRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id,
            position: -1,
            length: -1,
            from_timestamp: proto::TernReplayRequest::FROM_TIMESTAMP_NONE,
            speed_millis: 0,
            replay_stream_id: stream,
            replay_channel: "aeron:ipc".into(),
            time_source: String::new(),
            key_filter: String::new(),
            cursor: String::new(),
        })
    }
}

/// Poll `subscription` until `count` messages came; returns (image session id, sequence).
fn collect(subscription: &Subscription, count: usize) -> Vec<(i32, u32)> {
    let mut seen = Vec::new();
    wait_until("the replayed messages", TIMEOUT, || {
        subscription
            .poll(
                |fragment, header| {
                    seen.push((
                        header.session_id,
                        u32::from_le_bytes(fragment[..4].try_into().expect("4 bytes")),
                    ))
                },
                64,
            )
            .expect("poll");
        seen.len() >= count
    });
    seen
}

fn sequences(seen: &[(i32, u32)]) -> Vec<u32> {
    seen.iter().map(|(_, sequence)| *sequence).collect()
}

#[test]
fn tern_extensions_replay_from_a_time_at_a_pace_from_a_cursor_and_pause_resume_seek() {
    let fixture = fixture("tern", Authenticator::None);
    let mut raw = Raw::open(fixture.driver.dir(), 50);
    raw.connect();
    let (recording, start, frame, between) = record_two_bursts(&fixture, &mut raw, 1101);
    let client = Client::connect(fixture.driver.dir()).expect("client");

    // The position at a time between the bursts is the second burst's first message.
    let response = raw.call_tern_response(|s, c| {
        TernMessage::PositionAtTimeRequest(proto::PositionAtTimeRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: recording,
            timestamp: between,
            time_source: String::new(),
        })
    });
    assert_eq!(response.code, ControlResponseCode::Ok, "{response:?}");
    assert_eq!(response.relevant_id, start + 20 * frame);

    // Replay from that time: the second burst only.
    let from_time = client.add_subscription("aeron:ipc", 4001).expect("sub");
    let response = raw.call_tern_response(|s, c| {
        let mut message = tern_replay(recording, 4001)(s, c);
        if let TernMessage::TernReplayRequest(r) = &mut message {
            r.from_timestamp = between;
        }
        message
    });
    assert_eq!(response.code, ControlResponseCode::Ok, "{response:?}");
    assert_eq!(
        sequences(&collect(&from_time, 20)),
        (20..40).collect::<Vec<u32>>()
    );

    // At the original pace the 250 ms gap is kept.
    let paced = client.add_subscription("aeron:ipc", 4002).expect("sub");
    let began = Instant::now();
    let response = raw.call_tern_response(|s, c| {
        let mut message = tern_replay(recording, 4002)(s, c);
        if let TernMessage::TernReplayRequest(r) = &mut message {
            r.speed_millis = 1000;
        }
        message
    });
    assert_eq!(response.code, ControlResponseCode::Ok, "{response:?}");
    assert_eq!(
        sequences(&collect(&paced, 40)),
        (0..40).collect::<Vec<u32>>()
    );
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "paced replay took {took:?}"
    );

    // Bad arguments are refused with a reason.
    let response = raw.call_tern_response(|s, c| {
        let mut message = tern_replay(recording, 4003)(s, c);
        if let TernMessage::TernReplayRequest(r) = &mut message {
            r.speed_millis = 5;
        }
        message
    });
    assert_eq!(response.code, ControlResponseCode::Error);
    assert!(
        response
            .error_message
            .contains("speed 0.005 is outside 0.01 .. 1000"),
        "{response:?}"
    );
    let response = raw.call_tern_response(|s, c| {
        let mut message = tern_replay(recording, 4003)(s, c);
        if let TernMessage::TernReplayRequest(r) = &mut message {
            r.time_source = "sundial".into();
        }
        message
    });
    assert_eq!(response.code, ControlResponseCode::Error);
    assert!(response.error_message.contains("sundial"), "{response:?}");

    // Cursors: set, read, list, replay from, refuse bad ones, delete.
    let at_ten = start + 10 * frame;
    let response = raw.call_tern_response(|s, c| {
        TernMessage::SetCursorRequest(proto::SetCursorRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: recording,
            position: at_ten,
            name: "consumer-a".into(),
        })
    });
    assert_eq!(response.code, ControlResponseCode::Ok, "{response:?}");
    raw.send_tern(TernMessage::GetCursorRequest(proto::GetCursorRequest {
        control_session_id: raw.session_id,
        correlation_id: 9001,
        name: "consumer-a".into(),
    }));
    // A get is answered by the descriptor alone.
    let answer = raw.receive_any_within(TIMEOUT).expect("an answer");
    assert!(
        matches!(&answer, AnyMessage::Tern(TernMessage::CursorDescriptor(d))
            if d.correlation_id == 9001 && d.position == at_ten && d.recording_id == recording
                && d.name == "consumer-a"),
        "{answer:?}"
    );
    let listed = raw.call_tern(|s, c| {
        TernMessage::ListCursorsRequest(proto::ListCursorsRequest {
            control_session_id: s,
            correlation_id: c,
            name_prefix: "consumer".into(),
        })
    });
    assert_eq!(listed.len(), 2, "one cursor and the end marker: {listed:?}");
    let from_cursor = client.add_subscription("aeron:ipc", 4004).expect("sub");
    let response = raw.call_tern_response(|s, c| {
        let mut message = tern_replay(recording, 4004)(s, c);
        if let TernMessage::TernReplayRequest(r) = &mut message {
            r.cursor = "consumer-a".into();
        }
        message
    });
    assert_eq!(response.code, ControlResponseCode::Ok, "{response:?}");
    assert_eq!(
        sequences(&collect(&from_cursor, 30)),
        (10..40).collect::<Vec<u32>>()
    );
    let response = raw.call_tern_response(|s, c| {
        TernMessage::SetCursorRequest(proto::SetCursorRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: recording,
            position: start + 33,
            name: "consumer-b".into(),
        })
    });
    assert_eq!(
        (response.code, response.relevant_id),
        (ControlResponseCode::Error, 16)
    );
    let response = raw.call_tern_response(|s, c| {
        TernMessage::SetCursorRequest(proto::SetCursorRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: 777,
            position: 0,
            name: "consumer-b".into(),
        })
    });
    assert_eq!(
        (response.code, response.relevant_id),
        (ControlResponseCode::Error, 5)
    );
    let response = raw.call_tern_response(|s, c| {
        TernMessage::DeleteCursorRequest(proto::DeleteCursorRequest {
            control_session_id: s,
            correlation_id: c,
            name: "consumer-a".into(),
        })
    });
    assert_eq!(
        (response.code, response.relevant_id),
        (ControlResponseCode::Ok, 1)
    );
    let response = raw.call_tern_response(|s, c| {
        TernMessage::GetCursorRequest(proto::GetCursorRequest {
            control_session_id: s,
            correlation_id: c,
            name: "consumer-a".into(),
        })
    });
    assert_eq!(response.code, ControlResponseCode::Error);
    assert!(
        response.error_message.contains("consumer-a"),
        "{response:?}"
    );

    // Groups: one (channel, stream) group holding the recording.
    let groups = raw.call_tern(|s, c| {
        TernMessage::ListRecordingGroupsRequest(proto::ListRecordingGroupsRequest {
            control_session_id: s,
            correlation_id: c,
            stream_id: 1101,
            apply_stream_id: true,
            channel_fragment: "ipc".into(),
        })
    });
    match &groups[..] {
        [AnyMessage::Tern(TernMessage::RecordingGroupDescriptor(g)), AnyMessage::Aeron(Message::ControlResponse(end))] =>
        {
            assert_eq!((g.recording_count, g.active_count), (1, 0));
            assert_eq!(g.first_recording_id, recording);
            assert_eq!(g.total_bytes, 40 * frame);
            assert_eq!(g.channel, "aeron:ipc");
            assert_eq!(end.relevant_id, 1);
        }
        other => panic!("unexpected group listing {other:?}"),
    }

    // Pause, seek and resume a paced replay.
    let controlled = client.add_subscription("aeron:ipc", 4005).expect("sub");
    let response = raw.call_tern_response(|s, c| {
        let mut message = tern_replay(recording, 4005)(s, c);
        if let TernMessage::TernReplayRequest(r) = &mut message {
            r.speed_millis = 1000;
        }
        message
    });
    let replay_id = response.relevant_id;
    let first = collect(&controlled, 20);
    let control = |action, value| {
        move |s, c| {
            TernMessage::ReplayControlRequest(proto::ReplayControlRequest {
                control_session_id: s,
                correlation_id: c,
                replay_session_id: replay_id,
                value,
                action,
                time_source: String::new(),
            })
        }
    };
    let response = raw.call_tern_response(control(proto::ReplayAction::Pause, 0));
    assert_eq!(response.code, ControlResponseCode::Ok, "{response:?}");
    std::thread::sleep(Duration::from_millis(400));
    let mut during_pause = Vec::new();
    controlled
        .poll(|_, _| during_pause.push(()), 64)
        .expect("poll");
    assert!(during_pause.is_empty(), "nothing is sent while paused");
    let response = raw.call_tern_response(control(
        proto::ReplayAction::SeekPosition,
        start + 5 * frame,
    ));
    assert_eq!(response.code, ControlResponseCode::Ok, "{response:?}");
    let new_session = response.relevant_id as i32;
    let response = raw.call_tern_response(control(proto::ReplayAction::Resume, 0));
    assert_eq!(response.code, ControlResponseCode::Ok, "{response:?}");
    let rest = collect(&controlled, 35);
    assert!(rest.iter().all(|(session, _)| *session == new_session));
    assert_eq!(sequences(&first), (0..20).collect::<Vec<u32>>());
    assert_eq!(sequences(&rest), (5..40).collect::<Vec<u32>>());
}

#[test]
fn cursors_survive_an_archive_restart() {
    let driver = driver("cursor-restart");
    let dir = tempfile::tempdir().expect("temp dir");
    let launch = || {
        let mut config = ArchiveConfig::new(dir.path(), driver.dir());
        config.segment_length = 2 * TERM as i32;
        Archive::launch(config).expect("archive starts")
    };
    let archive = launch();
    let subscription = archive
        .start_recording("aeron:ipc", 1201, tern_archive::SourceLocation::Local)
        .expect("record");
    let client = Client::connect(driver.dir()).expect("client");
    let publication = client.add_publication("aeron:ipc", 1201).expect("pub");
    wait_until("the recording", TIMEOUT, || {
        !archive.recordings().is_empty()
    });
    let mut idle = BackoffIdle::new();
    for _ in 0..10 {
        while publication.offer(&[7u8; 64]).is_err() {
            idle.idle(0);
        }
    }
    let end = publication.position();
    wait_until("recorded", TIMEOUT, || {
        archive.recordings()[0].recorded_position >= end
    });
    archive.stop_recording(subscription).expect("stop");
    let recording = archive.recordings()[0].descriptor.recording_id;
    let position = archive.recordings()[0].descriptor.start_position + 96 * 3;
    archive
        .set_cursor("resume-here", recording, position)
        .expect("set");
    drop(archive);
    let archive = launch();
    let cursor = archive
        .cursor("resume-here")
        .expect("the cursor is still there");
    assert_eq!(
        (cursor.recording_id, cursor.position),
        (recording, position)
    );
}
