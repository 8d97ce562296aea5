//! Starting, stopping, extending, truncating and purging recordings.

use crate::types::SourceLocation;

sbe_message! {
    /// Client → archive: record a channel and stream (superseded by `StartRecordingRequest2`,
    /// which adds auto-stop).
    StartRecordingRequest {
        template_id: 4,
        block_length: 24,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// Stream to record.
            stream_id: i32 = "streamId" @ 16,
            /// Whether the publication is local to the archive's driver.
            source_location: SourceLocation = "sourceLocation" @ 20,
        }
        var_data {
            /// Channel to record.
            channel: String = "channel",
        }
    }
}

sbe_message! {
    /// Client → archive: record a channel and stream, optionally stopping the recording
    /// subscription when the recorded image ends.
    StartRecordingRequest2 {
        template_id: 63,
        block_length: 28,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// Stream to record.
            stream_id: i32 = "streamId" @ 16,
            /// Whether the publication is local to the archive's driver.
            source_location: SourceLocation = "sourceLocation" @ 20,
            /// Stop the recording subscription when the recording ends (`BooleanType`).
            auto_stop: bool = "autoStop" @ 24,
        }
        var_data {
            /// Channel to record.
            channel: String = "channel",
        }
    }
}

sbe_message! {
    /// Client → archive: stop recording a channel and stream.
    StopRecordingRequest {
        template_id: 5,
        block_length: 20,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// Stream being recorded.
            stream_id: i32 = "streamId" @ 16,
        }
        var_data {
            /// Channel being recorded.
            channel: String = "channel",
        }
    }
}

sbe_message! {
    /// Client → archive: stop a recording subscription by its registration id.
    StopRecordingSubscriptionRequest {
        template_id: 14,
        block_length: 24,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording subscription's registration id.
            subscription_id: i64 = "subscriptionId" @ 16,
        }
        var_data {}
    }
}

sbe_message! {
    /// Client → archive: stop an active recording by its recording id.
    StopRecordingByIdentityRequest {
        template_id: 65,
        block_length: 24,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording to stop.
            recording_id: i64 = "recordingId" @ 16,
        }
        var_data {}
    }
}

sbe_message! {
    /// Client → archive: continue a stopped recording from a new image of the same stream.
    ExtendRecordingRequest2 {
        template_id: 64,
        block_length: 36,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording to extend.
            recording_id: i64 = "recordingId" @ 16,
            /// Stream to record.
            stream_id: i32 = "streamId" @ 24,
            /// Whether the publication is local to the archive's driver.
            source_location: SourceLocation = "sourceLocation" @ 28,
            /// Stop the recording subscription when the recording ends (`BooleanType`).
            auto_stop: bool = "autoStop" @ 32,
        }
        var_data {
            /// Channel to record.
            channel: String = "channel",
        }
    }
}

sbe_message! {
    /// Client → archive: cut a stopped recording back to a position (to its start deletes it).
    TruncateRecordingRequest {
        template_id: 13,
        block_length: 32,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording to truncate.
            recording_id: i64 = "recordingId" @ 16,
            /// The new stop position (a frame boundary).
            position: i64 = "position" @ 24,
        }
        var_data {}
    }
}

sbe_message! {
    /// Client → archive: invalidate a stopped recording and delete its files.
    PurgeRecordingRequest {
        template_id: 104,
        block_length: 24,
        since_version: 5,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording to purge.
            recording_id: i64 = "recordingId" @ 16,
        }
        var_data {}
    }
}
