//! `record`: publisher to archive to disk. One archive in a fresh scratch directory records an
//! IPC stream while this thread publishes into it as fast as the archive consumes; the clock runs
//! from the first offer until the archive reports everything written to its segment files.

use super::{Bench, ScratchDir};
use crate::report::CaseResult;
use crate::traffic::{self, CHANNEL, CONNECT_TIMEOUT, STALL_TIMEOUT};
use anyhow::{bail, Context};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use tern_archive::{Archive, RecordingId, SourceLocation};
use tern_transport::Client;

/// How often the recorded position is read while waiting for it.
const POLL_PERIOD: Duration = Duration::from_micros(100);
/// Frame header length and alignment of Aeron data frames.
const FRAME_HEADER: u64 = 32;

/// A finished recording, kept (with its archive) for the replay cases. Dropping it stops the
/// archive, then deletes its directory.
pub struct Recording {
    /// The archive that holds it; dropped before the directory is removed.
    pub archive: Archive,
    /// Its id.
    pub recording_id: RecordingId,
    /// The measurement.
    pub result: CaseResult,
    scratch: ScratchDir,
}

impl Recording {
    /// The archive directory.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }
}

/// Bytes a recording of `messages` messages of `size` bytes takes on disk (unfragmented frames).
pub fn recorded_bytes(size: usize, messages: u64) -> u64 {
    let frame = (FRAME_HEADER + size as u64).div_ceil(FRAME_HEADER) * FRAME_HEADER;
    frame * messages
}

fn check_space(dir: &Path, size: usize, messages: u64) -> anyhow::Result<()> {
    let needed = recorded_bytes(size, messages) + (256 << 20);
    let free = crate::host::free_bytes(dir)?;
    if free < needed {
        bail!(
            "{} has {} MB free; recording {messages} messages of {size} B needs about {} MB",
            dir.display(),
            free / 1_000_000,
            needed / 1_000_000
        );
    }
    Ok(())
}

fn launch_archive(bench: &Bench, dir: &Path) -> anyhow::Result<Archive> {
    Archive::launch(bench.archive_config(dir))
        .with_context(|| format!("launch an archive in {}", dir.display()))
}

/// Wait until the archive has a recording of this publication's session.
fn wait_for_recording(
    archive: &Archive,
    stream_id: i32,
    session_id: i32,
) -> anyhow::Result<RecordingId> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    loop {
        if let Some(info) = archive.find_recording(stream_id, session_id) {
            return Ok(info.descriptor.recording_id);
        }
        if Instant::now() > deadline {
            bail!("the archive did not start recording session {session_id} within {CONNECT_TIMEOUT:?}");
        }
        std::thread::sleep(POLL_PERIOD);
    }
}

/// Wait until the recording's written position reaches `position`; returns when it did.
fn wait_recorded(
    archive: &Archive,
    recording_id: RecordingId,
    position: i64,
) -> anyhow::Result<Instant> {
    let mut last = i64::MIN;
    let mut last_progress = Instant::now();
    loop {
        let recorded = archive.recording(recording_id)?.recorded_position;
        let now = Instant::now();
        if recorded >= position {
            return Ok(now);
        }
        if recorded != last {
            last = recorded;
            last_progress = now;
        } else if now.duration_since(last_progress) > STALL_TIMEOUT {
            bail!("recording {recording_id} stalled at {recorded}, short of {position}");
        }
        std::thread::sleep(POLL_PERIOD);
    }
}

/// Record `messages` messages of `size` bytes and keep the recording for replay.
///
/// # Errors
/// Not enough disk space, the archive or the publication failed, or the recording stopped short.
pub fn run(bench: &Bench, size: usize, messages: u64) -> anyhow::Result<Recording> {
    let scratch = bench.scratch(&format!("record-{size}"))?;
    check_space(scratch.path(), size, messages)?;
    let archive = launch_archive(bench, scratch.path())?;
    let stream = bench.next_stream();
    let subscription_id = archive.start_recording(CHANNEL, stream, SourceLocation::Remote)?;
    let client = Client::connect(&bench.aeron_dir)?;
    let publication = client.add_exclusive_publication(CHANNEL, stream)?;
    traffic::wait_connected(&publication)?;
    let recording_id = wait_for_recording(&archive, stream, publication.session_id())?;
    let published = traffic::publish(
        &publication,
        size,
        messages,
        bench.keys,
        &AtomicBool::new(false),
    )?;
    let recorded_at = wait_recorded(&archive, recording_id, published.final_position)?;
    archive.stop_recording(subscription_id)?;
    drop(publication);
    drop(client);
    let info = archive.recording(recording_id)?;
    if info.descriptor.stop_position != published.final_position {
        bail!(
            "recording {recording_id} stopped at {}, the publication at {}",
            info.descriptor.stop_position,
            published.final_position
        );
    }
    let seconds = recorded_at.duration_since(published.started).as_secs_f64();
    let disk_bytes = (published.final_position - info.descriptor.start_position) as u64;
    let result = CaseResult::new("record", size as u64, messages, seconds)
        .with_disk_bytes(disk_bytes)
        .with_note(format!(
            "fsync={} write={:?} buffer={}KiB key-index=[{}] keys={}; publisher done after {:.3} s",
            archive.config().fsync,
            archive.config().write_mode,
            archive.config().write_buffer_length >> 10,
            archive
                .config()
                .key_index
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            bench.keys,
            published
                .finished
                .duration_since(published.started)
                .as_secs_f64()
        ));
    Ok(Recording {
        archive,
        recording_id,
        result,
        scratch,
    })
}
