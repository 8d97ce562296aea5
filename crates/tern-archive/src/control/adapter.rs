//! The control adapter: what comes in on the control channels, decoded (either schema), checked
//! against the session it names and its source, and handed to the handlers; malformed messages
//! answered or logged.

use super::session::{ControlSession, Source};
use super::ControlStats;
use crate::conductor::ArchiveState;
use crate::types::SourceLocation;
use std::collections::BTreeMap;
use std::time::Instant;
use tern_protocol as proto;
use tern_protocol::ArchiveErrorCode;
use tern_protocol::NULL_VALUE;
use tern_protocol::{AnyMessage, DecodeError, Message, MessageHeader, TernMessage};

use super::conductor::{Conductor, Slot};
use super::handlers::Context;
use super::proxy::send_error;

impl Conductor {
    pub(super) fn on_message(
        &mut self,
        state: &mut ArchiveState,
        now: Instant,
        source: Source,
        bytes: &[u8],
    ) {
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
    pub(super) fn on_malformed(
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

    pub(super) fn on_request(
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

    pub(super) fn on_tern_request(
        &mut self,
        state: &mut ArchiveState,
        source: Source,
        message: TernMessage,
    ) {
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
    pub(super) fn dispatch(
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
}

/// The session a request names, if it came from that session's client and the session serves
/// requests (authenticated); logs why not otherwise.
pub(super) fn request_session<'a>(
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
pub(super) fn tern_request_ids(message: &TernMessage) -> Option<(i64, i64)> {
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

pub(super) fn source_location(source: proto::SourceLocation) -> SourceLocation {
    match source {
        proto::SourceLocation::Local => SourceLocation::Local,
        proto::SourceLocation::Remote => SourceLocation::Remote,
    }
}

/// The control session id and correlation id of a request (`None`: not a request).
pub(super) fn request_ids(message: &Message) -> Option<(i64, i64)> {
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
