//! The catalog's record of one recording, and its fixed-size binary form (pure, no I/O).
//!
//! See `docs/formats.md` for the layout drawn byte by byte.

use crate::ids::RecordingId;

/// The stop position of a recording that is still being written (or was interrupted by a crash
/// and not yet recovered).
pub const NULL_POSITION: i64 = -1;
/// Length of every catalog record.
pub const RECORD_LENGTH: usize = 1024;
/// Offset of the first variable-length field in a record.
const STRINGS_OFFSET: usize = 80;

/// Whether a catalog record is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordState {
    /// A recording, active or stopped.
    Valid = 1,
    /// Marked invalid: kept on disk, not replayed.
    Invalid = 2,
    /// Deleted: its segments may be gone.
    Deleted = 3,
}

impl RecordState {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Valid),
            2 => Some(Self::Invalid),
            3 => Some(Self::Deleted),
            _ => None,
        }
    }

    /// A short lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Deleted => "deleted",
        }
    }
}

/// Everything the catalog knows of a recording: Aeron's RecordingDescriptor fields plus a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingDescriptor {
    /// The recording's id: its slot in the catalog.
    pub recording_id: RecordingId,
    /// Record state.
    pub state: RecordState,
    /// When recording started, nanoseconds since the Unix epoch.
    pub start_timestamp_ns: i64,
    /// When recording stopped, nanoseconds since the Unix epoch; [`NULL_POSITION`] while active.
    pub stop_timestamp_ns: i64,
    /// The stream position of the first recorded byte (a frame start).
    pub start_position: i64,
    /// The stream position after the last recorded frame; [`NULL_POSITION`] while active.
    pub stop_position: i64,
    /// The stream's initial term id.
    pub initial_term_id: i32,
    /// Length of each segment file (power of two, a multiple of the term length).
    pub segment_length: i32,
    /// The stream's term length.
    pub term_length: i32,
    /// The stream's MTU.
    pub mtu_length: i32,
    /// The publisher's session id.
    pub session_id: i32,
    /// The stream id.
    pub stream_id: i32,
    /// The channel as subscribed to, without `aeron-spy:`.
    pub stripped_channel: String,
    /// The channel as the user asked for it.
    pub original_channel: String,
    /// Where the publisher is (`aeron:ipc`, or host:port for UDP).
    pub source_identity: String,
}

impl RecordingDescriptor {
    /// Whether the recording has not been stopped (still active, or interrupted and not recovered).
    pub fn is_active(&self) -> bool {
        self.stop_position == NULL_POSITION
    }

    /// Encode into a record of [`RECORD_LENGTH`] bytes, checksum included.
    ///
    /// # Errors
    /// The three strings do not fit in the record (a description of the overflow).
    pub fn encode(&self) -> Result<[u8; RECORD_LENGTH], String> {
        let strings = [
            &self.stripped_channel,
            &self.original_channel,
            &self.source_identity,
        ];
        let needed: usize = STRINGS_OFFSET + strings.iter().map(|s| 2 + s.len()).sum::<usize>();
        if needed > RECORD_LENGTH {
            return Err(format!(
                "channel and source identity take {} bytes, more than the {} a catalog record holds",
                needed - STRINGS_OFFSET,
                RECORD_LENGTH - STRINGS_OFFSET - 6
            ));
        }
        let mut record = [0u8; RECORD_LENGTH];
        record[4] = self.state as u8;
        record[5] = 1; // record format version
        let mut put = |offset: usize, bytes: &[u8]| {
            record[offset..offset + bytes.len()].copy_from_slice(bytes)
        };
        put(8, &self.recording_id.get().to_le_bytes());
        put(16, &self.start_timestamp_ns.to_le_bytes());
        put(24, &self.stop_timestamp_ns.to_le_bytes());
        put(32, &self.start_position.to_le_bytes());
        put(40, &self.stop_position.to_le_bytes());
        put(48, &self.initial_term_id.to_le_bytes());
        put(52, &self.segment_length.to_le_bytes());
        put(56, &self.term_length.to_le_bytes());
        put(60, &self.mtu_length.to_le_bytes());
        put(64, &self.session_id.to_le_bytes());
        put(68, &self.stream_id.to_le_bytes());
        let mut offset = STRINGS_OFFSET;
        for text in strings {
            put(offset, &(text.len() as u16).to_le_bytes());
            put(offset + 2, text.as_bytes());
            offset += 2 + text.len();
        }
        let crc = crc32c::crc32c(&record[4..]);
        record[0..4].copy_from_slice(&crc.to_le_bytes());
        Ok(record)
    }

    /// Decode a record, checking its checksum and fields.
    ///
    /// # Errors
    /// What is wrong with the record, for an error message.
    pub fn decode(record: &[u8]) -> Result<Self, String> {
        if record.len() != RECORD_LENGTH {
            return Err(format!(
                "record is {} bytes, not {RECORD_LENGTH}",
                record.len()
            ));
        }
        let stored = u32::from_le_bytes(record[0..4].try_into().expect("4 bytes"));
        let computed = crc32c::crc32c(&record[4..]);
        if stored != computed {
            return Err(format!(
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ));
        }
        if record[5] != 1 {
            return Err(format!(
                "record format version {} (this tern reads version 1)",
                record[5]
            ));
        }
        let state = RecordState::from_byte(record[4])
            .ok_or_else(|| format!("unknown state {}", record[4]))?;
        let i64_at = |offset: usize| {
            i64::from_le_bytes(record[offset..offset + 8].try_into().expect("8 bytes"))
        };
        let i32_at = |offset: usize| {
            i32::from_le_bytes(record[offset..offset + 4].try_into().expect("4 bytes"))
        };
        let mut offset = STRINGS_OFFSET;
        let mut strings = Vec::with_capacity(3);
        for _ in 0..3 {
            if offset + 2 > RECORD_LENGTH {
                return Err("string fields overrun the record".into());
            }
            let length = u16::from_le_bytes([record[offset], record[offset + 1]]) as usize;
            let end = offset + 2 + length;
            if end > RECORD_LENGTH {
                return Err("string fields overrun the record".into());
            }
            let text = std::str::from_utf8(&record[offset + 2..end])
                .map_err(|_| "a string field is not UTF-8".to_string())?;
            strings.push(text.to_string());
            offset = end;
        }
        let source_identity = strings.pop().unwrap_or_default();
        let original_channel = strings.pop().unwrap_or_default();
        let stripped_channel = strings.pop().unwrap_or_default();
        let descriptor = Self {
            recording_id: RecordingId::new(i64_at(8)),
            state,
            start_timestamp_ns: i64_at(16),
            stop_timestamp_ns: i64_at(24),
            start_position: i64_at(32),
            stop_position: i64_at(40),
            initial_term_id: i32_at(48),
            segment_length: i32_at(52),
            term_length: i32_at(56),
            mtu_length: i32_at(60),
            session_id: i32_at(64),
            stream_id: i32_at(68),
            stripped_channel,
            original_channel,
            source_identity,
        };
        descriptor.validate()?;
        Ok(descriptor)
    }

    /// Check the relations between fields that every reader relies on.
    ///
    /// # Errors
    /// The first relation that does not hold.
    pub fn validate(&self) -> Result<(), String> {
        let power_of_two = |value: i32| value > 0 && (value & (value - 1)) == 0;
        if !power_of_two(self.term_length) || self.term_length < 64 * 1024 {
            return Err(format!(
                "term length {} is not a power of two >= 64 KiB",
                self.term_length
            ));
        }
        if !power_of_two(self.segment_length) || self.segment_length < self.term_length {
            return Err(format!(
                "segment length {} is not a power of two >= the term length {}",
                self.segment_length, self.term_length
            ));
        }
        if self.start_position < 0 || self.start_position % 32 != 0 {
            return Err(format!(
                "start position {} is not frame aligned",
                self.start_position
            ));
        }
        if self.stop_position != NULL_POSITION
            && (self.stop_position < self.start_position || self.stop_position % 32 != 0)
        {
            return Err(format!(
                "stop position {} is before the start {} or not frame aligned",
                self.stop_position, self.start_position
            ));
        }
        Ok(())
    }
}

/// A descriptor with plausible values for tests (this crate's and its users').
#[doc(hidden)]
pub fn sample(recording_id: RecordingId) -> RecordingDescriptor {
    RecordingDescriptor {
        recording_id,
        state: RecordState::Valid,
        start_timestamp_ns: 1_700_000_000_000_000_000,
        stop_timestamp_ns: NULL_POSITION,
        start_position: 4096,
        stop_position: NULL_POSITION,
        initial_term_id: -5,
        segment_length: 1 << 20,
        term_length: 1 << 16,
        mtu_length: 1408,
        session_id: 12345,
        stream_id: 1001,
        stripped_channel: "aeron:udp?endpoint=localhost:20121".into(),
        original_channel: "aeron:udp?endpoint=localhost:20121|term-length=64k".into(),
        source_identity: "127.0.0.1:55555".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_detected() {
        let descriptor = sample(RecordingId::new(3));
        let record = descriptor.encode().expect("fits");
        assert_eq!(RecordingDescriptor::decode(&record), Ok(descriptor));
        for index in [0, 4, 9, 40, 90, 1023] {
            let mut damaged = record;
            damaged[index] ^= 0x10;
            assert!(
                RecordingDescriptor::decode(&damaged).is_err(),
                "damage at {index} missed"
            );
        }
    }

    #[test]
    fn strings_too_long_for_a_record_are_refused() {
        let mut descriptor = sample(RecordingId::new(1));
        descriptor.original_channel = "x".repeat(900);
        assert!(descriptor.encode().is_err());
    }
}
