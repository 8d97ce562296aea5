//! The layout tables every message carries. The encoder and decoder read field offsets and sizes
//! from these tables (not from a second copy), so the conformance test that compares them with
//! Aeron's schema checks the bytes the codec really writes.

/// One fixed-size field of a message's root block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// The field's name in the schema (`controlSessionId`).
    pub name: &'static str,
    /// Offset of the field from the start of the root block (after the message header).
    pub offset: usize,
    /// Size of the field in bytes.
    pub size: usize,
    /// The field's type as the schema resolves it: a primitive (`int64`, `int32`) for plain and
    /// aliased types (`time_t` is `int64`, `version_t` is `int32`), or the enum's name.
    pub sbe_type: &'static str,
    /// The raw value that stands for "null": what the decoder yields when the sender's version
    /// predates the field, and what an optional field holds when it has no value. `None` for
    /// enums, which this codec does not let be null.
    pub null_value: Option<i64>,
    /// The schema version that added the field (0 if it was there from the start).
    pub since_version: u16,
}

/// How a var-data field's bytes are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarEncoding {
    /// `varAsciiEncoding`: US-ASCII text, a `String` in Rust; other bytes are refused.
    Ascii,
    /// `varDataEncoding`: opaque bytes, a `Vec<u8>` in Rust.
    Bytes,
}

impl VarEncoding {
    /// The name of the schema composite for this encoding.
    pub const fn composite_name(self) -> &'static str {
        match self {
            VarEncoding::Ascii => "varAsciiEncoding",
            VarEncoding::Bytes => "varDataEncoding",
        }
    }
}

/// One variable-length field. Var data follows the root block in declaration order, each a
/// little-endian `u32` length then that many bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VarDataSpec {
    /// The field's name in the schema (`channel`).
    pub name: &'static str,
    /// How the bytes are interpreted.
    pub encoding: VarEncoding,
    /// Size of the length prefix in bytes.
    pub length_size: usize,
    /// The schema version that added the field (0 if it was there from the start).
    pub since_version: u16,
}

/// The layout of one message: what the conformance test compares with the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageSpec {
    /// The message's name in the schema (`ReplayRequest`), also the Rust type's name.
    pub name: &'static str,
    /// The schema the message belongs to, written in the header's `schemaId`: Aeron's
    /// [`SCHEMA_ID`](crate::SCHEMA_ID) (101) or tern's [`TERN_SCHEMA_ID`](crate::TERN_SCHEMA_ID)
    /// (1101).
    pub schema_id: u16,
    /// The schema version the encoder writes in the header's `version`: 14 for schema 101, 1 for
    /// schema 1101.
    pub schema_version: u16,
    /// The template id in the message header (unique within its schema only).
    pub template_id: u16,
    /// The root block length this codec writes (at `schema_version`).
    pub block_length: usize,
    /// The schema version that added the message (0 if it was there from the start).
    pub since_version: u16,
    /// The fixed fields, in schema order.
    pub fields: &'static [FieldSpec],
    /// The var-data fields, in schema (and wire) order.
    pub var_data: &'static [VarDataSpec],
}

impl MessageSpec {
    /// The shortest root block a sender at `acting_version` may send: the end of the last fixed
    /// field that version has. Fields added later are absent and decode as their null value.
    pub fn required_block_length(&self, acting_version: u16) -> usize {
        self.fields
            .iter()
            .filter(|field| field.since_version <= acting_version)
            .map(|field| field.offset + field.size)
            .max()
            .unwrap_or(0)
    }
}
