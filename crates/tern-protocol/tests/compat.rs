//! SBE's version and block-length rules, and the decoder's refusals: newer senders (longer
//! block, trailing var data), older senders (fields their version predates), and malformed
//! headers, enums, text and lengths.

mod common;

use common::{all_messages, encode, set_block_length, set_version, Mode};
use tern_protocol::*;

/// Re-frames an encoded message as if its sender had `block_length` bytes of root block and the
/// given version: keeps the first `keep` bytes of our block, pads with `pad` bytes of 0xAB.
fn reframe(bytes: &[u8], block_length: usize, version: u16, keep: usize) -> Vec<u8> {
    let ours = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
    let mut out = bytes[..MESSAGE_HEADER_LENGTH].to_vec();
    set_block_length(&mut out, block_length as u16);
    set_version(&mut out, version);
    out.extend_from_slice(&bytes[MESSAGE_HEADER_LENGTH..MESSAGE_HEADER_LENGTH + keep]);
    out.resize(MESSAGE_HEADER_LENGTH + block_length, 0xAB);
    out.extend_from_slice(&bytes[MESSAGE_HEADER_LENGTH + ours..]);
    out
}

#[test]
fn newer_sender_with_longer_block_decodes_and_extra_bytes_are_skipped() {
    for message in all_messages(Mode::Distinct) {
        let bytes = encode(&message);
        let block_length = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        for extra in [1, 4, 8, 100] {
            let newer = reframe(
                &bytes,
                block_length + extra,
                SCHEMA_VERSION + 1,
                block_length,
            );
            assert_eq!(
                Message::decode_prefix(&newer),
                Ok((message.clone(), newer.len())),
                "{} with {extra} extra block bytes",
                message.name()
            );
        }
    }
}

#[test]
fn newer_sender_with_trailing_var_data_decodes_and_leaves_it() {
    for message in all_messages(Mode::Distinct) {
        let mut bytes = encode(&message);
        let ours = bytes.len();
        // A var-data field a later version might append: length 3, "new".
        bytes.extend_from_slice(&[3, 0, 0, 0, b'n', b'e', b'w']);
        assert_eq!(Message::decode_prefix(&bytes), Ok((message, ours)));
    }
}

fn distinct_replay() -> ReplayRequest {
    ReplayRequest {
        control_session_id: 1,
        correlation_id: 2,
        recording_id: 3,
        position: 4,
        length: 5,
        replay_stream_id: 6,
        file_io_max_length: 7,
        replay_token: 8,
        replay_channel: "aeron:ipc".to_string(),
    }
}

#[test]
fn replay_from_version_6_sender_has_null_file_io_max_length_and_replay_token() {
    let bytes = encode(&distinct_replay().into());
    let older = reframe(&bytes, 44, 6, 44);
    let expected = ReplayRequest {
        file_io_max_length: i32::MIN,
        replay_token: i64::MIN,
        ..distinct_replay()
    };
    assert_eq!(Message::decode(&older), Ok(expected.into()));
}

#[test]
fn replay_from_version_7_sender_has_file_io_max_length_but_null_replay_token() {
    let bytes = encode(&distinct_replay().into());
    let older = reframe(&bytes, 48, 7, 48);
    let expected = ReplayRequest {
        replay_token: i64::MIN,
        ..distinct_replay()
    };
    assert_eq!(Message::decode(&older), Ok(expected.into()));
}

#[test]
fn old_version_with_full_block_still_ignores_fields_it_predates() {
    // An SBE decoder reads a field only if the acting version has it, whatever the block holds.
    let bytes = encode(&distinct_replay().into());
    let mut older = bytes.clone();
    set_version(&mut older, 9);
    let expected = ReplayRequest {
        replay_token: i64::MIN,
        ..distinct_replay()
    };
    assert_eq!(Message::decode(&older), Ok(expected.into()));
}

#[test]
fn control_response_from_version_3_sender_has_no_version() {
    let response = ControlResponse {
        control_session_id: 1,
        correlation_id: 2,
        relevant_id: 3,
        code: ControlResponseCode::Ok,
        version: Some(ARCHIVE_PROTOCOL_VERSION),
        error_message: String::new(),
    };
    let bytes = encode(&response.clone().into());
    let older = reframe(&bytes, 28, 3, 28);
    let expected = ControlResponse {
        version: None,
        ..response
    };
    assert_eq!(Message::decode(&older), Ok(expected.into()));
}

#[test]
fn auth_connect_from_version_11_sender_has_empty_client_info() {
    let request = AuthConnectRequest {
        correlation_id: 1,
        response_stream_id: 2,
        version: Some(ARCHIVE_PROTOCOL_VERSION),
        response_channel: "aeron:ipc".to_string(),
        encoded_credentials: vec![1, 2],
        client_info: String::new(),
    };
    let mut bytes = encode(&request.clone().into());
    // A version-11 sender writes no clientInfo at all: drop its empty length prefix.
    bytes.truncate(bytes.len() - 4);
    set_version(&mut bytes, 11);
    assert_eq!(
        Message::decode_prefix(&bytes),
        Ok((request.clone().into(), bytes.len()))
    );
    // At version 12 the same bytes lack the field: truncated.
    set_version(&mut bytes, 12);
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::Truncated {
            what: "clientInfo",
            needed: 4,
            available: 0
        })
    );
}

#[test]
fn block_shorter_than_the_senders_version_needs_is_refused() {
    let bytes = encode(&distinct_replay().into());
    let short = reframe(&bytes, 44, SCHEMA_VERSION, 44);
    assert_eq!(
        Message::decode(&short),
        Err(DecodeError::BlockLengthTooShort {
            template_id: 6,
            version: SCHEMA_VERSION,
            block_length: 44,
            required: 56
        })
    );
    for message in all_messages(Mode::Distinct) {
        let mut bytes = encode(&message);
        let block_length = u16::from_le_bytes([bytes[0], bytes[1]]);
        set_block_length(&mut bytes, block_length - 1);
        assert!(
            matches!(
                Message::decode(&bytes),
                Err(DecodeError::BlockLengthTooShort { .. })
            ),
            "{}",
            message.name()
        );
    }
}

#[test]
fn other_schemas_are_refused_with_their_id() {
    let mut bytes = encode(&all_messages(Mode::Distinct)[0]);
    bytes[4..6].copy_from_slice(&TERN_SCHEMA_ID.to_le_bytes());
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::WrongSchema {
            schema_id: TERN_SCHEMA_ID,
            expected: SCHEMA_ID
        })
    );
    // The header itself still reads, so a receiver can dispatch on the schema id.
    assert_eq!(
        MessageHeader::decode(&bytes).map(|h| h.schema_id),
        Ok(TERN_SCHEMA_ID)
    );
}

#[test]
fn unsupported_templates_are_refused_with_their_id() {
    let mut bytes = encode(&all_messages(Mode::Distinct)[0]);
    // 2: ConnectRequest (retired), 11: ExtendRecordingRequest (superseded), 20/21: catalog
    // records, 50: ReplicateRequest, 106: Ping, 999: not in the schema.
    for template_id in [
        0u16,
        2,
        11,
        20,
        21,
        50,
        62,
        66,
        101,
        105,
        106,
        107,
        999,
        u16::MAX,
    ] {
        bytes[2..4].copy_from_slice(&template_id.to_le_bytes());
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError::UnknownTemplate { template_id })
        );
    }
}

#[test]
fn unknown_enum_values_are_refused() {
    let response = ControlResponse {
        control_session_id: 1,
        correlation_id: 2,
        relevant_id: 3,
        code: ControlResponseCode::Ok,
        version: None,
        error_message: String::new(),
    };
    let mut bytes = encode(&response.into());
    bytes[MESSAGE_HEADER_LENGTH + 24..MESSAGE_HEADER_LENGTH + 28]
        .copy_from_slice(&4i32.to_le_bytes());
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::BadEnumValue {
            field: "code",
            enum_name: "ControlResponseCode",
            value: 4
        })
    );

    let start = StartRecordingRequest2 {
        control_session_id: 1,
        correlation_id: 2,
        stream_id: 3,
        source_location: SourceLocation::Local,
        auto_stop: false,
        channel: String::new(),
    };
    let mut bytes = encode(&start.into());
    bytes[MESSAGE_HEADER_LENGTH + 24..MESSAGE_HEADER_LENGTH + 28]
        .copy_from_slice(&2i32.to_le_bytes());
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::BadEnumValue {
            field: "autoStop",
            enum_name: "BooleanType",
            value: 2
        })
    );
    // SBE's enum null value is not a valid value either.
    bytes[MESSAGE_HEADER_LENGTH + 20..MESSAGE_HEADER_LENGTH + 24]
        .copy_from_slice(&i32::MIN.to_le_bytes());
    assert!(matches!(
        Message::decode(&bytes),
        Err(DecodeError::BadEnumValue {
            field: "sourceLocation",
            ..
        })
    ));
}

#[test]
fn non_ascii_text_on_the_wire_is_refused() {
    let request = StopRecordingRequest {
        control_session_id: 1,
        correlation_id: 2,
        stream_id: 3,
        channel: "aeron:ipc".to_string(),
    };
    let mut bytes = encode(&request.into());
    let last = bytes.len() - 1;
    bytes[last] = 0xE9;
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::NonAscii {
            field: "channel",
            index: 8,
            byte: 0xE9
        })
    );
}

#[test]
fn var_data_length_over_the_schema_maximum_is_refused() {
    let request = StopRecordingRequest {
        control_session_id: 1,
        correlation_id: 2,
        stream_id: 3,
        channel: String::new(),
    };
    let mut bytes = encode(&request.into());
    let at = MESSAGE_HEADER_LENGTH + StopRecordingRequest::BLOCK_LENGTH;
    bytes[at..at + 4].copy_from_slice(&(VAR_DATA_MAX_LENGTH + 1).to_le_bytes());
    assert_eq!(
        Message::decode(&bytes),
        Err(DecodeError::VarDataTooLong {
            field: "channel",
            length: VAR_DATA_MAX_LENGTH + 1,
            max: VAR_DATA_MAX_LENGTH
        })
    );
}

#[test]
fn short_header_is_truncated() {
    for length in 0..MESSAGE_HEADER_LENGTH {
        assert_eq!(
            Message::decode(&vec![0u8; length]),
            Err(DecodeError::Truncated {
                what: "message header",
                needed: MESSAGE_HEADER_LENGTH,
                available: length
            })
        );
    }
}
