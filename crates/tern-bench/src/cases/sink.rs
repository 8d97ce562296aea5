//! `sink-*`: a stopped recording of 64 B messages, in an archive of this process, copied whole
//! by a `tern sink` process (the binary beside tern-bench), timed from its start to its exit:
//! what a user of `tern sink` sees. Rows: `sink-file-jsonl`, `sink-file-raw`, and, when the
//! services are given, `sink-postgres` beside `psql-copy` (`psql \copy` of the same rows) and
//! `sink-kafka` beside `kafka-producer-perf` (the broker's own producer benchmark).

use super::Bench;
use crate::report::CaseResult;
use anyhow::{ensure, Context};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_archive::control::{ControlChannel, ControlConfig, ControlServer};
use tern_archive::{Archive, SourceLocation};
use tern_store::RecordingId;
use tern_transport::Client;

const CONTROL: &str = "aeron:ipc?term-length=64k";
/// Payload bytes per message.
pub const SIZE: usize = 64;

/// What the sink case needs besides the archive.
#[derive(Debug, Clone, Default)]
pub struct Services {
    /// A PostgreSQL connection string (libpq key=value), for `sink-postgres`.
    pub postgres: Option<String>,
    /// Kafka bootstrap servers, for `sink-kafka`.
    pub kafka: Option<String>,
    /// Kafka's jars (for the broker's own producer benchmark and topic tool).
    pub kafka_lib: std::path::PathBuf,
}

/// A recording of `messages` 64 B messages (the sequence number first), stopped.
fn record(bench: &Bench, archive: &Archive, messages: u64) -> anyhow::Result<RecordingId> {
    let stream = bench.next_stream();
    archive.start_recording("aeron:ipc", stream, SourceLocation::Local)?;
    let client = Client::connect(&bench.aeron_dir)?;
    let publication = client.add_exclusive_publication("aeron:ipc", stream)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while archive.recordings().is_empty() {
        ensure!(Instant::now() < deadline, "the recording did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    let recording_id = archive.recordings()[0].descriptor.recording_id;
    let mut message = [0u8; SIZE];
    for sequence in 0..messages {
        message[..8].copy_from_slice(&sequence.to_le_bytes());
        while publication.offer(&message).is_err() {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    drop(publication);
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(60);
    while archive
        .recordings()
        .iter()
        .any(|info| info.descriptor.recording_id == recording_id && info.descriptor.is_active())
    {
        ensure!(Instant::now() < deadline, "the recording did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(recording_id)
}

/// Runs `tern sink <destination...>` over the whole recording; its wall time.
fn run_sink(
    tern: &Path,
    bench: &Bench,
    recording_id: RecordingId,
    destination: &[&str],
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let output = Command::new(tern)
        .arg("sink")
        .args(destination)
        .args(["--archive", CONTROL, "--aeron-dir", &bench.aeron_dir])
        .args([
            "--recording",
            &recording_id.to_string(),
            "--progress-interval",
            "0",
        ])
        .output()
        .with_context(|| format!("run {}", tern.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success() && stdout.contains("the recording ended"),
        "tern sink {}: {stdout} {}",
        destination.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(seconds)
}

/// The sink rows.
///
/// # Errors
/// The archive, the recording or a `tern sink` process failed.
pub fn run(bench: &Bench, messages: u64, services: &Services) -> anyhow::Result<Vec<CaseResult>> {
    let tern = super::cluster::tern_binary()?;
    let scratch = bench.scratch("sink")?;
    let archive = Arc::new(Archive::launch(
        bench.archive_config(&scratch.path().join("archive")),
    )?);
    let server = ControlServer::start(
        archive.clone(),
        ControlConfig {
            channels: vec![ControlChannel::new(CONTROL, 10)],
            ..ControlConfig::default()
        },
    )?;
    let recording_id = record(bench, &archive, messages)?;
    let mut rows = Vec::new();
    for format in ["jsonl", "raw"] {
        let dir = scratch.path().join(format!("files-{format}"));
        let dir_text = dir.to_string_lossy().into_owned();
        let seconds = run_sink(
            &tern,
            bench,
            recording_id,
            &["file", "--dir", &dir_text, "--format", format],
        )?;
        let bytes: u64 = std::fs::read_dir(&dir)?
            .filter_map(|entry| entry.ok()?.metadata().ok())
            .map(|metadata| metadata.len())
            .sum();
        rows.push(
            CaseResult::new(&format!("sink-file-{format}"), SIZE as u64, messages, seconds).with_note(format!(
                "tern sink file --format {format}: start to exit, {:.1} MB of files, fdatasync per 10k-record batch",
                bytes as f64 / 1e6
            )),
        );
    }
    match &services.postgres {
        Some(connection) => {
            rows.extend(postgres(&tern, bench, recording_id, messages, connection)?)
        }
        None => eprintln!("   sink-postgres: not run (give --postgres CONNINFO)"),
    }
    match &services.kafka {
        Some(servers) => rows.extend(kafka(
            &tern,
            bench,
            recording_id,
            messages,
            servers,
            &services.kafka_lib,
        )?),
        None => eprintln!("   sink-kafka: not run (give --kafka SERVERS)"),
    }
    server.stop();
    match Arc::try_unwrap(archive) {
        Ok(archive) => archive.shutdown(),
        Err(_) => anyhow::bail!("the archive is still shared"),
    }
    drop(scratch);
    Ok(rows)
}

/// Runs `psql` with `command` against `connection`; its wall time.
fn psql(connection: &str, command: &str) -> anyhow::Result<f64> {
    let started = Instant::now();
    let output = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            connection,
            "-c",
            command,
        ])
        .output()
        .context("run psql")?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "psql -c {command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(seconds)
}

/// `sink-postgres` (a fresh table) beside `psql-copy`: the same rows, exported from it as a
/// binary COPY file, loaded by `psql \copy` into a table of the same shape.
fn postgres(
    tern: &Path,
    bench: &Bench,
    recording_id: RecordingId,
    messages: u64,
    connection: &str,
) -> anyhow::Result<Vec<CaseResult>> {
    let table = format!("bench_sink_{}", std::process::id());
    let copy = format!("{table}_copy");
    let file = std::env::temp_dir().join(format!("{table}.bin"));
    let file_text = file.to_string_lossy().into_owned();
    let clean = format!(
        "DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {copy}; DO $$ BEGIN IF \
         to_regclass('tern_sink_offsets') IS NOT NULL THEN DELETE FROM tern_sink_offsets WHERE \
         sink = '{table}'; END IF; END $$"
    );
    psql(connection, &clean)?;
    let seconds = run_sink(
        tern,
        bench,
        recording_id,
        &["postgres", "--postgres", connection, "--table", &table],
    )?;
    let columns = "position, recording_id, timestamp_ns, key, payload";
    psql(
        connection,
        &format!("\\copy (SELECT {columns} FROM {table} ORDER BY position) TO '{file_text}' WITH (FORMAT binary)"),
    )?;
    psql(
        connection,
        &format!(
            "CREATE TABLE {copy} (position BIGINT PRIMARY KEY, recording_id BIGINT NOT NULL, \
             timestamp_ns BIGINT NOT NULL, key BIGINT, payload BYTEA NOT NULL)"
        ),
    )?;
    let reference = psql(
        connection,
        &format!("\\copy {copy} ({columns}) FROM '{file_text}' WITH (FORMAT binary)"),
    )?;
    let _ = std::fs::remove_file(&file);
    psql(connection, &clean)?;
    Ok(vec![
        CaseResult::new("sink-postgres", SIZE as u64, messages, seconds).with_note(
            "tern sink postgres: start to exit, binary COPY + offsets row, one transaction per 10k rows"
                .to_string(),
        ),
        CaseResult::new("psql-copy", SIZE as u64, messages, reference).with_note(format!(
            "psql \\copy of the same {messages} rows from a binary COPY file, one COPY"
        )),
    ])
}

/// Runs a Kafka tool (a Java main class from `lib`); its wall time and standard output.
fn kafka_tool(lib: &Path, class: &str, args: &[&str]) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let output = Command::new("java")
        .args(["-Xmx512m", "-cp", &format!("{}/*", lib.display()), class])
        .args(args)
        .output()
        .context("run java (Kafka's tools)")?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "{class} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((
        seconds,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// `sink-kafka` (a fresh topic) beside `kafka-producer-perf`: the broker's own
/// ProducerPerformance, transactional (a commit every 50 ms), acks=all, the same count of 64 B
/// records into another fresh topic; timed as a process, from its start to its exit.
fn kafka(
    tern: &Path,
    bench: &Bench,
    recording_id: RecordingId,
    messages: u64,
    servers: &str,
    lib: &Path,
) -> anyhow::Result<Vec<CaseResult>> {
    ensure!(
        lib.is_dir(),
        "no Kafka jars in {} (scripts/kafka.sh start fetches them; or give --kafka-lib)",
        lib.display()
    );
    let topic = format!("bench-sink-{}-{}", std::process::id(), bench.next_stream());
    let seconds = run_sink(
        tern,
        bench,
        recording_id,
        &["kafka", "--kafka", servers, "--topic", &topic],
    )?;
    let reference_topic = format!("{topic}-perf");
    kafka_tool(
        lib,
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            servers,
            "--create",
            "--topic",
            &reference_topic,
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
    )?;
    let count = messages.to_string();
    let (reference, output) = kafka_tool(
        lib,
        "org.apache.kafka.tools.ProducerPerformance",
        &[
            "--topic",
            &reference_topic,
            "--num-records",
            &count,
            "--record-size",
            "64",
            "--throughput",
            "-1",
            "--transactional-id",
            &format!("{reference_topic}-txn"),
            "--transaction-duration-ms",
            "50",
            "--producer-props",
            &format!("bootstrap.servers={servers}"),
            "acks=all",
        ],
    )?;
    let own = output
        .lines()
        .rev()
        .find(|line| line.contains("records/sec"))
        .and_then(|line| line.split(',').nth(1))
        .map_or_else(String::new, |rate| format!("; its own figure:{rate}"));
    for name in [&topic, &reference_topic] {
        let _ = kafka_tool(
            lib,
            "org.apache.kafka.tools.TopicCommand",
            &["--bootstrap-server", servers, "--delete", "--topic", name],
        );
    }
    Ok(vec![
        CaseResult::new("sink-kafka", SIZE as u64, messages, seconds).with_note(
            "tern sink kafka: start to exit, one transaction per 10k records, acks=all, idempotent"
                .to_string(),
        ),
        CaseResult::new("kafka-producer-perf", SIZE as u64, messages, reference).with_note(
            format!(
            "Kafka's ProducerPerformance, JVM start to exit, transactional (50 ms), acks=all{own}"
        ),
        ),
    ])
}
