//! `tern cluster egress`: three `tern cluster node` processes, two clients (`tern cluster send`
//! runs: two sessions), then a member's egress recording printed: one session's, the whole
//! stream, from a cluster time, paced, followed while the member records, and after the members
//! stopped. And the one `tern:` line of each bad input.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tern_testkit::cluster::Cluster;
use tern_testkit::{run, wait_until};

const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// One printed egress line: position, session, sequence, egress number, log index, cluster time,
/// payload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    position: i64,
    session: i64,
    sequence: u64,
    egress_number: u64,
    log_index: u64,
    time: String,
    payload: String,
}

fn parse_line(line: &str) -> Line {
    let fields: Vec<&str> = line.splitn(7, '\t').collect();
    assert_eq!(fields.len(), 7, "{line:?}");
    let number = |index: usize| -> u64 { fields[index].parse().expect(line) };
    Line {
        position: fields[0].parse().expect(line),
        session: fields[1].parse().expect(line),
        sequence: number(2),
        egress_number: number(3),
        log_index: number(4),
        time: fields[5].to_string(),
        payload: fields[6].to_string(),
    }
}

fn parse_lines(stdout: &str) -> Vec<Line> {
    stdout.lines().map(parse_line).collect()
}

/// Epoch nanoseconds of a printed RFC 3339 time.
fn nanos(time: &str) -> i64 {
    humantime::parse_rfc3339(time)
        .expect(time)
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_nanos() as i64
}

/// `tern cluster egress --config CONFIG ARGS...`: its lines (exit 0 asserted) and stderr.
fn egress(config: &str, args: &[&str]) -> (Vec<Line>, String) {
    let mut all = vec!["cluster", "egress", "--config", config];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = run(TERN, &all);
    assert_eq!(code, 0, "{all:?}: {stdout}{stderr}");
    (parse_lines(&stdout), stderr)
}

/// `tern cluster send` with `messages` as one client: its session id and replies.
fn send(config: &str, messages: &[&str]) -> (i64, Vec<String>) {
    let mut all = vec![
        "cluster",
        "send",
        "--config",
        config,
        "--timeout-ms",
        "20000",
    ];
    all.extend_from_slice(messages);
    let (code, stdout, stderr) = run(TERN, &all);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let session = stderr
        .lines()
        .find_map(|line| line.strip_prefix("session "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no session id in {stderr:?}"));
    (session, stdout.lines().map(str::to_string).collect())
}

#[test]
fn a_members_egress_is_printed_by_session_from_a_time_paced_and_followed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = Cluster::start(TERN, dir.path(), 0);
    let config = cluster.config_arg();
    let (first, replies) = send(&config, &["put a 1", "put b 2", "get a"]);
    assert_eq!(replies, ["ok a", "ok b", "value 1"]);
    // The second client's messages come a second later: the stream spans over a second of
    // cluster time.
    std::thread::sleep(Duration::from_secs(1));
    let (second, replies) = send(&config, &["put c 3", "count", "hello"]);
    assert_eq!(replies, ["ok c", "count 3", "hello"]);
    assert_ne!(first, second);
    // Member 1 (the default: the first with a directory) may apply a little after the leader.
    let mut all = Vec::new();
    wait_until(
        "member 1 has recorded both sessions' egress",
        Duration::from_secs(10),
        || {
            all = egress(&config, &[]).0;
            all.len() >= 6
        },
    );
    let (all_of_member_2, _) = egress(&config, &["--member", "2"]);
    assert_eq!(all_of_member_2.len(), 6);

    // One session's replies, in order, sequences 1..n.
    let session_lines = |session: i64| -> Vec<Line> {
        let (lines, stderr) = egress(&config, &["--session", &session.to_string()]);
        assert!(stderr.contains("3 messages"), "{stderr}");
        lines
    };
    let of_first = session_lines(first);
    let of_second = session_lines(second);
    for (lines, session, payloads) in [
        (&of_first, first, ["ok a", "ok b", "value 1"]),
        (&of_second, second, ["ok c", "count 3", "hello"]),
    ] {
        assert_eq!(
            lines
                .iter()
                .map(|line| (line.session, line.sequence, line.payload.as_str()))
                .collect::<Vec<_>>(),
            (1..=3)
                .zip(payloads)
                .map(|(sequence, payload)| (session, sequence, payload))
                .collect::<Vec<_>>()
        );
    }

    // The same over Aeron from the running members (the sessions are closed): after a
    // sequence, from member 3 first; the position column is `-`.
    let mut remote_args = vec!["cluster", "egress", "--config", config.as_str()];
    let first_text = first.to_string();
    remote_args.extend_from_slice(&["--remote", "--session", &first_text, "--after", "1"]);
    remote_args.extend_from_slice(&["--member", "3"]);
    let (code, stdout, stderr) = run(TERN, &remote_args);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let remote: Vec<(String, i64, u64, u64, String)> = stdout
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.splitn(7, '\t').collect();
            assert_eq!(fields.len(), 7, "{line:?}");
            (
                fields[0].to_string(),
                fields[1].parse().expect(line),
                fields[2].parse().expect(line),
                fields[3].parse().expect(line),
                fields[6].to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, i64, u64, u64, String)> = of_first[1..]
        .iter()
        .map(|line| {
            let payload = line.payload.clone();
            (
                "-".to_string(),
                line.session,
                line.sequence,
                line.egress_number,
                payload,
            )
        })
        .collect();
    assert_eq!(remote, expected);
    assert!(
        stderr.contains("2 messages after sequence 1 from member 3"),
        "{stderr}"
    );

    // The whole stream: both sessions, in the cluster's order (egress numbers 1..6, log indexes
    // and positions rising).
    let mut expected = of_first.clone();
    expected.extend(of_second.iter().cloned());
    assert_eq!(all, expected);
    assert_eq!(all_of_member_2, expected, "every member recorded the same");
    assert_eq!(
        all.iter()
            .map(|line| line.egress_number)
            .collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert!(all
        .windows(2)
        .all(|pair| pair[0].log_index < pair[1].log_index && pair[0].position < pair[1].position));

    // Hex and none.
    let (lines, _) = egress(
        &config,
        &["--session", &first.to_string(), "--print", "hex"],
    );
    assert_eq!(lines[0].payload, "6f6b2061", "ok a");
    let (code, stdout, stderr) = run(
        TERN,
        &["cluster", "egress", "--config", &config, "--print", "none"],
    );
    assert!(
        code == 0 && stdout.is_empty() && stderr.contains("6 messages"),
        "{stdout}{stderr}"
    );
    // A session with no egress: nothing printed, as `tern replay --key` with no match.
    let (lines, stderr) = egress(&config, &["--session", "987654321"]);
    assert!(
        lines.is_empty() && stderr.contains("0 messages"),
        "{stderr}"
    );

    // --follow prints what the member records while it runs.
    let mut follower = Command::new(TERN)
        .args(["cluster", "egress", "--config", &config, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the follower");
    let stdout = follower.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let mut followed = Vec::new();
    let next = |followed: &mut Vec<Line>| {
        let line = receiver
            .recv_timeout(Duration::from_secs(20))
            .expect("a followed line");
        followed.push(parse_line(&line));
    };
    for _ in 0..6 {
        next(&mut followed);
    }
    assert_eq!(followed, expected);
    let (third, replies) = send(&config, &["put d 4"]);
    assert_eq!(replies, ["ok d"]);
    next(&mut followed);
    assert_eq!(
        (
            followed[6].session,
            followed[6].sequence,
            followed[6].egress_number
        ),
        (third, 1, 7)
    );
    assert_eq!(followed[6].payload, "ok d");
    let _ = Command::new("kill")
        .args(["-TERM", &follower.id().to_string()])
        .status();
    let status = follower.wait().expect("the follower stops");
    assert!(status.success(), "{status:?}");

    // The members stopped: the recordings read the same, and --follow ends at their end.
    wait_until(
        "member 1 has recorded the third session's egress",
        Duration::from_secs(10),
        || egress(&config, &[]).0.len() == 7,
    );
    cluster.stop();
    let (stopped, _) = egress(&config, &["--follow"]);
    assert_eq!(&stopped[..6], &expected[..]);
    assert_eq!(stopped.len(), 7);

    // From the second session's first message (its cluster time): the first session's are
    // skipped.
    let (from, _) = egress(&config, &["--from-time", &of_second[0].time]);
    assert_eq!(&from[..3], &of_second[..]);
    assert_eq!(from.len(), 4, "the second session's and the third's");
    let (from, _) = egress(
        &config,
        &[
            "--from-time",
            &of_second[0].time,
            "--session",
            &first.to_string(),
        ],
    );
    assert!(from.is_empty(), "{from:?}");

    // Paced by the messages' cluster times: the seven messages span over a second; at
    // --speed 10 they take a tenth of that.
    let span = Duration::from_nanos((nanos(&stopped[6].time) - nanos(&stopped[0].time)) as u64);
    assert!(span >= Duration::from_secs(1), "{span:?}");
    let started = Instant::now();
    let (paced, _) = egress(&config, &["--speed", "10"]);
    let elapsed = started.elapsed();
    assert_eq!(paced, stopped);
    assert!(
        elapsed >= span / 10 && elapsed < span / 10 + Duration::from_secs(1),
        "{elapsed:?} at --speed 10 for {span:?}"
    );
}

#[test]
fn bad_egress_inputs_get_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut text = format!("data_dir = {:?}\n", dir.path().join("data"));
    for id in 1..=3 {
        text.push_str(&format!(
            "[[members]]\nid = {id}\nconsensus = \"localhost:{}\"\ningress = \"localhost:{}\"\n",
            20000 + id * 10,
            20001 + id * 10
        ));
    }
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, text).expect("config");
    let config = config.to_string_lossy().into_owned();
    // Exit 1 for what the command finds, 2 for a bad command line (clap's usage errors).
    let check_code = |code_wanted: i32, args: &[&str], expected: &str| {
        let mut all = vec!["cluster", "egress", "--config", config.as_str()];
        all.extend_from_slice(args);
        let (code, stdout, stderr) = run(TERN, &all);
        assert_eq!(code, code_wanted, "{all:?}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("tern: ") && stderr.contains(expected),
            "{all:?}: {stderr}"
        );
    };
    let check = |args: &[&str], expected: &str| check_code(1, args, expected);
    check(&["--member", "9"], "member 9 is not in");
    check(&[], "no member has a directory in");
    check(&["--member", "2"], "member 2 has no directory");
    // A member directory without an egress recording (an empty one, or a stray catalog-less
    // egress directory).
    std::fs::create_dir_all(dir.path().join("data/node-1/egress")).expect("dir");
    check(&[], "member 1 has no egress recording in");
    check(&["--member", "1"], "member 1 has no egress recording in");
    check_code(2, &["--speed", "0"], "between 0.01 and 1000");
    check_code(2, &["--from-time", "yesterday"], "yesterday");
    check_code(2, &["--remote"], "--session");
    check(
        &["--remote", "--session", "1", "--follow"],
        "--remote --follow follows the shared output stream (--session 0), not session 1",
    );
    check(
        &["--remote", "--session", "0", "--follow", "--member", "2"],
        "--member is for a replay",
    );
    check_code(
        2,
        &[
            "--remote",
            "--session",
            "0",
            "--follow",
            "--timeout-ms",
            "5",
        ],
        "--timeout-ms",
    );
    check_code(2, &["--after", "3", "--session", "1"], "--remote");
    check(
        &["--remote", "--session", "1", "--member", "9"],
        "member 9 is not in",
    );
    // Nobody answers on these ports: the error says what each member did.
    check(
        &["--remote", "--session", "1", "--timeout-ms", "2500"],
        "no member replayed session 1's egress in 2500 ms",
    );
}
