//! Requests an agent answers later: what the control conductor awaits ([`Awaiting`]), answering
//! them when their agent has (in request order, each duty cycle), and the recording signals,
//! held while a request about their subscription is unanswered.

use crate::conductor::ArchiveState;
use crate::error::ArchiveError;
use crate::events::RecordingSignalKind;
use crate::types::{stopped_by_identity, Pending, PendingRecording, PendingReplay, PendingSeek};
use std::collections::{HashMap, HashSet};
use tern_protocol as proto;
use tern_protocol::ArchiveErrorCode;
use tern_protocol::{ControlResponseCode, Message};
use tern_store::RecordingId;

use super::conductor::Conductor;
use super::proxy::{queue_message, send_error};

/// A request waiting for an agent's answer: whom to answer, and with what.
pub(super) struct Awaiting {
    pub(super) session_id: i64,
    pub(super) correlation_id: i64,
    pub(super) what: Awaited,
    /// Recording events numbered from here on came after the request (their signals wait for
    /// its answer); earlier ones did not.
    pub(super) events_after: u64,
    /// The session closed because its client died: a replay that starts for it is stopped.
    pub(super) orphaned: bool,
}

pub(super) enum Awaited {
    /// A replay's start: OK with the replay id.
    Replay(PendingReplay),
    /// A recording subscription (a start or an extension): OK with its id.
    Recording(PendingRecording),
    /// A recording subscription's stop: OK 0, or Aeron's unknown-subscription error.
    Stop {
        subscription_id: i64,
        pending: Pending<Vec<RecordingId>>,
    },
    /// A stop by recording identity: OK with 1 if it stopped it, 0 if it was not recording.
    StopByIdentity {
        subscription_id: i64,
        pending: Pending<Vec<RecordingId>>,
    },
    /// A replay's seek: OK with the replay's new image session id.
    Seek(PendingSeek),
    /// A truncate or purge: OK with the number of segment files to delete.
    Change {
        recording_id: RecordingId,
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

impl Conductor {
    /// Answer the requests whose agents have answered. A replay whose session went meanwhile is
    /// stopped; a recording goes on without its session, as in Aeron.
    pub(super) fn answer_awaited(&mut self, state: &mut ArchiveState) -> usize {
        let mut work = 0;
        let mut index = 0;
        while index < self.awaiting.len() {
            let answer = match &self.awaiting[index].what {
                Awaited::Replay(pending) => state
                    .poll_replay_start(pending)
                    .map(|outcome| outcome.map(|replay_id| (replay_id.get(), Some(replay_id)))),
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
    pub(super) fn take_events(&mut self) {
        for event in self.events.try_iter() {
            self.held_events.push((self.events_seen, event));
            self.events_seen += 1;
        }
    }

    pub(super) fn signal_events(&mut self, state: &ArchiveState) -> usize {
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
                ready.push((number, event));
            }
        }
        self.held_events = held;
        for (number, event) in ready {
            work += 1;
            let owner = match event.signal {
                // Only a Delete that came after the request is its answer's: an earlier one ends
                // an operation before it (another session's, or the embedded handle's).
                RecordingSignalKind::Delete => match event
                    .recording_id
                    .and_then(|recording_id| self.delete_owners.get_key_value(&recording_id))
                {
                    Some((&recording_id, &(session_id, correlation_id, after)))
                        if number >= after =>
                    {
                        self.delete_owners.remove(&recording_id);
                        Some((session_id, correlation_id))
                    }
                    _ => None,
                },
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
                recording_id: event
                    .recording_id
                    .map_or(proto::NULL_VALUE, RecordingId::get),
                subscription_id: event.subscription_id,
                position: event.position,
                signal,
            };
            queue_message(&mut slot.session, Message::RecordingSignalEvent(message));
        }
        work
    }
}
