//! tern's control-protocol extensions (schema 1101, version 1): round trips, byte-exact
//! encodings worked out by hand, dispatch on the schema id, SBE's compatibility rules, and the
//! layout table of `docs/protocol.md` section 10 checked against the codec and the encoded bytes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{
    all_any_messages, all_messages, all_tern_messages, all_tern_samples, encode, encode_any,
    set_block_length, set_version, Fill, Mode, Wire, TERN_TEMPLATE_IDS,
};
use proptest::prelude::*;
use tern_protocol::*;

fn encode_tern(message: &TernMessage) -> Vec<u8> {
    encode_any(&message.clone().into())
}

fn assert_round_trip(message: &TernMessage) {
    let bytes = encode_tern(message);
    let (decoded, consumed) = TernMessage::decode_prefix(&bytes)
        .unwrap_or_else(|error| panic!("{} should decode: {error}", message.name()));
    assert_eq!(&decoded, message);
    assert_eq!(consumed, bytes.len(), "{}: consumed", message.name());
    assert_eq!(
        encode_tern(&decoded),
        bytes,
        "{}: re-encoding",
        message.name()
    );
    assert_eq!(
        AnyMessage::decode_prefix(&bytes),
        Ok((AnyMessage::Tern(message.clone()), bytes.len())),
        "{}: decode_any",
        message.name()
    );
}

// ---------------------------------------------------------------------------------------------
// Round trips

#[test]
fn every_tern_message_is_sampled_once() {
    let ids: Vec<u16> = all_tern_messages(Mode::Distinct)
        .iter()
        .map(TernMessage::template_id)
        .collect();
    assert_eq!(ids, TERN_TEMPLATE_IDS);
    let specs: Vec<u16> = TernMessage::SPECS.iter().map(|s| s.template_id).collect();
    assert_eq!(specs, TERN_TEMPLATE_IDS);
}

#[test]
fn every_tern_message_round_trips_in_every_mode() {
    for mode in [Mode::Min, Mode::Max, Mode::AeronNull, Mode::Distinct] {
        for message in all_tern_messages(mode) {
            assert_round_trip(&message);
        }
    }
}

#[test]
fn tern_messages_are_written_with_schema_1101_version_1_and_their_block_length() {
    for message in all_tern_messages(Mode::Distinct) {
        let bytes = encode_tern(&message);
        let header = MessageHeader::decode(&bytes).expect("header");
        let spec = TernMessage::spec(message.template_id()).expect("spec");
        assert_eq!(
            header,
            MessageHeader {
                block_length: spec.block_length as u16,
                template_id: message.template_id(),
                schema_id: 1101,
                version: 1,
            },
            "{}",
            message.name()
        );
        assert_eq!((spec.schema_id, spec.schema_version), (1101, 1));
    }
}

#[test]
fn non_ascii_text_in_a_tern_message_is_refused_both_ways() {
    let message = PositionAtTimeRequest {
        control_session_id: 1,
        correlation_id: 2,
        recording_id: 3,
        timestamp: 4,
        time_source: "f\u{e9}".to_string(),
    };
    let mut buf = vec![9];
    assert_eq!(
        message.encode(&mut buf),
        Err(EncodeError::NonAscii {
            field: "timeSource",
            index: 1,
            byte: 0xC3
        })
    );
    assert_eq!(buf, vec![9]);

    let mut bytes = encode_tern(
        &PositionAtTimeRequest {
            time_source: "fa".to_string(),
            ..message
        }
        .into(),
    );
    let last = bytes.len() - 1;
    bytes[last] = 0x80;
    assert_eq!(
        TernMessage::decode(&bytes),
        Err(DecodeError::NonAscii {
            field: "timeSource",
            index: 1,
            byte: 0x80
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// On failure proptest prints the seed; `Mode::Random(seed)` rebuilds the same messages.
    #[test]
    fn every_tern_message_round_trips_with_random_values(seed in any::<u64>()) {
        for message in all_tern_messages(Mode::Random(seed)) {
            let bytes = encode_tern(&message);
            prop_assert_eq!(TernMessage::decode_prefix(&bytes), Ok((message.clone(), bytes.len())));
            prop_assert_eq!(decode_any(&bytes), Ok(AnyMessage::Tern(message)));
        }
    }

    #[test]
    fn replay_requests_round_trip_with_any_field_values(
        ids in any::<[i64; 6]>(),
        speed_millis in any::<i32>(),
        replay_stream_id in any::<i32>(),
        texts in proptest::collection::vec("[\\x00-\\x7f]{0,40}", 4),
    ) {
        let message = TernReplayRequest {
            control_session_id: ids[0],
            correlation_id: ids[1],
            recording_id: ids[2],
            position: ids[3],
            length: ids[4],
            from_timestamp: ids[5],
            speed_millis,
            replay_stream_id,
            replay_channel: texts[0].clone(),
            time_source: texts[1].clone(),
            key_filter: texts[2].clone(),
            cursor: texts[3].clone(),
        };
        let mut bytes = Vec::new();
        let written = message.encode(&mut bytes).expect("ASCII");
        let text_bytes: usize = texts.iter().map(String::len).sum();
        prop_assert_eq!(written, 8 + TernReplayRequest::BLOCK_LENGTH + 4 * 4 + text_bytes);
        prop_assert_eq!(TernMessage::decode(&bytes), Ok(message.into()));
    }
}

// ---------------------------------------------------------------------------------------------
// Golden bytes, worked out by hand from the layout in docs/protocol.md section 10

fn check(message: TernMessage, expected: &[u8]) {
    let mut buf = Vec::new();
    let written = message.encode(&mut buf).expect("encodes");
    assert_eq!(buf, expected, "{} encoding", message.name());
    assert_eq!(written, expected.len());
    assert_eq!(
        TernMessage::decode_prefix(expected),
        Ok((message.clone(), expected.len()))
    );
    assert_eq!(decode_any(expected), Ok(AnyMessage::Tern(message)));
}

#[test]
fn tern_replay_request_golden_bytes() {
    let message = TernReplayRequest {
        control_session_id: 1,
        correlation_id: 2,
        recording_id: 3,
        position: -1,
        length: -2,
        from_timestamp: 0x1122_3344_5566_7788,
        speed_millis: 2000,
        replay_stream_id: 7,
        replay_channel: "aeron:ipc".to_string(),
        time_source: "capture".to_string(),
        key_filter: "session:5".to_string(),
        cursor: "c1".to_string(),
    };
    #[rustfmt::skip]
    let expected = [
        // messageHeader
        0x38, 0x00,             // blockLength = 56
        0x01, 0x00,             // templateId = 1 (TernReplayRequest)
        0x4D, 0x04,             // schemaId = 1101 (0x044D)
        0x01, 0x00,             // version = 1
        // root block
        0x01, 0, 0, 0, 0, 0, 0, 0,                      // offset 0: controlSessionId = 1
        0x02, 0, 0, 0, 0, 0, 0, 0,                      // offset 8: correlationId = 2
        0x03, 0, 0, 0, 0, 0, 0, 0,                      // offset 16: recordingId = 3
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // offset 24: position = -1 (from start)
        0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // offset 32: length = -2 (current end)
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // offset 40: fromTimestamp
        0xD0, 0x07, 0x00, 0x00,                         // offset 48: speedMillis = 2000
        0x07, 0x00, 0x00, 0x00,                         // offset 52: replayStreamId = 7
        // var data, in layout order
        0x09, 0x00, 0x00, 0x00,                         // replayChannel length = 9
        b'a', b'e', b'r', b'o', b'n', b':', b'i', b'p', b'c',
        0x07, 0x00, 0x00, 0x00,                         // timeSource length = 7
        b'c', b'a', b'p', b't', b'u', b'r', b'e',
        0x09, 0x00, 0x00, 0x00,                         // keyFilter length = 9
        b's', b'e', b's', b's', b'i', b'o', b'n', b':', b'5',
        0x02, 0x00, 0x00, 0x00,                         // cursor length = 2
        b'c', b'1',
    ];
    check(message.into(), &expected);
}

#[test]
fn replay_control_request_golden_bytes() {
    let message = ReplayControlRequest {
        control_session_id: 5,
        correlation_id: 6,
        replay_session_id: 0x0102_0304_0506_0708,
        value: 1000,
        action: ReplayAction::SeekTime,
        time_source: "field:16:ns".to_string(),
    };
    #[rustfmt::skip]
    let expected = [
        // messageHeader
        0x24, 0x00,             // blockLength = 36
        0x02, 0x00,             // templateId = 2 (ReplayControlRequest)
        0x4D, 0x04,             // schemaId = 1101
        0x01, 0x00,             // version = 1
        // root block
        0x05, 0, 0, 0, 0, 0, 0, 0,                      // offset 0: controlSessionId = 5
        0x06, 0, 0, 0, 0, 0, 0, 0,                      // offset 8: correlationId = 6
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // offset 16: replaySessionId
        0xE8, 0x03, 0, 0, 0, 0, 0, 0,                   // offset 24: value = 1000
        0x04, 0x00, 0x00, 0x00,                         // offset 32: action = SEEK_TIME
        // var data
        0x0B, 0x00, 0x00, 0x00,                         // timeSource length = 11
        b'f', b'i', b'e', b'l', b'd', b':', b'1', b'6', b':', b'n', b's',
    ];
    check(message.into(), &expected);
}

#[test]
fn cursor_descriptor_golden_bytes() {
    let message = CursorDescriptor {
        control_session_id: 1,
        correlation_id: -1,
        recording_id: 3,
        position: 4096,
        updated_timestamp: i64::MIN,
        name: "billing".to_string(),
    };
    #[rustfmt::skip]
    let expected = [
        // messageHeader
        0x28, 0x00,             // blockLength = 40
        0x05, 0x00,             // templateId = 5 (CursorDescriptor)
        0x4D, 0x04,             // schemaId = 1101
        0x01, 0x00,             // version = 1
        // root block
        0x01, 0, 0, 0, 0, 0, 0, 0,                      // offset 0: controlSessionId = 1
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // offset 8: correlationId = -1
        0x03, 0, 0, 0, 0, 0, 0, 0,                      // offset 16: recordingId = 3
        0x00, 0x10, 0, 0, 0, 0, 0, 0,                   // offset 24: position = 4096
        0, 0, 0, 0, 0, 0, 0, 0x80,                      // offset 32: updatedTimestamp = i64::MIN
        // var data
        0x07, 0x00, 0x00, 0x00,                         // name length = 7
        b'b', b'i', b'l', b'l', b'i', b'n', b'g',
    ];
    check(message.into(), &expected);
}

#[test]
fn list_recording_groups_request_golden_bytes() {
    let message = ListRecordingGroupsRequest {
        control_session_id: 2,
        correlation_id: 3,
        stream_id: 1001,
        apply_stream_id: true,
        channel_fragment: String::new(),
    };
    #[rustfmt::skip]
    let expected = [
        // messageHeader
        0x18, 0x00,             // blockLength = 24
        0x08, 0x00,             // templateId = 8 (ListRecordingGroupsRequest)
        0x4D, 0x04,             // schemaId = 1101
        0x01, 0x00,             // version = 1
        // root block
        0x02, 0, 0, 0, 0, 0, 0, 0, // offset 0: controlSessionId = 2
        0x03, 0, 0, 0, 0, 0, 0, 0, // offset 8: correlationId = 3
        0xE9, 0x03, 0x00, 0x00,    // offset 16: streamId = 1001
        0x01, 0x00, 0x00, 0x00,    // offset 20: applyStreamId = TRUE (BooleanType)
        // var data
        0x00, 0x00, 0x00, 0x00,    // channelFragment length = 0
    ];
    check(message.into(), &expected);
}

#[test]
fn recording_group_descriptor_golden_bytes() {
    let message = RecordingGroupDescriptor {
        control_session_id: 1,
        correlation_id: 2,
        first_recording_id: 10,
        last_recording_id: 12,
        total_bytes: 0x0001_0000,
        first_start_timestamp: 0x0100,
        last_stop_timestamp: -1,
        stream_id: 1001,
        recording_count: 3,
        active_count: 1,
        channel: "aeron:ipc".to_string(),
    };
    #[rustfmt::skip]
    let expected = [
        // messageHeader
        0x44, 0x00,             // blockLength = 68
        0x09, 0x00,             // templateId = 9 (RecordingGroupDescriptor)
        0x4D, 0x04,             // schemaId = 1101
        0x01, 0x00,             // version = 1
        // root block
        0x01, 0, 0, 0, 0, 0, 0, 0,                      // offset 0: controlSessionId = 1
        0x02, 0, 0, 0, 0, 0, 0, 0,                      // offset 8: correlationId = 2
        0x0A, 0, 0, 0, 0, 0, 0, 0,                      // offset 16: firstRecordingId = 10
        0x0C, 0, 0, 0, 0, 0, 0, 0,                      // offset 24: lastRecordingId = 12
        0x00, 0x00, 0x01, 0, 0, 0, 0, 0,                // offset 32: totalBytes = 65536
        0x00, 0x01, 0, 0, 0, 0, 0, 0,                   // offset 40: firstStartTimestamp = 256
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, // offset 48: lastStopTimestamp = -1
        0xE9, 0x03, 0x00, 0x00,                         // offset 56: streamId = 1001
        0x03, 0x00, 0x00, 0x00,                         // offset 60: recordingCount = 3
        0x01, 0x00, 0x00, 0x00,                         // offset 64: activeCount = 1
        // var data
        0x09, 0x00, 0x00, 0x00,                         // channel length = 9
        b'a', b'e', b'r', b'o', b'n', b':', b'i', b'p', b'c',
    ];
    check(message.into(), &expected);
}

// ---------------------------------------------------------------------------------------------
// Dispatch on the schema id

#[test]
fn decode_any_dispatches_on_the_schema_id() {
    // Template 1 exists in both schemas: only the schema id tells them apart.
    let aeron = ControlResponse {
        control_session_id: 1,
        correlation_id: 2,
        relevant_id: 3,
        code: ControlResponseCode::Ok,
        version: Some(ARCHIVE_PROTOCOL_VERSION),
        error_message: String::new(),
    };
    let aeron_bytes = encode(&aeron.clone().into());
    let tern = all_tern_messages(Mode::Distinct).remove(0);
    assert_eq!(tern.template_id(), 1);
    let tern_bytes = encode_tern(&tern);

    let decoded = decode_any(&aeron_bytes).expect("schema 101");
    assert_eq!(decoded, AnyMessage::Aeron(aeron.into()));
    assert_eq!(
        (decoded.schema_id(), decoded.template_id(), decoded.name()),
        (101, 1, "ControlResponse")
    );
    let decoded = decode_any(&tern_bytes).expect("schema 1101");
    assert_eq!(decoded, AnyMessage::Tern(tern));
    assert_eq!(
        (decoded.schema_id(), decoded.template_id(), decoded.name()),
        (1101, 1, "TernReplayRequest")
    );

    // Each family's own decoder refuses the other's messages.
    assert_eq!(
        Message::decode(&tern_bytes),
        Err(DecodeError::WrongSchema {
            schema_id: 1101,
            expected: 101
        })
    );
    assert_eq!(
        TernMessage::decode(&aeron_bytes),
        Err(DecodeError::WrongSchema {
            schema_id: 101,
            expected: 1101
        })
    );

    // Any other schema id is refused by all three.
    for schema_id in [0u16, 100, 102, 1100, 1102, u16::MAX] {
        let mut other = tern_bytes.clone();
        other[4..6].copy_from_slice(&schema_id.to_le_bytes());
        assert_eq!(
            decode_any(&other),
            Err(DecodeError::WrongSchema {
                schema_id,
                expected: SCHEMA_ID
            })
        );
        assert!(matches!(
            TernMessage::decode(&other),
            Err(DecodeError::WrongSchema { .. })
        ));
        assert!(matches!(
            Message::decode(&other),
            Err(DecodeError::WrongSchema { .. })
        ));
    }
}

#[test]
fn decode_any_refuses_short_headers_and_unknown_tern_templates() {
    assert_eq!(
        decode_any(&[0x4D, 0x04]),
        Err(DecodeError::Truncated {
            what: "message header",
            needed: 8,
            available: 2
        })
    );
    for template_id in [0u16, 11, 12, 100, u16::MAX] {
        let mut bytes = Vec::new();
        MessageHeader {
            block_length: 16,
            template_id,
            schema_id: TERN_SCHEMA_ID,
            version: TERN_SCHEMA_VERSION,
        }
        .encode(&mut bytes);
        bytes.resize(8 + 16 + 4, 0);
        assert_eq!(
            decode_any(&bytes),
            Err(DecodeError::UnknownTemplate { template_id })
        );
        assert_eq!(
            TernMessage::decode(&bytes),
            Err(DecodeError::UnknownTemplate { template_id })
        );
    }
}

#[test]
fn messages_of_both_schemas_back_to_back_decode_one_after_another() {
    let messages = all_any_messages(Mode::Distinct);
    assert_eq!(
        messages.len(),
        all_messages(Mode::Distinct).len() + TERN_TEMPLATE_IDS.len()
    );
    // Interleave the two families.
    let (aeron, tern): (Vec<_>, Vec<_>) = messages
        .iter()
        .partition(|message| matches!(message, AnyMessage::Aeron(_)));
    let mut order = Vec::new();
    for index in 0..aeron.len().max(tern.len()) {
        order.extend(aeron.get(index).copied());
        order.extend(tern.get(index).copied());
    }
    let mut buf = Vec::new();
    for message in &order {
        message.encode(&mut buf).expect("samples encode");
    }
    let mut rest = buf.as_slice();
    for message in order {
        let (decoded, consumed) = AnyMessage::decode_prefix(rest).expect("decodes");
        assert_eq!(&decoded, message);
        assert_eq!(
            AnyMessage::spec(decoded.schema_id(), decoded.template_id()).map(|spec| spec.name),
            Some(decoded.name())
        );
        rest = &rest[consumed..];
    }
    assert!(rest.is_empty());
}

#[test]
fn any_message_spec_looks_up_by_schema_and_template() {
    assert_eq!(
        AnyMessage::spec(SCHEMA_ID, 6).map(|s| s.name),
        Some("ReplayRequest")
    );
    assert_eq!(
        AnyMessage::spec(TERN_SCHEMA_ID, 6).map(|s| s.name),
        Some("DeleteCursorRequest")
    );
    assert_eq!(AnyMessage::spec(TERN_SCHEMA_ID, 11), None);
    assert_eq!(AnyMessage::spec(7, 1), None);
}

// ---------------------------------------------------------------------------------------------
// Compatibility rules (docs/protocol.md section 7), as for schema 101

#[test]
fn newer_tern_sender_with_longer_block_and_trailing_var_data_decodes() {
    for message in all_tern_messages(Mode::Distinct) {
        let bytes = encode_tern(&message);
        let block_length = usize::from(u16::from_le_bytes([bytes[0], bytes[1]]));
        for extra in [1, 4, 8, 100] {
            let mut newer = bytes[..MESSAGE_HEADER_LENGTH + block_length].to_vec();
            set_block_length(&mut newer, (block_length + extra) as u16);
            set_version(&mut newer, TERN_SCHEMA_VERSION + 1);
            newer.resize(MESSAGE_HEADER_LENGTH + block_length + extra, 0xAB);
            newer.extend_from_slice(&bytes[MESSAGE_HEADER_LENGTH + block_length..]);
            let ours = newer.len();
            // A var-data field a later version might append.
            newer.extend_from_slice(&[3, 0, 0, 0, b'n', b'e', b'w']);
            assert_eq!(
                TernMessage::decode_prefix(&newer),
                Ok((message.clone(), ours)),
                "{} with {extra} extra block bytes",
                message.name()
            );
            assert_eq!(
                AnyMessage::decode_prefix(&newer),
                Ok((AnyMessage::Tern(message.clone()), ours))
            );
        }
    }
}

#[test]
fn tern_block_shorter_than_its_fields_is_refused() {
    for message in all_tern_messages(Mode::Distinct) {
        let mut bytes = encode_tern(&message);
        let spec = TernMessage::spec(message.template_id()).expect("spec");
        let short = (spec.block_length - 1) as u16;
        set_block_length(&mut bytes, short);
        assert_eq!(
            TernMessage::decode(&bytes),
            Err(DecodeError::BlockLengthTooShort {
                template_id: message.template_id(),
                version: TERN_SCHEMA_VERSION,
                block_length: short,
                required: spec.block_length,
            }),
            "{}",
            message.name()
        );
    }
}

#[test]
fn unknown_replay_actions_and_booleans_are_refused() {
    let message: TernMessage = ReplayControlRequest {
        control_session_id: 1,
        correlation_id: 2,
        replay_session_id: 3,
        value: 0,
        action: ReplayAction::Pause,
        time_source: String::new(),
    }
    .into();
    let bytes = encode_tern(&message);
    for value in [0i32, 5, -1, i32::MIN] {
        let mut bad = bytes.clone();
        bad[8 + 32..8 + 36].copy_from_slice(&value.to_le_bytes());
        assert_eq!(
            decode_any(&bad),
            Err(DecodeError::BadEnumValue {
                field: "action",
                enum_name: "ReplayAction",
                value
            })
        );
    }

    let message: TernMessage = ListRecordingGroupsRequest {
        control_session_id: 1,
        correlation_id: 2,
        stream_id: 3,
        apply_stream_id: false,
        channel_fragment: String::new(),
    }
    .into();
    let mut bad = encode_tern(&message);
    bad[8 + 20..8 + 24].copy_from_slice(&2i32.to_le_bytes());
    assert_eq!(
        decode_any(&bad),
        Err(DecodeError::BadEnumValue {
            field: "applyStreamId",
            enum_name: "BooleanType",
            value: 2
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Values and limits

#[test]
fn replay_action_values() {
    assert_eq!(
        ReplayAction::VALUES,
        &[
            ("PAUSE", 1),
            ("RESUME", 2),
            ("SEEK_POSITION", 3),
            ("SEEK_TIME", 4)
        ]
    );
    for action in ReplayAction::ALL {
        assert_eq!(ReplayAction::from_value(action.value()), Some(*action));
    }
    assert_eq!(ReplayAction::from_value(0), None);
}

#[test]
fn speed_and_cursor_name_limits() {
    for valid in [0, 10, 1000, 2000, 1_000_000] {
        assert!(TernReplayRequest::speed_millis_is_valid(valid), "{valid}");
    }
    for invalid in [-1, 1, 9, 1_000_001, i32::MIN, i32::MAX] {
        assert!(
            !TernReplayRequest::speed_millis_is_valid(invalid),
            "{invalid}"
        );
    }
    assert_eq!(TernReplayRequest::FROM_TIMESTAMP_NONE, i64::MIN);
    assert_eq!(TernReplayRequest::SPEED_ORIGINAL_PACE, 1000);

    assert!(!cursor_name_is_valid(""));
    assert!(cursor_name_is_valid("a"));
    assert!(cursor_name_is_valid(&"a".repeat(CURSOR_NAME_MAX_LENGTH)));
    assert!(!cursor_name_is_valid(
        &"a".repeat(CURSOR_NAME_MAX_LENGTH + 1)
    ));
    assert!(!cursor_name_is_valid("caf\u{e9}"));
    // The archive's rule: printable, no spaces or control characters.
    assert!(cursor_name_is_valid("consumer-1/eu.west"));
    assert!(!cursor_name_is_valid("with space"));
    assert!(!cursor_name_is_valid("tab\t"));
}

// ---------------------------------------------------------------------------------------------
// docs/protocol.md section 10 is the layout's reference: the codec's tables and the encoded
// bytes must agree with it.

#[derive(Debug)]
struct DocLayout {
    id: u16,
    name: String,
    block: usize,
    since: u16,
    fields: Vec<(usize, String, String)>,
    var_data: Vec<String>,
}

/// The rows of the tern template table: `| id | message | dir | block | since | fields | var
/// data | answer |` (eight columns, so the schema-101 table check skips them).
fn documented_tern_layouts() -> Vec<DocLayout> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    let text = std::fs::read_to_string(&path).expect("docs/protocol.md");
    let section = text
        .split("## 10. tern extensions (schema 1101, version 1)")
        .nth(1)
        .expect("docs/protocol.md has the tern extensions section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut layouts = Vec::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, id, name, _, block, since, fields, var_data, _, _] = cells.as_slice() else {
            continue;
        };
        let Ok(id) = id.parse::<u16>() else { continue };
        let fields = fields
            .split("; ")
            .map(|field| {
                let (offset, rest) = field.split_once(": ").expect("offset: name type");
                let mut words = rest.split(' ');
                let name = words.next().expect("name").to_string();
                let sbe_type = words.next().expect("type").to_string();
                (offset.parse().expect("offset"), name, sbe_type)
            })
            .collect();
        let var_data = if *var_data == "—" {
            Vec::new()
        } else {
            var_data.split(", ").map(str::to_string).collect()
        };
        layouts.push(DocLayout {
            id,
            name: name.to_string(),
            block: block.parse().expect("block"),
            since: since.parse().expect("since"),
            fields,
            var_data,
        });
    }
    layouts
}

#[test]
fn docs_tern_table_matches_codec() {
    let layouts = documented_tern_layouts();
    let ids: BTreeSet<u16> = layouts.iter().map(|layout| layout.id).collect();
    assert_eq!(ids, TERN_TEMPLATE_IDS.iter().copied().collect());
    for layout in &layouts {
        let spec = TernMessage::spec(layout.id).expect("documented template exists");
        assert_eq!(layout.name, spec.name, "template {}", layout.id);
        assert_eq!(layout.block, spec.block_length, "{}", spec.name);
        assert_eq!(layout.since, spec.since_version, "{}", spec.name);
        let ours: Vec<(usize, String, String)> = spec
            .fields
            .iter()
            .map(|f| (f.offset, f.name.to_string(), f.sbe_type.to_string()))
            .collect();
        assert_eq!(layout.fields, ours, "{} fields", spec.name);
        let ours: Vec<String> = spec.var_data.iter().map(|v| v.name.to_string()).collect();
        assert_eq!(layout.var_data, ours, "{} var data", spec.name);
        assert!(spec
            .var_data
            .iter()
            .all(|v| v.encoding == VarEncoding::Ascii && v.length_size == 4));
    }
}

/// Independent of the codec's tables: encodes every tern message with a different value in each
/// field and finds each value at the offset the docs give, and the var data after the documented
/// block length.
#[test]
fn encoded_tern_bytes_sit_where_the_docs_put_them() {
    let layouts = documented_tern_layouts();
    for sample in all_tern_samples(&mut Fill::new(Mode::Distinct)) {
        let bytes = encode_tern(&sample.message);
        let layout = layouts
            .iter()
            .find(|layout| layout.id == sample.message.template_id())
            .expect("documented");
        let context = layout.name.as_str();
        assert_eq!(
            &bytes[..8],
            &[
                layout.block as u8,
                (layout.block >> 8) as u8,
                layout.id as u8,
                0,
                0x4D,
                0x04,
                0x01,
                0x00
            ],
            "{context} header"
        );
        let (fixed, var): (Vec<&Wire>, Vec<&Wire>) = sample
            .values
            .iter()
            .partition(|value| matches!(value, Wire::Fixed(_)));
        assert_eq!(fixed.len(), layout.fields.len(), "{context}");
        assert_eq!(var.len(), layout.var_data.len(), "{context}");
        let block = &bytes[8..8 + layout.block];
        let mut covered = 0;
        for ((offset, name, _), value) in layout.fields.iter().zip(fixed) {
            let Wire::Fixed(expected) = value else {
                unreachable!()
            };
            assert_eq!(
                &block[*offset..*offset + expected.len()],
                expected.as_slice(),
                "{context}.{name} at offset {offset}"
            );
            covered += expected.len();
        }
        assert_eq!(covered, layout.block, "{context}: the block has no padding");
        let mut rest = &bytes[8 + layout.block..];
        for (name, value) in layout.var_data.iter().zip(var) {
            let Wire::Var(expected) = value else {
                unreachable!()
            };
            let (prefix, after) = rest.split_at(4);
            let length = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
            assert_eq!(length, expected.len(), "{context}.{name} length");
            assert_eq!(&after[..length], expected.as_slice(), "{context}.{name}");
            rest = &after[length..];
        }
        assert!(rest.is_empty(), "{context}: bytes after the var data");
    }
}
