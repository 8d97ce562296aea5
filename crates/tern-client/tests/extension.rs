//! tern's extension requests (schema 1101) against a scripted archive on a thread of the test:
//! the requests are decoded (byte-exact) with tern-protocol and answered the way tern's archive
//! (`crates/tern-archive/src/control/conductor.rs`, `serve_tern`) answers them.

mod support;

use std::time::Duration;
use support::{aeron_like, driver, error, ok, response, Answer, MockArchive};
use tern_client::{
    ArchiveClient, ArchiveClientConfig, ArchiveErrorCode, ClientError, Cursor, RecordingGroup,
    RecordingId, RecordingSignal, ReplayId, ReplayLength, ReplayStart, TernReplay,
};
use tern_protocol::{
    AnyMessage, ControlResponseCode, CursorDescriptor, Message, RecordingGroupDescriptor,
    RecordingSignalEvent, ReplayAction, TernMessage, TernReplayRequest,
};

const CONTROL_CHANNEL: &str = "aeron:ipc";
const CONTROL_STREAM: i32 = 10;
/// The control session id the mock gives the first client.
const SESSION: i64 = 1000;

fn local(dir: &str) -> ArchiveClientConfig {
    ArchiveClientConfig::local(dir).with_message_timeout(Duration::from_secs(5))
}

/// A mock archive: `script` answers tern's requests, Aeron's are answered as Aeron does.
fn mock(
    dir: &str,
    mut script: impl FnMut(i64, &TernMessage) -> Vec<Answer> + Send + 'static,
) -> MockArchive {
    MockArchive::start_any(
        dir,
        CONTROL_CHANNEL,
        CONTROL_STREAM,
        Box::new(move |session, message| match message {
            AnyMessage::Aeron(message) => aeron_like(session, message),
            AnyMessage::Tern(message) => script(session, message),
        }),
    )
}

/// The correlation id of a tern request (block offset 8, after the control session id).
fn correlation(message: &TernMessage) -> i64 {
    let mut buffer = Vec::new();
    message.encode(&mut buffer).expect("encodes");
    i64::from_le_bytes(buffer[16..24].try_into().expect("8 bytes"))
}

fn cursor_descriptor(
    session: i64,
    correlation_id: i64,
    name: &str,
    recording_id: i64,
    position: i64,
) -> Answer {
    TernMessage::CursorDescriptor(CursorDescriptor {
        control_session_id: session,
        correlation_id,
        recording_id,
        position,
        updated_timestamp: 1_764_000_000_000_000_000 + position,
        name: name.into(),
    })
    .into()
}

fn group_descriptor(session: i64, correlation_id: i64, stream_id: i32, active: bool) -> Answer {
    TernMessage::RecordingGroupDescriptor(RecordingGroupDescriptor {
        control_session_id: session,
        correlation_id,
        first_recording_id: i64::from(stream_id),
        last_recording_id: i64::from(stream_id) + 4,
        total_bytes: 1 << 20,
        first_start_timestamp: 1_764_000_000_000,
        last_stop_timestamp: if active { -1 } else { 1_764_000_100_000 },
        stream_id,
        recording_count: 3,
        active_count: i32::from(active),
        channel: format!("aeron:udp?endpoint=localhost:{stream_id}"),
    })
    .into()
}

fn signal(session: i64, correlation_id: i64) -> Answer {
    Message::RecordingSignalEvent(RecordingSignalEvent {
        control_session_id: session,
        correlation_id,
        recording_id: 3,
        subscription_id: 55,
        position: 0,
        signal: RecordingSignal::Stop,
    })
    .into()
}

/// The end of a tern listing: RECORDING_UNKNOWN with the number of descriptors sent.
fn end_marker(session: i64, correlation_id: i64, count: i64) -> Answer {
    response(
        session,
        correlation_id,
        count,
        ControlResponseCode::RecordingUnknown,
    )
    .into()
}

fn expect_archive_error<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    expected_code: ArchiveErrorCode,
    expected_message: &str,
) {
    match result {
        Err(ClientError::Archive { code, message, .. }) => {
            assert_eq!(code, expected_code, "{message}");
            assert_eq!(message, expected_message);
        }
        other => panic!("expected the archive's error {expected_message:?}, got {other:?}"),
    }
}

#[test]
fn tern_replay_sends_every_option_and_returns_the_replay_session_id() {
    let driver = driver();
    let archive = mock(driver.dir(), |s, message| match message {
        TernMessage::TernReplayRequest(request) if !request.key_filter.starts_with("bad") => {
            vec![ok(s, request.correlation_id, (9 << 32) | request.recording_id).into()]
        }
        TernMessage::TernReplayRequest(request) => vec![error(
            s,
            request.correlation_id,
            0,
            "key filters are not supported by this archive",
        )
        .into()],
        _ => Vec::new(),
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");

    let full = TernReplay::new(
        RecordingId::new(3),
        "aeron:udp?endpoint=localhost:40123",
        2002,
    )
    .with_start(ReplayStart::Time(1_764_000_000_123_456_789))
    .with_length(ReplayLength::ToCurrentEnd)
    .with_speed(2.5)
    .with_time_source("cluster-egress:ms")
    .with_key_filter("cluster-egress:42");
    assert_eq!(
        client.tern_replay(&full).expect("replay"),
        ReplayId::new((9 << 32) | 3)
    );
    let sent_full = client.last_correlation_id();
    let plain = TernReplay::new(RecordingId::new(4), "aeron:ipc", 7);
    assert_eq!(
        client.tern_replay(&plain).expect("plain"),
        ReplayId::new((9 << 32) | 4)
    );
    let sent_plain = client.last_correlation_id();
    let from_cursor = TernReplay::new(RecordingId::new(5), "aeron:ipc", 7)
        .with_start(ReplayStart::Cursor("orders/eu".into()))
        .with_length(ReplayLength::Bytes(65_536))
        .with_speed(0.01)
        .with_key_filter("session:5");
    client.tern_replay(&from_cursor).expect("from a cursor");
    let sent_cursor = client.last_correlation_id();
    let from_position = TernReplay::new(RecordingId::new(6), "aeron:ipc", 7)
        .with_start(ReplayStart::Position(4096))
        .with_speed(1000.0)
        .with_key_filter("field:16:i64:99");
    client.tern_replay(&from_position).expect("from a position");
    let sent_position = client.last_correlation_id();

    expect_archive_error(
        client.tern_replay(&plain.clone().with_key_filter("bad:1")),
        ArchiveErrorCode::Generic,
        "key filters are not supported by this archive",
    );

    let sent: Vec<TernReplayRequest> = archive
        .tern_requests()
        .into_iter()
        .filter_map(|(_, message)| match message {
            TernMessage::TernReplayRequest(request) => Some(request),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 5, "{sent:?}");
    let expected = |correlation_id, recording_id, channel: &str, stream| TernReplayRequest {
        control_session_id: SESSION,
        correlation_id,
        recording_id,
        position: -1,
        length: -1,
        from_timestamp: i64::MIN,
        speed_millis: 0,
        replay_stream_id: stream,
        replay_channel: channel.into(),
        time_source: String::new(),
        key_filter: String::new(),
        cursor: String::new(),
    };
    assert_eq!(
        sent[0],
        TernReplayRequest {
            length: -2,
            from_timestamp: 1_764_000_000_123_456_789,
            speed_millis: 2500,
            time_source: "cluster-egress:ms".into(),
            key_filter: "cluster-egress:42".into(),
            ..expected(sent_full, 3, "aeron:udp?endpoint=localhost:40123", 2002)
        }
    );
    assert_eq!(sent[1], expected(sent_plain, 4, "aeron:ipc", 7));
    assert_eq!(
        sent[2],
        TernReplayRequest {
            length: 65_536,
            speed_millis: 10,
            key_filter: "session:5".into(),
            cursor: "orders/eu".into(),
            ..expected(sent_cursor, 5, "aeron:ipc", 7)
        }
    );
    assert_eq!(
        sent[3],
        TernReplayRequest {
            position: 4096,
            speed_millis: 1_000_000,
            key_filter: "field:16:i64:99".into(),
            ..expected(sent_position, 6, "aeron:ipc", 7)
        }
    );
}

#[test]
fn tern_replay_refuses_values_it_cannot_send_without_sending() {
    let driver = driver();
    let archive = mock(driver.dir(), |s, message| {
        vec![ok(s, correlation(message), 1).into()]
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");
    let base = TernReplay::new(RecordingId::new(3), "aeron:ipc", 7);
    let bad = [
        base.clone().with_speed(0.009),
        base.clone().with_speed(1000.001),
        base.clone().with_speed(f64::NAN),
        base.clone().with_start(ReplayStart::Cursor(String::new())),
        base.clone().with_start(ReplayStart::Cursor("é".into())),
        base.clone().with_start(ReplayStart::Time(i64::MIN)),
        base.clone().with_length(ReplayLength::Bytes(-3)),
    ];
    for request in &bad {
        match client.tern_replay(request) {
            Err(ClientError::InvalidArgument(_)) => {}
            other => panic!("{request:?}: expected an invalid argument, got {other:?}"),
        }
    }
    match client.set_cursor("", RecordingId::new(3), 0) {
        Err(ClientError::InvalidArgument(message)) => {
            assert!(message.contains("cursor name"), "{message}")
        }
        other => panic!("expected an invalid argument, got {other:?}"),
    }
    // Something valid goes through, and was the only tern request sent.
    assert_eq!(client.tern_replay(&base).expect("valid"), ReplayId::new(1));
    let sent = archive.tern_requests();
    assert_eq!(sent.len(), 1, "{sent:?}");
}

#[test]
fn pause_resume_and_seek_send_replay_control_requests() {
    let driver = driver();
    let archive = mock(driver.dir(), |s, message| match message {
        TernMessage::ReplayControlRequest(request) if request.replay_session_id != 77 => {
            vec![error(
                s,
                request.correlation_id,
                6,
                &format!("unknown replay session: {}", request.replay_session_id),
            )
            .into()]
        }
        TernMessage::ReplayControlRequest(request) => {
            let relevant = match request.action {
                ReplayAction::Pause | ReplayAction::Resume => 0,
                ReplayAction::SeekPosition => 0x5e01,
                ReplayAction::SeekTime => 0x5e02,
            };
            vec![ok(s, request.correlation_id, relevant).into()]
        }
        _ => Vec::new(),
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");
    client.pause_replay(ReplayId::new(77)).expect("pause");
    client.resume_replay(ReplayId::new(77)).expect("resume");
    assert_eq!(
        client.seek_replay(ReplayId::new(77), 8192).expect("seek"),
        0x5e01
    );
    assert_eq!(
        client
            .seek_replay_to_time(ReplayId::new(77), 1_764_000_000_000_000_000, "field:16:us")
            .expect("seek to a time"),
        0x5e02
    );
    expect_archive_error(
        client.pause_replay(ReplayId::new(78)),
        ArchiveErrorCode::UnknownReplay,
        "unknown replay session: 78",
    );
    expect_archive_error(
        client.seek_replay(ReplayId::new(79), 0),
        ArchiveErrorCode::UnknownReplay,
        "unknown replay session: 79",
    );

    let sent: Vec<(i64, i64, ReplayAction, String)> = archive
        .tern_requests()
        .into_iter()
        .filter_map(|(session, message)| match message {
            TernMessage::ReplayControlRequest(request) => {
                assert_eq!(session, SESSION);
                assert_eq!(request.control_session_id, SESSION);
                Some((
                    request.replay_session_id,
                    request.value,
                    request.action,
                    request.time_source,
                ))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            (77, 0, ReplayAction::Pause, String::new()),
            (77, 0, ReplayAction::Resume, String::new()),
            (77, 8192, ReplayAction::SeekPosition, String::new()),
            (
                77,
                1_764_000_000_000_000_000,
                ReplayAction::SeekTime,
                "field:16:us".into()
            ),
            (78, 0, ReplayAction::Pause, String::new()),
            (79, 0, ReplayAction::SeekPosition, String::new()),
        ]
    );
}

#[test]
fn cursors_are_set_read_deleted_and_listed() {
    let driver = driver();
    let archive = mock(driver.dir(), |s, message| {
        let c = correlation(message);
        match message {
            TernMessage::SetCursorRequest(request) if request.recording_id == 3 => {
                vec![ok(s, c, 0).into()]
            }
            TernMessage::SetCursorRequest(request) => vec![error(
                s,
                c,
                5,
                &format!("unknown recording id: {}", request.recording_id),
            )
            .into()],
            TernMessage::GetCursorRequest(request) if request.name == "orders" => {
                vec![cursor_descriptor(s, c, "orders", 3, 4096)]
            }
            TernMessage::GetCursorRequest(request) => {
                vec![error(s, c, 0, &format!("unknown cursor: {}", request.name)).into()]
            }
            TernMessage::DeleteCursorRequest(request) => {
                vec![ok(s, c, i64::from(request.name == "orders")).into()]
            }
            TernMessage::ListCursorsRequest(request) if request.name_prefix == "o" => vec![
                cursor_descriptor(s, c, "orders", 3, 4096),
                cursor_descriptor(s, c, "orders/eu", 4, 128),
                end_marker(s, c, 2),
            ],
            TernMessage::ListCursorsRequest(_) => vec![end_marker(s, c, 0)],
            _ => Vec::new(),
        }
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");

    client
        .set_cursor("orders", RecordingId::new(3), 4096)
        .expect("set");
    expect_archive_error(
        client.set_cursor("orders", RecordingId::new(9), 0),
        ArchiveErrorCode::UnknownRecording,
        "unknown recording id: 9",
    );
    assert_eq!(
        client.cursor("orders").expect("read"),
        Cursor {
            name: "orders".into(),
            recording_id: RecordingId::new(3),
            position: 4096,
            updated_ns: 1_764_000_000_000_004_096,
        }
    );
    expect_archive_error(
        client.cursor("missing"),
        ArchiveErrorCode::Generic,
        "unknown cursor: missing",
    );
    assert!(client.delete_cursor("orders").expect("delete"));
    assert!(!client.delete_cursor("missing").expect("delete again"));
    let listed = client.cursors("o").expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|c| (c.name.as_str(), c.recording_id.get(), c.position))
            .collect::<Vec<_>>(),
        vec![("orders", 3, 4096), ("orders/eu", 4, 128)]
    );
    assert!(client.cursors("zzz").expect("none").is_empty());
    // The client is still in step: nothing left over answers a later request.
    assert_eq!(client.cursor("orders").expect("read again").position, 4096);

    let sent: Vec<TernMessage> = archive
        .tern_requests()
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    let TernMessage::SetCursorRequest(set) = &sent[0] else {
        panic!("{:?}", sent[0])
    };
    assert_eq!(
        (set.name.as_str(), set.recording_id, set.position),
        ("orders", 3, 4096)
    );
    let prefixes: Vec<&str> = sent
        .iter()
        .filter_map(|m| match m {
            TernMessage::ListCursorsRequest(request) => Some(request.name_prefix.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(prefixes, vec!["o", "zzz"]);
}

#[test]
fn a_cursor_descriptor_reaches_the_call_that_asked_for_it_among_other_messages() {
    let driver = driver();
    let _archive = mock(driver.dir(), |s, message| {
        let c = correlation(message);
        match message {
            TernMessage::GetCursorRequest(request) => vec![
                // A signal of this session, to be queued.
                signal(s, c),
                // A late descriptor of an earlier request: not this call's answer.
                cursor_descriptor(s, c - 1, "stale", 1, 32),
                // This correlation id, but another session's (a shared response stream).
                cursor_descriptor(s + 1, c, "other session", 2, 64),
                // An ERROR nobody waits for.
                error(s, 424_242, 0, "something went wrong elsewhere").into(),
                // A group descriptor and an OK of other correlation ids.
                group_descriptor(s, c + 1, 1001, false),
                ok(s, c - 2, 5).into(),
                // The answer.
                cursor_descriptor(s, c, &request.name, 3, 96),
            ],
            TernMessage::ListCursorsRequest(_) => vec![
                cursor_descriptor(s, c, "a", 3, 0),
                signal(s, c),
                cursor_descriptor(s, c - 1, "stale", 1, 32),
                cursor_descriptor(s + 1, c, "other session", 2, 64),
                end_marker(s, c + 1, 7),
                cursor_descriptor(s, c, "b", 3, 32),
                end_marker(s, c, 2),
            ],
            _ => Vec::new(),
        }
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");
    let cursor = client.cursor("mine").expect("read");
    assert_eq!(
        (
            cursor.name.as_str(),
            cursor.recording_id.get(),
            cursor.position
        ),
        ("mine", 3, 96)
    );
    let listed = client.cursors("").expect("list");
    assert_eq!(
        listed.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    let signals = client.poll_signals().expect("signals");
    assert_eq!(signals.len(), 2, "{signals:?}");
    assert!(signals.iter().all(|s| s.signal == RecordingSignal::Stop));
    let stray = client.take_errors();
    assert_eq!(stray.len(), 1, "{stray:?}");
    assert_eq!(stray[0].message, "something went wrong elsewhere");
}

#[test]
fn a_listing_whose_end_marker_miscounts_or_fails_is_an_error() {
    let driver = driver();
    let _archive = mock(driver.dir(), |s, message| {
        let c = correlation(message);
        match message {
            TernMessage::ListCursorsRequest(_) => vec![
                cursor_descriptor(s, c, "a", 3, 0),
                cursor_descriptor(s, c, "b", 3, 32),
                end_marker(s, c, 3),
            ],
            TernMessage::ListRecordingGroupsRequest(_) => {
                vec![error(s, c, 1, "active listing already in progress").into()]
            }
            _ => Vec::new(),
        }
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");
    match client.cursors("") {
        Err(ClientError::Protocol(message)) => {
            assert!(
                message.contains("after 3 descriptors, 2 arrived"),
                "{message}"
            )
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    expect_archive_error(
        client.list_recording_groups(None, ""),
        ArchiveErrorCode::ActiveListing,
        "active listing already in progress",
    );
}

#[test]
fn recording_groups_are_listed_with_every_field() {
    let driver = driver();
    let archive = mock(driver.dir(), |s, message| {
        let c = correlation(message);
        match message {
            TernMessage::ListRecordingGroupsRequest(request) if request.apply_stream_id => vec![
                group_descriptor(s, c, request.stream_id, true),
                end_marker(s, c, 1),
            ],
            TernMessage::ListRecordingGroupsRequest(_) => vec![
                group_descriptor(s, c, 1001, false),
                signal(s, c),
                group_descriptor(s, c, 1002, true),
                end_marker(s, c, 2),
            ],
            _ => Vec::new(),
        }
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");
    let all = client.list_recording_groups(None, "udp").expect("all");
    assert_eq!(
        all,
        vec![
            RecordingGroup {
                channel: "aeron:udp?endpoint=localhost:1001".into(),
                stream_id: 1001,
                first_recording_id: RecordingId::new(1001),
                last_recording_id: RecordingId::new(1005),
                total_bytes: 1 << 20,
                first_start_timestamp: 1_764_000_000_000,
                last_stop_timestamp: Some(1_764_000_100_000),
                recording_count: 3,
                active_count: 0,
            },
            RecordingGroup {
                channel: "aeron:udp?endpoint=localhost:1002".into(),
                stream_id: 1002,
                first_recording_id: RecordingId::new(1002),
                last_recording_id: RecordingId::new(1006),
                total_bytes: 1 << 20,
                first_start_timestamp: 1_764_000_000_000,
                last_stop_timestamp: None,
                recording_count: 3,
                active_count: 1,
            },
        ]
    );
    let one = client
        .list_recording_groups(Some(2002), "")
        .expect("one stream");
    assert_eq!(
        one.iter().map(|g| g.stream_id).collect::<Vec<_>>(),
        vec![2002]
    );
    let sent: Vec<(i32, bool, String)> = archive
        .tern_requests()
        .into_iter()
        .filter_map(|(_, message)| match message {
            TernMessage::ListRecordingGroupsRequest(request) => Some((
                request.stream_id,
                request.apply_stream_id,
                request.channel_fragment,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![(0, false, "udp".into()), (2002, true, String::new())]
    );
}

#[test]
fn position_at_time_returns_the_archive_s_position_or_its_error() {
    let driver = driver();
    let archive = mock(driver.dir(), |s, message| match message {
        TernMessage::PositionAtTimeRequest(request) if request.time_source == "nonsense" => {
            vec![error(
                s,
                request.correlation_id,
                0,
                "time source \"nonsense\": unknown time source",
            )
            .into()]
        }
        TernMessage::PositionAtTimeRequest(request) => {
            vec![ok(s, request.correlation_id, request.timestamp / 1000 * 32).into()]
        }
        _ => Vec::new(),
    });
    let mut client = ArchiveClient::connect(local(driver.dir())).expect("connects");
    assert_eq!(
        client
            .position_at_time(RecordingId::new(3), 5_000, "")
            .expect("position of a time"),
        160
    );
    assert_eq!(
        client
            .position_at_time(RecordingId::new(4), 10_000, "cluster-egress:us")
            .expect("with a source"),
        320
    );
    expect_archive_error(
        client.position_at_time(RecordingId::new(3), 5_000, "nonsense"),
        ArchiveErrorCode::Generic,
        "time source \"nonsense\": unknown time source",
    );
    let sent: Vec<(i64, i64, String)> = archive
        .tern_requests()
        .into_iter()
        .filter_map(|(_, message)| match message {
            TernMessage::PositionAtTimeRequest(request) => {
                Some((request.recording_id, request.timestamp, request.time_source))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            (3, 5_000, String::new()),
            (4, 10_000, "cluster-egress:us".into()),
            (3, 5_000, "nonsense".into()),
        ]
    );
}

#[test]
fn an_archive_that_does_not_answer_extensions_times_out_and_the_client_goes_on() {
    let driver = driver();
    // Aeron's archive ignores a schema it does not know.
    let _archive = MockArchive::start(
        driver.dir(),
        CONTROL_CHANNEL,
        CONTROL_STREAM,
        Box::new(|s, message| match message {
            Message::RecordingPositionRequest(request) => send_ok(s, request.correlation_id),
            other => aeron_like(s, other),
        }),
    );
    let timeout = Duration::from_millis(300);
    let mut client = ArchiveClient::connect(local(driver.dir()).with_message_timeout(timeout))
        .expect("connects");
    match client.cursor("orders") {
        Err(ClientError::Timeout { waiting_for, .. }) => {
            assert!(waiting_for.contains("GetCursorRequest"), "{waiting_for}")
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        client
            .recording_position(RecordingId::new(1))
            .expect("still usable"),
        Some(8)
    );
}

fn send_ok(session: i64, correlation_id: i64) -> Vec<Answer> {
    vec![ok(session, correlation_id, 8).into()]
}
