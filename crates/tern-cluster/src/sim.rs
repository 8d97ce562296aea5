//! The deterministic simulation: several nodes and clients in one thread, a network, disks and
//! clocks all driven by one seed. The network loses, duplicates, delays (so reorders) and
//! partitions; nodes crash (losing what their [`SimDisk`] did not sync, sometimes with a torn
//! write) and restart; each node's wall clock steps minutes back or forth now and then (its
//! monotonic clock does not). After every step the invariants are checked:
//!
//! - at most one leader per term;
//! - a committed entry is the same on every node that holds it, and stays so (across crashes);
//! - every node offers the same egress (session, sequence, log index, payload) and its service
//!   state is the same at the same applied index;
//! - every node's egress recording is a prefix of the longest one, byte for byte (checked every
//!   250 simulated ms and at the end, when all are equal);
//! - at the end, with the network healed and every node up, all nodes reach the same state and
//!   every message a client got a reply for is in it (no acknowledged ingress lost).
//!
//! A failure names its seed and step; [`run`] with that seed replays it exactly.

use crate::command::CloseReason;
use crate::kv::KvService;
use crate::log::LogConfig;
use crate::node::{Action, ConsensusNode, Ingress, IngressReply, NodeConfig, Now};
use crate::service::{ClusteredService, Output, Role};
use crate::wire::{self, Frame};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use tern_store::{Io, SimDisk, Storage, WriteMode};

/// How hostile a simulated run is.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Drives everything.
    pub seed: u64,
    /// Cluster members (3, or 5 for every fourth seed).
    pub members: usize,
    /// Clients.
    pub clients: usize,
    /// Simulated milliseconds of faults and load, before the healing phase.
    pub millis: u64,
    /// Chance a packet is lost.
    pub loss: f64,
    /// Chance a packet is delivered twice.
    pub duplicate: f64,
    /// Largest one-way delay, in ms (delays differ per packet, so packets reorder).
    pub max_delay_ms: i64,
    /// Chance per ms that a live node crashes.
    pub crash_per_ms: f64,
    /// Chance per ms that the network is split (or healed when split).
    pub partition_per_ms: f64,
    /// Applied entries between snapshots (small, so snapshots and their install run).
    pub snapshot_every: u64,
    /// The longest message the network carries (Aeron's maximum message): a node sends a
    /// longer consensus message (a snapshot, a long append) in chunks no longer than this.
    pub max_peer_message_length: usize,
    /// Chance per ms that a node's wall clock steps, by 1 to 10 minutes back or forth (an NTP
    /// correction). Drawn from a generator of its own, so the other faults of a seed stay.
    pub clock_step_per_ms: f64,
}

impl SimConfig {
    /// The default hostility for `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            members: if seed % 4 == 3 { 5 } else { 3 },
            clients: 3,
            millis: 3_000,
            loss: 0.05,
            duplicate: 0.02,
            max_delay_ms: 4,
            crash_per_ms: 0.0015,
            partition_per_ms: 0.001,
            snapshot_every: 40,
            max_peer_message_length: 8 << 10,
            clock_step_per_ms: 0.0005,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    /// Messages clients got replies for.
    pub acknowledged: usize,
    /// Node crashes.
    pub crashes: usize,
    /// Partitions made.
    pub partitions: usize,
    /// Leaders elected (distinct terms with a leader).
    pub leaders: usize,
    /// The applied index all nodes reached at the end.
    pub final_applied: u64,
    /// Snapshots installed from a leader or taken (highest snapshot index seen across nodes).
    pub max_snapshot_index: u64,
    /// Bytes of the longest egress recording.
    pub egress_bytes: u64,
    /// Times a node's egress recording fell behind a snapshot it installed (and had the rest
    /// copied from a peer: at the end all recordings are equal).
    pub egress_behind: usize,
    /// Consensus messages sent in chunks (longer than the network's maximum message).
    pub chunked_messages: usize,
    /// Consensus messages a node put together from chunks.
    pub reassembled: usize,
    /// Wall-clock steps made.
    pub clock_steps: usize,
    /// Sessions a leader closed because they timed out.
    pub timeouts: usize,
}

/// A run that broke an invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFailure {
    /// The seed to rerun.
    pub seed: u64,
    /// The simulated millisecond it happened at.
    pub at_ms: u64,
    /// What broke.
    pub message: String,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulation seed {} failed at {} ms: {} (rerun: TERN_SIM_SEED={} cargo test -p tern-cluster --test simulation)",
            self.seed, self.at_ms, self.message, self.seed
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    Node(u64),
    Client(usize),
}

#[derive(Debug, Clone)]
enum Packet {
    Peer(Vec<u8>),
    Ingress(Ingress),
    Reply(IngressReply),
    Event(Output),
}

#[derive(Debug)]
struct InFlight {
    deliver_at: i64,
    /// Send order, so equal delivery times keep one order.
    sequence: u64,
    from: Endpoint,
    to: Endpoint,
    packet: Packet,
}

struct SimNode {
    id: u64,
    disk: Arc<SimDisk>,
    node: Option<ConsensusNode<KvService>>,
    restart_at: i64,
    /// Committed entries checked against the global record, up to this index.
    checked_commit: u64,
    /// The simulated time its process started: its monotonic clock counts from there.
    started_at: i64,
    /// Its wall clock's distance from the simulated time (the machine's: it outlives a crash).
    wall_offset_ns: i64,
    /// Its egress recording is behind a snapshot it installed (seen in the last check).
    egress_behind: bool,
}

#[derive(Debug, Default)]
struct SimClient {
    session: Option<i64>,
    connecting: Option<(i64, i64)>,
    target: u64,
    next_message: u64,
    /// Message number to (payload, last send time).
    outstanding: BTreeMap<u64, (Vec<u8>, i64)>,
    acknowledged: BTreeMap<Vec<u8>, Vec<u8>>,
    next_send_at: i64,
}

const MS: i64 = 1_000_000;
/// The simulated cluster's id (not the default, so it is carried and checked).
const CLUSTER_ID: u64 = 0x7e57;
const EPOCH_NS: i64 = 1_700_000_000_000_000_000;

/// Run one simulation.
///
/// # Errors
/// The invariant that broke, with the seed and time.
pub fn run(config: &SimConfig) -> Result<SimReport, SimFailure> {
    let mut simulation = Simulation::new(config.clone());
    // A panic (raft-rs asserts its invariants) is a failure of this seed like any other.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| simulation.run())) {
        Ok(result) => result,
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(simulation.fail(format!("panicked: {text}")))
        }
    }
}

struct Simulation {
    config: SimConfig,
    rng: StdRng,
    /// Only for the wall clocks' steps.
    clock_rng: StdRng,
    now: i64,
    ms: u64,
    nodes: Vec<SimNode>,
    clients: Vec<SimClient>,
    network: Vec<InFlight>,
    sent: u64,
    /// Groups of nodes that can talk; empty: no partition.
    partition: Vec<BTreeSet<u64>>,
    leaders: BTreeMap<u64, u64>,
    committed: BTreeMap<u64, (u64, u64)>,
    egress: BTreeMap<(i64, u64), (u64, u64)>,
    states: BTreeMap<u64, u64>,
    /// Session id to the client that opened it (from the log: the same on every node).
    sessions: BTreeMap<i64, usize>,
    report: SimReport,
    election_ticks: Vec<usize>,
    /// Sessions closed for a timeout.
    timed_out: BTreeSet<i64>,
}

fn digest(bytes: &[u8]) -> u64 {
    // FNV-1a: stable across runs and platforms.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Simulation {
    fn new(config: SimConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        // Election timeouts fixed per node from the seed (raft-rs would draw them from
        // thread_rng), in a narrow range, so two nodes often time out together and split votes
        // (where a forgotten vote would elect two leaders in a term).
        let election_ticks: Vec<usize> =
            (0..config.members).map(|_| rng.gen_range(10..14)).collect();
        let nodes = (1..=config.members as u64)
            .map(|id| SimNode {
                id,
                disk: Arc::new(SimDisk::new()),
                node: None,
                restart_at: 0,
                checked_commit: 0,
                started_at: EPOCH_NS,
                wall_offset_ns: 0,
                egress_behind: false,
            })
            .collect();
        let clients = (0..config.clients)
            .map(|_| SimClient {
                target: 1,
                ..SimClient::default()
            })
            .collect();
        let clock_rng = StdRng::seed_from_u64(config.seed ^ 0x636c_6f63_6b73);
        Self {
            config,
            rng,
            clock_rng,
            now: EPOCH_NS,
            ms: 0,
            nodes,
            clients,
            network: Vec::new(),
            sent: 0,
            partition: Vec::new(),
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            egress: BTreeMap::new(),
            states: BTreeMap::new(),
            sessions: BTreeMap::new(),
            report: SimReport::default(),
            election_ticks,
            timed_out: BTreeSet::new(),
        }
    }

    fn fail(&self, message: impl Into<String>) -> SimFailure {
        SimFailure {
            seed: self.config.seed,
            at_ms: self.ms,
            message: message.into(),
        }
    }

    fn node_config(&self, id: u64) -> NodeConfig {
        let members = (1..=self.config.members as u64).collect();
        let mut config = NodeConfig::new(id, members, PathBuf::from(format!("/node-{id}")));
        config.log = LogConfig {
            term_length: 64 << 10,
            segment_length: 128 << 10,
            mode: WriteMode::Buffered,
            buffer_length: (64 << 10) + 4096,
        };
        config.tick_ns = 5 * MS;
        config.heartbeat_ticks = 2;
        let ticks = self.election_ticks[(id - 1) as usize];
        config.min_election_ticks = ticks;
        config.max_election_ticks = ticks + 1;
        config.session_timeout_ns = 1_000 * MS;
        config.max_message_length = 1024;
        config.max_batch_length = 32 << 10;
        config.snapshot_every = self.config.snapshot_every;
        config.max_peer_message_length = self.config.max_peer_message_length;
        config.cluster_id = CLUSTER_ID;
        config
    }

    fn start_node(&mut self, index: usize) -> Result<(), SimFailure> {
        let id = self.nodes[index].id;
        let config = self.node_config(id);
        let storage: Arc<dyn Storage> = self.nodes[index].disk.clone();
        // A new process: its monotonic clock starts at 0.
        self.nodes[index].started_at = self.now;
        match ConsensusNode::open(
            config,
            Io::inline(storage),
            KvService::new(),
            self.now_of(index),
        ) {
            Ok(node) => {
                self.nodes[index].node = Some(node);
                self.nodes[index].checked_commit = 0;
                Ok(())
            }
            Err(error) => Err(self.fail(format!("node {id} cannot restart: {error}"))),
        }
    }

    fn run(&mut self) -> Result<SimReport, SimFailure> {
        for index in 0..self.nodes.len() {
            self.start_node(index)?;
        }
        let fault_ms = self.config.millis;
        // Faults and load, then a healed network with every node up until all agree.
        while self.ms < fault_ms {
            self.step(true)?;
        }
        self.partition.clear();
        for index in 0..self.nodes.len() {
            if self.nodes[index].node.is_none() {
                self.start_node(index)?;
            }
        }
        let deadline = self.ms + 20_000;
        loop {
            self.step(false)?;
            if self.settled() {
                break;
            }
            if self.ms >= deadline {
                let status: Vec<String> = self
                    .nodes
                    .iter()
                    .filter_map(|node| node.node.as_ref())
                    .map(|node| format!("{:?}", node.status()))
                    .collect();
                return Err(self.fail(format!(
                    "the cluster did not settle in 20 s after healing: {}",
                    status.join("; ")
                )));
            }
        }
        self.final_check()?;
        Ok(self.report.clone())
    }

    /// Every live node's egress recording, as far as it is in the files, is a prefix of the
    /// longest; with `equal`, all are the same length too.
    fn check_egress_recordings(&mut self, equal: bool) -> Result<(), SimFailure> {
        let mut recordings: Vec<(u64, Vec<u8>)> = Vec::new();
        for node in &self.nodes {
            let Some(live) = node.node.as_ref() else {
                continue;
            };
            let recording = live.egress().expect("the simulation records egress");
            let end = recording.flushed_position();
            let segment_length = i64::from(recording.segment_length());
            let mut bytes = Vec::with_capacity(end as usize);
            let mut base = 0;
            while base < end {
                let path = recording.dir().join(tern_store::segment::segment_file_name(
                    crate::egress::EGRESS_RECORDING_ID,
                    base,
                ));
                let length = (end - base).min(segment_length) as usize;
                let mut chunk = vec![0u8; length];
                let read = node
                    .disk
                    .open(&path, tern_store::OpenOptions::read())
                    .and_then(|file| file.read_full_at(&mut chunk, 0));
                match read {
                    Ok(read) if read == length => bytes.extend_from_slice(&chunk),
                    other => {
                        return Err(self.fail(format!(
                            "node {}'s egress recording cannot be read to {end}: {other:?}",
                            node.id
                        )))
                    }
                }
                base += segment_length;
            }
            recordings.push((node.id, bytes));
        }
        let Some((longest_id, longest)) = recordings
            .iter()
            .max_by_key(|(_, bytes)| bytes.len())
            .cloned()
        else {
            return Ok(());
        };
        for (id, bytes) in &recordings {
            if !longest.starts_with(bytes) {
                let at = bytes
                    .iter()
                    .zip(&longest)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(self.fail(format!(
                    "node {id}'s egress recording differs from node {longest_id}'s at byte {at}"
                )));
            }
            if equal && bytes.len() != longest.len() {
                return Err(self.fail(format!(
                    "node {id}'s egress recording ends at {} where node {longest_id}'s ends at {}",
                    bytes.len(),
                    longest.len()
                )));
            }
        }
        self.report.egress_bytes = self.report.egress_bytes.max(longest.len() as u64);
        Ok(())
    }

    /// Every node up, one leader, every client's outstanding messages answered, and all at the
    /// same applied index.
    fn settled(&self) -> bool {
        let live: Vec<&ConsensusNode<KvService>> = self
            .nodes
            .iter()
            .filter_map(|node| node.node.as_ref())
            .collect();
        if live.len() != self.nodes.len() {
            return false;
        }
        let leaders = live
            .iter()
            .filter(|node| node.role() == Role::Leader)
            .count();
        let applied: BTreeSet<u64> = live
            .iter()
            .map(|node| node.status().applied_index)
            .collect();
        let commit: BTreeSet<u64> = live.iter().map(|node| node.status().commit_index).collect();
        // Every egress recording whole: none behind a snapshot, all written to the files.
        let egress_whole = live.iter().all(|node| {
            let egress = node.egress().expect("the simulation records egress");
            egress.behind_from().is_none() && egress.flushed_position() == egress.position()
        });
        leaders == 1
            && applied.len() == 1
            && commit.len() == 1
            && applied == commit
            && egress_whole
            && self.network.is_empty()
            && self
                .clients
                .iter()
                .all(|client| client.session.is_some() && client.outstanding.is_empty())
    }

    /// Node `index`'s clocks now.
    fn now_of(&self, index: usize) -> Now {
        let node = &self.nodes[index];
        Now {
            monotonic_ns: self.now - node.started_at,
            wall_ns: self.now + node.wall_offset_ns,
        }
    }

    /// Now and then a node's wall clock steps minutes back or forth.
    fn step_clocks(&mut self) {
        for index in 0..self.nodes.len() {
            if self.clock_rng.gen_bool(self.config.clock_step_per_ms) {
                let minutes = self.clock_rng.gen_range(1..=10);
                let sign = if self.clock_rng.gen_bool(0.5) { 1 } else { -1 };
                self.nodes[index].wall_offset_ns += sign * minutes * 60_000 * MS;
                self.report.clock_steps += 1;
            }
        }
    }

    fn step(&mut self, faults: bool) -> Result<(), SimFailure> {
        self.ms += 1;
        self.now += MS;
        if faults {
            self.step_clocks();
        }
        if faults {
            self.faults()?;
        } else {
            for index in 0..self.nodes.len() {
                if self.nodes[index].node.is_none() {
                    self.start_node(index)?;
                }
            }
        }
        self.deliver()?;
        for index in 0..self.nodes.len() {
            self.work(index)?;
        }
        self.clients_act(faults);
        self.check()?;
        if self.ms.is_multiple_of(250) {
            self.check_egress_recordings(false)?;
        }
        Ok(())
    }

    fn faults(&mut self) -> Result<(), SimFailure> {
        for index in 0..self.nodes.len() {
            if self.nodes[index].node.is_none() {
                if self.now >= self.nodes[index].restart_at {
                    self.start_node(index)?;
                }
                continue;
            }
            let live = self.nodes.iter().filter(|node| node.node.is_some()).count();
            // At most a minority down at once, so the cluster can make progress.
            if live * 2 > self.config.members + 1 && self.rng.gen_bool(self.config.crash_per_ms) {
                self.crash(index);
            }
        }
        if self.rng.gen_bool(self.config.partition_per_ms) {
            if self.partition.is_empty() {
                let mut ids: Vec<u64> = (1..=self.config.members as u64).collect();
                ids.shuffle(&mut self.rng);
                let cut = self.rng.gen_range(1..ids.len());
                self.partition = vec![
                    ids[..cut].iter().copied().collect(),
                    ids[cut..].iter().copied().collect(),
                ];
                self.report.partitions += 1;
            } else {
                self.partition.clear();
            }
        }
        Ok(())
    }

    fn crash(&mut self, index: usize) {
        let torn = if self.rng.gen_bool(0.5) {
            0
        } else {
            self.rng.gen_range(1..4096)
        };
        let node = &mut self.nodes[index];
        node.node = None;
        node.disk = Arc::new(if torn == 0 {
            node.disk.crash()
        } else {
            node.disk.crash_torn(torn)
        });
        // Often back at once (a supervisor restarting it), so packets sent to the dead process
        // reach the new one: what it forgot is asked of it again.
        node.restart_at = self.now
            + if self.rng.gen_bool(0.4) {
                self.rng.gen_range(1..4)
            } else {
                self.rng.gen_range(20..400)
            } * MS;
        self.report.crashes += 1;
    }

    fn connected(&self, from: Endpoint, to: Endpoint) -> bool {
        let (Endpoint::Node(a), Endpoint::Node(b)) = (from, to) else {
            // Clients reach every node; a partition cuts members from each other.
            return true;
        };
        self.partition.is_empty()
            || self
                .partition
                .iter()
                .any(|group| group.contains(&a) && group.contains(&b))
    }

    fn send(&mut self, from: Endpoint, to: Endpoint, packet: Packet, faults: bool) {
        if faults && self.rng.gen_bool(self.config.loss) {
            return;
        }
        let copies = if faults && self.rng.gen_bool(self.config.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if faults {
                self.rng.gen_range(0..=self.config.max_delay_ms)
            } else {
                1
            };
            self.sent += 1;
            self.network.push(InFlight {
                deliver_at: self.now + delay.max(1) * MS,
                sequence: self.sent,
                from,
                to,
                packet: packet.clone(),
            });
        }
    }

    fn deliver(&mut self) -> Result<(), SimFailure> {
        let now = self.now;
        let mut due: Vec<InFlight> = Vec::new();
        let mut index = 0;
        while index < self.network.len() {
            if self.network[index].deliver_at <= now {
                due.push(self.network.swap_remove(index));
            } else {
                index += 1;
            }
        }
        due.sort_by_key(|packet| (packet.deliver_at, packet.sequence));
        for packet in due {
            if !self.connected(packet.from, packet.to) {
                continue;
            }
            match (packet.to, packet.packet) {
                (Endpoint::Node(id), Packet::Peer(bytes)) => {
                    if let Some(node) = self.node_mut(id) {
                        let before = node.peer_counts().received.reassembled;
                        if let Err(error) = node.on_peer(&bytes) {
                            return Err(
                                self.fail(format!("node {id} refused a peer message: {error}"))
                            );
                        }
                        let after = node.peer_counts().received.reassembled;
                        self.report.reassembled += (after - before) as usize;
                    }
                }
                (Endpoint::Node(id), Packet::Ingress(ingress)) => {
                    let Endpoint::Client(client) = packet.from else {
                        continue;
                    };
                    let Some(index) = self.nodes.iter().position(|node| node.id == id) else {
                        continue;
                    };
                    let monotonic_ns = self.now_of(index).monotonic_ns;
                    if let Some(node) = self.node_mut(id) {
                        let reply = node.on_ingress(monotonic_ns, ingress);
                        if reply != IngressReply::Accepted {
                            self.send(
                                Endpoint::Node(id),
                                Endpoint::Client(client),
                                Packet::Reply(reply),
                                true,
                            );
                        }
                    }
                }
                (Endpoint::Client(client), Packet::Reply(reply)) => {
                    self.on_reply(client, packet.from, reply);
                }
                (Endpoint::Client(client), Packet::Event(output)) => {
                    self.on_event(client, output);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn node_mut(&mut self, id: u64) -> Option<&mut ConsensusNode<KvService>> {
        self.nodes
            .iter_mut()
            .find(|node| node.id == id)
            .and_then(|node| node.node.as_mut())
    }

    fn work(&mut self, index: usize) -> Result<(), SimFailure> {
        let now = self.now_of(index);
        let id = self.nodes[index].id;
        let Some(node) = self.nodes[index].node.as_mut() else {
            return Ok(());
        };
        let mut actions = Vec::new();
        if let Err(error) = node.do_work(now, &mut actions) {
            return Err(self.fail(format!("node {id} failed: {error}")));
        }
        for action in actions {
            match action {
                Action::Peer { to, bytes } => {
                    // The transport takes nothing longer (Aeron refuses the offer).
                    if bytes.len() > self.config.max_peer_message_length {
                        return Err(self.fail(format!(
                            "node {id} sent a consensus message of {} bytes, longer than the network's {}",
                            bytes.len(),
                            self.config.max_peer_message_length
                        )));
                    }
                    if let Ok(Frame::Chunk(chunk)) = wire::decode(CLUSTER_ID, &bytes) {
                        self.report.chunked_messages += usize::from(chunk.index == 0);
                    }
                    self.send(
                        Endpoint::Node(id),
                        Endpoint::Node(to),
                        Packet::Peer(bytes),
                        true,
                    );
                }
                Action::Applied { output, leader } => {
                    self.check_output(id, &output)?;
                    if let Output::SessionClosed {
                        session,
                        reason: CloseReason::Timeout,
                    } = &output
                    {
                        self.timed_out.insert(session.id);
                        self.report.timeouts = self.timed_out.len();
                    }
                    if let Output::SessionOpened { session, .. } = &output {
                        if let Some(client) = client_of(&session.response_channel) {
                            self.sessions.insert(session.id, client);
                        }
                    }
                    if leader {
                        let client = match &output {
                            Output::SessionOpened { session, .. }
                            | Output::SessionClosed { session, .. } => {
                                client_of(&session.response_channel)
                            }
                            Output::Egress(egress) => {
                                self.sessions.get(&egress.session_id).copied()
                            }
                        };
                        if let Some(client) = client {
                            self.send(
                                Endpoint::Node(id),
                                Endpoint::Client(client),
                                Packet::Event(output),
                                true,
                            );
                        }
                    }
                }
                Action::RoleChanged { role, term, .. } => {
                    if role == Role::Leader {
                        if let Some(other) = self.leaders.insert(term, id) {
                            if other != id {
                                return Err(self.fail(format!(
                                    "two leaders in term {term}: {other} and {id}"
                                )));
                            }
                        }
                        self.report.leaders = self.leaders.len();
                    }
                }
            }
        }
        Ok(())
    }

    /// Every node offers the same egress.
    fn check_output(&mut self, id: u64, output: &Output) -> Result<(), SimFailure> {
        if let Output::Egress(egress) = output {
            let key = (egress.session_id, egress.sequence);
            let value = (egress.log_index, digest(&egress.payload));
            if let Some(seen) = self.egress.insert(key, value) {
                if seen != value {
                    return Err(self.fail(format!(
                        "node {id} offered session {} sequence {} at log index {} where another node did at {}",
                        egress.session_id, egress.sequence, value.0, seen.0
                    )));
                }
            }
        }
        Ok(())
    }

    fn clients_act(&mut self, faults: bool) {
        let now = self.now;
        let members = self.config.members as u64;
        for index in 0..self.clients.len() {
            let client = &mut self.clients[index];
            let mut sends = Vec::new();
            match client.session {
                None => {
                    let stale = client
                        .connecting
                        .is_none_or(|(_, since)| now - since > 300 * MS);
                    if stale {
                        let correlation_id = (index as i64) << 32 | (now / MS) & 0xffff_ffff;
                        client.connecting = Some((correlation_id, now));
                        sends.push((
                            client.target,
                            Ingress::Connect {
                                correlation_id,
                                response_stream_id: 102,
                                response_channel: format!("sim:client-{index}"),
                                credentials: Vec::new(),
                            },
                        ));
                    }
                }
                Some(session_id) => {
                    if faults && now >= client.next_send_at && client.outstanding.len() < 8 {
                        client.next_message += 1;
                        let number = client.next_message;
                        let payload = format!("put c{index}m{number} {number}").into_bytes();
                        client.outstanding.insert(number, (payload.clone(), now));
                        sends.push((
                            client.target,
                            Ingress::Message {
                                session_id,
                                payload,
                            },
                        ));
                        client.next_send_at = now + 2 * MS;
                    }
                    // Unanswered messages go again (a put is idempotent).
                    for (payload, sent_at) in client.outstanding.values_mut() {
                        if now - *sent_at > 200 * MS {
                            *sent_at = now;
                            sends.push((
                                client.target,
                                Ingress::Message {
                                    session_id,
                                    payload: payload.clone(),
                                },
                            ));
                        }
                    }
                    if now % (100 * MS) == 0 {
                        sends.push((client.target, Ingress::KeepAlive { session_id }));
                    }
                }
            }
            let target = client.target.clamp(1, members);
            for (to, ingress) in sends {
                self.send(
                    Endpoint::Client(index),
                    Endpoint::Node(to.clamp(1, members)),
                    Packet::Ingress(ingress),
                    true,
                );
            }
            self.clients[index].target = target;
        }
    }

    fn on_reply(&mut self, index: usize, from: Endpoint, reply: IngressReply) {
        let members = self.config.members as u64;
        let Endpoint::Node(from) = from else {
            return;
        };
        let client = &mut self.clients[index];
        match reply {
            IngressReply::Accepted => {}
            IngressReply::NotLeader { leader } => {
                client.target = leader.unwrap_or(from % members + 1);
                // Try again soon at the leader.
                client.connecting = client.connecting.map(|(id, _)| (id, 0));
                for (_, sent_at) in client.outstanding.values_mut() {
                    *sent_at = 0;
                }
            }
            IngressReply::Rejected(_) => {
                // The session is gone (timed out, say): connect again; unanswered messages go
                // again on the new session.
                client.session = None;
                client.connecting = None;
            }
        }
    }

    fn on_event(&mut self, index: usize, output: Output) {
        let client = &mut self.clients[index];
        match output {
            Output::SessionOpened {
                correlation_id,
                session,
            } => {
                if client
                    .connecting
                    .is_some_and(|(id, _)| id == correlation_id)
                    && client.session.is_none()
                {
                    client.session = Some(session.id);
                    client.connecting = None;
                    for (_, sent_at) in client.outstanding.values_mut() {
                        *sent_at = 0;
                    }
                }
            }
            Output::SessionClosed { session, reason } => {
                if client.session == Some(session.id) {
                    debug_assert!(reason != CloseReason::ServiceAction);
                    client.session = None;
                    client.connecting = None;
                }
            }
            Output::Egress(egress) => {
                if client.session != Some(egress.session_id) {
                    return;
                }
                // "ok <key>": the put of that key is applied (a resent put may be answered
                // twice; the second finds it acknowledged already).
                let Some(key) = egress.payload.strip_prefix(b"ok ") else {
                    return;
                };
                let number = std::str::from_utf8(key)
                    .ok()
                    .and_then(|key| key.split_once('m'))
                    .and_then(|(_, number)| number.parse::<u64>().ok());
                if let Some(number) = number {
                    if client.outstanding.remove(&number).is_some() {
                        client
                            .acknowledged
                            .insert(key.to_vec(), number.to_string().into_bytes());
                    }
                }
            }
        }
    }

    fn check(&mut self) -> Result<(), SimFailure> {
        for index in 0..self.nodes.len() {
            let id = self.nodes[index].id;
            let checked_commit = self.nodes[index].checked_commit;
            let Some(behind) = self.nodes[index].node.as_ref().map(|node| {
                node.egress()
                    .is_some_and(|egress| egress.behind_from().is_some())
            }) else {
                continue;
            };
            if behind && !self.nodes[index].egress_behind {
                self.report.egress_behind += 1;
            }
            self.nodes[index].egress_behind = behind;
            let node = self.nodes[index].node.as_ref().expect("live");
            let status = node.status();
            self.report.max_snapshot_index =
                self.report.max_snapshot_index.max(status.snapshot_index);
            // Committed entries agree everywhere and never change.
            let log = node.storage().log();
            let from = checked_commit.max(log.first_index().saturating_sub(1));
            let upto = status.commit_index.min(log.last_index());
            let mut problem = None;
            for entry_index in from + 1..=upto {
                let Some(entry) = log.entry(entry_index) else {
                    continue;
                };
                let value = (entry.term, digest(&entry.data));
                if let Some(seen) = self.committed.insert(entry_index, value) {
                    if seen != value {
                        problem = Some(format!(
                            "node {id} holds entry {entry_index} of term {} where term {} was committed",
                            value.0, seen.0
                        ));
                        break;
                    }
                }
            }
            if let Some(problem) = problem {
                return Err(self.fail(problem));
            }
            self.nodes[index].checked_commit = upto.max(self.nodes[index].checked_commit);
            // The service state is the same at the same applied index (its hash chain over
            // everything applied, and the open sessions).
            let applied = status.applied_index;
            let node = self.nodes[index].node.as_ref().expect("live");
            let mut state = node.container().service().digest();
            for session in node.container().sessions() {
                state = state.rotate_left(7) ^ session.id as u64;
            }
            if let Some(seen) = self.states.insert(applied, state) {
                if seen != state {
                    return Err(self.fail(format!(
                        "node {id}'s service differs from another node's at applied index {applied}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn final_check(&mut self) -> Result<(), SimFailure> {
        self.check_egress_recordings(true)?;
        let mut states = BTreeSet::new();
        for node in self.nodes.iter_mut() {
            let live = node.node.as_mut().expect("all up");
            states.insert(node_state(live));
        }
        if states.len() != 1 {
            return Err(self.fail("the nodes' services differ after settling"));
        }
        let leader = self
            .nodes
            .iter()
            .filter_map(|node| node.node.as_ref())
            .find(|node| node.role() == Role::Leader)
            .expect("settled with a leader");
        self.report.final_applied = leader.status().applied_index;
        let service = leader.container().service();
        for (index, client) in self.clients.iter().enumerate() {
            for (key, value) in &client.acknowledged {
                if service.get(key) != Some(value.as_slice()) {
                    return Err(self.fail(format!(
                        "client {index}'s acknowledged put {} = {} is lost",
                        String::from_utf8_lossy(key),
                        String::from_utf8_lossy(value)
                    )));
                }
            }
            self.report.acknowledged += client.acknowledged.len();
        }
        Ok(())
    }
}

/// The service's and the sessions' state, for comparing nodes.
fn node_state(node: &mut ConsensusNode<KvService>) -> Vec<u8> {
    let mut service = node.container().service().clone();
    let mut state = service.on_take_snapshot();
    for session in node.container().sessions() {
        state.extend_from_slice(&session.id.to_le_bytes());
    }
    state
}

fn client_of(channel: &str) -> Option<usize> {
    channel.strip_prefix("sim:client-")?.parse().ok()
}
