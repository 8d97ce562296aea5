//! Keys of messages, for replaying one client's messages out of a stream (pure, no I/O).
//!
//! A key is an integer read from each message: its publisher's session, the frame header's
//! reserved value, an Aeron Cluster egress `clusterSessionId`, the cluster session id of tern's
//! egress header, or a little-endian integer at an offset of the message. A [`KeyFilter`] is a kind and a value: a replay with a filter sends
//! only the messages whose key has that value.
//!
//! Message formats read (little-endian, offsets from the start of the message):
//! - Aeron Cluster egress, SBE `SessionMessageHeader` (schema id 111, template id 1): an 8-byte
//!   SBE header {blockLength u16, templateId u16, schemaId u16, version u16}, then
//!   leadershipTermId i64 @ 8, clusterSessionId i64 @ 16, timestamp i64 @ 24. A message of
//!   another template or schema has no key of this kind.
//! - tern's egress header v1 ([`crate::egress_header`], 48 bytes): version u8 = 2 @ 0, kind u8 =
//!   12 @ 1, zero @ 2..8, cluster session id i64 @ 8, session sequence u64 @ 16, log index u64
//!   @ 24, cluster timestamp i64 @ 32, egress number u64 @ 40. A message shorter than 48 bytes,
//!   of another version or kind, or with nonzero bytes 2 to 7 has no key of this kind.
//! - A field: an i32 or i64 at a byte offset; a message too short to hold it has no key.
//!
//! The key of a fragmented message is read from its first fragment (the frame with the BEGIN
//! flag): its reserved value and the bytes of that fragment. A field must lie in the first
//! fragment (within the MTU less the 32-byte header). The following fragments go with it.

use crate::egress_header;
use crate::message_time::{CLUSTER_SCHEMA_ID, SESSION_MESSAGE_HEADER_TEMPLATE_ID};

/// Offset of `clusterSessionId` in an Aeron Cluster egress `SessionMessageHeader`.
pub const CLUSTER_SESSION_ID_OFFSET: usize = 16;

/// The width of an integer field read from messages (little-endian, signed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldWidth {
    /// 4 bytes, sign-extended to i64.
    I32,
    /// 8 bytes.
    I64,
}

impl FieldWidth {
    /// Bytes read.
    pub fn bytes(self) -> usize {
        match self {
            Self::I32 => 4,
            Self::I64 => 8,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::I32 => "i32",
            Self::I64 => "i64",
        }
    }
}

impl std::str::FromStr for FieldWidth {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "i32" => Ok(Self::I32),
            "i64" => Ok(Self::I64),
            other => Err(format!("field width {other:?}: expected i32 or i64")),
        }
    }
}

/// Where the key of a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyKind {
    /// The publisher's session id. In tern every recording is one image, so one session (in its
    /// catalog descriptor): this kind selects a whole recording or nothing. It is not indexed.
    Session,
    /// The frame header's reserved value (i64 at frame offset 24), set per message by publishers
    /// (`try_claim`, a reserved value supplier).
    Reserved,
    /// The `clusterSessionId` of an Aeron Cluster egress `SessionMessageHeader`.
    ClusterEgress,
    /// The cluster session id of tern's egress header ([`crate::egress_header`], i64 at 8).
    TernEgress,
    /// A little-endian integer at a byte offset of the message.
    Field {
        /// Byte offset in the message (in its first fragment).
        offset: u32,
        /// i32 or i64.
        width: FieldWidth,
    },
}

/// Kind codes in index files (see `docs/formats.md`).
const CODE_RESERVED: u8 = 1;
const CODE_CLUSTER_EGRESS: u8 = 2;
const CODE_FIELD: u8 = 3;
const CODE_TERN_EGRESS: u8 = 4;

impl KeyKind {
    /// The key of a message: `reserved_value` is its first frame's reserved value, `message` the
    /// payload of its first fragment. `None` when this kind cannot read it (another template, a
    /// message too short); always `None` for [`KeyKind::Session`], which is not in messages.
    pub fn key_of(&self, reserved_value: i64, message: &[u8]) -> Option<i64> {
        let u16_at = |offset: usize| {
            message
                .get(offset..offset + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        match *self {
            Self::Session => None,
            Self::Reserved => Some(reserved_value),
            Self::ClusterEgress => {
                if u16_at(2)? != SESSION_MESSAGE_HEADER_TEMPLATE_ID
                    || u16_at(4)? != CLUSTER_SCHEMA_ID
                {
                    return None;
                }
                i64_at(message, CLUSTER_SESSION_ID_OFFSET)
            }
            Self::TernEgress => egress_header::session_id(message),
            Self::Field { offset, width } => {
                let offset = offset as usize;
                match width {
                    FieldWidth::I64 => i64_at(message, offset),
                    FieldWidth::I32 => message
                        .get(offset..offset.checked_add(4)?)
                        .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
                }
            }
        }
    }

    /// Whether the archive can keep an index of this kind (every kind read from messages).
    pub fn is_indexable(&self) -> bool {
        !matches!(self, Self::Session)
    }

    /// The kind's name in index file names: `reserved`, `cluster-egress`, `tern-egress`,
    /// `field-16-i64`.
    pub fn tag(&self) -> String {
        match self {
            Self::Session => "session".into(),
            Self::Reserved => "reserved".into(),
            Self::ClusterEgress => "cluster-egress".into(),
            Self::TernEgress => "tern-egress".into(),
            Self::Field { offset, width } => format!("field-{offset}-{}", width.name()),
        }
    }

    /// The 8-byte descriptor of an indexable kind in index files: code u8 (1 reserved,
    /// 2 cluster-egress, 3 field, 4 tern-egress), width u8 (4 or 8 for a field, else 0), zero
    /// u16, field offset u32 (else 0).
    pub fn encode(&self) -> Option<[u8; 8]> {
        let (code, width, offset) = match *self {
            Self::Session => return None,
            Self::Reserved => (CODE_RESERVED, 0u8, 0u32),
            Self::ClusterEgress => (CODE_CLUSTER_EGRESS, 0, 0),
            Self::TernEgress => (CODE_TERN_EGRESS, 0, 0),
            Self::Field { offset, width } => (CODE_FIELD, width.bytes() as u8, offset),
        };
        let mut bytes = [0u8; 8];
        bytes[0] = code;
        bytes[1] = width;
        bytes[4..8].copy_from_slice(&offset.to_le_bytes());
        Some(bytes)
    }

    /// The kind of an 8-byte descriptor written by [`Self::encode`].
    pub fn decode(bytes: &[u8; 8]) -> Option<Self> {
        if bytes[2..4] != [0, 0] {
            return None;
        }
        let offset = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        match (bytes[0], bytes[1], offset) {
            (CODE_RESERVED, 0, 0) => Some(Self::Reserved),
            (CODE_CLUSTER_EGRESS, 0, 0) => Some(Self::ClusterEgress),
            (CODE_TERN_EGRESS, 0, 0) => Some(Self::TernEgress),
            (CODE_FIELD, 4, offset) => Some(Self::Field {
                offset,
                width: FieldWidth::I32,
            }),
            (CODE_FIELD, 8, offset) => Some(Self::Field {
                offset,
                width: FieldWidth::I64,
            }),
            _ => None,
        }
    }
}

fn i64_at(message: &[u8], offset: usize) -> Option<i64> {
    message
        .get(offset..offset.checked_add(8)?)
        .map(|bytes| i64::from_le_bytes(bytes.try_into().expect("8 bytes")))
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Session => write!(f, "session"),
            Self::Reserved => write!(f, "reserved"),
            Self::ClusterEgress => write!(f, "cluster-egress"),
            Self::TernEgress => write!(f, "tern-egress"),
            Self::Field { offset, width } => write!(f, "field:{offset}:{}", width.name()),
        }
    }
}

const KIND_HELP: &str = "expected session, reserved, cluster-egress, tern-egress or \
                         field:OFFSET:i32|i64 (e.g. field:16:i64)";

impl std::str::FromStr for KeyKind {
    type Err = String;

    /// `session`, `reserved`, `cluster-egress`, `tern-egress`, `field:OFFSET:i32` or
    /// `field:OFFSET:i64`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            ["session"] => Ok(Self::Session),
            ["reserved"] => Ok(Self::Reserved),
            ["cluster-egress"] => Ok(Self::ClusterEgress),
            ["tern-egress"] => Ok(Self::TernEgress),
            ["field", offset, width] => Ok(Self::Field {
                offset: offset.parse().map_err(|_| {
                    format!("key kind {text:?}: field offset {offset:?} is not a byte offset")
                })?,
                width: width
                    .parse()
                    .map_err(|error| format!("key kind {text:?}: {error}"))?,
            }),
            _ => Err(format!("key kind {text:?}: {KIND_HELP}")),
        }
    }
}

/// Replay only the messages whose key of `kind` is `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFilter {
    /// Where the key comes from.
    pub kind: KeyKind,
    /// The key wanted.
    pub value: i64,
}

impl KeyFilter {
    /// Whether a message (its first frame's reserved value and first fragment) has the key.
    /// Never for [`KeyKind::Session`], which selects recordings, not messages.
    pub fn matches(&self, reserved_value: i64, message: &[u8]) -> bool {
        self.kind.key_of(reserved_value, message) == Some(self.value)
    }
}

impl std::fmt::Display for KeyFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

impl std::str::FromStr for KeyFilter {
    type Err = String;

    /// `session:ID`, `reserved:VALUE`, `cluster-egress:CLUSTER_SESSION_ID`,
    /// `tern-egress:CLUSTER_SESSION_ID`, `field:OFFSET:i32:VALUE` or `field:OFFSET:i64:VALUE`;
    /// values are decimal, may be negative.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind_text, value_text) = text.rsplit_once(':').ok_or_else(|| {
            format!("key {text:?}: expected KIND:VALUE, e.g. session:42, reserved:7, cluster-egress:123, tern-egress:123 or field:16:i64:99")
        })?;
        let kind: KeyKind = kind_text
            .parse()
            .map_err(|error: String| format!("key {text:?}: {error}"))?;
        let value: i64 = value_text
            .parse()
            .map_err(|_| format!("key {text:?}: value {value_text:?} is not a decimal integer"))?;
        let narrow = matches!(
            kind,
            KeyKind::Session
                | KeyKind::Field {
                    width: FieldWidth::I32,
                    ..
                }
        );
        if narrow && i32::try_from(value).is_err() {
            return Err(format!(
                "key {text:?}: value {value} does not fit a 32-bit {kind}"
            ));
        }
        Ok(Self { kind, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Aeron Cluster egress message of `cluster_session_id` with a body.
    fn egress(cluster_session_id: i64) -> Vec<u8> {
        let mut message = Vec::new();
        message.extend_from_slice(&24u16.to_le_bytes());
        message.extend_from_slice(&SESSION_MESSAGE_HEADER_TEMPLATE_ID.to_le_bytes());
        message.extend_from_slice(&CLUSTER_SCHEMA_ID.to_le_bytes());
        message.extend_from_slice(&1u16.to_le_bytes());
        message.extend_from_slice(&7i64.to_le_bytes());
        message.extend_from_slice(&cluster_session_id.to_le_bytes());
        message.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        message.extend_from_slice(b"body");
        message
    }

    #[test]
    fn every_kind_reads_its_key_and_refuses_what_it_cannot_read() {
        let message = egress(-42);
        assert_eq!(KeyKind::Reserved.key_of(9, &message), Some(9));
        assert_eq!(KeyKind::Session.key_of(9, &message), None);
        assert_eq!(KeyKind::ClusterEgress.key_of(0, &message), Some(-42));
        let mut other_template = message.clone();
        other_template[2] = 2;
        assert_eq!(KeyKind::ClusterEgress.key_of(0, &other_template), None);
        let mut other_schema = message.clone();
        other_schema[4] = 112;
        assert_eq!(KeyKind::ClusterEgress.key_of(0, &other_schema), None);
        assert_eq!(KeyKind::ClusterEgress.key_of(0, &message[..23]), None);
        let field64: KeyKind = "field:16:i64".parse().expect("kind");
        assert_eq!(field64.key_of(0, &message), Some(-42));
        assert_eq!(field64.key_of(0, &message[..23]), None, "too short");
        assert_eq!(
            field64.key_of(0, &message[..24]),
            Some(-42),
            "just long enough"
        );
        let field32: KeyKind = "field:16:i32".parse().expect("kind");
        assert_eq!(field32.key_of(0, &message), Some(-42), "sign-extended");
        assert_eq!(field32.key_of(0, &message[..19]), None);
        let far = KeyKind::Field {
            offset: u32::MAX,
            width: FieldWidth::I64,
        };
        assert_eq!(far.key_of(0, &message), None, "an offset past any message");
    }

    #[test]
    fn filters_parse_print_back_and_bad_ones_say_what_is_expected() {
        for text in [
            "session:42",
            "reserved:-7",
            "cluster-egress:123",
            "tern-egress:-9223372036854775808",
            "field:16:i64:99",
            "field:0:i32:-5",
        ] {
            let filter: KeyFilter = text.parse().expect(text);
            assert_eq!(filter.to_string(), text);
        }
        let filter: KeyFilter = "field:16:i64:99".parse().expect("field");
        assert_eq!(
            filter.kind,
            KeyKind::Field {
                offset: 16,
                width: FieldWidth::I64
            }
        );
        for (bad, expected) in [
            ("42", "expected KIND:VALUE"),
            ("client:42", "expected session, reserved"),
            ("reserved:x", "not a decimal integer"),
            ("reserved:", "not a decimal integer"),
            ("field:16:99", "expected session, reserved"),
            ("field:-1:i64:9", "not a byte offset"),
            ("field:16:u8:9", "expected i32 or i64"),
            ("session:99999999999", "does not fit a 32-bit"),
            ("field:0:i32:2147483648", "does not fit a 32-bit"),
            ("tern-egress:x", "not a decimal integer"),
            (
                "tern-egress:1:2",
                "expected session, reserved, cluster-egress, tern-egress",
            ),
        ] {
            let error = bad.parse::<KeyFilter>().expect_err(bad);
            assert!(error.contains(expected), "{bad}: {error}");
        }
        assert!("session:42:1".parse::<KeyFilter>().is_err());
    }

    #[test]
    fn kinds_encode_to_eight_bytes_and_back_and_have_file_name_tags() {
        for kind in [
            KeyKind::Reserved,
            KeyKind::ClusterEgress,
            KeyKind::TernEgress,
            KeyKind::Field {
                offset: 16,
                width: FieldWidth::I64,
            },
            KeyKind::Field {
                offset: 70_000,
                width: FieldWidth::I32,
            },
        ] {
            let bytes = kind.encode().expect("indexable");
            assert_eq!(KeyKind::decode(&bytes), Some(kind));
            assert_eq!(kind.to_string().parse::<KeyKind>(), Ok(kind));
        }
        assert_eq!(KeyKind::Session.encode(), None);
        assert_eq!(KeyKind::decode(&[9, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(KeyKind::decode(&[3, 2, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(
            KeyKind::Field {
                offset: 16,
                width: FieldWidth::I64
            }
            .tag(),
            "field-16-i64"
        );
        assert_eq!(KeyKind::ClusterEgress.tag(), "cluster-egress");
        assert_eq!(KeyKind::TernEgress.tag(), "tern-egress");
        assert_eq!(
            KeyKind::TernEgress.encode(),
            Some([4, 0, 0, 0, 0, 0, 0, 0]),
            "code 4, as docs/formats.md draws it"
        );
        assert_eq!(KeyKind::decode(&[4, 8, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(KeyKind::decode(&[4, 0, 0, 0, 16, 0, 0, 0]), None);
    }

    /// A tern egress message of `session_id`: the 48-byte header, then a body.
    fn tern_egress(session_id: i64) -> Vec<u8> {
        let mut message = Vec::new();
        egress_header::encode_header(
            session_id,
            3,
            17,
            1_700_000_000_000_000_000,
            40,
            &mut message,
        );
        message.extend_from_slice(b"body");
        message
    }

    #[test]
    fn tern_egress_reads_the_cluster_session_id_of_tern_egress_messages_only() {
        let kind: KeyKind = "tern-egress".parse().expect("kind");
        assert_eq!(kind, KeyKind::TernEgress);
        let message = tern_egress(-42);
        assert_eq!(kind.key_of(0, &message), Some(-42));
        assert_eq!(kind.key_of(0, &message[..48]), Some(-42), "no payload");
        assert_eq!(kind.key_of(0, &message[..47]), None, "too short");
        assert_eq!(kind.key_of(0, &[]), None);
        let mut other_version = message.clone();
        other_version[0] = 1;
        assert_eq!(kind.key_of(0, &other_version), None);
        let mut other_kind = message.clone();
        other_kind[1] = 11;
        assert_eq!(kind.key_of(0, &other_kind), None);
        let mut not_zero = message.clone();
        not_zero[5] = 1;
        assert_eq!(kind.key_of(0, &not_zero), None);
        // Neither header is read as the other.
        assert_eq!(kind.key_of(0, &egress(-42)), None);
        assert_eq!(KeyKind::ClusterEgress.key_of(0, &message), None);
        let filter: KeyFilter = "tern-egress:-42".parse().expect("filter");
        assert!(filter.matches(0, &message));
        assert!(!filter.matches(0, &tern_egress(42)));
        assert!(!filter.matches(-42, &other_kind));
    }
}
