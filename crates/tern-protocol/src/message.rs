//! [`Message`]: any supported message of schema 101; [`TernMessage`]: any message of tern's
//! extension schema 1101; both with dispatch on the header's template id. [`AnyMessage`] and
//! [`decode_any`] dispatch on the header's schema id first.

use crate::error::{DecodeError, EncodeError};
use crate::header::{MessageHeader, SCHEMA_ID, TERN_SCHEMA_ID};
use crate::messages::*;
use crate::spec::MessageSpec;
use crate::tern::*;

/// Declares the enum over every message struct of one schema and the dispatch that goes with it.
macro_rules! message_enum {
    (
        $(#[$meta:meta])*
        $enum_name:ident (schema $schema_id:path) {
            $( $name:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $enum_name {
            $(
                #[doc = concat!("A `", stringify!($name), "` message.")]
                $name($name),
            )+
        }

        impl $enum_name {
            /// The layout of every supported message, in template-id order.
            pub const SPECS: &'static [MessageSpec] = &[ $( $name::SPEC, )+ ];

            /// The message's template id.
            pub fn template_id(&self) -> u16 {
                match self {
                    $( Self::$name(_) => $name::TEMPLATE_ID, )+
                }
            }

            /// The message's name in the schema.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Self::$name(_) => $name::NAME, )+
                }
            }

            /// Appends the message to `buf`; returns the number of bytes appended.
            ///
            /// # Errors
            /// [`EncodeError::NonAscii`] if a text field is not US-ASCII,
            /// [`EncodeError::VarDataTooLong`] if a var-data field exceeds 1 GiB. `buf` is
            /// unchanged then.
            pub fn encode(&self, buf: &mut Vec<u8>) -> Result<usize, EncodeError> {
                match self {
                    $( Self::$name(message) => message.encode(buf), )+
                }
            }

            /// Decodes the message at the start of `buf`; returns it and the number of bytes it
            /// took (header, the sender's block, the var data this codec knows).
            ///
            /// # Errors
            /// [`DecodeError::Truncated`] if `buf` ends early, [`DecodeError::WrongSchema`] for
            /// another schema's message, [`DecodeError::UnknownTemplate`] for a template this
            /// codec does not support, [`DecodeError::BlockLengthTooShort`] if the block cannot
            /// hold the fields of the sender's version, and the field errors
            /// ([`DecodeError::BadEnumValue`], [`DecodeError::NonAscii`],
            /// [`DecodeError::VarDataTooLong`]).
            pub fn decode_prefix(buf: &[u8]) -> Result<($enum_name, usize), DecodeError> {
                let header = MessageHeader::decode(buf)?;
                if header.schema_id != $schema_id {
                    return Err(DecodeError::WrongSchema {
                        schema_id: header.schema_id,
                        expected: $schema_id,
                    });
                }
                match header.template_id {
                    $(
                        template_id if template_id == $name::TEMPLATE_ID => {
                            let (message, consumed) = $name::decode_body(&header, buf)?;
                            Ok((Self::$name(message), consumed))
                        }
                    )+
                    template_id => Err(DecodeError::UnknownTemplate { template_id }),
                }
            }

            /// Decodes the message at the start of `buf`, ignoring any bytes after it.
            ///
            /// # Errors
            #[doc = concat!("As [`", stringify!($enum_name), "::decode_prefix`].")]
            pub fn decode(buf: &[u8]) -> Result<$enum_name, DecodeError> {
                Self::decode_prefix(buf).map(|(message, _)| message)
            }

            /// The layout of the supported message with this template id.
            pub fn spec(template_id: u16) -> Option<&'static MessageSpec> {
                Self::SPECS
                    .iter()
                    .find(|spec| spec.template_id == template_id)
            }
        }
    };
}

message_enum! {
    /// Any supported message of Aeron's archive control schema (id 101).
    ///
    /// Decoding follows SBE's compatibility rules: the sender's block length and version from
    /// the header are honoured (a longer block from a newer sender is skipped, fields its
    /// version predates decode as their null value), and bytes after the last known var-data
    /// field are left alone, since a newer version may append var data.
    Message (schema SCHEMA_ID) {
        ControlResponse,
        CloseSessionRequest,
        StartRecordingRequest,
        StopRecordingRequest,
        ReplayRequest,
        StopReplayRequest,
        ListRecordingsRequest,
        ListRecordingsForUriRequest,
        ListRecordingRequest,
        RecordingPositionRequest,
        TruncateRecordingRequest,
        StopRecordingSubscriptionRequest,
        StopPositionRequest,
        FindLastMatchingRecordingRequest,
        ListRecordingSubscriptionsRequest,
        BoundedReplayRequest,
        StopAllReplaysRequest,
        RecordingDescriptor,
        RecordingSubscriptionDescriptor,
        RecordingSignalEvent,
        StartPositionRequest,
        AuthConnectRequest,
        Challenge,
        ChallengeResponse,
        KeepAliveRequest,
        StartRecordingRequest2,
        ExtendRecordingRequest2,
        StopRecordingByIdentityRequest,
        MaxRecordedPositionRequest,
        ArchiveIdRequest,
        PurgeRecordingRequest,
    }
}

message_enum! {
    /// Any message of tern's control extensions (schema id 1101, version 1).
    ///
    /// Same header, var-data encoding and compatibility rules as [`Message`]; only the schema
    /// id (and so the template-id space) differs. Requests are answered with Aeron's
    /// [`ControlResponse`] (schema 101) unless a message says otherwise, so a client handles
    /// responses the same way for both families.
    TernMessage (schema TERN_SCHEMA_ID) {
        TernReplayRequest,
        ReplayControlRequest,
        SetCursorRequest,
        GetCursorRequest,
        CursorDescriptor,
        DeleteCursorRequest,
        ListCursorsRequest,
        ListRecordingGroupsRequest,
        RecordingGroupDescriptor,
        PositionAtTimeRequest,
    }
}

/// A message of either schema tern's archive speaks: Aeron's 101 or tern's 1101.
///
/// A receiver that accepts both families on one stream decodes with [`AnyMessage::decode`] (or
/// [`decode_any`]), which reads the header and dispatches on its `schemaId`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyMessage {
    /// A message of Aeron's archive control schema (id 101).
    Aeron(Message),
    /// A message of tern's extension schema (id 1101).
    Tern(TernMessage),
}

impl AnyMessage {
    /// Decodes the message at the start of `buf` by the header's schema id: 101 as a
    /// [`Message`], 1101 as a [`TernMessage`]; returns it and the number of bytes it took.
    ///
    /// # Errors
    /// [`DecodeError::WrongSchema`] for any other schema id (its `expected` is 101, the main
    /// schema), [`DecodeError::Truncated`] if `buf` is shorter than a header, and otherwise the
    /// errors of [`Message::decode_prefix`] and [`TernMessage::decode_prefix`].
    pub fn decode_prefix(buf: &[u8]) -> Result<(AnyMessage, usize), DecodeError> {
        let header = MessageHeader::decode(buf)?;
        match header.schema_id {
            SCHEMA_ID => Message::decode_prefix(buf)
                .map(|(message, consumed)| (AnyMessage::Aeron(message), consumed)),
            TERN_SCHEMA_ID => TernMessage::decode_prefix(buf)
                .map(|(message, consumed)| (AnyMessage::Tern(message), consumed)),
            schema_id => Err(DecodeError::WrongSchema {
                schema_id,
                expected: SCHEMA_ID,
            }),
        }
    }

    /// Decodes the message at the start of `buf`, ignoring any bytes after it.
    ///
    /// # Errors
    /// As [`AnyMessage::decode_prefix`].
    pub fn decode(buf: &[u8]) -> Result<AnyMessage, DecodeError> {
        AnyMessage::decode_prefix(buf).map(|(message, _)| message)
    }

    /// Appends the message to `buf`; returns the number of bytes appended.
    ///
    /// # Errors
    /// As [`Message::encode`]; `buf` is unchanged then.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<usize, EncodeError> {
        match self {
            AnyMessage::Aeron(message) => message.encode(buf),
            AnyMessage::Tern(message) => message.encode(buf),
        }
    }

    /// The schema id in the message's header (101 or 1101).
    pub fn schema_id(&self) -> u16 {
        match self {
            AnyMessage::Aeron(_) => SCHEMA_ID,
            AnyMessage::Tern(_) => TERN_SCHEMA_ID,
        }
    }

    /// The message's template id (unique within its schema only).
    pub fn template_id(&self) -> u16 {
        match self {
            AnyMessage::Aeron(message) => message.template_id(),
            AnyMessage::Tern(message) => message.template_id(),
        }
    }

    /// The message's name in its schema.
    pub fn name(&self) -> &'static str {
        match self {
            AnyMessage::Aeron(message) => message.name(),
            AnyMessage::Tern(message) => message.name(),
        }
    }

    /// The layout of the supported message with this schema id and template id.
    pub fn spec(schema_id: u16, template_id: u16) -> Option<&'static MessageSpec> {
        match schema_id {
            SCHEMA_ID => Message::spec(template_id),
            TERN_SCHEMA_ID => TernMessage::spec(template_id),
            _ => None,
        }
    }
}

impl From<Message> for AnyMessage {
    fn from(message: Message) -> Self {
        AnyMessage::Aeron(message)
    }
}

impl From<TernMessage> for AnyMessage {
    fn from(message: TernMessage) -> Self {
        AnyMessage::Tern(message)
    }
}

/// Decodes the message at the start of `buf` of either schema, ignoring any bytes after it:
/// the same as [`AnyMessage::decode`].
///
/// # Errors
/// As [`AnyMessage::decode_prefix`].
pub fn decode_any(buf: &[u8]) -> Result<AnyMessage, DecodeError> {
    AnyMessage::decode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_specs(specs: &[MessageSpec], schema_id: u16, schema_version: u16) {
        let mut ids: Vec<u16> = specs.iter().map(|spec| spec.template_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), specs.len());
        for spec in specs {
            assert_eq!(
                (spec.schema_id, spec.schema_version),
                (schema_id, schema_version),
                "{}",
                spec.name
            );
            let mut end = 0;
            for field in spec.fields {
                assert!(field.offset >= end, "{}.{} overlaps", spec.name, field.name);
                end = field.offset + field.size;
            }
            assert!(end <= spec.block_length, "{} block too short", spec.name);
        }
    }

    #[test]
    fn specs_have_unique_template_ids_and_sane_layouts() {
        check_specs(Message::SPECS, SCHEMA_ID, crate::SCHEMA_VERSION);
        check_specs(
            TernMessage::SPECS,
            TERN_SCHEMA_ID,
            crate::TERN_SCHEMA_VERSION,
        );
    }

    #[test]
    fn tern_layouts_align_eight_byte_fields_and_have_no_gaps_at_the_end() {
        for spec in TernMessage::SPECS {
            for field in spec.fields {
                if field.size == 8 {
                    assert_eq!(field.offset % 8, 0, "{}.{}", spec.name, field.name);
                }
            }
            assert_eq!(
                spec.required_block_length(crate::TERN_SCHEMA_VERSION),
                spec.block_length,
                "{}: block length is the end of the last field",
                spec.name
            );
        }
    }
}
