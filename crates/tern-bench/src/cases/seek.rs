//! `seek-cold` and `seek-warm`: locating a point in time in a large recording's time index.
//!
//! The index is the worst case for a recording of 100 M messages: one entry per message (the
//! recorder writes at most one per duty cycle, so a busy recording has far fewer), positions
//! 128 bytes apart (12.8 GB of frames). A seek is two binary searches of 16-byte reads.

use super::Bench;
use crate::report::CaseResult;
use anyhow::Context;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use tern_archive::time_index::TimeIndexWriter;
use tern_archive::{RecordingId, TimeIndexReader, TimeSeek};

const FIRST_NS: i64 = 1_700_000_000_000_000_000;

/// The capture time of entry `index`: 1 to 2 us apart, irregularly.
fn time_of(index: u64) -> i64 {
    FIRST_NS + (index as i64) * 1_500 + ((index * 7919) % 1000) as i64
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize]
}

/// Build an index of `entries` entries, then time one seek with the file out of the page cache
/// and `seeks` seeks after.
///
/// # Errors
/// The scratch file cannot be written or read, or a seek gives a wrong answer.
pub fn run(bench: &Bench, entries: u64, seeks: u64) -> anyhow::Result<Vec<CaseResult>> {
    let scratch = bench.scratch("seek")?;
    let dir = scratch.path();
    let recording_id = RecordingId::new(0);
    let mut writer = TimeIndexWriter::create(dir, recording_id, 0)?;
    for index in 0..entries {
        writer.record(time_of(index), index as i64 * 128);
        if index % (1 << 20) == 0 {
            writer.flush()?;
        }
    }
    writer.flush()?;
    writer.sync()?;
    drop(writer);
    let path = dir.join(tern_archive::time_index::time_index_file_name(recording_id));
    let file = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
    // SAFETY: advice on a descriptor we own; drops the file's cached pages.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let end = entries as i64 * 128;
    let check = |seek: TimeSeek, target: i64| -> anyhow::Result<()> {
        let expected = first_at_or_after(entries, target);
        let found = match seek {
            TimeSeek::At(entry) => entry.position / 128,
            TimeSeek::AfterLast => entries as i64,
        };
        anyhow::ensure!(
            found == expected as i64,
            "seek of {target} found entry {found}, not {expected}"
        );
        Ok(())
    };
    let started = Instant::now();
    let reader = TimeIndexReader::open(dir, recording_id)?;
    let target = time_of(entries * 2 / 3) + 1;
    let seek = reader.seek(target, end)?;
    let cold = started.elapsed();
    check(seek, target)?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let span = time_of(entries) - FIRST_NS;
    let mut random_seeks = |what: &str| -> anyhow::Result<CaseResult> {
        let mut latencies = Vec::with_capacity(seeks as usize);
        let all = Instant::now();
        for _ in 0..seeks {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // From a little before the first entry to a little after the last.
            let target = FIRST_NS - 1_000 + (state % (span as u64 + 2_000)) as i64;
            let started = Instant::now();
            let seek = reader.seek(target, end)?;
            latencies.push(started.elapsed());
            check(seek, target)?;
        }
        let total = all.elapsed().as_secs_f64();
        latencies.sort_unstable();
        Ok(CaseResult::new(what, 16, seeks, total).with_note(format!(
            "{entries} entries ({} MB index, {:.1} GB of frames); p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            (entries * 16) / 1_000_000,
            end as f64 / 1e9,
            percentile(&latencies, 0.5).as_secs_f64() * 1e6,
            percentile(&latencies, 0.99).as_secs_f64() * 1e6,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e6
        )))
    };
    // Random seeks on the index as the cold seek left it (mostly not cached), then cached.
    let uncached = random_seeks("seek-uncached")?;
    std::io::copy(&mut std::fs::File::open(&path)?, &mut std::io::sink())
        .with_context(|| format!("read {}", path.display()))?;
    let cached = random_seeks("seek-cached")?;
    Ok(vec![
        CaseResult::new("seek-cold", 16, 1, cold.as_secs_f64()).with_note(format!(
            "one seek, index dropped from the page cache, open included: {:.1} us",
            cold.as_secs_f64() * 1e6
        )),
        uncached,
        cached,
    ])
}

/// The index of the first entry whose time is at or after `target` (`time_of` increases).
fn first_at_or_after(entries: u64, target: i64) -> u64 {
    let (mut low, mut high) = (0, entries);
    while low < high {
        let middle = low + (high - low) / 2;
        if time_of(middle) < target {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}
