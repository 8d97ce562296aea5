//! A Raft entry as one frame of a segment file (pure, no I/O). Drawn byte by byte in
//! `docs/cluster.md`.
//!
//! The frame is an Aeron data frame as the archive stores it ([`tern_store::frame`]): its
//! reserved value holds the entry's Raft term, its session id field the frame's CRC32C (stamped
//! by the segment writer), its stream id [`LOG_STREAM_ID`]. The payload:
//!
//! ```text
//!  0               8               16      17      18      20              24
//!  +---------------+---------------+-------+-------+-------+---------------+----------------+
//!  | index (u64)   | term (u64)    |version| type  | zero  | context length| context | data |
//!  +---------------+---------------+-------+-------+-------+---------------+----------------+
//! ```

use raft::prelude::{Entry, EntryType};
use tern_store::frame::{
    align_frame, term_of, FrameHeader, HEADER_LENGTH, TYPE_DATA, TYPE_PAD, UNFRAGMENTED,
};

/// The stream id in every log frame (Aeron Cluster's default log stream id).
pub const LOG_STREAM_ID: i32 = 100;
/// The recording id in the log's segment file names (`0-<base>.rec`).
pub const LOG_RECORDING_ID: tern_store::RecordingId = tern_store::RecordingId::new(0);
/// The version of the entry payload layout.
pub const ENTRY_VERSION: u8 = 1;
/// Bytes of the entry header at the start of the payload.
pub const ENTRY_HEADER_LENGTH: usize = 24;

/// Why a frame does not hold a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    /// The payload is shorter than the entry header or its context.
    #[error("entry payload of {0} bytes is too short")]
    Short(usize),
    /// An unknown payload version.
    #[error("entry version {0} (this build reads {ENTRY_VERSION})")]
    Version(u8),
    /// An unknown entry type.
    #[error("entry type {0}")]
    Type(u8),
    /// The frame's reserved value and the payload disagree on the term.
    #[error("frame term {frame} but entry term {entry}")]
    Term {
        /// The reserved value.
        frame: i64,
        /// The payload's term.
        entry: u64,
    },
}

fn type_code(entry_type: EntryType) -> u8 {
    match entry_type {
        EntryType::EntryNormal => 0,
        EntryType::EntryConfChange => 1,
        EntryType::EntryConfChangeV2 => 2,
    }
}

/// Where [`encode_entry`] put an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// Bytes of padding (a whole padding frame, body zeroed) before the entry's frame; 0 if none.
    pub padding: usize,
    /// Stream position of the entry's frame.
    pub position: i64,
    /// Stream position after it.
    pub end: i64,
}

/// Append to `out` the frames that put `entry` at stream `position` of a log whose terms are
/// `term_length` long (initial term id 0): a padding frame first (its whole length, body zeroed)
/// when the entry does not fit in what is left of the term. The entry must fit in a term.
pub fn encode_entry(entry: &Entry, position: i64, term_length: i32, out: &mut Vec<u8>) -> Encoded {
    let frame = FrameAt {
        position,
        term_length,
        stream_id: LOG_STREAM_ID,
        reserved_value: entry.term as i64,
        payload_length: ENTRY_HEADER_LENGTH + entry.context.len() + entry.data.len(),
    };
    let (encoded, payload) = frame.place(out);
    payload[0..8].copy_from_slice(&entry.index.to_le_bytes());
    payload[8..16].copy_from_slice(&entry.term.to_le_bytes());
    payload[16] = ENTRY_VERSION;
    payload[17] = type_code(entry.get_entry_type());
    payload[18..20].fill(0);
    payload[20..24].copy_from_slice(&(entry.context.len() as u32).to_le_bytes());
    let context_end = ENTRY_HEADER_LENGTH + entry.context.len();
    payload[ENTRY_HEADER_LENGTH..context_end].copy_from_slice(&entry.context);
    payload[context_end..].copy_from_slice(&entry.data);
    encoded
}

/// One unfragmented data frame to place at a stream position of a recording whose terms are
/// `term_length` long (initial term id 0): the Raft log's entries and the egress recording's
/// messages.
#[derive(Debug, Clone, Copy)]
pub struct FrameAt {
    /// Where the stream is (the frame goes here, or after a padding frame).
    pub position: i64,
    /// The recording's term length.
    pub term_length: i32,
    /// The frame header's stream id.
    pub stream_id: i32,
    /// The frame header's reserved value.
    pub reserved_value: i64,
    /// Bytes of payload.
    pub payload_length: usize,
}

impl FrameAt {
    /// Append the frame to `out` (a padding frame first, its whole length, body zeroed, when it
    /// does not fit in what is left of the term), and return where it went and its payload to
    /// fill. The frame must fit in a term.
    pub fn place(self, out: &mut Vec<u8>) -> (Encoded, &mut [u8]) {
        let length = HEADER_LENGTH + self.payload_length;
        let aligned = align_frame(length);
        let term_length = self.term_length;
        assert!(
            aligned <= term_length as usize,
            "a frame of {length} bytes does not fit in a term of {term_length}"
        );
        let mut position = self.position;
        let (term_id, offset) = term_of(position, 0, term_length);
        let left = (term_length - offset) as usize;
        let mut padding = 0;
        if aligned > left {
            let start = out.len();
            out.resize(start + left, 0);
            FrameHeader {
                frame_length: left as i32,
                flags: UNFRAGMENTED,
                frame_type: TYPE_PAD,
                term_offset: offset,
                session_id: 0,
                stream_id: self.stream_id,
                term_id,
                reserved_value: 0,
            }
            .encode(&mut out[start..]);
            position += left as i64;
            padding = left;
        }
        let (term_id, offset) = term_of(position, 0, term_length);
        let start = out.len();
        out.resize(start + aligned, 0);
        let frame = &mut out[start..];
        FrameHeader {
            frame_length: length as i32,
            flags: UNFRAGMENTED,
            frame_type: TYPE_DATA,
            term_offset: offset,
            session_id: 0,
            stream_id: self.stream_id,
            term_id,
            reserved_value: self.reserved_value,
        }
        .encode(frame);
        let encoded = Encoded {
            padding,
            position,
            end: position + aligned as i64,
        };
        (encoded, &mut frame[HEADER_LENGTH..length])
    }
}

/// The entry in a data frame's `payload` whose header carried `reserved_value`.
///
/// # Errors
/// The payload is not a valid entry.
pub fn decode_entry(payload: &[u8], reserved_value: i64) -> Result<Entry, EntryProblem> {
    if payload.len() < ENTRY_HEADER_LENGTH {
        return Err(EntryProblem::Short(payload.len()));
    }
    let u64_at =
        |offset: usize| u64::from_le_bytes(payload[offset..offset + 8].try_into().expect("8"));
    let index = u64_at(0);
    let term = u64_at(8);
    if payload[16] != ENTRY_VERSION {
        return Err(EntryProblem::Version(payload[16]));
    }
    let entry_type = match payload[17] {
        0 => EntryType::EntryNormal,
        1 => EntryType::EntryConfChange,
        2 => EntryType::EntryConfChangeV2,
        other => return Err(EntryProblem::Type(other)),
    };
    if reserved_value as u64 != term {
        return Err(EntryProblem::Term {
            frame: reserved_value,
            entry: term,
        });
    }
    let context_length = u32::from_le_bytes(payload[20..24].try_into().expect("4")) as usize;
    let context_end = ENTRY_HEADER_LENGTH
        .checked_add(context_length)
        .filter(|end| *end <= payload.len())
        .ok_or(EntryProblem::Short(payload.len()))?;
    let mut entry = Entry {
        index,
        term,
        context: payload[ENTRY_HEADER_LENGTH..context_end].to_vec().into(),
        data: payload[context_end..].to_vec().into(),
        ..Entry::default()
    };
    entry.set_entry_type(entry_type);
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::frame::{stamp_checksums, FrameExpectation};

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Entry::default()
        }
    }

    #[test]
    fn an_entry_round_trips_through_a_checked_frame() {
        let mut out = Vec::new();
        let original = entry(7, 3, b"hello");
        let encoded = encode_entry(&original, 64, 1 << 16, &mut out);
        assert_eq!(encoded.padding, 0);
        assert_eq!(encoded.end, 64 + align_frame(HEADER_LENGTH + 24 + 5) as i64);
        stamp_checksums(&mut out);
        let expectation = FrameExpectation {
            initial_term_id: 0,
            term_length: 1 << 16,
            stream_id: LOG_STREAM_ID,
        };
        let (header, aligned) = expectation.check(&out, 64).expect("a valid frame");
        assert_eq!(aligned, out.len());
        let decoded = decode_entry(
            &out[HEADER_LENGTH..header.frame_length as usize],
            header.reserved_value,
        )
        .expect("an entry");
        assert_eq!(decoded, original);
    }

    #[test]
    fn an_entry_that_does_not_fit_the_term_follows_a_padding_frame() {
        let term_length = 1024;
        let mut out = Vec::new();
        let encoded = encode_entry(&entry(1, 1, &[9; 100]), 1024 - 64, term_length, &mut out);
        assert_eq!(encoded.padding, 64);
        let padding = FrameHeader::decode(&out);
        assert!(padding.is_padding());
        assert_eq!(padding.frame_length, 64);
        let data = FrameHeader::decode(&out[64..]);
        assert_eq!((data.term_id, data.term_offset), (1, 0));
        assert_eq!(encoded.position, 1024);
        assert_eq!(
            encoded.end,
            1024 + align_frame(HEADER_LENGTH + 24 + 100) as i64
        );
    }

    #[test]
    fn damaged_payloads_are_named() {
        let mut out = Vec::new();
        encode_entry(&entry(1, 2, b"x"), 0, 1 << 16, &mut out);
        let payload = &out[HEADER_LENGTH..HEADER_LENGTH + 25];
        assert_eq!(
            decode_entry(&payload[..10], 2),
            Err(EntryProblem::Short(10))
        );
        assert_eq!(
            decode_entry(payload, 5),
            Err(EntryProblem::Term { frame: 5, entry: 2 })
        );
        let mut bad = payload.to_vec();
        bad[17] = 9;
        assert_eq!(decode_entry(&bad, 2), Err(EntryProblem::Type(9)));
        bad[16] = 4;
        assert_eq!(decode_entry(&bad, 2), Err(EntryProblem::Version(4)));
        let mut long_context = payload.to_vec();
        long_context[20..24].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(decode_entry(&long_context, 2), Err(EntryProblem::Short(25)));
    }
}
