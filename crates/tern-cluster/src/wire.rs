//! Consensus messages between members (pure, no I/O). Drawn byte by byte in `docs/cluster.md`.
//!
//! ```text
//!  0       1       2               4                               8
//!  +-------+-------+---------------+-------------------------------+---------------------+
//!  |version| kind  |     zero      | body length (u32)             | body: eraftpb.Message |
//!  +-------+-------+---------------+-------------------------------+---------------------+
//! ```
//! Kind 1 is a Raft message; its body is raft-rs's `eraftpb.Message` in the protobuf encoding
//! (the crate's protobuf codec).

use protobuf::Message as _;
use raft::prelude::Message;

/// The header's version.
pub const WIRE_VERSION: u8 = 1;
/// The kind of a Raft message.
pub const KIND_RAFT: u8 = 1;
/// Bytes of the header.
pub const WIRE_HEADER_LENGTH: usize = 8;

/// The bytes of `message`.
pub fn encode(message: &Message) -> Vec<u8> {
    let body = message
        .write_to_bytes()
        .expect("a raft message always encodes");
    let mut out = Vec::with_capacity(WIRE_HEADER_LENGTH + body.len());
    out.extend_from_slice(&[WIRE_VERSION, KIND_RAFT, 0, 0]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The message in `bytes`.
///
/// # Errors
/// What is wrong with them.
pub fn decode(bytes: &[u8]) -> Result<Message, String> {
    if bytes.len() < WIRE_HEADER_LENGTH {
        return Err(format!(
            "a consensus message of {} bytes is shorter than its header",
            bytes.len()
        ));
    }
    if bytes[0] != WIRE_VERSION {
        return Err(format!(
            "consensus message version {} (this build speaks {WIRE_VERSION})",
            bytes[0]
        ));
    }
    if bytes[1] != KIND_RAFT {
        return Err(format!("consensus message kind {}", bytes[1]));
    }
    let length = u32::from_le_bytes(bytes[4..8].try_into().expect("4")) as usize;
    let body = &bytes[WIRE_HEADER_LENGTH..];
    if body.len() != length {
        return Err(format!(
            "a consensus message body of {} bytes where the header says {length}",
            body.len()
        ));
    }
    Message::parse_from_bytes(body).map_err(|error| format!("a bad consensus message: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::prelude::{Entry, MessageType};

    #[test]
    fn a_message_round_trips_and_bad_bytes_are_named() {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.from = 1;
        message.to = 2;
        message.term = 3;
        let entry = Entry {
            index: 4,
            data: b"data".to_vec().into(),
            ..Entry::default()
        };
        message.entries = vec![entry].into();
        let bytes = encode(&message);
        assert_eq!(decode(&bytes), Ok(message));
        assert!(decode(&bytes[..5]).expect_err("short").contains("header"));
        assert!(decode(&bytes[..bytes.len() - 1])
            .expect_err("cut")
            .contains("where the header says"));
        let mut version = bytes.clone();
        version[0] = 2;
        assert!(decode(&version).expect_err("version").contains("version 2"));
        let mut garbage = bytes;
        for byte in &mut garbage[WIRE_HEADER_LENGTH..] {
            *byte = 0xff;
        }
        assert!(decode(&garbage)
            .expect_err("garbage")
            .contains("bad consensus message"));
    }
}
