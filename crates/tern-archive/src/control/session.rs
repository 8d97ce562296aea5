//! One client's control session: its states, its outbox of encoded responses and its
//! deadlines. No I/O: the conductor offers the outbox to the response publication and tells the
//! session what happened, with the time.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};
use tern_protocol::ArchiveErrorCode;
use tern_protocol::{
    to_ascii_lossy, Challenge, ControlResponse, ControlResponseCode, ARCHIVE_PROTOCOL_VERSION,
};
use tern_store::ReplayId;

/// How often the answer to `AuthConnect` is sent again until the client's first request
/// (Aeron's 200 ms): a client that missed it still gets it.
pub(crate) const RESEND_INTERVAL: Duration = Duration::from_millis(200);

/// Where a session's requests come from: a control subscription and the image (publisher
/// session) on it. Requests naming the session from another image are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source {
    pub subscription: usize,
    pub image_session_id: i32,
}

/// What to tell the client once its response channel is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Opening {
    /// Accepted: OK with the session id.
    Accept,
    /// Send this challenge; the response decides.
    Challenge(Vec<u8>),
    /// Refuse: ERROR with this code and message, then close.
    Refuse {
        code: ArchiveErrorCode,
        message: String,
    },
}

/// The states of a session, as Aeron's `ControlSession`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// The response publication is not connected yet.
    Connecting,
    /// A challenge was sent; waiting for the response.
    Challenged,
    /// Accepted; the OK is repeated until the first request.
    Authenticated,
    /// Serving requests.
    Active,
    /// Refused; the ERROR is on its way, then the session ends.
    Refused,
    /// Ended, with why.
    Done(String),
}

/// A listing in progress (recordings are sent a batch per duty cycle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listing {
    /// `ListRecordings` / `ListRecordingsForUri`: the next id to look at, how many more to
    /// send, and the filter (stream id, channel fragment).
    Recordings {
        correlation_id: i64,
        next_id: i64,
        remaining: i64,
        filter: Option<(i32, String)>,
    },
    /// Messages encoded up front (cursor and group listings), sent a batch per duty cycle, then
    /// the end marker (`ControlResponse RECORDING_UNKNOWN` whose relevant id is `count`).
    Prepared {
        correlation_id: i64,
        messages: VecDeque<Vec<u8>>,
        count: i64,
    },
}

/// A control session.
#[derive(Debug)]
pub(crate) struct ControlSession {
    pub id: i64,
    pub source: Source,
    pub response_channel: String,
    pub response_stream_id: i32,
    /// The correlation id the session's OK answers (AuthConnect's, or ChallengeResponse's).
    correlation_id: i64,
    opening: Opening,
    state: State,
    outbox: VecDeque<Vec<u8>>,
    max_queued: usize,
    timeout: Duration,
    /// When the session is closed if nothing moves (connecting, challenged, outbox stuck).
    deadline: Option<Instant>,
    resend_at: Instant,
    pub listing: Option<Listing>,
    /// Replays this session started (stopped if the client dies).
    pub replays: BTreeSet<ReplayId>,
    /// Whether the end came from the client going away (its resources are freed).
    pub client_died: bool,
}

impl ControlSession {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        id: i64,
        correlation_id: i64,
        source: Source,
        response_channel: String,
        response_stream_id: i32,
        opening: Opening,
        timeout: Duration,
        max_queued: usize,
    ) -> Self {
        Self {
            id,
            source,
            response_channel,
            response_stream_id,
            correlation_id,
            opening,
            state: State::Connecting,
            outbox: VecDeque::new(),
            max_queued,
            timeout,
            deadline: Some(now + timeout),
            resend_at: now,
            listing: None,
            replays: BTreeSet::new(),
            client_died: false,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether the session was opened only to be refused.
    pub fn is_refusal(&self) -> bool {
        matches!(self.opening, Opening::Refuse { .. }) || self.state == State::Refused
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// End the session (idempotent: the first reason stays).
    pub fn end(&mut self, reason: impl Into<String>) {
        if !self.is_done() {
            self.state = State::Done(reason.into());
            self.listing = None;
        }
    }

    /// The client's request publication went away.
    pub fn client_gone(&mut self, reason: impl Into<String>) {
        if !self.is_done() {
            self.client_died = true;
            self.end(reason);
        }
    }

    /// The response publication is connected (first time).
    pub fn on_connected(&mut self, now: Instant) {
        if self.state != State::Connecting {
            return;
        }
        match self.opening.clone() {
            Opening::Accept => self.authenticated(now),
            Opening::Challenge(challenge) => {
                let mut buf = Vec::new();
                let message = Challenge {
                    control_session_id: self.id,
                    correlation_id: self.correlation_id,
                    version: Some(ARCHIVE_PROTOCOL_VERSION),
                    encoded_challenge: challenge,
                };
                if message.encode(&mut buf).is_ok() {
                    self.queue(buf);
                }
                self.state = State::Challenged;
                self.deadline = Some(now + self.timeout);
            }
            Opening::Refuse { code, message } => self.refuse(code, &message),
        }
    }

    fn authenticated(&mut self, now: Instant) {
        self.state = State::Authenticated;
        self.deadline = None;
        self.resend_at = now;
        self.send_connect_ok(now);
    }

    fn send_connect_ok(&mut self, now: Instant) {
        if self.outbox.is_empty() {
            self.respond(self.correlation_id, self.id, ControlResponseCode::Ok, "");
        }
        self.resend_at = now + RESEND_INTERVAL;
    }

    fn refuse(&mut self, code: ArchiveErrorCode, message: &str) {
        self.respond(
            self.correlation_id,
            code.value(),
            ControlResponseCode::Error,
            message,
        );
        self.state = State::Refused;
    }

    /// A challenged client answered; `accepted` is the authenticator's verdict.
    pub fn on_challenge_response(&mut self, now: Instant, correlation_id: i64, accepted: bool) {
        if self.state != State::Challenged {
            return;
        }
        self.correlation_id = correlation_id;
        if accepted {
            self.authenticated(now);
        } else {
            self.refuse(
                ArchiveErrorCode::AuthenticationRejected,
                "authentication rejected",
            );
        }
    }

    /// Whether a request would be served (the session is authenticated or active).
    pub fn serves_requests(&self) -> bool {
        matches!(self.state, State::Authenticated | State::Active)
    }

    /// A request arrived; returns whether the session serves it (it must be authenticated).
    pub fn on_request(&mut self) -> bool {
        if self.state == State::Authenticated {
            self.state = State::Active;
        }
        self.state == State::Active
    }

    /// Time passes: repeat the connect OK, enforce deadlines.
    pub fn tick(&mut self, now: Instant) {
        if self.is_done() {
            return;
        }
        if let Some(deadline) = self.deadline {
            if now > deadline {
                let reason = match self.state {
                    State::Connecting => "response channel did not connect in time",
                    State::Challenged => "no response to the challenge in time",
                    _ => "client did not take responses in time",
                };
                self.end(reason);
                return;
            }
        }
        if self.state == State::Authenticated && now >= self.resend_at {
            self.send_connect_ok(now);
        }
        if self.state == State::Refused && self.outbox.is_empty() {
            self.end("authentication rejected");
        }
    }

    /// Encode and queue a `ControlResponse`.
    pub fn respond(
        &mut self,
        correlation_id: i64,
        relevant_id: i64,
        code: ControlResponseCode,
        error_message: &str,
    ) {
        let response = ControlResponse {
            control_session_id: self.id,
            correlation_id,
            relevant_id,
            code,
            version: Some(ARCHIVE_PROTOCOL_VERSION),
            error_message: to_ascii_lossy(error_message),
        };
        let mut buf = Vec::with_capacity(64 + error_message.len());
        if response.encode(&mut buf).is_ok() {
            self.queue(buf);
        }
    }

    /// Queue an encoded message; a client that lets too many pile up loses its session.
    pub fn queue(&mut self, message: Vec<u8>) {
        if self.is_done() {
            return;
        }
        if self.outbox.len() >= self.max_queued {
            self.end(format!(
                "client too slow: {} responses waiting",
                self.outbox.len()
            ));
            return;
        }
        self.outbox.push_back(message);
    }

    /// How many messages wait.
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// How many messages may wait before the session is closed.
    pub fn max_queued(&self) -> usize {
        self.max_queued
    }

    /// The next message to send.
    pub fn next_message(&self) -> Option<&[u8]> {
        self.outbox.front().map(Vec::as_slice)
    }

    /// The next message was sent.
    pub fn sent(&mut self) {
        self.outbox.pop_front();
        if matches!(self.state, State::Authenticated | State::Active) {
            self.deadline = None;
        }
    }

    /// The response publication refused the next message for now (back pressure).
    pub fn blocked(&mut self, now: Instant) {
        if self.deadline.is_none() {
            self.deadline = Some(now + self.timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_protocol::Message;

    fn session(now: Instant, opening: Opening) -> ControlSession {
        ControlSession::new(
            now,
            77,
            5,
            Source {
                subscription: 0,
                image_session_id: 9,
            },
            "aeron:ipc".into(),
            20,
            opening,
            Duration::from_secs(1),
            8,
        )
    }

    fn drain(session: &mut ControlSession) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(bytes) = session.next_message() {
            out.push(Message::decode(bytes).expect("decodes"));
            session.sent();
        }
        out
    }

    fn response(message: &Message) -> &ControlResponse {
        match message {
            Message::ControlResponse(response) => response,
            other => panic!("expected a ControlResponse, got {other:?}"),
        }
    }

    #[test]
    fn accepted_session_answers_ok_with_its_id_and_repeats_it_until_a_request() {
        let t0 = Instant::now();
        let mut s = session(t0, Opening::Accept);
        assert!(
            drain(&mut s).is_empty(),
            "nothing before the response channel connects"
        );
        assert!(
            !s.on_request(),
            "no requests are served before the session is accepted"
        );
        s.on_connected(t0);
        let sent = drain(&mut s);
        assert_eq!(sent.len(), 1);
        let ok = response(&sent[0]);
        assert_eq!((ok.correlation_id, ok.relevant_id), (5, 77));
        assert_eq!(ok.code, ControlResponseCode::Ok);
        s.tick(t0 + RESEND_INTERVAL / 2);
        assert!(drain(&mut s).is_empty());
        s.tick(t0 + RESEND_INTERVAL);
        assert_eq!(drain(&mut s).len(), 1, "the OK is sent again");
        assert!(s.on_request());
        assert_eq!(s.state(), &State::Active);
        s.tick(t0 + RESEND_INTERVAL * 10);
        assert!(drain(&mut s).is_empty(), "no repeat once active");
    }

    #[test]
    fn a_response_channel_that_never_connects_ends_the_session() {
        let t0 = Instant::now();
        let mut s = session(t0, Opening::Accept);
        s.tick(t0 + Duration::from_millis(999));
        assert!(!s.is_done());
        s.tick(t0 + Duration::from_millis(1001));
        assert_eq!(
            s.state(),
            &State::Done("response channel did not connect in time".into())
        );
    }

    #[test]
    fn challenge_then_accept_or_reject() {
        let t0 = Instant::now();
        let mut s = session(t0, Opening::Challenge(b"who?".to_vec()));
        s.on_connected(t0);
        let sent = drain(&mut s);
        match &sent[..] {
            [Message::Challenge(challenge)] => {
                assert_eq!(challenge.encoded_challenge, b"who?");
                assert_eq!(challenge.control_session_id, 77);
            }
            other => panic!("expected one Challenge, got {other:?}"),
        }
        assert!(!s.on_request(), "a challenged session serves nothing");
        s.on_challenge_response(t0, 6, true);
        let ok = drain(&mut s);
        assert_eq!(response(&ok[0]).correlation_id, 6);
        assert!(s.on_request());

        let mut refused = session(t0, Opening::Challenge(b"who?".to_vec()));
        refused.on_connected(t0);
        drain(&mut refused);
        refused.on_challenge_response(t0, 6, false);
        let error = drain(&mut refused);
        let error = response(&error[0]);
        assert_eq!(error.code, ControlResponseCode::Error);
        assert_eq!(
            error.relevant_id,
            ArchiveErrorCode::AuthenticationRejected.value()
        );
        refused.tick(t0);
        assert!(refused.is_done());

        let mut silent = session(t0, Opening::Challenge(b"who?".to_vec()));
        silent.on_connected(t0);
        silent.tick(t0 + Duration::from_secs(2));
        assert_eq!(
            silent.state(),
            &State::Done("no response to the challenge in time".into())
        );
    }

    #[test]
    fn refused_session_sends_its_error_then_ends() {
        let t0 = Instant::now();
        let mut s = session(
            t0,
            Opening::Refuse {
                code: ArchiveErrorCode::Generic,
                message: "too many sessions".into(),
            },
        );
        s.on_connected(t0);
        s.tick(t0);
        assert!(!s.is_done(), "not before the error is sent");
        let sent = drain(&mut s);
        assert_eq!(response(&sent[0]).error_message, "too many sessions");
        s.tick(t0);
        assert!(s.is_done());
    }

    #[test]
    fn a_client_that_does_not_read_loses_its_session() {
        let t0 = Instant::now();
        let mut s = session(t0, Opening::Accept);
        s.on_connected(t0);
        assert!(s.on_request());
        for i in 0..8 {
            s.respond(i, 0, ControlResponseCode::Ok, "");
        }
        assert!(s.is_done(), "the ninth waiting message is one too many");

        let mut stuck = session(t0, Opening::Accept);
        stuck.on_connected(t0);
        stuck.on_request();
        stuck.blocked(t0);
        stuck.tick(t0 + Duration::from_millis(500));
        assert!(!stuck.is_done());
        stuck.tick(t0 + Duration::from_secs(2));
        assert_eq!(
            stuck.state(),
            &State::Done("client did not take responses in time".into())
        );
    }
}
