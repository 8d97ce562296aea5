//! What the archive sends back on a control session: responses, descriptors, signals.

use crate::types::{ControlResponseCode, RecordingSignal, SemanticVersion};

sbe_message! {
    /// Archive → client: the generic answer to a request. The error message is empty unless the
    /// code is `Error`.
    ControlResponse {
        template_id: 1,
        block_length: 32,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlation id of the request answered.
            correlation_id: i64 = "correlationId" @ 8,
            /// The object the answer is about (a recording id, a subscription id, the new
            /// session id on connect), or Aeron's error code when the code is `Error`.
            relevant_id: i64 = "relevantId" @ 16,
            /// The outcome.
            code: ControlResponseCode = "code" @ 24,
            /// The archive's protocol version (`None` from senders before version 4).
            version: Option<SemanticVersion> = "version" @ 28 since 4,
        }
        var_data {
            /// Why the request failed, when the code is `Error`.
            error_message: String = "errorMessage",
        }
    }
}

sbe_message! {
    /// Archive → client: one recording of a listing.
    RecordingDescriptor {
        template_id: 22,
        block_length: 80,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlation id of the listing request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording.
            recording_id: i64 = "recordingId" @ 16,
            /// When the recording started, ms since the epoch.
            start_timestamp: i64 = "startTimestamp" @ 24,
            /// When it stopped, ms since the epoch (Aeron's -1 while active).
            stop_timestamp: i64 = "stopTimestamp" @ 32,
            /// Stream position of the first recorded byte.
            start_position: i64 = "startPosition" @ 40,
            /// Stream position after the last recorded byte (Aeron's -1 while active).
            stop_position: i64 = "stopPosition" @ 48,
            /// Initial term id of the recorded stream.
            initial_term_id: i32 = "initialTermId" @ 56,
            /// Length of each segment file.
            segment_file_length: i32 = "segmentFileLength" @ 60,
            /// Term length of the recorded stream.
            term_buffer_length: i32 = "termBufferLength" @ 64,
            /// MTU of the recorded stream.
            mtu_length: i32 = "mtuLength" @ 68,
            /// Session id of the recorded image.
            session_id: i32 = "sessionId" @ 72,
            /// Stream id of the recorded image.
            stream_id: i32 = "streamId" @ 76,
        }
        var_data {
            /// The channel with session-specific parameters removed.
            stripped_channel: String = "strippedChannel",
            /// The channel as the recording was started with.
            original_channel: String = "originalChannel",
            /// Where the image came from (the source address, or `aeron:ipc`).
            source_identity: String = "sourceIdentity",
        }
    }
}

sbe_message! {
    /// Archive → client: one active recording subscription of a listing.
    RecordingSubscriptionDescriptor {
        template_id: 23,
        block_length: 28,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlation id of the listing request.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording subscription's registration id.
            subscription_id: i64 = "subscriptionId" @ 16,
            /// Its stream id.
            stream_id: i32 = "streamId" @ 24,
        }
        var_data {
            /// Its channel with session-specific parameters removed.
            stripped_channel: String = "strippedChannel",
        }
    }
}

sbe_message! {
    /// Archive → client: something happened to a recording the client's request started.
    RecordingSignalEvent {
        template_id: 24,
        block_length: 44,
        since_version: 0,
        fields {
            /// The control session.
            control_session_id: i64 = "controlSessionId" @ 0,
            /// Correlation id of the request that caused the operation.
            correlation_id: i64 = "correlationId" @ 8,
            /// The recording.
            recording_id: i64 = "recordingId" @ 16,
            /// The recording subscription, if any (Aeron's -1 otherwise).
            subscription_id: i64 = "subscriptionId" @ 24,
            /// The recording's position when the signal was raised.
            position: i64 = "position" @ 32,
            /// What happened.
            signal: RecordingSignal = "signal" @ 40,
        }
        var_data {}
    }
}
