//! The `tern` binary end to end: kill -9 of a recording process, damaged files, bad input.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_archive::{Archive, ArchiveConfig, ArchiveView, CATALOG_FILE};
use tern_transport::{BackoffIdle, Client, Idle, MediaDriver};

use tern_testkit::{driver, free_udp_port, SteadyPublisher};
const TERN: &str = env!("CARGO_BIN_EXE_tern");

fn tern(args: &[&str]) -> (i32, String, String) {
    tern_testkit::run(TERN, args)
}

/// Publishes [`message`]s on `aeron:ipc` stream 1001 until stopped, pausing 200 us every 64.
fn steady_publisher(driver: &MediaDriver) -> SteadyPublisher {
    let pace = (64, Duration::from_micros(200));
    SteadyPublisher::start(driver.dir(), "aeron:ipc", 1001, pace, message)
}

/// Sequence-numbered messages of varying length, some longer than the MTU.
fn message(sequence: u64) -> Vec<u8> {
    let length = 16 + (sequence as usize * 37) % 3000;
    let mut bytes = vec![(sequence % 251) as u8; length];
    bytes[0..8].copy_from_slice(&sequence.to_le_bytes());
    bytes
}

fn kill_recorder_mid_stream_and_recover(fsync: &str, kill_after_bytes: i64, min_segments: usize) {
    let driver = driver("kill");
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
            "--fsync",
            fsync,
            "--status-interval",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tern record");
    let lines = BufReader::new(child.stdout.take().expect("stdout"));
    let publishing = steady_publisher(&driver);
    let mut last_durable = 0i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines.lines() {
        let line = line.expect("read child output");
        if let Some(durable) = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("durable="))
        {
            last_durable = durable.parse().expect("durable position");
        }
        if last_durable >= kill_after_bytes || Instant::now() > deadline {
            break;
        }
    }
    assert!(
        last_durable >= kill_after_bytes,
        "the recorder reported only {last_durable}"
    );
    // SIGKILL while the publisher is still publishing: no chance to flush or close anything.
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let published = publishing.position();
    publishing.stop();
    assert!(published > last_durable, "the kill came mid-stream");

    let view = ArchiveView::open(data.path()).expect("open after the crash");
    let interrupted = view.recording(0).expect("the recording");
    assert!(
        interrupted.active,
        "the catalog still says active: the process died"
    );
    assert!(
        interrupted.end_position >= last_durable,
        "end {} < durable {last_durable}",
        interrupted.end_position
    );

    let (code, stdout, stderr) = tern(&["verify", "--dir", &data_dir, "--quiet"]);
    assert_eq!(code, 0, "verify after kill -9: {stdout} {stderr}");

    // Restart: recovery sets the stop position to the last valid frame, at or past the durable one.
    let archive = Archive::launch(ArchiveConfig::new(data.path(), driver.dir())).expect("restart");
    let recovered = archive.recording(0).expect("recording");
    assert!(!recovered.active);
    let stop_position = recovered.descriptor.stop_position;
    assert!(
        stop_position >= last_durable,
        "stop {stop_position} < durable {last_durable}"
    );
    assert_eq!(stop_position % 32, 0);
    drop(archive);
    let view = ArchiveView::open(data.path()).expect("reopen");
    let mut expected = 0u64;
    let resumed = view
        .messages(0, None, None, |bytes, _| {
            assert_eq!(bytes, message(expected).as_slice(), "message {expected}");
            expected += 1;
            true
        })
        .expect("read recovered messages");
    assert!(expected > 0);
    assert!(
        stop_position - resumed < 4096,
        "at most one partial message is cut at the end"
    );
    assert!(
        view.segment_files(0).len() >= min_segments,
        "the recording spans {min_segments} segments or more"
    );
}

#[test]
fn kill_9_of_a_recording_process_loses_nothing_it_reported_durable() {
    kill_recorder_mid_stream_and_recover("interval:5", 400 * 1024, 2);
}

#[test]
fn kill_9_with_fsync_always_early_in_the_first_segment() {
    kill_recorder_mid_stream_and_recover("always", 8 * 1024, 1);
}

fn small_archive(tag: &str) -> (MediaDriver, tempfile::TempDir) {
    let driver = driver(tag);
    let data = tempfile::tempdir().expect("temp dir");
    {
        let mut config = ArchiveConfig::new(data.path(), driver.dir());
        config.segment_length = 128 * 1024;
        let archive = Archive::launch(config).expect("archive");
        archive
            .start_recording("aeron:ipc", 5, tern_archive::SourceLocation::Remote)
            .expect("record");
        let client = Client::connect(driver.dir()).expect("client");
        let mut idle = BackoffIdle::new();
        for stream_session in 0..3 {
            let publication = client
                .add_exclusive_publication("aeron:ipc", 5)
                .expect("pub");
            let deadline = Instant::now() + Duration::from_secs(10);
            while archive.recordings().len() <= stream_session {
                assert!(Instant::now() < deadline);
                idle.idle(0);
            }
            for sequence in 0..300 {
                while publication.offer(&message(sequence)).is_err() {
                    idle.idle(0);
                }
            }
            let id = archive.recordings()[stream_session].descriptor.recording_id;
            while archive.recording(id).expect("info").recorded_position < publication.position() {
                idle.idle(0);
            }
        }
        archive.shutdown();
    }
    (driver, data)
}

#[test]
fn a_damaged_catalog_record_is_named_and_the_other_recordings_stay_usable() {
    let (_driver, data) = small_archive("catalog");
    let dir = data.path().to_string_lossy().into_owned();
    let catalog = data.path().join(CATALOG_FILE);
    let mut bytes = std::fs::read(&catalog).expect("catalog");
    bytes[1024 + 1024 + 40] ^= 0xFF; // recording 1's stop position
    std::fs::write(&catalog, bytes).expect("damage");
    let (code, stdout, stderr) = tern(&["list", "--dir", &dir]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("damaged")
            && stdout.contains("offset 2048")
            && stdout.contains("checksum mismatch"),
        "{stdout}"
    );
    assert_eq!(
        stdout.lines().filter(|line| line.contains("valid")).count(),
        2,
        "{stdout}"
    );
    let (code, _, stderr) = tern(&["describe", "1", "--dir", &dir]);
    assert_eq!(code, 1);
    assert!(stderr.contains("catalog.tern at offset 2048"), "{stderr}");
    let (code, stdout, _) = tern(&["replay", "2", "--dir", &dir, "--print", "none"]);
    assert_eq!(code, 0, "{stdout}");
    let (code, stdout, _) = tern(&["verify", "--dir", &dir, "--quiet"]);
    assert_eq!(code, 1, "a damaged catalog record fails verify");
    assert!(
        stdout.contains("recording 0: ok") && stdout.contains("recording 2: ok"),
        "{stdout}"
    );

    std::fs::write(&catalog, b"TERNCAT\0trunc").expect("truncate");
    let (code, _, stderr) = tern(&["list", "--dir", &dir]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("tern: ")
            && stderr.contains("catalog.tern")
            && stderr.contains("truncated"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

#[test]
fn verify_names_the_segment_and_offset_of_a_flipped_byte() {
    let (_driver, data) = small_archive("verify");
    let dir = data.path().to_string_lossy().into_owned();
    let segment = data.path().join("1-131072.rec");
    let mut bytes = std::fs::read(&segment).expect("second segment of recording 1");
    bytes[5000] ^= 0x40;
    std::fs::write(&segment, bytes).expect("damage");
    let (code, stdout, _) = tern(&["verify", "--dir", &dir, "--quiet"]);
    assert_eq!(code, 1);
    let line = stdout
        .lines()
        .find(|line| line.contains("DAMAGED"))
        .expect("a damage line");
    assert!(
        line.starts_with("recording 1:") && line.contains("1-131072.rec"),
        "{line}"
    );
    let offset: u64 = line
        .split("offset ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("offset");
    assert!(
        offset <= 5000 && 5000 - offset < 3100,
        "offset {offset} is the frame holding byte 5000"
    );
    let (code, stdout, _) = tern(&["verify", "0", "--dir", &dir, "--quiet"]);
    assert_eq!(
        (code, stdout.trim().starts_with("recording 0: ok")),
        (0, true),
        "{stdout}"
    );
}

#[test]
fn bad_ids_paths_and_flags_give_one_clear_line_and_a_non_zero_exit() {
    let (_driver, data) = small_archive("bad");
    let dir = data.path().to_string_lossy().into_owned();
    for (args, expected) in [
        (
            vec!["describe", "42", "--dir", &dir],
            "unknown recording id 42",
        ),
        (
            vec!["replay", "0", "--dir", &dir, "--from", "33"],
            "not frame aligned",
        ),
        (vec!["dump", "7", "--dir", &dir], "unknown recording id 7"),
        (
            vec!["list", "--dir", "/nonexistent/tern"],
            "is this an archive directory?",
        ),
        (
            vec![
                "record",
                "--channel",
                "aeron:ipc",
                "--stream",
                "1",
                "--aeron-dir",
                "/nonexistent/aeron",
            ],
            "no media driver in /nonexistent/aeron",
        ),
        (
            vec![
                "record",
                "--channel",
                "aeron:ipc",
                "--stream",
                "1",
                "--fsync",
                "sometimes",
            ],
            "fsync policy",
        ),
    ] {
        let (code, _, stderr) = tern(&args);
        assert_ne!(code, 0, "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let (code, stdout, _) = tern(&["list", "--dir", &dir, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 3);
    assert!(Path::new(&dir).join("0.tix").exists());
}

/// Runs `tern record` on a 1 MiB tmpfs (in a user and mount namespace of its own, so no
/// privilege is needed), then `tern verify` and `tern list` there, while this process publishes.
#[test]
fn a_full_disk_stops_the_recording_cleanly_and_keeps_what_was_acknowledged() {
    let driver = driver("full");
    let scratch = tempfile::tempdir().expect("temp dir");
    let data = scratch.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let script = r#"
        set -e
        mount -t tmpfs -o size=1m tmpfs "$1"
        "$2" record --aeron-dir "$3" --dir "$1" --channel aeron:ipc --stream 1001 \
            --segment-length 128k --status-interval 20 --duration 3 2> "$4/record.err" \
            && echo "record-exit=0" || echo "record-exit=$?"
        "$2" verify --dir "$1" --quiet || true
        "$2" list --dir "$1" --json
    "#;
    let publishing = steady_publisher(&driver);
    let output = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .arg(&data)
        .arg(TERN)
        .arg(driver.dir())
        .arg(scratch.path())
        .output()
        .expect("run unshare (util-linux)");
    publishing.stop();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = std::fs::read_to_string(scratch.path().join("record.err")).unwrap_or_default();
    assert!(
        output.status.success(),
        "{stdout}\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("record-exit=1"),
        "tern record kept running to its end, then said the recording failed: {stdout}"
    );
    assert!(
        stderr.contains("No space left on device") && stderr.contains(".rec"),
        "the error names the segment and the cause: {stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("tern: recording 0 of session")
                && line.contains("what follows is not stored")),
        "the failure is said as it happens: {stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|line| line.starts_with("tern: 1 recording could not be written")),
        "and at the exit: {stderr}"
    );
    assert!(
        stdout.contains("status recording=0") && stdout.contains("failed at="),
        "the status says so: {stdout}"
    );
    let last_durable = stdout
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix("durable="))
        })
        .filter_map(|value| value.parse::<i64>().ok())
        .max()
        .expect("status lines");
    assert!(
        stdout.contains("recording 0: ok"),
        "what was written verifies: {stdout}"
    );
    let listed = stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .expect("list --json");
    let recording: serde_json::Value = serde_json::from_str(listed).expect("json");
    assert_eq!(
        recording["state"], "valid",
        "stopped, not left active: {listed}"
    );
    let end = recording["end_position"].as_i64().expect("end");
    assert!(
        end >= last_durable && end > 512 * 1024,
        "end {end}, durable {last_durable}"
    );
}

#[test]
fn replay_length_counts_from_the_recordings_start() {
    let driver = driver("length");
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().to_string_lossy().into_owned();
    let client = Client::connect(driver.dir()).expect("client");
    let publication = client
        .add_exclusive_publication("aeron:ipc", 9)
        .expect("pub");
    let early = client
        .add_subscription("aeron:ipc", 9)
        .expect("early subscriber");
    let mut idle = BackoffIdle::new();
    // Messages before the recording: the recording starts past position 0.
    for _ in 0..10 {
        while publication.offer(&[7u8; 200]).is_err() {
            idle.idle(0);
        }
    }
    while early.poll(|_, _| {}, 100).expect("poll") > 0 {}
    let start;
    {
        let archive =
            Archive::launch(ArchiveConfig::new(data.path(), driver.dir())).expect("archive");
        archive
            .start_recording("aeron:ipc", 9, tern_archive::SourceLocation::Remote)
            .expect("record");
        let deadline = Instant::now() + Duration::from_secs(10);
        while archive.recordings().is_empty() {
            assert!(Instant::now() < deadline);
            idle.idle(0);
        }
        for _ in 0..10 {
            while publication.offer(&[8u8; 200]).is_err() {
                idle.idle(0);
            }
            while early.poll(|_, _| {}, 100).expect("poll") > 0 {}
        }
        while archive.recordings()[0].recorded_position < publication.position() {
            idle.idle(0);
        }
        start = archive.recordings()[0].descriptor.start_position;
        archive.shutdown();
    }
    assert!(start > 0, "the recording starts after the early messages");
    // 200 + 32 bytes per frame, aligned to 256: three frames.
    let (code, stdout, stderr) = tern(&[
        "replay", "0", "--dir", &dir, "--length", "768", "--print", "hex",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stderr.contains("3 messages"), "{stderr}");
    let (code, _, stderr) = tern(&[
        "replay",
        "0",
        "--dir",
        &dir,
        "--from-time",
        "-1h",
        "--print",
        "none",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("10 messages"),
        "from an hour ago: all of them: {stderr}"
    );
    let (code, _, stderr) = tern(&[
        "replay",
        "0",
        "--dir",
        &dir,
        "--from-time",
        "now",
        "--print",
        "none",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("0 messages"),
        "from now: none yet: {stderr}"
    );
    let (code, _, stderr) = tern(&[
        "replay", "0", "--dir", &dir, "--speed", "1000", "--print", "none",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("10 messages"), "paced: {stderr}");
    let (code, _, stderr) = tern(&["replay", "0", "--dir", &dir, "--speed", "0"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("must be between 0.01 and 1000"), "{stderr}");
    let (code, _, stderr) = tern(&["replay", "0", "--dir", &dir, "--from-time", "last tuesday"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("e.g. 2026-11-24T23:25:28Z"), "{stderr}");
}

/// An archive with one recording of 40 messages 5 ms apart (200 ms of original time).
fn record_gapped(tag: &str) -> (MediaDriver, tempfile::TempDir) {
    let driver = driver(tag);
    let data = tempfile::tempdir().expect("temp dir");
    {
        let archive =
            Archive::launch(ArchiveConfig::new(data.path(), driver.dir())).expect("archive");
        archive
            .start_recording("aeron:ipc", 11, tern_archive::SourceLocation::Remote)
            .expect("record");
        let client = Client::connect(driver.dir()).expect("client");
        let publication = client
            .add_exclusive_publication("aeron:ipc", 11)
            .expect("pub");
        let mut idle = BackoffIdle::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while archive.recordings().is_empty() {
            assert!(Instant::now() < deadline);
            idle.idle(0);
        }
        for sequence in 0..40u64 {
            std::thread::sleep(Duration::from_millis(5));
            while publication.offer(&message(sequence)).is_err() {
                idle.idle(0);
            }
        }
        while archive.recordings()[0].recorded_position < publication.position() {
            idle.idle(0);
        }
        archive.shutdown();
    }
    (driver, data)
}

/// `tern replay 0 --speed 0.2 --controls --print hex` on `dir`, with piped standard streams.
fn spawn_controlled_replay(dir: &str) -> std::process::Child {
    Command::new(TERN)
        .args([
            "replay",
            "0",
            "--dir",
            dir,
            "--speed",
            "0.2",
            "--controls",
            "--print",
            "hex",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

fn sequence_of(line: &str) -> u64 {
    let hex = line.split('\t').nth(2).expect("payload column");
    let bytes: Vec<u8> = (0..8)
        .map(|index| u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16).expect("hex"))
        .collect();
    u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
}

#[test]
fn replay_controls_seek_a_paced_print_back_to_the_start() {
    let (_driver, data) = record_gapped("seekcli");
    let dir = data.path().to_string_lossy().into_owned();
    let mut child = spawn_controlled_replay(&dir);
    let mut stdin = child.stdin.take().expect("stdin");
    std::thread::sleep(Duration::from_millis(300));
    use std::io::Write;
    writeln!(stdin, "s 33").expect("a bad seek");
    writeln!(stdin, "s 0").expect("seek to the start");
    drop(stdin);
    let output = child.wait_with_output().expect("exit");
    assert!(output.status.success());
    let printed: Vec<u64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(sequence_of)
        .collect();
    let restart = printed
        .iter()
        .skip(1)
        .position(|sequence| *sequence == 0)
        .expect("a restart")
        + 1;
    assert!(
        restart > 0 && restart < 40,
        "some messages before the seek: {printed:?}"
    );
    assert_eq!(
        &printed[..restart],
        &(0..restart as u64).collect::<Vec<_>>()[..]
    );
    assert_eq!(
        &printed[restart..],
        &(0..40).collect::<Vec<_>>()[..],
        "from the start again, once each"
    );
}

#[test]
fn replay_controls_pause_and_resume_a_paced_print() {
    let (_driver, data) = record_gapped("controls");
    let dir = data.path().to_string_lossy().into_owned();
    // At 0.2x the replay takes about 1 s; pause it for 600 ms a quarter of the way in.
    let mut child = spawn_controlled_replay(&dir);
    let started = Instant::now();
    let lines = Arc::new(std::sync::Mutex::new(Vec::<(Instant, String)>::new()));
    let reader_lines = lines.clone();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("line");
            reader_lines
                .lock()
                .expect("lines")
                .push((Instant::now(), line));
        }
    });
    let mut stdin = child.stdin.take().expect("stdin");
    std::thread::sleep(Duration::from_millis(250));
    use std::io::Write;
    writeln!(stdin, "p").expect("pause");
    let paused = Instant::now();
    std::thread::sleep(Duration::from_millis(600));
    writeln!(stdin, "r").expect("resume");
    let resumed = Instant::now();
    let status = child.wait().expect("exit");
    reader.join().expect("reader");
    let elapsed = started.elapsed();
    assert!(status.success());
    let lines = lines.lock().expect("lines");
    assert_eq!(lines.len(), 40, "every message once");
    for (sequence, (_, line)) in lines.iter().enumerate() {
        let hex: String = (sequence as u64)
            .to_le_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert!(
            line.split('\t')
                .nth(2)
                .is_some_and(|payload| payload.starts_with(&hex)),
            "line {sequence}: {line}"
        );
    }
    // Nothing printed between 50 ms after the pause (a message in flight) and the resume.
    let during = lines
        .iter()
        .filter(|(at, _)| *at > paused + Duration::from_millis(50) && *at < resumed)
        .count();
    assert_eq!(during, 0, "printed while paused");
    assert!(
        elapsed >= Duration::from_millis(1300),
        "the pause adds to the schedule: {elapsed:?}"
    );
}

#[test]
fn replay_from_a_time_inside_the_messages() {
    let (_driver, data) = record_gapped("timesource");
    let dir = data.path().to_string_lossy().into_owned();
    // Each message starts with its sequence as a little-endian i64: read as milliseconds since
    // the epoch, message k was "made" k ms after 1970-01-01.
    let (code, stdout, stderr) = tern(&[
        "replay",
        "0",
        "--dir",
        &dir,
        "--time-source",
        "field:0:ms",
        "--from-time",
        "1970-01-01T00:00:00.020Z",
        "--print",
        "hex",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let printed: Vec<u64> = stdout.lines().map(sequence_of).collect();
    assert_eq!(printed, (20..40).collect::<Vec<_>>());
    let (code, _, stderr) = tern(&["replay", "0", "--dir", &dir, "--time-source", "sundial"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("expected capture, cluster-egress"),
        "{stderr}"
    );
}

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
        while archive.recording(0).expect("0").recorded_position < first.position()
            || archive.recording(1).expect("1").recorded_position < second.position()
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
            "expected session, reserved, cluster-egress".into(),
        ),
        ("tern-egress:4".into(), "not defined yet".into()),
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
            .join(tern_archive::key_index::key_index_file_name(0, base, &kind))
    };
    let view = ArchiveView::open(data.path()).expect("open after the crash");
    let end = view.recording(0).expect("recording").end_position;
    assert!(
        view.recording(0).expect("recording").active,
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
    let (_, checks) = view.key_indexes(0).expect("look");
    assert!(
        checks.len() >= 3 && checks.iter().all(|check| check.is_ok()),
        "{checks:?}"
    );

    // The next start recovers the recording and indexes its last segment too.
    let mut config = ArchiveConfig::new(data.path(), driver.dir());
    config.segment_length = 128 * 1024;
    let archive = Archive::launch(config).expect("restart");
    let stop_position = archive
        .recording(0)
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
                    .key_indexes(0)
                    .map(|(_, checks)| checks)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(archive);
    let view = ArchiveView::open(data.path()).expect("reopen");
    let (_, checks) = view.key_indexes(0).expect("look");
    assert_eq!(checks.len() as u64, (stop_position as u64).div_ceil(131072));
    assert!(checks.iter().all(|check| check.is_ok()), "{checks:?}");
    let mut all = Vec::new();
    view.messages(0, None, None, |message, _| {
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

/// Every recording of `dir` printed as hex, one string per recording.
fn printed_recordings(dir: &str, ids: &[i64]) -> Vec<String> {
    ids.iter()
        .map(|id| {
            let (code, stdout, stderr) =
                tern(&["replay", &id.to_string(), "--dir", dir, "--print", "hex"]);
            assert_eq!(code, 0, "replay {id}: {stderr}");
            stdout
        })
        .collect()
}

#[test]
fn a_directory_with_segments_but_no_usable_catalog_is_refused_until_the_catalog_is_rebuilt() {
    let (driver, data) = small_archive("rebuild");
    let dir = data.path().to_string_lossy().into_owned();
    let catalog = data.path().join(CATALOG_FILE);
    let before = printed_recordings(&dir, &[0, 1, 2]);
    let original = std::fs::read(&catalog).expect("catalog");
    let segment = std::fs::read(data.path().join("0-0.rec")).expect("segment");
    let refused = |what: &str| {
        for command in [
            vec![
                "archive",
                "--dir",
                &dir,
                "--aeron-dir",
                driver.dir(),
                "--record",
                "aeron:ipc@5",
                "--no-control",
            ],
            vec![
                "record",
                "--dir",
                &dir,
                "--aeron-dir",
                driver.dir(),
                "--channel",
                "aeron:ipc",
                "--stream",
                "5",
                "--duration",
                "1",
            ],
        ] {
            let (code, stdout, stderr) = tern(&command);
            assert_ne!(code, 0, "{what}: {command:?} refused: {stdout}");
            let lines: Vec<&str> = stderr.lines().collect();
            assert_eq!(lines.len(), 1, "{what}: one line: {stderr}");
            assert!(
                lines[0].starts_with("tern: ")
                    && lines[0].contains("tern catalog rebuild")
                    && lines[0].contains("-0.rec"),
                "{what}: {stderr}"
            );
        }
        assert_eq!(
            std::fs::read(data.path().join("0-0.rec")).expect("segment"),
            segment,
            "{what}: the segment file is untouched"
        );
    };

    std::fs::remove_file(&catalog).expect("delete the catalog");
    refused("no catalog");
    assert!(!catalog.exists(), "no empty catalog was created");
    std::fs::write(&catalog, &original[..1024]).expect("cut to the header");
    refused("catalog cut to its header");
    std::fs::write(&catalog, &original[..2048]).expect("cut to one record");
    refused("catalog cut to one record");

    // The way back: from the segment files' frames alone (no catalog at all).
    std::fs::remove_file(&catalog).expect("delete the catalog");
    let (code, stdout, stderr) = tern(&["catalog", "rebuild", "--dir", &dir]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("0 records kept, 3 rebuilt from segment files"),
        "{stdout}"
    );
    assert_eq!(
        printed_recordings(&dir, &[0, 1, 2]),
        before,
        "every message back"
    );
    let (code, stdout, _) = tern(&["verify", "--dir", &dir, "--quiet"]);
    assert_eq!(code, 0, "{stdout}");
    let view = ArchiveView::open(data.path()).expect("view");
    let original_view = {
        let scratch = tempfile::tempdir().expect("temp dir");
        std::fs::write(scratch.path().join(CATALOG_FILE), &original).expect("copy");
        let catalog = tern_archive::Catalog::open(scratch.path(), false).expect("catalog");
        catalog.recordings().cloned().collect::<Vec<_>>()
    };
    for (rebuilt, was) in view
        .recordings()
        .expect("recordings")
        .iter()
        .zip(&original_view)
    {
        let rebuilt = &rebuilt.descriptor;
        assert_eq!(
            (
                rebuilt.start_position,
                rebuilt.stop_position,
                rebuilt.stream_id,
                rebuilt.term_length,
                rebuilt.segment_length,
                rebuilt.initial_term_id
            ),
            (
                was.start_position,
                was.stop_position,
                was.stream_id,
                was.term_length,
                was.segment_length,
                was.initial_term_id
            ),
            "recording {}",
            was.recording_id
        );
    }

    // A damaged header with intact records: the records are kept as they were.
    let mut damaged = original.clone();
    damaged[100] ^= 0xFF;
    std::fs::write(&catalog, &damaged).expect("damage the header");
    refused("damaged header");
    let (code, stdout, stderr) = tern(&["catalog", "rebuild", "--dir", &dir]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("3 records kept"), "{stdout}");
    assert!(stdout.contains("old catalog kept as"), "{stdout}");
    let rebuilt = std::fs::read(&catalog).expect("catalog");
    assert_eq!(rebuilt[1024..], original[1024..], "records byte for byte");

    // The archive starts on it again, and a new recording takes the next id.
    let archive = Archive::launch(ArchiveConfig::new(data.path(), driver.dir())).expect("launch");
    archive
        .start_recording("aeron:ipc", 6, tern_archive::SourceLocation::Remote)
        .expect("record");
    let client = Client::connect(driver.dir()).expect("client");
    let publication = client
        .add_exclusive_publication("aeron:ipc", 6)
        .expect("publication");
    let deadline = Instant::now() + Duration::from_secs(10);
    while archive.recordings().len() < 4 {
        assert!(Instant::now() < deadline, "the new recording starts");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(archive.recordings()[3].descriptor.recording_id, 3);
    drop(publication);
    archive.shutdown();
    assert_eq!(printed_recordings(&dir, &[0, 1, 2]), before);
}

#[test]
fn a_purge_cut_short_by_a_crash_finishes_at_the_next_launch() {
    let (driver, data) = small_archive("purge-finish");
    // A purge writes the deleted record first, then deletes the files: a crash between the two
    // leaves files no command removes. The catalog half of it, by hand:
    {
        let mut catalog = tern_archive::Catalog::open(data.path(), true).expect("catalog");
        let mut descriptor = catalog.get(1).expect("recording 1").clone();
        descriptor.state = tern_archive::RecordState::Deleted;
        catalog.update(&descriptor).expect("mark deleted");
    }
    let files_of = |id: &str| {
        std::fs::read_dir(data.path())
            .expect("list")
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| {
                name.strip_prefix(id)
                    .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('.'))
            })
            .count()
    };
    assert!(files_of("1") > 0);
    let others = (files_of("0"), files_of("2"));
    let archive = Archive::launch(ArchiveConfig::new(data.path(), driver.dir())).expect("launch");
    archive.shutdown();
    assert_eq!(files_of("1"), 0, "the purge finished");
    assert_eq!(
        (files_of("0"), files_of("2")),
        others,
        "nothing else deleted"
    );
    let (code, stdout, _) = tern(&["verify", "--dir", &data.path().to_string_lossy(), "--quiet"]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn verify_checks_time_indexes_and_rebuilds_a_damaged_one_from_its_sound_entries() {
    let (_driver, data) = small_archive("tix");
    let dir = data.path().to_string_lossy().into_owned();
    let tix = data.path().join("1.tix");
    let original = std::fs::read(&tix).expect("time index");
    let entries = (original.len() - 32) / 16;
    assert!(entries >= 1, "the recording has time index entries");
    // An entry that points inside a frame: found, and the entries before it are kept.
    let mut inside = original.clone();
    let last = 32 + (entries - 1) * 16;
    let position = i64::from_le_bytes(inside[last + 8..last + 16].try_into().expect("8"));
    inside[last + 8..last + 16].copy_from_slice(&(position + 32).to_le_bytes());
    std::fs::write(&tix, &inside).expect("damage an entry");
    let (code, stdout, _) = tern(&["verify", "1", "--dir", &dir, "--quiet"]);
    assert_eq!(code, 1, "a damaged time index fails verify: {stdout}");
    assert!(
        stdout.contains("1.tix DAMAGED at offset")
            && stdout.contains(&format!("offset {last}"))
            && stdout.contains("not a frame start")
            && stdout.contains("rebuilt"),
        "{stdout}"
    );
    let rebuilt = std::fs::read(&tix).expect("time index");
    assert_eq!(rebuilt[..], original[..last], "the sound entries kept");
    let (code, stdout, _) = tern(&["verify", "1", "--dir", &dir, "--quiet"]);
    assert_eq!(code, 0, "sound after the rebuild: {stdout}");

    // Garbage: found, and rebuilt from the recording's start; time replays work again.
    std::fs::write(&tix, vec![0x5A; 300]).expect("garbage");
    let (code, _, stderr) = tern(&["replay", "1", "--dir", &dir, "--speed", "100"]);
    assert_ne!(code, 0, "a garbage index is an error to a paced replay");
    assert!(stderr.contains("1.tix"), "{stderr}");
    let (code, stdout, _) = tern(&["verify", "--dir", &dir, "--quiet"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("1.tix DAMAGED at offset 0") && stdout.contains("rebuilt"),
        "{stdout}"
    );
    let (code, stdout, stderr) = tern(&[
        "replay", "1", "--dir", &dir, "--speed", "100", "--print", "none",
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, _) = tern(&["verify", "--dir", &dir, "--quiet"]);
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn a_truncate_cut_short_by_a_crash_finishes_at_the_next_launch() {
    let (driver, data) = small_archive("truncate-finish");
    let segments = |id: i64| {
        tern_archive::list_segments(data.path())
            .expect("segments")
            .get(&id)
            .cloned()
            .unwrap_or_default()
    };
    assert!(segments(0).len() > 1, "recording 0 spans segments");
    // A truncate writes the record (stopped at the cut) before it deletes the later segments:
    // the record half of it, by hand, at the 10th frame of the first segment.
    let mut cut = 0;
    let mut seen = 0;
    ArchiveView::open(data.path())
        .expect("view")
        .frames(0, None, None, |frame| {
            seen += 1;
            cut = frame.position;
            seen < 10
        })
        .expect("frames");
    {
        let mut catalog = tern_archive::Catalog::open(data.path(), true).expect("catalog");
        let mut descriptor = catalog.get(0).expect("recording 0").clone();
        descriptor.stop_position = cut;
        catalog.update(&descriptor).expect("truncated record");
    }
    let others = (segments(1), segments(2));
    let archive = Archive::launch(ArchiveConfig::new(data.path(), driver.dir())).expect("launch");
    archive.shutdown();
    assert_eq!(segments(0), vec![0], "the truncate finished");
    assert_eq!((segments(1), segments(2)), others, "nothing else deleted");
    let (code, stdout, _) = tern(&["verify", "--dir", &data.path().to_string_lossy(), "--quiet"]);
    assert_eq!(code, 0, "{stdout}");
}

// ---- Bad command lines, channels and time sources; local recordings on an external driver ------

/// `tern ARGS` fails with one line on standard error, starting `tern:`, and exit code 2 (a usage
/// error); returns the line.
fn usage_error(args: &[&str]) -> String {
    let (code, stdout, stderr) = tern(args);
    assert_eq!(code, 2, "{args:?}: {stderr}");
    assert_eq!(stdout, "", "{args:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(stderr.starts_with("tern: "), "{args:?}: {stderr}");
    stderr.trim_end().to_string()
}

#[test]
fn bad_flags_give_one_tern_line_naming_the_flag_and_help_and_version_still_print() {
    for (args, expected) in [
        (
            vec!["replay", "0", "--bogus"],
            "tern: unknown flag --bogus; see `tern replay --help`",
        ),
        (
            vec!["replay", "0", "--sped", "2"],
            "tern: unknown flag --sped (did you mean --speed?); see `tern replay --help`",
        ),
        (
            vec!["replay", "0", "--speed"],
            "tern: --speed needs a value; see `tern replay --help`",
        ),
        (
            vec!["replay", "0", "--speed", "fast"],
            "tern: --speed fast: not a number (a speed is from 0.01 to 1000)",
        ),
        (
            vec!["replay", "0", "--speed", "-1"],
            "tern: --speed -1: must be between 0.01 and 1000",
        ),
        (
            vec!["replay", "0", "--speed", "0"],
            "tern: --speed 0: must be between 0.01 and 1000",
        ),
        (
            vec!["list", "--stream", "x"],
            "tern: --stream x: not an integer",
        ),
        (
            vec!["list", "--stream", "99999999999"],
            "tern: --stream 99999999999: must be between -2147483648 and 2147483647",
        ),
        (
            vec!["dump", "0", "--count", "-5"],
            "tern: --count -5: must not be negative",
        ),
        (
            vec!["replay", "0", "--print", "bogus"],
            "tern: --print bogus: expected one of text, hex, none",
        ),
        (
            vec!["record", "--stream", "1"],
            "tern: missing --channel <CHANNEL>; see `tern record --help`",
        ),
        (
            vec!["replay", "0", "--from", "8", "--from-time", "now"],
            "tern: --from cannot be used with --from-time; see `tern replay --help`",
        ),
        (
            vec![
                "record",
                "--channel",
                "aeron:ipc",
                "--stream",
                "1",
                "--segment-length",
                "lots",
            ],
            "tern: --segment-length lots: not a size (e.g. 4096, 64k, 128m, 1g)",
        ),
        (vec!["describe", "x"], "tern: <ID> x: not an integer"),
        (
            vec!["bogus"],
            "tern: unknown command \"bogus\"; see `tern --help`",
        ),
    ] {
        assert_eq!(usage_error(&args), expected, "{args:?}");
    }
    // A negative number is a value, not a flag: `describe -1` gets to look for the recording.
    let (code, _, stderr) = tern(&["describe", "-1", "--dir", "/nonexistent/tern"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is this an archive directory?"), "{stderr}");

    for args in [
        vec!["replay", "--help"],
        vec!["replay", "-h"],
        vec!["help", "replay"],
    ] {
        let (code, stdout, stderr) = tern(&args);
        assert_eq!((code, stderr.as_str()), (0, ""), "{args:?}");
        assert!(stdout.contains("Usage: tern replay"), "{args:?}: {stdout}");
    }
    let (code, stdout, stderr) = tern(&["--version"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert!(stdout.starts_with("tern "), "{stdout}");
}

#[test]
fn an_invalid_channel_is_named_with_what_is_wrong() {
    // Refused while the command line is read.
    for (args, expected) in [
        (
            vec!["record", "--channel", "aeron:bogus", "--stream", "1"],
            "tern: --channel aeron:bogus: unknown media \"bogus\"",
        ),
        (
            vec!["archive", "--record", "udp://x@1"],
            "tern: --record udp://x@1: channel udp://x: a channel starts with aeron:ipc or aeron:udp",
        ),
        (
            vec!["archive", "--record-local", "aeron:udp?interface=localhost@1002"],
            "a UDP channel names endpoint=HOST:PORT",
        ),
        (
            vec!["record", "--channel", "aeron:udp", "--stream", "1"],
            "a UDP channel needs parameters",
        ),
        (
            vec!["replay", "0", "--channel", "aeron:udp?endpoint=localhost", "--stream", "1"],
            "endpoint=localhost: expected HOST:PORT",
        ),
        (
            vec!["record", "--channel", "aeron:ipc?term-length", "--stream", "1"],
            "parameter \"term-length\" has no value",
        ),
    ] {
        let line = usage_error(&args);
        assert!(line.contains(expected), "{args:?}: {line}");
    }

    // A channel from a config file is checked before Aeron sees it.
    let scratch = tempfile::tempdir().expect("temp dir");
    let config = scratch.path().join("tern.toml");
    std::fs::write(
        &config,
        "[[record]]\nchannel = \"aeron:udp?interface=localhost\"\nstream_id = 1002\n",
    )
    .expect("config");
    let aeron_dir = scratch.path().join("aeron").to_string_lossy().into_owned();
    let data_dir = scratch.path().join("data").to_string_lossy().into_owned();
    let config = config.to_string_lossy().into_owned();
    let (code, _, stderr) = tern(&[
        "archive",
        "--embedded-driver",
        "--aeron-dir",
        &aeron_dir,
        "--dir",
        &data_dir,
        "--no-control",
        "--config",
        &config,
    ]);
    assert_eq!(code, 1, "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("tern:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(
            "invalid channel aeron:udp?interface=localhost: a UDP channel names endpoint"
        ),
        "{stderr}"
    );

    // What only Aeron refuses comes with Aeron's own message, not "lastError=no error".
    let (code, _, stderr) = tern(&[
        "record",
        "--embedded-driver",
        "--aeron-dir",
        &aeron_dir,
        "--dir",
        &data_dir,
        "--channel",
        "aeron:udp?endpoint=localhost:0|so-rcvbuf=abc",
        "--stream",
        "1",
        "--duration",
        "1",
    ]);
    assert_eq!(code, 1, "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("tern:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("aeron:udp?endpoint=localhost:0|so-rcvbuf=abc")
            && errors[0].contains("could not parse so-rcvbuf=abc")
            && !errors[0].contains("lastError"),
        "{stderr}"
    );
}

#[test]
fn a_time_source_field_past_the_first_fragment_is_refused_like_a_key_field() {
    let (driver, data) = record_gapped("timefield");
    let dir = data.path().to_string_lossy().into_owned();
    let mtu = ArchiveView::open(data.path())
        .expect("view")
        .recording(0)
        .expect("recording 0")
        .descriptor
        .mtu_length as usize;
    let longest = mtu - 32;
    let last_fits = format!("field:{}:ns", longest - 8);
    let past = format!("field:{}:ns", longest - 7);
    let refused = |args: &[&str], source: &str| {
        let (code, stdout, stderr) = tern(args);
        assert_ne!(code, 0, "{args:?}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(
            stderr.starts_with("tern: ")
                && stderr.contains(&format!("time source {source}: the timestamp ends at byte"))
                && stderr.contains(&format!(
                    "past the first fragment of any message of recording 0 (MTU {mtu}: at most {longest} bytes)"
                )),
            "{args:?}: {stderr}"
        );
    };
    for source in [past.as_str(), "field:9999999:ns"] {
        refused(
            &["replay", "0", "--dir", &dir, "--time-source", source],
            source,
        );
        refused(
            &[
                "replay",
                "0",
                "--dir",
                &dir,
                "--time-source",
                source,
                "--speed",
                "2",
            ],
            source,
        );
        refused(
            &[
                "replay",
                "0",
                "--dir",
                &dir,
                "--time-source",
                source,
                "--from-time",
                "now",
            ],
            source,
        );
        refused(
            &[
                "replay",
                "0",
                "--dir",
                &dir,
                "--aeron-dir",
                driver.dir(),
                "--channel",
                "aeron:ipc",
                "--stream",
                "77",
                "--time-source",
                source,
            ],
            source,
        );
    }
    // The same offset as a key field is refused in the same words.
    let (code, _, stderr) = tern(&["replay", "0", "--dir", &dir, "--key", "field:9999999:i64:1"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("past the first fragment"), "{stderr}");
    // The last offset whose timestamp fits the first fragment is accepted.
    let (code, stdout, stderr) = tern(&["replay", "0", "--dir", &dir, "--time-source", &last_fits]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 40);
}

/// A `tern driver` or `tern archive` child process, stopped with SIGTERM when dropped.
struct TernProcess {
    child: std::process::Child,
    /// Standard error lines as they come.
    stderr: std::sync::mpsc::Receiver<String>,
    /// Standard output lines up to and including the ready line.
    startup: Vec<String>,
}

impl TernProcess {
    /// Start `tern ARGS` and wait for a standard output line starting with `ready`.
    fn spawn(args: &[&str], ready: &str) -> Self {
        let mut child = Command::new(TERN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tern");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (ready_sender, ready_wait) = std::sync::mpsc::channel();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            let mut startup = Vec::new();
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            for line in lines.by_ref() {
                let is_ready = line.starts_with(&ready);
                startup.push(line);
                if is_ready {
                    let _ = ready_sender.send(std::mem::take(&mut startup));
                    break;
                }
            }
            // Keep the pipe drained.
            for _ in lines {}
        });
        let (lines, stderr_lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let Ok(startup) = ready_wait.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let said: Vec<String> = stderr_lines.try_iter().collect();
            panic!("tern {args:?} did not start: {said:?}");
        };
        Self {
            child,
            stderr: stderr_lines,
            startup,
        }
    }

    /// The first standard error line containing `text` within `timeout`.
    fn stderr_line(&self, text: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TernProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tern driver DRIVER_ARGS` in a directory of its own, and `tern archive` on it recording
/// `CHANNEL@1002` locally (a spy), into `data`.
fn external_driver_and_local_archive(
    tag: &str,
    driver_args: &[&str],
    channel: &str,
    data: &Path,
) -> (TernProcess, TernProcess, String) {
    let aeron_dir = std::env::temp_dir()
        .join(format!(
            "tern-cli-{tag}-{}-{}",
            std::process::id(),
            Client::nano_clock()
        ))
        .to_string_lossy()
        .into_owned();
    let mut args = vec!["driver", "--aeron-dir", &aeron_dir];
    args.extend_from_slice(driver_args);
    let driver = TernProcess::spawn(&args, "media driver running");
    let data_dir = data.to_string_lossy().into_owned();
    let record = format!("{channel}@1002");
    let archive = TernProcess::spawn(
        &[
            "archive",
            "--aeron-dir",
            &aeron_dir,
            "--dir",
            &data_dir,
            "--no-control",
            "--status-interval",
            "0",
            "--record-local",
            &record,
        ],
        "archive running",
    );
    (driver, archive, aeron_dir)
}

#[test]
fn a_local_recording_on_a_default_tern_driver_records_and_on_one_without_spies_simulate_connection_says_why(
) {
    // A `tern driver` with no flags: the spy counts as a subscriber, the publisher can send.
    let data = tempfile::tempdir().expect("temp dir");
    let channel = format!("aeron:udp?endpoint=localhost:{}", free_udp_port());
    let (mut driver, mut archive, aeron_dir) =
        external_driver_and_local_archive("spy-default", &[], &channel, data.path());
    {
        let client = Client::connect(&aeron_dir).expect("publisher client");
        let publication = client
            .add_exclusive_publication(&channel, 1002)
            .expect("publication");
        let mut idle = BackoffIdle::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        for sequence in 0..100u64 {
            loop {
                match publication.offer(&message(sequence)) {
                    Ok(_) => break,
                    Err(error) if error.is_retryable() => {
                        assert!(
                            Instant::now() < deadline,
                            "the publication never connected: {error}"
                        );
                        idle.idle(0);
                    }
                    Err(error) => panic!("offer: {error}"),
                }
            }
        }
        let end = publication.position();
        let recorded = || {
            ArchiveView::open(data.path())
                .ok()
                .and_then(|view| view.recording(0).ok())
                .map_or(0, |recording| recording.end_position)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while recorded() < end {
            assert!(
                Instant::now() < deadline,
                "recorded {} of {end}",
                recorded()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            archive
                .stderr_line("spies-simulate-connection", Duration::from_millis(100))
                .is_none(),
            "no warning when it works"
        );
    }
    archive.stop();
    driver.stop();

    // A driver that does not let spies simulate a connection: the publisher cannot send, and the
    // archive says why and what fixes it.
    let data = tempfile::tempdir().expect("temp dir");
    let channel = format!("aeron:udp?endpoint=localhost:{}", free_udp_port());
    let (_driver, archive, aeron_dir) = external_driver_and_local_archive(
        "spy-off",
        &["--spies-simulate-connection", "false"],
        &channel,
        data.path(),
    );
    let client = Client::connect(&aeron_dir).expect("publisher client");
    let publication = client
        .add_exclusive_publication(&channel, 1002)
        .expect("publication");
    let warning = archive
        .stderr_line("gets nothing", Duration::from_secs(15))
        .expect("a warning line");
    assert!(
        warning.contains("recording 0")
            && warning.contains(&channel)
            && warning.contains("spies-simulate-connection")
            && warning.contains("ssc=true"),
        "{warning}"
    );
    assert!(!publication.is_connected());
}

// ---- Metrics ---------------------------------------------------------------------------------

/// The body of an HTTP GET of `path` at `address`, and the status line.
fn http_get(address: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the metrics server");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the metric sample whose line starts with `sample` (name and labels).
fn metric(body: &str, sample: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

#[test]
fn a_running_archive_serves_its_recordings_replays_and_control_requests_as_prometheus_metrics() {
    let aeron_dir = std::env::temp_dir()
        .join(format!(
            "tern-cli-metrics-{}-{}",
            std::process::id(),
            Client::nano_clock()
        ))
        .to_string_lossy()
        .into_owned();
    let _driver = TernProcess::spawn(
        &["driver", "--aeron-dir", &aeron_dir],
        "media driver running",
    );
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let control = "aeron:ipc@7301";
    let mut archive = TernProcess::spawn(
        &[
            "archive",
            "--aeron-dir",
            &aeron_dir,
            "--dir",
            &data_dir,
            "--fsync",
            "always",
            "--control",
            control,
            "--metrics",
            "127.0.0.1:0",
            "--status-interval",
            "0",
            "--record",
            "aeron:ipc@7302",
        ],
        "archive running",
    );
    let address = archive
        .startup
        .iter()
        .find_map(|line| line.strip_prefix("metrics on http://"))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics line in {:?}", archive.startup))
        .to_string();

    // 200 messages of 64 B recorded, each frame 96 B: 19,200 B.
    let client = Client::connect(&aeron_dir).expect("client");
    let publication = client
        .add_exclusive_publication("aeron:ipc", 7302)
        .expect("publication");
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    for sequence in 0..200u64 {
        let mut bytes = message(sequence);
        bytes.resize(64, 0);
        while let Err(error) = publication.offer(&bytes) {
            assert!(error.is_retryable() && Instant::now() < deadline, "{error}");
            idle.idle(0);
        }
    }
    let end = publication.position();
    assert_eq!(end, 200 * 96);
    let recorded = "tern_archive_recorded_bytes_total{recording_id=\"0\",stream_id=\"7302\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = http_get(&address, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        if metric(&body, recorded) == Some(end as f64) {
            break body;
        }
        assert!(Instant::now() < deadline, "never recorded {end}: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let labels = "{recording_id=\"0\",stream_id=\"7302\"}";
    assert_eq!(
        metric(
            &body,
            &format!("tern_archive_recorded_fragments_total{labels}")
        ),
        Some(200.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, &format!("tern_archive_recording_active{labels}")),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "tern_archive_recording_failures_total"),
        Some(0.0),
        "{body}"
    );
    assert!(
        metric(&body, "tern_archive_disk_free_bytes").is_some_and(|free| free > 0.0),
        "{body}"
    );
    assert!(
        metric(&body, "tern_archive_fsync_seconds_count").is_some_and(|syncs| syncs >= 1.0),
        "fsync always: {body}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");

    // A replay and two requests through the control server, one of them refused.
    let (code, stdout, stderr) = tern(&[
        "replay",
        "0",
        "--archive",
        "aeron:ipc",
        "--control-stream",
        "7301",
        "--aeron-dir",
        &aeron_dir,
        "--length",
        &end.to_string(),
        "--print",
        "none",
    ]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    let (code, _, _) = tern(&[
        "replay",
        "99",
        "--archive",
        "aeron:ipc",
        "--control-stream",
        "7301",
        "--aeron-dir",
        &aeron_dir,
    ]);
    assert_ne!(code, 0, "recording 99 does not exist");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http_get(&address, "/metrics");
        let sent = metric(&body, "tern_archive_replay_sent_bytes_total");
        let errors: f64 = body
            .lines()
            .filter(|line| line.starts_with("tern_archive_control_errors_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let requests: f64 = body
            .lines()
            .filter(|line| line.starts_with("tern_archive_control_requests_total{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if sent == Some(end as f64) && errors >= 1.0 && requests >= 2.0 {
            // tern's client asks with the tern schema's replay request; 5 is UNKNOWN_RECORDING.
            assert_eq!(
                metric(
                    &body,
                    "tern_archive_control_requests_total{request=\"TernReplayRequest\"}"
                ),
                Some(2.0),
                "{body}"
            );
            assert_eq!(
                metric(&body, "tern_archive_control_errors_total{code=\"5\"}"),
                Some(1.0),
                "{body}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sent {sent:?}, errors {errors}, requests {requests}: {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = http_get(&address, "/");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    archive.stop();

    // A metrics address that cannot be served is one line and a non-zero exit, before anything
    // starts.
    let (code, _, stderr) = tern(&[
        "archive",
        "--aeron-dir",
        &aeron_dir,
        "--dir",
        &data_dir,
        "--record",
        "aeron:ipc@7303",
        "--no-control",
        "--metrics",
        "not-an-address",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.starts_with("tern: ") && stderr.contains("not-an-address"),
        "{stderr}"
    );
}
