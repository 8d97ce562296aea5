//! Errors of the archive.

use std::path::PathBuf;
use tern_protocol::ArchiveErrorCode;

/// An archive error. Each names what it was about: the file and offset, the recording, the position.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// An I/O operation on a file failed.
    #[error("{path}: {operation}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        operation: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents are not what tern wrote.
    #[error("{path} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damage in the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The directory holds segment files its catalog does not describe: recording into it would
    /// reuse their ids. `tern catalog rebuild` is the way back.
    #[error(
        "{dir}: {problem}; {segments} segment files (e.g. {example}) are not described by the \
         catalog: run `tern catalog rebuild --dir {dir}` to rebuild it from them"
    , dir = dir.display())]
    CatalogMismatch {
        /// The archive directory.
        dir: PathBuf,
        /// What is wrong with the catalog.
        problem: String,
        /// How many segment files the catalog does not describe.
        segments: usize,
        /// One of them.
        example: String,
    },
    /// No recording has this id.
    #[error("unknown recording id {0}")]
    UnknownRecording(i64),
    /// No replay has this id.
    #[error("unknown replay id {0}")]
    UnknownReplay(i64),
    /// No cursor has this name.
    #[error("unknown cursor {0:?}")]
    UnknownCursor(String),
    /// No recording subscription has this id.
    #[error("unknown recording subscription id {0}")]
    UnknownSubscription(i64),
    /// The catalog entry of this recording is damaged; the rest of the archive is usable.
    #[error("recording {recording_id}: catalog entry damaged: {reason}")]
    DamagedRecording {
        /// The recording.
        recording_id: i64,
        /// What is wrong with its entry.
        reason: String,
    },
    /// A replay or read position is not the start of a frame, or outside the recording.
    #[error("recording {recording_id}: position {position}: {reason}")]
    BadPosition {
        /// The recording.
        recording_id: i64,
        /// The position asked for.
        position: i64,
        /// Why it cannot be used.
        reason: String,
    },
    /// A request's arguments do not make sense.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The archive directory is held by another process.
    #[error("archive directory {path} is in use by another process ({holder})")]
    Locked {
        /// The directory.
        path: PathBuf,
        /// Who holds it, as written in the lock file.
        holder: String,
    },
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
        recording_id: i64,
        /// What was asked: "truncate", "purge", "extend".
        operation: &'static str,
    },
    /// The operation needs a recording that no replay is reading.
    #[error("cannot purge recording {recording_id} with active replay")]
    ReplayRunning {
        /// The recording.
        recording_id: i64,
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
            Self::UnknownRecording(_) | Self::DamagedRecording { .. } => {
                ArchiveErrorCode::UnknownRecording
            }
            Self::UnknownReplay(_) => ArchiveErrorCode::UnknownReplay,
            Self::MaxReplays(_) => ArchiveErrorCode::MaxReplays,
            Self::MaxRecordings(_) => ArchiveErrorCode::MaxRecordings,
            Self::BadPosition { .. } => ArchiveErrorCode::InvalidPosition,
            Self::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                ArchiveErrorCode::StorageSpace
            }
            _ => ArchiveErrorCode::Generic,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

pub(crate) fn io_error(
    path: impl Into<PathBuf>,
    operation: &'static str,
) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let path = path.into();
    move |source| ArchiveError::Io {
        path,
        operation,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_aerons_archive_exception_code() {
        let io = |errno: i32| ArchiveError::Io {
            path: PathBuf::from("0-0.rec"),
            operation: "write segment",
            source: std::io::Error::from_raw_os_error(errno),
        };
        let cases = [
            (io(libc::ENOSPC), 11),
            (io(libc::EIO), 0),
            (ArchiveError::UnknownRecording(1), 5),
            (ArchiveError::UnknownReplay(1), 6),
            (ArchiveError::UnknownSubscription(1), 4),
            (
                ArchiveError::Active {
                    recording_id: 1,
                    operation: "truncate",
                },
                2,
            ),
            (ArchiveError::ReplayRunning { recording_id: 1 }, 2),
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
                ArchiveError::BadPosition {
                    recording_id: 1,
                    position: 3,
                    reason: "not frame aligned".into(),
                },
                16,
            ),
            (ArchiveError::Invalid("x".into()), 0),
        ];
        for (error, code) in cases {
            assert_eq!(error.code().value(), code, "{error}");
        }
        assert_eq!(
            ArchiveError::Active {
                recording_id: 4,
                operation: "truncate"
            }
            .to_string(),
            "cannot truncate active recording 4"
        );
    }
}
