//! Listing recordings grouped by (channel, stream).

sbe_message! {
    /// Client → archive: list the recordings grouped by (stripped channel, stream id), for the
    /// channels that contain `channel_fragment` (and the stream, if `apply_stream_id`). Answered
    /// with a [`RecordingGroupDescriptor`] per group, then a `ControlResponse` with code
    /// `RECORDING_UNKNOWN` as the end marker.
    ListRecordingGroupsRequest {
        schema: tern,
        template_id: 8,
        block_length: 24,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the descriptors and the end marker with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// Stream id to match when `apply_stream_id`.
            stream_id: i32 = "streamId" @ 16,
            /// Whether `stream_id` must match (`BooleanType`).
            apply_stream_id: bool = "applyStreamId" @ 20,
        }
        var_data {
            /// Fragment the stripped channel must contain; "" matches every channel.
            channel_fragment: String = "channelFragment",
        }
    }
}

sbe_message! {
    /// Archive → client: one (channel, stream) group of recordings, in answer to a
    /// [`ListRecordingGroupsRequest`].
    RecordingGroupDescriptor {
        schema: tern,
        template_id: 9,
        block_length: 68,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// The correlation id of the request this answers.
            correlation_id: i64 = "correlationId" @ 8,
            /// Lowest recording id in the group.
            first_recording_id: i64 = "firstRecordingId" @ 16,
            /// Highest recording id in the group.
            last_recording_id: i64 = "lastRecordingId" @ 24,
            /// Bytes recorded by the group: the sum of stop - start positions (recorded - start
            /// for an active recording).
            total_bytes: i64 = "totalBytes" @ 32,
            /// Earliest start timestamp of the group (epoch ms).
            first_start_timestamp: i64 = "firstStartTimestamp" @ 40,
            /// Latest stop timestamp of the group (epoch ms); -1 if any recording is active.
            last_stop_timestamp: i64 = "lastStopTimestamp" @ 48,
            /// The group's stream id.
            stream_id: i32 = "streamId" @ 56,
            /// Number of recordings in the group.
            recording_count: i32 = "recordingCount" @ 60,
            /// Number of them still recording.
            active_count: i32 = "activeCount" @ 64,
        }
        var_data {
            /// The group's stripped channel.
            channel: String = "channel",
        }
    }
}
