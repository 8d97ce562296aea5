//! The service container: a [`ClusteredService`] applied to the committed log, deterministically,
//! with the session table, the timers and the egress sequences beside it (pure, no I/O).
//!
//! Every node applies the same entries in the same order and the service sees only what the log
//! holds (the cluster time included), so every node's service reaches the same state and offers
//! the same egress. What the container does with a batch is the same on every node; what only the
//! leader does (sending egress and session events to clients) is the node's business.

use crate::bytes::{put_bytes, Reader};
use crate::command::{Batch, CloseReason, Command};
use std::collections::BTreeMap;

/// A node's part in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks for votes.
    Candidate,
    /// Takes in ingress and sends egress.
    Leader,
}

impl Role {
    /// A lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Follower => "follower",
            Self::Candidate => "candidate",
            Self::Leader => "leader",
        }
    }
}

/// A client connected to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSession {
    /// The cluster session id, given in log order (1, 2, ...).
    pub id: i64,
    /// Where the client reads its egress.
    pub response_stream_id: i32,
    /// The client's egress channel.
    pub response_channel: String,
    /// Cluster time of the open.
    pub opened_at_ns: i64,
}

/// A message the service offered to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    /// The cluster session.
    pub session_id: i64,
    /// The session's egress sequence: 1 for its first message, then one more for each.
    pub sequence: u64,
    /// The log entry whose applying produced it.
    pub log_index: u64,
    /// The cluster time then.
    pub timestamp_ns: i64,
    /// The cluster's egress number: 1 for the first message any session got, then one more
    /// for each (the position of the message in every node's egress recording, in messages).
    pub number: u64,
    /// What the service sent.
    pub payload: Vec<u8>,
}

/// What applying an entry produced, for the node to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A message to a session.
    Egress(Egress),
    /// A session was opened: its client is told its id.
    SessionOpened {
        /// The client's correlation id of its connect.
        correlation_id: i64,
        /// The session.
        session: ClientSession,
    },
    /// A session was closed.
    SessionClosed {
        /// The session.
        session: ClientSession,
        /// Why.
        reason: CloseReason,
    },
}

/// Why an offer to a session was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// No open session has this id.
    #[error("no open session {0}")]
    UnknownSession(i64),
}

/// A deterministic service replicated by the cluster.
///
/// Every callback runs on every node, in log order, with the cluster time of the entry; the
/// service must not read clocks, random numbers or anything else outside what it is given.
pub trait ClusteredService: Send {
    /// The service starts: from its snapshot's bytes (from [`Self::on_take_snapshot`]), or
    /// empty when there is none.
    ///
    /// # Errors
    /// The snapshot cannot be read: the node does not start.
    fn on_start(
        &mut self,
        cluster: &mut Cluster<'_>,
        snapshot: Option<&[u8]>,
    ) -> Result<(), String>;
    /// A session was opened.
    fn on_session_open(&mut self, _cluster: &mut Cluster<'_>, _session: &ClientSession) {}
    /// A session was closed (its egress can no longer be offered).
    fn on_session_close(
        &mut self,
        _cluster: &mut Cluster<'_>,
        _session: &ClientSession,
        _reason: CloseReason,
    ) {
    }
    /// A message from a session.
    fn on_session_message(&mut self, cluster: &mut Cluster<'_>, session_id: i64, payload: &[u8]);
    /// A timer it scheduled is due.
    fn on_timer(&mut self, _cluster: &mut Cluster<'_>, _correlation_id: i64) {}
    /// Its state as bytes, for a snapshot.
    fn on_take_snapshot(&mut self) -> Vec<u8>;
    /// This node's role changed (not replicated: each node sees its own).
    fn on_role_change(&mut self, _role: Role) {}
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionState {
    session: ClientSession,
    next_egress: u64,
}

/// The replicated state around the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Replicated {
    time_ns: i64,
    log_index: u64,
    next_session_id: i64,
    /// Egress messages offered so far, to any session (the last egress number).
    egress_count: u64,
    /// Messages offered to the shared output stream so far (its last sequence).
    shared_count: u64,
    sessions: BTreeMap<i64, SessionState>,
    timers: BTreeMap<i64, i64>,
}

/// What the service can do and see while a callback runs.
pub struct Cluster<'a> {
    member_id: u64,
    role: Role,
    state: &'a mut Replicated,
    out: &'a mut Vec<Output>,
}

impl Cluster<'_> {
    /// The cluster time of the entry being applied (epoch nanoseconds).
    pub fn time_ns(&self) -> i64 {
        self.state.time_ns
    }

    /// The index of the entry being applied.
    pub fn log_index(&self) -> u64 {
        self.state.log_index
    }

    /// This node's member id (differs per node: do not let it change the service's state).
    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    /// This node's role (differs per node: do not let it change the service's state).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Offer `payload` to a session. Returns the message's egress sequence.
    ///
    /// # Errors
    /// The session is not open.
    pub fn offer(&mut self, session_id: i64, payload: &[u8]) -> Result<u64, OfferError> {
        let session = self
            .state
            .sessions
            .get_mut(&session_id)
            .ok_or(OfferError::UnknownSession(session_id))?;
        let sequence = session.next_egress;
        session.next_egress += 1;
        self.state.egress_count += 1;
        self.out.push(Output::Egress(Egress {
            session_id,
            sequence,
            log_index: self.state.log_index,
            timestamp_ns: self.state.time_ns,
            number: self.state.egress_count,
            payload: payload.to_vec(),
        }));
        Ok(sequence)
    }

    /// Offer `payload` to the shared output stream: one egress stream that any number of
    /// clients follow (session id [`SHARED_SESSION_ID`] in the egress header, its own sequence
    /// 1, 2, ...), recorded on every node as a session's egress is. Returns its sequence.
    pub fn offer_shared(&mut self, payload: &[u8]) -> u64 {
        self.state.shared_count += 1;
        self.state.egress_count += 1;
        self.out.push(Output::Egress(Egress {
            session_id: SHARED_SESSION_ID,
            sequence: self.state.shared_count,
            log_index: self.state.log_index,
            timestamp_ns: self.state.time_ns,
            number: self.state.egress_count,
            payload: payload.to_vec(),
        }));
        self.state.shared_count
    }

    /// Schedule (or move) the timer `correlation_id` to fire at cluster time `deadline_ns`.
    pub fn schedule_timer(&mut self, correlation_id: i64, deadline_ns: i64) {
        self.state.timers.insert(correlation_id, deadline_ns);
    }

    /// Cancel a timer; whether it was scheduled.
    pub fn cancel_timer(&mut self, correlation_id: i64) -> bool {
        self.state.timers.remove(&correlation_id).is_some()
    }

    /// An open session.
    pub fn session(&self, session_id: i64) -> Option<&ClientSession> {
        self.state
            .sessions
            .get(&session_id)
            .map(|state| &state.session)
    }

    /// The open sessions' ids, in order.
    pub fn session_ids(&self) -> Vec<i64> {
        self.state.sessions.keys().copied().collect()
    }

    /// Close a session (it gets no more egress). Whether it was open.
    pub fn close_session(&mut self, session_id: i64) -> bool {
        match self.state.sessions.remove(&session_id) {
            Some(state) => {
                self.out.push(Output::SessionClosed {
                    session: state.session,
                    reason: CloseReason::ServiceAction,
                });
                true
            }
            None => false,
        }
    }
}

/// The service and the replicated state around it.
pub struct ServiceContainer<S> {
    service: S,
    member_id: u64,
    role: Role,
    state: Replicated,
}

impl<S: ClusteredService> std::fmt::Debug for ServiceContainer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceContainer")
            .field("member_id", &self.member_id)
            .field("role", &self.role)
            .field("log_index", &self.state.log_index)
            .field("sessions", &self.state.sessions.len())
            .finish()
    }
}

/// The version of the container's snapshot layout (3 added the shared stream's count; 2 is
/// still read).
pub const CONTAINER_SNAPSHOT_VERSION: u8 = 3;

/// The session id of the shared output stream's egress ([`Cluster::offer_shared`]): no client
/// session has it (they start at 1).
pub const SHARED_SESSION_ID: i64 = 0;

impl<S: ClusteredService> ServiceContainer<S> {
    /// A container for `service` on member `member_id`, started from a snapshot's bytes (as
    /// [`Self::snapshot`] made them) or empty.
    ///
    /// # Errors
    /// The snapshot is damaged, or the service refuses its part.
    pub fn start(
        service: S,
        member_id: u64,
        snapshot: Option<&[u8]>,
        out: &mut Vec<Output>,
    ) -> Result<Self, String> {
        let mut container = Self {
            service,
            member_id,
            role: Role::Follower,
            state: Replicated {
                next_session_id: 1,
                ..Replicated::default()
            },
        };
        let service_part = match snapshot {
            Some(bytes) => {
                let (state, service_part) = decode_container(bytes)?;
                container.state = state;
                Some(service_part)
            }
            None => None,
        };
        let mut cluster = Cluster {
            member_id,
            role: container.role,
            state: &mut container.state,
            out,
        };
        container.service.on_start(&mut cluster, service_part)?;
        Ok(container)
    }

    /// Replace the state with a snapshot's (one from the leader), the service's included.
    ///
    /// # Errors
    /// The snapshot is damaged, or the service refuses its part.
    pub fn restore(&mut self, snapshot: &[u8], out: &mut Vec<Output>) -> Result<(), String> {
        let (state, service_part) = decode_container(snapshot)?;
        self.state = state;
        let mut cluster = Cluster {
            member_id: self.member_id,
            role: self.role,
            state: &mut self.state,
            out,
        };
        self.service.on_start(&mut cluster, Some(service_part))
    }

    /// Egress messages offered so far, to any session: the last egress number.
    pub fn egress_count(&self) -> u64 {
        self.state.egress_count
    }

    /// The index of the last entry applied.
    pub fn applied_index(&self) -> u64 {
        self.state.log_index
    }

    /// The cluster time of the last entry applied.
    pub fn time_ns(&self) -> i64 {
        self.state.time_ns
    }

    /// The open sessions, in id order.
    pub fn sessions(&self) -> impl Iterator<Item = &ClientSession> {
        self.state.sessions.values().map(|state| &state.session)
    }

    /// Whether a session is open.
    pub fn has_session(&self, session_id: i64) -> bool {
        self.state.sessions.contains_key(&session_id)
    }

    /// The scheduled timers: (correlation id, deadline), in id order.
    pub fn timers(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.state
            .timers
            .iter()
            .map(|(id, deadline)| (*id, *deadline))
    }

    /// The service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// Tell the service this node's role changed.
    pub fn set_role(&mut self, role: Role) {
        if role != self.role {
            self.role = role;
            self.service.on_role_change(role);
        }
    }

    /// Apply the entry at `index` with `data` (empty: an entry with no batch, such as a new
    /// leader's). What it produces goes to `out`.
    ///
    /// # Errors
    /// The data is no batch (a corrupt entry; every node finds the same).
    pub fn apply(&mut self, index: u64, data: &[u8], out: &mut Vec<Output>) -> Result<(), String> {
        self.state.log_index = index;
        if data.is_empty() {
            return Ok(());
        }
        let batch = Batch::decode(data).map_err(|error| format!("log entry {index}: {error}"))?;
        self.state.time_ns = self.state.time_ns.max(batch.timestamp_ns);
        for command in batch.commands {
            self.apply_command(command, out);
        }
        Ok(())
    }

    fn apply_command(&mut self, command: Command, out: &mut Vec<Output>) {
        let member_id = self.member_id;
        let role = self.role;
        match command {
            Command::SessionOpen {
                correlation_id,
                response_stream_id,
                response_channel,
            } => {
                let id = self.state.next_session_id;
                self.state.next_session_id += 1;
                let session = ClientSession {
                    id,
                    response_stream_id,
                    response_channel,
                    opened_at_ns: self.state.time_ns,
                };
                self.state.sessions.insert(
                    id,
                    SessionState {
                        session: session.clone(),
                        next_egress: 1,
                    },
                );
                out.push(Output::SessionOpened {
                    correlation_id,
                    session: session.clone(),
                });
                let mut cluster = Cluster {
                    member_id,
                    role,
                    state: &mut self.state,
                    out,
                };
                self.service.on_session_open(&mut cluster, &session);
            }
            Command::SessionMessage {
                session_id,
                payload,
            } => {
                // A message that was in flight when its session closed goes nowhere, on every node.
                if self.state.sessions.contains_key(&session_id) {
                    let mut cluster = Cluster {
                        member_id,
                        role,
                        state: &mut self.state,
                        out,
                    };
                    self.service
                        .on_session_message(&mut cluster, session_id, &payload);
                }
            }
            Command::SessionClose { session_id, reason } => {
                if let Some(state) = self.state.sessions.remove(&session_id) {
                    out.push(Output::SessionClosed {
                        session: state.session.clone(),
                        reason,
                    });
                    let mut cluster = Cluster {
                        member_id,
                        role,
                        state: &mut self.state,
                        out,
                    };
                    self.service
                        .on_session_close(&mut cluster, &state.session, reason);
                }
            }
            Command::Timer {
                correlation_id,
                deadline_ns,
            } => {
                // A timer fired twice (a leader change between the two), cancelled or moved since
                // runs once, or not at all (a moved one fires at its new deadline), on every node.
                if self.state.timers.get(&correlation_id) == Some(&deadline_ns) {
                    self.state.timers.remove(&correlation_id);
                    let mut cluster = Cluster {
                        member_id,
                        role,
                        state: &mut self.state,
                        out,
                    };
                    self.service.on_timer(&mut cluster, correlation_id);
                }
            }
        }
    }

    /// The container's state and the service's, as snapshot bytes.
    pub fn snapshot(&mut self) -> Vec<u8> {
        let service = self.service.on_take_snapshot();
        encode_container(&self.state, &service)
    }
}

// Container snapshot: version u8, 7 zero bytes, time i64, log index u64, next session id i64,
// egress count u64, shared count u64 (version 3 on), session count u32, timer count u32, sessions (id i64, next egress u64, opened at i64, response
// stream id i32, channel length u32, channel), timers (correlation id i64, deadline i64), service
// length u64, service bytes.
fn encode_container(state: &Replicated, service: &[u8]) -> Vec<u8> {
    let mut out = vec![CONTAINER_SNAPSHOT_VERSION, 0, 0, 0, 0, 0, 0, 0];
    out.extend_from_slice(&state.time_ns.to_le_bytes());
    out.extend_from_slice(&state.log_index.to_le_bytes());
    out.extend_from_slice(&state.next_session_id.to_le_bytes());
    out.extend_from_slice(&state.egress_count.to_le_bytes());
    out.extend_from_slice(&state.shared_count.to_le_bytes());
    out.extend_from_slice(&(state.sessions.len() as u32).to_le_bytes());
    out.extend_from_slice(&(state.timers.len() as u32).to_le_bytes());
    for session in state.sessions.values() {
        out.extend_from_slice(&session.session.id.to_le_bytes());
        out.extend_from_slice(&session.next_egress.to_le_bytes());
        out.extend_from_slice(&session.session.opened_at_ns.to_le_bytes());
        out.extend_from_slice(&session.session.response_stream_id.to_le_bytes());
        put_bytes(&mut out, session.session.response_channel.as_bytes());
    }
    for (id, deadline) in &state.timers {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&deadline.to_le_bytes());
    }
    out.extend_from_slice(&(service.len() as u64).to_le_bytes());
    out.extend_from_slice(service);
    out
}

fn decode_container(bytes: &[u8]) -> Result<(Replicated, &[u8]), String> {
    let mut reader = Reader::new(bytes, 0, "the container snapshot");
    let version = reader.take(8)?[0];
    if !(2..=CONTAINER_SNAPSHOT_VERSION).contains(&version) {
        return Err(format!(
            "container snapshot version {version} (this build reads 2 to {CONTAINER_SNAPSHOT_VERSION})"
        ));
    }
    let mut state = Replicated {
        time_ns: reader.i64()?,
        log_index: reader.u64()?,
        next_session_id: reader.i64()?,
        egress_count: reader.u64()?,
        ..Replicated::default()
    };
    if version >= 3 {
        state.shared_count = reader.u64()?;
    }
    let sessions = reader.u32()?;
    let timers = reader.u32()?;
    for _ in 0..sessions {
        let id = reader.i64()?;
        let next_egress = reader.u64()?;
        let opened_at_ns = reader.i64()?;
        let response_stream_id = reader.i32()?;
        let channel = reader.text(usize::MAX)?;
        state.sessions.insert(
            id,
            SessionState {
                session: ClientSession {
                    id,
                    response_stream_id,
                    response_channel: channel,
                    opened_at_ns,
                },
                next_egress,
            },
        );
    }
    for _ in 0..timers {
        let id = reader.i64()?;
        let deadline = reader.i64()?;
        state.timers.insert(id, deadline);
    }
    let length = reader.u64()? as usize;
    let service = reader.take(length)?;
    reader.end()?;
    Ok((state, service))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Schedules timer 1 at the deadline each message names; counts firings.
    #[derive(Default)]
    struct Moving {
        fired: Vec<i64>,
    }

    impl ClusteredService for Moving {
        fn on_start(&mut self, _: &mut Cluster<'_>, _: Option<&[u8]>) -> Result<(), String> {
            Ok(())
        }
        fn on_session_message(&mut self, cluster: &mut Cluster<'_>, _: i64, payload: &[u8]) {
            let deadline = i64::from_le_bytes(payload.try_into().expect("8 bytes"));
            cluster.schedule_timer(1, deadline);
        }
        fn on_timer(&mut self, cluster: &mut Cluster<'_>, _: i64) {
            self.fired.push(cluster.time_ns());
        }
        fn on_take_snapshot(&mut self) -> Vec<u8> {
            Vec::new()
        }
    }

    fn batch(timestamp_ns: i64, commands: Vec<Command>) -> Vec<u8> {
        Batch {
            timestamp_ns,
            commands,
        }
        .encode()
    }

    #[test]
    fn a_timer_moved_after_it_was_proposed_fires_at_its_new_deadline_only() {
        let mut out = Vec::new();
        let mut container =
            ServiceContainer::start(Moving::default(), 1, None, &mut out).expect("start");
        let open = Command::SessionOpen {
            correlation_id: 1,
            response_stream_id: 102,
            response_channel: "aeron:ipc".into(),
        };
        let schedule = |deadline: i64| Command::SessionMessage {
            session_id: 1,
            payload: deadline.to_le_bytes().to_vec(),
        };
        container
            .apply(1, &batch(10, vec![open, schedule(100)]), &mut out)
            .expect("apply");
        // The leader proposed the firing at 100; the timer moved to 500 before it applied.
        container
            .apply(2, &batch(100, vec![schedule(500)]), &mut out)
            .expect("apply");
        let fire = |deadline_ns| Command::Timer {
            correlation_id: 1,
            deadline_ns,
        };
        container
            .apply(3, &batch(101, vec![fire(100)]), &mut out)
            .expect("apply");
        assert!(
            container.service().fired.is_empty(),
            "fired at its old deadline"
        );
        container
            .apply(4, &batch(500, vec![fire(500), fire(500)]), &mut out)
            .expect("apply");
        assert_eq!(
            container.service().fired,
            vec![500],
            "once, at the new deadline"
        );
        assert_eq!(container.timers().count(), 0);
    }

    #[test]
    fn the_shared_stream_has_its_own_sequence_kept_in_snapshots_and_version_2_is_still_read() {
        let mut out = Vec::new();
        let mut container =
            ServiceContainer::start(crate::KvService::new(), 1, None, &mut out).expect("start");
        let open = Command::SessionOpen {
            correlation_id: 1,
            response_stream_id: 102,
            response_channel: "aeron:ipc".into(),
        };
        let message = |text: &str| Command::SessionMessage {
            session_id: 1,
            payload: text.as_bytes().to_vec(),
        };
        container
            .apply(
                1,
                &batch(
                    10,
                    vec![open, message("pub a"), message("put k v"), message("pub b")],
                ),
                &mut out,
            )
            .expect("apply");
        let egress = |out: &[Output]| -> Vec<(i64, u64, u64, Vec<u8>)> {
            out.iter()
                .filter_map(|output| match output {
                    Output::Egress(egress) => Some((
                        egress.session_id,
                        egress.sequence,
                        egress.number,
                        egress.payload.clone(),
                    )),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(
            egress(&out),
            vec![
                (SHARED_SESSION_ID, 1, 1, b"a".to_vec()),
                (1, 1, 2, b"published 1".to_vec()),
                (1, 2, 3, b"ok k".to_vec()),
                (SHARED_SESSION_ID, 2, 4, b"b".to_vec()),
                (1, 3, 5, b"published 2".to_vec()),
            ]
        );
        // A node started from the snapshot goes on with the shared stream's sequence.
        let snapshot = container.snapshot();
        assert_eq!(snapshot[0], 3);
        let mut out = Vec::new();
        let mut restarted =
            ServiceContainer::start(crate::KvService::new(), 2, Some(&snapshot), &mut out)
                .expect("start from the snapshot");
        restarted
            .apply(2, &batch(20, vec![message("pub c")]), &mut out)
            .expect("apply");
        assert_eq!(egress(&out)[0], (SHARED_SESSION_ID, 3, 6, b"c".to_vec()));
        // Version 2 (no shared count) is read: the shared stream starts at 1.
        let mut version_2 = snapshot.clone();
        version_2[0] = 2;
        version_2.drain(40..48);
        let mut out = Vec::new();
        let mut old =
            ServiceContainer::start(crate::KvService::new(), 3, Some(&version_2), &mut out)
                .expect("start from a version 2 snapshot");
        assert_eq!(old.egress_count(), 5);
        old.apply(2, &batch(20, vec![message("pub c")]), &mut out)
            .expect("apply");
        assert_eq!(egress(&out)[0], (SHARED_SESSION_ID, 1, 6, b"c".to_vec()));
        version_2[0] = 4;
        assert!(ServiceContainer::start(
            crate::KvService::new(),
            3,
            Some(&version_2),
            &mut Vec::new()
        )
        .expect_err("version 4")
        .contains("version 4"));
    }
}
