//! Where a replay takes the time of a message from (pure, no I/O): the capture time the recorder
//! wrote into the time index, or a timestamp inside the message itself.
//!
//! Message formats read (little-endian, offsets from the start of the message):
//! - Aeron Cluster egress, SBE `SessionMessageHeader` (schema id 111, template id 1): an 8-byte
//!   SBE header {blockLength u16, templateId u16, schemaId u16, version u16}, then
//!   leadershipTermId i64 @ 8, clusterSessionId i64 @ 16, timestamp i64 @ 24 (cluster time, in
//!   the cluster's time unit: milliseconds unless the cluster is configured otherwise).
//! - tern's egress header v1 ([`crate::egress_header`], 48 bytes): version u8 = 2 @ 0, kind u8 =
//!   12 @ 1, zero @ 2..8, cluster session id i64 @ 8, session sequence u64 @ 16, log index u64
//!   @ 24, cluster timestamp i64 @ 32 (nanoseconds since the Unix epoch), egress number u64 @ 40.
//! - Any message with a little-endian i64 timestamp at a fixed offset, in a given unit.
//!
//! A message the source cannot read (too short, another template or kind) has no time of its own and
//! keeps the time of the message before it.

/// The unit of a timestamp inside messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Nanoseconds.
    Nanos,
    /// Microseconds.
    Micros,
    /// Milliseconds.
    Millis,
    /// Seconds.
    Seconds,
}

impl TimeUnit {
    fn to_nanos(self, value: i64) -> i64 {
        match self {
            Self::Nanos => value,
            Self::Micros => value.saturating_mul(1_000),
            Self::Millis => value.saturating_mul(1_000_000),
            Self::Seconds => value.saturating_mul(1_000_000_000),
        }
    }
}

impl std::str::FromStr for TimeUnit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ns" => Ok(Self::Nanos),
            "us" => Ok(Self::Micros),
            "ms" => Ok(Self::Millis),
            "s" => Ok(Self::Seconds),
            other => Err(format!("time unit {other:?}: expected ns, us, ms or s")),
        }
    }
}

/// Aeron Cluster's schema id and the template id of its egress `SessionMessageHeader`.
pub const CLUSTER_SCHEMA_ID: u16 = 111;
/// See [`CLUSTER_SCHEMA_ID`].
pub const SESSION_MESSAGE_HEADER_TEMPLATE_ID: u16 = 1;
const CLUSTER_TIMESTAMP_OFFSET: usize = 8 + 16;

/// Where the time of a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeSource {
    /// The capture time in the recording's time index (default).
    #[default]
    Capture,
    /// The `timestamp` of an Aeron Cluster egress `SessionMessageHeader`.
    ClusterEgress(TimeUnit),
    /// The cluster timestamp of tern's egress header ([`crate::egress_header`], nanoseconds at
    /// offset 32).
    TernEgress,
    /// A little-endian i64 at this offset of each message.
    Field {
        /// Byte offset in the message.
        offset: usize,
        /// Its unit.
        unit: TimeUnit,
    },
}

impl TimeSource {
    /// The time of a message (the payload of its first fragment), in nanoseconds; `None` for the
    /// capture source or a message this source cannot read.
    pub fn message_time(&self, message: &[u8]) -> Option<i64> {
        let i64_at = |offset: usize| {
            message
                .get(offset..offset + 8)
                .map(|bytes| i64::from_le_bytes(bytes.try_into().expect("8 bytes")))
        };
        let u16_at = |offset: usize| {
            message
                .get(offset..offset + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        match *self {
            Self::Capture => None,
            Self::ClusterEgress(unit) => {
                if u16_at(2)? != SESSION_MESSAGE_HEADER_TEMPLATE_ID
                    || u16_at(4)? != CLUSTER_SCHEMA_ID
                {
                    return None;
                }
                i64_at(CLUSTER_TIMESTAMP_OFFSET).map(|value| unit.to_nanos(value))
            }
            Self::TernEgress => crate::egress_header::timestamp_ns(message),
            Self::Field { offset, unit } => i64_at(offset).map(|value| unit.to_nanos(value)),
        }
    }

    /// How many bytes of a message this source reads its time from (the end of the timestamp,
    /// or of the header it must find, for tern's egress header); `None` for the capture source.
    pub fn message_bytes(&self) -> Option<usize> {
        match *self {
            Self::Capture => None,
            Self::ClusterEgress(_) => Some(CLUSTER_TIMESTAMP_OFFSET + 8),
            Self::TernEgress => Some(crate::egress_header::LENGTH),
            Self::Field { offset, .. } => Some(offset.saturating_add(8)),
        }
    }

    /// Whether times come from inside messages.
    pub fn is_in_message(&self) -> bool {
        !matches!(self, Self::Capture)
    }
}

impl std::str::FromStr for TimeSource {
    type Err = String;

    /// `capture`, `cluster-egress` (milliseconds) or `cluster-egress:UNIT`, `tern-egress`
    /// (nanoseconds), `field:OFFSET:UNIT`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.split(':');
        let kind = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        match (kind, rest.as_slice()) {
            ("capture", []) => Ok(Self::Capture),
            ("cluster-egress", []) => Ok(Self::ClusterEgress(TimeUnit::Millis)),
            ("cluster-egress", [unit]) => Ok(Self::ClusterEgress(unit.parse()?)),
            ("tern-egress", []) => Ok(Self::TernEgress),
            ("field", [offset, unit]) => Ok(Self::Field {
                offset: offset
                    .parse()
                    .map_err(|_| format!("field offset {offset:?} is not a byte offset"))?,
                unit: unit.parse()?,
            }),
            // Without the text: the caller says which value it was (the control server, clap).
            _ => Err(
                "expected capture, cluster-egress[:UNIT], tern-egress or field:OFFSET:UNIT".into(),
            ),
        }
    }
}

impl std::fmt::Display for TimeUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Nanos => "ns",
            Self::Micros => "us",
            Self::Millis => "ms",
            Self::Seconds => "s",
        })
    }
}

/// The syntax [`TimeSource::from_str`](std::str::FromStr) reads (and the control protocol's
/// `time_source` fields carry).
impl std::fmt::Display for TimeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Capture => f.write_str("capture"),
            Self::ClusterEgress(unit) => write!(f, "cluster-egress:{unit}"),
            Self::TernEgress => f.write_str("tern-egress"),
            Self::Field { offset, unit } => write!(f, "field:{offset}:{unit}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_what_from_str_reads() {
        for source in [
            TimeSource::Capture,
            TimeSource::ClusterEgress(TimeUnit::Micros),
            TimeSource::TernEgress,
            TimeSource::Field {
                offset: 16,
                unit: TimeUnit::Seconds,
            },
        ] {
            assert_eq!(source.to_string().parse::<TimeSource>(), Ok(source));
        }
    }

    fn egress(timestamp: i64) -> Vec<u8> {
        let mut message = Vec::new();
        message.extend_from_slice(&24u16.to_le_bytes()); // block length
        message.extend_from_slice(&SESSION_MESSAGE_HEADER_TEMPLATE_ID.to_le_bytes());
        message.extend_from_slice(&CLUSTER_SCHEMA_ID.to_le_bytes());
        message.extend_from_slice(&1u16.to_le_bytes()); // version
        message.extend_from_slice(&7i64.to_le_bytes()); // leadershipTermId
        message.extend_from_slice(&42i64.to_le_bytes()); // clusterSessionId
        message.extend_from_slice(&timestamp.to_le_bytes());
        message.extend_from_slice(b"payload");
        message
    }

    #[test]
    fn cluster_egress_timestamps_are_read_in_their_unit_and_others_are_not() {
        let source: TimeSource = "cluster-egress".parse().expect("parse");
        assert_eq!(
            source.message_time(&egress(1_700_000_000_123)),
            Some(1_700_000_000_123_000_000)
        );
        let micros: TimeSource = "cluster-egress:us".parse().expect("parse");
        assert_eq!(micros.message_time(&egress(5)), Some(5_000));
        let mut other_template = egress(5);
        other_template[2] = 2;
        assert_eq!(source.message_time(&other_template), None);
        assert_eq!(source.message_time(&egress(5)[..20]), None, "too short");
    }

    #[test]
    fn tern_egress_times_are_the_headers_nanoseconds_and_other_messages_have_none() {
        let source: TimeSource = "tern-egress".parse().expect("parse");
        assert_eq!(source, TimeSource::TernEgress);
        let mut message = Vec::new();
        crate::egress_header::encode_header(5, 1, 9, 1_700_000_000_123_456_789, 1, &mut message);
        assert_eq!(
            source.message_time(&message),
            Some(1_700_000_000_123_456_789)
        );
        message.extend_from_slice(b"payload");
        assert_eq!(
            source.message_time(&message),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(source.message_time(&message[..47]), None, "too short");
        let mut other_kind = message.clone();
        other_kind[1] = 13;
        assert_eq!(source.message_time(&other_kind), None);
        let mut other_version = message.clone();
        other_version[0] = 1;
        assert_eq!(source.message_time(&other_version), None);
        assert_eq!(
            source.message_time(&egress(5)),
            None,
            "Aeron Cluster's header"
        );
        assert_eq!(source.message_bytes(), Some(48));
        assert!(source.is_in_message());
    }

    #[test]
    fn a_field_at_an_offset_and_bad_specs() {
        let source: TimeSource = "field:4:us".parse().expect("parse");
        let mut message = vec![0u8; 12];
        message[4..12].copy_from_slice(&9i64.to_le_bytes());
        assert_eq!(source.message_time(&message), Some(9_000));
        assert_eq!(source.message_time(&message[..11]), None);
        assert_eq!(source.message_bytes(), Some(12));
        assert_eq!(TimeSource::Capture.message_bytes(), None);
        assert_eq!("capture".parse::<TimeSource>(), Ok(TimeSource::Capture));
        for bad in [
            "field:x:ms",
            "field:4",
            "cluster-egress:h",
            "wallclock",
            "tern-egress:ms",
        ] {
            assert!(bad.parse::<TimeSource>().is_err(), "{bad}");
        }
    }
}
