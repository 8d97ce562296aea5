//! `replay-cold` and `replay-warm`: a recording replayed by the archive to a subscriber thread, once
//! with the segment files out of the page cache and once with them in it.

use super::record::Recording;
use super::{join_worker, spawn_worker, Abort, Bench};
use crate::report::CaseResult;
use crate::traffic::{self, CHANNEL, CONNECT_TIMEOUT, STALL_TIMEOUT};
use anyhow::{bail, Context};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tern_archive::{ReplayId, ReplayRequest, ReplayState};
use tern_transport::Client;

/// How often the replay's state is checked while the subscriber works.
const POLL_PERIOD: Duration = Duration::from_millis(1);

/// Whether the segment files are read from the disk or from the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// The files' pages are dropped from the page cache first.
    Cold,
    /// Whatever an earlier replay left in the page cache.
    Warm,
}

impl Cache {
    fn case_name(self) -> &'static str {
        match self {
            Self::Cold => "replay-cold",
            Self::Warm => "replay-warm",
        }
    }
}

/// Drop the clean pages of every file in `dir` from the page cache (`POSIX_FADV_DONTNEED`).
/// Direct writes leave none there; this makes a cold replay cold after buffered writes too.
///
/// # Errors
/// A file could not be listed or opened.
pub fn evict_page_cache(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        let file = File::open(&path).with_context(|| format!("open {}", path.display()))?;
        file.sync_data()
            .with_context(|| format!("sync {}", path.display()))?;
        // SAFETY: an advice call on a descriptor we own; it changes no memory of ours.
        let status =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if status != 0 {
            tracing::warn!("posix_fadvise {}: error {status}", path.display());
        }
    }
    Ok(())
}

/// Wait until the replay ends (it should be done once the subscriber has everything).
fn wait_replay_done(recording: &Recording, replay_id: ReplayId) -> anyhow::Result<()> {
    let status = recording.archive.replay_status(replay_id)?;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while !status.is_finished() && Instant::now() < deadline {
        std::thread::sleep(POLL_PERIOD);
    }
    match status.state() {
        ReplayState::Done => Ok(()),
        state => bail!("replay {replay_id} ended {state:?}: {:?}", status.error()),
    }
}

/// Replay the whole recording on a new IPC stream to a subscriber thread that checks every
/// message; time from the replay request to the last message received.
///
/// # Errors
/// The replay failed, or the subscriber did not receive exactly the recorded messages.
pub fn run(
    bench: &Bench,
    recording: &Recording,
    size: usize,
    messages: u64,
    cache: Cache,
) -> anyhow::Result<CaseResult> {
    if cache == Cache::Cold {
        evict_page_cache(recording.dir())?;
    }
    let stream = bench.next_stream();
    let abort = Abort::default();
    let (ready, subscribed) = mpsc::channel();
    let aeron_dir = bench.aeron_dir.clone();
    let subscriber = spawn_worker("replay-subscriber", &abort, move |abort| {
        let client = Client::connect(&aeron_dir)?;
        let subscription = client.add_subscription(CHANNEL, stream)?;
        let _ = ready.send(());
        traffic::count(&subscription, size, messages, abort)
    })?;
    if subscribed.recv_timeout(CONNECT_TIMEOUT).is_err() {
        abort.store(true, Ordering::Release);
        join_worker(subscriber)?;
        bail!("the replay subscriber did not start");
    }
    let started = Instant::now();
    let request = ReplayRequest {
        recording_id: recording.recording_id,
        channel: CHANNEL.into(),
        stream_id: stream,
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
    watch_replay(recording, replay_id, &subscriber, &abort)?;
    let counted = join_worker(subscriber)?;
    wait_replay_done(recording, replay_id)?;
    if counted.session_id != Some(replay_id.image_session_id()) || counted.mixed_sessions {
        bail!(
            "replay {replay_id} arrived from session {:?} (mixed: {}), not {}",
            counted.session_id,
            counted.mixed_sessions,
            replay_id.image_session_id()
        );
    }
    if counted.bytes != messages * size as u64 {
        bail!(
            "replay delivered {} bytes, expected {}",
            counted.bytes,
            messages * size as u64
        );
    }
    let seconds = counted.finished.duration_since(started).as_secs_f64();
    Ok(CaseResult::new(
        cache.case_name(),
        size as u64,
        counted.messages,
        seconds,
    ))
}

/// While the subscriber works, stop it if the replay fails or stalls.
fn watch_replay<T>(
    recording: &Recording,
    replay_id: ReplayId,
    subscriber: &std::thread::JoinHandle<T>,
    abort: &Abort,
) -> anyhow::Result<()> {
    let status = recording.archive.replay_status(replay_id)?;
    let mut last = (status.position(), Instant::now());
    while !subscriber.is_finished() {
        let position = status.position();
        if position != last.0 {
            last = (position, Instant::now());
        }
        if status.state() == ReplayState::Failed || last.1.elapsed() > STALL_TIMEOUT {
            abort.store(true, Ordering::Release);
            bail!(
                "replay {replay_id} {:?} at position {position}: {:?}",
                status.state(),
                status.error()
            );
        }
        std::thread::sleep(POLL_PERIOD);
    }
    Ok(())
}
