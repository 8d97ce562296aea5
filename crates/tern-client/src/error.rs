//! What can go wrong talking to an archive.

use std::fmt;
use std::time::Duration;
use tern_transport::TransportError;

/// An archive's error code: the `relevantId` of an ERROR `ControlResponse`, as Aeron's
/// `ArchiveException` numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ArchiveErrorCode {
    /// 0: no more specific code.
    Generic,
    /// 1: a listing is already running on this session.
    ActiveListing,
    /// 2: the recording is active (it cannot be truncated, purged, extended).
    ActiveRecording,
    /// 3: a recording subscription for the channel and stream exists already.
    ActiveSubscription,
    /// 4: no recording subscription matches.
    UnknownSubscription,
    /// 5: no such recording.
    UnknownRecording,
    /// 6: no such replay session.
    UnknownReplay,
    /// 7: the archive runs as many replays as it allows.
    MaxReplays,
    /// 8: the archive holds as many recordings as it allows.
    MaxRecordings,
    /// 9: the extension asked for is not valid.
    InvalidExtension,
    /// 10: the authenticator rejected the session.
    AuthenticationRejected,
    /// 11: the archive is out of storage space.
    StorageSpace,
    /// 12: no such replication.
    UnknownReplication,
    /// 13: the session may not do this.
    UnauthorisedAction,
    /// 14: a replication could not connect.
    ReplicationConnectionFailure,
    /// 15: the recording to replay is empty.
    EmptyRecording,
    /// 16: a position that is not frame aligned, or before the start or after the stop.
    InvalidPosition,
    /// A code this client does not know.
    Other(i64),
}

impl ArchiveErrorCode {
    const KNOWN: [ArchiveErrorCode; 17] = [
        Self::Generic,
        Self::ActiveListing,
        Self::ActiveRecording,
        Self::ActiveSubscription,
        Self::UnknownSubscription,
        Self::UnknownRecording,
        Self::UnknownReplay,
        Self::MaxReplays,
        Self::MaxRecordings,
        Self::InvalidExtension,
        Self::AuthenticationRejected,
        Self::StorageSpace,
        Self::UnknownReplication,
        Self::UnauthorisedAction,
        Self::ReplicationConnectionFailure,
        Self::EmptyRecording,
        Self::InvalidPosition,
    ];

    /// The code an ERROR response's relevant id stands for.
    pub fn from_value(value: i64) -> Self {
        usize::try_from(value)
            .ok()
            .and_then(|index| Self::KNOWN.get(index).copied())
            .unwrap_or(Self::Other(value))
    }

    /// The number on the wire.
    pub fn value(self) -> i64 {
        match self {
            Self::Other(value) => value,
            known => Self::KNOWN
                .iter()
                .position(|code| *code == known)
                .map_or(-1, |index| index as i64),
        }
    }

    /// Aeron's name for the code (`UNKNOWN_RECORDING`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Generic => "GENERIC",
            Self::ActiveListing => "ACTIVE_LISTING",
            Self::ActiveRecording => "ACTIVE_RECORDING",
            Self::ActiveSubscription => "ACTIVE_SUBSCRIPTION",
            Self::UnknownSubscription => "UNKNOWN_SUBSCRIPTION",
            Self::UnknownRecording => "UNKNOWN_RECORDING",
            Self::UnknownReplay => "UNKNOWN_REPLAY",
            Self::MaxReplays => "MAX_REPLAYS",
            Self::MaxRecordings => "MAX_RECORDINGS",
            Self::InvalidExtension => "INVALID_EXTENSION",
            Self::AuthenticationRejected => "AUTHENTICATION_REJECTED",
            Self::StorageSpace => "STORAGE_SPACE",
            Self::UnknownReplication => "UNKNOWN_REPLICATION",
            Self::UnauthorisedAction => "UNAUTHORISED_ACTION",
            Self::ReplicationConnectionFailure => "REPLICATION_CONNECTION_FAILURE",
            Self::EmptyRecording => "EMPTY_RECORDING",
            Self::InvalidPosition => "INVALID_POSITION",
            Self::Other(_) => "unknown error code",
        }
    }
}

impl fmt::Display for ArchiveErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(value) => write!(formatter, "unknown error code {value}"),
            known => formatter.write_str(known.name()),
        }
    }
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The archive answered with an ERROR response.
    #[error("archive error {code} (correlation id {correlation_id}): {message}")]
    Archive {
        /// The error code (the response's relevant id, typed).
        code: ArchiveErrorCode,
        /// The archive's error message.
        message: String,
        /// The response's relevant id as sent (Aeron puts the error code there).
        relevant_id: i64,
        /// The correlation id of the request that failed.
        correlation_id: i64,
    },
    /// Nothing came within the time allowed.
    #[error("timed out after {timeout:?} {waiting_for}")]
    Timeout {
        /// What the client was waiting for.
        waiting_for: String,
        /// How long it waited.
        timeout: Duration,
    },
    /// The media driver or the Aeron client failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The archive sent something this client cannot make sense of (a malformed message, an
    /// unexpected response code).
    #[error("protocol: {0}")]
    Protocol(String),
    /// An argument cannot be sent (a channel that is not ASCII, say).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The connection to the archive is gone (the response stream lost its image, or the request
    /// publication lost its subscriber).
    #[error("not connected to the archive: {0}")]
    NotConnected(String),
    /// The client was closed.
    #[error("the archive client is closed")]
    Closed,
    /// A replay-merge cannot go on.
    #[error("replay merge: {0}")]
    Merge(String),
}

impl ClientError {
    /// The archive's error code, for [`ClientError::Archive`].
    pub fn archive_code(&self) -> Option<ArchiveErrorCode> {
        match self {
            Self::Archive { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether this is a [`ClientError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_and_unknown_codes_are_kept() {
        for value in 0..=16 {
            let code = ArchiveErrorCode::from_value(value);
            assert!(!matches!(code, ArchiveErrorCode::Other(_)), "{value}");
            assert_eq!(code.value(), value);
        }
        assert_eq!(
            ArchiveErrorCode::from_value(5),
            ArchiveErrorCode::UnknownRecording
        );
        assert_eq!(
            ArchiveErrorCode::from_value(17),
            ArchiveErrorCode::Other(17)
        );
        assert_eq!(ArchiveErrorCode::from_value(-1).value(), -1);
        assert_eq!(
            ArchiveErrorCode::AuthenticationRejected.to_string(),
            "AUTHENTICATION_REJECTED"
        );
    }

    #[test]
    fn archive_errors_carry_the_archive_message() {
        let error = ClientError::Archive {
            code: ArchiveErrorCode::UnknownRecording,
            message: "unknown recording id: 42".into(),
            relevant_id: 5,
            correlation_id: 9,
        };
        assert_eq!(
            error.to_string(),
            "archive error UNKNOWN_RECORDING (correlation id 9): unknown recording id: 42"
        );
        assert_eq!(
            error.archive_code(),
            Some(ArchiveErrorCode::UnknownRecording)
        );
    }
}
