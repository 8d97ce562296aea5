//! Listings and position queries.

sbe_message! {
    /// Client → archive: list up to `record_count` recordings from an id on.
    ListRecordingsRequest {
        template_id: 8,
        block_length: 28,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the descriptors with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// First recording id to consider.
            from_recording_id: i64 = "fromRecordingId" @ 16,
            /// Most descriptors to send.
            record_count: i32 = "recordCount" @ 24,
        }
        var_data {}
    }
}

sbe_message! {
    /// Client → archive: list recordings of a channel and stream.
    ListRecordingsForUriRequest {
        template_id: 9,
        block_length: 32,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the descriptors with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// First recording id to consider.
            from_recording_id: i64 = "fromRecordingId" @ 16,
            /// Most descriptors to send.
            record_count: i32 = "recordCount" @ 24,
            /// Stream id to match.
            stream_id: i32 = "streamId" @ 28,
        }
        var_data {
            /// Channel fragment to match against the stripped channel.
            channel: String = "channel",
        }
    }
}

sbe_message! {
    /// Client → archive: the descriptor of one recording.
    ListRecordingRequest {
        template_id: 10,
        block_length: 24,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the descriptor with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording.
            recording_id: i64 = "recordingId" @ 16,
        }
        var_data {}
    }
}

sbe_message! {
    /// Client → archive: the last recording at or after an id that matches a session, stream and
    /// channel.
    FindLastMatchingRecordingRequest {
        template_id: 16,
        block_length: 32,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// Lowest recording id to consider.
            min_recording_id: i64 = "minRecordingId" @ 16,
            /// Session id to match (Aeron's -1: any).
            session_id: i32 = "sessionId" @ 24,
            /// Stream id to match.
            stream_id: i32 = "streamId" @ 28,
        }
        var_data {
            /// Channel fragment to match.
            channel: String = "channel",
        }
    }
}

sbe_message! {
    /// Client → archive: list active recording subscriptions that match a channel (and stream).
    ListRecordingSubscriptionsRequest {
        template_id: 17,
        block_length: 32,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the descriptors with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// Index of the first subscription to consider in the archive's list.
            pseudo_index: i32 = "pseudoIndex" @ 16,
            /// Most descriptors to send.
            subscription_count: i32 = "subscriptionCount" @ 20,
            /// Whether `stream_id` must match (`BooleanType`).
            apply_stream_id: bool = "applyStreamId" @ 24,
            /// Stream id to match when `apply_stream_id`.
            stream_id: i32 = "streamId" @ 28,
        }
        var_data {
            /// Channel fragment to match.
            channel: String = "channel",
        }
    }
}

sbe_message! {
    /// Client → archive: the recorded position of an active recording.
    RecordingPositionRequest {
        template_id: 12,
        block_length: 24,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording.
            recording_id: i64 = "recordingId" @ 16,
        }
        var_data {}
    }
}

sbe_message! {
    /// Client → archive: the start position of a recording.
    StartPositionRequest {
        template_id: 52,
        block_length: 24,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording.
            recording_id: i64 = "recordingId" @ 16,
        }
        var_data {}
    }
}

sbe_message! {
    /// Client → archive: the stop position of a recording.
    StopPositionRequest {
        template_id: 15,
        block_length: 24,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording.
            recording_id: i64 = "recordingId" @ 16,
        }
        var_data {}
    }
}

sbe_message! {
    /// Client → archive: the recorded position if active, else the stop position.
    MaxRecordedPositionRequest {
        template_id: 67,
        block_length: 24,
        since_version: 9,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlates the response with this request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording.
            recording_id: i64 = "recordingId" @ 16,
        }
        var_data {}
    }
}
