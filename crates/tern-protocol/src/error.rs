//! Errors of the codec: what a decoder found wrong in a buffer, or why an encoder refused a value.

/// Why a buffer could not be decoded as an archive control message.
///
/// Every variant names what it was about (the field, the template, the ids seen), so a server can
/// put the text into an ERROR `ControlResponse` and a log line can be acted on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer ends before the part being read.
    #[error("truncated {what}: need {needed} bytes, have {available}")]
    Truncated {
        /// The part being read: "message header", "fixed block", or a var-data field's name.
        what: &'static str,
        /// Bytes the part needs from where it starts.
        needed: usize,
        /// Bytes left in the buffer from where it starts.
        available: usize,
    },
    /// The header's schema id is not the one this decoder handles.
    #[error("wrong schema id {schema_id}, expected {expected}")]
    WrongSchema {
        /// The schema id in the header.
        schema_id: u16,
        /// The schema id this decoder handles.
        expected: u16,
    },
    /// The header's template id is not a message tern supports in this schema.
    #[error("unknown template id {template_id}")]
    UnknownTemplate {
        /// The template id in the header.
        template_id: u16,
    },
    /// The header's block length is shorter than the fixed fields the sender's version must carry.
    #[error(
        "template {template_id} version {version}: block length {block_length} is shorter than \
         the {required} bytes its fields need"
    )]
    BlockLengthTooShort {
        /// The template id in the header.
        template_id: u16,
        /// The acting version in the header.
        version: u16,
        /// The block length in the header.
        block_length: u16,
        /// The block length the fields present at that version need.
        required: usize,
    },
    /// An enum field holds a value that is not one of the schema's valid values.
    #[error("field {field}: {value} is not a valid {enum_name}")]
    BadEnumValue {
        /// The field's schema name.
        field: &'static str,
        /// The enum's schema name.
        enum_name: &'static str,
        /// The raw value on the wire.
        value: i32,
    },
    /// A `varAsciiEncoding` field holds a byte outside US-ASCII (0..=127).
    #[error("field {field}: byte {byte:#04x} at index {index} is not US-ASCII")]
    NonAscii {
        /// The field's schema name.
        field: &'static str,
        /// Index of the first offending byte within the field's data.
        index: usize,
        /// The offending byte.
        byte: u8,
    },
    /// A var-data length prefix exceeds the schema's `maxValue` for it.
    #[error("field {field}: length {length} exceeds the maximum {max}")]
    VarDataTooLong {
        /// The field's schema name.
        field: &'static str,
        /// The length prefix on the wire.
        length: u32,
        /// The schema's maximum.
        max: u32,
    },
    /// A field that this codec cannot represent as absent was not sent at the sender's version.
    ///
    /// Only fields with a null value can be absent; this would need a schema where an enum field
    /// has a `sinceVersion`, which none of the supported messages has.
    #[error(
        "template {template_id} version {version}: field {field} is absent and has no null value"
    )]
    FieldAbsent {
        /// The template id in the header.
        template_id: u16,
        /// The acting version in the header.
        version: u16,
        /// The field's schema name.
        field: &'static str,
    },
}

/// Why a message could not be encoded.
///
/// The buffer is left as it was when encoding fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A `varAsciiEncoding` field holds a character outside US-ASCII.
    ///
    /// [`crate::to_ascii_lossy`] replaces such characters with `?`, as Aeron's Java encoder does.
    #[error("field {field}: byte {byte:#04x} at index {index} is not US-ASCII")]
    NonAscii {
        /// The field's schema name.
        field: &'static str,
        /// Index of the first offending byte within the field's UTF-8 data.
        index: usize,
        /// The offending byte.
        byte: u8,
    },
    /// A var-data field is longer than the schema's `maxValue` for its length prefix.
    #[error("field {field}: length {length} exceeds the maximum {max}")]
    VarDataTooLong {
        /// The field's schema name.
        field: &'static str,
        /// The field's length in bytes.
        length: usize,
        /// The schema's maximum.
        max: u32,
    },
}
