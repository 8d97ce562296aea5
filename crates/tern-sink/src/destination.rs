//! The contract a store keeps with the sink engine: positions stored with the data.

use crate::record::Batch;
use tern_store::RecordingId;

/// Where a destination's data ends: the recording and the stream position after the last
/// message it holds (a record's position, or a batch's end position if it stores those).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The recording the stored records come from.
    pub recording_id: RecordingId,
    /// Everything up to here is stored; nothing after it.
    pub position: i64,
}

/// Why a destination failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The destination cannot be reached or refused for now (connection lost, server
    /// restarting, broker down, disk full): the engine reopens it with backoff and goes on
    /// from what it holds.
    #[error("{0}")]
    Unavailable(String),
    /// Retrying will not help (a table of another shape, a file that is not a sink's, a
    /// destination that holds another recording, bad credentials): the sink stops.
    #[error("{0}")]
    Fatal(String),
}

impl SinkError {
    /// Whether the engine retries after it.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A store a sink copies records into.
///
/// The engine calls [`Destination::open`] first and again after every failed
/// [`Destination::write`]; it sends only records after the position `open` returned. A
/// destination keeps this promise: after any sequence of writes, failures and crashes (the
/// process killed at any instant), `open` returns a position such that every record written
/// up to it is stored once and no record after it is. A write that fails may have stored all
/// of its batch or none (a transaction), or a prefix (an append-only file cut at its last
/// complete record): `open` says which.
pub trait Destination {
    /// What it is, for log lines and errors (`file /data/out`, `postgres table egress`).
    fn describe(&self) -> String;

    /// Connects (or reconnects) and reads back where the stored data ends; `None`: it holds
    /// nothing yet.
    ///
    /// # Errors
    /// [`SinkError::Unavailable`] while it cannot be reached; [`SinkError::Fatal`] for a store
    /// that is not a sink's or not of this shape.
    fn open(&mut self) -> Result<Option<Resume>, SinkError>;

    /// Stores every record of `batch` (non-empty, all after the last resume position) with
    /// the batch's position, durably, before it returns `Ok`.
    ///
    /// # Errors
    /// As [`Destination::open`]; after an error the engine calls `open` before writing again.
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError>;
}
