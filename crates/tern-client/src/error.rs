//! What can go wrong talking to an archive.

use std::time::Duration;
use tern_transport::TransportError;

pub use tern_protocol::ArchiveErrorCode;

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
