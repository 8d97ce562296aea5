//! Replay requests, Aeron's and tern's: from a position, a time or a cursor, bounded, paced,
//! by key; the checks of Aeron's request semantics (lengths -1 and -2, position -1).

use crate::control::session::ControlSession;
use crate::types::ReplayRequest;
use tern_protocol as proto;
use tern_protocol::ArchiveErrorCode;
use tern_protocol::NULL_VALUE;
use tern_store::message_time::TimeSource;
use tern_store::RecordingId;

use super::Context;
use crate::control::awaiting::Awaited;

/// Aeron's `REPLAY_ALL_AND_STOP` replay length.
pub(super) const REPLAY_ALL_AND_STOP: i64 = -2;

/// A replay request, from either schema.
pub(super) struct ReplayArgs {
    pub(super) recording_id: RecordingId,
    /// Aeron's: -1 for the recording's start.
    pub(super) position: i64,
    /// Aeron's: -1 or `i64::MAX` follow, -2 to the current end, else bytes.
    pub(super) length: i64,
    pub(super) limit_counter_id: Option<i32>,
    pub(super) channel: String,
    pub(super) stream_id: i32,
    pub(super) speed: Option<f64>,
    pub(super) time_source: TimeSource,
    /// Only the messages of one key (sent back to back).
    pub(super) key: Option<tern_store::key::KeyFilter>,
    /// The position was found from a time or a cursor: it may be the end of a stopped
    /// recording (an empty replay), which Aeron refuses for a position given outright.
    pub(super) may_start_at_end: bool,
}

impl Context<'_> {
    pub(super) fn time_source(
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

    pub(super) fn tern_replay(
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
        let recording_id = RecordingId::new(request.recording_id);
        let mut may_start_at_end = false;
        let position = if request.from_timestamp != proto::TernReplayRequest::FROM_TIMESTAMP_NONE {
            may_start_at_end = true;
            match self.state.position_at_time_from(
                recording_id,
                request.from_timestamp,
                time_source,
            ) {
                Ok(position) => position,
                Err(error) => return self.fail(session, correlation_id, &error),
            }
        } else if !request.cursor.is_empty() {
            match self.state.cursor(&request.cursor) {
                Ok(cursor) if cursor.recording_id == recording_id => {
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
                recording_id,
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

    pub(super) fn replay(
        &mut self,
        session: &mut ControlSession,
        correlation_id: i64,
        args: ReplayArgs,
    ) {
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
