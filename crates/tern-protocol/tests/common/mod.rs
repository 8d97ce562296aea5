//! Shared by the integration tests: one sample of every supported message, filled from a
//! [`Fill`] that records the wire bytes of each value it hands out, in the order the message's
//! fields are built (schema order), so a test can check an encoding against the schema alone.

#![allow(dead_code)]

use tern_protocol::*;

/// The template ids of every message tern must support (issue 4's list).
pub const REQUIRED_TEMPLATE_IDS: &[u16] = &[
    1, 3, 4, 63, 5, 6, 7, 8, 9, 10, 64, 12, 13, 14, 15, 16, 17, 18, 19, 22, 23, 24, 52, 104, 58,
    59, 60, 61, 65, 67, 68,
];

/// Which values a [`Fill`] hands out.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Lowest values: `MIN` integers (also SBE's null for int32/int64), empty var data, `None`
    /// versions, `false`, the first enum value.
    Min,
    /// Highest values: `MAX` integers, every ASCII byte in text, every byte value in blobs,
    /// the last enum value.
    Max,
    /// Aeron's application-level nulls: -1 integers and empty data.
    AeronNull,
    /// A different value for every field (catches fields written at each other's offsets).
    Distinct,
    /// Pseudo-random values from a seed.
    Random(u64),
}

/// One value a fill handed out, as its bytes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// A fixed field's little-endian bytes.
    Fixed(Vec<u8>),
    /// A var-data field's bytes (without the length prefix).
    Var(Vec<u8>),
}

/// Hands out field values and records their wire bytes.
pub struct Fill {
    mode: Mode,
    counter: u64,
    state: u64,
    pub log: Vec<Wire>,
}

impl Fill {
    pub fn new(mode: Mode) -> Self {
        let state = match mode {
            Mode::Random(seed) => seed,
            _ => 0,
        };
        Self {
            mode,
            counter: 0,
            state,
            log: Vec::new(),
        }
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: small, seedable, good enough to spread values.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn tick(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    pub fn i64(&mut self) -> i64 {
        let n = self.tick();
        let value = match self.mode {
            Mode::Min => i64::MIN,
            Mode::Max => i64::MAX,
            Mode::AeronNull => -1,
            Mode::Distinct => (0x0102_0304_0506_0700_u64 as i64).wrapping_add(n as i64),
            Mode::Random(_) => self.next_random() as i64,
        };
        self.log.push(Wire::Fixed(value.to_le_bytes().to_vec()));
        value
    }

    pub fn i32(&mut self) -> i32 {
        let n = self.tick();
        let value = match self.mode {
            Mode::Min => i32::MIN,
            Mode::Max => i32::MAX,
            Mode::AeronNull => -1,
            Mode::Distinct => 0x0A0B_0C00 + n as i32,
            Mode::Random(_) => self.next_random() as i32,
        };
        self.log.push(Wire::Fixed(value.to_le_bytes().to_vec()));
        value
    }

    pub fn flag(&mut self) -> bool {
        let n = self.tick();
        let value = match self.mode {
            Mode::Min | Mode::AeronNull => false,
            Mode::Max => true,
            Mode::Distinct => n % 2 == 1,
            Mode::Random(_) => self.next_random() % 2 == 1,
        };
        self.log
            .push(Wire::Fixed((value as i32).to_le_bytes().to_vec()));
        value
    }

    pub fn version(&mut self) -> Option<SemanticVersion> {
        let n = self.tick();
        let value = match self.mode {
            Mode::Min | Mode::AeronNull => None,
            Mode::Max => SemanticVersion::from_raw(i32::MAX),
            Mode::Distinct => SemanticVersion::from_raw(0x0001_0C00 + n as i32),
            Mode::Random(_) => SemanticVersion::from_raw(self.next_random() as i32),
        };
        let raw = value.map_or(0, SemanticVersion::raw);
        self.log.push(Wire::Fixed(raw.to_le_bytes().to_vec()));
        value
    }

    fn pick<T: Copy>(&mut self, all: &[T]) -> T {
        let n = self.tick();
        let index = match self.mode {
            Mode::Min | Mode::AeronNull => 0,
            Mode::Max => all.len() - 1,
            Mode::Distinct => n as usize % all.len(),
            Mode::Random(_) => self.next_random() as usize % all.len(),
        };
        all[index]
    }

    pub fn code(&mut self) -> ControlResponseCode {
        let value = self.pick(ControlResponseCode::ALL);
        self.log
            .push(Wire::Fixed(value.value().to_le_bytes().to_vec()));
        value
    }

    pub fn location(&mut self) -> SourceLocation {
        let value = self.pick(SourceLocation::ALL);
        self.log
            .push(Wire::Fixed(value.value().to_le_bytes().to_vec()));
        value
    }

    pub fn signal(&mut self) -> RecordingSignal {
        let value = self.pick(RecordingSignal::ALL);
        self.log
            .push(Wire::Fixed(value.value().to_le_bytes().to_vec()));
        value
    }

    pub fn action(&mut self) -> ReplayAction {
        let value = self.pick(ReplayAction::ALL);
        self.log
            .push(Wire::Fixed(value.value().to_le_bytes().to_vec()));
        value
    }

    pub fn text(&mut self) -> String {
        let n = self.tick();
        let value = match self.mode {
            Mode::Min | Mode::AeronNull => String::new(),
            // Every ASCII byte, NUL and DEL included: the schema's US-ASCII allows them all.
            Mode::Max => (0u8..=127).map(char::from).collect(),
            Mode::Distinct => format!("aeron:udp?endpoint=localhost:{}|tag={n}", 40000 + n),
            Mode::Random(_) => {
                let length = (self.next_random() % 80) as usize;
                (0..length)
                    .map(|_| char::from((self.next_random() % 128) as u8))
                    .collect()
            }
        };
        self.log.push(Wire::Var(value.as_bytes().to_vec()));
        value
    }

    pub fn bytes(&mut self) -> Vec<u8> {
        let n = self.tick();
        let value = match self.mode {
            Mode::Min | Mode::AeronNull => Vec::new(),
            // Not text: every byte value, including the non-ASCII ones the blob allows.
            Mode::Max => (0u8..=255).collect(),
            Mode::Distinct => vec![0xC3, 0xA9, n as u8, 0xFF, 0x00],
            Mode::Random(_) => {
                let length = (self.next_random() % 64) as usize;
                (0..length).map(|_| self.next_random() as u8).collect()
            }
        };
        self.log.push(Wire::Var(value.clone()));
        value
    }
}

/// A message and the wire bytes of its values, in schema order.
pub struct Sample<M = Message> {
    pub message: M,
    pub values: Vec<Wire>,
}

fn sample<M>(fill: &mut Fill, build: impl FnOnce(&mut Fill) -> M) -> Sample<M> {
    let start = fill.log.len();
    let message = build(fill);
    Sample {
        message,
        values: fill.log[start..].to_vec(),
    }
}

/// One sample of every supported message. Field initialisers are written in schema order: Rust
/// evaluates them in the order written, which is the order the fill records them.
pub fn all_samples(fill: &mut Fill) -> Vec<Sample> {
    vec![
        sample(fill, |f| {
            ControlResponse {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                relevant_id: f.i64(),
                code: f.code(),
                version: f.version(),
                error_message: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            CloseSessionRequest {
                control_session_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            StartRecordingRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                stream_id: f.i32(),
                source_location: f.location(),
                channel: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            StartRecordingRequest2 {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                stream_id: f.i32(),
                source_location: f.location(),
                auto_stop: f.flag(),
                channel: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            StopRecordingRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                stream_id: f.i32(),
                channel: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            ReplayRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
                position: f.i64(),
                length: f.i64(),
                replay_stream_id: f.i32(),
                file_io_max_length: f.i32(),
                replay_token: f.i64(),
                replay_channel: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            StopReplayRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                replay_session_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            ListRecordingsRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                from_recording_id: f.i64(),
                record_count: f.i32(),
            }
            .into()
        }),
        sample(fill, |f| {
            ListRecordingsForUriRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                from_recording_id: f.i64(),
                record_count: f.i32(),
                stream_id: f.i32(),
                channel: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            ListRecordingRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            ExtendRecordingRequest2 {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
                stream_id: f.i32(),
                source_location: f.location(),
                auto_stop: f.flag(),
                channel: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            RecordingPositionRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            TruncateRecordingRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
                position: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            StopRecordingSubscriptionRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                subscription_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            StopPositionRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            FindLastMatchingRecordingRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                min_recording_id: f.i64(),
                session_id: f.i32(),
                stream_id: f.i32(),
                channel: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            ListRecordingSubscriptionsRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                pseudo_index: f.i32(),
                subscription_count: f.i32(),
                apply_stream_id: f.flag(),
                stream_id: f.i32(),
                channel: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            BoundedReplayRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
                position: f.i64(),
                length: f.i64(),
                limit_counter_id: f.i32(),
                replay_stream_id: f.i32(),
                file_io_max_length: f.i32(),
                replay_token: f.i64(),
                replay_channel: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            StopAllReplaysRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            RecordingDescriptor {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
                start_timestamp: f.i64(),
                stop_timestamp: f.i64(),
                start_position: f.i64(),
                stop_position: f.i64(),
                initial_term_id: f.i32(),
                segment_file_length: f.i32(),
                term_buffer_length: f.i32(),
                mtu_length: f.i32(),
                session_id: f.i32(),
                stream_id: f.i32(),
                stripped_channel: f.text(),
                original_channel: f.text(),
                source_identity: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            RecordingSubscriptionDescriptor {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                subscription_id: f.i64(),
                stream_id: f.i32(),
                stripped_channel: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            RecordingSignalEvent {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
                subscription_id: f.i64(),
                position: f.i64(),
                signal: f.signal(),
            }
            .into()
        }),
        sample(fill, |f| {
            StartPositionRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            PurgeRecordingRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            AuthConnectRequest {
                correlation_id: f.i64(),
                response_stream_id: f.i32(),
                version: f.version(),
                response_channel: f.text(),
                encoded_credentials: f.bytes(),
                client_info: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            Challenge {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                version: f.version(),
                encoded_challenge: f.bytes(),
            }
            .into()
        }),
        sample(fill, |f| {
            ChallengeResponse {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                encoded_credentials: f.bytes(),
            }
            .into()
        }),
        sample(fill, |f| {
            KeepAliveRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            StopRecordingByIdentityRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            MaxRecordedPositionRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
            }
            .into()
        }),
        sample(fill, |f| {
            ArchiveIdRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
            }
            .into()
        }),
    ]
}

/// The template ids of tern's extension schema 1101.
pub const TERN_TEMPLATE_IDS: &[u16] = &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

/// One sample of every message of tern's extension schema, fields in layout order.
pub fn all_tern_samples(fill: &mut Fill) -> Vec<Sample<TernMessage>> {
    vec![
        sample(fill, |f| {
            TernReplayRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
                position: f.i64(),
                length: f.i64(),
                from_timestamp: f.i64(),
                speed_millis: f.i32(),
                replay_stream_id: f.i32(),
                replay_channel: f.text(),
                time_source: f.text(),
                key_filter: f.text(),
                cursor: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            ReplayControlRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                replay_session_id: f.i64(),
                value: f.i64(),
                action: f.action(),
                time_source: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            SetCursorRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
                position: f.i64(),
                name: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            GetCursorRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                name: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            CursorDescriptor {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
                position: f.i64(),
                updated_timestamp: f.i64(),
                name: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            DeleteCursorRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                name: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            ListCursorsRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                name_prefix: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            ListRecordingGroupsRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                stream_id: f.i32(),
                apply_stream_id: f.flag(),
                channel_fragment: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            RecordingGroupDescriptor {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                first_recording_id: f.i64(),
                last_recording_id: f.i64(),
                total_bytes: f.i64(),
                first_start_timestamp: f.i64(),
                last_stop_timestamp: f.i64(),
                stream_id: f.i32(),
                recording_count: f.i32(),
                active_count: f.i32(),
                channel: f.text(),
            }
            .into()
        }),
        sample(fill, |f| {
            PositionAtTimeRequest {
                control_session_id: f.i64(),
                correlation_id: f.i64(),
                recording_id: f.i64(),
                timestamp: f.i64(),
                time_source: f.text(),
            }
            .into()
        }),
    ]
}

/// Every tern sample message of a mode, without the recorded values.
pub fn all_tern_messages(mode: Mode) -> Vec<TernMessage> {
    all_tern_samples(&mut Fill::new(mode))
        .into_iter()
        .map(|sample| sample.message)
        .collect()
}

/// Every sample message of both schemas of a mode.
pub fn all_any_messages(mode: Mode) -> Vec<AnyMessage> {
    all_messages(mode)
        .into_iter()
        .map(AnyMessage::from)
        .chain(all_tern_messages(mode).into_iter().map(AnyMessage::from))
        .collect()
}

/// Encodes a message of either schema into a fresh buffer; the samples are all encodable.
pub fn encode_any(message: &AnyMessage) -> Vec<u8> {
    let mut buf = Vec::new();
    let written = message
        .encode(&mut buf)
        .unwrap_or_else(|error| panic!("{} should encode: {error}", message.name()));
    assert_eq!(written, buf.len());
    buf
}

/// Every sample message of a mode, without the recorded values.
pub fn all_messages(mode: Mode) -> Vec<Message> {
    all_samples(&mut Fill::new(mode))
        .into_iter()
        .map(|sample| sample.message)
        .collect()
}

/// Encodes a message into a fresh buffer; the samples are all encodable.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut buf = Vec::new();
    let written = message
        .encode(&mut buf)
        .unwrap_or_else(|error| panic!("{} should encode: {error}", message.name()));
    assert_eq!(written, buf.len());
    buf
}

/// Sets the header's block length (bytes 0..2).
pub fn set_block_length(buf: &mut [u8], block_length: u16) {
    buf[0..2].copy_from_slice(&block_length.to_le_bytes());
}

/// Sets the header's version (bytes 6..8).
pub fn set_version(buf: &mut [u8], version: u16) {
    buf[6..8].copy_from_slice(&version.to_le_bytes());
}
