//! Test support: a media driver per test, and a scripted archive played by a thread of the
//! test that answers as a test says ([`MockArchive`]). Tests against the real archive (the
//! replay-merge's) use `tern_testkit::ServedArchive` instead.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tern_protocol::{
    AnyMessage, ControlResponse, ControlResponseCode, Message, TernMessage,
    ARCHIVE_PROTOCOL_VERSION,
};
use tern_transport::{
    BackoffIdle, Client, ExclusivePublication, FragmentAssembler, Idle, MediaDriver, Subscription,
};

#[allow(unused_imports)]
pub use tern_testkit::{free_udp_port, wait_until};

/// A media driver in a fresh temporary directory with 1 MiB terms, deleted when it stops.
pub fn driver() -> MediaDriver {
    tern_testkit::driver_with("client", |config| {
        config.ipc_term_length = Some(1024 * 1024);
        config.term_length = Some(1024 * 1024);
        config.spies_simulate_connection = false;
    })
}

/// The control session id of a client-to-archive message (every request but the connect
/// starts its block with it).
pub fn control_session_of(message: &Message) -> Option<i64> {
    let mut buffer = Vec::new();
    message.encode(&mut buffer).ok()?;
    match message {
        Message::AuthConnectRequest(_) => None,
        _ => Some(i64::from_le_bytes(buffer.get(8..16)?.try_into().ok()?)),
    }
}

/// The correlation id of a request (at block offset 8, or 0 for the connect); -1 for the close,
/// which has none.
pub fn correlation_of(message: &Message) -> i64 {
    let mut buffer = Vec::new();
    message.encode(&mut buffer).expect("encodes");
    let at = match message {
        Message::AuthConnectRequest(_) => 8,
        _ => 16,
    };
    buffer
        .get(at..at + 8)
        .and_then(|bytes| bytes.try_into().ok())
        .map_or(-1, i64::from_le_bytes)
}

/// A ControlResponse with code OK.
pub fn ok(control_session_id: i64, correlation_id: i64, relevant_id: i64) -> Message {
    Message::ControlResponse(ControlResponse {
        control_session_id,
        correlation_id,
        relevant_id,
        code: ControlResponseCode::Ok,
        version: Some(ARCHIVE_PROTOCOL_VERSION),
        error_message: String::new(),
    })
}

/// A ControlResponse with code ERROR, Aeron's error code in the relevant id.
pub fn error(control_session_id: i64, correlation_id: i64, code: i64, message: &str) -> Message {
    Message::ControlResponse(ControlResponse {
        control_session_id,
        correlation_id,
        relevant_id: code,
        code: ControlResponseCode::Error,
        version: Some(ARCHIVE_PROTOCOL_VERSION),
        error_message: message.into(),
    })
}

/// A ControlResponse with another code (a listing's end marker).
pub fn response(
    control_session_id: i64,
    correlation_id: i64,
    relevant_id: i64,
    code: ControlResponseCode,
) -> Message {
    Message::ControlResponse(ControlResponse {
        control_session_id,
        correlation_id,
        relevant_id,
        code,
        version: Some(ARCHIVE_PROTOCOL_VERSION),
        error_message: String::new(),
    })
}

/// The archive id the mocks answer with.
pub const ARCHIVE_ID: i64 = 0x007e_57a1;

/// The control side of a test archive: takes requests on one channel, opens a response
/// publication per session, sends what it is told to.
pub struct ControlServer {
    client: Client,
    requests: Subscription,
    assembler: FragmentAssembler,
    sessions: HashMap<i64, ExclusivePublication>,
    next_control_session_id: i64,
}

impl ControlServer {
    pub fn new(client: Client, channel: &str, stream_id: i32) -> Self {
        let requests = client
            .add_subscription(channel, stream_id)
            .expect("request subscription");
        Self {
            client,
            requests,
            assembler: FragmentAssembler::new(),
            sessions: HashMap::new(),
            next_control_session_id: 1000,
        }
    }

    /// Polls requests of either schema (decoded byte-exact with tern-protocol); for each,
    /// `on_request(control_session_id, message)` (a connect gets a new session and its response
    /// publication first, connected). Returns the work done.
    pub fn poll(&mut self, mut on_request: impl FnMut(&mut Self, i64, AnyMessage)) -> usize {
        let mut received: Vec<Vec<u8>> = Vec::new();
        let assembler = &mut self.assembler;
        let work = self
            .requests
            .poll(
                |fragment, header| {
                    assembler.on_fragment(fragment, header, &mut |message, _| {
                        received.push(message.to_vec())
                    })
                },
                10,
            )
            .expect("poll requests");
        for bytes in received {
            let message = match AnyMessage::decode(&bytes) {
                Ok(message) => message,
                Err(error) => panic!("the client sent an undecodable request: {error}"),
            };
            // What the client sent is exactly what the codec makes of the decoded message.
            let mut encoded = Vec::new();
            message.encode(&mut encoded).expect("re-encodes");
            assert_eq!(encoded, bytes, "{} is not byte-exact", message.name());
            let control_session_id = match &message {
                AnyMessage::Aeron(Message::AuthConnectRequest(connect)) => {
                    let control_session_id = self.next_control_session_id;
                    self.next_control_session_id += 1;
                    let publication = self
                        .client
                        .add_exclusive_publication(
                            &connect.response_channel,
                            connect.response_stream_id,
                        )
                        .expect("response publication");
                    wait_until("the response publication", Duration::from_secs(5), || {
                        publication.is_connected()
                    });
                    self.sessions.insert(control_session_id, publication);
                    control_session_id
                }
                AnyMessage::Aeron(other) => control_session_of(other).expect("a session id"),
                // Every tern request starts its block with the control session id.
                AnyMessage::Tern(_) => {
                    i64::from_le_bytes(bytes[8..16].try_into().expect("a session id"))
                }
            };
            on_request(self, control_session_id, message);
        }
        work
    }

    /// Sends `message` on the session's response publication.
    pub fn send(&self, control_session_id: i64, message: &Message) {
        let mut buffer = Vec::new();
        message.encode(&mut buffer).expect("encodes");
        self.send_raw(control_session_id, &buffer);
    }

    /// Sends a message of tern's schema on the session's response publication.
    pub fn send_tern(&self, control_session_id: i64, message: &TernMessage) {
        let mut buffer = Vec::new();
        message.encode(&mut buffer).expect("encodes");
        self.send_raw(control_session_id, &buffer);
    }

    /// Sends raw bytes on the session's response publication.
    pub fn send_raw(&self, control_session_id: i64, buffer: &[u8]) {
        let Some(publication) = self.sessions.get(&control_session_id) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut idle = BackoffIdle::new();
        loop {
            match publication.offer(buffer) {
                Ok(_) => return,
                Err(error) if error.is_retryable() && Instant::now() < deadline => idle.idle(0),
                Err(_) => return,
            }
        }
    }

    /// Closes a session's response publication (the client sees its image go).
    pub fn drop_session(&mut self, control_session_id: i64) {
        self.sessions.remove(&control_session_id);
    }
}

/// One thing a script does in answer to a request.
pub enum Answer {
    /// Send a message on the session.
    Send(Message),
    /// Send a message of tern's schema (1101) on the session.
    Tern(TernMessage),
    /// Send raw bytes on the session.
    Raw(Vec<u8>),
    /// Wait before the next answer.
    Sleep(Duration),
}

impl From<Message> for Answer {
    fn from(message: Message) -> Self {
        Answer::Send(message)
    }
}

impl From<TernMessage> for Answer {
    fn from(message: TernMessage) -> Self {
        Answer::Tern(message)
    }
}

/// What a script answers to one request, given the session it came on.
pub type Script = Box<dyn FnMut(i64, &Message) -> Vec<Answer> + Send>;

/// What a script answers to one request of either schema.
pub type AnyScript = Box<dyn FnMut(i64, &AnyMessage) -> Vec<Answer> + Send>;

/// Messages as answers.
pub fn send(messages: Vec<Message>) -> Vec<Answer> {
    messages.into_iter().map(Answer::Send).collect()
}

/// The answers of an Aeron archive that accepts everyone: connect OK (the relevant id is the
/// session id, as Aeron's), archive id [`ARCHIVE_ID`]; keep-alives and closes get nothing.
pub fn aeron_like(control_session_id: i64, message: &Message) -> Vec<Answer> {
    match message {
        Message::AuthConnectRequest(connect) => send(vec![ok(
            control_session_id,
            connect.correlation_id,
            control_session_id,
        )]),
        Message::ArchiveIdRequest(request) => send(vec![ok(
            control_session_id,
            request.correlation_id,
            ARCHIVE_ID,
        )]),
        _ => Vec::new(),
    }
}

/// An archive on a thread of the test that answers as its script says and keeps every request
/// it received.
pub struct MockArchive {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    requests: Arc<Mutex<Vec<(i64, AnyMessage)>>>,
}

impl MockArchive {
    /// Serves `channel` / `stream_id` of the driver in `dir` with `script`; requests of tern's
    /// schema get no answer.
    pub fn start(dir: &str, channel: &str, stream_id: i32, mut script: Script) -> Self {
        Self::start_any(
            dir,
            channel,
            stream_id,
            Box::new(move |session, message| match message {
                AnyMessage::Aeron(message) => script(session, message),
                AnyMessage::Tern(_) => Vec::new(),
            }),
        )
    }

    /// Serves `channel` / `stream_id` of the driver in `dir` with `script`, which answers
    /// requests of both schemas.
    pub fn start_any(dir: &str, channel: &str, stream_id: i32, mut script: AnyScript) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let requests: Arc<Mutex<Vec<(i64, AnyMessage)>>> = Arc::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            let requests = requests.clone();
            let dir = dir.to_string();
            let channel = channel.to_string();
            std::thread::spawn(move || {
                let client = Client::connect(&dir).expect("mock archive client");
                let mut server = ControlServer::new(client, &channel, stream_id);
                let _ = ready_tx.send(());
                let mut idle = BackoffIdle::new();
                while !stop.load(Ordering::Acquire) {
                    let work = server.poll(|server, control_session_id, message| {
                        requests
                            .lock()
                            .expect("requests")
                            .push((control_session_id, message.clone()));
                        for answer in script(control_session_id, &message) {
                            match answer {
                                Answer::Send(message) => server.send(control_session_id, &message),
                                Answer::Tern(message) => {
                                    server.send_tern(control_session_id, &message)
                                }
                                Answer::Raw(bytes) => server.send_raw(control_session_id, &bytes),
                                Answer::Sleep(pause) => std::thread::sleep(pause),
                            }
                        }
                    });
                    idle.idle(work);
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the mock archive started");
        Self {
            stop,
            thread: Some(thread),
            requests,
        }
    }

    /// The requests of Aeron's schema received so far, with the session they came on.
    pub fn requests(&self) -> Vec<(i64, Message)> {
        self.requests
            .lock()
            .expect("requests")
            .iter()
            .filter_map(|(session, message)| match message {
                AnyMessage::Aeron(message) => Some((*session, message.clone())),
                AnyMessage::Tern(_) => None,
            })
            .collect()
    }

    /// The requests of tern's schema received so far, with the session they came on.
    pub fn tern_requests(&self) -> Vec<(i64, TernMessage)> {
        self.requests
            .lock()
            .expect("requests")
            .iter()
            .filter_map(|(session, message)| match message {
                AnyMessage::Tern(message) => Some((*session, message.clone())),
                AnyMessage::Aeron(_) => None,
            })
            .collect()
    }

    /// Waits until a received request satisfies `matches`; returns it.
    pub fn await_request(&self, what: &str, matches: impl Fn(&Message) -> bool) -> Message {
        let mut found = None;
        wait_until(what, Duration::from_secs(10), || {
            found = self
                .requests()
                .into_iter()
                .map(|(_, message)| message)
                .find(|message| matches(message));
            found.is_some()
        });
        found.expect("found")
    }
}

impl Drop for MockArchive {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
