//! The archive handle: [`Archive::launch`] opens the directory (lock, leftovers, recovery of
//! interrupted recordings, unfinished purges and truncates) and starts the threads: the
//! conductor that owns the state (`conductor.rs`), the recorder (`record/`), the replayer
//! (`replay/`), the indexer and the deleter. Every method is a command to the conductor.

use crate::conductor::{panic_message, run_deleter, ArchiveState, Command, Mailbox, MakeRoom};
use crate::config::ArchiveConfig;
use crate::error::{io_error, ArchiveError, Result};
use crate::record::{Recorder, RecorderCommand, Reporter};
use crate::replay::{ReplayStatus, Replayer, ReplayerCommand};
use crate::types::{
    stopped_by_identity, Pending, PendingRecording, PendingReplay, PendingSeek, RecordingFailure,
    RecordingInfo, RecordingSubscriptionInfo, ReplayRequest, Shared, SourceLocation, REPLY_TIMEOUT,
};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use tern_store::catalog::Catalog;
use tern_store::cursors::{Cursor, CursorStore};
use tern_store::descriptor::RecordingDescriptor;
use tern_store::indexer::{run_indexer_on, IndexJob};
use tern_store::recording_reader::{find_end_on, list_segments_on};
use tern_store::storage::{OpenOptions, Storage};
use tern_store::{RecordingId, ReplayId};

/// A running archive. Dropping it stops recording (what was received is written and synced) and
/// replaying.
///
/// A handle: the archive's state belongs to its conductor thread (`conductor.rs`), and each
/// call here is a command sent to it (answered on the caller's thread).
pub struct Archive {
    shared: Arc<Shared>,
    mailbox: Arc<Mailbox>,
    recorder: Sender<RecorderCommand>,
    replayer: Sender<ReplayerCommand>,
    /// The recorder and the replayer.
    threads: Vec<JoinHandle<()>>,
    conductor_thread: Option<JoinHandle<()>>,
    /// The indexer's queue (dropped at shutdown, after the recorder, so the indexer ends).
    indexer: Option<SyncSender<IndexJob>>,
    indexer_thread: Option<JoinHandle<()>>,
    /// Tells the indexer to cut short its launch-time check.
    indexer_stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Ends once the conductor (which holds its queue) has stopped.
    deleter_thread: Option<JoinHandle<()>>,
    _lock: File,
}

/// Give every interrupted recording of the catalog its stop position: the end of its last valid
/// frame. Returns the ids recovered and what damage was found at their ends.
fn recover(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    catalog: &mut Catalog,
) -> Result<Vec<(RecordingId, i64, Option<String>)>> {
    let interrupted: Vec<RecordingDescriptor> = catalog
        .recordings()
        .filter(|d| d.is_active())
        .cloned()
        .collect();
    if interrupted.is_empty() {
        return Ok(Vec::new());
    }
    let segments = list_segments_on(storage, dir)?;
    let mut recovered = Vec::new();
    for mut descriptor in interrupted {
        let bases = segments
            .get(&descriptor.recording_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let (stop, damage) = find_end_on(storage, dir, &descriptor, bases)?;
        // What the scan saw may still be only in the page cache (a process crash leaves buffered
        // data there): make it durable before the catalog vouches for it.
        for base in bases {
            let path = dir.join(tern_store::segment::segment_file_name(
                descriptor.recording_id,
                *base,
            ));
            storage
                .open(&path, OpenOptions::read())
                .and_then(|file| file.sync_data())
                .map_err(io_error(&path, "sync recovered segment"))?;
        }
        descriptor.stop_position = stop;
        descriptor.stop_timestamp_ns =
            tern_store::time_index::read_time_index_on(storage, dir, descriptor.recording_id, stop)
                .ok()
                .and_then(|entries| entries.last().map(|entry| entry.timestamp_ns))
                .unwrap_or(descriptor.start_timestamp_ns);
        catalog.update(&descriptor)?;
        let damage = damage.map(|stop| stop.to_string());
        match &damage {
            Some(damage) => tracing::warn!(
                "recording {} recovered: stops at {stop}; the data after it is damaged: {damage}",
                descriptor.recording_id
            ),
            None => tracing::info!(
                "recording {} recovered: stops at {stop}",
                descriptor.recording_id
            ),
        }
        recovered.push((descriptor.recording_id, stop, damage));
    }
    Ok(recovered)
}

fn spawn_agent<A, F>(name: &str, mailbox: Arc<Mailbox>, make: F) -> Result<JoinHandle<()>>
where
    F: FnOnce() -> Result<A> + Send + 'static,
    A: FnOnce() + 'static,
{
    let (started, wait) = mpsc::channel::<Result<()>>();
    let agent = name.to_string();
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || match make() {
            Ok(run) => {
                let _ = started.send(Ok(()));
                // A bug in an agent must not go unnoticed: the archive reports it, and its
                // recordings stop where they got to (the next start recovers them).
                if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                    let message = format!("{agent} stopped: {}", panic_message(panic.as_ref()));
                    mailbox.tell(move |state| state.agent_failed(message));
                }
            }
            Err(error) => {
                let _ = started.send(Err(error));
            }
        })
        .map_err(|error| ArchiveError::NotRunning(format!("spawn {name}: {error}")))?;
    match wait.recv_timeout(REPLY_TIMEOUT) {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ArchiveError::NotRunning(format!("{name} did not start"))),
    }
}

impl Archive {
    /// Open (or create) the archive directory, recover interrupted recordings, and start the
    /// conductor and the recorder and replayer agents on the media driver of `config.aeron_dir`.
    ///
    /// # Errors
    /// A bad setting, a directory in use by another archive, a damaged catalog header, or no media
    /// driver.
    pub fn launch(config: ArchiveConfig) -> Result<Self> {
        config.validate().map_err(ArchiveError::Invalid)?;
        std::fs::create_dir_all(&config.dir)
            .map_err(io_error(&config.dir, "create archive directory"))?;
        let lock = tern_store::lock_directory(&config.dir)?;
        tern_store::remove_leftovers(&config.dir)?;
        let storage = &config.io.storage;
        let mut catalog = tern_store::rebuild::open_for_recording_on(storage, &config.dir)?;
        recover(storage, &config.dir, &mut catalog)?;
        crate::operations::finish_purges(storage, &config.dir, &catalog)?;
        crate::operations::finish_truncates(storage, &config.dir, &catalog)?;
        let cursors = CursorStore::open_on(storage, &config.dir)?;
        let (mailbox, commands) = Mailbox::new();
        let mailbox = Arc::new(mailbox);
        let shared = Arc::new(Shared {
            config,
            metrics: crate::metrics::Metrics::default(),
        });
        let (indexer, index_jobs) = mpsc::sync_channel(tern_store::indexer::QUEUE_LENGTH);
        let index_dir = shared.config.dir.clone();
        let index_storage = shared.config.io.storage.clone();
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let indexer_stopping = stopping.clone();
        let indexer_thread = std::thread::Builder::new()
            .name("tern-indexer".into())
            .spawn(move || run_indexer_on(index_storage, index_dir, index_jobs, indexer_stopping))
            .map_err(|error| ArchiveError::NotRunning(format!("spawn tern-indexer: {error}")))?;
        // Recordings interrupted by a crash (or stopped just before it) may lack index files.
        let stopped: Vec<RecordingDescriptor> = catalog.recordings().cloned().collect();
        let _ = indexer.send(IndexJob::Check {
            recordings: stopped,
        });
        let (deleter, delete_jobs) = mpsc::channel();
        let deleter_shared = shared.clone();
        let deleter_mailbox = mailbox.clone();
        let deleter_thread = std::thread::Builder::new()
            .name("tern-deleter".into())
            .spawn(move || run_deleter(deleter_shared, deleter_mailbox, delete_jobs))
            .map_err(|error| ArchiveError::NotRunning(format!("spawn tern-deleter: {error}")))?;
        let (recorder, recorder_commands) = mpsc::channel();
        let (replayer, replayer_commands) = mpsc::channel();
        let parts = crate::conductor::Parts {
            shared: shared.clone(),
            catalog,
            cursors,
            recorder: recorder.clone(),
            replayer: replayer.clone(),
            deleter,
        };
        let conductor_thread = std::thread::Builder::new()
            .name("tern-archive".into())
            .spawn(move || crate::conductor::run(parts, commands))
            .map_err(|error| ArchiveError::NotRunning(format!("spawn tern-archive: {error}")))?;
        mailbox.set_thread(conductor_thread.thread().clone());
        let mut archive = Self {
            shared: shared.clone(),
            mailbox: mailbox.clone(),
            recorder,
            replayer,
            threads: Vec::new(),
            conductor_thread: Some(conductor_thread),
            indexer: Some(indexer),
            indexer_thread: Some(indexer_thread),
            indexer_stopping: stopping,
            deleter_thread: Some(deleter_thread),
            _lock: lock,
        };
        // On an error from here, dropping `archive` stops what was started.
        let recorder_shared = shared.clone();
        let recorder_indexer = archive.indexer.clone().expect("the indexer runs");
        let reports = mailbox.clone();
        let reporter: Reporter = Arc::new(move |report| {
            reports.tell(move |state| state.on_report(report));
        });
        archive
            .threads
            .push(spawn_agent("tern-recorder", mailbox.clone(), move || {
                let agent = Recorder::new(
                    recorder_shared,
                    reporter,
                    recorder_commands,
                    recorder_indexer,
                )?;
                Ok(move || agent.run())
            })?);
        let replayer_shared = shared.clone();
        archive
            .threads
            .push(spawn_agent("tern-replayer", mailbox, move || {
                let agent = Replayer::new(replayer_shared, replayer_commands)?;
                Ok(move || agent.run())
            })?);
        Ok(archive)
    }

    /// Run `call` with the archive's state on its conductor thread, and wait for its answer.
    fn ask<R: Send + 'static>(
        &self,
        call: impl FnOnce(&mut ArchiveState) -> R + Send + 'static,
    ) -> Result<R> {
        self.mailbox.ask(call)
    }

    /// Start a room (the control server) on the conductor's thread.
    pub(crate) fn add_room(&self, make: MakeRoom) -> Result<()> {
        self.mailbox.send(Command::Room(make))
    }

    /// Whether the recorder and replayer agents are running.
    ///
    /// # Errors
    /// [`ArchiveError::NotRunning`] with why an agent stopped.
    pub fn health(&self) -> Result<()> {
        self.ask(|state| state.health())?
    }

    /// The recordings that could not be written since launch (a full disk, a file error), in the
    /// order they failed. A recording listed here stopped where it failed; the archive goes on
    /// recording the others.
    pub fn recording_failures(&self) -> Vec<RecordingFailure> {
        self.ask(|state| state.recording_failures().to_vec())
            .unwrap_or_default()
    }

    /// The settings the archive runs with.
    pub fn config(&self) -> &ArchiveConfig {
        &self.shared.config
    }

    /// An encoder of this archive's Prometheus metrics (see `metrics.rs` and README.md), for a
    /// [`MetricsServer`](crate::MetricsServer) or any other exporter. It does not keep the
    /// archive alive.
    pub fn metrics_exporter(&self) -> crate::exporter::MetricsExporter {
        crate::exporter::MetricsExporter::new(&self.shared, &self.mailbox)
    }

    /// Record every image of `channel` and `stream_id`, each to its own recording, until stopped.
    /// Returns the recording subscription's id.
    ///
    /// # Errors
    /// The channel is invalid, or the archive is not running.
    pub fn start_recording(
        &self,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
    ) -> Result<i64> {
        self.start_recording_with(channel, stream_id, source, false)
    }

    /// As [`Self::start_recording`]; with `auto_stop`, the recording subscription is removed as
    /// soon as the recording of one of its images stops because the image ended (Aeron's
    /// `autoStop`), so it records one publication and goes.
    ///
    /// # Errors
    /// [`ArchiveError::DuplicateSubscription`] when the channel and stream are already recorded,
    /// [`ArchiveError::MaxRecordings`], an invalid channel, or the archive is not running.
    pub fn start_recording_with(
        &self,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
    ) -> Result<i64> {
        self.begin_recording(channel, stream_id, source, auto_stop)?
            .wait()
    }

    /// [`Self::start_recording_with`] without waiting for the recorder: the subscription id is
    /// known at once, and [`Begun::poll`](crate::Begun::poll) tells when the subscription is added (or
    /// why it could not be).
    ///
    /// # Errors
    /// The archive is not running.
    pub fn begin_recording(
        &self,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
    ) -> Result<PendingRecording> {
        let channel = channel.to_string();
        self.ask(move |state| state.begin_recording(&channel, stream_id, source, auto_stop))?
    }

    /// Extend a stopped recording (Aeron's `extendRecording`): a recording subscription is added
    /// on `channel` and `stream_id` (the recording's stream id), and the first image that joins
    /// at the recording's stop position with its initial term id, term length and MTU continues
    /// it: same recording id, frames appended from the stop position, a
    /// [`RecordingSignalKind::Extend`](crate::RecordingSignalKind::Extend) event, and the
    /// recording active until that image ends or the subscription is stopped. An image that does
    /// not fit is refused (logged as an error) and not recorded. Returns the subscription id.
    ///
    /// # Errors
    /// Unknown recording; [`ArchiveError::Active`] if it is being recorded; another stream id;
    /// as [`Self::start_recording_with`].
    pub fn extend_recording(
        &self,
        recording_id: RecordingId,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
    ) -> Result<i64> {
        self.begin_extend(recording_id, channel, stream_id, source, auto_stop)?
            .wait()
    }

    /// [`Self::extend_recording`] without waiting for the recorder (see [`Self::begin_recording`]).
    ///
    /// # Errors
    /// What [`Self::extend_recording`] can tell before the recorder has the request.
    pub fn begin_extend(
        &self,
        recording_id: RecordingId,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
    ) -> Result<PendingRecording> {
        let channel = channel.to_string();
        self.ask(move |state| {
            state.begin_extend(recording_id, &channel, stream_id, source, auto_stop)
        })?
    }

    /// A new receiver of recording events (start, stop, extend, delete), each sent to every
    /// receiver in the order it happened; a dropped receiver is forgotten.
    pub fn subscribe_events(&self) -> mpsc::Receiver<crate::events::RecordingEvent> {
        self.ask(|state| state.subscribe_events())
            .unwrap_or_else(|_| mpsc::channel().1)
    }

    /// The recording subscription through which `recording_id` is being recorded now, if it is.
    pub fn recording_subscription_of(&self, recording_id: RecordingId) -> Option<i64> {
        self.ask(move |state| state.recording_subscription_of(recording_id))
            .ok()
            .flatten()
    }

    /// Stop the recording subscription that records `recording_id` (Aeron's
    /// `stopRecordingByIdentity`), with every recording it has. Returns whether the recording was
    /// active.
    ///
    /// # Errors
    /// Unknown recording, or the archive is not running.
    pub fn stop_recording_by_identity(&self, recording_id: RecordingId) -> Result<bool> {
        match self.begin_stop_by_identity(recording_id)? {
            Some((_, pending)) => stopped_by_identity(pending.wait()),
            None => Ok(false),
        }
    }

    /// [`Self::stop_recording_by_identity`] without waiting for the recorder: `None` when the
    /// recording is not active; else the recording subscription being stopped and the stop,
    /// whose answer [`stopped_by_identity`] reads.
    ///
    /// # Errors
    /// Unknown recording, or the archive is not running.
    pub fn begin_stop_by_identity(
        &self,
        recording_id: RecordingId,
    ) -> Result<Option<(i64, Pending<Vec<RecordingId>>)>> {
        self.ask(move |state| state.begin_stop_by_identity(recording_id))?
    }

    /// Stop a recording subscription; its recordings are written, synced and marked stopped.
    /// Returns the ids of the recordings it stopped.
    ///
    /// # Errors
    /// The id is unknown, or the archive is not running.
    pub fn stop_recording(&self, subscription_id: i64) -> Result<Vec<RecordingId>> {
        self.begin_stop_recording(subscription_id)?.wait()
    }

    /// [`Self::stop_recording`] without waiting for the recorder: the answer is the ids of the
    /// recordings it stopped, or [`ArchiveError::UnknownSubscription`].
    ///
    /// # Errors
    /// The archive is not running.
    pub fn begin_stop_recording(&self, subscription_id: i64) -> Result<Pending<Vec<RecordingId>>> {
        self.ask(move |state| state.begin_stop_recording(subscription_id))?
    }

    /// The recording subscriptions in force.
    pub fn recording_subscriptions(&self) -> Vec<RecordingSubscriptionInfo> {
        self.ask(|state| state.recording_subscriptions())
            .unwrap_or_default()
    }

    /// Every readable recording, with live positions.
    pub fn recordings(&self) -> Vec<RecordingInfo> {
        self.ask(|state| state.recordings()).unwrap_or_default()
    }

    /// One recording, with live positions.
    ///
    /// # Errors
    /// Unknown id, or a damaged catalog entry.
    pub fn recording(&self, recording_id: RecordingId) -> Result<RecordingInfo> {
        self.ask(move |state| state.recording(recording_id))?
    }

    /// The position to replay from to start at the first message captured at or after
    /// `timestamp_ns` (epoch nanoseconds): the start for a time before the first message, the
    /// current end for a time after the last (a follow replay from there waits for new ones).
    ///
    /// # Errors
    /// Unknown id, or a missing or unreadable time index.
    pub fn position_at_time(&self, recording_id: RecordingId, timestamp_ns: i64) -> Result<i64> {
        self.position_at_time_from(recording_id, timestamp_ns, Default::default())
    }

    /// As [`Self::position_at_time`], with the time of each message taken from `source`.
    ///
    /// # Errors
    /// Unknown id, an unreadable time index or segment.
    pub fn position_at_time_from(
        &self,
        recording_id: RecordingId,
        timestamp_ns: i64,
        source: tern_store::message_time::TimeSource,
    ) -> Result<i64> {
        self.ask(move |state| state.position_at_time_from(recording_id, timestamp_ns, source))?
    }

    /// The recording of one publisher session on a stream, most recent first.
    pub fn find_recording(&self, stream_id: i32, session_id: i32) -> Option<RecordingInfo> {
        self.ask(move |state| state.find_recording(stream_id, session_id))
            .ok()
            .flatten()
    }

    /// Replay a recording to a channel and stream; returns the replay id, whose low 32 bits are the
    /// session id of the replay's image.
    ///
    /// # Errors
    /// Unknown recording; a position before the start, past the end or not at a frame start; a
    /// replay channel the driver refuses.
    pub fn start_replay(&self, request: &ReplayRequest) -> Result<ReplayId> {
        let pending = self.begin_replay(request)?;
        let replay_id = pending.id();
        let outcome = pending.wait();
        self.end_replay_start(replay_id, outcome)
    }

    /// [`Self::start_replay`] without waiting for the replayer: the request is checked and handed
    /// to the replayer, and [`Self::poll_replay_start`] tells when it has started (or failed).
    /// The replay counts against the replay limit, and a truncate or purge stops it, from now.
    ///
    /// # Errors
    /// As [`Self::start_replay`], for what can be told before the replayer has it.
    pub fn begin_replay(&self, request: &ReplayRequest) -> Result<PendingReplay> {
        let request = request.clone();
        self.ask(move |state| state.begin_replay(&request))?
    }

    /// Whether a replay begun with [`Self::begin_replay`] has started: `None` while the replayer
    /// has not answered; then its replay id, or why it could not start.
    pub fn poll_replay_start(&self, pending: &PendingReplay) -> Option<Result<ReplayId>> {
        let outcome = pending.poll()?;
        Some(self.end_replay_start(pending.id(), outcome))
    }

    fn end_replay_start(&self, replay_id: ReplayId, outcome: Result<ReplayId>) -> Result<ReplayId> {
        if outcome.is_ok() {
            return outcome;
        }
        self.ask(move |state| state.end_replay_start(replay_id, outcome))?
    }

    /// Cut a stopped recording at `position` (Aeron's `truncateRecording`): `position` becomes
    /// its stop position, and everything recorded after it is removed. Replays of the recording
    /// are stopped first (a replay asked for meanwhile is refused). The catalog is updated
    /// first; then the rest of the segment holding `position` is zeroed, later segment files
    /// (with every sidecar `<id>-<base>.…` of theirs) are deleted, and the time index loses its
    /// entries from `position` on; then a
    /// [`RecordingSignalKind::Delete`](crate::RecordingSignalKind::Delete) event is sent. A
    /// crash in between leaves bytes past the stop position, which readers ignore and an
    /// extension removes. Returns the number of segment files deleted.
    ///
    /// # Errors
    /// Unknown recording; [`ArchiveError::Active`] if it is being recorded;
    /// [`StoreError::BadPosition`](tern_store::StoreError::BadPosition) for a position outside `[start, stop]`, not a multiple of
    /// 32, or not the start of a frame; a file error.
    pub fn truncate_recording(&self, recording_id: RecordingId, position: i64) -> Result<usize> {
        self.begin_truncate(recording_id, position, true)?.wait()
    }

    /// As [`Self::truncate_recording`], but the later segment files are deleted in the background
    /// (Aeron's way): this returns once the record is changed and the cut segment erased, with
    /// the number of segment files to delete; the `Delete` event follows when they are gone, and
    /// until then the recording is busy (another truncate, a purge or an extension is refused).
    ///
    /// # Errors
    /// As [`Self::truncate_recording`].
    pub fn truncate_recording_in_background(
        &self,
        recording_id: RecordingId,
        position: i64,
    ) -> Result<usize> {
        self.begin_truncate(recording_id, position, false)?.wait()
    }

    /// [`Self::truncate_recording_in_background`] (`wait` false) or
    /// [`Self::truncate_recording`] (`wait` true) without waiting: the answer comes once the
    /// recording's replays have stopped and the record is changed (and, with `wait`, the files
    /// deleted).
    ///
    /// # Errors
    /// What can be told at once: unknown recording, active or busy, a bad position.
    pub fn begin_truncate(
        &self,
        recording_id: RecordingId,
        position: i64,
        wait: bool,
    ) -> Result<Pending<usize>> {
        self.ask(move |state| state.begin_truncate(recording_id, position, wait))?
    }

    /// Delete a stopped recording that no replay reads (Aeron's `purgeRecording`): its catalog
    /// record is marked deleted (it keeps its slot, so its id is never reused, but it is no
    /// longer listed or found), then all its files are deleted (segments, sidecars, time index),
    /// then a [`RecordingSignalKind::Delete`](crate::RecordingSignalKind::Delete) event is sent.
    /// Returns the number of segment files deleted.
    ///
    /// # Errors
    /// Unknown recording; [`ArchiveError::Active`] if it is being recorded;
    /// [`ArchiveError::ReplayRunning`] if a replay reads it; a file error.
    pub fn purge_recording(&self, recording_id: RecordingId) -> Result<usize> {
        self.ask(move |state| state.begin_purge(recording_id, true))??
            .wait()
    }

    /// As [`Self::purge_recording`], but the files are deleted in the background (Aeron's way):
    /// this returns once the record says deleted, with the number of segment files to delete;
    /// the `Delete` event follows when they are gone.
    ///
    /// # Errors
    /// As [`Self::purge_recording`].
    pub fn purge_recording_in_background(&self, recording_id: RecordingId) -> Result<usize> {
        self.ask(move |state| state.begin_purge(recording_id, false))??
            .wait()
    }

    /// Move a running replay to `position` (a frame start of its recording). The replay's current
    /// image ends after what it sent; a new image, with a new session id (returned, and in
    /// [`ReplayStatus::session_id`]), starts at `position`, so replayed positions stay the
    /// recording's. Nothing is lost or sent twice on either image.
    ///
    /// # Errors
    /// Unknown or ended replay; a position that is not a frame start of the recording; a replay
    /// channel the driver refuses.
    pub fn seek_replay(&self, replay_id: ReplayId, position: i64) -> Result<i32> {
        self.begin_seek(replay_id, position)?.wait()
    }

    /// [`Self::seek_replay`] without waiting for the replayer: the new session id is known at
    /// once; [`Begun::poll`](crate::Begun::poll) tells when the replay has moved.
    ///
    /// # Errors
    /// What [`Self::seek_replay`] can tell before the replayer has the request.
    pub fn begin_seek(&self, replay_id: ReplayId, position: i64) -> Result<PendingSeek> {
        self.ask(move |state| state.begin_seek(replay_id, position))?
    }

    /// Move a running replay to the first message whose time (read by `source`) is at or after
    /// `timestamp_ns`; see [`Self::seek_replay`].
    ///
    /// # Errors
    /// As [`Self::seek_replay`], and a missing or unreadable time index.
    pub fn seek_replay_to_time(
        &self,
        replay_id: ReplayId,
        timestamp_ns: i64,
        source: tern_store::message_time::TimeSource,
    ) -> Result<i32> {
        self.begin_seek_to_time(replay_id, timestamp_ns, source)?
            .wait()
    }

    /// [`Self::seek_replay_to_time`] without waiting for the replayer (see [`Self::begin_seek`]).
    ///
    /// # Errors
    /// As [`Self::begin_seek`], and a missing or unreadable time index.
    pub fn begin_seek_to_time(
        &self,
        replay_id: ReplayId,
        timestamp_ns: i64,
        source: tern_store::message_time::TimeSource,
    ) -> Result<PendingSeek> {
        self.ask(move |state| state.begin_seek_to_time(replay_id, timestamp_ns, source))?
    }

    /// The status of a replay.
    ///
    /// # Errors
    /// The replay id is unknown.
    pub fn replay_status(&self, replay_id: ReplayId) -> Result<Arc<ReplayStatus>> {
        self.ask(move |state| state.replay_status(replay_id))?
    }

    /// Pause a replay: nothing more is sent until [`Self::resume_replay`]; a paced replay's
    /// schedule moves by the length of the pause.
    ///
    /// # Errors
    /// The replay id is unknown or the replay has ended, or the archive is not running.
    pub fn pause_replay(&self, replay_id: ReplayId) -> Result<()> {
        self.ask(move |state| state.pause_replay(replay_id))?
    }

    /// Resume a paused replay from where it stopped.
    ///
    /// # Errors
    /// The replay id is unknown or the replay has ended, or the archive is not running.
    pub fn resume_replay(&self, replay_id: ReplayId) -> Result<()> {
        self.ask(move |state| state.resume_replay(replay_id))?
    }

    /// Stop a replay.
    ///
    /// # Errors
    /// The replay id is unknown, or the archive is not running.
    pub fn stop_replay(&self, replay_id: ReplayId) -> Result<()> {
        self.ask(move |state| state.stop_replay(replay_id))?
    }

    /// Stop every running replay of `recording_id` (of every recording for `None`); returns how
    /// many were asked to stop.
    pub fn stop_all_replays(&self, recording_id: Option<RecordingId>) -> usize {
        self.ask(move |state| state.stop_all_replays(recording_id))
            .unwrap_or(0)
    }

    /// Store `position` of `recording_id` under `name`, durably (synced before this returns):
    /// a consumer resumes from it after a restart. The position must be a frame start of the
    /// recording, between its start and what is durable.
    ///
    /// # Errors
    /// A bad name, an unknown recording, a position that is not a frame start, too many
    /// cursors, or the cursor file cannot be written (the cursor keeps its old value).
    pub fn set_cursor(
        &self,
        name: &str,
        recording_id: RecordingId,
        position: i64,
    ) -> Result<Cursor> {
        let name = name.to_string();
        self.ask(move |state| state.set_cursor(&name, recording_id, position))?
    }

    /// The cursor `name`.
    ///
    /// # Errors
    /// [`StoreError::UnknownCursor`](tern_store::StoreError::UnknownCursor).
    pub fn cursor(&self, name: &str) -> Result<Cursor> {
        let name = name.to_string();
        self.ask(move |state| state.cursor(&name))?
    }

    /// Delete the cursor `name`, durably; returns whether it existed.
    ///
    /// # Errors
    /// The cursor file cannot be written.
    pub fn delete_cursor(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.ask(move |state| state.delete_cursor(&name))?
    }

    /// The cursors whose names start with `prefix`, in name order.
    pub fn cursors(&self, prefix: &str) -> Vec<Cursor> {
        let prefix = prefix.to_string();
        self.ask(move |state| state.cursors(&prefix))
            .unwrap_or_default()
    }

    /// One past the highest recording id the catalog has given out (ids are never reused).
    pub fn recording_id_limit(&self) -> i64 {
        self.ask(|state| state.recording_id_limit()).unwrap_or(0)
    }

    /// Stop recording and replaying; everything received is written and synced.
    pub fn shutdown(mut self) {
        self.stop_agents();
    }

    /// As [`Self::shutdown`], and return every recording that could not be written since launch,
    /// those that failed while stopping included (their final write or sync).
    pub fn shutdown_with_failures(mut self) -> Vec<RecordingFailure> {
        self.stop_agents_but_conductor();
        let failures = self.recording_failures();
        self.stop_agents();
        failures
    }

    /// Stop the recorder and the replayer; the conductor takes in what they report as they stop.
    fn stop_agents_but_conductor(&mut self) {
        let _ = self.recorder.send(RecorderCommand::Shutdown);
        let _ = self.replayer.send(ReplayerCommand::Shutdown);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }

    fn stop_agents(&mut self) {
        self.stop_agents_but_conductor();
        // Deletions asked for are finished before the archive stops, and reported to the
        // conductor (the recording released, `Delete` signalled) while it still runs.
        let _ = self.mailbox.ask(|state| state.close_deleter());
        if let Some(thread) = self.deleter_thread.take() {
            let _ = thread.join();
        }
        // Then the conductor, once it has taken in what they sent (its queue is in order).
        let _ = self.mailbox.send(Command::Shutdown);
        if let Some(thread) = self.conductor_thread.take() {
            let _ = thread.join();
        }
        // The recorder has handed over its last segments: the indexer writes them and ends (a
        // launch-time check still running is cut short: the next launch does it).
        self.indexer_stopping.store(true, Ordering::Relaxed);
        self.indexer = None;
        if let Some(thread) = self.indexer_thread.take() {
            let _ = thread.join();
        }
        // A deleter left (the conductor could not be asked): it ends with the conductor's state.
        if let Some(thread) = self.deleter_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        self.stop_agents();
    }
}
