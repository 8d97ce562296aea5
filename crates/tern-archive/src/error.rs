//! Errors of the archive.

use tern_protocol::ArchiveErrorCode;
use tern_store::StoreError;
use tern_store::{RecordingId, ReplayId};

/// An archive error. Each names what it was about: the file and offset, the recording, the position.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Storage failed: a file, the catalog, an index, the directory.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request's arguments do not make sense.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// No replay has this id.
    #[error("unknown replay id {0}")]
    UnknownReplay(ReplayId),
    /// No recording subscription has this id.
    #[error("unknown recording subscription id {0}")]
    UnknownSubscription(i64),
    /// Aeron refused or failed an operation.
    #[error(transparent)]
    Transport(#[from] tern_transport::TransportError),
    /// The archive has shut down or its agent thread died.
    #[error("the archive is not running: {0}")]
    NotRunning(String),
    /// The operation needs a stopped recording, and this one is being recorded (or, in the
    /// catalog, was interrupted and not yet recovered).
    #[error("cannot {operation} active recording {recording_id}")]
    Active {
        /// The recording.
        recording_id: RecordingId,
        /// What was asked: "truncate", "purge", "extend".
        operation: &'static str,
    },
    /// The operation needs a recording that no replay is reading.
    #[error("cannot purge recording {recording_id} with active replay")]
    ReplayRunning {
        /// The recording.
        recording_id: RecordingId,
    },
    /// A recording subscription already exists for this channel and stream.
    #[error("{channel} stream {stream_id} is already recorded (subscription {subscription_id})")]
    DuplicateSubscription {
        /// The channel subscribed to.
        channel: String,
        /// The stream id.
        stream_id: i32,
        /// The subscription that records it.
        subscription_id: i64,
    },
    /// [`ArchiveConfig::max_concurrent_recordings`](crate::ArchiveConfig::max_concurrent_recordings)
    /// recordings or recording subscriptions are in force.
    #[error("max concurrent recordings reached at {0}")]
    MaxRecordings(usize),
    /// [`ArchiveConfig::max_concurrent_replays`](crate::ArchiveConfig::max_concurrent_replays)
    /// replays are running.
    #[error("max concurrent replays reached at {0}")]
    MaxReplays(usize),
}

impl ArchiveError {
    /// Aeron's `ArchiveException` error code for this error: what a control protocol server
    /// puts in its error response.
    pub fn code(&self) -> ArchiveErrorCode {
        match self {
            Self::Active { .. } | Self::ReplayRunning { .. } => ArchiveErrorCode::ActiveRecording,
            Self::DuplicateSubscription { .. } => ArchiveErrorCode::ActiveSubscription,
            Self::UnknownSubscription(_) => ArchiveErrorCode::UnknownSubscription,
            // A recording whose catalog entry is damaged cannot be used: to a client it is unknown.
            Self::Store(StoreError::UnknownRecording(_) | StoreError::DamagedRecording { .. }) => {
                ArchiveErrorCode::UnknownRecording
            }
            Self::UnknownReplay(_) => ArchiveErrorCode::UnknownReplay,
            Self::MaxReplays(_) => ArchiveErrorCode::MaxReplays,
            Self::MaxRecordings(_) => ArchiveErrorCode::MaxRecordings,
            Self::Store(StoreError::BadPosition { .. }) => ArchiveErrorCode::InvalidPosition,
            Self::Store(error) if error.is_out_of_space() => ArchiveErrorCode::StorageSpace,
            _ => ArchiveErrorCode::Generic,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// A closure that wraps an I/O error with the file and what was being done to it.
pub(crate) fn io_error(
    path: impl Into<std::path::PathBuf>,
    operation: &'static str,
) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let io = tern_store::io_error(path, operation);
    move |source| ArchiveError::Store(io(source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn each_error_has_aerons_archive_exception_code() {
        let io = |errno: i32| {
            ArchiveError::Store(StoreError::Io {
                path: PathBuf::from("0-0.rec"),
                operation: "write segment",
                source: std::io::Error::from_raw_os_error(errno),
            })
        };
        let cases = [
            (io(libc::ENOSPC), 11),
            (io(libc::EIO), 0),
            (StoreError::UnknownRecording(RecordingId::new(1)).into(), 5),
            (ArchiveError::UnknownReplay(ReplayId::new(1)), 6),
            (ArchiveError::UnknownSubscription(1), 4),
            (
                ArchiveError::Active {
                    recording_id: RecordingId::new(1),
                    operation: "truncate",
                },
                2,
            ),
            (
                ArchiveError::ReplayRunning {
                    recording_id: RecordingId::new(1),
                },
                2,
            ),
            (
                ArchiveError::DuplicateSubscription {
                    channel: "aeron:ipc".into(),
                    stream_id: 1,
                    subscription_id: 2,
                },
                3,
            ),
            (ArchiveError::MaxReplays(64), 7),
            (ArchiveError::MaxRecordings(64), 8),
            (
                StoreError::BadPosition {
                    recording_id: RecordingId::new(1),
                    position: 3,
                    reason: "not frame aligned".into(),
                }
                .into(),
                16,
            ),
            (ArchiveError::Invalid("x".into()), 0),
        ];
        for (error, code) in cases {
            assert_eq!(error.code().value(), code, "{error}");
        }
        assert_eq!(
            ArchiveError::Active {
                recording_id: RecordingId::new(4),
                operation: "truncate"
            }
            .to_string(),
            "cannot truncate active recording 4"
        );
    }
}
