//! The control conductor: polls the control channels, runs the sessions, dispatches requests to
//! the [`Archive`], sends the answers.

use super::session::{ControlSession, Listing, Opening, Source, State};
use super::{ControlConfig, ControlStats};
use crate::conductor::{ArchiveState, Room};
use crate::error::{ArchiveError, Result};
use crate::events::{RecordingEvent, RecordingSignalKind};
use crate::metrics::Metrics;
use crate::types::{
    stopped_by_identity, Pending, PendingRecording, PendingReplay, PendingSeek, RecordingInfo,
    ReplayRequest, SourceLocation,
};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;
use tern_protocol as proto;
use tern_protocol::ArchiveErrorCode;
use tern_protocol::NULL_VALUE;
use tern_protocol::{
    AnyMessage, ControlResponseCode, DecodeError, Message, MessageHeader, TernMessage,
};
use tern_store::message_time::TimeSource;
use tern_transport::{
    Client, ExclusivePublication, FragmentAssembler, ImageEvent, OfferError, Subscription,
};

/// Aeron's `REPLAY_ALL_AND_STOP` replay length.
const REPLAY_ALL_AND_STOP: i64 = -2;
/// Messages taken from each control channel per duty cycle.
const FRAGMENT_LIMIT: usize = 16;
/// Messages sent to one client per duty cycle.
const SEND_LIMIT: usize = 64;
/// Descriptors a listing adds to a session's outbox per duty cycle.
const LISTING_BATCH: usize = 32;
/// A listing waits while its session has this many messages queued.
const LISTING_HIGH_WATER: usize = 256;

/// A session and its response publication.
struct Slot {
    session: ControlSession,
    publication: ExclusivePublication,
    was_connected: bool,
}

pub(crate) struct Conductor {
    /// Dropped with the conductor: tells the [`ControlServer`](super::ControlServer) it is gone.
    _alive: std::sync::mpsc::Sender<()>,
    config: ControlConfig,
    stop: Arc<AtomicBool>,
    stats: Arc<ControlStats>,
    client: Client,
    subscriptions: Vec<Subscription>,
    assemblers: Vec<FragmentAssembler>,
    slots: BTreeMap<i64, Slot>,
    next_session_id: i64,
    archive_id: i64,
    /// Which session (and request) started each recording subscription, for its signals.
    recording_owners: HashMap<i64, (i64, i64)>,
    /// Which session asked to truncate or purge each recording, for the DELETE signal.
    delete_owners: HashMap<i64, (i64, i64)>,
    events: Receiver<RecordingEvent>,
    /// Recording events taken in and not signalled yet, numbered in the order they came; those
    /// that came after a request about their subscription wait for its answer.
    held_events: Vec<(u64, RecordingEvent)>,
    /// Recording events taken in so far (the next one's number).
    events_seen: u64,
    /// Requests handed to the replayer or the recorder and not answered by them yet: answered
    /// when they are, so the duty cycle never waits for an agent.
    awaiting: Vec<Awaiting>,
}

/// A request waiting for an agent's answer: whom to answer, and with what.
struct Awaiting {
    session_id: i64,
    correlation_id: i64,
    what: Awaited,
    /// Recording events numbered from here on came after the request (their signals wait for
    /// its answer); earlier ones did not.
    events_after: u64,
    /// The session closed because its client died: a replay that starts for it is stopped.
    orphaned: bool,
}

enum Awaited {
    /// A replay's start: OK with the replay id.
    Replay(PendingReplay),
    /// A recording subscription (a start or an extension): OK with its id.
    Recording(PendingRecording),
    /// A recording subscription's stop: OK 0, or Aeron's unknown-subscription error.
    Stop {
        subscription_id: i64,
        pending: Pending<Vec<i64>>,
    },
    /// A stop by recording identity: OK with 1 if it stopped it, 0 if it was not recording.
    StopByIdentity {
        subscription_id: i64,
        pending: Pending<Vec<i64>>,
    },
    /// A replay's seek: OK with the replay's new image session id.
    Seek(PendingSeek),
    /// A truncate or purge: OK with the number of segment files to delete.
    Change {
        recording_id: i64,
        pending: Pending<usize>,
    },
}

impl Awaited {
    /// The recording subscription whose signals must wait for this answer (as in Aeron, a
    /// request's OK goes before the signals of what it started or stopped).
    fn subscription(&self) -> Option<i64> {
        match self {
            Self::Recording(pending) => Some(pending.id()),
            Self::Stop {
                subscription_id, ..
            }
            | Self::StopByIdentity {
                subscription_id, ..
            } => Some(*subscription_id),
            Self::Replay(_) | Self::Seek(_) | Self::Change { .. } => None,
        }
    }
}

impl Room for Conductor {
    fn do_work(&mut self, state: &mut ArchiveState, now: Instant) -> usize {
        Conductor::do_work(self, state, now)
    }

    fn is_done(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn name(&self) -> &'static str {
        "the control server"
    }
}

impl Drop for Conductor {
    fn drop(&mut self) {
        tracing::info!(
            "control server stopped; {} sessions open at stop",
            self.slots.len()
        );
    }
}

impl Conductor {
    pub fn new(
        state: &mut ArchiveState,
        config: ControlConfig,
        stop: Arc<AtomicBool>,
        stats: Arc<ControlStats>,
        alive: std::sync::mpsc::Sender<()>,
    ) -> Result<Self> {
        let events = state.subscribe_events();
        let client =
            Client::connect_with_idle(&state.config().aeron_dir, state.config().client_idle_sleep)?;
        let mut subscriptions = Vec::new();
        for channel in &config.channels {
            subscriptions.push(client.add_subscription(&channel.channel, channel.stream_id)?);
        }
        let assemblers = subscriptions
            .iter()
            .map(|_| FragmentAssembler::new())
            .collect();
        let archive_id = config.archive_id.unwrap_or_else(|| client.client_id());
        // Session ids need only be unique while the archive runs; starting from the clock makes
        // a restarted archive's ids unlikely to match what an old client still holds.
        let next_session_id = (tern_store::epoch_nanos() / 1_000_000) & 0x7fff_ffff;
        Ok(Self {
            _alive: alive,
            config,
            stop,
            stats,
            client,
            subscriptions,
            assemblers,
            slots: BTreeMap::new(),
            next_session_id,
            archive_id,
            recording_owners: HashMap::new(),
            delete_owners: HashMap::new(),
            events,
            held_events: Vec::new(),
            events_seen: 0,
            awaiting: Vec::new(),
        })
    }

    fn do_work(&mut self, state: &mut ArchiveState, now: Instant) -> usize {
        // Events so far are numbered before this cycle's requests: their signals do not wait.
        self.take_events();
        let mut work = 0;
        let mut inbox: Vec<(Source, Vec<u8>)> = Vec::new();
        let mut gone: Vec<Source> = Vec::new();
        for (index, subscription) in self.subscriptions.iter().enumerate() {
            let assembler = &mut self.assemblers[index];
            let polled = subscription.poll(
                |fragment, header| {
                    assembler.on_fragment(fragment, header, &mut |message, header| {
                        inbox.push((
                            Source {
                                subscription: index,
                                image_session_id: header.session_id,
                            },
                            message.to_vec(),
                        ));
                    });
                },
                FRAGMENT_LIMIT,
            );
            match polled {
                Ok(count) => work += count,
                Err(error) => tracing::warn!("control channel poll: {error}"),
            }
            for event in subscription.take_image_events() {
                if let ImageEvent::Unavailable { session_id, .. } = event {
                    assembler.forget_session(session_id);
                    gone.push(Source {
                        subscription: index,
                        image_session_id: session_id,
                    });
                }
            }
        }
        // Requests first: a client that sent CloseSession and then went away closed gracefully.
        for (source, bytes) in inbox {
            self.on_message(state, now, source, &bytes);
        }
        for source in gone {
            work += 1;
            for slot in self.slots.values_mut() {
                if slot.session.source == source {
                    slot.session
                        .client_gone("control request publication image unavailable");
                }
            }
        }
        // Answers before signals: a request's OK goes before the signals of what it started.
        work += self.answer_awaited(state);
        work += self.signal_events(state);
        work + self.drive_sessions(state, now)
    }

    /// Answer the requests whose agents have answered. A replay whose session went meanwhile is
    /// stopped; a recording goes on without its session, as in Aeron.
    fn answer_awaited(&mut self, state: &mut ArchiveState) -> usize {
        let mut work = 0;
        let mut index = 0;
        while index < self.awaiting.len() {
            let answer = match &self.awaiting[index].what {
                Awaited::Replay(pending) => state
                    .poll_replay_start(pending)
                    .map(|outcome| outcome.map(|replay_id| (replay_id, Some(replay_id)))),
                Awaited::Recording(pending) => pending
                    .poll()
                    .map(|outcome| outcome.map(|subscription_id| (subscription_id, None))),
                Awaited::Stop {
                    subscription_id,
                    pending,
                } => pending.poll().map(|outcome| match outcome {
                    Ok(_) => Ok((0, None)),
                    Err(ArchiveError::UnknownSubscription(_)) => {
                        Err(ArchiveError::UnknownSubscription(*subscription_id))
                    }
                    Err(error) => Err(error),
                }),
                Awaited::StopByIdentity { pending, .. } => pending.poll().map(|outcome| {
                    stopped_by_identity(outcome).map(|stopped| (i64::from(stopped), None))
                }),
                Awaited::Seek(pending) => pending
                    .poll()
                    .map(|outcome| outcome.map(|session_id| (i64::from(session_id), None))),
                Awaited::Change { pending, .. } => pending
                    .poll()
                    .map(|outcome| outcome.map(|segments| (segments as i64, None))),
            };
            let Some(answer) = answer else {
                index += 1;
                continue;
            };
            work += 1;
            // In request order: answers that come in one cycle go out in the order asked.
            let awaiting = self.awaiting.remove(index);
            match (&awaiting.what, &answer) {
                (Awaited::Recording(pending), Err(_)) => {
                    self.recording_owners.remove(&pending.id());
                }
                (Awaited::Change { recording_id, .. }, Err(_)) => {
                    self.delete_owners.remove(recording_id);
                }
                _ => {}
            }
            let Some(slot) = self.slots.get_mut(&awaiting.session_id) else {
                // As for the session's other replays when it closed: stopped if its client died.
                if let (Ok((_, Some(replay_id))), true) = (answer, awaiting.orphaned) {
                    let _ = state.stop_replay(replay_id);
                }
                continue;
            };
            let session = &mut slot.session;
            match answer {
                Ok((relevant_id, replay)) => {
                    if let Some(replay_id) = replay {
                        session.replays.insert(replay_id);
                    }
                    session.respond(
                        awaiting.correlation_id,
                        relevant_id,
                        ControlResponseCode::Ok,
                        "",
                    );
                }
                Err(ArchiveError::UnknownSubscription(subscription_id)) => send_error(
                    &self.stats,
                    state.metrics(),
                    session,
                    awaiting.correlation_id,
                    ArchiveErrorCode::UnknownSubscription,
                    &format!(
                        "no recording subscription found for subscriptionId={subscription_id}"
                    ),
                ),
                Err(error) => send_error(
                    &self.stats,
                    state.metrics(),
                    session,
                    awaiting.correlation_id,
                    error.code(),
                    &error.to_string(),
                ),
            }
        }
        work
    }

    /// Send each recording event as a `RecordingSignalEvent` to the session whose request
    /// caused it (as Aeron: the session that started, extended, truncated or purged).
    /// Number the recording events that came since the last call.
    fn take_events(&mut self) {
        for event in self.events.try_iter() {
            self.held_events.push((self.events_seen, event));
            self.events_seen += 1;
        }
    }

    fn signal_events(&mut self, state: &ArchiveState) -> usize {
        let mut work = 0;
        self.take_events();
        // Signals of a subscription that came after a request to start or stop it wait for that
        // request's answer, in order: they go out in a later duty cycle.
        let waiting: HashMap<i64, u64> =
            self.awaiting
                .iter()
                .fold(HashMap::new(), |mut waiting, awaiting| {
                    if let Some(subscription_id) = awaiting.what.subscription() {
                        let after = waiting.entry(subscription_id).or_insert(u64::MAX);
                        *after = (*after).min(awaiting.events_after);
                    }
                    waiting
                });
        let mut held = Vec::new();
        let mut ready = Vec::new();
        let mut holding: HashSet<i64> = HashSet::new();
        for (number, event) in std::mem::take(&mut self.held_events) {
            let hold = event.signal != RecordingSignalKind::Delete
                && (holding.contains(&event.subscription_id)
                    || waiting
                        .get(&event.subscription_id)
                        .is_some_and(|after| number >= *after));
            if hold {
                holding.insert(event.subscription_id);
                held.push((number, event));
            } else {
                ready.push(event);
            }
        }
        self.held_events = held;
        for event in ready {
            work += 1;
            let owner = match event.signal {
                RecordingSignalKind::Delete => self.delete_owners.remove(&event.recording_id),
                _ => self.recording_owners.get(&event.subscription_id).copied(),
            };
            let Some((session_id, correlation_id)) = owner else {
                continue;
            };
            let Some(slot) = self.slots.get_mut(&session_id) else {
                continue;
            };
            let signal = match event.signal {
                RecordingSignalKind::Start => proto::RecordingSignal::Start,
                RecordingSignalKind::Stop => proto::RecordingSignal::Stop,
                RecordingSignalKind::Extend => proto::RecordingSignal::Extend,
                RecordingSignalKind::Delete => proto::RecordingSignal::Delete,
                RecordingSignalKind::Failed => {
                    // As Aeron's archive: an error response to the request that started the
                    // recording (its correlation id), with the cause's error code.
                    let failure = state.recording_failures().iter().rev().find(|failure| {
                        failure.subscription_id == event.subscription_id
                            && failure.recording_id == event.recording_id
                    });
                    if let Some(failure) = failure {
                        send_error(
                            &self.stats,
                            state.metrics(),
                            &mut slot.session,
                            correlation_id,
                            failure.code,
                            &failure.to_string(),
                        );
                    }
                    continue;
                }
            };
            let message = proto::RecordingSignalEvent {
                control_session_id: session_id,
                correlation_id,
                recording_id: event.recording_id,
                subscription_id: event.subscription_id,
                position: event.position,
                signal,
            };
            queue_message(&mut slot.session, Message::RecordingSignalEvent(message));
        }
        work
    }

    fn on_message(&mut self, state: &mut ArchiveState, now: Instant, source: Source, bytes: &[u8]) {
        match proto::decode_any(bytes) {
            Ok(AnyMessage::Aeron(message)) => {
                ControlStats::add(&self.stats.requests);
                state.metrics().control_request(message.name());
                self.on_request(state, now, source, message);
            }
            Ok(AnyMessage::Tern(message)) => {
                ControlStats::add(&self.stats.requests);
                state.metrics().control_request(message.name());
                self.on_tern_request(state, source, message);
            }
            Err(error) => self.on_malformed(state, source, bytes, &error),
        }
    }

    /// A message that does not decode: answer it with an error if its session can be told
    /// (the bytes name a session of this client), otherwise log it. Nothing else is affected.
    fn on_malformed(
        &mut self,
        state: &ArchiveState,
        source: Source,
        bytes: &[u8],
        error: &DecodeError,
    ) {
        ControlStats::add(&self.stats.malformed);
        state.metrics().control_request("malformed");
        let header = MessageHeader::decode(bytes).ok();
        let read_i64 = |offset: usize| {
            bytes
                .get(offset..offset + 8)
                .and_then(|field| field.try_into().ok())
                .map(i64::from_le_bytes)
        };
        let template = header.map_or(0, |header| header.template_id);
        let what = match error {
            DecodeError::UnknownTemplate { template_id } => {
                format!("unsupported request: template id {template_id}")
            }
            other => format!("malformed request (template id {template}): {other}"),
        };
        let session_id = header
            .filter(|header| {
                header.schema_id == proto::SCHEMA_ID || header.schema_id == proto::TERN_SCHEMA_ID
            })
            .and_then(|_| read_i64(proto::MESSAGE_HEADER_LENGTH));
        let correlation_id = read_i64(proto::MESSAGE_HEADER_LENGTH + 8).unwrap_or(NULL_VALUE);
        let slot = session_id
            .and_then(|id| self.slots.get_mut(&id))
            .filter(|slot| slot.session.source == source)
            .map(|slot| &mut slot.session);
        if let Some(session) = slot.filter(|session| session.serves_requests()) {
            session.on_request();
            send_error(
                &self.stats,
                state.metrics(),
                session,
                correlation_id,
                ArchiveErrorCode::Generic,
                &what,
            );
        } else {
            // A flood of garbage must not flood the log: the first 16, then every power of two.
            let count = self.stats.malformed();
            if count <= 16 || count.is_power_of_two() {
                tracing::warn!(
                    "control channel {}: {what} ({} bytes from image session {}); no session to answer ({count} malformed so far)",
                    source.subscription,
                    bytes.len(),
                    source.image_session_id
                );
            }
        }
    }

    fn on_request(
        &mut self,
        state: &mut ArchiveState,
        now: Instant,
        source: Source,
        message: Message,
    ) {
        match message {
            Message::AuthConnectRequest(request) => self.on_connect(state, now, source, request),
            Message::ChallengeResponse(response) => {
                let authenticator = &self.config.authenticator;
                if let Some(slot) = self.slots.get_mut(&response.control_session_id) {
                    if slot.session.source == source {
                        let accepted = authenticator
                            .on_challenge_response(&response.encoded_credentials)
                            == super::Decision::Accept;
                        slot.session
                            .on_challenge_response(now, response.correlation_id, accepted);
                    }
                }
            }
            Message::CloseSessionRequest(request) => {
                if let Some(slot) = self.slots.get_mut(&request.control_session_id) {
                    if slot.session.source == source {
                        slot.session.end("session closed");
                    }
                }
            }
            other => {
                let ids = request_ids(&other);
                self.dispatch(
                    state,
                    source,
                    ids,
                    other.name(),
                    |context, session, correlation_id| {
                        context.serve(session, correlation_id, other)
                    },
                );
            }
        }
    }

    fn on_tern_request(&mut self, state: &mut ArchiveState, source: Source, message: TernMessage) {
        let ids = tern_request_ids(&message);
        self.dispatch(
            state,
            source,
            ids,
            message.name(),
            |context, session, correlation_id| context.serve_tern(session, correlation_id, message),
        );
    }

    /// Serve a request (its session and correlation ids, `None` if it is not a request) if it
    /// comes from its session's client and the session is authenticated.
    fn dispatch(
        &mut self,
        state: &mut ArchiveState,
        source: Source,
        ids: Option<(i64, i64)>,
        name: &str,
        serve: impl FnOnce(&mut Context<'_>, &mut ControlSession, i64),
    ) {
        let Some((control_session_id, correlation_id)) = ids else {
            tracing::warn!(
                "control channel {}: {name} is not a request; ignored",
                source.subscription
            );
            return;
        };
        let Some(session) = request_session(&mut self.slots, source, control_session_id, name)
        else {
            return;
        };
        let mut context = Context {
            state,
            stats: &self.stats,
            archive_id: self.archive_id,
            recording_owners: &mut self.recording_owners,
            delete_owners: &mut self.delete_owners,
            awaiting: &mut self.awaiting,
            events_seen: self.events_seen,
        };
        serve(&mut context, session, correlation_id);
    }

    fn on_connect(
        &mut self,
        state: &ArchiveState,
        now: Instant,
        source: Source,
        request: proto::AuthConnectRequest,
    ) {
        ControlStats::add(&self.stats.sessions_opened);
        let id = self.next_session_id;
        self.next_session_id += 1;
        let major = request.version.map_or(0, |version| version.major());
        let opening = if major != proto::ARCHIVE_PROTOCOL_VERSION.major() {
            Opening::Refuse {
                code: ArchiveErrorCode::Generic,
                message: format!(
                    "invalid client version {}, archive is {}",
                    request
                        .version
                        .map_or_else(|| "0.0.0".to_string(), |version| version.to_string()),
                    proto::ARCHIVE_PROTOCOL_VERSION
                ),
            }
        } else if self.live_sessions() >= self.config.max_sessions {
            Opening::Refuse {
                code: ArchiveErrorCode::Generic,
                message: format!(
                    "too many control sessions: the archive allows {}",
                    self.config.max_sessions
                ),
            }
        } else {
            match self
                .config
                .authenticator
                .on_connect(&request.encoded_credentials)
            {
                super::Decision::Accept => Opening::Accept,
                super::Decision::Challenge(challenge) => Opening::Challenge(challenge),
                super::Decision::Reject => Opening::Refuse {
                    code: ArchiveErrorCode::AuthenticationRejected,
                    message: "authentication rejected".into(),
                },
            }
        };
        if matches!(opening, Opening::Refuse { .. }) && self.refusals() >= self.config.max_sessions
        {
            // As many refusals are under way as sessions are allowed: a flood. Drop this one
            // without a response publication (each costs the media driver a log buffer).
            tracing::warn!(
                "control session refused without an answer: {} refusals under way",
                self.refusals()
            );
            return;
        }
        if let Opening::Refuse { code, .. } = &opening {
            state.metrics().control_error(*code);
        }
        let publication = match self
            .client
            .add_exclusive_publication(&request.response_channel, request.response_stream_id)
        {
            Ok(publication) => publication,
            Err(error) => {
                tracing::warn!(
                    "control session refused: response channel {} stream {}: {error}",
                    request.response_channel,
                    request.response_stream_id
                );
                return;
            }
        };
        tracing::debug!(
            "control session {id} from {:?} ({}), answering on {} stream {}",
            source,
            request.client_info,
            request.response_channel,
            request.response_stream_id
        );
        let session = ControlSession::new(
            now,
            id,
            request.correlation_id,
            source,
            request.response_channel,
            request.response_stream_id,
            opening,
            self.config.session_timeout,
            self.config.max_queued_responses,
        );
        self.slots.insert(
            id,
            Slot {
                session,
                publication,
                was_connected: false,
            },
        );
    }

    /// Sessions that count against `max_sessions`: not ended and not being refused.
    fn live_sessions(&self) -> usize {
        self.slots
            .values()
            .filter(|slot| !slot.session.is_done() && !slot.session.is_refusal())
            .count()
    }

    /// Sessions being refused (their error on its way).
    fn refusals(&self) -> usize {
        self.slots
            .values()
            .filter(|slot| !slot.session.is_done() && slot.session.is_refusal())
            .count()
    }

    /// Connect, list, send and time out every session; close those that are done.
    fn drive_sessions(&mut self, state: &ArchiveState, now: Instant) -> usize {
        let mut work = 0;
        for slot in self.slots.values_mut() {
            let session = &mut slot.session;
            if !slot.was_connected && slot.publication.is_connected() {
                slot.was_connected = true;
                session.on_connected(now);
                work += 1;
            } else if slot.was_connected && !slot.publication.is_connected() {
                session.client_gone("control response publication is not connected");
            }
            if session.listing.is_some() && session.queued() < listing_high_water(session) {
                work += continue_listing(state, session);
            }
            if slot.was_connected {
                for _ in 0..SEND_LIMIT {
                    let Some(message) = session.next_message() else {
                        break;
                    };
                    match slot.publication.offer(message) {
                        Ok(_) => {
                            session.sent();
                            work += 1;
                        }
                        Err(error) if error.is_retryable() => {
                            session.blocked(now);
                            break;
                        }
                        Err(OfferError::NotConnected) => break,
                        Err(error) => {
                            session.end(format!("response publication failed: {error}"));
                            break;
                        }
                    }
                }
            }
            session.tick(now);
        }
        let done: Vec<i64> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.session.is_done())
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(slot) = self.slots.remove(&id) {
                self.close(state, slot);
                work += 1;
            }
        }
        state
            .metrics()
            .control_sessions
            .set(self.slots.len() as i64);
        work
    }

    fn close(&mut self, state: &ArchiveState, slot: Slot) {
        ControlStats::add(&self.stats.sessions_closed);
        let session = slot.session;
        let reason = match session.state() {
            State::Done(reason) => reason.clone(),
            other => format!("{other:?}"),
        };
        for awaiting in &mut self.awaiting {
            if awaiting.session_id == session.id {
                awaiting.orphaned = session.client_died;
            }
        }
        if session.client_died {
            // The client is gone: its replays would only run into a dead subscriber.
            for replay_id in &session.replays {
                let _ = state.stop_replay(*replay_id);
            }
            tracing::info!(
                "control session {} closed: {reason}; {} replays stopped",
                session.id,
                session.replays.len()
            );
        } else {
            tracing::debug!(
                "control session {} ({} stream {}) closed: {reason}",
                session.id,
                session.response_channel,
                session.response_stream_id
            );
        }
        self.recording_owners
            .retain(|_, (owner, _)| *owner != session.id);
    }
}

/// The session a request names, if it came from that session's client and the session serves
/// requests (authenticated); logs why not otherwise.
fn request_session<'a>(
    slots: &'a mut BTreeMap<i64, Slot>,
    source: Source,
    control_session_id: i64,
    what: &str,
) -> Option<&'a mut ControlSession> {
    let Some(slot) = slots.get_mut(&control_session_id) else {
        tracing::warn!("control request {what} for unknown session {control_session_id}");
        return None;
    };
    if slot.session.source != source {
        tracing::warn!(
            "control request {what} for session {control_session_id} from another client; refused"
        );
        return None;
    }
    if !slot.session.on_request() {
        return None;
    }
    Some(&mut slot.session)
}

/// The control session id and correlation id of a tern request (`None`: not a request).
fn tern_request_ids(message: &TernMessage) -> Option<(i64, i64)> {
    match message {
        TernMessage::TernReplayRequest(m) => Some((m.control_session_id, m.correlation_id)),
        TernMessage::ReplayControlRequest(m) => Some((m.control_session_id, m.correlation_id)),
        TernMessage::SetCursorRequest(m) => Some((m.control_session_id, m.correlation_id)),
        TernMessage::GetCursorRequest(m) => Some((m.control_session_id, m.correlation_id)),
        TernMessage::DeleteCursorRequest(m) => Some((m.control_session_id, m.correlation_id)),
        TernMessage::ListCursorsRequest(m) => Some((m.control_session_id, m.correlation_id)),
        TernMessage::ListRecordingGroupsRequest(m) => {
            Some((m.control_session_id, m.correlation_id))
        }
        TernMessage::PositionAtTimeRequest(m) => Some((m.control_session_id, m.correlation_id)),
        TernMessage::CursorDescriptor(_) | TernMessage::RecordingGroupDescriptor(_) => None,
    }
}

fn source_location(source: proto::SourceLocation) -> SourceLocation {
    match source {
        proto::SourceLocation::Local => SourceLocation::Local,
        proto::SourceLocation::Remote => SourceLocation::Remote,
    }
}

/// The control session id and correlation id of a request (`None`: not a request).
fn request_ids(message: &Message) -> Option<(i64, i64)> {
    macro_rules! ids {
        ($($variant:ident),+ $(,)?) => {
            match message {
                $( Message::$variant(m) => Some((m.control_session_id, m.correlation_id)), )+
                _ => None,
            }
        };
    }
    ids!(
        StartRecordingRequest,
        StartRecordingRequest2,
        StopRecordingRequest,
        StopRecordingSubscriptionRequest,
        StopRecordingByIdentityRequest,
        ReplayRequest,
        BoundedReplayRequest,
        StopReplayRequest,
        StopAllReplaysRequest,
        ListRecordingsRequest,
        ListRecordingsForUriRequest,
        ListRecordingRequest,
        RecordingPositionRequest,
        StartPositionRequest,
        StopPositionRequest,
        MaxRecordedPositionRequest,
        TruncateRecordingRequest,
        PurgeRecordingRequest,
        FindLastMatchingRecordingRequest,
        ListRecordingSubscriptionsRequest,
        ExtendRecordingRequest2,
        KeepAliveRequest,
        ArchiveIdRequest,
    )
}

/// Epoch nanoseconds as the protocol's epoch milliseconds (-1, Aeron's null, for none).
fn epoch_millis(ns: i64) -> i64 {
    if ns < 0 {
        NULL_VALUE
    } else {
        ns / 1_000_000
    }
}

/// The protocol's descriptor of a recording.
fn descriptor_message(
    control_session_id: i64,
    correlation_id: i64,
    info: &RecordingInfo,
) -> proto::RecordingDescriptor {
    let d = &info.descriptor;
    proto::RecordingDescriptor {
        control_session_id,
        correlation_id,
        recording_id: d.recording_id,
        start_timestamp: epoch_millis(d.start_timestamp_ns),
        stop_timestamp: if d.is_active() {
            NULL_VALUE
        } else {
            epoch_millis(d.stop_timestamp_ns)
        },
        start_position: d.start_position,
        stop_position: d.stop_position,
        initial_term_id: d.initial_term_id,
        segment_file_length: d.segment_length,
        term_buffer_length: d.term_length,
        mtu_length: d.mtu_length,
        session_id: d.session_id,
        stream_id: d.stream_id,
        stripped_channel: proto::to_ascii_lossy(&d.stripped_channel),
        original_channel: proto::to_ascii_lossy(&d.original_channel),
        source_identity: proto::to_ascii_lossy(&d.source_identity),
    }
}

fn cursor_descriptor(
    control_session_id: i64,
    correlation_id: i64,
    cursor: &tern_store::cursors::Cursor,
) -> proto::CursorDescriptor {
    proto::CursorDescriptor {
        control_session_id,
        correlation_id,
        recording_id: cursor.recording_id,
        position: cursor.position,
        updated_timestamp: cursor.updated_ns,
        name: proto::to_ascii_lossy(&cursor.name),
    }
}

/// The recordings grouped by (stripped channel, stream id), in order of each group's first
/// recording id; optionally only one stream, and channels containing a fragment.
fn recording_groups(
    recordings: &[RecordingInfo],
    stream_id: Option<i32>,
    channel_fragment: &str,
) -> Vec<proto::RecordingGroupDescriptor> {
    let mut groups: Vec<proto::RecordingGroupDescriptor> = Vec::new();
    let mut index: HashMap<(String, i32), usize> = HashMap::new();
    for info in recordings {
        let d = &info.descriptor;
        if stream_id.is_some_and(|stream| stream != d.stream_id)
            || !d.stripped_channel.contains(channel_fragment)
        {
            continue;
        }
        let key = (d.stripped_channel.clone(), d.stream_id);
        let slot = *index.entry(key).or_insert_with(|| {
            groups.push(proto::RecordingGroupDescriptor {
                control_session_id: 0,
                correlation_id: 0,
                first_recording_id: d.recording_id,
                last_recording_id: d.recording_id,
                total_bytes: 0,
                first_start_timestamp: epoch_millis(d.start_timestamp_ns),
                last_stop_timestamp: NULL_VALUE,
                stream_id: d.stream_id,
                recording_count: 0,
                active_count: 0,
                channel: proto::to_ascii_lossy(&d.stripped_channel),
            });
            groups.len() - 1
        });
        let group = &mut groups[slot];
        group.last_recording_id = d.recording_id;
        group.recording_count += 1;
        group.total_bytes += info.recorded_position - d.start_position;
        group.first_start_timestamp = group
            .first_start_timestamp
            .min(epoch_millis(d.start_timestamp_ns));
        if info.active {
            group.active_count += 1;
        }
        group.last_stop_timestamp = if group.active_count > 0 {
            NULL_VALUE
        } else {
            group
                .last_stop_timestamp
                .max(epoch_millis(d.stop_timestamp_ns))
        };
    }
    groups
}

/// A message of either schema, encoded (`None`: a text field is not ASCII, which tern's own
/// messages never have: they are encoded with `to_ascii_lossy`).
fn encoded(message: impl Into<AnyMessage>) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(256);
    message.into().encode(&mut buf).ok().map(|_| buf)
}

fn queue_message(session: &mut ControlSession, message: impl Into<AnyMessage>) {
    if let Some(buf) = encoded(message) {
        session.queue(buf);
    }
}

/// A listing adds messages while fewer than this wait in its session's outbox: at most 256, and
/// half of what the session may queue, so a listing never fills it.
fn listing_high_water(session: &ControlSession) -> usize {
    LISTING_HIGH_WATER.min(session.max_queued() / 2)
}

/// Send the next batch of a listing; returns the number of messages queued.
fn continue_listing(archive: &ArchiveState, session: &mut ControlSession) -> usize {
    let batch = LISTING_BATCH.min(listing_high_water(session).saturating_sub(session.queued()));
    match session.listing.take() {
        Some(Listing::Recordings {
            correlation_id,
            next_id,
            remaining,
            filter,
        }) => continue_recordings(
            archive,
            session,
            batch,
            correlation_id,
            next_id,
            remaining,
            filter,
        ),
        Some(Listing::Prepared {
            correlation_id,
            mut messages,
            count,
        }) => {
            let mut queued = 0;
            while queued < batch {
                let Some(message) = messages.pop_front() else {
                    break;
                };
                session.queue(message);
                queued += 1;
            }
            if messages.is_empty() {
                session.respond(
                    correlation_id,
                    count,
                    ControlResponseCode::RecordingUnknown,
                    "",
                );
                return queued + 1;
            }
            session.listing = Some(Listing::Prepared {
                correlation_id,
                messages,
                count,
            });
            queued
        }
        None => 0,
    }
}

/// Most catalog ids a recording listing looks at per duty cycle (a filter that matches little
/// must not hold the conductor on a large catalog).
const LISTING_SCAN: i64 = 1024;

fn continue_recordings(
    archive: &ArchiveState,
    session: &mut ControlSession,
    batch: usize,
    correlation_id: i64,
    mut next_id: i64,
    mut remaining: i64,
    filter: Option<(i32, String)>,
) -> usize {
    let limit = archive.recording_id_limit();
    let scan_end = next_id.saturating_add(LISTING_SCAN);
    let mut queued = 0;
    while remaining > 0 && queued < batch && next_id < limit && next_id < scan_end {
        let id = next_id;
        next_id += 1;
        let Ok(info) = archive.recording(id) else {
            continue; // purged or damaged: not listed
        };
        let accepted = filter.as_ref().is_none_or(|(stream_id, fragment)| {
            info.descriptor.stream_id == *stream_id
                && info.descriptor.original_channel.contains(fragment.as_str())
        });
        if accepted {
            let message = descriptor_message(session.id, correlation_id, &info);
            queue_message(session, Message::RecordingDescriptor(message));
            remaining -= 1;
            queued += 1;
        }
    }
    if remaining > 0 && next_id >= limit {
        session.respond(
            correlation_id,
            next_id,
            ControlResponseCode::RecordingUnknown,
            "",
        );
        return queued + 1;
    }
    if remaining > 0 {
        session.listing = Some(Listing::Recordings {
            correlation_id,
            next_id,
            remaining,
            filter,
        });
    }
    queued.max(1)
}

/// A replay request, from either schema.
struct ReplayArgs {
    recording_id: i64,
    /// Aeron's: -1 for the recording's start.
    position: i64,
    /// Aeron's: -1 or `i64::MAX` follow, -2 to the current end, else bytes.
    length: i64,
    limit_counter_id: Option<i32>,
    channel: String,
    stream_id: i32,
    speed: Option<f64>,
    time_source: TimeSource,
    /// Only the messages of one key (sent back to back).
    key: Option<tern_store::key::KeyFilter>,
    /// The position was found from a time or a cursor: it may be the end of a stopped
    /// recording (an empty replay), which Aeron refuses for a position given outright.
    may_start_at_end: bool,
}

/// What a request handler needs besides its session.
struct Context<'a> {
    state: &'a mut ArchiveState,
    stats: &'a ControlStats,
    archive_id: i64,
    recording_owners: &'a mut HashMap<i64, (i64, i64)>,
    delete_owners: &'a mut HashMap<i64, (i64, i64)>,
    /// Where a request waits for the agent that answers it.
    awaiting: &'a mut Vec<Awaiting>,
    /// How many recording events the conductor has taken in so far.
    events_seen: u64,
}

/// Sends an ERROR response with `code` to `session`, counted in the control stats and the
/// metrics' errors by code: every error a client gets goes this way.
fn send_error(
    stats: &ControlStats,
    metrics: &Metrics,
    session: &mut ControlSession,
    correlation_id: i64,
    code: ArchiveErrorCode,
    message: &str,
) {
    ControlStats::add(&stats.errors_sent);
    metrics.control_error(code);
    session.respond(
        correlation_id,
        code.value(),
        ControlResponseCode::Error,
        message,
    );
}

impl Context<'_> {
    fn ok(&self, session: &mut ControlSession, correlation_id: i64, relevant_id: i64) {
        session.respond(correlation_id, relevant_id, ControlResponseCode::Ok, "");
    }

    /// Answer the request when its agent has answered `what`.
    fn wait_for(&mut self, session_id: i64, correlation_id: i64, what: Awaited) {
        self.awaiting.push(Awaiting {
            session_id,
            correlation_id,
            what,
            events_after: self.events_seen,
            orphaned: false,
        });
    }

    /// OK with 0, or the error.
    fn answer(&self, session: &mut ControlSession, correlation_id: i64, result: Result<()>) {
        match result {
            Ok(()) => self.ok(session, correlation_id, 0),
            Err(error) => self.fail(session, correlation_id, &error),
        }
    }

    fn error(
        &self,
        session: &mut ControlSession,
        correlation_id: i64,
        code: ArchiveErrorCode,
        message: &str,
    ) {
        send_error(
            self.stats,
            self.state.metrics(),
            session,
            correlation_id,
            code,
            message,
        );
    }

    fn fail(&self, session: &mut ControlSession, correlation_id: i64, error: &ArchiveError) {
        self.error(session, correlation_id, error.code(), &error.to_string());
    }

    fn recording(
        &self,
        session: &mut ControlSession,
        correlation_id: i64,
        recording_id: i64,
    ) -> Option<RecordingInfo> {
        match self.state.recording(recording_id) {
            Ok(info) => Some(info),
            Err(error) => {
                self.fail(session, correlation_id, &error);
                None
            }
        }
    }

    fn start_listing(&self, session: &mut ControlSession, correlation_id: i64, listing: Listing) {
        if session.listing.is_some() {
            self.error(
                session,
                correlation_id,
                ArchiveErrorCode::ActiveListing,
                "active listing already in progress",
            );
        } else {
            session.listing = Some(listing);
        }
    }

    fn start_prepared_listing(
        &self,
        session: &mut ControlSession,
        correlation_id: i64,
        messages: VecDeque<Vec<u8>>,
    ) {
        let count = messages.len() as i64;
        self.start_listing(
            session,
            correlation_id,
            Listing::Prepared {
                correlation_id,
                messages,
                count,
            },
        );
    }

    fn serve(&mut self, session: &mut ControlSession, correlation_id: i64, message: Message) {
        match message {
            Message::KeepAliveRequest(_) => {}
            Message::ArchiveIdRequest(_) => self.ok(session, correlation_id, self.archive_id),
            Message::StartRecordingRequest(request) => self.start_recording(
                session,
                correlation_id,
                &request.channel,
                request.stream_id,
                request.source_location,
                false,
            ),
            Message::StartRecordingRequest2(request) => self.start_recording(
                session,
                correlation_id,
                &request.channel,
                request.stream_id,
                request.source_location,
                request.auto_stop,
            ),
            Message::StopRecordingRequest(request) => {
                let found = self
                    .state
                    .recording_subscriptions()
                    .into_iter()
                    .find(|s| s.stream_id == request.stream_id && s.channel == request.channel);
                match found {
                    Some(subscription) => {
                        self.await_stop(session, correlation_id, subscription.subscription_id)
                    }
                    None => self.error(
                        session,
                        correlation_id,
                        ArchiveErrorCode::UnknownSubscription,
                        &format!(
                            "no recording found for streamId={} channel={}",
                            request.stream_id, request.channel
                        ),
                    ),
                }
            }
            Message::StopRecordingSubscriptionRequest(request) => {
                self.await_stop(session, correlation_id, request.subscription_id)
            }
            Message::ListRecordingsRequest(request) => self.start_listing(
                session,
                correlation_id,
                Listing::Recordings {
                    correlation_id,
                    next_id: request.from_recording_id.max(0),
                    remaining: i64::from(request.record_count),
                    filter: None,
                },
            ),
            Message::ListRecordingsForUriRequest(request) => self.start_listing(
                session,
                correlation_id,
                Listing::Recordings {
                    correlation_id,
                    next_id: request.from_recording_id.max(0),
                    remaining: i64::from(request.record_count),
                    filter: Some((request.stream_id, request.channel)),
                },
            ),
            Message::ListRecordingRequest(request) => {
                if session.listing.is_some() {
                    self.error(
                        session,
                        correlation_id,
                        ArchiveErrorCode::ActiveListing,
                        "active listing already in progress",
                    );
                } else {
                    match self.state.recording(request.recording_id) {
                        Ok(info) => {
                            let message = descriptor_message(session.id, correlation_id, &info);
                            queue_message(session, Message::RecordingDescriptor(message));
                        }
                        Err(_) => session.respond(
                            correlation_id,
                            request.recording_id,
                            ControlResponseCode::RecordingUnknown,
                            "",
                        ),
                    }
                }
            }
            Message::FindLastMatchingRecordingRequest(request) => {
                if request.min_recording_id < 0 {
                    self.error(
                        session,
                        correlation_id,
                        ArchiveErrorCode::UnknownRecording,
                        &format!("minRecordingId={} < 0", request.min_recording_id),
                    );
                    return;
                }
                let found = self
                    .state
                    .recordings()
                    .into_iter()
                    .rev()
                    .take_while(|info| info.descriptor.recording_id >= request.min_recording_id)
                    .find(|info| {
                        let d = &info.descriptor;
                        d.session_id == request.session_id
                            && d.stream_id == request.stream_id
                            && d.original_channel.contains(request.channel.as_str())
                    })
                    .map_or(NULL_VALUE, |info| info.descriptor.recording_id);
                self.ok(session, correlation_id, found);
            }
            Message::ListRecordingSubscriptionsRequest(request) => {
                self.list_subscriptions(session, correlation_id, &request)
            }
            Message::RecordingPositionRequest(request) => {
                if let Some(info) = self.recording(session, correlation_id, request.recording_id) {
                    let position = if info.active {
                        info.recorded_position
                    } else {
                        NULL_VALUE
                    };
                    self.ok(session, correlation_id, position);
                }
            }
            Message::StartPositionRequest(request) => {
                if let Some(info) = self.recording(session, correlation_id, request.recording_id) {
                    self.ok(session, correlation_id, info.descriptor.start_position);
                }
            }
            Message::StopPositionRequest(request) => {
                if let Some(info) = self.recording(session, correlation_id, request.recording_id) {
                    self.ok(session, correlation_id, info.descriptor.stop_position);
                }
            }
            Message::MaxRecordedPositionRequest(request) => {
                if let Some(info) = self.recording(session, correlation_id, request.recording_id) {
                    self.ok(session, correlation_id, info.recorded_position);
                }
            }
            Message::ReplayRequest(request) => self.replay(
                session,
                correlation_id,
                ReplayArgs {
                    recording_id: request.recording_id,
                    position: request.position,
                    length: request.length,
                    limit_counter_id: None,
                    channel: request.replay_channel,
                    stream_id: request.replay_stream_id,
                    speed: None,
                    time_source: TimeSource::default(),
                    key: None,
                    may_start_at_end: false,
                },
            ),
            Message::BoundedReplayRequest(request) => self.replay(
                session,
                correlation_id,
                ReplayArgs {
                    recording_id: request.recording_id,
                    position: request.position,
                    length: request.length,
                    limit_counter_id: Some(request.limit_counter_id),
                    channel: request.replay_channel,
                    stream_id: request.replay_stream_id,
                    speed: None,
                    time_source: TimeSource::default(),
                    key: None,
                    may_start_at_end: false,
                },
            ),
            Message::StopReplayRequest(request) => {
                // As Aeron: stopping a replay that already ended (or never was) is not an error.
                let _ = self.state.stop_replay(request.replay_session_id);
                session.replays.remove(&request.replay_session_id);
                self.ok(session, correlation_id, 0);
            }
            Message::StopRecordingByIdentityRequest(request) => {
                match self.state.begin_stop_by_identity(request.recording_id) {
                    Ok(Some((subscription_id, pending))) => self.wait_for(
                        session.id,
                        correlation_id,
                        Awaited::StopByIdentity {
                            subscription_id,
                            pending,
                        },
                    ),
                    Ok(None) => self.ok(session, correlation_id, 0),
                    Err(error) => self.fail(session, correlation_id, &error),
                }
            }
            Message::ExtendRecordingRequest2(request) => {
                let source = source_location(request.source_location);
                let begun = self.state.begin_extend(
                    request.recording_id,
                    &request.channel,
                    request.stream_id,
                    source,
                    request.auto_stop,
                );
                self.await_recording(session, correlation_id, begun);
            }
            Message::TruncateRecordingRequest(request) => {
                let begun =
                    self.state
                        .begin_truncate(request.recording_id, request.position, false);
                self.await_change(session, correlation_id, request.recording_id, begun);
            }
            Message::PurgeRecordingRequest(request) => {
                let begun = self.state.begin_purge(request.recording_id, false);
                self.await_change(session, correlation_id, request.recording_id, begun);
            }
            Message::StopAllReplaysRequest(request) => {
                let recording =
                    (request.recording_id != NULL_VALUE).then_some(request.recording_id);
                self.state.stop_all_replays(recording);
                self.ok(session, correlation_id, 0);
            }
            other => self.error(
                session,
                correlation_id,
                ArchiveErrorCode::Generic,
                &format!("unsupported request: {}", other.name()),
            ),
        }
    }

    fn time_source(
        &self,
        session: &mut ControlSession,
        correlation_id: i64,
        text: &str,
    ) -> Option<TimeSource> {
        if text.is_empty() {
            return Some(TimeSource::default());
        }
        match text.parse::<TimeSource>() {
            Ok(source) => Some(source),
            Err(error) => {
                self.error(
                    session,
                    correlation_id,
                    ArchiveErrorCode::Generic,
                    &format!("time source {text:?}: {error}"),
                );
                None
            }
        }
    }

    /// Serve a tern extension request (schema 1101).
    fn serve_tern(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        message: TernMessage,
    ) {
        match message {
            TernMessage::TernReplayRequest(request) => {
                self.tern_replay(session, correlation_id, request)
            }
            TernMessage::ReplayControlRequest(request) => {
                let id = request.replay_session_id;
                let seek = match request.action {
                    proto::ReplayAction::Pause => {
                        return self.answer(session, correlation_id, self.state.pause_replay(id))
                    }
                    proto::ReplayAction::Resume => {
                        return self.answer(session, correlation_id, self.state.resume_replay(id))
                    }
                    proto::ReplayAction::SeekPosition => self.state.begin_seek(id, request.value),
                    proto::ReplayAction::SeekTime => {
                        let Some(source) =
                            self.time_source(session, correlation_id, &request.time_source)
                        else {
                            return;
                        };
                        self.state.begin_seek_to_time(id, request.value, source)
                    }
                };
                match seek {
                    Ok(pending) => {
                        self.wait_for(session.id, correlation_id, Awaited::Seek(pending))
                    }
                    Err(error) => self.fail(session, correlation_id, &error),
                }
            }
            TernMessage::SetCursorRequest(request) => {
                match self
                    .state
                    .set_cursor(&request.name, request.recording_id, request.position)
                {
                    Ok(_) => self.ok(session, correlation_id, 0),
                    Err(error) => self.fail(session, correlation_id, &error),
                }
            }
            TernMessage::GetCursorRequest(request) => match self.state.cursor(&request.name) {
                Ok(cursor) => {
                    let descriptor = cursor_descriptor(session.id, correlation_id, &cursor);
                    queue_message(session, TernMessage::CursorDescriptor(descriptor));
                }
                Err(error) => self.fail(session, correlation_id, &error),
            },
            TernMessage::DeleteCursorRequest(request) => {
                match self.state.delete_cursor(&request.name) {
                    Ok(existed) => self.ok(session, correlation_id, i64::from(existed)),
                    Err(error) => self.fail(session, correlation_id, &error),
                }
            }
            TernMessage::ListCursorsRequest(request) => {
                let messages: VecDeque<Vec<u8>> = self
                    .state
                    .cursors(&request.name_prefix)
                    .iter()
                    .filter_map(|cursor| {
                        let descriptor = cursor_descriptor(session.id, correlation_id, cursor);
                        encoded(TernMessage::CursorDescriptor(descriptor))
                    })
                    .collect();
                self.start_prepared_listing(session, correlation_id, messages);
            }
            TernMessage::ListRecordingGroupsRequest(request) => {
                let session_id = session.id;
                let messages: VecDeque<Vec<u8>> = recording_groups(
                    &self.state.recordings(),
                    request.apply_stream_id.then_some(request.stream_id),
                    &request.channel_fragment,
                )
                .into_iter()
                .filter_map(|mut group| {
                    group.control_session_id = session_id;
                    group.correlation_id = correlation_id;
                    encoded(TernMessage::RecordingGroupDescriptor(group))
                })
                .collect();
                self.start_prepared_listing(session, correlation_id, messages);
            }
            TernMessage::PositionAtTimeRequest(request) => {
                let Some(source) = self.time_source(session, correlation_id, &request.time_source)
                else {
                    return;
                };
                match self.state.position_at_time_from(
                    request.recording_id,
                    request.timestamp,
                    source,
                ) {
                    Ok(position) => self.ok(session, correlation_id, position),
                    Err(error) => self.fail(session, correlation_id, &error),
                }
            }
            other => self.error(
                session,
                correlation_id,
                ArchiveErrorCode::Generic,
                &format!("{} is not a request", other.name()),
            ),
        }
    }

    fn tern_replay(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        request: proto::TernReplayRequest,
    ) {
        // Thousandths of the original pace on the wire; the range is checked once, where every
        // replay starts (`Archive::begin_replay`).
        let speed = match request.speed_millis {
            proto::TernReplayRequest::SPEED_AS_FAST_AS_POSSIBLE => None,
            millis => Some(f64::from(millis) / 1000.0),
        };
        let Some(time_source) = self.time_source(session, correlation_id, &request.time_source)
        else {
            return;
        };
        let key = if request.key_filter.is_empty() {
            None
        } else {
            match request.key_filter.parse::<tern_store::key::KeyFilter>() {
                Ok(key) => Some(key),
                Err(error) => {
                    return self.error(
                        session,
                        correlation_id,
                        ArchiveErrorCode::Generic,
                        &format!("key filter {:?}: {error}", request.key_filter),
                    )
                }
            }
        };
        let mut may_start_at_end = false;
        let position = if request.from_timestamp != proto::TernReplayRequest::FROM_TIMESTAMP_NONE {
            may_start_at_end = true;
            match self.state.position_at_time_from(
                request.recording_id,
                request.from_timestamp,
                time_source,
            ) {
                Ok(position) => position,
                Err(error) => return self.fail(session, correlation_id, &error),
            }
        } else if !request.cursor.is_empty() {
            match self.state.cursor(&request.cursor) {
                Ok(cursor) if cursor.recording_id == request.recording_id => {
                    may_start_at_end = true;
                    cursor.position
                }
                Ok(cursor) => {
                    return self.error(
                        session,
                        correlation_id,
                        ArchiveErrorCode::UnknownRecording,
                        &format!(
                            "cursor {:?} is in recording {}, not {}",
                            cursor.name, cursor.recording_id, request.recording_id
                        ),
                    )
                }
                Err(error) => return self.fail(session, correlation_id, &error),
            }
        } else {
            request.position
        };
        self.replay(
            session,
            correlation_id,
            ReplayArgs {
                recording_id: request.recording_id,
                position,
                length: request.length,
                limit_counter_id: None,
                channel: request.replay_channel,
                stream_id: request.replay_stream_id,
                speed,
                time_source,
                key,
                may_start_at_end,
            },
        );
    }

    fn start_recording(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        channel: &str,
        stream_id: i32,
        source: proto::SourceLocation,
        auto_stop: bool,
    ) {
        let source = source_location(source);
        let begun = self
            .state
            .begin_recording(channel, stream_id, source, auto_stop);
        self.await_recording(session, correlation_id, begun);
    }

    /// Answer a recording subscription's start or extension when the recorder has added it; its
    /// signals go to this request from now (they may come before the recorder's answer).
    /// Answer a truncate or purge when it is done; its `Delete` signal goes to this session.
    fn await_change(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        recording_id: i64,
        begun: Result<Pending<usize>>,
    ) {
        match begun {
            Ok(pending) => {
                self.delete_owners
                    .insert(recording_id, (session.id, correlation_id));
                self.wait_for(
                    session.id,
                    correlation_id,
                    Awaited::Change {
                        recording_id,
                        pending,
                    },
                );
            }
            Err(error) => self.fail(session, correlation_id, &error),
        }
    }

    fn await_recording(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        begun: Result<PendingRecording>,
    ) {
        match begun {
            Ok(pending) => {
                self.recording_owners
                    .insert(pending.id(), (session.id, correlation_id));
                self.wait_for(session.id, correlation_id, Awaited::Recording(pending));
            }
            Err(error) => self.fail(session, correlation_id, &error),
        }
    }

    /// Answer a recording subscription's stop when the recorder has done it.
    fn await_stop(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        subscription_id: i64,
    ) {
        match self.state.begin_stop_recording(subscription_id) {
            Ok(pending) => self.wait_for(
                session.id,
                correlation_id,
                Awaited::Stop {
                    subscription_id,
                    pending,
                },
            ),
            Err(error) => self.fail(session, correlation_id, &error),
        }
    }

    fn list_subscriptions(
        &self,
        session: &mut ControlSession,
        correlation_id: i64,
        request: &proto::ListRecordingSubscriptionsRequest,
    ) {
        if session.listing.is_some() {
            self.error(
                session,
                correlation_id,
                ArchiveErrorCode::ActiveListing,
                "active listing already in progress",
            );
            return;
        }
        let subscriptions = self.state.recording_subscriptions();
        let start = usize::try_from(request.pseudo_index).ok();
        let Some(start) =
            start.filter(|start| *start < subscriptions.len() && request.subscription_count > 0)
        else {
            session.respond(
                correlation_id,
                0,
                ControlResponseCode::SubscriptionUnknown,
                "",
            );
            return;
        };
        let wanted = request.subscription_count as usize;
        let mut sent = 0;
        for subscription in &subscriptions[start..] {
            if request.apply_stream_id && subscription.stream_id != request.stream_id {
                continue;
            }
            if !subscription.channel.contains(request.channel.as_str()) {
                continue;
            }
            let message = proto::RecordingSubscriptionDescriptor {
                control_session_id: session.id,
                correlation_id,
                subscription_id: subscription.subscription_id,
                stream_id: subscription.stream_id,
                stripped_channel: proto::to_ascii_lossy(&subscription.channel),
            };
            queue_message(session, Message::RecordingSubscriptionDescriptor(message));
            sent += 1;
            if sent >= wanted {
                return;
            }
        }
        session.respond(
            correlation_id,
            0,
            ControlResponseCode::SubscriptionUnknown,
            "",
        );
    }

    fn replay(&mut self, session: &mut ControlSession, correlation_id: i64, args: ReplayArgs) {
        let ReplayArgs {
            recording_id,
            position,
            length,
            limit_counter_id,
            channel,
            stream_id,
            speed,
            time_source,
            key,
            may_start_at_end,
        } = args;
        let Some(info) = self.recording(session, correlation_id, recording_id) else {
            return;
        };
        let start = info.descriptor.start_position;
        let end = info.recorded_position;
        let from = if position == NULL_VALUE {
            start
        } else {
            position
        };
        if from % tern_store::frame::FRAME_ALIGNMENT as i64 != 0 {
            self.error(
                session,
                correlation_id,
                ArchiveErrorCode::Generic,
                &format!(
                    "requested replay start position={from} is not a multiple of FRAME_ALIGNMENT (32) for recording {recording_id}"
                ),
            );
            return;
        }
        if from < start {
            self.error(
                session,
                correlation_id,
                ArchiveErrorCode::InvalidPosition,
                &format!(
                    "requested replay start position={from} is less than recording start position={start} for recording {recording_id}"
                ),
            );
            return;
        }
        if (position != NULL_VALUE && !may_start_at_end && !info.active && from >= end)
            || from > end
        {
            self.error(
                session,
                correlation_id,
                ArchiveErrorCode::InvalidPosition,
                &format!(
                    "requested replay start position={from} must be less than the limit position={end} for recording {recording_id}"
                ),
            );
            return;
        }
        let (follow, replay_length) = match length {
            NULL_VALUE | i64::MAX => (true, None),
            REPLAY_ALL_AND_STOP if end == from && may_start_at_end => (false, Some(0)),
            REPLAY_ALL_AND_STOP => {
                if end == from {
                    self.error(
                        session,
                        correlation_id,
                        ArchiveErrorCode::EmptyRecording,
                        &format!(
                            "when replaying and stopping the replay length must be non-zero, recordingId={recording_id}"
                        ),
                    );
                    return;
                }
                (false, None)
            }
            length if length >= 0 => (true, Some(length)),
            length => {
                self.error(
                    session,
                    correlation_id,
                    ArchiveErrorCode::Generic,
                    &format!("replay length must be positive: length={length} for recording {recording_id}"),
                );
                return;
            }
        };
        let request = ReplayRequest {
            recording_id,
            position: Some(from),
            length: replay_length,
            follow,
            channel,
            stream_id,
            speed,
            time_source,
            limit_counter_id,
            key,
            keep_positions: false,
        };
        match self.state.begin_replay(&request) {
            Ok(pending) => self.wait_for(session.id, correlation_id, Awaited::Replay(pending)),
            Err(error) => self.fail(session, correlation_id, &error),
        }
    }
}
