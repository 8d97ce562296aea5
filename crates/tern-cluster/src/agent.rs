//! The node over Aeron: the I/O shell around a [`ConsensusNode`]. One thread, one duty cycle:
//! poll the consensus subscription (peers' Raft messages) and the ingress subscription
//! (clients' requests), let the node work at the time (the monotonic clock for ticks and
//! timeouts, the wall clock for the leader's batch stamps), then carry out its actions
//! (a publication per peer; publications to clients' response channels, kept by
//! [`Responses`]: added without waiting for the driver, responses queued until they connect).
//! Nothing in the duty cycle waits. The loop idles with [`BackoffIdle`] (never a busy spin: the
//! machine has 2 cores).

use crate::catchup::{CatchUp, Step};
use crate::egress::EgressRecording;
use crate::error::{ClusterError, Result};
use crate::node::{Action, ConsensusNode, Ingress, IngressReply, NodeConfig, Now};
use crate::protocol::Resume;
use crate::protocol::{
    encode_egress, EventCode, Request, Response, CONSENSUS_STREAM_ID, INGRESS_STREAM_ID,
};
use crate::responses::{Key, Limits, Link, Offered, Responses};
use crate::service::{ClusteredService, Output, SHARED_SESSION_ID};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tern_store::{Io, RecordingReader};
use tern_transport::{
    BackoffIdle, Client, FragmentAssembler, Idle, PendingPublication, Publication,
};

/// How often the agent puts right which response channels open sessions use, and warns of
/// responses dropped.
const HOUSEKEEPING_NS: i64 = 1_000_000_000;

/// Messages a catch-up sends per duty cycle, at most.
const CATCH_UP_BUDGET: usize = 256;

/// Replays served at once, at most (more are refused: the client asks another member).
const MAX_REPLAYS: usize = 16;

/// A replay whose client takes nothing for this long is given up (a client that went away).
const REPLAY_STALL_NS: i64 = 5_000_000_000;

/// Followers of the shared output stream served at once, at most.
const MAX_FOLLOWERS: usize = 256;

/// A follower of the shared stream that has not renewed in this long is dropped.
const FOLLOW_LEASE_NS: i64 = 5_000_000_000;

/// A client following the shared output stream (the leader only).
#[derive(Debug)]
struct Follower {
    /// Catching up from the recording; `None` once live.
    catch_up: Option<CatchUp>,
    /// Until when it is served without a renewal.
    lease_ns: i64,
}

/// A replay of a session's recorded egress to a channel a client named.
#[derive(Debug)]
struct Replaying {
    catch_up: CatchUp,
    channel: Key,
    /// When it last sent a message (or began).
    progress_ns: i64,
}

/// Where a member is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEndpoints {
    /// The member id.
    pub id: u64,
    /// `host:port` of its consensus subscription (UDP).
    pub consensus: String,
    /// `host:port` of its ingress subscription (UDP).
    pub ingress: String,
}

/// The UDP channel of `endpoint`.
pub fn udp_channel(endpoint: &str) -> String {
    format!("aeron:udp?endpoint={endpoint}")
}

/// Counts of what the agent refused or could not send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentCounts {
    /// Peer messages refused (not decodable, not from a member, not for this one).
    pub bad_peer_messages: u64,
    /// Peer messages of another cluster (another cluster id: one on the same ports), refused.
    pub other_cluster_messages: u64,
    /// Ingress requests refused as malformed.
    pub bad_requests: u64,
    /// Messages to peers or clients a publication did not take (back pressure, not connected;
    /// a response not taken within a second, or past 64 queued for its channel).
    pub dropped_sends: u64,
    /// Publications to clients open (or being added) now: one per channel of an open session,
    /// and at most 64 others (status requests, refused connects), closed after 5 s unused.
    pub response_publications: usize,
}

/// A publication to a client: being added, then added.
enum AeronLink {
    Adding(PendingPublication),
    Added(Publication),
}

impl Link for AeronLink {
    fn ready(&mut self) -> Result<bool, String> {
        let polled = match self {
            Self::Added(_) => return Ok(true),
            Self::Adding(pending) => pending.poll(),
        };
        match polled {
            Ok(Some(publication)) => {
                *self = Self::Added(publication);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(error) => Err(error.to_string()),
        }
    }

    fn offer(&self, bytes: &[u8]) -> Offered {
        let Self::Added(publication) = self else {
            return Offered::Later;
        };
        match publication.offer_past_rotation(bytes) {
            Ok(_) => Offered::Sent,
            Err(error) if error.is_retryable() => Offered::Later,
            Err(_) => Offered::Refused,
        }
    }
}

/// A catch-up (or replay) of what `egress` holds after `after`, read from where the time index
/// says its timestamp begins (the start when the client saw nothing, or the index cannot be
/// read), up to the recording's appended end now.
fn catch_up_after(egress: &EgressRecording, after: &Resume, member: u64) -> CatchUp {
    let from = if after.after_timestamp_ns == 0 {
        0
    } else {
        egress
            .position_before_time(after.after_timestamp_ns)
            .unwrap_or_else(|error| {
                tracing::warn!(
                    "member {member}: the egress time index: {error}; read from the start"
                );
                0
            })
    };
    CatchUp::new(
        after.session_id,
        after.after_sequence,
        after.after_number,
        after.correlation_id,
        from,
        egress.position(),
    )
}

/// Take `catch_up` a step, offering to `channel` through `responses`.
fn serve(
    catch_up: &mut CatchUp,
    reader: &mut RecordingReader,
    flushed: i64,
    client: &Client,
    responses: &mut Responses<AeronLink>,
    now_ns: i64,
    channel: &Key,
) -> Result<Step> {
    let (name, stream_id) = channel;
    let mut offer = |bytes: &[u8]| {
        responses.offer_now(now_ns, name, *stream_id, bytes, || {
            client
                .add_publication_async(name, *stream_id)
                .map(AeronLink::Adding)
                .map_err(|error| error.to_string())
        })
    };
    catch_up.step(reader, flushed, CATCH_UP_BUDGET, &mut offer)
}

/// One member's node on Aeron.
pub struct NodeAgent<S: ClusteredService> {
    node: ConsensusNode<S>,
    client: Client,
    members: Vec<MemberEndpoints>,
    consensus: tern_transport::Subscription,
    ingress: tern_transport::Subscription,
    peers: BTreeMap<u64, Publication>,
    responses: Responses<AeronLink>,
    /// Each open session's response channel, as the log opened it (every member).
    channels: BTreeMap<i64, Key>,
    consensus_assembler: FragmentAssembler,
    ingress_assembler: FragmentAssembler,
    received: Vec<Vec<u8>>,
    actions: Vec<Action>,
    counts: AgentCounts,
    /// The origin of the node's monotonic time.
    started: Instant,
    /// The monotonic time of this duty cycle.
    cycle_ns: i64,
    /// When housekeeping is due next.
    next_housekeeping_ns: i64,
    /// Responses dropped when the last warning of them was logged.
    warned_dropped: u64,
    /// Sessions catching up on egress they missed (leader only), by session id.
    catch_ups: BTreeMap<i64, CatchUp>,
    /// Replays of recorded egress (any member, any session, open or closed).
    replays: Vec<Replaying>,
    /// Followers of the shared output stream, by channel (leader only).
    followers: BTreeMap<Key, Follower>,
    /// Reads the egress recording for them.
    egress_reader: Option<RecordingReader>,
}

impl<S: ClusteredService> NodeAgent<S> {
    /// Open the node in `config.dir` and its Aeron side on `client`: subscriptions on this
    /// member's consensus and ingress endpoints, a publication to each peer's consensus endpoint.
    ///
    /// # Errors
    /// The node cannot open, a member is missing from `members` ([`ClusterError::Config`]), or
    /// Aeron refused a channel ([`ClusterError::Transport`]).
    pub fn new(
        mut config: NodeConfig,
        members: Vec<MemberEndpoints>,
        client: Client,
        service: S,
    ) -> Result<Self> {
        let me = members
            .iter()
            .find(|member| member.id == config.member_id)
            .cloned()
            .ok_or_else(|| {
                ClusterError::Config(format!("member {} has no endpoints", config.member_id))
            })?;
        let consensus =
            client.add_subscription(&udp_channel(&me.consensus), CONSENSUS_STREAM_ID)?;
        let ingress = client.add_subscription(&udp_channel(&me.ingress), INGRESS_STREAM_ID)?;
        let mut peers = BTreeMap::new();
        for member in members.iter().filter(|member| member.id != me.id) {
            let publication =
                client.add_publication(&udp_channel(&member.consensus), CONSENSUS_STREAM_ID)?;
            peers.insert(member.id, publication);
        }
        // A consensus message (a chunk of a snapshot) must fit one Aeron message.
        if let Some(limit) = peers.values().map(Publication::max_message_length).min() {
            let configured = config.max_peer_message_length;
            if config.fit_peer_transport(limit)? {
                tracing::info!(
                    "member {}: consensus messages in chunks of {limit} bytes (the publications' maximum), not {configured}",
                    config.member_id
                );
            }
        }
        let started = Instant::now();
        let now = Now {
            monotonic_ns: 0,
            wall_ns: tern_store::epoch_nanos(),
        };
        let node = ConsensusNode::open(config, Io::default(), service, now)?;
        Ok(Self {
            node,
            client,
            members,
            consensus,
            ingress,
            peers,
            responses: Responses::new(Limits::default()),
            channels: BTreeMap::new(),
            consensus_assembler: FragmentAssembler::new(),
            ingress_assembler: FragmentAssembler::new(),
            received: Vec::new(),
            actions: Vec::new(),
            counts: AgentCounts::default(),
            started,
            cycle_ns: 0,
            catch_ups: BTreeMap::new(),
            replays: Vec::new(),
            followers: BTreeMap::new(),
            egress_reader: None,
            next_housekeeping_ns: 0,
            warned_dropped: 0,
        })
    }

    /// The node.
    pub fn node(&self) -> &ConsensusNode<S> {
        &self.node
    }

    /// What was refused or dropped so far, and the response publications open.
    pub fn counts(&self) -> AgentCounts {
        AgentCounts {
            dropped_sends: self.counts.dropped_sends + self.responses.dropped(),
            response_publications: self.responses.len(),
            ..self.counts
        }
    }

    /// One duty cycle. Returns the work done (0: idle).
    ///
    /// # Errors
    /// The node's storage failed: the node must stop.
    pub fn do_work(&mut self) -> Result<usize> {
        let mut work = 0;
        let mut received = std::mem::take(&mut self.received);
        let assembler = &mut self.consensus_assembler;
        let _ = self.consensus.poll(
            |fragment, header| {
                assembler.on_fragment(fragment, header, &mut |message, _| {
                    received.push(message.to_vec());
                });
            },
            64,
        );
        for message in received.drain(..) {
            work += 1;
            match self.node.on_peer(&message) {
                Ok(()) => {}
                Err(error @ ClusterError::OtherCluster { .. }) => {
                    // Another cluster's heartbeats come often: logged at 1, 2, 4, 8, ...
                    self.counts.other_cluster_messages += 1;
                    let count = self.counts.other_cluster_messages;
                    if count.is_power_of_two() {
                        tracing::warn!(
                            "member {}: {error} ({count} so far, refused)",
                            self.node.member_id()
                        );
                    }
                }
                Err(error) => {
                    self.counts.bad_peer_messages += 1;
                    tracing::warn!("member {}: {error}", self.node.member_id());
                }
            }
        }
        let assembler = &mut self.ingress_assembler;
        let _ = self.ingress.poll(
            |fragment, header| {
                assembler.on_fragment(fragment, header, &mut |message, _| {
                    received.push(message.to_vec());
                });
            },
            256,
        );
        let now = self.now();
        self.cycle_ns = now.monotonic_ns;
        for message in received.drain(..) {
            work += 1;
            self.on_request(now.monotonic_ns, &message);
        }
        self.received = received;
        work += self.node.do_work(now, &mut self.actions)?;
        let actions = std::mem::take(&mut self.actions);
        for action in &actions {
            self.act(action);
        }
        self.actions = actions;
        self.actions.clear();
        work += self.catch_up();
        work += self.responses.do_work(now.monotonic_ns);
        if now.monotonic_ns >= self.next_housekeeping_ns {
            self.next_housekeeping_ns = now.monotonic_ns + HOUSEKEEPING_NS;
            self.housekeeping();
        }
        Ok(work)
    }

    /// Put right the pinned response channels (a snapshot installed replaces the sessions
    /// without a close or open for each), and warn of responses dropped since the last time.
    fn housekeeping(&mut self) {
        let now_ns = self.cycle_ns;
        self.followers
            .retain(|_, follower| follower.lease_ns > now_ns);
        let sessions = self
            .node
            .container()
            .sessions()
            .map(|session| (session.response_channel.clone(), session.response_stream_id));
        self.responses.repin(sessions);
        let dropped = self.responses.dropped();
        if dropped > self.warned_dropped {
            tracing::warn!(
                "member {}: {} responses to clients dropped (not taken within 1 s, or over 64 queued for a channel)",
                self.node.member_id(),
                dropped - self.warned_dropped
            );
            self.warned_dropped = dropped;
        }
    }

    /// Both clocks now: monotonic nanoseconds since the agent started, and the wall clock.
    fn now(&self) -> Now {
        Now {
            monotonic_ns: i64::try_from(self.started.elapsed().as_nanos()).unwrap_or(i64::MAX),
            wall_ns: tern_store::epoch_nanos(),
        }
    }

    /// Run duty cycles until `stop` is set (then store the commit index) or the storage fails.
    ///
    /// # Errors
    /// The node's storage failed.
    pub fn run(mut self, stop: &AtomicBool) -> Result<()> {
        let mut idle = BackoffIdle::new();
        while !stop.load(Ordering::Acquire) {
            let work = self.do_work()?;
            idle.idle(work);
        }
        let counts = self.counts();
        tracing::info!(
            "member {} stops: {} bad peer messages, {} bad requests, {} sends dropped, {} proposals dropped, {} response publications open",
            self.node.member_id(),
            counts.bad_peer_messages,
            counts.bad_requests,
            counts.dropped_sends,
            self.node.dropped_proposals(),
            counts.response_publications
        );
        self.node.close()
    }

    fn on_request(&mut self, now: i64, bytes: &[u8]) {
        let request = match Request::decode(bytes) {
            Ok(request) => request,
            Err(error) => {
                self.counts.bad_requests += 1;
                tracing::debug!("member {}: a bad request: {error}", self.node.member_id());
                return;
            }
        };
        match request {
            Request::Session(ingress) => {
                // A connect is answered on the channel it names; the rest on the session's.
                let connect = match &ingress {
                    Ingress::Connect {
                        correlation_id,
                        response_stream_id,
                        response_channel,
                        ..
                    } => Some((
                        response_channel.clone(),
                        *response_stream_id,
                        *correlation_id,
                    )),
                    _ => None,
                };
                let session_id = ingress.session_id();
                let reply = self.node.on_ingress(now, ingress);
                match connect {
                    Some((channel, stream_id, correlation_id)) => {
                        self.reply(&channel, stream_id, correlation_id, 0, reply);
                    }
                    None => self.reply_to_session(session_id, reply),
                }
            }
            Request::Status {
                correlation_id,
                response_stream_id,
                response_channel,
                snapshot,
            } => {
                if snapshot {
                    if let Err(error) = self.node.take_snapshot() {
                        tracing::error!(
                            "member {}: snapshot failed: {error}",
                            self.node.member_id()
                        );
                    }
                }
                let status = self.node.status();
                self.send_response(
                    &response_channel,
                    response_stream_id,
                    &Response::Status {
                        correlation_id,
                        status,
                    },
                );
            }
            Request::Resume(resume) => self.on_resume(resume),
            Request::Replay {
                after,
                response_stream_id,
                response_channel,
            } => self.on_replay(after, (response_channel, response_stream_id)),
            Request::Follow {
                after,
                response_stream_id,
                response_channel,
                renew,
            } => self.on_follow(after, (response_channel, response_stream_id), renew),
        }
    }

    /// Follow (or renew following) the shared output stream after `after` on `channel`.
    fn on_follow(&mut self, after: Resume, channel: Key, renew: bool) {
        let member = self.node.member_id();
        let lease_ns = self.cycle_ns + FOLLOW_LEASE_NS;
        let refusal = if self.node.role() != crate::service::Role::Leader {
            if renew {
                return;
            }
            let leader = self.node.leader();
            Some((EventCode::Redirect, self.leader_detail(leader)))
        } else if after.session_id != SHARED_SESSION_ID {
            Some((
                EventCode::Error,
                format!("session {} is not the shared stream (0)", after.session_id),
            ))
        } else if let (true, Some(follower)) = (renew, self.followers.get_mut(&channel)) {
            follower.lease_ns = lease_ns;
            return;
        } else if let Some(egress) = self.node.egress() {
            if self.followers.len() >= MAX_FOLLOWERS && !self.followers.contains_key(&channel) {
                Some((
                    EventCode::Error,
                    format!("member {member} serves {MAX_FOLLOWERS} followers of the shared stream already"),
                ))
            } else {
                let catch_up = catch_up_after(egress, &after, member);
                self.followers.insert(
                    channel.clone(),
                    Follower {
                        catch_up: Some(catch_up),
                        lease_ns,
                    },
                );
                None
            }
        } else {
            Some((
                EventCode::Error,
                format!("member {member} does not record egress (record_egress = false)"),
            ))
        };
        if let Some((code, detail)) = refusal {
            let event = Response::SessionEvent {
                correlation_id: after.correlation_id,
                session_id: SHARED_SESSION_ID,
                code,
                leader: self.node.leader().unwrap_or(0),
                detail,
            };
            self.send_response(&channel.0, channel.1, &event);
        }
    }

    /// Start a replay of a session's recorded egress after `after` to `channel`: what this
    /// member's recording holds now, then a replayed event. Any member, leader or not; the
    /// session may be long closed.
    fn on_replay(&mut self, after: Resume, channel: Key) {
        let member = self.node.member_id();
        let refusal = match self.node.egress() {
            None => Some(format!(
                "member {member} does not record egress (record_egress = false)"
            )),
            Some(_) if self.replays.len() >= MAX_REPLAYS => Some(format!(
                "member {member} serves {MAX_REPLAYS} replays already: ask another member"
            )),
            Some(egress) => {
                self.replays.push(Replaying {
                    catch_up: catch_up_after(egress, &after, member),
                    channel: channel.clone(),
                    progress_ns: self.cycle_ns,
                });
                None
            }
        };
        if let Some(detail) = refusal {
            let event = Response::SessionEvent {
                correlation_id: after.correlation_id,
                session_id: after.session_id,
                code: EventCode::Error,
                leader: self.node.leader().unwrap_or(0),
                detail,
            };
            self.send_response(&channel.0, channel.1, &event);
        }
    }

    /// Start a session's catch-up on the egress it missed (the leader; a follower redirects).
    fn on_resume(&mut self, resume: Resume) {
        let session_id = resume.session_id;
        if !self.channels.contains_key(&session_id) {
            tracing::debug!(
                "member {}: resume of session {session_id}, which is not open",
                self.node.member_id()
            );
            return;
        }
        if self.node.role() != crate::service::Role::Leader {
            let leader = self.node.leader();
            self.reply_to_session(session_id, IngressReply::NotLeader { leader });
            return;
        }
        let Some(egress) = self.node.egress() else {
            let event = Response::SessionEvent {
                correlation_id: resume.correlation_id,
                session_id,
                code: EventCode::Error,
                leader: self.node.member_id(),
                detail: format!(
                    "member {} does not record egress (record_egress = false)",
                    self.node.member_id()
                ),
            };
            if let Some((channel, stream_id)) = self.channels.get(&session_id).cloned() {
                self.send_response(&channel, stream_id, &event);
            }
            return;
        };
        let catch_up = catch_up_after(egress, &resume, self.node.member_id());
        self.catch_ups.insert(session_id, catch_up);
    }

    /// Take every catch-up and replay a step: what the recording holds, then (a catch-up) what
    /// was queued. Returns the messages sent.
    fn catch_up(&mut self) -> usize {
        if self.catch_ups.is_empty() && self.replays.is_empty() && self.followers.is_empty() {
            return 0;
        }
        let Some(egress) = self.node.egress() else {
            self.catch_ups.clear();
            self.replays.clear();
            self.followers.clear();
            return 0;
        };
        let flushed = egress.flushed_position();
        let recorded = egress.last_number();
        let reader = self.egress_reader.get_or_insert_with(|| egress.reader());
        let (client, responses, now_ns) = (&self.client, &mut self.responses, self.cycle_ns);
        let mut step = |catch_up: &mut CatchUp, channel: &Key| {
            serve(
                catch_up, reader, flushed, client, responses, now_ns, channel,
            )
        };
        let mut work = 0;
        let mut ended = Vec::new();
        for (session_id, catch_up) in &mut self.catch_ups {
            let Some(channel) = self.channels.get(session_id) else {
                ended.push((
                    *session_id,
                    catch_up.correlation_id(),
                    Err("closed".to_string()),
                ));
                continue;
            };
            let step = step(catch_up, channel);
            match step {
                Ok(Step::Working(sent)) => work += sent,
                Ok(Step::Done) => {
                    work += 1;
                    ended.push((*session_id, catch_up.correlation_id(), Ok(catch_up.sent())));
                }
                Err(error) => ended.push((
                    *session_id,
                    catch_up.correlation_id(),
                    Err(error.to_string()),
                )),
            }
        }
        let mut replayed = Vec::new();
        self.followers.retain(|channel, follower| {
            let Some(catch_up) = follower.catch_up.as_mut() else {
                return true;
            };
            let step = step(catch_up, channel);
            let (code, detail) = match step {
                Ok(Step::Working(sent)) => {
                    work += sent;
                    return true;
                }
                Ok(Step::Done) => (EventCode::CaughtUp, format!("{} messages", catch_up.sent())),
                Err(error) => (EventCode::Error, format!("catch-up ended: {error}")),
            };
            work += 1;
            let live = code == EventCode::CaughtUp;
            replayed.push((
                channel.clone(),
                Response::SessionEvent {
                    correlation_id: catch_up.correlation_id(),
                    session_id: SHARED_SESSION_ID,
                    code,
                    leader: 0,
                    detail,
                },
            ));
            follower.catch_up = None;
            live
        });
        self.replays.retain_mut(|replay| {
            let step = step(&mut replay.catch_up, &replay.channel);
            let catch_up = &replay.catch_up;
            let (code, detail) = match step {
                Ok(Step::Working(sent)) if sent > 0 => {
                    work += sent;
                    replay.progress_ns = self.cycle_ns;
                    return true;
                }
                Ok(Step::Working(_)) if self.cycle_ns - replay.progress_ns < REPLAY_STALL_NS => {
                    return true;
                }
                Ok(Step::Working(_)) => (
                    EventCode::Error,
                    format!(
                        "replay given up: the client took nothing in {} s",
                        REPLAY_STALL_NS / 1_000_000_000
                    ),
                ),
                Ok(Step::Done) => (
                    EventCode::Replayed,
                    format!(
                        "{} messages; the recording holds egress numbers 1..={recorded}",
                        catch_up.sent()
                    ),
                ),
                Err(error) => (EventCode::Error, format!("replay ended: {error}")),
            };
            work += 1;
            replayed.push((
                replay.channel.clone(),
                Response::SessionEvent {
                    correlation_id: catch_up.correlation_id(),
                    session_id: catch_up.session_id(),
                    code,
                    leader: 0,
                    detail,
                },
            ));
            false
        });
        for (channel, event) in replayed {
            self.send_response(&channel.0, channel.1, &event);
        }
        for (session_id, correlation_id, result) in ended {
            self.catch_ups.remove(&session_id);
            let (code, detail) = match result {
                Ok(sent) => (EventCode::CaughtUp, format!("{sent} messages")),
                Err(reason) => {
                    tracing::warn!(
                        "member {}: session {session_id}'s catch-up ended: {reason}",
                        self.node.member_id()
                    );
                    (EventCode::Error, format!("catch-up ended: {reason}"))
                }
            };
            if let Some((channel, stream_id)) = self.channels.get(&session_id).cloned() {
                let event = Response::SessionEvent {
                    correlation_id,
                    session_id,
                    code,
                    leader: self.node.member_id(),
                    detail,
                };
                self.send_response(&channel, stream_id, &event);
            }
        }
        work
    }

    fn leader_detail(&self, leader: Option<u64>) -> String {
        leader
            .and_then(|leader| self.members.iter().find(|member| member.id == leader))
            .map(|member| member.ingress.clone())
            .unwrap_or_default()
    }

    fn reply(
        &mut self,
        channel: &str,
        stream_id: i32,
        correlation_id: i64,
        session_id: i64,
        reply: IngressReply,
    ) {
        let response = match reply {
            IngressReply::Accepted => return,
            IngressReply::NotLeader { leader } => Response::SessionEvent {
                correlation_id,
                session_id,
                code: EventCode::Redirect,
                leader: leader.unwrap_or(0),
                detail: self.leader_detail(leader),
            },
            IngressReply::Rejected(reason) => Response::SessionEvent {
                correlation_id,
                session_id,
                code: EventCode::Error,
                leader: self.node.leader().unwrap_or(0),
                detail: reason,
            },
        };
        self.send_response(channel, stream_id, &response);
    }

    fn reply_to_session(&mut self, session_id: i64, reply: IngressReply) {
        if reply == IngressReply::Accepted {
            return;
        }
        // A known session's client is told (its channel is in the replicated session table); an
        // unknown one cannot be answered.
        let Some(session) = self
            .node
            .container()
            .sessions()
            .find(|session| session.id == session_id)
            .cloned()
        else {
            tracing::debug!(
                "member {}: {reply:?} for session {session_id}",
                self.node.member_id()
            );
            return;
        };
        self.reply(
            &session.response_channel,
            session.response_stream_id,
            0,
            session_id,
            reply,
        );
    }

    fn act(&mut self, action: &Action) {
        match action {
            Action::Peer { to, bytes } => {
                let sent = self
                    .peers
                    .get(to)
                    .is_some_and(|publication| publication.offer_past_rotation(bytes).is_ok());
                if !sent {
                    // Raft sends again (heartbeats, probes): a lost message costs a round.
                    self.counts.dropped_sends += 1;
                }
            }
            Action::Applied { output, leader } => {
                if let Output::SessionOpened { session, .. } = output {
                    let key = (session.response_channel.clone(), session.response_stream_id);
                    self.responses.pin(&key);
                    self.channels.insert(session.id, key);
                }
                if *leader {
                    self.send_applied(output);
                }
                if let Output::SessionClosed { session, .. } = output {
                    // Its publication is cached (and closed when idle) once no session uses it.
                    self.channels.remove(&session.id);
                    self.responses
                        .unpin(&(session.response_channel.clone(), session.response_stream_id));
                }
            }
            Action::RoleChanged { role, leader, term } => {
                if *role != crate::service::Role::Leader {
                    // Their clients resume with the new leader (followers of the shared stream
                    // renew there).
                    self.catch_ups.clear();
                    self.followers.clear();
                }
                if *role == crate::service::Role::Leader {
                    // Every session's client is told where to send from now on.
                    let sessions: Vec<_> = self.node.container().sessions().cloned().collect();
                    for session in sessions {
                        let event = Response::SessionEvent {
                            correlation_id: 0,
                            session_id: session.id,
                            code: EventCode::NewLeader,
                            leader: self.node.member_id(),
                            detail: self.leader_detail(Some(self.node.member_id())),
                        };
                        self.send_response(
                            &session.response_channel,
                            session.response_stream_id,
                            &event,
                        );
                    }
                }
                tracing::info!(
                    "member {}: {} in term {term}, leader {}",
                    self.node.member_id(),
                    role.name(),
                    leader.map_or("unknown".to_string(), |leader| leader.to_string())
                );
            }
        }
    }

    /// What the leader tells clients of what applying produced.
    fn send_applied(&mut self, output: &Output) {
        let (channel, stream_id, bytes) = match output {
            Output::SessionOpened {
                correlation_id,
                session,
            } => (
                session.response_channel.clone(),
                session.response_stream_id,
                Response::SessionEvent {
                    correlation_id: *correlation_id,
                    session_id: session.id,
                    code: EventCode::Ok,
                    leader: self.node.member_id(),
                    detail: String::new(),
                }
                .encode(),
            ),
            Output::SessionClosed { session, reason } => (
                session.response_channel.clone(),
                session.response_stream_id,
                Response::SessionEvent {
                    correlation_id: 0,
                    session_id: session.id,
                    code: EventCode::Closed,
                    leader: self.node.member_id(),
                    detail: reason.name().into(),
                }
                .encode(),
            ),
            Output::Egress(egress) if egress.session_id == SHARED_SESSION_ID => {
                if self.followers.is_empty() {
                    return;
                }
                let bytes = encode_egress(egress);
                let appended = self.node.egress().map_or(0, EgressRecording::position);
                let mut live = Vec::new();
                for (channel, follower) in &mut self.followers {
                    match follower.catch_up.as_mut() {
                        Some(catch_up) => catch_up.on_live(egress, bytes.clone(), appended),
                        None => live.push(channel.clone()),
                    }
                }
                for (channel, stream_id) in live {
                    self.send_bytes(&channel, stream_id, bytes.clone());
                }
                return;
            }
            Output::Egress(egress) => {
                // The channel as the session had it when the egress was made: a session
                // closed later in the same cycle still gets what came before its close.
                let known = self.channels.get(&egress.session_id).cloned();
                let Some((channel, stream_id)) = known.or_else(|| {
                    self.node
                        .container()
                        .sessions()
                        .find(|session| session.id == egress.session_id)
                        .map(|session| {
                            (session.response_channel.clone(), session.response_stream_id)
                        })
                }) else {
                    return;
                };
                if let Some(catch_up) = self.catch_ups.get_mut(&egress.session_id) {
                    // It goes after what the session missed.
                    let appended = self.node.egress().map_or(0, EgressRecording::position);
                    catch_up.on_live(egress, encode_egress(egress), appended);
                    return;
                }
                (channel, stream_id, encode_egress(egress))
            }
        };
        self.send_bytes(&channel, stream_id, bytes);
    }

    fn send_response(&mut self, channel: &str, stream_id: i32, response: &Response) {
        // A new channel's publication is added without waiting for the driver; the response
        // waits in its queue until it connects (see `Responses`).
        self.send_bytes(channel, stream_id, response.encode());
    }

    fn send_bytes(&mut self, channel: &str, stream_id: i32, bytes: Vec<u8>) {
        let client = &self.client;
        let sent = self
            .responses
            .send(self.cycle_ns, channel, stream_id, bytes, || {
                client
                    .add_publication_async(channel, stream_id)
                    .map(AeronLink::Adding)
                    .map_err(|error| error.to_string())
            });
        if let Err(reason) = sent {
            tracing::warn!(
                "member {}: cannot answer on {channel} stream {stream_id}: {reason}",
                self.node.member_id()
            );
        }
    }
}
