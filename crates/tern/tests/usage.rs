//! The `tern` binary on bad command lines, channels and time sources, and local recordings on an
//! external driver.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};
use tern_archive::{ArchiveView, RecordingId};
use tern_transport::{BackoffIdle, Client, Idle};

use support::*;
use tern_testkit::free_udp_port;

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
            "tern: --print bogus: expected one of text, hex, egress, egress-hex, none",
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
        .recording(RecordingId::new(0))
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
                .and_then(|view| view.recording(RecordingId::new(0)).ok())
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
