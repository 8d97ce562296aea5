//! One node driven by hand: what a vote survives, what ingress gets, what bad input gets, and a
//! restart from snapshot plus log. On a simulated disk and clock, in one thread.

use raft::prelude::{Message, MessageType};
use std::path::PathBuf;
use std::sync::Arc;
use tern_cluster::log::LogConfig;
use tern_cluster::node::{Action, ConsensusNode, Ingress, IngressReply, NodeConfig, Now};
use tern_cluster::wire;
use tern_cluster::{CloseReason, ClusteredService, KvService, Output, Role};
use tern_store::{Io, SimDisk, Storage, WriteMode};

const MS: i64 = 1_000_000;
const START: i64 = 1_700_000_000_000_000_000;

fn config(member_id: u64, members: Vec<u64>) -> NodeConfig {
    let mut config = NodeConfig::new(member_id, members, PathBuf::from("/node"));
    config.log = LogConfig {
        term_length: 64 << 10,
        segment_length: 128 << 10,
        mode: WriteMode::Buffered,
        buffer_length: (64 << 10) + 4096,
    };
    config.max_message_length = 1024;
    config.max_batch_length = 32 << 10;
    config.session_timeout_ns = 500 * MS;
    config
}

/// Both clocks at `now` (the tests that do not step the wall clock).
fn at(now: i64) -> Now {
    Now {
        monotonic_ns: now,
        wall_ns: now,
    }
}

fn open(disk: &Arc<SimDisk>, config: NodeConfig, now: i64) -> ConsensusNode<KvService> {
    let storage: Arc<dyn Storage> = disk.clone();
    ConsensusNode::open(config, Io::inline(storage), KvService::new(), at(now)).expect("open")
}

fn vote_request(from: u64, to: u64, term: u64) -> Vec<u8> {
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgRequestVote);
    message.from = from;
    message.to = to;
    message.term = term;
    wire::encode(0, &message)
}

fn vote_answers(actions: &[Action]) -> Vec<(u64, bool)> {
    vote_answers_of(0, actions)
}

/// The vote answers in `actions`, consensus messages of cluster `cluster_id`.
fn vote_answers_of(cluster_id: u64, actions: &[Action]) -> Vec<(u64, bool)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Peer { to, bytes } => {
                let wire::Frame::Raft(message) = wire::decode(cluster_id, bytes).expect("decodes")
                else {
                    panic!("a chunk");
                };
                (message.get_msg_type() == MessageType::MsgRequestVoteResponse)
                    .then_some((*to, !message.reject))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn the_default_config_is_one_a_node_starts_with() {
    let disk = Arc::new(SimDisk::new());
    let storage: Arc<dyn Storage> = disk.clone();
    let defaults = NodeConfig::new(1, vec![1, 2, 3], PathBuf::from("/node"));
    ConsensusNode::open(defaults, Io::inline(storage), KvService::new(), at(START)).expect("opens");
    let mut bad = NodeConfig::new(4, vec![1, 2, 3], PathBuf::from("/node"));
    let storage: Arc<dyn Storage> = disk.clone();
    let error = ConsensusNode::open(
        bad.clone(),
        Io::inline(storage.clone()),
        KvService::new(),
        at(START),
    )
    .expect_err("not a member");
    assert!(
        error.to_string().contains("member id 4 is not one of"),
        "{error}"
    );
    bad.member_id = 1;
    bad.max_message_length = 4 << 20;
    let error = ConsensusNode::open(bad, Io::inline(storage), KvService::new(), at(START))
        .expect_err("too long");
    assert!(error.to_string().contains("must fit a batch"), "{error}");
}

#[test]
fn a_vote_is_durable_before_it_is_sent_and_survives_a_crash() {
    let disk = Arc::new(SimDisk::new());
    let mut node = open(&disk, config(3, vec![1, 2, 3]), START);
    node.on_peer(&vote_request(1, 3, 2)).expect("step");
    let mut actions = Vec::new();
    node.do_work(at(START), &mut actions).expect("work");
    assert_eq!(vote_answers(&actions), vec![(1, true)]);
    // The power goes right after the answer was sent: the vote was synced before it.
    drop(node);
    let disk = Arc::new(disk.crash());
    let mut node = open(&disk, config(3, vec![1, 2, 3]), START + MS);
    node.on_peer(&vote_request(2, 3, 2)).expect("step");
    let mut actions = Vec::new();
    node.do_work(at(START + MS), &mut actions).expect("work");
    assert_eq!(
        vote_answers(&actions),
        vec![(2, false)],
        "no second vote in term 2"
    );
    assert_eq!(node.status().term, 2);
}

#[test]
fn messages_from_non_members_for_others_or_garbage_are_refused_and_the_node_goes_on() {
    let disk = Arc::new(SimDisk::new());
    let mut node = open(&disk, config(3, vec![1, 2, 3]), START);
    let refused = [
        (vote_request(9, 3, 2), "not a member"),
        (vote_request(3, 3, 2), "not a member"),
        (vote_request(1, 2, 2), "for member 2 reached member 3"),
        (
            [&[2, 1, 0, 0, 9, 0, 0, 0][..], &[0; 8], &[1]].concat(),
            "where the header says",
        ),
        (vec![7; 40], "version 7"),
    ];
    for (bytes, expected) in refused {
        let error = node.on_peer(&bytes).expect_err("refused");
        assert!(error.to_string().contains(expected), "{error}");
    }
    let mut local = Message::default();
    local.set_msg_type(MessageType::MsgHup);
    local.from = 1;
    local.to = 3;
    let error = node.on_peer(&wire::encode(0, &local)).expect_err("local");
    assert!(error.to_string().contains("local raft message"), "{error}");
    // A heartbeat committing past this log (a stray packet) would abort raft-rs: refused.
    let mut stray = Message::default();
    stray.set_msg_type(MessageType::MsgHeartbeat);
    stray.from = 1;
    stray.to = 3;
    stray.term = 9;
    stray.commit = 50;
    let error = node.on_peer(&wire::encode(0, &stray)).expect_err("stray");
    assert!(
        error
            .to_string()
            .contains("commits index 50 past this log's last 0"),
        "{error}"
    );
    // A stale term is no error: Raft answers or ignores it.
    node.on_peer(&vote_request(1, 3, 5)).expect("step");
    let mut stale = Message::default();
    stale.set_msg_type(MessageType::MsgAppend);
    stale.from = 2;
    stale.to = 3;
    stale.term = 1;
    node.on_peer(&wire::encode(0, &stale)).expect("stale term");
    let mut actions = Vec::new();
    node.do_work(at(START), &mut actions)
        .expect("the node goes on");
    assert_eq!(node.status().term, 5);
}

/// A single-member cluster elects itself: the node and its ingress, with no network.
fn leader(disk: &Arc<SimDisk>, mut config: NodeConfig, now: &mut i64) -> ConsensusNode<KvService> {
    config.members = vec![1];
    config.member_id = 1;
    let mut node = open(disk, config, *now);
    let mut actions = Vec::new();
    for _ in 0..200 {
        *now += 10 * MS;
        node.do_work(at(*now), &mut actions).expect("work");
        if node.role() == Role::Leader {
            return node;
        }
    }
    panic!("no leader: {:?}", node.status());
}

fn run(node: &mut ConsensusNode<KvService>, now: &mut i64) -> Vec<Output> {
    let mut outputs = Vec::new();
    for _ in 0..5 {
        *now += MS;
        let mut actions = Vec::new();
        node.do_work(at(*now), &mut actions).expect("work");
        outputs.extend(actions.into_iter().filter_map(|action| match action {
            Action::Applied { output, leader } => {
                assert!(leader);
                Some(output)
            }
            _ => None,
        }));
    }
    outputs
}

fn connect(node: &mut ConsensusNode<KvService>, now: &mut i64, correlation_id: i64) -> i64 {
    let reply = node.on_ingress(
        *now,
        Ingress::Connect {
            correlation_id,
            response_stream_id: 102,
            response_channel: "aeron:udp?endpoint=localhost:9020".into(),
            credentials: Vec::new(),
        },
    );
    assert_eq!(reply, IngressReply::Accepted);
    match run(node, now).as_slice() {
        [Output::SessionOpened {
            correlation_id: echoed,
            session,
        }] => {
            assert_eq!(*echoed, correlation_id);
            session.id
        }
        other => panic!("{other:?}"),
    }
}

fn send(node: &mut ConsensusNode<KvService>, now: &mut i64, session_id: i64, text: &str) -> String {
    let reply = node.on_ingress(
        *now,
        Ingress::Message {
            session_id,
            payload: text.as_bytes().to_vec(),
        },
    );
    assert_eq!(reply, IngressReply::Accepted, "{text}");
    match run(node, now).as_slice() {
        [Output::Egress(egress)] => {
            assert_eq!(egress.session_id, session_id);
            String::from_utf8(egress.payload.clone()).expect("text")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn sessions_open_send_time_out_and_close_through_the_log() {
    let disk = Arc::new(SimDisk::new());
    let mut now = START;
    let mut node = leader(&disk, config(1, vec![1]), &mut now);
    // A connect asked twice before its answer opens one session.
    let twice = Ingress::Connect {
        correlation_id: 76,
        response_stream_id: 102,
        response_channel: "aeron:udp?endpoint=localhost:9021".into(),
        credentials: Vec::new(),
    };
    assert_eq!(node.on_ingress(now, twice.clone()), IngressReply::Accepted);
    assert_eq!(node.on_ingress(now, twice), IngressReply::Accepted);
    let opened = run(&mut node, &mut now);
    assert!(
        matches!(opened.as_slice(), [Output::SessionOpened { correlation_id: 76, session }] if session.id == 1),
        "{opened:?}"
    );
    assert_eq!(
        node.on_ingress(now, Ingress::Close { session_id: 1 }),
        IngressReply::Accepted
    );
    assert!(matches!(
        run(&mut node, &mut now).as_slice(),
        [Output::SessionClosed {
            reason: CloseReason::ClientAction,
            ..
        }]
    ));
    let first = connect(&mut node, &mut now, 77);
    let second = connect(&mut node, &mut now, 78);
    assert_eq!((first, second), (2, 3));
    assert_eq!(send(&mut node, &mut now, first, "put a 1"), "ok a");
    assert_eq!(send(&mut node, &mut now, second, "get a"), "value 1");
    assert_eq!(send(&mut node, &mut now, second, "hello"), "hello");
    // Bad ingress is refused with a reason; the sessions go on.
    let refused = [
        (
            Ingress::Message {
                session_id: 99,
                payload: b"x".to_vec(),
            },
            "unknown session 99",
        ),
        (
            Ingress::Message {
                session_id: first,
                payload: vec![0; 1025],
            },
            "a message of 1025 bytes (at most 1024)",
        ),
        (Ingress::KeepAlive { session_id: 99 }, "unknown session 99"),
    ];
    for (ingress, expected) in refused {
        assert_eq!(
            node.on_ingress(now, ingress),
            IngressReply::Rejected(expected.into())
        );
    }
    assert_eq!(send(&mut node, &mut now, first, "get a"), "value 1");
    // The first keeps alive, the second says nothing: it times out, in the log.
    let mut closed = Vec::new();
    for _ in 0..8 {
        assert_eq!(
            node.on_ingress(now, Ingress::KeepAlive { session_id: first }),
            IngressReply::Accepted
        );
        now += 100 * MS;
        closed.extend(run(&mut node, &mut now));
    }
    assert!(
        matches!(closed.as_slice(), [Output::SessionClosed { session, reason: CloseReason::Timeout }] if session.id == second),
        "{closed:?}"
    );
    assert_eq!(
        node.on_ingress(now, Ingress::KeepAlive { session_id: second }),
        IngressReply::Rejected("unknown session 3".into())
    );
    assert_eq!(
        node.on_ingress(now, Ingress::Close { session_id: first }),
        IngressReply::Accepted
    );
    assert!(matches!(
        run(&mut node, &mut now).as_slice(),
        [Output::SessionClosed {
            reason: CloseReason::ClientAction,
            ..
        }]
    ));
    assert_eq!(node.status().sessions, 0);
}

/// One cycle at `now`: what applying produced.
fn cycle(node: &mut ConsensusNode<KvService>, now: Now) -> Vec<Output> {
    let mut actions = Vec::new();
    node.do_work(now, &mut actions).expect("work");
    actions
        .into_iter()
        .filter_map(|action| match action {
            Action::Applied { output, .. } => Some(output),
            _ => None,
        })
        .collect()
}

#[test]
fn a_wall_clock_step_times_no_session_out_and_cluster_time_never_goes_back() {
    let disk = Arc::new(SimDisk::new());
    let mut now = START;
    let mut node = leader(&disk, config(1, vec![1]), &mut now);
    let session = connect(&mut node, &mut now, 1);
    let minute = 60_000 * MS;
    // The monotonic clock goes on by 10 ms a cycle; the wall clock steps 10 minutes forth, then
    // 20 back, then 30 forth, with keep-alives well inside the 500 ms timeout.
    let mut monotonic = now;
    let mut stamps = Vec::new();
    for (step, offset) in [(0, 10 * minute), (1, -10 * minute), (2, 20 * minute)] {
        for i in 0..100 {
            monotonic += 10 * MS;
            let clocks = Now {
                monotonic_ns: monotonic,
                wall_ns: monotonic + offset,
            };
            if i % 10 == 0 {
                let reply = node.on_ingress(
                    monotonic,
                    Ingress::KeepAlive {
                        session_id: session,
                    },
                );
                assert_eq!(reply, IngressReply::Accepted);
            }
            if i == 50 {
                let reply = node.on_ingress(
                    monotonic,
                    Ingress::Message {
                        session_id: session,
                        payload: format!("put step{step} {step}").into_bytes(),
                    },
                );
                assert_eq!(reply, IngressReply::Accepted);
            }
            for output in cycle(&mut node, clocks) {
                match output {
                    Output::Egress(egress) => stamps.push((egress.timestamp_ns, clocks.wall_ns)),
                    other => panic!("step {step}: {other:?}"),
                }
            }
        }
        assert!(node.container().has_session(session), "step {step}");
        assert_eq!(node.role(), Role::Leader);
    }
    // Each batch is stamped with the wall clock, or the last stamp when the wall clock went
    // back: cluster time never goes back.
    assert_eq!(stamps.len(), 3, "{stamps:?}");
    assert!(
        stamps[0].0 <= stamps[0].1 && stamps[0].1 - stamps[0].0 < 50 * MS,
        "{stamps:?}"
    );
    assert_eq!(
        stamps[1].0, stamps[0].0,
        "held while the wall clock is behind"
    );
    assert!(
        stamps[2].0 <= stamps[2].1 && stamps[2].1 - stamps[2].0 < 50 * MS,
        "{stamps:?}"
    );
    assert_eq!(node.container().service().len(), 3);
    // Without keep-alives the session times out by the monotonic clock, whatever the wall says.
    let mut closed = Vec::new();
    for _ in 0..70 {
        monotonic += 10 * MS;
        let clocks = Now {
            monotonic_ns: monotonic,
            wall_ns: monotonic - 30 * minute,
        };
        closed.extend(cycle(&mut node, clocks));
    }
    assert!(
        matches!(closed.as_slice(), [Output::SessionClosed { session: closed, reason: CloseReason::Timeout }] if closed.id == session),
        "{closed:?}"
    );
}

#[test]
fn credentials_are_checked_and_a_follower_names_its_leader() {
    let disk = Arc::new(SimDisk::new());
    let mut now = START;
    let mut with_credentials = config(1, vec![1]);
    with_credentials.credentials = Some(b"secret".to_vec());
    let mut node = leader(&disk, with_credentials, &mut now);
    let connect = |credentials: &[u8]| Ingress::Connect {
        correlation_id: 1,
        response_stream_id: 102,
        response_channel: "aeron:ipc".into(),
        credentials: credentials.to_vec(),
    };
    assert_eq!(
        node.on_ingress(now, connect(b"wrong")),
        IngressReply::Rejected("authentication failed".into())
    );
    assert_eq!(
        node.on_ingress(now, connect(b"secret")),
        IngressReply::Accepted
    );
    let follower_disk = Arc::new(SimDisk::new());
    let mut follower = open(&follower_disk, config(2, vec![1, 2, 3]), START);
    assert_eq!(
        follower.on_ingress(START, connect(b"")),
        IngressReply::NotLeader { leader: None }
    );
}

#[test]
fn a_restart_comes_back_from_snapshot_plus_log_and_timers_fire_through_the_log() {
    let disk = Arc::new(SimDisk::new());
    let mut now = START;
    let mut node = leader(&disk, config(1, vec![1]), &mut now);
    let session = connect(&mut node, &mut now, 1);
    for i in 0..30 {
        assert_eq!(
            send(&mut node, &mut now, session, &format!("put k{i} {i}")),
            format!("ok k{i}")
        );
    }
    let snapshot_index = node.take_snapshot().expect("snapshot");
    assert_eq!(node.status().snapshot_index, snapshot_index);
    for i in 30..40 {
        send(&mut node, &mut now, session, &format!("put k{i} {i}"));
    }
    assert_eq!(send(&mut node, &mut now, session, "expire k0 50"), "ok");
    let before = node.status();
    drop(node);
    let disk = Arc::new(disk.crash());
    let mut node = leader(&disk, config(1, vec![1]), &mut now);
    run(&mut node, &mut now);
    let after = node.status();
    assert!(after.applied_index >= before.applied_index, "{after:?}");
    assert_eq!(after.snapshot_index, snapshot_index);
    assert_eq!(after.sessions, 1);
    assert_eq!(
        node.container().service().get(b"k35"),
        Some(b"35".as_slice())
    );
    // The timer scheduled before the crash fires (the new leader proposes it) and removes k0.
    now += 100 * MS;
    run(&mut node, &mut now);
    assert_eq!(node.container().service().get(b"k0"), None);
    assert_eq!(node.container().service().len(), 39);
}

#[test]
fn a_corrupt_log_entry_on_restart_is_refused_with_its_position() {
    let disk = Arc::new(SimDisk::new());
    let mut now = START;
    let mut node = leader(&disk, config(1, vec![1]), &mut now);
    let session = connect(&mut node, &mut now, 1);
    for i in 0..200 {
        send(
            &mut node,
            &mut now,
            session,
            &format!("put key-{i} {}", "v".repeat(900)),
        );
    }
    drop(node);
    let storage: Arc<dyn Storage> = disk.clone();
    let segment = storage
        .open(
            std::path::Path::new("/node/log/0-0.rec"),
            tern_store::OpenOptions::read_write(),
        )
        .expect("first segment");
    segment.write_all_at(&[0x5A; 4], 4096).expect("damage");
    segment.sync_data().expect("sync");
    let error = ConsensusNode::open(
        config(1, vec![1]),
        Io::inline(storage),
        KvService::new(),
        at(now),
    )
    .expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("cluster log damaged at position"),
        "{error}"
    );
}

#[test]
fn a_peer_message_size_the_transport_cannot_carry_is_refused_and_the_agent_fits_it() {
    let disk = Arc::new(SimDisk::new());
    let storage: Arc<dyn Storage> = disk.clone();
    for (length, expected) in [
        (100, "a maximum peer message of 100 bytes"),
        (2 << 30, "of 2147483648 bytes"),
    ] {
        let mut bad = NodeConfig::new(1, vec![1, 2, 3], PathBuf::from("/node"));
        bad.max_peer_message_length = length;
        let error = ConsensusNode::open(
            bad,
            Io::inline(storage.clone()),
            KvService::new(),
            at(START),
        )
        .expect_err("refused");
        assert!(error.to_string().contains(expected), "{error}");
    }
    // Aeron's maximum message with 16 MiB terms is 2 MiB: the default 1 MiB stays; with 1 MiB
    // terms (128 KiB) it is lowered; a transport too short for a chunk is refused.
    let mut config = NodeConfig::new(1, vec![1, 2, 3], PathBuf::from("/node"));
    assert!(!config.fit_peer_transport(2 << 20).expect("fits"));
    assert_eq!(config.max_peer_message_length, 1 << 20);
    assert!(config.fit_peer_transport(128 << 10).expect("fits"));
    assert_eq!(config.max_peer_message_length, 128 << 10);
    let error = config.fit_peer_transport(512).expect_err("too short");
    assert!(
        error
            .to_string()
            .contains("at most 512 bytes, too short for a chunk"),
        "{error}"
    );
}

#[test]
fn a_message_of_another_cluster_is_refused_and_not_applied() {
    let disk = Arc::new(SimDisk::new());
    let mut ours = config(3, vec![1, 2, 3]);
    ours.cluster_id = 42;
    let mut node = open(&disk, ours, START);
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgRequestVote);
    message.from = 1;
    message.to = 3;
    message.term = 2;
    let error = node
        .on_peer(&wire::encode(7, &message))
        .expect_err("another cluster");
    assert!(
        matches!(
            error,
            tern_cluster::ClusterError::OtherCluster {
                cluster_id: 7,
                expected: 42
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("a consensus message of cluster 7 reached a member of cluster 42"),
        "{error}"
    );
    let mut actions = Vec::new();
    node.do_work(at(START), &mut actions)
        .expect("the node goes on");
    assert_eq!(node.status().term, 0, "the vote request was not applied");
    assert!(vote_answers_of(42, &actions).is_empty());
    // The same request of this cluster is, and the answer carries the cluster's id.
    node.on_peer(&wire::encode(42, &message)).expect("ours");
    node.do_work(at(START), &mut actions).expect("work");
    assert_eq!(node.status().term, 2);
    assert_eq!(vote_answers_of(42, &actions), vec![(1, true)]);
}

/// Members 1..=3 on a lossless network that, like Aeron, carries no message longer than
/// `max` (a longer one is lost). A member that is `None` is down.
struct Network {
    nodes: Vec<Option<ConsensusNode<KvService>>>,
    max: usize,
    longest: usize,
    now: i64,
}

impl Network {
    /// One ms: every live member works and what it sends is delivered.
    fn step(&mut self) -> Vec<Output> {
        self.now += MS;
        let mut frames = Vec::new();
        let mut outputs = Vec::new();
        for node in self.nodes.iter_mut().flatten() {
            let mut actions = Vec::new();
            node.do_work(at(self.now), &mut actions).expect("work");
            for action in actions {
                match action {
                    Action::Peer { to, bytes } => frames.push((to, bytes)),
                    Action::Applied {
                        output,
                        leader: true,
                    } => outputs.push(output),
                    _ => {}
                }
            }
        }
        for (to, bytes) in frames {
            self.longest = self.longest.max(bytes.len());
            if bytes.len() > self.max {
                continue;
            }
            if let Some(node) = self.nodes[(to - 1) as usize].as_mut() {
                node.on_peer(&bytes).expect("a good peer message");
            }
        }
        outputs
    }

    fn leader(&mut self) -> &mut ConsensusNode<KvService> {
        self.nodes
            .iter_mut()
            .flatten()
            .find(|node| node.role() == Role::Leader)
            .expect("a leader")
    }

    fn run_until(&mut self, what: &str, done: impl Fn(&Self) -> bool) {
        for _ in 0..5_000 {
            if done(self) {
                return;
            }
            self.step();
        }
        let status: Vec<_> = self
            .nodes
            .iter()
            .flatten()
            .map(|node| node.status())
            .collect();
        panic!("{what} did not happen in 5 s: {status:?}");
    }
}

#[test]
fn a_follower_behind_installs_a_snapshot_longer_than_the_transport_message_in_chunks() {
    let max = 64 << 10;
    let member = |id: u64| {
        let mut config = config(id, vec![1, 2, 3]);
        config.dir = PathBuf::from(format!("/node-{id}"));
        config.max_peer_message_length = max;
        config.snapshot_every = 0;
        config.session_timeout_ns = 60_000 * MS;
        config
    };
    let disks: Vec<Arc<SimDisk>> = (0..3).map(|_| Arc::new(SimDisk::new())).collect();
    let mut network = Network {
        nodes: vec![
            Some(open(&disks[0], member(1), START)),
            Some(open(&disks[1], member(2), START)),
            None,
        ],
        max,
        longest: 0,
        now: START,
    };
    network.run_until("an election", |network| {
        network
            .nodes
            .iter()
            .flatten()
            .any(|node| node.role() == Role::Leader)
    });
    let now = network.now;
    let connect = Ingress::Connect {
        correlation_id: 1,
        response_stream_id: 102,
        response_channel: "aeron:ipc".into(),
        credentials: Vec::new(),
    };
    assert_eq!(
        network.leader().on_ingress(now, connect),
        IngressReply::Accepted
    );
    let mut session = None;
    for _ in 0..50 {
        for output in network.step() {
            if let Output::SessionOpened {
                session: opened, ..
            } = output
            {
                session = Some(opened.id);
            }
        }
    }
    let session_id = session.expect("a session");
    // 400 puts of 900 bytes: a service state of some 370 KB, several times the transport's
    // maximum message.
    for i in 0..400 {
        let now = network.now;
        let payload = format!("put key-{i} {}", "v".repeat(900)).into_bytes();
        let reply = network.leader().on_ingress(
            now,
            Ingress::Message {
                session_id,
                payload,
            },
        );
        assert_eq!(reply, IngressReply::Accepted);
        if i % 20 == 0 {
            network.step();
        }
    }
    network.run_until("400 puts applied", |network| {
        network
            .nodes
            .iter()
            .flatten()
            .all(|node| node.container().service().len() == 400)
    });
    // The log before the snapshot goes: member 3 can only catch up from the snapshot.
    let snapshot_index = network.leader().take_snapshot().expect("snapshot");
    let service_length = network
        .leader()
        .container()
        .service()
        .clone()
        .on_take_snapshot()
        .len();
    assert!(service_length > 4 * max, "{service_length}");
    assert!(network.leader().storage().log().first_index() > 1);
    network.nodes[2] = Some(open(&disks[2], member(3), network.now));
    network.run_until("member 3 caught up", |network| {
        let status: Vec<_> = network
            .nodes
            .iter()
            .flatten()
            .map(|node| node.status())
            .collect();
        status[2].snapshot_index >= snapshot_index
            && status[2].applied_index == status[0].applied_index
            && status[2].applied_index == status[1].applied_index
    });
    assert!(
        network.longest <= max,
        "a message of {} bytes",
        network.longest
    );
    let third = network.nodes[2].as_ref().expect("up");
    assert_eq!(third.status().snapshot_index, snapshot_index);
    assert!(
        third.peer_counts().received.reassembled >= 1,
        "{:?}",
        third.peer_counts()
    );
    assert_eq!(third.container().service().len(), 400);
    assert_eq!(
        third.container().service().digest(),
        network.leader().container().service().digest()
    );
    assert!(network.leader().peer_counts().chunked_sent >= 1);
    // And it goes on with the others.
    let now = network.now;
    let reply = network.leader().on_ingress(
        now,
        Ingress::Message {
            session_id,
            payload: b"put after 1".to_vec(),
        },
    );
    assert_eq!(reply, IngressReply::Accepted);
    network.run_until("the put after applied everywhere", |network| {
        network
            .nodes
            .iter()
            .flatten()
            .all(|node| node.container().service().get(b"after") == Some(b"1".as_slice()))
    });
}
