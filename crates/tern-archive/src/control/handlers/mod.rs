//! The request handlers: [`Context::serve`] (Aeron's requests) and [`Context::serve_tern`]
//! (tern's), one arm per request; the families with more to them are in `recordings.rs`
//! (start, stop, extend, truncate, purge, subscriptions) and `replays.rs` (replays from a
//! position, a time or a cursor, with pacing and a key).

use super::session::{ControlSession, Listing};
use super::ControlStats;
use crate::conductor::ArchiveState;
use crate::error::{ArchiveError, Result};
use crate::types::RecordingInfo;
use std::collections::{HashMap, VecDeque};
use tern_protocol as proto;
use tern_protocol::ArchiveErrorCode;
use tern_protocol::NULL_VALUE;
use tern_protocol::{ControlResponseCode, Message, TernMessage};
use tern_store::message_time::TimeSource;
use tern_store::{RecordingId, ReplayId};

mod recordings;
mod replays;

use super::adapter::source_location;
use super::awaiting::{Awaited, Awaiting};
use super::proxy::{
    cursor_descriptor, descriptor_message, encoded, queue_message, recording_groups, send_error,
};
use replays::ReplayArgs;

/// What a request handler needs besides its session.
pub(super) struct Context<'a> {
    pub(super) state: &'a mut ArchiveState,
    pub(super) stats: &'a ControlStats,
    pub(super) archive_id: i64,
    pub(super) recording_owners: &'a mut HashMap<i64, (i64, i64)>,
    /// Which session (and request) asked to truncate or purge each recording, and from which
    /// recording event on its `Delete` may come (an earlier one is another operation's).
    pub(super) delete_owners: &'a mut HashMap<RecordingId, (i64, i64, u64)>,
    /// Where a request waits for the agent that answers it.
    pub(super) awaiting: &'a mut Vec<Awaiting>,
    /// How many recording events the conductor has taken in so far.
    pub(super) events_seen: u64,
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
        recording_id: RecordingId,
    ) -> Option<RecordingInfo> {
        match self.state.recording(recording_id) {
            Ok(info) => Some(info),
            Err(error) => {
                self.fail(session, correlation_id, &error);
                None
            }
        }
    }

    /// Whether the session has a listing going: then the request is answered with Aeron's
    /// `ActiveListing` error (one listing at a time per session).
    pub(super) fn listing_in_progress(
        &self,
        session: &mut ControlSession,
        correlation_id: i64,
    ) -> bool {
        if session.listing.is_some() {
            self.error(
                session,
                correlation_id,
                ArchiveErrorCode::ActiveListing,
                "active listing already in progress",
            );
        }
        session.listing.is_some()
    }

    fn start_listing(&self, session: &mut ControlSession, correlation_id: i64, listing: Listing) {
        if !self.listing_in_progress(session, correlation_id) {
            session.listing = Some(listing);
        }
    }

    /// Start a listing of `count` recordings from id `from` (those on `filter`'s stream whose
    /// channel holds its text, if given).
    fn list_recordings(
        &self,
        session: &mut ControlSession,
        correlation_id: i64,
        from: i64,
        count: i32,
        filter: Option<(i32, String)>,
    ) {
        self.start_listing(
            session,
            correlation_id,
            Listing::Recordings {
                correlation_id,
                next_id: from.max(0),
                remaining: i64::from(count),
                filter,
            },
        );
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

    pub(super) fn serve(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        message: Message,
    ) {
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
            Message::ListRecordingsRequest(request) => self.list_recordings(
                session,
                correlation_id,
                request.from_recording_id,
                request.record_count,
                None,
            ),
            Message::ListRecordingsForUriRequest(request) => self.list_recordings(
                session,
                correlation_id,
                request.from_recording_id,
                request.record_count,
                Some((request.stream_id, request.channel)),
            ),
            Message::ListRecordingRequest(request) => {
                if !self.listing_in_progress(session, correlation_id) {
                    match self.state.recording(RecordingId::new(request.recording_id)) {
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
                let min_recording_id = RecordingId::new(request.min_recording_id);
                let found = self
                    .state
                    .recordings()
                    .into_iter()
                    .rev()
                    .take_while(|info| info.descriptor.recording_id >= min_recording_id)
                    .find(|info| {
                        let d = &info.descriptor;
                        d.session_id == request.session_id
                            && d.stream_id == request.stream_id
                            && d.original_channel.contains(request.channel.as_str())
                    })
                    .map_or(NULL_VALUE, |info| info.descriptor.recording_id.get());
                self.ok(session, correlation_id, found);
            }
            Message::ListRecordingSubscriptionsRequest(request) => {
                self.list_subscriptions(session, correlation_id, &request)
            }
            Message::RecordingPositionRequest(request) => {
                if let Some(info) = self.recording(
                    session,
                    correlation_id,
                    RecordingId::new(request.recording_id),
                ) {
                    let position = if info.active {
                        info.recorded_position
                    } else {
                        NULL_VALUE
                    };
                    self.ok(session, correlation_id, position);
                }
            }
            Message::StartPositionRequest(request) => {
                if let Some(info) = self.recording(
                    session,
                    correlation_id,
                    RecordingId::new(request.recording_id),
                ) {
                    self.ok(session, correlation_id, info.descriptor.start_position);
                }
            }
            Message::StopPositionRequest(request) => {
                if let Some(info) = self.recording(
                    session,
                    correlation_id,
                    RecordingId::new(request.recording_id),
                ) {
                    self.ok(session, correlation_id, info.descriptor.stop_position);
                }
            }
            Message::MaxRecordedPositionRequest(request) => {
                if let Some(info) = self.recording(
                    session,
                    correlation_id,
                    RecordingId::new(request.recording_id),
                ) {
                    self.ok(session, correlation_id, info.recorded_position);
                }
            }
            Message::ReplayRequest(request) => self.replay(
                session,
                correlation_id,
                ReplayArgs {
                    recording_id: RecordingId::new(request.recording_id),
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
                    recording_id: RecordingId::new(request.recording_id),
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
                let replay_id = ReplayId::new(request.replay_session_id);
                let _ = self.state.stop_replay(replay_id);
                session.replays.remove(&replay_id);
                self.ok(session, correlation_id, 0);
            }
            Message::StopRecordingByIdentityRequest(request) => {
                match self
                    .state
                    .begin_stop_by_identity(RecordingId::new(request.recording_id))
                {
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
                    RecordingId::new(request.recording_id),
                    &request.channel,
                    request.stream_id,
                    source,
                    request.auto_stop,
                );
                self.await_recording(session, correlation_id, begun);
            }
            Message::TruncateRecordingRequest(request) => {
                let recording_id = RecordingId::new(request.recording_id);
                let begun = self
                    .state
                    .begin_truncate(recording_id, request.position, false);
                self.await_change(session, correlation_id, recording_id, begun);
            }
            Message::PurgeRecordingRequest(request) => {
                let recording_id = RecordingId::new(request.recording_id);
                let begun = self.state.begin_purge(recording_id, false);
                self.await_change(session, correlation_id, recording_id, begun);
            }
            Message::StopAllReplaysRequest(request) => {
                let recording = (request.recording_id != NULL_VALUE)
                    .then_some(RecordingId::new(request.recording_id));
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

    /// Serve a tern extension request (schema 1101).
    pub(super) fn serve_tern(
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
                let id = ReplayId::new(request.replay_session_id);
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
                match self.state.set_cursor(
                    &request.name,
                    RecordingId::new(request.recording_id),
                    request.position,
                ) {
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
                    RecordingId::new(request.recording_id),
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
}
