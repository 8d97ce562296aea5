//! tern's archive control protocol: pure codecs, no I/O.
//!
//! The messages of Aeron's archive control schema (SBE schema id 101, version 14, little-endian,
//! as in Aeron 1.54's `aeron-archive-codecs.xml`) that tern's archive speaks, encoded and decoded
//! byte for byte as Aeron does, so Aeron's Java, C and C++ archive clients can talk to tern.
//! The server and client that use these codecs come in a later step.
//!
//! Where to look: [`Message`] (decode any message, dispatch on its kind), one struct per message
//! (`ReplayRequest`, `ControlResponse`, ...) with its layout constants (`TEMPLATE_ID`,
//! `BLOCK_LENGTH`, `FIELDS`), [`MessageHeader`] (the 8-byte SBE header), the schema's enums
//! ([`ControlResponseCode`], [`SourceLocation`], [`RecordingSignal`], [`BooleanType`]) and
//! [`SemanticVersion`] (`version_t`). `docs/protocol.md` draws the framing byte by byte.
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

#![warn(missing_docs)]

#[macro_use]
mod codec;
mod error;
mod header;
mod message;
mod messages;
mod spec;
mod types;

pub use codec::VAR_DATA_MAX_LENGTH;
pub use error::{DecodeError, EncodeError};
pub use header::{
    MessageHeader, MESSAGE_HEADER_LENGTH, SCHEMA_ID, SCHEMA_VERSION, TERN_SCHEMA_ID,
    TERN_SCHEMA_VERSION,
};
pub use message::Message;
pub use messages::*;
pub use spec::{FieldSpec, MessageSpec, VarDataSpec, VarEncoding};
pub use types::{
    to_ascii_lossy, BooleanType, ControlResponseCode, RecordingSignal, SemanticVersion,
    SourceLocation, ARCHIVE_PROTOCOL_VERSION,
};
