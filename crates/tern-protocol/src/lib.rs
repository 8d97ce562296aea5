//! tern's archive control protocol: pure codecs, no I/O.
//!
//! The messages of Aeron's archive control schema (SBE schema id 101, version 14, little-endian,
//! as in Aeron 1.54's `aeron-archive-codecs.xml`) that tern's archive speaks, encoded and decoded
//! byte for byte as Aeron does, so Aeron's Java, C and C++ archive clients can talk to tern;
//! and tern's own control extensions (SBE schema id 1101, version 1: replay from a time or a
//! cursor with pacing and a key filter, pause/resume/seek, durable named cursors, grouped
//! listings, position of a time), framed the same way.
//!
//! Where to look: [`Message`] (decode any message, dispatch on its kind), one struct per message
//! (`ReplayRequest`, `ControlResponse`, ...) with its layout constants (`TEMPLATE_ID`,
//! `BLOCK_LENGTH`, `FIELDS`), [`MessageHeader`] (the 8-byte SBE header), the schema's enums
//! ([`ControlResponseCode`], [`SourceLocation`], [`RecordingSignal`], [`BooleanType`]) and
//! [`SemanticVersion`] (`version_t`). For the extensions: [`TernMessage`] (one struct per
//! message: [`TernReplayRequest`], [`ReplayControlRequest`], the cursor and group messages,
//! [`PositionAtTimeRequest`]) and [`ReplayAction`]. [`AnyMessage`] and [`decode_any`] decode a
//! message of either schema by the header's schema id. `docs/protocol.md` draws the framing
//! byte by byte.
//!
//! ```
//! use tern_protocol::{Message, RecordingPositionRequest};
//!
//! let request = RecordingPositionRequest {
//!     control_session_id: 7,
//!     correlation_id: 42,
//!     recording_id: 3,
//! };
//! let mut buf = Vec::new();
//! request.encode(&mut buf).expect("no var data to refuse");
//! assert_eq!(buf.len(), 8 + RecordingPositionRequest::BLOCK_LENGTH);
//! assert_eq!(Message::decode(&buf), Ok(Message::RecordingPositionRequest(request)));
//! ```
//!
//! A tern extension, decoded without knowing its schema in advance:
//!
//! ```
//! use tern_protocol::{decode_any, AnyMessage, SetCursorRequest, TernMessage, TERN_SCHEMA_ID};
//!
//! let request = SetCursorRequest {
//!     control_session_id: 7,
//!     correlation_id: 43,
//!     recording_id: 3,
//!     position: 4096,
//!     name: "billing".to_string(),
//! };
//! let mut buf = Vec::new();
//! request.encode(&mut buf).expect("ASCII name");
//! assert_eq!(&buf[4..6], &TERN_SCHEMA_ID.to_le_bytes());
//! let decoded = decode_any(&buf).expect("decodes");
//! assert_eq!(decoded, AnyMessage::Tern(TernMessage::SetCursorRequest(request)));
//! ```

#![warn(missing_docs)]

#[macro_use]
mod codec;
mod error;
mod error_code;
mod header;
mod message;
mod messages;
mod spec;
mod tern;
mod types;

pub use codec::VAR_DATA_MAX_LENGTH;
pub use error::{DecodeError, EncodeError};
pub use error_code::ArchiveErrorCode;

/// Aeron's "no value" in the control protocol: no id, no position, no length, no timestamp
/// (`Aeron.NULL_VALUE`, and the archive's `NULL_POSITION` / `NULL_LENGTH`).
pub const NULL_VALUE: i64 = -1;
pub use header::{
    MessageHeader, MESSAGE_HEADER_LENGTH, SCHEMA_ID, SCHEMA_VERSION, TERN_SCHEMA_ID,
    TERN_SCHEMA_VERSION,
};
pub use message::{decode_any, AnyMessage, Message, TernMessage};
pub use messages::*;
pub use spec::{FieldSpec, MessageSpec, VarDataSpec, VarEncoding};
pub use tern::{
    cursor_name_is_valid, CursorDescriptor, DeleteCursorRequest, GetCursorRequest,
    ListCursorsRequest, ListRecordingGroupsRequest, PositionAtTimeRequest,
    RecordingGroupDescriptor, ReplayAction, ReplayControlRequest, SetCursorRequest,
    TernReplayRequest, CURSOR_NAME_MAX_LENGTH,
};
pub use types::{
    to_ascii_lossy, BooleanType, ControlResponseCode, RecordingSignal, SemanticVersion,
    SourceLocation, ARCHIVE_PROTOCOL_VERSION,
};
