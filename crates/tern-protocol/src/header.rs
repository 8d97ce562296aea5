//! The SBE message header that starts every message, and the schema identities.

use crate::error::DecodeError;
use crate::spec::FieldSpec;

/// Schema id of Aeron's archive control protocol (`aeron-archive-codecs.xml`).
pub const SCHEMA_ID: u16 = 101;

/// Schema version this codec writes and was checked against (Aeron 1.54).
pub const SCHEMA_VERSION: u16 = 14;

/// Schema id of tern's own control extensions (replay from a time, cursors, ...): the messages
/// of [`TernMessage`](crate::TernMessage).
///
/// Messages of this schema share the same 8-byte header layout, so a receiver can read the
/// header and dispatch on `schema_id` ([`AnyMessage`](crate::AnyMessage) does).
pub const TERN_SCHEMA_ID: u16 = 1101;

/// Version of tern's extension schema this codec writes (the first).
pub const TERN_SCHEMA_VERSION: u16 = 1;

/// Length of the message header in bytes.
pub const MESSAGE_HEADER_LENGTH: usize = 8;

/// The 8-byte SBE message header (composite `messageHeader`), all fields little-endian `u16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageHeader {
    /// Length of the root block (fixed fields) that follows the header.
    pub block_length: u16,
    /// Which message follows.
    pub template_id: u16,
    /// Which schema the template belongs to.
    pub schema_id: u16,
    /// The schema version the sender encoded with (the "acting version").
    pub version: u16,
}

impl MessageHeader {
    /// The layout of the `messageHeader` composite, checked against the schema by the
    /// conformance test and used by [`MessageHeader::encode`] and [`MessageHeader::decode`].
    pub const FIELDS: &'static [FieldSpec] = &[
        header_field("blockLength", 0),
        header_field("templateId", 2),
        header_field("schemaId", 4),
        header_field("version", 6),
    ];

    /// Appends the header to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        buf.resize(start + MESSAGE_HEADER_LENGTH, 0);
        let values = [
            self.block_length,
            self.template_id,
            self.schema_id,
            self.version,
        ];
        for (field, value) in Self::FIELDS.iter().zip(values) {
            let at = start + field.offset;
            buf[at..at + field.size].copy_from_slice(&value.to_le_bytes());
        }
    }

    /// Reads the header at the start of `buf`. Checks nothing but the length: a receiver that
    /// handles several schemas dispatches on [`MessageHeader::schema_id`].
    ///
    /// # Errors
    /// [`DecodeError::Truncated`] if `buf` is shorter than [`MESSAGE_HEADER_LENGTH`].
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        if buf.len() < MESSAGE_HEADER_LENGTH {
            return Err(DecodeError::Truncated {
                what: "message header",
                needed: MESSAGE_HEADER_LENGTH,
                available: buf.len(),
            });
        }
        let read = |index: usize| {
            let field = &Self::FIELDS[index];
            u16::from_le_bytes([buf[field.offset], buf[field.offset + 1]])
        };
        Ok(Self {
            block_length: read(0),
            template_id: read(1),
            schema_id: read(2),
            version: read(3),
        })
    }
}

const fn header_field(name: &'static str, offset: usize) -> FieldSpec {
    FieldSpec {
        name,
        offset,
        size: 2,
        sbe_type: "uint16",
        null_value: None,
        since_version: 0,
    }
}
