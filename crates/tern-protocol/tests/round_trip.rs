//! Every message survives encode → decode unchanged, at the extremes of every field's range and
//! with random values, and re-encodes to the same bytes.

mod common;

use common::{all_messages, encode, Mode};
use proptest::prelude::*;
use tern_protocol::*;

fn assert_round_trip(message: &Message) {
    let bytes = encode(message);
    let (decoded, consumed) = Message::decode_prefix(&bytes)
        .unwrap_or_else(|error| panic!("{} should decode: {error}", message.name()));
    assert_eq!(&decoded, message);
    assert_eq!(consumed, bytes.len(), "{}: consumed", message.name());
    assert_eq!(encode(&decoded), bytes, "{}: re-encoding", message.name());
}

fn expected_length(message: &Message) -> usize {
    let spec = Message::spec(message.template_id()).expect("every message has a spec");
    let bytes = encode(message);
    let mut rest = &bytes[MESSAGE_HEADER_LENGTH + spec.block_length..];
    let mut total = MESSAGE_HEADER_LENGTH + spec.block_length;
    for _ in spec.var_data {
        let length = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        total += 4 + length;
        rest = &rest[4 + length..];
    }
    total
}

#[test]
fn every_message_round_trips_with_minimum_values_and_sbe_nulls() {
    for message in all_messages(Mode::Min) {
        assert_round_trip(&message);
    }
}

#[test]
fn every_message_round_trips_with_maximum_values_all_ascii_and_all_byte_values() {
    for message in all_messages(Mode::Max) {
        assert_round_trip(&message);
        assert_eq!(encode(&message).len(), expected_length(&message));
    }
}

#[test]
fn every_message_round_trips_with_aeron_null_values() {
    for message in all_messages(Mode::AeronNull) {
        assert_round_trip(&message);
    }
}

#[test]
fn every_message_round_trips_with_distinct_values() {
    let messages = all_messages(Mode::Distinct);
    assert_eq!(messages.len(), common::REQUIRED_TEMPLATE_IDS.len());
    for message in &messages {
        assert_round_trip(message);
    }
}

#[test]
fn messages_back_to_back_decode_one_after_another() {
    let messages = all_messages(Mode::Distinct);
    let mut buf = vec![0xEE; 3];
    for message in &messages {
        message.encode(&mut buf).expect("samples encode");
    }
    let mut rest = &buf[3..];
    for message in &messages {
        let (decoded, consumed) = Message::decode_prefix(rest).expect("decodes");
        assert_eq!(&decoded, message);
        rest = &rest[consumed..];
    }
    assert!(rest.is_empty());
    assert_eq!(
        &buf[..3],
        &[0xEE; 3],
        "encode appends without touching what was there"
    );
}

#[test]
fn non_ascii_text_is_refused_and_leaves_the_buffer_unchanged() {
    let message = StartRecordingRequest2 {
        control_session_id: 1,
        correlation_id: 2,
        stream_id: 3,
        source_location: SourceLocation::Local,
        auto_stop: false,
        channel: "aeron:udp?alias=caf\u{e9}".to_string(),
    };
    let mut buf = vec![1, 2, 3];
    assert_eq!(
        message.encode(&mut buf),
        Err(EncodeError::NonAscii {
            field: "channel",
            index: 19,
            byte: 0xC3
        })
    );
    assert_eq!(buf, vec![1, 2, 3]);

    let lossy = StartRecordingRequest2 {
        channel: to_ascii_lossy(&message.channel),
        ..message
    };
    assert_eq!(lossy.channel, "aeron:udp?alias=caf?");
    assert_round_trip(&lossy.into());
}

#[test]
fn credentials_carry_any_bytes_including_invalid_utf8() {
    let message: Message = ChallengeResponse {
        control_session_id: 5,
        correlation_id: 6,
        encoded_credentials: vec![0xFF, 0xFE, 0x00, 0xC3, 0x28, 0x80],
    }
    .into();
    assert_round_trip(&message);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// On failure proptest prints the seed; `Mode::Random(seed)` rebuilds the same messages.
    #[test]
    fn every_message_round_trips_with_random_values(seed in any::<u64>()) {
        for message in all_messages(Mode::Random(seed)) {
            let bytes = encode(&message);
            let decoded = Message::decode(&bytes);
            prop_assert_eq!(decoded, Ok(message));
        }
    }
}
