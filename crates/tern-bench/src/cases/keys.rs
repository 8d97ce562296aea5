//! `keys-*`: replaying the messages of one key out of many interleaved ones (1000 by default),
//! through the per-key index against scanning and filtering everything, side by side on the same
//! recording: from the disk (page cache dropped) and from the page cache.
//!
//! One recording is made with the reserved value indexed; message `s` carries key `s % keys` in
//! its reserved value. Then one key's messages are replayed by the archive (back to back, the
//! default) to a subscriber thread that checks each (`keys-index-*`); then the same with the index
//! files moved away, so the replayer reads every frame and filters (`keys-scan-*`); then through
//! the index again keeping the recorded positions, the gaps padded (`keys-index-positions-*`);
//! and last the whole recording replayed unfiltered to a subscriber that keeps the key's messages
//! (`keys-subscriber-filter`, what a user does without key filters). Each time runs from the
//! replay request to the last message received (the whole stream for the subscriber filter).

use super::replay::{evict_page_cache, Cache};
use super::{join_worker, spawn_worker, Abort, Bench, ScratchDir};
use crate::report::CaseResult;
use crate::traffic::{self, CHANNEL, CONNECT_TIMEOUT, STALL_TIMEOUT};
use anyhow::{bail, Context};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tern_archive::{
    Archive, ArchiveView, KeyFilter, KeyKind, RecordingId, ReplayRequest, ReplayState,
};
use tern_transport::Client;

/// The recording, its archive and what is needed to check replays of it.
struct Keyed {
    archive: Archive,
    recording_id: RecordingId,
    messages: u64,
    stop_position: i64,
    start_position: i64,
    record_seconds: f64,
    scratch: ScratchDir,
}

/// Record `messages` messages of `size` bytes with `keys` interleaved keys, indexed by reserved
/// value; wait for every index file.
fn record(bench: &Bench, size: usize, messages: u64, keys: u64) -> anyhow::Result<Keyed> {
    let scratch = bench.scratch("keys")?;
    let mut config = bench.archive_config(scratch.path());
    config.key_index = vec![KeyKind::Reserved];
    let archive = Archive::launch(config)
        .with_context(|| format!("launch an archive in {}", scratch.path().display()))?;
    let stream = bench.next_stream();
    let subscription_id =
        archive.start_recording(CHANNEL, stream, tern_archive::SourceLocation::Remote)?;
    let client = Client::connect(&bench.aeron_dir)?;
    let publication = client.add_exclusive_publication(CHANNEL, stream)?;
    traffic::wait_connected(&publication)?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let recording_id = loop {
        if let Some(info) = archive.find_recording(stream, publication.session_id()) {
            break info.descriptor.recording_id;
        }
        if Instant::now() > deadline {
            bail!("the recording did not start");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let published = traffic::publish(&publication, size, messages, keys, &AtomicBool::new(false))?;
    let mut last = (i64::MIN, Instant::now());
    loop {
        let recorded = archive.recording(recording_id)?.recorded_position;
        if recorded >= published.final_position {
            break;
        }
        if recorded != last.0 {
            last = (recorded, Instant::now());
        } else if last.1.elapsed() > STALL_TIMEOUT {
            bail!("recording {recording_id} stalled at {recorded}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let record_seconds = published.started.elapsed().as_secs_f64();
    archive.stop_recording(subscription_id)?;
    drop(publication);
    drop(client);
    let info = archive.recording(recording_id)?;
    let view = ArchiveView::open(scratch.path())?;
    let segments = view
        .segment_files(recording_id)
        .iter()
        .filter(|segment| segment.base < info.descriptor.stop_position)
        .count();
    let deadline = Instant::now() + STALL_TIMEOUT;
    loop {
        let (_, checks) = view.key_indexes(recording_id)?;
        if checks.len() == segments && checks.iter().all(|check| check.is_ok()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the key index files were not all written: {checks:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(Keyed {
        archive,
        recording_id,
        messages,
        stop_position: info.descriptor.stop_position,
        start_position: info.descriptor.start_position,
        record_seconds,
        scratch,
    })
}

/// Bytes of the files in `dir` whose names end with `suffix`.
fn bytes_of(dir: &Path, suffix: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().ends_with(suffix) {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Move the key index files of `from` into `to` (or back).
fn move_index_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        // The per-segment files only (`<id>-<base>.<kind>.kix`), not the manifest.
        if text.ends_with(".kix") && text.contains('-') {
            std::fs::rename(entry.path(), to.join(&name))
                .with_context(|| format!("move {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// What one timed replay of the key gave.
struct Timed {
    seconds: f64,
    matched: u64,
    scanned_bytes: u64,
    index_bytes: u64,
}

/// Replay `key` (filtered when `filtered`, else everything) to a subscriber thread that keeps the
/// key's messages; time from the request to the last message the subscriber needed.
fn replay(
    bench: &Bench,
    recording: &Keyed,
    size: usize,
    key: i64,
    keys: u64,
    filtered: bool,
    keep_positions: bool,
) -> anyhow::Result<Timed> {
    let expected = (0..recording.messages)
        .filter(|sequence| traffic::key_of(*sequence, keys) == key)
        .count() as u64;
    let total = if filtered {
        expected
    } else {
        recording.messages
    };
    let stream = bench.next_stream();
    let abort = Abort::default();
    let (ready, subscribed) = mpsc::channel();
    let aeron_dir = bench.aeron_dir.clone();
    let subscriber = spawn_worker("keys-subscriber", &abort, move |abort| {
        let client = Client::connect(&aeron_dir)?;
        let subscription = client.add_subscription(CHANNEL, stream)?;
        let _ = ready.send(());
        traffic::count_key(&subscription, size, key, keys, total, abort)
    })?;
    if subscribed.recv_timeout(CONNECT_TIMEOUT).is_err() {
        abort.store(true, Ordering::Release);
        join_worker(subscriber)?;
        bail!("the subscriber did not start");
    }
    let started = Instant::now();
    let request = ReplayRequest {
        recording_id: recording.recording_id,
        channel: CHANNEL.into(),
        stream_id: stream,
        key: filtered.then_some(KeyFilter {
            kind: KeyKind::Reserved,
            value: key,
        }),
        keep_positions,
        ..ReplayRequest::default()
    };
    let replay_id = match recording.archive.start_replay(&request) {
        Ok(id) => id,
        Err(error) => {
            abort.store(true, Ordering::Release);
            let _ = join_worker(subscriber);
            return Err(error).context("start the replay");
        }
    };
    let status = recording.archive.replay_status(replay_id)?;
    while !subscriber.is_finished() {
        if status.state() == ReplayState::Failed {
            abort.store(true, Ordering::Release);
            bail!("replay {replay_id} failed: {:?}", status.error());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let counted = join_worker(subscriber)?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while !status.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    if status.state() != ReplayState::Done {
        bail!(
            "replay {replay_id} ended {:?}: {:?}",
            status.state(),
            status.error()
        );
    }
    if counted.messages != expected || counted.mixed_sessions {
        bail!(
            "the subscriber kept {} messages of key {key}, expected {expected} (mixed sessions: {})",
            counted.messages,
            counted.mixed_sessions
        );
    }
    if filtered && keep_positions && status.position() != recording.stop_position {
        bail!(
            "the filtered replay ended at {}, not at the recording's end {}",
            status.position(),
            recording.stop_position
        );
    }
    let stats = status.search_stats();
    Ok(Timed {
        seconds: counted.finished.duration_since(started).as_secs_f64(),
        matched: counted.messages,
        scanned_bytes: stats.scanned_bytes,
        index_bytes: stats.index_bytes,
    })
}

/// Read the key's messages from the directory, as `tern replay --print --key` does (no Aeron):
/// through the index, or scanning when the index files are away. Checks each message.
fn read_offline(
    recording: &Keyed,
    size: usize,
    key: i64,
    keys: u64,
) -> anyhow::Result<(f64, u64, tern_archive::SearchStats)> {
    let started = Instant::now();
    let view = ArchiveView::open(recording.scratch.path())?;
    let filter = KeyFilter {
        kind: KeyKind::Reserved,
        value: key,
    };
    let mut matched = 0u64;
    let mut problem = None;
    let read =
        view.messages_with_key(recording.recording_id, None, None, &filter, |message, _| {
            let sequence = message
                .get(..8)
                .and_then(|bytes| bytes.try_into().ok())
                .map(u64::from_le_bytes);
            let expected = key as u64 + matched * keys;
            if message.len() != size || sequence != Some(expected) {
                problem = Some(format!(
                    "message {matched}: sequence {sequence:?}, not {expected}"
                ));
                return false;
            }
            matched += 1;
            true
        })?;
    if let Some(problem) = problem {
        bail!("offline read of key {key}: {problem}");
    }
    Ok((started.elapsed().as_secs_f64(), matched, read.stats))
}

/// Record, then time the replays of one key: index and scan, cold and warm, and a subscriber
/// that filters a whole replay. Returns the rows and a summary line.
///
/// # Errors
/// Recording or a replay failed, or a subscriber did not receive exactly the key's messages.
pub fn run(
    bench: &Bench,
    size: usize,
    messages: u64,
    keys: u64,
) -> anyhow::Result<(Vec<CaseResult>, String)> {
    if keys == 0 || keys > messages {
        bail!("the keys case needs 1 to {messages} keys, not {keys}");
    }
    let recording = record(bench, size, messages, keys)?;
    let dir = recording.scratch.path().to_path_buf();
    let index_bytes = bytes_of(&dir, ".kix")?;
    let recorded = (recording.stop_position - recording.start_position) as u64;
    let key = (keys * 3 / 4) as i64;
    // Read everything once first: on a VM the first read into fresh page-cache memory costs far
    // more than the disk (see docs/notes/issue-2.md); without this the first cold scan would pay
    // it and the index's lead would look larger than the disk makes it.
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.is_file() {
            std::io::copy(&mut std::fs::File::open(&path)?, &mut std::io::sink())
                .with_context(|| format!("read {}", path.display()))?;
        }
    }
    let mut rows = Vec::new();
    let mut times = Vec::new();
    let aside = recording.scratch.path().join("index-aside");
    // (case, through the index, positions kept)
    let modes = [
        ("index", true, false),
        ("scan", false, false),
        ("index-positions", true, true),
    ];
    for (how, with_index, keep_positions) in modes {
        if !with_index {
            move_index_files(&dir, &aside)?;
        }
        for cache in [Cache::Cold, Cache::Warm] {
            if cache == Cache::Cold {
                evict_page_cache(&dir)?;
            }
            let temperature = if cache == Cache::Cold { "cold" } else { "warm" };
            eprintln!("== keys-{how}-{temperature}: key {key} of {keys}");
            let timed = replay(bench, &recording, size, key, keys, true, keep_positions)?;
            times.push((how, temperature, timed.seconds));
            rows.push(
                CaseResult::new(
                    &format!("keys-{how}-{temperature}"),
                    size as u64,
                    timed.matched,
                    timed.seconds,
                )
                .with_note(format!(
                    "key {key} of {keys}: {} of {messages} messages, {}; read {} B of index, scanned {} B of frames",
                    timed.matched,
                    if keep_positions {
                        "recorded positions kept (gaps padded)"
                    } else {
                        "back to back"
                    },
                    timed.index_bytes,
                    timed.scanned_bytes
                )),
            );
        }
        if !with_index {
            move_index_files(&aside, &dir)?;
        }
    }
    // The same key read from the directory, without Aeron.
    for with_index in [true, false] {
        if !with_index {
            move_index_files(&dir, &aside)?;
        }
        for cache in [Cache::Cold, Cache::Warm] {
            if cache == Cache::Cold {
                evict_page_cache(&dir)?;
            }
            let how = if with_index {
                "view-index"
            } else {
                "view-scan"
            };
            let temperature = if cache == Cache::Cold { "cold" } else { "warm" };
            eprintln!("== keys-{how}-{temperature}: key {key} of {keys}, read from the directory");
            let (seconds, matched, stats) = read_offline(&recording, size, key, keys)?;
            times.push((how, temperature, seconds));
            rows.push(
                CaseResult::new(&format!("keys-{how}-{temperature}"), size as u64, matched, seconds)
                    .with_note(format!(
                        "key {key} of {keys} read from the directory (tern replay --print --key): read {} B of index, scanned {} B of frames",
                        stats.index_bytes, stats.scanned_bytes
                    )),
            );
        }
        if !with_index {
            move_index_files(&aside, &dir)?;
        }
    }
    eprintln!("== keys-subscriber-filter: the whole recording, the subscriber keeps key {key}");
    let timed = replay(bench, &recording, size, key, keys, false, false)?;
    rows.push(
        CaseResult::new("keys-subscriber-filter", size as u64, timed.matched, timed.seconds)
            .with_note(format!(
                "key {key} of {keys}: the whole recording ({messages} messages) replayed, the subscriber keeps {}",
                timed.matched
            )),
    );
    let time_of = |how: &str, temperature: &str| {
        times
            .iter()
            .find(|(h, t, _)| *h == how && *t == temperature)
            .map_or(f64::NAN, |(_, _, seconds)| *seconds)
    };
    let cold = time_of("scan", "cold") / time_of("index", "cold");
    let warm = time_of("scan", "warm") / time_of("index", "warm");
    let view_cold = time_of("view-scan", "cold") / time_of("view-index", "cold");
    let view_warm = time_of("view-scan", "warm") / time_of("view-index", "warm");
    let summary = format!(
        "keys: one key of {keys} ({} of {messages} messages of {size} B, {:.0} MB recorded): index {:.1} ms vs scan {:.1} ms cold = {cold:.1}x, index {:.1} ms vs scan {:.1} ms warm = {warm:.1}x; keeping recorded positions (gaps padded) through the index {:.1} ms cold, {:.1} ms warm; read from the directory: index {:.1} ms vs scan {:.1} ms cold = {view_cold:.1}x, index {:.1} ms vs scan {:.1} ms warm = {view_warm:.1}x; subscriber filtering a full replay {:.1} ms = {:.1}x the warm index replay; index files {:.2} MB ({:.2}% of the recording, {:.1} B per message); recorded in {:.2} s",
        rows[0].messages,
        recorded as f64 / 1e6,
        time_of("index", "cold") * 1e3,
        time_of("scan", "cold") * 1e3,
        time_of("index", "warm") * 1e3,
        time_of("scan", "warm") * 1e3,
        time_of("index-positions", "cold") * 1e3,
        time_of("index-positions", "warm") * 1e3,
        time_of("view-index", "cold") * 1e3,
        time_of("view-scan", "cold") * 1e3,
        time_of("view-index", "warm") * 1e3,
        time_of("view-scan", "warm") * 1e3,
        timed.seconds * 1e3,
        timed.seconds / time_of("index", "warm"),
        index_bytes as f64 / 1e6,
        index_bytes as f64 * 100.0 / recorded.max(1) as f64,
        index_bytes as f64 / messages as f64,
        recording.record_seconds,
    );
    for row in rows.iter_mut().filter(|row| {
        row.case.starts_with("keys-index-") || row.case.starts_with("keys-view-index")
    }) {
        if row.case.contains("positions") {
            continue;
        }
        let view = row.case.contains("view");
        let ratio = if view && row.case.ends_with("cold") {
            view_cold
        } else if view {
            view_warm
        } else if row.case.ends_with("cold") {
            cold
        } else {
            warm
        };
        row.note.push_str(&format!("; scan / index = {ratio:.1}x"));
    }
    Ok((rows, summary))
}
