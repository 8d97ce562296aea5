//! Aeron data frames as they lie in a term buffer and in tern's segment files (pure, no I/O).
//!
//! ```text
//!  0               4       5       6               8
//!  +---------------+-------+-------+---------------+
//!  | frame length  |version| flags |     type      |
//!  +---------------+-------+-------+---------------+
//!  8               12              16              20              24
//!  | term offset   | session id    | stream id     | term id       |
//!  24                              32
//!  | reserved value (i64)          | payload ... padded to 32 bytes
//! ```
//! All fields little-endian. In a segment file the session id field holds the frame's CRC32C
//! (the recording's session id is in its catalog descriptor), see [`frame_checksum`].

/// Length of a data frame header.
pub const HEADER_LENGTH: usize = 32;
/// Frames start on multiples of this.
pub const FRAME_ALIGNMENT: usize = 32;
/// Frame type of a padding frame.
pub const TYPE_PAD: u16 = 0;
/// Frame type of a data frame.
pub const TYPE_DATA: u16 = 1;

/// Flag of the first fragment of a message.
pub const BEGIN_FLAG: u8 = 0x80;
/// Flag of the last fragment of a message.
pub const END_FLAG: u8 = 0x40;
/// Both flags: an unfragmented message.
pub const UNFRAGMENTED: u8 = BEGIN_FLAG | END_FLAG;

/// Offset of the frame length field.
pub const FRAME_LENGTH_OFFSET: usize = 0;
/// Offset of the flags field.
pub const FLAGS_OFFSET: usize = 5;
/// Offset of the type field.
pub const TYPE_OFFSET: usize = 6;
/// Offset of the term offset field.
pub const TERM_OFFSET_OFFSET: usize = 8;
/// Offset of the session id field (the CRC32C in segment files).
pub const SESSION_ID_OFFSET: usize = 12;
/// Offset of the stream id field.
pub const STREAM_ID_OFFSET: usize = 16;
/// Offset of the term id field.
pub const TERM_ID_OFFSET: usize = 20;
/// Offset of the reserved value field.
pub const RESERVED_VALUE_OFFSET: usize = 24;

/// `length` rounded up to the frame alignment.
pub const fn align_frame(length: usize) -> usize {
    (length + FRAME_ALIGNMENT - 1) & !(FRAME_ALIGNMENT - 1)
}

fn i32_at(bytes: &[u8], offset: usize) -> i32 {
    i32::from_le_bytes([
        bytes[offset],
        bytes[offset + 1],
        bytes[offset + 2],
        bytes[offset + 3],
    ])
}

/// The header fields of one frame, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Header plus payload, not aligned. For padding, the whole padded range.
    pub frame_length: i32,
    /// BEGIN (0x80) and END (0x40) fragment flags.
    pub flags: u8,
    /// [`TYPE_DATA`] or [`TYPE_PAD`] (other values are invalid in a recording).
    pub frame_type: u16,
    /// Offset of the frame in its term.
    pub term_offset: i32,
    /// Session id, or the CRC32C in a segment file.
    pub session_id: i32,
    /// Stream id.
    pub stream_id: i32,
    /// Term id.
    pub term_id: i32,
    /// Reserved value.
    pub reserved_value: i64,
}

impl FrameHeader {
    /// Decode the header at the start of `bytes` (at least [`HEADER_LENGTH`] long).
    pub fn decode(bytes: &[u8]) -> Self {
        assert!(
            bytes.len() >= HEADER_LENGTH,
            "a frame header needs 32 bytes"
        );
        Self {
            frame_length: i32_at(bytes, FRAME_LENGTH_OFFSET),
            flags: bytes[FLAGS_OFFSET],
            frame_type: u16::from_le_bytes([bytes[TYPE_OFFSET], bytes[TYPE_OFFSET + 1]]),
            term_offset: i32_at(bytes, TERM_OFFSET_OFFSET),
            session_id: i32_at(bytes, SESSION_ID_OFFSET),
            stream_id: i32_at(bytes, STREAM_ID_OFFSET),
            term_id: i32_at(bytes, TERM_ID_OFFSET),
            reserved_value: i64::from_le_bytes(
                bytes[RESERVED_VALUE_OFFSET..RESERVED_VALUE_OFFSET + 8]
                    .try_into()
                    .expect("8 bytes"),
            ),
        }
    }

    /// Encode into the first [`HEADER_LENGTH`] bytes of `bytes` (version 0).
    pub fn encode(&self, bytes: &mut [u8]) {
        bytes[0..4].copy_from_slice(&self.frame_length.to_le_bytes());
        bytes[4] = 0;
        bytes[FLAGS_OFFSET] = self.flags;
        bytes[TYPE_OFFSET..TYPE_OFFSET + 2].copy_from_slice(&self.frame_type.to_le_bytes());
        bytes[TERM_OFFSET_OFFSET..TERM_OFFSET_OFFSET + 4]
            .copy_from_slice(&self.term_offset.to_le_bytes());
        bytes[SESSION_ID_OFFSET..SESSION_ID_OFFSET + 4]
            .copy_from_slice(&self.session_id.to_le_bytes());
        bytes[STREAM_ID_OFFSET..STREAM_ID_OFFSET + 4]
            .copy_from_slice(&self.stream_id.to_le_bytes());
        bytes[TERM_ID_OFFSET..TERM_ID_OFFSET + 4].copy_from_slice(&self.term_id.to_le_bytes());
        bytes[RESERVED_VALUE_OFFSET..RESERVED_VALUE_OFFSET + 8]
            .copy_from_slice(&self.reserved_value.to_le_bytes());
    }

    /// Whether this is a padding frame.
    pub fn is_padding(&self) -> bool {
        self.frame_type == TYPE_PAD
    }

    /// The frame's length rounded up to the alignment: the distance to the next frame.
    pub fn aligned_length(&self) -> usize {
        align_frame(self.frame_length.max(0) as usize)
    }
}

/// CRC32C of a frame: the header without its session id field, then for a data frame the payload.
/// A padding frame's body is not covered (it carries no data and a replay never reads it).
/// `frame` starts at the header and holds at least the header (and the payload of a data frame).
pub fn frame_checksum(frame: &[u8]) -> u32 {
    let header = FrameHeader::decode(frame);
    let payload: &[u8] = if header.is_padding() {
        &[]
    } else {
        let end = (header.frame_length.max(HEADER_LENGTH as i32) as usize).min(frame.len());
        &frame[HEADER_LENGTH..end]
    };
    crate::crc::crc32c_parts(&[
        &frame[..SESSION_ID_OFFSET],
        &frame[STREAM_ID_OFFSET..HEADER_LENGTH],
        payload,
    ])
}

/// Put the checksum of each frame of `block` (whole frames, back to back) in its session id field.
/// Returns the number of data frames (messages or fragments) in the block.
pub fn stamp_checksums(block: &mut [u8]) -> usize {
    stamp_checksums_visiting(block, |_, _, _| {})
}

/// [`stamp_checksums`], calling `visit(offset, header, frame)` for each data frame of the block
/// (`frame`: header and payload, `frame_length` bytes at most) in the same pass: the recorder notes
/// messages' keys there while the headers are in the cache.
pub fn stamp_checksums_visiting(
    block: &mut [u8],
    mut visit: impl FnMut(usize, &FrameHeader, &[u8]),
) -> usize {
    let mut offset = 0;
    let mut data_frames = 0;
    while offset + HEADER_LENGTH <= block.len() {
        let header = FrameHeader::decode(&block[offset..]);
        if header.frame_length <= 0 {
            break;
        }
        let aligned = header.aligned_length();
        let end = if header.is_padding() {
            offset + HEADER_LENGTH
        } else {
            data_frames += 1;
            let end = (offset + (header.frame_length as usize).max(HEADER_LENGTH)).min(block.len());
            visit(offset, &header, &block[offset..end]);
            end
        };
        let crc = frame_checksum(&block[offset..end]);
        block[offset + SESSION_ID_OFFSET..offset + SESSION_ID_OFFSET + 4]
            .copy_from_slice(&crc.to_le_bytes());
        offset += aligned;
    }
    data_frames
}

/// The term id and term offset of a stream position.
pub fn term_of(position: i64, initial_term_id: i32, term_length: i32) -> (i32, i32) {
    let shift = term_length.trailing_zeros();
    let term_count = (position >> shift) as i32;
    let term_offset = (position & (i64::from(term_length) - 1)) as i32;
    (initial_term_id.wrapping_add(term_count), term_offset)
}

/// Why a frame in a recording is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameProblem {
    /// The header is all zeroes: nothing was written here (the end of a recording's data).
    Empty,
    /// The segment file ends here.
    EndOfFile,
    /// A header field does not fit the frame's place in the stream, or is out of range.
    BadHeader(String),
    /// The frame extends past the bytes available.
    Truncated,
    /// The stored checksum does not match the frame's bytes.
    ChecksumMismatch {
        /// The checksum in the session id field.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
}

impl std::fmt::Display for FrameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => write!(f, "no frame (zeroes)"),
            Self::EndOfFile => write!(f, "end of the segment file"),
            Self::BadHeader(why) => write!(f, "bad frame header: {why}"),
            Self::Truncated => write!(f, "frame truncated"),
            Self::ChecksumMismatch { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
        }
    }
}

/// What a frame at a known stream position must look like.
#[derive(Debug, Clone, Copy)]
pub struct FrameExpectation {
    /// The recording's initial term id.
    pub initial_term_id: i32,
    /// The recording's term length.
    pub term_length: i32,
    /// The recording's stream id.
    pub stream_id: i32,
}

impl FrameExpectation {
    /// Check the frame at the start of `bytes`, which lies at stream `position`. Returns the frame's
    /// header and aligned length when it is whole and its checksum matches.
    ///
    /// # Errors
    /// The [`FrameProblem`] found.
    pub fn check(&self, bytes: &[u8], position: i64) -> Result<(FrameHeader, usize), FrameProblem> {
        if bytes.len() < HEADER_LENGTH {
            if bytes.iter().all(|byte| *byte == 0) {
                return Err(FrameProblem::Empty);
            }
            return Err(FrameProblem::Truncated);
        }
        let header = FrameHeader::decode(bytes);
        if header.frame_length == 0 {
            // Only an all-zero header is the clean end of the data; a zeroed length in a header
            // that holds anything else is damage.
            if bytes[..HEADER_LENGTH].iter().all(|byte| *byte == 0) {
                return Err(FrameProblem::Empty);
            }
            return Err(FrameProblem::BadHeader("zero frame length".into()));
        }
        let (term_id, term_offset) = term_of(position, self.initial_term_id, self.term_length);
        if header.frame_length < HEADER_LENGTH as i32 {
            return Err(FrameProblem::BadHeader(format!(
                "frame length {}",
                header.frame_length
            )));
        }
        if header.frame_type != TYPE_DATA && header.frame_type != TYPE_PAD {
            return Err(FrameProblem::BadHeader(format!(
                "frame type {}",
                header.frame_type
            )));
        }
        if header.term_offset != term_offset || header.term_id != term_id {
            return Err(FrameProblem::BadHeader(format!(
                "term {}/offset {} where term {term_id}/offset {term_offset} was expected",
                header.term_id, header.term_offset
            )));
        }
        if header.stream_id != self.stream_id {
            return Err(FrameProblem::BadHeader(format!(
                "stream id {} where {} was expected",
                header.stream_id, self.stream_id
            )));
        }
        let aligned = header.aligned_length();
        if i64::from(term_offset) + aligned as i64 > i64::from(self.term_length) {
            return Err(FrameProblem::BadHeader(format!(
                "frame of {aligned} bytes at offset {term_offset} crosses the end of the term"
            )));
        }
        let covered = if header.is_padding() {
            HEADER_LENGTH
        } else {
            header.frame_length as usize
        };
        if covered > bytes.len() {
            return Err(FrameProblem::Truncated);
        }
        let computed = frame_checksum(&bytes[..covered]);
        let stored = header.session_id as u32;
        if computed != stored {
            return Err(FrameProblem::ChecksumMismatch { stored, computed });
        }
        Ok((header, aligned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn data_frame(
        payload: &[u8],
        position: i64,
        expectation: &FrameExpectation,
    ) -> Vec<u8> {
        let (term_id, term_offset) = term_of(
            position,
            expectation.initial_term_id,
            expectation.term_length,
        );
        let mut frame = vec![0u8; align_frame(HEADER_LENGTH + payload.len())];
        FrameHeader {
            frame_length: (HEADER_LENGTH + payload.len()) as i32,
            flags: 0xC0,
            frame_type: TYPE_DATA,
            term_offset,
            session_id: 77,
            stream_id: expectation.stream_id,
            term_id,
            reserved_value: 5,
        }
        .encode(&mut frame);
        frame[HEADER_LENGTH..HEADER_LENGTH + payload.len()].copy_from_slice(payload);
        frame
    }

    const EXPECT: FrameExpectation = FrameExpectation {
        initial_term_id: 100,
        term_length: 64 * 1024,
        stream_id: 9,
    };

    #[test]
    fn stamped_frames_check_and_any_flipped_bit_is_caught() {
        let mut block = data_frame(b"hello world", 64 * 1024 + 64, &EXPECT);
        assert_eq!(stamp_checksums(&mut block), 1);
        let (header, aligned) = EXPECT.check(&block, 64 * 1024 + 64).expect("valid");
        assert_eq!(header.term_id, 101);
        assert_eq!(aligned, 64);
        for byte in
            (0..HEADER_LENGTH + 11).filter(|b| !(SESSION_ID_OFFSET..STREAM_ID_OFFSET).contains(b))
        {
            for bit in 0..8 {
                let mut damaged = block.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    EXPECT.check(&damaged, 64 * 1024 + 64).is_err(),
                    "flip of byte {byte} bit {bit} missed"
                );
            }
        }
    }

    #[test]
    fn zeroes_are_the_end_and_a_frame_at_the_wrong_place_is_bad() {
        assert_eq!(EXPECT.check(&[0u8; 64], 0), Err(FrameProblem::Empty));
        let mut zero_length = data_frame(b"abc", 0, &EXPECT);
        stamp_checksums(&mut zero_length);
        zero_length[0..4].fill(0);
        assert!(
            matches!(
                EXPECT.check(&zero_length, 0),
                Err(FrameProblem::BadHeader(_))
            ),
            "a zeroed length in a written header is damage, not the end"
        );
        let mut block = data_frame(b"x", 32, &EXPECT);
        stamp_checksums(&mut block);
        assert!(matches!(
            EXPECT.check(&block, 64),
            Err(FrameProblem::BadHeader(_))
        ));
        assert!(matches!(
            EXPECT.check(&block[..32], 32),
            Err(FrameProblem::Truncated)
        ));
    }

    #[test]
    fn term_of_wraps_term_ids() {
        assert_eq!(term_of(0, i32::MAX, 1 << 16), (i32::MAX, 0));
        assert_eq!(term_of((1 << 16) + 96, i32::MAX, 1 << 16), (i32::MIN, 96));
    }
}
