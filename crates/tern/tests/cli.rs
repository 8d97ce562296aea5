//! The `tern` binary end to end: kill -9 of a recording process, damaged files, bad input,
//! replay controls, crash-interrupted purge and truncate (keys: `keys.rs`; bad command lines and
//! local recordings: `usage.rs`; metrics: `metrics.rs`).

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_archive::{Archive, ArchiveConfig, ArchiveView, RecordingId, CATALOG_FILE};
use tern_transport::{BackoffIdle, Client, Idle};

use support::*;
use tern_testkit::driver;

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
    let interrupted = view.recording(RecordingId::new(0)).expect("the recording");
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
    let recovered = archive.recording(RecordingId::new(0)).expect("recording");
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
        .messages(RecordingId::new(0), None, None, |bytes, _| {
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
        view.segment_files(RecordingId::new(0)).len() >= min_segments,
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
        stderr.contains("expected capture, cluster-egress[:UNIT], tern-egress"),
        "{stderr}"
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
    assert_eq!(
        archive.recordings()[3].descriptor.recording_id,
        RecordingId::new(3)
    );
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
        let mut descriptor = catalog
            .get(RecordingId::new(1))
            .expect("recording 1")
            .clone();
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
    let segments = |id: RecordingId| {
        tern_archive::list_segments(data.path())
            .expect("segments")
            .get(&id)
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        segments(RecordingId::new(0)).len() > 1,
        "recording 0 spans segments"
    );
    // A truncate writes the record (stopped at the cut) before it deletes the later segments:
    // the record half of it, by hand, at the 10th frame of the first segment.
    let mut cut = 0;
    let mut seen = 0;
    ArchiveView::open(data.path())
        .expect("view")
        .frames(RecordingId::new(0), None, None, |frame| {
            seen += 1;
            cut = frame.position;
            seen < 10
        })
        .expect("frames");
    {
        let mut catalog = tern_archive::Catalog::open(data.path(), true).expect("catalog");
        let mut descriptor = catalog
            .get(RecordingId::new(0))
            .expect("recording 0")
            .clone();
        descriptor.stop_position = cut;
        catalog.update(&descriptor).expect("truncated record");
    }
    let others = (segments(RecordingId::new(1)), segments(RecordingId::new(2)));
    let archive = Archive::launch(ArchiveConfig::new(data.path(), driver.dir())).expect("launch");
    archive.shutdown();
    assert_eq!(
        segments(RecordingId::new(0)),
        vec![0],
        "the truncate finished"
    );
    assert_eq!(
        (segments(RecordingId::new(1)), segments(RecordingId::new(2))),
        others,
        "nothing else deleted"
    );
    let (code, stdout, _) = tern(&["verify", "--dir", &data.path().to_string_lossy(), "--quiet"]);
    assert_eq!(code, 0, "{stdout}");
}
