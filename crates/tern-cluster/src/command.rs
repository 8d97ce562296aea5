//! What a normal log entry carries (pure, no I/O): a batch of the commands the leader took in,
//! stamped with the cluster time. Drawn byte by byte in `docs/cluster.md`.
//!
//! ```text
//! batch:   0 version (u8) | 1 zero (u8) | 2 command count (u16) | 4 zero (u32) | 8 timestamp ns (i64)
//!          16 commands, back to back
//! command: 0 kind (u8) | 1 zero (u8) | 2 zero (u16) | 4 body length (u32) | 8 body
//! ```
//! All little-endian. An entry with no data (the one a new leader appends) is no batch.

/// The batch layout's version.
pub const BATCH_VERSION: u8 = 1;
/// Bytes of a batch header.
pub const BATCH_HEADER_LENGTH: usize = 16;
/// Bytes of a command header.
pub const COMMAND_HEADER_LENGTH: usize = 8;

/// Why a session was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum CloseReason {
    /// The client closed it.
    ClientAction = 1,
    /// No message or keep-alive from the client within the session timeout.
    Timeout = 2,
    /// The service closed it.
    ServiceAction = 3,
}

impl CloseReason {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::ClientAction),
            2 => Some(Self::Timeout),
            3 => Some(Self::ServiceAction),
            _ => None,
        }
    }

    /// A lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientAction => "client",
            Self::Timeout => "timeout",
            Self::ServiceAction => "service",
        }
    }
}

/// One command in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A client connects: the session gets the next session id when this is applied.
    /// Body: correlation id (i64), response stream id (i32), channel length (u32), channel
    /// (UTF-8).
    SessionOpen {
        /// The client's correlation id of its connect request, echoed in the session event.
        correlation_id: i64,
        /// Where the client reads its egress.
        response_stream_id: i32,
        /// The client's egress channel.
        response_channel: String,
    },
    /// A message from a session to the service. Body: session id (i64), payload.
    SessionMessage {
        /// The cluster session.
        session_id: i64,
        /// What the client sent.
        payload: Vec<u8>,
    },
    /// A session ends. Body: session id (i64), reason (u8).
    SessionClose {
        /// The cluster session.
        session_id: i64,
        /// Why.
        reason: CloseReason,
    },
    /// A timer the service scheduled is due. Body: correlation id (i64), deadline ns (i64):
    /// the deadline it was due at, so a timer moved since fires at its new time, not this one.
    Timer {
        /// The service's id of the timer.
        correlation_id: i64,
        /// The deadline the leader saw due.
        deadline_ns: i64,
    },
}

const OPEN: u8 = 1;
const MESSAGE: u8 = 2;
const CLOSE: u8 = 3;
const TIMER: u8 = 4;

impl Command {
    /// Bytes of this command in a batch, header included.
    pub fn encoded_length(&self) -> usize {
        COMMAND_HEADER_LENGTH
            + match self {
                Self::SessionOpen {
                    response_channel, ..
                } => 16 + response_channel.len(),
                Self::SessionMessage { payload, .. } => 8 + payload.len(),
                Self::SessionClose { .. } => 9,
                Self::Timer { .. } => 16,
            }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let kind = match self {
            Self::SessionOpen { .. } => OPEN,
            Self::SessionMessage { .. } => MESSAGE,
            Self::SessionClose { .. } => CLOSE,
            Self::Timer { .. } => TIMER,
        };
        let body = (self.encoded_length() - COMMAND_HEADER_LENGTH) as u32;
        out.extend_from_slice(&[kind, 0, 0, 0]);
        out.extend_from_slice(&body.to_le_bytes());
        match self {
            Self::SessionOpen {
                correlation_id,
                response_stream_id,
                response_channel,
            } => {
                out.extend_from_slice(&correlation_id.to_le_bytes());
                out.extend_from_slice(&response_stream_id.to_le_bytes());
                out.extend_from_slice(&(response_channel.len() as u32).to_le_bytes());
                out.extend_from_slice(response_channel.as_bytes());
            }
            Self::SessionMessage {
                session_id,
                payload,
            } => {
                out.extend_from_slice(&session_id.to_le_bytes());
                out.extend_from_slice(payload);
            }
            Self::SessionClose { session_id, reason } => {
                out.extend_from_slice(&session_id.to_le_bytes());
                out.push(*reason as u8);
            }
            Self::Timer {
                correlation_id,
                deadline_ns,
            } => {
                out.extend_from_slice(&correlation_id.to_le_bytes());
                out.extend_from_slice(&deadline_ns.to_le_bytes());
            }
        }
    }

    fn decode(kind: u8, body: &[u8]) -> Result<Self, String> {
        let i64_at = |at: usize| -> Result<i64, String> {
            body.get(at..at + 8)
                .map(|bytes| i64::from_le_bytes(bytes.try_into().expect("8")))
                .ok_or_else(|| format!("command body of {} bytes is too short", body.len()))
        };
        match kind {
            OPEN => {
                let correlation_id = i64_at(0)?;
                let short = || format!("session open body of {} bytes is too short", body.len());
                let stream = body.get(8..12).ok_or_else(short)?;
                let length = body.get(12..16).ok_or_else(short)?;
                let length = u32::from_le_bytes(length.try_into().expect("4")) as usize;
                let channel = body.get(16..16 + length).ok_or_else(short)?;
                Ok(Self::SessionOpen {
                    correlation_id,
                    response_stream_id: i32::from_le_bytes(stream.try_into().expect("4")),
                    response_channel: String::from_utf8(channel.to_vec())
                        .map_err(|_| "session open channel is not UTF-8".to_string())?,
                })
            }
            MESSAGE => Ok(Self::SessionMessage {
                session_id: i64_at(0)?,
                payload: body[8..].to_vec(),
            }),
            CLOSE => {
                let session_id = i64_at(0)?;
                let byte = *body.get(8).ok_or("session close without a reason")?;
                let reason = CloseReason::from_byte(byte)
                    .ok_or_else(|| format!("session close reason {byte}"))?;
                Ok(Self::SessionClose { session_id, reason })
            }
            TIMER => Ok(Self::Timer {
                correlation_id: i64_at(0)?,
                deadline_ns: i64_at(8)?,
            }),
            other => Err(format!("command kind {other}")),
        }
    }
}

/// A batch of commands with the cluster time the leader stamped on it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// Cluster time, epoch nanoseconds, as the leader read its clock (never going back).
    pub timestamp_ns: i64,
    /// The commands, in order.
    pub commands: Vec<Command>,
}

impl Batch {
    /// Bytes of the batch.
    pub fn encoded_length(&self) -> usize {
        BATCH_HEADER_LENGTH
            + self
                .commands
                .iter()
                .map(Command::encoded_length)
                .sum::<usize>()
    }

    /// The batch as entry data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_length());
        out.push(BATCH_VERSION);
        out.push(0);
        out.extend_from_slice(&(self.commands.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.timestamp_ns.to_le_bytes());
        for command in &self.commands {
            command.encode(&mut out);
        }
        out
    }

    /// The batch in entry data.
    ///
    /// # Errors
    /// What is wrong with the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < BATCH_HEADER_LENGTH {
            return Err(format!("batch of {} bytes is too short", bytes.len()));
        }
        if bytes[0] != BATCH_VERSION {
            return Err(format!(
                "batch version {} (this build reads {BATCH_VERSION})",
                bytes[0]
            ));
        }
        let count = usize::from(u16::from_le_bytes([bytes[2], bytes[3]]));
        let timestamp_ns = i64::from_le_bytes(bytes[8..16].try_into().expect("8"));
        let mut commands = Vec::with_capacity(count);
        let mut at = BATCH_HEADER_LENGTH;
        for _ in 0..count {
            let header = bytes
                .get(at..at + COMMAND_HEADER_LENGTH)
                .ok_or_else(|| format!("command {} of {count} is missing", commands.len()))?;
            let length = u32::from_le_bytes(header[4..8].try_into().expect("4")) as usize;
            let body_start = at + COMMAND_HEADER_LENGTH;
            let body = bytes
                .get(body_start..body_start + length)
                .ok_or_else(|| format!("command {} is cut short", commands.len()))?;
            commands.push(Command::decode(header[0], body)?);
            at = body_start + length;
        }
        if at != bytes.len() {
            return Err(format!("{} bytes after the last command", bytes.len() - at));
        }
        Ok(Self {
            timestamp_ns,
            commands,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        Batch {
            timestamp_ns: 1_700_000_000_123,
            commands: vec![
                Command::SessionOpen {
                    correlation_id: 7,
                    response_stream_id: 102,
                    response_channel: "aeron:udp?endpoint=localhost:9020".into(),
                },
                Command::SessionMessage {
                    session_id: 1,
                    payload: b"put a 1".to_vec(),
                },
                Command::SessionClose {
                    session_id: 1,
                    reason: CloseReason::Timeout,
                },
                Command::Timer {
                    correlation_id: -3,
                    deadline_ns: 99,
                },
            ],
        }
    }

    #[test]
    fn a_batch_round_trips() {
        let bytes = sample().encode();
        assert_eq!(bytes.len(), sample().encoded_length());
        assert_eq!(Batch::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn every_cut_or_bad_byte_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for length in 0..bytes.len() {
            assert!(Batch::decode(&bytes[..length]).is_err(), "cut at {length}");
        }
        let mut bad_kind = bytes.clone();
        bad_kind[BATCH_HEADER_LENGTH] = 77;
        assert_eq!(Batch::decode(&bad_kind), Err("command kind 77".into()));
        let mut bad_version = bytes;
        bad_version[0] = 9;
        assert!(Batch::decode(&bad_version)
            .expect_err("version")
            .contains("version 9"));
    }
}
