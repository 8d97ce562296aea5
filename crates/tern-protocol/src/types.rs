//! The schema's enums and special types: `ControlResponseCode`, `SourceLocation`, `BooleanType`
//! (carried as `bool`), `RecordingSignal`, and `version_t` ([`SemanticVersion`]).

use std::fmt;
use std::num::NonZeroI32;

use crate::codec::{read_i32, FixedField};
use crate::error::DecodeError;

sbe_enum! {
    /// Outcome of a control request, in a `ControlResponse`.
    ControlResponseCode = "ControlResponseCode" {
        /// The operation succeeded.
        Ok = 0 => "OK",
        /// The operation failed; the response's error message says why and its relevant id
        /// carries Aeron's error code.
        Error = 1 => "ERROR",
        /// The recording id was unknown; ends a listing that found fewer recordings than asked.
        RecordingUnknown = 2 => "RECORDING_UNKNOWN",
        /// The subscription id was unknown; ends a subscription listing.
        SubscriptionUnknown = 3 => "SUBSCRIPTION_UNKNOWN",
    }
}

sbe_enum! {
    /// Where the recorded stream comes from relative to the archive's media driver.
    SourceLocation = "SourceLocation" {
        /// The publication is on the archive's own driver (an IPC recording can be used).
        Local = 0 => "LOCAL",
        /// The publication is remote.
        Remote = 1 => "REMOTE",
    }
}

sbe_enum! {
    /// The schema's language-independent boolean. Message fields of this type are `bool` in
    /// Rust; this enum documents the wire values.
    BooleanType = "BooleanType" {
        /// False (0).
        False = 0 => "FALSE",
        /// True (1).
        True = 1 => "TRUE",
    }
}

sbe_enum! {
    /// An operation that happened to a recording, in a `RecordingSignalEvent`.
    RecordingSignal = "RecordingSignal" {
        /// A recording started for a stream.
        Start = 0 => "START",
        /// A recording stopped.
        Stop = 1 => "STOP",
        /// A recording started being extended.
        Extend = 2 => "EXTEND",
        /// A recording descriptor was replicated from a source archive.
        Replicate = 3 => "REPLICATE",
        /// A recording merged with the live stream after replay.
        Merge = 4 => "MERGE",
        /// A recording synchronised with its source archive.
        Sync = 5 => "SYNC",
        /// Segments of a recording were deleted.
        Delete = 6 => "DELETE",
        /// Replication of a recording ended.
        ReplicateEnd = 7 => "REPLICATE_END",
    }
}

impl From<bool> for BooleanType {
    fn from(value: bool) -> Self {
        if value {
            BooleanType::True
        } else {
            BooleanType::False
        }
    }
}

impl From<BooleanType> for bool {
    fn from(value: BooleanType) -> Self {
        value == BooleanType::True
    }
}

impl FixedField for bool {
    const SBE_TYPE: &'static str = BooleanType::SBE_NAME;
    const SIZE: usize = 4;
    const NULL_VALUE: Option<i64> = None;

    fn put(&self, dst: &mut [u8]) {
        BooleanType::from(*self).put(dst);
    }

    fn get(src: &[u8], field: &'static str) -> Result<Self, DecodeError> {
        BooleanType::get(src, field).map(bool::from)
    }

    fn absent() -> Option<Self> {
        None
    }
}

/// A protocol version in Agrona's semantic-version form, `major << 16 | minor << 8 | patch`:
/// the schema's `version_t` (an optional `int32` whose null value is 0).
///
/// A field of this type is `Option<SemanticVersion>`: 0 on the wire is `None`, every other raw
/// value (even outside the schema's `minValue`/`maxValue`, which SBE decoders do not enforce) is
/// kept as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SemanticVersion(NonZeroI32);

impl SemanticVersion {
    /// The wire value that means "no version" (`version_t`'s `nullValue`).
    pub const NULL_VALUE: i32 = 0;

    /// Composes a version; `None` for 0.0.0, which would be the null value.
    pub const fn compose(major: u8, minor: u8, patch: u8) -> Option<Self> {
        Self::from_raw(((major as i32) << 16) | ((minor as i32) << 8) | patch as i32)
    }

    /// The version for a raw wire value; `None` for the null value 0.
    pub const fn from_raw(raw: i32) -> Option<Self> {
        match NonZeroI32::new(raw) {
            Some(raw) => Some(Self(raw)),
            None => None,
        }
    }

    /// The raw wire value.
    pub const fn raw(self) -> i32 {
        self.0.get()
    }

    /// The major part.
    pub const fn major(self) -> u8 {
        (self.raw() >> 16) as u8
    }

    /// The minor part.
    pub const fn minor(self) -> u8 {
        (self.raw() >> 8) as u8
    }

    /// The patch part.
    pub const fn patch(self) -> u8 {
        self.raw() as u8
    }
}

impl fmt::Display for SemanticVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}.{}.{}",
            self.major(),
            self.minor(),
            self.patch()
        )
    }
}

/// The archive protocol version Aeron 1.54's client and archive announce (1.12.0), sent in
/// `AuthConnectRequest.version` and `ControlResponse.version`.
pub const ARCHIVE_PROTOCOL_VERSION: SemanticVersion = match SemanticVersion::compose(1, 12, 0) {
    Some(version) => version,
    None => panic!("1.12.0 is not the null version"),
};

impl FixedField for Option<SemanticVersion> {
    const SBE_TYPE: &'static str = "int32";
    const SIZE: usize = 4;
    const NULL_VALUE: Option<i64> = Some(SemanticVersion::NULL_VALUE as i64);

    fn put(&self, dst: &mut [u8]) {
        let raw = self.map_or(SemanticVersion::NULL_VALUE, SemanticVersion::raw);
        dst.copy_from_slice(&raw.to_le_bytes());
    }

    fn get(src: &[u8], _field: &'static str) -> Result<Self, DecodeError> {
        Ok(SemanticVersion::from_raw(read_i32(src)))
    }

    fn absent() -> Option<Self> {
        Some(None)
    }
}

/// Replaces every non-ASCII character with `?`, as Aeron's Java encoder does for
/// `varAsciiEncoding` fields; use it for text that may not be ASCII (an error message naming a
/// path) before putting it in a message.
pub fn to_ascii_lossy(text: &str) -> String {
    text.chars()
        .map(|character| if character.is_ascii() { character } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_protocol_version_is_1_12_0() {
        assert_eq!(ARCHIVE_PROTOCOL_VERSION.raw(), 0x01_0C_00);
        assert_eq!(ARCHIVE_PROTOCOL_VERSION.to_string(), "1.12.0");
        assert_eq!(SemanticVersion::compose(0, 0, 0), None);
    }

    #[test]
    fn enum_values_round_trip_and_unknown_values_are_refused() {
        for signal in RecordingSignal::ALL {
            assert_eq!(RecordingSignal::from_value(signal.value()), Some(*signal));
        }
        assert_eq!(RecordingSignal::from_value(8), None);
        assert_eq!(
            <ControlResponseCode as FixedField>::get(&i32::MIN.to_le_bytes(), "code"),
            Err(DecodeError::BadEnumValue {
                field: "code",
                enum_name: "ControlResponseCode",
                value: i32::MIN
            })
        );
        assert_eq!(
            <bool as FixedField>::get(&1i32.to_le_bytes(), "autoStop"),
            Ok(true)
        );
        assert!(<bool as FixedField>::get(&2i32.to_le_bytes(), "autoStop").is_err());
    }

    #[test]
    fn lossy_ascii_replaces_each_non_ascii_character_once() {
        assert_eq!(to_ascii_lossy("caf\u{e9} \u{1F600}!"), "caf? ?!");
    }
}
