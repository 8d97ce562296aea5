//! Errors of the archive.

use std::path::PathBuf;

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
