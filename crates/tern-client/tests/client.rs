//! The archive client against archives played by a thread of the test (a real media driver,
//! real Aeron streams, requests decoded and answered with tern-protocol the way Aeron's archive
//! answers).

mod support;

use std::time::{Duration, Instant};
use support::{
    aeron_like, correlation_of, driver, error, free_udp_port, ok, response, send, Answer,
    MockArchive, ARCHIVE_ID,
};
use tern_client::{
    ArchiveClient, ArchiveClientConfig, ArchiveErrorCode, ClientError, RecordingId,
    RecordingSignal, ReplayId, SourceLocation, REPLAY_FOLLOW,
};
use tern_protocol::{
    Challenge, ControlResponseCode, Message, RecordingDescriptor, RecordingSignalEvent,
    RecordingSubscriptionDescriptor, ARCHIVE_PROTOCOL_VERSION,
};

const CONTROL_CHANNEL: &str = "aeron:ipc";
const CONTROL_STREAM: i32 = 10;

fn local(dir: &str) -> ArchiveClientConfig {
    ArchiveClientConfig::local(dir).with_message_timeout(Duration::from_secs(5))
}

fn mock(
    dir: &str,
    script: impl FnMut(i64, &Message) -> Vec<Answer> + Send + 'static,
) -> MockArchive {
    MockArchive::start(dir, CONTROL_CHANNEL, CONTROL_STREAM, Box::new(script))
}

fn descriptor(session: i64, correlation_id: i64, recording_id: i64) -> Message {
    Message::RecordingDescriptor(RecordingDescriptor {
        control_session_id: session,
        correlation_id,
        recording_id,
        start_timestamp: 1_700_000_000_000 + recording_id,
        stop_timestamp: if recording_id % 2 == 0 {
            -1
        } else {
            1_700_000_001_000
        },
        start_position: 0,
        stop_position: if recording_id % 2 == 0 { -1 } else { 4096 },
        initial_term_id: 7,
        segment_file_length: 1 << 27,
        term_buffer_length: 1 << 16,
        mtu_length: 1408,
        session_id: 100 + recording_id as i32,
        stream_id: 1001,
        stripped_channel: "aeron:ipc".into(),
        original_channel: "aeron:ipc?term-length=64k".into(),
        source_identity: "aeron:ipc".into(),
    })
}

fn signal(
    session: i64,
    correlation_id: i64,
    recording_id: i64,
    signal: RecordingSignal,
) -> Message {
    Message::RecordingSignalEvent(RecordingSignalEvent {
        control_session_id: session,
        correlation_id,
        recording_id,
        subscription_id: 55,
        position: 0,
        signal,
    })
}

#[test]
fn connects_over_ipc_with_aeron_s_connect_request_and_closes_on_drop() {
    let driver = driver();
    let archive = mock(driver.dir(), aeron_like);
    let client =
        ArchiveClient::connect(local(driver.dir()).with_client_name("ipc-test")).expect("connects");
    assert_eq!(client.control_session_id(), 1000);
    assert_eq!(client.archive_id(), Some(ARCHIVE_ID));
    assert_eq!(client.archive_version(), Some(ARCHIVE_PROTOCOL_VERSION));

    let Message::AuthConnectRequest(connect) = archive.await_request("the connect", |m| {
        matches!(m, Message::AuthConnectRequest(_))
    }) else {
        unreachable!()
    };
    assert_eq!(connect.version, Some(ARCHIVE_PROTOCOL_VERSION));
    assert_eq!(connect.response_stream_id, 20);
    assert!(connect.encoded_credentials.is_empty());
    assert!(
        connect.client_info.contains("name=ipc-test"),
        "{}",
        connect.client_info
    );
    // Aeron's defaults and a session of the client's own on the response channel.
    assert!(
        connect.response_channel.starts_with("aeron:ipc?"),
        "{}",
        connect.response_channel
    );
    for param in ["term-length=64k", "mtu=1408", "sparse=true", "session-id="] {
        assert!(
            connect.response_channel.contains(param),
            "{param} in {}",
            connect.response_channel
        );
    }
    assert_eq!(client.response_channel(), connect.response_channel);
    // The keep-alive that ends Aeron's repeated connect response.
    archive.await_request("the first keep-alive", |m| {
        matches!(m, Message::KeepAliveRequest(k) if k.control_session_id == 1000 && k.correlation_id == -1)
    });

    drop(client);
    archive.await_request(
        "the close",
        |m| matches!(m, Message::CloseSessionRequest(c) if c.control_session_id == 1000),
    );
}

#[test]
fn connects_over_udp_with_the_response_port_resolved() {
    let driver = driver();
    let request_channel = format!("aeron:udp?endpoint=localhost:{}", free_udp_port());
    let archive = MockArchive::start(driver.dir(), &request_channel, 10, Box::new(aeron_like));
    let config = ArchiveClientConfig::new(driver.dir())
        .with_request(request_channel.clone(), 10)
        .with_message_timeout(Duration::from_secs(5));
    assert_eq!(
        config.control_response_channel,
        "aeron:udp?endpoint=localhost:0"
    );
    let mut client = ArchiveClient::connect(config).expect("connects over UDP");
    let Message::AuthConnectRequest(connect) = archive.await_request("the connect", |m| {
        matches!(m, Message::AuthConnectRequest(_))
    }) else {
        unreachable!()
    };
    let port: u16 = connect
        .response_channel
        .split("endpoint=")
        .nth(1)
        .and_then(|rest| rest.split('|').next())
        .and_then(|endpoint| endpoint.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {}", connect.response_channel));
    assert_ne!(
        port, 0,
        "the wildcard port was sent: {}",
        connect.response_channel
    );
    assert_eq!(client.archive_id(), Some(ARCHIVE_ID));
    assert_eq!(client.request_archive_id().expect("asks again"), ARCHIVE_ID);
}

#[test]
fn a_challenge_is_answered_with_the_handler_s_credentials() {
    let driver = driver();
    let archive = mock(driver.dir(), |session, message| match message {
        Message::AuthConnectRequest(connect) if connect.encoded_credentials == b"alice" => {
            send(vec![Message::Challenge(Challenge {
                control_session_id: session,
                correlation_id: connect.correlation_id,
                version: Some(ARCHIVE_PROTOCOL_VERSION),
                encoded_challenge: b"nonce-1".to_vec(),
            })])
        }
        Message::AuthConnectRequest(connect) => send(vec![error(
            session,
            connect.correlation_id,
            10,
            "who are you?",
        )]),
        Message::ChallengeResponse(answer) if answer.encoded_credentials == b"alice:nonce-1" => {
            send(vec![ok(session, answer.correlation_id, session)])
        }
        Message::ChallengeResponse(answer) => send(vec![error(
            session,
            answer.correlation_id,
            10,
            "wrong answer",
        )]),
        other => aeron_like(session, other),
    });
    let config = local(driver.dir())
        .with_credentials(b"alice".to_vec())
        .with_challenge_handler(|challenge| {
            let mut answer = b"alice:".to_vec();
            answer.extend_from_slice(challenge);
            answer
        });
    let client = ArchiveClient::connect(config).expect("connects after the challenge");
    assert_eq!(client.control_session_id(), 1000);
    let Message::ChallengeResponse(answer) = archive.await_request("the challenge response", |m| {
        matches!(m, Message::ChallengeResponse(_))
    }) else {
        unreachable!()
    };
    assert_eq!(answer.control_session_id, 1000);
    assert_eq!(answer.encoded_credentials, b"alice:nonce-1");
}

#[test]
fn rejected_credentials_give_the_archive_s_error_and_close_the_session() {
    let driver = driver();
    let archive = mock(driver.dir(), |session, message| match message {
        Message::AuthConnectRequest(connect) => send(vec![error(
            session,
            connect.correlation_id,
            10,
            "authentication rejected: bad password",
        )]),
        other => aeron_like(session, other),
    });
    let config = local(driver.dir()).with_credentials(b"mallory".to_vec());
    match ArchiveClient::connect(config) {
        Err(ClientError::Archive {
            code,
            message,
            relevant_id,
            ..
        }) => {
            assert_eq!(code, ArchiveErrorCode::AuthenticationRejected);
            assert_eq!(relevant_id, 10);
            assert_eq!(message, "authentication rejected: bad password");
        }
        other => panic!("expected the archive's rejection, got {other:?}"),
    }
    archive.await_request(
        "the close after a rejection",
        |m| matches!(m, Message::CloseSessionRequest(c) if c.control_session_id == 1000),
    );
}

#[test]
fn a_challenge_without_a_handler_fails_the_connect() {
    let driver = driver();
    let _archive = mock(driver.dir(), |session, message| match message {
        Message::AuthConnectRequest(connect) => send(vec![Message::Challenge(Challenge {
            control_session_id: session,
            correlation_id: connect.correlation_id,
            version: Some(ARCHIVE_PROTOCOL_VERSION),
            encoded_challenge: b"?".to_vec(),
        })]),
        other => aeron_like(session, other),
    });
    match ArchiveClient::connect(local(driver.dir())) {
        Err(ClientError::Protocol(message)) => {
            assert!(message.contains("challenge"), "{message}")
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn without_an_archive_the_connect_times_out_naming_the_request_channel() {
    let driver = driver();
    let timeout = Duration::from_millis(400);
    let started = Instant::now();
    match ArchiveClient::connect(local(driver.dir()).with_message_timeout(timeout)) {
        Err(ClientError::Timeout {
            waiting_for,
            timeout: reported,
        }) => {
            assert!(
                waiting_for.contains("control request channel aeron:ipc"),
                "{waiting_for}"
            );
            assert_eq!(reported, timeout);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[test]
fn an_archive_that_never_answers_times_out_the_connect() {
    let driver = driver();
    let _archive = mock(driver.dir(), |_, _| Vec::new());
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    match ArchiveClient::connect(local(driver.dir()).with_message_timeout(timeout)) {
        Err(ClientError::Timeout { waiting_for, .. }) => {
            assert!(waiting_for.contains("connect request"), "{waiting_for}")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < timeout + Duration::from_secs(3));
}

#[test]
fn operations_send_aeron_s_requests_and_return_typed_results() {
    let driver = driver();
    let archive = mock(driver.dir(), |s, message| {
        let c = correlation_of(message);
        match message {
            Message::StartRecordingRequest2(request) => {
                assert!(request.auto_stop);
                assert_eq!(
                    request.source_location,
                    tern_protocol::SourceLocation::Local
                );
                // The signal arrives before the response, as it may from Aeron's archive.
                send(vec![signal(s, c, 3, RecordingSignal::Start), ok(s, c, 55)])
            }
            Message::StopRecordingRequest(_) | Message::StopRecordingSubscriptionRequest(_) => {
                send(vec![ok(s, c, 0)])
            }
            Message::StopRecordingByIdentityRequest(request) => {
                send(vec![ok(s, c, i64::from(request.recording_id == 3))])
            }
            Message::RecordingPositionRequest(request) => send(vec![ok(
                s,
                c,
                if request.recording_id == 3 { 4096 } else { -1 },
            )]),
            Message::StartPositionRequest(_) => send(vec![ok(s, c, 1024)]),
            Message::StopPositionRequest(request) => send(vec![ok(
                s,
                c,
                if request.recording_id == 3 { -1 } else { 9000 },
            )]),
            Message::MaxRecordedPositionRequest(_) => send(vec![ok(s, c, 8192)]),
            Message::ReplayRequest(request) => {
                assert_eq!(request.file_io_max_length, -1);
                assert_eq!(request.replay_token, -1);
                send(vec![ok(s, c, (7 << 32) | 0x1234)])
            }
            Message::BoundedReplayRequest(request) => send(vec![ok(
                s,
                c,
                (8 << 32) | i64::from(request.limit_counter_id),
            )]),
            Message::StopReplayRequest(_) | Message::StopAllReplaysRequest(_) => {
                send(vec![ok(s, c, 0)])
            }
            Message::ExtendRecordingRequest2(_) => {
                send(vec![signal(s, c, 3, RecordingSignal::Extend), ok(s, c, 66)])
            }
            Message::TruncateRecordingRequest(_) => send(vec![ok(s, c, 0)]),
            Message::PurgeRecordingRequest(_) => send(vec![ok(s, c, 2)]),
            Message::FindLastMatchingRecordingRequest(request) => send(vec![ok(
                s,
                c,
                if request.session_id == 100 { 9 } else { -1 },
            )]),
            other => aeron_like(s, other),
        }
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");

    assert_eq!(
        client
            .start_recording("aeron:ipc", 1001, SourceLocation::Local, true)
            .expect("start"),
        55
    );
    let signals = client.poll_signals().expect("signals");
    assert_eq!(signals.len(), 1, "{signals:?}");
    assert_eq!(signals[0].signal, RecordingSignal::Start);
    assert_eq!(signals[0].recording_id, RecordingId::new(3));
    assert_eq!(signals[0].subscription_id, Some(55));
    assert_eq!(signals[0].correlation_id, client.last_correlation_id());

    client.stop_recording("aeron:ipc", 1001).expect("stop");
    client
        .stop_recording_subscription(55)
        .expect("stop subscription");
    assert!(client
        .stop_recording_by_identity(RecordingId::new(3))
        .expect("stop by identity"));
    assert!(!client
        .stop_recording_by_identity(RecordingId::new(4))
        .expect("stop by identity"));
    assert_eq!(
        client
            .recording_position(RecordingId::new(3))
            .expect("position"),
        Some(4096)
    );
    assert_eq!(
        client
            .recording_position(RecordingId::new(4))
            .expect("position"),
        None
    );
    assert_eq!(
        client
            .start_position(RecordingId::new(3))
            .expect("start position"),
        1024
    );
    assert_eq!(
        client
            .stop_position(RecordingId::new(3))
            .expect("stop position"),
        None
    );
    assert_eq!(
        client
            .stop_position(RecordingId::new(5))
            .expect("stop position"),
        Some(9000)
    );
    assert_eq!(
        client
            .max_recorded_position(RecordingId::new(3))
            .expect("max"),
        8192
    );
    let replay_session_id = client
        .replay(RecordingId::new(3), 0, REPLAY_FOLLOW, "aeron:ipc", 2002)
        .expect("replay");
    assert_eq!(replay_session_id, ReplayId::new((7 << 32) | 0x1234));
    assert_eq!(replay_session_id.image_session_id(), 0x1234);
    assert_eq!(
        client
            .bounded_replay(RecordingId::new(3), 0, 4096, 42, "aeron:ipc", 2002)
            .expect("bounded replay"),
        ReplayId::new((8 << 32) | 42)
    );
    client.stop_replay(replay_session_id).expect("stop replay");
    client.stop_all_replays(None).expect("stop all replays");
    client
        .stop_all_replays(Some(RecordingId::new(3)))
        .expect("stop all replays of 3");
    assert_eq!(
        client
            .extend_recording(
                RecordingId::new(3),
                "aeron:ipc",
                1001,
                SourceLocation::Remote,
                false
            )
            .expect("extend"),
        66
    );
    assert_eq!(
        client
            .await_signal(|s| s.signal == RecordingSignal::Extend)
            .expect("extend signal")
            .recording_id,
        RecordingId::new(3)
    );
    assert_eq!(
        client
            .truncate_recording(RecordingId::new(3), 0)
            .expect("truncate"),
        0
    );
    assert_eq!(
        client.purge_recording(RecordingId::new(3)).expect("purge"),
        2
    );
    assert_eq!(
        client
            .find_last_matching_recording(RecordingId::new(0), "ipc", 1001, 100)
            .expect("find"),
        Some(RecordingId::new(9))
    );
    assert_eq!(
        client
            .find_last_matching_recording(RecordingId::new(0), "ipc", 1001, 101)
            .expect("find"),
        None
    );
    client.keep_alive().expect("keep-alive");

    // What went over the wire is what Aeron's client sends.
    let requests: Vec<Message> = archive.requests().into_iter().map(|(_, m)| m).collect();
    let find = |name: &str| {
        requests
            .iter()
            .filter(|m| m.name() == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    let Message::ReplayRequest(replay) = &find("ReplayRequest")[0] else {
        unreachable!()
    };
    assert_eq!(
        (replay.recording_id, replay.position, replay.length),
        (3, 0, i64::MAX)
    );
    assert_eq!(
        (replay.replay_channel.as_str(), replay.replay_stream_id),
        ("aeron:ipc", 2002)
    );
    let all: Vec<i64> = find("StopAllReplaysRequest")
        .iter()
        .map(|m| match m {
            Message::StopAllReplaysRequest(r) => r.recording_id,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(all, vec![-1, 3]);
    let Message::ExtendRecordingRequest2(extend) = &find("ExtendRecordingRequest2")[0] else {
        unreachable!()
    };
    assert_eq!(
        extend.source_location,
        tern_protocol::SourceLocation::Remote
    );
    assert!(!extend.auto_stop);
    for message in &requests {
        if let Some(session) = support::control_session_of(message) {
            assert_eq!(session, 1000, "{message:?}");
        }
    }
    archive.await_request(
        "the explicit keep-alive",
        |m| matches!(m, Message::KeepAliveRequest(k) if k.correlation_id != -1),
    );
}

#[test]
fn listings_collect_descriptors_until_the_count_or_the_end_marker() {
    let driver = driver();
    let _archive = mock(driver.dir(), |s, message| {
        let c = correlation_of(message);
        match message {
            Message::ListRecordingsRequest(request) => {
                // A late descriptor of some earlier listing first: not this one's.
                let mut answers = vec![descriptor(s, c - 1, 99)];
                let available = 3;
                let sent = i64::from(request.record_count).min(available);
                for id in request.from_recording_id..request.from_recording_id + sent {
                    answers.push(descriptor(s, c, id));
                    if id == request.from_recording_id {
                        answers.push(signal(s, c - 5, id, RecordingSignal::Stop));
                    }
                }
                if i64::from(request.record_count) > available {
                    answers.push(response(
                        s,
                        c,
                        request.from_recording_id + available,
                        ControlResponseCode::RecordingUnknown,
                    ));
                }
                send(answers)
            }
            Message::ListRecordingsForUriRequest(request) => {
                assert_eq!((request.channel.as_str(), request.stream_id), ("ipc", 1001));
                send(vec![
                    descriptor(s, c, 4),
                    response(s, c, 5, ControlResponseCode::RecordingUnknown),
                ])
            }
            Message::ListRecordingRequest(request) if request.recording_id == 1 => {
                send(vec![descriptor(s, c, 1)])
            }
            Message::ListRecordingRequest(request) => send(vec![response(
                s,
                c,
                request.recording_id,
                ControlResponseCode::RecordingUnknown,
            )]),
            Message::ListRecordingSubscriptionsRequest(request) => {
                assert!(request.apply_stream_id);
                let subscription = |id| {
                    Message::RecordingSubscriptionDescriptor(RecordingSubscriptionDescriptor {
                        control_session_id: s,
                        correlation_id: c,
                        subscription_id: id,
                        stream_id: 1001,
                        stripped_channel: "aeron:ipc".into(),
                    })
                };
                send(vec![
                    subscription(70),
                    subscription(71),
                    response(s, c, 0, ControlResponseCode::SubscriptionUnknown),
                ])
            }
            other => aeron_like(s, other),
        }
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");

    let listed = client
        .list_recordings(RecordingId::new(10), 100)
        .expect("list");
    let ids: Vec<i64> = listed.iter().map(|d| d.recording_id.get()).collect();
    assert_eq!(ids, vec![10, 11, 12], "ended by RECORDING_UNKNOWN");
    assert!(listed[0].is_active(), "active");
    assert_eq!(listed[0].stop_position, tern_client::NULL_POSITION);
    assert_eq!(listed[0].stop_timestamp_ns, tern_client::NULL_POSITION);
    assert_eq!(listed[1].stop_position, 4096);
    // The protocol's milliseconds, as nanoseconds.
    assert_eq!(listed[1].stop_timestamp_ns, 1_700_000_001_000 * 1_000_000);
    assert_eq!(listed[1].start_timestamp_ns, 1_700_000_000_011 * 1_000_000);
    assert_eq!(listed[1].term_length, 1 << 16);
    assert_eq!(listed[1].segment_length, 1 << 27);
    assert_eq!(listed[0].session_id, 110);
    assert_eq!(listed[0].original_channel, "aeron:ipc?term-length=64k");

    let two = client
        .list_recordings(RecordingId::new(0), 2)
        .expect("list two");
    assert_eq!(
        two.iter().map(|d| d.recording_id.get()).collect::<Vec<_>>(),
        vec![0, 1],
        "ended by count"
    );
    assert!(client
        .list_recordings(RecordingId::new(0), 0)
        .expect("none asked")
        .is_empty());
    // The signal that came in the middle of a listing was kept.
    let signals = client.poll_signals().expect("signals");
    assert_eq!(
        signals
            .iter()
            .filter(|s| s.signal == RecordingSignal::Stop)
            .count(),
        2
    );

    let for_uri = client
        .list_recordings_for_uri(RecordingId::new(0), 10, "ipc", 1001)
        .expect("for uri");
    assert_eq!(
        for_uri
            .iter()
            .map(|d| d.recording_id.get())
            .collect::<Vec<_>>(),
        vec![4]
    );
    assert_eq!(
        client
            .list_recording(RecordingId::new(1))
            .expect("one")
            .map(|d| d.recording_id),
        Some(RecordingId::new(1))
    );
    assert_eq!(
        client.list_recording(RecordingId::new(2)).expect("unknown"),
        None
    );

    let subscriptions = client
        .list_recording_subscriptions(0, 5, "ipc", 1001, true)
        .expect("subscriptions");
    assert_eq!(
        subscriptions
            .iter()
            .map(|s| s.subscription_id)
            .collect::<Vec<_>>(),
        vec![70, 71]
    );
    assert_eq!(subscriptions[0].stripped_channel, "aeron:ipc");
}

#[test]
fn archive_errors_carry_the_message_and_stray_errors_are_kept() {
    let driver = driver();
    let _archive = mock(driver.dir(), |s, message| {
        let c = correlation_of(message);
        match message {
            Message::StartRecordingRequest2(request) => send(vec![error(
                s,
                c,
                3,
                &format!(
                    "recording exists for channel={} streamId={}",
                    request.channel, request.stream_id
                ),
            )]),
            Message::RecordingPositionRequest(_) => send(vec![
                // An error for a request nobody waits for, then the answer.
                error(s, 424_242, 0, "something went wrong elsewhere"),
                ok(s, c, 77),
            ]),
            Message::ListRecordingsRequest(_) => {
                send(vec![error(s, c, 1, "active listing already in progress")])
            }
            other => aeron_like(s, other),
        }
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");
    match client.start_recording("aeron:ipc", 1001, SourceLocation::Local, false) {
        Err(ClientError::Archive {
            code,
            message,
            relevant_id,
            correlation_id,
        }) => {
            assert_eq!(code, ArchiveErrorCode::ActiveSubscription);
            assert_eq!(relevant_id, 3);
            assert_eq!(
                message,
                "recording exists for channel=aeron:ipc streamId=1001"
            );
            assert_eq!(correlation_id, client.last_correlation_id());
        }
        other => panic!("expected the archive's error, got {other:?}"),
    }
    assert_eq!(
        client
            .recording_position(RecordingId::new(1))
            .expect("position"),
        Some(77)
    );
    let stray = client.take_errors();
    assert_eq!(stray.len(), 1, "{stray:?}");
    assert_eq!(stray[0].correlation_id, 424_242);
    assert_eq!(stray[0].message, "something went wrong elsewhere");
    assert!(client.take_errors().is_empty());
    assert_eq!(
        client
            .list_recordings(RecordingId::new(0), 10)
            .map_err(|e| e.archive_code())
            .err(),
        Some(Some(ArchiveErrorCode::ActiveListing))
    );
    // The client is still usable after errors.
    assert_eq!(
        client
            .recording_position(RecordingId::new(1))
            .expect("position"),
        Some(77)
    );
}

#[test]
fn a_request_without_an_answer_times_out_and_its_late_answer_is_not_taken_for_another() {
    let driver = driver();
    let mut first: Option<i64> = None;
    let _archive = mock(driver.dir(), move |s, message| {
        let c = correlation_of(message);
        match message {
            Message::RecordingPositionRequest(_) => match first {
                None => {
                    first = Some(c);
                    Vec::new()
                }
                // The late answer to the first request comes just before the second's.
                Some(late) => send(vec![ok(s, late, 111), ok(s, c, 222)]),
            },
            other => aeron_like(s, other),
        }
    });
    let timeout = Duration::from_millis(400);
    let mut client = ArchiveClient::connect(local(driver.dir()).with_message_timeout(timeout))
        .expect("connects");
    let started = Instant::now();
    match client.recording_position(RecordingId::new(1)) {
        Err(ClientError::Timeout { waiting_for, .. }) => {
            assert!(
                waiting_for.contains("RecordingPositionRequest"),
                "{waiting_for}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= timeout);
    assert_eq!(
        client
            .recording_position(RecordingId::new(1))
            .expect("second"),
        Some(222)
    );
}

#[test]
fn answers_for_another_control_session_are_ignored() {
    let driver = driver();
    let _archive = mock(driver.dir(), |s, message| {
        let c = correlation_of(message);
        match message {
            // A response with this correlation id but another session's id comes first.
            Message::RecordingPositionRequest(_) => send(vec![
                ok(s + 1, c, 1),
                error(s + 1, c, 5, "not yours"),
                signal(s + 1, c, 1, RecordingSignal::Delete),
                ok(s, c, 2),
            ]),
            other => aeron_like(s, other),
        }
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");
    assert_eq!(
        client
            .recording_position(RecordingId::new(1))
            .expect("position"),
        Some(2)
    );
    assert!(client.take_errors().is_empty());
    assert!(client.poll_signals().expect("signals").is_empty());
}

#[test]
fn two_clients_share_the_ipc_response_stream_without_mixing_answers() {
    let driver = driver();
    let _archive = mock(driver.dir(), |s, message| match message {
        Message::RecordingPositionRequest(request) => {
            send(vec![ok(s, request.correlation_id, s * 10)])
        }
        other => aeron_like(s, other),
    });
    let mut first = ArchiveClient::connect(local(driver.dir())).expect("first connects");
    let mut second = ArchiveClient::connect(local(driver.dir())).expect("second connects");
    assert_ne!(first.control_session_id(), second.control_session_id());
    assert_ne!(
        first.response_channel(),
        second.response_channel(),
        "own session ids"
    );
    for _ in 0..5 {
        assert_eq!(
            first
                .recording_position(RecordingId::new(0))
                .expect("first"),
            Some(first.control_session_id() * 10)
        );
        assert_eq!(
            second
                .recording_position(RecordingId::new(0))
                .expect("second"),
            Some(second.control_session_id() * 10)
        );
    }
}

#[test]
fn pings_and_unknown_templates_are_skipped_and_a_malformed_answer_is_a_protocol_error() {
    let driver = driver();
    let _archive = mock(driver.dir(), |s, message| {
        let c = correlation_of(message);
        match message {
            Message::RecordingPositionRequest(request) if request.recording_id == 1 => {
                // Aeron 1.54's Ping (template 106): header, then controlSessionId.
                let mut ping = vec![8, 0, 106, 0, 101, 0, 14, 0];
                ping.extend_from_slice(&s.to_le_bytes());
                vec![Answer::Raw(ping), ok(s, c, 5).into()]
            }
            Message::RecordingPositionRequest(_) => {
                let mut bytes = Vec::new();
                ok(s, c, 6).encode(&mut bytes).expect("encodes");
                bytes.truncate(20);
                vec![Answer::Raw(bytes)]
            }
            other => aeron_like(s, other),
        }
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");
    assert_eq!(
        client
            .recording_position(RecordingId::new(1))
            .expect("after a ping"),
        Some(5)
    );
    match client.recording_position(RecordingId::new(2)) {
        Err(ClientError::Protocol(message)) => assert!(message.contains("malformed"), "{message}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn waiting_calls_keep_the_session_alive() {
    let driver = driver();
    let archive = mock(driver.dir(), |s, message| match message {
        Message::RecordingPositionRequest(request) => vec![
            Answer::Sleep(Duration::from_millis(600)),
            ok(s, request.correlation_id, 1).into(),
        ],
        other => aeron_like(s, other),
    });
    let mut config = local(driver.dir());
    config.keep_alive_interval = Duration::from_millis(100);
    let mut client = ArchiveClient::connect(config).expect("connects");
    assert_eq!(
        client
            .recording_position(RecordingId::new(1))
            .expect("slow answer"),
        Some(1)
    );
    let keep_alives = archive
        .requests()
        .iter()
        .filter(|(_, m)| matches!(m, Message::KeepAliveRequest(k) if k.correlation_id != -1))
        .count();
    assert!(
        keep_alives >= 2,
        "{keep_alives} keep-alives while waiting 600 ms"
    );
}

#[test]
fn a_vanished_archive_gives_not_connected() {
    let driver = driver();
    let archive = mock(driver.dir(), aeron_like);
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");
    drop(archive);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut idle = tern_transport::BackoffIdle::new();
    loop {
        match client.poll() {
            Err(ClientError::NotConnected(reason)) => {
                assert!(reason.contains("response channel"), "{reason}");
                break;
            }
            Err(other) => panic!("expected not connected, got {other:?}"),
            Ok(_) => {
                assert!(Instant::now() < deadline, "the client never noticed");
                tern_transport::Idle::idle(&mut idle, 0);
            }
        }
    }
    assert!(matches!(
        client.recording_position(RecordingId::new(1)),
        Err(ClientError::NotConnected(_))
    ));
}
