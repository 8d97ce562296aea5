//! The `tern` binary replaying by key: printed or published, bad keys, key indexes lost in a
//! kill -9 and rebuilt.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tern_archive::{Archive, ArchiveConfig, ArchiveView, RecordingId};
use tern_transport::{BackoffIdle, Client, Idle, MediaDriver};

use support::*;
use tern_testkit::{driver, SteadyPublisher};

// ---- Replays filtered by key ------------------------------------------------------------------

/// `message(sequence)` with `sequence % 4` at bytes 8..16: a key for `field:8:i64`.
fn keyed(sequence: u64) -> Vec<u8> {
    let mut bytes = message(sequence);
    bytes[8..16].copy_from_slice(&(sequence % 4).to_le_bytes());
    bytes
}

/// The sequences of `tern replay --print hex` output.
fn printed_sequences(stdout: &str) -> Vec<u64> {
    stdout.lines().map(sequence_of).collect()
}

/// An archive with recording 0: 400 `keyed` messages from one exclusive publication, those that
/// fit a frame claimed with reserved value `sequence % 3` (the others, fragmented, have 0),
/// indexed by reserved value and by `field:8:i64`; and recording 1, another session on the same
/// stream. Returns the reserved key of each message of recording 0 and the two session ids.
fn keyed_archive(tag: &str) -> (MediaDriver, tempfile::TempDir, Vec<i64>, i32, i32) {
    let driver = driver(tag);
    let data = tempfile::tempdir().expect("temp dir");
    let mut reserved = Vec::new();
    let sessions;
    {
        let mut config = ArchiveConfig::new(data.path(), driver.dir());
        config.segment_length = 128 * 1024;
        config.key_index = vec![
            "reserved".parse().expect("kind"),
            "field:8:i64".parse().expect("kind"),
        ];
        let archive = Archive::launch(config).expect("archive");
        archive
            .start_recording("aeron:ipc", 12, tern_archive::SourceLocation::Remote)
            .expect("record");
        let client = Client::connect(driver.dir()).expect("client");
        let mut idle = BackoffIdle::new();
        let first = client
            .add_exclusive_publication("aeron:ipc", 12)
            .expect("pub");
        let deadline = Instant::now() + Duration::from_secs(10);
        while archive.recordings().is_empty() {
            assert!(Instant::now() < deadline);
            idle.idle(0);
        }
        for sequence in 0..400u64 {
            let bytes = keyed(sequence);
            if bytes.len() <= first.max_payload_length() {
                let key = (sequence % 3) as i64;
                while first
                    .try_claim(bytes.len(), key, |buffer| buffer.copy_from_slice(&bytes))
                    .is_err()
                {
                    idle.idle(0);
                }
                reserved.push(key);
            } else {
                while first.offer(&bytes).is_err() {
                    idle.idle(0);
                }
                reserved.push(0);
            }
        }
        let second = client
            .add_exclusive_publication("aeron:ipc", 12)
            .expect("pub");
        while archive.recordings().len() < 2 {
            assert!(Instant::now() < deadline);
            idle.idle(0);
        }
        for sequence in 0..5 {
            while second.offer(&keyed(sequence)).is_err() {
                idle.idle(0);
            }
        }
        while archive
            .recording(RecordingId::new(0))
            .expect("0")
            .recorded_position
            < first.position()
            || archive
                .recording(RecordingId::new(1))
                .expect("1")
                .recorded_position
                < second.position()
        {
            idle.idle(0);
        }
        sessions = (first.session_id(), second.session_id());
        archive.shutdown();
    }
    (driver, data, reserved, sessions.0, sessions.1)
}

#[test]
fn replay_by_key_prints_or_publishes_only_that_keys_messages_and_bad_keys_are_clear_errors() {
    let (driver, data, reserved, session, other_session) = keyed_archive("keycli");
    let dir = data.path().to_string_lossy().into_owned();
    let print = |key: &str, extra: &[&str]| {
        let mut args = vec!["replay", "0", "--dir", &dir, "--key", key, "--print", "hex"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = tern(&args);
        assert_eq!(code, 0, "{key}: {stderr}");
        (printed_sequences(&stdout), stderr)
    };
    let by_reserved = |key: i64| -> Vec<u64> {
        (0..400u64)
            .filter(|s| reserved[*s as usize] == key)
            .collect()
    };
    let by_field = |key: u64| -> Vec<u64> { (0..400u64).filter(|s| s % 4 == key).collect() };
    for key in 0..3 {
        let (printed, stderr) = print(&format!("reserved:{key}"), &[]);
        assert_eq!(printed, by_reserved(key), "reserved:{key}");
        assert!(
            stderr.contains(&format!("{} messages", printed.len())),
            "{stderr}"
        );
    }
    assert!(
        by_reserved(0).iter().any(|s| keyed(*s).len() > 1376),
        "fragmented ones too"
    );
    for key in 0..4 {
        assert_eq!(print(&format!("field:8:i64:{key}"), &[]).0, by_field(key));
        // The low half of the same little-endian field, not indexed: scanned.
        assert_eq!(print(&format!("field:8:i32:{key}"), &[]).0, by_field(key));
    }
    assert!(print("reserved:9", &[]).0.is_empty());
    // With the other flags: from a time, paced, a length, progress.
    let (printed, stderr) = print(
        "field:8:i64:1",
        &["--from-time", "-1h", "--speed", "1000", "--progress"],
    );
    assert_eq!(printed, by_field(1), "{stderr}");
    let (code, stdout, _) = tern(&[
        "replay", "0", "--dir", &dir, "--length", "20000", "--print", "hex",
    ]);
    assert_eq!(code, 0);
    let within = printed_sequences(&stdout);
    let (printed, _) = print("field:8:i64:2", &["--length", "20000"]);
    assert_eq!(
        printed,
        within
            .iter()
            .copied()
            .filter(|s| s % 4 == 2)
            .collect::<Vec<_>>(),
        "a length"
    );
    // A session is a whole recording.
    let (printed, _) = print(&format!("session:{session}"), &[]);
    assert_eq!(printed, (0..400).collect::<Vec<_>>());
    for (key, expected) in [
        (
            format!("session:{other_session}"),
            "is recording 1".to_string(),
        ),
        ("session:77".to_string(), "no recording of stream 12".into()),
        ("reserved:x".into(), "not a decimal integer".into()),
        (
            "client:4".into(),
            "expected session, reserved, cluster-egress, tern-egress".into(),
        ),
        ("tern-egress:x".into(), "not a decimal integer".into()),
        ("field:8:u16:1".into(), "expected i32 or i64".into()),
        ("field:5000:i64:1".into(), "past the first fragment".into()),
    ] {
        let (code, _, stderr) = tern(&["replay", "0", "--dir", &dir, "--key", &key]);
        assert_ne!(code, 0, "{key}");
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.contains(&expected),
            "{key}: one clear line first: {stderr}"
        );
    }

    // Published to a channel: the subscriber gets the key's messages at their recorded positions.
    let (code, stdout, _) = tern(&["replay", "0", "--dir", &dir, "--print", "hex"]);
    assert_eq!(code, 0);
    let recorded: Vec<(u64, i64)> = stdout
        .lines()
        .map(|line| {
            (
                sequence_of(line),
                line.split('\t')
                    .next()
                    .expect("position")
                    .parse()
                    .expect("position"),
            )
        })
        .collect();
    let client = Client::connect(driver.dir()).expect("client");
    let expected: Vec<(u64, i64)> = recorded
        .iter()
        .copied()
        .filter(|(sequence, _)| reserved[*sequence as usize] == 2)
        .collect();
    // Publish `tern replay 0 --key reserved:2` on `stream` and collect (sequence, position).
    let publish = |stream: i32, extra: &[&str]| -> (Vec<(u64, i64)>, String) {
        let subscription = client.add_subscription("aeron:ipc", stream).expect("sub");
        let stream = stream.to_string();
        let mut args = vec![
            "replay",
            "0",
            "--dir",
            &dir,
            "--key",
            "reserved:2",
            "--channel",
            "aeron:ipc",
            "--stream",
            &stream,
            "--aeron-dir",
            driver.dir(),
            "--progress",
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new(TERN)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut assembler = tern_transport::FragmentAssembler::new();
        let mut received: Vec<(u64, i64)> = Vec::new();
        // Poll until the command exits: with recorded positions the replay pads the stream to
        // the recording's end, which a subscriber must consume.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut idle = BackoffIdle::new();
        while child.try_wait().expect("child").is_none() {
            assert!(Instant::now() < deadline, "got {}", received.len());
            let work = subscription
                .poll(
                    |fragment, header| {
                        assembler.on_fragment(fragment, header, &mut |message, header| {
                            received.push((
                                u64::from_le_bytes(message[0..8].try_into().expect("8 bytes")),
                                header.position,
                            ))
                        })
                    },
                    64,
                )
                .expect("poll");
            idle.idle(work);
        }
        let output = child.wait_with_output().expect("exit");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        assert!(stderr.contains("replay Done"), "{stderr}");
        (received, stderr)
    };
    let (received, _) = publish(7777, &["--keep-positions"]);
    assert_eq!(
        received, expected,
        "only reserved:2, at the recorded positions"
    );
    // By default the key's messages go back to back: the same messages, a shorter stream.
    let (received, _) = publish(7778, &[]);
    assert_eq!(
        received.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        expected.iter().map(|(s, _)| *s).collect::<Vec<_>>()
    );
    assert!(received.last().expect("messages").1 < expected.last().expect("messages").1);
    let (code, _, stderr) = tern(&["replay", "0", "--dir", &dir, "--keep-positions"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--key"), "{stderr}");

    // describe names the index files; index builds one for another kind.
    let (code, stdout, _) = tern(&["describe", "0", "--dir", &dir]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("key indexes       reserved, field:8:i64")
            && stdout.contains("0-0.reserved.kix  ok")
            && stdout.contains("0-131072.field-8-i64.kix  ok"),
        "{stdout}"
    );
    let (code, stdout, stderr) = tern(&["index", "0", "--dir", &dir, "--key", "field:0:i32"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("built"), "{stdout}");
    assert!(data.path().join("0-0.field-0-i32.kix").exists());
    let (code, _, stderr) = tern(&["index", "0", "--dir", &dir, "--key", "session"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("cannot be indexed"), "{stderr}");
    assert_eq!(print("field:0:i32:7", &[]).0, vec![7]);
}

/// The egress number (u64 at 40) of each message of `tern replay --print hex` output, each a
/// tern egress message.
fn printed_egress_numbers(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .map(|line| {
            let hex = line.split('\t').nth(2).expect("payload column");
            let bytes: Vec<u8> = (0..tern_archive::egress_header::LENGTH)
                .map(|index| u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16).expect("hex"))
                .collect();
            tern_archive::egress_header::decode(&bytes)
                .expect("a tern egress header")
                .egress_number
        })
        .collect()
}

#[test]
fn tern_egress_recordings_are_indexed_and_replayed_by_session_from_a_cluster_time() {
    let driver = driver("ternegresscli");
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_string_lossy().into_owned();
    // 2023-11-14T22:13:20Z, and one message a millisecond of cluster time after it: cluster
    // sessions 7, 8, 9 in turn, every tenth message not egress (kind 11).
    let base_ns = 1_700_000_000_000_000_000i64;
    let session_of = |number: u64| 7 + (number % 3) as i64;
    let egress = |number: u64| !number.is_multiple_of(10);
    {
        let mut config = ArchiveConfig::new(data.path(), driver.dir());
        config.segment_length = 128 * 1024;
        let archive = Archive::launch(config).expect("archive");
        archive
            .start_recording("aeron:ipc", 13, tern_archive::SourceLocation::Remote)
            .expect("record");
        let client = Client::connect(driver.dir()).expect("client");
        let publication = client
            .add_exclusive_publication("aeron:ipc", 13)
            .expect("pub");
        let mut idle = BackoffIdle::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while archive.recordings().is_empty() {
            assert!(Instant::now() < deadline);
            idle.idle(0);
        }
        let mut sequences = [0u64; 3];
        for number in 1..=400u64 {
            let session = session_of(number);
            let mut bytes = Vec::new();
            let sequence = &mut sequences[(session - 7) as usize];
            *sequence += u64::from(egress(number));
            tern_archive::egress_header::encode_header(
                session,
                *sequence,
                number,
                base_ns + number as i64 * 1_000_000,
                number,
                &mut bytes,
            );
            if !egress(number) {
                bytes[tern_archive::egress_header::KIND_OFFSET] = 11;
            }
            bytes.resize(bytes.len() + (number as usize * 37) % 500, number as u8);
            while publication.offer(&bytes).is_err() {
                idle.idle(0);
            }
        }
        while archive
            .recording(RecordingId::new(0))
            .expect("0")
            .recorded_position
            < publication.position()
        {
            idle.idle(0);
        }
        archive.shutdown();
    }
    let (code, stdout, stderr) = tern(&["index", "0", "--dir", &dir, "--key", "tern-egress"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("built"), "{stdout}");
    assert!(data.path().join("0-0.tern-egress.kix").exists());
    let (code, stdout, _) = tern(&["describe", "0", "--dir", &dir]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("key indexes       tern-egress")
            && stdout.contains("0-0.tern-egress.kix  ok"),
        "{stdout}"
    );
    let print = |extra: &[&str]| {
        let mut args = vec!["replay", "0", "--dir", &dir, "--print", "hex"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = tern(&args);
        assert_eq!(code, 0, "{extra:?}: {stderr}");
        printed_egress_numbers(&stdout)
    };
    let of_session = |session: i64, first: u64| -> Vec<u64> {
        (first..=400)
            .filter(|number| egress(*number) && session_of(*number) == session)
            .collect()
    };
    for session in 7..=9 {
        assert_eq!(
            print(&["--key", &format!("tern-egress:{session}")]),
            of_session(session, 1),
            "tern-egress:{session}"
        );
    }
    assert!(print(&["--key", "tern-egress:5"]).is_empty());
    // 300.5 ms after the base: message 301 is the first at or after it (300 is not egress and
    // keeps the time of 299); then session 8's messages from there, paced by the cluster's clock.
    let from_time = "2023-11-14T22:13:20.3005Z";
    assert_eq!(
        print(&[
            "--key",
            "tern-egress:8",
            "--time-source",
            "tern-egress",
            "--from-time",
            from_time,
        ]),
        of_session(8, 301)
    );
    let started = Instant::now();
    assert_eq!(
        print(&[
            "--key",
            "tern-egress:8",
            "--time-source",
            "tern-egress",
            "--from-time",
            from_time,
            "--speed",
            "2",
        ]),
        of_session(8, 301)
    );
    // Messages 301 to 397 of session 8: 96 ms of cluster time, 48 ms at 2x.
    assert!(
        started.elapsed() >= Duration::from_millis(40),
        "paced: {:?}",
        started.elapsed()
    );
    // By capture time instead, the same instant is before the recording: from its start.
    assert_eq!(
        print(&["--key", "tern-egress:8", "--from-time", from_time]),
        of_session(8, 1)
    );
    let (code, _, stderr) = tern(&[
        "replay",
        "0",
        "--dir",
        &dir,
        "--time-source",
        "tern-egress:ms",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("expected capture, cluster-egress[:UNIT], tern-egress"),
        "{stderr}"
    );
}

#[test]
fn key_indexes_lost_in_a_kill_9_are_rebuilt_by_verify_and_by_the_next_start() {
    let driver = driver("killkeys");
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let mut child = Command::new(TERN)
        .args([
            "record",
            "--channel",
            "aeron:ipc",
            "--stream",
            "1001",
            "--aeron-dir",
            driver.dir(),
            "--dir",
            &data_dir,
            "--segment-length",
            "128k",
            "--status-interval",
            "10",
            "--key-index",
            "field:8:i64",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tern record");
    let lines = BufReader::new(child.stdout.take().expect("stdout"));
    let pace = (64, Duration::from_micros(200));
    let publishing = SteadyPublisher::start(driver.dir(), "aeron:ipc", 1001, pace, keyed);
    let mut recorded = 0i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines.lines() {
        let line = line.expect("read child output");
        if let Some(value) = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("recorded="))
        {
            recorded = value.parse().expect("recorded position");
        }
        // Past three segments and some way into the fourth.
        if recorded >= 3 * 131072 + 40_000 || Instant::now() > deadline {
            break;
        }
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    publishing.stop();
    assert!(recorded >= 3 * 131072 + 40_000, "recorded only {recorded}");

    let kind: tern_archive::KeyKind = "field:8:i64".parse().expect("kind");
    let index = |base: i64| {
        data.path()
            .join(tern_archive::key_index::key_index_file_name(
                RecordingId::new(0),
                base,
                &kind,
            ))
    };
    let view = ArchiveView::open(data.path()).expect("open after the crash");
    let end = view
        .recording(RecordingId::new(0))
        .expect("recording")
        .end_position;
    assert!(
        view.recording(RecordingId::new(0))
            .expect("recording")
            .active,
        "the catalog still says active: the process died"
    );
    // The segment holding the last frame (the data may end exactly at a segment's end).
    let live_base = (end - 1) - (end - 1) % 131072;
    assert!(live_base >= 3 * 131072);
    // Unless it was full (then its notes went to the indexer), it had no index yet.
    assert!(
        end % 131072 == 0 || !index(live_base).exists(),
        "the segment being written had no index"
    );
    // The indexer may have been killed before writing a finished segment's index: lose one.
    let wait = Instant::now() + Duration::from_secs(5);
    while !index(131072).exists() && Instant::now() < wait {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(index(131072));
    let (code, stdout, stderr) = tern(&["verify", "--dir", &data_dir, "--quiet"]);
    assert_eq!(code, 0, "verify after kill -9: {stdout} {stderr}");
    assert!(
        stdout.contains("key index 0-131072.field-8-i64.kix rebuilt: missing"),
        "{stdout}"
    );
    assert!(index(131072).exists());
    let (_, checks) = view.key_indexes(RecordingId::new(0)).expect("look");
    assert!(
        checks.len() >= 3 && checks.iter().all(|check| check.is_ok()),
        "{checks:?}"
    );

    // The next start recovers the recording and indexes its last segment too.
    let mut config = ArchiveConfig::new(data.path(), driver.dir());
    config.segment_length = 128 * 1024;
    let archive = Archive::launch(config).expect("restart");
    let stop_position = archive
        .recording(RecordingId::new(0))
        .expect("recovered")
        .descriptor
        .stop_position;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !index(live_base).exists() {
        if Instant::now() > deadline {
            let files: Vec<String> = std::fs::read_dir(data.path())
                .expect("list")
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            panic!(
                "the last segment's index was not rebuilt: stop {stop_position}, end {end}, \
                 last segment {live_base}, files {files:?}, {:?}",
                ArchiveView::open(data.path())
                    .expect("view")
                    .key_indexes(RecordingId::new(0))
                    .map(|(_, checks)| checks)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(archive);
    let view = ArchiveView::open(data.path()).expect("reopen");
    let (_, checks) = view.key_indexes(RecordingId::new(0)).expect("look");
    assert_eq!(checks.len() as u64, (stop_position as u64).div_ceil(131072));
    assert!(checks.iter().all(|check| check.is_ok()), "{checks:?}");
    let mut all = Vec::new();
    view.messages(RecordingId::new(0), None, None, |message, _| {
        all.push(u64::from_le_bytes(
            message[0..8].try_into().expect("8 bytes"),
        ));
        true
    })
    .expect("read");
    let (code, stdout, stderr) = tern(&[
        "replay",
        "0",
        "--dir",
        &data_dir,
        "--key",
        "field:8:i64:3",
        "--print",
        "hex",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let printed = printed_sequences(&stdout);
    assert!(printed.len() > 20, "{} messages of key 3", printed.len());
    assert_eq!(
        printed,
        all.into_iter().filter(|s| s % 4 == 3).collect::<Vec<_>>()
    );
}
