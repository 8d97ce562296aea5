//! The SBE machinery shared by every message: how one fixed field or var-data field is written and
//! read, cursors that walk a message's [`FieldSpec`] table, and the macros that declare enums and
//! messages. Field positions come only from the tables; the cursors assert that the Rust types
//! walk the table in order, so a table that disagrees with the struct is a bug found by any test.

use std::cell::Cell;

use crate::error::{DecodeError, EncodeError};
use crate::header::{MessageHeader, MESSAGE_HEADER_LENGTH};
use crate::spec::{FieldSpec, MessageSpec, VarDataSpec, VarEncoding};

/// Largest length a var-data field may have: the `maxValue` of the `length` field of both
/// `varAsciiEncoding` and `varDataEncoding` (1 GiB).
pub const VAR_DATA_MAX_LENGTH: u32 = 1_073_741_824;

/// Size of a var-data length prefix (`uint32`).
pub(crate) const VAR_DATA_LENGTH_SIZE: usize = 4;

/// A value that fits a fixed-size slot of the root block.
pub(crate) trait FixedField: Sized {
    /// The schema type as resolved to a primitive or an enum name (see [`FieldSpec::sbe_type`]).
    const SBE_TYPE: &'static str;
    /// Encoded size in bytes.
    const SIZE: usize;
    /// The raw null value, if the type has one (see [`FieldSpec::null_value`]).
    const NULL_VALUE: Option<i64>;

    /// Writes the value into `dst`, which is exactly `SIZE` bytes.
    fn put(&self, dst: &mut [u8]);

    /// Reads a value from `src`, which is exactly `SIZE` bytes.
    fn get(src: &[u8], field: &'static str) -> Result<Self, DecodeError>;

    /// The value of a field the sender's version did not have: its null value, if it has one.
    fn absent() -> Option<Self>;
}

impl FixedField for i64 {
    const SBE_TYPE: &'static str = "int64";
    const SIZE: usize = 8;
    const NULL_VALUE: Option<i64> = Some(i64::MIN);

    fn put(&self, dst: &mut [u8]) {
        dst.copy_from_slice(&self.to_le_bytes());
    }

    fn get(src: &[u8], _field: &'static str) -> Result<Self, DecodeError> {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(src);
        Ok(i64::from_le_bytes(bytes))
    }

    fn absent() -> Option<Self> {
        Some(i64::MIN)
    }
}

impl FixedField for i32 {
    const SBE_TYPE: &'static str = "int32";
    const SIZE: usize = 4;
    const NULL_VALUE: Option<i64> = Some(i32::MIN as i64);

    fn put(&self, dst: &mut [u8]) {
        dst.copy_from_slice(&self.to_le_bytes());
    }

    fn get(src: &[u8], _field: &'static str) -> Result<Self, DecodeError> {
        Ok(read_i32(src))
    }

    fn absent() -> Option<Self> {
        Some(i32::MIN)
    }
}

/// Reads a little-endian `i32` from a 4-byte slice.
pub(crate) fn read_i32(src: &[u8]) -> i32 {
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(src);
    i32::from_le_bytes(bytes)
}

/// A value of a var-data field.
pub(crate) trait VarField: Sized {
    /// How the bytes are interpreted.
    const ENCODING: VarEncoding;

    /// Checks the value can be encoded.
    fn validate(&self, field: &'static str) -> Result<(), EncodeError>;

    /// The bytes written after the length prefix.
    fn wire_bytes(&self) -> &[u8];

    /// Builds a value from the bytes after the length prefix.
    fn from_wire_bytes(bytes: &[u8], field: &'static str) -> Result<Self, DecodeError>;
}

impl VarField for String {
    const ENCODING: VarEncoding = VarEncoding::Ascii;

    fn validate(&self, field: &'static str) -> Result<(), EncodeError> {
        if let Some((index, &byte)) = self
            .as_bytes()
            .iter()
            .enumerate()
            .find(|(_, b)| !b.is_ascii())
        {
            return Err(EncodeError::NonAscii { field, index, byte });
        }
        check_encode_length(self.len(), field)
    }

    fn wire_bytes(&self) -> &[u8] {
        self.as_bytes()
    }

    fn from_wire_bytes(bytes: &[u8], field: &'static str) -> Result<Self, DecodeError> {
        if let Some((index, &byte)) = bytes.iter().enumerate().find(|(_, b)| !b.is_ascii()) {
            return Err(DecodeError::NonAscii { field, index, byte });
        }
        // All ASCII bytes are valid UTF-8, so no replacement happens here.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

impl VarField for Vec<u8> {
    const ENCODING: VarEncoding = VarEncoding::Bytes;

    fn validate(&self, field: &'static str) -> Result<(), EncodeError> {
        check_encode_length(self.len(), field)
    }

    fn wire_bytes(&self) -> &[u8] {
        self
    }

    fn from_wire_bytes(bytes: &[u8], _field: &'static str) -> Result<Self, DecodeError> {
        Ok(bytes.to_vec())
    }
}

fn check_encode_length(length: usize, field: &'static str) -> Result<(), EncodeError> {
    if length > VAR_DATA_MAX_LENGTH as usize {
        return Err(EncodeError::VarDataTooLong {
            field,
            length,
            max: VAR_DATA_MAX_LENGTH,
        });
    }
    Ok(())
}

/// Writes the header and a zeroed root block of `spec`, then hands out the block for the fixed
/// fields. The encoder always writes the message's schema id, that schema's current version and
/// the full block length.
pub(crate) fn begin_message<'a>(buf: &'a mut Vec<u8>, spec: &MessageSpec) -> BlockWriter<'a> {
    let header = MessageHeader {
        block_length: block_length_u16(spec.block_length),
        template_id: spec.template_id,
        schema_id: spec.schema_id,
        version: spec.schema_version,
    };
    header.encode(buf);
    let block_start = buf.len();
    buf.resize(block_start + spec.block_length, 0);
    BlockWriter {
        block: &mut buf[block_start..],
        fields: spec.fields,
        next: 0,
    }
}

fn block_length_u16(block_length: usize) -> u16 {
    // Every message declares a literal block length far below 64 KiB; this guards the cast.
    assert!(
        block_length <= usize::from(u16::MAX),
        "block length {block_length} exceeds u16"
    );
    block_length as u16
}

/// Walks a message's fixed fields in table order while encoding.
pub(crate) struct BlockWriter<'a> {
    block: &'a mut [u8],
    fields: &'static [FieldSpec],
    next: usize,
}

impl BlockWriter<'_> {
    /// Writes the next field of the table.
    pub(crate) fn put<T: FixedField>(&mut self, value: &T) {
        let field = next_field::<T>(self.fields, self.next);
        value.put(&mut self.block[field.offset..field.offset + field.size]);
        self.next += 1;
    }

    /// Checks every field of the table was written.
    pub(crate) fn finish(self) {
        assert_eq!(
            self.next,
            self.fields.len(),
            "not every fixed field was encoded"
        );
    }
}

fn next_field<T: FixedField>(fields: &'static [FieldSpec], next: usize) -> &'static FieldSpec {
    assert!(next < fields.len(), "more fixed fields than the table has");
    let field = &fields[next];
    assert_eq!(field.size, T::SIZE, "field {} size", field.name);
    assert_eq!(field.sbe_type, T::SBE_TYPE, "field {} type", field.name);
    field
}

/// Appends each var-data field: `u32` length then bytes. Values must have been validated.
pub(crate) fn put_var_data(buf: &mut Vec<u8>, specs: &'static [VarDataSpec], values: &[&[u8]]) {
    assert_eq!(
        specs.len(),
        values.len(),
        "var-data table and values differ"
    );
    for (spec, value) in specs.iter().zip(values) {
        assert_eq!(spec.length_size, VAR_DATA_LENGTH_SIZE);
        let length = u32::try_from(value.len()).unwrap_or(u32::MAX);
        assert!(
            length <= VAR_DATA_MAX_LENGTH,
            "{} was not validated",
            spec.name
        );
        buf.extend_from_slice(&length.to_le_bytes());
        buf.extend_from_slice(value);
    }
}

/// The root block of a received message, with what the decoder needs to read fields from it.
pub(crate) struct BlockReader<'a> {
    block: &'a [u8],
    fields: &'static [FieldSpec],
    template_id: u16,
    version: u16,
    next: Cell<usize>,
}

/// Checks the header against `spec` and splits `buf` (header included) into the root block of the
/// sender's length and what follows it.
///
/// # Errors
/// [`DecodeError::BlockLengthTooShort`] if the sender's block cannot hold the fields its version
/// has; [`DecodeError::Truncated`] if `buf` ends inside the block.
pub(crate) fn open_block<'a>(
    header: &MessageHeader,
    buf: &'a [u8],
    spec: &MessageSpec,
) -> Result<(BlockReader<'a>, VarReader<'a>), DecodeError> {
    let required = spec.required_block_length(header.version);
    if usize::from(header.block_length) < required {
        return Err(DecodeError::BlockLengthTooShort {
            template_id: header.template_id,
            version: header.version,
            block_length: header.block_length,
            required,
        });
    }
    let body = buf.get(MESSAGE_HEADER_LENGTH..).unwrap_or(&[]);
    let block_length = usize::from(header.block_length);
    if body.len() < block_length {
        return Err(DecodeError::Truncated {
            what: "fixed block",
            needed: block_length,
            available: body.len(),
        });
    }
    // A newer sender's longer block is skipped here: var data starts after the sender's block.
    let (block, rest) = body.split_at(block_length);
    let reader = BlockReader {
        block,
        fields: spec.fields,
        template_id: header.template_id,
        version: header.version,
        next: Cell::new(0),
    };
    let var_reader = VarReader {
        rest,
        consumed: Cell::new(0),
        specs: spec.var_data,
        version: header.version,
        next: Cell::new(0),
    };
    Ok((reader, var_reader))
}

impl BlockReader<'_> {
    /// Reads the next field of the table, or its null value if the sender's version predates it.
    pub(crate) fn get<T: FixedField>(&self) -> Result<T, DecodeError> {
        let index = self.next.get();
        let field = next_field::<T>(self.fields, index);
        self.next.set(index + 1);
        if self.version < field.since_version {
            return T::absent().ok_or(DecodeError::FieldAbsent {
                template_id: self.template_id,
                version: self.version,
                field: field.name,
            });
        }
        // open_block checked the block holds every field of this version.
        T::get(
            &self.block[field.offset..field.offset + field.size],
            field.name,
        )
    }

    /// Checks every field of the table was read.
    pub(crate) fn finish(self) {
        assert_eq!(
            self.next.get(),
            self.fields.len(),
            "not every fixed field was decoded"
        );
    }
}

/// The var-data section of a received message.
pub(crate) struct VarReader<'a> {
    rest: &'a [u8],
    consumed: Cell<usize>,
    specs: &'static [VarDataSpec],
    version: u16,
    next: Cell<usize>,
}

impl VarReader<'_> {
    /// Reads the next var-data field, or an empty value if the sender's version predates it.
    pub(crate) fn get<T: VarField>(&self) -> Result<T, DecodeError> {
        let index = self.next.get();
        assert!(
            index < self.specs.len(),
            "more var-data fields than the table has"
        );
        let spec = &self.specs[index];
        assert_eq!(spec.encoding, T::ENCODING, "field {} encoding", spec.name);
        self.next.set(index + 1);
        if self.version < spec.since_version {
            return T::from_wire_bytes(&[], spec.name);
        }
        // Every var-data composite of the schema has a uint32 length.
        assert_eq!(
            spec.length_size, VAR_DATA_LENGTH_SIZE,
            "field {} length prefix",
            spec.name
        );
        let input = &self.rest[self.consumed.get()..];
        if input.len() < VAR_DATA_LENGTH_SIZE {
            return Err(DecodeError::Truncated {
                what: spec.name,
                needed: VAR_DATA_LENGTH_SIZE,
                available: input.len(),
            });
        }
        let mut prefix = [0u8; VAR_DATA_LENGTH_SIZE];
        prefix.copy_from_slice(&input[..VAR_DATA_LENGTH_SIZE]);
        let length = u32::from_le_bytes(prefix);
        if length > VAR_DATA_MAX_LENGTH {
            return Err(DecodeError::VarDataTooLong {
                field: spec.name,
                length,
                max: VAR_DATA_MAX_LENGTH,
            });
        }
        let needed = VAR_DATA_LENGTH_SIZE + length as usize;
        if input.len() < needed {
            return Err(DecodeError::Truncated {
                what: spec.name,
                needed,
                available: input.len(),
            });
        }
        let value = T::from_wire_bytes(&input[VAR_DATA_LENGTH_SIZE..needed], spec.name)?;
        self.consumed.set(self.consumed.get() + needed);
        Ok(value)
    }

    /// Checks every var-data field was read; returns the bytes the var data took.
    pub(crate) fn finish(self) -> usize {
        assert_eq!(
            self.next.get(),
            self.specs.len(),
            "not every var-data field was decoded"
        );
        self.consumed.get()
    }
}

/// `0` when no `since N` was written, else `N`.
macro_rules! since_version {
    () => {
        0
    };
    ($since:literal) => {
        $since
    };
}

/// Declares an SBE enum of `int32` encoding: the Rust enum, its schema name and valid values,
/// and its [`FixedField`] impl (an unknown value is a [`DecodeError::BadEnumValue`]).
macro_rules! sbe_enum {
    (
        $(#[$meta:meta])*
        $name:ident = $sbe_name:literal {
            $( $(#[$variant_meta:meta])* $variant:ident = $value:literal => $value_name:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// The enum's name in the schema.
            pub const SBE_NAME: &'static str = $sbe_name;

            /// The schema's valid values: (name, wire value), in schema order.
            pub const VALUES: &'static [(&'static str, i32)] = &[ $( ($value_name, $value), )+ ];

            /// Every variant, in schema order.
            pub const ALL: &'static [Self] = &[ $( Self::$variant, )+ ];

            /// The wire value.
            pub const fn value(self) -> i32 {
                match self {
                    $( Self::$variant => $value, )+
                }
            }

            /// The variant for a wire value, if it is one of the schema's valid values.
            pub const fn from_value(value: i32) -> Option<Self> {
                match value {
                    $( $value => Some(Self::$variant), )+
                    _ => None,
                }
            }
        }

        impl $crate::codec::FixedField for $name {
            const SBE_TYPE: &'static str = $sbe_name;
            const SIZE: usize = 4;
            const NULL_VALUE: Option<i64> = None;

            fn put(&self, dst: &mut [u8]) {
                dst.copy_from_slice(&self.value().to_le_bytes());
            }

            fn get(
                src: &[u8],
                field: &'static str,
            ) -> Result<Self, $crate::error::DecodeError> {
                let value = $crate::codec::read_i32(src);
                Self::from_value(value).ok_or($crate::error::DecodeError::BadEnumValue {
                    field,
                    enum_name: $sbe_name,
                    value,
                })
            }

            fn absent() -> Option<Self> {
                None
            }
        }
    };
}

/// Declares one message: the struct (named as in the schema), its layout constants and its
/// encoder and decoder, both driven by the layout table.
///
/// Each fixed field gives its schema name and offset (and `since N` if the schema adds it at
/// version N); each var-data field its schema name (and `since N`). The block length is written
/// out too: the conformance test compares all of them with the schema.
///
/// A message of Aeron's schema 101 starts its body with `template_id`; a message of tern's
/// extension schema 1101 starts it with `schema: tern,`. The schema decides the header's
/// `schemaId` and `version` the encoder writes and which enum ([`Message`](crate::Message) or
/// [`TernMessage`](crate::TernMessage)) the struct converts into.
macro_rules! sbe_message {
    (
        @schema [$schema_id:expr, $schema_version:expr, $family:path]
        $(#[$meta:meta])*
        $name:ident {
            template_id: $template_id:literal,
            block_length: $block_length:literal,
            since_version: $message_since:literal,
            fields {
                $(
                    $(#[$field_meta:meta])*
                    $field:ident : $field_ty:ty = $field_name:literal @ $offset:literal
                        $(since $field_since:literal)?
                ),+ $(,)?
            }
            var_data {
                $(
                    $(#[$var_meta:meta])*
                    $var:ident : $var_ty:ty = $var_name:literal $(since $var_since:literal)?
                ),* $(,)?
            }
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $field_ty, )+
            $( $(#[$var_meta])* pub $var: $var_ty, )*
        }

        impl $name {
            /// The message's name in the schema.
            pub const NAME: &'static str = stringify!($name);

            /// The schema id in the message header.
            pub const SCHEMA_ID: u16 = $schema_id;

            /// The schema version the encoder writes in the message header.
            pub const SCHEMA_VERSION: u16 = $schema_version;

            /// The template id in the message header.
            pub const TEMPLATE_ID: u16 = $template_id;

            /// The root block length this codec writes (at [`Self::SCHEMA_VERSION`]).
            pub const BLOCK_LENGTH: usize = $block_length;

            /// The schema version that added the message.
            pub const SINCE_VERSION: u16 = $message_since;

            /// The fixed fields: name, offset, size, type, null value, version added.
            pub const FIELDS: &'static [$crate::spec::FieldSpec] = &[
                $(
                    $crate::spec::FieldSpec {
                        name: $field_name,
                        offset: $offset,
                        size: <$field_ty as $crate::codec::FixedField>::SIZE,
                        sbe_type: <$field_ty as $crate::codec::FixedField>::SBE_TYPE,
                        null_value: <$field_ty as $crate::codec::FixedField>::NULL_VALUE,
                        since_version: since_version!($($field_since)?),
                    },
                )+
            ];

            /// The var-data fields, in wire order.
            pub const VAR_DATA: &'static [$crate::spec::VarDataSpec] = &[
                $(
                    $crate::spec::VarDataSpec {
                        name: $var_name,
                        encoding: <$var_ty as $crate::codec::VarField>::ENCODING,
                        length_size: $crate::codec::VAR_DATA_LENGTH_SIZE,
                        since_version: since_version!($($var_since)?),
                    },
                )*
            ];

            /// The whole layout.
            pub const SPEC: $crate::spec::MessageSpec = $crate::spec::MessageSpec {
                name: Self::NAME,
                schema_id: Self::SCHEMA_ID,
                schema_version: Self::SCHEMA_VERSION,
                template_id: Self::TEMPLATE_ID,
                block_length: Self::BLOCK_LENGTH,
                since_version: Self::SINCE_VERSION,
                fields: Self::FIELDS,
                var_data: Self::VAR_DATA,
            };

            /// Appends the message (header, root block, var data) to `buf`; returns the number
            /// of bytes appended.
            ///
            /// # Errors
            /// [`EncodeError::NonAscii`](crate::EncodeError::NonAscii) if a text field is not
            /// US-ASCII, [`EncodeError::VarDataTooLong`](crate::EncodeError::VarDataTooLong) if
            /// a var-data field exceeds 1 GiB. `buf` is unchanged then.
            pub fn encode(&self, buf: &mut Vec<u8>) -> Result<usize, $crate::error::EncodeError> {
                $( $crate::codec::VarField::validate(&self.$var, $var_name)?; )*
                let start = buf.len();
                let mut block = $crate::codec::begin_message(buf, &Self::SPEC);
                $( block.put(&self.$field); )+
                block.finish();
                let values: &[&[u8]] = &[
                    $( $crate::codec::VarField::wire_bytes(&self.$var), )*
                ];
                $crate::codec::put_var_data(buf, Self::VAR_DATA, values);
                Ok(buf.len() - start)
            }

            /// Decodes the message from `buf` (header included) whose header was read and
            /// dispatched on already; returns it and the bytes it took.
            pub(crate) fn decode_body(
                header: &$crate::header::MessageHeader,
                buf: &[u8],
            ) -> Result<(Self, usize), $crate::error::DecodeError> {
                let (block, var_data) = $crate::codec::open_block(header, buf, &Self::SPEC)?;
                let message = Self {
                    $( $field: block.get()?, )+
                    $( $var: var_data.get()?, )*
                };
                block.finish();
                let consumed = $crate::header::MESSAGE_HEADER_LENGTH
                    + usize::from(header.block_length)
                    + var_data.finish();
                Ok((message, consumed))
            }
        }

        impl From<$name> for $family {
            fn from(message: $name) -> Self {
                Self::$name(message)
            }
        }
    };
    (
        $(#[$meta:meta])*
        $name:ident {
            schema: tern,
            $($body:tt)*
        }
    ) => {
        sbe_message! {
            @schema [
                $crate::header::TERN_SCHEMA_ID,
                $crate::header::TERN_SCHEMA_VERSION,
                $crate::message::TernMessage
            ]
            $(#[$meta])*
            $name { $($body)* }
        }
    };
    (
        $(#[$meta:meta])*
        $name:ident {
            $($body:tt)*
        }
    ) => {
        sbe_message! {
            @schema [
                $crate::header::SCHEMA_ID,
                $crate::header::SCHEMA_VERSION,
                $crate::message::Message
            ]
            $(#[$meta])*
            $name { $($body)* }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_block_length_counts_only_fields_of_the_acting_version() {
        let spec = crate::ReplayRequest::SPEC;
        assert_eq!(spec.required_block_length(6), 44);
        assert_eq!(spec.required_block_length(7), 48);
        assert_eq!(spec.required_block_length(14), 56);
    }

    #[test]
    fn ascii_field_refuses_non_ascii_on_both_sides() {
        let text = String::from("caf\u{e9}");
        assert_eq!(
            text.validate("channel"),
            Err(EncodeError::NonAscii {
                field: "channel",
                index: 3,
                byte: 0xc3
            })
        );
        assert_eq!(
            String::from_wire_bytes(&[b'a', 0x80], "channel"),
            Err(DecodeError::NonAscii {
                field: "channel",
                index: 1,
                byte: 0x80
            })
        );
    }
}
