//! The ids the archive and its clients name things by, each its own type so that one is never
//! passed where another is meant (positions stay `i64`: they are arithmetic everywhere).

use std::fmt;

/// A recording's id: its slot in the catalog, given out by the archive (the catalog's `add`) in
/// order from 0 and never reused. The control protocol, the catalog record and the index file
/// headers carry it as Aeron's `i64` (`recordingId`); it is converted there and nowhere else.
/// Shown as the bare number (`7`), as in file names (`7-0.rec`). The default is recording 0 (so
/// that a request with defaults, such as the archive's `ReplayRequest`, can be written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct RecordingId(i64);

impl RecordingId {
    /// The recording id `id` (as the wire or a file carries it).
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    /// The id as the wire and the files carry it.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<RecordingId> for i64 {
    fn from(id: RecordingId) -> Self {
        id.0
    }
}

/// A recording id written as its number (`7`), as on a command line.
impl std::str::FromStr for RecordingId {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.parse().map(Self)
    }
}

/// A replay's id (Aeron's replay session id), given out by the archive when it starts the
/// replay: a sequence number in the high 32 bits, the session id of the replay's image in the
/// low 32 ([`ReplayId::image_session_id`]). The control protocol carries it as Aeron's `i64`
/// (`replaySessionId`); it is converted there and nowhere else. Shown as the bare number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct ReplayId(i64);

impl ReplayId {
    /// The replay id `id` (as the wire carries it).
    pub const fn new(id: i64) -> Self {
        Self(id)
    }

    /// The id as the wire carries it.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// The session id of the replay's image: the id's low 32 bits.
    pub const fn image_session_id(self) -> i32 {
        self.0 as i32
    }
}

impl fmt::Display for ReplayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<ReplayId> for i64 {
    fn from(id: ReplayId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_show_as_the_bare_number() {
        assert_eq!(RecordingId::new(7).to_string(), "7");
        assert_eq!(format!("{}-{}.rec", RecordingId::new(7), 0), "7-0.rec");
        assert_eq!(format!("{:>4}", RecordingId::new(7)), "   7");
        assert_eq!("7".parse(), Ok(RecordingId::new(7)));
        assert!("x".parse::<RecordingId>().is_err());
        let replay = ReplayId::new((3 << 32) | 0x8000_0001);
        assert_eq!(
            replay.to_string(),
            ((3_i64 << 32) | 0x8000_0001).to_string()
        );
        assert_eq!(replay.image_session_id(), 0x8000_0001_u32 as i32);
    }
}
