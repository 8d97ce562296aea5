//! Starting and stopping replays.

sbe_message! {
    /// Client → archive: replay a range of a recording to a channel and stream. Answered with the
    /// replay session id in a `ControlResponse`.
    ReplayRequest {
        template_id: 6,
        block_length: 56,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording to replay.
            recording_id: i64 = "recordingId" @ 16,
            /// Where to start (Aeron's -1: the recording's start).
            position: i64 = "position" @ 24,
            /// How many bytes (Aeron's -1 or `i64::MAX`: follow a live recording).
            length: i64 = "length" @ 32,
            /// Stream id to replay on.
            replay_stream_id: i32 = "replayStreamId" @ 40,
            /// Largest read from the recording in one go (`i32::MIN`, SBE's null, from senders
            /// before version 7; Aeron's -1: the default).
            file_io_max_length: i32 = "fileIoMaxLength" @ 44 since 7,
            /// Token for a replay requested over another image (`i64::MIN`, SBE's null, from
            /// senders before version 10; Aeron's -1: none).
            replay_token: i64 = "replayToken" @ 48 since 10,
        }
        var_data {
            /// Channel to replay on.
            replay_channel: String = "replayChannel",
        }
    }
}

sbe_message! {
    /// Client → archive: a replay that never passes the value of a position counter.
    BoundedReplayRequest {
        template_id: 18,
        block_length: 60,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording to replay.
            recording_id: i64 = "recordingId" @ 16,
            /// Where to start (Aeron's -1: the recording's start).
            position: i64 = "position" @ 24,
            /// How many bytes (Aeron's -1 or `i64::MAX`: follow a live recording).
            length: i64 = "length" @ 32,
            /// Id of the counter whose value bounds the replay.
            limit_counter_id: i32 = "limitCounterId" @ 40,
            /// Stream id to replay on.
            replay_stream_id: i32 = "replayStreamId" @ 44,
            /// Largest read from the recording in one go (`i32::MIN`, SBE's null, from senders
            /// before version 7).
            file_io_max_length: i32 = "fileIoMaxLength" @ 48 since 7,
            /// Token for a replay requested over another image (`i64::MIN`, SBE's null, from
            /// senders before version 10).
            replay_token: i64 = "replayToken" @ 52 since 10,
        }
        var_data {
            /// Channel to replay on.
            replay_channel: String = "replayChannel",
        }
    }
}

sbe_message! {
    /// Client → archive: stop one replay session.
    StopReplayRequest {
        template_id: 7,
        block_length: 24,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The replay session to stop.
            replay_session_id: i64 = "replaySessionId" @ 16,
        }
        var_data {}
    }
}

sbe_message! {
    /// Client → archive: stop every replay of a recording (Aeron's -1: of every recording).
    StopAllReplaysRequest {
        template_id: 19,
        block_length: 24,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording whose replays stop.
            recording_id: i64 = "recordingId" @ 16,
        }
        var_data {}
    }
}
