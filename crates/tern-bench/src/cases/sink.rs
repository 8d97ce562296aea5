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
    if services.postgres.is_none() && services.kafka.is_none() {
        eprintln!("   sink-postgres and sink-kafka: not run (give --postgres and --kafka)");
    }
    let _ = services;
    server.stop();
    match Arc::try_unwrap(archive) {
        Ok(archive) => archive.shutdown(),
        Err(_) => anyhow::bail!("the archive is still shared"),
    }
    drop(scratch);
    Ok(rows)
}
