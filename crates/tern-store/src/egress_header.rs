//! tern's egress header v1 (pure, no I/O): the 48 bytes that start every message the cluster
//! sends a client (the client protocol's `Egress` message, kind 12, protocol version 2), and that
//! the cluster records, message by message, on every node. The archive reads it for keys
//! ([`KeyKind::TernEgress`](crate::key::KeyKind::TernEgress): the cluster session id) and times
//! ([`TimeSource::TernEgress`](crate::message_time::TimeSource::TernEgress): the cluster
//! timestamp).
//!
//! Layout (little-endian, offsets from the start of the message):
//!
//! ```text
//!  byte   +0   +1   +2   +3   +4   +5   +6   +7
//!       +----+----+----+----+----+----+----+----+
//!     0 |vers|kind|  zero   |       zero        |  version u8 = 2, kind u8 = 12, zero u16, zero u32
//!       +----+----+----+----+----+----+----+----+
//!     8 |       cluster session id (i64)        |
//!       +----+----+----+----+----+----+----+----+
//!    16 |       session sequence (u64)          |  1 for a session's first egress message
//!       +----+----+----+----+----+----+----+----+
//!    24 |       log index (u64)                 |  the Raft entry whose applying produced it
//!       +----+----+----+----+----+----+----+----+
//!    32 |       cluster timestamp (i64)         |  nanoseconds since the Unix epoch
//!       +----+----+----+----+----+----+----+----+
//!    40 |       egress number (u64)             |  cluster-wide, 1 for the cluster's first
//!       +----+----+----+----+----+----+----+----+
//!    48 | payload ...
//! ```
//!
//! A message is a tern egress message when it is at least [`LENGTH`] bytes long, its version byte
//! is [`VERSION`], its kind byte is [`KIND`] and bytes 2 to 7 are zero; any other message has no
//! header ([`decode`] says why).

/// Length of the header; the payload starts here.
pub const LENGTH: usize = 48;
/// The client protocol version the header belongs to (byte 0).
pub const VERSION: u8 = 2;
/// The client protocol's message kind of egress (byte 1).
pub const KIND: u8 = 12;
/// Offset of the version byte.
pub const VERSION_OFFSET: usize = 0;
/// Offset of the kind byte.
pub const KIND_OFFSET: usize = 1;
/// Offset of the zero bytes (2 to 7).
pub const ZERO_OFFSET: usize = 2;
/// Offset of the cluster session id (i64).
pub const SESSION_ID_OFFSET: usize = 8;
/// Offset of the session sequence (u64).
pub const SEQUENCE_OFFSET: usize = 16;
/// Offset of the log index (u64).
pub const LOG_INDEX_OFFSET: usize = 24;
/// Offset of the cluster timestamp (i64, nanoseconds since the Unix epoch).
pub const TIMESTAMP_OFFSET: usize = 32;
/// Offset of the egress number (u64).
pub const EGRESS_NUMBER_OFFSET: usize = 40;
/// Offset of the payload (the header's length).
pub const PAYLOAD_OFFSET: usize = LENGTH;

/// The fields of a tern egress header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EgressHeader {
    /// The cluster session the message is sent to.
    pub session_id: i64,
    /// Its place among the session's egress messages, 1 for the first.
    pub sequence: u64,
    /// The Raft log index of the entry whose applying produced it.
    pub log_index: u64,
    /// The cluster time of that entry, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// Its place among the cluster's egress messages, 1 for the first.
    pub egress_number: u64,
}

/// Why a message has no tern egress header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than [`LENGTH`] (the length it has).
    TooShort(usize),
    /// Another protocol version in byte 0.
    Version(u8),
    /// Another message kind in byte 1.
    Kind(u8),
    /// Bytes 2 to 7, zero in this version of the header, are not.
    NotZero,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort(length) => write!(
                f,
                "{length} bytes: too short for tern's egress header ({LENGTH} bytes)"
            ),
            Self::Version(version) => write!(
                f,
                "protocol version {version}: tern's egress header is version {VERSION}"
            ),
            Self::Kind(kind) => write!(f, "message kind {kind}: egress is kind {KIND}"),
            Self::NotZero => write!(f, "bytes 2 to 7 of tern's egress header are not zero"),
        }
    }
}

impl std::error::Error for HeaderError {}

impl EgressHeader {
    /// Append the header's [`LENGTH`] bytes to `out` (the payload goes after them).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// The header's [`LENGTH`] bytes.
    pub fn to_bytes(&self) -> [u8; LENGTH] {
        let mut bytes = [0u8; LENGTH];
        bytes[VERSION_OFFSET] = VERSION;
        bytes[KIND_OFFSET] = KIND;
        bytes[SESSION_ID_OFFSET..SESSION_ID_OFFSET + 8]
            .copy_from_slice(&self.session_id.to_le_bytes());
        bytes[SEQUENCE_OFFSET..SEQUENCE_OFFSET + 8].copy_from_slice(&self.sequence.to_le_bytes());
        bytes[LOG_INDEX_OFFSET..LOG_INDEX_OFFSET + 8]
            .copy_from_slice(&self.log_index.to_le_bytes());
        bytes[TIMESTAMP_OFFSET..TIMESTAMP_OFFSET + 8]
            .copy_from_slice(&self.timestamp_ns.to_le_bytes());
        bytes[EGRESS_NUMBER_OFFSET..EGRESS_NUMBER_OFFSET + 8]
            .copy_from_slice(&self.egress_number.to_le_bytes());
        bytes
    }

    /// The header at the start of `message`.
    ///
    /// # Errors
    /// The message is too short, or is not a tern egress message (another version or kind,
    /// nonzero bytes 2 to 7).
    pub fn decode(message: &[u8]) -> Result<Self, HeaderError> {
        check(message)?;
        Ok(Self {
            session_id: u64_at(message, SESSION_ID_OFFSET) as i64,
            sequence: u64_at(message, SEQUENCE_OFFSET),
            log_index: u64_at(message, LOG_INDEX_OFFSET),
            timestamp_ns: u64_at(message, TIMESTAMP_OFFSET) as i64,
            egress_number: u64_at(message, EGRESS_NUMBER_OFFSET),
        })
    }
}

/// Append a header with these fields to `out` (see [`EgressHeader`]); the payload goes after it.
pub fn encode_header(
    session_id: i64,
    sequence: u64,
    log_index: u64,
    timestamp_ns: i64,
    egress_number: u64,
    out: &mut Vec<u8>,
) {
    EgressHeader {
        session_id,
        sequence,
        log_index,
        timestamp_ns,
        egress_number,
    }
    .encode(out);
}

/// The header at the start of `message` ([`EgressHeader::decode`]).
///
/// # Errors
/// The message is too short, or is not a tern egress message.
pub fn decode(message: &[u8]) -> Result<EgressHeader, HeaderError> {
    EgressHeader::decode(message)
}

/// Whether `message` starts with a tern egress header.
pub fn is_egress(message: &[u8]) -> bool {
    check(message).is_ok()
}

/// The cluster session id of a tern egress message; `None` for any other message.
pub fn session_id(message: &[u8]) -> Option<i64> {
    is_egress(message).then(|| u64_at(message, SESSION_ID_OFFSET) as i64)
}

/// The cluster timestamp (nanoseconds since the Unix epoch) of a tern egress message; `None` for
/// any other message.
pub fn timestamp_ns(message: &[u8]) -> Option<i64> {
    is_egress(message).then(|| u64_at(message, TIMESTAMP_OFFSET) as i64)
}

/// The payload of a tern egress message (what follows the header); `None` for any other message.
pub fn payload(message: &[u8]) -> Option<&[u8]> {
    is_egress(message).then(|| &message[PAYLOAD_OFFSET..])
}

fn check(message: &[u8]) -> Result<(), HeaderError> {
    if message.len() < LENGTH {
        return Err(HeaderError::TooShort(message.len()));
    }
    if message[VERSION_OFFSET] != VERSION {
        return Err(HeaderError::Version(message[VERSION_OFFSET]));
    }
    if message[KIND_OFFSET] != KIND {
        return Err(HeaderError::Kind(message[KIND_OFFSET]));
    }
    if message[ZERO_OFFSET..SESSION_ID_OFFSET] != [0; 6] {
        return Err(HeaderError::NotZero);
    }
    Ok(())
}

/// The u64 at `offset` of a message already checked to hold the header.
fn u64_at(message: &[u8], offset: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&message[offset..offset + 8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EgressHeader {
        EgressHeader {
            session_id: -3,
            sequence: 1,
            log_index: 77,
            timestamp_ns: 1_700_000_000_123_456_789,
            egress_number: u64::MAX,
        }
    }

    #[test]
    fn a_header_round_trips_and_has_the_documented_bytes() {
        let header = sample();
        let mut message = Vec::new();
        encode_header(-3, 1, 77, 1_700_000_000_123_456_789, u64::MAX, &mut message);
        assert_eq!(message, header.to_bytes());
        message.extend_from_slice(b"payload");
        assert_eq!(decode(&message), Ok(header));
        assert_eq!(payload(&message), Some(&b"payload"[..]));
        assert_eq!(session_id(&message), Some(-3));
        assert_eq!(timestamp_ns(&message), Some(1_700_000_000_123_456_789));
        assert_eq!(&message[..8], &[2, 12, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&message[8..16], &(-3i64).to_le_bytes());
        assert_eq!(&message[16..24], &1u64.to_le_bytes());
        assert_eq!(&message[24..32], &77u64.to_le_bytes());
        assert_eq!(
            &message[32..40],
            &1_700_000_000_123_456_789i64.to_le_bytes()
        );
        assert_eq!(&message[40..48], &[0xff; 8]);
        // A header alone is a message with an empty payload.
        assert_eq!(payload(&header.to_bytes()), Some(&[][..]));
    }

    #[test]
    fn a_short_message_or_another_version_or_kind_has_no_header() {
        let bytes = sample().to_bytes();
        assert_eq!(decode(&bytes[..47]), Err(HeaderError::TooShort(47)));
        assert_eq!(decode(&[]), Err(HeaderError::TooShort(0)));
        let mut version = bytes;
        version[0] = 1;
        assert_eq!(decode(&version), Err(HeaderError::Version(1)));
        let mut kind = bytes;
        kind[1] = 11;
        assert_eq!(decode(&kind), Err(HeaderError::Kind(11)));
        for byte in 2..8 {
            let mut zero = bytes;
            zero[byte] = 1;
            assert_eq!(decode(&zero), Err(HeaderError::NotZero), "byte {byte}");
        }
        for other in [&bytes[..47], &version[..], &kind[..]] {
            assert!(!is_egress(other));
            assert_eq!(session_id(other), None);
            assert_eq!(timestamp_ns(other), None);
            assert_eq!(payload(other), None);
        }
        assert!(HeaderError::TooShort(47).to_string().contains("too short"));
        assert!(HeaderError::Kind(11).to_string().contains("kind 11"));
    }
}
