//! tern's archive client: Aeron's archive control protocol (schema 101 v14) from one thread,
//! without an async runtime, and a replay-merge that works over IPC and UDP.
//!
//! - [`ArchiveClient`]: connect (credentials, challenge), every operation of Aeron's
//!   `AeronArchive` as a blocking call with a timeout, typed errors that carry the archive's
//!   message ([`ClientError::Archive`]), recording signals queued for
//!   [`ArchiveClient::poll_signals`].
//! - tern's extensions (schema 1101), answered by a tern archive: [`ArchiveClient::tern_replay`]
//!   (from a time or a named cursor, paced, filtered by key), pause / resume / seek of a replay,
//!   durable named cursors ([`ArchiveClient::set_cursor`], [`ArchiveClient::cursor`], ...),
//!   [`ArchiveClient::list_recording_groups`], [`ArchiveClient::position_at_time`].
//! - [`ReplayMerge`]: catch up from a recording, then switch to the live stream with no gap and
//!   no duplicate; [`MergeDecider`] is its position logic, pure and tested alone.
//!
//! `docs/client.md` describes the client and the merge algorithm.
//!
//! ```no_run
//! use std::time::Duration;
//! use tern_client::{
//!     ArchiveClient, ArchiveClientConfig, ClientError, MergeStart, ReplayMerge,
//!     ReplayMergeConfig, SourceLocation,
//! };
//!
//! # fn main() -> Result<(), ClientError> {
//! let config = ArchiveClientConfig::local("/dev/shm/aeron")
//!     .with_message_timeout(Duration::from_secs(5))
//!     .with_client_name("example");
//! let mut client = ArchiveClient::connect(config)?;
//! client.start_recording("aeron:ipc", 1001, SourceLocation::Local, true)?;
//! let recording_id = client
//!     .await_signal(|signal| signal.signal == tern_client::RecordingSignal::Start)?
//!     .recording_id;
//!
//! // Catch up from the start, then go on with the live stream.
//! let mut merge = ReplayMerge::new(
//!     &mut client,
//!     ReplayMergeConfig::new(recording_id, MergeStart::RecordingStart, "aeron:ipc", 2002),
//! )?;
//! while !merge.is_ended() {
//!     merge.poll(|message, header| println!("{} bytes at {}", message.len(), header.position), 10)?;
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod client;
mod config;
mod control;
mod error;
mod extension;
mod merge;
mod types;
mod uri;

pub use client::ArchiveClient;
pub use config::{
    ArchiveClientConfig, ChallengeHandler, CONTROL_MTU_LENGTH, CONTROL_TERM_LENGTH,
    DEFAULT_CONTROL_REQUEST_CHANNEL, DEFAULT_CONTROL_REQUEST_STREAM_ID,
    DEFAULT_CONTROL_RESPONSE_CHANNEL, DEFAULT_CONTROL_RESPONSE_STREAM_ID,
    DEFAULT_KEEP_ALIVE_INTERVAL, DEFAULT_MESSAGE_TIMEOUT, LOCAL_CONTROL_CHANNEL,
};
pub use error::{ArchiveErrorCode, ClientError};
pub use extension::{Cursor, RecordingGroup, ReplayLength, ReplayStart, TernReplay};
pub use merge::{
    aligned_frame_length, MergeDecider, MergePhase, MergeStart, Misaligned, ReplayMerge,
    ReplayMergeConfig, StreamAssembler, DEFAULT_MERGE_PROGRESS_TIMEOUT,
};
pub use tern_protocol::{ControlResponse, ControlResponseCode, RecordingSignal, SourceLocation};
pub use tern_store::{RecordState, RecordingId, ReplayId, NULL_POSITION};
pub use types::{
    RecordingDescriptor, RecordingSignalEvent, RecordingSubscription, StrayError, NULL_VALUE,
    REPLAY_FOLLOW,
};
