//! One cluster member's consensus and service, sans I/O: it takes the time ([`Now`]), peer
//! messages and client ingress, and gives back [`Action`]s (messages to peers, what applying
//! produced). Files are reached only through its [`NodeStorage`] (on the [`Io`] it was given);
//! the network and the clocks are the caller's. The node process (over Aeron) and the simulation
//! drive the same type.
//!
//! Two clocks: a monotonic one for everything measured between two moments of this process
//! (Raft ticks, session timeouts), and the wall clock only for the cluster time the leader
//! stamps on each batch (never going back: the stamp is the wall clock or the last stamp,
//! whichever is later), so a wall-clock step neither stops ticks nor times every session out.
//!
//! What goes through the log: session opens and closes, every ingress message and due timers,
//! batched by the leader into one entry per duty cycle and stamped with its cluster time, so
//! applying is deterministic. Keep-alives and session timeouts are the leader's (a timeout is
//! logged as a close); a new leader starts every session's timeout afresh.

use crate::command::{Batch, CloseReason, Command};
use crate::egress::EgressRecording;
use crate::error::{ClusterError, Result};
use crate::log::LogConfig;
use crate::service::{ClusteredService, Output, Role, ServiceContainer};
use crate::storage::{NodeStorage, Opened};
use crate::wire;
use raft::prelude::{Entry, EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tern_store::Io;

/// The time a node works at: both clocks, read once per duty cycle by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic nanoseconds (any origin, never going back while the node lives): Raft ticks
    /// and session timeouts.
    pub monotonic_ns: i64,
    /// Wall-clock nanoseconds since the Unix epoch: only the leader's batch stamp (cluster time,
    /// against which the service's timers are due).
    pub wall_ns: i64,
}

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This member's id (1..).
    pub member_id: u64,
    /// Every member's id, this one's included (3 or 5; 1 for a single-node cluster).
    pub members: Vec<u64>,
    /// The node's directory (state file, snapshots, `log/`).
    pub dir: PathBuf,
    /// The log's files.
    pub log: LogConfig,
    /// Nanoseconds per Raft tick.
    pub tick_ns: i64,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_ticks: usize,
    /// A follower's election timeout, in ticks, is drawn from `min..max` after each reset.
    pub min_election_ticks: usize,
    /// See [`Self::min_election_ticks`] (exclusive).
    pub max_election_ticks: usize,
    /// A session with no message or keep-alive for this long is closed by the leader.
    pub session_timeout_ns: i64,
    /// The largest ingress message payload.
    pub max_message_length: usize,
    /// The largest batch (one log entry) the leader builds.
    pub max_batch_length: usize,
    /// Take a snapshot after this many applied entries (0: only when asked).
    pub snapshot_every: u64,
    /// Record the egress the service produces in `<dir>/egress` (on by default; off only to
    /// measure what recording costs: clients then cannot resume their egress from this member).
    pub record_egress: bool,
    /// Sync the egress recording at least this often while it takes messages (it is always
    /// synced before a snapshot lets the log go; until then the log holds what it lost).
    pub egress_sync_interval_ns: i64,
    /// Credentials a client must present to connect (None: anyone may).
    pub credentials: Option<Vec<u8>>,
    /// The cluster's id, in every consensus message: one of another cluster (on the same ports,
    /// say) is refused ([`ClusterError::OtherCluster`]).
    pub cluster_id: u64,
    /// The longest consensus message sent as one transport message; a Raft message whose
    /// encoding is longer (a snapshot, a long append) goes in chunks no longer than this, put
    /// together again by the receiver. At most the transport's maximum message (the node agent
    /// lowers it to that: [`Self::fit_peer_transport`]), at least
    /// [`wire::MIN_PEER_MESSAGE_LENGTH`].
    pub max_peer_message_length: usize,
}

impl NodeConfig {
    /// LAN defaults for member `member_id` of `members`, in `dir`: 10 ms ticks, heartbeats every
    /// 20 ms, elections after 200 to 400 ms, sessions timing out after 10 s, messages up to
    /// 512 KiB, batches (log entries) up to 1 MiB, consensus messages over 1 MiB in chunks (Aeron
    /// takes messages up to an eighth of its term: 2 MiB with its default 16 MiB terms), cluster
    /// id 0.
    pub fn new(member_id: u64, members: Vec<u64>, dir: PathBuf) -> Self {
        Self {
            member_id,
            members,
            dir,
            log: LogConfig::default(),
            tick_ns: 10_000_000,
            heartbeat_ticks: 2,
            min_election_ticks: 20,
            max_election_ticks: 40,
            session_timeout_ns: 10_000_000_000,
            max_message_length: 512 << 10,
            max_batch_length: 1 << 20,
            snapshot_every: 1_000_000,
            record_egress: true,
            egress_sync_interval_ns: 100_000_000,
            credentials: None,
            cluster_id: 0,
            max_peer_message_length: 1 << 20,
        }
    }

    /// Fit [`Self::max_peer_message_length`] to a transport whose messages are at most
    /// `transport_max` bytes: lowered to it when above. Whether it was lowered.
    ///
    /// # Errors
    /// The transport's messages are too short to carry a chunk of a consensus message.
    pub fn fit_peer_transport(&mut self, transport_max: usize) -> Result<bool> {
        if transport_max < wire::MIN_PEER_MESSAGE_LENGTH {
            return Err(ClusterError::Config(format!(
                "the consensus transport takes messages of at most {transport_max} bytes, too short for a chunk of a snapshot (at least {})",
                wire::MIN_PEER_MESSAGE_LENGTH
            )));
        }
        let lowered = self.max_peer_message_length > transport_max;
        self.max_peer_message_length = self.max_peer_message_length.min(transport_max);
        Ok(lowered)
    }

    fn check(&self) -> Result<()> {
        let problem = if !self.members.contains(&self.member_id) {
            Some(format!(
                "member id {} is not one of the members {:?}",
                self.member_id, self.members
            ))
        } else if self.members.contains(&0) {
            Some("member ids start at 1".into())
        } else if self.members.len() > crate::state::MAX_MEMBERS {
            Some(format!(
                "{} members (at most {})",
                self.members.len(),
                crate::state::MAX_MEMBERS
            ))
        } else if self.min_election_ticks <= self.heartbeat_ticks
            || self.max_election_ticks <= self.min_election_ticks
        {
            Some(format!(
                "election ticks {}..{} must be above the heartbeat's {}",
                self.min_election_ticks, self.max_election_ticks, self.heartbeat_ticks
            ))
        } else if !(wire::MIN_PEER_MESSAGE_LENGTH..=wire::MAX_CHUNKED_LENGTH)
            .contains(&self.max_peer_message_length)
        {
            Some(format!(
                "a maximum peer message of {} bytes (a snapshot goes in chunks of that, headers included: {}..={})",
                self.max_peer_message_length,
                wire::MIN_PEER_MESSAGE_LENGTH,
                wire::MAX_CHUNKED_LENGTH
            ))
        } else if self.tick_ns <= 0 {
            Some("the tick must be positive".into())
        } else if self.max_batch_length > self.log.max_entry_length()
            || self.max_message_length + 64 > self.max_batch_length
        {
            Some(format!(
                "a message of {} bytes must fit a batch of {}, and the batch a log frame of {}",
                self.max_message_length,
                self.max_batch_length,
                self.log.max_entry_length()
            ))
        } else {
            None
        };
        problem.map_or(Ok(()), |problem| Err(ClusterError::Config(problem)))
    }
}

/// What a client asks of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingress {
    /// Open a session.
    Connect {
        /// Echoed in the session event.
        correlation_id: i64,
        /// Where the client reads egress.
        response_stream_id: i32,
        /// The client's egress channel.
        response_channel: String,
        /// What the cluster's credentials are checked against.
        credentials: Vec<u8>,
    },
    /// A message to the service.
    Message {
        /// The client's session.
        session_id: i64,
        /// The message.
        payload: Vec<u8>,
    },
    /// The client is alive.
    KeepAlive {
        /// The client's session.
        session_id: i64,
    },
    /// Close the session.
    Close {
        /// The client's session.
        session_id: i64,
    },
}

impl Ingress {
    /// The session it names (0 for a connect, which has none yet).
    pub fn session_id(&self) -> i64 {
        match self {
            Self::Connect { .. } => 0,
            Self::Message { session_id, .. }
            | Self::KeepAlive { session_id }
            | Self::Close { session_id } => *session_id,
        }
    }
}

/// The node's immediate answer to ingress (what it produces once applied comes as an
/// [`Action::Applied`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressReply {
    /// Taken: it goes into the log (a message is not acknowledged until it is applied).
    Accepted,
    /// This node is not the leader; `leader` is the one it knows.
    NotLeader {
        /// The leader's member id, if known.
        leader: Option<u64>,
    },
    /// Refused, and why (unknown session, too long, bad credentials).
    Rejected(String),
}

/// Something the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `bytes` (a [`wire`] consensus message: a Raft message, or one chunk of one) to member
    /// `to`, as one transport message.
    Peer {
        /// The member.
        to: u64,
        /// The encoded message.
        bytes: Vec<u8>,
    },
    /// Applying the entry at `log_index` produced `output` (on every node; only a leader sends
    /// it to clients, `leader` says whether this node was the leader then).
    Applied {
        /// What it produced.
        output: Output,
        /// Whether this node leads.
        leader: bool,
    },
    /// The node's role or its leader changed.
    RoleChanged {
        /// The role now.
        role: Role,
        /// The leader known now.
        leader: Option<u64>,
        /// The term.
        term: u64,
    },
}

/// What `tern cluster status` shows of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The member id.
    pub member_id: u64,
    /// Its role.
    pub role: Role,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// The Raft term.
    pub term: u64,
    /// The highest index known committed.
    pub commit_index: u64,
    /// The last index applied to the service.
    pub applied_index: u64,
    /// The log's last index.
    pub last_index: u64,
    /// The last snapshot's index.
    pub snapshot_index: u64,
    /// Open sessions.
    pub sessions: usize,
    /// The log's end position in its files.
    pub log_position: i64,
    /// The cluster time of the last entry applied.
    pub cluster_time_ns: i64,
    /// The egress number of the last message in this node's egress recording.
    pub egress_recorded: u64,
    /// The egress number of the last message known on disk in it (synced).
    pub egress_synced: u64,
}

/// One member: Raft and the service container.
pub struct ConsensusNode<S: ClusteredService> {
    config: NodeConfig,
    raw: RawNode<NodeStorage>,
    container: ServiceContainer<S>,
    pending: Vec<Command>,
    next_tick_ns: i64,
    last_stamp_ns: i64,
    role: Role,
    leader: Option<u64>,
    /// Leader only: each session's last activity.
    activity: BTreeMap<i64, i64>,
    /// Leader only: sessions whose close is in the log's hands.
    closing: BTreeMap<i64, CloseReason>,
    /// Leader only: connects in the log's hands, by correlation id and channel (a client that
    /// asks again before the answer comes gets one session, not two).
    connecting: BTreeSet<(i64, String)>,
    /// Leader only: timers whose firing was proposed, with the deadline proposed.
    timers_proposed: BTreeMap<i64, i64>,
    outputs: Vec<Output>,
    /// Proposals raft dropped (no leader, or leadership lost on the way).
    dropped: u64,
    /// Members a snapshot was sent to in this cycle.
    snapshots_sent: Vec<u64>,
    /// The egress this node's service produced, recorded (unless the config says not to).
    egress: Option<EgressRecording>,
    /// Egress was appended since the last flush.
    egress_appended: bool,
    /// When the egress recording is synced next, if it took messages.
    next_egress_sync_ns: i64,
    /// When appended egress is handed to the files next.
    next_egress_flush_ns: i64,
    /// Peers' requests for egress frames, answered in the duty cycle.
    egress_fetches: Vec<wire::EgressFetch>,
    /// When this node, its egress recording behind a snapshot it installed, asks a peer next.
    next_egress_fetch_ns: i64,
    /// Which peer it asks next (when the leader is unknown or is this node).
    egress_fetch_turn: usize,
    /// Peers' messages coming in chunks.
    reassembly: wire::Reassembly,
    /// The id of the next message sent in chunks.
    next_message_id: u64,
    /// Messages sent in chunks.
    chunked_sent: u64,
    /// Messages too long to send even in chunks.
    unsendable: u64,
}

/// What a node did with consensus messages in chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Raft messages this node sent in chunks (longer than its maximum peer message).
    pub chunked_sent: u64,
    /// Raft messages too long to send even in chunks (dropped; see
    /// [`wire::MAX_CHUNKED_LENGTH`]).
    pub unsendable: u64,
    /// What came in in chunks: messages put together, incomplete ones given up, duplicates.
    pub received: wire::ReassemblyCounts,
}

impl<S: ClusteredService> std::fmt::Debug for ConsensusNode<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsensusNode")
            .field("status", &self.status())
            .finish()
    }
}

/// Appended egress goes to the files at most this often.
const EGRESS_FLUSH_INTERVAL_NS: i64 = 1_000_000;

/// A request for egress frames not answered in this long is sent again (to the next peer when
/// there is no leader).
const EGRESS_FETCH_RETRY_NS: i64 = 50_000_000;

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl<S: ClusteredService> ConsensusNode<S> {
    /// Start member `config.member_id` from its directory (a new one if empty) at `now`.
    ///
    /// # Errors
    /// The config cannot work, a file is damaged or unreadable, or the service refuses its
    /// snapshot.
    pub fn open(config: NodeConfig, io: Io, service: S, now: Now) -> Result<Self> {
        let monotonic_ns = now.monotonic_ns;
        config.check()?;
        let Opened {
            storage, snapshot, ..
        } = NodeStorage::open(io.clone(), &config.dir, config.log, &config.members)?;
        let mut egress = None;
        if config.record_egress {
            let (recording, recovered) =
                EgressRecording::open(io, &config.dir, config.log, config.member_id)?;
            if let Some(damage) = &recovered.damage {
                tracing::warn!(
                    "member {}: the egress recording's torn tail was cut: {damage}",
                    config.member_id
                );
            }
            egress = Some(recording);
        }
        let applied = storage.state().snapshot_index;
        let mut outputs = Vec::new();
        let container =
            ServiceContainer::start(service, config.member_id, snapshot.as_deref(), &mut outputs)
                .map_err(|reason| ClusterError::CorruptState {
                path: config.dir.clone(),
                reason: format!("the service refused its snapshot: {reason}"),
            })?;
        let raft_config = raft::Config {
            id: config.member_id,
            election_tick: config.min_election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            min_election_tick: config.min_election_ticks,
            max_election_tick: config.max_election_ticks,
            applied,
            max_size_per_msg: (config.max_batch_length as u64).max(1 << 20),
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        let raw = RawNode::new(&raft_config, storage, &logger())?;
        if let Some(egress) = egress.as_mut() {
            // Behind the snapshot (one installed from a leader, then a crash): a peer has the rest.
            egress.catch_up_to(container.egress_count());
        }
        let config_egress_sync = config.egress_sync_interval_ns;
        Ok(Self {
            next_tick_ns: monotonic_ns + config.tick_ns,
            config,
            raw,
            container,
            pending: Vec::new(),
            last_stamp_ns: 0,
            role: Role::Follower,
            leader: None,
            activity: BTreeMap::new(),
            closing: BTreeMap::new(),
            connecting: BTreeSet::new(),
            timers_proposed: BTreeMap::new(),
            outputs,
            dropped: 0,
            snapshots_sent: Vec::new(),
            egress,
            egress_appended: false,
            next_egress_sync_ns: monotonic_ns + config_egress_sync,
            next_egress_flush_ns: monotonic_ns,
            egress_fetches: Vec::new(),
            next_egress_fetch_ns: monotonic_ns,
            egress_fetch_turn: 0,
            reassembly: wire::Reassembly::new(),
            // A restarted sender starts elsewhere than before (the wall clock went on), so a
            // receiver does not take its first chunks for a message it put together already.
            next_message_id: now.wall_ns as u64,
            chunked_sent: 0,
            unsendable: 0,
        })
    }

    /// The member id.
    pub fn member_id(&self) -> u64 {
        self.config.member_id
    }

    /// The config it runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The service container (the service and the sessions).
    pub fn container(&self) -> &ServiceContainer<S> {
        &self.container
    }

    /// The role now.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader this node knows.
    pub fn leader(&self) -> Option<u64> {
        self.leader
    }

    /// Proposals dropped so far (their clients got no reply and may send again).
    pub fn dropped_proposals(&self) -> u64 {
        self.dropped
    }

    /// What the node did with consensus messages in chunks.
    pub fn peer_counts(&self) -> PeerCounts {
        PeerCounts {
            chunked_sent: self.chunked_sent,
            unsendable: self.unsendable,
            received: self.reassembly.counts(),
        }
    }

    /// The node's consensus storage (its log and state).
    pub fn storage(&self) -> &NodeStorage {
        self.raw.store()
    }

    /// The node's status.
    pub fn status(&self) -> NodeStatus {
        let raft = &self.raw.raft;
        let storage = self.raw.store();
        NodeStatus {
            member_id: self.config.member_id,
            role: self.role,
            leader: self.leader,
            term: raft.term,
            commit_index: raft.raft_log.committed,
            applied_index: self.container.applied_index(),
            last_index: raft.raft_log.last_index(),
            snapshot_index: storage.state().snapshot_index,
            sessions: self.container.sessions().count(),
            log_position: storage.log().end_position(),
            cluster_time_ns: self.container.time_ns(),
            egress_recorded: self.egress.as_ref().map_or(0, EgressRecording::last_number),
            egress_synced: self
                .egress
                .as_ref()
                .map_or(0, EgressRecording::synced_number),
        }
    }

    fn check_peers(&self, from: u64, to: u64) -> Result<()> {
        if from == self.config.member_id || !self.config.members.contains(&from) {
            return Err(ClusterError::Peer(format!(
                "a consensus message from {from}, not a member (members {:?})",
                self.config.members
            )));
        }
        if to != self.config.member_id {
            return Err(ClusterError::Peer(format!(
                "a consensus message for member {to} reached member {}",
                self.config.member_id
            )));
        }
        Ok(())
    }

    /// Take in a consensus message from a peer (a chunk of one: the message once its last chunk
    /// came).
    ///
    /// # Errors
    /// The bytes are no message ([`ClusterError::Peer`]), are another cluster's
    /// ([`ClusterError::OtherCluster`]), or it is not from another member to this one.
    pub fn on_peer(&mut self, bytes: &[u8]) -> Result<()> {
        let message = match wire::decode(self.config.cluster_id, bytes)? {
            wire::Frame::Raft(message) => message,
            wire::Frame::EgressFetch(fetch) => {
                self.check_peers(fetch.from, fetch.to)?;
                // Answered in the duty cycle; one asked again replaces the one before.
                self.egress_fetches
                    .retain(|queued| queued.from != fetch.from);
                self.egress_fetches.push(fetch);
                return Ok(());
            }
            wire::Frame::EgressFrames(frames) => {
                self.check_peers(frames.from, frames.to)?;
                return self.on_egress_frames(&frames);
            }
            wire::Frame::Chunk(chunk) => {
                // Only members' chunks are kept: one message in progress per member.
                self.check_peers(chunk.from, chunk.to)?;
                match self.reassembly.add(&chunk)? {
                    Some(message) => message,
                    None => return Ok(()),
                }
            }
        };
        self.check_peers(message.from, message.to)?;
        if raft::raw_node::is_local_msg(message.get_msg_type()) {
            return Err(ClusterError::Peer(format!(
                "a local raft message ({:?}) from member {}",
                message.get_msg_type(),
                message.from
            )));
        }
        if message.get_msg_type() == MessageType::MsgHeartbeat
            && message.commit > self.raw.raft.raft_log.last_index()
        {
            // A leader never tells a follower of a commit past what the follower acknowledged:
            // this is a stray packet (another cluster on these ports, a member whose directory
            // was wiped), and raft-rs would abort on it.
            return Err(ClusterError::Peer(format!(
                "a heartbeat from member {} commits index {} past this log's last {}",
                message.from,
                message.commit,
                self.raw.raft.raft_log.last_index()
            )));
        }
        self.raw.step(message)?;
        Ok(())
    }

    /// Take in a client's request at monotonic time `monotonic_ns` (see [`Now::monotonic_ns`]:
    /// a message or keep-alive renews its session's timeout).
    pub fn on_ingress(&mut self, monotonic_ns: i64, ingress: Ingress) -> IngressReply {
        if self.role != Role::Leader {
            return IngressReply::NotLeader {
                leader: self.leader,
            };
        }
        let command = match ingress {
            Ingress::Connect {
                correlation_id,
                response_stream_id,
                response_channel,
                credentials,
            } => {
                if let Some(expected) = &self.config.credentials {
                    if *expected != credentials {
                        return IngressReply::Rejected("authentication failed".into());
                    }
                }
                if response_channel.len() > 4096 {
                    return IngressReply::Rejected(format!(
                        "a response channel of {} bytes (at most 4096)",
                        response_channel.len()
                    ));
                }
                let key = (correlation_id, response_channel.clone());
                if !self.connecting.insert(key) {
                    return IngressReply::Accepted;
                }
                Command::SessionOpen {
                    correlation_id,
                    response_stream_id,
                    response_channel,
                }
            }
            Ingress::Message {
                session_id,
                payload,
            } => {
                if let Some(reply) = self.check_session(session_id) {
                    return reply;
                }
                if payload.len() > self.config.max_message_length {
                    return IngressReply::Rejected(format!(
                        "a message of {} bytes (at most {})",
                        payload.len(),
                        self.config.max_message_length
                    ));
                }
                self.activity.insert(session_id, monotonic_ns);
                Command::SessionMessage {
                    session_id,
                    payload,
                }
            }
            Ingress::KeepAlive { session_id } => {
                if let Some(reply) = self.check_session(session_id) {
                    return reply;
                }
                self.activity.insert(session_id, monotonic_ns);
                return IngressReply::Accepted;
            }
            Ingress::Close { session_id } => {
                if let Some(reply) = self.check_session(session_id) {
                    return reply;
                }
                self.closing.insert(session_id, CloseReason::ClientAction);
                Command::SessionClose {
                    session_id,
                    reason: CloseReason::ClientAction,
                }
            }
        };
        self.queue(command);
        IngressReply::Accepted
    }

    fn check_session(&self, session_id: i64) -> Option<IngressReply> {
        if !self.container.has_session(session_id) || self.closing.contains_key(&session_id) {
            return Some(IngressReply::Rejected(format!(
                "unknown session {session_id}"
            )));
        }
        None
    }

    fn queue(&mut self, command: Command) {
        self.pending.push(command);
    }

    /// One duty cycle at `now`: ticks, the leader's timeouts and timers, proposals, and what
    /// Raft has ready (persisted before anything that acknowledges it is sent). Returns how much
    /// work was done (0: idle).
    ///
    /// # Errors
    /// The log or state file could not be written (the node must stop: nothing unsynced was
    /// acknowledged), or a committed entry is damaged.
    pub fn do_work(&mut self, now: Now, actions: &mut Vec<Action>) -> Result<usize> {
        let mut work = 0;
        let monotonic_ns = now.monotonic_ns;
        if monotonic_ns - self.next_tick_ns > 10 * self.config.tick_ns {
            // Paused (a stopped process, a slow disk): do not fire a burst of ticks.
            self.next_tick_ns = monotonic_ns;
        }
        while monotonic_ns >= self.next_tick_ns {
            self.raw.tick();
            self.next_tick_ns += self.config.tick_ns;
            work += 1;
        }
        if self.role == Role::Leader {
            // The cluster time a batch proposed now gets: timers are due against it.
            let stamp = now.wall_ns.max(self.last_stamp_ns);
            self.leader_duties(monotonic_ns, stamp);
            work += self.propose(stamp);
        }
        work += self.on_ready(monotonic_ns, actions)?;
        work += self.egress_duties(monotonic_ns)?;
        work += self.egress_copies(monotonic_ns, actions);
        self.maybe_snapshot()?;
        Ok(work)
    }

    fn leader_duties(&mut self, monotonic_ns: i64, cluster_time_ns: i64) {
        let timeout = self.config.session_timeout_ns;
        let expired: Vec<i64> = self
            .activity
            .iter()
            .filter(|(id, last)| monotonic_ns - **last > timeout && !self.closing.contains_key(id))
            .map(|(id, _)| *id)
            .collect();
        for session_id in expired {
            self.closing.insert(session_id, CloseReason::Timeout);
            self.queue(Command::SessionClose {
                session_id,
                reason: CloseReason::Timeout,
            });
        }
        let due: Vec<(i64, i64)> = self
            .container
            .timers()
            .filter(|(id, deadline)| {
                *deadline <= cluster_time_ns && self.timers_proposed.get(id) != Some(deadline)
            })
            .collect();
        for (correlation_id, deadline) in due {
            self.timers_proposed.insert(correlation_id, deadline);
            self.queue(Command::Timer {
                correlation_id,
                deadline_ns: deadline,
            });
        }
    }

    /// Propose the pending commands in batches stamped `stamp` (cluster time, not before the
    /// last stamp).
    fn propose(&mut self, stamp: i64) -> usize {
        if self.pending.is_empty() {
            return 0;
        }
        self.last_stamp_ns = stamp;
        let mut proposed = 0;
        let mut commands = std::mem::take(&mut self.pending).into_iter().peekable();
        while commands.peek().is_some() {
            let mut batch = Batch {
                timestamp_ns: stamp,
                commands: Vec::new(),
            };
            let mut length = crate::command::BATCH_HEADER_LENGTH;
            while let Some(command) = commands.peek() {
                let next = command.encoded_length();
                if !batch.commands.is_empty()
                    && (length + next > self.config.max_batch_length
                        || batch.commands.len() == usize::from(u16::MAX))
                {
                    break;
                }
                length += next;
                batch.commands.push(commands.next().expect("peeked"));
            }
            if self.raw.propose(Vec::new(), batch.encode()).is_err() {
                self.dropped += 1;
            }
            proposed += 1;
        }
        proposed
    }

    fn send(&mut self, messages: Vec<Message>, actions: &mut Vec<Action>) {
        for message in messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.push(message.to);
            }
            let frames = wire::encode_frames(
                self.config.cluster_id,
                &message,
                self.config.max_peer_message_length,
                self.next_message_id,
            );
            let Ok(frames) = frames else {
                // No member would take it: dropped like a lost message (counted).
                self.unsendable += 1;
                continue;
            };
            if frames.len() > 1 {
                self.next_message_id = self.next_message_id.wrapping_add(1);
                self.chunked_sent += 1;
            }
            actions.extend(frames.into_iter().map(|bytes| Action::Peer {
                to: message.to,
                bytes,
            }));
        }
    }

    fn on_ready(&mut self, monotonic_ns: i64, actions: &mut Vec<Action>) -> Result<usize> {
        if !self.raw.has_ready() {
            return Ok(0);
        }
        let mut ready = self.raw.ready();
        if let Some(soft) = ready.ss() {
            let role = match soft.raft_state {
                StateRole::Leader => Role::Leader,
                StateRole::Candidate | StateRole::PreCandidate => Role::Candidate,
                StateRole::Follower => Role::Follower,
            };
            let leader = (soft.leader_id != raft::INVALID_ID).then_some(soft.leader_id);
            self.change_role(monotonic_ns, role, leader, actions);
        }
        self.send(ready.take_messages(), actions);
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.raw.mut_store().install(&snapshot)?;
            let mut outputs = std::mem::take(&mut self.outputs);
            self.container
                .restore(&snapshot.data, &mut outputs)
                .map_err(|reason| ClusterError::CorruptState {
                    path: self.config.dir.clone(),
                    reason: format!("the leader's snapshot: {reason}"),
                })?;
            outputs.clear();
            self.outputs = outputs;
            if let Some(egress) = self.egress.as_mut() {
                egress.catch_up_to(self.container.egress_count());
            }
        }
        let committed = ready.take_committed_entries();
        self.apply(monotonic_ns, &committed, actions)?;
        let hard_state = ready.hs().cloned();
        self.raw
            .mut_store()
            .persist(ready.entries(), hard_state.as_ref())?;
        self.send(ready.take_persisted_messages(), actions);
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        self.send(light.take_messages(), actions);
        let committed = light.take_committed_entries();
        self.apply(monotonic_ns, &committed, actions)?;
        self.raw.advance_apply();
        // A snapshot handed to the network counts as delivered: the follower's next answer (or
        // its silence, then a probe) tells whether it arrived, and another goes when it did not.
        // Raft would otherwise wait for it forever when the network lost it.
        for to in std::mem::take(&mut self.snapshots_sent) {
            self.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
        Ok(1)
    }

    fn change_role(
        &mut self,
        monotonic_ns: i64,
        role: Role,
        leader: Option<u64>,
        actions: &mut Vec<Action>,
    ) {
        if role == self.role && leader == self.leader {
            return;
        }
        if role == Role::Leader && self.role != Role::Leader {
            // Every session's timeout starts afresh with a new leader.
            self.activity = self
                .container
                .sessions()
                .map(|session| (session.id, monotonic_ns))
                .collect();
            self.closing.clear();
            self.connecting.clear();
            self.timers_proposed.clear();
            self.last_stamp_ns = self.last_stamp_ns.max(self.container.time_ns());
        }
        if role != Role::Leader {
            // Not in the log: never acknowledged; their clients send again.
            self.dropped += self.pending.len() as u64;
            self.pending.clear();
            self.activity.clear();
            self.closing.clear();
            self.connecting.clear();
            self.timers_proposed.clear();
        }
        self.role = role;
        self.leader = leader;
        self.container.set_role(role);
        actions.push(Action::RoleChanged {
            role,
            leader,
            term: self.raw.raft.term,
        });
    }

    fn apply(
        &mut self,
        monotonic_ns: i64,
        entries: &[Entry],
        actions: &mut Vec<Action>,
    ) -> Result<()> {
        let leader = self.role == Role::Leader;
        for entry in entries {
            if entry.index <= self.container.applied_index() {
                continue;
            }
            let data: &[u8] = match entry.get_entry_type() {
                EntryType::EntryNormal => &entry.data,
                // Membership is static: a conf change entry carries nothing to apply.
                EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => &[],
            };
            let mut outputs = std::mem::take(&mut self.outputs);
            let result = self.container.apply(entry.index, data, &mut outputs);
            for output in outputs.drain(..) {
                if leader {
                    match &output {
                        Output::SessionOpened {
                            correlation_id,
                            session,
                        } => {
                            self.activity.insert(session.id, monotonic_ns);
                            self.connecting
                                .remove(&(*correlation_id, session.response_channel.clone()));
                        }
                        Output::SessionClosed { session, .. } => {
                            self.activity.remove(&session.id);
                            self.closing.remove(&session.id);
                        }
                        Output::Egress(_) => {}
                    }
                }
                if let Output::Egress(egress) = &output {
                    if let Some(recording) = self.egress.as_mut() {
                        self.egress_appended |= recording.append(egress)?;
                    }
                }
                actions.push(Action::Applied { output, leader });
            }
            self.outputs = outputs;
            result.map_err(|reason| ClusterError::BadEntry {
                index: entry.index,
                reason,
            })?;
        }
        if leader {
            let timers: BTreeMap<i64, i64> = self.container.timers().collect();
            self.timers_proposed
                .retain(|id, deadline| timers.get(id) == Some(deadline));
        }
        Ok(())
    }

    fn maybe_snapshot(&mut self) -> Result<()> {
        let every = self.config.snapshot_every;
        let applied = self.container.applied_index();
        if every > 0 && applied >= self.raw.store().state().snapshot_index + every {
            self.take_snapshot()?;
        }
        Ok(())
    }

    /// Snapshot the service at the applied index and drop the log before it. Returns the
    /// snapshot's index.
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn take_snapshot(&mut self) -> Result<u64> {
        let applied = self.container.applied_index();
        if applied == 0 || applied == self.raw.store().state().snapshot_index {
            return Ok(self.raw.store().state().snapshot_index);
        }
        let term = raft::Storage::term(self.raw.store(), applied)?;
        let data = self.container.snapshot();
        // The egress up to the snapshot on disk before the log that would make it again goes.
        if let Some(egress) = self.egress.as_mut() {
            egress.sync()?;
        }
        self.raw.mut_store().save_snapshot(applied, term, &data)?;
        Ok(applied)
    }

    /// Store the commit index (a clean stop).
    ///
    /// # Errors
    /// The state file cannot be written.
    pub fn close(mut self) -> Result<()> {
        self.raw.mut_store().flush_state()?;
        self.egress.map_or(Ok(()), EgressRecording::close)
    }

    /// This node's egress recording (none with [`NodeConfig::record_egress`] off).
    pub fn egress(&self) -> Option<&EgressRecording> {
        self.egress.as_ref()
    }

    /// Frames a peer sent for this node's egress recording, behind a snapshot it installed.
    fn on_egress_frames(&mut self, frames: &wire::EgressFrames<'_>) -> Result<()> {
        let Some(egress) = self.egress.as_mut() else {
            return Ok(());
        };
        if egress.behind_from().is_none() || frames.frames.is_empty() {
            return Ok(());
        }
        if frames.position != egress.position() {
            // An answer to an earlier request, overtaken.
            return Ok(());
        }
        egress.append_frames(frames.position, frames.number, frames.frames)?;
        egress.catch_up_to(self.container.egress_count());
        self.egress_appended = true;
        // The next piece at once.
        self.next_egress_fetch_ns = i64::MIN;
        if egress.behind_from().is_none() {
            tracing::info!(
                "member {}: the egress recording caught up from member {} (to message {})",
                self.config.member_id,
                frames.from,
                egress.last_number()
            );
        }
        Ok(())
    }

    /// Answer peers' requests for egress frames, and ask for them while this node's recording is
    /// behind a snapshot it installed (the leader, or each peer in turn while there is none).
    fn egress_copies(&mut self, monotonic_ns: i64, actions: &mut Vec<Action>) -> usize {
        let Some(egress) = self.egress.as_mut() else {
            self.egress_fetches.clear();
            return 0;
        };
        let mut work = 0;
        // Headers and a frame of the largest egress message fit a peer message.
        let max_bytes = self
            .config
            .max_peer_message_length
            .saturating_sub(wire::WIRE_HEADER_LENGTH + wire::EGRESS_COPY_HEADER_LENGTH)
            .min(256 << 10);
        for fetch in std::mem::take(&mut self.egress_fetches) {
            match egress.read_frames(fetch.position, max_bytes) {
                Ok(Some((number, frames))) if number == fetch.number => {
                    work += 1;
                    let bytes = wire::encode_egress_frames(
                        self.config.cluster_id,
                        &wire::EgressFrames {
                            from: self.config.member_id,
                            to: fetch.from,
                            position: fetch.position,
                            number,
                            frames: &frames,
                        },
                    );
                    actions.push(Action::Peer {
                        to: fetch.from,
                        bytes,
                    });
                }
                Ok(Some((number, _))) => tracing::warn!(
                    "member {}: member {} asked for egress message {} at {}, where this recording has {number}",
                    self.config.member_id,
                    fetch.from,
                    fetch.number,
                    fetch.position
                ),
                Ok(None) => {}
                Err(error) => tracing::warn!(
                    "member {}: egress frames for member {}: {error}",
                    self.config.member_id,
                    fetch.from
                ),
            }
        }
        if egress.behind_from().is_some() && monotonic_ns >= self.next_egress_fetch_ns {
            // What the service made since may all be in the recording already.
            egress.catch_up_to(self.container.egress_count());
        }
        if egress.behind_from().is_some() && monotonic_ns >= self.next_egress_fetch_ns {
            let peers: Vec<u64> = self
                .config
                .members
                .iter()
                .copied()
                .filter(|member| *member != self.config.member_id)
                .collect();
            let to = match self.leader {
                Some(leader) if leader != self.config.member_id => Some(leader),
                _ if peers.is_empty() => None,
                _ => {
                    self.egress_fetch_turn = self.egress_fetch_turn.wrapping_add(1);
                    Some(peers[self.egress_fetch_turn % peers.len()])
                }
            };
            if let Some(to) = to {
                let fetch = wire::EgressFetch {
                    from: self.config.member_id,
                    to,
                    position: egress.position(),
                    number: egress.last_number() + 1,
                };
                actions.push(Action::Peer {
                    to,
                    bytes: wire::encode_egress_fetch(self.config.cluster_id, &fetch),
                });
                work += 1;
            }
            self.next_egress_fetch_ns = monotonic_ns.saturating_add(EGRESS_FETCH_RETRY_NS);
        }
        work
    }

    /// Hand new egress to the files (readers see it), and sync it when it is due: an interval
    /// after the first message not synced.
    fn egress_duties(&mut self, now_ns: i64) -> Result<usize> {
        let Some(egress) = self.egress.as_mut() else {
            return Ok(0);
        };
        if egress.flushed_position() < egress.position() || egress.sync_pending() {
            egress.poll()?;
        }
        if egress.synced_number() == egress.last_number() {
            self.next_egress_sync_ns = now_ns + self.config.egress_sync_interval_ns;
            return Ok(0);
        }
        if now_ns >= self.next_egress_sync_ns && !egress.sync_pending() {
            // Not waited for: the I/O thread syncs while the node goes on.
            egress.request_sync()?;
            self.next_egress_sync_ns = now_ns + self.config.egress_sync_interval_ns;
        } else if self.egress_appended && now_ns >= self.next_egress_flush_ns {
            // At most once a millisecond: a write per duty cycle cost a third of the echo
            // throughput on two cores. Readers of the files (catch-ups, peers) wait for it.
            egress.flush()?;
            self.next_egress_flush_ns = now_ns + EGRESS_FLUSH_INTERVAL_NS;
        } else {
            return Ok(0);
        }
        self.egress_appended = false;
        Ok(1)
    }
}
