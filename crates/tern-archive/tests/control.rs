//! The control server against a real embedded media driver, spoken to byte by byte with the
//! protocol codecs (no client library): sessions, authentication, every request kind, listings
//! with their end markers, replays, malformed input and clients that go away.
//! (tern's extensions, schema 1101: `control_tern.rs`)

mod control_support;

use std::sync::Arc;
use std::time::Duration;
use tern_archive::control::{Authenticator, ControlChannel, ControlConfig, ControlServer};
use tern_archive::{Archive, ArchiveConfig, RecordingId, ReplayId};
use tern_protocol::{
    self as proto, AnyMessage, ControlResponseCode, Message, SourceLocation, TernMessage,
};
use tern_transport::Client;

use control_support::*;
use tern_testkit::{driver, wait_until, TERM};

#[test]
fn a_session_lists_records_queries_and_replays_as_aeron_does() {
    let fixture = fixture("ops", Authenticator::None);
    let mut raw = Raw::open(fixture.driver.dir(), 20);
    raw.connect();

    let archive_id = ok(&raw.call(|s, c| {
        Message::ArchiveIdRequest(proto::ArchiveIdRequest {
            control_session_id: s,
            correlation_id: c,
        })
    }));
    assert_ne!(archive_id, 0);

    // An empty archive: the listing is only its end marker.
    let listed = raw.list(10, |s, c| {
        Message::ListRecordingsRequest(proto::ListRecordingsRequest {
            control_session_id: s,
            correlation_id: c,
            from_recording_id: 0,
            record_count: 10,
        })
    });
    assert_eq!(listed.len(), 1);
    assert_eq!(
        expect_response(&listed[0]).code,
        ControlResponseCode::RecordingUnknown
    );

    let (first, subscription_id) = record_over_protocol(&fixture, &mut raw, 1001, 50);
    let (second, _) = record_over_protocol(&fixture, &mut raw, 1002, 20);

    // Active recordings: position known, stop position null.
    let position = ok(&raw.call(|s, c| {
        Message::RecordingPositionRequest(proto::RecordingPositionRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: first,
        })
    }));
    assert!(position > 0);
    let stop = ok(&raw.call(|s, c| {
        Message::StopPositionRequest(proto::StopPositionRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: first,
        })
    }));
    assert_eq!(stop, -1);
    let max = ok(&raw.call(|s, c| {
        Message::MaxRecordedPositionRequest(proto::MaxRecordedPositionRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: first,
        })
    }));
    assert_eq!(max, position);

    // The recording subscriptions, then stop one by id.
    let subscriptions = raw.list(10, |s, c| {
        Message::ListRecordingSubscriptionsRequest(proto::ListRecordingSubscriptionsRequest {
            control_session_id: s,
            correlation_id: c,
            pseudo_index: 0,
            subscription_count: 10,
            apply_stream_id: true,
            stream_id: 1001,
            channel: "ipc".into(),
        })
    });
    match &subscriptions[..] {
        [Message::RecordingSubscriptionDescriptor(d), Message::ControlResponse(end)] => {
            assert_eq!(d.subscription_id, subscription_id);
            assert_eq!(d.stream_id, 1001);
            assert_eq!(end.code, ControlResponseCode::SubscriptionUnknown);
        }
        other => panic!("unexpected subscription listing {other:?}"),
    }
    ok(&raw.call(|s, c| {
        Message::StopRecordingSubscriptionRequest(proto::StopRecordingSubscriptionRequest {
            control_session_id: s,
            correlation_id: c,
            subscription_id,
        })
    }));
    let (code, message) = error(&raw.call(|s, c| {
        Message::StopRecordingSubscriptionRequest(proto::StopRecordingSubscriptionRequest {
            control_session_id: s,
            correlation_id: c,
            subscription_id,
        })
    }));
    assert_eq!(code, 4, "UNKNOWN_SUBSCRIPTION: {message}");
    ok(&raw.call(|s, c| {
        Message::StopRecordingRequest(proto::StopRecordingRequest {
            control_session_id: s,
            correlation_id: c,
            stream_id: 1002,
            channel: "aeron:ipc".into(),
        })
    }));
    wait_until("both recordings stopped", TIMEOUT, || {
        fixture.archive.recordings().iter().all(|r| !r.active)
    });
    let stop = ok(&raw.call(|s, c| {
        Message::StopPositionRequest(proto::StopPositionRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: first,
        })
    }));
    assert_eq!(stop, position);
    let recording_position = ok(&raw.call(|s, c| {
        Message::RecordingPositionRequest(proto::RecordingPositionRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: first,
        })
    }));
    assert_eq!(
        recording_position, -1,
        "a stopped recording has no recording position"
    );

    // Listings: all, count-limited (no end marker), from an id, by URI, one, unknown.
    let all = raw.list(10, |s, c| {
        Message::ListRecordingsRequest(proto::ListRecordingsRequest {
            control_session_id: s,
            correlation_id: c,
            from_recording_id: 0,
            record_count: 10,
        })
    });
    assert_eq!(all.len(), 3, "two descriptors and the end marker: {all:?}");
    match (&all[0], &all[1]) {
        (Message::RecordingDescriptor(a), Message::RecordingDescriptor(b)) => {
            assert_eq!((a.recording_id, b.recording_id), (first, second));
            assert_eq!(a.stop_position, position);
            assert_eq!(a.stream_id, 1001);
            assert_eq!(a.original_channel, "aeron:ipc");
            assert_eq!(a.term_buffer_length, TERM as i32);
        }
        other => panic!("unexpected listing {other:?}"),
    }
    let end = expect_response(&all[2]);
    assert_eq!(end.code, ControlResponseCode::RecordingUnknown);
    assert_eq!(end.relevant_id, second + 1);

    let one = raw.list(1, |s, c| {
        Message::ListRecordingsRequest(proto::ListRecordingsRequest {
            control_session_id: s,
            correlation_id: c,
            from_recording_id: 0,
            record_count: 1,
        })
    });
    assert!(matches!(&one[..], [Message::RecordingDescriptor(d)] if d.recording_id == first));
    // Nothing else follows a listing that reached its count.
    assert!(raw.receive_within(Duration::from_millis(300)).is_none());

    let by_uri = raw.list(10, |s, c| {
        Message::ListRecordingsForUriRequest(proto::ListRecordingsForUriRequest {
            control_session_id: s,
            correlation_id: c,
            from_recording_id: 0,
            record_count: 10,
            stream_id: 1002,
            channel: "ipc".into(),
        })
    });
    assert!(
        matches!(&by_uri[..], [Message::RecordingDescriptor(d), Message::ControlResponse(end)]
            if d.recording_id == second && end.code == ControlResponseCode::RecordingUnknown),
        "{by_uri:?}"
    );
    let by_other_uri = raw.list(10, |s, c| {
        Message::ListRecordingsForUriRequest(proto::ListRecordingsForUriRequest {
            control_session_id: s,
            correlation_id: c,
            from_recording_id: 0,
            record_count: 10,
            stream_id: 1002,
            channel: "udp".into(),
        })
    });
    assert!(matches!(&by_other_uri[..], [Message::ControlResponse(end)]
        if end.code == ControlResponseCode::RecordingUnknown));
    let single = raw.list(1, |s, c| {
        Message::ListRecordingRequest(proto::ListRecordingRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: second,
        })
    });
    assert!(matches!(&single[..], [Message::RecordingDescriptor(d)] if d.recording_id == second));
    let unknown = raw.list(1, |s, c| {
        Message::ListRecordingRequest(proto::ListRecordingRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: 999,
        })
    });
    assert!(matches!(&unknown[..], [Message::ControlResponse(r)]
        if r.code == ControlResponseCode::RecordingUnknown && r.relevant_id == 999));

    let found = ok(&raw.call(|s, c| {
        Message::FindLastMatchingRecordingRequest(proto::FindLastMatchingRecordingRequest {
            control_session_id: s,
            correlation_id: c,
            min_recording_id: 0,
            session_id: fixture
                .archive
                .recording(RecordingId::new(first))
                .expect("r")
                .descriptor
                .session_id,
            stream_id: 1001,
            channel: "aeron:ipc".into(),
        })
    }));
    assert_eq!(found, first);
    let not_found = ok(&raw.call(|s, c| {
        Message::FindLastMatchingRecordingRequest(proto::FindLastMatchingRecordingRequest {
            control_session_id: s,
            correlation_id: c,
            min_recording_id: 0,
            session_id: 12345,
            stream_id: 1001,
            channel: "".into(),
        })
    }));
    assert_eq!(not_found, -1);

    // Errors carry Aeron's codes.
    let (code, message) = error(&raw.call(|s, c| {
        Message::StartPositionRequest(proto::StartPositionRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: 4242,
        })
    }));
    assert_eq!(code, 5, "UNKNOWN_RECORDING: {message}");
    assert!(message.contains("4242"), "{message}");

    // Replay the first recording to a subscription of ours, then stop it.
    let client = Client::connect(fixture.driver.dir()).expect("client");
    let replay_subscription = client
        .add_subscription("aeron:ipc", 3001)
        .expect("replay subscription");
    let replay_id = ok(&raw.call(|s, c| {
        Message::ReplayRequest(proto::ReplayRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: first,
            position: -1,
            length: -1,
            replay_stream_id: 3001,
            file_io_max_length: -1,
            replay_token: -1,
            replay_channel: "aeron:ipc".into(),
        })
    }));
    let mut sequences = Vec::new();
    wait_until("the replay to arrive", TIMEOUT, || {
        replay_subscription
            .poll(
                |fragment, header| {
                    assert_eq!(header.session_id, replay_id as i32);
                    sequences.push(u32::from_le_bytes(fragment[..4].try_into().expect("4")));
                },
                64,
            )
            .expect("poll");
        sequences.len() >= 50
    });
    assert_eq!(sequences, (0..50).collect::<Vec<u32>>());
    ok(&raw.call(|s, c| {
        Message::StopReplayRequest(proto::StopReplayRequest {
            control_session_id: s,
            correlation_id: c,
            replay_session_id: replay_id,
        })
    }));

    // Bad replay requests.
    let (code, message) = error(&raw.call(|s, c| {
        Message::ReplayRequest(proto::ReplayRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: first,
            position: position + 4096,
            length: -1,
            replay_stream_id: 3001,
            file_io_max_length: -1,
            replay_token: -1,
            replay_channel: "aeron:ipc".into(),
        })
    }));
    assert_eq!(code, 16, "INVALID_POSITION: {message}");
    let (_, message) = error(&raw.call(|s, c| {
        Message::ReplayRequest(proto::ReplayRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: first,
            position: 33,
            length: -1,
            replay_stream_id: 3001,
            file_io_max_length: -1,
            replay_token: -1,
            replay_channel: "aeron:ipc".into(),
        })
    }));
    assert!(message.contains("FRAME_ALIGNMENT"), "{message}");

    // Closing the session: it is gone from the server.
    raw.send(&Message::CloseSessionRequest(proto::CloseSessionRequest {
        control_session_id: raw.session_id,
    }));
    wait_until("the session to close", TIMEOUT, || {
        fixture.server.stats().sessions_closed() == 1
    });
}

#[test]
fn credentials_are_checked_and_a_challenge_can_ask_for_them() {
    let fixture = fixture(
        "auth",
        Authenticator::Credentials {
            accepted: vec![b"alice:secret".to_vec()],
            challenge: Some(b"credentials?".to_vec()),
        },
    );
    let mut good = Raw::open(fixture.driver.dir(), 21);
    let answer = good.connect_with(b"alice:secret");
    assert_eq!(expect_response(&answer).code, ControlResponseCode::Ok);

    let mut wrong = Raw::open(fixture.driver.dir(), 22);
    let answer = wrong.connect_with(b"alice:guess");
    let (code, message) = error(&answer);
    assert_eq!(code, 10, "AUTHENTICATION_REJECTED");
    assert_eq!(message, "authentication rejected");

    let mut challenged = Raw::open(fixture.driver.dir(), 23);
    let answer = challenged.connect_with(b"");
    let challenge = match answer {
        Message::Challenge(challenge) => challenge,
        other => panic!("expected a challenge, got {other:?}"),
    };
    assert_eq!(challenge.encoded_challenge, b"credentials?");
    challenged.session_id = challenge.control_session_id;
    let correlation = challenged.next_correlation();
    challenged.send(&Message::ChallengeResponse(proto::ChallengeResponse {
        control_session_id: challenge.control_session_id,
        correlation_id: correlation,
        encoded_credentials: b"alice:secret".to_vec(),
    }));
    let answer = challenged.receive();
    let response = expect_response(&answer);
    assert_eq!(response.code, ControlResponseCode::Ok);
    assert_eq!(response.correlation_id, correlation);
    assert_eq!(response.relevant_id, challenge.control_session_id);

    let mut failed = Raw::open(fixture.driver.dir(), 24);
    let Message::Challenge(challenge) = failed.connect_with(b"") else {
        panic!("expected a challenge");
    };
    failed.send(&Message::ChallengeResponse(proto::ChallengeResponse {
        control_session_id: challenge.control_session_id,
        correlation_id: 7,
        encoded_credentials: b"mallory".to_vec(),
    }));
    assert_eq!(error(&failed.receive()).0, 10);

    // The accepted client is served throughout.
    ok(&good.call(|s, c| {
        Message::ArchiveIdRequest(proto::ArchiveIdRequest {
            control_session_id: s,
            correlation_id: c,
        })
    }));
}

#[test]
fn garbage_gets_an_error_and_everyone_else_is_still_served() {
    let fixture = fixture("garbage", Authenticator::None);
    let mut victim = Raw::open(fixture.driver.dir(), 25);
    victim.connect();
    let mut bystander = Raw::open(fixture.driver.dir(), 26);
    bystander.connect();
    // Once active, a session's connect OK is no longer repeated.
    bystander.send(&Message::KeepAliveRequest(proto::KeepAliveRequest {
        control_session_id: bystander.session_id,
        correlation_id: 1,
    }));
    while bystander
        .receive_within(Duration::from_millis(300))
        .is_some()
    {}

    // A request truncated after its session and correlation ids.
    let mut truncated = Vec::new();
    Message::ReplayRequest(proto::ReplayRequest {
        control_session_id: victim.session_id,
        correlation_id: 4711,
        recording_id: 0,
        position: 0,
        length: 0,
        replay_stream_id: 1,
        file_io_max_length: -1,
        replay_token: -1,
        replay_channel: "aeron:ipc".into(),
    })
    .encode(&mut truncated)
    .expect("encodes");
    truncated.truncate(8 + 20);
    victim.send_bytes(&truncated);
    let answer = victim.receive_for(4711);
    let response = expect_response(&answer);
    assert_eq!(response.code, ControlResponseCode::Error);
    assert_eq!(response.correlation_id, 4711);
    assert!(response.error_message.contains("malformed"), "{response:?}");

    // An unknown template of Aeron's schema (Replicate, 50).
    let mut unknown = vec![0u8; 8 + 16];
    unknown[0..2].copy_from_slice(&16u16.to_le_bytes());
    unknown[2..4].copy_from_slice(&50u16.to_le_bytes());
    unknown[4..6].copy_from_slice(&101u16.to_le_bytes());
    unknown[6..8].copy_from_slice(&14u16.to_le_bytes());
    unknown[8..16].copy_from_slice(&victim.session_id.to_le_bytes());
    unknown[16..24].copy_from_slice(&4712i64.to_le_bytes());
    victim.send_bytes(&unknown);
    let answer = victim.receive_for(4712);
    let response = expect_response(&answer);
    assert_eq!(response.correlation_id, 4712);
    assert!(
        response.error_message.contains("unsupported"),
        "{response:?}"
    );

    // Random bytes, short bytes, another schema, and a request naming someone else's session.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for length in [0usize, 1, 7, 8, 9, 40, 300, 2000] {
        let bytes: Vec<u8> = (0..length)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        if !bytes.is_empty() {
            victim.send_bytes(&bytes);
        }
    }
    victim.send(&Message::ArchiveIdRequest(proto::ArchiveIdRequest {
        control_session_id: bystander.session_id,
        correlation_id: 1,
    }));
    assert!(
        bystander
            .receive_within(Duration::from_millis(300))
            .is_none(),
        "a request from another client's image is not served for the session it names"
    );

    for raw in [&mut victim, &mut bystander] {
        ok(&raw.call(|s, c| {
            Message::ArchiveIdRequest(proto::ArchiveIdRequest {
                control_session_id: s,
                correlation_id: c,
            })
        }));
    }
    assert!(fixture.server.stats().malformed() >= 2);
    assert!(fixture.server.is_running());
    fixture.archive.health().expect("the archive is healthy");
}

#[test]
fn a_client_that_goes_away_loses_its_session_and_its_replays() {
    let fixture = fixture("dead", Authenticator::None);
    let mut raw = Raw::open(fixture.driver.dir(), 27);
    raw.connect();
    let (recording, _) = record_over_protocol(&fixture, &mut raw, 1003, 10);
    let client = Client::connect(fixture.driver.dir()).expect("client");
    let replay_subscription = client
        .add_subscription("aeron:ipc", 3002)
        .expect("replay subscription");
    let replay_id = ok(&raw.call(|s, c| {
        Message::ReplayRequest(proto::ReplayRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: recording,
            position: -1,
            length: -1,
            replay_stream_id: 3002,
            file_io_max_length: -1,
            replay_token: -1,
            replay_channel: "aeron:ipc".into(),
        })
    }));
    let status = fixture
        .archive
        .replay_status(ReplayId::new(replay_id))
        .expect("replay");
    assert!(
        !status.is_finished(),
        "a follow replay of an active recording runs"
    );
    drop(raw);
    wait_until("the dead client's session to close", TIMEOUT, || {
        fixture.server.stats().sessions_closed() == 1
    });
    wait_until("its replay to stop", TIMEOUT, || status.is_finished());
    drop(replay_subscription);

    // The server still takes new clients.
    let mut next = Raw::open(fixture.driver.dir(), 28);
    next.connect();
}

#[test]
fn sessions_past_the_limit_are_refused_with_a_reason() {
    let driver = driver("limit");
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = Arc::new(
        Archive::launch(ArchiveConfig::new(dir.path(), driver.dir())).expect("archive starts"),
    );
    let _server = ControlServer::start(
        archive,
        ControlConfig {
            channels: vec![ControlChannel::new(CONTROL, CONTROL_STREAM)],
            max_sessions: 2,
            ..ControlConfig::default()
        },
    )
    .expect("server");
    let mut clients: Vec<Raw> = (0..2).map(|i| Raw::open(driver.dir(), 30 + i)).collect();
    for client in &mut clients {
        client.connect();
    }
    let mut third = Raw::open(driver.dir(), 40);
    let (_, message) = error(&third.connect_with(b""));
    assert!(message.contains("too many control sessions"), "{message}");

    // A client of an older protocol major version is refused too.
    let mut old = Raw::open(driver.dir(), 41);
    old.send(&Message::AuthConnectRequest(proto::AuthConnectRequest {
        correlation_id: 1,
        response_stream_id: 41,
        version: proto::SemanticVersion::compose(0, 9, 0),
        response_channel: RESPONSE.into(),
        encoded_credentials: Vec::new(),
        client_info: String::new(),
    }));
    let (_, message) = error(&old.receive());
    assert!(message.contains("invalid client version"), "{message}");
}

/// The next `RecordingSignalEvent` for this session.
fn next_signal(raw: &mut Raw) -> proto::RecordingSignalEvent {
    loop {
        if let Message::RecordingSignalEvent(signal) = raw.receive() {
            return signal;
        }
    }
}

#[test]
fn signals_follow_recordings_and_truncate_and_purge_delete_over_the_protocol() {
    let fixture = fixture("signals", Authenticator::None);
    let mut raw = Raw::open(fixture.driver.dir(), 60);
    raw.connect();
    let (recording, subscription_id) = record_over_protocol(&fixture, &mut raw, 1301, 30);
    let start = next_signal(&mut raw);
    assert_eq!(start.signal, proto::RecordingSignal::Start);
    assert_eq!(
        (start.recording_id, start.subscription_id),
        (recording, subscription_id)
    );
    let info = fixture
        .archive
        .recording(RecordingId::new(recording))
        .expect("recording");
    assert_eq!(start.position, info.descriptor.start_position);

    // Extending an active recording is refused with ACTIVE_RECORDING.
    let (code, message) = error(&raw.call(|s, c| {
        Message::ExtendRecordingRequest2(proto::ExtendRecordingRequest2 {
            control_session_id: s,
            correlation_id: c,
            recording_id: recording,
            stream_id: 1301,
            source_location: SourceLocation::Local,
            auto_stop: false,
            channel: "aeron:ipc?alias=extend".into(),
        })
    }));
    assert_eq!(code, 2, "{message}");

    // Stop by identity: 1 (it was recording), then the STOP signal with the stop position.
    let found = ok(&raw.call(|s, c| {
        Message::StopRecordingByIdentityRequest(proto::StopRecordingByIdentityRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: recording,
        })
    }));
    assert_eq!(found, 1);
    let stop = next_signal(&mut raw);
    assert_eq!(stop.signal, proto::RecordingSignal::Stop);
    let stopped = fixture
        .archive
        .recording(RecordingId::new(recording))
        .expect("recording");
    assert_eq!(stop.position, stopped.descriptor.stop_position);

    // Truncate to the tenth message: OK, then DELETE; the stop position moved.
    let frame = (stopped.descriptor.stop_position - stopped.descriptor.start_position) / 30;
    let at = stopped.descriptor.start_position + 10 * frame;
    ok(&raw.call(|s, c| {
        Message::TruncateRecordingRequest(proto::TruncateRecordingRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: recording,
            position: at,
        })
    }));
    assert_eq!(next_signal(&mut raw).signal, proto::RecordingSignal::Delete);
    let stop_position = ok(&raw.call(|s, c| {
        Message::StopPositionRequest(proto::StopPositionRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: recording,
        })
    }));
    assert_eq!(stop_position, at);
    let (code, _) = error(&raw.call(|s, c| {
        Message::TruncateRecordingRequest(proto::TruncateRecordingRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: recording,
            position: at + 7,
        })
    }));
    assert_eq!(code, 16, "INVALID_POSITION");

    // Purge: OK, DELETE, and the recording is unknown from then on.
    ok(&raw.call(|s, c| {
        Message::PurgeRecordingRequest(proto::PurgeRecordingRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: recording,
        })
    }));
    assert_eq!(next_signal(&mut raw).signal, proto::RecordingSignal::Delete);
    let listed = raw.list(1, |s, c| {
        Message::ListRecordingRequest(proto::ListRecordingRequest {
            control_session_id: s,
            correlation_id: c,
            recording_id: recording,
        })
    });
    assert!(matches!(&listed[..], [Message::ControlResponse(r)]
        if r.code == ControlResponseCode::RecordingUnknown));

    // Auto-stop: the subscription goes when its image ends.
    let auto = ok(&raw.call(|s, c| {
        Message::StartRecordingRequest2(proto::StartRecordingRequest2 {
            control_session_id: s,
            correlation_id: c,
            stream_id: 1302,
            source_location: SourceLocation::Local,
            auto_stop: true,
            channel: "aeron:ipc".into(),
        })
    }));
    {
        let client = Client::connect(fixture.driver.dir()).expect("client");
        let publication = client
            .add_exclusive_publication("aeron:ipc", 1302)
            .expect("publication");
        assert_eq!(next_signal(&mut raw).signal, proto::RecordingSignal::Start);
        while publication.offer(&[1u8; 40]).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(next_signal(&mut raw).signal, proto::RecordingSignal::Stop);
    wait_until("the auto-stop subscription to go", TIMEOUT, || {
        fixture
            .archive
            .recording_subscriptions()
            .iter()
            .all(|s| s.subscription_id != auto)
    });
}

#[test]
fn listings_longer_than_a_sessions_queue_arrive_whole_in_batches() {
    // A session may have only 16 messages waiting; listings of 40 must still arrive whole.
    let fixture = fixture_with("batches", Authenticator::None, 16);
    let mut raw = Raw::open(fixture.driver.dir(), 70);
    raw.connect();
    let (recording, _) = record_over_protocol(&fixture, &mut raw, 1501, 5);
    for i in 0..40 {
        let response = raw.call_tern_response(|s, c| {
            TernMessage::SetCursorRequest(proto::SetCursorRequest {
                control_session_id: s,
                correlation_id: c,
                recording_id: recording,
                position: 0,
                name: format!("reader-{i:02}"),
            })
        });
        assert_eq!(response.code, ControlResponseCode::Ok, "{response:?}");
    }
    let listed = raw.call_tern(|s, c| {
        TernMessage::ListCursorsRequest(proto::ListCursorsRequest {
            control_session_id: s,
            correlation_id: c,
            name_prefix: "reader-".into(),
        })
    });
    assert_eq!(listed.len(), 41, "40 descriptors and the end marker");
    let names: Vec<String> = listed
        .iter()
        .filter_map(|message| match message {
            AnyMessage::Tern(TernMessage::CursorDescriptor(d)) => Some(d.name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        (0..40)
            .map(|i| format!("reader-{i:02}"))
            .collect::<Vec<_>>()
    );
    match listed.last() {
        Some(AnyMessage::Aeron(Message::ControlResponse(end))) => {
            assert_eq!(end.code, ControlResponseCode::RecordingUnknown);
            assert_eq!(end.relevant_id, 40);
        }
        other => panic!("expected the end marker, got {other:?}"),
    }
    // The session is still served.
    ok(&raw.call(|s, c| {
        Message::ArchiveIdRequest(proto::ArchiveIdRequest {
            control_session_id: s,
            correlation_id: c,
        })
    }));
    assert_eq!(fixture.server.stats().sessions_closed(), 0);
}

#[test]
fn a_recording_that_cannot_be_written_is_an_error_to_the_session_that_started_it() {
    let fixture = fixture("unwritable", Authenticator::None);
    // Recording 0's time index cannot be created: a directory holds its name.
    let dir = fixture.archive.config().dir.clone();
    std::fs::create_dir(dir.join("0.tix")).expect("block the time index file");
    let mut raw = Raw::open(fixture.driver.dir(), 61);
    raw.connect();
    let start = raw.next_correlation();
    raw.send(&Message::StartRecordingRequest2(
        proto::StartRecordingRequest2 {
            control_session_id: raw.session_id,
            correlation_id: start,
            stream_id: 1311,
            source_location: SourceLocation::Local,
            auto_stop: false,
            channel: "aeron:ipc".into(),
        },
    ));
    ok(&raw.receive_for(start));
    let client = Client::connect(fixture.driver.dir()).expect("client");
    let publication = client
        .add_exclusive_publication("aeron:ipc", 1311)
        .expect("publication");
    wait_until("the publication to connect", TIMEOUT, || {
        publication.is_connected()
    });
    // Aeron's way: an ERROR response carrying the start request's correlation id.
    let (code, message) = error(&raw.receive_for(start));
    assert_eq!(code, 0, "GENERIC: {message}");
    assert!(
        message.contains("recording 0") && message.contains("0.tix"),
        "the message names the recording and the file: {message}"
    );
    let failures = fixture.archive.recording_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].recording_id, Some(RecordingId::new(0)));
    assert_eq!(failures[0].stream_id, 1311);
    // The archive keeps serving: another stream records.
    std::fs::remove_dir(dir.join("0.tix")).expect("unblock");
    let (recording, _) = record_over_protocol(&fixture, &mut raw, 1312, 10);
    assert_eq!(recording, 1, "the failed recording kept its id");
}
