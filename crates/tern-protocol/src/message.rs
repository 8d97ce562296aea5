//! [`Message`]: any supported message of schema 101, with dispatch on the header's template id.

use crate::error::{DecodeError, EncodeError};
use crate::header::{MessageHeader, SCHEMA_ID};
use crate::messages::*;
use crate::spec::MessageSpec;

/// Declares the enum over every message struct and the dispatch that goes with it.
macro_rules! message_enum {
    ($( $name:ident ),+ $(,)?) => {
        /// Any supported message of Aeron's archive control schema (id 101).
        ///
        /// Decoding follows SBE's compatibility rules: the sender's block length and version from
        /// the header are honoured (a longer block from a newer sender is skipped, fields its
        /// version predates decode as their null value), and bytes after the last known var-data
        /// field are left alone, since a newer version may append var data.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Message {
            $(
                #[doc = concat!("A `", stringify!($name), "` message.")]
                $name($name),
            )+
        }

        impl Message {
            /// The layout of every supported message, in template-id order.
            pub const SPECS: &'static [MessageSpec] = &[ $( $name::SPEC, )+ ];

            /// The message's template id.
            pub fn template_id(&self) -> u16 {
                match self {
                    $( Message::$name(_) => $name::TEMPLATE_ID, )+
                }
            }

            /// The message's name in the schema.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Message::$name(_) => $name::NAME, )+
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
                    $( Message::$name(message) => message.encode(buf), )+
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
            pub fn decode_prefix(buf: &[u8]) -> Result<(Message, usize), DecodeError> {
                let header = MessageHeader::decode(buf)?;
                if header.schema_id != SCHEMA_ID {
                    return Err(DecodeError::WrongSchema {
                        schema_id: header.schema_id,
                        expected: SCHEMA_ID,
                    });
                }
                match header.template_id {
                    $(
                        template_id if template_id == $name::TEMPLATE_ID => {
                            let (message, consumed) = $name::decode_body(&header, buf)?;
                            Ok((Message::$name(message), consumed))
                        }
                    )+
                    template_id => Err(DecodeError::UnknownTemplate { template_id }),
                }
            }
        }
    };
}

message_enum! {
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

impl Message {
    /// Decodes the message at the start of `buf`, ignoring any bytes after it.
    ///
    /// # Errors
    /// As [`Message::decode_prefix`].
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        Message::decode_prefix(buf).map(|(message, _)| message)
    }

    /// The layout of the supported message with this template id.
    pub fn spec(template_id: u16) -> Option<&'static MessageSpec> {
        Message::SPECS
            .iter()
            .find(|spec| spec.template_id == template_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_have_unique_template_ids_and_sane_layouts() {
        let mut ids: Vec<u16> = Message::SPECS.iter().map(|spec| spec.template_id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Message::SPECS.len());
        for spec in Message::SPECS {
            let mut end = 0;
            for field in spec.fields {
                assert!(field.offset >= end, "{}.{} overlaps", spec.name, field.name);
                end = field.offset + field.size;
            }
            assert!(end <= spec.block_length, "{} block too short", spec.name);
        }
    }
}
