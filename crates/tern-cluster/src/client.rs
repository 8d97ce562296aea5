//! A cluster client over Aeron: connects (to every member; the leader opens the session,
//! followers name the leader), sends messages to the leader, keeps the session alive, polls
//! egress, and asks members for their status. Used by `tern cluster send` and `status`.
//!
//! It gives the application each of its session's egress messages once, in order: after a new
//! leader or a gap it asks the leader to resume after the last one seen. A session's egress can
//! also be read back later, open or long closed, from any member that records it
//! ([`ClusterClient::replay_egress`]).

use crate::agent::{udp_channel, MemberEndpoints};
use crate::error::{ClusterError, Result};
use crate::node::{Ingress, NodeStatus};
use crate::protocol::{EventCode, Request, Response, Resume, EGRESS_STREAM_ID, INGRESS_STREAM_ID};
use crate::service::{Egress, SHARED_SESSION_ID};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tern_transport::{
    BackoffIdle, Client, FragmentAssembler, Idle, Publication, Subscription, TransportError,
};

/// A connection to a cluster's members.
pub struct ClusterClient {
    client: Client,
    members: Vec<MemberEndpoints>,
    ingress: BTreeMap<u64, Publication>,
    responses: Subscription,
    response_channel: String,
    assembler: FragmentAssembler,
    session_id: Option<i64>,
    leader: Option<u64>,
    next_correlation: i64,
    egress: Vec<Egress>,
    events: Vec<Response>,
    last_keep_alive: Instant,
    /// The last egress message the application got: (session sequence, egress number, cluster
    /// timestamp); zeroes before the first.
    seen: (u64, u64, i64),
    /// When the client last asked to resume, until the leader says it caught up.
    resume_asked: Option<Instant>,
    counts: ClientCounts,
    /// The session a replay is reading, and what arrived of it.
    replaying: Option<i64>,
    replayed: Vec<Egress>,
    /// Following the shared output stream.
    following: Option<Following>,
    shared: Vec<Egress>,
}

/// Where the client stands on the shared output stream.
#[derive(Debug, Clone, Copy)]
struct Following {
    /// The last shared message given to the application.
    mark: EgressMark,
    /// When it last renewed.
    renewed: Instant,
    /// When it last asked to start again (after a gap), until caught up.
    restart_asked: Option<Instant>,
    counts: ClientCounts,
}

/// A follower of the shared stream renews this often (the leader drops it after 5 s without).
const FOLLOW_RENEW: Duration = Duration::from_secs(1);

/// Where a session's egress stands for a client: its last message's session sequence, egress
/// number and cluster timestamp (zeroes: before the first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressMark {
    /// The session sequence.
    pub sequence: u64,
    /// The egress number.
    pub number: u64,
    /// The cluster timestamp (ns).
    pub timestamp_ns: i64,
}

impl EgressMark {
    /// The mark just after `egress`.
    pub fn of(egress: &Egress) -> Self {
        Self {
            sequence: egress.sequence,
            number: egress.number,
            timestamp_ns: egress.timestamp_ns,
        }
    }
}

/// How a replay of recorded egress went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Messages given to the application.
    pub messages: u64,
    /// The last one's mark (the one asked after when none came).
    pub last: EgressMark,
    /// The member that finished it.
    pub member: u64,
    /// Requests sent (more than one when a member did not answer, refused, or stalled).
    pub requests: u64,
    /// Messages dropped as already given (a member that was given up on sent them late).
    pub duplicates: u64,
    /// What the finishing member said (how many it sent, the recording's last egress number).
    pub detail: String,
}

/// A replay that gets nothing in this long asks the next member.
const REPLAY_STALL: Duration = Duration::from_secs(1);

/// What the client did to give the application each egress message once, in order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounts {
    /// Egress messages dropped as already seen (sent live and again by a catch-up).
    pub duplicates: u64,
    /// Egress messages that came after a gap (dropped: the catch-up sends them in order).
    pub gaps: u64,
    /// Resume requests sent (after a new leader, a gap, or a resume not answered).
    pub resumes: u64,
    /// Catch-ups the leader finished.
    pub caught_up: u64,
}

/// A resume not answered in this long is asked again.
const RESUME_RETRY: Duration = Duration::from_millis(500);

impl ClusterClient {
    /// A client of `members` on `client`, reading responses on `response_endpoint` (`host:port`;
    /// port 0 picks a free one).
    ///
    /// # Errors
    /// Aeron refused a channel or did not bind the response port in 5 s
    /// ([`ClusterError::Transport`]).
    pub fn new(
        client: Client,
        members: Vec<MemberEndpoints>,
        response_endpoint: &str,
    ) -> Result<Self> {
        let responses =
            client.add_subscription(&udp_channel(response_endpoint), EGRESS_STREAM_ID)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let response_channel = loop {
            if let Some(channel) = responses.try_resolve_channel_endpoint_port()? {
                break channel;
            }
            if Instant::now() > deadline {
                return Err(ClusterError::Transport(TransportError::TimedOut(
                    "the response channel's port was not bound in 5 s".into(),
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let mut ingress = BTreeMap::new();
        for member in &members {
            ingress.insert(
                member.id,
                client.add_publication(&udp_channel(&member.ingress), INGRESS_STREAM_ID)?,
            );
        }
        Ok(Self {
            client,
            members,
            ingress,
            responses,
            response_channel,
            assembler: FragmentAssembler::new(),
            session_id: None,
            leader: None,
            next_correlation: 1,
            egress: Vec::new(),
            events: Vec::new(),
            last_keep_alive: Instant::now(),
            seen: (0, 0, 0),
            resume_asked: None,
            counts: ClientCounts::default(),
            replaying: None,
            replayed: Vec::new(),
            following: None,
            shared: Vec::new(),
        })
    }

    /// The session id, once connected.
    pub fn session_id(&self) -> Option<i64> {
        self.session_id
    }

    /// The leader, once known.
    pub fn leader(&self) -> Option<u64> {
        self.leader
    }

    fn correlation(&mut self) -> i64 {
        let id = self.next_correlation;
        self.next_correlation += 1;
        id ^ (self.client.client_id() << 20)
    }

    fn offer_to(&self, member: u64, bytes: &[u8]) -> bool {
        self.ingress
            .get(&member)
            .is_some_and(|publication| publication.offer_past_rotation(bytes).is_ok())
    }

    /// Take in what arrived; returns how many responses.
    pub fn poll(&mut self) -> usize {
        let mut arrived = Vec::new();
        let assembler = &mut self.assembler;
        let _ = self.responses.poll(
            |fragment, header| {
                assembler.on_fragment(fragment, header, &mut |message, _| {
                    arrived.push(message.to_vec());
                })
            },
            64,
        );
        let count = arrived.len();
        for bytes in arrived {
            let Ok(response) = Response::decode(&bytes) else {
                continue;
            };
            match &response {
                Response::Egress(egress) if Some(egress.session_id) == self.session_id => {
                    self.on_egress(egress);
                }
                Response::Egress(egress) if Some(egress.session_id) == self.replaying => {
                    self.replayed.push(egress.clone());
                }
                Response::Egress(egress)
                    if egress.session_id == SHARED_SESSION_ID && self.following.is_some() =>
                {
                    self.on_shared(egress);
                }
                Response::SessionEvent {
                    session_id: SHARED_SESSION_ID,
                    code,
                    leader,
                    ..
                } if self.following.is_some() => {
                    if *leader != 0 {
                        self.leader = Some(*leader);
                    }
                    match code {
                        EventCode::CaughtUp => {
                            if let Some(following) = self.following.as_mut() {
                                following.restart_asked = None;
                                following.counts.caught_up += 1;
                            }
                        }
                        EventCode::Redirect => {}
                        // A refusal, or the end of a replay of the shared stream.
                        _ => self.events.push(response),
                    }
                }
                Response::SessionEvent {
                    session_id,
                    code,
                    leader,
                    ..
                } => {
                    if *leader != 0 {
                        self.leader = Some(*leader);
                    }
                    if Some(*session_id) == self.session_id {
                        match code {
                            EventCode::Closed => {
                                self.session_id = None;
                                self.resume_asked = None;
                            }
                            // A new leader sends from its own egress recording what this
                            // client missed in the change.
                            EventCode::NewLeader => self.resume(),
                            // A resume sent to a follower: ask the leader it named.
                            EventCode::Redirect if self.resume_asked.is_some() => self.resume(),
                            EventCode::CaughtUp => {
                                self.resume_asked = None;
                                self.counts.caught_up += 1;
                            }
                            _ => {}
                        }
                    }
                    self.events.push(response);
                }
                _ => self.events.push(response),
            }
        }
        if self
            .resume_asked
            .is_some_and(|asked| asked.elapsed() > RESUME_RETRY)
        {
            self.resume();
        }
        if let Some(following) = self.following {
            let restart_due = following
                .restart_asked
                .is_some_and(|asked| asked.elapsed() > RESUME_RETRY);
            if restart_due {
                self.send_follow(false);
            } else if following.renewed.elapsed() > FOLLOW_RENEW {
                self.send_follow(true);
            }
        }
        if let Some(session_id) = self.session_id {
            if self.last_keep_alive.elapsed() > Duration::from_millis(500) {
                self.last_keep_alive = Instant::now();
                if let Some(leader) = self.leader {
                    self.offer_to(
                        leader,
                        &Request::Session(Ingress::KeepAlive { session_id }).encode(),
                    );
                }
            }
        }
        count
    }

    fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut found: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut idle = BackoffIdle::new();
        loop {
            let work = self.poll();
            if let Some(value) = found(self) {
                return Some(value);
            }
            if Instant::now() >= deadline {
                return None;
            }
            idle.idle(work);
        }
    }

    /// Open a session: ask every member (the leader opens it) until one does, or `timeout`.
    ///
    /// # Errors
    /// A member refused (credentials), or no session was opened in time
    /// ([`ClusterError::Client`]).
    pub fn connect(&mut self, credentials: &[u8], timeout: Duration) -> Result<i64> {
        let correlation_id = self.correlation();
        let request = Request::Session(Ingress::Connect {
            correlation_id,
            response_stream_id: EGRESS_STREAM_ID,
            response_channel: self.response_channel.clone(),
            credentials: credentials.to_vec(),
        })
        .encode();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let members: Vec<u64> = self.members.iter().map(|member| member.id).collect();
            for member in members {
                self.offer_to(member, &request);
            }
            let outcome = self.wait_for(Duration::from_millis(250), |client| {
                let index = client.events.iter().position(|event| {
                    matches!(event, Response::SessionEvent { correlation_id: id, code, .. }
                        if *id == correlation_id && matches!(code, EventCode::Ok | EventCode::Error))
                })?;
                Some(client.events.remove(index))
            });
            match outcome {
                Some(Response::SessionEvent {
                    code: EventCode::Ok,
                    session_id,
                    leader,
                    ..
                }) => {
                    self.session_id = Some(session_id);
                    self.leader = Some(leader);
                    return Ok(session_id);
                }
                Some(Response::SessionEvent { detail, .. }) => {
                    return Err(ClusterError::Client(format!("connect refused: {detail}")));
                }
                _ => {}
            }
        }
        Err(ClusterError::Client(format!(
            "no member opened a session in {} ms (members reachable? a leader elected?)",
            timeout.as_millis()
        )))
    }

    /// Send a message to the service on the session (to the leader). Whether the leader's
    /// publication took it.
    pub fn offer(&mut self, payload: &[u8]) -> bool {
        let (Some(session_id), Some(leader)) = (self.session_id, self.leader) else {
            return false;
        };
        self.offer_to(
            leader,
            &Request::Session(Ingress::Message {
                session_id,
                payload: payload.to_vec(),
            })
            .encode(),
        )
    }

    /// Take in a message of the session: each once, in order; a gap asks for a resume.
    fn on_egress(&mut self, egress: &Egress) {
        let last = self.seen.0;
        if egress.sequence <= last {
            self.counts.duplicates += 1;
        } else if egress.sequence > last + 1 {
            self.counts.gaps += 1;
            if self.resume_asked.is_none() {
                self.resume();
            }
        } else {
            self.seen = (egress.sequence, egress.number, egress.timestamp_ns);
            self.egress.push(egress.clone());
        }
    }

    /// Ask the leader for the session's egress after the last message the application got
    /// (done by itself after a new leader, a gap, or a resume not answered).
    pub fn resume(&mut self) {
        let (Some(session_id), Some(leader)) = (self.session_id, self.leader) else {
            return;
        };
        let (after_sequence, after_number, after_timestamp_ns) = self.seen;
        let request = Request::Resume(Resume {
            correlation_id: self.correlation(),
            session_id,
            after_sequence,
            after_number,
            after_timestamp_ns,
        })
        .encode();
        self.offer_to(leader, &request);
        self.resume_asked = Some(Instant::now());
        self.counts.resumes += 1;
    }

    /// Whether a resume is under way (asked, and the leader has not said it caught up).
    pub fn resuming(&self) -> bool {
        self.resume_asked.is_some()
    }

    /// The session sequence of the last egress message the application got (0: none).
    pub fn last_sequence(&self) -> u64 {
        self.seen.0
    }

    /// Where the session's egress stands: the last message the application got.
    pub fn mark(&self) -> EgressMark {
        let (sequence, number, timestamp_ns) = self.seen;
        EgressMark {
            sequence,
            number,
            timestamp_ns,
        }
    }

    /// Follow the shared output stream (what the service offers with
    /// [`Cluster::offer_shared`](crate::Cluster::offer_shared)) after `after`: the leader sends
    /// what its recording holds after it, then the stream live; [`Self::take_shared`] gives
    /// each message once, in order, across leader changes (the client renews with every member
    /// each second, and a new leader starts from the last message it got) and gaps (it asks
    /// to start again from there). No session is needed.
    pub fn follow_shared(&mut self, after: EgressMark) {
        self.following = Some(Following {
            mark: after,
            renewed: Instant::now(),
            restart_asked: None,
            counts: ClientCounts::default(),
        });
        self.send_follow(false);
    }

    /// Stop following the shared stream (the leader drops it within 5 s).
    pub fn unfollow_shared(&mut self) {
        self.following = None;
        self.shared.clear();
    }

    /// The shared stream's messages that arrived since the last call, each once, in order.
    pub fn take_shared(&mut self) -> Vec<Egress> {
        std::mem::take(&mut self.shared)
    }

    /// The last shared message given to the application, and what it took to give each once.
    pub fn shared_mark(&self) -> Option<(EgressMark, ClientCounts)> {
        self.following
            .map(|following| (following.mark, following.counts))
    }

    /// Ask every member to follow (or renew following) the shared stream from the mark.
    fn send_follow(&mut self, renew: bool) {
        let Some(following) = self.following.as_mut() else {
            return;
        };
        following.renewed = Instant::now();
        if !renew {
            following.restart_asked = Some(Instant::now());
            following.counts.resumes += 1;
        }
        let mark = following.mark;
        let request = Request::Follow {
            after: Resume {
                correlation_id: self.correlation(),
                session_id: SHARED_SESSION_ID,
                after_sequence: mark.sequence,
                after_number: mark.number,
                after_timestamp_ns: mark.timestamp_ns,
            },
            response_stream_id: EGRESS_STREAM_ID,
            response_channel: self.response_channel.clone(),
            renew,
        }
        .encode();
        let members: Vec<u64> = self.members.iter().map(|member| member.id).collect();
        for member in members {
            self.offer_to(member, &request);
        }
    }

    /// Take in a shared message: each once, in order; a gap asks to start again.
    fn on_shared(&mut self, egress: &Egress) {
        let Some(following) = self.following.as_mut() else {
            return;
        };
        let last = following.mark.sequence;
        if egress.sequence <= last {
            following.counts.duplicates += 1;
        } else if egress.sequence > last + 1 {
            following.counts.gaps += 1;
            if following.restart_asked.is_none() {
                self.send_follow(false);
            }
        } else {
            following.mark = EgressMark::of(egress);
            self.shared.push(egress.clone());
        }
    }

    /// Read `session_id`'s recorded egress after `after` from the members' egress recordings,
    /// giving each message to `on_message` once, in order: the session may be open or long
    /// closed (a client away for hours, a process restarted with the mark it kept). It asks
    /// `first` (or the first member), and when a member refuses, does not answer, or stalls for
    /// a second, the next one, from the last message it got. It ends when a member has sent all
    /// it had recorded when asked (a live session's later egress comes live, or by a resume).
    ///
    /// # Errors
    /// No member finished within `timeout`; the error names what each said; or the session is
    /// this client's own ([`ClusterError::Client`]).
    pub fn replay_egress(
        &mut self,
        session_id: i64,
        after: EgressMark,
        first: Option<u64>,
        timeout: Duration,
        on_message: &mut dyn FnMut(&Egress),
    ) -> Result<Replayed> {
        if Some(session_id) == self.session_id {
            return Err(ClusterError::Client(format!(
                "session {session_id} is this client's own: its egress comes live, and by a resume"
            )));
        }
        let deadline = Instant::now() + timeout;
        let ids: Vec<u64> = self.members.iter().map(|member| member.id).collect();
        let start = first
            .and_then(|id| ids.iter().position(|member| *member == id))
            .unwrap_or(0);
        let mut replayed = Replayed {
            messages: 0,
            last: after,
            member: 0,
            requests: 0,
            duplicates: 0,
            detail: String::new(),
        };
        let mut said = BTreeMap::new();
        self.replaying = Some(session_id);
        self.replayed.clear();
        let mut idle = BackoffIdle::new();
        let mut attempt = 0;
        let outcome = 'members: loop {
            let member = ids[(start + attempt) % ids.len()];
            attempt += 1;
            if Instant::now() >= deadline {
                break None;
            }
            let correlation_id = self.correlation();
            let request = Request::Replay {
                after: Resume {
                    correlation_id,
                    session_id,
                    after_sequence: replayed.last.sequence,
                    after_number: replayed.last.number,
                    after_timestamp_ns: replayed.last.timestamp_ns,
                },
                response_stream_id: EGRESS_STREAM_ID,
                response_channel: self.response_channel.clone(),
            }
            .encode();
            let mut progress = Instant::now();
            while !self.offer_to(member, &request) {
                if progress.elapsed() > REPLAY_STALL {
                    said.insert(member, "its ingress did not connect".to_string());
                    continue 'members;
                }
                self.poll();
                std::thread::sleep(Duration::from_millis(1));
            }
            replayed.requests += 1;
            loop {
                let work = self.poll();
                for egress in std::mem::take(&mut self.replayed) {
                    if egress.sequence <= replayed.last.sequence {
                        replayed.duplicates += 1;
                    } else if egress.sequence == replayed.last.sequence + 1 {
                        on_message(&egress);
                        replayed.last = EgressMark::of(&egress);
                        replayed.messages += 1;
                        progress = Instant::now();
                    }
                    // Past a gap: a member given up on, still sending; the one asked fills it.
                }
                let answer = self.events.iter().position(|event| {
                    matches!(event, Response::SessionEvent { correlation_id: id, code, .. }
                        if *id == correlation_id
                            && matches!(code, EventCode::Replayed | EventCode::Error))
                });
                if let Some(index) = answer {
                    if let Response::SessionEvent { code, detail, .. } = self.events.remove(index) {
                        if code == EventCode::Replayed {
                            replayed.member = member;
                            replayed.detail = detail;
                            break 'members Some(());
                        }
                        said.insert(member, detail);
                        continue 'members;
                    }
                }
                if Instant::now() >= deadline {
                    break 'members None;
                }
                if progress.elapsed() > REPLAY_STALL {
                    said.insert(member, "no answer in 1 s".to_string());
                    continue 'members;
                }
                idle.idle(work);
            }
        };
        self.replaying = None;
        self.replayed.clear();
        // The answers of members given up on (a late error or end) are of no use now.
        self.events.retain(|event| {
            !matches!(event, Response::SessionEvent { session_id: id, code, .. }
                if *id == session_id && matches!(code, EventCode::Error | EventCode::Replayed))
        });
        match outcome {
            Some(()) => Ok(replayed),
            None => Err(ClusterError::Client(format!(
                "no member replayed session {session_id}'s egress in {} ms ({} messages read; {})",
                timeout.as_millis(),
                replayed.messages,
                if said.is_empty() {
                    "no member answered".to_string()
                } else {
                    said.iter()
                        .map(|(member, detail)| format!("member {member}: {detail}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                }
            ))),
        }
    }

    /// What the client did to give each egress message once, in order.
    pub fn counts(&self) -> ClientCounts {
        self.counts
    }

    /// The egress that arrived since the last call.
    pub fn take_egress(&mut self) -> Vec<Egress> {
        std::mem::take(&mut self.egress)
    }

    /// Send `payload` and wait for the next egress message (the service's reply).
    ///
    /// # Errors
    /// Not connected, or no reply within `timeout` ([`ClusterError::Client`]).
    pub fn request(&mut self, payload: &[u8], timeout: Duration) -> Result<Egress> {
        let deadline = Instant::now() + timeout;
        // What a catch-up brings is older than the reply: let it come first.
        if self.resuming() {
            let left = deadline.saturating_duration_since(Instant::now());
            self.wait_for(left, |client| (!client.resuming()).then_some(()));
        }
        while !self.offer(payload) {
            if Instant::now() > deadline || self.session_id.is_none() {
                return Err(ClusterError::Client(
                    "the leader did not take the message".into(),
                ));
            }
            self.poll();
            std::thread::sleep(Duration::from_millis(1));
        }
        // The reply is the first message after those already in hand (left for take_egress).
        let before = self.egress.len();
        let left = deadline.saturating_duration_since(Instant::now());
        self.wait_for(left, |client| {
            (client.egress.len() > before).then(|| client.egress.remove(before))
        })
        .ok_or_else(|| ClusterError::Client(format!("no reply in {} ms", timeout.as_millis())))
    }

    /// Close the session.
    pub fn close(&mut self) {
        if let (Some(session_id), Some(leader)) = (self.session_id.take(), self.leader) {
            self.offer_to(
                leader,
                &Request::Session(Ingress::Close { session_id }).encode(),
            );
        }
    }

    /// Ask a member for its status (or a snapshot first, with `snapshot`); `None` when it does
    /// not answer within `timeout`.
    pub fn status_of(
        &mut self,
        member: u64,
        snapshot: bool,
        timeout: Duration,
    ) -> Option<NodeStatus> {
        let correlation_id = self.correlation();
        let request = Request::Status {
            correlation_id,
            response_stream_id: EGRESS_STREAM_ID,
            response_channel: self.response_channel.clone(),
            snapshot,
        }
        .encode();
        let deadline = Instant::now() + timeout;
        while !self.offer_to(member, &request) {
            if Instant::now() > deadline {
                return None;
            }
            self.poll();
            std::thread::sleep(Duration::from_millis(1));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        self.wait_for(left, |client| {
            let index = client.events.iter().position(|event| {
                matches!(event, Response::Status { correlation_id: id, .. } if *id == correlation_id)
            })?;
            match client.events.remove(index) {
                Response::Status { status, .. } => Some(status),
                _ => None,
            }
        })
    }
}
