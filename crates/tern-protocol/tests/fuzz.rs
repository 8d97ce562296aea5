//! Decoder fuzzing with proptest: random bytes, random bytes behind a plausible header, and
//! truncations and mutations of valid messages. The decoder must never panic; truncated input
//! must be an error. On failure proptest prints the failing input (for samples, the seed that
//! rebuilds them with `Mode::Random(seed)`).

mod common;

use common::{all_messages, encode, Mode, REQUIRED_TEMPLATE_IDS};
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
