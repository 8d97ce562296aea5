//! The control conductor: the control server's duty cycle, a room of the archive's conductor.
//! Each cycle it polls the control channels (`adapter.rs` decodes and dispatches to
//! `handlers/`), answers what agents have answered and sends the signals (`awaiting.rs`), and
//! drives the sessions: connect, send their outboxes, listings, timeouts, close.

use super::awaiting::Awaiting;
use super::proxy::{continue_listing, listing_high_water};
use super::session::{ControlSession, Opening, Source, State};
use super::{ControlConfig, ControlStats};
use crate::conductor::{ArchiveState, Room};
use crate::error::Result;
use crate::events::RecordingEvent;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;
use tern_protocol as proto;
use tern_protocol::ArchiveErrorCode;
use tern_store::RecordingId;
use tern_transport::{
    Client, ExclusivePublication, FragmentAssembler, ImageEvent, OfferError, Subscription,
};
/// Messages taken from each control channel per duty cycle.
const FRAGMENT_LIMIT: usize = 16;
/// Messages sent to one client per duty cycle.
const SEND_LIMIT: usize = 64;

/// A session and its response publication.
pub(super) struct Slot {
    pub(super) session: ControlSession,
    pub(super) publication: ExclusivePublication,
    pub(super) was_connected: bool,
}

pub(crate) struct Conductor {
    /// Dropped with the conductor: tells the [`ControlServer`](super::ControlServer) it is gone.
    pub(super) _alive: std::sync::mpsc::Sender<()>,
    pub(super) config: ControlConfig,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) stats: Arc<ControlStats>,
    pub(super) client: Client,
    pub(super) subscriptions: Vec<Subscription>,
    pub(super) assemblers: Vec<FragmentAssembler>,
    pub(super) slots: BTreeMap<i64, Slot>,
    pub(super) next_session_id: i64,
    pub(super) archive_id: i64,
    /// Which session (and request) started each recording subscription, for its signals.
    pub(super) recording_owners: HashMap<i64, (i64, i64)>,
    /// Which session asked to truncate or purge each recording, for the DELETE signal.
    pub(super) delete_owners: HashMap<RecordingId, (i64, i64, u64)>,
    pub(super) events: Receiver<RecordingEvent>,
    /// Recording events taken in and not signalled yet, numbered in the order they came; those
    /// that came after a request about their subscription wait for its answer.
    pub(super) held_events: Vec<(u64, RecordingEvent)>,
    /// Recording events taken in so far (the next one's number).
    pub(super) events_seen: u64,
    /// Requests handed to the replayer or the recorder and not answered by them yet: answered
    /// when they are, so the duty cycle never waits for an agent.
    pub(super) awaiting: Vec<Awaiting>,
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

    pub(super) fn do_work(&mut self, state: &mut ArchiveState, now: Instant) -> usize {
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

    pub(super) fn on_connect(
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
    pub(super) fn live_sessions(&self) -> usize {
        self.slots
            .values()
            .filter(|slot| !slot.session.is_done() && !slot.session.is_refusal())
            .count()
    }

    /// Sessions being refused (their error on its way).
    pub(super) fn refusals(&self) -> usize {
        self.slots
            .values()
            .filter(|slot| !slot.session.is_done() && slot.session.is_refusal())
            .count()
    }

    /// Connect, list, send and time out every session; close those that are done.
    pub(super) fn drive_sessions(&mut self, state: &ArchiveState, now: Instant) -> usize {
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

    pub(super) fn close(&mut self, state: &ArchiveState, slot: Slot) {
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
