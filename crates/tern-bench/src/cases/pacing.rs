//! `pacing-*`: how closely a paced replay keeps the original timing, measured from outside, at a
//! subscriber in a separate process (see [`crate::subscriber`]), beside the live path.
//!
//! Messages of 64 B are published on `aeron:ipc` at 1000 msg/s with 80% random jitter (each gap
//! 1 ms x (1 + U(-0.8, 0.8))), each carrying its sequence number (offset 0) and its send time
//! (epoch ns taken right before the offer, offset 16). The archive records the stream; the
//! publisher starts as soon as the live subscriber process has the stream, without waiting for
//! the recording to be seen, as a user's publisher would.
//!
//! - `pacing-live`: the live subscriber process, arrival - send of every message.
//! - `pacing-capture-1x`, `-10x`, `pacing-field-1x`, `-10x`: the recording replayed at 1x and 10x,
//!   paced by the capture times and by the send time inside the messages (`field:16:ns`), each to
//!   a fresh stream and a fresh subscriber process subscribed before the replay starts. Message i
//!   is due at `arrival_0 + (send_i - send_0) / speed`; the figures are |arrival - due| of every
//!   message after the first, and the start skew is the median signed error (a late first capture
//!   time makes every later message early by that much over the speed).
//!
//! The whole case runs once per archive client idle sleep asked for (rows of a non-default one
//! end in `-idleNms`), so the before/after of that setting is in one run.

use super::Bench;
use crate::report::{CaseResult, Latency};
use crate::subscriber::{Arrival, Mode, Subscriber, SEND_TIME_OFFSET, SEQUENCE_OFFSET};
use crate::traffic::{wait_connected, CHANNEL, CONNECT_TIMEOUT};
use anyhow::{ensure, Context};
use std::time::{Duration, Instant};
use tern_archive::{
    epoch_nanos, Archive, RecordingSignalKind, ReplayRequest, ReplayState, SourceLocation,
    TimeSource, TimeUnit,
};
use tern_transport::{BackoffIdle, Client, ExclusivePublication, Idle};

/// Payload bytes.
pub const SIZE: usize = 64;
/// The mean gap between messages (1000 msg/s).
const MEAN_GAP_NS: f64 = 1e6;
/// The jitter: each gap is the mean times 1 + U(-JITTER, JITTER).
const JITTER: f64 = 0.8;
/// The seed of the gaps' xorshift.
const SEED: u64 = 0x2545_F491_4F6C_DD1D;
/// Extra time a subscriber gets beyond the schedule before it gives up.
const SLACK: Duration = Duration::from_secs(60);

/// The next xorshift64 state.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The next gap: 1 ms x (1 + U(-0.8, 0.8)).
fn next_gap(state: &mut u64) -> Duration {
    let uniform = (xorshift(state) >> 11) as f64 / (1u64 << 53) as f64;
    Duration::from_nanos((MEAN_GAP_NS * (1.0 + JITTER * (2.0 * uniform - 1.0))) as u64)
}

/// Publish `messages` on the jittered schedule, each stamped with its send time; returns the
/// publication's position after the last.
fn publish(publication: &ExclusivePublication, messages: usize) -> anyhow::Result<i64> {
    let mut state = SEED;
    let mut payload = [0u8; SIZE];
    let mut idle = BackoffIdle::new();
    let mut due = Instant::now();
    for sequence in 0..messages as u64 {
        if sequence > 0 {
            due += next_gap(&mut state);
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        payload[SEQUENCE_OFFSET..SEQUENCE_OFFSET + 8].copy_from_slice(&sequence.to_le_bytes());
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            payload[SEND_TIME_OFFSET..SEND_TIME_OFFSET + 8]
                .copy_from_slice(&epoch_nanos().to_le_bytes());
            match publication.offer(&payload) {
                Ok(_) => break,
                Err(error) if error.is_retryable() && Instant::now() < deadline => idle.idle(0),
                Err(error) => anyhow::bail!("offer message {sequence}: {error}"),
            }
        }
        idle.reset();
    }
    Ok(publication.position())
}

/// `arrivals` checked to be messages 0 to `messages` - 1, each once, in order.
fn check_order(arrivals: &[Arrival], messages: usize) -> anyhow::Result<()> {
    for (index, arrival) in arrivals.iter().enumerate() {
        ensure!(
            arrival.sequence == index as u64,
            "message {} arrived where {index} was due",
            arrival.sequence
        );
    }
    ensure!(
        arrivals.len() == messages,
        "{} of {messages} messages arrived",
        arrivals.len()
    );
    Ok(())
}

/// `sorted[(n - 1) * fraction]`, rounded to the nearest rank.
fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

/// p50, p99 and max of the absolute values of `errors`, and the median of the signed ones.
fn summarize(errors: &[f64]) -> (f64, f64, f64, f64) {
    let mut signed = errors.to_vec();
    signed.sort_by(f64::total_cmp);
    let mut absolute: Vec<f64> = errors.iter().map(|error| error.abs()).collect();
    absolute.sort_by(f64::total_cmp);
    (
        percentile(&absolute, 0.5),
        percentile(&absolute, 0.99),
        absolute[absolute.len() - 1],
        percentile(&signed, 0.5),
    )
}

/// The live path: arrival - send of every message, in microseconds.
pub fn live_errors_us(arrivals: &[Arrival]) -> Vec<f64> {
    arrivals
        .iter()
        .map(|a| (a.arrival_ns - a.sent_ns) as f64 / 1e3)
        .collect()
}

/// A replay at `speed`: arrival - (arrival_0 + (send_i - send_0) / speed) of every message after
/// the first, in microseconds (signed: negative is early).
pub fn schedule_errors_us(arrivals: &[Arrival], speed: f64) -> Vec<f64> {
    let Some(first) = arrivals.first() else {
        return Vec::new();
    };
    arrivals[1..]
        .iter()
        .map(|a| {
            let due = first.arrival_ns as f64 + (a.sent_ns - first.sent_ns) as f64 / speed;
            (a.arrival_ns as f64 - due) / 1e3
        })
        .collect()
}

/// A row from arrivals in order.
fn row(case: &str, arrivals: &[Arrival], latency: Latency, note: String) -> CaseResult {
    let seconds = match (arrivals.first(), arrivals.last()) {
        (Some(first), Some(last)) => (last.arrival_ns - first.arrival_ns) as f64 / 1e9,
        _ => 0.0,
    };
    CaseResult::new(case, SIZE as u64, arrivals.len() as u64, seconds)
        .with_latency(latency)
        .with_note(note)
}

/// Publish, record and replay `messages` with the archive's clients idling `client_idle`; the
/// rows' names end in `suffix`.
///
/// # Errors
/// The archive, a publication, a subscriber process or a replay failed, or a message was lost or
/// reordered.
pub fn run(
    bench: &Bench,
    messages: usize,
    client_idle: Duration,
    suffix: &str,
) -> anyhow::Result<Vec<CaseResult>> {
    ensure!(messages >= 2, "the pacing case needs at least 2 messages");
    let scratch = bench.scratch(&format!("pacing{suffix}"))?;
    let mut config = bench.archive_config(scratch.path());
    config.client_idle_sleep = client_idle;
    let archive = Archive::launch(config)?;
    let client = Client::connect(&bench.aeron_dir)?;
    let stream = bench.next_stream();
    let events = archive.subscribe_events();
    archive.start_recording(CHANNEL, stream, SourceLocation::Remote)?;
    let schedule = Duration::from_nanos((messages as f64 * MEAN_GAP_NS) as u64);
    let live = Subscriber::spawn(
        &bench.aeron_dir,
        stream,
        Mode::Messages,
        messages,
        schedule + SLACK,
        "live",
    )?;
    let publication = client.add_exclusive_publication(CHANNEL, stream)?;
    wait_connected(&publication)?;
    // As a user whose timing matters does: publish once the recording's Start signal is out (a
    // message the recorder first reads late gets that late capture time).
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(wait) {
            Ok(event)
                if event.signal == RecordingSignalKind::Start
                    && event
                        .recording_id
                        .and_then(|recording_id| archive.recording(recording_id).ok())
                        .is_some_and(|info| {
                            info.descriptor.session_id == publication.session_id()
                        }) =>
            {
                break
            }
            Ok(_) => {}
            Err(_) => anyhow::bail!("the recording did not start"),
        }
    }
    let mut live = live;
    live.wait_for("connected", CONNECT_TIMEOUT)?;
    let end = publish(&publication, messages)?;
    let live_arrivals = live.arrivals(SLACK)?;
    check_order(&live_arrivals, messages).context("live")?;
    let deadline = Instant::now() + SLACK;
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
    let idle_note = format!("archive client idle {client_idle:?}");
    let (p50, p99, max, _) = summarize(&live_errors_us(&live_arrivals));
    let live_p99 = p99;
    let mut rows = vec![row(
        &format!("pacing-live{suffix}"),
        &live_arrivals,
        Latency {
            unit: "us",
            what: "arrival - send (live)",
            samples: messages as u64,
            p50,
            p99,
            max,
            start_skew: Some(0.0),
            p99_vs_live: None,
        },
        format!(
            "live path at a subscriber process, arrival - in-message send time: p50 {p50:.1} us, \
             p99 {p99:.1} us, max {max:.1} us over {messages} messages at 1000 msg/s with 80% \
             jitter; {idle_note}"
        ),
    )];
    let field = TimeSource::Field {
        offset: SEND_TIME_OFFSET,
        unit: TimeUnit::Nanos,
    };
    for (source, name, speed) in [
        (TimeSource::Capture, "capture", 1.0),
        (TimeSource::Capture, "capture", 10.0),
        (field, "field", 1.0),
        (field, "field", 10.0),
    ] {
        let case = format!("pacing-{name}-{speed}x{suffix}");
        let replay_stream = bench.next_stream();
        let timeout = schedule.div_f64(speed) + SLACK;
        let subscriber = Subscriber::spawn(
            &bench.aeron_dir,
            replay_stream,
            Mode::Messages,
            messages,
            timeout,
            &case,
        )?;
        let replay_id = archive
            .start_replay(&ReplayRequest {
                recording_id,
                channel: CHANNEL.into(),
                stream_id: replay_stream,
                speed: Some(speed),
                time_source: source,
                ..ReplayRequest::default()
            })
            .with_context(|| format!("{case}: start the replay"))?;
        let arrivals = subscriber.arrivals(timeout)?;
        check_order(&arrivals, messages).with_context(|| case.clone())?;
        let status = archive.replay_status(replay_id)?;
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        while !status.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        ensure!(
            status.state() == ReplayState::Done,
            "{case}: replay {replay_id} ended {:?}: {:?}",
            status.state(),
            status.error()
        );
        let (p50, p99, max, skew) = summarize(&schedule_errors_us(&arrivals, speed));
        let ratio = p99 / live_p99.max(1e-3);
        rows.push(row(
            &case,
            &arrivals,
            Latency {
                unit: "us",
                what: "|arrival - due|, due = arrival_0 + (send_i - send_0) / speed",
                samples: messages as u64 - 1,
                p50,
                p99,
                max,
                start_skew: Some(skew),
                p99_vs_live: Some(ratio),
            },
            format!(
                "replay at {speed}x paced by the {} time, at a subscriber process: |arrival - \
                 (arrival_0 + (send_i - send_0) / {speed})| p50 {p50:.1} us, p99 {p99:.1} us, max \
                 {max:.1} us over {} messages after the first; start skew {skew:.1} us; p99 / \
                 live p99 {ratio:.2} (goal <= 2); {idle_note}",
                if source.is_in_message() {
                    "in-message (field:16:ns)"
                } else {
                    "capture"
                },
                messages - 1
            ),
        ));
    }
    archive.shutdown();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(sequence: u64, sent_ns: i64, arrival_ns: i64) -> Arrival {
        Arrival {
            sequence,
            sent_ns,
            arrival_ns,
        }
    }

    #[test]
    fn gaps_are_one_ms_with_80_percent_jitter() {
        let mut state = SEED;
        let gaps: Vec<f64> = (0..10_000)
            .map(|_| next_gap(&mut state).as_secs_f64() * 1e3)
            .collect();
        assert!(gaps.iter().all(|gap| (0.2..=1.8).contains(gap)));
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!((mean - 1.0).abs() < 0.02, "mean gap {mean} ms");
    }

    #[test]
    fn a_late_first_message_shows_as_start_skew() {
        // Sent every 1 ms; replayed at 10x with every message after the first 1.6 ms early.
        let arrivals: Vec<Arrival> = (0..100)
            .map(|i| {
                let sent = 1_000_000_000 + i * 1_000_000;
                let due = 5_000_000_000 + i * 100_000;
                let early = if i == 0 { 0 } else { 1_600_000 };
                arrival(i as u64, sent, due - early + (i % 3) * 1_000)
            })
            .collect();
        let errors = schedule_errors_us(&arrivals, 10.0);
        assert_eq!(errors.len(), 99);
        let (p50, p99, max, skew) = summarize(&errors);
        assert!((skew + 1599.0).abs() < 1.01, "skew {skew}");
        assert!((p50 - 1599.0).abs() < 1.01 && p99 <= 1600.0 && max <= 1600.0);
        check_order(&arrivals, 100).expect("in order");
        assert!(check_order(&arrivals[1..], 99).is_err());
        assert!(check_order(&arrivals[..50], 100).is_err());
        let live = live_errors_us(&[arrival(0, 10, 41_010)]);
        assert_eq!(live, vec![41.0]);
    }
}
