//! The raw control-protocol client and fixture the control server's test binaries share: an
//! archive with its control server on an embedded driver, spoken to byte by byte.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_archive::control::{Authenticator, ControlChannel, ControlConfig, ControlServer};
use tern_archive::{Archive, ArchiveConfig};
use tern_protocol::{
    self as proto, decode_any, AnyMessage, ControlResponse, ControlResponseCode, Message,
    SourceLocation, TernMessage, ARCHIVE_PROTOCOL_VERSION,
};
use tern_transport::{
    BackoffIdle, Client, ExclusivePublication, FragmentAssembler, Idle, MediaDriver, Subscription,
};

use tern_testkit::{driver, wait_until, TERM};

pub const CONTROL: &str = "aeron:ipc?term-length=64k";
pub const CONTROL_STREAM: i32 = 10;
pub const RESPONSE: &str = "aeron:ipc?term-length=64k";
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub archive: Arc<Archive>,
    pub server: ControlServer,
    pub driver: MediaDriver,
}

pub fn fixture(tag: &str, authenticator: Authenticator) -> Fixture {
    fixture_with(
        tag,
        authenticator,
        ControlConfig::default().max_queued_responses,
    )
}

pub fn fixture_with(
    tag: &str,
    authenticator: Authenticator,
    max_queued_responses: usize,
) -> Fixture {
    let driver = driver(tag);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ArchiveConfig::new(dir.path(), driver.dir());
    config.segment_length = 2 * TERM as i32;
    let archive = Arc::new(Archive::launch(config).expect("archive starts"));
    let server = ControlServer::start(
        archive.clone(),
        ControlConfig {
            channels: vec![ControlChannel::new(CONTROL, CONTROL_STREAM)],
            authenticator,
            session_timeout: Duration::from_secs(2),
            max_queued_responses,
            ..ControlConfig::default()
        },
    )
    .expect("control server starts");
    Fixture {
        _dir: dir,
        archive,
        server,
        driver,
    }
}

/// A client that speaks the protocol by hand.
pub struct Raw {
    pub _client: Client,
    pub requests: ExclusivePublication,
    pub responses: Subscription,
    pub assembler: FragmentAssembler,
    pub response_stream: i32,
    pub session_id: i64,
    pub correlation: i64,
}

impl Raw {
    pub fn open(aeron_dir: &str, response_stream: i32) -> Self {
        let client = Client::connect(aeron_dir).expect("client");
        let requests = client
            .add_exclusive_publication(CONTROL, CONTROL_STREAM)
            .expect("control publication");
        let responses = client
            .add_subscription(RESPONSE, response_stream)
            .expect("response subscription");
        let deadline = Instant::now() + TIMEOUT;
        while !requests.is_connected() {
            assert!(Instant::now() < deadline, "control channel never connected");
            std::thread::sleep(Duration::from_millis(1));
        }
        Self {
            _client: client,
            requests,
            responses,
            assembler: FragmentAssembler::new(),
            response_stream,
            session_id: -1,
            correlation: 100,
        }
    }

    pub fn send_bytes(&self, bytes: &[u8]) {
        let deadline = Instant::now() + TIMEOUT;
        let mut idle = BackoffIdle::new();
        loop {
            match self.requests.offer(bytes) {
                Ok(_) => return,
                Err(error) if error.is_retryable() => {
                    assert!(Instant::now() < deadline, "offer stuck: {error}");
                    idle.idle(0);
                }
                Err(error) => panic!("offer: {error}"),
            }
        }
    }

    pub fn send(&self, message: &Message) {
        let mut buf = Vec::new();
        message.encode(&mut buf).expect("encodes");
        self.send_bytes(&buf);
    }

    /// The next message of either schema, or `None` after `timeout`.
    pub fn receive_any_within(&mut self, timeout: Duration) -> Option<AnyMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut got = None;
            let assembler = &mut self.assembler;
            self.responses
                .poll(
                    |fragment, header| {
                        assembler.on_fragment(fragment, header, &mut |message, _| {
                            if got.is_none() {
                                got = Some(decode_any(message).expect("response decodes"));
                            }
                        })
                    },
                    1,
                )
                .expect("poll");
            if let Some(message) = got {
                return Some(message);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// The next message, which must be of Aeron's schema, or `None` after `timeout`.
    pub fn receive_within(&mut self, timeout: Duration) -> Option<Message> {
        self.receive_any_within(timeout)
            .map(|message| match message {
                AnyMessage::Aeron(message) => message,
                AnyMessage::Tern(message) => panic!("unexpected {message:?}"),
            })
    }

    pub fn receive(&mut self) -> Message {
        self.receive_within(TIMEOUT)
            .expect("a response within the timeout")
    }

    pub fn send_tern(&self, message: TernMessage) {
        let mut buf = Vec::new();
        message.encode(&mut buf).expect("encodes");
        self.send_bytes(&buf);
    }

    /// Send a tern request built from (session id, correlation id); collect the messages that
    /// answer it until an Aeron `ControlResponse` (included).
    pub fn call_tern(&mut self, build: impl FnOnce(i64, i64) -> TernMessage) -> Vec<AnyMessage> {
        let correlation = self.next_correlation();
        self.send_tern(build(self.session_id, correlation));
        let mut out = Vec::new();
        loop {
            let message = self
                .receive_any_within(TIMEOUT)
                .expect("an answer within the timeout");
            let (mine, end) = match &message {
                AnyMessage::Aeron(message) => (
                    correlation_of(message) == Some(correlation),
                    matches!(message, Message::ControlResponse(_)),
                ),
                AnyMessage::Tern(TernMessage::CursorDescriptor(d)) => {
                    (d.correlation_id == correlation, false)
                }
                AnyMessage::Tern(TernMessage::RecordingGroupDescriptor(d)) => {
                    (d.correlation_id == correlation, false)
                }
                AnyMessage::Tern(other) => panic!("unexpected {other:?}"),
            };
            if mine {
                out.push(message);
                if end {
                    return out;
                }
            }
        }
    }

    /// A tern request whose only answer is a `ControlResponse`.
    pub fn call_tern_response(
        &mut self,
        build: impl FnOnce(i64, i64) -> TernMessage,
    ) -> ControlResponse {
        match self.call_tern(build).pop() {
            Some(AnyMessage::Aeron(Message::ControlResponse(response))) => response,
            other => panic!("expected a ControlResponse, got {other:?}"),
        }
    }

    /// The next message answering `correlation` (others, such as a repeated connect OK, are
    /// skipped).
    pub fn receive_for(&mut self, correlation: i64) -> Message {
        loop {
            let message = self.receive();
            if correlation_of(&message) == Some(correlation) {
                return message;
            }
        }
    }

    pub fn connect_with(&mut self, credentials: &[u8]) -> Message {
        self.correlation += 1;
        self.send(&Message::AuthConnectRequest(proto::AuthConnectRequest {
            correlation_id: self.correlation,
            response_stream_id: self.response_stream,
            version: Some(ARCHIVE_PROTOCOL_VERSION),
            response_channel: RESPONSE.into(),
            encoded_credentials: credentials.to_vec(),
            client_info: "tern control test".into(),
        }));
        let answer = self.receive();
        if let Message::ControlResponse(response) = &answer {
            if response.code == ControlResponseCode::Ok {
                self.session_id = response.relevant_id;
                assert_eq!(response.control_session_id, response.relevant_id);
            }
        }
        answer
    }

    pub fn connect(&mut self) {
        let answer = self.connect_with(b"");
        let response = expect_response(&answer);
        assert_eq!(response.code, ControlResponseCode::Ok, "{response:?}");
    }

    pub fn next_correlation(&mut self) -> i64 {
        self.correlation += 1;
        self.correlation
    }

    /// Send a request built from (session id, correlation id); return the first answer to it
    /// (the connect OK that may still be repeated is skipped).
    pub fn call(&mut self, build: impl FnOnce(i64, i64) -> Message) -> Message {
        let correlation = self.next_correlation();
        self.send(&build(self.session_id, correlation));
        loop {
            let message = self.receive();
            if correlation_of(&message) == Some(correlation) {
                return message;
            }
        }
    }

    /// Send a listing request; collect what comes for it until the end marker or `count`.
    pub fn list(&mut self, count: usize, build: impl FnOnce(i64, i64) -> Message) -> Vec<Message> {
        let correlation = self.next_correlation();
        self.send(&build(self.session_id, correlation));
        let mut out = Vec::new();
        loop {
            let message = self.receive();
            if correlation_of(&message) != Some(correlation) {
                continue;
            }
            let end = matches!(&message, Message::ControlResponse(_));
            out.push(message);
            if end || out.len() == count {
                return out;
            }
        }
    }
}

pub fn correlation_of(message: &Message) -> Option<i64> {
    match message {
        Message::ControlResponse(m) => Some(m.correlation_id),
        Message::RecordingDescriptor(m) => Some(m.correlation_id),
        Message::RecordingSubscriptionDescriptor(m) => Some(m.correlation_id),
        Message::RecordingSignalEvent(m) => Some(m.correlation_id),
        Message::Challenge(m) => Some(m.correlation_id),
        _ => None,
    }
}

pub fn expect_response(message: &Message) -> &ControlResponse {
    match message {
        Message::ControlResponse(response) => response,
        other => panic!("expected a ControlResponse, got {other:?}"),
    }
}

pub fn ok(message: &Message) -> i64 {
    let response = expect_response(message);
    assert_eq!(
        response.code,
        ControlResponseCode::Ok,
        "expected OK: {response:?}"
    );
    response.relevant_id
}

pub fn error(message: &Message) -> (i64, String) {
    let response = expect_response(message);
    assert_eq!(
        response.code,
        ControlResponseCode::Error,
        "expected ERROR: {response:?}"
    );
    (response.relevant_id, response.error_message.clone())
}

/// Start recording `aeron:ipc` `stream` through the protocol (a local recording) and an
/// exclusive publication on it; returns the subscription id and the publication once its
/// recording has started (the publication's client with it).
pub fn start_protocol_recording(
    fixture: &Fixture,
    raw: &mut Raw,
    stream: i32,
) -> (i64, tern_transport::ExclusivePublication, Client) {
    let subscription_id = ok(&raw.call(|s, c| {
        Message::StartRecordingRequest2(proto::StartRecordingRequest2 {
            control_session_id: s,
            correlation_id: c,
            stream_id: stream,
            source_location: SourceLocation::Local,
            auto_stop: false,
            channel: "aeron:ipc".into(),
        })
    }));
    let client = Client::connect(fixture.driver.dir()).expect("client");
    let publication = client
        .add_exclusive_publication("aeron:ipc", stream)
        .expect("publication");
    wait_until("the recording to start", TIMEOUT, || {
        fixture
            .archive
            .recordings()
            .iter()
            .any(|r| r.descriptor.stream_id == stream)
    });
    (subscription_id, publication, client)
}

/// Record `count` messages on `channel`/`stream` through the protocol; returns the recording id.
pub fn record_over_protocol(
    fixture: &Fixture,
    raw: &mut Raw,
    stream: i32,
    count: u32,
) -> (i64, i64) {
    let (subscription_id, publication, _client) = start_protocol_recording(fixture, raw, stream);
    for sequence in 0..count {
        let mut body = sequence.to_le_bytes().to_vec();
        body.resize(100, sequence as u8);
        tern_testkit::offer_with(|| publication.offer(&body));
    }
    let end = publication.position();
    let recording_id = fixture
        .archive
        .recordings()
        .iter()
        .find(|r| r.descriptor.stream_id == stream)
        .expect("recording")
        .descriptor
        .recording_id;
    wait_until("everything recorded", TIMEOUT, || {
        fixture
            .archive
            .recording(recording_id)
            .is_ok_and(|info| info.recorded_position >= end)
    });
    (recording_id.get(), subscription_id)
}
