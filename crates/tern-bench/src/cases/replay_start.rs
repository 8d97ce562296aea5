//! `replay-start`: how long a replay takes to start, as a user sees it. A small recording (1000
//! messages of 64 B) is replayed again and again, one replay after another, through
//! `Archive::start_replay` to a stream a subscriber in a separate process (see
//! [`crate::subscriber`]) has been subscribed to since before the first: the time from just
//! before `start_replay` to the first message's arrival there (epoch ns on both sides).
//!
//! Runs once per archive client idle sleep asked for (rows of a non-default one end in
//! `-idleNms`): the archive's client conductors see the replay's publication and its subscriber
//! only when they wake.

use super::pacing::xorshift;
use super::Bench;
use crate::report::{CaseResult, Latency};
use crate::subscriber::{Mode, Subscriber};
use crate::traffic::{wait_connected, CHANNEL, CONNECT_TIMEOUT};
use anyhow::{ensure, Context};
use std::time::{Duration, Instant};
use tern_archive::{epoch_nanos, Archive, ReplayRequest, ReplayState, SourceLocation};
use tern_transport::{BackoffIdle, Client, Idle};

/// Payload bytes.
const SIZE: usize = 64;
/// Messages in the recording.
const MESSAGES: u64 = 1000;
/// How long one replay may take to reach the subscriber.
const START_TIMEOUT: Duration = Duration::from_secs(10);

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

/// Record a small recording with the archive's clients idling `client_idle`, then time `replays`
/// replay starts; the row's name ends in `suffix`.
///
/// # Errors
/// The archive, the subscriber process or a replay failed.
pub fn run(
    bench: &Bench,
    replays: usize,
    client_idle: Duration,
    suffix: &str,
) -> anyhow::Result<CaseResult> {
    ensure!(replays > 0, "no replays asked for");
    let scratch = bench.scratch(&format!("replay-start{suffix}"))?;
    let mut config = bench.archive_config(scratch.path());
    config.client_idle_sleep = client_idle;
    let archive = Archive::launch(config)?;
    let client = Client::connect(&bench.aeron_dir)?;
    let stream = bench.next_stream();
    archive.start_recording(CHANNEL, stream, SourceLocation::Remote)?;
    let publication = client.add_exclusive_publication(CHANNEL, stream)?;
    wait_connected(&publication)?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while archive
        .find_recording(stream, publication.session_id())
        .is_none()
    {
        ensure!(Instant::now() < deadline, "the recording did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut idle = BackoffIdle::new();
    let mut payload = [0u8; SIZE];
    for sequence in 0..MESSAGES {
        payload[0..8].copy_from_slice(&sequence.to_le_bytes());
        payload[16..24].copy_from_slice(&epoch_nanos().to_le_bytes());
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match publication.offer(&payload) {
                Ok(_) => break,
                Err(error) if error.is_retryable() && Instant::now() < deadline => idle.idle(0),
                Err(error) => anyhow::bail!("offer: {error}"),
            }
        }
    }
    let end = publication.position();
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let recording_id = loop {
        if let Some(info) = archive.find_recording(stream, publication.session_id()) {
            if info.recorded_position >= end {
                break info.descriptor.recording_id;
            }
        }
        ensure!(
            Instant::now() < deadline,
            "the archive did not record it all"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let replay_stream = bench.next_stream();
    let timeout = START_TIMEOUT * (replays as u32 + 3);
    let mut subscriber = Subscriber::spawn(
        &bench.aeron_dir,
        replay_stream,
        Mode::Starts,
        0,
        timeout,
        &format!("replay-start{suffix}"),
    )?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut starts_ms = Vec::with_capacity(replays);
    let mut returns_ms = Vec::with_capacity(replays);
    let started = Instant::now();
    for _ in 0..replays {
        // A random pause, so that requests fall anywhere in the archive clients' idle cycles.
        std::thread::sleep(Duration::from_micros(2_000 + xorshift(&mut state) % 5_000));
        let before = epoch_nanos();
        let replay_id = archive
            .start_replay(&ReplayRequest {
                recording_id,
                channel: CHANNEL.into(),
                stream_id: replay_stream,
                ..ReplayRequest::default()
            })
            .context("start a replay")?;
        let returned = epoch_nanos();
        let arrival = subscriber.first_of(replay_id.image_session_id(), START_TIMEOUT)?;
        starts_ms.push((arrival - before) as f64 / 1e6);
        returns_ms.push((returned - before) as f64 / 1e6);
        let status = archive.replay_status(replay_id)?;
        let deadline = Instant::now() + START_TIMEOUT;
        while !status.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        ensure!(
            status.state() == ReplayState::Done,
            "replay {replay_id} ended {:?}: {:?}",
            status.state(),
            status.error()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(subscriber);
    archive.shutdown();
    starts_ms.sort_by(f64::total_cmp);
    returns_ms.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&starts_ms, 0.5),
        percentile(&starts_ms, 0.99),
        starts_ms[starts_ms.len() - 1],
    );
    Ok(CaseResult::new(
        &format!("replay-start{suffix}"),
        SIZE as u64,
        replays as u64,
        seconds,
    )
    .with_latency(Latency {
        unit: "ms",
        what: "start_replay to first arrival at a subscriber process",
        samples: replays as u64,
        p50,
        p99,
        max,
        start_skew: None,
        p99_vs_live: None,
    })
    .with_note(format!(
        "{replays} replays of {MESSAGES} x {SIZE} B one after another to a subscriber \
                 process subscribed before them: start_replay to first arrival p50 {p50:.2} ms, \
                 p99 {p99:.2} ms, max {max:.2} ms (start_replay returned after p50 {:.2} ms, max \
                 {:.2} ms); archive client idle {client_idle:?}",
        percentile(&returns_ms, 0.5),
        returns_ms[returns_ms.len() - 1]
    )))
}
