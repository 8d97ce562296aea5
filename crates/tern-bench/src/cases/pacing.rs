//! `pacing-1x` and `pacing-10x`: how closely a paced replay keeps the recorded timing. A few
//! thousand messages are recorded with irregular gaps; each is replayed at its capture time
//! (from the recording's time index) divided by the speed, and its arrival at a subscriber is
//! compared with that schedule: |actual - scheduled|, the schedule placed at the median offset.

use super::Bench;
use crate::report::CaseResult;
use anyhow::Context;
use std::time::{Duration, Instant};
use tern_archive::{Archive, ArchiveView, ReplayRequest, SourceLocation};
use tern_transport::{BackoffIdle, Client, Idle};

const SIZE: usize = 64;
/// The start of the schedule left out of the statistics, in microseconds.
const SETTLE_US: f64 = 20_000.0;

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

/// Record `messages` with gaps of 0 to 3 ms, then replay them at 1x and 10x.
///
/// # Errors
/// The archive, a publication or a replay failed, or a message was lost or reordered.
pub fn run(bench: &Bench, messages: u32) -> anyhow::Result<Vec<CaseResult>> {
    let scratch = bench.scratch("pacing")?;
    let archive = Archive::launch(bench.archive_config(scratch.path()))?;
    let client = Client::connect(&bench.aeron_dir)?;
    let stream = bench.next_stream();
    archive.start_recording("aeron:ipc", stream, SourceLocation::Remote)?;
    let publication = client.add_exclusive_publication("aeron:ipc", stream)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while archive
        .find_recording(stream, publication.session_id())
        .is_none()
    {
        anyhow::ensure!(Instant::now() < deadline, "the recording did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    let recording_id = archive
        .find_recording(stream, publication.session_id())
        .context("recording")?
        .descriptor
        .recording_id;
    let mut idle = BackoffIdle::new();
    let mut starts = Vec::with_capacity(messages as usize);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut payload = [0u8; SIZE];
    for sequence in 0..messages {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Irregular gaps: a third back to back, the rest 50 us to 3 ms.
        if !state.is_multiple_of(3) {
            std::thread::sleep(Duration::from_micros(50 + state % 2950));
        }
        payload[0..4].copy_from_slice(&sequence.to_le_bytes());
        starts.push(publication.position());
        loop {
            match publication.offer(&payload) {
                Ok(_) => break,
                Err(error) if error.is_retryable() => idle.idle(0),
                Err(error) => anyhow::bail!("offer: {error}"),
            }
        }
    }
    let end = publication.position();
    while archive.recording(recording_id)?.recorded_position < end {
        anyhow::ensure!(
            Instant::now() < deadline + Duration::from_secs(60),
            "not recorded"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let view = ArchiveView::open(scratch.path())?;
    let index = view.time_index(&view.recording(recording_id)?)?;
    let captured: Vec<i64> = starts
        .iter()
        .map(|start| {
            let after = index.partition_point(|entry| entry.position <= *start);
            index[after.saturating_sub(1)].timestamp_ns
        })
        .collect();
    let mut results = Vec::new();
    for (speed, case) in [(1.0, "pacing-1x"), (10.0, "pacing-10x")] {
        let replay_stream = bench.next_stream();
        let subscription = client.add_subscription("aeron:ipc", replay_stream)?;
        archive.start_replay(&ReplayRequest {
            recording_id,
            position: None,
            length: None,
            follow: false,
            channel: "aeron:ipc".into(),
            stream_id: replay_stream,
            speed: Some(speed),
            time_source: Default::default(),
            limit_counter_id: None,
            key: None,
            keep_positions: false,
        })?;
        let mut arrivals: Vec<Option<Instant>> = vec![None; messages as usize];
        let mut received = 0usize;
        let mut order_ok = true;
        let mut expected = 0u32;
        let started = Instant::now();
        while received < messages as usize {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "{case}: {received} of {messages} messages arrived"
            );
            // Poll without sleeping: the arrival time is the measurement.
            let work = subscription.poll(
                |fragment, _| {
                    let sequence =
                        u32::from_le_bytes([fragment[0], fragment[1], fragment[2], fragment[3]]);
                    order_ok &= sequence == expected;
                    expected = sequence + 1;
                    if let Some(slot) = arrivals.get_mut(sequence as usize) {
                        *slot = Some(Instant::now());
                    }
                    received += 1;
                },
                16,
            )?;
            if work == 0 {
                std::thread::yield_now();
            }
        }
        anyhow::ensure!(order_ok, "{case}: messages out of order");
        let arrivals: Vec<Instant> = arrivals
            .into_iter()
            .collect::<Option<_>>()
            .context("a message is missing")?;
        // The replay's own start instant is not visible here, and the first message can reach
        // the subscriber late (its client adds a new image on its own conductor cycle, up to
        // ~16 ms): measure against the median offset of arrival from schedule instead.
        // Messages due in the first 20 ms are left out: they wait for the image to reach the
        // subscriber's client, then arrive together.
        let first = arrivals[0];
        let offsets: Vec<f64> = arrivals
            .iter()
            .zip(&captured)
            .filter_map(|(arrival, time)| {
                let scheduled = (time - captured[0]) as f64 / speed / 1e3;
                (scheduled >= SETTLE_US)
                    .then(|| arrival.duration_since(first).as_secs_f64() * 1e6 - scheduled)
            })
            .collect();
        anyhow::ensure!(
            !offsets.is_empty(),
            "{case}: no message due after the first 20 ms"
        );
        let mut sorted = offsets.clone();
        sorted.sort_by(f64::total_cmp);
        let median = percentile(&sorted, 0.5);
        let mut errors: Vec<f64> = offsets
            .iter()
            .map(|offset| (offset - median).abs())
            .collect();
        errors.sort_by(f64::total_cmp);
        let seconds = arrivals[arrivals.len() - 1]
            .duration_since(first)
            .as_secs_f64();
        results.push(
            CaseResult::new(case, SIZE as u64, u64::from(messages), seconds).with_note(format!(
                "|actual - scheduled| p50 {:.1} us, p99 {:.1} us, max {:.1} us over {} messages due after 20 ms; {} capture times",
                percentile(&errors, 0.5),
                percentile(&errors, 0.99),
                errors[errors.len() - 1],
                errors.len(),
                index.len()
            )),
        );
    }
    archive.shutdown();
    Ok(results)
}
