//! The client protocol (pure, no I/O): what clients send on a member's ingress stream and what
//! they get on their response channel. Drawn byte by byte in `docs/cluster.md` §8.
//!
//! Every message starts with a 4-byte header: version u8 (2), kind u8, zero u16. Version 2 gave
//! the egress message its 48-byte header (§9 of `docs/cluster.md`), which is also what every
//! node's egress recording holds.

use crate::bytes::{put_bytes, Reader};
use crate::node::{Ingress, NodeStatus};
use crate::service::{Egress, Role};
use tern_store::egress_header::{self, EgressHeader};

/// The header's version.
pub const PROTOCOL_VERSION: u8 = 2;
/// Bytes of the header.
pub const PROTOCOL_HEADER_LENGTH: usize = 4;
/// Aeron Cluster's default ingress stream id.
pub const INGRESS_STREAM_ID: i32 = 101;
/// Aeron Cluster's default egress stream id.
pub const EGRESS_STREAM_ID: i32 = 102;
/// Aeron Cluster's default consensus stream id.
pub const CONSENSUS_STREAM_ID: i32 = 108;

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// What a session asks of the cluster, as the node takes it ([`Ingress`]). Kinds and bodies:
    /// 1 connect (correlation id i64, response stream id i32, channel length u32, channel,
    /// credentials length u32, credentials), 2 message (session id i64, payload), 3 keep-alive
    /// (session id i64), 4 close (session id i64).
    Session(Ingress),
    /// Kind 5: the member's status, or kind 6: a snapshot first, then the status (answered by
    /// any member, not through the log). Body: correlation id i64, response stream id i32,
    /// channel length u32, channel.
    Status {
        /// Echoed in the answer.
        correlation_id: i64,
        /// Where the client reads.
        response_stream_id: i32,
        /// The client's response channel.
        response_channel: String,
        /// Take a snapshot before answering (kind 6).
        snapshot: bool,
    },
    /// Kind 7: send the session's egress after the last the client saw, from the member's egress
    /// recording, then live (answered by the leader, not through the log; a follower redirects).
    /// Body: correlation id i64, session id i64, after sequence u64, after egress number u64,
    /// after timestamp ns i64 (the last egress message's; zeroes when the client saw none).
    Resume(Resume),
    /// Kind 8: send a session's recorded egress after a point, from this member's egress
    /// recording, up to the recording's end when asked, then a [`EventCode::Replayed`] event
    /// (answered by any member that records egress, leader or follower, whether the session is
    /// open or long closed; not through the log). Body: the resume's five fields (correlation
    /// id i64, session id i64, after sequence u64, after egress number u64, after timestamp ns
    /// i64), response stream id i32, channel length u32, channel.
    Replay {
        /// Which session's egress, after what (as for a resume).
        after: Resume,
        /// Where the client reads.
        response_stream_id: i32,
        /// The client's response channel.
        response_channel: String,
    },
    /// Kind 9: follow the shared output stream (session id 0) after a point: the leader sends
    /// what its recording holds after it, then `caught up`, then the stream live, to the
    /// channel named, for as long as the client renews; kind 10: renew (every second; a leader
    /// that does not serve the channel yet, a new one, starts it from the point given). A
    /// follower answers a follow with `redirect` and ignores a renewal. Body as a replay's
    /// (the session id must be 0).
    Follow {
        /// After what (session id 0).
        after: Resume,
        /// Where the client reads.
        response_stream_id: i32,
        /// The client's response channel.
        response_channel: String,
        /// A renewal (kind 10), not a (re)start (kind 9).
        renew: bool,
    },
}

/// What a client asks to resume its session's egress after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Echoed in the answer.
    pub correlation_id: i64,
    /// The session.
    pub session_id: i64,
    /// The session sequence of the last egress message the client has (0: none).
    pub after_sequence: u64,
    /// Its egress number (0: none).
    pub after_number: u64,
    /// Its cluster timestamp (0: none).
    pub after_timestamp_ns: i64,
}

/// What a session event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EventCode {
    /// The session is open.
    Ok = 0,
    /// Refused (the detail says why).
    Error = 1,
    /// This member is not the leader: ask the one named.
    Redirect = 2,
    /// The session was closed (the detail says why).
    Closed = 3,
    /// A new leader took over: send to the member named from now on (and resume the egress
    /// after the last message seen).
    NewLeader = 4,
    /// A resume is done: the egress the client missed was sent, live egress follows (the detail
    /// says how many messages).
    CaughtUp = 5,
    /// A replay is done: the session's egress this member had recorded when asked was sent (the
    /// detail says how many messages and the recording's last egress number).
    Replayed = 6,
}

/// What a client gets on its response channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Kind 11. Body: correlation id i64, session id i64, code u8 (0 ok, 1 error, 2 redirect, 3
    /// closed, 4 new leader, 5 caught up, 6 replayed), 7 zero bytes, leader
    /// member id u64 (0: unknown), detail length u32, detail (UTF-8).
    SessionEvent {
        /// The request's correlation id (0 for a close the client did not ask for).
        correlation_id: i64,
        /// The session (0 when none was opened).
        session_id: i64,
        /// What happened.
        code: EventCode,
        /// The leader this member knows.
        leader: u64,
        /// Why, for errors and closes.
        detail: String,
    },
    /// Kind 12: a message from the service, with tern's egress header: 4 zero bytes after the
    /// message header, then cluster session id i64, session sequence u64, log index u64, cluster
    /// timestamp ns i64, egress number u64, payload ([`egress_header()`]).
    Egress(Egress),
    /// Kind 13: a member's status. Body: correlation id i64, member id u64, role u8 (0 follower,
    /// 1 candidate, 2 leader), 7 zero bytes, leader u64, term u64, commit index u64, applied
    /// index u64, last index u64, snapshot index u64, sessions u64, log position i64, cluster time
    /// ns i64, last egress number recorded u64, last egress number synced u64.
    Status {
        /// The request's correlation id.
        correlation_id: i64,
        /// The status.
        status: NodeStatus,
    },
}

const CONNECT: u8 = 1;
const MESSAGE: u8 = 2;
const KEEP_ALIVE: u8 = 3;
const CLOSE: u8 = 4;
const STATUS: u8 = 5;
const SNAPSHOT: u8 = 6;
const RESUME: u8 = 7;
const REPLAY: u8 = 8;
const FOLLOW: u8 = 9;
const RENEW: u8 = 10;
const SESSION_EVENT: u8 = 11;
const EGRESS: u8 = 12;
const STATUS_ANSWER: u8 = 13;

fn header(kind: u8) -> Vec<u8> {
    vec![PROTOCOL_VERSION, kind, 0, 0]
}

fn open(bytes: &[u8]) -> Result<(u8, Reader<'_>), String> {
    if bytes.len() < PROTOCOL_HEADER_LENGTH {
        return Err(format!("a message of {} bytes has no header", bytes.len()));
    }
    if bytes[0] != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} (this build speaks {PROTOCOL_VERSION})",
            bytes[0]
        ));
    }
    Ok((
        bytes[1],
        Reader::new(bytes, PROTOCOL_HEADER_LENGTH, "a message"),
    ))
}

/// Bytes of tern's egress header: the message header, 4 zero bytes, the five fields.
pub const EGRESS_HEADER_LENGTH: usize = egress_header::LENGTH;

// The egress message is the header tern-store's key and time readers know.
const _: () = assert!(PROTOCOL_VERSION == egress_header::VERSION && EGRESS == egress_header::KIND);

/// tern's egress header of `egress` (drawn in `docs/cluster.md` §9 and
/// [`tern_store::egress_header`]): what precedes its payload on a client's response channel and
/// in every node's egress recording.
pub fn egress_header(egress: &Egress) -> [u8; EGRESS_HEADER_LENGTH] {
    EgressHeader {
        session_id: egress.session_id,
        sequence: egress.sequence,
        log_index: egress.log_index,
        timestamp_ns: egress.timestamp_ns,
        egress_number: egress.number,
    }
    .to_bytes()
}

/// The bytes of [`Response::Egress`] for `egress`, without a copy of it first.
pub fn encode_egress(egress: &Egress) -> Vec<u8> {
    let mut out = Vec::with_capacity(EGRESS_HEADER_LENGTH + egress.payload.len());
    out.extend_from_slice(&egress_header(egress));
    out.extend_from_slice(&egress.payload);
    out
}

impl Resume {
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.correlation_id.to_le_bytes());
        out.extend_from_slice(&self.session_id.to_le_bytes());
        out.extend_from_slice(&self.after_sequence.to_le_bytes());
        out.extend_from_slice(&self.after_number.to_le_bytes());
        out.extend_from_slice(&self.after_timestamp_ns.to_le_bytes());
    }

    fn take(reader: &mut Reader<'_>) -> Result<Self, String> {
        Ok(Self {
            correlation_id: reader.i64()?,
            session_id: reader.i64()?,
            after_sequence: reader.u64()?,
            after_number: reader.u64()?,
            after_timestamp_ns: reader.i64()?,
        })
    }
}

/// The longest channel or credentials a request may carry.
pub const MAX_FIELD_LENGTH: usize = 4096;

impl Request {
    /// The request's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out;
        match self {
            Self::Session(Ingress::Connect {
                correlation_id,
                response_stream_id,
                response_channel,
                credentials,
            }) => {
                out = header(CONNECT);
                out.extend_from_slice(&correlation_id.to_le_bytes());
                out.extend_from_slice(&response_stream_id.to_le_bytes());
                put_bytes(&mut out, response_channel.as_bytes());
                put_bytes(&mut out, credentials);
            }
            Self::Session(Ingress::Message {
                session_id,
                payload,
            }) => {
                out = header(MESSAGE);
                out.extend_from_slice(&session_id.to_le_bytes());
                out.extend_from_slice(payload);
            }
            Self::Session(Ingress::KeepAlive { session_id }) => {
                out = header(KEEP_ALIVE);
                out.extend_from_slice(&session_id.to_le_bytes());
            }
            Self::Session(Ingress::Close { session_id }) => {
                out = header(CLOSE);
                out.extend_from_slice(&session_id.to_le_bytes());
            }
            Self::Status {
                correlation_id,
                response_stream_id,
                response_channel,
                snapshot,
            } => {
                out = header(if *snapshot { SNAPSHOT } else { STATUS });
                out.extend_from_slice(&correlation_id.to_le_bytes());
                out.extend_from_slice(&response_stream_id.to_le_bytes());
                put_bytes(&mut out, response_channel.as_bytes());
            }
            Self::Resume(resume) => {
                out = header(RESUME);
                resume.put(&mut out);
            }
            Self::Replay {
                after,
                response_stream_id,
                response_channel,
            } => {
                out = header(REPLAY);
                after.put(&mut out);
                out.extend_from_slice(&response_stream_id.to_le_bytes());
                put_bytes(&mut out, response_channel.as_bytes());
            }
            Self::Follow {
                after,
                response_stream_id,
                response_channel,
                renew,
            } => {
                out = header(if *renew { RENEW } else { FOLLOW });
                after.put(&mut out);
                out.extend_from_slice(&response_stream_id.to_le_bytes());
                put_bytes(&mut out, response_channel.as_bytes());
            }
        }
        out
    }

    /// The request in `bytes`.
    ///
    /// # Errors
    /// What is wrong with them.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (kind, mut reader) = open(bytes)?;
        let request = match kind {
            CONNECT => Self::Session(Ingress::Connect {
                correlation_id: reader.i64()?,
                response_stream_id: reader.i32()?,
                response_channel: reader.text(MAX_FIELD_LENGTH)?,
                credentials: reader.bytes(MAX_FIELD_LENGTH)?.to_vec(),
            }),
            MESSAGE => Self::Session(Ingress::Message {
                session_id: reader.i64()?,
                payload: reader.rest().to_vec(),
            }),
            KEEP_ALIVE => Self::Session(Ingress::KeepAlive {
                session_id: reader.i64()?,
            }),
            RESUME => Self::Resume(Resume::take(&mut reader)?),
            REPLAY => Self::Replay {
                after: Resume::take(&mut reader)?,
                response_stream_id: reader.i32()?,
                response_channel: reader.text(MAX_FIELD_LENGTH)?,
            },
            FOLLOW | RENEW => Self::Follow {
                after: Resume::take(&mut reader)?,
                response_stream_id: reader.i32()?,
                response_channel: reader.text(MAX_FIELD_LENGTH)?,
                renew: kind == RENEW,
            },
            CLOSE => Self::Session(Ingress::Close {
                session_id: reader.i64()?,
            }),
            STATUS | SNAPSHOT => Self::Status {
                correlation_id: reader.i64()?,
                response_stream_id: reader.i32()?,
                response_channel: reader.text(MAX_FIELD_LENGTH)?,
                snapshot: kind == SNAPSHOT,
            },
            other => return Err(format!("request kind {other}")),
        };
        reader.end()?;
        Ok(request)
    }
}

fn role_code(role: Role) -> u8 {
    match role {
        Role::Follower => 0,
        Role::Candidate => 1,
        Role::Leader => 2,
    }
}

impl Response {
    /// The response's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out;
        match self {
            Self::SessionEvent {
                correlation_id,
                session_id,
                code,
                leader,
                detail,
            } => {
                out = header(SESSION_EVENT);
                out.extend_from_slice(&correlation_id.to_le_bytes());
                out.extend_from_slice(&session_id.to_le_bytes());
                out.extend_from_slice(&[*code as u8, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&leader.to_le_bytes());
                put_bytes(&mut out, detail.as_bytes());
            }
            Self::Egress(egress) => out = encode_egress(egress),
            Self::Status {
                correlation_id,
                status,
            } => {
                out = header(STATUS_ANSWER);
                out.extend_from_slice(&correlation_id.to_le_bytes());
                out.extend_from_slice(&status.member_id.to_le_bytes());
                out.extend_from_slice(&[role_code(status.role), 0, 0, 0, 0, 0, 0, 0]);
                for value in [
                    status.leader.unwrap_or(0),
                    status.term,
                    status.commit_index,
                    status.applied_index,
                    status.last_index,
                    status.snapshot_index,
                    status.sessions as u64,
                    status.log_position as u64,
                    status.cluster_time_ns as u64,
                    status.egress_recorded,
                    status.egress_synced,
                ] {
                    out.extend_from_slice(&value.to_le_bytes());
                }
            }
        }
        out
    }

    /// The response in `bytes`.
    ///
    /// # Errors
    /// What is wrong with them.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (kind, mut reader) = open(bytes)?;
        let response = match kind {
            SESSION_EVENT => {
                let correlation_id = reader.i64()?;
                let session_id = reader.i64()?;
                let code = match reader.take(8)?[0] {
                    0 => EventCode::Ok,
                    1 => EventCode::Error,
                    2 => EventCode::Redirect,
                    3 => EventCode::Closed,
                    4 => EventCode::NewLeader,
                    5 => EventCode::CaughtUp,
                    6 => EventCode::Replayed,
                    other => return Err(format!("session event code {other}")),
                };
                Self::SessionEvent {
                    correlation_id,
                    session_id,
                    code,
                    leader: reader.u64()?,
                    detail: reader.text(usize::MAX)?,
                }
            }
            EGRESS => {
                reader.take(4)?;
                Self::Egress(Egress {
                    session_id: reader.i64()?,
                    sequence: reader.u64()?,
                    log_index: reader.u64()?,
                    timestamp_ns: reader.i64()?,
                    number: reader.u64()?,
                    payload: reader.rest().to_vec(),
                })
            }
            STATUS_ANSWER => {
                let correlation_id = reader.i64()?;
                let member_id = reader.u64()?;
                let role = match reader.take(8)?[0] {
                    0 => Role::Follower,
                    1 => Role::Candidate,
                    2 => Role::Leader,
                    other => return Err(format!("role {other}")),
                };
                let leader = reader.u64()?;
                Self::Status {
                    correlation_id,
                    status: NodeStatus {
                        member_id,
                        role,
                        leader: (leader != 0).then_some(leader),
                        term: reader.u64()?,
                        commit_index: reader.u64()?,
                        applied_index: reader.u64()?,
                        last_index: reader.u64()?,
                        snapshot_index: reader.u64()?,
                        sessions: reader.u64()? as usize,
                        log_position: reader.i64()?,
                        cluster_time_ns: reader.i64()?,
                        egress_recorded: reader.u64()?,
                        egress_synced: reader.u64()?,
                    },
                }
            }
            other => return Err(format!("response kind {other}")),
        };
        reader.end()?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests() -> Vec<Request> {
        let status = |snapshot| Request::Status {
            correlation_id: 9,
            response_stream_id: 102,
            response_channel: "aeron:ipc".into(),
            snapshot,
        };
        vec![
            Request::Session(Ingress::Connect {
                correlation_id: 5,
                response_stream_id: 102,
                response_channel: "aeron:udp?endpoint=localhost:9020".into(),
                credentials: b"secret".to_vec(),
            }),
            Request::Session(Ingress::Message {
                session_id: 3,
                payload: b"put a 1".to_vec(),
            }),
            Request::Session(Ingress::KeepAlive { session_id: 3 }),
            Request::Session(Ingress::Close { session_id: 3 }),
            status(false),
            status(true),
            Request::Resume(Resume {
                correlation_id: 11,
                session_id: 3,
                after_sequence: 40,
                after_number: 900,
                after_timestamp_ns: 1_700_000_000_000_000_000,
            }),
            Request::Replay {
                after: Resume {
                    correlation_id: 12,
                    session_id: 4,
                    after_sequence: 0,
                    after_number: 0,
                    after_timestamp_ns: 0,
                },
                response_stream_id: 102,
                response_channel: "aeron:udp?endpoint=localhost:9021".into(),
            },
            Request::Follow {
                after: Resume {
                    correlation_id: 13,
                    session_id: 0,
                    after_sequence: 7,
                    after_number: 70,
                    after_timestamp_ns: 5,
                },
                response_stream_id: 102,
                response_channel: "aeron:udp?endpoint=localhost:9022".into(),
                renew: false,
            },
            Request::Follow {
                after: Resume {
                    correlation_id: 14,
                    session_id: 0,
                    after_sequence: 8,
                    after_number: 71,
                    after_timestamp_ns: 6,
                },
                response_stream_id: 102,
                response_channel: "aeron:udp?endpoint=localhost:9022".into(),
                renew: true,
            },
        ]
    }

    fn responses() -> Vec<Response> {
        vec![
            Response::SessionEvent {
                correlation_id: 5,
                session_id: 1,
                code: EventCode::Redirect,
                leader: 2,
                detail: "not the leader".into(),
            },
            Response::SessionEvent {
                correlation_id: 12,
                session_id: 4,
                code: EventCode::Replayed,
                leader: 3,
                detail: "30 messages".into(),
            },
            Response::Egress(Egress {
                session_id: 1,
                sequence: 4,
                log_index: 77,
                timestamp_ns: 1_700_000_000_000_000_000,
                number: 12,
                payload: b"ok a".to_vec(),
            }),
            Response::Status {
                correlation_id: 9,
                status: NodeStatus {
                    member_id: 2,
                    role: Role::Leader,
                    leader: Some(2),
                    term: 3,
                    commit_index: 40,
                    applied_index: 40,
                    last_index: 41,
                    snapshot_index: 10,
                    sessions: 2,
                    log_position: 4096,
                    cluster_time_ns: 17,
                    egress_recorded: 30,
                    egress_synced: 28,
                },
            },
        ]
    }

    #[test]
    fn requests_and_responses_round_trip_and_every_cut_is_an_error() {
        for request in requests() {
            let bytes = request.encode();
            assert_eq!(Request::decode(&bytes), Ok(request.clone()));
            // A message's payload runs to the end: a cut one is another message, not an error.
            if !matches!(request, Request::Session(Ingress::Message { .. })) {
                for length in 0..bytes.len() {
                    assert!(
                        Request::decode(&bytes[..length]).is_err(),
                        "{request:?} at {length}"
                    );
                }
            }
        }
        for response in responses() {
            let bytes = response.encode();
            assert_eq!(Response::decode(&bytes), Ok(response.clone()));
            if !matches!(response, Response::Egress { .. }) {
                for length in 0..bytes.len() {
                    assert!(
                        Response::decode(&bytes[..length]).is_err(),
                        "{response:?} at {length}"
                    );
                }
            }
        }
    }

    #[test]
    fn bad_requests_are_named() {
        assert!(Request::decode(&[1, 1, 0, 0])
            .expect_err("version")
            .contains("version 1"));
        assert_eq!(
            Request::decode(&[2, 99, 0, 0]),
            Err("request kind 99".into())
        );
        let mut long = header(CONNECT);
        long.extend_from_slice(&1i64.to_le_bytes());
        long.extend_from_slice(&102i32.to_le_bytes());
        long.extend_from_slice(&100_000u32.to_le_bytes());
        assert!(Request::decode(&long)
            .expect_err("long")
            .contains("at most 4096"));
    }
}
