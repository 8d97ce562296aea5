//! tern's own requests (extension schema 1101, `docs/protocol.md` section 10): replays from a
//! time or a named cursor with pacing and a key filter, pause / resume / seek of a running
//! replay, durable named cursors, recordings grouped by channel and stream, the position of a
//! time. Only a tern archive answers them; an Aeron archive ignores their schema.

use crate::client::ArchiveClient;
use crate::control::{Incoming, ListKind};
use crate::error::ClientError;
use crate::types::NULL_VALUE;
use tern_protocol::{
    cursor_name_is_valid, ControlResponseCode, CursorDescriptor, DeleteCursorRequest,
    GetCursorRequest, ListCursorsRequest, ListRecordingGroupsRequest, PositionAtTimeRequest,
    RecordingGroupDescriptor, ReplayAction, ReplayControlRequest, SetCursorRequest, TernMessage,
    TernReplayRequest, CURSOR_NAME_MAX_LENGTH,
};
use tern_store::{RecordingId, ReplayId};

/// Where a [`TernReplay`] starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayStart {
    /// At a stream position of the recording (a frame start).
    Position(i64),
    /// At the recording's start position.
    RecordingStart,
    /// At the first message whose time (read with [`TernReplay::time_source`]) is at or after
    /// this many nanoseconds since the epoch: the recording's start for a time before its first
    /// message, its end for a time after its last.
    Time(i64),
    /// At the position of the named durable cursor, which must point into the replayed
    /// recording (else the archive answers `UNKNOWN_RECORDING`).
    Cursor(String),
}

/// How much a [`TernReplay`] replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayLength {
    /// Everything, following a live recording as it grows (Aeron's -1).
    Follow,
    /// Up to the recording's end as it is when the replay starts: its stop position, or the
    /// recorded position of an active recording (tern's -2).
    ToCurrentEnd,
    /// This many bytes (at least 0).
    Bytes(i64),
}

impl ReplayLength {
    /// The `length` of a `TernReplayRequest`.
    pub fn value(self) -> i64 {
        match self {
            Self::Follow => TernReplayRequest::LENGTH_FOLLOW,
            Self::ToCurrentEnd => TernReplayRequest::LENGTH_TO_CURRENT_END,
            Self::Bytes(bytes) => bytes,
        }
    }
}

/// A replay with tern's options, for [`ArchiveClient::tern_replay`] (`TernReplayRequest`).
///
/// ```
/// use tern_client::{RecordingId, ReplayLength, ReplayStart, TernReplay};
///
/// let replay = TernReplay::new(RecordingId::new(7), "aeron:ipc", 2002)
///     .with_start(ReplayStart::Time(1_764_000_000_000_000_000))
///     .with_length(ReplayLength::ToCurrentEnd)
///     .with_speed(2.0)
///     .with_time_source("cluster-egress:ms")
///     .with_key_filter("cluster-egress:42");
/// assert_eq!(replay.speed, Some(2.0));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TernReplay {
    /// The recording to replay.
    pub recording_id: RecordingId,
    /// Where to start (default: [`ReplayStart::RecordingStart`]).
    pub start: ReplayStart,
    /// How much (default: [`ReplayLength::Follow`]).
    pub length: ReplayLength,
    /// Pace relative to the recording's ([`TernReplay::SPEED_MIN`]..=[`TernReplay::SPEED_MAX`];
    /// 1.0: the original pace); `None` (default): as fast as possible, as Aeron replays.
    pub speed: Option<f64>,
    /// Where a message's time comes from, for [`ReplayStart::Time`] and pacing, in the archive's
    /// syntax: `""` or `"capture"` (when the archive recorded it, the default),
    /// `"cluster-egress"`, `"cluster-egress:UNIT"`, `"tern-egress"`, `"field:OFFSET:UNIT"` (UNIT
    /// `ns`, `us`, `ms`, `s`).
    pub time_source: String,
    /// Which messages to replay, in the archive's syntax: `""` (all, the default),
    /// `"reserved:7"`, `"cluster-egress:42"`, `"tern-egress:42"`, `"field:16:i64:99"`,
    /// `"session:5"`.
    pub key_filter: String,
    /// Channel to replay on.
    pub replay_channel: String,
    /// Stream id to replay on.
    pub replay_stream_id: i32,
}

impl TernReplay {
    /// Slowest pace: a hundredth of the original.
    pub const SPEED_MIN: f64 = 0.01;
    /// Fastest pace: a thousand times the original.
    pub const SPEED_MAX: f64 = 1000.0;

    /// A replay of `recording_id` to `replay_channel` / `replay_stream_id` from the recording's
    /// start, following it, as fast as possible, every message, times as captured.
    pub fn new(
        recording_id: RecordingId,
        replay_channel: impl Into<String>,
        replay_stream_id: i32,
    ) -> Self {
        Self {
            recording_id,
            start: ReplayStart::RecordingStart,
            length: ReplayLength::Follow,
            speed: None,
            time_source: String::new(),
            key_filter: String::new(),
            replay_channel: replay_channel.into(),
            replay_stream_id,
        }
    }

    /// Sets where to start.
    pub fn with_start(mut self, start: ReplayStart) -> Self {
        self.start = start;
        self
    }

    /// Sets how much to replay.
    pub fn with_length(mut self, length: ReplayLength) -> Self {
        self.length = length;
        self
    }

    /// Paces the replay at `speed` times the original pace (checked when sent).
    pub fn with_speed(mut self, speed: f64) -> Self {
        self.speed = Some(speed);
        self
    }

    /// Sets the time source.
    pub fn with_time_source(mut self, time_source: impl Into<String>) -> Self {
        self.time_source = time_source.into();
        self
    }

    /// Sets the key filter.
    pub fn with_key_filter(mut self, key_filter: impl Into<String>) -> Self {
        self.key_filter = key_filter.into();
        self
    }

    /// The request, but for the session and correlation ids.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a speed outside
    /// [`TernReplay::SPEED_MIN`]..=[`TernReplay::SPEED_MAX`], a negative byte length, the start
    /// time `i64::MIN` (the wire's "no time"), or a cursor name that is not 1..=128 ASCII bytes
    /// (an empty one would mean "no cursor" on the wire).
    fn to_request(
        &self,
        control_session_id: i64,
        correlation_id: i64,
    ) -> Result<TernReplayRequest, ClientError> {
        let speed_millis = speed_millis(self.speed)?;
        if let ReplayLength::Bytes(bytes) = self.length {
            if bytes < 0 {
                return Err(ClientError::InvalidArgument(format!(
                    "replay length {bytes}: a byte count is at least 0 (ReplayLength::Follow \
                     follows)"
                )));
            }
        }
        let mut position = TernReplayRequest::POSITION_FROM_START;
        let mut from_timestamp = TernReplayRequest::FROM_TIMESTAMP_NONE;
        let mut cursor = String::new();
        match &self.start {
            ReplayStart::Position(at) => position = *at,
            ReplayStart::RecordingStart => {}
            ReplayStart::Time(time) => {
                if *time == TernReplayRequest::FROM_TIMESTAMP_NONE {
                    return Err(ClientError::InvalidArgument(
                        "replay start time i64::MIN is the protocol's \"no time\"".into(),
                    ));
                }
                from_timestamp = *time;
            }
            ReplayStart::Cursor(name) => {
                check_cursor_name(name)?;
                cursor = name.clone();
            }
        }
        Ok(TernReplayRequest {
            control_session_id,
            correlation_id,
            recording_id: self.recording_id.get(),
            position,
            length: self.length.value(),
            from_timestamp,
            speed_millis,
            replay_stream_id: self.replay_stream_id,
            replay_channel: self.replay_channel.clone(),
            time_source: self.time_source.clone(),
            key_filter: self.key_filter.clone(),
            cursor,
        })
    }
}

/// The `speedMillis` of a pace: 0 for `None`, else the pace × 1000, rounded.
fn speed_millis(speed: Option<f64>) -> Result<i32, ClientError> {
    let Some(speed) = speed else {
        return Ok(TernReplayRequest::SPEED_AS_FAST_AS_POSSIBLE);
    };
    // NaN is in no range.
    if !(TernReplay::SPEED_MIN..=TernReplay::SPEED_MAX).contains(&speed) {
        return Err(ClientError::InvalidArgument(format!(
            "replay speed {speed} is outside {} ..= {} (None: as fast as possible)",
            TernReplay::SPEED_MIN,
            TernReplay::SPEED_MAX
        )));
    }
    let millis = (speed * 1000.0).round() as i32;
    debug_assert!(TernReplayRequest::speed_millis_is_valid(millis));
    Ok(millis)
}

fn check_cursor_name(name: &str) -> Result<(), ClientError> {
    if cursor_name_is_valid(name) {
        Ok(())
    } else {
        Err(ClientError::InvalidArgument(format!(
            "cursor name {name:?}: 1 ..= {CURSOR_NAME_MAX_LENGTH} printable ASCII bytes, no spaces"
        )))
    }
}

/// A durable named cursor: a position in a recording the archive keeps under a name (the
/// archive's own type: the same on both sides of the wire).
pub use tern_store::Cursor;

fn cursor_of(message: CursorDescriptor) -> Cursor {
    Cursor {
        name: message.name,
        recording_id: RecordingId::new(message.recording_id),
        position: message.position,
        updated_ns: message.updated_timestamp,
    }
}

/// The recordings of one (channel, stream), as [`ArchiveClient::list_recording_groups`]
/// describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingGroup {
    /// The group's stripped channel.
    pub channel: String,
    /// The group's stream id.
    pub stream_id: i32,
    /// Lowest recording id in the group.
    pub first_recording_id: RecordingId,
    /// Highest recording id in the group.
    pub last_recording_id: RecordingId,
    /// Bytes recorded by the group: the sum of stop − start positions (recorded − start for an
    /// active recording).
    pub total_bytes: i64,
    /// Earliest start of the group, ms since the epoch.
    pub first_start_timestamp: i64,
    /// Latest stop of the group, ms since the epoch; `None` while any recording is active.
    pub last_stop_timestamp: Option<i64>,
    /// Number of recordings in the group.
    pub recording_count: i32,
    /// Number of them still recording.
    pub active_count: i32,
}

impl From<RecordingGroupDescriptor> for RecordingGroup {
    fn from(message: RecordingGroupDescriptor) -> Self {
        Self {
            channel: message.channel,
            stream_id: message.stream_id,
            first_recording_id: RecordingId::new(message.first_recording_id),
            last_recording_id: RecordingId::new(message.last_recording_id),
            total_bytes: message.total_bytes,
            first_start_timestamp: message.first_start_timestamp,
            last_stop_timestamp: (message.last_stop_timestamp != NULL_VALUE)
                .then_some(message.last_stop_timestamp),
            recording_count: message.recording_count,
            active_count: message.active_count,
        }
    }
}

/// The session id of a seek's new image: the relevant id of the OK response.
fn image_session_id(relevant_id: i64) -> Result<i32, ClientError> {
    i32::try_from(relevant_id).map_err(|_| {
        ClientError::Protocol(format!(
            "a seek answered with {relevant_id}, which is no image session id"
        ))
    })
}

/// # tern's extensions (schema 1101)
///
/// Requests only a tern archive answers (`docs/protocol.md` section 10). Errors are as for any
/// request: an ERROR response is [`ClientError::Archive`] with the archive's message.
impl ArchiveClient {
    /// Replays a recording with tern's options (`TernReplayRequest`): from a position, a time or
    /// a named cursor, for a length, paced, filtered by key. Returns the replay session id, as
    /// [`ArchiveClient::replay`] does; its low 32 bits are the replay image's session id
    /// ([`ReplayId::image_session_id`]).
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a value that cannot be sent (see
    /// [`TernReplay::speed`], [`ReplayStart`], [`ReplayLength::Bytes`]) before anything is sent;
    /// the archive's errors (an unknown recording or cursor, a cursor in another recording, a
    /// time source or key filter it cannot parse, a bad position).
    pub fn tern_replay(&mut self, request: &TernReplay) -> Result<ReplayId, ClientError> {
        // Checked before a correlation id is taken: nothing is sent for a bad request.
        let template = request.to_request(0, 0)?;
        self.request_message(|control_session_id, correlation_id| {
            TernMessage::TernReplayRequest(TernReplayRequest {
                control_session_id,
                correlation_id,
                ..template
            })
        })
        .map(|response| ReplayId::new(response.relevant_id))
    }

    fn control_replay(
        &mut self,
        replay_session_id: ReplayId,
        action: ReplayAction,
        value: i64,
        time_source: &str,
    ) -> Result<i64, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            TernMessage::ReplayControlRequest(ReplayControlRequest {
                control_session_id,
                correlation_id,
                replay_session_id: replay_session_id.get(),
                value,
                action,
                time_source: time_source.to_string(),
            })
        })
        .map(|response| response.relevant_id)
    }

    /// Pauses a replay of this session: nothing more is sent until
    /// [`ArchiveClient::resume_replay`] (or a seek).
    ///
    /// # Errors
    /// The archive's (`UNKNOWN_REPLAY` for a replay this session does not own).
    pub fn pause_replay(&mut self, replay_session_id: ReplayId) -> Result<(), ClientError> {
        self.control_replay(replay_session_id, ReplayAction::Pause, 0, "")
            .map(drop)
    }

    /// Resumes a paused replay where it stopped; a paced schedule moves by the pause.
    ///
    /// # Errors
    /// As [`ArchiveClient::pause_replay`].
    pub fn resume_replay(&mut self, replay_session_id: ReplayId) -> Result<(), ClientError> {
        self.control_replay(replay_session_id, ReplayAction::Resume, 0, "")
            .map(drop)
    }

    /// Moves a replay to `position` (a frame start of the recording); it also resumes. The
    /// replay's image ends and a new one starts at the target: returns the new image's session
    /// id (subscribe to it, or use a subscription without `session-id`).
    ///
    /// # Errors
    /// The archive's (a position that is not a frame start, an unknown replay); the replay goes
    /// on unchanged then.
    pub fn seek_replay(
        &mut self,
        replay_session_id: ReplayId,
        position: i64,
    ) -> Result<i32, ClientError> {
        let relevant_id =
            self.control_replay(replay_session_id, ReplayAction::SeekPosition, position, "")?;
        image_session_id(relevant_id)
    }

    /// Moves a replay to the first message whose time (read with `time_source`, the syntax of
    /// [`TernReplay::time_source`]) is at or after `epoch_ns`; as
    /// [`ArchiveClient::seek_replay`] otherwise.
    ///
    /// # Errors
    /// As [`ArchiveClient::seek_replay`]; a time source the archive cannot parse.
    pub fn seek_replay_to_time(
        &mut self,
        replay_session_id: ReplayId,
        epoch_ns: i64,
        time_source: &str,
    ) -> Result<i32, ClientError> {
        let relevant_id = self.control_replay(
            replay_session_id,
            ReplayAction::SeekTime,
            epoch_ns,
            time_source,
        )?;
        image_session_id(relevant_id)
    }

    /// Creates the durable cursor `name` or moves it to `position` of `recording_id`.
    ///
    /// # Errors
    /// [`ClientError::InvalidArgument`] for a name that is not 1..=128 ASCII bytes; the
    /// archive's (an unknown recording, a position outside it).
    pub fn set_cursor(
        &mut self,
        name: &str,
        recording_id: RecordingId,
        position: i64,
    ) -> Result<(), ClientError> {
        check_cursor_name(name)?;
        self.request_message(|control_session_id, correlation_id| {
            TernMessage::SetCursorRequest(SetCursorRequest {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
                position,
                name: name.to_string(),
            })
        })
        .map(drop)
    }

    /// The durable cursor `name` (`GetCursorRequest`, answered with a `CursorDescriptor`).
    ///
    /// # Errors
    /// The archive's ERROR if there is no such cursor; [`ClientError::Protocol`] if it answers
    /// with anything but a descriptor or an ERROR.
    pub fn cursor(&mut self, name: &str) -> Result<Cursor, ClientError> {
        let answer = self.request_answer(|control_session_id, correlation_id| {
            TernMessage::GetCursorRequest(GetCursorRequest {
                control_session_id,
                correlation_id,
                name: name.to_string(),
            })
        })?;
        match answer {
            Incoming::Cursor(descriptor) => Ok(cursor_of(descriptor)),
            Incoming::Response(response) if response.code == ControlResponseCode::Error => {
                Err(crate::control::archive_error(&response))
            }
            other => Err(ClientError::Protocol(format!(
                "the archive answered GetCursorRequest for {name:?} with {other:?}, not a \
                 CursorDescriptor"
            ))),
        }
    }

    /// Deletes the durable cursor `name`; `false` if there was none.
    ///
    /// # Errors
    /// As any request.
    pub fn delete_cursor(&mut self, name: &str) -> Result<bool, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            TernMessage::DeleteCursorRequest(DeleteCursorRequest {
                control_session_id,
                correlation_id,
                name: name.to_string(),
            })
        })
        .map(|response| response.relevant_id != 0)
    }

    /// The durable cursors whose names start with `prefix` (`""`: all), in the archive's order
    /// (by name).
    ///
    /// # Errors
    /// As any request; a timeout if a descriptor is more than the message timeout apart from
    /// the previous one; [`ClientError::Protocol`] if the end marker's count is not the number
    /// of descriptors that came.
    pub fn cursors(&mut self, prefix: &str) -> Result<Vec<Cursor>, ClientError> {
        let listed = self.list(
            usize::MAX,
            ListKind::Cursors,
            |control_session_id, correlation_id| {
                TernMessage::ListCursorsRequest(ListCursorsRequest {
                    control_session_id,
                    correlation_id,
                    name_prefix: prefix.to_string(),
                })
            },
        )?;
        Ok(listed
            .into_iter()
            .filter_map(|incoming| match incoming {
                Incoming::Cursor(descriptor) => Some(cursor_of(descriptor)),
                _ => None,
            })
            .collect())
    }

    /// The recordings grouped by (stripped channel, stream id), for the channels that contain
    /// `channel_fragment` (`""`: every channel) and, with `Some(stream_id)`, that stream only;
    /// in the order of each group's first recording.
    ///
    /// # Errors
    /// As [`ArchiveClient::cursors`].
    pub fn list_recording_groups(
        &mut self,
        stream_id: Option<i32>,
        channel_fragment: &str,
    ) -> Result<Vec<RecordingGroup>, ClientError> {
        let listed = self.list(
            usize::MAX,
            ListKind::Groups,
            |control_session_id, correlation_id| {
                TernMessage::ListRecordingGroupsRequest(ListRecordingGroupsRequest {
                    control_session_id,
                    correlation_id,
                    stream_id: stream_id.unwrap_or(0),
                    apply_stream_id: stream_id.is_some(),
                    channel_fragment: channel_fragment.to_string(),
                })
            },
        )?;
        Ok(listed
            .into_iter()
            .filter_map(|incoming| match incoming {
                Incoming::Group(descriptor) => Some(descriptor.into()),
                _ => None,
            })
            .collect())
    }

    /// The position of the first message of `recording_id` whose time (read with
    /// `time_source`, the syntax of [`TernReplay::time_source`]) is at or after `epoch_ns`: the
    /// recording's start for a time before its first message, its end (stop or recorded
    /// position) for a time after its last.
    ///
    /// # Errors
    /// The archive's (an unknown recording, a time source it cannot parse).
    pub fn position_at_time(
        &mut self,
        recording_id: RecordingId,
        epoch_ns: i64,
        time_source: &str,
    ) -> Result<i64, ClientError> {
        self.request_message(|control_session_id, correlation_id| {
            TernMessage::PositionAtTimeRequest(PositionAtTimeRequest {
                control_session_id,
                correlation_id,
                recording_id: recording_id.get(),
                timestamp: epoch_ns,
                time_source: time_source.to_string(),
            })
        })
        .map(|response| response.relevant_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_map_to_thousandths_and_out_of_range_speeds_are_refused() {
        assert_eq!(speed_millis(None).expect("none"), 0);
        assert_eq!(speed_millis(Some(1.0)).expect("1x"), 1000);
        assert_eq!(speed_millis(Some(0.01)).expect("min"), 10);
        assert_eq!(speed_millis(Some(1000.0)).expect("max"), 1_000_000);
        assert_eq!(speed_millis(Some(2.5)).expect("2.5x"), 2500);
        for bad in [0.0, 0.009, 1000.5, -1.0, f64::NAN, f64::INFINITY] {
            match speed_millis(Some(bad)) {
                Err(ClientError::InvalidArgument(message)) => {
                    assert!(message.contains("outside"), "{message}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn starts_and_lengths_become_the_request_s_fields() {
        let base = TernReplay::new(RecordingId::new(3), "aeron:ipc", 9);
        let request = base.to_request(1, 2).expect("default");
        assert_eq!(
            (
                request.position,
                request.length,
                request.from_timestamp,
                request.speed_millis
            ),
            (-1, -1, i64::MIN, 0)
        );
        assert!(request.cursor.is_empty());

        let request = base
            .clone()
            .with_start(ReplayStart::Position(4096))
            .with_length(ReplayLength::Bytes(100))
            .to_request(1, 2)
            .expect("position");
        assert_eq!((request.position, request.length), (4096, 100));

        let request = base
            .clone()
            .with_start(ReplayStart::Time(77))
            .with_length(ReplayLength::ToCurrentEnd)
            .to_request(1, 2)
            .expect("time");
        assert_eq!(
            (request.position, request.from_timestamp, request.length),
            (-1, 77, -2)
        );

        let request = base
            .clone()
            .with_start(ReplayStart::Cursor("c1".into()))
            .to_request(1, 2)
            .expect("cursor");
        assert_eq!(
            (
                request.position,
                request.from_timestamp,
                request.cursor.as_str()
            ),
            (-1, i64::MIN, "c1")
        );

        for bad in [
            base.clone().with_start(ReplayStart::Cursor(String::new())),
            base.clone()
                .with_start(ReplayStart::Cursor("x".repeat(129))),
            base.clone().with_start(ReplayStart::Time(i64::MIN)),
            base.clone().with_length(ReplayLength::Bytes(-5)),
            base.clone().with_speed(0.0),
        ] {
            assert!(
                matches!(bad.to_request(1, 2), Err(ClientError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }
}
