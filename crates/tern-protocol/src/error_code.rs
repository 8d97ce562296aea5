//! Aeron's archive error codes (`io.aeron.archive.client.ArchiveException`, Aeron 1.54): the
//! `relevantId` of an ERROR `ControlResponse`. The one list both the archive (which sends them)
//! and the client (which reads them) use; `tests/conformance.rs` checks it against Aeron's
//! `ArchiveException.java`.

use std::fmt;

/// An archive's error code, as Aeron's `ArchiveException` numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ArchiveErrorCode {
    /// 0: no more specific code.
    Generic,
    /// 1: a listing is already running on this session.
    ActiveListing,
    /// 2: the recording is active (it cannot be truncated, purged, extended).
    ActiveRecording,
    /// 3: a recording subscription for the channel and stream exists already.
    ActiveSubscription,
    /// 4: no recording subscription matches.
    UnknownSubscription,
    /// 5: no such recording.
    UnknownRecording,
    /// 6: no such replay session.
    UnknownReplay,
    /// 7: the archive runs as many replays as it allows.
    MaxReplays,
    /// 8: the archive holds as many recordings as it allows.
    MaxRecordings,
    /// 9: the extension asked for is not valid.
    InvalidExtension,
    /// 10: the authenticator rejected the session.
    AuthenticationRejected,
    /// 11: the archive is out of storage space.
    StorageSpace,
    /// 12: no such replication.
    UnknownReplication,
    /// 13: the session may not do this.
    UnauthorisedAction,
    /// 14: a replication could not connect.
    ReplicationConnectionFailure,
    /// 15: the recording to replay is empty.
    EmptyRecording,
    /// 16: a position that is not frame aligned, or before the start or after the stop.
    InvalidPosition,
    /// A code this list does not know.
    Other(i64),
}

impl ArchiveErrorCode {
    /// Every code Aeron defines, in order of value.
    pub const KNOWN: [ArchiveErrorCode; 17] = [
        Self::Generic,
        Self::ActiveListing,
        Self::ActiveRecording,
        Self::ActiveSubscription,
        Self::UnknownSubscription,
        Self::UnknownRecording,
        Self::UnknownReplay,
        Self::MaxReplays,
        Self::MaxRecordings,
        Self::InvalidExtension,
        Self::AuthenticationRejected,
        Self::StorageSpace,
        Self::UnknownReplication,
        Self::UnauthorisedAction,
        Self::ReplicationConnectionFailure,
        Self::EmptyRecording,
        Self::InvalidPosition,
    ];

    /// The code an ERROR response's relevant id stands for.
    pub fn from_value(value: i64) -> Self {
        usize::try_from(value)
            .ok()
            .and_then(|index| Self::KNOWN.get(index).copied())
            .unwrap_or(Self::Other(value))
    }

    /// The number on the wire.
    pub const fn value(self) -> i64 {
        match self {
            Self::Generic => 0,
            Self::ActiveListing => 1,
            Self::ActiveRecording => 2,
            Self::ActiveSubscription => 3,
            Self::UnknownSubscription => 4,
            Self::UnknownRecording => 5,
            Self::UnknownReplay => 6,
            Self::MaxReplays => 7,
            Self::MaxRecordings => 8,
            Self::InvalidExtension => 9,
            Self::AuthenticationRejected => 10,
            Self::StorageSpace => 11,
            Self::UnknownReplication => 12,
            Self::UnauthorisedAction => 13,
            Self::ReplicationConnectionFailure => 14,
            Self::EmptyRecording => 15,
            Self::InvalidPosition => 16,
            Self::Other(value) => value,
        }
    }

    /// Aeron's name for the code (`UNKNOWN_RECORDING`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Generic => "GENERIC",
            Self::ActiveListing => "ACTIVE_LISTING",
            Self::ActiveRecording => "ACTIVE_RECORDING",
            Self::ActiveSubscription => "ACTIVE_SUBSCRIPTION",
            Self::UnknownSubscription => "UNKNOWN_SUBSCRIPTION",
            Self::UnknownRecording => "UNKNOWN_RECORDING",
            Self::UnknownReplay => "UNKNOWN_REPLAY",
            Self::MaxReplays => "MAX_REPLAYS",
            Self::MaxRecordings => "MAX_RECORDINGS",
            Self::InvalidExtension => "INVALID_EXTENSION",
            Self::AuthenticationRejected => "AUTHENTICATION_REJECTED",
            Self::StorageSpace => "STORAGE_SPACE",
            Self::UnknownReplication => "UNKNOWN_REPLICATION",
            Self::UnauthorisedAction => "UNAUTHORISED_ACTION",
            Self::ReplicationConnectionFailure => "REPLICATION_CONNECTION_FAILURE",
            Self::EmptyRecording => "EMPTY_RECORDING",
            Self::InvalidPosition => "INVALID_POSITION",
            Self::Other(_) => "unknown error code",
        }
    }
}

impl fmt::Display for ArchiveErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(value) => write!(formatter, "unknown error code {value}"),
            known => formatter.write_str(known.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_and_unknown_codes_are_kept() {
        for (index, known) in ArchiveErrorCode::KNOWN.iter().enumerate() {
            assert_eq!(known.value(), index as i64, "{known}");
            assert_eq!(ArchiveErrorCode::from_value(index as i64), *known);
        }
        assert_eq!(
            ArchiveErrorCode::from_value(5),
            ArchiveErrorCode::UnknownRecording
        );
        assert_eq!(
            ArchiveErrorCode::from_value(17),
            ArchiveErrorCode::Other(17)
        );
        assert_eq!(ArchiveErrorCode::from_value(-1).value(), -1);
        assert_eq!(
            ArchiveErrorCode::AuthenticationRejected.to_string(),
            "AUTHENTICATION_REJECTED"
        );
        assert_eq!(
            ArchiveErrorCode::Other(99).to_string(),
            "unknown error code 99"
        );
    }
}
