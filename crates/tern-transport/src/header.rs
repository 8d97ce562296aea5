//! A copy of an Aeron data frame header, safe to keep after a poll callback returns.

/// The fragment flags, defined once with the frame format.
pub use tern_store::frame::{BEGIN_FLAG, END_FLAG, UNFRAGMENTED};

/// The fields of a data frame header that a handler may want, copied out of the term buffer.
///
/// rusteron's `AeronHeader` points into the term buffer and must not outlive the poll callback;
/// this struct is plain data and can be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// The publication's session id.
    pub session_id: i32,
    /// The stream id.
    pub stream_id: i32,
    /// The term id of the frame.
    pub term_id: i32,
    /// The offset of the frame in its term.
    pub term_offset: i32,
    /// The stream position just after this fragment (frame aligned).
    pub position: i64,
    /// The 64-bit reserved value of the frame.
    pub reserved_value: i64,
    /// BEGIN/END flags of the fragment.
    pub flags: u8,
    /// Length of the frame, header included (not aligned).
    pub frame_length: i32,
}

impl Header {
    /// The header of a data frame as stored (`frame`), ending at `position_after`, from the
    /// publication `session_id` (a stored frame's session id field holds its checksum).
    pub fn from_frame(
        frame: &tern_store::frame::FrameHeader,
        position_after: i64,
        session_id: i32,
    ) -> Self {
        Self {
            session_id,
            stream_id: frame.stream_id,
            term_id: frame.term_id,
            term_offset: frame.term_offset,
            position: position_after,
            reserved_value: frame.reserved_value,
            flags: frame.flags,
            frame_length: frame.frame_length,
        }
    }
}
