//! `tern sink` processes killed with SIGKILL while a publisher publishes and the archive (in
//! this process) records: after every kill a new sink resumes from what the destination holds,
//! and at the end the destination holds every message once, in order. `TERN_SINK_KILLS` sets
//! the number of kills (default 4; the figure is 20). Also `tern sink status` and the
//! refusals of bad flags.

use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tern_sink::file::read_all;
use tern_sink::FileFormat;
use tern_store::RecordingId;
use tern_testkit::tern_archive::SourceLocation;
use tern_testkit::{driver, wait_stopped, wait_until, ServedArchive, SteadyPublisher};

const TERN: &str = env!("CARGO_BIN_EXE_tern");
const CONTROL: &str = "aeron:ipc?term-length=64k";

/// 64 bytes: the sequence first.
fn message(sequence: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; 64];
    bytes[0..8].copy_from_slice(&sequence.to_le_bytes());
    bytes[8..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = (sequence as usize + i) as u8);
    bytes
}

fn kills() -> usize {
    std::env::var("TERN_SINK_KILLS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(4)
}

/// A publisher recorded by the archive of this process, through its driver.
struct Source {
    archive: ServedArchive,
    aeron_dir: String,
    recording_id: RecordingId,
    publisher: Option<SteadyPublisher>,
    _driver: tern_transport::MediaDriver,
}

impl Source {
    fn start(tag: &str, stream: i32) -> Self {
        let driver = driver(tag);
        let aeron_dir = driver.dir().to_string();
        let archive = ServedArchive::start(tag, &aeron_dir, &[(CONTROL, 10)]);
        archive
            .start_recording("aeron:ipc", stream, SourceLocation::Remote)
            .expect("record");
        // About 10 k messages a second (a sleep of 1 ms every 10).
        let publisher = SteadyPublisher::start(
            &aeron_dir,
            "aeron:ipc",
            stream,
            (10, Duration::from_millis(1)),
            message,
        );
        let recording_id = tern_testkit::recording_of(&archive, stream);
        Self {
            archive,
            aeron_dir,
            recording_id,
            publisher: Some(publisher),
            _driver: driver,
        }
    }

    /// Stops the publisher and waits for the recording to stop; returns the messages sent.
    fn finish(&mut self) -> u64 {
        let sent = self.publisher.take().map_or(0, SteadyPublisher::stop);
        wait_stopped(&self.archive, self.recording_id);
        sent
    }

    fn sink_args(&self, destination: &[String]) -> Vec<String> {
        let mut args = vec!["sink".to_string()];
        args.extend(destination.iter().cloned());
        args.extend(
            [
                "--archive",
                CONTROL,
                "--aeron-dir",
                &self.aeron_dir,
                "--recording",
                &self.recording_id.to_string(),
                "--progress-interval",
                "0",
                "--batch-delay",
                "20ms",
            ]
            .map(String::from),
        );
        args
    }

    fn spawn_sink(&self, destination: &[String]) -> Child {
        Command::new(TERN)
            .args(self.sink_args(destination))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tern sink")
    }
}

/// A destination of the kill test.
struct Target<'a> {
    /// `tern sink` arguments naming it (`file --dir D ...`).
    sink: &'a [String],
    /// `tern sink status` arguments naming it.
    status: &'a [String],
    /// The script whose `restart` takes it down and up under a running sink, if any.
    restart: Option<&'a str>,
}

/// Kills `tern sink` processes under load, then lets the last one copy the recording to its
/// end and checks that `tern sink status` says where it ends; `stored` reads back the
/// sequences the destination holds. Returns the messages sent.
fn kill_under_load(
    tag: &str,
    stream: i32,
    target: &Target<'_>,
    stored: impl Fn() -> Vec<u64>,
) -> u64 {
    let (destination, restart) = (target.sink, target.restart);
    let mut source = Source::start(tag, stream);
    let mut random = rand::rngs::StdRng::seed_from_u64(tern_testkit::seed());
    let mut seen = 0usize;
    for kill in 0..kills() {
        let mut child = source.spawn_sink(destination);
        // Wait until it has stored something new (or a while), then kill it at a random instant.
        let began = Instant::now();
        while stored().len() <= seen && began.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(random.gen_range(0..400)));
        child.kill().expect("SIGKILL");
        let status = child.wait().expect("reaped");
        assert!(
            status.code().is_none(),
            "kill {kill}: the sink exited by itself: {status}"
        );
        let now = stored();
        assert!(now.len() > seen, "kill {kill}: the sink stored nothing new");
        check_prefix(&now);
        seen = now.len();
    }
    if let Some(script) = restart {
        // The destination goes away under a running sink and comes back: the sink retries and
        // goes on by itself, losing and repeating nothing.
        let mut child = source.spawn_sink(destination);
        wait_until(
            "the sink stores before the restart",
            Duration::from_secs(30),
            || stored().len() > seen,
        );
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../scripts")
            .join(script);
        let status = Command::new(&script)
            .arg("restart")
            .status()
            .expect("run the restart");
        assert!(status.success(), "{} restart", script.display());
        seen = stored().len();
        wait_until(
            "the sink stores after the restart",
            Duration::from_secs(60),
            || stored().len() > seen,
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the sink kept running"
        );
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        check_prefix(&stored());
    }
    let sent = source.finish();
    let output = Command::new(TERN)
        .args(source.sink_args(destination))
        .output()
        .expect("run tern sink to the end");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the last sink: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("the recording ended"), "{stdout}");
    let all = stored();
    check_prefix(&all);
    assert_eq!(all.len() as u64, sent, "every message sent is stored once");
    let end = wait_stopped(&source.archive, source.recording_id).stop_position;
    let mut status = vec!["sink", "status"];
    status.extend(target.status.iter().map(String::as_str));
    let (code, stdout, stderr) = tern_testkit::run(TERN, &status);
    assert_eq!(code, 0, "{stderr}");
    let line = format!("recording {} up to position {end}", source.recording_id);
    assert!(stdout.contains(&line), "{line:?} in {stdout}");
    sent
}

/// Sequences 0, 1, 2, ... with no gap and no duplicate.
fn check_prefix(sequences: &[u64]) {
    if let Some(at) = sequences
        .iter()
        .enumerate()
        .position(|(i, &s)| s != i as u64)
    {
        panic!(
            "at record {at}: sequence {} (a gap or a duplicate); around it: {:?}",
            sequences[at],
            &sequences[at.saturating_sub(3)..(at + 3).min(sequences.len())]
        );
    }
}

fn file_sequences(dir: &Path, format: FileFormat) -> Vec<u64> {
    if !dir.exists() {
        return Vec::new();
    }
    // A sink killed in the middle of an append leaves a torn last record: read_all stops
    // before it.
    read_all(dir, format)
        .expect("the files read back")
        .iter()
        .map(|stored| u64::from_le_bytes(stored.record.payload[0..8].try_into().expect("8 bytes")))
        .collect()
}

#[test]
fn file_sinks_killed_under_load_lose_and_repeat_nothing() {
    for (format, name) in [
        (FileFormat::JsonLines { text: false }, "jsonl"),
        (FileFormat::Raw, "raw"),
    ] {
        let out = tempfile::tempdir().expect("dir");
        let dir = out.path().join("files");
        let destination: Vec<String> = [
            "file",
            "--dir",
            &dir.to_string_lossy(),
            "--format",
            name,
            "--max-file-size",
            "256KiB",
        ]
        .map(String::from)
        .to_vec();
        let status: Vec<String> = ["file", "--dir", &dir.to_string_lossy(), "--format", name]
            .map(String::from)
            .to_vec();
        let target = Target {
            sink: &destination,
            status: &status,
            restart: None,
        };
        let sent = kill_under_load(&format!("sink-kill-{name}"), 1001, &target, || {
            file_sequences(&dir, format)
        });
        assert!(sent > 1_000, "{name}: the publisher sent {sent}");
        assert!(
            tern_sink::FileDestination::files(&dir, format)
                .expect("files")
                .len()
                > 1,
            "{name}: rotated"
        );
    }
}

#[test]
fn sink_status_reads_where_a_file_sink_ends_and_its_lag() {
    let mut source = Source::start("sink-status", 1002);
    std::thread::sleep(Duration::from_millis(300));
    let sent = source.finish();
    let out = tempfile::tempdir().expect("dir");
    let dir = out.path().join("files").to_string_lossy().into_owned();
    let status = ["sink", "status", "file", "--dir", &dir];
    let (code, _, stderr) = tern_testkit::run(TERN, &status);
    assert_eq!(code, 1);
    assert!(stderr.contains("no such directory"), "{stderr}");
    std::fs::create_dir(&dir).expect("mkdir");
    let (code, stdout, stderr) = tern_testkit::run(TERN, &status);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("empty"), "{stdout}");
    let args = source.sink_args(&["file".into(), "--dir".into(), dir.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = tern_testkit::run(TERN, &args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("the recording ended"), "{stdout}");
    assert_eq!(
        file_sequences(Path::new(&dir), FileFormat::JsonLines { text: false }).len() as u64,
        sent
    );
    let descriptor = source
        .archive
        .recordings()
        .into_iter()
        .find(|info| info.descriptor.recording_id == source.recording_id)
        .expect("descriptor")
        .descriptor;
    let (code, stdout, stderr) = tern_testkit::run(
        TERN,
        &[
            "sink",
            "status",
            "file",
            "--dir",
            &dir,
            "--archive",
            CONTROL,
            "--aeron-dir",
            &source.aeron_dir,
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "recording {} up to position {}",
            source.recording_id, descriptor.stop_position
        )),
        "{stdout}"
    );
    assert!(stdout.contains("lag 0 B"), "{stdout}");
}

#[test]
fn sink_flags_are_checked_before_anything_starts() {
    for (args, expected) in [
        (vec!["sink", "file", "--dir", "/tmp/x"], "--recording"),
        (
            vec![
                "sink",
                "file",
                "--dir",
                "/tmp/x",
                "--recording",
                "1",
                "--batch-records",
                "0",
            ],
            "--batch-records",
        ),
        (
            vec![
                "sink",
                "file",
                "--dir",
                "/tmp/x",
                "--recording",
                "1",
                "--key",
                "nope:1",
            ],
            "--key",
        ),
        (
            vec!["sink", "file", "--dir", "/tmp/x", "--channel", "aeron:ipc"],
            "--stream",
        ),
    ] {
        let (code, _, stderr) = tern_testkit::run(TERN, &args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("tern: ") && stderr.trim().lines().count() == 1,
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // An archive that is not there: the sink retries (no error), and stops on SIGTERM.
    let aeron = driver("sink-noarchive");
    let out = tempfile::tempdir().expect("dir");
    let mut child = Command::new(TERN)
        .args([
            "sink",
            "file",
            "--dir",
            &out.path().to_string_lossy(),
            "--recording",
            "0",
            "--archive",
            CONTROL,
            "--aeron-dir",
            aeron.dir(),
            "--message-timeout",
            "0.5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().expect("wait").is_none(), "it keeps trying");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("connect to the archive"),
        "it says why it waits: {stderr}"
    );
}

/// The test PostgreSQL server (`scripts/postgres.sh`); the test fails without it.
fn postgres_connection() -> String {
    tern_testkit::service("TERN_TEST_POSTGRES", "postgres.sh")
}

fn postgres_sequences(connection: &str, table: &str) -> Vec<u64> {
    let mut client = postgres::Client::connect(connection, postgres::NoTls).expect("connect");
    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&table])
        .expect("lookup")
        .get(0);
    if exists.is_none() {
        return Vec::new();
    }
    client
        .query(
            &format!("SELECT payload FROM {table} ORDER BY position"),
            &[],
        )
        .expect("select")
        .iter()
        .map(|row| {
            let payload: Vec<u8> = row.get(0);
            u64::from_le_bytes(payload[0..8].try_into().expect("8 bytes"))
        })
        .collect()
}

#[test]
fn postgres_sinks_killed_under_load_lose_and_repeat_nothing() {
    let connection = postgres_connection();
    let table = format!("kill_test_{}", std::process::id());
    let destination: Vec<String> = ["postgres", "--postgres", &connection, "--table", &table]
        .map(String::from)
        .to_vec();
    let target = Target {
        sink: &destination,
        status: &destination,
        restart: Some("postgres.sh"),
    };
    let sent = kill_under_load("sink-kill-pg", 1003, &target, || {
        postgres_sequences(&connection, &table)
    });
    assert!(sent > 1_000, "the publisher sent {sent}");
    // A table of another shape is refused with one line naming it, before anything is read.
    let mut client = postgres::Client::connect(&connection, postgres::NoTls).expect("connect");
    let other = format!("other_shape_{}", std::process::id());
    let aeron = driver("sink-pg-shape");
    client
        .batch_execute(&format!("CREATE TABLE {other} (id INT)"))
        .expect("create");
    let (code, _, stderr) = tern_testkit::run(
        TERN,
        &[
            "sink",
            "postgres",
            "--postgres",
            &connection,
            "--table",
            &other,
            "--recording",
            "0",
            "--archive",
            CONTROL,
            "--aeron-dir",
            aeron.dir(),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("tern: ") && last.contains(&other),
        "{stderr}"
    );
    assert!(!stderr.contains("NOTICE"), "{stderr}");
    assert_eq!(
        last.matches(&format!("(sink {other})")).count(),
        1,
        "named once: {last}"
    );
}

/// The test Kafka broker (`scripts/kafka.sh`); the test fails without it.
fn kafka_servers() -> String {
    tern_testkit::service("TERN_TEST_KAFKA", "kafka.sh")
}

/// The sequences a read_committed consumer finds in `topic`, read to its end.
fn kafka_sequences(servers: &str, topic: &str) -> Vec<u64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", format!("check-{topic}-{}", std::process::id()))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let exists = metadata.topics().iter().any(|found| {
        found.name() == topic && found.error().is_none() && !found.partitions().is_empty()
    });
    if !exists {
        return Vec::new();
    }
    // With read_committed the high watermark is the last stable offset.
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    if high <= low {
        return Vec::new();
    }
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    if consumer.assign(&assignment).is_err() {
        return Vec::new();
    }
    let mut sequences = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "{topic}: not read to its end in 60 s (offsets {low}..{high}, {} records read)",
            sequences.len()
        );
        match consumer.poll(Duration::from_millis(500)) {
            // What was committed when the watermarks were read (a running sink adds more):
            // up to the last stable offset then; its last offsets may be commit markers.
            Some(Ok(message)) if message.offset() >= high => break,
            Some(Ok(message)) => {
                let payload = message.payload().unwrap_or_default();
                sequences.push(u64::from_le_bytes(
                    payload[0..8].try_into().expect("8 bytes"),
                ));
                if message.offset() + 1 >= high {
                    break;
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(error)) => panic!("{topic}: {error}"),
            None => {}
        }
    }
    sequences
}

#[test]
fn kafka_sinks_killed_under_load_lose_and_repeat_nothing() {
    let servers = kafka_servers();
    let topic = format!("kill-test-{}", std::process::id());
    let destination: Vec<String> = ["kafka", "--kafka", &servers, "--topic", &topic]
        .map(String::from)
        .to_vec();
    let target = Target {
        sink: &destination,
        status: &destination,
        restart: Some("kafka.sh"),
    };
    let sent = kill_under_load("sink-kill-kafka", 1004, &target, || {
        kafka_sequences(&servers, &topic)
    });
    assert!(sent > 1_000, "the publisher sent {sent}");
}

/// One `GET /metrics` of the server at `address`.
fn scrape(address: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the metrics server");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    answer
}

/// The value of a metric line `name value` in a scrape.
fn metric(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn a_running_sink_serves_its_metrics_and_prints_progress() {
    use std::io::{BufRead, BufReader};
    let source = Source::start("sink-metrics", 1005);
    let out = tempfile::tempdir().expect("dir");
    let mut args = source.sink_args(&[
        "file".into(),
        "--dir".into(),
        out.path().to_string_lossy().into_owned(),
    ]);
    let at = args
        .iter()
        .position(|arg| arg == "--progress-interval")
        .expect("flag")
        + 1;
    args[at] = "0.2".into();
    args.extend(["--metrics", "127.0.0.1:0"].map(String::from));
    let mut child = Command::new(TERN)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    let address = line
        .trim()
        .strip_prefix("metrics on http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("the metrics address first: {line:?}"))
        .to_string();
    let mut records = 0.0;
    wait_until("records counted", Duration::from_secs(20), || {
        records = metric(&scrape(&address), "tern_sink_records_total").unwrap_or(0.0);
        records > 100.0
    });
    let text = scrape(&address);
    for name in [
        "tern_sink_position",
        "tern_sink_batches_total",
        "tern_sink_bytes_total",
        "tern_sink_write_microseconds_total",
        "tern_sink_recorded_position",
    ] {
        assert!(metric(&text, name).unwrap_or(0.0) > 0.0, "{name} in {text}");
    }
    // Live once the replay caught up (the lag is read once a second).
    wait_until(
        "the sink reads the live stream",
        Duration::from_secs(20),
        || metric(&scrape(&address), "tern_sink_merged") == Some(1.0),
    );
    assert!(
        metric(&text, "tern_sink_position").unwrap_or(0.0) > 0.0,
        "{text}"
    );
    // A few progress lines (one each 0.2 s).
    std::thread::sleep(Duration::from_millis(900));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().expect("exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let progress = stderr
        .lines()
        .filter(|line| line.starts_with("sink: position "))
        .count();
    assert!(progress >= 2, "progress lines: {stderr}");
    assert!(stderr.contains("records/s"), "{stderr}");
}
