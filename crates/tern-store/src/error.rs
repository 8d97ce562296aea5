//! Errors of tern's storage.

use crate::ids::RecordingId;
use std::path::PathBuf;

/// A storage error. Each names what it was about: the file and offset, the recording, the position.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
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
    UnknownRecording(RecordingId),
    /// No cursor has this name.
    #[error("unknown cursor {0:?}")]
    UnknownCursor(String),
    /// The catalog entry of this recording is damaged; the rest of the archive is usable.
    #[error("recording {recording_id}: catalog entry damaged: {reason}")]
    DamagedRecording {
        /// The recording.
        recording_id: RecordingId,
        /// What is wrong with its entry.
        reason: String,
    },
    /// A replay or read position is not the start of a frame, or outside the recording.
    #[error("recording {recording_id}: position {position}: {reason}")]
    BadPosition {
        /// The recording.
        recording_id: RecordingId,
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
}

impl StoreError {
    /// Whether this is an I/O error for want of space (`ENOSPC`).
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A closure that wraps an I/O error with the file and what was being done to it.
pub fn io_error(
    path: impl Into<PathBuf>,
    operation: &'static str,
) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io {
        path,
        operation,
        source,
    }
}
