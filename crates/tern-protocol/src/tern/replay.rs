//! Replays with tern's options (from a time or a cursor, pacing, key filter), control of a
//! running replay (pause, resume, seek), and the position of a time in a recording.

sbe_enum! {
    /// What a [`ReplayControlRequest`] does to a running replay.
    ReplayAction = "ReplayAction" {
        /// Stop sending until resumed; the replay session stays open.
        Pause = 1 => "PAUSE",
        /// Carry on sending after a pause.
        Resume = 2 => "RESUME",
        /// Restart the replay at the position in `value`.
        SeekPosition = 3 => "SEEK_POSITION",
        /// Restart the replay at the first message at or after the time in `value` (epoch ns,
        /// read with the request's `time_source`).
        SeekTime = 4 => "SEEK_TIME",
    }
}

sbe_message! {
    /// Client → archive: replay a recording with tern's options: start from a time or a named
    /// cursor, pace by message time, filter by key. Answered with an OK `ControlResponse`
    /// (schema 101) whose `relevant_id` is the replay session id, as Aeron's `ReplayRequest`.
    ///
    /// The start is, in order of precedence: `from_timestamp` if set (not
    /// [`Self::FROM_TIMESTAMP_NONE`]), else `cursor` if not empty, else `position` (Aeron's -1:
    /// the recording's start).
    TernReplayRequest {
        schema: tern,
        template_id: 1,
        block_length: 56,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording to replay.
            recording_id: i64 = "recordingId" @ 16,
            /// Where to start ([`Self::POSITION_FROM_START`], -1: the recording's start, or
            /// wherever `from_timestamp` or `cursor` says).
            position: i64 = "position" @ 24,
            /// How many bytes; [`Self::LENGTH_FOLLOW`] (-1): follow a live recording,
            /// [`Self::LENGTH_TO_CURRENT_END`] (-2): stop at the recording's current end.
            length: i64 = "length" @ 32,
            /// Start at the first message at or after this time (epoch ns, read with
            /// `time_source`); [`Self::FROM_TIMESTAMP_NONE`] (`i64::MIN`): not used. When set it
            /// decides the start position.
            from_timestamp: i64 = "fromTimestamp" @ 40,
            /// Pacing factor × 1000 ([`Self::SPEED_AS_FAST_AS_POSSIBLE`] 0: no pacing;
            /// [`Self::SPEED_ORIGINAL_PACE`] 1000: the original pace; 2000: twice as fast);
            /// otherwise within [`Self::SPEED_MILLIS_MIN`]..=[`Self::SPEED_MILLIS_MAX`].
            speed_millis: i32 = "speedMillis" @ 48,
            /// Stream id to replay on.
            replay_stream_id: i32 = "replayStreamId" @ 52,
        }
        var_data {
            /// Channel to replay on.
            replay_channel: String = "replayChannel",
            /// Where a message's time comes from, in tern's CLI syntax: "" or "capture" (the
            /// time the archive recorded it), "cluster-egress", "cluster-egress:us",
            /// "tern-egress", "field:16:ns", ...
            time_source: String = "timeSource",
            /// Which messages to replay, in tern's CLI syntax: "" (all), "reserved:7",
            /// "cluster-egress:42", "tern-egress:42", "field:16:i64:99", "session:5", ...
            key_filter: String = "keyFilter",
            /// Name of a durable cursor whose position starts the replay; "" for none.
            cursor: String = "cursor",
        }
    }
}

impl TernReplayRequest {
    /// `position`: start at the recording's start (Aeron's null value).
    pub const POSITION_FROM_START: i64 = -1;

    /// `length`: follow a live recording (Aeron's null length).
    pub const LENGTH_FOLLOW: i64 = -1;

    /// `length`: stop at the recording's end as it is when the replay starts.
    pub const LENGTH_TO_CURRENT_END: i64 = -2;

    /// `from_timestamp`: no start time (SBE's `int64` null).
    pub const FROM_TIMESTAMP_NONE: i64 = i64::MIN;

    /// `speed_millis`: send as fast as possible, no pacing.
    pub const SPEED_AS_FAST_AS_POSSIBLE: i32 = 0;

    /// `speed_millis`: the original pace of the recording.
    pub const SPEED_ORIGINAL_PACE: i32 = 1000;

    /// Smallest pacing `speed_millis` (0.01 × the original pace).
    pub const SPEED_MILLIS_MIN: i32 = 10;

    /// Largest pacing `speed_millis` (1000 × the original pace).
    pub const SPEED_MILLIS_MAX: i32 = 1_000_000;

    /// Whether `speed_millis` is one a server accepts: 0, or
    /// [`Self::SPEED_MILLIS_MIN`]..=[`Self::SPEED_MILLIS_MAX`].
    pub const fn speed_millis_is_valid(speed_millis: i32) -> bool {
        speed_millis == Self::SPEED_AS_FAST_AS_POSSIBLE
            || (speed_millis >= Self::SPEED_MILLIS_MIN && speed_millis <= Self::SPEED_MILLIS_MAX)
    }
}

sbe_message! {
    /// Client → archive: pause, resume or seek a running replay of this control session.
    /// Answered with an OK `ControlResponse` whose `relevant_id` is, for a seek, the session id
    /// of the new image the replay continues on, else 0.
    ReplayControlRequest {
        schema: tern,
        template_id: 2,
        block_length: 36,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The replay session to act on.
            replay_session_id: i64 = "replaySessionId" @ 16,
            /// The position ([`ReplayAction::SeekPosition`]) or epoch-ns time
            /// ([`ReplayAction::SeekTime`]) to seek to; ignored for pause and resume.
            value: i64 = "value" @ 24,
            /// What to do.
            action: ReplayAction = "action" @ 32,
        }
        var_data {
            /// For [`ReplayAction::SeekTime`]: where a message's time comes from (tern's CLI
            /// syntax, as [`TernReplayRequest::time_source`]); ignored otherwise.
            time_source: String = "timeSource",
        }
    }
}

sbe_message! {
    /// Client → archive: the position of the first message at or after a time in a recording.
    /// Answered with an OK `ControlResponse` whose `relevant_id` is that position: the
    /// recording's start position for a time before its first message, its end (stop or
    /// recorded position) for a time after its last.
    PositionAtTimeRequest {
        schema: tern,
        template_id: 10,
        block_length: 32,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording.
            recording_id: i64 = "recordingId" @ 16,
            /// The time (epoch ns).
            timestamp: i64 = "timestamp" @ 24,
        }
        var_data {
            /// Where a message's time comes from (tern's CLI syntax, as
            /// [`TernReplayRequest::time_source`]).
            time_source: String = "timeSource",
        }
    }
}
