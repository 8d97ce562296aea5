//! Decoder fuzzing with proptest: random bytes, random bytes behind a plausible header, and
//! truncations and mutations of valid messages, for Aeron's schema 101 ([`Message`]), tern's
//! schema 1101 ([`TernMessage`]) and the dispatch over both ([`AnyMessage`], [`decode_any`]). The decoder must never panic; truncated input
//! must be an error. On failure proptest prints the failing input (for samples, the seed that
//! rebuilds them with `Mode::Random(seed)`).

mod common;

use common::{
    all_any_messages, all_messages, all_tern_messages, encode, encode_any, Mode,
    REQUIRED_TEMPLATE_IDS, TERN_TEMPLATE_IDS,
};
use proptest::prelude::*;
use tern_protocol::*;

/// Decoding either fails or yields a message that re-encodes and decodes to itself.
fn check_decode_is_sound(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok((message, consumed)) = Message::decode_prefix(bytes) {
        prop_assert!(consumed <= bytes.len());
        let again = encode(&message);
        prop_assert_eq!(Message::decode(&again), Ok(message));
    }
    Ok(())
}

/// The same for tern's schema and the dispatch: each decoder either fails or yields a message
/// that round-trips, and `decode_any` agrees with the decoder of the header's schema.
fn check_any_decode_is_sound(bytes: &[u8]) -> Result<(), TestCaseError> {
    let tern = TernMessage::decode_prefix(bytes);
    if let Ok((message, consumed)) = &tern {
        prop_assert!(*consumed <= bytes.len());
        let mut again = Vec::new();
        message
            .encode(&mut again)
            .expect("a decoded message encodes");
        prop_assert_eq!(TernMessage::decode(&again), Ok(message.clone()));
    }
    let any = AnyMessage::decode_prefix(bytes);
    prop_assert_eq!(decode_any(bytes), any.clone().map(|(message, _)| message));
    match MessageHeader::decode(bytes).map(|header| header.schema_id) {
        Ok(SCHEMA_ID) => prop_assert_eq!(
            any,
            Message::decode_prefix(bytes).map(|(m, n)| (AnyMessage::Aeron(m), n))
        ),
        Ok(TERN_SCHEMA_ID) => {
            prop_assert_eq!(any, tern.map(|(m, n)| (AnyMessage::Tern(m), n)))
        }
        Ok(schema_id) => prop_assert_eq!(
            any,
            Err(DecodeError::WrongSchema {
                schema_id,
                expected: SCHEMA_ID
            })
        ),
        Err(error) => prop_assert_eq!(any, Err(error)),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_decode_is_sound(&bytes)?;
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        template_index in 0..REQUIRED_TEMPLATE_IDS.len(),
        block_length in 0u16..120,
        version in prop_oneof![Just(SCHEMA_VERSION), 0u16..20, any::<u16>()],
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let header = MessageHeader {
            block_length,
            template_id: REQUIRED_TEMPLATE_IDS[template_index],
            schema_id: SCHEMA_ID,
            version,
        };
        let mut bytes = Vec::new();
        header.encode(&mut bytes);
        bytes.extend_from_slice(&body);
        check_decode_is_sound(&bytes)?;
    }

    #[test]
    fn every_truncation_of_a_valid_message_is_an_error(seed in any::<u64>()) {
        for message in all_messages(Mode::Random(seed)) {
            let bytes = encode(&message);
            for length in 0..bytes.len() {
                let result = Message::decode(&bytes[..length]);
                prop_assert!(
                    matches!(result, Err(DecodeError::Truncated { .. })),
                    "{} cut to {} of {} bytes: {:?}", message.name(), length, bytes.len(), result
                );
            }
        }
    }

    #[test]
    fn mutations_of_valid_messages_never_panic(
        seed in any::<u64>(),
        message_index in 0..REQUIRED_TEMPLATE_IDS.len(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let message = &all_messages(Mode::Random(seed))[message_index];
        let mut bytes = encode(message);
        for (index, value) in &flips {
            let at = index.index(bytes.len());
            bytes[at] = *value;
        }
        check_decode_is_sound(&bytes)?;
        let length = cut.index(bytes.len() + 1);
        check_decode_is_sound(&bytes[..length])?;
    }

    #[test]
    fn mutated_length_prefixes_never_panic(
        seed in any::<u64>(),
        message_index in 0..REQUIRED_TEMPLATE_IDS.len(),
        length in prop_oneof![Just(u32::MAX), Just(VAR_DATA_MAX_LENGTH), Just(VAR_DATA_MAX_LENGTH + 1), any::<u32>(), 0u32..100],
    ) {
        let message = &all_messages(Mode::Random(seed))[message_index];
        let spec = Message::spec(message.template_id()).expect("spec");
        prop_assume!(!spec.var_data.is_empty());
        let mut bytes = encode(message);
        let at = MESSAGE_HEADER_LENGTH + spec.block_length;
        bytes[at..at + 4].copy_from_slice(&length.to_le_bytes());
        check_decode_is_sound(&bytes)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        check_any_decode_is_sound(&bytes)?;
    }

    #[test]
    fn random_bytes_behind_a_header_of_either_schema_never_panic(
        schema_id in prop_oneof![Just(SCHEMA_ID), Just(TERN_SCHEMA_ID), any::<u16>()],
        template_id in prop_oneof![
            proptest::sample::select(TERN_TEMPLATE_IDS),
            proptest::sample::select(REQUIRED_TEMPLATE_IDS),
            any::<u16>(),
        ],
        block_length in 0u16..120,
        version in prop_oneof![Just(TERN_SCHEMA_VERSION), Just(SCHEMA_VERSION), 0u16..20, any::<u16>()],
        body in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let header = MessageHeader { block_length, template_id, schema_id, version };
        let mut bytes = Vec::new();
        header.encode(&mut bytes);
        bytes.extend_from_slice(&body);
        check_any_decode_is_sound(&bytes)?;
        check_decode_is_sound(&bytes)?;
    }

    #[test]
    fn every_truncation_of_a_valid_tern_message_is_an_error(seed in any::<u64>()) {
        for message in all_tern_messages(Mode::Random(seed)) {
            let bytes = encode_any(&message.clone().into());
            for length in 0..bytes.len() {
                let result = TernMessage::decode(&bytes[..length]);
                prop_assert!(
                    matches!(result, Err(DecodeError::Truncated { .. })),
                    "{} cut to {} of {} bytes: {:?}", message.name(), length, bytes.len(), result
                );
                let any = decode_any(&bytes[..length]);
                prop_assert!(matches!(any, Err(DecodeError::Truncated { .. })), "{:?}", any);
            }
        }
    }

    #[test]
    fn mutations_of_valid_messages_of_either_schema_never_panic(
        seed in any::<u64>(),
        message_index in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let messages = all_any_messages(Mode::Random(seed));
        let message = &messages[message_index.index(messages.len())];
        let mut bytes = encode_any(message);
        for (index, value) in &flips {
            let at = index.index(bytes.len());
            bytes[at] = *value;
        }
        check_any_decode_is_sound(&bytes)?;
        let length = cut.index(bytes.len() + 1);
        check_any_decode_is_sound(&bytes[..length])?;
    }

    #[test]
    fn mutated_length_prefixes_of_tern_messages_never_panic(
        seed in any::<u64>(),
        message_index in 0..TERN_TEMPLATE_IDS.len(),
        which in any::<prop::sample::Index>(),
        length in prop_oneof![Just(u32::MAX), Just(VAR_DATA_MAX_LENGTH), Just(VAR_DATA_MAX_LENGTH + 1), any::<u32>(), 0u32..100],
    ) {
        let message = &all_tern_messages(Mode::Random(seed))[message_index];
        let spec = TernMessage::spec(message.template_id()).expect("spec");
        let mut bytes = encode_any(&message.clone().into());
        // Walk to the chosen var-data field's length prefix.
        let mut at = MESSAGE_HEADER_LENGTH + spec.block_length;
        for _ in 0..which.index(spec.var_data.len()) {
            let prefix = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
            at += 4 + prefix as usize;
        }
        bytes[at..at + 4].copy_from_slice(&length.to_le_bytes());
        check_any_decode_is_sound(&bytes)?;
    }
}
