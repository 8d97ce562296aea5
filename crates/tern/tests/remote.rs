//! A `tern archive` process and clients in this (other) process: the control protocol over UDP
//! loopback between two media drivers, and over IPC on the archive's driver; authentication,
//! every listing, replays, replay-merge under continuous publishing, garbage on the control
//! channel, and a client killed in the middle of a replay.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tern_client::{
    ArchiveClient, ArchiveClientConfig, ArchiveErrorCode, ClientError, MergeStart, RecordingId,
    ReplayMerge, ReplayMergeConfig,
};
use tern_protocol::SourceLocation;
use tern_transport::{BackoffIdle, Client, Idle, MediaDriver, Subscription};

use tern_testkit::{driver, free_udp_port, temp_aeron_dir, wait_until, SteadyPublisher};
const TERN: &str = env!("CARGO_BIN_EXE_tern");

fn tern(args: &[&str]) -> (i32, String, String) {
    tern_testkit::run(TERN, args)
}
const TIMEOUT: Duration = Duration::from_secs(20);
/// The steady publishers' pace: a 500 us pause every 50 messages.
const PACE: (u64, Duration) = (50, Duration::from_micros(500));

/// A `tern archive` child process with an embedded driver, answering on a UDP control endpoint
/// of its own and on the local IPC control channel.
struct ArchiveProcess {
    child: Child,
    aeron_dir: String,
    control_port: u16,
    _data: tempfile::TempDir,
}

impl ArchiveProcess {
    fn spawn(tag: &str, config: Option<&str>) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let aeron_dir = temp_aeron_dir(tag);
        let control_port = free_udp_port();
        let mut args = vec![
            "archive".to_string(),
            "--embedded-driver".into(),
            "--aeron-dir".into(),
            aeron_dir.clone(),
            "--dir".into(),
            data.path().join("archive").to_string_lossy().into_owned(),
            "--segment-length".into(),
            "1m".into(),
            "--status-interval".into(),
            "0".into(),
            "--control".into(),
            format!("aeron:udp?endpoint=localhost:{control_port}@10"),
            "--control".into(),
            "aeron:ipc?term-length=64k@10".into(),
        ];
        if let Some(config) = config {
            let path = data.path().join("tern.toml");
            std::fs::write(&path, config).expect("write config");
            args.push("--config".into());
            args.push(path.to_string_lossy().into_owned());
        }
        let mut child = Command::new(TERN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tern archive");
        let stdout = child.stdout.take().expect("stdout");
        let (ready, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("archive running") {
                    let _ = ready.send(());
                }
            }
        });
        if wait.recv_timeout(TIMEOUT).is_err() {
            let _ = child.kill();
            panic!("tern archive did not start");
        }
        Self {
            child,
            aeron_dir,
            control_port,
            _data: data,
        }
    }

    fn control_channel(&self) -> String {
        format!("aeron:udp?endpoint=localhost:{}", self.control_port)
    }

    /// A client in this process over UDP, through `driver`.
    fn udp_client(&self, driver: &MediaDriver) -> Result<ArchiveClient, ClientError> {
        ArchiveClient::connect(
            ArchiveClientConfig::new(driver.dir())
                .with_request(self.control_channel(), 10)
                .with_message_timeout(Duration::from_secs(5)),
        )
    }

    /// A client in this process over IPC, on the archive's own driver.
    fn ipc_client(&self) -> ArchiveClient {
        ArchiveClient::connect(
            ArchiveClientConfig::local(&self.aeron_dir)
                .with_message_timeout(Duration::from_secs(5)),
        )
        .expect("IPC client connects")
    }

    fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ArchiveProcess {
    fn drop(&mut self) {
        // SIGTERM first: the archive closes its recordings and stops its driver.
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

fn message(sequence: u64, length: usize) -> Vec<u8> {
    let mut bytes = sequence.to_le_bytes().to_vec();
    bytes.resize(length.max(8), (sequence % 251) as u8);
    bytes
}

fn sequence_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// Poll until `count` messages came; returns their sequences.
fn receive(subscription: &Subscription, count: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    wait_until("replayed messages", TIMEOUT, || {
        subscription
            .poll(|bytes, _| seen.push(sequence_of(bytes)), 64)
            .expect("poll");
        seen.len() >= count
    });
    seen
}

#[test]
fn an_archive_process_serves_a_client_in_another_process_over_udp() {
    let mut archive = ArchiveProcess::spawn("udp", None);
    let driver = driver("udp-client");
    let mut client = archive
        .udp_client(&driver)
        .expect("client connects over UDP");
    assert!(client.archive_id().is_some());

    // Nothing recorded yet: every listing is empty (its end marker came).
    assert!(client
        .list_recordings(RecordingId::new(0), 10)
        .expect("list")
        .is_empty());
    assert!(client
        .list_recording(RecordingId::new(0))
        .expect("list one")
        .is_none());

    // Record a UDP stream this process publishes to the archive's driver.
    let data_port = free_udp_port();
    let channel = format!("aeron:udp?endpoint=localhost:{data_port}");
    let subscription_id = client
        .start_recording(&channel, 1001, SourceLocation::Remote, false)
        .expect("start recording");
    let publisher_client = Client::connect(driver.dir()).expect("publisher client");
    let publication = publisher_client
        .add_exclusive_publication(&channel, 1001)
        .expect("publication");
    wait_until("the archive's subscription", TIMEOUT, || {
        publication.is_connected()
    });
    let mut idle = BackoffIdle::new();
    for sequence in 0..500u64 {
        while let Err(error) = publication.offer(&message(sequence, 200)) {
            assert!(error.is_retryable(), "{error}");
            idle.idle(0);
        }
    }
    let end = publication.position();
    let recordings = {
        let mut found = Vec::new();
        wait_until("the recording", TIMEOUT, || {
            found = client
                .list_recordings(RecordingId::new(0), 10)
                .expect("list");
            !found.is_empty()
        });
        found
    };
    let recording = recordings[0].clone();
    assert_eq!(recording.stream_id, 1001);
    assert_eq!(recording.original_channel, channel);
    wait_until("everything recorded", TIMEOUT, || {
        client
            .recording_position(recording.recording_id)
            .expect("position")
            .is_some_and(|position| position >= end)
    });
    assert_eq!(
        client
            .list_recordings_for_uri(RecordingId::new(0), 10, &format!("{data_port}"), 1001)
            .expect("by uri")
            .len(),
        1
    );
    assert!(client
        .list_recordings_for_uri(RecordingId::new(0), 10, "nowhere", 1001)
        .expect("by uri")
        .is_empty());
    assert_eq!(
        client
            .find_last_matching_recording(RecordingId::new(0), "udp", 1001, recording.session_id)
            .expect("find"),
        Some(recording.recording_id)
    );
    let subscriptions = client
        .list_recording_subscriptions(0, 10, "udp", 1001, true)
        .expect("subscriptions");
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(subscriptions[0].subscription_id, subscription_id);

    // Replay to this process over UDP.
    let replay_port = free_udp_port();
    let replay_channel = format!("aeron:udp?endpoint=localhost:{replay_port}");
    let replay_subscription = client
        .transport()
        .add_subscription(&replay_channel, 2001)
        .expect("replay subscription");
    client
        .replay(recording.recording_id, -1, -2, &replay_channel, 2001)
        .expect("replay");
    assert_eq!(
        receive(&replay_subscription, 500),
        (0..500).collect::<Vec<u64>>()
    );

    // Errors come back typed, with the archive's message.
    match client.start_position(RecordingId::new(9_999)) {
        Err(ClientError::Archive { code, message, .. }) => {
            assert_eq!(code, ArchiveErrorCode::UnknownRecording);
            assert!(message.contains("9999"), "{message}");
        }
        other => panic!("expected an archive error, got {other:?}"),
    }

    client
        .stop_recording_subscription(subscription_id)
        .expect("stop");
    wait_until("the stop position", TIMEOUT, || {
        client
            .stop_position(recording.recording_id)
            .expect("stop position")
            == Some(end)
    });
    assert!(archive.is_alive());
}

#[test]
fn credentials_are_accepted_or_refused_across_processes() {
    let archive =
        ArchiveProcess::spawn("auth", Some("[control]\ncredentials = [\"ops:s3cret\"]\n"));
    let driver = driver("auth-client");
    let config = || {
        ArchiveClientConfig::new(driver.dir())
            .with_request(archive.control_channel(), 10)
            .with_message_timeout(Duration::from_secs(5))
    };
    let mut client = ArchiveClient::connect(config().with_credentials(b"ops:s3cret".to_vec()))
        .expect("the right credentials are accepted");
    assert!(client
        .list_recordings(RecordingId::new(0), 1)
        .expect("list")
        .is_empty());
    match ArchiveClient::connect(config().with_credentials(b"ops:guess".to_vec())) {
        Err(ClientError::Archive { code, .. }) => {
            assert_eq!(code, ArchiveErrorCode::AuthenticationRejected)
        }
        other => panic!("wrong credentials must be refused, got {other:?}"),
    }
    match ArchiveClient::connect(config()) {
        Err(ClientError::Archive { code, .. }) => {
            assert_eq!(code, ArchiveErrorCode::AuthenticationRejected)
        }
        other => panic!("missing credentials must be refused, got {other:?}"),
    }
}

/// Run a merge to the end of a stream published by `publisher` until `stop`; every message
/// once and in order, some of them after the merge.
fn merge_and_check(
    client: &mut ArchiveClient,
    recording_id: RecordingId,
    replay_channel: &str,
    live: Option<(&str, i32)>,
    publisher: &SteadyPublisher,
) {
    let mut config = ReplayMergeConfig::new(
        recording_id,
        MergeStart::RecordingStart,
        replay_channel,
        3001,
    );
    if let Some((channel, stream)) = live {
        config = config.with_live(channel, stream);
    }
    let mut merge = ReplayMerge::new(client, config).expect("merge starts");
    let mut next = 0u64;
    let mut merged_at = None;
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "merge stuck at {next}: {merge:?}"
        );
        let work = merge
            .poll(
                |bytes, _| {
                    assert_eq!(sequence_of(bytes), next, "a gap or a duplicate");
                    next += 1;
                },
                256,
            )
            .expect("merge polls");
        if merge.is_merged() && merged_at.is_none() {
            merged_at = Some(next);
            // Let the live stream run a while after the merge, then stop the publisher.
        }
        if let Some(at) = merged_at {
            if next > at + 2_000 {
                publisher.request_stop();
            }
        }
        if publisher.stopping() && next >= publisher.sent() {
            break;
        }
        idle.idle(work);
    }
    let merged_at = merged_at.expect("merged");
    assert!(next > merged_at, "messages came live after the merge");
}

#[test]
fn replay_merge_over_ipc_across_processes_has_no_gap_and_no_duplicate() {
    let archive = ArchiveProcess::spawn("merge-ipc", None);
    let mut client = archive.ipc_client();
    client
        .start_recording("aeron:ipc", 1101, SourceLocation::Local, false)
        .expect("record");
    let publisher = SteadyPublisher::start(&archive.aeron_dir, "aeron:ipc", 1101, PACE, |n| {
        message(n, 64)
    });
    wait_until("a backlog", TIMEOUT, || publisher.sent() > 20_000);
    let recording_id = client
        .list_recordings(RecordingId::new(0), 1)
        .expect("list")[0]
        .recording_id;
    merge_and_check(&mut client, recording_id, "aeron:ipc", None, &publisher);
    publisher.stop();
}

#[test]
fn replay_merge_over_udp_across_processes_has_no_gap_and_no_duplicate() {
    let archive = ArchiveProcess::spawn("merge-udp", None);
    let driver = driver("merge-udp-client");
    let mut client = archive.udp_client(&driver).expect("client connects");
    // The live stream is multi-destination: the archive and this process each subscribe with an
    // endpoint of their own; min flow control keeps the publisher within reach of both.
    let control_port = free_udp_port();
    let publication_channel = format!(
        "aeron:udp?control=localhost:{control_port}|control-mode=dynamic|fc=min|term-length=1m"
    );
    let archive_channel = format!(
        "aeron:udp?endpoint=localhost:{}|control=localhost:{control_port}",
        free_udp_port()
    );
    let client_channel = format!(
        "aeron:udp?endpoint=localhost:{}|control=localhost:{control_port}",
        free_udp_port()
    );
    client
        .start_recording(&archive_channel, 1201, SourceLocation::Remote, false)
        .expect("record");
    let publisher = SteadyPublisher::start(driver.dir(), &publication_channel, 1201, PACE, |n| {
        message(n, 64)
    });
    wait_until("a backlog", TIMEOUT, || publisher.sent() > 20_000);
    let recording_id = client
        .list_recordings(RecordingId::new(0), 1)
        .expect("list")[0]
        .recording_id;
    merge_and_check(
        &mut client,
        recording_id,
        "aeron:udp?endpoint=localhost:0",
        Some((&client_channel, 1201)),
        &publisher,
    );
    publisher.stop();
}

#[test]
fn garbage_on_the_control_channel_leaves_the_archive_serving() {
    let mut archive = ArchiveProcess::spawn("garbage", None);
    let driver = driver("garbage-client");
    let raw = Client::connect(driver.dir()).expect("client");
    let control = raw
        .add_exclusive_publication(&archive.control_channel(), 10)
        .expect("control publication");
    wait_until("the control channel", TIMEOUT, || control.is_connected());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for length in (1..400).step_by(7) {
        let bytes: Vec<u8> = (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        while control.offer(&bytes).is_err() {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    // A valid header of Aeron's schema with a body cut short, naming no session.
    let header: [u8; 10] = [24, 0, 12, 0, 101, 0, 14, 0, 1, 2];
    while control.offer(&header).is_err() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut client = archive
        .udp_client(&driver)
        .expect("a client still connects");
    assert!(client
        .list_recordings(RecordingId::new(0), 5)
        .expect("list")
        .is_empty());
    assert!(archive.is_alive());
}

#[test]
fn a_client_killed_mid_replay_leaves_the_archive_serving_others() {
    let archive = ArchiveProcess::spawn("killed", None);
    let mut client = archive.ipc_client();
    client
        .start_recording("aeron:ipc", 1301, SourceLocation::Local, false)
        .expect("record");
    let publisher = SteadyPublisher::start(&archive.aeron_dir, "aeron:ipc", 1301, PACE, |n| {
        message(n, 64)
    });
    wait_until("a backlog", TIMEOUT, || publisher.sent() > 5_000);
    let recording_id = client
        .list_recordings(RecordingId::new(0), 1)
        .expect("list")[0]
        .recording_id;

    // Another process follows the recording with a replay printed to its stdout; kill -9 it.
    let mut victim = Command::new(TERN)
        .args([
            "replay",
            &recording_id.to_string(),
            "--archive",
            "aeron:ipc?term-length=64k",
            "--aeron-dir",
            &archive.aeron_dir,
            "--follow",
            "--print",
            "none",
            "--progress",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tern replay");
    let stderr = victim.stderr.take().expect("stderr");
    let (progress, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = progress.send(line);
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let line = wait
            .recv_timeout(TIMEOUT)
            .expect("the replaying process reports progress");
        if line.contains("messages") {
            break;
        }
        assert!(Instant::now() < deadline);
    }
    victim.kill().expect("kill -9");
    let _ = victim.wait();

    // Its replay ends (no subscriber, no session): a new replay can be listed and run, and this
    // client is served throughout.
    let replay_channel = "aeron:ipc";
    let subscription = client
        .transport()
        .add_subscription(replay_channel, 3301)
        .expect("replay subscription");
    client
        .replay(recording_id, -1, 1_000 * 96, replay_channel, 3301)
        .expect("replay after the kill");
    let seen = receive(&subscription, 1_000);
    assert_eq!(seen, (0..1_000).collect::<Vec<u64>>());
    publisher.stop();
}

#[test]
fn the_cli_lists_describes_replays_and_truncates_through_a_running_archive() {
    let archive = ArchiveProcess::spawn("cli", None);
    let mut client = archive.ipc_client();
    let subscription = client
        .start_recording("aeron:ipc", 1401, SourceLocation::Local, false)
        .expect("record");
    let publisher = Client::connect(&archive.aeron_dir).expect("publisher");
    let publication = publisher
        .add_exclusive_publication("aeron:ipc", 1401)
        .expect("publication");
    wait_until("the recording", TIMEOUT, || {
        !client
            .list_recordings(RecordingId::new(0), 1)
            .expect("list")
            .is_empty()
    });
    let mut idle = BackoffIdle::new();
    for sequence in 0..100u64 {
        if sequence == 50 {
            std::thread::sleep(Duration::from_millis(50));
        }
        while let Err(error) = publication.offer(&message(sequence, 24)) {
            assert!(error.is_retryable(), "{error}");
            idle.idle(0);
        }
    }
    let end = publication.position();
    wait_until("everything recorded", TIMEOUT, || {
        client
            .recording_position(RecordingId::new(0))
            .expect("position")
            >= Some(end)
    });
    client
        .stop_recording_subscription(subscription)
        .expect("stop");
    wait_until("stopped", TIMEOUT, || {
        client.stop_position(RecordingId::new(0)).expect("stop") == Some(end)
    });

    let udp = archive.control_channel();
    let remote = |extra: &[&str]| {
        let mut args: Vec<&str> = extra.to_vec();
        args.extend(["--archive", "aeron:ipc", "--aeron-dir", &archive.aeron_dir]);
        tern(&args)
    };
    let (code, out, err) = remote(&["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("aeron:ipc") && out.contains("valid"), "{out}");
    let (code, out, err) = remote(&["describe", "0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("stop position     {end}")), "{out}");
    let (code, _, err) = remote(&["describe", "7"]);
    assert_ne!(code, 0);
    assert!(err.contains("no recording 7"), "{err}");

    // From a time after the last message of a stopped recording: an empty replay, at once.
    let (code, _, err) = remote(&["replay", "0", "--from-time", "now", "--print", "none"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("replayed 0 messages"), "{err}");

    // Printing a replay: over IPC, and over UDP from a driver of the CLI's own.
    let (code, out, err) = remote(&["replay", "0", "--print", "text"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 100, "{out}");
    let (code, out, err) = tern(&[
        "replay",
        "0",
        "--archive",
        &udp,
        "--embedded-driver",
        "--aeron-dir",
        &temp_aeron_dir("cli-udp"),
        "--print",
        "none",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("replayed 100 messages"), "{err}");
    // A length, and a bad request refused with the archive's reason.
    let (code, _, err) = remote(&[
        "replay", "0", "--from", "0", "--length", "640", "--print", "none",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("replayed 10 messages"), "{err}");
    let (code, _, err) = remote(&["replay", "0", "--from", "33", "--print", "none"]);
    assert_ne!(code, 0);
    assert!(err.contains("FRAME_ALIGNMENT"), "{err}");

    // A key filter through the archive: bytes 8..12 of message n are (n % 251) four times, so
    // the i32 there is 7 * 0x01010101 for message 7 only.
    let (code, out, err) = remote(&[
        "replay",
        "0",
        "--key",
        &format!("field:8:i32:{}", 7 * 0x0101_0101),
        "--print",
        "text",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, _, err) = remote(&["replay", "0", "--key", "field:8:i32:1", "--keep-positions"]);
    assert_ne!(code, 0);
    assert!(err.contains("back to back"), "{err}");

    // Truncate through the archive, then the listing shows the new end.
    // 24-byte messages take 64-byte frames (32-byte header, 32-byte alignment).
    let (code, out, err) = remote(&["truncate", "0", "640"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("truncated"), "{out}");
    assert_eq!(
        client.stop_position(RecordingId::new(0)).expect("stop"),
        Some(640)
    );
}
