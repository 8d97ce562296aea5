//! `control-rtt` beside `ipc-rtt`: the archive control protocol's round trip (a
//! `RecordingPositionRequest` from `tern-client` to the control server and its answer, over IPC)
//! next to a bare Aeron IPC ping-pong between two threads in the same run.
//!
//! `replay-merge`: a stream published at a steady rate (1 M msg/s of 32 B by default) is recorded;
//! after a backlog has built up a `ReplayMerge` starts from the recording's start, catches up and
//! switches to the live stream; every message is checked (no gap, no duplicate) and the time from
//! the merge's start to the switch is reported.

use super::{histogram, Bench};
use crate::report::CaseResult;
use anyhow::{ensure, Context};
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_archive::control::{ControlChannel, ControlConfig, ControlServer};
use tern_archive::{Archive, SourceLocation};
use tern_client::{ArchiveClient, ArchiveClientConfig, MergeStart, ReplayMerge, ReplayMergeConfig};
use tern_transport::{BackoffIdle, Client, Idle};

const CONTROL: &str = "aeron:ipc?term-length=64k";

fn summary(histogram: &Histogram<u64>) -> String {
    format!(
        "round trip p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us over {} round trips",
        histogram.value_at_quantile(0.5) as f64 / 1e3,
        histogram.value_at_quantile(0.99) as f64 / 1e3,
        histogram.value_at_quantile(0.999) as f64 / 1e3,
        histogram.max() as f64 / 1e3,
        histogram.len()
    )
}

/// Bare Aeron IPC ping-pong: the reference for `control-rtt`.
fn ipc_rtt(bench: &Bench, round_trips: u32) -> anyhow::Result<CaseResult> {
    let ping_stream = bench.next_stream();
    let pong_stream = bench.next_stream();
    let stop = Arc::new(AtomicBool::new(false));
    let aeron_dir = bench.aeron_dir.clone();
    let echo_stop = stop.clone();
    let echo = std::thread::spawn(move || -> anyhow::Result<()> {
        let client = Client::connect(&aeron_dir)?;
        let pings = client.add_subscription("aeron:ipc", ping_stream)?;
        let pongs = client.add_exclusive_publication("aeron:ipc", pong_stream)?;
        let mut idle = BackoffIdle::new();
        while !echo_stop.load(Ordering::Acquire) {
            let mut failed = None;
            let work = pings.poll(
                |message, _| {
                    let mut tries = 0;
                    while let Err(error) = pongs.offer(message) {
                        tries += 1;
                        if !error.is_retryable() || tries > 1_000_000 {
                            failed = Some(error.to_string());
                            break;
                        }
                        std::thread::yield_now();
                    }
                },
                16,
            )?;
            if let Some(error) = failed {
                anyhow::bail!("echo: {error}");
            }
            idle.idle(work);
        }
        Ok(())
    });
    let client = Client::connect(&bench.aeron_dir)?;
    let pings = client.add_exclusive_publication("aeron:ipc", ping_stream)?;
    let pongs = client.add_subscription("aeron:ipc", pong_stream)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(pings.is_connected() && pongs.is_connected()) {
        ensure!(Instant::now() < deadline, "the echo did not connect");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut histogram = histogram()?;
    let started = Instant::now();
    let mut idle = BackoffIdle::new();
    for round in 0..round_trips {
        let sent = Instant::now();
        while pings.offer(&round.to_le_bytes()).is_err() {
            std::thread::yield_now();
        }
        let mut back = false;
        while !back {
            let work = pongs.poll(|_, _| back = true, 1)?;
            idle.idle(work);
            ensure!(
                started.elapsed() < Duration::from_secs(120),
                "the echo stopped answering"
            );
        }
        idle.reset();
        histogram.record(sent.elapsed().as_nanos() as u64)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Release);
    echo.join()
        .map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;
    Ok(
        CaseResult::new("ipc-rtt", 4, u64::from(round_trips), seconds)
            .with_note(summary(&histogram)),
    )
}

/// Control round trips over IPC, beside a bare IPC ping-pong.
///
/// # Errors
/// The archive, its control server or the client failed.
pub fn rtt(bench: &Bench, round_trips: u32) -> anyhow::Result<Vec<CaseResult>> {
    let reference = ipc_rtt(bench, round_trips)?;
    let scratch = bench.scratch("control")?;
    let archive = Arc::new(Archive::launch(bench.archive_config(scratch.path()))?);
    let control_stream = bench.next_stream();
    let server = ControlServer::start(
        archive.clone(),
        ControlConfig {
            channels: vec![ControlChannel::new(CONTROL, control_stream)],
            ..ControlConfig::default()
        },
    )?;
    let stream = bench.next_stream();
    archive.start_recording("aeron:ipc", stream, SourceLocation::Local)?;
    let publisher = Client::connect(&bench.aeron_dir)?;
    let publication = publisher.add_exclusive_publication("aeron:ipc", stream)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while archive.recordings().is_empty() {
        ensure!(Instant::now() < deadline, "the recording did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    while publication.offer(&[0u8; 32]).is_err() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let recording_id = archive.recordings()[0].descriptor.recording_id;
    let mut client = ArchiveClient::connect(
        ArchiveClientConfig::local(bench.aeron_dir.clone())
            .with_request(CONTROL, control_stream)
            .with_response(CONTROL, bench.next_stream()),
    )?;
    // Warm up (first requests fault pages in and settle the session).
    for _ in 0..1_000.min(round_trips) {
        client.recording_position(recording_id)?;
    }
    let mut histogram = histogram()?;
    let started = Instant::now();
    for _ in 0..round_trips {
        let sent = Instant::now();
        let position = client.recording_position(recording_id)?;
        histogram.record(sent.elapsed().as_nanos() as u64)?;
        ensure!(position.is_some(), "the recording is active");
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(client);
    server.stop();
    drop(publication);
    match Arc::try_unwrap(archive) {
        Ok(archive) => archive.shutdown(),
        Err(_) => anyhow::bail!("the archive is still shared"),
    }
    Ok(vec![
        reference,
        CaseResult::new("control-rtt", 0, u64::from(round_trips), seconds).with_note(format!(
            "RecordingPosition over IPC; {}",
            summary(&histogram)
        )),
    ])
}

/// Publish `size`-byte messages numbered from 0 at `rate` per second until `stop`.
fn steady_publisher(
    aeron_dir: String,
    stream: i32,
    size: usize,
    rate: u64,
    stop: Arc<AtomicBool>,
    published: Arc<AtomicU64>,
) -> std::thread::JoinHandle<anyhow::Result<u64>> {
    std::thread::spawn(move || {
        let client = Client::connect(&aeron_dir)?;
        let publication = client.add_exclusive_publication("aeron:ipc", stream)?;
        let mut message = vec![0u8; size.max(8)];
        let started = Instant::now();
        let mut sequence = 0u64;
        let mut held_since: Option<Instant> = None;
        while !stop.load(Ordering::Acquire) {
            let due = (started.elapsed().as_nanos() as u64).saturating_mul(rate) / 1_000_000_000;
            if sequence >= due {
                std::thread::sleep(Duration::from_micros(50));
                continue;
            }
            message[..8].copy_from_slice(&sequence.to_le_bytes());
            match publication.offer(&message) {
                Ok(_) => {
                    sequence += 1;
                    held_since = None;
                    if sequence.is_multiple_of(256) {
                        published.store(sequence, Ordering::Release);
                    }
                }
                Err(error) if error.is_retryable() => {
                    let since = *held_since.get_or_insert_with(Instant::now);
                    ensure!(
                        since.elapsed() < Duration::from_secs(30),
                        "the publisher was held back for 30 s: {error}"
                    );
                    std::thread::yield_now();
                }
                Err(error) => anyhow::bail!("offer: {error}"),
            }
        }
        published.store(sequence, Ordering::Release);
        Ok(sequence)
    })
}

/// Counts messages numbered from 0 that are missing or repeated.
#[derive(Debug, Default)]
struct SequenceCheck {
    next: u64,
    gaps: u64,
    duplicates: u64,
}

impl SequenceCheck {
    fn on_message(&mut self, bytes: &[u8]) {
        let sequence = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
        if sequence > self.next {
            self.gaps += sequence - self.next;
            self.next = sequence + 1;
        } else if sequence < self.next {
            self.duplicates += 1;
        } else {
            self.next += 1;
        }
    }
}

/// Replay-merge of a steady stream: time to merge, gaps, duplicates.
///
/// # Errors
/// Setup failed, or a message was lost, repeated or reordered, or the merge never completed.
pub fn merge(
    bench: &Bench,
    rate: u64,
    backlog: Duration,
    after: Duration,
) -> anyhow::Result<Vec<CaseResult>> {
    const SIZE: usize = 32;
    let scratch = bench.scratch("merge")?;
    let archive = Arc::new(Archive::launch(bench.archive_config(scratch.path()))?);
    let control_stream = bench.next_stream();
    let server = ControlServer::start(
        archive.clone(),
        ControlConfig {
            channels: vec![ControlChannel::new(CONTROL, control_stream)],
            ..ControlConfig::default()
        },
    )?;
    let stream = bench.next_stream();
    archive.start_recording("aeron:ipc", stream, SourceLocation::Local)?;
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = steady_publisher(
        bench.aeron_dir.clone(),
        stream,
        SIZE,
        rate,
        stop.clone(),
        published.clone(),
    );
    std::thread::sleep(backlog);
    let recording_id = archive
        .recordings()
        .first()
        .context("the recording did not start")?
        .descriptor
        .recording_id;
    let mut client = ArchiveClient::connect(
        ArchiveClientConfig::local(bench.aeron_dir.clone())
            .with_request(CONTROL, control_stream)
            .with_response(CONTROL, bench.next_stream()),
    )?;
    let backlog_messages = published.load(Ordering::Acquire);
    let started = Instant::now();
    let mut merge = ReplayMerge::new(
        &mut client,
        ReplayMergeConfig::new(
            recording_id,
            MergeStart::RecordingStart,
            "aeron:ipc",
            bench.next_stream(),
        ),
    )?;
    let mut check = SequenceCheck::default();
    let mut merged_after = None;
    let mut idle = BackoffIdle::new();
    loop {
        let work = merge.poll(|bytes, _| check.on_message(bytes), 1024)?;
        if merged_after.is_none() && merge.is_merged() {
            merged_after = Some(started.elapsed());
        }
        if let Some(merged) = merged_after {
            if started.elapsed() > merged + after {
                break;
            }
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "no merge within 60 s: {} messages delivered",
            check.next
        );
        idle.idle(work);
    }
    stop.store(true, Ordering::Release);
    let total = publisher
        .join()
        .map_err(|_| anyhow::anyhow!("the publisher panicked"))??;
    // Take what the live stream still holds.
    let drain = Instant::now();
    while check.next < total && drain.elapsed() < Duration::from_secs(10) {
        let work = merge.poll(|bytes, _| check.on_message(bytes), 1024)?;
        idle.idle(work);
    }
    let merged = merged_after.context("never merged")?;
    let seconds = started.elapsed().as_secs_f64();
    drop(merge);
    drop(client);
    server.stop();
    match Arc::try_unwrap(archive) {
        Ok(archive) => archive.shutdown(),
        Err(_) => anyhow::bail!("the archive is still shared"),
    }
    let SequenceCheck {
        next,
        gaps,
        duplicates,
    } = check;
    ensure!(
        gaps == 0 && duplicates == 0,
        "{gaps} messages missing, {duplicates} repeated"
    );
    ensure!(next == total, "delivered {next} of {total} messages");
    Ok(vec![CaseResult::new("replay-merge", SIZE as u64, next, seconds).with_note(format!(
        "IPC, published at {rate} msg/s; merge from the recording's start over a backlog of {backlog_messages} messages completed {:.0} ms after it started; {next} messages delivered, 0 gaps, 0 duplicates",
        merged.as_secs_f64() * 1e3
    ))])
}
