//! tern's control-protocol extensions: SBE schema id 1101, version 1
//! ([`TERN_SCHEMA_ID`](crate::TERN_SCHEMA_ID), [`TERN_SCHEMA_VERSION`](crate::TERN_SCHEMA_VERSION)).
//!
//! Same 8-byte header, little-endian byte order, var-data encoding (`u32` length, then bytes) and
//! compatibility rules as Aeron's schema 101; only the schema id in the header differs, so the
//! template ids (1..=10 here) never collide with Aeron's. Requests are answered with Aeron's
//! `ControlResponse` (schema 101) unless a message says otherwise. Field names in the layout
//! tables are camel case as in an SBE schema (`fromTimestamp`); the Rust fields are snake case.
//!
//! The codec does not check values (speed range, cursor name length, ...): a server decodes any
//! well-formed request and answers a bad value with an ERROR `ControlResponse` carrying the
//! request's correlation id. The limits are here as constants and checks for both sides.

mod cursor;
mod group;
mod replay;

pub use cursor::{
    cursor_name_is_valid, CursorDescriptor, DeleteCursorRequest, GetCursorRequest,
    ListCursorsRequest, SetCursorRequest, CURSOR_NAME_MAX_LENGTH,
};
pub use group::{ListRecordingGroupsRequest, RecordingGroupDescriptor};
pub use replay::{PositionAtTimeRequest, ReplayAction, ReplayControlRequest, TernReplayRequest};
