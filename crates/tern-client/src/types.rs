//! What the archive answers with: recording descriptors, recording subscriptions, signals.

use tern_protocol::RecordingSignal;
use tern_store::RecordingId;

pub use tern_protocol::NULL_VALUE;

/// Replay length that follows a live recording (Aeron's `Long.MAX_VALUE`; -1 means the same to
/// the archive).
pub const REPLAY_FOLLOW: i64 = i64::MAX;

/// One recording, as a listing describes it: the archive's own descriptor type (the one the
/// catalog keeps), so a recording reads the same whether it was listed by a remote archive or
/// read from a directory. From a listing: times in nanoseconds at millisecond precision (the
/// protocol's), `stop_position` and `stop_timestamp_ns` [`NULL_POSITION`](tern_store::NULL_POSITION)
/// while active ([`RecordingDescriptor::is_active`]), the state valid (a listing never shows
/// deleted ones).
pub use tern_store::RecordingDescriptor;

fn optional(value: i64) -> Option<i64> {
    (value != NULL_VALUE).then_some(value)
}

/// The descriptor a listing's `RecordingDescriptor` message describes.
pub(crate) fn descriptor_from_wire(
    message: tern_protocol::RecordingDescriptor,
) -> RecordingDescriptor {
    let nanos = |ms: i64| {
        if ms == NULL_VALUE {
            tern_store::NULL_POSITION
        } else {
            ms.saturating_mul(1_000_000)
        }
    };
    RecordingDescriptor {
        recording_id: RecordingId::new(message.recording_id),
        state: tern_store::RecordState::Valid,
        start_timestamp_ns: nanos(message.start_timestamp),
        stop_timestamp_ns: nanos(message.stop_timestamp),
        start_position: message.start_position,
        stop_position: if message.stop_position == NULL_VALUE {
            tern_store::NULL_POSITION
        } else {
            message.stop_position
        },
        initial_term_id: message.initial_term_id,
        segment_length: message.segment_file_length,
        term_length: message.term_buffer_length,
        mtu_length: message.mtu_length,
        session_id: message.session_id,
        stream_id: message.stream_id,
        stripped_channel: message.stripped_channel,
        original_channel: message.original_channel,
        source_identity: message.source_identity,
    }
}

/// One active recording subscription, as `list_recording_subscriptions` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSubscription {
    /// The subscription's registration id (what `stop_recording_subscription` takes).
    pub subscription_id: i64,
    /// Its stream id.
    pub stream_id: i32,
    /// Its channel without session-specific parameters.
    pub stripped_channel: String,
}

impl From<tern_protocol::RecordingSubscriptionDescriptor> for RecordingSubscription {
    fn from(message: tern_protocol::RecordingSubscriptionDescriptor) -> Self {
        Self {
            subscription_id: message.subscription_id,
            stream_id: message.stream_id,
            stripped_channel: message.stripped_channel,
        }
    }
}

/// Something that happened to a recording this session caused (a `RecordingSignalEvent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingSignalEvent {
    /// Correlation id of the request that caused it.
    pub correlation_id: i64,
    /// The recording.
    pub recording_id: RecordingId,
    /// The recording subscription, if any.
    pub subscription_id: Option<i64>,
    /// The recording's position when it happened.
    pub position: i64,
    /// What happened.
    pub signal: RecordingSignal,
}

impl From<tern_protocol::RecordingSignalEvent> for RecordingSignalEvent {
    fn from(message: tern_protocol::RecordingSignalEvent) -> Self {
        Self {
            correlation_id: message.correlation_id,
            recording_id: RecordingId::new(message.recording_id),
            subscription_id: optional(message.subscription_id),
            position: message.position,
            signal: message.signal,
        }
    }
}

/// An ERROR response that answered no request this client is waiting for (a request that timed
/// out, or an error the archive raised on its own), kept for [`ArchiveClient::take_errors`].
///
/// [`ArchiveClient::take_errors`]: crate::ArchiveClient::take_errors
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayError {
    /// Correlation id of the response.
    pub correlation_id: i64,
    /// The error code (relevant id).
    pub relevant_id: i64,
    /// The archive's message.
    pub message: String,
}
