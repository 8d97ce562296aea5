//! Three `tern cluster node` processes on loopback with a client under load: `kill -9` the
//! leader, a new one takes over and the client goes on with every acknowledged put kept; the
//! killed member restarts and catches up. Also what the CLI says to bad cluster configs.

use std::path::Path;
use std::time::{Duration, Instant};
use tern_cluster::agent::MemberEndpoints;
use tern_cluster::client::ClusterClient;
use tern_cluster::Role;
use tern_testkit::cluster::Cluster;
use tern_testkit::{driver, run, wait_until};
use tern_transport::Client;

const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// The members as the cluster client takes them.
fn endpoints(cluster: &Cluster) -> Vec<MemberEndpoints> {
    cluster
        .members
        .iter()
        .map(|member| MemberEndpoints {
            id: member.id,
            consensus: member.consensus.clone(),
            ingress: member.ingress.clone(),
        })
        .collect()
}

/// A client of `cluster` on the driver in `aeron_dir`, not connected yet.
fn client_of(aeron_dir: &str, cluster: &Cluster) -> ClusterClient {
    let aeron = Client::connect(aeron_dir).expect("client");
    ClusterClient::new(aeron, endpoints(cluster), "localhost:0").expect("cluster client")
}

/// A client of `cluster` with a session; returns it and the session's id.
fn connected(aeron_dir: &str, cluster: &Cluster) -> (ClusterClient, i64) {
    let mut client = client_of(aeron_dir, cluster);
    let session = client
        .connect(b"", Duration::from_secs(20))
        .expect("a session");
    (client, session)
}

fn leader_of(client: &mut ClusterClient, ids: &[u64]) -> Option<u64> {
    ids.iter().copied().find(|id| {
        client
            .status_of(*id, false, Duration::from_millis(300))
            .is_some_and(|status| status.role == Role::Leader)
    })
}

#[test]
fn a_killed_leader_is_replaced_the_client_goes_on_and_the_member_catches_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(TERN, dir.path(), 7);
    let driver = driver("cluster-client");
    let (mut client, _) = connected(driver.dir(), &cluster);
    let mut acknowledged = Vec::new();
    let mut put = |client: &mut ClusterClient, key: String| -> bool {
        match client.request(
            format!("put {key} 1").as_bytes(),
            Duration::from_millis(500),
        ) {
            Ok(reply) if reply.payload == format!("ok {key}").as_bytes() => {
                acknowledged.push(key);
                true
            }
            _ => false,
        }
    };
    for i in 0..200 {
        assert!(
            put(&mut client, format!("before-{i}")),
            "put {i} before the kill"
        );
    }
    let leader = leader_of(&mut client, &[1, 2, 3]).expect("a leader");
    cluster.kill(leader);
    let killed_at = Instant::now();
    // The client goes on: the new leader tells it where to send.
    let mut resumed = None;
    for i in 0..2000 {
        if put(&mut client, format!("after-{i}")) && resumed.is_none() {
            resumed = Some(killed_at.elapsed());
        }
        if resumed.is_some() && i >= 200 {
            break;
        }
    }
    let resumed = resumed.expect("the client got replies again after the leader was killed");
    assert!(
        resumed < Duration::from_secs(5),
        "replies again after {resumed:?}"
    );
    assert_ne!(client.leader(), Some(leader));
    cluster.spawn(leader);
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = leader_of(&mut client, &others).expect("a new leader");
    let target = client
        .status_of(new_leader, false, Duration::from_secs(1))
        .expect("status")
        .commit_index;
    wait_until(
        "the restarted member catches up",
        Duration::from_secs(30),
        || {
            client
                .status_of(leader, false, Duration::from_millis(300))
                .is_some_and(|status| status.applied_index >= target)
        },
    );
    for key in acknowledged.iter().step_by(37) {
        let reply = client
            .request(format!("get {key}").as_bytes(), Duration::from_secs(2))
            .expect("get");
        assert_eq!(reply.payload, b"value 1", "{key}");
    }
    let count = client
        .request(b"count", Duration::from_secs(2))
        .expect("count");
    assert_eq!(
        String::from_utf8_lossy(&count.payload),
        format!("count {}", acknowledged.len())
    );
    // The CLI sees the same cluster.
    let config = cluster.config.to_string_lossy().into_owned();
    let (code, stdout, stderr) = run(TERN, &["cluster", "status", "--config", &config]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let leaders = stdout
        .lines()
        .filter(|line| line.split_whitespace().nth(1) == Some("leader"))
        .count();
    assert_eq!(leaders, 1, "{stdout}");
    let (code, stdout, stderr) = run(
        TERN,
        &["cluster", "send", "--config", &config, "get before-0"],
    );
    assert_eq!((code, stdout.as_str()), (0, "value 1\n"), "{stderr}");
    // Every member recorded the egress its service made, the killed one too (it made the egress
    // of what it missed again from the log): the same recording, byte for byte, that the
    // archive's commands read.
    let mut egress = 0;
    wait_until(
        "every member has recorded the same egress",
        Duration::from_secs(10),
        || {
            let recorded: Vec<u64> = (1..=3)
                .filter_map(|id| client.status_of(id, false, Duration::from_millis(300)))
                .map(|status| status.egress_recorded)
                .collect();
            egress = recorded[0];
            recorded.len() == 3 && recorded.iter().all(|number| *number == recorded[0])
        },
    );
    assert!(
        egress as usize > acknowledged.len(),
        "{egress} egress messages"
    );
    cluster.stop();
    let segments: Vec<Vec<u8>> = (1..=3)
        .map(|id| {
            let egress_dir = dir.path().join(format!("data/node-{id}/egress"));
            let egress_dir = egress_dir.to_string_lossy();
            let (code, stdout, stderr) = run(TERN, &["verify", "--dir", &egress_dir]);
            assert_eq!(code, 0, "member {id}: {stdout}{stderr}");
            let (code, stdout, stderr) = run(TERN, &["list", "--dir", &egress_dir]);
            assert!(
                code == 0 && stdout.contains("tern:cluster-egress"),
                "member {id}: {stdout}{stderr}"
            );
            std::fs::read(dir.path().join(format!("data/node-{id}/egress/0-0.rec")))
                .expect("segment")
        })
        .collect();
    assert!(
        segments[1] == segments[0] && segments[2] == segments[0],
        "the members' egress recordings differ"
    );
}

#[test]
fn bad_cluster_configs_get_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("config");
        path.to_string_lossy().into_owned()
    };
    let two = write(
        "two.toml",
        "[[members]]\nid = 1\nconsensus = \"localhost:1\"\ningress = \"localhost:2\"\n[[members]]\nid = 2\nconsensus = \"localhost:3\"\ningress = \"localhost:4\"\n",
    );
    let unknown = write("unknown.toml", "colour = \"blue\"\nmembers = []\n");
    let cases = [
        (
            vec!["cluster", "node", "--config", two.as_str()],
            "2 members (1, 3 or 5)",
        ),
        (
            vec!["cluster", "status", "--config", unknown.as_str()],
            "unknown field `colour`",
        ),
        (
            vec!["cluster", "node", "--config", "/nonexistent.toml"],
            "read cluster config /nonexistent.toml",
        ),
    ];
    for (args, expected) in cases {
        let (code, _, stderr) = run(TERN, &args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("tern: ") && stderr.contains(expected),
            "{stderr}"
        );
    }
}

/// The session sequences of `session_id`'s messages in a member's egress recording (stopped).
fn recorded_sequences(egress_dir: &Path, session_id: i64) -> Vec<u64> {
    let catalog = tern_store::Catalog::open(egress_dir, false).expect("egress catalog");
    let descriptor = catalog
        .get(tern_store::RecordingId::new(0))
        .expect("egress recording")
        .clone();
    assert!(!descriptor.is_active(), "stopped cleanly");
    let mut reader = tern_store::RecordingReader::new(egress_dir, &descriptor);
    let mut sequences = Vec::new();
    let (_, stop) = reader
        .scan(
            descriptor.start_position,
            descriptor.stop_position,
            |frame| {
                if let Ok(header) = tern_store::egress_header::decode(frame.payload()) {
                    if header.session_id == session_id {
                        sequences.push(header.sequence);
                    }
                }
                true
            },
        )
        .expect("scan");
    assert!(stop.is_none(), "{stop:?}");
    sequences
}

/// A client sending all along while the leader is killed again and again (3 times here;
/// `TERN_CLUSTER_KILLS=20` for the long run): after each new leader it resumes its egress from
/// that leader's recording, and in the end it has had every egress message of its session once,
/// in order, exactly as every member recorded it.
#[test]
fn a_client_gets_every_egress_message_once_in_order_across_leader_kills() {
    let kills: usize = std::env::var("TERN_CLUSTER_KILLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(TERN, dir.path(), 7);
    let driver = driver("cluster-egress-client");
    let (mut client, session_id) = connected(driver.dir(), &cluster);
    let mut received = Vec::new();
    let mut sent = 0u64;
    let mut pump = |client: &mut ClusterClient, received: &mut Vec<u64>, for_how_long: Duration| {
        let until = Instant::now() + for_how_long;
        while Instant::now() < until {
            if client.offer(format!("put key-{sent} {sent}").as_bytes()) {
                sent += 1;
            }
            client.poll();
            received.extend(client.take_egress().iter().map(|egress| egress.sequence));
            std::thread::sleep(Duration::from_micros(500));
        }
    };
    pump(&mut client, &mut received, Duration::from_millis(500));
    for kill in 0..kills {
        let leader = leader_of(&mut client, &[1, 2, 3]).expect("a leader");
        cluster.kill(leader);
        pump(&mut client, &mut received, Duration::from_millis(1200));
        cluster.spawn(leader);
        pump(&mut client, &mut received, Duration::from_millis(800));
        assert!(
            client.session_id().is_some(),
            "the session lives on after kill {kill}"
        );
    }
    // The last replies in flight, then a request answered after everything before it.
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(1) || client.resuming() {
        client.poll();
        let egress = client.take_egress();
        if !egress.is_empty() {
            quiet_since = Instant::now();
        }
        received.extend(egress.iter().map(|egress| egress.sequence));
        std::thread::sleep(Duration::from_millis(1));
    }
    let last = client
        .request(b"count", Duration::from_secs(10))
        .expect("a reply after the kills");
    received.push(last.sequence);
    received.extend(client.take_egress().iter().map(|egress| egress.sequence));
    let expected: Vec<u64> = (1..=last.sequence).collect();
    assert!(
        received == expected,
        "{} messages received, {} expected; first difference at {:?}; {:?}",
        received.len(),
        expected.len(),
        received.iter().zip(&expected).position(|(a, b)| a != b),
        client.counts()
    );
    assert!(
        client.counts().resumes >= kills as u64,
        "{:?}",
        client.counts()
    );
    // Every member up, all at the same applied index, then stopped: each recording holds the
    // session's messages as the client got them.
    wait_until(
        "every member has applied the last message",
        Duration::from_secs(20),
        || {
            (1..=3).all(|id| {
                client
                    .status_of(id, false, Duration::from_millis(300))
                    .is_some_and(|status| status.applied_index >= last.log_index)
            })
        },
    );
    cluster.stop();
    for id in 1..=3 {
        let recorded = recorded_sequences(
            &dir.path().join(format!("data/node-{id}/egress")),
            session_id,
        );
        assert!(
            recorded.starts_with(&expected),
            "member {id} recorded {} messages of the session",
            recorded.len()
        );
    }
    eprintln!(
        "{kills} kills: {} egress messages of {sent} sent, each once, in order; {:?}",
        received.len(),
        client.counts()
    );
}

#[test]
fn a_closed_sessions_egress_is_replayed_from_any_member_even_with_one_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(TERN, dir.path(), 9);
    let driver = driver("cluster-replay");
    let (mut writer, session) = connected(driver.dir(), &cluster);
    let mut received = Vec::new();
    for i in 0..120 {
        let reply = writer
            .request(format!("put k{i} {i}").as_bytes(), Duration::from_secs(2))
            .expect("put");
        received.extend(writer.take_egress());
        received.push(reply);
    }
    received.extend(writer.take_egress());
    let sequences: Vec<u64> = received.iter().map(|egress| egress.sequence).collect();
    assert_eq!(sequences, (1..=sequences.len() as u64).collect::<Vec<_>>());
    writer.close();
    let leader = leader_of(&mut writer, &[1, 2, 3]).expect("a leader");
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    // Wait until the follower has recorded all of it (it applies a little behind the leader).
    let last = received.last().expect("egress").number;
    wait_until(
        "the follower recorded it all",
        Duration::from_secs(10),
        || {
            writer
                .status_of(follower, false, Duration::from_millis(300))
                .is_some_and(|status| status.egress_recorded >= last)
        },
    );

    // Another client (a process that kept the mark) reads the closed session's egress after
    // its 40th message from a follower: exactly the rest, in order.
    let mut reader = client_of(driver.dir(), &cluster);
    let mut got = Vec::new();
    let mark = tern_cluster::client::EgressMark::of(&received[39]);
    let replayed = reader
        .replay_egress(
            session,
            mark,
            Some(follower),
            Duration::from_secs(10),
            &mut |egress| got.push(egress.clone()),
        )
        .expect("a replay");
    assert_eq!(got, received[40..].to_vec());
    assert_eq!(
        (replayed.member, replayed.messages, replayed.requests),
        (follower, got.len() as u64, 1),
        "{replayed:?}"
    );
    assert_eq!(
        replayed.last,
        tern_cluster::client::EgressMark::of(&received[received.len() - 1])
    );

    // With the member asked first down, the next one answers: all of it from the start.
    cluster.kill(follower);
    let mut got = Vec::new();
    let replayed = reader
        .replay_egress(
            session,
            Default::default(),
            Some(follower),
            Duration::from_secs(15),
            &mut |egress| got.push(egress.clone()),
        )
        .expect("a replay with a member down");
    assert_eq!(got, received);
    assert_ne!(replayed.member, follower, "{replayed:?}");
    assert!(replayed.requests >= 2, "{replayed:?}");

    // A session that never was: nothing, said plainly.
    let replayed = reader
        .replay_egress(
            999,
            Default::default(),
            None,
            Duration::from_secs(10),
            &mut |_| panic!("no egress"),
        )
        .expect("an empty replay");
    assert_eq!(replayed.messages, 0, "{replayed:?}");
    cluster.stop();
}

#[test]
fn followers_of_the_shared_stream_get_every_message_once_in_order_across_a_leader_kill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(TERN, dir.path(), 10);
    let driver = driver("cluster-shared");
    let new_client = || client_of(driver.dir(), &cluster);
    let mut publisher = new_client();
    publisher
        .connect(b"", Duration::from_secs(20))
        .expect("a session");
    let mut early = new_client();
    early.follow_shared(Default::default());
    let mut late = new_client();
    let mut got: [Vec<tern_cluster::Egress>; 2] = [Vec::new(), Vec::new()];
    fn take(
        got: &mut [Vec<tern_cluster::Egress>; 2],
        early: &mut ClusterClient,
        late: &mut ClusterClient,
    ) {
        for (index, client) in [early, late].into_iter().enumerate() {
            client.poll();
            got[index].extend(client.take_shared());
        }
    }
    let publish = |publisher: &mut ClusterClient, text: &str| -> Option<u64> {
        let reply = publisher
            .request(format!("pub {text}").as_bytes(), Duration::from_millis(500))
            .ok()?;
        String::from_utf8_lossy(&reply.payload)
            .strip_prefix("published ")?
            .parse()
            .ok()
    };
    let mut published = 0;
    let mut killed = None;
    for i in 0..400 {
        if i == 150 {
            let leader = leader_of(&mut publisher, &[1, 2, 3]).expect("a leader");
            cluster.kill(leader);
            killed = Some(leader);
        }
        if i == 250 {
            // A follower that comes late gets the stream from the start, from the recording.
            late.follow_shared(Default::default());
        }
        if publish(&mut publisher, &format!("m{i}")).is_some() {
            published += 1;
        }
        take(&mut got, &mut early, &mut late);
    }
    assert!(published >= 300, "{published} of 400 published");
    cluster.spawn(killed.expect("killed"));
    // Everything before the last one is committed: the followers must reach its sequence.
    let last = loop {
        if let Some(sequence) = publish(&mut publisher, "last") {
            break sequence;
        }
    };
    wait_until(
        "both followers have the whole stream",
        Duration::from_secs(20),
        || {
            take(&mut got, &mut early, &mut late);
            got.iter().all(|messages| {
                messages
                    .last()
                    .is_some_and(|egress| egress.sequence == last)
            })
        },
    );
    for (name, messages) in ["early", "late"].iter().zip(&got) {
        let sequences: Vec<u64> = messages.iter().map(|egress| egress.sequence).collect();
        assert_eq!(sequences, (1..=last).collect::<Vec<_>>(), "{name}");
        assert!(messages
            .iter()
            .all(|egress| egress.session_id == tern_cluster::SHARED_SESSION_ID));
    }
    assert_eq!(got[0], got[1]);
    let (_, counts) = early.shared_mark().expect("following");
    assert!(
        counts.caught_up >= 2,
        "{counts:?}: a catch-up at the start and at the new leader"
    );
    // The stream is in every member's recording: read it back from one.
    let mut replayed = Vec::new();
    publisher
        .replay_egress(
            tern_cluster::SHARED_SESSION_ID,
            Default::default(),
            None,
            Duration::from_secs(10),
            &mut |egress| replayed.push(egress.clone()),
        )
        .expect("a replay of the shared stream");
    assert_eq!(replayed, got[0]);
    // A follower can read it back too (the replay's end is not taken for the follow's).
    let mut replayed = Vec::new();
    early
        .replay_egress(
            tern_cluster::SHARED_SESSION_ID,
            Default::default(),
            None,
            Duration::from_secs(10),
            &mut |egress| replayed.push(egress.clone()),
        )
        .expect("a follower's replay of the shared stream");
    assert_eq!(replayed, got[0]);

    // The CLI follows it live too, from a sequence on, until SIGTERM.
    let config = cluster.config_arg();
    let after = last.to_string();
    let mut cli = std::process::Command::new(TERN)
        .args(["cluster", "egress", "--config", config.as_str(), "--remote"])
        .args(["--session", "0", "--follow", "--after", after.as_str()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn tern cluster egress --follow");
    let stdout = cli.stdout.take().expect("stdout");
    let (lines_in, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reader = std::io::BufReader::new(stdout);
        for line in std::io::BufRead::lines(reader).map_while(Result::ok) {
            if lines_in.send(line).is_err() {
                break;
            }
        }
    });
    let next = loop {
        if let Some(sequence) = publish(&mut publisher, "cli news") {
            break sequence;
        }
    };
    let line = lines
        .recv_timeout(Duration::from_secs(10))
        .expect("the CLI printed the shared message");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &cli.id().to_string()])
        .status();
    let status = cli.wait().expect("the CLI exits");
    assert!(status.success(), "{status}");
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(
        (fields[0], fields[1], fields[2], fields[6]),
        ("-", "0", next.to_string().as_str(), "cli news"),
        "{line:?}"
    );
    cluster.stop();
}
